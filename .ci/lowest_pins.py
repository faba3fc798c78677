"""Print ``name==version`` for every ``name>=version`` in pyproject.toml.

Used by .ci/run as a pip constraints file, so that the floor test
environment holds exactly the lowest versions the project declares.
Arguments name the extras to include (default: ``test``); the run-time
dependencies are always included. An exact pin (``name==version``, as the
``lint`` extra declares its tools) passes through unchanged.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:] or ["test"]:
    requirements += project["optional-dependencies"][extra]
pins = {}
for requirement in requirements:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*[>=]=\s*([A-Za-z0-9_.]+)\s*", requirement)
    if match is None:
        sys.exit(
            f"lowest_pins: cannot pin {requirement!r}: declare it as name>=version or name==version"
        )
    pins[match.group(1).lower()] = match.group(2)
print("\n".join(f"{name}=={version}" for name, version in sorted(pins.items())))
