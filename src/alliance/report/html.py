"""Result tables as HTML pages a reader can read in the report (no download needed).

Every CSV, JSON and Markdown result the report carries gets a sibling HTML page: the table
with readable column headers and numbers rounded for reading, and a note that the result file
itself (still in the report, as a download) holds full precision. Large data files get a page
that says what the file holds, its size, rows and columns and where it lies, without any of
its rows.

Rounding: an estimate, its confidence limits and its standard error are shown to the decimals
that give the SE two significant digits (at least 2; :func:`alliance.report.tables
.significant_decimals`); p values as APA (``.032``, ``< .001``; :func:`alliance.report.tables
.format_p`); whole numbers as integers with thousands separators; other numbers to 3 decimals
(small ones to 2 significant digits). Minus signs are true minus signs (U+2212).

Every function here is pure (data in, a UTF-8 HTML string out, the same bytes for the same
input); no page holds JavaScript.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alliance.report.tables import MINUS, format_integer, format_number, format_p, significant_decimals

__all__ = [
    "MISSING",
    "readable_column",
    "format_value",
    "format_column",
    "table_html",
    "html_page",
    "table_page",
    "record_page",
    "data_file_page",
    "markdown_page",
    "human_size",
]

#: how a missing or not-applicable value is shown
MISSING = "\u2014"

#: words of column names shown otherwise than capitalised
_WORDS = {
    "n": "N", "ci": "CI", "se": "SE", "sd": "SD", "icc": "ICC", "aic": "AIC", "bic": "BIC", "df": "df",
    "rci": "RCI", "mc": "MC", "id": "ID", "r2": "R²", "loa": "LoA", "reml": "REML", "ml": "ML",
    "low": "lower", "high": "upper", "std": "standardised", "diff": "difference", "abs": "absolute",
    "var": "variance", "pct": "%", "nobs": "observations", "ngroups": "groups", "loglik": "log-likelihood",
}
#: whole column names with their own label (statistical symbols are shown in italics)
_NAMES = {
    "p": "p", "t": "t", "df": "df", "f": "F", "r": "r", "b": "b", "n": "n", "k": "k", "z": "z",
    "se": "SE", "sd": "SD", "estimate": "Estimate", "std_estimate": "Standardised estimate",
    "ci_low": "CI lower", "ci_high": "CI upper", "df1": "df1", "df2": "df2",
}
_ITALIC = {"p", "t", "df", "F", "r", "b", "n", "k", "z", "df1", "df2"}
#: first words whose case is kept (statistical symbols)
_KEEP_CASE = {"df", "b", "r", "t", "p", "n", "k", "z"}
#: columns shown to the decimals of the row's standard error
_SE_FAMILY = {"estimate", "ci_low", "ci_high", "se", "b", "b_ci_low", "b_ci_high", "std_error"}

_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 14px; color: #1a1a1a;
       margin: 1.5em; max-width: 80em; line-height: 1.4; }
h1 { font-size: 1.3em; margin: 0 0 .4em 0; }
p.lead { margin: 0 0 1em 0; }
table { border-collapse: collapse; margin: .5em 0 1em 0; }
caption { text-align: left; font-weight: bold; padding-bottom: .3em; }
th, td { padding: 3px 9px; vertical-align: top; }
thead th { border-top: 2px solid #333; border-bottom: 1px solid #333; text-align: left;
           background: #fff; position: sticky; top: 0; }
tbody tr:last-child td, tbody tr:last-child th { border-bottom: 2px solid #333; }
tbody tr:nth-child(even) { background: #f4f6f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.key { text-align: left; font-weight: normal; }
span.col { display: block; font-weight: normal; font-family: monospace; font-size: .8em; color: #666; }
p.note { font-size: .9em; color: #333; }
code { font-size: .95em; }
""".strip()


# --------------------------------------------------------------------------- labels


def readable_column(name: Any) -> str:
    """A column name as a reader reads it: ``n_targets`` -> ``N targets``, ``ci_low`` -> ``CI lower``."""
    name = str(name)
    key = name.lower()
    if key in _NAMES:
        return _NAMES[key]
    words = [w for w in re.split(r"[_\s]+", name) if w]
    if not words:
        return name
    shown = [_WORDS.get(w.lower(), w) for w in words]
    first = shown[0]
    if first not in _KEEP_CASE and first[:1].islower():
        shown[0] = first[:1].upper() + first[1:]
    return " ".join(shown)


def _header_cell(name: Any) -> str:
    label = readable_column(name)
    text = f"<em>{html.escape(label)}</em>" if label in _ITALIC else html.escape(label)
    return f'<th scope="col">{text}<span class="col">{html.escape(str(name))}</span></th>'


# --------------------------------------------------------------------------- numbers


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _is_p(name: str) -> bool:
    key = name.lower()
    return key in {"p", "p_value", "pvalue"} or key.startswith("p_") or key.endswith("_p")


def _generic_number(x: float) -> str:
    """3 decimals; a small non-zero value to 2 significant digits; whole numbers as integers."""
    if not math.isfinite(x):
        return format_number(x)
    if x == int(x) and abs(x) < 1e15:
        return format_integer(x)
    if abs(x) < 0.0005:
        decimals = significant_decimals(x, 2, maximum=12)
        if decimals >= 12:
            mantissa, exponent = f"{x:.1e}".split("e")
            return f"{mantissa.replace('-', MINUS)} × 10^{int(exponent)}".replace("-", MINUS)
        return format_number(x, decimals)
    return format_number(x, 3)


def format_value(value: Any, name: str = "", decimals: int | None = None) -> str:
    """One cell as text: p as APA, booleans as yes/no, numbers rounded for reading.

    ``decimals`` (from the row's standard error) overrides the generic rounding of a number.
    """
    if _is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real):
        x = float(value)
        if _is_p(name) and 0.0 <= x <= 1.0:
            return format_p(x)
        if decimals is not None and math.isfinite(x):
            return format_number(x, decimals)
        return _generic_number(x)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value) if value else MISSING
    text = str(value)
    return text if text else MISSING


def _se_decimals(frame: pd.DataFrame) -> pd.Series | None:
    """Per row, the decimals that give the SE two significant digits (at least 2), or None."""
    for column in ("se", "std_error"):
        if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column]):
            se = pd.to_numeric(frame[column], errors="coerce")
            return se.map(lambda s: max(2, significant_decimals(s, 2)) if pd.notna(s) and s > 0 else None)
    return None


def _bool_column(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series):  # holds no bool objects
        return False
    values = series.dropna()
    # stops at the first value that is not a bool (a national study's id column: millions)
    return len(values) > 0 and all(isinstance(v, (bool, np.bool_)) for v in values)


def format_column(frame: pd.DataFrame, name: str) -> list[str]:
    """The cells of column ``name`` as text (see :func:`format_value`)."""
    series = frame[name]
    decimals = _se_decimals(frame) if name.lower() in _SE_FAMILY else None
    if _bool_column(series):
        return [format_value(bool(v) if not _is_missing(v) else v) for v in series]
    return [format_value(v, name, None if decimals is None or pd.isna(d := decimals.iloc[i]) else int(d))
            for i, v in enumerate(series)]


def _numeric(frame: pd.DataFrame, name: str) -> bool:
    series = frame[name]
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


# --------------------------------------------------------------------------- tables and pages


def table_html(frame: pd.DataFrame, caption: str | None = None) -> str:
    """``frame`` as an HTML ``<table>``: readable headers (the file's column name below each),
    rounded numbers right-aligned."""
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    cells = {c: format_column(frame, c) for c in columns}
    numeric = {c: _numeric(frame, c) for c in columns}
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(_header_cell(c) for c in columns) + "</tr></thead>")
    parts.append("<tbody>")
    for i in range(len(frame)):
        row = "".join(f'<td class="num">{html.escape(cells[c][i])}</td>' if numeric[c]
                      else f"<td>{html.escape(cells[c][i])}</td>" for c in columns)
        parts.append(f"<tr>{row}</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def html_page(title: str, body: str, description: str | None = None) -> str:
    """A standalone UTF-8 page (inline CSS, no script) around ``body`` (already HTML)."""
    lead = f'<p class="lead">{html.escape(description)}</p>\n' if description else ""
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{lead}{body}\n</body>\n</html>\n")


def _precision_note(source: str) -> str:
    return (f'<p class="note"><em>Note.</em> Numbers are rounded for reading (estimates to the '
            f"precision of their standard error, <em>p</em> as APA, others to 3 decimals); "
            f"<code>{html.escape(source)}</code> (beside this page in the report, and in the results "
            f"folder) holds them at full precision. {MISSING}: missing or not applicable.</p>")


def table_page(frame: pd.DataFrame, title: str, source: str, description: str | None = None) -> str:
    """A page with ``frame`` as a readable table and the full-precision note naming ``source``."""
    if frame.empty and len(frame.columns) == 0:
        body = "<p>The table has no rows.</p>"
    else:
        body = table_html(frame)
        if frame.empty:
            body += "\n<p>The table has no rows.</p>"
    return html_page(title, body + "\n" + _precision_note(source), description)


def _uniform_records(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0 and all(isinstance(v, Mapping) for v in value)
            and all(not isinstance(x, (Mapping, list)) or (isinstance(x, list) and not any(
                isinstance(y, (Mapping, list)) for y in x)) for v in value for x in v.values()))


def _record_rows(data: Mapping[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(key path, cell HTML) of every leaf; a list of flat records becomes a nested table."""
    rows = []
    for key, value in data.items():
        here = path + (str(key),)
        if isinstance(value, Mapping) and value:
            rows.extend(_record_rows(value, here))
        elif _uniform_records(value):
            frame = pd.DataFrame([{k: (", ".join(map(str, v)) if isinstance(v, list) else v)
                                   for k, v in record.items()} for record in value])
            rows.append((here, table_html(frame)))
        elif isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value):
            for i, item in enumerate(value, start=1):
                if isinstance(item, Mapping):
                    rows.extend(_record_rows(item, here + (str(i),)))
                else:
                    rows.append((here + (str(i),), html.escape(format_value(item, str(key)))))
        else:
            shown = MISSING if isinstance(value, Mapping) else format_value(value, str(key))
            rows.append((here, html.escape(shown)))
    return rows


def record_page(data: Mapping[str, Any], title: str, source: str, description: str | None = None) -> str:
    """A JSON object as a key–value table (nested keys joined by ›, lists of records as tables)."""
    lines = ['<table>', '<thead><tr><th scope="col">Entry</th><th scope="col">Value</th></tr></thead>', "<tbody>"]
    for path, cell in _record_rows(data):
        label = " › ".join(readable_column(p) for p in path)
        key = ".".join(path)
        lines.append(f'<tr><th class="key" scope="row">{html.escape(label)}<span class="col">'
                     f"{html.escape(key)}</span></th><td>{cell}</td></tr>")
    lines.append("</tbody></table>")
    return html_page(title, "\n".join(lines) + "\n" + _precision_note(source), description)


def human_size(size: int) -> str:
    """A file size in decimal units: ``2585023`` -> ``2.6 MB``."""
    size = int(size)
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:,} bytes"


def _dtype_name(series: pd.Series) -> str:
    if _bool_column(series):
        return "yes/no"
    if pd.api.types.is_integer_dtype(series):
        return "whole number"
    if pd.api.types.is_numeric_dtype(series):
        values = series.dropna()
        return "whole number" if len(values) and (values == values.round()).all() else "number"
    return "text"


def data_file_page(frame: pd.DataFrame, title: str, source: str, size: int,
                   description: str | None = None, column_notes: Mapping[str, str] | None = None,
                   others: Sequence[str] = ()) -> str:
    """A page about a large data file, without any of its rows: what it holds, its size, rows
    and columns, where it lies, and a dictionary of its columns (type, non-missing values)."""
    notes = column_notes or {}
    facts = pd.DataFrame({"entry": ["File", "Size", "Rows", "Columns"],
                          "value": [source, human_size(size), format_integer(len(frame)),
                                    format_integer(len(frame.columns))]})
    facts_rows = "".join(f'<tr><th class="key" scope="row">{html.escape(e)}</th><td>{html.escape(v)}</td></tr>'
                         for e, v in zip(facts["entry"], facts["value"]))
    dictionary = ["<table>", "<caption>Columns</caption>",
                  '<thead><tr><th scope="col">Column</th><th scope="col">Type</th>'
                  '<th scope="col">Non-missing values</th><th scope="col">What it holds</th></tr></thead>', "<tbody>"]
    for name in frame.columns:
        series = frame[name]
        dictionary.append(f"<tr><td><code>{html.escape(str(name))}</code></td><td>{_dtype_name(series)}</td>"
                          f'<td class="num">{format_integer(int(series.notna().sum()))}</td>'
                          f"<td>{html.escape(notes.get(str(name), ''))}</td></tr>")
    dictionary.append("</tbody></table>")
    where = (f"<p>The file is not embedded in this report because of its size: open "
             f"<code>{html.escape(source)}</code> in the run's folder")
    where += (" (also as " + ", ".join(f"<code>{html.escape(o)}</code>" for o in others) + ")") if others else ""
    where += ". This page shows none of its rows.</p>"
    body = f"{where}\n<table><tbody>{facts_rows}</tbody></table>\n" + "\n".join(dictionary)
    return html_page(title, body, description)


# --------------------------------------------------------------------------- Markdown


def _inline(text: str) -> str:
    """Escaped text with Markdown's ``code``, **bold** and *italics*."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        part = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", part)
        out.append(part)
    return "".join(out)


def _pipe_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_page(text: str, title: str, source: str) -> str:
    """A Markdown result (headings, paragraphs, lists, pipe tables) as a page; its numbers are
    shown as the file has them."""
    blocks, body = re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()), []
    for block in blocks:
        lines = [ln for ln in block.split("\n") if not ln.strip().startswith("<!--")]
        if not lines:
            continue
        if all(ln.strip().startswith("|") for ln in lines) and len(lines) >= 2:
            header, rows = _pipe_cells(lines[0]), [_pipe_cells(ln) for ln in lines[2:]]
            body.append("<table><thead><tr>" + "".join(f'<th scope="col">{_inline(c)}</th>' for c in header)
                        + "</tr></thead><tbody>" + "".join(
                            "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</tbody></table>")
        elif lines[0].startswith("#"):
            level = min(6, len(lines[0]) - len(lines[0].lstrip("#")) + 1)
            body.append(f"<h{level}>{_inline(lines[0].lstrip('#').strip())}</h{level}>")
            rest = "\n".join(lines[1:]).strip()
            if rest:
                body.append(f"<p>{_inline(rest)}</p>")
        elif all(ln.lstrip().startswith(("- ", "* ")) for ln in lines):
            body.append("<ul>" + "".join(f"<li>{_inline(ln.lstrip()[2:])}</li>" for ln in lines) + "</ul>")
        else:
            body.append(f"<p>{_inline(' '.join(ln.strip() for ln in lines))}</p>")
    note = (f'<p class="note"><em>Note.</em> The text of <code>{html.escape(source)}</code> '
            "(beside this page in the report, and in the results folder).</p>")
    return html_page(title, "\n".join(body) + "\n" + note)
