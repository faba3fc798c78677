"""KL-divergence losses in optax's argument order, and distillation."""

import jax
import jax.numpy as jnp

from .. import _primitives as prim
from .. import _validation
from .._checks import as_float_array
from .._measures import kl_divergence_from_logits
from .._zero_safe import zero_safe_mul
from ._classes import Axis, classes_last_pair, expand_row_mask


def _prepare(log_predictions, targets, names, axis, where):
    log_predictions, targets, mask = classes_last_pair(log_predictions, targets, names, axis, where)
    _validation.check_no_nan(log_predictions, names[0])
    _validation.check_no_nan(targets, names[1])
    return log_predictions, targets, mask


def _masked_sum(terms: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is not None:
        terms = jnp.where(mask, terms, 0)
    return jnp.sum(terms, axis=-1)


def kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""KL divergence of the predictions from the targets, in optax's order.

    .. math::
      \ell = \sum_j t_j (\log t_j - \log q_j)

    A drop-in for ``optax.losses.kl_divergence``: zero targets add 0 even
    where ``log_predictions`` is ``-inf``, and the gradient with respect to
    the targets is :math:`\log t_j + 1 - \log q_j` (``-inf`` at 0, never NaN).

    Args:
      log_predictions: log-probabilities of the prediction ``[..., K]``.
      targets: target probabilities, broadcastable with ``log_predictions``.
      axis: the class axis or axes.
      where: boolean class mask.

    Returns:
      Per-example divergences.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.kl_divergence(jnp.log(jnp.array([0.5, 0.5])), jnp.array([1.0, 0.0]))
      Array(0.6931472, dtype=float32)
    """
    log_predictions, targets, mask = _prepare(
        log_predictions, targets, ("log_predictions", "targets"), axis, where
    )
    return _kl(log_predictions, targets, mask)


def _kl(log_predictions, targets, mask):
    """Σ t (log t - log q) over the last axis of prepared arrays."""
    if mask is not None:
        targets = jnp.where(mask, targets, 0)
        log_predictions = jnp.where(mask, log_predictions, 0)
    terms = prim._xlogx(targets) - zero_safe_mul(targets, log_predictions)
    return _masked_sum(terms, mask)


def kl_divergence_with_log_targets(
    log_predictions: jax.typing.ArrayLike,
    log_targets: jax.typing.ArrayLike,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""KL divergence with both distributions given as log-probabilities.

    .. math::
      \ell = \sum_j e^{\log t_j} (\log t_j - \log q_j)

    A drop-in for ``optax.losses.kl_divergence_with_log_targets``; a ``-inf``
    log target adds 0 (optax gives NaN).

    Args:
      log_predictions: log-probabilities of the prediction.
      log_targets: log-probabilities of the target.
      axis: the class axis or axes.
      where: boolean class mask.

    Returns:
      Per-example divergences.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.kl_divergence_with_log_targets(jnp.log(jnp.array([0.5, 0.5])),
      ...     jnp.array([0.0, -jnp.inf]))
      Array(0.6931472, dtype=float32)
    """
    log_predictions, log_targets, mask = _prepare(
        log_predictions, log_targets, ("log_predictions", "log_targets"), axis, where
    )
    if mask is not None:
        log_targets = jnp.where(mask, log_targets, -jnp.inf)
    targets = jnp.exp(log_targets)
    # Where the target is 0 the log difference may be -inf - -inf; it is
    # multiplied by 0, so it is replaced before it can turn into a NaN.
    log_diff = jnp.where(targets > 0, log_targets - log_predictions, 0)
    return _masked_sum(zero_safe_mul(targets, log_diff), mask)


def convex_kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Generalised KL divergence, for unnormalised measures (optax's order).

    .. math::
      \ell = \sum_j t_j (\log t_j - \log q_j) + q_j - t_j

    A drop-in for ``optax.losses.convex_kl_divergence`` (optax's
    ``generalized_kl_divergence``).

    Args:
      log_predictions: log of the predicted measure.
      targets: the target measure.
      axis: the class axis or axes.
      where: boolean class mask.

    Returns:
      Per-example divergences, ``>= 0``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.convex_kl_divergence(jnp.log(jnp.array([0.5, 0.5])), jnp.array([1.0, 0.0]))
      Array(0.6931472, dtype=float32)
    """
    log_predictions, targets, mask = _prepare(
        log_predictions, targets, ("log_predictions", "targets"), axis, where
    )
    excess = _masked_sum(jnp.exp(log_predictions) - targets, mask)
    return _kl(log_predictions, targets, mask) + excess


def distillation_loss(
    student_logits: jax.typing.ArrayLike,
    teacher_logits: jax.typing.ArrayLike,
    *,
    temperature: float = 1.0,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Knowledge distillation: forward KL from the teacher, scaled by T².

    .. math::
      \ell = T^2\, D\big(\mathrm{softmax}(z_t / T) \,\|\, \mathrm{softmax}(z_s / T)\big)

    The T² keeps gradient magnitudes comparable across temperatures.

    Args:
      student_logits: the student's logits ``[..., K]``.
      teacher_logits: the teacher's logits, broadcastable with the student's.
      temperature: softening temperature T > 0.
      axis: the class axis or axes.
      where: boolean class mask (excluded from both softmaxes).

    Returns:
      Per-example losses.

    References:
      Hinton, Vinyals and Dean, `Distilling the Knowledge in a Neural Network
      <https://arxiv.org/abs/1503.02531>`_, 2015.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.distillation_loss(jnp.zeros(3), jnp.zeros(3), temperature=2.0)
      Array(0., dtype=float32)
    """
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    student = as_float_array(student_logits, "student_logits") / temperature
    teacher = as_float_array(teacher_logits, "teacher_logits") / temperature
    where = expand_row_mask(where, student.ndim, axis)
    divergence = kl_divergence_from_logits(teacher, student, axis=axis, where=where)
    return temperature**2 * divergence
