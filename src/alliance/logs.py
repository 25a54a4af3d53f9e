"""Logging set-up shared by the workflow's scripts: the step's log file, a short summary of the
warnings the libraries raised, and the one progress helper of the package.

Every script under ``workflow/scripts/`` starts with :func:`log_to_file`. A Snakemake job
inherits the terminal's stderr (its own output is not redirected), so what this module writes
to stderr reaches the person running ``make run``: a progress bar on a terminal, a few
plain-text milestones elsewhere (CI logs, a test's captured output), and one line per step
that raised warnings. Everything else goes to the step's log file.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import re
import resource
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TextIO

from alliance.errors import describe_value

#: ``ALLIANCE_PROGRESS``: ``bar`` (a tqdm bar on the terminal), ``lines`` (plain-text
#: milestones) or ``off``; unset, a bar when stderr is a terminal, milestones otherwise.
PROGRESS_ENV = "ALLIANCE_PROGRESS"
#: terminal milestones per step when stderr is no terminal (every quarter)
TERMINAL_MILESTONES = 4
#: log lines per step (every tenth)
LOG_MILESTONES = 10
#: the longest warning message kept in the log and the summary, in characters
MESSAGE_LENGTH = 110

# The log file of this process's workflow step, once log_to_file has set it up.
_step_log: str | None = None


def log_to_file(path: str, level: int = logging.INFO) -> None:
    """Send logging, warnings and uncaught errors of this workflow step to ``path``.

    Warnings (statsmodels' ConvergenceWarning, numpy's RuntimeWarning, pandas' FutureWarning
    among them) are captured: each distinct one is logged once, as its category and a
    shortened message without the source path; when the step ends, the log gets a summary
    line and the terminal one line naming the log (:class:`WarningSummary`). An uncaught error
    is logged in full before the process exits. Figures are drawn with the Agg backend (a
    step shows no window); an interactive session, Jupyter among them, keeps its own.
    """
    global _step_log
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # matplotlib's PDF writer subsets fonts through fontTools, which logs every table it prunes
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    summary = WarningSummary()
    summary.install()
    _step_log = str(path)
    _use_agg_backend()

    def excepthook(kind, value, tb):
        logging.getLogger("alliance").error("%s", value, exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = excepthook
    started = time.perf_counter()
    atexit.register(_finish_step, started, summary, str(path))


def _use_agg_backend() -> None:
    """Draw without a display in a workflow step (set before matplotlib is imported)."""
    os.environ["MPLBACKEND"] = "Agg"
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].use("Agg")


def _finish_step(started: float, summary: WarningSummary, path: str) -> None:
    summary.report(path)
    _log_resources(started)


def _log_resources(started: float) -> None:
    """One line per step with its wall time and peak memory, read by benchmarks/rom_scale.py."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    logging.getLogger("alliance.resources").info(
        "resources: wall_seconds=%.2f peak_rss_mib=%.1f", time.perf_counter() - started, peak_mib)


# --------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------

_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")
# A path of two or more parts (/home/x/file.py, C:\data\export.csv): whose files, not ours.
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.~-]+){2,}[\\/]?")


def short_warning(message: object, own: bool = False) -> str:
    """The first line of a warning's message, at most :data:`MESSAGE_LENGTH` characters, with
    file paths replaced by ``<path>``.

    A library's message may quote a value of the data it was given, so unless the warning is
    the package's own (``own``; its messages follow the rule never to show a text value), every
    quoted text is replaced by its shape (:func:`alliance.errors.describe_value`): numbers stay
    as they are, text never shows.
    """
    text = str(message).strip().splitlines()[0] if str(message).strip() else ""
    text = _PATH.sub("<path>", text)
    if not own:
        text = _QUOTED.sub(_quoted_shape, text)
    if len(text) > MESSAGE_LENGTH:
        text = text[:MESSAGE_LENGTH - 1].rstrip() + "…"
    return text


def _quoted_shape(match: re.Match) -> str:
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    return f"'{describe_value(inner)}'" if inner else match.group(0)


class WarningSummary:
    """Collects the warnings of one workflow step and summarises them when the step ends.

    Installed as :func:`warnings.showwarning` by :func:`log_to_file`. Each distinct warning is
    logged once (category and shortened message, :func:`short_warning`; no source path, no
    source line); :meth:`summary` counts them all by category, e.g. ``3 warnings:
    ConvergenceWarning ×2 (Maximum Likelihood optimization failed to converge…),
    RuntimeWarning ×1 (invalid value encountered in divide)``.
    """

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or logging.getLogger("py.warnings")
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self._logged: set[tuple[str, str]] = set()

    def install(self) -> None:
        warnings.showwarning = self.showwarning

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """The :func:`warnings.showwarning` interface; ``filename``, ``lineno`` and ``line``
        are deliberately not shown."""
        name = getattr(category, "__name__", str(category))
        text = short_warning(message, own=_raised_by_package())
        self.add(name, text)

    def add(self, category: str, text: str) -> None:
        self.counts[category] += 1
        self.first.setdefault(category, text)
        if (category, text) not in self._logged:
            self._logged.add((category, text))
            self.logger.warning("%s: %s", category, text)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str | None:
        """One line counting the warnings by category (most frequent first), each with its
        first message; None when there were none."""
        if not self.total:
            return None
        parts = [f"{name} ×{n} ({self.first[name]})" if self.first[name] else f"{name} ×{n}"
                 for name, n in sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))]
        return f"{self.total} warning{'s' if self.total != 1 else ''}: " + ", ".join(parts)

    def report(self, log_path: str, terminal: TextIO | None = None) -> None:
        """Write the summary to the log and one line naming the log to the terminal."""
        line = self.summary()
        if line is None:
            return
        logging.getLogger("alliance.warnings").info("summary: %s", line)
        counts = ", ".join(f"{name} ×{n}" for name, n in
                           sorted(self.counts.items(), key=lambda item: (-item[1], item[0])))
        stream = terminal or sys.stderr
        try:
            stream.write(f"{log_path}: {self.total} warning{'s' if self.total != 1 else ''} "
                         f"({counts}); see the log\n")
            stream.flush()
        except (OSError, ValueError):  # the terminal is gone (closed pipe): the log has it
            pass


def _raised_by_package() -> bool:
    """Whether the warning being shown was raised by this package's code (not a library's)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "") in ("alliance.logs", "warnings"):
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__", "").startswith("alliance.")


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


class _LogStream:
    """File-like object that turns tqdm's status lines into log records."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def write(self, text: str) -> int:
        line = text.strip("\r\n ")
        if line:
            self.logger.info(line)
        return len(text)

    def flush(self) -> None:
        pass


def progress(iterable: Iterable, total: int | None = None, desc: str = "", logger: logging.Logger | None = None,
             disable: bool = False, terminal: TextIO | None = None):
    """Wrap ``iterable`` so that a person sees how far a long step has come.

    The one progress helper of the package; long steps (bootstrap, recovery, power) use it.

    - In a workflow step (after :func:`log_to_file`): a line in the log at every tenth, and on
      the terminal (stderr, which Snakemake leaves to its jobs) a tqdm bar when stderr is a
      terminal, else a plain-text line at every quarter, so that CI logs and captured test
      output stay readable. ``ALLIANCE_PROGRESS=bar|lines|off`` overrides the choice.
    - Elsewhere with logging configured (e.g. pytest's caplog): the lines in the log only.
    - In an interactive session: a tqdm bar on stderr.

    Returns an iterable with a ``close()`` method.
    """
    from tqdm import tqdm

    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None
    if disable:
        return tqdm(iterable, total=total, disable=True)
    if _step_log is not None or terminal is not None:
        return StepProgress(iterable, total, desc, logger or logging.getLogger("alliance.progress"),
                            terminal if terminal is not None else sys.stderr)
    if logging.getLogger().handlers:
        stream = _LogStream(logger or logging.getLogger("alliance.progress"))
        return tqdm(iterable, total=total, desc=desc, file=stream, ascii=True, ncols=90, mininterval=0,
                    miniters=max(1, (total or 10) // 10), leave=False)
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=2.0)


def terminal_mode(terminal: TextIO) -> str:
    """``bar``, ``lines`` or ``off``: :data:`PROGRESS_ENV` if set, else a bar on a terminal."""
    chosen = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if chosen in ("bar", "lines", "off"):
        return chosen
    isatty = getattr(terminal, "isatty", None)
    try:
        return "bar" if isatty is not None and isatty() else "lines"
    except (OSError, ValueError):
        return "lines"


def _terminal_width(terminal: TextIO, fallback: int = 80) -> int:
    """The terminal's width; ``fallback`` when it reports none (a pseudo-terminal of size 0,
    on which tqdm would draw nothing)."""
    try:
        columns = os.get_terminal_size(terminal.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        columns = 0
    return columns if columns > 0 else fallback


class StepProgress:
    """Progress of one workflow step: milestones in the log and a bar or lines on the terminal."""

    def __init__(self, iterable: Iterable, total: int | None, desc: str, logger: logging.Logger,
                 terminal: TextIO):
        self.iterable, self.total, self.desc = iterable, total, desc
        self.logger, self.terminal = logger, terminal
        self.mode = terminal_mode(terminal)
        self.done = 0
        self._bar = None
        self._started = time.perf_counter()

    def __iter__(self) -> Iterator:
        self._started = time.perf_counter()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, file=self.terminal, mininterval=0.5,
                             ncols=_terminal_width(self.terminal), leave=True)
        self.logger.info("%s: started, %s to do", self.desc, self.total if self.total is not None else "?")
        for item in self.iterable:
            yield item
            self.done += 1
            if self._bar is not None:
                self._bar.update(1)
            if self._crossed(LOG_MILESTONES):
                self.logger.info("%s", self.status())
            if self.mode == "lines" and self._crossed(TERMINAL_MILESTONES):
                self._write(self.status() + "\n")
        self.close()

    def _crossed(self, parts: int) -> bool:
        """Whether the last item crossed one of ``parts`` equal milestones (always at the end)."""
        if not self.total:
            return False
        return self.done * parts // self.total > (self.done - 1) * parts // self.total

    def status(self) -> str:
        elapsed = time.perf_counter() - self._started
        if not self.total:
            return f"{self.desc}: {self.done} done after {elapsed:.1f} s"
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        text = f"{self.desc}: {self.done}/{self.total} ({100 * self.done // self.total}%) after {elapsed:.1f} s"
        return text + (f", about {left:.0f} s to go" if 0 < self.done < self.total else "")

    def _write(self, text: str) -> None:
        try:
            self.terminal.write(text)
            self.terminal.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --------------------------------------------------------------------------------------
# The run's recap
# --------------------------------------------------------------------------------------

_SUMMARY_LINE = re.compile(r"^INFO alliance\.warnings: summary: (\d+) warnings?: ", re.MULTILINE)


def warning_recap(folder: str | os.PathLike, since: float = 0.0, shown: int = 5) -> str | None:
    """One line naming the step logs under ``folder`` written since ``since`` (a time stamp)
    that hold a warning summary, e.g. ``Warnings in 2 steps: logs/interrater.log (12),
    logs/change.log (1); each log says which``; None when there are none."""
    from pathlib import Path

    found = []
    for path in sorted(Path(folder).rglob("*.log")):
        try:
            if path.stat().st_mtime < since:
                continue
            match = _SUMMARY_LINE.search(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if match:
            found.append(f"{path.as_posix()} ({match.group(1)})")
    if not found:
        return None
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return (f"Warnings in {len(found)} step{'s' if len(found) != 1 else ''}: {', '.join(found[:shown])}{more}; "
            "each log says which")


def shorten_file_lists(reason: str, shown: int = 3, longer_than: int = 10) -> str:
    """Snakemake's reason for a job with each list of more than ``longer_than`` files cut to
    its first ``shown`` names, e.g. ``Input files updated by another job: a.csv, b.csv, c.csv
    and 117 more``.

    The reason of rule ``all`` after a fresh run lists every result (thousands of characters);
    the Snakefile passes Snakemake's reasons through this function (the package itself never
    imports Snakemake).
    """
    parts = []
    for part in reason.split("; "):
        label, sep, files = part.partition(": ")
        names = files.split(", ") if sep else []
        if len(names) > longer_than and " " not in "".join(names):
            part = f"{label}: {', '.join(names[:shown])} and {len(names) - shown} more"
        parts.append(part)
    return "; ".join(parts)

