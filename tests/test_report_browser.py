"""The report as a reviewer meets it: opened in headless Chromium (Debian's ``chromium``;
``.ci/run`` installs it where it is missing), the landing page shows the main results."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from alliance.report.tables import format_number
from conftest import run_snakemake


def rendered_dom(html_path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: install Debian's chromium (.ci/run does)"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                           "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_landing_page_shows_the_main_estimate(example_run, tmp_path):
    report = tmp_path / "report.html"
    run_snakemake(example_run, "--report", str(report))
    dom = rendered_dom(report)
    fixed = pd.read_csv(example_run / "results" / "models" / "early_phq9_post" / "fixed_effects.csv")
    row = fixed.loc[fixed["term"] == "early_alliance"].iloc[0]
    # The embedded data escapes the minus sign (\u2212); only the rendered page has it as text.
    estimate = f"<em>b</em> = {format_number(row['estimate'], 3)}, 95% CI [{format_number(row['ci_low'], 3)}, "
    assert estimate in dom
    assert "−" in estimate
    for text in ("Main results", "400 clients, 40 therapists", "Observer agreement", "Flückiger et al. (2018)"):
        assert text in dom, text
