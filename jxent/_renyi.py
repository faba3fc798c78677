"""Rényi entropy and divergence, continuous through α = 1 and exact at 0 and ∞.

On distributions both are a cumulant generating function divided by ε = α − 1:

  H_α(P) = -K(ε)/ε,  K(ε) = log E_P[e^{ε log p}]
  D_α(P‖Q) = K(ε)/ε,  K(ε) = log E_P[e^{ε log(p/q)}]

Away from α = 1 that is a log-sum-exp. Near it, K(ε)/ε = U·ψ(εU) with
U = E[x·φ(εx)], φ(x) = expm1(x)/x and ψ(y) = log1p(y)/y, which has no 0/0 and
a finite derivative in α at α = 1, where it is Shannon's entropy or KL.

Inputs are never renormalised (see _inputs). With masses s = Σp and t = Σq,
the expectation is over the weights p/s of the values as given:

  H_α(P) = -s K(ε)/ε,             K(ε) = log Σ (p/s) p^ε
  D_α(P‖Q) = s K(ε)/ε + t - s,    K(ε) = log Σ (p/s) (p/q)^ε

so that α = 1 gives -Σ p log p and Σ p log(p/q) - p + q, what `entropy` and
`kl_divergence` compute on the same values, and D_α >= 0 for every α.

The divergence, wherever it is near 0, is summed as C ψ(εy) + δ(ψ(εy) - 1) + m
with y = (C + δ)/s, C = Σ p h(log(p/q)) a sum of non-negative terms
(`log_ratio_excess`), δ = Σ (p - q) over P's support and m the mass of Q
outside it: the same value, with no cancellation between terms of both signs.

Probabilities that are 0 (and q = 0 < p) are kept out of all of that, derivatives
included; _renyi_boundary.zero_classes gives them their one-sided derivatives.
"""

import jax
import jax.numpy as jnp

from . import _inputs
from ._arguments import Axis
from ._primitives import exprel, log_ratio, log_ratio_excess, log_softmax
from ._renyi_boundary import zero_classes
from ._units import in_base
from ._zero_safe import zero_safe_mul

# |α - 1| below this uses the series form; above it, the log-sum-exp.
_SERIES_RADIUS = 0.25


def _log1p_ratio_minus_one(y: jax.Array) -> jax.Array:
    """log1p(y)/y - 1, 0 at 0, accurate near 0 (where it is about -y/2)."""
    small = jnp.abs(y) < 1e-2
    safe = jnp.where(small, 1.0, y)
    ys = jnp.where(small, y, 0.0)
    # log1p(y)/y - 1 = -y (1/2 - y (1/3 - y (1/4 - ...))), to y^8.
    series = jnp.zeros_like(ys)
    for k in range(10, 1, -1):
        series = 1 / k - ys * series
    return jnp.where(small, -ys * series, jnp.log1p(safe) / safe - 1)


def _log1p_ratio(y: jax.Array) -> jax.Array:
    """log1p(y) / y, 1 at 0, with an accurate derivative near 0."""
    return 1 + _log1p_ratio_minus_one(y)


def _log_sum_exp(x: jax.Array, keep: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """log Σ exp(x) over ``keep``; -inf when nothing is kept or every term is -inf."""
    x = jnp.where(keep, x, -jnp.inf)
    peak = jnp.max(x, axis=axes, keepdims=True)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0))
    total = jnp.sum(jnp.where(keep, jnp.exp(x - peak), 0), axis=axes)
    # -inf said directly: log's derivative at 0 would make every tangent NaN.
    log_total = jnp.where(total > 0, jnp.log(jnp.where(total > 0, total, 1.0)), -jnp.inf)
    return jnp.squeeze(peak, axes) + log_total


def _log_sum_exp_ratio(log_weights, values, epsilon, keep, axes) -> jax.Array:
    """log Σ_keep w e^{εx} / ε, the direct form of K(ε)/ε away from ε = 0.

    ``x = +inf`` adds +inf for ε > 0 and nothing for ε < 0. Where ε is 0 or
    infinite the result is a placeholder (the caller uses another form).
    """
    safe_epsilon = jnp.where((epsilon == 0) | jnp.isinf(epsilon), 1.0, epsilon)
    eps_cols = jnp.expand_dims(safe_epsilon, axes)
    finite_x = jnp.isfinite(values) & keep
    exponent = jnp.where(
        finite_x,
        jnp.where(keep, log_weights, 0.0) + eps_cols * jnp.where(finite_x, values, 0.0),
        -jnp.inf,
    )
    # x = +inf with ε > 0 makes the sum +inf: said directly, so that no
    # infinity goes through exp (its gradient there would be NaN).
    unbounded = jnp.any(keep & jnp.isposinf(values) & (eps_cols > 0), axis=axes)
    return jnp.where(unbounded, jnp.inf, _log_sum_exp(exponent, keep, axes) / safe_epsilon)


def _extreme(values, keep, axes) -> jax.Array:
    """K(ε)/ε at α = ∞: the largest x."""
    return jnp.max(jnp.where(keep, values, -jnp.inf), axis=axes)


def _cumulant_ratio(log_weights, values, alpha, keep, axes):
    """K(ε)/ε with K(ε) = log Σ_keep w e^{ε x}, ε = α - 1, w = exp(log_weights).

    Rényi entropy is -K/ε with x = log p; Rényi divergence is K/ε with
    x = log(p/q). ``x = +inf`` (q = 0 on P's support) is allowed.
    """
    epsilon = alpha - 1
    near_one = jnp.abs(epsilon) < _SERIES_RADIUS
    infinite = jnp.isinf(alpha)
    finite_x = jnp.isfinite(values) & keep
    safe_x = jnp.where(finite_x, values, 0.0)
    weights = jnp.where(keep, jnp.exp(jnp.where(keep, log_weights, 0.0)), 0.0)

    # Series form near α = 1: K/ε = U ψ(εU), U = Σ w x φ(εx). For x = +inf,
    # x φ(εx) = expm1(εx)/ε is +inf when ε >= 0 and -1/ε when ε < 0.
    eps_near = jnp.where(near_one, epsilon, 0.0)
    eps_cols = jnp.expand_dims(eps_near, axes)
    negative_eps = jnp.where(eps_cols < 0, eps_cols, -1.0)
    scaled = jnp.where(
        finite_x,
        safe_x * exprel(eps_cols * safe_x),
        jnp.where(eps_cols < 0, -1 / negative_eps, jnp.inf),
    )
    mean = jnp.sum(zero_safe_mul(weights, jnp.where(keep, scaled, 0.0)), axis=axes)
    finite_mean = jnp.isfinite(mean)
    safe_mean = jnp.where(finite_mean, mean, 0.0)
    series = jnp.where(finite_mean, safe_mean * _log1p_ratio(eps_near * safe_mean), mean)

    # Log-sum-exp form away from α = 1 (α = 0 included).
    eps_far = jnp.where(near_one | infinite, 1.0, epsilon)
    eps_far_cols = jnp.expand_dims(eps_far, axes)
    direct = _log_sum_exp_ratio(log_weights, values, eps_far, keep, axes)
    # When K is near 0 its log-sum-exp, the log of a sum near 1, loses the
    # digits of the result: K = log1p(Σ w expm1(εx) / Σ w) keeps them.
    lifted = jnp.where(
        finite_x, eps_far_cols * safe_x, jnp.where(eps_far_cols > 0, jnp.inf, -jnp.inf)
    )
    bounded = lifted < 50
    safe_lifted = jnp.where(bounded, lifted, 0.0)
    excess = jnp.sum(
        zero_safe_mul(weights, jnp.where(keep, jnp.expm1(safe_lifted), 0.0)), axis=axes
    )
    total = jnp.sum(weights, axis=axes)
    ratio = excess / jnp.where(total > 0, total, 1.0)
    use_log1p = jnp.all(bounded | ~keep, axis=axes) & (jnp.abs(ratio) < 0.5)
    direct = jnp.where(use_log1p, jnp.log1p(jnp.where(use_log1p, ratio, 0.0)) / eps_far, direct)

    value = jnp.where(near_one, series, jnp.where(infinite, _extreme(values, keep, axes), direct))
    # An empty distribution (nothing kept) has Rényi entropy 0.
    return jnp.where(jnp.any(keep, axis=axes), value, 0.0)


def _order(alpha, shape, axes, dtype) -> jax.Array:
    """α checked against [0, ∞] and broadcast to the result shape."""
    return _inputs.parameter(
        alpha,
        "alpha",
        domain=">= 0 (jnp.inf included)",
        inside=lambda a: a >= 0,
        shape=shape,
        axes=axes,
        dtype=dtype,
    )


def _log_weights(log_p, support, mass, axes) -> jax.Array:
    """log(p/s) on the support, 0 off it; ``log_p`` is 0 off the support."""
    log_mass = jnp.expand_dims(jnp.log(jnp.where(mass > 0, mass, 1.0)), axes)
    return jnp.where(support, log_p - log_mass, 0.0)


def _entropy(log_p, support, mass, alpha, axes) -> jax.Array:
    """-s K(ε)/ε, K(ε) = log Σ (p/s) e^{ε log p}; ``log_p`` is 0 off the support."""
    log_weights = _log_weights(log_p, support, mass, axes)
    return -mass * _cumulant_ratio(log_weights, log_p, alpha, support, axes)


def _divergence(p, q, x, log_p, support, sums, alpha, axes) -> jax.Array:
    """s K(ε)/ε + t - s, K(ε) = log Σ (p/s) e^{ε x}, x = log(p/q) on P's support.

    ``sums`` are s, δ = Σ (p - q) over P's support and the mass of Q outside
    it, so that t - s = off_support - δ. ``log_p`` is 0 off the support.
    """
    mass, delta, off_support = sums
    epsilon = alpha - 1
    finite_alpha = jnp.isfinite(alpha)
    safe_epsilon = jnp.where(finite_alpha, epsilon, 0.0)
    eps_cols = jnp.expand_dims(safe_epsilon, axes)
    # Excess form, for α near 1 and wherever D is near 0 (see the module doc).
    finite_x = support & jnp.isfinite(x)
    bounded = jnp.where(finite_x, eps_cols * jnp.where(finite_x, x, 0.0), 0.0) < 50
    alpha_cols = jnp.expand_dims(jnp.where(finite_alpha, alpha, 1.0), axes)
    terms = log_ratio_excess(p, q, jnp.where(bounded, x, 0.0), alpha_cols)
    excess = jnp.sum(jnp.where(support, terms, 0.0), axis=axes)
    infinite = jnp.isposinf(excess)
    excess = jnp.where(infinite, 0.0, excess)
    z = safe_epsilon * (excess + delta) / jnp.where(mass > 0, mass, 1.0)
    # z <= -1 only when Q gives P's support no mass (α < 1): D = +inf.
    reachable = z > -1
    psi_minus_one = _log1p_ratio_minus_one(jnp.where(reachable, z, 0.0))
    small = excess * (1 + psi_minus_one) + delta * psi_minus_one + off_support
    small = jnp.where(infinite | ~reachable, jnp.inf, small)
    all_bounded = jnp.all(bounded | ~support, axis=axes)
    use_small = all_bounded & ((jnp.abs(epsilon) < _SERIES_RADIUS) | (jnp.abs(z) < 0.5))
    # Log-sum-exp form otherwise (α = 0 and ∞ included): K is then far from
    # 0 (or some e^{εx} would overflow), and K/ε loses nothing, near α = 1 too.
    log_weights = _log_weights(log_p, support, mass, axes)
    ratio = _log_sum_exp_ratio(log_weights, x, epsilon, support, axes)
    ratio = jnp.where(finite_alpha, ratio, _extreme(x, support, axes))
    ratio = jnp.where(jnp.any(support, axis=axes), ratio, 0.0)
    # +inf is said directly: mass · inf would make the gradient of mass NaN.
    finite_ratio = jnp.isfinite(ratio)
    far = mass * jnp.where(finite_ratio, ratio, 0.0) + off_support - delta
    far = jnp.where(finite_ratio, far, ratio)
    return jnp.where(finite_alpha & use_small, small, far)


def _nan_for_nan_order(value, alpha):
    # A traced order outside its domain arrives as NaN (see _inputs.parameter).
    return jnp.where(jnp.isnan(alpha), jnp.nan, value)


def renyi_entropy(
    probs: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi entropy of order α.

    .. math::
      H_\alpha(P) = \frac{1}{1-\alpha} \log \sum_i p_i^\alpha

    Continuous through α = 1 (Shannon entropy) with a finite derivative in α
    there; α = 0 gives the log of the support size, α = 2 the collision
    entropy, α = ∞ the min-entropy :math:`-\log \max_i p_i`. ``alpha`` may be
    a traced array (learned, or swept with ``vmap``); terms with
    :math:`p_i = 0` drop out. The derivative in a :math:`p_i = 0` is the
    one-sided one (``+inf`` for α ≤ 1).

    ``probs`` is used as given, never renormalised: with :math:`s = \sum_i
    p_i` it is :math:`\frac{s}{1-\alpha} \log \frac{\sum_i p_i^\alpha}{s}`,
    which at α = 1 is :math:`-\sum_i p_i \log p_i`, :func:`entropy` of the
    same values.

    Args:
      probs: probabilities, classes along ``axis``.
      alpha: order, ``>= 0`` (``jnp.inf`` allowed); broadcastable to the
        result. A concrete value outside raises ValueError; a traced one
        gives NaN (an error under the validation mode).
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      ``probs`` reduced over ``axis``; NaN for a negative or NaN probability.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> p = jnp.array([0.5, 0.25, 0.25, 0.0])
      >>> [round(float(jxent.renyi_entropy(p, a, base=2)), 4) for a in (0.0, 1.0, 2.0, jnp.inf)]
      [1.585, 1.5, 1.415, 1.0]
    """
    dist = _inputs.probabilities([probs], ["probs"], axis=axis, where=where, fill=[0.0])
    (p,) = dist.arrays
    alpha = _order(alpha, p.shape, dist.axes, p.dtype)
    support = p > 0
    # Zero probabilities are differentiated by zero_classes alone.
    p_in = jnp.where(p == 0, 0.0, p)
    log_p = jnp.where(support, jnp.log(jnp.where(support, p_in, 1.0)), 0.0)
    mass = dist.total(p_in)
    value = _entropy(log_p, support, mass, alpha, dist.axes)
    r = -value / jnp.where(mass > 0, mass, 1.0)
    value = value + zero_classes(dist.axes, dist.mask, p, None, r, mass, alpha)
    return dist.finish(_nan_for_nan_order(value, alpha), base)


def renyi_divergence(
    p: jax.typing.ArrayLike,
    q: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi divergence of order α.

    .. math::
      D_\alpha(P \| Q) = \frac{1}{\alpha-1} \log \sum_i p_i^\alpha q_i^{1-\alpha}

    Continuous through α = 1 (KL divergence) with a finite derivative in α
    there; α = 0 gives :math:`-\log Q(\mathrm{supp}\, P)`, α = ∞ the
    max-divergence :math:`\log \max_i p_i/q_i`. Non-negative and
    non-decreasing in α; ``+inf`` for α ≥ 1 when Q misses P's support.
    Derivatives in probabilities that are 0 are one-sided (``±inf`` where
    that limit is infinite, 0 where the value is ``+inf`` and stays so).

    The inputs are used as given, never renormalised: with :math:`s = \sum_i
    p_i`, :math:`t = \sum_i q_i` it is :math:`\frac{s}{\alpha-1} \log
    \frac{\sum_i p_i^\alpha q_i^{1-\alpha}}{s} + t - s`, ≥ 0 for any
    non-negative input, and at α = 1 :math:`\sum_i p_i \log(p_i/q_i) - p_i +
    q_i`, :func:`kl_divergence` of the same values. Where it is near 0 it is
    summed from non-negative terms, so it is never negative.

    Args:
      p: probabilities of P.
      q: probabilities of Q, broadcastable with ``p``.
      alpha: order, ``>= 0`` (``jnp.inf`` allowed); broadcastable to the
        result. A concrete value outside raises ValueError; a traced one
        gives NaN (an error under the validation mode).
      axis: the class axis or axes.
      where: boolean mask of the classes to include.
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``; NaN for a negative or NaN
      probability.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.renyi_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]), 2.0, base=2))
      1.0
    """
    dist = _inputs.probabilities([p, q], ["p", "q"], axis=axis, where=where, fill=[0.0, 0.0])
    p, q = dist.arrays
    alpha = _order(alpha, p.shape, dist.axes, p.dtype)
    support = p > 0
    covered = support & (q > 0)
    # Zero probabilities (p = 0, and q = 0 < p) are differentiated by zero_classes alone.
    p_in, q_in = jnp.where(p == 0, 0.0, p), jnp.where(support & ~covered, 0.0, q)
    ratio = log_ratio(jnp.where(covered, p_in, 1.0), jnp.where(covered, q_in, 1.0))
    x = jnp.where(covered, ratio, jnp.where(support, jnp.inf, 0.0))
    log_p = jnp.where(support, jnp.log(jnp.where(support, p_in, 1.0)), 0.0)
    sums = (
        dist.total(p_in),
        dist.total(jnp.where(support, p_in - q_in, 0.0)),
        dist.total(jnp.where(support, 0.0, q_in)),
    )
    value = _divergence(p_in, q_in, x, log_p, support, sums, alpha, dist.axes)
    # r = log(S/s)/ε, from D = s r + t - s (t - s is the mass off P's support less δ).
    mass, delta, off_support = sums
    r = jnp.where(jnp.isfinite(value), value, 0.0) - (off_support - delta)
    r = jnp.where(value == jnp.inf, jnp.inf, r / jnp.where(mass > 0, mass, 1.0))
    value = value + zero_classes(dist.axes, dist.mask, p, q, r, mass, alpha)
    return dist.finish(_nan_for_nan_order(value, alpha), base)


def renyi_entropy_from_logits(
    logits: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi entropy of order α of :math:`\mathrm{softmax}(z)`.

    See :func:`renyi_entropy`; ``-inf`` logits and masked classes are outside
    the support.

    Args:
      logits: unnormalised log-probabilities.
      alpha: order, ``>= 0`` (see :func:`renyi_entropy`); broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from the softmax).
      base: logarithm base; None means nats.

    Returns:
      ``logits`` reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.renyi_entropy_from_logits(jnp.array([0.0, 0.0, -jnp.inf]), 3.0, base=2))
      1.0
    """
    logits, axes = _inputs.logits(logits, "logits", axis=axis, where=where)
    log_p = log_softmax(logits, axes)
    support = log_p > -jnp.inf
    alpha = _order(alpha, logits.shape, axes, logits.dtype)
    value = _entropy(jnp.where(support, log_p, 0.0), support, jnp.ones_like(alpha), alpha, axes)
    value = _inputs.nan_where_nan(value, [logits], axes)
    return in_base(_nan_for_nan_order(value, alpha), base)


def renyi_divergence_from_logits(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    *,
    axis: Axis = -1,
    where: jax.typing.ArrayLike | None = None,
    base: float | None = None,
) -> jax.Array:
    r"""Rényi divergence of order α between two softmax distributions.

    See :func:`renyi_divergence`.

    Args:
      p_logits: logits of P.
      q_logits: logits of Q, broadcastable with ``p_logits``.
      alpha: order, ``>= 0`` (see :func:`renyi_divergence`); broadcastable to the result.
      axis: the class axis or axes.
      where: boolean mask of the classes to include (excluded from both softmaxes).
      base: logarithm base; None means nats.

    Returns:
      The broadcast shape reduced over ``axis``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> d = jxent.renyi_divergence_from_logits(jnp.array([0.0, -jnp.inf]), jnp.zeros(2), 0.5)
      >>> round(float(d), 6)  # log 2: Q puts half its mass on P's support
      0.693147
    """
    log_p, log_q, axes = _inputs.log_softmax_pair(p_logits, q_logits, axis=axis, where=where)
    alpha = _order(alpha, log_p.shape, axes, log_p.dtype)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    # P's support is where its logit is finite: a class whose probability
    # underflows can still dominate Σ p^α q^(1-α) (α < 1), and the log-sum-exp
    # form reads it from its log.
    support = log_p > -jnp.inf
    covered = support & (log_q > -jnp.inf)
    x = jnp.where(covered, log_p - jnp.where(covered, log_q, 0.0), jnp.where(support, jnp.inf, 0.0))
    # Both are distributions: s = t = 1, and Σ (p - q) over P's support is
    # exactly the mass of Q outside it.
    off_support = jnp.sum(jnp.where(support, 0.0, q), axis=axes)
    sums = (jnp.ones_like(off_support), off_support, off_support)
    value = _divergence(p, q, x, jnp.where(support, log_p, 0.0), support, sums, alpha, axes)
    # An empty P (every logit -inf or masked) has divergence 0, as in KL.
    value = jnp.where(jnp.any(support, axis=axes), value, 0.0)
    value = _inputs.nan_where_nan(value, [log_p, log_q], axes)
    return in_base(_nan_for_nan_order(value, alpha), base)
