"""Fused linear cross-entropy vs the naive dense path: memory, time and accuracy.

Run from the repository root (jxent installed, e.g. ``pip install -e .``)::

    python benchmarks/fused_ce.py                              # defaults below, 5 rounds
    python benchmarks/fused_ce.py --block-sizes 512,1024,2048  # also sweep block_size
    python benchmarks/fused_ce.py --tokens 2048 --dim 256 --vocab 8192 --rounds 3

The two candidates, both as ``jax.jit(jax.value_and_grad(lambda h, W: loss(h, W, y).mean(),
argnums=(0, 1)))``:

* ``fused``: ``jxent.losses.linear_cross_entropy(h, W, y, block_size=...)``, which never
  holds the ``[tokens, V]`` logits (forward: online log-sum-exp over vocabulary blocks;
  backward: recomputes one block of logits at a time);
* ``naive``: ``jxent.losses.softmax_cross_entropy_with_integer_labels(h @ W, y)``, which
  materialises the logits and their gradient.

Three tables:

1. **Memory** (``--mem-tokens``, ``--mem-dim``, ``--mem-vocabs``; default 8192 tokens,
   D = 2048, V in {32768, 131072}, float32). ``temp MiB`` is XLA's
   ``.lower(ShapeDtypeStruct...).compile().memory_analysis().temp_size_in_bytes``: scratch
   memory beyond arguments and outputs, read at compile time, so nothing is allocated or
   run. The naive path needs at least one ``[tokens, V]`` float32 array (GiBs; the
   ``logits MiB`` column); the fused one should stay under 128 MiB and not change with V.
2. **Time** (``--tokens``, ``--dim``, ``--vocab``; default 4096 x 512 -> 32768). Every
   candidate is compiled and warmed up, then all run round-robin for ``--rounds`` rounds
   (``jax.block_until_ready`` after each call) so that load from other processes spreads
   evenly; the table reports medians. FLOPs counted: the forward matmul is 2·N·D·V; the
   naive backward adds two more (d_hidden, d_weight) for 6·N·D·V in all, while the fused
   backward recomputes the logits first, 8·N·D·V in all. So a fused/naive time ratio near
   8/6 = 1.33 is the matmul-bound expectation; below it, the fused path gains from not
   streaming [tokens, V] arrays through memory. ``GFLOP/s`` divides each path's own
   count by its time; ``GFLOP/s (6NDV)`` divides the useful work 6·N·D·V, comparable
   between rows. The bfloat16 rows cast h and W to bfloat16 (the fused path accumulates
   in float32; the naive one runs ``h @ W`` in bfloat16).
3. **Accuracy** (``--acc-tokens``, ``--acc-dim``, ``--acc-vocab``; small, V not a
   multiple of the block size so the short last block is exercised). Relative difference
   of an array = max |a - b| / max |b|, with b the dense float32 path
   (``softmax_cross_entropy_with_integer_labels(h @ W, y)`` and its gradients). For
   bfloat16 inputs, b is the dense path on the inputs upcast to float32 (the exact answer
   for those bf16 values). The naive bf16 row, ``h @ W`` in bfloat16, is there for contrast
   (on CPU, XLA may keep that product in float32 when it is upcast right away, so its loss
   can match exactly while its gradients still come back in bfloat16).

``--block-sizes`` (comma-separated) adds a fused row per block size to every table (the
default block size is always included); the bfloat16 timing row uses the default only.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

import jxent

MIB = 1024**2
DEFAULT_BLOCK = (
    inspect.signature(jxent.losses.linear_cross_entropy).parameters["block_size"].default
)


def naive_loss(hidden, weight, labels):
    return jxent.losses.softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)


def fused_loss(block_size: int) -> Callable:
    def loss(hidden, weight, labels):
        return jxent.losses.linear_cross_entropy(hidden, weight, labels, block_size=block_size)

    return loss


def value_and_grad_of(loss: Callable) -> Callable:
    """Jitted value-and-grad of the mean loss w.r.t. (hidden, weight); labels not differentiated."""
    return jax.jit(
        jax.value_and_grad(lambda h, w, y: loss(h, w, y).mean(), argnums=(0, 1)),
    )


def shapes(tokens: int, dim: int, vocab: int, dtype) -> tuple:
    return (
        jax.ShapeDtypeStruct((tokens, dim), dtype),
        jax.ShapeDtypeStruct((dim, vocab), dtype),
        jax.ShapeDtypeStruct((tokens,), jnp.int32),
    )


def temp_mib(fn: Callable, args: tuple) -> float | None:
    """XLA's scratch-memory estimate for ``fn(*args)`` in MiB (None if unavailable)."""
    analysis = fn.lower(*args).compile().memory_analysis()
    return None if analysis is None else analysis.temp_size_in_bytes / MIB


def inputs(tokens: int, dim: int, vocab: int, seed: int = 0) -> tuple:
    """float32 hidden ~ N(0, 1), weight ~ N(0, 1/D) (logits ~ N(0, 1)), labels uniform."""
    k_h, k_w, k_y = jax.random.split(jax.random.key(seed), 3)
    hidden = jax.random.normal(k_h, (tokens, dim), jnp.float32)
    weight = jax.random.normal(k_w, (dim, vocab), jnp.float32) / np.sqrt(dim)
    labels = jax.random.randint(k_y, (tokens,), 0, vocab, jnp.int32)
    return hidden, weight, labels


def block_label(block_size: int) -> str:
    return f"{block_size} (default)" if block_size == DEFAULT_BLOCK else str(block_size)


# --- memory ---------------------------------------------------------------------------


def memory_table(tokens: int, dim: int, vocabs: list[int], block_sizes: list[int]) -> None:
    print(f"## Memory: value_and_grad temp MiB, tokens={tokens}, D={dim}, float32")
    print()
    print("| V | logits MiB | naive temp MiB | fused block | fused temp MiB | naive / fused |")
    print("|---:|---:|---:|---:|---:|---:|")
    for vocab in vocabs:
        args = shapes(tokens, dim, vocab, jnp.float32)
        naive = temp_mib(value_and_grad_of(naive_loss), args)
        logits = tokens * vocab * 4 / MIB
        for bs in block_sizes:
            fused = temp_mib(value_and_grad_of(fused_loss(bs)), args)
            ratio = "n/a" if not (naive and fused) else f"{naive / fused:.1f}x"
            print(
                f"| {vocab} | {logits:.0f} | {fmt(naive)} | {block_label(bs)} | {fmt(fused)} "
                f"| {ratio} |"
            )
    print()


def fmt(mib: float | None) -> str:
    return "n/a" if mib is None else f"{mib:.1f}"


# --- time -----------------------------------------------------------------------------


@dataclass
class Candidate:
    """One jitted value-and-grad, its arguments, FLOP count and run times."""

    case: str
    dtype: str
    block: str
    flops: float
    fn: Callable
    args: tuple
    temp_mib: float | None = None
    times: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)


def time_table(tokens: int, dim: int, vocab: int, rounds: int, block_sizes: list[int]) -> None:
    hidden, weight, labels = inputs(tokens, dim, vocab)
    ndv = tokens * dim * vocab
    candidates = []
    for dtype in (jnp.float32, jnp.bfloat16):
        args = (hidden.astype(dtype), weight.astype(dtype), labels)
        name = jnp.dtype(dtype).name
        candidates.append(
            Candidate("naive", name, "-", 6 * ndv, value_and_grad_of(naive_loss), args)
        )
        for bs in block_sizes if dtype == jnp.float32 else [DEFAULT_BLOCK]:
            fn = value_and_grad_of(fused_loss(bs))
            candidates.append(Candidate("fused", name, block_label(bs), 8 * ndv, fn, args))
    for c in candidates:  # compile, measure, warm up
        c.temp_mib = temp_mib(c.fn, c.args)
        jax.block_until_ready(c.fn(*c.args))
    for _ in range(rounds):
        for c in candidates:
            start = time.perf_counter()
            jax.block_until_ready(c.fn(*c.args))
            c.times.append(time.perf_counter() - start)

    print(
        f"## Time: value_and_grad, tokens={tokens}, D={dim}, V={vocab}, "
        f"{rounds} interleaved rounds, medians"
    )
    print()
    print(
        "| case | dtype | block | median ms | vs naive (same dtype) | FLOPs counted "
        "| GFLOP/s | GFLOP/s (6NDV) | temp MiB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for c in candidates:
        naive = next(n for n in candidates if n.case == "naive" and n.dtype == c.dtype)
        print(
            f"| {c.case} | {c.dtype} | {c.block} | {1e3 * c.median_s:.0f} "
            f"| {c.median_s / naive.median_s:.2f}x | {c.flops / ndv:.0f}·NDV = {c.flops:.3g} "
            f"| {c.flops / c.median_s / 1e9:.1f} | {6 * ndv / c.median_s / 1e9:.1f} "
            f"| {fmt(c.temp_mib)} |"
        )
    spread = {f"{c.case}/{c.dtype}/{c.block}": c.times for c in candidates}
    print()
    print("all times (s), per candidate in round order:")
    for key, times in spread.items():
        print(f"  {key}: " + ", ".join(f"{t:.2f}" for t in times))
    print()


# --- accuracy -------------------------------------------------------------------------


def rel_diff(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def value_and_grads(loss: Callable, hidden, weight, labels):
    """Per-token losses and the gradients of their mean w.r.t. (hidden, weight)."""
    losses = jax.jit(loss)(hidden, weight, labels)
    grads = jax.jit(jax.grad(lambda h, w: loss(h, w, labels).mean(), argnums=(0, 1)))(
        hidden, weight
    )
    return (losses, *grads)


def accuracy_table(tokens: int, dim: int, vocab: int, block_sizes: list[int]) -> None:
    hidden, weight, labels = inputs(tokens, dim, vocab, seed=1)
    hidden = 3.0 * hidden  # logits ~ N(0, 9): a peaked softmax, as in a trained model
    h16, w16 = hidden.astype(jnp.bfloat16), weight.astype(jnp.bfloat16)
    reference = value_and_grads(naive_loss, hidden, weight, labels)
    reference16 = value_and_grads(
        naive_loss, h16.astype(jnp.float32), w16.astype(jnp.float32), labels
    )
    rows = [
        ("fused", "float32", block_label(bs), fused_loss(bs), (hidden, weight), reference)
        for bs in block_sizes
    ]
    rows += [
        ("fused", "bfloat16", block_label(bs), fused_loss(bs), (h16, w16), reference16)
        for bs in block_sizes
    ]
    rows.append(("naive (bf16 h @ W)", "bfloat16", "-", naive_loss, (h16, w16), reference16))

    print(
        f"## Accuracy: tokens={tokens}, D={dim}, V={vocab}; "
        "max |a - b| / max |b| vs the dense float32 path"
    )
    print()
    print("| case | inputs | block | loss | d_hidden | d_weight |")
    print("|---|---|---|---:|---:|---:|")
    for case, dtype, block, loss, (h, w), ref in rows:
        got = value_and_grads(loss, h, w, labels)
        diffs = " | ".join(f"{rel_diff(g, r):.1e}" for g, r in zip(got, ref))
        print(f"| {case} | {dtype} | {block} | {diffs} |")
    print()


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mem-tokens", type=int, default=8192, help="tokens for the memory table")
    parser.add_argument("--mem-dim", type=int, default=2048, help="D for the memory table")
    parser.add_argument(
        "--mem-vocabs", type=int_list, default=[32768, 131072], help="V list, comma-separated"
    )
    parser.add_argument("--tokens", type=int, default=4096, help="tokens for the time table")
    parser.add_argument("--dim", type=int, default=512, help="D for the time table")
    parser.add_argument("--vocab", type=int, default=32768, help="V for the time table")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--acc-tokens", type=int, default=256, help="tokens for accuracy")
    parser.add_argument("--acc-dim", type=int, default=128, help="D for accuracy")
    parser.add_argument("--acc-vocab", type=int, default=3000, help="V for accuracy")
    parser.add_argument(
        "--block-sizes",
        type=int_list,
        default=[],
        help=f"extra fused block sizes to sweep, comma-separated (default {DEFAULT_BLOCK} always)",
    )
    parser.add_argument("--skip-time", action="store_true", help="memory and accuracy only")
    args = parser.parse_args()

    devices = ", ".join(str(d) for d in jax.devices())
    print(f"jax {jax.__version__}, jxent {jxent.__version__}, devices: {devices}")
    print()
    block_sizes = sorted({DEFAULT_BLOCK, *args.block_sizes})
    memory_table(args.mem_tokens, args.mem_dim, args.mem_vocabs, block_sizes)
    if not args.skip_time:
        time_table(args.tokens, args.dim, args.vocab, args.rounds, block_sizes)
    accuracy_table(args.acc_tokens, args.acc_dim, args.acc_vocab, block_sizes)


if __name__ == "__main__":
    main()
