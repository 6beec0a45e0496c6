"""AuditReport and Finding: the verdicts, as text, JSON and a self-contained HTML page."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHECKS = (
    "repeat",
    "batch_size",
    "batch_position",
    "padding",
    "threads",
    "stochastic",
    "environment",
)


@dataclass
class Finding:
    check: str
    passed: bool
    module: str | None = None
    op: str | None = None
    max_abs: float = 0.0
    max_ulp: int = 0
    detail: str = ""
    cured_by_batch_invariant: bool | None = None
    # (module, max_ulp, max_abs) for every module in forward order, for failed checks
    divergence: list[dict[str, Any]] = field(default_factory=list)
    # data-pipeline findings: the likely cause, established by experiment, and its fix as code
    cause: str = ""
    fix: str = ""
    # the headline size in the output's own scale: max abs over the largest element,
    # and ULPs at that element (max_ulp, per element, can be huge near zero)
    max_rel: float = 0.0
    ulp_at_max: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not math.isfinite(d["max_abs"]):
            d["max_abs"] = str(d["max_abs"])
        return d


@dataclass
class AuditReport:
    findings: list[Finding]
    model: str
    items: int
    batch_invariant: bool  # whether the audit ran under the mode
    fingerprint_id: str = ""
    # a loader audit: what was compared (batches, items, workers, repeats, seed)
    compared: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.passed for f in self.findings)

    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.passed]

    def to_dict(self) -> dict[str, Any]:
        import samebits

        return {
            "schema": "samebits-audit/1",
            "samebits_version": samebits.__version__,
            "ok": self.ok,
            "model": self.model,
            "items": self.items,
            "batch_invariant": self.batch_invariant,
            "fingerprint_id": self.fingerprint_id,
            "compared": self.compared,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        rows = []
        for f in self.findings:
            verdict = "pass" if f.passed else "FAIL"
            where = f.module or (f.cause if f.cause else "-")
            if f.op:
                where += f" ({f.op})"
            cure = {True: "yes", False: "no", None: "-"}[f.cured_by_batch_invariant]
            size = (
                f"{f.max_abs:.2g} ({f.ulp_at_max:.3g} ulp@max)"
                if not f.passed
                and f.check in CHECKS
                and f.check not in ("stochastic", "environment")
                else "-"
            )
            rows.append((f.check, verdict, size, where, cure))
        where_head = "first diverging module (op)"
        if any(f.cause for f in self.findings):
            where_head += " / cause"
        head = ("check", "verdict", "max diff", where_head, "cured by mode")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
        fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
        return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)])

    def summary(self) -> str:
        lines = [
            f"samebits audit of {self.model} ({self.items} items)"
            + (" under batch_invariant()" if self.batch_invariant else ""),
            self.table(),
            "",
        ]
        if self.compared:
            c = self.compared
            lines.insert(
                1,
                f"compared: {c['batches']} batches, {c['items']} items per pass; num_workers "
                f"{', '.join(map(str, c['workers']))}; {c['repeats']} passes each; seed {c['seed']}",
            )
        for f in self.failed():
            lines.append(f"- {f.check}: {f.detail}")
            if f.fix:
                lines.append("  fix:")
                lines.extend("    " + line for line in f.fix.splitlines())
        lines.append(
            "verdict: " + ("all checks pass" if self.ok else f"{len(self.failed())} finding(s)")
        )
        return "\n".join(lines)

    def to_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(render_html([("", self)]), encoding="utf-8")
        return path


def _svg_bars(div: list[dict[str, Any]], first: str | None = None) -> str:
    """Max ULP per module in forward order on a labelled log axis, as inline SVG.
    Modules before the first diverging one are green, the first is orange and
    named on the chart, those after it are pale red."""
    if not div:
        return "<p class=muted>no per-module trace</p>"
    start = next((i for i, d in enumerate(div) if first and d["module"] == first), None)
    if start is None:
        start = next((i for i, d in enumerate(div) if d["max_ulp"]), len(div))
    left, top_pad, h, bottom = 58, 24, 170, 30
    bw = max(3, min(18, 900 // max(1, len(div))))
    decades = max(1, math.ceil(max(math.log10(1 + d["max_ulp"]) for d in div)))
    scale = h / decades

    def y(ulp: float) -> float:
        return top_pad + h - math.log10(1 + ulp) * scale

    parts = []
    for k in range(decades + 1):  # the axis: one tick per decade of ULPs
        yy = top_pad + h - k * scale
        parts.append(
            f'<line x1="{left - 4}" x2="{left + bw * len(div)}" y1="{yy:.1f}" y2="{yy:.1f}" '
            f'stroke="#e5e5e5"/><text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" '
            f'font-size="10">{"0" if k == 0 else f"1e{k}"}</text>'
        )
    parts.append(
        f'<text x="12" y="{top_pad + h / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {top_pad + h / 2:.0f})">max ULP difference (log)</text>'
    )
    for i, d in enumerate(div):
        color = "#27ae60" if i < start else "#e67e22" if i == start else "#e8a09a"
        top = y(d["max_ulp"])
        title = html.escape(f"{d['module']}: {d['max_ulp']} ulp, max abs {d['max_abs']:.3g}")
        parts.append(
            f'<rect x="{left + i * bw}" y="{min(top, top_pad + h - 2):.1f}" width="{bw - 1}" '
            f'height="{max(top_pad + h - top, 2):.1f}" fill="{color}"><title>{title}</title></rect>'
        )
    if start < len(div):
        x = left + start * bw + bw / 2
        anchor = "start" if start < len(div) / 2 else "end"
        label = html.escape(f"first diverging: {div[start]['module']}")
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_pad - 6}" y2="{top_pad + h}" '
            f'stroke="#e67e22" stroke-dasharray="3 2"/><text x="{x + (4 if anchor == "start" else -4):.1f}" '
            f'y="{top_pad - 10}" font-size="12" text-anchor="{anchor}" fill="#b35900">{label}</text>'
        )
    w, full_h = left + bw * len(div) + 10, top_pad + h + bottom
    parts.append(
        f'<text x="{left}" y="{full_h - 8}" font-size="11">modules in forward order '
        f"({html.escape(div[0]['module'])} &#8230; {html.escape(div[-1]['module'])})</text>"
    )
    return (
        f'<svg width="{w}" height="{full_h}" viewBox="0 0 {w} {full_h}" role="img" '
        f'aria-label="max ULP difference by module">{"".join(parts)}</svg>'
        "<p class=muted><span style='color:#27ae60'>&#9632;</span> same bits before divergence "
        "&middot; <span style='color:#e67e22'>&#9632;</span> first diverging module &middot; "
        "<span style='color:#e8a09a'>&#9632;</span> after it (hover a bar for its name)</p>"
    )


def _compared(r: AuditReport) -> str:
    if not r.compared:
        return ""
    c = r.compared
    return (
        f"<p class=muted>data pipeline compared: {c['batches']} batches, {c['items']} items "
        f"per pass &middot; num_workers {', '.join(map(str, c['workers']))} &middot; "
        f"{c['repeats']} passes each &middot; seed {c['seed']}</p>"
    )


def render_html(reports: list[tuple[str, AuditReport]]) -> str:
    """One self-contained page (inline CSS and SVG, no scripts, works offline)."""
    parts = []
    for title, r in reports:
        rows = []
        for f in r.findings:
            cls = "pass" if f.passed else "fail"
            cure = {True: "yes", False: "no", None: "&ndash;"}[f.cured_by_batch_invariant]
            where = html.escape(f.module or "–") + (
                f" <code>{html.escape(f.op)}</code>" if f.op else ""
            )
            rows.append(
                f"<tr class={cls}><td>{f.check}</td><td>{'pass' if f.passed else 'FAIL'}</td>"
                f"<td>{'' if f.passed or f.cause else f'{f.max_abs:.3g}'}</td>"
                f"<td>{'' if f.passed or f.cause else f'{f.max_rel:.2g}'}</td>"
                f"<td>{'' if f.passed or f.cause else f'{f.ulp_at_max:.3g}'}</td>"
                f"<td>{where}</td><td>{cure}</td><td>{html.escape(f.detail)}"
                + (f"<pre class=fix>{html.escape(f.fix)}</pre>" if f.fix else "")
                + "</td></tr>"
            )
        plots = "".join(
            f"<h3>{html.escape(f.check)}: divergence by module</h3>"
            f"{_svg_bars(f.divergence, f.module)}"
            for f in r.failed()
            if f.divergence
        )
        verdict = "all checks pass" if r.ok else f"{len(r.failed())} finding(s)"
        mode = " &middot; under <code>batch_invariant()</code>" if r.batch_invariant else ""
        parts.append(
            f"<section><h2>{html.escape(title or r.model)}</h2>"
            f"<p class='verdict {'pass' if r.ok else 'fail'}'>{verdict}</p>"
            f"<p class=muted>{html.escape(r.model)} &middot; {r.items} items{mode} &middot; "
            f"fingerprint {html.escape(r.fingerprint_id)}</p>{_compared(r)}"
            "<table><tr><th>check</th><th>verdict</th><th>max abs</th><th>relative to max |x|</th>"
            "<th>ulp at max |x|</th>"
            "<th>first diverging module / op</th><th>cured by mode</th><th>detail</th></tr>"
            f"{''.join(rows)}</table>{plots}</section>"
        )
    css = (
        "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border-bottom:1px solid #ddd;"
        "padding:.35em .5em;text-align:left;vertical-align:top}tr.fail td:nth-child(2){color:#c0392b;"
        "font-weight:600}tr.pass td:nth-child(2){color:#27ae60}.verdict{font-size:1.3em;font-weight:600}"
        ".verdict.fail{color:#c0392b}.verdict.pass{color:#27ae60}.muted{color:#777;font-size:.9em}"
        "code{background:#f4f4f4;padding:0 .2em}section{margin-bottom:3em}"
        "pre.fix{background:#f7f7f2;padding:.5em;overflow-x:auto;font-size:.85em}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>samebits audit</title>"
        f"<style>{css}</style></head><body><h1>samebits audit</h1>{''.join(parts)}</body></html>\n"
    )
