"""Figures and their captions agree: a caption states no number the figure did not draw.

A caption's data-dependent sentence (sessions, N, the model's estimate) is written by the step
that draws the figure, from the facts it drew, into a caption file the static caption in
workflow/report/ includes (``.. include:: {{ snakemake.output.caption }}``). Here: the static
captions state no session range or N of their own, each one that includes a generated caption
belongs to a rule that writes it, and on the bundled example every generated caption matches the
data the figure was drawn from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "workflow" / "report"
INCLUDE = ".. include:: {{ snakemake.output.caption }}"
#: figure -> (static caption, generated caption under results/)
GENERATED = {
    "missingness": ("missingness.rst", "figures/missingness_caption.rst"),
    "caterpillar": ("models_caterpillar.rst", "figures/therapist_caterpillar_caption.rst"),
    "scatter": ("models_scatter.rst", "figures/early_alliance_scatter_caption.rst"),
    "surface": ("agreement_surface_figure.rst", "agreement/response_surface_caption.rst"),
}


def _rules_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))


@pytest.mark.parametrize("figure", sorted(GENERATED))
def test_caption_includes_the_caption_its_rule_writes(figure):
    static, generated = GENERATED[figure]
    assert INCLUDE in (REPORT / static).read_text(encoding="utf-8")
    rules = _rules_text()
    rule = next(block for block in re.split(r"^rule ", rules, flags=re.M) if f'"../report/{static}"' in block)
    assert f'caption="results/{generated}"' in rule


def test_no_figure_caption_states_a_session_range_or_n_of_its_own():
    """Numbers of the data come from the generated caption, never from the static text."""
    for rst in sorted(REPORT.glob("*.rst")):
        text = rst.read_text(encoding="utf-8")
        assert not re.search(r"sessions? \d+\s*[\u2013-]\s*\d+", text, flags=re.I), rst.name
        assert not re.search(r"\bN = \d", text), rst.name


def test_missingness_caption_states_the_sessions_and_n_drawn(tmp_path):
    from alliance.data.steps import write_summary
    from test_figures import _administrations

    admin = _administrations()
    clients = admin[["client", "therapist"]].drop_duplicates()
    admin.to_parquet(tmp_path / "administrations.parquet")
    clients.to_parquet(tmp_path / "clients.parquet")
    pd.DataFrame(columns=["client"]).to_csv(tmp_path / "switches.csv", index=False)
    out = {k: tmp_path / f"{k}" for k in ("summary.json", "completion.csv", "missingness.png", "caption.rst")}
    write_summary(*(tmp_path / n for n in ("administrations.parquet", "clients.parquet", "switches.csv")), *out.values())
    text = out["caption.rst"].read_text(encoding="utf-8")
    assert text.startswith("Sessions 1\u20135; N = 4 clients.")
    assert "oq45 (intake, end)" in text  # no config: the entry's name
    assert (tmp_path / "missingness.pdf").stat().st_size > 0


# --------------------------------------------------------------------------------------
# The bundled example: every generated caption against the files the figure was drawn from
# --------------------------------------------------------------------------------------
def _caption(results: Path, figure: str) -> str:
    return (results / GENERATED[figure][1]).read_text(encoding="utf-8")


def test_example_missingness_caption_matches_its_data(example_run):
    results = example_run / "results"
    admin = pd.read_parquet(results / "interim" / "administrations.parquet")
    summary = json.loads((results / "data" / "summary.json").read_text())
    first, last = int(admin["session"].min()), int(admin["session"].max())
    text = _caption(results, "missingness")
    assert text.startswith(f"Sessions {first}\u2013{last}; N = {summary['clients']} clients.")
    assert "OQ-45.2 (intake, end)" in text
    assert (results / "figures" / "missingness.pdf").stat().st_size > 0


def test_example_caterpillar_caption_matches_its_therapists(example_run):
    from alliance.config import validate_config
    from alliance.models.steps import figure_models
    from conftest import example_config

    results = example_run / "results"
    model = figure_models(validate_config(example_config()))["caterpillar"]
    effects = pd.read_csv(results / "models" / model / "therapist_effects.csv")
    label = json.loads((results / "models" / model / "fit.json").read_text())["label"]
    counts = effects["n_clients"]
    assert (effects["(Intercept)_cond_sd"] > 0).all()
    assert _caption(results, "caterpillar") == (
        f"Model: {label}. {len(effects)} therapists with {counts.min()}\u2013{counts.max()} clients each "
        f"({counts.sum()} clients).\n")


def test_example_scatter_caption_matches_its_model(example_run):
    from alliance.config import validate_config
    from alliance.models.steps import figure_models
    from alliance.report.tables import format_p
    from conftest import example_config

    results = example_run / "results"
    model = figure_models(validate_config(example_config()))["scatter"]
    info = json.loads((results / "models" / model / "fit.json").read_text())
    fixed = pd.read_csv(results / "models" / model / "fixed_effects.csv").set_index("term")
    text = _caption(results, "scatter")
    assert f"N = {info['nobs']} clients." in text
    p = format_p(fixed.loc["early_alliance", "p"])
    assert f"*p* {p if p[0] in '<>' else '= ' + p}" in text
