"""LogLoss: readings against float64 references, merging, psum, compensated sums."""

import math
import re

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


_READINGS = re.compile(
    r"LogLoss\(tokens=(\S+), mean=(\S+) nats, perplexity=(\S+), bits_per_token=(\S+)\)"
)


def test_repr_shows_the_readings():
    logits, labels = _batch(4)
    labels = labels.at[::5].set(-100)
    metric = jax.jit(lambda z, y: LogLoss.empty().update(z, y, ignore_index=-100))(logits, labels)
    keep = np.asarray(labels) != -100
    nll = _reference_nll(logits[keep], labels[keep])
    match = _READINGS.fullmatch(repr(metric))
    assert match, repr(metric)
    assert match[1] == str(keep.sum())
    mean, perplexity, bits = (float(reading) for reading in match.groups()[1:])
    np.testing.assert_allclose(mean, nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(perplexity, np.exp(nll.mean()), rtol=1e-5)
    np.testing.assert_allclose(bits, nll.mean() / math.log(2), rtol=1e-5)
    assert str(metric) == repr(metric)


def test_repr_of_a_hundred_million_tokens_counts_them_exactly():
    metric = LogLoss(jnp.float32(2e8), jnp.float32(0), jnp.float32(1e8), jnp.float32(0.0))
    assert repr(metric).startswith("LogLoss(tokens=100000000, mean=2 nats, perplexity=7.38906,")


def test_repr_with_no_tokens_divides_nothing():
    assert repr(LogLoss.empty()) == "LogLoss(tokens=0, empty)"
    masked = LogLoss.empty().update_from_losses(jnp.ones(3), where=jnp.zeros(3, bool))
    assert repr(masked) == "LogLoss(tokens=0, empty)"
    assert np.isnan(masked.mean())  # the readings themselves are unchanged


def test_repr_at_the_edges_of_the_readings():
    huge = LogLoss.empty().update_from_losses(jnp.array([1e4]))
    assert "mean=10000 nats, perplexity=inf, bits_per_token=14427" in repr(huge)
    out_of_range = LogLoss.empty().update(jnp.zeros((2, 3)), jnp.array([0, 3]))
    assert "mean=nan nats, perplexity=nan, bits_per_token=nan" in repr(out_of_range)


def test_repr_under_tracing_and_batching_shows_dtypes_and_shapes():
    logits, labels = _batch(5, tokens=12)
    scalar = "LogLoss(nll=float32[], nll_error=float32[], tokens=float32[], tokens_error=float32[])"
    seen = []

    def traced(z, y):
        metric = LogLoss.empty().update(z, y)
        seen.append(repr(metric))
        return metric

    jax.jit(traced)(logits, labels)
    batched = jax.vmap(traced)(logits.reshape(3, 4, -1), labels.reshape(3, 4))
    jax.grad(lambda z: traced(z, labels).mean())(logits)
    assert seen == [scalar] * 3
    assert repr(batched) == scalar.replace("[]", "[3]")
    np.testing.assert_allclose(
        batched.mean(), _reference_nll(logits, labels).reshape(3, 4).mean(-1), rtol=1e-6
    )
    assert repr(jax.eval_shape(LogLoss.empty)) == scalar


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
def test_psum_of_a_million_losses_on_each_of_8_devices_keeps_every_error_term():
    losses = jax.random.uniform(jax.random.key(9), (8, 10**6), minval=2.3, maxval=2.8)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    merged = jax.jit(
        jax.shard_map(
            lambda x: jxent.metrics.LogLoss.empty().update_from_losses(x).psum("data"),
            mesh=mesh,
            in_specs=P("data"),
            out_specs=P(),
        )
    )(losses)
    want = np.sum(np.asarray(losses, np.float64))
    # The (value, error) pair holds the sum to far below a float32 ulp of it (2 here):
    # dropping any device's error term would be off by about that much.
    pair = np.float64(merged.nll) + np.float64(merged.nll_error)
    assert abs(pair - want) < 0.05, (pair, want)
    assert float(merged.count) == 8 * 10**6
