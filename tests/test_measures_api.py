"""Transforms, dtypes and bad input for every measure."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from measure_cases import (
    ALL,
    BINARY,
    INF,
    MEASURES,
    NAN,
    binary_inputs,
    random_inputs,
    reference,
    select,
)

import jxent

# --------------------------------------------------------------------------- transforms


def transform_args(name, rng):
    if name in BINARY:
        p, q = binary_inputs(rng, 0)
        return (p.reshape(2, 4), q.reshape(2, 4))[: len(BINARY[name][1])]
    return select(name, random_inputs(rng, (4, 6)))


@pytest.mark.parametrize("name", list(ALL))
def test_transforms_match_direct_call(name, rng):
    fn, _ = ALL[name]
    args = tuple(jnp.asarray(a) for a in transform_args(name, rng))
    argnums = tuple(range(len(args)))
    grad = jax.grad(lambda *a: fn(*a).sum(), argnums=argnums)

    @jax.jit
    def transformed(*a):
        return {
            "jit": fn(*a),
            "vmap": jax.vmap(fn)(*a),
            "scan": jax.lax.scan(lambda carry, xs: (carry, fn(*xs)), None, a)[1],
            "vmap_grad": jax.vmap(grad)(*a),
        }

    got = transformed(*args)
    direct = fn(*args)
    # The eager gradient of the sum is the per-row gradient: rows are independent.
    direct_grad = grad(*args)
    assert not any(np.isnan(np.asarray(g)).any() for g in direct_grad)
    chex.assert_trees_all_close(
        (got["jit"], got["vmap"], got["scan"]), (direct,) * 3, rtol=1e-6, atol=1e-7
    )
    # Gradients such as p (log p - log q - KL) cancel: a few ulps of their
    # terms, fused differently under jit, are a larger part of the result.
    chex.assert_trees_all_close(got["vmap_grad"], direct_grad, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", list(ALL))
def test_16_bit_inputs_are_computed_in_float32(name, dtype, rng):
    fn, _ = ALL[name]
    args = tuple(jnp.asarray(a, dtype) for a in transform_args(name, rng))
    value = fn(*args)
    chex.assert_type(value, jnp.float32)
    upcast = fn(*(a.astype(jnp.float32) for a in args))
    chex.assert_trees_all_close(value, upcast, rtol=1e-6)
    grads = jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args))))(*args)
    chex.assert_type(grads, [dtype] * len(args))
    # Mixed precision promotes to float32.
    if len(args) == 2:
        chex.assert_type(fn(args[0], args[1].astype(jnp.float32)), jnp.float32)


@pytest.mark.parametrize("name", list(ALL))
def test_float32_and_float64_are_kept(name, rng):
    fn, _ = ALL[name]
    args = transform_args(name, rng)
    chex.assert_type(fn(*args), jnp.float32)
    with jax.enable_x64(True):
        args64 = tuple(jnp.asarray(a, jnp.float64) for a in args)
        value = fn(*args64)
        chex.assert_type(value, jnp.float64)
        grads = jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args))))(*args64)
        chex.assert_type(grads, [jnp.float64] * len(args))
        # float64 really is computed in float64.
        expected = reference(name, *args64)
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", [n for n in ALL if len(ALL[n][1]) == 2])
def test_shapes_that_cannot_broadcast(name):
    fn, (a, b) = ALL[name]
    match = rf"{a} of shape \(2, 3\) and {b} of shape \(2, 4\)"
    with pytest.raises(ValueError, match=match):
        fn(jnp.full((2, 3), 1 / 3), jnp.full((2, 4), 1 / 4))


@pytest.mark.parametrize("name", list(ALL))
def test_integer_arrays_are_rejected_naming_the_argument(name):
    fn, arg_names = ALL[name]
    for position, arg_name in enumerate(arg_names):
        args = [jnp.full((2, 3), 0.5) for _ in arg_names]
        args[position] = jnp.ones((2, 3), jnp.int32)
        with pytest.raises(TypeError, match=rf"^{arg_name} must be a floating-point array"):
            fn(*args)


@pytest.mark.parametrize("base", [0, -2.0, 1, 1.0, INF, NAN])
@pytest.mark.parametrize("name", list(ALL))
def test_bad_base(name, base):
    fn, arg_names = ALL[name]
    args = [jnp.full((3,), 1 / 3)] * len(arg_names)
    with pytest.raises(ValueError, match="base must be positive"):
        fn(*args, base=base)


def test_base_that_is_not_a_number():
    with pytest.raises(TypeError, match="base"):
        jxent.entropy(jnp.full(3, 1 / 3), base="two")
    with pytest.raises(TypeError, match="base"):
        jax.jit(lambda b: jxent.kl_divergence(jnp.ones(2) / 2, jnp.ones(2) / 2, base=b))(2.0)


@pytest.mark.parametrize("name", list(MEASURES))
def test_bad_where_and_axis(name):
    fn, arg_names = MEASURES[name]
    args = [jnp.full((2, 4), 0.25)] * len(arg_names)
    with pytest.raises(ValueError, match=r"where of shape \(3,\) does not broadcast"):
        fn(*args, where=jnp.ones(3, bool))
    with pytest.raises(ValueError, match=r"where of shape \(2, 2, 4\) does not broadcast"):
        fn(*args, where=jnp.ones((2, 2, 4), bool))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        fn(*args, where=jnp.ones(4, jnp.int32))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        fn(*args, where=jnp.ones(4))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        fn(*args, axis=2)
    with pytest.raises(ValueError, match="axis"):
        fn(*args, axis=(1, -1))
    with pytest.raises(TypeError, match="axis"):
        fn(*args, axis=(0.5,))


@pytest.mark.parametrize("name", list(ALL))
def test_nan_inputs_propagate(name, rng):
    fn, arg_names = ALL[name]
    clean = transform_args(name, rng)
    expected = np.asarray(fn(*clean))
    for position in range(len(arg_names)):
        args = [np.array(a) for a in clean]
        args[position][0, 1] = NAN
        got = np.array(fn(*args))
        if name in BINARY:
            assert np.isnan(got[0, 1])
            got[0, 1] = expected[0, 1]
        else:
            assert np.isnan(got[0])
            got[0] = expected[0]
        np.testing.assert_array_equal(got, expected)


def test_negative_probabilities_give_nan():
    bad = jnp.array([-0.5, 1.5])
    good = jnp.array([0.5, 0.5])
    assert jnp.isnan(jxent.entropy(bad))
    assert jnp.isnan(jxent.cross_entropy(good, bad))
    assert jnp.isnan(jxent.kl_divergence(good, bad))
    assert jnp.isnan(jxent.kl_divergence(bad, good))
    assert jnp.isnan(jxent.js_divergence(bad, good))
    assert jnp.isnan(jxent.binary_entropy(-0.5))
    assert jnp.isnan(jxent.binary_cross_entropy(0.5, -0.5))


def test_masked_garbage_does_not_leak():
    where = np.array([True, True, False, True])
    p = np.array([0.5, 0.25, NAN, 0.25], np.float32)
    q = np.array([0.25, 0.5, -1.0, 0.25], np.float32)
    z = np.array([0.0, 1.0, NAN, 2.0], np.float32)
    w = np.array([1.0, 0.0, INF, -1.0], np.float32)
    for fn, args in (
        (jxent.entropy, (p,)),
        (jxent.cross_entropy, (p, q)),
        (jxent.kl_divergence, (p, q)),
        (jxent.js_divergence, (p, q)),
        (jxent.entropy_from_logits, (z,)),
        (jxent.cross_entropy_from_logits, (p, z)),
        (jxent.kl_divergence_from_logits, (z, w)),
    ):
        value, grads = jax.value_and_grad(
            lambda *a, fn=fn: fn(*a, where=jnp.asarray(where)), argnums=tuple(range(len(args)))
        )(*args)
        chex.assert_tree_all_finite((value, grads))
        for g in grads:
            assert g[2] == 0.0
