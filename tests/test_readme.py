"""README.md says what it does: its set-up commands, the CI script, and every Python block.

Every ```python block runs as written, each in a fresh namespace (no block leans on
another); a block that sets up 8 host devices runs in a subprocess of its own. A trailing
comment that begins with a value (a number, ``nan``, ``inf`` or a bracketed list of them,
as NumPy prints them) states what the line evaluates to, and is checked to the digits it
shows, the sign of a zero included; ``# raises Name: "message ..."`` states the error the
line raises. Some sections' blocks are then checked against an independent computation.
"""

import ast
import io
import math
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
from scipy import special

ROOT = Path(__file__).resolve().parents[1]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
CI_RUN = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

EXAMPLE_COMMAND = "pip install -e '.[examples]' && python examples/train_digits.py"
TEST_COMMAND = "pip install -e '.[test]' && pytest"
DEVICE_FLAG = "--xla_force_host_platform_device_count=8"

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", flags=re.M | re.S)


def code_blocks(language):
    return [match[2] for match in _FENCE.finditer(README) if match[1] == language]


def _python_blocks():
    """(section title, first README line of the code, code) of every Python block."""
    blocks = []
    for match in _FENCE.finditer(README):
        if match[1] != "python":
            continue
        titles = re.findall(r"^#+ (.*)$", README[: match.start()], flags=re.M)
        first_line = README.count("\n", 0, match.start(2)) + 1
        blocks.append((titles[-1], first_line, match[2]))
    return blocks


BLOCKS = _python_blocks()


def _block_ids():
    seen: dict[str, int] = {}
    ids = []
    for title, _, _ in BLOCKS:
        seen[title] = seen.get(title, 0) + 1
        ids.append(title if seen[title] == 1 else f"{title} {seen[title]}")
    return ids


# --- Comments that state a value ---------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)", flags=re.I)
_SCALAR = re.compile(rf"({_NUMBER.pattern})(?=$|[\s:;,)])", flags=re.I)
_RAISES = re.compile(r'raises (\w+)(?:: "(.*?)(?:\s*\.\.\.)?")?$')


def _literal(text):
    """(value, tolerance) of one number as printed: to half a unit of its last digit,
    or to float32 rounding where it shows no decimals (``-1.``, ``64``)."""
    value = float(text)
    parts = re.fullmatch(r"[-+]?\d*(?:\.(\d*))?(?:e([-+]?\d+))?", text, flags=re.I)
    if parts is None or not math.isfinite(value):
        return value, 0.0
    decimals, exponent = len(parts[1] or ""), int(parts[2] or 0)
    rounding = 0.5 * 10.0 ** (exponent - decimals) if decimals else 0.0
    return value, rounding + 1e-6 * max(abs(value), 1.0)


def parse_value_comment(comment):
    """The value a comment starts with, as (values, tolerances) nested lists; else None."""
    comment = comment.strip()
    if not comment.startswith("["):
        match = _SCALAR.match(comment)
        return None if match is None else _literal(match[1])
    depth, end = 0, None
    for i, char in enumerate(comment):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth == 0:
            end = i + 1
            break
    if end is None or not re.match(r"$|[\s:;,)]", comment[end:]):
        return None
    stack: list[tuple[list, list]] = [([], [])]
    for token in re.findall(r"\[|\]|[^\s,\[\]]+", comment[:end]):
        if token == "[":
            stack.append(([], []))
        elif token == "]":
            values, tolerances = stack.pop()
            stack[-1][0].append(values)
            stack[-1][1].append(tolerances)
        elif _NUMBER.fullmatch(token):
            value, tolerance = _literal(token)
            stack[-1][0].append(value)
            stack[-1][1].append(tolerance)
        else:
            return None  # a shape such as [batch, seq, D], not a value
    (values,), (tolerances,) = stack[0]
    return values, tolerances


def assert_matches_comment(actual, stated, where):
    values, tolerances = stated
    actual = np.asarray(actual, dtype=np.float64)
    expected, tolerance = np.asarray(values, np.float64), np.asarray(tolerances, np.float64)
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape}, comment {values}"
    same_nan = np.isnan(actual) == np.isnan(expected)
    with np.errstate(invalid="ignore"):
        close = (actual == expected) | (np.abs(actual - expected) <= tolerance)
    signed_zero = (actual != 0) | (expected != 0) | (np.signbit(actual) == np.signbit(expected))
    ok = same_nan & (np.isnan(expected) | (close & signed_zero))
    assert ok.all(), f"{where}: evaluates to {actual.tolist()}"


# --- Running a block ---------------------------------------------------------------------


def _comments(code):
    """Line number → text of every comment in ``code``."""
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return {tok.start[0]: tok.string[1:].strip() for tok in tokens if tok.type == tokenize.COMMENT}


def run_block(index):
    """Run README's Python block ``index`` statement by statement in a fresh namespace,
    checking the comments that state a value or an error; returns the namespace."""
    title, first_line, code = BLOCKS[index]
    comments = _comments(code)
    tree = ast.parse(code)
    ast.increment_lineno(tree, first_line - 1)
    filename = str(README_PATH)
    namespace: dict = {"__name__": "__readme__"}
    checked_lines = set()
    for statement in tree.body:
        line = statement.end_lineno - first_line + 1
        comment = comments.get(line, "")
        where = f"README.md:{statement.end_lineno} ({title})"
        stated = parse_value_comment(comment)
        raises = _RAISES.match(comment)
        if stated is not None:
            assert isinstance(statement, ast.Expr), f"{where}: a value comment on a statement"
            expression = compile(ast.Expression(statement.value), filename, "eval")
            assert_matches_comment(eval(expression, namespace), stated, f"{where} # {comment}")
            checked_lines.add(line)
        elif raises is not None:
            name, message = raises[1], raises[2] or ""
            module = compile(ast.Module([statement], type_ignores=[]), filename, "exec")
            try:
                exec(module, namespace)
            except Exception as error:
                names = [cls.__name__ for cls in type(error).__mro__]
                assert name in names, f"{where}: raised {names[0]}, its comment says {name}"
                assert message in str(error), f"{where}: raised {error!r}"
            else:
                raise AssertionError(f"{where}: raised nothing, its comment says {name}")
            checked_lines.add(line)
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), filename, "exec"), namespace)
    unchecked = [
        f"README.md:{line + first_line - 1}: # {text}"
        for line, text in comments.items()
        if line not in checked_lines and (parse_value_comment(text) or _RAISES.match(text))
    ]
    assert not unchecked, f"comments that state a value but end no statement: {unchecked}"
    namespace["__checked__"] = len(checked_lines)
    return namespace


# --- What some sections compute, against independent computations -----------------------


def check_before_and_after(namespace):
    assert namespace["__checked__"] >= 4


def check_usage(namespace):
    assert namespace["__checked__"] >= 4


def check_migrating(namespace):
    """The loss is the mean over counted tokens of the smoothed cross-entropy plus z-loss,
    or (the class-weights block) PyTorch's weighted mean: Σ w_y ℓ / Σ w_y."""
    logits = np.asarray(namespace["logits"], np.float64)
    labels = np.asarray(namespace["labels"])
    if "w" in namespace:
        w = np.asarray(namespace["w"], np.float64)
        kept = labels != -100
        z = logits[kept]
        nll = special.logsumexp(z, axis=-1) - z[np.arange(len(z)), labels[kept]]
        weights = w[labels[kept]]
        np.testing.assert_allclose(namespace["loss"], (weights * nll).sum() / weights.sum(), 1e-5)
        return
    counted = labels != -100
    assert 0 < counted.sum() < counted.size  # the snippet has padding to leave out
    peak = logits.max(-1, keepdims=True)
    log_normaliser = np.log(np.exp(logits - peak).sum(-1)) + peak[..., 0]
    log_probs = logits - log_normaliser[..., None]
    classes = logits.shape[-1]
    targets = 0.9 * np.eye(classes)[np.where(counted, labels, 0)] + 0.1 / classes
    losses = -(targets * log_probs).sum(-1) + 1e-4 * log_normaliser**2
    reference = losses[counted].mean()
    np.testing.assert_allclose(namespace["loss"], reference, rtol=1e-5)
    assert not np.isclose(reference, np.where(counted, losses, 0).mean(), rtol=1e-3)


def check_validation(namespace):
    assert namespace["__checked__"] >= 1


def check_large_vocabulary(namespace):
    """The fused loss equals the dense loss of the soft-capped logits over counted tokens."""
    import chex
    import jax

    import jxent

    hidden, weight, labels = namespace["hidden"], namespace["weight"], namespace["labels"]
    logits = 30.0 * jax.numpy.tanh(hidden @ weight / 30.0)
    losses = jxent.losses.softmax_cross_entropy_with_integer_labels(
        logits, labels, ignore_index=-100, z_loss=1e-4, label_smoothing=0.1
    )
    counted = labels != -100
    assert 0 < counted.sum() < counted.size
    dense = losses.sum() / counted.sum()
    np.testing.assert_allclose(namespace["loss"], dense, rtol=1e-5)
    chex.assert_shape(namespace["d_weight"], weight.shape)
    chex.assert_tree_all_finite((namespace["d_hidden"], namespace["d_weight"]))


def check_many_devices(namespace):
    """The sharded metric equals the single-device fused loss's."""
    import jax

    import jxent

    assert jax.device_count() == 8
    hidden, weight, labels = namespace["hidden"], namespace["weight"], namespace["labels"]
    single = jxent.losses.linear_cross_entropy(hidden, weight, labels)
    metric = namespace["metric"]
    assert float(metric.count) == labels.size
    np.testing.assert_allclose(metric.mean(), single.mean(), rtol=1e-6)
    assert repr(metric).startswith(f"LogLoss(tokens={labels.size}, mean=")


def check_jit_sharding(namespace):
    """The partitioned loss equals one device's, its gradients sharded like their inputs."""
    import jax

    import jxent

    hidden, weight, labels = namespace["hidden"], namespace["weight"], namespace["labels"]
    one_device = jax.devices()[0]
    single = jxent.losses.linear_cross_entropy(
        *(jax.device_put(x, one_device) for x in (hidden, weight, labels)), reduction="mean"
    )
    np.testing.assert_allclose(namespace["loss"], single, rtol=2e-5)
    assert namespace["d_hidden"].sharding.is_equivalent_to(hidden.sharding, hidden.ndim)
    assert namespace["d_weight"].sharding.is_equivalent_to(weight.sharding, weight.ndim)


def check_reinforcement_learning(namespace):
    """The PPO recipe's log-probs and the logged statistics equal the dense ones."""
    import chex
    import jax

    hidden, weight, actions = namespace["hidden"], namespace["weight"], namespace["actions"]
    logits = hidden @ weight
    log_probs = jax.nn.log_softmax(logits / 0.9)
    chex.assert_tree_all_finite(namespace["grads"])
    chex.assert_shape(namespace["grads"][1], weight.shape)
    stats = namespace["stats"]
    dense_lse = jax.nn.logsumexp(logits, axis=-1)
    np.testing.assert_allclose(stats.logsumexp, dense_lse, rtol=1e-5)
    np.testing.assert_array_equal(stats.argmax, logits.argmax(-1))
    np.testing.assert_allclose(
        namespace["accuracy"], np.mean(np.asarray(logits.argmax(-1) == actions))
    )
    assert np.isfinite(np.asarray(log_probs)).all()


def check_distillation(namespace):
    """The fused loss equals distillation_loss plus the hard term on the dense logits."""
    import chex

    import jxent

    student = namespace["student_hidden"] @ namespace["student_weight"]
    teacher = namespace["teacher_hidden"] @ namespace["teacher_weight"]
    labels = namespace["labels"]
    counted = labels != -100
    soft = jxent.losses.distillation_loss(student, teacher, temperature=2.0)
    hard = jxent.losses.softmax_cross_entropy_with_integer_labels(
        student, labels, ignore_index=-100
    )
    want = ((soft + 0.5 * hard) * counted).sum() / counted.sum()
    np.testing.assert_allclose(namespace["loss"], want, rtol=1e-4)
    chex.assert_tree_all_finite(namespace["grads"])


SECTION_CHECKS = {
    "jxent": check_before_and_after,
    "Usage": check_usage,
    "Migrating from optax": check_migrating,
    "Validation mode": check_validation,
    "Large vocabularies": check_large_vocabulary,
    "Reinforcement learning and logging": check_reinforcement_learning,
    "Distillation": check_distillation,
    "Many devices": check_jit_sharding,
    "Inside `shard_map`": check_many_devices,
}


def run_and_check(index):
    namespace = run_block(index)
    SECTION_CHECKS.get(BLOCKS[index][0], lambda namespace: None)(namespace)


_SUBPROCESS = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("readme_blocks", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.run_and_check(int(sys.argv[2]))
print("README block ran")
"""


# --- Tests -------------------------------------------------------------------------------


def test_setup_commands_are_in_readme_verbatim():
    commands = [line.strip() for block in code_blocks("bash") for line in block.splitlines()]
    assert EXAMPLE_COMMAND in commands
    assert TEST_COMMAND in commands
    # The two set-up commands come before everything else that is run.
    assert commands[:2] == [EXAMPLE_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command():
    install, run = (part.strip() for part in TEST_COMMAND.split("&&"))
    lines = (line.split("#", 1)[0].strip() for line in CI_RUN.splitlines())
    commands = [line for line in lines if line]
    assert install in commands
    assert run in commands
    assert commands.index(install) < commands.index(run)


def test_example_and_extras_exist():
    assert (ROOT / "examples" / "train_digits.py").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for extra in ("test", "examples", "notebooks"):
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra


def test_every_section_with_python_has_its_check():
    assert {title for title, _, _ in BLOCKS} == set(SECTION_CHECKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=_block_ids())
def test_python_block_runs_as_written(index):
    if DEVICE_FLAG not in BLOCKS[index][2]:
        run_and_check(index)
        return
    env = {**os.environ, "XLA_FLAGS": DEVICE_FLAG}
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, __file__, str(index)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "README block ran" in done.stdout


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=_block_ids())
def test_python_block_uses_public_names_only(index):
    import jxent

    for name in re.findall(r"jxent\.([\w.]+)", BLOCKS[index][2]):
        assert not any(part.startswith("_") for part in name.split(".")), name
        obj = jxent
        for part in name.split("."):
            obj = getattr(obj, part)


def test_intro_states_which_losses_are_reverse_mode_only():
    """The fused loss is a custom_vjp (grad works, jvp does not); the others have custom_jvp."""
    import jax
    import jax.numpy as jnp

    import jxent

    intro = README.split("\n## ", 1)[0]
    assert "custom_vjp" in intro and "reverse mode only" in intro
    hidden, weight, labels = jnp.ones((2, 4)), jnp.ones((4, 8)), jnp.array([0, 1])

    def fused(h):
        return jxent.losses.linear_cross_entropy(h, weight, labels, reduction="mean")

    assert jax.grad(fused)(hidden).shape == hidden.shape
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(fused, (hidden,), (hidden,))
    logits = hidden @ weight

    def dense(z):
        return jxent.losses.softmax_cross_entropy_with_integer_labels(z, labels).mean()

    assert jax.jacfwd(dense)(logits).shape == logits.shape


# --- The comment checker itself ----------------------------------------------------------


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("nan", math.nan),
        ("-0.", -0.0),
        ("1.0 bit", 1.0),
        ("2.0 bits = H(P) + KL", 2.0),
        ("[inf, -1.]", [math.inf, -1.0]),
        ("[inf -1.]", [math.inf, -1.0]),
        ("[[1., 2.], [3., 4.]]: a table", [[1.0, 2.0], [3.0, 4.0]]),
        ("[-0.1966, 0.1966, -0.]: 0 on the -inf class", [-0.1966, 0.1966, -0.0]),
    ],
)
def test_value_comments_parse(comment, expected):
    values, _ = parse_value_comment(comment)
    np.testing.assert_array_equal(values, expected)
    assert np.signbit(values).tolist() == np.signbit(expected).tolist()


@pytest.mark.parametrize(
    "comment",
    [
        "padding",
        "[batch, seq, D]",
        "[D, V]: a Dense kernel",
        "K = 3: label 3 is out of range",
        'raises JaxRuntimeError: "jxent: labels out of range [0, 3) ..."',
        "LogLoss(tokens=256, mean=… nats, perplexity=…, bits_per_token=…)",
        "1.0x",
        "[1., 2.]x",
    ],
)
def test_other_comments_state_no_value(comment):
    assert parse_value_comment(comment) is None


@pytest.mark.parametrize(
    ("actual", "comment", "holds"),
    [
        (-0.0, "-0.", True),
        (-0.0, "0.", False),  # the sign of a zero is part of what is printed
        (0.0, "-0.", False),
        (1.0000001, "1.0", True),
        (1.04, "1.0", True),  # shown to one decimal
        (1.06, "1.0", False),
        (-1.3, "-1.", False),  # no decimals: exact up to float32 rounding
        (0.19661194, "0.1966", True),
        (0.19671, "0.1966", False),
        ([np.inf, -1.0], "[inf, -1.]", True),
        ([np.inf, np.nan], "[inf, -1.]", False),
        ([np.inf, np.nan], "[inf, nan]", True),
        (np.nan, "0.", False),
        ([1.0, 2.0], "1.", False),  # shapes must match
        (2.5e-3, "2.5e-3", True),
        (2.6e-3, "2.5e-3", False),
    ],
)
def test_value_comments_are_checked_to_the_digits_shown(actual, comment, holds):
    stated = parse_value_comment(comment)
    if holds:
        assert_matches_comment(actual, stated, comment)
    else:
        with pytest.raises(AssertionError):
            assert_matches_comment(actual, stated, comment)
