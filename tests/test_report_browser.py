"""The report as a reviewer meets it: opened in headless Chromium (Debian's ``chromium``;
``.ci/run`` installs it where it is missing), the landing page shows the main results with links
to their tables, the categories follow the analysis, and every table is readable as HTML."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from urllib.parse import quote

import pandas as pd
import pytest

from alliance.report.tables import format_number, significant_decimals
from conftest import run_snakemake

MAIN = "early_phq9_post"
CATEGORIES = ["1 Data", "2 Scores and change", "3 Reliability", "4 Models", "5 Ruptures",
              "6 Client–therapist agreement", "7 Manuscript tables", "8 Provenance"]
TABLE_TYPES = {"text/csv", "application/json", "text/markdown"}


def rendered_dom(html_path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: install Debian's chromium (.ci/run does)"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                           "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def embedded(report_text: str, name: str):
    """The JSON of ``var name = ...`` in the report's ``<script id="name">``."""
    match = re.search(rf'<script id="{name}">\s*var {name} = (.*?);?\s*</script>', report_text, re.S)
    assert match, name
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def report(example_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    run_snakemake(example_run, "--report", str(path))
    return path


@pytest.mark.slow
def test_landing_page_shows_the_main_estimate_with_links_in_the_analysis_order(example_run, report):
    dom = rendered_dom(report)
    fixed = pd.read_csv(example_run / "results" / "models" / MAIN / "fixed_effects.csv")
    row = fixed.loc[fixed["term"] == "early_alliance"].iloc[0]
    # The embedded data escapes the minus sign (\u2212); only the rendered page has it as text.
    estimate = f"<em>b</em> = {format_number(row['estimate'], 3)}, 95% CI [{format_number(row['ci_low'], 3)}, "
    assert estimate in dom
    assert "−" in estimate
    for text in ("Main results", "400 clients, 40 therapists", "Observer agreement", "Flückiger et al. (2018)"):
        assert text in dom, text
    # each number links to its entry (a reference Snakemake could not resolve would show as an error)
    for page in (f"model_{MAIN}_fixed_effects", "models_therapist_icc", "models_alliance_effects",
                 "reliability_interrater", "data_summary"):
        assert f"app.showResultInfo('{quote(f'results/report/tables/{page}.html')}')" in dom, page
    assert "Unknown target name" not in dom and "problematic" not in dom
    # the menu lists the categories in the order of the analysis; the page links to each
    menu = [dom.index(f">{name}<") for name in CATEGORIES]
    assert menu == sorted(menu)
    for name in CATEGORIES:
        assert f"app.showCategory('{quote(name)}')" in dom, name


@pytest.mark.slow
def test_every_table_is_rendered_as_html_and_large_data_files_are_not_embedded(example_run, report, tmp_path):
    text = report.read_text(encoding="utf-8")
    results, categories = embedded(text, "results"), embedded(text, "categories")
    assert list(categories) and set(categories) == set(CATEGORIES)
    placed = {path: (category, sub) for category, subs in categories.items()
              for sub, paths in subs.items() for path in paths}
    pages = {(placed[path], entry["labels"]["result"]) for path, entry in results.items()
             if entry["mime_type"] == "text/html" and entry["labels"] and "download" not in entry["labels"]}
    tables = [path for path, entry in results.items() if entry["mime_type"] in TABLE_TYPES]
    assert len(tables) > 30
    for path in tables:
        entry = results[path]
        assert entry["labels"], f"{path} has no label"
        assert "download" in entry["labels"], path
        assert (placed[path], entry["labels"]["result"]) in pages, f"{path} has no HTML page beside it"
    # every entry is labelled
    unlabelled = [p for p, e in results.items() if not e["labels"]]
    assert unlabelled == []
    # large data files: a page about the file, not the file (nothing embedded above 1 MB)
    assert "results/scores/scores.csv" not in results
    assert "results/report/tables/scores_data_file.html" in results
    assert max(len(e["data_uri"]) for e in results.values()) < 1_000_000
    # the main model's fixed effects, rendered by Chromium from the report's embedded page
    page = results[f"results/report/tables/model_{MAIN}_fixed_effects.html"]
    html_file = tmp_path / "fixed_effects.html"
    html_file.write_bytes(base64.b64decode(page["data_uri"].split(",", 1)[1]))
    dom = rendered_dom(html_file)
    fixed = pd.read_csv(example_run / "results" / "models" / MAIN / "fixed_effects.csv")
    row = fixed.loc[fixed["term"] == "early_alliance"].iloc[0]
    decimals = max(2, significant_decimals(row["se"]))
    for value in (row["estimate"], row["se"], row["ci_low"], row["ci_high"]):
        assert f'<td class="num">{format_number(value, decimals)}</td>' in dom, value
    assert "<td>early_alliance</td>" in dom and "full precision" in dom
