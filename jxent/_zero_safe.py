"""A multiplication in which zero absorbs infinity, usable as a linear map.

Tangent rules in jxent multiply a tangent by a coefficient that may be
infinite (``d/dx x log x = log x + 1`` is ``-inf`` at 0). Plain ``t * c`` turns
a zero tangent into NaN there, and ``where(t == 0, 0, t * c)`` is not linear in
JAX's eyes, so reverse mode cannot transpose it. ``zero_safe_mul`` is a tiny
primitive that JAX knows to be bilinear: it has a JVP, a transpose for either
argument, a batching rule and a lowering, so it works under ``grad``,
``jacfwd``, ``jacrev``, ``hessian``, ``vmap`` and ``jit``.
"""

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from ._collectives import varying_like


def _impl(a: jax.Array, b: jax.Array) -> jax.Array:
    product = a * b
    # Only 0 * inf is redefined; NaN inputs still give NaN.
    zero_times_inf = ((a == 0) & jnp.isinf(b)) | ((b == 0) & jnp.isinf(a))
    return jnp.where(zero_times_inf, jnp.zeros_like(product), product)


def _abstract_eval(a, b):
    return a.update(weak_type=False)


def _batch(args, dims):
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    moved = []
    for x, d in zip(args, dims):
        if d is None:
            moved.append(jnp.broadcast_to(x, (size, *x.shape)))
        else:
            moved.append(jnp.moveaxis(x, d, 0))
    return _zero_safe_mul_p.bind(*moved), 0


_zero_safe_mul_p = Primitive("jxent_zero_safe_mul")
_zero_safe_mul_p.def_impl(_impl)
_zero_safe_mul_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(_zero_safe_mul_p, mlir.lower_fun(_impl, multiple_results=False))
batching.primitive_batchers[_zero_safe_mul_p] = _batch
ad.defbilinear(
    _zero_safe_mul_p,
    lambda ct, a, b: zero_safe_mul(ct, b),
    lambda ct, a, b: zero_safe_mul(a, ct),
)


def zero_safe_mul(a: jax.typing.ArrayLike, b: jax.typing.ArrayLike) -> jax.Array:
    """Return ``a * b``, except that ``0 * ±inf`` is 0 (NaN inputs stay NaN)."""
    a, b = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(b))
    dtype = jnp.result_type(a, b)
    a, b = varying_like(a.astype(dtype), b), varying_like(b.astype(dtype), a)
    return _zero_safe_mul_p.bind(a, b)
