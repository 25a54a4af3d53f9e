"""Tests of alliance.models against lme4 references, hand-worked examples and simulations.

References and tolerances
-------------------------
* lme4 1.1-31 / lmerTest 3.1-3 fits in tests/data/models/ (made by ref_lme4.R there):
  fixed effects 1e-4 relative, SEs, Satterthwaite df and variance components 1e-3 relative
  (variances near 0 also 1e-4 absolute), objective 1e-6 relative. Derived client data 1e-9.
* statsmodels cross-check (engine="statsmodels", two-level models only): fixed effects 1e-4
  relative; SEs 1e-2 relative (MixedLM's cov_params differ from lme4's sigma² (X'V⁻¹X)⁻¹ in
  the third digit for random-slope models); variances 1e-3.
* Formulas (R², r from t, therapist-mean decomposition, Wald contrast, lags, detrending):
  hand-worked numbers written in the tests, to 1e-12.
* R² against a simulation with known variance components: 0.02 absolute.
* ML fit statistics (:func:`alliance.models.ml_criteria`): lme4's logLik/AIC/BIC of
  ``refitML(m)`` in tests/data/tables_r/ml_refit.json (ref_ml_refit.R there), 1e-6 relative
  (measured: below 2e-14).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance import models as M
from alliance.models import steps as W
from alliance.models.summaries import _therapist_share

DATA = Path(__file__).parent / "data" / "lme4"  # one folder per study, lme4 fits from ref_lme4.R
STUDIES = ("small", "boundary")
OUTCOME = ("phq9", "total")
ALLIANCE = ("wai_sr", "client", "total")


# --------------------------------------------------------------------------------------
# Fixtures: the reference sessions as a long scores table (docs/data_contract.md)
# --------------------------------------------------------------------------------------
def scores_from_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    """sessions.csv (one row per session, alliance and symptoms) -> the long scores table."""
    base = {"client": sessions["client_id"], "therapist": sessions["therapist_id"],
            "session": sessions["session"], "rater": None, "items_answered": 12, "prorated": False}
    alliance = pd.DataFrame({**base, "instrument": "wai_sr", "respondent": "client", "scale": "total",
                             "score": sessions["alliance"]})
    symptoms = pd.DataFrame({**base, "instrument": "phq9", "respondent": "client", "scale": "total",
                             "score": sessions["symptoms"]})
    return pd.concat([alliance, symptoms], ignore_index=True)


@pytest.fixture(scope="module", params=STUDIES)
def study(request):
    folder = DATA / request.param
    sessions = pd.read_csv(folder / "sessions.csv")
    return SimpleNamespace(
        name=request.param,
        sessions=sessions,
        scores=scores_from_sessions(sessions),
        derived=pd.read_csv(folder / "clients_derived.csv"),
        ref=json.loads((folder / "lme4_reference.json").read_text()),
        truth=json.loads((folder / "truth.json").read_text()),
    )


@pytest.fixture(scope="module")
def small():
    folder = DATA / "small"
    sessions = pd.read_csv(folder / "sessions.csv")
    return SimpleNamespace(scores=scores_from_sessions(sessions),
                           ref=json.loads((folder / "lme4_reference.json").read_text()),
                           truth=json.loads((folder / "truth.json").read_text()))


REF_NAMES = {"client_id": "client", "therapist_id": "therapist"}


@pytest.fixture(scope="module")
def three_level_small(small):
    """The three-level REML fit of the small reference study through this module's data path."""
    sessions = M.session_level_data(small.scores, OUTCOME, ALLIANCE)
    result, _, data = M.fit_within_between(sessions, lagged=False)
    return SimpleNamespace(sessions=sessions, result=result, data=data)


def assert_matches_lme4(result, ref, se_rtol=1e-3, fe_rtol=1e-4, var_rtol=1e-3, check_df=True):
    """Compare a fit with an lme4 reference entry, objective first (README of the reference)."""
    assert result.objective <= ref["objective"] * (1 + 1e-6)
    assert result.objective == pytest.approx(ref["objective"], rel=1e-6)
    for term, row in ref["fixed"].items():
        fe = result.fixed_effects.loc[term]
        assert fe["estimate"] == pytest.approx(row["Estimate"], rel=fe_rtol), term
        assert fe["se"] == pytest.approx(row["Std. Error"], rel=se_rtol), term
        if check_df:
            assert fe["df"] == pytest.approx(row["df"], rel=1e-3), term
    assert result.sigma == pytest.approx(ref["sigma"], rel=var_rtol)
    got = result.random_effects.assign(group=result.random_effects["group"].replace(REF_NAMES))
    scale = ref["sigma"] ** 2
    for vc in ref["varcorr"]:
        grp = REF_NAMES.get(vc["grp"], vc["grp"])
        rows = got.loc[got["group"] == grp]
        if vc["var1"] is not None:
            rows = rows.loc[rows["term1"] == vc["var1"]]
        rows = rows.loc[rows["term2"].isna()] if vc["var2"] is None else rows.loc[rows["term2"] == vc["var2"]]
        assert len(rows) == 1, vc
        assert rows["variance"].iloc[0] == pytest.approx(vc["vcov"], rel=var_rtol, abs=1e-4 * scale), vc
    assert result.nobs == ref["nobs"]
    assert result.ngroups == {REF_NAMES[k]: v for k, v in ref["ngrps"].items()}
    assert result.singular == ref["singular"]


# --------------------------------------------------------------------------------------
# Client-level data and model (1) against lme4
# --------------------------------------------------------------------------------------
def test_client_level_data_reproduces_reference(study):
    data = M.client_level_data(study.scores, OUTCOME, ALLIANCE, early={"method": "mean_1_to_k", "k": 3})
    ref = study.derived.rename(columns=REF_NAMES).sort_values("client").reset_index(drop=True)
    assert data["client"].tolist() == ref["client"].tolist()
    assert data["therapist"].tolist() == ref["therapist"].tolist()
    for column in ("early_alliance", "baseline", "post"):
        np.testing.assert_allclose(data[column], ref[column], rtol=0, atol=1e-9, err_msg=column)
    assert (data["n_early"] == 3).all() and (data["baseline_session"] == 1).all()


@pytest.mark.parametrize("reml", [True, False])
def test_client_level_model_reproduces_lme4(study, reml):
    data = M.client_level_data(study.scores, OUTCOME, ALLIANCE, early={"method": "mean_1_to_k", "k": 3})
    result, formula = M.fit_early_outcome(data, "post", reml=reml)
    assert formula == "post ~ early_alliance + baseline + (1 | therapist)"
    key = "early_alliance_outcome" + ("" if reml else "_ml")
    assert_matches_lme4(result, study.ref[key])


@pytest.mark.parametrize("reml", [True, False])
def test_three_level_session_model_reproduces_lme4(study, reml):
    sessions = M.session_level_data(study.scores, OUTCOME, ALLIANCE)
    result, formula, data = M.fit_within_between(sessions, lagged=False, reml=reml)
    assert formula == "symptoms ~ session + a_cw + a_cm + (1 + session | client) + (1 | therapist)"
    assert_matches_lme4(result, study.ref["three_level" + ("" if reml else "_ml")])


def test_centring_is_the_references(small):
    """a_cm = client mean - mean of client means; a_cw = alliance - client mean (ref_lme4.R)."""
    sessions = M.session_level_data(small.scores, OUTCOME, ALLIANCE)
    data = M.within_between_data(sessions)
    client_mean = sessions.groupby("client")["alliance"].transform("mean")
    np.testing.assert_allclose(data["a_cw"], sessions["alliance"] - client_mean, atol=1e-12)
    np.testing.assert_allclose(data["a_cm"], client_mean - sessions.groupby("client")["alliance"].mean().mean(),
                               atol=1e-12)


def test_statsmodels_cross_check_two_level(small):
    """engine="statsmodels" on what MixedLM can express: one grouping factor."""
    sessions = M.session_level_data(small.scores, OUTCOME, ALLIANCE)
    random = "(1 + session | client)"
    result, _, _ = M.fit_within_between(sessions, lagged=False, random=random, engine="statsmodels")
    assert result.engine == "statsmodels"
    assert_matches_lme4(result, small.ref["two_level_ri_rs"], se_rtol=1e-2, check_df=False)


def test_statsmodels_cross_check_client_level(small):
    clients = M.client_level_data(small.scores, OUTCOME, ALLIANCE)
    result, _ = M.fit_early_outcome(clients, engine="statsmodels")
    assert_matches_lme4(result, small.ref["early_alliance_outcome"], se_rtol=1e-2, check_df=False)


def test_session_model_cis_cover_the_simulation_truth(small, three_level_small):
    fe = three_level_small.result.fixed_effects
    for term, truth in (("a_cw", small.truth["b_within"]), ("a_cm", small.truth["b_between"]),
                        ("session", small.truth["b_time"])):
        assert fe.loc[term, "ci_low"] <= truth <= fe.loc[term, "ci_high"], term


# --------------------------------------------------------------------------------------
# Model summary on the reference fits
# --------------------------------------------------------------------------------------
def test_summary_of_three_level_model(small, three_level_small, tmp_path):
    sessions, result, data = three_level_small.sessions, three_level_small.result, three_level_small.data
    summary = M.model_summary(result, data, alliance_terms=["a_cw", "a_cm"])
    # Johnson (2014) for the client term: tau00 + 2 tau01 mean(t) + tau11 mean(t²), written out.
    ref = {(v["grp"], v["var1"], v["var2"]): v["vcov"] for v in small.ref["three_level"]["varcorr"]}
    t = sessions["session"].to_numpy(float)
    client_var = (ref[("client_id", "(Intercept)", None)] + 2 * ref[("client_id", "(Intercept)", "session")] * t.mean()
                  + ref[("client_id", "session", None)] * (t ** 2).mean())
    therapist_var = ref[("therapist_id", "(Intercept)", None)]
    beta = np.array([small.ref["three_level"]["fixed"][k]["Estimate"] for k in ("(Intercept)", "session", "a_cw", "a_cm")])
    xb = np.column_stack([np.ones(len(data)), data["session"], data["a_cw"], data["a_cm"]]) @ beta
    var_f, var_e = xb.var(ddof=1), small.ref["three_level"]["sigma"] ** 2
    total = var_f + client_var + therapist_var + var_e
    fit = summary.fit
    assert fit["var_random_by_group"]["client"] == pytest.approx(client_var, rel=2e-3)
    assert fit["r2_marginal"] == pytest.approx(var_f / total, rel=2e-3)
    assert fit["r2_conditional"] == pytest.approx((var_f + client_var + therapist_var) / total, rel=2e-3)
    assert fit["therapist_share"] == pytest.approx(therapist_var / (client_var + therapist_var + var_e), rel=2e-3)
    # Standardised: a_cm varies between clients -> SD over clients; a_cw within -> SD over rows.
    std = summary.standardisation.set_index("term")
    assert std.loc["a_cm", "sd_x_level"] == "client" and std.loc["a_cw", "sd_x_level"] == "observation"
    sd_y = data["symptoms"].std(ddof=1)
    b = result.fixed_effects["estimate"]
    assert std.loc["a_cm", "std_estimate"] == pytest.approx(b["a_cm"] * data.groupby("client")["a_cm"].first().std() / sd_y, rel=1e-12)
    assert std.loc["a_cw", "std_estimate"] == pytest.approx(b["a_cw"] * data["a_cw"].std() / sd_y, rel=1e-12)
    # Result contract files.
    paths = W.write_model_outputs(summary, tmp_path / "three_level")
    fixed = pd.read_csv(paths["fixed_effects.csv"])
    assert list(fixed.columns) == ["term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high", "std_estimate"]
    assert list(pd.read_csv(paths["random_effects.csv"]).columns) == ["group", "term1", "term2", "variance", "sd", "corr"]
    info = json.loads(paths["fit.json"].read_text())
    for key in ("engine", "formula", "reml", "objective", "loglik", "aic", "bic", "nobs", "ngroups", "converged",
                "singular", "warnings", "r2_marginal", "r2_conditional", "therapist_share"):
        assert key in info, key
    assert info["ngroups"] == {"client": 480, "therapist": 40}
    assert [r["term"] for r in info["r_equivalents"]] == ["a_cw", "a_cm"]


ML_REFIT = json.loads((Path(__file__).parent / "data" / "tables_r" / "ml_refit.json").read_text())


@pytest.mark.parametrize("name", ["sleepstudy_days", "sleepstudy_intercept", "sleepstudy_weighted"])
def test_ml_criteria_equal_lme4_refitml(name):
    """loglik_ml, aic_ml and bic_ml are lme4's logLik/AIC/BIC(refitML(m)) of a REML fit (two
    models with different fixed effects on the same rows, one with prior weights); the REML
    fit's own aic/bic stay lme4's AIC/BIC of the REML fit."""
    from alliance.lmm import fit

    ref = ML_REFIT[name]
    data = pd.read_csv(Path(__file__).parent / "data" / "lmm_r" / "sleepstudy.csv", dtype={"Subject": str})
    result = fit(ref["formula"], data, weights=ref["weights"])
    assert result.aic == pytest.approx(ref["aic_reml"], rel=1e-6) and result.bic == pytest.approx(ref["bic_reml"], rel=1e-6)
    ml = M.ml_criteria(result)
    for key in ("loglik_ml", "aic_ml", "bic_ml"):
        assert ml[key] == pytest.approx(ref[key], rel=1e-6), key
    # lme4's df: fixed effects + variance-covariance parameters + 1 residual; BIC with log(nobs)
    assert ml["aic_ml"] - (-2 * ml["loglik_ml"]) == pytest.approx(2 * ref["df"], rel=1e-12)
    assert ml["bic_ml"] - (-2 * ml["loglik_ml"]) == pytest.approx(ref["df"] * math.log(ref["nobs"]), rel=1e-12)
    assert "refitML" in ml["ml_refit"] and ml["ml_warnings"] == []


def test_ml_criteria_of_other_engines_and_ml_fits():
    """A statsmodels fit is refitted by ML with the alliance engine (lme4's values); an ML fit
    gives its own values; a stand-in result without data gives None with the reason."""
    from alliance.lmm import fit

    ref = ML_REFIT["sleepstudy_days"]
    data = pd.read_csv(Path(__file__).parent / "data" / "lmm_r" / "sleepstudy.csv", dtype={"Subject": str})
    via_statsmodels = M.ml_criteria(fit(ref["formula"], data, engine="statsmodels"))
    assert via_statsmodels["aic_ml"] == pytest.approx(ref["aic_ml"], rel=1e-6)
    ml_fit = fit(ref["formula"], data, reml=False)
    own = M.ml_criteria(ml_fit)
    assert own["aic_ml"] == ml_fit.aic and own["bic_ml"] == ml_fit.bic and own["ml_refit"] == "the model's own ML fit"
    assert own["loglik_ml"] == pytest.approx(ref["loglik_ml"], rel=1e-6)
    missing = M.ml_criteria(SimpleNamespace(reml=True, aic=1.0))
    assert missing["aic_ml"] is missing["bic_ml"] is missing["loglik_ml"] is None
    assert missing["ml_refit"].startswith("not available")


def test_summary_of_boundary_fit_keeps_singular_status():
    sessions = pd.read_csv(DATA / "boundary" / "sessions.csv")
    clients = M.client_level_data(scores_from_sessions(sessions), OUTCOME, ALLIANCE)
    result, _ = M.fit_early_outcome(clients)
    summary = M.model_summary(result, clients, alliance_terms=["early_alliance"])
    assert summary.fit["singular"] is True
    assert any("singular" in w for w in summary.fit["warnings"])
    assert summary.fit["therapist_share"] == pytest.approx(0.0, abs=1e-6)
    assert summary.fit["r2_marginal"] == pytest.approx(summary.fit["r2_conditional"], abs=1e-6)


def test_summary_rejects_data_that_are_not_the_fitted_rows(small):
    clients = M.client_level_data(small.scores, OUTCOME, ALLIANCE)
    result, _ = M.fit_early_outcome(clients)
    with pytest.raises(ValueError, match="fitted to 480"):
        M.model_summary(result, clients.iloc[:100])


# --------------------------------------------------------------------------------------
# R²: hand-worked and simulated
# --------------------------------------------------------------------------------------
def fake_result(data, beta, random_effects, sigma, formula):
    """A stand-in fit result with known parameters (the engine's result API)."""
    terms = list(beta)

    def predict(rows, re_form=None):
        assert re_form == "~0"
        x = np.column_stack([np.ones(len(rows)) if t == "(Intercept)" else rows[t].to_numpy(float) for t in terms])
        return x @ np.array([beta[t] for t in terms])

    fixed = pd.DataFrame({"estimate": list(beta.values())}, index=terms)
    return SimpleNamespace(formula=formula, nobs=len(data), predict=predict, fixed_effects=fixed,
                           random_effects=pd.DataFrame(random_effects, columns=["group", "term1", "term2", "variance", "sd", "corr"]),
                           sigma=sigma)


def test_nakagawa_johnson_r2_hand_worked():
    """x = 0..3, beta = (1, 2): X beta = 1, 3, 5, 7, variance (n - 1) 20/3.
    Client term (1 + x | g), Sigma = [[1, .5], [.5, .25]]: z' Sigma z = 1 + x + x²/4 =
    1, 2.25, 4, 6.25, mean 3.375 (Johnson 2014). Therapist intercept .6. Residual 2.
    Total = 20/3 + 3.975 + 2 = 151.7/12: R²m = 80/151.7, R²c = 127.7/151.7,
    therapist share = .6 / 5.975."""
    data = pd.DataFrame({"y": [0.0, 1, 2, 3], "x": [0.0, 1, 2, 3], "g": list("aabb"), "therapist": list("TTTT")})
    re = [("g", "(Intercept)", None, 1.0, 1.0, np.nan), ("g", "x", None, 0.25, 0.5, np.nan),
          ("g", "(Intercept)", "x", 0.5, np.nan, 1.0), ("therapist", "(Intercept)", None, 0.6, 0.6 ** 0.5, np.nan),
          ("Residual", None, None, 2.0, 2 ** 0.5, np.nan)]
    res = fake_result(data, {"(Intercept)": 1.0, "x": 2.0}, re, 2 ** 0.5, "y ~ x + (1 + x | g) + (1 | therapist)")
    comp = M.variance_components(res, data)
    assert comp["var_fixed"] == pytest.approx(20 / 3, rel=1e-12)
    assert comp["by_group"] == pytest.approx({"g": 3.375, "therapist": 0.6}, rel=1e-12)
    r2 = M.nakagawa_r2(comp)
    assert r2["r2_marginal"] == pytest.approx(80 / 151.7, rel=1e-12)
    assert r2["r2_conditional"] == pytest.approx(127.7 / 151.7, rel=1e-12)
    assert _therapist_share(comp, "therapist") == pytest.approx(0.6 / 5.975, rel=1e-12)


def test_r2_recovers_known_variance_components():
    """y = 2 + 0.5 x - 0.3 t + u0 + u1 t + v_therapist + e with x ~ N(0, 1), t = 0..9:
    var_f = .25 + .09 * var(t) = .25 + .09 * 8.25; client term tau00 = 1, tau11 = .04,
    tau01 = .06, so mean z'Sigma z = 1 + 2 * .06 * 4.5 + .04 * 28.5 = 2.68; therapist .5;
    residual 1.5."""
    rng = np.random.default_rng(20261129)
    n_t, n_c, n_s = 30, 10, 10
    therapist = np.repeat(np.arange(n_t), n_c * n_s)
    client = np.repeat(np.arange(n_t * n_c), n_s)
    t = np.tile(np.arange(n_s, dtype=float), n_t * n_c)
    cov = np.array([[1.0, 0.06], [0.06, 0.04]])
    u = rng.multivariate_normal([0, 0], cov, size=n_t * n_c)
    v = rng.normal(0, 0.5 ** 0.5, n_t)
    x = rng.normal(size=len(t))
    y = 2 + 0.5 * x - 0.3 * t + u[client, 0] + u[client, 1] * t + v[therapist] + rng.normal(0, 1.5 ** 0.5, len(t))
    data = pd.DataFrame({"y": y, "x": x, "session": t, "client": client.astype(str), "therapist": therapist.astype(str)})
    result = M.fit_model("y ~ x + session + (1 + session | client) + (1 | therapist)", data)
    summary = M.model_summary(result, data)
    var_f = 0.25 + 0.09 * 8.25
    total = var_f + 2.68 + 0.5 + 1.5
    assert summary.fit["r2_marginal"] == pytest.approx(var_f / total, abs=0.02)
    assert summary.fit["r2_conditional"] == pytest.approx((var_f + 3.18) / total, abs=0.02)
    assert summary.fit["therapist_share"] == pytest.approx(0.5 / 4.68, abs=0.04)


# --------------------------------------------------------------------------------------
# Therapist-mean decomposition and the slope-difference test
# --------------------------------------------------------------------------------------
def test_therapist_mean_decomposition_hand_worked():
    """Therapist A: clients 3, 5 (mean 4); B: 6 (mean 6); C: 1, 2, 3 (mean 2).
    Mean of therapist means 4; mean over clients 20/6."""
    data = pd.DataFrame({"therapist": list("AABCCC"), "early_alliance": [3.0, 5, 6, 1, 2, 3]})
    out = M.therapist_mean_decomposition(data)
    assert out["early_alliance_tm"].tolist() == [0, 0, 2, -2, -2, -2]
    assert out["early_alliance_cd"].tolist() == [-1, 1, 0, -1, 0, 1]
    by_client = M.therapist_mean_decomposition(data, grand="clients")
    np.testing.assert_allclose(by_client["early_alliance_tm"], np.array([4, 4, 6, 2, 2, 2]) - 20 / 6, atol=1e-12)
    with_missing = M.therapist_mean_decomposition(data.assign(early_alliance=[3, 5, 6, 1, np.nan, 3]), grand=None)
    assert with_missing["early_alliance_tm"].tolist() == [4, 4, 6, 2, 2, 2]
    assert np.isnan(with_missing["early_alliance_cd"].iloc[4])


def test_slope_difference_hand_worked():
    """b = (3, 1), V = [[4, 1], [1, 9]]: difference 2, SE sqrt(4 + 9 - 2) = sqrt(11)."""
    fe = pd.DataFrame({"estimate": [3.0, 1.0]}, index=["a", "b"])
    res = SimpleNamespace(fixed_effects=fe, vcov=pd.DataFrame([[4.0, 1], [1, 9]], index=["a", "b"], columns=["a", "b"]))
    out = M.slope_difference_test(res, "a", "b", df=20)
    assert out["estimate"] == 2 and out["se"] == pytest.approx(11 ** 0.5, rel=1e-12)
    assert out["p_wald"] == pytest.approx(2 * stats.norm.sf(2 / 11 ** 0.5), rel=1e-12)
    assert out["p"] == pytest.approx(2 * stats.t.sf(2 / 11 ** 0.5, 20), rel=1e-12)
    assert out["ci_high"] - out["estimate"] == pytest.approx(stats.t.ppf(0.975, 20) * 11 ** 0.5, rel=1e-12)


def test_slope_difference_equals_reparameterised_model(small):
    """b_tm - b_cd is the coefficient of the therapist mean once the raw alliance replaces the
    client deviation (a linear reparameterisation of the same fit): estimate and SE agree."""
    clients = M.client_level_data(small.scores, OUTCOME, ALLIANCE)
    result, formula, data, contrast = M.fit_therapist_client(clients)
    assert formula == "post ~ early_alliance_tm + early_alliance_cd + baseline + (1 | therapist)"
    other = M.fit_model("post ~ early_alliance_tm + early_alliance + baseline + (1 | therapist)", data)
    fe = other.fixed_effects.loc["early_alliance_tm"]
    assert contrast["estimate"] == pytest.approx(fe["estimate"], rel=1e-5)
    assert contrast["se"] == pytest.approx(fe["se"], rel=1e-5)
    # Satterthwaite's df of the reparameterised term, bounded by therapists - 2 (a therapist-level contrast)
    assert contrast["df"] == pytest.approx(min(fe["df"], result.ngroups["therapist"] - 2), rel=1e-9)
    assert result.fixed_effects.loc["early_alliance_cd", "estimate"] == pytest.approx(
        other.fixed_effects.loc["early_alliance", "estimate"], rel=1e-5)
    std = M.standardised_coefficients(result, data)
    assert std.loc["early_alliance_tm", "sd_x_level"] == "therapist"
    assert std.loc["early_alliance_tm", "sd_x"] == pytest.approx(
        data.groupby("therapist")["early_alliance_tm"].first().std(), rel=1e-12)


# --------------------------------------------------------------------------------------
# r-equivalent
# --------------------------------------------------------------------------------------
def test_r_from_t_worked_numbers():
    """t = 3, df = 16: r = 3 / sqrt(9 + 16) = .6 and atanh(.6) = ln 2; Fisher-z half-width
    1.959964 / sqrt(15). t = 2, df = 12: r = 2 / 4 = .5."""
    out = M.r_from_t(3.0, 16.0)
    half = stats.norm.ppf(0.975) / math.sqrt(15)
    assert out["r"] == pytest.approx(0.6, rel=1e-12)
    assert out["ci_low"] == pytest.approx(math.tanh(math.log(2) - half), rel=1e-12)
    assert out["ci_high"] == pytest.approx(math.tanh(math.log(2) + half), rel=1e-12)
    assert 0.18 < out["ci_low"] < 0.19 and 0.83 < out["ci_high"] < 0.84
    assert M.r_from_t(-2.0, 12.0)["r"] == pytest.approx(-0.5, rel=1e-12)
    with pytest.raises(ValueError, match="df > 1"):
        M.r_from_t(1.0, 1.0)


# --------------------------------------------------------------------------------------
# Levels: client df, therapist df bound, within-client effect size, therapist ICC (issue 15)
# --------------------------------------------------------------------------------------
R_ICC = Path(__file__).parent / "data" / "models_r" / "icc_reference.json"  # ref_icc.R beside it


def test_client_and_therapist_df_worked_numbers():
    assert M.client_df(390, 4) == 386.0 and M.therapist_df(40, 1) == 38.0
    with pytest.raises(ValueError, match="need > 1"):
        M.client_df(4, 3)


def test_therapist_df_is_bounded_and_p_and_ci_follow():
    """A therapist-mean term with Satterthwaite df 387 and 40 therapists: df 38, p and CI from
    t(38) (scipy), the other terms untouched."""
    fixed = pd.DataFrame({"term": ["(Intercept)", "tm", "cd"], "estimate": [1.0, -0.5, -0.2], "se": [0.5, 0.25, 0.1],
                          "df": [30.0, 387.0, 400.0], "t": [2.0, -2.0, -2.0], "p": [0.05, 0.046, 0.046],
                          "ci_low": [0.0, -1.0, -0.4], "ci_high": [2.0, 0.0, 0.0], "std_estimate": [np.nan] * 3})
    out, bounds = M.bound_therapist_df(fixed, ["tm"], 40)
    assert bounds == [{"term": "tm", "df_satterthwaite": 387.0, "df": 38.0}]
    tm = out.set_index("term").loc["tm"]
    assert tm["df"] == 38.0 and tm["p"] == pytest.approx(2 * stats.t.sf(2.0, 38), rel=1e-12)
    half = stats.t.ppf(0.975, 38) * 0.25
    assert (tm["ci_low"], tm["ci_high"]) == pytest.approx((-0.5 - half, -0.5 + half), rel=1e-12)
    pd.testing.assert_frame_equal(out.drop(index=1), fixed.drop(index=1))
    # Satterthwaite's df below the bound is kept.
    assert M.bound_therapist_df(fixed.assign(df=[30.0, 20.0, 400.0]), ["tm"], 40)[1] == []


def test_within_standardised_scales_b_and_its_ci():
    out = M.within_standardised(-0.4, -0.6, -0.2, sd_x_within=2.0, sd_y_within=4.0)
    assert out == pytest.approx({"estimate": -0.2, "ci_low": -0.3, "ci_high": -0.1})
    rows = pd.DataFrame({"client": ["a", "a", "b", "b"], "x": [1.0, 3.0, 10.0, 14.0]})
    # deviations -1, 1, -2, 2: SD (n - 1) = sqrt(10 / 3)
    assert M.within_sd(rows, "x") == pytest.approx(math.sqrt(10 / 3), rel=1e-12)


def test_therapist_icc_matches_lme4_profile_and_performance():
    """Two- and three-level null models on the small reference study against lme4's REML
    criterion (devFunOnly, uniroot/optimize in ref_icc.R) and performance::icc."""
    ref = json.loads(R_ICC.read_text())
    names = {"client_id": "client", "therapist_id": "therapist"}
    clients = pd.read_csv(DATA / "small" / "clients_derived.csv").rename(columns=names)
    sessions = pd.read_csv(DATA / "small" / "sessions.csv").rename(columns=names)
    two = M.therapist_icc(clients, "post")
    three = M.therapist_icc(sessions, "symptoms", client="client")
    for got, want in ((two, ref["two_level"]), (three, ref["three_level"])):
        assert got["formula"] == want["formula"] and got["nobs"] == want["nobs"]
        assert got["var_therapist"] == pytest.approx(want["var_therapist"], rel=1e-4)
        assert got["var_residual"] == pytest.approx(want["var_residual"], rel=1e-5)
        assert got["icc"] == pytest.approx(want["icc"], rel=1e-4)
        assert got["ci_low"] == pytest.approx(want["ci_low"], rel=1e-4)
        assert got["ci_high"] == pytest.approx(want["ci_high"], rel=1e-4)
        assert not got["singular"]
    assert two["icc"] == pytest.approx(ref["two_level"]["performance_icc"], rel=1e-4)
    assert three["icc"] == pytest.approx(ref["three_level"]["performance_icc_by_group"]["therapist_id"], rel=1e-4)
    assert three["var_client"] == pytest.approx(ref["three_level"]["var_client"], rel=1e-4)
    # One row per client: the client column gives the two-level model.
    assert M.therapist_icc(clients, "post", client="client")["levels"] == 2


def test_therapist_icc_at_the_boundary_starts_its_ci_at_zero():
    """Therapist means that vary less than chance: the variance is estimated at 0, the
    profile interval starts at 0 and the result says singular."""
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"therapist": np.repeat([f"t{i}" for i in range(10)], 8), "post": rng.normal(size=80)})
    data["post"] -= data.groupby("therapist")["post"].transform("mean")  # no between-therapist spread
    data["post"] += np.tile(np.linspace(-1, 1, 8), 10)
    out = M.therapist_icc(data, "post")
    assert out["singular"] and out["icc"] == 0.0 and out["ci_low"] == 0.0 and 0 < out["ci_high"] < 0.5


def test_r_equivalent_is_oriented_like_the_benchmark():
    fe = pd.DataFrame({"t": [-3.0], "df": [16.0]}, index=["early_alliance"])
    worse = M.r_equivalents(fe, ["early_alliance"], "higher_is_worse").iloc[0]
    assert worse["r"] == pytest.approx(-0.6) and worse["r_benefit"] == pytest.approx(0.6)
    assert worse["benefit_ci_low"] == pytest.approx(-worse["ci_high"])
    better = M.r_equivalents(fe, ["early_alliance"], "higher_is_better").iloc[0]
    assert better["r_benefit"] == pytest.approx(-0.6)
    assert M.BENCHMARK["r"] == 0.278 and (M.BENCHMARK["ci_low"], M.BENCHMARK["ci_high"]) == (0.256, 0.299)


# --------------------------------------------------------------------------------------
# Data preparation: hand-worked
# --------------------------------------------------------------------------------------
def series(rows):
    return pd.DataFrame(rows, columns=["client", "session", "score"])


def test_early_alliance_definition_is_passed_to_scoring(small):
    """The definition goes to alliance.scoring.scores.early_alliance (tested in test_scoring.py);
    precomputed values are taken as they are."""
    at2 = M.client_level_data(small.scores, OUTCOME, ALLIANCE, early={"method": "session_k", "k": 2})
    sessions = pd.read_csv(DATA / "small" / "sessions.csv")
    expected = sessions.loc[sessions["session"] == 2].set_index("client_id")["alliance"]
    np.testing.assert_allclose(at2.set_index("client")["early_alliance"], expected.sort_index(), atol=1e-12)
    assert (at2["n_early"] == 1).all()
    given = pd.Series(np.arange(480.0), index=at2["client"])
    out = M.client_level_data(small.scores, OUTCOME, ALLIANCE, early=given)
    assert out["early_alliance"].tolist() == list(np.arange(480.0)) and out["n_early"].isna().all()
    with pytest.raises(ValueError, match="early must be"):
        M.client_level_data(small.scores, OUTCOME, ALLIANCE, early="mean:3")


def test_lag_uses_only_the_previous_session():
    """Sessions 1, 2, 4, 5: session 4 has no lag (session 3 missing), never session 2's value."""
    data = pd.DataFrame({"client": ["a"] * 4 + ["b"], "session": [1, 2, 4, 5, 2], "x": [10.0, 20, 40, 50, 7]})
    out = M.lag_within_client(data, "x")
    np.testing.assert_array_equal(out["x_lag"], [np.nan, 10, np.nan, 40, np.nan])
    lead = M.lag_within_client(data, "x", lag=-1)
    np.testing.assert_array_equal(lead["x_next"], [20, np.nan, 50, np.nan, np.nan])
    shuffled = M.lag_within_client(data.iloc[[3, 0, 4, 2, 1]], "x")
    assert np.isnan(shuffled.loc[0, "x_lag"]) and np.isnan(shuffled.loc[2, "x_lag"])
    assert shuffled.loc[3, "x_lag"] == 40 and shuffled.loc[1, "x_lag"] == 10
    with pytest.raises(ValueError, match="more than one row"):
        M.lag_within_client(pd.concat([data, data.iloc[[0]]]), "x")
    with pytest.raises(ValueError, match="whole session numbers"):
        M.lag_within_client(data.assign(session=[1, 2.5, 4, 5, 2]), "x")


def test_detrend_hand_worked():
    """t = 1, 2, 3 and x = 1, 3, 2: slope .5, residuals -.5, 1, -.5. One-session client: 0."""
    data = pd.DataFrame({"client": ["a", "a", "a", "b"], "session": [1, 2, 3, 1], "x": [1.0, 3, 2, 5]})
    out = M.detrend_within_client(data, "x")
    np.testing.assert_allclose(out["x_dt"], [-0.5, 1.0, -0.5, 0.0], atol=1e-12)


def test_person_mean_centre_grand_means():
    data = pd.DataFrame({"client": ["a", "a", "b"], "x": [1.0, 3.0, 8.0]})
    by_clients = M.person_mean_centre(data, "x")  # client means 2 and 8, their mean 5
    assert by_clients["x_cw"].tolist() == [-1, 1, 0] and by_clients["x_cm"].tolist() == [-3, -3, 3]
    by_rows = M.person_mean_centre(data, "x", grand="observations")  # row mean 4
    assert by_rows["x_cm"].tolist() == [-2, -2, 4]


def test_client_slopes_match_scipy():
    rng = np.random.default_rng(5)
    s = pd.DataFrame({"client": np.repeat(["a", "b", "c"], 5), "session": np.tile(np.arange(1, 6), 3),
                      "score": rng.normal(size=15)})
    s = pd.concat([s, series([("d", 2, 1.0)])], ignore_index=True)
    slopes = M.client_slopes(s)
    for c in "abc":
        part = s.loc[s["client"] == c]
        assert slopes[c] == pytest.approx(stats.linregress(part["session"], part["score"]).slope, rel=1e-10)
    assert np.isnan(slopes["d"])


def test_growth_slopes_match_lme4():
    """Post-window slopes (sessions > 3, clients with >= 3 of them) from one ML growth model:
    fixed slope + conditional mode, as coef(lmer(...)) in tests/data/dynamic_r/growth_slopes.R."""
    ref_dir = Path(__file__).parent / "data" / "dynamic_r"
    data = pd.read_csv(ref_dir / "growth_data.csv")
    expected = pd.read_csv(ref_dir / "growth_expected.csv").set_index("client")["slope"]
    got = M.growth_slopes(data, after_session=3)
    assert set(got.index[got["slope"].notna()]) == set(expected.index)
    np.testing.assert_allclose(got.loc[expected.index, "slope"], expected, atol=1e-4)
    later = data.loc[data["session"] > 3].groupby("client")["session"].nunique()
    assert (got.loc[later.index, "n_slope"] == later).all()
    assert got.loc[got["n_slope"] < 3, "slope"].isna().all()


def test_score_covariates_levels_means_changes():
    rows = [("a", "T", 1, 20.0), ("a", "T", 2, 18.0), ("a", "T", 3, 14.0), ("a", "T", 6, 9.0),
            ("b", "T", 2, 12.0), ("c", "T", 1, 11.0), ("c", "T", 3, 15.0)]
    scores = pd.DataFrame(rows, columns=["client", "therapist", "session", "score"]).assign(
        instrument="phq9", respondent="client", scale="total", rater=None)
    out = M.score_covariates(scores, {
        "phq_change": {"instrument": "phq9", "statistic": "change"},
        "phq_level": {"instrument": "phq9", "statistic": "level", "sessions": [1, 2]},
        "phq_mean": {"instrument": "phq9", "statistic": "mean"}}, window_end=3)
    assert out.loc["a"].tolist() == [-6.0, 18.0, pytest.approx(52 / 3)]
    assert np.isnan(out.loc["b", "phq_change"]) and out.loc["b", "phq_level"] == 12.0  # one session: no change
    assert out.loc["c", "phq_change"] == 4.0 and out.loc["c", "phq_level"] == 11.0
    with pytest.raises(ValueError, match="statistic 'slope' is not one of"):
        M.score_covariates(scores, {"x": {"instrument": "phq9", "statistic": "slope"}}, 3)
    with pytest.raises(ValueError, match=r"sessions must be \[first, last\]"):
        M.score_covariates(scores, {"x": {"instrument": "phq9", "sessions": [4, 2]}}, 3)


def test_post_inside_early_window_is_set_aside_and_counted():
    rows = [("a", "T", 1, "phq9", 20.0), ("a", "T", 5, "phq9", 10.0), ("b", "T", 1, "phq9", 15.0),
            ("b", "T", 3, "phq9", 12.0), ("a", "T", 1, "wai", 40.0), ("b", "T", 1, "wai", 45.0)]
    scores = pd.DataFrame(rows, columns=["client", "therapist", "session", "instrument", "score"]).assign(
        respondent="client", scale="total", rater=None)
    out = M.client_level_data(scores, ("phq9", "total"), ("wai", "total"), early={"method": "mean_1_to_k", "k": 3},
                              score_covariate_definitions={"phq_early": {"instrument": "phq9", "statistic": "change"}})
    out = out.set_index("client")
    assert out.loc["a", "post"] == 10.0 and not out.loc["a", "post_in_window"]
    assert np.isnan(out.loc["b", "post"]) and out.loc["b", "post_in_window"]  # session 3 is inside 1..3
    assert out.attrs["n_post_in_early_window"] == 1
    assert np.isnan(out.loc["a", "phq_early"]) and out.loc["b", "phq_early"] == -3.0


def test_client_level_data_with_gaps_observers_and_covariates():
    """Client c2 has one outcome score (no post), c3 changes therapist (keeps the first);
    observer ratings of one session are averaged."""
    rows = [
        ("c1", "T1", 1, "phq9", "client", None, 20.0), ("c1", "T1", 4, "phq9", "client", None, 10.0),
        ("c1", "T1", 1, "wai_o", "observer", "R1", 3.0), ("c1", "T1", 1, "wai_o", "observer", "R2", 5.0),
        ("c1", "T1", 2, "wai_o", "observer", "R1", 6.0),
        ("c2", "T1", 2, "phq9", "client", None, 15.0), ("c2", "T1", 2, "wai_o", "observer", "R1", 2.0),
        ("c3", "T2", 1, "phq9", "client", None, 12.0), ("c3", "T3", 2, "phq9", "client", None, 9.0),
        ("c3", "T2", 1, "wai_o", "observer", "R2", 4.0),
        ("c4", "T2", 1, "phq9", "client", None, 11.0), ("c4", "T2", 3, "phq9", "client", None, 12.0),
    ]
    scores = pd.DataFrame(rows, columns=["client", "therapist", "session", "instrument", "respondent", "rater", "score"])
    scores["scale"] = "total"
    clients = pd.DataFrame({"client": ["c1", "c2", "c3", "c4"], "arm": ["A", "B", "A", "B"]})
    out = M.client_level_data(scores, OUTCOME, ("wai_o", "observer", "total"), None, ["arm"], clients).set_index("client")
    assert out.loc["c1", "early_alliance"] == pytest.approx((4.0 + 6.0) / 2)  # session 1 = mean of two raters
    assert np.isnan(out.loc["c2", "post"]) and out.loc["c2", "baseline"] == 15.0
    assert out.loc["c1", "change"] == -10.0
    # c3's and c4's last scores (sessions 2, 3) lie inside the default early window 1..3
    assert out.loc["c3", "therapist"] == "T2" and np.isnan(out.loc["c3", "change"])
    assert out["post_in_window"].tolist() == [False, False, True, True]
    assert np.isnan(out.loc["c4", "early_alliance"]) and out.loc["c4", "n_early"] == 0
    assert out["arm"].tolist() == ["A", "B", "A", "B"]
    late = M.client_level_data(scores, OUTCOME, ("wai_o", "observer", "total"), baseline_max_session=1)
    assert np.isnan(late.set_index("client").loc["c2", "baseline"])
    session = M.session_level_data(scores, OUTCOME, ("wai_o", "observer", "total"))
    assert len(session) == 8 and session.loc[session["client"] == "c3", "therapist"].tolist() == ["T2", "T2"]


def test_bad_inputs_raise_value_errors(small):
    with pytest.raises(ValueError, match="name the respondent"):
        M.score_series(pd.concat([small.scores, small.scores.assign(respondent="therapist")]), "wai_sr", "total")
    with pytest.raises(ValueError, match="no non-missing score"):
        M.score_series(small.scores, "oq45", "total")
    with pytest.raises(ValueError, match="missing column"):
        M.client_level_data(small.scores.drop(columns="session"), OUTCOME, ALLIANCE)
    with pytest.raises(ValueError, match="variant"):
        M.early_outcome_formula("change")
    with pytest.raises(ValueError, match="cannot be used in a model formula"):
        M.early_outcome_formula("post", covariates=["age band"])
    with pytest.raises(ValueError, match="direction"):
        M.within_between_formula("sideways")
    with pytest.raises(ValueError, match="engine"):
        M.fit_model("y ~ x + (1 | g)", pd.DataFrame(), engine="lme4")


def test_formulas_of_every_model():
    with pytest.raises(ValueError, match="variant must be one of"):
        M.early_outcome_formula("residualised_change")  # dropped: the baseline-adjusted model covers it
    assert M.early_outcome_formula("rate_of_change") == "slope ~ early_alliance + baseline + (1 | therapist)"
    assert M.within_between_formula(lagged_response=True) == (
        "symptoms ~ session + a_cw_lag + a_cm + symptoms_lag + (1 + session | client) + (1 | therapist)")
    assert M.within_between_formula("outcome_to_alliance") == (
        "alliance ~ session + s_cw_lag + s_cm + (1 + session | client) + (1 | therapist)")
    assert M.trait_state_formula() == (
        "symptoms_next ~ session + alliance_trait + alliance_state + symptoms + (1 | client) + (1 | therapist)")


def test_fit_indirection_passes_a_custom_fit():
    calls = []
    M.fit_model("y ~ x + (1 | g)", pd.DataFrame({"y": [1.0]}), reml=False,
                fit=lambda f, d, reml: calls.append((f, len(d), reml)))
    assert calls == [("y ~ x + (1 | g)", 1, False)]


# --------------------------------------------------------------------------------------
# Cluster bootstrap and specification curve
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_clients():
    data = pd.read_csv(DATA / "small" / "clients_derived.csv")
    return data.rename(columns=REF_NAMES)


def test_cluster_resample_structure(reference_clients):
    data = reference_clients
    rng = np.random.default_rng(3)
    sample = M.cluster_resample(data, rng, "therapists")
    sizes = data.groupby("therapist").size()
    drawn = sample.groupby("therapist").size()
    assert sample["therapist"].nunique() == 40 and sample["client"].is_unique
    # each drawn therapist keeps exactly its own clients
    original = sample["therapist"].str.split("#").str[0]
    assert (drawn.to_numpy() == sizes[drawn.index.str.split("#").str[0]].to_numpy()).all()
    assert (sample["client"].str.split("#").str[0].map(data.set_index("client")["therapist"]) == original).all()
    two = M.cluster_resample(data, np.random.default_rng(3), "therapists_then_clients")
    assert two.groupby("therapist").size().to_numpy().tolist() == sizes[
        two.groupby("therapist").size().index.str.split("#").str[0]].tolist()
    clients = M.cluster_resample(data, np.random.default_rng(3), "clients")
    assert len(clients) == 480 and set(clients["therapist"]) <= set(data["therapist"])
    with pytest.raises(ValueError, match="stages"):
        M.cluster_resample(data, rng, "sessions")


def test_cluster_bootstrap_is_seeded_and_splits_into_jobs(reference_clients):
    formula = "post ~ early_alliance + baseline + (1 | therapist)"
    whole = M.cluster_bootstrap(reference_clients, formula, seed=11, replicates=range(4))
    parts = pd.concat([M.cluster_bootstrap(reference_clients, formula, seed=11, replicates=r)
                       for r in (range(0, 2), range(2, 4))], ignore_index=True)
    pd.testing.assert_frame_equal(whole, parts)
    other = M.cluster_bootstrap(reference_clients, formula, seed=12, replicates=range(1))
    assert not np.allclose(other["estimate"], whole["estimate"].iloc[:3])
    with pytest.raises(ValueError, match="overlap"):
        M.bootstrap_intervals(pd.concat([whole, whole]))


def _refit_resampled_rows(formula, data, reml):
    """The general path: lmm.fit on the rows cluster_resample built (fit= skips the reweighting)."""
    return M.fit_model(formula, data, reml=reml, options={"satterthwaite_df": False})


@pytest.mark.parametrize("reml", [True, False])
def test_reweighted_bootstrap_refits_agree_with_refits_of_the_resampled_rows(reference_clients, reml):
    """Refits from per-therapist cross-products (alliance.lmm.reweight) against lmm.fit on the
    rows of the same draws: estimates within 1e-6 of the estimate's SE scale (the optimiser's
    tolerances; largest seen 2.0e-7 by REML, 1.1e-7 by ML over 50 draws, where many are singular), converged and singular flags equal. The data have a
    categorical covariate, missing values in a model column and a therapist all of whose rows
    are incomplete (it is still drawn, as by cluster_resample)."""
    data = reference_clients.copy()
    data["arm"] = np.where(np.arange(len(data)) % 3 == 0, "cbt", "pdt")
    data.loc[data.index % 17 == 0, "baseline"] = np.nan
    data.loc[data["therapist"] == data["therapist"].iloc[-1], "post"] = np.nan
    formula = "post ~ early_alliance + baseline + arm + (1 | therapist)"
    fast = M.cluster_bootstrap(data, formula, seed=5, replicates=range(12), reml=reml, blocks=True)
    slow = M.cluster_bootstrap(data, formula, seed=5, replicates=range(12), reml=reml, fit=_refit_resampled_rows)
    assert (fast["error"] == "").all() and len(fast) == len(slow) == 12 * 4
    assert fast["term"].tolist() == slow["term"].tolist()
    assert fast["estimate"].to_numpy() == pytest.approx(slow["estimate"].to_numpy(), rel=1e-6, abs=1e-6)
    assert fast["converged"].tolist() == slow["converged"].tolist()
    assert fast["singular"].tolist() == slow["singular"].tolist()


def test_small_data_refit_the_rows_and_large_data_the_blocks(reference_clients, monkeypatch):
    """blocks=None (the default) keeps the general engine's refits up to ROW_REFITS_UP_TO rows
    (a small study's bootstrap as before the blocks existed, byte for byte) and takes the
    cross-products above it; True and False force a route; anything else is an error."""
    from alliance.lmm import reweight

    formula = "post ~ early_alliance + baseline + (1 | therapist)"
    auto = M.cluster_bootstrap(reference_clients, formula, seed=5, replicates=range(3))
    rows = M.cluster_bootstrap(reference_clients, formula, seed=5, replicates=range(3), blocks=False)
    fast = M.cluster_bootstrap(reference_clients, formula, seed=5, replicates=range(3), blocks=True)
    assert len(reference_clients) <= reweight.ROW_REFITS_UP_TO
    pd.testing.assert_frame_equal(auto, rows)
    assert not fast["estimate"].equals(rows["estimate"])  # another route: equal to tolerance only
    assert fast["estimate"].to_numpy() == pytest.approx(rows["estimate"].to_numpy(), rel=1e-6, abs=1e-6)
    monkeypatch.setattr(reweight, "ROW_REFITS_UP_TO", len(reference_clients) - 1)
    pd.testing.assert_frame_equal(M.cluster_bootstrap(reference_clients, formula, seed=5, replicates=range(3)), fast)
    with pytest.raises(ValueError, match="blocks must be True, False or None"):
        M.cluster_bootstrap(reference_clients, formula, seed=5, replicates=range(1), blocks="yes")


def test_reweighted_bootstrap_falls_back_where_it_does_not_apply(reference_clients):
    """A random slope, and a draw that leaves a factor level out, are refitted on their rows."""
    from alliance.lmm.reweight import InterceptBlocks

    labels = pd.Index(sorted(reference_clients["therapist"].unique()))
    assert InterceptBlocks.build("post ~ early_alliance + (early_alliance | therapist)", reference_clients,
                                 "therapist", labels) is None
    assert InterceptBlocks.build("post ~ scale(early_alliance) + (1 | therapist)", reference_clients,
                                 "therapist", labels) is None
    data = reference_clients.copy()
    data["site"] = np.where(data["therapist"] == labels[0], "rare", "common")
    blocks = InterceptBlocks.build("post ~ early_alliance + site + (1 | therapist)", data, "therapist", labels)
    without_first = np.ones(len(labels))
    without_first[0] = 0
    assert blocks is not None and blocks.refit(without_first) is None
    assert blocks.refit(np.ones(len(labels))) is not None


def test_therapist_bootstrap_se_agrees_with_model_se(reference_clients):
    """Resampling therapists roughly reproduces the model SEs: within 40% at 40 replicates
    (the SD of 40 draws has about 11% sampling error, and 40 therapists make the bootstrap
    distribution lumpy). At 100 replicates (seed 1) the SEs were .440 / .0420 (therapists),
    .389 / .0443 (clients) and .601 / .0669 (therapists then clients) against the model's
    .411 / .0465 for early alliance / baseline: the two-stage scheme overstates them, as
    Davison & Hinkley (1997, sec. 3.8) say."""
    formula = "post ~ early_alliance + baseline + (1 | therapist)"
    model_se = M.fit_model(formula, reference_clients).fixed_effects["se"]
    draws = M.cluster_bootstrap(reference_clients, formula, seed=2026, replicates=range(40))
    boot = M.bootstrap_intervals(draws).set_index("term")
    assert (boot["n_replicates"] == 40).all() and (boot["n_failed"] == 0).all()
    for term in ("early_alliance", "baseline"):
        assert boot.loc[term, "se"] == pytest.approx(model_se[term], rel=0.4), term
        assert boot.loc[term, "ci_low"] < boot.loc[term, "mean"] < boot.loc[term, "ci_high"]


def test_specification_grid_and_curve():
    grid = M.specification_grid({"mean3": {"method": "mean_1_to_k", "k": 3}, "s3": {"method": "session_k", "k": 3}},
                                {"phq9": ("phq9", "total")}, ["client", "therapist"], {"none": [], "base": ["arm"]})
    assert len(grid) == 8 and grid["spec"].is_unique
    assert grid.loc[0, "spec"] == "mean3__phq9__client__none" and grid.loc[1, "covariate_columns"] == ("arm",)
    with pytest.raises(ValueError, match="label"):
        M.specification_grid({"a__b": {}}, {"o": ("x", "y")}, ["client"], {"n": []})
    est = pd.DataFrame({"spec": ["a", "b", "c"], "estimate": [0.3, 0.1, 0.2], "ci_low": [0.1, -0.1, 0.0],
                        "ci_high": [0.5, 0.3, 0.4], "p": [0.01, 0.4, 0.04]})
    curve = M.specification_curve(est)
    assert curve["spec"].tolist() == ["b", "c", "a"] and curve["rank"].tolist() == [1, 2, 3]
    assert curve.attrs["median_estimate"] == 0.2 and curve.attrs["share_significant"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------
# Figures (they draw what they are given; ids never appear)
# --------------------------------------------------------------------------------------
def test_figures_draw_the_benchmark_and_no_ids(small, tmp_path):
    from matplotlib.patches import Polygon, Rectangle

    from alliance.models import figures as F
    from alliance.outputs import write_figure

    clients = M.client_level_data(small.scores, OUTCOME, ALLIANCE)
    result, _ = M.fit_early_outcome(clients)
    summary = M.model_summary(result, clients, alliance_terms=["early_alliance"])
    client = M.level_effects(summary, clients, {"early_alliance": "client"}, "post").assign(label="early alliance -> post")
    within = client.assign(level="within", label="a within-client effect")
    fig = F.forest_plot(pd.concat([client, within], ignore_index=True))

    def spans(ax):
        return [(p.get_x(), p.get_x() + p.get_width()) if isinstance(p, Rectangle) else
                (np.min(p.get_xy()[:, 0]), np.max(p.get_xy()[:, 0])) for p in ax.patches
                if isinstance(p, (Polygon, Rectangle))]
    ax, other = fig.axes[0], fig.axes[1]
    assert any(lo == pytest.approx(0.256) and hi == pytest.approx(0.299) for lo, hi in spans(ax))
    assert any(abs(line.get_xdata()[0] - 0.278) < 1e-12 for line in ax.lines)
    # The benchmark is drawn beside client-level effects only.
    assert not any(lo == pytest.approx(0.256) for lo, _ in spans(other))
    assert not any(abs(line.get_xdata()[0] - 0.278) < 1e-12 for line in other.lines)
    with pytest.raises(ValueError, match="level"):
        F.forest_plot(client.assign(level="session"))
    write_figure(fig, tmp_path / "forest.svg")
    sessions = M.session_level_data(small.scores, OUTCOME, ALLIANCE)
    figs = [F.caterpillar_plot(result.ranef["therapist"]), F.early_outcome_scatter(clients),
            F.trajectory_plot(sessions, n_individual=5)]
    curve = M.specification_curve(pd.DataFrame({"spec": ["a", "b"], "estimate": [0.1, 0.2], "ci_low": [0, 0.1],
                                                "ci_high": [0.2, 0.3], "p": [0.2, 0.01], "early": ["m3", "s3"],
                                                "outcome": ["phq9", "phq9"], "respondent": ["client"] * 2,
                                                "covariates": ["none"] * 2}))
    figs.append(F.specification_curve_plot(curve))
    for i, f in enumerate(figs):
        write_figure(f, tmp_path / f"fig{i}.svg")
    text = "".join(p.read_text() for p in tmp_path.glob("*.svg"))
    assert "C000001" not in text and "T0001" not in text
