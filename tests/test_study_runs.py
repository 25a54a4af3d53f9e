"""A study's own config runs that study alone, reruns what its edits affect, and keeps its key.

Unit tests of alliance.keys and the config's refusal of YTE; slow tests run the workflow once on
a copy of the example under other names (half of its clients) and dry-run edits of its config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alliance.config import load_config, refuse_templating
from alliance.errors import ConfigError
from alliance.scoring.instruments import instrument_key_paths
from alliance.data.keys import DEMO_KEY_FINGERPRINT, fingerprint, load_id_key, refuse_demo_key, study_key
from conftest import EXAMPLE, ROOT, SNAKEMAKE, example_config, without_resampling

DEMO_KEY_FILE = ROOT / "config" / "demo-id-key.txt"
OWN_KEY = "a-study-key-of-our-own-0123456789"


# ---------------------------------------------------------------- keys
def test_environment_key_must_be_as_long_as_a_file_key(monkeypatch):
    monkeypatch.setenv("ALLIANCE_TEST_KEY", "short-key")
    with pytest.raises(ValueError, match="9 characters; at least 16") as err:
        load_id_key("ALLIANCE_TEST_KEY", str(DEMO_KEY_FILE))
    assert "short-key" not in str(err.value)


def test_empty_environment_variable_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setenv("ALLIANCE_TEST_KEY", "")
    with pytest.raises(ValueError, match="set but empty"):
        load_id_key("ALLIANCE_TEST_KEY", str(DEMO_KEY_FILE))


def test_fingerprint_is_not_the_key_and_the_demo_fingerprint_is_shipped(monkeypatch):
    monkeypatch.delenv("ALLIANCE_TEST_KEY", raising=False)
    key = load_id_key("ALLIANCE_TEST_KEY", str(DEMO_KEY_FILE))
    assert fingerprint(key) == DEMO_KEY_FINGERPRINT
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(key)) and fingerprint(key) not in key.decode()
    assert fingerprint(b"another-key-0123456789") != DEMO_KEY_FINGERPRINT


def test_demo_key_works_for_the_example_only(tmp_path, monkeypatch):
    monkeypatch.delenv("ALLIANCE_ID_KEY", raising=False)
    monkeypatch.chdir(ROOT)
    config = example_config()
    assert fingerprint(study_key(config)) == DEMO_KEY_FINGERPRINT  # the example itself
    # a copy of the example under other file contents (one value changed) is another study
    copy = tmp_path / "copy"
    shutil.copytree(EXAMPLE, copy)
    frame = pd.read_csv(copy / "clients.csv", dtype=str)
    frame.loc[0, "arm"] = "PDT" if frame.loc[0, "arm"] == "CBT" else "CBT"
    frame.to_csv(copy / "clients.csv", index=False)
    config["clients"]["path"] = str(copy / "clients.csv")
    with pytest.raises(ValueError, match=r"demo key .* only for the bundled example") as err:
        study_key(config)
    assert "export ALLIANCE_ID_KEY=" in str(err.value) and "clients.csv" in str(err.value)
    monkeypatch.setenv("ALLIANCE_ID_KEY", OWN_KEY)
    assert fingerprint(study_key(config)) == fingerprint(OWN_KEY.encode())


def test_demo_key_check_leaves_other_keys_alone(tmp_path):
    other = tmp_path / "x.csv"
    other.write_text("a\n1\n")
    refuse_demo_key(OWN_KEY.encode(), [other])  # no error


# ---------------------------------------------------------------- config is data
def test_yte_templating_is_refused_at_any_level(tmp_path):
    config = example_config()
    config["study"]["__use_yte__"] = True
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"YTE templating \(__use_yte__\) at study"):
        refuse_templating(path)
    with pytest.raises(ConfigError, match="YTE"):
        load_config(path)


def test_workflow_refuses_yte_and_unknown_keys_before_any_rule(tmp_path):
    for name, edit in {"yte": lambda c: c.update({"__use_yte__": False}),
                       "unknown": lambda c: c.update({"tabels": {}})}.items():
        config = example_config()
        edit(config)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT),
                               "-n", "--configfile", str(path)], capture_output=True, text=True)
        assert proc.returncode != 0
        assert ("YTE templating" if name == "yte" else "'tabels' is not a known key") in proc.stderr + proc.stdout
        assert "Building DAG" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- instrument keys by path
def own_instrument_config(tmp_path: Path) -> dict:
    """The example with GAD-7 scored from a key file of its own under a key name not shipped."""
    key = yaml.safe_load((ROOT / "config" / "instruments" / "gad7.yaml").read_text())
    key["name"] = "my_anxiety_scale" if "name" in key else key.get("name")
    path = tmp_path / "keys" / "my_anxiety_scale.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(key, sort_keys=False))
    config = example_config()
    config["instruments"]["gad7"] = {"key": "my_anxiety_scale", "key_file": str(path),
                                     "table": "client_forms", "items": "gad{n}"}
    return config


def test_instrument_key_by_path_alone_builds_the_job_graph(tmp_path):
    config = own_instrument_config(tmp_path)
    assert str(tmp_path / "keys" / "my_anxiety_scale.yaml") in instrument_key_paths(config)
    assert not any(p.endswith("config/instruments/my_anxiety_scale.yaml") for p in instrument_key_paths(config))
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    validate = subprocess.run([str(SNAKEMAKE.parent / "alliance"), "validate", str(path)], cwd=ROOT,
                              capture_output=True, text=True)
    assert validate.returncode == 0, validate.stderr
    proc = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT), "-n",
                           "--configfile", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ingest" in proc.stdout


# ---------------------------------------------------------------- one study per run (slow)
def own_study(workdir: Path) -> Path:
    """Half of the example's clients under other table names and paths, with a config of its own."""
    data = workdir / "exports"
    data.mkdir(parents=True)
    clients = pd.read_csv(EXAMPLE / "clients.csv", dtype=str, keep_default_na=False)
    kept = set(clients["client_id"].iloc[::2])
    names = {"client_forms.csv": "fragebogen.csv", "therapist_forms.csv": "therapeuten.csv",
             "observer_ratings.csv": "rater.csv", "clients.csv": "klienten.csv"}
    for source, target in names.items():
        frame = pd.read_csv(EXAMPLE / source, dtype=str, keep_default_na=False)
        frame[frame["client_id"].isin(kept)].to_csv(data / target, index=False)
    config = without_resampling(example_config())
    del config["pseudonymisation"]["key_file"]
    config["study"]["name"] = "Own study\n\n.. raw:: html\n\n   <script>alert('x')</script>\n"
    config["tables"] = {
        "forms": {"path": "exports/fragebogen.csv", "respondent": "client"},
        "th": {"path": "exports/therapeuten.csv", "respondent": "therapist"},
        "obs": {"path": "exports/rater.csv", "respondent": "observer"},
    }
    config["clients"]["path"] = "exports/klienten.csv"
    table_of = {"client_forms": "forms", "therapist_forms": "th", "observer_ratings": "obs"}
    for entry in config["instruments"].values():
        entry["table"] = table_of[entry["table"]]
        if entry.get("key_file"):
            entry["key_file"] = str(ROOT / entry["key_file"])
    path = workdir / "my-study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path, len(kept)


def snakemake(workdir: Path, config: Path, *args: str, key: str = OWN_KEY) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLIANCE_ID_KEY": key}
    return subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
                           "--configfile", str(config), *args], capture_output=True, text=True, env=env)


def planned_rules(workdir: Path, config: Path, key: str = OWN_KEY) -> dict[str, int]:
    """Rule -> job count of a dry run with Snakemake's rerun triggers."""
    proc = snakemake(workdir, config, "-n", "--rerun-triggers", "params", "input", "mtime", "code", key=key)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    stats = text.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", stats, re.M)
            if m.group(1) not in ("total", "job")}


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("own_study")
    shutil.copytree(ROOT / "config", workdir / "config")  # the example's config is there, unused
    config, n_clients = own_study(workdir)
    proc = snakemake(workdir, config, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir, config, n_clients


@pytest.mark.slow
def test_own_config_runs_that_study_alone(own_run):
    workdir, config, n_clients = own_run
    summary = json.loads((workdir / "results" / "data" / "summary.json").read_text())
    assert n_clients == 200  # of the example's 400
    assert summary["clients"] == n_clients
    fingerprint_file = (workdir / "results" / "data" / "key_fingerprint.txt").read_text().strip()
    assert fingerprint_file == fingerprint(OWN_KEY.encode())
    assert planned_rules(workdir, config) == {}


@pytest.mark.slow
def test_study_name_cannot_inject_html_into_the_report(own_run):
    workdir, config, _ = own_run
    proc = snakemake(workdir, config, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (workdir / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(" not in html


@pytest.mark.slow
def test_a_new_key_reruns_the_pseudonymising_steps(own_run):
    workdir, config, _ = own_run
    plan = planned_rules(workdir, config, key="yet-another-key-of-ours-0987654321")
    assert {"key_fingerprint", "ingest", "score", "model_data", "model_fit"} <= set(plan)  # (no multiverse here)
    assert not {"deid_gate", "validate_data"} & set(plan)


def edited(config: Path, edit) -> Path:
    document = yaml.safe_load(config.read_text())
    edit(document)
    path = config.with_name("edited.yaml")
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


@pytest.mark.slow
def test_config_edits_rerun_what_they_affect_and_nothing_else(own_run):
    workdir, config, _ = own_run

    def drop_column(c):
        c["clients"]["covariates"].remove("age_band")
        c["deid"]["drop_columns"] = ["age_band"]

    def covariate(c):
        c["models"]["fits"]["therapist_client"]["covariates"] = ["arm", "gender"]

    def label(c):
        c["models"]["fits"]["therapist_client"]["label"] = "Therapist and client contributions"

    def mapping(c):
        c["instruments"]["gad7"]["items"] = [f"gad{n}" for n in range(1, 8)]

    never = {"key_fingerprint", "power", "power_batch", "recovery_batch", "validate_recovery"}
    data_steps = {"deid_gate", "validate_data", "ingest"}

    plan = planned_rules(workdir, edited(config, drop_column))
    assert data_steps <= set(plan) and not never & set(plan)

    # a covariate changes the model's dataset: the one step that writes every dataset reruns,
    # and with it every fit (and every specification, where the multiverse is on; not in this
    # study's config, see without_resampling)
    plan = planned_rules(workdir, edited(config, covariate))
    assert plan["model_data"] == 1 and plan["model_fit"] == 7 and "model_specification" not in plan
    assert not (data_steps | {"score"} | never) & set(plan)

    # a label decides no dataset: that model's fit alone, and what reads its fit (tables, forest
    # plot, methods, landing page) or the config (provenance)
    assert planned_rules(workdir, edited(config, label)) == {
        "model_fit": 1, "model_tables": 1, "alliance_forest_plot": 1, "therapist_icc": 1, "manuscript_tables": 1,
        "methods_paragraph": 1, "landing_page": 1, "provenance": 1, "all": 1,
        # the report's HTML pages of what changed (issue 17)
        "report_pages_model": 1, "report_pages_alliance_effects": 1, "report_pages_therapist_icc": 1,
        "report_pages_methods": 1, "report_pages_data": 1,
        # its diagnostics (the model changed)
        "model_diagnostics": 1}

    plan = planned_rules(workdir, edited(config, mapping))
    assert {"validate_data", "ingest", "score"} <= set(plan)
    assert not ({"deid_gate"} | never) & set(plan)


# ---------------------------------------------------------------- config strings in tables
HOSTILE_LABEL = "Early | *alliance*\n\n.. raw:: html\n<script>alert(1)</script> \\end{table} _x_"


def test_a_model_label_is_escaped_for_every_table_format(tmp_path):
    import zipfile

    from alliance.report.tables import fixed_effects_table, markdown_text

    fixed = pd.DataFrame({"term": ["(Intercept)"], "estimate": [1.0], "se": [0.1], "df": [10.0], "t": [10.0],
                          "p": [0.001], "ci_low": [0.8], "ci_high": [1.2]})
    table = fixed_effects_table(fixed, title=f"Fixed Effects: {HOSTILE_LABEL}", labels={"(Intercept)": HOSTILE_LABEL})
    markdown = table.to_markdown()
    assert "<script>" in markdown  # Markdown shows it as text (no HTML renderer runs on these files) ...
    assert "\n.. raw" not in markdown and "Early \\| \\*alliance\\*" in markdown  # ... on one line, literal
    assert all(line.count(" | ") == markdown.splitlines()[4].count(" | ") for line in markdown.splitlines()[4:7])
    latex = table.to_latex()
    assert "\\end{table} \\_x" not in latex and "\\textbackslash{}end\\{table\\}" in latex
    assert "\n\n" not in latex
    page = table.to_html(standalone=True)
    assert "<script>" not in page and "&lt;script&gt;" in page
    docx = table.to_docx(tmp_path / "t.docx")
    with zipfile.ZipFile(docx) as archive:
        document = archive.read("word/document.xml").decode()
    assert "<script>" not in document and "&lt;script&gt;" in document
    assert markdown_text("a\nb_c") == "a b\\_c"


@pytest.mark.slow
def test_demo_key_on_other_data_stops_the_run_before_ingest(tmp_path):
    """The README's old trap: another study's config with the example's demo key_file."""
    workdir = tmp_path / "study"
    workdir.mkdir()
    config, _ = own_study(workdir)
    document = yaml.safe_load(config.read_text())
    document["pseudonymisation"]["key_file"] = str(DEMO_KEY_FILE)
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "ALLIANCE_ID_KEY"}
    proc = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
                           "--configfile", str(config), "--cores", "1", "ingest"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    log = (workdir / "logs" / "key_fingerprint.log").read_text()
    assert "only for the bundled example" in log and "export ALLIANCE_ID_KEY=" in log
    assert not (workdir / "results" / "interim").exists()
    assert (workdir / "results" / "data" / "validation_report.json").exists()  # the gate and validation ran first
