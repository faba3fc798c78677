"""Digits at huge logits: float32 integer-label losses against float64 SciPy.

The design promises float32 results within 1e-6 relative of float64 (absolute
1e-6 near 0) for logits up to ±1e4, where float32 spacing is about 1e-3: a
loss computed as ``lse - z_label`` after rounding ``lse`` keeps none of the
digits of a small loss. The vocab-parallel path is checked in test_sharding.py.
"""

import chex
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loss_cases import adversarial_rows, reference
from scipy import special

from jxent import losses

INT_CE = losses.softmax_cross_entropy_with_integer_labels


def assert_digits(actual, expected):
    actual = np.asarray(actual, np.float64)
    chex.assert_tree_all_finite(actual)
    # The design's promise, on every row: 1e-6 relative, 1e-6 absolute near 0.
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def test_the_fuzz_finds_what_rounding_lse_loses():
    # The rows are adversarial: lse rounded to float32, minus the label's logit,
    # misses the promise on most of them; and some have small losses.
    logits, labels = adversarial_rows(np.random.default_rng(0), 512, 7)
    z = logits.astype(np.float64)
    lse32 = special.logsumexp(z, axis=-1).astype(np.float32)
    rounded = (lse32 - np.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]).astype(float)
    expected = reference(logits, labels)
    assert np.mean(np.abs(rounded - expected) > 1e-6 + 1e-6 * expected) > 0.5
    assert np.mean(expected < 1e-3) > 0.05


@pytest.mark.parametrize("num_classes", [2, 7, 100, 4096])
def test_integer_labels_keep_float64_digits_at_huge_logits(num_classes):
    rng = np.random.default_rng(num_classes)
    rows = 4096 if num_classes < 4096 else 256
    logits, labels = adversarial_rows(rng, rows, num_classes)
    assert_digits(jax.jit(INT_CE)(logits, labels), reference(logits, labels))


def test_a_vocabulary_of_two_to_the_seventeen():
    logits, labels = adversarial_rows(np.random.default_rng(17), 8, 2**17)
    assert_digits(jax.jit(INT_CE)(logits, labels), reference(logits, labels))


@settings(deadline=None, max_examples=20)
@given(
    seed=st.integers(0, 2**31 - 1),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    z_loss=st.sampled_from([0.0, 1e-4]),
)
def test_smoothing_and_z_loss_keep_their_digits(seed, smoothing, z_loss):
    logits, labels = adversarial_rows(np.random.default_rng(seed), 256, 11)
    # The options are jit arguments: one compile for every example.
    loss = _options_loss(logits, labels, np.float32(smoothing), np.float32(z_loss))
    expected = reference(logits, labels, smoothing, z_loss)
    np.testing.assert_allclose(np.asarray(loss, np.float64), expected, rtol=1e-6, atol=1e-6)


@jax.jit
def _options_loss(logits, labels, smoothing, z_loss):
    return INT_CE(logits, labels, label_smoothing=smoothing, z_loss=z_loss)


def test_gradient_at_huge_logits_matches_float64_softmax():
    logits, labels = adversarial_rows(np.random.default_rng(5), 256, 9)
    grad = jax.jit(jax.grad(lambda z: INT_CE(z, labels).sum()))(logits)
    z = logits.astype(np.float64)
    expected = special.softmax(z, axis=-1)
    np.put_along_axis(expected, labels[:, None], expected[np.arange(256), labels][:, None] - 1, -1)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
