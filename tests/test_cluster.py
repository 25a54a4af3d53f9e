"""Snakemake's cluster-generic executor with a local submit script: the power target's jobs run
each in its own process and exchange only files; the heavy steps' memory and time, computed from
their input size, reach the submit command."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest
import yaml
from conftest import ROOT, SNAKEMAKE, example_config, make_workdir, run_snakemake

from alliance.config import validate_config
from alliance.job_resources import input_megabytes, step_memory_mb, step_runtime_minutes
from alliance.models.steps import specification_ids
from alliance.simulate import SimulationDesign, simulate_study, write_study

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


#: rules whose resources are computed from their input size, among the jobs the test runs
SIZED_RULES = {"deid_gate", "validate_data", "ingest", "score", "model_data", "model_fit", "model_specification"}
SUBMIT_ARGS = re.compile(r"--mem-mb=(\d+) --runtime=(\d+)")


def run_snakemake_in_background(workdir, *args: str) -> subprocess.Popen:
    """conftest.run_snakemake's command, started without waiting (two small runs side by side)."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(workdir / "config" / "config.yaml"), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def submitted_resources(workdir) -> dict[str, tuple[int, int]]:
    """Rule -> (mem_mb, runtime) as the submit command received them (submit.sh's record)."""
    rows = pd.read_csv(workdir / ".snakemake" / "cluster-generic-test" / "submissions.tsv", sep="\t",
                       names=["jobid", "rule", "args"], dtype=str)
    found = {}
    for rule, args in zip(rows["rule"], rows["args"]):
        match = SUBMIT_ARGS.fullmatch(args)
        assert match, f"{rule}: submit arguments {args!r}"
        found[rule] = (int(match.group(1)), int(match.group(2)))
    return found


@pytest.mark.slow
def test_input_sized_resources_reach_the_submit_command(tmp_path, monkeypatch):
    """A model fit and a multiverse specification (and the steps before them) of the example and
    of a study with twice its clients: each job's mem_mb and runtime, computed by
    alliance.job_resources from its input size, arrive in the submit command, and the larger
    study's jobs claim more memory."""
    monkeypatch.setenv("ALLIANCE_ID_KEY", "cluster-resources-test-key-0123456789")  # the larger study is no example
    larger = tmp_path / "larger_data"
    write_study(simulate_study(SimulationDesign(n_therapists=80, n_clients=800)), larger)
    workdirs = {"example": make_workdir(tmp_path / "example"),
                "larger": make_workdir(tmp_path / "larger", data=larger)}
    spec = specification_ids(validate_config(example_config(), source="config"))[0]
    targets = ["results/models/early_phq9_post/fit.json", f"results/sensitivity/specifications/{spec}.json"]
    submit = f"{PROFILE / 'submit.sh'} --mem-mb={{resources.mem_mb}} --runtime={{resources.runtime}}"
    runs = {name: run_snakemake_in_background(workdir, "--profile", str(PROFILE),
                                              "--cluster-generic-submit-cmd", submit, *targets)
            for name, workdir in workdirs.items()}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}:\n{out[-3000:]}\n{err[-6000:]}"

    claimed = {name: submitted_resources(workdir) for name, workdir in workdirs.items()}
    for name, workdir in workdirs.items():
        assert SIZED_RULES <= claimed[name].keys()
        assert claimed[name]["key_fingerprint"] == (1000, 10)  # the profile's default-resources
        results = workdir / "results"
        inputs = {  # model_data reads the scores once; a fit and a specification only their dataset
            "model_data": [results / "scores" / "analysis_scores.parquet", results / "interim" / "clients.parquet"],
            "model_fit": [results / "interim" / "datasets" / "models" / "early_phq9_post.parquet"],
            "model_specification": [results / "interim" / "datasets" / "specifications" / f"{spec}.parquet"]}
        for rule, files in inputs.items():
            size = input_megabytes(files)
            assert claimed[name][rule] == (step_memory_mb(rule, size), step_runtime_minutes(rule, size)), rule
    for rule in SIZED_RULES:
        assert claimed["larger"][rule][0] > claimed["example"][rule][0], rule
    # on the example, two jobs fit side by side into profiles/local's memory budget
    budget = yaml.safe_load((ROOT / "profiles" / "local" / "config.yaml").read_text())["resources"]["mem_mb"]
    assert max(mem for mem, runtime in claimed["example"].values()) <= budget / 2
