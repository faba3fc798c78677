"""Fail when a built wheel lacks a file of the package's source tree.

Usage: ``python .ci/wheel_contents.py dist/jxent-VERSION-py3-none-any.whl``

Every file under ``jxent/`` that git tracks or would track (untracked files
that .gitignore does not ignore) must be in the wheel. .ci/run checks this
before it installs the wheel and runs the tests against it, so that a file
left out of the package fails CI even where no test imports it (``py.typed``,
a module loaded only on some paths).
"""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "jxent"


def source_files():
    """The package's files, relative to the repository root, as POSIX paths."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", PACKAGE],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        listed = [path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).rglob("*")]
    return {
        path
        for path in listed
        if path and (ROOT / path).is_file() and "__pycache__" not in path.split("/")
    }


def main(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith(f"{PACKAGE}/")}
    source = source_files()
    if not source:
        sys.exit(f"wheel_contents: no files found under {ROOT / PACKAGE}")
    missing = sorted(source - packaged)
    if missing:
        sys.exit(
            f"wheel_contents: {Path(wheel).name} lacks {len(missing)} file(s) of {PACKAGE}/: "
            + ", ".join(missing)
        )
    print(f"wheel_contents: {Path(wheel).name} holds all {len(source)} files of {PACKAGE}/")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
