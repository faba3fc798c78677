"""Values of every measure against float64 NumPy/SciPy references.

Transforms, dtypes and bad input are in test_measures_api.py, properties
(hypothesis) in test_measures_props.py, derivatives in test_measures_grads.py.
"""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from measure_cases import (
    BINARY,
    INF,
    LOGIT_MEASURES,
    MEASURES,
    PROB_MEASURES,
    RTOL,
    assert_matches,
    binary_inputs,
    f64,
    random_inputs,
    ref_log_softmax,
    reference,
    select,
)
from scipy import special

import jxent

# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("n", [2, 7, 1000, 2**17])
@pytest.mark.parametrize("name", PROB_MEASURES)
def test_probability_measures_match_float64(name, n, rng):
    fn, _ = MEASURES[name]
    batch = 2 if n == 2**17 else 8
    for alpha in (1.0, 0.2):
        args = select(name, random_inputs(rng, (batch, n), alpha=alpha))
        got = fn(*args)
        chex.assert_shape(got, (batch,))
        chex.assert_type(got, jnp.float32)
        chex.assert_tree_all_finite(got)
        # Every term is >= 0 (the divergences too): relative error, no cancellation.
        assert_matches(got, reference(name, *args), RTOL[name])


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("n", [2, 7, 1000, 2**17])
@pytest.mark.parametrize("name", LOGIT_MEASURES)
def test_logit_measures_match_float64(name, n, scale, rng):
    fn, _ = MEASURES[name]
    batch = 2 if n == 2**17 else 8
    args = select(name, random_inputs(rng, (batch, n), scale=scale))
    got = fn(*args)
    chex.assert_shape(got, (batch,))
    chex.assert_type(got, jnp.float32)
    chex.assert_tree_all_finite(got)
    # Relative, and absolute 1e-6 near 0 (huge logits make near-one-hot rows).
    assert_matches(got, reference(name, *args), RTOL[name], 1e-6)


def test_measures_on_one_hot_and_uniform_rows(rng):
    n = 5
    q = random_inputs(rng, (n, n), zeros=0.0)["q"]
    z = (rng.normal(size=(n, n)) * 10).astype(np.float32)
    one_hot = np.eye(n, dtype=np.float32)
    log_q = np.log(f64(q))
    np.testing.assert_array_equal(np.asarray(jxent.entropy(one_hot)), np.zeros(n))
    assert_matches(jxent.cross_entropy(one_hot, q), -np.diag(log_q), 2e-6)
    assert_matches(jxent.kl_divergence(one_hot, q), -np.diag(log_q), 1e-5)
    log_softmax = ref_log_softmax(z)
    assert_matches(jxent.cross_entropy_from_logits(one_hot, z), -np.diag(log_softmax), 2e-6)
    uniform = np.full((3, n), 1 / n, np.float32)
    assert_matches(jxent.entropy(uniform), np.full(3, np.log(n)), 2e-6)
    assert_matches(jxent.entropy_from_logits(np.zeros((3, n), np.float32)), [np.log(n)] * 3, 2e-6)
    assert_matches(jxent.entropy(uniform, base=n), np.ones(3), 2e-6)
    # Disjoint supports: JS is log 2, exactly 1 bit.
    assert_matches(jxent.js_divergence(one_hot, np.roll(one_hot, 1, 0)), [np.log(2)] * n, 1e-6)
    assert_matches(jxent.js_divergence(one_hot, np.roll(one_hot, 1, 0), base=2), [1.0] * n, 1e-6)


def test_identical_distributions_give_zero_divergence(rng):
    inputs = random_inputs(rng, (6, 9), scale=1e4)
    p, zp = inputs["p"], inputs["zp"]
    for value in (
        jxent.kl_divergence(p, p),
        jxent.js_divergence(p, p),
        jxent.kl_divergence_from_logits(zp, zp),
        jxent.kl_divergence_from_logits(zp, zp + np.float32(0.5)),
        jxent.binary_kl_divergence(p, p),
    ):
        chex.assert_trees_all_close(value, jnp.zeros_like(value), atol=1e-6)


def test_infinite_values_are_inf_not_nan():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    q = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0]], np.float32)
    for fn in (jxent.cross_entropy, jxent.kl_divergence):
        np.testing.assert_array_equal(np.asarray(fn(p, q)), [INF, INF])
    # JS is bounded even when supports differ.
    assert_matches(jxent.js_divergence(p, q), reference("js_divergence", p, q), 1e-5)
    z = np.array([[0.0, -INF, 1.0], [2.0, -INF, -INF]], np.float32)
    np.testing.assert_array_equal(np.asarray(jxent.cross_entropy_from_logits(p, z)), [INF, 0.0])
    z_p = np.array([[0.0, 1.0, 2.0], [0.0, -INF, -INF]], np.float32)
    np.testing.assert_array_equal(np.asarray(jxent.kl_divergence_from_logits(z_p, z))[0], INF)
    assert np.asarray(jxent.kl_divergence_from_logits(z_p, z))[1] == 0.0
    np.testing.assert_array_equal(
        np.asarray(jxent.binary_cross_entropy([1.0, 0.0], [0.0, 1.0])), [INF, INF]
    )
    np.testing.assert_array_equal(
        np.asarray(jxent.binary_kl_divergence([1.0, 0.5], [0.0, 1.0])), [INF, INF]
    )


def test_binary_measures_match_float64(rng):
    p, q = binary_inputs(rng, 500)
    for name, (fn, arg_names) in BINARY.items():
        args = (p, q)[: len(arg_names)]
        got = fn(*args)
        chex.assert_shape(got, p.shape)
        chex.assert_type(got, jnp.float32)
        expected = reference(name, *args)
        if name == "binary_kl_divergence":
            # The two terms cancel when p ≈ q: absolute error in proportion to
            # their size and to p (one rounding of p / q).
            p64, q64 = f64(p), f64(q)
            scale = np.abs(special.rel_entr(p64, q64)) + np.abs(special.rel_entr(1 - p64, 1 - q64))
            assert_matches(got, expected, RTOL[name], 2.5e-7 * (p64 + scale))
        else:
            assert_matches(got, expected, RTOL[name])


def test_binary_measures_at_tiny_probabilities():
    p = np.array([1e-5, 1e-5, 2e-5, 0.0, 1e-7], np.float32)
    q = np.array([1e-5, 2e-5, 1e-5, 1e-5, 1e-6], np.float32)
    p64, q64 = f64(p), f64(q)
    expected_h = -(special.xlogy(p64, p64) + (1 - p64) * np.log1p(-p64))
    assert_matches(jxent.binary_entropy(p), expected_h, 2e-6)
    expected_ce = -(special.xlogy(p64, q64) + (1 - p64) * np.log1p(-q64))
    assert_matches(jxent.binary_cross_entropy(p, q), expected_ce, 2e-6)
    expected_kl = special.rel_entr(p64, q64) + (1 - p64) * np.log1p((q64 - p64) / (1 - q64))
    assert_matches(jxent.binary_kl_divergence(p, q), expected_kl, 1e-5, atol=1e-13)
    assert jxent.binary_kl_divergence(p, q)[0] == 0.0


def test_base_two_is_bits():
    one_bit = (
        jxent.entropy(jnp.array([0.5, 0.5, 0.0]), base=2),
        jxent.binary_entropy(0.5, base=2),
        jxent.cross_entropy_from_logits(jnp.array([1.0, 0.0]), jnp.zeros(2), base=2),
        jxent.kl_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]), base=2),
    )
    chex.assert_trees_all_close(one_bit, (jnp.float32(1.0),) * 4, rtol=1e-7)
