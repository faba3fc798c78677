"""README.md says what it does: its set-up commands, the CI script, its first example."""

import math
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

EXAMPLE_COMMAND = "pip install -e '.[examples]' && python examples/train_digits.py"
TEST_COMMAND = "pip install -e '.[test]' && pytest"


def code_blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def ci_commands():
    lines = (line.split("#", 1)[0].strip() for line in CI_RUN.splitlines())
    return [line for line in lines if line]


def test_setup_commands_are_in_readme_verbatim():
    commands = [line.strip() for block in code_blocks("bash") for line in block.splitlines()]
    assert EXAMPLE_COMMAND in commands
    assert TEST_COMMAND in commands
    # The two set-up commands come before everything else that is run.
    assert commands[:2] == [EXAMPLE_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command():
    install, run = (part.strip() for part in TEST_COMMAND.split("&&"))
    commands = ci_commands()
    assert install in commands
    assert run in commands
    assert commands.index(install) < commands.index(run)


def test_example_and_extras_exist():
    assert (ROOT / "examples" / "train_digits.py").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for extra in ("test", "examples", "notebooks"):
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra


def test_before_and_after_block_prints_what_it_says():
    """Each commented line of README's first Python block evaluates to its comment."""
    block = code_blocks("python")[0]
    namespace: dict = {}
    checked = 0
    for line in block.splitlines():
        code, _, comment = line.partition("#")
        code, comment = code.strip(), comment.strip()
        if not code:
            continue
        if not comment:
            exec(code, namespace)
            continue
        expected = eval(comment, {"nan": math.nan, "inf": math.inf})
        actual = np.asarray(eval(code, namespace))
        np.testing.assert_array_equal(
            actual, np.asarray(expected, dtype=actual.dtype), err_msg=line
        )
        checked += 1
    assert checked >= 4


def test_usage_block_runs():
    exec(code_blocks("python")[1], {})
