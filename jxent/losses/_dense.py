"""Softmax cross-entropy against probability labels, and PolyLoss."""

import jax
import jax.numpy as jnp

from .. import _primitives as prim
from .. import _validation
from .._zero_safe import zero_safe_mul
from ._classes import Axis, classes_last_pair


def _smoothed(labels: jax.Array, mask: jax.Array | None, smoothing: float) -> jax.Array:
    if not smoothing:
        return labels
    if mask is None:
        return (1 - smoothing) * labels + smoothing / labels.shape[-1]
    # The uniform part covers the unmasked classes only (K of them).
    count = jnp.sum(mask, axis=-1, keepdims=True)
    return jnp.where(mask, (1 - smoothing) * labels + smoothing / jnp.maximum(count, 1), 0)


def _prepare(logits, labels, axis, where):
    """Flatten the class axes last, mask logits to -inf and labels to 0."""
    logits, labels, mask = classes_last_pair(logits, labels, ("logits", "labels"), axis, where)
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
        labels = jnp.where(mask, labels, 0)
    _validation.check_no_nan(logits, "logits")
    _validation.check_probabilities(
        labels, "labels", axes=(-1 % labels.ndim,), mask=None, input_dtype=labels.dtype
    )
    return logits, labels, mask


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> jax.Array:
    r"""Softmax cross-entropy against probability labels, safe with ``-inf`` logits.

    .. math::
      \ell = -\sum_j t_j \log \mathrm{softmax}(z)_j + \lambda\, \mathrm{lse}(z)^2,
      \qquad t = (1-\alpha)\, y + \alpha / K

    A drop-in for ``optax.losses.softmax_cross_entropy`` (same values where
    optax's are finite). A ``-inf`` logit on a zero-label class adds 0 and gets
    gradient 0, in forward and reverse mode; a row with every class masked
    gives 0.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: target probabilities, broadcastable to ``logits``.
      axis: the class axis or axes.
      where: boolean class mask, or a per-row mask of one rank less.
      label_smoothing: α, mixing the labels with the uniform distribution over
        the K unmasked classes (optax's ``smooth_labels``).
      z_loss: coefficient λ of the squared log-normaliser (PaLM).

    Returns:
      Per-example losses, in float32 for 16-bit inputs.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.softmax_cross_entropy(jnp.array([0.0, 0.0, -jnp.inf]),
      ...     jnp.array([0.5, 0.5, 0.0]))
      Array(0.6931472, dtype=float32)
    """
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    logits, labels, mask = _prepare(logits, labels, axis, where)
    targets = _smoothed(labels, mask, float(label_smoothing))
    log_probs = prim.log_softmax(logits, (logits.ndim - 1,))
    loss = -jnp.sum(zero_safe_mul(targets, log_probs), axis=-1)
    # A row with every class masked or every logit -inf is empty: loss 0 and
    # gradient 0, whatever its labels (as the integer-label loss).
    empty = jnp.all(logits == -jnp.inf, axis=-1)
    if z_loss:
        lse = jnp.max(logits, axis=-1) - jnp.max(log_probs, axis=-1)
        loss = loss + float(z_loss) * jnp.where(empty, 0, lse) ** 2
    return jnp.where(empty, 0, loss)


safe_softmax_cross_entropy = softmax_cross_entropy


def poly_loss_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    epsilon: float = 2.0,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""PolyLoss (Poly-1): cross-entropy plus ε times the missing target mass.

    .. math::
      \ell = -\sum_j y_j \log p_j + \epsilon \sum_j y_j (1 - p_j)

    A drop-in for ``optax.losses.poly_loss_cross_entropy``, safe with ``-inf``
    logits.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: target probabilities, broadcastable to ``logits``.
      epsilon: weight of the first polynomial term.
      axis: the class axis or axes.
      where: boolean class mask.

    Returns:
      Per-example losses.

    References:
      Leng et al., `PolyLoss <https://arxiv.org/abs/2204.12511>`_, 2022.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.poly_loss_cross_entropy(jnp.zeros(2), jnp.array([1.0, 0.0]), epsilon=0.0)
      Array(0.6931472, dtype=float32)
    """
    logits, labels, _ = _prepare(logits, labels, axis, where)
    log_probs = prim.log_softmax(logits, (logits.ndim - 1,))
    cross_entropy = -jnp.sum(zero_safe_mul(labels, log_probs), axis=-1)
    missing_mass = jnp.sum(labels * (1 - jnp.exp(log_probs)), axis=-1)
    # An empty row (every class masked or every logit -inf) gives 0.
    empty = jnp.all(logits == -jnp.inf, axis=-1)
    return jnp.where(empty, 0, cross_entropy + epsilon * missing_mass)
