"""Tests for alliance.agreement: pairing, discrepancy, Bland–Altman, response surfaces.

References used here (none is the code under test):
- Bland & Altman (1986, Lancet 327:307-310), Table 1: peak expiratory flow rate of 17
  subjects, first reading with the Wright and the mini Wright meter. The paper reports a
  mean difference of -2.1, SD 38.8, r = 0.94, limits -79.7 to 75.5 (mean +- 2 SD), SE of a
  limit sqrt(3 s^2 / n) = 16.3, t(16) = 2.12, and the lower limit's 95% CI -114.3 to -45.1.
- hand computations with explicit numbers (in comments);
- scipy (paired t-test interval, Pearson r with its Fisher-z interval);
- statsmodels' own linear-contrast t tests, numpy least squares, a hand CR1 sandwich;
- recovery of known surfaces from simulated data;
- lme4 1.1-31 + lmerTest 3.1-3 (REML, Satterthwaite df of the contrasts a1..a5 by
  ``contest``): tests/data/response_surface/ (R script beside the fixture).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats

from alliance.agreement.dyads import (
    SURFACE_CONTRASTS,
    discrepancy_summary,
    pair_items,
    pair_ratings,
    per_dyad_table,
    principal_axis,
    response_surface,
    surface_parameters,
)

FIXTURES = Path(__file__).resolve().parent / "data" / "response_surface"

# ----------------------------------------------------------------------------------------
# Pairing
# ----------------------------------------------------------------------------------------
SCALES = ["goal", "task", "bond", "total"]


def score_rows(client, therapist, session, instrument, respondent, values):
    return [
        {"client": client, "therapist": therapist, "session": session, "instrument": instrument,
         "respondent": respondent, "rater": pd.NA, "scale": scale, "score": value,
         "items_answered": 4, "prorated": False}
        for scale, value in zip(SCALES, values)
    ]  # fmt: skip


def small_scores() -> pd.DataFrame:
    rows = []
    rows += score_rows("C-1", "T-1", 1, "wai_c", "client", [4.0, 3.5, 4.5, 48.0])
    rows += score_rows("C-1", "T-1", 1, "wai_t", "therapist", [3.0, 3.5, 4.0, 42.0])
    rows += score_rows("C-1", "T-1", 2, "wai_c", "client", [4.5, 4.0, 4.5, 52.0])
    rows += score_rows("C-1", "T-1", 2, "wai_t", "therapist", [4.0, 4.0, 3.5, 46.0])
    # C-2: session 1 rated by both; session 2 by the client only (not paired).
    rows += score_rows("C-2", "T-2", 1, "wai_c", "client", [2.0, 2.5, 3.0, 30.0])
    rows += score_rows("C-2", "T-2", 1, "wai_t", "therapist", [3.0, 3.0, 3.0, 36.0])
    rows += score_rows("C-2", "T-2", 2, "wai_c", "client", [2.5, 2.5, 3.0, 32.0])
    # Another instrument and an observer rating, to be ignored.
    rows += score_rows("C-2", "T-2", 1, "phq9", "client", [9.0, 9.0, 9.0, 9.0])
    rows += score_rows("C-2", "T-2", 1, "wai_c", "observer", [1.0, 1.0, 1.0, 1.0])
    return pd.DataFrame(rows)


def test_pair_ratings_gives_one_row_per_dyad_session():
    pairs = pair_ratings(small_scores(), "wai_c", "wai_t", SCALES)
    expected = pd.DataFrame(
        {
            "client": ["C-1", "C-1", "C-2"],
            "therapist": ["T-1", "T-1", "T-2"],
            "session": [1, 2, 1],
            "client_goal": [4.0, 4.5, 2.0],
            "therapist_goal": [3.0, 4.0, 3.0],
            "client_task": [3.5, 4.0, 2.5],
            "therapist_task": [3.5, 4.0, 3.0],
            "client_bond": [4.5, 4.5, 3.0],
            "therapist_bond": [4.0, 3.5, 3.0],
            "client_total": [48.0, 52.0, 30.0],
            "therapist_total": [42.0, 46.0, 36.0],
        }
    )
    pd.testing.assert_frame_equal(pairs, expected, check_dtype=False)


def test_pair_ratings_validation():
    scores = small_scores()
    with pytest.raises(ValueError, match=r"has no scale\(s\) \['agreement'\]"):
        pair_ratings(scores, "wai_c", "wai_t", ["goal", "agreement"])
    with pytest.raises(ValueError, match="no rows with instrument='wai_x'"):
        pair_ratings(scores, "wai_x", "wai_t")
    # the row, and the ids by their shape only
    with pytest.raises(ValueError, match=r"more than one row for the same client, therapist, session, scale \(row 0: "
                                         r"client text of 3 characters \(letters, digits, other characters\), therapist "
                                         r"text of 3 .*, session=1, scale='goal'\)") as duplicated:
        pair_ratings(pd.concat([scores, scores.iloc[[0]]]), "wai_c", "wai_t")
    assert "C-1" not in str(duplicated.value)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['respondent'\]"):
        pair_ratings(scores.drop(columns="respondent"), "wai_c", "wai_t")
    with pytest.raises(ValueError, match="non-empty sequence"):
        pair_ratings(scores, "wai_c", "wai_t", "goal")


def administrations() -> pd.DataFrame:
    rows = [
        # client, therapist, session, respondent, wai_1..wai_3, other instrument item
        ("C-1", "T-1", 1, "client", 4, 5, 3, 1),
        ("C-1", "T-1", 1, "therapist", 3, 5, 4, np.nan),
        ("C-1", "T-1", 2, "client", 5, 5, 4, 2),
        ("C-1", "T-1", 2, "therapist", 4, 4, 4, np.nan),
        ("C-2", "T-2", 1, "client", 2, 3, np.nan, 0),
        ("C-2", "T-2", 1, "therapist", 3, 3, 3, np.nan),
    ]
    return pd.DataFrame(
        rows,
        columns=["client", "therapist", "session", "respondent", "wai_1", "wai_2", "wai_3"]
        + ["phq9_1"],
    )


def test_pair_items_same_instrument_for_both_forms():
    pairs = pair_items(administrations(), "wai", "wai")
    assert list(pairs.columns) == [
        "client", "therapist", "session", "client_item1", "therapist_item1", "client_item2",
        "therapist_item2", "client_item3", "therapist_item3",
    ]  # fmt: skip
    assert pairs["client_item1"].tolist() == [4, 5, 2]
    assert pairs["therapist_item1"].tolist() == [3, 4, 3]
    summary = discrepancy_summary(pairs).set_index("scale")
    # item1 differences 1, 1, -1 -> mean 1/3; item3 has only 2 complete pairs (-1, 0).
    assert summary.loc["item1", "mean_diff"] == pytest.approx(1 / 3)
    assert summary.loc["item3", "n"] == 2
    assert summary.loc["item3", "mean_diff"] == pytest.approx(-0.5)


def test_pair_items_different_instruments_need_shared_items():
    admin = administrations()
    admin = admin.rename(columns={"wai_1": "waic_1", "wai_2": "waic_2", "wai_3": "waic_3"})
    admin[["wait_1", "wait_2", "wait_3"]] = admin[["waic_1", "waic_2", "waic_3"]]
    pairs = pair_items(admin, "waic", "wait")
    assert pairs["client_item2"].tolist() == [5, 5, 3]
    admin = admin.drop(columns="wait_3")
    with pytest.raises(ValueError, match="the forms do not share items"):
        pair_items(admin, "waic", "wait")
    with pytest.raises(ValueError, match="no item columns 'nope_<n>'"):
        pair_items(admin, "nope", "wait")


# ----------------------------------------------------------------------------------------
# Discrepancy and Bland–Altman
# ----------------------------------------------------------------------------------------
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def pefr_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {"client": range(17), "therapist": "T", "session": 1,
         "client_pefr": WRIGHT, "therapist_pefr": MINI}  # fmt: skip
    )


def test_bland_altman_1986_published_example():
    row = discrepancy_summary(pefr_pairs(), loa_z=2).iloc[0]
    # Published values are rounded to 0.1 and the paper's CI arithmetic used rounded
    # intermediates (16.3, 2.12), hence the tolerances.
    assert row["n"] == 17
    assert row["mean_diff"] == pytest.approx(-2.1, abs=0.05)
    assert row["sd_diff"] == pytest.approx(38.8, abs=0.05)
    assert row["r"] == pytest.approx(0.94, abs=0.005)
    assert row["loa_low"] == pytest.approx(-79.7, abs=0.1)
    assert row["loa_high"] == pytest.approx(75.5, abs=0.1)
    assert row["loa_se"] == pytest.approx(16.3, abs=0.05)
    assert row["loa_low_ci_low"] == pytest.approx(-114.3, abs=0.2)
    assert row["loa_low_ci_high"] == pytest.approx(-45.1, abs=0.2)
    # Same half-width around the upper limit: 75.5 +- 34.6.
    assert row["loa_high_ci_low"] == pytest.approx(75.5 - 34.6, abs=0.2)
    assert row["loa_high_ci_high"] == pytest.approx(75.5 + 34.6, abs=0.2)


def test_discrepancy_summary_against_scipy():
    row = discrepancy_summary(pefr_pairs()).iloc[0]
    ttest = stats.ttest_rel(WRIGHT, MINI)
    ci = ttest.confidence_interval(0.95)
    assert row["t"] == pytest.approx(ttest.statistic, rel=1e-12)
    assert row["p"] == pytest.approx(ttest.pvalue, rel=1e-10)
    assert row["mean_diff_ci_low"] == pytest.approx(ci.low, rel=1e-12)
    assert row["mean_diff_ci_high"] == pytest.approx(ci.high, rel=1e-12)
    pearson = stats.pearsonr(WRIGHT, MINI)
    r_ci = pearson.confidence_interval(0.95)
    assert row["r"] == pytest.approx(pearson.statistic, rel=1e-12)
    assert row["r_p"] == pytest.approx(pearson.pvalue, rel=1e-8)
    assert row["r_ci_low"] == pytest.approx(r_ci.low, rel=1e-10)
    assert row["r_ci_high"] == pytest.approx(r_ci.high, rel=1e-10)


def test_limits_of_agreement_by_hand():
    # client 4 5 6 7, therapist 3 5 5 8 -> differences 1 0 1 -1; mean 0.25;
    # deviations .75 -.25 .75 -1.25, SS = 2.75, s^2 = 2.75/3, s = 0.957427.
    pairs = pd.DataFrame(
        {"client": list("abcd"), "therapist": "T", "session": 1,
         "client_total": [4, 5, 6, 7], "therapist_total": [3, 5, 5, 8]}
    )  # fmt: skip
    s = math.sqrt(2.75 / 3)
    t3 = 3.182446305284263  # t(0.975, 3 df), from tables
    row = discrepancy_summary(pairs).iloc[0]
    assert row["mean_diff"] == pytest.approx(0.25)
    assert row["sd_diff"] == pytest.approx(s)
    assert row["mean_abs_diff"] == pytest.approx(0.75)
    assert row["loa_low"] == pytest.approx(0.25 - 1.96 * s)
    assert row["loa_high"] == pytest.approx(0.25 + 1.96 * s)
    se = math.sqrt(3 * s**2 / 4)
    assert row["loa_se"] == pytest.approx(se)
    assert row["loa_low_ci_low"] == pytest.approx(0.25 - 1.96 * s - t3 * se, rel=1e-9)
    delta = discrepancy_summary(pairs, limit_se="delta").iloc[0]
    assert delta["loa_se"] == pytest.approx(s * math.sqrt(1 / 4 + 1.96**2 / (2 * 3)))
    assert delta["loa_high_ci_high"] == pytest.approx(
        0.25 + 1.96 * s + t3 * s * math.sqrt(1 / 4 + 1.96**2 / 6), rel=1e-9
    )


def test_per_dyad_table_by_hand():
    pairs = pair_ratings(small_scores(), "wai_c", "wai_t", SCALES)
    table = per_dyad_table(pairs, ["goal", "total"]).set_index(["client", "scale"])
    # C-1 goal: client 4, 4.5; therapist 3, 4; differences 1, .5.
    c1 = table.loc[("C-1", "goal")]
    assert c1["n_sessions"] == 2
    assert c1["mean_client"] == pytest.approx(4.25)
    assert c1["mean_therapist"] == pytest.approx(3.5)
    assert c1["mean_diff"] == pytest.approx(0.75)
    assert c1["sd_diff"] == pytest.approx(math.sqrt(0.125))
    # C-2 total: one session, 30 vs 36.
    c2 = table.loc[("C-2", "total")]
    assert c2["n_sessions"] == 1 and c2["mean_diff"] == -6 and c2["mean_abs_diff"] == 6
    assert math.isnan(c2["sd_diff"])
    assert table.loc[("C-2", "goal"), "therapist"] == "T-2"


def test_discrepancy_summary_validation():
    pairs = pefr_pairs()
    with pytest.raises(ValueError, match="no client_<scale>/therapist_<scale>"):
        discrepancy_summary(pairs.drop(columns=["client_pefr"]))
    with pytest.raises(ValueError, match=r"missing column\(s\)"):
        discrepancy_summary(pairs, ["goal"])
    with pytest.raises(ValueError, match="level must be"):
        discrepancy_summary(pairs, level=95)
    with pytest.raises(ValueError, match="limit_se must be"):
        discrepancy_summary(pairs, limit_se="exact")
    with pytest.raises(ValueError, match="loa_z must be"):
        discrepancy_summary(pairs, loa_z=-1)
    with pytest.raises(ValueError, match="'client_pefr' must be numeric"):
        discrepancy_summary(pairs.assign(client_pefr=["x"] * 17))


def test_tiny_samples_give_nan_not_errors():
    pairs = pefr_pairs().iloc[:1]
    row = discrepancy_summary(pairs).iloc[0]
    assert row["n"] == 1 and math.isnan(row["sd_diff"]) and math.isnan(row["loa_low"])


# ----------------------------------------------------------------------------------------
# Response surface analysis
# ----------------------------------------------------------------------------------------
def test_surface_parameters_by_hand_on_exact_polynomial():
    # z = 2 + .5 x - .3 y + .2 x^2 - .4 xy + .1 y^2 (x, y centred at the midpoint 3 of a
    # 1-5 scale), observed without error on a 5 x 5 grid.
    # a1 = .5 - .3 = .2; a2 = .2 - .4 + .1 = -.1; a3 = .5 + .3 = .8; a4 = .2 + .4 + .1 = .7;
    # a5 = .2 - .1 = .1. Stationary point: denominator 4(.2)(.1) - .16 = -.08;
    # X0 = ((-.3)(-.4) - 2(.5)(.1)) / -.08 = -.25; Y0 = ((.5)(-.4) - 2(-.3)(.2)) / -.08 = 1;
    # p11 = (.1 - .2 + sqrt(.01 + .16)) / -.4 = -0.7807764; p10 = 1 - p11 * X0 = 0.8048059.
    grid = np.array([(x, y) for x in range(1, 6) for y in range(1, 6)], dtype=float)
    xc, yc = grid[:, 0] - 3, grid[:, 1] - 3
    z = 2 + 0.5 * xc - 0.3 * yc + 0.2 * xc**2 - 0.4 * xc * yc + 0.1 * yc**2
    data = pd.DataFrame({"x": grid[:, 0], "y": grid[:, 1], "z": z})
    result = response_surface(data, "x", "y", "z", centre=3)
    np.testing.assert_allclose(
        result.coefficients["estimate"], [2, 0.5, -0.3, 0.2, -0.4, 0.1], atol=1e-12
    )
    np.testing.assert_allclose(result.surface["estimate"], [0.2, -0.1, 0.8, 0.7, 0.1], atol=1e-12)
    p11 = (0.1 - 0.2 + math.sqrt(0.17)) / -0.4
    axis = result.principal_axis
    assert axis["X0"] == pytest.approx(-0.25)
    assert axis["Y0"] == pytest.approx(1.0)
    assert axis["p11"] == pytest.approx(p11)
    assert axis["p11"] == pytest.approx(-0.7807764, abs=1e-7)
    assert axis["p10"] == pytest.approx(1 - p11 * -0.25)
    assert axis["p10_raw"] == pytest.approx(3 + (1 - p11 * -0.25) - p11 * 3)
    assert result.centre == 3 and result.n == 25 and result.method == "ols"


# An explicit noisy worked example: 14 dyads, client (x) and therapist (y) alliance on a 1-7
# scale, outcome z.
WORKED = pd.DataFrame(
    {
        "x": [5, 6, 4, 7, 3, 5, 6, 2, 4, 5, 7, 3, 6, 4],
        "y": [4, 6, 5, 6, 4, 3, 7, 3, 4, 6, 5, 2, 5, 6],
        "z": [12.1, 15.3, 10.2, 14.8, 8.9, 9.7, 13.4, 7.2, 11.0, 12.6, 13.1, 7.5, 14.0, 9.8],
    }
)


def test_surface_parameters_equal_hand_computation_from_coefficients():
    x, y, z = (WORKED[c].to_numpy(float) for c in "xyz")
    xc, yc = x - 4, y - 4  # scale midpoint of 1-7
    design = np.column_stack([np.ones_like(xc), xc, yc, xc**2, xc * yc, yc**2])
    b, *_ = np.linalg.lstsq(design, z, rcond=None)
    result = response_surface(WORKED, "x", "y", "z", centre=4)
    np.testing.assert_allclose(result.coefficients["estimate"], b, rtol=1e-9)
    by_hand = [b[1] + b[2], b[3] + b[4] + b[5], b[1] - b[2], b[3] - b[4] + b[5], b[3] - b[5]]
    np.testing.assert_allclose(result.surface["estimate"], by_hand, rtol=1e-9)
    # SEs: var(a) = c' V c with V = s^2 (X'X)^-1, s^2 = RSS / (n - 6).
    resid = z - design @ b
    v = resid @ resid / (len(z) - 6) * np.linalg.inv(design.T @ design)
    for name, contrast in SURFACE_CONTRASTS.iterrows():
        c = contrast.to_numpy()
        assert result.surface.loc[name, "se"] == pytest.approx(math.sqrt(c @ v @ c), rel=1e-9)
    # ... and statsmodels' own contrast t tests give the same t, p and CI.
    ols = sm.OLS(z, design).fit()
    for name, contrast in SURFACE_CONTRASTS.iterrows():
        test = ols.t_test(contrast.to_numpy())
        row = result.surface.loc[name]
        assert row["t"] == pytest.approx(float(np.squeeze(test.tvalue)), rel=1e-9)
        assert row["p"] == pytest.approx(float(np.squeeze(test.pvalue)), rel=1e-8)
        low, high = test.conf_int(0.05)[0]
        assert row["ci_low"] == pytest.approx(low, rel=1e-9)
        assert row["ci_high"] == pytest.approx(high, rel=1e-9)
        assert row["df"] == 8


def test_centre_changes_linear_terms_not_the_surface():
    mid = response_surface(WORKED, "x", "y", "z", centre=4)
    grand = response_surface(WORKED, "x", "y", "z")
    assert grand.centre == pytest.approx(np.mean(np.r_[WORKED["x"], WORKED["y"]]))
    np.testing.assert_allclose(
        mid.coefficients["estimate"].iloc[3:], grand.coefficients["estimate"].iloc[3:], rtol=1e-9
    )
    xs, ys = np.meshgrid(np.linspace(1, 7, 5), np.linspace(1, 7, 5))
    np.testing.assert_allclose(mid.predict(xs, ys), grand.predict(xs, ys), rtol=1e-9)
    # Curvatures a2 and a4 do not depend on the centre.
    np.testing.assert_allclose(
        mid.surface.loc[["a2", "a4", "a5"], "estimate"],
        grand.surface.loc[["a2", "a4", "a5"], "estimate"],
        rtol=1e-9,
    )


def simulate_surface(seed, n, surface, n_therapists=None, therapist_sd=0.0, noise=0.5):
    rng = np.random.default_rng(seed)
    # Client and therapist ratings on a 1-5 scale, correlated, centred near the midpoint.
    x = 3 + 0.7 * rng.standard_normal(n)
    y = 3 + 0.4 * (x - 3) + 0.6 * rng.standard_normal(n)
    z = surface(x - 3, y - 3) + noise * rng.standard_normal(n)
    data = pd.DataFrame({"x": x, "y": y})
    if n_therapists:
        therapist = rng.integers(0, n_therapists, n)
        z = z + therapist_sd * rng.standard_normal(n_therapists)[therapist]
        data["therapist"] = [f"T-{t}" for t in therapist]
    data["z"] = z
    return data


SURFACES = {
    # congruence: z = -(x - y)^2 -> b3 = -1, b4 = 2, b5 = -1
    "congruence": (lambda x, y: -((x - y) ** 2), [0.0, 0.0, 0.0, -4.0, 0.0]),
    # level: z = 0.5 (x + y) -> a1 = 1
    "level": (lambda x, y: 0.5 * (x + y), [1.0, 0.0, 0.0, 0.0, 0.0]),
    # asymmetric linear: z = 0.8 x - 0.2 y -> a1 = .6, a3 = 1
    "asymmetric": (lambda x, y: 0.8 * x - 0.2 * y, [0.6, 0.0, 1.0, 0.0, 0.0]),
    # curved: z = x^2 + .5 xy -> a2 = 1.5, a4 = .5, a5 = 1
    "curved": (lambda x, y: x**2 + 0.5 * x * y, [0.0, 1.5, 0.0, 0.5, 1.0]),
}


@pytest.mark.parametrize("name", list(SURFACES))
def test_known_surfaces_are_recovered(name):
    surface, truth = SURFACES[name]
    result = response_surface(simulate_surface(1, 1500, surface), "x", "y", "z", centre=3)
    est, se = result.surface["estimate"].to_numpy(), result.surface["se"].to_numpy()
    # Within 4 SEs of the truth, and the SEs small enough (< 0.1) for that to bite.
    assert np.all(np.abs(est - truth) < 4 * se), (est, truth)
    assert np.all(se < 0.1)


def test_confidence_intervals_cover_at_nominal_rate():
    surface, truth = SURFACES["congruence"]
    hits = np.zeros(5)
    reps = 300
    for seed in range(reps):
        data = simulate_surface(100 + seed, 60, surface)
        s = response_surface(data, "x", "y", "z", centre=3).surface
        hits += (s["ci_low"].to_numpy() <= truth) & (truth <= s["ci_high"].to_numpy())
    # 95% intervals; with 300 replications the binomial SE of a rate is 0.0126, so
    # [0.92, 0.98] is about +-2.4 SE (the seeds are fixed, so the outcome is reproducible).
    assert np.all(hits / reps >= 0.92) and np.all(hits / reps <= 0.98), hits / reps


def test_cluster_robust_ses_equal_hand_sandwich():
    surface, _ = SURFACES["congruence"]
    data = simulate_surface(5, 400, surface, n_therapists=25, therapist_sd=0.8)
    result = response_surface(data, "x", "y", "z", therapist="therapist", centre=3)
    assert result.method == "cluster"
    xc, yc = data["x"].to_numpy() - 3, data["y"].to_numpy() - 3
    X = np.column_stack([np.ones_like(xc), xc, yc, xc**2, xc * yc, yc**2])
    z = data["z"].to_numpy()
    bread = np.linalg.inv(X.T @ X)
    b = bread @ X.T @ z
    e = z - X @ b
    meat = np.zeros((6, 6))
    groups = data["therapist"].to_numpy()
    for g in np.unique(groups):
        score = X[groups == g].T @ e[groups == g]
        meat += np.outer(score, score)
    n, k, G = len(z), 6, len(np.unique(groups))
    v = bread @ meat @ bread * G / (G - 1) * (n - 1) / (n - k)
    np.testing.assert_allclose(result.coefficients["se"], np.sqrt(np.diag(v)), rtol=1e-8)
    for name, contrast in SURFACE_CONTRASTS.iterrows():
        c = contrast.to_numpy()
        assert result.surface.loc[name, "se"] == pytest.approx(math.sqrt(c @ v @ c), rel=1e-8)
        assert result.surface.loc[name, "df"] == G - 1
    ols = response_surface(data, "x", "y", "z", centre=3)
    np.testing.assert_allclose(ols.surface["estimate"], result.surface["estimate"], rtol=1e-10)


def statsmodels_fit(formula: str, data: pd.DataFrame, reml: bool = True) -> SimpleNamespace:
    """Stand-in for alliance.lmm.fit: ``y ~ fixed + (1 | group)`` by statsmodels MixedLM."""
    fixed, group = formula.split("+ (1 |")
    group = group.strip(" )")
    result = smf.mixedlm(fixed.strip(), data, groups=data[group]).fit(reml=reml)
    names = list(result.fe_params.index)
    fe = pd.DataFrame({"estimate": result.fe_params, "se": result.bse_fe}, index=names)
    return SimpleNamespace(fixed_effects=fe, vcov=result.cov_params().loc[names, names])


def test_mixed_model_recovers_surface_with_therapist_intercepts():
    surface, truth = SURFACES["congruence"]
    data = simulate_surface(6, 800, surface, n_therapists=40, therapist_sd=1.0)
    result = response_surface(
        data, "x", "y", "z", therapist="therapist", centre=3, method="mixed", fit=statsmodels_fit
    )
    est, se = result.surface["estimate"].to_numpy(), result.surface["se"].to_numpy()
    assert np.all(np.abs(est - truth) < 4 * se) and np.all(se < 0.1)
    assert np.isinf(result.surface["df"]).all()  # the stand-in gives no df: normal inference
    v = result.vcov.to_numpy()
    for name, contrast in SURFACE_CONTRASTS.iterrows():
        c = contrast.to_numpy()
        assert result.surface.loc[name, "se"] == pytest.approx(math.sqrt(c @ v @ c), rel=1e-10)
    # Therapist intercepts leave the residual: OLS's residual variance, and so its SE of a
    # within-therapist term, is larger than the random-intercept model's.
    ols = response_surface(data, "x", "y", "z", centre=3)
    assert result.coefficients.loc["b4", "se"] < ols.coefficients.loc["b4", "se"]


def test_mixed_model_with_project_engine_matches_statsmodels():
    surface, _ = SURFACES["congruence"]
    data = simulate_surface(7, 600, surface, n_therapists=30, therapist_sd=1.0)
    ours = response_surface(data, "x", "y", "z", therapist="therapist", centre=3, method="mixed")
    ref = response_surface(
        data, "x", "y", "z", therapist="therapist", centre=3, method="mixed", fit=statsmodels_fit
    )
    np.testing.assert_allclose(
        ours.surface["estimate"], ref.surface["estimate"], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(ours.surface["se"], ref.surface["se"], rtol=1e-2)
    assert np.all(np.isfinite(ours.surface["df"]))


def lmertest_reference() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = pd.read_csv(FIXTURES / "surface_data.csv")
    reference = pd.read_csv(FIXTURES / "lmertest_reference.csv").set_index("parameter")
    return data, reference


def test_mixed_surface_matches_lme4_and_lmertest_contrasts():
    # post ~ x + y + x^2 + xy + y^2 + baseline + (1 | therapist), x and y centred at their
    # pooled grand mean, baseline at its mean; a1..a5 by lmerTest::contest (Satterthwaite).
    # Tolerances: estimates within 1e-6 SE (lme4's and our optimiser stop at slightly
    # different theta; measured 5e-8 SE), SEs 1e-6 relative (measured 2e-8), df 1e-4
    # relative (measured 8e-5: numerical derivatives at those theta), p 5e-3 relative.
    data, reference = lmertest_reference()
    result = response_surface(data, "x", "y", "post", therapist="therapist", method="mixed",
                              covariates=["baseline"])
    assert result.centre == pytest.approx(reference["centre"].iloc[0], rel=1e-12)
    assert result.centre == pytest.approx(np.mean(np.r_[data["x"], data["y"]]), rel=1e-12)
    assert result.covariate_means["baseline"] == pytest.approx(data["baseline"].mean())
    ours = pd.concat([result.coefficients, result.surface])
    expected = reference.loc[ours.index]
    assert list(ours.index) == ["b0", "b1", "b2", "b3", "b4", "b5", "baseline", "a1", "a2", "a3", "a4", "a5"]
    np.testing.assert_allclose(ours["estimate"], expected["estimate"], rtol=0, atol=1e-6 * expected["se"].min())
    np.testing.assert_allclose(ours["se"], expected["se"], rtol=1e-6)
    np.testing.assert_allclose(ours["df"], expected["df"], rtol=1e-4)
    np.testing.assert_allclose(ours["t"], expected["t"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["p"], expected["p"], rtol=5e-3)
    # The df of each a_k is its own (contrast) df, not the smallest df of the b's it involves.
    assert result.surface.loc["a2", "df"] > result.coefficients.loc[["b3", "b4", "b5"], "df"].max()
    assert "reparameterised" in result.df_method


def test_covariate_is_a_centred_linear_term():
    data, _ = lmertest_reference()
    result = response_surface(data, "x", "y", "post", covariates=["baseline"])
    c = np.mean(np.r_[data["x"], data["y"]])
    xc, yc = data["x"] - c, data["y"] - c
    design = np.column_stack([np.ones(len(data)), xc, yc, xc**2, xc * yc, yc**2,
                              data["baseline"] - data["baseline"].mean()])
    b, *_ = np.linalg.lstsq(design, data["post"].to_numpy(), rcond=None)
    np.testing.assert_allclose(result.coefficients["estimate"], b, rtol=1e-9)
    assert result.coefficients.index.tolist()[-1] == "baseline"
    assert (result.coefficients["df"] == len(data) - 7).all() and (result.surface["df"] == len(data) - 7).all()
    # The surface is drawn at the covariate's mean: predict() is b0..b5 alone.
    assert result.predict(c, c) == pytest.approx(b[0])
    with pytest.raises(ValueError, match="covariates must be distinct columns"):
        response_surface(data, "x", "y", "post", covariates=["x"])
    with pytest.raises(ValueError, match="sequence of column names"):
        response_surface(data, "x", "y", "post", covariates="baseline")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['age'\]"):
        response_surface(data, "x", "y", "post", covariates=["age"])


def test_surface_parameters_take_one_df_per_parameter():
    b = pd.Series([1.0, 0.5, -0.3, 0.2, -0.4, 0.1], index=[f"b{k}" for k in range(6)])
    v = pd.DataFrame(np.diag([0.04, 0.01, 0.02, 0.001, 0.002, 0.003]), index=b.index, columns=b.index)
    df = pd.Series([10.0, 20.0, 30.0, 40.0, 50.0], index=["a1", "a2", "a3", "a4", "a5"])
    table = surface_parameters(b, v, df)
    np.testing.assert_array_equal(table["df"], df.to_numpy())
    # a1 = .2 with var .01 + .02: t = .2 / sqrt(.03), p from t(10)
    assert table.loc["a1", "p"] == pytest.approx(2 * stats.t.sf(0.2 / math.sqrt(0.03), 10))
    with pytest.raises(ValueError, match="missing \\['a5'\\]"):
        surface_parameters(b, v, df.drop("a5"))


def test_missing_rows_are_dropped_and_counted():
    data = WORKED.copy()
    data.loc[[0, 3], "z"] = np.nan
    result = response_surface(data, "x", "y", "z", centre=4)
    assert result.n == 12 and result.n_dropped == 2
    direct = response_surface(WORKED.drop(index=[0, 3]), "x", "y", "z", centre=4)
    np.testing.assert_allclose(result.surface["estimate"], direct.surface["estimate"])


def test_principal_axis_undefined_without_interaction():
    axis = principal_axis(pd.Series({"b1": 1.0, "b2": 1.0, "b3": -1.0, "b4": 0.0, "b5": -1.0}))
    assert math.isnan(axis["p11"])
    assert axis["X0"] == pytest.approx(0.5) and axis["Y0"] == pytest.approx(0.5)


def test_response_surface_validation():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['w'\]"):
        response_surface(WORKED, "x", "y", "w")
    with pytest.raises(ValueError, match="more than 6 complete rows"):
        response_surface(WORKED.iloc[:6], "x", "y", "z")
    with pytest.raises(ValueError, match="needs the therapist"):
        response_surface(WORKED, "x", "y", "z", method="cluster")
    with pytest.raises(ValueError, match="method must be"):
        response_surface(WORKED, "x", "y", "z", method="gls")
    with pytest.raises(ValueError, match="centre must be"):
        response_surface(WORKED, "x", "y", "z", centre="midpoint")
    with pytest.raises(ValueError, match="level must be"):
        response_surface(WORKED, "x", "y", "z", level=1.5)
    with pytest.raises(ValueError, match="'y' needs at least 3 distinct values"):
        response_surface(WORKED.assign(y=[1, 2] * 7), "x", "y", "z")
    with pytest.raises(ValueError, match="'x' must be numeric"):
        response_surface(WORKED.assign(x=["a"] * 14), "x", "y", "z")
    with pytest.raises(ValueError, match="at least 2 clusters"):
        response_surface(WORKED.assign(t="T-1"), "x", "y", "z", therapist="t")


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def test_bland_altman_figure_draws_summary_lines():
    from alliance.agreement.figures import plot_bland_altman

    fig = plot_bland_altman(pefr_pairs(), "pefr", loa_z=2)
    ax = fig.axes[0]
    summary = discrepancy_summary(pefr_pairs(), loa_z=2).iloc[0]
    levels = sorted({round(float(ln.get_ydata()[0]), 9) for ln in ax.get_lines()})
    expected = sorted(round(float(summary[k]), 9) for k in ("mean_diff", "loa_low", "loa_high"))
    assert levels == sorted([0.0, *expected])
    assert len(ax.collections[0].get_offsets()) == 17


def test_a_dense_bland_altman_cloud_is_rasterised_with_a_fixed_legend():
    """Above report.style.RASTER_POINTS dyad-sessions the points are one raster layer in the PDF
    and the legend is not placed by matplotlib's search over every point; below, vectors and
    'best' (the example's figures are unchanged)."""
    from alliance.agreement.figures import plot_bland_altman
    from alliance.report.style import RASTER_POINTS

    rng = np.random.default_rng(5)
    for n, dense in ((RASTER_POINTS, False), (RASTER_POINTS + 1, True)):
        pairs = pd.DataFrame({"client": range(n), "therapist": "T", "session": 1,
                              "client_wai": rng.normal(5, 1, n), "therapist_wai": rng.normal(5, 1, n)})
        fig = plot_bland_altman(pairs, "wai")
        ax = fig.axes[0]
        assert ax.collections[0].get_rasterized() is dense
        assert ax.get_legend()._loc == (2 if dense else 0)  # 'upper left' : 'best'


def test_response_surface_figure_follows_the_fit():
    from alliance.agreement.figures import plot_response_surface

    result = response_surface(WORKED, "x", "y", "z", centre=4)
    points = WORKED[["x", "y"]].to_numpy(float)
    fig = plot_response_surface(result, points, tests=["a1 = 1", "a2 = 2"])
    ax3d, contour = fig.axes[0], fig.axes[1]
    congruence = ax3d.get_lines()[0]
    xs, ys, zs = congruence.get_data_3d()
    np.testing.assert_allclose(xs, ys)
    np.testing.assert_allclose(zs, result.predict(xs, ys))
    incongruence = ax3d.get_lines()[1]
    xs, ys, _ = incongruence.get_data_3d()
    np.testing.assert_allclose(xs - 4, -(ys - 4))
    # the data: projected on the floor of the 3-D panel, and over the contours
    floor = ax3d.collections[0]
    np.testing.assert_allclose(np.column_stack(floor._offsets3d[:2]), points)
    assert np.ptp(floor._offsets3d[2]) == 0 and floor._offsets3d[2][0] < result.predict(points[:, 0], points[:, 1]).min()
    scattered = [c for c in contour.collections if len(c.get_offsets()) == len(points)]
    np.testing.assert_allclose(scattered[0].get_offsets(), points)
    lines = contour.get_lines()
    np.testing.assert_allclose(lines[0].get_xdata(), lines[0].get_ydata())
    np.testing.assert_allclose(lines[1].get_xdata() - 4, -(lines[1].get_ydata() - 4))
    assert fig.get_supxlabel() == "a1 = 1\na2 = 2"
    with pytest.raises(ValueError, match="points must be an"):
        plot_response_surface(result, points[:, 0])
