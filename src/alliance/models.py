"""Multilevel models linking the alliance to outcome.

Pure functions on DataFrames, in three groups:

* **Data preparation** from the long scores table of ``docs/data_contract.md`` (columns
  ``client``, ``therapist``, ``session``, ``instrument``, ``respondent``, ``rater``,
  ``scale``, ``score``): a client-level dataset (early alliance, baseline, post, residualised
  change, rate of change) and a session-level dataset, person-mean centring (Curran & Bauer,
  2011), lags within client, linear detrending (Wang & Maxwell, 2015), and the
  therapist-mean decomposition of Baldwin, Wampold & Imel (2007).
* **Model specifications**: (1) early alliance -> outcome, (2) therapist vs client
  contributions with a Wald test of the difference of the two slopes, (3) within- vs
  between-client lagged session model (Falkenström, Granström & Holmqvist, 2013) and its
  reverse direction, (4) trait-like vs state-like alliance (Zilcha-Mano, 2017).
  Every model is fitted through :func:`fit_model`, which calls :func:`alliance.lmm.fit`
  (``engine="alliance"``) or statsmodels' MixedLM through it (``engine="statsmodels"``).
* **Summaries**: :func:`model_summary` adds standardised coefficients, marginal and
  conditional R² (Nakagawa & Schielzeth, 2013; Johnson, 2014, for random slopes), the
  therapists' share of variance, N per level and an r-equivalent of an alliance effect
  (Rosenthal, 1991) to compare with the meta-analytic benchmark (Flückiger et al., 2018).

Tested (tests/test_models.py) against lme4 1.1-31 / lmerTest 3.1-3 fits of the reference
study in ``tests/data/models/`` (client-level data and the three-level session model,
through this module's own data path), hand-worked examples and simulations with known
variance components.

References
----------
Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling the alliance-outcome
correlation: exploring the relative importance of therapist and patient variability in the
alliance. *Journal of Consulting and Clinical Psychology*, 75, 842–852.
Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and between-person
effects in longitudinal models of change. *Annual Review of Psychology*, 62, 583–619.
Falkenström, F., Granström, F., & Holmqvist, R. (2013). Therapeutic alliance predicts
symptomatic improvement session by session. *Journal of Counseling Psychology*, 60, 317–328.
Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
models of individual change in psychotherapy process research. *Journal of Consulting and
Clinical Psychology*, 85, 537–549.
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
Wang, L. P., & Maxwell, S. E. (2015). On disaggregating between-person and within-person
effects with longitudinal data using multilevel models. *Psychological Methods*, 20, 63–83.
Zilcha-Mano, S. (2017). Is the alliance really therapeutic? Revisiting this question in
light of recent methodological advances. *American Psychologist*, 72, 311–325.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import require_columns as _require_columns
from scipy import stats

__all__ = [
    "NotEstimableError",
    "check_estimable",
    "BENCHMARK",
    "score_series",
    "client_level_data",
    "session_level_data",
    "person_mean_centre",
    "lag_within_client",
    "detrend_within_client",
    "therapist_mean_decomposition",
    "residualised_change",
    "client_slopes",
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
    "variance_components",
    "nakagawa_r2",
    "standardised_coefficients",
    "r_from_t",
    "r_equivalents",
    "cluster_resample",
    "cluster_bootstrap",
    "bootstrap_intervals",
    "specification_grid",
    "specification_curve",
    "ModelSummary",
    "model_summary",
    "write_model_outputs",
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

CLIENT, THERAPIST, SESSION, SCORE = "client", "therapist", "session", "score"


class NotEstimableError(ValueError):
    """A model or specification cannot be estimated from these data: no complete rows, no
    more complete rows than fixed effects, or a grouping factor with fewer than two levels.

    The workflow records it (``fit.json`` with ``"status": "not estimable"`` and the reason)
    and goes on; any other error still stops the run. The message says what was missing in
    words and counts, never an id.
    """

FIXED_EFFECT_COLUMNS = ["term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high", "std_estimate"]
RANDOM_EFFECT_COLUMNS = ["group", "term1", "term2", "variance", "sd", "corr"]
OUTCOME_DIRECTIONS = ("higher_is_worse", "higher_is_better")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A column counts as constant within a group when its range there is below this share of its
# overall scale: client means computed by different summation orders differ in the last bits.
_CONSTANT_RTOL = 1e-10


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------
def _check_identifier(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} cannot be used in a model formula; use letters, digits and "
            "underscores only, starting with a letter or underscore"
        )
    return name


def _check_unique_sessions(data: pd.DataFrame, by: str, session: str, what: str) -> None:
    dup = data.duplicated([by, session])
    if dup.any():
        row = data.loc[dup].iloc[0]
        raise ValueError(
            f"{what} has more than one row for {by} {row[by]!r} at {session} {row[session]!r}; "
            f"expected one row per {by} and {session}"
        )


def _numeric(data: pd.DataFrame, column: str, what: str) -> pd.Series:
    values = data[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise ValueError(f"{what} column {column!r} must be numeric, got dtype {values.dtype}")
    return values.astype(float)


def _integer_sessions(data: pd.DataFrame, session: str, what: str) -> pd.Series:
    values = pd.to_numeric(data[session], errors="coerce")
    bad = values.isna() | (values % 1 != 0)
    if bad.any():
        raise ValueError(
            f"{what} column {session!r} must hold whole session numbers; "
            f"row {data.index[bad.to_numpy()][0]!r} has {data.loc[bad, session].iloc[0]!r}"
        )
    return values.astype("int64")


# --------------------------------------------------------------------------------------
# Series from the scores table
# --------------------------------------------------------------------------------------
def _measure_key(measure: Sequence[str], what: str) -> tuple[str, str | None, str]:
    if isinstance(measure, str) or len(measure) not in (2, 3):
        raise ValueError(
            f"{what} must be (instrument, scale) or (instrument, respondent, scale), got {measure!r}"
        )
    if len(measure) == 2:
        return measure[0], None, measure[1]
    return measure[0], measure[1], measure[2]


def score_series(scores: pd.DataFrame, instrument: str, scale: str,
                 respondent: str | None = None) -> pd.DataFrame:
    """One measure's scores, one row per client and session.

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    instrument, scale : str
        Which instrument and scale.
    respondent : str, optional
        ``client``, ``therapist`` or ``observer``. Needed when the instrument and scale are
        scored for more than one respondent.

    Returns
    -------
    DataFrame
        Columns ``client``, ``therapist``, ``session``, ``score``, ``n_ratings``, sorted by
        client and session. Several ratings of one session (observers: one per rater) are
        averaged; rows with a missing score are left out before averaging.
    """
    _require_columns(scores, [CLIENT, THERAPIST, SESSION, "instrument", "respondent", "scale", SCORE], "scores")
    rows = (scores["instrument"] == instrument) & (scores["scale"] == scale)
    if respondent is not None:
        rows &= scores["respondent"] == respondent
    else:
        found = sorted(scores.loc[rows, "respondent"].dropna().unique().tolist())
        if len(found) > 1:
            raise ValueError(
                f"instrument {instrument!r} scale {scale!r} is scored for respondents {found}; "
                "name the respondent"
            )
    picked = scores.loc[rows & scores[SCORE].notna(), [CLIENT, THERAPIST, SESSION, SCORE]]
    if picked.empty:
        who = "" if respondent is None else f" respondent {respondent!r}"
        raise NotEstimableError(f"scores has no non-missing score for instrument {instrument!r} scale {scale!r}{who}")
    picked = picked.assign(**{SESSION: _integer_sessions(picked, SESSION, "scores"),
                              SCORE: _numeric(picked, SCORE, "scores")})
    out = (picked.groupby([CLIENT, SESSION], sort=True)
           .agg(therapist=(THERAPIST, "first"), score=(SCORE, "mean"), n_ratings=(SCORE, "size"))
           .reset_index())
    return out[[CLIENT, THERAPIST, SESSION, SCORE, "n_ratings"]]


def _first_therapist(*series: pd.DataFrame) -> pd.Series:
    """The therapist at each client's earliest session (as ``clients.parquet`` defines it)."""
    rows = pd.concat([s[[CLIENT, THERAPIST, SESSION]] for s in series], ignore_index=True)
    rows = rows.sort_values([CLIENT, SESSION], kind="mergesort")
    return rows.groupby(CLIENT, sort=True)[THERAPIST].first()


def _client_therapists(clients: pd.DataFrame | None, *series: pd.DataFrame) -> pd.Series:
    if clients is not None and THERAPIST in clients.columns:
        return clients.drop_duplicates(CLIENT).set_index(CLIENT)[THERAPIST]
    return _first_therapist(*series)


def _early_frame(scores: pd.DataFrame, early: Any, instrument: str, respondent: str | None,
                 scale: str) -> pd.DataFrame:
    """Early alliance per client (index ``client``): ``early_alliance`` and ``n_early``."""
    if isinstance(early, pd.DataFrame):
        _require_columns(early, ["early_alliance"], "early")
        frame = early.set_index(CLIENT) if CLIENT in early.columns else early
        out = frame[["early_alliance"]].copy()
        out["n_early"] = frame["n_sessions"] if "n_sessions" in frame.columns else np.nan
        return out
    if isinstance(early, pd.Series):
        return pd.DataFrame({"early_alliance": early, "n_early": np.nan})
    if early is not None and not isinstance(early, Mapping):
        raise ValueError(f"early must be a definition mapping, a Series or a DataFrame, got {early!r}")
    from alliance.scoring import early_alliance  # one definition of early alliance, the scoring module's

    table = early_alliance(scores, early, instrument=instrument, respondent=respondent, scale=scale)
    return table.set_index(CLIENT)[["early_alliance", "n_sessions"]].rename(columns={"n_sessions": "n_early"})


# --------------------------------------------------------------------------------------
# Client-level data
# --------------------------------------------------------------------------------------
def residualised_change(baseline: pd.Series, post: pd.Series) -> pd.Series:
    """Residuals of the ordinary least-squares regression of post on baseline.

    Residualised change (Cronbach & Furby, 1970) removes the part of the post score that
    baseline predicts; it is missing where either score is missing.
    """
    both = baseline.notna() & post.notna()
    if both.sum() < 3:
        raise ValueError(f"residualised change needs at least 3 clients with baseline and post, got {int(both.sum())}")
    x, y = baseline[both].to_numpy(float), post[both].to_numpy(float)
    if np.ptp(x) == 0:
        raise ValueError("residualised change: baseline is constant across clients")
    slope, intercept = np.polyfit(x, y, 1)
    out = pd.Series(np.nan, index=post.index, name="change_resid")
    out[both] = y - (intercept + slope * x)
    return out


def client_slopes(series: pd.DataFrame, value: str = SCORE, by: str = CLIENT,
                  time: str = SESSION) -> pd.Series:
    """Each client's ordinary least-squares slope of ``value`` over ``time``.

    Missing (NaN) for clients with fewer than two distinct time points. Computed from
    per-client sums, so all clients are done at once.
    """
    _require_columns(series, [by, time, value], "series")
    d = series[[by, time, value]].dropna()
    t = d[time].astype(float)
    x = d[value].astype(float)
    sums = pd.DataFrame({by: d[by], "n": 1.0, "t": t, "x": x, "tt": t * t, "tx": t * x}).groupby(by, sort=True).sum()
    sxx = sums["tt"] - sums["t"] ** 2 / sums["n"]
    sxy = sums["tx"] - sums["t"] * sums["x"] / sums["n"]
    # Relative guard: a single time point gives sxx = 0 up to rounding.
    degenerate = sxx <= 1e-12 * sums["tt"].clip(lower=1.0)
    return (sxy / sxx).where(~degenerate).rename("slope")


def _baseline_post(outcome: pd.DataFrame, baseline_max_session: int | None) -> pd.DataFrame:
    ordered = outcome.sort_values([CLIENT, SESSION], kind="mergesort")
    g = ordered.groupby(CLIENT, sort=True)
    out = pd.DataFrame({
        "baseline": g[SCORE].first(), "baseline_session": g[SESSION].first(),
        "post": g[SCORE].last(), "post_session": g[SESSION].last(), "n_outcome": g.size(),
    })
    if baseline_max_session is not None:
        late = out["baseline_session"] > baseline_max_session
        out.loc[late, ["baseline", "baseline_session"]] = np.nan
    # A single outcome measurement is a baseline, not a post-treatment score.
    out.loc[out["n_outcome"] < 2, ["post", "post_session"]] = np.nan
    return out


def client_level_data(scores: pd.DataFrame, outcome: Sequence[str], alliance: Sequence[str],
                      early: Mapping[str, Any] | pd.Series | pd.DataFrame | None = None,
                      covariates: Sequence[str] = (), clients: pd.DataFrame | None = None,
                      baseline_max_session: int | None = None) -> pd.DataFrame:
    """One row per client: early alliance, baseline, post, change and rate of change.

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    outcome : tuple
        ``(instrument, scale)`` or ``(instrument, respondent, scale)`` of the outcome.
    alliance : tuple
        ``(instrument, respondent, scale)`` (or ``(instrument, scale)``) of the alliance.
    early : mapping, Series or DataFrame, optional
        Early-alliance definition passed to :func:`alliance.scoring.early_alliance`
        (``{"method": "session_k" | "mean_1_to_k" | "first_up_to_k", "k": k}``; default
        ``{"method": "mean_1_to_k", "k": 3}``, the mean of sessions 1-3), or precomputed
        values: a Series indexed by client, or a DataFrame with ``early_alliance`` (and
        ``client``) columns such as that function returns.
    covariates : sequence of str
        Columns of ``clients`` to carry along.
    clients : DataFrame, optional
        ``clients.parquet`` (``client``, ``therapist``, covariates). Its ``therapist`` column,
        when present, gives each client's therapist.
    baseline_max_session : int, optional
        If given, a client whose first outcome score comes later than this session has no
        baseline (a first score after the early-alliance sessions is not a pre-treatment
        score).

    Returns
    -------
    DataFrame
        Columns ``client``, ``therapist`` (the therapist of the client's first session unless
        ``clients`` says otherwise), ``early_alliance``, ``n_early`` (sessions it rests on; NaN
        when precomputed values without counts are passed), ``baseline``,
        ``baseline_session``, ``post`` (the last outcome score; missing when the client has
        only one), ``post_session``, ``n_outcome``, ``change`` (post - baseline),
        ``change_resid`` (:func:`residualised_change`), ``slope`` (:func:`client_slopes` of the
        outcome over sessions), then the covariates. One row per client found in either
        measure; nothing is dropped here: the model fit drops incomplete rows and says so.

    Notes
    -----
    Reproduces ``clients_derived.csv`` of the lme4 reference (``ref_lme4.R``: early = mean of
    sessions 1-3, baseline = session-1 symptoms, post = last-session symptoms) to 1e-9.
    """
    o_instr, o_resp, o_scale = _measure_key(outcome, "outcome")
    a_instr, a_resp, a_scale = _measure_key(alliance, "alliance")
    out_series = score_series(scores, o_instr, o_scale, o_resp)
    all_series = score_series(scores, a_instr, a_scale, a_resp)
    early_frame = _early_frame(scores, early, a_instr, a_resp, a_scale)
    ids = pd.Index(sorted(set(out_series[CLIENT]) | set(all_series[CLIENT])), name=CLIENT)
    data = pd.DataFrame(index=ids)
    data[THERAPIST] = _client_therapists(clients, out_series, all_series).reindex(ids)
    data = data.join(early_frame).join(_baseline_post(out_series, baseline_max_session))
    if early_frame["n_early"].notna().all():  # known counts; a client without alliance scores has 0
        data["n_early"] = data["n_early"].fillna(0).astype("int64")
    data["n_outcome"] = data["n_outcome"].fillna(0).astype("int64")
    data["change"] = data["post"] - data["baseline"]
    data["change_resid"] = residualised_change(data["baseline"], data["post"])
    data["slope"] = client_slopes(out_series).reindex(ids)
    data = data.reset_index()
    if covariates:
        if clients is None:
            raise ValueError(f"covariates {list(covariates)} requested but no clients table given")
        _require_columns(clients, [CLIENT, *covariates], "clients")
        clash = [c for c in covariates if c in data.columns]
        if clash:
            raise ValueError(f"covariate name(s) {clash} clash with derived columns; rename them")
        data = data.merge(clients.drop_duplicates(CLIENT)[[CLIENT, *covariates]], on=CLIENT, how="left")
    return data


# --------------------------------------------------------------------------------------
# Session-level data, centring, lags, detrending
# --------------------------------------------------------------------------------------
def session_level_data(scores: pd.DataFrame, outcome: Sequence[str], alliance: Sequence[str],
                       clients: pd.DataFrame | None = None, covariates: Sequence[str] = (),
                       outcome_name: str = "symptoms", alliance_name: str = "alliance") -> pd.DataFrame:
    """One row per client and session with the outcome and the alliance side by side.

    Parameters
    ----------
    scores : DataFrame
        The long scores table.
    outcome, alliance : tuple
        As in :func:`client_level_data`.
    clients : DataFrame, optional
        ``clients.parquet``; gives the therapist and ``covariates``.
    outcome_name, alliance_name : str
        Names of the two score columns in the result.

    Returns
    -------
    DataFrame
        Columns ``client``, ``therapist``, ``session``, ``outcome_name``, ``alliance_name``
        (then covariates), one row for every session at which either measure was taken
        (the other is NaN where it was not), sorted by client and session. Each client keeps
        one therapist, that of the client's first session (or the clients table), so that
        clients stay nested in therapists.
    """
    _check_identifier(outcome_name, "outcome_name")
    _check_identifier(alliance_name, "alliance_name")
    o_instr, o_resp, o_scale = _measure_key(outcome, "outcome")
    a_instr, a_resp, a_scale = _measure_key(alliance, "alliance")
    out_series = score_series(scores, o_instr, o_scale, o_resp)
    all_series = score_series(scores, a_instr, a_scale, a_resp)
    data = pd.merge(
        out_series[[CLIENT, SESSION, SCORE]].rename(columns={SCORE: outcome_name}),
        all_series[[CLIENT, SESSION, SCORE]].rename(columns={SCORE: alliance_name}),
        on=[CLIENT, SESSION], how="outer",
    ).sort_values([CLIENT, SESSION], kind="mergesort")
    therapist = _client_therapists(clients, out_series, all_series)
    data.insert(1, THERAPIST, data[CLIENT].map(therapist))
    if covariates:
        if clients is None:
            raise ValueError(f"covariates {list(covariates)} requested but no clients table given")
        _require_columns(clients, [CLIENT, *covariates], "clients")
        data = data.merge(clients.drop_duplicates(CLIENT)[[CLIENT, *covariates]], on=CLIENT, how="left")
    return data.reset_index(drop=True)


def person_mean_centre(data: pd.DataFrame, column: str, by: str = CLIENT,
                       within: str | None = None, between: str | None = None,
                       grand: str | None = "clients") -> pd.DataFrame:
    """Split a time-varying variable into within- and between-person parts.

    ``within = x - mean_i(x)`` (person-mean centring) and
    ``between = mean_i(x) - grand mean`` (Curran & Bauer, 2011; Raudenbush & Bryk, 2002,
    ch. 5). The person mean is taken over the person's non-missing values.

    Parameters
    ----------
    data : DataFrame
    column : str
        The variable to split.
    by : str
        The person (cluster) column.
    within, between : str, optional
        Result column names; default ``{column}_cw`` and ``{column}_cm``.
    grand : {"clients", "observations", None}
        Grand mean subtracted from the person means: the mean of the person means (each
        person weighs the same; the lme4 reference's choice), the mean over all rows, or
        nothing. It shifts the intercept only.

    Returns
    -------
    DataFrame
        A copy of ``data`` with the two columns added.
    """
    _require_columns(data, [by, column], "data")
    x = _numeric(data, column, "data")
    person_mean = x.groupby(data[by]).transform("mean")
    if grand == "clients":
        centre = x.groupby(data[by]).mean().mean()
    elif grand == "observations":
        centre = x.mean()
    elif grand is None:
        centre = 0.0
    else:
        raise ValueError(f"grand must be 'clients', 'observations' or None, got {grand!r}")
    out = data.copy()
    out[within or f"{column}_cw"] = x - person_mean
    out[between or f"{column}_cm"] = person_mean - centre
    return out


def lag_within_client(data: pd.DataFrame, column: str, by: str = CLIENT, session: str = SESSION,
                      lag: int = 1, name: str | None = None) -> pd.DataFrame:
    """The value of ``column`` at session ``t - lag`` of the same client.

    Gaps: the lagged value is taken from the row whose session number is exactly
    ``t - lag``. If that session was not observed (missed, or the measure was not taken),
    the lag is missing: a value is never carried over from an earlier session, because the
    lag then spans a different time interval (Falkenström et al., 2017). A negative ``lag``
    gives the value at a later session (a lead).

    Parameters
    ----------
    data : DataFrame
        One row per client and session.
    column : str
    by, session : str
        Client and session columns.
    lag : int, default 1
    name : str, optional
        Result column; default ``{column}_lag`` (``{column}_lag{lag}`` for other lags,
        ``{column}_next`` for ``lag = -1``).

    Returns
    -------
    DataFrame
        A copy of ``data`` with the lagged column added, rows in the original order.
    """
    _require_columns(data, [by, session, column], "data")
    if not isinstance(lag, (int, np.integer)) or lag == 0:
        raise ValueError(f"lag must be a non-zero whole number, got {lag!r}")
    sessions = _integer_sessions(data, session, "data")
    _check_unique_sessions(data.assign(**{session: sessions}), by, session, "data")
    if name is None:
        name = {1: f"{column}_lag", -1: f"{column}_next"}.get(int(lag), f"{column}_lag{lag}")
    source = pd.DataFrame({by: data[by].to_numpy(), "_target": sessions.to_numpy() + int(lag),
                           name: data[column].to_numpy()})
    keys = pd.DataFrame({by: data[by].to_numpy(), "_target": sessions.to_numpy()})
    lagged = keys.merge(source, on=[by, "_target"], how="left", validate="one_to_one")
    out = data.copy()
    out[name] = lagged[name].to_numpy()
    return out


def detrend_within_client(data: pd.DataFrame, column: str, by: str = CLIENT, time: str = SESSION,
                          name: str | None = None) -> pd.DataFrame:
    """Residual of each client's own linear trend of ``column`` over ``time``.

    Wang & Maxwell (2015) detrend a time-varying predictor before taking its within-person
    part, so that a shared time trend of predictor and outcome is not read as a
    within-person effect. A client with fewer than two distinct time points is centred on
    the client's mean instead (no trend can be estimated).

    Returns
    -------
    DataFrame
        A copy of ``data`` with column ``name`` (default ``{column}_dt``): the residual,
        missing where ``column`` is.
    """
    _require_columns(data, [by, time, column], "data")
    x = _numeric(data, column, "data")
    t = _numeric(data, time, "data").where(x.notna())
    slopes = client_slopes(pd.DataFrame({by: data[by], time: t, column: x}), column, by, time)
    slope = data[by].map(slopes).fillna(0.0).to_numpy()
    g = data[by]
    x_mean = x.groupby(g).transform("mean")
    t_mean = t.groupby(g).transform("mean")
    out = data.copy()
    out[name or f"{column}_dt"] = (x - x_mean) - slope * (t - t_mean)
    return out


def therapist_mean_decomposition(data: pd.DataFrame, column: str = "early_alliance",
                                 therapist: str = THERAPIST, mean_name: str | None = None,
                                 deviation_name: str | None = None,
                                 grand: str | None = "therapists") -> pd.DataFrame:
    """Split a client-level variable into the therapist's mean and the client's deviation.

    Baldwin, Wampold & Imel (2007): ``therapist mean = mean of the variable over the
    therapist's clients`` (centred on the grand mean), ``client deviation = client's value -
    therapist mean``. In a regression on both, the therapist-mean slope is the
    between-therapist effect and the deviation slope the within-therapist (client) effect.

    Parameters
    ----------
    data : DataFrame
        One row per client.
    column : str
    therapist : str
    mean_name, deviation_name : str, optional
        Default ``{column}_tm`` and ``{column}_cd``.
    grand : {"therapists", "clients", None}
        Subtracted from the therapist means: the mean of the therapist means, the mean over
        clients, or nothing (affects the intercept only).

    Returns
    -------
    DataFrame
        A copy with the two columns. Clients with a missing value get a missing deviation
        and do not count towards their therapist's mean. A therapist with one client has
        deviation 0 for that client.
    """
    _require_columns(data, [therapist, column], "data")
    if data[therapist].isna().any():
        raise ValueError(f"data column {therapist!r} has missing therapist ids (row {data.index[data[therapist].isna()][0]!r})")
    x = _numeric(data, column, "data")
    t_mean = x.groupby(data[therapist]).transform("mean")
    if grand == "therapists":
        centre = x.groupby(data[therapist]).mean().mean()
    elif grand == "clients":
        centre = x.mean()
    elif grand is None:
        centre = 0.0
    else:
        raise ValueError(f"grand must be 'therapists', 'clients' or None, got {grand!r}")
    out = data.copy()
    out[mean_name or f"{column}_tm"] = t_mean - centre
    out[deviation_name or f"{column}_cd"] = x - t_mean
    return out


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
    from alliance.lmm import fit as lmm_fit  # lazy: data preparation works without the engine

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
    from alliance.lmm.formula import parse_formula  # lazy: data preparation works without the engine

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
    "residualised_change": ("change_resid", False),
    "rate_of_change": ("slope", True),
}


def early_outcome_formula(variant: str = "post", covariates: Sequence[str] = (),
                          alliance: str = "early_alliance", therapist: str = THERAPIST) -> str:
    """Formula of the client-level model (1).

    * ``post``: ``post ~ early_alliance + baseline + covariates + (1 | therapist)``;
    * ``residualised_change``: ``change_resid ~ early_alliance + covariates + (1 | therapist)``
      (baseline is already partialled out of the response);
    * ``rate_of_change``: ``slope ~ early_alliance + baseline + covariates + (1 | therapist)``.
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
    effect; Raudenbush & Bryk, 2002, ch. 5), so its Satterthwaite df are the contrast's.

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


# --------------------------------------------------------------------------------------
# Summaries: variance components, R², standardised coefficients, r-equivalents
# --------------------------------------------------------------------------------------
def _model_rows(result: Any, data: pd.DataFrame) -> pd.DataFrame:
    """The rows the model was fitted to: complete on every formula variable."""
    from alliance.lmm import parse_formula

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


# --------------------------------------------------------------------------------------
# Cluster bootstrap
# --------------------------------------------------------------------------------------
BOOTSTRAP_STAGES = ("therapists", "clients", "therapists_then_clients")


def cluster_resample(data: pd.DataFrame, rng: np.random.Generator, stages: str = "therapists",
                     therapist: str = THERAPIST, client: str = CLIENT) -> pd.DataFrame:
    """One cluster bootstrap sample of nested data.

    ``stages``:

    * ``"therapists"``: therapists drawn with replacement, each with all its clients and
      their rows (resampling the top level only; Davison & Hinkley, 1997, sec. 3.8,
      strategy 1, which they recommend: it keeps the within-therapist structure intact);
    * ``"clients"``: clients drawn with replacement (all their rows), therapists ignored:
      for two-level data or a therapist-free sensitivity check;
    * ``"therapists_then_clients"``: therapists drawn with replacement, then each drawn
      therapist's clients drawn with replacement (strategy 2). It adds the client-level
      variance a second time and so overstates the variance when the therapist variance is
      small (Davison & Hinkley, 1997, sec. 3.8): a conservative variant.

    Repeated draws get new ids (``id#k``), so that a therapist or client drawn twice enters
    the model as two clusters.
    """
    if stages not in BOOTSTRAP_STAGES:
        raise ValueError(f"stages must be one of {BOOTSTRAP_STAGES}, got {stages!r}")
    _require_columns(data, [therapist, client], "data")
    if data[[therapist, client]].isna().any().any():
        raise ValueError(f"data has missing {therapist!r} or {client!r} ids; drop those rows first")
    rows = data.reset_index(drop=True)
    c_codes, c_labels = pd.factorize(rows[client], sort=True)
    rows_of = np.split(np.argsort(c_codes, kind="stable"), np.cumsum(np.bincount(c_codes))[:-1])
    if stages == "clients":
        groups = [np.arange(len(c_labels))]
        group_labels = np.array([""], dtype=object)
        draws = [0]
    else:
        t_codes, group_labels = pd.factorize(rows.groupby(c_codes, sort=True)[therapist].first(), sort=True)
        groups = [np.flatnonzero(t_codes == t) for t in range(len(group_labels))]
        draws = rng.integers(0, len(groups), len(groups))
    picks, t_ids, c_ids = [], [], []
    for k, t in enumerate(draws):
        members = groups[t]
        if stages != "therapists":
            members = members[rng.integers(0, len(members), len(members))]
        for j, c in enumerate(members):
            n = len(rows_of[c])
            picks.append(rows_of[c])
            t_ids.append(np.full(n, f"{group_labels[t]}#{k}", dtype=object))
            c_ids.append(np.full(n, f"{c_labels[c]}#{k}.{j}", dtype=object))
    sample = rows.iloc[np.concatenate(picks)].reset_index(drop=True)
    if stages != "clients":
        sample[therapist] = np.concatenate(t_ids)
    sample[client] = np.concatenate(c_ids)
    return sample


def cluster_bootstrap(data: pd.DataFrame, formula: str, seed: int, replicates: Sequence[int],
                      stages: str = "therapists", therapist: str = THERAPIST, client: str = CLIENT, reml: bool = True,
                      engine: str = "alliance", fit: Callable[..., Any] | None = None) -> pd.DataFrame:
    """Refit a model on cluster bootstrap samples (:func:`cluster_resample`, ``stages``).

    Replicate ``b`` draws from ``numpy.random.default_rng([seed, b])``, so a replicate is the
    same whichever job computes it: ``replicates=range(0, 500)`` and ``range(500, 1000)`` in
    two parallel jobs give the same draws as ``range(0, 1000)`` in one. Satterthwaite df are
    skipped (only estimates are kept).

    Returns
    -------
    DataFrame
        One row per replicate and fixed-effect term: ``replicate``, ``term``, ``estimate``,
        ``converged``, ``singular``, ``error`` (the message when the refit failed; then one
        row with term and estimate missing). Failed refits are kept, not dropped, so that
        their number is reported.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    out = []
    for b in replicates:
        sample = cluster_resample(data, np.random.default_rng([int(seed), int(b)]), stages, therapist, client)
        try:
            res = fit_model(formula, sample, reml=reml, engine=engine, fit=fit,
                            options={"satterthwaite_df": False})
        except (ValueError, np.linalg.LinAlgError) as exc:
            out.append({"replicate": int(b), "term": None, "estimate": math.nan, "converged": False,
                        "singular": False, "error": str(exc)})
            continue
        for term, est in res.fixed_effects["estimate"].items():
            out.append({"replicate": int(b), "term": term, "estimate": float(est),
                        "converged": bool(res.converged), "singular": bool(res.singular), "error": ""})
    return pd.DataFrame(out, columns=["replicate", "term", "estimate", "converged", "singular", "error"])


def bootstrap_intervals(draws: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Percentile intervals from :func:`cluster_bootstrap` draws (all jobs concatenated).

    Returns
    -------
    DataFrame
        Per term: ``n_replicates`` (successful refits), ``n_failed`` (refits that raised),
        ``n_not_converged``, ``mean``, ``se`` (SD of the draws), ``ci_low``, ``ci_high``
        (the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles).
    """
    _require_columns(draws, ["replicate", "term", "estimate", "converged", "error"], "draws")
    if draws.duplicated(["replicate", "term"]).any():
        raise ValueError("draws has a replicate twice; the jobs' replicate ranges overlap")
    failed = int(draws.loc[draws["error"].fillna("") != "", "replicate"].nunique())
    ok = draws.loc[draws["term"].notna()]
    g = ok.groupby("term", sort=False)
    q = (1 - level) / 2
    return pd.DataFrame({
        "n_replicates": g["estimate"].size(),
        "n_failed": failed,
        "n_not_converged": g["converged"].apply(lambda c: int((~c.astype(bool)).sum())),
        "mean": g["estimate"].mean(),
        "se": g["estimate"].std(ddof=1),
        "ci_low": g["estimate"].quantile(q),
        "ci_high": g["estimate"].quantile(1 - q),
    }).rename_axis("term").reset_index()


# --------------------------------------------------------------------------------------
# Multiverse (specification curve)
# --------------------------------------------------------------------------------------
def specification_grid(early_definitions: Mapping[str, Any], outcomes: Mapping[str, Sequence[str]],
                       respondents: Sequence[str], covariate_sets: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Every combination of early-alliance definition, outcome, respondent and covariate set.

    Each argument maps a short label to its value (``respondents`` is a list of respondent
    names); the labels form the ``spec`` id ``early__outcome__respondent__covariates``, one
    job each (Simonsohn, Simmons & Nelson, 2020).

    Returns
    -------
    DataFrame
        Columns ``spec``, ``early``, ``outcome``, ``respondent``, ``covariates`` (labels) and
        ``early_definition``, ``outcome_measure``, ``covariate_columns`` (values).
    """
    parts = {"early": early_definitions, "outcome": outcomes,
             "respondent": {r: r for r in respondents}, "covariates": covariate_sets}
    for name, options in parts.items():
        if not options:
            raise ValueError(f"specification grid: no {name} options given")
        for label in options:
            if not isinstance(label, str) or not re.match(r"^[A-Za-z0-9_.-]+$", label) or "__" in label:
                raise ValueError(f"specification grid: {name} label {label!r} must be letters, digits, '.', '-', "
                                 "single '_' (it becomes part of a file name)")
    rows = []
    for e, ev in early_definitions.items():
        for o, ov in outcomes.items():
            for r in respondents:
                for c, cv in covariate_sets.items():
                    rows.append({"spec": f"{e}__{o}__{r}__{c}", "early": e, "outcome": o, "respondent": r,
                                 "covariates": c, "early_definition": ev, "outcome_measure": tuple(ov),
                                 "covariate_columns": tuple(cv)})
    return pd.DataFrame(rows)


def specification_curve(estimates: pd.DataFrame) -> pd.DataFrame:
    """Order specification results for the specification-curve figure and table.

    Parameters
    ----------
    estimates : DataFrame
        One row per specification with ``spec``, ``estimate``, ``ci_low``, ``ci_high``,
        ``p`` (and any label columns), e.g. the alliance term of each model, best as
        ``r_benefit`` and its CI so that outcomes on different scales are comparable.

    Returns
    -------
    DataFrame
        Sorted by estimate, with ``rank`` (1 = smallest) and ``significant`` (p < .05); the
        median estimate and the share of significant specifications in ``attrs``.
    """
    _require_columns(estimates, ["spec", "estimate", "ci_low", "ci_high", "p"], "estimates")
    if estimates["spec"].duplicated().any():
        raise ValueError(f"estimates has spec {estimates['spec'][estimates['spec'].duplicated()].iloc[0]!r} twice")
    out = estimates.sort_values(["estimate", "spec"], kind="mergesort").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out["significant"] = out["p"] < 0.05
    out.attrs["median_estimate"] = float(out["estimate"].median())
    out.attrs["share_significant"] = float(out["significant"].mean())
    return out


def write_model_outputs(summary: ModelSummary, outdir: str | Path) -> dict[str, Path]:
    """Write ``fixed_effects.csv``, ``random_effects.csv`` and ``fit.json`` into ``outdir``.

    ``fit.json`` also carries the standardisation basis, the r-equivalents and the
    contrasts. Numbers are written at full precision (:mod:`alliance.outputs`).
    """
    from alliance.outputs import write_csv, write_json

    outdir = Path(outdir)
    paths = {name: outdir / name for name in ("fixed_effects.csv", "random_effects.csv", "fit.json")}
    write_csv(summary.fixed_effects, paths["fixed_effects.csv"])
    write_csv(summary.random_effects, paths["random_effects.csv"])
    info = dict(summary.fit)
    info["standardisation"] = _records(summary.standardisation)
    info["r_equivalents"] = _records(summary.r_equivalents)
    info["contrasts"] = [_plain_dict(c) for c in summary.contrasts]
    write_json(_plain_dict(info), paths["fit.json"])
    return paths


def _plain_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, np.generic):
        return _plain_value(value.item())
    if isinstance(value, Mapping):
        return _plain_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


def _plain_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _plain_value(v) for k, v in d.items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_plain_dict(r) for r in frame.to_dict(orient="records")]
