"""Reading a compiled program's HLO text: its collectives, their shapes, and whether
they run inside a loop. Shared by the sharding tests and benchmarks/sharded_fused_ce.py."""

import re
from typing import NamedTuple

_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) .*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = (\(.*?\)|\S+) ([a-z-]+)\(")
_CALLED = re.compile(r"(?:body|condition|calls|to_apply)=%([\w.-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_SHAPE = re.compile(r"[a-z]\w*\[([\d,]*)\]")
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")


class Collective(NamedTuple):
    op: str  # e.g. "all-reduce" (an async "-start" is reported under its op)
    shapes: tuple[tuple[int, ...], ...]  # the result's array shapes
    in_loop: bool  # inside a while loop's body or condition, at any depth

    def has_dimension(self, size: int) -> bool:
        return any(size in shape for shape in self.shapes)


def collectives(hlo_text: str) -> list[Collective]:
    """Every collective of a compiled module's ``as_text()``."""
    calls: dict[str, set[str]] = {}
    loop_roots: set[str] = set()
    found: list[tuple[str, str, tuple]] = []
    current = ""
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = header.group(1)
            calls.setdefault(current, set())
            continue
        called = set(_CALLED.findall(line))
        for branches in _BRANCHES.findall(line):
            called |= {b.strip().lstrip("%") for b in branches.split(",")}
        calls.setdefault(current, set()).update(called)
        instruction = _INSTRUCTION.match(line)
        if not instruction:
            continue
        shape, op = instruction.groups()
        if op == "while":
            loop_roots |= called
        base = op.removesuffix("-start")
        if base in COLLECTIVES:
            shapes = tuple(
                tuple(int(d) for d in dims.split(",") if d) for dims in _SHAPE.findall(shape)
            )
            found.append((base, current, shapes))
    in_loops: set[str] = set()
    pending = list(loop_roots)
    while pending:
        name = pending.pop()
        if name not in in_loops:
            in_loops.add(name)
            pending.extend(calls.get(name, ()))
    return [Collective(op, shapes, where in in_loops) for op, where, shapes in found]
