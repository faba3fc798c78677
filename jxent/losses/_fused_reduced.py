"""Summed or averaged fused linear cross-entropy, its gradients computed in the forward.

Under differentiation the forward walks over token tiles that hold full
vocabulary rows: one tile of logits gives the row's log-sum-exp, the loss and
the gradient of the logits at once (no second pass over the vocabulary), which
two matmuls with the inputs' 16-bit operands turn into ``d_hidden`` (written
per tile) and ``d_weight`` (accumulated in float32). That is 6·N·D·V matmul
FLOPs in all; the backward only scales the stored gradients by the scalar
cotangent. Without differentiation the per-token forward (2·N·D·V) runs.
"""

import jax
import jax.numpy as jnp

from .._collectives import all_sum, sum_over_sharers, varying_like
from ._fused_kernels import (
    Hyperparameters,
    LinearCrossEntropyOptions,
    TokenStatus,
    accumulation_dtype,
    for_each_slice,
    loss_scales,
    matmul_dtype,
    per_token_cotangent,
    put,
    take,
    tile_logit_gradient,
    tile_logits,
    token_status,
    zero_skipped,
)
from ._fused_online import (
    Wanted,
    cross_entropy_from_statistics,
    full_row_statistics,
    per_token_forward,
)
from ._fused_partition import Layout, like, run_sharded
from ._fused_per_token import FORWARD_ROLES, block_options, per_token_backward, sharded_forward


def reduction_divisor(status: TokenStatus, mean: bool, dtype) -> jax.Array:
    """What the summed loss is divided by: the number of counted tokens (at least 1)
    for a mean (ignored and masked tokens do not count), 1 for a sum."""
    if not mean:
        return jnp.ones((), dtype)
    return jnp.maximum(jnp.sum(~status.skipped), 1).astype(dtype)


def _reduced_loss(hidden, weight, bias, labels, counted, hyper, options, mean):
    """Σ or mean over counted tokens of the losses of ``hidden[N, D] @ weight[D, V] + bias``
    (and, with ``options.statistics``, the tokens' softmax statistics, not
    differentiated). ``hyper`` is not differentiated (its cotangent is 0)."""
    losses, _, status, extras = sharded_forward(
        hidden, weight, bias, labels, counted, hyper, options
    )
    loss = jnp.sum(losses) / reduction_divisor(status, mean, losses.dtype)
    return (loss, extras) if options.statistics else loss


def _one_sweep(hidden, weight, bias, labels, counted, skipped, token_weight, hyper, options):
    """(Σ loss, d_hidden, d_weight, d_bias, statistics) of this block in one sweep over
    token tiles holding full vocabulary rows (statistics ``()`` unless
    ``options.statistics``)."""
    dtype = accumulation_dtype(hidden, weight)
    operand = matmul_dtype(hidden, weight)
    vocab = weight.shape[1]
    columns = jnp.arange(vocab, dtype=jnp.int32)
    wanted = Wanted(
        logit_sum=hyper.label_smoothing is not None,
        entropy=options.statistics,
        argmax=options.statistics,
    )

    def token_tile(start, size, carry):
        loss_sum, d_hidden, d_weight, d_bias, extras = carry
        # A skipped token is never read: its hidden state may be NaN (padding).
        h = zero_skipped(take(hidden, start, size, 0), take(skipped, start, size, 0), options)
        y = take(labels, start, size, 0)
        tile_counted = None if counted is None else take(counted, start, size, 0)
        logits = tile_logits(h, weight, bias, hyper.softcap)
        is_label = columns[None, :] == y[:, None]
        stats = full_row_statistics(logits, is_label, columns[None, :], wanted)
        losses, lse, tile_status, tile_extras = cross_entropy_from_statistics(
            stats, y, tile_counted, vocab, hyper, options
        )
        loss_sum = loss_sum + jnp.sum(losses)
        extras = tuple(put(e, t, start, 0) for e, t in zip(extras, tile_extras, strict=True))

        cotangent = per_token_cotangent(take(token_weight, start, size, 0), tile_status, dtype)
        scales = loss_scales(cotangent, lse, vocab, hyper)
        d_logits = tile_logit_gradient(logits, lse, is_label, scales, hyper.softcap)
        d_operand = d_logits.astype(operand)
        d_h = jax.lax.dot_general(
            d_operand, weight, (((1,), (1,)), ((), ())), preferred_element_type=dtype
        )
        d_hidden = put(d_hidden, d_h, start, 0)
        d_weight = d_weight + jax.lax.dot_general(
            h, d_operand, (((0,), (0,)), ((), ())), preferred_element_type=dtype
        )
        if d_bias is not None:
            d_bias = d_bias + jnp.sum(d_logits, axis=0)
        return loss_sum, d_hidden, d_weight, d_bias, extras

    sources = (hidden, weight, bias, labels, counted, skipped)
    tokens = varying_like(jnp.zeros(labels.shape, dtype), *sources)
    init = (
        varying_like(jnp.zeros((), dtype), *sources),
        varying_like(jnp.zeros(hidden.shape, dtype), *sources),
        varying_like(jnp.zeros(weight.shape, dtype), *sources),
        None if bias is None else varying_like(jnp.zeros(bias.shape, dtype), *sources),
        (tokens, tokens, tokens, tokens.astype(jnp.int32)) if options.statistics else (),
    )
    return for_each_slice(hidden.shape[0], options.token_block_size, token_tile, init)


def _reduced_body(layout: Layout, static, *operands):
    """Per-shard loss and gradients of the sum or mean, summed over the token shards.

    With whole vocabulary rows on the device, one sweep; with a vocabulary split,
    the per-token forward (rows meet through per-token vectors) and its backward.
    """
    options, mean = static
    hidden, weight, bias, labels, counted, *hyper_fields = operands
    hyper = Hyperparameters(*hyper_fields)
    tokens = layout.tokens or None
    dtype = accumulation_dtype(hidden, weight)
    per_token_options = block_options(layout, options, hidden, weight, reduced=False)
    status = token_status(labels, counted, weight.shape[1], per_token_options)
    count = all_sum(jnp.sum(~status.skipped).astype(dtype), tokens)
    divisor = jnp.maximum(count, 1) if mean else jnp.ones((), dtype)
    token_weight = jnp.broadcast_to(1 / divisor, labels.shape)
    if layout.vocab:
        losses, lse, status, extras = per_token_forward(
            hidden, weight, bias, labels, counted, hyper, per_token_options
        )
        loss_sum = jnp.sum(losses)
        d_hidden, d_weight, d_bias = per_token_backward(
            layout, options, hidden, weight, bias, labels, lse, status, hyper, token_weight
        )
        d_hidden = d_hidden.astype(dtype)
    else:
        options = block_options(layout, options, hidden, weight, reduced=True)
        loss_sum, d_hidden, d_weight, d_bias, extras = _one_sweep(
            hidden, weight, bias, labels, counted, status.skipped, token_weight, hyper, options
        )
        d_weight = layout.sum_weight_gradient(d_weight)
        d_bias = None if d_bias is None else all_sum(d_bias, tokens)
    loss = all_sum(loss_sum, tokens) / divisor
    return tuple(x for x in (loss, d_hidden, d_weight, d_bias, *extras) if x is not None)


def _reduced_fwd(
    hidden,
    weight,
    bias,
    labels,
    counted,
    hyper: Hyperparameters,
    options: LinearCrossEntropyOptions,
    mean,
):
    gradient_roles = ("nd", "rv") if bias is None else ("nd", "rv", "v")
    outputs = run_sharded(
        _reduced_body,
        (options, mean),
        (hidden, weight, bias, labels, counted, *hyper),
        FORWARD_ROLES,
        ("", *gradient_roles, *(("n",) * 4 if options.statistics else ())),
    )
    loss, d_hidden, d_weight, *rest = outputs
    d_bias = rest.pop(0) if bias is not None else None
    # The gradients are of the reduced loss already; the backward only scales them.
    residuals = (d_hidden, d_weight, d_bias, hidden, weight, bias, hyper)
    return ((loss, tuple(rest)) if options.statistics else loss), residuals


def _reduced_bwd(options, mean, residuals, d_loss):
    del mean
    if options.statistics:
        d_loss, _ = d_loss  # the statistics are not differentiated
    d_hidden, d_weight, d_bias, hidden, weight, bias, hyper = residuals

    def scaled(gradient, primal):
        # Inside shard_map, an input shared by several devices (the weight
        # across data shards) gets the sum of their contributions.
        gradient = sum_over_sharers(d_loss.astype(gradient.dtype) * gradient, primal)
        return like(gradient.astype(primal.dtype), primal)

    return (
        scaled(d_hidden, hidden),
        scaled(d_weight, weight),
        None if bias is None else scaled(d_bias, bias),
        None,
        None,
        jax.tree.map(jnp.zeros_like, hyper),
    )


# Applied as a call rather than a decorator so that type checkers see the Array it returns.
reduced_cross_entropy = jax.custom_vjp(_reduced_loss, nondiff_argnums=(6, 7))
reduced_cross_entropy.defvjp(_reduced_fwd, _reduced_bwd)
