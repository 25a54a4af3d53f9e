"""How the largest steps of the routine-outcome-monitoring benchmark grow with the study:
1x, 2x and 4x the clients of ``benchmarks/rom_scale.py`` (100,000 clients in 5,000 therapists
at 1x), each run up to the named steps only (their files as Snakemake targets), so that the 4x study
(about 5 million client sessions) does not run the whole workflow, one job at a time (each
step measured alone; two 4x steps would not fit the machine's memory side by side).

Prints, per step and size, wall time and peak memory (each step logs them; see
alliance.logs) and the ratios to 1x; the exponent ``log2(ratio at 2x)`` and
``log4(ratio at 4x)`` says whether a step grows linearly (1) or faster. README.md,
"Running on a cluster", extrapolates the ten-fold case from these figures.

usage: python benchmarks/rom_scaling.py [--steps score data_summary internal_consistency] [--sizes 1 2 4]
                                        [--clients 100000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rom_scale  # noqa: E402

from alliance.job_resources import input_megabytes  # noqa: E402


#: a file each measurable step writes (the step and every step it needs run for it)
STEP_TARGETS = {
    "ingest": "results/interim/administrations.parquet",
    "score": "results/scores/scores.parquet",
    "data_summary": "results/data/summary.json",
    "internal_consistency": "results/reliability/internal_consistency.csv",
    "change": "results/change/change.csv",
    "interrater": "results/reliability/interrater.csv",
    "agreement": "results/agreement/discrepancy.csv",
    "model_data": "results/interim/datasets/models/early_phq9_post.parquet",
}

#: each step's input tables (as in its rule; the instrument keys, a few kB, left out): their
#: Parquet megabytes are the input_mb of alliance.job_resources' lines
STEP_INPUTS = {
    # the raw files: every Parquet file in the generated study's data folder
    "deid_gate": [],
    "validate_data": [],
    "ingest": [],
    "score": ["results/interim/administrations.parquet"],
    "data_summary": ["results/interim/administrations.parquet", "results/interim/clients.parquet",
                     "results/data/therapist_switches.csv"],
    "internal_consistency": ["results/interim/administrations.parquet", "results/scores/scores.parquet"],
    "change": ["results/scores/scores.parquet"],
    "interrater": ["results/interim/administrations.parquet", "results/scores/scores.parquet"],
    "agreement": ["results/scores/analysis_scores.parquet", "results/interim/administrations.parquet"],
    "model_data": ["results/scores/analysis_scores.parquet", "results/interim/clients.parquet"],
}


def input_mb(workdir: Path, step: str) -> float:
    """The step's input in Parquet megabytes, as its resources see it."""
    if step in ("deid_gate", "validate_data", "ingest"):
        paths = [p for p in (workdir / "data").glob("*.parquet") if p.stem != "truth"]
    else:
        paths = [workdir / p for p in STEP_INPUTS[step]]
    return input_megabytes(paths)


def run_size(workdir: Path, clients: int, therapists: int, steps: list[str], seed: int) -> pd.DataFrame:
    data = workdir / "data"
    rom_scale.generate(data, clients, therapists, "parquet", seed)
    config = rom_scale.workdir_config(workdir, data, "parquet")
    # one job at a time: each step measured alone, and two 4x steps never share the memory.
    # The steps' files as targets: Snakemake 9.27's --until stopped before internal_consistency
    # ("out of jobs ready to be started")
    seconds, code = rom_scale.run_workflow(workdir, config, targets=[STEP_TARGETS[s] for s in steps], cores=1)
    if code != 0:
        raise SystemExit(f"workflow failed at {clients:,} clients (exit {code})")
    table = rom_scale.step_table(workdir / "logs")
    rules = table["step"].str.rsplit("/", n=1).str[-1]  # models/model_data: the rule model_data
    table["input_mb"] = [input_mb(workdir, r) if r in STEP_INPUTS else math.nan for r in rules]
    return table.assign(clients=clients)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", nargs="+", default=["score", "data_summary", "internal_consistency"],
                        choices=sorted(STEP_TARGETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="rom_scaling_"))
    rows = []
    for size in args.sizes:
        workdir = base / f"x{size}"
        clients = args.clients * size
        table = run_size(workdir, clients, clients // 20, args.steps, args.seed)
        rows.append(table.assign(size=size))  # the named steps and every step they need
        print(f"{size}x ({clients:,} clients) done", flush=True)
        shutil.rmtree(workdir)
    out = pd.concat(rows, ignore_index=True)
    first = out.loc[out["size"] == min(args.sizes)].set_index("step")
    out["time_ratio"] = out["wall_seconds"] / out["step"].map(first["wall_seconds"])
    out["memory_ratio"] = out["peak_rss_mib"] / out["step"].map(first["peak_rss_mib"])
    out["time_exponent"] = [math.log(r) / math.log(s) if s > 1 else math.nan
                            for r, s in zip(out["time_ratio"], out["size"])]
    out["memory_exponent"] = [math.log(r) / math.log(s) if s > 1 else math.nan
                              for r, s in zip(out["memory_ratio"], out["size"])]
    out = out.sort_values(["step", "size"])[["step", "size", "clients", "input_mb", "wall_seconds", "peak_rss_mib", "time_ratio",
                                             "memory_ratio", "time_exponent", "memory_exponent"]]
    print(out.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.workdir is None:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
