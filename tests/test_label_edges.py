"""Integer labels at their edges, in every loss that reads them (dense, fused,
vocabulary-parallel, LogLoss): narrow label dtypes against ``ignore_index``, losses
small enough to round to 0, a traced smoothing of 0 beside a ``-inf`` logit, and
tokens that do not count."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from scipy import special

import jxent

DENSE = jxent.losses.softmax_cross_entropy_with_integer_labels


def _every_path(logits, labels, **options):
    """Per-token losses of the same logits through the dense and fused (per-token and
    summed) paths; the fused ones row by row, as ``[[1.]] @ logits[i]``."""
    logits = jnp.asarray(logits, jnp.float32)
    one = jnp.ones((1, 1), jnp.float32)

    def fused(i, reduction):
        loss = jxent.losses.linear_cross_entropy(
            one, logits[i][None], labels[i : i + 1], block_size=3, reduction=reduction, **options
        )
        return loss.reshape(())

    rows = range(len(labels))
    return {
        "dense": DENSE(logits, labels, **options),
        "fused": jnp.stack([fused(i, "none") for i in rows]),
        "fused sum": jnp.stack([fused(i, "sum") for i in rows]),
    }


def _gaps(logits, labels):
    """lse(z) - z_k in float64 as log1p(Σ_{j≠k} exp(z_j - z_k)): exact for tiny losses
    (scipy's logsumexp then subtracting rounds them), NaN for a label out of range."""
    z = np.asarray(logits, np.float64)
    out = []
    for row, k in zip(z, np.asarray(labels, np.int64), strict=True):
        if not 0 <= k < len(row):
            out.append(np.nan)
            continue
        others = np.delete(row, k) - row[k]
        out.append(np.log1p(np.sum(np.exp(others))))
    return np.asarray(out)


@pytest.mark.parametrize(
    ("dtype", "ignore_index", "label"),
    [
        (jnp.uint8, -100, 156),  # -100 wraps to 156 in uint8: a real class
        (jnp.int16, 2**16 + 5, 5),  # wraps to 5 in int16
        (jnp.int8, 156, -100),  # 156 wraps to -100 in int8: an invalid label
    ],
)
def test_ignore_index_is_compared_without_wrapping(dtype, ignore_index, label):
    classes = 200
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, classes)), jnp.float32)
    labels = jnp.asarray([label, 3], dtype)
    want = _gaps(logits, labels)
    for name, got in _every_path(logits, labels, ignore_index=ignore_index).items():
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    if 0 <= label < classes:
        metric = jxent.metrics.LogLoss.empty().update(logits, labels, ignore_index=ignore_index)
        assert float(metric.count) == 2
        np.testing.assert_allclose(metric.total(), want.sum(), rtol=1e-6)


def test_an_in_range_ignore_index_of_a_narrow_dtype_still_ignores():
    logits = jnp.zeros((2, 5))
    labels = jnp.asarray([255, 2], jnp.uint8)
    for name, got in _every_path(logits, labels, ignore_index=255).items():
        np.testing.assert_allclose(got, [0.0, np.log(5)], rtol=1e-6, err_msg=name)


def test_a_class_count_past_the_label_dtype_is_not_wrapped():
    # 300 classes: every uint8 label is a valid class, none is out of range.
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 300)), jnp.float32)
    labels = jnp.asarray([255, 44], jnp.uint8)
    want = _gaps(logits, labels)
    for name, got in _every_path(logits, labels).items():
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("gap", [20.0, 30.0, 80.0])
def test_small_losses_keep_their_digits_on_every_integer_label_path(gap):
    logits = jnp.asarray([[0.0, -gap, -gap], [5.0, 5.0 - gap, -jnp.inf], [7.0, 7.0, -gap]])
    labels = jnp.asarray([0, 0, 1])
    want = _gaps(logits, labels)
    assert want[0] > 0  # float64 sees the loss that float32 rounding would drop
    for name, got in _every_path(logits, labels).items():
        np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=name)
    metric = jxent.metrics.LogLoss.empty().update(logits, labels)
    np.testing.assert_allclose(metric.total(), want.sum(), rtol=2e-6)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
def test_small_losses_keep_their_digits_over_a_vocabulary_split():
    logits = np.full((2, 16), -25.0, np.float32)
    logits[0, 3] = 0.0
    logits[1, 12] = 4.0
    labels = jnp.asarray([3, 12])
    mesh = jax.make_mesh((8,), ("vocab",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.jit(
        jax.shard_map(
            lambda z: jxent.sharding.vocab_parallel_cross_entropy(z, labels, axis_name="vocab"),
            mesh=mesh,
            in_specs=P(None, "vocab"),
            out_specs=P(),
        )
    )
    want = _gaps(logits, labels)
    np.testing.assert_allclose(sharded(jnp.asarray(logits)), want, rtol=2e-6)


def test_a_traced_smoothing_of_zero_beside_a_minus_inf_logit():
    logits = jnp.asarray([[0.0, -jnp.inf, 1.0], [2.0, 0.5, -1.0]])
    labels = jnp.asarray([0, 2])
    static = _every_path(logits, labels)
    traced = jax.jit(lambda s: _every_path(logits, labels, label_smoothing=s))(0.0)
    for name, got in traced.items():
        chex.assert_trees_all_close(got, static["dense"], rtol=1e-6)
        chex.assert_trees_all_close(static[name], static["dense"], rtol=1e-6)
    # Any smoothing > 0 puts mass on the impossible class: +inf, not NaN.
    for name, got in jax.jit(lambda s: _every_path(logits, labels, label_smoothing=s))(0.1).items():
        assert np.isposinf(got[0]), name


def test_log_loss_never_reads_a_token_that_does_not_count():
    logits = jnp.asarray(np.random.default_rng(2).normal(size=(3, 3)), jnp.float32)
    labels = jnp.asarray([7, 1, -1])  # 7 is out of range but masked; -1 is ignored

    def total(z):
        metric = jxent.metrics.LogLoss.empty().update(
            z, labels, where=jnp.asarray([False, True, True]), ignore_index=-1
        )
        return metric.total()

    value, grad = jax.value_and_grad(total)(logits)
    np.testing.assert_allclose(value, special.logsumexp(np.float64(logits[1])) - logits[1, 1])
    chex.assert_tree_all_finite(grad)
    np.testing.assert_array_equal(np.asarray(grad)[[0, 2]], 0)
    error, _ = jax.jit(jxent.checked(total))(logits)
    assert error.get() is None


@pytest.mark.slow
def test_one_large_update_sums_as_exactly_as_many_small_ones():
    # 10**8 float32 losses in one call: a sequential float32 sum stalls at 2**27.
    losses = jax.random.uniform(jax.random.key(3), (10**8,), minval=2.3, maxval=2.8)
    metric = jax.jit(lambda x: jxent.metrics.LogLoss.empty().update_from_losses(x))(losses)
    want = np.sum(np.asarray(losses, np.float64))
    assert abs(float(metric.total()) - want) <= 1e-7 * want
    assert float(metric.count) == 10**8


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_a_16_bit_accumulator_counts_in_float32(dtype):
    metric = jxent.metrics.LogLoss.empty(dtype)
    assert metric.nll.dtype == jnp.float32
    metric = metric.update_from_losses(jnp.ones(70001, dtype))
    assert float(metric.count) == 70001 and float(metric.total()) == 70001
