"""Scoring: hand-worked administrations of every usable shipped key (reverse keying, subscales,
multipliers), proration at and beyond each limit, out-of-range responses, and early alliance.

Expected values are worked out by hand in the comments; tolerances are 1e-12 (exact arithmetic
on small integers) unless a decimal response makes it 1e-9.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import yaml

from alliance.scoring.instruments import INSTRUMENTS_DIR, load_key
from alliance.scoring.scores import SCORE_COLUMNS, early_alliance, score_administrations

NAN = np.nan


def _admin(entry: str, rows: list[list[float]], respondent: str = "client", start_session: int = 1) -> pd.DataFrame:
    data = pd.DataFrame({
        "client": [f"C-{i:012x}" for i in range(len(rows))],
        "therapist": "T-000000000001",
        "session": np.arange(start_session, start_session + len(rows), dtype="int64"),
        "respondent": respondent,
        "rater": None,
    })
    items = pd.DataFrame(rows, columns=[f"{entry}_{j + 1}" for j in range(len(rows[0]))], dtype=float)
    return pd.concat([data, items], axis=1)


def _scores(entry: str, key_name: str, rows: list[list[float]]) -> pd.DataFrame:
    out = score_administrations(_admin(entry, rows), {entry: load_key(key_name)})
    return out.set_index(["client", "scale"])


def _check(out: pd.DataFrame, row: int, scale: str, score: float, answered: int, prorated: bool, tol=1e-12):
    got = out.loc[(f"C-{row:012x}", scale)]
    if np.isnan(score):
        assert np.isnan(got["score"]), f"{scale}: expected missing, got {got['score']}"
    else:
        assert got["score"] == pytest.approx(score, abs=tol), scale
    assert got["items_answered"] == answered, scale
    assert bool(got["prorated"]) is prorated, scale


def test_wai_sr_subscales_and_proration():
    complete = [5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4]
    at_limit = complete[:11] + [NAN]          # one of 12 missing: total prorated
    beyond = complete[:10] + [NAN, NAN]        # two missing: total missing
    out = _scores("wai", "wai_sr", [complete, at_limit, beyond])
    # task 1,2,10,12: 5+4+1+4; bond 3,5,7,9: 3+1+4+2; goal 4,6,8,11: 2+5+3+5
    _check(out, 0, "task", 14, 4, False)
    _check(out, 0, "bond", 10, 4, False)
    _check(out, 0, "goal", 15, 4, False)
    _check(out, 0, "total", 39, 12, False)
    # total: the 11 answered sum to 35, scaled up to 12 items: 35 / 11 * 12
    _check(out, 1, "total", 35 / 11 * 12, 11, True)
    _check(out, 1, "task", NAN, 3, False)      # 4-item subscales are never prorated
    _check(out, 1, "goal", 15, 4, False)
    _check(out, 2, "total", NAN, 10, False)


def test_phq9_sum_and_two_item_proration():
    complete = [0, 1, 2, 3, 0, 1, 2, 3, 1]                 # 13
    two_missing = [0, 1, 2, 3, 0, 1, 2, NAN, NAN]          # 9 over 7 items, x 9
    three_missing = [0, 1, 2, 3, 0, 1, NAN, NAN, NAN]
    out = _scores("phq9", "phq9", [complete, two_missing, three_missing])
    _check(out, 0, "total", 13, 9, False)
    _check(out, 1, "total", 9 / 7 * 9, 7, True)
    _check(out, 2, "total", NAN, 6, False)


def test_gad7_sum_and_no_proration():
    out = _scores("gad", "gad7", [[3, 3, 2, 1, 0, 0, 1], [3, 3, 2, 1, 0, 0, NAN]])
    _check(out, 0, "total", 10, 7, False)
    _check(out, 1, "total", NAN, 6, False)


def test_bdi_ii_sum():
    out = _scores("bdi", "bdi_ii", [[0, 1, 2, 3] * 5 + [3], [0, 1, 2, 3] * 5 + [NAN]])
    _check(out, 0, "total", 33, 21, False)
    _check(out, 1, "total", NAN, 20, False)


def test_ors_and_srs_visual_analogue_sums():
    ors = _scores("ors", "ors", [[7.5, 6.2, 8.0, 5.3], [7.5, 6.2, 8.0, NAN]])
    _check(ors, 0, "total", 27.0, 4, False, tol=1e-9)
    _check(ors, 1, "total", NAN, 3, False)
    srs = _scores("srs", "srs", [[9.1, 9.5, 8.7, 9.0]])
    _check(srs, 0, "total", 36.3, 4, False, tol=1e-9)


def _oq_base() -> list[float]:
    return [2.0] * 45


def test_oq45_reverse_keying_subscales_and_total():
    x = _oq_base()
    x[0] = 0     # item 1 (IR, reversed): scores 4
    x[11] = 4    # item 12 (SR, reversed): scores 0
    x[1] = 4     # item 2 (SD)
    x[3] = 3     # item 4 (SR)
    out = _scores("oq", "oq45", [x])
    # SD 25 x 2 + 2 = 52; IR 11 x 2 + 2 = 24; SR 9 x 2 - 2 + 1 = 17
    _check(out, 0, "sd", 52, 25, False)
    _check(out, 0, "ir", 24, 11, False)
    _check(out, 0, "sr", 17, 9, False)
    _check(out, 0, "total", 93, 45, False)


def test_oq45_rounded_mean_imputation_at_and_beyond_the_limits():
    x = _oq_base()
    x[1] = 4                  # SD item 2
    x[4] = x[5] = 3           # SD items 5, 6
    x[2] = NAN                # SD item 3 missing: 24 answered sum 4+3+3+21*2 = 52, mean 2.17 -> 2
    x[6] = x[15] = 4          # IR items 7, 16
    x[16] = 3                 # IR item 17
    x[42] = NAN               # IR item 43 missing: 10 answered sum 25, mean 2.5 -> 3 (half up)
    beyond = list(x)
    beyond[13] = NAN          # SR item 14 missing: SR allows none
    out = _scores("oq", "oq45", [x, beyond])
    _check(out, 0, "sd", 54, 24, True)      # 52 + 2 (scaling up would give 54.17)
    _check(out, 0, "ir", 28, 10, True)      # 25 + 3 (round-half-even would give 27)
    _check(out, 0, "sr", 18, 9, False)
    _check(out, 0, "total", 100, 43, True)
    _check(out, 1, "sr", NAN, 8, False)
    _check(out, 1, "total", NAN, 42, False)


def test_oq45_sd_two_missing_at_limit_three_beyond():
    x = _oq_base()
    x[1] = x[2] = NAN          # SD items 2, 3
    y = list(x)
    y[4] = NAN                 # and SD item 5
    out = _scores("oq", "oq45", [x, y])
    _check(out, 0, "sd", 50, 23, True)
    _check(out, 1, "sd", NAN, 22, False)


def test_core_om_clinical_scores_with_reversed_items():
    out = _scores("core", "core_om", [[1.0] * 34])
    # all raw 1: positively cued items (3,4,7,12,19,21,31,32) score 3, the rest 1
    _check(out, 0, "w", 20, 4, False)            # 3,1,1,3 -> mean 2 x 10
    _check(out, 0, "p", 10, 12, False)
    _check(out, 0, "f", 20, 12, False)           # six reversed: (6*3 + 6*1)/12 x 10
    _check(out, 0, "r", 10, 6, False)
    _check(out, 0, "non_risk", 44 / 28 * 10, 28, False)
    _check(out, 0, "total", 50 / 34 * 10, 34, False)


def test_core_om_domain_and_total_proration_limits():
    one_p = [1.0] * 34
    one_p[1] = NAN                       # item 2 (P)
    three = list(one_p)
    three[0] = three[2] = NAN            # items 1 and 3 (F): F loses 2, total loses 3
    four = list(three)
    four[5] = NAN                        # item 6 (R)
    out = _scores("core", "core_om", [one_p, three, four])
    _check(out, 0, "p", 10, 11, True)
    _check(out, 0, "total", 49 / 33 * 10, 33, True)
    _check(out, 1, "f", NAN, 10, False)
    # total: 50 minus item 2 (1), item 1 (1), item 3 (reversed, 3) = 45 over 31 items
    _check(out, 1, "total", 45 / 31 * 10, 31, True)
    _check(out, 1, "non_risk", 39 / 25 * 10, 25, True)   # 44 - 5 over 25: three missing, at the limit
    _check(out, 2, "total", NAN, 30, False)
    _check(out, 2, "r", NAN, 5, False)


def test_core_10_reversed_items_and_one_missing():
    out = _scores("core10", "core_10", [[4, 4, 4, 0, 0, 0, 0, 0, 0, 0], [0] * 10,
                                        [1, 2, 2, 1, 1, 1, 1, 1, 1, NAN], [1, 2, 2, 1, 1, 1, 1, 1, NAN, NAN]])
    _check(out, 0, "total", 4, 10, False)                  # items 2, 3 reversed to 0
    _check(out, 1, "total", 8, 10, False)                  # items 2, 3 reversed to 4
    _check(out, 2, "total", 11 / 9 * 10, 9, True)
    _check(out, 3, "total", NAN, 8, False)


def test_prescored_responses_are_not_reversed_again(tmp_path):
    with open(INSTRUMENTS_DIR / "core_10.yaml", encoding="utf-8") as fh:
        document = yaml.safe_load(fh)
    document["responses_prescored"] = True
    path = tmp_path / "core_10_prescored.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    out = score_administrations(_admin("core10", [[4, 4, 4, 0, 0, 0, 0, 0, 0, 0]]),
                                {"core10": load_key("core_10", key_file=path)})
    assert out["score"].iloc[0] == 12


def test_output_follows_the_data_contract():
    admin = pd.concat([_admin("phq9", [[1] * 9, [NAN] * 9]), _admin("gad", [[NAN] * 7, [2] * 7])])
    admin = pd.concat([admin[[c for c in admin.columns if not c.startswith(("phq9_", "gad_"))]].iloc[:2],
                       admin.filter(like="phq9_").iloc[:2], admin.filter(like="gad_").iloc[2:].reset_index(drop=True)],
                      axis=1)
    out = score_administrations(admin, {"phq9": load_key("phq9"), "gad": load_key("gad7")})
    assert list(out.columns) == list(SCORE_COLUMNS)
    assert out["session"].dtype == "int64" and out["items_answered"].dtype == "int64"
    assert out["prorated"].dtype == bool and out["score"].dtype == "float64"
    # row 0 answered only the PHQ-9, row 1 only the GAD-7: one score row each
    assert out[["client", "instrument", "score"]].values.tolist() == [
        ["C-000000000000", "phq9", 9.0], ["C-000000000001", "gad", 14.0]]


def test_out_of_range_responses_are_all_listed_at_once():
    admin = pd.concat([_admin("phq9", [[1] * 9, [1] * 9, [1] * 9]),
                       _admin("wai", [[3] * 12, [3] * 12, [3] * 12]).filter(like="wai_")], axis=1)
    admin.loc[2, "phq9_3"] = 4
    admin.loc[0, "phq9_9"] = -1
    admin.loc[1, "wai_5"] = 2.5
    admin.loc[1, "wai_12"] = 0
    with pytest.raises(ValueError) as err:
        score_administrations(admin, {"phq9": load_key("phq9"), "wai": load_key("wai_sr")}, source="study.parquet")
    message = str(err.value)
    assert message.startswith("study.parquet: 4 invalid response(s); nothing was scored")
    for expected in ("row 2 (position in the input, from 0), column 'phq9_3': value 4; expected 0 to 3 (whole numbers)",
                     "row 0 (position in the input, from 0), column 'phq9_9': value -1; expected 0 to 3",
                     "row 1 (position in the input, from 0), column 'wai_5': value 2.5; expected 1 to 5 (whole numbers)",
                     "row 1 (position in the input, from 0), column 'wai_12': value 0; expected 1 to 5"):
        assert expected in message


def test_visual_analogue_scale_accepts_decimals_but_not_above_ten():
    admin = _admin("srs", [[9.9, 10.0, 0.0, 10.5]])
    with pytest.raises(ValueError, match=r"column 'srs_4': value 10.5; expected 0 to 10 \(srs\)"):
        score_administrations(admin, {"srs": load_key("srs")})


def test_non_numeric_response_is_reported():
    admin = _admin("gad", [[1] * 7])
    admin["gad_2"] = admin["gad_2"].astype(object)
    admin.loc[0, "gad_2"] = "often"
    with pytest.raises(ValueError, match=r"row 0, column 'gad_2': value is a text of 5 characters \(letters\); expected a number"):
        score_administrations(admin, {"gad": load_key("gad7")})


def test_form_for_another_respondent_is_refused():
    admin = _admin("wai", [[3] * 12], respondent="therapist")
    with pytest.raises(ValueError, match=r"'wai' \(wai_sr\) is a client form but has responses from respondent\(s\) \['therapist'\]"):
        score_administrations(admin, {"wai": load_key("wai_sr")})


def test_missing_and_extra_item_columns_are_refused():
    admin = _admin("gad", [[1] * 7]).drop(columns="gad_7")
    admin["gad_8"] = 1.0
    with pytest.raises(ValueError, match=r"missing item column\(s\) \['gad_7'\]; item column\(s\) \['gad_8'\] beyond"):
        score_administrations(admin, {"gad": load_key("gad7")})


def test_scoring_is_vectorised():
    # 100,000 administrations x 3 instruments; a per-row loop would take minutes.
    rng = np.random.default_rng(7)
    n = 100_000
    keys = {"wai": load_key("wai_sr"), "phq": load_key("phq9"), "core": load_key("core_om")}
    frames = [pd.DataFrame({"client": [f"C-{i:012x}" for i in range(n)], "therapist": "T-1",
                            "session": np.ones(n, dtype="int64"), "respondent": "client"})]
    for entry, key in keys.items():
        x = rng.integers(int(key.response_min), int(key.response_max) + 1, size=(n, key.n_items)).astype(float)
        frames.append(pd.DataFrame(x, columns=[f"{entry}_{j + 1}" for j in range(key.n_items)]))
    admin = pd.concat(frames, axis=1)
    start = time.perf_counter()
    out = score_administrations(admin, keys)
    elapsed = time.perf_counter() - start
    assert len(out) == n * (4 + 1 + 6)
    assert elapsed < 10, f"scoring took {elapsed:.1f} s"
    # spot check against a direct sum: WAI-SR totals of the first 100 rows
    wai_total = out[(out["instrument"] == "wai") & (out["scale"] == "total")]["score"].to_numpy()[:100]
    np.testing.assert_array_equal(wai_total, admin.filter(like="wai_").to_numpy()[:100].sum(axis=1))


# --- early alliance -----------------------------------------------------------------------------

def _score_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["client", "therapist", "session", "instrument", "respondent", "rater",
                                       "scale", "score"]).assign(items_answered=12, prorated=False)


@pytest.fixture
def alliance_scores():
    rows = []
    for session, score in [(1, 40), (2, 44), (3, NAN), (4, 50)]:
        rows.append(("A", "T1", session, "wai", "client", None, "total", score))
    for session, score in [(2, 30), (3, 36)]:
        rows.append(("B", "T1", session, "wai", "client", None, "total", score))
    rows.append(("C", "T2", 5, "wai", "client", None, "total", 20))
    rows.append(("A", "T1", 1, "wai", "client", None, "bond", 12))
    return _score_table(rows)


@pytest.mark.parametrize("definition, expected, n_used", [
    ({"method": "session_k", "k": 3}, {"A": NAN, "B": 36, "C": NAN}, {"A": 0, "B": 1, "C": 0}),
    ({"method": "mean_1_to_k", "k": 3}, {"A": 42, "B": 33, "C": NAN}, {"A": 2, "B": 2, "C": 0}),
    ({"method": "first_up_to_k", "k": 3}, {"A": 40, "B": 30, "C": NAN}, {"A": 1, "B": 1, "C": 0}),
    ({"method": "mean_1_to_k", "k": 2, "min_sessions": 2}, {"A": 42, "B": NAN, "C": NAN}, {"A": 2, "B": 1, "C": 0}),
])
def test_early_alliance_definitions(alliance_scores, definition, expected, n_used):
    out = early_alliance(alliance_scores, definition, instrument="wai").set_index("client")
    assert list(out.index) == ["A", "B", "C"]
    for client, value in expected.items():
        got = out.loc[client, "early_alliance"]
        assert (np.isnan(got) if np.isnan(value) else got == value), (client, got)
        assert out.loc[client, "n_sessions"] == n_used[client]
    assert out.loc["C", "therapist"] == "T2"
    assert set(out["method"]) == {definition["method"]} and set(out["k"]) == {definition["k"]}


def test_early_alliance_averages_raters_and_picks_the_scale():
    scores = _score_table([("A", "T1", 1, "wai_o", "observer", "R1", "total", 4.0),
                           ("A", "T1", 1, "wai_o", "observer", "R2", "total", 6.0),
                           ("A", "T1", 1, "wai_o", "observer", "R1", "bond", 1.0)])
    out = early_alliance(scores, {"method": "session_k", "k": 1}, instrument="wai_o", scale="total")
    assert out["early_alliance"].tolist() == [5.0]


def test_early_alliance_refuses_bad_definitions(alliance_scores):
    with pytest.raises(ValueError, match="method 'median' is not one of"):
        early_alliance(alliance_scores, {"method": "median", "k": 3}, instrument="wai")
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        early_alliance(alliance_scores, {"method": "session_k", "k": 0}, instrument="wai")
    with pytest.raises(ValueError, match="no scores for instrument 'srs'"):
        early_alliance(alliance_scores, instrument="srs")
    with pytest.raises(ValueError, match="has no scale 'goal'"):
        early_alliance(alliance_scores, instrument="wai", scale="goal")


def test_nullable_pandas_dtypes_are_accepted():
    admin = pd.DataFrame({"client": pd.array(["C-1", "C-2"], dtype="string"),
                          "therapist": pd.array(["T-1", "T-1"], dtype="string"),
                          "session": pd.array([1, 2], dtype="Int64"),
                          "respondent": pd.array(["client", pd.NA], dtype="string"),
                          "rater": pd.array([pd.NA, pd.NA], dtype="string")})
    for j in range(1, 8):
        admin[f"gad_{j}"] = pd.array([2, None], dtype="Float64")
    out = score_administrations(admin, {"gad": load_key("gad7")})
    assert out[["client", "session", "score"]].values.tolist() == [["C-1", 1, 14.0]]
