"""Shape rules of the code (DESIGN.md): no function in runner/ over 80 lines."""

from __future__ import annotations

import ast

from conftest import ROOT

MAX_LINES = 80


def long_functions(root=ROOT / "runner", limit: int = MAX_LINES) -> list[str]:
    """'path:line name (N lines)' for every function or method under `root` longer than `limit`
    lines (decorators and docstring included); paths relative to root's parent."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - start + 1
                if n > limit:
                    out.append(
                        f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)"
                    )
    return out


def test_no_function_in_runner_over_80_lines():
    assert long_functions() == []


def test_the_check_names_a_long_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(
        f"def short():\n    pass\n\n\nclass C:\n    @staticmethod\n    def long():\n{body}\n"
    )
    assert long_functions(pkg) == [f"pkg/m.py:7 long ({MAX_LINES + 2} lines)"]
    assert long_functions(pkg, limit=MAX_LINES + 2) == []
