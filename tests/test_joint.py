"""Generalised Jensen–Shannon divergence, mutual information and conditional
entropy: float64 references, identities, bounds, derivatives, options and bad input.

References are float64 NumPy/SciPy built from the float32 inputs upcast,
used as given (jxent never renormalises).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy import special

import jxent

INF = np.inf
ULP = 2.0**-24  # float32 unit roundoff
SETTINGS = settings(deadline=None, max_examples=30, derandomize=True, database=None)

# Jitted once: eager dispatch compiles every operation for every new shape.
ENTROPY, KL, JS = (jax.jit(f) for f in (jxent.entropy, jxent.kl_divergence, jxent.js_divergence))
GJS = jax.jit(jxent.generalized_js_divergence, static_argnames=("axis", "base"))
GJSZ = jax.jit(jxent.generalized_js_divergence_from_logits, static_argnames=("axis", "base"))
MI = jax.jit(jxent.mutual_information, static_argnames=("axes", "base"))
CE = jax.jit(jxent.conditional_entropy, static_argnames=("given", "axes", "base"))


def f64(x):
    return np.asarray(x, np.float64)


def close(a, b, rtol=1e-6, atol=1e-7):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


def assert_close(got, expected, rtol, atol):
    """|got - expected| <= rtol |expected| + atol elementwise (atol may be an array)."""
    got, expected = f64(got), f64(expected)
    error, bound = np.abs(got - expected), rtol * np.abs(expected) + atol
    worst = np.argmax(error / bound)
    assert np.all(error <= bound), f"error {error.flat[worst]:.3g} > bound {bound.flat[worst]:.3g}"


def distributions(rng, shape, zeros=0.3, concentration=1.0):
    """Float32 distributions along the last axis with ~``zeros`` exact zeros."""
    x = rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])
    x = np.where(rng.random(shape) < zeros, 0.0, np.maximum(x, 1e-30))
    x[..., 0] = np.maximum(x[..., 0], 1e-3)
    return (x / x.sum(-1, keepdims=True)).astype(np.float32)


def joint_tables(rng, shape, zeros=0.3, concentration=1.0):
    """Float32 tables ``[..., X, Y]`` summing to 1, with exact zeros."""
    flat = distributions(rng, (*shape[:-2], shape[-2] * shape[-1]), zeros, concentration)
    return flat.reshape(shape)


def binary_entropy(beta):
    return -special.xlogy(beta, beta) - special.xlog1py(1 - beta, -beta)


# --------------------------------------------------------------------------- generalised JS


def gjs_terms(p, q, beta):
    """β p log(p/m) and (1 - β) q log(q/m) in float64; a zero weight drops its term."""
    p, q = f64(p), f64(q)
    m = beta * p + (1 - beta) * q
    with np.errstate(invalid="ignore"):  # 0 · inf where a weight is 0
        terms = beta * special.rel_entr(p, m), (1 - beta) * special.rel_entr(q, m)
    return [np.where(w == 0, 0.0, t) for w, t in zip((beta, 1 - beta), terms)]


def ref_gjs(p, q, beta):
    return sum(gjs_terms(p, q, beta)).sum(-1)


def gjs_scale(p, q, beta):
    """1 + magnitude of the terms: the float32 sum is accurate to a few ulps of it."""
    return 1 + sum(np.abs(t) for t in gjs_terms(p, q, beta)).sum(-1)


BETAS = [0.0, 1e-6, 0.1, 0.25, 0.5, 0.9, 1 - 2.0**-20, 1.0]


@pytest.mark.parametrize("beta", BETAS)
def test_gjs_matches_float64_and_is_bounded(beta, rng):
    p, q = distributions(rng, (64, 16)), distributions(rng, (64, 16))
    got = GJS(p, q, beta)
    chex.assert_shape(got, (64,))
    chex.assert_type(got, jnp.float32)
    chex.assert_tree_all_finite(got)
    b = float(np.float32(beta))
    expected = ref_gjs(p, q, b)
    assert_close(got, expected, 1e-6, 3 * ULP * gjs_scale(p, q, b))
    assert np.all(f64(got) >= 0)
    assert np.all(f64(got) <= binary_entropy(b) * (1 + 1e-6))
    if beta in (0.0, 1.0):  # both limits are exactly 0, disjoint supports included
        np.testing.assert_array_equal(np.asarray(got), 0.0)
        np.testing.assert_array_equal(np.asarray(GJS(p, np.roll(p, 1, -1) * (p == 0), beta)), 0.0)


def test_gjs_half_is_js_and_disjoint_supports_reach_the_bound(rng):
    p, q = distributions(rng, (64, 16)), distributions(rng, (64, 16))
    close(GJS(p, q, 0.5), JS(p, q), atol=3 * ULP)
    # Disjoint supports: exactly the binary entropy of β.
    split = np.arange(16) < 8
    p, q = distributions(rng, (64, 16), zeros=0.0) * split, distributions(rng, (64, 16)) * ~split
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    for beta in [1e-6, 0.1, 0.5, 0.7]:
        # (1 - β) log(1 - β) ≈ -β comes from log(q / m), m = (1 - β) q rounded: ulps of 1.
        b = float(np.float32(beta))
        assert_close(GJS(p, q, beta), binary_entropy(b), 1e-6, 3 * ULP * gjs_scale(p, q, b))


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    zeros=st.sampled_from([0.0, 0.3, 0.8]),
    beta=st.floats(0.0, 1.0, width=32),
)
def test_gjs_bounds_and_symmetry(seed, zeros, beta):
    # A β whose complement is exact in float32, so that 1 - β is the same weight.
    beta = float(1 - np.float32(1 - np.float32(beta)))
    rng = np.random.default_rng(seed)
    p, q = distributions(rng, (8, 16), zeros), distributions(rng, (8, 16), zeros)
    got = f64(GJS(p, q, beta))
    assert np.all(got >= 0)
    assert np.all(got <= binary_entropy(beta) + 3 * ULP * gjs_scale(p, q, beta))
    # (P, Q, β) -> (Q, P, 1 - β). Not bitwise: XLA may contract βp + (1-β)q
    # into a fused multiply-add in either order.
    assert_close(GJS(q, p, np.float32(1 - beta)), got, 1e-6, 3 * ULP * gjs_scale(p, q, beta))


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_gjs_beta_gradient_is_kl_difference(beta, x64, rng):
    zeros = 0.3 if 0 < beta < 1 else 0.0  # at β = 0, 1 the difference is finite only without zeros
    p = f64(distributions(rng, (5, 8), zeros))
    q = f64(distributions(rng, (5, 8), zeros))
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    m = beta * p + (1 - beta) * q
    expected = special.rel_entr(p, m).sum(-1) - special.rel_entr(q, m).sum(-1)
    betas = np.full(5, beta)
    per_row = lambda b: GJS(p, q, b)  # noqa: E731
    np.testing.assert_allclose(np.diag(jax.jacfwd(per_row)(betas)), expected, rtol=1e-12)
    np.testing.assert_allclose(np.diag(jax.jacrev(per_row)(betas)), expected, rtol=1e-12)
    np.testing.assert_allclose(
        jax.grad(lambda b: GJS(p[0], q[0], b))(beta), expected[0], rtol=1e-12
    )


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.9])
def test_gjs_check_grads(beta, x64, rng):
    p, q = (0.05 + rng.dirichlet(np.ones(4))) / 1.2, (0.05 + rng.dirichlet(np.ones(4))) / 1.2
    check_grads(GJS, (p, q, np.float64(beta)), order=2, modes=("fwd", "rev"), eps=1e-6)


def test_gjs_from_logits_options_and_transforms(rng):
    zp = np.where(rng.random((64, 16)) < 0.3, -INF, rng.normal(size=(64, 16)) * 3).astype(
        np.float32
    )
    zp[:, 0] = 0.0
    zq = (rng.normal(size=(64, 16)) * 3).astype(np.float32)
    p, q = jax.nn.softmax(zp), jax.nn.softmax(zq)
    got = GJSZ(zp, zq, 0.3)
    atol = 3 * ULP * gjs_scale(p, q, 0.3)
    assert_close(got, GJS(p, q, 0.3), 2e-6, atol)
    assert_close(GJSZ(zp + 5.0, zq - 40.0, 0.3), got, 1e-6, atol)
    keep = np.isfinite(zp[0])  # -inf logits are zero probabilities: slicing them away
    close(GJSZ(zp[0, keep], zq[0, keep], 0.3), GJS(p[0, keep], q[0, keep] / q[0, keep].sum(), 0.3))
    # where equals slicing; axis equals moveaxis; base; vmap over β; bf16.
    p, q = distributions(rng, (64, 16)), distributions(rng, (64, 16))
    cols = np.broadcast_to(rng.random(16) < 0.6, (64, 16))
    sp, sq = p[:, cols[0]], q[:, cols[0]]
    assert_close(
        GJS(p, q, 0.3, where=cols), ref_gjs(sp, sq, 0.3), 1e-6, 3 * ULP * gjs_scale(sp, sq, 0.3)
    )
    close(GJS(p.T, q.T, 0.3, axis=0), GJS(p, q, 0.3))
    close(GJS(p, q, 0.3, base=2), GJS(p, q, 0.3) / np.log(2))
    betas = np.float32([0.0, 0.1, 0.5, 0.9])
    loop = jnp.stack([GJS(p, q, b) for b in betas])
    close(jax.jit(jax.vmap(GJS, in_axes=(None, None, 0)))(p, q, betas), loop)
    bf16 = [jnp.asarray(x, jnp.bfloat16) for x in (p, q)]
    chex.assert_type(GJS(*bf16, 0.3), jnp.float32)
    close(GJS(*bf16, 0.3), GJS(*[x.astype(jnp.float32) for x in bf16], 0.3), atol=0)


def test_gjs_bad_input_names_the_argument():
    p = jnp.full((4, 5), 0.2)
    with pytest.raises(ValueError, match="beta"):
        GJS(p, p, jnp.ones(3))
    with pytest.raises(ValueError, match="beta"):
        GJSZ(p, p, jnp.ones((2, 4)))
    with pytest.raises(TypeError, match=r"^p must be a floating"):
        GJS(jnp.ones((4, 5), jnp.int32), p, 0.5)
    with pytest.raises(ValueError, match=r"p of shape .* q of shape"):
        GJS(p, jnp.ones((3, 5)), 0.5)


# --------------------------------------------------------------------------- MI and H(X|Y)


def ref_joint(joint):
    """Float64 H(X, Y), H(X), H(Y), I(X; Y) of a [..., X, Y] table, as given."""
    p = f64(joint)
    px, py = p.sum(-1), p.sum(-2)
    h = lambda x, axes: -special.xlogy(x, x).sum(axes)  # noqa: E731
    product = px[..., :, None] * py[..., None, :]
    # I = Σ p log(p/r) - p + r, r = p_x p_y: the generalized KL from the product
    # of the marginals (the KL on a table that sums to 1); every term >= 0.
    mi = special.kl_div(p, product).sum((-2, -1))
    return h(p, (-2, -1)), h(px, -1), h(py, -1), mi


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    zeros=st.sampled_from([0.0, 0.3, 0.8]),
    concentration=st.sampled_from([0.05, 1.0, 100.0]),
)
def test_mi_and_conditional_entropy_non_negative_and_match_float64(seed, zeros, concentration):
    joint = joint_tables(np.random.default_rng(seed), (8, 5, 7), zeros, concentration)
    mi, h_x_y, h_y_x = MI(joint), CE(joint), CE(joint, given=-2)
    h_xy, h_x, h_y, ref_mi = ref_joint(joint)
    assert np.all(f64(mi) >= 0) and np.all(f64(h_x_y) >= 0) and np.all(f64(h_y_x) >= 0)
    np.testing.assert_allclose(f64(mi), ref_mi, rtol=1e-6, atol=ULP)
    np.testing.assert_allclose(f64(h_x_y), h_xy - h_y, rtol=1e-6, atol=2 * ULP)
    np.testing.assert_allclose(f64(h_y_x), h_xy - h_x, rtol=1e-6, atol=2 * ULP)


def test_mi_special_tables(rng):
    px, py = distributions(rng, (8, 6)), distributions(rng, (8, 9))
    product = px[:, :, None] * py[:, None, :]  # independent: I = 0
    np.testing.assert_array_less(f64(MI(product)), 1e-7)
    close(CE(product), ENTROPY(px), atol=2 * ULP)  # H(X|Y) = H(X)
    # Deterministic relation y = σ(x): I(X; Y) = H(X), H(X|Y) = H(Y|X) = 0.
    perm = np.zeros((8, 6, 6), np.float32)
    for row in range(8):
        perm[row, np.arange(6), rng.permutation(6)] = px[row]
    _, h_x, _, _ = ref_joint(perm)
    np.testing.assert_allclose(f64(MI(perm)), h_x, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(CE(perm)), 0.0)
    np.testing.assert_array_equal(np.asarray(CE(perm, given=-2)), 0.0)


def test_mi_of_nearly_independent_tables(rng):
    px, py = distributions(rng, (8, 6), zeros=0.0), distributions(rng, (8, 9), zeros=0.0)
    noise = 1 + 1e-3 * rng.uniform(-1, 1, (8, 6, 9))
    joint = px[:, :, None] * py[:, None, :] * noise
    joint = (joint / joint.sum((-2, -1), keepdims=True)).astype(np.float32)
    p = f64(joint) / f64(joint).sum((-2, -1), keepdims=True)
    product = p.sum(-1)[:, :, None] * p.sum(-2)[:, None, :]
    kl = special.rel_entr(p, product).sum((-2, -1))  # float64 KL(P_XY ‖ P_X ⊗ P_Y)
    np.testing.assert_allclose(f64(MI(joint)), kl, rtol=1e-4)
    assert np.all(kl > 1e-8)  # the information is there to lose


def test_mi_is_kl_from_product_of_marginals(rng):
    joint = joint_tables(rng, (8, 5, 7))
    product = joint.sum(-1)[:, :, None] * joint.sum(-2)[:, None, :]
    kl = KL(joint.reshape(8, 35), product.reshape(8, 35))
    scale = np.abs(special.rel_entr(f64(joint), f64(product))).sum((-2, -1))
    assert_close(MI(joint), kl, 1e-6, 4 * ULP * (1 + scale))


def test_chain_rules(x64, rng):
    joint = f64(joint_tables(rng, (8, 5, 7)))
    joint /= joint.sum((-2, -1), keepdims=True)
    h_xy = ENTROPY(joint.reshape(8, 35))
    h_x, h_y = ENTROPY(joint.sum(-1)), ENTROPY(joint.sum(-2))
    h_x_y, h_y_x = CE(joint), CE(joint, given=-2)
    close((h_y + h_x_y, h_x + h_y_x), (h_xy, h_xy), rtol=1e-12, atol=1e-15)
    close((h_x - h_x_y, h_y - h_y_x), (MI(joint), MI(joint)), rtol=1e-12, atol=1e-15)


def test_joint_options_and_transforms(rng):
    joint = joint_tables(rng, (8, 5, 7))  # [B, X, Y]
    table = np.moveaxis(joint, 0, 1)  # [X, B, Y]
    close(MI(table, axes=(0, 2)), MI(joint))
    close(CE(table, axes=(0, -1), given=-1), CE(joint))  # H(X|Y)
    close(CE(table, axes=(2, 0), given=0), CE(joint, given=-2))  # H(Y|X)
    close((MI(joint, base=2), CE(joint, base=2)), (MI(joint) / np.log(2), CE(joint) / np.log(2)))
    # Tables are used as given: H(X|Y) scales with the mass, and I is the
    # generalized KL from the product of the marginals. vmap agrees; bf16 is
    # computed in float32.
    close(CE(3.5 * joint), 3.5 * CE(joint))
    assert_close(MI(3.5 * joint), ref_joint(3.5 * joint)[3], 1e-6, ULP)
    close(jax.vmap(MI)(joint), MI(joint))
    bf16 = jnp.asarray(joint, jnp.bfloat16)
    chex.assert_type((MI(bf16), CE(bf16)), jnp.float32)
    up = bf16.astype(jnp.float32)
    close((MI(bf16), CE(bf16)), (MI(up), CE(up)), atol=0)


@jax.jit
def _joint_both(joint):
    return jxent.mutual_information(joint), jxent.conditional_entropy(joint, given=-2)


def test_joint_check_grads(x64, rng):
    joint = (0.05 + rng.dirichlet(np.ones(12))).reshape(3, 4)
    check_grads(_joint_both, (joint / joint.sum(),), order=1, modes=("fwd", "rev"), eps=1e-6)


def test_joint_bad_input_names_the_argument():
    joint = jnp.full((2, 3, 4), 1 / 12)
    with pytest.raises(ValueError, match="axes"):
        MI(joint, axes=(0, 1, 2))
    with pytest.raises(ValueError, match="axes"):
        CE(joint, axes=(-1,))
    with pytest.raises(ValueError, match="given"):
        CE(joint, axes=(1, 2), given=0)
    with pytest.raises(ValueError, match="given"):
        CE(joint, given=5)
    with pytest.raises(TypeError, match="joint"):
        MI(jnp.ones((3, 4), jnp.int32))
    with pytest.raises(TypeError, match="joint"):
        CE(jnp.ones((3, 4), bool))
