"""One input contract for every probability measure, prepared in one place.

Every measure that takes probabilities (entropy, cross-entropy, the KL, JS,
Rényi and joint measures, the binary ones, and the probability argument of
the ``_from_logits`` forms) reads them through this module, so all of them
follow one rule (README, "Public names"):

- Probabilities are used as given, never renormalised. On a distribution each
  measure is its textbook formula; on non-negative values that do not sum to
  1 it is that formula's extension to non-negative measures, chosen so that
  Rényi at α = 1 and the generalized JS at β = ½ stay equal to their Shannon
  counterparts (each docstring gives the formula).
- A negative or NaN probability makes the result for its distribution NaN.
- Masked classes are out of the measure: their values are neither read nor
  differentiated.
- Under the validation mode, NaN, negative and unnormalised probabilities,
  NaN logits and out-of-domain options are ``checkify`` errors.

Unnormalised input is not NaN: "sums to 1" needs a tolerance, and a value
that turns NaN past a tolerance is not differentiable there; finite
differences (``check_grads``), Hessians along every direction and
unconstrained optimisers all step off the simplex, where the formulas are
well defined.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _validation
from ._arguments import (
    Axis,
    as_float_array,
    broadcast_pair,
    class_mask,
    normalize_axis,
    per_distribution,
)
from ._primitives import log_softmax
from ._units import in_base


class Distributions(NamedTuple):
    """Prepared probability arrays and what the measures need to reduce them."""

    arrays: tuple[jax.Array, ...]  # broadcast, float; masked classes hold the fill values
    axes: tuple[int, ...]  # the class axes, sorted
    mask: jax.Array | None  # the class mask broadcast to the arrays' shape
    invalid: jax.Array  # per distribution: a negative or NaN probability

    def total(self, terms: jax.Array) -> jax.Array:
        """Sum per-class terms over the unmasked classes."""
        if self.mask is not None:
            terms = jnp.where(self.mask, terms, jnp.zeros_like(terms))
        return jnp.sum(terms, axis=self.axes)

    def finish(self, value: jax.Array, base: float | None) -> jax.Array:
        """The result: NaN for invalid distributions, in ``base``."""
        return in_base(jnp.where(self.invalid, jnp.nan, value), base)


def _require_classes(
    shape: tuple[int, ...], axes: tuple[int, ...], names: Sequence[str], axis: Any, axis_name: str
) -> None:
    """An empty class axis is a mistake, not a distribution: raise naming it."""
    if any(shape[a] == 0 for a in axes):
        verb = "has" if len(names) == 1 else "have"
        raise ValueError(
            f"{' and '.join(names)} of shape {tuple(shape)} {verb} no classes along "
            f"{axis_name}={axis!r}"
        )


def probabilities(
    arrays: Sequence[jax.typing.ArrayLike],
    names: Sequence[str],
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
    fill: Sequence[float],
    axis_name: str = "axis",
    input_dtypes: Sequence[Any] | None = None,
) -> Distributions:
    """Check and broadcast one or two probability arrays with classes along ``axis``.

    ``fill`` replaces masked entries (one value per array) so that garbage
    there reaches neither the value nor the gradient; ``input_dtypes`` are
    the dtypes the user passed, when ``arrays`` were already converted.
    """
    if input_dtypes is None:
        input_dtypes = [jnp.asarray(a).dtype for a in arrays]
    floats = [as_float_array(a, n) for a, n in zip(arrays, names)]
    if len(floats) == 2:
        floats = list(broadcast_pair(floats[0], floats[1], (names[0], names[1])))
    shape = floats[0].shape
    axes = normalize_axis(axis, len(shape), axis_name)
    _require_classes(shape, axes, names, axis, axis_name)
    mask = class_mask(where, shape)
    for a, name, dtype in zip(floats, names, input_dtypes):
        _validation.check_probabilities(a, name, axes=axes, mask=mask, input_dtype=dtype)
    bad = functools.reduce(jnp.logical_or, [(a < 0) | jnp.isnan(a) for a in floats])
    if mask is not None:
        bad &= mask
        floats = [jnp.where(mask, a, jnp.asarray(v, a.dtype)) for a, v in zip(floats, fill)]
    return Distributions(tuple(floats), axes, mask, jnp.any(bad, axis=axes))


def logits(
    values: jax.typing.ArrayLike,
    name: str,
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, tuple[int, ...]]:
    """Logits with masked classes at ``-inf`` (out of the softmax), and the class axes.

    A ``+inf`` logit on a class that is not masked is NaN (as ``jax.nn.log_softmax``,
    optax and TFP give: its softmax is undefined), and an error in the validation mode.
    """
    values = as_float_array(values, name)
    axes = normalize_axis(axis, values.ndim)
    _require_classes(values.shape, axes, (name,), axis, "axis")
    mask = class_mask(where, values.shape)
    if mask is not None:
        values = jnp.where(mask, values, -jnp.inf)
    _validation.check_logits(values, name)
    return jnp.where(values == jnp.inf, jnp.nan, values), axes


def logit_pair(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """Two broadcast logit arrays, masked alike (masked classes at ``-inf``), and the class axes."""
    p_logits, q_logits = broadcast_pair(
        as_float_array(p_logits, "p_logits"),
        as_float_array(q_logits, "q_logits"),
        ("p_logits", "q_logits"),
    )
    p_logits, axes = logits(p_logits, "p_logits", axis=axis, where=where)
    q_logits, _ = logits(q_logits, "q_logits", axis=axis, where=where)
    return p_logits, q_logits, axes


def log_softmax_pair(
    p_logits: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[jax.Array, jax.Array, tuple[int, ...]]:
    """Log-softmaxes of two broadcast logit arrays, masked alike, and the class axes."""
    p_logits, q_logits, axes = logit_pair(p_logits, q_logits, axis=axis, where=where)
    return log_softmax(p_logits, axes), log_softmax(q_logits, axes), axes


def probabilities_and_logits(
    p: jax.typing.ArrayLike,
    q_logits: jax.typing.ArrayLike,
    *,
    axis: Axis,
    where: jax.typing.ArrayLike | None,
) -> tuple[Distributions, jax.Array]:
    """P as probabilities (masked classes 0) and Q's log-softmax, broadcast together."""
    p_dtype = jnp.asarray(p).dtype
    p, q_logits = broadcast_pair(
        as_float_array(p, "p"), as_float_array(q_logits, "q_logits"), ("p", "q_logits")
    )
    q_logits, axes = logits(q_logits, "q_logits", axis=axis, where=where)
    dist = probabilities([p], ["p"], axis=axis, where=where, fill=[0.0], input_dtypes=[p_dtype])
    return dist, log_softmax(q_logits, axes)


def nan_where_nan(
    value: jax.Array, arrays: Sequence[jax.Array], axes: tuple[int, ...]
) -> jax.Array:
    """``value`` with NaN for every distribution whose (logit) arrays hold a NaN."""
    nan = functools.reduce(jnp.logical_or, [jnp.any(jnp.isnan(a), axis=axes) for a in arrays])
    return jnp.where(nan, jnp.nan, value)


def binary(
    arrays: Sequence[jax.typing.ArrayLike], names: Sequence[str]
) -> tuple[tuple[jax.Array, ...], jax.Array]:
    """Elementwise event probabilities, broadcast; True where one is outside [0, 1] or NaN."""
    floats = [as_float_array(a, n) for a, n in zip(arrays, names)]
    if len(floats) == 2:
        floats = list(broadcast_pair(floats[0], floats[1], (names[0], names[1])))
    for a, name in zip(floats, names):
        _validation.check_unit_interval(a, name)
    # p > 1 is a negative probability of the other event.
    bad = [(a < 0) | (a > 1) | jnp.isnan(a) for a in floats]
    return tuple(floats), functools.reduce(jnp.logical_or, bad)


def parameter(
    value: jax.typing.ArrayLike,
    name: str,
    *,
    domain: str,
    inside: Callable[[Any], Any],
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    dtype: Any,
) -> jax.Array:
    """A per-distribution option (an order α, a weight β), checked against its domain.

    A concrete value outside ``domain`` raises ValueError naming ``name``; a
    traced one is NaN there (so is the result) and an error under the
    validation mode. The value is broadcast to the result shape.
    """
    value = _validation.option_in_domain(value, name, domain, inside)
    return per_distribution(value, name, shape, axes, dtype)
