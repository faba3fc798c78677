"""optax-compatible handling of the class axes and of ``where``."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._checks import as_float_array, broadcast_pair, class_mask, normalize_axis

Axis = int | Sequence[int]


def expand_row_mask(
    where: jax.typing.ArrayLike | None, logits_ndim: int, axis: Axis
) -> jax.Array | None:
    """A ``where`` of one rank less than the logits masks whole rows (optax)."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.ndim == logits_ndim - 1 and isinstance(axis, int):
        where = jnp.expand_dims(where, axis)
    return where


def classes_last(
    x: jax.Array,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
    name: str,
) -> tuple[jax.Array, jax.Array | None]:
    """Move the class axes of ``x`` (and of its mask) to one flat last axis."""
    where = expand_row_mask(where, x.ndim, axis)
    mask = class_mask(where, x.shape)
    axes = normalize_axis(axis, x.ndim, "axis")
    batch = tuple(a for a in range(x.ndim) if a not in axes)
    order = batch + axes
    batch_shape = tuple(x.shape[a] for a in batch)

    def flatten(a: jax.Array) -> jax.Array:
        return jnp.transpose(a, order).reshape((*batch_shape, -1))

    return flatten(x), (None if mask is None else flatten(mask))


def classes_last_pair(
    a: jax.typing.ArrayLike,
    b: jax.typing.ArrayLike,
    names: tuple[str, str],
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Two float arrays broadcast together, their class axes flattened last, and
    the mask (shaped like them) of the classes ``where`` keeps."""
    a, b = broadcast_pair(as_float_array(a, names[0]), as_float_array(b, names[1]), names)
    a, mask = classes_last(a, axis, where, names[0])
    b, _ = classes_last(b, axis, None, names[1])
    return a, b, mask
