"""Rupture–repair episodes in session-by-session alliance ratings.

A *rupture* is a drop of the alliance from one observed session to the next by at least
``c`` standard deviations; a *repair* is a return to at least the pre-rupture level within a
fixed number of sessions (the V-shape of Stiles et al., 2004). Following Gumz et al. (2012)
the SD is the stricter (larger) of the within-client and the between-client SD, and results
are reported for ``c = 1`` and ``c = 2`` side by side.

Input is the alliance series of one instrument / respondent / scale taken from the long
scores table of ``docs/data_contract.md``: a DataFrame with columns ``client``, ``session``
and ``score``. Everything below is vectorised over all clients at once (sort, shift and
bounded look-ahead), so a million sessions take about a second.

References
----------
Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). Crisis-repair sequences:
considerations on the classification and assessment of breaches in the therapeutic
relationship. *BMC Medical Research Methodology*, 12, 10.
Stiles, W. B., Glick, M. J., Osatuke, K., et al. (2004). Patterns of alliance development
and the rupture-repair hypothesis. *Journal of Counseling Psychology*, 51, 81–92.
McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A.
(2014). Patterns of therapeutic alliance: rupture-repair episodes in prolonged exposure for
PTSD. *Journal of Consulting and Clinical Psychology*, 82, 112–121.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import require_columns as _require_columns
from alliance.lmm import fit as lmm_fit

__all__ = [
    "EPISODE_COLUMNS",
    "COUNT_COLUMNS",
    "rupture_sd",
    "detect_ruptures",
    "rupture_counts",
    "rupture_summary",
    "rupture_outcome_data",
    "rupture_outcome_formula",
    "rupture_outcome_model",
]

EPISODE_COLUMNS = [
    "client",
    "pre_session",
    "rupture_session",
    "n_drops",
    "pre_score",
    "rupture_score",
    "depth",
    "depth_sd",
    "sd",
    "threshold_sd",
    "threshold",
    "repaired",
    "repair_session",
    "repair_score",
    "sessions_to_repair",
    "censored",
]

COUNT_COLUMNS = ["client", "n_ruptures", "n_repaired", "n_unrepaired", "n_censored"]

SD_BASES = ("stricter", "stricter_per_client", "within", "between")

# Relative tolerance for "at least": a drop that equals the threshold up to floating-point
# rounding (e.g. 7 - 5 against 2 * 1.0) counts, as the definition says "at least".
_REL_TOL = 1e-9

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------
def _integer_sessions(session: pd.Series) -> np.ndarray:
    values = pd.to_numeric(session, errors="coerce")
    if values.isna().any():
        row = session.index[values.isna().to_numpy()][0]
        raise ValueError(
            f"column 'session' must hold integer session numbers; row {row!r} has "
            f"{session.loc[row]!r}"
        )
    values = values.to_numpy(dtype=float)
    bad = values != np.round(values)
    if bad.any():
        row = session.index[bad][0]
        raise ValueError(
            f"column 'session' must hold integer session numbers; row {row!r} has "
            f"{session.loc[row]!r}"
        )
    return values.astype(np.int64)


def _numeric_scores(score: pd.Series) -> np.ndarray:
    values = pd.to_numeric(score, errors="coerce")
    not_numeric = values.isna() & score.notna()
    if not_numeric.any():
        row = score.index[not_numeric.to_numpy()][0]
        raise ValueError(f"column 'score' must be numeric; row {row!r} has {score.loc[row]!r}")
    values = values.to_numpy(dtype=float)
    infinite = np.isinf(values)
    if infinite.any():
        row = score.index[infinite][0]
        raise ValueError(f"column 'score' must be finite; row {row!r} has {values[infinite][0]}")
    return values


def _prepare_series(series: pd.DataFrame) -> pd.DataFrame:
    """Validated copy: NaN scores dropped, sorted by client and session, unique keys."""
    _require_columns(series, ["client", "session", "score"], "series")
    if series["client"].isna().any():
        row = series.index[series["client"].isna().to_numpy()][0]
        raise ValueError(f"column 'client' has a missing id in row {row!r}")
    session = _integer_sessions(series["session"])
    score = _numeric_scores(series["score"])
    keep = ~np.isnan(score)
    out = pd.DataFrame(
        {
            "client": series["client"].to_numpy()[keep],
            "session": session[keep],
            "score": score[keep],
        }
    )
    out = out.sort_values(["client", "session"], kind="mergesort", ignore_index=True)
    duplicated = out.duplicated(["client", "session"]).to_numpy()
    if duplicated.any():
        first = out.loc[np.flatnonzero(duplicated)[0]]
        raise ValueError(
            "series must have one score per client and session; client "
            f"{first['client']!r} has more than one score at session {first['session']}"
        )
    return out


def _check_positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------
# Standard deviations
# --------------------------------------------------------------------------------------
def _client_codes(prepared: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(prepared["client"], sort=False)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _variance_parts(codes: np.ndarray, score: np.ndarray, n_clients: int) -> dict[str, Any]:
    counts = np.bincount(codes, minlength=n_clients).astype(float)
    sums = np.bincount(codes, weights=score, minlength=n_clients)
    means = sums / counts
    residual = score - means[codes]
    ss = np.bincount(codes, weights=residual**2, minlength=n_clients)
    return {"counts": counts, "means": means, "ss": ss}


def _pooled_within_sd(parts: dict[str, Any]) -> float:
    df = parts["counts"].sum() - len(parts["counts"])
    return float(np.sqrt(parts["ss"].sum() / df)) if df > 0 else float("nan")


def _between_sd(parts: dict[str, Any]) -> float:
    means = parts["means"]
    return float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")


def _per_client_sd(parts: dict[str, Any]) -> np.ndarray:
    df = parts["counts"] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(df > 0, np.sqrt(parts["ss"] / np.where(df > 0, df, 1)), np.nan)


def _sd_by_client(parts: dict[str, Any], sd_basis: str | float) -> np.ndarray:
    """The SD that scales the rupture threshold, one value per client (NaN: undefined)."""
    n_clients = len(parts["counts"])
    if not isinstance(sd_basis, str):
        return np.full(n_clients, _check_positive_number(sd_basis, "sd_basis"))
    if sd_basis not in SD_BASES:
        raise ValueError(
            f"sd_basis must be one of {SD_BASES} or a positive number, got {sd_basis!r}"
        )
    within, between = _pooled_within_sd(parts), _between_sd(parts)
    if sd_basis == "within":
        return np.full(n_clients, within)
    if sd_basis == "between":
        return np.full(n_clients, between)
    if sd_basis == "stricter":
        return np.full(n_clients, _nanmax(within, between))
    own = _per_client_sd(parts)
    return np.fmax(own, between)


def _nanmax(a: float, b: float) -> float:
    return float(np.fmax(a, b))


def rupture_sd(series: pd.DataFrame) -> dict[str, float]:
    """Within-client and between-client standard deviations of an alliance series.

    Parameters
    ----------
    series : DataFrame
        Columns ``client``, ``session``, ``score`` (one row per client and session; rows with
        a missing score are ignored).

    Returns
    -------
    dict
        ``within``: pooled within-client SD, ``sqrt(sum_i sum_t (x_it - mean_i)^2 / (N - K))``
        with N scores in K clients (clients with one session add no degrees of freedom);
        ``between``: SD (ddof = 1) of the K client means; ``stricter``: the larger of the two
        (Gumz et al., 2012). NaN where undefined (no within-client replication, one client).

    Notes
    -----
    Tested against a hand computation on explicit numbers (tests/test_ruptures.py).
    """
    prepared = _prepare_series(series)
    codes, uniques = _client_codes(prepared)
    parts = _variance_parts(codes, prepared["score"].to_numpy(), len(uniques))
    within, between = _pooled_within_sd(parts), _between_sd(parts)
    return {"within": within, "between": between, "stricter": _nanmax(within, between)}


# --------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------
def _drop_flags(
    codes: np.ndarray,
    session: np.ndarray,
    score: np.ndarray,
    threshold: np.ndarray,
    max_gap: int | None,
) -> np.ndarray:
    """True where the score fell from the previous observed session by >= threshold."""
    n = len(score)
    flags = np.zeros(n, dtype=bool)
    if n < 2:
        return flags
    same_client = codes[1:] == codes[:-1]
    drop = score[:-1] - score[1:]
    thr = threshold[1:]
    enough = (drop > 0) & (drop >= thr - _REL_TOL * np.maximum(1.0, np.abs(thr)))
    if max_gap is not None:
        enough &= (session[1:] - session[:-1]) <= max_gap
    flags[1:] = same_client & enough
    return flags


def _episode_bounds(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the first and last drop of each run of consecutive drops."""
    previous = np.concatenate(([False], flags[:-1]))
    following = np.concatenate((flags[1:], [False]))
    starts = np.flatnonzero(flags & ~previous)
    ends = np.flatnonzero(flags & ~following)
    return starts, ends


def _find_repairs(
    codes: np.ndarray,
    session: np.ndarray,
    score: np.ndarray,
    ends: np.ndarray,
    pre_score: np.ndarray,
    repair_window: int,
) -> np.ndarray:
    """Row index of the first session within the window at or above the pre-rupture level.

    Sessions are unique and increasing within a client, so at most ``repair_window`` rows
    follow the rupture inside the window: a look-ahead of that many rows is exhaustive.
    """
    n = len(score)
    repair_row = np.full(len(ends), -1, dtype=np.int64)
    tol = _REL_TOL * np.maximum(1.0, np.abs(pre_score))
    for k in range(1, repair_window + 1):
        rows = ends + k
        inside = rows < n
        rows_c = np.where(inside, rows, n - 1)
        candidate = (
            inside
            & (repair_row < 0)
            & (codes[rows_c] == codes[ends])
            & (session[rows_c] - session[ends] <= repair_window)
            & (score[rows_c] >= pre_score - tol)
        )
        repair_row[candidate] = rows_c[candidate]
    return repair_row


def _empty_episodes() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=float) for name in EPISODE_COLUMNS})
    frame["client"] = frame["client"].astype(object)
    for name in ("pre_session", "rupture_session", "n_drops"):
        frame[name] = frame[name].astype(np.int64)
    frame["repaired"] = frame["repaired"].astype(bool)
    frame["censored"] = frame["censored"].astype(bool)
    frame["repair_session"] = frame["repair_session"].astype("Int64")
    frame["sessions_to_repair"] = frame["sessions_to_repair"].astype("Int64")
    return frame


def detect_ruptures(
    series: pd.DataFrame,
    c: float,
    repair_window: int,
    sd_basis: str | float = "stricter",
    max_gap: int | None = None,
) -> pd.DataFrame:
    """Find rupture–repair episodes in session-by-session alliance scores.

    Parameters
    ----------
    series : DataFrame
        Columns ``client``, ``session`` (integer), ``score`` (numeric). One row per client and
        session; rows whose score is missing are dropped first (a missing score is treated
        like a session that was not observed).
    c : float
        Threshold in SD units: a rupture is a drop of at least ``c * SD``.
    repair_window : int
        A repair must happen within this many *session numbers* after the rupture session.
    sd_basis : {"stricter", "stricter_per_client", "within", "between"} or float
        The SD that scales the threshold. ``"stricter"`` (default): the larger of the pooled
        within-client SD and the between-client SD of client means (see :func:`rupture_sd`).
        ``"stricter_per_client"``: per client, the larger of that client's own SD and the
        between-client SD (the reading of Gumz et al., 2012, who choose the stricter value
        "in each case"). ``"within"``/``"between"``: that SD alone. A number: a fixed SD in
        score units (e.g. taken from a reference sample).
    max_gap : int, optional
        If given, a drop is only evaluated between observed sessions at most ``max_gap``
        session numbers apart; by default any gap is bridged.

    Returns
    -------
    DataFrame
        One row per episode, sorted by client and rupture session, with columns
        ``client``; ``pre_session``, ``pre_score``: the last observed session before the
        (first) drop; ``rupture_session``, ``rupture_score``: the session ending the drop(s);
        ``n_drops``: number of consecutive qualifying drops merged into the episode;
        ``depth`` = ``pre_score - rupture_score`` (score units) and ``depth_sd`` (in SDs);
        ``sd``: the SD used, ``threshold_sd`` (= ``c``), ``threshold`` (= ``c * sd``, score
        units); ``repaired``; ``repair_session``, ``repair_score`` and
        ``sessions_to_repair`` (= ``repair_session - rupture_session``; missing when not
        repaired); ``censored``: not repaired *and* the client's observations end before the
        repair window closes, so a repair could not have been seen.

    Notes
    -----
    Definitions, applied per client to the observed sessions in session order:

    * **Drop.** A session is a drop when its score is lower than the score of the previous
      *observed* session by at least ``c * SD`` (equality counts, up to a relative
      floating-point tolerance of 1e-9). Missing sessions are bridged: after a gap the
      comparison is with the last observed session (unless ``max_gap`` forbids it), and the
      gap is visible as ``rupture_session - pre_session``.
    * **Consecutive drops** (a drop whose previous observed session was itself a drop) form
      one episode, a staircase decline: its pre-rupture level is the score before the first
      drop, its rupture session the last drop, its depth the total fall, ``n_drops`` > 1.
    * **Repair.** The first observed session ``s`` with
      ``rupture_session < s <= rupture_session + repair_window`` whose score is at least
      ``pre_score`` (the V-shape; Stiles et al., 2004). The window counts session numbers,
      so missing sessions use up the window.
    * Every episode is judged on its own: a new rupture may start before an earlier one is
      repaired, and one later session can repair both.
    * A client with one observed session, or whose scores never fall by the threshold
      (e.g. a constant series), has no episodes. If the SD is zero or undefined (all scores
      equal, or too little data), no drop qualifies.

    The SD rule follows Gumz et al. (2012); 2 SD is the criterion of Stiles et al. (2004).
    Tested on a hand-worked three-client example and on simulated series with injected
    2-SD rupture–repair episodes (precision and recall >= 0.9; tests/test_ruptures.py).
    """
    c = _check_positive_number(c, "c")
    repair_window = _check_positive_int(repair_window, "repair_window")
    if max_gap is not None:
        max_gap = _check_positive_int(max_gap, "max_gap")
    prepared = _prepare_series(series)
    if prepared.empty:
        return _empty_episodes()
    codes, uniques = _client_codes(prepared)
    session = prepared["session"].to_numpy()
    score = prepared["score"].to_numpy()
    parts = _variance_parts(codes, score, len(uniques))
    sd_client = _sd_by_client(parts, sd_basis)
    threshold = (c * sd_client)[codes]
    flags = _drop_flags(codes, session, score, threshold, max_gap)
    starts, ends = _episode_bounds(flags)
    if len(starts) == 0:
        return _empty_episodes()
    labels = prepared["client"].to_numpy()
    return _episode_table(
        labels, codes, session, score, starts, ends, sd_client, c, repair_window
    )


def _episode_table(
    labels: np.ndarray,
    codes: np.ndarray,
    session: np.ndarray,
    score: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    sd_client: np.ndarray,
    c: float,
    repair_window: int,
) -> pd.DataFrame:
    pre = starts - 1
    pre_score = score[pre]
    repair_row = _find_repairs(codes, session, score, ends, pre_score, repair_window)
    repaired = repair_row >= 0
    last_session = np.zeros(len(sd_client), dtype=np.int64)
    np.maximum.at(last_session, codes, session)
    ep_codes = codes[ends]
    censored = ~repaired & (last_session[ep_codes] < session[ends] + repair_window)
    sd = sd_client[ep_codes]
    depth = pre_score - score[ends]
    safe_row = np.where(repaired, repair_row, 0)
    repair_session = pd.array(np.where(repaired, session[safe_row], 0), dtype="Int64")
    repair_session[~repaired] = pd.NA
    return pd.DataFrame(
        {
            "client": labels[ends],
            "pre_session": session[pre],
            "rupture_session": session[ends],
            "n_drops": (ends - starts + 1).astype(np.int64),
            "pre_score": pre_score,
            "rupture_score": score[ends],
            "depth": depth,
            "depth_sd": depth / sd,
            "sd": sd,
            "threshold_sd": np.full(len(ends), c),
            "threshold": c * sd,
            "repaired": repaired,
            "repair_session": repair_session,
            "repair_score": np.where(repaired, score[safe_row], np.nan),
            "sessions_to_repair": repair_session - pd.array(session[ends], dtype="Int64"),
            "censored": censored,
        }
    )


# --------------------------------------------------------------------------------------
# Per-client counts and study summary
# --------------------------------------------------------------------------------------
def rupture_counts(episodes: pd.DataFrame, clients: Iterable[Any]) -> pd.DataFrame:
    """Number of ruptures per client, repaired and unrepaired, including clients with none.

    Parameters
    ----------
    episodes : DataFrame
        Output of :func:`detect_ruptures` (needs ``client``, ``repaired``, ``censored``).
    clients : iterable
        Every client whose series was examined (e.g. ``series["client"].unique()``); clients
        without an episode get zero counts.

    Returns
    -------
    DataFrame
        ``client``, ``n_ruptures``, ``n_repaired``, ``n_unrepaired``
        (= ``n_ruptures - n_repaired``) and ``n_censored`` (the unrepaired episodes whose
        repair window ran past the client's last observed session; a subset of
        ``n_unrepaired``), in the order of ``clients``.
    """
    _require_columns(episodes, ["client", "repaired", "censored"], "episodes")
    client_index = pd.Index(pd.unique(pd.Series(list(clients), dtype=object)))
    unknown = ~episodes["client"].isin(client_index)
    if unknown.any():
        raise ValueError(
            f"episodes contain client {episodes['client'][unknown].iloc[0]!r} that is not "
            "in `clients`; pass every client whose series was examined"
        )
    repaired = episodes["repaired"].astype(bool)
    censored = episodes["censored"].astype(bool) & ~repaired
    grouped = pd.DataFrame(
        {"client": episodes["client"], "r": 1, "rep": repaired, "cen": censored}
    ).groupby("client", sort=False)[["r", "rep", "cen"]].sum()
    grouped = grouped.reindex(client_index, fill_value=0).astype(np.int64)
    return pd.DataFrame(
        {
            "client": client_index.to_numpy(dtype=object),
            "n_ruptures": grouped["r"].to_numpy(),
            "n_repaired": grouped["rep"].to_numpy(),
            "n_unrepaired": (grouped["r"] - grouped["rep"]).to_numpy(),
            "n_censored": grouped["cen"].to_numpy(),
        }
    )


def rupture_summary(
    series: pd.DataFrame,
    cs: Sequence[float] = (1, 2),
    repair_window: int = 3,
    sd_basis: str | float = "stricter",
    max_gap: int | None = None,
) -> pd.DataFrame:
    """Study-level rupture–repair summary for several thresholds, side by side.

    Gumz et al. (2012) recommend reporting the 1-SD and the 2-SD criterion together so that
    studies stay comparable.

    Parameters
    ----------
    series : DataFrame
        ``client``, ``session``, ``score`` (see :func:`detect_ruptures`).
    cs : sequence of float
        Thresholds in SD units, one row each.
    repair_window, sd_basis, max_gap
        As in :func:`detect_ruptures`.

    Returns
    -------
    DataFrame
        One row per ``c``: ``threshold_sd``, ``sd``, ``threshold`` (score units; NaN with
        ``"stricter_per_client"``, where it varies), ``n_clients``, ``n_episodes``,
        ``n_clients_with_rupture``, ``prop_clients_with_rupture``, ``n_repaired``,
        ``n_unrepaired``, ``n_censored``, ``prop_repaired`` (of episodes), ``mean_depth``,
        ``mean_depth_sd``, ``mean_sessions_to_repair`` (repaired episodes),
        ``mean_n_drops``.
    """
    if isinstance(cs, (int, float)) or len(cs) == 0:
        raise ValueError(f"cs must be a non-empty sequence of thresholds, got {cs!r}")
    prepared = _prepare_series(series)
    clients = prepared["client"].unique()
    sd = _common_sd(prepared, sd_basis)
    rows = [
        _summary_row(detect_ruptures(series, c, repair_window, sd_basis, max_gap), c, clients, sd)
        for c in cs
    ]
    return pd.DataFrame(rows)


def _common_sd(prepared: pd.DataFrame, sd_basis: str | float) -> float:
    """The SD shared by all clients, or NaN when it varies by client or is undefined."""
    if prepared.empty:
        return float("nan")
    codes, uniques = _client_codes(prepared)
    parts = _variance_parts(codes, prepared["score"].to_numpy(), len(uniques))
    per_client = _sd_by_client(parts, sd_basis)
    if sd_basis == "stricter_per_client" and len(np.unique(per_client)) > 1:
        return float("nan")
    return float(per_client[0])


def _summary_row(
    episodes: pd.DataFrame, c: float, clients: np.ndarray, sd: float
) -> dict[str, Any]:
    counts = rupture_counts(episodes, clients)
    n_episodes = len(episodes)
    repaired = episodes["repaired"].to_numpy(dtype=bool)
    return {
        "threshold_sd": float(c),
        "sd": sd,
        "threshold": float(c) * sd,
        "n_clients": len(clients),
        "n_episodes": n_episodes,
        "n_clients_with_rupture": int((counts["n_ruptures"] > 0).sum()),
        "prop_clients_with_rupture": float((counts["n_ruptures"] > 0).mean())
        if len(clients)
        else float("nan"),
        "n_repaired": int(repaired.sum()),
        "n_unrepaired": int((~repaired).sum()),
        "n_censored": int(counts["n_censored"].sum()),
        "prop_repaired": float(repaired.mean()) if n_episodes else float("nan"),
        "mean_depth": float(episodes["depth"].mean()) if n_episodes else float("nan"),
        "mean_depth_sd": float(episodes["depth_sd"].mean()) if n_episodes else float("nan"),
        "mean_sessions_to_repair": float(
            episodes.loc[repaired, "sessions_to_repair"].astype(float).mean()
        )
        if repaired.any()
        else float("nan"),
        "mean_n_drops": float(episodes["n_drops"].mean()) if n_episodes else float("nan"),
    }


# --------------------------------------------------------------------------------------
# Link to outcome
# --------------------------------------------------------------------------------------
def rupture_outcome_data(
    episodes: pd.DataFrame, clients: Iterable[Any], outcomes: pd.DataFrame
) -> pd.DataFrame:
    """Client-level dataset: rupture counts merged with outcome data.

    Parameters
    ----------
    episodes : DataFrame
        Output of :func:`detect_ruptures`.
    clients : iterable
        Every client whose alliance series was examined (zero counts for those without
        episodes).
    outcomes : DataFrame
        One row per client with ``client``, ``therapist`` and the outcome (e.g. pre–post
        change) and covariate columns.

    Returns
    -------
    DataFrame
        The rows of ``outcomes`` for clients whose series was examined, with
        ``n_ruptures``, ``n_repaired``, ``n_unrepaired`` and ``n_censored`` added. Clients
        without an alliance series are left out (their rupture count is unknown, not zero).
    """
    _require_columns(outcomes, ["client", "therapist"], "outcomes")
    duplicated = outcomes["client"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"outcomes must have one row per client; client "
            f"{outcomes['client'][duplicated].iloc[0]!r} appears more than once"
        )
    clash = [c for c in COUNT_COLUMNS[1:] if c in outcomes.columns]
    if clash:
        raise ValueError(f"outcomes already has column(s) {clash}; rename them first")
    counts = rupture_counts(episodes, clients)
    return outcomes.merge(counts, on="client", how="inner", validate="one_to_one")


def rupture_outcome_formula(
    outcome: str, covariates: Sequence[str] = (), group: str = "therapist"
) -> str:
    """Formula ``outcome ~ n_repaired + n_unrepaired + covariates + (1 | group)``.

    Names must be plain identifiers (letters, digits, underscores) so that every formula
    parser reads them the same way.
    """
    for name in [outcome, *covariates, group]:
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise ValueError(
                f"column name {name!r} cannot be used in a model formula; use letters, "
                "digits and underscores only"
            )
    fixed = " + ".join(["n_repaired", "n_unrepaired", *covariates])
    return f"{outcome} ~ {fixed} + (1 | {group})"


def rupture_outcome_model(
    client_data: pd.DataFrame,
    outcome: str,
    covariates: Sequence[str] = (),
    fit: Callable[..., Any] | None = None,
    group: str = "therapist",
) -> Any:
    """Multilevel model of outcome on repaired and unrepaired rupture counts.

    Fits ``outcome ~ n_repaired + n_unrepaired + covariates + (1 | therapist)`` with a
    therapist random intercept, by REML (McLaughlin et al., 2014, found unrepaired
    ruptures predicted worse outcome).

    Parameters
    ----------
    client_data : DataFrame
        Output of :func:`rupture_outcome_data`.
    outcome : str
        Outcome column (e.g. pre–post change on the outcome measure).
    covariates : sequence of str
        Further fixed-effect columns (e.g. baseline severity, number of sessions attended:
        longer treatments give more opportunity for ruptures).
    fit : callable, optional
        ``fit(formula, data, reml=True)`` returning a result with a ``fixed_effects``
        DataFrame. Defaults to :func:`alliance.lmm.fit`, imported when first needed.
    group : str
        Grouping column for the random intercept.

    Returns
    -------
    object
        Whatever ``fit`` returns.

    Notes
    -----
    Missing-data policy: rows with a missing value in any model column are dropped
    (listwise) with a ``UserWarning`` giving their number.
    """
    formula = rupture_outcome_formula(outcome, covariates, group)
    columns = [outcome, "n_repaired", "n_unrepaired", *covariates, group]
    _require_columns(client_data, columns, "client_data")
    data = client_data[columns]
    incomplete = data.isna().any(axis=1)
    if incomplete.any():
        warnings.warn(
            f"rupture_outcome_model: dropped {int(incomplete.sum())} of {len(data)} clients "
            "with missing values in the model columns",
            UserWarning,
            stacklevel=2,
        )
        data = data.loc[~incomplete]
    if data.empty:
        raise ValueError("client_data has no complete rows for the model columns")
    fit = lmm_fit if fit is None else fit
    return fit(formula, data.reset_index(drop=True), reml=True)
