"""Manuscript-ready tables in APA style, from plain DataFrames.

One table object, :class:`ApaTable` (number, title, columns with their number formats, rows,
note), is written four ways from the *same* formatted cell strings, so that every format
shows the same numbers:

* Markdown (GitHub pipe table),
* LaTeX (booktabs: ``\\toprule``/``\\midrule``/``\\bottomrule``, no vertical rules, special
  characters escaped; needs ``\\usepackage{booktabs}``),
* HTML (a fragment or a standalone page, horizontal rules only),
* Word ``.docx`` (python-docx): table number in bold, title in italics, horizontal rules
  above and below the header and below the body, the note below the table. The bytes are
  deterministic: core properties carry a fixed date and the zip entries a fixed time stamp.

Number formatting follows the APA Publication Manual (7th ed., chapters 6 and 7): a true
minus sign, no leading zero for statistics that cannot exceed 1 (p, r, alpha, omega),
exact p to three decimals and ``< .001`` below that, thousands separated by commas.

Builders turn the pipeline's results into tables: :func:`fixed_effects_table`
(``results/models/{model}/fixed_effects.csv``), :func:`random_effects_table`
(``random_effects.csv``), :func:`reliability_table` (internal consistency,
:func:`alliance.scoring.psychometrics.internal_consistency`) and :func:`descriptives_table` (M, SD, n
and Pearson correlations with significance stars).

Tested in ``tests/test_tables.py``: every format is parsed back (the ``.docx`` with
python-docx) and compared cell by cell with the Markdown and with the source numbers
(rounded to the shown decimals), descriptives against numpy/scipy, APA formatting rules on
hand-worked values, and byte-identical ``.docx`` files across writes.

References
----------
American Psychological Association. (2020). *Publication manual of the American
Psychological Association* (7th ed.).
"""

from __future__ import annotations

import html
import io
import math
import numbers
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliance.outputs import atomic_path
from alliance.errors import require_columns as _require

__all__ = [
    "MINUS",
    "DEFAULT_TERM_LABELS",
    "format_number",
    "format_bounded",
    "format_p",
    "format_integer",
    "significant_decimals",
    "significance_stars",
    "Column",
    "ApaTable",
    "write_docx",
    "write_table",
    "fixed_effects_table",
    "random_effects_table",
    "model_table_notes",
    "reliability_table",
    "descriptives",
    "descriptives_table",
]

MINUS = "\u2212"
EM_DASH = "\u2014"
FORMATS = ("text", "integer", "number", "bounded", "p")
ALIGNMENTS = ("left", "center", "right")
STAR_LEVELS = ((0.001, "***"), (0.01, "**"), (0.05, "*"))
STAR_NOTE = "* p < .05. ** p < .01. *** p < .001."
# Word stores dates; a fixed one keeps the .docx byte-identical across runs.
FIXED_DOCX_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

DEFAULT_TERM_LABELS = {
    "(Intercept)": "Intercept",
    "session": "Session",
    "a_cw": "Alliance, within-client",
    "a_cw_lag": "Alliance, within-client (previous session)",
    "a_cm": "Alliance, between-client",
    "s_cw_lag": "Symptoms, within-client (previous session)",
    "s_cm": "Symptoms, between-client",
    "early_alliance": "Early alliance",
    "baseline": "Baseline",
}


# --------------------------------------------------------------------------- numbers


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what}: expected a number, got {value!r} ({type(value).__name__})")
    return float(value)


def _signed(text: str, negative: bool) -> str:
    return f"{MINUS}{text}" if negative else text


def format_number(value: Any, decimals: int = 2) -> str:
    """A number with ``decimals`` decimals, a true minus sign and thousands separators.

    A value that rounds to zero loses its sign (``-0.001`` -> ``0.00``).
    Infinite values print as ``∞``/``−∞``.
    """
    x = _as_float(value, "format_number")
    if math.isinf(x):
        return _signed("\u221e", x < 0)
    text = f"{abs(x):,.{decimals}f}"
    return _signed(text, x < 0 and float(text.replace(",", "")) != 0)


def format_bounded(value: Any, decimals: int = 2) -> str:
    """A statistic that cannot exceed 1 in magnitude (r, alpha, omega, proportions): no
    leading zero (APA 7th ed.): ``0.853`` -> ``.85``, ``-0.3`` -> ``−.30``.

    A value whose rounded magnitude is 1 or more keeps its digit (``1.00``; an alpha below
    -1 is possible for a bad scale and is shown as ``−1.35``).
    """
    text = format_number(value, decimals)
    digits = text.lstrip(MINUS)
    if digits.startswith("0."):
        text = text[: len(text) - len(digits)] + digits[1:]
    return text


def format_p(value: Any, decimals: int = 3) -> str:
    """An exact p value (APA 7th ed.): ``.032``, ``< .001``, ``> .999``; no leading zero.

    Raises ValueError for values outside [0, 1].
    """
    p = _as_float(value, "format_p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"format_p: p = {p!r}; expected a probability between 0 and 1")
    smallest = 10.0**-decimals
    if p < smallest:
        return f"< {format_bounded(smallest, decimals)}"
    if round(p, decimals) >= 1.0:
        return f"> {format_bounded(1.0 - smallest, decimals)}"
    return format_bounded(p, decimals)


def format_integer(value: Any) -> str:
    """A count with thousands separators (``4,396``); raises ValueError for a fraction."""
    x = _as_float(value, "format_integer")
    if x != int(x):
        raise ValueError(f"format_integer: {value!r} is not a whole number")
    return _signed(f"{abs(int(x)):,}", x < 0)


def significant_decimals(value: Any, digits: int = 2, maximum: int = 8) -> int:
    """Decimals that show ``value`` with ``digits`` significant digits (0.0057 -> 4, 0.45 -> 2,
    1.19 -> 1, 23.4 -> 0), at most ``maximum``; 0 for zero or a non-finite value.

    A standard error shown to two significant digits, with its estimate and CI to the same
    decimals, shows the precision there is (never ``0.00 (0.01)``).
    """
    x = abs(_as_float(value, "significant_decimals"))
    if not math.isfinite(x) or x == 0:
        return 0
    return int(min(maximum, max(0, digits - 1 - math.floor(math.log10(x)))))


def significance_stars(p: Any) -> str:
    """``***`` for p < .001, ``**`` for p < .01, ``*`` for p < .05, else an empty string."""
    if _is_missing(p):
        return ""
    p = _as_float(p, "significance_stars")
    for level, stars in STAR_LEVELS:
        if p < level:
            return stars
    return ""


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Column:
    """One column of an APA table.

    Parameters
    ----------
    key : str
        Column of ``ApaTable.rows`` that holds the values.
    label : str
        Header text.
    fmt : {"text", "integer", "number", "bounded", "p"} or callable
        How a number is shown (:func:`format_number`, :func:`format_bounded`,
        :func:`format_p`, :func:`format_integer`); a callable takes the value and returns
        the text. Cells that already hold a string are shown as they are; missing values
        as the table's ``missing`` text.
    decimals : int, optional
        Decimals for ``number``/``bounded`` (default 2) and ``p`` (default 3).
    upper : str, optional
        A second column shown with ``key`` as an interval ``[low, high]``.
    stars : str, optional
        A column of p values; significance stars are appended to the cell.
    italic : bool
        Show the header in italics (statistical symbols: *M*, *SD*, *b*, *p*).
    align : {"left", "center", "right"}, optional
        Default: left for text, centred for numbers.
    decimals_from : str, optional
        A column whose value, shown to two significant digits, sets this cell's decimals
        (:func:`significant_decimals`): a row's b, SE and CI take the decimals its SE needs.
        Overrides ``decimals``.
    """

    key: str
    label: str
    fmt: str | Callable[[Any], str] = "text"
    decimals: int | None = None
    upper: str | None = None
    stars: str | None = None
    italic: bool = False
    align: str | None = None
    decimals_from: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.fmt) and self.fmt not in FORMATS:
            raise ValueError(f"Column {self.key!r}: fmt = {self.fmt!r}; expected one of {FORMATS} or a callable")
        if self.align is not None and self.align not in ALIGNMENTS:
            raise ValueError(f"Column {self.key!r}: align = {self.align!r}; expected one of {ALIGNMENTS}")
        if self.decimals is not None and (not isinstance(self.decimals, int) or self.decimals < 0):
            raise ValueError(f"Column {self.key!r}: decimals = {self.decimals!r}; expected an integer >= 0")

    @property
    def alignment(self) -> str:
        return self.align or ("left" if self.fmt == "text" else "center")

    def format_value(self, value: Any) -> str | None:
        """The cell text of one value; None for a missing value."""
        if _is_missing(value):
            return None
        if isinstance(value, str):
            return value
        if callable(self.fmt):
            return str(self.fmt(value))
        if self.fmt == "text":
            return str(value)
        if self.fmt == "integer":
            return format_integer(value)
        if self.fmt == "p":
            return format_p(value, 3 if self.decimals is None else self.decimals)
        formatter = format_number if self.fmt == "number" else format_bounded
        return formatter(value, 2 if self.decimals is None else self.decimals)


@dataclass
class ApaTable:
    """An APA-style table: number, title, columns, rows and a note.

    Parameters
    ----------
    number : int
        Table number (``Table 1``).
    title : str
        Title, shown in italics below the number.
    columns : sequence of Column
    rows : DataFrame
        One row per table row; must hold every column's ``key`` (and ``upper``/``stars``).
    note : str, optional
        Shown below the table after an italic *Note.*
    missing : str
        Text for missing values (default: an empty cell).

    Raises
    ------
    ValueError
        A column named by a :class:`Column` is not in ``rows``, the number is not a positive
        integer or the title is empty.
    """

    number: int
    title: str
    columns: Sequence[Column]
    rows: pd.DataFrame
    note: str | None = None
    missing: str = ""
    _cells: list[list[str]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise ValueError(f"ApaTable: number = {self.number!r}; expected a positive integer")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"ApaTable {self.number}: title = {self.title!r}; expected a non-empty string")
        if not isinstance(self.rows, pd.DataFrame):
            raise ValueError(f"ApaTable {self.number}: rows must be a DataFrame, got {type(self.rows).__name__}")
        if not self.columns:
            raise ValueError(f"ApaTable {self.number}: no columns")
        needed = [k for c in self.columns for k in (c.key, c.upper, c.stars, c.decimals_from) if k is not None]
        absent = [k for k in dict.fromkeys(needed) if k not in self.rows.columns]
        if absent:
            raise ValueError(f"ApaTable {self.number} ({self.title!r}): rows lack column(s) {absent}; "
                             f"available: {list(self.rows.columns)}")

    # ---------------------------------------------------------------- cells

    @property
    def header(self) -> list[str]:
        return [c.label for c in self.columns]

    @property
    def body(self) -> list[list[str]]:
        """The formatted cell strings, row by row: what every writer shows."""
        if self._cells is None:
            self._cells = [[self._cell(column, row) for column in self.columns]
                           for _, row in self.rows.iterrows()]
        return self._cells

    def _cell(self, column: Column, row: pd.Series) -> str:
        if column.decimals_from is not None and not _is_missing(row[column.decimals_from]):
            column = replace(column, decimals=significant_decimals(row[column.decimals_from]))
        text = column.format_value(row[column.key])
        if column.upper is not None:
            high = column.format_value(row[column.upper])
            if text is None and high is None:
                return self.missing
            text = f"[{text if text is not None else self.missing}, {high if high is not None else self.missing}]"
        if text is None:
            return self.missing
        if column.stars is not None:
            text += significance_stars(row[column.stars])
        return text

    @property
    def caption(self) -> str:
        return f"Table {self.number}"

    # ---------------------------------------------------------------- writers

    def to_markdown(self) -> str:
        """A GitHub pipe table with the number in bold, the title in italics, the note below."""
        marks = {"left": ":---", "center": ":---:", "right": "---:"}
        header = [_md_italic(_md_escape(c.label)) if c.italic else _md_escape(c.label) for c in self.columns]
        lines = [f"**{self.caption}**", "", f"*{_md_escape(self.title)}*", "",
                 _md_row(header), _md_row([marks[c.alignment] for c in self.columns])]
        lines += [_md_row([_md_escape(cell) for cell in row]) for row in self.body]
        if self.note:
            lines += ["", f"*Note.* {_md_escape(self.note)}"]
        return "\n".join(lines) + "\n"

    def to_latex(self, caption: bool = False, label: str | None = None) -> str:
        """A ``table`` float with a booktabs ``tabular`` (no vertical rules).

        Parameters
        ----------
        caption : bool
            If True the title goes into ``\\caption{}`` (LaTeX numbers the table, e.g. with
            the apa7 class); otherwise the number and title are typeset as APA lines above
            the table.
        label : str, optional
            ``\\label{}`` for cross-references (with ``caption=True``).
        """
        spec = "".join({"left": "l", "center": "c", "right": "r"}[c.alignment] for c in self.columns)
        header = [f"\\textit{{{_tex_escape(c.label)}}}" if c.italic else _tex_escape(c.label) for c in self.columns]
        out = [f"% {self.caption}: needs \\usepackage{{booktabs}}", "\\begin{table}[htbp]"]
        if caption:
            out.append(f"\\caption{{{_tex_escape(self.title)}}}")
            if label:
                out.append(f"\\label{{{label}}}")
        else:
            out += ["\\raggedright", f"\\textbf{{{self.caption}}}\\par", "\\smallskip",
                    f"\\textit{{{_tex_escape(self.title)}}}\\par", "\\smallskip"]
        out += [f"\\begin{{tabular}}{{@{{}}{spec}@{{}}}}", "\\toprule", _tex_row(header), "\\midrule"]
        out += [_tex_row([_tex_escape(cell) for cell in row]) for row in self.body]
        out += ["\\bottomrule", "\\end{tabular}\\par"]
        if self.note:
            out += ["\\smallskip", f"{{\\small \\textit{{Note.}} {_tex_escape(self.note)}\\par}}"]
        out.append("\\end{table}")
        return "\n".join(out) + "\n"

    def to_html(self, standalone: bool = False) -> str:
        """An HTML table with horizontal rules only; ``standalone`` wraps it in a page."""
        rule = "1px solid #000"
        align = {c.key: c.alignment for c in self.columns}
        head = "".join(
            f'<th style="text-align: {align[c.key]}; border-bottom: {rule}; padding: 2px 8px; font-weight: normal">'
            f"{'<em>' + html.escape(c.label) + '</em>' if c.italic else html.escape(c.label)}</th>"
            for c in self.columns)
        body_rows = []
        for row in self.body:
            cells = "".join(f'<td style="text-align: {align[c.key]}; padding: 2px 8px">{html.escape(v)}</td>'
                            for c, v in zip(self.columns, row))
            body_rows.append(f"<tr>{cells}</tr>")
        parts = [
            '<div class="apa-table">',
            f'<table style="border-collapse: collapse; border-top: {rule}; border-bottom: {rule}">',
            '<caption style="caption-side: top; text-align: left; padding-bottom: 6px">'
            f"<strong>{self.caption}</strong><br><em>{html.escape(self.title)}</em></caption>",
            f"<thead><tr>{head}</tr></thead>",
            "<tbody>", *body_rows, "</tbody>",
            "</table>",
        ]
        if self.note:
            parts.append(f'<p class="apa-table-note"><em>Note.</em> {html.escape(self.note)}</p>')
        parts.append("</div>")
        fragment = "\n".join(parts) + "\n"
        if not standalone:
            return fragment
        return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f"<title>{self.caption}. {html.escape(self.title)}</title>\n"
                '<style>body { font-family: "Times New Roman", serif; }</style>\n'
                f"</head>\n<body>\n{fragment}</body>\n</html>\n")

    def to_docx(self, path: str | Path) -> Path:
        """Write the table as a Word document (see :func:`write_docx`)."""
        return write_docx([self], path)


# --------------------------------------------------------------------------- Markdown / LaTeX helpers

_MD_SPECIAL = re.compile(r"([\\|*_`])")


_LINE_BREAKS = re.compile(r"[\r\n]+")


def markdown_text(text: str) -> str:
    """``text`` (a config string such as a model's label) as literal Markdown on one line."""
    return _MD_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


def _md_escape(text: str) -> str:
    return markdown_text(text)


def _md_italic(text: str) -> str:
    return f"*{text}*" if text else text


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_TEX_MAP = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"$<$", "|": r"\textbar{}", ">": r"$>$", MINUS: r"$-$", "\u2264": r"$\leq$", "\u2265": r"$\geq$",
    "\u00b1": r"$\pm$", "\u00d7": r"$\times$", "\u00b2": r"$^{2}$", "\u221e": r"$\infty$",
    "\u03b1": r"$\alpha$", "\u03b2": r"$\beta$", "\u03b3": r"$\gamma$", "\u03b7": r"$\eta$",
    "\u03c1": r"$\rho$", "\u03c3": r"$\sigma$", "\u03c4": r"$\tau$", "\u03c7": r"$\chi$",
    "\u03c9": r"$\omega$", EM_DASH: "---", "\u2013": "--",
}


def _tex_escape(text: str) -> str:
    # a blank line inside \textit{} would end the paragraph (a LaTeX error): one line only
    escaped = "".join(_TEX_MAP.get(ch, ch) for ch in _LINE_BREAKS.sub(" ", text))
    # "\\" and "\midrule" take an optional [..] argument: shield a cell that starts with "[".
    return "{}" + escaped if escaped.startswith("[") else escaped


def _tex_row(cells: Sequence[str]) -> str:
    return " & ".join(cells) + " \\\\"


# --------------------------------------------------------------------------- Word


def write_docx(tables: Sequence[ApaTable], path: str | Path) -> Path:
    """Write one or more tables into a Word document with deterministic bytes.

    Each table: ``Table n`` in bold, the title in italics, the table with horizontal rules
    only (above and below the header row, below the last row), the note below. The core
    properties carry a fixed date (2000-01-01) and no author, and every zip entry a fixed time
    stamp (1980-01-01), because python-docx would otherwise store the current time and the
    same tables would give different files.
    """
    from docx import Document
    from docx.shared import Pt

    if not tables:
        raise ValueError("write_docx: no tables given")
    document = Document()
    normal = document.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(12)
    for i, table in enumerate(tables):
        if not isinstance(table, ApaTable):
            raise ValueError(f"write_docx: item {i} is a {type(table).__name__}, expected an ApaTable")
        if i:
            document.add_paragraph()
        _docx_table(document, table)
    _fix_core_properties(document, title=tables[0].caption if len(tables) == 1 else "Tables")
    buffer = io.BytesIO()
    document.save(buffer)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_normalised_zip(buffer.getvalue()))
    return path


def _docx_table(document, table: ApaTable) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    alignment = {"left": WD_ALIGN_PARAGRAPH.LEFT, "center": WD_ALIGN_PARAGRAPH.CENTER,
                 "right": WD_ALIGN_PARAGRAPH.RIGHT}
    document.add_paragraph().add_run(table.caption).bold = True
    document.add_paragraph().add_run(table.title).italic = True
    grid = document.add_table(rows=1 + len(table.body), cols=len(table.columns))
    _set_table_borders(grid)
    _repeat_as_header(grid.rows[0])
    for j, column in enumerate(table.columns):
        cell = grid.rows[0].cells[j]
        paragraph = cell.paragraphs[0]
        paragraph.alignment = alignment[column.alignment]
        paragraph.add_run(column.label).italic = column.italic
        _set_cell_bottom_border(cell)
    for i, row in enumerate(table.body, start=1):
        for j, (column, text) in enumerate(zip(table.columns, row)):
            paragraph = grid.rows[i].cells[j].paragraphs[0]
            paragraph.alignment = alignment[column.alignment]
            if text:
                paragraph.add_run(text)
    if table.note:
        paragraph = document.add_paragraph()
        paragraph.add_run("Note.").italic = True
        paragraph.add_run(f" {table.note}")


def _border(tag: str, val: str = "single"):
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    element = OxmlElement(f"w:{tag}")
    element.set(qn("w:val"), val)
    if val != "nil":
        element.set(qn("w:sz"), "4")
        element.set(qn("w:space"), "0")
        element.set(qn("w:color"), "000000")
    return element


def _set_table_borders(grid) -> None:
    """Rules above and below the table; no vertical or inner rules (APA)."""
    from docx.oxml import OxmlElement

    from docx.oxml.ns import qn

    borders = OxmlElement("w:tblBorders")
    for tag, val in (("top", "single"), ("left", "nil"), ("bottom", "single"), ("right", "nil"),
                     ("insideH", "nil"), ("insideV", "nil")):
        borders.append(_border(tag, val))
    # The schema orders tblPr's children (tblW, jc, ..., tblBorders, ..., tblLook); Word
    # refuses files that break the order.
    tbl_pr = grid._tbl.tblPr
    anchor = tbl_pr.find(qn("w:tblW"))
    if anchor is not None:
        anchor.addnext(borders)
    else:
        tbl_pr.insert(0, borders)


def _repeat_as_header(row) -> None:
    """Repeat the header row on every page a long table runs over."""
    from docx.oxml import OxmlElement

    row._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))


def _set_cell_bottom_border(cell) -> None:
    from docx.oxml import OxmlElement

    tc_pr = cell._tc.get_or_add_tcPr()
    borders = OxmlElement("w:tcBorders")
    borders.append(_border("bottom"))
    tc_pr.append(borders)


def _fix_core_properties(document, title: str) -> None:
    props = document.core_properties
    props.author = ""
    props.last_modified_by = ""
    props.title = title
    props.comments = ""
    props.revision = 1
    props.created = FIXED_DOCX_DATE
    props.modified = FIXED_DOCX_DATE
    props.last_printed = FIXED_DOCX_DATE


def _normalised_zip(data: bytes) -> bytes:
    """The same zip with a fixed time stamp and attributes on every entry."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.create_system = 3
            entry.external_attr = 0o644 << 16
            target.writestr(entry, source.read(info.filename))
    return out.getvalue()


def write_table(table: ApaTable, stem: str | Path) -> dict[str, Path]:
    """Write ``stem.md``, ``stem.tex``, ``stem.html`` (standalone) and ``stem.docx``.

    Returns the paths by format. Text files are UTF-8 with ``\\n`` line endings.
    """
    stem = Path(stem)
    texts = {"md": table.to_markdown(), "tex": table.to_latex(), "html": table.to_html(standalone=True)}
    paths = {}
    for ext, text in texts.items():
        paths[ext] = stem.with_name(f"{stem.name}.{ext}")
        with atomic_path(paths[ext]) as tmp:
            tmp.write_text(text, encoding="utf-8", newline="\n")
    paths["docx"] = write_docx([table], stem.with_name(f"{stem.name}.docx"))
    return paths


# --------------------------------------------------------------------------- builders


def _label(value: Any, labels: Mapping[str, str]) -> Any:
    return labels.get(value, value) if isinstance(value, str) else value


def _joined_note(*parts: str | None) -> str | None:
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text or None


def fixed_effects_table(fixed_effects: pd.DataFrame, number: int = 1, title: str = "Fixed Effects",
                        labels: Mapping[str, str] | None = None, decimals: int | None = None,
                        note: str | None = None, level: float = 0.95) -> ApaTable:
    """APA table of a mixed model's fixed effects.

    Parameters
    ----------
    fixed_effects : DataFrame
        ``results/models/{model}/fixed_effects.csv``: ``term``, ``estimate``, ``se``, ``df``,
        ``t``, ``p``, ``ci_low``, ``ci_high`` and optionally ``std_estimate``; or an
        :class:`alliance.lmm.LmmResult`'s ``fixed_effects`` (terms as the index).
    number, title : table number and title.
    labels : mapping, optional
        Display names of the terms (default :data:`DEFAULT_TERM_LABELS`; others unchanged).
    decimals : int, optional
        Decimals of estimates, SEs and the CI. Default: per row, as many as two significant
        digits of that row's SE need (:func:`significant_decimals`), so "0.00 (0.01)" cannot
        occur. t and β get two decimals, df one, p three.
    note : str, optional
        Appended to the standard note (which says what b, SE, df, CI and β are).
    level : float
        Confidence level of ``ci_low``/``ci_high`` (for the header).

    Notes
    -----
    Degrees of freedom are Satterthwaite's as in lmerTest (Kuznetsova, Brockhoff &
    Christensen, 2017); the standard note says so.
    """
    if isinstance(fixed_effects, pd.DataFrame) and "term" not in fixed_effects.columns \
            and fixed_effects.index.name == "term":  # an LmmResult's fixed_effects
        fixed_effects = fixed_effects.reset_index()
    _require(fixed_effects, ["term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high"], "fixed_effects_table")
    rows = fixed_effects.reset_index(drop=True).copy()
    rows["label"] = [_label(t, {**DEFAULT_TERM_LABELS, **(labels or {})}) for t in rows["term"]]
    ci = f"{round(level * 100):g}% CI"
    by_se = "se" if decimals is None else None
    columns = [Column("label", "Term"),
               Column("estimate", "b", "number", decimals, italic=True, decimals_from=by_se),
               Column("se", "SE", "number", decimals, italic=True, decimals_from=by_se),
               Column("df", "df", "number", 1, italic=True),
               Column("t", "t", "number", 2 if decimals is None else decimals, italic=True),
               Column("p", "p", "p", italic=True),
               Column("ci_low", ci, "number", decimals, upper="ci_high", decimals_from=by_se)]
    standard = (f"b = unstandardised estimate; SE = standard error; df = Satterthwaite degrees of freedom "
                f"(Kuznetsova et al., 2017); CI = confidence interval")
    if decimals is None:
        standard += "; b, SE and CI are shown to the decimals two significant digits of the row's SE need"
    if "std_estimate" in rows.columns:
        columns.append(Column("std_estimate", "\u03b2", "number", 2 if decimals is None else decimals))
        standard += "; \u03b2 = standardised estimate"
    return ApaTable(number, title, columns, rows, _joined_note(standard + ".", note))


def random_effects_table(random_effects: pd.DataFrame, number: int = 2, title: str = "Random Effects",
                         labels: Mapping[str, str] | None = None, decimals: int = 2,
                         note: str | None = None) -> ApaTable:
    """APA table of variance components (lme4's ``VarCorr`` layout).

    Parameters
    ----------
    random_effects : DataFrame
        ``results/models/{model}/random_effects.csv``: ``group``, ``term1``, ``term2``,
        ``variance``, ``sd``, ``corr``. A row with ``term2`` is a covariance: its variance
        column holds the covariance and ``corr`` the correlation.
    labels : mapping, optional
        Display names of groups and terms (default :data:`DEFAULT_TERM_LABELS`).
    """
    _require(random_effects, ["group", "term1", "term2", "variance", "sd", "corr"], "random_effects_table")
    names = {**DEFAULT_TERM_LABELS, **(labels or {})}
    rows = random_effects.reset_index(drop=True).copy()
    rows["group_label"] = [_label(g, names) for g in rows["group"]]
    rows["term_label"] = [_term_pair(a, b, names) for a, b in zip(rows["term1"], rows["term2"])]
    is_cov = rows["term2"].notna()
    rows["sd_shown"] = rows["sd"].where(~is_cov)
    rows["corr_shown"] = rows["corr"].where(is_cov)
    columns = [Column("group_label", "Group"), Column("term_label", "Term"),
               Column("variance", "Variance", "number", decimals),
               Column("sd_shown", "SD", "number", decimals, italic=True),
               Column("corr_shown", "r", "bounded", decimals, italic=True)]
    standard = ("Variance = variance (covariance in rows naming two terms); SD = standard deviation; "
                "r = correlation of the two terms' random effects.")
    return ApaTable(number, title, columns, rows, _joined_note(standard, _zero_variance_note(rows), note))


def _zero_variance_note(rows: pd.DataFrame) -> str | None:
    """A sentence naming every variance estimated at 0 (a boundary, singular fit)."""
    zero = rows.loc[rows["term2"].isna() & (rows["group"] != "Residual")
                    & (pd.to_numeric(rows["variance"], errors="coerce") <= 0)]
    if zero.empty:
        return None
    named = "; ".join(f"{g}: {t}" for g, t in zip(zero["group_label"], zero["term_label"]))
    return (f"Estimated at 0 (boundary of the parameter space, singular fit): {named}. Such a level adds no "
            "variance in this model; its effects are not evidence of no variation in the population.")


def model_table_notes(info: Mapping[str, Any]) -> str:
    """Notes a model's tables carry beyond the formula, from its ``fit.json``: df bounded by
    the number of therapists (``df_notes``) and the unconditional therapist ICC of the response
    with its CI (``therapist_icc``); "" when there are none. Each sentence starts with a space."""
    notes = [f" The {n[0].lower()}{n[1:]}." for n in info.get("df_notes") or []]
    icc = info.get("therapist_icc")
    if icc:
        notes.append(f" Unconditional therapist ICC of the outcome ({icc['formula']}): {_percent(icc['icc'])}, "
                     f"{round(100 * icc['level']):g}% CI [{_percent(icc['ci_low'])}, {_percent(icc['ci_high'])}] "
                     f"({icc['ci_method']}).")
        if icc.get("singular"):
            notes.append(" The therapist variance of that null model was estimated at 0.")
    return "".join(notes)


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def _term_pair(first: Any, second: Any, names: Mapping[str, str]) -> Any:
    if _is_missing(first):
        return None
    if _is_missing(second):
        return _label(first, names)
    return f"{_label(first, names)} \u00d7 {_label(second, names)}"


def reliability_table(consistency: pd.DataFrame, number: int = 3, title: str = "Internal Consistency",
                      labels: Mapping[str, str] | None = None, decimals: int = 2,
                      note: str | None = None, level: float = 0.95) -> ApaTable:
    """APA table of internal consistency per instrument, scale and respondent.

    Parameters
    ----------
    consistency : DataFrame
        :func:`alliance.scoring.psychometrics.internal_consistency`: ``instrument``, ``scale``,
        ``respondent``, ``n``, ``k``, ``alpha``, ``ci_low``, ``ci_high``, ``omega_total``
        (and ``session``, shown when it is given).
    labels : mapping, optional
        Display names of instruments, scales and respondents.

    Notes
    -----
    Cronbach's alpha with Feldt's (1965) interval; omega total (McDonald, 1999) from a
    one-factor model (as computed upstream; the table only presents them).
    """
    _require(consistency, ["instrument", "scale", "respondent", "n", "k", "alpha", "ci_low", "ci_high",
                           "omega_total"], "reliability_table")
    names = dict(labels or {})
    rows = consistency.reset_index(drop=True).copy()
    for column in ("instrument", "scale", "respondent"):
        rows[f"{column}_label"] = [_label(v, names) for v in rows[column]]
    ci = f"{round(level * 100):g}% CI"
    columns = [Column("instrument_label", "Instrument"), Column("scale_label", "Scale"),
               Column("respondent_label", "Respondent")]
    if "session" in rows.columns and rows["session"].notna().any():
        columns.append(Column("session", "Session", "integer"))
    columns += [Column("n", "n", "integer", italic=True), Column("k", "k", "integer", italic=True),
                Column("alpha", "\u03b1", "bounded", decimals),
                Column("ci_low", ci, "bounded", decimals, upper="ci_high"),
                Column("omega_total", "\u03c9", "bounded", decimals)]
    standard = (f"n = complete administrations; k = items; \u03b1 = Cronbach's alpha with Feldt's (1965) {ci}"
                " (a cluster bootstrap over clients where clients repeat); \u03c9 = McDonald's omega total from a"
                " one-factor model (a bifactor model of the declared subscales for a scale that has them).")
    return ApaTable(number, title, columns, rows, _joined_note(standard, note))


def descriptives(data: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """n, mean, SD and pairwise Pearson correlations with two-sided p values.

    Missing values are left out per variable (n, M, SD) and per pair (r, p: pairwise
    complete). ``r`` and ``p`` need at least 3 complete pairs (else NaN).

    Returns
    -------
    DataFrame
        One row per variable (in ``columns`` order): ``variable``, ``n``, ``mean``, ``sd``
        (n - 1 denominator), ``r_1`` ... ``r_k``, ``p_1`` ... ``p_k`` (``r_j``: correlation
        with the j-th variable; the diagonal is NaN), ``n_1`` ... ``n_k`` (pairs).

    Notes
    -----
    p from t = r sqrt((n - 2) / (1 - r²)) on n - 2 df; tested against
    :func:`scipy.stats.pearsonr`.
    """
    _require(data, list(columns), "descriptives")
    if len(columns) == 0 or len(set(columns)) != len(columns):
        raise ValueError(f"descriptives: columns must be non-empty and distinct, got {list(columns)}")
    values = {}
    for c in columns:
        if not pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c]):
            raise ValueError(f"descriptives: column {c!r} has dtype {data[c].dtype}; expected numbers")
        values[c] = data[c].to_numpy(dtype=float, na_value=np.nan)
    k = len(columns)
    out = pd.DataFrame({"variable": list(columns),
                        "n": [int(np.sum(~np.isnan(values[c]))) for c in columns],
                        "mean": [_nan_stat(np.mean, values[c], 1) for c in columns],
                        "sd": [_nan_stat(lambda x: np.std(x, ddof=1), values[c], 2) for c in columns]})
    for j in range(k):
        r_col, p_col, n_col = np.full(k, np.nan), np.full(k, np.nan), np.zeros(k, dtype=int)
        for i in range(k):
            if i != j:
                r_col[i], p_col[i], n_col[i] = _pearson(values[columns[i]], values[columns[j]])
        out[f"r_{j + 1}"], out[f"p_{j + 1}"], out[f"n_{j + 1}"] = r_col, p_col, n_col
    return out


def _nan_stat(func, x: np.ndarray, minimum: int) -> float:
    x = x[~np.isnan(x)]
    return float(func(x)) if len(x) >= minimum else float("nan")


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    both = ~np.isnan(x) & ~np.isnan(y)
    n = int(both.sum())
    if n < 3:
        return float("nan"), float("nan"), n
    xc, yc = x[both] - x[both].mean(), y[both] - y[both].mean()
    denominator = math.sqrt(float(np.dot(xc, xc)) * float(np.dot(yc, yc)))
    if denominator == 0:
        return float("nan"), float("nan"), n
    r = float(np.clip(np.dot(xc, yc) / denominator, -1.0, 1.0))
    if abs(r) == 1.0:
        return r, 0.0, n
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return r, float(2 * stats.t.sf(abs(t), n - 2)), n


def descriptives_table(data: pd.DataFrame, columns: Sequence[str], number: int = 1,
                       title: str = "Means, Standard Deviations and Correlations",
                       labels: Mapping[str, str] | None = None, decimals: int = 2,
                       note: str | None = None) -> ApaTable:
    """APA table of M, SD, n and a lower-triangular correlation matrix with stars.

    Parameters
    ----------
    data : DataFrame
        One row per observation (e.g. the client-level dataset).
    columns : sequence of str
        Numeric columns to describe, in display order.
    labels : mapping, optional
        Display names of the columns.

    Returns
    -------
    ApaTable
        ``rows`` is :func:`descriptives` with a ``label`` column (``1. Early alliance``) and
        the diagonal of the correlation columns set to an em dash.
    """
    stats_frame = descriptives(data, columns)
    rows = stats_frame.copy()
    names = dict(labels or {})
    rows["label"] = [f"{i}. {_label(c, names)}" for i, c in enumerate(columns, start=1)]
    k = len(columns)
    for j in range(1, k + 1):
        # lower triangle and diagonal shown, upper triangle empty
        shown = rows[f"r_{j}"].astype(object).where(rows.index >= j - 1, None)
        shown.iloc[j - 1] = EM_DASH
        rows[f"r_{j}_shown"] = shown
    table_columns = [Column("label", "Variable"), Column("n", "n", "integer", italic=True),
                     Column("mean", "M", "number", decimals, italic=True),
                     Column("sd", "SD", "number", decimals, italic=True)]
    table_columns += [Column(f"r_{j}_shown", str(j), "bounded", decimals, stars=f"p_{j}") for j in range(1, k + 1)]
    pairwise = ""
    if k > 1 and data[list(columns)].isna().any().any():
        pairs = [int(stats_frame.at[i, f"n_{j}"]) for j in range(1, k + 1) for i in range(j, k)]
        low, high = min(pairs), max(pairs)
        span = format_integer(low) if low == high else f"{format_integer(low)}\u2013{format_integer(high)}"
        pairwise = f" Correlations use pairwise-complete observations (n = {span})."
    standard = f"M = mean; SD = standard deviation; n = non-missing observations.{pairwise} {STAR_NOTE}"
    return ApaTable(number, title, table_columns, rows, _joined_note(standard, note))
