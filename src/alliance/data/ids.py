"""Client, therapist and rater ids as users export them: one normalisation, and what stays ambiguous.

The normalisation (docs/data_contract.md, "Ids") is the only one the project applies, and the
pseudonyms are HMACs of its result, so an already clean id (``101``) keeps its pseudonym:

- ids are text; a missing or blank cell is no id;
- bytes (Parquet binary columns) are decoded as UTF-8;
- an integer stored as a number, or as text ending in ``.0`` (Excel, 19.0), loses the ``.0``;
- surrounding spaces are stripped.

What the normalisation cannot decide is refused by validation (:func:`ambiguous_groups`): ids
that differ only by upper/lower case, by leading zeros (``19`` and ``0019``), by invisible
characters (zero-width space, soft hyphen, no-break space) or by look-alike letters of another
script (Cyrillic ``С`` for Latin ``C``). They may be one client or two; only the user can say.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

_WHOLE_WITH_ZEROS = re.compile(r"^([+-]?\d+)\.0+$")
_LEADING_ZEROS = re.compile(r"(?<!\d)0+(?=\d)")

# Cyrillic and Greek capitals and small letters drawn like Latin ones (Unicode confusables,
# the subset that occurs in typed ids)
_LOOKALIKES = str.maketrans({
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "d",
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "х": "x", "у": "y", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ν": "v", "ι": "i", "κ": "k",
})


def normalise_id(value: object) -> str | None:
    """One id as the project reads it (see the module docstring); ``None`` for no id."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    text = str(value).strip()
    if not text:
        return None
    whole = _WHOLE_WITH_ZEROS.match(text)
    return whole.group(1) if whole else text


def normalise_ids(ids: pd.Series) -> pd.Series:
    """:func:`normalise_id` on every cell, computed once per distinct value."""
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    table = np.array([normalise_id(u) for u in uniques] + [None], dtype=object)
    return pd.Series(table[codes], index=ids.index, dtype=object, name=ids.name)  # code -1: the None


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or (ch.isspace() and ch != " ")


def canonical_id(text: str) -> str:
    """The key under which ids count as possibly the same: no invisible characters, NFKC,
    look-alike letters as Latin, case folded, no leading zeros in a run of digits."""
    visible = "".join(ch for ch in text if not unicodedata.category(ch) == "Cf")
    folded = unicodedata.normalize("NFKC", visible).translate(_LOOKALIKES).casefold()
    return _LEADING_ZEROS.sub("", " ".join(folded.split()))


def _scripts(text: str) -> set[str]:
    return {unicodedata.name(ch, "?").split(" ")[0] for ch in text if ch.isalpha()}


def suspicious(text: str) -> str | None:
    """Why one id cannot be trusted on its own (invisible characters, mixed scripts), or None."""
    if any(_invisible(ch) for ch in text):
        return "invisible characters (zero-width space, no-break space, soft hyphen ...)"
    scripts = _scripts(text)
    if len(scripts) > 1 and scripts & {"CYRILLIC", "GREEK"} and "LATIN" in scripts:
        return "letters of more than one script (a look-alike letter such as Cyrillic 'С' for Latin 'C')"
    return None


def difference(variants: list[str]) -> str:
    """How ids with the same :func:`canonical_id` differ, for the message (never the ids)."""
    reasons = []
    if len({v.casefold() for v in variants}) < len(variants):
        reasons.append("upper/lower case")
    if len({_LEADING_ZEROS.sub("", v) for v in variants}) < len(variants):
        reasons.append("leading zeros")
    if any(any(_invisible(ch) for ch in v) for v in variants):
        reasons.append("invisible characters")
    if any(_scripts(v) & {"CYRILLIC", "GREEK"} for v in variants):
        reasons.append("look-alike letters of another script")
    return " or ".join(reasons) if reasons else "spacing or compatibility forms of characters"


def ambiguous_groups(ids: pd.Series) -> dict[str, list[str]]:
    """Canonical key -> the distinct normalised ids that share it, for keys with two or more."""
    distinct = pd.Series(pd.unique(ids.dropna()), dtype=object)
    if distinct.empty:
        return {}
    keys = distinct.map(canonical_id)
    shared = keys[keys.duplicated(keep=False)]
    return {k: sorted(distinct[shared.index[shared == k]].tolist()) for k in pd.unique(shared)}
