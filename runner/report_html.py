"""The pieces of our HTML reports (`tricks compare`, `tricks study`): the page shell and its CSS,
a sortable table, and interactive plots as inline SVG. A report stays one offline file.

Plots are hand-written SVG with `<title>` hover text (arm, n, mean ± 95% CI): no library, no
script, a few kB per plot, and every browser shows the hover. Plotly would inline ~3.5 MB of
JavaScript into each report (`include_plotlyjs=True`) and vega-lite needs a CDN unless its
~1 MB is inlined; neither is needed for dot-and-interval charts and learning curves.

Layout contract: the page fits a 1280 px window. Long labels wrap; a table wider than its box
scrolls inside `.box` (never the page); SVGs scale to the width available.
"""

from __future__ import annotations

import math
from html import escape

#: tab10, as matplotlib's PNGs use
COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]

#: told apart when curves overlap: an SVG stroke-dasharray and a matplotlib (linestyle, marker)
#: per series, in order
DASHES = ["", "7 4", "2 3", "10 3 2 3", "4 2"]
LINESTYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (4, 2)), "v")]


def metric_bounds(metric: str) -> tuple[float, float] | None:
    """(0, 1) for an accuracy (`test/acc`, `best/val/acc`): its axes never run past them."""
    return (0.0, 1.0) if str(metric).rpartition("/")[2].endswith("acc") else None


def clip_axis(ax, metric: str, axis: str = "y") -> None:
    """A matplotlib axis of `metric` kept within its bounds (metric_bounds)."""
    b = metric_bounds(metric)
    if b:
        get, set_ = (ax.get_ylim, ax.set_ylim) if axis == "y" else (ax.get_xlim, ax.set_xlim)
        lo, hi = get()
        set_(max(lo, b[0] - 0.02 * (b[1] - b[0])), min(hi, b[1] + 0.02 * (b[1] - b[0])))


CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1.5em 2em;max-width:1240px;
 color:#222;line-height:1.4}
p,li,figcaption{overflow-wrap:anywhere}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em}
code{word-break:break-all}
.box{max-width:100%;overflow-x:auto;margin:1em 0}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
td{white-space:nowrap}
td.w{white-space:normal;min-width:9em;max-width:28em;overflow-wrap:break-word}
td.r,th.r{text-align:right}
th{background:#f4f4f4;position:sticky;top:0}
th.s{cursor:pointer;user-select:none} th.s:hover{background:#e8e8e8}
th.s[aria-sort=ascending]::after{content:" \\25B2"}
th.s[aria-sort=descending]::after{content:" \\25BC"}
.v-better{color:#080;font-weight:bold} .v-worse{color:#b00;font-weight:bold}
.v-no{color:#a60} .v-baseline{font-weight:bold} .v-too{color:#777}
img{max-width:100%} figure{margin:1.2em 0} figcaption{color:#555;font-size:13px}
svg.plot{width:100%;height:auto;display:block} svg.plot text{font-size:12px;fill:#333}
svg.plot .ax{stroke:#999;stroke-width:1} svg.plot .grid{stroke:#eee;stroke-width:1}
svg.plot g.hit:hover circle,svg.plot g.hit:hover line{stroke-width:3}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:12px}
.legend span::before{content:"";display:inline-block;width:.9em;height:.9em;margin-right:.3em;
 vertical-align:-.1em;background:var(--c)}
p.m{color:#555;font-size:13px}
ul.verdicts{padding-left:1.2em;margin:.6em 0} ul.verdicts li{overflow-wrap:anywhere}
"""

# Click a header to sort by it (again: reverse). Cells sort by data-v when given (numbers),
# else by their text; rows keep their order among equals.
SORT_JS = """
document.querySelectorAll('.sortable table').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){
  th.classList.add('s');
  th.addEventListener('click',function(){
   var asc=th.getAttribute('aria-sort')!=='ascending';
   t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});
   th.setAttribute('aria-sort',asc?'ascending':'descending');
   var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
   function key(r){var c=r.cells[i],v=c.getAttribute('data-v');
    return v!==null&&v!==''&&!isNaN(+v)?+v:c.textContent.trim().toLowerCase()}
   rows.map(function(r,j){return [key(r),j,r]}).sort(function(a,b){
    var x=a[0],y=b[0],c;
    if(typeof x===typeof y){c=x<y?-1:x>y?1:0}else{c=typeof x==='number'?-1:1}
    return (asc?c:-c)||a[1]-b[1]}).forEach(function(e){body.appendChild(e[2])});
  });
 });
});
"""


def page(title: str, body: str) -> str:
    """A whole report: one self-contained file (CSS and the sorting script inline)."""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n{body}\n"
        f"<script>{SORT_JS}</script>\n</body></html>\n"
    )


def verdicts(lines: list[tuple[str, str, str]]) -> str:
    """One line per arm above the tables, `arm: verdict (figures)`, the verdict styled as in
    the table: every verdict on the first screen at 1280 px, however wide the table."""
    items = "".join(
        f'<li><b>{escape(arm)}</b>: <span class="verdict v-{escape(v.split()[0] if v else "")}">'
        f"{escape(v)}</span> ({escape(why)})</li>"
        for arm, v, why in lines
    )
    return f'<ul class="verdicts">{items}</ul>' if items else ""


def table(
    headers: list[str],
    rows: list[list],
    right: set[int] = frozenset(),
    wide: set[int] = frozenset(),
    sort_values: list[list] | None = None,
    cell_class=None,
    id: str | None = None,
) -> str:
    """A sortable table in its own scrolling box. `right`: numeric columns (right-aligned);
    `wide`: the columns that may wrap (labels, verdicts; the others do not); `sort_values`:
    numbers to sort by, parallel to `rows` (None: sort by text); `cell_class(j, text)`: a CSS
    class for a cell."""

    def cls(j, text=""):
        c = [
            x
            for x in (
                "r" if j in right else "",
                "w" if j in wide else "",
                cell_class(j, text) if cell_class else "",
            )
            if x
        ]
        return f' class="{" ".join(c)}"' if c else ""

    head = "".join(f"<th{cls(j)} scope=col>{escape(str(h))}</th>" for j, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            text = "" if c is None else str(c)
            v = sort_values[i][j] if sort_values else None
            dv = f' data-v="{v:.17g}"' if isinstance(v, (int, float)) and math.isfinite(v) else ""
            cells.append(f"<td{cls(j, text)}{dv}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{escape(id)}"' if id else ""
    return (
        f'<div class="box sortable"><table{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def figure(svg: str, caption: str, legend: list[tuple[str, str]] = ()) -> str:
    leg = ""
    if legend:
        leg = (
            '<div class="legend">'
            + "".join(f'<span style="--c:{c}">{escape(l)}</span>' for l, c in legend)
            + "</div>"
        )
    return f"<figure>{svg}{leg}<figcaption>{escape(caption)}</figcaption></figure>"


# -- plots -------------------------------------------------------------------------------------


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    t = math.ceil(lo / step) * step
    out = []
    while t <= hi + 1e-12 * abs(hi):
        out.append(round(t, 12))
        t += step
    return out


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _span(values: list[float], pad: float = 0.05, bounds=None) -> tuple[float, float]:
    """The axis range of `values`, padded, and within `bounds` (metric_bounds) when given."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return bounds or (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if hi == lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1) * 0.1, hi + 0.5 * (abs(hi) or 1) * 0.1
    d = (hi - lo) * pad
    lo, hi = lo - d, hi + d
    if bounds:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return lo, hi


def interval_plot(
    items: list[dict], xlabel: str, ref: float | None = None, width: int = 1000, bounds=None
) -> str:
    """One row per arm: its mean (dot) with its 95% CI (bar) and each run (small dots).
    items: {label, n, mean, low, high, values, color}; hover a row for arm, n, mean ± CI.
    `bounds`: the metric's (metric_bounds), the axis stays within them."""
    left, right, top, row_h = 280, 20, 10, 30
    h = top + row_h * len(items) + 44
    lo, hi = _span(
        [v for it in items for v in (it["low"], it["high"], it["mean"], *it.get("values", []))]
        + ([ref] if ref else []),
        bounds=bounds,
    )

    def x(v):  # a CI past the metric's bounds ends at the axis
        return left + (min(max(v, lo), hi) - lo) / (hi - lo) * (width - left - right)

    out = [f'<svg class="plot" viewBox="0 0 {width} {h}" role="img" aria-label="{escape(xlabel)}">']
    base = top + row_h * len(items)
    for t in _ticks(lo, hi):
        out.append(
            f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{base}"/>'
            f'<text x="{x(t):.1f}" y="{base + 16}" text-anchor="middle">{_fmt(t)}</text>'
        )
    out.append(
        f'<line class="ax" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}"/>'
        f'<text x="{(left + width - right) / 2:.0f}" y="{base + 36}" '
        f'text-anchor="middle">{escape(xlabel)}</text>'
    )
    if ref is not None and math.isfinite(ref):
        out.append(
            f'<line x1="{x(ref):.1f}" x2="{x(ref):.1f}" y1="{top}" y2="{base}" '
            f'stroke="#888" stroke-dasharray="4 3"/>'
        )
    for i, it in enumerate(items):
        y, c = top + row_h * i + row_h / 2, it.get("color", COLORS[i % len(COLORS)])
        ci = (
            f" ± {_fmt((it['high'] - it['low']) / 2)} [{_fmt(it['low'])}, {_fmt(it['high'])}]"
            if math.isfinite(it["low"])
            else ""
        )
        tip = f"{it['label']}\nn={it['n']} · mean {_fmt(it['mean'])}{ci}"
        label = it["label"] if len(it["label"]) <= 40 else it["label"][:39] + "…"
        out.append(
            f'<g class="hit"><title>{escape(tip)}</title>'
            f'<rect x="0" y="{y - row_h / 2:.1f}" width="{width}" height="{row_h}" '
            f'fill="transparent"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        if math.isfinite(it["low"]):
            out.append(
                f'<line x1="{x(it["low"]):.1f}" x2="{x(it["high"]):.1f}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="{c}" stroke-width="2"/>'
            )
        for v in it.get("values", []):
            out.append(
                f'<circle cx="{x(v):.1f}" cy="{y:.1f}" r="3" fill="{c}" fill-opacity="0.35"/>'
            )
        out.append(
            f'<circle cx="{x(it["mean"]):.1f}" cy="{y:.1f}" r="6" fill="{c}" stroke="{c}"/></g>'
        )
    out.append("</svg>")
    return "".join(out)


def curve_plot(
    series: list[dict],
    xlabel: str,
    ylabel: str,
    width: int = 1000,
    height: int = 340,
    bounds=None,
) -> str:
    """Mean curves with their 95% CI bands, each series its own dash pattern (DASHES), so equal
    curves stay told apart. series: {label, color, x, mean, low, high, n} (lists over x); hover
    a point for arm, step, n, mean ± CI. `bounds`: the y axis stays within them."""
    left, right, top, bottom = 64, 20, 10, 44
    xs = [v for s in series for v in s["x"]]
    ys = [v for s in series for k in ("mean", "low", "high") for v in s[k]]
    x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = _span(ys, bounds=bounds)

    def px(v):
        return left + (v - x0) / (x1 - x0) * (width - left - right)

    def py(v):  # a band past the metric's bounds ends at the axis
        return top + (1 - (min(max(v, y0), y1) - y0) / (y1 - y0)) * (height - top - bottom)

    base = height - bottom
    out = [
        f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(ylabel)}">'
    ]
    for t in _ticks(y0, y1):
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{py(t):.1f}" '
            f'y2="{py(t):.1f}"/><text x="{left - 6}" y="{py(t) + 4:.1f}" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
    for t in _ticks(x0, x1):
        out.append(f'<text x="{px(t):.1f}" y="{base + 16}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(
        f'<line class="ax" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}"/>'
        f'<line class="ax" x1="{left}" x2="{left}" y1="{top}" y2="{base}"/>'
        f'<text x="{(left + width - right) / 2:.0f}" y="{base + 36}" '
        f'text-anchor="middle">{escape(xlabel)}</text>'
        f'<text transform="translate(14 {(top + base) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )
    for i, s in enumerate(series):
        c = s.get("color", COLORS[i % len(COLORS)])
        pts = list(zip(s["x"], s["mean"], s["low"], s["high"], s["n"]))
        if not pts:
            continue
        band = (
            " ".join(f"{px(a):.1f},{py(h):.1f}" for a, _, _, h, _ in pts)
            + " "
            + " ".join(f"{px(a):.1f},{py(lo):.1f}" for a, _, lo, _, _ in reversed(pts))
        )
        line = " ".join(f"{px(a):.1f},{py(m):.1f}" for a, m, _, _, _ in pts)
        dash = DASHES[i % len(DASHES)]
        dash = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f"<g><title>{escape(s['label'])}</title>"
            f'<polygon points="{band}" fill="{c}" fill-opacity="0.18" stroke="none"/>'
            f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1.8"{dash}/>'
        )
        for a, m, lo, h, n in pts:
            ci = f" ± {_fmt((h - lo) / 2)}" if n > 1 and h > lo else ""
            out.append(
                f'<g class="hit"><title>{escape(s["label"])}\n{escape(xlabel)} {_fmt(a)}'
                f' · n={n} · mean {_fmt(m)}{ci}</title><circle cx="{px(a):.1f}" '
                f'cy="{py(m):.1f}" r="3.5" fill="{c}" stroke="{c}"/></g>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
