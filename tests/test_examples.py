"""End-to-end run of examples/train_digits.py, as a user would run it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_digits.py"
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
