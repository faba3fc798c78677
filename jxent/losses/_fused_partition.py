"""Running a fused sweep on every device's own tokens and vocabulary columns.

A fused loss called under ``jax.jit`` on sharded inputs never names the mesh:
this module reads the shardings and runs the sweep's per-shard body on each
device's block. With ``Auto`` mesh axes the shardings exist only when XLA
partitions the program, so the body is a ``custom_partitioning`` rule (with a
Shardy sharding rule); with ``Explicit`` axes they are in the types, and the
body runs under ``shard_map``. Inside the user's own ``shard_map`` (or on one
device) the body runs as it is.

Each operand and result is described by a *role*, one letter per dimension:
``n`` tokens, ``d`` the hidden size of ``hidden``, ``e`` the same size as the
weight's rows (``f`` and ``g``: the same pair for a second, frozen head),
``v`` the vocabulary, ``r`` the rows of ``d_weight`` (split as the
weight's are, where that can be a reduce-scatter); ``""`` is a scalar. ``d`` and
``e`` are separate factors of the Shardy rule so that an FSDP weight's
sharding does not spread to ``hidden``'s D, and ``d_weight`` keeps it. The
layout that follows from the input shardings:

* tokens split as ``hidden``'s token axis is (data parallelism);
* the vocabulary split as ``weight``'s V axis is (tensor parallelism), less any
  mesh axis that already splits the tokens;
* D never split inside the body: a weight sharded over D (FSDP) is gathered
  before the sweep, as ``hidden @ weight`` would gather it, and its gradient
  reduce-scattered back when the token axes split D.

A dimension that the mesh does not divide evenly is not split (XLA would pad
it, and padded tokens would reach ``d_weight``).
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

_Axes = tuple[str, ...]


class Layout(NamedTuple):
    """Mesh axes that split the tokens and the vocabulary inside a per-shard body."""

    tokens: _Axes = ()
    vocab: _Axes = ()
    # Token axes that also split the caller's weight over D (FSDP): d_weight is
    # reduce-scattered over them (the role ``r``) rather than summed whole.
    weight_rows: _Axes = ()

    def spec(self, role: str) -> P:
        """The partition spec of an operand or result of ``role``."""
        by_letter = {
            "n": self.tokens or None,
            "v": self.vocab or None,
            "d": None,
            "e": None,
            "f": None,
            "g": None,
            "r": self.weight_rows or None,
        }
        return P(*(by_letter[letter] for letter in role))

    def sum_weight_gradient(self, d_weight: jax.Array) -> jax.Array:
        """This block's ``d_weight [D, V/n]`` summed over the token shards, split over
        D as the role ``r`` says."""
        rest = tuple(a for a in self.tokens if a not in self.weight_rows)
        if rest:
            d_weight = jax.lax.psum(d_weight, rest)
        if self.weight_rows:
            d_weight = jax.lax.psum_scatter(
                d_weight, self.weight_rows, scatter_dimension=0, tiled=True
            )
        return d_weight

    @property
    def vocab_axis_name(self) -> _Axes | None:
        """The vocabulary axes as the kernels' ``axis_name`` (None: unsplit)."""
        return self.vocab or None


def _axes(entry: Any) -> _Axes:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _layout(
    specs: Sequence[P], shapes: Sequence[Sequence[int]], roles: Sequence[str], sizes: dict
) -> Layout:
    """The layout that the operands' shardings ask for (see the module docstring)."""

    def axes_of(letter: str, wanted_role: str) -> _Axes:
        for spec, shape, role in zip(specs, shapes, roles, strict=True):
            if role == wanted_role:
                entries = tuple(spec) + (None,) * (len(role) - len(spec))
                axes = _axes(entries[role.index(letter)])
                count = int(np.prod([sizes[a] for a in axes], dtype=int))
                # An uneven split would pad: leave that dimension whole.
                return axes if shape[role.index(letter)] % count == 0 else ()
        return ()

    tokens = axes_of("n", "nd")
    vocab = tuple(a for a in axes_of("v", "ev") if a not in tokens)
    rows = axes_of("e", "ev")
    return Layout(tokens, vocab, rows if rows and set(rows) <= set(tokens) else ())


_Body = Callable[..., tuple[jax.Array, ...]]


def _rule(roles: Sequence[str], out_roles: Sequence[str]) -> str:
    def spaced(role: str) -> str:
        return " ".join(role)

    return ", ".join(spaced(r) for r in roles) + " -> " + ", ".join(spaced(r) for r in out_roles)


def _partitioned_call(
    body: _Body, static: Any, roles: tuple[str, ...], out_roles: tuple[str, ...], operands
):
    """``body`` as a custom_partitioning rule: XLA hands it each device's block."""

    def whole(*arrays):
        return body(Layout(), static, *arrays)

    def partition(mesh, arg_shapes, result_shape):
        del result_shape
        layout = _layout(
            [a.sharding.spec for a in arg_shapes],
            [a.shape for a in arg_shapes],
            roles,
            dict(mesh.shape),
        )

        def lower(*arrays):
            return body(layout, static, *arrays)

        def named(role):
            return NamedSharding(mesh, layout.spec(role))

        return (
            mesh,
            lower,
            tuple(named(r) for r in out_roles),
            tuple(named(r) for r in roles),
        )

    call = custom_partitioning(whole)
    call.def_partition(
        partition=partition,
        sharding_rule=_rule(roles, tuple(r.replace("r", "e") for r in out_roles)),
        # The vocabulary of a per-token statistic, and the tokens of d_weight,
        # are summed over inside the body; D is gathered before it.
        need_replication_factors=tuple(f for f in "df" if any(f in r for r in roles)),
    )
    return call(*operands)


def _explicit_mesh(operands) -> Any:
    """The mesh of operands whose shardings are in their types (Explicit axes), else None."""
    for x in operands:
        sharding = getattr(jax.typeof(x), "sharding", None)
        mesh = getattr(sharding, "mesh", None)
        if mesh is None or mesh.empty or mesh.manual_axes:
            continue
        if any(str(t).endswith("Explicit") for t in mesh.axis_types):
            return mesh
    return None


def _in_manual_context() -> bool:
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and bool(mesh.manual_axes)


def _explicit_call(
    body: _Body, static: Any, roles: tuple[str, ...], out_roles: tuple[str, ...], operands, mesh
):
    """``body`` under shard_map, its layout read from the operands' sharding types."""
    specs = [jax.typeof(x).sharding.spec for x in operands]
    layout = _layout(specs, [x.shape for x in operands], roles, dict(mesh.shape))
    in_specs = tuple(layout.spec(r) for r in roles)
    operands = [jax.sharding.reshard(x, spec) for x, spec in zip(operands, in_specs, strict=True)]
    run = jax.shard_map(
        lambda *a: body(layout, static, *a),
        mesh=mesh,
        in_specs=in_specs,
        out_specs=tuple(layout.spec(r) for r in out_roles),
        check_vma=False,
    )
    return run(*operands)


def run_sharded(
    body: _Body,
    static: Any,
    operands: Sequence[jax.Array | None],
    roles: Sequence[str],
    out_roles: Sequence[str],
) -> tuple[jax.Array, ...]:
    """``body(layout, static, *operands)`` on each device's block of the operands.

    ``None`` operands are passed through as None. ``body`` sees blocks laid out
    as ``layout`` says and returns whole results for its block of each result
    role (it does its own collectives over ``layout``'s axes).
    """
    present = [i for i, x in enumerate(operands) if x is not None]
    arrays = [operands[i] for i in present]
    present_roles = tuple(roles[i] for i in present)

    def with_nones(layout, static, *blocks):
        full: list = [None] * len(operands)
        for i, block in zip(present, blocks, strict=True):
            full[i] = block
        return tuple(body(layout, static, *full))

    out_roles = tuple(out_roles)

    def on_blocks(*blocks):
        if _in_manual_context():
            return with_nones(Layout(), static, *blocks)
        mesh = _explicit_mesh(blocks)
        if mesh is not None:
            return tuple(_explicit_call(with_nones, static, present_roles, out_roles, blocks, mesh))
        return tuple(_partitioned_call(with_nones, static, present_roles, out_roles, blocks))

    # custom_partitioning has no batching rule: under vmap, a body whose results
    # are all per token runs once on the batch's tokens put end to end; any
    # other body (a sum over tokens per example) is vmapped as plain JAX.
    call = jax.custom_batching.custom_vmap(on_blocks)

    @call.def_vmap
    def _batched(axis_size, in_batched, *blocks):
        per_token = all(r.startswith("n") for r in out_roles) and all(
            r.startswith("n") or not batched
            for r, batched in zip(present_roles, in_batched, strict=True)
        )
        if not per_token:
            in_axes = [0 if batched else None for batched in in_batched]
            outs = jax.vmap(lambda *b: with_nones(Layout(), static, *b), in_axes=in_axes)(*blocks)
            return tuple(outs), (True,) * len(out_roles)
        flat = []
        for x, role, batched in zip(blocks, present_roles, in_batched, strict=True):
            if role.startswith("n"):
                if not batched:
                    x = jnp.broadcast_to(x, (axis_size, *x.shape))
                x = x.reshape(axis_size * x.shape[1], *x.shape[2:])
            flat.append(x)
        outs = call(*flat)
        return tuple(o.reshape(axis_size, -1, *o.shape[1:]) for o in outs), (True,) * len(out_roles)

    return tuple(call(*arrays))


def like(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """``cotangent`` with ``primal``'s sharding type, where that type names one
    (Explicit axes: a custom_vjp's cotangent must carry its primal's type)."""
    if _explicit_mesh([primal]) is None:
        return cotangent
    spec = jax.typeof(primal).sharding.spec
    if jax.typeof(cotangent).sharding.spec == spec:
        return cotangent
    return jax.sharding.reshard(cotangent, spec)
