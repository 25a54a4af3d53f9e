"""Power analysis by simulation: generate studies with a known effect, fit the analysis model,
count the rejections.

A design grid (number of therapists, clients per therapist, planned sessions, effect size) is
crossed into cells; each cell is run in *batches* of replications (one batch = one Snakemake
job, never one job per replication). Each batch has its own seed, derived from the
configured seed, the cell's parameters and the batch index through
:class:`numpy.random.SeedSequence`, so a batch gives the same numbers whichever machine or
job order runs it, and adding a cell or a batch leaves the others unchanged. Within a batch,
replication ``i`` uses the ``i``-th child of the batch's seed sequence (recorded in the
output), so any single replication can be re-run on its own.

Each replication runs the pipeline's own path: :func:`alliance.simulate.simulate_study` ->
item scoring with the shipped WAI-SR and PHQ-9 keys (:func:`alliance.scoring.scores.score_administrations`)
-> the analysis dataset of :mod:`alliance.models` -> the model fit. Two analysis models:

``within_between``
    The lagged within/between-client session model (Falkenström, Granström & Holmqvist,
    2013; :func:`alliance.models.within_between_formula`); tested term ``a_cw_lag``; the
    effect size sets the generator's ``b_within`` (PHQ-9 points per point of the 1-5 WAI-SR
    item mean, the scale the alliance is analysed on here).
``early_alliance``
    The client-level model ``post ~ early_alliance + baseline + (1 | therapist)``
    (:func:`alliance.models.early_outcome_formula`); tested term ``early_alliance``; the
    effect size sets both ``b_within`` and ``b_between`` (so that 0 is a true null).

Power is the share of replications with p < alpha; a replication whose fit failed counts as
a non-rejection (and is counted in ``n_failed``). Its Monte Carlo standard error is the
binomial ``sqrt(power (1 - power) / R)`` (Morris, White & Crowther, 2019).

Tested in ``tests/test_power.py``: batches are reproducible and distinct, the rejection rate
under a true null is alpha within Monte Carlo error, power approaches 1 for a large effect,
the estimates recover the generating ``b_within``, and the Monte Carlo SE is the binomial one.

References
----------
Falkenström, F., Granström, F., & Holmqvist, R. (2013). Therapeutic alliance predicts
symptomatic improvement session by session. *Journal of Counseling Psychology*, 60, 317–328.
Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. *Statistics in Medicine*, 38, 2074–2102.
Arend, M. G., & Schäfer, T. (2019). Statistical power in two-level models: A tutorial based on
Monte Carlo simulation. *Psychological Methods*, 24, 1–19.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from alliance.logs import progress as progress_bar

__all__ = [
    "MODELS",
    "PowerCell",
    "PowerAnalysis",
    "power_grid",
    "parse_cell_id",
    "batch_seed",
    "replication_seeds",
    "batch_plan",
    "power_settings",
    "simulation_design",
    "simulation_effects",
    "analysis_data",
    "run_replication",
    "run_batch",
    "run_planned_batch",
    "power_curve",
]

log = logging.getLogger("alliance.models.power")

# model -> (tested term, generator parameters the effect size sets)
MODELS = {
    "within_between": ("a_cw_lag", ("b_within",)),
    "early_alliance": ("early_alliance", ("b_within", "b_between")),
}
DEFAULT_RANDOM = "(1 + session | client) + (1 | therapist)"
RESULT_COLUMNS = ["model", "term", "n_therapists", "clients_per_therapist", "sessions", "effect_size", "batch",
                  "batch_seed", "replicate", "seed", "estimate", "se", "df", "p", "alpha", "reject",
                  "converged", "singular", "nobs", "error"]
CELL_COLUMNS = ["n_therapists", "clients_per_therapist", "sessions", "effect_size"]
CURVE_KEYS = ["model", "term", *CELL_COLUMNS]
WAI_ITEMS, PHQ_ITEMS = 12, 9


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True, order=True)
class PowerCell:
    """One design of the grid: therapists, clients per therapist, planned sessions, effect."""

    n_therapists: int
    clients_per_therapist: int
    sessions: int
    effect_size: float

    def __post_init__(self) -> None:
        for name, minimum in (("n_therapists", 2), ("clients_per_therapist", 1), ("sessions", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"PowerCell.{name} = {value!r}; expected an integer >= {minimum}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.effect_size, bool) or not isinstance(self.effect_size, (int, float, np.number)) \
                or not math.isfinite(self.effect_size):
            raise ValueError(f"PowerCell.effect_size = {self.effect_size!r}; expected a finite number")
        object.__setattr__(self, "effect_size", float(self.effect_size))

    @property
    def id(self) -> str:
        """File-name-safe identifier, e.g. ``t20_c10_s8_e-0.5`` (see :func:`parse_cell_id`)."""
        return (f"t{self.n_therapists}_c{self.clients_per_therapist}_s{self.sessions}"
                f"_e{_effect_text(self.effect_size)}")

    @property
    def n_clients(self) -> int:
        return self.n_therapists * self.clients_per_therapist


def _effect_text(value: float) -> str:
    # repr gives the shortest text that reads back to the same float; "-0.0" is kept apart.
    return repr(float(value))


def parse_cell_id(cell_id: str) -> PowerCell:
    """The :class:`PowerCell` of an identifier made by ``PowerCell.id``."""
    try:
        t, c, s, e = cell_id.split("_", 3)
        if not (t[0], c[0], s[0], e[0]) == ("t", "c", "s", "e"):
            raise ValueError
        return PowerCell(int(t[1:]), int(c[1:]), int(s[1:]), float(e[1:]))
    except (ValueError, IndexError):
        raise ValueError(f"cell id {cell_id!r}; expected the form t<therapists>_c<clients>_s<sessions>_e<effect>, "
                         "e.g. t20_c10_s8_e-0.5") from None


def power_grid(n_therapists: Iterable[int], clients_per_therapist: Iterable[int], sessions: Iterable[int],
               effect_sizes: Iterable[float]) -> list[PowerCell]:
    """Every combination of the four design factors, sorted, without duplicates."""
    axes = [list(n_therapists), list(clients_per_therapist), list(sessions), list(effect_sizes)]
    for name, axis in zip(CELL_COLUMNS, axes):
        if not axis:
            raise ValueError(f"power grid: no values for {name}")
    return sorted(set(PowerCell(*combo) for combo in itertools.product(*axes)))


# --------------------------------------------------------------------------- seeds


def _check_seed(seed: Any, what: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what} = {seed!r}; expected a non-negative integer")
    return int(seed)


def _cell_words(cell: PowerCell) -> tuple[int, ...]:
    """Four 32-bit words from a hash of the cell's parameters: the same cell gets the same
    seeds whatever else is in the grid."""
    text = json.dumps([cell.n_therapists, cell.clients_per_therapist, cell.sessions, _effect_text(cell.effect_size)])
    digest = hashlib.sha256(text.encode("ascii")).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


def _as_seed(sequence: np.random.SeedSequence) -> int:
    # 63 bits: fits an int64 column in CSV/Parquet and is a valid seed for simulate_study.
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def batch_seed(seed: int, cell: PowerCell, batch: int) -> int:
    """Seed of one batch, from the configured seed, the cell and the batch index.

    ``SeedSequence(seed, spawn_key=(*hash words of the cell, batch))`` (NumPy's scheme for
    independent streams), reduced to a 63-bit integer.
    """
    seed = _check_seed(seed)
    batch = _check_seed(batch, "batch")
    if not isinstance(cell, PowerCell):
        raise ValueError(f"cell must be a PowerCell, got {type(cell).__name__}")
    return _as_seed(np.random.SeedSequence(seed, spawn_key=(*_cell_words(cell), batch)))


def replication_seeds(seed: int, n_reps: int) -> list[int]:
    """Seeds of replications 0..n_reps-1 of a batch: the children of ``SeedSequence(seed)``.

    Replication i's seed does not depend on n_reps.
    """
    seed = _check_seed(seed)
    return [_as_seed(child) for child in np.random.SeedSequence(seed).spawn(n_reps)]


def batch_plan(cells: Sequence[PowerCell], replications: int, batch_size: int) -> list[dict[str, Any]]:
    """Split each cell's ``replications`` into batches of at most ``batch_size``.

    Returns one dict per batch: ``cell`` (PowerCell), ``cell_id``, ``batch`` (0-based) and
    ``n_reps``; cells in the given order, batches in order.
    """
    for name, value in (("replications", replications), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"power: {name} = {value!r}; expected an integer >= 1")
    n_batches = math.ceil(replications / batch_size)
    return [{"cell": cell, "cell_id": cell.id, "batch": b,
             "n_reps": min(batch_size, replications - b * batch_size)}
            for cell in cells for b in range(n_batches)]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PowerAnalysis:
    """What each replication simulates and fits.

    Parameters
    ----------
    model : {"within_between", "early_alliance"}
        The analysis model (module docstring).
    random : str
        Random part of the ``within_between`` model (lme4 syntax); ignored for
        ``early_alliance``, whose random part is ``(1 | therapist)``.
    alpha : float
        Significance level of the two-sided test of the tested term.
    reml : bool
        REML (default) or ML fits.
    design : mapping
        Overrides of :class:`alliance.simulate.SimulationDesign` fields beyond those the cell
        sets (see :func:`simulation_design`).
    effects : mapping
        Overrides of :class:`alliance.simulate.SimulationEffects` fields; the effect size is
        applied after them.
    """

    model: str = "within_between"
    random: str = DEFAULT_RANDOM
    alpha: float = 0.05
    reml: bool = True
    design: Mapping[str, Any] = field(default_factory=dict)
    effects: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"power: model = {self.model!r}; expected one of {sorted(MODELS)}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise ValueError(f"power: alpha = {self.alpha!r}; expected a number between 0 and 1")
        if not isinstance(self.random, str) or "|" not in self.random:
            raise ValueError(f"power: random = {self.random!r}; expected lme4 random terms such as '(1 | client)'")
        from alliance.simulate import SimulationDesign, SimulationEffects

        for what, cls, overrides in (("design", SimulationDesign, self.design),
                                     ("effects", SimulationEffects, self.effects)):
            if not isinstance(overrides, Mapping):
                raise ValueError(f"power: {what} must be a mapping of field names to values, got {overrides!r}")
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"power: unknown {what} field(s) {unknown}; known: {sorted(known)}")
        set_by_cell = {"n_therapists", "n_clients"} & set(self.design)
        if set_by_cell:
            raise ValueError(f"power: design field(s) {sorted(set_by_cell)} are set by the grid, not by overrides")
        taken = set(self.effect_parameters) & set(self.effects)
        if taken:
            raise ValueError(f"power: effects field(s) {sorted(taken)} are set by the grid's effect size for "
                             f"model {self.model!r}; remove them from the overrides")

    @property
    def term(self) -> str:
        return MODELS[self.model][0]

    @property
    def effect_parameters(self) -> tuple[str, ...]:
        return MODELS[self.model][1]


def power_settings(config: Mapping[str, Any], default_seed: int | None = None) -> dict[str, Any]:
    """Read the ``power:`` section of the workflow config.

    Keys: ``n_therapists``, ``clients_per_therapist``, ``sessions``, ``effect_sizes`` (lists),
    ``replications``, ``batch_size``, and optionally ``seed`` (default ``default_seed``,
    e.g. ``study.seed``), ``model``, ``random``, ``alpha``, ``reml``, ``design``,
    ``effects`` (as :class:`PowerAnalysis`).

    Returns
    -------
    dict
        ``analysis`` (PowerAnalysis), ``cells`` (list of PowerCell), ``replications``,
        ``batch_size``, ``seed`` and ``batches`` (:func:`batch_plan`).
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"power: expected a mapping (the config's power: section), got {type(config).__name__}")
    grid_keys = ("n_therapists", "clients_per_therapist", "sessions", "effect_sizes")
    required = [*grid_keys, "replications", "batch_size"]
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"power: missing key(s) {missing}")
    allowed = {*required, "seed", "model", "random", "alpha", "reml", "design", "effects"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"power: unknown key(s) {unknown}; known: {sorted(allowed)}")
    for key in grid_keys:
        if isinstance(config[key], (str, bytes)) or not isinstance(config[key], Sequence):
            raise ValueError(f"power.{key} = {config[key]!r}; expected a list")
    seed = config.get("seed", default_seed)
    if seed is None:
        raise ValueError("power: no seed; set power.seed (or study.seed)")
    analysis = PowerAnalysis(**{k: config[k] for k in ("model", "random", "alpha", "reml", "design", "effects")
                                if k in config})
    cells = power_grid(*(config[k] for k in grid_keys))
    return {"analysis": analysis, "cells": cells, "replications": config["replications"],
            "batch_size": config["batch_size"], "seed": _check_seed(seed, "power.seed"),
            "batches": batch_plan(cells, config["replications"], config["batch_size"])}


# --------------------------------------------------------------------------- one replication


def simulation_design(cell: PowerCell, analysis: PowerAnalysis):
    """The generator's design for a cell.

    ``n_clients = n_therapists * clients_per_therapist`` (caseloads vary around that mean as
    the generator draws them); every client is planned for exactly ``sessions`` sessions
    (dropout, by the generator's default hazard, can end a course earlier); no observer
    ratings and no therapist switches (neither enters these models). ``analysis.design``
    overrides any of these except the sample sizes.
    """
    from alliance.simulate import SimulationDesign

    settings = {"n_therapists": cell.n_therapists, "n_clients": cell.n_clients,
                "median_planned_sessions": float(cell.sessions), "planned_sessions_sd_log": 0.0,
                "min_planned_sessions": cell.sessions, "max_sessions": cell.sessions,
                "observer_client_share": 0.0, "n_therapist_switches": 0}
    settings.update(analysis.design)
    return SimulationDesign(**settings)


def simulation_effects(cell: PowerCell, analysis: PowerAnalysis):
    """The generator's effects: defaults, then ``analysis.effects``, then the effect size."""
    from alliance.simulate import SimulationEffects

    settings = dict(analysis.effects)
    settings.update({name: cell.effect_size for name in analysis.effect_parameters})
    return SimulationEffects(**settings)


def _instrument_keys() -> dict:
    from alliance.scoring.instruments import load_key

    return {"wai_sr": load_key("wai_sr"), "phq9": load_key("phq9")}


def _administrations(client_forms: pd.DataFrame) -> pd.DataFrame:
    """The generator's client forms in the tidy layout of the data contract (ids kept as
    simulated: nothing here is written)."""
    columns = {"client": client_forms["client_id"].astype(str).to_numpy(),
               "therapist": client_forms["therapist_id"].astype(str).to_numpy(),
               "session": client_forms["session"].to_numpy(), "respondent": "client", "rater": None}
    columns.update({f"wai_sr_{i}": client_forms[f"wai{i}"] for i in range(1, WAI_ITEMS + 1)})
    columns.update({f"phq9_{i}": client_forms[f"phq{i}"] for i in range(1, PHQ_ITEMS + 1)})
    return pd.DataFrame(columns)


def analysis_data(client_forms: pd.DataFrame, analysis: PowerAnalysis, keys: Mapping | None = None
                  ) -> tuple[str, pd.DataFrame]:
    """Score a simulated study's client forms and build the model's dataset and formula.

    The WAI-SR total (sum of 12 items, prorated as its key says) is divided by 12, so the
    alliance is on the 1–5 item-mean scale on which the generator's effects are defined.
    """
    from alliance import models
    from alliance.scoring.scores import score_administrations

    scores = score_administrations(_administrations(client_forms), keys or _instrument_keys(), source="simulated")
    wai = scores["instrument"].eq("wai_sr")
    scores.loc[wai, "score"] = scores.loc[wai, "score"] / WAI_ITEMS
    outcome, alliance = ("phq9", "client", "total"), ("wai_sr", "client", "total")
    if analysis.model == "within_between":
        sessions = models.session_level_data(scores, outcome, alliance)
        data = models.within_between_data(sessions)
        return models.within_between_formula(random=analysis.random), data
    data = models.client_level_data(scores, outcome, alliance)
    return models.early_outcome_formula("post"), data


def _default_fit(formula: str, data: pd.DataFrame, reml: bool = True):
    from alliance.models.families import fit_model

    return fit_model(formula, data, reml=reml, engine="alliance")


def run_replication(cell: PowerCell, seed: int, analysis: PowerAnalysis | None = None,
                    fit: Callable[..., Any] | None = None, keys: Mapping | None = None) -> dict[str, Any]:
    """Simulate one study, fit the model, return the tested term's estimate, SE, df, p.

    A failure (of the data preparation or the fit) is returned with ``error`` set and NaN
    statistics rather than raised, so that one odd dataset does not end a batch.
    """
    from alliance.simulate import simulate_study

    analysis = analysis or PowerAnalysis()
    fit = fit or _default_fit
    row = {"estimate": np.nan, "se": np.nan, "df": np.nan, "p": np.nan, "converged": False, "singular": False,
           "nobs": 0, "error": ""}
    try:
        study = simulate_study(simulation_design(cell, analysis), simulation_effects(cell, analysis), seed)
        formula, data = analysis_data(study.client_forms, analysis, keys)
        result = fit(formula, data, reml=analysis.reml)
        effects = result.fixed_effects
        if analysis.term not in effects.index:
            raise ValueError(f"fit has no term {analysis.term!r}; terms: {list(effects.index)}")
        stats_row = effects.loc[analysis.term]
        row.update({"estimate": float(stats_row["estimate"]), "se": float(stats_row["se"]),
                    "df": float(stats_row["df"]) if "df" in stats_row.index else np.nan,
                    "p": float(stats_row["p"]),
                    "converged": bool(getattr(result, "converged", True)),
                    "singular": bool(getattr(result, "singular", False)),
                    "nobs": int(getattr(result, "nobs", len(data)))})
    except Exception as err:  # noqa: BLE001 - recorded per replication, see docstring
        row["error"] = f"{type(err).__name__}: {err}"
        log.warning("power cell %s seed %d failed: %s", cell.id, seed, row["error"])
    return row


# --------------------------------------------------------------------------- a batch


def run_batch(cell: PowerCell, n_reps: int, seed: int, fit: Callable[..., Any] | None = None,
              analysis: PowerAnalysis | None = None, batch: int = 0, progress: bool = True) -> pd.DataFrame:
    """Run one batch of replications of a cell.

    Parameters
    ----------
    cell : PowerCell
    n_reps : int
        Replications in this batch.
    seed : int
        The batch's seed (:func:`batch_seed`); replication i uses
        ``replication_seeds(seed, n_reps)[i]``.
    fit : callable, optional
        ``fit(formula, data, reml=...)`` returning an object with ``fixed_effects``
        (index: terms; columns ``estimate``, ``se``, ``p`` and optionally ``df``) and
        optionally ``converged``, ``singular``, ``nobs``. Default: :func:`alliance.lmm.fit`
        (through :func:`alliance.models.fit_model`), Satterthwaite df.
    analysis : PowerAnalysis, optional
        Model, random part, alpha and generator overrides (default ``PowerAnalysis()``).
    batch : int
        Batch index, recorded in the output.
    progress : bool
        Show a tqdm progress bar (in the log when logging is configured, else on stderr).

    Returns
    -------
    DataFrame
        One row per replication, columns :data:`RESULT_COLUMNS`; ``reject`` is p < alpha
        (False for a failed replication, whose ``error`` says why).

    Raises
    ------
    ValueError
        Bad arguments, or every replication of the batch failed (the first error is quoted:
        a configuration problem, not bad luck).
    """
    if not isinstance(cell, PowerCell):
        raise ValueError(f"cell must be a PowerCell, got {type(cell).__name__}")
    if isinstance(n_reps, bool) or not isinstance(n_reps, (int, np.integer)) or n_reps < 1:
        raise ValueError(f"n_reps = {n_reps!r}; expected an integer >= 1")
    analysis = analysis or PowerAnalysis()
    seeds = replication_seeds(seed, int(n_reps))
    keys = _instrument_keys()
    rows = []
    bar = progress_bar(seeds, desc=f"power {cell.id} batch {batch}", logger=log, disable=not progress)
    for i, rep_seed in enumerate(bar):
        rows.append({"replicate": i, "seed": rep_seed, **run_replication(cell, rep_seed, analysis, fit, keys)})
    bar.close()
    out = pd.DataFrame(rows)
    if (out["error"] != "").all():
        raise ValueError(f"power cell {cell.id} batch {batch}: all {n_reps} replications failed; first error: "
                         f"{out['error'].iloc[0]}")
    out["reject"] = out["p"].lt(analysis.alpha).fillna(False).astype(bool)
    identity = {"model": analysis.model, "term": analysis.term, "n_therapists": cell.n_therapists,
                "clients_per_therapist": cell.clients_per_therapist, "sessions": cell.sessions,
                "effect_size": cell.effect_size, "batch": int(batch), "batch_seed": _check_seed(seed),
                "alpha": float(analysis.alpha)}
    out = out.assign(**identity)
    return out[RESULT_COLUMNS]


def run_planned_batch(settings: Mapping[str, Any], cell_id: str, batch: int, fit: Callable[..., Any] | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """Run batch ``batch`` of cell ``cell_id`` as the settings plan it (one workflow job).

    Parameters
    ----------
    settings : dict
        :func:`power_settings` of the config's ``power:`` section.
    cell_id : str
        ``PowerCell.id`` (the job's wildcard).
    batch : int
        Batch index (the job's wildcard).

    Raises
    ------
    ValueError
        The cell or batch is not in the plan (e.g. the config changed since the job list
        was made).
    """
    plan = {(entry["cell_id"], entry["batch"]): entry for entry in settings["batches"]}
    key = (str(cell_id), int(batch))
    if key not in plan:
        known = sorted({c for c, _ in plan})
        raise ValueError(f"power: cell {cell_id!r} batch {batch} is not planned; cells: {known}, "
                         f"batches 0..{max(b for _, b in plan)}")
    entry = plan[key]
    seed = batch_seed(settings["seed"], entry["cell"], entry["batch"])
    return run_batch(entry["cell"], entry["n_reps"], seed, fit=fit, analysis=settings["analysis"],
                     batch=entry["batch"], progress=progress)


# --------------------------------------------------------------------------- summaries


def _wilson(successes: np.ndarray, n: np.ndarray, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def power_curve(results: pd.DataFrame, alpha: float | None = None) -> pd.DataFrame:
    """Power per cell with its Monte Carlo error.

    Parameters
    ----------
    results : DataFrame
        Batches from :func:`run_batch`, concatenated.
    alpha : float, optional
        Recompute rejections at this level (default: the ``reject`` column, i.e. each batch's
        own alpha).

    Returns
    -------
    DataFrame
        One row per model, term and cell: ``n_reps``, ``n_failed``, ``n_nonconverged``,
        ``n_singular``, ``rejections``, ``power`` (rejections / n_reps; failed replications
        count as non-rejections; a fit that did not report convergence counts by its p value
        and is counted in ``n_nonconverged``), ``mcse`` = sqrt(power (1 - power) / n_reps) (Morris et
        al., 2019), ``ci_low``/``ci_high`` (Wilson 95% interval), ``mean_estimate``,
        ``sd_estimate``, ``mean_se`` (over the successful replications).
    """
    needed = [*CURVE_KEYS, "seed", "estimate", "se", "p", "reject", "converged", "singular", "error"]
    absent = [c for c in needed if c not in results.columns]
    if absent:
        raise ValueError(f"power_curve: results lack column(s) {absent}; expected run_batch output")
    if results.empty:
        raise ValueError("power_curve: no results")
    duplicated = results.duplicated([*CURVE_KEYS, "seed"])
    if duplicated.any():
        raise ValueError(f"power_curve: {int(duplicated.sum())} replication(s) appear twice (same cell and seed); "
                         "was a batch included twice?")
    data = results.copy()
    if alpha is not None:
        data["reject"] = data["p"].lt(alpha).fillna(False)
    data["failed"] = data["error"].fillna("").ne("")
    data["nonconverged"] = ~data["failed"] & ~data["converged"].astype(bool)
    ok = data["estimate"].where(~data["failed"])
    data["ok_estimate"], data["ok_se"] = ok, data["se"].where(~data["failed"])
    grouped = data.groupby(CURVE_KEYS, sort=True)
    curve = grouped.agg(n_reps=("seed", "size"), n_failed=("failed", "sum"),
                        n_nonconverged=("nonconverged", "sum"), n_singular=("singular", "sum"),
                        rejections=("reject", "sum"), mean_estimate=("ok_estimate", "mean"),
                        sd_estimate=("ok_estimate", "std"), mean_se=("ok_se", "mean")).reset_index()
    for column in ("n_reps", "n_failed", "n_nonconverged", "n_singular", "rejections"):
        curve[column] = curve[column].astype("int64")
    n = curve["n_reps"].to_numpy(float)
    power = curve["rejections"].to_numpy(float) / n
    curve["power"] = power
    curve["mcse"] = np.sqrt(power * (1 - power) / n)
    curve["ci_low"], curve["ci_high"] = _wilson(curve["rejections"].to_numpy(float), n)
    order = [*CURVE_KEYS, "n_reps", "n_failed", "n_nonconverged", "n_singular", "rejections", "power", "mcse",
             "ci_low", "ci_high", "mean_estimate", "sd_estimate", "mean_se"]
    return curve[order]
