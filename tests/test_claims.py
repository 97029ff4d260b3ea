"""Every number the results tables of the recipe READMEs and the top-level README's results lines
quote is held against the study.json it came from, so a sentence cannot drift from its data.

Conventions (what "agrees" means):

- A quoted number agrees with a value when the value rounds to it at the precision shown: a
  quoted 0.6630 is any value in [0.66295, 0.66305] (a tie either way passes); 2.13e-4 is read
  at its mantissa's precision; a leading "<" or "≤" bound holds strictly / after rounding. "−"
  and "-" are both minus signs; a trailing "×" or "%" is dropped.
- Recipe tables are those under a README's "## Results" heading. Each column is read by its
  header (`COLUMN_HANDLERS`); the workload is the table's `workload` column, else the bold
  `**name**` line above the table, else the study's one workload. A cell "–" is a claim
  too: the data has no such number there. An empty cell quotes nothing (an empty edge warning
  says there is none).
- The row's record is the arm's comparison with the baseline; in a table with a
  "vs (baseline, same compute)" or "equal-compute baseline" column, the arm's equal-compute
  comparison; in an equal-compute baseline's row (`none@X`) whose diff cell reads "X against
  it: ...", X's equal-compute comparison; in a table whose diff column is named in
  `VERSUS_COLUMNS`, the arms' compare: record.
- Tables whose numbers are not in study.json are listed in `UNCHECKED_TABLES` with the reason,
  cells partly so in `UNCHECKED_CELLS`; a README with no study data in `NOT_CHECKED`. An
  unknown table header or column fails the test.
- The top-level README: every number-like token of each recipe line's verdict is mapped in
  `TOP` (in order of appearance) to its data (`Ref`) or named as a non-data token (`Text`);
  the commit column's hashes must be among the study's invocations.
- experiments/README.md: the same for each study's status cell (`INDEX`), commit hashes left
  out of the tokens.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from runner.stats import performance_profile
from runner.study import report

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"

# README -> why its numbers cannot be checked (the test requires it to have no study.json).
NOT_CHECKED = {
    "rdrop_vs_adversarial_tweets": "not run under the study protocol (a GPU study): no study.json",
}

# (recipe, header line) -> why that results table is not checked against study.json.
UNCHECKED_TABLES = {
    (
        "flooding",
        "| arm | clean: final/test/loss | clean: final train/loss | noisy: final/test/loss | "
        "noisy: final train/loss |",
    ): "the confirmation runs' final losses come from their run dirs (git-ignored) through "
    "analysis.py, not from study.json",
}

# (recipe, column) -> (the check made instead, why the rest of the cell is not checked)
UNCHECKED_CELLS = {
    (recipe, "ms / step (rounds)"): (
        lambda row, cell: cell_ms(row, cell.split(" (")[0]),
        "the timing rounds in brackets are read from runs/_cost (git-ignored) by analysis.py; "
        "study.json of this study keeps only the fastest (checked)",
    )
    for recipe in ("rdrop_vs_adversarial", "rdrop_vs_adversarial_d0")
}

# a diff column naming a compare: pair -> (arm, the arm it is compared with)
VERSUS_COLUMNS = {"FGM − noise [95% CI]": ("fgm", "noise")}

# short names of chosen values in the condensed tables -> the key's last part
SHORT_KEYS = {"α": "alpha", "wd": "weight_decay"}


# -- data -----------------------------------------------------------------------------------


@cache
def load_study(recipe: str, folder: str = "study") -> dict:
    return json.loads((EXP / recipe / folder / "study.json").read_text())


def workloads_of(study: dict) -> dict:
    return report.workloads(study)


def ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out (Holm 1979), in the order given."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, run = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = run
    return out


# -- numbers --------------------------------------------------------------------------------

NUM = re.compile(r"^([<≤]?)\s*([+\-]?)(\d+(?:\.\d*)?)(?:e([+\-]?\d+))?$")


def norm(text: str) -> str:
    return text.replace("−", "-").replace("**", "").strip().rstrip("×%").strip()


def agrees(text: str, x, scale: float = 1.0) -> bool:
    """Whether the value x (times scale) rounds to the quoted number `text` (module docstring)."""
    m = NUM.match(norm(text))
    if not m or not ok(x):
        return False
    bound, sign, digits, exp = m.groups()
    q = float(sign + digits + (f"e{exp}" if exp else ""))
    dec = len(digits.split(".")[1]) if "." in digits else 0
    tol = 0.5 * 10.0 ** (-dec + (int(exp) if exp else 0)) * (1 + 1e-9) + 1e-15
    v = x * scale
    if bound == "<":
        return v < q
    if bound == "≤":
        return v <= q + tol
    return abs(v - q) <= tol


# -- the recipe tables ----------------------------------------------------------------------


def split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def results_tables(text: str) -> list[tuple[int, str | None, str, list[list[str]]]]:
    """(line number, the bold workload line above or None, header line, rows) of every table
    under a '## Results' heading."""
    lines, out, in_results, i = text.split("\n"), [], False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            in_results = line.startswith("## Results")
        if in_results and line.startswith("|") and i + 1 < len(lines):
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            bold = re.match(r"^\*\*([^*]+)\*\*", lines[j]) if j >= 0 else None
            k = i + 2
            while k < len(lines) and lines[k].startswith("|"):
                k += 1
            rows = [split_row(x) for x in lines[i + 2 : k]]
            out.append((i + 1, bold.group(1) if bold else None, line.strip(), rows))
            i = k
            continue
        i += 1
    return out


@dataclass
class Row:
    arms: dict
    arm: str
    rec: dict | None  # the comparison the row's diff/p/MDE cells quote
    verdict: str | None  # that comparison's verdict
    problems: list

    def bad(self, what: str, cell: str, value) -> None:
        self.problems.append(f"{self.arm}: {what} {cell!r} but study.json has {value!r}")

    @property
    def a(self) -> dict:
        return self.arms[self.arm]


def num_cell(row: Row, what: str, cell: str, x, scale: float = 1.0) -> None:
    if cell == "":
        return  # not quoted in this cell (fgm_vs_noise's none@fgm row quotes it in the diff's)
    if cell == "–":
        if ok(x):
            row.bad(what, cell, x)
    elif not agrees(cell, x, scale):
        row.bad(what, cell, x)


def rec_field(row: Row, field: str):
    return (row.rec or {}).get(field)


def cell_mean(row: Row, cell: str, final: dict | None = None) -> None:
    final = final if final is not None else row.a.get("final") or {}
    if cell in ("–", ""):
        return num_cell(row, "mean", cell, final.get("mean"))
    m = re.match(r"^(\S+) ± (\S+)$", cell)
    if not m:
        return row.bad("mean ± CI unreadable", cell, final.get("mean"))
    lo, hi = (final.get("ci95") or [None, None])[:2]
    num_cell(row, "mean", m.group(1), final.get("mean"))
    num_cell(row, "95% CI half-width", m.group(2), (hi - lo) / 2 if ok(lo) and ok(hi) else None)


def cell_diff(row: Row, cell: str) -> None:
    cell = re.sub(r"^\w+ against it: ", "", cell)  # the condensed none@X row: X against it
    m = re.match(r"^(\S+) \[(\S+), (\S+)\](?:, p_holm (.+))?$", cell)
    if cell in ("–", "", "baseline"):
        if ok(rec_field(row, "mean")):
            row.bad("diff", cell, rec_field(row, "mean"))
        return
    if not m:
        num_cell(row, "diff", cell, rec_field(row, "mean"))
        lo, hi = (rec_field(row, "ci95") or [None, None])[:2]
        if ok(lo) and lo != hi:
            row.bad("diff without its CI", cell, [lo, hi])
        return
    lo, hi = (rec_field(row, "ci95") or [None, None])[:2]
    num_cell(row, "diff", m.group(1), rec_field(row, "mean"))
    num_cell(row, "diff CI low", m.group(2), lo)
    num_cell(row, "diff CI high", m.group(3), hi)
    if m.group(4):
        num_cell(row, "p_holm", m.group(4), rec_field(row, "p_holm"))


def cell_p(field: str):
    return lambda row, cell: num_cell(row, field, cell, rec_field(row, field))


def cell_p_g3(row: Row, cell: str) -> None:
    """analysis.md's p (Holm): three significant figures."""
    x = rec_field(row, "p_holm")
    if not (ok(x) and f"{x:.3g}" == cell) and not (cell == "" and not ok(x)):
        row.bad("p (Holm)", cell, x)


def cell_test(row: Row, cell: str) -> None:
    if cell != "" and cell != (rec_field(row, "test") or "–"):
        row.bad("test", cell, rec_field(row, "test"))


def cell_n(row: Row, cell: str) -> None:
    if cell != str((row.a.get("final") or {}).get("n")):
        row.bad("n", cell, (row.a.get("final") or {}).get("n"))


def cell_failed(row: Row, cell: str) -> None:
    f = row.a.get("final") or {}
    want = f"{f.get('failed') or 0}/{(f.get('n') or 0) + (f.get('failed') or 0)}"
    if cell != want:
        row.bad("failed k/n", cell, want)


def cell_cost(row: Row, cell: str) -> None:
    num_cell(row, "cost ratio", cell, (row.a.get("cost") or {}).get("ratio"))


VERDICT_NOTE = re.compile(r"^(.*?)(?: \((.*)\))?$")


def cell_verdict(row: Row, cell: str) -> None:
    text = cell.replace("**", "")
    a = row.a
    if a.get("equal_compute_of"):
        of = a["equal_compute_of"]
        m = re.match(rf"^{re.escape(of)} (better|worse) at equal compute$", text)
        if m:
            want = (row.arms[of].get("equal_compute") or {}).get("verdict")
            if m.group(1) != want:
                row.bad("verdict at equal compute", cell, want)
            return
    main, note = VERDICT_NOTE.match(text).groups()
    want = row.verdict
    for arm in (row.arm, row.arm.upper()):  # "FGM better": the compare: record's verdict
        if main.startswith(arm + " "):
            main = main[len(arm) + 1 :]
    if main != want:
        row.bad("verdict", cell, want)
    if note:
        ec = (a.get("equal_compute") or {}).get("verdict")
        expect = {
            "also at same compute": ec == want,
            "not at same compute": ec is not None and ec != want,
            "better than its equal-compute baseline": ec == "better",
        }
        if note not in expect or not expect[note]:
            row.bad("verdict note", note, ec)


def chosen_full(row: Row, cell: str) -> None:
    chosen = row.a.get("chosen") or {}
    if cell in ("–", "") and not chosen:
        return
    items = cell.split(", ")
    if not all("=" in kv for kv in items):
        return row.bad("chosen values unreadable", cell, chosen)
    got = dict(kv.split("=", 1) for kv in items)
    if set(got) != set(chosen):
        row.bad("chosen keys", sorted(got), sorted(chosen))
    for k, v in got.items():
        num_cell(row, f"chosen {k}", v, chosen.get(k))


CHOSEN_ITEM = re.compile(r"(\w+|α) (\([^)]*\)|[^\s,]+)( \((low|high) edge\))?(?:, |$)")


def chosen_short(row: Row, cell: str) -> None:
    """The condensed form: 'lr 2.13e-4, p 0.67', 'lr 0.00033 (low edge)', 'betas (0.95, 0.99)';
    an edge mark must match the arm's edge warnings both ways (no edge column there)."""
    chosen, seen = row.a.get("chosen") or {}, set()
    edges = {(e.get("key"), e.get("side")) for e in row.a.get("edge") or []}
    marked = set()
    items = list(CHOSEN_ITEM.finditer(cell))
    if "".join(m.group(0) for m in items) != cell:
        return row.bad("chosen values unreadable", cell, chosen)
    for m in items:
        name, val, _, side = m.groups()
        name = SHORT_KEYS.get(name, name)
        if val.startswith("("):
            keys = [k for k in chosen if k.split(".")[-2:-1] == [name]]
            vals = [v.strip() for v in val.strip("()").split(",")]
        else:
            keys = [k for k in chosen if k.split(".")[-1] == name]
            vals = [val]
        if len(keys) != len(vals):
            row.bad(f"chosen {name}: no single key", cell, sorted(chosen))
            continue
        for k, v in zip(sorted(keys), vals):
            seen.add(k)
            num_cell(row, f"chosen {k}", v, chosen[k])
            if side:
                marked.add((k, side))
    if seen != set(chosen):
        row.bad("chosen keys", sorted(seen), sorted(chosen))
    if marked != edges:
        row.bad("edge marks", sorted(marked), sorted(edges))


def cell_chosen(row: Row, cell: str) -> None:
    (chosen_full if "=" in cell else chosen_short)(row, cell)


EDGE_ITEM = re.compile(r"^(\S+)=(\S+) at the (low|high) edge of (.+): widen the range$")


def cell_edge(row: Row, cell: str) -> None:
    edges = row.a.get("edge") or []
    items = [x for x in cell.split("; ") if x]
    if len(items) != len(edges):
        return row.bad("edge warnings", cell, edges)
    for item, e in zip(items, edges):
        m = EDGE_ITEM.match(item)
        if not m or (m.group(1), m.group(3), m.group(4)) != (
            e.get("key"),
            e.get("side"),
            e.get("range"),
        ):
            row.bad("edge warning", item, e)
        else:
            num_cell(row, "edge value", m.group(2), e.get("value"))


def cell_ttt(row: Row, cell: str) -> None:
    t = row.a.get("target") or {}
    m = re.match(r"^(\d+) steps, (\S+) s \((\d+)/(\d+)\)$", cell)
    if m:
        num_cell(row, "steps to target", m.group(1), t.get("mean_steps"))
        num_cell(row, "seconds to target", m.group(2), t.get("mean_seconds"))
        if (int(m.group(3)), int(m.group(4))) != (t.get("reached"), t.get("n")):
            row.bad("reached", cell, (t.get("reached"), t.get("n")))
    elif cell != f"not reached (0/{t.get('n', 0)})" or t.get("reached"):
        row.bad("time to target", cell, t)


def cell_vs(row: Row, cell: str) -> None:
    want = (row.a.get("equal_compute") or {}).get("vs")
    if cell != (want or "baseline"):
        row.bad("equal-compute baseline", cell, want)


def cell_vs_mean(row: Row, cell: str) -> None:
    vs = (row.a.get("equal_compute") or {}).get("vs")
    cell_mean(row, cell, (row.arms.get(vs) or {}).get("final") or {})


def cell_same_compute(row: Row, cell: str) -> None:
    """regularisers_profile's 'diff, p_holm' against the equal-compute baseline, or
    '(1.07×: none)' where the arm cost too little to get one."""
    ec = row.a.get("equal_compute")
    m = re.match(r"^\((\S+): none\)$", cell)
    if m:
        cell_cost(row, m.group(1))
        if ec:
            row.bad("no equal-compute baseline", cell, ec.get("vs"))
    elif cell == "–":
        if ec:
            row.bad("no equal-compute baseline", cell, ec.get("vs"))
    elif cell.count(", ") != 1:
        row.bad("'diff, p_holm' unreadable", cell, ec)
    else:
        d, p = cell.split(", ")
        num_cell(row, "diff at same compute", d, ((ec or {}).get("diff") or {}).get("mean"))
        num_cell(row, "p_holm at same compute", p, ((ec or {}).get("diff") or {}).get("p_holm"))


def cell_ms(row: Row, cell: str) -> None:
    c = row.a.get("cost") or {}
    m = re.match(r"^(\S+)(?: \((.*)\))?$", cell)
    if not m:
        return row.bad("ms / step", cell, c)
    num_cell(row, "ms per step", m.group(1), c.get("sec_per_step"), 1e3)
    if m.group(2) is None and c.get("rounds"):
        return row.bad("ms / step without its rounds", cell, c.get("rounds"))
    rounds = m.group(2).split(", ") if m.group(2) is not None else []
    if len(rounds) != len(c.get("rounds") or []):
        return row.bad("timing rounds", cell, c.get("rounds"))
    for r, x in zip(rounds, c.get("rounds") or []):
        num_cell(row, "timing round ms", r, x, 1e3)


def cell_source(row: Row, cell: str) -> None:
    if cell != (row.a.get("cost") or {}).get("source"):
        row.bad("cost source", cell, (row.a.get("cost") or {}).get("source"))


def cell_length(row: Row, cell: str) -> None:
    vs = (row.a.get("equal_compute") or {}).get("vs")
    ov = (row.arms.get(vs) or {}).get("overrides") or []
    steps = next((o.split("=")[1] for o in ov if o.startswith("trainer.max_steps=")), None)
    if cell != (f"{steps} steps" if steps else ""):
        row.bad("equal-compute length", cell, steps)


def cell_verdict_or_blank(row: Row, cell: str) -> None:
    if cell or row.rec is not None:
        cell_verdict(row, cell)


COLUMN_HANDLERS = {
    "chosen values": cell_chosen,
    "edge warning": cell_edge,
    "n": cell_n,
    "p": cell_p("p"),
    "p_holm": cell_p("p_holm"),
    "p (Holm)": cell_p_g3,
    "test": cell_test,
    "MDE": cell_p("mde"),
    "failed k/n": cell_failed,
    "failed": cell_failed,
    "cost ×": cell_cost,
    "× baseline": cell_cost,
    "verdict": cell_verdict_or_blank,
    "vs (baseline, same compute)": cell_vs,
    "equal-compute baseline": cell_vs,
    "its mean ± 95% CI": cell_vs_mean,
    "vs baseline at same compute: diff, p_holm": cell_same_compute,
    "ms / step (rounds)": cell_ms,
    "source": cell_source,
    "its length": cell_length,
}


def handler(head: str):
    if head in COLUMN_HANDLERS:
        return COLUMN_HANDLERS[head]
    if head.startswith("diff") or head in VERSUS_COLUMNS:
        return cell_diff
    if re.match(r"^test/\w+", head):
        return cell_mean
    if head.startswith("time to "):
        return cell_ttt
    return None


def arm_name(cell: str) -> tuple[str, str | None]:
    """The arm named in the cell and a parenthetical of numbers in it ('none@fgm (1.53× the
    steps)': the cost ratio), or None."""
    name = cell.replace("`", "").replace(" (baseline)", "").strip()
    m = re.match(r"^(\S+) \((\S+)× the steps\)$", name)
    return (m.group(1), m.group(2) + "×") if m else (name, None)


def row_record(head: list[str], by: dict, arms: dict, arm: str) -> tuple[dict | None, str | None]:
    """The comparison the row's diff/p/MDE cells quote and the verdict its verdict cell states
    (module docstring)."""
    a = arms[arm]
    versus = next((VERSUS_COLUMNS[h] for h in head if h in VERSUS_COLUMNS), None)
    if versus:
        rec = next((x for x in arms[versus[0]].get("versus") or [] if x["vs"] == versus[1]), {})
        return rec.get("diff"), rec.get("verdict")
    diff_cell = next((c for h, c in by.items() if h.startswith("diff")), "")
    if a.get("equal_compute_of") and " against it: " in diff_cell:
        ec = arms[a["equal_compute_of"]].get("equal_compute") or {}
        return ec.get("diff"), a.get("verdict")
    if {"vs (baseline, same compute)", "equal-compute baseline"} & set(head):
        ec = a.get("equal_compute") or {}
        return ec.get("diff"), ec.get("verdict")
    return a.get("diff"), a.get("verdict")


def check_comparison_table(recipe, study, wls, bold, head, rows) -> list[str]:
    problems = []
    for cells in rows:
        if len(cells) != len(head):
            problems.append(f"row has {len(cells)} cells for {len(head)} columns: {cells}")
            continue
        by = dict(zip(head, cells))
        wl = by.get("workload") or bold or (next(iter(wls)) if len(wls) == 1 else None)
        if wl is None:
            problems.append(f"no workload named for the table (one of {sorted(wls)})")
            continue
        if wl not in wls:
            problems.append(f"workload {wl!r} not in study.json ({sorted(wls)})")
            continue
        arms = wls[wl]
        if versus := next((VERSUS_COLUMNS[h] for h in head if h in VERSUS_COLUMNS), None):
            arm, extra = versus[0], None
        else:
            arm, extra = arm_name(by["arm"])
        if arm not in arms:
            problems.append(f"{wl}: arm {arm!r} not in study.json ({sorted(arms)})")
            continue
        rec, verdict = row_record(head, by, arms, arm)
        if arm == study.get("baseline"):
            rec, verdict = None, "baseline"
        row = Row(arms, arm, rec, verdict, [])
        if extra:
            cell_cost(row, extra)
        for h, cell in by.items():
            if h in ("arm", "workload"):
                continue
            fn = handler(h)
            if fn is None:
                problems.append(f"column {h!r} has no check (add one to COLUMN_HANDLERS)")
                continue
            if (recipe, h) in UNCHECKED_CELLS:
                fn = UNCHECKED_CELLS[recipe, h][0]
            if fn is cell_verdict_or_blank and arm == study.get("baseline"):
                if cell not in ("baseline", ""):
                    row.bad("verdict", cell, "baseline")
                continue
            fn(row, cell)
        problems += [f"{wl}: {p}" for p in row.problems]
    return problems


# the clipping analysis' lr regions, read off the header: 'lr < 0.5', '0.5 ≤ lr < 0.7', 'lr ≥ 0.7'
REGION = re.compile(r"^(?:(\S+) ≤ )?lr (?:< (\S+)|≥ (\S+)): failed$")


def check_region_table(recipe, study, wls, bold, head, rows) -> list[str]:
    """clipping's divergence table: per lr region, the tuning trials' failed k/n and best
    select value, counted from the trials in study.json."""
    problems = []
    for cells in rows:
        by = dict(zip(head, cells))
        if by["arm"] not in wls.get(by["workload"], {}):
            problems.append(f"{by['workload']} {by['arm']}: no such workload and arm")
            continue
        trials = wls[by["workload"]][by["arm"]].get("trials") or []
        for i, h in enumerate(head):
            m = REGION.match(h)
            if not m:
                continue
            lo = float(m.group(1) or m.group(3) or "-inf")
            hi = float(m.group(2) or "inf")
            inside = [t for t in trials if lo <= t["params"]["optimizer.lr"] < hi]
            failed = sum(t.get("status") == "failed" for t in inside)
            vals = [t["select_value"] for t in inside if ok(t.get("select_value"))]
            where = f"{by['workload']} {by['arm']} {h}"
            if cells[i] != f"{failed}/{len(inside)}":
                problems.append(f"{where}: {cells[i]!r}, trials say {failed}/{len(inside)}")
            if not agrees(cells[i + 1], max(vals) if vals else None):
                problems.append(f"{where}: best val {cells[i + 1]!r}, trials say {vals}")
    return problems


def profile_scores(wls: dict) -> dict:
    return {
        w: {
            a: (v.get("final") or {}).get("mean")
            for a, v in arms.items()
            if not v.get("equal_compute_of")
        }
        for w, arms in wls.items()
    }


def check_profile_table(recipe, study, wls, bold, head, rows) -> list[str]:
    """A performance profile over the workloads (runner.stats.performance_profile on the final
    means), or its seed-bootstrap band (cells 'low–high'; the report's own bootstrap)."""
    taus = [float(h.split("=")[1]) for h in head[1:]]
    band = any("–" in c for r in rows for c in r[1:])
    if band:
        b = report.profile_band(report.profile_boot(study, wls), taus)
        want = {a: [f"{x:.2f}–{y:.2f}" for x, y in zip(*lh)] for a, lh in b.items()}
    else:
        prof = performance_profile(profile_scores(wls), taus, report.higher_better(study))
        want = {a: [f"{x:.2f}" for x in fr] for a, fr in prof.items()}
    problems = [f"profile {r[0]}: {r[1:]} but the data give {want.get(r[0])}" for r in rows]
    problems = [p for p, r in zip(problems, rows) if want.get(r[0]) != r[1:]]
    if sorted(r[0] for r in rows) != sorted(want):
        problems.append(f"profile arms {sorted(r[0] for r in rows)} but the data {sorted(want)}")
    return problems


def table_kind(head: list[str]):
    if head[0] == "arm" and head[1].startswith("τ = "):
        return check_profile_table
    if any(REGION.match(h) for h in head):
        return check_region_table
    if "arm" in head or any(h in VERSUS_COLUMNS for h in head):
        return check_comparison_table
    return None


def check_readme(recipe: str, text: str) -> tuple[list[str], int]:
    """Problems in a recipe README's results tables and how many tables were checked."""
    study = load_study(recipe)
    wls = workloads_of(study)
    problems, checked = [], 0
    for line, bold, header, rows in results_tables(text):
        if (recipe, header) in UNCHECKED_TABLES:
            continue
        head = split_row(header)
        kind = table_kind(head)
        if kind is None:
            problems.append(f"line {line}: table {header!r} neither checked nor listed")
            continue
        wl_bold = bold if bold in wls else None
        found = kind(recipe, study, wls, wl_bold, head, rows)
        problems += [f"line {line}: {p}" for p in found]
        checked += 1
    return problems, checked


def recipes() -> list[str]:
    return sorted(p.parent.name for p in EXP.glob("*/README.md"))


@pytest.mark.parametrize("recipe", recipes())
def test_recipe_results_tables_match_study_json(recipe):
    if recipe in NOT_CHECKED:
        assert not list((EXP / recipe).glob("study*/study.json")), (
            f"{recipe} is listed as not checkable ({NOT_CHECKED[recipe]}) but has a study.json"
        )
        return
    problems, checked = check_readme(recipe, (EXP / recipe / "README.md").read_text())
    assert checked, f"{recipe}: no results table found to check"
    assert not problems, f"{recipe}/README.md:\n" + "\n".join(problems)


def test_unchecked_tables_still_exist():
    """A listed exception that no longer matches a table would hide nothing: drop it."""
    for recipe, header in UNCHECKED_TABLES:
        text = (EXP / recipe / "README.md").read_text()
        assert header in [h for _, _, h, _ in results_tables(text)], (recipe, header)


# -- the top-level README's results lines ---------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A quoted number's data: `field` of `arm` on `workload` in experiments/<recipe>/<study>/
    study.json, times `scale` (100: points), compared by `op`: "=" (rounds to the quote), "<"
    or "≤" (a bound). `workload`, `arm` and `study` may be tuples, with `agg`: "min" / "max"
    (a range's ends), "mean", "sum" or "each" (every value agrees); min, max and mean leave out
    arms without the value (an arm identical to the baseline has no MDE)."""

    recipe: str
    workload: str | tuple
    arm: str | tuple
    field: str
    scale: float = 1.0
    op: str = "="
    agg: str | None = None
    study: str | tuple = "study"


@dataclass(frozen=True)
class Text:
    """A number-like token that is no figure of the data: why."""

    why: str


P = 100.0  # differences and MDEs are quoted in points


def field_value(ref: Ref, wl: str, arm: str, folder: str = "study"):
    """One arm's value of `ref.field`: diff, lo, hi, p, p_holm, mde (its comparison with the
    baseline), ec_diff, ec_p_holm (with the equal-compute baseline), vs:<arm>:diff / p_holm
    (its compare: record), cost, chosen:<key>, p_holm_without:<arm> (Holm over the family
    without that arm, recomputed here), pct_behind_best (100 × (best mean / its mean − 1)
    among the study's own arms), best (1 where its mean is the highest of the own arms, else
    0), mean_minus_base (its mean − the baseline's), n, count_below:<x> (confirmation values
    below x), chosen_ratio:<key>:<arm> (that arm's chosen value / this arm's),
    failed_trials_from:<lr> ((failed, n) of its tuning trials at lr ≥ that)."""
    study = load_study(ref.recipe, folder)
    arms = workloads_of(study)[wl]
    a = arms[arm]
    f = ref.field
    diff = a.get("diff") or {}
    if f in ("diff", "p", "p_holm", "mde"):
        return diff.get("mean" if f == "diff" else f)
    if f in ("lo", "hi"):
        return (diff.get("ci95") or [None, None])[f == "hi"]
    if f.startswith("ec_"):
        d = (a.get("equal_compute") or {}).get("diff") or {}
        return d.get("mean" if f == "ec_diff" else f[3:])
    if f.startswith("vs:"):
        _, other, key = f.split(":")
        rec = next(x for x in a.get("versus") or [] if x["vs"] == other)["diff"]
        return rec.get("mean" if key == "diff" else key)
    if f == "cost":
        return (a.get("cost") or {}).get("ratio")
    if f.startswith("chosen:"):
        return (a.get("chosen") or {}).get(f.split(":", 1)[1])
    if f.startswith("p_holm_without:"):
        left_out = f.split(":", 1)[1]
        family = [
            n
            for n, v in arms.items()
            if n not in (study["baseline"], left_out) and not v.get("equal_compute_of")
        ]
        adjusted = holm([arms[n]["diff"]["p"] for n in family])
        return adjusted[family.index(arm)]
    means = [v["final"]["mean"] for v in arms.values() if not v.get("equal_compute_of")]
    if f == "pct_behind_best":
        return 100 * (max(means) / a["final"]["mean"] - 1)
    if f == "best":
        return int(a["final"]["mean"] == max(means))
    if f == "mean_minus_base":
        return a["final"]["mean"] - arms[study["baseline"]]["final"]["mean"]
    if f == "n":
        return a["final"]["n"]
    if f.startswith("count_below:"):
        return sum(x < float(f.split(":")[1]) for x in a["final"]["values"])
    if f.startswith("chosen_ratio:"):
        _, key, other = f.split(":")
        return arms[other]["chosen"][key] / a["chosen"][key]
    if f.startswith("failed_trials_from:"):
        lo = float(f.split(":", 1)[1])
        inside = [t for t in a.get("trials") or [] if t["params"]["optimizer.lr"] >= lo]
        return (sum(t.get("status") == "failed" for t in inside), len(inside))
    raise KeyError(f"unknown field {f!r}")


def ref_agrees(token: str, ref: Ref) -> tuple[bool, object]:
    def many(x):
        return x if isinstance(x, tuple) else (x,)

    if ref.arm == "*rest*":  # regularisers_profile's 'the rest': per workload, rp_rest
        pairs = [(w, a) for w in RP_ALL for a in rp_rest(w)]
    else:
        pairs = [(w, a) for w in many(ref.workload) for a in many(ref.arm)]
    values = [field_value(ref, w, a, folder) for folder in many(ref.study) for w, a in pairs]
    if ref.field.startswith("failed_trials_from:"):  # a k/n count summed over the arms
        k, n = sum(v[0] for v in values), sum(v[1] for v in values)
        return token == f"{k}/{n}", f"{k}/{n}"
    quoted = {"=": "", "<": "<", "≤": "≤"}[ref.op] + token
    if ref.agg == "each" or len(values) == 1:
        return all(agrees(quoted, v, ref.scale) for v in values), values
    if ref.agg == "sum":
        return agrees(quoted, sum(values), ref.scale), values
    have = [v for v in values if ok(v)]
    x = {"min": min, "max": max, "mean": lambda v: sum(v) / len(v)}[ref.agg](have)
    return agrees(quoted, x, ref.scale), values


# recipe -> its verdict's number-like tokens, in order, each with its data or why it has none
TOP = {
    "flooding": [
        ("0.4", Text("the arm b0.4's level")),
        ("−7.1", Ref("flooding", "clean", "b0.4", "diff", P)),
        ("0.001", Ref("flooding", "clean", "b0.4", "p_holm", op="<")),
        ("0.05", Text("the arm b0.05's level")),
        ("0.2", Text("the arm b0.2's level")),
        ("−0.2", Ref("flooding", "clean", ("b0.05", "b0.1", "b0.2"), "diff", P, agg="max")),
        ("−1.7", Ref("flooding", "clean", ("b0.05", "b0.1", "b0.2"), "diff", P, agg="min")),
        ("20", Text("the noisy workload's label noise, a design setting (study.yaml)")),
        ("0.012", Ref("flooding", "clean", "flood", "chosen:reg.flooding.b")),
    ],
    "derived": [
        ("+2.0", Ref("derived", "mlp_d0.1", "layer_adapt", "diff", P)),
        ("+1.6", Ref("derived", "mlp_d0.1", "accum4x25", "diff", P)),
        ("0.1", Text("the dropout of the workload mlp_d0.1")),
        ("0.051", Ref("derived", "mlp_d0.1", ("layer_adapt", "accum4x25"), "p_holm", agg="each")),
        (
            "0.041",
            Ref(
                "derived",
                "mlp_d0.1",
                ("layer_adapt", "accum4x25"),
                "p_holm_without:lazy",
                agg="each",
            ),
        ),
    ],
    "derived_text": [
        ("+0.7", Ref("derived_text", "main", "lazy", "diff", P)),
        ("0.13", Ref("derived_text", "main", "lazy", "p_holm")),
        ("+1.0", Ref("derived_text", "main", "ema", "diff", P)),
        ("0.079", Ref("derived_text", "main", "ema", "p_holm")),
    ],
    "clipping": [
        (
            "1.6",
            Ref(
                "clipping",
                ("mlp_d0", "mlp_d0.1"),
                ("norm", "adaptive", "value"),
                "mde",
                P,
                agg="min",
            ),
        ),
        (
            "4.5",
            Ref(
                "clipping",
                ("mlp_d0", "mlp_d0.1"),
                ("norm", "adaptive", "value"),
                "mde",
                P,
                agg="max",
            ),
        ),
        ("0.7", Text("the analysis' diverging-region bound (clipping/analysis.py DIVERGING_FROM)")),
        ("7/10", Ref("clipping", ("mlp_d0", "mlp_d0.1"), "none", "failed_trials_from:0.7")),
        (
            "0/30",
            Ref(
                "clipping",
                ("mlp_d0", "mlp_d0.1"),
                ("norm", "adaptive", "value"),
                "failed_trials_from:0.7",
            ),
        ),
    ],
    "lion_vs_adamw": [
        ("−3.0", Ref("lion_vs_adamw", "mlp_d0", "lion", "diff", P)),
        ("0.001", Ref("lion_vs_adamw", "mlp_d0", "lion", "p_holm")),
        ("0.1", Text("the dropout of the workload mlp_d0.1")),
        ("+1.5", Ref("lion_vs_adamw", "mlp_d0.1", "lion", "diff", P)),
        ("0.033", Ref("lion_vs_adamw", "mlp_d0.1", "lion", "p_holm")),
        ("1.9", Ref("lion_vs_adamw", "mlp_d0.1", "lion", "mde", P)),
    ],
    "lion_vs_adamw_tweets": [
        ("800", Text("the tweets' train size, a design setting (study.yaml)")),
        ("+0.4", Ref("lion_vs_adamw_tweets", "main", "lion", "diff", P)),
        ("−1.4", Ref("lion_vs_adamw_tweets", "main", "lion", "lo", P)),
        ("+2.2", Ref("lion_vs_adamw_tweets", "main", "lion", "hi", P)),
        ("2.4", Ref("lion_vs_adamw_tweets", "main", "lion", "mde", P)),
    ],
    "rdrop_vs_adversarial": [
        ("0.1", Text("the CNN's dropout, a design setting (study.yaml)")),
        ("+0.6", Ref("rdrop_vs_adversarial", "main", "fgm_blog", "diff", P)),
        ("0.42", Ref("rdrop_vs_adversarial", "main", "fgm_blog", "p_holm")),
        ("−0.9", Ref("rdrop_vs_adversarial", "main", "rdrop", "diff", P)),
        ("−0.8", Ref("rdrop_vs_adversarial", "main", "pgd", "diff", P)),
    ],
    "rdrop_vs_adversarial_d0": [
        ("0", Text("the CNN's dropout, a design setting (study.yaml)")),
        ("+1.5", Ref("rdrop_vs_adversarial_d0", "main", "pgd", "diff", P)),
        ("0.001", Ref("rdrop_vs_adversarial_d0", "main", "pgd", "p_holm", op="<")),
        ("+1.6", Ref("rdrop_vs_adversarial_d0", "main", "pgd", "ec_diff", P)),
        ("4.54", Ref("rdrop_vs_adversarial_d0", "main", "pgd", "cost")),
        ("+1.2", Ref("rdrop_vs_adversarial_d0", "main", "vat", "diff", P)),
        ("0.015", Ref("rdrop_vs_adversarial_d0", "main", "vat", "p_holm")),
    ],
    "rdrop_vs_adversarial_tweets": [
        ("50", Text("the pre-protocol runs' length (results/HISTORY.md); no study ran")),
    ],
    "childtuning": [
        ("800", Text("the tweets' train size, a design setting (study.yaml)")),
        ("+0.3", Ref("childtuning", "main", "childtuning_f", "diff", P)),
        ("+0.1", Ref("childtuning", "main", "childtuning_d", "diff", P)),
        (
            "2.3",
            Ref("childtuning", "main", ("childtuning_f", "childtuning_d"), "mde", P, agg="min"),
        ),
        (
            "2.4",
            Ref("childtuning", "main", ("childtuning_f", "childtuning_d"), "mde", P, agg="max"),
        ),
    ],
    "semi_supervised_vat": [
        ("10", Text("the labelled fraction, a design setting (study.yaml)")),
        ("0.1", Text("the dropout of the workload cnn_d0.1")),
        (
            "+5.8",
            Ref("semi_supervised_vat", "cnn_d0.1", "rdrop", "diff", P, study="study_first_run"),
        ),
        (
            "0.023",
            Ref("semi_supervised_vat", "cnn_d0.1", "rdrop", "p_holm", study="study_first_run"),
        ),
        ("−11.8", Ref("semi_supervised_vat", "cnn_d0.1", "rdrop", "diff", P)),
        ("+2.5", Ref("semi_supervised_vat", "cnn_d0", "vat", "diff", P)),
        ("0.071", Ref("semi_supervised_vat", "cnn_d0", "vat", "p_holm")),
    ],
    "multilabel_rdrop": [
        ("−0.4", Ref("multilabel_rdrop", "cnn_d0.1", "rdrop", "diff", P)),
        ("1.8", Ref("multilabel_rdrop", "cnn_d0.1", "rdrop", "mde", P)),
        ("−2.4", Ref("multilabel_rdrop", "cnn_d0", "bce", "diff", P)),
        ("−2.8", Ref("multilabel_rdrop", "cnn_d0.1", "bce", "diff", P)),
        ("0.006", Ref("multilabel_rdrop", "cnn_d0", "bce", "p_holm")),
        ("0.014", Ref("multilabel_rdrop", "cnn_d0.1", "bce", "p_holm")),
    ],
    "regularisers_profile": [
        ("+6.4", Ref("regularisers_profile", "mlp_d0", "fgm", "diff", P)),
        ("+4.0", Ref("regularisers_profile", "mlp_d0.1", "fgm", "diff", P)),
        ("0.007", Ref("regularisers_profile", "mlp_d0", "fgm", "p_holm")),
        ("0.025", Ref("regularisers_profile", "mlp_d0.1", "fgm", "p_holm")),
        ("+1.8", Ref("regularisers_profile", "text", "vat", "diff", P)),
        ("0.029", Ref("regularisers_profile", "text", "vat", "p_holm")),
        ("+2.0", Ref("regularisers_profile", "text", "fgm", "diff", P)),
        ("0.10", Ref("regularisers_profile", "text", "fgm", "p_holm")),
        (
            "2",
            Ref(
                "regularisers_profile",
                ("mlp_d0", "mlp_d0.1", "cnn_d0", "cnn_d0.1", "text"),
                "fgm",
                "pct_behind_best",
                op="≤",
                agg="max",
            ),
        ),
    ],
    "fgm_vs_noise": [
        ("+7.2", Ref("fgm_vs_noise", "mlp_d0", "fgm", "diff", P)),
        ("+4.5", Ref("fgm_vs_noise", "mlp_d0.1", "fgm", "diff", P)),
        ("+6.7", Ref("fgm_vs_noise", "mlp_d0", "noise", "diff", P)),
        ("+2.4", Ref("fgm_vs_noise", "mlp_d0.1", "noise", "diff", P)),
        ("+2.1", Ref("fgm_vs_noise", "mlp_d0.1", "fgm", "vs:noise:diff", P)),
        ("0.004", Ref("fgm_vs_noise", "mlp_d0.1", "fgm", "vs:noise:p_holm")),
        ("+0.55", Ref("fgm_vs_noise", "mlp_d0", "fgm", "vs:noise:diff", P)),
    ],
}

# recipe -> the study folders whose invocations the commit column may name
COMMIT_STUDIES = {"semi_supervised_vat": ("study", "study_first_run")}

TOKEN = re.compile(r"(?<![\w.+\-−])[+\-−]?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


def top_lines(text: str) -> dict[str, tuple[str, str]]:
    """recipe -> (commit cell, verdict cell) of the README's 'Results: the blog's comparisons'
    table."""
    section = text.split("## Results: the blog's comparisons", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.split("\n"):
        m = re.match(r"^\| \[(\w+)\]\([^)]*\) \|", line)
        if m:
            _, commit, verdict = split_row(line)
            out[m.group(1)] = (commit, verdict)
    return out


def check_tokens(lines: dict[str, str], mapping: dict, name: str) -> list[str]:
    """Each recipe's line (recipe -> its text) against its mapping (recipe -> [(token, Ref or
    Text)]): the line's number-like tokens, commit hashes left out, must be those mapped, in
    order, and each Ref must agree with its data."""
    problems = []
    if sorted(lines) != sorted(mapping):
        problems.append(f"recipes in the table {sorted(lines)}, mapped {sorted(mapping)}")
    for recipe, text in lines.items():
        pairs = mapping.get(recipe, [])
        tokens = TOKEN.findall(HASH.sub("#", text))
        if tokens != [t for t, _ in pairs]:
            problems.append(
                f"{recipe}: the line's numbers {tokens} are not those mapped "
                f"{[t for t, _ in pairs]}: map each ({name}) to its data or say why it has none"
            )
            continue
        for token, spec in pairs:
            if isinstance(spec, Text):
                continue
            good, values = ref_agrees(token.replace("−", "-").replace(",", ""), spec)
            if not good:
                problems.append(f"{recipe}: {token} but study.json has {values} ({spec})")
    return problems


def check_top(text: str) -> list[str]:
    lines = top_lines(text)
    problems = check_tokens({r: verdict for r, (_, verdict) in lines.items()}, TOP, "TOP")
    for recipe, (commit, _) in lines.items():
        if recipe in NOT_CHECKED:
            if HASH.findall(commit):
                problems.append(f"{recipe}: listed as not run but names commits {commit!r}")
            continue
        runs = {
            i["commit"]
            for folder in COMMIT_STUDIES.get(recipe, ("study",))
            for i in load_study(recipe, folder).get("invocations") or []
        }
        named = HASH.findall(commit)
        if not named or not set(named) <= runs:
            problems.append(f"{recipe}: commits {named} but the study ran at {sorted(runs)}")
    return problems


def test_top_readme_results_lines_match_study_json():
    problems = check_top((ROOT / "README.md").read_text())
    assert not problems, "README.md, Results:\n" + "\n".join(problems)


# -- experiments/README.md: the index's status column -----------------------------------------

MLP = ("mlp_d0", "mlp_d0.1")
CNN = ("cnn_d0", "cnn_d0.1")
RP = "regularisers_profile"
RP_ALL = ("mlp_d0", "mlp_d0.1", "cnn_d0", "cnn_d0.1", "text")
RD = "rdrop_vs_adversarial"
RD0 = "rdrop_vs_adversarial_d0"
RD_TRICKS = ("rdrop", "fgm", "fgm_blog", "pgd", "pgd_blog", "vat", "gradpen", "rdrop_fgm")
RD_LONGER = tuple(f"none@{a}" for a in RD_TRICKS)
SSV = "semi_supervised_vat"
CT = "childtuning"
CT_ALL = ("none", "childtuning_f", "childtuning_d", "none@childtuning_f")
DER_ARMS = ("accum4x25", "lookahead", "ema", "layer_adapt", "lazy")
CLEAN_FIXED = ("b0.05", "b0.1", "b0.2")


def rp_rest(workload: str) -> tuple:
    """regularisers_profile's arms on a workload that its index line does not name."""
    named = {
        "mlp_d0": ("fgm", "flooding"),
        "mlp_d0.1": ("fgm",),
        "cnn_d0": ("flooding",),
        "cnn_d0.1": ("rdrop",),
        "text": ("vat", "fgm"),
    }[workload]
    arms = ("rdrop", "fgm", "vat", "gradpen", "flooding", "label_smoothing")
    return tuple(a for a in arms if a not in named)


def rp_mde(agg: str) -> Ref:
    """An end of the MDE range of the arms the line calls 'the rest' (`rp_rest` per workload;
    `ref_agrees` reads the "*rest*" arm that way)."""
    return Ref(RP, "*rest*", "*rest*", "mde", P, agg=agg)


# recipe -> the number-like tokens of its status cell (commit hashes left out), in order
INDEX = {
    "flooding": [
        ("0.4", Text("the arm b0.4's level")),
        ("−7.1", Ref("flooding", "clean", "b0.4", "diff", P)),
        ("0.001", Ref("flooding", "clean", "b0.4", "p_holm", op="<")),
        ("0.05", Text("the arm b0.05's level")),
        ("0.2", Text("the arm b0.2's level")),
        ("5", Ref("flooding", "clean", CLEAN_FIXED, "n", agg="each")),
        ("−0.2", Ref("flooding", "clean", CLEAN_FIXED, "diff", P, agg="max")),
        ("−1.7", Ref("flooding", "clean", CLEAN_FIXED, "diff", P, agg="min")),
        ("1.6", Ref("flooding", "clean", CLEAN_FIXED, "mde", P, agg="min")),
        ("3.0", Ref("flooding", "clean", CLEAN_FIXED, "mde", P, agg="max")),
        ("0.05", Text("the arm b0.05's level")),
        ("0.1", Text("the arm b0.1's level")),
        ("0.2", Text("the arm b0.2's level")),
        ("0.4", Text("the arm b0.4's level")),
        ("+0.6", Ref("flooding", "noisy", "b0.2", "diff", P)),
        ("+0.5", Ref("flooding", "noisy", "b0.4", "diff", P)),
        ("4.0", Ref("flooding", "noisy", ("b0.2", "b0.4"), "mde", P, agg="min")),
        ("4.2", Ref("flooding", "noisy", ("b0.2", "b0.4"), "mde", P, agg="max")),
        ("0.012", Ref("flooding", "clean", "flood", "chosen:reg.flooding.b")),
        ("0.01", Text("the tuned b's range floor (study.yaml)")),
        ("0.8", Text("the tuned b's range top (study.yaml)")),
    ],
    "derived": [
        ("2", Text("Lookahead k's range floor (study.yaml)")),
        ("200", Text("Lookahead k's range top (study.yaml)")),
        ("+2.0", Ref("derived", "mlp_d0.1", "layer_adapt", "diff", P)),
        ("0.1", Text("the dropout of the workload mlp_d0.1")),
        ("+1.6", Ref("derived", "mlp_d0.1", "accum4x25", "diff", P)),
        ("0.051", Ref("derived", "mlp_d0.1", ("layer_adapt", "accum4x25"), "p_holm", agg="each")),
        (
            "0.041",
            Ref(
                "derived",
                "mlp_d0.1",
                ("layer_adapt", "accum4x25"),
                "p_holm_without:lazy",
                agg="each",
            ),
        ),
        ("1.5", Ref("derived", MLP, DER_ARMS, "mde", P, agg="min")),
        ("3.2", Ref("derived", MLP, DER_ARMS, "mde", P, agg="max")),
        ("0.1", Text("the dropout of the workload mlp_d0.1")),
    ],
    "derived_text": [
        ("+0.7", Ref("derived_text", "main", "lazy", "diff", P)),
        ("0.13", Ref("derived_text", "main", "lazy", "p_holm")),
        ("0.9", Ref("derived_text", "main", "lazy", "mde", P)),
        ("+1.0", Ref("derived_text", "main", "ema", "diff", P)),
        ("0.9", Ref("derived_text", "main", "ema", "chosen:derived.ema.decay")),
        ("0.079", Ref("derived_text", "main", "ema", "p_holm")),
        ("0.9", Ref("derived_text", "main", DER_ARMS, "mde", P, agg="min")),
        ("1.6", Ref("derived_text", "main", DER_ARMS, "mde", P, agg="max")),
        ("−0.2", Ref("derived_text", "main", "accum4x25", "diff", P)),
        ("1.0", Ref("derived_text", "main", "accum4x25", "mde", P)),
        ("80", Text("the val curves' peak step, from the run dirs (the README's reading)")),
        ("4,000", Text("the train size, a design setting (study.yaml)")),
    ],
    "clipping": TOP["clipping"],
    "lion_vs_adamw": TOP["lion_vs_adamw"][:5],
    "rdrop_vs_adversarial": [
        ("+0.6", Ref(RD, "main", "fgm_blog", "diff", P)),
        ("0.42", Ref(RD, "main", "fgm_blog", "p_holm")),
        ("1.0", Ref(RD, "main", "fgm_blog", "mde", P)),
        ("−0.9", Ref(RD, "main", "rdrop", "diff", P)),
        ("−0.8", Ref(RD, "main", "pgd", "diff", P)),
        ("0.039", Ref(RD, "main", "rdrop", "p_holm")),
        ("0.023", Ref(RD, "main", "pgd", "p_holm")),
        (
            "0.028",
            Ref(RD, "main", ("fgm", "pgd", "pgd_blog", "vat"), "ec_p_holm", op="≤", agg="max"),
        ),
        ("+0.0", Ref(RD, "main", RD_LONGER, "mean_minus_base", P, agg="min")),
        ("+1.2", Ref(RD, "main", RD_LONGER, "mean_minus_base", P, agg="max")),
        ("+0.0", Ref(RD, "main", "none@rdrop", "mean_minus_base", P)),
        ("0.0093", Ref(RD, "main", "none", "chosen:optimizer.lr")),
    ],
    "rdrop_vs_adversarial_d0": [
        ("+1.5", Ref(RD0, "main", "pgd", "diff", P)),
        ("0.001", Ref(RD0, "main", "pgd", "p_holm", op="<")),
        ("4.54", Ref(RD0, "main", "pgd", "cost")),
        ("+1.6", Ref(RD0, "main", "pgd", "ec_diff", P)),
        ("0.013", Ref(RD0, "main", "pgd", "ec_p_holm")),
        ("+1.2", Ref(RD0, "main", "vat", "diff", P)),
        ("0.015", Ref(RD0, "main", "vat", "p_holm")),
        ("0.9", Ref(RD0, "main", "vat", "ec_mde", P)),
        ("−2.1", Ref(RD0, "main", "fgm_blog", "ec_diff", P)),
        ("−1.2", Ref(RD0, "main", "pgd_blog", "ec_diff", P)),
        ("0.008", Ref(RD0, "main", "fgm_blog", "ec_p_holm")),
        ("0.029", Ref(RD0, "main", "pgd_blog", "ec_p_holm")),
        ("+0.2", Ref(RD0, "main", "rdrop", "diff", P)),
        ("+0.4", Ref(RD0, "main", RD_LONGER, "mean_minus_base", P, agg="mean")),
    ],
    "rdrop_vs_adversarial_tweets": [],
    "lion_vs_adamw_tweets": [
        ("+0.4", Ref("lion_vs_adamw_tweets", "main", "lion", "diff", P)),
        ("−1.4", Ref("lion_vs_adamw_tweets", "main", "lion", "lo", P)),
        ("+2.2", Ref("lion_vs_adamw_tweets", "main", "lion", "hi", P)),
        ("0.57", Ref("lion_vs_adamw_tweets", "main", "lion", "p")),
        ("2.4", Ref("lion_vs_adamw_tweets", "main", "lion", "mde", P)),
        ("7.1", Ref("lion_vs_adamw_tweets", "main", "lion", "chosen_ratio:optimizer.lr:adamw")),
        (
            "19",
            Ref(
                "lion_vs_adamw_tweets",
                "main",
                "adamw",
                "chosen_ratio:optimizer.weight_decay:lion",
            ),
        ),
        ("1.00", Text("optimizer state per parameter byte: measured by scripts/bench.py")),
        ("2.00", Text("optimizer state per parameter byte: measured by scripts/bench.py")),
    ],
    "childtuning": [
        ("+0.3", Ref(CT, "main", "childtuning_f", "diff", P)),
        ("−1.5", Ref(CT, "main", "childtuning_f", "lo", P)),
        ("+2.0", Ref(CT, "main", "childtuning_f", "hi", P)),
        ("+0.1", Ref(CT, "main", "childtuning_d", "diff", P)),
        ("−1.7", Ref(CT, "main", "childtuning_d", "lo", P)),
        ("+1.9", Ref(CT, "main", "childtuning_d", "hi", P)),
        ("1.0", Ref(CT, "main", ("childtuning_f", "childtuning_d"), "p_holm", agg="each")),
        ("2.3", Ref(CT, "main", ("childtuning_f", "childtuning_d"), "mde", P, agg="min")),
        ("2.4", Ref(CT, "main", ("childtuning_f", "childtuning_d"), "mde", P, agg="max")),
        ("1.14", Ref(CT, "main", "childtuning_f", "cost")),
        ("−0.6", Ref(CT, "main", "childtuning_f", "ec_diff", P)),
        ("2.75", Ref(CT, "main", "childtuning_f", "ec_mde", P)),
        ("2.1", Ref(CT, "main", CT_ALL, "chosen:optimizer.lr", 1e4, agg="each")),
        ("0.67", Ref(CT, "main", "childtuning_f", "chosen:reg.childtuning_f.p")),
        ("−4.8", Text("the pre-protocol result (results/HISTORY.md)")),
        ("−1.1", Text("the pre-protocol result (results/HISTORY.md)")),
        ("0.3", Text("the pre-protocol p (results/HISTORY.md)")),
        ("50", Text("the pre-protocol runs' length (results/HISTORY.md)")),
    ],
    "semi_supervised_vat": [
        ("0.1", Text("the dropout of the workload cnn_d0.1")),
        ("+5.8", Ref(SSV, "cnn_d0.1", "rdrop", "diff", P, study="study_first_run")),
        ("0.023", Ref(SSV, "cnn_d0.1", "rdrop", "p_holm", study="study_first_run")),
        ("0.0093", Ref(SSV, "cnn_d0.1", "rdrop", "chosen:optimizer.lr", study="study_first_run")),
        ("−11.8", Ref(SSV, "cnn_d0.1", "rdrop", "diff", P)),
        ("0.055", Ref(SSV, "cnn_d0.1", "rdrop", "p_holm")),
        ("0.030", Ref(SSV, "cnn_d0.1", "rdrop", "chosen:optimizer.lr")),
        ("1", Ref(SSV, "cnn_d0.1", "rdrop", "count_below:0.2")),
        ("10", Ref(SSV, "cnn_d0.1", "rdrop", "n")),
        (
            "0.030",
            Ref(
                SSV,
                "cnn_d0.1",
                "vat",
                "chosen:optimizer.lr",
                agg="each",
                study=("study_first_run", "study"),
            ),
        ),
        (
            "−9.8",
            Ref(SSV, "cnn_d0.1", "vat", "diff", P, agg="each", study=("study_first_run", "study")),
        ),
        ("0.044", Ref(SSV, "cnn_d0.1", "vat", "p_holm", study="study_first_run")),
        ("0.055", Ref(SSV, "cnn_d0.1", "vat", "p_holm")),
        ("+2.5", Ref(SSV, "cnn_d0", "vat", "diff", P)),
        ("0.071", Ref(SSV, "cnn_d0", "vat", "p_holm")),
        ("+0.5", Ref(SSV, "cnn_d0", "rdrop", "diff", P)),
    ],
    "multilabel_rdrop": [
        ("−0.4", Ref("multilabel_rdrop", "cnn_d0.1", "rdrop", "diff", P)),
        ("1.8", Ref("multilabel_rdrop", "cnn_d0.1", "rdrop", "mde", P)),
        ("1.46", Ref("multilabel_rdrop", "cnn_d0.1", "rdrop", "cost")),
        ("+0.2", Ref("multilabel_rdrop", "cnn_d0", "rdrop", "diff", P)),
        ("−2.4", Ref("multilabel_rdrop", "cnn_d0", "bce", "diff", P)),
        ("−2.8", Ref("multilabel_rdrop", "cnn_d0.1", "bce", "diff", P)),
        ("0.006", Ref("multilabel_rdrop", "cnn_d0", "bce", "p_holm")),
        ("0.014", Ref("multilabel_rdrop", "cnn_d0.1", "bce", "p_holm")),
    ],
    "regularisers_profile": [
        ("+6.4", Ref(RP, "mlp_d0", "fgm", "diff", P)),
        ("+4.0", Ref(RP, "mlp_d0.1", "fgm", "diff", P)),
        ("0.007", Ref(RP, "mlp_d0", "fgm", "p_holm")),
        ("0.025", Ref(RP, "mlp_d0.1", "fgm", "p_holm")),
        ("1.8", Ref(RP, "mlp_d0", "fgm", "cost")),
        ("1.7", Ref(RP, "mlp_d0.1", "fgm", "cost")),
        ("−3.2", Ref(RP, "mlp_d0", "flooding", "diff", P)),
        ("−3.3", Ref(RP, "cnn_d0", "flooding", "diff", P)),
        ("0.031", Ref(RP, "mlp_d0", "flooding", "p_holm")),
        ("0.043", Ref(RP, "cnn_d0", "flooding", "p_holm")),
        ("−1.7", Ref(RP, "cnn_d0.1", "rdrop", "diff", P)),
        ("0.007", Ref(RP, "cnn_d0.1", "rdrop", "p_holm")),
        ("+1.8", Ref(RP, "text", "vat", "diff", P)),
        ("0.029", Ref(RP, "text", "vat", "p_holm")),
        ("3", Ref(RP, "text", "vat", "cost")),
        ("+2.0", Ref(RP, "text", "fgm", "diff", P)),
        ("0.10", Ref(RP, "text", "fgm", "p_holm")),
        ("+2.7", Ref(RP, "text", "fgm", "ec_diff", P)),
        ("0.004", Ref(RP, "text", "fgm", "ec_p_holm")),
        ("1.95", Ref(RP, "text", "fgm", "cost")),
        ("0.6", Ref(RP, "text", "none@fgm", "mean_minus_base", -P)),
        ("1", Text("the 1× baseline: a name")),
        ("5", Ref(RP, RP_ALL, "none", "n", agg="each")),
        ("0.4", rp_mde("min")),
        ("4.0", rp_mde("max")),
        ("3", Ref(RP, RP_ALL, "fgm", "best", agg="sum")),
        ("5", Text("the number of workloads (study.yaml)")),
        ("2", TOP[RP][-1][1]),
    ],
    "fgm_vs_noise": [
        ("+7.2", Ref("fgm_vs_noise", "mlp_d0", "fgm", "diff", P)),
        ("+4.5", Ref("fgm_vs_noise", "mlp_d0.1", "fgm", "diff", P)),
        ("+6.7", Ref("fgm_vs_noise", "mlp_d0", "noise", "diff", P)),
        ("+2.4", Ref("fgm_vs_noise", "mlp_d0.1", "noise", "diff", P)),
        ("+2.1", Ref("fgm_vs_noise", "mlp_d0.1", "fgm", "vs:noise:diff", P)),
        ("0.004", Ref("fgm_vs_noise", "mlp_d0.1", "fgm", "vs:noise:p_holm")),
        ("+0.55", Ref("fgm_vs_noise", "mlp_d0", "fgm", "vs:noise:diff", P)),
        ("0.8", Ref("fgm_vs_noise", "mlp_d0", "fgm", "vs:noise:mde", P)),
    ],
}


def index_lines(text: str) -> dict[str, str]:
    """recipe -> the status cell of experiments/README.md's table."""
    out = {}
    for line in text.split("\n"):
        m = re.match(r"^\| \[(\w+)\]\(\w+/\) \|", line)
        if m:
            out[m.group(1)] = split_row(line)[-1]
    return out


def test_experiments_index_status_matches_study_json():
    problems = check_tokens(index_lines((EXP / "README.md").read_text()), INDEX, "INDEX")
    assert not problems, "experiments/README.md:\n" + "\n".join(problems)


# -- the checks can fail --------------------------------------------------------------------


def test_a_changed_number_in_a_recipe_table_fails():
    text = (EXP / "flooding" / "README.md").read_text()
    assert not check_readme("flooding", text)[0]
    quoted = "| 0.5944 ± 0.0100 | -0.0710 [-0.0815, -0.0605] |"
    assert quoted in text
    for changed in (
        quoted.replace("0.5944", "0.5945"),  # the mean, last digit
        quoted.replace("-0.0815", "-0.0825"),  # a CI bound
        quoted.replace("± 0.0100", "± 0.0110"),  # the CI's half-width
    ):
        problems = check_readme("flooding", text.replace(quoted, changed))[0]
        assert problems and all("b0.4" in p for p in problems), problems
    text = (EXP / "regularisers_profile" / "README.md").read_text()
    quoted = "| text | label_smoothing | lr 0.0068, eps 0.05 | 0.6630 ± 0.0257 |"
    assert quoted in text
    problems = check_readme("regularisers_profile", text.replace("0.6630", "0.6330"))[0]
    assert problems and all("label_smoothing" in p for p in problems), problems


def test_a_changed_number_in_a_top_readme_line_fails(monkeypatch):
    text = (ROOT / "README.md").read_text()
    assert not check_top(text)
    quoted = "(−7.1 points, p_holm < 0.001)"
    assert quoted in text
    # the sentence alone changed: its number is no longer the one mapped
    problems = check_top(text.replace(quoted, "(−7.2 points, p_holm < 0.001)"))
    assert len(problems) == 1 and "not those mapped" in problems[0], problems
    # a number added to the sentence without a mapping
    problems = check_top(text.replace(quoted, "(−7.1 points, n 5, p_holm < 0.001)"))
    assert len(problems) == 1 and "not those mapped" in problems[0], problems
    # sentence and mapping changed together: the data disagree
    flooding = [
        ("−7.2", ref) if token == "−7.1" else (token, ref) for token, ref in TOP["flooding"]
    ]
    monkeypatch.setitem(TOP, "flooding", flooding)
    problems = check_top(text.replace(quoted, "(−7.2 points, p_holm < 0.001)"))
    assert len(problems) == 1 and "flooding: −7.2 but study.json has" in problems[0], problems
    # a bound that does not hold
    flooding = [("0.0001", ref) if token == "0.001" else (token, ref) for token, ref in flooding]
    monkeypatch.setitem(TOP, "flooding", flooding)
    problems = check_top(text.replace(quoted, "(−7.2 points, p_holm < 0.0001)"))
    assert len(problems) == 2 and "flooding: 0.0001 but" in problems[1], problems


def test_agrees_reads_the_rounding_shown():
    assert agrees("0.6630", 0.66304) and not agrees("0.6630", 0.66306)
    assert agrees("+2.0", 0.0204, 100) and not agrees("+2.0", 0.0266, 100)
    assert agrees("2.13e-4", 2.125e-4) and not agrees("2.13e-4", 2.14e-4)
    assert agrees("<0.001", 0.00023) and not agrees("< 0.001", 0.0011)
    assert agrees("−0.0147", -0.01474) and agrees("1.04×", 1.0449)
