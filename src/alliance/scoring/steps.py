"""Scoring steps the workflow's rules call: read the tidy data, score, check, write.

Each function reads its inputs, calls the statistics of :mod:`alliance.scoring` and writes
its outputs atomically (:mod:`alliance.outputs`).
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from alliance.outputs import read_parquet, write_csv, write_parquet






from alliance.outputs import write_json
from alliance.scoring.change import change_table, has_change_norms, programme_table
from alliance.scoring.psychometrics import N_BOOT, internal_consistency
from alliance.scoring.scores import combine_observer_ratings, score_administrations_file


def score_study(administrations_path: str, config: Mapping[str, Any], parquet_path: str, csv_path: str,
                analysis_path: str | None = None) -> pd.DataFrame:
    """Workflow step: score ``results/interim/administrations.parquet`` with the configured keys
    and write the scores as Parquet and CSV (full precision); with ``analysis_path``, also the
    analysis scores, the observers' ratings combined as ``interrater: combine`` says
    (:func:`combine_observer_ratings`). Returns the scores."""
    from alliance.scoring.instruments import keys_from_config

    scores = score_administrations_file(administrations_path, keys_from_config(config))
    write_parquet(scores, parquet_path)
    write_csv(scores, csv_path)
    if analysis_path is not None:
        settings = config.get("interrater", {})
        write_parquet(combine_observer_ratings(scores, settings.get("combine", "mean"),
                                               settings.get("designated_rater")), analysis_path)
    return scores



def write_internal_consistency(administrations_path: str, config: Mapping, csv_path: str,
                               sessions: tuple[int, ...] = (), n_boot: int = N_BOOT) -> pd.DataFrame:
    """Workflow step: the internal-consistency table across all administrations and at each of
    ``sessions``, written to ``csv_path`` (full precision); the cluster bootstrap draws
    ``n_boot`` replicates (``scoring: reliability_bootstrap``), seeded by ``study: seed``.
    Returns the table."""
    from alliance.scoring.instruments import keys_from_config

    keys = keys_from_config(config)
    administrations = read_parquet(administrations_path, columns=_consistency_columns(administrations_path, keys))
    seed = int(config.get("study", {}).get("seed", 0))
    tables = [internal_consistency(administrations, keys, seed=seed, n_boot=n_boot)]
    tables += [internal_consistency(administrations, keys, session=s, seed=seed, n_boot=n_boot) for s in sessions]
    table = pd.concat(tables, ignore_index=True)
    for column in ("session", "n_clients", "n_boot"):
        table[column] = table[column].astype("Int64")
    write_csv(table, csv_path)
    return table



def _consistency_columns(path: str, keys: Mapping[str, Any]) -> list[str]:
    """The columns of the administrations file that internal_consistency reads."""
    import pyarrow.parquet as pq

    wanted = {"client", "session", "respondent"}
    wanted |= {f"{entry}_{n}" for entry, key in keys.items() for n in range(1, key.n_items + 1)}
    return [c for c in pq.read_schema(path).names if c in wanted]


def change_report(scores_path: str, config: Mapping[str, Any], csv_path: str, json_path: str,
                  programme_csv_path: str | None = None) -> pd.DataFrame:
    """Workflow step: reliable and clinically significant change of every configured outcome
    measure whose key publishes change norms (total scale, the instrument's norms), written to
    ``csv_path``; the numbers used per instrument to ``json_path``; and, when the PHQ-9 and the
    GAD-7 are both configured, the NHS Talking Therapies outcomes to ``programme_csv_path``.
    """
    import logging

    from alliance.scoring.instruments import keys_from_config

    log = logging.getLogger(__name__)
    scores = pd.read_parquet(scores_path)
    keys = keys_from_config(config)
    settings = config.get("scoring", {}).get("change", {})
    tables, parameters = [], {}
    for entry, key in keys.items():
        if not has_change_norms(key, key.total_scale):
            log.info("change: %s (%s) skipped: its key publishes no reliable-change norm", entry, key.name)
            continue
        if not scores["instrument"].eq(entry).any():
            log.warning("change: %s has no scores", entry)
            continue
        try:
            table = change_table(scores, entry, key.total_scale, settings.get("norms_source", "instrument"),
                                 key=key, criterion=settings.get("criterion"))
        except ValueError as err:
            log.warning("change: %s skipped: %s", entry, err)
            continue
        parameters[entry] = table.attrs["change_parameters"] | {"key": key.name, "scale": key.total_scale}
        tables.append(table)
    columns = ["client", "instrument", "respondent", "scale", "therapist", "pre_session", "post_session", "pre",
               "post", "change", "rci", "pre_clinical", "post_clinical", "classification"]
    out = pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)
    write_csv(out, csv_path)
    write_json(parameters, json_path)
    if programme_csv_path is not None:
        write_csv(programme_table(scores, keys), programme_csv_path)
    return out
