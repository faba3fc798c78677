"""Argument conversion and trace-time checks shared by every public function:
arrays and dtypes, axes, masks, labels and per-distribution options."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

Axis = int | Sequence[int]


def floating_array(x: jax.typing.ArrayLike, name: str) -> jax.Array:
    """Return ``x`` as an array of its own floating dtype; TypeError otherwise."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return x


def as_float_array(x: jax.typing.ArrayLike, name: str) -> jax.Array:
    """Return ``x`` as an array computed in at least float32.

    bf16/f16 are promoted to float32 so that a loss is not quantised to the
    steps of a 16-bit float; float64 stays float64.
    """
    x = floating_array(x, name)
    if jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    return x


def as_inexact_array(x: jax.typing.ArrayLike, name: str) -> jax.Array:
    """Like :func:`as_float_array`, but integers and bools are promoted too."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    return as_float_array(x, name)


def broadcast_pair(
    a: jax.Array, b: jax.Array, names: tuple[str, str]
) -> tuple[jax.Array, jax.Array]:
    """Broadcast two arrays to one shape and one dtype, naming them on failure."""
    try:
        shape = jnp.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{names[0]} of shape {a.shape} and {names[1]} of shape {b.shape} "
            "cannot be broadcast together"
        ) from None
    dtype = jnp.result_type(a.dtype, b.dtype)
    return (
        jnp.broadcast_to(a, shape).astype(dtype),
        jnp.broadcast_to(b, shape).astype(dtype),
    )


def axes_in_order(axis: Axis | None, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """Return ``axis`` as a tuple of non-negative ints in the order given;
    None, where the caller allows it, means every axis.

    Raises:
      TypeError: ``axis`` is not an int or a sequence of ints (a float, an
        array, a string or a bool is not an axis).
      ValueError: an axis is out of range or repeated, or the tuple is empty.
    """
    kinds = "an int, a tuple of ints or None" if axis is None else "an int or a tuple of ints"
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axes: tuple = (axis,)
    elif isinstance(axis, Sequence) and not isinstance(axis, str):
        axes = tuple(axis)
    else:
        raise TypeError(f"{name} must be {kinds}, got {axis!r}")
    if not axes:
        raise ValueError(f"{name} must name at least one axis, got {axis!r}")
    # bool is an int to Python, but axis=True is a mistake, not axis 1.
    if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
        raise TypeError(f"{name} must be {kinds}, got {axis!r}")
    if not all(-ndim <= a < ndim for a in axes):
        raise ValueError(f"{name}={axis!r} is out of range for an array of rank {ndim}")
    normalized = tuple(int(a) % ndim for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return normalized


def normalize_axis(axis: Axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """Return ``axis`` as a sorted tuple of non-negative ints."""
    if axis is None:
        raise TypeError(f"{name} must be an int or a tuple of ints, got None")
    return tuple(sorted(axes_in_order(axis, ndim, name)))


def broadcasts_into(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without growing it."""
    try:
        return jnp.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def class_mask(where: jax.typing.ArrayLike | None, shape: tuple[int, ...]) -> jax.Array | None:
    """Return ``where`` broadcast to ``shape``, or None when there is no mask."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    if not broadcasts_into(where.shape, shape):
        raise ValueError(f"where of shape {where.shape} does not broadcast to shape {tuple(shape)}")
    return jnp.broadcast_to(where, shape)


def real_array(value: jax.typing.ArrayLike, name: str, dtype) -> jax.Array:
    """A real (float or integer) option as an array of ``dtype``; TypeError otherwise."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number or array, got {value!r}")
    value = jnp.asarray(value)
    if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
        raise TypeError(f"{name} must be a real number or array, got dtype {value.dtype}")
    return value.astype(dtype)


def per_distribution(
    value: jax.typing.ArrayLike, name: str, shape: tuple[int, ...], axes: tuple[int, ...], dtype
) -> jax.Array:
    """A parameter of each distribution (an order α, a weight β), broadcast to
    the result shape: ``shape`` without the class ``axes``."""
    value = real_array(value, name, dtype)
    result_shape = tuple(n for i, n in enumerate(shape) if i not in axes)
    try:
        return jnp.broadcast_to(value, result_shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {value.shape} does not broadcast to the result shape {result_shape}"
        ) from None


def integer_labels(
    labels: jax.typing.ArrayLike, batch_shape: tuple[int, ...], of: str
) -> jax.Array:
    """``labels`` as an integer array of ``batch_shape`` (``of`` names that shape),
    widened to at least 32 bits so that no class index or ``ignore_index`` wraps."""
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.shape != tuple(batch_shape):
        raise ValueError(f"labels of shape {labels.shape} do not match {of} {tuple(batch_shape)}")
    return labels.astype(jax.dtypes.canonicalize_dtype(jnp.promote_types(labels.dtype, jnp.int32)))


def label_status(
    labels: jax.Array, num_classes: int, ignore_index: int | None
) -> tuple[jax.Array, jax.Array]:
    """(ignored, invalid) per label: ``ignore_index``, or outside ``[0, num_classes)``.

    Compared without wrapping: an ``ignore_index`` or a class count that the label
    dtype cannot hold matches no label (-100 is no uint8 label, not 156).
    """
    info = jnp.iinfo(labels.dtype)
    nothing = jnp.zeros(labels.shape, bool)
    if ignore_index is None or not info.min <= ignore_index <= info.max:
        ignored = nothing
    else:
        ignored = labels == jnp.asarray(ignore_index, labels.dtype)
    too_large = nothing if num_classes > info.max else labels >= num_classes
    invalid = ~ignored & ((labels < 0) | too_large)
    return ignored, invalid


def is_traced(x: object) -> bool:
    """Whether ``x`` is a JAX tracer: its value is unknown at trace time."""
    return isinstance(x, Tracer)


def check_ignore_index(ignore_index: object) -> int | None:
    """``ignore_index`` as a Python int, or None; anything else raises TypeError."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (int, np.integer)) and not isinstance(ignore_index, bool):
        return int(ignore_index)
    raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
