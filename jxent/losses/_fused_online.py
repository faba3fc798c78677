"""The forward sweep of the fused losses: per-token softmax statistics of a linear
head, accumulated online over vocabulary blocks.

Each token tile walks over the vocabulary in blocks and keeps, per token, the
running peak of its logits and, relative to it, the sum of exponentials (as
the entries below the peak and how many reach it, for a log-sum-exp that
keeps the digits of a small loss), the label's logit, and on request the sum
of the logits, the exponential-weighted sum of the logits (the entropy) and
the first index of the peak (the argmax). Shards of a split vocabulary meet
through these per-token vectors only.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._collectives import all_max, all_sum, first_class, total_classes, varying_like
from ._fused_kernels import (
    Hyperparameters,
    LinearCrossEntropyOptions,
    TokenStatus,
    accumulation_dtype,
    combine_loss,
    for_each_slice,
    put,
    take,
    tile_logits,
    token_status,
)
from ._integer import log_total_from_rest, rest_and_count


class Wanted(NamedTuple):
    """Which optional statistics a sweep accumulates (static)."""

    logit_sum: bool = False  # Σ_j z_j, for label smoothing
    entropy: bool = False
    argmax: bool = False


class _Online(NamedTuple):
    """Per-token running statistics, relative to the running ``peak``.

    ``weighted`` is Σ_j exp(s_j - peak)·(s_j - peak); the fields not wanted are None.
    """

    peak: jax.Array
    rest: jax.Array
    at_peak: jax.Array  # how many entries reach the peak
    label_logit: jax.Array
    logit_sum: jax.Array | None
    weighted: jax.Array | None
    argmax: jax.Array | None


def _rescaled(online: _Online, new_peak: jax.Array) -> _Online:
    """``online`` moved from its peak to ``new_peak`` ≥ it: below a higher peak, the
    old peak's entries join the rest."""
    finite_peak = jnp.where(new_peak == -jnp.inf, 0, new_peak)
    grew = online.peak < new_peak
    shift = online.peak - finite_peak  # ≤ 0, -inf from an empty start
    factor = jnp.exp(shift)
    total = online.rest + online.at_peak
    rest = jnp.where(grew, total * factor, online.rest)
    weighted = online.weighted
    if weighted is not None:
        # Σ e^(s - p')(s - p') = e^(p - p') (Σ e^(s - p)(s - p) + (p - p') Σ e^(s - p));
        # a factor that underflows leaves nothing (and no 0 · inf).
        moved = jnp.where(factor == 0, 0, factor * (weighted + shift * total))
        weighted = jnp.where(grew, moved, weighted)
    return online._replace(
        peak=new_peak, rest=rest, at_peak=jnp.where(grew, 0, online.at_peak), weighted=weighted
    )


def _block(online: _Online, logits: jax.Array, is_label: jax.Array, columns) -> _Online:
    """``online`` updated with one block of (scaled) logits."""
    block_peak = jnp.max(logits, axis=1)
    new_peak = jnp.maximum(online.peak, block_peak)
    if online.argmax is not None:
        # The lowest column at the block's peak, by two plain reductions (a
        # variadic arg-reduction is many times slower on CPU); an equal peak in
        # an earlier block keeps that block's column.
        first = jnp.min(
            jnp.where(logits == block_peak[:, None], columns, jnp.iinfo(jnp.int32).max), axis=1
        )
        online = online._replace(argmax=jnp.where(block_peak > online.peak, first, online.argmax))
    online = _rescaled(online, new_peak)
    # A block or row whose logits are all -inf (a -inf bias) leaves the peak -inf.
    finite_peak = jnp.where(new_peak == -jnp.inf, 0, new_peak)
    shifted = logits - finite_peak[:, None]
    exps = jnp.exp(shifted)
    block_rest, block_count = rest_and_count(logits, exps, new_peak)
    online = online._replace(
        rest=online.rest + block_rest,
        at_peak=online.at_peak + block_count,
        label_logit=online.label_logit + jnp.sum(jnp.where(is_label, logits, 0), axis=1),
    )
    if online.logit_sum is not None:
        online = online._replace(logit_sum=online.logit_sum + jnp.sum(logits, axis=1))
    if online.weighted is not None:
        # 0 at the peak whatever XLA's rounding of the shift (a fused multiply-add
        # of a scaled logit minus the peak leaves the product's rounding error),
        # and 0 · -inf is 0 here.
        nothing = (logits == new_peak[:, None]) | (exps == 0)
        terms = jnp.where(nothing, 0, exps * shifted)
        online = online._replace(weighted=online.weighted + jnp.sum(terms, axis=1))
    return online


def _vocabulary_sweep(
    hidden, weight, bias, labels, inverse_temperature, softcap, wanted: Wanted, options
) -> _Online:
    """:class:`_Online` of a token tile over this device's vocabulary."""
    offset = first_class(weight.shape[1], options.axis_name)
    dtype = accumulation_dtype(hidden, weight)
    rows = varying_like(jnp.zeros(hidden.shape[:1], dtype), hidden, weight, bias, labels)

    def block(start, width, online):
        logits = tile_logits(
            hidden,
            take(weight, start, width, 1),
            None if bias is None else take(bias, start, width, 0),
            softcap,
        )
        if inverse_temperature is not None:
            logits = logits * inverse_temperature[:, None]
        columns = offset + start + jnp.arange(width, dtype=jnp.int32)
        return _block(online, logits, columns[None, :] == labels[:, None], columns[None, :])

    return for_each_slice(weight.shape[1], options.block_size, block, _start(rows, wanted))


class SoftmaxStats(NamedTuple):
    """Per-token statistics of ``softmax(z / T)`` from :func:`linear_softmax_stats`.

    Attributes:
      log_prob: ``log softmax(z / T)[label]`` (None without labels).
      entropy: the Shannon entropy ``H(softmax(z / T))`` in nats.
      logsumexp: the log-normaliser ``log Σ_j exp(z_j / T)``.
      argmax: the most likely class (int32; ties go to the lowest index).
    """

    log_prob: jax.Array | None
    entropy: jax.Array
    logsumexp: jax.Array
    argmax: jax.Array


class _RowStatistics(NamedTuple):
    """Per-token statistics of a fused sweep, whole over the vocabulary."""

    peak: jax.Array  # the row maximum, 0 for an empty row
    log_total: jax.Array  # log Σ exp(s - peak), 0 for an empty row
    label_logit: jax.Array
    mean_logit: jax.Array | None
    entropy: jax.Array | None
    argmax: jax.Array | None
    empty: jax.Array  # every logit -inf

    @property
    def logsumexp(self) -> jax.Array:
        return self.peak + self.log_total


def row_statistics(
    hidden,
    weight,
    bias,
    labels,
    inverse_temperature,
    softcap,
    wanted: Wanted,
    options: LinearCrossEntropyOptions,
) -> _RowStatistics:
    """:class:`_RowStatistics` of ``softcap(hidden @ weight + bias) * inverse_temperature``
    per token, over the vocabulary split across ``options.axis_name``."""
    dtype = accumulation_dtype(hidden, weight)
    rows = varying_like(jnp.zeros(hidden.shape[:1], dtype), hidden, weight, bias, labels)

    def token_tile(start, size, stats):
        tile = _vocabulary_sweep(
            take(hidden, start, size, 0),
            weight,
            bias,
            take(labels, start, size, 0),
            None if inverse_temperature is None else take(inverse_temperature, start, size, 0),
            softcap,
            wanted,
            options,
        )
        return jax.tree.map(lambda s, t: put(s, t, start, 0), stats, tile)

    online = for_each_slice(
        hidden.shape[0], options.token_block_size, token_tile, _start(rows, wanted)
    )
    return _finish(online, options.axis_name, total_classes(weight.shape[1], options.axis_name))


def full_row_statistics(
    logits: jax.Array, is_label: jax.Array, columns: jax.Array, wanted: Wanted
) -> _RowStatistics:
    """:class:`_RowStatistics` of a tile of logits that holds whole vocabulary rows."""
    online = _block(
        _start(jnp.zeros(logits.shape[:1], logits.dtype), wanted), logits, is_label, columns
    )
    return _finish(online, None, logits.shape[1])


def _start(rows: jax.Array, wanted: Wanted) -> _Online:
    """Nothing seen yet: peak -inf, every sum 0."""
    return _Online(
        peak=rows - jnp.inf,
        rest=rows,
        at_peak=rows,
        label_logit=rows,
        logit_sum=rows if wanted.logit_sum else None,
        weighted=rows if wanted.entropy else None,
        argmax=rows.astype(jnp.int32) if wanted.argmax else None,
    )


def _finish(online: _Online, axis_name, vocab: int) -> _RowStatistics:
    """The statistics of whole rows from each shard's running ones."""
    global_peak = all_max(online.peak, axis_name)
    argmax = online.argmax
    if argmax is not None and axis_name is not None:
        # The lowest column at the global peak, over the shards that reach it.
        beyond = jnp.iinfo(jnp.int32).max
        argmax = -all_max(-jnp.where(online.peak == global_peak, argmax, beyond), axis_name)
    online = _rescaled(online, global_peak)
    rest, count = all_sum(online.rest, axis_name), all_sum(online.at_peak, axis_name)
    empty = global_peak == -jnp.inf
    log_total = log_total_from_rest(rest, count, empty)
    entropy = None
    if online.weighted is not None:
        weighted = all_sum(online.weighted, axis_name)
        # H = log Σ e^(s - peak) - Σ e^(s - peak)(s - peak) / Σ e^(s - peak) ≥ 0.
        entropy = jnp.maximum(log_total - weighted / jnp.where(empty, 1, rest + count), 0)
        entropy = jnp.where(empty, 0, entropy)
    mean_logit = None
    if online.logit_sum is not None:
        mean_logit = all_sum(online.logit_sum, axis_name) / vocab
    return _RowStatistics(
        peak=jnp.where(empty, 0, global_peak),
        log_total=log_total,
        label_logit=all_sum(online.label_logit, axis_name),
        mean_logit=mean_logit,
        entropy=entropy,
        argmax=argmax,
        empty=empty,
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
    """Per-token cross-entropy losses ``[N]``, log-sum-exps ``[N]`` (for the
    backward), the tokens' :class:`TokenStatus` (empty rows skipped) and, with
    ``options.statistics``, :func:`softmax_outputs` (else ``()``)."""
    wanted = Wanted(
        logit_sum=hyper.label_smoothing is not None,
        entropy=options.statistics,
        argmax=options.statistics,
    )
    stats = row_statistics(hidden, weight, bias, labels, None, hyper.softcap, wanted, options)
    return cross_entropy_from_statistics(stats, labels, counted, weight.shape[1], hyper, options)


def cross_entropy_from_statistics(
    stats: _RowStatistics,
    labels,
    counted,
    local_vocab: int,
    hyper: Hyperparameters,
    options: LinearCrossEntropyOptions,
):
    """:func:`per_token_forward`'s results from the rows' statistics (of this
    device's ``local_vocab`` classes)."""
    status = token_status(labels, counted, local_vocab, options)
    extras = softmax_outputs(stats, status) if options.statistics else ()
    # A row with every logit -inf is empty: loss 0 and gradient 0.
    status = status._replace(skipped=status.skipped | stats.empty)
    loss = combine_loss(
        stats.peak, stats.log_total, stats.label_logit, stats.mean_logit, status, hyper
    )
    return loss, stats.logsumexp, status, extras


def softmax_outputs(stats: _RowStatistics, status: TokenStatus) -> tuple[jax.Array, ...]:
    """The per-token ``(log_prob, entropy, logsumexp, argmax)`` of ``stats``.

    ``status`` says which tokens are skipped (every float output 0) and which have
    a label outside the vocabulary (``log_prob`` NaN). An empty row (every logit
    -inf) has ``logsumexp`` -inf, ``log_prob`` and ``entropy`` 0.
    """
    skipped = status.skipped
    log_prob = -((stats.peak - stats.label_logit) + stats.log_total)
    log_prob = jnp.where(skipped | stats.empty, 0, log_prob)
    log_prob = jnp.where(status.invalid, jnp.nan, log_prob)
    assert stats.entropy is not None and stats.argmax is not None, "a statistics sweep"
    entropy = jnp.where(skipped, 0, stats.entropy)
    logsumexp = jnp.where(stats.empty, -jnp.inf, stats.logsumexp)
    return log_prob, entropy, jnp.where(skipped, 0, logsumexp), stats.argmax
