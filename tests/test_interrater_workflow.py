"""Tests for alliance.interrater_steps (the observer inter-rater step on files) and for
alliance.scoring.scores.combine_observer_ratings (how coders' ratings enter the analyses).

References used here (none is the code under test):
- Shrout & Fleiss (1979, Psychological Bulletin 86:420-428), Table 2 (6 targets x 4 judges)
  and the six ICCs they publish for it (Table 4): .17, .29, .71, .44, .62, .91;
- recovery of known variance components in a simulated incomplete coding design (2-4 of 4
  coders per session, as in the bundled example);
- hand-computed means of coders' scores for the combination rules.
The statistics themselves are tested in test_reliability.py, test_coding_agreement.py and
test_rater_effects.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance.interrater.steps import (
    check_interrater_settings,
    interrater_instruments,
    interrater_tables,
    reliability_subsample,
    write_interrater,
    write_interrater_figures,
)
from alliance.interrater.intraclass import ICC_COLUMNS
from alliance.scoring.scores import combine_observer_ratings

SETTINGS = {"enabled": True, "instruments": None, "levels": ["scale", "item"], "scales": None,
            "subsample": {"fraction": 1.0, "max_sessions": None}, "design": "auto", "ci_level": 0.95,
            "ci_method": "wald", "n_boot": 100, "item_agreement": True, "alpha_n_boot": 50, "min_shared": 5,
            "figure_scale": "total", "combine": "mean", "designated_rater": None}  # fmt: skip
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
SHROUT_FLEISS_ICC = {"ICC(1,1)": 0.17, "ICC(2,1)": 0.29, "ICC(3,1)": 0.71, "ICC(1,k)": 0.44, "ICC(2,k)": 0.62,
                     "ICC(3,k)": 0.91}  # fmt: skip


def observer_tables(ratings: list[tuple[str, int, str, dict[str, float]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """administrations and scores for (client, session, rater, {scale: score}) ratings; the two
    items are the total rounded and the total rounded plus one (capped at 7)."""
    administrations = pd.DataFrame([
        {"client": c, "therapist": "T-1", "session": s, "respondent": "observer", "rater": r,
         "wai_o_1": float(np.clip(round(v["total"]), 1, 7)), "wai_o_2": float(np.clip(round(v["total"]) + 1, 1, 7))}
        for c, s, r, v in ratings
    ])  # fmt: skip
    scores = pd.DataFrame([
        {"client": c, "therapist": "T-1", "session": s, "instrument": "wai_o", "respondent": "observer",
         "rater": r, "scale": scale, "score": value, "items_answered": 12, "prorated": False}
        for c, s, r, values in ratings for scale, value in values.items()
    ])  # fmt: skip
    return administrations, scores


def shrout_fleiss_tables():
    ratings = [(f"C-{i}", 1, f"R-{j}", {"total": float(v)})
               for i, row in enumerate(SHROUT_FLEISS) for j, v in enumerate(row)]
    return observer_tables(ratings)


def simulated_tables(n_sessions=300, seed=12, var_target=0.5, var_rater=0.06, var_resid=0.15):
    rng = np.random.default_rng(seed)
    coders = [f"R-{k}" for k in range(4)]
    leniency = dict(zip(coders, rng.normal(0, np.sqrt(var_rater), 4)))
    ratings = []
    for i in range(n_sessions):
        true = rng.normal(4.2, np.sqrt(var_target))
        for r in rng.choice(coders, size=rng.integers(2, 5), replace=False):
            ratings.append((f"C-{i}", 1 + i % 3, r, {"total": true + leniency[r] + rng.normal(0, np.sqrt(var_resid)),
                                                      "bond": true + rng.normal(0, 0.5)}))  # fmt: skip
    single = [(f"C-{n_sessions}", 1, "R-0", {"total": 4.0, "bond": 4.0})]  # coded once: not in the subsample
    return (*observer_tables(ratings + single), leniency)


def tables_for(administrations, scores, settings=SETTINGS, seed=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interrater_tables(administrations, scores, settings, ["wai_o"], seed)


def test_complete_design_reproduces_shrout_fleiss():
    administrations, scores = shrout_fleiss_tables()
    table = tables_for(administrations, scores, {**SETTINGS, "levels": ["scale"]})["icc"]
    out = table.set_index("type")
    for name, published in SHROUT_FLEISS_ICC.items():
        assert out.loc[name, "icc"] == pytest.approx(published, abs=0.005), name  # published to 2 dp
    assert (out["method"] == "anova").all() and (out["unit"] == "total").all()
    assert list(table.columns) == ["instrument", "level", "unit", *ICC_COLUMNS, "var_target",
                                               "var_rater", "var_residual", "sessions_coded",
                                               "sessions_multiple_coders", "sessions_in_subsample"]
    assert (out[["sessions_coded", "sessions_multiple_coders", "sessions_in_subsample"]] == 6).all().all()
    # On a complete design REML equals ANOVA: v_rater = (JMS - EMS) / n = (32.49 - 1.02) / 6.
    assert out["var_rater"].iloc[0] == pytest.approx((32.49 - 1.02) / 6, abs=0.005)


def test_incomplete_design_recovers_known_iccs_and_the_rater_variance():
    administrations, scores, leniency = simulated_tables()
    out = tables_for(administrations, scores)["icc"]
    total = out[(out["level"] == "scale") & (out["unit"] == "total")].set_index("mcgraw_wong")
    assert (total["method"] == "variance_components").all() and len(total) == 6
    var_target, var_resid = 0.5, 0.15
    realised_rater = np.var(list(leniency.values()), ddof=1)
    consistency = var_target / (var_target + var_resid)
    agreement = var_target / (var_target + realised_rater + var_resid)
    assert total.loc["ICC(C,1)", "ci_low"] < consistency < total.loc["ICC(C,1)", "ci_high"]
    assert total.loc["ICC(A,1)", "ci_low"] < agreement < total.loc["ICC(A,1)", "ci_high"]
    assert total["var_target"].iloc[0] == pytest.approx(var_target, rel=0.2)
    assert total["var_residual"].iloc[0] == pytest.approx(var_resid, rel=0.1)
    # 4 coders: the rater variance is known to a factor, not a decimal; compare with the
    # variance of the 4 leniencies actually drawn.
    assert total["var_rater"].iloc[0] == pytest.approx(realised_rater, rel=0.5)
    assert (total["sessions_coded"] == 301).all() and (total["sessions_in_subsample"] == 300).all()


def test_items_get_iccs_and_agreement_statistics_and_scales_get_leniency_and_pairs():
    administrations, scores, leniency = simulated_tables(n_sessions=120)
    tables = tables_for(administrations, scores)
    icc = tables["icc"]
    assert sorted(set(zip(icc["level"], icc["unit"]))) == [("item", "wai_o_1"), ("item", "wai_o_2"),
                                                          ("scale", "bond"), ("scale", "total")]
    agreement = tables["agreement"]
    assert set(agreement["unit"]) == {"wai_o_1", "wai_o_2"} and (agreement["level"] == "item").all()
    assert agreement["statistic"].str.contains("krippendorff").any()
    assert agreement["statistic"].str.contains("fleiss").any()
    lenient = tables["leniency"]
    total = lenient[lenient["unit"] == "total"].set_index("rater")
    assert list(total.index) == sorted(leniency)
    truth = pd.Series(leniency)
    assert np.corrcoef(total["leniency"], truth[total.index])[0, 1] > 0.9  # the coders' order is recovered
    pairs = tables["pairs"]
    assert len(pairs[pairs["unit"] == "total"]) == 6  # 4 coders, every pair shares >= 5 sessions


def test_no_client_or_therapist_ids_in_the_tables(tmp_path):
    administrations, scores, _ = simulated_tables(n_sessions=60)
    administrations.to_parquet(tmp_path / "a.parquet")
    scores.to_parquet(tmp_path / "s.parquet")
    key_file = Path(__file__).parents[1] / "config" / "example-keys" / "wai_o_simulated.yaml"
    config = {"interrater": SETTINGS, "study": {"seed": 1},
              "instruments": {"wai_o": {"key": "wai_o_s", "key_file": str(key_file), "table": "obs"}},
              "tables": {"obs": {"respondent": "observer"}}}
    outputs = {name: tmp_path / f"{name}.csv" for name in ("icc", "agreement", "leniency", "pairs")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_interrater(tmp_path / "a.parquet", tmp_path / "s.parquet", config, outputs)
    for path in outputs.values():
        text = path.read_text()
        assert "C-" not in text and "T-1" not in text, path.name
    assert "R-" not in outputs["icc"].read_text() and "R-" not in outputs["agreement"].read_text()
    assert pd.read_csv(outputs["icc"])["unit"].unique().tolist() == ["total", "bond", "wai_o_1", "wai_o_2"]
    write_interrater_figures(tmp_path / "a.parquet", tmp_path / "s.parquet", config, "wai_o",
                             tmp_path / "len.png", tmp_path / "pairs.png")
    assert (tmp_path / "len.png").stat().st_size > 1000 and (tmp_path / "pairs.png").stat().st_size > 1000


def test_subsample_draw_is_seeded_and_counted():
    administrations, _, _ = simulated_tables(n_sessions=100)
    all_, cover = reliability_subsample(administrations, "wai_o", {"fraction": 1.0}, seed=1)
    assert cover == {"sessions_coded": 101, "sessions_multiple_coders": 100, "sessions_in_subsample": 100}
    half, cover = reliability_subsample(administrations, "wai_o", {"fraction": 0.5}, seed=1)
    again, _ = reliability_subsample(administrations.sample(frac=1, random_state=2), "wai_o", {"fraction": 0.5},
                                     seed=1)
    other, _ = reliability_subsample(administrations, "wai_o", {"fraction": 0.5}, seed=2)
    assert cover["sessions_in_subsample"] == 50 and len(half) == 50
    pd.testing.assert_frame_equal(half, again)
    assert not half.equals(other)
    capped, cover = reliability_subsample(administrations, "wai_o", {"fraction": 1.0, "max_sessions": 30}, seed=1)
    assert len(capped) == 30 and cover["sessions_in_subsample"] == 30
    assert set(map(tuple, capped.to_numpy())) <= set(map(tuple, all_.to_numpy()))


def test_settings_and_input_errors():
    administrations, scores = shrout_fleiss_tables()
    config = {"instruments": {"wai_o": {"table": "obs"}, "wai_sr": {"table": "cf"}},
              "tables": {"obs": {"respondent": "observer"}, "cf": {"respondent": "client"}},
              "interrater": SETTINGS}
    assert interrater_instruments(config) == ["wai_o"]
    check_interrater_settings(config)
    with pytest.raises(ValueError, match="interrater/instruments/0: 'wai_x' is not an instrument entry"):
        check_interrater_settings({**config, "interrater": {**SETTINGS, "instruments": ["wai_x"]}})
    with pytest.raises(ValueError, match="'wai_sr' is read from table 'cf', which is not rated by observers"):
        check_interrater_settings({**config, "interrater": {**SETTINGS, "instruments": ["wai_sr"]}})
    with pytest.raises(ValueError, match="no instrument is rated by observers"):
        check_interrater_settings({**config, "tables": {"obs": {"respondent": "client"}, "cf": {}}})
    with pytest.raises(ValueError, match="combine: designated needs the coder's pseudonym"):
        check_interrater_settings({**config, "interrater": {**SETTINGS, "combine": "designated"}})
    with pytest.raises(ValueError, match=r"interrater/scales: \['agency'\] not among the 'wai_o' observer scales"):
        tables_for(administrations, scores, {**SETTINGS, "scales": ["agency"]})
    no_coder = administrations.copy()
    no_coder.loc[0, "rater"] = None
    with pytest.raises(ValueError, match="1 observer administration\\(s\\) of 'wai_o' have no coder"):
        tables_for(no_coder, scores)
    one_coder = administrations[administrations["rater"] == "R-0"]
    with pytest.raises(ValueError, match="0 session\\(s\\) coded by two or more coders"):
        tables_for(one_coder, scores)


# --------------------------------------------------------------------------------------------
# combine_observer_ratings
# --------------------------------------------------------------------------------------------
def _scores_for_combining() -> pd.DataFrame:
    rows = [
        ("C-1", 1, "observer", "R-a", 4.0, 12, False),
        ("C-1", 1, "observer", "R-b", 5.0, 11, True),
        ("C-1", 2, "observer", "R-b", 3.0, 12, False),   # only R-b coded session 2
        ("C-1", 3, "observer", "R-a", np.nan, 0, False),  # R-a's score missing
        ("C-1", 3, "observer", "R-b", 6.0, 12, False),
        ("C-1", 1, "client", None, 30.0, 12, False),
    ]
    frame = pd.DataFrame(rows, columns=["client", "session", "respondent", "rater", "score", "items_answered",
                                        "prorated"])
    return frame.assign(therapist="T-1", instrument="wai", scale="total")


def test_combine_by_mean_of_coders():
    out = combine_observer_ratings(_scores_for_combining(), "mean")
    observer = out[out["respondent"] == "observer"].set_index("session")
    assert observer["score"].tolist() == [4.5, 3.0, 6.0]
    assert observer["n_raters"].tolist() == [2, 1, 1]
    assert observer["items_answered"].tolist() == [11, 12, 12]
    assert observer["prorated"].tolist() == [True, False, False]
    assert observer["rater"].isna().all()
    client = out[out["respondent"] == "client"]
    assert client["score"].tolist() == [30.0] and client["n_raters"].tolist() == [1]


def test_combine_by_designated_coder_falls_back_to_the_others():
    out = combine_observer_ratings(_scores_for_combining(), "designated", "R-a")
    observer = out[out["respondent"] == "observer"].set_index("session")
    assert observer["score"].tolist() == [4.0, 3.0, 6.0]  # R-a where R-a has a score, else R-b
    assert observer["rater"].tolist()[0] == "R-a" and pd.isna(observer["rater"].tolist()[1])
    with pytest.raises(ValueError, match="designated_rater: 'R-z' is not a coder.*\\['R-a', 'R-b'\\]"):
        combine_observer_ratings(_scores_for_combining(), "designated", "R-z")
    with pytest.raises(ValueError, match="interrater/combine must be one of"):
        combine_observer_ratings(_scores_for_combining(), "median")


def test_an_item_without_variation_gets_nan_rows_and_the_rest_goes_on(tmp_path):
    administrations, scores, _ = simulated_tables(n_sessions=60)
    administrations["wai_o_2"] = 4.0  # every coder gave every session the same code
    tables = tables_for(administrations, scores)
    item = tables["icc"][tables["icc"]["unit"] == "wai_o_2"]
    assert len(item) == 6 and item["icc"].isna().all()
    assert item["ci_method"].str.startswith("not estimable (all").all()
    assert set(tables["agreement"]["unit"]) == {"wai_o_1"}
    assert tables["icc"].loc[tables["icc"]["unit"] == "total", "icc"].notna().all()


def test_pair_figure_says_so_when_no_pair_shares_enough_sessions(tmp_path):
    administrations, scores, _ = simulated_tables(n_sessions=30)
    administrations.to_parquet(tmp_path / "a.parquet")
    scores.to_parquet(tmp_path / "s.parquet")
    key_file = Path(__file__).parents[1] / "config" / "example-keys" / "wai_o_simulated.yaml"
    config = {"interrater": {**SETTINGS, "min_shared": 1000}, "study": {"seed": 1},
              "instruments": {"wai_o": {"key": "wai_o_s", "key_file": str(key_file), "table": "obs"}},
              "tables": {"obs": {"respondent": "observer"}}}
    write_interrater_figures(tmp_path / "a.parquet", tmp_path / "s.parquet", config, "wai_o",
                             tmp_path / "len.png", tmp_path / "pairs.png")
    assert (tmp_path / "pairs.png").stat().st_size > 1000


def test_nominal_codes_get_nominal_alpha_and_unweighted_kappas():
    administrations, scores, _ = simulated_tables(n_sessions=80)
    administrations["wai_o_2"] = (administrations["wai_o_2"] >= 5).astype(float)  # a 0/1 marker
    settings = {**SETTINGS, "code_levels": {"wai_o": "nominal"}}
    agreement = tables_for(administrations, scores, settings)["agreement"]
    marker = agreement[agreement["unit"] == "wai_o_2"].set_index("statistic")
    assert marker.loc["krippendorff_alpha", "metric"] == "nominal"
    assert marker.loc["fleiss_kappa", "weights"] == marker.loc["cohen_kappa_mean_pairs", "weights"] == "none"
    assert marker.loc["fleiss_kappa", "n_categories"] == 2
    config = {"instruments": {"wai_o": {"table": "obs"}}, "tables": {"obs": {"respondent": "observer"}},
              "interrater": {**SETTINGS, "code_levels": {"wai_x": "nominal"}}}
    with pytest.raises(ValueError, match="interrater/code_levels: 'wai_x' is not among the analysed"):
        check_interrater_settings(config)
