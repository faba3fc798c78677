"""Give the test process 8 CPU devices, before anything imports JAX.

The vocab-parallel and partitioning tests need a mesh of 8; single-device tests
are unaffected. The suite runs on the CPU platform (set ``JAX_PLATFORMS`` to run
it elsewhere): on a host with one GPU the mesh tests would otherwise skip.
Hypothesis draws the same examples on every run (a CI failure reproduces).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

from hypothesis import settings  # noqa: E402

settings.register_profile("jxent", derandomize=True, database=None, deadline=None)
settings.load_profile("jxent")
