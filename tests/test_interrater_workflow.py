"""Tests for alliance.interrater_steps: the observer inter-rater reliability step on files.

References used here (none is the code under test):
- Shrout & Fleiss (1979, Psychological Bulletin 86:420-428), Table 2 (6 targets x 4 judges)
  and the six ICCs they publish for it (Table 4): .17, .29, .71, .44, .62, .91;
- recovery of the ICCs implied by known variance components in a simulated incomplete coding
  design (2-4 of 4 coders per session, as in the bundled example).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.interrater_steps import check_interrater_settings, interrater_table, write_interrater_icc

SETTINGS = {"enabled": True, "instrument": "wai_o", "scales": None, "design": "auto", "ci_level": 0.95,
            "n_boot": 100}  # fmt: skip
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
SHROUT_FLEISS_ICC = {"ICC1": 0.17, "ICC2": 0.29, "ICC3": 0.71, "ICC1k": 0.44, "ICC2k": 0.62, "ICC3k": 0.91}


def observer_tables(ratings: list[tuple[str, int, str, dict[str, float]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """administrations and scores tables for (client, session, rater, {scale: score}) ratings."""
    administrations = pd.DataFrame([
        {"client": c, "therapist": "T-1", "session": s, "respondent": "observer", "rater": r, "wai_o_1": 4.0}
        for c, s, r, _ in ratings
    ])  # fmt: skip
    scores = pd.DataFrame([
        {"client": c, "therapist": "T-1", "session": s, "instrument": "wai_o", "respondent": "observer",
         "rater": r, "scale": scale, "score": value, "items_answered": 12, "prorated": False}
        for c, s, r, values in ratings for scale, value in values.items()
    ])  # fmt: skip
    return administrations, scores


def test_complete_design_reproduces_shrout_fleiss():
    ratings = [(f"C-{i}", 1, f"R-{j}", {"total": float(v)})
               for i, row in enumerate(SHROUT_FLEISS) for j, v in enumerate(row)]
    administrations, scores = observer_tables(ratings)
    table = interrater_table(administrations, scores, SETTINGS, seed=1).set_index("type")
    for name, published in SHROUT_FLEISS_ICC.items():
        assert table.loc[name, "estimate"] == pytest.approx(published, abs=0.005), name  # published to 2 dp
    assert (table["method"] == "ANOVA").all() and (table["scale"] == "total").all()
    assert table["sessions_coded"].iloc[0] == 6 and table["sessions_multiple_coders"].iloc[0] == 6


def test_incomplete_design_recovers_known_iccs():
    rng = np.random.default_rng(12)
    var_target, var_rater, var_resid = 0.5, 0.06, 0.15
    coders = [f"R-{k}" for k in range(4)]
    leniency = dict(zip(coders, rng.normal(0, np.sqrt(var_rater), 4)))
    ratings = []
    for i in range(300):
        true = rng.normal(4.2, np.sqrt(var_target))
        for r in rng.choice(coders, size=rng.integers(2, 5), replace=False):
            ratings.append((f"C-{i}", 1 + i % 3, r, {"total": true + leniency[r] + rng.normal(0, np.sqrt(var_resid)),
                                                      "bond": true + rng.normal(0, 0.5)}))  # fmt: skip
    administrations, scores = observer_tables(ratings)
    table = interrater_table(administrations, scores, {**SETTINGS, "scales": ["total"]}, seed=3).set_index("type")
    assert (table["method"] == "REML").all() and len(table) == 6
    consistency = var_target / (var_target + var_resid)
    agreement_realised = var_target / (var_target + np.var(list(leniency.values()), ddof=1) + var_resid)
    assert table.loc["ICC3", "estimate"] == pytest.approx(consistency, abs=0.06)
    assert table.loc["ICC3", "ci_lower"] < consistency < table.loc["ICC3", "ci_upper"]
    assert table.loc["ICC2", "ci_lower"] < agreement_realised < table.loc["ICC2", "ci_upper"]


def test_written_table_has_no_ids_and_settings_are_checked(tmp_path):
    ratings = [(f"C-{i}", 1, f"R-{j}", {"total": float(v), "bond": float(v) / 2 + j % 2})
               for i, row in enumerate(SHROUT_FLEISS) for j, v in enumerate(row)]
    administrations, scores = observer_tables(ratings)
    administrations.to_parquet(tmp_path / "a.parquet")
    scores.to_parquet(tmp_path / "s.parquet")
    write_interrater_icc(tmp_path / "a.parquet", tmp_path / "s.parquet", SETTINGS, 1, tmp_path / "icc.csv")
    text = (tmp_path / "icc.csv").read_text()
    assert "R-" not in text and "C-" not in text
    assert pd.read_csv(tmp_path / "icc.csv")["scale"].unique().tolist() == ["total", "bond"]

    check_interrater_settings({"instruments": {"wai_o": {}}, "interrater": SETTINGS})
    with pytest.raises(ValueError, match="interrater/instrument.*'wai_o'.*known: wai_sr.*enabled: false"):
        check_interrater_settings({"instruments": {"wai_sr": {}}, "interrater": SETTINGS})
    with pytest.raises(ValueError, match="scale"):
        interrater_table(administrations, scores, {**SETTINGS, "scales": ["agency"]}, seed=1)
