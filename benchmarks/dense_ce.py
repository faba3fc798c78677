"""Value-and-grad of integer-label softmax cross-entropy: jxent vs optax vs a memory floor.

Run from the repository root (jxent installed, e.g. ``pip install -e .``)::

    python benchmarks/dense_ce.py                      # [8192, 32768], 15 rounds
    python benchmarks/dense_ce.py --tokens 2048 --vocab 8192 --rounds 5

For each dtype (float32, then bfloat16 logits) it times

* ``jxent``: ``jax.jit(jax.value_and_grad(lambda z: loss(z, labels).mean()))`` with
  ``jxent.losses.softmax_cross_entropy_with_integer_labels``;
* ``optax``: the same with ``optax.losses.softmax_cross_entropy_with_integer_labels``;
* ``floor x*2``: ``jax.jit(lambda x: x * 2)`` on the logits;
* ``floor exp``: ``jax.jit(jnp.exp)`` on the logits.

The floor is the least work any value-and-grad must do: read the logits once and
write a gradient of the same size. ``x * 2`` does exactly that and nothing else, so
its time is the memory-traffic floor on this machine (its GB/s, counting one read
and one write, is printed under the table); a loss at ~1.0x of it is as fast as the
hardware allows. ``exp`` does the same traffic plus one transcendental per element,
so the gap between the two floor rows is the price of one exp pass: a softmax
gradient needs at least one exp per element, so ``floor exp`` is the practical
floor where exp is compute-bound (as on CPU).

All candidates are compiled and warmed up first, then run round-robin (every
candidate once per round, ``jax.block_until_ready`` after each call) so that load
from other processes spreads evenly over them; the table reports medians. ``temp
MiB`` is XLA's ``compile().memory_analysis().temp_size_in_bytes``: scratch memory
beyond the arguments and outputs.

On Linux with glibc, much of every row here (the floor included) is the kernel
zero-filling fresh 4 KiB pages for the newly allocated gradient: look at the
process's system time. With transparent huge pages in ``madvise`` mode,
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/dense_ce.py`` (glibc >=
2.35) removes most of that cost, so the differences in compute stand out more.
The load average is printed before and after the run: with other work on the
machine, the medians are only comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import optax

import jxent

MIB = 1024**2


@dataclass
class Candidate:
    """One jitted function and its arguments, with the times of its runs."""

    case: str
    dtype: str
    fn: Callable
    args: tuple
    temp_mib: float | None = None
    times: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.times)


def value_and_grad_of(loss: Callable, labels: jax.Array) -> Callable:
    """The jitted value-and-grad of the mean loss against fixed labels."""
    return jax.jit(jax.value_and_grad(lambda z: loss(z, labels).mean()))


def temp_mib(fn: Callable, args: tuple) -> float | None:
    """XLA's scratch-memory estimate for ``fn(*args)``, in MiB (None if unknown)."""
    analysis = fn.lower(*args).compile().memory_analysis()
    if analysis is None:
        return None
    return analysis.temp_size_in_bytes / MIB


def make_candidates(tokens: int, vocab: int) -> list[Candidate]:
    key_logits, key_labels = jax.random.split(jax.random.key(0))
    logits32 = 4.0 * jax.random.normal(key_logits, (tokens, vocab), jnp.float32)
    labels = jax.random.randint(key_labels, (tokens,), 0, vocab)
    jxent_loss = value_and_grad_of(jxent.losses.softmax_cross_entropy_with_integer_labels, labels)
    optax_loss = value_and_grad_of(optax.losses.softmax_cross_entropy_with_integer_labels, labels)
    times_two = jax.jit(lambda x: x * 2)
    exp = jax.jit(jnp.exp)
    candidates = []
    for dtype in (jnp.float32, jnp.bfloat16):
        logits = logits32.astype(dtype)
        name = jnp.dtype(dtype).name
        candidates += [
            Candidate("jxent", name, jxent_loss, (logits,)),
            Candidate("optax", name, optax_loss, (logits,)),
            Candidate("floor x*2", name, times_two, (logits,)),
            Candidate("floor exp", name, exp, (logits,)),
        ]
    return candidates


def run(candidates: list[Candidate], rounds: int) -> None:
    for c in candidates:  # compile and warm up
        c.temp_mib = temp_mib(c.fn, c.args)
        jax.block_until_ready(c.fn(*c.args))
    for _ in range(rounds):
        for c in candidates:
            start = time.perf_counter()
            jax.block_until_ready(c.fn(*c.args))
            c.times.append(time.perf_counter() - start)


def find(candidates: list[Candidate], case: str, dtype: str) -> Candidate:
    return next(c for c in candidates if c.case == case and c.dtype == dtype)


def report(candidates: list[Candidate], tokens: int, vocab: int, rounds: int) -> None:
    devices = ", ".join(str(d) for d in jax.devices())
    print(f"logits [{tokens}, {vocab}], {rounds} interleaved rounds, medians")
    print(f"jax {jax.__version__}, optax {optax.__version__}, jxent {jxent.__version__}")
    print(f"devices: {devices}")
    print()
    print("| case | dtype | median ms | ratio vs optax | ratio vs floor (x*2) | temp MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for c in candidates:
        optax_ms = find(candidates, "optax", c.dtype).median_ms
        floor_ms = find(candidates, "floor x*2", c.dtype).median_ms
        temp = "n/a" if c.temp_mib is None else f"{c.temp_mib:.1f}"
        print(
            f"| {c.case} | {c.dtype} | {c.median_ms:.1f} | {c.median_ms / optax_ms:.2f} "
            f"| {c.median_ms / floor_ms:.2f} | {temp} |"
        )
    print()
    for dtype in dict.fromkeys(c.dtype for c in candidates):
        floor = find(candidates, "floor x*2", dtype)
        (logits,) = floor.args
        moved = 2 * logits.size * logits.dtype.itemsize  # one read, one write
        print(
            f"floor x*2 ({dtype}): {moved / 1e9:.2f} GB moved (read + write) in "
            f"{floor.median_ms:.1f} ms = {moved / 1e6 / floor.median_ms:.1f} GB/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192, help="rows of the logits")
    parser.add_argument("--vocab", type=int, default=32768, help="classes (columns)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timed rounds")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    candidates = make_candidates(args.tokens, args.vocab)
    run(candidates, args.rounds)
    report(candidates, args.tokens, args.vocab, args.rounds)
    load_after = os.getloadavg()[0]
    print(
        f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
