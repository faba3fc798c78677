"""The two-event (Bernoulli) measures, elementwise."""

import jax
import jax.numpy as jnp

from . import _primitives as prim
from ._checks import as_float_array, broadcast_pair, in_base
from ._zero_safe import zero_safe_mul


def _pair(p, q) -> tuple[jax.Array, jax.Array]:
    return broadcast_pair(as_float_array(p, "p"), as_float_array(q, "q"), ("p", "q"))


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
    p = as_float_array(p, "p")
    return in_base(-(prim._xlogx(p) + prim.xlog1py(1 - p, -p)), base)


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
    p, q = _pair(p, q)
    return in_base(-(prim._xlogy(p, q) + prim.xlog1py(1 - p, -q)), base)


@jax.custom_jvp
def _binary_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    # log((1-p)/(1-q)) = log1p((q-p)/(1-q)) keeps precision when p, q are small.
    ratio_minus_one = jnp.where(p == q, jnp.zeros_like(p), (q - p) / (1 - q))
    return prim.rel_entr(p, q) + prim.xlog1py(1 - p, ratio_minus_one)


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
    p, q = _pair(p, q)
    return in_base(_binary_kl(p, q), base)
