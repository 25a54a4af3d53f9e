"""The report's HTML pages of result tables (alliance.report.html): what a reader sees in them."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from alliance.report.html import (data_file_page, format_value, human_size, markdown_page, readable_column,
                                  record_page, table_page)
from alliance.report.pages import PAGES, page_title


class Cells(HTMLParser):
    """The text of every header and data cell, row by row, and whether a script tag occurs."""

    def __init__(self):
        super().__init__()
        self.rows, self.scripts, self._cell = [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        if tag == "span" and self._cell is not None:
            self._cell.append("|")  # the file's column name, below the readable header

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def cells(text: str) -> Cells:
    parser = Cells()
    parser.feed(text)
    return parser


FIXED = pd.DataFrame({"term": ["(Intercept)", "early_alliance"], "estimate": [-2.1637, -0.0082704],
                      "se": [2.0412, 0.034912], "df": [368.96874, 368.96874], "t": [-1.0571, -0.2330],
                      "p": [0.29119, 0.000012], "ci_low": [-6.1775, -0.077064],
                      "ci_high": [1.8501, 0.060523], "converged": [True, False]})


def test_a_table_page_rounds_estimates_to_their_se_and_p_as_apa():
    page = cells(table_page(FIXED, "Fixed effects", "results/models/m/fixed_effects.csv"))
    header, intercept, alliance = page.rows
    assert header[:3] == ["Term|term", "Estimate|estimate", "SE|se"] and "CI lower|ci_low" in header
    # SE 2.04 -> 2 decimals; SE 0.035 -> 3 decimals (two significant digits of the SE)
    assert intercept[1:3] == ["−2.16", "2.04"] and intercept[6:8] == ["−6.18", "1.85"]
    assert alliance[1:3] == ["−0.008", "0.035"] and alliance[6:8] == ["−0.077", "0.061"]
    assert intercept[5] == ".291" and alliance[5] == "< .001"
    assert intercept[3] == "368.969" and intercept[4] == "−1.057"  # others: 3 decimals, true minus
    assert intercept[8] == "yes" and alliance[8] == "no"


def test_a_page_is_utf8_without_script_names_its_source_and_has_the_same_bytes_twice():
    text = table_page(FIXED, "Fixed effects: <b>", "results/models/m/fixed_effects.csv")
    assert text == table_page(FIXED.copy(), "Fixed effects: <b>", "results/models/m/fixed_effects.csv")
    assert '<meta charset="utf-8">' in text and cells(text).scripts == 0 and "javascript" not in text.lower()
    assert "Fixed effects: &lt;b&gt;" in text  # titles are escaped
    assert "results/models/m/fixed_effects.csv</code> (beside this page" in text and "full precision" in text


def test_missing_values_whole_numbers_and_small_numbers():
    frame = pd.DataFrame({"n_targets": [1200.0, np.nan], "tiny": [0.0000123, -0.25], "label": ["a <b>", None]})
    rows = cells(table_page(frame, "T", "x.csv")).rows
    assert rows[0] == ["N targets|n_targets", "Tiny|tiny", "Label|label"]
    assert rows[1] == ["1,200", "0.000012", "a <b>"] and rows[2] == ["—", "−0.250", "—"]
    assert format_value(float("inf")) == "∞" and format_value(-1e-13).startswith("−1.0 × 10^−13")
    assert format_value(1.5, "p_value") == format_value(1.5) == "1.500"  # not a probability: a number


def test_readable_column_names():
    assert [readable_column(c) for c in ("ci_high", "mean_abs_diff", "r2_marginal", "b_ci_low", "icc", "nobs")] == [
        "CI upper", "Mean absolute difference", "R² marginal", "b CI lower", "ICC", "Observations"]


def test_a_json_record_is_a_key_value_table_with_nested_records_as_tables():
    fit = {"aic": 2171.79367, "converged": True, "ngroups": {"therapist": 40}, "contrasts": [],
           "alliance_effects": [{"term": "early_alliance", "estimate": 0.0121, "p": 0.5}],
           "settings": {"covariates": ["arm", "age"], "random": None}}
    page = cells(record_page(fit, "Fit", "results/models/m/fit.json"))
    rows = {row[0]: row[1:] for row in page.rows if row}
    assert rows["AIC|aic"] == ["2,171.794"] and rows["Converged|converged"] == ["yes"]
    assert rows["Groups › Therapist|ngroups.therapist"] == ["40"] and rows["Contrasts|contrasts"] == ["—"]
    assert rows["Settings › Covariates|settings.covariates"] == ["arm, age"]
    assert rows["Settings › Random|settings.random"] == ["—"]
    nested = [row for row in page.rows if row[:1] == ["early_alliance"]]
    assert nested == [["early_alliance", "0.012", ".500"]]


def test_a_data_file_page_describes_the_file_without_any_row():
    frame = pd.DataFrame({"client": ["C-aaaaaaaaaaaa", "C-bbbbbbbbbbbb", "C-cccccccccccc"],
                          "score": [12.0, np.nan, 30.5], "session": [1, 2, 3]})
    text = data_file_page(frame, "Scores", "results/scores/scores.csv", 2_585_023,
                          column_notes={"client": "pseudonym"})
    assert "C-aaaa" not in text and "12" not in text.replace("1,2", "")  # no value of any row
    rows = {row[0]: row[1:] for row in cells(text).rows if row}
    assert rows["Size"] == ["2.6 MB"] and rows["Rows"] == ["3"] and rows["Columns"] == ["3"]
    assert rows["client"] == ["text", "3", "pseudonym"] and rows["score"] == ["number", "2", ""]
    assert rows["session"][0] == "whole number"
    assert "not embedded in this report" in text and "results/scores/scores.csv" in text
    assert human_size(999) == "999 bytes" and human_size(1500) == "1.5 kB"


def test_a_data_file_page_reads_its_file_fast_and_describes_it_as_a_round_trip_read_would(tmp_path):
    # the page reads a data file with the default float parser (no value is shown): types and
    # counts as the round-trip reading of every table page gives them, so the same bytes
    from alliance.report.pages import COLUMN_NOTES, OTHER_FORMS, write_pages

    rng = np.random.default_rng(4)
    n = 2000
    frame = pd.DataFrame({"client": [f"C-{i:04d}" for i in range(n)], "session": np.arange(n) % 12 + 1,
                          "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(10, 3, n) / 3),
                          "reliable": rng.random(n) < 0.5, "scale": "total", "tiny": rng.random(n) * 1e-300})
    source = tmp_path / "scores.csv"
    frame.to_csv(source, index=False)
    write_pages({"scores": str(source)}, {"scores": str(tmp_path / "scores.html")}, {})
    exact = pd.read_csv(source, float_precision="round_trip", keep_default_na=False, na_values=[""])
    expected = data_file_page(exact, PAGES["scores"].title, source.as_posix(), source.stat().st_size,
                              column_notes=COLUMN_NOTES.get("scores"), others=OTHER_FORMS.get("scores", ()))
    assert (tmp_path / "scores.html").read_text(encoding="utf-8") == expected


def test_a_table_longer_than_a_page_is_described_as_a_data_file(tmp_path):
    from alliance.report.pages import TABLE_ROWS, write_pages

    source = tmp_path / "change.csv"
    for rows in (TABLE_ROWS, TABLE_ROWS + 1):
        pd.DataFrame({"outcome": ["phq9"] * rows, "change": np.arange(rows) + 0.25}).to_csv(source, index=False)
        write_pages({"change": str(source)}, {"change": str(tmp_path / "change.html")}, {})
        text = (tmp_path / "change.html").read_text(encoding="utf-8")
        embedded = "0.25" in text
        assert embedded == (rows == TABLE_ROWS)  # the last row shown only up to the bound
        assert ("not embedded in this report" in text) == (rows > TABLE_ROWS)
    assert f"{TABLE_ROWS + 1:,} rows: more than a page shows" in text


def test_a_markdown_result_keeps_its_table_and_text():
    text = markdown_page("# Recovery\n\nSome *italic* and `code <x>`.\n\n| term | bias |\n| --- | --- |\n"
                         "| a_cw | +1.2% |\n\n- one\n- two\n", "Recovery", "results/validation/recovery.md")
    assert "<h2>Recovery</h2>" in text and "<em>italic</em>" in text and "<code>code &lt;x&gt;</code>" in text
    assert cells(text).rows[:2] == [["term", "bias"], ["a_cw", "+1.2%"]] and "<li>two</li>" in text


@pytest.mark.parametrize("wildcards, expected", [({}, "Fixed effects"),
                                                 ({"model": "m"}, "Fixed effects: Main model")])
def test_page_titles_name_a_model_by_its_label(wildcards, expected):
    config = {"models": {"fits": {"m": {"label": "Main  model"}}}}
    assert page_title("fixed", config, wildcards) == expected
    assert all(page.kind in {"table", "record", "markdown", "data file"} for page in PAGES.values())
