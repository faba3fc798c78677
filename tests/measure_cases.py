"""Shared inputs and float64 references for the measure tests."""

import numpy as np
from scipy import special

import jxent

INF = np.inf
NAN = np.nan

# name -> (function, names of its array arguments)
MEASURES = {
    "entropy": (jxent.entropy, ("probs",)),
    "cross_entropy": (jxent.cross_entropy, ("p", "q")),
    "kl_divergence": (jxent.kl_divergence, ("p", "q")),
    "js_divergence": (jxent.js_divergence, ("p", "q")),
    "entropy_from_logits": (jxent.entropy_from_logits, ("logits",)),
    "cross_entropy_from_logits": (jxent.cross_entropy_from_logits, ("p", "q_logits")),
    "kl_divergence_from_logits": (jxent.kl_divergence_from_logits, ("p_logits", "q_logits")),
}
BINARY = {
    "binary_entropy": (jxent.binary_entropy, ("p",)),
    "binary_cross_entropy": (jxent.binary_cross_entropy, ("p", "q")),
    "binary_kl_divergence": (jxent.binary_kl_divergence, ("p", "q")),
}
ALL = {**MEASURES, **BINARY}
DIVERGENCES = ["kl_divergence", "js_divergence", "kl_divergence_from_logits"]
PROB_MEASURES = ["entropy", "cross_entropy", "kl_divergence", "js_divergence"]
LOGIT_MEASURES = ["entropy_from_logits", "cross_entropy_from_logits", "kl_divergence_from_logits"]


# --------------------------------------------------------------------------- inputs


def random_inputs(rng, shape, *, zeros=0.3, scale=30.0, alpha=1.0):
    """Float32 P, Q (probabilities) and their logits, with exact zeros / -inf.

    Q's zeros are a subset of P's, so every measure is finite; one class per
    row is never zeroed. Probabilities are renormalised after zeroing.
    """
    n = shape[-1]
    kept = rng.integers(n, size=shape[:-1])[..., None] == np.arange(n)
    absent_q = (rng.random(shape) < zeros) & ~kept
    absent_p = absent_q | ((rng.random(shape) < zeros) & ~kept)

    def probs(absent):
        x = rng.dirichlet(np.full(n, alpha), size=shape[:-1])
        x = np.where(absent, 0.0, np.maximum(x, 1e-30))  # no float32 underflow
        return (x / x.sum(-1, keepdims=True)).astype(np.float32)

    def logits(absent):
        z = (rng.uniform(-1.0, 1.0, shape) * scale).astype(np.float32)
        return np.where(absent, -INF, z).astype(np.float32)

    return {
        "p": probs(absent_p),
        "q": probs(absent_q),
        "zp": logits(absent_p),
        "zq": logits(absent_q),
    }


# Which of random_inputs' arrays each measure takes.
INPUT_KEYS = {
    "entropy": ("p",),
    "cross_entropy": ("p", "q"),
    "kl_divergence": ("p", "q"),
    "js_divergence": ("p", "q"),
    "entropy_from_logits": ("zp",),
    "cross_entropy_from_logits": ("p", "zq"),
    "kl_divergence_from_logits": ("zp", "zq"),
}


def select(name, inputs):
    return tuple(inputs[k] for k in INPUT_KEYS[name])


def binary_inputs(rng, size):
    edges = [0.0, 1.0, 1e-5, 1e-7, 1 - 1e-5, 0.5, 0.25, 1e-5]
    p = np.concatenate([edges, rng.random(size), 10 ** rng.uniform(-7, -1, size)])
    edges_q = [1e-5, 1 - 1e-5, 2e-5, 1e-5, 0.5, 1e-5, 0.75, 0.5]
    q = np.concatenate([edges_q, rng.random(size), 10 ** rng.uniform(-7, -1, size)])
    return p.astype(np.float32), np.clip(q, 1e-7, 1 - 1e-7).astype(np.float32)


# --------------------------------------------------------------------------- float64 references


def f64(x):
    return np.asarray(x, np.float64)


def mul0(a, b):
    """a * b with 0 wherever a == 0 (whatever b is)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == 0, 0.0, a * b)


def ref_log_softmax(z):
    z = f64(z)
    lse = special.logsumexp(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(z), -INF, z - lse)


def reference(name, *args):
    """Float64 value of measure ``name`` on the given (float32) arguments, in nats."""
    args = [f64(a) for a in args]
    if name == "entropy":
        return special.entr(args[0]).sum(-1)
    if name == "cross_entropy":
        return -special.xlogy(*args).sum(-1)
    if name == "kl_divergence":
        # p log(p/q) - p + q: the generalized KL, equal to Σ p log(p/q) on
        # distributions and what jxent computes on any non-negative input.
        return special.kl_div(*args).sum(-1)
    if name == "js_divergence":
        p, q = args
        m = 0.5 * (p + q)
        return 0.5 * (special.rel_entr(p, m) + special.rel_entr(q, m)).sum(-1)
    if name == "entropy_from_logits":
        return special.entr(np.exp(ref_log_softmax(args[0]))).sum(-1)
    if name == "cross_entropy_from_logits":
        return -mul0(args[0], ref_log_softmax(args[1])).sum(-1)
    if name == "kl_divergence_from_logits":
        log_p, log_q = ref_log_softmax(args[0]), ref_log_softmax(args[1])
        with np.errstate(invalid="ignore"):
            return mul0(np.exp(log_p), log_p - log_q).sum(-1)
    p = args[0]
    if name == "binary_entropy":
        return -(special.xlogy(p, p) + special.xlog1py(1 - p, -p))
    q = args[1]
    if name == "binary_cross_entropy":
        return -(special.xlogy(p, q) + special.xlog1py(1 - p, -q))
    if name == "binary_kl_divergence":
        # 1 - p is exact in float64 for float32 p.
        return special.rel_entr(p, q) + special.rel_entr(1 - p, 1 - q)
    raise KeyError(name)


def ref_renyi_entropy(p, alpha):
    """s/(1-α) log(Σ p^α / s), s = Σp; -Σ p log p at α = 1."""
    p = f64(p)
    mass = p.sum(-1)
    s = p > 0
    log_p = np.log(np.where(s, p, 1.0))
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


def ref_renyi_divergence(p, q, alpha):
    """s/(α-1) log(Σ p^α q^(1-α) / s) + t - s; +inf for α >= 1 where Q misses P's support."""
    p, q = f64(p), f64(q)
    mass, extra = p.sum(-1), q.sum(-1) - p.sum(-1)
    s, covered = p > 0, (p > 0) & (q > 0)
    x = np.log(np.where(covered, p, 1.0)) - np.log(np.where(covered, q, 1.0))
    missing = np.any(s & ~covered, -1)
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
        exponent = np.where(covered, np.log(np.where(covered, p, 1.0)) + eps * x, -INF)
        value = mass * (special.logsumexp(exponent, axis=-1) - np.log(mass)) / eps + extra
    return np.where(missing & (alpha >= 1), INF, value)


RTOL = {"entropy": 2e-6, "cross_entropy": 2e-6, "kl_divergence": 1e-5, "js_divergence": 1e-5}
RTOL |= {"entropy_from_logits": 2e-6, "cross_entropy_from_logits": 2e-6}
RTOL |= {"kl_divergence_from_logits": 1e-5}
RTOL |= {"binary_entropy": 2e-6, "binary_cross_entropy": 2e-6, "binary_kl_divergence": 1e-5}


def assert_matches(got, expected, rtol, atol=0.0):
    """|got - expected| <= rtol |expected| + atol (atol may be an array); inf must match."""
    got, expected = f64(got), f64(expected)
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    finite = np.isfinite(expected)
    error = np.abs(got - expected)[finite]
    bound = (
        (rtol * np.abs(expected) + atol)[finite]
        if np.ndim(atol)
        else (rtol * np.abs(expected[finite]) + atol)
    )
    worst = np.argmax(error - bound) if error.size else None
    assert np.all(error <= bound), (
        f"error {error[worst]:.3g} > bound {bound[worst]:.3g} "
        f"(got {got[finite][worst]!r}, expected {expected[finite][worst]!r})"
    )
