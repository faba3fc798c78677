"""Results in nats, or in another unit of information (bits for base 2)."""

import jax
import jax.numpy as jnp
import numpy as np


def _log_of_base(base: float | None) -> float | None:
    """Return ``log(base)``, or None for nats; reject bases that are not a unit."""
    if base is None:
        return None
    if isinstance(base, (str, bytes, bool)):
        raise TypeError(f"base must be a Python number or None, got {base!r}")
    try:
        value = float(base)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        raise TypeError(f"base must be a Python number or None, got {base!r}") from None
    if not (value > 0 and value != 1 and np.isfinite(value)):
        raise ValueError(f"base must be positive, finite and not 1, got {base!r}")
    return float(np.log(value))


def in_base(value: jax.Array, base: float | None) -> jax.Array:
    """``value`` in nats expressed in ``base`` (None keeps nats)."""
    log_base = _log_of_base(base)
    return value if log_base is None else value / jnp.asarray(log_base, value.dtype)
