"""Give the test process 8 CPU devices, before anything imports JAX.

The vocab-parallel tests need a mesh; single-device tests are unaffected
(they run on the default device).
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
