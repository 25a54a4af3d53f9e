"""The de-identification gate and keyed pseudonymisation of ids.

Before anything else runs, every column the config maps is scanned for direct identifiers
(HIPAA Safe Harbor, 45 CFR 164.514(b)(2): names, contact details, postcodes, calendar dates,
record numbers; plus free-text notes, which routinely hold all of them), in several languages
and whether written as text or as numbers (the detectors are in :mod:`alliance.identifiers`).
A file holding one is refused, naming the file, column, kind and rows; the offending value is
never printed, only its shape (letters as ``x``, digits as ``9``). A column the config drops,
or does not map, is not scanned (``alliance.data.steps.read_study`` removes it as the file is read).
The gate fails closed: what it cannot tell from an identifier (a value of two words seen once,
an id that is letters only) is refused, and the message says how to declare it.

Client, therapist and rater ids are replaced by a keyed hash (HMAC-SHA256, RFC 2104), so that
the same id maps to the same pseudonym across runs with the same key, and nobody without the
key can reverse or recompute the mapping (GDPR art. 4(5) pseudonymisation).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance.data import identifiers as idf
from alliance.errors import IdentifierError

PREFIX = {"client": "C-", "therapist": "T-", "rater": "R-"}
DIGEST_CHARS = 12

FREE_TEXT_WORDS = idf.FREE_TEXT_WORDS
_SHORT_NUMBER = r"[+-]?\d{1,6}(?:\.\d+)?"
ROLES = ("id", "covariate", "text", "data")


@dataclass(frozen=True)
class Finding:
    file: str
    column: str
    kind: str
    rows: tuple[int, ...]
    example_shape: str | None

    def __str__(self) -> str:
        rows = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" and {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
            rows = f" in rows {shown}{more}"
        shape = f" (shape of a value: {self.example_shape!r})" if self.example_shape else ""
        return f"{self.file}, column '{self.column}': looks like a {self.kind}{rows}{shape}"


def _shape(value: str) -> str:
    """A value's shape without its content: every letter as x, every digit as 9."""
    return re.sub(r"[^\W\d_]", "x", re.sub(r"\d", "9", value))[:40]


def scan_column_name(column: str) -> str | None:
    """The kind of identifier a column's name announces (in any of the covered languages), or None."""
    return idf.column_kind(column)


def _value_kind(value: str, role: str) -> str | None:
    """The kind of identifier one distinct text value is, judged alone (None: not by itself)."""
    if idf.is_email(value):
        return "contact detail (e-mail address)"
    if idf.is_url(value):
        return "contact detail (web address)"
    if idf.is_ip_address(value):
        return "contact detail (IP address)"
    if idf.is_digit_date(value) or idf.is_worded_date(value):
        return "calendar date"
    number = idf.national_number(value)
    if number == "strong" or (number == "weak" and role == "id"):
        return "record number (national, insurance or health number)"
    if idf.is_phone_number(value):
        return "contact detail (phone number)"
    if idf.is_postcode(value):
        return "postcode"
    if idf.is_street_address(value):
        return "contact detail (street address)"
    if idf.has_title(value):
        return "name (with a title)"
    if idf.is_initials_and_year(value):
        return "name (initials and birth year)"
    if idf.word_count(value) >= FREE_TEXT_WORDS:  # declared text is for labels, not notes
        return "free-text note"
    if role == "id":
        if idf.looks_like_name(value):
            return "name"
        if idf.long_digit_run(value):
            return "record number or phone number (seven or more digits)"
    return None


def _drop_code_prefixes(hits: dict[str, str], values) -> dict[str, str]:
    """Initials-and-year hits whose letters are the column's code prefix (P1987 among P0019...)."""
    prefix = pd.Series([re.match(r"[^\W\d_]*", v).group(0).upper() for v in values])
    common = prefix.value_counts()
    shared = set(common.index[common >= max(2, 0.5 * len(values))])
    return {v: k for v, k in hits.items()
            if not (k.startswith("name (initials") and re.match(r"[^\W\d_]*", v).group(0).upper() in shared)}


def _text_hits(counts: pd.Series, role: str) -> dict[str, str]:
    """Distinct value -> kind, for the distinct values that identify someone.

    ``counts`` holds each distinct (stripped, non-empty) text value's number of rows.
    """
    # A number of at most six digits (an item score, a session, 4.5) is no identifier of any kind.
    counts = counts[~counts.index.str.fullmatch(_SHORT_NUMBER)]
    hits = {}
    for value in counts.index:
        kind = _value_kind(value, role)
        if kind is not None:
            hits[value] = kind
    hits = _drop_code_prefixes(hits, counts.index)
    if hits:
        return hits
    weak = [v for v in counts.index if idf.national_number(v) == "weak"]
    if weak and len(weak) >= 0.5 * len(counts):
        return {v: "record number (national, insurance or health number)" for v in weak}
    if role == "text":
        return {}
    # A category repeats across rows; a value of two or more words seen once is a note or a name.
    once = [v for v, n in counts.items() if n == 1 and idf.word_count(v) >= 2]
    if once:
        kind = ("name or free-text note (a value of two or more words seen once)"
                if all(idf.looks_like_name(v) and idf.word_count(v) <= 3 for v in once)
                else "free-text note")
        return {v: kind for v in once}
    return {}


def _numeric_hits(values: pd.Series) -> dict[str, str]:
    """Integers that are dates (19870403), national numbers or phone numbers, in most values."""
    x = values.dropna().astype(float)
    x = x[np.isfinite(x) & (x == np.floor(x)) & (x.abs() >= 1e6)]
    if x.empty:
        return {}
    uniques = pd.unique(x.astype("int64").astype(str))
    total = values.dropna().nunique()
    for kind, test in (("calendar date (written as a number)", idf.is_digit_date),
                       ("record number (national, insurance or health number)", idf.national_number),
                       ("contact detail (phone number)", idf.is_phone_number)):
        hit = [u for u in uniques if test(u)]
        if hit and len(hit) >= 0.5 * total:
            return {u: kind for u in hit}
    return {}


def scan_values(values: pd.Series, role: str = "data") -> tuple[str, np.ndarray] | None:
    """The kind of identifier found among a column's values and the positions holding it.

    ``role`` is what the config says the column is: ``id`` (client, therapist, rater ids: must
    look like codes), ``covariate``, ``text`` (declared non-identifying text: no free-text rule)
    or ``data`` (items, sessions and the like). Every distinct value is judged once.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if pd.api.types.is_datetime64_any_dtype(values):
        return "calendar date", np.flatnonzero(values.notna().to_numpy())
    if pd.api.types.is_bool_dtype(values):
        return None
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_numeric_dtype(values) and role == "id":  # a numeric id is judged as its digits
        values = values.map(lambda v: None if pd.isna(v) else str(int(v)) if float(v).is_integer() else str(v))
    elif pd.api.types.is_numeric_dtype(values):
        hits = _numeric_hits(values)
        if not hits:
            return None
        as_text = values.map(lambda v: str(int(v)) if pd.notna(v) and float(v).is_integer() else None)
        kind = next(iter(hits.values()))
        return kind, np.flatnonzero(as_text.isin(set(hits)).to_numpy())
    # Every check runs on the distinct values; rows are found again through their codes.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = pd.Series(np.asarray(uniques, dtype=object))
    dated = uniques.map(lambda v: isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat"))
    if dated.any():
        return "calendar date (a date cell)", np.flatnonzero(np.isin(codes, np.flatnonzero(dated.to_numpy())))
    text = uniques.map(lambda v: str(v).strip())
    counts = pd.Series(np.bincount(codes[codes >= 0], minlength=len(uniques)), index=text.to_numpy())
    counts = counts[counts.index != ""].groupby(level=0, sort=False).sum()
    hits = _text_hits(counts, role)
    if not hits:
        return None
    hit_codes = np.flatnonzero(text.isin(set(hits)).to_numpy())
    positions = np.flatnonzero(np.isin(codes, hit_codes))
    return hits[text[codes[positions[0]]]], positions


def scan_table(frame: pd.DataFrame, file: str, allow_columns=(), roles: dict | None = None) -> list[Finding]:
    """Every direct identifier in one table, by column (dropped columns already removed).

    ``roles`` maps a column to its role (see :func:`scan_values`); other columns are ``data``.
    """
    roles = roles or {}
    findings = []
    for column in frame.columns:
        kind = scan_column_name(column)
        if kind is not None:
            findings.append(Finding(file, column, kind + " (by its column name)", (), None))
            continue
        if column in allow_columns:
            continue
        hit = scan_values(frame[column], roles.get(column, "data"))
        if hit is not None:
            kind, positions = hit
            rows = tuple(int(p) + 2 for p in positions)
            example = str(frame[column].iloc[positions[0]]) if len(positions) else None
            findings.append(Finding(file, column, kind, rows, _shape(example) if example else None))
    return findings


def refuse_identifiers(tables: dict[str, pd.DataFrame], drop_columns=(), allow_columns=(),
                       roles: dict | None = None, unmapped: dict | None = None,
                       refuse_unmapped: bool = False) -> dict:
    """Scan every table; raise :class:`IdentifierError` naming every identifier found.

    Parameters
    ----------
    tables : dict
        File -> the columns read from it.
    drop_columns, allow_columns : sequence of str
        Columns removed unscanned; columns whose values are not scanned (their names are).
    roles : dict, optional
        File -> {column: role} (see :func:`scan_values`).
    unmapped : dict, optional
        File -> columns the config does not map, which were dropped unread.
    refuse_unmapped : bool
        Refuse a file with an unmapped column instead of dropping it (``deid: unmapped: refuse``).

    Returns
    -------
    dict
        File -> columns scanned, columns dropped (``drop_columns``) and columns dropped unread
        because the config does not map them; for the log and the provenance record.
    """
    roles, unmapped = roles or {}, unmapped or {}
    findings, report = [], {}
    for file, frame in tables.items():
        dropped = [c for c in frame.columns if c in drop_columns]
        kept = frame.drop(columns=dropped)
        findings += scan_table(kept, file, allow_columns, roles.get(file))
        extra = list(unmapped.get(file, []))
        if refuse_unmapped:
            findings += [Finding(file, c, "column the config does not map (deid: unmapped: refuse)", (), None)
                         for c in extra]
        report[file] = {"columns_scanned": len(kept.columns), "columns_dropped": dropped,
                        "columns_dropped_unmapped": extra}
    if findings:
        lines = "\n".join(f"  - {f}" for f in findings)
        raise IdentifierError(
            f"De-identification gate: {len(findings)} column(s) hold what looks like a direct "
            f"identifier; nothing was written.\n{lines}\n"
            "Remove these columns from the export, or list them under deid: drop_columns: in the "
            "config (they are then never read). A column that is not an identifier can be listed "
            "under deid: allow_columns: to skip the value scan, and a column of non-identifying "
            "text under deid: text_columns:."
        )
    return report


def load_id_key(key_env: str = "ALLIANCE_ID_KEY", key_file: str | None = None) -> bytes:
    """The pseudonymisation key (see :func:`alliance.data.keys.load_id_key`)."""
    from alliance.data.keys import load_id_key as load

    return load(key_env, key_file)


def normalise_ids(ids: pd.Series) -> pd.Series:
    """Ids as the project reads them: :func:`alliance.data.ids.normalise_ids` (one normalisation)."""
    from alliance.data.ids import normalise_ids as normalise

    return normalise(ids)


def pseudonymise(ids: pd.Series, kind: str, key: bytes) -> pd.Series:
    """Replace each (normalised) id by ``PREFIX`` + the first 12 hex digits of its HMAC."""
    if kind not in PREFIX:
        raise ValueError(f"kind must be one of {sorted(PREFIX)}, got {kind!r}")
    ids = normalise_ids(ids)
    uniques = pd.unique(ids.dropna())
    mapping = {
        raw: PREFIX[kind] + hmac.new(key, f"{kind}:{raw}".encode("utf-8"), hashlib.sha256).hexdigest()[:DIGEST_CHARS]
        for raw in uniques
    }
    return ids.map(mapping).astype(object).where(ids.notna(), None)
