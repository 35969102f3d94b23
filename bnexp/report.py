"""``bnexp report``: ``outputs/report/index.html``, one self-contained page about every figure.

At the top, a summary table with one row per registered figure (status, claims passing, scale, wall time of
its runs) linking to its section. Each plotted figure's section holds our plot (embedded as a PNG data URI, so
the page is one file that can be mailed or archived), the paper's own caption (quoted, with the paper's
label), our caption note (setup, decisions, deviations), the claims (the paper's value, ours, the tolerance,
pass/fail), the scale, the exact commands that regenerate it, and where its runs were made (device, torch
version, wall time, git commit). Figures not plotted say why: skipped for want of data, failed, or not run
(from the last ``bnexp reproduce``'s outcomes), with the command that makes them.

Everything comes from files ``bnexp plot`` / ``bnexp reproduce`` wrote (``outputs/figures/<paper>/<fig>.*`` and
``outputs/figures/reproduce-<scale>.json``); nothing is recomputed here.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

from bnexp import results
from bnexp.errors import CorruptRun

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-top:2px solid #ddd;padding-top:.8em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:3px 7px;font-size:92%;
vertical-align:top} th{background:#f3f3f3;text-align:left}
tr.pass td.result,span.pass{background:#e3f6e3} tr.fail td.result,span.fail{background:#fbdcdc}
span.skipped,span.missing{background:#f1f1f1} span.status{padding:1px 6px;border-radius:3px}
td.num{text-align:right;font-variant-numeric:tabular-nums} img{max-width:100%;border:1px solid #eee}
blockquote{margin:.5em 0;padding:.4em .8em;border-left:4px solid #9ab;background:#f7f9fb}
p.meta{color:#555;font-size:90%} code{background:#f4f4f4;padding:0 3px}
"""


def markdown_table(df) -> str:
    """A DataFrame as a GitHub-flavoured markdown table."""
    cells = [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _e(text) -> str:
    return html.escape(str(text))


def _claims_table(claims: list[dict]) -> str:
    rows = "".join(
        f"<tr class={'pass' if c['passed'] else 'fail'}><td>{_e(c['statement'])}</td><td>{_e(c['paper'])}</td>"
        f"<td class=num>{c['measured']:.4g}</td><td>{_e(c['expected'])}</td>"
        f"<td class=result>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in claims)
    return ("<table class=claims><tr><th>claim</th><th>paper</th><th>ours</th><th>tolerance</th><th>result</th></tr>"
            f"{rows}</table>")


def _meta(meta: dict | None) -> str:
    if not meta:
        return "run metadata not recorded (plotted by an older bnexp)"
    commits = ", ".join(c[:10] for c in meta.get("git_commits", [])) or "unknown"
    return (f"{meta['n_runs']} run(s), {meta['wall_s']:.1f} s of compute in all; device "
            f"{', '.join(meta.get('devices', [])) or 'unknown'}; torch {', '.join(meta.get('torch', [])) or '?'}; "
            f"git commit {commits}; host {', '.join(meta.get('hosts', [])) or '?'}; "
            f"runs finished {meta.get('end') or '?'}")


def _outcomes(root: Path) -> dict[str, dict]:
    """The last reproduction's outcome per figure (any scale; the most recent file wins)."""
    known: dict[str, dict] = {}
    files = sorted((root / "figures").glob("reproduce-*.json"), key=lambda p: p.stat().st_mtime)
    for path in files:
        try:
            known.update({o["id"]: o for o in json.loads(path.read_text())})
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return known


# The captions describe the paper and quick scales; smoke runs are the test suite's shrink of the quick setup.
_SMOKE = ("<i>(the smoke scale shrinks the quick setup described here further, for the tests: fewer layers, seeds or "
          "steps, as its runs' commands below show)</i> ")


def write_report(root: Path | None = None) -> Path:
    """Write ``<outputs>/report/index.html`` from the plotted figures; returns its path."""
    from bnexp.figures import all_figures

    root = results.outputs_root() if root is None else Path(root)
    outcomes = _outcomes(root)
    rows, sections = [], []
    passed_total = claims_total = plotted = 0
    for fig in all_figures():
        stem = fig.output_stem(root)
        claims_file = stem.with_suffix(".claims.json")
        label, paper_caption = fig.paper_caption or ("", "")
        anchor = fig.id.replace("/", "-")
        if not claims_file.exists():
            outcome = outcomes.get(fig.id, {})
            status = outcome.get("status") if outcome.get("status") in ("skipped", "failed") else "missing"
            why = outcome.get("error") or "not reproduced yet"
            rows.append(f"<tr><td>{_e(fig.id)}</td><td>{_e(fig.title)}</td><td>-</td>"
                        f"<td><span class='status {status}'>{'not run' if status == 'missing' else status}</span>"
                        f"</td><td>-</td><td>-</td><td>{_e(why)}: <code>bnexp reproduce {_e(fig.id)}</code></td></tr>")
            continue
        try:
            rec = json.loads(claims_file.read_text())
        except ValueError as err:
            raise CorruptRun(claims_file, f"is unreadable ({err})",
                             f"Plot the figure again from its runs: `bnexp plot {fig.id} --scale SCALE`") from None
        plotted += 1
        ok, n = sum(c["passed"] for c in rec["claims"]), len(rec["claims"])
        passed_total, claims_total = passed_total + ok, claims_total + n
        status = "pass" if ok == n else "fail"
        first_fail = next((c["statement"] for c in rec["claims"] if not c["passed"]), "")
        meta = rec.get("meta") or {}
        wall = ("< 1 s" if meta["wall_s"] < 0.5 else f"{meta['wall_s']:.0f} s") if meta else "-"
        rows.append(f"<tr><td><a href='#{anchor}'>{_e(fig.id)}</a></td><td>{_e(fig.title)}</td><td>{rec['scale']}</td>"
                    f"<td><span class='status {status}'>{status}</span></td><td class=num>{ok}/{n}</td>"
                    f"<td class=num>{wall}</td><td>{_e(first_fail)}</td></tr>")
        png = stem.with_suffix(".png")
        image = base64.b64encode(png.read_bytes()).decode() if png.exists() else ""
        alias = f" (the same experiment as {_e(fig.alias_of)})" if fig.alias_of else ""
        commands = "<br>".join(f"<code>{_e(c)}</code>" for c in rec["commands"])
        quoted = (f"<blockquote><b>Paper's caption ({_e(label)}):</b> {_e(paper_caption)}</blockquote>"
                  if paper_caption else "")
        sections.append(
            f"<section id='{anchor}'><h2>{_e(fig.id)} — {_e(fig.title)}{alias}</h2>"
            f"<p><img alt='{_e(fig.id)}' src='data:image/png;base64,{image}'></p>{quoted}"
            f"<p><b>Our setup ({rec['scale']} scale):</b> {_SMOKE if rec['scale'] == 'smoke' else ''}"
            f"{_e(rec['caption'])}</p>"
            f"{_claims_table(rec['claims'])}"
            f"<p><b>Regenerate:</b> <code>bnexp reproduce {_e(fig.id)} --scale {rec['scale']}</code> "
            f"(from saved runs only: <code>bnexp plot {_e(fig.id)} --scale {rec['scale']}</code>). Its runs:<br>"
            f"{commands}</p><p class=meta><b>Runs:</b> {_e(_meta(meta))}</p></section>")
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>bnexp report</title><style>{STYLE}</style>"
            f"<h1>bnexp report</h1><p>{plotted} of {len(rows)} figures plotted; {passed_total}/{claims_total} claims "
            f"pass. Made {made} from <code>{_e(root)}</code>. Each claim compares a number computed from our runs "
            "with the paper's statement under the tolerance shown.</p>"
            "<table class=summary><tr><th>figure</th><th>title</th><th>scale</th><th>status</th><th>claims</th>"
            f"<th>compute</th><th>first failing claim / what to do</th></tr>{''.join(rows)}</table>"
            f"{''.join(sections)}</html>")
    path = root / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
