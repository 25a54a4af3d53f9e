"""alliance.lmm speaks lme4's formula language: contrasts, syntax errors, aliased columns,
transformations, offsets, prior weights and factor random slopes, each against lme4 1.1-31 /
lmerTest 3.1-3 fits of data that ship with lme4 (``cake``, ``sleepstudy``).

Fixtures: tests/data/lmm_r/ (``Rscript ref_lmm_formula.R tests/data/lmm_r``).
Tolerances: objective 1e-8 relative (and never worse than lme4's by more), fixed effects
1e-6 relative, standard errors 1e-5 relative, Satterthwaite df 1e-3 relative (lmerTest
differentiates numerically), variance components 1e-4 relative or 1e-5 sigma^2 absolute
(boundary fits), sigma 1e-5 relative.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import lmm

DATA = Path(__file__).parent / "data" / "lmm_r"
REF = json.loads((DATA / "lmm_formula_reference.json").read_text())


@pytest.fixture(scope="module")
def cake() -> pd.DataFrame:
    """lme4's cake: temperature an ordered factor (its levels in increasing order)."""
    df = pd.read_csv(DATA / "cake.csv")
    levels = sorted(df["temperature"].unique())
    df["temperature"] = pd.Categorical(df["temperature"], categories=levels, ordered=True)
    df["recipe"] = df["recipe"].astype(str)
    return df


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudy.csv")


def formula_of(name: str) -> str:
    return " ".join(REF[name]["formula"].split())


def check_against_r(m: lmm.LmmResult, name: str, *, df: bool = True, varcorr: bool = True,
                    df_rtol: float = 1e-3, vc_atol: float = 1e-5) -> None:
    ref = REF[name]
    assert m.objective <= ref["objective"] + 1e-8 * abs(ref["objective"])
    assert m.objective == pytest.approx(ref["objective"], rel=1e-8)
    fe = m.fixed_effects
    assert list(fe.index) == list(ref["fixed"])
    rows = ref["fixed"].values()
    np.testing.assert_allclose(fe["estimate"], [v["Estimate"] for v in rows], rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(fe["se"], [v["Std. Error"] for v in rows], rtol=1e-5)
    if df:
        np.testing.assert_allclose(fe["df"], [v["df"] for v in rows], rtol=df_rtol)
    vc = m.random_effects
    assert list(vc["group"]) == [r["grp"] for r in ref["varcorr"]]
    assert [None if pd.isna(x) else x for x in vc["term1"]] == [r.get("var1") for r in ref["varcorr"]]
    assert [None if pd.isna(x) else x for x in vc["term2"]] == [r.get("var2") for r in ref["varcorr"]]
    if varcorr:
        np.testing.assert_allclose(vc["variance"], [r["vcov"] for r in ref["varcorr"]], rtol=1e-4,
                                   atol=vc_atol * ref["sigma"] ** 2)
    assert m.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert m.nobs == ref["nobs"]
    assert m.singular == ref["singular"]


# --------------------------------------------------------------------------- contrasts
def test_contr_poly_as_r():
    from alliance.lmm.design import contrast_matrix

    np.testing.assert_allclose(contrast_matrix("poly", 6), REF["cake_poly"]["contr_poly6"], atol=1e-14)


@pytest.mark.parametrize("name,reml", [("cake_poly", True), ("cake_poly_ml", False)])
def test_ordered_factor_gets_polynomial_contrasts(cake, name, reml):
    m = lmm.fit(formula_of(name), cake, reml=reml)
    check_against_r(m, name)
    assert "temperature.L" in m.fixed_effects.index and "recipeB:temperature^5" in m.fixed_effects.index
    if reml:
        assert m.objective == pytest.approx(1638.62145988, abs=1e-6)


@pytest.mark.parametrize("name,contrasts", [
    ("cake_sum_treatment", {"recipe": "sum", "temperature": "treatment"}),
    ("cake_helmert_poly", {"recipe": "helmert"}),
])
def test_contrasts_argument(cake, name, contrasts):
    check_against_r(lmm.fit(formula_of(name), cake, contrasts=contrasts), name)


def test_contrasts_argument_checked(cake):
    with pytest.raises(ValueError, match="contrasts must be one of"):
        lmm.fit(formula_of("cake_poly"), cake, contrasts={"recipe": "contr.sum"})
    with pytest.raises(ValueError, match=r"\['temp'\], which are not categorical"):
        lmm.fit("angle ~ recipe + temp + (1 | replicate)", cake, contrasts={"temp": "sum"})


def test_lrt_refit_keeps_contrasts(cake):
    m0 = lmm.fit("angle ~ recipe + temperature + (1 | recipe:replicate)", cake,
                 contrasts={"recipe": "sum"}, satterthwaite_df=False)
    m1 = lmm.fit(formula_of("cake_poly"), cake, contrasts={"recipe": "sum"}, satterthwaite_df=False)
    table = lmm.lrt(m0, m1)
    assert table.loc["m1", "deviance"] == pytest.approx(REF["cake_poly_ml"]["objective"], rel=1e-8)


# --------------------------------------------------------------------------- syntax errors
@pytest.mark.parametrize("formula,position,what", [
    ("angle ~ temp +", 14, "nothing after '+'"),
    ("angle ~ temp + (1 + | replicate)", 21, "random-effects expression before '|' is missing"),
    ("angle ~ temp + (1 | replicate", 16, "'(' is never closed"),
    ("angle ~ temp + 1 | replicate)", 29, "')' without a matching '('"),
    ("angle ~ temp + ( | replicate)", 18, "random-effects expression before '|' is missing"),
    ("angle ~ temp + (1 | )", 19, "nothing after '|'"),
    ("angle ~ temp + ()", 16, "empty parentheses"),
    ("angle ~ temp recipe + (1 | replicate)", 14, "follows 'temp' without an operator"),
    ("angle ~ temp + (1 | replicate) ||", 32, "grouping factor after '||'"),
])
def test_malformed_formula_names_the_position(cake, formula, position, what):
    with pytest.raises(ValueError, match=f"syntax error in formula at position {position}: .*{re.escape(what)}") as err:
        lmm.fit(formula, cake)
    # the caret under the offending character
    lines = str(err.value).splitlines()
    assert lines[1].strip() == formula and lines[2].index("^") - 2 == position - 1


# --------------------------------------------------------------------------- aliased columns
def test_aliased_column_dropped_as_lme4(sleep):
    m = lmm.fit(formula_of("ss_rank"), sleep)
    check_against_r(m, "ss_rank")
    assert m.dropped == list(REF["ss_rank"]["dropped"]) == ["Days2"]
    assert "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient: ['Days2']" in m.warnings
    # the predictions use the reduced design
    np.testing.assert_allclose(m.predict(sleep.iloc[:5]), m.fitted[:5], rtol=1e-10)


def test_aliased_interaction_columns_dropped(cake):
    # temp is constant within temperature: temp's column is aliased with the polynomial ones
    m = lmm.fit("angle ~ temperature + temp + (1 | replicate)", cake, satterthwaite_df=False)
    assert m.dropped == ["temp"]
    assert "dropping 1 column / coefficient" in m.warnings[0]


def test_infinite_values_name_their_column(sleep):
    df = sleep.astype({"Days2": float})
    df.loc[[3, 7], "Days2"] = np.inf
    with pytest.raises(ValueError, match=r"non-finite values .* in model column\(s\) 'Days2' \(2 row\(s\)\)"):
        lmm.fit("Reaction ~ Days2 + (1 | Subject)", df)
    df.loc[2, "Reaction"] = -np.inf
    with pytest.raises(ValueError, match=r"'Reaction' \(1 row\(s\)\), 'Days2' \(2 row\(s\)\)"):
        lmm.fit("Reaction ~ Days2 + (1 | Subject)", df)


# --------------------------------------------------------------------------- the language
@pytest.mark.parametrize("name", ["cake_minus", "cake_in", "cake_nest"])
def test_term_removal_in_and_nesting(cake, name):
    check_against_r(lmm.fit(formula_of(name), cake), name)


def test_power_of_a_sum(cake):
    # temp and I(temp^2) (values near 5e4) make X ill-conditioned: lme4 stops 6e-8 above the
    # engine's objective and lmerTest's numerical df differ by up to 2.4e-3 relative here
    check_against_r(lmm.fit(formula_of("cake_power"), cake), "cake_power", df_rtol=5e-3, vc_atol=2e-4)


@pytest.mark.parametrize("name", ["ss_transform", "ss_poly", "ss_scale", "ss_offset"])
def test_transformations_and_offset(sleep, name):
    m = lmm.fit(formula_of(name), sleep)
    check_against_r(m, name)
    # new data get the transformation learned on the fitted rows (scale's centre, poly's
    # recurrence), so predictions on a subset equal the fitted values
    rows = sleep.iloc[[0, 5, 17, 99, 179]]
    np.testing.assert_allclose(m.predict(rows), m.fitted[rows.index], rtol=1e-10)
    np.testing.assert_allclose(m.residuals + m.fitted, m._frame[m._model_frame.parsed.response], rtol=1e-12)


def test_expressions_named_as_r_deparses():
    from alliance.lmm.terms import Expression

    assert Expression("I(Days ^ 2)").key == "I(Days^2)"
    assert Expression("exp(Days / 10)").key == "exp(Days/10)"
    assert Expression("sqrt(Days+1)").key == "sqrt(Days + 1)"
    assert Expression("I((a + b) * c)").key == "I((a + b) * c)"
    assert Expression("poly(x,3)").key == "poly(x, 3)"
    with pytest.raises(ValueError, match="cannot evaluate 'foo\\(x\\)'"):
        Expression("foo(x)")


@pytest.mark.parametrize("name,reml", [("ss_weights", True), ("ss_weights_ml", False)])
def test_prior_weights_as_lme4(sleep, name, reml):
    check_against_r(lmm.fit(formula_of(name), sleep, reml=reml, weights="w"), name)
    m = lmm.fit(formula_of(name), sleep, reml=reml, weights=sleep["w"].to_numpy(), satterthwaite_df=False)
    assert m.objective == pytest.approx(REF[name]["objective"], rel=1e-8)
    with pytest.raises(ValueError, match="weights column 'Days' must be positive and finite; 18 row"):
        lmm.fit(formula_of(name), sleep, weights="Days")


@pytest.mark.parametrize("name", ["cake_factor_slope", "cake_factor_slope0", "cake_factor_dbar"])
def test_factor_random_slopes(cake, name):
    m = lmm.fit(formula_of(name), cake)
    check_against_r(m, name)
    rows = cake.iloc[[0, 100, 269]]
    np.testing.assert_allclose(m.predict(rows), m.fitted[rows.index], rtol=1e-10)


def test_double_bar_keeps_a_factor_as_one_term(sleep):
    # (Days + half || Subject): (1|S) + (0+Days|S) + (0+half|S), half's two indicators stay
    # correlated, as lme4. The intercept and half's indicators share a direction, so only the
    # covariance they imply is identified: compare that, not the separate components.
    name = "ss_dbar_factor"
    m = lmm.fit(formula_of(name), sleep)
    check_against_r(m, name, varcorr=False)

    def implied(v: dict) -> np.ndarray:
        i, c = v[("Subject", "(Intercept)", None)], v[("Subject.2", "halfearly", "halflate")]
        e, late = v[("Subject.2", "halfearly", None)], v[("Subject.2", "halflate", None)]
        return np.array([i + e, i + late, i + c, v[("Subject.1", "Days", None)]])

    ours = {(g, a, None if pd.isna(b) else b): x for g, a, b, x in
            m.random_effects[["group", "term1", "term2", "variance"]].itertuples(index=False)}
    ref = {(r["grp"], r["var1"], r.get("var2")): r["vcov"] for r in REF[name]["varcorr"]}
    np.testing.assert_allclose(implied(ours), implied(ref), rtol=1e-4)


def test_transformation_producing_nan_names_the_expression(sleep):
    df = sleep.assign(shifted=sleep["Days"] - 3.0)
    with pytest.raises(ValueError, match=r"non-finite .* in model column\(s\) 'log\(shifted\)' \(72 row\(s\)\)"):
        lmm.fit("Reaction ~ log(shifted) + (1 | Subject)", df)


# --------------------------------------------------------------------------- InstEval
@pytest.mark.slow
def test_insteval_crossed_fit_matches_lme4():
    """lme4's InstEval (73,421 ratings, 2,972 students x 1,128 lecturers crossed, plus
    dept:service): about 5-10 s. Objective 1e-8 relative (the engine's is lower), theta 1e-4
    relative, fixed effects within 1e-4 standard errors, SEs 1e-4, df 1e-3 against lmerTest."""
    ref = json.loads((DATA / "insteval_reference.json").read_text())
    ie = pd.read_csv(DATA / "insteval.csv.gz", dtype={"s": str, "d": str, "dept": str, "service": str})
    m = lmm.fit(" ".join(ref["formula"].split()), ie)
    assert m.objective <= ref["objective"] * (1 + 1e-12)
    assert m.objective == pytest.approx(ref["objective"], rel=1e-8)
    np.testing.assert_allclose(m.theta, ref["theta"], rtol=1e-4)
    fe, rows = m.fixed_effects, ref["fixed"].values()
    assert list(fe.index) == list(ref["fixed"])
    # the optimum is flat: thetas agreeing to ~1e-5 move the service effect by 1e-5 of
    # itself, so the fixed effects are compared in units of their standard errors
    se = np.array([v["Std. Error"] for v in rows])
    np.testing.assert_allclose(fe["estimate"], [v["Estimate"] for v in rows], rtol=0, atol=1e-4 * se.min())
    np.testing.assert_allclose(fe["se"], se, rtol=1e-4)
    np.testing.assert_allclose(fe["df"], [v["df"] for v in rows], rtol=1e-3)
    assert m.nobs == ref["nobs"] == 73421


def test_partial_re_form_in_predict(cake):
    ref = REF["cake_re_form"]
    m = lmm.fit(formula_of("cake_re_form"), cake)
    check_against_r(m, "cake_re_form")
    rows = cake.iloc[:12]
    np.testing.assert_allclose(m.predict(rows), ref["predict_all"], rtol=1e-6)
    np.testing.assert_allclose(m.predict(rows, re_form="~ (1 | replicate)"), ref["predict_replicate"], rtol=1e-6)
    np.testing.assert_allclose(m.predict(rows, re_form="NA"), ref["predict_none"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"re_form term \(\(Intercept\) \| recipe\) is not a random term"):
        m.predict(rows, re_form="~ (1 | recipe)")


def test_predict_needs_no_response_column(sleep):
    m = lmm.fit(formula_of("ss_transform"), sleep, satterthwaite_df=False)
    rows = sleep.iloc[[1, 50, 120]]
    np.testing.assert_allclose(m.predict(rows.drop(columns="Reaction")), m.fitted[rows.index], rtol=1e-10)
    with pytest.raises(ValueError, match=r"newdata lacks the model column\(s\) \['Days'\]"):
        m.predict(rows.drop(columns="Days"))


# --------------------------------------------------------------------------- '.' in formulas
def test_dot_stands_for_the_other_columns_as_lme4(sleep):
    """``Reaction ~ . - Subject + (Days | Subject)`` on sleepstudy + x2 = Days^2/10 (columns
    Reaction, Days, Subject, x2): lme4's '.' is every column but the response, grouping
    column included (removed here with '- Subject'). Fixture: ref_lmm_dot.R (lmerTest df)."""
    ref = json.loads((DATA / "lmm_dot_reference.json").read_text())
    data = sleep[["Reaction", "Days", "Subject"]].assign(x2=sleep["Days"] ** 2 / 10)
    assert list(data.columns) == ref["columns"]
    m = lmm.fit(ref["formula"], data)
    assert m.formula == "Reaction ~ (Days + Subject + x2) - Subject + (Days | Subject)"
    assert list(m.fixed_effects.index) == list(ref["fixed"])
    assert m.objective == pytest.approx(ref["objective"], rel=1e-8)
    rows = ref["fixed"].values()
    np.testing.assert_allclose(m.fixed_effects["estimate"], [r["Estimate"] for r in rows], rtol=1e-5)
    np.testing.assert_allclose(m.fixed_effects["se"], [r["Std. Error"] for r in rows], rtol=1e-4)
    np.testing.assert_allclose(m.fixed_effects["df"], [r["df"] for r in rows], rtol=1e-2)


def test_dot_expansion_rules():
    """Grouping columns stay in '.' (lme4); a transformed response's variable is left out
    (R would keep it); non-syntactic names are back-quoted; '- .' is refused."""
    from alliance.lmm.formula import expand_dot

    cols = ["y", "a", "my col", "g"]
    assert expand_dot("y ~ . + (1 | g)", cols) == "y ~ (a + `my col` + g) + (1 | g)"
    assert expand_dot("log(y) ~ . - g + (1 | g)", cols) == "log(y) ~ (a + `my col` + g) - g + (1 | g)"
    assert expand_dot("y ~ a + (1 | g)", cols) == "y ~ a + (1 | g)"
    with pytest.raises(ValueError, match=r"'- \.'"):
        expand_dot("y ~ a - . + (1 | g)", cols)


def test_standardised_coefficients_take_the_transformed_response(sleep):
    """models.summaries reads the response from the parsed formula: with ``log(Reaction)``
    SD(y) is the SD of log(Reaction) over the fitted rows (numpy on the data), not a column
    lookup of the formula text (which failed)."""
    from alliance.models.summaries import standardised_coefficients

    m = lmm.fit("log(Reaction) ~ Days + (1 | Subject)", sleep, satterthwaite_df=False)
    out = standardised_coefficients(m, sleep, levels=("Subject",))
    sd_y = np.std(np.log(sleep["Reaction"].to_numpy()), ddof=1)
    sd_x = np.std(sleep["Days"].to_numpy(dtype=float), ddof=1)
    assert out.loc["Days", "sd_y"] == pytest.approx(sd_y, rel=1e-12)
    assert out.loc["Days", "std_estimate"] == pytest.approx(
        m.fixed_effects.loc["Days", "estimate"] * sd_x / sd_y, rel=1e-12)
