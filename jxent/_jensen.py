"""The generalised (skew) Jensen–Shannon divergence."""

import jax
import jax.numpy as jnp

from . import _inputs
from . import _primitives as prim
from ._arguments import Axis
from ._units import in_base


def _weight(beta, shape, axes, dtype) -> jax.Array:
    """β checked against [0, 1] and broadcast over the classes."""
    beta = _inputs.parameter(
        beta,
        "beta",
        domain="in [0, 1]",
        inside=lambda b: (b >= 0) & (b <= 1),
        shape=shape,
        axes=axes,
        dtype=dtype,
    )
    return jnp.broadcast_to(jnp.expand_dims(beta, axes), shape)


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

    Each class's share is ≥ 0 and summed as such, so the result is never
    negative. The inputs are used as given, never renormalised (β = ½ is
    :func:`js_divergence` on any input).

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      beta: weight of P in the mixture, in [0, 1]; broadcastable to the
        result. A concrete value outside raises ValueError; a traced one
        gives NaN (an error under the validation mode).
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``, between 0 and the binary
      entropy of β for distributions; NaN for a negative or NaN probability.

    References:
      Agarwal et al., `On-Policy Distillation of Language Models
      <https://arxiv.org/abs/2306.13649>`_, 2024.

    Examples:
      >>> import jxent
      >>> float(jxent.generalized_js_divergence([1.0, 0.0], [0.0, 1.0], 0.5, base=2))
      1.0
    """
    dist = _inputs.probabilities([p, q], ["p", "q"], axis=axis, where=where, fill=[0.0, 0.0])
    p, q = dist.arrays
    beta = _weight(beta, p.shape, dist.axes, p.dtype)
    return dist.finish(dist.total(prim.skew_js_term(p, q, beta)), base)


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
      beta: weight of P in the mixture, in [0, 1] (see
        :func:`generalized_js_divergence`).
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
    log_p, log_q, axes = _inputs.log_softmax_pair(p_logits, q_logits, axis=axis, where=where)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    beta = _weight(beta, p.shape, axes, p.dtype)
    return in_base(jnp.sum(prim.skew_js_term(p, q, beta), axis=axes), base)
