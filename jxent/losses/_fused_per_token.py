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

import jax
import jax.numpy as jnp

from .._collectives import (
    all_max,
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
    TokenStatus,
    accumulation_dtype,
    as_bits,
    combine_loss,
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
    token_status,
    zero_skipped,
)
from ._fused_partition import Layout, like, run_sharded
from ._integer import log_total_from_rest, rest_and_count


def _rescaled(peak, rest, count, new_peak):
    """(rest, count) of :func:`rest_and_count` moved from ``peak`` to ``new_peak`` ≥ it:
    below a higher peak, the old peak's entries join the rest."""
    finite_peak = jnp.where(new_peak == -jnp.inf, 0, new_peak)
    grew = peak < new_peak
    rest = jnp.where(grew, (rest + count) * jnp.exp(peak - finite_peak), rest)
    return rest, jnp.where(grew, 0, count)


def _vocabulary_sweep(
    hidden, weight, bias, labels, hyper: Hyperparameters, options: LinearCrossEntropyOptions
):
    """Per-token (peak, rest, count, label logit, Σ z) over this device's vocabulary,
    with rest and count those of :func:`rest_and_count` (an online log-sum-exp)."""
    offset = first_class(weight.shape[1], options.axis_name)
    dtype = accumulation_dtype(hidden, weight)
    rows = varying_like(jnp.zeros(hidden.shape[:1], dtype), hidden, weight, bias, labels)

    def block(start, width, carry):
        peak, rest, count, label_logit, logit_sum = carry
        logits = tile_logits(
            hidden,
            take(weight, start, width, 1),
            None if bias is None else take(bias, start, width, 0),
            hyper.softcap,
        )
        new_peak = jnp.maximum(peak, jnp.max(logits, axis=1))
        rest, count = _rescaled(peak, rest, count, new_peak)
        # A block or row whose logits are all -inf (a -inf bias) leaves the peak -inf.
        finite_peak = jnp.where(new_peak == -jnp.inf, 0, new_peak)
        block_rest, block_count = rest_and_count(
            logits, jnp.exp(logits - finite_peak[:, None]), new_peak
        )
        rest, count = rest + block_rest, count + block_count
        is_label = (offset + start + jnp.arange(width))[None, :] == labels[:, None]
        label_logit = label_logit + jnp.sum(jnp.where(is_label, logits, 0), axis=1)
        if hyper.label_smoothing is not None:
            logit_sum = logit_sum + jnp.sum(logits, axis=1)
        return new_peak, rest, count, label_logit, logit_sum

    return for_each_slice(
        weight.shape[1], options.block_size, block, (rows - jnp.inf, rows, rows, rows, rows)
    )


def per_token_forward(
    hidden,
    weight,
    bias,
    labels,
    counted,
    hyper: Hyperparameters,
    options: LinearCrossEntropyOptions,
):
    """Per-token losses ``[N]`` and log-sum-exps ``[N]`` (for the backward)."""
    dtype = accumulation_dtype(hidden, weight)
    rows = varying_like(jnp.zeros(hidden.shape[:1], dtype), hidden, weight, bias, labels)

    def token_tile(start, size, stats):
        tile = _vocabulary_sweep(
            take(hidden, start, size, 0), weight, bias, take(labels, start, size, 0), hyper, options
        )
        return tuple(put(s, t, start, 0) for s, t in zip(stats, tile, strict=True))

    init = (rows - jnp.inf, rows, rows, rows, rows)
    peak, rest, count, label_logit, logit_sum = for_each_slice(
        hidden.shape[0], options.token_block_size, token_tile, init
    )
    # Shards meet through per-token vectors only: max, rescaled sums, label logit.
    axis_name = options.axis_name
    global_peak = all_max(peak, axis_name)
    finite_peak = jnp.where(global_peak == -jnp.inf, 0, global_peak)
    rest, count = _rescaled(peak, rest, count, global_peak)
    rest, count = all_sum(rest, axis_name), all_sum(count, axis_name)
    label_logit = all_sum(label_logit, axis_name)
    vocab = total_classes(weight.shape[1], axis_name)
    smoothing = hyper.label_smoothing is not None
    mean_logit = all_sum(logit_sum, axis_name) / vocab if smoothing else None
    status = token_status(labels, counted, weight.shape[1], options)
    # A row with every logit -inf is empty: loss 0 and gradient 0.
    empty = global_peak == -jnp.inf
    status = status._replace(skipped=status.skipped | empty)
    log_total = log_total_from_rest(rest, count, empty)
    loss = combine_loss(finite_peak, log_total, label_logit, mean_logit, status, hyper)
    return loss, finite_peak + log_total, status


def _forward_body(layout: Layout, options: LinearCrossEntropyOptions, *operands):
    """Per-shard forward: ``(loss, lse, skipped, invalid)`` per token of this block."""
    hidden, weight, bias, labels, counted, *hyper = operands
    options = block_options(layout, options, hidden, weight, reduced=False)
    loss, lse, status = per_token_forward(
        hidden, weight, bias, labels, counted, Hyperparameters(*hyper), options
    )
    return loss, lse, *status


FORWARD_ROLES = ("nd", "ev", "v", "n", "n", "", "", "")
_FORWARD_OUT_ROLES = ("n", "n", "n", "n")


def block_options(
    layout: Layout, options: LinearCrossEntropyOptions, hidden, weight, *, reduced: bool
) -> LinearCrossEntropyOptions:
    """The options of one device's block: its vocabulary axes and its tiles."""
    if layout.vocab:
        options = options._replace(axis_name=layout.vocab_axis_name)
    return tiles(options, hidden.shape[0], weight.shape[1], reduced)


def sharded_forward(hidden, weight, bias, labels, counted, hyper, options):
    """:func:`per_token_forward` on every device's block (see ``_fused_partition``)."""
    loss, lse, skipped, invalid = run_sharded(
        _forward_body,
        options,
        (hidden, weight, bias, labels, counted, *hyper),
        FORWARD_ROLES,
        _FORWARD_OUT_ROLES,
    )
    return loss, lse, TokenStatus(skipped, invalid)


def _per_token_losses(hidden, weight, bias, labels, counted, hyper, options) -> jax.Array:
    """Losses ``[N]`` of ``hidden[N, D] @ weight[D, V] + bias``, masked by ``counted``.

    ``hyper`` is not differentiated (its cotangent is 0).
    """
    return sharded_forward(hidden, weight, bias, labels, counted, hyper, options)[0]


def _per_token_fwd(hidden, weight, bias, labels, counted, hyper, options):
    loss, lse, status = sharded_forward(hidden, weight, bias, labels, counted, hyper, options)
    return loss, (hidden, weight, bias, labels, lse, status, hyper)


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
    """``(d_hidden, d_weight, d_bias)`` of this block for per-token cotangents ``d_loss``.

    In a partitioned layout the block's gradients are summed here over the
    devices that share an input: ``d_hidden`` over the vocabulary shards,
    ``d_weight`` and ``d_bias`` over the token shards (once, after the sweep).
    """
    user_axis = options.axis_name
    options = block_options(layout, options, hidden, weight, reduced=False)
    local_vocab, axis_name = weight.shape[1], options.axis_name
    offset = first_class(local_vocab, axis_name)
    dtype = accumulation_dtype(hidden, weight)
    operand = matmul_dtype(hidden, weight)
    if untracked_shards(weight, user_axis):
        # Under shard_map(check_vma=False) each device gets 1/n of a replicated
        # loss's cotangent, and shard_map sums the cotangents of replicated
        # inputs itself. The loss is a psum over the shards: its transpose, a
        # psum of the cotangent, makes it whole again.
        d_loss = jax.lax.psum(d_loss, user_axis)
    cotangent = per_token_cotangent(d_loss, status, dtype)
    sources = (hidden, weight, bias, labels, lse, d_loss, *status)
    # A skipped token is never read (its hidden state may be NaN: padding): a
    # zero row in its tile, and an infinite log-normaliser that makes its
    # probabilities 0.
    scales = loss_scales(
        cotangent, jnp.where(status.skipped, 0, lse), total_classes(local_vocab, axis_name), hyper
    )
    lse = jnp.where(status.skipped, jnp.inf, lse)

    def vocab_block(start, width, carry):
        d_hidden, d_weight, d_bias = carry
        w = take(weight, start, width, 1)
        b = None if bias is None else take(bias, start, width, 0)
        columns = offset + start + jnp.arange(width)

        def token_tile(t_start, size, inner):
            d_hidden, d_w, d_b = inner
            h = take(hidden, t_start, size, 0)
            h = zero_skipped(h, take(status.skipped, t_start, size, 0), options)
            logits = tile_logits(h, w, b, hyper.softcap)
            is_label = columns[None, :] == take(labels, t_start, size, 0)[:, None]
            tile_scales = type(scales)(*(take(s, t_start, size, 0) for s in scales))
            d_logits = tile_logit_gradient(
                logits, take(lse, t_start, size, 0), is_label, tile_scales, hyper.softcap
            )
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
