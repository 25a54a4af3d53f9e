"""Workflow steps for rupture–repair episodes (config section ``ruptures:``).

Three steps, each reading the workflow's files and writing its results atomically:

* :func:`write_rupture_outputs`: episodes for every threshold ``c`` side by side (a
  ``threshold_sd`` column), per-client counts and the study summary (Gumz et al., 2012;
  Stiles et al., 2004), from the long scores table, and example trajectories with the
  episodes marked.
* :func:`write_rupture_outcome`: outcome change on repaired and unrepaired rupture counts and
  baseline severity with a therapist random intercept, one model per threshold
  (McLaughlin et al., 2014), via :func:`alliance.ruptures.rupture_outcome_model`; no
  post-treatment covariates (the number of sessions is refused, see there).
* :func:`write_rupture_detection`: precision and recall of the detector against known
  (injected) episodes, for a simulated study whose truth file the config names.

The statistics live in :mod:`alliance.ruptures` and are tested there; these functions select
the data the config names, combine tables and write them (tests/test_ruptures_workflow.py).

References
----------
Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). Crisis-repair sequences: considerations
on the classification and assessment of breaches in the therapeutic relationship. *BMC Medical
Research Methodology*, 12, 10.
Stiles, W. B., Glick, M. J., Osatuke, K., et al. (2004). Patterns of alliance development and
the rupture-repair hypothesis. *Journal of Counseling Psychology*, 51, 81–92.
McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A. (2014).
Patterns of therapeutic alliance: rupture-repair episodes in prolonged exposure for PTSD.
*Journal of Consulting and Clinical Psychology*, 82, 112–121.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alliance.lmm import fit as lmm_fit
from alliance.outputs import write_csv, write_json
from alliance.report.style import save_figure
from alliance.ruptures.episodes import (
    COUNT_COLUMNS,
    DETECTION_COLUMNS,
    EPISODE_COLUMNS,
    detect_ruptures,
    detection_table,
    rupture_counts,
    rupture_outcome_formula,
    rupture_outcome_model,
    rupture_summary,
)
from alliance.outputs import json_safe
from alliance.scoring.select import require_instrument, require_scores, select_change

__all__ = [
    "threshold_label",
    "trajectory_figure_paths",
    "check_rupture_settings",
    "rupture_series",
    "rupture_tables",
    "rupture_outcome_tables",
    "write_rupture_outcome",
    "trajectory_figure",
    "write_rupture_outputs",
    "injected_episodes",
    "write_rupture_detection",
]

log = logging.getLogger(__name__)

COUNTS_COLUMNS = ["threshold_sd", "client", "n_sessions", *COUNT_COLUMNS[1:]]
EFFECT_COLUMNS = ["threshold_sd", "term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high"]
SESSIONS_COVARIATE = "n_sessions"


def threshold_label(c: float) -> str:
    """The threshold as it appears in file names: ``1`` for 1.0, ``1.5`` for 1.5."""
    return f"{float(c):g}"


def trajectory_figure_paths(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(path, label)`` of the trajectory figure of every threshold, in threshold order:
    ``results/ruptures/trajectories_c{c}.png`` and ``"{c} SD"``."""
    return [(f"results/ruptures/trajectories_c{threshold_label(c)}.png", f"{threshold_label(c)} SD")
            for c in settings["thresholds"]]


def check_rupture_settings(config: Mapping[str, Any]) -> None:
    """Check the ``ruptures:`` section against the rest of the config (instrument entries).

    Raises
    ------
    ValueError
        Naming the config key whose value is not an instrument entry, or a repeated threshold.
    """
    settings = config["ruptures"]
    instruments = config["instruments"]
    require_instrument(instruments, settings["instrument"], "ruptures/instrument",
                       "set ruptures: enabled: false to skip the rupture analysis")
    require_instrument(instruments, settings["outcome"]["instrument"], "ruptures/outcome/instrument")
    labels = [threshold_label(c) for c in settings["thresholds"]]
    if len(set(labels)) != len(labels):
        raise ValueError(f"at ruptures/thresholds: thresholds must differ, got {settings['thresholds']}")


# --------------------------------------------------------------------------------------
# Episodes, counts, summary
# --------------------------------------------------------------------------------------
def rupture_series(scores: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The alliance series the config names: ``client``, ``session``, ``score`` (missing dropped).

    Parameters
    ----------
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    settings : mapping
        The ``ruptures:`` config section (``instrument``, ``respondent``, ``scale``).
    """
    rows = require_scores(scores, settings["instrument"], settings["respondent"], [settings["scale"]],
                          "ruptures/instrument")
    rows = rows[rows["scale"] == settings["scale"]]
    series = rows[["client", "session", "score"]].dropna(subset=["score"])
    return series.sort_values(["client", "session"], kind="mergesort", ignore_index=True)


def _rule(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The detection arguments of :func:`alliance.ruptures.detect_ruptures` from the config."""
    return {"repair_window": settings["repair_window"], "sd_basis": settings["sd_basis"],
            "max_gap": settings["max_gap"], "pre_sessions": settings.get("pre_sessions", 3),
            "repair_tolerance": settings.get("repair_tolerance", 0.5),
            "below_median": settings.get("below_median", True)}


def _detect(series: pd.DataFrame, c: float, settings: Mapping[str, Any]) -> pd.DataFrame:
    return detect_ruptures(series, c, **_rule(settings))


def rupture_tables(series: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Episodes, per-client counts and the summary for every configured threshold.

    Returns
    -------
    dict
        ``episodes``: :data:`alliance.ruptures.EPISODE_COLUMNS`, the thresholds stacked
        (``threshold_sd`` says which); ``counts``: one row per threshold and client with
        ``n_sessions`` (observed alliance scores) and the counts of
        :func:`alliance.ruptures.rupture_counts`, clients without episodes included with zeros;
        ``summary``: :func:`alliance.ruptures.rupture_summary`, one row per threshold.
    """
    clients = series["client"].unique()
    n_sessions = series.groupby("client", sort=False)["session"].size()
    episodes, counts = [], []
    for c in settings["thresholds"]:
        found = _detect(series, c, settings)
        episodes.append(found)
        one = rupture_counts(found, clients)
        one.insert(0, "threshold_sd", float(c))
        one.insert(2, "n_sessions", n_sessions.reindex(one["client"]).to_numpy(dtype=np.int64))
        counts.append(one)
    summary = rupture_summary(series, list(settings["thresholds"]), **_rule(settings))
    for name in ("scale", "respondent", "instrument"):
        summary.insert(0, name, settings[name])
    nonempty = [e for e in episodes if not e.empty]
    all_episodes = pd.concat(nonempty, ignore_index=True) if nonempty else episodes[0]
    return {
        "episodes": all_episodes[EPISODE_COLUMNS].reset_index(drop=True),
        "counts": pd.concat(counts, ignore_index=True)[COUNTS_COLUMNS],
        "summary": summary,
    }


def _log_summary(summary: pd.DataFrame) -> None:
    for row in summary.itertuples():
        log.info("ruptures at %g SD: %d episodes in %d of %d clients, %d repaired, %d unrepaired, "
                 "%d censored", row.threshold_sd, row.n_episodes, row.n_clients_with_rupture, row.n_clients,
                 row.n_repaired, row.n_unrepaired, row.n_censored)


# --------------------------------------------------------------------------------------
# Link to outcome
# --------------------------------------------------------------------------------------
def _client_covariates(clients: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    if SESSIONS_COVARIATE in covariates:
        raise ValueError(
            f"at ruptures/outcome/covariates: {SESSIONS_COVARIATE!r} is the number of sessions a client "
            "attended, a post-treatment variable affected by ruptures (early dropout) and by the outcome; "
            "adjusting for it biases the rupture effects. Remove it (use pre-treatment covariates only)."
        )
    unknown = [c for c in covariates if c not in clients.columns or c in ("client", "therapist")]
    if unknown:
        known = [c for c in clients.columns if c not in ("client", "therapist")]
        raise ValueError(
            f"at ruptures/outcome/covariates: {unknown} not among the client covariates "
            f"(clients.parquet: {known})"
        )
    return clients[["client", "therapist", *covariates]]


def _outcome_data(counts: pd.DataFrame, change: pd.DataFrame, clients: pd.DataFrame,
                  covariates: Sequence[str]) -> pd.DataFrame:
    """One row per client with an alliance series: outcome, baseline, therapist, counts."""
    outcomes = change.merge(_client_covariates(clients, covariates), on="client", how="inner",
                            validate="one_to_one")
    return outcomes.merge(counts.drop(columns=["threshold_sd", "n_sessions"]), on="client", how="inner",
                          validate="one_to_one")


def _recording_fit(store: dict[str, Any]) -> Callable[..., Any]:
    """``alliance.lmm.fit`` that also keeps the fitted result (for variance components)."""
    def recording(formula: str, data: pd.DataFrame, reml: bool = True) -> Any:
        store["result"] = lmm_fit(formula, data, reml=reml)
        store["data"] = data
        return store["result"]

    return recording


def _variance(random_effects: pd.DataFrame, group: str) -> float:
    rows = random_effects[(random_effects["group"] == group) & random_effects["term2"].isna()]
    return float(rows["variance"].iloc[0]) if len(rows) else math.nan


def _model_info(c: float, formula: str, data: pd.DataFrame, store: Mapping[str, Any],
                outcome: str) -> dict[str, Any]:
    result, used = store["result"], store["data"]
    return {
        "threshold_sd": float(c),
        "formula": formula,
        "outcome_instrument": outcome,
        "outcome": "change = last - first administration of the outcome measure",
        "n_clients": int(result.nobs),
        "n_clients_dropped": int(len(data) - len(used)),
        "n_therapists": int(result.ngroups.get("therapist", 0)),
        "n_clients_with_rupture": int((used["n_repaired"] + used["n_unrepaired"] > 0).sum()),
        "variance_therapist": _variance(result.random_effects, "therapist"),
        "variance_residual": _variance(result.random_effects, "Residual"),
        "converged": bool(result.converged),
        "singular": bool(result.singular),
        "warnings": list(result.warnings),
        "estimable": True,
    }


def _not_estimable(c: float, formula: str, data: pd.DataFrame, outcome: str, reason: str) -> dict[str, Any]:
    log.warning("ruptures at %g SD: outcome model not fitted: %s", c, reason)
    return {"threshold_sd": float(c), "formula": formula, "outcome_instrument": outcome,
            "n_clients": int(len(data)), "estimable": False, "reason": reason}


def rupture_outcome_tables(counts: pd.DataFrame, change: pd.DataFrame, clients: pd.DataFrame,
                           settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Fixed effects of the rupture–outcome model for every threshold, and fit information.

    For each threshold ``c`` fits
    ``change ~ n_repaired + n_unrepaired + baseline + covariates + (1 | therapist)`` by REML
    (:func:`alliance.ruptures.rupture_outcome_model`; McLaughlin et al., 2014), where
    ``change`` is the last minus the first administration of the outcome measure and
    ``baseline`` its first administration. Censored episodes (repair unknown) are in neither
    count. No post-treatment covariate enters: the number of sessions attended is refused, as
    it is affected by ruptures and by the outcome (conditioning on it biases both counts'
    effects). A threshold at which every client has the same
    number of repaired (or unrepaired) ruptures (e.g. none) leaves the model unidentified: it
    is reported as not estimable instead of fitted.

    Parameters
    ----------
    counts : DataFrame
        The per-client counts of :func:`rupture_tables` (``threshold_sd``, ``client``,
        ``n_sessions``, ``n_ruptures``, ``n_repaired``, ``n_unrepaired``, ``n_censored``).
    change : DataFrame
        ``results/change/change.csv``.
    clients : DataFrame
        ``results/interim/clients.parquet`` (``client``, ``therapist`` = the client's first
        therapist, covariates).
    settings : mapping
        The ``ruptures:`` config section (``thresholds``, ``outcome.instrument``,
        ``outcome.covariates``: pre-treatment client covariates).

    Returns
    -------
    (DataFrame, list of dict)
        Fixed effects (``threshold_sd``, ``term``, ``estimate``, ``se``, ``df`` (Satterthwaite),
        ``t``, ``p``, ``ci_low``, ``ci_high``) and one dict per threshold with the formula,
        numbers of clients and therapists, variance components and convergence.
    """
    outcome = settings["outcome"]["instrument"]
    covariates = list(settings["outcome"]["covariates"])
    change = select_change(change, outcome, "ruptures/outcome/instrument")
    formula = rupture_outcome_formula("change", ["baseline", *covariates])
    effects, infos = [], []
    for c in settings["thresholds"]:
        own = counts[np.isclose(counts["threshold_sd"].to_numpy(dtype=float), float(c))]
        data = _outcome_data(own, change, clients, covariates)
        constant = [t for t in ("n_repaired", "n_unrepaired") if data[t].nunique() < 2]
        if constant:
            infos.append(_not_estimable(c, formula, data, outcome,
                                        f"{constant} take one value for every client"))
            continue
        store: dict[str, Any] = {}
        result = rupture_outcome_model(data, "change", ["baseline", *covariates], fit=_recording_fit(store))
        table = result.fixed_effects.reset_index().rename(columns={result.fixed_effects.index.name or "index": "term"})
        table.insert(0, "threshold_sd", float(c))
        effects.append(table[EFFECT_COLUMNS])
        infos.append(_model_info(c, formula, data, store, outcome))
    table = pd.concat(effects, ignore_index=True) if effects else pd.DataFrame(columns=EFFECT_COLUMNS)
    return table, infos


def write_rupture_outcome(counts_path: str, change_path: str, clients_path: str, settings: Mapping[str, Any],
                          table_path: str, json_path: str) -> pd.DataFrame:
    """Workflow step: the rupture–outcome models of :func:`rupture_outcome_tables`.

    Writes the fixed effects (CSV) and the fit information per threshold (JSON).
    """
    table, infos = rupture_outcome_tables(pd.read_csv(counts_path), pd.read_csv(change_path),
                                          pd.read_parquet(clients_path), settings)
    write_csv(table, table_path)
    write_json(json_safe({"models": infos}), json_path)
    return table


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------
def _clients_without_episodes(series: pd.DataFrame, n: int) -> list[Any]:
    longest = series.groupby("client", sort=True)["session"].size().sort_values(ascending=False, kind="mergesort")
    return list(longest.index[:n])


def trajectory_figure(series: pd.DataFrame, episodes: pd.DataFrame, settings: Mapping[str, Any], c: float,
                      keys: Mapping[str, Any] | None = None):
    """Example trajectories with the episodes at threshold ``c`` marked (a matplotlib Figure).

    Panels are labelled "client 1..n" (no ids). Clients are chosen by
    :func:`alliance.ruptures.figures.plot_rupture_trajectories` (both a repaired and an
    unrepaired episode first); with no episode at this threshold, the clients with the most
    sessions are drawn unmarked and the title says so.
    """
    from alliance.ruptures.figures import plot_rupture_trajectories

    own = episodes[np.isclose(episodes["threshold_sd"].to_numpy(dtype=float), float(c))]
    n = int(settings["example_clients"])
    clients = None if len(own) else _clients_without_episodes(series, n)
    fig = plot_rupture_trajectories(series, own, clients=clients, max_clients=n)
    from alliance.scoring.instruments import measure_display

    what = measure_display((settings["instrument"], settings["respondent"], settings["scale"]), keys or {})
    what = what[0].upper() + what[1:]
    rule = (f"drop of at least {float(c):g} SD (own SD), repair to within "
            f"{float(settings.get('repair_tolerance', 0.5)):g} SD of the pre-level in {settings['repair_window']} sessions")
    fig.suptitle(f"{what}: {rule}" + ("" if len(own) else " - no episode found"), fontsize=10)
    return fig


def write_rupture_outputs(scores_path: str, settings: Mapping[str, Any], episodes_path: str, counts_path: str,
                          summary_path: str, figure_paths: Sequence[str],
                          config: Mapping[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """Workflow step: rupture episodes, per-client counts and summary at every threshold, and one
    trajectory figure per threshold.

    Reads ``results/scores/scores.parquet``, selects the series of ``settings`` (the
    ``ruptures:`` config section), writes the three tables of :func:`rupture_tables` as CSV and
    the figures of :func:`trajectory_figure` to ``figure_paths`` (in the order of
    ``settings["thresholds"]``), the measure named from the instrument keys of ``config``.
    """
    if len(figure_paths) != len(settings["thresholds"]):
        raise ValueError(
            f"one figure path per threshold expected: {len(settings['thresholds'])} thresholds, "
            f"{len(figure_paths)} paths"
        )
    series = rupture_series(pd.read_parquet(scores_path), settings)
    tables = rupture_tables(series, settings)
    _log_summary(tables["summary"])
    write_csv(tables["episodes"], episodes_path)
    write_csv(tables["counts"], counts_path)
    write_csv(tables["summary"], summary_path)
    from alliance.scoring.instruments import keys_from_config

    keys = keys_from_config(config) if config else None
    for c, path in zip(settings["thresholds"], figure_paths):
        save_figure(trajectory_figure(series, tables["episodes"], settings, c, keys), path)
    return tables


# --------------------------------------------------------------------------------------
# Detection against known episodes (simulated studies)
# --------------------------------------------------------------------------------------
def injected_episodes(truth: Mapping[str, Any], key: bytes, truth_path: str = "truth file") -> pd.DataFrame:
    """The injected episodes of a simulated study's truth (``ruptures``: a list of
    ``{"client_id", "rupture_session", ...}``), with client ids replaced by the pipeline's
    pseudonyms (so that they match the scores table; raw ids are not kept).

    Raises
    ------
    ValueError
        Naming the truth file and what is missing (never an id).
    """
    from alliance.data.deid import pseudonymise

    episodes = truth.get("ruptures") if isinstance(truth, Mapping) else None
    if not isinstance(episodes, list):
        raise ValueError(f"{truth_path}: expected a key 'ruptures' with a list of injected episodes")
    frame = pd.DataFrame(episodes)
    missing = [c for c in ("client_id", "rupture_session") if c not in frame.columns]
    if episodes and missing:
        raise ValueError(f"{truth_path}: the injected episodes lack field(s) {missing}")
    if not episodes:
        return pd.DataFrame({"client": pd.Series(dtype=object), "rupture_session": pd.Series(dtype=np.int64)})
    return pd.DataFrame({"client": pseudonymise(frame["client_id"].astype(str), "client", key).to_numpy(),
                         "rupture_session": frame["rupture_session"].astype(np.int64).to_numpy()})


def rupture_detection(series: pd.DataFrame, injected: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`alliance.ruptures.detection_table` with the config's detection rule and the
    ``ruptures: detection:`` thresholds and matching tolerance."""
    detection = settings["detection"]
    return detection_table(series, injected, cs=list(detection["thresholds"]), tolerance=int(detection["tolerance"]),
                           **_rule(settings))


def write_rupture_detection(scores_path: str, truth_path: str, config: Mapping[str, Any], table_path: str) -> pd.DataFrame:
    """Workflow step: precision and recall of the rupture detector against the injected episodes
    of a simulated study (``ruptures: detection: truth:``), one row per threshold."""
    import json

    from alliance.data.keys import study_key

    settings = config["ruptures"]
    series = rupture_series(pd.read_parquet(scores_path), settings)
    with open(truth_path, encoding="utf-8") as handle:
        truth = json.load(handle)
    injected = injected_episodes(truth, study_key(dict(config)), truth_path)
    absent = int((~injected["client"].isin(set(series["client"]))).sum())
    if absent:
        log.warning("%s: %d of %d injected episodes are of clients without an alliance series (left out); "
                    "is this the truth file of these data?", truth_path, absent, len(injected))
    table = rupture_detection(series, injected, settings)
    for row in table.itertuples():
        log.info("detection at %g SD: precision %.3f, recall %.3f (%d of %d injected, %d detected)",
                 row.threshold_sd, row.precision, row.recall, row.n_matched, row.n_injected, row.n_detected)
    write_csv(table[DETECTION_COLUMNS], table_path)
    return table
