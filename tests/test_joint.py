"""Mutual information and conditional entropy: identities, bounds, special tables,
options and bad input.

Values against float64 (edge tables, unnormalised ones), check_grads orders 1 and 2
and transforms are driven by the case table (measure_cases.CASES) in test_measures.py,
test_measures_grads.py and test_measures_api.py; the references are reference64.py's.
The Jensen–Shannon family is in test_jensen.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference64 as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from measure_cases import joint_tables
from scipy import special

import jxent

ULP = ref.ULP
SETTINGS = settings(deadline=None, max_examples=30, derandomize=True, database=None)

# Jitted once: eager dispatch compiles every operation for every new shape.
ENTROPY, KL = jax.jit(jxent.entropy), jax.jit(jxent.kl_divergence)
MI = jax.jit(jxent.mutual_information, static_argnames=("axes", "base"))
CE = jax.jit(jxent.conditional_entropy, static_argnames=("given", "axes", "base"))


def f64(x):
    return np.asarray(x, np.float64)


def close(a, b, rtol=1e-6, atol=1e-7):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


def distributions(rng, shape, zeros=0.3, concentration=1.0):
    """Float32 distributions along the last axis with ~``zeros`` exact zeros."""
    return joint_tables(rng, (*shape, 1), zeros, concentration)[..., 0]


def ref_joint(joint):
    """Float64 H(X, Y), H(X), H(Y), I(X; Y) of a [..., X, Y] table, as given."""
    return (*ref.joint_entropies(joint), ref.mutual_information(joint))


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
    ref.assert_matches(MI(joint), kl, 1e-6, 4 * ULP * (1 + scale))


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
    ref.assert_matches(MI(3.5 * joint), ref_joint(3.5 * joint)[3], 1e-6, ULP)
    close(jax.vmap(MI)(joint), MI(joint))
    bf16 = jnp.asarray(joint, jnp.bfloat16)
    chex.assert_type((MI(bf16), CE(bf16)), jnp.float32)
    up = bf16.astype(jnp.float32)
    close((MI(bf16), CE(bf16)), (MI(up), CE(up)), atol=0)


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


def test_second_derivatives_by_finite_differences(x64):
    from jax.test_util import check_grads

    table = np.random.default_rng(41).dirichlet(np.full(6, 5.0)).reshape(2, 3)
    for fn in (jxent.mutual_information, jxent.conditional_entropy):
        check_grads(fn, (jnp.asarray(table),), order=2, modes=("fwd", "rev"), eps=1e-5)
