"""Streaming evaluation: a compensated accumulator of negative log-likelihood.

``LogLoss`` sums per-token losses and token counts as two-float (value, error)
pairs: every addition is an error-free transformation (TwoSum), so a billion
float32 losses sum as exactly as ten, on any device and in any order.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._arguments import broadcasts_into, check_ignore_index, label_status
from .losses import softmax_cross_entropy_with_integer_labels

__all__ = ["LogLoss"]


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``a + b`` as (rounded sum, exact rounding error) — Knuth's TwoSum."""
    total = a + b
    b_part = total - a
    error = (a - (total - b_part)) + (b - b_part)
    return total, error


def _token_mask(where: jax.typing.ArrayLike, shape: tuple[int, ...], of: str) -> jax.Array:
    """``where`` broadcast to ``shape`` (that of ``of``), naming it when it does not fit."""
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    if not broadcasts_into(where.shape, shape):
        raise ValueError(
            f"where of shape {where.shape} does not broadcast to the shape {shape} of {of}"
        )
    return jnp.broadcast_to(where, shape)


def _add_pairs(x, y):
    high, error = _two_sum(x[0], y[0])
    return high, error + (x[1] + y[1])


def _compensated_sum(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum of all elements as a (value, error) pair, by a compensated reduction."""
    return _compensated_flat_sum(jnp.ravel(values))


# Pairs are reduced in rows of this many, level by level: a row's error terms
# are summed plainly, so no plain sum ever runs over more than a row, whatever
# the number of elements (one sequential reduction of 10⁸ would stall).
_ROW = 1024


@jax.custom_jvp
def _compensated_flat_sum(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    zero = jnp.zeros((), values.dtype)
    high, low = values, jnp.zeros_like(values)
    while high.size > 1:
        rows = -(-high.size // _ROW)
        width = min(_ROW, high.size)
        padding = rows * width - high.size
        high, low = (jnp.pad(x, (0, padding)).reshape(rows, width) for x in (high, low))
        high, low = jax.lax.reduce((high, low), (zero, zero), _add_pairs, dimensions=(1,))
    if high.size == 0:
        return zero, zero
    return high[0], low[0]


@_compensated_flat_sum.defjvp
def _compensated_flat_sum_jvp(primals, tangents):
    # The pair's value + error is the exact sum, so its derivative is the
    # plain sum's; a variadic reduce has no derivative rule of its own.
    (values,), (d_values,) = primals, tangents
    d_total = jnp.sum(d_values)
    return _compensated_flat_sum(values), (d_total, jnp.zeros_like(d_total))


def _leaf_summary(leaf) -> str:
    """``float32[4]`` for anything with a shape and dtype (tracers, ShapeDtypeStructs)."""
    try:
        dims = ",".join(str(d) for d in leaf.shape)
        return f"{np.dtype(leaf.dtype).name}[{dims}]"
    except Exception:
        return repr(leaf)


def _readings(metric: "LogLoss") -> str | None:
    """Tokens, mean nats, perplexity and bits per token of a concrete scalar
    accumulator, computed in float64 on the host; None when that cannot be done
    (tracers, batched leaves, anything not a number)."""
    try:
        leaves = [np.asarray(getattr(metric, field.name)) for field in dataclasses.fields(metric)]
        if any(leaf.shape != () for leaf in leaves):
            return None
        nll, nll_error, tokens, tokens_error = (float(leaf) for leaf in leaves)
    except Exception:  # tracers (inside jit, vmap, grad), non-addressable arrays, non-numbers
        return None
    count, total = tokens + tokens_error + 0.0, nll + nll_error  # + 0.0: no "-0" tokens
    shown = f"{count:.0f}" if math.isfinite(count) and count.is_integer() else f"{count:.7g}"
    if count == 0:
        return f"tokens={shown}, " + ("empty" if total == 0 else f"total={total:.6g} nats")
    mean = total / count
    try:
        perplexity = math.exp(mean)
    except OverflowError:  # a mean past ~709.78 nats
        perplexity = math.inf
    return (
        f"tokens={shown}, mean={mean:.6g} nats, perplexity={perplexity:.6g}, "
        f"bits_per_token={mean / math.log(2):.6g}"
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, repr=False)
class LogLoss:
    """Summed negative log-likelihood (nats) and token count, as a pytree.

    Every method is jittable and returns a new ``LogLoss``. Sums are kept as
    (value, error) pairs in float32, so the mean of 10⁸ losses matches a
    float64 sum to about 1e-7 relative, where a naive float32 sum drifts by
    orders of magnitude more.

    Its ``repr`` shows the readings (tokens, mean nats per token, perplexity,
    bits per token), computed on the host in float64; a ``LogLoss`` that holds
    tracers (printed inside ``jit`` or ``vmap``; ``jax.debug.print`` shows the
    values) or batched leaves shows the leaves' dtypes and shapes instead.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> metric = jxent.metrics.LogLoss.empty().update_from_losses(jnp.full(4, jnp.log(2.0)))
      >>> float(metric.bits_per_token()), float(metric.perplexity())
      (1.0, 2.0)
      >>> metric
      LogLoss(tokens=4, mean=0.693147 nats, perplexity=2, bits_per_token=1)
      >>> jxent.metrics.LogLoss.empty()
      LogLoss(tokens=0, empty)
    """

    nll: jax.Array
    nll_error: jax.Array
    tokens: jax.Array
    tokens_error: jax.Array

    def __repr__(self) -> str:
        readings = _readings(self)
        if readings is None:
            readings = ", ".join(
                f"{field.name}={_leaf_summary(getattr(self, field.name))}"
                for field in dataclasses.fields(self)
            )
        return f"{type(self).__name__}({readings})"

    @classmethod
    def empty(cls, dtype: jnp.dtype = jnp.float32) -> "LogLoss":
        """An accumulator with nothing in it, summing in ``dtype``.

        A 16-bit ``dtype`` is raised to float32: its counts would stop at 256
        (bfloat16) or overflow past 65504 (float16).
        """
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype must be a floating dtype, got {dtype!r}")
        zero = jnp.zeros((), jnp.promote_types(dtype, jnp.float32))
        return cls(zero, zero, zero, zero)

    def update_from_losses(
        self, losses: jax.typing.ArrayLike, *, where: jax.typing.ArrayLike | None = None
    ) -> "LogLoss":
        """Add per-token losses.

        Args:
          losses: per-token negative log-likelihoods in nats, any shape.
          where: boolean mask of the tokens that count, broadcastable to
            ``losses``' shape (it never grows it).

        Returns:
          The updated accumulator.

        Examples:
          >>> import jax.numpy as jnp, jxent
          >>> m = jxent.metrics.LogLoss.empty().update_from_losses(jnp.array([1.0, 3.0, 9.0]),
          ...     where=jnp.array([True, True, False]))
          >>> float(m.count), float(m.mean())
          (2.0, 2.0)
        """
        losses = jnp.asarray(losses, self.nll.dtype)
        if where is None:
            # A static count, split exactly into a (value, error) pair.
            value = float(np.asarray(losses.size, self.tokens.dtype))
            counts = (
                jnp.asarray(value, self.tokens.dtype),
                jnp.asarray(losses.size - value, self.tokens.dtype),
            )
        else:
            where = _token_mask(where, losses.shape, "losses")
            losses = jnp.where(where, losses, 0)
            counts = _compensated_sum(where.astype(self.tokens.dtype))
        return self.merge(LogLoss(*_compensated_sum(losses), *counts))

    def update(
        self,
        logits: jax.typing.ArrayLike,
        labels: jax.typing.ArrayLike,
        *,
        where: jax.typing.ArrayLike | None = None,
        ignore_index: int | None = None,
    ) -> "LogLoss":
        """Add the cross-entropy of ``logits [..., K]`` against integer ``labels [...]``.

        Tokens whose label is ``ignore_index``, or where the per-token ``where``
        is False, do not count. A label out of range makes the sum NaN.

        Args:
          logits: unnormalised log-probabilities ``[..., K]``.
          labels: integer labels ``[...]``.
          where: boolean mask of the tokens that count, broadcastable to
            ``labels``' shape (it never grows it).
          ignore_index: int label value of tokens that do not count, or None.

        Returns:
          The updated accumulator.

        Examples:
          >>> import jax.numpy as jnp, jxent
          >>> m = jxent.metrics.LogLoss.empty().update(jnp.zeros((3, 4)), jnp.array([0, 1, -1]),
          ...     ignore_index=-1)
          >>> float(m.count), round(float(m.perplexity()), 4)
          (2.0, 4.0)
        """
        labels = jnp.asarray(labels)
        ignore_index = check_ignore_index(ignore_index)
        keep = (
            jnp.ones(labels.shape, bool)
            if where is None
            else _token_mask(where, labels.shape, "labels")
        )
        if ignore_index is not None:
            # Compared without wrapping, whatever the label dtype.
            keep = keep & ~label_status(labels, np.iinfo(labels.dtype).max, ignore_index)[0]
        # A token that does not count is never read: its label may be anything.
        losses = softmax_cross_entropy_with_integer_labels(logits, jnp.where(keep, labels, 0))
        return self.update_from_losses(losses, where=keep)

    def merge(self, other: "LogLoss") -> "LogLoss":
        """The accumulator of both streams (associative and exact to rounding).

        Args:
          other: another accumulator.

        Returns:
          An accumulator of both.
        """
        nll = _add_pairs((self.nll, self.nll_error), (other.nll, other.nll_error))
        tokens = _add_pairs((self.tokens, self.tokens_error), (other.tokens, other.tokens_error))
        return LogLoss(*nll, *tokens)

    def psum(self, axis_name: str | tuple[str, ...]) -> "LogLoss":
        """Merge the accumulators of every device along ``axis_name`` (inside shard_map).

        Args:
          axis_name: the mesh axis (or axes) to merge over.

        Returns:
          The same accumulator on every device of the axis.

        Each device places its four scalars in its own row of an ``[n, 4]``
        array of zeros; a ``psum`` of that is exact (adding zeros rounds
        nothing) and replicated, and the rows are then summed compensated.
        """
        leaves = jnp.stack([self.nll, self.nll_error, self.tokens, self.tokens_error])
        rows = jnp.zeros((jax.lax.axis_size(axis_name), 4), leaves.dtype)
        rows = jax.lax.dynamic_update_slice(rows, leaves[None], (jax.lax.axis_index(axis_name), 0))
        rows = jax.lax.psum(rows, axis_name)
        nll = _compensated_sum(rows[:, :2])  # values and errors are all addends
        tokens = _compensated_sum(rows[:, 2:])
        return LogLoss(*nll, *tokens)

    @property
    def count(self) -> jax.Array:
        """Number of tokens accumulated."""
        return self.tokens + self.tokens_error

    def total(self) -> jax.Array:
        """Summed negative log-likelihood in nats."""
        return self.nll + self.nll_error

    def mean(self) -> jax.Array:
        """Mean negative log-likelihood per token, in nats (NaN when empty)."""
        return self.total() / self.count

    def perplexity(self) -> jax.Array:
        """``exp(mean)``."""
        return jnp.exp(self.mean())

    def bits_per_token(self) -> jax.Array:
        """``mean / ln 2``."""
        return self.mean() / math.log(2)

    def bits_per_byte(self, num_bytes: jax.typing.ArrayLike) -> jax.Array:
        r"""Total bits divided by the byte count of the evaluated text.

        .. math::
          \mathrm{bpb} = \frac{\sum_t \ell_t}{\ln 2 \cdot \mathrm{num\_bytes}}

        Args:
          num_bytes: bytes of the text the tokens encode.

        Returns:
          Bits per byte.
        """
        return self.total() / math.log(2) / jnp.asarray(num_bytes, self.nll.dtype)
