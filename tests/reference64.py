"""Float64 references of every measure, in NumPy/SciPy: the one helper the measure tests share.

Each reference takes arrays upcast to float64 (the float32 inputs as given: jxent never
renormalises), classes along the last axis (the last two for a joint table), and returns
nats. Options are Python floats: the value jxent computes with in float32 is
``float(np.float32(option))``. ``terms_scale`` gives the magnitude of the terms a measure
sums, the yardstick of float32 rounding near 0.
"""

import math

import numpy as np
from scipy import special

INF = np.inf
NAN = np.nan
ULP = 2.0**-24  # float32 unit roundoff


def f64(x):
    return np.asarray(x, np.float64)


TINY = float(np.finfo(np.float32).tiny)  # below it float32 (and XLA's flush to zero) ends


def assert_close(got, expected, rtol, atol=TINY):
    """Relative closeness in float64 down to float32's smallest normal number;
    infinities and NaN must match exactly."""
    got, expected = np.broadcast_arrays(f64(got), f64(expected))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got[np.isinf(expected)], expected[np.isinf(expected)])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=atol)


def mul0(a, b):
    """a * b with 0 wherever a == 0 (whatever b is)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == 0, 0.0, a * b)


def safe_log(x):
    """log x where x > 0, 0 elsewhere."""
    x = f64(x)
    return np.log(np.where(x > 0, x, 1.0))


def log_softmax(z, axis=-1):
    """log softmax(z) in float64; -inf logits stay -inf (zero probabilities)."""
    z = f64(z)
    lse = special.logsumexp(z, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(z), -INF, z - lse)


def softmax(z, axis=-1):
    return np.exp(log_softmax(z, axis))


def alpha32(option):
    """The order (or weight) jxent computes with in float32: 1 ± 1e-7 is not a float32."""
    return float(np.float32(option))


# --------------------------------------------------------------------------- Shannon


def entropy(p):
    return special.entr(f64(p)).sum(-1)


def cross_entropy(p, q):
    return -special.xlogy(f64(p), f64(q)).sum(-1)


def kl_divergence(p, q):
    # p log(p/q) - p + q: the generalized KL, equal to Σ p log(p/q) on
    # distributions and what jxent computes on any non-negative input.
    return special.kl_div(f64(p), f64(q)).sum(-1)


def gjs_terms(p, q, beta):
    """β p log(p/m) and (1 - β) q log(q/m), m = βp + (1-β)q; a zero weight drops its term."""
    p, q = f64(p), f64(q)
    m = beta * p + (1 - beta) * q
    with np.errstate(invalid="ignore"):  # 0 · inf where a weight is 0
        terms = beta * special.rel_entr(p, m), (1 - beta) * special.rel_entr(q, m)
    return [np.where(w == 0, 0.0, t) for w, t in zip((beta, 1 - beta), terms)]


def generalized_js_divergence(p, q, beta):
    return sum(gjs_terms(p, q, beta)).sum(-1)


def js_divergence(p, q):
    return generalized_js_divergence(p, q, 0.5)


def entropy_from_logits(z):
    return entropy(softmax(z))


def cross_entropy_from_logits(p, q_logits):
    return -mul0(f64(p), log_softmax(q_logits)).sum(-1)


def kl_divergence_from_logits(p_logits, q_logits):
    log_p, log_q = log_softmax(p_logits), log_softmax(q_logits)
    with np.errstate(invalid="ignore"):
        return mul0(np.exp(log_p), log_p - log_q).sum(-1)


def generalized_js_divergence_from_logits(p_logits, q_logits, beta):
    # In log space: with logits up to ±1e4 a float64 softmax underflows where jxent's
    # float32 log-softmax does not.
    log_p, log_q = log_softmax(p_logits), log_softmax(q_logits)
    if beta in (0, 1):
        return np.zeros(log_p.shape[:-1])
    log_m = np.logaddexp(np.log(beta) + log_p, np.log1p(-beta) + log_q)
    with np.errstate(invalid="ignore"):
        terms = [
            w * mul0(np.exp(log_x), log_x - log_m)
            for w, log_x in ((beta, log_p), (1 - beta, log_q))
        ]
    return (terms[0] + terms[1]).sum(-1)


def binary_entropy(p):
    p = f64(p)
    return -(special.xlogy(p, p) + special.xlog1py(1 - p, -p))


def binary_cross_entropy(p, q):
    p, q = f64(p), f64(q)
    return -(special.xlogy(p, q) + special.xlog1py(1 - p, -q))


def binary_kl_divergence(p, q):
    # 1 - p is exact in float64 for float32 p.
    p, q = f64(p), f64(q)
    return special.rel_entr(p, q) + special.rel_entr(1 - p, 1 - q)


def binary_entropy_of(beta):
    """H(β) in nats: the bound of the generalised JS divergence with weight β."""
    return binary_entropy(beta)


# --------------------------------------------------------------------------- Rényi


def renyi_entropy(p, alpha):
    """s/(1-α) log(Σ p^α / s), s = Σp; -Σ p log p at α = 1."""
    p = f64(p)
    mass = p.sum(-1)
    s = p > 0
    log_p = safe_log(p)
    if alpha == 0:
        return mass * np.log(s.sum(-1) / mass)
    if alpha == INF:
        return -mass * np.log(p.max(-1))
    if alpha == 1:
        return -special.xlogy(p, p).sum(-1)
    eps = alpha - 1
    if abs(eps) < 0.5:  # log1p(Σ (p/s)(p^ε - 1)): no cancellation near α = 1
        return -mass * np.log1p(np.sum(p * np.expm1(eps * log_p), -1) / mass) / eps
    lse = special.logsumexp(np.where(s, alpha * log_p, -INF), axis=-1)
    return -mass * (lse - np.log(mass)) / eps


def renyi_divergence(p, q, alpha):
    """s/(α-1) log(Σ p^α q^(1-α) / s) + t - s; +inf for α >= 1 where Q misses P's support."""
    p, q = f64(p), f64(q)
    mass, extra = p.sum(-1), q.sum(-1) - p.sum(-1)
    s, covered = p > 0, (p > 0) & (q > 0)
    x = safe_log(np.where(covered, p, 1.0)) - safe_log(np.where(covered, q, 1.0))
    missing = np.any(s & ~covered, -1)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty P: s = 0
        if alpha == 0:
            return -mass * np.log(np.where(s, q, 0.0).sum(-1) / mass) + extra
        if alpha == INF:
            return np.where(missing, INF, mass * np.where(covered, x, -INF).max(-1) + extra)
        eps = alpha - 1
        if alpha == 1:
            value = special.kl_div(p, q).sum(-1)
        elif abs(eps) < 0.5:  # terms where q = 0 are p (0 - 1) for α < 1
            inner = np.sum(np.where(covered, p * np.expm1(eps * x), -p), -1) / mass
            value = mass * np.log1p(inner) / eps + extra
        else:
            exponent = np.where(covered, safe_log(p) + eps * x, -INF)
            value = mass * (special.logsumexp(exponent, axis=-1) - np.log(mass)) / eps + extra
    return np.where(missing & (alpha >= 1), INF, value)


def renyi_entropy_from_logits(z, alpha):
    """-K(ε)/ε, K(ε) = log Σ p e^{ε log p}, in log space: a float64 softmax of logits up
    to ±1e4 underflows where the log-probabilities are finite."""
    log_p = log_softmax(z)
    if alpha == 0:
        return np.log(np.isfinite(log_p).sum(-1))
    if alpha == INF:
        return -log_p.max(-1)
    return -_cumulant_ratio(log_p, log_p, alpha - 1)


def renyi_divergence_from_logits(p_logits, q_logits, alpha):
    """K(ε)/ε, K(ε) = log Σ p e^{ε x}, x = log p - log q over P's support (the finite
    logits), in log space; +inf for α >= 1 where Q misses P's support."""
    log_p, log_q = log_softmax(p_logits), log_softmax(q_logits)
    support = np.isfinite(log_p)
    missing = np.any(support & np.isneginf(log_q), -1)
    with np.errstate(invalid="ignore"):
        x = np.where(support, log_p - log_q, 0.0)  # +inf off Q's support
    if alpha == 0:
        # -log Q(supp P) from the raw logits: exact (0) when P's support is Q's.
        q_logits = f64(q_logits)
        on_support = np.where(support, q_logits, -INF)
        value = special.logsumexp(q_logits, axis=-1) - special.logsumexp(on_support, axis=-1)
    elif alpha == INF:
        value = np.where(support, x, -INF).max(-1)
    else:
        value = _cumulant_ratio(log_p, x, alpha - 1)
    return np.where(missing & (alpha >= 1), INF, value)


def _cumulant_ratio(log_w, x, eps):
    """log(Σ w e^{ε x} / Σ w) / ε over the finite ``log_w``; Σ w x / Σ w at ε = 0, and a
    series (log1p of Σ w expm1(ε x) / Σ w) where every ε x is small. ``x`` may be +inf
    (a term e^{-∞} = 0 for ε < 0)."""
    keep = np.isfinite(log_w)
    w = np.where(keep, np.exp(np.where(keep, log_w, 0.0)), 0.0)
    total = w.sum(-1)
    if eps == 0:
        return mul0(w, x).sum(-1) / total
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ex = np.where(keep, eps * x, 0.0)
        log_total = special.logsumexp(np.where(keep, log_w, -INF), axis=-1)
        direct = special.logsumexp(np.where(keep, log_w + ex, -INF), axis=-1) - log_total
        series = np.log1p(mul0(w, np.expm1(np.minimum(ex, 1.0))).sum(-1) / total)
    small = np.all(np.abs(ex) < 0.5, -1) & (abs(eps) < 0.5)
    return np.where(small, series, direct) / eps


# --------------------------------------------------------------------------- joint tables


def marginals(joint):
    p = f64(joint)
    return p.sum(-1), p.sum(-2)


def mutual_information(joint):
    """Σ p log(p/r) - p + r, r = p_x p_y: the generalized KL from the product of the
    marginals (the KL on a table that sums to 1); every term >= 0."""
    p = f64(joint)
    px, py = marginals(p)
    return special.kl_div(p, px[..., :, None] * py[..., None, :]).sum((-2, -1))


def conditional_entropy(joint, given=-1):
    """-Σ p log(p / p_given): H(X|Y) with ``given=-1``, H(Y|X) with ``given=-2``."""
    p = f64(joint)
    marginal = p.sum(-2 if given in (-1, p.ndim - 1) else -1, keepdims=True)
    return -special.xlogy(p, p / np.where(marginal > 0, marginal, 1.0)).sum((-2, -1))


def joint_entropies(joint):
    """H(X, Y), H(X), H(Y) of a [..., X, Y] table, as given."""
    p = f64(joint)
    px, py = marginals(p)
    return special.entr(p).sum((-2, -1)), entropy(px), entropy(py)


# --------------------------------------------------------------------------- scales, checks


def term_scale(p, q):
    """Σ (p + q) |log(p/q)| where both are positive, on P and Q normalised: float32
    log-ratios of size |x| are known to ulp(|x|), and a sum of terms of both signs to a
    few ulps of the terms' magnitude (normalising costs a few ulps of 1), not of the
    result, which may be near 0."""
    p, q = f64(p), f64(q)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    c = (p > 0) & (q > 0)
    return np.sum(
        (p + q) * np.abs(safe_log(np.where(c, p, 1.0)) - safe_log(np.where(c, q, 1.0))), -1
    )


def gjs_scale(p, q, beta):
    """1 + magnitude of the terms: the float32 sum is accurate to a few ulps of it."""
    return 1 + sum(np.abs(t) for t in gjs_terms(p, q, beta)).sum(-1)


def in_base(nats, base):
    return nats if base is None else nats / math.log(base)


def assert_matches(got, expected, rtol, atol=0.0):
    """|got - expected| <= rtol |expected| + atol elementwise (atol may be an array);
    infinities must match, and nothing may be NaN where the reference is not."""
    got, expected = f64(got), f64(expected)
    got, expected, atol = (np.array(x) for x in np.broadcast_arrays(got, expected, atol))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    got, expected, atol = got[finite], expected[finite], atol[finite]
    error, bound = np.abs(got - expected), rtol * np.abs(expected) + atol
    worst = np.argmax(error - bound) if error.size else None
    assert np.all(error <= bound), (
        f"error {error[worst]:.3g} > bound {bound[worst]:.3g} "
        f"(got {got[worst]!r}, expected {expected[worst]!r})"
    )
