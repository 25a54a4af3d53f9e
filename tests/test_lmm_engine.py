"""alliance.lmm: agreement with statsmodels MixedLM, parameter recovery on a simulated crossed
design, formula parsing and failure modes.

Tolerances: against MixedLM (a different algorithm, Lindstrom & Bates 1988, optimised to its
own tolerance) fixed effects 1e-5 relative, variances 1e-3 relative, the client
intercept-slope covariance (near 0) within 1e-3 on the correlation scale, ML log-likelihood
1e-7 relative. Recovery (seeded draws): fixed effects within 3 standard errors
of the truth; variance components within about 3 of their standard errors (25% for targets
and residual, 40% for 150 raters or 300 therapists, 20-25% for client terms).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import lmm
from alliance.lmm.formula import parse_formula

DATA = Path(__file__).parent / "data" / "lme4"


def sessions(which: str) -> pd.DataFrame:
    """Session data centred as ref_lme4.R (a_cw within-client, a_cm between-client)."""
    df = pd.read_csv(DATA / which / "sessions.csv")
    client_mean = df.groupby("client_id")["alliance"].transform("mean")
    df["a_cw"] = df["alliance"] - client_mean
    df["a_cm"] = client_mean - df.groupby("client_id")["alliance"].mean().mean()
    df["arm"] = np.array(["A", "B", "C"])[df["therapist_id"].str[1:].astype(int) % 3]
    return df


@pytest.fixture(scope="module")
def two_level_data() -> pd.DataFrame:
    df = sessions("small")
    keep = df["client_id"].isin(df["client_id"].unique()[:100])
    return df.loc[keep].reset_index(drop=True)


@pytest.mark.parametrize("reml", [True, False])
def test_agrees_with_statsmodels_mixedlm(two_level_data, reml):
    from statsmodels.regression.mixed_linear_model import MixedLM

    df = two_level_data
    m = lmm.fit("symptoms ~ session + a_cw + a_cm + (1 + session | client_id)", df, reml=reml)
    X = np.column_stack([np.ones(len(df)), df[["session", "a_cw", "a_cm"]].to_numpy()])
    Z = np.column_stack([np.ones(len(df)), df["session"].to_numpy()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = MixedLM(df["symptoms"].to_numpy(), X, groups=df["client_id"].to_numpy(), exog_re=Z).fit(
            reml=reml, method=["lbfgs"], gtol=1e-10
        )
    np.testing.assert_allclose(m.fixed_effects["estimate"], sm.fe_params, rtol=1e-5)
    assert m.sigma**2 == pytest.approx(sm.scale, rel=1e-3)
    vc = m.random_effects
    cov = np.array([[vc.variance[0], vc.variance[2]], [vc.variance[2], vc.variance[1]]])
    sm_cov = np.asarray(sm.cov_re)
    np.testing.assert_allclose(np.diag(cov), np.diag(sm_cov), rtol=1e-3)
    # the covariance is near 0 here: compare it on the correlation scale (within 1e-3)
    assert abs(cov[0, 1] - sm_cov[0, 1]) < 1e-3 * np.sqrt(cov[0, 0] * cov[1, 1])
    if not reml:
        assert m.loglik == pytest.approx(sm.llf, rel=1e-7)
    # the statsmodels engine returns the same kind of result
    alt = lmm.fit("symptoms ~ session + a_cw + a_cm + (1 + session | client_id)", df, reml=reml,
                  engine="statsmodels")
    assert alt.engine == "statsmodels"
    np.testing.assert_allclose(alt.fixed_effects["estimate"], m.fixed_effects["estimate"], rtol=1e-4)
    np.testing.assert_allclose(alt.random_effects["variance"][[0, 1, 3]], vc["variance"][[0, 1, 3]], rtol=1e-3)
    assert abs(alt.random_effects["corr"][2] - vc["corr"][2]) < 1e-3
    assert alt.objective == pytest.approx(m.objective, rel=1e-6)


def test_statsmodels_engine_refuses_nested_models():
    df = sessions("small")
    with pytest.raises(ValueError, match="one grouping factor"):
        lmm.fit("symptoms ~ session + (1 | client_id) + (1 | therapist_id)", df, engine="statsmodels")


def simulate_crossed(seed: int, n_targets=600, n_raters=150, per_target=4):
    """Targets x raters, each target rated by 4 random raters (incomplete crossed design)."""
    rng = np.random.default_rng(seed)
    target = np.repeat(np.arange(n_targets), per_target)
    rater = np.concatenate([rng.choice(n_raters, per_target, replace=False) for _ in range(n_targets)])
    truth = {"mu": 3.0, "v_target": 0.5, "v_rater": 0.1, "v_resid": 0.2}
    y = (truth["mu"] + rng.normal(0, np.sqrt(truth["v_target"]), n_targets)[target]
         + rng.normal(0, np.sqrt(truth["v_rater"]), n_raters)[rater]
         + rng.normal(0, np.sqrt(truth["v_resid"]), len(target)))
    df = pd.DataFrame({"target": [f"S{t}" for t in target], "rater": [f"R{r}" for r in rater], "rating": y})
    return df, truth


def test_recovers_parameters_of_crossed_design():
    df, truth = simulate_crossed(seed=20240501)
    m = lmm.fit("rating ~ 1 + (1 | target) + (1 | rater)", df)
    fe = m.fixed_effects.loc["(Intercept)"]
    assert abs(fe["estimate"] - truth["mu"]) < 3 * fe["se"]
    vc = m.random_effects.set_index("group")["variance"]
    assert vc["target"] == pytest.approx(truth["v_target"], rel=0.25)
    assert vc["rater"] == pytest.approx(truth["v_rater"], rel=0.4)
    assert vc["Residual"] == pytest.approx(truth["v_resid"], rel=0.25)
    assert m.converged and not m.singular
    assert set(m.ranef) == {"target", "rater"} and len(m.ranef["rater"]) == 150
    # the crossed factor's block is dense: conditional modes still add up to the fitted values
    np.testing.assert_allclose(m.predict(), m.fitted)


def test_recovers_three_level_parameters():
    # many therapists so that the therapist variance is estimated to about +-15%
    rng = np.random.default_rng(11)
    n_ther, per_ther, per_client = 300, 6, 8
    n_cl = n_ther * per_ther
    ther = np.repeat(np.arange(n_ther), per_ther)
    client = np.repeat(np.arange(n_cl), per_client)
    session = np.tile(np.arange(1, per_client + 1), n_cl).astype(float)
    u = rng.standard_normal((n_cl, 2)) @ np.linalg.cholesky([[4.0, 0.1], [0.1, 0.09]]).T
    t = rng.normal(0, 1.0, n_ther)
    y = 10 + t[ther[client]] + u[client, 0] + (-0.5 + u[client, 1]) * session + rng.normal(0, 1.5, len(client))
    df = pd.DataFrame({"y": y, "session": session, "client": client, "ther": ther[client]})
    m = lmm.fit("y ~ session + (1 + session | client) + (1 | ther)", df)
    fe = m.fixed_effects
    assert abs(fe.loc["session", "estimate"] + 0.5) < 3 * fe.loc["session", "se"]
    vc = m.random_effects
    assert vc.variance[0] == pytest.approx(4.0, rel=0.2)
    assert vc.variance[1] == pytest.approx(0.09, rel=0.25)
    assert vc.variance[3] == pytest.approx(1.0, rel=0.4)
    assert m.sigma == pytest.approx(1.5, rel=0.05)


# ------------------------------------------------------------------ formulas and failure modes
def test_formula_parser_expands_lme4_shorthands():
    p = parse_formula("y ~ a*b + x + (x || g) + (1 | t/c)")
    assert p.fixed_terms == [("a",), ("b",), ("x",), ("a", "b")]
    assert [(t.intercept, t.slopes, t.group_name) for t in p.random_terms] == [
        (True, (), "g"), (False, ("x",), "g"), (True, (), "c:t"), (True, (), "t")]
    p = parse_formula("y ~ 0 + x + (0 + x | g)")
    assert not p.intercept and p.random_terms[0].column_names == ["x"]
    p = parse_formula("y ~ x - 1 + (1 + x | g)")
    assert not p.intercept and p.random_terms[0].column_names == ["(Intercept)", "x"]


@pytest.mark.parametrize("formula", [
    "y ~ foo(x) + (1 | g)",
    "y ~ x + (1 | g) + lag(z, 2)",
    "y ~ x + (x:z | g)",
    "y ~ x + (1 | g | h)",
    "y ~ x",
    "y ~ a*b/c + (1 | g)",
    "y ~ x + (1 + | g",
])
def test_unsupported_formulas_are_refused_with_what_is_supported(formula):
    with pytest.raises(ValueError) as err:
        parse_formula(formula)
    msg = str(err.value)
    assert "supported" in msg or "random-effects term" in msg or "syntax error" in msg


def test_rank_deficient_fixed_effects_name_the_columns():
    df = sessions("small")
    df["session2"] = 2.0 * df["session"]
    m = lmm.fit("symptoms ~ session + session2 + (1 | client_id)", df, satterthwaite_df=False)
    assert m.dropped == ["session2"] and list(m.fixed_effects.index) == ["(Intercept)", "session"]
    assert any("rank deficient so dropping 1 column / coefficient: ['session2']" in w for w in m.warnings)


def test_missing_values_dropped_and_counted():
    df = sessions("small")
    df.loc[[3, 10, 50], "alliance"] = np.nan
    df.loc[[7], "symptoms"] = np.nan
    m = lmm.fit("symptoms ~ session + alliance + (1 | client_id)", df, satterthwaite_df=False)
    assert m.nobs == len(df) - 4
    assert any("dropped 4 row(s)" in w for w in m.warnings)


def test_bad_input_errors_name_the_problem():
    df = sessions("small")
    with pytest.raises(ValueError, match="not in the data"):
        lmm.fit("symptoms ~ nothere + (1 | client_id)", df)
    with pytest.raises(ValueError, match="response column 'client_id' must be numeric"):
        lmm.fit("client_id ~ session + (1 | therapist_id)", df)
    one = df.assign(site="S1")
    with pytest.raises(ValueError, match="> 1 sampled level"):
        lmm.fit("symptoms ~ session + (1 | site)", one)
    m = lmm.fit("symptoms ~ session + (1 | therapist_id)", df, satterthwaite_df=False)
    with pytest.raises(ValueError, match="not in the fitted data") as unseen:
        m.predict(df.assign(therapist_id="T9999").head(3))
    # the level by its shape, never itself: a group level may be a client's or therapist's id
    assert "T9999" not in str(unseen.value) and "1 level(s) not in the fitted data (rows [0, 1, 2] by position)" in str(unseen.value)
    np.testing.assert_allclose(
        m.predict(df.assign(therapist_id="T9999").head(3), allow_new_levels=True),
        m.predict(df.head(3), re_form="~0"),
    )


def test_singular_fit_is_flagged():
    # no therapist variation at all in the response: the therapist term goes to the boundary
    df = sessions("boundary")
    m = lmm.fit("symptoms ~ session + (1 | client_id) + (1 | therapist_id)", df, satterthwaite_df=False)
    assert m.singular
    assert any("singular" in w for w in m.warnings)


@pytest.mark.parametrize("which", ["small", "boundary"])
def test_statsmodels_engine_reaches_lme4_on_near_boundary_client_model(which):
    # MixedLM with lbfgs alone ends at llf = inf here; the engine falls back to Powell
    import json

    ref = json.loads((DATA / which / "lme4_reference.json").read_text())["early_alliance_outcome"]
    clients = pd.read_csv(DATA / which / "clients_derived.csv")
    m = lmm.fit("post ~ early_alliance + baseline + (1 | therapist_id)", clients, engine="statsmodels")
    est = [v["Estimate"] for v in ref["fixed"].values()]
    np.testing.assert_allclose(m.fixed_effects["estimate"], est, rtol=1e-4)
    assert m.objective <= ref["objective"] * (1 + 1e-6)


# ------------------------------------------------------------------ degenerate fixed effects / response
def _small_clients(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 40
    data = pd.DataFrame({"therapist": [f"T{i // 4}" for i in range(n)], "x": rng.normal(size=n)})
    data["y"] = 0.5 * data["x"] + rng.normal(size=(n // 4)).repeat(4) + rng.normal(size=n)
    return data


def test_one_level_categorical_fixed_effect_is_refused_naming_it():
    # R's model.matrix refuses it ("contrasts can be applied only to factors with 2 or more
    # levels"); silently dropping the term would fit a different model than the one written
    data = _small_clients().assign(arm="CBT")
    with pytest.raises(ValueError, match=r"categorical column 'arm' has 1 level \('CBT'\).*2 or more levels") as err:
        lmm.fit("y ~ x + arm + (1 | therapist)", data)
    assert type(err.value) is ValueError
    flags = _small_clients().assign(flag=True)
    with pytest.raises(ValueError, match=r"'flag' has 1 level \('TRUE'\)"):
        lmm.fit("y ~ x + flag + (1 | therapist)", flags)


def test_one_level_is_judged_on_the_complete_cases():
    data = _small_clients()
    data["arm"] = np.where(np.arange(len(data)) % 2 == 0, "A", "B")
    m = lmm.fit("y ~ x + arm + (1 | therapist)", data, satterthwaite_df=False)
    assert "armB" in m.fixed_effects.index
    data.loc[data["arm"] == "B", "y"] = np.nan  # every B client lacks the outcome
    with pytest.raises(ValueError, match=r"'arm' has 1 level \('A'\) in the 20 row\(s\) with complete"):
        lmm.fit("y ~ x + arm + (1 | therapist)", data)


@pytest.mark.parametrize("engine", ["alliance", "statsmodels"])
def test_constant_response_is_refused_naming_it(engine):
    data = _small_clients().assign(y=3.0)
    with pytest.raises(ValueError, match=r"response 'y' has no residual variance: all 40 values equal 3.0") as err:
        lmm.fit("y ~ x + (1 | therapist)", data, engine=engine)
    assert type(err.value) is ValueError  # not numpy's LinAlgError (a ValueError subclass)


def test_response_fitted_exactly_by_fixed_effects_is_refused():
    data = _small_clients()
    data["y"] = 2.0 + 3.0 * data["x"]
    with pytest.raises(ValueError, match=r"response 'y' has no residual variance: the fixed effects \['\(Intercept\)', 'x'\] fit it exactly") as err:
        lmm.fit("y ~ x + (1 | therapist)", data)
    assert type(err.value) is ValueError


@pytest.mark.parametrize("seed", range(4))
def test_response_fitted_exactly_by_fixed_and_random_effects_never_looks_clean(seed):
    # constant within therapists: theta grows without bound and the residual sum of squares
    # reaches rounding level. Depending on the optimiser's path the Cholesky factorisation
    # breaks down (a ValueError naming the response, never numpy's LinAlgError) or the fit
    # stops with sigma near 0 and lme4's convergence warning; it must never pass as clean
    data = _small_clients()
    data["y"] = np.repeat(np.random.default_rng(seed).normal(size=10), 4)
    try:
        m = lmm.fit("y ~ x + (1 | therapist)", data)
    except ValueError as err:
        assert type(err) is ValueError
        assert "response 'y' has (almost) no residual variance" in str(err)
        assert "['therapist']" in str(err)
    else:
        assert not m.converged and m.sigma < 1e-6
        assert any("failed to converge" in w for w in m.warnings)


def test_small_but_real_residual_variance_is_still_fitted():
    # residual SD 1e-4 of the response's scale: far above the exact-fit tolerance (1e-7)
    data = _small_clients()
    data["y"] = 2.0 + 3.0 * data["x"] + 1e-4 * np.random.default_rng(3).normal(size=len(data))
    m = lmm.fit("y ~ x + (1 | therapist)", data, satterthwaite_df=False)
    np.testing.assert_allclose(m.fixed_effects["estimate"], [2.0, 3.0], atol=1e-4)
    assert 0.5e-4 < m.sigma < 2e-4
