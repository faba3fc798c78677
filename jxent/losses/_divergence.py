"""KL-divergence losses in optax's argument order, and distillation."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .. import _primitives as prim
from .. import _validation
from .._arguments import (
    Axis,
    as_float_array,
    axes_in_order,
    broadcast_pair,
    broadcasts_into,
    real_array,
)
from .._measures import kl_divergence_from_logits
from .._zero_safe import zero_safe_mul
from ._classes import classes_last_pair, expand_row_mask


def _prepare(log_predictions, targets, names, axis, where):
    """Class axes flattened last; ``where`` broadcasts from the right, as it
    does in the sum optax hands it to (a ``[K]`` mask is a class mask)."""
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
    axis: Axis | None = -1,
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
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask broadcast from the right against the inputs, as
        optax's sum reads it (a ``[K]`` mask is a class mask; pass
        ``where[..., None]`` to mask whole rows).

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
    _validation.check_probabilities(
        targets, "targets", axes=(targets.ndim - 1,), mask=mask, input_dtype=targets.dtype
    )
    return _kl(log_predictions, targets, mask)


def _kl(log_predictions, targets, mask):
    """Σ t (log t - log q) over the last axis of prepared arrays."""
    if mask is not None:
        targets = jnp.where(mask, targets, 0)
        log_predictions = jnp.where(mask, log_predictions, 0)
    terms = prim.xlogx_term(targets) - zero_safe_mul(targets, log_predictions)
    return _masked_sum(terms, mask)


def kl_divergence_with_log_targets(
    log_predictions: jax.typing.ArrayLike,
    log_targets: jax.typing.ArrayLike,
    axis: Axis | None = -1,
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
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask broadcast from the right against the inputs, as
        optax's sum reads it (a ``[K]`` mask is a class mask; pass
        ``where[..., None]`` to mask whole rows).

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


def generalized_kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Generalised KL divergence, for unnormalised measures (optax's order).

    .. math::
      \ell = \sum_j t_j (\log t_j - \log q_j) + q_j - t_j

    The Bregman divergence of :math:`x \log x - x`. A drop-in for
    ``optax.losses.generalized_kl_divergence``.

    Args:
      log_predictions: log of the predicted measure.
      targets: the target measure.
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask broadcast from the right against the inputs, as
        optax's sum reads it (a ``[K]`` mask is a class mask; pass
        ``where[..., None]`` to mask whole rows).

    Returns:
      Per-example divergences, ``>= 0``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.generalized_kl_divergence(jnp.log(jnp.array([0.5, 0.5])),
      ...     jnp.array([1.0, 0.0]))
      Array(0.6931472, dtype=float32)
    """
    log_predictions, targets, mask = _prepare(
        log_predictions, targets, ("log_predictions", "targets"), axis, where
    )
    excess = _masked_sum(jnp.exp(log_predictions) - targets, mask)
    return _kl(log_predictions, targets, mask) + excess


def convex_kl_divergence(
    log_predictions: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """optax's deprecated name of :func:`generalized_kl_divergence`.

    It warns with a ``DeprecationWarning``, as optax 0.2.8 does, and returns
    the same values.

    Args:
      log_predictions: log of the predicted measure.
      targets: the target measure.
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean mask broadcast from the right against the inputs.

    Returns:
      Per-example divergences, ``>= 0``.
    """
    warnings.warn(
        "The function convex_kl_divergence is deprecated. "
        "Please use generalized_kl_divergence instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    return generalized_kl_divergence(log_predictions, targets, axis, where)


def distillation_loss(
    student_logits: jax.typing.ArrayLike,
    teacher_logits: jax.typing.ArrayLike,
    *,
    temperature: float = 1.0,
    axis: Axis | None = -1,
    where: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Knowledge distillation: forward KL from the teacher, scaled by T².

    .. math::
      \ell = T^2\, D\big(\mathrm{softmax}(z_t / T) \,\|\, \mathrm{softmax}(z_s / T)\big)

    The T² keeps gradient magnitudes comparable across temperatures.

    Args:
      student_logits: the student's logits ``[..., K]``.
      teacher_logits: the teacher's logits, broadcastable with the student's.
      temperature: softening temperature T > 0; may be traced (a ``jit``
        argument: a schedule), and a traced T <= 0 gives NaN.
      axis: the class axis or axes; None makes every axis a class axis.
      where: boolean class mask (excluded from both softmaxes), or a mask of
        another rank expanded at ``axis`` (one of the batch shape masks whole
        rows: they give 0).

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
    temperature = _validation.option_in_domain(
        temperature, "temperature", "positive and finite", lambda t: (t > 0) & (t < np.inf)
    )
    student = as_float_array(student_logits, "student_logits")
    teacher = as_float_array(teacher_logits, "teacher_logits")
    t = real_array(temperature, "temperature", jnp.result_type(student, teacher))
    where = expand_row_mask(where, student.ndim, axis)
    shape = broadcast_pair(student, teacher, ("student_logits", "teacher_logits"))[0].shape
    if not broadcasts_into(t.shape, shape):
        raise ValueError(
            f"temperature of shape {t.shape} does not broadcast to the logits' shape {shape}"
        )
    axes = axes_in_order(axis, len(shape))
    if math.prod(shape[a] for a in axes) == 0:
        raise ValueError(f"student_logits of shape {shape} has no classes along axis={axis!r}")
    divergence = kl_divergence_from_logits(teacher / t, student / t, axis=axes, where=where)
    return t**2 * divergence
