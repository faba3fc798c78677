"""jxent.losses as a drop-in for optax.losses: same names, order and values."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special

import jxent
from jxent import losses

RTOL, ATOL = 1e-5, 1e-6


def _rng(seed):
    return np.random.default_rng(seed)


# Inputs are NumPy arrays, prepared with NumPy: every eager jnp op compiles.


def _logits(seed, shape, scale=3.0):
    return _rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _probs(seed, shape, axis=-1, zeros=False):
    """Random distributions over ``axis``; with ``zeros`` about a third are 0."""
    rng = _rng(seed)
    p = rng.gamma(1.0, size=shape)
    if zeros:
        p = np.where(rng.random(shape) < 0.35, 0.0, p)
        # At least one positive entry along the class axis.
        p = p + np.where(p.sum(axis, keepdims=True) == 0, 1.0, 0.0)
    return (p / p.sum(axis, keepdims=True)).astype(np.float32)


def _class_mask(seed, shape, axis=-1):
    """A random boolean mask that leaves at least one class per row."""
    rng = _rng(seed)
    mask = rng.random(shape) < 0.7
    first = np.zeros(shape, bool)
    index = np.zeros(np.take(mask, [0], axis).shape, int)
    np.put_along_axis(first, index, True, axis)
    return mask | first


def _int_labels(seed, shape, num_classes):
    return _rng(seed).integers(0, num_classes, size=shape).astype(np.int32)


def _jit(fn):
    """``fn`` compiled whole (much faster than op-by-op); non-array args are static."""

    def call(*args, **kwargs):
        is_array = [isinstance(a, (jax.Array, np.ndarray)) for a in args]

        def inner(*arrays):
            it = iter(arrays)
            return fn(*[next(it) if a else b for a, b in zip(is_array, args)], **kwargs)

        return jax.jit(inner)(*[a for a, b in zip(args, is_array) if b])

    return call


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    chex.assert_tree_all_finite(actual)
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol)


def test_public_names_are_optax_names():
    for name in [
        "softmax_cross_entropy",
        "softmax_cross_entropy_with_integer_labels",
        "safe_softmax_cross_entropy",
        "sigmoid_binary_cross_entropy",
        "sigmoid_focal_loss",
        "poly_loss_cross_entropy",
        "kl_divergence",
        "kl_divergence_with_log_targets",
        "convex_kl_divergence",
        "generalized_kl_divergence",
    ]:
        assert hasattr(optax.losses, name), name
        assert name in losses.__all__, name
        assert callable(getattr(losses, name))
    assert "distillation_loss" in losses.__all__


# --- softmax_cross_entropy (and its safe_ alias) ---------------------------------


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "safe_softmax_cross_entropy"])
def test_softmax_cross_entropy_matches_optax(name):
    logits, labels = _logits(0, (8, 7)), _probs(1, (8, 7), zeros=True)
    ours = _jit(getattr(losses, name))(logits, labels)
    chex.assert_shape(ours, (8,))
    chex.assert_type(ours, jnp.float32)
    _close(ours, _jit(getattr(optax.losses, name))(logits, labels))

    def grad(f):
        return jax.jit(jax.grad(lambda z: f(z, labels).sum()))(logits)

    _close(grad(getattr(losses, name)), grad(getattr(optax.losses, name)))


@pytest.mark.parametrize(
    "shape, axis", [((5, 6), 0), ((3, 4, 5), 1), ((3, 4, 5), (1, 2)), ((3, 4, 5), (0, 2))]
)
def test_softmax_cross_entropy_axis_matches_optax(shape, axis):
    logits, labels = _logits(2, shape), _probs(3, shape, axis=axis)
    # optax's positional order: (logits, labels, axis, where).
    ours = _jit(losses.softmax_cross_entropy)(logits, labels, axis)
    _close(ours, _jit(optax.losses.softmax_cross_entropy)(logits, labels, axis))


def test_softmax_cross_entropy_axis_equals_moveaxis():
    logits, labels = _logits(4, (6, 3, 5)), _probs(5, (6, 3, 5), axis=0)
    moved = _jit(losses.softmax_cross_entropy)(
        np.moveaxis(logits, 0, -1), np.moveaxis(labels, 0, -1)
    )
    _close(_jit(losses.softmax_cross_entropy)(logits, labels, axis=0), moved)


def test_softmax_cross_entropy_class_mask_matches_optax():
    logits, labels = _logits(6, (8, 7)), _probs(7, (8, 7))
    where = _class_mask(8, (8, 7))
    labels = np.where(where, labels, np.float32(0))
    labels = labels / labels.sum(-1, keepdims=True)
    ours = _jit(losses.softmax_cross_entropy)(logits, labels, -1, where)
    _close(ours, _jit(optax.losses.softmax_cross_entropy)(logits, labels, -1, where))


def test_softmax_cross_entropy_row_mask_matches_optax():
    logits, labels = _logits(9, (8, 7)), _probs(10, (8, 7))
    rows = _rng(11).random(8) < 0.5
    rows[:2] = [True, False]
    ours = _jit(losses.softmax_cross_entropy)(logits, labels, where=rows)
    expected = _jit(optax.losses.softmax_cross_entropy)(logits, labels, where=rows)
    _close(ours, expected)
    np.testing.assert_array_equal(np.asarray(ours)[~np.asarray(rows)], 0.0)


def test_softmax_cross_entropy_where_equals_slicing():
    logits, labels = _logits(12, (8, 7)), _probs(13, (8, 7))
    keep = np.array([0, 2, 3, 6])
    where = np.zeros((1, 7), bool)
    where[:, keep] = True
    labels = np.zeros_like(labels)
    labels[:, keep] = _probs(14, (8, 4))
    ours = _jit(losses.softmax_cross_entropy)(logits, labels, where=jnp.asarray(where))
    _close(ours, _jit(losses.softmax_cross_entropy)(logits[:, keep], labels[:, keep]))


# --- integer labels ---------------------------------------------------------------


def test_integer_labels_match_optax():
    logits, labels = _logits(20, (16, 9)), _int_labels(21, (16,), 9)
    ours = _jit(losses.softmax_cross_entropy_with_integer_labels)(logits, labels)
    chex.assert_shape(ours, (16,))
    chex.assert_type(ours, jnp.float32)
    theirs = _jit(optax.losses.softmax_cross_entropy_with_integer_labels)(logits, labels)
    _close(ours, theirs)

    def grad(f):
        return jax.jit(jax.grad(lambda z: f(z, labels).sum()))(logits)

    _close(
        grad(losses.softmax_cross_entropy_with_integer_labels),
        grad(optax.losses.softmax_cross_entropy_with_integer_labels),
    )


@pytest.mark.parametrize(
    "shape, axis", [((6, 5), 0), ((3, 6, 5), 1), ((3, 4, 5), (1, 2)), ((3, 4, 5), (0, 2))]
)
def test_integer_labels_axis_matches_optax(shape, axis):
    logits = _logits(22, shape)
    axes = (axis,) if isinstance(axis, int) else axis
    batch = tuple(s for a, s in enumerate(shape) if a not in axes)
    labels = _int_labels(23, batch, int(np.prod([shape[a] for a in axes])))
    ours = _jit(losses.softmax_cross_entropy_with_integer_labels)(logits, labels, axis)
    theirs = _jit(optax.losses.softmax_cross_entropy_with_integer_labels)(logits, labels, axis)
    _close(ours, theirs)


def test_integer_labels_axis_equals_moveaxis():
    logits, labels = _logits(24, (7, 4, 3)), _int_labels(25, (4, 3), 7)
    moved = _jit(losses.softmax_cross_entropy_with_integer_labels)(
        np.moveaxis(logits, 0, -1), labels
    )
    _close(_jit(losses.softmax_cross_entropy_with_integer_labels)(logits, labels, axis=0), moved)


def test_integer_labels_class_mask_matches_optax():
    logits, where = _logits(26, (10, 6)), _class_mask(27, (10, 6))
    # A label on an unmasked class (the mask keeps class 0 in every row).
    labels = np.argmax(where * _rng(28).random((10, 6)), -1).astype(np.int32)
    ours = _jit(losses.softmax_cross_entropy_with_integer_labels)(logits, labels, -1, where)
    theirs = _jit(optax.losses.softmax_cross_entropy_with_integer_labels)(logits, labels, -1, where)
    _close(ours, theirs)


def test_integer_labels_row_mask_matches_optax():
    logits, labels = _logits(29, (10, 6)), _int_labels(30, (10,), 6)
    rows = _rng(31).random(10) < 0.5
    rows[:2] = [True, False]
    ours = _jit(losses.softmax_cross_entropy_with_integer_labels)(logits, labels, where=rows)
    theirs = _jit(optax.losses.softmax_cross_entropy_with_integer_labels)(
        logits, labels, where=rows
    )
    _close(ours, theirs)
    np.testing.assert_array_equal(np.asarray(ours)[~np.asarray(rows)], 0.0)


def test_integer_labels_where_equals_slicing():
    logits = _logits(32, (10, 7))
    keep = np.array([1, 2, 4, 5])
    where = np.zeros((1, 7), bool)
    where[:, keep] = True
    position = _int_labels(33, (10,), len(keep))
    labels = keep.astype(np.int32)[position]
    ours = _jit(losses.softmax_cross_entropy_with_integer_labels)(logits, labels, where=where)
    sliced = _jit(losses.softmax_cross_entropy_with_integer_labels)(logits[:, keep], position)
    _close(ours, sliced)


# --- sigmoid losses ----------------------------------------------------------------


def test_sigmoid_binary_cross_entropy_matches_optax():
    logits = _logits(40, (6, 5))
    labels = _rng(41).random((6, 5)).astype(np.float32)
    labels[:2] = [[1.0], [0.0]]
    ours = _jit(losses.sigmoid_binary_cross_entropy)(logits, labels)
    chex.assert_shape(ours, (6, 5))
    _close(ours, _jit(optax.losses.sigmoid_binary_cross_entropy)(logits, labels))
    # Broadcasting of the labels, as optax.
    _close(
        _jit(losses.sigmoid_binary_cross_entropy)(logits, labels[0]),
        _jit(optax.losses.sigmoid_binary_cross_entropy)(logits, labels[0]),
    )


@pytest.mark.parametrize("alpha, gamma", [(None, 2.0), (0.25, 2.0), (0.75, 0.0), (None, 1.5)])
def test_sigmoid_focal_loss_matches_optax(alpha, gamma):
    logits = _logits(42, (6, 5))
    labels = jnp.asarray(_rng(43).integers(0, 2, (6, 5)), jnp.float32)
    ours = _jit(losses.sigmoid_focal_loss)(logits, labels, alpha=alpha, gamma=gamma)
    theirs = _jit(optax.losses.sigmoid_focal_loss)(logits, labels, alpha=alpha, gamma=gamma)
    _close(ours, theirs)
    grads = [
        jax.jit(jax.grad(lambda z, f=f: f(z, labels, alpha=alpha, gamma=gamma).sum()))(logits)
        for f in (losses.sigmoid_focal_loss, optax.losses.sigmoid_focal_loss)
    ]
    _close(*grads, rtol=1e-4)


# --- PolyLoss ----------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [2.0, 0.5, -1.0])
def test_poly_loss_matches_optax(epsilon):
    logits, labels = _logits(50, (8, 6)), _probs(51, (8, 6), zeros=True)
    ours = _jit(losses.poly_loss_cross_entropy)(logits, labels, epsilon=epsilon)
    theirs = _jit(optax.losses.poly_loss_cross_entropy)(logits, labels, epsilon=epsilon)
    _close(ours, theirs)


@pytest.mark.parametrize("shape, axis", [((6, 5), 0), ((3, 4, 5), (1, 2))])
def test_poly_loss_axis_matches_optax(shape, axis):
    logits, labels = _logits(52, shape), _probs(53, shape, axis=axis)
    ours = _jit(losses.poly_loss_cross_entropy)(logits, labels, axis=axis)
    _close(ours, _jit(optax.losses.poly_loss_cross_entropy)(logits, labels, axis=axis))


def test_poly_loss_class_mask_matches_optax():
    logits, where = _logits(54, (8, 6)), _class_mask(55, (8, 6))
    labels = np.where(where, _probs(56, (8, 6)), np.float32(0))
    labels = labels / labels.sum(-1, keepdims=True)
    ours = _jit(losses.poly_loss_cross_entropy)(logits, labels, where=where)
    _close(ours, _jit(optax.losses.poly_loss_cross_entropy)(logits, labels, where=where))


# --- KL divergences ----------------------------------------------------------------


def _kl_inputs(seed, shape=(8, 6), axis=-1):
    log_predictions = special.log_softmax(_logits(seed, shape), axis=axis)
    return log_predictions, _probs(seed + 1, shape, axis=axis, zeros=True)


@pytest.mark.parametrize("name", ["kl_divergence", "generalized_kl_divergence"])
@pytest.mark.parametrize("shape, axis", [((8, 6), -1), ((6, 5), 0), ((3, 4, 5), (1, 2))])
def test_kl_divergence_matches_optax(name, shape, axis):
    log_predictions, targets = _kl_inputs(60, shape, axis)
    if name == "generalized_kl_divergence":
        # Unnormalised measures.
        log_predictions, targets = log_predictions + 0.3, targets * 1.7
    ours = _jit(getattr(losses, name))(log_predictions, targets, axis)
    _close(ours, _jit(getattr(optax.losses, name))(log_predictions, targets, axis))


@pytest.mark.parametrize("name", ["kl_divergence", "generalized_kl_divergence"])
def test_kl_divergence_class_mask_matches_optax(name):
    log_predictions, targets = _kl_inputs(62)
    where = _class_mask(63, (8, 6))
    ours = _jit(getattr(losses, name))(log_predictions, targets, -1, where)
    _close(ours, _jit(getattr(optax.losses, name))(log_predictions, targets, -1, where))


def test_convex_kl_divergence_is_optaxs_deprecated_alias():
    log_predictions, targets = _kl_inputs(61)
    with pytest.warns(DeprecationWarning, match="use generalized_kl_divergence"):
        ours = losses.convex_kl_divergence(log_predictions, targets + 0.2, -1)
    with pytest.warns(DeprecationWarning, match="use generalized_kl_divergence"):
        theirs = optax.losses.convex_kl_divergence(log_predictions, targets + 0.2, -1)
    _close(ours, theirs)
    _close(ours, _jit(losses.generalized_kl_divergence)(log_predictions, targets + 0.2))


def test_kl_divergence_gradients_match_optax_where_finite():
    log_predictions, targets = _kl_inputs(64)
    targets = (targets + 0.05) / (targets + 0.05).sum(-1, keepdims=True)
    for argnum in (0, 1):
        grads = [
            jax.jit(jax.grad(lambda a, b, f=f: f(a, b).sum(), argnums=argnum))(
                log_predictions, targets
            )
            for f in (losses.kl_divergence, optax.losses.kl_divergence)
        ]
        _close(*grads)


@pytest.mark.parametrize("shape, axis", [((8, 6), -1), ((6, 5), 0), ((3, 4, 5), (1, 2))])
def test_kl_divergence_with_log_targets_matches_optax(shape, axis):
    log_predictions = special.log_softmax(_logits(66, shape), axis=axis)
    log_targets = special.log_softmax(_logits(67, shape), axis=axis)
    ours = _jit(losses.kl_divergence_with_log_targets)(log_predictions, log_targets, axis)
    theirs = _jit(optax.losses.kl_divergence_with_log_targets)(log_predictions, log_targets, axis)
    _close(ours, theirs)
    where = _class_mask(68, shape, axis=axis if isinstance(axis, int) else axis[0])
    ours = _jit(losses.kl_divergence_with_log_targets)(log_predictions, log_targets, axis, where)
    theirs = _jit(optax.losses.kl_divergence_with_log_targets)(
        log_predictions, log_targets, axis, where
    )
    _close(ours, theirs)


def test_kl_divergence_axis_equals_moveaxis():
    log_predictions, targets = _kl_inputs(69, (6, 3, 4), axis=0)
    moved = _jit(losses.kl_divergence)(
        np.moveaxis(log_predictions, 0, -1), np.moveaxis(targets, 0, -1)
    )
    _close(_jit(losses.kl_divergence)(log_predictions, targets, axis=0), moved)


def test_kl_divergence_where_equals_slicing():
    log_predictions, targets = _kl_inputs(70)
    keep = np.array([0, 1, 4])
    where = np.zeros((1, 6), bool)
    where[:, keep] = True
    ours = _jit(losses.kl_divergence)(log_predictions, targets, where=jnp.asarray(where))
    sliced = _jit(losses.kl_divergence)(log_predictions[:, keep], targets[:, keep])
    _close(ours, sliced)


def test_kl_divergence_is_jxent_measure_in_optax_order():
    # kl_divergence(log q, p) = D(P‖Q): the flat measure with its arguments swapped.
    log_predictions, targets = _kl_inputs(71)
    _close(
        _jit(losses.kl_divergence)(log_predictions, targets),
        _jit(jxent.kl_divergence)(targets, np.exp(log_predictions)),
        rtol=1e-4,
    )


def test_distillation_where_of_one_rank_less_is_a_row_mask():
    # As optax's softmax cross-entropy, distillation expands it at the class axis.
    logits, teacher = _logits(72, (6, 5)), _logits(73, (6, 5))
    rows = np.array([True, False, True, True, False, True])
    fn = _jit(losses.distillation_loss)
    by_row, by_class = fn(logits, teacher, where=rows), fn(logits, teacher, where=rows[:, None])
    _close(by_row, by_class)
    np.testing.assert_array_equal(np.asarray(by_row)[~rows], 0.0)
    _close(by_row[rows], fn(logits[rows], teacher[rows]))
