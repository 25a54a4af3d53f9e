"""Scaling benchmark of alliance.lmm against statsmodels MixedLM and lme4 (via Rscript).

Generates 10,000 / 100,000 / 1,000,000 session rows (about 15 sessions per client, 20 clients
per therapist; three-level simulation with a correlated client intercept and slope and a
therapist intercept), fits

* two-level:   symptoms ~ session + a_cw + a_cm + (1 + session | client_id)
* three-level: symptoms ~ session + a_cw + a_cm + (1 + session | client_id) + (1 | therapist_id)

(REML), and prints seconds, ratio to lme4, peak memory and the largest absolute difference of
the fixed-effect estimates from lme4's. Every fit runs in its own subprocess so its peak memory
(ru_maxrss) and time are its own; statsmodels is skipped above ``--sm-max-rows`` and killed
after ``--sm-timeout`` seconds; lme4 is skipped when Rscript or lme4 is missing.

The alliance.lmm time includes Satterthwaite df (as lmerTest's summary does); lme4's time is
``lmer`` alone (no lmerTest), so the comparison is conservative for alliance.lmm.

usage: python benchmarks/lmm_scaling.py [--rows 10000 100000 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pandas as pd

FORMULAS = {
    "two-level": "symptoms ~ session + a_cw + a_cm + (1 + session | client_id)",
    "three-level": "symptoms ~ session + a_cw + a_cm + (1 + session | client_id) + (1 | therapist_id)",
}


def simulate(n_rows: int, seed: int) -> pd.DataFrame:
    """Three-level session data: ~15 sessions per client (8-22), 20 clients per therapist."""
    rng = np.random.default_rng(seed)
    n_clients = max(n_rows // 15, 40)
    sessions = rng.integers(8, 23, size=n_clients)
    # trim/extend so the total is exactly n_rows
    diff = n_rows - sessions.sum()
    sessions[: abs(diff)] += np.sign(diff) if abs(diff) <= n_clients else 0
    while sessions.sum() != n_rows:
        d = n_rows - sessions.sum()
        k = min(abs(d), n_clients)
        sessions[:k] += np.sign(d)
        sessions = np.maximum(sessions, 2)
    n_ther = max(n_clients // 20, 2)
    ther_of_client = np.sort(rng.integers(0, n_ther, size=n_clients))
    client = np.repeat(np.arange(n_clients), sessions)
    session = np.concatenate([np.arange(1, k + 1) for k in sessions]) if n_clients < 1000 else (
        np.arange(len(client)) - np.repeat(np.cumsum(sessions) - sessions, sessions) + 1)
    ther = ther_of_client[client]
    u_t = rng.normal(0, 1.0, n_ther)
    u_c = rng.multivariate_normal([0, 0], [[9.0, 0.0], [0.0, 0.0625]], size=n_clients)
    a_between = rng.normal(3.8, 0.45, n_clients)
    alliance = a_between[client] + rng.normal(0, 0.3, len(client))
    y = (15 + u_t[ther] + u_c[client, 0] + (-0.45 + u_c[client, 1]) * session
         - 2.0 * (a_between[client] - 3.8) - 1.2 * (alliance - a_between[client])
         + rng.normal(0, 2.5, len(client)))
    df = pd.DataFrame({
        "therapist_id": np.char.add("T", ther.astype(str)),
        "client_id": np.char.add("C", client.astype(str)),
        "session": session.astype(float),
        "alliance": alliance,
        "symptoms": y,
    })
    cm = df.groupby("client_id")["alliance"].transform("mean")
    df["a_cw"] = df["alliance"] - cm
    df["a_cm"] = cm - df.groupby("client_id")["alliance"].mean().mean()
    return df


PY_WORKER = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    import pandas as pd
    engine, path, formula, out = sys.argv[1:5]
    if engine == "alliance":
        from alliance import lmm
    else:
        import statsmodels.formula.api as smf
        warnings.simplefilter("ignore")
    df = pd.read_parquet(path)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    if engine == "alliance":
        m = lmm.fit(formula, df, reml=True)
        beta = m.fixed_effects["estimate"].tolist()
        extra = {"converged": m.converged, "objective": m.objective}
    else:
        fixed = formula.split(" + (")[0]
        md = smf.mixedlm(fixed, df, groups=df["client_id"], re_formula="~session")
        r = md.fit(reml=True, method=["lbfgs"])
        beta = r.fe_params.tolist()
        extra = {"converged": bool(r.converged), "objective": float("nan")}
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"seconds": sec, "cpu": cpu, "peak_mb": peak / 1024, "base_mb": base / 1024,
               "beta": beta, **extra}, open(out, "w"))
    """
)

R_WORKER_CSV = textwrap.dedent(
    """
    suppressMessages(library(lme4))
    args <- commandArgs(TRUE)
    df <- read.csv(args[1])
    g0 <- gc(reset = TRUE)
    t0 <- proc.time()
    m <- lmer(as.formula(args[2]), df, REML = TRUE)  # lme4's default optimiser and checks
    dt <- proc.time() - t0
    sec <- dt[["elapsed"]]
    cpu <- dt[["user.self"]] + dt[["sys.self"]]
    g1 <- gc()
    peak_mb <- sum(g1[, ncol(g1)])  # "max used" (Mb) since reset
    b <- unname(fixef(m))
    cat(sprintf('{"seconds": %.6f, "cpu": %.6f, "peak_mb": %.3f, "beta": [%s], "objective": %.10f}\\n',
                sec, cpu, peak_mb, paste(sprintf("%.15g", b), collapse = ","), REMLcrit(m)))
    """
)


def run_python(engine: str, path: str, formula: str, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    try:
        subprocess.run([sys.executable, "-c", PY_WORKER, engine, path, formula, out],
                       check=True, timeout=timeout, capture_output=True, text=True)
        return json.load(open(out))
    except subprocess.TimeoutExpired:
        return {"seconds": float("nan"), "note": f"killed after {timeout:.0f} s"}
    except subprocess.CalledProcessError as e:
        return {"seconds": float("nan"), "note": "failed: " + e.stderr.strip().splitlines()[-1]}
    finally:
        if os.path.exists(out):
            os.unlink(out)


def lme4_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True)
    return r.returncode == 0


def run_lme4(csv_path: str, formula: str, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_WORKER_CSV)
        script = fh.name
    try:
        r = subprocess.run(["Rscript", script, csv_path, formula], capture_output=True,
                           text=True, timeout=timeout, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"seconds": float("nan"), "note": f"killed after {timeout:.0f} s"}
    except subprocess.CalledProcessError as e:
        return {"seconds": float("nan"), "note": "failed: " + e.stderr.strip()[-200:]}
    finally:
        os.unlink(script)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sm-max-rows", type=int, default=100_000)
    ap.add_argument("--sm-timeout", type=float, default=300.0)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--no-lme4", action="store_true")
    args = ap.parse_args(argv)
    have_r = not args.no_lme4 and lme4_available()
    if not have_r:
        print("lme4 not available (Rscript or the lme4 package missing): skipping lme4")
    print(f"load average at start: {os.getloadavg()}; cores: {os.cpu_count()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            df = simulate(n, args.seed)
            pq = os.path.join(tmp, f"d{n}.parquet")
            df.to_parquet(pq)
            csv = os.path.join(tmp, f"d{n}.csv")
            if have_r:
                df.to_csv(csv, index=False)
            data_mb = df.memory_usage(deep=True).sum() / 2**20
            for model, formula in FORMULAS.items():
                res = {"alliance": run_python("alliance", pq, formula, args.timeout)}
                if model == "two-level":
                    if n <= args.sm_max_rows:
                        res["statsmodels"] = run_python("statsmodels", pq, formula, args.sm_timeout)
                    else:
                        res["statsmodels"] = {"seconds": float("nan"), "note": f"skipped (> {args.sm_max_rows} rows)"}
                if have_r:
                    res["lme4"] = run_lme4(csv, formula, args.timeout)
                ref = res.get("lme4", {})
                for engine, r in res.items():
                    diff = (float(np.max(np.abs(np.subtract(r["beta"], ref["beta"]))))
                            if "beta" in r and "beta" in ref else float("nan"))
                    ratio = (ref["seconds"] / r["seconds"]) if "seconds" in ref and r.get("seconds") else float("nan")
                    rows.append({
                        "rows": n, "model": model, "engine": engine,
                        "seconds": r.get("seconds", float("nan")),
                        "cpu_s": r.get("cpu", float("nan")),
                        "lme4_s/engine_s": ratio,
                        "lme4_cpu/engine_cpu": (ref["cpu"] / r["cpu"]) if "cpu" in ref and r.get("cpu") else float("nan"),
                        "peak_mb": r.get("peak_mb", float("nan")),
                        "peak_beyond_data_mb": r.get("peak_mb", float("nan")) - r.get("base_mb", float("nan")),
                        "max_abs_dbeta_vs_lme4": diff,
                        "objective": r.get("objective", float("nan")),
                        "note": r.get("note", ""),
                        "data_mb": data_mb,
                    })
                print(pd.DataFrame(rows[-len(res):]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print("\n" + table.drop(columns=["objective", "data_mb"]).to_string(index=False))
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
