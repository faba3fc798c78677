"""The package's layout rules, read from its source.

* The underscore rule: a leading underscore on a function, class or constant
  means "used only in this module". Private *modules* may be imported within
  the package; underscored names inside them may not.
* The layers point down: a module imports only from its own layer or below.
* At run time jxent imports the standard library, jax and NumPy only.
"""

import ast
import pathlib
import re
import sys

import pytest

import jxent

# The package as imported: the installed wheel when CI tests one, so that the
# rules hold for what ships.
PACKAGE = pathlib.Path(jxent.__file__).resolve().parent
CHECKOUT = pathlib.Path(__file__).resolve().parent.parent

# Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS = [
    {"jxent._arguments", "jxent._collectives", "jxent._units"},
    {"jxent._zero_safe", "jxent._validation"},
    {"jxent._primitives"},
    {"jxent._inputs"},
    {"jxent._renyi_boundary"},
    {"jxent._measures", "jxent._binary", "jxent._jensen", "jxent._renyi", "jxent._joint"},
    {"jxent._elementwise"},
    {"jxent.losses"},  # the subpackage and every module in it
    {"jxent.sharding", "jxent.metrics"},
    {"jxent"},
]
RUN_TIME_DEPENDENCIES = {"jax", "jaxlib", "numpy"}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module an ``import from`` reads."""
    if node.level == 0:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _layer(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer or any(module.startswith(f"{name}.") for name in layer - {"jxent"}):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for each import statement."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            # ``from . import _inputs`` imports the module jxent._inputs.
            submodules = [a.name for a in node.names if _is_module(f"{source}.{a.name}")]
            found += [(f"{source}.{name}", [], node.lineno) for name in submodules]
            names = [a.name for a in node.names if a.name not in submodules]
            if names or not submodules:
                found.append((source, names, node.lineno))
    return found


def _is_module(name: str) -> bool:
    return name in MODULES


def _private_imports(module):
    return [
        f"line {line}: from {source} import {name}"
        for source, names, line in _imports(module)
        for name in names
        if name.startswith("_") and not _is_module(f"{source}.{name}")
    ]


def _private_attributes(module):
    tree = ast.parse(MODULES[module].read_text())
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            aliases |= {
                a.asname or a.name
                for a in node.names
                if _is_module(f"{source}.{a.name}") or source not in MODULES
            }
    return [
        f"line {node.lineno}: {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def _upward_imports(module):
    return [
        f"line {line}: {source} (layer {_layer(source)})"
        for source, _, line in _imports(module)
        if (source == "jxent" or source.startswith("jxent.")) and _layer(source) > _layer(module)
    ]


def _outside_imports(module):
    allowed = RUN_TIME_DEPENDENCIES | set(sys.stdlib_module_names) | {"jxent"}
    return sorted(
        {
            source.split(".")[0]
            for source, _, _ in _imports(module)
            if source.split(".")[0] not in allowed
        }
    )


def _offences(rule, modules):
    """``{module: what it does wrong}`` over ``modules``, for one assert per rule."""
    return {m: found for m in sorted(modules) if (found := rule(m))}


def test_no_underscored_name_is_imported_from_another_module():
    offences = _offences(_private_imports, MODULES)
    assert not offences, f"private names imported: {offences}"


def test_no_underscored_attribute_of_another_module_is_read():
    offences = _offences(_private_attributes, MODULES)
    assert not offences, f"private names of other modules read: {offences}"


def test_imports_point_down_the_layers():
    offences = _offences(_upward_imports, MODULES)
    assert not offences, f"upward imports (layers {LAYERS}): {offences}"


def test_run_time_imports_are_jax_numpy_and_the_standard_library():
    offences = _offences(_outside_imports, MODULES)
    assert not offences, f"run-time imports outside jax, NumPy and the standard library: {offences}"


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The walkers above see the patterns the rules are about."""
    bad = "from ._primitives import _log\nfrom . import _inputs\n_inputs._private(1)\n"
    tree = ast.parse(bad)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _resolve("jxent._measures", node) == "jxent._primitives"
    assert not _is_module("jxent._primitives._log")
    assert _is_module("jxent._inputs")
    assert _layer("jxent.losses._fused") > _layer("jxent._measures")
    attributes = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    assert attributes == ["_private"]


def _top_level_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def test_plain_names_of_private_modules_are_shared():
    """The other half of the rule: a plain name in a private module is public
    API or used by another module of the package; otherwise it takes an
    underscore."""
    offences = _offences(_unshared_names, [m for m in MODULES if "._" in m])
    assert not offences, f"used only in their module, name them with '_': {offences}"


def _unshared_names(module):
    public = set(jxent.__all__) | set(jxent.losses.__all__) | set(jxent.sharding.__all__)
    public |= set(jxent.metrics.__all__)
    others = [p.read_text() for name, p in MODULES.items() if name != module]
    words = set().union(*(re.findall(r"\w+", text) for text in others))
    tree = ast.parse(MODULES[module].read_text())
    return [
        name
        for name in _top_level_names(tree)
        if not name.startswith("_") and name not in public and name not in words
    ]


@pytest.mark.parametrize("folder", ["examples", "benchmarks", "notebooks", "docs"])
def test_examples_benchmarks_notebooks_and_docs_use_only_public_names(folder):
    root = CHECKOUT / folder
    files = [p for p in root.rglob("*") if p.suffix in {".py", ".ipynb", ".md", ".rst"}]
    private = re.compile(r"\bjxent(?:\.\w+)*\._(?!_)\w*")
    offences = [
        f"{p.relative_to(root.parent)}: {m.group()}"
        for p in files
        if "_build" not in p.parts
        for m in private.finditer(p.read_text())
    ]
    assert not offences, offences
