"""linear_softmax_stats and linear_cross_entropy(return_stats=True) against an
independent float64 NumPy reference from the dense logits: values, gradients for
arbitrary cotangents on every float output, edges, structure and memory."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fused_cases import matmuls, problem
from hlo_reading import collectives
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from scipy import special

import jxent

stats_of = jxent.losses.linear_softmax_stats
TOKENS, DIM, VOCAB = 21, 6, 70  # 70: no multiple of the block size nor of 128
TILES = {"block_size": 16, "token_block_size": 8}


def reference(h, w, b, labels, temperature, cap, counted):
    """Float64 ``(log_prob, entropy, logsumexp, argmax)`` per token from the dense logits."""
    h, w, b = (np.asarray(x, np.float64) for x in (h, w, b))
    z = h @ w + b
    if cap:
        z = cap * np.tanh(z / cap)
    s = z / np.broadcast_to(np.asarray(temperature, np.float64), labels.shape)[:, None]
    lse = special.logsumexp(s, axis=1)
    with np.errstate(invalid="ignore"):
        log_p = s - lse[:, None]
    p = np.exp(log_p)
    entropy = -np.sum(np.where(p > 0, p * np.where(p > 0, log_p, 0), 0), axis=1)
    log_prob = log_p[np.arange(len(labels)), np.where(counted, labels, 0)]
    zero = ~counted
    return (
        np.where(zero, 0, log_prob),
        np.where(zero, 0, entropy),
        np.where(zero, 0, lse),
        np.argmax(z, axis=1),
        z,
    )


def _inputs(case, dtype=jnp.float32):
    hidden, weight, bias, labels = problem(3, TOKENS, DIM, VOCAB, dtype=dtype, scale=1.5)
    counted = np.ones(TOKENS, bool)
    temperature, cap, where = 1.0, None, None
    if case == "masked class":
        bias = bias.at[5].set(-jnp.inf).at[40].set(-jnp.inf)
        labels = labels.at[0].set(5)  # a label on a masked class: log_prob -inf
    elif case == "all negative":  # logits from -1e4 to -1, no two alike
        weight = jnp.zeros_like(weight)
        bias = -jnp.geomspace(1.0, 1e4, VOCAB)[jax.random.permutation(jax.random.key(1), VOCAB)]
        bias = bias.astype(dtype)
    elif case == "one huge logit":
        bias = bias.at[17].set(1e4)
    elif case == "softcap":
        cap = 3.0
    elif case in ("T=0.01", "T=10"):
        temperature = float(case[2:])
    elif case == "per-token T":
        temperature = jnp.asarray(np.random.default_rng(1).uniform(0.05, 8.0, TOKENS), dtype)
    elif case == "masked tokens":
        counted = np.arange(TOKENS) % 3 != 1
        where = jnp.asarray(counted)
        labels = jnp.where(where, labels, jnp.asarray([-7, VOCAB, 10**6] * 7)[:TOKENS])
        hidden = jnp.where(where[:, None], hidden, jnp.nan)  # never read
    elif case == "where all False":
        counted = np.zeros(TOKENS, bool)
        where = jnp.asarray(counted)
    return hidden, weight, bias, labels, temperature, cap, where, counted


CASES = [
    "plain",
    "masked class",
    "all negative",
    "one huge logit",
    "softcap",
    "T=0.01",
    "T=10",
    "per-token T",
    "masked tokens",
    "where all False",
]


def _call(hidden, weight, bias, labels, temperature, cap, where, **tiles):
    return stats_of(
        hidden, weight, labels, bias=bias, temperature=temperature, softcap=cap, where=where,
        **(TILES | tiles),
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_values_match_float64_reference(case):
    hidden, weight, bias, labels, temperature, cap, where, counted = _inputs(case)
    got = jax.jit(_call)(hidden, weight, bias, labels, temperature, cap, where)
    log_prob, entropy, lse, argmax, z = reference(
        hidden, weight, bias, labels, temperature, cap, counted
    )
    for x in (got.log_prob, got.entropy, got.logsumexp):
        chex.assert_shape(x, labels.shape)
        chex.assert_type(x, jnp.float32)
    np.testing.assert_allclose(got.log_prob, log_prob, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.logsumexp, lse, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.entropy, entropy, rtol=0, atol=1e-5)
    top2 = np.sort(z, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(top2[:, 1])) & counted
    chex.assert_type(got.argmax, jnp.int32)
    np.testing.assert_array_equal(np.asarray(got.argmax)[clear], argmax[clear])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_16_bit_inputs_match_the_float64_statistics_of_their_values(dtype):
    hidden, weight, bias, labels, *_ = _inputs("plain", dtype)
    got = _call(hidden, weight, bias, labels, 0.7, None, None)
    want = reference(hidden, weight, bias, labels, 0.7, None, np.ones(TOKENS, bool))
    chex.assert_type(got.entropy, jnp.float32)
    np.testing.assert_allclose(got.log_prob, want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.entropy, want[1], atol=1e-5)
    np.testing.assert_allclose(got.logsumexp, want[2], rtol=1e-5, atol=1e-5)


def _dense64(h, w, b, labels, temperature, cap, counted, keep):
    """The statistics from dense float64 logits, as JAX (for jax.vjp), over the
    classes ``keep`` (those with a finite bias)."""
    z = h @ w[:, keep] + b[keep]
    if cap:
        z = cap * jnp.tanh(z / cap)
    s = z / jnp.broadcast_to(temperature, labels.shape)[:, None]
    log_p = jax.nn.log_softmax(s)
    entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=1)
    column = jnp.searchsorted(jnp.asarray(keep), jnp.where(counted, labels, keep[0]))
    log_prob = log_p[jnp.arange(len(labels)), column]
    lse = jax.nn.logsumexp(s, axis=1)
    return tuple(jnp.where(counted, x, 0) for x in (log_prob, entropy, lse))


@pytest.mark.parametrize(
    "case", ["plain", "masked class", "softcap", "per-token T", "masked tokens"]
)
def test_gradients_for_arbitrary_cotangents_match_dense_float64(case, x64):
    hidden, weight, bias, labels, temperature, cap, where, counted = _inputs(case)
    if case == "masked class":
        labels = labels.at[0].set(6)  # a label with a finite log-prob
    rng = np.random.default_rng(7)
    cotangents = tuple(jnp.asarray(rng.normal(size=TOKENS), jnp.float32) for _ in range(3))

    def fused(h, w, b):
        return _call(h, w, b, labels, temperature, cap, where)[:3]

    _, pullback = jax.vjp(fused, hidden, weight, bias)
    got = pullback(cotangents)
    f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    h64 = jnp.where(jnp.asarray(counted)[:, None], f64(hidden), 0)
    _, dense_pullback = jax.vjp(
        lambda h, w, b: _dense64(
            h, w, b, labels, f64(temperature), cap, counted, np.flatnonzero(np.isfinite(bias))
        ),
        h64,
        f64(weight),
        f64(bias),
    )
    want = dense_pullback(tuple(f64(c) for c in cotangents))
    chex.assert_tree_all_finite(got)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6 * np.abs(r).max())
    # The outer cotangent scales everything.
    scaled = pullback(tuple(-3 * c for c in cotangents))
    for s, g in zip(scaled, got, strict=True):
        np.testing.assert_allclose(s, -3 * g, rtol=1e-5, atol=3e-6 * np.abs(g).max())


def test_check_grads_in_float64(x64):
    hidden, weight, bias, labels = problem(4, 5, 3, 9, dtype=jnp.float64)
    temperature = jnp.asarray([0.5, 1.0, 2.0, 0.8, 3.0])

    def outputs(h, w, b):
        s = stats_of(h, w, labels, bias=b, temperature=temperature, softcap=4.0, block_size=4)
        return jnp.stack([s.log_prob, s.entropy, s.logsumexp])

    jax.test_util.check_grads(outputs, (hidden, weight, bias), order=1, modes=["rev"])


def test_masked_tokens_and_empty_rows_give_zeros_and_zero_gradients():
    hidden, weight, bias, labels = problem(5, 6, 4, 10)
    labels = 5 + labels % 5  # on unmasked classes: a masked label's log-prob has gradient 1
    where = jnp.asarray([True, False, True, True, False, True])
    hidden = hidden.at[1].set(jnp.nan)
    # Token 3 sees every class masked: an empty row.
    bias = jnp.where(jnp.arange(10) < 5, -jnp.inf, bias)
    hidden = hidden.at[3].set(0.0)
    weight = weight.at[:, 5:].set(jnp.where(jnp.arange(5) < 3, weight[:, 5:], 0))

    def total(h, w, b):
        s = stats_of(h, w, labels, bias=b, where=where, block_size=4)
        return (s.log_prob * 0.3 + s.entropy - 0.7 * s.logsumexp).sum(), s

    (_, s), grads = jax.value_and_grad(total, (0, 1, 2), has_aux=True)(hidden, weight, bias)
    chex.assert_tree_all_finite(grads)
    masked = ~np.asarray(where)
    for x in (s.log_prob, s.entropy, s.logsumexp):
        np.testing.assert_array_equal(np.asarray(x)[masked], 0)
    np.testing.assert_array_equal(np.asarray(grads[0])[masked], 0)
    np.testing.assert_array_equal(grads[2][:5], 0)


def test_empty_row_has_minus_inf_logsumexp_and_no_gradient():
    hidden, weight, _, labels = problem(5, 3, 4, 6)
    bias = jnp.full((6,), -jnp.inf)
    s, pullback = jax.vjp(lambda h: stats_of(h, weight, labels, bias=bias)[:3], hidden)
    np.testing.assert_array_equal(s[2], -np.inf)
    np.testing.assert_array_equal(s[0], 0)
    np.testing.assert_array_equal(s[1], 0)
    np.testing.assert_array_equal(pullback(tuple(jnp.ones(3) for _ in range(3)))[0], 0)


def test_without_labels_and_with_a_bad_label():
    hidden, weight, bias, labels = problem(6, 4, 5, 12)
    s = stats_of(hidden, weight, bias=bias)
    assert s.log_prob is None
    want = reference(hidden, weight, bias, labels, 1.0, None, np.ones(4, bool))
    np.testing.assert_allclose(s.entropy, want[1], atol=1e-5)
    bad = labels.at[2].set(12)
    s = stats_of(hidden, weight, bad, bias=bias)
    assert np.isnan(s.log_prob[2]) and np.isfinite(np.delete(np.asarray(s.log_prob), 2)).all()
    # The entropy alone is differentiable whatever the labels are.
    grad = jax.grad(lambda h: stats_of(h, weight, bad, bias=bias).entropy.sum())(hidden)
    chex.assert_tree_all_finite(grad)
    grad = jax.grad(lambda h: stats_of(h, weight, bad, bias=bias).log_prob.sum())(hidden)
    assert np.isnan(grad[2]).all() and np.isfinite(np.delete(np.asarray(grad), 2, 0)).all()


def test_batch_axes_vmap_and_scan():
    hidden, weight, bias, labels = problem(7, 24, 5, 30)
    h3, y3 = hidden.reshape(2, 3, 4, 5), labels.reshape(2, 3, 4)
    flat = stats_of(hidden, weight, labels, bias=bias, temperature=0.5)
    shaped = stats_of(h3, weight, y3, bias=bias, temperature=0.5)
    chex.assert_trees_all_close(shaped, jax.tree.map(lambda x: x.reshape(2, 3, 4), flat))
    mapped = jax.vmap(lambda h, y: stats_of(h, weight, y, bias=bias, temperature=0.5))(
        h3.reshape(6, 4, 5), y3.reshape(6, 4)
    )
    chex.assert_trees_all_close(mapped, jax.tree.map(lambda x: x.reshape(6, 4), flat))

    def step(carry, xs):
        h, y = xs
        return carry + stats_of(h, weight, y, bias=bias, temperature=0.5).entropy.sum(), None

    total, _ = jax.lax.scan(step, 0.0, (h3.reshape(6, 4, 5), y3.reshape(6, 4)))
    np.testing.assert_allclose(total, flat.entropy.sum(), rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": jnp.ones(5)}, ValueError, "temperature of shape"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"block_size": 0}, ValueError, "block_size"),
        ({"where": jnp.ones(4)}, TypeError, "where"),
    ],
)
def test_bad_options_name_the_argument(kwargs, error, match):
    hidden, weight, _, labels = problem(8, 4, 3, 7)
    with pytest.raises(error, match=match):
        stats_of(hidden, weight, labels, **kwargs)


def test_temperature_may_be_traced_and_is_not_differentiated():
    hidden, weight, _, labels = problem(9, 4, 3, 7)
    f = jax.jit(lambda t: stats_of(hidden, weight, labels, temperature=t).entropy.sum())
    np.testing.assert_allclose(
        f(2.0), stats_of(hidden, weight, labels, temperature=2.0).entropy.sum(), rtol=1e-6
    )
    assert jax.grad(f)(2.0) == 0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_return_stats_come_from_the_loss_sweep_and_leave_its_gradient(reduction):
    hidden, weight, bias, labels = problem(10, TOKENS, DIM, VOCAB)
    labels = labels.at[::5].set(-100)
    where = jnp.arange(TOKENS) % 7 != 3
    options = dict(bias=bias, where=where, ignore_index=-100, label_smoothing=0.1, z_loss=1e-3)
    options |= dict(softcap=5.0, reduction=reduction, **TILES)
    fused_ce = jxent.losses.linear_cross_entropy
    loss, stats = fused_ce(hidden, weight, labels, return_stats=True, **options)
    chex.assert_trees_all_close(loss, fused_ce(hidden, weight, labels, **options), rtol=1e-6)
    counted = np.asarray(where & (labels != -100))
    want = stats_of(hidden, weight, jnp.where(counted, labels, 0), bias=bias, softcap=5.0)
    for got, expected in zip(stats[:3], want[:3], strict=True):
        np.testing.assert_allclose(got, np.where(counted, expected, 0), rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(stats.argmax)[counted], want.argmax[counted])

    def with_stats(h):
        value, s = fused_ce(h, weight, labels, return_stats=True, **options)
        return value.sum() + s.logsumexp.sum()  # the statistics are not differentiated

    np.testing.assert_allclose(
        jax.grad(with_stats)(hidden),
        jax.grad(lambda h: fused_ce(h, weight, labels, **options).sum())(hidden),
        rtol=1e-6,
    )


def test_matmul_flops_and_16_bit_operands_in_the_jaxpr():
    tokens, dim, vocab = 200, 32, 1000
    hidden, weight, bias, labels = problem(6, tokens, dim, vocab, dtype=jnp.bfloat16)

    def objective(h, w, b):
        s = stats_of(h, w, labels, bias=b, temperature=0.7, softcap=30.0, block_size=128)
        return (s.log_prob * jnp.cos(jnp.arange(tokens)) + 0.1 * s.entropy).sum()

    counted = list(
        matmuls(
            jax.make_jaxpr(jax.value_and_grad(objective, (0, 1, 2)))(hidden, weight, bias).jaxpr
        )
    )
    total = sum(flops for flops, _, _ in counted)
    assert total <= 8.3 * tokens * dim * vocab, total / (tokens * dim * vocab)
    for flops, lhs, rhs in counted:
        if flops >= 0.01 * total:
            assert lhs == rhs == jnp.bfloat16, (flops, lhs, rhs)
    evaluation = list(matmuls(jax.make_jaxpr(objective)(hidden, weight, bias).jaxpr))
    assert sum(flops for flops, _, _ in evaluation) <= 2.1 * tokens * dim * vocab


def test_value_and_grad_memory_at_8192_tokens_d2048_v131072():
    tokens, dim, vocab = 8192, 2048, 131072

    def objective(h, w, y):
        s = stats_of(h, w, y)
        return (s.log_prob + 0.01 * s.entropy).sum()

    specs = (
        jax.ShapeDtypeStruct((tokens, dim), jnp.float32),
        jax.ShapeDtypeStruct((dim, vocab), jnp.float32),
        jax.ShapeDtypeStruct((tokens,), jnp.int32),
    )
    compiled = jax.jit(jax.value_and_grad(objective, (0, 1))).lower(*specs).compile()
    mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
    assert mib <= 128, mib


@functools.cache
def _mesh(mode):
    return jax.make_mesh((4, 2), ("data", "model"), axis_types=(getattr(AxisType, mode),) * 2)


def _policy_objective(hidden, weight, bias, labels):
    temperature = 0.5 + (labels % 3).astype(jnp.float32)  # sharded like the tokens
    s = stats_of(hidden, weight, labels, bias=bias, temperature=temperature, where=labels % 5 != 0,
                 block_size=96, token_block_size=32)  # fmt: skip
    advantages = jnp.cos(jnp.arange(labels.size)).reshape(labels.shape)
    return (advantages * s.log_prob + 0.1 * s.entropy - 0.01 * s.logsumexp).sum()


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
@pytest.mark.parametrize("mode", ["Auto", "Explicit"])
def test_sharded_over_tokens_and_vocabulary_equals_one_device(mode):
    hidden, weight, bias, labels = problem(12, 256, 8, 384)
    value_and_grad = jax.value_and_grad(_policy_objective, (0, 1, 2))
    want = jax.jit(value_and_grad)(hidden, weight, bias, labels)
    mesh = _mesh(mode)
    specs = (P("data"), P("data", "model"), P("model"), P("data"))
    with jax.set_mesh(mesh):
        placed = [
            jax.device_put(x, NamedSharding(mesh, s))
            for x, s in zip((hidden, weight, bias, labels), specs, strict=True)
        ]
        compiled = jax.jit(value_and_grad).lower(*placed).compile()
        got = compiled(*placed)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-6)
    for c in collectives(compiled.as_text()):
        if c.op in ("all-gather", "all-to-all"):
            assert not (c.has_dimension(256) or c.has_dimension(384)), c  # tokens, vocabulary
        if c.in_loop:
            assert not (c.has_dimension(384) or c.has_dimension(192)), c


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest.py)")
@pytest.mark.parametrize("check_vma", [True, False])
def test_vocab_parallel_variant_inside_shard_map_equals_one_device(check_vma):
    hidden, weight, bias, labels = problem(13, 16, 8, 96, scale=2.0)
    temperature = jnp.linspace(0.3, 3.0, 16)
    where = jnp.arange(16) % 5 != 2
    cotangents = tuple(jnp.cos(jnp.arange(16) * (k + 1)) for k in range(3))

    def objective(stats):
        return sum((c * x).sum() for c, x in zip(cotangents, stats[:3], strict=False))

    def local(h, w, b):
        return objective(stats_of(h, w, labels, bias=b, temperature=temperature, where=where))

    def sharded(h, w, b):
        stats = jxent.sharding.vocab_parallel_linear_softmax_stats(
            h, w, labels, axis_name="vocab", bias=b, temperature=temperature, where=where,
            block_size=5,
        )  # fmt: skip
        return tuple(stats)

    mesh = jax.make_mesh((8,), ("vocab",), axis_types=(AxisType.Auto,))
    run = jax.shard_map(
        sharded,
        mesh=mesh,
        in_specs=(P(), P(None, "vocab"), P("vocab")),
        out_specs=P(),
        check_vma=check_vma,
    )

    def with_argmax(*args):
        stats = run(*args)
        return objective(stats), stats[3]

    (value, argmax), grads = jax.jit(jax.value_and_grad(with_argmax, (0, 1, 2), has_aux=True))(
        hidden, weight, bias
    )
    want_value, want_grads = jax.jit(jax.value_and_grad(local, (0, 1, 2)))(hidden, weight, bias)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    chex.assert_trees_all_close(grads, want_grads, rtol=2e-5, atol=1e-6)
    want_argmax = stats_of(hidden, weight, bias=bias).argmax
    np.testing.assert_array_equal(np.asarray(argmax)[where], np.asarray(want_argmax)[where])
