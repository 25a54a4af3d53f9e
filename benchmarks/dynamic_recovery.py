"""Recovery of the within-person alliance -> next-session outcome effect on data with dynamics.

Simulates studies whose symptoms carry over from session to session (``symptom_ar``), whose
symptom shocks move the next session's alliance (``symptom_to_alliance``, reverse causation)
and in which some clients have an early sudden gain, scores them as the pipeline does, and
fits side by side

* ``naive_within_between``: the lagged within/between mixed model of Falkenström et al. (2013)
  without the lagged outcome (the ``within_between`` kind at its defaults), term ``a_cw_lag``;
* ``naive_lagged_outcome``: the same with the raw lagged outcome added (``lagged_response:
  true``; Nickell-biased with client random intercepts), term ``a_cw_lag``;
* ``riclpm``: the RI-CLPM of :mod:`alliance.models.dynamic` (ML, sessions 1..WAVES), term
  ``alliance_to_outcome``.

The truth is ``b_within`` per point of the WAI-SR total (b_within / 12): in the generator
``d_t = symptom_ar*d_(t-1) + b_within*(A_(t-1) - Abar_i) + e_t``, so b_within is the effect of
the previous session's alliance holding the previous session's symptoms fixed. Random client
slopes of the symptoms are set to 0 (``sd_client_slope``) so that the RI-CLPM's stationary
within-person part is the generator's; rounding and clipping of the PHQ-9 remain.

Writes one CSV row per study and method (appended as it goes, so a run can be summarised
while it continues) and, with ``--summary``, the table: bias, relative bias, coverage of the
95% CI, and their Monte Carlo SEs.

usage: python benchmarks/dynamic_recovery.py --studies 600 --scenario dynamics --out results_dynamic_recovery.csv
       python benchmarks/dynamic_recovery.py --summary --out results_dynamic_recovery.csv
"""
from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

WAVES = 8
SCENARIOS = {
    # carry-over and reverse causation: the dynamics the RI-CLPM is built for
    "dynamics": {"symptom_ar": 0.4, "symptom_to_alliance": -0.05, "sd_client_slope": 0.0},
    # the same plus early sudden gains: a lasting level shift, outside every stationary model
    "dynamics_sudden_gains": {"symptom_ar": 0.4, "symptom_to_alliance": -0.05, "sd_client_slope": 0.0,
                              "sudden_gain_share": 0.2, "sudden_gain_size": 4.0},
}


def one_study(seed: int, scenario: str = "dynamics") -> list[dict]:
    from alliance import models as M
    from alliance.models.steps import RECOVERY_SPEC, fit_declared_model, simulated_scores
    from alliance.simulate import SimulationDesign, SimulationEffects, simulate_study

    effects = replace(SimulationEffects(), **SCENARIOS[scenario])
    study = simulate_study(SimulationDesign(n_therapists=30, n_clients=240), effects, seed=seed)
    truth = effects.b_within / 12
    scores = simulated_scores(study.client_forms)
    rows = []
    for method, lagged_response in (("naive_within_between", False), ("naive_lagged_outcome", True)):
        fitted = fit_declared_model({**RECOVERY_SPEC, "lagged_response": lagged_response}, scores, None)
        fe = fitted.result.fixed_effects.loc["a_cw_lag"]
        half = stats.t.ppf(0.975, fe["df"]) * fe["se"]
        rows.append({"seed": seed, "method": method, "estimate": fe["estimate"], "se": fe["se"],
                     "ci_low": fe["estimate"] - half, "ci_high": fe["estimate"] + half})
    session = M.session_level_data(scores, ("phq9", "client", "total"), ("wai_sr", "client", "total"))
    result, _ = M.fit_dynamic(session, waves=WAVES)
    est = result.estimates.loc["alliance_to_outcome"]
    rows.append({"seed": seed, "method": "riclpm", "estimate": est["estimate"], "se": est["se"],
                 "ci_low": est["ci_low"], "ci_high": est["ci_high"], "converged": result.converged})
    for r in rows:
        r["scenario"] = scenario
        r["truth"] = truth
        r["covered"] = bool(r["ci_low"] <= truth <= r["ci_high"])
    return rows


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Bias, relative bias, coverage and their Monte Carlo SEs per method."""
    out = []
    for (scenario, method), g in rows.groupby(["scenario", "method"], sort=False):
        n = len(g)
        err = g["estimate"] - g["truth"]
        truth = g["truth"].iloc[0]
        cover = g["covered"].mean()
        out.append({"scenario": scenario, "method": method, "n_studies": n, "truth": truth, "mean_estimate": g["estimate"].mean(),
                    "bias": err.mean(), "bias_mcse": err.std(ddof=1) / math.sqrt(n),
                    "relative_bias": err.mean() / abs(truth), "empirical_se": g["estimate"].std(ddof=1),
                    "mean_se": g["se"].mean(), "coverage": cover, "coverage_mcse": math.sqrt(cover * (1 - cover) / n)})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--out", type=Path, default=Path("dynamic_recovery.csv"))
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="dynamics")
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    if args.summary:
        print(summarise(pd.read_csv(args.out)).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        return
    done = set()
    if args.out.exists():
        previous = pd.read_csv(args.out)
        done = set(previous.loc[previous["scenario"] == args.scenario, "seed"])
    seeds = np.random.SeedSequence(args.seed).generate_state(args.studies)
    for i, seed in enumerate(int(s) for s in seeds):
        if seed in done:
            continue
        try:
            rows = one_study(seed, args.scenario)
        except Exception as exc:  # a failed study is counted, not hidden
            print(f"study {i} (seed {seed}) failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        pd.DataFrame(rows).to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
        print(f"study {i + 1}/{args.studies} done", flush=True)


if __name__ == "__main__":
    main()
