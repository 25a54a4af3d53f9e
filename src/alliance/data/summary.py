"""The data summary: sample sizes per level, completion per instrument and session.
"""
from __future__ import annotations

import pandas as pd



def instrument_entries(administrations: pd.DataFrame) -> dict[str, list[str]]:
    """Instrument entry -> its item columns, read off the tidy dataset's column names."""
    fixed = {"client", "therapist", "session", "days_since_intake", "respondent", "rater", "table"}
    entries: dict[str, list[str]] = {}
    for col in administrations.columns:
        if col in fixed:
            continue
        entry, _, n = col.rpartition("_")
        if n.isdigit():
            entries.setdefault(entry, []).append(col)
    return entries


def sample_sizes(administrations: pd.DataFrame, clients: pd.DataFrame) -> dict:
    """N per level and the spread of caseloads and session counts."""
    sessions = administrations[["client", "session"]].drop_duplicates()
    per_client = sessions.groupby("client").size()
    caseload = clients.groupby("therapist").size()
    observers = administrations[administrations["respondent"] == "observer"]
    return {
        "therapists": int(administrations["therapist"].nunique()),
        "clients": int(administrations["client"].nunique()),
        "sessions": int(len(sessions)),
        "administrations": {r: int(n) for r, n in administrations["respondent"].value_counts().sort_index().items()},
        "raters": int(observers["rater"].nunique()),
        "sessions_per_client": _spread(per_client),
        "clients_per_therapist": _spread(caseload),
    }


def _spread(values: pd.Series) -> dict:
    return {"min": int(values.min()), "median": float(values.median()),
            "mean": float(values.mean()), "max": int(values.max())}


def completion(administrations: pd.DataFrame) -> pd.DataFrame:
    """Per instrument and session: administrations complete, partial and missing.

    An administration is the row of the instrument's table; it is complete when every item is
    answered, partial when some are, missing when none are.
    """
    rows = []
    for entry, cols in instrument_entries(administrations).items():
        has_any = administrations[cols].notna().any(axis=1)
        table = administrations.loc[has_any, "table"].mode()
        rows_of = administrations["table"] == (table.iloc[0] if len(table) else None)
        sub = administrations.loc[rows_of, ["session"]].copy()
        answered = administrations.loc[rows_of, cols].notna().sum(axis=1)
        sub["complete"] = answered == len(cols)
        sub["partial"] = (answered > 0) & (answered < len(cols))
        sub["missing"] = answered == 0
        agg = sub.groupby("session").agg(rows=("complete", "size"), complete=("complete", "sum"),
                                         partial=("partial", "sum"), missing=("missing", "sum"))
        agg.insert(0, "instrument", entry)
        rows.append(agg.reset_index())
    out = pd.concat(rows, ignore_index=True)
    out["completion_rate"] = (out["complete"] + out["partial"]) / out["rows"]
    return out[["instrument", "session", "rows", "complete", "partial", "missing", "completion_rate"]]


#: where in a client's course an administration lies: first, between first and last, last
SLOTS = ("intake", "between", "end")


def scheduled_completion(administrations: pd.DataFrame) -> pd.DataFrame:
    """Per instrument and session: the share of *scheduled* administrations with any item answered.

    The schedule is inferred from the data: each row of an instrument's table is the client's
    first session in that table ("intake"), last ("end") or in between; an instrument is taken
    as scheduled at the kinds of session where any client answered it (a measure given at
    intake and end only is never answered in between). Rows where it was not scheduled are
    left out, so that a measure given at intake and end is not shown as unanswered at every
    session in between; a session at which it was scheduled for no client has no row.

    Returns
    -------
    DataFrame
        ``instrument``, ``schedule`` (``"every session"``, the slots, e.g. ``"intake, end"``, or
        the sessions of a fixed schedule, e.g. ``"sessions 2, 5, 8"``), ``session``,
        ``scheduled`` (rows), ``answered`` (rows with any item answered), ``completion_rate``.
    """
    rows = []
    all_sessions = set(administrations["session"].dropna().astype(int))
    for entry, cols in instrument_entries(administrations).items():
        has_any = administrations[cols].notna().any(axis=1)
        table = administrations.loc[has_any, "table"].mode()
        own = administrations["table"] == (table.iloc[0] if len(table) else None)
        sub = administrations.loc[own, ["client", "session"]].assign(answered=has_any[own])
        by_client = sub.groupby("client")["session"]
        first, last = by_client.transform("min"), by_client.transform("max")
        sub["slot"] = "between"
        sub.loc[sub["session"] == last, "slot"] = "end"
        sub.loc[sub["session"] == first, "slot"] = "intake"
        slots = [s for s in SLOTS if sub.loc[sub["answered"], "slot"].eq(s).any()]
        # one session a client's first and last at once counts as scheduled when either is
        kept = sub[sub["slot"].isin(slots) | ((first == last)[sub.index] & bool({"intake", "end"} & set(slots)))]
        agg = kept.groupby("session").agg(scheduled=("answered", "size"), answered=("answered", "sum"))
        agg.insert(0, "schedule", _schedule_text(slots, agg.index, all_sessions))
        agg.insert(0, "instrument", entry)
        rows.append(agg.reset_index())
    columns = ["instrument", "schedule", "session", "scheduled", "answered", "completion_rate"]
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.concat(rows, ignore_index=True)
    out["answered"] = out["answered"].astype("int64")
    out["completion_rate"] = out["answered"] / out["scheduled"]
    return out[columns]


def _schedule_text(slots: list[str], sessions, all_sessions: set[int]) -> str:
    if slots != list(SLOTS):
        return ", ".join(slots)
    own = sorted(int(s) for s in sessions)
    return "every session" if set(own) >= all_sessions else "sessions " + ", ".join(map(str, own))
