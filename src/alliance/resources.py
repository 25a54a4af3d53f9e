"""Where the workflow's own files are: Snakefile, rules, config schema, instrument keys, report.

Three places are looked at, first match wins:

1. the folder named by the environment variable ``ALLIANCE_WORKFLOW_ROOT``. The Snakefile sets
   it to its own folder before anything else, so a workflow run (and every script it starts,
   which inherits the environment) reads the schema and instrument keys of the workflow being
   run, never those of another checkout whose editable install the venv happens to point at;
2. the checkout this module lives in (an editable install or ``PYTHONPATH=src``);
3. the copy shipped inside the installed package (``alliance/_bundle``, built from the
   checkout's ``Snakefile``, ``workflow/`` and ``config/`` by the package-dir mapping in
   pyproject.toml).

A root is a folder holding ``workflow/schemas/config.schema.yaml``; naming its ``workflow/``
subfolder instead is accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "ALLIANCE_WORKFLOW_ROOT"
_SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"
_CHECKOUT = Path(__file__).resolve().parents[2]
_BUNDLE = Path(__file__).resolve().parent / "_bundle"


def _as_root(path: str | os.PathLike) -> Path | None:
    """``path`` or its parent when it is a workflow root (a ``workflow/`` folder names its parent)."""
    path = Path(path).resolve()
    for candidate in (path, path.parent):
        if (candidate / _SCHEMA).is_file():
            return candidate
    return None


def set_root(path: str | os.PathLike) -> Path:
    """Make ``path`` (a workflow root or its ``workflow/`` folder) the root for this process
    and its children; returns the root.

    Modules that read a path at import time (``alliance.config.SCHEMA_PATH``,
    ``alliance.scoring.instruments.INSTRUMENTS_DIR``) see it only if this runs before they are imported,
    as it does at the top of the Snakefile.
    """
    root = _as_root(path)
    if root is None:
        raise FileNotFoundError(f"{path}: not a workflow folder (no {_SCHEMA} in it or its parent)")
    os.environ[ROOT_ENV] = str(root)
    return root


def root() -> Path:
    """The folder holding the Snakefile, ``workflow/`` and ``config/`` in use (see module doc)."""
    named = os.environ.get(ROOT_ENV)
    if named:
        found = _as_root(named)
        if found is None:
            raise FileNotFoundError(f"{ROOT_ENV}={named}: not a workflow folder (no {_SCHEMA} in it)")
        return found
    for candidate in (_CHECKOUT, _BUNDLE):
        if (candidate / _SCHEMA).is_file():
            return candidate
    raise FileNotFoundError(
        f"the workflow's files were not found in {_CHECKOUT} nor in {_BUNDLE}; "
        "reinstall the package or set " + ROOT_ENV)


def workflow_dir() -> Path:
    """The ``workflow/`` folder (rules, scripts, schemas, report templates)."""
    return root() / "workflow"


def snakefile() -> Path:
    """The Snakefile to run: ``workflow/Snakefile`` if there is one, else the top-level one."""
    for candidate in (workflow_dir() / "Snakefile", root() / "Snakefile"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no Snakefile in {root()} or {workflow_dir()}")


def schema_path() -> Path:
    """The config schema, ``workflow/schemas/config.schema.yaml``."""
    return root() / _SCHEMA


def instruments_dir() -> Path:
    """The shipped instrument keys, ``config/instruments/``."""
    return root() / "config" / "instruments"


def report_dir() -> Path:
    """The report's captions and templates, ``workflow/report/``."""
    return workflow_dir() / "report"
