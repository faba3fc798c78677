"""Inputs users pass: empty batches, empty class axes, hyperparameters as jit
arguments, options outside their domain, a label that ``where`` hides."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from scipy import special

import jxent
from jxent import losses
from jxent.metrics import LogLoss

INT_CE = losses.softmax_cross_entropy_with_integer_labels
N, K = 5, 4


def _logits(seed, shape=(N, K), scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _probs(seed, shape=(N, K)):
    p = np.random.default_rng(seed).gamma(1.0, size=shape)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _labels(seed, shape=(N,)):
    return np.random.default_rng(seed).integers(0, K, shape).astype(np.int32)


# Every loss on logits [..., K] and its second argument, built from a shape.
_SECOND = {
    "softmax_cross_entropy": lambda shape: np.zeros(shape, np.float32),
    "poly_loss_cross_entropy": lambda shape: np.zeros(shape, np.float32),
    "kl_divergence": lambda shape: np.zeros(shape, np.float32),
    "kl_divergence_with_log_targets": lambda shape: np.zeros(shape, np.float32),
    "generalized_kl_divergence": lambda shape: np.zeros(shape, np.float32),
    "distillation_loss": lambda shape: np.zeros(shape, np.float32),
    "softmax_cross_entropy_with_integer_labels": lambda shape: np.zeros(shape[:-1], np.int32),
}


# --- empty batches and empty class axes ----------------------------------------------


@pytest.mark.parametrize("name", sorted(_SECOND))
@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 3)])
def test_an_empty_batch_gives_an_empty_result(name, shape):
    fn = getattr(losses, name)
    second = _SECOND[name](shape)
    result = fn(np.zeros(shape, np.float32), second)
    chex.assert_shape(result, shape[:-1])
    chex.assert_type(result, jnp.float32)
    if hasattr(optax.losses, name):
        chex.assert_shape(
            getattr(optax.losses, name)(np.zeros(shape, np.float32), second), shape[:-1]
        )
    grad = jax.grad(lambda z: fn(z, second).sum())(np.zeros(shape, np.float32))
    chex.assert_shape(grad, shape)


def test_log_loss_of_an_empty_batch_changes_nothing():
    metric = LogLoss.empty().update(_logits(0), _labels(1))
    updated = metric.update(np.zeros((0, K), np.float32), np.zeros((0,), np.int32))
    chex.assert_trees_all_equal(updated, metric)
    assert float(LogLoss.empty().update(np.zeros((0, K)), np.zeros((0,), int)).count) == 0


_FIRST_NAME = {
    "kl_divergence": "log_predictions",
    "kl_divergence_with_log_targets": "log_predictions",
    "generalized_kl_divergence": "log_predictions",
    "distillation_loss": "student_logits",
}


@pytest.mark.parametrize("name", sorted(_SECOND))
def test_an_empty_class_axis_raises_naming_the_argument(name):
    fn, shape = getattr(losses, name), (3, 0)
    with pytest.raises(ValueError, match=_FIRST_NAME.get(name, "logits")):
        fn(np.zeros(shape, np.float32), _SECOND[name](shape))


def test_an_empty_class_axis_among_several_raises():
    with pytest.raises(ValueError, match="logits"):
        INT_CE(np.zeros((3, 2, 0), np.float32), np.zeros(3, np.int32), (1, 2))
    with pytest.raises(ValueError, match="logits_shard"):
        jxent.sharding.vocab_parallel_cross_entropy(
            np.zeros((3, 0), np.float32), np.zeros(3, np.int32), axis_name="vocab"
        )


# --- hyperparameters as jit arguments ------------------------------------------------

# name -> (loss of (logits, value), a value inside the domain)
_TRACED = {
    "label_smoothing": (lambda z, v: INT_CE(z, _labels(2), label_smoothing=v), 0.2),
    "z_loss": (lambda z, v: INT_CE(z, _labels(2), z_loss=v), 0.05),
    "dense label_smoothing": (
        lambda z, v: losses.softmax_cross_entropy(z, _probs(3), label_smoothing=v),
        0.3,
    ),
    "dense z_loss": (lambda z, v: losses.softmax_cross_entropy(z, _probs(3), z_loss=v), 0.05),
    "temperature": (lambda z, v: losses.distillation_loss(z, _logits(4), temperature=v), 2.5),
    "alpha": (lambda z, v: losses.sigmoid_focal_loss(z, _probs(5), alpha=v), 0.3),
    "gamma": (lambda z, v: losses.sigmoid_focal_loss(z, _probs(5), gamma=v), 1.5),
    "epsilon": (lambda z, v: losses.poly_loss_cross_entropy(z, _probs(6), epsilon=v), -1.0),
    "pos_weight": (
        lambda z, v: losses.sigmoid_binary_cross_entropy(z, _probs(7), pos_weight=v),
        3.0,
    ),
    "class_weights": (
        lambda z, v: INT_CE(z, _labels(2), class_weights=v * jnp.arange(1.0, K + 1)),
        0.5,
    ),
}


@pytest.mark.parametrize("name", sorted(_TRACED))
def test_a_hyperparameter_may_be_a_jit_argument(name):
    fn, value = _TRACED[name]
    logits = _logits(8)
    concrete = jax.jit(lambda z: fn(z, value))(logits)
    traced = jax.jit(fn)(logits, value)
    chex.assert_trees_all_close(traced, concrete, rtol=1e-6, atol=1e-7)
    # A schedule: vmap over values gives each value's loss.
    schedule = np.array([value, value / 2], np.float32)
    both = jax.jit(jax.vmap(fn, (None, 0)))(logits, schedule)
    chex.assert_trees_all_close(both[1], jax.jit(lambda z: fn(z, value / 2))(logits), rtol=1e-6)
    chex.assert_trees_all_close(both[0], concrete, rtol=1e-6, atol=1e-7)


@pytest.fixture
def quick_compiles():
    """check_grads compiles a dozen programs, each run once on a few numbers:
    XLA's optimisation passes cost more than they save there."""
    before = jax.config.values.get("jax_disable_most_optimizations", False)
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.mark.parametrize(
    "name", ["label_smoothing", "z_loss", "dense label_smoothing", "dense z_loss", "temperature"]
)
def test_derivatives_in_a_traced_hyperparameter(name, x64, quick_compiles):
    fn, value = _TRACED[name]
    logits = jnp.asarray(_logits(9), jnp.float64)
    check_grads(
        jax.jit(lambda v: fn(logits, v)), (jnp.float64(value),), order=2, modes=("fwd", "rev")
    )


def test_hyperparameter_derivatives_match_float64_formulas(x64):
    z, y = _logits(10).astype(np.float64), _labels(11)
    lse = special.logsumexp(z, axis=-1)
    gap = lse[:, None] - z
    label_gap = gap[np.arange(N), y]

    def loss(alpha, lam):
        return INT_CE(jnp.asarray(z), y, label_smoothing=alpha, z_loss=lam)

    d_alpha, d_lambda = jax.jacfwd(loss, (0, 1))(0.3, 0.01)
    np.testing.assert_allclose(d_alpha, gap.mean(-1) - label_gap, rtol=1e-10)
    np.testing.assert_allclose(d_lambda, lse**2, rtol=1e-10)


# --- option domains ------------------------------------------------------------------

_OUT_OF_DOMAIN = {
    "label_smoothing": 1.5,
    "z_loss": -0.1,
    "dense label_smoothing": -0.2,
    "dense z_loss": -1.0,
    "temperature": 0.0,
    "alpha": 1.5,
    "gamma": -1.0,
}


@pytest.mark.parametrize("name", sorted(_OUT_OF_DOMAIN))
def test_an_option_outside_its_domain(name):
    fn, _ = _TRACED[name]
    bad, argument = _OUT_OF_DOMAIN[name], name.split()[-1]
    logits = _logits(12)
    # Concrete: a ValueError naming the argument, at trace time.
    with pytest.raises(ValueError, match=argument):
        fn(logits, bad)
    # Traced: NaN, and an error under the validation mode.
    assert np.all(np.isnan(jax.jit(fn)(logits, bad)))
    error, _ = jax.jit(jxent.checked(fn))(logits, bad)
    with pytest.raises(Exception, match=f"{argument} must be"):
        error.throw()
    error, _ = jax.jit(jxent.checked(fn))(logits, _TRACED[name][1])
    assert error.get() is None


@pytest.mark.parametrize("ignore_index", [2.5, "-100", True, np.float32(1)])
def test_ignore_index_must_be_an_int_or_none(ignore_index):
    logits, labels = _logits(13), _labels(14)
    for fn in (INT_CE, LogLoss.empty().update):
        with pytest.raises(TypeError, match="ignore_index"):
            fn(logits, labels, ignore_index=ignore_index)
    assert INT_CE(logits, labels, ignore_index=np.int64(2)).shape == (N,)


@pytest.mark.parametrize("pos_weight", [np.ones(K + 1), np.ones((N, K, 1)), np.ones((2, 1, 1))])
def test_pos_weight_of_the_wrong_shape_names_itself(pos_weight):
    with pytest.raises(ValueError, match="pos_weight"):
        losses.sigmoid_binary_cross_entropy(_logits(15), _probs(16), pos_weight=pos_weight)


@pytest.mark.parametrize("alpha", [np.full(K + 1, 0.5), np.full((3, N, K), 0.5)])
def test_focal_alpha_of_the_wrong_shape_names_itself(alpha):
    with pytest.raises(ValueError, match="alpha"):
        losses.sigmoid_focal_loss(_logits(15), _probs(16), alpha=alpha)


@pytest.mark.parametrize("where", [np.ones(N + 1, bool), np.ones((N, K), bool)])
def test_log_loss_where_of_the_wrong_shape_names_where(where):
    with pytest.raises(ValueError, match="where"):
        LogLoss.empty().update(_logits(17), _labels(18), where=where)
    with pytest.raises(TypeError, match="where"):
        LogLoss.empty().update(_logits(17), _labels(18), where=np.ones(N))


def test_log_loss_where_counts_as_slicing():
    logits, labels = _logits(19), _labels(20)
    keep = np.array([True, False, True, True, False])
    masked = LogLoss.empty().update(logits, labels, where=keep)
    sliced = LogLoss.empty().update(logits[keep], labels[keep])
    chex.assert_trees_all_close(masked.mean(), sliced.mean(), rtol=1e-6)
    assert float(masked.count) == keep.sum()


# --- a label that where hides ---------------------------------------------------------


def test_a_label_hidden_by_where_keeps_optaxs_negative_value():
    logits = np.array([[0.0, 5.0, 1.0]], np.float32)
    where = np.array([[True, False, True]])
    labels = np.array([1], np.int32)
    ours = INT_CE(logits, labels, where=where)
    # log Σ_{unmasked} e^z − z_label, with z_label read unmasked: negative.
    _expected = special.logsumexp([0.0, 1.0]) - 5.0
    chex.assert_trees_all_close(ours, np.array([_expected], np.float32), rtol=1e-6)
    theirs = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels, where=where)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6)
    assert "negative" in losses.softmax_cross_entropy_with_integer_labels.__doc__


@pytest.mark.parametrize(
    "targets",
    [[0.5, 0.6, 0.1], [-0.2, 0.6, 0.6], [float("nan"), 0.5, 0.5]],
    ids=["unnormalised", "negative", "nan"],
)
def test_validation_mode_checks_the_kl_loss_targets(targets):
    log_predictions = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    checked = jax.jit(jxent.checked(jxent.losses.kl_divergence))
    error, _ = checked(log_predictions, jnp.array(targets))
    assert error.get() is not None and "targets" in error.get()
    error, _ = checked(log_predictions, jnp.array([0.2, 0.3, 0.5]))
    assert error.get() is None
