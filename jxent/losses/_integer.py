"""Softmax cross-entropy with integer labels, with a one-hot-free derivative.

The same rule serves the vocab-parallel loss: with an ``axis_name``, the
logits are this device's slice of the vocabulary and every per-row reduction
is completed by a collective over that axis (a ``pmax`` and ``psum`` of
per-row vectors, never the logits).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .. import _validation
from .._checks import as_float_array, label_status
from ._classes import Axis, classes_last


class Options(NamedTuple):
    ignore_index: int | None = None
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    axis_name: str | tuple[str, ...] | None = None


def all_max(x: jax.Array, axis_name) -> jax.Array:
    return x if axis_name is None else jax.lax.pmax(x, axis_name)


def all_sum(x: jax.Array, axis_name) -> jax.Array:
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def first_class(num_local: int, axis_name) -> jax.Array | int:
    """Index in the full vocabulary of this shard's first class."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name) * num_local


def total_classes(num_local: int, axis_name) -> int:
    return num_local if axis_name is None else num_local * jax.lax.axis_size(axis_name)


class _Forward(NamedTuple):
    loss: jax.Array
    masked: jax.Array  # logits with masked classes at -inf
    shifted_exp: jax.Array  # exp(z - row max), reused by the derivative
    total: jax.Array  # Σ exp(z - row max) over the row (1 for an empty row)
    lse: jax.Array
    local_labels: jax.Array  # label minus this shard's first class
    label_weight: jax.Array
    zero: jax.Array  # rows with loss 0 and gradient 0
    invalid: jax.Array  # rows with NaN loss and gradient
    count: jax.Array | None  # unmasked classes per row (with smoothing)
    total_weight: jax.Array | None  # Σ_j w_j over unmasked classes (with smoothing)


def _forward(logits, labels, weights, mask, options: Options) -> _Forward:
    axis_name, smoothing = options.axis_name, options.label_smoothing
    num_local = logits.shape[-1]
    masked = logits if mask is None else jnp.where(mask, logits, -jnp.inf)
    peak = all_max(jnp.max(masked, axis=-1), axis_name)
    peak = jnp.where(peak == -jnp.inf, 0, peak)
    # The one exp pass: the derivative's softmax reuses it.
    shifted_exp = jnp.exp(masked - peak[..., None])
    total = all_sum(jnp.sum(shifted_exp, axis=-1), axis_name)
    empty = total == 0
    total = jnp.where(empty, 1, total)
    lse = peak + jnp.log(total)

    num_classes = total_classes(num_local, axis_name)
    ignored, invalid = label_status(labels, num_classes, options.ignore_index)
    local_labels = labels - first_class(num_local, axis_name)
    here = (local_labels >= 0) & (local_labels < num_local)
    index = jnp.where(here, local_labels, 0)[..., None]
    # Like optax, the label's own logit is read unmasked.
    label_logit = all_sum(
        jnp.where(here, jnp.take_along_axis(logits, index, axis=-1)[..., 0], 0), axis_name
    )
    if weights is None:
        label_weight = jnp.ones_like(lse)
    else:
        picked = jnp.take_along_axis(jnp.broadcast_to(weights, logits.shape), index, axis=-1)
        label_weight = all_sum(jnp.where(here, picked[..., 0], 0), axis_name)
    loss = (1 - smoothing) * label_weight * (lse - label_logit)

    count = total_weight = None
    if smoothing:
        unmasked = jnp.ones(logits.shape, bool) if mask is None else mask
        class_weight = jnp.ones_like(logits) if weights is None else weights
        # Masked classes (lse - z = +inf) are zeroed before the weights multiply
        # them: w * inf would make reverse-mode d/dw 0 * inf = NaN (second order).
        gap = jnp.where(unmasked, lse[..., None] - masked, 0)
        gap = jnp.where(class_weight != 0, class_weight * gap, 0)
        count = jnp.maximum(all_sum(jnp.sum(unmasked, axis=-1), axis_name), 1).astype(lse.dtype)
        total_weight = all_sum(jnp.sum(jnp.where(unmasked, class_weight, 0), axis=-1), axis_name)
        loss = loss + smoothing / count * all_sum(jnp.sum(gap, axis=-1), axis_name)
    if options.z_loss:
        loss = loss + options.z_loss * lse**2

    zero = empty | ignored
    loss = jnp.where(invalid, jnp.nan, jnp.where(zero, 0, loss))
    return _Forward(
        loss,
        masked,
        shifted_exp,
        total,
        lse,
        local_labels,
        label_weight,
        zero,
        invalid,
        count,
        total_weight,
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def integer_cross_entropy(logits, labels, weights, mask, options: Options):
    """The loss on ``[..., K]`` logits (a vocabulary shard with an axis name)."""
    return _forward(logits, labels, weights, mask, options).loss


def _integer_cross_entropy_jvp(options: Options, primals, tangents):
    logits, _, weights, mask = primals
    d_logits, _, d_weights, _ = tangents
    fwd = _forward(*primals, options)
    smoothing = options.label_smoothing
    is_label = jnp.arange(logits.shape[-1]) == fwd.local_labels[..., None]
    probs = fwd.shifted_exp / fwd.total[..., None]
    # d loss / d z_j = c p_j - (1-α) w_k [j = k] - (α/K) w_j [j unmasked]:
    # a select against the label, never a one-hot array or a scatter.
    coefficient = (1 - smoothing) * fwd.label_weight + 2 * options.z_loss * fwd.lse
    grad = coefficient[..., None] * probs
    if smoothing:
        coefficient = coefficient + smoothing / fwd.count * fwd.total_weight
        unmasked = True if mask is None else mask
        class_weight = 1.0 if weights is None else weights
        smooth_weights = jnp.where(unmasked, class_weight, 0) * (smoothing / fwd.count)[..., None]
        grad = coefficient[..., None] * probs - smooth_weights
    grad = jnp.where(is_label, grad - ((1 - smoothing) * fwd.label_weight)[..., None], grad)
    grad = jnp.where(fwd.zero[..., None], 0, grad)
    grad = jnp.where(fwd.invalid[..., None], jnp.nan, grad)

    tangent = jnp.zeros_like(fwd.loss)
    if not isinstance(d_logits, SymbolicZero):
        tangent = jnp.sum(grad * d_logits, axis=-1)
    if weights is not None and not isinstance(d_weights, SymbolicZero):
        gap = fwd.lse[..., None] - fwd.masked
        per_class = jnp.where(is_label, (1 - smoothing) * gap, 0)
        if smoothing:
            unmasked = True if mask is None else mask
            per_class = per_class + jnp.where(unmasked, smoothing / fwd.count[..., None] * gap, 0)
        per_class = jnp.where(fwd.zero[..., None], 0, per_class)
        tangent = tangent + jnp.sum(per_class * d_weights, axis=-1)
    tangent = all_sum(tangent, options.axis_name)
    return fwd.loss, jnp.where(fwd.invalid, jnp.nan, tangent)


integer_cross_entropy.defjvp(_integer_cross_entropy_jvp, symbolic_zeros=True)


def check_arguments(logits, labels, *, label_smoothing, class_weights=None):
    """Shared trace-time checks of the integer-label losses."""
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels of shape {labels.shape} do not match the logits' batch shape "
            f"{logits.shape[:-1]} (logits flattened to {logits.shape})"
        )
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if class_weights is None:
        return None
    weights = as_float_array(class_weights, "class_weights").astype(logits.dtype)
    if weights.shape != logits.shape[-1:]:
        raise ValueError(
            f"class_weights of shape {weights.shape} must be [{logits.shape[-1]}] "
            f"for logits of shape {logits.shape}"
        )
    return weights


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
    logits, mask = classes_last(logits, axis, where, "logits")
    weights = check_arguments(
        logits, labels, label_smoothing=label_smoothing, class_weights=class_weights
    )
    _validation.check_no_nan(logits, "logits")
    _validation.check_labels(labels, logits.shape[-1], ignore_index)
    options = Options(ignore_index, float(label_smoothing), float(z_loss))
    return integer_cross_entropy(logits, labels, weights, mask, options)
