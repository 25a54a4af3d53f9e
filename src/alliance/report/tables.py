"""Manuscript-ready tables in APA style, from plain DataFrames.

One table model, :class:`ApaTable` (number, title, column groups, columns with their number
formats, rows with section headings and indented rows under them, note), is written four ways
from the *same* formatted cell strings, so that every format shows the same numbers:

* Markdown (GitHub pipe table; column groups as the pipe header row),
* LaTeX (booktabs: ``\\toprule``/``\\cmidrule``/``\\midrule``/``\\bottomrule``, no vertical
  rules, special characters escaped; wide tables in ``landscape`` from pdflscape),
* HTML (:func:`html_page`: one page of one or more tables with its own style sheet),
* Word ``.docx`` (python-docx, :func:`write_docx`): table number in bold, title in italics,
  horizontal rules only, the note below; column widths fitted to the cells
  (:func:`docx_layout`), rows that never split, each table on its page, landscape pages for
  wide tables. The bytes are deterministic: core properties carry a fixed date and the zip
  entries a fixed time stamp.

The HTML is written here rather than with ``great_tables`` (the issue suggested it): that
package is not installed in the project's environment, and the renderer it would replace is
small. The page is plain HTML and CSS (APA's booktabs-like rules as borders, no vertical
rules, numbers never wrapped), has no JavaScript and no external resource, and its bytes
depend only on the table, so that the report embeds it as it is and reruns give identical
files.

Number formatting follows the APA Publication Manual (7th ed., chapters 6 and 7): a true
minus sign, no leading zero for statistics that cannot exceed 1 (p, r, alpha, omega, ICC,
R²), exact p to three decimals and ``< .001`` below that, thousands separated by commas.

Builders turn the pipeline's results into tables: :func:`model_comparison_table` (mixed
models side by side as ``sjPlot::tab_model`` lays them out: fixed effects with CI and p, then
σ², τ00/τ11/ρ01 per grouping factor, ICC, N, observations, R² and AIC/BIC of the ML refits
from ``fit.json``), :func:`fixed_effects_table` (``results/models/{model}/fixed_effects.csv``,
with SE, df, t and β), :func:`random_effects_table` (``random_effects.csv``),
:func:`reliability_table` (internal consistency,
:func:`alliance.scoring.psychometrics.internal_consistency`) and :func:`descriptives_table`
(M, SD, n and Pearson correlations with significance stars).

Tested in ``tests/test_tables.py``: every format is parsed back (the ``.docx`` with
python-docx) and compared cell by cell with the Markdown and with the source numbers
(rounded to the shown decimals), descriptives against numpy/scipy, APA formatting rules on
hand-worked values, the Word layout (widths, kept rows, landscape) and byte-identical
``.docx`` files across writes; ``tests/test_tables_word.py`` lays the workflow's Word
document out with LibreOffice and checks that no word or number is broken.

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
    "shown_decimals",
    "ModelColumn",
    "model_icc",
    "random_part",
    "format_random_part",
    "model_comparison_table",
    "html_page",
    "DocxLayout",
    "docx_layout",
    "text_width",
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
    """An APA-style table: number, title, column groups, columns, rows with sections, a note.

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
    spanners : sequence of (str, int), optional
        Column groups above the column headers, left to right, as (label, number of columns);
        the spans add up to the number of columns; an empty label spans columns without a
        group (e.g. the term column). Each labelled group gets a rule below it (APA's
        column spanners; several models side by side).
    sections : mapping of int to str, optional
        A heading row (italic, across the whole table) before body row ``i`` (0-based;
        ``len(rows)`` is not allowed). The rows under a heading are indented.
    landscape : bool, optional
        Word: put the table on a landscape page. Default: when its columns do not fit the
        width of a portrait page (:func:`docx_layout`).

    Raises
    ------
    ValueError
        A column named by a :class:`Column` is not in ``rows``, the number is not a positive
        integer, the title is empty, the spans do not add up to the columns or a section
        starts outside the rows.
    """

    number: int
    title: str
    columns: Sequence[Column]
    rows: pd.DataFrame
    note: str | None = None
    missing: str = ""
    spanners: Sequence[tuple[str, int]] = ()
    sections: Mapping[int, str] = field(default_factory=dict)
    landscape: bool | None = None
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
        spans = [span for _, span in self.spanners]
        if self.spanners and (sum(spans) != len(self.columns) or min(spans) < 1):
            raise ValueError(f"ApaTable {self.number}: spanners cover {spans} columns; expected positive spans "
                             f"adding up to the {len(self.columns)} columns")
        outside = [i for i in self.sections if not (isinstance(i, int) and 0 <= i < len(self.rows))]
        if outside:
            raise ValueError(f"ApaTable {self.number}: section(s) before row(s) {outside}; the table has "
                             f"{len(self.rows)} rows")

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

    @property
    def lines(self) -> list[tuple[str | None, list[str], bool]]:
        """The body as every writer lays it out: ``(section, cells, indented)`` per line; a
        section heading is ``(text, [], False)``, a data row ``(None, cells, indented)``."""
        out: list[tuple[str | None, list[str], bool]] = []
        indented = False
        for i, cells in enumerate(self.body):
            if i in self.sections:
                out.append((self.sections[i], [], False))
                indented = True
            out.append((None, cells, indented))
        return out

    @property
    def spanner_cells(self) -> list[str]:
        """The spanner labels per column: the label over a group's first column, "" elsewhere."""
        cells: list[str] = []
        for label, span in self.spanners:
            cells += [label] + [""] * (span - 1)
        return cells

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
        """A GitHub pipe table with the number in bold, the title in italics, the note below.

        Column groups, which a pipe table cannot nest, become the pipe header row (each label
        over its group's first column) with the column headers as the first row below the
        rule, in bold; a section heading is a row with its italic text in the first cell.
        """
        marks = {"left": ":---", "center": ":---:", "right": "---:"}
        header = [_md_italic(_md_escape(c.label)) if c.italic else _md_escape(c.label) for c in self.columns]
        lines = [f"**{self.caption}**", "", f"*{_md_escape(self.title)}*", ""]
        if self.spanners:
            lines += [_md_row([_md_escape(s) for s in self.spanner_cells]),
                      _md_row([marks[c.alignment] for c in self.columns]),
                      _md_row([f"**{h}**" if h else h for h in header])]
        else:
            lines += [_md_row(header), _md_row([marks[c.alignment] for c in self.columns])]
        for section, cells, _ in self.lines:
            if section is not None:
                lines.append(_md_row([_md_italic(_md_escape(section))] + [""] * (len(self.columns) - 1)))
            else:
                lines.append(_md_row([_md_escape(cell) for cell in cells]))
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

        Column groups are ``\\multicolumn`` headers with a ``\\cmidrule`` below; a section
        heading is an italic ``\\multicolumn`` row; rows under it are indented by ``\\quad``.
        A table too wide for a portrait page is set in ``\\small`` inside ``landscape``
        (needs ``\\usepackage{pdflscape}``).
        """
        spec = "".join({"left": "l", "center": "c", "right": "r"}[c.alignment] for c in self.columns)
        header = [f"\\textit{{{_tex_escape(c.label)}}}" if c.italic else _tex_escape(c.label) for c in self.columns]
        wide = docx_layout(self).landscape
        packages = ["booktabs", "pdflscape"] if wide else ["booktabs"]
        out = [f"% {self.caption}: needs " + ", ".join(f"\\usepackage{{{p}}}" for p in packages)]
        if wide:
            out.append("\\begin{landscape}")
        out.append("\\begin{table}[htbp]")
        if wide:
            out.append("\\small")
        if caption:
            out.append(f"\\caption{{{_tex_escape(self.title)}}}")
            if label:
                out.append(f"\\label{{{label}}}")
        else:
            out += ["\\raggedright", f"\\textbf{{{self.caption}}}\\par", "\\smallskip",
                    f"\\textit{{{_tex_escape(self.title)}}}\\par", "\\smallskip"]
        out += [f"\\begin{{tabular}}{{@{{}}{spec}@{{}}}}", "\\toprule"]
        if self.spanners:
            cells, rules, first = [], [], 1
            for text, span in self.spanners:
                cells.append(f"\\multicolumn{{{span}}}{{c}}{{{_tex_escape(text)}}}" if text else
                             " & ".join([""] * span))
                if text:
                    rules.append(f"\\cmidrule(lr){{{first}-{first + span - 1}}}")
                first += span
            out += [_tex_row(cells), " ".join(rules)]
        out += [_tex_row(header), "\\midrule"]
        n = len(self.columns)
        for section, cells, indented in self.lines:
            if section is not None:
                out.append(_tex_row([f"\\multicolumn{{{n}}}{{@{{}}l}}{{\\textit{{{_tex_escape(section)}}}}}"]))
            else:
                shown = [_tex_escape(cell) for cell in cells]
                if indented and shown[0]:
                    shown[0] = "\\quad " + shown[0]
                out.append(_tex_row(shown))
        out += ["\\bottomrule", "\\end{tabular}\\par"]
        if self.note:
            out += ["\\smallskip", f"{{\\small \\textit{{Note.}} {_tex_escape(self.note)}\\par}}"]
        out.append("\\end{table}")
        if wide:
            out.append("\\end{landscape}")
        return "\n".join(out) + "\n"

    def to_html(self, standalone: bool = False) -> str:
        """An HTML table in APA style (horizontal rules only; see :func:`html_page`);
        ``standalone`` wraps it in a page with its style sheet."""
        if standalone:
            return html_page([self], f"{self.caption}. {self.title}")
        return _html_table(self)

    def to_docx(self, path: str | Path) -> Path:
        """Write the table as a Word document (see :func:`write_docx`)."""
        return write_docx([self], path)


# --------------------------------------------------------------------------- HTML

#: The style sheet of :func:`html_page`: APA rules as CSS borders (above and below the
#: header, below a column group, below the body), no vertical rules, numbers never broken.
HTML_STYLE = """\
body { font-family: "Times New Roman", Times, "Liberation Serif", serif; color: #000; background: #fff;
       margin: 1.5em; }
.apa-table { margin: 0 0 2.5em 0; }
.apa-table p { margin: 0.3em 0; max-width: 60em; line-height: 1.35; }
.apa-table .apa-number { font-weight: bold; margin-bottom: 0.6em; }
.apa-table .apa-title { font-style: italic; margin-bottom: 0.6em; }
.apa-table table { border-collapse: collapse; border-top: 1px solid #000; border-bottom: 1px solid #000; }
.apa-table th, .apa-table td { padding: 0.15em 0.6em; vertical-align: top; font-weight: normal; }
.apa-table thead tr.columns th { border-bottom: 1px solid #000; }
.apa-table th.spanner { text-align: center; }
.apa-table th.spanner span { display: block; border-bottom: 1px solid #000; padding-bottom: 0.15em; }
.apa-table .left { text-align: left; }
.apa-table .center { text-align: center; }
.apa-table .right { text-align: right; }
.apa-table td.center, .apa-table td.right { white-space: nowrap; font-variant-numeric: tabular-nums; }
.apa-table tr.section td { font-style: italic; padding-top: 0.6em; }
.apa-table td.indent { padding-left: 1.8em; }
.apa-table td:first-child { white-space: nowrap; }
.apa-table tbody tr:first-child td { padding-top: 0.35em; }
.apa-table tbody tr:last-child td { padding-bottom: 0.35em; }
.apa-table .apa-note { font-size: 0.95em; }
"""


def _html_table(table: ApaTable) -> str:
    """One table as an HTML fragment: ``<div class="apa-table">`` with the number, title,
    ``<table>`` (column groups in a first header row) and note."""
    esc = html.escape
    parts = [f'<div class="apa-table" id="table-{table.number}">',
             '<table>',
             f'<caption class="left"><p class="apa-number"><strong>{table.caption}</strong></p>'
             f'<p class="apa-title"><em>{esc(table.title)}</em></p></caption>',
             "<thead>"]
    if table.spanners:
        cells = []
        for text, span in table.spanners:
            inner = f"<span>{esc(text)}</span>" if text else ""
            cells.append(f'<th class="spanner" colspan="{span}">{inner}</th>' if span > 1 else
                         f'<th class="spanner">{inner}</th>')
        parts.append(f'<tr class="spanners">{"".join(cells)}</tr>')
    head = "".join(f'<th class="{c.alignment}">{"<em>" + esc(c.label) + "</em>" if c.italic else esc(c.label)}</th>'
                   for c in table.columns)
    parts += [f'<tr class="columns">{head}</tr>', "</thead>", "<tbody>"]
    n = len(table.columns)
    for section, cells, indented in table.lines:
        if section is not None:
            parts.append(f'<tr class="section"><td class="left" colspan="{n}">{esc(section)}</td></tr>')
            continue
        row = []
        for j, (column, text) in enumerate(zip(table.columns, cells)):
            css = column.alignment + (" indent" if indented and j == 0 else "")
            row.append(f'<td class="{css}">{esc(text)}</td>')
        parts.append(f"<tr>{''.join(row)}</tr>")
    parts += ["</tbody>", "</table>"]
    if table.note:
        parts.append(f'<p class="apa-note"><em>Note.</em> {esc(table.note)}</p>')
    parts.append("</div>")
    return "\n".join(parts) + "\n"


def html_page(tables: Sequence[ApaTable], title: str, intro: str | None = None) -> str:
    """A standalone HTML page (UTF-8, its own style sheet, no JavaScript) of one or more
    tables, in the order given; the bytes depend only on the tables.

    Parameters
    ----------
    tables : sequence of ApaTable
    title : str
        The page's ``<title>`` and, when there are several tables, its heading.
    intro : str, optional
        A paragraph below the heading.
    """
    if not tables:
        raise ValueError("html_page: no tables given")
    esc = html.escape
    body = []
    if len(tables) > 1:
        body.append(f"<h1>{esc(title)}</h1>")
    if intro:
        body.append(f"<p>{esc(intro)}</p>")
    body += [_html_table(t) for t in tables]
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{esc(title)}</title>\n<style>\n{HTML_STYLE}</style>\n</head>\n<body>\n"
            + "".join(body) + "</body>\n</html>\n")


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

# Advance widths of Times Roman (Adobe's AFM, the metrics of Times New Roman and Liberation
# Serif), in 1/1000 em, for the characters " " to "~"; others count as 600.
_TIMES_WIDTHS = [int(w) for w in (
    "250 333 408 500 500 833 778 333 333 333 500 564 250 333 250 278 500 500 500 500 500 500 500 500 500 500 "
    "278 278 564 564 564 444 921 722 667 667 722 611 556 722 722 333 389 722 611 889 722 722 556 722 667 556 "
    "611 722 722 944 722 722 611 333 278 333 469 500 333 444 500 444 500 444 333 500 500 278 278 500 278 778 "
    "500 500 500 500 333 389 278 500 500 722 500 500 444 480 200 480 541").split()]
_OTHER_WIDTHS = {MINUS: 564, "\u00a0": 250, EM_DASH: 1000, "\u2013": 500, "\u00b2": 300, "\u00d7": 564}
#: Page geometry of the Word document (US Letter, 1-inch margins), in points.
PAGE_WIDTH_PT, PAGE_HEIGHT_PT, MARGIN_PT = 612.0, 792.0, 72.0
CELL_PADDING_PT = 11.0  # Word's default left + right cell margins (0.08 in each) plus slack
FONT_SIZES_PT = (12.0, 11.0, 10.0, 9.0)  # tried in turn until a wide table fits
PORTRAIT_SIZES = 3  # a table that needs a font below 10 pt in portrait goes on a landscape page


def text_width(text: str, size: float = 12.0) -> float:
    """The printed width of ``text`` in points at ``size`` in Times Roman (10% spare for
    italics and font substitutes)."""
    units = sum(_TIMES_WIDTHS[ord(ch) - 32] if " " <= ch <= "~" else _OTHER_WIDTHS.get(ch, 600) for ch in text)
    return 1.1 * units * size / 1000.0


@dataclass(frozen=True)
class DocxLayout:
    """Where and how wide a table goes in Word: ``landscape``, the font ``size`` (pt) and
    the column ``widths`` (pt), which add up to the page's text width at most."""

    landscape: bool
    size: float
    widths: tuple[float, ...]


def _unbreakable(text: str, numeric: bool) -> list[str]:
    """The pieces of a cell that must stay on one line: the whole cell for a number column
    (an interval ``[.91, .93]`` included), each word for text."""
    return [text] if numeric else text.split()


def docx_layout(table: ApaTable) -> DocxLayout:
    """Column widths as Word's autofit makes them, computed here so that LibreOffice (which
    lays out by the stored grid) shows the same: each column at least as wide as its widest
    unbreakable piece (a number, an interval, a word), then widened towards its natural
    one-line width in proportion to what it lacks; the rest of the page's width is shared
    out in proportion. Portrait at 12, 11 or 10 pt when the columns fit, else landscape at
    12 to 9 pt; of those, the largest font that keeps the whole table with its number,
    title and note on one page (:func:`_fits_on_a_page`), else the largest that fits the
    width."""
    orientations = [table.landscape] if table.landscape is not None else [False, True]
    candidates = []
    for landscape in orientations:
        available = (PAGE_HEIGHT_PT if landscape else PAGE_WIDTH_PT) - 2 * MARGIN_PT
        for size in FONT_SIZES_PT if landscape else FONT_SIZES_PT[:PORTRAIT_SIZES]:
            widths = _column_widths(table, size, available)
            if widths is not None:
                candidates.append(DocxLayout(landscape, size, widths))
        if candidates:  # portrait when the columns fit it at all
            break
    for layout in candidates:  # the largest font that keeps the table, with its note, on one page
        if _fits_on_a_page(table, layout):
            return layout
    if candidates:
        return candidates[0]
    # Nothing fits: the smallest font and the widths the cells need, past the margins if
    # need be (a broken number would be worse).
    landscape = orientations[-1]
    minimum, _ = _column_needs(table, FONT_SIZES_PT[-1])
    return DocxLayout(landscape, FONT_SIZES_PT[-1], tuple(round(m, 1) for m in minimum))


def _column_needs(table: ApaTable, size: float) -> tuple[list[float], list[float]]:
    """Per column: the width its widest unbreakable piece needs and its natural width."""
    minimum = [0.0] * len(table.columns)
    natural = [0.0] * len(table.columns)
    rows = [(c.label for c in table.columns)] + [cells for section, cells, _ in table.lines if section is None]
    for cells in rows:
        for j, (column, text) in enumerate(zip(table.columns, cells)):
            numeric = column.alignment != "left"
            pieces = _unbreakable(text, numeric) or [""]
            indent = 18.0 if j == 0 else 0.0
            minimum[j] = max(minimum[j], indent + max(text_width(p, size) for p in pieces) + CELL_PADDING_PT)
            natural[j] = max(natural[j], indent + text_width(text, size) + CELL_PADDING_PT)
    # a section heading spans the table; a column group its columns: each word must fit
    first = 0
    for label, span in table.spanners:
        if label:
            need = max(text_width(w, size) for w in label.split()) + CELL_PADDING_PT
            have = sum(minimum[first:first + span])
            if need > have:
                for j in range(first, first + span):
                    minimum[j] += (need - have) / span
        first += span
    natural = [max(n, m) for n, m in zip(natural, minimum)]
    return minimum, natural


def _column_widths(table: ApaTable, size: float, available: float) -> tuple[float, ...] | None:
    """Autofit widths within ``available`` points, or None when the unbreakable pieces do
    not fit."""
    minimum, natural = _column_needs(table, size)
    if sum(minimum) > available:
        return None
    if sum(natural) <= available:
        widths = natural
    else:
        lack = [n - m for n, m in zip(natural, minimum)]
        share = (available - sum(minimum)) / sum(lack)
        widths = [m + share * gap for m, gap in zip(minimum, lack)]
    spare = available - sum(widths)
    total = sum(widths)
    return tuple(round(w + spare * w / total, 1) for w in widths)


KEPT_ROWS = 2  # rows of a long table kept with its header and with its note


def _fits_on_a_page(table: ApaTable, layout: DocxLayout) -> bool:
    """Whether number, title, table and note fit the page's text height (lines estimated
    from the text widths at 1.2 line spacing, cell margins included)."""
    line = 1.2 * layout.size
    height = 2 * 1.2 * 12.0 + 12.0  # number and title
    rows = [(c.label for c in table.columns)] + [cells for section, cells, _ in table.lines if section is None]
    for cells in rows:
        lines = max(math.ceil(text_width(text, layout.size) / max(width - CELL_PADDING_PT, 1.0)) or 1
                    for text, width in zip(cells, layout.widths))
        height += lines * line + 1.0
    height += sum(1 for section, _, _ in table.lines if section is not None) * (line + 1.0)
    first, spanner_lines = 0, 1
    for label, span in table.spanners:
        width = sum(layout.widths[first:first + span]) - CELL_PADDING_PT
        spanner_lines = max(spanner_lines, math.ceil(text_width(label, layout.size) / max(width, 1.0)))
        first += span
    if table.spanners:
        height += spanner_lines * line + 1.0
    if table.note:
        height += math.ceil(text_width("Note. " + table.note, layout.size) / sum(layout.widths)) * line + 6.0
    page = (PAGE_WIDTH_PT if layout.landscape else PAGE_HEIGHT_PT) - 2 * MARGIN_PT
    return height <= page


def write_docx(tables: Sequence[ApaTable], path: str | Path) -> Path:
    """Write one or more tables into a Word document with deterministic bytes.

    Each table: ``Table n`` in bold, the title in italics, the table with horizontal rules
    only (above and below the header row, below column groups, below the last row), the
    note below. The layout is made for Word and for LibreOffice:

    * column widths fitted to the cells (:func:`docx_layout`), stored in the grid and in
      every cell, so that no word or number is broken inside a cell; numbers keep their
      spaces as no-break spaces (an interval never wraps);
    * each table starts on a new page (APA 7th ed., sec. 7.6); a table wider than a portrait
      page goes on a landscape page (a section of its own);
    * rows never split across pages (``cantSplit``), the number, title and every row but
      the last keep with the next paragraph, so a table that fits on a page is never
      broken, and a longer one repeats its header rows on every page.

    The core properties carry a fixed date (2000-01-01) and no author, and every zip entry
    a fixed time stamp (1980-01-01), because python-docx would otherwise store the current
    time and the same tables would give different files.
    """
    from docx import Document
    from docx.shared import Pt

    if not tables:
        raise ValueError("write_docx: no tables given")
    document = Document()
    normal = document.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(12)
    normal.paragraph_format.space_after = Pt(0)
    _set_page(document.sections[0], landscape=False)
    landscape = False
    for i, table in enumerate(tables):
        if not isinstance(table, ApaTable):
            raise ValueError(f"write_docx: item {i} is a {type(table).__name__}, expected an ApaTable")
        layout = docx_layout(table)
        if i and layout.landscape != landscape:
            _new_section(document, layout.landscape)
        landscape = layout.landscape
        _docx_table(document, table, layout, new_page=i > 0)
    _fix_core_properties(document, title=tables[0].caption if len(tables) == 1 else "Tables")
    buffer = io.BytesIO()
    document.save(buffer)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_normalised_zip(buffer.getvalue()))
    return path


def _set_page(section, landscape: bool) -> None:
    from docx.enum.section import WD_ORIENT
    from docx.shared import Pt

    section.orientation = WD_ORIENT.LANDSCAPE if landscape else WD_ORIENT.PORTRAIT
    width, height = (PAGE_HEIGHT_PT, PAGE_WIDTH_PT) if landscape else (PAGE_WIDTH_PT, PAGE_HEIGHT_PT)
    section.page_width, section.page_height = Pt(width), Pt(height)
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Pt(MARGIN_PT))


def _new_section(document, landscape: bool) -> None:
    from docx.enum.section import WD_SECTION

    _set_page(document.add_section(WD_SECTION.NEW_PAGE), landscape)


def _docx_table(document, table: ApaTable, layout: DocxLayout, new_page: bool = False) -> None:
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    alignment = {"left": WD_ALIGN_PARAGRAPH.LEFT, "center": WD_ALIGN_PARAGRAPH.CENTER,
                 "right": WD_ALIGN_PARAGRAPH.RIGHT}
    style = _table_text_style(document, layout.size)
    number = document.add_paragraph()
    number.paragraph_format.page_break_before = new_page  # APA: each table on a page of its own
    number.add_run(table.caption).bold = True
    title = document.add_paragraph()
    title.add_run(table.title).italic = True
    for paragraph in (number, title):
        paragraph.paragraph_format.keep_with_next = True
        paragraph.paragraph_format.space_after = Pt(6)
    lines = table.lines
    n_head = 2 if table.spanners else 1
    grid = document.add_table(rows=n_head + len(lines), cols=len(table.columns))
    grid.alignment = WD_TABLE_ALIGNMENT.LEFT
    _set_table_layout(grid, layout.widths)
    _set_table_borders(grid)
    if table.spanners:
        first = 0
        for text, span in table.spanners:
            cell = grid.rows[0].cells[first]
            if span > 1:
                cell = cell.merge(grid.rows[0].cells[first + span - 1])
            paragraph = cell.paragraphs[0]
            paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
            if text:
                _add_unbroken(paragraph, text, numeric=False)
                _set_cell_bottom_border(cell)
            first += span
    header = grid.rows[n_head - 1]
    for j, column in enumerate(table.columns):
        cell = header.cells[j]
        paragraph = cell.paragraphs[0]
        paragraph.alignment = alignment[column.alignment]
        _add_unbroken(paragraph, column.label, numeric=False).italic = column.italic
        _set_cell_bottom_border(cell)
    for i, (section, cells, indented) in enumerate(lines, start=n_head):
        row = grid.rows[i]
        if section is not None:
            cell = row.cells[0].merge(row.cells[-1])
            _add_unbroken(cell.paragraphs[0], section, numeric=False).italic = True
            continue
        for j, (column, text) in enumerate(zip(table.columns, cells)):
            paragraph = row.cells[j].paragraphs[0]
            paragraph.alignment = alignment[column.alignment]
            if indented and j == 0:
                paragraph.paragraph_format.left_indent = Pt(12)
            if text:
                _add_unbroken(paragraph, text, numeric=column.alignment != "left")
    for row in grid.rows:  # empty cells too: their paragraph mark would otherwise set a 12-pt line
        for cell in row.cells:
            for paragraph in cell.paragraphs:
                paragraph.style = style
    # A table that fits on a page is kept on one page with its number, title and note; a
    # longer one keeps its header with the first rows and its last rows with the note.
    whole = _fits_on_a_page(table, layout)
    last = len(grid.rows) - 1
    for i, row in enumerate(grid.rows):
        keep = whole or i < n_head + KEPT_ROWS or i >= last - KEPT_ROWS
        _keep_row_together(row, header=i < n_head, keep_with_next=keep and (i < last or bool(table.note)))
    if table.note:
        paragraph = document.add_paragraph(style=style)
        paragraph.paragraph_format.space_before = Pt(6)
        paragraph.add_run("Note.").italic = True
        paragraph.add_run(f" {table.note}")


def _add_unbroken(paragraph, text: str, numeric: bool):
    """A cell's text as a run whose hyphens are Word's non-breaking hyphens (``WAI-SR`` never
    becomes "WAI-" / "SR") and, in a number column, whose spaces are no-break spaces (an
    interval never wraps). python-docx reads a non-breaking hyphen back as "-"."""
    from docx.oxml import OxmlElement

    run = paragraph.add_run()
    for i, piece in enumerate((text.replace(" ", "\u00a0") if numeric else text).split("-")):
        if i:
            run._r.append(OxmlElement("w:noBreakHyphen"))
        if piece:
            run._r.add_t(piece)
    return run


def _table_text_style(document, size: float):
    """The paragraph style of a table's cells and note at ``size`` pt: single line spacing,
    no space after (one style per size, made on first use)."""
    from docx.enum.style import WD_STYLE_TYPE
    from docx.enum.text import WD_LINE_SPACING
    from docx.shared import Pt

    name = f"Table text {size:g} pt"
    if name in [s.name for s in document.styles]:
        return document.styles[name]
    style = document.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    style.base_style = document.styles["Normal"]
    style.font.size = Pt(size)
    style.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
    style.paragraph_format.space_after = Pt(0)
    style.paragraph_format.space_before = Pt(0)
    return style


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


def _set_table_layout(grid, widths: Sequence[float]) -> None:
    """Autofit layout with the computed widths in the grid and every cell (twentieths of a
    point), and the table's width their sum: Word may refit, LibreOffice keeps them."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    grid.autofit = True
    tbl_pr = grid._tbl.tblPr
    tbl_w = tbl_pr.find(qn("w:tblW"))
    if tbl_w is None:
        tbl_w = OxmlElement("w:tblW")
        tbl_pr.insert(0, tbl_w)
    tbl_w.set(qn("w:type"), "dxa")
    tbl_w.set(qn("w:w"), str(round(20 * sum(widths))))
    for column, width in zip(grid.columns, widths):
        column.width = Pt(width)
        for cell in column.cells:
            cell.width = Pt(width)


def _set_table_borders(grid) -> None:
    """Rules above and below the table; no vertical or inner rules (APA)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    borders = OxmlElement("w:tblBorders")
    for tag, val in (("top", "single"), ("left", "nil"), ("bottom", "single"), ("right", "nil"),
                     ("insideH", "nil"), ("insideV", "nil")):
        borders.append(_border(tag, val))
    # The schema orders tblPr's children (tblStyle, tblpPr, tblOverlap, bidiVisual, tblStyleRowBandSize,
    # tblStyleColBandSize, tblW, jc, tblCellSpacing, tblInd, tblBorders, ..., tblLayout, ..., tblLook);
    # Word refuses files that break the order.
    tbl_pr = grid._tbl.tblPr
    anchor = tbl_pr.find(qn("w:jc"))
    if anchor is None:
        anchor = tbl_pr.find(qn("w:tblW"))
    if anchor is not None:
        anchor.addnext(borders)
    else:
        tbl_pr.insert(0, borders)


def _keep_row_together(row, header: bool, keep_with_next: bool) -> None:
    """A row never breaks across pages (``cantSplit``); header rows repeat on every page a
    long table runs over (``tblHeader``); ``keep_with_next`` keeps the row's paragraphs on
    the page of the next row."""
    from docx.oxml import OxmlElement

    tr_pr = row._tr.get_or_add_trPr()
    tr_pr.append(OxmlElement("w:cantSplit"))
    if header:
        tr_pr.append(OxmlElement("w:tblHeader"))
    if keep_with_next:
        for cell in row.cells:
            for paragraph in cell.paragraphs:
                paragraph.paragraph_format.keep_with_next = True


def _set_cell_bottom_border(cell) -> None:
    from docx.oxml import OxmlElement

    tc_pr = cell._tc.get_or_add_tcPr()
    borders = OxmlElement("w:tcBorders")
    borders.append(_border("bottom"))
    # tcPr's children in schema order: tcW, gridSpan, vMerge, tcBorders, ...
    anchor = None
    for tag in ("w:vMerge", "w:gridSpan", "w:tcW"):
        from docx.oxml.ns import qn

        anchor = tc_pr.find(qn(tag))
        if anchor is not None:
            break
    if anchor is not None:
        anchor.addnext(borders)
    else:
        tc_pr.insert(0, borders)


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
    standard = ("b = unstandardised estimate; SE = standard error; df = Satterthwaite degrees of freedom "
                "(Kuznetsova et al., 2017); CI = confidence interval")
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


# --------------------------------------------------------------------------- models side by side

MIN_VARIANCE_DECIMALS, MAX_VARIANCE_DECIMALS = 2, 4
RANDOM_PART_TITLE = "Random effects"


def shown_decimals(values: Sequence[float] | pd.Series, minimum: int = MIN_VARIANCE_DECIMALS,
                   maximum: int = MAX_VARIANCE_DECIMALS) -> int:
    """Decimals that show the smallest non-zero magnitude in ``values`` with two significant
    digits, between ``minimum`` and ``maximum`` (0.036 -> 3, 0.0057 -> 4, 0.45 -> 2)."""
    x = np.abs(np.asarray(values, dtype=float))
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return minimum
    needed = math.ceil(-math.log10(float(x.min()))) + 1
    return int(min(maximum, max(minimum, needed)))


@dataclass(frozen=True)
class ModelColumn:
    """One model of a side-by-side table (:func:`model_comparison_table`).

    Parameters
    ----------
    number : int
        The model's number in the manuscript ("Model 3"; the methods paragraph uses the same).
    label : str
        Its name (the config's ``label:``).
    info : mapping
        Its ``fit.json``: ``var_residual``, ``var_random``, ``ngroups``, ``nobs``,
        ``r2_marginal``, ``r2_conditional``, ``aic_ml``, ``bic_ml`` (of the ML refit,
        :func:`alliance.models.ml_criteria`), ``reml``, ``formula``,
        ``singular`` (a model that could not be estimated: ``status`` and ``reason``).
    fixed : DataFrame, optional
        Its ``fixed_effects.csv`` (``term``, ``estimate``, ``se``, ``p``, ``ci_low``,
        ``ci_high``); None when it was not estimated.
    random : DataFrame, optional
        Its ``random_effects.csv`` (``group``, ``term1``, ``term2``, ``variance``, ``sd``,
        ``corr``).
    """

    number: int
    label: str
    info: Mapping[str, Any]
    fixed: pd.DataFrame | None = None
    random: pd.DataFrame | None = None

    @property
    def estimated(self) -> bool:
        return self.fixed is not None and self.random is not None


def model_icc(info: Mapping[str, Any]) -> float:
    """The adjusted ICC of a fitted model as ``performance::icc`` and ``sjPlot::tab_model``
    report it: random-effect variance over random plus residual variance (Nakagawa et al.,
    2017), from ``fit.json``'s ``var_random`` and ``var_residual``."""
    random, residual = float(info["var_random"]), float(info["var_residual"])
    return random / (random + residual)


def random_part(random: pd.DataFrame, info: Mapping[str, Any],
                names: Mapping[str, str]) -> list[tuple[str, str, float]]:
    """The random part of one model as ``sjPlot::tab_model`` lists it: ``(key, label, value)``
    for σ² (residual variance), τ00 per grouping factor (random-intercept variance), τ11 per
    random slope, ρ01 per intercept–slope correlation, the ICC, N per grouping factor,
    observations, marginal and conditional R², AIC and BIC.

    AIC and BIC are those of the maximum-likelihood fit (``fit.json``'s ``aic_ml`` and
    ``bic_ml``: a REML fit refitted by ML, as lme4's ``AIC(refitML(m))``), which compare models
    with different fixed effects fitted to the same observations, as ``sjPlot::tab_model`` and
    ``anova()`` do; they are left out when the model has none.

    ``key`` identifies the row across models (``tau00|therapist``); values are numbers.
    """
    _require(random, ["group", "term1", "term2", "variance", "sd", "corr"], "random_part")
    out: list[tuple[str, str, float]] = [("sigma2", "\u03c3\u00b2", float(info["var_residual"]))]
    components = random[random["group"] != "Residual"]
    for group in dict.fromkeys(components["group"]):
        rows = components[components["group"] == group]
        group_label = _label(group, names)
        for r in rows.itertuples():
            if _is_missing(r.term2) and r.term1 == "(Intercept)":
                out.append((f"tau00|{group}", f"\u03c400 {group_label}", float(r.variance)))
        for r in rows.itertuples():
            if _is_missing(r.term2) and r.term1 != "(Intercept)":
                out.append((f"tau11|{group}|{r.term1}", f"\u03c411 {group_label}: {_label(r.term1, names)}",
                            float(r.variance)))
        for r in rows.itertuples():
            if not _is_missing(r.term2):
                pair = _term_pair(r.term1, r.term2, names)
                key_label = "\u03c101 " + (group_label if r.term1 == "(Intercept)" else f"{group_label}: {pair}")
                out.append((f"rho01|{group}|{r.term1}|{r.term2}", key_label, float(r.corr)))
    out.append(("icc", "ICC", model_icc(info)))
    for group, n in (info.get("ngroups") or {}).items():
        out.append((f"n|{group}", f"N {_label(group, names)}", float(n)))
    out.append(("nobs", "Observations", float(info["nobs"])))
    out += [("r2_marginal", "Marginal R\u00b2", float(info["r2_marginal"])),
            ("r2_conditional", "Conditional R\u00b2", float(info["r2_conditional"]))]
    if _has_ml_criteria(info):
        out += [("aic", "AIC", float(info["aic_ml"])), ("bic", "BIC", float(info["bic_ml"]))]
    return out


def _has_ml_criteria(info: Mapping[str, Any]) -> bool:
    """Whether ``fit.json`` holds the AIC and BIC of the model's ML fit."""
    return info.get("aic_ml") is not None and info.get("bic_ml") is not None


#: How each random-part row is shown: (format, decimals); None = the model's variance decimals.
RANDOM_PART_FORMATS = {"sigma2": ("number", None), "tau00": ("number", None), "tau11": ("number", None),
                       "rho01": ("bounded", 2), "icc": ("bounded", 3), "n": ("integer", 0),
                       "nobs": ("integer", 0), "r2_marginal": ("bounded", 3), "r2_conditional": ("bounded", 3),
                       "aic": ("number", 1), "bic": ("number", 1)}


def format_random_part(key: str, value: float, variance_decimals: int) -> str:
    """The cell text of a :func:`random_part` row (:data:`RANDOM_PART_FORMATS`)."""
    fmt, decimals = RANDOM_PART_FORMATS[key.split("|")[0]]
    if fmt == "integer":
        return format_integer(value)
    formatter = format_bounded if fmt == "bounded" else format_number
    return formatter(value, variance_decimals if decimals is None else decimals)


def model_comparison_table(models: Sequence[ModelColumn], number: int, title: str,
                           labels: Mapping[str, str] | None = None, note: str | None = None,
                           level: float = 0.95) -> ApaTable:
    """Mixed models side by side, as ``sjPlot::tab_model`` lays them out.

    Per model three columns under its name (a column group): the unstandardised estimate
    *b*, its confidence interval and *p*. The fixed effects first (the terms of all models in
    order of first appearance; a term a model lacks stays empty), then a section with the
    random part (:func:`random_part`), each value in the model's *b* column.

    Parameters
    ----------
    models : sequence of ModelColumn
    number, title : table number and title.
    labels : mapping, optional
        Display names of terms and grouping factors (default :data:`DEFAULT_TERM_LABELS`).
    note : str, optional
        Appended to the standard note.
    level : float
        Confidence level of the intervals (for the header).

    Notes
    -----
    Decimals: b and the CI of a row to two significant digits of that row's SE (as
    :func:`fixed_effects_table`), p to three; the variances of a model to two significant
    digits of its smallest non-zero variance (2 to 4 decimals, :func:`shown_decimals`),
    ρ01 to two, ICC and R² to three, AIC and BIC to one. A variance estimated at 0 (a
    singular fit) is named in the note.
    """
    if not models:
        raise ValueError(f"model_comparison_table {number}: no models")
    names = {**DEFAULT_TERM_LABELS, **(labels or {})}
    terms: list[str] = []
    for model in models:
        if model.estimated:
            _require(model.fixed, ["term", "estimate", "se", "p", "ci_low", "ci_high"], "model_comparison_table")
            terms += [t for t in model.fixed["term"] if t not in terms]
    records: dict[str, dict[str, Any]] = {t: {"label": _label(t, names)} for t in terms}
    random_rows: dict[str, dict[str, Any]] = {}
    for k, model in enumerate(models):
        if not model.estimated:
            continue
        for r in model.fixed.itertuples():
            records[r.term].update({f"b{k}": r.estimate, f"se{k}": r.se, f"lo{k}": r.ci_low, f"hi{k}": r.ci_high,
                                    f"p{k}": r.p})
        part = random_part(model.random, model.info, names)
        decimals = shown_decimals([v for key, _, v in part if key.split("|")[0] in ("sigma2", "tau00", "tau11")])
        for key, text, value in part:
            random_rows.setdefault(key, {"label": text})[f"b{k}"] = format_random_part(key, value, decimals)
    latent = _latent_mean_rows(models, names)
    order = list(records.values()) + latent + [random_rows[key] for key in _random_order(random_rows)]
    columns, spanners = [Column("label", "")], [("", 1)]
    ci = f"{round(level * 100):g}% CI"
    for k, model in enumerate(models):
        columns += [Column(f"b{k}", "b", "number", italic=True, decimals_from=f"se{k}"),
                    Column(f"lo{k}", ci, "number", upper=f"hi{k}", decimals_from=f"se{k}"),
                    Column(f"p{k}", "p", "p", italic=True)]
        name = f"Model {model.number}: {model.label}" + ("" if model.estimated else " (not estimable)")
        spanners.append((name, 3))
    keys = [c for k in range(len(models)) for c in (f"b{k}", f"se{k}", f"lo{k}", f"hi{k}", f"p{k}")]
    rows = pd.DataFrame(order, columns=["label", *keys]).astype({k: object for k in keys})
    rows = rows.where(rows.notna(), None)
    sections = {len(records): LATENT_MEAN_TITLE} if latent else {}
    if random_rows:
        sections[len(records) + len(latent)] = RANDOM_PART_TITLE
    return ApaTable(number, title, columns, rows, _joined_note(_comparison_note(models, ci), note),
                    spanners=spanners, sections=sections)


LATENT_MEAN_TITLE = "Latent therapist means (Lüdtke et al., 2008)"
LATENT_MEAN_LABELS = {"between": "between therapists (latent mean)", "within": "within therapists",
                      "contextual": "contextual effect (between \u2212 within)"}


def _latent_mean_rows(models: Sequence[ModelColumn], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows of the latent-mean slopes (``fit.json``'s ``latent_mean``) in the models' columns:
    between, within, contextual; none when no model has them."""
    rows = {key: {"label": f"{names.get('early_alliance', 'Early alliance')}, {text}"}
            for key, text in LATENT_MEAN_LABELS.items()}
    found = False
    for k, model in enumerate(models):
        record = model.info.get("latent_mean") if model.estimated else None
        if not record or record.get("status"):
            continue
        found = True
        for key in LATENT_MEAN_LABELS:
            r = record[key]
            rows[key].update({f"b{k}": r["estimate"], f"se{k}": r["se"], f"lo{k}": r["ci_low"],
                              f"hi{k}": r["ci_high"], f"p{k}": r["p"]})
    return list(rows.values()) if found else []


def _latent_mean_note(model: ModelColumn) -> str:
    """What the latent-mean rows of one model are: the model, its adjustment, N and df."""
    record = model.info["latent_mean"]
    if record.get("status"):
        return f"Model {model.number}: latent therapist means not estimable: {record.get('reason')}."
    covariates = record.get("covariates") or []
    adjusted = f", adjusted for {', '.join(covariates)} at both levels" if covariates else ""
    left = record.get("not_adjusted") or []
    left_text = (f" ({', '.join(left)} not included: a covariate randomised within therapists has no "
                 "between-therapist variance)") if left else ""
    df = record["between"]["df"]
    text = (f"Model {model.number}, latent therapist means: {record['outcome']} on {record['predictor']} at the "
            f"within- and between-therapist level of a two-level model with the therapist mean of "
            f"{record['predictor']} latent, by ML (Lüdtke et al., 2008){adjusted}{left_text}; N = "
            f"{record['n_clients']} clients, {record['n_therapists']} therapists; SEs from the observed information; "
            f"CI and p of the between and contextual rows from t with {df:g} df (therapists \u2212 between-level "
            f"predictors \u2212 1), of the within row normal.")
    zero = [w for w in record.get("warnings") or [] if "estimated at 0" in w]
    if zero:
        text += " The between-therapist residual variance of the outcome was estimated at 0."
    return text


def _random_order(rows: Mapping[str, Any]) -> list[str]:
    """sjPlot's order: σ², τ00, τ11, ρ01, ICC, N, observations, R², AIC, BIC."""
    rank = {name: i for i, name in enumerate(RANDOM_PART_FORMATS)}
    return sorted(rows, key=lambda key: rank[key.split("|")[0]])


def _comparison_note(models: Sequence[ModelColumn], ci: str) -> str:
    """The table's note: the symbols, how AIC/BIC were obtained, each model's formula, then
    singular fits, df bounds, the outcome's unconditional therapist ICC and models that could
    not be estimated, each said once for the models it concerns."""
    fitted = [m for m in models if m.estimated]
    parts = ["b = unstandardised estimate; CI = confidence interval; p = two-sided p value, with Satterthwaite "
             "degrees of freedom (Kuznetsova et al., 2017); b and CI are shown to the decimals two significant digits "
             "of the row's standard error need. Random part: \u03c3\u00b2 = residual variance; \u03c400 = random-intercept variance; "
             "\u03c411 = random-slope variance; \u03c101 = intercept\u2013slope correlation; ICC = adjusted intraclass "
             "correlation (random-effect over random plus residual variance); N = grouping units; R\u00b2 after "
             "Nakagawa and Schielzeth (2013) and Nakagawa et al. (2017)."]
    reml = [m for m in fitted if m.info.get("reml")]
    if reml:
        which = "All models were" if len(reml) == len(fitted) else f"{_models_text(reml)} {'was' if len(reml) == 1 else 'were'}"
        parts.append(f"{which} estimated by REML.")
    with_ml = [m for m in fitted if _has_ml_criteria(m.info)]
    if with_ml:
        source = ("maximum-likelihood (ML) refits of the REML models (lme4's refitML)" if reml
                  else "the maximum-likelihood (ML) fits")
        parts.append(f"AIC and BIC are from {source}, so they may compare models with different fixed effects "
                     "fitted to the same observations.")
    without = [m for m in fitted if not _has_ml_criteria(m.info)]
    if without:
        parts.append(f"No AIC or BIC for {_models_text(without)}: no ML fit was available.")
    if fitted:
        parts.append("Formulas (lme4 notation): " + "; ".join(
            f"Model {m.number}, {' '.join(str(m.info.get('formula')).split())}" for m in fitted) + ".")
    singular: dict[str, list[ModelColumn]] = {}
    for m in fitted:
        zero = [f"{r.group} {'intercept' if r.term1 == '(Intercept)' else r.term1}" for r in m.random.itertuples()
                if r.group != "Residual" and _is_missing(r.term2) and float(r.variance) <= 0]
        what = ", ".join(zero) if zero else ("a random-effect correlation at \u00b11" if m.info.get("singular") else "")
        if what:
            singular.setdefault(what, []).append(m)
    for what, members in singular.items():
        variance = "correlation" not in what
        parts.append(f"Singular fit ({_models_text(members)}): the {what} " + (
            "variance was estimated at 0 (the boundary of the parameter space), which is not evidence of no such "
            "variation in the population." if variance else "was estimated."))
    unconverged = [m for m in fitted if m.info.get("converged") is False]
    if unconverged:
        parts.append(f"The optimiser did not report convergence for {_models_text(unconverged)}.")
    parts += [f"Model {m.number}: the {n[0].lower()}{n[1:]}." for m in fitted for n in m.info.get("df_notes") or []]
    iccs = [(m, m.info["therapist_icc"]) for m in fitted if m.info.get("therapist_icc")]
    if iccs:
        first = iccs[0][1]
        parts.append(f"Unconditional therapist ICC of the outcome [{round(100 * first['level']):g}% CI]: " + "; ".join(
            f"Model {m.number}, {_percent(i['icc'])} [{_percent(i['ci_low'])}, {_percent(i['ci_high'])}]"
            for m, i in iccs) + ".")
    parts += [_latent_mean_note(m) for m in fitted if m.info.get("latent_mean")]
    parts += [f"Model {m.number}: Not estimable: {m.info.get('reason')}." for m in models if not m.estimated]
    return " ".join(parts)


def _models_text(models: Sequence[ModelColumn]) -> str:
    numbers = [str(m.number) for m in models]
    if len(numbers) == 1:
        return f"Model {numbers[0]}"
    return f"Models {', '.join(numbers[:-1])} and {numbers[-1]}"


EN_DASH = "\u2013"
#: Multilevel omega columns of :func:`alliance.scoring.psychometrics.internal_consistency`,
#: each with its cluster-bootstrap interval: (estimate, lower, upper, spanner).
MULTILEVEL_OMEGA = (("omega_within", "omega_within_ci_low", "omega_within_ci_high", "Within clients"),
                    ("omega_between", "omega_between_ci_low", "omega_between_ci_high", "Between clients"))
#: ``ci_method`` values as the note names them, with the method's reference.
CI_METHODS = {"Feldt": "Feldt (1965)",
              "cluster bootstrap over clients (percentile)": "cluster bootstrap over clients (percentile{replicates};"
                                                             " Field & Welsh, 2007)",
              "none (no bootstrap replicates)": "not computed (scoring: reliability_bootstrap is 0)"}


def reliability_table(consistency: pd.DataFrame, number: int = 3, title: str = "Internal Consistency",
                      labels: Mapping[str, str] | None = None, decimals: int = 2,
                      note: str | None = None, level: float = 0.95) -> ApaTable:
    """APA table of internal consistency per instrument, scale and respondent.

    Single-level alpha with its CI, omega total and (where a scale's key declares
    subscales) omega hierarchical; then, where clients gave several administrations, omega
    within and between clients with their intervals, under column groups. A multilevel cell
    that was not estimated shows an en dash and the note says why.

    Parameters
    ----------
    consistency : DataFrame
        :func:`alliance.scoring.psychometrics.internal_consistency`: ``instrument``, ``scale``,
        ``respondent``, ``n``, ``k``, ``alpha``, ``ci_low``, ``ci_high``, ``omega_total``
        (and ``session``, ``omega_hierarchical`` and the :data:`MULTILEVEL_OMEGA` columns,
        shown when they hold a value; ``ci_method``, ``n_boot`` and ``n_clients`` for the note).
    labels : mapping, optional
        Display names of instruments, scales and respondents.

    Notes
    -----
    Cronbach's alpha with the interval ``ci_method`` names (Feldt, 1965, where each client
    gave one administration; else a percentile cluster bootstrap over clients); omega total
    and hierarchical (McDonald, 1999; Zinbarg et al., 2005); omega within and between from a
    two-level one-factor model (Geldhof, Preacher & Zyphur, 2014). The table only presents
    them: the numbers are computed and tested (against lavaan) upstream.
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
    if _shown(rows, "session"):
        columns.append(Column("session", "Session", "integer"))
    columns += [Column("n", "n", "integer", italic=True), Column("k", "k", "integer", italic=True)]
    single = [Column("alpha", "\u03b1", "bounded", decimals),
              Column("ci_low", ci, "bounded", decimals, upper="ci_high"),
              Column("omega_total", "\u03c9", "bounded", decimals)]
    hierarchical = _shown(rows, "omega_hierarchical")
    if hierarchical:
        # blank, not a dash: a scale without declared subscales has no omega hierarchical to estimate
        rows["omega_hierarchical"] = rows["omega_hierarchical"].astype(object).where(
            rows["omega_hierarchical"].notna(), "")
        single.append(Column("omega_hierarchical", "\u03c9h", "bounded", decimals))
    multilevel = [m for m in MULTILEVEL_OMEGA if all(c in rows.columns for c in m[:3]) and _shown(rows, m[0])]
    spanners: list[tuple[str, int]] = []
    if multilevel:
        spanners = [("", len(columns)), ("Single level", len(single))] + [(m[3], 2) for m in multilevel]
    columns += single
    for estimate, low, high, _ in multilevel:
        columns += [Column(estimate, "\u03c9", "bounded", decimals), Column(low, ci, "bounded", decimals, upper=high)]
    standard = _reliability_note(rows, ci, hierarchical=hierarchical,
                                 multilevel=[m[0] for m in multilevel])
    return ApaTable(number, title, columns, rows, _joined_note(standard, note),
                    missing=EN_DASH if multilevel else "", spanners=spanners)


def _shown(rows: pd.DataFrame, column: str) -> bool:
    return column in rows.columns and bool(rows[column].notna().any())


def _reliability_note(rows: pd.DataFrame, ci: str, hierarchical: bool, multilevel: Sequence[str]) -> str:
    """The reliability table's note: symbols, CI methods as ``ci_method`` names them, and why a
    multilevel cell is empty."""
    parts = ["n = complete administrations; k = items; \u03b1 = Cronbach's alpha; \u03c9 = McDonald's omega total"
             " from a one-factor model (a bifactor model of the declared subscales for a scale that has them)"
             + (", \u03c9h = omega hierarchical of that bifactor model (the general factor's share of the"
                " total score's variance; Zinbarg et al., 2005; blank for a scale without subscales)." if hierarchical
                else ".")]
    if multilevel:
        parts.append("Single-level values treat every administration alike; \u03c9 within and between clients come"
                     " from a two-level one-factor model and give the reliability of a client's changes from"
                     " session to session and of the differences between clients' mean levels (Geldhof, Preacher"
                     " & Zyphur, 2014).")
    parts.append(_ci_sentence(rows, ci, multilevel))
    if multilevel:
        parts.append(_not_estimated_sentence(rows, multilevel))
    return " ".join(p for p in parts if p)


def _ci_sentence(rows: pd.DataFrame, ci: str, multilevel: Sequence[str]) -> str:
    if "ci_method" not in rows.columns or not rows["ci_method"].notna().any():
        return f"{ci}s of \u03b1 as given in the results."
    methods = []
    for method in dict.fromkeys(rows["ci_method"].dropna()):
        chosen = rows[rows["ci_method"].eq(method)]
        text = CI_METHODS.get(method, method)
        if "{replicates}" in text:
            boots = chosen["n_boot"].dropna().astype(int) if "n_boot" in chosen.columns else pd.Series(dtype=int)
            span = "" if boots.empty else (f"{boots.min():,}" if boots.min() == boots.max()
                                           else f"{boots.min():,}{EN_DASH}{boots.max():,}")
            text = text.format(replicates=f", {span} replicates" if span else "")
        repeat = (not {"n", "n_clients"} <= set(chosen.columns)
                  or bool((chosen["n_clients"] < chosen["n"]).all()))
        if len(rows["ci_method"].dropna().unique()) > 1:
            text += (" where clients gave several administrations" if repeat
                     else " where each client gave one administration")
        methods.append(text)
    subject = "\u03b1" + (" and of \u03c9 within and between clients" if multilevel else "")
    return f"{ci}s of {subject}: " + "; ".join(methods) + "."


def _not_estimated_sentence(rows: pd.DataFrame, multilevel: Sequence[str]) -> str:
    empty = rows[multilevel].isna().all(axis=1) & rows["alpha"].notna()
    if not empty.any():
        return ""
    reasons = []
    if "n_clients" in rows.columns:
        once = empty & rows["n_clients"].ge(rows["n"])
        if once.any():
            reasons.append("each client gave one administration, so no variance lies within clients")
        if (empty & ~once).any():
            reasons.append("fewer clients than items + 1, or fewer repeated administrations (n minus clients)"
                           " than items + 1, for the two-level model")
    else:
        reasons.append("the two-level model was not estimated")
    return f"{EN_DASH} = not estimated: " + "; or ".join(reasons) + "."


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
    from scipy import stats  # here: the report's page jobs only format numbers

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
