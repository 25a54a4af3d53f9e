"""Tests of alliance.reliability (inter-rater ICCs) against R and published values.

References (tests/data/icc/, copied from the shared reference folder; ``ref_icc.R`` and
``ref_icc_extra.R`` produced the JSON files with R 4.2.2, psych 2.2.9 and lme4 1.1-31):

- ``shrout_fleiss_1979``: the 6 targets × 4 judges example of Shrout & Fleiss (1979), with the
  published ICCs .17/.29/.71/.44/.62/.91 and psych::ICC's F tests and 95% intervals.
- ``observer_balanced``: 80 sessions × 3 coders, psych::ICC and lme4 variance components.
- ``observer_unbalanced``: 120 sessions, 6 coders, 2–3 coders per session, lme4 REML
  variance components of ``rating ~ 1 + (1|target) + (1|rater)``.
- ``observer_boundary``: 90 sessions, 5 coders, no coder leniency (``simulate.py``); lme4's
  fit is singular (rater variance 0).

Tolerances: ANOVA-route estimates and F 1e-6 absolute, p 1e-6 relative, intervals 1e-4
(psych); REML variances 1e-3 relative to lme4 (lme4's own optimiser stops at about 3e-5
relative on the balanced data, where the exact REML solution is the ANOVA one), ICCs from
them 1e-5 absolute, REML criterion 1e-6 absolute.
"""

from __future__ import annotations

import doctest
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.interrater import intraclass as rel
from alliance.lmm.crossed import CrossedREML, single_threaded_blas
from alliance.interrater.ratings import prepare_ratings
from alliance.interrater.intraclass import (
    ICC_COLUMNS,
    anova_mean_squares,
    crossed_variance_components,
    icc,
    icc_complete,
    icc_incomplete,
    interpret_icc_ci,
    koo_li_label,
)

DATA = Path(__file__).parent / "data" / "icc"
PSYCH_ORDER = ["ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"]
SF_LABELS = ["ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)"]
PSYCH_TO_SF = dict(zip(PSYCH_ORDER, SF_LABELS))


def ratings(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name / "ratings.csv")


def reference(name: str) -> dict:
    return json.loads((DATA / name / "icc_reference.json").read_text())


def lme4_extra(name: str) -> dict:
    return json.loads((DATA / name / "lme4_extra.json").read_text())


def psych_table(name: str) -> pd.DataFrame:
    return pd.DataFrame(reference(name)["psych_ICC"])


# --------------------------------------------------------------------------------------------
# Complete designs: psych::ICC, the published values, pingouin
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["shrout_fleiss_1979", "observer_balanced"])
def test_six_forms_match_psych(name):
    out = icc(ratings(name), "target", "rater", "rating")
    ref = psych_table(name)
    assert list(ref["type.1"]) == PSYCH_ORDER
    assert list(out["type"]) == SF_LABELS
    assert (out["method"] == "anova").all()
    np.testing.assert_allclose(out["icc"], ref["ICC"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["f"], ref["F"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["df1"], ref["df1"])
    np.testing.assert_array_equal(out["df2"], ref["df2"])
    np.testing.assert_allclose(out["p"], ref["p"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(out["ci_low"], ref["lower bound"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["ci_high"], ref["upper bound"], rtol=0, atol=1e-4)
    assert out["n_targets"].iloc[0] == reference(name)["n_targets"]
    assert out["n_raters"].iloc[0] == reference(name)["n_raters"]


def test_published_shrout_fleiss_values():
    # Shrout & Fleiss (1979), Table 4 as commonly quoted (psych and pingouin reproduce it).
    out = icc(ratings("shrout_fleiss_1979"), "target", "rater", "rating")
    assert out["icc"].round(2).tolist() == [0.17, 0.29, 0.71, 0.44, 0.62, 0.91]
    assert out["mcgraw_wong"].tolist() == [
        "ICC(1)", "ICC(A,1)", "ICC(C,1)", "ICC(k)", "ICC(A,k)", "ICC(C,k)"]


def test_shrout_fleiss_mean_squares():
    # BMS 11.24, JMS 32.49, EMS 1.02, WMS 6.26 (Shrout & Fleiss 1979, Table 2).
    wide = ratings("shrout_fleiss_1979").pivot(index="target", columns="rater", values="rating")
    ms = anova_mean_squares(wide.to_numpy())
    assert ms["MSR"] == pytest.approx(11.24, abs=0.005)
    assert ms["MSC"] == pytest.approx(32.49, abs=0.005)
    assert ms["MSE"] == pytest.approx(1.02, abs=0.005)
    assert ms["MSW"] == pytest.approx(6.26, abs=0.005)


def test_agrees_with_pingouin():
    pg = pytest.importorskip("pingouin")
    data = ratings("observer_balanced")
    ours = icc(data, "target", "rater", "rating")
    # Select pingouin's rows by position: its labels changed between releases.
    theirs = pg.intraclass_corr(data, targets="target", raters="rater", ratings="rating")
    np.testing.assert_allclose(ours["icc"], theirs["ICC"], rtol=1e-9)
    np.testing.assert_allclose(ours["f"], theirs["F"], rtol=1e-9)
    np.testing.assert_array_equal(ours["df1"], theirs["df1"])
    np.testing.assert_array_equal(ours["df2"], theirs["df2"])
    np.testing.assert_allclose(ours["p"], theirs["pval"], rtol=1e-6)
    ci = np.vstack(theirs["CI95"].to_numpy())  # rounded to 2 decimals by pingouin
    np.testing.assert_allclose(ours["ci_low"], ci[:, 0], atol=0.005 + 1e-12)
    np.testing.assert_allclose(ours["ci_high"], ci[:, 1], atol=0.005 + 1e-12)


def test_complete_result_does_not_depend_on_row_order():
    data = ratings("observer_balanced")
    shuffled = data.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(icc(data, "target", "rater", "rating"),
                                  icc(shuffled, "target", "rater", "rating"))


def test_icc_complete_equals_auto_on_complete_data():
    data = ratings("shrout_fleiss_1979")
    pd.testing.assert_frame_equal(icc_complete(data, "target", "rater", "rating"),
                                  icc(data, "target", "rater", "rating", design="complete"))
    assert list(icc_complete(data, "target", "rater", "rating").columns) == ICC_COLUMNS


def test_ci_level_changes_interval_width():
    data = ratings("shrout_fleiss_1979")
    wide = icc(data, "target", "rater", "rating", ci_level=0.99)
    narrow = icc(data, "target", "rater", "rating", ci_level=0.90)
    assert (wide["ci_low"] < narrow["ci_low"]).all()
    assert (wide["ci_high"] > narrow["ci_high"]).all()


# --------------------------------------------------------------------------------------------
# Incomplete designs: REML variance components against lme4
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["observer_unbalanced", "observer_balanced", "shrout_fleiss_1979", "observer_boundary"]
)
def test_variance_components_match_lme4(name):
    data = ratings(name)
    ref = reference(name)["lme4_varcomp"]
    extra = lme4_extra(name)["two_way"]
    vc = crossed_variance_components(data, "target", "rater", "rating")
    assert vc.converged
    assert vc.target == pytest.approx(ref["target"], rel=1e-3)
    assert vc.residual == pytest.approx(ref["residual"], rel=1e-3)
    if ref["rater"] == 0:  # lme4's singular fit: the rater variance sits on the boundary
        assert vc.rater == 0.0
    else:
        assert vc.rater == pytest.approx(ref["rater"], rel=1e-3)
    assert vc.icc_agreement == pytest.approx(ref["icc_agreement_single"], abs=1e-5)
    assert vc.icc_consistency == pytest.approx(ref["icc_consistency_single"], abs=1e-5)
    # Same model, same criterion: never worse than lme4, and not by more than its tolerance.
    assert vc.reml_criterion <= extra["REMLcrit"] + 1e-6
    assert vc.reml_criterion == pytest.approx(extra["REMLcrit"], abs=1e-6)
    assert vc.intercept == pytest.approx(extra["intercept"], abs=1e-5)


@pytest.mark.parametrize("name", ["observer_unbalanced", "observer_boundary"])
def test_one_way_components_match_lme4(name):
    ref = lme4_extra(name)["one_way"]
    vc = crossed_variance_components(ratings(name), "target", "rater", "rating", one_way=True)
    assert vc.rater == 0.0
    assert vc.target == pytest.approx(ref["target"], rel=1e-3)
    assert vc.residual == pytest.approx(ref["residual"], rel=1e-3)
    assert vc.reml_criterion == pytest.approx(ref["REMLcrit"], abs=1e-6)


def test_incomplete_icc_table_against_lme4():
    data = ratings("observer_unbalanced")
    ref = reference("observer_unbalanced")["lme4_varcomp"]
    one_way = lme4_extra("observer_unbalanced")["one_way"]
    out = icc(data, "target", "rater", "rating", ci_method="bootstrap", n_boot=0).set_index("type")
    assert (out["method"] == "variance_components").all()
    assert out[["f", "df1", "df2", "p", "ci_low", "ci_high"]].isna().all().all()
    # Harmonic mean of raters per target, computed here from the data independently.
    per_target = data.groupby("target").size()
    k = 1.0 / np.mean(1.0 / per_target)
    vt, vr, ve = ref["target"], ref["rater"], ref["residual"]
    expected = {
        "ICC(1,1)": one_way["icc_single"],
        "ICC(2,1)": ref["icc_agreement_single"],
        "ICC(3,1)": ref["icc_consistency_single"],
        "ICC(1,k)": one_way["target"] / (one_way["target"] + one_way["residual"] / k),
        "ICC(2,k)": vt / (vt + (vr + ve) / k),
        "ICC(3,k)": vt / (vt + ve / k),
    }
    for form, value in expected.items():
        assert out.loc[form, "icc"] == pytest.approx(value, abs=1e-5), form
    np.testing.assert_allclose(out["raters_per_target"], k, rtol=1e-12)


def test_reml_on_complete_data_equals_anova():
    # On a complete design REML reproduces the ANOVA estimators (all non-negative here).
    data = ratings("observer_balanced")
    out = icc(data, "target", "rater", "rating", design="incomplete", n_boot=0)
    np.testing.assert_allclose(out["icc"], psych_table("observer_balanced")["ICC"], atol=1e-5)


def test_bootstrap_intervals_close_to_exact_intervals():
    # Parametric-bootstrap percentile intervals on complete data against psych's exact
    # (F-based) intervals: the difference is Monte Carlo and method error, < 0.03 here.
    data = ratings("observer_balanced")
    out = icc(data, "target", "rater", "rating", design="incomplete", ci_method="bootstrap", n_boot=400,
              seed=1)
    ref = psych_table("observer_balanced")
    np.testing.assert_allclose(out["ci_low"], ref["lower bound"], atol=0.03)
    np.testing.assert_allclose(out["ci_high"], ref["upper bound"], atol=0.03)
    assert (out["ci_low"] < out["icc"]).all() and (out["icc"] < out["ci_high"]).all()
    assert out["ci_method"].iloc[0].startswith("parametric bootstrap percentile (400")


def test_bootstrap_is_reproducible_by_seed():
    data = ratings("observer_unbalanced")
    a = icc_incomplete(data, "target", "rater", "rating", ci_method="bootstrap", n_boot=60, seed=7)
    b = icc_incomplete(data, "target", "rater", "rating", ci_method="bootstrap", n_boot=60, seed=7)
    c = icc_incomplete(data, "target", "rater", "rating", ci_method="bootstrap", n_boot=60, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    np.testing.assert_array_equal(a["icc"], c["icc"])


def test_wald_covariance_equals_closed_form_on_balanced_data():
    # On a balanced complete design the REML estimates are the ANOVA ones, v = J (MSR, MSC,
    # MSE), and the mean squares are independent scaled chi-squares: Var(MS) = 2 MS^2 / df
    # at the estimate (observed = expected information there). Our covariance comes from
    # finite differences of the restricted likelihood; 1e-5 relative on the variances,
    # 1e-3 of the largest entry on the covariances.
    d = prepare_ratings(ratings("observer_balanced"), "target", "rater", "rating")
    Y = rel._wide(d)
    n, k = Y.shape
    ms = anova_mean_squares(Y)
    engine = CrossedREML(d.t, d.r, d.n_targets, d.n_raters)
    fit = engine.fit_components(d.y)
    v = np.array([fit.var_a, fit.var_b, fit.residual])
    cov = engine.covariance(engine.responses(d.y), v, np.array([True, True, True]))
    J = np.array([[1 / k, 0, -1 / k], [0, 1 / n, -1 / n], [0, 0, 1]])
    V = np.diag([2 * ms["MSR"] ** 2 / (n - 1), 2 * ms["MSC"] ** 2 / (k - 1),
                 2 * ms["MSE"] ** 2 / ((n - 1) * (k - 1))])
    closed = J @ V @ J.T
    np.testing.assert_allclose(np.diag(cov), np.diag(closed), rtol=1e-5)
    np.testing.assert_allclose(cov, closed, rtol=0, atol=1e-3 * np.abs(closed).max())


def test_wald_intervals_close_to_exact_intervals_on_balanced_data():
    # Consistency forms: the exact F intervals (psych) and the logit-scale Wald intervals of
    # the same REML fit differ by < 0.02 with 80 targets; agreement forms rest on 3 raters'
    # variance, where Wald and the exact-ish McGraw & Wong interval differ more (< 0.08).
    data = ratings("observer_balanced")
    wald = icc(data, "target", "rater", "rating", design="incomplete", ci_method="wald").set_index("type")
    exact = icc(data, "target", "rater", "rating").set_index("type")
    assert wald["ci_method"].iloc[0].startswith("Wald, delta method on the logit scale")
    for form, tol in (("ICC(3,1)", 0.02), ("ICC(3,k)", 0.02), ("ICC(2,1)", 0.08), ("ICC(2,k)", 0.08)):
        assert wald.loc[form, "ci_low"] == pytest.approx(exact.loc[form, "ci_low"], abs=tol), form
        assert wald.loc[form, "ci_high"] == pytest.approx(exact.loc[form, "ci_high"], abs=tol), form
    assert (wald["ci_low"] < wald["icc"]).all() and (wald["icc"] < wald["ci_high"]).all()


def _incomplete_design(rng, n_targets, n_raters, vt, vr, ve):
    k = rng.integers(2, 4, size=n_targets)
    t = np.repeat(np.arange(n_targets), k)
    r = np.concatenate([rng.choice(n_raters, size=m, replace=False) for m in k])
    y = (4.0 + rng.normal(0, np.sqrt(vt), n_targets)[t] + rng.normal(0, np.sqrt(vr), n_raters)[r]
         + rng.normal(0, np.sqrt(ve), len(t)))
    return pd.DataFrame({"target": t, "rater": r, "rating": y}), len(k) / np.sum(1 / k)


def test_wald_interval_coverage_on_simulated_incomplete_designs():
    # Parameter recovery: 300 studies of 200 sessions, 2-3 of 8 coders each (v_t .5, v_r .06,
    # v_e .15). 95% Wald intervals must cover the true agreement and consistency ICCs in
    # 92-98% of studies (Monte Carlo SE 1.3 points). Measured: 94.5% and 94.2% (400 studies).
    # The one-way ICC(1) ignores that coders recur across sessions and covers less (~85%):
    # not asserted; icc_incomplete's docstring says so.
    rng = np.random.default_rng(5)
    vt, vr, ve = 0.5, 0.06, 0.15
    hits, studies = np.zeros(4), 300
    for _ in range(studies):
        data, k = _incomplete_design(rng, 200, 8, vt, vr, ve)
        out = icc(data, "target", "rater", "rating", design="incomplete").set_index("type")
        truth = {"ICC(2,1)": vt / (vt + vr + ve), "ICC(3,1)": vt / (vt + ve),
                 "ICC(2,k)": vt / (vt + (vr + ve) / k), "ICC(3,k)": vt / (vt + ve / k)}
        hits += [out.loc[f, "ci_low"] <= v <= out.loc[f, "ci_high"] for f, v in truth.items()]
    coverage = hits / studies
    assert np.all((coverage >= 0.92) & (coverage <= 0.98)), coverage


def test_wald_interval_of_a_zero_target_variance():
    # Each session's two coders deviate by +e and -e from their own offsets: the session
    # means carry no variance beyond the coders', so REML puts the target variance on the
    # bound. The ICCs are then 0 with lower limit 0 and no upper Wald limit (said in ci_method).
    pairs = [("A", "B"), ("C", "D"), ("A", "C"), ("B", "D"), ("A", "D"), ("B", "C")]
    offsets = {"A": 0.0, "B": 0.5, "C": -0.3, "D": 0.2}
    rows = []
    for t in range(30):
        a, b = pairs[t % 6]
        e = 0.4 * (1 + t % 5)
        rows += [(t, a, 4 + offsets[a] + e), (t, b, 4 + offsets[b] - e)]
    data = pd.DataFrame(rows, columns=["target", "rater", "rating"])
    assert crossed_variance_components(data, "target", "rater", "rating").target == 0.0
    out = icc(data, "target", "rater", "rating", design="incomplete", ci_method="wald")
    assert (out["icc"] == 0).all() and (out["ci_low"] == 0).all() and out["ci_high"].isna().all()
    assert "no upper Wald limit" in out["ci_method"].iloc[0]


def test_wald_interval_holds_a_zero_rater_variance_fixed():
    out = icc(ratings("observer_boundary"), "target", "rater", "rating", design="incomplete",
              ci_method="wald")
    assert out["ci_method"].iloc[0].endswith("rater variance 0 (on the bound): held fixed")
    assert np.isfinite(out[["ci_low", "ci_high"]]).all().all()


def test_parameter_recovery_large_incomplete_design():
    rng = np.random.default_rng(11)
    n_targets, n_raters = 1500, 8
    vt, vr, ve = 0.5, 0.05, 0.2
    k = rng.integers(2, 4, size=n_targets)
    t = np.repeat(np.arange(n_targets), k)
    r = np.concatenate([rng.choice(n_raters, size=m, replace=False) for m in k])
    y = (4.0 + rng.normal(0, np.sqrt(vt), n_targets)[t] + rng.normal(0, np.sqrt(vr), n_raters)[r]
         + rng.normal(0, np.sqrt(ve), len(t)))
    vc = crossed_variance_components(pd.DataFrame({"t": t, "r": r, "y": y}), "t", "r", "y")
    assert vc.target == pytest.approx(vt, rel=0.1)
    assert vc.residual == pytest.approx(ve, rel=0.05)
    assert vc.icc_consistency == pytest.approx(vt / (vt + ve), abs=0.03)
    # 8 raters leave the rater variance (and so agreement) loosely determined.
    assert vc.icc_agreement == pytest.approx(vt / (vt + vr + ve), abs=0.08)


def test_cross_check_with_alliance_lmm():
    # extra check (lme4 above is the reference): the engine's general path, which an explicit
    # start selects (without one, alliance.lmm.fit hands this model to the same fast path)
    from alliance import lmm

    data = ratings("observer_unbalanced")
    fit = lmm.fit("rating ~ 1 + (1|target) + (1|rater)", data, reml=True, start=np.array([1.0, 1.0]))
    v = fit.random_effects.set_index("group")["variance"]
    vc = crossed_variance_components(data, "target", "rater", "rating")
    assert vc.target == pytest.approx(v["target"], rel=1e-4)
    assert vc.rater == pytest.approx(v["rater"], rel=1e-4)
    assert vc.residual == pytest.approx(fit.sigma**2, rel=1e-4)


# --------------------------------------------------------------------------------------------
# REML engine internals: analytic gradient and the batched optimiser
# --------------------------------------------------------------------------------------------
def _engine(name: str, one_way: bool = False):
    d = prepare_ratings(ratings(name), "target", "rater", "rating")
    return CrossedREML(d.t, d.r, d.n_targets, d.n_raters, one_way), d


def test_gradient_matches_finite_differences():
    engine, d = _engine("observer_unbalanced")
    points = np.array([[1.0, 1.0], [0.3, 2.0], [1.7, 0.05], [2.0, 0.0], [0.0, 0.5]])
    resp = engine.responses(d.y).take([0] * len(points))
    analytic = engine.evaluate(points, resp)[1]
    h = 1e-6
    for i, point in enumerate(points):
        for j in range(2):
            e = np.zeros(2)
            e[j] = h
            one = resp.take([0])
            if point[j] == 0:  # one-sided at the bound
                fd = (engine.evaluate(point + e, one)[0] - engine.evaluate(point, one)[0]) / h
                tol = 1e-3 * max(1.0, abs(analytic[i, j]))
            else:
                up, down = engine.evaluate(point + e, one)[0], engine.evaluate(point - e, one)[0]
                fd = (up - down) / (2 * h)
                tol = 1e-5 * max(1.0, abs(analytic[i, j]))
            assert analytic[i, j] == pytest.approx(fd[0], abs=tol), (point, j)


@pytest.mark.parametrize("one_way", [False, True])
def test_batched_newton_matches_lbfgsb(one_way):
    engine, d = _engine("observer_unbalanced", one_way)
    fit = engine.fit_components(d.y)
    Y = engine.simulate(fit, 15, np.random.default_rng(5))
    resp = engine.responses(Y)
    with single_threaded_blas():
        theta, ok = engine.fit_batch(resp, fit.theta)
        singles = [engine.fit(resp.take([b]), fit.theta)[0] for b in range(len(ok))]
    assert ok.all()
    for b, single in enumerate(singles):
        np.testing.assert_allclose(theta[b] ** 2, single**2, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Profile-likelihood intervals, the default below 6 raters (issue 16)
# --------------------------------------------------------------------------------------------
def test_auto_interval_is_profile_below_six_raters_and_wald_from_six():
    five = icc(ratings("observer_boundary"), "target", "rater", "rating")  # 5 coders
    six = icc(ratings("observer_unbalanced"), "target", "rater", "rating")  # 6 coders
    assert (five["n_raters"] == 5).all() and (six["n_raters"] == 6).all()
    assert five["ci_method"].iloc[0] == "profile likelihood (REML likelihood ratio, chi-square 1 df)"
    assert six["ci_method"].iloc[0].startswith("Wald, delta method")
    # the complete-design route keeps its exact F intervals whatever ci_method says
    balanced = icc(ratings("observer_balanced"), "target", "rater", "rating", ci_method="profile")
    assert (balanced["method"] == "anova").all()


def _one_way_reml_criterion(Y: np.ndarray):
    """Closed-form REML criterion of a balanced one-way design as a function of ICC(1) = rho,
    the total variance profiled out: the between-target contrasts have variance
    s^2 (1 + (k - 1) rho) (n - 1 of them), the within-target ones s^2 (1 - rho)."""
    n, k = Y.shape
    ssb = k * np.sum((Y.mean(axis=1) - Y.mean()) ** 2)
    ssw = np.sum((Y - Y.mean(axis=1, keepdims=True)) ** 2)
    return lambda rho: ((n * k - 1) * np.log(ssb / (1 + (k - 1) * rho) + ssw / (1 - rho))
                        + (n - 1) * np.log(1 + (k - 1) * rho) + n * (k - 1) * np.log(1 - rho))


@pytest.fixture(params=["by_target", "by_pattern"])
def criterion_route(request, monkeypatch):
    """Both routes of the profile searches' criterion: target by target (small studies, up to
    CRITERION_BY_TARGET_UP_TO ratings) and grouped by row pattern (above it; forced here)."""
    from alliance.interrater import intraclass

    if request.param == "by_pattern":
        monkeypatch.setattr(intraclass, "CRITERION_BY_TARGET_UP_TO", 0)
    return request.param


def test_profile_interval_of_icc1_is_the_closed_form_likelihood_ratio_interval(criterion_route):
    from scipy import optimize, stats

    data = ratings("observer_balanced")
    out = icc(data, "target", "rater", "rating", design="incomplete", ci_method="profile")
    row = out.set_index("mcgraw_wong").loc["ICC(1)"]
    d = prepare_ratings(data, "target", "rater", "rating")
    crit = _one_way_reml_criterion(rel._wide(d))
    best = optimize.minimize_scalar(crit, bounds=(0, 1), method="bounded", options={"xatol": 1e-12})
    assert row["icc"] == pytest.approx(best.x, abs=1e-6)
    cut = stats.chi2.ppf(0.95, 1)
    assert crit(row["ci_low"]) - best.fun == pytest.approx(cut, abs=1e-4)
    assert crit(row["ci_high"]) - best.fun == pytest.approx(cut, abs=1e-4)


def test_profile_agreement_limits_against_the_general_engine(criterion_route):
    # At each ICC(A,1) limit rho, the general engine's REML criterion minimised over the rater
    # share u of the error variance (a fine grid, then a bounded search) lies the chi-square
    # quantile above its own optimum: the limits solve the likelihood-ratio equation.
    from scipy import optimize, stats

    from alliance import lmm
    from alliance.lmm.deviance import ProfiledDeviance

    data = ratings("observer_boundary")
    out = icc(data, "target", "rater", "rating", design="incomplete", ci_method="profile")
    row = out.set_index("mcgraw_wong").loc["ICC(A,1)"]
    m = lmm.fit("rating ~ 1 + (1|target) + (1|rater)", data, satterthwaite_df=False)
    dev = ProfiledDeviance(m._structure, reml=True)

    def criterion(rho: float, u: float) -> float:
        gamma = np.array([rho / ((1 - rho) * (1 - u)), u / (1 - u)])
        return dev(np.sqrt(gamma))

    def profile(rho: float) -> float:
        grid = np.linspace(0, 0.999, 100)
        values = [criterion(rho, u) for u in grid]
        i = int(np.argmin(values))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        res = optimize.minimize_scalar(lambda u: criterion(rho, u), bounds=(lo, hi), method="bounded",
                                       options={"xatol": 1e-10})
        return min(res.fun, values[i])

    cut = stats.chi2.ppf(0.95, 1)
    assert 0 < row["ci_low"] < row["icc"] < row["ci_high"] < 1
    for limit in (row["ci_low"], row["ci_high"]):
        assert profile(limit) - m.objective == pytest.approx(cut, abs=2e-3)


def test_profile_consistency_intervals_near_the_exact_ones_on_balanced_data():
    # Consistency and one-way forms have exact F intervals on a complete design (psych::ICC);
    # with 80 targets the REML likelihood-ratio intervals lie within 0.002 of them (measured
    # 0.0009). The agreement forms rest on 3 raters: the profile interval reaches far lower
    # (the rater variance is nearly unbounded above with 2 df), so only its ordering is checked.
    data = ratings("observer_balanced")
    prof = icc(data, "target", "rater", "rating", design="incomplete", ci_method="profile").set_index("type")
    exact = icc(data, "target", "rater", "rating").set_index("type")
    for form in ("ICC(1,1)", "ICC(3,1)", "ICC(1,k)", "ICC(3,k)"):
        assert prof.loc[form, "ci_low"] == pytest.approx(exact.loc[form, "ci_low"], abs=2e-3), form
        assert prof.loc[form, "ci_high"] == pytest.approx(exact.loc[form, "ci_high"], abs=2e-3), form
    assert (prof["ci_low"] < prof["icc"]).all() and (prof["icc"] < prof["ci_high"]).all()
    assert prof.loc["ICC(2,1)", "ci_low"] < exact.loc["ICC(2,1)", "ci_low"]


def test_profile_interval_of_a_zero_target_variance_has_an_upper_limit():
    pairs = [("A", "B"), ("C", "D"), ("A", "C"), ("B", "D"), ("A", "D"), ("B", "C")]
    offsets = {"A": 0.0, "B": 0.5, "C": -0.3, "D": 0.2}
    rows = []
    for t in range(30):
        a, b = pairs[t % 6]
        e = 0.4 * (1 + t % 5)
        rows += [(t, a, 4 + offsets[a] + e), (t, b, 4 + offsets[b] - e)]
    out = icc(pd.DataFrame(rows, columns=["target", "rater", "rating"]), "target", "rater", "rating")
    assert out["ci_method"].iloc[0].startswith("profile likelihood")
    assert (out["icc"] == 0).all() and (out["ci_low"] == 0).all()
    assert ((out["ci_high"] > 0) & (out["ci_high"] < 0.3)).all()


def test_default_interval_covers_with_four_coders():
    # Parameter recovery with few coders (issue 16): 40 studies of 120 sessions, each coded by
    # 2-4 of 4 coders (v_t .5, v_r .06, v_e .15; ICC(A,1) = .704). The default interval
    # (profile likelihood below 6 coders) must cover the true ICC(A,1) in at least 90% of them
    # and reach lower than Wald's, whose misses all lie on that side (the rater variance of 4
    # coders is skewed). benchmarks/icc_coverage.py runs 400 studies: Wald 93.2% (MC SE 1.3),
    # profile 96.8% (0.9).
    rng = np.random.default_rng(16)
    vt, vr, ve = 0.5, 0.06, 0.15
    truth = vt / (vt + vr + ve)
    covered, lower_than_wald = 0, []
    studies = 40
    for _ in range(studies):
        k = rng.integers(2, 5, size=120)
        t = np.repeat(np.arange(120), k)
        r = np.concatenate([rng.choice(4, size=m, replace=False) for m in k])
        y = (4.2 + rng.normal(0, np.sqrt(vt), 120)[t] + rng.normal(0, np.sqrt(vr), 4)[r]
             + rng.normal(0, np.sqrt(ve), len(t)))
        data = pd.DataFrame({"target": t, "rater": r, "rating": y})
        default = icc(data, "target", "rater", "rating").set_index("mcgraw_wong").loc["ICC(A,1)"]
        wald = icc(data, "target", "rater", "rating", ci_method="wald").set_index("mcgraw_wong").loc["ICC(A,1)"]
        assert default["ci_method"].startswith("profile likelihood")
        covered += bool(default["ci_low"] <= truth <= default["ci_high"])
        lower_than_wald.append(default["ci_low"] < wald["ci_low"])
    assert covered / studies >= 0.90, covered
    assert np.mean(lower_than_wald) >= 0.9


def test_incomplete_route_is_fast_enough():
    data = ratings("observer_unbalanced")
    start = time.perf_counter()
    icc(data, "target", "rater", "rating", ci_method="bootstrap", n_boot=200, seed=0)
    assert time.perf_counter() - start < 10  # about 0.3 s on an idle 2-core machine


# --------------------------------------------------------------------------------------------
# Interpretation after Koo & Li (2016)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, label",
    [(-0.2, "poor"), (0.4999, "poor"), (0.5, "moderate"), (0.7499, "moderate"), (0.75, "good"),
     (0.9, "good"), (0.9001, "excellent"), (1.0, "excellent"), (np.nan, "")],
)
def test_koo_li_label(value, label):
    assert koo_li_label(value) == label


def test_interpretation_is_judged_on_the_interval():
    assert interpret_icc_ci(0.83, 0.94) == "good to excellent"  # Koo & Li's own example
    assert interpret_icc_ci(0.6, 0.7) == "moderate"
    assert interpret_icc_ci(np.nan, 0.7) == ""
    out = icc(ratings("shrout_fleiss_1979"), "target", "rater", "rating")
    # ICC(C,1) = .71 would read "moderate" from the point estimate; its CI is .34 to .95.
    assert out.loc[2, "interpretation"] == "poor to excellent"
    expected = [interpret_icc_ci(lo, hi) for lo, hi in zip(out["ci_low"], out["ci_high"])]
    assert out["interpretation"].tolist() == expected


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def _sf():
    return ratings("shrout_fleiss_1979")


def test_missing_column_is_named():
    with pytest.raises(ValueError, match=r"column\(s\) not in data: rating='score'"):
        icc(_sf(), "target", "rater", "score")


def test_fewer_than_two_raters():
    data = _sf()
    with pytest.raises(ValueError, match="1 distinct rater.*at least 2 raters"):
        icc(data[data["rater"] == "J1"], "target", "rater", "rating")


def test_fewer_than_two_targets():
    data = _sf()
    with pytest.raises(ValueError, match="1 distinct target.*at least 2 targets"):
        icc(data[data["target"] == 1], "target", "rater", "rating")


def test_zero_variance_is_undefined():
    data = _sf().assign(rating=3.0)
    with pytest.raises(ValueError, match="zero variance.*undefined"):
        icc(data, "target", "rater", "rating")


def test_target_rated_once_refused_in_complete_mode():
    data = _sf()
    data = data[~((data["target"] == 2) & (data["rater"] != "J1"))]
    with pytest.raises(ValueError, match=r"1 target\(s\) in column 'target' rated by one rater"):
        icc(data, "target", "rater", "rating", design="complete")


def test_target_rated_once_dropped_with_count_in_incomplete_mode():
    data = ratings("observer_unbalanced")
    extra = pd.DataFrame({"target": ["X1", "X2"], "rater": ["R1", "R2"], "rating": [4.0, 5.0]})
    # an example target by its shape only: a target id may be a client's
    with pytest.warns(UserWarning, match=r"2 target\(s\) in column 'target' rated by one rater only \(e.g. text "
                                         r"of 2 characters \(letters, digits\)\)"):
        out = icc(pd.concat([data, extra]), "target", "rater", "rating", n_boot=0)
    assert out["n_targets"].iloc[0] == data["target"].nunique()
    reference_out = icc(data, "target", "rater", "rating", n_boot=0)
    np.testing.assert_allclose(out["icc"], reference_out["icc"], rtol=1e-9)


def test_incomplete_data_refused_in_complete_mode():
    with pytest.raises(ValueError, match="incomplete design.*design='incomplete'"):
        icc(ratings("observer_unbalanced"), "target", "rater", "rating", design="complete")


def test_duplicate_pairs_refused():
    data = _sf()
    with pytest.raises(ValueError, match="duplicate \\(target, rater\\) pair"):
        icc(pd.concat([data, data.iloc[[0]]]), "target", "rater", "rating")


def test_non_numeric_rating_named():
    data = _sf().astype({"rating": object})
    data.loc[3, "rating"] = "high"
    # the row, and the value by its shape only: a text in a rating column may identify someone
    with pytest.raises(ValueError, match=r"column 'rating' must hold finite numbers; row 3: value is a text of 4 "
                                         r"characters \(letters\)$"):
        icc(data, "target", "rater", "rating")


def test_a_text_row_label_is_named_by_its_position():
    """A caller's table indexed by names (or dates): the message names the row by its position
    from 0, never the label, which may be the client's name (alliance.errors.first_row)."""
    data = _sf().astype({"rating": object})
    data.index = [f"Client Name {i}" for i in range(len(data))]
    data.iloc[3, data.columns.get_loc("rating")] = "high"
    with pytest.raises(ValueError, match=r"must hold finite numbers; row 3: value is a text of 4 ") as exc:
        icc(data, "target", "rater", "rating")
    assert "Client Name" not in str(exc.value)
    twice = _sf()
    twice = pd.concat([twice, twice.iloc[[0]]])
    twice.index = [f"Client Name {i}" for i in range(len(twice))]
    with pytest.raises(ValueError, match=rf"duplicate \(target, rater\) pair\(s\), e.g. in rows \[0, {len(twice) - 1}\]") as exc:
        icc(twice, "target", "rater", "rating")
    assert "Client Name" not in str(exc.value)


def test_infinite_rating_and_reused_column_refused():
    data = _sf().astype({"rating": float})
    data.loc[3, "rating"] = np.inf
    with pytest.raises(ValueError, match="column 'rating' must hold finite numbers; row 3: value inf"):
        icc(data, "target", "rater", "rating")
    with pytest.raises(ValueError, match="target, rater, rating must be different columns; got target='target', rater='target'"):
        icc(_sf(), "target", "target", "rating")


def test_missing_rating_dropped_with_warning():
    data = _sf().astype({"rating": float})
    data.loc[0, "rating"] = np.nan
    with pytest.warns(UserWarning, match="1 rating\\(s\\) missing in column 'rating'"):
        out = icc(data, "target", "rater", "rating", n_boot=0)
    assert out["method"].iloc[0] == "variance_components"  # no longer complete


def test_missing_id_refused():
    data = _sf().astype({"rater": object})
    data.loc[5, "rater"] = None
    with pytest.raises(ValueError, match="column 'rater' has a missing id in row 5"):
        icc(data, "target", "rater", "rating")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"design": "mixed"}, "design must be"), ({"ci_level": 95}, "ci_level"),
     ({"n_boot": -1}, "n_boot"), ({"n_boot": 2.5}, "n_boot"), ({"n_boot": "10"}, "n_boot"),
     ({"ci_level": "0.95"}, "ci_level"), ({"ci_method": "likelihood"}, "ci_method")],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        icc(_sf(), "target", "rater", "rating", **kwargs)


def test_not_a_dataframe():
    with pytest.raises(ValueError, match="pandas DataFrame"):
        icc([[1, 2]], "target", "rater", "rating")


# --------------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------------
def test_docstring_examples():
    result = doctest.testmod(rel, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------
# No variance between targets
# --------------------------------------------------------------------------------------------
def _rater_offsets_only(complete: bool) -> pd.DataFrame:
    offsets = {"R1": 3.0, "R2": 5.0, "R3": 4.0}
    if complete:
        rows = [(t, r, v) for t in range(6) for r, v in offsets.items()]
    else:  # each target rated by two of the three raters
        pairs = [("R1", "R2"), ("R2", "R3"), ("R1", "R3")]
        rows = [(t, r, offsets[r]) for t in range(9) for r in pairs[t % 3]]
    return pd.DataFrame(rows, columns=["target", "rater", "rating"])


@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("design", ["auto", "incomplete"])
def test_ratings_varying_by_rater_only_are_refused(complete, design):
    # before: ICC(1) = -1/(k-1), ICC(k) = -inf and NaN with RuntimeWarnings (complete), or
    # boundary REML fits with zero residual and failing bootstrap refits (incomplete)
    with pytest.raises(ValueError, match=r"zero variance between targets: each rater in column "
                       r"'rater' gave the same rating to every target in column 'target' it rated "
                       r"\('R1' always 3.0, 'R2' always 5.0, 'R3' always 4.0\)"):
        icc(_rater_offsets_only(complete), "target", "rater", "rating", design=design, n_boot=10)


def test_equal_target_means_refused_on_the_anova_route():
    # raters disagree, but every target has mean 4: MSR = 0, so ICC(k) = 1 - MSW/MSR = -inf
    # and ICC(A,k) came out as 4
    data = pd.DataFrame({"target": np.repeat(np.arange(4), 2), "rater": np.tile(["A", "B"], 4),
                         "rating": [3.0, 5, 5, 3, 3, 5, 5, 3]})
    with pytest.raises(ValueError, match=r"zero variance between targets: all 4 targets in column "
                       r"'target' have the same mean rating 4.0 in column 'rating'"):
        icc_complete(data, "target", "rater", "rating")


def test_rater_offsets_on_top_of_small_target_differences_keep_the_consistency_iccs():
    # ICC(C,1) and ICC(C,k) are invariant to rescaling and to a constant per rater; with the
    # Shrout & Fleiss data shrunk 1000-fold onto rater offsets 1..4 they must still equal the
    # published .71 and .91 (psych, 1e-6 absolute): the zero-variance checks must not fire
    data = _sf()
    data["rating"] = data["rating"] * 1e-3 + data["rater"].str[1:].astype(float)
    out = icc(data, "target", "rater", "rating")
    consistency = [PSYCH_ORDER.index("ICC3"), PSYCH_ORDER.index("ICC3k")]
    expected = psych_table("shrout_fleiss_1979")["ICC"].to_numpy()[consistency]
    np.testing.assert_allclose(out["icc"].to_numpy()[consistency], expected, rtol=0, atol=1e-6)


def test_one_rating_per_rater_is_not_taken_for_rater_only_variance():
    # every rater rated one target: within-rater spreads are 0 trivially, targets still differ
    data = pd.DataFrame({"target": np.repeat(np.arange(5), 2),
                         "rater": [f"R{i}" for i in range(10)],
                         "rating": [1.0, 1.5, 2, 2.5, 3, 3.5, 4, 3.5, 5, 4]})
    out = icc(data, "target", "rater", "rating", n_boot=0)
    assert np.isfinite(out["icc"]).all()
