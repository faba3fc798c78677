"""The two-event (Bernoulli) measures, elementwise."""

import jax
import jax.numpy as jnp

from . import _inputs
from . import _primitives as prim
from ._units import in_base
from ._zero_safe import zero_safe_mul


def _finish(value: jax.Array, invalid: jax.Array, base: float | None) -> jax.Array:
    # A probability outside [0, 1] (so a negative one for one of the events) is NaN.
    return in_base(jnp.where(invalid, jnp.nan, value), base)


def binary_entropy(p: jax.typing.ArrayLike, *, base: float | None = None) -> jax.Array:
    r"""Entropy of a Bernoulli(p) variable, elementwise.

    .. math::
      h(p) = -p \log p - (1 - p) \log (1 - p)

    :math:`\log(1-p)` is computed as ``log1p(-p)``, so small ``p`` keeps full
    relative precision.

    Args:
      p: probabilities of the event, in [0, 1].
      base: logarithm base; None means nats.

    Returns:
      An array of the shape of ``p``.

    Examples:
      >>> import jxent
      >>> jxent.binary_entropy(0.5, base=2)
      Array(1., dtype=float32)
    """
    (p,), invalid = _inputs.binary([p], ["p"])
    return _finish(-(prim.xlogx_term(p) + prim.xlog1py(1 - p, -p)), invalid, base)


def binary_cross_entropy(
    p: jax.typing.ArrayLike, q: jax.typing.ArrayLike, *, base: float | None = None
) -> jax.Array:
    r"""Cross-entropy of Bernoulli(q) relative to Bernoulli(p), elementwise.

    .. math::
      H(p, q) = -p \log q - (1 - p) \log (1 - q)

    Args:
      p: target probabilities, in [0, 1].
      q: model probabilities, broadcastable with ``p``.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape; ``+inf`` where ``q`` gives zero mass to an event
      ``p`` does not.

    Examples:
      >>> import jxent
      >>> jxent.binary_cross_entropy(1.0, 0.5, base=2)
      Array(1., dtype=float32)
    """
    (p, q), invalid = _inputs.binary([p, q], ["p", "q"])
    return _finish(-(prim.xlogy_term(p, q) + prim.xlog1py(1 - p, -q)), invalid, base)


@jax.custom_jvp
def _binary_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    # kl_term(p, q) + kl_term(1-p, 1-q): the -p + q and -(1-p) + (1-q) they
    # add cancel, and each is >= 0, so the sum is never negative. The
    # complement's is (1-q)·g(δ) with δ = (q-p)/(1-q) = (1-p)/(1-q) - 1 and
    # g(δ) = (1+δ) log1p(δ) - δ: computed from p - q, not from 1 - p and 1 - q,
    # it keeps its digits when p and q are small.
    room = q < 1
    delta = jnp.where((p == q) | ~room, jnp.zeros_like(p), (q - p) / jnp.where(room, 1 - q, 1.0))
    complement = prim.xlog1py(1 - p, delta) - delta * (1 - q)
    small = jnp.abs(delta) < 0.25
    series = (1 - q) * prim.relative_excess_series(jnp.where(small, delta, 0.0))
    complement = jnp.where(small, series, complement)
    # q = 1: +inf unless p = 1 too.
    complement = jnp.where(room, complement, prim.kl_term(1 - p, 1 - q))
    return prim.kl_term(p, q) + complement


@_binary_kl.defjvp
def _binary_kl_jvp(primals, tangents):
    (p, q), (dp, dq) = primals, tangents
    complement_p, complement_q = 1 - p, 1 - q

    def slope(a, b):
        # d/da of a log(a/b) is log(a/b) + 1; at a = b = 0 the term jumps to
        # +inf for any a > 0, so the slope is +inf.
        return jnp.where((a == 0) & (b == 0), jnp.inf, prim.log_ratio(a, b))

    slope_p = slope(p, q) - slope(complement_p, complement_q)
    slope_q = prim.xdivy(complement_p, complement_q) - prim.xdivy(p, q)
    return _binary_kl(p, q), zero_safe_mul(dp, slope_p) + zero_safe_mul(dq, slope_q)


def binary_kl_divergence(
    p: jax.typing.ArrayLike, q: jax.typing.ArrayLike, *, base: float | None = None
) -> jax.Array:
    r"""KL divergence between Bernoulli(p) and Bernoulli(q), elementwise.

    .. math::
      D(p \| q) = p \log \frac{p}{q} + (1 - p) \log \frac{1 - p}{1 - q}

    Args:
      p: probabilities of P's event, in [0, 1].
      q: probabilities of Q's event, broadcastable with ``p``.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape, ``>= 0``.

    Examples:
      >>> import jxent
      >>> jxent.binary_kl_divergence(1.0, 0.5, base=2)
      Array(1., dtype=float32)
    """
    (p, q), invalid = _inputs.binary([p, q], ["p", "q"])
    return _finish(_binary_kl(p, q), invalid, base)
