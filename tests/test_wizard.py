"""`alliance init`: a config drafted from a folder of exports, as a user would meet it."""

from __future__ import annotations

import copy
import json
import re
import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from alliance.config import validate_config
from alliance.data.steps import run_gate, run_validation
from alliance.data.io import SUPPORTED
from alliance.wizard import DECIDE, init_config, pending_decisions
from conftest import EXAMPLE, ROOT, without_resampling

PLANTED = "Zebulon Quaxwell"


def _decide(config: dict, answers: dict[str, object]) -> dict:
    """The config with each pending decision (by its path) answered."""
    filled = copy.deepcopy(config)
    for path, value in answers.items():
        node = filled
        *parents, last = path.split("/")
        for part in parents:
            node = node[part]
        assert str(node[last]).startswith(DECIDE), path
        node[last] = value
    return filled


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    for name in ("client_forms.csv", "therapist_forms.csv", "observer_ratings.csv", "clients.csv"):
        shutil.copy(EXAMPLE / name, folder / name)
    (folder / "README.md").write_text("notes\n")
    out = folder.parent / "drafted.yaml"
    return init_config(folder, out), folder, out


def test_example_tables_respondents_and_client_table(example):
    result, folder, out = example
    tables = result.config["tables"]
    assert {n: t["respondent"] for n, t in tables.items()} == {
        "client_forms": "client", "therapist_forms": "therapist", "observer_ratings": "observer"}
    assert all("columns" not in t for t in tables.values())  # the example's names are the roles
    assert result.config["clients"] == {"path": str(folder / "clients.csv"), "covariates": ["arm", "gender", "age_band"]}
    assert yaml.safe_load(out.read_text()) == result.config
    assert [why for f, why in result.skipped if f.endswith("README.md")] == ["not a table format (" + ", ".join(SUPPORTED) + ")"]


def test_example_instruments_recognised(example):
    result, _, _ = example
    inst = result.config["instruments"]
    assert {e: (s["key"], s["table"], s["items"]) for e, s in inst.items()} == {
        "wai_sr": ("wai_sr", "client_forms", "wai{n}"), "phq9": ("phq9", "client_forms", "phq{n}"),
        "gad7": ("gad7", "client_forms", "gad{n}"), "oq45": ("oq45", "client_forms", "oq{n}"),
        "wai_t": ("wai_sr_t", "therapist_forms", "twai{n}"), "wai_o": ("wai_o_s", "observer_ratings", "owai{n}")}
    assert result.decisions == [
        "at instruments/wai_o/key_file: needs the licence holder's key_file (a complete key for this form)",
        "at instruments/wai_t/key_file: needs the licence holder's key_file (a complete key for this form)"]
    assert result.config["ruptures"]["enabled"] and result.config["agreement"]["enabled"]
    assert result.config["interrater"]["enabled"]
    assert result.config["agreement"]["therapist_instrument"] == "wai_t"
    assert {f["alliance"]["instrument"] for f in result.config["models"]["fits"].values()} == {"wai_sr"}
    assert {f["outcome"]["instrument"] for f in result.config["models"]["fits"].values()} == {"phq9"}


def test_example_config_validates_once_decided(example):
    result, _, out = example
    with pytest.raises(ValueError):
        init_config(out.parent / "exports0", out)  # exists already: refused before anything is read
    filled = _decide(result.config, {
        "instruments/wai_t/key_file": str(ROOT / "config/example-keys/wai_t_simulated.yaml"),
        "instruments/wai_o/key_file": str(ROOT / "config/example-keys/wai_o_simulated.yaml")})
    assert pending_decisions(filled) == []
    config = validate_config(filled)
    assert run_gate(config)["passed"]
    report = run_validation(config)
    assert report["tables"]["client_forms"]["rows"] == len(pd.read_csv(EXAMPLE / "client_forms.csv"))


def test_refusals(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        init_config(empty, tmp_path / "a.yaml")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.docx").write_bytes(b"PK")
    (junk / "broken.parquet").write_bytes(b"not parquet")
    (junk / "lookup.csv").write_text("code,label\n1,a\n")
    with pytest.raises(ValueError) as err:
        init_config(junk, tmp_path / "b.yaml")
    message = str(err.value)
    assert "notes.docx: not a table format" in message and "broken.parquet" in message
    assert "lookup.csv: no client id and session columns" in message
    assert not (tmp_path / "b.yaml").exists()
    existing = tmp_path / "c.yaml"
    existing.write_text("mine\n")
    with pytest.raises(ValueError, match="exists already"):
        init_config(EXAMPLE, existing)
    assert existing.read_text() == "mine\n"


# --- a study as a survey tool and a coding team hand it over --------------------------------

@pytest.fixture(scope="module")
def handed_over(tmp_path_factory):
    pyreadstat = pytest.importorskip("pyreadstat")
    folder = tmp_path_factory.mktemp("thesis")
    rng = np.random.default_rng(5)
    clients = [f"K{i:03d}" for i in range(1, 13)]
    therapists = {c: f"T{1 + i % 3}" for i, c in enumerate(clients)}
    rows = []
    for c in clients:
        for s in range(1, 6):
            row = {"Klient": c, "Therapeut": therapists[c], "Sitzung": float(s)}
            row |= {f"WAI_{n:02d}": float(rng.integers(1, 6)) for n in range(1, 13)}
            row |= {f"PHQ_{n}": float(rng.integers(0, 4)) for n in range(1, 10)}
            rows.append(row)
    forms = pd.DataFrame(rows)
    forms.loc[[3, 17], "WAI_05"] = 99.0  # "keine Angabe", declared user-missing
    labels = {f"WAI_{n:02d}": {1.0: "gar nicht", 5.0: "sehr", 99.0: "keine Angabe"} for n in range(1, 13)}
    pyreadstat.write_sav(forms, str(folder / "klienten_fragebogen.sav"), variable_value_labels=labels,
                         missing_ranges={f"WAI_{n:02d}": [99.0] for n in range(1, 13)})
    table = pd.DataFrame({"Klient": clients, "Therapeut": [therapists[c] for c in clients],
                          "Name": [PLANTED] + [f"Person {chr(65 + i)}" for i in range(11)],
                          "Geburtsdatum": [dt.datetime(1980 + i, 1 + i, 3) for i in range(12)],
                          "Gruppe": ["KVT", "PDT"] * 6})
    table.to_excel(folder / "klienten.xlsx", index=False, engine="openpyxl")
    ratings = []
    for c in clients:
        for s in (2, 4):
            for rater in ("B1", "B2"):
                note = "Gespräch über die Woche, viel Schweigen und Rückzug heute" if c == "K002" else ""
                ratings.append([c, str(s), rater, *[str(rng.integers(1, 8)) for _ in range(12)], note])
    header = ["Klient", "Sitzung", "Beurteiler", *[f"WAIO_{n}" for n in range(1, 13)], "Bemerkung"]
    text = "\n".join(";".join(r) for r in [header, *ratings]) + "\n"
    (folder / "beobachter_ratings.csv").write_bytes(text.encode("latin-1"))
    out = folder.parent / "thesis.yaml"
    return init_config(folder, out), folder, out


def test_handed_over_study_tables_and_roles(handed_over):
    result, folder, _ = handed_over
    tables = result.config["tables"]
    assert set(tables) == {"klienten_fragebogen", "beobachter_ratings"}
    assert tables["klienten_fragebogen"]["respondent"] == "client"
    assert tables["klienten_fragebogen"]["columns"] == {
        "client_id": "Klient", "therapist_id": "Therapeut", "session": "Sitzung"}
    assert tables["beobachter_ratings"]["respondent"] == "observer"
    cols = tables["beobachter_ratings"]["columns"]
    assert {k: v for k, v in cols.items() if k != "therapist_id"} == {
        "client_id": "Klient", "session": "Sitzung", "rater_id": "Beurteiler"}
    assert result.config["clients"]["path"] == str(folder / "klienten.xlsx")
    assert result.config["clients"]["client_id"] == "Klient"
    assert result.config["clients"]["covariates"] == ["Gruppe"]


def test_handed_over_instruments_and_padding(handed_over):
    result, _, _ = handed_over
    inst = result.config["instruments"]
    assert inst["wai_sr"]["items"] == [f"WAI_{n:02d}" for n in range(1, 13)]  # {n} cannot pad
    assert inst["phq9"] == {"key": "phq9", "table": "klienten_fragebogen", "items": "PHQ_{n}"}
    assert inst["wai_o"]["key"] == "wai_o_s" and inst["wai_o"]["items"] == "WAIO_{n}"


def test_handed_over_identifying_columns_dropped_with_reasons(handed_over):
    result, _, out = handed_over
    assert result.config["deid"]["drop_columns"] == ["Bemerkung", "Geburtsdatum", "Name"]
    text = out.read_text()
    for column in ("Bemerkung", "Geburtsdatum", "Name"):
        comment = next(line for line in text.splitlines() if line.strip().startswith(f"# {column}:"))
        assert "looks like" in comment or "announces" in comment or "look like" in comment


def test_handed_over_decisions_are_few_and_named(handed_over):
    result, _, _ = handed_over
    # The ratings have no therapist column: the client table's 'Therapeut' supplies it.
    assert result.config["clients"]["therapist_id"] == "Therapeut"
    assert [d.split(":")[0] for d in result.decisions] == ["at instruments/wai_o/key_file"]
    decided = _decide(result.config, {
        "instruments/wai_o/key_file": str(ROOT / "config/example-keys/wai_o_simulated.yaml")})
    config = validate_config(decided)
    assert run_gate(config)["passed"]  # every identifying column is dropped before the gate


def test_validate_lists_what_is_still_to_decide(handed_over, capsys):
    from alliance.cli import main

    _, _, out = handed_over
    assert main(["validate", str(out)]) == 1
    err = capsys.readouterr().err
    assert "still to decide at instruments/wai_o/key_file" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_handed_over_study_runs_to_its_own_n(handed_over, tmp_path, monkeypatch):
    """init -> fill the listed decision -> validate -> run: the summary counts this study alone."""
    from alliance.cli import main

    result, _, out = handed_over
    study = tmp_path / "study"
    study.mkdir()
    key = ROOT / "config/example-keys/wai_o_simulated.yaml"
    text, n = re.subn(r"key_file: '?DECIDE:.*$", f"key_file: {key}", out.read_text(encoding="utf-8"),
                      flags=re.M)
    assert n == 1
    config = study / "thesis.yaml"
    # the resampling steps refit the same models many times and are not what this test is about
    config.write_text(yaml.safe_dump(without_resampling(yaml.safe_load(text)), sort_keys=False), encoding="utf-8")
    monkeypatch.chdir(study)
    monkeypatch.setenv("ALLIANCE_ID_KEY", "thesis-study-key-0123456789abcdef")
    assert main(["validate", str(config)]) == 0
    assert main(["run", str(config), "--cores", "2"]) == 0
    summary = json.loads((study / "results/data/summary.json").read_text())
    assert summary["clients"] == 12 and summary["therapists"] == 3


def test_no_data_value_in_transcript_or_yaml(handed_over):
    result, _, out = handed_over
    text = out.read_text()
    for value in (PLANTED, "Quaxwell", "K001", "Person A", "1980", "Schweigen", "keine Angabe", "KVT"):
        assert value not in result.transcript, value
        assert value not in text, value


def test_undecidable_respondent_is_a_named_decision(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    rows = [f"{c},T1,{s},{(c + s) % 4},{(c * s) % 4}" for c in range(1, 6) for s in range(1, 4)]
    (folder / "export1.csv").write_text("case,therapist,visit,x1,x2\n" + "\n".join(rows) + "\n")
    result = init_config(folder, tmp_path / "draft.yaml")
    assert result.decisions == [
        "at tables/export1/respondent: who answered this table: client, therapist or observer? "
        "(or map a respondent column)",
        "at instruments/instrument_1/key: which instrument key (shipped name, or key_file) scores this "
        "table's items?",
        "at instruments/instrument_1/items: the item columns: a pattern with {n} for the item number, or a list"]
    assert result.config["tables"]["export1"]["columns"] == {
        "client_id": "case", "therapist_id": "therapist", "session": "visit"}
    assert list(result.config["instruments"]) == ["instrument_1"]  # two columns fit no shipped key
    assert pending_decisions(yaml.safe_load((tmp_path / "draft.yaml").read_text())) == result.decisions


def test_pending_decisions_walks_lists_and_mappings():
    config = {"a": {"b": [1, "DECIDE: first?"], "c": "DECIDE: second?"}, "d": "DECIDE"}
    assert pending_decisions(config) == ["at a/b/1: first?", "at a/c: second?"]


def test_generic_id_column_loses_to_a_specific_one():
    from alliance.wizard import map_roles

    assert map_roles(["id", "Tage", "Patient", "Therapeut", "Woche", "Sitzungsnr"]) == {
        "client_id": "Patient", "therapist_id": "Therapeut", "session": "Sitzungsnr", "days_since_intake": "Tage"}
    assert map_roles(["ID", "séance", "th"]) == {"client_id": "ID", "therapist_id": "th", "session": "séance"}


def test_sheets_tsv_and_parquet(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    forms = pd.read_csv(EXAMPLE / "client_forms.csv", dtype=str)
    forms[["client_id", "therapist_id", "session", *[f"phq{n}" for n in range(1, 10)]]].to_csv(
        folder / "phq.tsv", sep="\t", index=False)
    therapist = pd.read_csv(EXAMPLE / "therapist_forms.csv")
    therapist.rename(columns={"therapist_id": "th", "session": "week"}).to_parquet(
        folder / "th_forms.parquet", index=False)
    with pd.ExcelWriter(folder / "book.xlsx", engine="openpyxl") as book:
        pd.DataFrame().to_excel(book, sheet_name="Info", index=False)
        pd.read_csv(EXAMPLE / "clients.csv").to_excel(book, sheet_name="Klienten", index=False)
    result = init_config(folder, tmp_path / "draft.yaml")
    assert result.config["clients"]["sheet"] == "Klienten"
    assert result.skipped == [(f"{folder / 'book.xlsx'} (sheet 'Info')", "an empty sheet")]
    assert result.config["clients"]["covariates"] == ["arm", "gender", "age_band"]
    assert result.config["tables"]["th_forms"]["respondent"] == "therapist"
    assert result.config["tables"]["th_forms"]["columns"] == {"therapist_id": "th", "session": "week"}
    assert result.config["instruments"]["phq9"] == {"key": "phq9", "table": "phq", "items": "phq{n}"}
    assert result.config["tables"]["phq"]["respondent"] == "client"  # from its instrument
    assert result.config["models"]["fits"] == {} and not result.config["ruptures"]["enabled"]


def test_therapist_from_the_client_table_when_the_schema_has_the_key(handed_over, tmp_path, monkeypatch):
    import alliance.wizard as wizard
    from alliance.config import load_schema

    schema = load_schema()
    schema["properties"]["clients"]["properties"]["therapist_id"] = {"type": "string"}
    monkeypatch.setattr(wizard, "load_schema", lambda: schema)
    _, folder, _ = handed_over
    result = init_config(folder, tmp_path / "again.yaml")
    assert result.config["clients"]["therapist_id"] == "Therapeut"
    assert "therapist_id" not in result.config["tables"]["beobachter_ratings"]["columns"]
    assert [d.split(":")[0] for d in result.decisions] == ["at instruments/wai_o/key_file"]


def test_items_matched_by_count_and_range_only_are_a_decision(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    forms = pd.read_csv(EXAMPLE / "client_forms.csv", dtype=str)
    renamed = forms.rename(columns={f"phq{n}": f"item{n}" for n in range(1, 10)})
    renamed.loc[5, "wai3"] = "99"  # a missing-value code not declared missing
    renamed[["client_id", "therapist_id", "session", *[f"wai{n}" for n in range(1, 13)],
             *[f"item{n}" for n in range(1, 10)]]].to_csv(folder / "client_forms.csv", index=False)
    result = init_config(folder, tmp_path / "draft.yaml")
    assert list(result.config["instruments"]) == ["phq9"]
    assert result.config["instruments"]["phq9"]["items"] == "item{n}"
    assert result.decisions == [
        "at instruments/phq9/key: are item1…item9 the Patient Health Questionnaire-9 (PHQ-9) ('phq9')? "
        "Only their count and response range fit; write that key or another"]
    assert "wai1…wai12 (12 items): named like wai_sr" in result.transcript
    # (the temporary folder's name, e.g. pytest-199, is no value of the data)
    transcript = result.transcript.replace(str(tmp_path), "TMP")
    assert "99" not in transcript and "99" not in (tmp_path / "draft.yaml").read_text().replace(str(tmp_path), "TMP")


def test_ids_that_look_like_names_are_a_decision_not_a_drop(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    ratings = pd.read_csv(EXAMPLE / "observer_ratings.csv", dtype=str)
    coders = [f"{first} {last}" for first, last in zip(
        ["Anna", "Bernd", "Clara", "Dirk", "Eva", "Frank", "Greta", "Hans", "Ida", "Jonas"],
        ["Quaxwell", "Meier", "Huber", "Wolf", "Schulz", "Koch", "Bauer", "Klein", "Lang", "Roth"])]
    ratings["rater_id"] = [coders[i % 10] for i in range(len(ratings))]
    ratings.to_csv(folder / "observer_ratings.csv", index=False)
    result = init_config(folder, tmp_path / "draft.yaml")
    assert result.config["deid"]["drop_columns"] == []
    assert [d.split(":")[0] for d in result.decisions] == ["at instruments/wai_o/key_file", "at deid/allow_columns/0"]
    assert "'rater_id' (observer_ratings.csv, the rater_id) holds values that look like a name" in result.decisions[1]
    for text in (result.transcript, (tmp_path / "draft.yaml").read_text()):
        assert "Quaxwell" not in text and "Anna" not in text


def test_without_decisions_the_written_file_validates_as_it_is(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    for name in ("client_forms.csv", "clients.csv"):
        shutil.copy(EXAMPLE / name, folder / name)
    result = init_config(folder, tmp_path / "draft.yaml")
    assert result.decisions == []
    config = validate_config(yaml.safe_load((tmp_path / "draft.yaml").read_text()))
    assert run_gate(config)["passed"]
    assert set(run_validation(config)["instruments"]) == {"wai_sr", "phq9", "gad7", "oq45"}
    assert not config["agreement"]["enabled"] and not config["interrater"]["enabled"]
    assert config["ruptures"]["enabled"] and set(config["models"]["fits"]) == {"early_phq9_post", "within_between"}
