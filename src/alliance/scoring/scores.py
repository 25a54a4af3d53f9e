"""Scoring administrations with instrument keys, and early-alliance summaries per client.

Input is the tidy administrations table of ``docs/data_contract.md`` (one row per client,
session, respondent and rater; item columns ``{entry}_{n}``, where ``entry`` is the name of
the instrument's entry under ``instruments:`` in the config). Output is the long scores table
(``results/scores/``): one row per administration x scale with ``client``, ``therapist``,
``session``, ``instrument`` (the config entry name), ``respondent``, ``rater``, ``scale``,
``score``, ``items_answered`` and ``prorated``.

Everything is vectorised with numpy over administrations; one million administrations of three
instruments score in a few seconds.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from alliance.errors import describe_value, shown_value
from alliance.scoring.instruments import InstrumentKey, ScaleKey

RESPONDENT_WORDS = ("client", "therapist", "observer")

ID_COLUMNS = ("client", "therapist", "session", "respondent", "rater")
SCORE_COLUMNS = ("client", "therapist", "session", "instrument", "respondent", "rater", "scale",
                 "score", "items_answered", "prorated")
EARLY_METHODS = ("session_k", "mean_1_to_k", "first_up_to_k")


def score_administrations(administrations: pd.DataFrame, instruments: Mapping[str, InstrumentKey],
                          source: str = "administrations") -> pd.DataFrame:
    """Score every administration of every instrument: totals and subscales.

    Reverse-keyed items are scored ``(response_min + response_max) - x`` (unless the key says
    the data are already scored). A scale with missing items is prorated when no more than the
    key's ``max_missing`` of its items are missing (by the key's proration rule: the mean of the
    answered items, or for the OQ-45 each missing item replaced by that mean rounded to a whole
    number) and flagged ``prorated``; beyond the limit the score is missing (NaN) and
    ``items_answered`` still says how many were answered. A row in which none of an
    instrument's items is answered is not an administration of that instrument and gives no
    rows.

    Parameters
    ----------
    administrations
        The tidy dataset: ``client``, ``therapist``, ``session``, ``respondent`` (``rater``
        optional) and item columns ``{entry}_{n}`` for n = 1..n_items of each entry.
    instruments
        Config entry name -> :class:`~alliance.scoring.instruments.InstrumentKey`.
    source
        Name of the input (e.g. its file) used in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SCORE_COLUMNS`; instruments in the order given, then administrations in
        input order, then scales in key order. ``score`` is float64 at full precision.

    Raises
    ------
    ValueError
        When id or item columns are missing or extra, when responses are out of the key's range
        (or not whole numbers where the key wants integers; every offending row position,
        column and value is listed at once), or when a form is scored for a respondent it is
        not for (a client form filled by a therapist, say).

    Notes
    -----
    Tested against hand-worked administrations of every shipped key (tests/test_scoring.py).
    Proration rules and their sources are stated in each key's ``missing_rule``.
    """
    _require_id_columns(administrations.columns, source)
    columns = {entry: _item_columns(administrations.columns, entry, key, source)
               for entry, key in instruments.items()}

    def administered(entry):
        x = _item_matrix(administrations, columns[entry], source)
        rows = np.flatnonzero((~np.isnan(x)).any(axis=1))
        return rows, x[rows]

    return _score_entries(administrations, instruments, columns, administered, source)


def score_administrations_file(path: str, instruments: Mapping[str, InstrumentKey],
                               source: str | None = None) -> pd.DataFrame:
    """:func:`score_administrations` of a Parquet file, read one instrument's items at a time.

    The same scores, checks and messages (row positions are positions in the file), without
    the whole wide table in memory: the id columns are read once, then each instrument's item
    columns, of which only the rows that administered it are kept (a national study's table
    is mostly empty cells: each row answers the forms of one table).
    """
    import pyarrow.parquet as pq

    source = str(path) if source is None else source
    names = pq.read_schema(path).names
    _require_id_columns(names, source)
    columns = {entry: _item_columns(names, entry, key, source) for entry, key in instruments.items()}
    ids = pd.read_parquet(path, columns=[c for c in ID_COLUMNS if c in names])
    return _score_entries(ids, instruments, columns,
                          lambda entry: _administered_items(path, columns[entry], source), source)


def _administered_items(path: str, columns: list[str], source: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions, item matrix) of the rows of ``path`` with an answer in ``columns``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns)
    if not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types):
        x = _item_matrix(table.to_pandas(), columns, source)
        rows = np.flatnonzero((~np.isnan(x)).any(axis=1))
        return rows, x[rows]
    answered = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:  # one column at a time: never the whole float block of the file
        answered |= ~np.isnan(column.to_numpy().astype(float, copy=False))
    rows = np.flatnonzero(answered)
    kept = table.take(pa.array(rows))
    del table
    return rows, _item_matrix(kept.to_pandas(), columns, source)


def _score_entries(ids: pd.DataFrame, instruments: Mapping[str, InstrumentKey], columns: dict[str, list[str]],
                   administered, source: str) -> pd.DataFrame:
    """Check and score each instrument; ``administered(entry)`` gives the positions of the rows
    that answered it and their item matrix (float, NaN missing)."""
    problems, parts = [], {}
    for entry, key in instruments.items():
        rows, x = administered(entry)
        problems += _range_problems(x, rows, columns[entry], key)
        problems += _respondent_problems(ids, rows, entry, key)
        if not problems:
            parts[entry] = _score_instrument(x, rows, key)
        del x
    if problems:
        raise ValueError(f"{source}: {len(problems)} invalid response(s); nothing was scored\n"
                         + "\n".join(f"  - {p}" for p in problems))
    if not instruments:
        return _empty_scores()
    return _assemble(ids, parts, instruments)


COMBINE_METHODS = ("mean", "designated")
_SESSION_SCALE = ["client", "therapist", "session", "instrument", "respondent", "scale"]


def combine_observer_ratings(scores: pd.DataFrame, method: str = "mean",
                             designated_rater: str | None = None) -> pd.DataFrame:
    """One observer score per session and scale: the coders' ratings combined for analysis.

    Observer-rated sessions coded by several coders (for the reliability subsample) must enter
    the analyses once. ``method="mean"`` averages the coders' scores, the usual choice when
    coders are exchangeable (a session's mean of k coders has reliability ICC(A,k); sessions coded
    once keep ICC(A,1)). ``"designated"``
    keeps one coder's score (``designated_rater``, the pseudonym ``R-…``), as when a primary
    coder rated every session and a second coder only the reliability subsample; sessions the
    designated coder did not rate take the mean of their other coders. Client and therapist
    rows are unchanged.

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    method : {"mean", "designated"}
    designated_rater : str, optional
        Needed with ``method="designated"``.

    Returns
    -------
    DataFrame
        The scores columns plus ``n_raters`` (coders whose non-missing score entered; 1 for
        client and therapist rows). Combined observer rows have ``rater`` missing unless the
        designated coder's score was used; ``items_answered`` is the fewest and ``prorated``
        true when any entering score was prorated. Observer sessions without any non-missing
        score are left out. Sorted by client, session, instrument, respondent and scale.
    """
    if method not in COMBINE_METHODS:
        raise ValueError(f"interrater/combine must be one of {COMBINE_METHODS}, got {method!r}")
    observer = scores["respondent"].eq("observer").to_numpy()
    others = scores.loc[~observer].assign(n_raters=1)
    rated = scores.loc[observer & scores["score"].notna().to_numpy()]
    if method == "designated":
        coders = sorted(rated["rater"].dropna().unique().tolist())
        if designated_rater not in coders:
            raise ValueError(f"interrater/designated_rater: {designated_rater!r} is not a coder of the observer "
                             f"scores; coders (pseudonyms): {coders}")
        mine = rated[rated["rater"].eq(designated_rater)]
        covered = pd.MultiIndex.from_frame(mine[_SESSION_SCALE])
        rest = rated[~pd.MultiIndex.from_frame(rated[_SESSION_SCALE]).isin(covered)]
        parts = [mine.assign(n_raters=1), _mean_of_coders(rest)]
    else:
        parts = [_mean_of_coders(rated)]
    out = pd.concat([others, *parts], ignore_index=True)
    del others, parts
    out["n_raters"] = out["n_raters"].astype("int64")
    out = out[[*SCORE_COLUMNS, "n_raters"]]
    # one copy in sorted order (sort_values and reset_index would make two more)
    out = out.take(stable_order(out, ["client", "session", "instrument", "respondent", "scale"]))
    out.index = pd.RangeIndex(len(out))
    return out


def stable_order(frame: pd.DataFrame, by: list[str], na_position: str = "last") -> np.ndarray:
    """The positions that sort ``frame`` by the columns ``by`` as ``sort_values(by, kind="mergesort",
    na_position=na_position)`` does (stable), computed on each column's sorted integer codes: faster
    than pandas on millions of text values, and without copying the frame."""
    keys = []
    for column in by:
        codes, uniques = pd.factorize(frame[column], sort=True)  # missing: code -1, first
        keys.append(codes if na_position == "first" else np.where(codes < 0, len(uniques), codes))
    return np.lexsort(keys[::-1])


def _mean_of_coders(rows: pd.DataFrame) -> pd.DataFrame:
    grouped = rows.groupby(_SESSION_SCALE, sort=True, observed=True, dropna=False)
    out = grouped.agg(score=("score", "mean"), items_answered=("items_answered", "min"),
                      prorated=("prorated", "any"), n_raters=("score", "size")).reset_index()
    return out.assign(rater=pd.Series([None] * len(out), dtype=rows["rater"].dtype))


def score_items(items: np.ndarray, key: InstrumentKey, copy: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Score an (administrations x n_items) matrix with ``key``; responses must be in range.

    ``copy=False`` lets the function overwrite a float ``items`` array (saves memory).

    Returns, per scale name (in key order), arrays ``score``, ``items_answered`` and
    ``prorated``.
    """
    x = keyed_items(items, key, copy=copy)
    simple = [s for s in key.scales.values() if not s.is_composite]
    results = _score_item_scales(x, simple)
    for name, scale in key.scales.items():
        if scale.is_composite:
            results[name] = _score_composite([results[p] for p in scale.composite_of])
    return {name: results[name] for name in key.scales}


def keyed_items(items: np.ndarray, key: InstrumentKey, copy: bool = True) -> np.ndarray:
    """``items`` (float) with reverse-keyed items reversed, ``(min + max) - x`` (a copy unless
    ``copy=False`` and ``items`` is already a float array)."""
    x = np.array(items, dtype=float, copy=True) if copy else np.asarray(items, dtype=float)
    if key.reverse_items and not key.responses_prescored:
        rev = np.asarray(key.reverse_items) - 1
        x[:, rev] = (key.response_min + key.response_max) - x[:, rev]
    return x


def early_alliance(scores: pd.DataFrame, definition: Mapping[str, Any] | None = None, *, instrument: str,
                   respondent: str | None = None, scale: str = "total") -> pd.DataFrame:
    """Early alliance per client, as configured.

    Parameters
    ----------
    scores
        The long scores table (:func:`score_administrations`).
    definition
        ``{"method": m, "k": k}`` with ``m`` one of ``"session_k"`` (the score at session k),
        ``"mean_1_to_k"`` (the mean of the available scores of sessions 1..k; optional
        ``"min_sessions"``, default 1) or ``"first_up_to_k"`` (the first available score at a
        session <= k). Default ``{"method": "mean_1_to_k", "k": 3}``. Where several raters
        scored a session (observers), their mean is the session's score.
    instrument, respondent, scale
        Which scores: the config entry name, the respondent (may be omitted when the
        instrument has one) and the scale (default ``"total"``).

    Returns
    -------
    pandas.DataFrame
        One row per client with a score of that instrument, respondent and scale: ``client``,
        ``therapist`` (at the client's first session), ``instrument``, ``respondent``,
        ``scale``, ``method``, ``k``, ``early_alliance`` (NaN when the definition finds no
        score), ``n_sessions`` (sessions used), ``first_session`` and ``last_session`` used.

    Notes
    -----
    No convention is standard (Crits-Christoph et al., 2011, show that aggregating >= 2
    sessions is needed for a generalizability of .80), hence the choice. Tested on hand-made
    score tables (tests/test_scoring.py).
    """
    definition = dict(definition or {"method": "mean_1_to_k", "k": 3})
    method, k = definition.get("method"), definition.get("k")
    if method not in EARLY_METHODS:
        raise ValueError(f"early alliance: method {method!r} is not one of {', '.join(EARLY_METHODS)}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"early alliance: k must be a whole number >= 1, got {k!r}")
    min_sessions = int(definition.get("min_sessions", 1))
    rows = _select_scores(scores, instrument, respondent, scale)
    respondent = rows["respondent"].iloc[0]
    per_session = (rows.groupby(["client", "session"], sort=True, observed=True)["score"]
                   .mean().reset_index())
    first = rows.sort_values("session", kind="stable").groupby("client", sort=True, observed=True)["therapist"].first()
    clients = pd.DataFrame({"client": first.index, "therapist": first.to_numpy()})
    usable = per_session[per_session["session"].le(k) & per_session["score"].notna()]
    if method == "session_k":
        usable = usable[usable["session"].eq(k)]
    elif method == "first_up_to_k":
        usable = usable.groupby("client", sort=True).head(1)
    summary = usable.groupby("client", sort=True).agg(
        early_alliance=("score", "mean"), n_sessions=("score", "size"),
        first_session=("session", "min"), last_session=("session", "max"))
    if method == "mean_1_to_k":
        summary.loc[summary["n_sessions"] < min_sessions, "early_alliance"] = np.nan
    out = clients.merge(summary.reset_index(), on="client", how="left")
    out["n_sessions"] = out["n_sessions"].fillna(0).astype("int64")
    for col in ("first_session", "last_session"):
        out[col] = out[col].astype("Int64")
    out.insert(2, "instrument", instrument)
    out.insert(3, "respondent", respondent)
    out.insert(4, "scale", scale)
    out.insert(5, "method", method)
    out.insert(6, "k", int(k))
    return out


# --- input checks -----------------------------------------------------------------------------

def _require_id_columns(names, source: str) -> None:
    missing = [c for c in ID_COLUMNS if c != "rater" and c not in names]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; the administrations table needs "
                         f"{', '.join(ID_COLUMNS[:4])} (and rater for observers)")


def _item_columns(names, entry: str, key: InstrumentKey, source: str) -> list[str]:
    expected = [f"{entry}_{n}" for n in range(1, key.n_items + 1)]
    prefix = f"{entry}_"
    present = [c for c in names if isinstance(c, str) and c.startswith(prefix) and c[len(prefix):].isdigit()]
    missing = [c for c in expected if c not in names]
    extra = sorted(set(present) - set(expected), key=lambda c: int(c[len(prefix):]))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing item column(s) {missing}")
        if extra:
            parts.append(f"item column(s) {extra} beyond the key's {key.n_items} items")
        raise ValueError(f"{source}: instrument '{entry}' (key {key.name}, {key.n_items} items): "
                         + "; ".join(parts))
    return expected


def _item_matrix(df: pd.DataFrame, columns: list[str], source: str) -> np.ndarray:
    block = df[columns]
    if all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
        return block.to_numpy(dtype=float, na_value=np.nan)
    problems = []
    converted = {}
    for col in columns:
        values = pd.to_numeric(block[col], errors="coerce")
        bad = values.isna() & block[col].notna()
        for pos in np.flatnonzero(bad.to_numpy()):
            problems.append(f"row {pos}, column '{col}'{shown_value(block[col].iloc[pos])}; expected a number")
        converted[col] = values
    if problems:
        raise ValueError(f"{source}: {len(problems)} non-numeric response(s); nothing was scored\n"
                         + "\n".join(f"  - {p}" for p in problems))
    return pd.DataFrame(converted).to_numpy(dtype=float, na_value=np.nan)


def _range_problems(x: np.ndarray, positions: np.ndarray, columns: list[str], key: InstrumentKey) -> list[str]:
    lo, hi = key.response_min, key.response_max
    with np.errstate(invalid="ignore"):
        bad = (x < lo) | (x > hi)
        if key.integer_responses:
            bad |= np.isfinite(x) & (x != np.floor(x))
    if not bad.any():  # NaN compares False above, so missing responses never count as bad
        return []
    rows, cols = np.nonzero(bad)
    expected = f"{lo:g} to {hi:g}" + (" (whole numbers)" if key.integer_responses else "")
    return [f"row {positions[r]} (position in the input, from 0), column '{columns[c]}'"
            f"{shown_value(float(x[r, c]))}; expected {expected} ({key.name})" for r, c in zip(rows, cols)]


def _respondent_problems(df: pd.DataFrame, administered: np.ndarray, entry: str, key: InstrumentKey) -> list[str]:
    """``administered``: the positions of the rows that answered the instrument."""
    respondent = df["respondent"].to_numpy()
    # pandas isin: a missing respondent (pd.NA) counts as not allowed rather than raising
    allowed = df["respondent"].isin(list(key.respondents)).to_numpy(dtype=bool)
    positions = administered[~allowed[administered]]
    if not positions.size:
        return []
    # the three respondent words as they are, any other text by its shape (it may be a name)
    values = sorted({str(v) if str(v) in RESPONDENT_WORDS else describe_value(v) for v in respondent[positions]})
    shown = ", ".join(str(p) for p in positions[:20]) + (" ..." if positions.size > 20 else "")
    return [f"instrument '{entry}' ({key.name}) is a {'/'.join(key.respondents)} form but has responses from "
            f"respondent(s) {values} in {positions.size} row(s) (positions {shown})"]


# --- scoring ----------------------------------------------------------------------------------

def _score_item_scales(x: np.ndarray, scales: list[ScaleKey]) -> dict[str, dict[str, np.ndarray]]:
    # One matrix product sums every scale's answered items and counts them (exact for item
    # values and counts far below 2**53).
    answered_item = ~np.isnan(x)
    indicator = np.zeros((x.shape[1], len(scales)))
    for j, scale in enumerate(scales):
        indicator[np.asarray(scale.items) - 1, j] = 1.0
    totals = np.nan_to_num(x, copy=False, nan=0.0) @ indicator
    answered = answered_item.astype(float) @ indicator
    results = {}
    for j, scale in enumerate(scales):
        results[scale.name] = _prorate(totals[:, j], answered[:, j].astype(np.int64), scale)
    return results


def _prorate(total: np.ndarray, answered: np.ndarray, scale: ScaleKey) -> dict[str, np.ndarray]:
    n_items = len(scale.items)
    missing = n_items - answered
    with np.errstate(invalid="ignore", divide="ignore"):
        item_mean = total / answered
    if scale.proration == "rounded_item_mean":
        # OQ-45 manual: each missing item takes the subscale mean rounded to a whole number (halves up)
        filled_sum = total + missing * np.floor(item_mean + 0.5)
        filled_mean = filled_sum / n_items
    else:
        filled_sum = np.where(missing == 0, total, item_mean * n_items)
        filled_mean = item_mean
    score = (filled_sum if scale.scoring == "sum" else filled_mean) * scale.multiplier
    valid = (missing <= scale.max_missing) & (answered > 0)
    return {"score": np.where(valid, score, np.nan), "items_answered": answered,
            "prorated": valid & (missing > 0)}


def _score_composite(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    score = np.sum([p["score"] for p in parts], axis=0)  # NaN when any part is missing
    answered = np.sum([p["items_answered"] for p in parts], axis=0).astype(np.int64)
    prorated = np.logical_or.reduce([p["prorated"] for p in parts]) & ~np.isnan(score)
    return {"score": score, "items_answered": answered, "prorated": prorated}


def _score_instrument(x: np.ndarray, administered: np.ndarray, key: InstrumentKey) -> dict[str, np.ndarray]:
    """Scores of the administered rows ``x`` (at positions ``administered``; overwritten)."""
    results = score_items(x, key, copy=False)
    names = list(key.scales)
    out = {what: np.column_stack([results[s][what] for s in names]).ravel()
           for what in ("score", "items_answered", "prorated")}
    out["position"] = np.repeat(administered, len(names))
    out["scale_code"] = np.tile(np.arange(len(names)), administered.size)
    return out


def _assemble(df: pd.DataFrame, parts: dict[str, dict[str, np.ndarray]],
              instruments: Mapping[str, InstrumentKey]) -> pd.DataFrame:
    # Columns are joined with concat(axis=1, copy=False) so that pandas does not consolidate
    # millions of object values into one block (a copy that took seconds).
    position = np.concatenate([p["position"] for p in parts.values()])
    columns = {}
    for col in ("client", "therapist", "session", "respondent", "rater"):
        if col in df.columns:
            columns[col] = df[col].to_numpy()[position]
        else:
            columns[col] = np.full(position.size, None, dtype=object)
    columns["session"] = columns["session"].astype("int64")
    entry_names = np.asarray(list(parts), dtype=object)
    columns["instrument"] = np.repeat(entry_names, [p["position"].size for p in parts.values()])
    scale_names = [np.asarray(list(instruments[e].scales), dtype=object)[p["scale_code"]] for e, p in parts.items()]
    columns["scale"] = np.concatenate(scale_names)
    for what in ("score", "items_answered", "prorated"):
        columns[what] = np.concatenate([p[what] for p in parts.values()])
    # dtype given explicitly: inferring it would scan millions of object values for dates
    series = [pd.Series(columns[c], name=c, copy=False, dtype=columns[c].dtype) for c in SCORE_COLUMNS]
    return pd.concat(series, axis=1, copy=False)


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        SCORE_COLUMNS, ["object", "object", "int64", "object", "object", "object", "object",
                        "float64", "int64", "bool"])})


def _select_scores(scores: pd.DataFrame, instrument: str, respondent: str | None, scale: str) -> pd.DataFrame:
    rows = scores[scores["instrument"].eq(instrument)]
    if rows.empty:
        known = sorted(scores["instrument"].dropna().unique())
        raise ValueError(f"early alliance: no scores for instrument '{instrument}'; instruments scored: {known}")
    if respondent is None:
        respondents = sorted(rows["respondent"].dropna().unique())
        if len(respondents) != 1:
            raise ValueError(f"early alliance: instrument '{instrument}' has respondents {respondents}; "
                             "name one with respondent=")
        respondent = respondents[0]
    rows = rows[rows["respondent"].eq(respondent)]
    if rows.empty:
        raise ValueError(f"early alliance: no '{respondent}' scores for instrument '{instrument}'")
    selected = rows[rows["scale"].eq(scale)]
    if selected.empty:
        raise ValueError(f"early alliance: instrument '{instrument}' has no scale '{scale}'; scales: "
                         f"{sorted(rows['scale'].unique())}")
    return selected
