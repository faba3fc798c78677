"""The fused loss under plain ``jax.jit`` over ``NamedSharding`` inputs, layout by layout,
against the naive ``h @ W`` + optax loss on the same inputs, on 8 devices in one run.

Run from the repository root (jxent installed)::

    python benchmarks/sharded_fused_ce.py                  # 8 CPU devices, 16384 x 128 x 6144
    python benchmarks/sharded_fused_ce.py --tokens 4096 --rounds 3 --mode Explicit

On a machine without 8 accelerators it makes 8 CPU devices (``XLA_FLAGS``, set before JAX
is imported). The mesh is 4 x 2, axes ("data", "model"). Every row measures the value and
the gradients w.r.t. (hidden, weight) of the mean loss, compiled once:

* ``jxent mean``: ``linear_cross_entropy(h, W, y, reduction="mean")``;
* ``jxent none``: ``linear_cross_entropy(h, W, y).mean()`` (the per-token sweep);
* ``naive``: ``optax.losses.softmax_cross_entropy_with_integer_labels(h @ W, y).mean()``.

Columns: median ms over ``--rounds`` after a warm-up; ``x naive``: that time over the
naive row's; ``temp MiB``: XLA's temporaries per device (``memory_analysis()``);
``collectives``: those of the compiled HLO as op×count[largest shape], ``in loop`` when
one runs inside a while loop (read with tests/hlo_reading.py).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jxent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hlo_reading import collectives

MIB = 1024**2
LAYOUTS = {  # name: (hidden's spec, weight's spec)
    "data parallel": (P("data"), P()),
    "data over 8": (P(("data", "model")), P()),
    "FSDP (W over D)": (P("data"), P("data", None)),
    "vocab parallel": (P("data"), P(None, "model")),
    "FSDP + vocab": (P("data"), P("data", "model")),
}


def _losses():
    def mean(h, w, y):
        return jxent.losses.linear_cross_entropy(h, w, y, reduction="mean")

    def none(h, w, y):
        return jxent.losses.linear_cross_entropy(h, w, y).mean()

    def naive(h, w, y):
        logits = jnp.dot(h, w, preferred_element_type=jnp.float32)
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return {"jxent mean": mean, "jxent none": none, "naive": naive}


def _collective_summary(text: str) -> str:
    found = collectives(text)
    counts = Counter((c.op, c.in_loop) for c in found)
    parts = []
    for (op, in_loop), count in sorted(counts.items()):
        shapes = [s for c in found if (c.op, c.in_loop) == (op, in_loop) for s in c.shapes]
        largest = max(shapes, key=lambda s: int(np.prod(s)) if s else 1, default=())
        where = " in loop" if in_loop else ""
        parts.append(f"{op}×{count}[{','.join(map(str, largest))}]{where}")
    return "; ".join(parts) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=6144)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", choices=("Auto", "Explicit"), default="Auto")
    args = parser.parse_args()
    if jax.device_count() < 8:
        sys.exit(f"needs 8 devices, found {jax.device_count()}")
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(getattr(AxisType, args.mode),) * 2)
    keys = jax.random.split(jax.random.key(0), 3)
    hidden = jax.random.normal(keys[0], (args.tokens, args.dim))
    weight = jax.random.normal(keys[1], (args.dim, args.vocab)) * (3 / args.dim**0.5)
    labels = jax.random.randint(keys[2], (args.tokens,), 0, args.vocab)
    print(
        f"{jax.devices()[0].platform} × {jax.device_count()}, mesh 4 × 2 ({args.mode}), "
        f"{args.tokens} tokens, D = {args.dim}, V = {args.vocab}, float32, "
        f"value and grad of the mean loss"
    )
    header = "| layout | path | median ms | x naive | temp MiB | collectives |"
    print(header + "\n|---|---|---:|---:|---:|---|")
    for name, (hidden_spec, weight_spec) in LAYOUTS.items():
        with jax.set_mesh(mesh):
            placed = [
                jax.device_put(x, NamedSharding(mesh, spec))
                for x, spec in (
                    (hidden, hidden_spec),
                    (weight, weight_spec),
                    (labels, P(*hidden_spec[:1])),
                )
            ]
            rows = {}
            for path, loss in _losses().items():
                try:
                    compiled = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(*placed).compile()
                except Exception as error:  # optax's gather on Explicit vocabulary shards
                    print(f"| {name} | {path} | n/a | n/a | n/a | {type(error).__name__} |")
                    continue
                jax.block_until_ready(compiled(*placed))
                rows[path] = (compiled, [])
            for _ in range(args.rounds):  # round-robin, so that load spreads evenly
                for compiled, times in rows.values():
                    start = time.perf_counter()
                    jax.block_until_ready(compiled(*placed))
                    times.append(time.perf_counter() - start)
        naive_ms = 1e3 * statistics.median(rows["naive"][1]) if "naive" in rows else math.nan
        for path, (compiled, times) in rows.items():
            ms = 1e3 * statistics.median(times)
            temp = compiled.memory_analysis().temp_size_in_bytes / MIB
            summary = _collective_summary(compiled.as_text())
            print(f"| {name} | {path} | {ms:.0f} | {ms / naive_ms:.2f} | {temp:.1f} | {summary} |")


if __name__ == "__main__":
    main()
