"""The Jensen–Shannon family: ``js_divergence`` and ``generalized_js_divergence`` (and
its ``_from_logits`` form).

Values against float64 (β from 0 to 1, the edges, unnormalised input), check_grads in
p, q and β, and transforms are driven by the case table (measure_cases.CASES) in
test_measures.py, test_measures_grads.py and test_measures_api.py. Here: bounds,
symmetry, special values, the β derivative, closed-form derivatives at the edges,
options and bad input.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference64 as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from measure_cases import (
    assert_all_modes,
    assert_no_nan,
    derivatives,
    hessian_blocks,
    joint_tables,
    pairs_with_edges,
    random_inputs,
)
from scipy import special

import jxent

INF = np.inf
ULP = ref.ULP
LOG2 = np.log(2.0)
SETTINGS = settings(deadline=None, max_examples=30, derandomize=True, database=None)

# Jitted once: eager dispatch compiles every operation for every new shape.
JS = jax.jit(jxent.js_divergence, static_argnames=("axis", "base"))
GJS = jax.jit(jxent.generalized_js_divergence, static_argnames=("axis", "base"))
GJSZ = jax.jit(jxent.generalized_js_divergence_from_logits, static_argnames=("axis", "base"))


def f64(x):
    return np.asarray(x, np.float64)


def close(a, b, rtol=1e-6, atol=1e-7):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


def distributions(rng, shape, zeros=0.3, concentration=1.0):
    """Float32 distributions along the last axis with ~``zeros`` exact zeros."""
    return joint_tables(rng, (*shape, 1), zeros, concentration)[..., 0]


# --------------------------------------------------------------------------- JS


def test_js_of_disjoint_supports_is_log_two_and_one_bit():
    one_hot = np.eye(5, dtype=np.float32)
    other = np.roll(one_hot, 1, 0)
    ref.assert_matches(JS(one_hot, other), [np.log(2)] * 5, 1e-6)
    ref.assert_matches(JS(one_hot, other, base=2), [1.0] * 5, 1e-6)


def test_js_of_identical_distributions_is_zero(rng):
    p = random_inputs(rng, (6, 9), scale=1e4)["p"]
    chex.assert_trees_all_close(JS(p, p), jnp.zeros(6), atol=1e-6)


def test_js_is_finite_where_supports_differ():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    q = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
    # JS is bounded even when supports differ (where KL and cross-entropy are +inf).
    ref.assert_matches(JS(p, q), ref.js_divergence(p, q), 1e-5)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), zeros=st.sampled_from([0.0, 0.3, 0.8]), nested=st.booleans())
def test_js_is_bounded_and_symmetric(seed, zeros, nested):
    inputs = random_inputs(np.random.default_rng(seed), (5, 7), zeros=zeros, nested=nested)
    p, q = inputs["p"], inputs["q"]
    # Disjoint supports reach the upper bound log 2.
    disjoint = np.stack([np.eye(7, dtype=np.float32)[0], np.eye(7, dtype=np.float32)[1]])
    for a, b in ((p, q), (p, p), (disjoint, disjoint[::-1].copy())):
        js = np.asarray(JS(a, b))
        assert np.all(js >= 0), js
        assert np.all(js <= math.log(2) + 1e-6), js
        np.testing.assert_array_equal(js, np.asarray(JS(b, a)))
        assert np.all(np.asarray(JS(a, b, base=2)) <= 1 + 1e-6)


def test_js_derivatives_match_closed_form(x64, rng):
    p, q = pairs_with_edges(rng)
    m = 0.5 * (p + q)
    args = (jnp.asarray(p), jnp.asarray(q))
    blocks = hessian_blocks(jxent.js_divergence, args)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_p, d_q = 0.5 * np.log(p / m), 0.5 * np.log(q / m)
        d_p[0] = d_q[0] = 0.5 * LOG2  # convention at p = q = 0 (JS is homogeneous)
        assert_all_modes(jxent.js_divergence, args, 0, d_p, rtol=1e-12)
        assert_all_modes(jxent.js_divergence, args, 1, d_q, rtol=1e-12)
        expected = [
            np.diag(0.5 / p - 0.25 / m),
            np.diag(-0.25 / m),
            np.diag(-0.25 / m),
            np.diag(0.5 / q - 0.25 / m),
        ]
    keep = np.arange(1, 9)
    for got, want in zip((*blocks[0], *blocks[1]), expected):
        assert_no_nan(got)
        np.testing.assert_allclose(
            f64(got)[1:, 1:], want[np.ix_(keep, keep)], rtol=1e-10, atol=1e-12
        )


def test_js_gradient_at_p_equal_q_equal_zero_is_half_log_two():
    p = q = jnp.array([0.0, 1.0])
    for argnum in (0, 1):
        for mode, got in derivatives(jxent.js_divergence, (p, q), argnum).items():
            np.testing.assert_allclose(np.asarray(got), [0.5 * LOG2, 0.0], err_msg=mode)


def test_a_mixture_that_underflows_is_not_infinite():
    p = jnp.array([2e-38, 1 - 2e-38], jnp.float32)
    q = jnp.array([0.0, 1.0], jnp.float32)
    tiny = jnp.array([0.0, -86.8])  # softmax: 2e-38 on the second class
    values = (
        jxent.js_divergence(p, q),
        jxent.generalized_js_divergence(p, q, 0.3),
        jxent.generalized_js_divergence_from_logits(tiny, jnp.array([0.0, -INF]), 0.3),
        jax.grad(jxent.js_divergence)(p, q),
    )
    chex.assert_tree_all_finite(values)
    # The terms with p ≈ 1e-38 are ~1e-36: the values are those without them.
    chex.assert_trees_all_close(values[:3], (jnp.float32(0.0),) * 3, atol=1e-30)


# --------------------------------------------------------------------------- generalised JS

BETAS = [0.0, 1e-6, 0.1, 0.25, 0.5, 0.9, 1 - 2.0**-20, 1.0]


@pytest.mark.parametrize("beta", BETAS)
def test_gjs_is_bounded_by_the_binary_entropy_of_beta(beta, rng):
    # Its values against float64 are test_measures.py's (the case table has these β).
    p, q = distributions(rng, (64, 16)), distributions(rng, (64, 16))
    got = GJS(p, q, beta)
    chex.assert_shape(got, (64,))
    chex.assert_type(got, jnp.float32)
    chex.assert_tree_all_finite(got)
    b = float(np.float32(beta))
    assert np.all(f64(got) >= 0)
    assert np.all(f64(got) <= ref.binary_entropy(b) * (1 + 1e-6))
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
        ref.assert_matches(
            GJS(p, q, beta), ref.binary_entropy(b), 1e-6, 3 * ULP * ref.gjs_scale(p, q, b)
        )


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
    scale = ref.gjs_scale(p, q, beta)
    assert np.all(got >= 0)
    assert np.all(got <= ref.binary_entropy(beta) + 3 * ULP * scale)
    # (P, Q, β) -> (Q, P, 1 - β). Not bitwise: XLA may contract βp + (1-β)q
    # into a fused multiply-add in either order.
    ref.assert_matches(GJS(q, p, np.float32(1 - beta)), got, 1e-6, 3 * ULP * scale)


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


def test_gjs_from_logits_options_and_transforms(rng):
    zp = np.where(rng.random((64, 16)) < 0.3, -INF, rng.normal(size=(64, 16)) * 3).astype(
        np.float32
    )
    zp[:, 0] = 0.0
    zq = (rng.normal(size=(64, 16)) * 3).astype(np.float32)
    p, q = jax.nn.softmax(zp), jax.nn.softmax(zq)
    got = GJSZ(zp, zq, 0.3)
    atol = 3 * ULP * ref.gjs_scale(p, q, 0.3)
    ref.assert_matches(got, GJS(p, q, 0.3), 2e-6, atol)
    ref.assert_matches(GJSZ(zp + 5.0, zq - 40.0, 0.3), got, 1e-6, atol)
    keep = np.isfinite(zp[0])  # -inf logits are zero probabilities: slicing them away
    close(GJSZ(zp[0, keep], zq[0, keep], 0.3), GJS(p[0, keep], q[0, keep] / q[0, keep].sum(), 0.3))
    # where equals slicing; axis equals moveaxis; base; vmap over β; bf16.
    p, q = distributions(rng, (64, 16)), distributions(rng, (64, 16))
    cols = np.broadcast_to(rng.random(16) < 0.6, (64, 16))
    sp, sq = p[:, cols[0]], q[:, cols[0]]
    ref.assert_matches(
        GJS(p, q, 0.3, where=cols),
        ref.generalized_js_divergence(sp, sq, 0.3),
        1e-6,
        3 * ULP * ref.gjs_scale(sp, sq, 0.3),
    )
    close(GJS(p.T, q.T, 0.3, axis=0), GJS(p, q, 0.3))
    close(GJS(p, q, 0.3, base=2), GJS(p, q, 0.3) / np.log(2))
    betas = np.float32([0.0, 0.1, 0.5, 0.9])
    loop = jnp.stack([GJS(p, q, b) for b in betas])
    close(jax.jit(jax.vmap(GJS, in_axes=(None, None, 0)))(p, q, betas), loop)
    bf16 = [jnp.asarray(x, jnp.bfloat16) for x in (p, q)]
    chex.assert_type(GJS(*bf16, 0.3), jnp.float32)
    close(GJS(*bf16, 0.3), GJS(*[x.astype(jnp.float32) for x in bf16], 0.3), atol=0)


def test_gjs_from_logits_reverse_mode_at_minus_inf_logits():
    a = jnp.array([0.0, 0.0, -INF])
    b = jnp.array([0.0, 1.0, 2.0])
    huge = jnp.array([1e4, -1e4, 1e4])
    forward_and_reverse = jax.jit(
        lambda a, b: [
            jac(lambda x, y: jxent.generalized_js_divergence_from_logits(x, y, 0.3), (0, 1))(a, b)
            for jac in (jax.jacfwd, jax.jacrev)
        ]
    )
    for zp, zq in [(a, b), (b, a), (huge, b)]:
        forward, reverse = forward_and_reverse(zp, zq)
        chex.assert_tree_all_finite(forward)
        chex.assert_trees_all_close(reverse, forward, rtol=1e-5, atol=1e-7)


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
