"""examples/sharded_eval.py runs end to end and its two paths agree."""

import pathlib
import re
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "sharded_eval.py"


def test_sharded_and_single_device_paths_agree():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--tokens", "256", "--dim", "32", "--vocab", "1000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = dict(re.findall(r"^(sharded|single-device)\s+256\s+([\d.]+)", result.stdout, re.M))
    assert set(rows) == {"sharded", "single-device"}, result.stdout
    assert abs(float(rows["sharded"]) - float(rows["single-device"])) < 1e-5
    assert "mesh {'data': 2, 'vocab': 4}" in result.stdout
