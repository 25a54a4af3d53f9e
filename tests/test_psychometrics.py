"""Internal consistency against independent references.

- Cronbach's alpha and Feldt's CI against ``pingouin.cronbach_alpha`` on simulated data
  (alpha to 1e-12; CI to 5e-4 because pingouin rounds it to 3 decimals).
- Alpha, corrected item-total correlations, one-factor ML loadings and omega against
  ``psych`` 2.2.9 / ``stats::factanal`` on the fixture ``tests/data/psychometrics/items.csv``
  (reference.json, produced by ref_psych.R beside it; loadings and omega to 1e-5, the
  convergence tolerance of the R fits; alpha and item-total r to 1e-12).
- Omega on a one-factor population with known loadings (0.8, 0.7, 0.7, 0.6, 0.5, 0.4): data
  whose correlation matrix equals the model exactly, so omega = 3.7^2 / (3.7^2 + 3.61) =
  0.791329... (McDonald, 1999, one-factor omega); recovered to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin as pg
import pytest

from alliance.scoring.instruments import load_key
from alliance.scoring.psychometrics import (
    cronbach_alpha,
    internal_consistency,
    item_total_correlations,
    omega_total,
    one_factor_ml,
)

DATA = Path(__file__).parent / "data" / "psychometrics"
LOADINGS = np.array([0.8, 0.7, 0.7, 0.6, 0.5, 0.4])


def _likert(rng, n, loadings=LOADINGS, cuts=(-1.5, -0.5, 0.5, 1.5)):
    factor = rng.standard_normal(n)
    latent = factor[:, None] * loadings + rng.standard_normal((n, loadings.size)) * np.sqrt(1 - loadings ** 2)
    return np.digitize(latent, cuts) + 1.0


@pytest.mark.parametrize("seed, n", [(1, 50), (2, 300), (3, 2000)])
def test_alpha_and_feldt_ci_equal_pingouin(seed, n):
    x = pd.DataFrame(_likert(np.random.default_rng(seed), n))
    alpha, low, high = cronbach_alpha(x)
    ref_alpha, ref_ci = pg.cronbach_alpha(x)
    assert alpha == pytest.approx(ref_alpha, abs=1e-12)
    assert low == pytest.approx(ref_ci[0], abs=5e-4)
    assert high == pytest.approx(ref_ci[1], abs=5e-4)


def test_alpha_pairwise_missing_equals_pingouin_default():
    rng = np.random.default_rng(11)
    x = pd.DataFrame(_likert(rng, 400))
    x = x.mask(rng.random(x.shape) < 0.05)
    alpha, low, high = cronbach_alpha(x, nan_policy="pairwise")
    ref_alpha, ref_ci = pg.cronbach_alpha(x, nan_policy="pairwise")
    assert alpha == pytest.approx(ref_alpha, abs=1e-12)
    assert (low, high) == pytest.approx(tuple(ref_ci), abs=5e-4)
    # listwise: same alpha as pingouin (whose CI uses n before deletion; ours the complete rows)
    assert cronbach_alpha(x)[0] == pytest.approx(pg.cronbach_alpha(x, nan_policy="listwise")[0], abs=1e-12)


def test_alpha_matches_psych_and_item_total_correlations_match_r_drop():
    x = pd.read_csv(DATA / "items.csv")
    ref = json.loads((DATA / "reference.json").read_text())
    assert ref["psych_version"] == "2.2.9"
    assert cronbach_alpha(x)[0] == pytest.approx(ref["alpha_raw"], abs=1e-12)
    np.testing.assert_allclose(item_total_correlations(x), ref["item_total_r_drop"], atol=1e-12)


def test_one_factor_ml_matches_psych_fa_and_factanal():
    x = pd.read_csv(DATA / "items.csv")
    ref = json.loads((DATA / "reference.json").read_text())
    loadings, psi = one_factor_ml(np.corrcoef(x.to_numpy(float), rowvar=False))
    np.testing.assert_allclose(loadings, ref["fa_ml_loadings"], atol=1e-5)
    np.testing.assert_allclose(loadings, ref["factanal_loadings"], atol=1e-5)
    np.testing.assert_allclose(psi, ref["factanal_uniquenesses"], atol=1e-5)
    assert omega_total(x) == pytest.approx(ref["omega_from_fa_ml"], abs=1e-5)
    assert omega_total(x, variance="observed") == pytest.approx(ref["psych_omega_tot"], abs=1e-5)


def test_omega_recovers_a_known_one_factor_population():
    corr = np.outer(LOADINGS, LOADINGS)
    np.fill_diagonal(corr, 1.0)
    expected = LOADINGS.sum() ** 2 / (LOADINGS.sum() ** 2 + (1 - LOADINGS ** 2).sum())
    assert expected == pytest.approx(0.7913294797687862, abs=1e-15)
    loadings, psi = one_factor_ml(corr)
    np.testing.assert_allclose(loadings, LOADINGS, atol=1e-6)
    np.testing.assert_allclose(psi, 1 - LOADINGS ** 2, atol=1e-6)
    # data whose sample correlation matrix is exactly the model's
    z = np.random.default_rng(5).standard_normal((500, LOADINGS.size))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
    x = z @ np.linalg.cholesky(corr).T * np.array([1, 2, 3, 1, 5, 0.5]) + 10
    assert omega_total(x) == pytest.approx(expected, abs=1e-6)
    assert omega_total(x, variance="observed") == pytest.approx(expected, abs=1e-6)


def test_unidimensional_items_give_similar_alpha_and_omega_and_bad_input_is_refused():
    x = _likert(np.random.default_rng(9), 3000, loadings=np.full(6, 0.7))
    alpha, omega = cronbach_alpha(x)[0], omega_total(x)
    assert abs(alpha - omega) < 0.01       # tau-equivalent items: alpha = omega in the population
    with pytest.raises(ValueError, match="at least 2 items"):
        cronbach_alpha(x[:, :1])
    with pytest.raises(ValueError, match="nan_policy"):
        cronbach_alpha(x, nan_policy="drop")
    with pytest.raises(ValueError, match="variance must be"):
        omega_total(x, variance="implied")
    assert np.isnan(cronbach_alpha(x[:1])[0])


def _admin(entry: str, x: np.ndarray, respondent="client", session=1) -> pd.DataFrame:
    n = x.shape[0]
    ids = pd.DataFrame({"client": [f"C-{i:04d}" for i in range(n)], "therapist": "T-1",
                        "session": session, "respondent": respondent})
    return pd.concat([ids, pd.DataFrame(x, columns=[f"{entry}_{j + 1}" for j in range(x.shape[1])])], axis=1)


def test_internal_consistency_keys_the_items_first():
    rng = np.random.default_rng(21)
    key = load_key("oq45")
    x = _likert(rng, 600, loadings=np.full(45, 0.6), cuts=(-1.2, -0.4, 0.4, 1.2)) - 1   # 0-4, higher = worse
    raw = x.copy()
    rev = np.asarray(key.reverse_items) - 1
    raw[:, rev] = 4 - raw[:, rev]          # as answered: positively worded items run the other way
    table = internal_consistency(_admin("oq", raw), {"oq": key})
    assert list(table["scale"]) == ["sd", "ir", "sr", "total"]
    assert table["k"].tolist() == [25, 11, 9, 45]
    assert (table["n"] == 600).all()
    ir_items = np.asarray(key.scale_items("ir")) - 1
    row = table.set_index("scale").loc["ir"]
    assert row["alpha"] == pytest.approx(cronbach_alpha(x[:, ir_items])[0], abs=1e-12)
    assert row["omega_total"] == pytest.approx(omega_total(x[:, ir_items]), abs=1e-12)
    assert (table["min_item_total_r"] > 0.3).all()   # unkeyed reversed items would correlate negatively


def test_internal_consistency_per_respondent_and_session():
    rng = np.random.default_rng(3)
    key = load_key("wai_sr")
    first = _admin("wai", _likert(rng, 200, loadings=np.full(12, 0.7)), session=1)
    second = _admin("wai", _likert(rng, 150, loadings=np.full(12, 0.7)), session=2)
    admin = pd.concat([first, second], ignore_index=True)
    everything = internal_consistency(admin, {"wai": key})
    at_two = internal_consistency(admin, {"wai": key}, session=2)
    assert everything.set_index("scale").loc["total", "n"] == 350
    assert at_two.set_index("scale").loc["total", "n"] == 150
    assert at_two["session"].eq(2).all() and everything["session"].isna().all()
    bond = np.asarray(key.scales["bond"].items) - 1
    expected = cronbach_alpha(second.filter(like="wai_").to_numpy()[:, bond])
    got = at_two.set_index("scale").loc["bond", ["alpha", "ci_low", "ci_high"]].to_numpy(float)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_omega_is_undefined_with_no_more_complete_rows_than_items():
    # A singular item correlation matrix (n <= k) identifies no one-factor model; the answer
    # must not depend on whether LAPACK happens to detect the singularity.
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(6, 45)).astype(float)
    assert np.isnan(omega_total(x))
    assert np.isfinite(omega_total(rng.normal(size=(200, 6)) + rng.normal(size=(200, 1))))
