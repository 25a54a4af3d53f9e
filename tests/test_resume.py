"""A run killed mid-way and resumed gives the same results as an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, SNAKEMAKE, make_workdir, run_snakemake

EXEMPT = {"report.html"}
# Steps after scoring that run side by side when the kill comes (the model fits, reliability,
# change): the resumed run must finish them as the uninterrupted run did. The rest of the
# workflow only reads their outputs.
TARGETS = ["results/tables/model_tables.md", "results/reliability/internal_consistency.csv",
           "results/change/change.csv", "results/reliability/interrater.csv"]


def digests(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p.name not in EXEMPT}


@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(tmp_path, example_run):
    workdir = make_workdir(tmp_path)
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2", *TARGETS,
           "--configfile", str(workdir / "config" / "config.yaml")]  # targets first: --configfile takes a list
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = workdir / "results" / "scores" / "scores.parquet"
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the workflow finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)  # as a crash or a power cut would: no clean-up
    proc.wait()
    finished = {name for name in digests(workdir / "results") if not Path(name).name.startswith(".")}
    assert finished < digests(example_run / "results").keys()  # interrupted part-way
    run_snakemake(workdir, "--unlock")
    run_snakemake(workdir, "--rerun-incomplete", *TARGETS)
    resumed = digests(workdir / "results")
    assert set(TARGETS) <= {f"results/{name}" for name in resumed}
    assert resumed == {name: digest for name, digest in digests(example_run / "results").items() if name in resumed}
