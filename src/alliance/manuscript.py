"""Manuscript-ready outputs: APA tables in four formats and the generated methods paragraph.

Workflow steps (``workflow/rules/report.smk``, and ``model_tables`` in ``models.smk``), each
reading the files its rule names:

* :func:`write_manuscript_tables`: descriptives and correlations of the client-level
  variables (early alliance, baseline, post-treatment outcome, rate of change), internal
  consistency, and the declared models side by side (:func:`model_table_groups`: the
  early-alliance outcome models, the therapist/client model, the session-level models; at most
  three to a table), each written to ``results/tables/{stem}.md`` and ``.tex`` (booktabs),
  all of them on one HTML page ``results/tables/manuscript_tables.html`` and in one Word
  document ``results/tables/tables.docx``. The tables are built by
  :mod:`alliance.report.tables`, so every format shows the same formatted cells.
* :func:`write_model_tables_documents`: the model tables alone as
  ``results/tables/model_tables.md`` and ``.html``, with the manuscript's table numbers (one
  numbering, one set of labels: "Model k" is the k-th declared model, as in the methods
  paragraph).
* :func:`write_methods`: ``results/tables/methods.md``, the paragraph of
  :func:`alliance.report.methods_text.methods_paragraph` with the N per level of
  ``results/data/summary.json``, the instruments of the configured scoring keys, every
  model's formula and estimation method (``fit.json``) and the package versions recorded in
  ``results/provenance.json``, followed by its references.

The client-level data are built by :func:`alliance.models.steps.prepare_model_data`, the
function the client-level models are fitted with, for the first declared client-level model
(or, when none is declared, for the measures of the first declared model), so the
descriptives describe the data the models saw.

Numbers are shown with enough decimals that each row's standard error (fixed effects) or a
model's smallest variance (random part) keeps two significant digits, because a fixed two
decimals would show a slope of 0.004 per session as ``0.00``.

Tested in ``tests/test_manuscript.py`` on the workflow's run on the bundled example: the
``.docx`` opened with python-docx holds the numbers of ``fixed_effects.csv``,
``random_effects.csv`` and ``fit.json`` rounded to the shown decimals (one model's column also
against lme4 and performance in R), the descriptives equal numpy's means,
SDs and correlations of the models' client-level data, and the methods paragraph states the
N of ``summary.json`` and each model's formula and REML/ML.

References
----------
American Psychological Association. (2020). *Publication manual of the American
Psychological Association* (7th ed.).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alliance.models import steps as W
from alliance.models.summaries import early_definition
from alliance.outputs import atomic_path
from alliance.report.tables import (
    DEFAULT_TERM_LABELS,
    ApaTable,
    ModelColumn,
    descriptives_table,
    html_page,
    model_comparison_table,
    reliability_table,
    shown_decimals,
    write_docx,
)
from alliance.scoring.instruments import instrument_abbreviation  # re-exported: figures use it too

log = logging.getLogger(__name__)

__all__ = [
    "CLIENT_VARIABLES",
    "TABLE_FORMATS",
    "MODEL_TABLE_GROUPS",
    "MODELS_PER_TABLE",
    "manuscript_table_stems",
    "model_table_groups",
    "model_tables",
    "write_model_tables_documents",
    "descriptives_model",
    "client_descriptives_data",
    "shown_decimals",
    "instrument_abbreviation",
    "term_labels",
    "manuscript_tables",
    "write_manuscript_tables",
    "methods_models",
    "methods_instruments",
    "methods_document",
    "write_methods",
]

CLIENT_VARIABLES = ("early_alliance", "baseline", "post", "slope")
TABLE_FORMATS = ("md", "tex")
#: The declared models are tabled side by side in these groups (stem, kinds, title), in this
#: order, at most MODELS_PER_TABLE to a table (three columns each fit a landscape page).
MODEL_TABLE_GROUPS = (
    ("models_early_outcome", ("early_outcome",), "Early Alliance and Treatment Outcome: Client-Level Mixed Models"),
    ("models_therapist_client", ("therapist_client",),
     "Therapist and Client Contributions to the Early Alliance\u2013Outcome Association"),
    ("models_session_level", W.SESSION_LEVEL_KINDS, "Session-Level Mixed Models of Alliance and Symptoms"),
)
MODELS_PER_TABLE = 3
GROUP_LABELS = {"therapist": "Therapist", "client": "Client", "Residual": "Residual"}
EXTRA_TERM_LABELS = {
    "symptoms": "Symptoms",
    "alliance": "Alliance",
    "symptoms_lag": "Symptoms (previous session)",
    "alliance_lag": "Alliance (previous session)",
}

# --------------------------------------------------------------------------------------
# What is written
# --------------------------------------------------------------------------------------
def manuscript_table_stems(config: Mapping[str, Any]) -> list[str]:
    """File stems of the tables under ``results/tables/``, in table-number order.

    ``descriptives`` (when a model is declared: its measures define the client-level
    variables), ``reliability``, then the model tables of :func:`model_table_groups`. The
    model tables of ``model_tables.md``/``.html`` carry the same numbers.
    """
    models = W.declared_models(config)
    stems = (["descriptives"] if models else []) + ["reliability"]
    return stems + list(model_table_groups(config))


def model_table_groups(config: Mapping[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """The model tables: stem -> (title, declared models side by side in it).

    The models of each group of :data:`MODEL_TABLE_GROUPS` (by ``kind``), in config order,
    at most :data:`MODELS_PER_TABLE` to a table (a group needing more gets ``_1``, ``_2``...
    stems and "(continued)" titles); groups without models are left out.
    """
    models = W.declared_models(config)
    kinds = {m: W.model_spec(config, m)["kind"] for m in models}
    out: dict[str, tuple[str, list[str]]] = {}
    for stem, group_kinds, title in MODEL_TABLE_GROUPS:
        members = [m for m in models if kinds[m] in group_kinds]
        chunks = [members[i:i + MODELS_PER_TABLE] for i in range(0, len(members), MODELS_PER_TABLE)]
        for i, chunk in enumerate(chunks, start=1):
            if len(chunks) == 1:
                out[stem] = (title, chunk)
            else:
                out[f"{stem}_{i}"] = (title if i == 1 else f"{title} (continued)", chunk)
    return out


def descriptives_model(config: Mapping[str, Any]) -> str | None:
    """The declared model whose measures define the client-level variables: the first
    client-level model (``early_outcome``, ``therapist_client``), else the first model."""
    models = W.declared_models(config)
    for name in models:
        if W.model_spec(config, name)["kind"] in W.CLIENT_LEVEL_KINDS:
            return name
    return models[0] if models else None


def client_descriptives_data(config: Mapping[str, Any], scores: pd.DataFrame,
                             clients: pd.DataFrame | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per client: the variables of the client-level models, built as they are.

    Returns
    -------
    (data, spec)
        ``data`` from :func:`alliance.models.steps.prepare_model_data` (columns
        :data:`CLIENT_VARIABLES` among others); ``spec`` the model specification it used.

    Raises
    ------
    ValueError
        No model is declared (then the measures are unknown).
    """
    name = descriptives_model(config)
    if name is None:
        raise ValueError("descriptives: no model is declared under models: fits:, so the outcome and alliance "
                         "measures of the client-level variables are unknown")
    spec = W.model_spec(config, name)
    # Covariates are categorical in general (arm); the table describes the numeric variables.
    client_spec = {**spec, "kind": "early_outcome", "covariates": []}
    return W.prepare_model_data(client_spec, scores, clients), spec


# --------------------------------------------------------------------------------------
# Labels and decimals
# --------------------------------------------------------------------------------------


def term_labels(covariates: Sequence[str] = (), terms: Sequence[str] = ()) -> dict[str, str]:
    """Display names of model terms: :data:`alliance.report.tables.DEFAULT_TERM_LABELS`, the
    alliance terms of :data:`alliance.models.steps.ALLIANCE_TERMS`, lagged scores, and
    covariate levels (``armPDT`` -> ``Arm: PDT``)."""
    labels = {term: text[0].upper() + text[1:] for term, (text, _) in W.ALLIANCE_TERMS.items()}
    labels.update(EXTRA_TERM_LABELS)
    labels.update(DEFAULT_TERM_LABELS)
    for term in terms:
        for covariate in covariates:
            name = covariate.replace("_", " ").capitalize()
            if term == covariate:
                labels[term] = name
            elif term.startswith(covariate) and term not in labels:
                labels[term] = f"{name}: {term[len(covariate):]}"
    return labels


def _measure_label(measure: Sequence[Any], keys: Mapping[str, Any], abbreviations: Mapping[str, str]) -> str:
    """``client-rated WAI-SR total``, ``PHQ-9 total``, ``OQ-45.2 Symptom Distress``."""
    instrument, respondent, scale = measure
    key = keys.get(instrument)
    label = key.scales[scale].label if key is not None and scale in key.scales else str(scale)
    if label.lower() == "total":
        label = "total"
    text = f"{abbreviations.get(instrument, instrument)} {label}"
    return f"{respondent}-rated {text}" if respondent else text


def _client_variable_labels(spec: Mapping[str, Any], keys: Mapping[str, Any],
                            abbreviations: Mapping[str, str]) -> tuple[dict, str]:
    """Labels of :data:`CLIENT_VARIABLES` and a note defining them."""
    alliance = _measure_label(spec["alliance"], keys, abbreviations)
    outcome = _measure_label(spec["outcome"], keys, abbreviations)
    early = spec["early"]
    definition = early_definition(early)
    labels = {"early_alliance": f"Early alliance ({alliance})", "baseline": f"Baseline {outcome}",
              "post": f"Post-treatment {outcome}", "slope": f"{outcome} change per session"}
    note = (f"Early alliance = {definition}; baseline = first and post-treatment = last {outcome} score of "
            f"the client; change per session = the client's least-squares slope of {outcome} over sessions.")
    return labels, note


# --------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------
def _read_json(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _score_covariate_labels(settings: Mapping[str, Any], abbreviations: Mapping[str, str]) -> dict[str, str]:
    """``phq9_early_change`` -> ``PHQ-9 early change`` for a model's score covariates."""
    labels = {}
    for name, definition in (settings.get("score_covariates") or {}).items():
        instrument = (definition or {}).get("instrument")
        if instrument and name.startswith(f"{instrument}_"):
            labels[name] = f"{abbreviations.get(instrument, instrument.upper())} {name[len(instrument) + 1:].replace('_', ' ')}"
        else:
            labels[name] = name.replace("_", " ").capitalize()
    return labels


def _model_column(number: int, model: str, folder: Path) -> ModelColumn:
    info = _read_json(folder / "fit.json")
    label = str(info.get("label") or model)
    if not W.is_estimated(info):
        return ModelColumn(number, label, info)
    fixed = pd.read_csv(folder / "fixed_effects.csv", float_precision="round_trip")
    random = pd.read_csv(folder / "random_effects.csv", float_precision="round_trip")
    return ModelColumn(number, label, info, fixed, random)


def _model_labels(columns: Sequence[ModelColumn], abbreviations: Mapping[str, str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for column in columns:
        settings = column.info.get("settings") or {}
        terms = [] if column.fixed is None else list(column.fixed["term"])
        labels.update(term_labels(settings.get("covariates") or [], terms))
        labels.update(_score_covariate_labels(settings, abbreviations))
    return {**labels, **GROUP_LABELS}


def _declared_model_folders(config: Mapping[str, Any], fit_paths: Sequence[str | Path]) -> tuple[list[str], dict[str, Path]]:
    """The declared models and the folder of each one's ``fit.json``; every declared model needs one."""
    models = W.declared_models(config)
    folders = {Path(p).parent.name: Path(p).parent for p in fit_paths}
    missing = [m for m in models if m not in folders]
    if missing:
        raise ValueError(f"manuscript tables: no fit.json given for declared model(s) {missing}; "
                         f"got {[str(p) for p in fit_paths]}")
    return models, folders


def model_tables(config: Mapping[str, Any], fit_paths: Sequence[str | Path],
                 abbreviations: Mapping[str, str] | None = None) -> dict[str, ApaTable]:
    """The model tables by stem (:func:`model_table_groups`), numbered as in the manuscript
    (after the descriptives and reliability tables of :func:`manuscript_table_stems`), each
    model named "Model k" by its place among the declared models (as the methods paragraph
    does).

    Parameters
    ----------
    config : mapping
        The validated workflow config.
    fit_paths : sequence of path
        Every declared model's ``results/models/{model}/fit.json``; ``fixed_effects.csv`` and
        ``random_effects.csv`` are read beside it.
    abbreviations : mapping, optional
        Instrument entry -> short name (:func:`instrument_abbreviation`); default: from the
        configured scoring keys.
    """
    models, folders = _declared_model_folders(config, fit_paths)
    if abbreviations is None:
        from alliance.scoring.instruments import keys_from_config

        abbreviations = {entry: instrument_abbreviation(entry, key) for entry, key in keys_from_config(config).items()}
    stems = manuscript_table_stems(config)
    tables = {}
    for stem, (title, members) in model_table_groups(config).items():
        columns = [_model_column(models.index(m) + 1, m, folders[m]) for m in members]
        tables[stem] = model_comparison_table(columns, stems.index(stem) + 1, title,
                                              labels=_model_labels(columns, abbreviations))
    return tables


def write_model_tables_documents(config: Mapping[str, Any], fit_paths: Sequence[str | Path],
                                 out_markdown: str | Path, out_html: str | Path) -> dict[str, ApaTable]:
    """Workflow step (rule ``model_tables``): the model tables of :func:`model_tables`, with the
    manuscript's numbers, as one Markdown file and one HTML page."""
    tables = model_tables(config, fit_paths)
    _write_text("\n".join(t.to_markdown() for t in tables.values()), Path(out_markdown))
    _write_text(html_page(list(tables.values()), "Mixed models",
                          intro=MODEL_TABLES_INTRO), Path(out_html))
    log.info("model tables: %s", ", ".join(f"Table {t.number} ({stem})" for stem, t in tables.items()))
    return tables


MODEL_TABLES_INTRO = ("The declared models side by side, as numbered in the manuscript tables (tables.docx): fixed "
                      "effects with confidence intervals and p values, then the random part.")


def _reliability(consistency: pd.DataFrame, keys: Mapping[str, Any], abbreviations: Mapping[str, str],
                 number: int) -> ApaTable:
    """Internal consistency with instruments and scales named as their keys name them; rows
    pooled over all administrations show "All" as their session."""
    scale_labels = {s: k.scales[s].label for k in keys.values() for s in k.scales}
    rows = consistency.copy()
    notes = []
    if "session" in rows.columns and rows["session"].notna().any():
        rows["session"] = rows["session"].astype(object).where(rows["session"].notna(), "All")
        notes.append("Session: All = every administration pooled; a number = that session's administrations only.")
    if "status" in rows.columns:  # rows not estimated are left out and named, not printed as numbers
        left_out = rows[rows["status"].fillna("ok").ne("ok")]
        rows = rows[rows["status"].fillna("ok").eq("ok")]
        if not left_out.empty:
            named = [f"{abbreviations.get(r.instrument, r.instrument)} {scale_labels.get(r.scale, r.scale)}"
                     f" ({_session_label(r.session)}, n = {r.n}, k = {r.k})" for r in left_out.itertuples()]
            notes.append("Not estimated (no more complete administrations than items): " + "; ".join(named) + ".")
    return reliability_table(rows, number=number, title="Internal Consistency of the Scales",
                             labels={**scale_labels, **abbreviations, "client": "Client",
                                     "therapist": "Therapist", "observer": "Observer"},
                             note=" ".join(notes) or None)


def _session_label(session: Any) -> str:
    if isinstance(session, str) or pd.isna(session):
        return "all sessions"
    return f"session {int(session)}"


def manuscript_tables(config: Mapping[str, Any], scores: pd.DataFrame, clients: pd.DataFrame | None,
                      consistency: pd.DataFrame, fit_paths: Sequence[str | Path]) -> dict[str, ApaTable]:
    """Every manuscript table by file stem (:func:`manuscript_table_stems`), numbered in
    that order.

    Parameters
    ----------
    config : mapping
        The validated workflow config (models, instruments).
    scores, clients : DataFrame
        ``results/scores/scores.parquet`` and ``results/interim/clients.parquet``.
    consistency : DataFrame
        ``results/reliability/internal_consistency.csv``.
    fit_paths : sequence of path
        Every declared model's ``results/models/{model}/fit.json``, in config order; the
        model's ``fixed_effects.csv`` and ``random_effects.csv`` are read beside it.
    """
    from alliance.scoring.instruments import keys_from_config

    keys = keys_from_config(config)
    abbreviations = {entry: instrument_abbreviation(entry, key) for entry, key in keys.items()}
    models, folders = _declared_model_folders(config, fit_paths)
    tables: dict[str, ApaTable] = {}
    number = 1
    if models:
        data, spec = client_descriptives_data(config, scores, clients)
        labels, note = _client_variable_labels(spec, keys, abbreviations)
        tables["descriptives"] = descriptives_table(
            data, list(CLIENT_VARIABLES), number=number,
            title="Means, Standard Deviations and Correlations of the Client-Level Variables",
            labels=labels, note=note)
        number += 1
    tables["reliability"] = _reliability(consistency, keys, abbreviations, number)
    tables.update(model_tables(config, fit_paths, abbreviations))
    return tables


def _write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


MANUSCRIPT_HTML = "manuscript_tables.html"


def write_manuscript_tables(scores_path: str | Path, clients_path: str | Path | None,
                            consistency_path: str | Path, fit_paths: Sequence[str | Path],
                            config: Mapping[str, Any], outdir: str | Path, docx_path: str | Path) -> dict[str, Path]:
    """Workflow step: every manuscript table as ``{outdir}/{stem}.md`` and ``.tex``, all of
    them on one HTML page ``{outdir}/manuscript_tables.html`` and in one Word document
    ``docx_path``.

    Returns the written paths by ``"{stem}.{format}"``, ``"html"`` and ``"docx"``. The bytes
    are the same on every run (the ``.docx`` through :func:`alliance.report.tables.write_docx`).
    """
    scores = pd.read_parquet(scores_path)
    clients = None if clients_path is None else pd.read_parquet(clients_path)
    consistency = pd.read_csv(consistency_path, float_precision="round_trip")
    tables = manuscript_tables(config, scores, clients, consistency, fit_paths)
    outdir, written = Path(outdir), {}
    for stem, table in tables.items():
        for ext, text in (("md", table.to_markdown()), ("tex", table.to_latex())):
            written[f"{stem}.{ext}"] = outdir / f"{stem}.{ext}"
            _write_text(text, written[f"{stem}.{ext}"])
    written["html"] = outdir / MANUSCRIPT_HTML
    _write_text(html_page(list(tables.values()), "Manuscript tables"), written["html"])
    written["docx"] = write_docx(list(tables.values()), docx_path)
    log.info("manuscript tables: %d tables (%s) in %s and %s", len(tables), ", ".join(tables), outdir, docx_path)
    return written


# --------------------------------------------------------------------------------------
# The methods paragraph
# --------------------------------------------------------------------------------------
def methods_models(fit_paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The models for :func:`alliance.report.methods_text.methods_paragraph` from their ``fit.json``:
    numbered as in the tables' order, formula in backticks (Markdown code)."""
    models = []
    for number, path in enumerate(fit_paths, start=1):
        info = _read_json(path)
        label = info.get("label") or info.get("model") or Path(path).parent.name
        if not W.is_estimated(info):
            reason = str(info.get("reason") or "").removeprefix(f"model {info.get('model')}: ")
            models.append({"label": f"Model {number} ({label})", "status": info["status"], "reason": reason})
            continue
        models.append({
            "label": f"Model {number} ({label})", "formula": f"`{' '.join(str(info['formula']).split())}`",
            **{k: info[k] for k in ("reml", "engine", "nobs", "ngroups", "singular", "converged", "df_method",
                                    "kind", "settings", "therapist_icc", "df_notes", "latent_mean")
               if k in info},
        })
    return models


def methods_instruments(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every configured instrument as :func:`alliance.report.methods_text.methods_paragraph` wants
    it: full name and citations from its scoring key, the respondent of the table it was
    read from (the key's respondents when the table names none)."""
    from alliance.scoring.instruments import keys_from_config

    tables = config.get("tables") or {}
    out = []
    for entry, key in keys_from_config(config).items():
        table = (config["instruments"][entry] or {}).get("table")
        respondent = (tables.get(table) or {}).get("respondent")
        out.append({"name": entry, "full_name": key.full_name, "citations": list(key.citations),
                    "respondents": [respondent] if respondent else list(key.respondents)})
    return out


def methods_interrater(interrater: pd.DataFrame, config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ICC(A,1) of each observer instrument's ``figure_scale`` (``results/reliability/
    interrater.csv``) as :func:`alliance.report.methods_text.methods_paragraph` wants it."""
    from alliance.scoring.instruments import keys_from_config

    settings = config["interrater"]
    keys = keys_from_config(config)
    rows = interrater[(interrater["level"] == "scale") & (interrater["mcgraw_wong"] == "ICC(A,1)")]
    out = []
    for instrument, group in rows.groupby("instrument", sort=False):
        chosen = group[group["unit"] == settings["figure_scale"]]
        row = (chosen if len(chosen) else group).iloc[0]
        out.append({"instrument": instrument_abbreviation(instrument, keys.get(instrument)), "scale": row["unit"], "icc": float(row["icc"]),
                    "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]),
                    "ci_level": float(row["ci_level"]), "sessions": int(row["n_targets"]),
                    "coders": int(row["n_raters"]),
                    "method": row["method"], "interpretation": row["interpretation"]
                    if isinstance(row["interpretation"], str) else "", "combine": settings["combine"]})
    return out


def methods_document(summary: Mapping[str, Any], models: Sequence[Mapping[str, Any]],
                     instruments: Sequence[Mapping[str, Any]], versions: Mapping[str, Any],
                     interrater: Sequence[Mapping[str, Any]] = ()) -> str:
    """``methods.md``: a heading, the methods paragraph and its references (Markdown)."""
    from alliance.report.methods_text import methods_paragraph, methods_references

    paragraph = methods_paragraph(summary, models, instruments, versions, interrater)
    references = methods_references(models, instruments, versions, interrater)
    lines = ["# Method", "", "<!-- Generated by the workflow from results/data/summary.json, the models' fit.json, "
             "the instrument keys and results/provenance.json; edit the inputs, not this text. -->", "",
             paragraph, "", "## References", ""]
    lines += [f"- {reference}" for reference in references]
    return "\n".join(lines) + "\n"


def write_methods(summary_path: str | Path, fit_paths: Sequence[str | Path], provenance_path: str | Path,
                  config: Mapping[str, Any], out_md: str | Path, interrater_path: str | Path | None = None) -> str:
    """Workflow step: ``results/tables/methods.md`` from the data summary, the models'
    ``fit.json``, the configured instrument keys, the versions in ``provenance.json`` and,
    when given, the inter-rater table."""
    provenance = _read_json(provenance_path)
    if "versions" not in provenance:
        raise ValueError(f"{provenance_path}: no 'versions' entry; expected the provenance of alliance.provenance")
    interrater = []
    if interrater_path:
        interrater = methods_interrater(pd.read_csv(interrater_path, float_precision="round_trip"), config)
    text = methods_document(_read_json(summary_path), methods_models(fit_paths), methods_instruments(config),
                            provenance["versions"], interrater)
    _write_text(text, Path(out_md))
    log.info("methods paragraph: %d models, %d instruments", len(fit_paths), len(config.get("instruments") or {}))
    return text
