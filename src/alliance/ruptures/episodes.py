"""Rupture–repair episodes in session-by-session alliance ratings.

A *rupture* is a drop of the alliance from one observed session to the next by at least
``c`` standard deviations of the client's own session-to-session change (the within-person
yardstick of Stiles et al., 2004, taken from the client's successive differences other than
the two around the session judged, so that neither a slow trend nor the dip itself widens
it), ending below the client's median score; a *repair* is a return into a tolerance band around
the pre-rupture level (the mean of the client's last sessions before the drop) within a fixed
number of sessions (the V-shape of Stiles et al., 2004). Episodes whose repair window runs past
the client's last observed session without a repair, among them every dip at the last session,
are *censored*: whether they were repaired is unknown, so they are counted apart from repaired
and unrepaired ones. Results are reported for several ``c`` side by side (Gumz et al., 2012).

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
Jacobson, N. S., & Truax, P. (1991). Clinical significance: a statistical approach to
defining meaningful change in psychotherapy research. *Journal of Consulting and Clinical
Psychology*, 59, 12–19.
McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A.
(2014). Patterns of therapeutic alliance: rupture-repair episodes in prolonged exposure for
PTSD. *Journal of Consulting and Clinical Psychology*, 82, 112–121.
Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing differential
expression in microarray experiments. *Statistical Applications in Genetics and Molecular
Biology*, 3, Article 3.
von Neumann, J., Kent, R. H., Bellinson, H. R., & Hart, B. I. (1941). The mean square
successive difference. *Annals of Mathematical Statistics*, 12, 153–162.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special
from alliance.errors import require_columns as _require_columns
from alliance.errors import first_row, shape_of, shown_value
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
    "DETECTION_COLUMNS",
    "match_episodes",
    "detection_table",
]

EPISODE_COLUMNS = [
    "client",
    "pre_session",
    "rupture_session",
    "n_drops",
    "pre_score",
    "pre_level",
    "rupture_score",
    "depth",
    "depth_sd",
    "sd",
    "threshold_sd",
    "threshold",
    "repair_band",
    "status",
    "repaired",
    "repair_session",
    "repair_score",
    "sessions_to_repair",
    "censored",
]

COUNT_COLUMNS = ["client", "n_ruptures", "n_repaired", "n_unrepaired", "n_censored"]

# "client_change" (the default), "client" and "client_successive" are each client's own
# variation; "gumz" is the per-client rule of Gumz et al. (2012); the pooled ones are kept for
# comparison only.
SD_BASES = ("client_change", "client", "client_successive", "gumz", "stricter_per_client", "stricter",
            "within", "between")
PER_CLIENT_BASES = ("client_change", "client", "client_successive", "gumz", "stricter_per_client")
# "client_change" judges a session against the client's other session-to-session changes: it
# needs at least this many successive differences besides the (up to) two that touch the session
# (with one, a single earlier change would be the whole yardstick).
MIN_OTHER_CHANGES = 2
# A client's own SD needs at least this many observed sessions (with two, any fall between
# them is 1.41 of their SD: every decline would be a 1-SD rupture).
MIN_SESSIONS_OWN_SD = 3

# Relative tolerance for "at least": a drop that equals the threshold up to floating-point
# rounding (e.g. 7 - 5 against 2 * 1.0) counts, as the definition says "at least".
_REL_TOL = 1e-9

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------
def _integer_sessions(session: pd.Series) -> np.ndarray:
    values = pd.to_numeric(session, errors="coerce")
    missing = values.isna().to_numpy()
    if missing.any():
        row = first_row(session, missing)
        raise ValueError(
            f"column 'session' must hold integer session numbers; row {row!r}{shown_value(session[missing].iloc[0])}"
        )
    values = values.to_numpy(dtype=float)
    bad = values != np.round(values)
    if bad.any():
        row = first_row(session, bad)
        raise ValueError(
            f"column 'session' must hold integer session numbers; row {row!r}{shown_value(session[bad].iloc[0])}"
        )
    return values.astype(np.int64)


def _numeric_scores(score: pd.Series) -> np.ndarray:
    values = pd.to_numeric(score, errors="coerce")
    not_numeric = values.isna() & score.notna()
    if not_numeric.any():
        row = first_row(score, not_numeric.to_numpy())
        raise ValueError(f"column 'score' must be numeric; row {row!r}{shown_value(score[not_numeric.to_numpy()].iloc[0])}")
    values = values.to_numpy(dtype=float)
    infinite = np.isinf(values)
    if infinite.any():
        row = first_row(score, infinite)
        raise ValueError(f"column 'score' must be finite; row {row!r} has {values[infinite][0]}")
    return values


def _prepare_series(series: pd.DataFrame) -> pd.DataFrame:
    """Validated copy: NaN scores dropped, sorted by client and session, unique keys."""
    _require_columns(series, ["client", "session", "score"], "series")
    if series["client"].isna().any():
        row = first_row(series, series["client"].isna().to_numpy())
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
            "series must have one score per client and session; a client "
            f"({shape_of(str(first['client']))}) has more than one score at session {first['session']}"
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
    """Per-client counts, means, sums of squares and of squared successive differences
    (rows sorted by client and session)."""
    counts = np.bincount(codes, minlength=n_clients).astype(float)
    sums = np.bincount(codes, weights=score, minlength=n_clients)
    means = sums / counts
    residual = score - means[codes]
    ss = np.bincount(codes, weights=residual**2, minlength=n_clients)
    same = codes[1:] == codes[:-1]
    diff2 = np.where(same, (score[1:] - score[:-1]) ** 2, 0.0)
    ssd = np.bincount(codes[1:], weights=diff2, minlength=n_clients)
    return {"counts": counts, "means": means, "ss": ss, "ssd": ssd}


def _pooled_within_sd(parts: dict[str, Any]) -> float:
    df = parts["counts"].sum() - len(parts["counts"])
    return float(np.sqrt(parts["ss"].sum() / df)) if df > 0 else float("nan")


def _between_sd(parts: dict[str, Any]) -> float:
    means = parts["means"]
    return float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")


def _per_client_sd(parts: dict[str, Any]) -> np.ndarray:
    """Each client's SD of its observed scores (ddof = 1); NaN below MIN_SESSIONS_OWN_SD."""
    n = parts["counts"]
    enough = n >= MIN_SESSIONS_OWN_SD
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(enough, np.sqrt(parts["ss"] / np.where(enough, n - 1, 1)), np.nan)


def _per_client_successive_sd(parts: dict[str, Any]) -> np.ndarray:
    """Each client's SD from successive differences, sqrt(MSSD / 2) (von Neumann et al., 1941):
    the SD of the session-to-session noise, not inflated by a slow trend."""
    n = parts["counts"]
    enough = n >= MIN_SESSIONS_OWN_SD
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(enough, np.sqrt(parts["ssd"] / np.where(enough, 2 * (n - 1), 1)), np.nan)


def _change_sd_leave_out(codes: np.ndarray, score: np.ndarray, parts: dict[str, Any]) -> np.ndarray:
    """Per row: the client's SD of a session-to-session change, ``sqrt(MSSD)`` (von Neumann et
    al., 1941), from the client's successive differences *other than* the two that enter and
    leave this session; NaN with fewer than MIN_OTHER_CHANGES of them.

    MSSD is the mean squared successive difference, the variance of one change: a slow trend
    adds only its squared step, and leaving the session's own differences out means a dip
    cannot widen the yardstick it is judged by (a dip of depth d adds about 2 d^2 to the sum).
    """
    n = len(score)
    same = codes[1:] == codes[:-1]
    diff2 = np.where(same, (score[1:] - score[:-1]) ** 2, 0.0)
    into = np.concatenate(([0.0], diff2))  # difference entering row i (0 at a client's first row)
    has_into = np.concatenate(([False], same))
    out_of = np.concatenate((diff2, [0.0]))  # difference leaving row i
    has_out = np.concatenate((same, [False]))
    n_changes = parts["counts"][codes] - 1
    other = n_changes - has_into - has_out
    rest = np.maximum(parts["ssd"][codes] - into - out_of, 0.0)
    enough = other >= MIN_OTHER_CHANGES
    d0, s0_sq = change_variance_prior(parts["ssd"], parts["counts"] - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if math.isinf(d0):
            variance = np.full(n, s0_sq)
        elif d0 == 0:
            variance = rest / np.where(enough, other, 1)
        else:
            variance = (rest + d0 * s0_sq) / (other + d0)
        sd = np.where(enough, np.sqrt(variance), np.nan)
    return sd if n else np.zeros(0)


def change_variance_prior(ssd: np.ndarray, n_changes: np.ndarray) -> tuple[float, float]:
    """Prior degrees of freedom ``d0`` and variance ``s0^2`` of the clients' change variances.

    Empirical Bayes as in Smyth (2004, section 6.2): each client's MSSD ``s_i^2`` (``d_i``
    changes) is taken as ``s0^2 * chi2(d_i) / d_i`` around a prior scaled inverse chi-square
    of ``d0`` degrees of freedom; ``d0`` and ``s0^2`` come from the mean and variance of
    ``e_i = log s_i^2 - digamma(d_i/2) + log(d_i/2)``. A session is then judged against the
    moderated variance ``(d s^2 + d0 s0^2) / (d + d0)`` of its client's other changes: with a
    dozen sessions a client's own variance is itself uncertain (a client near the ceiling of
    the scale may show almost no change, which would make any small fall a "rupture"), and
    this borrows just as much strength from the other clients as their spread allows.

    Clients with fewer than MIN_OTHER_CHANGES changes or a zero MSSD do not inform the prior.
    Returns ``(inf, s0^2)`` when the clients' variances vary no more than sampling alone
    explains (then every client gets ``s0^2``), and ``(0.0, nan)`` with fewer than 2 clients
    to learn from (then each client's own variance is used).
    """
    d = np.asarray(n_changes, dtype=float)
    use = (d >= MIN_OTHER_CHANGES) & (np.asarray(ssd) > 0)
    if use.sum() < 2:
        return 0.0, float("nan")
    d = d[use]
    s2 = np.asarray(ssd, dtype=float)[use] / d
    e = np.log(s2) - special.digamma(d / 2) + np.log(d / 2)
    e_bar = float(e.mean())
    excess = float(np.mean((e - e_bar) ** 2 * len(e) / (len(e) - 1) - special.polygamma(1, d / 2)))
    if excess <= 0:
        return math.inf, math.exp(e_bar)
    d0 = 2 * _inverse_trigamma(excess)
    return d0, math.exp(e_bar + special.digamma(d0 / 2) - math.log(d0 / 2))


def _inverse_trigamma(y: float) -> float:
    """x > 0 with trigamma(x) = y (trigamma decreases from inf to 0 on (0, inf))."""
    f = lambda x: float(special.polygamma(1, x)) - y  # noqa: E731
    hi = 1.0
    while f(hi) > 0:
        hi *= 2
    lo = hi / 2
    while f(lo) < 0:
        lo /= 2
    return optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12)


def _sd_by_row(codes: np.ndarray, score: np.ndarray, parts: dict[str, Any], sd_basis: str | float) -> np.ndarray:
    """The SD that scales the threshold at each row (the session judged)."""
    if isinstance(sd_basis, str) and sd_basis == "client_change":
        return _change_sd_leave_out(codes, score, parts)
    return _sd_by_client(parts, sd_basis)[codes]


def _sd_by_client(parts: dict[str, Any], sd_basis: str | float) -> np.ndarray:
    """The SD that scales the rupture threshold, one value per client (NaN: undefined)."""
    n_clients = len(parts["counts"])
    if not isinstance(sd_basis, str):
        return np.full(n_clients, _check_positive_number(sd_basis, "sd_basis"))
    if sd_basis not in SD_BASES:
        raise ValueError(
            f"sd_basis must be one of {SD_BASES} or a positive number, got {sd_basis!r}"
        )
    if sd_basis == "client":
        return _per_client_sd(parts)
    if sd_basis == "client_change":
        raise ValueError("sd_basis 'client_change' varies by session; use _sd_by_row")
    if sd_basis == "client_successive":
        return _per_client_successive_sd(parts)
    within, between = _pooled_within_sd(parts), _between_sd(parts)
    if sd_basis == "within":
        return np.full(n_clients, within)
    if sd_basis == "between":
        return np.full(n_clients, between)
    if sd_basis == "stricter":
        return np.full(n_clients, _nanmax(within, between))
    # "gumz" / "stricter_per_client": the stricter of own and between-client SD, per client
    return np.fmax(_per_client_sd(parts), between)


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
        (a pooled reading of Gumz et al., 2012, who take the stricter value per client: see
        ``sd_basis="gumz"`` of :func:`detect_ruptures`). These pooled values judge a client
        against other clients' variation; the default detection uses each client's own SD.
        NaN where undefined (no within-client replication, one client).

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
    below: np.ndarray | None = None,
) -> np.ndarray:
    """True where the score fell from the previous observed session by >= threshold (and,
    when ``below`` is given, where ``below`` is True: the session lies under the client's
    median)."""
    n = len(score)
    flags = np.zeros(n, dtype=bool)
    if n < 2:
        return flags
    same_client = codes[1:] == codes[:-1]
    drop = score[:-1] - score[1:]
    thr = threshold[1:]
    with np.errstate(invalid="ignore"):
        enough = (drop > 0) & (drop >= thr - _REL_TOL * np.maximum(1.0, np.abs(thr)))
    if max_gap is not None:
        enough &= (session[1:] - session[:-1]) <= max_gap
    if below is not None:
        enough &= below[1:]
    flags[1:] = same_client & enough
    return flags


def _below_client_median(codes: np.ndarray, score: np.ndarray) -> np.ndarray:
    """True where a score lies strictly below the median of its client's observed scores (the
    median, unlike the mean, is not pulled down by the dip being judged)."""
    median = pd.Series(score).groupby(codes).transform("median").to_numpy()
    return score < median - _REL_TOL * np.maximum(1.0, np.abs(median))


def _episode_bounds(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the first and last drop of each run of consecutive drops."""
    previous = np.concatenate(([False], flags[:-1]))
    following = np.concatenate((flags[1:], [False]))
    starts = np.flatnonzero(flags & ~previous)
    ends = np.flatnonzero(flags & ~following)
    return starts, ends


def _pre_level(codes: np.ndarray, score: np.ndarray, pre: np.ndarray, pre_sessions: int) -> np.ndarray:
    """Mean score of the last ``pre_sessions`` observed sessions of the same client up to and
    including row ``pre`` (the session before the first drop)."""
    total = np.zeros(len(pre))
    count = np.zeros(len(pre))
    for k in range(pre_sessions):
        rows = pre - k
        safe = np.maximum(rows, 0)
        ok = (rows >= 0) & (codes[safe] == codes[pre])
        total += np.where(ok, score[safe], 0.0)
        count += ok
    return total / count


def _find_repairs(
    codes: np.ndarray,
    session: np.ndarray,
    score: np.ndarray,
    ends: np.ndarray,
    floor: np.ndarray,
    repair_window: int,
) -> np.ndarray:
    """Row index of the first session within the window at or above ``floor`` (-1: none).

    Sessions are unique and increasing within a client, so at most ``repair_window`` rows
    follow the rupture inside the window: a look-ahead of that many rows is exhaustive.
    """
    n = len(score)
    repair_row = np.full(len(ends), -1, dtype=np.int64)
    tol = _REL_TOL * np.maximum(1.0, np.abs(floor))
    for k in range(1, repair_window + 1):
        rows = ends + k
        inside = rows < n
        rows_c = np.where(inside, rows, n - 1)
        candidate = (
            inside
            & (repair_row < 0)
            & (codes[rows_c] == codes[ends])
            & (session[rows_c] - session[ends] <= repair_window)
            & (score[rows_c] >= floor - tol)
        )
        repair_row[candidate] = rows_c[candidate]
    return repair_row
def _empty_episodes() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=float) for name in EPISODE_COLUMNS})
    frame["client"] = frame["client"].astype(object)
    frame["status"] = frame["status"].astype(object)
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
    sd_basis: str | float = "client_change",
    max_gap: int | None = None,
    pre_sessions: int = 3,
    repair_tolerance: float = 0.5,
    below_median: bool = True,
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
    sd_basis : str or float
        The SD that scales the threshold (and the repair band), per client:

        * ``"client_change"`` (default): the client's own SD of a session-to-session change,
          ``sqrt(MSSD)`` of the client's successive differences (von Neumann et al., 1941),
          computed for each session from the client's *other* changes (the two differences
          entering and leaving the session judged are left out). The rupture is a change, so
          it is judged against the spread of the client's changes, as a reliable change is
          judged against the SD of a difference (Jacobson & Truax, 1991), and within person
          as Stiles et al. (2004) and Gumz et al. (2012, "intraindividual criterion") ask. The
          successive differences carry no slow trend (a growing alliance does not widen the
          yardstick, unlike the SD of the scores), and leaving the session's own differences
          out keeps a dip from widening the yardstick it is judged by. Needs at least 2 other
          changes (NaN below: no rupture at that session).
        * ``"client"``: the SD (ddof = 1) of the client's own observed scores, the yardstick
          in which Stiles et al. (2004) stated the rule. It includes any slow trend and the
          dips themselves. Needs at least 3 observed sessions.
        * ``"client_successive"``: ``sqrt(MSSD / 2)`` of the client's successive differences
          (von Neumann et al., 1941), the SD of session-to-session noise free of slow trends.
        * ``"gumz"`` (alias ``"stricter_per_client"``): per client, the larger of the client's
          own SD and the between-client SD of client means (Gumz et al., 2012, choose the
          stricter value "in each case").
        * ``"stricter"``, ``"within"``, ``"between"``: pooled values shared by all clients
          (the larger of pooled within and between; pooled within-client; between-client SD;
          see :func:`rupture_sd`), kept for comparison with earlier results only: they judge
          a client against other clients' variation, not their own.
        * a number: a fixed SD in score units (e.g. from a reference sample).
    max_gap : int, optional
        If given, a drop is only evaluated between observed sessions at most ``max_gap``
        session numbers apart; by default any gap is bridged.
    pre_sessions : int
        The pre-rupture level is the mean of up to this many observed sessions of the client
        ending at the session before the first drop (fewer at the start of treatment).
    repair_tolerance : float
        Half-width of the repair band in SDs: a repair is a score of at least
        ``pre_level - repair_tolerance * SD``. 0 asks for a full return to the pre-level.
    below_median : bool
        If True (default), a drop counts only when it ends strictly below the median of the
        client's observed scores: a rupture is a fall *below the client's usual level*, not
        the return from a high session to it (the V-shape of Stiles et al., 2004, has its
        low point under the course around it). False: any large enough drop counts (the
        rule of Gumz et al., 2012, as published).

    Returns
    -------
    DataFrame
        One row per episode, sorted by client and rupture session, with columns
        ``client``; ``pre_session``, ``pre_score``: the last observed session before the
        (first) drop; ``pre_level``: the mean of the ``pre_sessions`` sessions ending there;
        ``rupture_session``, ``rupture_score``: the session ending the drop(s);
        ``n_drops``: number of consecutive qualifying drops merged into the episode;
        ``depth`` = ``pre_level - rupture_score`` (score units) and ``depth_sd`` (in SDs);
        ``sd``: the SD used, ``threshold_sd`` (= ``c``), ``threshold`` (= ``c * sd``, score
        units); ``repair_band``: the lowest score that counts as a repair;
        ``status``: ``"repaired"``, ``"unrepaired"`` or ``"censored"``; ``repaired``,
        ``repair_session``, ``repair_score``, ``sessions_to_repair``
        (= ``repair_session - rupture_session``); ``censored``: not repaired *and* the
        client's observations end before the repair window closes (so a repair could not be
        seen; every drop at the client's last session is censored).

    Notes
    -----
    Definitions, applied per client to the observed sessions in session order:

    * **Drop.** A session is a drop when its score is lower than the score of the previous
      *observed* session by at least ``c * SD`` (equality counts, up to a relative
      floating-point tolerance of 1e-9) and, with ``below_median``, lies strictly below the
      client's median. With ``"client_change"`` the SD is that of the session's row (the
      client's other changes), reported in ``sd``. Missing sessions are bridged: after a gap the
      comparison is with the last observed session (unless ``max_gap`` forbids it), and the
      gap is visible as ``rupture_session - pre_session``.
    * **Consecutive drops** (a drop whose previous observed session was itself a drop) form
      one episode, a staircase decline: its pre-rupture session is the one before the first
      drop, its rupture session the last drop, ``n_drops`` > 1.
    * **Pre-rupture level.** The mean of the last ``pre_sessions`` observed scores up to the
      pre-rupture session: one observed score is often a high outlier (which is partly why
      it was followed by a large drop), so a return to it is too strict a test of repair.
    * **Repair.** The first observed session ``s`` with
      ``rupture_session < s <= rupture_session + repair_window`` whose score lies in the band
      ``score >= pre_level - repair_tolerance * SD`` (a return into the band, or above it).
      The window counts session numbers, so missing sessions use up the window.
    * **Censored.** Not repaired and the client's last observed session comes before
      ``rupture_session + repair_window``: the follow-up was too short to tell. Censored
      episodes are neither repaired nor unrepaired (:func:`rupture_counts` counts them
      apart); a drop at the last session is always censored, as it also coincides with the
      end-of-treatment outcome.
    * Every episode is judged on its own: a new rupture may start before an earlier one is
      repaired, and one later session can repair both.
    * A client with fewer than 3 observed sessions (own-SD bases; ``"client_change"``: a
      session with fewer than 2 other changes of its client), or whose scores never fall
      by the threshold (e.g. a constant series), has no episodes. If the SD is zero or
      undefined, no drop qualifies.

    Tested on hand-worked examples and on simulated series with injected rupture–repair
    episodes (tests/test_ruptures.py); :func:`detection_table` scores detection against
    known episodes.
    """
    c = _check_positive_number(c, "c")
    repair_window = _check_positive_int(repair_window, "repair_window")
    pre_sessions = _check_positive_int(pre_sessions, "pre_sessions")
    repair_tolerance = _check_nonnegative_number(repair_tolerance, "repair_tolerance")
    if max_gap is not None:
        max_gap = _check_positive_int(max_gap, "max_gap")
    prepared = _prepare_series(series)
    if prepared.empty:
        return _empty_episodes()
    codes, uniques = _client_codes(prepared)
    session = prepared["session"].to_numpy()
    score = prepared["score"].to_numpy()
    parts = _variance_parts(codes, score, len(uniques))
    sd_row = _sd_by_row(codes, score, parts, sd_basis)
    threshold = c * sd_row
    below = _below_client_median(codes, score) if below_median else None
    flags = _drop_flags(codes, session, score, threshold, max_gap, below)
    starts, ends = _episode_bounds(flags)
    if len(starts) == 0:
        return _empty_episodes()
    labels = prepared["client"].to_numpy()
    if not isinstance(below_median, (bool, np.bool_)):
        raise ValueError(f"below_median must be true or false, got {below_median!r}")
    rule = {"c": c, "repair_window": repair_window, "pre_sessions": pre_sessions,
            "repair_tolerance": repair_tolerance}
    return _episode_table(labels, codes, session, score, starts, ends, sd_row, rule)


def _check_nonnegative_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _episode_table(
    labels: np.ndarray,
    codes: np.ndarray,
    session: np.ndarray,
    score: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    sd_row: np.ndarray,
    rule: dict[str, Any],
) -> pd.DataFrame:
    c, window = rule["c"], rule["repair_window"]
    pre = starts - 1
    ep_codes = codes[ends]
    sd = sd_row[ends]
    pre_level = _pre_level(codes, score, pre, rule["pre_sessions"])
    band = pre_level - rule["repair_tolerance"] * sd
    repair_row = _find_repairs(codes, session, score, ends, band, window)
    repaired = repair_row >= 0
    last_session = np.zeros(int(codes.max()) + 1, dtype=np.int64)
    np.maximum.at(last_session, codes, session)
    censored = ~repaired & (last_session[ep_codes] < session[ends] + window)
    status = np.where(repaired, "repaired", np.where(censored, "censored", "unrepaired")).astype(object)
    depth = pre_level - score[ends]
    with np.errstate(divide="ignore", invalid="ignore"):  # an SD of 0 gives an infinite depth_sd
        depth_sd = depth / sd
    safe_row = np.where(repaired, repair_row, 0)
    repair_session = pd.array(np.where(repaired, session[safe_row], 0), dtype="Int64")
    repair_session[~repaired] = pd.NA
    return pd.DataFrame(
        {
            "client": labels[ends],
            "pre_session": session[pre],
            "rupture_session": session[ends],
            "n_drops": (ends - starts + 1).astype(np.int64),
            "pre_score": score[pre],
            "pre_level": pre_level,
            "rupture_score": score[ends],
            "depth": depth,
            "depth_sd": depth_sd,
            "sd": sd,
            "threshold_sd": np.full(len(ends), c),
            "threshold": c * sd,
            "repair_band": band,
            "status": status,
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
        ``client``, ``n_ruptures``, ``n_repaired``, ``n_unrepaired`` and ``n_censored``
        (episodes whose repair window ran past the client's last observed session without a
        repair: neither repaired nor unrepaired), in the order of ``clients``;
        ``n_ruptures = n_repaired + n_unrepaired + n_censored``.
    """
    _require_columns(episodes, ["client", "repaired", "censored"], "episodes")
    client_index = pd.Index(pd.unique(pd.Series(list(clients), dtype=object)))
    unknown = ~episodes["client"].isin(client_index)
    if unknown.any():
        raise ValueError(
            f"episodes contain {int(unknown.sum())} row(s) of a client not in `clients` (first: row "
            f"{first_row(episodes, unknown.to_numpy())!r}); pass every client whose series was examined"
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
            "n_unrepaired": (grouped["r"] - grouped["rep"] - grouped["cen"]).to_numpy(),
            "n_censored": grouped["cen"].to_numpy(),
        }
    )


def rupture_summary(
    series: pd.DataFrame,
    cs: Sequence[float] = (1, 2),
    repair_window: int = 3,
    sd_basis: str | float = "client_change",
    max_gap: int | None = None,
    pre_sessions: int = 3,
    repair_tolerance: float = 0.5,
    below_median: bool = True,
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
    repair_window, sd_basis, max_gap, pre_sessions, repair_tolerance, below_median
        As in :func:`detect_ruptures`.

    Returns
    -------
    DataFrame
        One row per ``c``: ``threshold_sd``, ``sd``, ``threshold`` (score units; NaN with
        the per-client bases, where it varies), ``n_clients``, ``n_episodes``,
        ``n_clients_with_rupture``, ``prop_clients_with_rupture``, ``n_repaired``,
        ``n_unrepaired``, ``n_censored``, ``prop_repaired`` (of the episodes that are not
        censored), ``mean_depth``,
        ``mean_depth_sd``, ``mean_sessions_to_repair`` (repaired episodes),
        ``mean_n_drops``.
    """
    if isinstance(cs, (int, float)) or len(cs) == 0:
        raise ValueError(f"cs must be a non-empty sequence of thresholds, got {cs!r}")
    prepared = _prepare_series(series)
    clients = prepared["client"].unique()
    sd = _common_sd(prepared, sd_basis)
    rows = [
        _summary_row(detect_ruptures(series, c, repair_window, sd_basis, max_gap, pre_sessions,
                                     repair_tolerance, below_median), c, clients, sd)
        for c in cs
    ]
    return pd.DataFrame(rows)


def _common_sd(prepared: pd.DataFrame, sd_basis: str | float) -> float:
    """The SD shared by all clients, or NaN when it varies by client or is undefined."""
    if prepared.empty:
        return float("nan")
    codes, uniques = _client_codes(prepared)
    parts = _variance_parts(codes, prepared["score"].to_numpy(), len(uniques))
    if isinstance(sd_basis, str) and sd_basis in PER_CLIENT_BASES:
        _sd_by_row(codes, prepared["score"].to_numpy(), parts, sd_basis)  # validates sd_basis
        return float("nan")
    return float(_sd_by_client(parts, sd_basis)[0])


def _summary_row(
    episodes: pd.DataFrame, c: float, clients: np.ndarray, sd: float
) -> dict[str, Any]:
    counts = rupture_counts(episodes, clients)
    n_episodes = len(episodes)
    repaired = episodes["repaired"].to_numpy(dtype=bool)
    censored = episodes["censored"].to_numpy(dtype=bool) & ~repaired
    decided = int((~censored).sum())
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
        "n_unrepaired": int((~repaired & ~censored).sum()),
        "n_censored": int(censored.sum()),
        "prop_repaired": float(repaired.sum() / decided) if decided else float("nan"),
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
    ruptures predicted worse outcome). Censored episodes (repair unknown) enter neither
    count. The model has no post-treatment covariates by design (see ``covariates``).

    Parameters
    ----------
    client_data : DataFrame
        Output of :func:`rupture_outcome_data`.
    outcome : str
        Outcome column (e.g. pre–post change on the outcome measure).
    covariates : sequence of str
        Further fixed-effect columns measured before treatment (e.g. baseline severity).
        Do not add the number of sessions attended: it is a post-treatment variable, itself
        affected by ruptures (an unrepaired rupture may end treatment early) and by the
        outcome (clients who improve may stop), so adjusting for it conditions on a
        consequence of both and biases the rupture effects (collider / mediator bias).
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


# --------------------------------------------------------------------------------------
# Detection against known episodes
# --------------------------------------------------------------------------------------
DETECTION_COLUMNS = ["threshold_sd", "n_injected", "n_detected", "n_matched", "precision", "recall",
                     "match_tolerance"]


def match_episodes(detected: pd.DataFrame, injected: pd.DataFrame, tolerance: int = 1) -> pd.DataFrame:
    """One-to-one matches of detected to injected episodes of the same client.

    Matching rule: a detected episode matches an injected one of the same client when its
    ``rupture_session`` lies within ``tolerance`` session numbers of the injected rupture
    session. Pairs are taken closest first (ties: by client, earlier injected, then earlier
    detected session), and each episode is used at most once, so neither precision nor
    recall can exceed 1.

    Parameters
    ----------
    detected, injected : DataFrame
        ``client`` and ``rupture_session`` each (other columns are ignored).
    tolerance : int
        Largest allowed distance in session numbers (0: the same session).

    Returns
    -------
    DataFrame
        ``client``, ``rupture_session_injected``, ``rupture_session_detected``, one row per
        matched pair.
    """
    _require_columns(detected, ["client", "rupture_session"], "detected")
    _require_columns(injected, ["client", "rupture_session"], "injected")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be an integer >= 0, got {tolerance!r}")
    pairs = injected[["client", "rupture_session"]].merge(
        detected[["client", "rupture_session"]], on="client", suffixes=("_injected", "_detected"))
    distance = (pairs["rupture_session_injected"] - pairs["rupture_session_detected"]).abs()
    pairs = pairs.assign(distance=distance)[distance <= tolerance]
    pairs = pairs.sort_values(["distance", "client", "rupture_session_injected", "rupture_session_detected"],
                              kind="mergesort")
    used_injected: set = set()
    used_detected: set = set()
    keep = []
    for row in pairs.itertuples(index=False):
        one = (row.client, row.rupture_session_injected)
        other = (row.client, row.rupture_session_detected)
        if one in used_injected or other in used_detected:
            continue
        used_injected.add(one)
        used_detected.add(other)
        keep.append((row.client, row.rupture_session_injected, row.rupture_session_detected))
    return pd.DataFrame(keep, columns=["client", "rupture_session_injected", "rupture_session_detected"])


def detection_table(
    series: pd.DataFrame,
    injected: pd.DataFrame,
    cs: Sequence[float] = (1, 1.5, 2, 2.5),
    tolerance: int = 1,
    **detect: Any,
) -> pd.DataFrame:
    """Precision and recall of :func:`detect_ruptures` against known (injected) episodes.

    Parameters
    ----------
    series : DataFrame
        ``client``, ``session``, ``score``.
    injected : DataFrame
        The known episodes: ``client``, ``rupture_session``. Episodes of clients without a
        series are left out (they cannot be found).
    cs : sequence of float
        Thresholds, one row each.
    tolerance : int
        Matching tolerance in session numbers (see :func:`match_episodes`).
    **detect
        Further arguments of :func:`detect_ruptures` (``repair_window`` (default 3),
        ``sd_basis``, ``max_gap``, ``pre_sessions``, ``repair_tolerance``, ``below_median``).

    Returns
    -------
    DataFrame
        :data:`DETECTION_COLUMNS`, one row per threshold: ``precision`` = matched / detected
        episodes, ``recall`` = matched / injected episodes (NaN when the denominator is 0).
    """
    detect = {"repair_window": 3, **detect}
    _require_columns(injected, ["client", "rupture_session"], "injected")
    known = injected[injected["client"].isin(set(pd.unique(series["client"])))]
    rows = []
    for c in cs:
        found = detect_ruptures(series, c, **detect)
        n_matched = len(match_episodes(found, known, tolerance))
        rows.append({
            "threshold_sd": float(c), "n_injected": len(known), "n_detected": len(found),
            "n_matched": n_matched,
            "precision": n_matched / len(found) if len(found) else float("nan"),
            "recall": n_matched / len(known) if len(known) else float("nan"),
            "match_tolerance": int(tolerance),
        })
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)
