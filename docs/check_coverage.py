"""Check that every public name of jxent is documented in the built HTML docs.

Usage (after ``sphinx-build -W --keep-going -b html docs docs/_build/html``)::

    python docs/check_coverage.py [docs/_build/html]

Public names are those of ``jxent.__all__``, and recursively of the ``__all__``
of every public submodule listed there (``jxent.losses``, ``jxent.metrics``,
``jxent.sharding``, ...), plus the public methods, properties and dataclass
fields of every public class. Each must be an object of Sphinx's inventory
(``objects.inv``: it has an ``autofunction``/``autoclass``/... entry), its
anchor must exist in the HTML page the inventory points to, and every public
function, class, method and property must have a docstring. Exits 1 and lists
what is missing otherwise.
"""

import dataclasses
import importlib
import inspect
import sys
import types
import zlib
from pathlib import Path


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """``objects.inv`` (format version 2) as {name: (domain:role, uri)}."""
    data = path.read_bytes()
    header = data.split(b"\n", 4)
    if header[0] != b"# Sphinx inventory version 2":
        raise SystemExit(f"{path}: not a version 2 Sphinx inventory")
    entries = {}
    for line in zlib.decompress(header[4]).decode("utf-8").splitlines():
        # name domain:role priority uri display-name (the name may contain spaces
        # for some roles, never for Python objects)
        name, role, _priority, uri, *_ = line.split(" ", 4)
        if uri.endswith("$"):
            uri = uri[:-1] + name
        entries[name] = (role, uri)
    return entries


def module_public_names(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:  # fall back to what the module itself defines
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
        ]
    return list(names)


def class_public_names(cls: type) -> list[str]:
    names = [name for name in vars(cls) if not name.startswith("_")]
    if dataclasses.is_dataclass(cls):
        names += [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    return sorted(set(names))


def public_objects(module_name: str = "jxent"):
    """Yield (qualified name, object, needs a docstring) for every public name."""
    module = importlib.import_module(module_name)
    yield module_name, module, True
    for name in module_public_names(module):
        qualified, obj = f"{module_name}.{name}", getattr(module, name)
        if isinstance(obj, types.ModuleType):
            if obj.__name__ != qualified:
                raise SystemExit(f"{qualified} is the module {obj.__name__}: not expected")
            yield from public_objects(qualified)
            continue
        yield qualified, obj, True
        if inspect.isclass(obj):
            fields = set()
            if dataclasses.is_dataclass(obj):
                fields = {f.name for f in dataclasses.fields(obj)}
            for member in class_public_names(obj):
                # A dataclass field is an annotation: it has no docstring of its own.
                yield f"{qualified}.{member}", vars(obj).get(member), member not in fields


def main(argv: list[str]) -> int:
    html = Path(argv[1] if len(argv) > 1 else Path(__file__).parent / "_build" / "html")
    inventory = read_inventory(html / "objects.inv")
    problems, checked = [], 0
    for name, obj, needs_doc in public_objects():
        checked += 1
        if name not in inventory:
            problems.append(f"{name}: not in the docs (no entry in objects.inv)")
            continue
        role, uri = inventory[name]
        page, _, anchor = uri.partition("#")
        page_path = html / page
        if not page_path.is_file():
            problems.append(f"{name}: its page {page} was not built")
        elif anchor and f'id="{anchor}"' not in page_path.read_text(encoding="utf-8"):
            problems.append(f"{name}: no anchor #{anchor} in {page}")
        if needs_doc:
            target = obj.fget if isinstance(obj, property) else obj
            if isinstance(target, (classmethod, staticmethod)):
                target = target.__func__
            if not (getattr(target, "__doc__", None) or "").strip():
                problems.append(f"{name}: ({role}) has no docstring")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{checked} public names checked against {html}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
