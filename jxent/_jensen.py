"""The Jensen–Shannon family: the JS divergence, its generalised (skew) form,
and the per-class term and derivative rule they share."""

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from . import _inputs
from . import _primitives as prim
from ._arguments import Axis
from ._units import in_base
from ._zero_safe import zero_safe_mul


def _skew_js_slope(weight, p, mixture):
    # d/dp of w·p log(p/m) + (terms through m) is w log(p/m). At p = m = 0 the
    # term is homogeneous of degree one in (p, q): along p alone m = w p, so
    # the slope is -w log w (½ log 2 for JS, 0 at w = 0).
    both_zero = (p == 0) & (mixture == 0)
    safe_p = jnp.where(both_zero, 1.0, p)
    safe_mixture = jnp.where(both_zero, 1.0, mixture)
    slope = zero_safe_mul(weight, prim.log_ratio(safe_p, safe_mixture))
    return jnp.where(both_zero, -prim.xlogx_term(weight), slope)


@jax.custom_jvp
def _skew_js_term(p: jax.Array, q: jax.Array, beta: jax.Array) -> jax.Array:
    """One class's share of β·D(P‖M) + (1-β)·D(Q‖M), M = βP + (1-β)Q (β = ½: JS).

    Summed as β·kl_term(p, m) + (1-β)·kl_term(q, m): the -p + m and -q + m
    that kl_term adds cancel exactly in the weighted sum, and each part is
    >= 0, so the term is never negative (β p log(p/m) + (1-β) q log(q/m)
    is a difference of two numbers when p ≈ q).
    """
    mixture = beta * p + (1 - beta) * q
    return zero_safe_mul(beta, prim.kl_term(p, mixture)) + zero_safe_mul(
        1 - beta, prim.kl_term(q, mixture)
    )


def _skew_js_term_jvp(primals, tangents):
    (p, q, beta), (dp, dq, d_beta) = primals, tangents
    mixture = beta * p + (1 - beta) * q
    value = _skew_js_term(p, q, beta)
    tangent = jnp.zeros_like(value)
    if not isinstance(dp, SymbolicZero):
        tangent = tangent + zero_safe_mul(dp, _skew_js_slope(beta, p, mixture))
    if not isinstance(dq, SymbolicZero):
        tangent = tangent + zero_safe_mul(dq, _skew_js_slope(1 - beta, q, mixture))
    if not isinstance(d_beta, SymbolicZero):
        # d/dβ = D(P‖M) - D(Q‖M) per class, minus (p - q) from M's own change.
        slope = prim.rel_entr(p, mixture) - prim.rel_entr(q, mixture) - (p - q)
        tangent = tangent + zero_safe_mul(d_beta, slope)
    return value, tangent


_skew_js_term.defjvp(_skew_js_term_jvp, symbolic_zeros=True)


def js_divergence(
    p: jax.typing.ArrayLike,
    q: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Jensen–Shannon divergence, symmetric and bounded by :math:`\log 2`.

    .. math::
      JS(P, Q) = \tfrac12 D(P \| M) + \tfrac12 D(Q \| M), \quad M = \tfrac12 (P + Q)

    Each class's share is ≥ 0 and summed as such, so the result is never
    negative. On values that do not sum to 1 the formula is applied as given.

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats (base 2 bounds it by 1).

    Returns:
      The broadcast shape reduced over ``axis``; NaN for a negative or NaN
      probability.

    Examples:
      >>> import jxent
      >>> jxent.js_divergence([1.0, 0.0], [0.0, 1.0], base=2)
      Array(1., dtype=float32)
    """
    dist = _inputs.probabilities([p, q], ["p", "q"], axis=axis, where=where, fill=[0.0, 0.0])
    p, q = dist.arrays
    return dist.finish(dist.total(_skew_js_term(p, q, jnp.full_like(p, 0.5))), base)


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
    return dist.finish(dist.total(_skew_js_term(p, q, beta)), base)


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
    return in_base(jnp.sum(_skew_js_term(p, q, beta), axis=axes), base)
