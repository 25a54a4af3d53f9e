"""Workflow step: the report's HTML page of every result table (see :mod:`alliance.report.html`).

:data:`PAGES` names each page (the rules' output names), its title and how its source is read;
the rules' ``labels=`` use the same titles (``result_labels`` in workflow/rules/common.smk), so
that a table and its download share one name in the report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from alliance.outputs import atomic_path
from alliance.report.html import data_file_page, markdown_page, record_page, table_page

__all__ = ["Page", "PAGES", "SCORE_COLUMNS", "page_title", "write_pages"]


@dataclass(frozen=True)
class Page:
    """One page: its title and its source's kind (table, record [JSON], markdown, data file)."""

    title: str
    kind: str = "table"


PAGES: dict[str, Page] = {
    # 1 Data
    "summary": Page("Sample summary", "record"),
    "completion": Page("Completion per instrument and session"),
    "switches": Page("Therapist switches"),
    # 2 Scores and change
    "scores": Page("Scores of every administration (data file)", "data file"),
    "change": Page("Reliable and clinically significant change"),
    "programme": Page("NHS Talking Therapies outcomes"),
    # 3 Reliability
    "consistency": Page("Internal consistency"),
    "interrater": Page("Inter-rater reliability (ICC)"),
    "interrater_agreement": Page("Inter-rater agreement of the items"),
    "leniency": Page("Coder leniency"),
    "pairs": Page("Coder pairs"),
    # 4 Models
    "fixed": Page("Fixed effects"),
    "random": Page("Random effects"),
    "fit": Page("Fit, R² and ICC", "record"),
    "diagnostics": Page("Diagnostics", "record"),
    "bootstrap": Page("Cluster bootstrap CIs"),
    "dynamic": Page("RI-CLPM estimates"),
    "alliance_effects": Page("Alliance effects as r, beside the benchmark"),
    "therapist_icc": Page("Unconditional therapist ICC"),
    "specification_curve": Page("Specification curve (multiverse)"),
    "recovery": Page("Parameter recovery"),
    "recovery_summary": Page("Parameter recovery (summary)", "markdown"),
    "dynamic_recovery": Page("Parameter recovery with session dynamics (committed benchmark)", "markdown"),
    "power_curve": Page("Power curve"),
    # 5 Ruptures
    "episodes": Page("Rupture-repair episodes (data file)", "data file"),
    "rupture_summary": Page("Rupture-repair episodes per threshold"),
    "rupture_outcome": Page("Ruptures and outcome"),
    "detection": Page("Detection of the simulated ruptures"),
    # 6 Client-therapist agreement
    "discrepancy": Page("Client–therapist discrepancy per scale"),
    "item_table": Page("Client–therapist discrepancy per item"),
    "per_dyad": Page("Discrepancy per dyad (data file)", "data file"),
    "surface": Page("Response surface analysis"),
    # 7 Manuscript tables
    "methods": Page("Methods paragraph", "markdown"),
    # 8 Provenance
    "provenance": Page("Provenance", "record"),
}

#: Most rows a table page shows; a longer table (a national study's per-client change table:
#: 200,000 rows, a 72 MB page) gets a data-file page instead, as the scores do.
TABLE_ROWS = 2_000

#: the column dictionary of results/scores/scores.csv (docs/data_contract.md)
SCORE_COLUMNS = {
    "client": "pseudonymised client id (C-…)",
    "therapist": "pseudonymised therapist id (T-…)",
    "session": "session number",
    "instrument": "the instrument's name in the config",
    "respondent": "client, therapist or observer",
    "rater": "pseudonymised coder id (R-…), observers only",
    "scale": "the scale (total or subscale)",
    "score": "the scale score (empty beyond the key's missing-item limit)",
    "items_answered": "items answered of the scale",
    "prorated": "the score was prorated from the answered items",
}
COLUMN_NOTES = {"scores": SCORE_COLUMNS}
#: other forms of a data file, named on its page
OTHER_FORMS = {"scores": ("results/scores/scores.parquet",)}


def _label(config: Mapping[str, Any], section: str, name: str) -> str:
    models = (config.get("models") or {}).get(section) or {}
    entry = models.get(name) or {}
    return " ".join(str(entry.get("label") or name).split())


def page_title(name: str, config: Mapping[str, Any], wildcards: Mapping[str, str]) -> str:
    """The page's title; a model's pages carry the model's ``label:`` from the config."""
    title = PAGES[name].title
    if "model" in wildcards:
        return f"{title}: {_label(config, 'fits', wildcards['model'])}"
    if "name" in wildcards:
        return f"{title}: {_label(config, 'dynamic', wildcards['name'])}"
    return title


def _page(name: str, source: Path, title: str) -> str:
    kind, shown = PAGES[name].kind, source.as_posix()
    if kind == "record":
        return record_page(json.loads(source.read_text(encoding="utf-8")), title, shown)
    if kind == "markdown":
        return markdown_page(source.read_text(encoding="utf-8"), title, shown)
    # a data file's page shows no value, only types and counts: the default float parser (half
    # the time of round_trip on the 10-million-row scores) gives the same types and counts
    precision = None if kind == "data file" else "round_trip"
    frame = pd.read_csv(source, float_precision=precision, keep_default_na=False, na_values=[""])
    if kind == "data file" or len(frame) > TABLE_ROWS:
        lead = None if kind == "data file" else (f"{len(frame):,} rows: more than a page shows "
                                                 f"(up to {TABLE_ROWS:,}), so the page describes the file.")
        return data_file_page(frame, title, shown, source.stat().st_size, description=lead,
                              column_notes=COLUMN_NOTES.get(name), others=OTHER_FORMS.get(name, ()))
    return table_page(frame, title, shown)


def write_pages(inputs: Mapping[str, str], outputs: Mapping[str, str], config: Mapping[str, Any],
                wildcards: Mapping[str, str] | None = None) -> None:
    """Write the page of every named output from the input of the same name."""
    wildcards = dict(wildcards or {})
    for name, out in outputs.items():
        text = _page(name, Path(inputs[name]), page_title(name, config, wildcards))
        with atomic_path(out) as tmp:
            tmp.write_text(text, encoding="utf-8", newline="\n")
