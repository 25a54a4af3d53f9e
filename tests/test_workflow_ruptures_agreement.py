"""The rupture, agreement and inter-rater steps in the full workflow on the bundled example.

References used here (none is the code under test): the simulation truth of the example
(``data/raw/example/truth.json``: the injected rupture–repair episodes and the observer
variance components), mapped to the pipeline's pseudonyms with the example's own key.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alliance.agreement.steps import SURFACE_COLUMNS
from alliance.data.deid import load_id_key, pseudonymise
from alliance.ruptures.steps import COUNTS_COLUMNS, EFFECT_COLUMNS
from alliance.ruptures.episodes import DETECTION_COLUMNS, EPISODE_COLUMNS
from conftest import EXAMPLE, example_config, run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((EXAMPLE / "truth.json").read_text())


@pytest.fixture(scope="module")
def injected(truth, example_run) -> pd.DataFrame:
    """The injected episodes with the client pseudonyms the pipeline gave them."""
    settings = example_config()["pseudonymisation"]
    key_file = example_run / settings["key_file"]
    key = load_id_key(settings.get("key_env", "ALLIANCE_ID_KEY"), str(key_file))
    episodes = pd.DataFrame(truth["ruptures"])
    episodes["client"] = pseudonymise(episodes["client_id"], "client", key).to_numpy()
    return episodes


def read(example_run, rel: str) -> pd.DataFrame:
    return pd.read_csv(example_run / "results" / rel)


def test_rupture_tables_have_both_thresholds(example_run):
    episodes = read(example_run, "ruptures/episodes.csv")
    assert list(episodes.columns) == EPISODE_COLUMNS
    assert sorted(episodes["threshold_sd"].unique()) == [1.0, 2.0]
    assert set(episodes["status"]) == {"repaired", "unrepaired", "censored"}
    # censored: not repaired and the window ran past the client's last session
    assert not (episodes["censored"] & episodes["repaired"]).any()
    counts = read(example_run, "ruptures/counts.csv")
    assert list(counts.columns) == COUNTS_COLUMNS
    assert counts.groupby("threshold_sd").size().tolist() == [400, 400]  # every client with WAI-SR scores
    assert counts["client"].str.fullmatch(r"C-[0-9a-f]{12}").all()
    assert (counts["n_ruptures"] == counts["n_repaired"] + counts["n_unrepaired"] + counts["n_censored"]).all()
    summary = read(example_run, "ruptures/summary.csv").set_index("threshold_sd")
    assert summary["sd"].isna().all()  # each client's own SD
    assert summary.loc[1.0, "n_episodes"] > summary.loc[2.0, "n_episodes"]
    for c in ("1", "2"):
        with Image.open(example_run / "results" / "ruptures" / f"trajectories_c{c}.png") as image:
            assert image.format == "PNG"


def test_detection_table_against_the_injected_episodes(example_run, injected):
    """The workflow's detection table, recomputed here from its own episodes (at 1 and 2 SD)
    and the example's truth mapped to pseudonyms, with the stated matching rule (same client,
    rupture sessions at most 1 apart, one-to-one) written out independently."""
    table = read(example_run, "ruptures/detection.csv").set_index("threshold_sd")
    assert list(table.columns) == [c for c in DETECTION_COLUMNS if c != "threshold_sd"]
    assert table.index.tolist() == [1.0, 1.5, 2.0, 2.5]
    assert (table["n_injected"] == len(injected)).all()  # every injected client has a series
    episodes = read(example_run, "ruptures/episodes.csv")
    truth_pairs = list(zip(injected["client"], injected["rupture_session"]))
    for c in (1.0, 2.0):
        found = episodes[episodes["threshold_sd"] == c]
        candidates = sorted((abs(si - sd), client, si, sd)
                            for client, si in truth_pairs
                            for sd in found.loc[found["client"] == client, "rupture_session"]
                            if abs(si - sd) <= 1)
        used_true, used_found, matched = set(), set(), 0
        for _, client, si, sd in candidates:
            if (client, si) not in used_true and (client, sd) not in used_found:
                used_true.add((client, si))
                used_found.add((client, sd))
                matched += 1
        assert table.loc[c, "n_detected"] == len(found)
        assert table.loc[c, "n_matched"] == matched
        assert table.loc[c, "precision"] == pytest.approx(matched / len(found))
        assert table.loc[c, "recall"] == pytest.approx(matched / len(injected))
    assert table["recall"].is_monotonic_decreasing


def test_rupture_outcome_model(example_run):
    table = read(example_run, "ruptures/outcome_model.csv")
    assert list(table.columns) == EFFECT_COLUMNS
    for c in (1.0, 2.0):
        terms = set(table.loc[table["threshold_sd"] == c, "term"])
        assert {"n_repaired", "n_unrepaired", "baseline"} <= terms
        assert "n_sessions" not in terms  # no post-treatment covariate
    fit = json.loads((example_run / "results" / "ruptures" / "outcome_model.json").read_text())
    for model in fit["models"]:
        assert model["estimable"] and model["n_therapists"] == 40 and model["n_clients"] > 350


def test_agreement_outputs(example_run):
    discrepancy = read(example_run, "agreement/discrepancy.csv")
    assert len(discrepancy) == 8
    total = discrepancy[(discrepancy["unit"] == "session") & (discrepancy["scale"] == "total")].iloc[0]
    # The therapist form was simulated to load on the client's latent alliance: a positive,
    # far from perfect correlation, and limits of agreement on either side of zero.
    assert 0.2 < total["r_ci_low"] and total["r_ci_high"] < 0.7
    assert total["loa_low"] < 0 < total["loa_high"]
    items = read(example_run, "agreement/items.csv")
    assert items["item"].tolist() == list(range(1, 13))
    per_dyad = read(example_run, "agreement/per_dyad.csv")
    assert set(per_dyad["scale"]) == {"goal", "task", "bond", "total"}
    surface = read(example_run, "agreement/response_surface.csv")
    assert list(surface.columns) == SURFACE_COLUMNS
    assert surface.loc[surface["kind"] == "surface", "parameter"].tolist() == ["a1", "a2", "a3", "a4", "a5"]
    assert surface.loc[surface["kind"] == "covariate", "parameter"].tolist() == ["baseline"]
    assert (surface["ci_low"] < surface["ci_high"]).all()
    info = json.loads((example_run / "results" / "agreement" / "response_surface.json").read_text())
    assert info["method"] == "mixed" and info["n_therapists"] == 40 and info["centre_rule"] == "grand_mean"
    # Centred where the data are (the pooled mean of the client and therapist dyad means, ~46),
    # not at the scale midpoint 36; the surface's clients are the dyads with an outcome.
    totals = per_dyad[per_dyad["scale"] == "total"]
    assert info["centre"] == pytest.approx(pd.concat([totals["mean_client"], totals["mean_therapist"]]).mean(), abs=0.5)
    # The example's therapist variance of the surface model is estimated at 0 (singular fit):
    # the Satterthwaite df of every a_k are then the residual df, n - 7 (as lmerTest gives).
    assert info["singular"] and info["variance_therapist"] == 0
    a_df = surface.loc[surface["kind"] == "surface", "df"]
    np.testing.assert_allclose(a_df, info["n_clients"] - 7, rtol=1e-3)
    caption = (example_run / "results" / "agreement" / "response_surface_caption.rst").read_text(encoding="utf-8")
    assert "pooled grand mean" in caption and all(f"a{k} = " in caption for k in range(1, 6))
    for name in ("bland_altman_goal", "bland_altman_task", "bland_altman_bond", "bland_altman_total",
                 "response_surface"):
        with Image.open(example_run / "results" / "agreement" / f"{name}.png") as image:
            assert image.format == "PNG"


def test_interrater_iccs_cover_the_simulated_values(example_run, truth):
    table = read(example_run, "reliability/interrater.csv")
    scales = table[table["level"] == "scale"]
    assert set(scales["unit"]) == {"task", "bond", "goal", "total"}
    assert set(table.loc[table["level"] == "item", "unit"]) == {f"wai_o_{n}" for n in range(1, 13)}
    assert (table["method"] == "variance_components").all()  # 2-4 of 4 coders per session: incomplete
    total = scales[scales["unit"] == "total"].set_index("mcgraw_wong")
    for name, value in (("ICC(A,1)", truth["observer"]["icc_agreement_single"]),
                        ("ICC(C,1)", truth["observer"]["icc_consistency_single"])):
        assert total.loc[name, "ci_low"] < value < total.loc[name, "ci_high"], name
    assert total["sessions_coded"].iloc[0] == truth["counts"]["observer_coded_sessions"]
    # The generator's coder leniency: 4 coders drawn with variance 0.06, realised variance in
    # truth.json. REML's rater variance estimates the realised one (within 25% here; with 4
    # coders the population value is known only to a factor of about 3).
    realised = truth["observer"]["realised"]
    assert total["var_rater"].iloc[0] == pytest.approx(realised["rater_variance"], rel=0.25)
    assert total["var_target"].iloc[0] == pytest.approx(realised["target_variance"], rel=0.15)
    leniency = read(example_run, "reliability/rater_leniency.csv")
    modes = leniency[leniency["unit"] == "total"].sort_values("leniency")
    assert len(modes) == 4 and modes["rater"].str.fullmatch(r"R-[0-9a-f]{12}").all()
    # coder_C is the generator's lenient coder (+0.38, the others within 0.06 of 0)
    assert modes["leniency"].iloc[-1] > 0.25 and modes["ci_low"].iloc[-1] > 0
    agreement = read(example_run, "reliability/interrater_agreement.csv")
    assert set(agreement["unit"]) == {f"wai_o_{n}" for n in range(1, 13)}


def test_report_shows_ruptures_agreement_and_reliability(example_run):
    # Written beside results/, not in it, so that other tests of the shared run see only its results.
    run_snakemake(example_run, "--report", "report_ruptures_agreement.html")
    html = (example_run / "report_ruptures_agreement.html").read_text(encoding="utf-8")
    for text in ("Ruptures", "Agreement", "Reliability", "trajectories_c2.png", "detection.csv", "bland_altman_total.png",
                 "response_surface.png", "interrater.csv", "rater_leniency.csv", "wai_o_pairs.png",
                 "Krippendorff", "McLaughlin", "Shanock", "McGraw", "Humberg",
                 "slope along the line of congruence (x = y): a1 = "):
        assert text in html, text
