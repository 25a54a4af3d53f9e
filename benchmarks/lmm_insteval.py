"""InstEval benchmark: alliance.lmm against lme4 on lme4's classic crossed design.

lme4's ``InstEval`` (73,421 ratings; 2,972 students x 1,128 lecturers crossed, plus 28
dept:service cells) fitted by REML as ``y ~ service + (1|s) + (1|d) + (1|dept:service)``:

* lme4 1.1-31 ``lmer`` (``calc.derivs = FALSE``) timed by Rscript in this run, CPU time
  (``proc.time`` user + sys) and wall time of each of ``--runs`` fits in one R session;
* alliance.lmm without Satterthwaite df (``satterthwaite_df=False``) and with them, CPU time
  (``time.process_time``) and wall time of each fit in this process (the first fit after
  import is a run like the others: no warm-up is left out).

Prints one row per run and the ratios of the medians (lme4 / engine) measured in the same
run, the objectives (REML criterion) of both, and the machine's load (the machine may be
shared: CPU time is the main measure). Data: ``tests/data/lmm_r/insteval.csv.gz``, written by
``tests/data/lmm_r/ref_insteval.R`` from lme4's own copy.

usage: python benchmarks/lmm_insteval.py [--runs 3] [--no-lme4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "lmm_r" / "insteval.csv.gz"
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
ie <- read.csv(gzfile(args[1]), colClasses = c("factor", "factor", "factor", "factor", "numeric"))
runs <- as.integer(args[2])
ctrl <- lmerControl(calc.derivs = FALSE)
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept:service)
for (i in seq_len(runs)) {
  t <- system.time(m <- lmer(f, data = ie, control = ctrl))
  cat(sprintf("%.4f %.4f %.10f %d\n", t[["user.self"]] + t[["sys.self"]], t[["elapsed"]],
              REMLcrit(m), m@optinfo$feval))
}
"""


def time_lme4(runs: int) -> pd.DataFrame | None:
    """CPU and wall seconds of ``runs`` lmer fits in one Rscript session (None without R)."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_SCRIPT)
        path = fh.name
    try:
        out = subprocess.run(["Rscript", path, str(DATA), str(runs)], capture_output=True,
                             text=True, check=True).stdout
    except subprocess.CalledProcessError as err:
        print("lme4 failed:", err.stderr.strip()[-500:])
        return None
    finally:
        os.unlink(path)
    rows = [line.split() for line in out.strip().splitlines()]
    return pd.DataFrame({"run": range(1, len(rows) + 1), "cpu_s": [float(r[0]) for r in rows],
                         "wall_s": [float(r[1]) for r in rows],
                         "objective": [float(r[2]) for r in rows],
                         "evaluations": [int(r[3]) for r in rows]})


def time_engine(data: pd.DataFrame, runs: int, with_df: bool) -> pd.DataFrame:
    from alliance import lmm

    rows = []
    for i in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        m = lmm.fit(FORMULA, data, satterthwaite_df=with_df)
        rows.append({"run": i + 1, "cpu_s": time.process_time() - c0,
                     "wall_s": time.perf_counter() - w0, "objective": m.objective,
                     "evaluations": m.n_evaluations})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-lme4", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}; cores: {os.cpu_count()}")
    data = pd.read_csv(DATA, dtype={"s": str, "d": str, "dept": str, "service": str})
    tables = {}
    if not args.no_lme4:
        lme4 = time_lme4(args.runs)
        if lme4 is not None:
            tables["lme4"] = lme4
    tables["alliance"] = time_engine(data, args.runs, with_df=False)
    tables["alliance + df"] = time_engine(data, args.runs, with_df=True)
    runs = pd.concat([t.assign(engine=k) for k, t in tables.items()], ignore_index=True)
    print(runs[["engine", "run", "cpu_s", "wall_s", "evaluations", "objective"]]
          .to_string(index=False, float_format=lambda v: f"{v:.10g}"))
    med = runs.groupby("engine", sort=False)[["cpu_s", "wall_s"]].median()
    ref = med.loc["lme4"] if "lme4" in med.index else None
    summary = med.copy()
    if ref is not None:
        summary["lme4/engine cpu"] = ref["cpu_s"] / med["cpu_s"]
        summary["lme4/engine wall"] = ref["wall_s"] / med["wall_s"]
    df_cost = med.loc["alliance + df", "cpu_s"] / med.loc["alliance", "cpu_s"] - 1.0
    print("\nmedians of the runs")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nSatterthwaite df cost on top of the fit (median CPU): {100 * df_cost:.1f}%")
    if ref is not None:
        diff = runs.loc[runs.engine != "lme4", "objective"].min() - runs.loc[runs.engine == "lme4", "objective"].min()
        print(f"objective engine - lme4: {diff:.3e} (relative {diff / runs.objective.iloc[0]:.2e})")
    print(f"load average at end: {os.getloadavg()}")
    print(json.dumps({"median": summary.reset_index().to_dict("records")}, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
