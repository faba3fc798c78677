"""optax 0.2.8's reading of ``axis`` and ``where``, name by name.

Tuple axes in the order given, ``axis=None``, a ``where`` of lower rank (a row
mask for the softmax cross-entropies, a class mask for the KL losses, both for
PolyLoss), integer labels in the dense loss, and optax's signatures; each
checked against optax on the same inputs and against slicing or ``moveaxis``.
"""

import inspect

import chex
import jax
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from jxent import losses

INT_CE = losses.softmax_cross_entropy_with_integer_labels
KL_LOSSES = ["kl_divergence", "kl_divergence_with_log_targets", "generalized_kl_divergence"]


def _logits(seed, shape, scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _probs(seed, shape, axis=-1):
    p = np.random.default_rng(seed).gamma(1.0, size=shape)
    return (p / p.sum(axis=axis, keepdims=True)).astype(np.float32)


def _close(actual, expected, rtol=1e-5, atol=1e-6):
    chex.assert_tree_all_finite(actual)
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol)


def _kl_inputs(name, seed, shape, axis=-1):
    """(first, second) arguments of a KL loss: log-probabilities and targets."""
    log_predictions = special.log_softmax(_logits(seed, shape), axis=axis).astype(np.float32)
    targets = _probs(seed + 1, shape, axis=axis)
    if name == "kl_divergence_with_log_targets":
        targets = np.log(targets)
    return log_predictions, targets


# --- tuple axes in the order given ---------------------------------------------------


def _flat_label_reference(logits, labels, axes):
    """float64: the class axes moved last in the order given, flattened, and
    logsumexp minus the label's logit."""
    batch = [a for a in range(logits.ndim) if a not in axes]
    z = np.transpose(logits.astype(np.float64), batch + list(axes))
    z = z.reshape(*z.shape[: len(batch)], -1)
    z_k = np.take_along_axis(z, labels[..., None], axis=-1)[..., 0]
    return special.logsumexp(z, axis=-1) - z_k


def test_integer_label_is_a_flat_index_in_the_order_given():
    logits, label = np.arange(6.0, dtype=np.float32).reshape(1, 2, 3), np.array([1])
    # Class axes (2, 1): label 1 is logits[0, 1, 0] = 3, loss lse(0..5) - 3.
    expected = np.array([special.logsumexp(np.arange(6.0)) - 3.0])
    for axis in [(2, 1), (-1, -2)]:
        _close(INT_CE(logits, label, axis), expected)
        _close(
            INT_CE(logits, label, axis),
            optax.losses.softmax_cross_entropy_with_integer_labels(logits, label, axis),
        )


@settings(deadline=None, max_examples=12)
@given(data=st.data())
def test_integer_labels_tuple_axis_matches_optax_and_float64(data):
    shape = tuple(data.draw(st.lists(st.integers(2, 4), min_size=3, max_size=4)))
    axes = data.draw(st.permutations(range(len(shape))))[: data.draw(st.integers(1, 2))]
    axes = tuple(a - len(shape) if data.draw(st.booleans()) else a for a in axes)
    canonical = [a % len(shape) for a in axes]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    logits = rng.normal(scale=2.0, size=shape).astype(np.float32)
    batch = tuple(n for a, n in enumerate(shape) if a not in canonical)
    labels = rng.integers(0, np.prod([shape[a] for a in canonical]), batch).astype(np.int32)
    ours = jax.jit(INT_CE, static_argnums=2)(logits, labels, axes)
    chex.assert_shape(ours, batch)
    _close(ours, _flat_label_reference(logits, labels, canonical))
    optax_loss = optax.losses.softmax_cross_entropy_with_integer_labels
    _close(ours, jax.jit(optax_loss, static_argnums=2)(logits, labels, axes))


def test_integer_labels_tuple_axis_gradient_matches_optax():
    logits, labels = _logits(1, (3, 4, 5)), np.array([0, 7, 19], np.int32)

    def grad(fn):
        return jax.grad(lambda z: fn(z, labels, (2, 1)).sum())(logits)

    _close(grad(INT_CE), grad(optax.losses.softmax_cross_entropy_with_integer_labels))


# --- a per-row where with a tuple axis -----------------------------------------------


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "integer_labels"])
def test_tuple_axis_with_a_row_mask_matches_optax_and_slicing(name):
    logits = _logits(2, (5, 3, 4))
    rows = np.array([True, False, True, True, False])
    if name == "integer_labels":
        ours_fn, theirs_fn = INT_CE, optax.losses.softmax_cross_entropy_with_integer_labels
        labels = np.array([0, 11, 5, 7, 2], np.int32)
    else:
        ours_fn, theirs_fn = losses.softmax_cross_entropy, optax.losses.softmax_cross_entropy
        labels = _probs(3, (5, 3, 4), axis=(1, 2))
    ours = ours_fn(logits, labels, (2, 1), rows)
    _close(ours, theirs_fn(logits, labels, (2, 1), rows))
    np.testing.assert_array_equal(np.asarray(ours)[~rows], 0.0)
    _close(ours[rows], ours_fn(logits[rows], labels[rows], (2, 1)))


# --- axis=None -----------------------------------------------------------------------

_NONE_AXIS = {
    "softmax_cross_entropy": lambda: (_logits(4, (3, 4)), _probs(5, (3, 4), axis=None)),
    "poly_loss_cross_entropy": lambda: (_logits(4, (3, 4)), _probs(5, (3, 4), axis=None)),
    **{name: (lambda name=name: _kl_inputs(name, 6, (3, 4), axis=None)) for name in KL_LOSSES},
}


@pytest.mark.parametrize("name", sorted(_NONE_AXIS))
def test_axis_none_makes_every_axis_a_class_axis(name):
    a, b = _NONE_AXIS[name]()
    ours, theirs = getattr(losses, name), getattr(optax.losses, name)
    result = ours(a, b, axis=None)
    chex.assert_shape(result, ())
    _close(result, theirs(a, b, axis=None))
    _close(result, ours(a.reshape(1, -1), b.reshape(1, -1))[0])
    where = np.random.default_rng(7).random((3, 4)) < 0.6
    where[0, 0] = True
    if name != "kl_divergence_with_log_targets":  # optax gives NaN at a masked -inf
        _close(ours(a, b, axis=None, where=where), theirs(a, b, axis=None, where=where))
    # Every kept class, flattened: where against slicing.
    kept = ours(a[where][None], b[where][None])[0]
    if name not in ("softmax_cross_entropy", "poly_loss_cross_entropy"):
        _close(ours(a, b, axis=None, where=where), kept)


# --- a where of lower rank -----------------------------------------------------------


@pytest.mark.parametrize("name", KL_LOSSES)
def test_kl_where_of_lower_rank_is_a_class_mask_as_in_optax(name):
    a, b = _kl_inputs(name, 8, (4, 3))
    classes = np.array([True, False, True])
    ours = getattr(losses, name)(a, b, -1, classes)
    _close(ours, getattr(optax.losses, name)(a, b, -1, classes))
    _close(ours, getattr(losses, name)(a[:, classes], b[:, classes]))
    # [T, K] on [B, T, K]: it broadcasts from the right as well.
    a, b = _kl_inputs(name, 9, (2, 3, 5))
    mask = np.random.default_rng(10).random((3, 5)) < 0.6
    ours = getattr(losses, name)(a, b, where=mask)
    _close(ours, getattr(optax.losses, name)(a, b, where=mask))


def test_kl_class_mask_of_lower_rank_on_a_square_batch():
    # [3, 3] inputs and a [3] mask: classes, not rows (the batch size is K here).
    log_predictions = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]]))
    targets = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]])
    where = np.array([True, False, True])
    expected = np.sum(where * targets * (np.log(targets) - log_predictions), axis=-1)
    ours = losses.kl_divergence(
        log_predictions.astype(np.float32), targets.astype(np.float32), where=where
    )
    _close(ours, expected)
    _close(ours, optax.losses.kl_divergence(log_predictions, targets, where=where))


def test_poly_loss_where_of_lower_rank_matches_optax():
    logits, labels = _logits(11, (3, 3)), _probs(12, (3, 3))
    where = np.array([True, False, True])
    ours = losses.poly_loss_cross_entropy(logits, labels, where=where)
    _close(ours, optax.losses.poly_loss_cross_entropy(logits, labels, where=where))
    # float64, by the reading the docstring states: the cross-entropy masks
    # rows, the ε term masks classes in its softmax and its sum.
    z, y = logits.astype(np.float64), labels.astype(np.float64)
    ce = np.where(where, -np.sum(y * special.log_softmax(z, axis=-1), axis=-1), 0.0)
    p = special.softmax(np.where(where, z, -np.inf), axis=-1)
    _close(ours, ce + 2.0 * np.sum(where * y * (1 - p), axis=-1))
    # Shapes optax cannot read both ways raise, naming where.
    with pytest.raises(ValueError, match="where"):
        losses.poly_loss_cross_entropy(_logits(13, (4, 3)), _probs(14, (4, 3)), where=where)


def test_poly_loss_row_mask_of_full_rank_equals_slicing():
    logits, labels = _logits(15, (5, 4)), _probs(16, (5, 4))
    rows = np.array([True, False, True, False, True])
    ours = losses.poly_loss_cross_entropy(logits, labels, where=rows[:, None])
    _close(ours, optax.losses.poly_loss_cross_entropy(logits, labels, where=rows[:, None]))
    np.testing.assert_array_equal(np.asarray(ours)[~rows], 0.0)
    _close(ours[rows], losses.poly_loss_cross_entropy(logits[rows], labels[rows]))


# --- labels and signatures -----------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "safe_softmax_cross_entropy"])
@pytest.mark.parametrize("dtype", [np.int32, np.bool_])
def test_integer_and_boolean_labels_in_the_dense_loss(name, dtype):
    logits = _logits(17, (6, 4))
    targets = np.eye(4)[np.random.default_rng(18).integers(0, 4, 6)]
    ours = getattr(losses, name)(logits, targets.astype(dtype))
    chex.assert_type(ours, np.float32)
    _close(ours, getattr(optax.losses, name)(logits, targets.astype(dtype)))
    _close(ours, getattr(losses, name)(logits, targets.astype(np.float32)))


@pytest.mark.parametrize("name", [n for n in losses.__all__ if hasattr(optax.losses, n)])
def test_optax_parameters_in_optax_order_and_the_rest_keyword_only(name):
    ours = inspect.signature(getattr(losses, name)).parameters
    theirs = inspect.signature(getattr(optax.losses, name)).parameters
    for (ours_name, ours_p), (theirs_name, theirs_p) in zip(ours.items(), theirs.items()):
        assert (ours_name, ours_p.kind) == (theirs_name, theirs_p.kind), name
    for extra in list(ours)[len(theirs) :]:
        assert ours[extra].kind is inspect.Parameter.KEYWORD_ONLY, (name, extra)
    assert list(ours)[: len(theirs)] == list(theirs), name


@pytest.mark.parametrize("axis", [1.0, "1", (0, 0), 2, (), [0.5]])
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "integer_labels", "kl_divergence"])
def test_a_bad_axis_names_axis(name, axis):
    logits = _logits(19, (3, 4))
    fn = {
        "softmax_cross_entropy": lambda: losses.softmax_cross_entropy(
            logits, _probs(20, (3, 4)), axis
        ),
        "integer_labels": lambda: INT_CE(logits, np.zeros(3, np.int32), axis),
        "kl_divergence": lambda: losses.kl_divergence(logits, _probs(20, (3, 4)), axis),
    }[name]
    with pytest.raises((TypeError, ValueError), match="axis"):
        fn()
