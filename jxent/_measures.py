"""Entropy, cross-entropy, KL and Jensen–Shannon divergence (and binary cases)."""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from . import _primitives as prim
from . import _validation
from ._checks import as_float_array, broadcast_pair, class_mask, in_base, normalize_axis
from ._zero_safe import zero_safe_mul

Axis = int | Sequence[int]


def _reduce_probs(
    term: Callable[..., jax.Array],
    arrays: Sequence[jax.Array],
    names: Sequence[str],
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
    base: float | None,
    fill: Sequence[float],
) -> jax.Array:
    """Sum an elementwise ``term`` of probability arrays over the class axes."""
    input_dtypes = [jnp.asarray(a).dtype for a in arrays]
    floats = [as_float_array(a, n) for a, n in zip(arrays, names)]
    if len(floats) == 2:
        floats = list(broadcast_pair(*floats, tuple(names)))
    shape = floats[0].shape
    axes = normalize_axis(axis, len(shape))
    mask = class_mask(where, shape)
    for a, name, dtype in zip(floats, names, input_dtypes):
        _validation.check_probabilities(a, name, axes=axes, mask=mask, input_dtype=dtype)
    # A negative probability makes the whole result NaN, never a plausible number.
    negative = [a < 0 if mask is None else mask & (a < 0) for a in floats]
    negative = jnp.any(functools.reduce(jnp.logical_or, negative), axis=axes)
    if mask is not None:
        # Masked entries are replaced by harmless values so that garbage there
        # (NaN, negatives) reaches neither the value nor the gradient.
        floats = [jnp.where(mask, a, jnp.asarray(v, a.dtype)) for a, v in zip(floats, fill)]
    terms = term(*floats)
    if mask is not None:
        terms = jnp.where(mask, terms, jnp.zeros_like(terms))
    total = jnp.where(negative, jnp.nan, jnp.sum(terms, axis=axes))
    return in_base(total, base)


def _masked_logits(
    logits: jax.typing.ArrayLike,
    name: str,
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, tuple[int, ...]]:
    """Logits with masked classes at ``-inf`` (out of the softmax), and the class axes."""
    logits = as_float_array(logits, name)
    _validation.check_no_nan(logits, name)
    axes = normalize_axis(axis, logits.ndim)
    mask = class_mask(where, logits.shape)
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    return logits, axes


def paired_log_softmax(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """Log-softmaxes of two broadcast logit arrays, masked alike, and the class axes."""
    p_logits, q_logits = broadcast_pair(
        as_float_array(p_logits, "p_logits"),
        as_float_array(q_logits, "q_logits"),
        ("p_logits", "q_logits"),
    )
    p_logits, axes = _masked_logits(p_logits, "p_logits", axis=axis, where=where)
    q_logits, _ = _masked_logits(q_logits, "q_logits", axis=axis, where=where)
    return prim.log_softmax(p_logits, axes), prim.log_softmax(q_logits, axes), axes


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
    true value) and never NaN.

    Args:
      probs: probabilities, classes along ``axis``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include, broadcastable to ``probs``.
      base: logarithm base; None means nats, 2 means bits.

    Returns:
      ``probs`` reduced over ``axis``, in float32 for 16-bit inputs.

    Examples:
      >>> import jxent
      >>> jxent.entropy([0.5, 0.5, 0.0], base=2)
      Array(1., dtype=float32)
    """
    return _reduce_probs(
        lambda p: -prim._xlogx(p), [probs], ["probs"], axis=axis, where=where, base=base, fill=[0]
    )


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
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jxent
      >>> jxent.cross_entropy([1.0, 0.0], [0.5, 0.0], base=2)
      Array(1., dtype=float32)
    """
    return _reduce_probs(
        lambda a, b: -prim._xlogy(a, b),
        [p, q],
        ["p", "q"],
        axis=axis,
        where=where,
        base=base,
        fill=[0, 1],
    )


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
      D(P \| Q) = \sum_i p_i \log \frac{p_i}{q_i} \ge 0

    Each term is computed as :math:`p_i \log(p_i / q_i)` (one rounding of the
    quotient), not as a difference of two logs that cancels when P ≈ Q.

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``; ``+inf`` where Q misses
      P's support.

    Examples:
      >>> import jxent
      >>> jxent.kl_divergence([1.0, 0.0], [0.5, 0.5], base=2)
      Array(1., dtype=float32)
    """
    return _reduce_probs(
        prim.rel_entr, [p, q], ["p", "q"], axis=axis, where=where, base=base, fill=[0, 1]
    )


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

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats (base 2 bounds it by 1).

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jxent
      >>> jxent.js_divergence([1.0, 0.0], [0.0, 1.0], base=2)
      Array(1., dtype=float32)
    """
    return _reduce_probs(
        lambda a, b: prim.skew_js_term(a, b, jnp.full_like(a, 0.5)),
        [p, q],
        ["p", "q"],
        axis=axis,
        where=where,
        base=base,
        fill=[0, 0],
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _entropy_of_logits(logits: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    log_probs = prim.log_softmax(logits, axes)
    return -jnp.sum(zero_safe_mul(jnp.exp(log_probs), log_probs), axis=axes)


@_entropy_of_logits.defjvp
def _entropy_of_logits_jvp(axes, primals, tangents):
    (logits,), (d_logits,) = primals, tangents
    log_probs = prim.log_softmax(logits, axes)
    probs = jnp.exp(log_probs)
    value = -jnp.sum(zero_safe_mul(probs, log_probs), axis=axes)
    # dH/dz_j = -p_j (log p_j + H), with p_j log p_j = 0 for empty classes.
    slope = -(zero_safe_mul(probs, log_probs) + probs * jnp.expand_dims(value, axes))
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
    logits, axes = _masked_logits(logits, "logits", axis=axis, where=where)
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
      p: target probabilities.
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
    p, q_logits = broadcast_pair(
        as_float_array(p, "p"), as_float_array(q_logits, "q_logits"), ("p", "q_logits")
    )
    q_logits, axes = _masked_logits(q_logits, "q_logits", axis=axis, where=where)
    if where is not None:
        p = jnp.where(class_mask(where, p.shape), p, jnp.zeros_like(p))
    log_q = prim.log_softmax(q_logits, axes)
    return in_base(-jnp.sum(zero_safe_mul(p, log_q), axis=axes), base)


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

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.kl_divergence_from_logits(jnp.array([0.0, -jnp.inf]), jnp.array([0.0, 0.0]), base=2)
      Array(1., dtype=float32)
    """
    log_p, log_q, axes = paired_log_softmax(p_logits, q_logits, axis=axis, where=where)
    probs = jnp.exp(log_p)
    # Where p_j = 0 the log difference may be -inf - -inf; it is multiplied by
    # zero, so replace it before it can become a NaN in either mode.
    log_diff = jnp.where(probs > 0, log_p - log_q, jnp.zeros_like(log_p))
    return in_base(jnp.sum(zero_safe_mul(probs, log_diff), axis=axes), base)
