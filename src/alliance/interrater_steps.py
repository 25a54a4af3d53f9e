"""Workflow step for the inter-rater reliability of observer ratings (config section ``interrater:``).

:func:`write_interrater_icc` computes the intraclass correlations of every scale of the
observer-rated instrument with :func:`alliance.reliability.observer_icc_table`: Shrout & Fleiss
(1979) forms under McGraw & Wong's (1996) names, from ANOVA mean squares when every coded
session was rated by every coder, and from REML variance components of
``rating ~ 1 + (1|session) + (1|coder)`` with parametric-bootstrap intervals when coders rated
different subsets of sessions (the usual incomplete design); interpreted on the confidence
interval after Koo & Li (2016). The statistics are tested in tests/test_reliability*.py; this
step is tested in tests/test_interrater_workflow.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from alliance.outputs import write_csv
from alliance.steps_common import require_instrument

__all__ = ["check_interrater_settings", "interrater_table", "write_interrater_icc"]

log = logging.getLogger(__name__)


def check_interrater_settings(config: Mapping[str, Any]) -> None:
    """Check that ``interrater/instrument`` names an instrument entry of the config."""
    require_instrument(config["instruments"], config["interrater"]["instrument"], "interrater/instrument",
                       "set interrater: enabled: false when the study has no observer ratings")


def interrater_table(administrations: pd.DataFrame, scores: pd.DataFrame, settings: Mapping[str, Any],
                     seed: int) -> pd.DataFrame:
    """ICC table of the observer instrument the ``interrater:`` section names, per scale.

    Parameters
    ----------
    administrations, scores : DataFrame
        ``administrations.parquet`` and ``scores.parquet`` (``docs/data_contract.md``).
    settings : mapping
        ``instrument``, ``scales`` (None: all), ``design``, ``ci_level``, ``n_boot``.
    seed : int
        Seed of the parametric bootstrap (the study seed).
    """
    from alliance.reliability import observer_icc_table

    return observer_icc_table(administrations, scores, settings["instrument"], settings["scales"],
                              design=settings["design"], ci_level=settings["ci_level"],
                              n_boot=settings["n_boot"], seed=seed)


def write_interrater_icc(administrations_path: str, scores_path: str, settings: Mapping[str, Any], seed: int,
                         csv_path: str) -> pd.DataFrame:
    """Workflow step: :func:`interrater_table` written as CSV (no client, therapist or rater ids)."""
    table = interrater_table(pd.read_parquet(administrations_path), pd.read_parquet(scores_path), settings, seed)
    for row in table[table["type"].isin(["ICC2", "ICC3"])].itertuples():
        log.info("%s %s %s = %.3f [%.3f, %.3f] (%s, %s)", row.instrument, row.scale, row.form, row.estimate,
                 row.ci_lower, row.ci_upper, row.method, row.interpretation)
    write_csv(table, csv_path)
    return table
