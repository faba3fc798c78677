"""Fused linear projection + cross-entropy that never holds the [tokens, V] logits.

Argument checks, the choice of tile sizes, and the dispatch between the two
sweeps: per-token losses recompute blocks of logits in the backward
(``_fused_per_token``); a sum or mean computes its gradients in the forward
(``_fused_reduced``). Reverse mode only (``custom_vjp``): forward mode would
need the logits this loss exists not to store.
"""

from typing import Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation
from .._arguments import check_ignore_index, class_mask, floating_array, integer_labels
from .._collectives import total_classes
from ._fused_kernels import (
    Hyperparameters,
    LinearCrossEntropyOptions,
    accumulation_dtype,
    token_status,
)
from ._fused_online import SoftmaxStats
from ._fused_per_token import per_token_cross_entropy
from ._fused_reduced import reduced_cross_entropy, reduction_divisor
from ._integer import smoothing_and_z_loss

Reduction = Literal["none", "sum", "mean"]


def checked_arguments(hidden, weight, labels, bias, *, reduction):
    hidden = floating_array(hidden, "hidden")
    weight = floating_array(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be [D, V], got shape {weight.shape}")
    if 0 in weight.shape:
        raise ValueError(f"weight of shape {weight.shape} is empty: D and V must be positive")
    if hidden.ndim >= 1 and hidden.shape[-1] == weight.shape[1] != weight.shape[0]:
        raise ValueError(
            f"weight of shape {weight.shape} looks like a [V, D] embedding table for hidden "
            f"of shape {hidden.shape}: pass it transposed, weight=embedding.T ([D, V], the "
            "layout of a Dense kernel)"
        )
    if hidden.ndim < 1 or hidden.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"hidden of shape {hidden.shape} does not match weight of shape {weight.shape}: "
            "hidden's last axis must equal weight's first (D)"
        )
    labels = integer_labels(labels, hidden.shape[:-1], "the leading shape of hidden")
    if bias is not None:
        bias = floating_array(bias, "bias")
        if bias.shape != weight.shape[1:]:
            raise ValueError(f"bias of shape {bias.shape} must be [{weight.shape[1]}]")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    return hidden, weight, labels, bias


def hyperparameters(label_smoothing, z_loss, softcap, dtype) -> Hyperparameters:
    """The scalar options as arrays (concrete or traced), None where statically off.

    They are not differentiated: a schedule passes them as data.
    """
    smoothing, z_loss = smoothing_and_z_loss(label_smoothing, z_loss, dtype)
    if softcap is not None:
        if np.ndim(softcap) != 0:
            raise ValueError(f"softcap must be a scalar or None, got shape {np.shape(softcap)}")
        softcap = jnp.asarray(
            _validation.option_in_domain(softcap, "softcap", "positive or None", lambda c: c > 0),
            dtype,
        )
    return Hyperparameters(
        *(None if x is None else jax.lax.stop_gradient(x) for x in (smoothing, z_loss, softcap))
    )


def positive_or_none(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def fused_cross_entropy(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    bias: jax.typing.ArrayLike | None,
    where: jax.typing.ArrayLike | None,
    ignore_index: int | None,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    reduction: Reduction,
    block_size: int | None,
    token_block_size: int | None,
    axis_name: str | tuple[str, ...] | None,
    return_stats: bool = False,
) -> jax.Array | tuple[jax.Array, SoftmaxStats]:
    """:func:`linear_cross_entropy` on a weight that may be a vocabulary shard."""
    hidden, weight, labels, bias = checked_arguments(
        hidden, weight, labels, bias, reduction=reduction
    )
    hyper = hyperparameters(label_smoothing, z_loss, softcap, accumulation_dtype(hidden, weight))
    counted = class_mask(where, labels.shape)
    reduced = reduction != "none"
    # The one-sweep reduced path needs whole vocabulary rows on one device.
    one_sweep = reduced and axis_name is None
    options = LinearCrossEntropyOptions(
        ignore_index=check_ignore_index(ignore_index),
        block_size=positive_or_none(block_size, "block_size"),
        token_block_size=positive_or_none(token_block_size, "token_block_size"),
        axis_name=axis_name,
        skips_tokens=where is not None or ignore_index is not None,
        statistics=bool(return_stats),
    )
    if _validation.enabled():
        checked = labels if counted is None else jnp.where(counted, labels, 0)
        vocab = total_classes(weight.shape[1], axis_name)
        _validation.check_labels(checked, vocab, options.ignore_index)
        # A token that does not count may hold NaN (padding); one that counts may not.
        read = hidden if counted is None else jnp.where(counted[..., None], hidden, 0)
        _validation.check_no_nan(read, "hidden")
        _validation.check_no_nan(weight, "weight")
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1)
    flat_counted = None if counted is None else counted.reshape(-1)
    if one_sweep:
        args = (flat_hidden, weight, bias, flat_labels, flat_counted)
        result = reduced_cross_entropy(*args, hyper, options, reduction == "mean")
    else:
        args = (flat_hidden, weight, bias, flat_labels, flat_counted, hyper)
        result = per_token_cross_entropy(*args, options)
    loss, extras = result if return_stats else (result, ())
    if reduced and not one_sweep:
        status = token_status(flat_labels, flat_counted, weight.shape[1], options)
        loss = jnp.sum(loss) / reduction_divisor(status, reduction == "mean", loss.dtype)
    elif not reduced:
        loss = loss.reshape(labels.shape)
    if not return_stats:
        return loss
    # The statistics of the loss's sweep; their gradient is not the loss's.
    log_prob, entropy, logsumexp, argmax = (
        jax.lax.stop_gradient(x).reshape(labels.shape) for x in extras
    )
    return loss, SoftmaxStats(log_prob, entropy, logsumexp, argmax)


@overload
def linear_cross_entropy(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    bias: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: Reduction = "none",
    block_size: int | None = None,
    token_block_size: int | None = None,
    return_stats: Literal[False] = False,
) -> jax.Array: ...


@overload
def linear_cross_entropy(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    bias: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: Reduction = "none",
    block_size: int | None = None,
    token_block_size: int | None = None,
    return_stats: Literal[True],
) -> tuple[jax.Array, SoftmaxStats]: ...


def linear_cross_entropy(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
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
    r"""Cross-entropy of ``hidden @ weight + bias`` without holding the logits.

    Equals ``softmax_cross_entropy_with_integer_labels(softcap(hidden @ weight
    + bias), labels, ...)``, with :math:`\mathrm{softcap}(z) = c \tanh(z / c)`
    (Gemma 2), then reduced as asked, but its memory does not grow with tokens
    × vocabulary. Accumulation is float32 whatever the input dtype; the loss is
    float32 and the gradients come back in the input dtypes. With 16-bit
    inputs every matmul, the gradient ones included, takes 16-bit operands and
    accumulates in float32. Reverse mode only (``custom_vjp``).

    .. math::
      \ell_n = (1-\alpha)(\mathrm{lse}(z_n) - z_{n,k}) + \alpha\,(\mathrm{lse}(z_n)
        - \bar z_n) + \lambda\, \mathrm{lse}(z_n)^2

    Two sweeps, chosen by ``reduction``:

    * ``"none"``: the forward keeps only the per-token log-sum-exp; the
      backward recomputes one ``[token_block_size, block_size]`` tile of logits
      at a time and writes ``d_weight`` in place, block by block: 8·N·D·V
      matmul FLOPs for the value and gradient, temporaries independent of V.
    * ``"sum"``/``"mean"``: under differentiation the forward walks over
      ``token_block_size`` tokens at a time with full vocabulary rows and
      computes the loss and the gradients in that one sweep (6·N·D·V FLOPs,
      plus a float32 ``[D, V]`` accumulator for ``d_weight``); the backward
      only scales them by the cotangent. Without differentiation it costs one
      forward (2·N·D·V).

    Under ``jax.jit`` with sharded inputs (``NamedSharding``, Auto or Explicit
    mesh axes) each device computes its own tokens against its own vocabulary
    columns, read from the input shardings: tokens split for data
    parallelism, the weight split over D (gathered once, its gradient
    reduce-scattered back) or over V (per-token vectors exchanged), or both;
    ``d_weight`` is summed across token shards once per call.

    Args:
      hidden: activations ``[..., D]``.
      weight: projection ``[D, V]`` (a Flax ``Dense`` kernel; ``embedding.T``
        for tied embeddings).
      labels: integer labels ``[...]``.
      bias: optional ``[V]`` bias.
      where: boolean token mask broadcastable to ``labels``' shape; masked
        tokens give loss 0 and gradient 0 whatever their label, and are left
        out of a sum or mean.
      ignore_index: label value that contributes loss 0 and gradient 0 (and is
        not counted by ``"mean"``).
      label_smoothing: α; targets (1-α)·one_hot + α/V.
      z_loss: coefficient λ of the squared log-normaliser.
      softcap: c of the logit soft-cap, or None.
      reduction: ``"none"`` (per-token losses), ``"sum"``, or ``"mean"`` over
        the counted tokens (0, with zero gradients, when none counts).
      block_size: vocabulary columns per tile of the per-token sweep; None
        picks 1024 (at most V).
      token_block_size: tokens per tile; None picks it from the shapes: in the
        per-token sweep so that a tile holds 2²³ float32 logits (8192 tokens
        at the default block size, about 100 MiB of temporaries for the
        value and gradient at D = 2048, whatever V is); in the reduced sweep so
        that a tile of full rows holds at most 2²⁷ float32 logits and 2048
        rows (1024 rows at V = 131072: about 530 MiB of temporaries besides
        the ``4·D·V``-byte ``d_weight`` accumulator).
        Larger tiles run faster on a GPU and cost memory.
      return_stats: also return the per-token :class:`SoftmaxStats` of the
        logits (at temperature 1, ``log_prob`` of the labels; 0 for ignored and
        masked tokens), from the same sweep at no extra matmul: the
        log-normaliser for a z-loss log, ``argmax == labels`` for accuracy.
        They are not differentiated (the gradient is the loss's alone; see
        :func:`linear_softmax_stats` for differentiable statistics).

    Returns:
      Per-token losses ``[...]`` in float32 (float64 under x64 for float64
      inputs), or their float32 sum or mean. Labels outside ``[0, V)`` other
      than ``ignore_index`` give NaN (and make a sum or mean NaN). With
      ``return_stats``, a pair ``(loss, stats)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> hidden = jnp.ones((4, 8)); weight = jnp.zeros((8, 100))
      >>> labels = jnp.array([0, 1, 2, -100])
      >>> jxent.losses.linear_cross_entropy(hidden, weight, labels, ignore_index=-100)
      Array([4.6051702, 4.6051702, 4.6051702, 0.       ], dtype=float32)
      >>> jxent.losses.linear_cross_entropy(
      ...     hidden, weight, labels, ignore_index=-100, reduction="mean")
      Array(4.6051702, dtype=float32)
    """
    return fused_cross_entropy(
        hidden,
        weight,
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
        axis_name=None,
        return_stats=return_stats,
    )
