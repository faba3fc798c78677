"""Elementwise sigmoid losses: binary cross-entropy and focal loss."""

import jax
import jax.numpy as jnp

from .. import _validation
from .._arguments import as_float_array, broadcast_pair, broadcasts_into, real_array
from .._zero_safe import zero_safe_mul


def _logits_and_labels(logits, labels) -> tuple[jax.Array, jax.Array]:
    logits = as_float_array(logits, "logits")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        labels = labels.astype(logits.dtype)
    labels = as_float_array(labels, "labels")
    _validation.check_no_nan(logits, "logits")
    return broadcast_pair(logits, labels, ("logits", "labels"))


def _option(value, name: str, shape: tuple[int, ...], dtype, domain: str = "", inside=None):
    """An option that multiplies the losses elementwise, as an array of ``dtype``
    that broadcasts to the loss ``shape`` without growing it."""
    if inside is not None:
        value = _validation.option_in_domain(value, name, domain, inside)
    value = real_array(value, name, dtype)
    if not broadcasts_into(value.shape, shape):
        raise ValueError(
            f"{name} of shape {value.shape} does not broadcast to the loss shape {shape}"
        )
    return value


def sigmoid_binary_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    pos_weight: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    r"""Sigmoid (logistic) cross-entropy, elementwise, finite at ``±inf`` logits.

    .. math::
      \ell = -w_+\, y \log \sigma(z) - (1 - y) \log (1 - \sigma(z))

    A drop-in for ``optax.losses.sigmoid_binary_cross_entropy``; a label of 1
    with a ``+inf`` logit (or 0 with ``-inf``) gives 0, not NaN.

    Args:
      logits: logits of the positive event.
      labels: targets in [0, 1], broadcastable with ``logits``.
      pos_weight: weight :math:`w_+` of the positive term, as PyTorch's
        ``BCEWithLogitsLoss(pos_weight=...)``: a number, or an array that
        broadcasts to the loss shape (``[K]`` for one weight per class).

    Returns:
      Losses of the broadcast shape.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.sigmoid_binary_cross_entropy(jnp.array([jnp.inf, 0.0]), jnp.ones(2))
      Array([0.       , 0.6931472], dtype=float32)
    """
    logits, labels = _logits_and_labels(logits, labels)
    if pos_weight is not None:
        pos_weight = _option(pos_weight, "pos_weight", labels.shape, labels.dtype)
    positive = labels if pos_weight is None else labels * pos_weight
    # Subtracting from 0 (not negating) keeps an exact fit at +0, not -0.
    return (
        0.0
        - zero_safe_mul(positive, jax.nn.log_sigmoid(logits))
        - zero_safe_mul(1 - labels, jax.nn.log_sigmoid(-logits))
    )


def _power(base: jax.Array, exponent: jax.Array) -> jax.Array:
    # base ** exponent for base in [0, 1], with 0 ** 0 = 1 and a derivative
    # that is 0, not NaN, at base = 0.
    positive = base > 0
    safe_base = jnp.where(positive, base, 1)
    at_zero = jnp.where(exponent == 0, 1.0, 0.0).astype(base.dtype)
    return jnp.where(positive, safe_base**exponent, at_zero)


def sigmoid_focal_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    alpha: jax.typing.ArrayLike | None = None,
    gamma: jax.typing.ArrayLike = 2.0,
) -> jax.Array:
    r"""Focal loss: sigmoid cross-entropy scaled by :math:`(1 - p_t)^\gamma`.

    .. math::
      \ell = \alpha_t (1 - p_t)^\gamma\, \mathrm{BCE}(z, y), \qquad
      1 - p_t = (1 - y)\,\sigma(z) + y\,\sigma(-z)

    A drop-in for ``optax.losses.sigmoid_focal_loss``, with ``alpha`` and
    ``gamma`` as there.

    ``alpha`` and ``gamma`` may be arrays that broadcast to the loss shape, and
    may be traced (``jit`` arguments); a concrete value outside its domain
    raises ValueError, a traced one gives NaN (an error under
    :func:`jxent.checked`).

    Args:
      logits: logits of the positive event.
      labels: targets in [0, 1], broadcastable with ``logits``.
      alpha: weight of the positive class in [0, 1], or None for no weighting.
      gamma: focusing exponent, ``>= 0``.

    Returns:
      Losses of the broadcast shape.

    References:
      Lin et al., `Focal Loss for Dense Object Detection
      <https://arxiv.org/abs/1708.02002>`_, 2017.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> jxent.losses.sigmoid_focal_loss(jnp.array([0.0]), jnp.array([1.0]), gamma=0.0)
      Array([0.6931472], dtype=float32)
    """
    logits, labels = _logits_and_labels(logits, labels)
    shape, dtype = logits.shape, logits.dtype
    gamma = _option(gamma, "gamma", shape, dtype, "non-negative", lambda g: g >= 0)
    if alpha is not None:
        alpha = _option(alpha, "alpha", shape, dtype, "in [0, 1]", lambda a: (a >= 0) & (a <= 1))
    cross_entropy = sigmoid_binary_cross_entropy(logits, labels)
    miss = (1 - labels) * jax.nn.sigmoid(logits) + labels * jax.nn.sigmoid(-logits)
    loss = zero_safe_mul(cross_entropy, _power(miss, gamma))
    if alpha is None:
        return loss
    return (alpha * labels + (1 - alpha) * (1 - labels)) * loss
