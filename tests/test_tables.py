"""Tests for alliance.tables: APA tables as Markdown, LaTeX, HTML and Word.

References used here (none is the code under test):
- lme4 1.1-31 / lmerTest 3.1-3 fixed effects and variance components of the reference study
  (tests/data/tables/lme4_reference.json, copied from shared/reference/) as source frames;
- python-docx reading the written .docx back, the standard library's HTMLParser reading the
  HTML, and small parsers written here for the Markdown and the LaTeX;
- numpy and scipy.stats.pearsonr for the descriptives;
- APA Publication Manual 7th ed. rules (no leading zero for values bounded by 1, exact p
  to 3 decimals, p < .001) on hand-worked values.

Tolerances: a shown number must lie within half a unit of its last shown decimal of the
source value (plus 1e-12 for binary rounding); descriptives agree with numpy/scipy to 1e-12
(means, SDs, r) and 1e-10 (p).
"""

from __future__ import annotations

import json
import math
import re
import time
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import docx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance.report import tables as T
from alliance.report.tables import MINUS, ApaTable, Column

DATA = Path(__file__).parent / "data" / "lme4" / "small"  # lme4 fits from ref_lme4.R


# --------------------------------------------------------------------------- source frames


def reference_fixed_effects() -> pd.DataFrame:
    fit = json.loads((DATA / "lme4_reference.json").read_text())["three_level"]
    rows = []
    for term, v in fit["fixed"].items():
        q = stats.t.ppf(0.975, v["df"])
        rows.append({"term": term, "estimate": v["Estimate"], "se": v["Std. Error"], "df": v["df"],
                     "t": v["t value"], "p": v["Pr(>|t|)"], "ci_low": v["Estimate"] - q * v["Std. Error"],
                     "ci_high": v["Estimate"] + q * v["Std. Error"]})
    frame = pd.DataFrame(rows)
    frame["std_estimate"] = [np.nan, -0.2214, -0.1502, -0.0972]  # made-up values: only the display is tested
    return frame


def reference_random_effects() -> pd.DataFrame:
    fit = json.loads((DATA / "lme4_reference.json").read_text())["three_level"]
    rows = []
    for r in fit["varcorr"]:
        cov = r["var2"] is not None
        rows.append({"group": r["grp"], "term1": r["var1"], "term2": r["var2"], "variance": r["vcov"],
                     "sd": np.nan if cov else r["sdcor"], "corr": r["sdcor"] if cov else np.nan})
    return pd.DataFrame(rows)


def edge_fixed_effects() -> pd.DataFrame:
    """Values at the formatting edges: tiny and near-1 p, values rounding to zero, thousands."""
    return pd.DataFrame({
        "term": ["(Intercept)", "a_cw_lag", "x_with|pipe", "big"],
        "estimate": [1234.5678, -0.0004, 0.126, -2.5],
        "se": [0.0049, 0.5, 0.999, 1.0],
        "df": [12.34, 1000.06, 3.0, 55.55],
        "t": [251949.0, -0.008, 0.126126, -2.5],
        "p": [1e-300, 0.99962, 0.90249, 0.0156],
        "ci_low": [1234.1, -1.0, -3.05, -4.5],
        "ci_high": [1235.0, 0.99, 3.3, -0.495],
        "std_estimate": [np.nan, -0.0001, 0.5, -0.31],
    })


def reliability_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "instrument": ["wai_sr", "wai_sr", "phq9", "owai"],
        "key": ["wai_sr", "wai_sr", "phq9", "wai_o_s"],
        "scale": ["total", "task", "total", "total"],
        "respondent": ["client", "client", "client", "observer"],
        "session": [None, None, None, None],
        "n": [4396, 4390, 4401, 2],
        "k": [12, 4, 9, 12],
        "alpha": [0.9123, 0.8049, 0.876, np.nan],
        "ci_low": [0.9085, 0.7951, 0.8702, np.nan],
        "ci_high": [0.9160, 0.8143, 0.8815, np.nan],
        "omega_total": [0.9150, 0.8111, 0.8799, np.nan],
    })


def descriptive_data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 4))
    x[:, 1] = 0.8 * x[:, 0] + 0.6 * x[:, 1]
    x[:, 2] = -0.3 * x[:, 0] + x[:, 2]
    frame = pd.DataFrame(x * [1.0, 10.0, 1.0, 100.0] + [3.8, -5.0, 0.0, 1000.0],
                         columns=["early_alliance", "baseline", "post", "days"])
    frame.loc[[3, 17], "post"] = np.nan
    frame.loc[40, "days"] = np.nan
    return frame


def all_tables() -> list[ApaTable]:
    data = descriptive_data()
    return [
        T.fixed_effects_table(reference_fixed_effects(), number=1, title="Three-Level Session Model"),
        T.random_effects_table(reference_random_effects(), number=2),
        T.fixed_effects_table(edge_fixed_effects(), number=3, title="Edge & Cases_100%", decimals=3,
                              labels={"big": "Large {term}"}),
        T.reliability_table(reliability_frame(), number=4, labels={"wai_sr": "WAI-SR", "phq9": "PHQ-9"}),
        T.descriptives_table(data, list(data.columns), number=5,
                             labels={"early_alliance": "Early alliance", "days": "Days in treatment"}),
    ]


# --------------------------------------------------------------------------- parsers (independent of the writers)


def markdown_cells(text: str) -> tuple[list[str], list[list[str]]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    parsed = []
    for line in rows:
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        parsed.append([_md_plain(c.strip()) for c in cells])
    header, rule, body = parsed[0], parsed[1], parsed[2:]
    assert all(set(c) <= set(":-") for c in rule)
    return header, body


def _md_plain(cell: str) -> str:
    if re.fullmatch(r"\*[^*].*\*", cell) and not cell.endswith("\\*"):
        cell = cell[1:-1]  # italic header
    return re.sub(r"\\(.)", r"\1", cell)


class _TableHTML(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.in_cell, self.caption, self.in_caption = [], None, False, [], False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.in_cell, self.cell = True, ""
        elif tag == "caption":
            self.in_caption = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self.cell)
            self.in_cell = False
        elif tag == "caption":
            self.in_caption = False

    def handle_data(self, data):
        if self.in_cell:
            self.cell += data
        elif self.in_caption:
            self.caption.append(data)


def html_cells(text: str) -> tuple[list[str], list[list[str]], list[str]]:
    parser = _TableHTML()
    parser.feed(text)
    return parser.rows[0], parser.rows[1:], parser.caption


LATEX_PLAIN = [("{}[", "["), ("$-$", MINUS), ("$<$", "<"), ("$>$", ">"), ("\\%", "%"), ("\\&", "&"),
               ("\\_", "_"), ("\\textbar{}", "|"), ("\\{", "{"), ("\\}", "}"), ("$\\beta$", "\u03b2"), ("$\\alpha$", "\u03b1"),
               ("$\\omega$", "\u03c9"), ("$\\times$", "\u00d7"), ("---", "\u2014"), ("--", "\u2013")]


def latex_cells(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    start, end = lines.index("\\midrule"), lines.index("\\bottomrule")
    header_line = lines[start - 1]
    rows = []
    for line in [header_line, *lines[start + 1:end]]:
        assert line.endswith(" \\\\")
        cells = re.split(r"(?<!\\)&", line[: -len(" \\\\")])
        plain = []
        for c in cells:
            c = c.strip()
            c = re.sub(r"^\\textit\{(.*)\}$", r"\1", c)
            for escaped, char in LATEX_PLAIN:
                c = c.replace(escaped, char)
            plain.append(c)
        rows.append(plain)
    return rows[0], rows[1:]


def docx_cells(path: Path, index: int = 0) -> tuple[list[str], list[list[str]]]:
    table = docx.Document(str(path)).tables[index]
    # number cells keep their spaces as no-break spaces in Word (an interval never wraps)
    rows = [[cell.text.replace("\u00a0", " ") for cell in row.cells] for row in table.rows]
    return rows[0], rows[1:]


def shown_number(text: str) -> float:
    """A shown number back as a float: true minus, thousands commas, no leading zero, stars."""
    text = text.rstrip("*").replace(MINUS, "-").replace(",", "")
    text = re.sub(r"^(-?)\.", r"\g<1>0.", text)
    assert re.fullmatch(r"-?\d+(\.\d+)?", text), text
    return float(text)


def decimals_of(text: str) -> int:
    text = text.rstrip("*")
    return len(text.split(".")[1]) if "." in text else 0


def assert_shows(text: str, value: float, what: str) -> None:
    if pd.isna(value):
        assert text == "", f"{what}: missing value shown as {text!r}"
        return
    shown = shown_number(text)
    half_unit = 0.5 * 10.0 ** -decimals_of(text)
    assert abs(shown - value) <= half_unit + 1e-12, f"{what}: {text!r} does not show {value!r}"


def assert_shows_p(text: str, p: float, what: str) -> None:
    if text.startswith("< "):
        assert p < shown_number(text[2:]), what
    elif text.startswith("> "):
        assert p > shown_number(text[2:]), what
    else:
        assert_shows(text, p, what)


# --------------------------------------------------------------------------- APA number formats


def test_bounded_values_have_no_leading_zero():
    assert T.format_bounded(0.853) == ".85"
    assert T.format_bounded(-0.3) == f"{MINUS}.30"
    assert T.format_bounded(0.0451, 3) == ".045"
    assert T.format_bounded(0.9999) == "1.00"  # rounds to 1: the digit is kept
    assert T.format_bounded(-1.35) == f"{MINUS}1.35"  # an alpha below -1 exists for bad scales
    assert T.format_bounded(-0.004) == ".00"  # no negative zero


def test_p_values_follow_apa():
    assert T.format_p(0.0004) == "< .001"
    assert T.format_p(0.001) == ".001"
    assert T.format_p(0.03249) == ".032"
    assert T.format_p(0.5) == ".500"
    assert T.format_p(0.99962) == "> .999"
    assert T.format_p(1.0) == "> .999"
    assert T.format_p(0.0) == "< .001"
    assert T.format_p(0.0123, decimals=2) == ".01"
    for bad in (-0.01, 1.2, float("nan")):
        with pytest.raises(ValueError, match="p ="):
            T.format_p(bad)


def test_numbers_use_a_true_minus_and_thousands_separators():
    assert T.format_number(-1234.567) == f"{MINUS}1,234.57"
    assert T.format_number(-0.001) == "0.00"
    assert T.format_number(2.0, 3) == "2.000"
    assert T.format_number(float("-inf")) == f"{MINUS}\u221e"
    assert T.format_integer(4396) == "4,396"
    assert T.format_integer(np.int64(-12)) == f"{MINUS}12"
    with pytest.raises(ValueError, match="not a whole number"):
        T.format_integer(2.5)
    with pytest.raises(ValueError, match="expected a number"):
        T.format_number("1.5")


def test_significance_stars():
    assert [T.significance_stars(p) for p in (0.0009, 0.001, 0.0099, 0.01, 0.049, 0.05, np.nan)] == \
        ["***", "**", "**", "*", "*", "", ""]


def test_no_hyphen_minus_in_any_shown_number():
    for table in all_tables():
        for row in table.body:
            for cell in row[1:]:
                assert not re.search(r"-\d", cell), f"hyphen used as minus in {cell!r} of {table.caption}"


# --------------------------------------------------------------------------- every format shows the source numbers


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[int, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("tables")
    return {t.number: T.write_table(t, folder / f"table{t.number}") for t in all_tables()}


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_all_formats_hold_the_same_cells(written, number):
    table = next(t for t in all_tables() if t.number == number)
    paths = written[number]
    md_header, md_body = markdown_cells(paths["md"].read_text(encoding="utf-8"))
    html_header, html_body, caption = html_cells(paths["html"].read_text(encoding="utf-8"))
    tex_header, tex_body = latex_cells(paths["tex"].read_text(encoding="utf-8"))
    doc_header, doc_body = docx_cells(paths["docx"])
    assert md_header == html_header == tex_header == doc_header == table.header
    assert md_body == html_body == tex_body == doc_body == table.body
    assert len(md_body) == len(table.rows)
    assert caption == [f"Table {number}", table.title]


def test_fixed_effects_show_the_lme4_numbers(written):
    source = reference_fixed_effects()
    _, body = docx_cells(written[1]["docx"])
    _check_fixed_effects(body, source, decimals=None)


def test_fixed_effects_edge_values_are_rounded_not_truncated(written):
    source = edge_fixed_effects()
    _, body = docx_cells(written[3]["docx"])
    _check_fixed_effects(body, source, decimals=3)
    assert body[0][0] == "Intercept" and body[3][0] == "Large {term}" and body[2][0] == "x_with|pipe"
    assert body[0][1] == "1,234.568"
    assert body[1][1] == "0.000" and body[1][7] == "0.000"  # -0.0004, -0.0001: no negative zero
    assert body[1][5] == "> .999" and body[0][5] == "< .001" and body[3][5] == ".016"
    assert body[0][7] == ""  # NaN std_estimate: empty cell


def _check_fixed_effects(body, source, decimals):
    for row, (_, src) in zip(body, source.iterrows()):
        for j, column in ((1, "estimate"), (2, "se"), (3, "df"), (4, "t"), (7, "std_estimate")):
            assert_shows(row[j], src[column], f"{src['term']} {column}")
            if row[j]:
                assert decimals_of(row[j]) == (1 if column == "df" else _expected_decimals(column, src, decimals))
        assert_shows_p(row[5], src["p"], f"{src['term']} p")
        low, high = re.fullmatch(r"\[(.+), (.+)\]", row[6]).groups()
        assert_shows(low, src["ci_low"], "ci_low")
        assert_shows(high, src["ci_high"], "ci_high")
        if decimals is None:
            assert decimals_of(low) == decimals_of(high) == _expected_decimals("ci_low", src, None)


def _expected_decimals(column, src, decimals):
    """Fixed decimals when given; otherwise b, SE and CI show two significant digits of the
    row's SE (worked by hand: the SE's leading digit position), t and beta two decimals."""
    if decimals is not None:
        return decimals
    if column in ("t", "std_estimate"):
        return 2
    leading = math.floor(math.log10(abs(src["se"])))  # 0.019 -> -2, 0.24 -> -1, 1.2 -> 0
    return max(0, 1 - leading)


@pytest.mark.parametrize("se, shown", [(0.0057, "0.0057"), (0.45, "0.45"), (0.019, "0.019"), (1.19, "1.2"),
                                       (23.4, "23"), (0.0996, "0.100")])
def test_se_shows_two_significant_digits(se, shown):
    frame = pd.DataFrame({"term": ["x"], "estimate": [0.0012], "se": [se], "df": [30.0], "t": [0.2], "p": [0.8],
                          "ci_low": [-0.5], "ci_high": [0.5]})
    row = T.fixed_effects_table(frame).body[0]
    assert row[2] == shown
    assert decimals_of(row[1]) == decimals_of(row[2]) == T.significant_decimals(se)
    assert "0.00 (0.01)" not in T.fixed_effects_table(frame).to_markdown()


def test_rate_of_change_effect_is_not_shown_as_zero():
    """Issue 15: a slope effect of -0.0031 (SE 0.0057) read "0.00 (0.01)" at two decimals."""
    frame = pd.DataFrame({"term": ["early_alliance"], "estimate": [-0.0031], "se": [0.0057], "df": [386.0],
                          "t": [-0.54], "p": [0.59], "ci_low": [-0.0143], "ci_high": [0.0081]})
    row = T.fixed_effects_table(frame).body[0]
    assert row[1:3] == [f"{T.MINUS}0.0031", "0.0057"] and row[6] == f"[{T.MINUS}0.0143, 0.0081]"


def test_variance_at_zero_gets_a_note():
    frame = pd.DataFrame({"group": ["therapist", "Residual"], "term1": ["(Intercept)", None], "term2": [None, None],
                          "variance": [0.0, 24.6], "sd": [0.0, 4.96], "corr": [np.nan, np.nan]})
    note = T.random_effects_table(frame, labels={"therapist": "Therapist"}).note
    assert "Estimated at 0" in note and "Therapist: Intercept" in note
    assert "Estimated at 0" not in (T.random_effects_table(frame.assign(variance=[1.3, 24.6])).note or "")


def test_random_effects_show_variances_sds_and_correlations(written):
    source = reference_random_effects()
    _, body = docx_cells(written[2]["docx"])
    assert [r[0] for r in body] == ["client_id", "client_id", "client_id", "therapist_id", "Residual"]
    assert [r[1] for r in body] == ["Intercept", "Session", "Intercept \u00d7 Session", "Intercept", ""]
    for row, (_, src) in zip(body, source.iterrows()):
        assert_shows(row[2], src["variance"], "variance")
        assert_shows(row[3], src["sd"], "sd")
        if pd.notna(src["corr"]):
            assert row[4] == ".02" and abs(shown_number(row[4]) - src["corr"]) <= 0.005
        else:
            assert row[4] == ""


def test_reliability_table(written):
    source = reliability_frame()
    header, body = docx_cells(written[4]["docx"])
    assert header == ["Instrument", "Scale", "Respondent", "n", "k", "\u03b1", "95% CI", "\u03c9"]  # no session column
    assert [r[0] for r in body] == ["WAI-SR", "WAI-SR", "PHQ-9", "owai"]
    for row, (_, src) in zip(body, source.iterrows()):
        assert row[3] == f"{src['n']:,}" and row[4] == str(src["k"])
        assert_shows(row[5], src["alpha"], "alpha")
        assert_shows(row[7], src["omega_total"], "omega")
        if pd.notna(src["alpha"]):
            assert row[5].startswith(".") and row[6].startswith("[.")
            low, high = re.fullmatch(r"\[(.+), (.+)\]", row[6]).groups()
            assert_shows(low, src["ci_low"], "ci_low")
            assert_shows(high, src["ci_high"], "ci_high")
        else:
            assert row[6] == ""


def test_reliability_table_shows_sessions_when_given():
    frame = reliability_frame().assign(session=[1, 1, 1, 2])
    table = T.reliability_table(frame)
    assert table.header[3] == "Session" and [r[3] for r in table.body] == ["1", "1", "1", "2"]


def multilevel_reliability_frame() -> pd.DataFrame:
    """internal_consistency.csv's columns on four hand-made rows: two pooled rows where clients
    repeat (multilevel omega estimated), a pooled row with too few clients for the two-level
    model (45 items, 40 clients) and a single-session row (one administration per client).
    Every statistic differs from its neighbours, so a value shown in the wrong column shows."""
    nan = np.nan
    boot, feldt = "cluster bootstrap over clients (percentile)", "Feldt"
    return pd.DataFrame({
        "instrument": ["wai_sr", "phq9", "oq45", "wai_sr"], "key": ["wai_sr", "phq9", "oq45", "wai_sr"],
        "scale": ["total", "total", "total", "task"], "respondent": ["client"] * 4,
        "session": pd.Series(["All", "All", "All", 3], dtype=object),
        "n": [1200, 1100, 120, 290], "k": [12, 9, 45, 4], "n_clients": [300, 300, 40, 290],
        "alpha": [0.9123, 0.8761, 0.9342, 0.7931], "ci_low": [0.9051, 0.8633, 0.9021, 0.7512],
        "ci_high": [0.9187, 0.8872, 0.9517, 0.8266], "omega_total": [0.9162, 0.8799, 0.9391, 0.7953],
        "omega_hierarchical": [0.8046, nan, 0.8523, nan], "ci_method": [boot, boot, boot, feldt],
        "omega_model": ["bifactor: task, bond, goal", "one factor", "bifactor: ir, sd, sr", "one factor"],
        "omega_within": [0.7449, 0.6234, nan, nan], "omega_within_ci_low": [0.7312, 0.5987, nan, nan],
        "omega_within_ci_high": [0.7581, 0.6488, nan, nan],
        "omega_between": [0.9964, 0.9415, nan, nan], "omega_between_ci_low": [0.9871, 0.8803, nan, nan],
        "omega_between_ci_high": [1.0, 0.9902, nan, nan],
        "alpha_within": [0.7011, 0.6102, nan, nan], "alpha_between": [0.9902, 0.9333, nan, nan],
        "n_boot": [200, 200, 200, nan],
    })


MULTILEVEL_LABELS = {"wai_sr": "WAI-SR", "phq9": "PHQ-9", "oq45": "OQ-45", "client": "Client", "total": "Total",
                     "task": "Task"}


def test_reliability_table_shows_within_and_between_omega_in_their_columns():
    """Issue 16: omega within and between clients with their intervals, omega hierarchical,
    beside the single-level alpha and omega. Expected cells rounded by hand from the frame
    (two decimals, no leading zero, 1.00 kept; en dash where not estimated, blank where a
    scale has no subscales for omega hierarchical)."""
    table = T.reliability_table(multilevel_reliability_frame(), number=2, labels=MULTILEVEL_LABELS)
    assert table.spanners == [("", 6), ("Single level", 4), ("Within clients", 2), ("Between clients", 2)]
    assert table.header == ["Instrument", "Scale", "Respondent", "Session", "n", "k", "\u03b1", "95% CI", "\u03c9",
                            "\u03c9h", "\u03c9", "95% CI", "\u03c9", "95% CI"]
    dash = "\u2013"
    assert table.body == [
        ["WAI-SR", "Total", "Client", "All", "1,200", "12", ".91", "[.91, .92]", ".92", ".80",
         ".74", "[.73, .76]", "1.00", "[.99, 1.00]"],
        ["PHQ-9", "Total", "Client", "All", "1,100", "9", ".88", "[.86, .89]", ".88", "",
         ".62", "[.60, .65]", ".94", "[.88, .99]"],
        ["OQ-45", "Total", "Client", "All", "120", "45", ".93", "[.90, .95]", ".94", ".85", dash, dash, dash, dash],
        ["WAI-SR", "Task", "Client", "3", "290", "4", ".79", "[.75, .83]", ".80", "", dash, dash, dash, dash],
    ]


def test_reliability_table_note_names_the_ci_methods_and_why_cells_are_empty():
    note = T.reliability_table(multilevel_reliability_frame(), labels=MULTILEVEL_LABELS).note
    assert "(Geldhof, Preacher & Zyphur, 2014)" in note
    assert "\u03c9h = omega hierarchical" in note and "blank for a scale without subscales" in note
    # the CI methods as ci_method names them, each for the rows it was used on
    assert ("95% CIs of \u03b1 and of \u03c9 within and between clients: cluster bootstrap over clients "
            "(percentile, 200 replicates; Field & Welsh, 2007) where clients gave several administrations; "
            "Feldt (1965) where each client gave one administration.") in note
    assert ("\u2013 = not estimated: each client gave one administration, so no variance lies within clients; "
            "or fewer clients than items + 1") in note
    # one method, one reason: said without the "where" clauses and without the other reason
    pooled = multilevel_reliability_frame().iloc[:2]
    note = T.reliability_table(pooled).note
    assert "cluster bootstrap over clients (percentile, 200 replicates; Field & Welsh, 2007)." in note
    assert "Feldt" not in note and "not estimated" not in note
    session = multilevel_reliability_frame().iloc[[0, 3]]
    note = T.reliability_table(session).note
    assert "not estimated: each client gave one administration, so no variance lies within clients." in note


def test_reliability_table_note_says_when_no_bootstrap_was_drawn():
    frame = multilevel_reliability_frame()
    repeat = frame["n_clients"] < frame["n"]
    frame.loc[repeat, "ci_method"] = "none (no bootstrap replicates)"
    frame.loc[repeat, "n_boot"] = 0
    frame.loc[repeat, [c for c in frame.columns if c.endswith(("ci_low", "ci_high"))]] = np.nan
    note = T.reliability_table(frame, labels=MULTILEVEL_LABELS).note
    assert ("95% CIs of \u03b1 and of \u03c9 within and between clients: not computed (scoring: "
            "reliability_bootstrap is 0) where clients gave several administrations; Feldt (1965) where each "
            "client gave one administration.") in note


def test_reliability_table_without_multilevel_values_has_no_multilevel_columns():
    # every client once (the frame of a study with one administration each): nothing to show
    frame = multilevel_reliability_frame().iloc[[3]]
    table = T.reliability_table(frame)
    assert table.header[-3:] == ["\u03b1", "95% CI", "\u03c9"] and table.spanners == []
    assert "Geldhof" not in table.note and "Feldt (1965)." in table.note


def test_reliability_table_with_multilevel_columns_in_every_format(tmp_path):
    table = T.reliability_table(multilevel_reliability_frame(), number=2, labels=MULTILEVEL_LABELS)
    paths = T.write_table(table, tmp_path / "reliability")
    md = [line for line in paths["md"].read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    md_rows = [[_md_plain(c.strip()) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in md]
    assert md_rows[0] == table.spanner_cells and [c.strip("*") for c in md_rows[2]] == table.header
    assert md_rows[3:] == table.body
    html_rows = html_cells(paths["html"].read_text(encoding="utf-8"))[1]
    assert html_rows[0] == table.header and html_rows[1:] == table.body
    tex = paths["tex"].read_text(encoding="utf-8")
    assert "\\multicolumn{2}{c}{Within clients}" in tex and "\\cmidrule(lr){11-12}" in tex
    assert latex_cells(tex) == (table.header, table.body)
    grid = docx.Document(str(paths["docx"])).tables[0]
    rows = [[cell.text.replace("\u00a0", " ") for cell in row.cells] for row in grid.rows]
    assert rows[1] == table.header and rows[2:] == table.body
    assert T.docx_layout(table).landscape  # 14 columns: a landscape page


# --------------------------------------------------------------------------- descriptives


def test_descriptives_match_numpy_and_scipy():
    data = descriptive_data()
    columns = list(data.columns)
    out = T.descriptives(data, columns)
    for i, c in enumerate(columns):
        x = data[c].to_numpy()
        assert out.at[i, "n"] == np.sum(~np.isnan(x))
        assert out.at[i, "mean"] == pytest.approx(np.nanmean(x), rel=1e-12, abs=1e-12)
        assert out.at[i, "sd"] == pytest.approx(np.nanstd(x, ddof=1), rel=1e-12)
        for j, d in enumerate(columns, start=1):
            if d == c:
                assert np.isnan(out.at[i, f"r_{j}"])
                continue
            both = data[[c, d]].dropna()
            ref = stats.pearsonr(both[c], both[d])
            assert out.at[i, f"r_{j}"] == pytest.approx(ref.statistic, abs=1e-12)
            assert out.at[i, f"p_{j}"] == pytest.approx(ref.pvalue, rel=1e-10, abs=1e-300)
            assert out.at[i, f"n_{j}"] == len(both)


def test_descriptives_table_layout_and_stars(written):
    data = descriptive_data()
    stats_frame = T.descriptives(data, list(data.columns))
    header, body = docx_cells(written[5]["docx"])
    assert header == ["Variable", "n", "M", "SD", "1", "2", "3", "4"]
    assert [r[0] for r in body] == ["1. Early alliance", "2. baseline", "3. post", "4. Days in treatment"]
    for i, row in enumerate(body):
        assert row[4 + i] == "\u2014"  # diagonal
        assert all(cell == "" for cell in row[5 + i:])  # upper triangle
        assert_shows(row[2], stats_frame.at[i, "mean"], "mean")
        assert_shows(row[3], stats_frame.at[i, "sd"], "sd")
        for j in range(i):
            cell, r, p = row[4 + j], stats_frame.at[i, f"r_{j + 1}"], stats_frame.at[i, f"p_{j + 1}"]
            assert_shows(cell, r, f"r[{i},{j}]")
            assert cell.endswith(T.significance_stars(p)) and cell[len(cell.rstrip("*")):] == T.significance_stars(p)
            assert not cell.lstrip(MINUS).startswith("0")
    assert body[1][4].endswith("***")  # r(early, baseline) ~ .8 with n = 60
    assert "pairwise-complete observations (n = 57\u201360)" in next(t for t in all_tables() if t.number == 5).note


def test_descriptives_refuse_non_numeric_columns():
    with pytest.raises(ValueError, match="'therapist' has dtype"):
        T.descriptives(pd.DataFrame({"x": [1.0, 2.0], "therapist": ["a", "b"]}), ["x", "therapist"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['nope'\]"):
        T.descriptives_table(pd.DataFrame({"x": [1.0]}), ["x", "nope"])


# --------------------------------------------------------------------------- format details


def test_latex_is_booktabs_without_vertical_rules_and_escaped():
    table = all_tables()[2]
    tex = table.to_latex()
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}", tex).group(1)
    assert "|" not in spec and "\\hline" not in tex and "\\vline" not in tex
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 1
    assert "\\textit{Edge \\& Cases\\_100\\%}" in tex
    assert "x\\_with\\textbar{}pipe" in tex  # a bare | prints as a dash in LaTeX text
    for line in tex.splitlines():
        if line.endswith(" \\\\"):
            assert len(re.findall(r"(?<!\\)&", line)) == len(table.columns) - 1, line
            assert not line.startswith("[")
    assert "{}[" in tex  # a cell starting with "[" after "\\" is shielded from the optional argument
    with_caption = table.to_latex(caption=True, label="tab:edge")
    assert "\\caption{Edge \\& Cases\\_100\\%}" in with_caption and "\\label{tab:edge}" in with_caption


def test_markdown_escapes_pipes_and_emphasis():
    md = all_tables()[2].to_markdown()
    assert "x\\_with\\|pipe" in md
    assert md.startswith("**Table 3**\n\n*Edge & Cases\\_100%*\n")
    assert "*Note.* " in md


def test_html_is_escaped_and_has_no_vertical_rules():
    page = all_tables()[2].to_html(standalone=True)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "Edge &amp; Cases_100%" in page and "&lt; .001" in page
    assert "border-left" not in page and "border-right" not in page


def test_docx_is_apa_styled(written):
    document = docx.Document(str(written[1]["docx"]))
    number, title, note = document.paragraphs[0], document.paragraphs[1], document.paragraphs[-1]
    assert number.text == "Table 1" and all(r.bold for r in number.runs)
    assert title.text == "Three-Level Session Model" and all(r.italic for r in title.runs)
    assert note.runs[0].text == "Note." and note.runs[0].italic
    ns = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}
    tbl = document.tables[0]._tbl
    borders = {b.tag.split("}")[1]: b.get(f"{{{ns['w']}}}val") for b in tbl.tblPr.find("w:tblBorders", ns)}
    assert borders == {"top": "single", "bottom": "single", "left": "nil", "right": "nil", "insideH": "nil",
                       "insideV": "nil"}
    header_cells = document.tables[0].rows[0].cells
    for cell in header_cells:
        assert cell._tc.tcPr.find("w:tcBorders/w:bottom", ns).get(f"{{{ns['w']}}}val") == "single"
    body_cell = document.tables[0].rows[1].cells[0]
    assert body_cell._tc.tcPr.find("w:tcBorders", ns) is None
    italic_headers = [c.paragraphs[0].runs[0].italic for c in header_cells]
    assert italic_headers == [False, True, True, True, True, True, False, False]


def test_docx_bytes_are_identical_across_writes(tmp_path, monkeypatch):
    table = all_tables()[0]
    first = table.to_docx(tmp_path / "a.docx").read_bytes()
    # A later clock would change zip time stamps and core dates if they were not fixed.
    later = time.time() + 86400 * 3
    monkeypatch.setattr(time, "time", lambda: later)
    second = table.to_docx(tmp_path / "b.docx").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.docx") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = z.read("docProps/core.xml").decode()
    dates = re.findall(r"\d{4}-\d{2}-\d{2}T[\d:]+Z", core)
    assert dates and set(dates) == {"2000-01-01T00:00:00Z"}


def test_several_tables_in_one_document(tmp_path):
    tables = all_tables()
    path = T.write_docx(tables, tmp_path / "all.docx")
    document = docx.Document(str(path))
    assert len(document.tables) == len(tables)
    for i, table in enumerate(tables):
        assert docx_cells(path, i) == (table.header, table.body)


# --------------------------------------------------------------------------- bad input


def test_bad_tables_are_refused():
    rows = pd.DataFrame({"a": [1.0]})
    with pytest.raises(ValueError, match=r"lack column\(s\) \['b'\]"):
        ApaTable(1, "T", [Column("a", "A", "number"), Column("b", "B")], rows)
    with pytest.raises(ValueError, match="number = 0"):
        ApaTable(0, "T", [Column("a", "A")], rows)
    with pytest.raises(ValueError, match="title"):
        ApaTable(1, " ", [Column("a", "A")], rows)
    with pytest.raises(ValueError, match="fmt = 'percent'"):
        Column("a", "A", "percent")
    with pytest.raises(ValueError, match=r"fixed_effects_table: missing column\(s\) \['ci_low', 'ci_high'\]"):
        T.fixed_effects_table(reference_fixed_effects().drop(columns=["ci_low", "ci_high"]))
    with pytest.raises(ValueError, match="p = 1.5"):
        ApaTable(1, "T", [Column("a", "p", "p")], pd.DataFrame({"a": [1.5]})).body


def test_string_cells_and_callable_formats_pass_through():
    rows = pd.DataFrame({"a": ["n/a", 0.5], "b": [1, 2]})
    table = ApaTable(1, "T", [Column("a", "A", "bounded"), Column("b", "B", lambda v: f"<{v}>")], rows,
                     missing="\u2014")
    assert table.body == [["n/a", "<1>"], [".50", "<2>"]]


def test_fixed_effects_table_takes_an_lmm_result_frame():
    frame = reference_fixed_effects().set_index("term")
    assert T.fixed_effects_table(frame).body == T.fixed_effects_table(reference_fixed_effects()).body


# --------------------------------------------------------------------------- models side by side (tab_model layout)

W_NS = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}


def reference_model_columns() -> list[T.ModelColumn]:
    """lme4's three-level fit (numbers of tests/data/lme4/small) beside a singular
    client-level model with other terms; the fit statistics are inputs (only the display is
    tested here; tests/test_manuscript.py compares the workflow's tables with its fit.json)."""
    fit = json.loads((DATA / "lme4_reference.json").read_text())["three_level"]
    random = reference_random_effects()
    residual = float(random.loc[random["group"] == "Residual", "variance"].iloc[0])
    three = {"var_residual": residual, "var_random": 10.9, "ngroups": fit["ngrps"], "nobs": fit["nobs"],
             "r2_marginal": 0.1712, "r2_conditional": 0.7453, "aic": fit["objective"] + 18, "bic": 22190.123,
             "aic_ml": fit["objective"] + 4.25, "bic_ml": 22176.875, "reml": True, "formula": fit["formula"],
             "singular": False}
    singular = pd.DataFrame({"group": ["therapist_id", "Residual"], "term1": ["(Intercept)", None], "term2": [None, None],
                             "variance": [0.0, 24.6], "sd": [0.0, 4.96], "corr": [np.nan, np.nan]})
    client = {"var_residual": 24.6, "var_random": 0.0, "ngroups": {"therapist_id": 40}, "nobs": 376,
              "r2_marginal": 0.2701, "r2_conditional": 0.2701, "aic": -365.4581, "bic": 2243.29,
              "aic_ml": -371.0449, "bic_ml": 2237.7, "reml": True,
              "formula": "post ~ early_alliance + (1 | therapist)", "singular": True}
    return [T.ModelColumn(1, "Three-level", three, reference_fixed_effects(), random),
            T.ModelColumn(2, "Client level", client, edge_fixed_effects(), singular),
            T.ModelColumn(3, "Impossible", {"status": "not estimable", "reason": "model impossible: no data"})]


def comparison_table() -> ApaTable:
    return T.model_comparison_table(reference_model_columns(), 6, "Models Side by Side",
                                    labels={"client_id": "Client", "therapist_id": "Therapist",
                                            "therapist": "Therapist"})


def test_model_table_cells_are_the_model_numbers():
    table, models = comparison_table(), reference_model_columns()
    rows = {cells[0]: cells for cells in table.body}
    # three columns per model under its name, the term column without a group
    assert table.spanners[0] == ("", 1) and [s[1] for s in table.spanners[1:]] == [3, 3, 3]
    assert table.spanners[1][0] == "Model 1: Three-level" and table.spanners[3][0].endswith("(not estimable)")
    assert table.header[1:4] == ["b", "95% CI", "p"]
    for k, model in enumerate(models[:2]):
        b, ci, p = 1 + 3 * k, 2 + 3 * k, 3 + 3 * k
        for src in model.fixed.itertuples():
            label = {"(Intercept)": "Intercept", "a_cw": "Alliance, within-client", "a_cm": "Alliance, between-client",
                     "session": "Session", "a_cw_lag": "Alliance, within-client (previous session)"}.get(src.term, src.term)
            cells = rows[label]
            places = T.significant_decimals(src.se)
            assert decimals_of(cells[b]) == places, (label, cells[b])
            assert_shows(cells[b], src.estimate, label)
            low, high = re.fullmatch(r"\[(.+), (.+)\]", cells[ci]).groups()
            assert_shows(low, src.ci_low, label) and decimals_of(low) == places
            assert_shows(high, src.ci_high, label)
            assert_shows_p(cells[p], src.p, label)
        info = model.info
        assert_shows(rows["\u03c3\u00b2"][b], info["var_residual"], "sigma2")
        assert_shows(rows["ICC"][b], info["var_random"] / (info["var_random"] + info["var_residual"]), "ICC")
        assert decimals_of(rows["ICC"][b]) == 3 and rows["ICC"][b].startswith(".")
        assert_shows(rows["Marginal R\u00b2"][b], info["r2_marginal"], "R2m")
        assert_shows(rows["Conditional R\u00b2"][b], info["r2_conditional"], "R2c")
        # AIC and BIC of the ML refit (fit.json's aic_ml/bic_ml), not of the REML criterion
        assert_shows(rows["AIC"][b], info["aic_ml"], "AIC") and decimals_of(rows["AIC"][b]) == 1
        assert_shows(rows["BIC"][b], info["bic_ml"], "BIC") and decimals_of(rows["BIC"][b]) == 1
        assert rows["Observations"][b] == f"{info['nobs']:,}"
        assert rows["Observations"][ci] == rows["Observations"][p] == ""
    three = models[0].random
    assert_shows(rows["\u03c400 Client"][1], three["variance"][0], "tau00 client")
    assert_shows(rows["\u03c400 Therapist"][1], three["variance"][3], "tau00 therapist")
    assert_shows(rows["\u03c411 Client: Session"][1], three["variance"][1], "tau11")
    assert rows["\u03c101 Client"][1] == ".02"
    assert rows["N Client"][1] == "200" or rows["N Client"][1] == f"{models[0].info['ngroups']['client_id']:,}"
    # terms a model lacks, and every cell of the model that was not estimated, stay empty
    assert rows["Session"][4:7] == ["", "", ""] and rows["big"][1:4] == ["", "", ""]
    assert all(cells[7:] == ["", "", ""] for cells in table.body)
    assert rows["\u03c400 Therapist"][4] == "0.00"


def test_model_table_notes_name_singular_fits_reml_aic_and_unestimable_models():
    note = comparison_table().note
    assert "Singular fit (Model 2): the therapist_id intercept variance was estimated at 0" in note
    assert "All models were estimated by REML." in note
    assert ("AIC and BIC are from maximum-likelihood (ML) refits of the REML models (lme4's refitML), so they may "
            "compare models with different fixed effects fitted to the same observations.") in note
    assert "REML criterion" not in note and "No AIC or BIC" not in note
    assert "Model 3: Not estimable: model impossible: no data." in note
    assert ("Formulas (lme4 notation): Model 1, symptoms ~ session + a_cw + a_cm + (1 + session | client_id) + "
            "(1 | therapist_id); Model 2, post ~ early_alliance + (1 | therapist).") in note


def test_model_table_aic_bic_rows_are_lme4s_refitml_values():
    """Two sleepstudy models with different fixed effects: the AIC and BIC rows show lme4's
    AIC(refitML(m)) and BIC(refitML(m)) (tests/data/tables_r/ref_ml_refit.R), not the REML
    fit's; a model without ML values keeps those cells empty and the note says so."""
    reference = json.loads((Path(__file__).parent / "data" / "tables_r" / "ml_refit.json").read_text())
    random = pd.DataFrame({"group": ["Subject", "Residual"], "term1": ["(Intercept)", None], "term2": [None, None],
                           "variance": [612.1, 654.9], "sd": [24.74, 25.59], "corr": [np.nan, np.nan]})
    fixed = pd.DataFrame({"term": ["(Intercept)"], "estimate": [251.4], "se": [6.8], "p": [1e-20],
                          "ci_low": [237.0], "ci_high": [265.8]})
    columns = []
    for k, name in enumerate(["sleepstudy_days", "sleepstudy_intercept", "sleepstudy_weighted"], start=1):
        ref = reference[name]
        info = {"var_residual": 654.9, "var_random": 612.1, "ngroups": {"Subject": 18}, "nobs": ref["nobs"],
                "r2_marginal": 0.2, "r2_conditional": 0.7, "aic": ref["aic_reml"], "bic": ref["bic_reml"],
                "reml": True, "formula": ref["formula"], "singular": False}
        if k < 3:
            info.update(aic_ml=ref["aic_ml"], bic_ml=ref["bic_ml"], loglik_ml=ref["loglik_ml"])
        else:
            info.update(aic_ml=None, bic_ml=None, ml_refit="not available")
        columns.append(T.ModelColumn(k, name, info, fixed, random))
    table = T.model_comparison_table(columns, 3, "Sleep")
    rows = {cells[0]: cells for cells in table.body}
    for k, name in enumerate(["sleepstudy_days", "sleepstudy_intercept"]):
        ref = reference[name]
        assert rows["AIC"][1 + 3 * k] == T.format_number(ref["aic_ml"], 1) != T.format_number(ref["aic_reml"], 1)
        assert rows["BIC"][1 + 3 * k] == T.format_number(ref["bic_ml"], 1)
    assert rows["AIC"][7] == rows["BIC"][7] == ""
    assert rows["AIC"][1] == "1,763.9" and rows["BIC"][4] == "1,801.4"
    assert "No AIC or BIC for Model 3: no ML fit was available." in table.note


def test_model_table_in_every_format(tmp_path):
    table = comparison_table()
    paths = T.write_table(table, tmp_path / "models")
    n = len(table.columns)
    # Markdown: the spanners as the pipe header, the column labels as the first (bold) row
    md = [line for line in paths["md"].read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    md_rows = [[_md_plain(c.strip()) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in md]
    assert md_rows[0] == table.spanner_cells
    assert [c.strip("*") for c in md_rows[2]] == table.header
    section = len(table.body) - sum(1 for _ in T.random_part(reference_model_columns()[0].random,
                                                             reference_model_columns()[0].info, {}))
    assert md_rows[3 + section] == ["Random effects"] + [""] * (n - 1)
    assert md_rows[3:3 + section] + md_rows[4 + section:] == table.body
    # HTML: a column-group row with colspan 3, the section row across the table
    html_text = paths["html"].read_text(encoding="utf-8")
    assert html_text.count('colspan="3"') == 3 and f'<tr class="section"><td class="left" colspan="{n}">' in html_text
    assert "<script" not in html_text and "border-left" not in html_text
    rows = html_cells(html_text)[1]  # rows[0] of the parse: the group row
    assert rows[0] == table.header
    assert rows[1:1 + section] + rows[2 + section:] == table.body and rows[1 + section] == ["Random effects"]
    # LaTeX: \multicolumn groups with \cmidrule, landscape for a wide table
    tex = paths["tex"].read_text(encoding="utf-8")
    assert "\\multicolumn{3}{c}{Model 1: Three-level}" in tex and "\\cmidrule(lr){2-4}" in tex
    assert "\\begin{landscape}" in tex and "\\multicolumn{10}{@{}l}{\\textit{Random effects}}" in tex
    # Word: the group row, the header row, the section row merged across, the same cells
    document = docx.Document(str(paths["docx"]))
    grid = document.tables[0]
    cells = [[c.text.replace("\u00a0", " ") for c in row.cells] for row in grid.rows]
    assert cells[0][1] == cells[0][3] == "Model 1: Three-level" and cells[1] == table.header
    assert cells[2 + section] == ["Random effects"] * n
    assert cells[2:2 + section] + cells[3 + section:] == table.body


def test_docx_layout_fits_cells_keeps_rows_and_turns_wide_tables(tmp_path):
    narrow, wide = all_tables()[0], comparison_table()
    path = T.write_docx([narrow, wide, all_tables()[1]], tmp_path / "layout.docx")
    document = docx.Document(str(path))
    orientations = [(s.orientation, round(s.page_width.pt)) for s in document.sections]
    assert orientations == [(0, 612), (1, 792), (0, 612)]  # portrait, landscape for the wide table, portrait
    for table, grid in zip([narrow, wide], document.tables):
        layout = T.docx_layout(table)
        widths = [int(c.get(f"{{{W_NS['w']}}}w")) for c in grid._tbl.findall("w:tblGrid/w:gridCol", W_NS)]
        assert widths == [round(20 * w) for w in layout.widths]
        assert len(set(widths)) > 1, "the columns are fitted to their cells, not all of one width"
        page = (792 if layout.landscape else 612) - 2 * 72
        assert sum(layout.widths) <= page + 0.5
        for column, width in zip(table.columns, layout.widths):
            cells = [column.label] + [row[table.columns.index(column)] for row in table.body]
            longest = max(T.text_width(piece, layout.size) for text in cells
                          for piece in ([text] if column.alignment != "left" else text.split() or [""]))
            assert width >= longest, (column.key, width, longest)
        for i, row in enumerate(grid.rows):
            tr_pr = row._tr.trPr
            assert tr_pr.find("w:cantSplit", W_NS) is not None
            assert (tr_pr.find("w:tblHeader", W_NS) is not None) == (i < (2 if table.spanners else 1))
        assert grid._tbl.tblPr.find("w:tblLayout", W_NS).get(f"{{{W_NS['w']}}}type") == "autofit"
    assert T.docx_layout(wide).landscape and not T.docx_layout(narrow).landscape


def test_html_page_is_deterministic_and_self_contained():
    tables = [all_tables()[0], comparison_table()]
    page = T.html_page(tables, "Tables")
    assert page == T.html_page([all_tables()[0], comparison_table()], "Tables")
    assert "<script" not in page and "http" not in page.split("<body>")[0]
    assert page.count('<div class="apa-table"') == 2 and "<h1>Tables</h1>" in page


def test_bad_spanners_and_sections_are_refused():
    rows = pd.DataFrame({"a": [1.0], "b": [2.0]})
    columns = [Column("a", "A", "number"), Column("b", "B", "number")]
    with pytest.raises(ValueError, match=r"spanners cover \[1\] columns"):
        ApaTable(1, "T", columns, rows, spanners=[("x", 1)])
    with pytest.raises(ValueError, match=r"section\(s\) before row\(s\) \[3\]"):
        ApaTable(1, "T", columns, rows, sections={3: "S"})
    with pytest.raises(ValueError, match="no models"):
        T.model_comparison_table([], 1, "T")


def test_latent_mean_rows_and_note_of_the_therapist_client_model():
    """fit.json's latent_mean (alliance.models.latent_mean_summary) becomes three rows in the
    model's columns, in their own section, with N and the therapist df in the note."""
    row = {"estimate": -0.0648, "se": 0.1771, "df": 37.0, "p": 0.716, "ci_low": -0.4237, "ci_high": 0.2941}
    latent = {"between": row, "within": {**row, "estimate": -0.0166, "se": 0.0389, "df": math.inf},
              "contextual": {**row, "estimate": -0.0483}, "outcome": "post", "predictor": "early_alliance",
              "covariates": ["baseline"], "not_adjusted": ["arm"], "n_clients": 376, "n_therapists": 40,
              "warnings": ["latent-mean model: the between-therapist residual variance of post is estimated at 0"]}
    columns = reference_model_columns()
    columns[1] = T.ModelColumn(2, "Client level", {**columns[1].info, "latent_mean": latent}, columns[1].fixed,
                               columns[1].random)
    table = T.model_comparison_table(columns, 6, "Models", labels={"early_alliance": "Early alliance"})
    rows = {cells[0]: cells for cells in table.body}
    between = rows["Early alliance, between therapists (latent mean)"]
    assert between[4] == "\u22120.06" and between[5] == "[\u22120.42, 0.29]" and between[6] == ".716"
    assert between[1] == ""  # model 1 has no latent-mean fit
    assert rows["Early alliance, within therapists"][4] == "\u22120.017"
    assert "Early alliance, contextual effect (between \u2212 within)" in rows
    assert T.LATENT_MEAN_TITLE in table.sections.values()
    assert "N = 376 clients, 40 therapists" in table.note and "t with 37 df" in table.note
    assert "arm not included" in table.note and "residual variance of the outcome was estimated at 0" in table.note
    assert "Latent" not in (comparison_table().note or "") and T.LATENT_MEAN_TITLE not in comparison_table().sections.values()
