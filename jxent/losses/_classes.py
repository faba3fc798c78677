"""optax-compatible handling of the class axes and of ``where``.

optax's losses read their ``axis`` and ``where`` arguments in two ways, and
each jxent loss follows the optax function of the same name:

- the softmax cross-entropies expand a ``where`` whose rank differs from the
  logits' at the class axes (:func:`expand_row_mask`): a mask of the batch
  shape masks whole rows;
- the KL losses hand ``where`` to a sum, where it broadcasts from the right:
  a ``[K]`` mask is a class mask.

A tuple ``axis`` is read in the order given (an integer label is a flat index
over the class axes in that order); ``axis=None`` makes every axis a class axis.
"""

import math

import jax
import jax.numpy as jnp

from .._arguments import Axis, as_float_array, axes_in_order, broadcast_pair, class_mask


def expand_row_mask(
    where: jax.typing.ArrayLike | None, logits_ndim: int, axis: Axis | None
) -> jax.Array | None:
    """optax's softmax cross-entropy rule: a ``where`` whose rank differs from
    the logits' is expanded at the class axes, so one of the batch shape masks
    whole rows. With ``axis=None`` it is left to broadcast from the right."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if axis is None or where.ndim == logits_ndim:
        return where
    try:
        return jnp.expand_dims(where, axis)
    except (ValueError, TypeError):
        raise ValueError(
            f"where of shape {where.shape} cannot be expanded at axis={axis!r} to the "
            f"rank {logits_ndim} of the logits"
        ) from None


def classes_last(
    x: jax.Array,
    axis: Axis | None,
    where: jax.typing.ArrayLike | None,
    name: str,
) -> tuple[jax.Array, jax.Array | None]:
    """Move the class axes of ``x`` (in the order given) to one flat last axis,
    and its mask (``where`` broadcast to ``x``) with them.

    Raises:
      ValueError: the class axes hold no element (K = 0).
    """
    axes = axes_in_order(axis, x.ndim)
    mask = class_mask(where, x.shape)
    batch = tuple(a for a in range(x.ndim) if a not in axes)
    num_classes = math.prod(x.shape[a] for a in axes)
    if num_classes == 0:
        raise ValueError(
            f"{name} of shape {x.shape} has no classes: its class axes {axes} are empty"
        )
    # An explicit class count (not -1) keeps an empty batch reshapable.
    shape = (*(x.shape[a] for a in batch), num_classes)

    def flatten(a: jax.Array) -> jax.Array:
        return jnp.transpose(a, batch + axes).reshape(shape)

    return flatten(x), (None if mask is None else flatten(mask))


def classes_last_pair(
    a: jax.typing.ArrayLike,
    b: jax.typing.ArrayLike,
    names: tuple[str, str],
    axis: Axis | None,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Two float arrays broadcast together, their class axes flattened last, and
    the mask (shaped like them) of the classes ``where`` keeps; ``where``
    broadcasts from the right (expand it first for optax's row rule)."""
    a, b = broadcast_pair(as_float_array(a, names[0]), as_float_array(b, names[1]), names)
    a, mask = classes_last(a, axis, where, names[0])
    b, _ = classes_last(b, axis, None, names[1])
    return a, b, mask
