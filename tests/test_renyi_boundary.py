"""Derivatives of the Rényi entropy and divergence in probabilities that are exactly 0.

The rule: a probability cannot go below 0, so the derivative in an entry that is 0
is the one-sided one, the limit as the entry rises from 0; ±inf where that limit
is infinite, and where the value is +inf and stays so, 0.

The references are float64 and independent of jxent. With s = Σp, t = Σq and
S = Σ p^α q^(1-α), the documented formula is D = s/(α-1) log(S/s) + t - s (and
H = s/(1-α) log(S/s) with q = 1). In entries that are not 0 the reference is
jax.grad of that closed form. In an entry that is 0 it is the chain rule through
(s, S, t), with jax.grad of D(s, S, t) and the one-sided limit of ∂S/∂p_k =
α p^(α-1) q^(1-α) (or ∂S/∂q_k = (1-α) p^α q^(-α)) as the entry rises from 0;
one-sided finite differences of the closed form in NumPy check that limit.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jxent

INF = np.inf
ALPHAS = [0.5, 0.9, 1.0, 1.1, 2.0, 3.0]

# (p, q) over four classes; class 2 is the edge.
ZERO_P = ([0.5, 0.3, 0.0, 0.2], [0.3, 0.3, 0.2, 0.2])  # p_k = 0 < q_k
ZERO_BOTH = ([0.5, 0.3, 0.0, 0.2], [0.4, 0.4, 0.0, 0.2])  # p_k = q_k = 0
ZERO_Q = ([0.5, 0.3, 0.1, 0.1], [0.4, 0.4, 0.0, 0.2])  # p_k > 0 = q_k
# Unnormalised (s = 1.3, t = 0.7), and two zero classes of both kinds.
UNNORMALISED = ([0.65, 0.39, 0.0, 0.26], [0.21, 0.21, 0.14, 0.14])
TWO_ZEROS = ([0.6, 0.0, 0.0, 0.4], [0.3, 0.3, 0.0, 0.4])
# Q gives P's support no mass: D = +inf at every order.
MISSED = ([0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.6, 0.4])
POINTS = [ZERO_P, ZERO_BOTH, ZERO_Q, UNNORMALISED, TWO_ZEROS, MISSED]


def divergence(p, q, alpha):
    return jxent.renyi_divergence(p, q, alpha)


def entropy(p, alpha):
    return jxent.renyi_entropy(p, alpha)


# One compilation per dtype: α is traced.
@jax.jit
def derivatives(p, q, alpha):
    """Reverse and forward mode, for D in (p, q) and for H in p."""
    return {
        "rev": (jax.grad(divergence, (0, 1))(p, q, alpha), jax.grad(entropy)(p, alpha)),
        "fwd": (jax.jacfwd(divergence, (0, 1))(p, q, alpha), jax.jacfwd(entropy)(p, alpha)),
    }


@jax.jit
def hessians(p, q, alpha):
    return jax.hessian(divergence, (0, 1))(p, q, alpha), jax.hessian(entropy)(p, alpha)


@jax.jit
def masked_derivatives(p, q, alpha, where):
    d = lambda p, q: jxent.renyi_divergence(p, q, alpha, where=where)  # noqa: E731
    h = lambda p: jxent.renyi_entropy(p, alpha, where=where)  # noqa: E731
    return jax.grad(d, (0, 1))(p, q), jax.grad(h)(p)


@jax.jit
def in_alpha(p, q, alpha):
    """∂D/∂α and ∂²D/∂α∂p."""
    return jax.grad(divergence, 2)(p, q, alpha), jax.jacfwd(jax.grad(divergence), 2)(p, q, alpha)


# --------------------------------------------------------------------------- references


def closed_divergence(p, q, alpha):
    """The closed form, differentiable in the entries that are not 0 (jnp, float64)."""
    s, t = p.sum(), q.sum()
    on = (p > 0) & (q > 0)
    pp, qq = jnp.where(on, p, 1.0), jnp.where(on, q, 1.0)
    if alpha == 1:
        return jnp.sum(jnp.where(on, pp * jnp.log(pp / qq), 0.0)) + t - s
    power = jnp.sum(jnp.where(on, pp**alpha * qq ** (1 - alpha), 0.0))
    return s / (alpha - 1) * jnp.log(power / s) + t - s


def closed_entropy(p, alpha):
    s, on = p.sum(), p > 0
    pp = jnp.where(on, p, 1.0)
    if alpha == 1:
        return -jnp.sum(jnp.where(on, pp * jnp.log(pp), 0.0))
    return s / (1 - alpha) * jnp.log(jnp.sum(jnp.where(on, pp**alpha, 0.0)) / s)


def numpy_divergence(p, q, alpha):
    """The closed form in NumPy float64 (for finite differences): +inf for α >= 1
    where Q misses P's support, 0^(1-α) = 0 for α < 1."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    s, t, on = p.sum(), q.sum(), p > 0
    if np.any(on & (q == 0)) and alpha >= 1:
        return INF
    with np.errstate(divide="ignore"):
        if alpha == 1:
            return float(np.sum(p[on] * np.log(p[on] / q[on])) + t - s)
        power = np.sum(p[on] ** alpha * q[on] ** (1 - alpha))
        return float(s / (alpha - 1) * np.log(power / s) + t - s)


def numpy_entropy(p, alpha):
    p = np.asarray(p, np.float64)
    s, on = p.sum(), p > 0
    if alpha == 1:
        return float(-np.sum(p[on] * np.log(p[on])))
    return float(s / (1 - alpha) * np.log(np.sum(p[on] ** alpha) / s))


def _through_power(d_s, d_t, d_power, power_slope):
    """d_s + d_t + d_power · power_slope, where an infinite power_slope makes the sum
    infinite with the sign of d_power (the other terms are finite)."""
    if np.isinf(power_slope):
        return np.sign(d_power) * INF
    return d_s + d_t + d_power * power_slope


def _formula_partials(p, q, alpha):
    """∂D/∂s, ∂D/∂S, ∂D/∂t of s/(α-1) log(S/s) + t - s at the point, by jax.grad."""
    s, t = p.sum(), q.sum()
    on = (p > 0) & (q > 0)
    power = np.sum(p[on] ** alpha * q[on] ** (1 - alpha))
    formula = lambda s, S, t: s / (alpha - 1) * jnp.log(S / s) + t - s  # noqa: E731
    return [float(g) for g in jax.grad(formula, (0, 1, 2))(s, power, t)]


def one_sided_divergence(p, q, alpha, k, wrt):
    """The one-sided derivative of D in entry k of ``wrt`` ("p" or "q"), that entry 0."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    uncovered = (p > 0) & (q == 0)
    if np.any(uncovered) and alpha >= 1:  # D = +inf
        # In q_k = 0 < p_k, the only such class, a step makes D finite; else D stays +inf.
        return -INF if wrt == "q" and p[k] > 0 and uncovered.sum() == 1 else 0.0
    if wrt == "q":
        if p[k] == 0:  # q_k enters through t only
            return 1.0
        # ∂S/∂q_k = (1-α) p_k^α q_k^(-α) -> +inf as q_k -> 0+ (0 < α < 1).
        return _through_power(0.0, 1.0, _formula_partials(p, q, alpha)[1], INF)
    if alpha == 1:  # p log(p/q) - p + q: slope log(p/q) -> -inf, or +inf where q = 0
        return -INF if q[k] > 0 else INF
    d_s, d_power, _ = _formula_partials(p, q, alpha)
    if q[k] > 0:  # α p^(α-1) q^(1-α) -> +inf (α < 1) or 0 (α > 1)
        return _through_power(d_s, 0.0, d_power, INF if alpha < 1 else 0.0)
    # q_k = 0: the term p^α 0^(1-α) is 0 for α < 1; for α > 1 D jumps to +inf.
    return d_s if alpha < 1 else INF


def one_sided_entropy(p, alpha):
    """The one-sided derivative of H in an entry that is 0: via s and S = Σ p^α."""
    p = np.asarray(p, np.float64)
    if alpha <= 1:  # α p^(α-1) -> +inf (and -log p - 1 -> +inf at α = 1)
        return INF
    s, power = p.sum(), np.sum(p[p > 0] ** alpha)
    formula = lambda s, S: s / (1 - alpha) * jnp.log(S / s)  # noqa: E731
    return float(jax.grad(formula)(s, power))  # ∂S/∂p_k -> 0


def reference_gradients(p, q, alpha):
    """(∂D/∂p, ∂D/∂q, ∂H/∂p): jax.grad of the closed forms in the entries that are not
    0, the one-sided limits in those that are; float64 whatever the test's dtype."""
    with jax.enable_x64(True):
        return _reference_gradients(np.asarray(p, np.float64), np.asarray(q, np.float64), alpha)


def _reference_gradients(p, q, alpha):
    if numpy_divergence(p, q, alpha) == INF:  # 0 where D stays +inf: see one_sided_divergence
        gp, gq = np.zeros(len(p)), np.zeros(len(p))
    else:
        gp, gq = (np.array(g) for g in jax.grad(closed_divergence, (0, 1))(p, q, alpha))
    gh = np.array(jax.grad(closed_entropy)(p, alpha))
    for k in range(len(p)):
        if p[k] == 0:
            gp[k] = one_sided_divergence(p, q, alpha, k, "p")
            gh[k] = one_sided_entropy(p, alpha)
        if q[k] == 0:
            gq[k] = one_sided_divergence(p, q, alpha, k, "q")
    return gp, gq, gh


def assert_same(got, want, rtol, atol=0.0):
    """Equal infinities (with their sign), close finite values, no NaN."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert not np.isnan(got).any(), got
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{got} {want}")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{got} {want}")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- the references

STEPS = 10.0 ** -np.arange(2, 11)


def difference_quotients(f, x, k):
    """(f(x + h e_k) - f(x)) / h for h in STEPS: one-sided, from x_k = 0."""
    x = np.asarray(x, np.float64)
    moved = [x + h * (np.arange(len(x)) == k) for h in STEPS]
    with np.errstate(invalid="ignore"):
        return np.array([(f(m) - f(x)) / h for m, h in zip(moved, STEPS)])


def assert_converge(quotients, limit, rate):
    """The quotients tend to ``limit``, like h^rate, or without bound with its sign."""
    if np.isinf(limit):
        if np.all(np.isinf(quotients)):  # a jump to or from +inf
            np.testing.assert_array_equal(quotients, limit)
        else:  # a power or log of h
            assert np.all(np.sign(quotients) == np.sign(limit)), quotients
            assert np.all(np.diff(np.abs(quotients)) > 0), quotients
            assert abs(quotients[-1]) > 4 * abs(quotients[0]), quotients
        return
    # Steps down to 1e-6 only: below, the roundoff of the quotients (~1e-16/h) shows.
    errors = np.abs(quotients - limit)[:5]
    fitted = np.polyfit(np.log(STEPS[:5]), np.log(errors), 1)[0]
    assert abs(fitted - rate) < 0.05, (fitted, rate, errors)
    assert rate < 1 or errors[-1] < 1e-4 * (1 + abs(limit)), errors


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize(("point", "wrt"), [(ZERO_P, "p"), (ZERO_BOTH, "p"), (ZERO_Q, "q")])
def test_one_sided_references_are_the_limits_of_finite_differences(point, wrt, alpha, x64):
    p, q = (np.asarray(x, np.float64) for x in point)
    if wrt == "p":
        quotients = difference_quotients(lambda x: numpy_divergence(x, q, alpha), p, 2)
    else:
        quotients = difference_quotients(lambda x: numpy_divergence(p, x, alpha), q, 2)
    # Like h^(α-1) for 1 < α < 2 where q_k > 0: α p^(α-1) q^(1-α) has an infinite
    # second derivative there.
    rate = min(alpha - 1, 1.0) if (wrt == "p" and q[2] > 0) else 1.0
    assert_converge(quotients, one_sided_divergence(p, q, alpha, 2, wrt), rate)


def test_entropy_one_sided_references_are_the_limits_of_finite_differences(x64):
    p = np.array(ZERO_P[0])
    for alpha in ALPHAS:
        quotients = difference_quotients(lambda x, alpha=alpha: numpy_entropy(x, alpha), p, 2)
        assert_converge(quotients, one_sided_entropy(p, alpha), min(alpha - 1, 1.0))


# --------------------------------------------------------------------------- first derivatives


@pytest.mark.parametrize("alpha", ALPHAS)
def test_gradients_at_zero_probabilities_are_one_sided(alpha, x64):
    """The reported bug: the slope in a zero entry came from the mass alone (finite and
    wrong), e.g. p = [.5, .5, 0], q = [.4, .4, .2], α = 2 has -1.78 in p_2."""
    for point in POINTS:
        p, q = (jnp.asarray(x, jnp.float64) for x in point)
        want_p, want_q, want_h = reference_gradients(p, q, alpha)
        got = derivatives(p, q, alpha)
        for mode in ("rev", "fwd"):
            (gp, gq), gh = got[mode]
            chex.assert_type((gp, gq, gh), jnp.float64)
            assert_same(gp, want_p, 1e-9, 1e-12)
            assert_same(gq, want_q, 1e-9, 1e-12)
            assert_same(gh, want_h, 1e-9, 1e-12)


def test_the_reported_examples(x64):
    # With a fourth class, p = q = 0, that changes no value (+inf for α >= 1: a jump).
    p, q = jnp.array([0.5, 0.5, 0.0, 0.0]), jnp.array([0.4, 0.4, 0.2, 0.0])
    (gp, _), _ = derivatives(p, q, 2.0)["rev"]
    assert_same(gp, [np.log(1.25)] * 2 + [np.log(1.25) - 2, INF], 1e-12)
    p, q = jnp.array([0.5, 0.5, 0.0, 0.0]), jnp.array([0.4, 0.6, 0.0, 0.0])
    slope = (np.log(np.sqrt(0.2) + np.sqrt(0.3)) - 0.5) / -0.5  # (log(S/s) - α)/(α - 1)
    (gp, _), gh = derivatives(p, q, 0.5)["rev"]
    np.testing.assert_allclose(gp[2:], [slope, slope], rtol=1e-12)
    assert np.all(gh[2:] == INF)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_float32_gradients_match_float64_and_forward_matches_reverse(alpha):
    for point in POINTS:
        p, q = (jnp.asarray(x, jnp.float32) for x in point)
        got = derivatives(p, q, alpha)
        chex.assert_trees_all_equal_dtypes(got["rev"], (((p, p), p)))
        want = reference_gradients(np.float64(p), np.float64(q), float(np.float32(alpha)))
        (gp, gq), gh = got["rev"]
        for g, w in zip((gp, gq, gh), want):
            assert_same(g, w, 2e-5, 2e-6)
        chex.assert_trees_all_close(got["fwd"], got["rev"], rtol=1e-5, atol=1e-6)


def test_order_zero_takes_the_limit_from_above_and_jumps_are_infinite(x64):
    """At α = 0 a class entering P's support is a jump (H: log of the support size up;
    D: -log Q(supp P) down where q_k > 0): the one-sided derivative is ±inf, which is
    also the α -> 0+ limit of the slopes. Elsewhere it is the derivative of
    -s log(Q(supp P)/s) + t - s, finite."""
    p, q = jnp.array([0.7, 0.3, 0.0, 0.0]), jnp.array([0.8, 0.0, 0.2, 0.0])
    s, covered = 1.0, 0.8  # Q(supp P)
    (gp, gq), gh = derivatives(p, q, 0.0)["rev"]
    # In p: -log(Q(supp P)/s), the derivative in s, where nothing jumps.
    stay = -np.log(covered / s)
    assert_same(gp, [stay, stay, -INF, stay], 1e-12)
    # In q: 1 - s/Q(supp P) on P's support (q_1 = 0 < p_1 included), 1 off it.
    assert_same(gq, [1 - s / covered, 1 - s / covered, 1, 1], 1e-12)
    assert_same(gh, [np.log(2) - 1] * 2 + [INF, INF], 1e-12)
    # The same signs just above α = 0, and at α = 1e-3 the finite slopes are close.
    (gp_above, _), gh_above = derivatives(p, q, 1e-3)["rev"]
    np.testing.assert_array_equal(np.sign(gp_above), np.sign(gp))
    np.testing.assert_array_equal(np.isinf(gh_above), np.isinf(gh))
    finite = np.isfinite(gp)
    np.testing.assert_allclose(gp_above[finite], gp[finite], rtol=1e-2)
    # The jump of D where q_k > 0 is downwards.
    d = numpy_divergence(np.array(p), np.array(q), 0.0)
    moved = np.array(p) + 1e-9 * (np.arange(4) == 2)
    assert numpy_divergence(moved, np.array(q), 0.0) < d - 0.1


def test_order_infinity_keeps_its_subgradient(x64):
    """D_∞ = s max log(p/q) + t - s: a class with p_k = 0 < q_k is not the max, so its
    slope is max log(p/q) - 1; with q_k = 0 too, D jumps to +inf. H_∞ = -s log max p."""
    p, q = jnp.array([0.5, 0.3, 0.0, 0.2]), jnp.array([0.4, 0.3, 0.2, 0.1])
    (gp, _), gh = derivatives(p, q, jnp.inf)["rev"]
    top = np.log(0.2 / 0.1)
    assert gp[2] == pytest.approx(top - 1, rel=1e-12)
    assert gh[2] == pytest.approx(-np.log(0.5), rel=1e-12)
    (gp, _), _ = derivatives(p, q.at[2].set(0.0), jnp.inf)["rev"]
    assert gp[2] == INF
    # Ties keep the current choice of subgradient (unchanged by this rule).
    tied = jnp.array([0.4, 0.4, 0.0, 0.2])
    (gp, _), _ = derivatives(tied, jnp.array([0.2, 0.2, 0.3, 0.3]), jnp.inf)["rev"]
    assert np.all(np.isfinite(gp))


def test_empty_p_and_masked_classes(x64):
    # P = 0: D = t; any step into class k is -inf where q_k > 0 (log h), +inf where q_k = 0.
    p, q = jnp.zeros(4), jnp.array([0.2, 0.8, 0.0, 0.0])
    (gp, gq), gh = derivatives(p, q, 2.0)["rev"]
    assert_same(gp, [-INF, -INF, INF, INF], 0)
    assert_same(gq, [1.0] * 4, 0)
    assert_same(gh, [INF] * 4, 0)
    # A masked class is out of the measure: gradient 0, whatever its value; the rest
    # as if it were sliced away.
    p, q = jnp.array([0.5, 0.5, 0.0, 0.9]), jnp.array([0.4, 0.4, 0.2, 0.1])
    keep = jnp.array([True, True, True, False])
    for alpha in ALPHAS:
        (gp, gq), gh = masked_derivatives(p, q, alpha, keep)
        for got, want in zip((gp, gq, gh), reference_gradients(p[:3], q[:3], alpha)):
            assert got[3] == 0
            assert_same(got[:3], want, 1e-9, 1e-12)


GRAD = jax.grad(divergence, (0, 1))


def test_vmap_over_rows_and_orders(x64):
    ps, qs = (jnp.asarray([point[i] for point in POINTS], jnp.float64) for i in (0, 1))
    alphas = jnp.array([0.5, 1.0, 2.0, 3.0, 0.9, 0.5])
    batched = jax.jit(jax.vmap(GRAD))(ps, qs, alphas)
    for i in range(len(POINTS)):
        (gp, gq), _ = derivatives(ps[i], qs[i], alphas[i])["rev"]
        chex.assert_trees_all_close((batched[0][i], batched[1][i]), (gp, gq), rtol=1e-12)


def test_bf16_inputs():
    # Computed in float32; reverse-mode gradients come back in bf16.
    p, q = (jnp.asarray(x, jnp.bfloat16) for x in ZERO_P)
    got = jax.jit(GRAD)(p, q, 2.0)
    chex.assert_type(got, jnp.bfloat16)
    want = reference_gradients(np.float64(p), np.float64(q), 2.0)[:2]
    chex.assert_trees_all_close(got, want, rtol=1e-2, atol=1e-2)
    assert float(got[0][2]) < -1


# --------------------------------------------------------------------------- second derivatives


@pytest.mark.parametrize(
    ("point", "alpha"),
    [(ZERO_P, 2.0), (ZERO_P, 3.0), (UNNORMALISED, 3.0), (ZERO_BOTH, 0.5), (ZERO_BOTH, 0.9)],
)
def test_hessian_at_zero_probabilities_matches_differences_of_the_gradient(point, alpha, x64):
    """Where the one-sided first derivative is finite, so is the second: rows of
    one-sided differences of the reference gradient (steps into the domain)."""
    p, q = (np.asarray(x, np.float64) for x in point)
    (dpp, dpq), (dqp, dqq) = hessians(jnp.asarray(p), jnp.asarray(q), alpha)[0]
    got = np.block([[dpp, dpq], [dqp, dqq]])

    def gradient(x):  # the reference's, D in p and q, flat
        return np.concatenate(reference_gradients(x[:4], x[4:], alpha)[:2])

    x, h = np.concatenate([p, q]), 1e-6
    want = np.stack([(gradient(x + h * e) - gradient(x)) / h for e in np.eye(8)], axis=1)
    np.testing.assert_allclose(got, got.T, rtol=1e-12, atol=1e-12)
    # Where a step turns a finite slope infinite (q_k rising from 0 under p_k = 0 with
    # α < 1), the second derivative is not finite and is left out.
    finite = np.isfinite(want)
    assert finite.sum() >= 60
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hessians_are_never_nan_and_infinite_where_the_curvature_is(dtype):
    with jax.enable_x64(dtype == np.float64):
        for alpha in [0.0, *ALPHAS, 1.5, jnp.inf]:
            for point in [*POINTS, ([0.0] * 4, [0.2, 0.8, 0.0, 0.0])]:
                p, q = (jnp.asarray(x, dtype) for x in point)
                ((dpp, _), _), dhh = got = hessians(p, q, alpha)
                assert not any(np.isnan(x).any() for x in jax.tree.leaves(got)), (alpha, point)
                if alpha in (1.1, 1.5) and point is ZERO_P:
                    # α p^(α-1) q^(1-α) has an infinite slope at 0 for 1 < α < 2.
                    assert dpp[2, 2] == INF and dhh[2, 2] == -INF


def test_mixed_derivative_in_alpha(x64):
    """∂²D/∂α∂p_k at p_k = 0 is ∂/∂α of the one-sided slope; the α-derivative itself
    is that of the closed form (the zero class does not enter it)."""
    p, q = jnp.array(ZERO_P[0]), jnp.array(ZERO_P[1])
    d_alpha, mixed = in_alpha(p, q, 2.0)
    step = 1e-5
    ends = [closed_divergence(p, q, a) for a in (2.0 + step, 2.0 - step)]
    central = (ends[0] - ends[1]) / (2 * step)
    np.testing.assert_allclose(d_alpha, central, rtol=1e-7)
    slopes = [one_sided_divergence(p, q, a, 2, "p") for a in (2.0 + step, 2.0 - step)]
    np.testing.assert_allclose(mixed[2], (slopes[0] - slopes[1]) / (2 * step), rtol=1e-6)
