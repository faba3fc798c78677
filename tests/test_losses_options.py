"""Options beyond optax: ignore_index, label_smoothing, z_loss, class_weights, pos_weight,
distillation; checked against optax and float64 NumPy/SciPy (PyTorch's options against
float64 implementations of its documented formulas: torch is not a test dependency)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy import special

from jxent import losses

INT_CE = losses.softmax_cross_entropy_with_integer_labels
N, K = 8, 6


def _logits(seed, shape=(N, K), scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _labels(seed, shape=(N,), num_classes=K):
    return np.random.default_rng(seed).integers(0, num_classes, size=shape).astype(np.int32)


def _probs(seed, shape=(N, K)):
    p = np.random.default_rng(seed).gamma(1.0, size=shape)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _jit(fn, **options):
    """``fn`` compiled whole, with ``options`` and non-array arguments static."""

    def call(*args):
        is_array = [isinstance(a, (jax.Array, np.ndarray)) for a in args]

        def inner(*arrays):
            it = iter(arrays)
            return fn(*[next(it) if a else b for a, b in zip(is_array, args)], **options)

        return jax.jit(inner)(*[a for a, b in zip(args, is_array) if b])

    return call


def _int_ce_reference(z, y, *, w=None, alpha=0.0, z_loss=0.0, mask=None, ignore=None):
    """float64 (1-α) w_k (lse - z_k) + (α/K) Σ_j w_j (lse - z_j) + λ lse², K unmasked."""
    z = np.asarray(z, np.float64)
    mask = np.broadcast_to(True if mask is None else np.asarray(mask), z.shape)
    lse = special.logsumexp(np.where(mask, z, -np.inf), axis=-1)
    w = np.ones(z.shape[-1]) if w is None else np.asarray(w, np.float64)
    y = np.asarray(y)
    safe = np.where(y == ignore, 0, y) if ignore is not None else y
    z_k = np.take_along_axis(z, safe[..., None], -1)[..., 0]
    gaps = np.where(mask, w * (lse[..., None] - np.where(mask, z, 0.0)), 0.0).sum(-1)
    loss = (1 - alpha) * w[safe] * (lse - z_k) + alpha / mask.sum(-1) * gaps + z_loss * lse**2
    return loss if ignore is None else np.where(y == ignore, 0.0, loss)


def _close(actual, expected, rtol=1e-5, atol=1e-6):
    chex.assert_tree_all_finite(actual)
    chex.assert_trees_all_close(actual, np.asarray(expected, np.float32), rtol=rtol, atol=atol)


# --- ignore_index ----------------------------------------------------------------------


def test_ignore_index_gives_zero_loss_and_zero_gradient():
    logits, labels = _logits(0), _labels(1)
    labels[[1, 4]] = -100
    fn = _jit(INT_CE, ignore_index=-100, label_smoothing=0.1, z_loss=1e-3)
    value = fn(logits, labels)
    np.testing.assert_array_equal(np.asarray(value)[[1, 4]], 0.0)
    expected = _int_ce_reference(logits, labels, alpha=0.1, z_loss=1e-3, ignore=-100)
    _close(value, expected)
    for grad in (
        jax.jit(jax.grad(lambda z: fn(z, labels).sum()))(logits),
        jax.jit(jax.jacfwd(lambda z: fn(z, labels).sum()))(logits),
    ):
        chex.assert_tree_all_finite(grad)
        np.testing.assert_array_equal(np.asarray(grad)[[1, 4]], 0.0)
        assert np.abs(np.asarray(grad)[[0, 2, 3]]).sum() > 0


_IGNORING = jax.jit(lambda z, y: INT_CE(z, y, ignore_index=-1))
_PLAIN = jax.jit(INT_CE)
_IGNORING_GRAD = jax.jit(jax.grad(lambda z, y: INT_CE(z, y, ignore_index=-1).sum()))


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), ignored=st.lists(st.booleans(), min_size=6, max_size=6))
def test_ignore_index_mean_equals_dropping(seed, ignored):
    ignored = np.array(ignored)
    ignored[0] = False  # at least one example is kept
    logits, labels = _logits(seed, (6, K)), _labels(seed + 1, (6,))
    kept = np.flatnonzero(~ignored)
    per_example = _IGNORING(logits, np.where(ignored, -1, labels))
    mean = per_example.sum() / kept.size
    dropped = _PLAIN(logits[kept], labels[kept])
    chex.assert_trees_all_close(mean, dropped.mean(), rtol=1e-5)
    grad = _IGNORING_GRAD(logits, np.where(ignored, -1, labels))
    np.testing.assert_array_equal(np.asarray(grad)[ignored], 0.0)


# --- label smoothing -------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_integer_label_smoothing_equals_optax_smooth_labels(alpha):
    logits, labels = _logits(2), _labels(3)

    def both(z, y):
        smoothed = optax.smooth_labels(jax.nn.one_hot(y, K), alpha)
        ours = INT_CE(z, y, label_smoothing=alpha)
        theirs = optax.losses.softmax_cross_entropy(z, smoothed)
        # softmax_cross_entropy with the same smoothing of the one-hot labels.
        dense = losses.softmax_cross_entropy(z, jax.nn.one_hot(y, K), label_smoothing=alpha)
        grads = [
            jax.grad(lambda z, f=f: f(z).sum())(z)
            for f in (
                lambda z: INT_CE(z, y, label_smoothing=alpha),
                lambda z: optax.losses.softmax_cross_entropy(z, smoothed),
            )
        ]
        return ours, theirs, dense, grads

    value, theirs, dense, (grad, their_grad) = jax.jit(both)(logits, labels)
    _close(value, theirs)
    _close(value, _int_ce_reference(logits, labels, alpha=alpha))
    _close(dense, value)
    _close(grad, their_grad)


def test_label_smoothing_counts_only_unmasked_classes():
    logits = _logits(4)
    mask = np.random.default_rng(5).random((N, K)) < 0.6
    mask[:, 0] = True
    labels = np.zeros(N, np.int32)  # class 0 is never masked
    value = _jit(INT_CE, label_smoothing=0.3)(logits, labels, -1, mask)
    _close(value, _int_ce_reference(logits, labels, alpha=0.3, mask=mask))
    # The dense version: targets (1-α)·y + α/K on the K unmasked classes.
    y = _probs(6) * mask
    y /= y.sum(-1, keepdims=True)
    dense = _jit(losses.softmax_cross_entropy, label_smoothing=0.3)(logits, y, -1, mask)
    log_probs = special.log_softmax(np.where(mask, logits.astype(np.float64), -np.inf), axis=-1)
    targets = np.where(mask, 0.7 * y + 0.3 / mask.sum(-1, keepdims=True), 0.0)
    _close(dense, -(targets * np.where(mask, log_probs, 0.0)).sum(-1))


# --- z_loss --------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True])
def test_z_loss_adds_squared_logsumexp(masked):
    logits, labels, y = _logits(7), _labels(8, num_classes=3), _probs(9)
    mask = np.ones((N, K), bool)
    if masked:
        mask[:, 3:] = np.random.default_rng(10).random((N, 3)) < 0.5
        y = y * mask / (y * mask).sum(-1, keepdims=True)
    lse = special.logsumexp(np.where(mask, logits.astype(np.float64), -np.inf), axis=-1)
    base = _jit(INT_CE)(logits, labels, -1, mask)
    _close(_jit(INT_CE, z_loss=0.02)(logits, labels, -1, mask), base + 0.02 * lse**2)
    dense = _jit(losses.softmax_cross_entropy)(logits, y, -1, mask)
    _close(
        _jit(losses.softmax_cross_entropy, z_loss=0.02)(logits, y, -1, mask),
        dense + 0.02 * lse**2,
    )


# --- class weights (PyTorch's F.cross_entropy(weight=..., reduction='none')) -----------


@pytest.mark.parametrize("alpha", [0.0, 0.15])
def test_class_weights_match_float64_formula(alpha):
    logits, labels = _logits(11), _labels(12)
    labels[2] = -100
    weights = np.random.default_rng(13).uniform(0.0, 3.0, K).astype(np.float32)
    weights[4] = 0.0
    options = dict(class_weights=weights, label_smoothing=alpha, ignore_index=-100)
    value = _jit(INT_CE, **options)(logits, labels)
    expected = _int_ce_reference(logits, labels, w=weights, alpha=alpha, ignore=-100)
    _close(value, expected)
    # With a class mask too.
    mask = np.random.default_rng(14).random((N, K)) < 0.7
    mask[np.arange(N), np.where(labels < 0, 0, labels)] = True
    masked = _jit(INT_CE, **options)(logits, labels, -1, mask)
    _close(
        masked, _int_ce_reference(logits, labels, w=weights, alpha=alpha, mask=mask, ignore=-100)
    )
    # The gradient, by finite differences in float64 (orders 1 and 2, both modes).
    with jax.enable_x64(True):
        check_grads(
            lambda z: INT_CE(z, labels[:3], **options),
            (logits[:3].astype(np.float64),),
            order=2,
            modes=("fwd", "rev"),
        )


# --- pos_weight (PyTorch's BCEWithLogitsLoss(pos_weight=...)) ----------------------------


@pytest.mark.parametrize("pos_weight", [2.5, np.linspace(0.5, 3.0, K).astype(np.float32)])
def test_pos_weight_matches_pytorchs_formula(pos_weight):
    logits = _logits(18)
    labels = np.random.default_rng(19).random((N, K)).astype(np.float32)
    labels[0] = 1.0
    labels[1] = 0.0
    value = _jit(losses.sigmoid_binary_cross_entropy, pos_weight=pos_weight)(logits, labels)
    z, y = logits.astype(np.float64), labels.astype(np.float64)
    expected = -(pos_weight * y * -np.logaddexp(0, -z) + (1 - y) * -np.logaddexp(0, z))
    _close(value, expected)


# --- distillation ----------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.5])
def test_distillation_loss_is_t_squared_forward_kl(temperature):
    student, teacher = _logits(20), _logits(21)
    mask = np.random.default_rng(22).random((N, K)) < 0.7
    mask[:, 0] = True
    fn = _jit(losses.distillation_loss, temperature=temperature)
    for where in (None, mask):
        value = (
            fn(student, teacher)
            if where is None
            else _jit(losses.distillation_loss, temperature=temperature, where=where)(
                student, teacher
            )
        )
        keep = np.broadcast_to(True if where is None else where, (N, K))

        def log_p(z, keep=keep):
            return special.log_softmax(np.where(keep, z / temperature, -np.inf), axis=-1)

        p_t, log_t, log_s = np.exp(log_p(teacher)), log_p(teacher), log_p(student)
        kl = (p_t * (np.where(keep, log_t, 0.0) - np.where(keep, log_s, 0.0))).sum(-1)
        _close(value, temperature**2 * kl, rtol=2e-5)
    _close(fn(teacher, teacher), np.zeros(N))


# --- gradients checked numerically, orders 1 and 2, forward and reverse, float64 ---------
# Losses are checked in groups (their outputs concatenated): one check_grads per group
# keeps the number of compiled transformations, and so the run time, small.

_Y = jnp.array([0.1, 0.2, 0.3, 0.4])
_B = jnp.array([0.0, 0.3, 1.0, 0.8])
_CHECKED = {
    "integer_labels": lambda z, w: [
        INT_CE(z, jnp.array([0, 2, 3])),
        INT_CE(
            z,
            jnp.array([0, 2, -1]),
            where=jnp.array([[True, True, True, False]]),
            ignore_index=-1,
            label_smoothing=0.2,
            z_loss=0.01,
            class_weights=w,
        ),
        INT_CE(z, jnp.array([3, 1, 0]), class_weights=w * w, label_smoothing=0.3),
    ],
    "softmax": lambda z, w: [
        losses.softmax_cross_entropy(z, _Y),
        losses.softmax_cross_entropy(z, _Y, label_smoothing=0.1, z_loss=0.01),
        losses.poly_loss_cross_entropy(z, _Y * w / (_Y * w).sum()),
        losses.distillation_loss(z, z[..., ::-1] * w + 0.1, temperature=1.5),
    ],
    "sigmoid": lambda z, w: [
        losses.sigmoid_binary_cross_entropy(z, _B, pos_weight=w),
        losses.sigmoid_focal_loss(z, _B, alpha=0.3, gamma=2.0),
        losses.sigmoid_focal_loss(z * w, _B, gamma=1.5),
    ],
    "kl": lambda z, w: [
        losses.kl_divergence(jax.nn.log_softmax(z), _Y),
        losses.kl_divergence(jnp.log(w / w.sum()), jnp.abs(z) + 0.1),
        losses.kl_divergence_with_log_targets(
            jax.nn.log_softmax(z), jax.nn.log_softmax(z[..., ::-1] * 0.5)
        ),
        losses.generalized_kl_divergence(z * 0.3, _Y * w),
    ],
}


@pytest.fixture
def quick_compiles():
    """check_grads compiles a dozen transformed programs per call, each run once on
    a few numbers: XLA's optimisation passes cost more than they save there."""
    before = jax.config.values.get("jax_disable_most_optimizations", False)
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.mark.parametrize("group", sorted(_CHECKED))
def test_check_grads_order_2_in_float64(group, x64, quick_compiles):
    def fn(z, w):
        return jnp.concatenate([jnp.ravel(x) for x in _CHECKED[group](z, w)])

    logits = jnp.asarray(np.random.default_rng(23).normal(size=(3, 4)), jnp.float64)
    weights = jnp.array([0.5, 1.0, 2.0, 3.0], jnp.float64)
    chex.assert_type(fn(logits, weights), jnp.float64)
    check_grads(jax.jit(fn), (logits, weights), order=2, modes=("fwd", "rev"), atol=1e-5)


# --- properties ------------------------------------------------------------------------

_SHIFTED = {
    "integer": jax.jit(
        lambda z, y, p: INT_CE(z, y, label_smoothing=0.2, class_weights=jnp.arange(1.0, K + 1))
    ),
    "dense": jax.jit(lambda z, y, p: losses.softmax_cross_entropy(z, p, label_smoothing=0.1)),
    "distillation": jax.jit(lambda z, y, p: losses.distillation_loss(z, jnp.log(p))),
}


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**31 - 1),
    shift=st.floats(-100.0, 100.0),
    name=st.sampled_from(sorted(_SHIFTED)),
)
def test_adding_a_constant_to_the_logits_changes_nothing(seed, shift, name):
    logits, labels, probs = _logits(seed, scale=5.0), _labels(seed), _probs(seed)
    fn = _SHIFTED[name]
    base = fn(logits, labels, probs)
    # Absolute error grows with |shift| in float32, as float32 z + c rounds.
    atol = 1e-5 + 4e-7 * abs(shift) * np.abs(logits).max()
    chex.assert_trees_all_close(fn(logits + np.float32(shift), labels, probs), base, atol=atol)
