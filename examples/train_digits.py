"""Train a small Flax NNX MLP on scikit-learn's bundled digits with jxent's cross-entropy.

    pip install -e '.[examples]' && python examples/train_digits.py

The 8x8 digits (1797 images, 10 classes) ship inside scikit-learn, so nothing is
downloaded. The loss is ``jxent.losses.softmax_cross_entropy_with_integer_labels``
with label smoothing 0.1, the optimiser ``optax.adam``. At the end the script
prints the test accuracy, the mean test cross-entropy in nats and in bits, and the
mean predictive entropy of correct and of wrong predictions, and saves a figure
(``--out``) with the loss curve and the histogram of predictive entropies.

Everything is deterministic for a given ``--seed``: the data split is fixed, the
seed drives the parameter initialisation and the shuffling.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import jxent

NUM_CLASSES = 10
LABEL_SMOOTHING = 0.1


class MLP(nnx.Module):
    """64 → hidden → hidden → 10, GELU activations."""

    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs) -> None:
        self.hidden1 = nnx.Linear(din, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.gelu(self.hidden1(x))
        x = nnx.gelu(self.hidden2(x))
        return self.out(x)


def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = model(x)
    losses = jxent.losses.softmax_cross_entropy_with_integer_labels(
        logits, y, label_smoothing=LABEL_SMOOTHING
    )
    return losses.mean()


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def predict(model: MLP, x: jax.Array) -> jax.Array:
    return model(x)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bundled digits, pixels scaled to [0, 1], a fixed stratified 80/20 split."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def evaluate(model: MLP, x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    logits = predict(model, jnp.asarray(x))
    labels = jnp.asarray(y)
    # The true log loss (no smoothing), in nats from the loss ...
    ce_nats = jxent.losses.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    # ... and in bits from the measure, H(one_hot(y), softmax(logits)) = -log2 q_y.
    one_hot = jax.nn.one_hot(labels, NUM_CLASSES)
    ce_bits = jxent.cross_entropy_from_logits(one_hot, logits, base=2).mean()
    correct = np.asarray(jnp.argmax(logits, axis=-1) == labels)
    entropy_bits = np.asarray(jxent.entropy_from_logits(logits, base=2))
    return {
        "accuracy": float(correct.mean()),
        "num_correct": int(correct.sum()),
        "ce_nats": float(ce_nats),
        "ce_bits": float(ce_bits),
        "correct": correct,
        "entropy_bits": entropy_bits,
    }


def save_figure(
    path: Path,
    step_losses: list[float],
    epoch_ends: list[int],
    test_ce: list[float],
    entropy_bits: np.ndarray,
    correct: np.ndarray,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))

    ax_loss.plot(
        np.arange(1, len(step_losses) + 1),
        step_losses,
        lw=0.8,
        alpha=0.7,
        label=f"train loss (label smoothing {LABEL_SMOOTHING})",
    )
    ax_loss.plot(epoch_ends, test_ce, "o-", ms=3, label="test cross-entropy")
    # The smoothed loss cannot go below the entropy of the smoothed targets.
    smoothed = (1 - LABEL_SMOOTHING) * jax.nn.one_hot(
        0, NUM_CLASSES
    ) + LABEL_SMOOTHING / NUM_CLASSES
    floor = float(jxent.entropy(smoothed))
    ax_loss.axhline(
        floor,
        color="gray",
        ls="--",
        lw=1,
        label=f"floor of the smoothed loss, H(targets) = {floor:.3f}",
    )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("nats per example")
    ax_loss.set_yscale("log")
    ax_loss.set_title("Loss")
    ax_loss.legend()

    bins = np.linspace(0.0, math.log2(NUM_CLASSES), 31)
    ax_hist.hist(
        entropy_bits[correct],
        bins=bins,
        density=True,
        alpha=0.6,
        label=f"correct (n={int(correct.sum())})",
    )
    if (~correct).any():
        ax_hist.hist(
            entropy_bits[~correct],
            bins=bins,
            density=True,
            alpha=0.6,
            label=f"wrong (n={int((~correct).sum())})",
        )
    ax_hist.set_xlabel("predictive entropy H(softmax(logits)) [bits]")
    ax_hist.set_ylabel("density")
    ax_hist.set_title("Test-set predictive entropy")
    ax_hist.legend()

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training set")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    parser.add_argument("--out", type=Path, default=Path("digits.png"), help="PNG to write")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    x_train, x_test, y_train, y_test = load_data()
    model = MLP(x_train.shape[1], 128, NUM_CLASSES, rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.learning_rate), wrt=nnx.Param)
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(x_train) // args.batch_size  # drop the ragged last batch

    step_losses: list[float] = []
    epoch_ends: list[int] = []
    test_ce: list[float] = []
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for i in bar:
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            loss = train_step(
                model, optimizer, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx])
            )
            step_losses.append(float(loss))
            bar.set_postfix(loss=f"{step_losses[-1]:.3f}", refresh=False)
        epoch_ends.append(len(step_losses))
        test_ce.append(evaluate(model, x_test, y_test)["ce_nats"])

    result = evaluate(model, x_test, y_test)
    correct = result["correct"]
    entropy_bits = result["entropy_bits"]
    n_test = len(y_test)
    print(f"test accuracy: {result['accuracy']:.4f} ({result['num_correct']}/{n_test})")
    print(f"mean test cross-entropy: {result['ce_nats']:.4f} nats = {result['ce_bits']:.4f} bits")
    mean_correct = float(entropy_bits[correct].mean())
    print(
        f"mean predictive entropy, correct predictions: {mean_correct:.4f} bits "
        f"(n={int(correct.sum())})"
    )
    if (~correct).any():
        mean_wrong = float(entropy_bits[~correct].mean())
        print(
            f"mean predictive entropy, wrong predictions:   {mean_wrong:.4f} bits "
            f"(n={int((~correct).sum())})"
        )
    else:
        print("mean predictive entropy, wrong predictions:   n/a (no wrong predictions)")

    save_figure(args.out, step_losses, epoch_ends, test_ce, entropy_bits, correct)
    print(f"saved {args.out}")
    print(f"time: {time.perf_counter() - start:.1f} s")
    return result


if __name__ == "__main__":
    main()
