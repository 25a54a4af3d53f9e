"""Workflow steps for the inter-rater reliability of observer ratings (config section ``interrater:``).

For every multi-rater (observer) instrument, at scale and item level:

* :func:`interrater_tables` computes the intraclass correlations with
  :func:`alliance.interrater.intraclass.icc` (Shrout & Fleiss 1979 forms under McGraw & Wong's 1996
  names: ANOVA mean squares when every coded session was rated by every coder, REML variance
  components of ``rating ~ 1 + (1|session) + (1|coder)`` when coders rated different subsets),
  with the variance components themselves; and, for the items, Krippendorff's alpha and
  Fleiss' and Cohen's kappa (:mod:`alliance.coding_agreement`): weighted for ordinal codes
  such as rating-scale items, unweighted for nominal codes such as a coder's rupture marker
  (``code_levels``);
* the rater leniency (conditional modes of the coder effect) and every coder pair's agreement
  on the sessions both coded (:mod:`alliance.rater_effects`), with their figures
  (:mod:`alliance.plots_interrater`).

The reliability subsample is the sessions coded by two or more coders, optionally a seeded
random share of them (``subsample``). How the coders' ratings are combined for the analyses
(``combine``: their mean, or one designated coder) is applied by
:func:`alliance.scoring.scores.combine_observer_ratings` in the scoring step.

Targets are numbered sessions; no client, therapist or session id reaches the outputs. Coders
appear by pseudonym (``R-…``) in the leniency and pair tables, so that a designated coder can
be named in the config. The statistics are tested in tests/test_reliability.py,
tests/test_coding_agreement.py and tests/test_rater_effects.py; these steps in
tests/test_interrater_workflow.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alliance.errors import require_columns
from alliance.outputs import write_csv
from alliance.scoring.select import require_instrument

__all__ = [
    "check_interrater_settings",
    "interrater_instruments",
    "reliability_subsample",
    "rating_units",
    "interrater_tables",
    "write_interrater",
    "write_interrater_figures",
]

log = logging.getLogger(__name__)

SESSION_KEYS = ["client", "session"]
CONTEXT_COLUMNS = ["instrument", "level", "unit"]
COMPONENT_COLUMNS = ["var_target", "var_rater", "var_residual"]
COVERAGE_COLUMNS = ["sessions_coded", "sessions_multiple_coders", "sessions_in_subsample"]


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
def interrater_instruments(config: Mapping[str, Any]) -> list[str]:
    """The instrument entries analysed: ``interrater/instruments``, or every instrument whose
    table is rated by observers (``tables/<table>/respondent: observer``)."""
    chosen = config["interrater"].get("instruments")
    if chosen is not None:
        return list(chosen)
    tables = config["tables"]
    return [name for name, entry in config["instruments"].items()
            if tables.get(entry.get("table"), {}).get("respondent") == "observer"]


def check_interrater_settings(config: Mapping[str, Any]) -> None:
    """Check the ``interrater:`` section against the instruments and tables of the config."""
    settings = config["interrater"]
    chosen = interrater_instruments(config)
    if not chosen:
        raise ValueError("at interrater: no instrument is rated by observers (a table with "
                         "respondent: observer); set interrater: enabled: false")
    for i, name in enumerate(chosen):
        require_instrument(config["instruments"], name, f"interrater/instruments/{i}",
                           "set interrater: enabled: false when the study has no observer ratings")
        table = config["instruments"][name].get("table")
        if config["tables"].get(table, {}).get("respondent") != "observer":
            raise ValueError(f"at interrater/instruments/{i}: {name!r} is read from table {table!r}, "
                             "which is not rated by observers (respondent: observer)")
    for name in settings.get("code_levels") or {}:
        if name not in chosen:
            raise ValueError(f"at interrater/code_levels: {name!r} is not among the analysed observer "
                             f"instruments {chosen}")
    if settings.get("combine", "mean") == "designated" and not settings.get("designated_rater"):
        raise ValueError("at interrater/designated_rater: combine: designated needs the coder's "
                         "pseudonym (R-…, as listed in results/reliability/rater_leniency.csv)")


# --------------------------------------------------------------------------------------------
# Which ratings
# --------------------------------------------------------------------------------------------
def _observer_rows(administrations: pd.DataFrame, instrument: str, items: Sequence[str]) -> pd.DataFrame:
    require_columns(administrations, [*SESSION_KEYS, "respondent", "rater"], "administrations")
    rows = administrations[administrations["respondent"] == "observer"]
    if items:
        rows = rows[rows[list(items)].notna().any(axis=1)]
    if rows["rater"].isna().any():
        raise ValueError(f"{int(rows['rater'].isna().sum())} observer administration(s) of {instrument!r} "
                         "have no coder in column 'rater'; inter-rater reliability needs the coder of every rating")
    return rows


def _item_columns(administrations: pd.DataFrame, instrument: str) -> list[str]:
    prefix = f"{instrument}_"
    items = [c for c in administrations.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(items, key=lambda c: int(c[len(prefix):]))


def reliability_subsample(administrations: pd.DataFrame, instrument: str, subsample: Mapping[str, Any],
                          seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Sessions in the reliability subsample of one observer instrument, and the coverage counts.

    The subsample is the sessions coded by two or more coders; ``subsample: fraction`` (< 1)
    and ``max_sessions`` draw a random share of them with ``np.random.default_rng(seed)``
    (sessions in sorted order first, so the draw does not depend on row order).

    Returns
    -------
    sessions : DataFrame
        ``client``, ``session`` of the sessions in the subsample, sorted.
    coverage : dict
        ``sessions_coded`` (by any coder), ``sessions_multiple_coders``, ``sessions_in_subsample``.
    """
    rows = _observer_rows(administrations, instrument, _item_columns(administrations, instrument))
    coders = rows.groupby(SESSION_KEYS, sort=True)["rater"].nunique()
    multiple = coders[coders >= 2].index.to_frame(index=False)
    keep = len(multiple)
    fraction, cap = subsample.get("fraction", 1.0), subsample.get("max_sessions")
    if fraction < 1:
        keep = int(round(fraction * keep))
    if cap is not None:
        keep = min(keep, int(cap))
    if keep < len(multiple):
        picked = np.sort(np.random.default_rng(seed).choice(len(multiple), size=keep, replace=False))
        multiple = multiple.iloc[picked].reset_index(drop=True)
    coverage = {"sessions_coded": int(len(coders)), "sessions_multiple_coders": int((coders >= 2).sum()),
                "sessions_in_subsample": int(len(multiple))}
    return multiple, coverage


def rating_units(administrations: pd.DataFrame, scores: pd.DataFrame, instrument: str, sessions: pd.DataFrame,
                 levels: Sequence[str], scales: Sequence[str] | None) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``(level, unit, ratings)`` for each scale and item of an observer instrument.

    ``ratings`` is long: ``target`` (the session's number in sorted client, session order),
    ``rater`` (pseudonym) and ``rating``, restricted to ``sessions``.
    """
    targets = sessions.assign(target=np.arange(len(sessions)))
    if "scale" in levels:
        require_columns(scores, [*SESSION_KEYS, "instrument", "respondent", "rater", "scale", "score"], "scores")
        rows = scores[(scores["instrument"] == instrument) & (scores["respondent"] == "observer")]
        available = list(pd.unique(rows["scale"]))
        unknown = [s for s in (scales or []) if s not in available]
        if unknown:
            raise ValueError(f"at interrater/scales: {unknown} not among the {instrument!r} observer scales "
                             f"in the scores table: {available}")
        rows = rows.merge(targets, on=SESSION_KEYS, how="inner")
        for scale in (available if scales is None else scales):
            one = rows.loc[(rows["scale"] == scale) & rows["score"].notna(), ["target", "rater", "score"]]
            yield "scale", scale, one.rename(columns={"score": "rating"}).reset_index(drop=True)
    if "item" in levels:
        items = _item_columns(administrations, instrument)
        rows = _observer_rows(administrations, instrument, items).merge(targets, on=SESSION_KEYS, how="inner")
        for column in items:
            one = rows.loc[rows[column].notna(), ["target", "rater", column]]
            yield "item", column, one.rename(columns={column: "rating"}).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _unit_icc(ratings: pd.DataFrame, settings: Mapping[str, Any], seed: int, where: str) -> pd.DataFrame:
    """ICC rows of one scale or item; a unit whose ICC is undefined (e.g. every coder gave the
    same code) gets NaN rows saying so, and the other units go on."""
    from alliance.interrater.intraclass import ICC_COLUMNS, ICC_FORMS, crossed_variance_components, icc

    try:
        table = icc(ratings, "target", "rater", "rating", design=settings["design"], ci_level=settings["ci_level"],
                    ci_method=settings["ci_method"], n_boot=settings["n_boot"], seed=seed)
        vc = table.attrs.get("variance_components")
        if vc is None:  # the ANOVA route: REML components of the same (complete) design
            vc = vars(crossed_variance_components(ratings, "target", "rater", "rating"))
    except ValueError as err:
        log.warning("%s: no ICC: %s", where, err)
        table = ICC_FORMS.reindex(columns=ICC_COLUMNS).assign(
            n_ratings=len(ratings), ci_level=settings["ci_level"], interpretation="",
            ci_method=f"not estimable ({_reason(err)}; see logs/interrater.log)")
        return table.assign(var_target=np.nan, var_rater=np.nan, var_residual=np.nan)
    return table.assign(var_target=vc["target"], var_rater=vc["rater"], var_residual=vc["residual"])


def _reason(err: ValueError) -> str:
    """The first clause of an error message, without the values it quotes (they stay in the log)."""
    return str(err).split(":")[0].split(";")[0].split("(")[0].strip()


def _unit_agreement(ratings: pd.DataFrame, categories, settings: Mapping[str, Any], seed: int,
                    where: str, level: str) -> pd.DataFrame | None:
    from alliance.interrater.coding_agreement import coding_agreement_table

    try:
        return coding_agreement_table(ratings, "target", "rater", "rating", level=level, categories=categories,
                                      ci_level=settings["ci_level"], n_boot=settings["alpha_n_boot"], seed=seed,
                                      min_shared=settings["min_shared"])
    except ValueError as err:
        log.warning("%s: no agreement statistics: %s", where, err)
        return None


def _categories(keys: Mapping[str, Any], instrument: str):
    key = keys.get(instrument)
    if key is None or not getattr(key, "integer_responses", False):
        return None
    return list(range(int(key.response_min), int(key.response_max) + 1))


def interrater_tables(administrations: pd.DataFrame, scores: pd.DataFrame, settings: Mapping[str, Any],
                      instruments: Sequence[str], seed: int,
                      keys: Mapping[str, Any] | None = None) -> dict[str, pd.DataFrame]:
    """The inter-rater tables of the ``interrater:`` section.

    Parameters
    ----------
    administrations, scores : DataFrame
        ``administrations.parquet`` and ``scores.parquet`` (``docs/data_contract.md``).
    settings : mapping
        The ``interrater:`` section (config/README.md).
    instruments : sequence of str
        Observer instrument entries (:func:`interrater_instruments`).
    seed : int
        The study seed: subsample draw and bootstrap intervals.
    keys : mapping, optional
        Instrument keys by entry (:func:`alliance.scoring.instruments.keys_from_config`); their response
        range gives the item categories of the kappas.

    Returns
    -------
    dict of DataFrame
        ``icc`` (one row per instrument × unit × ICC form, with the variance components and the
        coverage counts), ``agreement`` (Krippendorff's alpha and kappas per item), ``leniency``
        (per instrument, scale and coder) and ``pairs`` (per instrument, scale and coder pair).
    """
    keys = keys or {}
    iccs, agreements, leniencies, pairs = [], [], [], []
    for instrument in instruments:
        sessions, coverage = reliability_subsample(administrations, instrument, settings["subsample"], seed)
        if coverage["sessions_in_subsample"] < 2:
            raise ValueError(f"observer instrument {instrument!r}: {coverage['sessions_in_subsample']} session(s) "
                             "coded by two or more coders in the reliability subsample; inter-rater reliability "
                             "needs at least 2 (see interrater/subsample)")
        log.info("%s: %d sessions coded, %d by two or more coders, %d in the reliability subsample", instrument,
                 coverage["sessions_coded"], coverage["sessions_multiple_coders"], coverage["sessions_in_subsample"])
        for level, unit, ratings in rating_units(administrations, scores, instrument, sessions, settings["levels"],
                                                 settings["scales"]):
            context = {"instrument": instrument, "level": level, "unit": unit}
            where = f"{instrument} {level} {unit}"
            iccs.append(_unit_icc(ratings, settings, seed, where).assign(**context, **coverage))
            if level == "item" and settings["item_agreement"]:
                level_of_codes = (settings.get("code_levels") or {}).get(instrument, "ordinal")
                table = _unit_agreement(ratings, _categories(keys, instrument), settings, seed, where, level_of_codes)
                if table is not None:
                    agreements.append(table.assign(**context))
            if level == "scale":
                leniencies.append(_leniency(ratings, settings).assign(**context))
                pairs.append(_pairs(ratings, settings).assign(**context))
    return {
        "icc": _ordered(iccs, [*CONTEXT_COLUMNS], [*COMPONENT_COLUMNS, *COVERAGE_COLUMNS]),
        "agreement": _ordered(agreements, CONTEXT_COLUMNS),
        "leniency": _ordered(leniencies, CONTEXT_COLUMNS),
        "pairs": _ordered(pairs, CONTEXT_COLUMNS),
    }


def _leniency(ratings: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    from alliance.interrater.rater_effects import rater_leniency

    return rater_leniency(ratings, "target", "rater", "rating", ci_level=settings["ci_level"])


def _pairs(ratings: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    from alliance.interrater.rater_effects import PAIR_COLUMNS, pairwise_rater_agreement

    try:
        return pairwise_rater_agreement(ratings, "target", "rater", "rating", min_shared=settings["min_shared"])
    except ValueError as err:  # no pair shares enough sessions: an empty table, said in the log
        log.warning("rater pairs: %s", err)
        return pd.DataFrame(columns=PAIR_COLUMNS)


def _ordered(parts: list[pd.DataFrame], first: list[str], last: Sequence[str] = ()) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=first)
    out = pd.concat(parts, ignore_index=True)
    middle = [c for c in out.columns if c not in first and c not in last]
    return out[[*first, *middle, *last]]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def write_interrater(administrations_path: str, scores_path: str, config: Mapping[str, Any],
                     outputs: Mapping[str, str]) -> dict[str, pd.DataFrame]:
    """Workflow step: :func:`interrater_tables` written as CSV (``outputs``: icc, agreement,
    leniency, pairs paths)."""
    from alliance.scoring.instruments import keys_from_config

    instruments = interrater_instruments(config)
    keys = {name: key for name, key in keys_from_config(config).items() if name in instruments}
    administrations, scores = _observer_data(administrations_path, scores_path, instruments)
    tables = interrater_tables(administrations, scores, config["interrater"], instruments, config["study"]["seed"],
                               keys)
    del administrations, scores
    shown = tables["icc"][tables["icc"]["mcgraw_wong"].isin(["ICC(A,1)", "ICC(C,1)"])
                          & tables["icc"]["level"].eq("scale")]
    for row in shown.itertuples():
        log.info("%s %s %s = %.3f [%.3f, %.3f] (%s, %s); variances target %.4f, rater %.4f, residual %.4f",
                 row.instrument, row.unit, row.mcgraw_wong, row.icc, row.ci_low, row.ci_high, row.method,
                 row.interpretation, row.var_target, row.var_rater, row.var_residual)
    for name, table in tables.items():
        write_csv(table, outputs[name])
    return tables


def _observer_data(administrations_path: str, scores_path: str,
                   instruments: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The observers' rows of the administrations (ids and the items of ``instruments``) and of
    the scores: all the steps use, a small part of the files (read column and row groups only)."""
    import pyarrow.parquet as pq

    from alliance.outputs import read_parquet

    observers = [("respondent", "==", "observer")]
    names = pq.read_schema(administrations_path).names
    items = {c for i in instruments for c in _item_columns(pd.DataFrame(columns=names), i)}
    wanted = [c for c in names if c in items or c in (*SESSION_KEYS, "respondent", "rater")]
    administrations = read_parquet(administrations_path, columns=wanted, rows=observers)
    return administrations, read_parquet(scores_path, rows=observers)


def write_interrater_figures(administrations_path: str, scores_path: str, config: Mapping[str, Any],
                             instrument: str, leniency_png: str, pairs_png: str) -> None:
    """Workflow step: the leniency and pairwise figures of one instrument's ``figure_scale``."""
    from alliance.interrater.figures import plot_pairwise_agreement, plot_rater_leniency
    from alliance.report.style import save_figure  # here: the tables' step needs no matplotlib
    from alliance.interrater.rater_effects import rater_leniency

    settings = config["interrater"]
    administrations, scores = _observer_data(administrations_path, scores_path, [instrument])
    sessions, _ = reliability_subsample(administrations, instrument, settings["subsample"], config["study"]["seed"])
    scale = settings["figure_scale"]
    units = {unit: r for _, unit, r in rating_units(administrations, scores, instrument, sessions, ["scale"], None)}
    if scale not in units:
        raise ValueError(f"at interrater/figure_scale: {scale!r} is not a scale of {instrument!r}: {sorted(units)}")
    ratings = units[scale]
    from alliance.scoring.instruments import keys_from_config, scale_display

    label = scale_display(instrument, scale, keys_from_config(config).get(instrument))
    table = rater_leniency(ratings, "target", "rater", "rating", ci_level=settings["ci_level"])
    save_figure(plot_rater_leniency(table, scale_label=label), leniency_png)
    try:
        figure = plot_pairwise_agreement(ratings, "target", "rater", "rating", min_shared=settings["min_shared"],
                                         scale_label=label)
    except ValueError as err:  # no coder pair shares min_shared sessions: say so in the figure
        log.warning("pairwise figure: %s", err)
        figure = _message_figure(f"No pair of coders shares {settings['min_shared']} or more sessions\n"
                                 "(interrater: min_shared); see results/reliability/rater_pairs.csv")
    save_figure(figure, pairs_png)


def _message_figure(text: str):
    from alliance.report.style import new_figure

    fig, ax = new_figure(6.5, 2.0)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    return fig
