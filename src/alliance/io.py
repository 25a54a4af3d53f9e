"""Readers for the table formats studies export: CSV, TSV, Excel, SPSS .sav and Parquet.

Every reader returns a DataFrame with a RangeIndex and column names stripped of surrounding
whitespace. Text formats are read as strings so that validation can report the value exactly
as the file holds it; Excel, SPSS and Parquet keep their typed cells (an Excel date cell stays a
datetime, for the de-identification gate to find).
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import pandas as pd

from alliance.errors import InputError, Problem

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
SUPPORTED = sorted([*TEXT_SUFFIXES, ".xlsx", ".xlsm", ".sav", ".parquet", ".pq"])


def read_table(path: str | Path, sheet: str | int | None = None) -> pd.DataFrame:
    """Read one study table, whatever its format.

    Parameters
    ----------
    path : str or Path
        The file. Its suffix selects the reader (see ``SUPPORTED``).
    sheet : str or int, optional
        Excel sheet name or position; the first sheet by default.

    Returns
    -------
    pandas.DataFrame
        Text files: every cell a string or missing. Empty cells are missing.

    Raises
    ------
    InputError
        The file does not exist, has an unsupported suffix, is empty, has no data rows, or has
        duplicated column names.
    """
    path = Path(path)
    if not path.exists():
        raise InputError([Problem(str(path), None, None, None, "an existing file")], "Cannot read")
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        frame = _read_text(path, TEXT_SUFFIXES[suffix])
    elif suffix in (".xlsx", ".xlsm"):
        frame = _read_excel(path, sheet)
    elif suffix == ".sav":
        frame = _read_binary(path, _read_sav, "an SPSS .sav file")
    elif suffix in (".parquet", ".pq"):
        frame = _read_binary(path, pd.read_parquet, "a Parquet file")
    else:
        raise InputError(
            [Problem(str(path), None, None, suffix, f"one of the formats {', '.join(SUPPORTED)}")],
            "Unsupported file",
        )
    return _tidy_columns(frame, path)


def _cannot_read(path: Path, expected: str) -> InputError:
    return InputError([Problem(str(path), None, None, None, expected)], "Cannot read")


def _read_binary(path: Path, reader, what: str) -> pd.DataFrame:
    try:
        return reader(path)
    except Exception as err:  # every reader's own error type: pyarrow, pyreadstat, zip, OS
        raise _cannot_read(path, f"{what} ({type(err).__name__}: {err})") from None


def _read_excel(path: Path, sheet) -> pd.DataFrame:
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except Exception as err:
        raise _cannot_read(path, f"an Excel workbook ({type(err).__name__}: {err})") from None
    with book:
        chosen = 0 if sheet is None else sheet
        if isinstance(chosen, str) and chosen not in book.sheet_names:
            raise _cannot_read(path, f"a sheet named {chosen!r}; the workbook has {', '.join(map(repr, book.sheet_names))}")
        if isinstance(chosen, int) and not 0 <= chosen < len(book.sheet_names):
            raise _cannot_read(path, f"sheet number {chosen}; the workbook has {len(book.sheet_names)} sheet(s)")
        try:
            header = book.parse(chosen, header=None, nrows=1, dtype=object).iloc[0].tolist()
            # keep_default_na=False: 'n/a' or 'NA' typed into a cell is reported as the file
            # holds it, as for text files, instead of silently becoming missing.
            frame = book.parse(chosen, dtype=object, keep_default_na=False, na_values=[""])
        except Exception as err:
            raise _cannot_read(path, f"a readable sheet ({type(err).__name__}: {err})") from None
    if len(header) == len(frame.columns):
        frame.columns = [str(h) for h in header]  # pandas renames repeated names; keep them to report
    return frame


def _read_text(path: Path, sep: str | None) -> pd.DataFrame:
    raw = path.read_bytes()
    text, encoding = _decode(raw)
    if not text.strip():
        raise _cannot_read(path, "a header row and data rows; the file is empty")
    if encoding != "utf-8":
        log.info("%s: read as %s", path, encoding)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings
    first = text.split("\n", 1)[0]
    sep = sep or _guess_separator(first)
    if sep == "," and first.count(";") > 0 and first.count(",") == 0:
        sep = ";"  # Excel's CSV in locales with a decimal comma
    from io import StringIO

    header = next(csv.reader(StringIO(first), delimiter=sep))
    try:
        with warnings.catch_warnings():
            # index_col=False: a first data row with one field too many is an error (pandas
            # warns and drops the field), not an index column
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                na_values=[""], skipinitialspace=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as err:
        raise _cannot_read(path, f"a well-formed table ({err})") from None
    if len(header) == len(frame.columns):
        frame.columns = header  # pandas renames repeated names (a, a.1); keep them to report
    return frame


def _guess_separator(header: str) -> str:
    """A tab in the header wins (survey tools put commas in long question texts)."""
    if "\t" in header:
        return "\t"
    return ";" if header.count(";") > header.count(",") else ","


def _decode(raw: bytes) -> tuple[str, str]:
    """UTF-16 by its BOM; UTF-8 (with or without BOM); Latin-1 when the bytes are not UTF-8."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8 (BOM)"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _read_sav(path: Path) -> pd.DataFrame:
    import pyreadstat

    # user_missing=False (the default) turns SPSS user-missing codes into NaN; value labels
    # are metadata and the numeric codes are kept.
    frame, meta = pyreadstat.read_sav(str(path), user_missing=False, apply_value_formats=False)
    if meta.missing_ranges:
        log.info("%s: SPSS user-missing codes set to missing in %s", path, sorted(meta.missing_ranges))
    return frame


def _tidy_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    stripped = [str(c).strip() for c in frame.columns]
    changed = [str(c) for c, s in zip(frame.columns, stripped) if str(c) != s]
    if changed:
        log.warning("%s: surrounding spaces removed from column names %s", path, changed)
    seen, dupes = set(), []
    for name in stripped:
        if name in seen:
            dupes.append(name)
        seen.add(name)
    problems = [Problem(str(path), 1, name, None, "unique column names") for name in dupes]
    if problems:
        raise InputError(problems, "Duplicated columns")
    frame.columns = stripped
    if len(frame) == 0:
        raise InputError([Problem(str(path), None, None, None, "data rows below the header; found none")],
                         "Cannot read")
    return frame.reset_index(drop=True)
