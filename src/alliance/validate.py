"""Validation of study tables against the data contract (docs/data_contract.md).

Column checks run through pandera in lazy mode, so that every problem in every table is found
in one pass; study-wide checks (duplicated administrations, ids that differ only in case)
follow. All problems are raised together as one :class:`~alliance.errors.InputError` naming
file, row, column, value and what was expected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from alliance.deid import normalise_ids
from alliance.errors import InputError, Problem

log = logging.getLogger(__name__)

ROLES = ("client_id", "therapist_id", "session", "days_since_intake", "respondent", "rater_id")
RESPONDENTS = ("client", "therapist", "observer")


@dataclass
class Validated:
    """What validation learned about a study, besides its problems."""

    notes: list[str] = field(default_factory=list)
    therapist_switches: pd.DataFrame | None = None


def column_map(table_config: dict) -> dict[str, str]:
    """Role -> column name in the file, for the roles a table provides."""
    mapped = dict(table_config.get("columns", {}))
    for role in ("client_id", "therapist_id", "session", "days_since_intake", "rater_id"):
        mapped.setdefault(role, role)
    return mapped


def item_columns(entry: dict, n_items: int) -> list[str]:
    """The file's column names of an instrument's items 1..n_items."""
    items = entry["items"]
    if isinstance(items, str):
        return [items.format(n=n) for n in range(1, n_items + 1)]
    if len(items) != n_items:
        raise ValueError(f"instrument lists {len(items)} item columns, its key has {n_items} items")
    return list(items)


def _numeric(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype(float)


def _positive_integer(values: pd.Series) -> pd.Series:
    x = _numeric(values)
    return (x >= 1) & (x == np.floor(x))


def _nonnegative_integer_or_missing(values: pd.Series) -> pd.Series:
    x = _numeric(values)
    return values.isna() | ((x >= 0) & (x == np.floor(x)))


def _in_range_or_missing(lo: float, hi: float, whole: bool = False):
    def check(values: pd.Series) -> pd.Series:
        x = _numeric(values)
        ok = (x >= lo) & (x <= hi)
        if whole:
            ok &= x == np.floor(x)
        return values.isna() | ok

    return check


def _not_blank(values: pd.Series) -> pd.Series:
    """An id of only spaces is as empty as a missing one."""
    if pd.api.types.is_numeric_dtype(values):
        return values.notna()
    return values.isna() | (values.astype("string").str.strip() != "")


def table_schema(table: str, table_config: dict, items: dict[str, tuple[list[str], float, float]]) -> pa.DataFrameSchema:
    """The pandera schema of one administration table.

    ``items`` maps an instrument entry to its item columns and response range.
    """
    cols = column_map(table_config)
    observer = table_config.get("respondent") == "observer"
    columns = {
        cols["client_id"]: pa.Column(None, nullable=False, required=True, checks=[_blank_check()],
                                     description="client id (a value in every row)"),
        cols["therapist_id"]: pa.Column(None, nullable=False, required=True, checks=[_blank_check()],
                                        description="therapist id (every client needs a therapist)"),
        cols["session"]: pa.Column(None, nullable=False, required=True, checks=[
            pa.Check(_positive_integer, error="a whole session number of 1 or more")]),
        cols["days_since_intake"]: pa.Column(None, nullable=True, required=False, checks=[
            pa.Check(_nonnegative_integer_or_missing, error="whole days since intake, 0 or more (never a date)")]),
    }
    if "respondent" in table_config.get("columns", {}):
        columns[cols["respondent"]] = pa.Column(None, nullable=False, checks=[
            pa.Check.isin(RESPONDENTS, error=f"one of {', '.join(RESPONDENTS)}")])
    if observer:
        columns[cols["rater_id"]] = pa.Column(None, nullable=False, required=True, checks=[_blank_check()],
                                              description="rater id for observer ratings")
    for entry, (names, lo, hi, whole) in items.items():
        rule = f"a {'whole ' if whole else ''}number from {lo:g} to {hi:g} ({entry}) or empty"
        for name in names:
            columns[name] = pa.Column(None, nullable=True, required=True,
                                      checks=[pa.Check(_in_range_or_missing(lo, hi, whole), error=rule)])
    return pa.DataFrameSchema(columns, name=table)


def _blank_check() -> pa.Check:
    return pa.Check(_not_blank, error="not_nullable")


def _expected(row: pd.Series, schema: pa.DataFrameSchema) -> str:
    check = str(row["check"])
    column = row["column"]
    if check == "not_nullable":
        col = schema.columns.get(column)
        what = col.description if col is not None and col.description else "a value"
        return f"{what}; the cell is empty"
    if check == "column_in_dataframe":
        return "this column in the file (see the table's columns: mapping in the config)"
    if check.startswith("isin"):
        return f"one of {', '.join(RESPONDENTS)}"
    return check


def schema_problems(frame: pd.DataFrame, schema: pa.DataFrameSchema, file: str) -> list[Problem]:
    """Every failure of ``schema`` on ``frame`` as a Problem, in row order."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return []
    problems = []
    for _, case in cases.iterrows():
        index = case["index"]
        row = None if index is None or pd.isna(index) else int(index) + 2
        if str(case["check"]) == "column_in_dataframe":
            problems.append(Problem(file, None, str(case["failure_case"]), None, _expected(case, schema)))
            continue
        value = None if row is None else frame.iloc[row - 2][case["column"]]
        value = None if value is None or (isinstance(value, float) and np.isnan(value)) else value
        problems.append(Problem(file, row, str(case["column"]), value, _expected(case, schema)))
    problems.sort(key=lambda p: (p.row or 0, p.column or ""))
    return problems


def duplicate_problems(frame: pd.DataFrame, keys: list[str], file: str) -> list[Problem]:
    """Rows that repeat an administration (same client, session, respondent and rater)."""
    if any(k not in frame.columns for k in keys):
        return []  # the missing column is reported already; a partial key finds false duplicates
    present = list(keys)
    key = frame[present].astype("string").apply(lambda s: s.str.strip())
    group = key.fillna("").groupby(present, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(key))).groupby(group).transform("min").to_numpy()
    problems = []
    for pos in np.flatnonzero(first != np.arange(len(key))):
        values = ", ".join(f"{k}={key.iloc[pos][k]}" for k in present)
        problems.append(Problem(file, int(pos) + 2, None, values,
                                f"one administration per client, session and respondent; "
                                f"row {first[pos] + 2} has the same"))
    return problems


def ambiguous_id_problems(ids: dict[str, pd.Series], role: str) -> list[Problem]:
    """Ids that differ only in upper/lower case: refused, since they may be one person or two."""
    normalised = pd.concat([normalise_ids(s) for s in ids.values()]).dropna().unique()
    folded = pd.Series(normalised).str.casefold()
    groups = pd.Series(normalised).groupby(folded.to_numpy()).unique()
    problems = []
    for variants in groups[groups.map(len) > 1]:
        problems.append(Problem("(all tables)", None, role, " / ".join(sorted(map(str, variants))),
                                "ids that differ by more than upper/lower case (correct the export)"))
    return problems


def therapist_switches(frames: dict[str, pd.DataFrame], configs: dict[str, dict]) -> pd.DataFrame:
    """Clients seen by more than one therapist: raw client id, therapists in session order."""
    parts = []
    for name, frame in frames.items():
        cols = column_map(configs[name])
        part = pd.DataFrame({
            "client_id": normalise_ids(frame[cols["client_id"]]),
            "therapist_id": normalise_ids(frame[cols["therapist_id"]]),
            "session": _numeric(frame[cols["session"]]),
        })
        parts.append(part)
    both = pd.concat(parts).dropna()
    n = both.groupby("client_id")["therapist_id"].nunique()
    switched = n[n > 1].index
    rows = both[both["client_id"].isin(switched)].sort_values(["client_id", "session"])
    first = rows.groupby(["client_id", "therapist_id"], sort=False)["session"].min().reset_index()
    return first.rename(columns={"session": "first_session"}).sort_values(["client_id", "first_session"])


def validate_study(frames: dict[str, pd.DataFrame], config: dict, keys: dict, files: dict[str, str],
                   clients: pd.DataFrame | None = None, clients_file: str | None = None) -> Validated:
    """Validate every table of a study against the contract; raise InputError with all problems.

    Parameters
    ----------
    frames : dict
        Table name -> DataFrame as read by :func:`alliance.io.read_table`.
    config : dict
        The validated config.
    keys : dict
        Instrument entry -> its instrument key (``n_items``, ``response_min``, ``response_max``).
    files : dict
        Table name -> file path, for messages.
    """
    problems: list[Problem] = []
    result = Validated()
    items_by_table: dict[str, dict] = {name: {} for name in frames}
    for entry, spec in config["instruments"].items():
        key = keys[entry]
        try:
            names = item_columns(spec, key.n_items)
        except ValueError as err:
            raise ValueError(f"instruments/{entry}/items: {err}") from None
        whole = bool(getattr(key, "integer_responses", False))
        items_by_table[spec["table"]][entry] = (names, key.response_min, key.response_max, whole)
    for name, frame in frames.items():
        tconf = config["tables"][name]
        schema = table_schema(name, tconf, items_by_table[name])
        problems += schema_problems(frame, schema, files[name])
        cols = column_map(tconf)
        dup_keys = [cols["client_id"], cols["session"]]
        if "respondent" in tconf.get("columns", {}):
            dup_keys.append(cols["respondent"])
        if tconf.get("respondent") == "observer" or "respondent" in tconf.get("columns", {}):
            dup_keys.append(cols["rater_id"])
        problems += duplicate_problems(frame, dup_keys, files[name])
        if cols["client_id"] not in frame.columns:
            continue  # reported by the schema
        spaced = frame[cols["client_id"]].astype("string").str.strip() != frame[cols["client_id"]].astype("string")
        if spaced.fillna(False).any():
            result.notes.append(f"{files[name]}: surrounding spaces removed from {int(spaced.sum())} client ids")
    for role in ("client_id", "therapist_id"):
        ids = {n: f[column_map(config["tables"][n])[role]] for n, f in frames.items()
               if column_map(config["tables"][n])[role] in f.columns}
        if ids:
            problems += ambiguous_id_problems(ids, role)
    if clients is not None:
        problems += client_table_problems(clients, config["clients"], clients_file or "clients")
    if problems:
        raise InputError(problems, "The study data break the data contract; nothing was written")
    result.therapist_switches = therapist_switches(frames, config["tables"])
    if len(result.therapist_switches):
        n = result.therapist_switches["client_id"].nunique()
        result.notes.append(f"{n} client(s) saw more than one therapist; each session keeps its own therapist "
                            "and client-level analyses use the first therapist (see therapist_switches.csv)")
    return result


def client_table_problems(clients: pd.DataFrame, conf: dict, file: str) -> list[Problem]:
    id_col = conf.get("client_id", "client_id")
    columns = {id_col: pa.Column(None, nullable=False, unique=True, required=True)}
    for cov in conf.get("covariates", []):
        columns[cov] = pa.Column(None, nullable=True, required=True)
    schema = pa.DataFrameSchema(columns, name="clients")
    problems = schema_problems(clients, schema, file)
    for p in problems:
        if p.column == id_col and p.expected == "field_uniqueness":
            object.__setattr__(p, "expected", "one row per client; this id repeats")
    return problems
