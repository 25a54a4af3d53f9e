"""The de-identification gate and keyed pseudonymisation of ids.

Before anything else runs, every column of every input file is scanned for direct identifiers
(HIPAA Safe Harbor, 45 CFR 164.514(b)(2): names, contact details, postcodes, calendar dates,
record numbers; plus free-text notes, which routinely hold all of them). A file holding one is
refused, naming the file, column, kind and rows; the offending value is never printed, only its
shape (letters as ``x``, digits as ``9``). A column the config drops is not scanned.

Client, therapist and rater ids are replaced by a keyed hash (HMAC-SHA256, RFC 2104), so that
the same id maps to the same pseudonym across runs with the same key, and nobody without the
key can reverse or recompute the mapping (GDPR art. 4(5) pseudonymisation).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.errors import IdentifierError

PREFIX = {"client": "C-", "therapist": "T-", "rater": "R-"}
DIGEST_CHARS = 12

# Column-name tokens that announce an identifier, by kind.
NAME_TOKENS = {
    "name": {"name", "names", "firstname", "lastname", "surname", "forename", "fullname",
             "givenname", "familyname", "initials", "patientname", "clientname", "therapistname"},
    "contact detail": {"email", "mail", "phone", "telephone", "tel", "mobile", "cell", "fax",
                       "address", "street", "city", "town", "url", "website", "ip"},
    "postcode": {"postcode", "zip", "zipcode", "postal", "plz"},
    "calendar date": {"date", "dob", "birth", "birthday", "birthdate", "datetime", "timestamp",
                      "dateofbirth", "admission", "discharge"},
    "free-text note": {"note", "notes", "comment", "comments", "remark", "remarks", "freetext",
                       "narrative", "text", "memo"},
    "record number": {"nhs", "ssn", "mrn", "insurance", "passport", "socialsecurity", "medicalrecord"},
}

VALUE_PATTERNS = {
    "contact detail (e-mail address)": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"),
    "contact detail (phone number)": re.compile(
        r"^\s*(?:\+\d[\d\s\-().]{7,}\d|\(?\d{2,5}\)?[\s\-.]\d{3,4}[\s\-.]\d{3,5})\s*$"),
    "postcode": re.compile(r"^\s*[A-Za-z]{1,2}\d[A-Za-z\d]?\s+\d[A-Za-z]{2}\s*$"),
    "calendar date": re.compile(
        r"^\s*(?:\d{4}-\d{1,2}-\d{1,2}(?:[ T].*)?|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|"
        r"\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{2,4})\s*$",
        re.IGNORECASE),
}
PERSON_NAME = re.compile(r"^[A-Z][a-z]+(?:[ -][A-Z][a-z]+){1,2}$")
FREE_TEXT_WORDS = 6


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


def _tokens(column: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(column))
    parts = [p for p in re.split(r"[^A-Za-z]+", spaced.lower()) if p]
    return set(parts) | {"".join(parts)}


def _shape(value: str) -> str:
    """A value's shape without its content: every letter as x, every digit as 9."""
    return re.sub(r"[^\W\d_]", "x", re.sub(r"\d", "9", value))[:40]


def scan_column_name(column: str) -> str | None:
    """The kind of identifier a column's name announces, or None."""
    tokens = _tokens(column)
    for kind, names in NAME_TOKENS.items():
        if tokens & names:
            return kind
    return None


def scan_values(values: pd.Series) -> tuple[str, np.ndarray] | None:
    """The kind of identifier found among a column's values and the positions holding it."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return "calendar date", np.flatnonzero(values.notna().to_numpy())
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    present = values.dropna()
    if present.empty:
        return None
    dated = present.map(lambda v: isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat"))
    if dated.any():
        return "calendar date (a date cell)", np.flatnonzero(values.index.isin(present.index[dated]))
    text = present.astype(str)
    uniques = pd.Series(text.unique())
    for kind, pattern in VALUE_PATTERNS.items():
        hit = uniques[uniques.str.contains(pattern)]
        if not hit.empty:
            return kind, np.flatnonzero(values.astype(str).isin(set(hit)).to_numpy() & values.notna().to_numpy())
    words = uniques.str.count(r"[^\W\d_]{2,}")  # letters of any script
    if (words >= FREE_TEXT_WORDS).any():
        hit = set(uniques[words >= FREE_TEXT_WORDS])
        return "free-text note", np.flatnonzero(values.astype(str).isin(hit).to_numpy() & values.notna().to_numpy())
    names = uniques[uniques.str.match(PERSON_NAME)]
    if len(names) >= 10 and len(names) >= 0.5 * len(uniques):
        return "name", np.flatnonzero(values.astype(str).isin(set(names)).to_numpy())
    return None


def scan_table(frame: pd.DataFrame, file: str, allow_columns=()) -> list[Finding]:
    """Every direct identifier in one table, by column (dropped columns already removed)."""
    findings = []
    for column in frame.columns:
        kind = scan_column_name(column)
        if kind is not None:
            findings.append(Finding(file, column, kind + " (by its column name)", (), None))
            continue
        if column in allow_columns:
            continue
        hit = scan_values(frame[column])
        if hit is not None:
            kind, positions = hit
            rows = tuple(int(p) + 2 for p in positions)
            example = str(frame[column].iloc[positions[0]]) if len(positions) else None
            findings.append(Finding(file, column, kind, rows, _shape(example) if example else None))
    return findings


def refuse_identifiers(tables: dict[str, pd.DataFrame], drop_columns=(), allow_columns=()) -> dict:
    """Scan every table; raise :class:`IdentifierError` naming every identifier found.

    Returns a report of what was scanned and dropped (file -> columns), for the log and the
    provenance record.
    """
    findings, report = [], {}
    for file, frame in tables.items():
        dropped = [c for c in frame.columns if c in drop_columns]
        kept = frame.drop(columns=dropped)
        findings += scan_table(kept, file, allow_columns)
        report[file] = {"columns_scanned": len(kept.columns), "columns_dropped": dropped}
    if findings:
        lines = "\n".join(f"  - {f}" for f in findings)
        raise IdentifierError(
            f"De-identification gate: {len(findings)} column(s) hold what looks like a direct "
            f"identifier; nothing was written.\n{lines}\n"
            "Remove these columns from the export, or list them under deid: drop_columns: in the "
            "config (they are then never read). A column that is not an identifier can be listed "
            "under deid: allow_columns: to skip the value scan."
        )
    return report


def load_id_key(key_env: str = "ALLIANCE_ID_KEY", key_file: str | None = None) -> bytes:
    """The pseudonymisation key (see :func:`alliance.keys.load_id_key`)."""
    from alliance.keys import load_id_key as load

    return load(key_env, key_file)


def normalise_ids(ids: pd.Series) -> pd.Series:
    """Ids as the project reads them: :func:`alliance.ids.normalise_ids` (one normalisation)."""
    from alliance.ids import normalise_ids as normalise

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
