"""Mutual information and conditional entropy from a joint probability table."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from . import _primitives as prim
from ._checks import as_float_array, in_base, normalize_axis
from ._zero_safe import zero_safe_mul


@jax.custom_jvp
def _bregman_term(p: jax.Array, r: jax.Array) -> jax.Array:
    """p log(p/r) - p + r = r·h(p/r) >= 0, accurate when p ≈ r.

    With δ = (p - r)/r, h = (1+δ) log1p(δ) - δ = Σ_{k>=2} (-δ)^k / (k(k-1)),
    which is summed as a series for small δ where the closed form cancels.
    """
    safe_r = jnp.where(r > 0, r, 1.0)
    delta = (p - r) / safe_r
    small = jnp.abs(delta) < 0.1
    d = jnp.where(small, delta, 0.0)
    series = d * d * sum((-d) ** (k - 2) / (k * (k - 1)) for k in range(2, 12))
    closed = prim.rel_entr(p, r) - p + r
    value = jnp.where(small, r * series, closed)
    return jnp.where(r > 0, value, prim.rel_entr(p, r) + r)


@_bregman_term.defjvp
def _bregman_term_jvp(primals, tangents):
    (p, r), (dp, dr) = primals, tangents
    # d/dp = log(p/r), d/dr = 1 - p/r.
    slope_p = jnp.where((p == 0) & (r == 0), jnp.inf, prim.log_ratio(p, r))
    tangent = zero_safe_mul(dp, slope_p) + zero_safe_mul(dr, 1 - prim.xdivy(p, r))
    return _bregman_term(p, r), tangent


def _joint_table(joint, axes) -> tuple[jax.Array, tuple[int, int]]:
    joint = as_float_array(joint, "joint")
    axes = normalize_axis(axes, joint.ndim, "axes")
    if len(axes) != 2:
        raise ValueError(f"axes must name two axes of joint (shape {joint.shape}), got {axes}")
    total = jnp.sum(joint, axis=axes, keepdims=True)
    # The table is taken as a distribution: normalise it. A zero cell has an
    # infinite slope, and its zero value must meet it as 0 on the way back.
    return zero_safe_mul(joint, 1 / jnp.where(total > 0, total, 1.0)), axes


def mutual_information(
    joint: jax.typing.ArrayLike,
    *,
    axes: Sequence[int] = (-2, -1),
    base: float | None = None,
) -> jax.Array:
    r"""Mutual information of the two variables of a joint probability table.

    .. math::
      I(X; Y) = D(P_{XY} \| P_X \otimes P_Y)
        = \sum_{x,y} r_{xy}\, h(p_{xy} / r_{xy}), \quad r_{xy} = p_x p_y

    computed directly, with :math:`h(t) = t \log t - t + 1 \ge 0` summed as a
    series near t = 1: every term is non-negative, so I ≥ 0 and a nearly
    independent table does not lose its information to cancellation (as
    H(X) + H(Y) - H(X, Y) does).

    Args:
      joint: probabilities ``p(x, y)``; the two variables along ``axes``
        (normalised if it does not sum to 1).
      axes: the axes of X and Y.
      base: logarithm base; None means nats.

    Returns:
      ``joint`` reduced over ``axes``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.mutual_information(jnp.array([[0.5, 0.0], [0.0, 0.5]]), base=2))
      1.0
    """
    joint, (x_axis, y_axis) = _joint_table(joint, axes)
    p_x = jnp.sum(joint, axis=y_axis, keepdims=True)
    p_y = jnp.sum(joint, axis=x_axis, keepdims=True)
    product = p_x * p_y
    # p_xy^2 <= p_x p_y only: the product can underflow (or be flushed to 0 as
    # a subnormal) where p_xy > 0. There, p log(p / (p_x p_y)) takes the logs apart.
    tiny = (joint > 0) & (product < jnp.finfo(product.dtype).tiny)
    terms = _bregman_term(joint, jnp.where(tiny, 1.0, product))
    p, p_x, p_y = (jnp.where(tiny, a, 1.0) for a in (joint, p_x, p_y))
    split = p * (prim.log_ratio(p, p_x) - jnp.log(p_y)) - p
    terms = jnp.where(tiny, split, terms)
    return in_base(jnp.sum(terms, axis=(x_axis, y_axis)), base)


def conditional_entropy(
    joint: jax.typing.ArrayLike,
    *,
    given: int = -1,
    axes: Sequence[int] = (-2, -1),
    base: float | None = None,
) -> jax.Array:
    r"""Conditional entropy :math:`H(X \mid Y)` from a joint probability table.

    .. math::
      H(X \mid Y) = -\sum_{x,y} p_{xy} \log \frac{p_{xy}}{p_y} = H(X, Y) - H(Y)

    Each term is :math:`-p \log(p / p_y) \ge 0` since :math:`p_{xy} \le p_y`
    (in floating point too), so the result is never negative.

    Args:
      joint: probabilities ``p(x, y)``; the two variables along ``axes``
        (normalised if it does not sum to 1).
      given: which of ``axes`` is the conditioning variable Y.
      axes: the axes of the two variables.
      base: logarithm base; None means nats.

    Returns:
      ``joint`` reduced over ``axes``.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.conditional_entropy(jnp.full((2, 2), 0.25), base=2))
      1.0
    """
    joint, pair = _joint_table(joint, axes)
    given_axis = normalize_axis(given, joint.ndim, "given")[0]
    if given_axis not in pair:
        raise ValueError(f"given={given} must be one of axes={tuple(axes)} of joint {joint.shape}")
    other_axis = pair[0] if pair[1] == given_axis else pair[1]
    marginal = jnp.sum(joint, axis=other_axis, keepdims=True)
    terms = -prim.rel_entr(joint, jnp.broadcast_to(marginal, joint.shape))
    return in_base(jnp.sum(terms, axis=pair), base)
