"""The one-hot rule (no one-hot array, no scatter, read from the jaxpr) and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend import core as jax_core

from jxent import losses

INT_CE = losses.softmax_cross_entropy_with_integer_labels
N, K = 6, 5
LOGITS = jnp.asarray(np.random.default_rng(0).normal(size=(N, K)), jnp.float32)
LABELS = jnp.array([0, 4, 2, 1, 3, 2])


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
            sub = getattr(sub, "jaxpr", sub)
            if hasattr(sub, "eqns"):
                yield sub


def _one_hot_problems(jaxpr, tainted):
    """Scatters, and float arrays converted from a bool [..., K] compare against the labels.

    ``tainted`` holds the variables computed from the labels; the taint follows
    every equation into nested jaxprs (positionally where the arities match).
    """
    problems = []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        inputs = [v for v in eqn.invars if isinstance(v, jax_core.Var)]
        from_labels = any(v in tainted for v in inputs)
        if name.startswith("scatter"):
            problems.append(name)
        if name == "convert_element_type" and from_labels:
            source, result = eqn.invars[0].aval, eqn.outvars[0].aval
            if (
                source.dtype == jnp.bool_
                and jnp.issubdtype(result.dtype, jnp.floating)
                and result.ndim >= 2
                and result.shape[-1] == K
            ):
                problems.append(f"one-hot {result.dtype}{list(result.shape)}")
        for sub in _sub_jaxprs(eqn):
            if len(sub.invars) == len(eqn.invars):
                inner = {
                    s
                    for s, v in zip(sub.invars, eqn.invars)
                    if isinstance(v, jax_core.Var) and v in tainted
                }
            else:
                inner = set(sub.invars) if from_labels else set()
            problems += _one_hot_problems(sub, inner)
        if from_labels:
            tainted.update(eqn.outvars)
    return problems


def _problems_in(transform, loss, logits=LOGITS, labels=LABELS):
    closed = jax.make_jaxpr(transform(loss))(logits, labels)
    # The labels are the second input of the traced function.
    return _one_hot_problems(closed.jaxpr, {closed.jaxpr.invars[1]})


def _grad(loss):
    return jax.grad(lambda z, y: loss(z, y).sum())


def _jacfwd(loss):
    return jax.jacfwd(loss)


def _value(loss):
    return loss


def _naive_one_hot(z, y):
    return -(jax.nn.one_hot(y, K) * jax.nn.log_softmax(z)).sum(-1)


def test_detector_finds_optax_scatter_and_a_naive_one_hot():
    # The inspection itself must be able to fail.
    problems = _problems_in(_grad, optax.losses.softmax_cross_entropy_with_integer_labels)
    assert any(p.startswith("scatter") for p in problems)
    assert any(p.startswith("one-hot") for p in _problems_in(_grad, _naive_one_hot))
    assert any(p.startswith("one-hot") for p in _problems_in(_value, _naive_one_hot))


_VARIANTS = {
    "plain": INT_CE,
    "label_smoothing": lambda z, y: INT_CE(z, y, label_smoothing=0.1),
    "class_weights": lambda z, y: INT_CE(z, y, class_weights=jnp.linspace(0.5, 2.0, K)),
    "everything": lambda z, y: INT_CE(
        z,
        y,
        where=jnp.arange(K)[None] != 3,
        ignore_index=-100,
        label_smoothing=0.2,
        z_loss=1e-4,
        class_weights=jnp.linspace(0.5, 2.0, K),
    ),
}


@pytest.mark.parametrize("transform", [_value, _grad, _jacfwd], ids=["value", "grad", "jacfwd"])
@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_integer_labels_build_no_one_hot_and_no_scatter(variant, transform):
    assert _problems_in(transform, _VARIANTS[variant]) == []


def test_integer_labels_hessian_builds_no_scatter():
    problems = _problems_in(lambda f: jax.hessian(lambda z, y: f(z, y).sum()), INT_CE)
    assert not [p for p in problems if p.startswith("scatter")]


# --- bad input: ValueError / TypeError naming the argument ------------------------------


def _raises(error, match, fn, *args, **kwargs):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize("labels", [jnp.zeros(N + 1, int), jnp.zeros((N, 1), int), jnp.zeros(())])
def test_integer_labels_of_the_wrong_shape(labels):
    labels = labels.astype(jnp.int32)
    _raises(ValueError, r"labels of shape", INT_CE, LOGITS, labels)


def test_integer_labels_that_are_floats():
    _raises(TypeError, r"labels must be integers.*float32", INT_CE, LOGITS, LABELS * 1.0)


def test_integer_labels_with_tuple_axis_check_the_batch_shape():
    logits = jnp.zeros((2, 3, 4))
    _raises(ValueError, r"labels of shape \(3,\)", INT_CE, logits, jnp.zeros(3, int), (1, 2))
    assert INT_CE(logits, jnp.zeros(2, int), (1, 2)).shape == (2,)


@pytest.mark.parametrize("weights", [jnp.ones(K + 1), jnp.ones((N, K)), jnp.ones(())])
def test_class_weights_of_the_wrong_shape(weights):
    _raises(ValueError, r"class_weights of shape", INT_CE, LOGITS, LABELS, class_weights=weights)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
@pytest.mark.parametrize("name", ["integer", "dense"])
def test_label_smoothing_outside_unit_interval(name, alpha):
    if name == "integer":
        _raises(ValueError, "label_smoothing", INT_CE, LOGITS, LABELS, label_smoothing=alpha)
    else:
        probs = jax.nn.one_hot(LABELS, K)
        _raises(
            ValueError,
            "label_smoothing",
            losses.softmax_cross_entropy,
            LOGITS,
            probs,
            label_smoothing=alpha,
        )


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(temperature):
    _raises(
        ValueError,
        "temperature",
        losses.distillation_loss,
        LOGITS,
        LOGITS,
        temperature=temperature,
    )


def test_other_bad_arguments_name_themselves():
    probs = jax.nn.one_hot(LABELS, K)
    _raises(TypeError, "logits", INT_CE, LABELS[:, None] * jnp.ones(K, int), LABELS)
    _raises(TypeError, "logits", losses.softmax_cross_entropy, jnp.ones((N, K), int), probs)
    _raises(ValueError, "logits.*labels", losses.softmax_cross_entropy, LOGITS, probs[:, :3])
    _raises(TypeError, "where", INT_CE, LOGITS, LABELS, where=jnp.ones((N, K)))
    _raises(ValueError, "where", INT_CE, LOGITS, LABELS, where=jnp.ones((N, K + 1), bool))
    _raises(ValueError, "axis", INT_CE, LOGITS, LABELS, axis=2)
    _raises(ValueError, "log_predictions.*targets", losses.kl_divergence, LOGITS, probs[:3])
