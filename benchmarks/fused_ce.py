"""Fused linear cross-entropy (LM head + loss) vs naive JAX and PyTorch peers, one table per shape.

Run from the repository root (jxent installed, e.g. ``pip install -e .``)::

    python benchmarks/fused_ce.py                       # default shapes (below)
    python benchmarks/fused_ce.py --shapes cpu,cpu-f32 --rounds 5
    python benchmarks/fused_ce.py --shapes llama        # force the Llama shape (GPU-sized)
    python benchmarks/fused_ce.py --tokens 1024 --vocab 8192 --dtype float32  # override shapes
    python benchmarks/fused_ce.py --no-torch            # JAX rows only
    python benchmarks/fused_ce.py --tables stats        # only the softmax-statistics tables

Shapes (``--shapes``, comma-separated; default ``cpu,cpu-f32,llama,qwen`` when
``jax.default_backend()`` is ``gpu``, else ``cpu,cpu-f32``): ``cpu`` = 2048 tokens, D = 512,
V = 32768, bfloat16 hidden and weight; ``cpu-f32`` = the same in float32; ``llama`` = the
Llama-3-8B head, 8192 tokens, D = 4096, V = 128256, bfloat16; ``qwen`` = the Qwen3-8B head,
8192 tokens, D = 4096, V = 151936, bfloat16. ``--tokens/--dim/--vocab/--dtype`` override that
field of every selected shape. Inputs: hidden ~ N(0, 1), weight ~ N(0, 9/D)
(logits ~ N(0, 9), a peaked softmax as in a trained model), labels uniform in [0, V).

Each shape gets two tables (``--tables``, comma-separated, default ``ce,stats``).

The ``ce`` table: every row measures the value and the gradients w.r.t. (hidden, weight) of
the *mean* loss over tokens: JAX rows as ``jax.jit(jax.value_and_grad(f, argnums=(0, 1)))``
(compiled once), PyTorch rows as ``loss = f(h, w, y); loss.backward()`` on tensors with
``requires_grad``.

* ``jxent, reduction="none" + mean``: ``linear_cross_entropy(h, W, y, reduction="none").mean()``;
  the backward recomputes the logits block by block (8·N·D·V matmul FLOPs).
* ``jxent, reduction="mean"``: the gradients come out of the forward sweep (6·N·D·V). Both
  jxent rows leave ``block_size``/``token_block_size`` at None: chosen from the shapes.
* ``naive JAX, <dtype> logits``: ``(h @ W).astype(float32)`` then
  ``optax.losses.softmax_cross_entropy_with_integer_labels(...).mean()`` (left out when the
  inputs are float32: it would be the next row).
* ``naive JAX, float32 logits``: ``jnp.dot(h, W, preferred_element_type=float32)`` then optax.
* ``PyTorch eager``: ``F.cross_entropy(F.linear(h, W.T).float(), y)``, on CUDA if available.
* ``Liger`` (``liger_kernel``) and ``CCE`` (Cut Cross-Entropy, ``cut_cross_entropy``) fused
  kernels: only with PyTorch on a CUDA device and the package importable; otherwise skipped,
  named in a one-line note under the table.

The ``stats`` table (per-token softmax statistics, as a policy-gradient loss uses them): every
row measures ``jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))`` of the objective
``(c1 * log_prob + c2 * entropy).sum()``, with c1, c2 ~ N(0, 1) drawn per token (advantages and
entropy weights), log_prob the log-probability of the label and entropy the softmax's entropy
at temperature 1; the per-token log_prob and entropy come out as the auxiliary output.

* ``jxent linear_softmax_stats``: ``linear_softmax_stats(h, W, y)``, fused: the forward is one
  sweep over the vocabulary (2·N·D·V), the backward recomputes the logits block by block
  (6·N·D·V more), the ``[N, V]`` logits are never held.
* ``materialised, <dtype> logits`` (left out for float32 inputs) and ``materialised, float32
  logits``: the logits ``h @ W`` (cast to float32, or computed with float32 accumulation), then
  ``jax.nn.log_softmax``, entropy ``-sum(where(p > 0, p * log p, 0))`` with ``p = exp(log p)``,
  log_prob gathered with ``jnp.take_along_axis``.

Columns:

* ``median ms``: median over ``--rounds`` (default 10 on GPU, 3 on CPU) of one value-and-grad
  call, after a warm-up call; the rows run round-robin, one call each per round, so load from
  other processes spreads evenly (``jax.block_until_ready``, ``torch.cuda.synchronize()``).
* ``temp MiB``: JAX: XLA's scratch memory beyond arguments and outputs,
  ``compiled.memory_analysis().temp_size_in_bytes``. PyTorch on CUDA:
  ``torch.cuda.max_memory_allocated()`` during one call (after ``reset_peak_memory_stats``)
  minus the memory allocated before it, minus the bytes of the two gradients it returns, so
  that, like XLA's figure, outputs are not counted. PyTorch on CPU: n/a.
* ``TFLOP/s``: 6·N·D·V (forward matmul plus the two gradient matmuls) over the median time,
  the same count for every row so that rows compare, whatever each path really computes.
* ``loss err``: |loss - loss_ref|; ``d_hidden err``, ``d_weight err``: ``||g - g_ref|| /
  ||g_ref||``. The reference is the naive float32-logits path on the inputs upcast to float32
  under ``jax.default_matmul_precision("highest")``: the exact answer for those input values.
* ``stats`` table: the same ``median ms``, ``temp MiB``, ``TFLOP/s`` (6·N·D·V for every row,
  as above, although the fused path computes 8·N·D·V) and gradient errors, against the
  materialised float32-logits path on the upcast inputs at ``"highest"`` precision;
  ``log_prob err`` and ``entropy err``: the largest absolute error over the tokens, in nats.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jxent

MIB = 1024**2
SHAPES = {  # name: (tokens, dim, vocab, dtype)
    "cpu": (2048, 512, 32768, "bfloat16"),
    "cpu-f32": (2048, 512, 32768, "float32"),
    "llama": (8192, 4096, 128256, "bfloat16"),
    "qwen": (8192, 4096, 151936, "bfloat16"),
}


# --- losses: each maps (hidden, weight [D, V], labels) to the mean loss ----------------


def jxent_loss(reduction: str) -> Callable:
    def loss(hidden, weight, labels):
        out = jxent.losses.linear_cross_entropy(hidden, weight, labels, reduction=reduction)
        return out if reduction == "mean" else out.mean()

    return loss


def naive_input_dtype_logits(hidden, weight, labels):
    logits = (hidden @ weight).astype(jnp.float32)
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def naive_float32_logits(hidden, weight, labels):
    logits = jnp.dot(hidden, weight, preferred_element_type=jnp.float32)
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# --- softmax statistics: each maps (hidden, weight [D, V], labels, c1, c2) to ------------
# --- ((c1 * log_prob + c2 * entropy).sum(), (log_prob, entropy)) ---------------------------


def jxent_stats(hidden, weight, labels, c1, c2):
    stats = jxent.losses.linear_softmax_stats(hidden, weight, labels)
    return (c1 * stats.log_prob + c2 * stats.entropy).sum(), (stats.log_prob, stats.entropy)


def materialised_stats(logits, labels, c1, c2):
    log_p = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(log_p)
    entropy = -jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=-1)
    log_prob = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
    return (c1 * log_prob + c2 * entropy).sum(), (log_prob, entropy)


def materialised_input_dtype_logits(hidden, weight, labels, c1, c2):
    return materialised_stats((hidden @ weight).astype(jnp.float32), labels, c1, c2)


def materialised_float32_logits(hidden, weight, labels, c1, c2):
    logits = jnp.dot(hidden, weight, preferred_element_type=jnp.float32)
    return materialised_stats(logits, labels, c1, c2)


# --- candidates ---------------------------------------------------------------------------


@dataclasses.dataclass
class Candidate:
    """One path: ``run()`` does one blocking value-and-grad call, returning (loss, d_h, d_w)
    with d_w as [D, V]; ``temp_mib`` is filled in by the constructor functions below."""

    name: str
    run: Callable[[], tuple]
    temp_mib: float | None = None
    errors: tuple = ()
    times: list[float] = dataclasses.field(default_factory=list)


def jax_candidate(name: str, loss: Callable, args: tuple, has_aux: bool = False) -> Candidate:
    """With ``has_aux``, the value ``run()`` returns is ``(loss, aux)``."""
    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=has_aux)
    compiled = jax.jit(value_and_grad).lower(*args).compile()
    analysis = compiled.memory_analysis()
    temp = None if analysis is None else analysis.temp_size_in_bytes / MIB

    def run():
        value, (d_hidden, d_weight) = jax.block_until_ready(compiled(*args))
        return value, d_hidden, d_weight

    return Candidate(name, run, temp)


def load_torch(disabled: bool) -> tuple:
    """(torch, its device: ``cuda`` when available, else ``cpu``, None) or (None, None, why)."""
    if disabled:
        return None, None, "--no-torch"
    try:
        import torch
    except ImportError:
        return None, None, "torch not importable"
    return torch, torch.device("cuda" if torch.cuda.is_available() else "cpu"), None


def torch_peers(torch) -> tuple[dict[str, Callable], list[str]]:
    """PyTorch losses ``f(h, w [V, D], y) -> mean loss`` by row name, and the peers skipped."""
    import torch.nn.functional as F

    def eager(h, w, y):
        return F.cross_entropy(F.linear(h, w).float(), y)

    peers, skipped = {"PyTorch eager": eager}, []
    fused = {
        "Liger": ("liger_kernel.transformers.functional", "liger_fused_linear_cross_entropy"),
        "CCE": ("cut_cross_entropy", "linear_cross_entropy"),
    }
    for name, (module, attr) in fused.items():
        if not torch.cuda.is_available():
            skipped.append(f"{name} (needs CUDA)")
            continue
        try:  # Triton-based packages can fail at import with more than ImportError
            fn = getattr(importlib.import_module(module), attr)
        except Exception:
            skipped.append(f"{name} (not importable)")
            continue
        # Both take (input [N, D], weight [V, D], target) and default to the mean.
        peers[name] = lambda h, w, y, fn=fn: fn(h, w, y)
    return peers, skipped


def torch_candidate(torch, device, name: str, loss: Callable, args: tuple) -> Candidate:
    hidden, weight, labels = (np.asarray(a) for a in args)  # weight is [D, V] here
    dtype = getattr(torch, args[0].dtype.name)
    h = torch.from_numpy(hidden.astype(np.float32)).to(device, dtype).requires_grad_()
    w = torch.from_numpy(weight.astype(np.float32).T.copy()).to(device, dtype).requires_grad_()
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    cuda = device.type == "cuda"

    def run():
        h.grad = w.grad = None
        value = loss(h, w, y)
        value.backward()
        if cuda:
            torch.cuda.synchronize()
        return value.detach(), h.grad, w.grad.T

    temp = None
    if cuda:  # one call to read the peak; it also warms up (compiles Triton kernels)
        run()
        h.grad = w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        grads = sum(t.numel() * t.element_size() for t in (h, w))
        temp = (torch.cuda.max_memory_allocated() - before - grads) / MIB
    return Candidate(name, run, temp)


# --- measurement ---------------------------------------------------------------------------


def inputs(tokens: int, dim: int, vocab: int, dtype: str, seed: int = 0) -> tuple:
    k_h, k_w, k_y = jax.random.split(jax.random.key(seed), 3)
    hidden = jax.random.normal(k_h, (tokens, dim), jnp.float32)
    weight = jax.random.normal(k_w, (dim, vocab), jnp.float32) * (3.0 / np.sqrt(dim))
    labels = jax.random.randint(k_y, (tokens,), 0, vocab, jnp.int32)
    return hidden.astype(dtype), weight.astype(dtype), labels


@jax.jit
def rel_err(got, ref):
    diff = got.astype(jnp.float32) - ref
    return jnp.linalg.norm(diff) / jnp.linalg.norm(ref)


def errors(result: tuple, reference: tuple) -> tuple[float, float, float]:
    """Loss abs error and gradients' relative norm errors; torch tensors go through numpy."""
    as_jax = [
        r if isinstance(r, jax.Array) else jnp.asarray(r.float().cpu().numpy()) for r in result
    ]
    loss_err = abs(float(as_jax[0]) - float(reference[0]))
    return loss_err, *(float(rel_err(g, r)) for g, r in zip(as_jax[1:], reference[1:]))


def reference_for(args: tuple) -> tuple:
    h32, w32 = (a.astype(jnp.float32) for a in args[:2])
    with jax.default_matmul_precision("highest"):
        fn = jax.jit(jax.value_and_grad(naive_float32_logits, argnums=(0, 1)))
        value, (d_hidden, d_weight) = jax.block_until_ready(fn(h32, w32, args[2]))
    return value, d_hidden, d_weight


def stats_errors(result: tuple, reference: tuple) -> tuple[float, float, float, float]:
    """Largest absolute log_prob and entropy errors, and the gradients' relative norm errors."""
    (_, (log_prob, entropy)), d_hidden, d_weight = result
    (_, (ref_log_prob, ref_entropy)), ref_d_hidden, ref_d_weight = reference
    return (
        float(jnp.max(jnp.abs(log_prob - ref_log_prob))),
        float(jnp.max(jnp.abs(entropy - ref_entropy))),
        float(rel_err(d_hidden, ref_d_hidden)),
        float(rel_err(d_weight, ref_d_weight)),
    )


def stats_reference_for(args: tuple) -> tuple:
    h32, w32 = (a.astype(jnp.float32) for a in args[:2])
    with jax.default_matmul_precision("highest"):
        value_and_grad = jax.value_and_grad(
            materialised_float32_logits, argnums=(0, 1), has_aux=True
        )
        value, (d_hidden, d_weight) = jax.block_until_ready(
            jax.jit(value_and_grad)(h32, w32, *args[2:])
        )
    return value, d_hidden, d_weight


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def time_round_robin(candidates: list[Candidate], rounds: int) -> None:
    """``rounds`` timed calls of each candidate, one call each per round."""
    for _ in range(rounds):
        for c in candidates:
            start = time.perf_counter()
            c.run()
            c.times.append(time.perf_counter() - start)


def bench_shape(name: str, shape: tuple, rounds: int, torch_ctx: tuple, header: str) -> None:
    tokens, dim, vocab, dtype = shape
    args = inputs(tokens, dim, vocab, dtype)
    ndv = tokens * dim * vocab
    reference = reference_for(args)

    candidates = [
        jax_candidate('jxent, reduction="none" + mean', jxent_loss("none"), args),
        jax_candidate('jxent, reduction="mean"', jxent_loss("mean"), args),
    ]
    if dtype != "float32":
        candidates.append(
            jax_candidate(f"naive JAX, {dtype} logits", naive_input_dtype_logits, args)
        )
    candidates.append(jax_candidate("naive JAX, float32 logits", naive_float32_logits, args))
    for c in candidates:  # warm-up call, also the one checked for accuracy
        c.errors = errors(c.run(), reference)
    torch, device, absent = torch_ctx
    skipped = [f"PyTorch, Liger, CCE ({absent})"] if torch is None else []
    if torch is not None:
        peers, skipped = torch_peers(torch)
        for peer, loss in peers.items():
            try:  # a peer that rejects this shape or dtype is skipped, not fatal
                c = torch_candidate(torch, device, f"{peer} ({device.type})", loss, args)
                c.errors = errors(c.run(), reference)
            except Exception as e:
                skipped.append(f"{peer} (failed: {type(e).__name__}: {str(e)[:60]})")
                continue
            candidates.append(c)

    time_round_robin(candidates, rounds)

    print(f"## {name}: {tokens} tokens, D = {dim}, V = {vocab}, {dtype}")
    print()
    print(f"{header}; {dtype}; N={tokens}, D={dim}, V={vocab}; N·D·V = {ndv:.3g}; {rounds} rounds")
    print()
    print(
        "| path | median ms | temp MiB | TFLOP/s (6NDV) | loss err | d_hidden err | d_weight err |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in candidates:
        median = statistics.median(c.times)
        loss_err, dh_err, dw_err = c.errors
        print(
            f"| {c.name} | {1e3 * median:.1f} | {fmt(c.temp_mib, '.1f')} "
            f"| {6 * ndv / median / 1e12:.3f} | {loss_err:.1e} | {dh_err:.1e} | {dw_err:.1e} |"
        )
    print()
    if skipped:
        print(f"Skipped: {', '.join(skipped)}.")
        print()


def bench_stats_shape(name: str, shape: tuple, rounds: int, header: str) -> None:
    tokens, dim, vocab, dtype = shape
    hidden, weight, labels = inputs(tokens, dim, vocab, dtype)
    k_1, k_2 = jax.random.split(jax.random.key(1))
    c1 = jax.random.normal(k_1, (tokens,), jnp.float32)
    c2 = jax.random.normal(k_2, (tokens,), jnp.float32)
    args = (hidden, weight, labels, c1, c2)
    ndv = tokens * dim * vocab
    reference = stats_reference_for(args)

    candidates = [jax_candidate("jxent linear_softmax_stats", jxent_stats, args, has_aux=True)]
    if dtype != "float32":
        candidates.append(
            jax_candidate(
                f"materialised, {dtype} logits", materialised_input_dtype_logits, args, True
            )
        )
    candidates.append(
        jax_candidate("materialised, float32 logits", materialised_float32_logits, args, True)
    )
    for c in candidates:  # warm-up call, also the one checked for accuracy
        c.errors = stats_errors(c.run(), reference)
    time_round_robin(candidates, rounds)

    print(f"## {name}, softmax statistics: {tokens} tokens, D = {dim}, V = {vocab}, {dtype}")
    print()
    print(
        f"{header}; {dtype}; N={tokens}, D={dim}, V={vocab}; N·D·V = {ndv:.3g}; {rounds} rounds; "
        "value and grad of (c1 * log_prob + c2 * entropy).sum()"
    )
    print()
    print(
        "| path | median ms | temp MiB | TFLOP/s (6NDV) | log_prob err | entropy err "
        "| d_hidden err | d_weight err |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in candidates:
        median = statistics.median(c.times)
        log_prob_err, entropy_err, dh_err, dw_err = c.errors
        print(
            f"| {c.name} | {1e3 * median:.1f} | {fmt(c.temp_mib, '.1f')} "
            f"| {6 * ndv / median / 1e12:.3f} | {log_prob_err:.1e} | {entropy_err:.1e} "
            f"| {dh_err:.1e} | {dw_err:.1e} |"
        )
    print()


def main() -> None:
    # Before JAX starts its backend: do not let it take 75% of the GPU up front, the PyTorch
    # rows share the device. (Read when the GPU client is created, not at import.)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    gpu = jax.default_backend() == "gpu"
    parser.add_argument(
        "--shapes",
        default="cpu,cpu-f32,llama,qwen" if gpu else "cpu,cpu-f32",
        help=f"comma-separated, from {', '.join(SHAPES)} (default: %(default)s)",
    )
    parser.add_argument("--tokens", type=int, help="override the token count of every shape")
    parser.add_argument("--dim", type=int, help="override D of every shape")
    parser.add_argument("--vocab", type=int, help="override V of every shape")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="override")
    parser.add_argument(
        "--rounds", type=int, default=10 if gpu else 3, help="timed rounds (default %(default)s)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip every PyTorch row")
    parser.add_argument(
        "--tables",
        default="ce,stats",
        help="comma-separated, from ce (cross-entropy), stats (softmax statistics) "
        "(default: %(default)s)",
    )
    opts = parser.parse_args()

    names = [s.strip() for s in opts.shapes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
    tables = [t.strip() for t in opts.tables.split(",") if t.strip()]
    if not tables or set(tables) - {"ce", "stats"}:
        parser.error(f"--tables takes ce, stats or both, got {opts.tables!r}")
    overrides = (opts.tokens, opts.dim, opts.vocab, opts.dtype)
    shapes = {}  # shape -> name; shapes made equal by the overrides run once
    for name in names:
        shape = tuple(o if o is not None else s for o, s in zip(overrides, SHAPES[name]))
        shapes.setdefault(shape, name if shape == SHAPES[name] else f"{name} (overridden)")

    torch_ctx = load_torch(opts.no_torch)
    torch, device, _ = torch_ctx
    header = (
        f"jax {jax.__version__}, jxent {jxent.__version__}, "
        f"backend {jax.default_backend()} ({jax.devices()[0].device_kind})"
    )
    if torch is not None:
        where = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
        header += f", torch {torch.__version__} ({where})"
    for shape, name in shapes.items():
        if "ce" in tables:
            bench_shape(name, shape, opts.rounds, torch_ctx, header)
        if "stats" in tables:
            bench_stats_shape(name, shape, opts.rounds, header)


if __name__ == "__main__":
    main()
