"""Fused linear projection + cross-entropy that never holds the [tokens, V] logits.

The forward walks over blocks of the vocabulary with an online log-sum-exp and
keeps only per-token vectors; the backward recomputes one block of logits at a
time and writes ``d_weight`` in place, block by block. Forward mode would need
the logits this exists not to store, so this one loss uses ``custom_vjp``.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validation
from .._checks import label_status
from ._integer import _all_max, _all_sum, _first_class, _num_classes


class _Options(NamedTuple):
    ignore_index: int | None
    label_smoothing: float
    z_loss: float
    softcap: float | None
    block_size: int
    axis_name: str | tuple[str, ...] | None = None


def _weight_block(weight, bias, start, width):
    if isinstance(start, int):
        w = weight[:, start : start + width]
        b = None if bias is None else bias[start : start + width]
    else:
        w = jax.lax.dynamic_slice_in_dim(weight, start, width, axis=1)
        b = None if bias is None else jax.lax.dynamic_slice_in_dim(bias, start, width)
    return w, b


def _accumulation_dtype(x: jax.Array) -> jnp.dtype:
    # float32 for 16-bit inputs, float64 under x64 for float64 inputs.
    return jnp.promote_types(x.dtype, jnp.float32)


def _block_logits(hidden, w, b, softcap):
    """Logits of one vocabulary block, accumulated in float32 (or wider)."""
    dtype = _accumulation_dtype(hidden)
    logits = jnp.dot(hidden, w, preferred_element_type=dtype)
    if b is not None:
        logits = logits + b.astype(dtype)
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)
    return logits


def _zero_like_logits(hidden, weight, dtype) -> jax.Array:
    """A scalar 0 that varies over whatever mesh axes the logits vary over.

    Inside ``shard_map`` a loop carry must carry the same manual axes as the
    values the body puts in it; an empty contraction gives that 0 for free.
    """
    return jnp.sum(jnp.dot(hidden[:1, :0], weight[:0, :1], preferred_element_type=dtype))


def _varying_axes(x: jax.Array) -> frozenset:
    """Mesh axes over which ``x`` differs from device to device (inside shard_map)."""
    return jax.typeof(x).manual_axis_type.varying


def _sum_over_sharers(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """psum a cotangent over the mesh axes it varies over and its primal does not."""
    extra = tuple(sorted(_varying_axes(cotangent) - _varying_axes(primal)))
    return jax.lax.psum(cotangent, extra) if extra else cotangent


def _for_each_block(vocab, block_size, body, carry):
    """Run ``body(start, width, carry)`` over full blocks, then the short last one."""
    full, rest = divmod(vocab, block_size)
    carry = jax.lax.fori_loop(0, full, lambda i, c: body(i * block_size, block_size, c), carry)
    if rest:
        carry = body(full * block_size, rest, carry)
    return carry


def _forward(hidden, weight, bias, labels, options: _Options):
    tokens, local_vocab = hidden.shape[0], weight.shape[1]
    axis_name = options.axis_name
    first_class = _first_class(local_vocab, axis_name)
    dtype = _accumulation_dtype(hidden)

    def body(start, width, carry):
        peak, total, label_logit, logit_sum = carry
        w, b = _weight_block(weight, bias, start, width)
        logits = _block_logits(hidden, w, b, options.softcap)
        new_peak = jnp.maximum(peak, jnp.max(logits, axis=1))
        total = total * jnp.exp(peak - new_peak) + jnp.sum(
            jnp.exp(logits - new_peak[:, None]), axis=1
        )
        columns = first_class + start + jnp.arange(width)
        is_label = columns[None, :] == labels[:, None]
        label_logit = label_logit + jnp.sum(jnp.where(is_label, logits, 0), axis=1)
        if options.label_smoothing:
            logit_sum = logit_sum + jnp.sum(logits, axis=1)
        return new_peak, total, label_logit, logit_sum

    zeros = jnp.zeros((tokens,), dtype) + _zero_like_logits(hidden, weight, dtype)
    init = (zeros - jnp.inf, zeros, zeros, zeros)
    peak, total, label_logit, logit_sum = _for_each_block(
        local_vocab, options.block_size, body, init
    )
    # Shards meet through per-token vectors only: max, rescaled sum, label logit.
    global_peak = _all_max(peak, axis_name)
    total = _all_sum(total * jnp.exp(peak - global_peak), axis_name)
    label_logit = _all_sum(label_logit, axis_name)
    vocab = _num_classes(local_vocab, axis_name)
    lse = global_peak + jnp.log(total)
    smoothing = options.label_smoothing
    loss = (1 - smoothing) * (lse - label_logit)
    if smoothing:
        loss = loss + smoothing * (lse - _all_sum(logit_sum, axis_name) / vocab)
    if options.z_loss:
        loss = loss + options.z_loss * lse**2
    ignored, invalid = label_status(labels, vocab, options.ignore_index)
    loss = jnp.where(ignored, 0, loss)
    return jnp.where(invalid, jnp.nan, loss), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused_cross_entropy(hidden, weight, bias, labels, options):
    return _forward(hidden, weight, bias, labels, options)[0]


def _fused_fwd(hidden, weight, bias, labels, options):
    loss, lse = _forward(hidden, weight, bias, labels, options)
    return loss, (hidden, weight, bias, labels, lse)


def _fused_bwd(options, residuals, d_loss):
    hidden, weight, bias, labels, lse = residuals
    local_vocab, axis_name = weight.shape[1], options.axis_name
    first_class = _first_class(local_vocab, axis_name)
    vocab = _num_classes(local_vocab, axis_name)
    smoothing = options.label_smoothing
    ignored, invalid = label_status(labels, vocab, options.ignore_index)
    dtype = _accumulation_dtype(hidden)
    d_loss = jnp.where(ignored, 0, d_loss.astype(dtype))
    d_loss = jnp.where(invalid, jnp.nan, d_loss)
    # d loss / d z_j = (1 + 2 λ lse) p_j - α / V - (1 - α) [j = label]
    prob_scale = d_loss * (1 + 2 * options.z_loss * lse)
    label_scale = d_loss * (1 - smoothing)
    uniform_scale = d_loss * (smoothing / vocab)

    def body(start, width, carry):
        d_hidden, d_weight, d_bias = carry
        w, b = _weight_block(weight, bias, start, width)
        logits = _block_logits(hidden, w, b, options.softcap)
        probs = jnp.exp(logits - lse[:, None])
        columns = first_class + start + jnp.arange(width)
        d_logits = prob_scale[:, None] * probs - uniform_scale[:, None]
        d_logits = jnp.where(
            columns[None, :] == labels[:, None], d_logits - label_scale[:, None], d_logits
        )
        if options.softcap is not None:
            d_logits = d_logits * (1 - (logits / options.softcap) ** 2)
        d_hidden = d_hidden + jnp.dot(d_logits, w.astype(dtype).T, preferred_element_type=dtype)
        d_w = jnp.dot(hidden.astype(dtype).T, d_logits, preferred_element_type=dtype)
        d_weight = jax.lax.dynamic_update_slice_in_dim(
            d_weight, d_w.astype(d_weight.dtype), start, axis=1
        )
        if d_bias is not None:
            d_b = jnp.sum(d_logits, axis=0).astype(d_bias.dtype)
            d_bias = jax.lax.dynamic_update_slice_in_dim(d_bias, d_b, start, axis=0)
        return d_hidden, d_weight, d_bias

    zero = _zero_like_logits(hidden, weight, dtype)
    init = (
        jnp.zeros(hidden.shape, dtype) + zero,
        jnp.zeros(weight.shape, weight.dtype) + zero.astype(weight.dtype),
        None if bias is None else jnp.zeros(bias.shape, bias.dtype) + zero.astype(bias.dtype),
    )
    d_hidden, d_weight, d_bias = _for_each_block(local_vocab, options.block_size, body, init)
    # An input shared by several devices (hidden across the vocabulary shards,
    # the weight across data shards) gets the sum of their contributions.
    d_hidden = _sum_over_sharers(d_hidden, hidden)
    d_weight = _sum_over_sharers(d_weight, weight)
    d_bias = None if bias is None else _sum_over_sharers(d_bias, bias)
    return d_hidden.astype(hidden.dtype), d_weight, d_bias, None


_fused_cross_entropy.defvjp(_fused_fwd, _fused_bwd)


def fused_cross_entropy(
    hidden,
    weight,
    labels,
    *,
    bias,
    ignore_index,
    label_smoothing,
    z_loss,
    softcap,
    block_size,
    axis_name,
):
    """:func:`linear_cross_entropy` on a weight that may be a vocabulary shard."""
    hidden = jnp.asarray(hidden)
    weight = jnp.asarray(weight)
    labels = jnp.asarray(labels)
    for name, x in (("hidden", hidden), ("weight", weight)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be [D, V], got shape {weight.shape}")
    if hidden.ndim < 1 or hidden.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"hidden of shape {hidden.shape} does not match weight of shape {weight.shape}: "
            "hidden's last axis must equal weight's first (D)"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.shape != hidden.shape[:-1]:
        raise ValueError(
            f"labels of shape {labels.shape} must match hidden's leading shape "
            f"{hidden.shape[:-1]} (hidden is {hidden.shape})"
        )
    if bias is not None:
        bias = jnp.asarray(bias)
        if not jnp.issubdtype(bias.dtype, jnp.floating):
            raise TypeError(f"bias must be a floating-point array, got dtype {bias.dtype}")
        if bias.shape != weight.shape[1:]:
            raise ValueError(f"bias of shape {bias.shape} must be [{weight.shape[1]}]")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if softcap is not None and not float(softcap) > 0:
        raise ValueError(f"softcap must be positive or None, got {softcap!r}")
    if int(block_size) < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    options = _Options(
        ignore_index=None if ignore_index is None else int(ignore_index),
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        block_size=min(int(block_size), weight.shape[1]),
        axis_name=axis_name,
    )
    _validation.check_labels(labels, _num_classes(weight.shape[1], axis_name), options.ignore_index)
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    losses = _fused_cross_entropy(flat_hidden, weight, bias, labels.reshape(-1), options)
    return losses.reshape(labels.shape)


def linear_cross_entropy(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    bias: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    block_size: int = 1024,
) -> jax.Array:
    r"""Cross-entropy of ``hidden @ weight + bias`` without holding the logits.

    Equals ``softmax_cross_entropy_with_integer_labels(softcap(hidden @ weight
    + bias), labels, ...)``, with :math:`\mathrm{softcap}(z) = c \tanh(z / c)`
    (Gemma 2), but its memory does not grow with tokens × vocabulary: the
    forward keeps only the per-token log-sum-exp; the backward recomputes one
    ``[tokens, block_size]`` block of logits at a time. Accumulation is float32
    whatever the input dtype; the loss is float32 and the gradients come back
    in the input dtypes. Reverse mode only (``custom_vjp``).

    .. math::
      \ell_n = (1-\alpha)(\mathrm{lse}(z_n) - z_{n,k}) + \alpha\,(\mathrm{lse}(z_n)
        - \bar z_n) + \lambda\, \mathrm{lse}(z_n)^2

    Args:
      hidden: activations ``[..., D]``.
      weight: projection ``[D, V]`` (a Flax ``Dense`` kernel; ``embedding.T``
        for tied embeddings).
      labels: integer labels ``[...]``.
      bias: optional ``[V]`` bias.
      ignore_index: label value that contributes loss 0 and gradient 0.
      label_smoothing: α; targets (1-α)·one_hot + α/V.
      z_loss: coefficient λ of the squared log-normaliser.
      softcap: c of the logit soft-cap, or None.
      block_size: vocabulary columns per block; XLA's temporary memory is
        about ``4 · (tokens · D + tokens · block_size + D · block_size)``
        bytes in float32 (104 MiB at 8192 tokens, D = 2048, the default).

    Returns:
      Per-token losses ``[...]`` in float32. Labels outside ``[0, V)`` other
      than ``ignore_index`` give NaN.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> hidden = jnp.ones((4, 8)); weight = jnp.zeros((8, 100))
      >>> jxent.losses.linear_cross_entropy(hidden, weight, jnp.array([0, 1, 2, 3]), block_size=32)
      Array([4.6051702, 4.6051702, 4.6051702, 4.6051702], dtype=float32)
    """
    return fused_cross_entropy(
        hidden,
        weight,
        labels,
        bias=bias,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        block_size=block_size,
        axis_name=None,
    )
