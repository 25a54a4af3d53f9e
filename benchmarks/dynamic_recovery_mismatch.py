"""Which generator features bias the RI-CLPM's cross-lag: a linear-Gaussian model of the generator.

``benchmarks/dynamic_recovery.py`` found the RI-CLPM 13% biased towards 0 on the generator's
first version of the dynamics. This script separates the suspected causes on a stripped-down,
Gaussian version of the same within-person dynamics (no items, no rounding, no missing data,
14 sessions per client, the first 8 fitted), with large samples so that what is left is the
estimator's limit, not noise:

* ``centre``: the symptoms respond to ``b*(A_(t-1) - centre)`` with ``centre`` the client's
  observed mean over all 14 sessions (``observed_all``, the first generator: later sessions,
  which the feedback has moved, enter every session's term) or the client's level (``level``);
* ``carry``: the alliance's AR(1) carry-over and the symptom feedback act on the latent alliance,
  the observed score adding white measurement noise of SD ``sd_m`` (``latent``), or on the
  observed score (``observed``: the noise carries over like the rest of the state);
* ``cause``: the symptoms respond to the observed score (``observed``) or to the latent
  alliance (``latent``: classical measurement error in the predictor);
* ``init``: session 1's symptom deviation with (``generator``) or without its own-score term;
* ``b_between``: a between-client effect on the client's observed all-session mean.

Truth: ``alliance_to_outcome`` = b = -1.2 per point of the alliance score.

usage: python benchmarks/dynamic_recovery_mismatch.py [--clients 3000] [--reps 20] [--coverage] [--variant NAME ...]
"""
from __future__ import annotations

import os

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")  # one core: set before numpy loads its BLAS

import argparse
import math

import numpy as np

B, C, AR_Y, AR_X, SD_W, SD_M, SESSIONS, WAVES = -1.2, -0.05, 0.4, 0.5, 0.3, 0.19, 14, 8

VARIANTS = {
    "first generator: observed_all centre, latent carry": {"centre": "observed_all"},
    "level centre, latent carry": {},
    "level centre, latent carry, no measurement noise": {"sd_m": 0.0},
    "observed_all centre, no measurement noise": {"centre": "observed_all", "sd_m": 0.0},
    "level centre, latent carry, session 1 without own-score term": {"init": "none"},
    "level centre, latent carry, no feedback": {"c": 0.0},
    "observed_all centre, latent carry, no feedback": {"centre": "observed_all", "c": 0.0},
    "level centre, observed carry": {"carry": "observed"},
    "observed_all centre, observed carry": {"carry": "observed", "centre": "observed_all"},
    "level centre, observed carry, b_between on observed mean": {"carry": "observed", "b_between": -2.0},
    "level centre, latent carry, symptoms respond to latent alliance": {"cause": "latent"},
}


def simulate(seed: int, n: int, centre: str = "level", carry: str = "latent", cause: str = "observed",
             init: str = "generator", sd_m: float = SD_M, c: float = C, b_between: float = 0.0) -> np.ndarray:
    """Wide data (alliance at waves 1..8, then symptoms) of ``n`` clients."""
    rng = np.random.default_rng(seed)
    level = rng.normal(3.8, math.hypot(0.45, 0.15), n)
    ri_y = rng.normal(0.0, 3.0, n)
    eta = rng.normal(0.0, SD_W * math.sqrt(1 - AR_X**2), (n, SESSIONS))
    eta[:, 0] = rng.normal(0.0, SD_W, n)
    m = rng.normal(0.0, sd_m, (n, SESSIONS))
    e = rng.normal(0.0, 2.5, (n, SESSIONS))
    e[:, 1:] *= math.sqrt(1 - AR_Y**2)
    mean_a = level
    # The all-session mean depends on later sessions: iterate to the fixed point (contracts fast).
    for _ in range(10 if centre == "observed_all" or b_between else 1):
        centre_i = mean_a if centre == "observed_all" else level
        w = np.zeros((n, SESSIONS))
        a = np.zeros((n, SESSIONS))
        d = np.zeros((n, SESSIONS))
        previous = np.zeros(n)  # the alliance the symptoms respond to, one session back
        for t in range(SESSIONS):
            if t == 0:
                w[:, 0] = eta[:, 0]
            else:
                carried = w[:, t - 1] + (m[:, t - 1] if carry == "observed" else 0.0)
                w[:, t] = AR_X * carried + c * d[:, t - 1] + eta[:, t]
            a[:, t] = level + w[:, t] + m[:, t]
            acting = a[:, t] if cause == "observed" else level + w[:, t]
            if t == 0:
                d[:, 0] = (B * (acting - centre_i) if init == "generator" else 0.0) + e[:, 0]
            else:
                d[:, t] = AR_Y * d[:, t - 1] + B * (previous - centre_i) + e[:, t]
            previous = acting
        mean_a = a.mean(axis=1)
    y = 10.0 + ri_y[:, None] + d + b_between * (mean_a - 3.8)[:, None]
    return np.c_[a[:, :WAVES], y[:, :WAVES]]


def main() -> None:
    from alliance.models.dynamic import fit_riclpm

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--coverage", action="store_true", help="also fit SEs: empirical vs mean SE, coverage")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="repeatable; default: all")
    args = parser.parse_args()
    seeds = [int(s) for s in np.random.SeedSequence(args.seed).generate_state(args.reps)]
    extra = " empirical SE | mean SE | 95% CI coverage (MC SE) |" if args.coverage else ""
    print(f"| variant | clients | studies | mean estimate (truth {B}) | relative bias, + = towards 0 (MC SE) |{extra}")
    print("| --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if args.coverage else ""))
    for name in args.variant or VARIANTS:
        fits = [fit_riclpm(simulate(s, args.clients, **VARIANTS[name]), standard_errors=args.coverage)
                .estimates.loc["alliance_to_outcome"] for s in seeds]
        est = np.array([f["estimate"] for f in fits])
        mcse = est.std(ddof=1) / math.sqrt(len(est))
        row = (f"| {name} | {args.clients} | {args.reps} | {est.mean():.4f} | "
               f"{(est.mean() - B) / abs(B):+.1%} ({mcse / abs(B):.1%}) |")
        if args.coverage:
            cover = np.mean([f["ci_low"] <= B <= f["ci_high"] for f in fits])
            row += (f" {est.std(ddof=1):.4f} | {np.mean([f['se'] for f in fits]):.4f} | "
                    f"{cover:.1%} ({math.sqrt(cover * (1 - cover) / len(fits)):.1%}) |")
        print(row, flush=True)


if __name__ == "__main__":
    main()
