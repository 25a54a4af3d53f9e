"""The de-identification corpus (tests/deid_corpus/cases.yaml): every hostile input is refused by
name, or dropped unread and listed; no planted value reaches a message or the gate's report."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alliance.errors import IdentifierError
from alliance.data.steps import read_study, run_gate

HERE = Path(__file__).parent
CORPUS = yaml.safe_load((HERE / "deid_corpus" / "cases.yaml").read_text(encoding="utf-8"))
OBSERVER_KEY = HERE / "bad_inputs" / "keys" / "observer3.yaml"

CASES = [pytest.param(name, spec["at"], spec["expect"], value, id=f"{name}[{i}]")
         for name, spec in CORPUS["classes"].items() for i, value in enumerate(spec["values"])]
CLEAN = [pytest.param(spec["at"], value, id=f"clean-{spec['at']}[{value}]")
         for spec in CORPUS["clean"] for value in spec["values"]]


def base_study():
    clients = [f"P{i:02d}" for i in range(1, 7)]
    forms = pd.DataFrame({
        "client_id": [c for c in clients for _ in range(3)],
        "therapist_id": [("TH1" if i < 3 else "TH2") for i in range(6) for _ in range(3)],
        "session": [str(s) for _ in clients for s in (1, 2, 3)],
        **{f"gad{k}": [str((k + r) % 4) for r in range(18)] for k in range(1, 8)},
    })
    observer = pd.DataFrame({
        "client_id": ["P01", "P01", "P04", "P04"], "therapist_id": ["TH1", "TH1", "TH2", "TH2"],
        "session": ["1"] * 4, "rater_id": ["R1", "R2", "R1", "R2"],
        "obs1": ["5", "4", "3", "4"], "obs2": ["6", "6", "4", "5"], "obs3": ["5", "5", "4", "4"],
    })
    people = pd.DataFrame({"client_id": clients, "arm": ["CBT", "PDT"] * 3,
                           "site": ["S1", "S1", "S2", "S2", "S1", "S2"]})
    return {"client_forms": forms, "observer_ratings": observer, "clients": people}


def config(clients_file="clients.csv", covariates=("arm", "site")):
    return {
        "tables": {"client_forms": {"path": "client_forms.csv", "respondent": "client"},
                   "observer_ratings": {"path": "observer_ratings.csv", "respondent": "observer"}},
        "clients": {"path": clients_file, "client_id": "client_id", "covariates": list(covariates)},
        "instruments": {"gad7": {"key": "gad7", "table": "client_forms", "items": "gad{n}"},
                        "obs": {"key": "wai_o_s", "key_file": "observer3.yaml",
                                "table": "observer_ratings", "items": "obs{n}"}},
        "deid": {"drop_columns": [], "allow_columns": []},
    }


def plant(where: Path, at: str, value):
    """Write the study with ``value`` planted at ``at``; return (config, file, column)."""
    shutil.copy(OBSERVER_KEY, where / "observer3.yaml")
    frames, conf = base_study(), config()
    file, column = None, at
    if at in ("client_id", "therapist_id"):
        frame = frames["client_forms"]
        old = "P02" if at == "client_id" else "TH2"
        frame.loc[frame[at] == old, at] = value
        file = "client_forms.csv"
    elif at == "rater_id":
        frame = frames["observer_ratings"]
        frame.loc[frame[at] == "R2", at] = value
        file = "observer_ratings.csv"
    elif at == "site_once":
        frames["clients"].loc[1, "site"] = value
        file, column = "clients.csv", "site"
    elif at == "site_all":
        frames["clients"]["site"] = value
        file, column = "clients.csv", "site"
    elif at == "site_numeric":
        spec = next(s for s in CORPUS["classes"].values() if value in s["values"] and s["at"] == at)
        values = spec["values"]
        frames["clients"]["site"] = pd.array([values[i % len(values)] for i in range(6)], dtype="int64")
        frames["clients"].to_parquet(where / "clients.parquet")
        del frames["clients"]
        conf = config("clients.parquet")
        file, column = "clients.parquet", "site"
    elif at == "client_id_numeric":
        ids = [1, value, 3, 4, 5, 6]
        frames["clients"]["client_id"] = pd.array(ids, dtype="int64")
        frames["clients"].to_parquet(where / "clients.parquet")
        del frames["clients"]
        conf = config("clients.parquet")
        file, column = "clients.parquet", "client_id"
    elif at == "column_name":
        frames["clients"][value] = ["1", "2"] * 3
        conf = config(covariates=("arm", "site", value))
        file, column = "clients.csv", value
    elif at == "unmapped":
        frames["client_forms"]["extra"] = [value] + [None] * 17
        file, column = "client_forms.csv", "extra"
    else:
        raise ValueError(f"unknown place {at!r}")
    for name, frame in frames.items():
        frame.to_csv(where / f"{name}.csv", index=False)
    return conf, file, column


@pytest.mark.parametrize("name,at,expect,value", CASES)
def test_every_identifier_is_refused_by_name_or_dropped_unread(tmp_path, monkeypatch, name, at, expect, value):
    monkeypatch.chdir(tmp_path)
    conf, file, column = plant(tmp_path, at, value)
    if expect == "dropped":
        report = run_gate(conf)
        assert column in report["files"][file]["columns_dropped_unmapped"]
        assert str(value) not in json.dumps(report, ensure_ascii=False)
        study = read_study(conf)
        assert column not in study.frames["client_forms"].columns
        conf["deid"]["unmapped"] = "refuse"
        with pytest.raises(IdentifierError) as err:
            run_gate(conf)
        assert f"{file}, column '{column}'" in str(err.value)
        assert str(value) not in str(err.value)
        return
    with pytest.raises(IdentifierError) as err:
        run_gate(conf)
    message = str(err.value)
    line = next((ln for ln in message.splitlines() if f"{file}, column '{column}'" in ln), None)
    assert line is not None, message
    accepted = [expect] if isinstance(expect, str) else expect
    assert any(kind in line for kind in accepted), line
    if at != "column_name":
        assert str(value) not in message
        assert str(value).split()[0] not in message or len(str(value).split()[0]) < 4


@pytest.mark.parametrize("at,value", CLEAN)
def test_codes_and_categories_pass(tmp_path, monkeypatch, at, value):
    monkeypatch.chdir(tmp_path)
    conf, _, _ = plant(tmp_path, at, value)
    report = run_gate(conf)
    assert report["passed"]


PLANTED = {  # unmapped columns of the example's client forms, and one listed under drop_columns
    "Vorname": ["Wilhelmina Quastenberg", "Ottokar Zwiebelmeier"],
    "kontakt": ["w.quastenberg@example.org", "ottokar(at)zwiebel.de"],
    "geboren": ["1961-07-23", "19590214"],
    "therapist_notes": ["Klientin wirkte heute erschöpft", "talked about her brother Fridolin"],
}


@pytest.mark.slow
def test_workflow_drops_unmapped_identifiers_and_no_value_reaches_any_output(tmp_path, monkeypatch):
    from conftest import EXAMPLE, example_config, make_workdir, run_snakemake, without_resampling

    data = tmp_path / "raw"
    shutil.copytree(EXAMPLE, data)
    forms = pd.read_csv(data / "client_forms.csv", dtype=str, keep_default_na=False)
    for column, values in PLANTED.items():
        forms[column] = [values[i % len(values)] for i in range(len(forms))]
    forms.to_csv(data / "client_forms.csv", index=False)
    # Resampling steps refit models on the same model data; the planted columns never reach them.
    config = without_resampling(example_config())
    config["deid"]["drop_columns"] = ["therapist_notes"]
    workdir = make_workdir(tmp_path / "work", config, data=data)
    # Not the bundled example's files any more: the demo key is refused for them.
    monkeypatch.setenv("ALLIANCE_ID_KEY", "deid-corpus-workflow-key-0123456789")
    proc = run_snakemake(workdir)
    report_proc = run_snakemake(workdir, "--report", str(workdir / "results" / "report.html"))

    report = json.loads((workdir / "results" / "data" / "deid_report.json").read_text())
    forms_report = report["files"]["data/raw/example/client_forms.csv"]
    assert forms_report["columns_dropped_unmapped"] == ["Vorname", "kontakt", "geboren"]
    assert forms_report["columns_dropped"] == ["therapist_notes"]
    planted = [v for values in PLANTED.values() for v in values]
    leaks = []
    for folder in ("results", "logs", ".snakemake"):
        for path in (workdir / folder).rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                leaks += [(str(path.relative_to(workdir)), v) for v in planted if v.encode() in content]
    assert leaks == []
    assert not any(v in p.stdout or v in p.stderr for p in (proc, report_proc) for v in planted)
    # The report embeds results as base64 data URIs: decode them and scan their text too.
    html = (workdir / "results" / "report.html").read_text(encoding="utf-8", errors="replace")
    embedded = [base64.b64decode(m) for m in re.findall(r"base64,([A-Za-z0-9+/=]+)", html)]
    assert embedded, "the report embeds no results: the scan below would prove nothing"
    assert [v for v in planted for blob in embedded if v.encode() in blob] == []
