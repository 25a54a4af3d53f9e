"""What a fitted alliance-outcome model reports.

:func:`model_summary` adds standardised coefficients, marginal and conditional R² (Nakagawa &
Schielzeth, 2013; Johnson, 2014, for random slopes), the therapists' share of variance, N per
level and an r-equivalent of an alliance effect (Rosenthal, 1991) to compare with the
meta-analytic benchmark (Flückiger et al., 2018). Tested in tests/test_models.py against
lme4/lmerTest and performance::r2_nakagawa on the reference study.

References
----------
Flückiger, C., Del Re, A. C., Wampold, B. E., & Horvath, A. O. (2018). The alliance in adult
psychotherapy: a meta-analytic synthesis. *Psychotherapy*, 55, 316–340.
Johnson, P. C. D. (2014). Extension of Nakagawa & Schielzeth's R²_GLMM to random slopes
models. *Methods in Ecology and Evolution*, 5, 944–946.
Nakagawa, S., & Schielzeth, H. (2013). A general and simple method for obtaining R² from
generalized linear mixed-effects models. *Methods in Ecology and Evolution*, 4, 133–142.
Nakagawa, S., Johnson, P. C. D., & Schielzeth, H. (2017). The coefficient of determination
R² and intra-class correlation coefficient from generalized linear mixed-effects models
revisited and expanded. *Journal of the Royal Society Interface*, 14, 20170213.
Rosenthal, R. (1991). *Meta-analytic procedures for social research* (rev. ed.). Sage.
Baldwin, S. A., & Imel, Z. E. (2013). Therapist effects: findings and methods. In M. J. Lambert
(Ed.), *Bergin and Garfield's handbook of psychotherapy and behavior change* (6th ed.,
pp. 258–297). Wiley.
Pawitan, Y. (2001). *In all likelihood: statistical modelling and inference using
likelihood*. Oxford University Press (profile-likelihood intervals, ch. 3 and 9).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import require_columns as _require_columns
from alliance.lmm import parse_formula
from scipy import stats
from alliance.models.data import CLIENT, THERAPIST

__all__ = [
    "BENCHMARK",
    "EARLY_TEXT",
    "early_definition",
    "variance_components",
    "nakagawa_r2",
    "standardised_coefficients",
    "r_from_t",
    "r_equivalents",
    "client_df",
    "therapist_df",
    "bound_therapist_df",
    "within_standardised",
    "within_sd",
    "EFFECT_LEVELS",
    "level_effects",
    "therapist_icc",
    "ModelSummary",
    "model_summary",
    "ml_criteria",
]

#: Flückiger et al. (2018), face-to-face psychotherapy: r between alliance and outcome, coded
#: so that a positive r means a better alliance goes with a better outcome.
#: the early-alliance definitions in words, for captions, axis labels and table notes
EARLY_TEXT = {
    "mean_1_to_k": "mean over sessions 1\u2013{k}",
    "session_k": "score at session {k}",
    "first_up_to_k": "first score in sessions 1\u2013{k}",
}


def early_definition(early) -> str:
    """An early-alliance definition (``{"method": ..., "k": ...}``) in words."""
    return EARLY_TEXT.get(early.get("method"), str(early.get("method"))).format(k=early.get("k"))


BENCHMARK = {
    "r": 0.278,
    "ci_low": 0.256,
    "ci_high": 0.299,
    "source": "Flückiger, Del Re, Wampold & Horvath (2018), Psychotherapy 55:316-340; "
    "three-level meta-analysis of 295 studies, face-to-face treatments",
}

#: Levels of an alliance effect: between clients, within clients (session to session), between
#: therapists. Only client-level effects are comparable with the benchmark.
EFFECT_LEVELS = ("client", "within", "therapist")
FIXED_EFFECT_COLUMNS = ["term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high", "std_estimate"]
RANDOM_EFFECT_COLUMNS = ["group", "term1", "term2", "variance", "sd", "corr"]
OUTCOME_DIRECTIONS = ("higher_is_worse", "higher_is_better")
# A column counts as constant within a group when its range there is below this share of its
# overall scale: client means computed by different summation orders differ in the last bits.
_CONSTANT_RTOL = 1e-10


# --------------------------------------------------------------------------------------
# Summaries: variance components, R², standardised coefficients, r-equivalents
# --------------------------------------------------------------------------------------
def _model_rows(result: Any, data: pd.DataFrame) -> pd.DataFrame:
    """The rows the model was fitted to: complete on every formula variable."""
    variables = parse_formula(result.formula).variables
    _require_columns(data, variables, "data")
    rows = data.loc[data[variables].notna().all(axis=1)].reset_index(drop=True)
    if len(rows) != result.nobs:
        raise ValueError(
            f"data has {len(rows)} complete rows for {result.formula!r} but the model was fitted "
            f"to {result.nobs}; pass the data the model was fitted to"
        )
    return rows


def _group_covariances(random_effects: pd.DataFrame) -> dict[str, tuple[list[str], np.ndarray]]:
    """Covariance matrix of each random-effects term block, keyed by lme4 group name."""
    out = {}
    for group, rows in random_effects.loc[random_effects["group"] != "Residual"].groupby("group", sort=False):
        diag = rows.loc[rows["term2"].isna()]
        names = diag["term1"].tolist()
        sigma = np.diag(diag["variance"].to_numpy(float))
        for _, r in rows.loc[rows["term2"].notna()].iterrows():
            i, j = names.index(r["term1"]), names.index(r["term2"])
            sigma[i, j] = sigma[j, i] = float(r["variance"])
        out[group] = (names, sigma)
    return out


def _z_columns(rows: pd.DataFrame, names: Sequence[str], group: str) -> np.ndarray:
    cols = []
    for name in names:
        if name == "(Intercept)":
            cols.append(np.ones(len(rows)))
        elif name in rows.columns and pd.api.types.is_numeric_dtype(rows[name]):
            cols.append(rows[name].to_numpy(float))
        else:
            raise ValueError(
                f"random slope {name!r} of group {group!r} is not a numeric data column; "
                "its variance cannot be averaged over observations"
            )
    return np.column_stack(cols)


def variance_components(result: Any, data: pd.DataFrame) -> dict[str, Any]:
    """Variance of the fixed-effect predictions, of each random term and of the residual.

    ``var_fixed`` is the variance (denominator n - 1, as R's ``var`` in
    ``performance::r2_nakagawa``) of ``X beta`` over the fitted rows. The variance of a
    random-effects term with covariance ``Sigma`` and design rows ``z_i`` is the mean over
    the fitted rows of ``z_i' Sigma z_i`` (Johnson, 2014); for a random intercept it
    is its variance.

    Returns
    -------
    dict
        ``var_fixed``, ``var_random`` (sum), ``by_group`` (dict group -> variance),
        ``var_residual``, ``nobs``.
    """
    rows = _model_rows(result, data)
    xb = np.asarray(result.predict(rows, re_form="~0"), dtype=float)
    var_fixed = float(np.var(xb, ddof=1)) if len(xb) > 1 else 0.0
    by_group = {}
    for group, (names, sigma) in _group_covariances(result.random_effects).items():
        z = _z_columns(rows, names, group)
        by_group[group] = float(np.mean(np.einsum("ni,ij,nj->n", z, sigma, z)))
    return {"var_fixed": var_fixed, "var_random": float(sum(by_group.values())), "by_group": by_group,
            "var_residual": float(result.sigma) ** 2, "nobs": len(rows)}


def nakagawa_r2(components: Mapping[str, Any]) -> dict[str, float]:
    """Marginal and conditional R² of a linear mixed model.

    ``R²_m = var_f / (var_f + var_r + var_e)`` and ``R²_c = (var_f + var_r) / (var_f + var_r
    + var_e)`` (Nakagawa & Schielzeth, 2013), with ``var_r`` from Johnson's
    (2014) extension for random slopes (see :func:`variance_components`).
    """
    vf, vr, ve = components["var_fixed"], components["var_random"], components["var_residual"]
    total = vf + vr + ve
    return {"r2_marginal": vf / total, "r2_conditional": (vf + vr) / total}


def _therapist_share(components: Mapping[str, Any], therapist: str) -> float:
    parts = components["by_group"]
    mine = [v for g, v in parts.items() if g == therapist or g.startswith(f"{therapist}.")]
    if not mine:
        return math.nan
    return float(sum(mine) / (components["var_random"] + components["var_residual"]))


def _sd_at_level(rows: pd.DataFrame, column: str, levels: Sequence[str]) -> tuple[float, str]:
    """SD of a predictor over the units of the level it varies at (one value per unit)."""
    x = rows[column].astype(float)
    scale = max(float(np.nanmax(np.abs(x))), 1.0) if len(x) else 1.0
    for level in levels:
        if level not in rows.columns:
            continue
        g = x.groupby(rows[level], sort=False)
        if g.ngroups >= len(rows):
            continue
        if float((g.max() - g.min()).max()) <= _CONSTANT_RTOL * scale:
            return float(g.first().std(ddof=1)), level
    return float(x.std(ddof=1)), "observation"


def standardised_coefficients(result: Any, data: pd.DataFrame, levels: Sequence[str] = (THERAPIST, CLIENT)) -> pd.DataFrame:
    """Standardised fixed effects ``b * SD(x) / SD(y)``.

    ``SD(x)`` is taken at the level at which the predictor varies: over therapists (one
    value each) for a therapist-level predictor such as a therapist's mean alliance, over
    clients for a client-level predictor such as a client's mean alliance, and over the
    fitted rows otherwise (for a person-mean-centred predictor that is its within-client
    SD). ``SD(y)`` is the total SD of the response over the fitted rows, so every
    coefficient is in outcome-SD units per predictor SD (Hox, Moerbeek & van de Schoot,
    2018). Factor-coded terms, interactions and the intercept get NaN.

    Returns
    -------
    DataFrame
        Index: the fixed-effect terms; columns ``std_estimate``, ``sd_x``, ``sd_x_level``,
        ``sd_y``.
    """
    rows = _model_rows(result, data)
    parsed = parse_formula(result.formula)
    response = parsed.response
    # the response as the model saw it: a transformed one (log(y)) is evaluated on the rows
    y = parsed.expressions[response].evaluate(rows, {})
    sd_y = float(pd.Series(np.asarray(y, dtype=float)).std(ddof=1) if not isinstance(y, pd.Series)
                 else y.astype(float).std(ddof=1))
    out = []
    for term, b in result.fixed_effects["estimate"].items():
        if term in rows.columns and term != response and pd.api.types.is_numeric_dtype(rows[term]) \
                and not pd.api.types.is_bool_dtype(rows[term]):
            sd_x, level = _sd_at_level(rows, term, levels)
            out.append((term, b * sd_x / sd_y, sd_x, level, sd_y))
        else:
            out.append((term, math.nan, math.nan, "not standardised", sd_y))
    return pd.DataFrame(out, columns=["term", "std_estimate", "sd_x", "sd_x_level", "sd_y"]).set_index("term")


def r_from_t(t: float, df: float, level: float = 0.95) -> dict[str, float]:
    """r-equivalent of a regression coefficient's t statistic, with a confidence interval.

    ``r = t / sqrt(t² + df)`` (Rosenthal, 1991): the
    partial correlation of the predictor with the outcome given the other predictors. The CI
    is the Fisher-z interval ``tanh(atanh(r) ± z_{.975} / sqrt(df - 1))``: for a regression
    with residual df ``df``, ``N - q - 3 = df - 1`` where q is the number of other
    predictors partialled out (Fisher's z for a partial correlation). Here ``df`` is the coefficient's
    Satterthwaite df.
    """
    if not (math.isfinite(t) and math.isfinite(df)) or df <= 1:
        raise ValueError(f"r_from_t needs a finite t and df > 1, got t={t!r}, df={df!r}")
    r = t / math.sqrt(t * t + df)
    half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(df - 1)
    z = math.atanh(r)
    return {"r": r, "ci_low": math.tanh(z - half), "ci_high": math.tanh(z + half)}


def r_equivalents(fixed_effects: pd.DataFrame, terms: Sequence[str],
                  outcome_direction: str = "higher_is_worse", level: float = 0.95) -> pd.DataFrame:
    """r-equivalents of alliance terms, signed as the benchmark.

    ``r`` has the sign of the coefficient; ``r_benefit`` is oriented so that a positive value
    means a better alliance goes with a better outcome, as Flückiger et al. (2018) code it
    (for an outcome where higher is worse, such as symptoms, ``r_benefit = -r``).
    """
    if outcome_direction not in OUTCOME_DIRECTIONS:
        raise ValueError(f"outcome_direction must be one of {OUTCOME_DIRECTIONS}, got {outcome_direction!r}")
    sign = -1.0 if outcome_direction == "higher_is_worse" else 1.0
    rows = []
    for term in terms:
        if term not in fixed_effects.index:
            raise ValueError(f"term {term!r} is not a fixed effect; the model has {list(fixed_effects.index)}")
        fe = fixed_effects.loc[term]
        r = r_from_t(float(fe["t"]), float(fe["df"]), level)
        lo, hi = sorted((sign * r["ci_low"], sign * r["ci_high"]))
        rows.append({"term": term, "t": float(fe["t"]), "df": float(fe["df"]), "r": r["r"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "r_benefit": sign * r["r"],
                     "benefit_ci_low": lo, "benefit_ci_high": hi,
                     "method": "r = t/sqrt(t^2 + df) (Rosenthal 1991); Fisher-z CI with SE 1/sqrt(df - 1)"})
    return pd.DataFrame(rows)


@dataclass
class ModelSummary:
    """Everything reported for one fitted model (the result contract of issue 5).

    ``fixed_effects`` and ``random_effects`` have the columns of ``fixed_effects.csv`` and
    ``random_effects.csv``; ``fit`` holds the keys of ``fit.json``; ``standardisation``
    says at which level each predictor's SD was taken; ``r_equivalents`` is empty unless
    alliance terms were named; ``contrasts`` holds slope-difference tests.
    """

    fixed_effects: pd.DataFrame
    random_effects: pd.DataFrame
    fit: dict[str, Any]
    standardisation: pd.DataFrame
    r_equivalents: pd.DataFrame
    contrasts: list[dict[str, Any]] = field(default_factory=list)


def model_summary(result: Any, data: pd.DataFrame, alliance_terms: Sequence[str] = (),
                  outcome_direction: str = "higher_is_worse", therapist: str = THERAPIST,
                  client: str = CLIENT, contrasts: Sequence[Mapping[str, Any]] = (),
                  notes: Sequence[str] = ()) -> ModelSummary:
    """Summarise a fit for the report: effects, variances, R², shares, N, status, warnings.

    Parameters
    ----------
    result : LmmResult
        From :func:`fit_model` (``alliance.lmm`` result API).
    data : DataFrame
        The data passed to the fit (rows with missing model variables are dropped here as
        the engine drops them; the counts must agree).
    alliance_terms : sequence of str
        Terms for which an r-equivalent is reported (:func:`r_equivalents`).
    outcome_direction : {"higher_is_worse", "higher_is_better"}
        Orientation of the response, for ``r_benefit``.
    therapist, client : str
        Grouping columns (therapist share; level of each predictor's SD).
    contrasts : sequence of dict
        Slope-difference tests to carry along (:func:`slope_difference_test`).
    notes : sequence of str
        Further messages from data preparation; they are appended to the fit's warnings.

    Returns
    -------
    ModelSummary
        ``fit`` has ``engine``, ``formula``, ``reml``, ``objective``, ``loglik``, ``aic``,
        ``bic``, ``nobs``, ``ngroups``, ``converged``, ``singular``, ``warnings``,
        ``r2_marginal``, ``r2_conditional``, ``therapist_share`` and the variance
        components behind them. ``therapist_share`` is the therapists' share of the
        outcome variance not explained by the fixed effects, ``var_therapist / (var_random
        + var_residual)`` (the adjusted ICC of Nakagawa et al., 2017); NaN without a
        therapist term.
    """
    components = variance_components(result, data)
    r2 = nakagawa_r2(components)
    std = standardised_coefficients(result, data, (therapist, client))
    fixed = result.fixed_effects.copy()
    fixed["std_estimate"] = std["std_estimate"].reindex(fixed.index)
    fixed = fixed.rename_axis("term").reset_index()[FIXED_EFFECT_COLUMNS]
    # A therapist-level predictor is informed by the therapists only (its df cannot exceed theirs).
    therapist_terms = [t for t in std.index if std.at[t, "sd_x_level"] == therapist]
    bounds: list[dict[str, Any]] = []
    if therapist_terms and therapist in result.ngroups:
        fixed, bounds = bound_therapist_df(fixed, therapist_terms, int(result.ngroups[therapist]))
    df_notes = [f"df of {b['term']} bounded by the number of therapists: {b['df']:g} "
                f"(= {int(result.ngroups[therapist])} therapists - {len(therapist_terms)} therapist-level "
                f"predictor(s) - 1) instead of Satterthwaite's {b['df_satterthwaite']:.1f}" for b in bounds]
    random = result.random_effects[RANDOM_EFFECT_COLUMNS].copy()
    info = {
        "engine": getattr(result, "engine", "unknown"),
        "formula": result.formula,
        "reml": bool(result.reml),
        "objective": float(result.objective),
        "loglik": float(result.loglik),
        "aic": float(result.aic),
        "bic": float(result.bic),
        "nobs": int(result.nobs),
        "ngroups": {k: int(v) for k, v in result.ngroups.items()},
        "converged": bool(result.converged),
        "singular": bool(result.singular),
        "warnings": [*map(str, result.warnings), *map(str, notes)],
        **r2,
        "therapist_share": _therapist_share(components, therapist),
        "therapist_share_definition": "var_therapist / (var_random + var_residual), conditional on the fixed effects (Nakagawa et al. 2017 adjusted ICC)",
        "var_fixed": components["var_fixed"],
        "var_random": components["var_random"],
        "var_random_by_group": components["by_group"],
        "var_residual": components["var_residual"],
        "r2_method": "Nakagawa & Schielzeth (2013); random-slope variance as mean of diag(Z Sigma Z') (Johnson 2014)",
        "df_method": "satterthwaite",
        "therapist_df_bounds": bounds,
        "df_notes": df_notes,
        "zero_variances": [str(g) for g, v in components["by_group"].items() if v <= 0.0],
    }
    r_eq = r_equivalents(fixed.set_index("term"), alliance_terms, outcome_direction) if alliance_terms else pd.DataFrame()
    return ModelSummary(fixed, random, info, std.reset_index(), r_eq, [dict(c) for c in contrasts])


def ml_criteria(result: Any) -> dict[str, Any]:
    """Log-likelihood, AIC and BIC of the model refitted by maximum likelihood, for ``fit.json``.

    As lme4's ``logLik(refitML(m))``, ``AIC(refitML(m))``, ``BIC(refitML(m))`` (what
    ``sjPlot::tab_model`` and ``anova()`` compare models with different fixed effects by):
    :func:`alliance.lmm.refit_ml`, with df = fixed effects + variance-covariance parameters + 1
    (residual) and BIC with log(nobs). A model fitted by ML gives its own values.

    Returns
    -------
    dict
        ``loglik_ml``, ``aic_ml``, ``bic_ml`` (full precision; None when the model could not
        be refitted), ``ml_refit`` (how they were obtained, or why they are None) and
        ``ml_warnings`` (the ML fit's messages).
    """
    from alliance.lmm import LmmResult, refit_ml

    empty = {"loglik_ml": None, "aic_ml": None, "bic_ml": None, "ml_warnings": []}
    if not isinstance(result, LmmResult) or (result.reml and result._data is None):
        return {**empty, "ml_refit": f"not available: the fit ({type(result).__name__}) holds no data to refit by ML"}
    try:
        ml = refit_ml(result)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {**empty, "ml_refit": f"not available: the ML refit failed: {exc}"}
    how = ("the model's own ML fit" if not result.reml
           else "the model refitted by maximum likelihood (lme4's refitML, engine 'alliance')")
    return {"loglik_ml": float(ml.loglik), "aic_ml": float(ml.aic), "bic_ml": float(ml.bic), "ml_refit": how,
            "ml_warnings": [] if ml is result else [str(w) for w in ml.warnings]}


# --------------------------------------------------------------------------------------
# Degrees of freedom at the level an effect varies at
# --------------------------------------------------------------------------------------
def client_df(n_clients: int, n_coefficients: int) -> float:
    """Residual df of a client-level effect: ``n_clients - n_coefficients``.

    The df of an ordinary regression with one row per client and ``n_coefficients`` fixed
    effects (intercept included). Used by :func:`r_from_t` for the r-equivalent of a
    client-level effect, so that its interval rests on the number of clients, not on the
    number of session rows.
    """
    df = int(n_clients) - int(n_coefficients)
    if df <= 1:
        raise ValueError(f"client_df: {n_clients} clients and {n_coefficients} coefficients leave df = {df}; need > 1")
    return float(df)


def therapist_df(n_therapists: int, n_therapist_predictors: int) -> float:
    """df of a therapist-level term: ``n_therapists - n_therapist_predictors - 1`` (the residual
    df of a regression over therapist means), the most information the therapists can give."""
    return float(int(n_therapists) - int(n_therapist_predictors) - 1)


def bound_therapist_df(fixed_effects: pd.DataFrame, therapist_terms: Sequence[str], n_therapists: int,
                       level: float = 0.95) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Fixed effects with the df of therapist-level terms bounded by the number of therapists.

    A therapist-level predictor (one value per therapist) is informed by the therapists, not by
    the clients or sessions. Satterthwaite's df can exceed their number when the therapist
    variance is estimated near zero (the df then approach the client count); the df used is
    ``min(Satterthwaite, therapist_df(n_therapists, k))`` with ``k`` the number of
    therapist-level predictors, and p and the CI are recomputed from that t distribution.

    Parameters
    ----------
    fixed_effects : DataFrame
        Columns of :data:`FIXED_EFFECT_COLUMNS` (``term`` a column).
    therapist_terms : sequence of str
        Terms that vary between therapists only.
    n_therapists : int

    Returns
    -------
    (DataFrame, list of dict)
        The fixed effects (a copy) and one record per bounded term: ``term``,
        ``df_satterthwaite``, ``df``.
    """
    out = fixed_effects.copy()
    bounded = []
    if not therapist_terms:
        return out, bounded
    cap = therapist_df(n_therapists, len(therapist_terms))
    for term in therapist_terms:
        i = out.index[out["term"] == term]
        if len(i) != 1:
            raise ValueError(f"bound_therapist_df: term {term!r} is not a fixed effect; terms: {list(out['term'])}")
        i = i[0]
        if not float(out.at[i, "df"]) > cap:
            continue
        if cap < 1:
            raise ValueError(f"bound_therapist_df: {n_therapists} therapists leave df = {cap:g} for "
                             f"{len(therapist_terms)} therapist-level term(s)")
        est, se = float(out.at[i, "estimate"]), float(out.at[i, "se"])
        half = float(stats.t.ppf(0.5 + level / 2, cap)) * se
        bounded.append({"term": term, "df_satterthwaite": float(out.at[i, "df"]), "df": cap})
        out.at[i, "df"] = cap
        out.at[i, "p"] = float(2 * stats.t.sf(abs(est / se), cap))
        out.at[i, "ci_low"], out.at[i, "ci_high"] = est - half, est + half
    return out, bounded


def within_standardised(estimate: float, ci_low: float, ci_high: float, sd_x_within: float,
                        sd_y_within: float) -> dict[str, float]:
    """A within-client effect in within-client SD units: ``b * SD_w(x) / SD_w(y)``.

    ``SD_w`` is the SD of the client-mean-centred values over the fitted rows (the spread of
    the session-to-session fluctuations). The CI is the coefficient's CI scaled by the same
    factor (the SDs are treated as known), so it rests on the model's df for the term.
    """
    if not (sd_x_within > 0 and sd_y_within > 0):
        raise ValueError(f"within_standardised: within-client SDs must be > 0, got {sd_x_within!r}, {sd_y_within!r}")
    k = sd_x_within / sd_y_within
    lo, hi = sorted((ci_low * k, ci_high * k))
    return {"estimate": estimate * k, "ci_low": lo, "ci_high": hi}


# --------------------------------------------------------------------------------------
# Unconditional therapist ICC of the outcome
# --------------------------------------------------------------------------------------
def _profiled_deviance(result: Any):
    """The profiled REML/ML criterion of a fitted model as a function of theta.

    Uses the engine's own precomputed structure (``alliance.lmm``), so the criterion is the
    one the fit minimised (lme4's ``devFunOnly``).
    """
    from alliance.lmm.deviance import ProfiledDeviance

    structure = getattr(result, "_structure", None)
    if structure is None:
        raise ValueError("therapist_icc needs a fit of the alliance engine (engine='alliance')")
    return ProfiledDeviance(structure, bool(result.reml)), structure


def _theta_index(structure: Any, group: str) -> int:
    for name, sl in zip(structure.term_names, structure.theta_slices):
        if name == group:
            return sl.start
    raise ValueError(f"no random intercept for {group!r} in the null model; groups: {structure.term_names}")


def _root(f, a: float, b: float) -> float:
    from scipy.optimize import brentq

    return float(brentq(f, a, b, xtol=1e-12, rtol=1e-12, maxiter=200))


def therapist_icc(data: pd.DataFrame, response: str, therapist: str = THERAPIST, client: str | None = None,
                  level: float = 0.95, reml: bool = True) -> dict[str, Any]:
    """Unconditional therapist ICC of an outcome, with a profile-likelihood confidence interval.

    Two levels (one row per client, ``client`` None): the null model ``response ~ 1 + (1 |
    therapist)``, ``ICC = var_therapist / (var_therapist + var_residual)``. Three levels (several
    rows per client): ``response ~ 1 + (1 | client) + (1 | therapist)`` and ``ICC =
    var_therapist / (var_therapist + var_client + var_residual)``, the therapists' share of
    the total variance (Baldwin & Imel, 2013, report about 5% for outcomes).

    The CI is the profile-likelihood interval (Pawitan, 2001): the ICCs whose profiled REML
    criterion (sigma and the intercept profiled out; for three levels also the client
    variance) lies within ``chi2_1(level)`` of its minimum. It respects the boundary at 0,
    where Wald intervals fail. Tested against lme4's ``devFunOnly`` criterion and
    ``performance::icc`` in tests/data/models_r/.

    Returns
    -------
    dict
        ``icc``, ``ci_low``, ``ci_high``, ``level``, ``levels`` (2 or 3), ``formula``, ``nobs``,
        ``n_therapists``, ``n_clients`` (three levels), ``var_therapist``, ``var_client``,
        ``var_residual``, ``singular`` (therapist variance estimated at 0), ``ci_method``.
    """
    from alliance.lmm import fit as lmm_fit

    columns = [response, therapist] + ([client] if client else [])
    _require_columns(data, columns, "data")
    rows = data.loc[data[columns].notna().all(axis=1), columns]
    three = client is not None and rows[client].duplicated().any()
    formula = (f"{response} ~ 1 + (1 | {client}) + (1 | {therapist})" if three
               else f"{response} ~ 1 + (1 | {therapist})")
    null = lmm_fit(formula, rows, reml=reml, satterthwaite_df=False)
    dev, structure = _profiled_deviance(null)
    theta = np.asarray(null.theta, dtype=float)
    d0 = float(dev(theta))
    crit = float(stats.chi2.ppf(level, 1))
    it = _theta_index(structure, therapist)
    ic = _theta_index(structure, client) if three else None

    def icc_of(th: np.ndarray) -> float:
        c2 = th[ic] ** 2 if three else 0.0
        return float(th[it] ** 2 / (1.0 + th[it] ** 2 + c2))

    def excess(rho: float) -> float:
        """Profiled criterion at ICC = rho, minus the minimum and the chi-square cut-off."""
        def at(tc: float) -> float:
            th = theta.copy()
            if three:
                th[ic] = tc
            th[it] = math.sqrt(rho * (1.0 + (tc * tc if three else 0.0)) / (1.0 - rho))
            return float(dev(th))
        if not three:
            return at(0.0) - d0 - crit
        from scipy.optimize import minimize_scalar

        tc0 = float(theta[ic])
        best = minimize_scalar(at, bounds=(0.0, max(20.0, 4 * tc0)), method="bounded",
                               options={"xatol": 1e-10})
        return float(min(best.fun, at(tc0))) - d0 - crit

    rho = icc_of(theta)
    low = 0.0 if excess(0.0) <= 0 else _root(excess, 0.0, rho)
    high_end = rho + (1 - rho) / 2
    while excess(high_end) <= 0 and high_end < 1 - 1e-9:
        high_end = 1 - (1 - high_end) / 10
    high = _root(excess, rho, high_end)
    vc = null.random_effects.set_index("group")["variance"]
    return {
        "icc": rho, "ci_low": low, "ci_high": high, "level": level, "levels": 3 if three else 2,
        "formula": formula, "nobs": int(null.nobs), "n_therapists": int(null.ngroups[therapist]),
        "n_clients": int(null.ngroups[client]) if three else int(null.nobs),
        "var_therapist": float(vc[therapist]), "var_client": float(vc[client]) if three else None,
        "var_residual": float(vc["Residual"]), "singular": bool(float(vc[therapist]) <= 0.0),
        "reml": bool(reml),
        "ci_method": f"profile likelihood ({'REML' if reml else 'ML'} criterion, chi-square(1) cut-off)",
    }


# --------------------------------------------------------------------------------------
# Effect sizes at the level each alliance effect is at
# --------------------------------------------------------------------------------------
def within_sd(rows: pd.DataFrame, column: str, client: str = CLIENT) -> float:
    """Within-client SD: SD (n - 1) over the rows of the values centred on each client's mean
    over those rows."""
    x = rows[column].astype(float)
    return float((x - x.groupby(rows[client], sort=False).transform("mean")).std(ddof=1))


def level_effects(summary: ModelSummary, data: pd.DataFrame, levels: Mapping[str, str], response: str,
                  outcome_direction: str = "higher_is_worse", client: str = CLIENT,
                  therapist: str = THERAPIST, level: float = 0.95) -> pd.DataFrame:
    """Effect sizes of alliance terms, each defined at the level the term is at.

    * ``client``: r-equivalent ``r = t / sqrt(t² + df)`` with ``df = n_clients -
      n_coefficients`` (:func:`client_df`), Fisher-z CI with SE ``1/sqrt(df - 1)``: the
      interval rests on the number of clients, as the between-person correlations pooled by
      Flückiger et al. (2018).
    * ``therapist``: the same with the term's df, bounded by the number of therapists
      (:func:`bound_therapist_df`); the interval rests on the therapists.
    * ``within``: ``b * SD_w(x) / SD_w(y)`` with within-client SDs over the fitted rows
      (:func:`within_standardised`); CI from the coefficient's CI; it rests on the session rows.

    Effects are oriented as the benchmark (positive: better alliance, better outcome).

    Returns
    -------
    DataFrame
        ``term``, ``level``, ``effect_size`` (``r`` or ``within_std_b``), ``estimate``,
        ``ci_low``, ``ci_high`` (oriented), ``b``, ``b_ci_low``, ``b_ci_high``, ``t``, ``df``,
        ``n``, ``n_unit`` (clients, therapists or observations), ``ci_method``.
    """
    if outcome_direction not in OUTCOME_DIRECTIONS:
        raise ValueError(f"outcome_direction must be one of {OUTCOME_DIRECTIONS}, got {outcome_direction!r}")
    sign = -1.0 if outcome_direction == "higher_is_worse" else 1.0
    fixed = summary.fixed_effects.set_index("term")
    groups = summary.fit["ngroups"]
    n_clients = int(groups.get(client, summary.fit["nobs"]))
    n_therapists = int(groups.get(therapist, 0))
    rows_out = []
    for term, where in levels.items():
        if where not in EFFECT_LEVELS:
            raise ValueError(f"level of {term!r} is {where!r}; expected one of {EFFECT_LEVELS}")
        if term not in fixed.index:
            raise ValueError(f"term {term!r} is not a fixed effect; the model has {list(fixed.index)}")
        fe = fixed.loc[term]
        b, lo_b, hi_b, t = (float(fe[c]) for c in ("estimate", "ci_low", "ci_high", "t"))
        row = {"term": term, "level": where, "b": b, "b_ci_low": lo_b, "b_ci_high": hi_b, "t": t}
        if where == "within":
            rows = _model_rows(summary_result_stub(summary), data)
            es = within_standardised(b, lo_b, hi_b, within_sd(rows, term, client), within_sd(rows, response, client))
            lo, hi = sorted((sign * es["ci_low"], sign * es["ci_high"]))
            row.update(effect_size="within_std_b", estimate=sign * es["estimate"], ci_low=lo, ci_high=hi,
                       df=float(fe["df"]), n=int(summary.fit["nobs"]), n_unit="observations",
                       ci_method="b * SD_w(x) / SD_w(y) (within-client SDs); the coefficient's "
                                 f"{level:.0%} CI (t, Satterthwaite df) scaled alike")
        else:
            if where == "client":
                df, n, unit = client_df(n_clients, len(fixed)), n_clients, "clients"
                how = "df = clients - coefficients"
            else:
                df, n, unit = float(fe["df"]), n_therapists, "therapists"
                how = "df = the term's df, at most therapists - therapist-level predictors - 1"
            r = r_from_t(t, df, level)
            lo, hi = sorted((sign * r["ci_low"], sign * r["ci_high"]))
            row.update(effect_size="r", estimate=sign * r["r"], ci_low=lo, ci_high=hi, df=df, n=n, n_unit=unit,
                       ci_method=f"r = t/sqrt(t^2 + df), {how}; Fisher-z CI with SE 1/sqrt(df - 1)")
        rows_out.append(row)
    columns = ["term", "level", "effect_size", "estimate", "ci_low", "ci_high", "b", "b_ci_low", "b_ci_high",
               "t", "df", "n", "n_unit", "ci_method"]
    return pd.DataFrame(rows_out, columns=columns)


@dataclass
class _FormulaStub:
    formula: str
    nobs: int


def summary_result_stub(summary: ModelSummary) -> _FormulaStub:
    """What :func:`_model_rows` needs of a fit (formula, nobs), from its summary."""
    return _FormulaStub(summary.fit["formula"], int(summary.fit["nobs"]))
