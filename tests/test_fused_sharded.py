"""The fused losses inside shard_map, with check_vma on and off, against one device."""

import chex
import jax
import jax.numpy as jnp
import pytest
from fused_cases import fused_ce, problem
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import jxent

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")

MESHES = {  # name: (shape, axis names, in_specs of (hidden, weight, bias, labels), out_spec)
    "vocab": ((8,), ("vocab",), (P(), P(None, "vocab"), P("vocab"), P()), P()),
    "data x vocab": (
        (2, 4),
        ("data", "vocab"),
        (P("data"), P(None, "vocab"), P("vocab"), P("data")),
        P("data"),
    ),
}
OPTIONS = [
    {},
    {"ignore_index": -100, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 3.0},
    {"reduction": "mean"},
    {"reduction": "sum", "where": True},
]


def _problem():
    hidden, weight, bias, labels = problem(0, tokens=16, dim=8, vocab=96, scale=2.0)
    return hidden, weight, bias, labels.at[5].set(-100)


def _value_and_grads(loss):
    return jax.jit(jax.value_and_grad(lambda *a: loss(*a).sum(), (0, 1, 2)))


# A per-device sum or mean over data shards is not the global one: the reduced
# options run on the vocabulary-only mesh.
SHARDED_CASES = [
    (mesh_name, options)
    for mesh_name in MESHES
    for options in OPTIONS
    if options.get("reduction", "none") == "none" or "data" not in MESHES[mesh_name][1]
]


@pytest.mark.parametrize("check_vma", [True, False])
@pytest.mark.parametrize(("mesh_name", "options"), SHARDED_CASES, ids=str)
def test_vocab_parallel_fused_gradients_equal_one_device(mesh_name, options, check_vma):
    shape, names, in_specs, out_spec = MESHES[mesh_name]
    options = dict(options)
    hidden, weight, bias, labels = _problem()
    where = jnp.ones(labels.shape, bool)
    if options.pop("where", False):
        where = jnp.arange(labels.size) % 3 != 0
    mesh = jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names))

    def shard_loss(h, w, b, y, m):
        return jxent.sharding.vocab_parallel_linear_cross_entropy(
            h, w, y, bias=b, where=m, axis_name="vocab", block_size=5, **options
        )

    sharded = jax.shard_map(
        shard_loss,
        mesh=mesh,
        in_specs=(*in_specs, in_specs[3]),
        out_specs=out_spec,
        check_vma=check_vma,
    )
    got = _value_and_grads(lambda h, w, b: sharded(h, w, b, labels, where))(hidden, weight, bias)
    want = _value_and_grads(lambda h, w, b: fused_ce(h, w, labels, bias=b, where=where, **options))(
        hidden, weight, bias
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


def test_eager_shard_map_without_jit():
    hidden, weight, bias, labels = _problem()
    mesh = jax.make_mesh((8,), ("vocab",), axis_types=(AxisType.Auto,))
    sharded = jax.shard_map(
        lambda h, w, b: jxent.sharding.vocab_parallel_linear_cross_entropy(
            h, w, labels, bias=b, axis_name="vocab", ignore_index=-100
        ),
        mesh=mesh,
        in_specs=(P(), P(None, "vocab"), P("vocab")),
        out_specs=P(),
    )
    got = jax.value_and_grad(lambda *a: sharded(*a).sum(), (0, 1, 2))(hidden, weight, bias)
    want = _value_and_grads(lambda h, w, b: fused_ce(h, w, labels, bias=b, ignore_index=-100))(
        hidden, weight, bias
    )
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("check_vma", [True, False])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_data_parallel_linear_cross_entropy_sums_the_weight_gradient(reduction, check_vma):
    hidden, weight, bias, labels = _problem()
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))

    def shard_loss(h, w, b, y):
        local = fused_ce(h, w, y, bias=b, ignore_index=-100, reduction=reduction)
        return jax.lax.psum(local.sum(), "data")

    sharded = jax.shard_map(
        shard_loss,
        mesh=mesh,
        in_specs=(P("data"), P(), P(), P("data")),
        out_specs=P(),
        check_vma=check_vma,
    )
    got = _value_and_grads(lambda h, w, b: sharded(h, w, b, labels))(hidden, weight, bias)
    want = _value_and_grads(
        lambda h, w, b: fused_ce(h, w, labels, bias=b, ignore_index=-100, reduction=reduction)
    )(hidden, weight, bias)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
