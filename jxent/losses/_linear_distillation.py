"""``linear_distillation_loss``: argument checks and the choice of sweep."""

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation
from .._arguments import check_ignore_index, class_mask
from ._fused import Reduction, checked_arguments, positive_or_none
from ._fused_distill import distill_per_token, distill_reduced
from ._fused_distill_terms import DistillationHyperparameters, Divergence
from ._fused_kernels import LinearCrossEntropyOptions, accumulation_dtype, token_status
from ._fused_reduced import reduction_divisor

_DIVERGENCES = ("kl", "reverse_kl", "js", "tv")


def _scalar(value, name: str, domain: str, inside, dtype) -> jax.Array:
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    value = _validation.option_in_domain(value, name, domain, inside)
    return jax.lax.stop_gradient(jnp.asarray(value, dtype))


def _hyperparameters(temperature, beta, hard_label_weight, dtype) -> DistillationHyperparameters:
    hard = None
    if isinstance(hard_label_weight, jax.Array) or np.ndim(hard_label_weight) or hard_label_weight:
        hard = _scalar(hard_label_weight, "hard_label_weight", "≥ 0", lambda w: w >= 0, dtype)
    return DistillationHyperparameters(
        temperature=_scalar(temperature, "temperature", "positive", lambda t: t > 0, dtype),
        beta=_scalar(beta, "beta", "in [0, 1]", lambda b: (b >= 0) & (b <= 1), dtype),
        hard_weight=hard,
    )


def distillation(
    student_hidden: jax.typing.ArrayLike,
    student_weight: jax.typing.ArrayLike,
    teacher_hidden: jax.typing.ArrayLike,
    teacher_weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None,
    *,
    divergence: Divergence,
    beta: jax.typing.ArrayLike,
    temperature: jax.typing.ArrayLike,
    hard_label_weight: jax.typing.ArrayLike,
    student_bias: jax.typing.ArrayLike | None,
    teacher_bias: jax.typing.ArrayLike | None,
    ignore_index: int | None,
    where: jax.typing.ArrayLike | None,
    reduction: Reduction,
    block_size: int | None,
    token_block_size: int | None,
    axis_name: str | tuple[str, ...] | None,
) -> jax.Array:
    """:func:`linear_distillation_loss` on weights that may be vocabulary shards."""
    if divergence not in _DIVERGENCES:
        raise ValueError(f"divergence must be one of {_DIVERGENCES}, got {divergence!r}")
    token_shape = np.shape(student_hidden)[:-1]
    given = labels is not None
    if labels is None:
        labels = jnp.zeros(token_shape, jnp.int32)
        ignore_index = None
    student = checked_arguments(
        student_hidden, student_weight, labels, student_bias, reduction=reduction
    )
    s_hidden, s_weight, labels, s_bias = student
    if np.shape(teacher_hidden)[:-1] != labels.shape:
        raise ValueError(
            f"teacher_hidden of shape {np.shape(teacher_hidden)} and student_hidden of shape "
            f"{s_hidden.shape} must have the same leading (token) shape"
        )
    t_hidden, t_weight, _, t_bias = checked_arguments(
        teacher_hidden, teacher_weight, labels, teacher_bias, reduction=reduction
    )
    if t_weight.shape[1] != s_weight.shape[1]:
        raise ValueError(
            f"teacher_weight of shape {t_weight.shape} and student_weight of shape "
            f"{s_weight.shape} must have the same vocabulary (last axis); mask a padded "
            "vocabulary with a -inf bias"
        )
    dtype = accumulation_dtype(s_hidden, s_weight)
    hyper = _hyperparameters(temperature, beta, hard_label_weight, dtype)
    if hyper.hard_weight is not None and not given:
        raise ValueError("hard_label_weight > 0 needs labels")
    counted = class_mask(where, labels.shape)
    options = LinearCrossEntropyOptions(
        ignore_index=check_ignore_index(ignore_index),
        block_size=positive_or_none(block_size, "block_size"),
        token_block_size=positive_or_none(token_block_size, "token_block_size"),
        axis_name=axis_name,
        skips_tokens=where is not None or ignore_index is not None,
        # Two heads' tiles in the backward: tiles half as tall as the cross-entropy's.
        tile_budget=2**22,
    )
    if _validation.enabled():
        if hyper.hard_weight is not None:
            checked = labels if counted is None else jnp.where(counted, labels, 0)
            vocab = s_weight.shape[1] * (1 if axis_name is None else jax.lax.axis_size(axis_name))
            _validation.check_labels(checked, vocab, options.ignore_index)
        for name, hidden in (("student_hidden", s_hidden), ("teacher_hidden", t_hidden)):
            read = hidden if counted is None else jnp.where(counted[..., None], hidden, 0)
            _validation.check_no_nan(read, name)
    flat_labels = labels.reshape(-1)
    flat_counted = None if counted is None else counted.reshape(-1)
    operands = (
        s_hidden.reshape(-1, s_hidden.shape[-1]),
        s_weight,
        t_hidden.reshape(-1, t_hidden.shape[-1]),
        t_weight,
        s_bias,
        t_bias,
        flat_labels,
        flat_counted,
    )
    if reduction != "none" and axis_name is None:
        return distill_reduced(operands, hyper, (options, divergence, reduction == "mean"))
    losses = distill_per_token(operands, hyper, (options, divergence))
    if reduction == "none":
        return losses.reshape(labels.shape)
    status = token_status(flat_labels, flat_counted, s_weight.shape[1], options)
    return jnp.sum(losses) / reduction_divisor(status, reduction == "mean", losses.dtype)


def linear_distillation_loss(
    student_hidden: jax.typing.ArrayLike,
    student_weight: jax.typing.ArrayLike,
    teacher_hidden: jax.typing.ArrayLike,
    teacher_weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None = None,
    *,
    divergence: Divergence = "kl",
    beta: jax.typing.ArrayLike = 0.5,
    temperature: jax.typing.ArrayLike = 1.0,
    hard_label_weight: jax.typing.ArrayLike = 0.0,
    student_bias: jax.typing.ArrayLike | None = None,
    teacher_bias: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: Reduction = "none",
    block_size: int | None = None,
    token_block_size: int | None = None,
) -> jax.Array:
    r"""Distillation loss between a teacher's and a student's linear heads, fused.

    With :math:`P = \mathrm{softmax}(z_t / T)` from the teacher's logits
    :math:`z_t = h_t W_t + b_t` and :math:`Q = \mathrm{softmax}(z_s / T)` from the
    student's, per token:

    .. math::
      \ell = T^2\, D(P, Q) + w_{\mathrm{hard}}\,
        \bigl(\mathrm{lse}(z_s) - z_{s,y}\bigr),

    with :math:`D` one of

    * ``"kl"``: :math:`D(P \| Q)`, the forward KL of Hinton et al.; equal to
      :func:`distillation_loss` on the dense logits (the same :math:`T^2`);
    * ``"reverse_kl"``: :math:`D(Q \| P)` (mode-seeking);
    * ``"js"``: :math:`\beta\, D(P \| M) + (1 - \beta)\, D(Q \| M)` with
      :math:`M = \beta P + (1 - \beta) Q`, as :func:`jxent.generalized_js_divergence`:
      ``beta`` weights the *teacher*'s side, so ``beta=0`` and ``beta=1`` give 0
      and ``beta=0.5`` the Jensen–Shannon divergence. (Liger Kernel's and TRL's
      generalised JSD call β the weight of Q in the mixture, with β = 0 the
      forward KL; EasyDeL's is the opposite: check before porting a β.)
    * ``"tv"``: the total variation :math:`\tfrac12 \sum_j |p_j - q_j|` (its
      gradient where :math:`p_j = q_j` is the subgradient 0);

    and the hard term (the student's cross-entropy on ``labels`` at
    temperature 1) present when ``hard_label_weight`` is not 0. Neither head's
    ``[tokens, V]`` logits are held: the forward walks over tiles of whole
    vocabulary rows of both heads, once; a ``"sum"``/``"mean"`` computes the
    student's gradients in that sweep (:math:`2NV(D_t + 3D_s)` matmul FLOPs),
    ``"none"`` recomputes both heads blockwise in its backward
    (:math:`2NV(2D_t + 4D_s)`). Accumulation is float32; with 16-bit inputs every
    matmul takes 16-bit operands. Reverse mode only (``custom_vjp``).

    The teacher is frozen: its inputs (``teacher_hidden``, ``teacher_weight``,
    ``teacher_bias``) get zero cotangents. Zero probabilities follow the
    library's rules: :math:`0 \log 0 = 0`; :math:`p > 0 = q` makes ``"kl"``
    +inf (and :math:`q > 0 = p` makes ``"reverse_kl"`` +inf), never NaN; JS and
    TV stay finite. Under ``jax.jit`` with sharded inputs it partitions as
    :func:`linear_cross_entropy` does.

    Args:
      student_hidden: the student's activations ``[..., D_s]``.
      student_weight: the student's projection ``[D_s, V]``.
      teacher_hidden: the teacher's activations ``[..., D_t]`` (same leading
        shape; ``D_t`` may differ from ``D_s``).
      teacher_weight: the teacher's projection ``[D_t, V]`` (same ``V``: mask
        a padded vocabulary with a ``-inf`` bias).
      labels: optional integer labels ``[...]`` for the hard term and
        ``ignore_index``.
      divergence: ``"kl"``, ``"reverse_kl"``, ``"js"`` or ``"tv"``.
      beta: the teacher's weight β in [0, 1] of ``"js"``.
      temperature: T > 0 of both softmaxes; the loss is scaled by T².
      hard_label_weight: weight ≥ 0 of the student's cross-entropy on the
        labels at temperature 1 (0: no hard term).
      student_bias: optional ``[V]`` bias of the student.
      teacher_bias: optional ``[V]`` bias of the teacher (``-inf`` masks a class).
      ignore_index: a label value whose token is skipped.
      where: boolean token mask broadcastable to the tokens' shape.
        A masked or ignored token gives 0, is left out of a mean, and its
        hidden states are never read (they may be NaN).
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` over the counted tokens.
      block_size: vocabulary columns per tile of the blockwise backward.
      token_block_size: tokens per tile (None: from the shapes).

    Returns:
      Per-token losses ``[...]`` in float32, or their sum or mean. With the
      hard term, a label outside ``[0, V)`` gives NaN.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> student_w = jnp.zeros((3, 4)); teacher_w = jnp.zeros((2, 4)).at[0, 1].set(2.0)
      >>> jxent.losses.linear_distillation_loss(
      ...     jnp.ones((2, 3)), student_w, jnp.ones((2, 2)), teacher_w)
      Array([0.46801037, 0.46801037], dtype=float32)
    """
    return distillation(
        student_hidden,
        student_weight,
        teacher_hidden,
        teacher_weight,
        labels,
        divergence=divergence,
        beta=beta,
        temperature=temperature,
        hard_label_weight=hard_label_weight,
        student_bias=student_bias,
        teacher_bias=teacher_bias,
        ignore_index=ignore_index,
        where=where,
        reduction=reduction,
        block_size=block_size,
        token_block_size=token_block_size,
        axis_name=None,
    )
