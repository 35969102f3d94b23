"""`bnexp report`: outputs/report/index.html, one self-contained page, checked as HTML and rendered in a real
browser (headless Chromium, Debian's `chromium` package: `.ci/run` installs it; skipped with the reason when it
is absent): every figure image loads (naturalWidth > 0), every plotted figure has its claims table, and the
summary table links to each section."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bnexp import cli, figures

FIGS = ["rank/fig9", "markov/fig10", "depth/fig1"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]

# Appended to a copy of the page: once everything has loaded, write what the browser sees into the DOM.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
               widths: imgs.map(i => i.naturalWidth), claimTables: document.querySelectorAll('table.claims').length,
               summaryRows: document.querySelectorAll('table.summary tr').length - 1,
               sections: [...document.querySelectorAll('section')].map(s => s.id),
               links: [...document.querySelectorAll('table.summary a')].map(a => a.getAttribute('href'))};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        why = "no Chromium on this machine: apt-get install chromium (.ci/run does) to render the report"
        if os.environ.get("BNEXP_REQUIRE_TOOLS"):
            pytest.fail(why)
        pytest.skip(why)
    return browser


@pytest.fixture
def report(outputs, capsys) -> Path:
    assert cli.main(["reproduce", *FIGS, "--scale", "smoke"]) == 0
    assert cli.main(["report"]) == 0
    capsys.readouterr()
    return outputs / "report" / "index.html"


def test_the_report_holds_each_figure_its_captions_claims_command_and_run_metadata(report):
    page = report.read_text()
    for fig_id in FIGS:
        fig = figures.get(fig_id)
        section = page[page.index(f"<section id='{fig_id.replace('/', '-')}'>"):]
        section = section[:section.index("</section>")]
        label, quoted = fig.paper_caption
        assert label and quoted[:60] in section.replace("&#x27;", "'")  # the paper's caption, quoted
        assert "data:image/png;base64," in section  # the plot, embedded: one self-contained file
        assert f"bnexp reproduce {fig_id} --scale smoke" in section
        assert "the smoke scale shrinks the quick setup described here further" in section  # captions: quick's
        record = json.loads(fig.output_stem().with_suffix(".claims.json").read_text())
        assert section.count("<tr class=pass>") == len(record["claims"])  # each claim with paper, ours, rule
        meta = record["meta"]
        assert meta["n_runs"] > 0 and meta["devices"] == ["cpu"] and meta["torch"]
        assert f"{meta['n_runs']} run(s)" in section and "torch " + meta["torch"][0] in section
    # figures not plotted are listed in the summary with the command that makes them
    assert "not run" in page and "bnexp reproduce rank/fig2" in page


def test_the_report_renders_in_a_browser_with_every_image_loaded(report, tmp_path):
    browser = _chromium()
    probe_page = report.with_name("probe.html")
    probe_page.write_text(report.read_text().replace("</html>", PROBE + "</html>"))
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the page did not load in {browser}: {done.stderr[-2000:]}"
    seen = json.loads(match.group(1).replace("&quot;", '"'))
    assert seen["images"] == len(FIGS) and seen["loaded"] == len(FIGS), seen
    assert min(seen["widths"]) > 100
    assert seen["claimTables"] == len(FIGS)
    assert seen["summaryRows"] == len(figures.all_figures())
    anchors = [fig_id.replace("/", "-") for fig_id in FIGS]
    assert sorted(seen["sections"]) == sorted(anchors) and sorted(seen["links"]) == sorted(f"#{a}" for a in anchors)
    # and a person sees it: the top of the page as a screenshot
    shot = tmp_path / "top.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1280,900",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 10_000
