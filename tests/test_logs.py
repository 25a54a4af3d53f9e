"""The workflow steps' logging: warnings summarised without paths or text values, progress a
person sees on the terminal and in the log (alliance.logs; no Snakemake here)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from alliance import logs
from alliance.logs import WarningSummary, progress, short_warning

# --------------------------------------------------------------------------- warnings


def test_short_warning_drops_paths_and_keeps_the_first_line():
    text = short_warning("could not read /home/ana/study/export.csv\n  second line with detail")
    assert text == "could not read <path>"


def test_short_warning_shows_a_library_s_quoted_text_by_its_shape_only():
    text = short_warning("Cannot cast 'Anna Smith' (\"x2\", '33')")
    assert "Anna" not in text and "Smith" not in text and "x2" not in text
    assert "'text of 10 characters (letters, spaces)'" in text
    assert "'33'" in text  # a short number is no one's name


def test_short_warning_keeps_the_package_s_own_wording():
    message = "20 target(s) in column 'target' rated by one rater only (e.g. 1): dropped from the ICC"
    assert short_warning(message, own=True) == message


def test_short_warning_is_shortened():
    text = short_warning("x" * 500)
    assert len(text) == logs.MESSAGE_LENGTH and text.endswith("…")


def test_summary_counts_by_category_and_logs_each_distinct_warning_once(caplog):
    caplog.set_level(logging.WARNING, logger="py.warnings")
    summary = WarningSummary()
    assert summary.summary() is None
    for _ in range(2):
        summary.add("ConvergenceWarning", "Maximum Likelihood optimization failed to converge.")
    summary.add("RuntimeWarning", "invalid value encountered in divide")
    assert summary.summary() == ("3 warnings: ConvergenceWarning ×2 (Maximum Likelihood optimization failed to "
                                 "converge.), RuntimeWarning ×1 (invalid value encountered in divide)")
    logged = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
    assert logged == ["ConvergenceWarning: Maximum Likelihood optimization failed to converge.",
                      "RuntimeWarning: invalid value encountered in divide"]


STEP = textwrap.dedent("""
    import sys, types, warnings
    import numpy as np
    from alliance.logs import log_to_file

    log_to_file(sys.argv[1])
    # a library (any module outside the package) that quotes a data value in its warning
    fakelib = types.ModuleType("fakelib")
    exec("import warnings\\n"
         "def convert():\\n"
         "    warnings.warn(\\"Could not convert 'Anna Smith' to float\\", UserWarning)\\n", fakelib.__dict__)
    for _ in range(3):
        fakelib.convert()
    for value in (1, 2):
        warnings.warn(f"step {value} did not converge", RuntimeWarning)
    with np.errstate(divide="warn"):
        np.array([1.0]) / np.array([0.0])
    import matplotlib
    print("backend", matplotlib.get_backend())
""")


def run_step(tmp_path: Path, code: str, *env: tuple[str, str]) -> tuple[str, subprocess.CompletedProcess]:
    log = tmp_path / "step.log"
    script = tmp_path / "step.py"
    script.write_text(code, encoding="utf-8")
    import os

    environment = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", logs.PROGRESS_ENV)}
    environment.update(env)
    proc = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, env=environment,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return log.read_text(encoding="utf-8"), proc


def test_a_step_logs_a_warning_summary_without_paths_or_text_values(tmp_path):
    log, proc = run_step(tmp_path, STEP)
    assert "WARNING py.warnings: UserWarning: Could not convert 'text of 10 characters (letters, spaces)' to float" \
        in log
    assert log.count("Could not convert") == 2  # logged once, then in the summary
    assert "RuntimeWarning: divide by zero encountered in divide" in log
    # Python shows a warning repeated at the same place and with the same text once
    assert ("summary: 4 warnings: RuntimeWarning ×3 (step 1 did not converge), UserWarning ×1 (Could "
            "not convert 'text of 10 characters (letters, spaces)' to float)") in log
    assert "Anna" not in log and ".py:" not in log and str(tmp_path) not in log
    # the terminal gets one line naming the log, and no warning text
    assert proc.stderr == f"{tmp_path / 'step.log'}: 4 warnings (RuntimeWarning ×3, UserWarning ×1); see the log\n"
    # a step draws without a display; the resources line stays last (benchmarks/rom_scale.py)
    assert "backend agg" in proc.stdout.lower()
    assert log.rstrip().splitlines()[-1].startswith("INFO alliance.resources: resources: wall_seconds=")


def test_a_step_without_warnings_says_nothing_on_the_terminal(tmp_path):
    log, proc = run_step(tmp_path, "import sys\nfrom alliance.logs import log_to_file\nlog_to_file(sys.argv[1])\n")
    assert proc.stderr == "" and "warning" not in log.lower()


# --------------------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_off_a_terminal_writes_a_few_milestones(caplog, monkeypatch):
    monkeypatch.delenv(logs.PROGRESS_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="test.progress")
    terminal = Terminal(tty=False)
    seen = list(progress(range(20), desc="bootstrap m batch 1", logger=logging.getLogger("test.progress"),
                         terminal=terminal))
    assert seen == list(range(20))
    lines = terminal.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"bootstrap m batch 1: {n}/20" for n in (5, 10, 15, 20)]
    assert "\r" not in terminal.getvalue()
    logged = [r.getMessage() for r in caplog.records if r.name == "test.progress"]
    assert logged[0] == "bootstrap m batch 1: started, 20 to do"
    assert [line.split(" (")[0] for line in logged[1:]] == [f"bootstrap m batch 1: {n}/20" for n in range(2, 21, 2)]
    assert logged[-1].startswith("bootstrap m batch 1: 20/20 (100%) after ")


def test_progress_on_a_terminal_draws_a_bar(monkeypatch):
    monkeypatch.delenv(logs.PROGRESS_ENV, raising=False)
    terminal = Terminal(tty=True)
    bar = progress(range(4), desc="recovery batch 0", terminal=terminal)
    assert list(bar) == [0, 1, 2, 3]
    bar.close()
    shown = terminal.getvalue()
    assert "\r" in shown and "recovery batch 0" in shown and "4/4" in shown and "100%|" in shown


@pytest.mark.parametrize("chosen, expected", [("off", ""), ("lines", "power c batch 0: 2/2 (100%)")])
def test_progress_on_the_terminal_can_be_chosen(monkeypatch, chosen, expected):
    monkeypatch.setenv(logs.PROGRESS_ENV, chosen)
    terminal = Terminal(tty=True)
    list(progress([1, 2], desc="power c batch 0", terminal=terminal))
    shown = terminal.getvalue()
    assert expected in shown and "\r" not in shown
    if not expected:
        assert shown == ""


def test_disabled_progress_is_silent():
    terminal = Terminal(tty=True)
    bar = progress(range(3), desc="x", disable=True, terminal=terminal)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert terminal.getvalue() == ""


def test_a_step_s_progress_reaches_stderr_and_the_log(tmp_path):
    code = ("import sys\nfrom alliance.logs import log_to_file, progress\nlog_to_file(sys.argv[1])\n"
            "for _ in progress(range(8), desc='power t4 batch 0'):\n    pass\n")
    log, proc = run_step(tmp_path, code)
    assert [line.split(" (")[0] for line in proc.stderr.splitlines()] == \
        [f"power t4 batch 0: {n}/8" for n in (2, 4, 6, 8)]
    assert "power t4 batch 0: 8/8 (100%)" in log


# --------------------------------------------------------------------------- the run's console


def test_a_long_list_of_files_in_snakemake_s_reason_is_cut():
    files = ", ".join(f"results/f{i}.csv" for i in range(120))
    reason = f"Missing output files: a.csv, b.csv; Input files updated by another job: {files}"
    assert logs.shorten_file_lists(reason) == ("Missing output files: a.csv, b.csv; Input files updated by another "
                                               "job: results/f0.csv, results/f1.csv, results/f2.csv and 117 more")
    assert logs.shorten_file_lists("Params have changed since last execution: a, b, c, d, e, f, g, h, i, j, k l") \
        .endswith("k l")  # not a file list


def test_the_recap_names_the_step_logs_with_warnings(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "fit.log").write_text(
        "INFO alliance.warnings: summary: 3 warnings: ConvergenceWarning ×3 (x)\n", encoding="utf-8")
    (tmp_path / "quiet.log").write_text("INFO alliance.resources: resources: wall_seconds=1\n", encoding="utf-8")
    assert logs.warning_recap(tmp_path) == f"Warnings in 1 step: {(tmp_path / 'models' / 'fit.log').as_posix()} (3); " \
                                           "each log says which"
    assert logs.warning_recap(tmp_path, since=(tmp_path / "quiet.log").stat().st_mtime + 60) is None
