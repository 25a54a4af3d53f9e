"""Shared fixtures: the bundled example study and one full workflow run on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "raw" / "example"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def example_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def without_resampling(config: dict) -> dict:
    """``config`` with the resampling steps switched off: the multiverse, the cluster bootstrap,
    the leave-one-therapist-out influence refits, the Krippendorff's-alpha bootstrap and the
    internal-consistency cluster bootstrap.

    For workflow tests that are about something else (identifiers, installation, a study's own
    config): these steps refit the same models many times, take about half of a run's time and
    read the same model data as the steps that stay, which the full run of the
    ``example_run`` fixture checks byte for byte."""
    models = config.setdefault("models", {})
    models.setdefault("multiverse", {})["enabled"] = False
    models.setdefault("bootstrap", {})["replicates"] = 0
    models.setdefault("diagnostics", {})["influence"] = "none"
    config.setdefault("scoring", {})["reliability_bootstrap"] = 0
    config.setdefault("interrater", {})["alpha_n_boot"] = 0
    return config


def make_workdir(path: Path, config: dict | None = None, data: Path = EXAMPLE) -> Path:
    """A working folder with config/ and data/raw/example/ as the workflow expects them."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", path / "config", dirs_exist_ok=True)
    raw = path / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if not (raw / "example").exists():
        shutil.copytree(data, raw / "example")
    if config is not None:
        (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           "--configfile", str(workdir / "config" / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def example_run(tmp_path_factory) -> Path:
    """The whole workflow, once, on a copy of the bundled example; returns the work folder."""
    workdir = make_workdir(tmp_path_factory.mktemp("example_run"))
    run_snakemake(workdir)
    return workdir

