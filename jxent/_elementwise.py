"""SciPy's elementwise names, ``rel_entr`` and ``xlog1py``, with jxent's derivative rules.

The public wrappers of the zero-safe terms in :mod:`jxent._primitives`: argument
conversion, checks and broadcasting, as :func:`jxent.xlogy` does.
"""

import jax

from . import _primitives as prim
from ._arguments import as_inexact_array, broadcast_pair


def _pair(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    return broadcast_pair(as_inexact_array(x, "x"), as_inexact_array(y, "y"), ("x", "y"))


def rel_entr(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    r"""Elementwise relative entropy :math:`x \log(x / y)`, SciPy's ``rel_entr``.

    .. math::
      \mathrm{rel\_entr}(x, y) = \begin{cases}
        x \log(x / y) & x > 0,\ y > 0 \\
        0 & x = 0,\ y \ge 0 \\
        +\infty & x > 0,\ y = 0
      \end{cases}
      \qquad \partial_x = \log(x / y) + 1, \quad \partial_y = -x / y

    As ``scipy.special.rel_entr`` on ``x, y >= 0``, with ``log(x/y)`` accurate
    when ``x ≈ y``. A negative ``x`` or ``y`` gives NaN, jxent's rule for
    negative probabilities (SciPy gives ``+inf`` there). ``∂_y`` is exactly 0
    where ``x = 0``; ``∂_x`` is ``+inf`` at ``x = y = 0`` and ``-inf`` at
    ``x = 0 < y``; a zero tangent times an infinite coefficient is 0.

    Args:
      x: array of non-negative values, broadcastable with ``y``.
      y: array of non-negative values.

    Returns:
      The broadcast shape; NaN where either is negative or NaN.

    Examples:
      >>> import jax, jxent
      >>> jxent.rel_entr(jax.numpy.array([0.0, 1.0, 1.0]), jax.numpy.array([0.0, 1.0, 0.0]))
      Array([ 0.,  0., inf], dtype=float32)
    """
    return prim.rel_entr(*_pair(x, y))


def xlog1py(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    r"""Elementwise :math:`x \log(1 + y)`, 0 where :math:`x = 0` whatever ``y`` is.

    .. math::
      \partial_x = \log(1 + y), \qquad \partial_y = x / (1 + y) \ (0 \text{ where } x = 0)

    SciPy's ``xlog1py``, computed with ``log1p``, so small ``y`` keeps its
    digits. A zero tangent times an infinite coefficient is 0, so
    ``jax.jacfwd`` and ``jax.grad`` give no NaN at ``(0, -1)``.

    Args:
      x: array, broadcastable with ``y``.
      y: array of values ``>= -1``.

    Returns:
      The broadcast shape; NaN where ``y`` is NaN (even when ``x = 0``) or
      where ``x != 0`` and ``y < -1``.

    Examples:
      >>> import jax, jxent
      >>> jax.jacfwd(jxent.xlog1py, argnums=(0, 1))(0.0, -1.0)
      (Array(-inf, dtype=float32), Array(0., dtype=float32))
    """
    return prim.xlog1py(*_pair(x, y))
