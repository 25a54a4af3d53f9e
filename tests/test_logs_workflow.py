"""What a person running the workflow sees: one line for rule `all`, long steps named in words,
and each step's library warnings summarised in its log (alliance.logs under Snakemake)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import make_workdir, run_snakemake


def test_a_dry_run_prints_one_line_for_all_and_the_long_steps_in_words(tmp_path):
    out = run_snakemake(make_workdir(tmp_path), "-n").stdout
    block = out[out.index("Job 0: "):out.index("Job stats:", out.index("Job 0: "))]
    assert block.splitlines()[0] == "Job 0: Every result is up to date under results/; each step's log is under logs/"
    assert "input:" not in block and len(block) < 400, block  # the list of every result was ~10,000 characters
    assert re.search(r"Cluster bootstrap of early_phq9_post, batch 0 of batches 0-3: 200 resamples in all "
                     r"\(log: logs/bootstrap/early_phq9_post_batch_0\.log\)", out)
    assert re.search(r"Multiverse: fitting specification \S+, one of \d+", out)


def test_a_step_s_log_summarises_its_warnings(example_run: Path):
    log = (example_run / "logs" / "interrater.log").read_text(encoding="utf-8")
    summary = re.search(r"^INFO alliance\.warnings: summary: (\d+) warnings: UserWarning ×(\d+) \(.+\)$", log,
                        re.MULTILINE)
    assert summary and summary.group(1) == summary.group(2), log
    warned = [line for line in log.splitlines() if line.startswith("WARNING py.warnings: ")]
    assert warned and all(line.startswith("WARNING py.warnings: UserWarning: ") for line in warned)
    # no source path or source line: "…/intraclass.py:856: UserWarning: …" and the call below it
    assert ".py:" not in log and "return _icc" not in log
