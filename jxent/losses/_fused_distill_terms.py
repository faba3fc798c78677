"""The divergences between two heads' softmaxes on a tile of whole (local)
vocabulary rows, and their gradient with respect to the student's logits.

With ``a = teacher logits / T``, ``b = student logits / T``, ``P = softmax(a)``,
``Q = softmax(b)``, per token and times T²:

* ``"kl"``: D(P‖Q) = Σ p (log p − log q); d/db_j = q_j − p_j;
* ``"reverse_kl"``: D(Q‖P); d/db_j = q_j (log q_j − log p_j − D(Q‖P));
* ``"js"``: β D(P‖M) + (1 − β) D(Q‖M), M = βP + (1 − β)Q;
  d/db_j = (1 − β) q_j (log(q_j / m_j) − D(Q‖M));
* ``"tv"``: ½ Σ |p − q|; d/db_j = q_j (g_j − Σ_k q_k g_k), g = ½ sign(q − p);

plus ``hard_weight ×`` the student's cross-entropy on the label at temperature
1 (d/ds_j = q¹_j − [j = y]). Zero probabilities count ``0 log 0 = 0``; the
gradient with respect to the raw student logits is ``T ×`` the one above (T²
from the scale, 1/T from the logits). A row split over ``axis_name`` meets its
other shards through per-token vectors only.
"""

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from .._collectives import AxisName, all_max, all_sum

Divergence = Literal["kl", "reverse_kl", "js", "tv"]


class DistillationHyperparameters(NamedTuple):
    """Scalars, possibly traced, not differentiated (None: statically off)."""

    temperature: jax.Array
    beta: jax.Array
    hard_weight: jax.Array | None


class RowResiduals(NamedTuple):
    """What the gradient needs per token: each softmax's log-normaliser as its row
    peak and log Σ exp(x - peak) (a log-probability near 0 keeps its digits at
    logits of 1e3, where the sum of the two rounds them away), and the divergence
    statistic its formula subtracts (0 for ``"kl"``)."""

    teacher_peak: jax.Array
    teacher_log_total: jax.Array
    student_peak: jax.Array
    student_log_total: jax.Array
    hard_peak: jax.Array  # of the raw student logits (0 without the hard term)
    hard_log_total: jax.Array
    statistic: jax.Array
    # "reverse_kl": the teacher's scaled logit at the student's peak, so that the
    # gradient's log(q/p) - D is formed from differences of logits (at logits of
    # 1e3 both terms are ~1e3 and their difference would be rounding).
    reference: jax.Array


def _normaliser(x: jax.Array, axis_name: AxisName) -> tuple[jax.Array, jax.Array]:
    """Per-row (peak, log Σ exp(x - peak)) over the row's shards; the peak is 0 and the
    log-sum -inf for an empty row."""
    peak = all_max(jnp.max(x, axis=1), axis_name)
    finite = jnp.where(peak == -jnp.inf, 0, peak)
    total = all_sum(jnp.sum(jnp.exp(x - finite[:, None]), axis=1), axis_name)
    return finite, jnp.log(total)


def _log_softmax(x, peak, log_total):
    return (x - peak[:, None]) - log_total[:, None]


def _centred(a, b, student_peak, reference):
    """log(q/p) minus its value at the student's peak: (b - peak) - (a - reference)."""
    if student_peak.ndim == 1:
        student_peak = student_peak[:, None]
    if reference.ndim == 1:
        reference = reference[:, None]
    return (b - student_peak) - (a - reference)


def _log_mixture(log_p, log_q, beta):
    return jnp.logaddexp(jnp.log(beta) + log_p, jnp.log1p(-beta) + log_q)


def _times(weight, terms):
    """``weight * terms``, 0 where the weight is 0 (whatever the terms)."""
    return jnp.where(weight == 0, 0, weight * terms)


def _xlogy_rows(x, log_ratio):
    """Σ x · log_ratio per row, 0 where x = 0."""
    return jnp.sum(jnp.where(x == 0, 0, x * log_ratio), axis=1)


def row_divergence(
    teacher: jax.Array,
    student: jax.Array,
    labels_are: jax.Array | None,
    hyper: DistillationHyperparameters,
    divergence: Divergence,
    axis_name: AxisName,
) -> tuple[jax.Array, jax.Array, RowResiduals]:
    """Per-token ``(loss, empty, residuals)`` from raw logit tiles ``[R, V_local]``.

    ``labels_are`` marks each row's label column (for the hard term); ``empty``
    marks rows where either head has no finite logit (loss 0).
    """
    inverse = 1 / hyper.temperature
    a, b = teacher * inverse, student * inverse
    (peak_a, total_a), (peak_b, total_b) = _normaliser(a, axis_name), _normaliser(b, axis_name)
    empty = (total_a == -jnp.inf) | (total_b == -jnp.inf)
    total_a, total_b = jnp.where(empty, 0, total_a), jnp.where(empty, 0, total_b)
    log_p, log_q = _log_softmax(a, peak_a, total_a), _log_softmax(b, peak_b, total_b)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    statistic = reference = jnp.zeros_like(peak_a)
    if divergence == "kl":
        value = all_sum(_xlogy_rows(p, log_p - log_q), axis_name)
    elif divergence == "reverse_kl":
        value = all_sum(_xlogy_rows(q, log_q - log_p), axis_name)
        at_peak = b == peak_b[:, None]
        ties = all_sum(jnp.sum(at_peak, axis=1), axis_name)
        reference = all_sum(jnp.sum(jnp.where(at_peak, a, 0), axis=1), axis_name) / ties
        statistic = all_sum(_xlogy_rows(q, _centred(a, b, peak_b, reference)), axis_name)
    elif divergence == "js":
        log_m = _log_mixture(log_p, log_q, hyper.beta)
        to_teacher = all_sum(_xlogy_rows(p, log_p - log_m), axis_name)
        statistic = all_sum(_xlogy_rows(q, log_q - log_m), axis_name)
        value = _times(hyper.beta, to_teacher) + _times(1 - hyper.beta, statistic)
    else:
        value = all_sum(0.5 * jnp.sum(jnp.abs(p - q), axis=1), axis_name)
        statistic = all_sum(jnp.sum(0.5 * q * jnp.sign(q - p), axis=1), axis_name)
    # Sums of terms of both signs: never below 0, not even by rounding.
    loss = hyper.temperature**2 * jnp.maximum(value, 0)
    peak_h = total_h = jnp.zeros_like(peak_a)
    if hyper.hard_weight is not None:
        assert labels_are is not None, "the hard term needs labels"
        peak_h, total_h = _normaliser(student, axis_name)
        label_logit = all_sum(jnp.sum(jnp.where(labels_are, student, 0), axis=1), axis_name)
        loss = loss + _times(hyper.hard_weight, (peak_h - label_logit) + total_h)
        total_h = jnp.where(empty, 0, total_h)
    statistic = jnp.where(empty, 0, statistic)
    residuals = RowResiduals(
        peak_a, total_a, peak_b, total_b, peak_h, total_h, statistic, jnp.where(empty, 0, reference)
    )
    return jnp.where(empty, 0, loss), empty, residuals


def student_logit_gradient(
    teacher: jax.Array,
    student: jax.Array,
    labels_are: jax.Array | None,
    residuals: RowResiduals,
    hyper: DistillationHyperparameters,
    divergence: Divergence,
) -> jax.Array:
    """d loss / d (raw student logits) of a tile, per unit cotangent (see the module
    docstring), from its rows' :class:`RowResiduals`."""
    inverse = 1 / hyper.temperature
    log_p = _log_softmax(teacher * inverse, residuals.teacher_peak, residuals.teacher_log_total)
    log_q = _log_softmax(student * inverse, residuals.student_peak, residuals.student_log_total)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    statistic = residuals.statistic[:, None]
    if divergence == "kl":
        d = q - p
    elif divergence == "reverse_kl":
        centred = _centred(teacher * inverse, student * inverse, residuals.student_peak,
                           residuals.reference[:, None])  # fmt: skip
        d = jnp.where(q == 0, 0, q * (centred - statistic))
    elif divergence == "js":
        log_m = _log_mixture(log_p, log_q, hyper.beta)
        d = _times(1 - hyper.beta, jnp.where(q == 0, 0, q * (log_q - log_m - statistic)))
    else:
        d = q * (0.5 * jnp.sign(q - p) - statistic)
    d = hyper.temperature * d
    if hyper.hard_weight is not None:
        assert labels_are is not None, "the hard term needs labels"
        hard = jnp.exp(_log_softmax(student, residuals.hard_peak, residuals.hard_log_total))
        d = d + _times(hyper.hard_weight, jnp.where(labels_are, hard - 1, hard))
    return d
