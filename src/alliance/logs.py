"""Logging set-up shared by the workflow's scripts."""

from __future__ import annotations

import logging
import sys


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
