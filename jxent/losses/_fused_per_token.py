"""Per-token fused linear cross-entropy: blockwise forward, recomputing backward.

The forward walks over token tiles and, within each, over vocabulary blocks
with an online log-sum-exp, keeping only per-token vectors. The backward walks
over vocabulary blocks and, within each, over token tiles: it recomputes one
tile of logits, multiplies its gradient (cast to the inputs' 16-bit dtype, with
float32 accumulation) into ``d_hidden`` and into that block of ``d_weight``,
which is written in place. Temporary memory is a few tiles plus the per-token
vectors and a float32 ``d_hidden``, whatever V is. 8·N·D·V matmul FLOPs for
the value and gradient: forward, recompute, and the two gradient matmuls.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from .._collectives import (
    all_sum,
    first_class,
    sum_over_sharers,
    total_classes,
    untracked_shards,
    varying_like,
)
from ._fused_kernels import (
    Hyperparameters,
    LinearCrossEntropyOptions,
    LogitGradientScales,
    TokenStatus,
    accumulation_dtype,
    as_bits,
    for_each_slice,
    from_bits,
    loss_scales,
    matmul_dtype,
    per_token_cotangent,
    put,
    take,
    tile_logit_gradient,
    tile_logits,
    tiles,
    zero_skipped,
)
from ._fused_online import per_token_forward
from ._fused_partition import Layout, like, run_sharded


def _forward_body(layout: Layout, options: LinearCrossEntropyOptions, *operands):
    """Per-shard forward: ``(loss, lse, skipped, invalid, *statistics)`` per token of
    this block."""
    hidden, weight, bias, labels, counted, *hyper = operands
    options = block_options(layout, options, hidden, weight, reduced=False)
    loss, lse, status, extras = per_token_forward(
        hidden, weight, bias, labels, counted, Hyperparameters(*hyper), options
    )
    return loss, lse, *status, *extras


FORWARD_ROLES = ("nd", "ev", "v", "n", "n", "", "", "")


def block_options(
    layout: Layout, options: LinearCrossEntropyOptions, hidden, weight, *, reduced: bool
) -> LinearCrossEntropyOptions:
    """The options of one device's block: its vocabulary axes and its tiles."""
    if layout.vocab:
        options = options._replace(axis_name=layout.vocab_axis_name)
    return tiles(options, hidden.shape[0], weight.shape[1], reduced)


def sharded_forward(hidden, weight, bias, labels, counted, hyper, options):
    """:func:`per_token_forward` on every device's block (see ``_fused_partition``)."""
    outputs = run_sharded(
        _forward_body,
        options,
        (hidden, weight, bias, labels, counted, *hyper),
        FORWARD_ROLES,
        ("n",) * (8 if options.statistics else 4),
    )
    loss, lse, skipped, invalid, *extras = outputs
    return loss, lse, TokenStatus(skipped, invalid), tuple(extras)


def _per_token_losses(hidden, weight, bias, labels, counted, hyper, options):
    """Losses ``[N]`` of ``hidden[N, D] @ weight[D, V] + bias``, masked by ``counted``
    (and, with ``options.statistics``, the tokens' softmax statistics, not
    differentiated). ``hyper`` is not differentiated (its cotangent is 0)."""
    loss, _, _, extras = sharded_forward(hidden, weight, bias, labels, counted, hyper, options)
    return (loss, extras) if options.statistics else loss


def _per_token_fwd(hidden, weight, bias, labels, counted, hyper, options):
    loss, lse, status, extras = sharded_forward(
        hidden, weight, bias, labels, counted, hyper, options
    )
    residuals = (hidden, weight, bias, labels, lse, status, hyper)
    return ((loss, extras) if options.statistics else loss), residuals


def whole_cotangent(cotangent: jax.Array, weight: jax.Array, user_axis) -> jax.Array:
    """A per-token cotangent made whole on a vocabulary shard.

    Under shard_map(check_vma=False) each device gets 1/n of a replicated
    output's cotangent, and shard_map sums the cotangents of replicated inputs
    itself. The output is a psum over the shards: its transpose, a psum of the
    cotangent, makes it whole again.
    """
    return jax.lax.psum(cotangent, user_axis) if untracked_shards(weight, user_axis) else cotangent


def per_token_backward(
    layout: Layout,
    options: LinearCrossEntropyOptions,
    hidden,
    weight,
    bias,
    labels,
    lse,
    status: TokenStatus,
    hyper: Hyperparameters,
    d_loss,
):
    """``(d_hidden, d_weight, d_bias)`` of this block for per-token cotangents
    ``d_loss`` of the cross-entropy."""
    d_loss = whole_cotangent(d_loss, weight, options.axis_name)
    options = block_options(layout, options, hidden, weight, reduced=False)
    cotangent = per_token_cotangent(d_loss, status, accumulation_dtype(hidden, weight))
    vocab = total_classes(weight.shape[1], options.axis_name)
    scales = loss_scales(cotangent, jnp.where(status.skipped, 0, lse), vocab, hyper)
    return logit_gradient_sweep(
        layout, options, hidden, weight, bias, labels, lse, status.skipped, hyper.softcap, scales
    )


def logit_gradient_sweep(
    layout: Layout,
    options: LinearCrossEntropyOptions,
    hidden,
    weight,
    bias,
    labels,
    lse,
    skipped,
    softcap,
    scales: LogitGradientScales,
):
    """:func:`gradient_sweep` with the gradient of each tile from the per-token
    coefficients of :func:`tile_logit_gradient`."""
    # A skipped token's infinite log-normaliser makes its probabilities 0.
    lse = jnp.where(skipped, jnp.inf, lse)
    scales = jax.tree.map(lambda s: jnp.where(skipped, 0, s), scales)

    def tile_gradient(logits, token_slice, block, columns):
        del block
        row_start, rows = token_slice
        is_label = columns[None, :] == take(labels, row_start, rows, 0)[:, None]
        tile_scales = jax.tree.map(lambda s: take(s, row_start, rows, 0), scales)
        return tile_logit_gradient(
            logits, take(lse, row_start, rows, 0), is_label, tile_scales, softcap
        )

    sources = (labels, lse, *jax.tree.leaves(scales))
    return gradient_sweep(
        layout, options, hidden, weight, bias, skipped, softcap, tile_gradient, sources
    )


def gradient_sweep(
    layout: Layout,
    options: LinearCrossEntropyOptions,
    hidden,
    weight,
    bias,
    skipped,
    softcap,
    tile_gradient: Callable,
    sources: Sequence,
):
    """``(d_hidden, d_weight, d_bias)`` of this block, blockwise over the vocabulary
    and then the tokens (``options`` those of the block).

    ``tile_gradient(logits, (token_start, tokens), (column_start, width), columns)``
    gives d objective / d logits of one tile from its logits ``softcap(hidden @
    weight + bias)`` (``columns``: their indices in the full vocabulary);
    ``sources`` are the per-token arrays it reads (for their mesh types). A
    skipped token is never read (its hidden state may be NaN: padding): a zero
    row in its tile. In a partitioned layout the block's gradients are summed
    here over the devices that share an input: ``d_hidden`` over the vocabulary
    shards, ``d_weight`` and ``d_bias`` over the token shards (once, after the
    sweep).
    """
    local_vocab, axis_name = weight.shape[1], options.axis_name
    offset = first_class(local_vocab, axis_name)
    dtype = accumulation_dtype(hidden, weight)
    operand = matmul_dtype(hidden, weight)
    sources = (hidden, weight, bias, skipped, *sources)

    def vocab_block(start, width, carry):
        d_hidden, d_weight, d_bias = carry
        w = take(weight, start, width, 1)
        b = None if bias is None else take(bias, start, width, 0)
        columns = offset + start + jnp.arange(width)

        def token_tile(t_start, size, inner):
            d_hidden, d_w, d_b = inner
            h = take(hidden, t_start, size, 0)
            h = zero_skipped(h, take(skipped, t_start, size, 0), options)
            logits = tile_logits(h, w, b, softcap)
            d_logits = tile_gradient(logits, (t_start, size), (start, width), columns)
            d_operand = d_logits.astype(operand)
            d_h = jax.lax.dot_general(
                d_operand, w, (((1,), (1,)), ((), ())), preferred_element_type=dtype
            )
            d_hidden = put(d_hidden, take(d_hidden, t_start, size, 0) + d_h, t_start, 0)
            d_w = d_w + jax.lax.dot_general(
                h, d_operand, (((0,), (0,)), ((), ())), preferred_element_type=dtype
            )
            if d_b is not None:
                d_b = d_b + jnp.sum(d_logits, axis=0)
            return d_hidden, d_w, d_b

        block_init = (
            d_hidden,
            varying_like(jnp.zeros((weight.shape[0], width), dtype), *sources),
            None if bias is None else varying_like(jnp.zeros((width,), dtype), *sources),
        )
        d_hidden, d_w, d_b = for_each_slice(
            hidden.shape[0], options.token_block_size, token_tile, block_init
        )
        d_weight = put(d_weight, as_bits(d_w.astype(weight.dtype)), start, 1)
        if d_bias is not None and d_b is not None:
            d_bias = put(d_bias, d_b.astype(d_bias.dtype), start, 0)
        return d_hidden, d_weight, d_bias

    init = (
        varying_like(jnp.zeros(hidden.shape, dtype), *sources),
        as_bits(varying_like(jnp.zeros(weight.shape, weight.dtype), *sources)),
        None if bias is None else varying_like(jnp.zeros(bias.shape, bias.dtype), *sources),
    )
    d_hidden, d_weight, d_bias = for_each_slice(local_vocab, options.block_size, vocab_block, init)
    d_weight = from_bits(d_weight, weight.dtype)
    # An input shared by several devices (hidden across the vocabulary shards,
    # the weight across data shards) gets the sum of their contributions.
    d_hidden = all_sum(sum_over_sharers(d_hidden, hidden), layout.vocab or None)
    d_weight = layout.sum_weight_gradient(sum_over_sharers(d_weight, weight))
    if d_bias is not None and bias is not None:
        d_bias = all_sum(sum_over_sharers(d_bias, bias), layout.tokens or None)
    return d_hidden.astype(hidden.dtype), d_weight, d_bias


def _backward_body(layout: Layout, options: LinearCrossEntropyOptions, *operands):
    hidden, weight, bias, labels, lse, skipped, invalid, d_loss, *hyper = operands
    gradients = per_token_backward(
        layout,
        options,
        hidden,
        weight,
        bias,
        labels,
        lse,
        TokenStatus(skipped, invalid),
        Hyperparameters(*hyper),
        d_loss,
    )
    return tuple(g for g in gradients if g is not None)


def _per_token_bwd(options: LinearCrossEntropyOptions, residuals, d_loss):
    hidden, weight, bias, labels, lse, status, hyper = residuals
    if options.statistics:
        d_loss, _ = d_loss  # the statistics are not differentiated
    gradients = run_sharded(
        _backward_body,
        options,
        (hidden, weight, bias, labels, lse, *status, d_loss, *hyper),
        ("nd", "ev", "v", "n", "n", "n", "n", "n", "", "", ""),
        ("nd", "rv") if bias is None else ("nd", "rv", "v"),
    )
    d_hidden, d_weight, *rest = gradients
    d_bias = rest[0] if rest else None
    d_hyper = jax.tree.map(jnp.zeros_like, hyper)
    d_bias = None if d_bias is None or bias is None else like(d_bias, bias)
    return like(d_hidden, hidden), like(d_weight, weight), d_bias, None, None, d_hyper


# Applied as a call rather than a decorator so that type checkers see the Array it returns.
per_token_cross_entropy = jax.custom_vjp(_per_token_losses, nondiff_argnums=(6,))
per_token_cross_entropy.defvjp(_per_token_fwd, _per_token_bwd)
