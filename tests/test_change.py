"""Reliable and clinically significant change.

References used here:
- The Dyadic Adjustment Scale (DAS) pre/post scores of the 30 couples of Jacobson & Truax
  (1991, Table 2), as transcribed in AWKruijt/JT-RCI (tests/data/jacobson_truax_1991/
  das_pre_post.csv). The reliability and norms that the paper used were NOT verified (the
  paper's text was not available): the reference values in jtrci_reference.json come from
  running the independent R implementation JTRCI() (AWKruijt/JT-RCI, R/JT-RCI.R at commit
  0ddc061) on these data with reliability .84 (that package's README example) and, for
  criterion c, a functional norm of M 114.8, SD 17.8 (commonly quoted for the DAS; unverified,
  used only to exercise the formula). Script: ref_jtrci.R beside the data. RCI and cut-offs
  are compared to 1e-10.
- The worked example quoted as "Example from Jacobson et al. (1991)" in the tests of the R
  package clinicalsignificance (test-calc_cutoff.R): dysfunctional M 40, SD 7.5; functional
  M 60, SD 7.5 -> c = 50, a = 55 and b = 45 where higher is better.
- Simulation: without true change, |RCI| > 1.96 must occur in 5% of clients (S_diff includes
  the sqrt(2) of Christensen & Mendoza, 1986; without it the rate would be 16.6%).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from alliance.scoring.change import (
    change_table,
    classify_change,
    clinical_cutoffs,
    first_and_last,
    nhs_talking_therapies,
    reliable_change_index,
    reliable_change_threshold,
    standard_error_of_difference,
)
from alliance.scoring.instruments import load_key

DATA = Path(__file__).parent / "data" / "jacobson_truax_1991"


@pytest.fixture(scope="module")
def das():
    return pd.read_csv(DATA / "das_pre_post.csv")


@pytest.fixture(scope="module")
def jtrci():
    return json.loads((DATA / "jtrci_reference.json").read_text())


def test_rci_reproduces_jtrci_on_the_das_data(das, jtrci):
    sd_pre = das["pre"].std(ddof=1)
    assert sd_pre == pytest.approx(jtrci["pre_sd"], abs=1e-12)
    assert standard_error_of_difference(sd_pre, 0.84) == pytest.approx(jtrci["Sdiff"], abs=1e-12)
    np.testing.assert_allclose(reliable_change_index(das["pre"], das["post"], sd_pre, 0.84), jtrci["rci"], atol=1e-12)


def test_cutoffs_reproduce_jtrci_criteria_a_and_c(das, jtrci):
    m, s = das["pre"].mean(), das["pre"].std(ddof=1)
    cut = clinical_cutoffs(m, s, 114.8, 17.8, direction="higher_is_better")
    assert cut["a"] == pytest.approx(jtrci["criterion_a"], abs=1e-10)
    assert cut["c"] == pytest.approx(jtrci["criterion_c"], abs=1e-10)


def _expected_from_jtrci(label: str, pre: float, cutoff: float) -> str:
    # JTRCI labels 'recovered' anyone ending beyond the cut-off with reliable gain; we also ask
    # that the client started in the clinical range (higher is better: pre below the cut-off).
    mapping = {"improved": "reliably improved", "unchanged": "unchanged", "non reliably recovered": "unchanged",
               "deteriorated": "reliably deteriorated"}
    if label == "recovered":
        return "recovered" if pre <= cutoff else "reliably improved"
    return mapping[label]


@pytest.mark.parametrize("criterion", ["a", "c"])
def test_classification_reproduces_jtrci(das, jtrci, criterion):
    cutoff = jtrci[f"criterion_{criterion}"]
    got = classify_change(das["pre"], das["post"], direction="higher_is_better",
                          sd_pre=das["pre"].std(ddof=1), reliability=0.84, cutoff=cutoff)
    expected = [_expected_from_jtrci(label, pre, cutoff) for label, pre in zip(jtrci[f"class_{criterion}"], das["pre"])]
    assert list(got) == expected
    if criterion == "a":
        counts = pd.Series(got).value_counts().to_dict()
        assert counts == {"recovered": 10, "reliably improved": 8, "unchanged": 11, "reliably deteriorated": 1}


def test_change_table_end_to_end_on_the_das(tmp_path, das, jtrci):
    key_doc = {
        "name": "das", "full_name": "Dyadic Adjustment Scale (test key)", "citations": ["Spanier (1976), test only."],
        "respondents": ["client"], "n_items": 1, "response_min": 0, "response_max": 151, "reverse_items": [],
        "direction": "higher_is_better", "scales": {"total": {"items": [1]}}, "total_scale": "total",
        "missing_rule": {"text": "none", "status": "project_default", "source": "test"},
        "norms": {"total": {"functional": {"mean": 114.8, "sd": 17.8, "status": "secondary",
                                           "source": "unverified value quoted for Jacobson & Truax (1991)"}}},
        "licence_required": False, "key_incomplete": None, "licence": {"notes": "test"}}
    path = tmp_path / "das.yaml"
    path.write_text(yaml.safe_dump(key_doc), encoding="utf-8")
    key = load_key(path)
    long = pd.concat([pd.DataFrame({"client": das["id"].astype(str), "session": 1, "score": das["pre"]}),
                      pd.DataFrame({"client": das["id"].astype(str), "session": 2, "score": das["post"]})])
    scores = long.assign(therapist="T", instrument="das", respondent="client", rater=None, scale="total")
    table = change_table(scores, "das", "total", "sample", key=key, criterion="c", reliability=0.84)
    table = table.set_index(table["client"].astype(int)).sort_index()
    np.testing.assert_allclose(table["rci"], jtrci["rci"], atol=1e-12)
    params = table.attrs["change_parameters"]
    assert params["cutoff"] == pytest.approx(jtrci["criterion_c"], abs=1e-10)
    assert params["s_diff"] == pytest.approx(jtrci["Sdiff"], abs=1e-12)
    expected = [_expected_from_jtrci(label, pre, params["cutoff"]) for label, pre in zip(jtrci["class_c"], das["pre"])]
    assert table["classification"].tolist() == expected
    with pytest.raises(ValueError, match="no reliability for das scale 'total'"):
        change_table(scores, "das", norms_source="sample", key=key)


def test_cutoffs_reproduce_the_published_worked_example():
    cut = clinical_cutoffs(40, 7.5, 60, 7.5, direction="higher_is_better")
    assert cut == {"a": 55.0, "b": 45.0, "c": 50.0}
    worse = clinical_cutoffs(60, 10, 20, 5, direction="higher_is_worse")
    assert worse["a"] == 40 and worse["b"] == 30
    # c lies equally many SDs from both means: (60 - c) / 10 == (c - 20) / 5
    assert (60 - worse["c"]) / 10 == pytest.approx((worse["c"] - 20) / 5, abs=1e-12)
    assert clinical_cutoffs(60, 10) == {"a": 40.0, "b": None, "c": None}


def test_rci_has_a_five_percent_false_positive_rate_without_true_change():
    rng = np.random.default_rng(2024)
    n, sd, reliability = 400_000, 8.0, 0.8
    true = 50 + rng.standard_normal(n) * sd * np.sqrt(reliability)
    error_sd = sd * np.sqrt(1 - reliability)
    pre, post = true + rng.standard_normal(n) * error_sd, true + rng.standard_normal(n) * error_sd
    rate = np.mean(np.abs(reliable_change_index(pre, post, sd, reliability)) > 1.96)
    assert rate == pytest.approx(0.05, abs=0.003)   # binomial SE 0.00034
    assert reliable_change_threshold(sd, reliability) == pytest.approx(1.959964 * np.sqrt(2) * sd * np.sqrt(0.2), rel=1e-6)


def test_classify_change_with_a_published_threshold_in_points():
    pre = np.array([20, 20, 20, 9, 10, 14, np.nan])
    post = np.array([8, 13, 17, 2, 17, 9, 5])
    got = classify_change(pre, post, direction="higher_is_worse", reliable_change=6, cutoff=10, cutoff_rule=">=")
    assert list(got) == ["recovered", "reliably improved", "unchanged", "reliably improved",
                         "reliably deteriorated", "unchanged", None]


def test_classify_change_needs_a_criterion_and_checks_inputs():
    with pytest.raises(ValueError, match="give reliable_change"):
        classify_change([1], [2], direction="higher_is_worse")
    with pytest.raises(ValueError, match="direction must be one of"):
        classify_change([1], [2], direction="up", reliable_change=1)
    with pytest.raises(ValueError, match="reliability must lie strictly between 0 and 1"):
        reliable_change_index([1], [2], 5, 1.0)
    with pytest.raises(ValueError, match="sd_pre must be a positive number"):
        reliable_change_index([1], [2], 0, 0.8)


def test_nhs_talking_therapies_definitions():
    # client: (PHQ pre, post, GAD pre, post)
    cases = {
        "reliable recovery": (15, 8, 10, 6),
        "recovered, not reliably": (11, 8, 8, 7),
        "improved, still a case": (20, 12, 12, 12),
        "mixed: better and worse": (20, 10, 5, 9),
        "deteriorated": (5, 11, 3, 3),
        "below caseness throughout": (8, 2, 7, 1),
    }
    phq_pre, phq_post, gad_pre, gad_post = (np.array(v, dtype=float) for v in zip(*cases.values()))
    out = nhs_talking_therapies(phq_pre, phq_post, gad_pre, gad_post).set_axis(list(cases))
    assert out["caseness_pre"].tolist() == [True, True, True, True, False, False]
    assert out["recovery"].tolist() == [True, True, False, False, False, False]
    assert out["reliable_improvement"].tolist() == [True, False, True, False, False, True]
    assert out["reliable_deterioration"].tolist() == [False, False, False, False, True, False]
    assert out["reliable_recovery"].tolist() == [True, False, False, False, False, False]


def _scores(instrument: str, rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["client", "session", "score"]).assign(
        therapist="T", instrument=instrument, respondent="client", rater=None, scale="total")


def test_change_table_with_published_oq45_norms():
    scores = _scores("oq", [("a", 1, 90), ("a", 5, 70), ("a", 9, 60),     # drop 30: reliable
                            ("b", 1, 80), ("b", 6, 70),                   # drop 10: not reliable
                            ("c", 2, 60), ("c", 3, 75),                   # rise 15: deteriorated
                            ("d", 4, 50)])                                # one administration: left out
    table = change_table(scores, "oq", key=load_key("oq45")).set_index("client")
    assert list(table.index) == ["a", "b", "c"]
    assert table.loc["a", ["pre_session", "post_session", "pre", "post"]].tolist() == [1, 9, 90, 60]
    # a: 90 -> 60 crosses the shipped total cut-off (64 or more clinical; Lambert et al. 63/64)
    assert table["classification"].tolist() == ["recovered", "unchanged", "reliably deteriorated"]
    assert table["pre_clinical"].tolist() == [True, True, False]
    assert table["post_clinical"].tolist() == [False, True, True]
    params = table.attrs["change_parameters"]
    assert params["reliable_change"] == 14 and params["cutoff"] == 64 and params["cutoff_rule"] == ">="
    assert params["criterion"] == "published" and "Lambert" in params["cutoff_source"]


def test_oq45_cutoff_boundary_63_is_functional_64_clinical():
    scores = _scores("oq", [("a", 1, 80), ("a", 2, 63), ("b", 1, 80), ("b", 2, 64)])
    table = change_table(scores, "oq", key=load_key("oq45")).set_index("client")
    assert table["classification"].tolist() == ["recovered", "reliably improved"]


def test_programme_pairs_sessions_where_both_measures_were_given():
    from alliance.scoring.change import programme_table

    # Client a: PHQ-9 at 1, 2, 5; GAD-7 at 2, 4, 5 -> paired sessions 2 and 5 (each measure's
    # own first/last would take the PHQ-9 from session 1). Client b: only session 3 in common.
    phq = _scores("phq", [("a", 1, 20), ("a", 2, 16), ("a", 5, 8), ("b", 1, 12), ("b", 3, 12)])
    gad = _scores("gad", [("a", 2, 12), ("a", 4, 3), ("a", 5, 7), ("b", 3, 9), ("b", 4, 2)])
    keys = {"phq": load_key("phq9"), "gad": load_key("gad7")}
    out = programme_table(pd.concat([phq, gad], ignore_index=True), keys)
    assert out["client"].tolist() == ["a"]
    row = out.iloc[0]
    assert [row["pre_session"], row["post_session"]] == [2, 5]
    assert [row["phq9_pre"], row["phq9_post"], row["gad7_pre"], row["gad7_post"]] == [16, 8, 12, 7]
    # by hand: caseness before (16 >= 10), not after (8 < 10, 7 < 8): recovery; PHQ drop 8 >= 6,
    # GAD drop 5 >= 4, no reliable rise: reliable improvement and reliable recovery
    assert row[["caseness_pre", "caseness_post", "recovery", "reliable_improvement",
                "reliable_deterioration", "reliable_recovery"]].tolist() == [True, False, True, True, False, True]


def test_change_table_with_published_core_om_norms():
    scores = _scores("core", [("a", 1, 18.0), ("a", 8, 8.0), ("b", 1, 18.0), ("b", 8, 12.0), ("c", 1, 12.0), ("c", 2, 16.0)])
    table = change_table(scores, "core", key=load_key("core_om")).set_index("client")
    # cut-off 10 (>= is clinical), reliable change 5 points
    assert table["classification"].tolist() == ["recovered", "reliably improved", "unchanged"]
    assert table["pre_clinical"].tolist() == [True, True, True]
    assert table["post_clinical"].tolist() == [False, True, True]


def test_first_and_last_averages_raters_and_needs_two_sessions():
    scores = _scores("wai_o", [("a", 1, 4.0), ("a", 1, 6.0), ("a", 3, 7.0), ("b", 2, 5.0)]).assign(respondent="observer")
    out = first_and_last(scores, "wai_o")
    assert out[["client", "pre", "post"]].values.tolist() == [["a", 5.0, 7.0]]


def test_workflow_steps_write_scores_reliability_change_and_plot(tmp_path):
    from alliance.scoring.steps import change_report
    from alliance.scoring.figures import jacobson_plot
    from alliance.scoring.steps import write_internal_consistency
    from alliance.scoring.steps import score_study

    rng = np.random.default_rng(4)
    n_clients, sessions = 40, [1, 2, 3]
    rows = []
    for c in range(n_clients):
        severity = rng.integers(1, 4)
        for s in sessions:
            level = max(severity - (s - 1) * rng.integers(0, 2), 0)
            rows.append({"client": f"C-{c:012x}", "therapist": f"T-{c % 4:012x}", "session": s, "respondent": "client",
                         **{f"phq_{j}": min(3, max(0, level + rng.integers(-1, 2))) for j in range(1, 10)},
                         **{f"gad_{j}": min(3, max(0, level + rng.integers(-1, 2))) for j in range(1, 8)}})
    admin = pd.DataFrame(rows)
    admin[[c for c in admin.columns if c.startswith(("phq_", "gad_"))]] = admin.filter(regex="^(phq|gad)_").astype(float)
    admin.to_parquet(tmp_path / "administrations.parquet")
    config = {"instruments": {"phq": {"key": "phq9"}, "gad": {"key": "gad7"}}}
    scores = score_study(tmp_path / "administrations.parquet", config, tmp_path / "scores.parquet", tmp_path / "scores.csv")
    assert len(scores) == n_clients * len(sessions) * 2
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "scores.csv")[["score"]], scores[["score"]], check_dtype=False)
    table = write_internal_consistency(tmp_path / "administrations.parquet", config, tmp_path / "ic.csv", sessions=(1,))
    assert table["session"].isna().sum() == 2 and table["session"].dropna().tolist() == [1, 1]
    change = change_report(tmp_path / "scores.parquet", config, tmp_path / "change.csv", tmp_path / "change.json",
                           tmp_path / "programme.csv")
    assert set(change["instrument"]) == {"phq", "gad"} and len(change) == 2 * n_clients
    params = json.loads((tmp_path / "change.json").read_text())
    assert params["phq"]["reliable_change"] == 6 and params["gad"]["cutoff"] == 8
    programme = pd.read_csv(tmp_path / "programme.csv")
    assert len(programme) == n_clients
    phq = change[change["instrument"] == "phq"].set_index("client")
    merged = programme.set_index("client").join(phq[["pre", "post"]])
    np.testing.assert_array_equal(merged["phq9_pre"], merged["pre"])
    jacobson_plot(tmp_path / "change.csv", tmp_path / "change.json", tmp_path / "jacobson.png")
    assert (tmp_path / "jacobson.png").stat().st_size > 10_000
