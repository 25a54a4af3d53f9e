"""Tests for the manuscript outputs (alliance.manuscript, workflow/rules/report.smk).

On the workflow's run on the bundled example (the ``example_run`` fixture), against references
that are not the code under test:

- the models' own result files (``results/models/{model}/fixed_effects.csv``,
  ``random_effects.csv``, ``fit.json``), read back from the Word document with python-docx:
  every shown number lies within half a unit of its last shown decimal of the CSV value
  (plus 1e-12 for binary rounding), p values follow APA (exact to three decimals, ``< .001``);
- the client-level data the models were fitted to (``results/interim/models/{model}.parquet``,
  written by the model step) with numpy means, SDs (n - 1) and correlations and
  scipy.stats.pearsonr p values for the stars;
- ``results/reliability/internal_consistency.csv`` for the reliability table;
- ``results/data/summary.json``, ``fit.json`` and ``provenance.json`` for the methods
  paragraph's N per level, formulas, REML/ML and versions;
- hand-worked values for the choice of decimals.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import docx
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from alliance.config import validate_config
from alliance.manuscript import (
    client_descriptives_data,
    manuscript_table_stems,
    manuscript_tables,
    model_table_groups,
    shown_decimals,
    write_manuscript_tables,
    write_methods,
)
from alliance.models.steps import CLIENT_LEVEL_KINDS
from alliance.report.tables import MINUS

EM_DASH = "\u2014"


# --------------------------------------------------------------------------- helpers


def workflow_config(workdir: Path) -> dict:
    return validate_config(yaml.safe_load((workdir / "config" / "config.yaml").read_text()))


def docx_rows(table) -> list[list[str]]:
    """Every row of a Word table; a merged cell's text in its first column only, the others
    empty; no-break spaces as spaces."""
    rows = []
    for row in table.rows:
        seen, cells = set(), []
        for cell in row.cells:
            cells.append("" if id(cell._tc) in seen else cell.text.replace("\u00a0", " "))
            seen.add(id(cell._tc))
        rows.append(cells)
    return rows


def docx_tables(path: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Title -> (header, body) of every table in the Word document, in document order; with
    column groups the header is the second row and the group row is left out; a section
    heading row is in the body ([text, "", ...])."""
    document = docx.Document(str(path))
    paragraphs = [p.text for p in document.paragraphs]
    titles = [paragraphs[i + 1] for i, text in enumerate(paragraphs) if re.fullmatch(r"Table \d+", text)]
    assert len(titles) == len(document.tables)
    out = {}
    for title, table in zip(titles, document.tables):
        rows = docx_rows(table)
        grouped = len(table._tbl.tr_lst[0].tc_lst) < len(table.columns)
        out[title] = (rows[1], rows[2:]) if grouped else (rows[0], rows[1:])
    return out


def markdown_cells(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, body) of the first table in a Markdown file, as docx_tables reads Word."""
    text = path.read_text(encoding="utf-8").split("\n**Table ")[0]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    raw = [[re.sub(r"\\(.)", r"\1", c.strip()) for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    parsed = [[re.sub(r"^\*+(.*?)\*+$", r"\1", c) for c in row] for row in raw]
    # column groups: the group labels above the rule, the column labels in bold below it
    if len(parsed) > 3 and all(re.fullmatch(r":?-+:?", c) for c in parsed[1]) and any(parsed[0]) \
            and not parsed[0][0] and all(c.startswith("**") for c in raw[2] if c):
        return parsed[2], parsed[3:]
    return parsed[0], parsed[2:]


def shown(text: str) -> tuple[float, int]:
    """A shown number and its decimals: true minus, thousands commas, no leading zero, stars."""
    plain = text.rstrip("*").replace(MINUS, "-").replace(",", "")
    plain = re.sub(r"^(-?)\.", r"\g<1>0.", plain)
    assert re.fullmatch(r"-?\d+(\.\d+)?", plain), text
    return float(plain), len(plain.split(".")[1]) if "." in plain else 0


def assert_shows(text: str, value: float, decimals: int | None = None, what: str = "") -> int:
    """``text`` is ``value`` rounded to the decimals it shows (exactly ``decimals`` if given)."""
    number, places = shown(text)
    if decimals is not None:
        assert places == decimals, f"{what}: {text!r} shows {places} decimals, expected {decimals}"
    assert abs(number - value) <= 0.5 * 10.0**-places + 1e-12, f"{what}: {text!r} is not {value!r}"
    return places


def assert_p(text: str, p: float, what: str = "") -> None:
    if text == "< .001":
        assert p < 0.001, f"{what}: {text!r} but p = {p!r}"
    elif text == "> .999":
        assert p > 0.999, what
    else:
        assert re.fullmatch(r"\.\d{3}", text), f"{what}: p shown as {text!r}"
        assert_shows(text, p, 3, what)


def assert_interval(text: str, low: float, high: float, decimals: int, what: str = "") -> None:
    match = re.fullmatch(r"\[(\S+), (\S+)\]", text)
    assert match, f"{what}: interval shown as {text!r}"
    assert_shows(match.group(1), low, decimals, what)
    assert_shows(match.group(2), high, decimals, what)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, float_precision="round_trip")


@pytest.fixture(scope="module")
def run(example_run: Path) -> dict:
    config = workflow_config(example_run)
    results = example_run / "results"
    return {"workdir": example_run, "results": results, "config": config,
            "docx": docx_tables(results / "tables" / "tables.docx"),
            "fits": {m: json.loads((results / "models" / m / "fit.json").read_text())
                     for m in config["models"]["fits"]}}


# --------------------------------------------------------------------------- the model tables


def test_every_table_is_written_in_every_format(run):
    tables = run["results"] / "tables"
    stems = manuscript_table_stems(run["config"])
    groups = model_table_groups(run["config"])
    assert stems == ["descriptives", "reliability", *groups]
    # the declared models, each once, grouped by kind, at most three side by side
    assert sorted(m for _, members in groups.values() for m in members) == sorted(run["config"]["models"]["fits"])
    assert all(1 <= len(members) <= 3 for _, members in groups.values())
    for stem in stems:
        for ext in ("md", "tex"):
            assert (tables / f"{stem}.{ext}").stat().st_size > 0, f"{stem}.{ext}"
        latex = (tables / f"{stem}.tex").read_text()
        assert "\\toprule" in latex and "\\bottomrule" in latex, stem
    assert len(run["docx"]) == len(stems)
    page = (tables / "manuscript_tables.html").read_text(encoding="utf-8")
    for number in range(1, len(stems) + 1):
        assert f'<p class="apa-number"><strong>Table {number}</strong></p>' in page
    assert "<script" not in page


def model_columns(run) -> list[tuple[str, int, int, dict]]:
    """(table title, model number, first column, fit.json) of every model in the Word tables."""
    models = list(run["config"]["models"]["fits"])
    document = docx.Document(str(run["results"] / "tables" / "tables.docx"))
    out = []
    for title, table in zip(run["docx"], document.tables):
        groups = docx_rows(table)[0]
        for column, text in enumerate(groups):
            match = re.fullmatch(r"Model (\d+): (.*)", text)
            if match and len(table._tbl.tr_lst[0].tc_lst) < len(table.columns):
                number = int(match.group(1))
                info = run["fits"][models[number - 1]]
                assert match.group(2) == info["label"], text
                out.append((title, number, column, info))
    assert sorted(n for _, n, _, _ in out) == list(range(1, len(models) + 1))
    return out


def test_model_tables_hold_the_fixed_effects(run):
    """b, CI and p of every model's fixed_effects.csv, in its three columns; b and CI to the
    decimals two significant digits of the row's SE need; terms labelled as in the manuscript."""
    for title, number, column, info in model_columns(run):
        fixed = read_csv(run["results"] / "models" / info["model"] / "fixed_effects.csv")
        header, body = run["docx"][title]
        assert header[column:column + 3] == ["b", "95% CI", "p"]
        section = next(i for i, cells in enumerate(body) if cells[0] == "Random effects")
        # the table's term rows: the terms of its models in order of first appearance
        members = [i for t, _, _, i in model_columns(run) if t == title]
        terms = list(dict.fromkeys(t for i in members for t in
                                   read_csv(run["results"] / "models" / i["model"] / "fixed_effects.csv")["term"]))
        assert len(terms) == section, title
        for _, row in fixed.iterrows():
            cells = body[terms.index(row["term"])]
            what = f"Model {number} {row['term']}"
            places = assert_shows(cells[column], row["estimate"], what=what)
            assert places == max(0, 1 - math.floor(math.log10(abs(row["se"])))), what
            assert_interval(cells[column + 1], row["ci_low"], row["ci_high"], places, what)
            assert_p(cells[column + 2], row["p"], what)
        labels = [cells[0] for cells in body[:section]]
        assert not any(re.search(r"[a-z]_[a-z]|^arm[A-Z]", label) for label in labels), labels
    everything = "".join((run["results"] / "tables" / f"{stem}.md").read_text(encoding="utf-8")
                         for stem in model_table_groups(run["config"]))
    assert "Arm: PDT" in everything and "armPDT" not in everything.split("*Note.*")[0]


def test_model_tables_hold_the_fit_json_random_part(run):
    """σ², τ00 (per grouping factor), τ11/ρ01, ICC, N, observations, R² and AIC/BIC equal the
    model's fit.json and random_effects.csv (validated against lme4 and performance) rounded
    to the shown decimals."""
    for title, number, column, info in model_columns(run):
        random = read_csv(run["results"] / "models" / info["model"] / "random_effects.csv")
        _, body = run["docx"][title]
        section = next(i for i, cells in enumerate(body) if cells[0] == "Random effects")
        rows = {cells[0]: cells[column] for cells in body[section + 1:]}
        what = f"Model {number}"
        variances = random.loc[random["term2"].isna(), "variance"]
        places = shown_decimals(variances)
        assert_shows(rows["σ²"], info["var_residual"], places, what)
        for r in random[random["group"] != "Residual"].itertuples():
            group = r.group.capitalize()
            if pd.isna(r.term2) and r.term1 == "(Intercept)":
                assert_shows(rows[f"τ00 {group}"], r.variance, places, what)
            elif pd.isna(r.term2):
                assert_shows(rows[f"τ11 {group}: {r.term1.capitalize()}"], r.variance, places, what)
            else:
                assert_shows(rows[f"ρ01 {group}"], r.corr, 2, what)
        icc = info["var_random"] / (info["var_random"] + info["var_residual"])
        assert_shows(rows["ICC"], icc, 3, what)
        assert_shows(rows["Marginal R²"], info["r2_marginal"], 3, what)
        assert_shows(rows["Conditional R²"], info["r2_conditional"], 3, what)
        assert_shows(rows["AIC"], info["aic_ml"], 1, what)
        assert_shows(rows["BIC"], info["bic_ml"], 1, what)
        assert rows["Observations"] == f"{info['nobs']:,}"
        for group, n in info["ngroups"].items():
            assert rows[f"N {group.capitalize()}"] == f"{n:,}", what
        note = next(p for p in docx.Document(str(run["results"] / "tables" / "tables.docx")).paragraphs
                    if p.text.startswith("Note.") and f"Model {number}, " in p.text).text
        if info["singular"]:
            assert re.search(rf"Singular fit \(Models? [\d, and]*\b{number}\b[\d, and]*\): the therapist intercept "
                             r"variance was estimated at 0", note), note
        assert "AIC and BIC are from maximum-likelihood (ML) refits of the REML models" in note if info["reml"] else True
        assert "REML criterion" not in note


def test_session_model_column_equals_r_lme4_and_performance(run):
    """The within_between model's column against R (tests/data/tables_r/ref_model_table.R on the
    model's data of the bundled example): lme4's fixed effects, VarCorr and ML-refit AIC/BIC, and
    performance's adjusted ICC and Nakagawa R², the quantities sjPlot::tab_model prints."""
    reference = json.loads((Path(__file__).parent / "data" / "tables_r" / "within_between.json").read_text())
    title, number, column, info = next(c for c in model_columns(run) if c[3]["model"] == "within_between")
    _, body = run["docx"][title]
    rows = {cells[0]: cells[column] for cells in body}
    what = f"Model {number} vs R"
    for label, key, decimals in [("σ²", "sigma2", 3), ("τ00 Client", "tau00_client", 3),
                                 ("τ00 Therapist", "tau00_therapist", 3), ("τ11 Client: Session", "tau11_client_session", 3),
                                 ("ρ01 Client", "rho01_client", 2), ("ICC", "icc_adjusted", 3),
                                 ("Marginal R²", "r2_marginal", 3), ("Conditional R²", "r2_conditional", 3),
                                 ("AIC", "aic_ml", 1), ("BIC", "bic_ml", 1),
                                 ("Intercept", "(Intercept)", None), ("Session", "session", None)]:
        value = reference["fixed"][key] if key in reference["fixed"] else reference[key]
        assert_shows(rows[label], value, decimals, f"{what}: {label}")
    assert rows["N Client"] == f"{reference['n_client']:,}" and rows["N Therapist"] == f"{reference['n_therapist']:,}"
    assert rows["Observations"] == f"{reference['nobs']:,}"


def test_fit_json_ml_statistics_equal_r_refitml(run):
    """fit.json's loglik_ml, aic_ml and bic_ml of three of the example's models equal lme4's
    logLik/AIC/BIC(refitML(m)) on the model's data (tests/data/tables_r/ref_ml_refit.R), to 1e-6
    relative; its REML aic/bic stay lme4's AIC/BIC of the REML fit."""
    reference = json.loads((Path(__file__).parent / "data" / "tables_r" / "ml_refit.json").read_text())
    for name in ("within_between", "early_phq9_post", "trait_state"):
        info, ref = run["fits"][name], reference[name]
        assert " ".join(info["formula"].split()) == ref["formula"] and info["nobs"] == ref["nobs"], name
        for key in ("loglik_ml", "aic_ml", "bic_ml"):
            assert info[key] == pytest.approx(ref[key], rel=1e-6), (name, key)
        assert info["aic"] == pytest.approx(ref["aic_reml"], rel=1e-6) and info["bic"] == pytest.approx(ref["bic_reml"], rel=1e-6)
        assert "refitML" in info["ml_refit"]


def test_docx_and_markdown_show_the_same_cells(run):
    tables = run["results"] / "tables"
    by_title = run["docx"]
    documents = list(by_title.values())
    for stem, (header, body) in zip(manuscript_table_stems(run["config"]), documents):
        assert markdown_cells(tables / f"{stem}.md") == (header, body), stem


def test_model_tables_md_and_html_carry_the_manuscript_numbers(run):
    """model_tables.md is the manuscript's model tables, with the same numbers and cells."""
    tables = run["results"] / "tables"
    stems = list(model_table_groups(run["config"]))
    assert (tables / "model_tables.md").read_text(encoding="utf-8") == \
        "\n".join((tables / f"{stem}.md").read_text(encoding="utf-8") for stem in stems)
    page = (tables / "model_tables.html").read_text(encoding="utf-8")
    manuscript = (tables / "manuscript_tables.html").read_text(encoding="utf-8")
    for stem in stems:
        number = manuscript_table_stems(run["config"]).index(stem) + 1
        block = re.search(rf'<div class="apa-table" id="table-{number}">.*?</div>', page, re.S).group(0)
        assert block in manuscript, stem


# --------------------------------------------------------------------------- descriptives and reliability


def test_descriptives_are_those_of_the_models_client_level_data(run):
    config = run["config"]
    model = next(m for m, spec in config["models"]["fits"].items() if spec["kind"] in CLIENT_LEVEL_KINDS)
    data = pd.read_parquet(run["results"] / "interim" / "models" / f"{model}.parquet")
    variables = ["early_alliance", "baseline", "post", "slope"]
    header, body = run["docx"]["Means, Standard Deviations and Correlations of the Client-Level Variables"]
    assert header == ["Variable", "n", "M", "SD", "1", "2", "3", "4"]
    for i, (cells, variable) in enumerate(zip(body, variables)):
        x = data[variable].dropna().to_numpy()
        assert cells[1] == f"{len(x):,}", variable
        assert_shows(cells[2], float(np.mean(x)), 2, variable)
        assert_shows(cells[3], float(np.std(x, ddof=1)), 2, variable)
        assert cells[4 + i] == EM_DASH
        assert all(c == "" for c in cells[5 + i:]), variable
        for j in range(i):
            pair = data[[variable, variables[j]]].dropna()
            r, p = stats.pearsonr(pair[variable], pair[variables[j]])
            stars = "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
            cell = cells[4 + j]
            assert re.fullmatch(r"[^*]+" + re.escape(stars), cell), f"{variable} x {variables[j]}: {cell!r}, p = {p}"
            assert not cell.lstrip(MINUS).startswith("0"), cell
            assert_shows(cell, float(r), 2, f"{variable} x {variables[j]}")


def test_reliability_table_holds_the_internal_consistency_numbers(run):
    consistency = read_csv(run["results"] / "reliability" / "internal_consistency.csv")
    consistency = consistency[consistency["status"].eq("ok")].reset_index(drop=True)   # the rest: named in the note
    header, body = run["docx"]["Internal Consistency of the Scales"]
    # single level (alpha, CI, omega, omega hierarchical), then omega and CI within and between clients
    assert header[-10:] == ["n", "k", "α", "95% CI", "ω", "ωh", "ω", "95% CI", "ω", "95% CI"]
    at = {name: len(header) - 10 + i for i, name in enumerate(
        ["n", "k", "alpha", "ci", "omega", "omega_h", "within", "within_ci", "between", "between_ci"])}
    assert len(body) == len(consistency)
    assert consistency["omega_within"].notna().sum() >= 10  # the example's pooled rows: clients repeat
    for cells, (_, row) in zip(body, consistency.iterrows()):
        what = f"{row['instrument']} {row['scale']} {row['session']}"
        assert cells[header.index("Session")] == ("All" if pd.isna(row["session"]) else f"{int(row['session'])}")
        assert cells[at["n"]] == f"{int(row['n']):,}", what
        assert_shows(cells[at["alpha"]], row["alpha"], 2, what)
        assert_interval(cells[at["ci"]], row["ci_low"], row["ci_high"], 2, what)
        if not pd.isna(row["omega_total"]):
            assert_shows(cells[at["omega"]], row["omega_total"], 2, what)
        if pd.isna(row["omega_hierarchical"]):
            assert cells[at["omega_h"]] == "", what
        else:
            assert_shows(cells[at["omega_h"]], row["omega_hierarchical"], 2, what)
        for level in ("within", "between"):
            if pd.isna(row[f"omega_{level}"]):  # single-session rows: one administration per client
                assert cells[at[level]] == cells[at[f"{level}_ci"]] == "\u2013", what
                assert row["n_clients"] == row["n"] and row["ci_method"] == "Feldt", what
            else:
                assert_shows(cells[at[level]], row[f"omega_{level}"], 2, f"{what} {level}")
                assert_interval(cells[at[f"{level}_ci"]], row[f"omega_{level}_ci_low"],
                                row[f"omega_{level}_ci_high"], 2, f"{what} {level}")
    note = (run["results"] / "tables" / "reliability.md").read_text(encoding="utf-8").split("*Note.* ")[1]
    assert "cluster bootstrap over clients (percentile, 200 replicates" in note and "Feldt (1965)" in note
    assert "Geldhof, Preacher & Zyphur, 2014" in note


# --------------------------------------------------------------------------- methods paragraph


def test_methods_paragraph_states_the_actual_study(run):
    text = (run["results"] / "tables" / "methods.md").read_text(encoding="utf-8")
    summary = json.loads((run["results"] / "data" / "summary.json").read_text())
    versions = json.loads((run["results"] / "provenance.json").read_text())["versions"]
    sample = re.search(r"comprised ([\d,]+) sessions? of ([\d,]+) clients? seen by ([\d,]+) therapists?", text)
    assert sample, text[:400]
    counts = [int(g.replace(",", "")) for g in sample.groups()]
    assert counts == [summary["sessions"], summary["clients"], summary["therapists"]]
    if summary.get("raters"):
        assert f"made by {summary['raters']:,} raters" in text
    for number, info in enumerate(run["fits"].values(), start=1):
        method = "restricted maximum likelihood (REML)" if info["reml"] else "maximum likelihood (ML)"
        sentence = (f"Model {number} ({info['label']}) was specified in lme4 notation as `{info['formula']}` "
                    f"and estimated by {method}, using {info['nobs']:,} observations")
        assert sentence in text
    assert f"Python {versions['python']}" in text and f"NumPy {versions['numpy']}" in text
    assert "Satterthwaite" in text and "## References" in text


# --------------------------------------------------------------------------- determinism, decimals, bad input


def test_rewriting_gives_the_workflows_bytes(run, tmp_path, monkeypatch):
    """The same inputs give byte-identical files in another process (Word document included)."""
    monkeypatch.chdir(run["workdir"])  # key_file paths in the config are relative to the work folder
    results, config = Path("results"), run["config"]
    fits = [results / "models" / m / "fit.json" for m in config["models"]["fits"]]
    written = write_manuscript_tables(results / "scores" / "analysis_scores.parquet",
                                      results / "interim" / "clients.parquet",
                                      results / "reliability" / "internal_consistency.csv", fits, config,
                                      tmp_path, tmp_path / "tables.docx")
    write_methods(results / "data" / "summary.json", fits, results / "provenance.json", config, tmp_path / "methods.md",
                  results / "reliability" / "interrater.csv")
    for path in [*written.values(), tmp_path / "methods.md"]:
        assert path.read_bytes() == (results / "tables" / path.name).read_bytes(), path.name


@pytest.mark.parametrize("values, expected", [
    ([0.036, 0.2], 3), ([0.0057, 0.3195], 4), ([0.45, 2.0], 2), ([0.01], 3), ([0.099], 3), ([0.1], 2),
    ([0.0, 0.0], 2), ([1e-9], 4), ([np.nan, 12.0], 2), ([-0.02, 5.0], 3),
])
def test_shown_decimals_keep_two_significant_digits(values, expected):
    assert shown_decimals(values) == expected


def test_bad_inputs_are_refused(run, tmp_path, monkeypatch):
    monkeypatch.chdir(run["workdir"])
    config, results = run["config"], Path("results")
    fits = [results / "models" / m / "fit.json" for m in config["models"]["fits"]]
    scores = pd.read_parquet(results / "scores" / "scores.parquet")
    consistency = read_csv(results / "reliability" / "internal_consistency.csv")
    last = list(config["models"]["fits"])[-1]
    with pytest.raises(ValueError, match=rf"no fit.json given for declared model\(s\) \['{last}'\]"):
        manuscript_tables(config, scores, None, consistency, fits[:-1])
    without_models = {**config, "models": {**config["models"], "fits": {}}}
    with pytest.raises(ValueError, match="no model is declared"):
        client_descriptives_data(without_models, scores, None)
    assert manuscript_table_stems(without_models) == ["reliability"]
    provenance = tmp_path / "provenance.json"
    provenance.write_text(json.dumps({"code": {}}))
    with pytest.raises(ValueError, match="no 'versions' entry"):
        write_methods(results / "data" / "summary.json", fits, provenance, config, tmp_path / "methods.md")
