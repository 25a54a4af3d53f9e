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
    "variance_components",
    "nakagawa_r2",
    "standardised_coefficients",
    "r_from_t",
    "r_equivalents",
    "ModelSummary",
    "model_summary",
]

#: Flückiger et al. (2018), face-to-face psychotherapy: r between alliance and outcome, coded
#: so that a positive r means a better alliance goes with a better outcome.
BENCHMARK = {
    "r": 0.278,
    "ci_low": 0.256,
    "ci_high": 0.299,
    "source": "Flückiger, Del Re, Wampold & Horvath (2018), Psychotherapy 55:316-340; "
    "three-level meta-analysis of 295 studies, face-to-face treatments",
}

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
    response = result.formula.split("~")[0].strip()
    sd_y = float(rows[response].astype(float).std(ddof=1))
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
    }
    r_eq = r_equivalents(result.fixed_effects, alliance_terms, outcome_direction) if alliance_terms else pd.DataFrame()
    return ModelSummary(fixed, random, info, std.reset_index(), r_eq, [dict(c) for c in contrasts])
