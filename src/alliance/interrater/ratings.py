"""Long tables of ratings, one row per target × rater: the input checks and the integer coding
that the inter-rater statistics share (:mod:`alliance.reliability`,
:mod:`alliance.rater_effects`, :mod:`alliance.coding_agreement`).

Every check raises ``ValueError`` naming the column, the row (the table's index label) and the
value, and what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from alliance.errors import first_row, flagged_rows, shape_of, shown_value

__all__ = ["CodedIds", "LongRatings", "check_long_table", "drop_missing", "id_codes", "numeric_values",
           "prepare_ratings", "refuse_duplicate_pairs", "drop_single_rated"]


@dataclass(frozen=True)
class CodedIds:
    """Target and rater of each rating as integer codes (in sorted id order), with the id levels."""

    t: np.ndarray
    r: np.ndarray
    targets: np.ndarray
    raters: np.ndarray

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def n_raters(self) -> int:
        return len(self.raters)

    def ratings_per_target(self) -> np.ndarray:
        return np.bincount(self.t, minlength=self.n_targets)


@dataclass(frozen=True)
class LongRatings(CodedIds):
    """Numeric ratings (``y``, one per rating) with their coded targets and raters."""

    y: np.ndarray


def id_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of ids in sorted order, so results do not depend on row order."""
    try:
        codes, levels = pd.factorize(ids, sort=True)
    except TypeError:  # ids of mixed types cannot be sorted: order of appearance
        codes, levels = pd.factorize(ids, sort=False)
    return codes.astype(np.intp), np.asarray(levels)


def check_long_table(data: pd.DataFrame, columns: Mapping[str, str]) -> None:
    """A DataFrame holding the named columns (``{"target": ..., "rater": ..., role: ...}``),
    all different, with no missing target or rater id."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [f"{role}={name!r}" for role, name in columns.items() if name not in data.columns]
    if missing:
        raise ValueError(f"column(s) not in data: {', '.join(missing)}; data has columns {list(data.columns)}")
    if len(set(columns.values())) < len(columns):
        shown = ", ".join(f"{role}={name!r}" for role, name in columns.items())
        raise ValueError(f"{', '.join(columns)} must be different columns; got {shown}")
    for role in ("target", "rater"):
        column = columns[role]
        absent = data[column].isna().to_numpy()
        if absent.any():
            raise ValueError(f"column {column!r} has a missing id in row {first_row(data, absent)!r}; every "
                             "rating needs its target and its rater")


def numeric_values(values: pd.Series, column: str, what: str = "finite numbers") -> np.ndarray:
    """The column as floats (missing stays NaN); text or infinite values raise, naming the row."""
    as_number = pd.to_numeric(values, errors="coerce")
    y = as_number.to_numpy(dtype=float)
    bad = (as_number.isna() & values.notna()).to_numpy() | np.isinf(y)
    if bad.any():
        row = first_row(values, bad)
        raise ValueError(f"column {column!r} must hold {what}; row {row!r}{shown_value(values[bad].iloc[0])}")
    return y


def drop_missing(data: pd.DataFrame, column: str, noun: str = "rating") -> pd.DataFrame:
    """Rows with a value in ``column``; the dropped ones are counted in a warning."""
    absent = data[column].isna().to_numpy()
    if absent.any():
        warnings.warn(f"{int(absent.sum())} {noun}(s) missing in column {column!r}: dropped", stacklevel=4)
    return data.loc[~absent]


def refuse_duplicate_pairs(data: pd.DataFrame, target: str, rater: str, verb: str = "rate") -> None:
    """Each rater may rate each target once."""
    keys = data[[target, rater]]
    dup = keys.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = flagged_rows(data, dup, 4)
        raise ValueError(f"{int(keys.duplicated().sum())} duplicate ({target}, {rater}) pair(s), e.g. in rows "
                         f"{rows}; each rater may {verb} each target once")


def prepare_ratings(data: pd.DataFrame, target: str, rater: str, rating: str) -> LongRatings:
    """Check a long table of numeric ratings and code it; missing ratings are dropped with a
    warning giving their count."""
    check_long_table(data, {"target": target, "rater": rater, "rating": rating})
    y = numeric_values(data[rating], rating)
    kept = drop_missing(data, rating)
    refuse_duplicate_pairs(kept, target, rater)
    t, targets = id_codes(kept[target].to_numpy())
    r, raters = id_codes(kept[rater].to_numpy())
    return LongRatings(t=t, r=r, y=y[~np.isnan(y)], targets=targets, raters=raters)


def drop_single_rated(d, target: str, dropped_from: str, values: str = "y", verb: str = "rated"):
    """Drop targets rated by one rater only (they show nothing about agreement), with a warning
    giving their count.

    ``d`` is a :class:`CodedIds` with one value per rating in the field named ``values``; the
    codes are renumbered.
    """
    single = d.ratings_per_target() == 1
    if not single.any():
        return d
    warnings.warn(f"{int(single.sum())} target(s) in column {target!r} {verb} by one rater only "
                  f"(e.g. {shape_of(str(d.targets[single][0]))}): dropped from {dropped_from}", stacklevel=4)
    keep = ~single[d.t]
    t, targets = id_codes(d.targets[d.t[keep]])
    r, raters = id_codes(d.raters[d.r[keep]])
    return replace(d, t=t, r=r, targets=targets, raters=raters, **{values: getattr(d, values)[keep]})
