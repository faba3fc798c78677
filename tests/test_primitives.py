"""Tests for the zero-safe building blocks: xlogx, xlogy and zero_safe_mul."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special

import jxent
from jxent._zero_safe import zero_safe_mul

INF = np.inf
NAN = np.nan


def np_zero_safe_mul(a, b):
    """Float64 reference: a * b, with 0 * ±inf = 0 (and NaN staying NaN)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    with np.errstate(invalid="ignore"):
        product = a * b
    zero_times_inf = ((a == 0) & np.isinf(b)) | ((b == 0) & np.isinf(a))
    return np.where(zero_times_inf, 0.0, product)


def off_diagonal(matrix):
    matrix = np.asarray(matrix)
    return matrix[~np.eye(len(matrix), dtype=bool)]


def assert_close(actual, desired, rtol=2e-6, atol=0.0):
    """assert_allclose in float64, with infinities and NaN compared exactly."""
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), np.asarray(desired, np.float64), rtol=rtol, atol=atol
    )


# --------------------------------------------------------------------------- xlogx


def test_xlogx_matches_float64_reference(rng):
    x = np.concatenate(
        [
            [0.0, 1.0, 1e-30, 1e-5, 0.5, 2.0, 1e30, INF],
            rng.random(200),
            10 ** rng.uniform(-30, 30, 200),
        ]
    ).astype(np.float32)
    got = jxent.xlogx(x)
    chex.assert_type(got, jnp.float32)
    chex.assert_shape(got, x.shape)
    x64 = x.astype(np.float64)
    assert_close(got, special.xlogy(x64, x64), rtol=2e-6)


def test_xlogx_zero_is_exactly_zero_and_bad_values_are_nan():
    got = np.asarray(jxent.xlogx(jnp.array([0.0, -0.0, -1.0, NAN, -INF])))
    np.testing.assert_array_equal(got[:2], [0.0, 0.0])
    assert np.isnan(got[2:]).all()


def test_xlogx_derivatives_at_zero_and_interior():
    x = jnp.array([0.0, 0.5, 1.0, 2.0])
    slope = np.array([-INF, np.log(0.5) + 1, 1.0, np.log(2.0) + 1])
    for jac in (jax.jacfwd, jax.jacrev):
        jacobian = np.asarray(jac(jxent.xlogx)(x))
        # Off-diagonal entries meet the -inf slope with a zero tangent: exactly 0.
        np.testing.assert_array_equal(off_diagonal(jacobian), np.zeros(12))
        assert_close(np.diag(jacobian), slope, rtol=1e-6)
    assert_close(jax.grad(lambda v: jxent.xlogx(v).sum())(x), slope, rtol=1e-6)
    assert jax.grad(jxent.xlogx)(0.0) == -INF
    hessian = jax.hessian(lambda v: jxent.xlogx(v).sum())(x)
    assert_close(hessian, np.diag([INF, 2.0, 1.0, 0.5]), rtol=1e-6)


def test_xlogx_check_grads_float64(x64, rng):
    x = jnp.asarray(rng.uniform(0.2, 3.0, (3, 4)), jnp.float64)
    check_grads(jxent.xlogx, (x,), order=2, modes=("fwd", "rev"))


# --------------------------------------------------------------------------- xlogy


def test_xlogy_matches_float64_reference(rng):
    x = np.concatenate([[0.0, 0.0, 0.0, 1.0, 2.0, 0.5], rng.random(300)]).astype(np.float32)
    y = np.concatenate([[0.0, INF, 1.0, 0.0, INF, 1e-30], 10 ** rng.uniform(-20, 20, 300)])
    y = y.astype(np.float32)
    got = jxent.xlogy(x, y)
    chex.assert_type(got, jnp.float32)
    assert_close(got, special.xlogy(x.astype(np.float64), y.astype(np.float64)), rtol=2e-6)
    np.testing.assert_array_equal(np.asarray(got[:4]), [0.0, 0.0, 0.0, -INF])


def test_xlogy_broadcasts():
    x = jnp.array([[0.0], [1.0], [2.0]])
    y = jnp.array([0.5, 1.0, 4.0, 0.0])
    got = jxent.xlogy(x, y)
    chex.assert_shape(got, (3, 4))
    expected = special.xlogy(np.asarray(x, np.float64), np.asarray(y, np.float64))
    assert_close(got, expected, rtol=1e-6)


def test_xlogy_nan_inputs_propagate():
    assert jnp.isnan(jxent.xlogy(0.0, NAN))
    assert jnp.isnan(jxent.xlogy(NAN, 1.0))
    assert jnp.isnan(jxent.xlogy(NAN, 0.0))
    assert jnp.isnan(jxent.xlogy(1.0, -1.0))


def test_xlogy_jacfwd_at_origin():
    dx, dy = jax.jacfwd(jxent.xlogy, argnums=(0, 1))(0.0, 0.0)
    assert dx == -INF
    assert dy == 0.0
    dx, dy = jax.jacrev(jxent.xlogy, argnums=(0, 1))(0.0, 0.0)
    assert dx == -INF
    assert dy == 0.0


def test_xlogy_gradients_match_closed_form():
    x = jnp.array([0.0, 0.0, 0.0, 1.0, 0.5, 2.0])
    y = jnp.array([0.0, 1.0, INF, 0.0, 0.25, 3.0])
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_x = np.log(y64)
        d_y = np.where(x64 == 0, 0.0, x64 / y64)
    for argnum, expected in ((0, d_x), (1, d_y)):
        grad = jax.grad(lambda a, b: jxent.xlogy(a, b).sum(), argnums=argnum)(x, y)
        assert_close(grad, expected, rtol=1e-6)
        for jac in (jax.jacfwd, jax.jacrev):
            jacobian = np.asarray(jac(jxent.xlogy, argnums=argnum)(x, y))
            np.testing.assert_array_equal(off_diagonal(jacobian), np.zeros(30))
            assert_close(np.diag(jacobian), expected, rtol=1e-6)


def test_xlogy_hessian_matches_closed_form():
    hessian = jax.hessian(jxent.xlogy, argnums=(0, 1))
    # [[0, 1/y], [1/y, -x/y**2]], with the x = 0 entries exactly 0.
    assert_close(np.array(hessian(0.0, 0.0)), [[0.0, INF], [INF, 0.0]])
    assert_close(np.array(hessian(0.0, 2.0)), [[0.0, 0.5], [0.5, 0.0]], rtol=1e-6)
    assert_close(np.array(hessian(3.0, 2.0)), [[0.0, 0.5], [0.5, -0.75]], rtol=1e-6)


def test_xlogy_check_grads_float64(x64, rng):
    x = jnp.asarray(rng.uniform(0.2, 3.0, (3, 4)), jnp.float64)
    y = jnp.asarray(rng.uniform(0.2, 3.0, (3, 4)), jnp.float64)
    check_grads(jxent.xlogy, (x, y), order=2, modes=("fwd", "rev"))


def test_xlogy_zero_x_has_zero_y_gradient_where_jax_scipy_gives_nan():
    # The reason the custom rule exists: jax.scipy's xlogy has a NaN here.
    assert jnp.isnan(jax.grad(jax.scipy.special.xlogy, argnums=1)(0.0, 0.0))
    assert jax.grad(jxent.xlogy, argnums=1)(0.0, 0.0) == 0.0


# --------------------------------------------------------------------------- transforms, dtypes


def test_primitives_under_jit_and_vmap(rng):
    x = jnp.asarray(np.where(rng.random((5, 6)) < 0.3, 0.0, rng.random((5, 6))), jnp.float32)
    y = jnp.asarray(np.where(rng.random((5, 6)) < 0.3, 0.0, rng.random((5, 6))), jnp.float32)
    chex.assert_trees_all_close(jax.jit(jxent.xlogx)(x), jxent.xlogx(x), rtol=1e-6)
    chex.assert_trees_all_close(jax.vmap(jxent.xlogy)(x, y), jxent.xlogy(x, y), rtol=1e-6)
    grads = jax.vmap(jax.vmap(jax.grad(jxent.xlogy, argnums=(0, 1))))(x, y)
    direct = jax.grad(lambda a, b: jxent.xlogy(a, b).sum(), argnums=(0, 1))(x, y)
    chex.assert_trees_all_close(grads, direct, rtol=1e-6)
    assert not np.isnan(np.asarray(grads[1])).any()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_primitives_compute_16_bit_inputs_in_float32(dtype):
    x = jnp.array([0.0, 0.25, 0.5, 1.0], dtype)
    chex.assert_type(jxent.xlogx(x), jnp.float32)
    chex.assert_type(jxent.xlogy(x, x), jnp.float32)
    chex.assert_trees_all_equal(jxent.xlogx(x), jxent.xlogx(x.astype(jnp.float32)))
    chex.assert_type(jax.grad(lambda v: jxent.xlogx(v).sum())(x), dtype)


def test_primitives_keep_float64(x64):
    x = jnp.array([0.0, 0.5], jnp.float64)
    chex.assert_type(jxent.xlogx(x), jnp.float64)
    chex.assert_type(jxent.xlogy(x, x), jnp.float64)
    chex.assert_type(jax.grad(lambda v: jxent.xlogy(v, v).sum())(x), jnp.float64)


def test_xlogy_rejects_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"x of shape \(3,\) and y of shape \(4,\)"):
        jxent.xlogy(jnp.ones(3), jnp.ones(4))


def test_primitives_reject_complex_input():
    with pytest.raises(TypeError, match="x must be real"):
        jxent.xlogx(jnp.ones(3, jnp.complex64))
    with pytest.raises(TypeError, match="y must be real"):
        jxent.xlogy(jnp.ones(3), jnp.ones(3, jnp.complex64))


# --------------------------------------------------------------------------- zero_safe_mul

A = [0.0, 0.0, -0.0, 2.0, INF, -INF, NAN, 0.0, 3.0, NAN]
B = [INF, -INF, INF, 3.0, 0.0, 0.0, 0.0, NAN, -INF, INF]


def test_zero_safe_mul_values():
    a, b = jnp.array(A), jnp.array(B)
    got = zero_safe_mul(a, b)
    chex.assert_type(got, jnp.float32)
    np.testing.assert_array_equal(np.asarray(got), np_zero_safe_mul(A, B))
    # Both orders, and the exact values that matter.
    np.testing.assert_array_equal(np.asarray(zero_safe_mul(b, a)), np.asarray(got))
    np.testing.assert_array_equal(np.asarray(got[:6]), [0, 0, 0, 6, 0, 0])
    assert np.isnan(np.asarray(got[6:8])).all()
    assert got[8] == -INF
    assert np.isnan(got[9])


def test_zero_safe_mul_broadcasts_and_promotes():
    got = zero_safe_mul(jnp.array([[0.0], [2.0]], jnp.bfloat16), jnp.array([INF, 1.5]))
    chex.assert_shape(got, (2, 2))
    chex.assert_type(got, jnp.float32)
    np.testing.assert_array_equal(np.asarray(got), [[0.0, 0.0], [INF, 3.0]])
    assert zero_safe_mul(0.0, INF) == 0.0


def test_zero_safe_mul_zero_tangent_meets_infinite_coefficient():
    c = jnp.array([INF, 2.0, -INF])
    a = jnp.array([1.0, 1.0, 1.0])
    # Plain multiplication turns the zero tangent into NaN ...
    _, plain = jax.jvp(lambda v: v * c, (a,), (jnp.zeros(3),))
    assert np.isnan(np.asarray(plain)).any()
    # ... zero_safe_mul does not, in forward or reverse mode.
    _, tangent = jax.jvp(lambda v: zero_safe_mul(v, c), (a,), (jnp.zeros(3),))
    np.testing.assert_array_equal(np.asarray(tangent), [0.0, 0.0, 0.0])
    _, vjp = jax.vjp(lambda v: zero_safe_mul(v, c), a)
    np.testing.assert_array_equal(np.asarray(vjp(jnp.array([0.0, 1.0, 0.0]))[0]), [0, 2, 0])
    for jac in (jax.jacfwd, jax.jacrev):
        np.testing.assert_array_equal(
            np.asarray(jac(lambda v: zero_safe_mul(v, c))(a)), np.diag(np.asarray(c))
        )


def test_zero_safe_mul_gradients():
    d_a, d_b = jax.grad(zero_safe_mul, argnums=(0, 1))(0.0, INF)
    assert d_a == INF
    assert d_b == 0.0
    d_a, d_b = jax.grad(zero_safe_mul, argnums=(0, 1))(2.0, -3.0)
    assert (d_a, d_b) == (-3.0, 2.0)
    hessian = jax.hessian(zero_safe_mul, argnums=(0, 1))(2.0, 3.0)
    np.testing.assert_array_equal(np.array(hessian), [[0.0, 1.0], [1.0, 0.0]])
    # x * x: second derivative 2, through both transposition rules.
    assert jax.hessian(lambda x: zero_safe_mul(x, x))(5.0) == 2.0
    assert jax.jacfwd(jax.jacrev(lambda x: zero_safe_mul(x, x)))(5.0) == 2.0
    ct = jnp.array([1.0, 0.0, 2.0])
    c = jnp.array([INF, INF, 3.0])
    (transposed,) = jax.linear_transpose(lambda v: zero_safe_mul(v, c), ct)(ct)
    np.testing.assert_array_equal(np.asarray(transposed), [INF, 0.0, 6.0])


@pytest.mark.parametrize(
    ("in_axes", "a_shape", "b_shape"),
    [
        ((0, 0), (4, 3), (4, 3)),
        ((0, None), (4, 3), (3,)),
        ((None, 0), (3,), (4, 3)),
        ((1, 0), (3, 4), (4, 3)),
    ],
)
def test_zero_safe_mul_vmap(in_axes, a_shape, b_shape, rng):
    a = np.where(rng.random(a_shape) < 0.4, 0.0, rng.normal(size=a_shape))
    b = np.where(rng.random(b_shape) < 0.4, INF, rng.normal(size=b_shape))
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    got = jax.vmap(zero_safe_mul, in_axes=in_axes)(a, b)
    a_rows = a if in_axes[0] in (0, None) else a.T
    b_rows = b if in_axes[1] in (0, None) else b.T
    expected = np_zero_safe_mul(a_rows, b_rows)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(jax.jit(jax.vmap(zero_safe_mul, in_axes))(a, b)), expected, rtol=1e-6
    )


def test_zero_safe_mul_under_jit_vmap_grad(rng):
    a = jnp.asarray(np.where(rng.random(6) < 0.5, 0.0, rng.normal(size=6)), jnp.float32)
    b = jnp.asarray(np.where(rng.random(6) < 0.5, INF, rng.normal(size=6)), jnp.float32)
    chex.assert_trees_all_equal(jax.jit(zero_safe_mul)(a, b), zero_safe_mul(a, b))
    d_a, d_b = jax.jit(jax.vmap(jax.grad(zero_safe_mul, argnums=(0, 1))))(a, b)
    np.testing.assert_array_equal(np.asarray(d_a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(d_b), np.asarray(a))
    hessians = jax.vmap(jax.hessian(zero_safe_mul, argnums=(0, 1)))(a, b)
    np.testing.assert_array_equal(np.asarray(hessians[0][1]), np.ones(6))
    np.testing.assert_array_equal(np.asarray(hessians[0][0]), np.zeros(6))
