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

from .._collectives import sum_over_sharers, varying_like
from ._fused_kernels import (
    Hyperparameters,
    LinearCrossEntropyOptions,
    TokenStatus,
    accumulation_dtype,
    combine_loss,
    for_each_slice,
    loss_scales,
    matmul_dtype,
    per_token_cotangent,
    put,
    take,
    tile_logit_gradient,
    tile_logits,
    token_status,
)
from ._fused_per_token import per_token_forward


def reduction_divisor(status: TokenStatus, mean: bool, dtype) -> jax.Array:
    """What the summed loss is divided by: the number of counted tokens (at least 1)
    for a mean (ignored and masked tokens do not count), 1 for a sum."""
    if not mean:
        return jnp.ones((), dtype)
    return jnp.maximum(jnp.sum(~status.skipped), 1).astype(dtype)


def _reduced_loss(hidden, weight, bias, labels, counted, hyper, options, mean) -> jax.Array:
    """Σ or mean over counted tokens of the losses of ``hidden[N, D] @ weight[D, V] + bias``.

    ``hyper`` is not differentiated (its cotangent is 0).
    """
    losses = per_token_forward(hidden, weight, bias, labels, counted, hyper, options)[0]
    status = token_status(labels, counted, weight.shape[1], options)
    return jnp.sum(losses) / reduction_divisor(status, mean, losses.dtype)


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
    dtype = accumulation_dtype(hidden, weight)
    operand = matmul_dtype(hidden, weight)
    vocab = weight.shape[1]
    status = token_status(labels, counted, vocab, options)
    divisor = reduction_divisor(status, mean, dtype)
    token_weight = jnp.broadcast_to(1 / divisor, labels.shape)
    columns = jnp.arange(vocab)

    def token_tile(start, size, carry):
        loss_sum, d_hidden, d_weight, d_bias = carry
        h = take(hidden, start, size, 0)
        y = take(labels, start, size, 0)
        tile_status = type(status)(*(take(s, start, size, 0) for s in status))
        logits = tile_logits(h, weight, bias, hyper.softcap)
        peak = jnp.max(logits, axis=1)
        empty = peak == -jnp.inf
        peak = jnp.where(empty, 0, peak)
        log_total = jnp.log(jnp.where(empty, 1, jnp.sum(jnp.exp(logits - peak[:, None]), axis=1)))
        is_label = columns[None, :] == y[:, None]
        label_logit = jnp.sum(jnp.where(is_label, logits, 0), axis=1)
        smoothing = hyper.label_smoothing is not None
        mean_logit = jnp.mean(logits, axis=1) if smoothing else None
        tile_status = tile_status._replace(skipped=tile_status.skipped | empty)
        losses = combine_loss(peak, log_total, label_logit, mean_logit, tile_status, hyper)
        loss_sum = loss_sum + jnp.sum(losses)

        lse = peak + log_total
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
        return loss_sum, d_hidden, d_weight, d_bias

    sources = (hidden, weight, bias, labels, *status)
    init = (
        varying_like(jnp.zeros((), dtype), *sources),
        varying_like(jnp.zeros(hidden.shape, dtype), *sources),
        varying_like(jnp.zeros(weight.shape, dtype), *sources),
        None if bias is None else varying_like(jnp.zeros(bias.shape, dtype), *sources),
    )
    loss_sum, d_hidden, d_weight, d_bias = for_each_slice(
        hidden.shape[0], options.token_block_size, token_tile, init
    )
    # The gradients are of the reduced loss already; the backward only scales them.
    return loss_sum / divisor, (d_hidden, d_weight, d_bias, hidden, weight, bias, hyper)


def _reduced_bwd(options, mean, residuals, d_loss):
    del options, mean
    d_hidden, d_weight, d_bias, hidden, weight, bias, hyper = residuals

    def scaled(gradient, primal):
        # Inside shard_map, an input shared by several devices (the weight
        # across data shards) gets the sum of their contributions.
        gradient = sum_over_sharers(d_loss.astype(gradient.dtype) * gradient, primal)
        return gradient.astype(primal.dtype)

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
