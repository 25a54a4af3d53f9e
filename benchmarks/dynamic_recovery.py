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

The truth is ``b_within`` per point of the WAI-SR total (b_within / 12). In the generator with
dynamics (``alliance.simulate.DEFINITIONS["dynamics"]``) the symptoms' within-client part is
``d_t = symptom_ar*d_(t-1) + b_within*(A_(t-1) - L_(t-1)) + e_t`` with ``A`` the observed WAI-SR
mean and ``L`` the client's alliance level (trait + therapist part + growth: no later session
enters it), and with ``alliance_carry = "observed"`` the observed score's deviation from the
level, ``W_t = A_t - L_t``, follows ``W_t = alliance_ar1*W_(t-1) + symptom_to_alliance*d_(t-1)
+ innovation``. That is the RI-CLPM's within-person model, so its ``alliance_to_outcome`` *is*
b_within / 12 (and ``ar_outcome`` = symptom_ar, ``ar_alliance`` = alliance_ar1,
``outcome_to_alliance`` = 12 * symptom_to_alliance): b_within is the effect of the previous
session's observed alliance on the symptoms holding the previous session's symptoms fixed.
Random client slopes of the symptoms are 0 (``sd_client_slope``) so that the within-person part
is stationary.

Scenarios (``SCENARIOS``): ``dynamics`` is in the RI-CLPM's class up to the pipeline's scoring
(PHQ-9 rounding, clipping and proration of missing items, WAI-SR item rounding) and the
injected rupture dips (``dynamics_no_ruptures`` leaves those out too); its alliance mean is 3.0
so that WAI-SR items are not clipped at 5. The others add one realistic feature each that the
RI-CLPM does not model and measure what it costs:
``dynamics_ceiling`` (the default alliance mean 3.8: items clipped at 5 make the observed score
a non-linear function of the state), ``dynamics_measurement_error`` (carry-over and feedback act
on the latent alliance; the item noise is measurement error that does not carry, so the observed
within part is ARMA(1,1)), ``dynamics_sudden_gains`` (lasting level shifts).

Writes one CSV row per study and method (appended as it goes, so a run can be summarised
while it continues) and, with ``--summary``, the table: bias, relative bias, coverage of the
95% CI, and their Monte Carlo SEs.

One process on one core: BLAS threads are limited to 1 unless set (about 3 s a study here).

usage: python benchmarks/dynamic_recovery.py --studies 600 --scenario dynamics --out results_dynamic_recovery.csv
       python benchmarks/dynamic_recovery.py --summary --out results_dynamic_recovery.csv
"""
from __future__ import annotations

import os

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")  # one core: set before numpy loads its BLAS

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

WAVES = 8
_DYNAMICS = {"symptom_ar": 0.4, "symptom_to_alliance": -0.05, "sd_client_slope": 0.0, "alliance_carry": "observed",
             "alliance_mean": 3.0}
#: Per scenario: SimulationEffects and SimulationDesign fields changed from their defaults.
SCENARIOS = {
    # carry-over and reverse causation in the RI-CLPM's class (see the module docstring)
    "dynamics": {"effects": _DYNAMICS, "design": {}},
    # the same without the injected rupture dips (not carried over like the rest of the state)
    "dynamics_no_ruptures": {"effects": _DYNAMICS, "design": {"rupture_client_share": 0.0}},
    # the same at the default alliance mean: WAI-SR items clipped at 5 (a ceiling)
    "dynamics_ceiling": {"effects": {**_DYNAMICS, "alliance_mean": 3.8}, "design": {}},
    # carry-over and feedback on the latent alliance: the items' noise is measurement error
    "dynamics_measurement_error": {"effects": {**_DYNAMICS, "alliance_carry": "latent"}, "design": {}},
    # plus early sudden gains: a lasting level shift, outside every stationary model
    "dynamics_sudden_gains": {"effects": {**_DYNAMICS, "sudden_gain_share": 0.2, "sudden_gain_size": 4.0},
                              "design": {}},
}


def one_study(seed: int, scenario: str = "dynamics") -> list[dict]:
    from alliance import models as M
    from alliance.models.steps import RECOVERY_SPEC, fit_declared_model, simulated_scores
    from alliance.simulate import SimulationDesign, SimulationEffects, simulate_study

    effects = replace(SimulationEffects(), **SCENARIOS[scenario]["effects"])
    design = SimulationDesign(n_therapists=30, n_clients=240, **SCENARIOS[scenario]["design"])
    study = simulate_study(design, effects, seed=seed)
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
                    "mean_se": g["se"].mean(), "coverage": cover, "coverage_mcse": math.sqrt(cover * (1 - cover) / n),
                    "n_not_converged": int((~g["converged"].astype("boolean")).sum()) if "converged" in g else 0})
    return pd.DataFrame(out)


METHOD_LABELS = {"naive_within_between": "naive within/between (no lagged outcome)",
                 "naive_lagged_outcome": "naive + lagged outcome (Nickell)",
                 "riclpm": f"RI-CLPM (ML, sessions 1-{WAVES})"}


def markdown(summary: pd.DataFrame) -> str:
    """The summary as the Markdown table of dynamic_recovery.md (presentation rounding only)."""
    lines = [("| scenario | method | N | truth | mean estimate | bias (MC SE) | relative bias (MC SE) | empirical SE "
              "| mean SE | 95% CI coverage (MC SE) | not converged |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary.itertuples():
        lines.append(
            f"| {r.scenario} | {METHOD_LABELS.get(r.method, r.method)} | {r.n_studies} | {r.truth:.4g} | "
            f"{r.mean_estimate:.4f} | {r.bias:+.4f} ({r.bias_mcse:.4f}) | {r.relative_bias:+.1%} "
            f"({r.bias_mcse / abs(r.truth):.1%}) | {r.empirical_se:.4f} | {r.mean_se:.4f} | {r.coverage:.1%} "
            f"({r.coverage_mcse:.1%}) | {r.n_not_converged if r.method == 'riclpm' else '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--out", type=Path, default=Path("dynamic_recovery.csv"))
    parser.add_argument("--scenario", choices=list(SCENARIOS), default="dynamics")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="with --summary: the Markdown table")
    args = parser.parse_args()
    if args.summary:
        summary = summarise(pd.read_csv(args.out))
        print(markdown(summary) if args.markdown else summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
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
