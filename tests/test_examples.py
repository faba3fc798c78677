"""End-to-end runs of the training examples in examples/, as a user would run them."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_digits.py"
CHAR_LM = ROOT / "examples" / "train_char_lm.py"
RL_CHAR_LM = ROOT / "examples" / "rl_char_lm.py"
DISTILL_CHAR_LM = ROOT / "examples" / "distill_char_lm.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.examples
def test_train_digits_end_to_end(tmp_path):
    out = tmp_path / "digits.png"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "2", "--seed", "0", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    accuracy = re.search(r"^test accuracy: ([0-9.]+)", proc.stdout, flags=re.M)
    assert accuracy, proc.stdout
    assert float(accuracy.group(1)) > 0.5  # chance is 0.1
    assert re.search(r"^mean test cross-entropy: [0-9.]+ nats = [0-9.]+ bits", proc.stdout, re.M)
    assert re.search(
        r"^mean predictive entropy, correct predictions: [0-9.]+ bits", proc.stdout, re.M
    )

    assert out.is_file(), proc.stdout
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # two panels of plots, not an empty canvas
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 400 and height > 200


def _bits_per_byte(stdout: str, model: str) -> float:
    """The held-out bits per byte printed for ``model`` (a line's leading words)."""
    match = re.search(rf"^  {model}\b.*:\s+(\S+) bits per byte$", stdout, flags=re.M)
    assert match, stdout
    return float(match.group(1))  # "nan" and "inf" parse too, and fail below


@pytest.mark.examples
def test_train_char_lm_end_to_end(tmp_path):
    plot = tmp_path / "loss.png"
    proc = subprocess.run(
        [sys.executable, str(CHAR_LM), "--quick", "--seed", "0", "--plot", str(plot)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    vocab = re.search(r"vocabulary V = (\d+)$", proc.stdout, flags=re.M)
    assert vocab, proc.stdout
    uniform = _bits_per_byte(proc.stdout, "uniform model")
    unigram = _bits_per_byte(proc.stdout, "unigram model")
    model = _bits_per_byte(proc.stdout, "this model")
    # Bits per byte are bits per character times characters per byte, which is just
    # under 1 here (a few multi-byte characters).
    assert 0.97 * math.log2(int(vocab.group(1))) < uniform <= math.log2(int(vocab.group(1)))
    assert 3.0 < unigram < uniform  # English text: about 4.5 bits per character
    # Learning happened: below the uniform model, and even below the unigram one,
    # which knows the training text's character frequencies. (It is near 4.0.)
    assert math.isfinite(model)
    assert 1.0 < model < unigram - 0.25, proc.stdout
    assert "training" in proc.stderr  # the tqdm progress bar

    assert plot.is_file(), proc.stdout
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # a plotted curve, not an empty canvas
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 400 and height > 200


def _before_after(stdout: str, row: str) -> tuple[float, float]:
    """The two numbers of the final table's row whose label starts with ``row``."""
    match = re.search(rf"^  {re.escape(row)}.*:\s+(\S+)\s+(\S+)$", stdout, flags=re.M)
    assert match, stdout
    return float(match.group(1)), float(match.group(2))


@pytest.mark.examples
def test_rl_char_lm_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(RL_CHAR_LM), "--quick", "--seed", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    vocab = re.search(r"vocabulary V = (\d+),", proc.stdout)
    assert vocab, proc.stdout
    iterations = re.findall(
        r"^iteration +\d+: reward (\S+)  KL (\S+)  entropy (\S+)$", proc.stdout, flags=re.M
    )
    assert len(iterations) == 12, proc.stdout
    assert all(math.isfinite(float(x)) for row in iterations for x in row), proc.stdout

    reward_before, reward_after = _before_after(proc.stdout, "reward")
    kl_before, kl_after = _before_after(proc.stdout, "KL to the reference")
    entropy_before, entropy_after = _before_after(proc.stdout, "entropy")
    # About a quarter of the characters of English text are vowels; the policy gradient
    # raises their share well beyond that (it ends near 0.6).
    assert 0.15 < reward_before < 0.4, proc.stdout
    assert reward_after > reward_before + 0.1, proc.stdout
    # The reference is the policy before fine-tuning: no divergence from it; after,
    # a finite, positive one that the KL term keeps from running away (it is near 0.5).
    assert kl_before == 0.0
    assert math.isfinite(kl_after) and 0.01 < kl_after < 2.0, proc.stdout
    # Entropies at temperature 0.9, in nats: between 0 and log V.
    for entropy in (entropy_before, entropy_after):
        assert math.isfinite(entropy) and 0.5 < entropy < math.log(int(vocab.group(1))), proc.stdout
    assert re.search(
        r"^mean over the 12 iterations: KL \S+, entropy \S+ nats/char$", proc.stdout, flags=re.M
    ), proc.stdout
    assert "pretraining" in proc.stderr  # the tqdm progress bar of the pretraining


@pytest.mark.examples
def test_distill_char_lm_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(DISTILL_CHAR_LM), "--quick", "--seed", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    vocab = re.search(r"vocabulary V = (\d+),", proc.stdout)
    assert vocab, proc.stdout
    log2_vocab = math.log2(int(vocab.group(1)))
    uniform = _bits_per_byte(proc.stdout, "uniform model")
    unigram = _bits_per_byte(proc.stdout, "unigram model")
    teacher = _bits_per_byte(proc.stdout, "teacher")
    hard = _bits_per_byte(proc.stdout, "student, hard labels")
    distilled = _bits_per_byte(proc.stdout, "student, distilled")
    assert 0.97 * log2_vocab < uniform <= log2_vocab
    assert 3.0 < unigram < uniform
    for model in (teacher, hard, distilled):
        assert math.isfinite(model), proc.stdout
        # Learning happened, even below the unigram model (the students end near 4.1).
        assert 1.0 < model < unigram - 0.25, proc.stdout
    # The larger teacher, trained as long, beats both students (by 0.14 to 0.3 with seeds
    # 0, 1, 2); the soft targets do not hurt the student (they help a little in this short
    # run, by 0.02 to 0.06, too little to assert).
    assert teacher < min(hard, distilled) - 0.05, proc.stdout
    assert distilled < hard + 0.05, proc.stdout
    for bar in ("teacher", "student, hard", "student, distilled"):
        assert bar in proc.stderr  # the tqdm progress bars
