"""Two runs of the workflow on the same inputs write byte-identical results."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from alliance import simulate
from conftest import make_workdir, run_snakemake

# Snakemake stamps its own HTML wrapper; everything the workflow itself writes must match.
EXEMPT = {"report.html"}


def digests(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and p.name not in EXEMPT}


@pytest.mark.slow
def test_two_runs_give_identical_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLIANCE_ID_KEY", "reproducibility-test-key-0123456789")  # not the example's data
    study = simulate.simulate_study(simulate.SimulationDesign(n_therapists=12, n_clients=120), seed=7)
    simulate.write_study(study, tmp_path / "small")
    workdir = make_workdir(tmp_path / "work", data=tmp_path / "small")
    run_snakemake(workdir)
    first = digests(workdir / "results")
    shutil.rmtree(workdir / "results")
    shutil.rmtree(workdir / ".snakemake")
    run_snakemake(workdir)
    second = digests(workdir / "results")
    assert len(first) > 10
    assert first.keys() == second.keys()
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
