"""linear_cross_entropy against the dense path, its memory, and its argument checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fused_cases import dense_ce, dense_reference, fused_ce, problem
from jax.test_util import check_grads

import jxent

OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"ignore_index": -100},
    {"softcap": 2.5},
    {"label_smoothing": 0.2, "z_loss": 1e-2, "softcap": 4.0, "ignore_index": -100},
]


CASES = [(options, True, 32) for options in OPTIONS] + [
    ({}, False, block_size) for block_size in (7, 100, 512)
]


@pytest.mark.parametrize(("options", "use_bias", "block_size"), CASES, ids=str)
def test_values_and_gradients_match_the_dense_path(options, use_bias, block_size):
    hidden, weight, bias, labels = problem(0, scale=2.0)
    if "ignore_index" in options:
        labels = labels.at[::5].set(options["ignore_index"])
    bias = bias if use_bias else None

    def fused(h, w, b):
        return fused_ce(h, w, labels, bias=b, block_size=block_size, **options)

    def dense(h, w, b):
        return dense_reference(h, w, b, labels, **options)

    chex.assert_trees_all_close(fused(hidden, weight, bias), dense(hidden, weight, bias), rtol=1e-5)
    argnums = (0, 1, 2) if use_bias else (0, 1)
    fused_grads = jax.grad(lambda *a: fused(*a).mean(), argnums)(hidden, weight, bias)
    dense_grads = jax.grad(lambda *a: dense(*a).mean(), argnums)(hidden, weight, bias)
    chex.assert_trees_all_close(fused_grads, dense_grads, rtol=1e-4, atol=1e-6)


def test_softcap_gradient_has_the_tanh_factor():
    hidden, weight, _, labels = problem(1, scale=5.0)

    def without_factor(h):
        # What forgetting d tanh would give: the gradient of the dense loss
        # with respect to the capped logits, pushed through the matmul only.
        logits = 1.5 * jnp.tanh(h @ weight / 1.5)
        g = jax.grad(lambda z: dense_ce(z, labels).sum())(logits)
        return g @ weight.T

    fused_grad = jax.grad(lambda h: fused_ce(h, weight, labels, softcap=1.5).sum())(hidden)
    dense_grad = jax.grad(lambda h: dense_reference(h, weight, None, labels, 1.5).sum())(hidden)
    chex.assert_trees_all_close(fused_grad, dense_grad, rtol=1e-4, atol=1e-6)
    assert not np.allclose(fused_grad, without_factor(hidden), rtol=1e-2)


def test_short_last_block_is_not_padded_into_the_sum():
    # 100 = 3 × 32 + 4: a padded zero logit would add exp(0) terms to lse.
    hidden, weight, _, labels = problem(2, vocab=100)
    weight = weight - 50.0  # every true logit is very negative; a stray 0 would dominate
    chex.assert_trees_all_close(
        fused_ce(hidden, weight, labels, block_size=32),
        dense_reference(hidden, weight, None, labels),
        rtol=1e-5,
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_16_bit_inputs_accumulate_in_float32(dtype):
    hidden, weight, bias, labels = problem(3, dtype=dtype)
    loss = fused_ce(hidden, weight, labels, bias=bias, block_size=32)
    chex.assert_type(loss, jnp.float32)
    upcast = [x.astype(jnp.float32) for x in (hidden, weight, bias)]
    reference = dense_reference(*upcast, labels)
    # Products of 16-bit values are exact in float32: the loss is float32-accurate.
    chex.assert_trees_all_close(loss, reference, rtol=1e-5, atol=1e-5)
    grads = jax.grad(
        lambda h, w, b: fused_ce(h, w, labels, bias=b, block_size=32).mean(), (0, 1, 2)
    )(hidden, weight, bias)
    chex.assert_type(grads, dtype)
    reference_grads = jax.grad(lambda *a: dense_reference(*a, labels).mean(), (0, 1, 2))(*upcast)
    for got, want in zip(grads, reference_grads, strict=True):
        # The gradients are float32 rounded once to the 16-bit dtype.
        eps = float(jnp.finfo(dtype).eps)
        np.testing.assert_allclose(
            np.asarray(got, np.float32), want, rtol=eps, atol=eps * np.abs(want).max()
        )


def test_batch_and_sequence_axes_and_vmap_and_jit():
    keys = jax.random.split(jax.random.key(4), 3)
    hidden = jax.random.normal(keys[0], (3, 5, 16))
    weight = jax.random.normal(keys[1], (16, 70))
    labels = jax.random.randint(keys[2], (3, 5), 0, 70)
    expected = dense_reference(hidden, weight, None, labels)
    loss = fused_ce(hidden, weight, labels, block_size=16)
    chex.assert_shape(loss, (3, 5))
    chex.assert_trees_all_close(loss, expected, rtol=1e-5)
    by_vmap = jax.vmap(lambda h, y: fused_ce(h, weight, y, block_size=16))(hidden, labels)
    chex.assert_trees_all_close(by_vmap, expected, rtol=1e-5)
    jitted = jax.jit(lambda h, w: fused_ce(h, w, labels, block_size=16))(hidden, weight)
    chex.assert_trees_all_close(jitted, expected, rtol=1e-5)
    vmap_grad = jax.vmap(jax.grad(lambda h, y: fused_ce(h, weight, y, block_size=16).sum()))(
        hidden, labels
    )
    dense_grad = jax.grad(lambda h: dense_reference(h, weight, None, labels).sum())(hidden)
    chex.assert_trees_all_close(vmap_grad, dense_grad, rtol=1e-4, atol=1e-6)


def test_out_of_range_labels_give_nan_for_that_token_only():
    hidden, weight, _, labels = problem(5)
    labels = labels.at[2].set(-1).at[4].set(100)
    loss = fused_ce(hidden, weight, labels, block_size=32)
    assert np.isnan(loss[2]) and np.isnan(loss[4])
    keep = np.ones(labels.shape, bool)
    keep[[2, 4]] = False
    chex.assert_tree_all_finite(loss[keep])
    d_hidden = jax.grad(lambda h: fused_ce(h, weight, labels, block_size=32).sum())(hidden)
    assert np.isnan(d_hidden[2]).all() and np.isfinite(d_hidden[keep]).all()


def test_gradients_against_finite_differences_in_float64(x64):
    hidden, weight, bias, labels = problem(6, tokens=6, dim=4, vocab=11, dtype=jnp.float64)

    def loss(h, w, b):
        return fused_ce(
            h, w, labels, bias=b, label_smoothing=0.1, z_loss=0.01, softcap=3.0, block_size=4
        ).sum()

    check_grads(loss, (hidden, weight, bias), order=1, modes=("rev",))
    chex.assert_type(fused_ce(hidden, weight, labels), jnp.float64)


def _temp_bytes(fn, *specs):
    return jax.jit(fn).lower(*specs).compile().memory_analysis().temp_size_in_bytes


def test_temporary_memory_does_not_grow_with_the_vocabulary():
    tokens, dim, block = 1024, 64, 256

    def value_and_grad(vocab, fused):
        specs = (
            jax.ShapeDtypeStruct((tokens, dim), jnp.float32),
            jax.ShapeDtypeStruct((dim, vocab), jnp.float32),
        )
        labels = jnp.zeros((tokens,), jnp.int32)
        if fused:
            loss = lambda h, w: fused_ce(h, w, labels, block_size=block).mean()  # noqa: E731
        else:
            loss = lambda h, w: dense_ce(h @ w, labels).mean()  # noqa: E731
        return _temp_bytes(jax.value_and_grad(loss, (0, 1)), *specs)

    small, large = value_and_grad(4096, True), value_and_grad(16384, True)
    assert large <= 1.05 * small
    logits_bytes = tokens * 16384 * 4
    assert large < logits_bytes / 4
    assert value_and_grad(16384, False) >= logits_bytes  # the naive path does hold them


def test_no_tokens_by_vocab_array_in_the_program():
    hidden, weight, _, labels = problem(7, tokens=40, vocab=300)
    jaxpr = jax.make_jaxpr(
        jax.grad(lambda h, w: fused_ce(h, w, labels, block_size=64).sum(), (0, 1))
    )(hidden, weight)

    def shapes(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                yield getattr(var.aval, "shape", ())
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", None)
                if inner is not None:
                    yield from shapes(getattr(inner, "jaxpr", inner))

    assert (40, 300) not in set(shapes(jaxpr.jaxpr))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden": np.ones((4, 5), np.float32)}, ValueError, "hidden of shape"),
        ({"labels": np.zeros((3,), np.int32)}, ValueError, "labels of shape"),
        ({"labels": np.zeros((4,), np.float32)}, TypeError, "labels must be integers"),
        ({"weight": np.ones((8,), np.float32)}, ValueError, "weight must be"),
        ({"bias": np.ones((7,), np.float32)}, ValueError, "bias of shape"),
        ({"block_size": 0}, ValueError, "block_size"),
        ({"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    args = {
        "hidden": np.ones((4, 8), np.float32),
        "weight": np.ones((8, 10), np.float32),
        "labels": np.zeros((4,), np.int32),
    }
    options = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fused_ce(args["hidden"], args["weight"], args["labels"], **options)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_hyperparameters_may_be_traced(reduction):
    hidden, weight, bias, labels = problem(8, scale=2.0)

    def loss(h, w, smoothing, z_loss, softcap):
        out = fused_ce(
            h,
            w,
            labels,
            bias=bias,
            label_smoothing=smoothing,
            z_loss=z_loss,
            softcap=softcap,
            reduction=reduction,
        )
        return out.sum()

    values = (0.1, 1e-3, 3.0)
    traced = jax.jit(jax.value_and_grad(loss, (0, 1)))(hidden, weight, *values)
    concrete = jax.value_and_grad(lambda h, w: loss(h, w, *values), (0, 1))(hidden, weight)
    chex.assert_trees_all_close(traced, concrete, rtol=1e-5, atol=1e-6)
    reference = dense_reference(
        hidden,
        weight,
        bias,
        labels,
        3.0,
        label_smoothing=0.1,
        z_loss=1e-3,
        reduction="sum" if reduction == "none" else reduction,
    )
    chex.assert_trees_all_close(traced[0], reference, rtol=2e-5)
    # A traced value outside its domain is NaN, and an error in the validation mode.
    for bad in [(1.5, 1e-3, 3.0), (0.1, -1.0, 3.0), (0.1, 1e-3, 0.0)]:
        assert np.isnan(jax.jit(loss)(hidden, weight, *bad))
        error, _ = jax.jit(jxent.checked(loss))(hidden, weight, *bad)
        assert error.get() is not None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"ignore_index": 2.5}, TypeError, "ignore_index"),
        ({"z_loss": -1.0}, ValueError, "z_loss"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
    ],
)
def test_concrete_options_out_of_their_domain_raise(options, error, match):
    hidden, weight, _, labels = problem(9)
    with pytest.raises(error, match=match):
        fused_ce(hidden, weight, labels, **options)
