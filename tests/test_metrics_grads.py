"""LogLoss readings under grad, jvp, hessian and a sharded grad, against plain formulas."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from jxent.metrics import LogLoss

LOSSES = jnp.array([0.5, 1.5, 2.0, 0.25, 3.0, 1.0])
WHERE = jnp.array([True, True, False, True, True, True])
COUNT = float(WHERE.sum())
NUM_BYTES = 17.0

# reading -> (LogLoss reading, the same from the masked losses by a plain formula)
READINGS = {
    "total": (lambda m: m.total(), lambda x: jnp.sum(x)),
    "mean": (lambda m: m.mean(), lambda x: jnp.sum(x) / COUNT),
    "perplexity": (lambda m: m.perplexity(), lambda x: jnp.exp(jnp.sum(x) / COUNT)),
    "bits_per_token": (lambda m: m.bits_per_token(), lambda x: jnp.sum(x) / COUNT / math.log(2)),
    "bits_per_byte": (
        lambda m: m.bits_per_byte(NUM_BYTES),
        lambda x: jnp.sum(x) / math.log(2) / NUM_BYTES,
    ),
}


def _metric(reading):
    return lambda x: reading(LogLoss.empty().update_from_losses(x, where=WHERE))


def _plain(formula):
    return lambda x: formula(jnp.where(WHERE, x, 0))


@pytest.mark.parametrize("name", list(READINGS))
def test_grad_jvp_and_hessian_of_every_reading(name):
    reading, formula = READINGS[name]
    metric, plain = _metric(reading), _plain(formula)
    chex.assert_trees_all_close(jax.grad(metric)(LOSSES), jax.grad(plain)(LOSSES), rtol=1e-6)
    tangent = jnp.linspace(-1.0, 1.0, LOSSES.size)
    chex.assert_trees_all_close(
        jax.jvp(metric, (LOSSES,), (tangent,)), jax.jvp(plain, (LOSSES,), (tangent,)), rtol=1e-6
    )
    chex.assert_trees_all_close(
        jax.hessian(metric)(LOSSES), jax.hessian(plain)(LOSSES), rtol=1e-5, atol=1e-7
    )


def test_gradient_through_update_merge_and_count():
    def mean_of_two_batches(x):
        first = LogLoss.empty().update_from_losses(x[:3])
        return first.merge(LogLoss.empty().update_from_losses(x[3:])).mean()

    grad = jax.grad(mean_of_two_batches)(LOSSES)
    np.testing.assert_allclose(grad, np.full(LOSSES.size, 1 / LOSSES.size), rtol=1e-6)
    count_grad = jax.grad(lambda x: LogLoss.empty().update_from_losses(x).count)(LOSSES)
    assert np.all(np.asarray(count_grad) == 0)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
@pytest.mark.parametrize("check_vma", [True, False])
def test_gradient_of_a_psum_over_devices(check_vma):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    losses = jnp.linspace(0.1, 3.0, 16)
    sharded = jax.shard_map(
        lambda x: LogLoss.empty().update_from_losses(x).psum("data").mean(),
        mesh=mesh,
        in_specs=P("data"),
        out_specs=P(),
        check_vma=check_vma,
    )
    grad = jax.jit(jax.grad(sharded))(losses)
    np.testing.assert_allclose(grad, np.full(16, 1 / 16), rtol=1e-6)
