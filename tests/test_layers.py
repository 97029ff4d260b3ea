"""The floors of runner/ (docs/design.md): a module imports only from its own floor or below.

Every import is read with ast, those inside functions included (they hide an arrow, they do not
remove it): `import runner.x`, `from runner.x import y`, `from runner import x` (x a module),
relative imports. A new module must be given a floor here, so the map stays whole."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "runner"

#: top floor first; a module's floor is that of its longest matching prefix
FLOORS = [
    ("cli", ["runner.cli"]),
    ("study", ["runner.study"]),
    ("compare and reports", ["runner.compare", "runner.report_html", "runner.runs"]),
    (
        "entry and build",
        [
            "runner.main",
            "runner.build",
            "runner.overrides",  # the CLI's checks, below the CLI and the study that use them
            "runner.log.wandb_sweep",  # a `python -m` entry: writes a W&B sweep from a -m line
            "runner.stack_run",  # builds and trains stacked jobs, as main does solo ones
        ],
    ),
    (
        "engine and parts",
        [
            "runner.engine",
            "runner.stack",  # the stacked layers, batcher and loss the engine runs
            "runner.checkpoint",
            "runner.tricks",
            "runner.optim",
            "runner.models",
            "runner.data",
            "runner.log",
            "runner.losses",
            "runner.schedule",
            "runner.hooks",
            "runner.dist",
            "runner.device",
            "runner.facts",
        ],
    ),
    ("config", ["runner.config", "runner.gitinfo"]),
    ("bottom", ["runner.stats", "runner.fmt", "runner.errors", "runner"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(RUNNER.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    """0 = top. The longest prefix wins (runner.log.wandb_sweep over runner.log)."""
    best, floor = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    if floor is None:
        raise KeyError(module)
    return floor


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (RUNNER / rel).with_suffix(".py").is_file() or (RUNNER / rel / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported runner module, line) for every import in the file, at any depth."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "runner"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "runner":
                continue
            for a in node.names:  # `from runner import compare`: the module compare
                sub = f"{base}.{a.name}"
                found.append((sub if is_module(sub) else base, node.lineno))
    return found


def violations(files) -> list[str]:
    bad = []
    for f in files:
        me = module_name(f)
        for target, line in imports(f):
            if floor_of(target) < floor_of(me):
                bad.append(
                    f"{f.relative_to(RUNNER.parent)}:{line}: {me} ({FLOORS[floor_of(me)][0]}) "
                    f"imports {target} ({FLOORS[floor_of(target)][0]}), a higher floor"
                )
    return bad


def test_every_module_has_a_floor():
    missing = []
    for f in sorted(RUNNER.rglob("*.py")):
        try:
            floor_of(module_name(f))
        except KeyError:
            missing.append(module_name(f))
    assert not missing, f"give these modules a floor in tests/test_layers.py: {missing}"


def test_no_import_runs_up_a_floor():
    bad = violations(sorted(RUNNER.rglob("*.py")))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "module, source",
    [
        ("study/x.py", "def f():\n    from runner.cli import precheck\n"),
        ("study/x.py", "from runner import cli\n"),
        ("compare.py", "import runner.study.protocol\n"),
        ("stats.py", "from runner.fmt import fnum\nfrom runner.engine import fit\n"),
        ("engine.py", "def g():\n    from .compare import analyse\n"),
    ],
)
def test_the_check_sees_an_arrow_up(tmp_path, monkeypatch, module, source):
    """The checker itself: an import up a floor, at module level or inside a function, absolute
    or relative, is reported."""
    fake = tmp_path / "runner"
    for p in RUNNER.rglob("*.py"):  # the real tree's module names, so is_module() answers
        (fake / p.relative_to(RUNNER)).parent.mkdir(parents=True, exist_ok=True)
        (fake / p.relative_to(RUNNER)).touch()
    f = fake / module
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(source)
    monkeypatch.setitem(globals(), "RUNNER", fake)
    assert len(violations([f])) == 1


def test_the_study_reads_runs_without_compare():
    """The study reads run dirs (runner.runs) and formats numbers (runner.fmt) as compare does,
    through the modules below both, never through `tricks compare`'s own module."""
    bad = [
        f"{f.relative_to(RUNNER.parent)}:{line}"
        for f in sorted((RUNNER / "study").rglob("*.py"))
        for target, line in imports(f)
        if target == "runner.compare"
    ]
    assert not bad, bad
