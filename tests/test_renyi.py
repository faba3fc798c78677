"""Rényi entropy and divergence: accuracy near α = 1, the special orders, monotonicity
in α, the derivative in α, logits against probabilities, options and bad input.

Values against float64 over α from 0 to ∞ (through α = 1; edges, unnormalised input,
1000 classes), check_grads in p, q and α, and transforms are driven by the case table
(measure_cases.CASES) in test_measures.py, test_measures_grads.py and
test_measures_api.py. The float64 references are reference64.py's: float64 NumPy/SciPy
from the float32 inputs upcast (never renormalised, as jxent does not), at the float32
value of α that jxent sees.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference64 as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from measure_cases import GRID, NEAR_ONE, random_inputs

import jxent

INF = np.inf
ULP = ref.ULP
SETTINGS = settings(deadline=None, max_examples=30, derandomize=True, database=None)

# Jitted once: eager dispatch compiles every operation for every new shape, which
# would take most of this file's time budget.
_static = ("axis", "base")
H = jax.jit(jxent.renyi_entropy, static_argnames=_static)
D = jax.jit(jxent.renyi_divergence, static_argnames=_static)
HZ = jax.jit(jxent.renyi_entropy_from_logits, static_argnames=_static)
DZ = jax.jit(jxent.renyi_divergence_from_logits, static_argnames=_static)
ENTROPY, KL = jax.jit(jxent.entropy), jax.jit(jxent.kl_divergence)
ref_entropy, ref_divergence, alpha32 = ref.renyi_entropy, ref.renyi_divergence, ref.alpha32
assert_close, term_scale = ref.assert_matches, ref.term_scale


def f64(x):
    return np.asarray(x, np.float64)


def tables(rng, shape, zeros=0.3, concentration=1.0):
    """Float32 P, Q with ~``zeros`` exact zeros, renormalised; Q's zeros are a
    subset of P's (so supp P ⊆ supp Q), and one class per row is never zero."""
    inputs = random_inputs(rng, shape, zeros=zeros, alpha=concentration, logits=False)
    return inputs["p"], inputs["q"]


def interior(rng, n, size=()):
    """Float64 probabilities all >= ~0.05 (for finite differences)."""
    x = 0.05 + rng.dirichlet(np.ones(n), size=size)
    return x / x.sum(-1, keepdims=True)


def normalise(p):
    p = f64(p)
    return p / p.sum(-1, keepdims=True)


def relative_error(got, expected):
    return np.max(np.abs(f64(got) - expected) / np.abs(expected))


def logits(rng, shape, drop=0.3):
    """Float32 logits with -inf (never in column 0)."""
    z = (rng.normal(size=shape) * 3.0).astype(np.float32)
    absent = (rng.random(shape) < drop) & (np.arange(shape[-1]) > 0)
    return np.where(absent, -INF, z).astype(np.float32)


softmax64 = ref.softmax


# --------------------------------------------------------------------------- values


# Worst relative errors measured for |α - 1| <= 1e-3 (α = 1 ± 1e-3, 1e-4, 1e-5,
# 1e-6, 1e-7 and 1) over 200 seeds of 64 rows (16 and 100 classes), purely
# relative, no absolute slack: entropy 2.7e-7; divergence 1.3e-6 (one row of
# 12,800, D = 0.158, and the same at α = 1 exactly: 2 ulps from the float32 sums
# that normalise P and Q; otherwise below 8.5e-7). These seeded tables stay
# within 1e-6.
@pytest.mark.parametrize("alpha", NEAR_ONE)
def test_near_alpha_one_is_accurate_to_1e_6_relative(alpha, rng):
    for _ in range(4):
        p, q = tables(rng, (64, 16))
        assert relative_error(H(p, alpha), ref_entropy(p, alpha32(alpha))) < 1e-6
        assert relative_error(D(p, q, alpha), ref_divergence(p, q, alpha32(alpha))) < 1e-6


def test_special_orders(rng):
    p, q = tables(rng, (64, 16))
    pn, qn = normalise(p), normalise(q)
    support = pn > 0
    assert_close(H(p, 0.0), np.log(support.sum(-1)), 1e-6)
    assert_close(H(p, jnp.inf), -np.log(pn.max(-1)), 1e-6, ULP)
    assert_close(H(p, 1.0), ENTROPY(pn.astype(np.float32)), 1e-6)
    assert_close(H(p, 2.0), -np.log(np.sum(pn**2, -1)), 1e-6)  # collision entropy
    assert_close(D(p, q, 0.0), -np.log(np.sum(qn * support, -1)), 1e-6, 3 * ULP)
    ratio = np.where(support, pn / np.where(support, qn, 1.0), 0.0)
    assert_close(D(p, q, jnp.inf), np.log(ratio.max(-1)), 1e-6, ULP)
    kl = KL(pn.astype(np.float32), qn.astype(np.float32))
    assert_close(D(p, q, 1.0), kl, 1e-6, 3 * ULP * (1 + term_scale(p, q)))
    # A distribution against itself: exactly 0 at every order.
    for alpha in GRID:
        np.testing.assert_array_equal(np.asarray(D(p, p, alpha)), 0.0)


def test_q_missing_p_support_is_inf_from_alpha_one_up(rng):
    p, q = tables(rng, (64, 16))
    q[:, 0], p[:, 0] = 0.0, np.maximum(p[:, 0], 0.1)  # P has mass where Q has none
    for alpha in GRID:
        d = D(p, q, alpha)
        if alpha >= 1:
            np.testing.assert_array_equal(np.asarray(d), INF)
        else:
            chex.assert_tree_all_finite(d)
            assert_close(d, ref_divergence(p, q, alpha32(alpha)), 1e-6, 3 * ULP)


def test_zero_probability_terms_drop_out(rng):
    p, q = tables(rng, (64, 13), zeros=0.0)
    pad = lambda x: np.concatenate([x, np.zeros((64, 3), np.float32)], -1)  # noqa: E731
    for alpha in [0.0, 0.5, 1.0, 2.0, 50.0, INF]:
        atol = 3 * ULP * (1 + term_scale(p, q))
        assert_close(H(pad(p), alpha), ref_entropy(p, alpha32(alpha)), 1e-6, ULP)
        assert_close(D(pad(p), pad(q), alpha), ref_divergence(p, q, alpha32(alpha)), 1e-6, atol)


# --------------------------------------------------------------------------- monotonicity

VH = jax.jit(jax.vmap(H, in_axes=(None, 0)))
VD = jax.jit(jax.vmap(D, in_axes=(None, None, 0)))


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    zeros=st.sampled_from([0.0, 0.3, 0.8]),
    concentration=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_entropy_non_increasing_divergence_non_negative_non_decreasing(seed, zeros, concentration):
    p, q = tables(np.random.default_rng(seed), (8, 24), zeros, concentration)
    alphas = jnp.asarray(GRID, jnp.float32)
    h, d = f64(VH(p, alphas)), f64(VD(p, q, alphas))
    # A few float32 ulps of slack between neighbouring orders.
    assert np.all(h >= 0)
    assert np.all(h[1:] <= h[:-1] + 4 * ULP * np.abs(h[:-1]))
    slack = 4 * ULP * (1 + term_scale(p, q))
    assert np.all(d >= -slack)
    assert np.all(d[1:] >= d[:-1] - slack - 4 * ULP * np.abs(d[:-1]))


# --------------------------------------------------------------------------- derivatives


@jax.jit
def _both(p, q, alpha):
    return jxent.renyi_entropy(p, alpha), jxent.renyi_divergence(p, q, alpha)


D_ALPHA = jax.jit(jax.jacrev(_both, argnums=2))  # reverse mode; check_grads covers forward


@pytest.mark.parametrize("alpha", [1 - 1e-3, 1 - 1e-5, 1.0, 1 + 1e-5, 1 + 1e-3])
def test_alpha_derivative_near_one_equals_finite_difference(alpha, x64, rng):
    p, q = interior(rng, 6), interior(rng, 6)

    def central(f, step=1e-4):
        return (f(alpha + step) - f(alpha - step)) / (2 * step)

    d_entropy = central(lambda a: ref_entropy(p, a))
    d_divergence = central(lambda a: ref_divergence(p, q, a))
    if alpha == 1:  # the closed forms at α = 1: -Var_P(log p)/2 and Var_P(log p/q)/2
        np.testing.assert_allclose(d_entropy, -0.5 * np.cov(np.log(p), aweights=p, ddof=0))
        np.testing.assert_allclose(d_divergence, 0.5 * np.cov(np.log(p / q), aweights=p, ddof=0))
    for dtype, rtol in [(np.float64, 1e-7), (np.float32, 1e-4)]:
        grads = D_ALPHA(p.astype(dtype), q.astype(dtype), dtype(alpha))
        chex.assert_tree_all_finite(grads)
        np.testing.assert_allclose(f64(grads[0]), d_entropy, rtol=rtol)
        np.testing.assert_allclose(f64(grads[1]), d_divergence, rtol=rtol)


# --------------------------------------------------------------------------- logits


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1 - 1e-4, 1.0, 2.0, 50.0, INF])
def test_from_logits_equal_probability_versions(alpha, rng):
    zp, zq = logits(rng, (64, 16)), logits(rng, (64, 16), drop=0.0)
    p, q = jax.nn.softmax(zp), jax.nn.softmax(zq)  # exact zeros at -inf logits
    h, d = HZ(zp, alpha), DZ(zp, zq, alpha)
    chex.assert_type((h, d), jnp.float32)
    # Two float32 computations, each a few ulps off near 0 (log-softmax / sums).
    atol = 8 * ULP * (1 + term_scale(p, q))
    assert_close(h, H(p, alpha), 2e-6, 8 * ULP)
    assert_close(d, D(p, q, alpha), 2e-6, atol)
    # Adding a constant to the logits changes nothing.
    assert_close(HZ(zp + 7.5, alpha), h, 1e-6, 4 * ULP)
    assert_close(DZ(zp - 3.0, zq + 20.0, alpha), d, 1e-6, atol)
    # -inf logits are zero-probability classes: the same as leaving them out.
    keep = np.isfinite(zp[0])
    assert_close(HZ(zp[0, keep], alpha), h[0], 1e-6, 4 * ULP)
    assert_close(DZ(zp[0, keep], zq[0, keep], alpha), D(p[0, keep], q[0, keep], alpha), 2e-6, atol)


def test_inf_logits_of_q_on_p_support():
    zp, zq = jnp.array([0.0, 1.0, -2.0]), jnp.array([0.0, -jnp.inf, 0.5])
    p, q = softmax64(zp), softmax64(zq)
    for alpha in GRID:
        d = DZ(zp, zq, alpha)
        assert (float(d) == INF) == (alpha >= 1), (alpha, d)
        assert_close(d, ref_divergence(p, q, alpha32(alpha)), 2e-6, 8 * ULP)


# --------------------------------------------------------------------------- options and transforms


def test_alpha_arrays_vmap_and_jit_match_a_loop(rng):
    p, q = tables(rng, (64, 16))
    alphas = np.resize(np.float32(GRID), 64)  # every order, one per row
    close = lambda a, b: chex.assert_trees_all_close(a, b, rtol=1e-6, atol=3 * ULP)  # noqa: E731
    for fn, args in [(H, (p,)), (D, (p, q))]:
        loop = jnp.stack([fn(*args, a) for a in GRID])
        batched = (None,) * len(args) + (0,)
        close(jax.jit(jax.vmap(fn, in_axes=batched))(*args, np.float32(GRID)), loop)
        # One α per row: an array α broadcast against the result.
        close(fn(*args, alphas), loop[np.arange(64) % len(GRID), np.arange(64)])


def test_where_equals_slicing_and_zeroing(rng):
    p, q = tables(rng, (64, 16), zeros=0.0)
    zp, zq = np.log(p), np.log(q)
    cols = np.broadcast_to(rng.random(16) < 0.6, (64, 16)) | (np.arange(16) == 0)
    sp, sq = p[:, cols[0]], q[:, cols[0]]
    rows = rng.random((64, 16)) < 0.6
    rows[:, 0] = True
    close = lambda a, b: chex.assert_trees_all_close(a, b, rtol=2e-6, atol=2e-7)  # noqa: E731
    for alpha in [0.0, 0.5, 1.0, 3.0, INF]:
        # A mask of classes equals slicing them away (float64 on the slices) ...
        a = alpha32(alpha)
        assert_close(H(p, alpha, where=cols), ref_entropy(sp, a), 1e-6, ULP)
        atol = 3 * ULP * (1 + term_scale(sp, sq))
        assert_close(D(p, q, alpha, where=cols), ref_divergence(sp, sq, a), 1e-6, atol)
        # ... and a per-row mask equals zero probabilities / -inf logits there.
        close(
            (H(p, alpha, where=rows), D(p, q, alpha, where=rows)),
            (H(p * rows, alpha), D(p * rows, q * rows, alpha)),
        )
        masked = [np.where(rows, z, -INF) for z in (zp, zq)]
        close(
            (HZ(zp, alpha, where=rows), DZ(zp, zq, alpha, where=rows)),
            (HZ(masked[0], alpha), DZ(*masked, alpha)),
        )


def test_axis_equals_moveaxis_and_base(rng):
    p, q = tables(rng, (4, 4, 4, 16))
    p, q = np.moveaxis(p, -1, 1), np.moveaxis(q, -1, 1)  # classes on axis 1
    moved = [np.moveaxis(x, 1, -1).reshape(64, 16) for x in (p, q)]
    flat = [np.moveaxis(x, (1, 3), (-2, -1)).reshape(4, 4, 64) for x in (p, q)]
    close = lambda a, b: chex.assert_trees_all_close(a, b, rtol=2e-6, atol=2e-7)  # noqa: E731
    bits = 1 / np.log(2)
    for alpha in [0.0, 0.5, 1.0, 2.0, INF]:
        close(
            (H(p, alpha, axis=1), D(p, q, alpha, axis=(3, 1), base=2)),
            (H(moved[0], alpha).reshape(4, 4, 4), D(*flat, alpha) * bits),
        )
        close(
            (H(p, alpha, axis=(1, 3), base=2), D(p, q, alpha, axis=1)),
            (H(flat[0], alpha) * bits, D(*moved, alpha).reshape(4, 4, 4)),
        )


def test_bf16_inputs_give_float32(rng):
    p, q = tables(rng, (64, 16), zeros=0.0)
    pb, qb = jnp.asarray(p, jnp.bfloat16), jnp.asarray(q, jnp.bfloat16)
    zp, zq = jnp.log(pb), jnp.log(qb)
    up = lambda x: x.astype(jnp.float32)  # noqa: E731
    got = [H(pb, 2.0), D(pb, qb, 2.0), DZ(zp, zq, 2.0), H(p, jnp.bfloat16(2.0))]
    chex.assert_type(got, jnp.float32)
    want = [H(up(pb), 2.0), D(up(pb), up(qb), 2.0), DZ(up(zp), up(zq), 2.0)]
    chex.assert_trees_all_close(got, [*want, H(p, 2.0)], rtol=1e-6)


def test_bad_input_names_the_argument():
    # Raised while tracing (the jitted wrappers), so also under jit.
    p = jnp.full((4, 5), 0.2)
    with pytest.raises(ValueError, match="alpha"):
        H(p, jnp.ones(3))
    with pytest.raises(ValueError, match="alpha"):
        D(p, p, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="alpha"):
        HZ(p, jnp.ones(5))
    with pytest.raises(ValueError, match="alpha"):
        DZ(p, p, jnp.ones(3))
    with pytest.raises(TypeError, match="alpha"):
        H(p, jnp.array(2 + 1j))
    with pytest.raises(TypeError, match="probs"):
        H(jnp.ones((4, 5), jnp.int32), 2.0)
    with pytest.raises(TypeError, match=r"^q must be a floating"):
        D(p, jnp.ones((4, 5), jnp.int32), 2.0)
    with pytest.raises(TypeError, match="logits"):
        HZ(jnp.ones((4, 5), jnp.int32), 2.0)
    with pytest.raises(ValueError, match=r"p_logits .* q_logits"):
        DZ(p, jnp.zeros((3, 5)), 2.0)
    with pytest.raises(ValueError, match="where"):
        H(p, 2.0, where=jnp.ones(3, bool))


# --------------------------------------------------------------------------- tiny probabilities

# Rows with probabilities of 1e-30 (they are not 0: no one-sided limits), over the
# same Q; in float32 1 - 3e-30 is 1.
TINY = [[1e-30, 1e-30, 1e-30, 1 - 3e-30], [1e-30, 0.3, 0.3, 0.4]]
TINY_Q = [0.1, 0.2, 0.3, 0.4]


def closed_form_derivatives(p, q, alpha):
    """Float64 NumPy gradients and hessian blocks of one row, α ∉ {1, ∞}: with s = Σp
    and S = Σ p^α q^(1-α), F = s log(S/s)/(α-1), D = F + Σq - s and H = -F (q = 1).
    Returns (∂H/∂p, ∂²H/∂p²), (∂D/∂p, ∂D/∂q), (∂²D/∂p², ∂²D/∂p∂q, ∂²D/∂q²)."""

    def parts(q):
        e, s = alpha - 1, p.sum()
        S = np.sum(p**alpha * q ** (1 - alpha))
        sp, sq = alpha * p ** (alpha - 1) * q ** (1 - alpha), (1 - alpha) * p**alpha * q**-alpha
        spp = alpha * (alpha - 1) * p ** (alpha - 2) * q ** (1 - alpha)
        spq, sqq = alpha * (1 - alpha) * p ** (alpha - 1) * q**-alpha, -alpha * sq / q
        gp, gq = (np.log(S / s) + s * sp / S - 1) / e, s * sq / (e * S)
        hpp = sp[:, None] / S + sp[None, :] / S - 1 / s + s * np.diag(spp) / S
        hpp = (hpp - s * np.outer(sp, sp) / S**2) / e
        hpq = (sq[None, :] / S + s * np.diag(spq) / S - s * np.outer(sp, sq) / S**2) / e
        hqq = s * (np.diag(sqq) / S - np.outer(sq, sq) / S**2) / e
        return gp, gq, hpp, hpq, hqq

    p, q = f64(p), f64(q)
    gp, _, hpp, _, _ = parts(np.ones_like(p))
    dp, dq, dpp, dpq, dqq = parts(q)
    return (-gp, -hpp), (dp - 1, dq + 1), (dpp, dpq, dqq)


def assert_derivatives(got, want, dtype, rtol):
    """Close to the float64 value, within ``rtol`` of the largest entry of its row and
    column (of 1 at least: the terms are O(1) where they cancel); ±inf where that value
    is beyond the dtype's range."""
    got, want = f64(got), f64(want)
    big = np.abs(want) > np.finfo(dtype).max
    np.testing.assert_array_equal(np.isinf(got), big)
    np.testing.assert_array_equal(np.sign(got[big]), np.sign(want[big]))
    scale = np.abs(np.where(big, 0.0, want))
    scale = np.maximum(scale.max(-1, keepdims=True), scale.max(0, keepdims=True))
    scale = np.maximum(scale, 1.0)
    error = np.abs(np.where(big, 0.0, got - want))
    assert np.all(error <= rtol * scale), (got, want)


@jax.jit
def _tiny_derivatives(p, q, alpha, cotangent):
    """Per row: jacfwd of H_α and D_α, and their hessians; vjp with ``cotangent``."""
    h = lambda p: jxent.renyi_entropy(p, alpha)  # noqa: E731
    d = lambda p, q: jxent.renyi_divergence(p, q, alpha)  # noqa: E731
    forward = jax.vmap(jax.jacfwd(h))(p), *jax.vmap(jax.jacfwd(d, (0, 1)))(p, q)
    reverse = *jax.vjp(h, p)[1](cotangent), *jax.vjp(d, p, q)[1](cotangent)
    hessians = jax.vmap(jax.hessian(h))(p), jax.vmap(jax.hessian(d, (0, 1)))(p, q)
    return forward, reverse, hessians


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.25, 2.0, 3.0, 50.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivatives_at_tiny_probabilities(alpha, dtype, x64):
    # Forward mode was off at α = 0 (by 1/n in H, by q in D) and -inf for 0 < α < 0.7,
    # reverse mode off by 1e16 at α = 0 under x64; hessians NaN in float32 (∂²D/∂p² at
    # α = 2 on TINY[1] has the row [16.39, 1.61, 0.74, 0.74]), -1.4e14 in float64 (H at
    # α = 2 on TINY[0], where it is -1).
    p, q = np.asarray(TINY, dtype), np.asarray([TINY_Q, TINY_Q], dtype)
    cotangent = np.random.default_rng(7).normal(size=2).astype(dtype)
    forward, reverse, (hessian_h, hessian_d) = _tiny_derivatives(p, q, dtype(alpha), cotangent)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    for row, c in enumerate(cotangent):
        (gh, hh), gd, hd = closed_form_derivatives(p[row], q[row], float(dtype(alpha)))
        for got_forward, got_reverse, want in zip(forward, reverse, [gh, *gd]):
            assert_derivatives(got_forward[row], want, dtype, rtol)
            assert_derivatives(got_reverse[row], c * want, dtype, rtol)
        assert_derivatives(hessian_h[row], hh, dtype, 10 * rtol)
        for (i, j), want in zip([(0, 0), (0, 1), (1, 1)], hd):
            assert_derivatives(hessian_d[i][j][row], want, dtype, 10 * rtol)
            assert_derivatives(hessian_d[j][i][row], want.T, dtype, 10 * rtol)


@pytest.mark.parametrize(
    ("zp", "zq", "alpha"),
    [
        ([0.0, -100.0], [0.0, -1e4], 2.0),
        ([0.0, -100.0], [0.0, -1e4], INF),
        ([0.0, -200.0], [-1e4, 0.0], 0.5),
        ([0.0, -200.0], [-1e4, 0.0], 0.0),
        # K far from 0 near α = 1: log1p(z) at z ≈ -1 lost D's digits (6952.443 at
        # α = 1.001); at α = 0, log q as log p - x lost them (1.1e-5 for 0).
        ([0.0, -1e4, 3.0], [-1e4, 0.0, 3.0], 0.999),
        ([0.0, -1e4, 3.0], [-1e4, 0.0, 3.0], 1.001),
        ([0.0, -1e4, 3.0], [-1e4, 0.0, 3.0], 0.0),
        ([0.0, -1e4, 3.0], [-1e4, 0.0, 3.0], 50.0),
    ],
)
def test_divergence_from_logits_keeps_classes_whose_probability_underflows(zp, zq, alpha):
    zp, zq = np.float32(zp), np.float32(zq)
    expected = ref.renyi_divergence_from_logits(zp, zq, alpha32(alpha))
    assert_close(DZ(zp, zq, alpha), expected, 1e-6, 8 * ULP)


def test_divergence_from_logits_second_derivatives_by_finite_differences(x64):
    from jax.test_util import check_grads

    rng = np.random.default_rng(42)
    zp, zq = (jnp.asarray(rng.normal(size=(1, 4)) * 3) for _ in range(2))
    check_grads(lambda a, b: DZ(a, b, 3.0), (zp, zq), order=2, modes=("fwd", "rev"))
