"""Fused distillation between two linear heads: the sweeps and their ``custom_vjp``.

The forward walks over token tiles holding whole vocabulary rows of both
heads (``[tokens, V]`` is never held: a tile of 2²² logits per head), so every
divergence is exact in one pass over the teacher. A sum or mean over whole
rows computes the student's gradients in that same sweep (2·N·V·(D_t + 3·D_s)
matmul FLOPs); per-token losses, or a vocabulary split over devices,
recompute both heads blockwise in the backward (2·N·V·(2·D_t + 4·D_s)), in
``_fused_per_token``'s gradient sweep. The teacher is frozen: its inputs get
zero cotangents.
"""

import jax
import jax.numpy as jnp

from .._collectives import all_sum, first_class, sum_over_sharers, varying_like
from ._fused_distill_terms import (
    DistillationHyperparameters,
    RowResiduals,
    row_divergence,
    student_logit_gradient,
)
from ._fused_kernels import (
    LinearCrossEntropyOptions,
    TokenStatus,
    accumulation_dtype,
    for_each_slice,
    matmul_dtype,
    per_token_cotangent,
    power_of_two_at_most,
    put,
    take,
    tile_logits,
    token_status,
    zero_skipped,
)
from ._fused_partition import Layout, like, run_sharded
from ._fused_per_token import block_options, gradient_sweep, whole_cotangent

# Logits per head in a tile of whole rows: 2**22 (16 MiB, 32 rows at V = 131072)
# for the per-token forward; 2**25 for the one-sweep sum or mean, whose every
# tile reads and writes the d_weight accumulator (fewer, taller tiles).
_ROW_TILE, _REDUCED_ROW_TILE = 2**22, 2**25
_OPERAND_ROLES = ("nd", "ev", "nf", "gv", "v", "v", "n", "n", "", "", "")


def _row_tiles(options: LinearCrossEntropyOptions, tokens: int, local_vocab: int, budget: int):
    rows = options.token_block_size or power_of_two_at_most(budget / max(local_vocab, 1))
    return options._replace(token_block_size=max(1, min(rows, tokens)))


def _status(labels, counted, local_vocab, options, hard):
    status = token_status(labels, counted, local_vocab, options)
    # A label outside the vocabulary matters only to the hard term.
    return status if hard else status._replace(invalid=jnp.zeros_like(status.invalid))


def _rows(operands, start, size, skipped, options, divergence, hyper, offset):
    """Loss, emptiness, residuals and both logit tiles of ``size`` tokens from ``start``."""
    s_hidden, s_weight, t_hidden, t_weight, s_bias, t_bias, labels = operands
    rows = take(skipped, start, size, 0)
    student = tile_logits(
        zero_skipped(take(s_hidden, start, size, 0), rows, options), s_weight, s_bias, None
    )
    teacher = tile_logits(
        zero_skipped(take(t_hidden, start, size, 0), rows, options), t_weight, t_bias, None
    )
    labels_are = None
    if hyper.hard_weight is not None:
        columns = offset + jnp.arange(s_weight.shape[1])
        labels_are = columns[None, :] == take(labels, start, size, 0)[:, None]
    loss, empty, residuals = row_divergence(
        teacher, student, labels_are, hyper, divergence, options.axis_name
    )
    return loss, empty, residuals, teacher, student, labels_are


def _finished(loss, empty, status: TokenStatus):
    skipped = status.skipped | empty
    loss = jnp.where(skipped, 0, loss)
    return jnp.where(status.invalid, jnp.nan, loss), TokenStatus(skipped, status.invalid)


def _forward(layout: Layout, static, *operands):
    """Per-token ``(loss, skipped, invalid, *residuals)`` of this block."""
    options, divergence = static
    *arrays, counted, temperature, beta, hard_weight = operands
    s_hidden, s_weight, labels = arrays[0], arrays[1], arrays[6]
    hyper = DistillationHyperparameters(temperature, beta, hard_weight)
    # Tiles of whole rows, sized from the caller's options (not the blockwise ones).
    rows = _row_tiles(options, s_hidden.shape[0], s_weight.shape[1], _ROW_TILE)
    options = block_options(layout, options, s_hidden, s_weight, reduced=False)
    options = options._replace(token_block_size=rows.token_block_size)
    status = _status(labels, counted, s_weight.shape[1], options, hard_weight is not None)
    offset = first_class(s_weight.shape[1], options.axis_name)
    dtype = accumulation_dtype(s_hidden, s_weight)
    zeros = varying_like(jnp.zeros(labels.shape, dtype), *arrays, counted)

    def token_tile(start, size, carry):
        loss, empty, residuals, *_ = _rows(
            arrays, start, size, status.skipped, options, divergence, hyper, offset
        )
        tile = (loss, empty, *residuals)
        return tuple(put(c, t, start, 0) for c, t in zip(carry, tile, strict=True))

    init = (zeros, zeros.astype(bool), *(zeros,) * len(RowResiduals._fields))
    loss, empty, *residuals = for_each_slice(
        s_hidden.shape[0], options.token_block_size, token_tile, init
    )
    loss, status = _finished(loss, empty, status)
    return loss, *status, *residuals


def _backward(layout: Layout, static, *operands):
    """``(d_student_hidden, d_student_weight[, d_student_bias])`` of this block."""
    options, divergence = static
    (s_hidden, s_weight, t_hidden, t_weight, s_bias, t_bias, labels, skipped, invalid,
     *rest) = operands  # fmt: skip
    *residual_fields, d_loss, temperature, beta, hard_weight = rest
    residuals = RowResiduals(*residual_fields)
    hyper = DistillationHyperparameters(temperature, beta, hard_weight)
    d_loss = whole_cotangent(d_loss, s_weight, options.axis_name)
    options = block_options(layout, options, s_hidden, s_weight, reduced=False)
    dtype = accumulation_dtype(s_hidden, s_weight)
    cotangent = per_token_cotangent(d_loss, TokenStatus(skipped, invalid), dtype)

    def tile_gradient(student, token_slice, block, columns):
        row_start, rows = token_slice
        start, width = block
        teacher_rows = zero_skipped(
            take(t_hidden, row_start, rows, 0), take(skipped, row_start, rows, 0), options
        )
        teacher = tile_logits(
            teacher_rows,
            take(t_weight, start, width, 1),
            None if t_bias is None else take(t_bias, start, width, 0),
            None,
        )
        labels_are = None
        if hard_weight is not None:
            labels_are = columns[None, :] == take(labels, row_start, rows, 0)[:, None]
        tile_residuals = RowResiduals(*(take(r, row_start, rows, 0) for r in residuals))
        d = student_logit_gradient(teacher, student, labels_are, tile_residuals, hyper, divergence)
        return jnp.where(
            take(skipped, row_start, rows, 0)[:, None],
            0,
            take(cotangent, row_start, rows, 0)[:, None] * d,
        )

    sources = (t_hidden, t_weight, t_bias, labels, *residuals, cotangent)
    gradients = gradient_sweep(
        layout, options, s_hidden, s_weight, s_bias, skipped, None, tile_gradient, sources
    )
    return tuple(g for g in gradients if g is not None)


def _one_sweep(layout: Layout, static, *operands):
    """Loss and student gradients of the sum or mean over whole rows, in one sweep."""
    options, divergence, mean = static
    *arrays, counted, temperature, beta, hard_weight = operands
    s_hidden, s_weight, s_bias, labels = arrays[0], arrays[1], arrays[4], arrays[6]
    hyper = DistillationHyperparameters(temperature, beta, hard_weight)
    tokens = layout.tokens or None
    options = _row_tiles(options, s_hidden.shape[0], s_weight.shape[1], _REDUCED_ROW_TILE)
    status = _status(labels, counted, s_weight.shape[1], options, hard_weight is not None)
    dtype = accumulation_dtype(s_hidden, s_weight)
    operand = matmul_dtype(s_hidden, s_weight)
    divisor = _divisor(labels, counted, options, mean, dtype, tokens)
    cotangent = per_token_cotangent(jnp.broadcast_to(1 / divisor, labels.shape), status, dtype)

    def token_tile(start, size, carry):
        loss_sum, d_hidden, d_weight, d_bias = carry
        loss, empty, residuals, teacher, student, labels_are = _rows(
            arrays, start, size, status.skipped, options, divergence, hyper, 0
        )
        tile_status = TokenStatus(*(take(s, start, size, 0) for s in status))
        loss, tile_status = _finished(loss, empty, tile_status)
        d = student_logit_gradient(teacher, student, labels_are, residuals, hyper, divergence)
        d = jnp.where(tile_status.skipped[:, None], 0, take(cotangent, start, size, 0)[:, None] * d)
        d_operand = d.astype(operand)
        h = zero_skipped(take(s_hidden, start, size, 0), tile_status.skipped, options)
        d_h = jax.lax.dot_general(
            d_operand, s_weight, (((1,), (1,)), ((), ())), preferred_element_type=dtype
        )
        d_weight = d_weight + jax.lax.dot_general(
            h, d_operand, (((0,), (0,)), ((), ())), preferred_element_type=dtype
        )
        if d_bias is not None:
            d_bias = d_bias + jnp.sum(d, axis=0)
        return loss_sum + jnp.sum(loss), put(d_hidden, d_h, start, 0), d_weight, d_bias

    sources = (*arrays, counted)
    init = (
        varying_like(jnp.zeros((), dtype), *sources),
        varying_like(jnp.zeros(s_hidden.shape, dtype), *sources),
        varying_like(jnp.zeros(s_weight.shape, dtype), *sources),
        None if s_bias is None else varying_like(jnp.zeros(s_bias.shape, dtype), *sources),
    )
    loss_sum, d_hidden, d_weight, d_bias = for_each_slice(
        s_hidden.shape[0], options.token_block_size, token_tile, init
    )
    d_weight = layout.sum_weight_gradient(d_weight)
    d_bias = None if d_bias is None else all_sum(d_bias, tokens)
    loss = all_sum(loss_sum, tokens) / divisor
    return tuple(x for x in (loss, d_hidden, d_weight, d_bias) if x is not None)


def _reduced_body(layout: Layout, static, *operands):
    """Loss and student gradients of the sum or mean: one sweep over whole rows, or
    (a vocabulary split) the per-token forward and its backward."""
    options, divergence, mean = static
    if not (layout.vocab or options.axis_name):
        return _one_sweep(layout, static, *operands)
    *arrays, counted, temperature, beta, hard_weight = operands
    loss, skipped, invalid, *residuals = _forward(layout, (options, divergence), *operands)
    tokens = layout.tokens or None
    divisor = _divisor(arrays[6], counted, options, mean, loss.dtype, tokens)
    d_loss = jnp.broadcast_to(1 / divisor, loss.shape)
    backward = (*arrays, skipped, invalid, *residuals, d_loss, temperature, beta, hard_weight)
    d_hidden, *weight_gradients = _backward(layout, (options, divergence), *backward)
    total = all_sum(jnp.sum(loss), tokens) / divisor
    return total, d_hidden.astype(loss.dtype), *weight_gradients


def _divisor(labels, counted, options, mean, dtype, tokens=None):
    """The tokens counted by a mean (neither masked nor ignored; at least 1), or 1."""
    if not mean:
        return jnp.ones((), dtype)
    skipped = token_status(labels, counted, 1, options._replace(axis_name=None)).skipped
    return jnp.maximum(all_sum(jnp.sum(~skipped).astype(dtype), tokens), 1)


def _gradient_roles(bias) -> tuple[str, ...]:
    return ("nd", "rv") if bias is None else ("nd", "rv", "v")


def _per_token_losses(operands, hyper, static):
    loss, *_ = run_sharded(_forward, static, (*operands, *hyper), _OPERAND_ROLES, ("n",) * 11)
    return loss


def _per_token_fwd(operands, hyper, static):
    outputs = run_sharded(_forward, static, (*operands, *hyper), _OPERAND_ROLES, ("n",) * 11)
    return outputs[0], (operands, outputs[1:], hyper)


def _teacher_zeros(operands, student_gradients):
    s_hidden, s_weight, _, _, s_bias, _, _, _ = operands
    d_hidden, d_weight, *rest = student_gradients
    d_bias = like(rest[0], s_bias) if rest and s_bias is not None else None
    student = (like(d_hidden, s_hidden), like(d_weight, s_weight))
    return (*student, None, None, d_bias, None, None, None)


def _per_token_bwd(static, residuals, d_loss):
    operands, statistics, hyper = residuals
    backward = (*operands[:7], *statistics, d_loss, *hyper)
    roles = (*_OPERAND_ROLES[:7], *("n",) * 11, "", "", "")
    gradients = run_sharded(_backward, static, backward, roles, _gradient_roles(operands[4]))
    zeros = jax.tree.map(jnp.zeros_like, hyper)
    return _teacher_zeros(operands, gradients), zeros


distill_per_token = jax.custom_vjp(_per_token_losses, nondiff_argnums=(2,))
distill_per_token.defvjp(_per_token_fwd, _per_token_bwd)


def _reduced_loss(operands, hyper, static):
    options, divergence, mean = static
    loss, *_ = run_sharded(
        _forward, (options, divergence), (*operands, *hyper), _OPERAND_ROLES, ("n",) * 11
    )
    return jnp.sum(loss) / _divisor(operands[6], operands[7], options, mean, loss.dtype)


def _reduced_fwd(operands, hyper, static):
    out_roles = ("", *_gradient_roles(operands[4]))
    loss, *gradients = run_sharded(
        _reduced_body, static, (*operands, *hyper), _OPERAND_ROLES, out_roles
    )
    return loss, (operands, gradients, hyper)


def _reduced_bwd(static, residuals, d_loss):
    operands, gradients, hyper = residuals
    scaled = []
    for gradient, primal in zip(gradients, (operands[0], operands[1], operands[4]), strict=False):
        gradient = sum_over_sharers(d_loss.astype(gradient.dtype) * gradient, primal)
        scaled.append(gradient.astype(primal.dtype))
    return _teacher_zeros(operands, scaled), jax.tree.map(jnp.zeros_like, hyper)


distill_reduced = jax.custom_vjp(_reduced_loss, nondiff_argnums=(2,))
distill_reduced.defvjp(_reduced_fwd, _reduced_bwd)
