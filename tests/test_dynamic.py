"""The RI-CLPM (alliance.models.dynamic) against lavaan 0.6-14 (tests/data/dynamic_r/riclpm.R)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.models import NotEstimableError
from alliance.models.dynamic import fit_riclpm, riclpm_covariance, simulate_riclpm, wide_panel

REF = Path(__file__).parent / "data" / "dynamic_r"
TRUTH = [0.3, 0.4, -0.15, 0.1, 4, 9, -2, 3, 6, -1, 2, 5, -0.8, 40, 41, 42, 43, 44, 15, 14, 13, 12, 11]


@pytest.fixture(scope="module")
def fitted():
    return fit_riclpm(pd.read_csv(REF / "riclpm_data.csv"))


def test_fixture_data_is_the_documented_draw():
    data = pd.read_csv(REF / "riclpm_data.csv")
    again = simulate_riclpm(TRUTH, 300, 5, seed=1, missing_share=0.15)
    np.testing.assert_allclose(data.to_numpy(), again.to_numpy(), atol=1e-6)


def test_estimates_and_ses_match_lavaan(fitted):
    expected = pd.read_csv(REF / "riclpm_expected.csv").set_index("parameter")
    assert set(expected.index) == set(fitted.estimates.index)
    got = fitted.estimates.loc[expected.index]
    # ML estimates: both optimisers stop within 1e-5 of the maximum
    np.testing.assert_allclose(got["estimate"], expected["estimate"], rtol=2e-4, atol=2e-4)
    # observed-information SEs: lavaan analytic, here a central-difference Hessian
    np.testing.assert_allclose(got["se"], expected["se"], rtol=2e-3)


def test_loglik_matches_lavaan(fitted):
    ref = pd.read_csv(REF / "riclpm_loglik.csv").iloc[0]
    assert fitted.loglik == pytest.approx(ref["loglik"], abs=1e-4)
    # lavaan counts 44 labelled parameters before its equality constraints make them 23
    assert fitted.n_clients == ref["n"] and fitted.n_parameters == 23
    assert fitted.converged and not fitted.warnings


def test_implied_covariance_is_the_moments_of_the_recursion():
    # Monte Carlo check of the closed form against the generating equations themselves
    rng = np.random.default_rng(7)
    n, T = 200_000, 4
    axx, ayy, ayx, axy, vrx, vry, crr, v1x, v1y, c1, vux, vuy, cu = TRUTH[:13]
    ri = rng.multivariate_normal([0, 0], [[vrx, crr], [crr, vry]], n)
    w = rng.multivariate_normal([0, 0], [[v1x, c1], [c1, v1y]], n)
    xs, ys = [ri[:, 0] + w[:, 0]], [ri[:, 1] + w[:, 1]]
    for _ in range(1, T):
        u = rng.multivariate_normal([0, 0], [[vux, cu], [cu, vuy]], n)
        w = np.c_[axx * w[:, 0] + axy * w[:, 1] + u[:, 0], ayy * w[:, 1] + ayx * w[:, 0] + u[:, 1]]
        xs.append(ri[:, 0] + w[:, 0])
        ys.append(ri[:, 1] + w[:, 1])
    empirical = np.cov(np.c_[np.array(xs).T, np.array(ys).T], rowvar=False)
    np.testing.assert_allclose(riclpm_covariance(np.array(TRUTH), T), empirical, atol=0.12)


def test_wide_panel_places_sessions_and_keeps_gaps():
    long = pd.DataFrame({"client": ["a", "a", "a", "b", "b"], "session": [1, 2, 4, 2, 9],
                         "alliance": [1.0, 2.0, 4.0, 5.0, 6.0], "symptoms": [9.0, 8.0, np.nan, 7.0, 1.0]})
    wide = wide_panel(long, "alliance", "symptoms", waves=4)
    assert list(wide.columns) == ["x1", "x2", "x3", "x4", "y1", "y2", "y3", "y4"]
    np.testing.assert_array_equal(wide.loc["a"].to_numpy(), [1, 2, np.nan, 4, 9, 8, np.nan, np.nan])
    assert wide.loc["b", "x2"] == 5.0 and np.isnan(wide.loc["b", "x1"])
    with pytest.raises(ValueError, match="waves must be at least 3"):
        wide_panel(long, "alliance", "symptoms", waves=2)


def test_too_few_clients_is_not_estimable():
    with pytest.raises(NotEstimableError, match="more clients than parameters"):
        fit_riclpm(simulate_riclpm(TRUTH, 20, 5, seed=2))


def test_run_dynamic_model_writes_results_and_not_estimable(tmp_path):
    import json
    from dataclasses import replace

    from alliance.models.steps import run_dynamic_model, simulated_scores
    from alliance.simulate import SimulationDesign, SimulationEffects, simulate_study

    effects = replace(SimulationEffects(), symptom_ar=0.3, symptom_to_alliance=-0.05)
    study = simulate_study(SimulationDesign(n_therapists=10, n_clients=150), effects, seed=3)
    scores_path = tmp_path / "scores.parquet"
    simulated_scores(study.client_forms).to_parquet(scores_path)
    measure = {"outcome": {"instrument": "phq9", "respondent": "client", "scale": "total"},
               "alliance": {"instrument": "wai_sr", "respondent": "client", "scale": "total"}}
    config = {"models": {"dynamic": {"dyn": {**measure, "waves": 5}}}}
    run_dynamic_model(scores_path, "dyn", config, tmp_path / "dyn")
    info = json.loads((tmp_path / "dyn" / "fit.json").read_text())
    table = pd.read_csv(tmp_path / "dyn" / "estimates.csv").set_index("parameter")
    assert info["status"] == "estimated" and info["n_waves"] == 5 and info["n_clients"] == 150
    assert info["cross_lagged"]["alliance_to_outcome"]["estimate"] == pytest.approx(
        table.loc["alliance_to_outcome", "estimate"])
    assert len(table) == 13 + 2 * 5
    # 200 waves: 413 parameters for 150 clients
    run_dynamic_model(scores_path, "wide", {"models": {"dynamic": {"wide": {**measure, "waves": 200}}}},
                      tmp_path / "wide")
    info = json.loads((tmp_path / "wide" / "fit.json").read_text())
    assert info["status"] == "not estimable" and "more clients than parameters" in info["reason"]
    with pytest.raises(ValueError, match="not declared under models: dynamic"):
        run_dynamic_model(scores_path, "nope", config, tmp_path / "nope")


def test_negative_sampling_variances_give_missing_ses_and_a_warning(monkeypatch):
    """Where the inverse information has a negative diagonal the SE is NaN (was clipped to 0,
    which gave zero-width intervals in 4 of 600 recovery studies)."""
    import alliance.models.dynamic as dyn

    exact = dyn._hessian_from_gradient

    def flipped(gradient, x):  # the first parameter's curvature turned negative
        H = exact(gradient, x)
        H[0, :] = H[:, 0] = 0.0
        H[0, 0] = -1.0
        return H

    monkeypatch.setattr(dyn, "_hessian_from_gradient", flipped)
    result = fit_riclpm(pd.read_csv(REF / "riclpm_data.csv"))
    se = result.estimates["se"]
    assert np.isnan(se.iloc[0]) and np.isfinite(se.iloc[1:]).all() and (se.iloc[1:] > 0).all()
    assert any("not positive definite: 1 standard errors are missing" in w for w in result.warnings)
