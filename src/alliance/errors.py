"""Errors that tell the user which file, row, column and value went wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file.

    ``row`` counts as a spreadsheet or text editor does: the header is row 1, the first data
    row is row 2. ``None`` means the problem concerns the whole column or file.
    """

    file: str
    row: int | None
    column: str | None
    value: object
    expected: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}{shown_value(self.value)}; expected {self.expected}"


class InputError(ValueError):
    """Raised when input data break the data contract; holds every problem found."""

    def __init__(self, problems: list[Problem], title: str = "Invalid input", limit: int = 50):
        self.problems = list(problems)
        lines = [f"{title}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more of the same kinds")
        super().__init__("\n".join(lines))


class ConfigError(ValueError):
    """Raised when the configuration breaks its schema; names every offending key."""


class IdentifierError(ValueError):
    """Raised by the de-identification gate when a file holds a direct identifier."""


def require_columns(data, columns, what: str) -> None:
    """Raise ValueError unless ``data`` is a DataFrame holding every one of ``columns``."""
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; it has {list(data.columns)}")


_SHORT_NUMBER = re.compile(r"^\s*[+-]?(?:\d{1,4}(?:\.\d{1,4})?|\.\d{1,4}|inf|infinity|nan)\s*$", re.IGNORECASE)


_NUMBER_TEXT = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")


def describe_value(value: object) -> str:
    """How a message may show a cell: a short number as itself, anything else by its shape.

    Messages and logs never print a text value, since it may identify someone (a name typed
    into an item column, an SSN used as an id). A single short number (an item value of ``9``,
    a session of ``-1``, ``inf``) is shown as it is; longer numbers (a date written as
    ``19870403``, a record number) and all text are described by length and character classes.
    """
    if value is None or (isinstance(value, float) and value != value):
        return "empty"
    if hasattr(value, "item") and hasattr(value, "dtype"):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e4:
            text = str(int(value))
        if _SHORT_NUMBER.match(text):
            return text
        if isinstance(value, float) and abs(value) >= 1:
            return f"a number of {len(str(int(abs(value))))} digits before the decimal point"
        return f"a number of {sum(ch.isdigit() for ch in text)} digits"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    text = str(value)
    if _SHORT_NUMBER.match(text):
        return text.strip()
    if _NUMBER_TEXT.match(text):  # '1e19', '19870403' typed as text: described as the number it is
        return describe_value(float(text))
    return shape_of(text)


def shown_value(value: object) -> str:
    """The part of a message that shows a cell: ``": value 9"`` or ``": value is a text of ..."``.

    Empty for ``None`` (a problem of a whole column or file). Never the text itself.
    """
    if value is None:
        return ""
    shown = describe_value(value)
    if _SHORT_NUMBER.match(shown) or shown in ("True", "False"):
        return f": value {shown}"
    if shown == "empty":
        return ": the cell is empty"
    article = "" if shown[0].isdigit() or shown.startswith("a ") else "a "
    return f": value is {article}{shown}"


def flagged_rows(data, mask, limit: int | None = None) -> list[int]:
    """The rows ``mask`` flags in a DataFrame or Series (the first ``limit``), as messages name
    them: by index label when the index holds integers (the workflow's tables count rows from
    0), else by position from 0, since a text or date label may be an id or a calendar date.
    Plain ``int`` values (``3``, not ``np.int64(3)``); take a row's value through ``mask``."""
    positions = np.flatnonzero(np.asarray(mask))[:limit]
    labels = data.index.to_numpy()[positions] if data.index.dtype.kind in "iu" else positions
    return [int(label) for label in labels]


def first_row(data, mask) -> int:
    """The first row ``mask`` flags, as :func:`flagged_rows` names it."""
    return flagged_rows(data, mask, 1)[0]


def shape_of(text: str) -> str:
    """A text's length and character classes, never its content: 'text of 7 characters (letters, space)'."""
    classes = []
    if any(ch.isalpha() for ch in text):
        classes.append("letters")
    if any(ch.isdigit() for ch in text):
        classes.append("digits")
    if any(ch.isspace() for ch in text):
        classes.append("spaces")
    if any(not (ch.isalnum() or ch.isspace()) for ch in text):
        classes.append("other characters")
    kinds = ", ".join(classes) if classes else "nothing visible"
    return f"text of {len(text)} character{'s' if len(text) != 1 else ''} ({kinds})"
