"""Softmax cross-entropy with integer labels, with a one-hot-free derivative."""

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .. import _validation
from .._checks import as_float_array
from ._classes import Axis, classes_last


def _row_statistics(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-row log-sum-exp over the last axis, and whether the row is empty."""
    peak = jnp.max(logits, axis=-1)
    peak = jnp.where(peak == -jnp.inf, 0, peak)
    total = jnp.sum(jnp.exp(logits - peak[..., None]), axis=-1)
    empty = total == 0
    return peak + jnp.log(jnp.where(empty, 1, total)), empty


def _smoothing_terms(logits, lse, weights, mask):
    """Σ_j w_j (lse - z_j) over the unmasked classes, and their count K."""
    gap = lse[..., None] - logits
    if weights is not None:
        gap = jnp.where(weights == 0, 0, weights * gap)
    if mask is not None:
        gap = jnp.where(mask, gap, 0)
        count = jnp.sum(mask, axis=-1).astype(logits.dtype)
    else:
        count = jnp.asarray(logits.shape[-1], logits.dtype)
    return jnp.sum(gap, axis=-1), jnp.maximum(count, 1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5, 6))
def _integer_cross_entropy(logits, labels, weights, mask, ignore_index, smoothing, z_loss):
    return _forward(logits, labels, weights, mask, ignore_index, smoothing, z_loss)[0]


def _forward(logits, labels, weights, mask, ignore_index, smoothing, z_loss):
    num_classes = logits.shape[-1]
    masked = logits if mask is None else jnp.where(mask, logits, -jnp.inf)
    lse, empty = _row_statistics(masked)
    valid = (labels >= 0) & (labels < num_classes)
    safe_labels = jnp.where(valid, labels, 0)
    # Like optax, the label's own logit is read unmasked.
    label_logit = jnp.take_along_axis(logits, safe_labels[..., None], axis=-1)[..., 0]
    label_weight = jnp.ones_like(lse) if weights is None else weights[safe_labels]
    loss = (1 - smoothing) * label_weight * (lse - label_logit)
    if smoothing:
        gaps, count = _smoothing_terms(masked, lse, weights, mask)
        loss = loss + smoothing / count * gaps
    if z_loss:
        loss = loss + z_loss * lse**2
    zero = empty if ignore_index is None else empty | (labels == ignore_index)
    loss = jnp.where(zero, 0, loss)
    invalid = ~valid if ignore_index is None else ~valid & (labels != ignore_index)
    loss = jnp.where(invalid, jnp.nan, loss)
    return loss, (masked, lse, safe_labels, label_weight, zero, invalid)


def _integer_cross_entropy_jvp(ignore_index, smoothing, z_loss, primals, tangents):
    logits, labels, weights, mask = primals
    d_logits, _, d_weights, _ = tangents
    loss, (masked, lse, labels, label_weight, zero, invalid) = _forward(
        *primals, ignore_index, smoothing, z_loss
    )
    is_label = jnp.arange(logits.shape[-1]) == labels[..., None]
    probs = jnp.exp(masked - lse[..., None])
    # d loss / d z_j = c p_j - (1-α) w_k [j = k] - (α/K) w_j [j unmasked]:
    # a select against the label, never a one-hot array or a scatter.
    coefficient = (1 - smoothing) * label_weight + 2 * z_loss * lse
    smooth_weights = 0.0
    if smoothing:
        unmasked = 1.0 if mask is None else mask
        class_weight = 1.0 if weights is None else weights
        count = logits.shape[-1] if mask is None else jnp.maximum(jnp.sum(mask, axis=-1), 1)
        total_weight = (
            count if weights is None else jnp.sum(jnp.where(unmasked, weights, 0), axis=-1)
        )
        count = jnp.asarray(count, logits.dtype)
        coefficient = coefficient + smoothing / count * total_weight
        smooth_weights = smoothing / count[..., None] * jnp.where(unmasked, class_weight, 0)
    grad = coefficient[..., None] * probs - smooth_weights
    grad = jnp.where(is_label, grad - ((1 - smoothing) * label_weight)[..., None], grad)
    grad = jnp.where(zero[..., None], 0, grad)
    grad = jnp.where(invalid[..., None], jnp.nan, grad)
    tangent = jnp.zeros_like(loss)
    if not isinstance(d_logits, SymbolicZero):
        tangent = jnp.sum(grad * d_logits, axis=-1)
    if weights is not None and not isinstance(d_weights, SymbolicZero):
        gap = lse[..., None] - masked
        per_class = jnp.where(is_label, (1 - smoothing) * gap, 0)
        if smoothing:
            unmasked = True if mask is None else mask
            count = jnp.sum(jnp.broadcast_to(unmasked, gap.shape), axis=-1, keepdims=True)
            per_class = per_class + jnp.where(unmasked, smoothing / count * gap, 0)
        per_class = jnp.where(zero[..., None], 0, per_class)
        tangent = tangent + jnp.sum(per_class * d_weights, axis=-1)
    return loss, jnp.where(invalid, jnp.nan, tangent)


_integer_cross_entropy.defjvp(_integer_cross_entropy_jvp, symbolic_zeros=True)


def softmax_cross_entropy_with_integer_labels(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    *,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    class_weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Softmax cross-entropy against integer labels, safe at every edge.

    .. math::
      \ell = (1-\alpha)\, w_k (\mathrm{lse}(z) - z_k)
        + \frac{\alpha}{K} \sum_j w_j (\mathrm{lse}(z) - z_j)
        + \lambda\, \mathrm{lse}(z)^2

    with :math:`k` the label, :math:`\alpha` the label smoothing, :math:`K`
    the number of unmasked classes, :math:`w` the class weights (PyTorch's
    ``weight`` with ``reduction='none'``) and :math:`\lambda` the z-loss
    (PaLM). The derivative is :math:`c\, p_j - (1-\alpha) w_k [j = k] -
    \frac{\alpha}{K} w_j`: no one-hot array and no scatter in either mode.

    A drop-in for ``optax.losses.softmax_cross_entropy_with_integer_labels``.
    Labels equal to ``ignore_index`` give loss 0 and gradient 0. Any other
    label outside ``[0, K)`` (negative ones included) gives NaN loss and NaN
    gradient for that example; see :func:`jxent.checked` to make it an error.
    A row with every class masked (or every logit ``-inf``) gives 0 and
    gradient 0.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: integer labels ``[...]``; with a tuple ``axis``, a flat index
        into the class axes (as optax).
      axis: the class axis or axes.
      where: boolean class mask broadcastable to ``logits``, or a per-row mask
        of one rank less.
      ignore_index: label value that contributes nothing.
      label_smoothing: α; targets become (1-α)·one_hot + α/K.
      z_loss: coefficient of the squared log-normaliser.
      class_weights: ``[K]`` weights, one per class.

    Returns:
      Per-example losses ``[...]`` in float32 (float64 under x64).

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> logits = jnp.array([[0.0, 0.0], [0.0, -jnp.inf]])
      >>> jxent.losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, -100]),
      ...     ignore_index=-100)
      Array([0.6931472, 0.       ], dtype=float32)
    """
    logits = as_float_array(logits, "logits")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    logits, mask = classes_last(logits, axis, where, "logits")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels of shape {labels.shape} do not match the logits' batch shape "
            f"{logits.shape[:-1]} (logits flattened to {logits.shape})"
        )
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    weights = None
    if class_weights is not None:
        weights = as_float_array(class_weights, "class_weights").astype(logits.dtype)
        if weights.shape != logits.shape[-1:]:
            raise ValueError(
                f"class_weights of shape {weights.shape} must be [{logits.shape[-1]}] "
                f"for logits of shape {logits.shape}"
            )
    _validation.check_no_nan(logits, "logits")
    _validation.check_labels(labels, logits.shape[-1], ignore_index)
    return _integer_cross_entropy(
        logits, labels, weights, mask, ignore_index, float(label_smoothing), float(z_loss)
    )
