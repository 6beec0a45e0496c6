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
                f"{f.max_ulp} ulp"
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


def _svg_bars(div: list[dict[str, Any]]) -> str:
    """Max ULP per module in forward order, log scale, as inline SVG."""
    if not div:
        return "<p class=muted>no per-module trace</p>"
    h, bw = 160, max(4, min(18, 900 // max(1, len(div))))
    top = max(math.log10(1 + d["max_ulp"]) for d in div) or 1.0
    bars = []
    for i, d in enumerate(div):
        v = math.log10(1 + d["max_ulp"]) / top * (h - 20)
        color = "#c0392b" if d["max_ulp"] else "#27ae60"
        title = html.escape(f"{d['module']}: {d['max_ulp']} ulp, max abs {d['max_abs']:.3g}")
        bars.append(
            f'<rect x="{i * bw}" y="{h - v:.1f}" width="{bw - 1}" height="{max(v, 1):.1f}" '
            f'fill="{color}"><title>{title}</title></rect>'
        )
    w = bw * len(div)
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="max ULP difference by module">{"".join(bars)}</svg>'
        f"<p class=muted>max ULP difference of each module's output, modules in forward order "
        f"(log scale; hover a bar for its name). First: {html.escape(div[0]['module'])}, "
        f"last: {html.escape(div[-1]['module'])}.</p>"
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
                f"<td>{'' if f.passed else f.max_ulp}</td><td>{'' if f.passed else f'{f.max_abs:.3g}'}</td>"
                f"<td>{where}</td><td>{cure}</td><td>{html.escape(f.detail)}</td></tr>"
            )
        plots = "".join(
            f"<h3>{html.escape(f.check)}: divergence by module</h3>{_svg_bars(f.divergence)}"
            for f in r.failed()
            if f.divergence
        )
        verdict = "all checks pass" if r.ok else f"{len(r.failed())} finding(s)"
        mode = " &middot; under <code>batch_invariant()</code>" if r.batch_invariant else ""
        parts.append(
            f"<section><h2>{html.escape(title or r.model)}</h2>"
            f"<p class='verdict {'pass' if r.ok else 'fail'}'>{verdict}</p>"
            f"<p class=muted>{html.escape(r.model)} &middot; {r.items} items{mode} &middot; "
            f"fingerprint {html.escape(r.fingerprint_id)}</p>"
            "<table><tr><th>check</th><th>verdict</th><th>max ulp</th><th>max abs</th>"
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
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>samebits audit</title>"
        f"<style>{css}</style></head><body><h1>samebits audit</h1>{''.join(parts)}</body></html>\n"
    )
