"""Shared pytest fixtures.

x64 is enabled per test, never globally: the doctests collected in the same
process expect float32 results.
"""

import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
    """Run the test with ``jax_enable_x64`` on (float64 arrays are float64)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20240611)
