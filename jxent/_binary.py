"""The two-event (Bernoulli) measures, elementwise."""

import math

import jax
import jax.numpy as jnp

from . import _inputs, _validation
from . import _primitives as prim
from ._arguments import as_float_array, broadcast_pair
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


# --------------------------------------------------------------------------- from logits
#
# With p = σ(l): log p = -softplus(-l), log(1 - p) = -softplus(l). Each measure is a
# sum of terms >= 0 made of σ and softplus, each to full relative precision for any
# logit, ±inf included (+inf is p = 1). The derivative rules use σ(l)σ(-l) = p(1 - p),
# never 1 - σ(l), which is 0 in float32 from l ≈ 17 on.


def _sigmoid_value(x: jax.Array) -> jax.Array:
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1.0, e) / (1 + e)


def _softplus_value(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@jax.custom_jvp
def _sigmoid(x: jax.Array) -> jax.Array:
    return _sigmoid_value(x)


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _sigmoid(x), zero_safe_mul(dx, _variance(x))


def _variance(x: jax.Array) -> jax.Array:
    """σ(x)σ(-x) = p(1 - p), the slope of σ: 0 at ±inf."""
    return _sigmoid(x) * _sigmoid(-x)


def _x_softplus(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x·softplus(y) = -x log σ(-y)``, 0 where x = 0 whatever y is (NaN stays NaN)."""
    value = x * _softplus_value(y)
    return jnp.where((x == 0) & ~jnp.isnan(y), jnp.zeros_like(value), value)


@jax.custom_jvp
def _cross_entropy_of_logit(p: jax.Array, m: jax.Array) -> jax.Array:
    return _x_softplus(p, -m) + _x_softplus(1 - p, m)


@_cross_entropy_of_logit.defjvp
def _cross_entropy_of_logit_jvp(primals, tangents):
    # ∂p = softplus(-m) - softplus(m) = -m exactly (±inf at m = ∓inf), and
    # ∂m = σ(m) - p, taken as (1 - p) - σ(-m) for m > 0, where σ(m) rounds to 1.
    (p, m), (dp, dm) = primals, tangents
    slope_m = jnp.where(m > 0, (1 - p) - _sigmoid(-m), _sigmoid(m) - p)
    tangent = zero_safe_mul(dp, -m) + zero_safe_mul(dm, slope_m)
    return _cross_entropy_of_logit(p, m), tangent


@jax.custom_jvp
def _weighted_variance(x: jax.Array) -> jax.Array:
    """x σ(x)σ(-x), minus the slope of the binary entropy at logit x: 0 at ±inf."""
    value = x * _sigmoid_value(x) * _sigmoid_value(-x)
    return jnp.where(jnp.isinf(x), jnp.zeros_like(value), value)


@_weighted_variance.defjvp
def _weighted_variance_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    # d/dx (x v) = v + x v', v' = v (σ(-x) - σ(x)) = -v tanh(x/2): finite everywhere.
    slope = _variance(x) - _weighted_variance(x) * jnp.tanh(x / 2)
    return _weighted_variance(x), zero_safe_mul(dx, slope)


@jax.custom_jvp
def _entropy_of_logit(x: jax.Array) -> jax.Array:
    # h is even: with a = |x|, h = softplus(-a) + a σ(-a) ≈ (1 + a) e^{-a} for large a.
    a = jnp.abs(x)
    e = jnp.exp(-a)
    return jnp.log1p(e) + jnp.where(jnp.isinf(a), 0.0, a) * e / (1 + e)


@_entropy_of_logit.defjvp
def _entropy_of_logit_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _entropy_of_logit(x), -zero_safe_mul(dx, _weighted_variance(x))


@jax.custom_jvp
def _sigmoid_difference(a: jax.Array, b: jax.Array) -> jax.Array:
    """σ(b) - σ(a) = σ(a)σ(-b)·expm1(b - a): a product, exact when a ≈ b."""
    d = b - a
    near = jnp.abs(d) <= 30
    product = _sigmoid_value(a) * _sigmoid_value(-b) * jnp.expm1(jnp.where(near, d, 0.0))
    # Far apart the difference does not cancel, taken on the side of the smaller values.
    upper = _sigmoid_value(-a) - _sigmoid_value(-b)
    far = jnp.where(a + b >= 0, upper, _sigmoid_value(b) - _sigmoid_value(a))
    return jnp.where(near, product, far)


@_sigmoid_difference.defjvp
def _sigmoid_difference_jvp(primals, tangents):
    (a, b), (da, db) = primals, tangents
    tangent = zero_safe_mul(db, _variance(b)) - zero_safe_mul(da, _variance(a))
    return _sigmoid_difference(a, b), tangent


def _softplus_difference(x: jax.Array, y: jax.Array) -> jax.Array:
    """softplus(y) - softplus(x) = log1p(σ(x)·expm1(y - x)), exact when x ≈ y."""
    d = y - x
    near = jnp.abs(d) <= 30
    up = jnp.where(near & (d >= 0), d, 0.0)
    down = jnp.where(near & (d < 0), -d, 0.0)
    # The argument of log1p is kept >= 0: from the lower of x and y.
    close = jnp.where(
        d >= 0,
        jnp.log1p(_sigmoid_value(x) * jnp.expm1(up)),
        -jnp.log1p(_sigmoid_value(y) * jnp.expm1(down)),
    )
    return jnp.where(near, close, _softplus_value(y) - _softplus_value(x))


def _excess(x: jax.Array, y: jax.Array, log_ratio: jax.Array) -> jax.Array:
    """x log(x/y) - x + y = y·ψ(ℓ) >= 0 given ℓ = log(x/y), ψ(ℓ) = ℓe^ℓ - e^ℓ + 1 =
    Σ_{n≥2} (n-1) ℓ^n / n!: the series for |ℓ| <= 1, where the closed form cancels."""
    small = jnp.abs(log_ratio) <= 1
    u = jnp.where(small, log_ratio, 0.0)
    # Terms up to n = 20 (float64) or 13 (float32): the next are < 2^-56 (2^-28) of ℓ².
    psi = jnp.zeros_like(u)
    for k in range(18 if jnp.finfo(u.dtype).bits > 32 else 11, -1, -1):
        psi = psi * u + (k + 1) / math.factorial(k + 2)
    series = y * (u * u * psi)
    # x log(x/y) is 0 where x = 0, unless ℓ = +inf (y = 0 from an infinite
    # logit): x then comes from a finite logit, merely underflowed, and the term is +inf.
    x_log = jnp.where(log_ratio == jnp.inf, jnp.inf, jnp.where(x == 0, 0.0, x * log_ratio))
    return jnp.where(small, series, x_log - x + y)


@jax.custom_jvp
def _kl_of_logits(a: jax.Array, b: jax.Array) -> jax.Array:
    # D = [p log(p/q) - p + q] + [(1-p) log((1-p)/(1-q)) - (1-p) + (1-q)]: the
    # added masses cancel, each bracket is >= 0, and each is computed from its
    # log-ratio in logit space, so no digit is lost to 1 - σ.
    log_p_over_q = _softplus_difference(-a, -b)
    log_complements = _softplus_difference(a, b)
    value = _excess(_sigmoid_value(a), _sigmoid_value(b), log_p_over_q)
    value = value + _excess(_sigmoid_value(-a), _sigmoid_value(-b), log_complements)
    value = jnp.where(a == b, jnp.zeros_like(value), value)  # ±inf included
    return jnp.where(jnp.isnan(a) | jnp.isnan(b), jnp.nan, value)


@_kl_of_logits.defjvp
def _kl_of_logits_jvp(primals, tangents):
    # D is the Bregman divergence of softplus: softplus(b) - softplus(a) - σ(a)(b - a),
    # so ∂D/∂a = -σ(a)σ(-a)(b - a) and ∂D/∂b = σ(b) - σ(a).
    (a, b), (da, db) = primals, tangents
    tangent = zero_safe_mul(da, _kl_slope_a(a, b)) + zero_safe_mul(db, _sigmoid_difference(a, b))
    return _kl_of_logits(a, b), tangent


@jax.custom_jvp
def _kl_slope_a(a: jax.Array, b: jax.Array) -> jax.Array:
    """∂D/∂a = -σ(a)σ(-a)(b - a): 0 where σ(a)σ(-a) = 0, whatever b is."""
    variance = _sigmoid_value(a) * _sigmoid_value(-a)
    delta = jnp.where((a == b) & jnp.isinf(a), jnp.zeros_like(a), b - a)
    return -jnp.where((variance == 0) & ~jnp.isnan(delta), 0.0, variance * delta)


@_kl_slope_a.defjvp
def _kl_slope_a_jvp(primals, tangents):
    # With v = σ(a)σ(-a), v' = -v tanh(a/2): ∂/∂a = v - tanh(a/2)·slope, ∂/∂b = -v,
    # coefficients of the primals. Differentiated through the product instead,
    # reverse mode would meet b - a = ±inf with an infinite cotangent (inf - inf).
    (a, b), (da, db) = primals, tangents
    slope = _kl_slope_a(a, b)
    variance = _variance(a)
    d_a = variance - zero_safe_mul(jnp.tanh(a / 2), slope)
    return slope, zero_safe_mul(da, d_a) - zero_safe_mul(db, variance)


def _logits(values: jax.typing.ArrayLike, name: str) -> jax.Array:
    values = as_float_array(values, name)
    _validation.check_no_nan(values, name)
    return values


def binary_entropy_from_logits(
    logits: jax.typing.ArrayLike, *, base: float | None = None
) -> jax.Array:
    r"""Entropy of a Bernoulli(σ(l)) variable, from its logit ``l``, elementwise.

    .. math::
      h(l) = \sigma(l)\,\mathrm{softplus}(-l) + \sigma(-l)\,\mathrm{softplus}(l),
      \qquad \frac{dh}{dl} = -l\,\sigma(l)\,\sigma(-l)

    Computed in log space: at ``l = 30`` it is :math:`\approx 31 e^{-30}` to
    float32 precision (``binary_entropy(sigmoid(30.))`` is 0). ``±inf`` logits
    are the certain events (here ``+inf`` is not NaN, as it is for a softmax):
    entropy 0 with derivative 0.

    Args:
      logits: logits of the event (``±inf`` allowed).
      base: logarithm base; None means nats.

    Returns:
      An array of the shape of ``logits``; NaN where a logit is NaN.

    Examples:
      >>> import jxent
      >>> jxent.binary_entropy_from_logits(0.0, base=2)
      Array(1., dtype=float32)
    """
    return in_base(_entropy_of_logit(_logits(logits, "logits")), base)


def binary_cross_entropy_from_logits(
    p: jax.typing.ArrayLike, q_logits: jax.typing.ArrayLike, *, base: float | None = None
) -> jax.Array:
    r"""Cross-entropy of Bernoulli(σ(m)) relative to Bernoulli(p), elementwise.

    .. math::
      H(p, \sigma(m)) = p\,\mathrm{softplus}(-m) + (1 - p)\,\mathrm{softplus}(m)

    A term with zero weight is 0 whatever ``m`` is, so ``p = 0`` at
    ``m = -inf`` gives 0, and ``p > 0`` at ``m = -inf`` gives ``+inf``, never
    NaN. Derivatives: :math:`\partial_p = -m`, :math:`\partial_m = \sigma(m) - p`.

    Args:
      p: target probabilities, in [0, 1].
      q_logits: model logits (``±inf`` allowed), broadcastable with ``p``.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape; NaN where ``p`` is outside [0, 1] or either is NaN.

    Examples:
      >>> import jxent
      >>> jxent.binary_cross_entropy_from_logits(1.0, 0.0, base=2)
      Array(1., dtype=float32)
    """
    p, m = broadcast_pair(as_float_array(p, "p"), _logits(q_logits, "q_logits"), ("p", "q_logits"))
    (p,), invalid = _inputs.binary([p], ["p"])
    return _finish(_cross_entropy_of_logit(p, m), invalid, base)


def binary_kl_divergence_from_logits(
    p_logits: jax.typing.ArrayLike, q_logits: jax.typing.ArrayLike, *, base: float | None = None
) -> jax.Array:
    r"""KL divergence between Bernoulli(σ(a)) and Bernoulli(σ(b)), from logits, elementwise.

    .. math::
      D(a \| b) = \mathrm{softplus}(b) - \mathrm{softplus}(a) - \sigma(a)(b - a)

    (the Bregman divergence of softplus), computed as two terms ``>= 0``, so it
    keeps its relative precision when ``a ≈ b`` and at large logits. Equal
    logits give 0, ``±inf`` included; a finite logit against an infinite one
    ``+inf``. Derivatives: :math:`\partial_a = -\sigma(a)\sigma(-a)(b - a)`
    (0 at ``a = ±inf``), :math:`\partial_b = \sigma(b) - \sigma(a)`.

    Args:
      p_logits: logits of P's event (``±inf`` allowed).
      q_logits: logits of Q's event, broadcastable with ``p_logits``.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape, ``>= 0``; NaN where a logit is NaN.

    Examples:
      >>> import jxent
      >>> jxent.binary_kl_divergence_from_logits(float("inf"), 0.0, base=2)
      Array(1., dtype=float32)
    """
    a, b = _logits(p_logits, "p_logits"), _logits(q_logits, "q_logits")
    a, b = broadcast_pair(a, b, ("p_logits", "q_logits"))
    return in_base(_kl_of_logits(a, b), base)
