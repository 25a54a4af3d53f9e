"""Workflow steps of the alliance–outcome models: one function per Snakemake rule.

Each step reads the files a rule names, calls :mod:`alliance.models` (data preparation,
fitting through :func:`alliance.lmm.fit`, summaries) and writes the rule's outputs. The models
are declared in the config (``models: fits:``); the multiverse (``models: multiverse:``),
the cluster bootstrap (``models: bootstrap:``) and the parameter-recovery study
(``models: recovery:``) are configured beside them (config/README.md).

* :func:`write_model_datasets`: every declared model's and specification's dataset in one
  pass over the scores table (:func:`model_datasets`) -> ``results/interim/datasets/``.
* :func:`run_model`: one declared model's dataset -> ``results/models/{model}/fixed_effects.csv``,
  ``random_effects.csv``, ``fit.json`` (the result contract) and ``therapist_effects.csv``.
* :func:`write_model_tables`, :func:`write_forest_plot`, :func:`write_trajectory_figure`,
  :func:`write_scatter_figure`, :func:`write_caterpillar_figure`: tables and figures over the
  fitted models; the forest plot draws r-equivalents beside the benchmark of Flückiger et al.
  (2018).
* :func:`run_specification`, :func:`write_specification_curve`: one multiverse
  specification per job, then the specification curve (Simonsohn, Simmons & Nelson, 2020).
* :func:`run_bootstrap_batch`, :func:`gather_bootstrap`: cluster bootstrap (Davison &
  Hinkley, 1997, sec. 3.8) split into parallel jobs, gathered into percentile intervals.
* :func:`write_model_diagnostics`: residuals, random-effect QQ and leave-one-therapist-out
  influence of one model (:mod:`alliance.models.diagnostics`) -> ``diagnostics.json``,
  ``influence.csv`` and its figure; :func:`diagnostic_sentences` for the landing page.
* :func:`run_recovery_batch`, :func:`summarise_recovery`: simulated studies
  (:mod:`alliance.simulate`) scored and fitted by the pipeline's own functions; coverage of
  the 95% CIs and relative bias of the within- and between-client alliance effects
  (Morris, White & Crowther, 2019, for the performance measures and their Monte Carlo SEs).

Tested in tests/test_model_workflow.py: the declared-model path against the lme4 1.1-31 /
lmerTest 3.1-3 reference fits (tests/data/models/), the bootstrap batches against one
undivided run, the recovery step against the simulation's truth, and the workflow on the
bundled example (its alliance-effect CIs cover the generator's truth).

References
----------
Davison, A. C., & Hinkley, D. V. (1997). *Bootstrap methods and their application*.
Cambridge University Press.
Flückiger, C., Del Re, A. C., Wampold, B. E., & Horvath, A. O. (2018). The alliance in adult
psychotherapy: a meta-analytic synthesis. *Psychotherapy*, 55, 316–340.
Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. *Statistics in Medicine*, 38, 2074–2102.
Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis.
*Nature Human Behaviour*, 4, 1208–1214.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliance import models as M
from alliance.logs import progress
from alliance.outputs import write_csv, write_json, write_parquet
from alliance.report.tables import markdown_text


from alliance.lmm import parse_formula
from alliance.models.summaries import ModelSummary



from alliance.models.power import CELL_COLUMNS, power_curve, power_settings, run_planned_batch

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_KINDS",
    "declared_models",
    "model_spec",
    "benefit_direction",
    "prepare_model_data",
    "fit_declared_model",
    "fit_prepared_model",
    "dataset_settings",
    "model_data_settings",
    "model_datasets",
    "read_scores",
    "write_model_datasets",
    "run_model",
    "default_targets",
    "write_model_tables",
    "alliance_effects",
    "write_forest_plot",
    "write_therapist_icc",
    "latent_mean_record",
    "figure_models",
    "write_trajectory_figure",
    "write_scatter_figure",
    "write_caterpillar_figure",
    "write_model_diagnostics",
    "diagnostic_sentences",
    "multiverse_grid",
    "specification_ids",
    "run_specification",
    "write_specification_curve",
    "bootstrap_models",
    "bootstrap_batches",
    "run_bootstrap_batch",
    "gather_bootstrap",
    "recovery_batches",
    "simulated_scores",
    "recovery_fit",
    "run_recovery_batch",
    "summarise_recovery",
    "progress",
]

MODEL_KINDS = ("early_outcome", "therapist_client", "within_between", "reverse", "trait_state")
CLIENT_LEVEL_KINDS = ("early_outcome", "therapist_client")
SESSION_LEVEL_KINDS = ("within_between", "reverse", "trait_state")
DEFAULT_RANDOM = {
    "within_between": "(1 + session | client) + (1 | therapist)",
    "reverse": "(1 + session | client) + (1 | therapist)",
    "trait_state": "(1 | client) + (1 | therapist)",
}
MODEL_DEFAULTS = {
    "label": None, "early": None, "covariates": [], "variant": "post", "lagged": True,
    "lagged_response": False, "detrend": False, "random": None, "engine": "alliance", "reml": True,
    "score_covariates": {},
}
# Display names of the alliance terms and the level each effect is at.
ALLIANCE_TERMS = {
    "early_alliance": ("early alliance", "client"),
    "early_alliance_tm": ("early alliance, therapist mean", "therapist"),
    "early_alliance_cd": ("early alliance, client deviation from therapist mean", "client"),
    "a_cw_lag": ("alliance within client, previous session", "within"),
    "a_cw": ("alliance within client, same session", "within"),
    "a_cm": ("alliance between clients (client mean)", "client"),
    "alliance_trait": ("trait-like alliance (client mean)", "client"),
    "alliance_state": ("state-like alliance (session deviation)", "within"),
    "s_cw_lag": ("symptoms within client, previous session", "within"),
    "s_cw": ("symptoms within client, same session", "within"),
    "s_cm": ("symptoms between clients (client mean)", "client"),
}
# Truth of the recovery study: the simulation's effects per point of the WAI-SR total (the
# wai_sr key scores the total as the 12-60 sum; truth.json's per_wai_total_point entry).
RECOVERY_TERMS = {"a_cw_lag": "b_within", "a_cm": "b_between"}
RECOVERY_SPEC = {
    "name": "recovery", "kind": "within_between", "outcome": ("phq9", "client", "total"),
    "alliance": ("wai_sr", "client", "total"), **MODEL_DEFAULTS,
}


# --------------------------------------------------------------------------------------
# Declared models
# --------------------------------------------------------------------------------------
def _models_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("models") or {}


def declared_models(config: Mapping[str, Any]) -> list[str]:
    """Names of the models declared under ``models: fits:``, in config order."""
    return list(_models_config(config).get("fits") or {})


def _measure(value: Any, what: str) -> tuple[str, str | None, str]:
    """``(instrument, respondent, scale)`` from a config measure mapping (or such a tuple)."""
    if isinstance(value, Mapping):
        if not value.get("instrument"):
            raise ValueError(f"{what}: give the instrument (an entry under instruments:), got {dict(value)!r}")
        return str(value["instrument"]), value.get("respondent"), str(value.get("scale") or "total")
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return tuple(value)  # type: ignore[return-value]
    raise ValueError(f"{what}: expected a mapping with instrument, respondent and scale, got {value!r}")


def _early_default(config: Mapping[str, Any]) -> dict[str, Any]:
    scoring = config.get("scoring") or {}
    return dict(scoring.get("early_alliance") or {"method": "mean_1_to_k", "k": 3, "min_sessions": 1})


def model_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The declared model ``name`` with every default filled in.

    The early-alliance definition defaults to ``scoring: early_alliance:`` (keys given in the
    model override it); measures become ``(instrument, respondent, scale)`` tuples.

    Raises
    ------
    ValueError
        The model is not declared, its kind is unknown, or a key does not apply to its kind.
    """
    fits = _models_config(config).get("fits") or {}
    if name not in fits:
        raise ValueError(f"model {name!r} is not declared under models: fits: (declared: {list(fits)})")
    where = f"models: fits: {name}"
    spec = {**MODEL_DEFAULTS, **fits[name]}
    spec["name"] = name
    if spec.get("kind") not in MODEL_KINDS:
        raise ValueError(f"{where}: kind {spec.get('kind')!r} is not one of {', '.join(MODEL_KINDS)}")
    spec["outcome"] = _measure(spec.get("outcome"), f"{where}: outcome")
    spec["alliance"] = _measure(spec.get("alliance"), f"{where}: alliance")
    spec["early"] = {**_early_default(config), **(fits[name].get("early") or {})}
    spec["covariates"] = list(spec["covariates"] or [])
    if spec["variant"] not in M.EARLY_VARIANTS:
        raise ValueError(f"{where}: variant {spec['variant']!r} is not one of {list(M.EARLY_VARIANTS)}")
    spec["score_covariates"] = {k: dict(v) for k, v in (spec["score_covariates"] or {}).items()}
    if spec["score_covariates"] and spec["kind"] not in CLIENT_LEVEL_KINDS:
        raise ValueError(f"{where}: score_covariates apply to the client-level kinds (early_outcome, therapist_client)")
    if spec["kind"] in CLIENT_LEVEL_KINDS and spec["random"] is not None:
        raise ValueError(f"{where}: random applies to session-level models only; client-level models "
                         "(early_outcome, therapist_client) have a therapist random intercept")
    if spec["engine"] not in ("alliance", "statsmodels"):
        raise ValueError(f"{where}: engine {spec['engine']!r} is not 'alliance' or 'statsmodels'")
    return spec


def _instrument_direction(config: Mapping[str, Any], instrument: str) -> str:
    from alliance.scoring.instruments import load_key

    entries = config.get("instruments") or {}
    if instrument not in entries:
        raise ValueError(f"instrument {instrument!r} is not an entry under instruments: (entries: {list(entries)})")
    entry = entries[instrument]
    return load_key(entry["key"], key_file=entry.get("key_file")).direction


def benefit_direction(predictor_direction: str, response_direction: str) -> str:
    """Orientation passed to :func:`alliance.models.r_equivalents`.

    A positive ``r_benefit`` means "more of the better end of the predictor goes with more of
    the better end of the response", as Flückiger et al. (2018) code the alliance–outcome
    correlation. With both scales pointing the same way a positive coefficient is a benefit
    (``"higher_is_better"``), otherwise a negative one is (``"higher_is_worse"``).
    """
    for value in (predictor_direction, response_direction):
        if value not in M.OUTCOME_DIRECTIONS:
            raise ValueError(f"direction {value!r} is not one of {M.OUTCOME_DIRECTIONS}")
    return "higher_is_better" if predictor_direction == response_direction else "higher_is_worse"


def _spec_direction(config: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    outcome = _instrument_direction(config, spec["outcome"][0])
    alliance = _instrument_direction(config, spec["alliance"][0])
    return benefit_direction(alliance, outcome)


def _alliance_terms(spec: Mapping[str, Any]) -> list[str]:
    kind, lag = spec["kind"], "_lag" if spec["lagged"] else ""
    return {
        "early_outcome": ["early_alliance"],
        "therapist_client": ["early_alliance_tm", "early_alliance_cd"],
        "within_between": [f"a_cw{lag}", "a_cm"],
        "reverse": [f"s_cw{lag}", "s_cm"],
        "trait_state": ["alliance_trait", "alliance_state"],
    }[kind]


# --------------------------------------------------------------------------------------
# Fitting one declared model
# --------------------------------------------------------------------------------------
@dataclass
class FittedModel:
    """A declared model fitted: the engine's result, the formula, the data it was fitted to
    (all rows; the engine drops incomplete ones) and the :class:`alliance.models.ModelSummary`."""

    spec: dict[str, Any]
    result: Any
    formula: str
    data: pd.DataFrame
    summary: M.ModelSummary


def prepare_model_data(spec: Mapping[str, Any], scores: pd.DataFrame, clients: pd.DataFrame | None,
                       frames: M.SharedFrames | None = None) -> pd.DataFrame:
    """Client-level data (early alliance, baseline, post, change, slope) for the client-level
    kinds, one row per client and session (outcome and alliance side by side) otherwise.
    ``frames`` (:class:`alliance.models.SharedFrames` of ``scores``) shares score series, early
    alliance and growth slopes with the other datasets built from the same table."""
    if spec["kind"] in CLIENT_LEVEL_KINDS:
        return M.client_level_data(scores, spec["outcome"], spec["alliance"], spec["early"],
                                   spec["covariates"], clients,
                                   score_covariate_definitions=spec.get("score_covariates"), frames=frames)
    return M.session_level_data(scores, spec["outcome"], spec["alliance"], clients, spec["covariates"],
                                frames=frames)


def _fit_kind(spec: Mapping[str, Any], base: pd.DataFrame, fit) -> tuple[Any, str, pd.DataFrame, list[dict]]:
    kind, covariates = spec["kind"], [*spec["covariates"], *(spec.get("score_covariates") or {})]
    common = {"reml": bool(spec["reml"]), "engine": spec["engine"], "fit": fit}
    if kind == "early_outcome":
        result, formula = M.fit_early_outcome(base, spec["variant"], covariates, **common)
        return result, formula, base, []
    if kind == "therapist_client":
        response, with_baseline = M.EARLY_VARIANTS[spec["variant"]]
        result, formula, data, contrast = M.fit_therapist_client(
            base, response, covariates, baseline="baseline" if with_baseline else None, **common)
        return result, formula, data, [contrast]
    random = spec["random"] or DEFAULT_RANDOM[kind]
    if kind == "trait_state":
        result, formula, data = M.fit_trait_state(base, covariates=covariates, random=random, **common)
        return result, formula, data, []
    direction = "alliance_to_outcome" if kind == "within_between" else "outcome_to_alliance"
    result, formula, data = M.fit_within_between(
        base, direction, detrend=bool(spec["detrend"]), lagged=bool(spec["lagged"]),
        lagged_response=bool(spec["lagged_response"]), covariates=covariates, random=random, **common)
    return result, formula, data, []


def fit_declared_model(spec: Mapping[str, Any], scores: pd.DataFrame, clients: pd.DataFrame | None,
                       direction: str = "higher_is_worse", fit=None) -> FittedModel:
    """Prepare the data of a declared model (:func:`model_spec`), fit it and summarise it.

    Parameters
    ----------
    spec : mapping
        From :func:`model_spec`.
    scores : DataFrame
        The long scores table (``docs/data_contract.md``).
    clients : DataFrame or None
        ``clients.parquet`` (therapist and covariates).
    direction : str
        Orientation of the r-equivalents (:func:`benefit_direction`).
    fit : callable, optional
        Replacement engine (tests); default :func:`alliance.lmm.fit` via ``spec['engine']``.

    Returns
    -------
    FittedModel
    """
    return fit_prepared_model(spec, prepare_model_data(spec, scores, clients), direction, fit)


def fit_prepared_model(spec: Mapping[str, Any], base: pd.DataFrame, direction: str = "higher_is_worse",
                       fit=None) -> FittedModel:
    """Fit a declared model (:func:`model_spec`) to its dataset (:func:`prepare_model_data`, or
    the file :func:`write_model_datasets` wrote) and summarise it; as :func:`fit_declared_model`."""
    result, formula, data, contrasts = _fit_kind(spec, base, fit)
    summary = M.model_summary(result, data, _alliance_terms(spec), direction, contrasts=contrasts)
    return FittedModel(dict(spec), result, formula, data, summary)


def _therapist_effects(fitted: FittedModel) -> pd.DataFrame:
    """The therapists' conditional modes with their conditional SDs (``<term>_cond_sd``, lme4's
    ``condVar``), ranked, without their ids (for the caterpillar plot)."""
    from alliance.models.uncertainty import conditional_sd

    ranef = getattr(fitted.result, "ranef", {}) or {}
    if M.THERAPIST not in ranef:
        return pd.DataFrame(columns=["rank", "(Intercept)", "n_clients"])
    modes = ranef[M.THERAPIST].copy()
    if getattr(fitted.result, "_structure", None) is not None:  # not for a test's stand-in engine
        sds = conditional_sd(fitted.result, M.THERAPIST)
        modes[[f"{c}_cond_sd" for c in sds.columns]] = sds.to_numpy()
    rows = fitted.data
    n_clients = rows.groupby(M.THERAPIST, sort=False)[M.CLIENT].nunique()
    modes["n_clients"] = n_clients.reindex(modes.index).fillna(0).astype("int64").to_numpy()
    first = modes.columns[0]
    modes = modes.sort_values(first, kind="mergesort").reset_index(drop=True)
    modes.insert(0, "rank", np.arange(1, len(modes) + 1))
    return modes


# --------------------------------------------------------------------------------------
# The analysis datasets: every model's and specification's, built in one pass
# --------------------------------------------------------------------------------------
#: ``attrs`` key of a dataset file that holds no rows because its data are not estimable (the
#: reason, :class:`alliance.models.NotEstimableError`); the fit records the model as such.
NOT_ESTIMABLE_DATA = "not_estimable"


def dataset_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a model or specification (:func:`model_spec`) that decide its dataset
    (:func:`prepare_model_data`): its level, the measures, the covariates and, for client-level
    data, the early-alliance definition and the score covariates. Two specs with equal
    settings have the same dataset."""
    level = "client" if spec["kind"] in CLIENT_LEVEL_KINDS else "session"
    out = {"level": level, "outcome": list(spec["outcome"]), "alliance": list(spec["alliance"]),
           "covariates": list(spec["covariates"])}
    if level == "client":
        out.update(early=dict(spec["early"]), score_covariates=dict(spec.get("score_covariates") or {}))
    return out


def _dataset_specs(config: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {"models": {name: model_spec(config, name) for name in declared_models(config)},
            "specifications": {spec: _specification_spec(config, spec) for spec in specification_ids(config)}}


def model_data_settings(config: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`dataset_settings` of every declared model and specification (the ``model_data``
    step's params: an edit that changes no dataset, such as a label or the engine, leaves it)."""
    return {group: {name: dataset_settings(spec) for name, spec in specs.items()}
            for group, specs in _dataset_specs(config).items()}


def _not_estimable_data(reason: str) -> pd.DataFrame:
    empty = pd.DataFrame({M.CLIENT: pd.Series(dtype="string"), M.THERAPIST: pd.Series(dtype="string")})
    empty.attrs[NOT_ESTIMABLE_DATA] = reason
    return empty


def model_datasets(config: Mapping[str, Any], scores: pd.DataFrame,
                   clients: pd.DataFrame | None) -> dict[str, dict[str, pd.DataFrame]]:
    """Every declared model's and multiverse specification's dataset, in one pass.

    The frames the datasets share (score series, early alliance per definition, the growth
    slopes per outcome and window, score covariates; :class:`alliance.models.SharedFrames`)
    are computed once, and a dataset whose :func:`dataset_settings` equal an earlier one's is
    that same frame. Each dataset is the one :func:`prepare_model_data` builds alone (tested
    in tests/test_model_workflow.py: equal frames, and fits identical to those from the
    scores table).

    Returns
    -------
    dict
        ``{"models": {name: data}, "specifications": {spec id: data}}``. A dataset that
        cannot be built (:class:`alliance.models.NotEstimableError`) has no rows and the
        reason in ``attrs["not_estimable"]``.
    """
    frames = M.SharedFrames(scores)
    built: dict[str, pd.DataFrame] = {}
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for group, specs in _dataset_specs(config).items():
        out[group] = {}
        for name, spec in specs.items():
            key = json.dumps(dataset_settings(spec), sort_keys=True, default=str)
            if key not in built:
                try:
                    built[key] = prepare_model_data(spec, scores, clients, frames)
                except M.NotEstimableError as exc:
                    built[key] = _not_estimable_data(str(exc))
            out[group][name] = built[key]
    return out


def _dataset_instruments(config: Mapping[str, Any]) -> list[str]:
    """The instruments any model, specification or score covariate reads."""
    found = set()
    for specs in _dataset_specs(config).values():
        for spec in specs.values():
            found |= {spec["outcome"][0], spec["alliance"][0]}
            found |= {str(d["instrument"]) for d in (spec.get("score_covariates") or {}).values() if d.get("instrument")}
    return sorted(found)


def read_scores(path: str | Path, instruments: Sequence[str] | None = None) -> pd.DataFrame:
    """The long scores table, only the columns the models use (:data:`alliance.models.SCORE_COLUMNS`)
    and, when ``instruments`` are given, only their rows (in the table's order)."""
    import pyarrow.parquet as pq

    from alliance.errors import require_columns
    from alliance.outputs import read_parquet

    names = pq.read_schema(path).names
    filters = None if instruments is None or "instrument" not in names else [("instrument", "in", sorted(instruments))]
    scores = read_parquet(path, columns=[c for c in M.SCORE_COLUMNS if c in names], rows=filters)
    require_columns(scores, M.SCORE_COLUMNS, "scores")
    return scores


def _read_clients(path: str | Path | None, covariates: Sequence[str] = ()) -> pd.DataFrame | None:
    """``clients.parquet``: the client, the therapist (when the table has one) and ``covariates``
    (a covariate the table lacks is left for the dataset's column check to name)."""
    if path is None:
        return None
    import pyarrow.parquet as pq

    from alliance.outputs import read_parquet

    names = pq.read_schema(path).names
    wanted = [M.CLIENT, M.THERAPIST, *covariates]
    return read_parquet(path, columns=[c for c in dict.fromkeys(wanted) if c in names])


def write_model_datasets(scores_path: str | Path, clients_path: str | Path | None, config: Mapping[str, Any],
                         model_paths: Sequence[str | Path], spec_paths: Sequence[str | Path]) -> None:
    """Workflow step: write every declared model's and specification's dataset
    (:func:`model_datasets`), one Parquet file each, named ``{model}.parquet`` and
    ``{spec}.parquet``. The scores table is read once, projected on the columns and instruments
    the datasets use; the clients table on the client, therapist and covariates."""
    specs = _dataset_specs(config)
    paths = {"models": {Path(p).stem: p for p in model_paths}, "specifications": {Path(p).stem: p for p in spec_paths}}
    for group, named in paths.items():
        if sorted(named) != sorted(specs[group]):
            raise ValueError(f"model datasets: {len(named)} {group} files given for {len(specs[group])} {group} "
                             "of the config")
    covariates = sorted({c for group in specs.values() for spec in group.values() for c in spec["covariates"]})
    scores = read_scores(scores_path, _dataset_instruments(config))
    log.info("model datasets: %d score rows of %d instruments read", len(scores), scores["instrument"].nunique())
    datasets = model_datasets(config, scores, _read_clients(clients_path, covariates))
    for group, named in paths.items():
        for name, path in named.items():
            write_parquet(datasets[group][name], path)
        log.info("model datasets: %d %s written", len(named), group)


def _read_dataset(path: str | Path) -> tuple[pd.DataFrame, str | None]:
    """A dataset file of :func:`write_model_datasets` and, when not estimable, the reason."""
    data = pd.read_parquet(path)
    return data, data.attrs.get(NOT_ESTIMABLE_DATA)


def run_model(data_path: str | Path, name: str, config: Mapping[str, Any], outdir: str | Path,
              fitted_path: str | Path) -> FittedModel | None:
    """Workflow step: fit declared model ``name`` to its dataset (:func:`write_model_datasets`)
    and write its result files.

    A model that cannot be estimated (:class:`alliance.models.NotEstimableError`, raised by the
    fit or recorded in the dataset) is recorded by :func:`write_not_estimable_model` and None
    is returned; the run goes on.

    Writes ``fixed_effects.csv``, ``random_effects.csv``, ``fit.json`` (the result contract
    of issue 5; ``fit.json`` also names the model, its kind, label and settings) and
    ``therapist_effects.csv`` (conditional modes, ranked, no ids) into ``outdir``, and the
    data the model was fitted to (pseudonymised ids) to ``fitted_path`` for the bootstrap and
    the figures. Every warning of the fit is logged.
    """
    spec = model_spec(config, name)
    base, reason = _read_dataset(data_path)
    try:
        if reason is not None:
            raise M.NotEstimableError(reason)
        fitted = fit_prepared_model(spec, base, _spec_direction(config, spec))
    except M.NotEstimableError as exc:
        write_not_estimable_model(name, spec, str(exc), outdir, fitted_path)
        return None
    info = fitted.summary.fit
    # AIC/BIC of the model tables: from the ML refit, which compare models with different
    # fixed effects on the same rows (the REML fit's stay in loglik/aic/bic)
    info.update(M.ml_criteria(fitted.result))
    log.info("model %s (%s): %s", name, spec["kind"], fitted.formula)
    log.info("model %s: %d observations, groups %s, converged %s, singular %s", name, info["nobs"],
             info["ngroups"], info["converged"], info["singular"])
    for message in info["warnings"]:
        log.warning("model %s: %s", name, message)
    if info["aic_ml"] is None:
        log.warning("model %s: no ML AIC/BIC: %s", name, info["ml_refit"])
    for message in info["ml_warnings"]:
        log.warning("model %s, ML refit: %s", name, message)
    info.update({"model": name, "kind": spec["kind"], "label": spec["label"] or name, "settings": _settings(spec)})
    info.update(_level_statistics(fitted, _spec_direction(config, spec)))
    if spec["kind"] == "therapist_client":
        info["latent_mean"] = latent_mean_record(fitted)
        for message in info["latent_mean"].get("warnings", []):
            log.warning("model %s: %s", name, message)
    if "n_post_in_early_window" in fitted.data.attrs:
        info["n_post_in_early_window"] = fitted.data.attrs["n_post_in_early_window"]
        log.info("model %s: %d client(s) with their last outcome score inside the early-alliance window "
                 "have no post score", name, info["n_post_in_early_window"])
    write_model_outputs(fitted.summary, outdir)
    write_csv(_therapist_effects(fitted), Path(outdir) / "therapist_effects.csv")
    write_parquet(fitted.data, fitted_path)
    return fitted


def _level_statistics(fitted: FittedModel, direction: str) -> dict[str, Any]:
    """``alliance_effects`` (each alliance term's effect size at its level,
    :func:`alliance.models.level_effects`) and ``therapist_icc`` (the unconditional therapist
    ICC of the model's response on its rows, :func:`alliance.models.therapist_icc`; three
    levels for session-level models) for ``fit.json``."""
    from alliance.models.summaries import _model_rows

    response = fitted.formula.split("~")[0].strip()
    levels = {t: ALLIANCE_TERMS[t][1] for t in _alliance_terms(fitted.spec) if t in ALLIANCE_TERMS}
    effects = M.level_effects(fitted.summary, fitted.data, levels, response, direction)
    rows = _model_rows(fitted.result, fitted.data)
    session_level = fitted.spec["kind"] in SESSION_LEVEL_KINDS
    icc = M.therapist_icc(rows, response, client=M.CLIENT if session_level else None)
    if icc["singular"]:
        log.warning("therapist ICC of %s: the therapist variance of the null model is estimated at 0", response)
    return {"alliance_effects": _records(effects), "therapist_icc": icc}


def latent_mean_record(fitted: FittedModel) -> dict[str, Any]:
    """The therapist-vs-client model's alliance slopes with LATENT therapist means
    (:func:`alliance.models.fit_latent_mean_slopes`, Lüdtke et al., 2008) for ``fit.json``.

    Same response, alliance and rows as the mixed model; its numeric covariates (baseline,
    score covariates) are adjusted for at both levels. Categorical covariates are left out
    and named under ``not_adjusted``: an arm randomised within therapists has no
    between-therapist variance, so its between slope is not identified. A model that cannot be
    estimated gives ``status: "not estimable"`` and the reason.
    """
    from alliance.lmm.design import is_categorical
    from alliance.models.summaries import _model_rows

    response = fitted.formula.split("~")[0].strip()
    terms = [t[0] for t in parse_formula(fitted.formula).fixed_terms if len(t) == 1]
    alliance = "early_alliance"
    others = [t for t in terms if t not in (f"{alliance}_tm", f"{alliance}_cd")]
    rows = _model_rows(fitted.result, fitted.data)
    numeric = [t for t in others if not is_categorical(rows[t])]
    try:
        result = M.fit_latent_mean_slopes(rows, response, alliance, numeric)
    except M.NotEstimableError as exc:
        return {"status": NOT_ESTIMABLE, "reason": str(exc)}
    record = M.latent_mean_summary(result, f"{alliance}_tm", f"{alliance}_cd")
    record["not_adjusted"] = [t for t in others if t not in numeric]
    return record


NOT_ESTIMABLE = "not estimable"


def _settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in ("outcome", "alliance", "early", "covariates", "score_covariates", "variant",
                                 "lagged", "lagged_response", "detrend", "random")}


def is_estimated(info: Mapping[str, Any]) -> bool:
    """Whether a ``fit.json`` or specification record holds an estimate (no ``status`` key,
    or a status other than ``"not estimable"``)."""
    return info.get("status") != NOT_ESTIMABLE


def write_not_estimable_model(name: str, spec: Mapping[str, Any], reason: str, outdir: str | Path,
                              data_path: str | Path) -> dict[str, Any]:
    """Record a declared model that cannot be estimated (:class:`alliance.models.NotEstimableError`).

    ``fit.json`` holds ``status: "not estimable"``, the reason, the model's name, kind, label and
    settings; ``fixed_effects.csv``, ``random_effects.csv`` and ``therapist_effects.csv`` have
    their documented columns and no rows; the model data file is empty. The run goes on.
    """
    reason = f"model {name}: {reason}"
    log.warning("%s; recorded as not estimable", reason)
    outdir = Path(outdir)
    write_csv(pd.DataFrame(columns=M.FIXED_EFFECT_COLUMNS), outdir / "fixed_effects.csv")
    write_csv(pd.DataFrame(columns=M.RANDOM_EFFECT_COLUMNS), outdir / "random_effects.csv")
    write_csv(pd.DataFrame(columns=["rank", "(Intercept)", "n_clients"]), outdir / "therapist_effects.csv")
    write_parquet(pd.DataFrame({M.CLIENT: pd.Series(dtype="string"), M.THERAPIST: pd.Series(dtype="string")}),
                  data_path)
    info = {"status": NOT_ESTIMABLE, "reason": reason, "model": name, "kind": spec["kind"],
            "label": spec["label"] or name, "engine": spec["engine"], "reml": spec["reml"], "formula": None,
            "nobs": 0, "ngroups": {}, "converged": None, "singular": None, "warnings": [],
            "r_equivalents": [], "contrasts": [], "settings": _settings(spec)}
    write_json(_plain_dict(info), outdir / "fit.json")
    return info


# --------------------------------------------------------------------------------------
# What the workflow builds by default
# --------------------------------------------------------------------------------------
FIGURE_FILES = {
    "trajectories": "results/figures/trajectories.png",
    "scatter": "results/figures/early_alliance_scatter.png",
    "caterpillar": "results/figures/therapist_caterpillar.png",
}


def default_targets(config: Mapping[str, Any]) -> list[str]:
    """The files ``snakemake`` builds by default for the models section: every declared
    model's contract files, the tables, the forest plot (when a model has an alliance ->
    outcome effect), the figures whose model exists, every model's diagnostics
    (``diagnostics.json``, ``influence.csv``, ``results/figures/diagnostics_{model}.png``), the
    bootstrap intervals and, when the multiverse is enabled, the specification curve. Empty
    without declared models."""
    models = declared_models(config)
    if not models:
        return []
    out = [f"results/models/{m}/{f}" for m in models for f in ("fixed_effects.csv", "random_effects.csv", "fit.json")]
    out += ["results/tables/model_fixed_effects.csv", "results/tables/model_fit.csv", "results/tables/model_tables.md"]
    if any(model_spec(config, m)["kind"] != "reverse" for m in models):
        out += ["results/figures/alliance_forest.png", "results/tables/alliance_effects.csv"]
    out += ["results/tables/therapist_icc.csv"]
    out += [FIGURE_FILES[f] for f, m in figure_models(config).items() if m]
    out += [f"results/models/{m}/{f}" for m in models for f in DIAGNOSTICS_FILES]
    out += [f"results/figures/diagnostics_{m}.png" for m in models]
    out += [f"results/models/{m}/bootstrap.csv" for m in bootstrap_models(config)]
    if specification_ids(config):
        out += ["results/sensitivity/specification_curve.csv", "results/sensitivity/specification_curve.png"]
    return out


# --------------------------------------------------------------------------------------
# Tables and figures over the fitted models
# --------------------------------------------------------------------------------------
def _read_fit(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_model_tables(fit_paths: Sequence[str | Path], out_fixed: str | Path, out_fit: str | Path,
                       out_markdown: str | Path | None = None) -> pd.DataFrame:
    """Workflow step: all models' fixed effects in one CSV, one row of fit statistics per
    model (with its warnings, so that the report shows them), and APA tables in Markdown
    (:func:`alliance.report.tables.fixed_effects_table`, :func:`~alliance.report.tables.random_effects_table`).

    ``fit_paths`` are the models' ``results/models/{model}/fit.json``; the other result files
    are read from the same folders.
    """
    fixed_parts, fit_rows, markdown = [], [], []
    for number, path in enumerate(fit_paths, start=1):
        folder = Path(path).parent
        info = _read_fit(path)
        name = info.get("model") or folder.name
        if not is_estimated(info):
            fit_rows.append(_fit_row(name, info))
            heading = markdown_text(str(info.get("label") or name))
            markdown.append(f"## {heading}\n\nNot estimable: {info.get('reason')}")
            continue
        fixed = pd.read_csv(folder / "fixed_effects.csv")
        fixed_parts.append(fixed.assign(model=name, kind=info.get("kind")).loc[:, ["model", "kind", *fixed.columns]])
        fit_rows.append(_fit_row(name, info))
        if out_markdown is not None:
            markdown.append(_markdown_tables(name, info, fixed, pd.read_csv(folder / "random_effects.csv"), number))
    if not fit_rows:
        raise ValueError("no fitted model to tabulate")
    fixed_all = (pd.concat(fixed_parts, ignore_index=True) if fixed_parts
                 else pd.DataFrame(columns=["model", "kind", *M.FIXED_EFFECT_COLUMNS]))
    write_csv(fixed_all, out_fixed)
    fits = pd.DataFrame(fit_rows)
    if "status" in fits:
        fits["status"] = fits["status"].fillna("estimated")
        fits["reason"] = fits["reason"].fillna("")
    write_csv(fits, out_fit)
    if out_markdown is not None:
        from alliance.outputs import atomic_path

        with atomic_path(out_markdown) as tmp:
            tmp.write_text("\n\n".join(markdown) + "\n", encoding="utf-8", newline="\n")
    return fixed_all


def _fit_row(name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    groups = info.get("ngroups") or {}
    return {
        "model": name, "kind": info.get("kind"), "label": info.get("label"), "engine": info.get("engine"),
        "formula": info.get("formula"), "reml": info.get("reml"), "nobs": info.get("nobs"),
        "n_clients": groups.get(M.CLIENT, info.get("nobs") if info.get("kind") in CLIENT_LEVEL_KINDS else None),
        "n_therapists": groups.get(M.THERAPIST),
        "loglik": info.get("loglik"), "aic": info.get("aic"), "bic": info.get("bic"),
        "loglik_ml": info.get("loglik_ml"), "aic_ml": info.get("aic_ml"), "bic_ml": info.get("bic_ml"),
        "r2_marginal": info.get("r2_marginal"), "r2_conditional": info.get("r2_conditional"),
        "therapist_share": info.get("therapist_share"),
        **{f"therapist_icc{suffix}": (info.get("therapist_icc") or {}).get(key)
           for suffix, key in (("", "icc"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))},
        "converged": info.get("converged"),
        "singular": info.get("singular"), "n_warnings": len(info.get("warnings") or []),
        "warnings": " | ".join(info.get("warnings") or []),
        # Only a model that could not be estimated adds these, so that the table of a study
        # whose models all fitted keeps its columns; write_model_tables fills the others in.
        **({} if is_estimated(info) else {"status": NOT_ESTIMABLE, "reason": info.get("reason")}),
    }


ICC_COLUMNS = ["model", "kind", "response_levels", "formula", "icc", "ci_low", "ci_high", "level", "ci_method",
               "nobs", "n_clients", "n_therapists", "var_therapist", "var_client", "var_residual", "singular"]


def write_therapist_icc(fit_paths: Sequence[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """Workflow step: the unconditional therapist ICC of each model's response (``fit.json``'s
    ``therapist_icc``, :func:`alliance.models.therapist_icc`), one row per estimated model."""
    rows = []
    for path in fit_paths:
        info = _read_fit(path)
        icc = info.get("therapist_icc")
        if not is_estimated(info) or not icc:
            continue
        rows.append({"model": info.get("model") or Path(path).parent.name, "kind": info.get("kind"),
                     "response_levels": icc["levels"], **{k: icc.get(k) for k in ICC_COLUMNS[3:]}})
    out = pd.DataFrame(rows, columns=ICC_COLUMNS)
    write_csv(out, out_csv)
    for r in out.itertuples():
        log.info("therapist ICC (%s): %.4f [%.4f, %.4f]%s", r.model, r.icc, r.ci_low, r.ci_high,
                 "; therapist variance estimated at 0" if r.singular else "")
    return out


def _markdown_tables(name: str, info: Mapping[str, Any], fixed: pd.DataFrame, random: pd.DataFrame, number: int) -> str:
    from alliance.report.tables import fixed_effects_table, random_effects_table

    label = info.get("label") or name
    from alliance.report.tables import model_table_notes

    note = (f"Model: {info.get('formula')}; {'REML' if info.get('reml') else 'ML'}, N = {info.get('nobs')} "
            f"observations.{model_table_notes(info)}")
    parts = [f"## {markdown_text(str(label))}", fixed_effects_table(fixed, number=2 * number - 1, title=f"Fixed effects: {label}",
                                                note=note).to_markdown(),
             random_effects_table(random, number=2 * number, title=f"Random effects: {label}").to_markdown()]
    warnings = info.get("warnings") or []
    parts.append("Warnings: " + ("; ".join(warnings) if warnings else "none."))
    return "\n\n".join(parts)


EFFECT_COLUMNS = ["model", "kind", "term", "level", "label", "effect_size", "estimate", "ci_low", "ci_high",
                  "b", "b_ci_low", "b_ci_high", "t", "df", "n", "n_unit", "ci_method"]


def alliance_effects(fit_paths: Sequence[str | Path]) -> pd.DataFrame:
    """Every alliance -> outcome effect of the fitted models (``fit.json`` files; reverse-direction
    models left out), each with the effect size of its level (``fit.json``'s
    ``alliance_effects``, :func:`alliance.models.level_effects`): ``level`` client | within |
    therapist, the oriented estimate and CI, and ``n`` with ``n_unit``, the N the interval rests
    on (clients, session observations, therapists)."""
    rows = []
    for path in fit_paths:
        info = _read_fit(path)
        name = info.get("model") or Path(path).parent.name
        if info.get("kind") == "reverse":
            continue
        if not is_estimated(info):
            log.warning("forest plot: %s left out (not estimable: %s)", name, info.get("reason"))
            continue
        for r in info.get("alliance_effects") or []:
            term_label = ALLIANCE_TERMS.get(r["term"], (r["term"], None))[0]
            rows.append({"model": name, "kind": info.get("kind"),
                         "label": f"{info.get('label') or name}: {term_label}",
                         **{k: r[k] for k in EFFECT_COLUMNS if k in r}})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def write_forest_plot(fit_paths: Sequence[str | Path], out_png: str | Path, out_csv: str | Path) -> pd.DataFrame:
    """Workflow step: forest plot by level and its table.

    Client-level r-equivalents (df from the number of clients) are drawn beside the benchmark
    band of Flückiger et al. (2018; r = .278, 95% CI .256–.299); within-client effects
    (standardised by the within-client SDs) and therapist-level r-equivalents (df bounded by
    the number of therapists) in panels of their own, without the band."""
    from alliance.report.style import close, save_figure
    from alliance.models.figures import forest_plot

    effects = alliance_effects(fit_paths)
    if effects.empty:
        raise ValueError("no alliance -> outcome effect to plot: declare a model that is not of kind 'reverse'")
    client = effects["level"] == "client"
    table = effects.assign(benchmark_r=np.where(client, M.BENCHMARK["r"], np.nan),
                           benchmark_ci_low=np.where(client, M.BENCHMARK["ci_low"], np.nan),
                           benchmark_ci_high=np.where(client, M.BENCHMARK["ci_high"], np.nan))
    write_csv(table, out_csv)
    fig = forest_plot(effects)
    save_figure(fig, out_png)
    close(fig)
    return effects


def _first_of(config: Mapping[str, Any], kinds: Sequence[str]) -> str | None:
    for name in declared_models(config):
        if _models_config(config)["fits"][name]["kind"] in kinds:
            return name
    return None


def figure_models(config: Mapping[str, Any]) -> dict[str, str | None]:
    """The model behind each figure: ``models: figures:`` or, when null, the first declared
    model of a suitable kind (trajectories: a session-level model; scatter: a client-level
    model; caterpillar: an alliance -> outcome session model, else a client-level model).
    None: no such model, the figure is not drawn."""
    chosen = dict(_models_config(config).get("figures") or {})
    defaults = {
        "trajectories": _first_of(config, ("within_between", "trait_state", "reverse")),
        "scatter": _first_of(config, CLIENT_LEVEL_KINDS),
        "caterpillar": _first_of(config, ("within_between", "trait_state")) or _first_of(config, CLIENT_LEVEL_KINDS),
    }
    out = {}
    for figure, default in defaults.items():
        name = chosen.get(figure) or default
        if name is not None:
            kind = model_spec(config, name)["kind"]
            need = SESSION_LEVEL_KINDS if figure == "trajectories" else CLIENT_LEVEL_KINDS if figure == "scatter" else MODEL_KINDS
            if kind not in need:
                raise ValueError(f"models: figures: {figure}: model {name!r} is of kind {kind!r}; "
                                 f"the figure needs one of {list(need)}")
        out[figure] = name
    return out


def _save(fig, path: str | Path) -> None:
    from alliance.report.style import close, save_figure

    save_figure(fig, path)
    close(fig)


def write_trajectory_figure(data_path: str | Path, config: Mapping[str, Any], name: str, out_png: str | Path) -> None:
    """Workflow step: alliance and symptom trajectories by session (a seeded random subset of
    clients and the mean) from a session-level model's data."""
    from alliance.models.figures import trajectory_plot
    from alliance.scoring.instruments import keys_from_config, measure_display

    figures = _models_config(config).get("figures") or {}
    data = pd.read_parquet(data_path)
    if data.empty:
        _save(_not_estimable_figure(name), out_png)
        return
    spec = model_spec(config, name)
    keys = keys_from_config(config)
    alliance, outcome = measure_display(spec["alliance"], keys), measure_display(spec["outcome"], keys)
    fig = trajectory_plot(data, ("alliance", "symptoms"), n_individual=int(figures.get("n_individual", 40)),
                          seed=int(config["study"]["seed"]), names={"alliance": f"Alliance ({alliance})",
                                                                   "symptoms": f"Outcome ({outcome})"})
    _save(fig, out_png)


def write_scatter_figure(data_path: str | Path, config: Mapping[str, Any], name: str, out_png: str | Path,
                         out_caption: str | Path | None = None) -> None:
    """Workflow step: early alliance against the client-level response of a client-level model,
    with the model-implied line and its 95% band (the model refitted to its data; the other
    terms at their sample means, :func:`alliance.models.uncertainty.implied_line`), the
    early-alliance coefficient and its p in the legend; and, when ``out_caption`` is given, its
    caption sentence (model, N, estimate, CI, p)."""
    from alliance.models.figures import early_outcome_scatter
    from alliance.models.summaries import early_definition
    from alliance.models.uncertainty import implied_line
    from alliance.report.tables import format_number, format_p
    from alliance.scoring.instruments import keys_from_config, measure_display

    spec = model_spec(config, name)
    response = M.EARLY_VARIANTS[spec["variant"]][0]
    early = spec["early"]
    what = {"post": "Post-treatment", "change_resid": "Residualised change in", "slope": "Rate of change of"}[response]
    data = pd.read_parquet(data_path)
    if data.empty:
        _save(_not_estimable_figure(name), out_png)
        _write_caption(out_caption, f"Model {name} could not be estimated.")
        return
    keys = keys_from_config(config)
    definition = early_definition(early)
    line, line_label, sentence = None, "", "No model-implied line: the model has no single early-alliance term."
    if spec["kind"] == "early_outcome":
        result = _fit_kind(spec, data, None)[0]
        row = result.fixed_effects.loc["early_alliance"]
        # the clients the model used (complete on every model variable), as the line describes them
        data = data.dropna(subset=[v for v in result._model_frame.parsed.variables if v in data.columns])
        x = data["early_alliance"].dropna()
        line = implied_line(result, "early_alliance", np.linspace(x.min(), x.max(), 60))
        b, p = format_number(row["estimate"], 2), format_p(row["p"])
        line_label = f"model-implied line, 95% CI (b = {b}, p {p if p[0] in '<>' else '= ' + p})"
        sentence = (f"Early-alliance coefficient *b* = {b}, 95% CI [{format_number(row['ci_low'], 2)}, "
                    f"{format_number(row['ci_high'], 2)}], *p* {p if p[0] in '<>' else '= ' + p}; the line is the "
                    "model's prediction with the other terms at their sample means, the band its 95% CI.")
    fig = early_outcome_scatter(data, "early_alliance", response,
                                xlabel=f"Early alliance ({measure_display(spec['alliance'], keys)}, {definition})",
                                ylabel=f"{what} {measure_display(spec['outcome'], keys)}",
                                line=line, line_label=line_label)
    _save(fig, out_png)
    n = int(data[["early_alliance", response]].dropna().shape[0])
    _write_caption(out_caption, f"Model: {_rst_text(spec['label'] or name)}. N = {n} clients. {sentence}")


def _not_estimable_figure(name: str, reason: str | None = None):
    """A figure that says its model could not be estimated (and why), in place of the plot."""
    from alliance.report.style import new_figure

    fig, axis = new_figure(6.5, 1.6)
    axis.set_axis_off()
    text = f"Model {name} could not be estimated"
    text += f":\n{reason}" if reason else f" (see results/models/{name}/fit.json)."
    axis.text(0.0, 0.5, text, fontsize="small", va="center", ha="left", wrap=True)
    return fig


def write_caterpillar_figure(effects_path: str | Path, out_png: str | Path, out_caption: str | Path | None = None,
                             config: Mapping[str, Any] | None = None) -> None:
    """Workflow step: caterpillar plot of the therapists' random intercepts with their 95%
    intervals (conditional mode +- 1.96 conditional SD), ranked, with each therapist's number of
    clients, no ids; and, when ``out_caption`` is given, its caption sentence (model, N)."""
    from alliance.models.figures import caterpillar_plot
    from alliance.scoring.instruments import keys_from_config, measure_display

    effects = pd.read_csv(effects_path)
    fit_path = Path(effects_path).parent / "fit.json"
    info = _read_fit(fit_path) if fit_path.exists() else {}
    if effects.empty and info and not is_estimated(info):
        _save(_not_estimable_figure(info.get("model") or fit_path.parent.name, info.get("reason")), out_png)
        _write_caption(out_caption, f"Model {info.get('model') or fit_path.parent.name} could not be estimated.")
        return
    if effects.empty:
        raise ValueError(f"{effects_path}: the model has no therapist random effect to plot")
    outcome = (info.get("settings") or {}).get("outcome")
    keys = keys_from_config(config) if config and outcome else {}
    name = measure_display(outcome, keys) if outcome else "the outcome"
    sd = "(Intercept)_cond_sd" if "(Intercept)_cond_sd" in effects.columns else None
    _save(caterpillar_plot(effects, sd=sd, n_clients="n_clients",
                           xlabel=f"therapist effect on {name} (random intercept)"), out_png)
    counts = effects["n_clients"]
    _write_caption(out_caption, f"Model: {_rst_text(info.get('label') or fit_path.parent.name)}. "
                                f"{len(effects)} therapists with {int(counts.min())}\u2013{int(counts.max())} "
                                f"clients each ({int(counts.sum())} clients)."
                                + ("" if sd else " No conditional SDs were computed, so no intervals are drawn."))


def _rst_text(text: str) -> str:
    """A config label as plain reStructuredText (markup characters escaped)."""
    return "".join("\\" + ch if ch in "*`_|\\" else ch for ch in str(text))


def _write_caption(path: str | Path | None, text: str) -> None:
    """A figure's generated caption sentence, included by its caption file in workflow/report/."""
    from alliance.outputs import atomic_path

    if path:
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------
# Multiverse: one job per specification, then the specification curve
# --------------------------------------------------------------------------------------
def _multiverse(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return _models_config(config).get("multiverse") or {}


def multiverse_grid(config: Mapping[str, Any]) -> pd.DataFrame:
    """The specifications of ``models: multiverse:`` (:func:`alliance.models.specification_grid`):
    early-alliance definition x outcome x respondent (alliance measure) x covariate set.
    Empty when the multiverse is not enabled."""
    mv = _multiverse(config)
    if not mv.get("enabled"):
        return pd.DataFrame(columns=["spec"])
    early = {label: {**_early_default(config), **(d or {})} for label, d in (mv.get("early") or {}).items()}
    outcomes = {label: _measure(m, f"models: multiverse: outcomes: {label}") for label, m in (mv.get("outcomes") or {}).items()}
    respondents = list(mv.get("respondents") or {})
    for label, m in (mv.get("respondents") or {}).items():
        _measure(m, f"models: multiverse: respondents: {label}")
    covariates = {label: list(c or []) for label, c in (mv.get("covariate_sets") or {"none": []}).items()}
    return M.specification_grid(early or {"default": _early_default(config)}, outcomes, respondents, covariates)


def specification_ids(config: Mapping[str, Any]) -> list[str]:
    """The multiverse's specification ids (``early__outcome__respondent__covariates``)."""
    return multiverse_grid(config)["spec"].tolist()


def _specification_spec(config: Mapping[str, Any], spec_id: str) -> dict[str, Any]:
    grid = multiverse_grid(config).set_index("spec")
    if spec_id not in grid.index:
        raise ValueError(f"specification {spec_id!r} is not in the multiverse of models: multiverse: "
                         f"({len(grid)} specifications, e.g. {list(grid.index[:3])})")
    row = grid.loc[spec_id]
    mv = _multiverse(config)
    alliance = _measure(mv["respondents"][row["respondent"]], f"models: multiverse: respondents: {row['respondent']}")
    return {**MODEL_DEFAULTS, "name": spec_id, "kind": "early_outcome", "outcome": row["outcome_measure"],
            "alliance": alliance, "early": dict(row["early_definition"]), "covariates": list(row["covariate_columns"]),
            "variant": mv.get("variant", "post"), "engine": mv.get("engine", "alliance"), "reml": mv.get("reml", True),
            "labels": {k: row[k] for k in ("early", "outcome", "respondent", "covariates")}}


def run_specification(data_path: str | Path, spec_id: str, config: Mapping[str, Any],
                      out_json: str | Path) -> dict[str, Any]:
    """Workflow step: fit one multiverse specification (an early alliance -> outcome model) to
    its dataset (:func:`write_model_datasets`) and write its alliance effect: the coefficient
    with its CI and p, and the r-equivalent oriented as the benchmark (so that outcomes on
    different scales can be ranked together)."""
    spec = _specification_spec(config, spec_id)
    base, reason = _read_dataset(data_path)
    try:
        if reason is not None:
            raise M.NotEstimableError(reason)
        fitted = fit_prepared_model(spec, base, _spec_direction(config, spec))
    except M.NotEstimableError as exc:
        reason = f"specification {spec_id}: {exc}"
        log.warning("%s; recorded as not estimable", reason)
        record = {"spec": spec_id, **spec["labels"], "status": NOT_ESTIMABLE, "reason": reason, "nobs": 0,
                  "warnings": []}
        write_json(_plain_dict(record), out_json)
        return record
    fe = fitted.summary.fixed_effects.set_index("term").loc["early_alliance"]
    req = fitted.summary.r_equivalents.iloc[0]
    info = fitted.summary.fit
    for message in info["warnings"]:
        log.warning("specification %s: %s", spec_id, message)
    record = {
        "spec": spec_id, **spec["labels"], "formula": fitted.formula,
        "b": fe["estimate"], "b_se": fe["se"], "b_df": fe["df"], "b_ci_low": fe["ci_low"], "b_ci_high": fe["ci_high"],
        "p": fe["p"], "std_estimate": fe["std_estimate"], "r_benefit": req["r_benefit"],
        "r_ci_low": req["benefit_ci_low"], "r_ci_high": req["benefit_ci_high"], "nobs": info["nobs"],
        "n_therapists": info["ngroups"].get(M.THERAPIST), "converged": info["converged"],
        "singular": info["singular"], "warnings": info["warnings"],
    }
    write_json(_plain_dict(record), out_json)
    log.info("specification %s: b = %.4g, r = %.3f [%.3f, %.3f], N = %d", spec_id, record["b"],
             record["r_benefit"], record["r_ci_low"], record["r_ci_high"], record["nobs"])
    return record


def write_specification_curve(spec_paths: Sequence[str | Path], out_csv: str | Path, out_png: str | Path,
                              config: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Workflow step: gather the specifications into the specification curve (ranked by the
    r-equivalent), its table and figure; the median and the share with p < .05 are logged.

    Specifications that could not be estimated (``status: "not estimable"``) are not ranked:
    the table lists them after the ranked ones with an empty rank and estimate, and then has
    a ``status`` (``estimated`` or ``not estimable``) and a ``reason`` column; the figure
    names them with their reasons in a footnote. Without such specifications the table has
    neither column.
    """
    records, missing = [], []
    for path in spec_paths:
        record = _read_fit(path)
        record["warnings"] = " | ".join(record.get("warnings") or [])
        (records if is_estimated(record) else missing).append(record)
    if not records and not missing:
        raise ValueError("no specification results to gather")
    curve = _ranked_curve(records)
    if missing:
        attrs = dict(curve.attrs)
        skipped = pd.DataFrame(missing).drop(columns=["status", "reason"])
        curve = pd.concat([curve.assign(status="estimated", reason=""),
                           skipped.assign(status=NOT_ESTIMABLE, reason=[m["reason"] for m in missing])],
                          ignore_index=True).reindex(columns=[*curve.columns, "status", "reason"])
        curve.attrs.update(attrs)
    write_csv(curve, out_csv)
    _save(_specification_curve_figure(curve, missing, _choice_names(config) if config else None), out_png)
    log.info("specification curve: %d specifications, %d not estimable, median r = %.3f, %.0f%% with p < .05",
             len(records), len(missing), curve.attrs.get("median_estimate", math.nan),
             100 * curve.attrs.get("share_significant", math.nan))
    return curve


def _ranked_curve(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame(columns=["rank", "spec", "early", "outcome", "respondent", "covariates",
                                     "estimate", "ci_low", "ci_high", "p", "significant"])
    frame = pd.DataFrame(records).rename(columns={"r_benefit": "estimate", "r_ci_low": "ci_low", "r_ci_high": "ci_high"})
    return M.specification_curve(frame)


def _choice_names(config: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The multiverse's choices by name: early-alliance definitions in words, measures by their
    instruments' keys (``phq9`` -> ``PHQ-9 total``), covariate sets by their covariates."""
    from alliance.models.summaries import early_definition
    from alliance.scoring.instruments import keys_from_config, measure_display

    mv, keys = _multiverse(config), keys_from_config(config)
    early = {label: {**_early_default(config), **(d or {})} for label, d in (mv.get("early") or {}).items()}
    return {
        "early": {label: early_definition(d) for label, d in early.items()},
        "outcome": {label: measure_display(_measure(m, f"models: multiverse: outcomes: {label}"), keys)
                    for label, m in (mv.get("outcomes") or {}).items()},
        "respondent": {label: measure_display(_measure(m, f"models: multiverse: respondents: {label}"), keys)
                       for label, m in (mv.get("respondents") or {}).items()},
        "covariates": {label: ", ".join(c or []) or "none" for label, c in (mv.get("covariate_sets") or {}).items()},
    }


def _specification_curve_figure(curve: pd.DataFrame, missing: Sequence[Mapping[str, Any]],
                                names: Mapping[str, Mapping[str, str]] | None = None):
    """The specification curve of the estimated specifications, with a footnote naming each
    specification that could not be estimated and why."""
    from alliance.report.style import new_figure
    from alliance.models.figures import specification_curve_plot

    ranked = curve.loc[curve["rank"].notna()] if "status" in curve else curve
    if len(ranked):
        fig = specification_curve_plot(ranked.assign(rank=ranked["rank"].astype("int64"),
                                                     significant=ranked["significant"].astype(bool)),
                                       ylabel="r-equivalent (+: better outcome)", names=names)
    else:
        fig, axis = new_figure(7.5, 2.0)
        axis.set_axis_off()
    if missing:
        lines = [f"Not estimable ({len(missing)} of {len(curve)} specifications), not ranked:"]
        lines += [f"  {m['spec']}: {m['reason'].split(': ', 1)[-1]}" for m in missing]
        _add_footnote(fig, lines)
    return fig


def _add_footnote(fig, lines: Sequence[str], line_height: float = 0.16) -> None:
    """Make room below the axes for ``lines`` of small text and write them there."""
    height = fig.get_figheight()
    extra = line_height * (len(lines) + 1)
    bottom = fig.subplotpars.bottom * height
    fig.set_figheight(height + extra)
    fig.subplots_adjust(bottom=(bottom + extra) / (height + extra), top=1 - (1 - fig.subplotpars.top) * height / (height + extra))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize="x-small", va="bottom", ha="left")


# --------------------------------------------------------------------------------------
# Cluster bootstrap in parallel batches
# --------------------------------------------------------------------------------------
def _bootstrap(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return _models_config(config).get("bootstrap") or {}


def bootstrap_models(config: Mapping[str, Any]) -> list[str]:
    """Models to bootstrap: ``models: bootstrap: models:`` or, when null, every declared
    early_outcome model. Only client-level early_outcome models can be bootstrapped here:
    their data do not change when clusters are redrawn (the therapist-mean decomposition and
    person-mean centring would have to be recomputed within each sample)."""
    chosen = _bootstrap(config).get("models")
    if int(_bootstrap(config).get("replicates", 0) or 0) == 0:
        return []
    names = [n for n in declared_models(config) if model_spec(config, n)["kind"] == "early_outcome"] \
        if chosen is None else list(chosen)
    for name in names:
        kind = model_spec(config, name)["kind"]
        if kind != "early_outcome":
            raise ValueError(f"models: bootstrap: models: {name!r} is of kind {kind!r}; only early_outcome "
                             "models are bootstrapped")
    return names


def bootstrap_batches(config: Mapping[str, Any]) -> list[range]:
    """Replicate numbers of each batch job: ``replicates`` split into ``batches`` near-equal runs."""
    boot = _bootstrap(config)
    replicates, batches = int(boot.get("replicates", 0)), int(boot.get("batches", 1))
    if batches < 1 or batches > max(replicates, 1):
        raise ValueError(f"models: bootstrap: batches must be between 1 and replicates ({replicates}), got {batches}")
    edges = np.linspace(0, replicates, batches + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def run_bootstrap_batch(data_path: str | Path, fit_path: str | Path, batch: int, config: Mapping[str, Any],
                        out_csv: str | Path) -> pd.DataFrame:
    """Workflow step: refit a model on the cluster bootstrap samples of one batch.

    Replicate b draws from ``numpy.random.default_rng([study.seed, b])``
    (:func:`alliance.models.cluster_bootstrap`), so the batches together give the draws of one
    undivided run. Formula, REML and engine are the fitted model's (``fit.json``).
    """
    ranges = bootstrap_batches(config)
    if not 0 <= int(batch) < len(ranges):
        raise ValueError(f"bootstrap batch {batch!r} is not one of 0..{len(ranges) - 1}")
    boot, info = _bootstrap(config), _read_fit(fit_path)
    replicates = ranges[int(batch)]
    if not is_estimated(info):
        # One failed row per replicate, so that the gathering step counts them all and
        # reports the model's reason instead of intervals.
        log.warning("bootstrap %s batch %s: not estimable (%s)", info.get("model"), batch, info.get("reason"))
        draws = pd.DataFrame({"replicate": list(replicates), "term": None, "estimate": math.nan, "converged": False,
                              "singular": False, "error": f"{NOT_ESTIMABLE}: {info.get('reason')}"})
        write_csv(draws, out_csv)
        return draws
    data = pd.read_parquet(data_path)
    step = max(1, len(replicates) // 10)
    chunks = [replicates[i:i + step] for i in range(0, len(replicates), step)]
    parts = []
    for chunk in progress(chunks, len(chunks), logger=log, desc=f"bootstrap {info.get('model')} batch {batch}"):
        parts.append(M.cluster_bootstrap(data, info["formula"], int(config["study"]["seed"]), chunk,
                                         stages=boot.get("stages", "therapists"), reml=bool(info["reml"]),
                                         engine=info["engine"]))
    draws = pd.concat(parts, ignore_index=True)
    failed = draws.loc[draws["error"].fillna("") != ""]
    for _, row in failed.iterrows():
        log.warning("bootstrap replicate %d failed: %s", row["replicate"], row["error"])
    write_csv(draws, out_csv)
    return draws


def gather_bootstrap(batch_paths: Sequence[str | Path], fixed_path: str | Path, config: Mapping[str, Any],
                     out_csv: str | Path) -> pd.DataFrame:
    """Workflow step: percentile intervals from all batches beside the model's own estimates
    and CIs (:func:`alliance.models.bootstrap_intervals`)."""
    boot = _bootstrap(config)
    draws = pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""], float_precision="round_trip") for p in batch_paths], ignore_index=True)
    draws["error"] = draws["error"].fillna("")
    expected = int(boot.get("replicates", 0))
    found = draws["replicate"].nunique()
    if found != expected:
        raise ValueError(f"bootstrap: {found} replicates in the batches, expected {expected}")
    level = float(boot.get("level", 0.95))
    skipped = draws["error"].str.startswith(f"{NOT_ESTIMABLE}: ")
    if skipped.all():
        reason = draws["error"].iloc[0].removeprefix(f"{NOT_ESTIMABLE}: ")
        out = pd.DataFrame([{"term": None, "status": NOT_ESTIMABLE, "reason": reason, "level": level,
                             "stages": boot.get("stages", "therapists"), "seed": int(config["study"]["seed"])}])
        write_csv(out, out_csv)
        log.warning("bootstrap: not estimable (%s)", reason)
        return out
    intervals = M.bootstrap_intervals(draws, level).rename(columns={"mean": "boot_mean", "se": "boot_se"})
    fixed = pd.read_csv(fixed_path)[["term", "estimate", "se", "ci_low", "ci_high"]].rename(
        columns={"se": "model_se", "ci_low": "model_ci_low", "ci_high": "model_ci_high"})
    out = fixed.merge(intervals, on="term", how="left")
    out["level"] = level
    out["stages"] = boot.get("stages", "therapists")
    out["seed"] = int(config["study"]["seed"])
    out["method"] = "percentile interval of the cluster bootstrap (Davison & Hinkley 1997, sec. 3.8)"
    write_csv(out, out_csv)
    log.info("bootstrap: %d replicates, %d failed", found, int(out["n_failed"].max()))
    return out


# --------------------------------------------------------------------------------------
# Parameter recovery on simulated studies
# --------------------------------------------------------------------------------------
def _recovery(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return _models_config(config).get("recovery") or {}


def recovery_batches(config: Mapping[str, Any]) -> list[range]:
    """Study numbers of each recovery batch job."""
    rec = _recovery(config)
    studies, batches = int(rec.get("studies", 200)), int(rec.get("batches", 10))
    if studies < 1 or not 1 <= batches <= studies:
        raise ValueError(f"models: recovery: need studies >= 1 and 1 <= batches <= studies, got {studies}, {batches}")
    edges = np.linspace(0, studies, batches + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _recovery_design(config: Mapping[str, Any]):
    from alliance.simulate import SimulationDesign

    rec = _recovery(config)
    return SimulationDesign(n_therapists=int(rec.get("n_therapists", 30)), n_clients=int(rec.get("n_clients", 240)))


def simulated_scores(client_forms: pd.DataFrame) -> pd.DataFrame:
    """Score a simulated ``client_forms`` table as the pipeline does (WAI-SR and PHQ-9 keys of
    config/instruments/): the tidy frame of :mod:`alliance.ingest` without pseudonymisation
    (nothing here is written with ids), then :func:`alliance.scoring.scores.score_administrations`."""
    from alliance.scoring.instruments import load_key
    from alliance.scoring.scores import score_administrations

    keys = {"wai_sr": load_key("wai_sr"), "phq9": load_key("phq9")}
    tidy = pd.DataFrame({"client": client_forms["client_id"].astype(str),
                         "therapist": client_forms["therapist_id"].astype(str),
                         "session": client_forms["session"].astype("int64"), "respondent": "client", "rater": None})
    for entry, prefix in (("wai_sr", "wai"), ("phq9", "phq")):
        for n in range(1, keys[entry].n_items + 1):
            tidy[f"{entry}_{n}"] = client_forms[f"{prefix}{n}"].astype("float64").to_numpy()
    return score_administrations(tidy, keys, source="simulated client_forms")


def _study_seed(seed: int, study: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(study)]).generate_state(1)[0])


def recovery_fit(seed: int, design, level: float = 0.95) -> list[dict[str, Any]]:
    """Simulate one study, score it, fit the within/between model and compare with the truth.

    Returns one row per recovered term (``a_cw_lag``: b_within, ``a_cm``: b_between, per
    point of the WAI-SR total): estimate, SE, df, CI at ``level`` (Satterthwaite t), the truth
    and whether the CI covers it.
    """
    from alliance.simulate import simulate_study

    study = simulate_study(design, seed=seed)
    scores = simulated_scores(study.client_forms)
    fitted = fit_declared_model(RECOVERY_SPEC, scores, None)
    truth = study.truth["per_wai_total_point"]
    fe = fitted.result.fixed_effects
    rows = []
    for term, parameter in RECOVERY_TERMS.items():
        est, se, df = (float(fe.loc[term, c]) for c in ("estimate", "se", "df"))
        half = float(stats.t.ppf(0.5 + level / 2, df)) * se
        rows.append({"seed": seed, "term": term, "parameter": parameter, "truth": float(truth[parameter]),
                     "estimate": est, "se": se, "df": df, "ci_low": est - half, "ci_high": est + half,
                     "covered": bool(est - half <= truth[parameter] <= est + half),
                     "nobs": int(fitted.result.nobs), "converged": bool(fitted.result.converged),
                     "singular": bool(fitted.result.singular)})
    return rows


def run_recovery_batch(config: Mapping[str, Any], batch: int, out_csv: str | Path) -> pd.DataFrame:
    """Workflow step: the simulated studies of one recovery batch (seeds derived from
    ``study.seed`` and the study number), one row per study and term."""
    ranges = recovery_batches(config)
    if not 0 <= int(batch) < len(ranges):
        raise ValueError(f"recovery batch {batch!r} is not one of 0..{len(ranges) - 1}")
    design, level = _recovery_design(config), float(_recovery(config).get("level", 0.95))
    rows = []
    for study in progress(ranges[int(batch)], len(ranges[int(batch)]), logger=log, desc=f"recovery batch {batch}"):
        seed = _study_seed(config["study"]["seed"], study)
        try:
            fitted = recovery_fit(seed, design, level)
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.warning("recovery study %d (seed %d) failed: %s", study, seed, exc)
            fitted = [{"seed": seed, "term": t, "parameter": p, "error": str(exc)} for t, p in RECOVERY_TERMS.items()]
        rows.extend({"study": study, **r} for r in fitted)
    out = pd.DataFrame(rows)
    if "error" not in out.columns:
        out["error"] = ""
    write_csv(out, out_csv)
    return out


#: The committed result of ``benchmarks/dynamic_recovery.py`` (naive models vs the RI-CLPM on
#: data with dynamics), relative to the workflow root; the part between the markers below is
#: shown in the recovery summary. Not shipped in an installed package (no ``benchmarks/``).
DYNAMIC_BENCHMARK = Path("benchmarks") / "dynamic_recovery.md"
_BENCHMARK_MARKERS = ("<!-- recovery-table -->", "<!-- /recovery-table -->")


def dynamic_benchmark() -> list[str]:
    """The committed dynamic-recovery benchmark file as a rule input: ``[path]`` when this
    workflow root has it, else ``[]``."""
    from alliance.resources import root

    path = root() / DYNAMIC_BENCHMARK
    return [str(path)] if path.is_file() else []


def _dynamic_benchmark_section(path: str | Path | Sequence[str | Path] | None) -> list[str]:
    """Markdown lines quoting the measured table of the committed dynamic-recovery benchmark,
    labelled as such: it is measured by ``benchmarks/dynamic_recovery.py``, not by this target.
    ``path``: the file, or the rule's input list of it (:func:`dynamic_benchmark`; empty: not in
    this installation); None: no section."""
    if path is None:
        return []
    if not isinstance(path, (str, Path)):
        path = next(iter(path), None)
    head = ["", "## On data with session-to-session dynamics: naive models vs the RI-CLPM", ""]
    if not path:
        return [*head, (f"Measured by `benchmarks/dynamic_recovery.py` in the source repository ({DYNAMIC_BENCHMARK}); "
                        "that file is not part of this installation.")]
    text = Path(path).read_text(encoding="utf-8")
    start, end = (text.find(m) for m in _BENCHMARK_MARKERS)
    if start < 0 or end < start:
        raise ValueError(f"{DYNAMIC_BENCHMARK}: expected the measured table between {_BENCHMARK_MARKERS[0]} "
                         f"and {_BENCHMARK_MARKERS[1]}")
    quoted = text[start + len(_BENCHMARK_MARKERS[0]):end].strip().splitlines()
    source = (f"Quoted from `{DYNAMIC_BENCHMARK}` (the committed result of `benchmarks/dynamic_recovery.py`; "
              "not rerun by this target; that file defines the scenarios and the generator's truth).")
    return [*head, source, "", *quoted]


def write_dynamic_benchmark(benchmark_md: str | Path | Sequence[str] | None, out_md: str | Path) -> None:
    """Workflow step: the committed dynamic-recovery benchmark's measured table (naive
    within-person models vs the RI-CLPM, bias and coverage with Monte Carlo SEs) as a result of
    every run, so the report shows it without the slow recovery target. ``benchmark_md``: the
    rule's input list (:func:`dynamic_benchmark`; empty in an installed package)."""
    from alliance.outputs import atomic_path

    lines = _dynamic_benchmark_section(benchmark_md if benchmark_md is not None else [])[1:]  # no blank first line
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def summarise_recovery(batch_paths: Sequence[str | Path], config: Mapping[str, Any], out_csv: str | Path,
                       out_md: str | Path, dynamic_benchmark_md: str | Path | Sequence[str] | None = None,
                       ) -> pd.DataFrame:
    """Workflow step: coverage and relative bias per term, with Monte Carlo SEs (Morris et al.,
    2019), against the targets (coverage 93–97%, |relative bias| < 5%). ``dynamic_benchmark_md``:
    the committed dynamic-recovery benchmark (:func:`dynamic_benchmark`), whose measured table
    the summary quotes."""
    draws = pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""], float_precision="round_trip") for p in batch_paths], ignore_index=True)
    draws["error"] = draws["error"].fillna("")
    rows = []
    for term, d in draws.groupby("term", sort=False):
        ok = d.loc[d["error"] == ""]
        n = len(ok)
        truth = float(ok["truth"].iloc[0]) if n else math.nan
        cover = float(ok["covered"].astype(bool).mean()) if n else math.nan
        bias = (float(ok["estimate"].mean()) - truth) / truth if n else math.nan
        rows.append({
            "term": term, "parameter": d["parameter"].iloc[0], "truth": truth, "n_studies": n,
            "n_failed": int((d["error"] != "").sum()), "mean_estimate": float(ok["estimate"].mean()),
            "relative_bias": bias, "mc_se_relative_bias": float(ok["estimate"].std(ddof=1) / math.sqrt(n) / abs(truth)) if n > 1 else math.nan,
            "coverage": cover, "mc_se_coverage": math.sqrt(cover * (1 - cover) / n) if n else math.nan,
            "mean_se": float(ok["se"].mean()), "sd_estimate": float(ok["estimate"].std(ddof=1)),
            "n_not_converged": int((~ok["converged"].astype(bool)).sum()), "n_singular": int(ok["singular"].astype(bool).sum()),
            "coverage_ok": bool(0.93 <= cover <= 0.97), "bias_ok": bool(abs(bias) < 0.05),
        })
    table = pd.DataFrame(rows)
    write_csv(table, out_csv)
    _write_recovery_markdown(table, config, out_md, dynamic_benchmark_md)
    return table


def _write_recovery_markdown(table: pd.DataFrame, config: Mapping[str, Any], out_md: str | Path,
                             dynamic_benchmark_md: str | Path | Sequence[str] | None = None) -> None:
    from alliance.outputs import atomic_path

    rec, design = _recovery(config), _recovery_design(config)
    lines = [
        "# Parameter recovery of the within/between-client model",
        "",
        f"{int(table['n_studies'].max()) if len(table) else 0} simulated studies (alliance.simulate, default effects; "
        f"{design.n_therapists} therapists, {design.n_clients} clients, up to {design.max_sessions} sessions), "
        "scored with the WAI-SR and PHQ-9 keys and fitted as "
        f"`{M.within_between_formula()}` (REML, Satterthwaite df). Truth per point of the WAI-SR total "
        f"(12-60). {float(rec.get('level', 0.95)):.0%} CIs. Seeds derived from study.seed = {config['study']['seed']}.",
        "",
        "| term | truth | studies | mean estimate | relative bias (MC SE) | coverage (MC SE) | mean SE / SD | targets met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.term} ({r.parameter}) | {r.truth:.5g} | {r.n_studies} | {r.mean_estimate:.5g} | "
            f"{r.relative_bias:+.2%} ({r.mc_se_relative_bias:.2%}) | {r.coverage:.1%} ({r.mc_se_coverage:.1%}) | "
            f"{r.mean_se / r.sd_estimate:.3f} | coverage {'yes' if r.coverage_ok else 'no'}, bias {'yes' if r.bias_ok else 'no'} |")
    lines += ["", "Targets: coverage 93-97%, |relative bias| < 5%. Failed fits: "
              + ", ".join(f"{r.term} {r.n_failed}" for r in table.itertuples()) + "."]
    lines += _dynamic_benchmark_section(dynamic_benchmark_md)
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")



def write_model_outputs(summary: ModelSummary, outdir: str | Path) -> dict[str, Path]:
    """Write ``fixed_effects.csv``, ``random_effects.csv`` and ``fit.json`` into ``outdir``.

    ``fit.json`` also carries the standardisation basis, the r-equivalents and the
    contrasts. Numbers are written at full precision (:mod:`alliance.outputs`).
    """
    from alliance.outputs import write_csv, write_json

    outdir = Path(outdir)
    paths = {name: outdir / name for name in ("fixed_effects.csv", "random_effects.csv", "fit.json")}
    write_csv(summary.fixed_effects, paths["fixed_effects.csv"])
    write_csv(summary.random_effects, paths["random_effects.csv"])
    info = dict(summary.fit)
    info["standardisation"] = _records(summary.standardisation)
    info["r_equivalents"] = _records(summary.r_equivalents)
    info["contrasts"] = [_plain_dict(c) for c in summary.contrasts]
    write_json(_plain_dict(info), paths["fit.json"])
    return paths


def _plain_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, np.generic):
        return _plain_value(value.item())
    if isinstance(value, Mapping):
        return _plain_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


def _plain_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _plain_value(v) for k, v in d.items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_plain_dict(r) for r in frame.to_dict(orient="records")]



# --------------------------------------------------------------------------- workflow steps


def write_planned_batch(config: Mapping[str, Any], cell_id: str, batch: int, path: str) -> None:
    """Workflow step: run one planned batch of the config's ``power:`` section, write its CSV."""
    from alliance.outputs import write_csv

    settings = power_settings(config["power"], config["study"]["seed"])
    write_csv(run_planned_batch(settings, cell_id, batch), path)


def write_power_curve(batch_paths: Sequence[str], config: Mapping[str, Any], results_path: str,
                      curve_path: str, figure_path: str) -> None:
    """Workflow step: gather the batches, write every replication, the curve and its figure."""
    from alliance.models.figures import power_figure  # here: the fit jobs need no matplotlib
    from alliance.report.style import close, save_figure
    from alliance.outputs import write_csv

    settings = power_settings(config["power"], config["study"]["seed"])
    results = pd.concat([pd.read_csv(p) for p in sorted(batch_paths)], ignore_index=True)
    results = results.sort_values([*CELL_COLUMNS, "batch", "replicate"], kind="mergesort").reset_index(drop=True)
    curve = power_curve(results, alpha=settings["analysis"].alpha)
    write_csv(results, results_path)
    write_csv(curve, curve_path)
    fig = power_figure(curve, alpha=settings["analysis"].alpha)
    save_figure(fig, figure_path)
    close(fig)


# --------------------------------------------------------------------------------------
# Dynamic within-person models (RI-CLPM; issue 15). Added by the dynamic-models work.
# --------------------------------------------------------------------------------------
DYNAMIC_DEFAULTS = {"label": None, "waves": 8, "first_session": 1}


def declared_dynamic_models(config: Mapping[str, Any]) -> list[str]:
    """Names under ``models: dynamic:``, in config order."""
    return list(_models_config(config).get("dynamic") or {})


def dynamic_targets(config: Mapping[str, Any]) -> list[str]:
    """Result files of the declared dynamic models."""
    return [f"results/models/dynamic/{n}/{f}" for n in declared_dynamic_models(config)
            for f in ("estimates.csv", "fit.json")]


def run_dynamic_model(scores_path: str | Path, name: str, config: Mapping[str, Any], outdir: str | Path) -> None:
    """Workflow step: fit the RI-CLPM ``models: dynamic: {name}`` and write ``estimates.csv``
    (every parameter, Wald SE and CI) and ``fit.json`` (log-likelihood, N, waves, settings,
    the two cross-lagged effects; or ``status: not estimable`` and the reason)."""
    entry = (_models_config(config).get("dynamic") or {}).get(name)
    if entry is None:
        raise ValueError(f"dynamic model {name!r} is not declared under models: dynamic: "
                         f"(declared: {declared_dynamic_models(config)})")
    where = f"models: dynamic: {name}"
    spec = {**DYNAMIC_DEFAULTS, **entry}
    outcome, alliance = _measure(spec.get("outcome"), f"{where}: outcome"), _measure(spec.get("alliance"), f"{where}: alliance")
    settings = {"outcome": outcome, "alliance": alliance, "waves": int(spec["waves"]),
                "first_session": int(spec["first_session"])}
    outdir = Path(outdir)
    info: dict[str, Any] = {"model": name, "kind": "riclpm", "label": spec["label"] or name, "settings": settings}
    try:
        session = M.session_level_data(read_scores(scores_path, [outcome[0], alliance[0]]), outcome, alliance)
        result, _ = M.fit_dynamic(session, waves=settings["waves"], first=settings["first_session"])
    except M.NotEstimableError as exc:
        log.warning("dynamic model %s not estimable: %s", name, exc)
        write_csv(pd.DataFrame(columns=["parameter", "estimate", "se", "z", "p", "ci_low", "ci_high"]),
                  outdir / "estimates.csv")
        write_json(_plain_dict({**info, "status": NOT_ESTIMABLE, "reason": str(exc)}), outdir / "fit.json")
        return
    table = result.estimates.reset_index()
    info.update({"status": "estimated", **result.fit_info(),
                 "cross_lagged": {p: result.estimates.loc[p].to_dict()
                                  for p in ("alliance_to_outcome", "outcome_to_alliance")}})
    for p, r in info["cross_lagged"].items():
        log.info("dynamic model %s: %s = %.4f (SE %.4f), %d clients, %d waves", name, p, r["estimate"], r["se"],
                 result.n_clients, result.n_waves)
    for message in result.warnings:
        log.warning("dynamic model %s: %s", name, message)
    write_csv(table, outdir / "estimates.csv")
    write_json(_plain_dict(info), outdir / "fit.json")


# --------------------------------------------------------------------------------------
# Model diagnostics (issue 17): residuals, random-effect QQ, therapist influence
# --------------------------------------------------------------------------------------
DIAGNOSTICS_INFLUENCE = ("all", "client_level", "none")
DIAGNOSTICS_FILES = ("diagnostics.json", "influence.csv")


def diagnostics_influence(config: Mapping[str, Any], kind: str) -> bool:
    """Whether a model of ``kind`` gets the leave-one-therapist-out refits
    (``models: diagnostics: influence:``: ``all``, ``client_level`` (default: the fast
    client-level kinds only) or ``none``)."""
    setting = (_models_config(config).get("diagnostics") or {}).get("influence", "client_level")
    if setting not in DIAGNOSTICS_INFLUENCE:
        raise ValueError(f"models: diagnostics: influence must be one of {', '.join(DIAGNOSTICS_INFLUENCE)}, "
                         f"got {setting!r}")
    return setting == "all" or (setting == "client_level" and kind in CLIENT_LEVEL_KINDS)


def write_model_diagnostics(data_path: str | Path, fit_path: str | Path, config: Mapping[str, Any],
                            out_json: str | Path, out_csv: str | Path, out_png: str | Path) -> dict[str, Any]:
    """Workflow step: diagnostics of one fitted model (:func:`alliance.models.diagnostics.diagnose`).

    Refits the model of ``fit.json`` (formula, REML, engine) to its data, then writes
    ``diagnostics.json`` (the flags, the one-sentence ``summary`` and every check at full
    precision; therapists in ``influence.flagged`` by pseudonymised id and rank),
    ``influence.csv`` (one row per therapist and alliance term, ranked by Cook's distance; no
    rows when the influence is not computed) and the 2 x 2 figure
    (:func:`alliance.models.diagnostic_figures.diagnostics_figure`; therapists by rank only).
    A model that was not estimable gets a record saying so, an empty table and a figure that
    says so.
    """
    from alliance.models import diagnostics as diag_mod
    from alliance.models.diagnostic_figures import diagnostics_figure
    from alliance.models.summaries import _model_rows

    info = _read_fit(fit_path)
    name = info.get("model") or Path(fit_path).parent.name
    label = info.get("label") or name
    if not is_estimated(info):
        record = {"model": name, "label": label, "status": NOT_ESTIMABLE, "reason": info.get("reason"),
                  "flags": [], "summary": f"{label}: not estimable, so not diagnosed."}
        write_json(_plain_dict(record), out_json)
        write_csv(pd.DataFrame(columns=diag_mod.INFLUENCE_COLUMNS), out_csv)
        _save(_not_estimable_figure(name, info.get("reason")), out_png)
        return record
    spec = model_spec(config, name)
    data = pd.read_parquet(data_path)
    result = M.fit_model(info["formula"], data, reml=bool(info["reml"]), engine=info["engine"])
    rows = _model_rows(result, data)
    terms = _alliance_terms(spec)
    labels = {t: ALLIANCE_TERMS[t][0] for t in terms if t in ALLIANCE_TERMS}
    influence = diagnostics_influence(config, spec["kind"])
    diag = diag_mod.diagnose(
        result, rows, terms, label, influence=influence, engine=info["engine"], term_labels=labels,
        progress=lambda levels: progress(levels, len(levels), logger=log, desc=f"diagnostics {name}"))
    for flag in diag.flags:
        log.warning("model %s diagnostics: %s", name, flag["message"])
    log.info("%s", diag.summary)
    record = {
        "model": name, "label": label, "formula": info["formula"], "summary": diag.summary, "flags": diag.flags,
        "residuals": diag.residual, "random_effects": diag.random, "influence": diag.influence_summary,
        "influence_setting": (_models_config(config).get("diagnostics") or {}).get("influence", "client_level"),
        "rules": {"residual_skew_limit": diag_mod.RESIDUAL_SKEW_LIMIT,
                  "residual_excess_kurtosis_limit": diag_mod.RESIDUAL_KURTOSIS_LIMIT,
                  "spread_ratio_limit": diag_mod.SPREAD_RATIO_LIMIT,
                  "heteroscedasticity_alpha": diag_mod.HETEROSCEDASTICITY_ALPHA,
                  "random_effect_alpha": diag_mod.RANDOM_EFFECT_ALPHA,
                  "random_effect_min_levels": diag_mod.MIN_LEVELS_FOR_TEST,
                  "influence": "leaving a therapist out changes an alliance estimate by more than its SE "
                               "or its significance at .05"},
    }
    write_json(_plain_dict(record), out_json)
    table = diag.influence if diag.influence is not None else pd.DataFrame(columns=diag_mod.INFLUENCE_COLUMNS)
    write_csv(table, out_csv)
    note = None if influence else ("Therapist influence not computed for session-level models\n"
                                   "(models: diagnostics: influence: client_level; set it to all)")
    _save(diagnostics_figure(diag, f"Model diagnostics: {label}", labels, note), out_png)
    return record


def diagnostic_sentences(paths: Sequence[str | Path], all_models: bool = False) -> list[str]:
    """The one-sentence summaries of ``diagnostics.json`` files, in the order given.

    By default only the sentences of models whose diagnostics raised a flag (what a landing
    page shows "when something is off"); ``all_models=True`` returns every model's sentence,
    "no problems found" included. Models that were not estimable are left out.
    """
    out = []
    for path in paths:
        record = _read_fit(path)
        if record.get("status") == NOT_ESTIMABLE:
            continue
        if all_models or record.get("flags"):
            out.append(str(record["summary"]))
    return out
