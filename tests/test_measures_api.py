"""Transforms, dtypes and bad input for every measure, driven by the case table.

Transforms: for every case of measure_cases.CASES that asks, jit, vmap, lax.scan,
jacfwd and the hessian agree with the eager value, gradient and hessian, on the
case's edge rows and random rows. Dtypes and bad input: for every public measure
(measure_cases.MEASURES, one case per function).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference64 as ref
from measure_cases import (
    BINARY_NAMES,
    CASES,
    CLASS_AXIS_NAMES,
    INF,
    MEASURES,
    NAN,
    SHANNON_NAMES,
    draw,
    ids,
    params,
)

import jxent

TRANSFORMS = [case for case in CASES if case.transforms]
EAGER_GRADIENTS = SHANNON_NAMES + BINARY_NAMES

# --------------------------------------------------------------------------- transforms


@functools.cache
def transformed(name, keywords, count):
    """jit of the measure ``name``, of the gradient of the batch sum, and of vmap, scan,
    vmap of grad, jacfwd and the hessian of the batch sum; compiled once per measure
    (the option is traced)."""

    def run(arrays, option):
        fn = lambda *a: getattr(jxent, name)(*a, *option, **dict(keywords))  # noqa: E731
        argnums = tuple(range(count))
        summed = lambda *a: fn(*a).sum()  # noqa: E731
        return {
            "jit": fn(*arrays),
            "grad": jax.grad(summed, argnums)(*arrays),
            "vmap": jax.vmap(fn)(*arrays),
            "scan": jax.lax.scan(lambda carry, xs: (carry, fn(*xs)), None, arrays)[1],
            "vmap_grad": jax.vmap(jax.grad(summed, argnums))(*arrays),
            "jacfwd": jax.jacfwd(summed, argnums)(*arrays),
            "hessian": jax.hessian(summed, argnums)(*arrays),
        }

    return jax.jit(run)


def row_blocks(hessian, rows, size):
    """The hessian of a sum over ``rows`` as [rows, a, b] blocks, and the rest of it;
    ``size`` is that of the first argument."""
    flat = hessian.reshape(rows, size // rows, rows, -1)
    diagonal = np.arange(rows)
    off = flat.copy()
    off[diagonal, :, diagonal, :] = 0.0
    return flat[diagonal, :, diagonal, :], off


@pytest.mark.parametrize("case", params(TRANSFORMS, "transforms"))
def test_transforms_match_eager(case, rng):
    canonical = draw(case, rng)
    args = tuple(jnp.asarray(a) for a in canonical)
    option = () if case.option is None else (case.option,)
    got = transformed(case.name, case.keywords, len(args))(args, option)
    # Eagerly, op by op: the value, and the gradient of the sum (the per-row gradients:
    # rows are independent). For the measures beyond Shannon's and the binary ones, the
    # gradient under jit (an eager gradient of the Rényi measures would compile
    # hundreds of operations; jit against eager is the Shannon ones').
    direct = case(*args)
    if case.name in EAGER_GRADIENTS:
        direct_grad = jax.grad(lambda *a: case(*a).sum(), argnums=tuple(range(len(args))))(*args)
    else:
        direct_grad = got["grad"]
    # Values and gradients finite or infinite, never NaN: the edge rows reach zeros,
    # -inf and +inf values. (Second derivatives need not exist at the edges.)
    first_order = [got[k] for k in ("jit", "vmap", "scan", "vmap_grad", "jacfwd")]
    for tree in (direct, direct_grad, first_order):
        chex.assert_tree_all_finite(jax.tree.map(lambda x: jnp.where(jnp.isinf(x), 0, x), tree))
    # A few ulps apart where the terms cancel (each is within the case's slack of
    # float64), at most 1e-6 relative and 1e-7 absolute otherwise.
    atol = np.maximum(1e-7, case.tolerance(canonical)[1])
    for value in (got["jit"], got["vmap"], got["scan"]):
        ref.assert_matches(value, direct, 1e-6, atol)
    # Gradients such as p (log p - log q - KL) cancel: a few ulps of their terms,
    # fused differently under jit, are a larger part of the result.
    atol = np.maximum(1e-6, atol).reshape(atol.shape + (1,) * (args[0].ndim - atol.ndim))
    for grads in (got["vmap_grad"], got["jacfwd"]):
        for g, want in zip(grads, direct_grad):
            ref.assert_matches(g, want, 1e-5, np.broadcast_to(atol, want.shape))
    # The hessian of the sum: block-diagonal (rows are independent) where it has no NaN
    # (a second derivative that does not exist at an edge; its NaN may spread across
    # columns), and symmetric, to float32 rounding of terms such as 1/p, in the rows
    # where it and the value are finite.
    rows = len(direct) if direct.ndim == 1 else direct.size
    scale = np.ones(rows)
    for a, kind in zip(canonical, case.kinds):
        if kind in "pj":
            x = a.reshape(rows, -1).astype(np.float64)
            scale = np.maximum(scale, np.max(1 / np.where(x > 0, x, 1.0), axis=-1))
    for i, j in np.ndindex(len(args), len(args)):
        blocks, off = row_blocks(np.asarray(got["hessian"][i][j]), rows, args[i].size)
        transposed, _ = row_blocks(np.asarray(got["hessian"][j][i]), rows, args[j].size)
        transposed = np.swapaxes(transposed, 1, 2)
        ok = ~np.isnan(blocks).reshape(rows, -1).any(-1)
        np.testing.assert_array_equal(off[ok][:, :, ok], 0.0)
        finite = (np.isfinite(blocks) & np.isfinite(transposed)).reshape(rows, -1).all(-1)
        finite &= np.isfinite(np.asarray(direct)).reshape(rows)
        ref.assert_matches(
            blocks[finite], transposed[finite], 1e-5, 1e-6 * scale[finite, None, None]
        )


# --------------------------------------------------------------------------- dtypes


def small_args(case, rng, dtype=np.float32):
    """The case's draw (edges and random rows), in ``dtype``: the shapes of the
    transforms' eager calls, whose compiled operations these reuse."""
    return tuple(jnp.asarray(a, dtype) for a in draw(case, rng))


# The Shannon and binary measures; Rényi's, the generalised JS divergence's and the
# joint tables' are in test_renyi.py, test_jensen.py and test_joint.py.
DTYPES = [case for case in MEASURES if case.name in SHANNON_NAMES + BINARY_NAMES]


@pytest.mark.parametrize("case", DTYPES, ids=ids(DTYPES))
def test_16_bit_inputs_are_computed_in_float32(case, rng):
    # Eagerly: the small operations compiled for one measure serve the others.
    grad = jax.grad(lambda *a: case(*a).sum(), argnums=tuple(range(len(case.kinds))))
    for dtype in (jnp.bfloat16, jnp.float16):
        args = small_args(case, rng, dtype)
        value = case(*args)
        chex.assert_type(value, jnp.float32)
        upcast = case(*(a.astype(jnp.float32) for a in args))
        chex.assert_trees_all_close(value, upcast, rtol=1e-6)
        chex.assert_type(grad(*args), [dtype] * len(args))
        # Mixed precision promotes to float32.
        if len(args) == 2:
            chex.assert_type(case(args[0], args[1].astype(jnp.float32)), jnp.float32)


@pytest.mark.parametrize("case", DTYPES, ids=ids(DTYPES))
def test_float32_and_float64_are_kept(case, rng):
    # The float64 values against float64 are test_measures.py's.
    args = small_args(case, rng)
    grad = jax.grad(lambda *a: case(*a).sum(), argnums=tuple(range(len(args))))
    chex.assert_type([case(*args), *grad(*args)], [jnp.float32] * (1 + len(args)))
    with jax.enable_x64(True):
        args64 = tuple(jnp.asarray(a, jnp.float64) for a in args)
        chex.assert_type([case(*args64), *grad(*args64)], [jnp.float64] * (1 + len(args)))


# --------------------------------------------------------------------------- bad input


TWO_ARRAYS = [case for case in MEASURES if len(case.kinds) == 2]
CLASS_AXIS = [case for case in MEASURES if case.name in CLASS_AXIS_NAMES]


def filled(case, shape, value=0.25):
    """The case's arguments, each ``shape`` (a joint table gets one more axis)."""
    return [jnp.full(shape + ((3,) if kind == "j" else ()), value) for kind in case.kinds]


@pytest.mark.parametrize("case", TWO_ARRAYS, ids=ids(TWO_ARRAYS))
def test_shapes_that_cannot_broadcast(case):
    a, b = case.argument_names
    match = rf"{a} of shape \(2, 3\) and {b} of shape \(2, 4\)"
    with pytest.raises(ValueError, match=match):
        case(jnp.full((2, 3), 1 / 3), jnp.full((2, 4), 1 / 4))


@pytest.mark.parametrize("case", MEASURES, ids=ids(MEASURES))
def test_integer_arrays_are_rejected_naming_the_argument(case):
    for position, arg_name in enumerate(case.argument_names):
        args = filled(case, (2, 3), 0.5)
        args[position] = args[position].astype(jnp.int32)
        with pytest.raises(TypeError, match=rf"^{arg_name} must be a floating-point array"):
            case(*args)


@pytest.mark.parametrize("case", MEASURES, ids=ids(MEASURES))
def test_bad_base(case):
    args = filled(case, (3,), 1 / 3)
    for base in [0, -2.0, 1, 1.0, INF, NAN]:
        with pytest.raises(ValueError, match="base must be positive"):
            jax.eval_shape(lambda base=base: case(*args, base=base))  # raised while tracing


def test_base_that_is_not_a_number():
    with pytest.raises(TypeError, match="base"):
        jxent.entropy(jnp.full(3, 1 / 3), base="two")
    with pytest.raises(TypeError, match="base"):
        jax.jit(lambda b: jxent.kl_divergence(jnp.ones(2) / 2, jnp.ones(2) / 2, base=b))(2.0)


@pytest.mark.parametrize("case", CLASS_AXIS, ids=ids(CLASS_AXIS))
def test_bad_where_and_axis(case):
    args = filled(case, (2, 4))
    with pytest.raises(ValueError, match=r"where of shape \(3,\) does not broadcast"):
        case(*args, where=jnp.ones(3, bool))
    with pytest.raises(ValueError, match=r"where of shape \(2, 2, 4\) does not broadcast"):
        case(*args, where=jnp.ones((2, 2, 4), bool))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        case(*args, where=jnp.ones(4, jnp.int32))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        case(*args, where=jnp.ones(4))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        case(*args, axis=2)
    with pytest.raises(ValueError, match="axis"):
        case(*args, axis=(1, -1))
    with pytest.raises(TypeError, match="axis"):
        case(*args, axis=(0.5,))


@pytest.mark.parametrize("case", MEASURES, ids=ids(MEASURES))
def test_nan_inputs_propagate(case, rng):
    clean = small_args(case, rng)
    expected = np.asarray(case.jit(*clean))
    for position in range(len(clean)):
        args = [np.array(a) for a in clean]
        args[position][(0, 1) + (0,) * (args[position].ndim - 2)] = NAN
        got = np.array(case.jit(*args))
        first = (0, 1) if case.kinds in ("b", "bb") else (0,)
        assert np.isnan(got[first])
        got[first] = expected[first]
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
        value, grads = jax.jit(
            jax.value_and_grad(
                lambda *a, fn=fn: fn(*a, where=jnp.asarray(where)), argnums=tuple(range(len(args)))
            )
        )(*args)
        chex.assert_tree_all_finite((value, grads))
        for g in grads:
            assert g[2] == 0.0
