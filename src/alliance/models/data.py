"""Alliance-outcome datasets from the long scores table.

The long scores table of ``docs/data_contract.md`` (columns ``client``, ``therapist``,
``session``, ``instrument``, ``respondent``, ``rater``, ``scale``, ``score``) becomes a
client-level dataset (early alliance, baseline, post, rate of change, score covariates) and a
session-level dataset; person-mean centring (Curran & Bauer, 2011), lags within client, linear
detrending (Wang & Maxwell, 2015) and the therapist-mean decomposition of Baldwin, Wampold &
Imel (2007). Tested in tests/test_models.py against lme4/lmerTest fits of the reference study
(through this data path) and hand-worked examples.

References
----------
Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling the alliance-outcome
correlation. *Journal of Consulting and Clinical Psychology*, 75, 842–852.
Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and between-person
effects in longitudinal models of change. *Annual Review of Psychology*, 62, 583–619.
Wang, L. P., & Maxwell, S. E. (2015). On disaggregating between-person and within-person
effects with longitudinal data using multilevel models. *Psychological Methods*, 20, 63–83.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import describe_value, first_row, shape_of
from alliance.errors import require_columns as _require_columns

__all__ = [
    "NotEstimableError",
    "score_series",
    "client_level_data",
    "session_level_data",
    "person_mean_centre",
    "lag_within_client",
    "detrend_within_client",
    "therapist_mean_decomposition",
    "score_covariates",
    "growth_slopes",
    "client_slopes",
    "SharedFrames",
    "SCORE_COLUMNS",
]

CLIENT, THERAPIST, SESSION, SCORE = "client", "therapist", "session", "score"
#: The columns of the long scores table that the model datasets are built from (a reader
#: projects onto them: the table's other columns, rater and item counts, are not used here).
SCORE_COLUMNS = [CLIENT, THERAPIST, SESSION, "instrument", "respondent", "scale", SCORE]


class NotEstimableError(ValueError):
    """A model or specification cannot be estimated from these data: no complete rows, no
    more complete rows than fixed effects, or a grouping factor with fewer than two levels.

    The workflow records it (``fit.json`` with ``"status": "not estimable"`` and the reason)
    and goes on; any other error still stops the run. The message says what was missing in
    words and counts, never an id.
    """

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        label = first_row(data, dup.to_numpy())
        row = data.loc[dup].iloc[0]
        raise ValueError(
            f"{what} has more than one row for the same {by} at {session} {describe_value(row[session])} "
            f"(row {label!r}; the {by} is {shape_of(str(row[by]))}); expected one row per {by} and {session}"
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
    from alliance.scoring.scores import early_alliance  # one definition of early alliance, the scoring module's

    table = early_alliance(scores, early, instrument=instrument, respondent=respondent, scale=scale)
    return table.set_index(CLIENT)[["early_alliance", "n_sessions"]].rename(columns={"n_sessions": "n_early"})


class SharedFrames:
    """The frames several model datasets of one study have in common, each computed once.

    A study's declared models and multiverse specifications use few measures, early-alliance
    definitions and early-alliance windows, each many times: a score series per measure, the
    early alliance per definition and measure, the growth-model slopes (one mixed-model fit,
    :func:`growth_slopes`) per outcome and window, and the score covariates per definition.
    :func:`client_level_data` and :func:`session_level_data` take them from here, so that
    building every dataset of a study in one pass computes each of them once. The frames
    handed out are shared: callers must not change them in place (the dataset builders
    only join, reindex and copy them).

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``), at least :data:`SCORE_COLUMNS`.
    """

    def __init__(self, scores: pd.DataFrame) -> None:
        self.scores = scores
        self._frames: dict[tuple, pd.DataFrame] = {}

    def _shared(self, key: tuple, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        if key not in self._frames:
            self._frames[key] = compute()
        return self._frames[key]

    def series(self, measure: Sequence[str]) -> pd.DataFrame:
        """:func:`score_series` of ``(instrument, respondent, scale)`` (or ``(instrument, scale)``)."""
        instrument, respondent, scale = _measure_key(measure, "measure")
        return self._shared(("series", instrument, respondent, scale),
                            lambda: score_series(self.scores, instrument, scale, respondent))

    def early(self, early: Any, alliance: Sequence[str]) -> pd.DataFrame:
        """Early alliance per client (index ``client``: ``early_alliance``, ``n_early``) of a
        definition mapping, or of precomputed values (then not kept)."""
        instrument, respondent, scale = _measure_key(alliance, "alliance")
        if early is not None and not isinstance(early, Mapping):
            return _early_frame(self.scores, early, instrument, respondent, scale)
        key = ("early", _definition_key(early), instrument, respondent, scale)
        return self._shared(key, lambda: _early_frame(self.scores, early, instrument, respondent, scale))

    def slopes(self, outcome: Sequence[str], window_end: int | None) -> pd.DataFrame:
        """:func:`growth_slopes` of the outcome's series after session ``window_end``."""
        key = ("slopes", *_measure_key(outcome, "outcome"), window_end)
        return self._shared(key, lambda: growth_slopes(self.series(outcome), window_end))

    def score_covariates(self, definitions: Mapping[str, Mapping[str, Any]], window_end: int | None) -> pd.DataFrame:
        """:func:`score_covariates` of ``definitions`` with the window ending at ``window_end``."""
        key = ("score_covariates", _definition_key(definitions), window_end)
        return self._shared(key, lambda: score_covariates(self.scores, definitions, window_end, frames=self))


def _definition_key(definition: Any) -> str:
    """A config mapping as a hashable key (the same for equal mappings in any key order)."""
    return json.dumps(definition, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------
# Client-level data
# --------------------------------------------------------------------------------------
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


def growth_slopes(series: pd.DataFrame, after_session: int | None = None, min_points: int = 3,
                  value: str = SCORE, by: str = CLIENT, time: str = SESSION) -> pd.DataFrame:
    """Each client's rate of change after the early window, from one multilevel growth model.

    The rows of sessions later than ``after_session`` of the clients with at least
    ``min_points`` of them are fitted by ML in ``value ~ t + (1 + t | client)`` (``t`` =
    session minus ``after_session``); a client's slope is the fixed slope plus the client's
    conditional mode (empirical Bayes). This weighs each client's own OLS slope by its
    precision (Raudenbush & Bryk, 2002, ch. 3): a slope from few or noisy points is pulled
    towards the mean slope instead of entering the second-stage model as if it were exact.

    Returns
    -------
    DataFrame
        Index ``client``; ``slope`` (NaN for clients with fewer than ``min_points``
        post-window sessions) and ``n_slope`` (the post-window sessions it rests on).
    """
    _require_columns(series, [by, time, value], "series")
    d = series[[by, time, value]].dropna()
    if after_session is not None:
        d = d.loc[d[time] > after_session]
    n_points = d.groupby(by, sort=True)[time].nunique()
    out = pd.DataFrame({"slope": np.nan, "n_slope": 0}, index=pd.Index(sorted(series[by].unique()), name=by))
    out.loc[n_points.index, "n_slope"] = n_points.to_numpy()
    keep = n_points.index[n_points >= min_points]
    if len(keep) < 3:
        return out
    d = d.loc[d[by].isin(keep)]
    frame = pd.DataFrame({"y": d[value].astype(float).to_numpy(), "client": d[by].to_numpy(),
                          "t": (d[time] - (after_session or 0)).astype(float).to_numpy()})
    from alliance.lmm import fit as lmm_fit  # lazy: data preparation works without the engine

    growth = lmm_fit("y ~ t + (1 + t | client)", frame, reml=False, satterthwaite_df=False)
    modes = growth.ranef["client"]
    fixed = float(growth.fixed_effects.loc["t", "estimate"])
    out.loc[modes.index, "slope"] = fixed + modes["t"].to_numpy()
    return out


SCORE_STATISTICS = ("level", "mean", "change")


def score_covariates(scores: pd.DataFrame, definitions: Mapping[str, Mapping[str, Any]],
                     window_end: int | None, frames: SharedFrames | None = None) -> pd.DataFrame:
    """Client-level covariates from the scores table, one column per definition.

    Parameters
    ----------
    scores : DataFrame
        The long scores table.
    definitions : mapping
        ``name -> {instrument, respondent (optional), scale (default total), statistic,
        sessions}``. ``sessions`` is ``[first, last]`` (default ``[1, window_end]``, the
        early-alliance window); ``statistic`` is ``level`` (the score at the latest session
        in the window), ``mean`` (mean of the window's scores) or ``change`` (latest minus
        earliest score in the window; missing with fewer than two sessions).
    window_end : int or None
        The last session of the early-alliance window, the default end of ``sessions``.
    frames : SharedFrames, optional
        Score series already computed from ``scores`` (:class:`SharedFrames`).

    Returns
    -------
    DataFrame
        Index ``client``, one column per name.
    """
    frames = frames if frames is not None else SharedFrames(scores)
    columns = {}
    for name, spec in definitions.items():
        _check_identifier(name, "score covariate name")
        where = f"score covariate {name!r}"
        if not isinstance(spec, Mapping) or not spec.get("instrument"):
            raise ValueError(f"{where}: give a mapping with instrument, scale, statistic and sessions")
        statistic = spec.get("statistic", "level")
        if statistic not in SCORE_STATISTICS:
            raise ValueError(f"{where}: statistic {statistic!r} is not one of {', '.join(SCORE_STATISTICS)}")
        sessions = spec.get("sessions") or [1, window_end]
        if (len(sessions) != 2 or any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) for v in sessions)
                or sessions[0] > sessions[1]):
            raise ValueError(f"{where}: sessions must be [first, last] whole session numbers, got {sessions!r}"
                             + (" (no early-alliance window to default to)" if window_end is None else ""))
        series = frames.series((str(spec["instrument"]), spec.get("respondent"), str(spec.get("scale") or "total")))
        inside = series.loc[series[SESSION].between(*sessions)].sort_values([CLIENT, SESSION], kind="mergesort")
        g = inside.groupby(CLIENT, sort=True)[SCORE]
        if statistic == "level":
            columns[name] = g.last()
        elif statistic == "mean":
            columns[name] = g.mean()
        else:
            columns[name] = (g.last() - g.first()).where(g.size() >= 2)
    return pd.DataFrame(columns)


def _window_end(early: Any) -> int | None:
    """Last session of the early-alliance window of a definition mapping (None when given values)."""
    if early is None:
        return 3
    if isinstance(early, Mapping):
        return int(early.get("k", 3))
    return None


def _baseline_post(outcome: pd.DataFrame, baseline_max_session: int | None,
                   window_end: int | None = None) -> pd.DataFrame:
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
    # A last score inside the early-alliance window is not an outcome of that alliance.
    out["post_in_window"] = False
    if window_end is not None:
        out["post_in_window"] = out["post_session"].notna() & (out["post_session"] <= window_end)
    out.loc[out["post_in_window"], ["post", "post_session"]] = np.nan
    return out


def client_level_data(scores: pd.DataFrame, outcome: Sequence[str], alliance: Sequence[str],
                      early: Mapping[str, Any] | pd.Series | pd.DataFrame | None = None,
                      covariates: Sequence[str] = (), clients: pd.DataFrame | None = None,
                      baseline_max_session: int | None = None,
                      score_covariate_definitions: Mapping[str, Mapping[str, Any]] | None = None,
                      frames: SharedFrames | None = None) -> pd.DataFrame:
    """One row per client: early alliance, baseline, post, change, rate of change, covariates.

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    outcome : tuple
        ``(instrument, scale)`` or ``(instrument, respondent, scale)`` of the outcome.
    alliance : tuple
        ``(instrument, respondent, scale)`` (or ``(instrument, scale)``) of the alliance.
    early : mapping, Series or DataFrame, optional
        Early-alliance definition passed to :func:`alliance.scoring.scores.early_alliance`
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
    score_covariate_definitions : mapping, optional
        Covariates computed from the scores table (:func:`score_covariates`), e.g. the
        outcome's change from intake to the end of the early-alliance window.
    frames : SharedFrames, optional
        Frames already computed from ``scores`` for other datasets of the same study (score
        series, early alliance, growth slopes; :class:`SharedFrames`), reused instead of
        recomputed. Default: computed here.

    Returns
    -------
    DataFrame
        Columns ``client``, ``therapist`` (the therapist of the client's first session unless
        ``clients`` says otherwise), ``early_alliance``, ``n_early`` (sessions it rests on; NaN
        when precomputed values without counts are passed), ``baseline``,
        ``baseline_session``, ``post`` (the last outcome score; missing when the client has
        only one or when it lies inside the early-alliance window, sessions 1..k of a
        definition mapping), ``post_session``, ``n_outcome``, ``post_in_window`` (True where
        a last score inside the window was set aside), ``change`` (post - baseline),
        ``slope`` and ``n_slope`` (:func:`growth_slopes` over the sessions after the window,
        clients with at least 3 of them), then the covariates and the score covariates. One
        row per client found in either measure; nothing is dropped here: the model fit drops
        incomplete rows and says so. ``attrs["n_post_in_early_window"]`` counts the clients
        whose post score was set aside.

    Notes
    -----
    Reproduces ``clients_derived.csv`` of the lme4 reference (``ref_lme4.R``: early = mean of
    sessions 1-3, baseline = session-1 symptoms, post = last-session symptoms) to 1e-9.
    """
    frames = frames if frames is not None else SharedFrames(scores)
    outcome, alliance = _measure_key(outcome, "outcome"), _measure_key(alliance, "alliance")
    out_series, all_series = frames.series(outcome), frames.series(alliance)
    early_frame = frames.early(early, alliance)
    ids = pd.Index(sorted(set(out_series[CLIENT]) | set(all_series[CLIENT])), name=CLIENT)
    data = pd.DataFrame(index=ids)
    data[THERAPIST] = _client_therapists(clients, out_series, all_series).reindex(ids)
    window_end = _window_end(early)
    data = data.join(early_frame).join(_baseline_post(out_series, baseline_max_session, window_end))
    if early_frame["n_early"].notna().all():  # known counts; a client without alliance scores has 0
        data["n_early"] = data["n_early"].fillna(0).astype("int64")
    data["n_outcome"] = data["n_outcome"].fillna(0).astype("int64")
    data["change"] = data["post"] - data["baseline"]
    data["post_in_window"] = data["post_in_window"].fillna(False).astype(bool)
    slopes = frames.slopes(outcome, window_end)
    data["slope"] = slopes["slope"].reindex(ids)
    data["n_slope"] = slopes["n_slope"].reindex(ids).fillna(0).astype("int64")
    if score_covariate_definitions:
        extra = frames.score_covariates(score_covariate_definitions, window_end)
        clash = [c for c in extra.columns if c in data.columns or c in covariates]
        if clash:
            raise ValueError(f"score covariate name(s) {clash} clash with other columns; rename them")
        data = data.join(extra)
    n_in_window = int(data["post_in_window"].sum())
    data = data.reset_index()
    data.attrs["n_post_in_early_window"] = n_in_window
    if covariates:
        if clients is None:
            raise ValueError(f"covariates {list(covariates)} requested but no clients table given")
        _require_columns(clients, [CLIENT, *covariates], "clients")
        clash = [c for c in covariates if c in data.columns]
        if clash:
            raise ValueError(f"covariate name(s) {clash} clash with derived columns; rename them")
        data = data.merge(clients.drop_duplicates(CLIENT)[[CLIENT, *covariates]], on=CLIENT, how="left")
        data.attrs["n_post_in_early_window"] = n_in_window
    return data


# --------------------------------------------------------------------------------------
# Session-level data, centring, lags, detrending
# --------------------------------------------------------------------------------------
def session_level_data(scores: pd.DataFrame, outcome: Sequence[str], alliance: Sequence[str],
                       clients: pd.DataFrame | None = None, covariates: Sequence[str] = (),
                       outcome_name: str = "symptoms", alliance_name: str = "alliance",
                       frames: SharedFrames | None = None) -> pd.DataFrame:
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
    frames : SharedFrames, optional
        Score series already computed from ``scores`` (:class:`SharedFrames`).

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
    frames = frames if frames is not None else SharedFrames(scores)
    out_series = frames.series(_measure_key(outcome, "outcome"))
    all_series = frames.series(_measure_key(alliance, "alliance"))
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
