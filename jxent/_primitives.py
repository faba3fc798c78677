"""Zero-safe elementwise building blocks with ``custom_jvp`` rules.

Every rule multiplies tangents with :func:`zero_safe_mul`, so a zero tangent
meets an infinite coefficient as 0, in forward mode, reverse mode and at every
order. The coefficients are themselves built from these functions, which is
what keeps ``jax.hessian`` free of NaN at the edges.
"""

import functools
import math

import jax
import jax.numpy as jnp

from ._arguments import as_inexact_array, broadcast_pair
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
def xlogx_term(x: jax.Array) -> jax.Array:
    """:func:`xlogx` of an array already checked and converted (for the measures)."""
    return _zero_where_x_is_zero(x, x, x * jnp.log(x))


@xlogx_term.defjvp
def _xlogx_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return xlogx_term(x), zero_safe_mul(dx, _log(x) + 1)


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
def xlogy_term(x: jax.Array, y: jax.Array) -> jax.Array:
    """:func:`xlogy` of arrays already checked, converted and broadcast."""
    return _zero_where_x_is_zero(x, y, x * jnp.log(y))


@xlogy_term.defjvp
def _xlogy_jvp(primals, tangents):
    (x, y), (dx, dy) = primals, tangents
    return xlogy_term(x, y), zero_safe_mul(dx, _log(y)) + zero_safe_mul(dy, xdivy(x, y))


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


def _wide(dtype) -> bool:
    """Whether ``dtype`` is wider than float32: series then need more terms."""
    return jnp.finfo(dtype).bits > 32


def relative_excess_series(delta: jax.Array) -> jax.Array:
    """(1 + δ) log1p(δ) - δ = Σ_{k≥2} (-δ)^k / (k(k-1)) for |δ| < ¼.

    27 terms reach float64 precision at |δ| = ¼ (the next is ~4^-27 of the
    first), 14 float32's: fewer terms, less to compile under differentiation.
    """
    acc = jnp.zeros_like(delta)
    for k in range(28 if _wide(delta.dtype) else 15, 1, -1):
        acc = acc * -delta + 1 / (k * (k - 1))
    return delta * delta * acc


@jax.custom_jvp
def kl_term(p: jax.Array, q: jax.Array) -> jax.Array:
    """``p log(p/q) - p + q >= 0``, the generalized KL term (SciPy's ``kl_div``).

    With δ = (p - q)/q it is q·((1+δ) log1p(δ) - δ), summed as a series for
    |δ| < ¼, where the closed form would cancel: so it is never negative, and
    accurate when p ≈ q. 0 at p = q = 0, ``+inf`` where p > 0 = q.
    """
    has_q = q > 0
    safe_q = jnp.where(has_q, q, 1.0)
    delta = (p - q) / safe_q
    small = has_q & (jnp.abs(delta) < 0.25)
    series = safe_q * relative_excess_series(jnp.where(small, delta, 0.0))
    closed = rel_entr(p, q) - p + q
    return jnp.where(small, series, jnp.where(has_q, closed, rel_entr(p, q) + q))


@kl_term.defjvp
def _kl_term_jvp(primals, tangents):
    (p, q), (dp, dq) = primals, tangents
    # d/dp = log(p/q), +inf at p = q = 0 as for rel_entr; d/dq = 1 - p/q.
    slope_p = jnp.where((p == 0) & (q == 0), jnp.inf, log_ratio(p, q))
    tangent = zero_safe_mul(dp, slope_p) + zero_safe_mul(dq, 1 - xdivy(p, q))
    return kl_term(p, q), tangent


def exprel(x: jax.Array) -> jax.Array:
    """expm1(x) / x, 1 at 0, with an accurate derivative near 0."""
    small = jnp.abs(x) < 1e-2
    safe = jnp.where(small, 1.0, x)
    series = 1 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x / 720))))
    return jnp.where(small, series, jnp.expm1(safe) / safe)


def _exprel_slope(u: jax.Array) -> jax.Array:
    """d/du exprel(u) = (u e^u - e^u + 1)/u², ½ at 0; a series for |u| < ½."""
    small = jnp.abs(u) < 0.5
    us = jnp.where(small, u, 0.0)
    # Σ_{k≥0} (k+1) u^k / (k+2)!: 15 terms reach float64 precision at |u| = ½.
    series = jnp.zeros_like(us)
    for k in range(14, -1, -1):
        series = series * us + (k + 1) / math.factorial(k + 2)
    safe = jnp.where(small, 1.0, u)
    return jnp.where(small, series, (jnp.exp(safe) * (safe - 1) + 1) / (safe * safe))


@jax.custom_jvp
def log_ratio_excess(p: jax.Array, q: jax.Array, x: jax.Array, alpha: jax.Array) -> jax.Array:
    r"""``p·h(x) >= 0`` with :math:`h(x) = (e^{εx} - 1)/ε + e^{-x} - 1`, ε = α - 1.

    ``x`` is log(p/q) (``+inf`` where q = 0 < p); p > 0. Summed over the
    classes, p·(e^{εx} - 1)/ε is Rényi's :math:`(Σ p^α q^{1-α} - Σ p)/ε`
    and p·(e^{-x} - 1) is q - p: so the sum is that less the mass difference,
    made of terms that are each >= 0 (h is 0 with a zero slope at x = 0, and
    falls on the left and rises on the right of it for every α > 0). At α = 1
    it is the generalized KL term p log(p/q) - p + q.
    """
    epsilon = alpha - 1
    finite = jnp.isfinite(x)
    # h = α Σ_{k≥2} (-x)^k S_k / k!, S_2 = 1, S_{k+1} = 1 - ε S_k: no cancellation
    # near x = 0, nor for small α (the closed form is a difference there). The
    # coefficients depend on ε only (one per distribution); 19 terms reach
    # float64 precision at |x| max(1, |ε|) = 1, 12 float32's. Horner's rule.
    small = finite & (jnp.abs(x) * jnp.maximum(1.0, jnp.abs(epsilon)) < 1)
    xs = jnp.where(small, x, 0.0)
    coefficients, weight, factorial = [], jnp.ones_like(epsilon), 2.0
    for k in range(2, 21 if _wide(x.dtype) else 14):
        coefficients.append(weight / factorial)
        weight, factorial = 1 - epsilon * weight, factorial * (k + 1)
    series = coefficients[-1]
    for coefficient in coefficients[-2::-1]:
        series = series * -xs + coefficient
    series = series * xs * xs
    # For α >= ½ the closed form, with p·(e^{-x} - 1) as q - p (e^{-x} may
    # overflow); outside the series its two parts cancel by a few bits at most.
    wide = finite & ~small & (alpha >= 0.5)
    xw = jnp.where(wide, x, 1.0)
    closed = p * xw * exprel(epsilon * xw) + (q - p)
    # For α < ½ the two parts of h nearly cancel (h = 0 at α = 0): with α
    # factored out, p·h = α/(1-α)·(p - q - q (e^{αx} - 1)/α), a sum of like
    # signs for |x| >= 1. Where αx is large, q e^{αx} is p e^{-(1-α)x}.
    narrow = finite & ~small & (alpha < 0.5)
    grows = narrow & (alpha * x > 80)
    xn = jnp.where(narrow & ~grows, x, 1.0)
    a_safe = jnp.where(alpha > 0, alpha, 1.0)
    xg = jnp.where(grows, x, 1.0)
    rise = jnp.where(
        grows, (p * jnp.exp(-(1 - alpha) * xg) - q) / a_safe, q * xn * exprel(alpha * xn)
    )
    factored = alpha / (1 - jnp.where(narrow, alpha, 0.0)) * (p - q - rise)
    # x = +inf: (e^{εx} - 1)/ε is +inf for ε >= 0 and -1/ε below; e^{-x} - 1 is -1.
    negative = epsilon < 0
    missing = jnp.where(negative, p * alpha / jnp.where(negative, -epsilon, 1.0), jnp.inf)
    value = jnp.where(wide, closed, factored)
    value = jnp.where(small, p * alpha * series, value)
    return jnp.where(finite, value, jnp.where(jnp.isnan(x), jnp.nan, missing))


@log_ratio_excess.defjvp
def _log_ratio_excess_jvp(primals, tangents):
    # The slopes of p (e^{εx} - 1)/ε + q - p, which is p·h(x) when x = log(p/q),
    # with x an input of its own (its tangent is dp/p - dq/q): far simpler to
    # differentiate again than the branches that compute the value.
    (p, q, x, alpha), (dp, dq, dx, d_alpha) = primals, tangents
    epsilon = alpha - 1
    finite = jnp.isfinite(x)
    xf = jnp.where(finite, x, 0.0)
    # Callers use the value only where εx < 50; elsewhere these are placeholders.
    u = epsilon * xf
    u = jnp.where(u < 50, u, 0.0)
    slope_p = xf * exprel(u) - 1
    slope_x = p * jnp.exp(u)
    slope_alpha = p * xf * xf * _exprel_slope(u)
    # x = +inf (q = 0): the value is p α/(1 - α) for α < 1, +inf from α = 1 on.
    below_one = epsilon < 0
    inverse = 1 / jnp.where(below_one, -epsilon, 1.0)
    slope_p = jnp.where(finite, slope_p, jnp.where(below_one, alpha * inverse, jnp.inf))
    slope_q = jnp.where(finite, jnp.ones_like(slope_p), 0.0)
    slope_x = jnp.where(finite, slope_x, 0.0)
    slope_alpha = jnp.where(finite, slope_alpha, jnp.where(below_one, p * inverse**2, jnp.inf))
    tangent = zero_safe_mul(dp, slope_p) + zero_safe_mul(dq, slope_q)
    tangent = tangent + zero_safe_mul(dx, slope_x) + zero_safe_mul(d_alpha, slope_alpha)
    return log_ratio_excess(p, q, x, alpha), tangent


def shifted_logits(logits: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """``logits - peak`` and ``log Σ exp(logits - peak)`` (kept dims): their
    difference is the log-softmax. A row of ``-inf`` only (empty) gives
    ``(-inf, 0)``. Not differentiable at the edges: for values only.
    """
    peak = jnp.max(logits, axis=axes, keepdims=True)
    empty = peak == -jnp.inf
    shifted = logits - jnp.where(empty, 0, peak)
    # log Σ exp(shifted) = log1p(mass outside one peak entry): near one-hot
    # rows keep the digits that log(1 + tiny) would round away.
    at_peak = shifted == 0
    peaks = jnp.sum(at_peak, axis=axes, keepdims=True).astype(logits.dtype)
    rest = jnp.sum(jnp.where(at_peak, 0, jnp.exp(shifted)), axis=axes, keepdims=True) + (peaks - 1)
    return shifted, jnp.log1p(jnp.where(empty, 0, rest))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def log_softmax(logits: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Log-softmax over ``axes``; ``-inf`` entries are zero-probability classes.

    A row whose logits are all ``-inf`` is empty: every entry is ``-inf`` and
    every tangent is multiplied by a zero probability downstream.
    """
    shifted, log_rest = shifted_logits(logits, axes)
    return shifted - log_rest


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
    return xlogx_term(as_inexact_array(x, "x"))


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
    return xlogy_term(x, y)
