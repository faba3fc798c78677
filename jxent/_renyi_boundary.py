"""The Rényi measures' derivatives in probabilities that are exactly 0.

The measures compute their values with the tangents of those entries cut (a
sum over the support cannot differentiate an entry leaving it); ``zero_classes``
adds 0 to the value and gives those entries their one-sided derivative, as
probabilities cannot go below 0.
"""

import functools

import jax
import jax.numpy as jnp

from ._zero_safe import zero_safe_mul


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
