"""The report's landing page: the study's main results in words and numbers, first.

A reviewer opening ``results/report.html`` should read the study's N, the main alliance ->
outcome estimate with its confidence interval, the therapists' share of the outcome variance,
the observers' ICC and the comparison with the meta-analytic benchmark without a click.
:func:`landing_page` composes that text (reStructuredText, which Snakemake's report renders as
its start page) from the result files every domain writes; :func:`write_landing_page` is the
workflow step. Numbers are formatted as in the APA tables (:mod:`alliance.report.tables`);
nothing here computes a statistic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alliance.models.steps import declared_models, diagnostic_sentences, is_estimated
from alliance.models.summaries import BENCHMARK
from alliance.outputs import atomic_path
from alliance.scoring.instruments import instrument_abbreviation, keys_from_config
from alliance.report.tables import format_bounded, format_number, format_p, significant_decimals

__all__ = ["main_model", "landing_page", "write_landing_page"]

#: the term of a client-level model that carries the early alliance
ALLIANCE_TERM = "early_alliance"


def _rst(text: Any) -> str:
    """Text from the config or a result, safe in reStructuredText and in Snakemake's Jinja."""
    text = " ".join(str(text).split())
    for char in "\\*`|_[]<>":
        text = text.replace(char, "\\" + char)
    return text.replace("{", "(").replace("}", ")")  # braces would open a Jinja expression


def _link(text: str, target: str) -> str:
    """A reference to the report entry whose file is named ``target`` (Snakemake's report
    defines a target for every result's file name and every category)."""
    return f"`{text} <{target}_>`_"


def table_page_name(stem: str) -> str:
    """The file name of a result's HTML page (``results/report/tables/{stem}.html``)."""
    return f"{stem}.html"


#: the report's categories in the order of the analysis, with what each holds
CATEGORIES = (
    ("1 Data", "sample, completion, missingness, therapist switches", None),
    ("2 Scores and change", "scores (as a page about the data file), reliable and clinically significant change", None),
    ("3 Reliability", "internal consistency and, with observer ratings, inter-rater reliability", None),
    ("4 Models", "every declared model by its label (fixed and random effects, fit), all models together, "
                 "figures, sensitivity (multiverse, bootstrap)", None),
    ("5 Ruptures", "rupture-repair episodes and their link to outcome", "ruptures"),
    ("6 Client–therapist agreement", "discrepancies, Bland-Altman plots, response surface", "agreement"),
    ("7 Manuscript tables", "APA tables, the Word document and the Methods paragraph", None),
    ("8 Provenance", "input hashes, configuration, versions and seeds", None),
)


def _guide(config: Mapping[str, Any]) -> list[str]:
    """Where every category of the report is (only those the run has)."""
    lines = ["**Where the results are.** Every table is shown as a page (the CSV or JSON file beside it "
             "holds full precision); the categories follow the analysis:", ""]
    for name, holds, section in CATEGORIES:
        if section is not None and not (config.get(section) or {}).get("enabled"):
            continue
        lines.append(f"- `{name}`_: {holds}.")
    return lines + [""]


def _ci(low: float, high: float, decimals: int = 2, bounded: bool = False) -> str:
    fmt = format_bounded if bounded else format_number
    return f"[{fmt(low, decimals)}, {fmt(high, decimals)}]"


def _decimals(se: float) -> int:
    """Decimals that show two significant digits of ``se`` (at least 2), as the tables do."""
    return max(2, significant_decimals(se, 2))


def main_model(config: Mapping[str, Any], fits: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The first declared, estimated client-level early-alliance model (the study's main one)."""
    kinds = {name: spec.get("kind") for name, spec in (config.get("models") or {}).get("fits", {}).items()}
    for name in declared_models(config):
        info = fits.get(name)
        if info is not None and kinds.get(name) == "early_outcome" and is_estimated(info):
            return name
    return None


def _sample_sentence(summary: Mapping[str, Any]) -> str:
    parts = [f"{int(summary['clients']):,} clients", f"{int(summary['therapists']):,} therapists",
             f"{int(summary['sessions']):,} client sessions"]
    if summary.get("raters"):
        parts.append(f"{int(summary['raters']):,} observers")
    return "**Sample.** " + ", ".join(parts) + f". {_link('Sample table', table_page_name('data_summary'))}."


def _main_sentences(name: str, info: Mapping[str, Any], fixed: pd.DataFrame) -> list[str]:
    row = fixed.loc[fixed["term"] == ALLIANCE_TERM]
    label = _rst(info.get("label") or name)
    if row.empty:
        return [f"**Main model** ({label}): no early-alliance term in its fixed effects."]
    r = row.iloc[0]
    d = _decimals(float(r["se"]))
    p = format_p(r["p"])
    p_text = f"*p* {p}" if p.startswith(("<", ">")) else f"*p* = {p}"
    lines = [f"**Main result** ({label}; N = {int(info['nobs']):,}): early alliance -> outcome "
             f"*b* = {format_number(r['estimate'], d)}, 95% CI {_ci(r['ci_low'], r['ci_high'], d)}, "
             f"*SE* = {format_number(r['se'], d)}, {p_text} "
             f"({_link('fixed effects', table_page_name(f'model_{name}_fixed_effects'))}, "
             f"{_link('fit', table_page_name(f'model_{name}_fit'))})."]
    icc = info.get("therapist_icc") or {}
    if icc.get("icc") is not None and math.isfinite(float(icc["icc"])):
        lines.append(f"**Therapists** account for {format_number(100 * float(icc['icc']), 1)}% of the outcome "
                     f"variance (unconditional therapist ICC, 95% CI {format_number(100 * float(icc['ci_low']), 1)}"
                     f"–{format_number(100 * float(icc['ci_high']), 1)}%, {int(icc['n_therapists']):,} therapists; "
                     f"the field's benchmark is about 5%, Baldwin & Imel 2013; "
                     f"{_link('table', table_page_name('models_therapist_icc'))}).")
    effects = [e for e in info.get("alliance_effects") or []
               if e.get("term") == ALLIANCE_TERM and e.get("level") == "client"]
    for e in effects:
        lines.append(
            f"**Benchmark.** As a client-level correlation, the effect is *r* = {format_bounded(e['estimate'])} "
            f"{_ci(e['ci_low'], e['ci_high'], bounded=True)} ({int(e['n']):,} {_rst(e['n_unit'])}; positive: a "
            f"better alliance goes with a better outcome), beside *r* = {format_bounded(BENCHMARK['r'])} "
            f"{_ci(BENCHMARK['ci_low'], BENCHMARK['ci_high'], bounded=True)} of Flückiger et al. (2018) "
            f"({_link('table', table_page_name('models_alliance_effects'))}, "
            f"{_link('forest plot', 'alliance_forest.png')}).")
    return lines


def _icc_sentence(interrater: pd.DataFrame, keys: Mapping[str, Any]) -> str | None:
    rows = interrater.loc[(interrater["mcgraw_wong"] == "ICC(A,1)") & (interrater["level"] == "scale")]
    if rows.empty:
        return None
    total = rows.loc[rows["unit"] == "total"]
    row = (total if not total.empty else rows).iloc[0]
    key = keys.get(row["instrument"])
    instrument = instrument_abbreviation(row["instrument"], key)
    scale = key.scales[row["unit"]].label if key is not None and row["unit"] in key.scales else row["unit"]
    return (f"**Observer agreement** ({_rst(instrument)}, {_rst(scale)}): ICC(A,1) = "
            f"{format_bounded(row['icc'])}, 95% CI {_ci(row['ci_low'], row['ci_high'], bounded=True)}, "
            f"{int(row['n_targets']):,} sessions, {int(row['n_raters'])} coders "
            f"({_link('table', table_page_name('reliability_interrater'))}).")


def landing_page(config: Mapping[str, Any], summary: Mapping[str, Any], fits: Mapping[str, Mapping[str, Any]],
                 fixed_effects: Mapping[str, pd.DataFrame], interrater: pd.DataFrame | None,
                 description: str, diagnostics: Sequence[tuple[str, str]] = ()) -> str:
    """The landing page: a results section, then ``description`` (workflow/report/workflow.rst).

    Parameters
    ----------
    config : mapping
        The validated config (declared models and their kinds).
    summary : mapping
        ``results/data/summary.json``.
    fits, fixed_effects : mapping
        Model name -> its ``fit.json`` and ``fixed_effects.csv``.
    interrater : DataFrame or None
        ``results/reliability/interrater.csv`` when observer ratings are analysed.
    description : str
        The workflow's own description, kept below the results.
    diagnostics : sequence of (model, sentence)
        The diagnostic sentences of the models whose checks raised a flag
        (:func:`alliance.models.steps.diagnostic_sentences`); each links to its page.
    """
    lines = ["Main results", "============", "", _sample_sentence(summary), ""]
    name = main_model(config, fits)
    if name is None:
        lines += ["No client-level early-alliance model was declared or estimable; see the Models category.", ""]
    else:
        for sentence in _main_sentences(name, fits[name], fixed_effects[name]):
            lines += [sentence, ""]
    if interrater is not None:
        sentence = _icc_sentence(interrater, keys_from_config(config))
        if sentence:
            lines += [sentence, ""]
    for model, sentence in diagnostics:
        # the sentence names the model by its label already
        lines += [f"**Diagnostics.** {_rst(sentence.rstrip('. '))} "
                  f"({_link('diagnostics', table_page_name(f'model_{model}_diagnostics'))}, "
                  f"{_link('figure', f'diagnostics_{model}.png')}).", ""]
    lines += _guide(config)
    lines += ["About this analysis",
              "===================", "", description.strip(), ""]
    return "\n".join(lines)


def write_landing_page(config: Mapping[str, Any], summary_path: str | Path, fit_paths: Sequence[str | Path],
                       interrater_path: str | Path | None, description_path: str | Path,
                       out_rst: str | Path, diagnostics_paths: Sequence[str | Path] = ()) -> None:
    """Workflow step: read the domains' results and write the landing page."""
    summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    fits, fixed = {}, {}
    for path in fit_paths:
        folder = Path(path).parent
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        fits[folder.name] = info
        if is_estimated(info):
            fixed[folder.name] = pd.read_csv(folder / "fixed_effects.csv", float_precision="round_trip")
    interrater = pd.read_csv(interrater_path) if interrater_path else None
    flagged = [(Path(path).parent.name, sentence) for path in diagnostics_paths
               for sentence in diagnostic_sentences([path])]
    text = landing_page(config, summary, fits, fixed, interrater,
                        Path(description_path).read_text(encoding="utf-8"), flagged)
    with atomic_path(out_rst) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
