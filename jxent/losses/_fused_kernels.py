"""Pieces shared by the two fused linear cross-entropy sweeps.

The per-token sweep (``_fused_per_token``) recomputes blocks of logits in its
backward; the reduced sweep (``_fused_reduced``) computes the gradients in its
forward. Both need the same tiles of logits, the same derivative of the loss
with respect to one tile, and the same loops with static trip counts (so that a
jaxpr reader can count their matmuls).
"""

import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from .._arguments import label_status
from .._collectives import total_classes

_Carry = TypeVar("_Carry")


class LinearCrossEntropyOptions(NamedTuple):
    """Static options of the fused loss (hashable: a ``nondiff_argnums`` entry).

    The tile sizes are the caller's (None: chosen by :func:`tiles` from the shapes
    of each device's block, which only the per-shard body knows).
    """

    ignore_index: int | None
    block_size: int | None  # vocabulary columns per tile
    token_block_size: int | None  # tokens per tile
    axis_name: str | tuple[str, ...] | None = None
    # A token mask or ignore_index: skipped tokens' hidden rows are zeroed in
    # each tile (they may be NaN), at the cost of a copy of the tile.
    skips_tokens: bool = False
    # Also return the per-token softmax statistics (log-prob, entropy,
    # log-sum-exp, argmax) of the cross-entropy's sweep.
    statistics: bool = False
    # Logits per tile of a per-token sweep when token_block_size is None (None:
    # the cross-entropy's 2**23).
    tile_budget: int | None = None


# Default tiles, from measurements (XLA's temporaries at 8192 tokens, D = 2048,
# V = 131072, float32; CPU times at 4096 tokens, D = 512, V = 32768):
# - per-token: a tile of 2**23 float32 logits (32 MiB, 8192 tokens × 1024
#   columns) keeps value-and-grad at 104 MiB; blocks of 512 to 4096 columns
#   ran within 7% of each other on CPU.
# - reduced: a tile of full vocabulary rows holding at most 2**27 float32
#   logits (512 MiB; 1024 rows at V = 131072) adds 529 MiB to the 4·D·V-byte
#   d_weight accumulator, within 640. Every tile reads and writes that
#   accumulator, so fewer, taller tiles are faster (a prototype of this sweep
#   on an H200 at the Llama-3 head, issue 11: 512 rows 56 ms, 1024 rows 46 ms,
#   2048 rows 43 ms); on CPU 1024 and
#   2048 rows were within 6% and 4096 rows slower, hence the cap.
_DEFAULT_BLOCK_SIZE = 1024
_PER_TOKEN_TILE = 2**23
_REDUCED_TILE = 2**27
_REDUCED_MAX_ROWS = 2048


def power_of_two_at_most(x: float) -> int:
    return 2 ** max(0, math.floor(math.log2(max(x, 1))))


def tiles(
    options: LinearCrossEntropyOptions, tokens: int, local_vocab: int, reduced: bool
) -> LinearCrossEntropyOptions:
    """``options`` with both tile sizes set for a block of ``tokens`` × ``local_vocab``
    (the caller's choices kept, capped at the block's size)."""
    block = min(options.block_size or _DEFAULT_BLOCK_SIZE, max(local_vocab, 1))
    token_block = options.token_block_size
    if token_block is None:
        if reduced:
            rows = power_of_two_at_most(_REDUCED_TILE / max(local_vocab, 1))
            token_block = min(rows, _REDUCED_MAX_ROWS)
        else:
            token_block = power_of_two_at_most((options.tile_budget or _PER_TOKEN_TILE) / block)
    token_block = max(1, min(token_block, tokens))
    return options._replace(block_size=block, token_block_size=token_block)


class Hyperparameters(NamedTuple):
    """The loss's scalar hyperparameters, each None when statically off.

    Arrays, not static options, so that a schedule can pass them traced.
    """

    label_smoothing: jax.Array | None
    z_loss: jax.Array | None
    softcap: jax.Array | None


def accumulation_dtype(hidden: jax.Array, weight: jax.Array) -> jnp.dtype:
    """float32 for 16-bit inputs, float64 under x64 for float64 inputs."""
    return jnp.promote_types(jnp.result_type(hidden, weight), jnp.float32)


def matmul_dtype(hidden: jax.Array, weight: jax.Array) -> jnp.dtype:
    """Operand dtype of the gradient matmuls: the inputs' own (16-bit stays 16-bit)."""
    return jnp.result_type(hidden, weight)


def as_bits(x: jax.Array) -> jax.Array:
    """On CPU, a 16-bit float array as its uint16 bits (else ``x`` unchanged)."""
    # XLA:CPU slices a 16-bit float array through a float32 copy of the whole
    # array, which it then moves out of the loop (4·D·V bytes for a weight); it
    # slices an integer view of the same bits in place. Other backends slice
    # 16-bit floats natively.
    if (
        jnp.issubdtype(x.dtype, jnp.floating)
        and jnp.finfo(x.dtype).bits == 16
        and jax.default_backend() == "cpu"
    ):
        return jax.lax.bitcast_convert_type(x, jnp.uint16)
    return x


def from_bits(bits: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """The inverse of :func:`as_bits`."""
    return bits if bits.dtype == dtype else jax.lax.bitcast_convert_type(bits, dtype)


def take(x: jax.Array, start: int | jax.Array, size: int, axis: int) -> jax.Array:
    """``size`` entries of ``x`` along ``axis`` from ``start`` (a view, never a copy of x)."""
    if isinstance(start, int):
        if start == 0 and size == x.shape[axis]:
            return x
        return jax.lax.slice_in_dim(x, start, start + size, axis=axis)
    part = jax.lax.dynamic_slice_in_dim(as_bits(x), start, size, axis=axis)
    return from_bits(part, x.dtype)


def put(x: jax.Array, update: jax.Array, start: int | jax.Array, axis: int) -> jax.Array:
    """``x`` with ``update`` written in place along ``axis`` from ``start``."""
    if update.shape == x.shape:
        return update
    written = jax.lax.dynamic_update_slice_in_dim(as_bits(x), as_bits(update), start, axis=axis)
    return from_bits(written, x.dtype)


def for_each_slice(
    total: int,
    size: int | None,
    body: Callable[[int | jax.Array, int, _Carry], _Carry],
    carry: _Carry,
) -> _Carry:
    """Run ``body(start, width, carry)`` over ``[0, total)`` in slices of ``size``.

    Full slices run in a ``fori_loop`` with Python-int bounds (a ``scan`` of
    known length), a single one inline, and the short last slice inline.
    """
    assert size is not None, "tiles() sets every tile size before a sweep"
    full, rest = divmod(total, size)
    if full == 1:
        carry = body(0, size, carry)
    elif full > 1:
        carry = jax.lax.fori_loop(0, full, lambda i, c: body(i * size, size, c), carry)
    if rest:
        carry = body(full * size, rest, carry)
    return carry


def zero_skipped(
    hidden_tile: jax.Array, skipped: jax.Array, options: LinearCrossEntropyOptions
) -> jax.Array:
    """A tile of hidden states with the rows of masked or ignored tokens zeroed.

    Such a token is never read: its hidden state may be NaN (padding). The
    barrier keeps XLA from moving the select out of the loop, where it would
    copy the whole hidden array.
    """
    if not options.skips_tokens:
        return hidden_tile
    hidden_tile, skipped = jax.lax.optimization_barrier((hidden_tile, skipped))
    return jnp.where(skipped[:, None], jnp.zeros((), hidden_tile.dtype), hidden_tile)


def tile_logits(
    hidden: jax.Array, weight: jax.Array, bias: jax.Array | None, softcap: jax.Array | None
) -> jax.Array:
    """Logits ``softcap(hidden @ weight + bias)`` of one tile, accumulated in float32."""
    dtype = accumulation_dtype(hidden, weight)
    logits = jnp.dot(hidden, weight, preferred_element_type=dtype)
    if bias is not None:
        logits = logits + bias.astype(dtype)
    if softcap is not None:
        logits = softcap * jnp.tanh(logits / softcap)
    # A +inf logit (a 16-bit overflow) has no softmax: NaN, as in the dense loss.
    return jnp.where(logits == jnp.inf, jnp.nan, logits)


def tile_logit_gradient(
    logits: jax.Array,
    lse: jax.Array,
    is_label: jax.Array,
    scales: "LogitGradientScales",
    softcap: jax.Array | None,
) -> jax.Array:
    """d objective / d (hidden @ weight + bias) on one tile, in the accumulation dtype.

    With ``s = z / T`` and ``p = softmax(s)``, the gradient with respect to ``s`` is
    ``prob·p_j - uniform - label·[j = k] - entropy·p_j (log p_j + H)`` (the last term
    0 where ``p_j = 0``), then times ``1 / T`` and the soft-cap's ``1 - (z_j / cap)²``.
    """
    scaled = logits
    if scales.inverse_temperature is not None:
        scaled = logits * scales.inverse_temperature[:, None]
    log_probs = scaled - lse[:, None]
    probs = jnp.exp(log_probs)
    if scales.entropy is not None and scales.entropy_value is not None:
        surprise = log_probs + scales.entropy_value[:, None]
        coefficient = scales.prob[:, None] - scales.entropy[:, None] * surprise
        d_logits = jnp.where(probs == 0, 0, probs * coefficient)
    else:
        d_logits = scales.prob[:, None] * probs
    if scales.uniform is not None:
        d_logits = d_logits - scales.uniform[:, None]
    d_logits = jnp.where(is_label, d_logits - scales.label[:, None], d_logits)
    if scales.inverse_temperature is not None:
        d_logits = d_logits * scales.inverse_temperature[:, None]
    if softcap is not None:
        d_logits = d_logits * (1 - (logits / softcap) ** 2)
    return d_logits


class LogitGradientScales(NamedTuple):
    """Per-token coefficients of the terms of :func:`tile_logit_gradient` (None: absent)."""

    prob: jax.Array
    label: jax.Array
    uniform: jax.Array | None = None
    entropy: jax.Array | None = None  # the entropy's cotangent
    entropy_value: jax.Array | None = None  # H per token
    inverse_temperature: jax.Array | None = None


def loss_scales(
    cotangent: jax.Array, lse: jax.Array, vocab: int, hyper: Hyperparameters
) -> LogitGradientScales:
    """The coefficients of :func:`tile_logit_gradient` for a per-token cotangent of the
    cross-entropy."""
    prob = cotangent if hyper.z_loss is None else cotangent * (1 + 2 * hyper.z_loss * lse)
    if hyper.label_smoothing is None:
        return LogitGradientScales(prob=prob, label=cotangent)
    return LogitGradientScales(
        prob=prob,
        label=cotangent * (1 - hyper.label_smoothing),
        uniform=cotangent * (hyper.label_smoothing / vocab),
    )


class TokenStatus(NamedTuple):
    skipped: jax.Array  # loss 0, gradient 0: ignore_index, masked by ``where``
    invalid: jax.Array  # NaN loss and gradient: a label outside [0, V)


def token_status(
    labels: jax.Array,
    counted: jax.Array | None,
    local_vocab: int,
    options: LinearCrossEntropyOptions,
) -> TokenStatus:
    """Which tokens are skipped (ignored or masked) and which have a bad label.

    A masked token is skipped whatever its label: padding may carry any value.
    """
    vocab = total_classes(local_vocab, options.axis_name)
    ignored, invalid = label_status(labels, vocab, options.ignore_index)
    if counted is None:
        return TokenStatus(ignored, invalid)
    return TokenStatus(ignored | ~counted, invalid & counted)


def per_token_cotangent(cotangent: jax.Array, status: TokenStatus, dtype: jnp.dtype) -> jax.Array:
    """The cotangent of each token's loss: 0 where skipped, NaN where invalid."""
    cotangent = jnp.where(status.skipped, 0, cotangent.astype(dtype))
    return jnp.where(status.invalid, jnp.nan, cotangent)


def combine_loss(
    peak: jax.Array,
    log_total: jax.Array,
    label_logit: jax.Array,
    mean_logit: jax.Array | None,
    status: TokenStatus,
    hyper: Hyperparameters,
) -> jax.Array:
    """Per-token loss from the row's peak, log Σ exp(z - peak) and label logit.

    ``(peak - z_k) + log Σ`` keeps the digits of a small loss that ``lse - z_k``
    loses when ``lse`` is rounded near large logits.
    """
    smoothing = hyper.label_smoothing
    loss = (peak - label_logit) + log_total
    if smoothing is not None:
        assert mean_logit is not None, "the sweep sums the logits whenever smoothing is on"
        # A traced smoothing of 0 adds nothing, even where a -inf logit makes the
        # uniform part +inf (0 · inf would be NaN).
        uniform = smoothing * ((peak - mean_logit) + log_total)
        loss = (1 - smoothing) * loss + jnp.where(smoothing == 0, 0, uniform)
    if hyper.z_loss is not None:
        loss = loss + hyper.z_loss * (peak + log_total) ** 2
    loss = jnp.where(status.skipped, 0, loss)
    return jnp.where(status.invalid, jnp.nan, loss)
