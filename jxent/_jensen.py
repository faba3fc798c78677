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


def _safe_log(x):
    """log x, -inf at 0, with a derivative that is 0 (not NaN) wherever it is masked."""
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1.0)), -jnp.inf)


def _log_mixture(log_p, log_q, beta):
    """log(βp + (1-β)q) in log space: a mixture whose βp underflows keeps its size.
    Where both are 0 it is -inf, with inputs made safe so that derivatives stay finite."""
    both_zero = (log_p == -jnp.inf) & (log_q == -jnp.inf)
    log_p = jnp.where(both_zero | (beta == 0), 0.0, log_p)
    log_q = jnp.where(both_zero | (beta == 1), 0.0, log_q)
    mixed = jnp.logaddexp(_safe_log(beta) + log_p, _safe_log(1 - beta) + log_q)
    return jnp.where(both_zero, -jnp.inf, mixed)


def _weighted_log_ratio(weight, a, log_a, log_m):
    """w·a·log(a/m), 0 where a = 0 or w = 0 (inputs made safe there, so that no
    derivative of any order meets 0 · inf)."""
    keep = (log_a > -jnp.inf) & (weight != 0)
    ratio = jnp.where(keep, log_a, 0.0) - jnp.where(keep, log_m, 0.0)
    return jnp.where(keep, weight * a * ratio, 0.0)


def _share(weight, a, log_a, log_m, m):
    """w·(a log(a/m) - a + m) >= 0, the log ratio read from the logs; w·m at a = 0."""
    present = log_a > -jnp.inf
    x = jnp.where(present, log_a, 0.0) - jnp.where(present, log_m, 0.0)
    excess = prim.log_ratio_excess(jnp.where(present, a, 1.0), m, x, jnp.ones((), a.dtype))
    return zero_safe_mul(weight, jnp.where(present, excess, m))


def _skew_js_value(p, q, log_p, log_q, beta):
    """One class's share of β·D(P‖M) + (1-β)·D(Q‖M), M = βP + (1-β)Q (β = ½: JS).

    Summed as β·(p log(p/m) - p + m) + (1-β)·(q log(q/m) - q + m): the -p + m and
    -q + m cancel exactly in the weighted sum, and each part is >= 0, so the term
    is never negative (β p log(p/m) + (1-β) q log(q/m) is a difference of two
    numbers when p ≈ q). The mixture and the ratios are taken in log space.
    """
    log_m = _log_mixture(log_p, log_q, beta)
    m = jnp.exp(log_m)
    return _share(beta, p, log_p, log_m, m) + _share(1 - beta, q, log_q, log_m, m)


def _beta_slope(p, q, log_p, log_q, log_m):
    """d/dβ per class: D(P‖M) - D(Q‖M) less (p - q) from M's own change."""
    one = jnp.ones_like(p)
    return (
        _weighted_log_ratio(one, p, log_p, log_m)
        - _weighted_log_ratio(one, q, log_q, log_m)
        - (p - q)
    )


def _scaled(p, q, beta):
    """(p·s, q·s, m·s, s) with s a power of two that keeps the mixture
    m = βp + (1-β)q off the subnormals (flushed to 0 on CPU) when both are tiny;
    ratios are unchanged."""
    tiny = jax.lax.stop_gradient(jnp.maximum(p, q) < 2.0**-60)
    scale = jnp.where(tiny, 2.0**64, 1.0).astype(p.dtype)
    p, q = p * scale, q * scale
    return p, q, beta * p + (1 - beta) * q, scale


def _skew_js_slope(weight, a, mixture):
    # d/da of w·a log(a/m) + (terms through m) is w log(a/m). At a = m = 0 the
    # term is homogeneous of degree one in (a, b): along a alone m = w a, so
    # the slope is -w log w (½ log 2 for JS, 0 at w = 0).
    both_zero = (a == 0) & (mixture == 0)
    safe_a = jnp.where(both_zero, 1.0, a)
    safe_mixture = jnp.where(both_zero, 1.0, mixture)
    slope = zero_safe_mul(weight, prim.log_ratio(safe_a, safe_mixture))
    return jnp.where(both_zero, -prim.xlogx_term(weight), slope)


@jax.custom_jvp
def _skew_js_term(p: jax.Array, q: jax.Array, beta: jax.Array) -> jax.Array:
    """:func:`_skew_js_value` of probabilities (derivatives with respect to them)."""
    return _skew_js_value(p, q, _safe_log(p), _safe_log(q), beta)


def _skew_js_term_jvp(primals, tangents):
    (p, q, beta), (dp, dq, d_beta) = primals, tangents
    value = _skew_js_term(p, q, beta)
    p_s, q_s, mixture, scale = _scaled(p, q, beta)
    tangent = jnp.zeros_like(value)
    if not isinstance(dp, SymbolicZero):
        tangent = tangent + zero_safe_mul(dp, _skew_js_slope(beta, p_s, mixture))
    if not isinstance(dq, SymbolicZero):
        tangent = tangent + zero_safe_mul(dq, _skew_js_slope(1 - beta, q_s, mixture))
    if not isinstance(d_beta, SymbolicZero):
        # d/dβ = D(P‖M) - D(Q‖M) per class, minus (p - q) from M's own change.
        relative = prim.rel_entr(p_s, mixture) - prim.rel_entr(q_s, mixture)
        slope = relative / scale - (p - q)
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
    beta = _weight(beta, log_p.shape, axes, log_p.dtype)
    value = jnp.sum(_skew_js_of_logs(log_p, log_q, beta), axis=axes)
    # A row with no class left in P or in Q (all -inf or masked) is empty: 0.
    empty = jnp.all(log_p == -jnp.inf, axis=axes) | jnp.all(log_q == -jnp.inf, axis=axes)
    return in_base(jnp.where(empty, 0.0, value), base)


@jax.custom_jvp
def _skew_js_of_logs(log_p: jax.Array, log_q: jax.Array, beta: jax.Array) -> jax.Array:
    """:func:`_skew_js_value` of log-probabilities, differentiated with respect to
    them: a zero probability (log -inf) gets slope 0 in every mode and order."""
    return _skew_js_value(jnp.exp(log_p), jnp.exp(log_q), log_p, log_q, beta)


@_skew_js_of_logs.defjvp
def _skew_js_of_logs_jvp(primals, tangents):
    (log_p, log_q, beta), (d_log_p, d_log_q, d_beta) = primals, tangents
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    log_m = _log_mixture(log_p, log_q, beta)
    # d/d log p = p · β log(p/m), d/d log q = q · (1-β) log(q/m).
    tangent = _weighted_log_ratio(beta, p, log_p, log_m) * d_log_p
    tangent = tangent + _weighted_log_ratio(1 - beta, q, log_q, log_m) * d_log_q
    tangent = tangent + zero_safe_mul(d_beta, _beta_slope(p, q, log_p, log_q, log_m))
    return _skew_js_of_logs(log_p, log_q, beta), tangent
