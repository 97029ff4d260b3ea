"""The docs point at what exists: every relative link in README.md, docs/ and the experiments'
READMEs resolves (a file, and a heading where the link names one); every script or module path
they cite is in the tree; the README stays a front door (at most 250 lines) whose set-up commands
are the ones CI runs."""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_PATH = re.compile(r"(?<![\w./-])((?:scripts|runner)/[\w/.-]*?\.py)\b")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
MAX_README_LINES = 250
#: paths a doc names as files for the reader to create (docs/design.md: adding a trick)
EXAMPLES = {"runner/tricks/mytrick.py"}


def _docs() -> list[Path]:
    """The front door, docs/ and every README under experiments/ (HISTORY.md files included for
    links: they are read from the READMEs)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "experiments").rglob("README.md"))
    files += sorted((ROOT / "experiments").rglob("HISTORY.md"))
    return [f for f in files if "runs" not in f.relative_to(ROOT).parts]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def _links(md: Path) -> list[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("md", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(md):
    broken = []
    for target in _links(md):
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.is_file() and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not broken, f"{md.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize(
    "md",
    [f for f in _docs() if f.name != "HISTORY.md"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_cited_script_or_module_exists(md):
    """A README or doc never sends the reader to code the tree no longer has (HISTORY.md records
    what ran in its day, removed scripts included)."""
    text = md.read_text(encoding="utf-8")
    missing = sorted({p for p in CODE_PATH.findall(text) if not (ROOT / p).is_file()} - EXAMPLES)
    assert not missing, f"{md.relative_to(ROOT)} cites code that does not exist: {missing}"


def test_the_link_checker_finds_a_broken_link(tmp_path):
    """The checks above can fail: a missing file, a missing heading and a removed script."""
    md = tmp_path / "x.md"
    md.write_text("# Top\n[a](nope.md) [b](x.md#top) [c](x.md#gone) `scripts/gone.py`\n")
    assert _links(md) == ["nope.md", "x.md#top", "x.md#gone"]
    assert _anchors(md) == {"top"}
    assert CODE_PATH.findall(md.read_text()) == ["scripts/gone.py"]


def test_slug_follows_github():
    assert _slug("GPU check: how to run it when a device is lent") == (
        "gpu-check-how-to-run-it-when-a-device-is-lent"
    )
    assert _slug("The cost of a study (`scripts/bench_study.py`)") == (
        "the-cost-of-a-study-scriptsbench_studypy"
    )


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most 250)"


def test_readme_setup_commands_are_what_ci_runs():
    """The README's first code block holds the two set-up commands; the second is exactly the
    command .ci/run runs, the first installs with the same script."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```bash\n(.*?)^```", readme, re.M | re.S)
    assert block, "README.md: no bash block"
    cmds = [line.split("   #")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(cmds) == 2, f"README.md's first block should hold the two set-up commands: {cmds}"
    ci = [
        line.strip()
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line.startswith("scripts/setup.sh")
    ]
    assert ci == [cmds[1]], f".ci/run runs {ci}, the README says {cmds[1]!r}"
    assert cmds[0].startswith("scripts/setup.sh ") and (ROOT / "scripts/setup.sh").is_file()
