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
