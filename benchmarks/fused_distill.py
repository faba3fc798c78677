"""Fused two-head distillation loss vs the dense path (both heads' logits held), per shape.

Run from the repository root (jxent installed, e.g. ``pip install -e .``)::

    python benchmarks/fused_distill.py                      # default shapes (below)
    python benchmarks/fused_distill.py --shapes cpu --rounds 5
    python benchmarks/fused_distill.py --shapes llama       # force the Llama shape (GPU-sized)
    python benchmarks/fused_distill.py --tokens 1024 --vocab 8192 --dtype float32  # overrides
    python benchmarks/fused_distill.py --no-torch           # JAX rows only

Shapes (``--shapes``, comma-separated; default ``cpu,cpu-f32,llama`` when
``jax.default_backend()`` is ``gpu``, else ``cpu,cpu-f32``): ``cpu`` = 2048 tokens, student
D_s = 256, teacher D_t = 512, V = 32768, bfloat16 hidden states and weights; ``cpu-f32`` = the
same in float32; ``llama`` = the Llama-3-8B head as the teacher, 8192 tokens, D_t = 4096,
V = 128256, and a student of width D_s = 2048, bfloat16. ``--tokens/--student-dim/
--teacher-dim/--vocab/--dtype`` override that field of every selected shape. Inputs: the
teacher's hidden states ~ N(0, 1) and weight ~ N(0, 9/D_t) (logits ~ N(0, 9), a peaked
softmax as in a trained model); the student's are the teacher's first D_s features and
weight rows, the weight scaled by sqrt(D_t/D_s): its logits are N(0, 9) too, correlated
sqrt(D_s/D_t) with the teacher's (a student that has learnt part of the teacher).

Every row measures the value and the gradients w.r.t. the *student's* (hidden, weight) of
the mean loss over tokens at temperature T = 2 (``--temperature``), compiled once as
``jax.jit(jax.value_and_grad(f, argnums=(0, 1)))``; the teacher's arguments are inputs
without gradients. Two divergences, three JAX rows each:

* ``jxent, <div>, reduction="mean"``: ``linear_distillation_loss(h_s, W_s, h_t, W_t,
  divergence=<div>, temperature=T, reduction="mean")``: the student's gradients come out
  of the forward sweep, 2·N·V·(D_t + 3·D_s) matmul FLOPs;
* ``jxent, <div>, reduction="none" + mean``: the same with ``reduction="none"``, then
  ``.mean()``; the backward recomputes both heads block by block, 2·N·V·(2·D_t + 4·D_s)
  in all;
* ``dense, <div>, float32 logits``: both heads' ``[N, V]`` logits, ``jnp.dot(h, W,
  preferred_element_type=float32)``, then for ``kl`` ``jxent.losses.distillation_loss(
  student_logits, teacher_logits, temperature=T).mean()`` and for ``js``
  ``T² · jxent.generalized_js_divergence_from_logits(teacher_logits / T, student_logits / T,
  0.5).mean()``;
* ``Liger LigerFusedLinearJSDLoss``, a ``js`` row (β = 0.5, ``weight_hard_loss=0``,
  ``weight_soft_loss=1``): Liger Kernel's chunked fused linear JSD in PyTorch (it still
  computes the student's cross-entropy on dummy labels, weighted 0), its loss multiplied
  by T² (it leaves the T² out) before ``backward()``; only with ``torch`` and
  ``liger_kernel`` importable (on CUDA when available), otherwise skipped, named in a note.

Columns:

* ``median ms``: median over ``--rounds`` (default 10 on GPU, 3 on CPU) of one value-and-grad
  call, after a warm-up call; the rows run round-robin, one call each per round.
* ``temp MiB``: JAX: XLA's scratch memory beyond arguments and outputs,
  ``compiled.memory_analysis().temp_size_in_bytes``. PyTorch on CUDA: the peak allocated
  during one call beyond what was allocated before it, minus the two gradients. Else n/a.
* ``TFLOP/s``: 2·N·V·(D_t + 3·D_s) (both heads' forward matmuls and the student's two
  gradient matmuls) over the median time, the same count for every row.
* ``loss err``: |loss - loss_ref|; ``d_hidden err``, ``d_weight err``: ``||g - g_ref|| /
  ||g_ref||`` of the student's gradients. The reference is the dense float32-logits path of
  the same divergence on the inputs upcast to float32, under
  ``jax.default_matmul_precision("highest")``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jxent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fused_ce import MIB, Candidate, errors, fmt, jax_candidate, load_torch, time_round_robin

SHAPES = {  # name: (tokens, student dim, teacher dim, vocab, dtype)
    "cpu": (2048, 256, 512, 32768, "bfloat16"),
    "cpu-f32": (2048, 256, 512, 32768, "float32"),
    "llama": (8192, 2048, 4096, 128256, "bfloat16"),
}
DIVERGENCES = ("kl", "js")
JS_BETA = 0.5


# --- losses: each maps (student_hidden, student_weight [D_s, V], teacher_hidden, -----------
# --- teacher_weight [D_t, V]) to the mean loss over tokens ---------------------------------


def jxent_loss(divergence: str, reduction: str, temperature: float):
    def loss(s_hidden, s_weight, t_hidden, t_weight):
        out = jxent.losses.linear_distillation_loss(
            s_hidden,
            s_weight,
            t_hidden,
            t_weight,
            divergence=divergence,
            beta=JS_BETA,
            temperature=temperature,
            reduction=reduction,
        )
        return out if reduction == "mean" else out.mean()

    return loss


def dense_loss(divergence: str, temperature: float):
    def loss(s_hidden, s_weight, t_hidden, t_weight):
        s_logits = jnp.dot(s_hidden, s_weight, preferred_element_type=jnp.float32)
        t_logits = jnp.dot(t_hidden, t_weight, preferred_element_type=jnp.float32)
        if divergence == "kl":
            per_token = jxent.losses.distillation_loss(s_logits, t_logits, temperature=temperature)
        else:
            per_token = temperature**2 * jxent.generalized_js_divergence_from_logits(
                t_logits / temperature, s_logits / temperature, JS_BETA
            )
        return per_token.mean()

    return loss


def reference_for(divergence: str, temperature: float, args: tuple) -> tuple:
    upcast = tuple(a.astype(jnp.float32) for a in args)
    with jax.default_matmul_precision("highest"):
        fn = jax.jit(jax.value_and_grad(dense_loss(divergence, temperature), argnums=(0, 1)))
        value, (d_hidden, d_weight) = jax.block_until_ready(fn(*upcast))
    return value, d_hidden, d_weight


# --- Liger Kernel -------------------------------------------------------------------------


def liger_candidate(torch, device, args: tuple, temperature: float) -> Candidate:
    """Liger's chunked fused linear JSD (weights as [V, D]), times T², as a candidate."""
    from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

    fn = LigerFusedLinearJSDLoss(
        weight_hard_loss=0.0, weight_soft_loss=1.0, beta=JS_BETA, temperature=temperature
    )
    dtype = getattr(torch, args[0].dtype.name)

    def tensor(a, transpose=False, grad=False):
        a = np.array(a.astype(jnp.float32))  # a writable copy, as torch.from_numpy wants
        t = torch.from_numpy(a.T.copy() if transpose else a).to(device, dtype)
        return t.requires_grad_() if grad else t

    h_s, w_s = tensor(args[0], grad=True), tensor(args[1], transpose=True, grad=True)
    h_t, w_t = tensor(args[2]), tensor(args[3], transpose=True)
    labels = torch.zeros(h_s.shape[0], dtype=torch.int64, device=device)  # weighted 0
    # Some releases take the two biases as required positional arguments, older ones none.
    biases = (None, None) if "student_bias" in inspect.signature(fn.forward).parameters else ()
    cuda = device.type == "cuda"

    def run():
        h_s.grad = w_s.grad = None
        out = fn(h_s, w_s, h_t, w_t, labels, *biases)
        value = temperature**2 * (out[0] if isinstance(out, tuple) else out)
        value.backward()
        if cuda:
            torch.cuda.synchronize()
        return value.detach(), h_s.grad, w_s.grad.T

    temp = None
    if cuda:  # one call to read the peak; it also warms up (compiles)
        run()
        h_s.grad = w_s.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        grads = sum(t.numel() * t.element_size() for t in (h_s, w_s))
        temp = (torch.cuda.max_memory_allocated() - before - grads) / MIB
    return Candidate(f"Liger LigerFusedLinearJSDLoss × T² ({device.type}), js", run, temp)


# --- measurement ---------------------------------------------------------------------------


def inputs(tokens: int, d_s: int, d_t: int, vocab: int, dtype: str, seed: int = 0) -> tuple:
    """(student_hidden, student_weight, teacher_hidden, teacher_weight); see the docstring."""
    k_h, k_w = jax.random.split(jax.random.key(seed))
    t_hidden = jax.random.normal(k_h, (tokens, d_t), jnp.float32)
    t_weight = jax.random.normal(k_w, (d_t, vocab), jnp.float32) * (3.0 / np.sqrt(d_t))
    s_hidden = t_hidden[:, :d_s]
    s_weight = t_weight[:d_s] * np.sqrt(d_t / d_s)
    return tuple(a.astype(dtype) for a in (s_hidden, s_weight, t_hidden, t_weight))


def bench_shape(
    name: str, shape: tuple, rounds: int, temperature: float, torch_ctx: tuple, header: str
) -> None:
    tokens, d_s, d_t, vocab, dtype = shape
    args = inputs(*shape)
    flops = 2 * tokens * vocab * (d_t + 3 * d_s)

    candidates, references = [], {}
    for divergence in DIVERGENCES:
        reference = references[divergence] = reference_for(divergence, temperature, args)
        rows = [
            (f'jxent, {divergence}, reduction="mean"', jxent_loss(divergence, "mean", temperature)),
            (
                f'jxent, {divergence}, reduction="none" + mean',
                jxent_loss(divergence, "none", temperature),
            ),
            (f"dense, {divergence}, float32 logits", dense_loss(divergence, temperature)),
        ]
        for row, loss in rows:
            c = jax_candidate(row, loss, args)
            c.errors = errors(c.run(), reference)  # the warm-up call, checked for accuracy
            candidates.append(c)

    torch, device, absent = torch_ctx
    skipped = None
    if torch is None:
        skipped = f"Liger LigerFusedLinearJSDLoss ({absent})"
    else:
        try:  # not importable, or a failure on this shape or device: a note, not fatal
            c = liger_candidate(torch, device, args, temperature)
            c.errors = errors(c.run(), references["js"])
            candidates.append(c)
        except Exception as e:
            skipped = f"Liger LigerFusedLinearJSDLoss ({type(e).__name__}: {str(e)[:80]})"

    time_round_robin(candidates, rounds)

    print(f"## {name}: {tokens} tokens, D_s = {d_s}, D_t = {d_t}, V = {vocab}, {dtype}")
    print()
    print(
        f"{header}; {dtype}; N={tokens}, D_s={d_s}, D_t={d_t}, V={vocab}; T = {temperature:g}; "
        f"{rounds} rounds; value and student grads of the mean loss"
    )
    print()
    print(
        "| path | median ms | temp MiB | TFLOP/s (2NV(D_t+3D_s)) | loss err | d_hidden err "
        "| d_weight err |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in candidates:
        median = statistics.median(c.times)
        loss_err, dh_err, dw_err = c.errors
        print(
            f"| {c.name} | {1e3 * median:.1f} | {fmt(c.temp_mib, '.1f')} "
            f"| {flops / median / 1e12:.3f} | {loss_err:.1e} | {dh_err:.1e} | {dw_err:.1e} |"
        )
    print()
    if skipped:
        print(f"Skipped: {skipped}.")
        print()


def main() -> None:
    # Before JAX starts its backend: do not let it take 75% of the GPU up front, the PyTorch
    # row shares the device. (Read when the GPU client is created, not at import.)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    gpu = jax.default_backend() == "gpu"
    parser.add_argument(
        "--shapes",
        default="cpu,cpu-f32,llama" if gpu else "cpu,cpu-f32",
        help=f"comma-separated, from {', '.join(SHAPES)} (default: %(default)s)",
    )
    parser.add_argument("--tokens", type=int, help="override the token count of every shape")
    parser.add_argument("--student-dim", type=int, help="override D_s of every shape")
    parser.add_argument("--teacher-dim", type=int, help="override D_t of every shape")
    parser.add_argument("--vocab", type=int, help="override V of every shape")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="override")
    parser.add_argument("--temperature", type=float, default=2.0, help="T (default %(default)s)")
    parser.add_argument(
        "--rounds", type=int, default=10 if gpu else 3, help="timed rounds (default %(default)s)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the Liger row")
    opts = parser.parse_args()

    names = [s.strip() for s in opts.shapes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
    overrides = (opts.tokens, opts.student_dim, opts.teacher_dim, opts.vocab, opts.dtype)
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
        bench_shape(name, shape, opts.rounds, opts.temperature, torch_ctx, header)


if __name__ == "__main__":
    main()
