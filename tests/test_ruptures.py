"""Tests for alliance.ruptures: rupture–repair detection, counts, summary, outcome link.

References used here (none is the code under test):
- hand-worked examples with explicit numbers (every episode worked out below in comments):
  one with a fixed SD, a one-session pre-level and no repair band (the drop / consecutive-drop /
  gap / window rules), and one with the default rule (each client's own SD, pre-level the
  mean of 3 sessions, repair band 0.5 SD, censoring);
- a plain-Python, one-client-at-a-time re-implementation of the documented definition,
  compared with the vectorised code on random series with gaps and ties;
- simulated series with injected rupture–repair episodes of known position, depth and
  repair status (parameter recovery);
- statsmodels MixedLM as a stand-in for the project's mixed-model engine.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from alliance.ruptures.episodes import (
    DETECTION_COLUMNS,
    EPISODE_COLUMNS,
    detect_ruptures,
    detection_table,
    match_episodes,
    rupture_counts,
    rupture_outcome_data,
    rupture_outcome_formula,
    rupture_outcome_model,
    rupture_sd,
    rupture_summary,
)


def series_from(spec: dict[str, tuple[list[int], list[float]]]) -> pd.DataFrame:
    rows = [
        (client, s, x)
        for client, (sessions, scores) in spec.items()
        for s, x in zip(sessions, scores)
    ]
    return pd.DataFrame(rows, columns=["client", "session", "score"])


# ----------------------------------------------------------------------------------------
# Hand-worked example
# ----------------------------------------------------------------------------------------
# SD fixed at 1.0 so the threshold for c = 2 is exactly 2 score points; repair window 2;
# pre-level = the one score before the drop and no repair band (HAND_RULE), so a repair is a
# return to at least that score.
# A: 5 5 2 4 5 5 2.5   s2->s3 drops 3 (rupture, pre 5); s4 = 4 < 5, s5 = 5 >= 5 -> repaired
#                      at s5 (2 sessions). s6->s7 drops 2.5: rupture at the last session ->
#                      censored (neither repaired nor unrepaired).
# B: sessions 1 2 4 5 6 7 8 (3 missing), scores 6 6 3 3.5 5 6.5 4.51
#                      s2->s4 drops 3 across the gap: rupture at s4, pre 6. Window s5..s6:
#                      3.5, 5 < 6; s7 = 6.5 is outside (7 - 4 = 3 > 2) -> unrepaired, not
#                      censored (last session 8 >= 4 + 2). s7->s8 drops 1.99 < 2: no rupture.
# C: 7 4.5 2 7 5 7     s1->s2 drops 2.5 and s2->s3 drops 2.5: two consecutive drops, one
#                      episode, pre 7 (s1), rupture s3 at 2, depth 5, n_drops 2; s4 = 7 >= 7
#                      -> repaired after 1 session. s4->s5 drops exactly 2 (= threshold,
#                      counts); s6 = 7 >= 7 (equal counts) -> repaired after 1.
HAND = {
    "A": ([1, 2, 3, 4, 5, 6, 7], [5, 5, 2, 4, 5, 5, 2.5]),
    "B": ([1, 2, 4, 5, 6, 7, 8], [6, 6, 3, 3.5, 5, 6.5, 4.51]),
    "C": ([1, 2, 3, 4, 5, 6], [7, 4.5, 2, 7, 5, 7]),
}
HAND_EXPECTED = pd.DataFrame(
    {
        "client": ["A", "A", "B", "C", "C"],
        "pre_session": [2, 6, 2, 1, 4],
        "rupture_session": [3, 7, 4, 3, 5],
        "n_drops": [1, 1, 1, 2, 1],
        "pre_score": [5.0, 5.0, 6.0, 7.0, 7.0],
        "rupture_score": [2.0, 2.5, 3.0, 2.0, 5.0],
        "depth": [3.0, 2.5, 3.0, 5.0, 2.0],
        "repaired": [True, False, False, True, True],
        "repair_session": pd.array([5, None, None, 4, 6], dtype="Int64"),
        "sessions_to_repair": pd.array([2, None, None, 1, 1], dtype="Int64"),
        "censored": [False, True, False, False, False],
        "status": ["repaired", "censored", "unrepaired", "repaired", "repaired"],
    }
)
HAND_RULE = {"sd_basis": 1.0, "pre_sessions": 1, "repair_tolerance": 0.0}


def test_hand_worked_example_gives_exact_episodes():
    episodes = detect_ruptures(series_from(HAND), c=2, repair_window=2, **HAND_RULE)
    assert list(episodes.columns) == EPISODE_COLUMNS
    pd.testing.assert_frame_equal(
        episodes[HAND_EXPECTED.columns].reset_index(drop=True), HAND_EXPECTED, check_dtype=False
    )
    assert (episodes["sd"] == 1.0).all() and (episodes["threshold"] == 2.0).all()
    np.testing.assert_allclose(episodes["depth_sd"], HAND_EXPECTED["depth"])
    np.testing.assert_allclose(episodes["repair_score"], [5.0, np.nan, np.nan, 7.0, 7.0])


def test_hand_worked_counts_include_clients_without_ruptures():
    episodes = detect_ruptures(series_from(HAND), c=2, repair_window=2, **HAND_RULE)
    counts = rupture_counts(episodes, ["A", "B", "C", "D"])
    expected = pd.DataFrame(
        {
            "client": ["A", "B", "C", "D"],
            "n_ruptures": [2, 1, 2, 0],
            "n_repaired": [1, 0, 2, 0],
            "n_unrepaired": [0, 1, 0, 0],
            "n_censored": [1, 0, 0, 0],
        }
    )
    pd.testing.assert_frame_equal(counts, expected, check_dtype=False)


def test_max_gap_stops_drops_across_missing_sessions():
    episodes = detect_ruptures(series_from(HAND), c=2, repair_window=2, **HAND_RULE, max_gap=1)
    # B's only rupture bridged the missing session 3; A and C are unchanged.
    assert "B" not in set(episodes["client"])
    assert len(episodes) == 4


def test_wider_repair_window_repairs_b():
    episodes = detect_ruptures(series_from(HAND), c=2, repair_window=3, **HAND_RULE)
    b = episodes[episodes["client"] == "B"].iloc[0]
    assert b["repaired"] and b["repair_session"] == 7 and b["sessions_to_repair"] == 3


def test_row_order_and_integer_client_ids_do_not_matter():
    series = series_from(HAND)
    shuffled = series.sample(frac=1.0, random_state=5)
    a = detect_ruptures(series, 2, 2, **HAND_RULE)
    b = detect_ruptures(shuffled, 2, 2, **HAND_RULE)
    pd.testing.assert_frame_equal(a, b)
    numeric = series.assign(client=series["client"].map({"A": 10, "B": 20, "C": 30}))
    c = detect_ruptures(numeric, 2, 2, **HAND_RULE)
    assert list(c["client"]) == [10, 10, 20, 30, 30]


# ----------------------------------------------------------------------------------------
# Hand-worked example of the own-SD rule (sd_basis "client", no below-median condition):
# pre-level mean, repair band, censoring
# ----------------------------------------------------------------------------------------
# c = 2, repair window 3, pre-level = mean of the last 3 sessions before the drop, band 0.5 SD.
# E: 6 5 7 2 5 6 6 7. Mean 5.5, SS = .25+.25+2.25+12.25+.25+.25+.25+2.25 = 18, SD = sqrt(18/7)
#    = 1.603567; 2 SD = 3.207. Only s3->s4 (7 -> 2, drop 5) qualifies. Pre-level (6+5+7)/3 = 6,
#    depth 4, band 6 - 0.5 SD = 5.198: s5 = 5 is below, s6 = 6 inside -> repaired at s6 (2
#    sessions). (The old rule, a return to the one score 7, would call it unrepaired.)
# F: 5 5.5 5 5.5 1. Mean 4.4, SS 14.7, SD sqrt(3.675) = 1.917029; 2 SD = 3.834. s4->s5 drops
#    4.5: a dip at the last session -> censored. Pre-level (5.5+5+5.5)/3 = 16/3.
# G: 6 6 6 2 3 3 3. SS = 139 - 29^2/7 = 132/7, SD = sqrt(22/7) = 1.772811; drop 4 >= 3.546 at
#    s4. Band 6 - 0.886 = 5.114; s5..s7 = 3 -> unrepaired, and s7 = 4 + 3 closes the window:
#    not censored.
# H: 6 6 6 2 3. SS = 121 - 23^2/5 = 15.2, SD = sqrt(3.8) = 1.949359; drop 4 >= 3.899 at s4.
#    s5 = 3 is below the band 5.025 and the series ends at s5 < 4 + 3 -> censored.
DEFAULT_HAND = {
    "E": ([1, 2, 3, 4, 5, 6, 7, 8], [6, 5, 7, 2, 5, 6, 6, 7]),
    "F": ([1, 2, 3, 4, 5], [5, 5.5, 5, 5.5, 1]),
    "G": ([1, 2, 3, 4, 5, 6, 7], [6, 6, 6, 2, 3, 3, 3]),
    "H": ([1, 2, 3, 4, 5], [6, 6, 6, 2, 3]),
}


# The own-SD rule as it was the default before the change-SD yardstick (issue 16).
OWN_SD = {"sd_basis": "client", "below_median": False}


def test_own_sd_rule_hand_worked():
    episodes = detect_ruptures(series_from(DEFAULT_HAND), c=2, repair_window=3, **OWN_SD)
    sds = [math.sqrt(18 / 7), math.sqrt(3.675), math.sqrt(22 / 7), math.sqrt(3.8)]
    assert list(episodes["client"]) == ["E", "F", "G", "H"]
    assert list(episodes["rupture_session"]) == [4, 5, 4, 4]
    np.testing.assert_allclose(episodes["sd"], sds, rtol=1e-12)
    np.testing.assert_allclose(episodes["pre_level"], [6, 16 / 3, 6, 6], rtol=1e-12)
    np.testing.assert_allclose(episodes["depth_sd"], np.array([4, 16 / 3 - 1, 4, 4]) / sds, rtol=1e-12)
    np.testing.assert_allclose(episodes["depth"], [4, 16 / 3 - 1, 4, 4], rtol=1e-12)
    levels = [6, 16 / 3, 6, 6]
    np.testing.assert_allclose(episodes["repair_band"], [lv - 0.5 * sd for lv, sd in zip(levels, sds)],
                               rtol=1e-12)
    assert list(episodes["status"]) == ["repaired", "censored", "unrepaired", "censored"]
    assert list(episodes["repaired"]) == [True, False, False, False]
    assert list(episodes["censored"]) == [False, True, False, True]
    assert episodes["repair_session"].iloc[0] == 6 and episodes["sessions_to_repair"].iloc[0] == 2
    counts = rupture_counts(episodes, ["E", "F", "G", "H", "K"])
    assert counts["n_repaired"].tolist() == [1, 0, 0, 0, 0]
    assert counts["n_unrepaired"].tolist() == [0, 0, 1, 0, 0]
    assert counts["n_censored"].tolist() == [0, 1, 0, 1, 0]
    summary = rupture_summary(series_from(DEFAULT_HAND), cs=(2,), repair_window=3, **OWN_SD).iloc[0]
    assert (summary["n_repaired"], summary["n_unrepaired"], summary["n_censored"]) == (1, 1, 2)
    assert summary["prop_repaired"] == 0.5  # of the 2 episodes that are not censored
    assert math.isnan(summary["sd"])  # each client has its own


def test_repair_band_width_and_pre_sessions():
    series = series_from(DEFAULT_HAND)
    # No band: E needs 6 (the pre-level): s6 = 6 repairs (equality counts).
    e = detect_ruptures(series, 2, 3, repair_tolerance=0.0, **OWN_SD).iloc[0]
    assert e["repair_session"] == 6
    # One-session pre-level (7) and no band: s5..s7 = 5, 6, 6 never reach 7 -> unrepaired.
    e = detect_ruptures(series, 2, 3, pre_sessions=1, repair_tolerance=0.0, **OWN_SD).iloc[0]
    assert e["pre_level"] == 7 and e["status"] == "unrepaired"
    # A band of 1.3 SD (6 - 2.08 = 3.92) takes s5 = 5.
    e = detect_ruptures(series, 2, 3, repair_tolerance=1.3, **OWN_SD).iloc[0]
    assert e["repair_session"] == 5


# ----------------------------------------------------------------------------------------
# Hand-worked example of the default rule (sd_basis "client_change", below the median)
# ----------------------------------------------------------------------------------------
# One client at a time, so no other client informs the empirical-Bayes prior (d0 = 0): the SD
# at a session is sqrt(mean of the squared successive differences other than the two touching
# that session).
# E: 6 5 7 2 5 6 6 7, changes -1 2 -5 3 1 0 1 (sum of squares 41). At s4 leave out -5 and 3:
#    7 on 5 changes, SD sqrt(1.4) = 1.183216; drop 7 -> 2 = 5 >= 2.366, and 2 < median 6 ->
#    rupture. At s2 (6 -> 5) leave out -1 and 2: 36 on 5, SD sqrt(7.2) = 2.683; a drop of 1
#    is a rupture only for c <= 1/2.683 = .373 (5 < 6: below the median). Pre-level
#    (6+5+7)/3 = 6, band 6 - 0.5 sqrt(1.4) = 5.408: s5 = 5 below, s6 = 6 in -> repaired at s6.
# M: 5 5 8 5 5 5 5, changes 0 3 -3 0 0 0. At s4 leave out -3 (into s4) and 0 (out of s4):
#    9 on 4 changes, SD 1.5; the drop 8 -> 5 = 3 = 2 SD (equality counts) but 5 is
#    the median, not below it: the return from a high session is not a rupture by default.
# T: 0 1 2 3 4 5 2 7 8 9 (a steady rise with a dip at s7), changes 1 1 1 1 1 -3 5 1 1. At s7
#    leave out -3 and 5: seven 1s, SD 1; drop 3 >= 2, 2 < median 3.5 -> rupture. The client's
#    SD of its scores (sd_basis "client") is 3.05, widened by the rise: 2 SD = 6.1 misses it.
CHANGE_HAND = {
    "E": ([1, 2, 3, 4, 5, 6, 7, 8], [6, 5, 7, 2, 5, 6, 6, 7]),
    "M": ([1, 2, 3, 4, 5, 6, 7], [5, 5, 8, 5, 5, 5, 5]),
    "T": (list(range(1, 11)), [0, 1, 2, 3, 4, 5, 2, 7, 8, 9]),
}


def one(name: str) -> pd.DataFrame:
    return series_from({name: CHANGE_HAND[name]})


def test_default_rule_hand_worked():
    e = detect_ruptures(one("E"), c=2, repair_window=3)
    assert list(e["rupture_session"]) == [4]
    row = e.iloc[0]
    assert row["sd"] == pytest.approx(math.sqrt(1.4), rel=1e-12)
    assert row["threshold"] == pytest.approx(2 * math.sqrt(1.4), rel=1e-12)
    assert row["pre_level"] == pytest.approx(6.0) and row["depth"] == pytest.approx(4.0)
    assert row["repair_band"] == pytest.approx(6 - 0.5 * math.sqrt(1.4), rel=1e-12)
    assert (row["status"], row["repair_session"], row["sessions_to_repair"]) == ("repaired", 6, 2)
    low = detect_ruptures(one("E"), c=0.37, repair_window=3)
    assert list(low["rupture_session"]) == [2, 4]
    assert low["sd"].iloc[0] == pytest.approx(math.sqrt(7.2), rel=1e-12)
    assert detect_ruptures(one("E"), c=0.38, repair_window=3)["rupture_session"].tolist() == [4]


def test_default_rule_needs_the_fall_to_end_below_the_median():
    assert detect_ruptures(one("M"), c=2, repair_window=3).empty
    m = detect_ruptures(one("M"), c=2, repair_window=3, below_median=False)
    assert list(m["rupture_session"]) == [4] and m["sd"].iloc[0] == pytest.approx(1.5, rel=1e-12)


def test_a_trend_does_not_widen_the_change_sd():
    t = detect_ruptures(one("T"), c=2, repair_window=3)
    assert list(t["rupture_session"]) == [7] and t["sd"].iloc[0] == pytest.approx(1.0, rel=1e-12)
    assert detect_ruptures(one("T"), c=2, repair_window=3, sd_basis="client", below_median=False).empty
    # A steady decline alone is no 2-SD rupture: each change is exactly 1 SD of the changes.
    decline = series_from({"D": (list(range(1, 11)), list(range(10, 0, -1)))})
    assert detect_ruptures(decline, c=2, repair_window=3).empty


def test_change_sd_needs_two_other_changes():
    # 4 sessions 5 5 5 1: at s4 only the change into it is left out -> 0 0 remain (2 changes),
    # SD 0 (one client: no prior to borrow from), any fall counts (depth_sd infinite). With 3 sessions 5 5 1, one other change: no SD, no rupture.
    four = detect_ruptures(series_from({"A": ([1, 2, 3, 4], [5, 5, 5, 1])}), 1, 3)
    assert list(four["rupture_session"]) == [4] and four["sd"].iloc[0] == 0.0
    assert detect_ruptures(series_from({"A": ([1, 2, 3], [5, 5, 1])}), 1, 3).empty


def test_change_variance_prior_matches_limma_fitfdist():
    from alliance.ruptures.episodes import change_variance_prior

    rng = np.random.default_rng(5)
    n_changes = rng.integers(2, 20, 300)
    # client variances that really differ (log-normal around 1) plus chi-square sampling
    true = np.exp(rng.normal(0, 0.4, 300))
    ssd = true * rng.chisquare(n_changes)
    d0, s0 = change_variance_prior(ssd, n_changes)
    ref_d0, ref_s0 = limma_prior(list(ssd / n_changes), list(n_changes))
    assert d0 == pytest.approx(ref_d0, rel=1e-8) and s0 == pytest.approx(ref_s0, rel=1e-8)
    assert 2 < d0 < 30  # finite: the variances differ beyond sampling
    # Identical variances: no excess spread, d0 infinite and s0^2 = exp(mean e) by hand:
    # e = log v - digamma(k/2) + log(k/2) with v = 2, k = 4 changes.
    from scipy.special import digamma

    d0, s0 = change_variance_prior(np.full(5, 8.0), np.full(5, 4))
    assert math.isinf(d0) and s0 == pytest.approx(2 * 2 * math.exp(-digamma(2)), rel=1e-12)
    # Fewer than two informative clients (>= 2 changes, some change): no prior.
    d0, s0 = change_variance_prior(np.array([0.0, 3.0, 5.0]), np.array([4, 1, 3]))
    assert d0 == 0.0 and math.isnan(s0)


def test_moderated_sd_pulls_toward_the_other_clients():
    """With other clients the SD at a session is (own sum of squares + d0 s0^2) / (own changes
    + d0), d0 and s0^2 from limma's fitFDist on all clients' MSSDs (independent code here)."""
    rng = np.random.default_rng(8)
    frames = [series_from(CHANGE_HAND)]
    for k in range(40):
        frames.append(pd.DataFrame({"client": f"R{k}", "session": np.arange(1, 13),
                                    "score": np.round(rng.normal(5, rng.uniform(0.5, 2)) + rng.normal(0, 1, 12), 1)}))
    series = pd.concat(frames, ignore_index=True)
    expected = change_sds(series.sort_values(["client", "session"]))
    got = detect_ruptures(series, 0.5, 3)
    assert len(got) > 20
    for row in got.itertuples():
        sessions = CHANGE_HAND[row.client][0] if row.client in CHANGE_HAND else list(range(1, 13))
        assert row.sd == pytest.approx(expected[row.client][sessions.index(row.rupture_session)], rel=1e-9)


def test_successive_difference_sd():
    # E's successive differences -1, 2, -5, 3, 1, 0, 1: sum of squares 41 on 7 differences,
    # sqrt(MSSD / 2) = sqrt(41 / 14) = 1.711309.
    episodes = detect_ruptures(series_from({"E": DEFAULT_HAND["E"]}), 2, 3, sd_basis="client_successive")
    assert episodes["sd"].iloc[0] == pytest.approx(math.sqrt(41 / 14), rel=1e-12)
    assert list(episodes["rupture_session"]) == [4]


def test_own_sd_needs_three_sessions():
    two = series_from({"A": ([1, 2], [5, 1]), "B": ([1, 2, 3], [5, 5, 1])})
    episodes = detect_ruptures(two, 1, 3, **OWN_SD)
    # A has 2 sessions: no own SD, no rupture. B: SD sqrt(16/3) = 2.309, drop 4 >= 2.309.
    assert list(episodes["client"]) == ["B"]
    assert episodes["sd"].iloc[0] == pytest.approx(math.sqrt(16 / 3))


# ----------------------------------------------------------------------------------------
# Standard deviations (hand computation)
# ----------------------------------------------------------------------------------------
# A = 1 3 (mean 2, SS 2), B = 4 6 (mean 5, SS 2), C = 7 9 11 (mean 9, SS 8).
# Pooled within: SS 12 on N - K = 7 - 3 = 4 df -> var 3, SD sqrt(3) = 1.7320508.
# Between: means 2, 5, 9, grand mean 16/3, SS = (100 + 1 + 121) / 9 = 222/9, var = 37/3,
# SD sqrt(37/3) = 3.5118846.
SD_EXAMPLE = {"A": ([1, 2], [1, 3]), "B": ([1, 2], [4, 6]), "C": ([1, 2, 3], [7, 9, 11])}


def test_rupture_sd_matches_hand_computation():
    sd = rupture_sd(series_from(SD_EXAMPLE))
    assert sd["within"] == pytest.approx(math.sqrt(3), rel=1e-12)
    assert sd["between"] == pytest.approx(math.sqrt(37 / 3), rel=1e-12)
    assert sd["stricter"] == pytest.approx(math.sqrt(37 / 3), rel=1e-12)


def test_sd_basis_choices_set_the_threshold():
    # Add D = 8 4 8 (mean 20/3, SS 32/3). Within: SS 12 + 32/3 = 68/3 on 10 - 4 = 6 df,
    # SD = sqrt(34/9) = 1.9437; between: SD of the means 2, 5, 9, 20/3 = 2.9533.
    # D's 4-point drop passes 2 x within (3.89) but not 2 x between (5.91).
    series = pd.concat(
        [series_from(SD_EXAMPLE), series_from({"D": ([1, 2, 3], [8, 4, 8])})], ignore_index=True
    )
    sd = rupture_sd(series)
    assert sd["within"] == pytest.approx(math.sqrt(34 / 9), rel=1e-12)
    assert sd["between"] == pytest.approx(np.std([2, 5, 9, 20 / 3], ddof=1), rel=1e-12)
    within = detect_ruptures(series, 2, 2, sd_basis="within")
    stricter = detect_ruptures(series, 2, 2, sd_basis="stricter")
    between = detect_ruptures(series, 2, 2, sd_basis="between")
    assert list(within["client"]) == ["D"]
    assert within["threshold"].iloc[0] == pytest.approx(2 * sd["within"])
    assert stricter.empty and between.empty
    summary = rupture_summary(series, cs=(2,), repair_window=2, sd_basis="stricter")
    assert summary["sd"].iloc[0] == pytest.approx(sd["stricter"])


def test_gumz_per_client_rule_uses_the_stricter_of_own_and_between_sd():
    # Client F fluctuates strongly (own SD large), G is nearly flat; between SD is small.
    spec = {
        "F": ([1, 2, 3, 4, 5, 6], [10, 0, 10, 0, 10, 0]),
        "G": ([1, 2, 3, 4, 5, 6], [5, 5.1, 5, 2.5, 5, 5.1]),
    }
    series = series_from(spec)
    own_f = np.std(spec["F"][1], ddof=1)
    own_g = np.std(spec["G"][1], ddof=1)
    means = [np.mean(spec["F"][1]), np.mean(spec["G"][1])]
    between = np.std(means, ddof=1)
    episodes = detect_ruptures(series, 1, 2, sd_basis="stricter_per_client")
    f = episodes[episodes["client"] == "F"]
    g = episodes[episodes["client"] == "G"]
    # F: own SD sqrt(30) = 5.48 beats the between SD: each 10-point drop counts.
    assert f["sd"].iloc[0] == pytest.approx(max(own_f, between))
    assert len(f) == 3
    # G: own SD 1.04 beats the between SD 0.27 (means 5 and 4.617): its 2.5 drop counts.
    assert g["sd"].iloc[0] == pytest.approx(max(own_g, between))
    assert list(g["rupture_session"]) == [4]
    assert rupture_summary(series, cs=(1,), sd_basis="stricter_per_client")["sd"].isna().all()
    # "gumz" is the same rule under its name.
    pd.testing.assert_frame_equal(detect_ruptures(series, 1, 2, sd_basis="gumz"), episodes)


# ----------------------------------------------------------------------------------------
# Edge cases
# ----------------------------------------------------------------------------------------
def test_only_single_session_clients():
    only_single = series_from({"X": ([1], [5.0]), "Y": ([1], [3.0])})
    assert detect_ruptures(only_single, 1, 2).empty
    sd = rupture_sd(only_single)
    # No within-client replication; the between SD of the two means 5 and 3 is sqrt(2).
    assert math.isnan(sd["within"]) and sd["between"] == pytest.approx(math.sqrt(2))


def test_single_session_client_alongside_others():
    series = pd.concat(
        [series_from(HAND), series_from({"S": ([4], [1.0])})], ignore_index=True
    )
    episodes = detect_ruptures(series, 2, 2, **HAND_RULE)
    pd.testing.assert_frame_equal(
        episodes[HAND_EXPECTED.columns].reset_index(drop=True), HAND_EXPECTED, check_dtype=False
    )
    counts = rupture_counts(episodes, series["client"].unique())
    assert counts.set_index("client").loc["S", "n_ruptures"] == 0


def test_constant_series_have_no_ruptures():
    flat_distinct = series_from({"A": ([1, 2, 3], [4, 4, 4]), "B": ([1, 2, 3], [6, 6, 6])})
    assert detect_ruptures(flat_distinct, 1, 2).empty
    all_equal = series_from({"A": ([1, 2, 3], [4, 4, 4]), "B": ([1, 2], [4, 4])})
    assert rupture_sd(all_equal)["stricter"] == 0.0
    assert detect_ruptures(all_equal, 1, 2).empty
    summary = rupture_summary(all_equal)
    assert list(summary["n_episodes"]) == [0, 0]


def test_missing_scores_are_treated_as_missing_sessions():
    series = series_from(HAND)
    # Blank out B's session 1: B's rupture still compares s4 with s2.
    series.loc[(series["client"] == "B") & (series["session"] == 1), "score"] = np.nan
    episodes = detect_ruptures(series, 2, 2, **HAND_RULE)
    assert len(episodes) == 5
    # Blank out C's trough: s1 (7) -> s2 (4.5) is one drop; s2 -> s4 (7) is a rise.
    series.loc[(series["client"] == "C") & (series["session"] == 3), "score"] = np.nan
    c = detect_ruptures(series, 2, 2, **HAND_RULE).query("client == 'C'")
    assert list(c["rupture_session"]) == [2, 5] and list(c["n_drops"]) == [1, 1]
    assert list(c["sessions_to_repair"]) == [2, 1]


def test_empty_input_returns_empty_table_with_columns():
    empty = pd.DataFrame({"client": [], "session": [], "score": []})
    episodes = detect_ruptures(empty, 2, 3)
    assert episodes.empty and list(episodes.columns) == EPISODE_COLUMNS
    assert rupture_counts(episodes, []).empty


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"c": 0}, "c must be a positive"),
        ({"c": -1}, "c must be a positive"),
        ({"c": float("nan")}, "c must be a positive"),
        ({"repair_window": 0}, "repair_window must be a positive integer"),
        ({"repair_window": 2.5}, "repair_window must be a positive integer"),
        ({"sd_basis": "pooled"}, "sd_basis must be one of"),
        ({"sd_basis": -1.0}, "sd_basis must be a positive"),
        ({"max_gap": 0}, "max_gap must be a positive integer"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    args = {"c": 2, "repair_window": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        detect_ruptures(series_from(HAND), **args)


def test_invalid_series_raise():
    series = series_from(HAND)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        detect_ruptures(series.drop(columns="score"), 2, 2)
    with pytest.raises(ValueError, match=r"a client \(text of 1 character \(letters\)\) has more than one score at session 2"):
        detect_ruptures(pd.concat([series, series.iloc[[1]]]), 2, 2)
    with pytest.raises(ValueError, match="integer session numbers"):
        detect_ruptures(series.assign(session=series["session"] + 0.5), 2, 2)
    # the value by its shape only: text in a score column may identify someone
    with pytest.raises(ValueError, match=r"must be numeric; row 3: value is a text of 4 characters \(letters\)$"):
        text = series["score"].astype(object).where(series.index != 3, "high")
        detect_ruptures(series.assign(score=text), 2, 2)
    with pytest.raises(ValueError, match="must be finite"):
        detect_ruptures(series.assign(score=series["score"].where(series.index != 3, np.inf)), 2, 2)
    with pytest.raises(ValueError, match="missing id"):
        detect_ruptures(series.assign(client=series["client"].where(series.index != 0, None)), 2, 2)
    episodes = detect_ruptures(series, 2, 2, **HAND_RULE)
    with pytest.raises(ValueError, match=r"episodes contain \d+ row\(s\) of a client not in `clients` \(first: row \d+\)"):
        rupture_counts(episodes, ["A", "B"])


# ----------------------------------------------------------------------------------------
# Independent re-implementation of the documented definition
# ----------------------------------------------------------------------------------------
def limma_prior(variances: list[float], dfs: list[int]) -> tuple[float, float]:
    """Prior df and variance of a scaled inverse chi-square fitted to sample variances by the
    moments of log variances, as limma's fitFDist (Smyth, 2004), with limma's Newton iteration
    for the inverse trigamma function (a different root finder from the code under test)."""
    from scipy.special import digamma, polygamma

    d = np.asarray(dfs, dtype=float)
    e = np.log(variances) - digamma(d / 2) + np.log(d / 2)
    emean = e.mean()
    evar = ((e - emean) ** 2).sum() / (len(e) - 1) - polygamma(1, d / 2).mean()
    if evar <= 0:
        return math.inf, math.exp(emean)
    x = 0.5 + 1 / evar  # limma::trigammaInverse
    for _ in range(100):
        tri = polygamma(1, x)
        dif = tri * (1 - tri / evar) / polygamma(2, x)
        x += dif
        if -dif / x < 1e-12:
            break
    d0 = 2 * x
    return d0, math.exp(emean + digamma(d0 / 2) - math.log(d0 / 2))


def change_sds(data: pd.DataFrame) -> dict:
    """sd_basis "client_change", literally: per client and row, the moderated SD of the client's
    successive differences other than the two touching that row (None: fewer than 2 others)."""
    per_client = {}
    for client, group in data.groupby("client", sort=True):
        x = group["score"].tolist()
        per_client[client] = [x[k] - x[k - 1] for k in range(1, len(x))]
    informative = [(sum(v * v for v in d) / len(d), len(d)) for d in per_client.values()
                   if len(d) >= 2 and sum(v * v for v in d) > 0]
    if len(informative) >= 2:
        d0, s0 = limma_prior([v for v, _ in informative], [k for _, k in informative])
    else:
        d0, s0 = 0.0, 0.0
    out = {}
    for client, d in per_client.items():
        rows = []
        for i in range(len(d) + 1):  # row i: changes d[i-1] (into) and d[i] (out of) are left out
            other = [v for k, v in enumerate(d) if k not in (i - 1, i)]
            if len(other) < 2:
                rows.append(None)
            elif math.isinf(d0):
                rows.append(math.sqrt(s0))
            else:
                rows.append(math.sqrt((sum(v * v for v in other) + d0 * s0) / (len(other) + d0)))
        out[client] = rows
    return out


def reference_episodes(series: pd.DataFrame, c: float, window: int, sd: float | str | None = None,
                       pre_sessions: int = 1, tolerance: float = 0.0,
                       below_median: bool = False) -> list[tuple]:
    """One client at a time, one session at a time: the docstring's rules, literally.
    ``sd`` None: the client's own SD (statistics.stdev, needs 3 sessions); "client_change":
    :func:`change_sds`; a number: that SD."""
    import statistics

    out = []
    data = series.dropna(subset=["score"]).sort_values(["client", "session"])
    changes = change_sds(data) if sd == "client_change" else None
    for client, group in data.groupby("client", sort=True):
        s, x = group["session"].tolist(), group["score"].tolist()
        if sd is None and len(x) < 3:
            continue
        if changes is not None:
            row_sd = changes[client]
        else:
            row_sd = [statistics.stdev(x) if sd is None else sd] * len(x)
        median = statistics.median(x)

        def drop_at(k):
            if row_sd[k] is None:
                return False
            threshold = c * row_sd[k]
            fall = x[k - 1] - x[k]
            ok = fall > 0 and fall >= threshold - 1e-9 * max(1.0, abs(threshold))
            return ok and (not below_median or x[k] < median - 1e-9 * max(1.0, abs(median)))

        last = s[-1]
        i = 1
        while i < len(x):
            if drop_at(i):
                first = i
                while i + 1 < len(x) and drop_at(i + 1):
                    i += 1
                own = row_sd[i]
                before = x[max(0, first - pre_sessions):first]
                level = sum(before) / len(before)
                band = level - tolerance * own
                repair = None
                for j in range(i + 1, len(x)):
                    if s[j] - s[i] > window:
                        break
                    if x[j] >= band - 1e-9 * max(1.0, abs(band)):
                        repair = s[j]
                        break
                censored = repair is None and last < s[i] + window
                out.append((client, s[first - 1], s[i], i - first + 1, x[first - 1], x[i], repair, censored))
            i += 1
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_detection_matches_plain_reference(seed):
    rng = np.random.default_rng(seed)
    frames = []
    for client in range(150):
        n = int(rng.integers(1, 16))
        sessions = np.sort(rng.choice(np.arange(1, 25), size=n, replace=False))
        # Half-point steps make drops exactly equal to the threshold common.
        scores = np.round(rng.normal(5, 1.2, size=n) * 2) / 2
        frames.append(pd.DataFrame({"client": client, "session": sessions, "score": scores}))
    series = pd.concat(frames, ignore_index=True)
    rules = [(1.0, 1, 1.0, 1, 0.0, False), (2.0, 3, 1.0, 1, 0.0, True), (1.5, 2, 1.0, 3, 0.5, False),
             (1.0, 3, None, 3, 0.5, False), (2.0, 2, None, 2, 0.0, True), (1.5, 3, None, 4, 1.0, False),
             (1.0, 3, "client_change", 3, 0.5, True), (2.0, 2, "client_change", 2, 0.0, False),
             (1.5, 3, "client_change", 1, 1.0, True)]
    for c, window, sd, pre, tol, below in rules:
        basis = "client" if sd is None else sd
        got = detect_ruptures(series, c, window, sd_basis=basis, pre_sessions=pre, repair_tolerance=tol,
                              below_median=below)
        ref = reference_episodes(series, c, window, sd, pre, tol, below)
        got_rows = [
            (r.client, r.pre_session, r.rupture_session, r.n_drops, r.pre_score, r.rupture_score,
             None if pd.isna(r.repair_session) else int(r.repair_session), bool(r.censored))
            for r in got.itertuples()
        ]  # fmt: skip
        assert got_rows == ref, (c, window, sd, pre, tol, below)
        assert len(ref) > 10  # the comparison is not vacuous
        assert (got["status"] == np.where(got["repaired"], "repaired",
                                          np.where(got["censored"], "censored", "unrepaired"))).all()


# ----------------------------------------------------------------------------------------
# Recovery of injected episodes
# ----------------------------------------------------------------------------------------
TAU = 8.0  # between-client SD of true alliance levels (score units)
SIGMA = 1.5  # session-to-session noise SD
WINDOW = 3


def simulate_injected(seed: int, n_clients: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Session series with at most one injected rupture per client, and the truth table.

    Levels ~ N(60, TAU); noise ~ N(0, SIGMA). An injected rupture drops the score by
    2.4-3.2 TAU below the previous session. Repaired episodes stay low for 0-2 more sessions
    and then return above the pre-rupture score within WINDOW sessions (V or U shape);
    unrepaired ones recover only partly (30-60 % of the depth below the pre-rupture score)
    for the rest of treatment, which lasts long enough for the window to close.
    """
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for client in range(n_clients):
        n = int(rng.integers(10, 21))
        y = 60 + TAU * rng.standard_normal() + SIGMA * rng.standard_normal(n)
        if rng.random() < 0.5:
            r = int(rng.integers(2, n - WINDOW - 1))  # 0-based row of the rupture
            pre = y[r - 1]
            depth = rng.uniform(2.4, 3.2) * TAU
            y[r] = pre - depth + SIGMA * rng.standard_normal()
            if rng.random() < 0.6:
                lag = int(rng.integers(1, WINDOW + 1))
                y[r + 1 : r + lag] = pre - depth + SIGMA * rng.standard_normal(lag - 1)
                y[r + lag] = pre + rng.uniform(0.5, 3.0)
                truth.append((client, r + 1, True, lag))
            else:
                keep = rng.uniform(0.3, 0.6)
                y[r + 1 :] = pre - keep * depth + SIGMA * rng.standard_normal(n - r - 1)
                truth.append((client, r + 1, False, None))
        frames.append(pd.DataFrame({"client": client, "session": np.arange(1, n + 1), "score": y}))
    truth_df = pd.DataFrame(truth, columns=["client", "rupture_session", "repaired", "lag"])
    return pd.concat(frames, ignore_index=True), truth_df


@pytest.mark.parametrize("seed", [11, 12])
def test_injected_two_sd_episodes_are_recovered(seed):
    series, truth = simulate_injected(seed)
    # Gumz et al.'s per-client rule: the larger of the client's own and the between-client SD.
    # Without a rupture that is the between SD (TAU >> SIGMA), with one at least that, so the
    # injected drops (>= 2.4 TAU) are 2-SD episodes by the detector's own yardstick.
    episodes = detect_ruptures(series, c=2, repair_window=WINDOW, sd_basis="gumz")
    assert TAU * 0.85 < episodes["sd"].min() and episodes["sd"].median() < TAU * 1.6
    matched = episodes.merge(truth, on=["client", "rupture_session"], how="inner")
    precision = len(matched) / len(episodes)
    recall = len(matched) / len(truth)
    assert precision >= 0.9, precision
    assert recall >= 0.9, recall
    # Repair status and time to repair of the matched episodes.
    assert (matched["repaired_x"] == matched["repaired_y"]).mean() >= 0.95
    rep = matched[matched["repaired_x"] & matched["repaired_y"]]
    assert (rep["sessions_to_repair"].astype(int) == rep["lag"].astype(int)).mean() >= 0.95
    # Unrepaired injected episodes had at least WINDOW later sessions: never censored.
    assert not matched.loc[~matched["repaired_y"], "censored"].any()


def test_lower_threshold_finds_a_superset():
    series, _ = simulate_injected(13, n_clients=150)
    two = detect_ruptures(series, 2, WINDOW, sd_basis="stricter")
    one = detect_ruptures(series, 1, WINDOW, sd_basis="stricter")
    assert len(one) >= len(two) > 0
    # Same SD, lower threshold: every 2-SD rupture session is a drop at 1 SD as well, so it
    # lies inside some 1-SD episode (pre_session < session <= rupture_session).
    for client, session in zip(two["client"], two["rupture_session"]):
        mine = one[one["client"] == client]
        assert ((mine["pre_session"] < session) & (session <= mine["rupture_session"])).any()
    summary = rupture_summary(series, cs=(1, 2), repair_window=WINDOW, sd_basis="stricter")
    assert list(summary["threshold_sd"]) == [1.0, 2.0]
    assert list(summary["n_episodes"]) == [len(one), len(two)]
    assert summary["n_repaired"].iloc[1] == int(two["repaired"].sum())
    assert summary["prop_clients_with_rupture"].iloc[1] == pytest.approx(
        two["client"].nunique() / 150
    )
    assert summary["sd"].iloc[1] == pytest.approx(two["sd"].iloc[0])
    assert summary["threshold"].iloc[1] == pytest.approx(2 * summary["sd"].iloc[1])
    assert summary["mean_depth"].iloc[1] == pytest.approx(two["depth"].mean())
    # The same holds with each client's own SD (the default).
    own_two, own_one = detect_ruptures(series, 2, WINDOW), detect_ruptures(series, 1, WINDOW)
    for client, session in zip(own_two["client"], own_two["rupture_session"]):
        mine = own_one[own_one["client"] == client]
        assert ((mine["pre_session"] < session) & (session <= mine["rupture_session"])).any()


def test_one_million_sessions_in_seconds():
    rng = np.random.default_rng(7)
    n_clients, n_sessions = 100_000, 10
    series = pd.DataFrame(
        {
            "client": np.repeat(np.arange(n_clients), n_sessions),
            "session": np.tile(np.arange(1, n_sessions + 1), n_clients),
            "score": rng.normal(5, 1, n_clients * n_sessions),
        }
    )
    start = time.perf_counter()
    episodes = detect_ruptures(series, 1, 3)
    elapsed = time.perf_counter() - start
    assert len(episodes) > 10_000
    assert elapsed < 10.0, f"took {elapsed:.1f} s"


# ----------------------------------------------------------------------------------------
# Link to outcome
# ----------------------------------------------------------------------------------------
def statsmodels_fit(formula: str, data: pd.DataFrame, reml: bool = True) -> SimpleNamespace:
    """Stand-in for alliance.lmm.fit: ``y ~ fixed + (1 | group)`` by statsmodels MixedLM."""
    fixed, group = formula.split("+ (1 |")
    group = group.strip(" )")
    result = smf.mixedlm(fixed.strip(), data, groups=data[group]).fit(reml=reml)
    names = list(result.fe_params.index)
    est, se = result.fe_params, result.bse_fe
    fe = pd.DataFrame(
        {"estimate": est, "se": se, "df": np.inf, "t": est / se, "ci_low": est - 1.96 * se,
         "ci_high": est + 1.96 * se}, index=names,
    )  # fmt: skip
    return SimpleNamespace(fixed_effects=fe, vcov=result.cov_params().loc[names, names])


def test_outcome_formula():
    assert (
        rupture_outcome_formula("post", ["baseline", "n_sessions"])
        == "post ~ n_repaired + n_unrepaired + baseline + n_sessions + (1 | therapist)"
    )
    with pytest.raises(ValueError, match="cannot be used in a model formula"):
        rupture_outcome_formula("post score")


def test_outcome_model_recovers_effect_of_unrepaired_ruptures():
    """Detect ruptures, count them per client, model an outcome generated from the truth."""
    series, truth = simulate_injected(21, n_clients=600)
    rng = np.random.default_rng(22)
    clients = series["client"].unique()
    therapist = clients % 50
    true_counts = (
        truth.assign(rep=truth["repaired"], unrep=~truth["repaired"])
        .groupby("client")[["rep", "unrep"]]
        .sum()
        .reindex(clients, fill_value=0)
    )
    baseline = rng.normal(20, 5, len(clients))
    post = (
        5 + 0.6 * baseline
        - 1.0 * true_counts["rep"].to_numpy()
        + 4.0 * true_counts["unrep"].to_numpy()
        + rng.normal(0, 2, 50)[therapist] + rng.normal(0, 3, len(clients))
    )  # fmt: skip
    outcomes = pd.DataFrame(
        {"client": clients, "therapist": therapist, "baseline": baseline, "post": post}
    )
    episodes = detect_ruptures(series, 2, WINDOW)
    data = rupture_outcome_data(episodes, clients, outcomes)
    assert len(data) == len(clients)
    result = rupture_outcome_model(data, "post", ["baseline"], fit=statsmodels_fit)
    fe = result.fixed_effects
    for term, truth_value in (("n_unrepaired", 4.0), ("n_repaired", -1.0), ("baseline", 0.6)):
        est, se = fe.loc[term, "estimate"], fe.loc[term, "se"]
        assert abs(est - truth_value) < 3.5 * se, (term, est, se)
    assert fe.loc["n_unrepaired", "se"] < 0.6  # precise enough for the check to bite


def test_outcome_model_with_project_engine_if_available():
    lmm = pytest.importorskip("alliance.lmm")
    if not hasattr(lmm, "fit"):
        pytest.skip("alliance.lmm has no fit() yet")
    series, truth = simulate_injected(31, n_clients=300)
    clients = series["client"].unique()
    rng = np.random.default_rng(32)
    counts = rupture_counts(detect_ruptures(series, 2, WINDOW), clients)
    outcomes = pd.DataFrame(
        {"client": clients, "therapist": clients % 30,
         "post": 10 + 3 * counts["n_unrepaired"].to_numpy() + rng.normal(0, 2, 30)[clients % 30]
         + rng.normal(0, 2, len(clients))}
    )  # fmt: skip
    data = rupture_outcome_data(detect_ruptures(series, 2, WINDOW), clients, outcomes)
    ours = rupture_outcome_model(data, "post").fixed_effects
    ref = rupture_outcome_model(data, "post", fit=statsmodels_fit).fixed_effects
    assert ours.loc["n_unrepaired", "estimate"] == pytest.approx(
        ref.loc["n_unrepaired", "estimate"], rel=1e-3
    )


def test_outcome_data_and_model_validation():
    episodes = detect_ruptures(series_from(HAND), 2, 2, **HAND_RULE)
    outcomes = pd.DataFrame(
        {"client": ["A", "B", "C", "Z"], "therapist": [1, 1, 2, 2], "post": [1.0, 2.0, np.nan, 4.0]}
    )
    data = rupture_outcome_data(episodes, ["A", "B", "C"], outcomes)
    # Z has no alliance series: left out rather than given zero ruptures.
    assert list(data["client"]) == ["A", "B", "C"]
    assert list(data["n_unrepaired"]) == [0, 1, 0]  # A's second rupture is censored
    with pytest.raises(ValueError, match="one row per client"):
        rupture_outcome_data(episodes, ["A", "B", "C"], pd.concat([outcomes, outcomes]))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['therapist'\]"):
        rupture_outcome_data(episodes, ["A", "B", "C"], outcomes.drop(columns="therapist"))
    seen = {}

    def recording_fit(formula, data, reml=True):
        seen.update(formula=formula, n=len(data), reml=reml)
        return "fitted"

    with pytest.warns(UserWarning, match="dropped 1 of 3 clients"):
        assert rupture_outcome_model(data, "post", fit=recording_fit) == "fitted"
    formula = "post ~ n_repaired + n_unrepaired + (1 | therapist)"
    assert seen == {"formula": formula, "n": 2, "reml": True}
    with pytest.raises(ValueError, match="missing column"):
        rupture_outcome_model(data, "post", ["age"], fit=recording_fit)


# ----------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------
def test_trajectory_figure_marks_each_episode():
    from matplotlib.figure import Figure

    from alliance.ruptures.figures import plot_rupture_trajectories

    series = series_from(HAND)
    episodes = detect_ruptures(series, 2, 2, **HAND_RULE)
    fig = plot_rupture_trajectories(series, episodes, clients=["A", "B", "C"], ncols=2)
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["client 1", "client 2", "client 3"]
    # Thick segments run from (pre_session, pre_score) to (rupture_session, rupture_score).
    for ax, client in zip(visible, ["A", "B", "C"]):
        thick = [ln for ln in ax.get_lines() if ln.get_linewidth() == 3]
        drawn = sorted((tuple(ln.get_xdata()), tuple(ln.get_ydata())) for ln in thick)
        own = episodes[episodes["client"] == client]
        expected = sorted(
            ((p, r), (ps, rs))
            for p, r, ps, rs in zip(own["pre_session"], own["rupture_session"],
                                    own["pre_score"], own["rupture_score"])
        )  # fmt: skip
        assert drawn == expected
    default = plot_rupture_trajectories(series, episodes, max_clients=2)
    assert sum(ax.get_visible() for ax in default.axes) == 2
    with pytest.raises(ValueError, match="no clients to plot"):
        plot_rupture_trajectories(series, episodes.iloc[:0])


# ----------------------------------------------------------------------------------------
# Detection against injected episodes
# ----------------------------------------------------------------------------------------
def test_match_episodes_hand_worked():
    # Injected A4, A8, B5; detected A3, A4, A9, B7; tolerance 1. Candidate pairs: A4-A3 (1),
    # A4-A4 (0), A8-A9 (1); B5-B7 is 2 apart. Closest first: A4-A4, then A4-A3 is skipped (A4
    # is used), then A8-A9. Two matches: precision 2/4, recall 2/3.
    injected = pd.DataFrame({"client": ["A", "A", "B"], "rupture_session": [4, 8, 5]})
    detected = pd.DataFrame({"client": ["A", "A", "A", "B"], "rupture_session": [3, 4, 9, 7]})
    matched = match_episodes(detected, injected, tolerance=1)
    assert matched.values.tolist() == [["A", 4, 4], ["A", 8, 9]]
    assert match_episodes(detected, injected, tolerance=2).shape[0] == 3  # B5-B7 as well
    assert match_episodes(detected, injected, tolerance=0).values.tolist() == [["A", 4, 4]]
    with pytest.raises(ValueError, match="tolerance must be an integer"):
        match_episodes(detected, injected, tolerance=-1)


def test_detection_table_hand_worked():
    # At c = 2 the HAND rule finds A3, A7, B4, C3, C5. Injected: those five, A at session 10
    # (not found) and client Z, who has no series (left out). Precision 5/5, recall 5/6.
    injected = pd.DataFrame({"client": ["A", "A", "B", "C", "C", "A", "Z"],
                             "rupture_session": [3, 7, 4, 3, 5, 10, 2]})
    table = detection_table(series_from(HAND), injected, cs=(2, 3), repair_window=2, **HAND_RULE)
    assert list(table.columns) == DETECTION_COLUMNS
    two = table.iloc[0]
    assert (two["n_injected"], two["n_detected"], two["n_matched"]) == (6, 5, 5)
    assert two["precision"] == 1.0 and two["recall"] == pytest.approx(5 / 6)
    # At c = 3 only drops of >= 3 remain: A3 (3), B4 (3); C's drops are 2.5 each (C1->C2->C3).
    three = table.iloc[1]
    assert (three["n_detected"], three["n_matched"]) == (2, 2)


def _recovery():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ruptures_recovery.py"
    spec = importlib.util.spec_from_file_location("ruptures_recovery", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recovery_on_a_few_simulated_studies():
    """The benchmark's recovery run on 4 studies of the project's generator, dips of 2-3 SDs of
    a change (the full run of 200 is benchmarks/ruptures_recovery.py: at c = 2 the default rule
    has precision .355 (MC SE .002) and recall .605 (.004)). Floors: the 200-study value minus
    4 Monte Carlo SEs of a 4-study run (about .017 and .03), so a correct detector fails this
    test with probability well under 1 in 10,000."""
    recovery = _recovery()
    start = time.perf_counter()
    _, summary = recovery.recovery_run(4, seed=77, rules={"default": recovery.RULES["default"]})
    at_two = summary.set_index("threshold_sd").loc[2.0]
    assert at_two["n_injected"] > 250
    assert at_two["precision"] >= 0.28, at_two.to_dict()
    assert at_two["recall"] >= 0.48, at_two.to_dict()
    assert at_two["precision_se"] < 0.04 and at_two["recall_se"] < 0.06
    assert summary["recall"].is_monotonic_decreasing and summary["precision"].is_monotonic_increasing
    # Deeper dips (4-5 SDs) are found: recall >= .8 at c = 2 (200 studies: see the benchmark).
    from dataclasses import replace

    deep = replace(recovery.DETECTION_EFFECTS, rupture_depth_sd=(4.0, 5.0))
    _, deep_summary = recovery.recovery_run(4, seed=77, effects=deep, rules={"default": recovery.RULES["default"]})
    assert deep_summary.set_index("threshold_sd").loc[2.0, "recall"] >= 0.8
    assert time.perf_counter() - start < 20


def test_no_rule_reaches_80_80_with_two_to_three_sd_dips():
    """Why the issue's target is out of reach at the generator's prevalence: precision .80 at
    recall .80 allows a false-alarm rate of at most 0.2 x prevalence (0.33% of sessions at
    1.67%), and even the oracle (known noise covariance, trajectory, dip shape and depth)
    finds fewer than 80% of 2-3 SD dips at that rate; with 3-4 SD dips it could."""
    recovery = _recovery()
    effects = recovery.DETECTION_EFFECTS
    bound = recovery.oracle_bound(effects, prevalence=0.0167)
    assert bound["alpha"] == pytest.approx(0.2 * 0.0167)
    assert bound["oracle_recall"] < 0.8
    # Gaussian noise alone falls by 2 SDs of a change in Phi(-2) = 2.3% of sessions, 7x the
    # allowed rate: a 2-SD rule's precision is at most pi / (pi + 0.023) < .5 at any recall.
    assert bound["gaussian_false_alarm_at_2sd_of_change"] > 5 * bound["alpha"]
    from dataclasses import replace

    deeper = recovery.oracle_bound(replace(effects, rupture_depth_sd=(3.0, 4.0)), prevalence=0.0167)
    assert deeper["oracle_recall"] > 0.9
