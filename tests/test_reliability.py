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
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import reliability as rel
from alliance.reliability import (
    ICC_COLUMNS,
    anova_mean_squares,
    crossed_variance_components,
    icc,
    icc_complete,
    icc_incomplete,
    interpret_icc_ci,
    koo_li_label,
    observer_icc_table,
)

DATA = Path(__file__).parent / "data" / "icc"
PSYCH_ORDER = ["ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"]


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
    assert list(out["type"]) == PSYCH_ORDER
    assert (out["method"] == "ANOVA").all()
    np.testing.assert_allclose(out["estimate"], ref["ICC"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["F"], ref["F"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["df1"], ref["df1"])
    np.testing.assert_array_equal(out["df2"], ref["df2"])
    np.testing.assert_allclose(out["p"], ref["p"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(out["ci_lower"], ref["lower bound"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out["ci_upper"], ref["upper bound"], rtol=0, atol=1e-4)
    assert out["n_targets"].iloc[0] == reference(name)["n_targets"]
    assert out["n_raters"].iloc[0] == reference(name)["n_raters"]


def test_published_shrout_fleiss_values():
    # Shrout & Fleiss (1979), Table 4 as commonly quoted (psych and pingouin reproduce it).
    out = icc(ratings("shrout_fleiss_1979"), "target", "rater", "rating")
    assert out["estimate"].round(2).tolist() == [0.17, 0.29, 0.71, 0.44, 0.62, 0.91]
    assert out["form"].tolist() == [
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
    np.testing.assert_allclose(ours["estimate"], theirs["ICC"], rtol=1e-9)
    np.testing.assert_allclose(ours["F"], theirs["F"], rtol=1e-9)
    np.testing.assert_array_equal(ours["df1"], theirs["df1"])
    np.testing.assert_array_equal(ours["df2"], theirs["df2"])
    np.testing.assert_allclose(ours["p"], theirs["pval"], rtol=1e-6)
    ci = np.vstack(theirs["CI95"].to_numpy())  # rounded to 2 decimals by pingouin
    np.testing.assert_allclose(ours["ci_lower"], ci[:, 0], atol=0.005 + 1e-12)
    np.testing.assert_allclose(ours["ci_upper"], ci[:, 1], atol=0.005 + 1e-12)


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
    assert (wide["ci_lower"] < narrow["ci_lower"]).all()
    assert (wide["ci_upper"] > narrow["ci_upper"]).all()


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
    out = icc(data, "target", "rater", "rating", n_boot=0).set_index("type")
    assert (out["method"] == "REML").all()
    assert out[["F", "df1", "df2", "p", "ci_lower", "ci_upper"]].isna().all().all()
    # Harmonic mean of raters per target, computed here from the data independently.
    per_target = data.groupby("target").size()
    k = 1.0 / np.mean(1.0 / per_target)
    vt, vr, ve = ref["target"], ref["rater"], ref["residual"]
    expected = {
        "ICC1": one_way["icc_single"],
        "ICC2": ref["icc_agreement_single"],
        "ICC3": ref["icc_consistency_single"],
        "ICC1k": one_way["target"] / (one_way["target"] + one_way["residual"] / k),
        "ICC2k": vt / (vt + (vr + ve) / k),
        "ICC3k": vt / (vt + ve / k),
    }
    for form, value in expected.items():
        assert out.loc[form, "estimate"] == pytest.approx(value, abs=1e-5), form
    assert out.loc["ICC2k", "k"] == pytest.approx(k)
    assert out.loc["ICC2", "k"] == 1.0


def test_reml_on_complete_data_equals_anova():
    # On a complete design REML reproduces the ANOVA estimators (all non-negative here).
    data = ratings("observer_balanced")
    out = icc(data, "target", "rater", "rating", design="incomplete", n_boot=0)
    np.testing.assert_allclose(out["estimate"], psych_table("observer_balanced")["ICC"], atol=1e-5)


def test_bootstrap_intervals_close_to_exact_intervals():
    # Parametric-bootstrap percentile intervals on complete data against psych's exact
    # (F-based) intervals: the difference is Monte Carlo and method error, < 0.03 here.
    data = ratings("observer_balanced")
    out = icc(data, "target", "rater", "rating", design="incomplete", n_boot=400, seed=1)
    ref = psych_table("observer_balanced")
    np.testing.assert_allclose(out["ci_lower"], ref["lower bound"], atol=0.03)
    np.testing.assert_allclose(out["ci_upper"], ref["upper bound"], atol=0.03)
    assert (out["ci_lower"] < out["estimate"]).all() and (out["estimate"] < out["ci_upper"]).all()
    assert out["ci_method"].iloc[0].startswith("parametric bootstrap percentile (400")


def test_bootstrap_is_reproducible_by_seed():
    data = ratings("observer_unbalanced")
    a = icc_incomplete(data, "target", "rater", "rating", n_boot=60, seed=7)
    b = icc_incomplete(data, "target", "rater", "rating", n_boot=60, seed=7)
    c = icc_incomplete(data, "target", "rater", "rating", n_boot=60, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_lower"], c["ci_lower"])
    np.testing.assert_array_equal(a["estimate"], c["estimate"])


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
    lmm = pytest.importorskip("alliance.lmm")  # extra check; lme4 above is the reference
    data = ratings("observer_unbalanced")
    fit = lmm.fit("rating ~ 1 + (1|target) + (1|rater)", data, reml=True)
    v = fit.random_effects.set_index("group")["variance"]
    vc = crossed_variance_components(data, "target", "rater", "rating")
    assert vc.target == pytest.approx(v["target"], rel=1e-4)
    assert vc.rater == pytest.approx(v["rater"], rel=1e-4)
    assert vc.residual == pytest.approx(fit.sigma**2, rel=1e-4)


# --------------------------------------------------------------------------------------------
# REML engine internals: analytic gradient and the batched optimiser
# --------------------------------------------------------------------------------------------
def _engine(name: str, one_way: bool = False):
    d = rel._prepare(ratings(name), "target", "rater", "rating")
    return rel._CrossedREML(d.t, d.r, d.n_targets, d.n_raters, one_way), d


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
    fit = rel._components(engine, d.y)
    Y = rel._simulate(engine, fit, 15, np.random.default_rng(5))
    resp = engine.responses(Y)
    with rel._single_threaded_blas():
        theta, ok = engine.fit_batch(resp, fit.theta)
        singles = [engine.fit(resp.take([b]), fit.theta)[0] for b in range(len(ok))]
    assert ok.all()
    for b, single in enumerate(singles):
        np.testing.assert_allclose(theta[b] ** 2, single**2, rtol=1e-4, atol=1e-7)


def test_incomplete_route_is_fast_enough():
    data = ratings("observer_unbalanced")
    start = time.perf_counter()
    icc(data, "target", "rater", "rating", n_boot=200, seed=0)
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
    expected = [interpret_icc_ci(lo, hi) for lo, hi in zip(out["ci_lower"], out["ci_upper"])]
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
    with pytest.warns(UserWarning, match=r"2 target\(s\) in column 'target' rated by one rater"):
        out = icc(pd.concat([data, extra]), "target", "rater", "rating", n_boot=0)
    assert out["n_targets"].iloc[0] == data["target"].nunique()
    reference_out = icc(data, "target", "rater", "rating", n_boot=0)
    np.testing.assert_allclose(out["estimate"], reference_out["estimate"], rtol=1e-9)


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
    with pytest.raises(ValueError, match="column 'rating' must hold numbers; row 3 has 'high'"):
        icc(data, "target", "rater", "rating")


def test_missing_rating_dropped_with_warning():
    data = _sf().astype({"rating": float})
    data.loc[0, "rating"] = np.nan
    with pytest.warns(UserWarning, match="1 rating\\(s\\) missing in column 'rating'"):
        out = icc(data, "target", "rater", "rating", n_boot=0)
    assert out["method"].iloc[0] == "REML"  # no longer complete


def test_missing_id_refused():
    data = _sf().astype({"rater": object})
    data.loc[5, "rater"] = None
    with pytest.raises(ValueError, match="column 'rater' has a missing id in row 5"):
        icc(data, "target", "rater", "rating")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"design": "mixed"}, "design must be"), ({"ci_level": 95}, "ci_level"),
     ({"n_boot": -1}, "n_boot"), ({"n_boot": 2.5}, "n_boot")],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        icc(_sf(), "target", "rater", "rating", **kwargs)


def test_not_a_dataframe():
    with pytest.raises(ValueError, match="pandas DataFrame"):
        icc([[1, 2]], "target", "rater", "rating")


# --------------------------------------------------------------------------------------------
# observer_icc_table: the long scores table of docs/data_contract.md
# --------------------------------------------------------------------------------------------
def _observer_tables():
    """Scores and administrations built from the unbalanced reference ratings.

    Sessions S001..S120 become 30 clients × 4 sessions; scale ``bond`` is the reference
    rating, ``task`` the rating plus seeded noise. One extra session is coded by one coder
    only; client-rated rows and another observer instrument must be ignored.
    """
    data = ratings("observer_unbalanced")
    number = data["target"].str[1:].astype(int) - 1
    base = pd.DataFrame({
        "client": [f"C-{i // 4:012x}" for i in number],
        "therapist": "T-000000000001",
        "session": number % 4 + 1,
        "rater": "R-" + data["rater"],
    })
    noise = np.random.default_rng(2).normal(0, 0.3, len(data))
    bond = base.assign(scale="bond", score=data["rating"].to_numpy())
    task = base.assign(scale="task", score=data["rating"].to_numpy() + noise)
    single = pd.DataFrame({"client": ["C-0000000000ff"], "therapist": "T-000000000001",
                           "session": [1], "rater": ["R-R1"], "scale": ["bond"], "score": [4.0]})
    observer = pd.concat([bond, task, single], ignore_index=True).assign(
        instrument="wai_o", respondent="observer")
    other = bond.assign(instrument="cals_o", respondent="observer", score=1.0)
    client_rows = bond.assign(instrument="wai_o", respondent="client", rater=None, score=9.0)
    scores = pd.concat([observer, other, client_rows], ignore_index=True)
    scores[["items_answered", "prorated"]] = 12, False
    admin = (observer[["client", "therapist", "session", "rater"]].drop_duplicates()
             .assign(respondent="observer", table="observer", wai_o_1=1.0, wai_o_2=2.0))
    return admin, scores, data


def test_observer_icc_table_per_scale():
    admin, scores, data = _observer_tables()
    with pytest.warns(UserWarning, match="1 target\\(s\\).*rated by one rater only"):
        out = observer_icc_table(admin, scores, "wai_o", n_boot=30, seed=3)
    assert list(out.columns) == ["instrument", "scale", *ICC_COLUMNS, "sessions_coded",
                                 "sessions_multiple_coders"]
    assert out["scale"].tolist() == ["bond"] * 6 + ["task"] * 6
    bond = out[out["scale"] == "bond"].reset_index(drop=True)
    direct = icc(data, "target", "rater", "rating", n_boot=0)
    np.testing.assert_allclose(bond["estimate"], direct["estimate"], rtol=1e-7)
    assert (bond["n_targets"] == 120).all()
    task = out[out["scale"] == "task"]
    assert (task.loc[task["type"] == "ICC3", "estimate"] < bond.loc[2, "estimate"]).all()
    assert (out["sessions_coded"] == 121).all() and (out["sessions_multiple_coders"] == 120).all()
    text = out.astype(str).to_numpy().ravel()
    assert not any(s.startswith(("C-", "T-", "R-")) for s in text)  # no ids leak into results


def test_observer_icc_table_selected_scale():
    admin, scores, _ = _observer_tables()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = observer_icc_table(admin, scores, "wai_o", ["task"], n_boot=0)
    assert set(out["scale"]) == {"task"}


def test_observer_icc_table_errors():
    admin, scores, _ = _observer_tables()
    with pytest.raises(ValueError,
                       match="no observer-rated scores for instrument 'wai_x'.*'cals_o', 'wai_o'"):
        observer_icc_table(admin, scores, "wai_x")
    with pytest.raises(ValueError, match="scale\\(s\\) \\['goal'\\] not among"):
        observer_icc_table(admin, scores, "wai_o", ["goal"])
    no_rater = scores.copy()
    no_rater.loc[no_rater.index[0], "rater"] = None
    with pytest.raises(ValueError, match="1 observer score\\(s\\) of 'wai_o' have no rater"):
        observer_icc_table(admin, no_rater, "wai_o")
    with pytest.raises(ValueError, match="column\\(s\\) not in data: scale='scale'"):
        observer_icc_table(admin, scores.drop(columns="scale"), "wai_o")


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
    np.testing.assert_allclose(out["estimate"].to_numpy()[consistency], expected, rtol=0, atol=1e-6)


def test_one_rating_per_rater_is_not_taken_for_rater_only_variance():
    # every rater rated one target: within-rater spreads are 0 trivially, targets still differ
    data = pd.DataFrame({"target": np.repeat(np.arange(5), 2),
                         "rater": [f"R{i}" for i in range(10)],
                         "rating": [1.0, 1.5, 2, 2.5, 3, 3.5, 4, 3.5, 5, 4]})
    out = icc(data, "target", "rater", "rating", n_boot=0)
    assert np.isfinite(out["estimate"]).all()
