"""jxent.losses where optax breaks: -inf logits, zero targets, empty rows, bad labels."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special

from jxent import losses

NEG_INF = -np.inf
CE = losses.softmax_cross_entropy
INT_CE = losses.softmax_cross_entropy_with_integer_labels


def _logits(seed, shape, scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def _probs(seed, shape):
    p = np.random.default_rng(seed).gamma(1.0, size=shape)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _jit(fn):
    return jax.jit(fn)


def _row_grad(fn, logits):
    """Gradient of ``fn(logits).sum()`` in reverse mode and (as a row sum) forward mode."""
    reverse = jax.jit(jax.grad(lambda z: fn(z).sum()))(logits)
    forward = jax.jit(jax.jacfwd(lambda z: fn(z).sum()))(logits)
    return reverse, forward


def _masked_ce_reference(logits, labels):
    """float64 CE with -inf classes dropped from the softmax, and p - y."""
    with np.errstate(invalid="ignore"):
        log_probs = special.log_softmax(logits.astype(np.float64), axis=-1)
    terms = np.where(labels > 0, labels * np.where(labels > 0, log_probs, 0.0), 0.0)
    return -terms.sum(-1), np.exp(log_probs) - labels


# --- item 2: where optax breaks, jxent does not ---------------------------------------


@pytest.mark.parametrize("fn", [CE, losses.safe_softmax_cross_entropy])
def test_neg_inf_logit_on_zero_label_is_finite_in_both_modes(fn):
    logits = _logits(0, (4, 6))
    logits[:, 1] = NEG_INF
    logits[2, 4] = NEG_INF
    labels = _probs(1, (4, 6))
    labels[:, 1] = 0.0
    labels[2, 4] = 0.0
    labels /= labels.sum(-1, keepdims=True)
    labels = jnp.asarray(labels)
    value = _jit(fn)(logits, labels)
    expected_value, expected_grad = _masked_ce_reference(logits, np.asarray(labels))
    chex.assert_tree_all_finite(value)
    chex.assert_trees_all_close(value, expected_value.astype(np.float32), rtol=1e-5, atol=1e-6)
    reverse, forward = _row_grad(lambda z: fn(z, labels), jnp.asarray(logits))
    for grad in (reverse, forward):
        chex.assert_tree_all_finite(grad)
        chex.assert_trees_all_close(grad, expected_grad.astype(np.float32), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(grad)[:, 1], 0.0)


def test_kl_divergence_gradient_at_zero_target_has_no_nan():
    log_predictions = special.log_softmax(_logits(2, (3, 5)), axis=-1)
    targets = _probs(3, (3, 5))
    targets[:, 0] = 0.0
    targets[1, 3] = 0.0
    targets /= targets.sum(-1, keepdims=True)

    def loss(t):
        return losses.kl_divergence(log_predictions, t).sum()

    with np.errstate(divide="ignore"):
        expected = np.log(np.asarray(targets, np.float64)) + 1 - np.asarray(log_predictions)
    for grad in (jax.jit(jax.grad(loss))(targets), jax.jit(jax.jacfwd(loss))(targets)):
        grad = np.asarray(grad)
        assert not np.isnan(grad).any()
        positive = np.asarray(targets) > 0
        np.testing.assert_allclose(grad[positive], expected[positive], rtol=1e-5, atol=1e-6)
        # log t + 1 - log q at t = 0 is -inf: its true value, not NaN.
        np.testing.assert_array_equal(grad[~positive], -np.inf)
    # And with respect to the predictions the gradient is simply -t.
    grad_q = jax.jit(jax.grad(lambda q: losses.kl_divergence(q, targets).sum()))(log_predictions)
    chex.assert_trees_all_close(grad_q, -targets)


def test_kl_divergence_with_neg_inf_log_target_is_finite():
    log_predictions = special.log_softmax(_logits(4, (3, 5)), axis=-1)
    log_targets = np.log(_probs(5, (3, 5)))
    log_targets[0, 2] = NEG_INF
    value = _jit(losses.kl_divergence_with_log_targets)(log_predictions, log_targets)
    targets = np.exp(np.asarray(log_targets, np.float64))
    expected = special.rel_entr(targets, np.exp(np.asarray(log_predictions, np.float64))).sum(-1)
    chex.assert_trees_all_close(value, expected.astype(np.float32), rtol=1e-5)
    grad = jax.jit(
        jax.grad(lambda lt: losses.kl_divergence_with_log_targets(log_predictions, lt).sum())
    )(log_targets)
    chex.assert_tree_all_finite(grad)
    assert grad[0, 2] == 0.0


def _empty_row_cases(num_classes=5):
    logits = _logits(6, (4, num_classes))
    where = np.ones((4, num_classes), bool)
    where[1] = False  # every class masked
    logits[2] = NEG_INF  # every logit -inf
    return jnp.asarray(logits), jnp.asarray(where)


def test_softmax_cross_entropy_empty_rows_give_zero_loss_and_gradient():
    logits, where = _empty_row_cases()
    labels = jnp.asarray(_probs(7, (4, 5)))

    def fn(z):
        return CE(z, labels, where=where)

    value = _jit(fn)(logits)
    np.testing.assert_array_equal(np.asarray(value)[1:3], 0.0)
    expected_value, expected_grad = _masked_ce_reference(np.asarray(logits), np.asarray(labels))
    chex.assert_trees_all_close(value[::3], expected_value[::3].astype(np.float32), rtol=1e-5)
    for grad in _row_grad(fn, logits):
        chex.assert_tree_all_finite(grad)
        np.testing.assert_array_equal(np.asarray(grad)[1:3], 0.0)
        chex.assert_trees_all_close(grad[::3], expected_grad[::3].astype(np.float32), atol=1e-6)


def test_integer_labels_empty_rows_give_zero_loss_and_gradient():
    logits, where = _empty_row_cases()
    labels = jnp.array([0, 1, 2, 3])

    def fn(z):
        return INT_CE(z, labels, where=where)

    value = _jit(fn)(logits)
    np.testing.assert_array_equal(np.asarray(value)[1:3], 0.0)
    reference = optax.losses.softmax_cross_entropy_with_integer_labels(logits[::3], labels[::3])
    chex.assert_trees_all_close(value[::3], reference, rtol=1e-5)
    for grad in _row_grad(fn, logits):
        chex.assert_tree_all_finite(grad)
        np.testing.assert_array_equal(np.asarray(grad)[1:3], 0.0)


def test_out_of_range_integer_labels_give_nan_loss_and_nan_gradient_row():
    num_classes = 5
    logits = _logits(8, (6, num_classes))
    labels = np.array([0, -1, num_classes, 3, num_classes + 7, -100], np.int32)
    bad = np.array([False, True, True, False, True, True])
    value = np.asarray(_jit(INT_CE)(logits, labels))
    assert np.isnan(value[bad]).all()
    good = np.flatnonzero(~bad)
    optax_ce = jax.jit(optax.losses.softmax_cross_entropy_with_integer_labels)
    reference = optax_ce(logits[good], labels[good])
    np.testing.assert_allclose(value[~bad], reference, rtol=1e-5)
    # -1 never wraps around to the last class.
    wrapped = optax_ce(logits[1], np.int32(num_classes - 1))
    assert np.isfinite(wrapped) and not value[1] == wrapped

    reference_grad = jax.jit(jax.grad(lambda z: optax_ce(z, labels[good]).sum()))(logits[good])
    # (Forward mode gives a bad example a NaN tangent in every direction, so
    # the row-sum trick of _row_grad does not apply; see the Jacobian below.)
    total = jax.jit(jax.grad(lambda z: INT_CE(z, labels).sum()))(logits)
    per_example = jax.jit(jax.vmap(jax.grad(INT_CE)))(logits, labels)
    for grad in (total, per_example):
        grad = np.asarray(grad)
        assert np.isnan(grad[bad]).all(), "every entry of a bad example's gradient is NaN"
        np.testing.assert_allclose(grad[~bad], reference_grad, rtol=1e-5, atol=1e-6)
    # Forward mode: the Jacobian of a good example is finite, of a bad one NaN.
    jacobian = np.asarray(jax.jit(jax.jacfwd(lambda z: INT_CE(z, labels)))(logits))
    assert np.isfinite(jacobian[~bad]).all()
    assert np.isnan(jacobian[bad]).all()


_HALF_CASES = {
    "softmax_cross_entropy": lambda z: CE(z, jnp.asarray(_probs(9, z.shape))),
    "integer_labels": lambda z: INT_CE(z, jnp.arange(z.shape[0]) % z.shape[1]),
    "integer_labels_options": lambda z: INT_CE(
        z,
        jnp.arange(z.shape[0]) % z.shape[1],
        label_smoothing=0.1,
        z_loss=1e-3,
        class_weights=jnp.linspace(0.5, 2.0, z.shape[1]),
    ),
    "sigmoid_binary_cross_entropy": lambda z: losses.sigmoid_binary_cross_entropy(
        z, jnp.asarray(_probs(10, z.shape))
    ),
    "sigmoid_focal_loss": lambda z: losses.sigmoid_focal_loss(z, jnp.asarray(_probs(11, z.shape))),
    "poly_loss_cross_entropy": lambda z: losses.poly_loss_cross_entropy(
        z, jnp.asarray(_probs(12, z.shape))
    ),
    "kl_divergence": lambda z: losses.kl_divergence(z, jnp.asarray(_probs(13, z.shape))),
    "distillation_loss": lambda z: losses.distillation_loss(
        z, jnp.asarray(_logits(14, z.shape)), temperature=2.0
    ),
}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", sorted(_HALF_CASES))
def test_half_precision_loss_is_float32_and_gradient_keeps_dtype(name, dtype):
    fn = _HALF_CASES[name]
    logits = jnp.asarray(_logits(15, (8, 6), scale=2.0), dtype)
    value = _jit(fn)(logits)
    chex.assert_type(value, jnp.float32)
    # Computed in float32 from the (exactly representable) 16-bit inputs.
    upcast = np.asarray(logits).astype(np.float32)
    chex.assert_trees_all_close(value, _jit(fn)(upcast), rtol=1e-6)
    grad = jax.jit(jax.grad(lambda z: fn(z).sum()))(logits)
    chex.assert_type(grad, dtype)
    chex.assert_tree_all_finite(grad)


# --- item 6: forward mode and the Hessian at every edge ------------------------------


def _edge_inputs():
    logits = _logits(16, (5, 4))
    labels = np.zeros((5, 4), np.float32)
    labels[np.arange(5), [0, 1, 2, 3, 0]] = 1.0  # one-hot targets
    where = np.ones((5, 4), bool)
    logits[0, 2] = NEG_INF  # -inf logit on a zero-label class
    where[1] = False  # every class masked
    logits[2] = NEG_INF  # every logit -inf
    logits[3] = [1e4, -1e4, 5e3, 1e4]  # huge logits
    where[4, 1:] = False  # only the label's class left
    return jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(where)


def _finite_classes(z, w):
    # With smoothing (or a teacher) every unmasked class gets target mass, so
    # a -inf logit must be masked for the loss to be finite: it is +inf otherwise.
    return w & jnp.isfinite(z)


_SOFTMAX_EDGE_LOSSES = {
    "softmax_cross_entropy": lambda z, y, w: CE(z, y, where=w),
    "softmax_cross_entropy_options": lambda z, y, w: CE(
        z, y, where=_finite_classes(z, w), label_smoothing=0.2, z_loss=1e-4
    ),
    "integer_labels": lambda z, y, w: INT_CE(z, jnp.argmax(y, -1), where=w),
    "integer_labels_options": lambda z, y, w: INT_CE(
        z,
        jnp.argmax(y, -1),
        where=_finite_classes(z, w),
        label_smoothing=0.2,
        z_loss=1e-4,
        class_weights=jnp.array([1.0, 0.5, 2.0, 0.0]),
    ),
    "poly_loss_cross_entropy": lambda z, y, w: losses.poly_loss_cross_entropy(z, y, where=w),
    "distillation_loss": lambda z, y, w: losses.distillation_loss(
        z, jnp.where(y > 0, 0.0, -3.0), temperature=2.0, where=_finite_classes(z, w)
    ),
}


@pytest.mark.parametrize("name", sorted(_SOFTMAX_EDGE_LOSSES))
def test_forward_mode_and_hessian_are_finite_at_every_edge(name):
    logits, labels, where = _edge_inputs()

    def fn(z):
        return _SOFTMAX_EDGE_LOSSES[name](z, labels, where)

    def total(z):
        return fn(z).sum()

    def everything(z):  # one compiled program per loss
        return fn(z), jax.jacfwd(fn)(z), jax.grad(total)(z), jax.hessian(total)(z)

    value, jacobian, grad, hessian = jax.jit(everything)(logits)
    chex.assert_tree_all_finite((value, jacobian, grad, hessian))
    chex.assert_shape(jacobian, (5, 5, 4))
    chex.assert_trees_all_close(jacobian.sum(0), grad, atol=1e-6)
    chex.assert_shape(hessian, (5, 4, 5, 4))
    # Empty rows have no curvature at all (and no gradient).
    np.testing.assert_array_equal(np.asarray(hessian)[1:3], 0.0)
    np.testing.assert_array_equal(np.asarray(grad)[1:3], 0.0)


def test_integer_labels_hessian_is_softmax_covariance():
    logits = _logits(17, (6,))
    hessian = jax.jit(jax.hessian(lambda z: INT_CE(z, 2)))(logits)
    p = special.softmax(logits.astype(np.float64))
    chex.assert_trees_all_close(hessian, np.diag(p) - np.outer(p, p), atol=1e-6)


# --- jit and vmap give the direct call's values --------------------------------------


_ALL_LOSSES = {
    **{k: v for k, v in _SOFTMAX_EDGE_LOSSES.items()},
    "sigmoid_binary_cross_entropy": lambda z, y, w: losses.sigmoid_binary_cross_entropy(
        z, y, pos_weight=1.5
    ),
    "sigmoid_focal_loss": lambda z, y, w: losses.sigmoid_focal_loss(z, y, alpha=0.3),
    "kl_divergence": lambda z, y, w: losses.kl_divergence(jax.nn.log_softmax(z), y, where=w),
    "kl_divergence_with_log_targets": lambda z, y, w: losses.kl_divergence_with_log_targets(
        z, jnp.log(y), where=w
    ),
    "generalized_kl_divergence": lambda z, y, w: losses.generalized_kl_divergence(z, y, where=w),
}


@pytest.mark.parametrize("name", sorted(_ALL_LOSSES))
def test_jit_and_vmap_match_direct_call(name):
    fn = _ALL_LOSSES[name]
    logits = _logits(18, (3, 5, 4), scale=1.0)
    labels = _probs(19, (3, 5, 4))
    where = np.random.default_rng(20).random((3, 5, 4)) < 0.8
    where[..., 0] = True
    # Eager (op-by-op) calls cost a compile per op: a few losses are run eagerly,
    # every loss is compared between jit, vmap and vmap-of-grad.
    eager = name in {"integer_labels_options", "softmax_cross_entropy_options", "kl_divergence"}

    def transformed(z, y, w):
        def total(z, y, w):
            return fn(z, y, w).sum()

        return (
            fn(z, y, w),
            jax.vmap(fn)(z, y, w),
            jax.vmap(jax.grad(total))(z, y, w),
            (jax.grad(total)(z, y, w)),
        )

    jitted, batched, batched_grad, grad = jax.jit(transformed)(logits, labels, where)
    chex.assert_tree_all_finite(jitted)
    chex.assert_trees_all_close(batched, jitted, rtol=1e-6, atol=1e-6)
    if eager:
        chex.assert_trees_all_close(fn(logits, labels, where), jitted, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(batched_grad, grad, rtol=1e-5, atol=1e-6)
    chex.assert_tree_all_finite(grad)
