"""Tests for alliance.agreement_steps: the client–therapist agreement workflow steps on files.

References used here (none is the code under test):
- hand computations with explicit numbers (scale midpoints from the published response ranges,
  dyad means, limits of agreement of dyad means, the first-therapist rule);
- numpy least squares on the centred polynomial design with the centred baseline, with a1..a5
  formed by hand from its coefficients (Edwards, 2002);
- recovery of a known response surface from simulated data with therapist effects.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alliance.agreement.steps import (
    SURFACE_COLUMNS,
    bland_altman_figure_paths,
    check_agreement_settings,
    discrepancy_tables,
    fit_surface,
    item_discrepancy,
    scale_midpoint,
    surface_data,
    write_agreement_outputs,
    write_response_surface,
)
from alliance.scoring.instruments import ScaleKey, keys_from_config, load_key
from alliance.scoring.scores import score_administrations

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTS = {
    "wai_sr": {"key": "wai_sr", "table": "client_forms", "items": "wai{n}"},
    "wai_t": {"key": "wai_sr_t", "key_file": str(ROOT / "config/example-keys/wai_t_simulated.yaml"),
              "table": "therapist_forms", "items": "twai{n}"},
    "phq9": {"key": "phq9", "table": "client_forms", "items": "phq{n}"},
}  # fmt: skip
SETTINGS = {
    "enabled": True, "client_instrument": "wai_sr", "therapist_instrument": "wai_t",
    "scales": ["goal", "task", "bond", "total"], "items": True, "loa_z": 1.96, "level": 0.95,
    "limit_se": "bland_altman",
    "surface": {"scale": "total", "sessions": None, "outcome": "phq9", "centre": "midpoint", "method": "auto"},
}  # fmt: skip


# ----------------------------------------------------------------------------------------
# Midpoints and settings
# ----------------------------------------------------------------------------------------
def test_scale_midpoints_by_hand():
    wai = load_key("wai_sr")
    assert scale_midpoint(wai, "total") == 36.0  # 12 items x (1 + 5) / 2
    assert scale_midpoint(wai, "task") == 12.0  # 4 items x 3
    assert scale_midpoint(load_key("phq9"), "total") == 13.5  # 9 items x (0 + 3) / 2
    task = wai.scales["task"]
    mean_key = dataclasses.replace(wai, scales={**wai.scales, "task": dataclasses.replace(task, scoring="mean")})
    assert scale_midpoint(mean_key, "task") == 3.0
    times_ten = dataclasses.replace(wai, scales={"task": dataclasses.replace(task, scoring="mean", multiplier=10.0)})
    assert scale_midpoint(times_ten, "task") == 30.0
    composite = ScaleKey(name="tb", label="TB", items=(), composite_of=("task", "bond"))
    assert scale_midpoint(dataclasses.replace(wai, scales={**wai.scales, "tb": composite}), "tb") == 24.0
    with pytest.raises(ValueError, match="no scale 'agency'"):
        scale_midpoint(wai, "agency")


def test_config_cross_references():
    config = {"instruments": INSTRUMENTS, "agreement": copy.deepcopy(SETTINGS)}
    check_agreement_settings(config)
    config["agreement"]["therapist_instrument"] = "wai_th"
    with pytest.raises(ValueError, match="agreement/therapist_instrument.*'wai_th'.*enabled: false"):
        check_agreement_settings(config)
    config = {"instruments": INSTRUMENTS, "agreement": copy.deepcopy(SETTINGS)}
    config["agreement"]["surface"]["scale"] = "agency"
    with pytest.raises(ValueError, match="agreement/surface/scale"):
        check_agreement_settings(config)
    assert bland_altman_figure_paths(SETTINGS)[0] == ("results/agreement/bland_altman_goal.png", "goal")


# ----------------------------------------------------------------------------------------
# Discrepancy tables (hand-worked)
# ----------------------------------------------------------------------------------------
# Two dyads, totals only. D1 sessions 1, 3: client 40, 44; therapist 38, 40 -> diffs 2, 4.
# D2 sessions 1, 3: client 30, 36; therapist 34, 36 -> diffs -4, 0. D3 session 1: 50 vs 45 -> 5.
HAND_PAIRS = pd.DataFrame({
    "client": ["C1", "C1", "C2", "C2", "C3"], "therapist": ["T1", "T1", "T2", "T2", "T3"],
    "session": [1, 3, 1, 3, 1],
    "client_total": [40.0, 44.0, 30.0, 36.0, 50.0], "therapist_total": [38.0, 40.0, 34.0, 36.0, 45.0],
})  # fmt: skip


def test_discrepancy_over_sessions_and_dyad_means_by_hand():
    settings = {**SETTINGS, "scales": ["total"]}
    summary, per_dyad = discrepancy_tables(HAND_PAIRS, settings)
    assert summary["unit"].tolist() == ["session", "dyad"]
    session = summary.iloc[0]
    diffs = np.array([2.0, 4.0, -4.0, 0.0, 5.0])
    assert session["n"] == 5 and session["mean_diff"] == pytest.approx(diffs.mean())
    dyad = summary.iloc[1]
    # Dyad means: C1 42 vs 39 (3), C2 33 vs 35 (-2), C3 50 vs 45 (5).
    dyad_diffs = np.array([3.0, -2.0, 5.0])
    sd = dyad_diffs.std(ddof=1)  # sqrt(((3-2)^2 + (-2-2)^2 + (5-2)^2) / 2) = sqrt(13)
    assert sd == pytest.approx(np.sqrt(13))
    assert dyad["n"] == 3
    assert dyad["mean_client"] == pytest.approx((42 + 33 + 50) / 3)
    assert dyad["mean_diff"] == pytest.approx(2.0)
    assert dyad["loa_low"] == pytest.approx(2.0 - 1.96 * np.sqrt(13))
    assert dyad["loa_high"] == pytest.approx(2.0 + 1.96 * np.sqrt(13))
    assert per_dyad.set_index("client").loc["C2", "mean_diff"] == pytest.approx(-2.0)
    assert list(summary.columns[:4]) == ["client_instrument", "therapist_instrument", "unit", "scale"]


def test_surface_data_first_therapist_sessions_and_outcome():
    pairs = pd.concat([HAND_PAIRS, pd.DataFrame({
        "client": ["C2"], "therapist": ["T9"], "session": [6], "client_total": [20.0], "therapist_total": [60.0],
    })], ignore_index=True)  # fmt: skip
    clients = pd.DataFrame({"client": ["C1", "C2", "C3"], "therapist": ["T1", "T2", "T3"]})
    change = pd.DataFrame({"client": ["C1", "C2", "C1"], "instrument": ["phq9", "phq9", "gad7"],
                           "pre": [20.0, 15.0, 9.0], "post": [10.0, 14.0, 5.0], "change": [-10.0, -1.0, -4.0]})
    data = surface_data(pairs, change, clients, SETTINGS)
    by = data.set_index("client")
    assert sorted(by.index) == ["C1", "C2"]  # C3 has no outcome; C2's later therapist left out
    assert by.loc["C2", "client_alliance"] == 33.0 and by.loc["C2", "therapist_alliance"] == 35.0
    assert by.loc["C1", "post"] == 10.0 and by.loc["C1", "baseline"] == 20.0
    only_three = copy.deepcopy(SETTINGS)
    only_three["surface"]["sessions"] = [3]
    by = surface_data(pairs, change, clients, only_three).set_index("client")
    assert by.loc["C1", "client_alliance"] == 44.0 and by.loc["C1", "n_sessions"] == 1


# ----------------------------------------------------------------------------------------
# Response surface on simulated dyads
# ----------------------------------------------------------------------------------------
B_TRUE = np.array([-4.0, -0.3, -0.1, 0.02, -0.04, 0.015])  # centred at 36


def simulated_surface(seed: int, n_therapists: int = 40, per_therapist: int = 10, u_sd: float = 1.5):
    rng = np.random.default_rng(seed)
    n = n_therapists * per_therapist
    therapist = np.repeat([f"T-{i:02d}" for i in range(n_therapists)], per_therapist)
    x = rng.normal(46, 6, n)
    y = 0.4 * (x - 46) + rng.normal(47, 5, n)
    xc, yc = x - 36, y - 36
    design = np.column_stack([np.ones(n), xc, yc, xc**2, xc * yc, yc**2])
    u = rng.normal(0, u_sd, n_therapists)[np.repeat(np.arange(n_therapists), per_therapist)]
    baseline = rng.normal(16, 5, n)
    # post adjusted for baseline (slope 0.6); the surface is at the baseline's sample mean
    z = design @ B_TRUE + 0.6 * (baseline - baseline.mean()) + u + rng.normal(0, 2.0, n)
    data = pd.DataFrame({"client": [f"C-{i}" for i in range(n)], "therapist": therapist,
                         "client_alliance": x, "therapist_alliance": y, "baseline": baseline, "post": z})
    return data, np.column_stack([design, baseline - baseline.mean()])


def hand_surface(b: np.ndarray) -> np.ndarray:
    b0, b1, b2, b3, b4, b5 = b
    return np.array([b1 + b2, b3 + b4 + b5, b1 - b2, b3 - b4 + b5, b3 - b5])


def test_ols_surface_equals_least_squares_and_hand_parameters():
    data, design = simulated_surface(3)
    settings = copy.deepcopy(SETTINGS)
    settings["surface"]["method"] = "ols"
    result, info = fit_surface(data, settings, 36.0)
    b, *_ = np.linalg.lstsq(design, data["post"].to_numpy(), rcond=None)
    np.testing.assert_allclose(result.coefficients["estimate"].to_numpy(), b, rtol=1e-9, atol=1e-12)
    assert result.coefficients.index[-1] == "baseline"
    np.testing.assert_allclose(result.surface["estimate"].to_numpy(), hand_surface(b[:6]), rtol=1e-9, atol=1e-12)
    assert info == {"method": "ols", "n_clients": 400, "n_dropped": 0, "n_therapists": 40,
                    "df_method": "t with n - k residual df (OLS)"}


def test_auto_method_uses_therapist_random_intercept_and_recovers_surface():
    data, _ = simulated_surface(4)
    result, info = fit_surface(data, SETTINGS, 36.0)
    assert info["method"] == "mixed" and info["n_therapists"] == 40
    assert info["variance_therapist"] == pytest.approx(1.5**2, rel=0.6)  # 40 therapists: rough
    assert result.coefficients.loc["baseline", "estimate"] == pytest.approx(0.6, abs=4 * result.coefficients.loc["baseline", "se"])
    assert "Satterthwaite" in info["df_method"]
    # each a_k has its own Satterthwaite df (residual-level terms: close to n - 7 = 393)
    assert result.surface["df"].nunique() == 5 and result.surface["df"].between(300, 400).all()
    truth = hand_surface(B_TRUE)
    for k, name in enumerate(["a1", "a2", "a3", "a4", "a5"]):
        row = result.surface.loc[name]
        assert abs(row["estimate"] - truth[k]) < 3.5 * row["se"], name
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
    assert result.surface.loc["a1", "se"] < 0.15  # precise enough for the check to bite
    one_each = data.assign(therapist=data["client"])
    assert fit_surface(one_each, SETTINGS, 36.0)[1]["method"] == "ols"


# ----------------------------------------------------------------------------------------
# Files: a small study scored with the shipped keys
# ----------------------------------------------------------------------------------------
SUBSCALE_OF_ITEM = {1: "task", 2: "task", 10: "task", 12: "task", 3: "bond", 5: "bond", 7: "bond", 9: "bond",
                    4: "goal", 6: "goal", 8: "goal", 11: "goal"}  # fmt: skip


def small_study(seed: int = 5, n_clients: int = 48, n_therapists: int = 8):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clients):
        client, therapist = f"C-{i:03d}", f"T-{i % n_therapists:02d}"
        level = rng.normal(3.8, 0.5)
        for session in (1, 3, 6):
            for respondent, prefix, shift in (("client", "wai_sr", 0.0), ("therapist", "wai_t", 0.2)):
                items = np.clip(np.round(level + shift + rng.normal(0, 0.6, 12)), 1, 5)
                row = {"client": client, "therapist": therapist, "session": session, "respondent": respondent,
                       "rater": None, **{f"{prefix}_{n}": items[n - 1] for n in range(1, 13)}}
                rows.append(row)
    administrations = pd.DataFrame(rows)
    for n in range(1, 10):  # configured but not administered here
        administrations[f"phq9_{n}"] = np.nan
    keys = keys_from_config({"instruments": INSTRUMENTS})
    scores = score_administrations(administrations, keys)
    clients = pd.DataFrame({"client": [f"C-{i:03d}" for i in range(n_clients)],
                            "therapist": [f"T-{i % n_therapists:02d}" for i in range(n_clients)]})
    pre = rng.integers(8, 24, n_clients).astype(float)
    post = np.clip(pre - rng.integers(0, 10, n_clients), 0, 27)
    change = pd.DataFrame({"client": clients["client"], "instrument": "phq9", "respondent": "client",
                           "scale": "total", "therapist": clients["therapist"], "pre": pre, "post": post,
                           "change": post - pre})
    return administrations, scores, clients, change


def test_item_discrepancy_by_hand():
    administrations, _, _, _ = small_study()
    keys = keys_from_config({"instruments": INSTRUMENTS})
    table = item_discrepancy(administrations, SETTINGS, keys)
    assert table["item"].tolist() == list(range(1, 13))
    assert dict(zip(table["item"], table["subscale"])) == SUBSCALE_OF_ITEM
    keys_ = ["client", "therapist", "session"]
    c = administrations[administrations["respondent"] == "client"].set_index(keys_)
    t = administrations[administrations["respondent"] == "therapist"].set_index(keys_)
    diff = c["wai_sr_3"] - t["wai_t_3"]
    row = table.set_index("item").loc[3]
    assert row["n"] == len(diff) and row["mean_diff"] == pytest.approx(diff.mean())
    assert row["r"] == pytest.approx(np.corrcoef(c["wai_sr_3"], t["wai_t_3"])[0, 1])
    bad = dict(keys, wai_t=dataclasses.replace(keys["wai_t"], response_max=7.0))
    with pytest.raises(ValueError, match="cannot be compared item by item.*1-7; set items: false"):
        item_discrepancy(administrations, SETTINGS, bad)


def test_write_agreement_outputs_and_surface(tmp_path):
    administrations, scores, clients, change = small_study()
    administrations.to_parquet(tmp_path / "administrations.parquet")
    scores.to_parquet(tmp_path / "scores.parquet")
    clients.to_parquet(tmp_path / "clients.parquet")
    change.to_csv(tmp_path / "change.csv", index=False)
    figures = [tmp_path / f"ba_{s}.png" for s in SETTINGS["scales"]]
    out = write_agreement_outputs(tmp_path / "scores.parquet", tmp_path / "administrations.parquet", SETTINGS,
                                  INSTRUMENTS, tmp_path / "d.csv", tmp_path / "i.csv", tmp_path / "p.csv", figures)
    discrepancy = pd.read_csv(tmp_path / "d.csv")
    assert len(discrepancy) == 8 and set(discrepancy["unit"]) == {"session", "dyad"}
    total = discrepancy[(discrepancy["unit"] == "session") & (discrepancy["scale"] == "total")].iloc[0]
    assert total["n"] == 48 * 3
    # Therapists were simulated 0.2 points per item higher: about -2.4 on the 12-60 total.
    assert total["mean_diff_ci_low"] < -2.4 * 0.6 and total["mean_diff"] < 0
    assert len(pd.read_csv(tmp_path / "i.csv")) == 12
    assert len(pd.read_csv(tmp_path / "p.csv")) == 48 * 4
    for path in figures:
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert set(out) == {"discrepancy", "items", "per_dyad"}

    no_items = {**SETTINGS, "items": False}
    write_agreement_outputs(tmp_path / "scores.parquet", tmp_path / "administrations.parquet", no_items,
                            INSTRUMENTS, tmp_path / "d2.csv", tmp_path / "i2.csv", tmp_path / "p2.csv", figures)
    empty = pd.read_csv(tmp_path / "i2.csv")
    assert empty.empty and list(empty.columns[:3]) == ["item", "subscale", "n"]

    result = write_response_surface(tmp_path / "scores.parquet", tmp_path / "change.csv",
                                    tmp_path / "clients.parquet", SETTINGS, INSTRUMENTS, tmp_path / "rs.csv",
                                    tmp_path / "rs.json", tmp_path / "rs.png")
    table = pd.read_csv(tmp_path / "rs.csv")
    assert list(table.columns) == SURFACE_COLUMNS
    assert table["parameter"].tolist() == ["b0", "b1", "b2", "b3", "b4", "b5", "baseline",
                                           "a1", "a2", "a3", "a4", "a5"]
    assert table.set_index("parameter").loc["baseline", "kind"] == "covariate"
    info = json.loads((tmp_path / "rs.json").read_text())
    assert info["centre"] == 36.0 and info["method"] == "mixed" and info["n_clients"] == 48
    assert info["n_therapists"] == 8 and result.centre == 36.0 and info["centre_rule"] == "midpoint"
    with Image.open(tmp_path / "rs.png") as image:
        assert image.format == "PNG"
    assert not (tmp_path / "rs_caption.rst").exists()


def test_surface_at_grand_mean_on_post_with_baseline_and_its_caption(tmp_path):
    _, scores, clients, change = small_study()
    scores.to_parquet(tmp_path / "scores.parquet")
    clients.to_parquet(tmp_path / "clients.parquet")
    change.to_csv(tmp_path / "change.csv", index=False)
    settings = copy.deepcopy(SETTINGS)
    settings["surface"]["centre"] = "grand_mean"
    result = write_response_surface(tmp_path / "scores.parquet", tmp_path / "change.csv",
                                    tmp_path / "clients.parquet", settings, INSTRUMENTS, tmp_path / "rs.csv",
                                    tmp_path / "rs.json", tmp_path / "rs.png", tmp_path / "rs_caption.rst")
    # By hand: each client's mean total over sessions 1, 3, 6 on both forms, pooled.
    totals = scores[(scores["scale"] == "total")]
    means = totals.groupby(["client", "respondent"])["score"].mean()
    assert result.centre == pytest.approx(means.mean(), rel=1e-12)
    assert result.covariate_means["baseline"] == pytest.approx(change["pre"].mean())
    info = json.loads((tmp_path / "rs.json").read_text())
    assert info["centre_rule"] == "grand_mean" and "pooled grand mean" in info["centring"]
    assert info["z"].startswith("phq9 post") and "baseline" in info["covariates"]
    assert set(info["tests"]) == {"a1", "a2", "a3", "a4", "a5"}
    caption = (tmp_path / "rs_caption.rst").read_text(encoding="utf-8")
    assert "pooled grand mean" in caption and "adjusted for the baseline" in caption
    for name, row in result.surface.iterrows():
        # the test as printed: t with the parameter's own Satterthwaite df
        assert f"{name} = " in caption and f"t({row['df']:.1f})" in caption, name
    from docutils.core import publish_parts  # the report renders captions with docutils

    html = publish_parts(caption, writer="html", settings_overrides={"halt_level": 2})["body"]
    assert html.count("<li>") == 5
