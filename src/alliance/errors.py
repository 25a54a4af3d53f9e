"""Errors that tell the user which file, row, column and value went wrong."""

from __future__ import annotations

from dataclasses import dataclass


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
        shown = self.value.item() if hasattr(self.value, "item") and hasattr(self.value, "dtype") else self.value
        value = "" if shown is None else f": value {shown!r}"
        return f"{', '.join(where)}{value}; expected {self.expected}"


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
