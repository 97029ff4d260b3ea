"""Imports sit at the top of a module (DESIGN: module-level by default). One inside a function
must say why on its line, or in a comment just above its group: it keeps `tricks --help` / `tricks
list` / the bad-input path free of torch, Hydra or the like, loads an optional extra (wandb,
tensorboard, submitit, ...), breaks an import circle, or is slow and needed only on a rare path.

Every module of runner/ is held to it."""

from __future__ import annotations

import ast
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "runner"
NOT_YET: tuple[str, ...] = ()


def _is_import(line: str) -> bool:
    s = line.strip()
    return s.startswith(("import ", "from ")) or s.startswith(")") or s.endswith(",")


def uncommented(path: Path, root: Path = RUNNER.parent) -> list[str]:
    """`file:line: import` for every function-level import with no comment saying why."""
    text = path.read_text()
    lines = text.splitlines()
    bad = []
    for fn in ast.walk(ast.parse(text)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            said = any("#" in lines[i] for i in range(node.lineno - 1, node.end_lineno))
            i = node.lineno - 2  # up through the group (imports, blank lines) to a comment
            while not said and i >= 0 and (not lines[i].strip() or _is_import(lines[i])):
                said = "#" in lines[i]
                i -= 1
            if not said and i >= 0:
                s = lines[i].strip()
                said = s.startswith("#") or (s.startswith("try:") and "#" in s)
            if not said:
                where = f"{path.relative_to(root)}:{node.lineno}"
                bad.append(f"{where}: {lines[node.lineno - 1].strip()}")
    return bad


def test_function_level_imports_say_why():
    files = [
        f
        for f in sorted(RUNNER.rglob("*.py"))
        if not str(f.relative_to(RUNNER)).startswith(NOT_YET)
    ]
    bad = [b for f in files for b in uncommented(f)]
    assert not bad, (
        "move these imports to the module's header, or say on the line why they are inside a "
        "function (fast --help, optional extra, import circle, slow rare path):\n" + "\n".join(bad)
    )


def test_the_check_sees_an_uncommented_import(tmp_path):
    f = tmp_path / "probe.py"
    src = (
        "def a():\n    import json\n    return json\n\n"
        "def b():\n    # torch: lazy for a fast --help\n    import os\n\n    import sys\n"
        "    return os, sys\n\n"
        "def c():\n    import math  # optional extra\n    return math\n"
    )
    f.write_text(src)
    assert [b.split(":")[1] for b in uncommented(f, tmp_path)] == ["2"]
