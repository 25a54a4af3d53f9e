"""Tests for alliance.power: power analysis by simulation in seeded batches.

References used here (none is the code under test):
- the binomial distribution: under a true null the rejection count of a calibrated test is
  Binomial(R, alpha); the Monte Carlo SE of a power estimate is sqrt(p (1 - p) / R) (Morris,
  White & Crowther, 2019), and its Wilson interval is statsmodels' ``proportion_confint``;
- the generator's known truth (``b_within``) for the estimates of a large effect;
- numpy's SeedSequence, called here directly, for the seed derivation.

Tolerances: the null rejection rate within 3 Monte Carlo SEs of alpha = .05 (R = 100: at most
.115); the mean model SE within 3 relative MC errors (21%) of the estimates' SD; a large effect
(b_within = -4 PHQ-9 points per WAI-SR point, SE about 0.7) rejected in every replication; the
mean estimate within 3 SEs of the mean (plus 5% of the truth for the attenuation that clipping
PHQ-9 totals causes, see simulate's docstring) of -4.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from alliance.models import power as P
from alliance.models.power import PowerAnalysis, PowerCell
from alliance.models.figures import power_figure

SEED = 20261129
NULL_REPS = 100
EARLY = PowerAnalysis(model="early_alliance")
# Random intercepts only, and no random slopes in the generator, so the model is correct and fast.
SESSION_RI = PowerAnalysis(model="within_between", random="(1 | client) + (1 | therapist)",
                           effects={"sd_client_slope": 0.0})


class _Fit:
    """A stand-in fit result with the lmm result's attributes."""

    def __init__(self, term: str, estimate: float, p: float):
        self.fixed_effects = pd.DataFrame({"estimate": [estimate], "se": [1.0], "df": [10.0], "p": [p]},
                                          index=pd.Index([term], name="term"))
        self.converged, self.singular, self.nobs = True, False, 1


def fake_fit(formula, data, reml=True):
    """Fast stand-in: the 'estimate' is the data's mean early alliance, so it varies with the seed."""
    return _Fit("early_alliance", float(data["early_alliance"].mean()), 0.5)


# --------------------------------------------------------------------------- grid, ids, seeds


def test_cell_ids_round_trip():
    for cell in (PowerCell(20, 10, 8, -0.5), PowerCell(2, 1, 2, 0.0), PowerCell(5, 3, 12, 1e-7),
                 PowerCell(5, 3, 12, -0.0)):
        assert P.parse_cell_id(cell.id) == cell and P.parse_cell_id(cell.id).id == cell.id
    assert PowerCell(20, 10, 8, -0.5).id == "t20_c10_s8_e-0.5"
    with pytest.raises(ValueError, match="cell id 't20_x10_s8_e1.0'"):
        P.parse_cell_id("t20_x10_s8_e1.0")


def test_cells_refuse_bad_designs():
    with pytest.raises(ValueError, match="n_therapists = 1"):
        PowerCell(1, 5, 8, 0.0)
    with pytest.raises(ValueError, match="sessions = 1"):
        PowerCell(10, 5, 1, 0.0)
    with pytest.raises(ValueError, match="effect_size = nan"):
        PowerCell(10, 5, 8, float("nan"))


def test_grid_is_the_sorted_product():
    grid = P.power_grid([20, 10], [5], [8, 4, 8], [0.0, -1.0])
    assert len(grid) == 2 * 1 * 2 * 2 and grid == sorted(grid)
    assert PowerCell(10, 5, 4, -1.0) in grid


def test_batch_seed_is_numpys_seedsequence_of_seed_cell_and_batch():
    cell = PowerCell(20, 10, 8, -0.5)
    digest = hashlib.sha256(json.dumps([20, 10, 8, "-0.5"]).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    state = np.random.SeedSequence(SEED, spawn_key=(*words, 3)).generate_state(1, np.uint64)[0]
    assert P.batch_seed(SEED, cell, 3) == int(state) >> 1
    seeds = {P.batch_seed(s, c, b) for s in (1, 2) for c in (cell, PowerCell(20, 10, 8, -0.6)) for b in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="seed = -1"):
        P.batch_seed(-1, cell, 0)


def test_replication_seeds_do_not_depend_on_batch_length():
    assert P.replication_seeds(99, 5)[:3] == P.replication_seeds(99, 3)
    assert len(set(P.replication_seeds(99, 50))) == 50


def test_batch_plan_splits_replications():
    cells = [PowerCell(10, 5, 8, 0.0), PowerCell(10, 5, 8, -1.0)]
    plan = P.batch_plan(cells, replications=250, batch_size=100)
    assert [(p["cell_id"], p["batch"], p["n_reps"]) for p in plan] == [
        ("t10_c5_s8_e0.0", 0, 100), ("t10_c5_s8_e0.0", 1, 100), ("t10_c5_s8_e0.0", 2, 50),
        ("t10_c5_s8_e-1.0", 0, 100), ("t10_c5_s8_e-1.0", 1, 100), ("t10_c5_s8_e-1.0", 2, 50)]
    with pytest.raises(ValueError, match="batch_size = 0"):
        P.batch_plan(cells, 10, 0)


def test_power_settings_read_the_config_section():
    settings = P.power_settings({"n_therapists": [10], "clients_per_therapist": [5, 10], "sessions": [8],
                                 "effect_sizes": [0.0, -1.0], "replications": 20, "batch_size": 10,
                                 "model": "early_alliance", "design": {"dropout_hazard": 0.0}}, default_seed=7)
    assert settings["seed"] == 7 and len(settings["cells"]) == 4 and len(settings["batches"]) == 8
    assert settings["analysis"] == PowerAnalysis(model="early_alliance", design={"dropout_hazard": 0.0})
    base = {"n_therapists": [10], "clients_per_therapist": [5], "sessions": [8], "effect_sizes": [0.0],
            "replications": 2, "batch_size": 1}
    for extra, message in (({"replicates": 3}, r"unknown key\(s\) \['replicates'\]"),
                           ({"effects": {"b_within": 1.0}}, r"effects field\(s\) \['b_within'\] are set by the grid"),
                           ({"design": {"n_clients": 3}}, "set by the grid"),
                           ({"design": {"dropout": 0.1}}, r"unknown design field\(s\) \['dropout'\]"),
                           ({"model": "anova"}, "model = 'anova'"),
                           ({"sessions": 8}, "power.sessions = 8; expected a list")):
        with pytest.raises(ValueError, match=message):
            P.power_settings({**base, **extra}, default_seed=1)
    with pytest.raises(ValueError, match="no seed"):
        P.power_settings(base)


def test_simulation_design_of_a_cell():
    design = P.simulation_design(PowerCell(12, 7, 9, -1.0), PowerAnalysis(design={"dropout_hazard": 0.0}))
    assert (design.n_therapists, design.n_clients, design.min_planned_sessions, design.max_sessions) == (12, 84, 9, 9)
    assert design.dropout_hazard == 0.0 and design.observer_client_share == 0.0
    effects = P.simulation_effects(PowerCell(12, 7, 9, -1.5), EARLY)
    assert effects.b_within == effects.b_between == -1.5


# --------------------------------------------------------------------------- batches


def test_batches_are_reproducible_and_distinct():
    cell = PowerCell(6, 4, 4, -1.0)
    seed0, seed1 = P.batch_seed(SEED, cell, 0), P.batch_seed(SEED, cell, 1)
    first = P.run_batch(cell, 3, seed0, analysis=EARLY, progress=False)
    again = P.run_batch(cell, 3, seed0, analysis=EARLY, progress=False)
    pd.testing.assert_frame_equal(first, again)
    other = P.run_batch(cell, 3, seed1, analysis=EARLY, batch=1, progress=False)
    assert list(first.columns) == P.RESULT_COLUMNS
    assert (first["error"] == "").all() and first["estimate"].notna().all()
    assert not set(first["seed"]) & set(other["seed"])
    assert not np.isclose(first["estimate"].to_numpy()[:, None], other["estimate"].to_numpy()[None, :]).any()
    # Replication 1 re-run on its own from its recorded seed.
    alone = P.run_replication(cell, int(first.at[1, "seed"]), EARLY)
    assert alone["estimate"] == first.at[1, "estimate"] and alone["p"] == first.at[1, "p"]


def test_null_effect_rejects_at_alpha():
    cell = PowerCell(8, 5, 4, 0.0)
    results = pd.concat([P.run_batch(cell, NULL_REPS // 2, P.batch_seed(SEED, cell, b), analysis=EARLY, batch=b,
                                     progress=False) for b in range(2)], ignore_index=True)
    curve = P.power_curve(results)
    row = curve.iloc[0]
    assert row["n_reps"] == NULL_REPS and row["n_failed"] == 0
    mcse_at_alpha = math.sqrt(0.05 * 0.95 / NULL_REPS)
    assert abs(row["power"] - 0.05) <= 3 * mcse_at_alpha, row["power"]
    # Model SEs match the spread of the estimates (relative MC error of an SD ~ 1/sqrt(2(R-1)) = 7%).
    assert abs(row["mean_se"] / row["sd_estimate"] - 1) <= 3 / math.sqrt(2 * (NULL_REPS - 1)), row


def test_large_effect_is_detected_and_recovered():
    cell = PowerCell(8, 5, 6, -4.0)
    results = P.run_batch(cell, 4, P.batch_seed(SEED, cell, 0), analysis=SESSION_RI, progress=False)
    curve = P.power_curve(results).iloc[0]
    assert curve["term"] == "a_cw_lag" and curve["power"] == 1.0 and curve["mcse"] == 0.0
    tolerance = 3 * results["se"].mean() / math.sqrt(len(results)) + 0.05 * 4.0
    assert abs(curve["mean_estimate"] - (-4.0)) <= tolerance, curve["mean_estimate"]


def test_failed_replications_are_recorded_not_raised():
    cell = PowerCell(4, 3, 4, 0.0)
    calls = []

    def flaky(formula, data, reml=True):
        calls.append(formula)
        if len(calls) == 2:
            raise np.linalg.LinAlgError("singular matrix")
        return fake_fit(formula, data, reml)

    out = P.run_batch(cell, 3, 5, fit=flaky, analysis=EARLY, progress=False)
    assert calls[0] == "post ~ early_alliance + baseline + (1 | therapist)"
    assert out["error"].tolist() == ["", "LinAlgError: singular matrix", ""]
    assert not out.at[1, "reject"] and np.isnan(out.at[1, "estimate"])
    curve = P.power_curve(out)
    assert curve.at[0, "n_failed"] == 1 and curve.at[0, "n_reps"] == 3

    def broken(formula, data, reml=True):
        raise KeyError("no_such_column")

    with pytest.raises(ValueError, match="all 2 replications failed; first error: KeyError"):
        P.run_batch(cell, 2, 5, fit=broken, analysis=EARLY, progress=False)


def test_progress_goes_to_the_log(caplog):
    caplog.set_level(logging.INFO, logger="alliance.models.power")
    P.run_batch(PowerCell(4, 3, 4, 0.0), 2, 11, fit=fake_fit, analysis=EARLY, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "alliance.models.power"]
    assert any("power t4_c3_s4_e0.0 batch 0" in line and "2/2" in line for line in lines), lines


# --------------------------------------------------------------------------- curve and figure


def synthetic_results(rejections: int, n: int, **cell) -> pd.DataFrame:
    values = {"model": "early_alliance", "term": "early_alliance", "n_therapists": 10, "clients_per_therapist": 5,
              "sessions": 8, "effect_size": 0.0, **cell}
    p = np.r_[np.full(rejections, 0.01), np.full(n - rejections, 0.5)]
    return pd.DataFrame({**values, "seed": np.arange(n) + 1000 * values["sessions"] + int(100 * values["effect_size"]),
                         "estimate": np.linspace(-1, 1, n), "se": 1.0, "p": p, "reject": p < 0.05,
                         "converged": True, "singular": False, "error": ""})


def test_power_curve_monte_carlo_error_is_binomial():
    curve = P.power_curve(synthetic_results(37, 200)).iloc[0]
    assert curve["power"] == 37 / 200
    assert curve["mcse"] == pytest.approx(math.sqrt(0.185 * 0.815 / 200), rel=1e-12)
    low, high = proportion_confint(37, 200, alpha=0.05, method="wilson")
    assert (curve["ci_low"], curve["ci_high"]) == pytest.approx((low, high), rel=1e-9)
    assert P.power_curve(synthetic_results(37, 200), alpha=0.001).iloc[0]["power"] == 0.0


def test_power_curve_refuses_a_batch_counted_twice():
    results = synthetic_results(3, 10)
    with pytest.raises(ValueError, match="10 replication"):
        P.power_curve(pd.concat([results, results]))


def test_power_figure_has_a_panel_per_session_count():
    results = pd.concat([synthetic_results(k, 20, sessions=s, effect_size=e, n_therapists=t)
                         for k, (s, e, t) in enumerate([(4, 0.0, 10), (4, -1.0, 10), (8, 0.0, 10), (8, -1.0, 10),
                                                        (4, 0.0, 20), (4, -1.0, 20)])])
    fig = power_figure(P.power_curve(results))
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["4 sessions", "8 sessions"]
    assert len(axes[0].get_legend_handles_labels()[1]) == 2 and len(axes[1].get_legend_handles_labels()[1]) == 1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_planned_batches_use_the_planned_seed_and_size():
    settings = P.power_settings({"n_therapists": [4], "clients_per_therapist": [3], "sessions": [4],
                                 "effect_sizes": [0.0], "replications": 3, "batch_size": 2,
                                 "model": "early_alliance"}, default_seed=SEED)
    last = P.run_planned_batch(settings, "t4_c3_s4_e0.0", 1, fit=fake_fit, progress=False)
    cell = PowerCell(4, 3, 4, 0.0)
    assert len(last) == 1 and last.at[0, "batch"] == 1 and last.at[0, "batch_seed"] == P.batch_seed(SEED, cell, 1)
    direct = P.run_batch(cell, 1, P.batch_seed(SEED, cell, 1), fit=fake_fit, analysis=settings["analysis"],
                         batch=1, progress=False)
    pd.testing.assert_frame_equal(last, direct)
    with pytest.raises(ValueError, match="batch 2 is not planned"):
        P.run_planned_batch(settings, "t4_c3_s4_e0.0", 2, fit=fake_fit)
