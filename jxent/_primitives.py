"""Zero-safe elementwise building blocks with ``custom_jvp`` rules.

Every rule multiplies tangents with :func:`zero_safe_mul`, so a zero tangent
meets an infinite coefficient as 0, in forward mode, reverse mode and at every
order. The coefficients are themselves built from these functions, which is
what keeps ``jax.hessian`` free of NaN at the edges.
"""

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._checks import as_inexact_array, broadcast_pair
from ._zero_safe import zero_safe_mul


def _zero_where_x_is_zero(x: jax.Array, y: jax.Array, value: jax.Array) -> jax.Array:
    # x = 0 gives 0 whatever y is, unless y is NaN: NaN inputs stay NaN.
    return jnp.where((x == 0) & ~jnp.isnan(y), jnp.zeros_like(value), value)


@jax.custom_jvp
def _reciprocal(x: jax.Array) -> jax.Array:
    return 1 / x


@_reciprocal.defjvp
def _reciprocal_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    r = _reciprocal(x)
    return r, -zero_safe_mul(dx, zero_safe_mul(r, r))


@jax.custom_jvp
def _log(x: jax.Array) -> jax.Array:
    return jnp.log(x)


@_log.defjvp
def _log_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.log(x), zero_safe_mul(dx, _reciprocal(x))


@jax.custom_jvp
def _log1p(x: jax.Array) -> jax.Array:
    return jnp.log1p(x)


@_log1p.defjvp
def _log1p_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.log1p(x), zero_safe_mul(dx, _reciprocal(1 + x))


@jax.custom_jvp
def _xlogx(x: jax.Array) -> jax.Array:
    return _zero_where_x_is_zero(x, x, x * jnp.log(x))


@_xlogx.defjvp
def _xlogx_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _xlogx(x), zero_safe_mul(dx, _log(x) + 1)


@jax.custom_jvp
def xdivy(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x / y``, 0 where ``x = 0`` whatever ``y`` is (NaN stays NaN)."""
    return _zero_where_x_is_zero(x, y, x / y)


@xdivy.defjvp
def _xdivy_jvp(primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    ratio = xdivy(x, y)
    return ratio, zero_safe_mul(dx, _reciprocal(y)) - zero_safe_mul(dy, xdivy(ratio, y))


@jax.custom_jvp
def _xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
    return _zero_where_x_is_zero(x, y, x * jnp.log(y))


@_xlogy.defjvp
def _xlogy_jvp(primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    return _xlogy(x, y), zero_safe_mul(dx, _log(y)) + zero_safe_mul(dy, xdivy(x, y))


@jax.custom_jvp
def xlog1py(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x * log1p(y)``, 0 where ``x = 0`` (NaN stays NaN)."""
    return _zero_where_x_is_zero(x, y, x * jnp.log1p(y))


@xlog1py.defjvp
def _xlog1py_jvp(primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    tangent = zero_safe_mul(dx, _log1p(y)) + zero_safe_mul(dy, xdivy(x, 1 + y))
    return xlog1py(x, y), tangent


@jax.custom_jvp
def log_ratio(p: jax.Array, q: jax.Array) -> jax.Array:
    """``log(p / q)``, accurate when ``p ≈ q`` and when ``p / q`` would overflow."""
    ratio = p / q
    # Within a factor 2, p - q is exact (Sterbenz), so log1p((p - q) / q) keeps
    # every digit of a log near 0 that log(p / q) would round away.
    close = (q > 0) & (p >= 0.5 * q) & (p <= 2 * q)
    safe_q = jnp.where(close, q, 1)
    near_one = jnp.log1p((jnp.where(close, p, 1) - safe_q) / safe_q)
    # Otherwise the quotient is exact to one rounding unless it leaves the
    # normal range; only then fall back to the difference of logs.
    in_range = jnp.isfinite(ratio) & (ratio >= jnp.finfo(ratio.dtype).tiny)
    safe_ratio = jnp.where(in_range, ratio, 1)
    far = jnp.where(in_range, jnp.log(safe_ratio), jnp.log(p) - jnp.log(q))
    return jnp.where(close, near_one, far)


@log_ratio.defjvp
def _log_ratio_jvp(primals, tangents):
    (p, q), (dp, dq) = primals, tangents
    tangent = zero_safe_mul(dp, _reciprocal(p)) - zero_safe_mul(dq, _reciprocal(q))
    return log_ratio(p, q), tangent


@jax.custom_jvp
def rel_entr(p: jax.Array, q: jax.Array) -> jax.Array:
    """``p log(p / q)``: 0 where ``p = 0``, ``+inf`` where ``p > 0 = q``."""
    value = p * log_ratio(p, q)
    return jnp.where((p == 0) & (q >= 0), jnp.zeros_like(value), value)


@rel_entr.defjvp
def _rel_entr_jvp(primals, tangents):
    (p, q), (dp, dq) = primals, tangents
    # At p = q = 0 any increase of p makes the term +inf: the slope is +inf.
    slope_p = jnp.where((p == 0) & (q == 0), jnp.inf, log_ratio(p, q) + 1)
    tangent = zero_safe_mul(dp, slope_p) - zero_safe_mul(dq, xdivy(p, q))
    return rel_entr(p, q), tangent


def _skew_js_slope(weight, p, mixture):
    # d/dp of w·p log(p/m) + (terms through m) is w log(p/m). At p = m = 0 the
    # term is homogeneous of degree one in (p, q): along p alone m = w p, so
    # the slope is -w log w (½ log 2 for JS, 0 at w = 0).
    both_zero = (p == 0) & (mixture == 0)
    safe_p = jnp.where(both_zero, 1.0, p)
    safe_mixture = jnp.where(both_zero, 1.0, mixture)
    slope = zero_safe_mul(weight, log_ratio(safe_p, safe_mixture))
    return jnp.where(both_zero, -_xlogx(weight), slope)


@jax.custom_jvp
def skew_js_term(p: jax.Array, q: jax.Array, beta: jax.Array) -> jax.Array:
    """One class's share of β·D(P‖M) + (1-β)·D(Q‖M), M = βP + (1-β)Q (β = ½: JS)."""
    mixture = beta * p + (1 - beta) * q
    return zero_safe_mul(beta, rel_entr(p, mixture)) + zero_safe_mul(1 - beta, rel_entr(q, mixture))


def _skew_js_term_jvp(primals, tangents):
    (p, q, beta), (dp, dq, d_beta) = primals, tangents
    mixture = beta * p + (1 - beta) * q
    value = skew_js_term(p, q, beta)
    tangent = jnp.zeros_like(value)
    if not isinstance(dp, SymbolicZero):
        tangent = tangent + zero_safe_mul(dp, _skew_js_slope(beta, p, mixture))
    if not isinstance(dq, SymbolicZero):
        tangent = tangent + zero_safe_mul(dq, _skew_js_slope(1 - beta, q, mixture))
    if not isinstance(d_beta, SymbolicZero):
        # d/dβ = D(P‖M) - D(Q‖M) per class, minus (p - q) from M's own change.
        slope = rel_entr(p, mixture) - rel_entr(q, mixture) - (p - q)
        tangent = tangent + zero_safe_mul(d_beta, slope)
    return value, tangent


skew_js_term.defjvp(_skew_js_term_jvp, symbolic_zeros=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def log_softmax(logits: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Log-softmax over ``axes``; ``-inf`` entries are zero-probability classes.

    A row whose logits are all ``-inf`` is empty: every entry is ``-inf`` and
    every tangent is multiplied by a zero probability downstream.
    """
    peak = jnp.max(logits, axis=axes, keepdims=True)
    empty = peak == -jnp.inf
    shifted = logits - jnp.where(empty, 0, peak)
    # log Σ exp(shifted) = log1p(mass outside one peak entry): near one-hot
    # rows keep the digits that log(1 + tiny) would round away.
    at_peak = shifted == 0
    peaks = jnp.sum(at_peak, axis=axes, keepdims=True).astype(logits.dtype)
    rest = jnp.sum(jnp.where(at_peak, 0, jnp.exp(shifted)), axis=axes, keepdims=True) + (peaks - 1)
    safe_rest = jnp.where(empty, 0, rest)
    return jnp.where(empty, -jnp.inf, shifted - jnp.log1p(safe_rest))


@log_softmax.defjvp
def _log_softmax_jvp(axes, primals, tangents):
    (logits,), (d_logits,) = primals, tangents
    log_probs = log_softmax(logits, axes)
    # zero_safe_mul: in reverse mode an infinite cotangent sum meets the zero
    # probability of a -inf class as 0, as it does in forward mode.
    mean_tangent = jnp.sum(zero_safe_mul(jnp.exp(log_probs), d_logits), axis=axes, keepdims=True)
    return log_probs, d_logits - mean_tangent


def xlogx(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Elementwise :math:`x \log x`, with :math:`0 \log 0 = 0`.

    .. math::
      \frac{d}{dx}\, x \log x = \log x + 1

    The derivative is ``-inf`` at 0 (its true value), and a zero tangent there
    gives 0, never NaN, in forward and reverse mode.

    Args:
      x: array of non-negative values. bf16/f16 are computed in float32.

    Returns:
      An array of the shape of ``x``; NaN where ``x < 0`` or ``x`` is NaN.

    Examples:
      >>> import jax, jxent
      >>> jxent.xlogx(jax.numpy.array([0.0, 1.0]))
      Array([0., 0.], dtype=float32)
    """
    return _xlogx(as_inexact_array(x, "x"))


def xlogy(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    r"""Elementwise :math:`x \log y`, 0 where :math:`x = 0` whatever ``y`` is.

    .. math::
      \partial_x = \log y, \qquad \partial_y = x / y \ (0 \text{ where } x = 0)

    A zero tangent times an infinite coefficient is 0, so ``jax.jacfwd`` and
    ``jax.grad`` give no NaN at ``(0, 0)`` (``jax.scipy.special.xlogy`` does).

    Args:
      x: array, broadcastable with ``y``.
      y: array of non-negative values.

    Returns:
      The broadcast shape; NaN where ``y`` is NaN, even when ``x = 0``.

    Examples:
      >>> import jax, jxent
      >>> jax.jacfwd(jxent.xlogy, argnums=(0, 1))(0.0, 0.0)
      (Array(-inf, dtype=float32), Array(0., dtype=float32))
    """
    x, y = broadcast_pair(as_inexact_array(x, "x"), as_inexact_array(y, "y"), ("x", "y"))
    return _xlogy(x, y)
