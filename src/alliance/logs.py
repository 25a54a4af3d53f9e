"""Logging set-up shared by the workflow's scripts."""

from __future__ import annotations

import atexit
import logging
import resource
import sys
import time
from collections.abc import Iterable


def log_to_file(path: str, level: int = logging.INFO) -> None:
    """Send logging, warnings and uncaught errors of this process to ``path``.

    Warnings (statsmodels' ConvergenceWarning among them) are captured into the log rather
    than lost; an uncaught error is logged in full before the process exits.
    """
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)

    def excepthook(kind, value, tb):
        logging.getLogger("alliance").error("%s", value, exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = excepthook
    started = time.perf_counter()
    atexit.register(_log_resources, started)


def _log_resources(started: float) -> None:
    """One line per step with its wall time and peak memory, read by benchmarks/rom_scale.py."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    logging.getLogger("alliance.resources").info(
        "resources: wall_seconds=%.2f peak_rss_mib=%.1f", time.perf_counter() - started, peak_mib)


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
             disable: bool = False):
    """Wrap ``iterable`` in a tqdm progress bar: in the log when logging is configured (a
    workflow job: one line per tenth), else on stderr (an interactive session).

    The one progress helper of the package; long steps (bootstrap, recovery, power) use it.
    """
    from tqdm import tqdm

    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None
    if logging.getLogger().handlers:
        stream = _LogStream(logger or logging.getLogger("alliance.progress"))
        return tqdm(iterable, total=total, desc=desc, file=stream, ascii=True, ncols=90, mininterval=0,
                    miniters=max(1, (total or 10) // 10), leave=False, disable=disable)
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=2.0, disable=disable)
