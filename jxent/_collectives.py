"""Shard-aware helpers: the collectives and mesh types of a vocabulary split over
a mesh axis inside ``jax.shard_map``.

Every helper takes ``axis_name=None`` to mean "one device holds the whole
vocabulary" and then reduces to a no-op, so the single-device losses and the
vocab-parallel ones share one code path.
"""

import jax

AxisName = str | tuple[str, ...] | None


def all_max(x: jax.Array, axis_name: AxisName) -> jax.Array:
    """Maximum over the devices of ``axis_name`` (``x`` itself on one device)."""
    return x if axis_name is None else jax.lax.pmax(x, axis_name)


def all_sum(x: jax.Array, axis_name: AxisName) -> jax.Array:
    """Sum over the devices of ``axis_name`` (``x`` itself on one device)."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def first_class(num_local: int, axis_name: AxisName) -> jax.Array | int:
    """Index in the full vocabulary of this shard's first class."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name) * num_local


def total_classes(num_local: int, axis_name: AxisName) -> int:
    """Size of the full vocabulary of which this device holds ``num_local`` classes."""
    return num_local if axis_name is None else num_local * jax.lax.axis_size(axis_name)


def _varying_axes(x: jax.Array) -> frozenset[str]:
    """Mesh axes over which ``x`` differs from device to device (inside shard_map).

    Empty outside ``shard_map`` and inside one with ``check_vma=False``.
    """
    manual = getattr(jax.typeof(x), "manual_axis_type", None)
    return frozenset() if manual is None else frozenset(manual.varying)


def varying_like(x: jax.Array, *sources: jax.Array | None) -> jax.Array:
    """``x`` typed as varying over every mesh axis any of ``sources`` varies over.

    What JAX's own binary operations do to an operand that is replicated where
    the other varies; its transpose sums the cotangent over those axes.
    """
    wanted = frozenset().union(*(_varying_axes(s) for s in sources if s is not None))
    missing = tuple(sorted(wanted - _varying_axes(x)))
    return jax.lax.pcast(x, missing, to="varying") if missing else x


def untracked_shards(weight: jax.Array, axis_name: AxisName) -> bool:
    """Whether ``weight`` is a vocabulary shard inside ``shard_map(check_vma=False)``.

    A shard varies over ``axis_name``; only untracked types fail to say so.
    """
    if axis_name is None:
        return False
    axes = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)
    return not set(axes) <= _varying_axes(weight)


def sum_over_sharers(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """psum a cotangent over the mesh axes it varies over and its primal does not."""
    extra = tuple(sorted(_varying_axes(cotangent) - _varying_axes(primal)))
    return jax.lax.psum(cotangent, extra) if extra else cotangent
