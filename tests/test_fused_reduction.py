"""linear_cross_entropy's reductions, token mask, 16-bit matmuls, tiles and memory bounds."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fused_cases import dense_reference, fused_ce, matmuls, problem
from jax.test_util import check_grads
from scipy import special

import jxent

OPTIONS = [
    {},
    {"bias": True},
    {"ignore_index": -100},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"softcap": 2.5},
    {"where": True},
    {
        "bias": True,
        "where": True,
        "ignore_index": -100,
        "label_smoothing": 0.2,
        "z_loss": 1e-2,
        "softcap": 4.0,
    },
]
TOKENS = 37  # tiles of 8 tokens leave a short last tile


def _case(options, seed=0, tokens=TOKENS):
    hidden, weight, bias, labels = problem(seed, tokens=tokens, scale=2.0)
    options = dict(options)
    bias = bias if options.pop("bias", False) else None
    where = None
    if options.pop("where", False):
        where = jnp.arange(tokens) % 3 != 1
    if "ignore_index" in options:
        labels = labels.at[::5].set(options["ignore_index"])
    return hidden, weight, bias, labels, where, options


def _grads(loss, hidden, weight, bias):
    argnums = (0, 1) if bias is None else (0, 1, 2)
    return jax.value_and_grad(loss, argnums)(hidden, weight, bias)


def _assert_close_to_reference(got, want):
    (value, grads), (ref_value, ref_grads) = got, want
    chex.assert_trees_all_close(value, ref_value, rtol=2e-5, atol=2e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-4 * float(jnp.abs(r).max()))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("token_block_size", [None, 8])
def test_reductions_match_the_dense_reference(options, reduction, token_block_size):
    hidden, weight, bias, labels, where, options = _case(options)

    def fused(h, w, b):
        out = fused_ce(
            h,
            w,
            labels,
            bias=b,
            where=where,
            reduction=reduction,
            block_size=32,
            token_block_size=token_block_size,
            **options,
        )
        return out.sum() if reduction == "none" else out

    def dense(h, w, b):
        out = dense_reference(h, w, b, labels, where=where, reduction=reduction, **options)
        return out.sum() if reduction == "none" else out

    _assert_close_to_reference(
        _grads(fused, hidden, weight, bias), _grads(dense, hidden, weight, bias)
    )
    if reduction != "none":
        chex.assert_shape(fused(hidden, weight, bias), ())
        chex.assert_type(fused(hidden, weight, bias), jnp.float32)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_masked_tokens_give_zero_whatever_their_label(reduction):
    hidden, weight, _, labels = problem(1)
    where = jnp.arange(labels.size) % 2 == 0
    garbage = jnp.where(where, labels, -7)  # out of range, but masked
    valid = jnp.where(where, labels, 0)

    def loss(h, w, y):
        out = fused_ce(h, w, y, where=where, reduction=reduction, token_block_size=5)
        return out.sum() if reduction == "none" else out

    got = jax.value_and_grad(loss, (0, 1))(hidden, weight, garbage)
    chex.assert_tree_all_finite(got)
    chex.assert_trees_all_close(got, jax.value_and_grad(loss, (0, 1))(hidden, weight, valid))
    per_token = fused_ce(hidden, weight, garbage, where=where)
    assert np.all(per_token[~where] == 0) and np.all(per_token[where] > 0)


def test_a_row_mask_broadcasts_over_the_sequence():
    keys = jax.random.split(jax.random.key(2), 3)
    hidden = jax.random.normal(keys[0], (3, 5, 16))
    weight = jax.random.normal(keys[1], (16, 40))
    labels = jax.random.randint(keys[2], (3, 5), 0, 40)
    rows = jnp.array([[True], [False], [True]])
    got = fused_ce(hidden, weight, labels, where=rows, reduction="mean")
    want = dense_reference(
        hidden.reshape(15, 16),
        weight,
        None,
        labels.ravel(),
        where=jnp.repeat(rows, 5),
        reduction="mean",
    )
    chex.assert_trees_all_close(got, want, rtol=2e-5)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("nothing", ["all masked", "all ignored", "no tokens"])
def test_nothing_counted_gives_zero_loss_and_zero_gradients(reduction, nothing):
    hidden, weight, bias, labels = problem(3, tokens=0 if nothing == "no tokens" else 12)
    where = None
    if nothing == "all masked":
        where = jnp.zeros(labels.shape, bool)
    elif nothing == "all ignored":
        labels = jnp.full(labels.shape, -100)

    def loss(h, w, b):
        out = fused_ce(h, w, labels, bias=b, where=where, ignore_index=-100, reduction=reduction)
        return out.sum() if reduction == "none" else out

    value, grads = jax.value_and_grad(loss, (0, 1, 2))(hidden, weight, bias)
    assert float(value) == 0.0
    for g, x in zip(grads, (hidden, weight, bias), strict=True):
        chex.assert_shape(g, x.shape)
        assert np.all(np.asarray(g) == 0)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_the_outer_cotangent_scales_the_gradients(reduction):
    hidden, weight, bias, labels = problem(4)

    def loss(h, w, b):
        out = fused_ce(h, w, labels, bias=b, reduction=reduction, token_block_size=7)
        return out.sum() if reduction == "none" else out

    grads = jax.grad(loss, (0, 1, 2))(hidden, weight, bias)
    scaled = jax.grad(lambda *a: -3.0 * loss(*a), (0, 1, 2))(hidden, weight, bias)
    chex.assert_trees_all_close(
        scaled, jax.tree.map(lambda g: -3.0 * g, grads), rtol=1e-5, atol=1e-6
    )
    _, pullback = jax.vjp(loss, hidden, weight, bias)
    chex.assert_trees_all_close(
        pullback(jnp.float32(0.5)), jax.tree.map(lambda g: 0.5 * g, grads), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_16_bit_inputs_give_a_float32_loss_and_16_bit_gradients(dtype, reduction):
    hidden, weight, bias, labels = problem(5, tokens=64, vocab=300, dtype=dtype)

    def loss(h, w, b):
        out = fused_ce(h, w, labels, bias=b, reduction=reduction, token_block_size=16)
        return out.mean() if reduction == "none" else out

    value, grads = jax.value_and_grad(loss, (0, 1, 2))(hidden, weight, bias)
    chex.assert_type(value, jnp.float32)
    chex.assert_type(grads, dtype)
    upcast = [x.astype(jnp.float32) for x in (hidden, weight, bias)]
    ref_value, ref_grads = jax.value_and_grad(
        lambda *a: dense_reference(*a, labels, reduction="mean"), (0, 1, 2)
    )(*upcast)
    chex.assert_trees_all_close(value, ref_value, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        error = np.linalg.norm(np.asarray(g, np.float32) - r) / np.linalg.norm(r)
        assert error < 1e-2, error


@pytest.mark.parametrize(
    ("reduction", "bound"), [("none", 8.3), ("sum", 6.3), ("mean", 6.3)], ids=str
)
def test_matmul_flops_and_16_bit_operands_in_the_jaxpr(reduction, bound):
    tokens, dim, vocab = 200, 32, 1000
    hidden, weight, bias, labels = problem(6, tokens, dim, vocab, dtype=jnp.bfloat16)
    where = jnp.arange(tokens) % 4 != 0
    options = {"bias": bias, "where": where, "label_smoothing": 0.1, "z_loss": 1e-4}
    options |= {"softcap": 30.0, "reduction": reduction, "block_size": 128}

    def loss(h, w, b):
        out = fused_ce(h, w, labels, token_block_size=64, **(options | {"bias": b}))
        return out.mean() if reduction == "none" else out

    counted = list(
        matmuls(jax.make_jaxpr(jax.value_and_grad(loss, (0, 1, 2)))(hidden, weight, bias).jaxpr)
    )
    total = sum(flops for flops, _, _ in counted)
    assert total <= bound * tokens * dim * vocab, total / (tokens * dim * vocab)
    for flops, lhs, rhs in counted:
        if flops >= 0.01 * total:
            assert lhs == rhs == jnp.bfloat16, (flops, lhs, rhs)
    evaluation = list(matmuls(jax.make_jaxpr(loss)(hidden, weight, bias).jaxpr))
    assert sum(flops for flops, _, _ in evaluation) <= 2.1 * tokens * dim * vocab


def test_float32_inputs_keep_float32_matmuls():
    hidden, weight, _, labels = problem(7)
    jaxpr = jax.make_jaxpr(jax.grad(lambda h, w: fused_ce(h, w, labels, reduction="mean"), (0, 1)))(
        hidden, weight
    )
    assert {(str(a), str(b)) for _, a, b in matmuls(jaxpr.jaxpr)} == {("float32", "float32")}


def _temp_mib(loss, tokens, dim, vocab):
    specs = (
        jax.ShapeDtypeStruct((tokens, dim), jnp.float32),
        jax.ShapeDtypeStruct((dim, vocab), jnp.float32),
        jax.ShapeDtypeStruct((tokens,), jnp.int32),
    )
    compiled = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(*specs).compile()
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def test_default_tiles_keep_the_memory_bounds_at_8192_tokens_d2048_v131072():
    tokens, dim, vocab = 8192, 2048, 131072
    per_token = _temp_mib(lambda h, w, y: fused_ce(h, w, y).mean(), tokens, dim, vocab)
    reduced = _temp_mib(lambda h, w, y: fused_ce(h, w, y, reduction="mean"), tokens, dim, vocab)
    assert per_token <= 128, per_token
    assert reduced <= 4 * dim * vocab / 2**20 + 640, reduced
    assert reduced > 4 * dim * vocab / 2**20  # the float32 d_weight accumulator is there


def test_reduced_memory_stops_growing_with_tokens_once_a_tile_is_full():
    dim, vocab = 64, 32768
    loss = lambda h, w, y: fused_ce(h, w, y, reduction="sum")  # noqa: E731
    at_8k, at_32k = _temp_mib(loss, 8192, dim, vocab), _temp_mib(loss, 32768, dim, vocab)
    assert at_32k <= at_8k + 4 * 32768 * dim / 2**20 + 1  # only the [tokens, D] gradient grows


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradients_against_finite_differences_in_float64(x64, reduction):
    hidden, weight, bias, labels = problem(8, tokens=7, dim=4, vocab=11, dtype=jnp.float64)
    where = jnp.arange(7) != 3

    def loss(h, w, b):
        out = fused_ce(
            h,
            w,
            labels,
            bias=b,
            where=where,
            label_smoothing=0.1,
            z_loss=0.01,
            softcap=3.0,
            reduction=reduction,
            block_size=4,
            token_block_size=3,
        )
        return out.sum() if reduction == "none" else out

    check_grads(loss, (hidden, weight, bias), order=1, modes=("rev",))
    chex.assert_type(loss(hidden, weight, bias), jnp.float64)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_an_out_of_range_label_makes_the_reduction_and_its_gradients_nan(reduction):
    hidden, weight, _, labels = problem(9)
    labels = labels.at[3].set(100)
    value, (d_hidden, d_weight) = jax.value_and_grad(
        lambda h, w: fused_ce(h, w, labels, reduction=reduction), (0, 1)
    )(hidden, weight)
    assert np.isnan(value) and np.isnan(d_hidden[3]).all() and np.isnan(d_weight).any()


def test_small_losses_keep_their_digits_at_huge_logits():
    # D = 1 and hidden = 1 make the logits exactly the weight: the reference is exact.
    rng = np.random.default_rng(10)
    logits = (1e4 + rng.uniform(-30, 0, size=(1, 5000))).astype(np.float32)
    logits[0, :3] = [1e4, 1e4 - 0.5, 1e4 - 2.0]
    labels = jnp.array([0, 1, 2, 3])
    reference = special.logsumexp(logits[0].astype(np.float64)) - logits[0, :4]
    for reduction_free in (fused_ce(jnp.ones((4, 1)), logits, labels),):
        np.testing.assert_allclose(reduction_free, reference, rtol=1e-6, atol=1e-6)
    mean = fused_ce(jnp.ones((4, 1)), logits, labels, reduction="mean")
    np.testing.assert_allclose(mean, reference.mean(), rtol=1e-6)


def test_jit_vmap_and_scan_over_microbatches():
    hidden, weight, _, labels = problem(11, tokens=24)
    micro_h, micro_y = hidden.reshape(3, 8, -1), labels.reshape(3, 8)
    loss = lambda h, w, y: fused_ce(h, w, y, reduction="sum")  # noqa: E731

    def accumulate(w):
        def step(total, batch):
            return total + loss(batch[0], w, batch[1]), None

        return jax.lax.scan(step, jnp.float32(0), (micro_h, micro_y))[0]

    grad_scan = jax.jit(jax.grad(accumulate))(weight)
    grad_whole = jax.grad(lambda w: loss(hidden, w, labels))(weight)
    chex.assert_trees_all_close(grad_scan, grad_whole, rtol=1e-5, atol=1e-6)
    per_batch = jax.vmap(jax.value_and_grad(loss, 1), (0, None, 0))(micro_h, weight, micro_y)
    chex.assert_trees_all_close(per_batch[1].sum(0), grad_whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"where": np.ones((3,), bool)}, ValueError, "where of shape"),
        ({"where": np.ones((4,), np.int32)}, TypeError, "where must be a boolean"),
        ({"token_block_size": 0}, ValueError, "token_block_size"),
        ({"weight": np.ones((8, 0), np.float32)}, ValueError, "weight of shape"),
    ],
)
def test_bad_options_name_the_argument(options, error, match):
    weight = options.pop("weight", np.ones((8, 10), np.float32))
    with pytest.raises(error, match=match):
        fused_ce(np.ones((4, 8), np.float32), weight, np.zeros((4,), np.int32), **options)


def test_validation_mode_checks_only_the_counted_labels():
    hidden, weight, _, labels = problem(12)
    where = jnp.arange(labels.size) != 4
    checked = jax.jit(jxent.checked(functools.partial(fused_ce, reduction="mean")))
    error, _ = checked(hidden, weight, labels.at[4].set(-3), where=where)
    assert error.get() is None
    error, _ = checked(hidden, weight, labels.at[5].set(-3), where=where)
    assert "labels out of range" in error.get()
