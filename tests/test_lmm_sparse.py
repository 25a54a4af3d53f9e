"""The sparse path of alliance.lmm (alliance.lmm.sparse): crossed designs larger than the blocked
factorisation's dense level (design.MAX_DENSE = 3,000 levels x terms) are fitted, not refused.

Fixtures: tests/data/lmm_r/sim_sparse_crossed.py simulates 42,000 ratings of 10,500 clients by
3,500 raters (crossed; raters within regions, 1% across); ref_sparse_crossed.R fits them with
lme4 1.1-31 / lmerTest 3.1-3 (sparse_crossed_reference.json; lme4 refitted with a tight bobyqa
tolerance, since its default stops with theta good to about 1e-5 on these flat criteria).

Tolerances against lme4: REML criterion 1e-6 relative (and never worse than lme4's by more),
fixed effects 1e-5 relative, standard errors 1e-4 relative, variances 1e-4 relative (the one
covariance, near 0, 1e-4 sigma^2 absolute), sigma 1e-5 relative, Satterthwaite df 1e-3 relative (lmerTest differentiates numerically),
the first conditional modes 1e-3 relative. Sparse against dense path at the same theta: 1e-8
relative; whole fits through either path (optimiser paths differ by rounding): objective 1e-9,
theta 1e-4, estimates, SEs and df 1e-4, conditional modes and variances 1e-3 relative.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import lmm
from alliance.lmm import design
from alliance.lmm.deviance import ProfiledDeviance

DATA = Path(__file__).parent / "data" / "lmm_r"
REF = json.loads((DATA / "sparse_crossed_reference.json").read_text())
FORMULA_REF = json.loads((DATA / "lmm_formula_reference.json").read_text())


def _simulator():
    spec = importlib.util.spec_from_file_location("sim_sparse_crossed", DATA / "sim_sparse_crossed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    df = _simulator().simulate()
    ref = REF["data"]
    assert len(df) == ref["nobs"] and df["client"].nunique() == ref["clients"]
    assert df["rater"].nunique() == ref["raters"]
    assert df["score"].sum() == pytest.approx(ref["sum_score"], rel=1e-13)
    assert df["severity"].sum() == pytest.approx(ref["sum_severity"], rel=1e-12, abs=1e-9)
    return df


@pytest.fixture(scope="module", params=["crossed_intercepts", "crossed_slope"])
def fitted(request, ratings):
    name = request.param
    return name, lmm.fit(" ".join(REF[name]["formula"].split()), ratings)


def test_large_crossed_design_takes_the_sparse_path(fitted):
    _, m = fitted
    s = m._structure
    assert s.sparse is not None and s.levels == []
    dense_q = s.factors[1].nlevels * s.factors[1].q
    assert dense_q > design.MAX_DENSE  # the design the blocked factorisation used to refuse


def test_large_crossed_design_matches_lme4(fitted):
    name, m = fitted
    ref = REF[name]
    assert m.objective <= ref["objective"] + 1e-6 * abs(ref["objective"])
    assert m.objective == pytest.approx(ref["objective"], rel=1e-6)
    fe = m.fixed_effects
    rows = list(ref["fixed"].values())
    assert list(fe.index) == list(ref["fixed"])
    np.testing.assert_allclose(fe["estimate"], [r["Estimate"] for r in rows], rtol=1e-5)
    np.testing.assert_allclose(fe["se"], [r["Std. Error"] for r in rows], rtol=1e-4)
    np.testing.assert_allclose(fe["df"], [r["df"] for r in rows], rtol=1e-3)
    vc = m.random_effects
    assert list(vc["group"]) == [r["grp"] for r in ref["varcorr"]]
    # variances 1e-4 relative; the client intercept-slope covariance (0.012, a flat direction of
    # the criterion: 7e-4 relative apart at objectives 6e-12 apart) 1e-4 sigma^2 absolute
    ref_vc = np.array([r["vcov"] for r in ref["varcorr"]])
    is_var = vc["term2"].isna().to_numpy()
    np.testing.assert_allclose(vc["variance"][is_var], ref_vc[is_var], rtol=1e-4)
    np.testing.assert_allclose(vc["variance"][~is_var], ref_vc[~is_var], rtol=0, atol=1e-4 * ref["sigma"] ** 2)
    assert m.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert m.converged and not m.singular and m.nobs == ref["nobs"]
    # conditional modes as lme4's ranef (first levels), and consistent with the fitted values
    np.testing.assert_allclose(m.ranef["rater"].iloc[:5, 0], ref["ranef_rater_head"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.ranef["client"].iloc[:3].to_numpy(),
                               np.asarray(ref["ranef_client_head"]).reshape(3, -1), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.predict(), m.fitted, rtol=1e-12)


# --------------------------------------------------------------------------- sparse = dense
def _formula_fixture_fits():
    cake = pd.read_csv(DATA / "cake.csv")
    levels = sorted(cake["temperature"].unique())
    cake["temperature"] = pd.Categorical(cake["temperature"], categories=levels, ordered=True)
    cake["recipe"] = cake["recipe"].astype(str)
    sleep = pd.read_csv(DATA / "sleepstudy.csv")
    for name, ref in FORMULA_REF.items():
        data = cake if name.startswith("cake") else sleep
        weights = "w" if name.startswith("ss_weights") else None
        yield name, " ".join(ref["formula"].split()), data, ref["reml"], weights


def _crossed_small():
    rng = np.random.default_rng(19)
    n_t, n_r = 200, 30
    target = np.repeat(np.arange(n_t), 4)
    rater = rng.integers(0, n_r, len(target))
    x = rng.normal(size=len(target))
    u = rng.normal(0, [1.0, 0.4], (n_t, 2))
    y = 3 + (0.5 + u[target, 1]) * x + u[target, 0] + rng.normal(0, 0.7, n_r)[rater] + rng.normal(0, 1, len(target))
    return pd.DataFrame({"y": y, "x": x, "target": target, "rater": rater})


CASES = [(name, formula, data, reml, w) for name, formula, data, reml, w in _formula_fixture_fits()]
CASES.append(("crossed_small", "y ~ x + (1 + x | target) + (1 | rater)", _crossed_small(), True, None))
# the dense path fits this one by alliance.lmm.crossed's fast path, the sparse path by COBYQA
CASES.append(("crossed_intercepts_small", "y ~ 1 + (1 | target) + (1 | rater)", _crossed_small(), True, None))


@pytest.mark.parametrize("name,formula,data,reml,weights", CASES, ids=[c[0] for c in CASES])
def test_sparse_path_equals_dense_path_at_the_same_theta(monkeypatch, name, formula, data, reml, weights):
    # every R fixture of the formula language (nested, crossed, slopes, weights, offsets), and a
    # small crossed design, forced through the sparse path: criterion, fixed effects, their
    # covariance and the conditional modes at the dense fit's theta agree to 1e-8
    dense = lmm.fit(formula, data, reml=reml, weights=weights, satterthwaite_df=False)
    assert dense._structure.sparse is None
    monkeypatch.setattr(design, "FORCE_SPARSE", True)
    sparse = lmm.fit(formula, data, reml=reml, weights=weights, satterthwaite_df=False,
                     start=dense.theta)
    assert sparse._structure.sparse is not None
    theta = dense.theta
    d0, d1 = ProfiledDeviance(dense._structure, reml), ProfiledDeviance(sparse._structure, reml)
    s0, s1 = d0.solve(theta, keep=True), d1.solve(theta, keep=True)
    assert d1.criterion(s1) == pytest.approx(d0.criterion(s0), rel=1e-8)
    np.testing.assert_allclose(s1.beta(), s0.beta(), rtol=1e-8, atol=1e-8 * np.abs(s0.beta()).max())
    np.testing.assert_allclose(s1.RXinv_cross(), s0.RXinv_cross(), rtol=1e-8,
                               atol=1e-8 * np.abs(s0.RXinv_cross()).max())
    for b0, b1 in zip(d0.random_effects(s0), d1.random_effects(s1)):
        np.testing.assert_allclose(b1, b0, rtol=1e-8, atol=1e-8 * max(np.abs(b0).max(), 1e-300))
    # and the fit from there stays at the dense optimum
    assert sparse.objective <= dense.objective + 1e-8 * abs(dense.objective)
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-8)


def test_sparse_fit_of_small_crossed_design_matches_dense_fit(monkeypatch):
    # the whole fit (optimiser from lme4's start, Satterthwaite df) through either path
    df = _crossed_small()
    f = "y ~ x + (1 + x | target) + (1 | rater)"
    dense = lmm.fit(f, df)
    monkeypatch.setattr(design, "FORCE_SPARSE", True)
    sparse = lmm.fit(f, df)
    assert sparse._structure.sparse is not None
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-9)
    np.testing.assert_allclose(sparse.theta, dense.theta, rtol=1e-4, atol=1e-5)
    cols = ["estimate", "se", "df"]
    np.testing.assert_allclose(sparse.fixed_effects[cols], dense.fixed_effects[cols], rtol=1e-4)
    for key in dense.ranef:
        np.testing.assert_allclose(sparse.ranef[key], dense.ranef[key], rtol=1e-3, atol=1e-5)
    cv0, cv1 = dense.cond_var(), sparse.cond_var()
    for key in cv0:
        np.testing.assert_allclose(cv1[key], cv0[key], rtol=1e-3)
