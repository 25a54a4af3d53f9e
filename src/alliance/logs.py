"""Logging set-up shared by the workflow's scripts."""

from __future__ import annotations

import atexit
import logging
import resource
import sys
import time


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
