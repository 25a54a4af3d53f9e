"""The workflow end to end on the bundled example: outputs, no raw ids, refusals, lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import EXAMPLE, ROOT, example_config, make_workdir, run_snakemake

ALLIANCE = Path(sys.executable).parent / "alliance"


def raw_ids() -> set[str]:
    ids = set()
    for name in ("client_forms.csv", "therapist_forms.csv", "observer_ratings.csv"):
        frame = pd.read_csv(EXAMPLE / name, dtype=str)
        for col in ("client_id", "therapist_id", "rater_id"):
            if col in frame:
                ids.update(frame[col].dropna().str.strip())
    return ids


def strings_in(path: Path) -> str:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        cells = [" ".join(map(str, frame.columns))]
        for col in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                cells.append(" ".join(map(str, frame[col].dropna().unique())))
        return "\n".join(cells)
    return path.read_bytes().decode("latin-1")


def test_full_run_writes_every_output(example_run):
    results = example_run / "results"
    for rel in ("data/summary.json", "data/completion.csv", "figures/missingness.png",
                "interim/administrations.parquet", "provenance.json"):
        assert (results / rel).stat().st_size > 0, rel
    summary = json.loads((results / "data" / "summary.json").read_text())
    truth = json.loads((EXAMPLE / "truth.json").read_text())
    clients = pd.read_csv(EXAMPLE / "clients.csv")
    assert summary["clients"] == len(clients)
    assert summary["therapist_switches"] == len(truth["therapist_switches"])


def test_no_raw_id_in_any_result_or_log(example_run):
    ids = raw_ids()
    assert len(ids) > 400
    files = [p for d in ("results", "logs") for p in (example_run / d).rglob("*") if p.is_file()]
    assert files
    pattern_hits = []
    for path in files:
        text = strings_in(path)
        hits = [i for i in ids if i in text]
        if hits:
            pattern_hits.append((path.relative_to(example_run), hits[:3]))
    assert pattern_hits == []


def test_administrations_are_pseudonymised(example_run):
    tidy = pd.read_parquet(example_run / "results" / "interim" / "administrations.parquet")
    assert tidy["client"].str.fullmatch(r"C-[0-9a-f]{12}").all()
    assert tidy["therapist"].str.fullmatch(r"T-[0-9a-f]{12}").all()
    observers = tidy[tidy["respondent"] == "observer"]
    assert observers["rater"].str.fullmatch(r"R-[0-9a-f]{12}").all()


def test_provenance_hashes_inputs(example_run):
    prov = json.loads((example_run / "results" / "provenance.json").read_text())
    assert any(k.endswith("client_forms.csv") for k in prov["inputs"])
    assert all(len(h) == 64 for h in prov["inputs"].values())
    assert prov["seeds"]["study.seed"] == example_config()["study"]["seed"]
    assert "snakemake" in prov["versions"]


def broken_copy(tmp_path: Path, edit) -> Path:
    data = tmp_path / "data" / "raw" / "example"
    make_workdir(tmp_path)
    path = data / "client_forms.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(path, index=False)
    return tmp_path


def test_validate_cli_names_file_row_column_and_range(tmp_path):
    workdir = broken_copy(tmp_path, lambda f: f.__setitem__("wai3", ["9"] + list(f["wai3"][1:])))
    proc = subprocess.run([str(ALLIANCE), "validate", "config/config.yaml"], cwd=workdir,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert ("data/raw/example/client_forms.csv, row 2, column 'wai3': value 9; "
            "expected a whole number from 1 to 5 (wai_sr) or empty") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_cli_accepts_the_example():
    proc = subprocess.run([str(ALLIANCE), "validate", "config/config.yaml"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Data: valid" in proc.stdout


def test_identifier_column_stops_the_run_before_anything_is_written(tmp_path):
    # A mapped column (the therapist id) holding an e-mail address; an unmapped one is dropped.
    workdir = broken_copy(tmp_path, lambda f: f.loc.__setitem__((0, "therapist_id"), "someone@example.org"))
    proc = run_snakemake(workdir, check=False)
    assert proc.returncode != 0
    log = (workdir / "logs" / "deid_gate.log").read_text()
    assert "client_forms.csv, column 'therapist_id'" in log and "someone@example.org" not in log
    written = [p for p in (workdir / "results").rglob("*") if p.is_file()] if (workdir / "results").exists() else []
    assert written == []
    cli = subprocess.run([str(ALLIANCE), "validate", "config/config.yaml"], cwd=workdir,
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "column 'therapist_id'" in cli.stderr
    assert "someone@example.org" not in cli.stderr


def test_snakemake_lint_is_clean(tmp_path):
    proc = run_snakemake(make_workdir(tmp_path), "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bundled_example_is_what_the_cli_generates(tmp_path):
    proc = subprocess.run([str(ALLIANCE), "simulate", "--out", str(tmp_path), "--seed", "20261129"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for path in sorted(EXAMPLE.iterdir()):
        if path.name == "truth.json":
            # the generator's truth has gained keys (dynamics, rupture unit) since the example was
            # made: every value the bundled truth holds must still be what the generator says
            bundled, made = json.loads(path.read_text()), json.loads((tmp_path / path.name).read_text())
            def held(made_part, bundled_part):  # the generator's values at the bundled truth's keys
                if isinstance(bundled_part, dict):
                    return {k: held(made_part[k], v) for k, v in bundled_part.items()}
                return made_part

            bundled.pop("definitions")
            assert held(made, bundled) == bundled
            continue
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
