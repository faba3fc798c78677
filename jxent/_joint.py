"""Mutual information and conditional entropy from a joint probability table."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from . import _inputs
from . import _primitives as prim
from ._arguments import normalize_axis


def _joint_table(joint, axes) -> tuple[jax.Array, tuple[int, int], _inputs.Distributions]:
    """The table as given (never renormalised), its two axes, and the prepared input."""
    dist = _inputs.probabilities(
        [joint], ["joint"], axis=axes, where=None, fill=[0.0], axis_name="axes"
    )
    (table,) = dist.arrays
    if len(dist.axes) != 2:
        raise ValueError(f"axes must name two axes of joint (shape {table.shape}), got {axes}")
    return table, (dist.axes[0], dist.axes[1]), dist


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

    The table is used as given: on one that does not sum to 1 this is the
    generalized KL divergence :math:`\sum p \log(p/r) - p + r` from the
    product of its marginals, what :func:`kl_divergence` computes, still ≥ 0.

    Args:
      joint: probabilities ``p(x, y)``; the two variables along ``axes``.
      axes: the axes of X and Y.
      base: logarithm base; None means nats.

    Returns:
      ``joint`` reduced over ``axes``; NaN where the table has a negative or
      NaN entry.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.mutual_information(jnp.array([[0.5, 0.0], [0.0, 0.5]]), base=2))
      1.0
    """
    joint, (x_axis, y_axis), dist = _joint_table(joint, axes)
    p_x = jnp.sum(joint, axis=y_axis, keepdims=True)
    p_y = jnp.sum(joint, axis=x_axis, keepdims=True)
    product = p_x * p_y
    # p_xy^2 <= p_x p_y only: the product can underflow (or be flushed to 0 as
    # a subnormal) where p_xy > 0. There, p log(p / (p_x p_y)) takes the logs apart.
    tiny = (joint > 0) & (product < jnp.finfo(product.dtype).tiny)
    terms = prim.kl_term(joint, jnp.where(tiny, 1.0, product))
    p, p_x, p_y = (jnp.where(tiny, a, 1.0) for a in (joint, p_x, p_y))
    split = p * (prim.log_ratio(p, p_x) - jnp.log(p_y)) - p
    return dist.finish(jnp.sum(jnp.where(tiny, split, terms), axis=(x_axis, y_axis)), base)


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

    The table is used as given (on one that does not sum to 1, the sum as
    written: :func:`entropy` of the table less that of its Y marginal).

    Args:
      joint: probabilities ``p(x, y)``; the two variables along ``axes``.
      given: which of ``axes`` is the conditioning variable Y.
      axes: the axes of the two variables.
      base: logarithm base; None means nats.

    Returns:
      ``joint`` reduced over ``axes``; NaN where the table has a negative or
      NaN entry.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> float(jxent.conditional_entropy(jnp.full((2, 2), 0.25), base=2))
      1.0
    """
    joint, pair, dist = _joint_table(joint, axes)
    given_axis = normalize_axis(given, joint.ndim, "given")[0]
    if given_axis not in pair:
        raise ValueError(f"given={given} must be one of axes={tuple(axes)} of joint {joint.shape}")
    other_axis = pair[0] if pair[1] == given_axis else pair[1]
    marginal = jnp.sum(joint, axis=other_axis, keepdims=True)
    terms = -prim.rel_entr(joint, jnp.broadcast_to(marginal, joint.shape))
    return dist.finish(jnp.sum(terms, axis=pair), base)
