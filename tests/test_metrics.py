"""LogLoss: readings against float64 references, merging, psum, compensated sums."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from scipy.special import logsumexp

import jxent

LogLoss = jxent.metrics.LogLoss


def _batch(seed, tokens=50, classes=7):
    keys = jax.random.split(jax.random.key(seed), 2)
    logits = 4.0 * jax.random.normal(keys[0], (tokens, classes))
    labels = jax.random.randint(keys[1], (tokens,), 0, classes)
    return logits, labels


def _reference_nll(logits, labels):
    z = np.asarray(logits, np.float64)
    return logsumexp(z, axis=-1) - z[np.arange(len(z)), np.asarray(labels)]


def test_readings_match_float64_formulas():
    logits, labels = _batch(0)
    metric = jax.jit(lambda z, y: LogLoss.empty().update(z, y))(logits, labels)
    nll = _reference_nll(logits, labels)
    assert float(metric.count) == len(nll)
    np.testing.assert_allclose(metric.mean(), nll.mean(), rtol=1e-6)
    np.testing.assert_allclose(metric.perplexity(), np.exp(nll.mean()), rtol=1e-5)
    np.testing.assert_allclose(metric.bits_per_token(), nll.mean() / math.log(2), rtol=1e-6)
    np.testing.assert_allclose(metric.bits_per_byte(123), nll.sum() / math.log(2) / 123, rtol=1e-6)
    np.testing.assert_allclose(metric.bits_per_token() * math.log(2), metric.mean(), rtol=1e-7)


def test_where_and_ignore_index_drop_tokens():
    logits, labels = _batch(1)
    labels = labels.at[::4].set(-100)
    keep = np.asarray(labels) != -100
    keep[1] = False
    where = jnp.asarray(keep) | (labels == -100)  # ignore_index drops the rest
    metric = LogLoss.empty().update(logits, labels, where=where, ignore_index=-100)
    nll = _reference_nll(logits[keep], labels[keep])
    assert float(metric.count) == keep.sum()
    np.testing.assert_allclose(metric.mean(), nll.mean(), rtol=1e-6)
    from_losses = LogLoss.empty().update_from_losses(nll.astype(np.float32), where=None)
    np.testing.assert_allclose(from_losses.mean(), metric.mean(), rtol=1e-6)


def test_merge_is_associative_and_matches_one_stream():
    parts = [LogLoss.empty().update(*_batch(seed)) for seed in range(3)]
    left = parts[0].merge(parts[1]).merge(parts[2])
    right = parts[0].merge(parts[1].merge(parts[2]))
    chex.assert_trees_all_close(left, right, rtol=1e-7)
    logits, labels = zip(*[_batch(seed) for seed in range(3)], strict=True)
    whole = LogLoss.empty().update(jnp.concatenate(logits), jnp.concatenate(labels))
    np.testing.assert_allclose(left.mean(), whole.mean(), rtol=1e-7)
    assert float(left.count) == float(whole.count)


def test_is_a_pytree_that_scans_and_jits():
    logits, labels = _batch(2, tokens=60)

    def step(metric, batch):
        return metric.update(*batch), None

    batches = (logits.reshape(6, 10, -1), labels.reshape(6, 10))
    scanned, _ = jax.jit(lambda b: jax.lax.scan(step, LogLoss.empty(), b))(batches)
    np.testing.assert_allclose(scanned.mean(), _reference_nll(logits, labels).mean(), rtol=1e-6)
    assert len(jax.tree_util.tree_leaves(scanned)) == 4


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
def test_psum_across_devices_equals_one_device():
    logits, labels = _batch(3, tokens=64)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))

    def per_device(z, y):
        return LogLoss.empty().update(z, y).psum("data")

    merged = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
    )(logits, labels)
    single = LogLoss.empty().update(logits, labels)
    np.testing.assert_allclose(merged.mean(), single.mean(), rtol=1e-7)
    assert float(merged.count) == 64


def test_hundred_million_tokens_sum_like_float64():
    batches, size = 100, 1_000_000

    def values(key):
        return 2.3 + 0.5 * jax.random.uniform(key, (size,), jnp.float32)

    @jax.jit
    def accumulate(keys):
        def step(carry, key):
            metric, naive = carry
            x = values(key)
            # The naive float32 running sum, one block of 1000 tokens at a time.
            block_sums = jnp.sum(x.reshape(1000, -1), axis=1)
            naive, _ = jax.lax.scan(lambda total, b: (total + b, None), naive, block_sums)
            return (metric.update_from_losses(x), naive), None

        return jax.lax.scan(step, (LogLoss.empty(), jnp.float32(0)), keys)[0]

    keys = jax.random.split(jax.random.key(0), batches)
    metric, naive = accumulate(keys)
    reference = sum(np.sum(np.asarray(values(k), np.float64)) for k in keys)
    assert float(metric.count) == batches * size
    np.testing.assert_allclose(float(metric.total()), reference, rtol=1e-7)
    np.testing.assert_allclose(float(metric.mean()), reference / (batches * size), rtol=1e-7)
    # The naive float32 sum drifts by far more: the reason for compensation.
    assert abs(float(naive) - reference) / reference > 1e-6
