"""The model families linking the alliance to outcome.

(1) early alliance -> outcome, (2) therapist vs client contributions with a Wald test of the
difference of the two slopes (Baldwin, Wampold & Imel, 2007), (3) within- vs between-client
lagged session model (Falkenström, Granström & Holmqvist, 2013) and its reverse direction,
(4) trait-like vs state-like alliance (Zilcha-Mano, 2017). Every model is fitted through
:func:`fit_model`, which calls :func:`alliance.lmm.fit` (``engine="alliance"``) or statsmodels'
MixedLM through it (``engine="statsmodels"``). Tested in tests/test_models.py against lme4
1.1-31 / lmerTest 3.1-3 fits of the reference study in ``tests/data/models/``.

References
----------
Falkenström, F., Granström, F., & Holmqvist, R. (2013). Therapeutic alliance predicts
symptomatic improvement session by session. *Journal of Counseling Psychology*, 60, 317–328.
Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
models of individual change in psychotherapy process research. *Journal of Consulting and
Clinical Psychology*, 85, 537–549.
Zilcha-Mano, S. (2017). Is the alliance really therapeutic? Revisiting this question in
light of recent methodological advances. *American Psychologist*, 72, 311–325.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from alliance.errors import require_columns as _require_columns
from alliance.lmm import fit as lmm_fit
from alliance.lmm.formula import parse_formula
from scipy import stats
from alliance.models.data import NotEstimableError, _check_identifier, detrend_within_client, lag_within_client, person_mean_centre, therapist_mean_decomposition
from alliance.models.data import CLIENT, SESSION, THERAPIST

__all__ = [
    "check_estimable",
    "fit_model",
    "early_outcome_formula",
    "fit_early_outcome",
    "therapist_client_formula",
    "fit_therapist_client",
    "slope_difference_test",
    "within_between_data",
    "within_between_formula",
    "fit_within_between",
    "trait_state_data",
    "trait_state_formula",
    "fit_trait_state",
]


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------
def fit_model(formula: str, data: pd.DataFrame, reml: bool = True, engine: str = "alliance",
              fit: Callable[..., Any] | None = None, options: Mapping[str, Any] | None = None) -> Any:
    """Fit one mixed model: the single place where models meet an engine.

    Parameters
    ----------
    formula : str
        lme4 formula.
    data : DataFrame
    reml : bool
    engine : {"alliance", "statsmodels"}
        Passed to :func:`alliance.lmm.fit`; ``"statsmodels"`` fits with MixedLM as a
        cross-check (one grouping factor only).
    fit : callable, optional
        Replacement ``fit(formula, data, reml=...)`` (tests, other engines); ``engine`` and
        ``options`` are then ignored.
    options : mapping, optional
        Further keyword arguments of :func:`alliance.lmm.fit` (e.g.
        ``{"satterthwaite_df": False}`` where only estimates are needed).
    """
    if fit is not None:
        return fit(formula, data, reml=reml)
    check_estimable(formula, data)
    if engine not in ("alliance", "statsmodels"):
        raise ValueError(f"engine must be 'alliance' or 'statsmodels', got {engine!r}")
    return lmm_fit(formula, data, reml=reml, engine=engine, **dict(options or {}))


def check_estimable(formula: str, data: pd.DataFrame) -> int:
    """Check that ``formula`` can be estimated from ``data`` before an engine is asked.

    The rows complete in every model variable must outnumber the fixed effects (intercept
    included), and every grouping factor must have at least two levels among them.

    Returns
    -------
    int
        The number of complete rows.

    Raises
    ------
    NotEstimableError
        Naming the variables that were missing and the counts, never an id.
    """
    parsed = parse_formula(formula)
    variables = [v for v in parsed.variables if v in data.columns]
    if len(variables) < len(parsed.variables):
        return len(data)  # a column the engine will name; not an estimability question
    complete = data[variables].notna().all(axis=1)
    n_rows = int(complete.sum())
    n_fixed = int(parsed.intercept) + len(parsed.fixed_terms)
    if n_rows == 0:
        empty = [v for v in variables if data[v].notna().sum() == 0]
        what = (f"variable(s) {empty} have no non-missing value" if empty
                else f"no row is complete in all of {variables}")
        raise NotEstimableError(f"no rows left after dropping rows with missing values ({len(data)} row(s); {what})")
    if n_rows <= n_fixed:
        raise NotEstimableError(f"{n_rows} complete row(s) for {n_fixed} fixed effect(s); "
                                "a model needs more complete rows than fixed effects")
    for term in parsed.random_terms:
        levels = data.loc[complete, list(term.group)].drop_duplicates()
        if len(levels) < 2:
            raise NotEstimableError(f"grouping factor {term.group_name!r} has {len(levels)} level(s) among the "
                                    f"{n_rows} complete row(s); a random effect needs at least 2")
    return n_rows


def _formula(response: str, fixed: Sequence[str], random: str) -> str:
    _check_identifier(response, "response")
    for term in fixed:
        _check_identifier(term, "predictor")
    if "|" not in random:
        raise ValueError(f"random part {random!r} must contain at least one '(... | group)' term")
    return f"{response} ~ {' + '.join(fixed)} + {random}"


# --------------------------------------------------------------------------------------
# (1) Early alliance -> outcome
# --------------------------------------------------------------------------------------
EARLY_VARIANTS = {
    # variant: (response column, adjust for baseline)
    "post": ("post", True),
    "rate_of_change": ("slope", True),
}
# The two-step residualised change (post regressed on baseline, then on the alliance) is not
# offered: residuals as a response bias the slope towards zero when the alliance correlates
# with baseline (Freckleton, 2002, J. Animal Ecology 71, 542-545), and the baseline-adjusted ``post`` model answers the same question correctly.


def early_outcome_formula(variant: str = "post", covariates: Sequence[str] = (),
                          alliance: str = "early_alliance", therapist: str = THERAPIST) -> str:
    """Formula of the client-level model (1).

    * ``post``: ``post ~ early_alliance + baseline + covariates + (1 | therapist)``;
    * ``rate_of_change``: ``slope ~ early_alliance + baseline + covariates + (1 | therapist)``,
      ``slope`` the client's post-window rate of change from one growth model
      (:func:`alliance.models.growth_slopes`).

    ``covariates`` may include score covariates (:func:`alliance.models.score_covariates`),
    e.g. the outcome's change up to the alliance measurement (Zilcha-Mano, 2017).
    """
    if variant not in EARLY_VARIANTS:
        raise ValueError(f"variant must be one of {list(EARLY_VARIANTS)}, got {variant!r}")
    response, with_baseline = EARLY_VARIANTS[variant]
    fixed = [alliance, *(["baseline"] if with_baseline else []), *covariates]
    return _formula(response, fixed, f"(1 | {_check_identifier(therapist, 'therapist')})")


def fit_early_outcome(client_data: pd.DataFrame, variant: str = "post", covariates: Sequence[str] = (),
                      reml: bool = True, engine: str = "alliance", fit: Callable[..., Any] | None = None,
                      alliance: str = "early_alliance", therapist: str = THERAPIST) -> tuple[Any, str]:
    """Fit model (1): client-level outcome on early alliance with a therapist intercept.

    Returns
    -------
    (result, formula)
    """
    formula = early_outcome_formula(variant, covariates, alliance, therapist)
    return fit_model(formula, client_data, reml=reml, engine=engine, fit=fit), formula


# --------------------------------------------------------------------------------------
# (2) Therapist vs client contributions
# --------------------------------------------------------------------------------------
def therapist_client_formula(response: str = "post", covariates: Sequence[str] = (),
                             alliance: str = "early_alliance", baseline: str | None = "baseline",
                             therapist: str = THERAPIST) -> str:
    """``response ~ {alliance}_tm + {alliance}_cd + baseline + covariates + (1 | therapist)``."""
    fixed = [f"{alliance}_tm", f"{alliance}_cd", *([baseline] if baseline else []), *covariates]
    return _formula(response, fixed, f"(1 | {_check_identifier(therapist, 'therapist')})")


def slope_difference_test(result: Any, term_a: str, term_b: str, df: float | None = None,
                          level: float = 0.95) -> dict[str, float]:
    """Wald test of ``b_a - b_b = 0`` from the fixed-effect covariance matrix.

    ``estimate = b_a - b_b``, ``se = sqrt(V_aa + V_bb - 2 V_ab)`` with ``V = result.vcov``,
    ``z = estimate / se`` with a two-sided normal p-value (Wald chi-square, 1 df). When
    ``df`` is given (e.g. the Satterthwaite df of the same contrast), ``p_t`` and the CI use
    Student's t on ``df``; otherwise they are normal-based.

    Returns
    -------
    dict
        ``contrast``, ``estimate``, ``se``, ``z``, ``p_wald``, ``df``, ``p``, ``ci_low``,
        ``ci_high``.
    """
    vcov = getattr(result, "vcov", None)
    if not isinstance(vcov, pd.DataFrame):
        raise ValueError("the fit result has no 'vcov' DataFrame (covariance of the fixed effects)")
    for term in (term_a, term_b):
        if term not in vcov.index or term not in result.fixed_effects.index:
            raise ValueError(f"term {term!r} is not a fixed effect of the model; it has {list(vcov.index)}")
    b = result.fixed_effects["estimate"]
    est = float(b[term_a] - b[term_b])
    var = float(vcov.loc[term_a, term_a] + vcov.loc[term_b, term_b] - 2 * vcov.loc[term_a, term_b])
    se = math.sqrt(max(var, 0.0))
    z = est / se if se > 0 else math.nan
    p_wald = float(2 * stats.norm.sf(abs(z)))
    dist = stats.t(df) if df is not None and math.isfinite(df) else stats.norm
    p = float(2 * dist.sf(abs(z)))
    q = float(dist.ppf(0.5 + level / 2))
    return {"contrast": f"{term_a} - {term_b}", "estimate": est, "se": se, "z": z, "p_wald": p_wald,
            "df": math.inf if df is None else float(df), "p": p,
            "ci_low": est - q * se, "ci_high": est + q * se}


def fit_therapist_client(client_data: pd.DataFrame, response: str = "post", covariates: Sequence[str] = (),
                         alliance: str = "early_alliance", baseline: str | None = "baseline",
                         reml: bool = True, engine: str = "alliance", fit: Callable[..., Any] | None = None,
                         therapist: str = THERAPIST) -> tuple[Any, str, pd.DataFrame, dict[str, float]]:
    """Fit model (2): therapist-mean and client-deviation slopes of early alliance, and their difference.

    The difference ``b_therapist - b_client`` is tested by :func:`slope_difference_test`
    from the covariance of the fixed effects. Its df come from a second fit of the same
    model, reparameterised as ``response ~ {alliance}_tm + {alliance} + ...``: there the
    coefficient of ``{alliance}_tm`` is exactly ``b_therapist - b_client`` (the contextual
    effect; Raudenbush & Bryk, 2002, ch. 5), so its Satterthwaite df are the contrast's,
    bounded by the number of therapists (therapists - 2) as the therapist-mean term is.

    Returns
    -------
    (result, formula, data, contrast)
        ``data`` is ``client_data`` with ``{alliance}_tm`` and ``{alliance}_cd`` added.
    """
    data = therapist_mean_decomposition(client_data, alliance, therapist)
    formula = therapist_client_formula(response, covariates, alliance, baseline, therapist)
    result = fit_model(formula, data, reml=reml, engine=engine, fit=fit)
    reparam = formula.replace(f"{alliance}_cd", alliance, 1)
    contextual = fit_model(reparam, data, reml=reml, engine=engine, fit=fit)
    df = float(contextual.fixed_effects.loc[f"{alliance}_tm", "df"])
    groups = getattr(result, "ngroups", {}) or {}
    if therapist in groups:
        # a therapist-level contrast: its df cannot exceed what the therapists give
        # (alliance.models.summaries.bound_therapist_df does the same for the _tm term)
        from alliance.models.summaries import therapist_df

        df = min(df, therapist_df(int(groups[therapist]), 1))
    contrast = slope_difference_test(result, f"{alliance}_tm", f"{alliance}_cd", df=df)
    return result, formula, data, contrast


# --------------------------------------------------------------------------------------
# (3) Within- vs between-client lagged session model, and (4) trait- vs state-like
# --------------------------------------------------------------------------------------
def within_between_data(session_data: pd.DataFrame, outcome: str = "symptoms", alliance: str = "alliance",
                        detrend: bool = False, by: str = CLIENT, session: str = SESSION) -> pd.DataFrame:
    """Add the centred and lagged columns that models (3) and its reverse use.

    For the alliance (prefix ``a``) and the outcome (prefix ``s``):
    ``*_cm`` = client mean minus the mean of client means; ``*_cw`` = value minus client mean
    (or, with ``detrend=True``, the residual from the client's own linear trend over
    sessions, Wang & Maxwell, 2015); ``*_cw_lag`` = ``*_cw`` at session t-1 of the same
    client (missing when session t-1 was not observed, see :func:`lag_within_client`); and
    ``{outcome}_lag``, ``{alliance}_lag``: the raw scores at t-1.
    """
    _require_columns(session_data, [by, session, outcome, alliance], "session_data")
    data = session_data
    for column, prefix in ((alliance, "a"), (outcome, "s")):
        data = person_mean_centre(data, column, by, within=f"{prefix}_cw", between=f"{prefix}_cm")
        if detrend:
            data = detrend_within_client(data, column, by, session, name=f"{prefix}_cw")
        data = lag_within_client(data, f"{prefix}_cw", by, session, name=f"{prefix}_cw_lag")
        data = lag_within_client(data, column, by, session, name=f"{column}_lag")
    return data


def within_between_formula(direction: str = "alliance_to_outcome", outcome: str = "symptoms",
                           alliance: str = "alliance", lagged: bool = True, lagged_response: bool = False,
                           covariates: Sequence[str] = (),
                           random: str = "(1 + session | client) + (1 | therapist)") -> str:
    """Formula of the session model (3) or its reverse.

    ``alliance_to_outcome``: ``outcome ~ session + a_cw_lag + a_cm [+ outcome_lag] + random``;
    ``outcome_to_alliance``: ``alliance ~ session + s_cw_lag + s_cm [+ alliance_lag] + random``.
    With ``lagged=False`` the within part is contemporaneous (``a_cw``), as in the lme4
    reference model ``symptoms ~ session + a_cw + a_cm + (1 + session | client_id) +
    (1 | therapist_id)``. ``lagged_response`` adds the response at t-1 (beware: with client
    random intercepts this is biased for short series, Nickell 1981; Falkenström et al., 2017).
    """
    if direction == "alliance_to_outcome":
        response, prefix = outcome, "a"
    elif direction == "outcome_to_alliance":
        response, prefix = alliance, "s"
    else:
        raise ValueError(f"direction must be 'alliance_to_outcome' or 'outcome_to_alliance', got {direction!r}")
    within = f"{prefix}_cw_lag" if lagged else f"{prefix}_cw"
    fixed = ["session", within, f"{prefix}_cm", *([f"{response}_lag"] if lagged_response else []), *covariates]
    return _formula(response, fixed, random)


def fit_within_between(session_data: pd.DataFrame, direction: str = "alliance_to_outcome",
                       outcome: str = "symptoms", alliance: str = "alliance", detrend: bool = False,
                       lagged: bool = True, lagged_response: bool = False, covariates: Sequence[str] = (),
                       random: str = "(1 + session | client) + (1 | therapist)", reml: bool = True,
                       engine: str = "alliance", fit: Callable[..., Any] | None = None) -> tuple[Any, str, pd.DataFrame]:
    """Fit model (3) (Falkenström et al., 2013; Curran & Bauer, 2011) or its reverse direction.

    Returns
    -------
    (result, formula, data)
    """
    data = within_between_data(session_data, outcome, alliance, detrend)
    formula = within_between_formula(direction, outcome, alliance, lagged, lagged_response, covariates, random)
    return fit_model(formula, data, reml=reml, engine=engine, fit=fit), formula, data


def trait_state_data(session_data: pd.DataFrame, outcome: str = "symptoms", alliance: str = "alliance",
                     by: str = CLIENT, session: str = SESSION) -> pd.DataFrame:
    """Trait-like and state-like alliance with next-session outcome (Zilcha-Mano, 2017).

    ``alliance_trait`` = the client's mean alliance over all sessions minus the mean of
    client means; ``alliance_state`` = the session's alliance minus the client's mean;
    ``{outcome}_next`` = the outcome at session t+1 of the same client (missing when t+1
    was not observed).
    """
    _require_columns(session_data, [by, session, outcome, alliance], "session_data")
    data = person_mean_centre(session_data, alliance, by, within="alliance_state", between="alliance_trait")
    return lag_within_client(data, outcome, by, session, lag=-1, name=f"{outcome}_next")


def trait_state_formula(outcome: str = "symptoms", covariates: Sequence[str] = (),
                        random: str = "(1 | client) + (1 | therapist)") -> str:
    """``{outcome}_next ~ session + alliance_trait + alliance_state + {outcome} + random``.

    The current outcome is controlled so that the state-like effect is on the change to the
    next session. The model is the lagged model (3) with the lagged response, written
    forwards; it differs from (3) in its default random part (intercepts only).
    """
    return _formula(f"{outcome}_next", ["session", "alliance_trait", "alliance_state", outcome, *covariates], random)


def fit_trait_state(session_data: pd.DataFrame, outcome: str = "symptoms", alliance: str = "alliance",
                    covariates: Sequence[str] = (), random: str = "(1 | client) + (1 | therapist)",
                    reml: bool = True, engine: str = "alliance",
                    fit: Callable[..., Any] | None = None) -> tuple[Any, str, pd.DataFrame]:
    """Fit model (4). Returns ``(result, formula, data)``."""
    data = trait_state_data(session_data, outcome, alliance)
    formula = trait_state_formula(outcome, covariates, random)
    return fit_model(formula, data, reml=reml, engine=engine, fit=fit), formula, data
