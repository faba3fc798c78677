"""Values of every measure against its float64 reference, driven by the case table.

Every case of measure_cases.CASES (Shannon, binary, Rényi, generalised JS, mutual
information, conditional entropy, with their options) is checked in float32 on its
edge rows and random rows, at 1000 classes, at 2 and 2**17 classes where the case asks,
and in float64 under x64; then the closed forms of special rows.

Transforms, dtypes and bad input are in test_measures_api.py, derivatives in
test_measures_grads.py, properties (hypothesis) in test_measures_props.py, the
Jensen–Shannon family in test_jensen.py, Rényi's own in test_renyi.py, joint tables
in test_joint.py.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference64 as ref
from measure_cases import CASES, INF, SHANNON_NAMES, draw, draw_sizes, ids, random_inputs

import jxent

NO_KEYWORDS = [case for case in CASES if not case.keywords]
SIZES = [
    pytest.param(case, n, id=f"{case.id}-{n}")
    for case in CASES
    # The options that are arrays (α, β) share one compilation; base and axis do not.
    if case.kinds not in ("b", "bb", "j") and not case.keywords
    for n in ((2, 1000, 2**17) if case.sizes else (1000,))
    # 2**17 classes: the Shannon measures and the generalised JS of logits.
    if n < 2**17 or case.name in SHANNON_NAMES or case.name.endswith("js_divergence_from_logits")
]


def check_float32(case, canonical):
    """The measure on the case's layout of ``canonical`` against float64, in float32."""
    got = case.jit(*case.arrange(canonical))
    chex.assert_type(got, jnp.float32)
    rows = canonical[0].shape if case.kinds in ("b", "bb") else canonical[0].shape[:1]
    chex.assert_shape(got, rows)
    rtol, atol = case.tolerance(canonical)
    ref.assert_matches(got, case.reference(*canonical), rtol, atol)
    return got


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_values_match_float64(case, rng):
    # The edge rows (zeros, one-hot, -inf and ±1e4 logits, unnormalised, Q missing
    # P's support), random rows and unnormalised random rows.
    check_float32(case, draw(case, rng))


@pytest.mark.parametrize(("case", "n"), SIZES)
def test_values_match_float64_from_2_to_2_17_classes(case, n, rng):
    # Random rows: Dirichlet concentrations 1 and 0.2, logits up to 1, 30 and 1e4.
    chex.assert_tree_all_finite(check_float32(case, draw_sizes(case, rng, n)))


@pytest.mark.parametrize("case", NO_KEYWORDS, ids=ids(NO_KEYWORDS))
def test_float64_values_match_float64_under_x64(case, x64, rng):
    canonical = [np.asarray(a, np.float64) for a in draw(case, rng)]
    got = case.jit(*case.arrange(canonical))
    chex.assert_type(got, jnp.float64)  # float64 really is computed in float64
    rtol, atol = case.tolerance(canonical, np.float64)
    ref.assert_matches(got, case.reference(*canonical, dtype=np.float64), rtol, atol)


# --------------------------------------------------------------------------- special rows


@functools.cache
def jitted(name):
    """The measure ``name`` under jit: one compilation per shape, not one per operation
    (jit against eager is test_measures_api.py's)."""
    return jax.jit(getattr(jxent, name), static_argnames="base")


def test_measures_on_one_hot_and_uniform_rows(rng):
    n = 5
    q = random_inputs(rng, (n, n), zeros=0.0)["q"]
    z = (rng.normal(size=(n, n)) * 10).astype(np.float32)
    one_hot = np.eye(n, dtype=np.float32)
    log_q = np.log(ref.f64(q))
    np.testing.assert_array_equal(np.asarray(jitted("entropy")(one_hot)), np.zeros(n))
    ref.assert_matches(jitted("cross_entropy")(one_hot, q), -np.diag(log_q), 2e-6)
    ref.assert_matches(jitted("kl_divergence")(one_hot, q), -np.diag(log_q), 1e-5)
    log_softmax = ref.log_softmax(z)
    ref.assert_matches(jitted("cross_entropy_from_logits")(one_hot, z), -np.diag(log_softmax), 2e-6)
    uniform = np.full((3, n), 1 / n, np.float32)
    ref.assert_matches(jitted("entropy")(uniform), np.full(3, np.log(n)), 2e-6)
    ref.assert_matches(
        jitted("entropy_from_logits")(np.zeros((3, n), np.float32)), [np.log(n)] * 3, 2e-6
    )
    ref.assert_matches(jitted("entropy")(uniform, base=n), np.ones(3), 2e-6)


def test_identical_distributions_give_zero_divergence(rng):
    inputs = random_inputs(rng, (6, 9), scale=1e4)
    p, zp = inputs["p"], inputs["zp"]
    for value in (
        jitted("kl_divergence")(p, p),
        jitted("kl_divergence_from_logits")(zp, zp),
        jitted("kl_divergence_from_logits")(zp, zp + np.float32(0.5)),
        jitted("binary_kl_divergence")(p, p),
    ):
        chex.assert_trees_all_close(value, jnp.zeros_like(value), atol=1e-6)


def test_infinite_values_are_inf_not_nan():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    q = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
    for fn in (jitted("cross_entropy"), jitted("kl_divergence")):
        np.testing.assert_array_equal(np.asarray(fn(p, q)), [INF, INF])
    z = np.array([[0.0, -INF, 1.0], [2.0, -INF, -INF]], np.float32)
    np.testing.assert_array_equal(np.asarray(jitted("cross_entropy_from_logits")(p, z)), [INF, 0.0])
    z_p = np.array([[0.0, 1.0, 2.0], [0.0, -INF, -INF]], np.float32)
    np.testing.assert_array_equal(np.asarray(jitted("kl_divergence_from_logits")(z_p, z))[0], INF)
    assert np.asarray(jitted("kl_divergence_from_logits")(z_p, z))[1] == 0.0
    np.testing.assert_array_equal(
        np.asarray(jitted("binary_cross_entropy")([1.0, 0.0], [0.0, 1.0])), [INF, INF]
    )
    np.testing.assert_array_equal(
        np.asarray(jitted("binary_kl_divergence")([1.0, 0.5], [0.0, 1.0])), [INF, INF]
    )


def test_binary_measures_at_tiny_probabilities():
    p = np.array([1e-5, 1e-5, 2e-5, 0.0, 1e-7], np.float32)
    q = np.array([1e-5, 2e-5, 1e-5, 1e-5, 1e-6], np.float32)
    ref.assert_matches(jitted("binary_entropy")(p), ref.binary_entropy(p), 2e-6)
    ref.assert_matches(jitted("binary_cross_entropy")(p, q), ref.binary_cross_entropy(p, q), 2e-6)
    ref.assert_matches(
        jitted("binary_kl_divergence")(p, q), ref.binary_kl_divergence(p, q), 1e-5, atol=1e-13
    )
    assert jitted("binary_kl_divergence")(p, q)[0] == 0.0


def test_base_two_is_bits():
    one_bit = jax.jit(
        lambda: (
            jxent.entropy(jnp.array([0.5, 0.5, 0.0]), base=2),
            jxent.binary_entropy(0.5, base=2),
            jxent.cross_entropy_from_logits(jnp.array([1.0, 0.0]), jnp.zeros(2), base=2),
            jxent.kl_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]), base=2),
            jxent.renyi_entropy(jnp.array([0.5, 0.5, 0.0]), 2.0, base=2),
            jxent.mutual_information(jnp.array([[0.5, 0.0], [0.0, 0.5]]), base=2),
        )
    )()
    chex.assert_trees_all_close(one_bit, (jnp.float32(1.0),) * 6, rtol=1e-7)
