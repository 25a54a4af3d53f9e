"""The command line as a user meets it: help, version, run/report wrappers, and an installed wheel."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

from alliance import cli
from alliance import resources
from conftest import EXAMPLE, ROOT, example_config, without_resampling

ID_KEY = "an-example-key-of-32-characters!"


def study_folder(path: Path) -> Path:
    """A study of one's own outside the checkout: the example's tables under another name, its
    observer keys, and a config whose key comes from the environment (no key file)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLE, path / "exports")
    shutil.copytree(ROOT / "config" / "example-keys", path / "keys")
    config = example_config()
    config["pseudonymisation"].pop("key_file", None)
    for table in [*config["tables"].values(), config["clients"]]:
        table["path"] = table["path"].replace("data/raw/example/", "exports/")
    for entry in config["instruments"].values():
        if "key_file" in entry:
            entry["key_file"] = entry["key_file"].replace("config/example-keys/", "keys/")
    (path / "study.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path / "study.yaml"


def run_cli(*args: str, cwd: Path, python: str = sys.executable, env: dict | None = None):
    env = dict(os.environ if env is None else env, ALLIANCE_ID_KEY=ID_KEY)
    return subprocess.run([python, "-m", "alliance.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    try:
        expected = version("alliance")
    except PackageNotFoundError:
        expected = "unknown"
    assert capsys.readouterr().out.startswith(f"alliance {expected}")


def every_parser():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.choices and hasattr(a, "_name_parser_map"))
    return [parser, *subparsers.choices.values()]


def test_help_shows_every_default_and_no_rst_markup():
    for parser in every_parser():
        text = parser.format_help()
        assert "`" not in text, parser.prog
        for action in parser._actions:
            if action.option_strings and action.default not in (None, argparse.SUPPRESS) \
                    and not action.required and action.help:
                assert f"(default: {action.default})" in " ".join(text.split()), (parser.prog, action.dest)


def refused_before_snakemake(tmp_path, monkeypatch, capsys, config_text: str) -> str:
    (tmp_path / "study.yaml").write_text(config_text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.subprocess, "run", lambda *a, **k: pytest.fail("snakemake was started"))
    assert cli.main(["run", "study.yaml"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # no results/, no .snakemake/
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_run_refuses_a_templated_config_before_snakemake_starts(tmp_path, monkeypatch, capsys):
    config = example_config()
    config["__use_yte__"] = True
    err = refused_before_snakemake(tmp_path, monkeypatch, capsys, yaml.safe_dump(config))
    assert "__use_yte__" in err and "study.yaml" in err


def test_run_refuses_an_invalid_config_before_snakemake_starts(tmp_path, monkeypatch, capsys):
    config = example_config()
    config["tabels"] = config.pop("tables")
    err = refused_before_snakemake(tmp_path, monkeypatch, capsys, yaml.safe_dump(config))
    assert "tabels" in err


def test_targets_come_before_the_configfile_and_the_folder_is_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = cli.snakemake_command("my.yaml", targets=["power", "validate_recovery"], cores=3, dry_run=True)
    assert argv[:3] == [sys.executable, "-m", "snakemake"]
    assert argv[3:5] == ["power", "validate_recovery"]
    assert argv[-2:] == ["--configfile", "my.yaml"]  # nothing after it is read as a config file
    assert argv[argv.index("--snakefile") + 1] == str(resources.snakefile())
    assert argv[argv.index("--directory") + 1] == str(tmp_path)
    assert argv[argv.index("--cores") + 1] == "3" and "--dry-run" in argv


def test_report_wrapper_runs_snakemake_report_on_that_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_run(argv, env, check):
        seen.update(argv=argv, env=env)
        return subprocess.CompletedProcess(argv, 7)

    monkeypatch.setattr(cli, "_checked_config", lambda path: {})
    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert cli.main(["report", "my.yaml", "-o", "out/report.html"]) == 7  # snakemake's exit code
    argv = seen["argv"]
    assert argv[argv.index("--report") + 1] == "out/report.html"
    assert argv[-2:] == ["--configfile", "my.yaml"]
    assert argv[argv.index("--directory") + 1] == str(tmp_path)
    assert seen["env"][resources.ROOT_ENV] == str(resources.root())


def test_init_drafts_a_config_or_says_it_is_not_available(tmp_path, capsys):
    code = cli.main(["init", str(EXAMPLE), "-o", str(tmp_path / "draft.yaml")])
    try:
        import alliance.wizard  # noqa: F401
    except ImportError:
        assert code == 2 and "not available" in capsys.readouterr().err
        return
    assert code == 0 and (tmp_path / "draft.yaml").exists()


def test_a_root_named_in_the_environment_wins_and_its_workflow_folder_names_it(tmp_path, monkeypatch):
    copy = tmp_path / "other-checkout"
    shutil.copytree(ROOT / "workflow" / "schemas", copy / "workflow" / "schemas")
    (copy / "Snakefile").write_text("")
    monkeypatch.setenv(resources.ROOT_ENV, str(copy / "workflow"))
    assert resources.root() == copy.resolve()
    assert resources.schema_path() == copy.resolve() / "workflow" / "schemas" / "config.schema.yaml"
    assert resources.instruments_dir() == copy.resolve() / "config" / "instruments"
    assert resources.snakefile() == copy.resolve() / "Snakefile"
    monkeypatch.setenv(resources.ROOT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=resources.ROOT_ENV):
        resources.root()


def test_run_dry_run_on_a_study_of_ones_own_lists_the_jobs(tmp_path):
    config = study_folder(tmp_path)
    proc = run_cli("run", config.name, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "This was a dry-run" in proc.stdout and "rule all" in proc.stdout + proc.stderr
    assert "--configfile study.yaml" in proc.stderr  # the command is shown
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_validates_and_runs_a_study_outside_the_checkout(tmp_path):
    """About 3 minutes: a wheel build, a fresh venv and one whole workflow run."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("alliance-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ["alliance/_bundle/Snakefile", "alliance/_bundle/workflow/schemas/config.schema.yaml",
                    "alliance/_bundle/workflow/rules/common.smk", "alliance/_bundle/workflow/report/workflow.rst",
                    "alliance/_bundle/config/instruments/wai_sr.yaml", "alliance/_bundle/config/instruments/schema.json"]:
        assert shipped in names
    assert not any("demo-id-key" in name for name in names)
    # Every file of the workflow and the package ships (the run below switches the resampling
    # steps off, so their scripts are checked here rather than by running them).
    tracked = subprocess.run(["git", "ls-files", "workflow", "src/alliance", "config/instruments"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    if tracked:  # a checkout (an unpacked source archive has no git index)
        expected = {"alliance/" + f.removeprefix("src/alliance/") if f.startswith("src/") else
                    "alliance/_bundle/" + f for f in tracked}
        assert sorted(expected - names) == []

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    # The shared venv's packages for the dependencies; its editable install of this checkout is a
    # .pth file, which PYTHONPATH does not process, so `alliance` is the wheel's.
    shared = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", resources.ROOT_ENV)}
    env["PYTHONPATH"] = shared
    study = tmp_path / "study"
    config = study_folder(study)
    config.write_text(yaml.safe_dump(without_resampling(yaml.safe_load(config.read_text())), sort_keys=False))
    where = subprocess.run([python, "-c", "import alliance, alliance.resources as r; "
                            "print(alliance.__file__); print(r.root())"],
                           cwd=study, env=env, capture_output=True, text=True)
    package_file, root = where.stdout.split()
    assert package_file.startswith(str(env_dir)) and root.startswith(str(env_dir)), where.stdout + where.stderr

    checked = run_cli("validate", config.name, cwd=study, python=python, env=env)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "Data: valid" in checked.stdout

    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    dry = subprocess.run([str(env_dir / "bin" / "alliance"), "run", config.name, "--dry-run"],
                         cwd=study, env=dict(env, ALLIANCE_ID_KEY=ID_KEY), capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "This was a dry-run" in dry.stdout
    assert f"--snakefile {root}" in dry.stderr
    assert not (study / "results").exists()

    real = subprocess.run([str(env_dir / "bin" / "alliance"), "run", config.name, "--cores", "2"],
                          cwd=study, env=dict(env, ALLIANCE_ID_KEY=ID_KEY), capture_output=True, text=True)
    assert real.returncode == 0, real.stderr[-3000:]
    summary = json.loads((study / "results" / "data" / "summary.json").read_text())
    with open(study / "exports" / "clients.csv", newline="") as fh:
        clients = {row["client_id"] for row in csv.DictReader(fh)}
    assert summary["clients"] == len(clients)
