"""SciPy's elementwise names, jxent.rel_entr and jxent.xlog1py: SciPy's values (jxent's
NaN for negative rel_entr arguments, where SciPy gives +inf), xlogy's conventions for
arguments, and derivative rules in which a zero tangent meets an infinite slope as 0."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from reference64 import assert_close, f64
from scipy import special

import jxent

INF, NAN = np.inf, np.nan
FUNCTIONS = {"rel_entr": jxent.rel_entr, "xlog1py": jxent.xlog1py}
SCIPY = {"rel_entr": special.rel_entr, "xlog1py": special.xlog1py}
JITTED = {name: jax.jit(fn) for name, fn in FUNCTIONS.items()}


def grid(rng):
    """Every pair of special values and random values of every scale, float32."""
    special_values = [0.0, 1e-30, 1e-7, 0.5, 1.0, 1.0 + 2**-23, 2.0, 1e30, INF]
    x = np.concatenate([special_values, 10 ** rng.uniform(-20, 20, 40), rng.uniform(0, 2, 40)])
    x = x.astype(np.float32)
    return x[:, None], x[None, :]


# --------------------------------------------------------------------------- values


def test_rel_entr_matches_scipy(rng):
    x, y = grid(rng)
    got = JITTED["rel_entr"](x, y)
    chex.assert_type(got, jnp.float32)
    chex.assert_shape(got, (x.size, y.size))
    assert_close(got, special.rel_entr(f64(x), f64(y)), rtol=2e-6)


def test_rel_entr_is_accurate_when_x_is_close_to_y(rng):
    y = rng.uniform(0.1, 10, 64).astype(np.float32)
    x = np.concatenate([np.nextafter(y, np.float32(INF)), y * np.float32(1 + 1e-4)])
    y = np.tile(y, 2)
    # float64 x log(x/y) of the float32 inputs: x/y is exact to 2^-53 there.
    assert_close(JITTED["rel_entr"](x, y), special.rel_entr(f64(x), f64(y)), rtol=2e-6)


def test_xlog1py_matches_scipy(rng):
    x, _ = grid(rng)
    y = np.concatenate([[-1.0, -0.5, -1e-7, -1e-30, 0.0], np.ravel(grid(rng)[1])])
    y = y.astype(np.float32)[None, :]
    x = np.concatenate([-x[::3], x]).astype(np.float32)
    got = JITTED["xlog1py"](x, y)
    chex.assert_type(got, jnp.float32)
    assert_close(got, special.xlog1py(f64(x), f64(y)), rtol=2e-6)


def test_special_values():
    # rel_entr: 0 at x = 0 <= y, +inf at x > 0 = y, -inf at y = +inf; NaN for NaN.
    x = jnp.array([0.0, 0.0, 1.0, 1.0, 0.0, INF, NAN, 0.0])
    y = jnp.array([0.0, 2.0, 0.0, INF, INF, 1.0, 1.0, NAN])
    expected = [0.0, 0.0, INF, -INF, 0.0, INF, NAN, NAN]
    np.testing.assert_array_equal(JITTED["rel_entr"](x, y), expected)
    np.testing.assert_array_equal(special.rel_entr(f64(x), f64(y)), expected)
    # Negative arguments: NaN (jxent's rule for negative probabilities), where SciPy says inf.
    x, y = jnp.array([-1.0, 1.0, 0.0, -1.0]), jnp.array([1.0, -1.0, -1.0, 0.0])
    assert np.isnan(np.asarray(JITTED["rel_entr"](x, y))).all()
    np.testing.assert_array_equal(special.rel_entr(f64(x), f64(y)), [INF] * 4)
    # xlog1py: 0 where x = 0 whatever y (also y < -1), NaN for NaN y, -inf at y = -1.
    x = jnp.array([0.0, 0.0, 0.0, 1.0, 1.0, -1.0, 2.0, NAN])
    y = jnp.array([-1.0, -2.0, NAN, -1.0, -2.0, -1.0, INF, 0.0])
    expected = [0.0, 0.0, NAN, -INF, NAN, INF, INF, NAN]
    np.testing.assert_array_equal(JITTED["xlog1py"](x, y), expected)
    np.testing.assert_array_equal(special.xlog1py(f64(x), f64(y)), expected)


def test_xlog1py_keeps_the_digits_of_small_y():
    y = np.float32([1e-30, 1e-10, 1e-5])
    assert_close(JITTED["xlog1py"](np.float32(3.0), y), 3 * np.log1p(f64(y)), rtol=2e-7)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_arguments_are_converted_and_broadcast(name):
    fn = JITTED[name]
    # Integers and bools are promoted like xlogy's, 16-bit floats computed in float32.
    chex.assert_type(fn(jnp.arange(3), 1), jnp.float32)
    chex.assert_type(fn(True, jnp.ones(2, jnp.bfloat16)), jnp.float32)
    chex.assert_type(fn(jnp.ones(2, jnp.float16), 0.5), jnp.float32)
    half = fn(jnp.array([0.5, 2.0], jnp.bfloat16), jnp.array([0.25, 3.0], jnp.bfloat16))
    full = fn(jnp.array([0.5, 2.0], jnp.float32), jnp.array([0.25, 3.0], jnp.float32))
    chex.assert_trees_all_equal(half, full)
    chex.assert_shape(fn(jnp.ones((2, 1)), jnp.ones(3)), (2, 3))
    chex.assert_trees_all_equal(fn(1.0, 1.0), JITTED[name](jnp.ones(()), jnp.ones(())))
    with pytest.raises(ValueError, match=r"x of shape \(2,\) and y of shape \(3,\)"):
        jax.eval_shape(FUNCTIONS[name], jnp.ones(2), jnp.ones(3))
    with pytest.raises(TypeError, match="x must be real"):
        jax.eval_shape(FUNCTIONS[name], jnp.ones(2, jnp.complex64), jnp.ones(2))
    with pytest.raises(TypeError, match="y must be real"):
        jax.eval_shape(FUNCTIONS[name], jnp.ones(2), jnp.ones(2, jnp.complex64))


def test_float64_under_x64(x64):
    x, y = jnp.array([0.5, 3.0]), jnp.array([0.25, 1e-3])
    for name, fn in JITTED.items():
        got = fn(x, y)
        chex.assert_type(got, jnp.float64)
        np.testing.assert_allclose(got, SCIPY[name](f64(x), f64(y)), rtol=1e-14)


# --------------------------------------------------------------------------- derivatives


@functools.cache
def _derivatives(name):
    fn = FUNCTIONS[name]

    @jax.jit
    def run(x, y):
        def total(a, b):
            return jnp.sum(fn(a, b))

        rev = jax.grad(total, (0, 1))(x, y)
        fwd = jax.jacfwd(fn, (0, 1))(x, y)
        _, dx = jax.jvp(fn, (x, y), (jnp.ones_like(x), jnp.zeros_like(y)))
        _, dy = jax.jvp(fn, (x, y), (jnp.zeros_like(x), jnp.ones_like(y)))
        return {
            "rev": rev,
            "fwd": (jnp.diagonal(fwd[0]), jnp.diagonal(fwd[1])),
            "jvp": (dx, dy),
            "off_diagonal": [jnp.where(jnp.eye(len(x), dtype=bool), 0.0, m) for m in fwd],
            "hessian": jax.hessian(total, (0, 1))(x, y),
            "vmap_grad": jax.vmap(jax.grad(fn, (0, 1)))(x, y),
        }

    return run


def _assert_derivatives(name, x, y, dx, dy, rtol=1e-6):
    got = _derivatives(name)(jnp.asarray(x), jnp.asarray(y))
    for mode in ("rev", "fwd", "jvp", "vmap_grad"):
        assert_close(got[mode][0], dx, rtol)
        assert_close(got[mode][1], dy, rtol)
    # Zero tangents meet infinite slopes as 0: the Jacobians' off-diagonals are 0.
    for matrix in got["off_diagonal"]:
        np.testing.assert_array_equal(matrix, np.zeros_like(matrix))
    return got


def test_rel_entr_derivatives():
    x = np.float32([0.0, 0.0, 0.5, 2.0, 1.0, 1.0])
    y = np.float32([0.0, 2.0, 0.25, 2.0, 0.0, 3.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where((x == 0) & (y == 0), INF, np.log(f64(x) / f64(y)) + 1)
        dy = np.where(x == 0, 0.0, -f64(x) / f64(y))
    got = _assert_derivatives("rel_entr", x, y, dx, dy)
    assert not np.isnan(np.asarray(got["hessian"][0][0])).any()
    assert not np.isnan(np.asarray(got["hessian"][1][1])).any()


def test_xlog1py_derivatives():
    x = np.float32([0.0, 0.0, 0.0, 2.0, -1.0, 3.0])
    y = np.float32([-1.0, 0.0, 5.0, -0.5, 1e-7, -1.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.log1p(f64(y))
        dy = np.where(x == 0, 0.0, f64(x) / (1 + f64(y)))
    got = _assert_derivatives("xlog1py", x, y, dx, dy)
    # d²/dy² = -x/(1+y)², 0 where x = 0 (also at y = -1); d²/dxdy = 1/(1+y).
    with np.errstate(divide="ignore", invalid="ignore"):
        dyy = np.where(x == 0, 0.0, -f64(x) / (1 + f64(y)) ** 2)
    assert_close(np.diagonal(got["hessian"][1][1]), dyy, rtol=1e-6)
    with np.errstate(divide="ignore"):
        assert_close(np.diagonal(got["hessian"][0][1]), 1 / (1 + f64(y)), rtol=1e-6)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_check_grads_float64(name, x64, rng):
    x = jnp.asarray(rng.uniform(0.2, 3.0, 6))
    y = jnp.asarray(rng.uniform(0.2, 3.0, 6))
    check_grads(JITTED[name], (x, y), order=2, modes=("fwd", "rev"))
