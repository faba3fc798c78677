"""Every function of two arrays inside shard_map, one operand sharded and one replicated.

The rules' tangents and cotangents must carry the varying-axes type of their
primals: the gradients equal the unsharded ones, with ``check_vma`` on or off.
"""

import warnings

import chex
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import jxent

pytestmark = pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (conftest.py)")


def _probs(z):
    return jax.nn.softmax(z, axis=-1)


def _sigmoid(z):
    return jax.nn.sigmoid(z)


losses = jxent.losses
# name -> f(a, b) of two float arrays [16, 5], both differentiable
FUNCTIONS = {
    "xlogy": lambda a, b: jxent.xlogy(_probs(a), _probs(b)),
    "cross_entropy": lambda a, b: jxent.cross_entropy(_probs(a), _probs(b)),
    "cross_entropy_from_logits": lambda a, b: jxent.cross_entropy_from_logits(_probs(a), b),
    "kl_divergence": lambda a, b: jxent.kl_divergence(_probs(a), _probs(b)),
    "kl_divergence_from_logits": jxent.kl_divergence_from_logits,
    "js_divergence": lambda a, b: jxent.js_divergence(_probs(a), _probs(b)),
    "renyi_divergence": lambda a, b: jxent.renyi_divergence(_probs(a), _probs(b), 0.5),
    "renyi_divergence_from_logits": lambda a, b: jxent.renyi_divergence_from_logits(a, b, 2.0),
    "generalized_js_divergence": lambda a, b: jxent.generalized_js_divergence(
        _probs(a), _probs(b), 0.3
    ),
    "generalized_js_divergence_from_logits": lambda a, b: (
        jxent.generalized_js_divergence_from_logits(a, b, 0.3)
    ),
    "binary_cross_entropy": lambda a, b: jxent.binary_cross_entropy(_sigmoid(a), _sigmoid(b)),
    "binary_kl_divergence": lambda a, b: jxent.binary_kl_divergence(_sigmoid(a), _sigmoid(b)),
    "softmax_cross_entropy": lambda a, b: losses.softmax_cross_entropy(a, _probs(b)),
    "safe_softmax_cross_entropy": lambda a, b: losses.safe_softmax_cross_entropy(a, _probs(b)),
    "sigmoid_binary_cross_entropy": lambda a, b: losses.sigmoid_binary_cross_entropy(
        a, _sigmoid(b)
    ),
    "sigmoid_focal_loss": lambda a, b: losses.sigmoid_focal_loss(a, _sigmoid(b)),
    "poly_loss_cross_entropy": lambda a, b: losses.poly_loss_cross_entropy(a, _probs(b)),
    "losses.kl_divergence": lambda a, b: losses.kl_divergence(jax.nn.log_softmax(a), _probs(b)),
    "kl_divergence_with_log_targets": lambda a, b: losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(a), jax.nn.log_softmax(b)
    ),
    "generalized_kl_divergence": lambda a, b: losses.generalized_kl_divergence(
        jax.nn.log_softmax(a), _probs(b)
    ),
    "distillation_loss": lambda a, b: losses.distillation_loss(a, b, temperature=2.0),
    "integer_labels": lambda a, b: losses.softmax_cross_entropy_with_integer_labels(
        a + b, jnp.argmax(b, axis=-1)
    ),
}


@pytest.mark.parametrize("check_vma", [True, False])
@pytest.mark.parametrize("sharded", [0, 1], ids=["first sharded", "second sharded"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradient_with_one_operand_replicated(name, sharded, check_vma):
    fn = FUNCTIONS[name]
    keys = jax.random.split(jax.random.key(0), 2)
    a, b = (jax.random.normal(k, (16, 5)) for k in keys)
    mesh = jax.make_mesh((4,), ("d",), axis_types=(AxisType.Auto,))
    specs = (P("d"), P()) if sharded == 0 else (P(), P("d"))

    def local(x, y):
        # Each device takes its rows of the sharded operand and the same rows
        # of the replicated one, so the psum is the unsharded sum.
        index = jax.lax.axis_index("d")
        rows = 16 // 4
        x = x if sharded == 0 else jax.lax.dynamic_slice_in_dim(x, index * rows, rows)
        y = y if sharded == 1 else jax.lax.dynamic_slice_in_dim(y, index * rows, rows)
        return jax.lax.psum(fn(x, y).sum(), "d")

    sharded_loss = jax.shard_map(
        local, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=check_vma
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = jax.jit(jax.value_and_grad(sharded_loss, (0, 1)))(a, b)
        want = jax.value_and_grad(lambda x, y: fn(x, y).sum(), (0, 1))(a, b)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=2e-6)
