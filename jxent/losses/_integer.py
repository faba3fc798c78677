"""Softmax cross-entropy with integer labels, with a one-hot-free derivative.

The same rule serves the vocab-parallel loss: with an ``axis_name``, the
logits are this device's slice of the vocabulary and every per-row reduction
is completed by a collective over that axis (a ``pmax`` and ``psum`` of
per-row vectors, never the logits).

Every gap ``lse - z_j`` is computed as ``(peak - z_j) + log(total)``, with
``peak`` the row maximum and ``total`` the sum of ``exp(z - peak)``: ``lse``
rounded to float32 near ``|z| = 1e4`` has lost the digits of a small loss.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from .. import _validation
from .._arguments import (
    Axis,
    as_float_array,
    broadcasts_into,
    check_ignore_index,
    integer_labels,
    is_traced,
    label_status,
)
from .._collectives import AxisName, all_max, all_sum, first_class, total_classes
from ._classes import classes_last, expand_row_mask


class _IntegerCrossEntropyOptions(NamedTuple):
    """The static options of :func:`_integer_cross_entropy`."""

    ignore_index: int | None = None
    axis_name: AxisName = None


def smoothing_and_z_loss(label_smoothing, z_loss, dtype) -> tuple[jax.Array | None, ...]:
    """``label_smoothing`` (in [0, 1]) and ``z_loss`` (>= 0) as scalars of
    ``dtype``, None where statically 0 (the term is left out of the program).

    Concrete values outside their domain raise ValueError; traced ones may be
    jit arguments (a schedule) and give NaN where outside.
    """
    prepared = []
    for value, name, domain, inside in (
        (label_smoothing, "label_smoothing", "in [0, 1]", lambda a: (a >= 0) & (a <= 1)),
        (z_loss, "z_loss", "non-negative", lambda a: a >= 0),
    ):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
        value = _validation.option_in_domain(value, name, domain, inside)
        static_zero = not is_traced(value) and float(value) == 0
        prepared.append(None if static_zero else jnp.asarray(value, dtype))
    return tuple(prepared)


def class_weight_vector(
    class_weights: jax.typing.ArrayLike,
    num_classes: int,
    dtype,
    of: str,
    class_shape: tuple[int, ...] | None = None,
) -> jax.Array:
    """``class_weights`` as a ``[num_classes]`` float array of ``dtype``, one
    weight per class (PyTorch's ``weight``); any real value, traced or not.

    The flat ``[num_classes]`` is always accepted; with ``class_shape`` (the
    sizes of several class axes, in the order given) so is any shape of rank
    >= 1 that broadcasts to it, flattened in that order. ``of`` names the
    logits in the error message.

    Raises:
      TypeError: non-float weights.
      ValueError: any other shape (a scalar included).
    """
    weights = as_float_array(class_weights, "class_weights").astype(dtype)
    if weights.shape == (num_classes,):
        return weights
    if class_shape is not None and weights.ndim and broadcasts_into(weights.shape, class_shape):
        return jnp.broadcast_to(weights, class_shape).reshape(num_classes)
    expected = f"[{num_classes}]"
    if class_shape is not None:
        expected += f" or broadcast to the class shape {class_shape}"
    raise ValueError(f"class_weights of shape {weights.shape} must be {expected} for {of}")


def rest_and_count(
    logits: jax.Array, shifted_exp: jax.Array, peak: jax.Array, axis_name: AxisName = None
) -> tuple[jax.Array, jax.Array]:
    """Σ exp(z - peak) over the classes below the row's peak, and how many reach it.

    ``log Σ exp(z - peak)`` is then ``log1p(rest + count - 1)``: when the label
    is the peak, a loss of 4e-9 keeps its digits (``log(1 + rest)`` rounds it to 0).
    """
    at_peak = logits == peak[..., None]
    rest = all_sum(jnp.sum(jnp.where(at_peak, 0, shifted_exp), axis=-1), axis_name)
    count = all_sum(jnp.sum(at_peak, axis=-1, dtype=shifted_exp.dtype), axis_name)
    return rest, count


def log_total_from_rest(rest: jax.Array, count: jax.Array, empty: jax.Array) -> jax.Array:
    """``log Σ exp(z - peak)`` from :func:`rest_and_count`; 0 for an empty row."""
    return jnp.log1p(jnp.where(empty, 0, rest + (count - 1)))


class _Forward(NamedTuple):
    loss: jax.Array
    masked: jax.Array  # logits with masked classes at -inf
    shifted_exp: jax.Array  # exp(z - peak), reused by the derivative
    total: jax.Array  # Σ exp(z - peak) over the row (1 for an empty row)
    peak: jax.Array  # the row maximum (0 for an empty row)
    log_total: jax.Array
    label_gap: jax.Array  # lse - z_k, as (peak - z_k) + log(total)
    local_labels: jax.Array  # label minus this shard's first class
    label_weight: jax.Array
    zero: jax.Array  # rows with loss 0 and gradient 0
    invalid: jax.Array  # rows with NaN loss and gradient
    unmasked_count: jax.Array | None  # unmasked classes per row (with smoothing)
    total_weight: jax.Array | None  # Σ_j w_j over unmasked classes (with smoothing)
    mean_gap: jax.Array | None  # Σ_j w_j (lse - z_j) / unmasked_count (with smoothing)


def _gaps(peak, log_total, masked, mask):
    """lse - z_j per class, 0 on masked classes (where it is +inf)."""
    gap = (peak[..., None] - masked) + log_total[..., None]
    return gap if mask is None else jnp.where(mask, gap, 0)


def _forward(
    logits, labels, weights, mask, smoothing, z_loss, options: _IntegerCrossEntropyOptions
) -> _Forward:
    axis_name = options.axis_name
    num_local = logits.shape[-1]
    masked = logits if mask is None else jnp.where(mask, logits, -jnp.inf)
    # A +inf logit has no softmax: NaN, as jax.nn.log_softmax and optax give.
    masked = jnp.where(masked == jnp.inf, jnp.nan, masked)
    peak = all_max(jnp.max(masked, axis=-1), axis_name)
    empty = peak == -jnp.inf
    peak = jnp.where(empty, 0, peak)
    # The one exp pass: the derivative's softmax reuses it.
    shifted_exp = jnp.exp(masked - peak[..., None])
    total = all_sum(jnp.sum(shifted_exp, axis=-1), axis_name)
    total = jnp.where(empty, 1, total)
    log_total = log_total_from_rest(*rest_and_count(masked, shifted_exp, peak, axis_name), empty)

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
        label_weight = jnp.ones_like(peak)
    else:
        picked = jnp.take_along_axis(jnp.broadcast_to(weights, logits.shape), index, axis=-1)
        label_weight = all_sum(jnp.where(here, picked[..., 0], 0), axis_name)
    label_gap = (peak - label_logit) + log_total
    loss = label_weight * label_gap

    unmasked_count = total_weight = mean_gap = None
    if smoothing is not None:
        unmasked = jnp.ones(logits.shape, bool) if mask is None else mask
        class_weight = jnp.ones_like(logits) if weights is None else weights
        # Masked classes (gap +inf) are zeroed before the weights multiply them:
        # w * inf would make reverse-mode d/dw 0 * inf = NaN (second order).
        gap = _gaps(peak, log_total, masked, mask)
        gap = jnp.where(class_weight != 0, class_weight * gap, 0)
        unmasked_count = jnp.maximum(all_sum(jnp.sum(unmasked, axis=-1), axis_name), 1).astype(
            peak.dtype
        )
        total_weight = all_sum(jnp.sum(jnp.where(unmasked, class_weight, 0), axis=-1), axis_name)
        mean_gap = all_sum(jnp.sum(gap, axis=-1), axis_name) / unmasked_count
        # A traced smoothing of 0 adds nothing, even where a -inf logit makes
        # the uniform part +inf (0 · inf would be NaN).
        loss = (1 - smoothing) * loss + jnp.where(smoothing == 0, 0, smoothing * mean_gap)
    if z_loss is not None:
        loss = loss + z_loss * (peak + log_total) ** 2

    zero = empty | ignored
    loss = jnp.where(invalid, jnp.nan, jnp.where(zero, 0, loss))
    return _Forward(
        loss,
        masked,
        shifted_exp,
        total,
        peak,
        log_total,
        label_gap,
        local_labels,
        label_weight,
        zero,
        invalid,
        unmasked_count,
        total_weight,
        mean_gap,
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(6,))
def _integer_cross_entropy(
    logits, labels, weights, mask, smoothing, z_loss, options: _IntegerCrossEntropyOptions
):
    """The loss on ``[..., K]`` logits (a vocabulary shard with an axis name);
    ``smoothing`` and ``z_loss`` are scalars, or None for none."""
    return _forward(logits, labels, weights, mask, smoothing, z_loss, options).loss


def _is_zero(tangent) -> bool:
    return tangent is None or isinstance(tangent, SymbolicZero)


def _edges(fwd: _Forward, coefficient: jax.Array) -> jax.Array:
    """A derivative coefficient with zero rows at 0 and invalid rows at NaN, so
    that an invalid row's gradient is NaN in reverse mode too."""
    rows = (...,) + (None,) * (coefficient.ndim - fwd.zero.ndim)
    coefficient = jnp.where(fwd.zero[rows], 0, coefficient)
    return jnp.where(fwd.invalid[rows], jnp.nan, coefficient)


def _logits_coefficient(fwd: _Forward, is_label, weights, mask, smoothing, z_loss):
    """d loss / d z_j = c p_j - (1-α) w_k [j = k] - (α/K) w_j [j unmasked]:
    a select against the label, never a one-hot array or a scatter."""
    probs = fwd.shifted_exp / fwd.total[..., None]
    keep = 1 if smoothing is None else 1 - smoothing
    coefficient = keep * fwd.label_weight
    if z_loss is not None:
        coefficient = coefficient + 2 * z_loss * (fwd.peak + fwd.log_total)
    if smoothing is None:
        grad = coefficient[..., None] * probs
    else:
        coefficient = coefficient + smoothing / fwd.unmasked_count * fwd.total_weight
        unmasked = True if mask is None else mask
        class_weight = 1.0 if weights is None else weights
        smooth_weights = (
            jnp.where(unmasked, class_weight, 0) * (smoothing / fwd.unmasked_count)[..., None]
        )
        grad = coefficient[..., None] * probs - smooth_weights
    return jnp.where(is_label, grad - (keep * fwd.label_weight)[..., None], grad)


def _weights_coefficient(fwd: _Forward, is_label, mask, smoothing):
    """d loss / d w_j = (1-α) [j = k] (lse - z_j) + (α/K) [j unmasked] (lse - z_j)."""
    gap = _gaps(fwd.peak, fwd.log_total, fwd.masked, None)
    keep = 1 if smoothing is None else 1 - smoothing
    per_class = jnp.where(is_label, keep * gap, 0)
    if smoothing is not None:
        assert fwd.unmasked_count is not None, "counted whenever smoothing is on"
        unmasked = True if mask is None else mask
        per_class = per_class + jnp.where(
            unmasked, smoothing / fwd.unmasked_count[..., None] * gap, 0
        )
    return per_class


def _integer_cross_entropy_jvp(options: _IntegerCrossEntropyOptions, primals, tangents):
    logits, _, weights, mask, smoothing, z_loss = primals
    d_logits, _, d_weights, _, d_smoothing, d_z_loss = tangents
    fwd = _forward(logits, primals[1], weights, mask, smoothing, z_loss, options)
    is_label = jnp.arange(logits.shape[-1]) == fwd.local_labels[..., None]

    tangent = jnp.zeros_like(fwd.loss)
    if not _is_zero(d_logits):
        grad = _logits_coefficient(fwd, is_label, weights, mask, smoothing, z_loss)
        tangent = jnp.sum(_edges(fwd, grad) * d_logits, axis=-1)
    if weights is not None and not _is_zero(d_weights):
        per_class = _weights_coefficient(fwd, is_label, mask, smoothing)
        tangent = tangent + jnp.sum(_edges(fwd, per_class) * d_weights, axis=-1)
    tangent = all_sum(tangent, options.axis_name)
    # Per-row terms, already complete on every shard: d/dα and d/dλ.
    if smoothing is not None and not _is_zero(d_smoothing):
        assert fwd.mean_gap is not None, "computed whenever smoothing is on"
        d_alpha = fwd.mean_gap - fwd.label_weight * fwd.label_gap
        tangent = tangent + _edges(fwd, d_alpha) * d_smoothing
    if z_loss is not None and not _is_zero(d_z_loss):
        tangent = tangent + _edges(fwd, (fwd.peak + fwd.log_total) ** 2) * d_z_loss
    return fwd.loss, jnp.where(fwd.invalid, jnp.nan, tangent)


_integer_cross_entropy.defjvp(_integer_cross_entropy_jvp, symbolic_zeros=True)


def integer_loss(
    logits: jax.Array,
    labels: jax.typing.ArrayLike,
    mask: jax.Array | None,
    *,
    ignore_index: int | None,
    label_smoothing: jax.typing.ArrayLike,
    z_loss: jax.typing.ArrayLike,
    class_weights: jax.typing.ArrayLike | None = None,
    axis_name: AxisName = None,
    logits_name: str = "logits",
) -> jax.Array:
    """Check and prepare the arguments of an integer-label loss on classes-last
    ``logits`` (a vocabulary shard with an ``axis_name``), then compute it.

    The single entry of the dense loss and the vocab-parallel one.
    """
    ignore_index = check_ignore_index(ignore_index)
    labels = integer_labels(labels, logits.shape[:-1], f"the batch shape of {logits_name}")
    weights = None
    if class_weights is not None:
        weights = class_weight_vector(
            class_weights, logits.shape[-1], logits.dtype, f"{logits_name} of shape {logits.shape}"
        )
    smoothing, z_coefficient = smoothing_and_z_loss(label_smoothing, z_loss, logits.dtype)
    _validation.check_logits(logits, logits_name)
    if _validation.enabled() and labels.size:
        num_classes = total_classes(logits.shape[-1], axis_name)
        _validation.check_labels(labels, num_classes, ignore_index)
    options = _IntegerCrossEntropyOptions(ignore_index, axis_name)
    return _integer_cross_entropy(logits, labels, weights, mask, smoothing, z_coefficient, options)


def softmax_cross_entropy_with_integer_labels(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
    *,
    ignore_index: int | None = None,
    label_smoothing: jax.typing.ArrayLike = 0.0,
    z_loss: jax.typing.ArrayLike = 0.0,
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
    Each gap :math:`\mathrm{lse}(z) - z_j` is computed as
    :math:`(\max z - z_j) + \log \sum_i e^{z_i - \max z}`, so a small loss
    keeps its digits at logits of :math:`\pm 10^4` in float32.

    A drop-in for ``optax.losses.softmax_cross_entropy_with_integer_labels``.
    Labels equal to ``ignore_index`` give loss 0 and gradient 0. Any other
    label outside ``[0, K)`` (negative ones included) gives NaN loss and NaN
    gradient for that example; see :func:`jxent.checked` to make it an error.
    A row with every class masked (or every logit ``-inf``) gives 0 and
    gradient 0. A label on a class that ``where`` masks keeps its logit while
    the normaliser leaves it out, so the loss can be negative: that is
    optax's value too.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: integer labels ``[...]``; with a tuple ``axis``, a flat index
        over the class axes in the order given (as optax).
      axis: the class axis, or a tuple of axes in the order the labels index
        them.
      where: boolean mask broadcastable to ``logits`` (a class mask), or one
        of another rank, expanded at ``axis`` as optax does (a mask of the
        batch shape masks whole rows: they give 0).
      ignore_index: int label value that contributes nothing, or None.
      label_smoothing: α in [0, 1]; targets become (1-α)·one_hot + α/K. May
        be traced (a ``jit`` argument).
      z_loss: coefficient λ >= 0 of the squared log-normaliser. May be traced.
      class_weights: ``[K]`` weights, one per class.

    Returns:
      Per-example losses ``[...]`` in float32 (float64 under x64).

    Raises:
      ValueError: shapes that do not fit, an empty class axis, or a concrete
        ``label_smoothing`` or ``z_loss`` outside its domain (a traced one
        gives NaN, and an error under :func:`jxent.checked`).
      TypeError: non-integer labels, non-float logits, ``ignore_index`` that
        is not an int or None.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> logits = jnp.array([[0.0, 0.0], [0.0, -jnp.inf]])
      >>> jxent.losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, -100]),
      ...     ignore_index=-100)
      Array([0.6931472, 0.       ], dtype=float32)
    """
    logits = as_float_array(logits, "logits")
    labels = jnp.asarray(labels)
    if axis is None:
        raise ValueError("axis=None is not supported with integer labels: name the class axes")
    where = expand_row_mask(where, logits.ndim, axis)
    logits, mask = classes_last(logits, axis, where, "logits")
    return integer_loss(
        logits,
        labels,
        mask,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        class_weights=class_weights,
    )
