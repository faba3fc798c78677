"""The generalised (skew) Jensen–Shannon divergence."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from . import _primitives as prim
from ._checks import (
    as_float_array,
    broadcast_pair,
    class_mask,
    in_base,
    normalize_axis,
    per_distribution,
)
from ._measures import paired_log_softmax

Axis = int | Sequence[int]


def _reduce(p, q, beta, axes, mask, base):
    beta = per_distribution(beta, "beta", p.shape, axes, p.dtype)
    beta = jnp.broadcast_to(jnp.expand_dims(beta, axes), p.shape)
    if mask is not None:
        p, q = jnp.where(mask, p, 0.0), jnp.where(mask, q, 0.0)
    terms = prim.skew_js_term(p, q, beta)
    if mask is not None:
        terms = jnp.where(mask, terms, 0.0)
    return in_base(jnp.sum(terms, axis=axes), base)


def generalized_js_divergence(
    p: jax.typing.ArrayLike,
    q: jax.typing.ArrayLike,
    beta: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Generalised Jensen–Shannon divergence with mixing weight β.

    .. math::
      JS_\beta(P, Q) = \beta\, D(P \| M) + (1-\beta)\, D(Q \| M),
      \qquad M = \beta P + (1-\beta) Q

    The interpolating divergence of on-policy distillation (GKD); β = ½ is
    :func:`js_divergence`, and both limits β → 0 and β → 1 are exactly 0.
    ``beta`` may be a traced array; the gradient with respect to it is
    :math:`D(P\|M) - D(Q\|M)`.

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      beta: weight of P in the mixture, in [0, 1]; broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``, between 0 and the binary
      entropy of β.

    References:
      Agarwal et al., `On-Policy Distillation of Language Models
      <https://arxiv.org/abs/2306.13649>`_, 2024.

    Examples:
      >>> import jxent
      >>> float(jxent.generalized_js_divergence([1.0, 0.0], [0.0, 1.0], 0.5, base=2))
      1.0
    """
    p, q = broadcast_pair(as_float_array(p, "p"), as_float_array(q, "q"), ("p", "q"))
    axes = normalize_axis(axis, p.ndim)
    return _reduce(p, q, beta, axes, class_mask(where, p.shape), base)


def generalized_js_divergence_from_logits(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    beta: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Generalised Jensen–Shannon divergence between two softmax distributions.

    See :func:`generalized_js_divergence`.

    Args:
      p_logits: logits of P.
      q_logits: logits of Q, broadcastable with ``p_logits``.
      beta: weight of P in the mixture, in [0, 1].
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from both softmaxes).
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.generalized_js_divergence_from_logits(jnp.zeros(3), jnp.zeros(3), 0.3))
      0.0
    """
    log_p, log_q, axes = paired_log_softmax(p_logits, q_logits, axis=axis, where=where)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    return _reduce(p, q, beta, axes, None, base)
