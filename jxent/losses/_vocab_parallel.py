"""The vocab-parallel losses: the integer-label and the fused cross-entropy on a
vocabulary split over a mesh axis (public as :mod:`jxent.sharding`)."""

import jax

from .._arguments import as_float_array, class_mask
from ._fused import Reduction, fused_cross_entropy
from ._fused_distill_terms import Divergence
from ._fused_online import SoftmaxStats
from ._fused_stats import softmax_statistics
from ._integer import integer_loss
from ._linear_distillation import distillation


def vocab_parallel_cross_entropy(
    logits_shard: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis_name: str | tuple[str, ...],
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: jax.typing.ArrayLike = 0.0,
    z_loss: jax.typing.ArrayLike = 0.0,
) -> jax.Array:
    r"""Integer-label cross-entropy over a vocabulary split across ``axis_name``.

    Equals :func:`jxent.losses.softmax_cross_entropy_with_integer_labels` on
    the gathered logits, with the same options and the same ``custom_jvp``
    rule, so the gradient needs no communication beyond the forward's
    per-token collectives (a ``pmax`` of the row maxima, and a ``psum`` each
    of the sums of exponentials and of the label's logits).

    Args:
      logits_shard: this device's logits ``[..., V/n]``.
      labels: integer labels ``[...]`` into the full vocabulary ``[0, V)``.
      axis_name: the mesh axis (or axes) that splits the vocabulary.
      where: boolean class mask of this shard, broadcastable to ``logits_shard``.
      ignore_index: int label value with loss 0 and gradient 0, or None.
      label_smoothing: α in [0, 1], uniform over the unmasked classes of all
        shards; may be traced.
      z_loss: coefficient λ >= 0 of the squared log-normaliser; may be traced.

    Returns:
      Per-token losses ``[...]``, identical on every device of the axis.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> from jax.sharding import AxisType, PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(AxisType.Auto,))
      >>> loss = jax.jit(jax.shard_map(
      ...     lambda z, y: jxent.sharding.vocab_parallel_cross_entropy(z, y, axis_name="vocab"),
      ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P()))
      >>> loss(jnp.zeros((2, 4)), jnp.array([0, 3]))
      Array([1.3862944, 1.3862944], dtype=float32)
    """
    logits = as_float_array(logits_shard, "logits_shard")
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits_shard of shape {logits.shape} has no classes")
    return integer_loss(
        logits,
        labels,
        class_mask(where, logits.shape),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        axis_name=axis_name,
        logits_name="logits_shard",
    )


def vocab_parallel_linear_cross_entropy(
    hidden: jax.typing.ArrayLike,
    weight_shard: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis_name: str | tuple[str, ...],
    bias: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: Reduction = "none",
    block_size: int | None = None,
    token_block_size: int | None = None,
    return_stats: bool = False,
) -> jax.Array | tuple[jax.Array, SoftmaxStats]:
    r"""Fused projection + cross-entropy with the weight split along the vocabulary.

    :func:`jxent.losses.linear_cross_entropy` run blockwise on this device's
    ``weight_shard[D, V/n]``; the shards combine per-token maxima, rescaled
    sums of exponentials and label logits. ``hidden`` is replicated over
    ``axis_name`` (it may be sharded over other axes); its gradient is the
    ``psum`` of the shards' contributions, as in any vocab-parallel head.

    A ``"sum"`` or ``"mean"`` reduces the per-token losses of this device's
    tokens (``psum`` them over a data axis yourself) and differentiates
    through the per-token sweep: the one-sweep gradient of the single-device
    loss needs whole vocabulary rows, which would cost a per-tile exchange
    of ``[tokens, D]`` gradients.

    Args:
      hidden: activations ``[..., D]``.
      weight_shard: this device's ``[D, V/n]`` slice of the projection.
      labels: integer labels ``[...]`` into the full vocabulary.
      axis_name: the mesh axis (or axes) that splits the vocabulary.
      bias: this device's ``[V/n]`` slice of the bias, or None.
      where: boolean token mask broadcastable to ``labels``; masked tokens
        give loss 0 and gradient 0 and are not counted.
      ignore_index: label value with loss 0 and gradient 0.
      label_smoothing: α, uniform over the full vocabulary.
      z_loss: coefficient of the squared log-normaliser.
      softcap: c of the logit soft-cap ``c·tanh(z/c)``, or None.
      reduction: ``"none"``, ``"sum"`` or ``"mean"`` over counted tokens.
      block_size: vocabulary columns per tile on each device (None: 1024).
      token_block_size: tokens per tile (None: chosen from the shapes).
      return_stats: also return the per-token
        :class:`jxent.losses.SoftmaxStats` of the loss's sweep (not
        differentiated), as :func:`jxent.losses.linear_cross_entropy` does.

    Returns:
      Per-token losses ``[...]`` in float32, or their sum or mean, identical
      on every device of the axis; with ``return_stats``, ``(loss, stats)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> from jax.sharding import AxisType, PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(AxisType.Auto,))
      >>> loss = jax.jit(jax.shard_map(
      ...     lambda h, w, y: jxent.sharding.vocab_parallel_linear_cross_entropy(
      ...         h, w, y, axis_name="vocab"),
      ...     mesh=mesh, in_specs=(P(), P(None, "vocab"), P()), out_specs=P()))
      >>> loss(jnp.ones((2, 3)), jnp.zeros((3, 4)), jnp.array([0, 3]))
      Array([1.3862944, 1.3862944], dtype=float32)
    """
    return fused_cross_entropy(
        hidden,
        weight_shard,
        labels,
        bias=bias,
        where=where,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        reduction=reduction,
        block_size=block_size,
        token_block_size=token_block_size,
        axis_name=axis_name,
        return_stats=return_stats,
    )


def vocab_parallel_linear_softmax_stats(
    hidden: jax.typing.ArrayLike,
    weight_shard: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None = None,
    *,
    axis_name: str | tuple[str, ...],
    bias: jax.typing.ArrayLike | None = None,
    temperature: jax.typing.ArrayLike = 1.0,
    softcap: float | None = None,
    where: jax.typing.ArrayLike | None = None,
    block_size: int | None = None,
    token_block_size: int | None = None,
) -> SoftmaxStats:
    r"""Fused per-token log-prob, entropy, log-normaliser and argmax with the weight
    split along the vocabulary.

    :func:`jxent.losses.linear_softmax_stats` run blockwise on this device's
    ``weight_shard[D, V/n]``: the shards combine per-token maxima, rescaled sums
    of exponentials and of exponential-weighted logits, label logits and the
    lowest index at the maximum. ``hidden`` is replicated over ``axis_name``;
    its gradient is the ``psum`` of the shards' contributions.

    Args:
      hidden: activations ``[..., D]``.
      weight_shard: this device's ``[D, V/n]`` slice of the projection.
      labels: optional integer labels ``[...]`` into the full vocabulary.
      axis_name: the mesh axis (or axes) that splits the vocabulary.
      bias: this device's ``[V/n]`` slice of the bias, or None.
      temperature: T > 0, a scalar or per-token array; not differentiated.
      softcap: c of the logit soft-cap ``c·tanh(z/c)``, or None.
      where: boolean token mask broadcastable to the tokens' shape.
      block_size: vocabulary columns per tile on each device (None: 1024).
      token_block_size: tokens per tile (None: chosen from the shapes).

    Returns:
      A :class:`jxent.losses.SoftmaxStats` of per-token arrays, identical on
      every device of the axis (``argmax`` indexes the full vocabulary).

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> from jax.sharding import AxisType, PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(AxisType.Auto,))
      >>> entropy = jax.jit(jax.shard_map(
      ...     lambda h, w: jxent.sharding.vocab_parallel_linear_softmax_stats(
      ...         h, w, axis_name="vocab").entropy,
      ...     mesh=mesh, in_specs=(P(), P(None, "vocab")), out_specs=P()))
      >>> entropy(jnp.ones((2, 3)), jnp.zeros((3, 4)))
      Array([1.3862944, 1.3862944], dtype=float32)
    """
    return softmax_statistics(
        hidden,
        weight_shard,
        labels,
        bias=bias,
        temperature=temperature,
        softcap=softcap,
        where=where,
        block_size=block_size,
        token_block_size=token_block_size,
        axis_name=axis_name,
    )


def vocab_parallel_linear_distillation_loss(
    student_hidden: jax.typing.ArrayLike,
    student_weight_shard: jax.typing.ArrayLike,
    teacher_hidden: jax.typing.ArrayLike,
    teacher_weight_shard: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None = None,
    *,
    axis_name: str | tuple[str, ...],
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
    r"""Fused two-head distillation with both weights split along the vocabulary.

    :func:`jxent.losses.linear_distillation_loss` on this device's
    ``student_weight_shard[D_s, V/n]`` and ``teacher_weight_shard[D_t, V/n]``
    (the same columns of both): each tile of whole local rows meets the other
    shards through per-token vectors (row maxima, sums of exponentials, the
    divergence's sums). The hidden states are replicated over ``axis_name``; a
    ``"sum"`` or ``"mean"`` reduces this device's tokens.

    Args:
      student_hidden: the student's activations ``[..., D_s]``.
      student_weight_shard: this device's ``[D_s, V/n]`` slice of the student head.
      teacher_hidden: the teacher's activations ``[..., D_t]``.
      teacher_weight_shard: this device's ``[D_t, V/n]`` slice of the teacher head.
      labels: optional integer labels into the full vocabulary.
      axis_name: the mesh axis (or axes) that splits the vocabulary.
      divergence: ``"kl"``, ``"reverse_kl"``, ``"js"`` or ``"tv"``.
      beta: the teacher's weight in ``"js"``.
      temperature: T > 0; the loss is scaled by T².
      hard_label_weight: weight of the student's cross-entropy on the labels.
      student_bias: this device's ``[V/n]`` slice of the student's bias.
      teacher_bias: this device's ``[V/n]`` slice of the teacher's bias.
      ignore_index: a label value whose token is skipped.
      where: boolean token mask.
      reduction: ``"none"``, ``"sum"`` or ``"mean"``.
      block_size: vocabulary columns per tile of the backward.
      token_block_size: tokens per tile.

    Returns:
      Per-token losses ``[...]`` or their sum or mean, identical on every
      device of the axis.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> from jax.sharding import AxisType, PartitionSpec as P
      >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(AxisType.Auto,))
      >>> loss = jax.jit(jax.shard_map(
      ...     lambda hs, ws, ht, wt: jxent.sharding.vocab_parallel_linear_distillation_loss(
      ...         hs, ws, ht, wt, axis_name="vocab"),
      ...     mesh=mesh, in_specs=(P(), P(None, "vocab"), P(), P(None, "vocab")),
      ...     out_specs=P()))
      >>> loss(jnp.ones((2, 3)), jnp.zeros((3, 4)), jnp.ones((2, 2)), jnp.zeros((2, 4)))
      Array([0., 0.], dtype=float32)
    """
    return distillation(
        student_hidden,
        student_weight_shard,
        teacher_hidden,
        teacher_weight_shard,
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
        axis_name=axis_name,
    )
