"""Vocab-parallel losses on an 8-device CPU mesh against the single-device losses."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from loss_cases import adversarial_rows, reference

import jxent

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")

OPTIONS = [
    {},
    {"ignore_index": -100},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"ignore_index": -100, "label_smoothing": 0.2, "z_loss": 1e-2},
]


def _mesh():
    return jax.make_mesh((2, 4), ("data", "vocab"), axis_types=(AxisType.Auto,) * 2)


def _problem(seed, tokens=16, dim=8, vocab=96):
    keys = jax.random.split(jax.random.key(seed), 4)
    hidden = jax.random.normal(keys[0], (tokens, dim))
    weight = jax.random.normal(keys[1], (dim, vocab))
    bias = jax.random.normal(keys[2], (vocab,))
    labels = jax.random.randint(keys[3], (tokens,), 0, vocab)
    # Labels on every shard, and one ignored token when an option asks for it.
    labels = labels.at[:4].set(jnp.array([0, 23, 24, 95])).at[5].set(-100)
    return hidden, weight, bias, labels


def _sharded_logits_loss(**options):
    loss = jax.shard_map(
        lambda z, y, m: jxent.sharding.vocab_parallel_cross_entropy(
            z, y, axis_name="vocab", where=m, **options
        ),
        mesh=_mesh(),
        in_specs=(P("data", "vocab"), P("data"), P(None, "vocab")),
        out_specs=P("data"),
    )
    return jax.jit(loss)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_logits_shard_loss_and_gradient_equal_the_dense_loss(options):
    hidden, weight, _, labels = _problem(0)
    logits = 3.0 * hidden @ weight
    if "ignore_index" not in options:
        labels = labels.at[5].set(7)
    mask = jnp.ones((1, logits.shape[1]), bool).at[0, 30:34].set(False)
    sharded = _sharded_logits_loss(**options)

    def dense(z):
        return jxent.losses.softmax_cross_entropy_with_integer_labels(
            z, labels, where=mask, **options
        )

    chex.assert_trees_all_close(sharded(logits, labels, mask), dense(logits), rtol=1e-6, atol=1e-6)
    grad_sharded = jax.grad(lambda z: sharded(z, labels, mask).sum())(logits)
    grad_dense = jax.grad(lambda z: dense(z).sum())(logits)
    chex.assert_trees_all_close(grad_sharded, grad_dense, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "z_loss": 1e-4}], ids=str)
def test_logits_shard_keeps_float64_digits_at_huge_logits(options):
    # 12 classes, 3 per device: rows with every other class far below the peak
    # have tiny losses when their label sits at the peak.
    logits, labels = adversarial_rows(np.random.default_rng(8), 1024, 12)
    mask = np.ones((1, 12), bool)
    loss = np.asarray(_sharded_logits_loss(**options)(logits, labels, mask), np.float64)
    smoothing, z_loss = options.get("label_smoothing", 0.0), options.get("z_loss", 0.0)
    expected = reference(logits, labels, smoothing, z_loss)
    np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=1e-6)
    assert options or np.sum(expected < 1e-3) > 10


def test_out_of_range_labels_are_nan_on_the_sharded_path_too():
    hidden, weight, _, labels = _problem(1)
    logits = hidden @ weight
    labels = labels.at[6].set(-1).at[7].set(96).at[5].set(3)
    mask = jnp.ones((1, logits.shape[1]), bool)
    loss = _sharded_logits_loss()(logits, labels, mask)
    assert np.isnan(loss[6]) and np.isnan(loss[7])
    chex.assert_tree_all_finite(jnp.delete(loss, jnp.array([6, 7])))


def _sharded_fused_loss(**options):
    loss = jax.shard_map(
        lambda h, w, b, y: jxent.sharding.vocab_parallel_linear_cross_entropy(
            h, w, y, bias=b, axis_name="vocab", block_size=10, **options
        ),
        mesh=_mesh(),
        in_specs=(P("data"), P(None, "vocab"), P("vocab"), P("data")),
        out_specs=P("data"),
    )
    return jax.jit(loss)


@pytest.mark.parametrize("options", [*OPTIONS, {"softcap": 2.0}], ids=str)
def test_fused_shard_loss_and_gradients_equal_the_single_device_loss(options):
    hidden, weight, bias, labels = _problem(2)
    if "ignore_index" not in options:
        labels = labels.at[5].set(7)
    sharded = _sharded_fused_loss(**options)

    def single(h, w, b):
        return jxent.losses.linear_cross_entropy(h, w, labels, bias=b, block_size=10, **options)

    chex.assert_trees_all_close(
        sharded(hidden, weight, bias, labels), single(hidden, weight, bias), rtol=1e-6, atol=1e-6
    )
    grads_sharded = jax.grad(lambda *a: sharded(*a, labels).sum(), (0, 1, 2))(hidden, weight, bias)
    grads_single = jax.grad(lambda *a: single(*a).sum(), (0, 1, 2))(hidden, weight, bias)
    chex.assert_trees_all_close(grads_sharded, grads_single, rtol=1e-5, atol=1e-6)


def _collectives(hlo: str):
    """(op, shape) of every collective in a compiled HLO module."""
    pattern = re.compile(
        r"= (\(?[a-z0-9\[\]{},. ]+\)?) (all-reduce|all-gather|all-to-all|"
        r"reduce-scatter|collective-permute)(?:-start)?\("
    )
    return [(m.group(2), m.group(1)) for m in pattern.finditer(hlo)]


def test_only_per_token_vectors_cross_the_vocab_axis():
    tokens, dim, vocab = 64, 32, 512
    hidden = jnp.zeros((tokens, dim))
    weight = jnp.zeros((dim, vocab))
    labels = jnp.zeros((tokens,), jnp.int32)
    mesh = jax.make_mesh((8,), ("vocab",), axis_types=(AxisType.Auto,))
    logits_loss = jax.shard_map(
        lambda z, y: jxent.sharding.vocab_parallel_cross_entropy(z, y, axis_name="vocab"),
        mesh=mesh,
        in_specs=(P(None, "vocab"), P()),
        out_specs=P(),
    )
    fused_loss = jax.shard_map(
        lambda h, w, y: jxent.sharding.vocab_parallel_linear_cross_entropy(
            h, w, y, axis_name="vocab", block_size=16
        ),
        mesh=mesh,
        in_specs=(P(), P(None, "vocab"), P()),
        out_specs=P(),
    )
    programs = {
        "logits": jax.jit(jax.value_and_grad(lambda z: logits_loss(z, labels).sum()))
        .lower(hidden @ weight)
        .compile()
        .as_text(),
        "fused": jax.jit(jax.value_and_grad(lambda h, w: fused_loss(h, w, labels).sum(), (0, 1)))
        .lower(hidden, weight)
        .compile()
        .as_text(),
    }
    for name, hlo in programs.items():
        found = _collectives(hlo)
        assert found, f"{name}: expected per-token collectives"
        for op, shape in found:
            assert op == "all-reduce", (name, op, shape)
            for dims in re.findall(r"\[([\d,]*)\]", shape):
                elements = int(np.prod([int(d) for d in dims.split(",") if d], dtype=np.int64))
                # Per token: [tokens] vectors, or the [tokens, D] gradient of hidden.
                assert elements <= tokens * dim, (name, shape)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("options", [{}, {"ignore_index": -100, "label_smoothing": 0.1}], ids=str)
def test_fused_shard_reductions_and_token_mask_equal_the_single_device_loss(reduction, options):
    hidden, weight, bias, labels = _problem(3)
    where = jnp.arange(labels.size) % 3 != 2
    mesh = jax.make_mesh((8,), ("vocab",), axis_types=(AxisType.Auto,))
    kwargs = {"where": where, "reduction": reduction, "block_size": 5, **options}
    sharded = jax.jit(
        jax.shard_map(
            lambda h, w, b: jxent.sharding.vocab_parallel_linear_cross_entropy(
                h, w, labels, bias=b, axis_name="vocab", **kwargs
            ),
            mesh=mesh,
            in_specs=(P(), P(None, "vocab"), P("vocab")),
            out_specs=P(),
        )
    )

    def single(h, w, b):
        return jxent.losses.linear_cross_entropy(h, w, labels, bias=b, **kwargs)

    def total(loss):
        return lambda *a: loss(*a).sum()

    args = (hidden, weight, bias)
    chex.assert_trees_all_close(sharded(*args), single(*args), rtol=1e-6, atol=1e-6)
    grads_sharded = jax.grad(total(sharded), (0, 1, 2))(*args)
    grads_single = jax.grad(total(single), (0, 1, 2))(*args)
    chex.assert_trees_all_close(grads_sharded, grads_single, rtol=1e-5, atol=1e-6)
