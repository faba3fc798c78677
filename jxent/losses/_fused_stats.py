"""Per-token softmax statistics of a linear head, fused: log-prob of a label,
entropy, log-normaliser and argmax, differentiable in every float output.

The forward is the cross-entropy's online sweep (``_fused_online``) with the
entropy and argmax accumulated; the backward is its blockwise gradient sweep
(``_fused_per_token``) with the coefficients of the three outputs. The logits
are never held whole: 2·N·D·V matmul FLOPs to evaluate, 8·N·D·V with the
gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation
from .._arguments import class_mask
from .._collectives import total_classes
from ._fused import checked_arguments, hyperparameters, positive_or_none
from ._fused_kernels import (
    LinearCrossEntropyOptions,
    LogitGradientScales,
    accumulation_dtype,
    token_status,
)
from ._fused_online import SoftmaxStats, Wanted, row_statistics, softmax_outputs
from ._fused_partition import Layout, like, run_sharded
from ._fused_per_token import block_options, logit_gradient_sweep, whole_cotangent

_TILE_BUDGET = 2**22
_FORWARD_ROLES = ("nd", "ev", "v", "n", "n", "n", "")


def _forward_body(layout: Layout, options: LinearCrossEntropyOptions, *operands):
    """``(log_prob, entropy, logsumexp, argmax, skipped, invalid)`` of this block."""
    hidden, weight, bias, labels, counted, inverse_temperature, softcap = operands
    options = block_options(layout, options, hidden, weight, reduced=False)
    wanted = Wanted(entropy=True, argmax=True)
    stats = row_statistics(
        hidden, weight, bias, labels, inverse_temperature, softcap, wanted, options
    )
    status = token_status(labels, counted, weight.shape[1], options)
    skipped = status.skipped | stats.empty
    return *softmax_outputs(stats, status), skipped, status.invalid


def _sharded_forward(hidden, weight, bias, labels, counted, inverse_temperature, softcap, options):
    return run_sharded(
        _forward_body,
        options,
        (hidden, weight, bias, labels, counted, inverse_temperature, softcap),
        _FORWARD_ROLES,
        ("n",) * 6,
    )


def _statistics(hidden, weight, bias, labels, counted, inverse_temperature, softcap, options):
    """``(log_prob, entropy, logsumexp, argmax)`` per token of ``hidden[N, D]``."""
    outputs = _sharded_forward(
        hidden, weight, bias, labels, counted, inverse_temperature, softcap, options
    )
    return outputs[:4]


def _statistics_fwd(hidden, weight, bias, labels, counted, inverse_temperature, softcap, options):
    outputs = _sharded_forward(
        hidden, weight, bias, labels, counted, inverse_temperature, softcap, options
    )
    _, entropy, logsumexp, _, skipped, invalid = outputs
    residuals = (
        hidden,
        weight,
        bias,
        labels,
        logsumexp,
        entropy,
        skipped,
        invalid,
        inverse_temperature,
        softcap,
    )
    return outputs[:4], residuals


def _backward_body(layout: Layout, options: LinearCrossEntropyOptions, *operands):
    (
        hidden,
        weight,
        bias,
        labels,
        logsumexp,
        entropy,
        skipped,
        invalid,
        inverse_temperature,
        d_log_prob,
        d_entropy,
        d_logsumexp,
        softcap,
    ) = operands
    dtype = accumulation_dtype(hidden, weight)
    d_log_prob, d_entropy, d_logsumexp = (
        whole_cotangent(d.astype(dtype), weight, options.axis_name)
        for d in (d_log_prob, d_entropy, d_logsumexp)
    )
    options = block_options(layout, options, hidden, weight, reduced=False)
    # A label outside the vocabulary has a NaN log-prob, and NaN gradients where
    # that log-prob is differentiated.
    d_label = jnp.where(invalid & (d_log_prob != 0), jnp.nan, d_log_prob)
    scales = LogitGradientScales(
        prob=d_logsumexp - d_label,
        label=-d_label,
        entropy=d_entropy,
        entropy_value=entropy,
        inverse_temperature=inverse_temperature,
    )
    gradients = logit_gradient_sweep(
        layout, options, hidden, weight, bias, labels, logsumexp, skipped, softcap, scales
    )
    return tuple(g for g in gradients if g is not None)


def _statistics_bwd(options: LinearCrossEntropyOptions, residuals, cotangents):
    hidden, weight, bias, *_, inverse_temperature, softcap = residuals
    # _backward_body's operands: the residuals, with the three float cotangents
    # before the (scalar) soft-cap.
    gradients = run_sharded(
        _backward_body,
        options,
        (*residuals[:-1], *cotangents[:3], softcap),
        ("nd", "ev", "v", "n", "n", "n", "n", "n", "n", "n", "n", "n", ""),
        ("nd", "rv") if bias is None else ("nd", "rv", "v"),
    )
    d_hidden, d_weight, *rest = gradients
    d_bias = like(rest[0], bias) if rest and bias is not None else None
    return (
        like(d_hidden, hidden),
        like(d_weight, weight),
        d_bias,
        None,
        None,
        None if inverse_temperature is None else jnp.zeros_like(inverse_temperature),
        None if softcap is None else jnp.zeros_like(softcap),
    )


# Applied as a call rather than a decorator so that type checkers see what it returns.
_fused_softmax_statistics = jax.custom_vjp(_statistics, nondiff_argnums=(7,))
_fused_softmax_statistics.defvjp(_statistics_fwd, _statistics_bwd)


def _inverse_temperature(temperature, token_shape, dtype) -> jax.Array | None:
    """``1 / temperature`` broadcast to the tokens (None for a static 1), not
    differentiated."""
    if not isinstance(temperature, jax.Array) and np.ndim(temperature) == 0:
        if isinstance(temperature, (bool, np.bool_)):
            raise TypeError(f"temperature must be a positive number, got {temperature!r}")
        if temperature == 1:
            return None
    temperature = _validation.option_in_domain(
        temperature, "temperature", "positive", lambda t: t > 0
    )
    temperature = jnp.asarray(temperature, dtype)
    if not jnp.issubdtype(temperature.dtype, jnp.floating):
        temperature = temperature.astype(dtype)
    try:
        temperature = jnp.broadcast_to(temperature, token_shape)
    except ValueError:
        raise ValueError(
            f"temperature of shape {temperature.shape} does not broadcast to the tokens' shape "
            f"{token_shape} (hidden's leading axes)"
        ) from None
    return jax.lax.stop_gradient(1 / temperature.astype(dtype))


def softmax_statistics(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None,
    *,
    bias: jax.typing.ArrayLike | None,
    temperature: jax.typing.ArrayLike,
    softcap: float | None,
    where: jax.typing.ArrayLike | None,
    block_size: int | None,
    token_block_size: int | None,
    axis_name: str | tuple[str, ...] | None,
) -> SoftmaxStats:
    """:func:`linear_softmax_stats` on a weight that may be a vocabulary shard."""
    token_shape = np.shape(hidden)[:-1]
    given = labels is not None
    if labels is None:
        labels = jnp.zeros(token_shape, jnp.int32)
    hidden, weight, labels, bias = checked_arguments(hidden, weight, labels, bias, reduction="none")
    dtype = accumulation_dtype(hidden, weight)
    softcap_value = hyperparameters(0.0, 0.0, softcap, dtype).softcap
    inverse_temperature = _inverse_temperature(temperature, labels.shape, dtype)
    counted = class_mask(where, labels.shape)
    options = LinearCrossEntropyOptions(
        ignore_index=None,
        block_size=positive_or_none(block_size, "block_size"),
        token_block_size=positive_or_none(token_block_size, "token_block_size"),
        axis_name=axis_name,
        skips_tokens=where is not None,
        # The entropy's gradient keeps one more tile of logits live than the
        # cross-entropy's: tiles half as tall keep value-and-grad within the
        # cross-entropy's memory (104 MiB at 8192 tokens, D = 2048, V = 131072).
        tile_budget=_TILE_BUDGET,
    )
    if _validation.enabled():
        if given:
            checked = labels if counted is None else jnp.where(counted, labels, 0)
            _validation.check_labels(checked, total_classes(weight.shape[1], axis_name), None)
        read = hidden if counted is None else jnp.where(counted[..., None], hidden, 0)
        _validation.check_no_nan(read, "hidden")
        _validation.check_no_nan(weight, "weight")
    flat = (
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        bias,
        labels.reshape(-1),
        None if counted is None else counted.reshape(-1),
        None if inverse_temperature is None else inverse_temperature.reshape(-1),
        softcap_value,
    )
    log_prob, entropy, logsumexp, argmax = _fused_softmax_statistics(*flat, options)
    return SoftmaxStats(
        log_prob=log_prob.reshape(labels.shape) if given else None,
        entropy=entropy.reshape(labels.shape),
        logsumexp=logsumexp.reshape(labels.shape),
        argmax=argmax.reshape(labels.shape),
    )


def linear_softmax_stats(
    hidden: jax.typing.ArrayLike,
    weight: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None = None,
    *,
    bias: jax.typing.ArrayLike | None = None,
    temperature: jax.typing.ArrayLike = 1.0,
    softcap: float | None = None,
    where: jax.typing.ArrayLike | None = None,
    block_size: int | None = None,
    token_block_size: int | None = None,
) -> SoftmaxStats:
    r"""Per-token log-prob, entropy, log-normaliser and argmax of a linear head, fused.

    With :math:`z = \mathrm{softcap}(h W + b)` and :math:`p = \mathrm{softmax}(z / T)`,
    per token:

    .. math::
      \log p_y = z_y / T - \mathrm{lse}(z / T), \qquad
      H(p) = -\sum_j p_j \log p_j, \qquad
      \mathrm{lse}(z / T) = \log \sum_j e^{z_j / T},

    and :math:`\arg\max_j z_j`, computed blockwise as
    :func:`linear_cross_entropy` is: the ``[tokens, V]`` logits are never held.
    Evaluation costs one pass (2·N·D·V matmul FLOPs). Every float output is
    differentiable (``custom_vjp``: reverse mode only), alone or together, for
    any per-token cotangents (a policy-gradient loss weights ``log_prob`` by advantages and
    adds an entropy bonus): with :math:`g` the cotangents, the gradient with
    respect to :math:`z_j / T` is

    .. math::
      g_{\log p}\,([j = y] - p_j) - g_H\, p_j (\log p_j + H) + g_{\mathrm{lse}}\, p_j,

    0 where :math:`p_j = 0`; the backward recomputes one tile of logits at a time
    (8·N·D·V FLOPs for the value and gradient, 16-bit operands in every matmul
    for 16-bit inputs, float32 accumulation). Zero probabilities (``-inf``
    logits from a bias mask, a huge negative soft-capped logit) count
    :math:`0 \log 0 = 0` and never give NaN. Under ``jax.jit`` with sharded
    inputs it partitions as :func:`linear_cross_entropy` does.

    Args:
      hidden: activations ``[..., D]``.
      weight: projection ``[D, V]`` (``embedding.T`` for tied embeddings).
      labels: optional integer labels ``[...]`` (the sampled tokens) for
        ``log_prob``; one outside ``[0, V)`` gives a NaN ``log_prob`` (and NaN
        gradients through it).
      bias: optional ``[V]`` bias (``-inf`` masks a class).
      temperature: T > 0, a scalar or an array broadcastable to the tokens'
        shape (a temperature per sample); may be traced; not differentiated.
      softcap: c of the logit soft-cap ``c·tanh(z/c)``, or None.
      where: boolean token mask broadcastable to the tokens' shape; a masked
        token gives 0 in every float output and zero gradients whatever its
        label, and its hidden state is never read (it may be NaN).
      block_size: vocabulary columns per tile (None: 1024, at most V).
      token_block_size: tokens per tile (None: a tile of 2²² logits, 4096
        tokens at the default block size).

    Returns:
      A :class:`SoftmaxStats` of per-token arrays shaped like the tokens:
      ``log_prob`` (None without ``labels``), ``entropy`` and ``logsumexp`` in
      float32 (float64 under x64 for float64 inputs), ``argmax`` int32 (ties:
      the lowest index). A row whose logits are all ``-inf`` has ``logsumexp``
      ``-inf``, ``entropy`` and ``log_prob`` 0, and zero gradients.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> hidden = jnp.ones((2, 3)); weight = jnp.zeros((3, 4)).at[0, 2].set(1.0)
      >>> stats = jxent.losses.linear_softmax_stats(hidden, weight, jnp.array([2, 0]))
      >>> stats.log_prob, stats.argmax
      (Array([-0.74366844, -1.7436684 ], dtype=float32), Array([2, 2], dtype=int32))
      >>> policy = lambda h: jxent.losses.linear_softmax_stats(
      ...     h, weight, jnp.array([2, 0]), temperature=0.7)
      >>> jax.grad(lambda h: -policy(h).log_prob.sum() - 0.01 * policy(h).entropy.sum())(
      ...     hidden).shape
      (2, 3)
    """
    return softmax_statistics(
        hidden,
        weight,
        labels,
        bias=bias,
        temperature=temperature,
        softcap=softcap,
        where=where,
        block_size=block_size,
        token_block_size=token_block_size,
        axis_name=None,
    )
