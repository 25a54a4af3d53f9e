"""Latent-mean (two-level SEM) between- and within-therapist slopes (alliance.models.latent_means).

Reference: lavaan 0.6-14 two-level SEM, ML, observed information, fixed.x = FALSE
(tests/data/models_r/ref_latent_means.R) on a simulated unbalanced data set (60 therapists,
2-12 clients) with and without a covariate, and on the bundled example's clients
(post ~ early_alliance + baseline; its between residual variance of post at the boundary 0,
fixed there in lavaan). Tolerances: simulated set, slopes and the contextual effect 1e-5
absolute, all other estimates 1e-4 absolute, SEs 1e-4 relative, loglik 1e-6 absolute; example
(lavaan's optimiser stops 3e-7 below the maximum the estimator reaches, on a flat likelihood),
estimates within 2e-3 of their SE, SEs 1e-4 relative, loglik at least lavaan's and within 1e-5.
Parameter recovery (seeded): with 2-4 clients per therapist the latent-mean between slope is nearly
unbiased where the observed-mean slope of the mixed model is pulled towards the within slope.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.models import fit_therapist_client
from alliance.models.data import NotEstimableError
from alliance.models.latent_means import (
    fit_latent_mean_slopes,
    latent_mean_summary,
    simulate_latent_mean_data,
)

HERE = Path(__file__).parent / "data" / "models_r"
CASES = {"sim_xy": ("sim", "y", "x", []), "sim_xzy": ("sim", "y", "x", ["z"]),
         "example": ("example", "post", "early_alliance", ["baseline"])}


@pytest.fixture(scope="module")
def fits():
    data = {"sim": pd.read_csv(HERE / "latent_means_sim.csv"), "example": pd.read_csv(HERE / "latent_means_example.csv")}
    return {name: fit_latent_mean_slopes(data[d], y, x, c) for name, (d, y, x, c) in CASES.items()}


def _matched(result, name: str) -> pd.DataFrame:
    ref = pd.read_csv(HERE / "latent_means_reference.csv", keep_default_na=False)
    ref = ref.loc[ref["fit"] == name]
    rows = []
    for r in result.estimates.itertuples():
        same = (ref["level"] == r.level) & (ref["op"] == r.op)
        if r.op != ":=":
            same &= ((ref["lhs"] == r.lhs) & (ref["rhs"] == r.rhs)) | ((ref["lhs"] == r.rhs) & (ref["rhs"] == r.lhs))
        m = ref.loc[same]
        assert len(m) == 1, (name, r.level, r.lhs, r.op, r.rhs)
        se_ref = pd.to_numeric(m["se"].iloc[0], errors="coerce")
        rows.append({"op": r.op, "level": r.level, "estimate": r.estimate, "se": r.se,
                     "estimate_ref": float(m["estimate"].iloc[0]), "se_ref": se_ref})
    assert len(rows) == len(ref)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ["sim_xy", "sim_xzy"])
def test_simulated_set_matches_lavaan(fits, name):
    got = _matched(fits[name], name)
    slopes = got["op"].isin(["~", ":="])
    np.testing.assert_allclose(got.loc[slopes, "estimate"], got.loc[slopes, "estimate_ref"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["estimate"], got["estimate_ref"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["se"], got["se_ref"], rtol=1e-4)
    loglik = pd.read_csv(HERE / "latent_means_loglik.csv").set_index("fit")
    assert fits[name].loglik == pytest.approx(loglik.at[name, "loglik"], abs=1e-6)
    assert fits[name].n_obs == loglik.at[name, "nobs"] and fits[name].n_clusters == loglik.at[name, "n_clusters"]
    assert fits[name].converged and not fits[name].warnings


def test_example_matches_lavaan_with_boundary_variance(fits):
    result = fits["example"]
    got = _matched(result, "example")
    free = got["se"].notna()
    assert (~free).sum() == 1  # the between residual variance of post, held at 0
    assert abs(got.loc[~free, "estimate"].iloc[0]) == 0
    err = (got.loc[free, "estimate"] - got.loc[free, "estimate_ref"]).abs() / got.loc[free, "se_ref"]
    assert err.max() < 2e-3
    np.testing.assert_allclose(got.loc[free, "se"], got.loc[free, "se_ref"], rtol=1e-4)
    loglik = pd.read_csv(HERE / "latent_means_loglik.csv").set_index("fit").at["example", "loglik"]
    assert loglik - 1e-6 <= result.loglik <= loglik + 1e-5
    assert any("estimated at 0" in w for w in result.warnings)


def test_therapist_level_rows_have_therapist_df(fits):
    result = fits["example"]
    between = result.effect("between")
    assert between["df"] == 40 - 2 - 1  # therapists - between predictors - 1
    assert result.effect("contextual")["df"] == between["df"]
    assert np.isinf(result.effect("within")["df"])
    summary = latent_mean_summary(result, "early_alliance_tm", "early_alliance_cd")
    assert summary["n_therapists"] == 40 and summary["n_clients"] == 376
    assert summary["between"]["ci_low"] < summary["between"]["estimate"] < summary["between"]["ci_high"]


def test_latent_centring_removes_the_bias_of_observed_means():
    """Few clients per therapist (2-4), ICC of x 0.2: the observed-mean slope is pulled towards
    beta_W (expected about beta_W + lambda (beta_B - beta_W), lambda ~ 0.43); the latent-mean
    slope is not. 10 simulated studies of 400 therapists, seeded (about 8 s)."""
    beta_w, beta_b = 0.2, 1.0
    rng = np.random.default_rng(2008)
    latent, observed = [], []
    for study in range(10):
        sizes = rng.integers(2, 5, size=400)
        d = simulate_latent_mean_data(sizes, beta_w, beta_b, seed=study, gamma=0.0).rename(
            columns={"therapist": "therapist", "x": "early_alliance", "y": "post"})
        latent.append(fit_latent_mean_slopes(d, "post", "early_alliance").effect("between")["estimate"])
        result = fit_therapist_client(d, "post", baseline=None)[0]
        observed.append(result.fixed_effects.at["early_alliance_tm", "estimate"])
    bias_latent, bias_observed = np.mean(latent) - beta_b, np.mean(observed) - beta_b
    mc_se = np.std(latent, ddof=1) / np.sqrt(len(latent))
    assert abs(bias_latent) < max(3 * mc_se, 0.05)
    assert bias_observed < -0.3  # attenuated towards beta_W by more than a third of beta_B - beta_W


def test_needs_variation_within_and_enough_therapists():
    d = simulate_latent_mean_data([3] * 5, 0.2, 0.5, seed=1)
    with pytest.raises(NotEstimableError, match="2 therapist"):  # df = 2 - 2 predictors - 1 < 1
        fit_latent_mean_slopes(d.iloc[:6], "y", "x", ["z"])
    with pytest.raises(NotEstimableError, match="do not vary within"):
        fit_latent_mean_slopes(d.assign(z=d.groupby("therapist")["x"].transform("mean")), "y", "x", ["z"])
    with pytest.raises(ValueError, match="'w'"):
        fit_latent_mean_slopes(d, "y", "w")
