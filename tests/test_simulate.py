"""Tests for alliance.simulate, the seeded generator of example studies.

References used here (none is the code under test):
- the generator's own specification (columns, ranges, designs) checked on its output tables;
- parameter recovery: the outcome model's b_time and b_within are re-estimated from the raw
  tables by a client fixed-effects (within) regression and b0, b_between by a between-client
  regression, with every predictor recomputed here from the items as ``truth.json`` defines it;
- Cronbach's (1951) alpha, computed here from its formula;
- a two-way additive least-squares fit of the incomplete observer design (coder leniency).

Tolerances come from 20 replications at the sizes used (SD over replications in brackets),
widened to about 3.5 SD plus the small attenuation that clipping PHQ-9 totals to 0-27 causes:
b_within +-0.12 (0.034), b_between +-0.30 (0.08; mean bias +0.07), b_time +-0.025 (0.004;
bias +0.01), b0 +-0.35 (0.085).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from alliance.simulate import (
    OQ_REVERSE_KEYED,
    SimulationDesign,
    SimulationEffects,
    Study,
    simulate_study,
    write_study,
)

SEED = 20261129
TABLE_FILES = ("client_forms", "therapist_forms", "observer_ratings", "clients")


def items(frame: pd.DataFrame, prefix: str, n: int) -> pd.DataFrame:
    return frame[[f"{prefix}{i}" for i in range(1, n + 1)]].astype(float)


def wai_score(frame: pd.DataFrame) -> pd.Series:
    """Observed WAI-SR score as truth.json defines A: mean of answered items, <= 1 of 12 missing."""
    wai = items(frame, "wai", 12)
    return wai.mean(axis=1).where(wai.isna().sum(axis=1) <= 1)


def cronbach_alpha(complete: pd.DataFrame) -> float:
    k = complete.shape[1]
    return k / (k - 1) * (1 - complete.var(ddof=1).sum() / complete.sum(axis=1).var(ddof=1))


@pytest.fixture(scope="module")
def study() -> Study:
    return simulate_study(seed=SEED)


@pytest.fixture(scope="module")
def large_study() -> Study:
    return simulate_study(SimulationDesign(n_therapists=200, n_clients=8000), seed=7)


# --------------------------------------------------------------------------- determinism


def _write_fresh(tmp_path, name, seed, fmt="csv", design=None):
    return write_study(simulate_study(design, seed=seed), tmp_path / name, fmt=fmt)


def test_same_seed_gives_byte_identical_csv(tmp_path):
    first = _write_fresh(tmp_path, "a", SEED)
    second = _write_fresh(tmp_path, "b", SEED)
    assert sorted(p.name for p in first.values()) == sorted(
        ["client_forms.csv", "therapist_forms.csv", "observer_ratings.csv", "clients.csv", "truth.json", "README.md"])
    for key, path in first.items():
        assert path.read_bytes() == second[key].read_bytes(), path.name


def test_same_seed_gives_byte_identical_parquet(tmp_path):
    design = SimulationDesign(n_therapists=10, n_clients=60)
    first = _write_fresh(tmp_path, "a", 3, "parquet", design)
    second = _write_fresh(tmp_path, "b", 3, "parquet", design)
    for key, path in first.items():
        assert path.read_bytes() == second[key].read_bytes(), path.name
    back = pd.read_parquet(first["client_forms"])
    pd.testing.assert_frame_equal(back, simulate_study(design, seed=3).client_forms)


def test_different_seeds_differ(tmp_path):
    first = _write_fresh(tmp_path, "a", SEED)
    second = _write_fresh(tmp_path, "b", SEED + 1)
    for key in TABLE_FILES:
        assert first[key].read_bytes() != second[key].read_bytes(), key
    assert json.loads(second["truth"].read_text())["seed"] == SEED + 1


def test_written_csv_reads_back_equal(tmp_path, study):
    paths = write_study(study, tmp_path)
    back = pd.read_csv(paths["client_forms"])
    expected = study.client_forms.astype({c: float for c in study.client_forms.columns if c[-1].isdigit()})
    pd.testing.assert_frame_equal(back.astype(expected.dtypes.to_dict()), expected, check_dtype=False)
    assert json.loads(paths["truth"].read_text()) == json.loads(json.dumps(study.truth))


# --------------------------------------------------------------------------- tables


def test_columns_are_as_specified(study):
    wai = [f"wai{i}" for i in range(1, 13)]
    assert list(study.client_forms.columns) == (
        ["client_id", "therapist_id", "session", "days_since_intake"] + wai
        + [f"phq{i}" for i in range(1, 10)] + [f"gad{i}" for i in range(1, 8)] + [f"oq{i}" for i in range(1, 46)])
    assert list(study.therapist_forms.columns) == (
        ["client_id", "therapist_id", "session", "days_since_intake"] + [f"twai{i}" for i in range(1, 13)])
    assert list(study.observer_ratings.columns) == (
        ["client_id", "therapist_id", "session", "rater_id"] + [f"owai{i}" for i in range(1, 13)])
    assert list(study.clients.columns) == ["client_id", "arm", "gender", "age_band"]


def test_example_size_and_id_formats(study):
    cf = study.client_forms
    assert cf["therapist_id"].nunique() == 40
    assert cf["client_id"].nunique() == 400 == len(study.clients)
    assert 4500 <= len(cf) <= 5500
    assert cf["client_id"].str.fullmatch(r"P\d{4}").all()
    assert cf["therapist_id"].str.fullmatch(r"TH\d{2}").all()
    assert set(study.observer_ratings["rater_id"]) == {"coder_A", "coder_B", "coder_C", "coder_D"}
    assert set(study.clients["client_id"]) == set(cf["client_id"])
    assert study.clients["arm"].value_counts().tolist() == [200, 200]
    assert set(study.clients["age_band"]) <= {"18-25", "26-35", "36-45", "46-55", "56-65", "66+"}


@pytest.mark.parametrize("prefix, n, lo, hi, table", [
    ("wai", 12, 1, 5, "client_forms"), ("phq", 9, 0, 3, "client_forms"), ("gad", 7, 0, 3, "client_forms"),
    ("oq", 45, 0, 4, "client_forms"), ("twai", 12, 1, 5, "therapist_forms"), ("owai", 12, 1, 7, "observer_ratings"),
])
def test_items_are_integers_in_range(study, prefix, n, lo, hi, table):
    values = items(getattr(study, table), prefix, n).to_numpy()
    present = values[~np.isnan(values)]
    assert present.size > 0
    assert np.all(present == np.round(present))
    assert present.min() == lo and present.max() == hi


def test_sessions_are_consecutive_and_days_increase(study):
    cf = study.client_forms
    n = cf.groupby("client_id")["session"].transform("size")
    assert (cf.groupby("client_id").cumcount() + 1 == cf["session"]).all()
    assert cf["session"].max() <= 20 and (n >= 1).all()
    steps = cf.groupby("client_id")["days_since_intake"].diff().dropna()
    assert (steps > 0).all()
    assert 6.5 <= steps.median() <= 7.5  # roughly weekly
    assert (cf["days_since_intake"] >= 0).all() and pd.api.types.is_integer_dtype(cf["days_since_intake"])


def test_rows_are_sorted(study):
    for name, keys in [("client_forms", ["client_id", "session"]), ("therapist_forms", ["client_id", "session"]),
                       ("observer_ratings", ["client_id", "session", "rater_id"]), ("clients", ["client_id"])]:
        frame = getattr(study, name)
        pd.testing.assert_frame_equal(frame, frame.sort_values(keys).reset_index(drop=True))
        assert not frame.duplicated(keys).any(), name


def test_caseloads_are_unequal_and_sessions_vary(study):
    caseload = study.client_forms.drop_duplicates("client_id")["therapist_id"].value_counts()
    assert caseload.min() >= 1 and caseload.max() >= 3 * caseload.min()
    sessions = study.client_forms.groupby("client_id").size()
    assert sessions.min() <= 3 and sessions.max() == 20  # dropout and full courses


def test_oq45_only_at_first_and_last_session(study):
    cf = study.client_forms
    has_oq = items(cf, "oq", 45).notna().any(axis=1)
    first_or_last = (cf["session"] == 1) | (cf["session"] == cf.groupby("client_id")["session"].transform("max"))
    assert not (has_oq & ~first_or_last).any()
    assert has_oq[first_or_last].mean() > 0.95  # skipped administrations only


def test_missing_items_and_skipped_administrations(study):
    wai = items(study.client_forms, "wai", 12)
    skipped = wai.isna().all(axis=1)
    assert 0.01 < skipped.mean() < 0.05
    assert not skipped[study.client_forms["session"] == 1].any()
    assert 0.01 < wai[~skipped].isna().to_numpy().mean() < 0.03


def test_phq_gad_oq_relations(study):
    cf = study.client_forms
    phq = items(cf, "phq", 9).sum(axis=1, min_count=9)
    gad = items(cf, "gad", 7).sum(axis=1, min_count=7)
    assert phq.max() <= 27 and gad.max() <= 21
    assert 9 <= phq.mean() <= 16  # mid-range, so clipping is rare
    assert 0.6 <= phq.corr(gad) <= 0.9


def test_oq45_reverse_keying_gives_coherent_totals(study):
    oq = items(study.client_forms, "oq", 45)
    reverse = [f"oq{i}" for i in OQ_REVERSE_KEYED]
    forward = [c for c in oq.columns if c not in reverse]
    complete = oq.dropna()
    assert len(complete) > 200
    # as answered, the positively worded items run against the rest ...
    assert complete[reverse].sum(axis=1).corr(complete[forward].sum(axis=1)) < -0.5
    scored = complete.copy()
    scored[reverse] = 4 - scored[reverse]
    # ... and scored with reversal they cohere (alpha) and track PHQ-9 severity
    assert cronbach_alpha(scored) > 0.85
    phq = items(study.client_forms.loc[complete.index], "phq", 9).sum(axis=1, min_count=9)
    assert scored.sum(axis=1).corr(phq) > 0.6


# --------------------------------------------------------------------------- designs


def test_therapist_switches_present_and_match_truth(study):
    switches = study.truth["therapist_switches"]
    assert len(switches) == 2
    cf = study.client_forms
    n_therapists = cf.groupby("client_id")["therapist_id"].nunique()
    assert set(n_therapists[n_therapists > 1].index) == {s["client_id"] for s in switches}
    for s in switches:
        rows = cf[cf["client_id"] == s["client_id"]]
        later = rows["session"] >= s["first_session_with_new_therapist"]
        assert (rows.loc[later, "therapist_id"] == s["to_therapist_id"]).all()
        assert (rows.loc[~later, "therapist_id"] == s["from_therapist_id"]).all()
        assert s["from_therapist_id"] != s["to_therapist_id"] and later.any() and (~later).any()


def test_observer_design_is_incomplete(study):
    ob = study.observer_ratings
    per_session = ob.groupby(["client_id", "session"])["rater_id"].agg(["size", "nunique"])
    assert (per_session["size"] == per_session["nunique"]).all()
    assert per_session["size"].between(2, 4).all()
    assert set(per_session["size"]) == {2, 3, 4}
    assert (per_session["size"] < 4).mean() > 0.3  # not every coder rates every session
    assert set(ob["session"]) <= {2, 5, 8}
    coded_clients = ob["client_id"].nunique()
    assert 0.2 * 400 <= coded_clients <= 0.3 * 400


def test_observer_coder_leniency_is_recovered(study):
    """Two-way additive fit rating = session + coder on the incomplete design."""
    ob = study.observer_ratings
    score = items(ob, "owai", 12).mean(axis=1).to_numpy()
    target = pd.factorize(ob["client_id"] + "/" + ob["session"].astype(str))[0]
    coders = sorted(ob["rater_id"].unique())
    coder = ob["rater_id"].map({c: k for k, c in enumerate(coders)}).to_numpy()
    X = np.zeros((len(ob), target.max() + 1 + len(coders) - 1))
    X[np.arange(len(ob)), target] = 1
    has = coder > 0
    X[np.flatnonzero(has), target.max() + coder[has]] = 1  # coder_A is the reference
    beta, *_ = np.linalg.lstsq(X, score, rcond=None)
    estimated = np.concatenate([[0.0], beta[target.max() + 1:]])
    truth = study.truth["observer"]
    true_leniency = np.array([truth["coder_leniency"][c] for c in coders])
    np.testing.assert_allclose(estimated, true_leniency - true_leniency[0], atol=0.1)
    resid = score - X @ beta
    resid_var = resid @ resid / (len(score) - X.shape[1])
    assert resid_var == pytest.approx(truth["residual_on_observed_mean"], rel=0.3)


def test_observer_truth_components_and_iccs(study):
    obs = study.truth["observer"]
    vc = obs["variance_components"]
    assert vc == {"target": 0.5, "rater": 0.06, "residual": 0.15}
    resid = obs["residual_on_observed_mean"]
    assert obs["icc_agreement_single"] == pytest.approx(vc["target"] / (vc["target"] + vc["rater"] + resid))
    assert obs["icc_consistency_single"] == pytest.approx(vc["target"] / (vc["target"] + resid))
    # true-score variance of the coded sessions matches the generating value
    assert obs["realised"]["target_variance"] == pytest.approx(0.5, rel=0.25)


def test_therapist_form_sessions_and_client_level_correlation(study):
    tf, cf = study.therapist_forms, study.client_forms
    assert set(tf["session"]) == {1, 3, 6}
    client = items(cf, "wai", 12).mean(axis=1).groupby(cf["client_id"]).mean()
    therapist = items(tf, "twai", 12).mean(axis=1).groupby(tf["client_id"]).mean()
    r = pd.concat([client, therapist], axis=1, join="inner").corr().iloc[0, 1]
    assert 0.25 <= r <= 0.55


def test_wai_sr_alpha_is_realistic(study):
    wai = items(study.client_forms, "wai", 12).dropna()
    assert 0.80 <= cronbach_alpha(wai) <= 0.95
    one_session = wai[study.client_forms.loc[wai.index, "session"] == 3]
    assert 0.80 <= cronbach_alpha(one_session) <= 0.95


def test_injected_ruptures_show_in_observed_scores(study):
    cf = study.client_forms
    score = items(cf, "wai", 12).mean(axis=1)
    by = pd.Series(score.to_numpy(), index=pd.MultiIndex.from_frame(cf[["client_id", "session"]]))
    drops, returns, persisting = [], [], []
    for e in study.truth["ruptures"]:
        c, r = e["client_id"], e["rupture_session"]
        assert e["depth_sd"] >= 2.0
        pre = by.loc[[(c, r - 2), (c, r - 1)]].mean()
        drops.append((pre - by.loc[(c, r)]) / e["depth_points"])
        if e["repaired"]:
            assert e["repair_session"] - r in (1, 2, 3)
            returns.append(by.loc[(c, e["repair_session"])] - pre)
        else:
            persisting.append(pre - by.loc[(c, r + 2)])
    assert len(drops) > 30 and len(returns) > 10 and len(persisting) > 10
    assert np.nanmean(drops) > 0.6  # observed dip is most of the latent depth (ceiling, noise)
    assert abs(np.nanmean(returns)) < 0.15  # back to the pre-rupture level when repaired
    assert np.nanmean(persisting) > 0.3  # still down when not repaired


def test_truth_records_parameters_and_definitions(study):
    truth = study.truth
    json.dumps(truth)
    assert truth["seed"] == SEED
    assert truth["effects"]["b_within"] == -1.2 and truth["effects"]["b_between"] == -2.0
    assert truth["design"]["n_clients"] == 400
    for key in ("outcome_model", "A", "A_lag", "A_client_mean", "A_grand_mean", "rupture"):
        assert key in truth["definitions"]
    assert truth["counts"]["client_sessions"] == len(study.client_forms)
    assert truth["per_wai_total_point"]["b_within"] == pytest.approx(-0.1)
    client_mean = wai_score(study.client_forms).groupby(study.client_forms["client_id"]).mean()
    assert truth["realised"]["grand_mean_client_alliance"] == pytest.approx(client_mean.mean(), rel=1e-12)


# --------------------------------------------------------------------------- recovery


def _within_between_estimates(cf: pd.DataFrame) -> dict[str, float]:
    """b_time, b_within by client fixed effects; b0, b_between by a between-client regression."""
    alliance = wai_score(cf)
    phq = items(cf, "phq", 9).mean(axis=1) * 9  # prorated total
    d = pd.DataFrame({"client": cf["client_id"], "s": cf["session"].astype(float), "a": alliance, "y": phq})
    g = d.groupby("client")
    d["abar"] = g["a"].transform("mean")
    d["lag"] = np.where(d["s"] == 1, d["a"], g["a"].shift(1))
    d["cw"] = d["lag"] - d["abar"]
    d["cm"] = d["abar"] - g["abar"].first().mean()
    d = d.dropna(subset=["y", "cw"])
    g = d.groupby("client")

    def demeaned(col):
        return (d[col] - g[col].transform("mean")).to_numpy()

    b_time, b_within = np.linalg.lstsq(np.column_stack([demeaned("s"), demeaned("cw")]), demeaned("y"), rcond=None)[0]
    d["rest"] = d["y"] - b_time * d["s"] - b_within * d["cw"]
    per_client = d.groupby("client")[["rest", "cm"]].mean()
    b0, b_between = np.linalg.lstsq(np.column_stack([np.ones(len(per_client)), per_client["cm"]]),
                                    per_client["rest"], rcond=None)[0]
    return {"b0": b0, "b_time": b_time, "b_within": b_within, "b_between": b_between}


def test_outcome_effects_are_recovered(large_study):
    estimates = _within_between_estimates(large_study.client_forms)
    truth = large_study.truth["effects"]
    tolerance = {"b0": 0.35, "b_time": 0.025, "b_within": 0.12, "b_between": 0.30}
    for name, tol in tolerance.items():
        assert estimates[name] == pytest.approx(truth[name], abs=tol), name


def test_recovery_follows_changed_effects():
    effects = SimulationEffects(b_within=0.0, b_between=-4.0)
    study = simulate_study(SimulationDesign(n_therapists=200, n_clients=8000), effects, seed=11)
    estimates = _within_between_estimates(study.client_forms)
    assert estimates["b_within"] == pytest.approx(0.0, abs=0.12)
    assert estimates["b_between"] == pytest.approx(-4.0, abs=0.4)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"n_clients": 10, "n_therapists": 20}, "n_clients"),
    ({"item_missing_share": 1.5}, "item_missing_share"),
    ({"coders_per_session": (2, 5)}, "coders_per_session"),
    ({"dropout_hazard": 1.0}, "dropout_hazard"),
    ({"therapist_form_sessions": (0, 3)}, "therapist_form_sessions"),
    ({"n_therapist_switches": 1, "n_therapists": 1, "n_clients": 5}, "n_therapist_switches"),
])
def test_bad_design_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_study(SimulationDesign(**kwargs), seed=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"sd_resid": -1.0}, "sd_resid"),
    ({"alliance_ar1": 1.0}, "alliance_ar1"),
    ({"repair_probability": 2.0}, "repair_probability"),
    ({"sessions_to_repair": (1, 5)}, "sessions_to_repair"),
])
def test_bad_effects_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_study(effects=SimulationEffects(**kwargs), seed=1)


def test_bad_seed_and_format_raise(tmp_path, study):
    with pytest.raises(ValueError, match="seed"):
        simulate_study(seed=-1)
    with pytest.raises(ValueError, match="fmt"):
        write_study(study, tmp_path, fmt="xlsx")


def test_too_many_switches_for_the_design_raises():
    design = SimulationDesign(n_therapists=2, n_clients=3, n_therapist_switches=3, dropout_hazard=0.0,
                              min_planned_sessions=2, max_sessions=3)
    with pytest.raises(ValueError, match=re.escape("n_therapist_switches = 3")):
        simulate_study(design, seed=1)


# --------------------------------------------------------------------------- dynamics (issue 15)
def test_within_client_autoregression_is_the_recursion():
    from alliance.simulate import _ar_within_client, _Sessions

    s = _Sessions.from_counts(np.array([3, 1, 4]))
    values = np.arange(1.0, 9.0)
    got = _ar_within_client(values, 0.5, s)
    expected = []
    for c in range(3):
        d = 0.0
        for v in values[s.client == c]:
            d = 0.5 * d + v
            expected.append(d)
    np.testing.assert_allclose(got, expected)
    assert _ar_within_client(values, 0.0, s) is values


def test_sudden_gains_and_feedback_act_as_configured():
    from dataclasses import replace

    from alliance.simulate import SimulationDesign, SimulationEffects, _sudden_gains, _Sessions, _symptom_feedback

    effects = replace(SimulationEffects(), sudden_gain_share=1.0, sudden_gain_size=4.0, sudden_gain_sessions=(2, 3),
                      symptom_to_alliance=-0.1)
    s = _Sessions.from_counts(np.full(200, 6))
    jump = _sudden_gains(np.random.default_rng(3), effects, s)
    per_client = pd.Series(jump).groupby(s.client)
    assert (per_client.sum() == -4.0).all()  # one gain per client
    assert set(s.session[jump != 0]) == {2, 3}
    deviation = np.random.default_rng(4).normal(size=len(s.client))
    feedback = _symptom_feedback(effects, s, deviation)
    f = np.zeros(len(s.client))  # f_t = alliance_ar1 * f_(t-1) - 0.1 * d_(t-1), by hand
    for row in np.flatnonzero(s.session > 1):
        f[row] = effects.alliance_ar1 * f[row - 1] - 0.1 * deviation[row - 1]
    np.testing.assert_allclose(feedback, f, atol=1e-12)
    with pytest.raises(ValueError, match="symptom_ar"):
        simulate_study(SimulationDesign(n_therapists=4, n_clients=20), replace(SimulationEffects(), symptom_ar=1.0), seed=1)


def test_dynamic_symptoms_carry_over_and_leave_other_streams_alone():
    from dataclasses import replace

    from alliance.simulate import SimulationDesign, SimulationEffects

    design = SimulationDesign(n_therapists=10, n_clients=120)
    static = simulate_study(design, SimulationEffects(), seed=5)
    dynamic = simulate_study(design, replace(SimulationEffects(), symptom_ar=0.6, sudden_gain_share=0.3,
                                             sudden_gain_size=3.0), seed=5)
    # the alliance forms do not depend on the symptom dynamics without feedback
    assert static.client_forms.filter(like="wai").equals(dynamic.client_forms.filter(like="wai"))
    phq = [f"phq{i}" for i in range(1, 10)]

    def lag1_within(study):
        d = study.client_forms.assign(y=study.client_forms[phq].astype(float).sum(axis=1, min_count=9))
        d["dev"] = d["y"] - d.groupby("client_id")["y"].transform("mean")
        d["prev"] = d.groupby("client_id")["dev"].shift()
        return d[["dev", "prev"]].dropna().corr().iloc[0, 1]

    assert lag1_within(dynamic) > lag1_within(static) + 0.2


def test_dynamics_truth_is_the_riclpm_within_model():
    """With dynamics on (alliance_carry "observed") the generator follows DEFINITIONS["dynamics"]:
    with L the client's alliance level (trait + therapist part + growth, redrawn here from the
    alliance stream) and W = A - L the observed score's deviation from it, pooled regressions on
    these latent quantities give W_t = alliance_ar1*W_(t-1) + symptom_to_alliance*D_(t-1) + u and
    D_t = symptom_ar*D_(t-1) + b_within*W_(t-1) + e (D: the PHQ-9 total minus its client and time
    parts): the RI-CLPM's within-person model, so its cross-lag is b_within. Tolerance: 4 OLS SEs
    (the innovations are serially independent here); PHQ-9 rounding attenuates the lagged-D
    slopes by about 1%, under one SE. When written: b_within -1.218 (SE 0.027), symptom_ar 0.391
    (0.004), alliance_ar1 0.490 (0.004), symptom_to_alliance -0.0488 (0.0006); with
    alliance_carry "latent" (item noise outside the carry-over) alliance_ar1 came out 0.374, 31 SEs off."""
    from dataclasses import replace

    import statsmodels.api as sm

    from alliance.simulate import _streams

    design = SimulationDesign(n_therapists=50, n_clients=4000, rupture_client_share=0.0, item_missing_share=0.0,
                              skipped_administration_share=0.0, n_therapist_switches=0)
    effects = replace(SimulationEffects(), symptom_ar=0.4, symptom_to_alliance=-0.05, sd_client_slope=0.0,
                      alliance_mean=3.0)
    seed = 15
    forms = simulate_study(design, effects, seed=seed).client_forms
    client = forms["client_id"].rank(method="dense").astype(int).to_numpy() - 1  # ids are sorted by index
    therapist = forms["therapist_id"].rank(method="dense").astype(int).to_numpy() - 1
    session = forms["session"].to_numpy()
    alliance_rng, outcome_rng = _streams(seed)["alliance"], _streams(seed)["outcome"]
    trait = alliance_rng.normal(effects.alliance_mean, effects.alliance_sd_between, design.n_clients)
    therapist_part = alliance_rng.normal(0.0, effects.alliance_sd_therapist, design.n_therapists)
    u_therapist = outcome_rng.normal(0.0, effects.sd_therapist, design.n_therapists)
    u0 = outcome_rng.normal(0.0, effects.sd_client_int, design.n_clients)
    client_level = trait[client] + therapist_part[therapist]
    w = wai_score(forms).to_numpy() - client_level - effects.alliance_growth * (session - 1)
    y = items(forms, "phq", 9).sum(axis=1).to_numpy()
    d = (y - effects.b0 - effects.b_time * session - effects.b_between * (client_level - effects.alliance_mean)
         - u_therapist[therapist] - u0[client])
    lagged = np.r_[False, (client[1:] == client[:-1]) & (session[1:] == session[:-1] + 1)]
    prev = np.flatnonzero(lagged) - 1
    now = np.flatnonzero(lagged)

    def slopes(response, *predictors):
        fit = sm.OLS(response, sm.add_constant(np.column_stack(predictors))).fit()
        return fit.params[1:], fit.bse[1:]

    (ar_w, w_from_d), (se_ar_w, se_w_from_d) = slopes(w[now], w[prev], d[prev])
    (ar_d, d_from_w), (se_ar_d, se_d_from_w) = slopes(d[now], d[prev], w[prev])
    assert abs(d_from_w - effects.b_within) < 4 * se_d_from_w, (d_from_w, se_d_from_w)
    assert abs(ar_d - effects.symptom_ar) < 4 * se_ar_d, (ar_d, se_ar_d)
    assert abs(ar_w - effects.alliance_ar1) < 4 * se_ar_w, (ar_w, se_ar_w)
    assert abs(w_from_d - effects.symptom_to_alliance) < 4 * se_w_from_d, (w_from_d, se_w_from_d)
    assert se_d_from_w < 0.05 * abs(effects.b_within)  # the check can see a 10% shift


def test_dynamics_latent_carry_leaves_the_item_noise_out_of_the_carry_over():
    """alliance_carry "latent": the same draws give the same first session and a different
    alliance afterwards (the items' deviation no longer carries), and a bad value is refused."""
    from dataclasses import replace

    design = SimulationDesign(n_therapists=10, n_clients=120)
    dynamic = replace(SimulationEffects(), symptom_ar=0.4, symptom_to_alliance=-0.05)
    observed = simulate_study(design, dynamic, seed=4).client_forms
    latent = simulate_study(design, replace(dynamic, alliance_carry="latent"), seed=4).client_forms
    wai = [f"wai{i}" for i in range(1, 13)]
    first = observed["session"] == 1
    assert observed.loc[first, wai].equals(latent.loc[first, wai])
    assert not observed.loc[~first, wai].equals(latent.loc[~first, wai])
    with pytest.raises(ValueError, match="alliance_carry"):
        simulate_study(design, replace(dynamic, alliance_carry="items"), seed=1)
