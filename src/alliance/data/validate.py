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

from alliance.errors import InputError, Problem
from alliance.data.ids import ambiguous_groups, difference, normalise_ids, suspicious

log = logging.getLogger(__name__)

ROLES = ("client_id", "therapist_id", "session", "days_since_intake", "respondent", "rater_id")
RESPONDENTS = ("client", "therapist", "observer")
MAX_SESSION = 10_000  # more sessions than any treatment has: a typo, a date or an overflow
MAX_DAYS = 36_500  # a hundred years since intake
MAX_LISTED_ROWS = 10


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


def _per_category(values: pd.Series, compute, missing) -> pd.Series:
    """``compute`` on a Categorical's distinct texts once, spread to the rows by their codes."""
    per_text = compute(pd.Series(np.asarray(values.cat.categories, dtype=object), dtype=object))
    table = np.append(np.asarray(per_text), missing)
    return pd.Series(table[values.cat.codes.to_numpy()], index=values.index, name=values.name)


def _numeric(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.CategoricalDtype):  # text read dictionary-encoded
        return _per_category(values, _numeric, np.nan).astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype(float)


def _positive_integer(values: pd.Series) -> pd.Series:
    x = _numeric(values)  # inf, 'Infinity' and 1e19 fail the upper bound, NaN every comparison
    return (x >= 1) & (x <= MAX_SESSION) & (x == np.floor(x))


def _nonnegative_integer_or_missing(values: pd.Series) -> pd.Series:
    x = _numeric(values)
    return values.isna() | ((x >= 0) & (x <= MAX_DAYS) & (x == np.floor(x)))


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
    if isinstance(values.dtype, pd.CategoricalDtype):
        return _per_category(values, _not_blank, True).astype(bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.notna()
    return values.isna() | (values.astype("string").str.strip() != "")


def table_schema(table: str, table_config: dict, items: dict[str, tuple[list[str], float, float]],
                 therapist_from_clients: bool = False) -> pa.DataFrameSchema:
    """The pandera schema of one administration table.

    ``items`` maps an instrument entry to its item columns and response range;
    ``therapist_from_clients``: the table has no therapist column, the client table names each
    client's therapist.
    """
    cols = column_map(table_config)
    observer = table_config.get("respondent") == "observer"
    columns = {
        cols["client_id"]: pa.Column(None, nullable=False, required=True, checks=[_blank_check()],
                                     description="client id (a value in every row)"),
        cols["therapist_id"]: pa.Column(None, nullable=False, required=True, checks=[_blank_check()],
                                        description="therapist id (every client needs a therapist)"),
        cols["session"]: pa.Column(None, nullable=False, required=True, checks=[
            pa.Check(_positive_integer, error=f"a whole session number from 1 to {MAX_SESSION:,}")]),
        cols["days_since_intake"]: pa.Column(None, nullable=True, required=False, checks=[
            pa.Check(_nonnegative_integer_or_missing,
                     error=f"whole days since intake, 0 to {MAX_DAYS:,} (never a date)")]),
    }
    if therapist_from_clients:
        del columns[cols["therapist_id"]]
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


CHUNK_ROWS = 250_000  # rows checked at a time: the checks' temporary columns stay this long


def schema_problems(frame: pd.DataFrame, schema: pa.DataFrameSchema, file: str,
                    chunk_rows: int = CHUNK_ROWS) -> list[Problem]:
    """Every failure of ``schema`` on ``frame`` as a Problem, in row order.

    The rows are checked ``chunk_rows`` at a time (with progress for a large table), so that
    memory does not grow with the file; a problem of a whole column is reported once. The
    problems are those of one check of the whole frame.
    """
    from alliance.logs import progress

    starts = range(0, max(len(frame), 1), chunk_rows)
    problems, whole_column = [], set()
    for start in progress(starts, desc=f"checking {file}", disable=len(starts) < 4):
        for problem in _chunk_problems(frame, frame.iloc[start:start + chunk_rows], schema, file):
            if problem.row is None:
                if problem in whole_column:
                    continue
                whole_column.add(problem)
            problems.append(problem)
    problems.sort(key=lambda p: (p.row or 0, p.column or ""))
    return problems


def _chunk_problems(frame: pd.DataFrame, chunk: pd.DataFrame, schema: pa.DataFrameSchema,
                    file: str) -> list[Problem]:
    """The failures of ``schema`` on ``chunk`` (rows of ``frame``, keeping its row labels)."""
    try:
        schema.validate(chunk, lazy=True, inplace=True)
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
    return problems


def duplicate_problems(frame: pd.DataFrame, keys: list[str], file: str) -> list[Problem]:
    """Rows that repeat an administration (same client, session, respondent and rater)."""
    if any(k not in frame.columns for k in keys):
        return []  # the missing column is reported already; a partial key finds false duplicates
    present = list(keys)
    key = frame[present].astype("string").apply(lambda s: s.str.strip())
    key[present[0]] = normalise_ids(frame[present[0]]).astype("string")  # 19 and 19.0 are one client
    group = key.fillna("").groupby(present, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(key))).groupby(group).transform("min").to_numpy()
    problems = []
    same = ", ".join(present)
    for pos in np.flatnonzero(first != np.arange(len(key))):
        # the ids are never shown (a name or an SSN may serve as id): the row numbers say enough
        problems.append(Problem(file, int(pos) + 2, None, None,
                                f"one administration per client, session and respondent; "
                                f"row {first[pos] + 2} has the same {same}"))
    return problems


def listed_rows(rows) -> str:
    """'rows 2, 5, 9' (at most MAX_LISTED_ROWS, then 'and N more')."""
    rows = sorted(int(r) for r in rows)
    shown = ", ".join(map(str, rows[:MAX_LISTED_ROWS]))
    more = f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def ambiguous_id_problems(ids: dict[str, tuple[str, pd.Series]], role: str) -> list[Problem]:
    """Ids that may be one person or two: refused, naming file, column and rows (never the ids).

    ``ids`` maps a file to (its id column, the column's values). Refused: ids that differ only by
    upper/lower case, leading zeros, invisible characters or look-alike letters of another script
    (:mod:`alliance.ids`), and single ids holding invisible characters or mixed scripts.
    """
    normalised = {file: (column, normalise_ids(values)) for file, (column, values) in ids.items()}
    groups = ambiguous_groups(pd.concat([v for _, v in normalised.values()], ignore_index=True))
    member = {v: k for k, variants in groups.items() for v in variants}
    problems = []
    for file, (column, values) in normalised.items():
        distinct = pd.unique(values.dropna())
        odd = {v: suspicious(v) for v in distinct if not (v.isascii() and v.isprintable())}
        for reason in sorted({r for r in odd.values() if r}):
            bad = [v for v, r in odd.items() if r == reason]
            rows = np.flatnonzero(values.isin(bad).to_numpy()) + 2
            problems.append(Problem(file, None, column, None,
                                    f"ids of visible characters of one script; {len(bad)} id(s) in "
                                    f"{listed_rows(rows)} hold {reason} (correct the export)"))
        hit = [v for v in distinct if v in member]
        for key in sorted({member[v] for v in hit}):
            variants = groups[key]
            rows = np.flatnonzero(values.isin(variants).to_numpy()) + 2
            problems.append(Problem(file, None, column, None,
                                    f"ids that differ by more than {difference(variants)}; "
                                    f"{len(variants)} ids of the study differ only so, in {listed_rows(rows)} "
                                    "here: one person or two? (correct the export)"))
    return problems


def therapist_switches(frames: dict[str, pd.DataFrame], configs: dict[str, dict],
                       client_therapists: pd.Series | None = None) -> pd.DataFrame:
    """Clients seen by more than one therapist: raw client id, therapists in session order."""
    parts = []
    for name, frame in frames.items():
        cols = column_map(configs[name])
        client = normalise_ids(frame[cols["client_id"]])
        part = pd.DataFrame({
            "client_id": client,
            "therapist_id": table_therapists(frame, cols, client, client_therapists),
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
        Table name -> DataFrame as read by :func:`alliance.data.io.read_table`.
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
    clients_conf = config.get("clients") or {}
    client_therapists = clients_therapist_ids(clients, clients_conf)
    for name, frame in frames.items():
        tconf = config["tables"][name]
        cols = column_map(tconf)
        from_clients = cols["therapist_id"] not in frame.columns and client_therapists is not None
        schema = table_schema(name, tconf, items_by_table[name], therapist_from_clients=from_clients)
        problems += schema_problems(frame, schema, files[name])
        dup_keys = [cols["client_id"], cols["session"]]
        if "respondent" in tconf.get("columns", {}):
            dup_keys.append(cols["respondent"])
        if tconf.get("respondent") == "observer" or "respondent" in tconf.get("columns", {}):
            dup_keys.append(cols["rater_id"])
        problems += duplicate_problems(frame, dup_keys, files[name])
        if cols["client_id"] not in frame.columns:
            continue  # reported by the schema
        if from_clients:
            problems += missing_therapist_problems(frame[cols["client_id"]], client_therapists, files[name],
                                                   cols["client_id"], clients_file or "clients")
        spaced = frame[cols["client_id"]].astype("string").str.strip() != frame[cols["client_id"]].astype("string")
        if spaced.fillna(False).any():
            result.notes.append(f"{files[name]}: surrounding spaces removed from {int(spaced.sum())} client ids")
    for role in ("client_id", "therapist_id"):
        ids = {files[n]: (column_map(config["tables"][n])[role], f[column_map(config["tables"][n])[role]])
               for n, f in frames.items() if column_map(config["tables"][n])[role] in f.columns}
        column = clients_conf.get(role, "client_id" if role == "client_id" else None)
        if clients is not None and column and column in clients.columns:
            ids[clients_file or "clients"] = (column, clients[column])
        if ids:
            problems += ambiguous_id_problems(ids, role)
    if clients is not None:
        problems += client_table_problems(clients, clients_conf, clients_file or "clients")
    if problems:
        raise InputError(problems, "The study data break the data contract; nothing was written")
    if clients is not None:
        result.notes += unmatched_client_notes(frames, config, clients, clients_file or "clients")
    result.therapist_switches = therapist_switches(frames, config["tables"], client_therapists)
    if len(result.therapist_switches):
        n = result.therapist_switches["client_id"].nunique()
        result.notes.append(f"{n} client(s) saw more than one therapist; each session keeps its own therapist "
                            "and client-level analyses use the first therapist (see therapist_switches.csv)")
    return result


def clients_therapist_ids(clients: pd.DataFrame | None, conf: dict) -> pd.Series | None:
    """Normalised client id -> therapist id from the client table (``clients: therapist_id:``), or None."""
    column = (conf or {}).get("therapist_id")
    if clients is None or not column or column not in clients.columns:
        return None
    id_col = conf.get("client_id", "client_id")
    if id_col not in clients.columns:
        return None
    pairs = pd.DataFrame({"client": normalise_ids(clients[id_col]), "therapist": normalise_ids(clients[column])})
    pairs = pairs.dropna(subset=["client"]).drop_duplicates("client")
    return pd.Series(pairs["therapist"].to_numpy(), index=pairs["client"].to_numpy(), dtype=object)


def table_therapists(frame: pd.DataFrame, cols: dict, clients: pd.Series,
                     client_therapists: pd.Series | None) -> pd.Series:
    """Each row's normalised therapist id: the table's column, else the client table's therapist."""
    if cols["therapist_id"] in frame.columns or client_therapists is None:
        return normalise_ids(frame[cols["therapist_id"]])
    return clients.map(client_therapists).astype(object).where(clients.notna(), None)


def missing_therapist_problems(ids: pd.Series, client_therapists: pd.Series, file: str, column: str,
                               clients_file: str) -> list[Problem]:
    """Rows of a table without a therapist column whose client has no therapist in the client table."""
    client = normalise_ids(ids)
    therapist = client.map(client_therapists)
    missing = client.notna() & therapist.isna()
    if not missing.any():
        return []
    rows = np.flatnonzero(missing.to_numpy()) + 2
    return [Problem(file, None, column, None,
                    f"a therapist for every client (this table has no therapist column, so each client's "
                    f"therapist comes from {clients_file}); {client[missing].nunique()} client(s) in "
                    f"{listed_rows(rows)} have none there")]


def unmatched_client_notes(frames: dict[str, pd.DataFrame], config: dict, clients: pd.DataFrame,
                           file: str) -> list[str]:
    """Counts (and rows) of client-table ids no form has, and of form clients the table lacks.

    Ids that would match after case or leading zeros are refused before (ambiguous ids); what is
    left is noted, never dropped silently: their covariates stay unused, or are missing.
    """
    id_col = (config.get("clients") or {}).get("client_id", "client_id")
    if id_col not in clients.columns:
        return []
    table_ids = normalise_ids(clients[id_col])
    form_ids = set()
    for name, frame in frames.items():
        column = column_map(config["tables"][name])["client_id"]
        if column in frame.columns:
            form_ids.update(normalise_ids(frame[column]).dropna())
    notes = []
    unmatched = table_ids.notna() & ~table_ids.isin(form_ids)
    if unmatched.any():
        rows = np.flatnonzero(unmatched.to_numpy()) + 2
        notes.append(f"{file}: {int(unmatched.sum())} client(s) in {listed_rows(rows)} have no administration "
                     "in any table; their covariates are not used")
    absent = form_ids - set(table_ids.dropna())
    if absent:
        notes.append(f"{file}: {len(absent)} client(s) of the tables have no row here; "
                     "their covariates are missing")
    return notes


def client_table_problems(clients: pd.DataFrame, conf: dict, file: str) -> list[Problem]:
    id_col = conf.get("client_id", "client_id")
    columns = {id_col: pa.Column(None, nullable=False, required=True)}
    for cov in conf.get("covariates", []):
        columns[cov] = pa.Column(None, nullable=True, required=True)
    schema = pa.DataFrameSchema(columns, name="clients")
    problems = schema_problems(clients, schema, file)
    if id_col in clients.columns:  # unique after normalisation: 19 and 19.0 are one client
        ids = normalise_ids(clients[id_col])
        for pos in np.flatnonzero((ids.notna() & ids.duplicated(keep=False)).to_numpy()):
            problems.append(Problem(file, int(pos) + 2, id_col, clients[id_col].iloc[pos],
                                    "one row per client; this id repeats"))
        problems.sort(key=lambda p: (p.row or 0, p.column or ""))
    return problems
