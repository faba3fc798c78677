"""The validation mode: run-time problems become checkify errors; zero cost otherwise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jxent
from jxent import losses

INT_CE = losses.softmax_cross_entropy_with_integer_labels
LOGITS = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
PROBS = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)), jnp.float32))


def _primitive_names(jaxpr):
    """Every primitive in a jaxpr, nested jaxprs included."""
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    names.extend(_primitive_names(sub))
    return names


def _raises(error, *fragments):
    assert error.get() is not None
    with pytest.raises(checkify.JaxRuntimeError) as raised:
        error.throw()
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))


_BAD_INPUTS = {
    "label too large": (INT_CE, (LOGITS, jnp.array([0, 1, 5, 2])), ("labels out of range", "5")),
    "label negative": (INT_CE, (LOGITS, jnp.array([0, -1, 2, 3])), ("labels out of range", "-1")),
    "label not ignore_index": (
        lambda z, y: INT_CE(z, y, ignore_index=-100),
        (LOGITS, jnp.array([0, -100, -7, 3])),
        ("labels out of range", "-7"),
    ),
    "negative probabilities": (
        losses.softmax_cross_entropy,
        (LOGITS, PROBS.at[1].set(jnp.array([1.2, -0.2, 0.0, 0.0, 0.0]))),
        ("labels", "negative probabilities"),
    ),
    "labels not summing to 1": (
        losses.softmax_cross_entropy,
        (LOGITS, PROBS.at[2, 0].add(0.1)),
        ("labels", "does not sum to 1"),
    ),
    "NaN logits, integer labels": (
        INT_CE,
        (LOGITS.at[0, 3].set(jnp.nan), jnp.array([0, 1, 2, 3])),
        ("logits", "NaN"),
    ),
    "NaN logits, probability labels": (
        losses.softmax_cross_entropy,
        (LOGITS.at[3, 1].set(jnp.nan), PROBS),
        ("logits", "NaN"),
    ),
    "NaN logits, sigmoid": (
        losses.sigmoid_binary_cross_entropy,
        (LOGITS.at[0, 0].set(jnp.nan), PROBS),
        ("logits", "NaN"),
    ),
    "NaN log_predictions, KL": (
        losses.kl_divergence,
        (jnp.log(PROBS).at[1, 1].set(jnp.nan), PROBS),
        ("log_predictions", "NaN"),
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_checked_raises_naming_the_problem_under_jit(case):
    fn, args, fragments = _BAD_INPUTS[case]
    error, out = jax.jit(jxent.checked(fn))(*args)
    _raises(error, *fragments)
    # The output is the plain function's output (NaN where the input is bad).
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(fn)(*args)))


_GOOD_INPUTS = {
    "integer labels": (INT_CE, (LOGITS, jnp.array([0, 1, 4, 2]))),
    "ignore_index labels": (
        lambda z, y: INT_CE(z, y, ignore_index=-100, label_smoothing=0.1),
        (LOGITS, jnp.array([0, -100, 4, -100])),
    ),
    "probability labels": (losses.softmax_cross_entropy, (LOGITS, PROBS)),
    "masked probability labels": (
        # Garbage (NaN logits, stray label mass) in a masked class is not looked at.
        lambda z, y: losses.softmax_cross_entropy(z, y, where=(jnp.arange(5) != 2)[None]),
        (LOGITS.at[:, 2].set(jnp.nan), PROBS.at[:, 2].set(0.0) / (1 - PROBS[:, 2:3])),
    ),
    "one-hot labels": (losses.softmax_cross_entropy, (LOGITS, jax.nn.one_hot(jnp.arange(4), 5))),
    "sigmoid": (losses.sigmoid_focal_loss, (LOGITS, PROBS)),
    "kl": (losses.kl_divergence, (jnp.log(PROBS), PROBS)),
    "distillation": (lambda s, t: losses.distillation_loss(s, t, temperature=2.0), (LOGITS, PROBS)),
}


@pytest.mark.parametrize("case", sorted(_GOOD_INPUTS))
def test_checked_is_silent_on_good_input(case):
    fn, args = _GOOD_INPUTS[case]
    error, out = jax.jit(jxent.checked(fn))(*args)
    assert error.get() is None
    error.throw()  # does not raise
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(fn)(*args)))
    assert np.isfinite(np.asarray(out)).all()


def test_checked_works_without_jit_and_leaves_the_function_unchanged():
    labels = jnp.array([0, 7, 1, 2])
    error, out = jxent.checked(INT_CE)(LOGITS, labels)
    _raises(error, "labels out of range", "7")
    plain = INT_CE(LOGITS, labels)  # still no error, just NaN for the bad example
    assert np.isnan(plain[1]) and np.isfinite(np.asarray(plain)[[0, 2, 3]]).all()
    np.testing.assert_array_equal(np.asarray(out), np.asarray(plain))


def test_validation_mode_with_users_own_checkify():
    def train_step(z, y):
        return INT_CE(z, y).mean()

    checked_step = checkify.checkify(jax.jit(train_step), errors=checkify.user_checks)
    with jxent.validation_mode():
        error, _ = checked_step(LOGITS, jnp.array([0, 1, 2, 9]))
        good_error, good = checked_step(LOGITS, jnp.array([0, 1, 2, 3]))
    _raises(error, "labels out of range", "9")
    assert good_error.get() is None
    np.testing.assert_allclose(good, train_step(LOGITS, jnp.array([0, 1, 2, 3])), rtol=1e-6)
    # Outside the block the same checkify finds nothing to check.
    error, _ = checked_step(LOGITS, jnp.array([0, 1, 2, 9]))
    assert error.get() is None


def test_jitted_function_is_checked_after_a_plain_call_and_plain_after_a_checked_one():
    step = jax.jit(lambda z, y: INT_CE(z, y) * 2.0)
    bad = jnp.array([0, 1, 2, 5])
    assert np.isnan(step(LOGITS, bad)[3])  # traced without checks first
    error, _ = jxent.checked(step)(LOGITS, bad)
    _raises(error, "labels out of range")  # the cached plain trace is not reused
    other = jax.jit(lambda z, y: INT_CE(z, y) * 3.0)
    error, _ = jxent.checked(other)(LOGITS, bad)  # traced with checks first
    _raises(error, "labels out of range")
    assert np.isnan(other(LOGITS, bad)[3])  # and a plain call still works


@pytest.mark.parametrize(
    "fn, args",
    [
        (INT_CE, (LOGITS, jnp.array([0, 1, 2, 3]))),
        (losses.softmax_cross_entropy, (LOGITS, PROBS)),
        (losses.sigmoid_binary_cross_entropy, (LOGITS, PROBS)),
        (losses.kl_divergence, (jnp.log(PROBS), PROBS)),
    ],
)
def test_plain_function_has_no_check_ops(fn, args):
    plain = jax.make_jaxpr(fn)(*args)
    with jxent.validation_mode():
        checked = jax.make_jaxpr(fn)(*args)
    assert "check" not in _primitive_names(plain.jaxpr)
    assert "check" in _primitive_names(checked.jaxpr)
    assert len(plain.eqns) < len(checked.eqns)
    # And the mode does not leak out of its block.
    assert len(jax.make_jaxpr(fn)(*args).eqns) == len(plain.eqns)
