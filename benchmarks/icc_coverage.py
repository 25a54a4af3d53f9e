"""Coverage of the incomplete-design ICC intervals with few coders (issue 16, item 5).

Simulates ``--studies`` observer-rating studies with known variance components and counts how
often each interval method of :func:`alliance.interrater.icc` covers the true ICCs. Default
design, after the bundled example's generator (``alliance.simulate``): 4 coders, each session
coded by 2-4 of them, 120 sessions, rating = 4.2 + session + coder + residual with variances
0.5, 0.06 and 0.15 (true ICC(A,1) = .704, ICC(C,1) = .769, ICC(1) ignores the coders). Methods:
``wald`` (delta method, logit scale), ``profile`` (REML profile likelihood) and, with
``--n-boot`` > 0, ``bootstrap`` (parametric, percentile). Coverage is reported with its Monte
Carlo standard error sqrt(c (1 - c) / studies), the shares missed on each side (the interval
entirely below, or entirely above the truth) and the mean width.

Recorded (2026-12-05, seed 16, 400 studies, ``--n-boot 500``): ICC(A,1) coverage Wald 93.2%
(MC SE 1.3; 6.5 of 6.8 points of misses with the interval above the truth), bootstrap 93.5%
(1.2), profile 96.8% (0.9); ICC(C,1) 95.5/94.8/95.5%. With ``--coders 5 --variances 0.5 0.15
0.15 --studies 300``: ICC(A,1) Wald 88.7% (1.8), profile 93.7% (1.4).

Prints a Markdown table and writes every number, the seed and the machine to
``benchmarks/results/icc_coverage.json`` (``--out``).

usage: python benchmarks/icc_coverage.py [--studies 200] [--sessions 120] [--coders 4]
                                         [--n-boot 0] [--seed 16] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.interrater.intraclass import icc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "icc_coverage.json"
FORMS = ["ICC(1)", "ICC(A,1)", "ICC(C,1)", "ICC(k)", "ICC(A,k)", "ICC(C,k)"]


def simulate_study(rng: np.random.Generator, n_sessions: int, n_coders: int, per_session: tuple[int, int],
                   variances: tuple[float, float, float], mean: float = 4.2) -> pd.DataFrame:
    """One study: each session coded by a random min..max of the coders."""
    vt, vr, ve = variances
    k = rng.integers(per_session[0], per_session[1] + 1, size=n_sessions)
    t = np.repeat(np.arange(n_sessions), k)
    r = np.concatenate([rng.choice(n_coders, size=m, replace=False) for m in k])
    y = (mean + rng.normal(0, np.sqrt(vt), n_sessions)[t] + rng.normal(0, np.sqrt(vr), n_coders)[r]
         + rng.normal(0, np.sqrt(ve), len(t)))
    return pd.DataFrame({"target": t, "rater": r, "rating": y})


def true_iccs(variances: tuple[float, float, float], k: float) -> dict[str, float]:
    """The population ICCs of the two-way model; ICC(1) and ICC(k) as the one-way model's
    target (its error variance is the rater plus residual variance)."""
    vt, vr, ve = variances
    return {
        "ICC(1)": vt / (vt + vr + ve), "ICC(A,1)": vt / (vt + vr + ve), "ICC(C,1)": vt / (vt + ve),
        "ICC(k)": vt / (vt + (vr + ve) / k), "ICC(A,k)": vt / (vt + (vr + ve) / k),
        "ICC(C,k)": vt / (vt + ve / k),
    }


def run(studies: int, n_sessions: int, n_coders: int, per_session: tuple[int, int],
        variances: tuple[float, float, float], methods: list[str], n_boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    seconds = {m: 0.0 for m in methods}
    for study in range(studies):
        data = simulate_study(rng, n_sessions, n_coders, per_session, variances)
        per_target = data.groupby("target").size().to_numpy()
        truth = true_iccs(variances, len(per_target) / np.sum(1.0 / per_target))
        for method in methods:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a rare unconverged bootstrap refit
                out = icc(data, "target", "rater", "rating", design="incomplete", ci_method=method,
                          n_boot=n_boot, seed=study).set_index("mcgraw_wong")
            seconds[method] += time.perf_counter() - start
            for form in FORMS:
                lo, hi, value = out.loc[form, "ci_low"], out.loc[form, "ci_high"], truth[form]
                rows.append({"study": study, "method": method, "form": form, "truth": value,
                             "estimate": out.loc[form, "icc"], "low": lo, "high": hi,
                             "covered": bool(lo <= value <= hi), "below": bool(hi < value),
                             "above": bool(lo > value), "width": hi - lo})
    table = pd.DataFrame(rows)
    summary = (table.groupby(["method", "form"], sort=False)
               .agg(coverage=("covered", "mean"), below=("below", "mean"), above=("above", "mean"),
                    width=("width", "mean"), studies=("covered", "size")).reset_index())
    summary["mc_se"] = np.sqrt(summary["coverage"] * (1 - summary["coverage"]) / summary["studies"])
    return {"summary": summary, "seconds": seconds}


def markdown(summary: pd.DataFrame, forms: list[str]) -> str:
    lines = ["| form | method | coverage (MC SE) | interval below truth | above truth | mean width |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for _, r in summary[summary["form"].isin(forms)].iterrows():
        lines.append(f"| {r['form']} | {r['method']} | {r['coverage']:.3f} ({r['mc_se']:.3f}) | "
                     f"{r['below']:.3f} | {r['above']:.3f} | {r['width']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--sessions", type=int, default=120)
    ap.add_argument("--coders", type=int, default=4)
    ap.add_argument("--per-session", type=int, nargs=2, default=(2, 4), metavar=("MIN", "MAX"))
    ap.add_argument("--variances", type=float, nargs=3, default=(0.5, 0.06, 0.15),
                    metavar=("TARGET", "RATER", "RESIDUAL"))
    ap.add_argument("--n-boot", type=int, default=0, help="also the parametric bootstrap (replicates)")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    methods = ["wald", "profile"] + (["bootstrap"] if args.n_boot > 0 else [])
    load_start = os.getloadavg()
    started = time.perf_counter()
    result = run(args.studies, args.sessions, args.coders, tuple(args.per_session),
                 tuple(args.variances), methods, args.n_boot, args.seed)
    summary = result["summary"]
    table = markdown(summary, FORMS)
    print(table)
    record = {
        "benchmark": "icc_coverage", "issue": 16,
        "design": {"studies": args.studies, "sessions": args.sessions, "coders": args.coders,
                   "coders_per_session": list(args.per_session),
                   "variances": dict(zip(["target", "rater", "residual"], args.variances)),
                   "n_boot": args.n_boot, "seed": args.seed, "ci_level": 0.95},
        "summary": summary.to_dict(orient="records"),
        "seconds_per_study": {m: s / args.studies for m, s in result["seconds"].items()},
        "markdown_table": table,
        "machine": {"cores": os.cpu_count(), "load_average_start": list(load_start),
                    "load_average_end": list(os.getloadavg())},
        "total_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"seconds per study: {record['seconds_per_study']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
