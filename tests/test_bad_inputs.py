"""The bad-input corpus (tests/bad_inputs/cases.yaml): every case gets its exact answer.

Each case is a small study (the valid study in ``tests/bad_inputs/base/`` with one file replaced
by a case file or a generated one, and/or a config tweak) run through one entry point:

``read``      :func:`alliance.data.io.read_table` on one file
``config``    :func:`alliance.config.validate_config`
``gate``      config, then :func:`alliance.data.steps.run_gate` (the de-identification gate)
``validate``  config, gate, then :func:`alliance.data.steps.run_validation` (= ``alliance validate``)
``ingest``    the above, then :func:`alliance.data.steps.run_ingest`
``score``     the above, then :func:`alliance.scoring.scores.score_administrations`
``icc``       :func:`alliance.interrater.intraclass.icc` on generated ratings
``model``     :mod:`alliance.models` / :mod:`alliance.lmm` fits on generated client data

A case either raises the project's error with the exact message fragments of the manifest, or
passes with the documented handling checked. Cases marked ``xfail`` in the manifest are
problems in the code under test, each with the message it should give ("pending fix: ...").

Beyond the main test, one refused case of each entry point and error class goes through the
command line (``alliance validate``: exit 1, the message on stderr, no traceback), and every
refused validate case through :func:`~alliance.data.steps.run_ingest`, which must write nothing. Two
workflow runs (marked slow, ~10-20 s each) check that a refusal at validation and at scoring
leaves no result downstream of the refusing step.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from alliance.errors import ConfigError, IdentifierError, InputError
from alliance.models.data import NotEstimableError

HERE = Path(__file__).resolve().parent / "bad_inputs"
MANIFEST = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]
ERRORS = {"InputError": InputError, "ConfigError": ConfigError, "IdentifierError": IdentifierError,
          "ValueError": ValueError}
ID_KEY = "bad-input-corpus-key-0123456789"
STUDY_ENTRIES = ("config", "gate", "validate", "ingest", "score", "read")


# --- building a case's working folder ---------------------------------------------------------

def base_config() -> dict:
    config = copy.deepcopy(MANIFEST["base"]["config"])
    for spec in config["instruments"].values():
        if "key_file" in spec:  # corpus keys live beside the manifest
            spec["key_file"] = str(HERE / spec["key_file"])
    return config


def base_frame(table: str) -> pd.DataFrame:
    return pd.read_csv(HERE / MANIFEST["base"]["files"][table], dtype=str, keep_default_na=False)


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The base table as a typed export (Excel, SPSS, Parquet) holds it: numbers as numbers."""
    frame = frame.copy()
    for col in frame.columns:
        if col not in ("client_id", "therapist_id", "rater_id", "arm"):
            frame[col] = pd.to_numeric(frame[col])
    return frame


def set_table_path(config: dict, table: str, path: str) -> None:
    if table == "clients":
        config["clients"]["path"] = path
    else:
        config["tables"][table]["path"] = path


def apply_config_ops(config: dict, ops: list[dict]) -> None:
    """Manifest config tweaks: ``set``/``delete``/``rename`` at a slash-separated path."""
    for op in ops or []:
        verb = next(k for k in ("set", "delete", "rename") if k in op)
        *parents, last = op[verb].split("/")
        node = config
        for part in parents:
            node = node[part]
        if verb == "set":
            node[last] = copy.deepcopy(op["value"])
        elif verb == "delete":
            del node[last]
        else:
            node[op["to"]] = node.pop(last)


def build_study(case: dict, folder: Path) -> dict:
    """Write the case's files into ``folder`` and return its config (paths relative to it)."""
    config = base_config()
    for table, rel in MANIFEST["base"]["files"].items():
        (folder / Path(rel).name).write_bytes((HERE / rel).read_bytes())
    (folder / "id-key.txt").write_text(ID_KEY + "\n")
    for table, rel in (case.get("files") or {}).items():
        name = Path(rel).name
        (folder / name).write_bytes((HERE / rel).read_bytes())
        set_table_path(config, table, name)
    for table, spec in (case.get("generate") or {}).items():
        GENERATORS[spec["generator"]](folder / spec["file"])
        set_table_path(config, table, spec["file"])
    apply_config_ops(config, case.get("config"))
    return config


# --- generators of binary files ---------------------------------------------------------------

def _excel_date_cells(path: Path) -> None:
    frame = typed(base_frame("client_forms"))
    frame["visit"] = pd.to_datetime([f"2024-01-0{i}" for i in range(1, 9)])
    frame.to_excel(path, index=False)


def _excel_date_in_session(path: Path) -> None:
    # Excel turns a typed "1/2" into a date: the session cell becomes 2024-01-02
    frame = typed(base_frame("client_forms")).astype(object)
    frame.loc[2, "session"] = pd.Timestamp("2024-01-02").to_pydatetime()
    frame.to_excel(path, index=False)


def _excel_typed(path: Path) -> None:
    typed(base_frame("client_forms")).to_excel(path, index=False)


def _excel_text_in_numeric(path: Path) -> None:
    frame = typed(base_frame("client_forms")).astype(object)
    frame.loc[2, "gad1"] = "two"
    frame.loc[3, "session"] = 2.5
    frame.to_excel(path, index=False)


def _excel_duplicated_columns(path: Path) -> None:
    frame = typed(base_frame("client_forms"))
    frame.columns = [*frame.columns[:-1], "gad1"]
    frame.to_excel(path, index=False)


def _excel_na_text(path: Path) -> None:
    frame = typed(base_frame("client_forms")).astype(object)
    frame.loc[2, "gad1"] = "n/a"  # typed by hand into a number column
    frame.to_excel(path, index=False)


def _spss(path: Path, declare_missing: bool) -> None:
    import pyreadstat

    frame = typed(base_frame("client_forms")).astype({c: float for c in ("session", "days_since_intake")})
    frame = frame.astype({f"gad{n}": float for n in range(1, 8)})
    frame.loc[1, "gad2"] = 9.0  # the SPSS convention: 9 = "refused"
    missing = {"gad2": [9]} if declare_missing else {}
    pyreadstat.write_sav(frame, str(path), missing_ranges=missing,
                         variable_value_labels={"gad2": {9.0: "refused"}})


def _parquet_typed(path: Path) -> None:
    typed(base_frame("client_forms")).to_parquet(path)


def _parquet_zero_session(path: Path) -> None:
    frame = typed(base_frame("client_forms"))
    frame.loc[7, "session"] = 0
    frame.to_parquet(path)


def _parquet_no_rows(path: Path) -> None:
    typed(base_frame("client_forms")).iloc[:0].to_parquet(path)


def _parquet_bytes_ids(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = typed(base_frame("client_forms"))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ids = pa.array([v.encode("utf-8") for v in frame["client_id"]], type=pa.binary())
    pq.write_table(table.set_column(0, "client_id", ids), path)


def _excel_float_ids(path: Path) -> None:
    frame = typed(base_frame("client_forms"))
    frame["client_id"] = frame["client_id"].str[1:].astype(float)  # 1.0, 2.0 ... as Excel stores 1
    frame.to_excel(path, index=False)


def _parquet_huge_session(path: Path) -> None:
    frame = typed(base_frame("client_forms"))
    frame["session"] = frame["session"].astype(float)
    frame.loc[3, "session"] = 1e19  # int64 would wrap to a negative number
    frame.loc[5, "session"] = float("inf")
    frame.to_parquet(path)


GENERATORS = {
    "excel_date_cells": _excel_date_cells,
    "excel_date_in_session": _excel_date_in_session,
    "excel_typed": _excel_typed,
    "excel_text_in_numeric": _excel_text_in_numeric,
    "excel_na_text": _excel_na_text,
    "excel_duplicated_columns": _excel_duplicated_columns,
    "spss_user_missing": lambda p: _spss(p, declare_missing=True),
    "spss_undeclared_missing": lambda p: _spss(p, declare_missing=False),
    "parquet_typed": _parquet_typed,
    "parquet_zero_session": _parquet_zero_session,
    "parquet_no_rows": _parquet_no_rows,
    "parquet_bytes_ids": _parquet_bytes_ids,
    "excel_float_ids": _excel_float_ids,
    "parquet_huge_session": _parquet_huge_session,
}


# --- generated analysis inputs (ICC, models) --------------------------------------------------

def _ratings(kind: str) -> pd.DataFrame:
    targets = np.repeat(np.arange(6), 2)
    raters = np.tile(["R1", "R2"], 6)
    rating = {"constant": np.full(12, 4.0),
              "rater_offset_only": np.tile([3.0, 5.0], 6),       # no variance between targets
              "perfect_agreement": np.repeat([3.0, 4, 5, 3, 4, 5], 2),
              "one_rater": np.arange(12, dtype=float)}[kind]
    frame = pd.DataFrame({"target": targets, "rater": raters, "rating": rating})
    return frame[frame["rater"] == "R1"] if kind == "one_rater" else frame


def _client_data(kind: str, seed: int = 20261129) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 40
    data = pd.DataFrame({"therapist": [f"T{i // 4}" for i in range(n)],
                         "early_alliance": rng.normal(size=n), "baseline": rng.normal(size=n)})
    data["post"] = data["baseline"] + 0.3 * data["early_alliance"] + rng.normal(size=n)
    if kind == "one_therapist":
        data["therapist"] = "T0"
    elif kind == "one_client_per_therapist":
        data["therapist"] = [f"T{i}" for i in range(n)]
    elif kind == "therapist_with_one_client":
        data.loc[n - 1, "therapist"] = "T99"
    elif kind == "collinear":
        data["baseline"] = 2 * data["early_alliance"] + 1
    elif kind == "constant_outcome":
        data["post"] = 1.0
    return data


def run_icc(case: dict):
    from alliance.interrater.intraclass import icc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return icc(_ratings(case["generator"]), "target", "rater", "rating", n_boot=50, seed=1)


def run_model(case: dict):
    from alliance import lmm
    from alliance import models

    kind = case["generator"]
    if kind == "badly_scaled_random_slope":
        # a predictor in millions with a random slope: lme4's classic convergence failure
        rng = np.random.default_rng(3)
        data = pd.DataFrame({"g": np.repeat(np.arange(6), 10), "x": rng.normal(size=60)})
        data["y"] = data["x"] + rng.normal(size=60)
        data["x"] *= 1e6
        return lmm.fit("y ~ x + (x | g)", data)
    if kind == "single_level_covariate":
        data = _client_data(kind).assign(arm="CBT")  # e.g. a subset analysis of one arm
        return lmm.fit("post ~ early_alliance + arm + (1 | therapist)", data)
    result, _ = models.fit_early_outcome(_client_data(kind))
    return result


# --- running a case ---------------------------------------------------------------------------

def run_study(case: dict, folder: Path):
    from alliance.config import validate_config
    from alliance.data.steps import run_gate, run_ingest, run_validation
    from alliance.scoring.instruments import keys_from_config

    config = build_study(case, folder)
    entry = case["entry"]
    if entry == "read":
        from alliance.data.io import read_table

        table = case.get("table", "client_forms")
        path = config["clients"]["path"] if table == "clients" else config["tables"][table]["path"]
        return read_table(path, None if table == "clients" else config["tables"][table].get("sheet"))
    config = validate_config(config)
    if entry == "config":
        return config
    report = {"gate": run_gate(config)}
    if entry == "gate":
        return report
    report["validation"] = run_validation(config)
    if entry == "validate":
        return report
    run_ingest(config, "administrations.parquet", "clients.parquet", "therapist_switches.csv")
    report["administrations"] = pd.read_parquet("administrations.parquet")
    report["clients"] = pd.read_parquet("clients.parquet")
    report["switches"] = pd.read_csv("therapist_switches.csv")
    if entry == "ingest":
        return report
    from alliance.scoring.scores import score_administrations

    return score_administrations(report["administrations"], keys_from_config(config),
                                 source="administrations.parquet")


def run_case(case: dict, folder: Path):
    if case["entry"] == "icc":
        return run_icc(case)
    if case["entry"] == "model":
        return run_model(case)
    return run_study(case, folder)


def check_error(err: BaseException, expect: dict) -> None:
    text = str(err)
    for fragment in expect.get("messages", []):
        assert fragment in text, f"expected {fragment!r} in:\n{text}"
    for fragment in expect.get("absent", []):
        assert fragment not in text, f"{fragment!r} must not appear in:\n{text}"
    if "problems" in expect:
        got = [[p.file, p.row, p.column, p.value] for p in err.problems]
        assert got == expect["problems"], text


def check_handling(result, expect: dict) -> None:
    """The documented handling of a case that is not refused."""
    if "read" in expect:
        spec = expect["read"]
        if "columns" in spec:
            assert list(result.columns) == spec["columns"]
        if "rows" in spec:
            assert len(result) == spec["rows"]
        for column, values in spec.get("values", {}).items():
            got = [None if pd.isna(v) else v for v in result[column]]
            assert got == values, (column, got)
    if "notes" in expect:
        notes = result["validation"]["notes"]
        assert len(notes) == len(expect["notes"]), notes
        for fragment, note in zip(expect["notes"], notes):
            assert fragment in note, notes
    if "gate" in expect:
        for file, dropped in expect["gate"]["dropped"].items():
            assert result["gate"]["files"][file]["columns_dropped"] == dropped
    if "ingest" in expect:
        spec = expect["ingest"]
        tidy, clients = result["administrations"], result["clients"]
        assert tidy["client"].notna().all() and tidy["therapist"].notna().all()
        for what, frame, column in (("clients", tidy, "client"), ("therapists", tidy, "therapist")):
            if what in spec:
                assert frame[column].nunique() == spec[what], (what, frame[column].unique())
        if "administrations" in spec:
            assert len(tidy) == spec["administrations"]
        if "switch_rows" in spec:
            assert len(result["switches"]) == spec["switch_rows"]
        if "client_columns" in spec:
            assert list(clients.columns) == spec["client_columns"]
        if "missing_items" in spec:
            client_rows = tidy[tidy["table"] == "client_forms"]
            assert int(client_rows.filter(regex=r"^gad7_\d+$").isna().sum().sum()) == spec["missing_items"]
    if "icc" in expect:
        for form, value in expect["icc"].items():
            got = result.loc[result["type"] == form, "icc"].item()
            assert got == pytest.approx(value, abs=1e-12), (form, got)
    if "fit" in expect:
        spec = expect["fit"]
        if "converged" in spec:
            assert bool(result.converged) is spec["converged"]
        if "ngroups" in spec:
            assert result.ngroups == spec["ngroups"]
        for fragment in spec.get("warnings", []):
            assert any(fragment in w for w in result.warnings), result.warnings


def case_params(cases):
    params = []
    for case in cases:
        marks = []
        if case.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=case["xfail"]))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALLIANCE_CORPUS_KEY_UNSET", raising=False)
    return tmp_path


@pytest.mark.parametrize("case", case_params(CASES))
def test_bad_input(case, in_tmp):
    expect = case["expect"]
    if "raises" in expect:
        with pytest.raises(ERRORS[expect["raises"]]) as err:
            run_case(case, in_tmp)
        if expect["raises"] == "ValueError":  # the project's own ValueError, not a library's
            assert type(err.value) in (ValueError, ConfigError, InputError, IdentifierError, NotEstimableError)
        check_error(err.value, expect)
    else:
        check_handling(run_case(case, in_tmp), expect)


def first_of_each_kind(cases):
    """One refused case per entry point and error class: the command line prints every project
    error the same way, so these stand for the rest (test_bad_input checks every message)."""
    seen, chosen = set(), []
    for case in cases:
        kind = (case["entry"], case["expect"]["raises"])
        if kind not in seen:
            seen.add(kind)
            chosen.append(case)
    return chosen


REFUSED = [c for c in CASES if "raises" in c["expect"] and not c.get("xfail")]
CLI_CASES = first_of_each_kind([c for c in REFUSED if c["entry"] in ("config", "gate", "validate")])
CLI_CASES += [c for c in REFUSED if c["id"] == "text_in_numeric_item"]  # a row-level data problem too
REFUSED_DATA = [c for c in REFUSED if c["entry"] == "validate"]


@pytest.mark.parametrize("case", case_params(CLI_CASES))
def test_cli_gives_the_message_without_a_traceback(case, in_tmp, capsys):
    from alliance.cli import main

    config = build_study(case, in_tmp)
    (in_tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    assert main(["validate", "config.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert case["expect"]["messages"][0] in err


@pytest.mark.parametrize("case", case_params(REFUSED_DATA))
def test_refused_data_are_never_ingested(case, in_tmp):
    from alliance.config import validate_config
    from alliance.data.steps import run_ingest

    study = build_study(case, in_tmp)
    outputs = [in_tmp / "out" / n for n in ("administrations.parquet", "clients.parquet", "switches.csv")]
    with pytest.raises(ERRORS[case["expect"]["raises"]]):
        run_ingest(validate_config(study), *outputs)
    assert not (in_tmp / "out").exists() or not any((in_tmp / "out").iterdir())


def test_manifest_is_complete():
    """At least 40 cases, unique ids, every file used, every case with an exact expectation."""
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    used = {Path(f).name for c in CASES for f in (c.get("files") or {}).values()}
    assert used == {p.name for p in (HERE / "files").iterdir()}
    for case in CASES:
        assert case["entry"] in (*STUDY_ENTRIES, "icc", "model"), case["id"]
        assert case.get("description"), case["id"]
        expect = case["expect"]
        assert ("raises" in expect and expect.get("messages")) or expect.get("handling"), case["id"]
        for spec in (case.get("generate") or {}).values():
            assert spec["generator"] in GENERATORS, case["id"]


def test_encoded_case_files_keep_their_bytes():
    """Guard against an editor or a git filter normalising the encoding cases away."""
    assert (HERE / "files" / "bom_utf8.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    with pytest.raises(UnicodeDecodeError):
        (HERE / "files" / "latin1.csv").read_bytes().decode("utf-8")
    assert (HERE / "files" / "utf16_tab.txt").read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert b"\r\n" in (HERE / "files" / "crlf_line_endings.csv").read_bytes()
    assert b"\n" not in (HERE / "files" / "cr_line_endings.csv").read_bytes()
    assert (HERE / "files" / "empty.csv").stat().st_size == 0


# --- the workflow: a refused input leaves nothing that looks like a result --------------------

def workflow_study(tmp_path: Path, column: str, value: str) -> Path:
    """A copy of the bundled example (its own config) with one cell of client_forms.csv, row 2, changed.

    The example rather than the corpus study: the workflow's later stages need its instruments.
    """
    from conftest import make_workdir

    workdir = make_workdir(tmp_path)
    path = workdir / "data" / "raw" / "example" / "client_forms.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, column] = value
    frame.to_csv(path, index=False)
    return workdir


def result_files(workdir: Path) -> list[str]:
    results = workdir / "results"
    return sorted(str(p.relative_to(workdir)) for p in results.rglob("*") if p.is_file()) if results.exists() else []


@pytest.mark.slow
def test_workflow_stops_at_validation_and_writes_no_result(tmp_path):
    from conftest import run_snakemake

    workdir = workflow_study(tmp_path, "gad4", "4")
    proc = run_snakemake(workdir, check=False)
    assert proc.returncode != 0
    log = (workdir / "logs" / "validate_data.log").read_text()
    assert "client_forms.csv, row 2, column 'gad4': value 4; expected a whole number from 0 to 3 (gad7) or empty" in log
    # only the gate's own record of having passed may exist; nothing downstream of validation
    assert result_files(workdir) in ([], ["results/data/deid_report.json"])


@pytest.mark.slow
def test_workflow_never_scores_fractional_responses(tmp_path):
    """Refused by scoring today and by validation once item_fractional_validate is fixed: either
    way the run fails and no score, reliability or change result exists."""
    from conftest import run_snakemake

    workdir = workflow_study(tmp_path, "gad1", "1.5")
    proc = run_snakemake(workdir, check=False)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (workdir / "logs").glob("*.log"))
    assert "value 1.5" in logs and "value '1.5'" not in logs
    downstream = [f for f in result_files(workdir) if not f.startswith(("results/data/", "results/interim/",
                                                                         "results/figures/missingness",
                                                                         "results/provenance"))]
    assert downstream == []


def test_duplicate_rows_are_named_by_row_and_ids_by_their_shape():
    """A client with two rows at one session (or two change rows): the message names the row,
    shows the session, and describes the client id by its shape only (it may be a name)."""
    from alliance.models.data import lag_within_client
    from alliance.scoring.select import select_change

    data = pd.DataFrame({"client_id": ["Ann Smith"] * 2 + ["B"], "session": [1, 1, 1], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"more than one row for the same client_id at session 1 \(row 1; the "
                                         r"client_id is text of 9 characters \(letters, spaces\)\)") as lagged:
        lag_within_client(data, "x", by="client_id")
    change = pd.DataFrame({"client": ["Ann Smith"] * 2, "instrument": "phq9", "pre": [20.0, 20.0],
                           "post": [10.0, 11.0], "change": [-10.0, -9.0]})
    with pytest.raises(ValueError, match=r"more than one row for the same client and instrument 'phq9' \(row 1; "
                                         r"the client is text of 9 characters \(letters, spaces\)\)") as selected:
        select_change(change, "phq9", "models.fits.x")
    assert "Ann" not in str(lagged.value) + str(selected.value)
