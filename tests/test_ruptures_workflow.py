"""Tests for alliance.rupture_steps: the rupture–repair workflow step on files.

References used here (none is the code under test):
- a hand-worked example with explicit numbers (four clients, a fixed SD of 1 so that the
  thresholds are 1 and 2 score points; every episode worked out in the comments below);
- statsmodels MixedLM (REML, random intercept) on the merged client-level data, and the
  parameters a simulated outcome was generated with (parameter recovery).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from PIL import Image

from alliance.ruptures.steps import (
    COUNTS_COLUMNS,
    EFFECT_COLUMNS,
    check_rupture_settings,
    injected_episodes,
    rupture_detection,
    rupture_outcome_tables,
    rupture_series,
    rupture_tables,
    threshold_label,
    trajectory_figure,
    trajectory_figure_paths,
    write_rupture_outcome,
    write_rupture_outputs,
)
from alliance.ruptures.episodes import EPISODE_COLUMNS

SETTINGS = {
    "enabled": True, "instrument": "wai_sr", "respondent": "client", "scale": "total",
    "thresholds": [1, 2], "repair_window": 3, "sd_basis": 1.0, "max_gap": None,
    "pre_sessions": 1, "repair_tolerance": 0.0, "below_median": False,
    "example_clients": 4, "outcome": {"instrument": "phq9", "covariates": []},
    "detection": {"truth": None, "thresholds": [1, 2], "tolerance": 1},
}  # fmt: skip

# SD fixed at 1: c = 1 needs a drop of >= 1 point, c = 2 a drop of >= 2 (any drop: the
# below-median condition is off here; tests/test_ruptures.py tests it); repair window 3;
# pre-level = the one score before the drop, no band (a repair is a return to that score).
# A: 5 3 5 5      s1->s2 drops 2 (c = 1 and 2); s3 = 5 >= 5 -> repaired after 1 session.
# B: 5 4 4 4      s1->s2 drops 1 (c = 1 only); 4 < 5 to the end -> unrepaired; last session 4
#                 < 2 + 3, so the window ran past the data -> censored.
# C: 4 4          no drop: no episode (counts of zero at both thresholds).
# D: 6 6.5 4 4.2 4.1 4.3 4.0 (and a missing score at session 8)
#                 s2->s3 drops 2.5 (both thresholds), never back to 6.5 -> unrepaired; last
#                 observed session 7 >= 3 + 3 -> not censored. Later drops are < 1.
HAND = {
    "A": [5, 3, 5, 5],
    "B": [5, 4, 4, 4],
    "C": [4, 4],
    "D": [6, 6.5, 4, 4.2, 4.1, 4.3, 4.0, np.nan],
}
# (threshold, client, rupture_session, repaired, censored)
HAND_EPISODES = [
    (1.0, "A", 2, True, False), (1.0, "B", 2, False, True), (1.0, "D", 3, False, False),
    (2.0, "A", 2, True, False), (2.0, "D", 3, False, False),
]  # fmt: skip
HAND_SESSIONS = {"A": 4, "B": 4, "C": 2, "D": 7}


def long_scores(series: dict[str, list[float]], instrument="wai_sr", scale="total") -> pd.DataFrame:
    rows = []
    for client, values in series.items():
        for session, value in enumerate(values, start=1):
            for inst, sc, v in ((instrument, scale, value), (instrument, "bond", 1.0), ("phq9", "total", 9.0)):
                rows.append({"client": client, "therapist": "T-1", "session": session, "instrument": inst,
                             "respondent": "client", "rater": None, "scale": sc, "score": v,
                             "items_answered": 12, "prorated": False})  # fmt: skip
    return pd.DataFrame(rows)


def test_threshold_labels_and_figure_paths():
    assert [threshold_label(c) for c in (1, 2.0, 1.5, 0.25)] == ["1", "2", "1.5", "0.25"]
    assert trajectory_figure_paths({"thresholds": [1, 2.5]}) == [
        ("results/ruptures/trajectories_c1.png", "1 SD"),
        ("results/ruptures/trajectories_c2.5.png", "2.5 SD"),
    ]


def test_series_selects_instrument_scale_and_drops_missing():
    series = rupture_series(long_scores(HAND), SETTINGS)
    assert list(series.columns) == ["client", "session", "score"]
    assert len(series) == sum(HAND_SESSIONS.values())
    assert series.loc[series["client"] == "A", "score"].tolist() == HAND["A"]


def test_series_names_what_is_missing():
    with pytest.raises(ValueError, match="ruptures/instrument.*'wai_x'.*present"):
        rupture_series(long_scores(HAND), {**SETTINGS, "instrument": "wai_x"})
    with pytest.raises(ValueError, match=r"no scale\(s\) \['goal'\]"):
        rupture_series(long_scores(HAND), {**SETTINGS, "scale": "goal"})


def test_hand_worked_tables_at_both_thresholds():
    tables = rupture_tables(rupture_series(long_scores(HAND), SETTINGS), SETTINGS)
    episodes = tables["episodes"]
    assert list(episodes.columns) == EPISODE_COLUMNS
    got = list(episodes[["threshold_sd", "client", "rupture_session", "repaired", "censored"]]
               .itertuples(index=False, name=None))  # fmt: skip
    assert sorted(got) == sorted(HAND_EPISODES)

    counts = tables["counts"]
    assert list(counts.columns) == COUNTS_COLUMNS
    assert len(counts) == 2 * len(HAND)  # every client at every threshold, zeros included
    for c in (1.0, 2.0):
        one = counts[counts["threshold_sd"] == c].set_index("client")
        expected = [e for e in HAND_EPISODES if e[0] == c]
        for client in HAND:
            mine = [e for e in expected if e[1] == client]
            assert one.loc[client, "n_ruptures"] == len(mine)
            assert one.loc[client, "n_repaired"] == sum(e[3] for e in mine)
            assert one.loc[client, "n_unrepaired"] == sum(not e[3] and not e[4] for e in mine)
            assert one.loc[client, "n_censored"] == sum(e[4] for e in mine)
            assert one.loc[client, "n_sessions"] == HAND_SESSIONS[client]

    summary = tables["summary"]
    assert summary["threshold_sd"].tolist() == [1.0, 2.0]
    assert summary["n_episodes"].tolist() == [3, 2]
    assert summary["threshold"].tolist() == [1.0, 2.0]
    assert (summary[["instrument", "respondent", "scale"]].iloc[0] == ["wai_sr", "client", "total"]).all()


def test_config_cross_references():
    config = {"instruments": {"wai_sr": {}, "phq9": {}}, "ruptures": copy.deepcopy(SETTINGS)}
    check_rupture_settings(config)
    config["ruptures"]["outcome"]["instrument"] = "oq45"
    with pytest.raises(ValueError, match="ruptures/outcome/instrument.*'oq45'.*known: wai_sr, phq9"):
        check_rupture_settings(config)
    config = {"instruments": {"wai_sr": {}, "phq9": {}}, "ruptures": {**SETTINGS, "thresholds": [1, 1.0]}}
    with pytest.raises(ValueError, match="thresholds must differ"):
        check_rupture_settings(config)
    config = {"instruments": {"phq9": {}}, "ruptures": SETTINGS}
    with pytest.raises(ValueError, match="enabled: false"):
        check_rupture_settings(config)


# ----------------------------------------------------------------------------------------
# Outcome model
# ----------------------------------------------------------------------------------------
TRUE = {"n_repaired": -0.5, "n_unrepaired": 2.0, "baseline": -0.4}


def simulated_client_tables(seed: int, n_clients: int = 400, n_therapists: int = 40):
    """Counts, change and clients tables of a study whose outcome follows TRUE."""
    rng = np.random.default_rng(seed)
    clients = [f"C-{i:04d}" for i in range(n_clients)]
    therapist = np.array([f"T-{i % n_therapists:03d}" for i in range(n_clients)])
    n_sessions = rng.integers(6, 20, n_clients)
    counts = []
    for c, scale in ((1.0, 3.0), (2.0, 0.6)):
        rep = rng.poisson(scale * n_sessions / 12)
        unrep = rng.poisson(scale * n_sessions / 15)
        counts.append(pd.DataFrame({"threshold_sd": c, "client": clients, "n_sessions": n_sessions,
                                    "n_ruptures": rep + unrep, "n_repaired": rep, "n_unrepaired": unrep,
                                    "n_censored": 0}))  # fmt: skip
    counts = pd.concat(counts, ignore_index=True)
    two = counts[counts["threshold_sd"] == 2.0]
    baseline = rng.normal(16, 4, n_clients)
    u = rng.normal(0, 1.5, n_therapists)[np.arange(n_clients) % n_therapists]
    change = (1.0 + TRUE["n_repaired"] * two["n_repaired"].to_numpy()
              + TRUE["n_unrepaired"] * two["n_unrepaired"].to_numpy()
              + TRUE["baseline"] * baseline + u + rng.normal(0, 2.5, n_clients))  # fmt: skip
    change_table = pd.DataFrame({"client": clients, "instrument": "phq9", "respondent": "client",
                                 "scale": "total", "therapist": therapist, "pre": baseline,
                                 "post": baseline + change, "change": change})  # fmt: skip
    change_table.loc[3, ["post", "change"]] = np.nan  # one client without an outcome
    extra = pd.DataFrame({"client": ["C-x"], "instrument": ["gad7"], "pre": [1.0], "post": [2.0], "change": [1.0]})
    change_table = pd.concat([change_table, extra], ignore_index=True)
    clients_table = pd.DataFrame({"client": clients, "therapist": therapist,
                                  "arm": np.where(np.arange(n_clients) % 2, "CBT", "PDT")})
    return counts, change_table, clients_table


def test_outcome_model_matches_statsmodels_and_recovers_truth():
    counts, change, clients = simulated_client_tables(7)
    with pytest.warns(UserWarning, match="dropped 1 of 400 clients"):
        table, infos = rupture_outcome_tables(counts, change, clients, SETTINGS)
    assert list(table.columns) == EFFECT_COLUMNS
    assert table["threshold_sd"].unique().tolist() == [1.0, 2.0]
    two = table[table["threshold_sd"] == 2.0].set_index("term")
    assert list(two.index) == ["(Intercept)", "n_repaired", "n_unrepaired", "baseline"]

    # Independent reference: statsmodels' REML random-intercept model on the same clients.
    data = (change[change["instrument"] == "phq9"].rename(columns={"pre": "baseline"})
            .merge(counts[counts["threshold_sd"] == 2.0], on="client").dropna(subset=["change"]))  # fmt: skip
    ref = smf.mixedlm("change ~ n_repaired + n_unrepaired + baseline", data, groups=data["therapist"]).fit(reml=True)
    for term in ("n_repaired", "n_unrepaired", "baseline"):
        assert two.loc[term, "estimate"] == pytest.approx(ref.fe_params[term], abs=1e-4)  # optimiser tolerance
        assert two.loc[term, "se"] == pytest.approx(ref.bse[term], rel=1e-3)
        # parameter recovery: within 3.5 SE of the generating value
        assert abs(two.loc[term, "estimate"] - TRUE[term]) < 3.5 * two.loc[term, "se"], term
    info = {i["threshold_sd"]: i for i in infos}[2.0]
    assert info["n_clients"] == 399 and info["n_clients_dropped"] == 1 and info["n_therapists"] == 40
    assert info["variance_therapist"] == pytest.approx(ref.cov_re.iloc[0, 0], rel=1e-2)
    assert info["formula"] == "change ~ n_repaired + n_unrepaired + baseline + (1 | therapist)"


@pytest.mark.filterwarnings("ignore:rupture_outcome_model. dropped")
def test_outcome_model_covariates():
    counts, change, clients = simulated_client_tables(8, n_clients=120, n_therapists=12)
    settings = copy.deepcopy(SETTINGS)
    settings["outcome"]["covariates"] = ["arm"]
    table, infos = rupture_outcome_tables(counts, change, clients, settings)
    assert "armPDT" in set(table["term"]) and "n_sessions" not in set(table["term"])
    assert infos[0]["formula"].endswith("baseline + arm + (1 | therapist)")
    settings["outcome"]["covariates"] = ["age"]
    with pytest.raises(ValueError, match=r"covariates: \['age'\].*\['arm'\]"):
        rupture_outcome_tables(counts, change, clients, settings)
    # The number of sessions is post-treatment (affected by ruptures and outcome): refused.
    settings["outcome"]["covariates"] = ["n_sessions", "arm"]
    with pytest.raises(ValueError, match="'n_sessions'.*post-treatment"):
        rupture_outcome_tables(counts, change, clients, settings)


@pytest.mark.filterwarnings("ignore:rupture_outcome_model. dropped")
def test_outcome_model_not_estimable_without_ruptures():
    counts, change, clients = simulated_client_tables(9, n_clients=60, n_therapists=6)
    counts.loc[counts["threshold_sd"] == 2.0, ["n_ruptures", "n_repaired", "n_unrepaired"]] = 0
    table, infos = rupture_outcome_tables(counts, change, clients, SETTINGS)
    assert table["threshold_sd"].unique().tolist() == [1.0]
    assert infos[1]["estimable"] is False and "n_repaired" in infos[1]["reason"]


def test_outcome_model_names_a_missing_outcome():
    counts, change, clients = simulated_client_tables(10, n_clients=40, n_therapists=4)
    settings = copy.deepcopy(SETTINGS)
    settings["outcome"]["instrument"] = "oq45"
    with pytest.raises(ValueError, match=r"no rows for instrument 'oq45'.*\['gad7', 'phq9'\]"):
        rupture_outcome_tables(counts, change, clients, settings)


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:rupture_outcome_model. dropped")
def test_write_outputs_and_outcome(tmp_path):
    scores = long_scores(HAND)
    scores.to_parquet(tmp_path / "scores.parquet")
    paths = {name: tmp_path / f"{name}.csv" for name in ("episodes", "counts", "summary")}
    figures = [tmp_path / "c1.png", tmp_path / "c2.png"]
    write_rupture_outputs(tmp_path / "scores.parquet", SETTINGS, paths["episodes"], paths["counts"],
                          paths["summary"], figures)
    episodes = pd.read_csv(paths["episodes"])
    assert list(episodes.columns) == EPISODE_COLUMNS and len(episodes) == len(HAND_EPISODES)
    assert list(pd.read_csv(paths["counts"]).columns) == COUNTS_COLUMNS
    for path in figures:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
    with pytest.raises(ValueError, match="one figure path per threshold"):
        write_rupture_outputs(tmp_path / "scores.parquet", SETTINGS, *paths.values(), figures[:1])

    counts, change, clients = simulated_client_tables(11, n_clients=80, n_therapists=8)
    counts.to_csv(tmp_path / "sim_counts.csv", index=False)
    change.to_csv(tmp_path / "change.csv", index=False)
    clients.to_parquet(tmp_path / "clients.parquet")
    write_rupture_outcome(tmp_path / "sim_counts.csv", tmp_path / "change.csv", tmp_path / "clients.parquet",
                          SETTINGS, tmp_path / "model.csv", tmp_path / "model.json")
    assert list(pd.read_csv(tmp_path / "model.csv").columns) == EFFECT_COLUMNS
    fit = json.loads((tmp_path / "model.json").read_text())  # strict JSON: NaN written as null
    assert [m["threshold_sd"] for m in fit["models"]] == [1.0, 2.0]


def test_trajectory_figure_without_episodes_says_so():
    series = rupture_series(long_scores({"A": [5, 5, 5], "B": [4, 4.5, 4]}), SETTINGS)
    empty = rupture_tables(series, SETTINGS)["episodes"]
    assert empty.empty
    fig = trajectory_figure(series, empty, SETTINGS, 2)
    assert "no episode found" in fig.get_suptitle()
    assert sum(ax.get_visible() for ax in fig.axes) == 2


def test_detection_against_a_truth_file():
    """Injected episodes in the simulator's truth format, mapped to pseudonyms with the key;
    the HAND rule finds A2 and D3 at 2 SD, and A2, B2, D3 at 1 SD."""
    from alliance.data.deid import pseudonymise

    key = b"a test key that is long enough for the project 0123456789"
    raw = pd.Series(["P01", "P02", "P04", "P09"])
    pseudo = dict(zip(raw, pseudonymise(raw, "client", key)))
    series = rupture_series(long_scores(HAND), SETTINGS)
    series["client"] = series["client"].map(dict(zip("ABCD", [pseudo["P01"], pseudo["P02"], "C-other", pseudo["P04"]])))
    truth = {"ruptures": [{"client_id": "P01", "rupture_session": 2, "depth_sd": 2.5},
                          {"client_id": "P04", "rupture_session": 4},  # detected at 3: within 1
                          {"client_id": "P09", "rupture_session": 3}]}  # no series: left out
    injected = injected_episodes(truth, key)
    assert injected["client"].tolist() == [pseudo["P01"], pseudo["P04"], pseudo["P09"]]
    table = rupture_detection(series, injected, SETTINGS).set_index("threshold_sd")
    assert table.loc[2.0, ["n_injected", "n_detected", "n_matched"]].tolist() == [2, 2, 2]
    assert table.loc[1.0, ["n_detected", "n_matched", "precision", "recall"]].tolist() == [3, 2, 2 / 3, 1.0]
    with pytest.raises(ValueError, match="truth.json: expected a key 'ruptures'"):
        injected_episodes({"episodes": []}, key, "truth.json")
    with pytest.raises(ValueError, match=r"lack field\(s\) \['rupture_session'\]"):
        injected_episodes({"ruptures": [{"client_id": "P01"}]}, key, "truth.json")
