"""The power target through Snakemake's cluster-generic executor with a local submit script:
every job runs in its own process and the jobs exchange only files."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import ROOT, example_config, make_workdir, run_snakemake

PROFILE = ROOT / "profiles" / "cluster-generic-test"


@pytest.mark.slow
def test_power_runs_as_separate_cluster_jobs(tmp_path):
    config = example_config()
    config["power"] = {"n_therapists": [6], "clients_per_therapist": [4], "sessions": [4],
                       "effect_sizes": [0.0, -2.0], "replications": 4, "batch_size": 2,
                       "model": "within_between", "random": "(1 | client)"}
    workdir = make_workdir(tmp_path, config)
    proc = run_snakemake(workdir, "--profile", str(PROFILE), "power")
    jobs = pd.read_csv(workdir / ".snakemake" / "cluster-generic-test" / "jobs.tsv", sep="\t",
                       names=["jobid", "rule", "script"])
    batches = jobs[jobs["rule"] == "power_batch"]
    assert len(batches) == 4  # 2 effect sizes x 2 batches
    assert jobs["jobid"].is_unique  # each job its own process
    state = workdir / ".snakemake" / "cluster-generic-test"
    assert all((state / f"{j}.exit").read_text().strip() == "0" for j in jobs["jobid"])
    curve = pd.read_csv(workdir / "results" / "power" / "power_curve.csv")
    assert sorted(curve["effect_size"]) == [-2.0, 0.0]
    replications = pd.read_csv(workdir / "results" / "power" / "replications.csv")
    assert len(replications) == 4 * 2 and replications["seed"].is_unique
    assert "cluster-generic" in proc.stdout + proc.stderr
