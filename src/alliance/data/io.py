"""Readers for the table formats studies export: CSV, TSV, Excel, SPSS .sav and Parquet.

Every reader returns a DataFrame with a RangeIndex and column names stripped of surrounding
whitespace. Text formats are read as strings so that validation can report the value exactly
as the file holds it; Excel, SPSS and Parquet keep their typed cells (an Excel date cell stays a
datetime, for the de-identification gate to find).

Text files are parsed by Arrow a block at a time (from disk when the bytes need no fixing, else
from the decoded text), only the columns asked for, each kept as dictionary codes (a pandas
Categorical: a national study's item answers cost a byte a cell, not a Python string each);
what Arrow refuses goes to pandas' tokeniser, whose messages the user has always seen.
"""

from __future__ import annotations

import csv
import logging
import re
import warnings
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from alliance.errors import InputError, Problem, describe_value

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
SUPPORTED = sorted([*TEXT_SUFFIXES, ".xlsx", ".xlsm", ".sav", ".parquet", ".pq"])


def read_table(path: str | Path, sheet: str | int | None = None,
               header_row: int | None = None, dictionary: bool = False) -> pd.DataFrame:
    """Read one study table, whatever its format.

    Parameters
    ----------
    path : str or Path
        The file. Its suffix selects the reader (see ``SUPPORTED``).
    sheet : str or int, optional
        Excel sheet name or position; the first sheet by default. Refused for other formats.
    header_row : int, optional
        Row (1 = first) holding the column names, for CSV/TSV and Excel files with title or
        note rows above the header. Without it a title row is diagnosed, not read as a header.
    dictionary : bool
        Text files: return each column as a pandas Categorical (dictionary-encoded strings: one
        small integer code per cell) instead of Python strings; the same values, a fraction of
        the memory. Other formats are unaffected.

    Returns
    -------
    pandas.DataFrame
        Text files: every cell a string or missing. Empty cells are missing.

    Raises
    ------
    InputError
        The file does not exist, has an unsupported suffix, is empty, has no data rows, has
        duplicated column names, a title row above its header, formulas without cached values,
        its data on another sheet, or ``sheet``/``header_row`` set where they do not apply.
    """
    return read_columns(path, sheet, header_row, dictionary=dictionary)[0]


def read_columns(path: str | Path, sheet: str | int | None = None, header_row: int | None = None,
                 keep=None, dictionary: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Read one study table, only the columns named in ``keep``, and all its column names.

    As :func:`read_table` (the same checks and messages), with column projection: a text file's
    other columns are parsed for their shape only, never converted, so a wide export costs
    what its mapped columns cost. ``keep=None`` keeps every column.

    Returns
    -------
    (pandas.DataFrame, list of str)
        The kept columns (in file order) and every column name of the file, tidied.
    """
    path = Path(path)
    if not path.exists():
        raise InputError([Problem(str(path), None, None, None, "an existing file")], "Cannot read")
    suffix = path.suffix.lower()
    _check_options(path, suffix, sheet, header_row)
    if suffix in TEXT_SUFFIXES:
        frame, names = _read_text(path, TEXT_SUFFIXES[suffix], header_row, keep, dictionary)
        names = _tidy_names(names, path)
        frame.columns = _stripped(list(frame.columns))
        _require_rows(frame, path)
        return frame, names  # a RangeIndex already: no copy of a large table
    if suffix in (".xlsx", ".xlsm"):
        frame = _read_excel(path, sheet, header_row)
    elif suffix == ".sav":
        frame = _read_binary(path, _read_sav, "an SPSS .sav file")
    elif suffix in (".parquet", ".pq"):
        frame = _read_binary(path, pd.read_parquet, "a Parquet file")
    else:
        raise InputError(
            [Problem(str(path), None, None, suffix, f"one of the formats {', '.join(SUPPORTED)}")],
            "Unsupported file",
        )
    frame = _tidy_columns(frame, path)
    names = list(frame.columns)
    if keep is not None:
        frame = frame[[c for c in names if c in keep]]
    return frame, names


def _check_options(path: Path, suffix: str, sheet, header_row) -> None:
    """``sheet:`` and ``header_row:`` apply to some formats only; elsewhere they are a mistake."""
    problems = []
    if sheet is not None and suffix not in (".xlsx", ".xlsm") and suffix in SUPPORTED:
        problems.append(Problem(str(path), None, None, None,
                                f"no sheet: setting, since a {suffix} file has no sheets (only Excel workbooks do)"))
    if header_row is not None:
        if isinstance(header_row, bool) or not isinstance(header_row, int) or header_row < 1:
            problems.append(Problem(str(path), None, None, None,
                                    f"header_row: a row number of 1 or more, not {describe_value(header_row)}"))
        elif suffix in (".sav", ".parquet", ".pq"):
            problems.append(Problem(str(path), None, None, None,
                                    f"no header_row: setting, since a {suffix} file stores its column names"))
    if problems:
        raise InputError(problems, "Cannot read")


def _cannot_read(path: Path, expected: str) -> InputError:
    return InputError([Problem(str(path), None, None, None, expected)], "Cannot read")


def _read_binary(path: Path, reader, what: str) -> pd.DataFrame:
    try:
        return reader(path)
    except Exception as err:  # every reader's own error type: pyarrow, pyreadstat, zip, OS
        raise _cannot_read(path, f"{what} ({type(err).__name__}: {err})") from None


def _read_excel(path: Path, sheet, header_row: int | None) -> pd.DataFrame:
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
        name = chosen if isinstance(chosen, str) else book.sheet_names[chosen]
        _check_excel_layout(path, book.sheet_names, name, sheet is None, header_row)
        skip = (header_row or 1) - 1
        try:
            header = book.parse(chosen, header=None, skiprows=skip, nrows=1, dtype=object).iloc[0].tolist()
            # keep_default_na=False: 'n/a' or 'NA' typed into a cell is reported as the file
            # holds it, as for text files, instead of silently becoming missing.
            frame = book.parse(chosen, header=skip, dtype=object, keep_default_na=False, na_values=[""])
        except Exception as err:
            raise _cannot_read(path, f"a readable sheet ({type(err).__name__}: {err})") from None
    if len(header) == len(frame.columns):
        frame.columns = [str(h) for h in header]  # pandas renames repeated names; keep them to report
    return frame


def _check_excel_layout(path: Path, sheets: list[str], name: str, default_sheet: bool,
                        header_row: int | None) -> None:
    """Refuse formulas without cached values, data on another sheet and title rows, by name."""
    head = _sheet_rows(path, name, data_only=True, limit=30)
    if default_sheet and _table_start(head) is None:
        other = next((s for s in sheets if s != name and _table_start(_sheet_rows(path, s, True, 30)) is not None), None)
        if other is not None:
            raise _cannot_read(path, f"a table on the first sheet {name!r}, which has none; the data look "
                                     f"to be on sheet {other!r}: set sheet: {other}")
    if header_row is None:
        _check_title_row(path, head, f"sheet {name!r}: ")
    formulas = _formula_cells(path, name)
    if formulas:
        rows = _sheet_rows(path, name, data_only=True)  # the cached values Excel saved, if any
        uncached = [(r, c) for r, c in formulas if _cell(rows, r, c) is None]
        if uncached:
            raise InputError([_uncached_problem(path, name, rows, header_row or 1, uncached)], "Cannot read")


def _formula_cells(path: Path, name: str) -> list[tuple[int, int]]:
    """(row, column) of every formula cell of a sheet, 1-based."""
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        return [(r, c) for r, row in enumerate(book[name].iter_rows(), start=1)
                for c, cell in enumerate(row, start=1) if getattr(cell, "data_type", None) == "f"]
    finally:
        book.close()


def _uncached_problem(path: Path, name: str, rows: list[tuple], header_row: int,
                      cells: list[tuple[int, int]]) -> Problem:
    from openpyxl.utils import get_column_letter

    header = rows[header_row - 1] if len(rows) >= header_row else ()
    columns = sorted({c for _, c in cells})
    names = [f"{get_column_letter(c)} ({header[c - 1]!s})" if c <= len(header) and header[c - 1] is not None
             else get_column_letter(c) for c in columns]
    row_numbers = sorted({r for r, _ in cells})
    shown = ", ".join(map(str, row_numbers[:10])) + (f" and {len(row_numbers) - 10} more" if len(row_numbers) > 10 else "")
    cell_list = ", ".join(f"{get_column_letter(c)}{r}" for r, c in cells[:10])
    return Problem(str(path), None, None, None,
                   f"cached values for formula cells; sheet {name!r} has {len(cells)} formula cell(s) without "
                   f"one ({cell_list}{' ...' if len(cells) > 10 else ''}) in column(s) {', '.join(names)}, "
                   f"rows {shown}: the workbook was saved by a program that does not calculate formulas; "
                   f"open it in Excel or LibreOffice and save it again")


def _sheet_rows(path: Path, name: str, data_only: bool, limit: int | None = None) -> list[tuple]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=data_only)
    try:
        return [tuple(row) for row in book[name].iter_rows(max_row=limit, values_only=True)]
    finally:
        book.close()


def _cell(rows: list[tuple], r: int, c: int):
    return rows[r - 1][c - 1] if r <= len(rows) and c <= len(rows[r - 1]) else None


def _filled(row) -> int:
    return sum(v is not None and str(v).strip() != "" for v in row)


def _table_start(rows: list) -> int | None:
    """First row (1-based) with two or more filled cells that has a row below it, or None."""
    for i, row in enumerate(rows[:30]):
        if _filled(row) >= 2 and any(_filled(r) >= 1 for r in rows[i + 1:i + 3]):
            return i + 1
    return None


def _check_title_row(path: Path, rows: list, where: str = "") -> None:
    """A lone filled cell above the real header is a title, not a one-column table."""
    start = _table_start(rows)
    if start is None or start == 1 or not any(_filled(r) == 1 for r in rows[:start - 1]):
        return
    if any(_filled(r) > 1 for r in rows[:start - 1]):
        return
    raise _cannot_read(path, f"the header in row 1; {where}row 1 looks like a title; the header appears "
                             f"to be row {start}: set header_row: {start}")


BLOCK_BYTES = 2 << 20  # a text file is parsed this much at a time (larger blocks: more memory, no speed)
PROGRESS_BYTES = 32 << 20  # files larger than this show reading progress


def _read_text(path: Path, sep: str | None, header_row: int | None, keep=None,
               dictionary: bool = False, block_bytes: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The kept columns of a text table (raw names) and every raw column name of its header.

    The file is decoded and its line endings and stray byte-order marks fixed as a whole; then
    Arrow's CSV parser reads it block by block, keeping each kept column as dictionary codes.
    Whatever Arrow refuses (a short or long row, a stray quote) goes to pandas' tokeniser, whose
    message the user has always seen.
    """
    direct = _direct_text(path, sep, header_row) if header_row is None or header_row == 1 else None
    if direct is not None:  # Arrow reads the file itself: memory does not grow with its size
        source, sep, header = direct
    else:
        text, read_as, sep, header = _prepared_text(path, sep, header_row)
        source = text.encode("utf-8")
        del text
    wanted = [i for i, name in enumerate(_stripped(header)) if keep is None or name in keep]
    frame = _arrow_text(source, sep, header, wanted, dictionary, block_bytes or BLOCK_BYTES, path)
    if frame is not None:
        return frame, header
    if direct is not None:
        text, read_as, sep, header = _prepared_text(path, sep, header_row)
        source = text.encode("utf-8")
        del text
    frame = _pandas_text(source.decode("utf-8"), sep, header, path, read_as)
    names = [str(c) for c in frame.columns]
    frame = frame.iloc[:, [i for i, s in enumerate(_stripped(names)) if keep is None or s in keep]]
    if dictionary:
        frame = frame.astype("category")
    return frame, names


_BOM = b"\xef\xbb\xbf"


def _direct_text(path: Path, sep: str | None, header_row: int | None) -> tuple[Path, str, list[str]] | None:
    """(path, separator, header) when Arrow can parse the file's bytes as they are, else None.

    That is a UTF-8 file (a byte-order mark at its start allowed) that :func:`_prepared_text`
    would not change: no byte-order mark inside, no carriage return unless every one ends a
    line and no quote can hold one. The file is scanned a block at a time; the title-row
    check and the messages are those of :func:`_prepared_text`.
    """
    with path.open("rb") as handle:
        head = handle.read(4 * SAMPLE_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(head[:SAMPLE_BYTES]):
        return None
    bom = head.startswith(_BOM)
    if not _plain_utf8(path, len(_BOM) if bom else 0):
        return None
    text = head[len(_BOM) if bom else 0:].decode("utf-8", errors="ignore").replace("\r\n", "\n")
    end = text.find("\n")
    if not text.strip() or end < 0 or end >= SAMPLE_BYTES:
        return None  # empty, one line or a huge header: the whole-text path says what it is
    if bom:
        log.info("%s: read as %s", path, "utf-8 (BOM)")
    if header_row is None:
        _check_text_title(path, text, sep, " (read as utf-8 (BOM))" if bom else "")
    sep = _separator(sep, text[:end])
    return path, sep, next(csv.reader(StringIO(text[:end]), delimiter=sep))


def _plain_utf8(path: Path, skip: int) -> bool:
    """Valid UTF-8 from byte ``skip`` on, no byte-order mark there, CR only in CRLF and unquoted."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    carriage = quotes = False
    tail = b""
    with path.open("rb") as handle:
        handle.seek(skip)
        while block := handle.read(BLOCK_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                return False
            joined = tail + block  # a byte-order mark or CRLF split across two blocks
            if _BOM in joined or joined.count(b"\r") != joined.count(b"\r\n") + joined.endswith(b"\r"):
                return False
            carriage = carriage or b"\r" in block
            quotes = quotes or b'"' in block
            tail = block[-2:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return not (carriage and quotes) and not tail.endswith(b"\r")


def _prepared_text(path: Path, sep: str | None, header_row: int | None) -> tuple[str, str, str, list[str]]:
    """The table's text from its header line on, how it was read, its separator and header."""
    text, encoding = _decode(path.read_bytes())
    if not text.strip():
        raise _cannot_read(path, "a header row and data rows; the file is empty")
    if encoding != "utf-8":
        log.info("%s: read as %s", path, encoding)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings
    if "\ufeff" in text:  # a byte-order mark inside the text: files joined together, or a bad export
        log.warning("%s: %d byte-order mark(s) inside the file removed", path, text.count("\ufeff"))
        text = text.replace("\ufeff", "")
    read_as = "" if encoding == "utf-8" else f" (read as {encoding})"
    if header_row is not None and header_row > 1:
        parts = text.split("\n", header_row - 1)
        if len(parts) < header_row:
            raise _cannot_read(path, f"a header in row {header_row}; the file has {len(parts)} line(s)")
        text = parts[-1]
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    if header_row is None:
        _check_text_title(path, text, sep, read_as)
    sep = _separator(sep, first)
    header = next(csv.reader(StringIO(first), delimiter=sep))
    return text, read_as, sep, header


def _pandas_text(text: str, sep: str, header: list[str], path: Path, read_as: str) -> pd.DataFrame:
    """The whole table through pandas' tokeniser: every cell a string; its errors as messages."""
    try:
        with warnings.catch_warnings():
            # index_col=False: a first data row with one field too many is an error (pandas
            # warns and drops the field), not an index column
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                na_values=[""], skipinitialspace=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as err:
        raise _cannot_read(path, f"a well-formed table{read_as} ({err})") from None
    if len(header) == len(frame.columns):
        frame.columns = header  # pandas renames repeated names (a, a.1); keep them to report
    return frame


def _arrow_text(source: bytes | Path, sep: str, header: list[str], wanted: list[int], dictionary: bool,
                block_bytes: int, path: Path) -> pd.DataFrame | None:
    """The wanted columns through Arrow's CSV parser, block by block; None if Arrow refuses.

    Cells are read as dictionary-encoded strings: each block's distinct texts once, every cell a
    code, so that a column of item answers costs a byte a cell. Empty cells (quoted or not) are
    missing, every other cell is kept exactly as the file holds it, as pandas reads it.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from alliance.logs import progress

    if len(set(header)) != len(header) or not header:
        return None  # repeated names: pandas' reading reports them as before
    names = [f"f{i}" for i in range(len(header))]
    include = [names[i] for i in wanted] or names[:1]  # Arrow reads every column for none
    text_type = pa.dictionary(pa.int32(), pa.string())
    options = dict(
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=block_bytes),
        parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={n: text_type for n in include}, include_columns=include,
                                            null_values=[""], strings_can_be_null=True,
                                            quoted_strings_can_be_null=True))
    columns = {n: _Dictionary() for n in include}
    rows = 0
    try:
        size = len(source) if isinstance(source, bytes) else path.stat().st_size
        reader = pcsv.open_csv(pa.BufferReader(source) if isinstance(source, bytes) else str(source), **options)
        blocks = progress(reader, total=-(-size // block_bytes), desc=f"reading {path.name}",
                          disable=size < PROGRESS_BYTES)
        for batch in blocks:
            for n in include:
                columns[n].add(batch.column(n))
            rows += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, StopIteration):
        return None
    return pd.DataFrame({header[int(n[1:])]: columns.pop(n).values(dictionary) for n in include[:len(wanted)]},
                        index=pd.RangeIndex(rows), copy=False)


class _Dictionary:
    """One column's codes, block after block, into one dictionary; a Categorical at the end."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def add(self, array) -> None:
        import pyarrow.compute as pc

        local = array.dictionary.to_pylist()
        mapping = np.array([self.index.setdefault(v, len(self.index)) for v in local] + [-1], dtype=np.int64)
        codes = mapping[pc.fill_null(array.indices, len(local)).to_numpy()]
        self.parts.append(codes.astype(_code_type(len(self.index))))

    def values(self, dictionary: bool):
        codes = np.concatenate(self.parts) if self.parts else np.array([], dtype=np.int8)
        self.parts = []  # each block's codes freed as the column is built, not at the end
        texts = np.array(list(self.index), dtype=object)
        order = np.argsort(texts, kind="stable") if len(texts) else np.array([], dtype=np.int64)
        rank = np.empty(len(texts) + 1, dtype=np.int64)
        rank[order] = np.arange(len(texts))
        rank[-1] = -1
        codes = rank[codes].astype(_code_type(len(texts)))  # the categories sorted, as pandas sorts them
        values = pd.Categorical.from_codes(codes, categories=pd.Index(texts[order], dtype=object))
        return values if dictionary else np.asarray(values.astype(object))


def _code_type(n: int):
    return np.int8 if n < 127 else np.int16 if n < 32_767 else np.int32


def _check_text_title(path: Path, text: str, sep: str | None, read_as: str) -> None:
    """A title line above the header of a text table, diagnosed before pandas misreads it.

    The separator is guessed from the first line and from the line below it (a title may hold
    a comma); row 1 is the header when, under either, it has as many fields as most rows below.
    """
    lines = text[:SAMPLE_BYTES].split("\n", 12)[:12]  # a bounded prefix: no copy of a large file
    body = next((line for line in lines[1:] if line.strip()), "")
    found = None
    for candidate in dict.fromkeys([_separator(sep, lines[0]), _separator(sep, body)]):
        rows = [next(csv.reader(StringIO(line), delimiter=candidate), []) for line in lines]
        header = _text_header_row(rows)
        if header == 1:
            return
        found = found or header
    if found:
        raise _cannot_read(path, f"the header in row 1; row 1 looks like a title; the header appears "
                                 f"to be row {found}: set header_row: {found}{read_as}")


def _text_header_row(rows: list[list[str]]) -> int | None:
    """The row (1-based) whose field count matches most rows below it; None without a table."""
    widths = [len(r) for r in rows[1:] if _filled(r)]
    if not widths:
        return None
    width = max(set(widths), key=lambda w: (widths.count(w), w))
    if width < 2:
        return None
    if len(rows[0]) == width and _filled(rows[0]) >= 2:
        return 1
    start = next((i for i, r in enumerate(rows) if len(r) == width and _filled(r) >= 2), None)
    # a title fills a cell or two; a header short of a trailing field fills most of them
    if start is None or any(_filled(r) > max(2, width // 2) for r in rows[:start]):
        return None
    return start + 1


def _separator(sep: str | None, header: str) -> str:
    """The suffix's separator or a guessed one, and ';' for Excel's CSV in decimal-comma locales."""
    sep = sep or _guess_separator(header)
    if sep == "," and header.count(";") > 0 and header.count(",") == 0:
        sep = ";"
    return sep


def _guess_separator(header: str) -> str:
    """A tab in the header wins (survey tools put commas in long question texts)."""
    if "\t" in header:
        return "\t"
    return ";" if header.count(";") > header.count(",") else ","


SAMPLE_BYTES = 1 << 16  # encoding detection looks at this much, however large the file


def _decode(raw: bytes) -> tuple[str, str]:
    """Decode a text file and name its encoding.

    A byte-order mark decides (UTF-8, UTF-16 LE/BE). Otherwise: NUL bytes in alternate
    positions are UTF-16 without a BOM; bytes that are valid UTF-8 are UTF-8; anything else
    goes to ``charset-normalizer`` on a bounded sample. Western exports are short and
    detection on them is weak, so its answer is only taken for a non-Western code page it is
    sure of; otherwise Windows-1252 when bytes 0x80-0x9F occur (curly quotes, dashes, the euro
    sign there; control characters in Latin-1), else Latin-1.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "utf-8 (BOM)"
    if raw.startswith(b"\xff\xfe"):
        return raw[2:].decode("utf-16-le"), "utf-16-le (BOM)"
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be"), "utf-16-be (BOM)"
    sample = raw[:SAMPLE_BYTES]
    utf16 = _utf16_without_bom(sample)
    if utf16:
        try:
            return raw.decode(utf16), f"{utf16} (no BOM)"
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    encoding = _detect_single_byte(sample)
    try:
        return raw.decode(encoding), encoding
    except UnicodeDecodeError:  # the sample decoded; a later byte does not
        return raw.decode("latin-1"), "latin-1"


def _utf16_without_bom(sample: bytes) -> str | None:
    even, odd = sample[0:2000:2], sample[1:2000:2]
    if len(even) < 2:
        return None
    if odd.count(0) > 0.6 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.6 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


_WESTERN = {"cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "mac_roman", "cp850", "cp437",
            "mac_latin2", "iso8859_9", "cp1254", "iso8859_10", "iso8859_14", "iso8859_16", "ascii", "utf_8"}


def _detect_single_byte(sample: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is not None and best.encoding not in _WESTERN and len(sample) >= 2000 and best.chaos < 0.1:
        return best.encoding.replace("_", "-")
    if any(0x80 <= b <= 0x9F for b in sample) and not any(b in sample for b in (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")):
        return "cp1252"
    return "latin-1"


_MISSING_LABEL = re.compile(
    r"keine\s*angabe|\bk\.\s*a\.|nicht\s+beantwortet|fehlend|\bfehlt\b|verweigert|wei(ß|ss)\s+nicht|"
    r"not\s+answered|no\s+answer|\bmissing\b|refused|don'?t\s+know|\bn/?a\b|prefer\s+not",
    re.IGNORECASE)


def _read_sav(path: Path) -> pd.DataFrame:
    import pyreadstat

    # user_missing=False (the default) turns SPSS user-missing codes into NaN; value labels
    # are metadata and the numeric codes are kept.
    frame, _ = pyreadstat.read_sav(str(path), user_missing=False, apply_value_formats=False)
    # the declared codes are only reported in the metadata when user_missing=True
    _, meta = pyreadstat.read_sav(str(path), metadataonly=True, user_missing=True)
    if meta.missing_ranges:
        log.info("%s: SPSS user-missing codes set to missing in %s", path, sorted(meta.missing_ranges))
    _warn_undeclared_missing(path, frame, meta)
    return frame


def _warn_undeclared_missing(path: Path, frame: pd.DataFrame, meta) -> None:
    """A code labelled like 'keine Angabe' but not declared missing stays a value: say so."""
    declared = meta.missing_ranges or {}
    for column, labels in (meta.variable_value_labels or {}).items():
        ranges = declared.get(column, [])
        for code, label in labels.items():
            if not isinstance(label, str) or not _MISSING_LABEL.search(label):
                continue
            if any(_in_range(code, r) for r in ranges):
                continue
            count = int((frame[column] == code).sum()) if column in frame else 0
            log.warning("%s: column '%s': code %s is labelled as a missing answer but is not declared "
                        "missing in SPSS; it is kept as a value (%d cell(s)). Declare it missing in "
                        "SPSS, or recode it, if it is not an answer", path, column, describe_value(code), count)


def _in_range(code, rng) -> bool:
    try:
        return rng["lo"] <= code <= rng["hi"]
    except (TypeError, KeyError):
        return code in (rng.get("lo"), rng.get("hi")) if isinstance(rng, dict) else False


_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad]")


def _stripped(names: list) -> list[str]:
    """Column names without byte-order marks, zero-width characters and surrounding spaces."""
    return [_INVISIBLE.sub("", str(n)).strip() for n in names]


def _tidy_names(names: list, path: Path) -> list[str]:
    """The names :func:`_stripped`, with a warning for each kind of removal; repeated ones refused."""
    names = [str(c) for c in names]
    cleaned = [_INVISIBLE.sub("", n) for n in names]
    invisible = [c for n, c in zip(names, cleaned) if n != c]
    if invisible:
        log.warning("%s: byte-order marks or zero-width characters removed from column names %s",
                    path, invisible)
    stripped = [c.strip() for c in cleaned]
    changed = [c for c, s in zip(cleaned, stripped) if c != s]
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
    return stripped


def _require_rows(frame: pd.DataFrame, path: Path) -> None:
    if len(frame) == 0:
        raise InputError([Problem(str(path), None, None, None, "data rows below the header; found none")],
                         "Cannot read")


def _tidy_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame.columns = _tidy_names(list(frame.columns), path)
    _require_rows(frame, path)
    return frame.reset_index(drop=True)


def input_files(config: dict) -> list[str]:
    """Every raw file the config names, in a fixed order."""
    files = [t["path"] for t in config["tables"].values()]
    if config.get("clients"):
        files.append(config["clients"]["path"])
    return files
