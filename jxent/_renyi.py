"""Rényi entropy and divergence, continuous through α = 1 and exact at 0 and ∞.

Both are written as a cumulant generating function divided by ε = α − 1:

  H_α(P) = -K(ε)/ε,  K(ε) = log E_P[e^{ε log p}]
  D_α(P‖Q) = K(ε)/ε,  K(ε) = log E_P[e^{ε log(p/q)}]

Away from α = 1 that is a log-sum-exp. Near it, K(ε)/ε = U·ψ(εU) with
U = E[x·φ(εx)], φ(x) = expm1(x)/x and ψ(y) = log1p(y)/y, which has no 0/0 and
a finite derivative in α at α = 1, where it is Shannon's entropy or KL.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ._checks import (
    as_float_array,
    broadcast_pair,
    class_mask,
    in_base,
    normalize_axis,
    per_distribution,
)
from ._measures import _masked_logits, paired_log_softmax
from ._primitives import log_softmax
from ._zero_safe import zero_safe_mul

Axis = int | Sequence[int]

# |α - 1| below this uses the series form; above it, the log-sum-exp.
_SERIES_RADIUS = 0.25


def _exprel(x: jax.Array) -> jax.Array:
    """expm1(x) / x, 1 at 0, with an accurate derivative near 0."""
    small = jnp.abs(x) < 1e-2
    safe = jnp.where(small, 1.0, x)
    series = 1 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x / 720))))
    return jnp.where(small, series, jnp.expm1(safe) / safe)


def _log1p_ratio(y: jax.Array) -> jax.Array:
    """log1p(y) / y, 1 at 0, with an accurate derivative near 0."""
    small = jnp.abs(y) < 1e-2
    safe = jnp.where(small, 1.0, y)
    series = 1 - y * (1 / 2 - y * (1 / 3 - y * (1 / 4 - y * (1 / 5 - y / 6))))
    return jnp.where(small, series, jnp.log1p(safe) / safe)


def _log_sum_exp(x: jax.Array, keep: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """log Σ exp(x) over ``keep``; -inf when nothing is kept or every term is -inf."""
    x = jnp.where(keep, x, -jnp.inf)
    peak = jnp.max(x, axis=axes, keepdims=True)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0))
    total = jnp.sum(jnp.where(keep, jnp.exp(x - peak), 0), axis=axes)
    return jnp.squeeze(peak, axes) + jnp.log(total)


def _cumulant_ratio(log_weights, values, alpha, keep, axes):
    """K(ε)/ε with K(ε) = log Σ_keep w e^{ε x}, ε = α - 1, w = exp(log_weights).

    Rényi entropy is -K/ε with x = log p; Rényi divergence is K/ε with
    x = log(p/q). ``x = +inf`` (q = 0 on P's support) is allowed.
    """
    epsilon = alpha - 1
    near_one = jnp.abs(epsilon) < _SERIES_RADIUS
    infinite = jnp.isinf(alpha)
    finite_x = jnp.isfinite(values) & keep
    safe_x = jnp.where(finite_x, values, 0.0)
    weights = jnp.where(keep, jnp.exp(jnp.where(keep, log_weights, 0.0)), 0.0)

    # Series form near α = 1: K/ε = U ψ(εU), U = Σ w x φ(εx). For x = +inf,
    # x φ(εx) = expm1(εx)/ε is +inf when ε >= 0 and -1/ε when ε < 0.
    eps_near = jnp.where(near_one, epsilon, 0.0)
    eps_cols = jnp.expand_dims(eps_near, axes)
    negative_eps = jnp.where(eps_cols < 0, eps_cols, -1.0)
    scaled = jnp.where(
        finite_x,
        safe_x * _exprel(eps_cols * safe_x),
        jnp.where(eps_cols < 0, -1 / negative_eps, jnp.inf),
    )
    mean = jnp.sum(zero_safe_mul(weights, jnp.where(keep, scaled, 0.0)), axis=axes)
    finite_mean = jnp.isfinite(mean)
    safe_mean = jnp.where(finite_mean, mean, 0.0)
    series = jnp.where(finite_mean, safe_mean * _log1p_ratio(eps_near * safe_mean), mean)

    # Log-sum-exp form away from α = 1 (α = 0 included).
    eps_far = jnp.where(near_one | infinite, 1.0, epsilon)
    eps_far_cols = jnp.expand_dims(eps_far, axes)
    exponent = jnp.where(
        finite_x,
        jnp.where(keep, log_weights, 0.0) + eps_far_cols * safe_x,
        jnp.where(eps_far_cols > 0, jnp.inf, -jnp.inf),
    )
    direct = _log_sum_exp(exponent, keep, axes) / eps_far
    # When K is near 0 its log-sum-exp, the log of a sum near 1, loses the
    # digits of the result: K = log1p(Σ w expm1(εx) / Σ w) keeps them.
    lifted = jnp.where(
        finite_x, eps_far_cols * safe_x, jnp.where(eps_far_cols > 0, jnp.inf, -jnp.inf)
    )
    bounded = lifted < 50
    safe_lifted = jnp.where(bounded, lifted, 0.0)
    excess = jnp.sum(
        zero_safe_mul(weights, jnp.where(keep, jnp.expm1(safe_lifted), 0.0)), axis=axes
    )
    total = jnp.sum(weights, axis=axes)
    ratio = excess / jnp.where(total > 0, total, 1.0)
    use_log1p = jnp.all(bounded | ~keep, axis=axes) & (jnp.abs(ratio) < 0.5)
    direct = jnp.where(use_log1p, jnp.log1p(jnp.where(use_log1p, ratio, 0.0)) / eps_far, direct)

    # α = ∞: the largest x.
    extreme = jnp.max(jnp.where(keep, values, -jnp.inf), axis=axes)
    value = jnp.where(near_one, series, jnp.where(infinite, extreme, direct))
    # An empty distribution (nothing kept) has Rényi entropy 0.
    return jnp.where(jnp.any(keep, axis=axes), value, 0.0)


def _log_probs(probs: jax.Array, axes, mask) -> tuple[jax.Array, jax.Array]:
    """Normalised log-probabilities (0 off the support) and the support."""
    if mask is not None:
        probs = jnp.where(mask, probs, 0.0)
    support = probs > 0
    if mask is not None:
        support &= mask
    total = jnp.sum(probs, axis=axes, keepdims=True)
    log_total = jnp.log(jnp.where(total > 0, total, 1.0))
    safe = jnp.where(support, probs, 1.0)
    return jnp.where(support, jnp.log(safe) - log_total, 0.0), support


def _nan_for_negative(value, probs, axes):
    return jnp.where(jnp.any(probs < 0, axis=axes), jnp.nan, value)


def renyi_entropy(
    probs: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi entropy of order α.

    .. math::
      H_\alpha(P) = \frac{1}{1-\alpha} \log \sum_i p_i^\alpha

    Continuous through α = 1 (Shannon entropy) with a finite derivative in α
    there; α = 0 gives the log of the support size, α = 2 the collision
    entropy, α = ∞ the min-entropy :math:`-\log \max_i p_i`. ``alpha`` may be
    a traced array (learned, or swept with ``vmap``); terms with
    :math:`p_i = 0` drop out. The distribution is taken as normalised.

    Args:
      probs: probabilities, classes along ``axis``.
      alpha: order, ``>= 0`` (``jnp.inf`` allowed); broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      ``probs`` reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> p = jnp.array([0.5, 0.25, 0.25, 0.0])
      >>> [round(float(jxent.renyi_entropy(p, a, base=2)), 4) for a in (0.0, 1.0, 2.0, jnp.inf)]
      [1.585, 1.5, 1.415, 1.0]
    """
    probs = as_float_array(probs, "probs")
    axes = normalize_axis(axis, probs.ndim)
    mask = class_mask(where, probs.shape)
    log_p, support = _log_probs(probs, axes, mask)
    alpha = per_distribution(alpha, "alpha", probs.shape, axes, probs.dtype)
    value = -_cumulant_ratio(log_p, log_p, alpha, support, axes)
    return in_base(_nan_for_negative(value, probs, axes), base)


def renyi_divergence(
    p: jax.typing.ArrayLike,
    q: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi divergence of order α.

    .. math::
      D_\alpha(P \| Q) = \frac{1}{\alpha-1} \log \sum_i p_i^\alpha q_i^{1-\alpha}

    Continuous through α = 1 (KL divergence) with a finite derivative in α
    there; α = 0 gives :math:`-\log Q(\mathrm{supp}\, P)`, α = ∞ the
    max-divergence :math:`\log \max_i p_i/q_i`. Non-negative and
    non-decreasing in α; ``+inf`` for α ≥ 1 when Q misses P's support.

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      alpha: order, ``>= 0`` (``jnp.inf`` allowed); broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.renyi_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]), 2.0, base=2))
      1.0
    """
    p, q = broadcast_pair(as_float_array(p, "p"), as_float_array(q, "q"), ("p", "q"))
    axes = normalize_axis(axis, p.ndim)
    mask = class_mask(where, p.shape)
    log_p, support = _log_probs(p, axes, mask)
    log_q, q_support = _log_probs(q, axes, mask)
    log_ratio = jnp.where(q_support, log_p - log_q, jnp.inf)
    alpha = per_distribution(alpha, "alpha", p.shape, axes, p.dtype)
    value = _cumulant_ratio(log_p, log_ratio, alpha, support, axes)
    value = _nan_for_negative(_nan_for_negative(value, p, axes), q, axes)
    return in_base(value, base)


def renyi_entropy_from_logits(
    logits: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi entropy of order α of :math:`\mathrm{softmax}(z)`.

    See :func:`renyi_entropy`; ``-inf`` logits and masked classes are outside
    the support.

    Args:
      logits: unnormalised log-probabilities.
      alpha: order, ``>= 0``; broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from the softmax).
      base: logarithm base; None means nats.

    Returns:
      ``logits`` reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.renyi_entropy_from_logits(jnp.array([0.0, 0.0, -jnp.inf]), 3.0, base=2))
      1.0
    """
    logits, axes = _masked_logits(logits, "logits", axis=axis, where=where)
    log_p = log_softmax(logits, axes)
    support = log_p > -jnp.inf
    alpha = per_distribution(alpha, "alpha", logits.shape, axes, logits.dtype)
    log_p = jnp.where(support, log_p, 0.0)
    return in_base(-_cumulant_ratio(log_p, log_p, alpha, support, axes), base)


def renyi_divergence_from_logits(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi divergence of order α between two softmax distributions.

    See :func:`renyi_divergence`.

    Args:
      p_logits: logits of P.
      q_logits: logits of Q, broadcastable with ``p_logits``.
      alpha: order, ``>= 0``; broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from both softmaxes).
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> d = jxent.renyi_divergence_from_logits(jnp.array([0.0, -jnp.inf]), jnp.zeros(2), 0.5)
      >>> round(float(d), 6)  # log 2: Q puts half its mass on P's support
      0.693147
    """
    log_p, log_q, axes = paired_log_softmax(p_logits, q_logits, axis=axis, where=where)
    support = log_p > -jnp.inf
    q_support = log_q > -jnp.inf
    log_ratio = jnp.where(q_support, log_p - jnp.where(q_support, log_q, 0.0), jnp.inf)
    log_ratio = jnp.where(support, log_ratio, 0.0)
    alpha = per_distribution(alpha, "alpha", log_p.shape, axes, log_p.dtype)
    log_p = jnp.where(support, log_p, 0.0)
    return in_base(_cumulant_ratio(log_p, log_ratio, alpha, support, axes), base)
