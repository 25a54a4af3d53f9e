"""Inter-rater ICC benchmark (issue 9): alliance.reliability against pingouin and lme4.

Two designs, simulated with ``np.random.default_rng(seed)`` (target SD, fixed rater offsets,
residual SD):

* **complete**: 60,000 targets × 2 raters (120,000 ratings). ``pingouin.intraclass_corr``
  against ``alliance.interrater.intraclass.icc`` (ANOVA route). Same values are checked: ICC, F, df1,
  df2 and p to 1e-10 relative; pingouin rounds its CI95 to 2 decimals, so the interval
  bounds are checked to 0.005 absolute. Target: ours no slower than pingouin.
* **incomplete**: 20,000 targets each rated by 2-3 of 8 raters (~50,000 ratings). lme4's
  ``lmer(rating ~ 1 + (1|target) + (1|rater), REML = TRUE)`` through ``Rscript`` (only the
  ``lmer`` call is timed, factors prepared beforehand, median of 3 in one R session; the
  Rscript wall time with start-up is recorded separately) against
  ``crossed_variance_components`` (the same single fit) and the whole
  ``icc(..., design="incomplete", ci_method="wald")`` (two-way and one-way fits plus the
  delta-method intervals). Targets: lme4 ÷ ours ≥ 3 and the three variance components and
  both REML criteria equal to 1e-4 relative. Each side's estimate is also evaluated in the
  other's criterion (lme4's theta in our profiled REML; ours in lme4's ``devFunOnly``
  function), so a disagreement can be attributed to the optimum reached, not the criterion.

Python timings: one warm-up call, then best and median of ``--repeats`` calls. The reference
time in the table for both incomplete rows is the single two-way ``lmer`` fit (conservative
for ``icc``, which also fits the one-way model; the one-way ``lmer`` time is in the JSON).

Prints a Markdown table and writes every number, the seeds and machine information (cores,
load average at start and end, package versions) to ``benchmarks/results/interrater_icc.json``.
lme4's half of the incomplete design is skipped, with a printed note, when Rscript or lme4
is missing.

usage: python benchmarks/interrater_icc.py [--repeats 5] [--seed-complete 1]
                                          [--seed-incomplete 2] [--no-lme4] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.interrater import intraclass as reliability
from alliance.interrater.ratings import prepare_ratings
from alliance.lmm.crossed import CrossedREML

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "interrater_icc.json"

#: Shrout & Fleiss labels (our ``type``) in pingouin's row order; pingouin 0.7 labels its rows
#: ICC(1,1), ICC(A,1), ICC(C,1), ICC(1,k), ICC(A,k), ICC(C,k), releases before it ICC1..ICC3k.
SF_TYPES = ["ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)"]
PINGOUIN_LABELS = {
    "ICC(1,1)": "ICC(1,1)", "ICC(A,1)": "ICC(2,1)", "ICC(C,1)": "ICC(3,1)",
    "ICC(1,k)": "ICC(1,k)", "ICC(A,k)": "ICC(2,k)", "ICC(C,k)": "ICC(3,k)",
    "ICC1": "ICC(1,1)", "ICC2": "ICC(2,1)", "ICC3": "ICC(3,1)",
    "ICC1k": "ICC(1,k)", "ICC2k": "ICC(2,k)", "ICC3k": "ICC(3,k)",
}
VALUE_TOL = 1e-10  # relative, ICC / F / df / p against pingouin
P_CHECK_TARGETS = 30  # targets of the untimed check where p does not underflow
CI_TOL = 0.005 + 1e-12  # absolute, pingouin's CI95 is rounded to 2 decimals
COMPONENT_TOL = 1e-4  # relative, variance components and REML criteria against lme4
SPEED_TARGET_INCOMPLETE = 3.0  # lme4 s ÷ ours s


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------
def simulate_complete(n_targets: int, n_raters: int, seed: int, target_sd: float = 0.8,
                      rater_sd: float = 0.3, residual_sd: float = 0.5) -> pd.DataFrame:
    """Every target rated once by every rater: rating = 4 + target + rater offset + noise."""
    rng = np.random.default_rng(seed)
    t = np.repeat(np.arange(n_targets), n_raters)
    r = np.tile(np.arange(n_raters), n_targets)
    y = (4.0 + rng.normal(0.0, target_sd, n_targets)[t] + rng.normal(0.0, rater_sd, n_raters)[r]
         + rng.normal(0.0, residual_sd, len(t)))
    return _ratings_frame(t, r, y)


def simulate_incomplete(n_targets: int, n_raters: int, min_k: int, max_k: int, seed: int,
                        target_sd: float = 0.8, rater_sd: float = 0.3,
                        residual_sd: float = 0.5) -> pd.DataFrame:
    """Each target rated by min_k..max_k distinct raters drawn at random from n_raters."""
    rng = np.random.default_rng(seed)
    k = rng.integers(min_k, max_k + 1, size=n_targets)
    # a random permutation of the raters per target; its first k_i entries rate target i
    order = np.argsort(rng.random((n_targets, n_raters)), axis=1)
    take = np.arange(n_raters)[None, :] < k[:, None]
    t = np.repeat(np.arange(n_targets), k)
    r = order[take]
    y = (4.0 + rng.normal(0.0, target_sd, n_targets)[t] + rng.normal(0.0, rater_sd, n_raters)[r]
         + rng.normal(0.0, residual_sd, len(t)))
    return _ratings_frame(t, r, y)


def _ratings_frame(t: np.ndarray, r: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "target": np.char.add("S", t.astype(str)),
        "rater": np.char.add("R", r.astype(str)),
        "rating": y,
    })


# --------------------------------------------------------------------------------------------
# Timing and comparison helpers
# --------------------------------------------------------------------------------------------
def time_call(fn, repeats: int) -> tuple[dict, object]:
    """One warm-up call, then ``repeats`` timed calls: best, median and all wall times (s), and
    the process CPU times (less sensitive to other jobs on a shared machine)."""
    result = fn()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return _summary(times, cpu), result


def _summary(times: list[float], cpu: list[float]) -> dict:
    return {"best": min(times), "median": float(np.median(times)), "all": times,
            "cpu_best": min(cpu), "cpu_median": float(np.median(cpu)), "cpu_all": cpu}


def rel_diff(a, b) -> np.ndarray:
    """|a - b| / max(|a|, |b|), 0 where both are 0 (p-values that underflow on both sides)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale == 0, 0.0, np.abs(a - b) / scale)


def _finite_max(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.max(values)) if values.size else float("nan")


# --------------------------------------------------------------------------------------------
# Part 1: complete design against pingouin
# --------------------------------------------------------------------------------------------
def compare_with_pingouin(ours: pd.DataFrame, pg: pd.DataFrame) -> dict:
    """Per-quantity differences between our six rows and pingouin's, matched by label."""
    pg_types = [PINGOUIN_LABELS.get(str(label)) for label in pg["Type"]]
    if None in pg_types:  # unknown labels: fall back to row position (same order since 0.3)
        pg_types = SF_TYPES
    pg = pg.assign(type=pg_types).set_index("type").loc[SF_TYPES]
    ours = ours.set_index("type").loc[SF_TYPES]
    ci_col = "CI95" if "CI95" in pg.columns else "CI95%"
    pg_ci = np.vstack(pg[ci_col].to_numpy())
    per_quantity = {
        "icc": rel_diff(ours["icc"], pg["ICC"]),
        "f": rel_diff(ours["f"], pg["F"]),
        "df1": rel_diff(ours["df1"], pg["df1"]),
        "df2": rel_diff(ours["df2"], pg["df2"]),
        "p": rel_diff(ours["p"], pg["pval"]),
    }
    ci_abs = np.abs(np.column_stack([ours["ci_low"], ours["ci_high"]]) - pg_ci)
    max_rel = {name: _finite_max(v) for name, v in per_quantity.items()}
    worst = max(max_rel.values())
    return {
        "max_rel_diff": max_rel,
        "max_rel_diff_overall": worst,
        "max_abs_diff_ci": float(ci_abs.max()),
        "values_within_tol": bool(worst <= VALUE_TOL),
        "ci_within_tol": bool(ci_abs.max() <= CI_TOL),
        "p_all_zero": bool(np.all(pg["pval"].to_numpy() == 0) and np.all(ours["p"] == 0)),
        "ours": _rows(ours.reset_index(), ["type", "icc", "f", "df1", "df2", "p", "ci_low",
                                           "ci_high"]),
        "pingouin": [{"type": t, "ICC": float(row["ICC"]), "F": float(row["F"]),
                      "df1": float(row["df1"]), "df2": float(row["df2"]),
                      "pval": float(row["pval"]), "CI95": [float(c) for c in row[ci_col]]}
                     for t, row in pg.iterrows()],
    }


def _rows(table: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Records at full precision (pandas' to_json stops at 15 digits)."""
    return [{c: _plain(v) for c, v in row.items()} for row in table[columns].to_dict("records")]


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def run_complete(n_targets: int, n_raters: int, seed: int, repeats: int) -> dict:
    import pingouin

    df = simulate_complete(n_targets, n_raters, seed)
    pg_time, pg = time_call(
        lambda: pingouin.intraclass_corr(df, targets="target", raters="rater", ratings="rating"),
        repeats)
    our_time, ours = time_call(lambda: reliability.icc(df, "target", "rater", "rating"), repeats)
    methods = sorted(set(ours["method"]))
    # At 60,000 targets every p underflows to 0 on both sides; the first P_CHECK_TARGETS
    # targets of the same data give p-values that can actually disagree (untimed).
    small = df[df["target"].isin(df["target"].unique()[:P_CHECK_TARGETS])]
    small_check = compare_with_pingouin(
        reliability.icc(small, "target", "rater", "rating"),
        pingouin.intraclass_corr(small, targets="target", raters="rater", ratings="rating"))
    return {
        "design": "complete", "seed": seed, "n_targets": n_targets, "n_raters": n_raters,
        "n_ratings": len(df), "reference": f"pingouin {pingouin.__version__}",
        "reference_seconds": pg_time, "ours_seconds": our_time,
        "ratio_median": pg_time["median"] / our_time["median"],
        "ratio_best": pg_time["best"] / our_time["best"],
        "ratio_cpu_median": pg_time["cpu_median"] / our_time["cpu_median"],
        "ours_method": methods, **compare_with_pingouin(ours, pg),
        "small_subset_check": {"n_targets": P_CHECK_TARGETS, **small_check},
    }


# --------------------------------------------------------------------------------------------
# Part 2: incomplete design against lme4
# --------------------------------------------------------------------------------------------
R_SCRIPT = textwrap.dedent(
    """
    started <- proc.time()[["elapsed"]]  # seconds since this R process started
    suppressMessages(library(lme4))
    loaded <- proc.time()[["elapsed"]]
    args <- commandArgs(TRUE)
    n_rep <- as.integer(args[2])
    df <- read.csv(args[1], colClasses = c("character", "character", "numeric"))
    df$target <- factor(df$target)
    df$rater <- factor(df$rater)
    read_done <- proc.time()[["elapsed"]]
    f2 <- rating ~ 1 + (1 | target) + (1 | rater)
    f1 <- rating ~ 1 + (1 | target)
    timed <- function(formula) {
      secs <- cpu <- numeric(n_rep)
      for (i in seq_len(n_rep)) {
        t0 <- proc.time()
        m <- lmer(formula, df, REML = TRUE)  # lme4's default optimiser and checks
        dt <- proc.time() - t0
        secs[i] <- dt[["elapsed"]]
        cpu[i] <- dt[["user.self"]] + dt[["sys.self"]]
      }
      list(m = m, secs = secs, cpu = cpu)
    }
    two <- timed(f2)
    one <- timed(f1)
    m <- two$m
    vc <- as.data.frame(VarCorr(m))
    vc1 <- as.data.frame(VarCorr(one$m))
    th <- getME(m, "theta")
    grp <- sub("\\\\..*$", "", names(th))
    ours <- c(target = as.numeric(args[3]), rater = as.numeric(args[4]))
    crit_ours <- NA_real_
    if (all(is.finite(ours))) {
      devfun <- lmer(f2, df, REML = TRUE, devFunOnly = TRUE)
      crit_ours <- devfun(unname(ours[grp]))  # our theta in lme4's REML criterion
    }
    msgs <- c(m@optinfo$conv$lme4$messages, m@optinfo$warnings)
    num <- function(x) sprintf("%.17g", x)
    vec <- function(x) paste0("[", paste(num(x), collapse = ", "), "]")
    cat(sprintf(paste0(
      '{"lmer_seconds": %s, "lmer_one_way_seconds": %s, "lmer_cpu": %s, ',
      '"lmer_one_way_cpu": %s, "target": %s, "rater": %s, ',
      '"residual": %s, "intercept": %s, "reml_criterion": %s, "theta_target": %s, ',
      '"theta_rater": %s, "one_way_target": %s, "one_way_residual": %s, ',
      '"one_way_reml_criterion": %s, "reml_criterion_at_ours": %s, "singular": %s, ',
      '"messages": "%s", "startup_seconds": %s, "library_seconds": %s, "read_seconds": %s, ',
      '"lme4_version": "%s", "matrix_version": "%s", "r_version": "%s"}\\n'),
      vec(two$secs), vec(one$secs), vec(two$cpu), vec(one$cpu), num(vc$vcov[vc$grp == "target"]),
      num(vc$vcov[vc$grp == "rater"]), num(vc$vcov[vc$grp == "Residual"]), num(fixef(m)[[1]]),
      num(REMLcrit(m)), num(th[grp == "target"]), num(th[grp == "rater"]),
      num(vc1$vcov[vc1$grp == "target"]), num(vc1$vcov[vc1$grp == "Residual"]),
      num(REMLcrit(one$m)), num(crit_ours), tolower(isSingular(m)),
      gsub('"', "'", paste(unlist(msgs), collapse = "; ")),
      num(started), num(loaded - started), num(read_done - loaded),
      packageVersion("lme4"), packageVersion("Matrix"), R.version.string))
    """
)


def lme4_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True)
    return r.returncode == 0


def run_lme4(csv_path: str, theta_ours: np.ndarray, repeats: int, timeout: float) -> dict:
    """Fit in one Rscript session; add the wall time of the whole Rscript call."""
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_SCRIPT)
        script = fh.name
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["Rscript", script, csv_path, str(repeats),
                            repr(float(theta_ours[0])), repr(float(theta_ours[1]))],
                           capture_output=True, text=True, timeout=timeout, check=True)
        wall = time.perf_counter() - t0
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["rscript_wall_seconds"] = wall
        out["stderr"] = r.stderr.strip()[-500:]
        out["lmer_time"] = _summary(out["lmer_seconds"], out["lmer_cpu"])
        out["lmer_one_way_time"] = _summary(out["lmer_one_way_seconds"], out["lmer_one_way_cpu"])
        return out
    except subprocess.TimeoutExpired:
        return {"note": f"Rscript killed after {timeout:.0f} s"}
    except subprocess.CalledProcessError as e:
        return {"note": "Rscript failed: " + e.stderr.strip()[-300:]}
    finally:
        os.unlink(script)


def criterion_in_our_engine(df: pd.DataFrame, theta: tuple[float, float]) -> dict:
    """Our profiled REML criterion and gradient at a given theta (e.g. lme4's).

    Uses the engine's crossed fast path (:class:`alliance.lmm.crossed.CrossedREML`, what the
    ICC code fits with); returns a note instead when its interface has changed.
    """
    try:
        d = prepare_ratings(df, "target", "rater", "rating")
        engine = CrossedREML(d.t, d.r, d.n_targets, d.n_raters)
        gamma = np.array([[theta[0] ** 2, theta[1] ** 2]])
        crit, grad, _, s2 = engine.evaluate(gamma, engine.responses(d.y))
    except (AttributeError, TypeError) as e:  # private API changed
        return {"note": f"our engine not reachable: {e}"}
    return {"reml_criterion": float(crit[0]), "gradient_gamma": grad[0].tolist(),
            "components_implied": [float(s2[0] * gamma[0, 0]), float(s2[0] * gamma[0, 1]),
                                   float(s2[0])]}


def _icc_row(table: pd.DataFrame, sf_type: str, column: str = "icc") -> float:
    return float(table.loc[table["type"] == sf_type, column].iloc[0])


def iccs_from_components(one: tuple[float, float], two: tuple[float, float, float],
                         k: float) -> np.ndarray:
    """The six ICCs (order of SF_TYPES) from one-way and two-way variance components."""
    t1, w1 = one
    t2, r2, e2 = two
    return np.array([t1 / (t1 + w1), t2 / (t2 + r2 + e2), t2 / (t2 + e2),
                     t1 / (t1 + w1 / k), t2 / (t2 + (r2 + e2) / k), t2 / (t2 + e2 / k)])


def run_incomplete(n_targets: int, n_raters: int, min_k: int, max_k: int, seed: int,
                   repeats: int, have_r: bool, r_repeats: int, timeout: float) -> dict:
    df = simulate_incomplete(n_targets, n_raters, min_k, max_k, seed)
    per_target = df.groupby("target").size().to_numpy()
    cvc_time, fit = time_call(
        lambda: reliability.crossed_variance_components(df, "target", "rater", "rating"), repeats)
    icc_time, table = time_call(
        lambda: reliability.icc(df, "target", "rater", "rating", design="incomplete",
                                ci_method="wald"), repeats)
    ours = {"target": fit.target, "rater": fit.rater, "residual": fit.residual,
            "intercept": fit.intercept, "reml_criterion": fit.reml_criterion,
            "theta": np.asarray(fit.theta).tolist(), "converged": bool(fit.converged)}
    out = {
        "design": "incomplete", "seed": seed, "n_targets": n_targets, "n_raters": n_raters,
        "raters_per_target_range": [min_k, max_k], "n_ratings": len(df),
        "crossed_variance_components_seconds": cvc_time, "icc_wald_seconds": icc_time,
        "ours": ours,
        "icc_table": _rows(table, [c for c in ("type", "mcgraw_wong", "icc", "ci_low", "ci_high",
                                               "method", "raters_per_target", "ci_method")
                                   if c in table.columns]),
    }
    if not have_r:
        out["lme4"] = {"note": "skipped: Rscript or the R package lme4 is missing"}
        return out
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "ratings.csv")
        df.to_csv(csv, index=False, float_format="%.17g")
        lme4 = run_lme4(csv, fit.theta, r_repeats, timeout)
    out["lme4"] = lme4
    if "note" in lme4:
        return out
    ref = lme4["lmer_time"]["median"]
    out["ratio_cvc_median"] = ref / cvc_time["median"]
    out["ratio_icc_median"] = ref / icc_time["median"]
    out["ratio_cvc_best"] = lme4["lmer_time"]["best"] / cvc_time["best"]
    out["ratio_icc_best"] = lme4["lmer_time"]["best"] / icc_time["best"]
    out["ratio_cvc_cpu_median"] = lme4["lmer_time"]["cpu_median"] / cvc_time["cpu_median"]
    out["ratio_icc_cpu_median"] = lme4["lmer_time"]["cpu_median"] / icc_time["cpu_median"]
    comps = ["target", "rater", "residual"]
    out["rel_diff_components"] = {c: float(rel_diff(ours[c], lme4[c])) for c in comps}
    out["max_rel_diff_components"] = max(out["rel_diff_components"].values())
    out["rel_diff_reml_criterion"] = float(rel_diff(ours["reml_criterion"], lme4["reml_criterion"]))
    out["abs_diff_reml_criterion"] = ours["reml_criterion"] - lme4["reml_criterion"]
    out["components_within_tol"] = out["max_rel_diff_components"] <= COMPONENT_TOL
    out["criterion_within_tol"] = out["rel_diff_reml_criterion"] <= COMPONENT_TOL
    out["lower_criterion"] = ("equal" if ours["reml_criterion"] == lme4["reml_criterion"] else
                              "ours" if ours["reml_criterion"] < lme4["reml_criterion"] else "lme4")
    # Each estimate in the other's criterion: if both engines agree on the criterion at the
    # same theta, a difference of the optima says which optimiser stopped short.
    out["lme4_theta_in_our_criterion"] = criterion_in_our_engine(
        df, (lme4["theta_target"], lme4["theta_rater"]))
    out["our_theta_in_lme4_criterion"] = lme4["reml_criterion_at_ours"]
    k = len(per_target) / np.sum(1.0 / per_target)
    ref_iccs = iccs_from_components((lme4["one_way_target"], lme4["one_way_residual"]),
                                    (lme4["target"], lme4["rater"], lme4["residual"]), k)
    our_iccs = np.array([_icc_row(table, t) for t in SF_TYPES])
    out["icc_from_lme4_components"] = dict(zip(SF_TYPES, ref_iccs.tolist()))
    out["rel_diff_icc"] = dict(zip(SF_TYPES, rel_diff(our_iccs, ref_iccs).tolist()))
    out["max_rel_diff_icc"] = float(np.max(rel_diff(our_iccs, ref_iccs)))
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def machine_info(load_start: tuple[float, float, float]) -> dict:
    versions = {}
    for pkg in ("alliance", "numpy", "scipy", "pandas", "pingouin", "threadpoolctl"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "load_average_start": list(load_start),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "packages": versions}


def markdown_table(complete: dict, incomplete: dict) -> str:
    def fmt(x, spec=".3f"):
        return "n/a" if x is None or not np.isfinite(x) else format(x, spec)

    lines = ["| design | n ratings | reference | reference s (median) | ours s (median) | "
             "ratio ref ÷ ours | max rel. difference |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    lines.append(
        f"| complete {complete['n_targets']:,} × {complete['n_raters']} | "
        f"{complete['n_ratings']:,} | {complete['reference']} intraclass_corr vs `icc` | "
        f"{fmt(complete['reference_seconds']['median'])} | "
        f"{fmt(complete['ours_seconds']['median'])} | {fmt(complete['ratio_median'], '.2f')} | "
        f"{fmt(complete['max_rel_diff_overall'], '.1e')} (ICC, F, df, p); CI "
        f"{fmt(complete['max_abs_diff_ci'], '.1e')} abs |")
    lme4 = incomplete["lme4"]
    ref_name = (f"lme4 {lme4['lme4_version']} `lmer`" if "lmer_time" in lme4 else "lme4 (skipped)")
    ref_s = lme4["lmer_time"]["median"] if "lmer_time" in lme4 else None
    for label, key, ratio, diff in (
        ("`crossed_variance_components`", "crossed_variance_components_seconds",
         incomplete.get("ratio_cvc_median"), incomplete.get("max_rel_diff_components")),
        ("`icc(design=\"incomplete\", ci_method=\"wald\")`", "icc_wald_seconds",
         incomplete.get("ratio_icc_median"), incomplete.get("max_rel_diff_icc")),
    ):
        what = "variance components" if key.startswith("crossed") else "ICCs"
        lines.append(
            f"| incomplete {incomplete['n_targets']:,} targets, 2–3 of {incomplete['n_raters']} "
            f"raters | {incomplete['n_ratings']:,} | {ref_name} vs {label} | {fmt(ref_s)} | "
            f"{fmt(incomplete[key]['median'])} | {fmt(ratio, '.2f')} | "
            f"{fmt(diff, '.1e')} ({what}) |")
    return "\n".join(lines)


def print_notes(complete: dict, incomplete: dict) -> None:
    print(f"\ncomplete: best s pingouin {complete['reference_seconds']['best']:.4f}, ours "
          f"{complete['ours_seconds']['best']:.4f} (ratio {complete['ratio_best']:.2f}; CPU-time "
          f"ratio {complete['ratio_cpu_median']:.2f}); "
          f"values within {VALUE_TOL:g}: {complete['values_within_tol']}, CI within 0.005: "
          f"{complete['ci_within_tol']}; our method {complete['ours_method']}")
    if complete["p_all_zero"]:
        sub = complete["small_subset_check"]
        p_min = min(row["pval"] for row in sub["pingouin"])
        print(f"  note: every p underflows to 0 on both sides at this n; on the first "
              f"{sub['n_targets']} targets (p down to {p_min:.2e}) the max rel. difference of "
              f"ICC, F, df, p is {sub['max_rel_diff_overall']:.1e} (p {sub['max_rel_diff']['p']:.1e}),"
              f" CI {sub['max_abs_diff_ci']:.1e} abs")
    lme4 = incomplete["lme4"]
    o = incomplete["ours"]
    print(f"incomplete: ours target {o['target']:.10g} rater {o['rater']:.10g} residual "
          f"{o['residual']:.10g} REMLcrit {o['reml_criterion']:.10f} converged {o['converged']}")
    if "note" in lme4:
        print(f"  lme4: {lme4['note']}")
        return
    print(f"  lme4 target {lme4['target']:.10g} rater {lme4['rater']:.10g} residual "
          f"{lme4['residual']:.10g} REMLcrit {lme4['reml_criterion']:.10f}"
          + (f"; lme4 messages: {lme4['messages']}" if lme4["messages"] else ""))
    print("  rel. differences of components: "
          + ", ".join(f"{c} {v:.2e}" for c, v in incomplete["rel_diff_components"].items())
          + f"; REMLcrit ours - lme4 = {incomplete['abs_diff_reml_criterion']:.3e} "
          f"(rel {incomplete['rel_diff_reml_criterion']:.2e}); lower: {incomplete['lower_criterion']}")
    at = incomplete["lme4_theta_in_our_criterion"]
    if "reml_criterion" in at:
        print(f"  lme4's theta in our criterion: {at['reml_criterion']:.10f} "
              f"(lme4 says {lme4['reml_criterion']:.10f}); our theta in lme4's criterion: "
              f"{incomplete['our_theta_in_lme4_criterion']:.10f} (we say {o['reml_criterion']:.10f})")
    print(f"  best s lmer {lme4['lmer_time']['best']:.3f}, crossed_variance_components "
          f"{incomplete['crossed_variance_components_seconds']['best']:.3f}, icc wald "
          f"{incomplete['icc_wald_seconds']['best']:.3f} (ratios of best {incomplete['ratio_cvc_best']:.2f}, "
          f"{incomplete['ratio_icc_best']:.2f}; of median CPU time "
          f"{incomplete['ratio_cvc_cpu_median']:.2f}, {incomplete['ratio_icc_cpu_median']:.2f}); "
          f"one-way lmer median "
          f"{lme4['lmer_one_way_time']['median']:.3f} s; Rscript wall (start-up, library, "
          f"CSV, {len(lme4['lmer_seconds'])}+{len(lme4['lmer_one_way_seconds'])} fits and "
          f"checks) {lme4['rscript_wall_seconds']:.2f} s, of which R start-up "
          f"{lme4['startup_seconds']:.2f} s + library(lme4) {lme4['library_seconds']:.2f} s")
    if not incomplete["components_within_tol"] or not incomplete["criterion_within_tol"]:
        print(f"  OFF: components or criterion differ by more than {COMPONENT_TOL:g}; the lower "
              f"REML criterion ({incomplete['lower_criterion']}) is the better optimum")
    for name, ratio in (("crossed_variance_components", incomplete["ratio_cvc_median"]),
                        ("icc wald", incomplete["ratio_icc_median"])):
        if ratio < SPEED_TARGET_INCOMPLETE:
            print(f"  OFF: lme4 ÷ {name} = {ratio:.2f} < target {SPEED_TARGET_INCOMPLETE:g}")
    if complete["ratio_median"] < 1:
        print(f"  OFF: complete design slower than pingouin (ratio {complete['ratio_median']:.2f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--complete-targets", type=int, default=60_000)
    ap.add_argument("--complete-raters", type=int, default=2)
    ap.add_argument("--incomplete-targets", type=int, default=20_000)
    ap.add_argument("--incomplete-raters", type=int, default=8)
    ap.add_argument("--seed-complete", type=int, default=1)
    ap.add_argument("--seed-incomplete", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed Python calls after a warm-up")
    ap.add_argument("--r-repeats", type=int, default=3, help="timed lmer calls in one R session")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--no-lme4", action="store_true")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if args.repeats < 3 or args.r_repeats < 1:
        ap.error("--repeats must be at least 3 and --r-repeats at least 1")
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}; cores: {os.cpu_count()}", flush=True)
    have_r = not args.no_lme4 and lme4_available()
    if not have_r:
        print("NOTE: lme4 not available (Rscript or the R package lme4 missing, or --no-lme4): "
              "the lme4 half of the incomplete design is skipped", flush=True)
    started = time.perf_counter()
    complete = run_complete(args.complete_targets, args.complete_raters, args.seed_complete,
                            args.repeats)
    incomplete = run_incomplete(args.incomplete_targets, args.incomplete_raters, 2, 3,
                                args.seed_incomplete, args.repeats, have_r, args.r_repeats,
                                args.timeout)
    table = markdown_table(complete, incomplete)
    print("\n" + table)
    print_notes(complete, incomplete)
    result = {
        "benchmark": "interrater_icc", "issue": 9,
        "seeds": {"complete": args.seed_complete, "incomplete": args.seed_incomplete},
        "repeats": {"python": args.repeats, "r": args.r_repeats, "warm_up": 1},
        "targets": {"complete_ratio_min": 1.0, "incomplete_ratio_min": SPEED_TARGET_INCOMPLETE,
                    "value_rel_tol": VALUE_TOL, "ci_abs_tol": CI_TOL,
                    "component_rel_tol": COMPONENT_TOL},
        "machine": machine_info(load_start),
        "complete": complete, "incomplete": incomplete, "markdown_table": table,
        "total_seconds": time.perf_counter() - started,
    }
    result["machine"]["load_average_end"] = list(os.getloadavg())
    if "r_version" in incomplete["lme4"]:
        result["machine"]["packages"].update(
            {"R": incomplete["lme4"]["r_version"], "lme4": incomplete["lme4"]["lme4_version"],
             "Matrix": incomplete["lme4"]["matrix_version"]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=_json_default, allow_nan=True) + "\n")
    print(f"\nload average at end: {os.getloadavg()}; total {result['total_seconds']:.1f} s; "
          f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


if __name__ == "__main__":
    sys.exit(main())
