"""The example generator's rupture injection, in the units the rupture detector uses.

References used here (none is the code under test): the observed WAI-SR scores of simulated
studies (the mean of the answered items, as the pipeline scores them), whose realised
within-client SD is computed here directly with pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance.simulate import SimulationEffects, observed_change_sd, observed_within_sd, simulate_study


def observed(study) -> pd.DataFrame:
    forms = study.client_forms
    items = forms[[f"wai{k}" for k in range(1, 13)]].astype(float)
    score = items.mean(axis=1).where(items.isna().sum(axis=1) <= 1)
    return pd.DataFrame({"client": forms["client_id"], "session": forms["session"], "score": score}).dropna()


@pytest.fixture(scope="module")
def studies():
    effects = SimulationEffects(rupture_depth_unit="observed")
    return [simulate_study(seed=seed, effects=effects) for seed in (3, 4)]


def test_dip_unit_is_the_observed_within_client_sd(studies):
    """The unit of the injected depth is the pooled within-client SD of the observed score of
    clients without a rupture (what the detector's own-SD yardstick estimates), to within 5%."""
    unit = observed_within_sd(SimulationEffects())
    assert unit != SimulationEffects().alliance_sd_within  # the example's default unit is the latent SD
    for study in studies:
        assert study.truth["rupture_sd_unit"] == unit
        series = observed(study)
        clean = series[~series["client"].isin({e["client_id"] for e in study.truth["ruptures"]})]
        by = clean.groupby("client")["score"]
        realised = np.sqrt((by.var(ddof=1) * (by.size() - 1)).sum() / (by.size() - 1).sum())
        assert realised == pytest.approx(unit, rel=0.05)


def test_injected_depth_is_in_observed_sds(studies):
    """Depth in points = depth_sd x the unit; the observed fall from the mean of the two sessions
    before the rupture to the rupture session, in observed SDs, averages about the injected
    depth (2-3 SD; noise and the ceiling of the 1-5 scale take a little off)."""
    unit = observed_within_sd(SimulationEffects())
    falls, depths = [], []
    for study in studies:
        by = observed(study).set_index(["client", "session"])["score"]
        for e in study.truth["ruptures"]:
            assert e["depth_points"] == pytest.approx(e["depth_sd"] * unit, rel=1e-12)
            assert 2.0 <= e["depth_sd"] <= 3.0
            keys = [(e["client_id"], e["rupture_session"] - k) for k in (2, 1)]
            if all(k in by.index for k in keys) and (e["client_id"], e["rupture_session"]) in by.index:
                pre = by.loc[keys].mean()
                falls.append((pre - by.loc[(e["client_id"], e["rupture_session"])]) / unit)
                depths.append(e["depth_sd"])
    assert len(falls) > 100
    assert 0.75 * np.mean(depths) < np.mean(falls) < 1.1 * np.mean(depths)


def test_unit_is_deterministic_and_follows_the_item_model():
    assert observed_within_sd(SimulationEffects()) == observed_within_sd(SimulationEffects())
    noisier = observed_within_sd(SimulationEffects(wai_item_sd=1.0))
    assert noisier > observed_within_sd(SimulationEffects())


def test_change_unit_is_the_observed_sd_of_a_change():
    """``observed_change``: the unit is the root mean squared successive difference of the
    observed score of clients without a rupture (what the default detector's yardstick,
    sd_basis "client_change", estimates), to within 5% in simulated studies; dips are that many
    points deep."""
    effects = SimulationEffects(rupture_depth_unit="observed_change")
    unit = observed_change_sd(effects)
    assert unit == pytest.approx(1.16 * observed_within_sd(effects), rel=0.08)  # sqrt(2 (1 - r1)), r1 ~ .33
    for seed in (5, 6):
        study = simulate_study(seed=seed, effects=effects)
        assert study.truth["rupture_sd_unit"] == unit
        series = observed(study)
        clean = series[~series["client"].isin({e["client_id"] for e in study.truth["ruptures"]})]
        clean = clean.sort_values(["client", "session"])
        change = clean.groupby("client")["score"].diff().dropna()
        assert float(np.sqrt(np.mean(change**2))) == pytest.approx(unit, rel=0.05)
        for e in study.truth["ruptures"]:
            assert e["depth_points"] == pytest.approx(e["depth_sd"] * unit, rel=1e-12)


def test_unknown_unit_is_refused():
    with pytest.raises(ValueError, match="rupture_depth_unit"):
        simulate_study(seed=1, effects=SimulationEffects(rupture_depth_unit="points"))
