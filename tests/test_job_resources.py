"""The memory and time the heavy steps claim from their input size (alliance.job_resources).

The measured lines themselves are checked where they were fitted (README.md, "Running on a
cluster"); here: the input size, the retry scaling, that every rule that claims an input-sized
resource has a line, and that the example's jobs fit side by side into the local profile's
budget. tests/test_cluster.py shows the values reaching a cluster's submit command.
"""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import ROOT

from alliance import job_resources
from alliance.job_resources import (
    STEP_MODELS,
    influence_runtime_minutes,
    input_megabytes,
    step_memory_mb,
    step_runtime_minutes,
)
from alliance.simulate import SimulationDesign, simulate_study, write_study


def sized_rules() -> set[str]:
    """Rules of workflow/rules/*.smk whose resources call the input-sized helpers of common.smk."""
    found = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule |checkpoint )", path.read_text(), flags=re.MULTILINE):
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if name and "mem_mb=input_sized_mem_mb" in block and re.search(r"runtime=(input_sized|diagnostics)_runtime", block):
                found.add(name.group(1))
    return found


def test_every_input_sized_rule_has_a_measured_line_and_no_line_is_stale():
    assert sized_rules() == set(STEP_MODELS)


def test_the_heavy_steps_claim_input_sized_resources():
    heavy = {"validate_data", "ingest", "score", "internal_consistency", "interrater", "agreement", "change",
             "data_summary", "model_fit", "model_specification", "model_bootstrap_batch", "model_diagnostics"}
    assert heavy <= sized_rules()


def test_text_tables_count_at_their_parquet_size(tmp_path):
    # the same generated study as CSV and as Parquet: the constant is within 20% of the measured ratio
    study = simulate_study(SimulationDesign(n_therapists=50, n_clients=1000), seed=3)
    csv = write_study(study, tmp_path / "csv", fmt="csv")
    parquet = write_study(study, tmp_path / "parquet", fmt="parquet")
    tables = ["client_forms", "therapist_forms", "observer_ratings", "clients"]
    csv_mb = input_megabytes([csv[name] for name in tables])
    parquet_mb = input_megabytes([parquet[name] for name in tables])
    assert csv_mb == pytest.approx(parquet_mb, rel=0.2)
    assert input_megabytes([csv["client_forms"]]) == pytest.approx(
        csv["client_forms"].stat().st_size / 2**20 / job_resources.TEXT_PER_PARQUET)


def test_a_missing_input_is_left_to_snakemake(tmp_path):
    # Snakemake postpones a resource whose function raises FileNotFoundError for an input file
    with pytest.raises(FileNotFoundError):
        input_megabytes([tmp_path / "not_yet.parquet"])


def test_claims_grow_with_the_input_and_double_on_a_retry():
    for rule in STEP_MODELS:
        assert step_memory_mb(rule, 100.0) > step_memory_mb(rule, 1.0)
        assert step_runtime_minutes(rule, 1000.0) > step_runtime_minutes(rule, 1.0)
        assert step_memory_mb(rule, 5.0, attempt=2) == 2 * step_memory_mb(rule, 5.0)
        assert step_runtime_minutes(rule, 5.0, attempt=2) == 2 * step_runtime_minutes(rule, 5.0)


def test_influence_time_grows_faster_than_the_input():
    # one refit per therapist, each summing over all therapists: bounded by the power 1.5
    assert influence_runtime_minutes(200.0) / influence_runtime_minutes(100.0) == pytest.approx(2**1.5, rel=0.05)
    assert influence_runtime_minutes(10.0) > step_runtime_minutes("model_diagnostics", 10.0)


def test_the_claims_cover_the_peaks_measured_at_100000_clients():
    # issue 18's run (step logs): (rule, input Parquet MB, peak MiB, wall seconds)
    measured = [("model_fit", 3.51, 1371.1, 26.5), ("model_fit", 2.41, 359.6, 2.6),
                ("model_bootstrap_batch", 2.41, 335.7, 4.1), ("model_diagnostics", 18.6, 1203.4, 20.0),
                ("model_diagnostics", 8.0, 1040.6, 15.9)]
    for rule, input_mb, peak_mib, seconds in measured:
        assert step_memory_mb(rule, input_mb) >= peak_mib * 1.048576, rule
        assert step_runtime_minutes(rule, input_mb) * 60 >= seconds, rule
    assert influence_runtime_minutes(2.41) * 60 >= 44.3


#: benchmarks/rom_scaling.py at 1x, 2x and 4x the 100,000-client study, one job at a time:
#: (rule, input Parquet MB, peak MiB) from the step logs
SCALING_PEAKS = [
    ("ingest", 25.34, 3062.4), ("ingest", 49.76, 5867.5), ("ingest", 98.97, 11341.6),
    ("score", 25.26, 4228.0), ("score", 50.61, 8212.0), ("score", 100.98, 16092.8),
    ("change", 17.27, 2335.2), ("change", 35.06, 4440.2), ("change", 72.78, 8673.7),
    ("interrater", 42.53, 1065.0), ("interrater", 85.67, 1578.2), ("interrater", 173.76, 2704.5),
    ("agreement", 42.14, 2374.6), ("agreement", 84.77, 3948.1), ("agreement", 169.31, 7672.5),
    ("model_data", 17.84, 2094.5), ("model_data", 35.97, 3920.4), ("model_data", 71.82, 7355.0),
]


@pytest.mark.parametrize("rule, input_mb, peak_mib", SCALING_PEAKS)
def test_the_data_steps_claim_their_peak_and_not_much_more(rule, input_mb, peak_mib):
    # at least the peak (a job over its limit is killed), at most 1.6 times it (a line that a
    # leaner step has left behind holds memory that other jobs could use)
    assert 1.0 <= step_memory_mb(rule, input_mb) / (peak_mib * 1.048576) <= 1.6


def test_an_unknown_rule_is_named():
    with pytest.raises(ValueError, match="'no_such_rule'"):
        step_memory_mb("no_such_rule", 1.0)


def test_the_example_runs_two_jobs_side_by_side_locally():
    # every input of the bundled example is below 1 MB of Parquet (its raw CSVs: 0.1 MB)
    budget = yaml.safe_load((ROOT / "profiles" / "local" / "config.yaml").read_text())["resources"]["mem_mb"]
    assert max(step_memory_mb(rule, 1.0) for rule in STEP_MODELS) <= budget / 2
