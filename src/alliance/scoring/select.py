"""Small helpers shared by the workflow-step functions of the analysis sections.

The step modules (:mod:`alliance.rupture_steps`, :mod:`alliance.agreement_steps`,
:mod:`alliance.interrater_steps`) read the workflow's files, call the statistics modules and
write results; these helpers check config cross-references and make values JSON-safe.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from alliance.errors import first_row, shape_of

__all__ = [
    "require_instrument",
    "require_scores",
    "select_change",
]


def require_instrument(instruments: Mapping[str, Any], entry: Any, where: str, hint: str = "") -> str:
    """Check that ``entry`` names an instrument entry of the config (``instruments:``).

    Raises
    ------
    ValueError
        Naming the config key ``where`` (e.g. ``agreement/therapist_instrument``), the value and
        the configured entries.
    """
    if not isinstance(entry, str) or entry not in instruments:
        known = ", ".join(instruments) or "none"
        raise ValueError(
            f"at {where}: {entry!r} is not an instrument entry under instruments: (known: {known})"
            + (f"; {hint}" if hint else "")
        )
    return entry


def require_scores(scores: pd.DataFrame, instrument: str, respondent: str, scales: Sequence[str],
                   where: str) -> pd.DataFrame:
    """Rows of the long scores table for one instrument and respondent, checking the scales.

    Raises
    ------
    ValueError
        When the instrument/respondent has no scores, or a scale is not among its scales.
    """
    rows = scores[(scores["instrument"] == instrument) & (scores["respondent"] == respondent)]
    if rows.empty:
        present = sorted(set(zip(scores["instrument"], scores["respondent"])))
        raise ValueError(
            f"at {where}: the scores table has no rows with instrument {instrument!r} and respondent "
            f"{respondent!r} (columns 'instrument', 'respondent'); present: {present}"
        )
    available = list(pd.unique(rows["scale"]))
    missing = [s for s in scales if s not in available]
    if missing:
        raise ValueError(
            f"at {where}: instrument {instrument!r} ({respondent}) has no scale(s) {missing}; "
            f"its scales: {available}"
        )
    return rows


def select_change(change: pd.DataFrame, instrument: str, where: str) -> pd.DataFrame:
    """One row per client of the change table (``results/change/change.csv``) for ``instrument``.

    Returns ``client``, ``baseline`` (the first administration, column ``pre``), ``post`` and
    ``change`` (post - pre).
    """
    missing = [c for c in ("client", "instrument", "pre", "post", "change") if c not in change.columns]
    if missing:
        raise ValueError(f"the change table is missing column(s) {missing}; found {list(change.columns)}")
    rows = change[change["instrument"] == instrument]
    if rows.empty:
        present = sorted(change["instrument"].dropna().unique())
        raise ValueError(
            f"at {where}: the change table (results/change/change.csv) has no rows for instrument "
            f"{instrument!r}; change is computed for outcome measures with change norms: {present}"
        )
    if "scale" in rows and rows["scale"].nunique() > 1:
        raise ValueError(f"at {where}: the change table has several scales for {instrument!r}")
    duplicated = rows["client"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"the change table has more than one row for the same client and instrument {instrument!r} "
            f"(row {first_row(rows, duplicated.to_numpy())!r}; the client is "
            f"{shape_of(str(rows['client'][duplicated].iloc[0]))})"
        )
    out = rows[["client", "pre", "post", "change"]].rename(columns={"pre": "baseline"})
    return out.reset_index(drop=True)
