"""``bnexp report``: one HTML page with every plotted figure, its caption, claims and commands."""

from __future__ import annotations

import html
import json
from pathlib import Path

from bnexp import results


def markdown_table(df) -> str:
    """A DataFrame as a GitHub-flavoured markdown table."""
    cells = [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _claims_table(claims: list[dict]) -> str:
    rows = "".join(
        f"<tr class={'pass' if c['passed'] else 'fail'}><td>{'PASS' if c['passed'] else 'FAIL'}</td>"
        f"<td>{html.escape(c['statement'])}</td><td>{html.escape(str(c['paper']))}</td>"
        f"<td>{c['measured']:.4g}</td><td>{html.escape(c['expected'])}</td></tr>"
        for c in claims)
    return ("<table><tr><th></th><th>claim</th><th>paper</th><th>measured</th><th>rule</th></tr>"
            f"{rows}</table>")


def write_report(root: Path | None = None) -> Path:
    """Collect ``outputs/figures/**/*.claims.json`` into ``outputs/report.html``."""
    from bnexp.figures import all_figures

    root = results.outputs_root() if root is None else Path(root)
    sections, summary = [], []
    for fig in all_figures():
        stem = fig.output_stem(root)
        claims_file = stem.with_suffix(".claims.json")
        if not claims_file.exists():
            summary.append(f"<li>{fig.id}: not plotted yet (<code>bnexp reproduce {fig.id}</code>)</li>")
            continue
        rec = json.loads(claims_file.read_text())
        ok = sum(c["passed"] for c in rec["claims"])
        summary.append(f"<li><a href='#{fig.id}'>{fig.id}</a>: {html.escape(fig.title)} — "
                       f"{ok}/{len(rec['claims'])} claims pass ({rec['scale']} scale)</li>")
        image = stem.with_suffix(".png").relative_to(root)
        commands = "<br>".join(html.escape(c) for c in rec["commands"])
        sections.append(
            f"<h2 id='{fig.id}'>{fig.id} — {html.escape(fig.title)}</h2>"
            f"<p><img src='{image}' style='max-width:100%'></p>"
            f"<p><b>Scale:</b> {rec['scale']}. {html.escape(rec['caption'])}</p>"
            f"{_claims_table(rec['claims'])}"
            f"<p><b>Regenerate:</b> <code>bnexp reproduce {fig.id} --scale {rec['scale']}</code>; runs: "
            f"<code>{commands}</code></p>")
    page = ("<!doctype html><meta charset=utf-8><title>bnexp report</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.fail{background:#fdd}"
            ".pass{background:#efe}</style><h1>bnexp report</h1>"
            f"<ul>{''.join(summary)}</ul>{''.join(sections)}")
    path = root / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
