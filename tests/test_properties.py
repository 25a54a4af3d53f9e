"""Property-based tests (hypothesis) of the readers, the gate and the validators.

The property: whatever table a study exports - any column names (unicode, whitespace, empty,
repeated), any cells (integers, floats incl. NaN and infinities, text, booleans, dates, empty),
any size (including no rows), as CSV, TSV, Parquet or Excel - the pipeline either accepts it or
refuses it with the project's own error (InputError, IdentifierError, ConfigError, or a
ValueError raised by alliance code with a message), never another exception. What it accepts
must also be usable: a table that validates ingests, with a pseudonym for every client and
therapist and whole session numbers of 1 or more.

Examples are derandomised (the same examples on every run, no example database) and limited to
100 per property (50 where an example costs 30-100 ms) with no deadline, so that the module runs
in well under a minute on two cores.

Every pending fix the corpus (tests/bad_inputs/cases.yaml) found has landed; the strategies
exclude none of those inputs.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance.config import validate_config
from alliance.data.deid import normalise_ids, pseudonymise, refuse_identifiers, scan_table
from alliance.errors import ConfigError, IdentifierError, InputError, Problem
from alliance.data.io import read_table

SRC = Path(__file__).resolve().parents[1] / "src" / "alliance"
HERE = Path(__file__).resolve().parent / "bad_inputs"
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Properties that write Excel files or run the whole gate-validate-ingest chain cost 30-100 ms an
# example: the Excel reader gets 50 examples, the study property 50 per format (CSV and Excel).
COSTLY = settings(PROPERTY, max_examples=50)
ROLE_COLUMNS = ["client_id", "therapist_id", "session", "days_since_intake", "it1", "it2"]


def is_project_error(err: BaseException) -> bool:
    """The project's own error: one of its classes, or a ValueError raised in alliance code."""
    if not str(err).strip():
        return False
    if isinstance(err, (InputError, IdentifierError, ConfigError)):
        return True
    if type(err) is not ValueError:
        return False
    origin = traceback.extract_tb(err.__traceback__)[-1].filename
    return Path(origin).resolve().is_relative_to(SRC)


@contextmanager
def project_errors_only():
    """Let a project error pass as a refusal; anything else fails the property, with its traceback."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - the property is about which exceptions escape
        if not is_project_error(err):
            raise AssertionError(f"not a project error: {type(err).__name__}: {err}") from err


@contextmanager
def in_temporary_folder():
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(old)


# --- strategies -------------------------------------------------------------------------------

# Surrogates cannot be written as UTF-8 at all; control characters cannot be stored in an .xlsx
# (openpyxl refuses them), so Excel tables get printable text only.
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
PRINTABLE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
DATES = st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
                     max_value=pd.Timestamp("2100-01-01").to_pydatetime())
INTS = st.integers(min_value=-(2**53), max_value=2**53)
# corrupt_excel (pending fix: reader errors are not wrapped): openpyxl reads a cell of 1.8e308
# back as inf and pandas then fails in int(inf); no spreadsheet holds such numbers (Excel's
# largest is 9.99e307), so magnitudes stay below 1e300
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
KINDS = ("int", "float", "text", "bool", "date", "mixed")


def _column_names(text):
    return st.one_of(st.sampled_from(ROLE_COLUMNS), text,
                     st.sampled_from(ROLE_COLUMNS).map(lambda s: f" {s} "))


def _cells(kind: str, text):
    value = {"int": INTS, "float": FLOATS, "text": text, "bool": st.booleans(), "date": DATES,
             "mixed": st.one_of(INTS, FLOATS, text, st.booleans(), DATES)}[kind]
    return st.one_of(st.none(), value)


# Strategies are built once: building them per draw costs more than the test itself.
NAMES = {"any": _column_names(ANY_TEXT), "printable": _column_names(PRINTABLE_TEXT)}
CELLS = {(kind, alphabet): st.lists(_cells(kind, text), max_size=6)
         for kind in KINDS for alphabet, text in (("any", ANY_TEXT), ("printable", PRINTABLE_TEXT))}


@st.composite
def tables(draw, fmt: str):
    """A DataFrame as a study tool could export it in ``fmt`` (Excel: printable text only)."""
    alphabet = "printable" if fmt == "xlsx" else "any"
    n_rows = draw(st.integers(min_value=0, max_value=6))
    names = draw(st.lists(NAMES[alphabet], min_size=1, max_size=6))
    kinds = KINDS if fmt != "parquet" else KINDS[:-1]  # Parquet holds one type per column
    frame = pd.DataFrame({
        position: pd.Series((draw(CELLS[draw(st.sampled_from(kinds)), alphabet]) + [None] * n_rows)[:n_rows],
                            dtype=object)
        for position in range(len(names))})
    frame.columns = names
    return frame


def write(frame: pd.DataFrame, fmt: str, folder: Path) -> Path:
    path = folder / f"table.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "xlsx":
        frame.to_excel(path, index=False)
    else:
        # Parquet needs one type per column and unique names: what a Parquet exporter writes
        typed = frame.copy()
        typed.columns = [f"{name}" if list(frame.columns).count(name) == 1 else f"{name}_{i}"
                         for i, name in enumerate(frame.columns)]
        typed = typed.loc[:, ~pd.Index(typed.columns).duplicated()]
        typed = typed.infer_objects()
        for col in typed.columns:
            if typed[col].dtype == object:
                typed[col] = typed[col].map(lambda v: v if v is None else str(v))
        typed.to_parquet(path)
    return path


# --- readers ----------------------------------------------------------------------------------

def reads_or_is_refused(frame: pd.DataFrame, fmt: str) -> None:
    with in_temporary_folder() as folder:
        path = write(frame, fmt, folder)
        with project_errors_only():
            got = read_table(path)
            names = list(got.columns)
            assert all(isinstance(n, str) and n == n.strip() for n in names), names
            assert len(set(names)) == len(names), names
            assert len(got) >= 1 and isinstance(got.index, pd.RangeIndex)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
@PROPERTY
@given(data=st.data())
def test_any_table_reads_or_is_refused_by_the_reader(fmt, data):
    reads_or_is_refused(data.draw(tables(fmt), label="table"), fmt)


@COSTLY
@given(data=st.data())
def test_any_excel_table_reads_or_is_refused_by_the_reader(data):
    reads_or_is_refused(data.draw(tables("xlsx"), label="table"), "xlsx")


TEXT_NAMES = st.text(st.characters(whitelist_categories=("L", "N", "Zs", "P", "S")),
                     min_size=1, max_size=10).filter(lambda s: s.strip() != "")
# Cells as survey tools write them: any printable unicode, spaces included. Control characters
# are left to the property above (reads or is refused): pandas' writer leaves a bare carriage
# return unquoted, which no reader can tell from a line end, and its C parser ends a field at NUL.
TEXT_CELLS = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=10))


@pytest.mark.parametrize("sep,suffix", [(",", ".csv"), ("\t", ".tsv"), (",", ".txt"), ("\t", ".txt")])
@PROPERTY
@given(rows=st.integers(min_value=1, max_value=5), data=st.data())
def test_text_tables_keep_their_shape_names_and_cells(sep, suffix, rows, data):
    """A CSV/TSV/TXT with distinct names reads back with the same names (stripped), rows and cells.

    A .txt file's separator is guessed from its header line (tab or comma).
    """
    name = TEXT_NAMES
    names = data.draw(st.lists(name, min_size=2, max_size=5, unique_by=lambda s: s.strip()), label="names")
    cells_by_column = {n: data.draw(st.lists(TEXT_CELLS, min_size=rows, max_size=rows), label=n) for n in names}
    frame = pd.DataFrame(cells_by_column, dtype=object)
    # a row of empty cells is a real row of the export; give it one value so the CSV line is not blank
    frame.iloc[:, 0] = frame.iloc[:, 0].where(frame.notna().any(axis=1), "x")
    with in_temporary_folder() as folder:
        path = folder / f"t{suffix}"
        frame.to_csv(path, sep=sep, index=False)
        got = read_table(path)
    assert list(got.columns) == [n.strip() for n in names]
    assert len(got) == rows
    expected = frame.astype(object).where(frame.notna(), None)
    actual = got.astype(object).where(got.notna(), None)
    assert actual.to_numpy().tolist() == expected.to_numpy().tolist()


# --- the de-identification gate ---------------------------------------------------------------

@PROPERTY
@given(frame=tables("csv"))
def test_gate_scans_any_table_and_refuses_only_with_identifier_error(frame):
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.loc[:, ~frame.columns.duplicated()]
    findings = scan_table(frame, "t.csv")
    for finding in findings:
        assert finding.column in frame.columns
        assert all(2 <= row <= len(frame) + 1 for row in finding.rows)
        str(finding)
    try:
        refuse_identifiers({"t.csv": frame})
    except IdentifierError as err:
        assert findings and all(f"column '{f.column}'" in str(err) for f in findings)
    else:
        assert findings == []


# --- validation of a whole study --------------------------------------------------------------

def study_config(path: str) -> dict:
    return {
        "study": {"name": "property", "seed": 0},
        "pseudonymisation": {"key_env": "ALLIANCE_PROPERTY_KEY_UNSET", "key_file": "id-key.txt"},
        "tables": {"forms": {"path": path, "respondent": "client"}},
        "instruments": {"two": {"key": "gad7", "key_file": str(HERE / "keys" / "client2.yaml"),
                                "table": "forms", "items": "it{n}"}},
    }


ID_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6)
# whitespace_only_client_id (pending fix): an id of spaces is kept out
IDS = st.one_of(st.none(), INTS, st.sampled_from(["P1", "P2", "p1", " P1 ", "TH1", "   "]), ID_TEXT)
SESSIONS = st.one_of(st.none(), st.integers(-2, 5), st.sampled_from([1.0, 2.5, "1", "two", " 3 ", "1e0"]),
                     FLOATS)
ITEMS = st.one_of(st.none(), st.integers(-1, 5), st.sampled_from([0.5, "2", "n/a", "", " 1"]), FLOATS, ANY_TEXT)


@st.composite
def study_tables(draw, fmt: str):
    """A table whose columns are mostly the roles the config expects, with hostile cells."""
    n_rows = draw(st.integers(min_value=0, max_value=6))
    pool = {"therapist_id": IDS, "session": SESSIONS, "days_since_intake": SESSIONS, "it1": ITEMS,
            "it2": ITEMS}
    # missing_client_id_column (pending fix): the client id column is always there
    names = ["client_id"] * draw(st.booleans()) + draw(st.lists(st.sampled_from(sorted(pool)), max_size=6, unique=True))
    data = {}
    for name in names:
        data[name] = draw(st.lists(IDS, min_size=n_rows, max_size=n_rows)) if name == "client_id" else None
        if name == "client_id":
            continue
        data[name] = draw(st.lists(pool[name], min_size=n_rows, max_size=n_rows))
    if draw(st.booleans()):
        extra = draw(CELLS[draw(st.sampled_from(KINDS)), "printable"])
        data[draw(NAMES["printable"])] = (extra + [None] * n_rows)[:n_rows]
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in data.items()})
    if fmt == "xlsx":  # openpyxl cannot store control characters
        frame = frame.map(lambda v: re.sub(r"[\x00-\x1f\x7f-\x9f]", "", v) if isinstance(v, str) else v)
    return frame


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@COSTLY
@given(data=st.data())
def test_any_study_validates_or_is_refused_and_what_validates_ingests(fmt, data):
    from alliance.data.steps import run_gate, run_ingest, run_validation

    frame = data.draw(study_tables(fmt), label="table")
    with in_temporary_folder() as folder:
        path = write(frame, fmt, folder)
        (folder / "id-key.txt").write_text("property-test-key-0123456789\n")
        config = validate_config(study_config(path.name))
        with project_errors_only():
            run_gate(config)
            run_validation(config)
            run_ingest(config, "a.parquet", "c.parquet", "s.csv")
            tidy = pd.read_parquet("a.parquet")
            assert tidy["client"].str.fullmatch(r"C-[0-9a-f]{12}").all()
            assert tidy["therapist"].str.fullmatch(r"T-[0-9a-f]{12}").all()
            assert (tidy["session"] >= 1).all()
            items = tidy[["two_1", "two_2"]].to_numpy()
            assert np.all(np.isnan(items) | ((items >= 0) & (items <= 4)))


# --- configuration ----------------------------------------------------------------------------

BASE_CONFIG = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))["base"]["config"]
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              # item_pattern_unknown_placeholder (pending fix): no braces besides {n}
              st.text(max_size=8),
              st.sampled_from(["gad{n}", "{n}", "client", "observer", "gad7", "wai_sr"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))


@st.composite
def mutated_configs(draw):
    config = copy.deepcopy(BASE_CONFIG)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        targets = [p for p in paths(config) if p]
        where = draw(st.sampled_from(targets))
        *parents, last = where
        node = config
        for part in parents:
            node = node[part]
        action = draw(st.sampled_from(["set", "delete", "add", "rename"]))
        if action == "set":
            node[last] = draw(JSON_VALUES)
        elif action == "delete":
            del node[last]
        elif action == "add" and isinstance(node[last], dict):
            node[last][draw(st.text(max_size=10))] = draw(JSON_VALUES)
        elif action == "rename":
            node[draw(st.text(max_size=10))] = node.pop(last)
    return config


@PROPERTY
@given(config=mutated_configs())
def test_any_config_validates_or_is_refused_with_config_error(config):
    from alliance.scoring.instruments import keys_from_config
    from alliance.data.validate import item_columns

    with project_errors_only():
        resolved = validate_config(config)
        keys = keys_from_config(resolved)
        for entry, spec in resolved["instruments"].items():
            names = item_columns(spec, keys[entry].n_items)
            assert len(names) == keys[entry].n_items


# --- pseudonyms and messages ------------------------------------------------------------------

ID_VALUES = st.one_of(st.none(), INTS, FLOATS, ANY_TEXT, st.booleans())


@PROPERTY
@given(ids=st.lists(ID_VALUES, max_size=20))
def test_pseudonyms_are_well_formed_and_follow_the_normalised_id(ids):
    series = pd.Series(ids, dtype=object)
    normalised = normalise_ids(series)
    pseudonyms = pseudonymise(series, "client", b"property-test-key-0123456789")
    for raw, norm, pseudonym in zip(ids, normalised, pseudonyms):
        if norm is None:
            assert pseudonym is None, (raw, pseudonym)
        else:
            assert re.fullmatch(r"C-[0-9a-f]{12}", pseudonym), (raw, pseudonym)
    mapping = {}
    for norm, pseudonym in zip(normalised, pseudonyms):
        if norm is not None:
            assert mapping.setdefault(norm, pseudonym) == pseudonym
    assert len(set(mapping.values())) == len(mapping)  # 48-bit digests: no collision among 20


@PROPERTY
@given(value=st.one_of(ID_VALUES, DATES, st.binary(max_size=5)), row=st.one_of(st.none(), st.integers(1, 10**6)),
       column=st.one_of(st.none(), ANY_TEXT), expected=ANY_TEXT)
def test_problem_messages_render_any_value(value, row, column, expected):
    text = str(InputError([Problem("f.csv", row, column, value, expected)]))
    assert text.startswith("Invalid input: 1 problem(s)\n  - f.csv")
    if row is not None:
        assert f"row {row}" in text
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        from alliance.errors import describe_value

        assert describe_value(value) in text
    if isinstance(value, str) and len(value.strip()) > 4 and not re.fullmatch(r"[\d.+\-\s]*", value):
        shown = text.split("; expected")[0].split(": value")[-1]
        assert value not in shown  # a text value is shown by its shape only


@PROPERTY
@given(ids=st.lists(st.one_of(INTS, FLOATS, ANY_TEXT, st.binary(max_size=6)), max_size=20))
def test_id_normalisation_is_idempotent_and_keeps_clean_ids(ids):
    from alliance.data.ids import normalise_id

    for raw in ids:
        norm = normalise_id(raw)
        if norm is not None:
            assert isinstance(norm, str) and norm == norm.strip() and norm
            assert normalise_id(norm) == norm
    for clean in ("101", "P-7", "c003", "TH1"):  # the example's pseudonyms must not change
        assert normalise_id(clean) == clean
    assert normalise_id(19.0) == normalise_id("19.0") == normalise_id(b"19") == normalise_id(np.int64(19)) == "19"


@PROPERTY
@given(base=st.from_regex(r"[A-Z]{1,2}[1-9][0-9]{0,3}", fullmatch=True),
       variant=st.sampled_from(["zeros", "case", "zwsp", "nbsp", "soft_hyphen", "cyrillic"]))
def test_ids_that_differ_only_invisibly_are_one_canonical_id(base, variant):
    from alliance.data.ids import ambiguous_groups, canonical_id

    letters = {"A": "\u0410", "B": "\u0412", "C": "\u0421", "E": "\u0415", "H": "\u041d", "K": "\u041a",
               "M": "\u041c", "O": "\u041e", "P": "\u0420", "T": "\u0422", "X": "\u0425"}
    split = next(i for i, ch in enumerate(base) if ch.isdigit())
    changed = {"zeros": base[:split] + "00" + base[split:], "case": base.lower(),
               "zwsp": base[:1] + "\u200b" + base[1:], "nbsp": base[:split] + "\u00a0" + base[split:],
               "soft_hyphen": base[:1] + "\u00ad" + base[1:],
               "cyrillic": "".join(letters.get(ch, ch) for ch in base)}[variant]
    if changed == base:  # a base without a Cyrillic look-alike letter
        return
    if variant == "nbsp":  # an inner space is an id of its own, but the same as with a no-break space
        base = base[:split] + " " + base[split:]
    assert canonical_id(changed) == canonical_id(base)
    assert list(ambiguous_groups(pd.Series([base, changed, "ZZ999999"])).values()) == [sorted([base, changed])]
