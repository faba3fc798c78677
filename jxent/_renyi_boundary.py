"""The Rényi measures' derivatives: of their terms, and in probabilities that are 0.

The terms p^α q^(1-α) and p (e^{εx} - 1)/ε (x = log(p/q), ε = α - 1) are
differentiated in closed form, p^α q^(1-α) by α p^(α-1) q^(1-α) and so on:
never through log p, whose slope 1/p would meet a p^α in a product that
cancels (forward mode at α = 0), overflows (forward mode at a tiny p) or
loses the second derivative to 1/p² (hessians at a tiny p).

The measures compute their values with the tangents of the entries that are
0 cut (a sum over the support cannot differentiate an entry leaving it);
``zero_classes`` adds 0 to the value and gives those entries their one-sided
derivative, as probabilities cannot go below 0.
"""

import functools

import jax
import jax.numpy as jnp

from ._primitives import exprel, log_ratio, log_ratio_excess
from ._zero_safe import zero_safe_mul


def log1p_ratio_minus_one(y: jax.Array) -> jax.Array:
    """log1p(y)/y - 1, 0 at 0, accurate near 0 (where it is about -y/2)."""
    small = jnp.abs(y) < 1e-2
    safe = jnp.where(small, 1.0, y)
    ys = jnp.where(small, y, 0.0)
    # log1p(y)/y - 1 = -y (1/2 - y (1/3 - y (1/4 - ...))), to y^8.
    series = jnp.zeros_like(ys)
    for k in range(10, 1, -1):
        series = 1 / k - ys * series
    return jnp.where(small, -ys * series, jnp.log1p(safe) / safe - 1)


def shifted_log_sum(terms, exponents, keep, axes) -> jax.Array:
    """log Σ_keep terms(shift) + shift, ``terms(shift)`` being e^{exponents - shift}
    (differentiated as the caller's terms are) with the largest exponent as the
    shift, a constant (the result does not depend on it); -inf when nothing is kept."""
    peak = jnp.max(jnp.where(keep, exponents, -jnp.inf), axis=axes, keepdims=True)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
    total = jnp.sum(jnp.where(keep, terms(peak), 0.0), axis=axes)
    # -inf said directly: log's derivative at 0 would make every tangent NaN.
    log_total = jnp.where(total > 0, jnp.log(jnp.where(total > 0, total, 1.0)), -jnp.inf)
    return jnp.squeeze(peak, axes) + log_total


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def power_term(i: int, j: int, p, q, alpha, shift) -> jax.Array:
    """p^(α-i) q^(1-α-j) e^(-shift), for p, q > 0 (``shift`` keeps it in range).

    Its slopes are terms of the same kind, (α - i) p^(α-i-1) q^(1-α-j) e^(-shift)
    in p and so on (an exponent of 0 gives a slope of 0 whatever the power is),
    each the exponent log p + εx - shift of p^α q^(1-α) less i log p + j log q:
    the same rounding in all of them, so that they cancel as they should in a
    hessian (log Σ p^α q^(1-α) at a large α and one dominant term).
    """
    x = log_ratio(p, q)
    exponent = jnp.log(p) + (alpha - 1) * x - shift
    if i:
        exponent = exponent - i * jnp.log(p)
    if j:
        exponent = exponent - j * jnp.log(q)
    return jnp.exp(exponent)


@power_term.defjvp
def _power_term_jvp(i, j, primals, tangents):
    (p, q, alpha, shift), (dp, dq, d_alpha, d_shift) = primals, tangents
    value = power_term(i, j, p, q, alpha, shift)
    slope_p = zero_safe_mul(alpha - i, power_term(i + 1, j, p, q, alpha, shift))
    slope_q = zero_safe_mul(1 - alpha - j, power_term(i, j + 1, p, q, alpha, shift))
    slope_alpha = zero_safe_mul(value, log_ratio(p, q))
    tangent = zero_safe_mul(dp, slope_p) + zero_safe_mul(dq, slope_q)
    tangent = tangent + zero_safe_mul(d_alpha, slope_alpha) - zero_safe_mul(d_shift, value)
    return value, tangent


def _square_slope(x: jax.Array, alpha: jax.Array) -> jax.Array:
    """x² φ'(εx), φ(u) = expm1(u)/u: the ε-slope of x φ(εx) (log_ratio_excess's, at p = 1)."""
    one = jnp.ones_like(x)
    return jax.jvp(lambda a: log_ratio_excess(one, one, x, a), (alpha,), (jnp.ones_like(alpha),))[1]


@jax.custom_jvp
def _tilted(x: jax.Array, epsilon: jax.Array) -> jax.Array:
    """x φ(εx) = (e^{εx} - 1)/ε, with its slope e^{εx} in x said directly (as
    φ(εx) + εx φ'(εx) it would lose its digits where εx is very negative)."""
    return x * exprel(epsilon * x)


@_tilted.defjvp
def _tilted_jvp(primals, tangents):
    (x, epsilon), (dx, d_epsilon) = primals, tangents
    slope_x = jnp.exp(epsilon * x)
    slope_epsilon = _square_slope(x, epsilon + 1)
    return _tilted(x, epsilon), zero_safe_mul(dx, slope_x) + zero_safe_mul(d_epsilon, slope_epsilon)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def excess_term(with_q: bool, p, q, alpha) -> jax.Array:
    """p (e^{εx} - 1)/ε (p x at ε = 0), x = log(p/q); ``with_q`` adds q - p (then
    it is log_ratio_excess, >= 0). For p, q > 0 with εx < ~50."""
    x = log_ratio(p, q)
    if with_q:
        return log_ratio_excess(p, q, x, alpha)
    return p * _tilted(x, alpha - 1)


@excess_term.defjvp
def _excess_term_jvp(with_q, primals, tangents):
    (p, q, alpha), (dp, dq, d_alpha) = primals, tangents
    x, epsilon = log_ratio(p, q), alpha - 1
    zero = jnp.zeros_like(p)
    tilt = power_term(1, 0, p, q, alpha, zero)  # p^(α-1) q^(1-α) = e^{εx}
    # In p: (α e^{εx} - 1)/ε, as x φ(εx) + e^{εx} near ε = 0 (no 0/0) and as
    # it is away from it (at α = 0 the two parts of that sum would cancel).
    near = jnp.abs(epsilon) < 0.25
    safe_epsilon = jnp.where(near, 1.0, epsilon)
    slope_near = _tilted(x, jnp.where(near, epsilon, 0.0)) + tilt
    slope_p = jnp.where(near, slope_near, (zero_safe_mul(alpha, tilt) - 1) / safe_epsilon)
    slope_q = -power_term(0, 1, p, q, alpha, zero)  # -(p/q)^α
    if with_q:
        slope_p, slope_q = slope_p - 1, slope_q + 1
    slope_alpha = p * _square_slope(x, alpha)
    tangent = zero_safe_mul(dp, slope_p) + zero_safe_mul(dq, slope_q)
    return excess_term(with_q, p, q, alpha), tangent + zero_safe_mul(d_alpha, slope_alpha)


def _exp(x: jax.Array) -> jax.Array:
    """exp(x); +inf, with a zero tangent, where it overflows."""
    over = x > jnp.log(jnp.finfo(x.dtype).max)
    return jnp.where(over, jnp.inf, jnp.exp(jnp.where(over, 0.0, x)))


def _square_times(x: jax.Array, c: jax.Array) -> jax.Array:
    """x² c, with 0 · inf = 0 in every derivative (x is 0 where c is infinite)."""
    return zero_safe_mul(x, zero_safe_mul(x, c))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def zero_classes(axes, mask, p, q, r, mass, alpha) -> jax.Array:
    """0, with D_α's (H_α's, when ``q`` is None) derivative in the zero entries.

    The callers cut the tangents of p = 0 (and of q = 0 < p) from the value, so
    those come from here: one-sided, as probabilities cannot go below 0. With
    r = log(S/s)/ε, S = Σ p^α q^(1-α) and s = Σ p, D = s r + t - s and H = -s r
    (q = 1) have in p_k = 0 the slopes r - 1/ε - 1 and 1/ε - r where the power
    term's slope α p^(α-1) q^(1-α) is 0 (q_k > 0 with α > 1, q_k = 0 with α < 1),
    and ∓∞ where it is ∞ (a jump at α = 0: the α → 0+ limit). In q_k = 0 < p_k,
    D's slope is 1 - s/S at α = 0 and -∞ above it. Where D is +inf and a step
    keeps it so, the slope is 0. The second derivatives among these entries are
    there where they are finite (and +inf on the diagonal for 1 < α < 2).
    """
    return jnp.zeros_like(r)


@zero_classes.defjvp
def _zero_classes_jvp(axes, primals, tangents):
    # The slopes are computed for derivatives only: the value is 0.
    _, tangent = jax.jvp(functools.partial(_zero_class_terms, axes), primals, tangents)
    _, _, _, r, _, _ = primals
    return jnp.zeros_like(r), tangent


def _zero_class_terms(axes, mask, p, q, r, mass, alpha) -> jax.Array:
    """The terms of zero_classes, 0 in value (up to 0 · NaN)."""

    def total(terms):
        return jnp.sum(terms if mask is None else jnp.where(mask, terms, 0.0), axis=axes)

    epsilon = jnp.where(jnp.isfinite(alpha) & (alpha != 1), alpha - 1, 1.0)
    inverse = jnp.where(jnp.isinf(alpha), 0.0, 1 / epsilon)  # 1/ε, 0 at α = ∞
    bounded = jnp.isfinite(r)
    r = jnp.where(bounded, r, 0.0)
    cols = [jnp.expand_dims(x, axes) for x in (alpha, inverse, mass, r, bounded, _exp(-r))]
    a, inv, s, rc, finite_r, decay = cols
    covered = jnp.ones(p.shape, bool) if q is None else q > 0
    finite = ((covered & (a > 1)) | (~covered & (a < 1))) & (s > 0) & finite_r
    slope = jnp.where(finite, rc - inv, jnp.where(covered, -jnp.inf, jnp.inf))
    # Second derivatives: -1/(εs) between two such p_k, and on the diagonal
    # (s/(εS)) ∂²S/∂p_k² more: 2 e^{-r}/q_k at α = 2, +inf for 1 < α < 2.
    bend = 2 * decay if q is None else zero_safe_mul(2 / jnp.where(covered, q, 1.0), decay)
    bend = jnp.where(finite & covered & (a <= 2), jnp.where(a == 2, bend, jnp.inf), 0.0)
    zero_p = jnp.where(finite & (p == 0), p, 0.0)
    slope += 0.5 * zero_safe_mul(zero_p, bend)
    x = jnp.where(p == 0, p, 0.0)
    safe_s = jnp.where(mass > 0, mass, 1.0)
    if q is None:
        pairs = _square_times(total(zero_p), 0.5 * inverse / safe_s)
        return total(zero_safe_mul(x, -slope)) + pairs
    # D: the mass term's -1 too; 0 where D is +inf and a step keeps it so.
    slope = jnp.where(finite_r, slope - 1, jnp.where(covered & (a < 1), -jnp.inf, 0.0))
    uncovered = (p > 0) & (q == 0)
    alone = total(uncovered.astype(p.dtype)) == 1
    ratio = jnp.where(bounded, _exp(r), jnp.inf)  # s/S at α = 0
    steep = jnp.where(alpha == 0, 1 - ratio, jnp.where((alpha < 1) | alone, -jnp.inf, 0.0))
    slope = jnp.where(uncovered, jnp.expand_dims(steep, axes), slope)
    x = jnp.where(uncovered, q, x)
    # At α = 0 the pairs of these entries give ½ (Σ p_k - (s/S) Σ q_k)² / s.
    ratio = jnp.where((alpha == 0) & bounded, ratio, 0.0)
    sums = total(zero_p) - zero_safe_mul(total(jnp.where(uncovered, q, 0.0)), ratio)
    return total(zero_safe_mul(x, slope)) + _square_times(sums, -0.5 * inverse / safe_s)
