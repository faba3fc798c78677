"""class_weights of the probability-label softmax cross-entropy (issue 19, item 15).

The reference is PyTorch's documented formula for class-probability targets,
``F.cross_entropy(input, target, weight=w, label_smoothing=α, reduction='none')``:
``l_n = -Σ_c w_c t_c log softmax(x_n)_c`` with ``t = (1-α) y + α/C``, written in
float64 NumPy below (torch is not a test dependency). Outside PyTorch's domain the reference follows
jxent's rules: a masked class leaves the softmax and the smoothing count, and a
zero target or a zero weight times a ``-inf`` log-probability is 0, not NaN.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special

from jxent import losses

CE = losses.softmax_cross_entropy
INT_CE = losses.softmax_cross_entropy_with_integer_labels
NAMES = ["softmax_cross_entropy", "safe_softmax_cross_entropy"]
N, K = 5, 6
# Options exactly representable in float32, so that float32 and float64 runs
# compute with the same numbers.
ALPHA, LAMBDA = 0.25, 2.0**-6


def _logits(seed, shape=(N, K), scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _probs(seed, shape=(N, K)):
    p = np.random.default_rng(seed).gamma(1.0, size=shape)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _weights(seed, num_classes=K, low=0.0, high=3.0):
    return np.random.default_rng(seed).uniform(low, high, num_classes).astype(np.float32)


def _reference(z, y, w, *, alpha=0.0, z_loss=0.0, mask=None):
    """float64 ``-Σ_c w_c t_c log softmax(z)_c + λ lse(z)²``, ``t = (1-α) y + α/K``
    on the K unmasked classes (PyTorch's formula when nothing is masked)."""
    z, y, w = (np.asarray(a, np.float64) for a in (z, y, w))
    mask = np.broadcast_to(True if mask is None else np.asarray(mask), np.broadcast(z, y).shape)
    masked = np.where(mask, z, -np.inf)
    # An empty row (every class masked) comes out NaN here: callers set it to 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = special.logsumexp(masked, axis=-1)
        log_probs = masked - lse[..., None]
        count = mask.sum(-1, keepdims=True)
        targets = np.where(mask, (1 - alpha) * y + alpha / count, 0.0)
        weighted = w * targets
        terms = np.where(weighted == 0, 0.0, weighted * log_probs)
        return -terms.sum(-1) + z_loss * lse**2


@functools.cache
def _loss(name="softmax_cross_entropy", axis=-1, **options):
    """One jitted loss per name and static options: (logits, labels, weights, where)."""
    fn = getattr(losses, name)

    def loss(z, y, w, where=None):
        return fn(z, y, axis=axis, where=where, class_weights=w, **options)

    return jax.jit(loss)


def _close32(actual, expected):
    chex.assert_type(actual, jnp.float32)
    chex.assert_tree_all_finite(actual)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-6, atol=1e-6)


def _close64(actual, expected, rtol=1e-12):
    chex.assert_type(actual, jnp.float64)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=1e-12)


# --- values: the float64 formula, float32 and float64 --------------------------------

_OPTIONS = {
    "plain": {},
    "smoothing": {"label_smoothing": ALPHA},
    "z_loss": {"z_loss": LAMBDA},
    "both": {"label_smoothing": ALPHA, "z_loss": LAMBDA},
}


def _reference_options(options):
    return {"alpha": options.get("label_smoothing", 0.0), "z_loss": options.get("z_loss", 0.0)}


def _value_inputs():
    z, y, w = _logits(0), _probs(1), _weights(2)
    y[0] = np.eye(K)[3]  # a one-hot row
    y[1] = 0.0  # no target mass at all: only the smoothing and z-loss terms
    w[4] = 0.0
    return z, y, w


@pytest.mark.parametrize("options", sorted(_OPTIONS))
@pytest.mark.parametrize("name", NAMES)
def test_matches_the_float64_formula_in_float32(name, options):
    z, y, w = _value_inputs()
    value = _loss(name, **_OPTIONS[options])(z, y, w)
    _close32(value, _reference(z, y, w, **_reference_options(_OPTIONS[options])))


@pytest.mark.parametrize("options", sorted(_OPTIONS))
def test_matches_the_float64_formula_in_float64(options, x64):
    z, y, w = (a.astype(np.float64) for a in _value_inputs())
    value = _loss(**_OPTIONS[options])(z, y, w)
    _close64(value, _reference(z, y, w, **_reference_options(_OPTIONS[options])))


def test_unit_weights_change_nothing_and_weights_scale_each_class():
    z, y = _logits(3), _probs(4)
    fn = _loss(label_smoothing=ALPHA)
    unweighted = jax.jit(functools.partial(CE, label_smoothing=ALPHA))(z, y)
    np.testing.assert_allclose(fn(z, y, np.ones(K, np.float32)), unweighted, rtol=1e-7)
    # Linear in the weights: per-class losses sum back to the loss.
    per_class = np.stack([fn(z, y, np.eye(K, dtype=np.float32)[c]) for c in range(K)], -1)
    w = _weights(5)
    _close32(fn(z, y, w), (per_class.astype(np.float64) * w).sum(-1))


def test_negative_weights_are_accepted_as_by_the_integer_loss():
    # The integer-label loss puts no domain on class_weights; neither does this one.
    z, y = _logits(6), _probs(7)
    w = _weights(8, low=-2.0, high=2.0)
    value = _loss(label_smoothing=ALPHA)(z, y, w)
    expected = _reference(z, y, w, alpha=ALPHA)
    np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-6, atol=2e-6)
    assert _loss()(z, y, -np.ones(K, np.float32)).max() < 0


def test_the_z_loss_term_is_not_weighted():
    z, y, w = _logits(9), _probs(10), _weights(11)
    lse = special.logsumexp(z.astype(np.float64), axis=-1)
    with_z = _loss(z_loss=LAMBDA)(z, y, w)
    without = _loss()(z, y, w)
    np.testing.assert_allclose(with_z - without, LAMBDA * lse**2, rtol=1e-5, atol=1e-6)
    # All-zero weights leave the z-loss alone too.
    zero = np.zeros(K, np.float32)
    _close32(_loss(z_loss=LAMBDA)(z, y, zero), LAMBDA * lse**2)


# --- the integer-label loss: same per-example rule, PyTorch's weighted mean ------------


@pytest.mark.parametrize("options", sorted(_OPTIONS))
def test_one_hot_labels_give_the_integer_label_loss(options, x64):
    z, labels, w = _logits(12).astype(np.float64), np.arange(N) % K, _weights(13).astype(float)
    one_hot = np.eye(K)[labels]
    dense = _loss(**_OPTIONS[options])(z, one_hot, w)
    integer = jax.jit(functools.partial(INT_CE, class_weights=w, **_OPTIONS[options]))(z, labels)
    _close64(dense, np.asarray(integer))


def test_pytorch_weighted_mean_over_integer_labels_divides_by_the_label_weights(x64):
    # PyTorch's reduction='mean' with weight= and class-index targets is
    # Σ_n l_n / Σ_n w[y_n] over the non-ignored n, l_n = -w[y_n] log softmax(x_n)[y_n]
    # (its documented formula); jxent returns l_n, the user divides.
    z, w = _logits(14).astype(np.float64), _weights(15).astype(np.float64) + 0.1
    labels = np.array([0, 3, -100, 5, 3])
    kept = labels != -100
    per_example = jax.jit(functools.partial(INT_CE, class_weights=w, ignore_index=-100))(z, labels)
    mean = per_example.sum() / w[labels[kept]].sum()
    log_probs = special.log_softmax(z[kept], axis=-1)
    picked = log_probs[np.arange(kept.sum()), labels[kept]]
    expected = -(w[labels[kept]] * picked).sum() / w[labels[kept]].sum()
    _close64(mean, expected)
    # With probability targets PyTorch's 'mean' is the plain mean over examples.
    y = _probs(16).astype(np.float64)
    _close64(_loss()(z, y, w).mean(), _reference(z, y, w).mean())


# --- masks, axes, -inf logits, zero weights -------------------------------------------


def test_masked_classes_leave_the_softmax_the_smoothing_and_the_weights():
    z, y, w = _logits(17), _probs(18), _weights(20)
    mask = np.random.default_rng(19).random((N, K)) < 0.6
    mask[:, 0] = True
    mask[:, 2] = False  # masked in every row: its weight is never read
    mask[N - 1] = False  # an empty row: loss 0, gradient 0
    w_nan = w.copy()
    w_nan[2] = np.nan
    for options in _OPTIONS.values():
        value = _loss(**options)(z, y, w_nan, mask)
        expected = _reference(z, y, w, mask=mask, **_reference_options(options))
        expected[N - 1] = 0.0
        _close32(value, expected)
    fn = _loss(label_smoothing=ALPHA, z_loss=LAMBDA)
    for mode in (jax.grad, jax.jacfwd):
        grads = jax.jit(mode(lambda *a: fn(*a).sum(), (0, 1, 2)))(z, y, w_nan, mask)
        for grad in grads[:2]:
            chex.assert_tree_all_finite(grad)
            np.testing.assert_array_equal(np.asarray(grad)[N - 1], 0.0)
            np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
        d_w = np.asarray(grads[2])
        assert d_w[2] == 0.0 and np.isfinite(d_w).all()
    # A mask of the batch shape masks whole rows, as optax's softmax cross-entropy.
    rows = np.array([True, False, True, True, False])
    value = _loss()(z, y, w, rows)
    _close32(value, np.where(rows, _reference(z, y, w), 0.0))


def test_tuple_axes_take_weights_of_the_class_shape_or_flat():
    z, y = _logits(21, (2, 3, 4)), _probs(22, (2, 3, 4))
    w = _weights(23, 12).reshape(4, 3)  # the class shape for axis=(2, 1)
    fn = _loss(axis=(2, 1), label_smoothing=ALPHA)
    # Classes last in the order given: [batch, 4, 3] flattened.
    flat_z, flat_y = (a.transpose(0, 2, 1).reshape(2, 12) for a in (z, y))
    expected = _reference(flat_z, flat_y, w.reshape(12), alpha=ALPHA)
    _close32(fn(z, y, w), expected)
    _close32(fn(z, y, w.reshape(12)), expected)
    # Shapes that broadcast to the class shape (4, 3).
    column = w[:, :1]
    broadcast = np.broadcast_to(column, (4, 3)).reshape(12)
    _close32(fn(z, y, column), _reference(flat_z, flat_y, broadcast, alpha=ALPHA))
    row = w[0]
    _close32(fn(z, y, row), _reference(flat_z, flat_y, np.tile(row, 4), alpha=ALPHA))
    # axis=None: every axis is a class axis.
    z2, y2 = _logits(24, (3, 4)), _probs(25, (3, 4)) / 3
    w2 = _weights(26, 4)
    expected = _reference(z2.reshape(12), y2.reshape(12), np.tile(w2, 3))
    _close32(_loss(axis=None)(z2, y2, w2), expected)


def test_tuple_axes_agree_with_the_integer_label_loss(x64):
    z = _logits(27, (2, 3, 4)).astype(np.float64)
    labels = np.array([5, 11])  # flat indices over the class axes (2, 1)
    w = _weights(28, 12).astype(np.float64)
    one_hot = np.eye(12)[labels].reshape(2, 4, 3).transpose(0, 2, 1)
    options = {"label_smoothing": ALPHA, "z_loss": LAMBDA}
    dense = _loss(axis=(2, 1), **options)(z, one_hot, w)
    integer = INT_CE(z, labels, (2, 1), class_weights=w, **options)
    _close64(dense, np.asarray(integer))


@pytest.mark.parametrize("name", NAMES)
def test_neg_inf_logits_on_zero_targets_are_safe(name):
    z, y, w = _logits(29), _probs(30), _weights(31)
    z[:, 1] = -np.inf
    y[:, 1] = 0.0
    z[2, 4], y[2, 4] = -np.inf, 0.0
    w[5] = 0.0
    z[3, 5], y[3, 5] = -np.inf, 0.5  # a target under a zero weight: adds 0
    fn = _loss(name, z_loss=LAMBDA)
    value = fn(z, y, w)
    _close32(value, _reference(z, y, w, z_loss=LAMBDA))

    def total(z, y, w):
        return fn(z, y, w).sum()

    for mode in (jax.grad, jax.jacfwd):
        d_z, d_y, d_w = jax.jit(mode(total, (0, 1, 2)))(z, y, w)
        chex.assert_tree_all_finite(d_z)
        np.testing.assert_array_equal(np.asarray(d_z)[np.isinf(z)], 0.0)
        # d/dy = -w log p: +inf at a -inf logit under a nonzero weight (its true
        # value), 0 under a zero weight; never NaN.
        assert not np.isnan(np.asarray(d_y)).any()
        assert np.isposinf(np.asarray(d_y)[:, 1]).all()
        np.testing.assert_array_equal(np.asarray(d_y)[:, 5], 0.0)
        # d/dw_c = -Σ_n y_nc log p_nc: 0 where every target on a -inf logit is 0.
        assert np.isfinite(np.asarray(d_w)[[0, 1, 2, 3, 4]]).all()
        assert np.isposinf(np.asarray(d_w)[5])
    hessian = jax.jit(jax.hessian(lambda z: total(z, y, w)))(z)
    chex.assert_tree_all_finite(hessian)


def test_all_zero_weights_give_zero_loss_and_gradient():
    z, y = _logits(32), _probs(33)
    z[:, 2] = -np.inf
    y[:, 2] = 0.0
    zero = np.zeros(K, np.float32)
    fn = _loss(label_smoothing=0.0)
    np.testing.assert_array_equal(fn(z, y, zero), 0.0)
    for mode in (jax.grad, jax.jacfwd):
        d_z, d_y = jax.jit(mode(lambda z, y: fn(z, y, zero).sum(), (0, 1)))(z, y)
        np.testing.assert_array_equal(d_z, 0.0)
        np.testing.assert_array_equal(d_y, 0.0)


# --- derivatives: float64 formulas and check_grads ----------------------------------


def test_derivatives_match_the_float64_formulas(x64):
    z, y, w = (a.astype(np.float64) for a in (_logits(34), _probs(35), _weights(36)))
    fn = _loss(label_smoothing=ALPHA, z_loss=LAMBDA)
    d_z, d_y, d_w = jax.jit(jax.grad(lambda *a: fn(*a).sum(), (0, 1, 2)))(z, y, w)
    log_probs = special.log_softmax(z, axis=-1)
    probs, lse = np.exp(log_probs), special.logsumexp(z, axis=-1)
    targets = (1 - ALPHA) * y + ALPHA / K
    total = (w * targets).sum(-1, keepdims=True)
    # d/dz_j = p_j Σ_c w_c t_c - w_j t_j + 2λ lse p_j.
    expected_z = probs * (total + 2 * LAMBDA * lse[:, None]) - w * targets
    _close64(d_z, expected_z, rtol=1e-10)
    # Linear in the labels: d/dy_j = -(1-α) w_j log p_j.
    _close64(d_y, -(1 - ALPHA) * w * log_probs, rtol=1e-10)
    _close64(d_w, -(targets * log_probs).sum(0), rtol=1e-10)
    # The Hessian in the logits: (Σ_c w_c t_c) (diag p - p pᵀ), plus the z-loss's.
    hessian = jax.jit(jax.vmap(jax.hessian(lambda z, y: fn(z, y, w))))(z, y)
    curvature = np.einsum("nj,jk->njk", probs, np.eye(K)) - np.einsum("nj,nk->njk", probs, probs)
    z_part = 2 * LAMBDA * (np.einsum("nj,nk->njk", probs, probs) + lse[:, None, None] * curvature)
    _close64(hessian, total[..., None] * curvature + z_part, rtol=1e-9)


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


_MASK = jnp.array([[True, True, False, True]])


def _checked(z, y, w):
    """Every option at once, the outputs concatenated: one check_grads call."""
    return jnp.concatenate(
        [
            CE(z, y, class_weights=w),
            CE(z, y, class_weights=w, label_smoothing=0.2, z_loss=0.01),
            losses.safe_softmax_cross_entropy(z, y, where=_MASK, class_weights=w * w),
            CE(z.reshape(3, 2, 2), y.reshape(3, 2, 2), (2, 1), class_weights=w.reshape(2, 2)),
        ]
    )


def test_check_grads_orders_1_and_2_in_float64(x64, quick_compiles):
    rng = np.random.default_rng(37)
    z = jnp.asarray(rng.normal(size=(3, 4)))
    y = jnp.asarray(rng.dirichlet(np.ones(4), size=3))
    w = jnp.array([0.5, 1.0, 2.0, 3.0])
    chex.assert_type(_checked(z, y, w), jnp.float64)
    fn = jax.jit(_checked)
    # With respect to the logits, the labels and the (traced) weights together.
    check_grads(fn, (z, y, w), order=2, modes=("fwd", "rev"), atol=1e-5)


# --- transformations and dtypes --------------------------------------------------------


def test_traced_weights_under_jit_and_vmap():
    z, y = _logits(38), _probs(39)
    schedule = np.stack([_weights(40), _weights(41)])
    fn = _loss(label_smoothing=ALPHA)
    both = jax.jit(jax.vmap(fn, (None, None, 0)))(z, y, schedule)
    for row, w in zip(both, schedule):
        chex.assert_trees_all_close(row, fn(z, y, w), rtol=1e-6)
    # vmap over examples: weights shared, one example at a time.
    per_row = jax.jit(jax.vmap(fn, (0, 0, None)))(z, y, schedule[0])
    chex.assert_trees_all_close(per_row, fn(z, y, schedule[0]), rtol=1e-6)


def test_half_precision_logits_give_a_float32_loss():
    z, y, w = _logits(42), _probs(43), _weights(44)
    half = jnp.asarray(z, jnp.bfloat16)
    fn = _loss()
    value = fn(half, y, w)
    _close32(value, _reference(np.asarray(half, np.float32), y, w))
    grad = jax.jit(jax.grad(lambda z: fn(z, y, w).sum()))(half)
    chex.assert_type(grad, jnp.bfloat16)


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, axis",
    [((K + 1,), -1), ((N, K), -1), ((), -1), ((1, K), -1), ((11,), (2, 1)), ((3, 4), (2, 1))],
    ids=["too_long", "batch_shaped", "scalar", "extra_axis", "wrong_flat", "wrong_order"],
)
@pytest.mark.parametrize("name", NAMES)
def test_weights_of_a_bad_shape_raise_naming_class_weights(name, shape, axis):
    z_shape = (N, K) if axis == -1 else (2, 3, 4)
    z, y = np.zeros(z_shape, np.float32), np.full(z_shape, 0.25, np.float32)
    with pytest.raises(ValueError, match=r"class_weights of shape"):
        getattr(losses, name)(z, y, axis=axis, class_weights=np.ones(shape, np.float32))


def test_integer_weights_raise_a_type_error_as_for_integer_labels():
    z, y = _logits(45), _probs(46)
    with pytest.raises(TypeError, match="class_weights"):
        CE(z, y, class_weights=np.ones(K, np.int32))
    with pytest.raises(TypeError, match="class_weights"):
        INT_CE(z, np.zeros(N, np.int32), class_weights=np.ones(K, np.int32))
