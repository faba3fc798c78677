"""The validation mode: run-time problems become ``checkify`` errors.

Checks are emitted only while a function is traced under :func:`checked` (or
inside :func:`validation_mode`), so ordinary calls carry no extra operations.
"""

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from ._arguments import is_traced, label_status

_ENABLED = contextvars.ContextVar("jxent_validation", default=False)
# The mode changes what a function traces to, so it must be part of jax's
# tracing and compilation cache key: otherwise a function jitted before (or
# inside) the mode is reused across it, without its checks (or with checks
# that were never functionalised by checkify).
_IN_JIT_KEY = jax.make_user_context(False) if hasattr(jax, "make_user_context") else None


def enabled() -> bool:
    return _ENABLED.get()


@contextlib.contextmanager
def validation_mode() -> Iterator[None]:
    """Emit jxent's run-time checks in functions traced inside this block.

    Use it when you wrap with ``jax.experimental.checkify`` yourself; otherwise
    :func:`checked` does both steps. Outside the block no check is traced.

    Returns:
      A context manager.

    Examples:
      >>> import jax.numpy as jnp, jxent
      >>> from jax.experimental import checkify
      >>> loss = checkify.checkify(jxent.entropy, errors=checkify.user_checks)
      >>> with jxent.validation_mode():
      ...     error, _ = loss(jnp.array([0.5, 0.6]))
      >>> print(error.get().splitlines()[0].split(" (off by")[0])
      jxent: probs does not sum to 1 over the class axes
    """
    token = _ENABLED.set(True)
    try:
        if _IN_JIT_KEY is None:
            yield
        else:
            with _IN_JIT_KEY(True):
                yield
    finally:
        _ENABLED.reset(token)


def checked(fn: Callable[..., Any]) -> Callable[..., tuple[checkify.Error, Any]]:
    """Return ``fn`` with jxent's run-time checks turned into errors.

    The result returns ``(error, output)`` like ``checkify.checkify`` and works
    under ``jax.jit``; call ``error.throw()`` to raise. Checked problems: labels
    out of range (other than ``ignore_index``), negative probabilities,
    probabilities that do not sum to 1, NaN inputs. ``fn`` itself is unchanged.

    Args:
      fn: any function that calls jxent's measures or losses.

    Returns:
      A function of the same arguments returning ``(error, fn(...))``.

    Examples:
      >>> import jax, jax.numpy as jnp, jxent
      >>> loss = jxent.checked(jxent.losses.softmax_cross_entropy_with_integer_labels)
      >>> error, _ = jax.jit(loss)(jnp.zeros((2, 3)), jnp.array([0, 3]))
      >>> print(error.get().splitlines()[0])
      jxent: labels out of range [0, 3) (and not ignore_index): found 3 (`check` failed)
    """
    wrapped = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> tuple[checkify.Error, Any]:
        with validation_mode():
            return wrapped(*args, **kwargs)

    return run


def check_logits(x: jax.Array, name: str) -> None:
    """NaN and ``+inf`` logits are errors (``-inf`` is a zero-probability class)."""
    check_no_nan(x, name)
    if enabled():
        checkify.check(~jnp.any(x == jnp.inf), f"jxent: {name} contains +inf")


def check_no_nan(x: jax.Array, name: str) -> None:
    if enabled():
        checkify.check(~jnp.any(jnp.isnan(x)), f"jxent: {name} contains NaN")


def check_labels(labels: jax.Array, num_classes: int, ignore_index: int | None) -> None:
    if not enabled():
        return
    if labels.size == 0:
        return
    _, bad = label_status(labels, num_classes, ignore_index)
    first_bad = jnp.where(jnp.any(bad), labels.ravel()[jnp.argmax(bad.ravel())], 0)
    checkify.check(
        ~jnp.any(bad),
        f"jxent: labels out of range [0, {num_classes}) (and not ignore_index): found {{}}",
        first_bad,
    )


def check_probabilities(
    probs: jax.Array,
    name: str,
    *,
    axes: tuple[int, ...],
    mask: jax.Array | None,
    input_dtype: jnp.dtype,
) -> None:
    if not enabled():
        return
    # Masked classes are out of the measure: garbage there is not reported.
    if mask is not None:
        probs = jnp.where(mask, probs, 0)
    check_no_nan(probs, name)
    checkify.check(~jnp.any(probs < 0), f"jxent: {name} has negative probabilities")
    totals = jnp.sum(probs, axis=axes)
    # Rounding of the inputs bounds how far a normalised sum may drift.
    tolerance = max(float(jnp.finfo(input_dtype).eps) ** 0.5, 1e-6)
    worst = jnp.max(jnp.abs(totals - 1), initial=0.0)
    checkify.check(
        worst <= tolerance,
        f"jxent: {name} does not sum to 1 over the class axes (off by {{}})",
        worst,
    )


def check_unit_interval(probs: jax.Array, name: str) -> None:
    """Elementwise probabilities (the binary measures' inputs) must lie in [0, 1]."""
    if not enabled():
        return
    check_no_nan(probs, name)
    outside = (probs < 0) | (probs > 1)
    flat, flat_outside = jnp.ravel(probs), jnp.ravel(outside)
    first_bad = flat[jnp.argmax(flat_outside)] if probs.size else jnp.zeros((), probs.dtype)
    checkify.check(
        ~jnp.any(outside), f"jxent: {name} has probabilities outside [0, 1]: found {{}}", first_bad
    )


def option_in_domain(value: Any, name: str, domain: str, inside: Callable[[Any], Any]) -> Any:
    """A hyperparameter (a number or an array) checked against its domain.

    ``inside`` maps NumPy or JAX arrays to a boolean array (True inside the
    domain; NaN must give False). A concrete value outside raises ValueError
    naming ``name`` now, and is returned unchanged otherwise. A traced value
    comes back NaN wherever it is outside, and under the validation mode that
    becomes a ``checkify`` error.
    """
    if not is_traced(value):
        try:
            concrete = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number, got {value!r}") from None
        if not np.all(inside(concrete)):
            raise ValueError(f"{name} must be {domain}, got {value!r}")
        return value
    ok = inside(value)
    if enabled():
        first_bad = jnp.ravel(value)[jnp.argmax(jnp.ravel(~ok))] if jnp.size(value) else 0.0
        checkify.check(jnp.all(ok), f"jxent: {name} must be {domain}, got {{}}", first_bad)
    return jnp.where(ok, value, jnp.nan)
