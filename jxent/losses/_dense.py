"""Softmax cross-entropy against probability labels, and PolyLoss."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import _primitives as prim
from .. import _validation
from .._arguments import Axis, as_float_array, axes_in_order
from .._zero_safe import zero_safe_mul
from ._classes import classes_last_pair, expand_row_mask
from ._integer import class_weight_vector, smoothing_and_z_loss


def _smoothed(labels: jax.Array, mask: jax.Array | None, smoothing) -> jax.Array:
    if smoothing is None:
        return labels
    if mask is None:
        return (1 - smoothing) * labels + smoothing / labels.shape[-1]
    # The uniform part covers the unmasked classes only (K of them).
    count = jnp.sum(mask, axis=-1, keepdims=True)
    return jnp.where(mask, (1 - smoothing) * labels + smoothing / jnp.maximum(count, 1), 0)


def _prepare(logits, labels, axis, where):
    """Flatten the class axes last, mask logits to -inf and labels to 0.

    Integer or boolean labels (0/1 targets) become floats, as optax's product
    promotes them."""
    logits = as_float_array(logits, "logits")
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_:
        labels = labels.astype(logits.dtype)
    logits, labels, mask = classes_last_pair(logits, labels, ("logits", "labels"), axis, where)
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
        labels = jnp.where(mask, labels, 0)
    return logits, labels, mask


def _validate(logits: jax.Array, labels: jax.Array, empty: jax.Array) -> None:
    _validation.check_logits(logits, "logits")
    if _validation.enabled():
        # A row that `where` masks whole holds no distribution to check.
        labels = jnp.where(empty[..., None], 1 / labels.shape[-1], labels)
        _validation.check_probabilities(
            labels, "labels", axes=(labels.ndim - 1,), mask=None, input_dtype=labels.dtype
        )


def _weights(class_weights, logits_shape, labels_shape, axis, dtype) -> jax.Array:
    """``class_weights`` as ``[K]``: the flat K, or a shape that broadcasts to
    the class axes (in the order given) of the broadcast inputs."""
    shape = np.broadcast_shapes(logits_shape, labels_shape)
    class_shape = tuple(shape[a] for a in axes_in_order(axis, len(shape)))
    num_classes = math.prod(class_shape)
    of = f"logits of shape {tuple(logits_shape)} and labels of shape {tuple(labels_shape)}"
    return class_weight_vector(class_weights, num_classes, dtype, of, class_shape)


def _cross_entropy(logits, labels, mask, smoothing, z_loss, weights=None):
    """(loss, log-probabilities, empty rows) of prepared ``[..., K]`` arrays;
    ``weights`` ``[K]`` or None."""
    targets = _smoothed(labels, mask, smoothing)
    log_probs = prim.log_softmax(logits, (logits.ndim - 1,))
    if weights is None:
        terms = zero_safe_mul(targets, log_probs)
    else:
        # w_c log p_c first, then times t_c, each product zero-safe: a -inf
        # logit under a zero target or a zero weight adds 0, and no derivative
        # is NaN there (d/dt = -w log p is 0 under a zero weight, +inf under
        # another: its true value; d/dw = -t log p likewise). (t w) log p
        # would give d/dt = w (inf) = NaN at w = 0. A masked class's weight is
        # never read.
        if mask is not None:
            weights = jnp.where(mask, weights, 0)
        terms = zero_safe_mul(targets, zero_safe_mul(weights, log_probs))
    loss = -jnp.sum(terms, axis=-1)
    # A row with every class masked or every logit -inf is empty: loss 0 and
    # gradient 0, whatever its labels (as the integer-label loss).
    empty = jnp.all(logits == -jnp.inf, axis=-1)
    if z_loss is not None:
        lse = jnp.max(logits, axis=-1) - jnp.max(log_probs, axis=-1)
        loss = loss + z_loss * jnp.where(empty, 0, lse) ** 2
    return jnp.where(empty, 0, loss), log_probs, empty


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
    *,
    label_smoothing: jax.typing.ArrayLike = 0.0,
    z_loss: jax.typing.ArrayLike = 0.0,
    class_weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Softmax cross-entropy against probability labels, safe with ``-inf`` logits.

    .. math::
      \ell = -\sum_j w_j\, t_j \log \mathrm{softmax}(z)_j + \lambda\, \mathrm{lse}(z)^2,
      \qquad t = (1-\alpha)\, y + \alpha / K

    with :math:`y` the labels, :math:`\alpha` the label smoothing, :math:`K`
    the number of unmasked classes, :math:`w` the class weights (all 1 by
    default) and :math:`\lambda` the z-loss (PaLM), which the weights leave
    alone. With weights this is PyTorch's ``F.cross_entropy(input,
    target_probs, weight=w, label_smoothing=α, reduction='none')``: the
    targets are smoothed first, then weighted. The loss is linear in the
    labels: :math:`\partial \ell / \partial y_j = -(1-\alpha)\, w_j \log
    \mathrm{softmax}(z)_j`.

    A drop-in for ``optax.losses.softmax_cross_entropy`` (same values where
    optax's are finite). A ``-inf`` logit on a zero-label class (or under a
    zero weight) adds 0 and gets gradient 0, in forward and reverse mode; a
    row with every class masked gives 0.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: target probabilities, broadcastable to ``logits``; integer or
        boolean (0/1) labels are read as floats, as optax does.
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask broadcastable to ``logits`` (a class mask), or one
        of another rank, expanded at ``axis`` as optax does (a mask of the
        batch shape masks whole rows: they give 0).
      label_smoothing: α in [0, 1], mixing the labels with the uniform
        distribution over the K unmasked classes (optax's ``smooth_labels``).
        May be traced (a ``jit`` argument).
      z_loss: coefficient λ >= 0 of the squared log-normaliser (PaLM). May
        be traced.
      class_weights: one float weight per class, PyTorch's ``weight``: a
        ``[K]`` array (with a tuple ``axis``, the flat K in the order given),
        or any array of rank >= 1 that broadcasts to the sizes of the class
        axes in the order given. Any real values, as for
        :func:`softmax_cross_entropy_with_integer_labels` (zero and negative
        weights included); masked classes' weights are not read. May be
        traced. PyTorch's ``reduction='mean'`` with probability targets is
        ``losses.mean()`` (it does not divide by the weights).

    Returns:
      Per-example losses, in float32 for 16-bit inputs.

    Raises:
      ValueError: shapes that do not fit (``class_weights`` included), an
        empty class axis, or a concrete ``label_smoothing`` or ``z_loss``
        outside its domain (a traced one gives NaN, and an error under
        :func:`jxent.checked`).
      TypeError: non-float logits or ``class_weights``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.softmax_cross_entropy(jnp.array([0.0, 0.0, -jnp.inf]),
      ...     jnp.array([0.5, 0.5, 0.0]))
      Array(0.6931472, dtype=float32)
      >>> jxent.losses.softmax_cross_entropy(jnp.array([0.0, 0.0, -jnp.inf]),
      ...     jnp.array([0.5, 0.5, 0.0]), class_weights=jnp.array([2.0, 0.0, 1.0]))
      Array(0.6931472, dtype=float32)
    """
    logits = as_float_array(logits, "logits")
    labels_shape = jnp.shape(labels)
    where = expand_row_mask(where, logits.ndim, axis)
    shape = logits.shape
    logits, labels, mask = _prepare(logits, labels, axis, where)
    weights = None
    if class_weights is not None:
        weights = _weights(class_weights, shape, labels_shape, axis, logits.dtype)
    smoothing, z_coefficient = smoothing_and_z_loss(label_smoothing, z_loss, logits.dtype)
    loss, _, empty = _cross_entropy(logits, labels, mask, smoothing, z_coefficient, weights)
    _validate(logits, labels, empty)
    return loss


def safe_softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
    label_smoothing: jax.typing.ArrayLike = 0.0,
    z_loss: jax.typing.ArrayLike = 0.0,
    class_weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """:func:`softmax_cross_entropy` under optax's other name.

    optax's ``safe_softmax_cross_entropy(logits, labels)`` is its softmax
    cross-entropy with ``0 log 0 = 0`` at ``-inf`` logits, which jxent's
    already is; the options optax lacks here are keyword-only.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: target probabilities, broadcastable to ``logits``.
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask, as in :func:`softmax_cross_entropy`.
      label_smoothing: α in [0, 1]; may be traced.
      z_loss: coefficient λ >= 0 of the squared log-normaliser; may be traced.
      class_weights: one weight per class (PyTorch's ``weight``), as in
        :func:`softmax_cross_entropy`; may be traced.

    Returns:
      Per-example losses, in float32 for 16-bit inputs.
    """
    return softmax_cross_entropy(
        logits,
        labels,
        axis,
        where,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        class_weights=class_weights,
    )


def poly_loss_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    epsilon: jax.typing.ArrayLike = 2.0,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""PolyLoss (Poly-1): cross-entropy plus ε times the missing target mass.

    .. math::
      \ell = -\sum_j y_j \log p_j + \epsilon \sum_j y_j (1 - p_j)

    A drop-in for ``optax.losses.poly_loss_cross_entropy``, safe with ``-inf``
    logits.

    ``where`` is read as optax reads it. A mask of the logits' rank (or one
    that broadcasts to them, such as ``where[..., None]`` for whole rows)
    masks the same classes in both terms. A mask of another rank is read
    twice, as in optax: the cross-entropy term expands it at ``axis`` (a mask
    of the batch shape, masking whole rows), while the ε term broadcasts it
    from the right (a ``[K]`` class mask, leaving those classes out of its
    softmax and sum). Shapes that cannot be read both ways raise, as optax.

    Args:
      logits: unnormalised log-probabilities ``[..., K]``.
      labels: target probabilities, broadcastable to ``logits``.
      epsilon: weight of the first polynomial term (may be traced).
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask, see above.

    Returns:
      Per-example losses.

    References:
      Leng et al., `PolyLoss <https://arxiv.org/abs/2204.12511>`_, 2022.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.poly_loss_cross_entropy(jnp.zeros(2), jnp.array([1.0, 0.0]), epsilon=0.0)
      Array(0.6931472, dtype=float32)
    """
    logits = as_float_array(logits, "logits")
    rows = expand_row_mask(where, logits.ndim, axis)
    z, y, mask = _prepare(logits, labels, axis, rows)
    cross_entropy, log_probs, empty = _cross_entropy(z, y, mask, None, None)
    _validate(z, y, empty)
    if where is not None and axis is not None and jnp.ndim(where) != logits.ndim:
        # optax's softmax and sum read the same mask from the right.
        z, y, _ = _prepare(logits, labels, axis, where)
        log_probs = prim.log_softmax(z, (z.ndim - 1,))
        empty = jnp.all(z == -jnp.inf, axis=-1)
    missing_mass = jnp.where(empty, 0, jnp.sum(y * (1 - jnp.exp(log_probs)), axis=-1))
    return cross_entropy + epsilon * missing_mass
