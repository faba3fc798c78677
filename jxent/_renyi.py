"""Rényi entropy and divergence, continuous through α = 1 and exact at 0 and ∞.

On distributions both are a cumulant generating function divided by ε = α − 1:

  H_α(P) = -K(ε)/ε,  K(ε) = log E_P[e^{ε log p}]
  D_α(P‖Q) = K(ε)/ε,  K(ε) = log E_P[e^{ε log(p/q)}]

Where K is near 0 (α near 1, and elsewhere), K(ε)/ε = U·ψ(εU) with
U = E[x·φ(εx)], φ(x) = expm1(x)/x and ψ(y) = log1p(y)/y, which has no 0/0 and
a finite derivative in α at α = 1, where it is Shannon's entropy or KL. Where
K is far from 0, K/ε is a log-sum-exp divided by ε, which loses nothing.

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

From probabilities the terms are _renyi_boundary's, differentiated in closed
form (no slope 1/p anywhere: see there); from logits everything is in log space
(log p = z - logsumexp z: a probability that underflows keeps its log).
Probabilities that are 0 (and q = 0 < p) are kept out of all of that, derivatives
included; _renyi_boundary.zero_classes gives them their one-sided derivatives.
"""

import jax
import jax.numpy as jnp

from . import _inputs
from ._arguments import Axis
from ._primitives import exprel, log_ratio, log_ratio_excess, log_softmax
from ._renyi_boundary import (
    excess_term,
    log1p_ratio_minus_one,
    power_term,
    shifted_log_sum,
    zero_classes,
)
from ._units import in_base


def _log_sum_exp(exponents, keep, axes) -> jax.Array:
    """log Σ_keep e^{exponents}, for exponents whose own tangents are moderate (logits)."""
    exponents = jnp.where(keep, exponents, 0.0)
    return shifted_log_sum(lambda shift: jnp.exp(exponents - shift), exponents, keep, axes)


def _extreme(values, keep, axes) -> jax.Array:
    """K(ε)/ε at α = ∞: the largest x."""
    return jnp.max(jnp.where(keep, values, -jnp.inf), axis=axes)


def _cumulant_ratio(x, keep, alpha, axes, mean, log_sum):
    """K(ε)/ε with K(ε) = log Σ_keep w e^{εx}, ε = α - 1, weights w summing to 1.

    ``mean(ok, eps_cols)`` is U = Σ_ok w x φ(εx) (εx < 50 on ``ok``),
    ``log_sum(alpha_cols)`` is K(ε): the caller sums its own terms, each with
    derivatives that suit its inputs. Rényi entropy is -K/ε with x = log p.
    """
    infinite = jnp.isinf(alpha)
    epsilon = jnp.where(infinite, 0.0, alpha - 1)
    eps_cols = jnp.expand_dims(epsilon, axes)
    ok = keep & (eps_cols * jnp.where(keep, x, 0.0) < 50)
    mean_value = mean(ok, eps_cols)
    # K/ε = U ψ(εU) when K is near 0 (its log-sum-exp, the log of a sum near 1,
    # would lose the digits of the result), near α = 1 included: no 0/0.
    small = jnp.all(ok | ~keep, axis=axes) & ~infinite & (jnp.abs(epsilon * mean_value) < 0.5)
    y = jnp.where(small, epsilon * mean_value, 0.0)
    series = jnp.where(small, mean_value, 0.0) * (1 + log1p_ratio_minus_one(y))
    # The log-sum-exp form otherwise (α = 0 included).
    alpha_cols = jnp.expand_dims(jnp.where(infinite, 2.0, alpha), axes)
    direct = log_sum(alpha_cols) / jnp.where(epsilon == 0, 1.0, epsilon)
    value = jnp.where(small, series, jnp.where(infinite, _extreme(x, keep, axes), direct))
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


def _safe_log(x: jax.Array) -> jax.Array:
    return jnp.log(jnp.where(x > 0, x, 1.0))


def _entropy(p, support, mass, alpha, axes) -> jax.Array:
    """-s K(ε)/ε, K(ε) = log Σ (p/s) p^ε, from probabilities (0 off the support)."""
    one = jnp.ones_like(p)
    p_in = jnp.where(support, p, 1.0)
    x = jnp.where(support, log_ratio(p_in, one), 0.0)
    safe_mass = jnp.where(mass > 0, mass, 1.0)

    def mean(ok, eps_cols):
        terms = excess_term(False, jnp.where(ok, p, 1.0), one, eps_cols + 1)
        return jnp.sum(jnp.where(ok, terms, 0.0), axis=axes) / safe_mass

    def log_sum(alpha_cols):
        exponents = jax.lax.stop_gradient(jnp.log(p_in) + (alpha_cols - 1) * x)
        terms = lambda shift: power_term(0, 0, p_in, one, alpha_cols, shift)  # noqa: E731
        return shifted_log_sum(terms, exponents, support, axes) - _safe_log(mass)

    return -mass * _cumulant_ratio(x, support, alpha, axes, mean, log_sum)


def _entropy_of_logits(log_p, support, alpha, axes) -> jax.Array:
    """-K(ε)/ε, K(ε) = log Σ p e^{ε log p}, in log space (``log_p`` 0 off the support)."""
    weights = jnp.where(support, jnp.exp(log_p), 0.0)

    def mean(ok, eps_cols):
        x = jnp.where(ok, log_p, 0.0)
        return jnp.sum(jnp.where(ok, weights * x * exprel(eps_cols * x), 0.0), axis=axes)

    def log_sum(alpha_cols):
        return _log_sum_exp(alpha_cols * log_p, support, axes)

    return -_cumulant_ratio(log_p, support, alpha, axes, mean, log_sum)


def _divergence(x, support, covered, sums, alpha, axes, excess, log_sum) -> jax.Array:
    """s K(ε)/ε + t - s, K(ε) = log Σ (p/s) e^{ε x}, x = log(p/q) on P's support
    (+inf where q = 0 < p).

    ``sums`` are s, δ = Σ (p - q) over P's support and the mass of Q outside
    it, so that t - s = off_support - δ. ``excess(ok, alpha_cols)`` is Σ p h(x)
    over P's support (log_ratio_excess's terms; x finite, εx < 50 on ``ok``, 0
    on the covered classes outside it), ``log_sum(covered, alpha_cols)`` is
    log Σ_covered p^α q^(1-α) - log s: the caller sums its terms.
    """
    mass, delta, off_support = sums
    finite_alpha = jnp.isfinite(alpha)
    epsilon = jnp.where(finite_alpha, alpha - 1, 0.0)
    eps_cols = jnp.expand_dims(epsilon, axes)
    # Excess form wherever D is near 0 (see the module doc), α = 1 included.
    bounded = eps_cols * jnp.where(covered, x, 0.0) < 50
    alpha_cols = jnp.expand_dims(jnp.where(finite_alpha, alpha, 1.0), axes)
    total = excess(covered & bounded, alpha_cols)
    infinite = jnp.isposinf(total)
    total = jnp.where(infinite, 0.0, total)
    z = epsilon * (total + delta) / jnp.where(mass > 0, mass, 1.0)
    use_small = jnp.all(bounded | ~support, axis=axes) & (jnp.abs(z) < 0.5)
    psi_minus_one = log1p_ratio_minus_one(jnp.where(use_small, z, 0.0))
    small = total * (1 + psi_minus_one) + delta * psi_minus_one + off_support
    small = jnp.where(infinite, jnp.inf, small)
    # Log-sum-exp form otherwise (α = 0 and ∞ included): K is then far from 0
    # (or some e^{εx} would overflow), and K/ε loses nothing, near α = 1 too.
    # x = +inf (q = 0 < p) makes the sum +inf for ε > 0 and adds nothing below.
    unbounded = jnp.any(support & ~covered, axis=axes) & (epsilon > 0)
    log_sum_value = log_sum(covered, alpha_cols)
    # Q gives P's support no mass: -inf, said directly (with no slope in the mass).
    log_sum_value = jnp.where(jnp.isneginf(log_sum_value), -jnp.inf, log_sum_value)
    ratio = log_sum_value / jnp.where(epsilon == 0, 1.0, epsilon)
    ratio = jnp.where(unbounded, jnp.inf, ratio)
    ratio = jnp.where(finite_alpha, ratio, _extreme(x, support, axes))
    ratio = jnp.where(jnp.any(support, axis=axes), ratio, 0.0)
    # +inf is said directly: mass · inf would make the gradient of mass NaN.
    finite_ratio = jnp.isfinite(ratio)
    far = mass * jnp.where(finite_ratio, ratio, 0.0) + off_support - delta
    far = jnp.where(finite_ratio, far, ratio)
    return jnp.where(finite_alpha & use_small, small, far)


def _divergence_of_probabilities(p, q, x, support, covered, sums, alpha, axes):
    """_divergence with the terms differentiated in closed form (p, q > 0 where used)."""
    one = jnp.ones_like(p)
    uncovered = support & ~covered
    safe_log_mass = _safe_log(sums[0])

    def excess(ok, alpha_cols):
        terms = excess_term(True, jnp.where(ok, p, 1.0), jnp.where(ok, q, 1.0), alpha_cols)
        # q = 0 < p: p α/(1 - α) below α = 1, +inf from it on.
        missing = log_ratio_excess(jnp.where(uncovered, p, 1.0), one, jnp.inf * one, alpha_cols)
        return jnp.sum(jnp.where(ok, terms, jnp.where(uncovered, missing, 0.0)), axis=axes)

    def log_sum(keep, alpha_cols):
        p_in, q_in = jnp.where(keep, p, 1.0), jnp.where(keep, q, 1.0)
        exponents = jax.lax.stop_gradient(jnp.log(p_in) + (alpha_cols - 1) * log_ratio(p_in, q_in))
        terms = lambda shift: power_term(0, 0, p_in, q_in, alpha_cols, shift)  # noqa: E731
        return shifted_log_sum(terms, exponents, keep, axes) - safe_log_mass

    return _divergence(x, support, covered, sums, alpha, axes, excess, log_sum)


def _divergence_of_logits(log_p, log_q, support, covered, sums, alpha, axes):
    """_divergence in log space: a probability that underflows keeps its log."""
    x = jnp.where(covered, log_p - jnp.where(covered, log_q, 0.0), jnp.where(support, jnp.inf, 0.0))
    p, q = jnp.exp(log_p), jnp.exp(log_q)

    def excess(ok, alpha_cols):
        x_ok = jnp.where(ok | (support & ~covered), x, 0.0)
        terms = log_ratio_excess(p, q, x_ok, alpha_cols)
        return jnp.sum(jnp.where(support, terms, 0.0), axis=axes)

    def log_sum(keep, alpha_cols):
        lp, lq = jnp.where(keep, log_p, 0.0), jnp.where(keep, log_q, 0.0)
        # α log p + (1-α) log q: exact at α = 0 and 1, no cancellation between;
        # above α = 1 as log p + ε x, with x = log(p/q) as accurate as it is.
        between = alpha_cols * lp + (1 - alpha_cols) * lq
        above = lp + (alpha_cols - 1) * jnp.where(keep, x, 0.0)
        return _log_sum_exp(jnp.where(alpha_cols <= 1, between, above), keep, axes)

    return _divergence(x, support, covered, sums, alpha, axes, excess, log_sum)


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
    mass = dist.total(p_in)
    value = _entropy(p_in, support, mass, alpha, dist.axes)
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
    sums = (
        dist.total(p_in),
        dist.total(jnp.where(support, p_in - q_in, 0.0)),
        dist.total(jnp.where(support, 0.0, q_in)),
    )
    value = _divergence_of_probabilities(p_in, q_in, x, support, covered, sums, alpha, dist.axes)
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
    value = _entropy_of_logits(jnp.where(support, log_p, 0.0), support, alpha, axes)
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
    # P's support is where its logit is finite: a class whose probability
    # underflows can still dominate Σ p^α q^(1-α) (α < 1), and the log-sum-exp
    # form reads it from its log.
    support = log_p > -jnp.inf
    covered = support & (log_q > -jnp.inf)
    # Both are distributions: s = t = 1, and Σ (p - q) over P's support is
    # exactly the mass of Q outside it.
    off_support = jnp.sum(jnp.where(support, 0.0, jnp.exp(log_q)), axis=axes)
    sums = (jnp.ones_like(off_support), off_support, off_support)
    value = _divergence_of_logits(log_p, log_q, support, covered, sums, alpha, axes)
    # An empty P (every logit -inf or masked) has divergence 0, as in KL.
    value = jnp.where(jnp.any(support, axis=axes), value, 0.0)
    value = _inputs.nan_where_nan(value, [log_p, log_q], axes)
    return in_base(_nan_for_nan_order(value, alpha), base)
