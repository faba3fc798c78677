"""The fused loss under plain ``jax.jit`` with ``NamedSharding`` inputs (Auto and
Explicit mesh axes): each device computes its own tokens against its own vocabulary
columns, read from the compiled HLO and from ``memory_analysis()`` per device."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fused_cases import fused_ce, problem
from hlo_reading import collectives
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")

TOKENS, DIM, VOCAB = 1024, 16, 1536
# Tiles small enough that every sweep loops, with a vocabulary block that does not
# divide a shard's columns (1536 or 768).
TILES = {"block_size": 320, "token_block_size": 64}
MESH_SHAPE, MESH_AXES = (4, 2), ("data", "model")
# name: (hidden's spec, weight's spec, hidden's shape)
LAYOUTS = {
    "data": (P("data"), P(), (TOKENS, DIM)),
    "data over both axes": (P(("data", "model")), P(), (TOKENS, DIM)),
    "fsdp": (P("data"), P("data", None), (TOKENS, DIM)),
    "vocab": (P("data"), P(None, "model"), (TOKENS, DIM)),
    "fsdp and vocab": (P("data"), P("data", "model"), (TOKENS, DIM)),
    "vocab only": (P(), P(None, "model"), (TOKENS, DIM)),
    "batch and sequence": (P("data"), P(None, "model"), (8, TOKENS // 8, DIM)),
}


def _inputs(shape):
    hidden, weight, bias, labels = problem(11, tokens=TOKENS, dim=DIM, vocab=VOCAB, scale=0.5)
    labels = labels.at[::7].set(-100)
    return hidden.reshape(shape), weight, bias, labels.reshape(shape[:-1])


def _loss(reduction):
    def loss(hidden, weight, bias, labels):
        value = fused_ce(
            hidden, weight, labels, bias=bias, ignore_index=-100, reduction=reduction, **TILES
        )
        # Unequal per-token cotangents for the per-token losses.
        return (value * jnp.cos(jnp.arange(value.size)).reshape(value.shape)).sum()

    return jax.value_and_grad(loss, (0, 1, 2))


@functools.cache
def _one_device(reduction, shape):
    return jax.jit(_loss(reduction))(*_inputs(shape))


def _sizes(spec, shape, mesh):
    """Mesh devices that split each dimension of an array of ``shape``."""
    entries = tuple(spec) + (None,) * (len(shape) - len(spec))
    counts = []
    for entry in entries:
        axes = () if entry is None else (entry,) if isinstance(entry, str) else entry
        counts.append(int(np.prod([mesh.shape[a] for a in axes], dtype=int)))
    return counts


@functools.cache
def _sharded(mode, layout, reduction):
    """(compiled, outputs, inputs) of the value and gradients on the 4 x 2 mesh."""
    hidden_spec, weight_spec, shape = LAYOUTS[layout]
    mesh = jax.make_mesh(MESH_SHAPE, MESH_AXES, axis_types=(getattr(AxisType, mode),) * 2)
    hidden, weight, bias, labels = _inputs(shape)
    specs = (hidden_spec, weight_spec, P(weight_spec[1] if len(weight_spec) > 1 else None))
    label_spec = P(*hidden_spec[: len(shape) - 1])
    with jax.set_mesh(mesh):
        placed = [
            jax.device_put(x, NamedSharding(mesh, s))
            for x, s in zip((hidden, weight, bias, labels), (*specs, label_spec), strict=True)
        ]
        compiled = jax.jit(_loss(reduction)).lower(*placed).compile()
        outputs = compiled(*placed)
    return compiled, outputs, placed, mesh


CASES = [
    pytest.param(mode, layout, reduction, id=f"{mode}-{layout}-{reduction}")
    for mode in ("Auto", "Explicit")
    for layout in LAYOUTS
    for reduction in ("mean", "none")
]


@pytest.mark.parametrize(("mode", "layout", "reduction"), CASES)
def test_values_and_gradients_equal_one_device(mode, layout, reduction):
    _, (value, grads), placed, _ = _sharded(mode, layout, reduction)
    want_value, want_grads = _one_device(reduction, LAYOUTS[layout][2])
    chex.assert_trees_all_close(value, want_value, rtol=2e-5)
    chex.assert_trees_all_close(grads, want_grads, rtol=2e-4, atol=1e-6)
    d_hidden, d_weight, _ = grads
    hidden, weight = placed[:2]
    assert d_hidden.sharding.is_equivalent_to(hidden.sharding, hidden.ndim), d_hidden.sharding
    if mode == "Explicit":
        assert jax.typeof(d_weight).sharding.spec == jax.typeof(weight).sharding.spec


@pytest.mark.parametrize(("mode", "layout", "reduction"), CASES)
def test_no_token_or_vocabulary_gather_and_no_collective_in_a_loop(mode, layout, reduction):
    compiled, _, _, mesh = _sharded(mode, layout, reduction)
    hidden_spec, weight_spec, shape = LAYOUTS[layout]
    local_vocab = VOCAB // _sizes(weight_spec, (DIM, VOCAB), mesh)[1]
    found = collectives(compiled.as_text())
    for c in found:
        if c.op in ("all-gather", "all-to-all"):
            # The global token axis never moves; nor does a sharded vocabulary.
            assert not c.has_dimension(TOKENS) or _sizes(hidden_spec, shape, mesh)[0] == 1, c
            if local_vocab < VOCAB:
                assert not c.has_dimension(VOCAB), c
        if c.in_loop:
            assert not (c.has_dimension(VOCAB) or c.has_dimension(local_vocab)), c
    # d_weight is summed over the token shards once, not once per tile.
    if _sizes(hidden_spec, shape, mesh)[0] > 1:
        weight_sums = [c for c in found if c.op in ("all-reduce", "reduce-scatter")]
        assert any(c.has_dimension(local_vocab) and not c.in_loop for c in weight_sums), found


@pytest.mark.parametrize(("mode", "layout", "reduction"), CASES)
def test_per_device_temporaries_match_one_device_on_its_block(mode, layout, reduction):
    compiled, _, _, mesh = _sharded(mode, layout, reduction)
    hidden_spec, weight_spec, shape = LAYOUTS[layout]
    token_shards = _sizes(hidden_spec, shape, mesh)[0]
    rows, vocab_shards = _sizes(weight_spec, (DIM, VOCAB), mesh)
    block = (TOKENS // token_shards, DIM)
    local = jax.jit(_loss(reduction)).lower(
        jax.ShapeDtypeStruct(block, jnp.float32),
        jax.ShapeDtypeStruct((DIM, VOCAB // vocab_shards), jnp.float32),
        jax.ShapeDtypeStruct((VOCAB // vocab_shards,), jnp.float32),
        jax.ShapeDtypeStruct(block[:1], jnp.int32),
    )
    one_device = local.compile().memory_analysis().temp_size_in_bytes
    # An FSDP weight is gathered, and its gradient summed whole before the
    # reduce-scatter, as the naive path does.
    gathered_weight = 2 * 4 * DIM * VOCAB // vocab_shards if rows > 1 else 0
    per_device = compiled.memory_analysis().temp_size_in_bytes
    assert per_device <= 1.25 * one_device + gathered_weight, (per_device, one_device)
