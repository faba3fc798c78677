"""Entropy, cross-entropy and KL divergence, from probabilities and from logits."""

import functools

import jax
import jax.numpy as jnp

from . import _inputs
from . import _primitives as prim
from ._arguments import Axis
from ._units import in_base
from ._zero_safe import zero_safe_mul


def entropy(
    probs: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Shannon entropy of a distribution given by its probabilities.

    .. math::
      H(P) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    The gradient is :math:`-(\log p_i + 1)`, ``+inf`` at :math:`p_i = 0` (its
    true value) and never NaN. ``probs`` is used as given, never renormalised.

    Args:
      probs: probabilities, classes along ``axis``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include, broadcastable to ``probs``.
      base: logarithm base; None means nats, 2 means bits.

    Returns:
      ``probs`` reduced over ``axis``, in float32 for 16-bit inputs; NaN for
      a distribution with a negative or NaN probability.

    Examples:
      >>> import jxent
      >>> jxent.entropy([0.5, 0.5, 0.0], base=2)
      Array(1., dtype=float32)
    """
    dist = _inputs.probabilities([probs], ["probs"], axis=axis, where=where, fill=[0.0])
    (p,) = dist.arrays
    return dist.finish(dist.total(-prim.xlogx_term(p)), base)


def cross_entropy(
    p: jax.typing.ArrayLike,
    q: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Cross-entropy of ``q`` relative to ``p``, from probabilities.

    .. math::
      H(P, Q) = -\sum_i p_i \log q_i

    Terms with :math:`p_i = 0` are 0 whatever :math:`q_i` is;
    :math:`p_i > 0 = q_i` gives ``+inf``. :math:`\partial / \partial q_i =
    -p_i / q_i`, exactly 0 where :math:`p_i = 0`.

    Args:
      p: target probabilities.
      q: model probabilities, broadcastable with ``p``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``; NaN for a distribution with
      a negative or NaN probability.

    Examples:
      >>> import jxent
      >>> jxent.cross_entropy([1.0, 0.0], [0.5, 0.0], base=2)
      Array(1., dtype=float32)
    """
    dist = _inputs.probabilities([p, q], ["p", "q"], axis=axis, where=where, fill=[0.0, 1.0])
    p, q = dist.arrays
    return dist.finish(dist.total(-prim.xlogy_term(p, q)), base)


def kl_divergence(
    p: jax.typing.ArrayLike,
    q: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Kullback–Leibler divergence :math:`D(P \| Q)` from probabilities.

    .. math::
      D(P \| Q) = \sum_i p_i \log \frac{p_i}{q_i} - p_i + q_i \ge 0

    On distributions the :math:`-p_i + q_i` add up to 0 and this is
    :math:`\sum_i p_i \log(p_i/q_i)`; on values that do not sum to 1 it is
    the generalized KL divergence (SciPy's ``kl_div``, optax's
    ``generalized_kl_divergence``), still ≥ 0 and 0 only at P = Q. Every term
    is ≥ 0 and summed as a series where :math:`p_i ≈ q_i`, so the result is
    never negative, not even by rounding. :math:`\partial / \partial q_i =
    1 - p_i / q_i`.

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``; ``+inf`` where Q misses
      P's support, NaN for a negative or NaN probability.

    Examples:
      >>> import jxent
      >>> jxent.kl_divergence([1.0, 0.0], [0.5, 0.5], base=2)
      Array(1., dtype=float32)
    """
    dist = _inputs.probabilities([p, q], ["p", "q"], axis=axis, where=where, fill=[0.0, 1.0])
    p, q = dist.arrays
    return dist.finish(dist.total(prim.kl_term(p, q)), base)


@jax.custom_jvp
def _xlogx_of_log(log_x: jax.Array) -> jax.Array:
    """``x log x`` from ``log x``: 0 at ``log x = -inf``, and so is every derivative
    (``exp(l)(l + 1)``), so that no order of any mode meets ``0 · inf``."""
    return jnp.where(log_x == -jnp.inf, 0.0, jnp.exp(log_x) * log_x)


@_xlogx_of_log.defjvp
def _xlogx_of_log_jvp(primals, tangents):
    (log_x,), (d_log_x,) = primals, tangents
    return _xlogx_of_log(log_x), (_xlogx_of_log(log_x) + jnp.exp(log_x)) * d_log_x


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _entropy_of_logits(logits: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return -jnp.sum(_xlogx_of_log(prim.log_softmax(logits, axes)), axis=axes)


@_entropy_of_logits.defjvp
def _entropy_of_logits_jvp(axes, primals, tangents):
    (logits,), (d_logits,) = primals, tangents
    log_probs = prim.log_softmax(logits, axes)
    value = -jnp.sum(_xlogx_of_log(log_probs), axis=axes)
    # dH/dz_j = -p_j (log p_j + H), with p_j log p_j = 0 for empty classes.
    slope = -(_xlogx_of_log(log_probs) + jnp.exp(log_probs) * jnp.expand_dims(value, axes))
    return value, jnp.sum(slope * d_logits, axis=axes)


def entropy_from_logits(
    logits: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Entropy of :math:`\mathrm{softmax}(z)`.

    .. math::
      H = -\sum_j p_j \log p_j, \qquad
      \frac{\partial H}{\partial z_j} = -p_j (\log p_j + H)

    ``-inf`` logits and masked classes are zero-probability classes: they add
    nothing and get gradient 0. A row with no class left has entropy 0.

    Args:
      logits: unnormalised log-probabilities.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from the softmax).
      base: logarithm base; None means nats.

    Returns:
      ``logits`` reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.entropy_from_logits(jnp.array([0.0, 0.0, -jnp.inf]), base=2)
      Array(1., dtype=float32)
    """
    logits, axes = _inputs.logits(logits, "logits", axis=axis, where=where)
    return in_base(_entropy_of_logits(logits, axes), base)


def cross_entropy_from_logits(
    p: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Cross-entropy :math:`H(P, \mathrm{softmax}(z))`.

    .. math::
      H(P, Q) = -\sum_i p_i \log q_i, \qquad
      \frac{\partial H}{\partial z_j} = q_j \textstyle\sum_i p_i - p_j

    Args:
      p: target probabilities, used as given (NaN where one is negative).
      q_logits: logits of Q, broadcastable with ``p``; ``-inf`` is a
        zero-probability class.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from the softmax).
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jxent
      >>> jxent.cross_entropy_from_logits([1.0, 0.0], [0.0, 0.0], base=2)
      Array(1., dtype=float32)
    """
    dist, log_q = _inputs.probabilities_and_logits(p, q_logits, axis=axis, where=where)
    (p,) = dist.arrays
    # A row of Q with no class left (all -inf or masked) is empty: 0, as in the losses.
    empty = jnp.all(log_q == -jnp.inf, axis=dist.axes)
    return dist.finish(jnp.where(empty, 0.0, dist.total(-zero_safe_mul(p, log_q))), base)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _kl_of_logits(a: jax.Array, b: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Σ p log(p/q) - p + q over the classes of two softmaxes; every term >= 0.

    On two distributions the -p + q terms add up to 0, so this is the KL
    divergence; term by term they make each class's share non-negative,
    where Σ p log(p/q) alone is a sum of both signs that rounding can leave
    below 0 when P ≈ Q. A class outside P's support adds q; an empty P, 0.
    """
    shifted_a, log_rest_a = prim.shifted_logits(a, axes)
    shifted_b, log_rest_b = prim.shifted_logits(b, axes)
    p, q = jnp.exp(shifted_a - log_rest_a), jnp.exp(shifted_b - log_rest_b)
    # P's support is where p > 0 in floating point: a class whose p underflows
    # adds nothing, as in cross_entropy_from_logits (H(P, Q) = H(P) + D(P‖Q)).
    support = p > 0
    covered = support & (b > -jnp.inf)
    # log p - log q with the two normalisers subtracted once for the row: an
    # error there shifts every x alike, which the terms feel only to second
    # order; the shifted logits of classes near the peak are exact.
    x = jnp.where(covered, shifted_a, 0.0) - jnp.where(covered, shifted_b, 0.0)
    x = jnp.where(covered, x - (log_rest_a - log_rest_b), jnp.where(support, jnp.inf, 0.0))
    terms = jnp.where(support, prim.log_ratio_excess(p, q, x, jnp.ones((), a.dtype)), q)
    # An empty P, or an empty Q (no class left: all -inf or masked), is an empty row.
    counts = jnp.any(support, axis=axes) & jnp.any(b > -jnp.inf, axis=axes)
    return jnp.where(counts, jnp.sum(terms, axis=axes), 0.0)


@_kl_of_logits.defjvp
def _kl_of_logits_jvp(axes, primals, tangents):
    (a, b), (da, db) = primals, tangents
    value = _kl_of_logits(a, b, axes)
    log_p, log_q = prim.log_softmax(a, axes), prim.log_softmax(b, axes)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    support = p > 0
    # dD/da_j = p_j (log p_j - log q_j - D): 0 off P's support; when Q misses
    # part of it (D = +inf), -inf where q_j > 0 and +inf where q_j = 0.
    log_ratio = jnp.where(support, log_p, 0.0) - jnp.where(support, log_q, 0.0)
    d = jnp.expand_dims(value, axes)
    finite_d = jnp.isfinite(d)
    gap = jnp.where(
        finite_d,
        log_ratio - jnp.where(finite_d, d, 0.0),
        jnp.where(jnp.isposinf(log_ratio), jnp.inf, -jnp.inf),
    )
    counts = jnp.any(support, axis=axes, keepdims=True) & jnp.any(
        b > -jnp.inf, axis=axes, keepdims=True
    )
    slope_a = jnp.where(counts, zero_safe_mul(p, jnp.where(support, gap, 0.0)), 0.0)
    # dD/db_j = q_j - p_j (0 for an empty row, whose divergence is 0 throughout).
    slope_b = jnp.where(counts, q - p, 0.0)
    tangent = zero_safe_mul(slope_a, da) + zero_safe_mul(slope_b, db)
    return value, jnp.sum(tangent, axis=axes)


def kl_divergence_from_logits(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""KL divergence :math:`D(\mathrm{softmax}(a) \| \mathrm{softmax}(b))`.

    .. math::
      D = \sum_i p_i (\log p_i - \log q_i), \qquad
      \frac{\partial D}{\partial a_j} = p_j (\log p_j - \log q_j - D), \quad
      \frac{\partial D}{\partial b_j} = q_j - p_j

    Args:
      p_logits: logits of P.
      q_logits: logits of Q, broadcastable with ``p_logits``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from both softmaxes).
      base: logarithm base; None means nats.

    Computed as :math:`\sum_i p_i \log(p_i/q_i) - p_i + q_i`, whose terms are
    each non-negative: the result is never below 0, even when P ≈ Q.

    Returns:
      The broadcast shape reduced over ``axis``, ``>= 0``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.kl_divergence_from_logits(jnp.array([0.0, -jnp.inf]), jnp.array([0.0, 0.0]), base=2)
      Array(1., dtype=float32)
    """
    p_logits, q_logits, axes = _inputs.logit_pair(p_logits, q_logits, axis=axis, where=where)
    value = _kl_of_logits(p_logits, q_logits, axes)
    return in_base(_inputs.nan_where_nan(value, [p_logits, q_logits], axes), base)
