"""The figures as a journal and a reader meet them: 300-dpi PNG plus PDF with the same bytes on
every run, declared by every figure rule; measures drawn only where scheduled; the therapist
caterpillar with intervals, ranks and client counts; the scatter with the model's line and band;
names, never codes or pseudonyms."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from alliance.report.style import close

ROOT = Path(__file__).resolve().parents[1]

DRAW = """
import sys
from alliance.report.style import new_figure, save_figure
fig, ax = new_figure()
ax.plot([1, 2, 3], [2, 1, 3], label="a line")
ax.set_title("Therapist 1 \\u2212 PHQ-9")
ax.legend()
save_figure(fig, sys.argv[1])
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_figure_writes_a_300_dpi_png_and_a_pdf_with_the_same_bytes_on_every_run(tmp_path):
    from PIL import Image

    runs = []
    for i in range(2):  # separate processes: nothing of one run's state may reach the bytes
        png = tmp_path / f"run{i}" / "figure.png"
        subprocess.run([sys.executable, "-c", DRAW, str(png)], check=True)
        runs.append((_digest(png), _digest(png.with_suffix(".pdf"))))
    assert runs[0] == runs[1]
    png = tmp_path / "run0" / "figure.png"
    with Image.open(png) as image:
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    pdf = png.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"Producer" not in pdf


def test_save_figure_refuses_a_path_that_is_not_png(tmp_path):
    from alliance.report.style import new_figure, save_figure

    fig, _ = new_figure()
    with pytest.raises(ValueError, match="must end in .png"):
        save_figure(fig, tmp_path / "figure.svg")
    close(fig)


def _rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", path.read_text(encoding="utf-8"), flags=re.M)
        blocks.update({name: body for name, body in zip(parts[1::2], parts[2::2])})
    return blocks


def test_every_figure_rule_declares_the_pdf_beside_each_png():
    """save_figure writes ``x.pdf`` beside ``x.png``; the rule must say so, or Snakemake neither
    keeps nor reruns it."""
    outputs_of = {name: body.split("\n    params:")[0].split("\n    conda:")[0] for name, body in _rule_blocks().items()}
    figure_rules = {name: out for name, out in outputs_of.items()
                    if '.png"' in out or re.search(r"for path, \w+ in \w*figure_paths", out)}
    assert {"ruptures", "agreement", "interrater_figures", "therapist_caterpillar", "data_summary"} <= set(figure_rules)
    assert len(figure_rules) == 13
    for name, outputs in figure_rules.items():
        for png in re.findall(r'"([^"]+)\.png"', outputs):
            assert f'"{png}.pdf"' in outputs, f"rule {name}: {png}.png has no {png}.pdf output"
        if re.search(r"for path, \w+ in \w*figure_paths", outputs):  # lists of figures: the PDFs by the same list
            assert 'removesuffix(".png") + ".pdf"' in outputs, f"rule {name}: a figure list without its PDFs"


# --------------------------------------------------------------------------------------
# Missingness: drawn only where a measure was scheduled
# --------------------------------------------------------------------------------------
def _administrations() -> pd.DataFrame:
    """Four clients with 2-5 sessions: PHQ-9 every session, OQ-45 at intake and end only."""
    rows = []
    for c, last in enumerate([5, 3, 4, 2]):
        for s in range(1, last + 1):
            end = s in (1, last)
            rows.append({"client": f"C{c}", "therapist": "T0", "session": s, "days_since_intake": 7 * s,
                         "respondent": "client", "rater": None, "table": "client_forms",
                         "phq9_1": 1.0, "phq9_2": np.nan if (c, s) == (0, 2) else 2.0,
                         "oq45_1": 3.0 if end and (c, s) != (2, 4) else np.nan, "oq45_2": 1.0 if end and (c, s) != (2, 4) else np.nan})
    return pd.DataFrame(rows)


def test_intake_and_end_measure_is_drawn_only_at_intake_and_end():
    from alliance.data.figures import missingness_figure
    from alliance.data.summary import scheduled_completion

    table = scheduled_completion(_administrations())
    oq = table[table["instrument"] == "oq45"].set_index("session")
    assert set(table.loc[table["instrument"] == "phq9", "schedule"]) == {"every session"}
    assert set(oq["schedule"]) == {"intake, end"}
    # session 1: all four intakes; session 3: client 1's end only (clients 0 and 2 are in between)
    assert oq.loc[1, "scheduled"] == 4 and oq.loc[3, "scheduled"] == 1 and oq.loc[3, "completion_rate"] == 1
    assert oq.loc[4, "scheduled"] == 1 and oq.loc[4, "completion_rate"] == 0  # client 2's unanswered end
    fig, facts = missingness_figure(table, {"oq45": "OQ-45.2", "phq9": "PHQ-9"})
    try:
        ax = fig.axes[0]
        grid = ax.images[0].get_array()
        assert facts == {"sessions": [1, 5], "instruments": {"phq9": "every session", "oq45": "intake, end"}}
        assert grid.shape == (2, 5)
        # OQ-45 at session 5 (client 0's end) is drawn, nothing is drawn where nobody had it scheduled
        assert [t.get_text() for t in ax.get_yticklabels()] == ["PHQ-9 (every session)", "OQ-45.2 (intake, end)"]
        assert not np.ma.is_masked(grid[1, 4]) and grid[1, 4] == 1
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4", "5"]
        assert "not scheduled" in [t.get_text() for t in ax.get_legend().get_texts()]
    finally:
        close(fig)


def test_a_measure_scheduled_nowhere_on_some_sessions_leaves_them_blank():
    from alliance.data.figures import missingness_figure
    from alliance.data.summary import scheduled_completion

    admin = _administrations()
    admin.loc[admin["session"] == 2, ["oq45_1", "oq45_2"]] = np.nan
    admin = admin[~((admin["session"] == 2) & (admin["client"] == "C3"))]  # no end at session 2
    table = scheduled_completion(admin)
    assert 2 not in set(table.loc[table["instrument"] == "oq45", "session"])
    fig, _ = missingness_figure(table)
    try:
        assert np.isnan(fig.axes[0].images[0].get_array().filled(np.nan)[1, 1])
    finally:
        close(fig)


# --------------------------------------------------------------------------------------
# The caterpillar and the scatter
# --------------------------------------------------------------------------------------
def test_caterpillar_draws_mode_plus_minus_1_96_conditional_sd_by_rank_with_client_counts():
    from alliance.models.figures import caterpillar_plot

    effects = pd.DataFrame({"(Intercept)": [0.5, -1.0, 0.1], "(Intercept)_cond_sd": [0.2, 0.4, 0.3],
                            "n_clients": [30, 2, 9], "therapist": ["T-secret1", "T-secret2", "T-secret3"]})
    fig = caterpillar_plot(effects, sd="(Intercept)_cond_sd", n_clients="n_clients", xlabel="effect on PHQ-9 total")
    try:
        ax = fig.axes[0]
        (bars,) = [c for c in ax.collections if c.get_segments()]
        spans = sorted((seg[0][0], seg[1][0]) for seg in bars.get_segments())
        expected = sorted((m - 1.96 * s, m + 1.96 * s) for m, s in zip(effects["(Intercept)"], effects["(Intercept)_cond_sd"]))
        assert np.allclose(spans, expected)
        assert [t.get_text() for t in ax.get_yticklabels()] == ["Therapist 1", "Therapist 2", "Therapist 3"]
        counts = [t.get_text() for t in ax.texts]
        assert counts[:3] == ["2", "9", "30"] and "clients" in counts  # sorted by the mode
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("1.96 conditional SD" in text for text in legend)
        everything = " ".join(t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text")))
        assert "secret" not in everything
    finally:
        close(fig)


def test_caterpillar_of_a_national_study_ranks_without_a_label_per_therapist():
    """5,000 therapists: a fixed-height figure with about ten rank ticks, no per-row labels or
    counts (unreadable, and drawing them took a minute), every interval still drawn."""
    from alliance.models.figures import caterpillar_plot

    rng = np.random.default_rng(3)
    n = 5000
    effects = pd.DataFrame({"(Intercept)": rng.normal(size=n), "(Intercept)_cond_sd": rng.uniform(0.1, 0.5, n),
                            "n_clients": rng.integers(5, 40, n)})
    fig = caterpillar_plot(effects, sd="(Intercept)_cond_sd", n_clients="n_clients")
    try:
        ax = fig.axes[0]
        fig.canvas.draw()
        assert fig.get_figheight() == 9.0
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert 3 <= len(labels) <= 12 and all(text.startswith("Therapist ") for text in labels)
        assert len(ax.texts) == 0
        (bars,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(bars.get_segments()) == n
    finally:
        close(fig)


def test_scatter_draws_the_model_line_with_its_band_and_says_so():
    from alliance.models.figures import early_outcome_scatter

    rng = np.random.default_rng(1)
    data = pd.DataFrame({"early_alliance": rng.normal(45, 6, 50), "post": rng.normal(10, 4, 50)})
    line = pd.DataFrame({"x": [30.0, 60.0], "fit": [10.5, 10.2], "ci_low": [9.0, 9.1], "ci_high": [12.0, 11.3]})
    fig = early_outcome_scatter(data, line=line, line_label="model-implied line, 95% CI (b = −0.01, p = .816)")
    try:
        ax = fig.axes[0]
        assert ax.lines[0].get_ydata().tolist() == [10.5, 10.2]  # the model's line, not a least-squares fit
        assert any(isinstance(c, PolyCollection) for c in ax.collections)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["clients (N = 50)", "model-implied line, 95% CI (b = −0.01, p = .816)"]
    finally:
        close(fig)
    bare = early_outcome_scatter(data)
    try:
        assert not bare.axes[0].lines  # no unadjusted line suggesting a slope the model need not support
    finally:
        close(bare)


def test_display_names_come_from_the_instrument_keys():
    from alliance.scoring.instruments import instrument_abbreviation, load_key, measure_display, scale_display

    oq = load_key("oq45")
    assert instrument_abbreviation("oq45", oq) == "OQ-45.2"
    assert instrument_abbreviation("wai_x", None) == "WAI-X"
    assert scale_display("oq45", "sd", oq) == "OQ-45.2 Symptom Distress"
    assert measure_display(("phq9", None, "total"), {"phq9": load_key("phq9")}) == "PHQ-9 total"
    assert measure_display(("wai_sr", "client", "total"), {"wai_sr": load_key("wai_sr")}) == "client-rated WAI-SR total"
