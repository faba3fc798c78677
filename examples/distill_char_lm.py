"""Distil a smaller character-level model from a larger one, both output heads fused.

    pip install -e '.[examples]' && python examples/distill_char_lm.py

Models and text: those of ``examples/train_char_lm.py`` (imported from it), the tiny
tied-embedding transformer on the Python reference-manual topics. The teacher is that
script's default model (two blocks of width 128, 417k parameters), trained first with
its own training step and then frozen. Two students of a smaller size (one block of
width 64, 61k parameters) start from the same initialisation and see the same training
windows for the same number of steps (as many as the teacher):

* ``hard labels``: train_char_lm's loss, the cross-entropy on the next character,
  ``jxent.losses.linear_cross_entropy(hidden, embedding.T, labels, ignore_index=PAD)``;
* ``distilled``: the teacher's predictions as soft targets, mixed with the hard labels,
  from both models' final hidden states and tied output embeddings in one fused sweep
  that never forms either model's ``[tokens, V]`` logits::

      jxent.losses.linear_distillation_loss(
          student_hidden, student_embedding.T,
          teacher_hidden, teacher_embedding.T,  # the teacher's: frozen, no gradient
          labels, divergence="kl", temperature=1.0, hard_label_weight=0.5,
          ignore_index=PAD, reduction="mean",
      )

  per character ``T² KL(P || Q) + 0.5 CE(labels, Q at T = 1)``, with P and Q the
  teacher's and the student's softmax at temperature T. The two models have different
  widths (128 and 64); only the vocabulary is shared.

All three are evaluated as train_char_lm evaluates (per-character losses summed in a
``jxent.metrics.LogLoss``, bits per byte of the held-out text); the script ends with a
table of their held-out bits per byte next to the uniform and unigram baselines.

The default run (500 steps for each model) takes about 70 s on two CPU cores. The
teacher ends near 2.42 bits per byte, the student trained on the hard labels near 3.01
and the distilled one near 2.89 (seed 0; 2.48, 3.05, 2.88 with seed 1 and 2.43, 3.07,
2.88 with seed 2): the teacher's whole next-character distributions carry more to
learn from per step than the one character that follows. Other settings, seed 0: no
hard term (``--hard-label-weight 0``) 2.89 too; ``--temperature 2`` 2.98, flatter targets
help less here. ``--quick`` (100 steps each, used by the tests) takes about 25 s and ends
near 3.91, 4.07 and 4.05: the teacher has learnt little yet, and so has less to teach.
Every run is deterministic for a given ``--seed``, which drives the initialisations and
the sampling of the training windows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import jxent

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_char_lm as char_lm  # the model, the text and the training of that example

PAD = char_lm.PAD
TEACHER_STEPS, QUICK_TEACHER_STEPS = 500, 100
STUDENT_STEPS, QUICK_STUDENT_STEPS = 500, 100
NUM_HEADS = 4


def make_optimizer(steps: int, learning_rate: float) -> optax.GradientTransformation:
    """train_char_lm's optimizer: warm-up, cosine decay to a tenth, clipping, Adam."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, min(50, steps // 10 + 1), steps, learning_rate / 10
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def make_distill_step(
    graphdef: nnx.GraphDef,
    teacher_graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    args: argparse.Namespace,
):
    """The jitted training step of the distilled student; the teacher's parameters are an
    argument, frozen (no gradient is taken with respect to them)."""

    def loss_fn(params, teacher_params, inputs, labels):
        student = nnx.merge(graphdef, params)
        teacher = nnx.merge(teacher_graphdef, jax.lax.stop_gradient(teacher_params))
        return jxent.losses.linear_distillation_loss(
            student.hidden(inputs),
            student.embed.embedding[...].T,
            teacher.hidden(inputs),
            teacher.embed.embedding[...].T,
            labels,
            divergence=args.divergence,
            temperature=args.temperature,
            hard_label_weight=args.hard_label_weight,
            ignore_index=PAD,
            reduction="mean",
        )

    @jax.jit
    def train_step(params, opt_state, teacher_params, inputs, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, teacher_params, inputs, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


def train(step, params, optimizer, steps: int, train_split, args, desc: str, *extra):
    """``steps`` calls of ``step(params, opt_state, *extra, inputs, labels)`` on the windows
    that ``--seed`` draws (the same windows for every model)."""
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(args.seed)
    bar = tqdm(range(steps), desc=desc, unit="step")
    for i in bar:
        starts = rng.integers(0, train_split.num_chars, size=args.batch_size)
        inputs, labels = train_split.windows(starts, args.seq_len)
        params, opt_state, loss = step(
            params, opt_state, *extra, jnp.asarray(inputs), jnp.asarray(labels)
        )
        if i % 10 == 0 or i == steps - 1:  # reading the loss waits for the step
            bar.set_postfix(loss=f"{float(loss):.3f} nats", refresh=False)
    return params


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--teacher-steps",
        type=int,
        default=None,
        help=f"teacher training steps ({TEACHER_STEPS}; {QUICK_TEACHER_STEPS} quick)",
    )
    parser.add_argument(
        "--student-steps",
        type=int,
        default=None,
        help=f"training steps of each student ({STUDENT_STEPS}; {QUICK_STUDENT_STEPS} quick)",
    )
    parser.add_argument("--teacher-dim", type=int, default=128, help="teacher width")
    parser.add_argument("--teacher-depth", type=int, default=2, help="teacher blocks")
    parser.add_argument("--student-dim", type=int, default=64, help="student width")
    parser.add_argument("--student-depth", type=int, default=1, help="student blocks")
    parser.add_argument(
        "--divergence", default="kl", choices=["kl", "reverse_kl", "js", "tv"], help="D(P, Q)"
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="distillation T")
    parser.add_argument(
        "--hard-label-weight", type=float, default=0.5, help="weight of the hard-label term"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
    parser.add_argument("--seq-len", type=int, default=64, help="characters per window")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="peak Adam step size")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and sampling seed")
    parser.add_argument("--quick", action="store_true", help="a short run, for the tests")
    args = parser.parse_args(argv)
    if args.teacher_steps is None:
        args.teacher_steps = QUICK_TEACHER_STEPS if args.quick else TEACHER_STEPS
    if args.student_steps is None:
        args.student_steps = QUICK_STUDENT_STEPS if args.quick else STUDENT_STEPS

    start = time.perf_counter()
    _, vocab, train_split, held_out = char_lm.load_splits()
    print(f"text: vocabulary V = {len(vocab)}, {train_split.num_chars:,} training characters")

    def new_model(dim: int, depth: int) -> tuple[nnx.GraphDef, nnx.State, str]:
        """A CharLM from ``--seed``: its graph, its parameters and a description."""
        model = char_lm.CharLM(
            len(vocab), args.seq_len, dim, depth, NUM_HEADS, rngs=nnx.Rngs(args.seed)
        )
        graphdef, params = nnx.split(model)
        num_params = sum(x.size for x in jax.tree.leaves(params))
        return graphdef, params, f"{depth} x {dim}, {num_params:,} parameters"

    teacher_graphdef, teacher, teacher_desc = new_model(args.teacher_dim, args.teacher_depth)
    student_graphdef, student_init, student_desc = new_model(args.student_dim, args.student_depth)
    print(f"teacher: {teacher_desc}; students: {student_desc}")

    optimizer = make_optimizer(args.teacher_steps, args.learning_rate)
    teacher_step, teacher_eval = char_lm.make_steps(teacher_graphdef, optimizer)
    teacher = train(
        teacher_step, teacher, optimizer, args.teacher_steps, train_split, args, "teacher"
    )

    optimizer = make_optimizer(args.student_steps, args.learning_rate)
    hard_step, student_eval = char_lm.make_steps(student_graphdef, optimizer)
    hard = train(
        hard_step, student_init, optimizer, args.student_steps, train_split, args, "student, hard"
    )
    distill_step = make_distill_step(student_graphdef, teacher_graphdef, optimizer, args)
    distilled = train(
        distill_step,
        student_init,
        optimizer,
        args.student_steps,
        train_split,
        args,
        "student, distilled",
        teacher,
    )

    byte_lengths = np.array([len(c.encode()) for c in vocab])

    def bits_per_byte(eval_step, params) -> tuple[float, float]:
        metric, num_chars, num_bytes = char_lm.evaluate(
            eval_step, params, held_out, byte_lengths, args.seq_len, args.batch_size
        )
        return float(metric.bits_per_byte(num_bytes)), num_chars / num_bytes

    teacher_bpb, chars_per_byte = bits_per_byte(teacher_eval, teacher)
    counts = np.bincount(train_split.ids, minlength=len(vocab))
    unigram_bits = float(jxent.entropy(jnp.asarray(counts / counts.sum()), base=2))
    settings = (
        f"{args.divergence}, T = {args.temperature:g}, hard weight {args.hard_label_weight:g}"
    )
    results = {
        f"uniform model, log2 {len(vocab)}": math.log2(len(vocab)) * chars_per_byte,
        "unigram model, H(training characters)": unigram_bits * chars_per_byte,
        f"teacher, {args.teacher_steps} steps": teacher_bpb,
        f"student, hard labels, {args.student_steps} steps": bits_per_byte(student_eval, hard)[0],
        f"student, distilled ({settings})": bits_per_byte(student_eval, distilled)[0],
    }
    print("held-out bits per byte:")
    for name, value in results.items():
        print(f"  {name + ':':50s} {value:.3f} bits per byte")
    print(f"time: {time.perf_counter() - start:.1f} s")
    return results


if __name__ == "__main__":
    main()
