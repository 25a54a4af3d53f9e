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


# --- multilevel and declared-structure omega (tests/data/psychometrics_ml, lavaan 0.6-14) -----

ML_DATA = Path(__file__).parent / "data" / "psychometrics_ml"
WAI_GROUPS = ["task", "task", "bond", "goal", "bond", "goal", "bond", "goal", "bond", "task", "goal", "task"]


def _ml_reference():
    return json.loads((ML_DATA / "reference.json").read_text())


def test_multilevel_alpha_and_omega_match_a_lavaan_two_level_cfa():
    # Balanced fixture (150 clients x 5 sessions), where MUML is the ML of lavaan's two-level
    # fit; 1e-5 is the convergence tolerance of the two optimisers.
    from alliance.scoring.psychometrics import multilevel_reliability

    data = pd.read_csv(ML_DATA / "twolevel.csv")
    ref = _ml_reference()["twolevel"]
    got = multilevel_reliability(data.filter(like="y"), data["client"])
    for name in ("alpha_within", "alpha_between", "omega_within", "omega_between"):
        assert got[name] == pytest.approx(ref[name], abs=1e-5), name


def test_bifactor_omega_matches_a_lavaan_bifactor_cfa():
    from alliance.scoring.psychometrics import bifactor_omega

    data = pd.read_csv(ML_DATA / "bifactor.csv")
    ref = _ml_reference()["bifactor"]
    model = bifactor_omega(data, WAI_GROUPS)
    observed = bifactor_omega(data, WAI_GROUPS, variance="observed")
    assert model["omega_total"] == pytest.approx(ref["omega_total"], abs=1e-5)
    assert model["omega_hierarchical"] == pytest.approx(ref["omega_hierarchical"], abs=1e-5)
    assert observed["omega_total"] == pytest.approx(ref["omega_total_observed"], abs=1e-5)
    assert observed["omega_hierarchical"] == pytest.approx(ref["omega_hierarchical_observed"], abs=1e-5)
    assert model["omega_hierarchical"] < model["omega_total"]


def test_bifactor_omega_on_a_population_with_known_loadings():
    # Hand-worked: 12 items, general loading .6, group loading .4 (3 groups of 4), unique
    # variance .48. Sum of general loadings 7.2, of each group 1.6: V = 51.84 + 3 * 2.56 +
    # 12 * .48 = 65.28; omega_h = 51.84 / 65.28 = .794118; omega_t = 59.52 / 65.28 = .911765.
    from alliance.scoring.psychometrics import bifactor_omega

    loadings = np.zeros((12, 4))
    loadings[:, 0] = 0.6
    for j, g in enumerate(("task", "bond", "goal")):
        loadings[[i for i, x in enumerate(WAI_GROUPS) if x == g], j + 1] = 0.4
    sigma = loadings @ loadings.T + np.diag(np.full(12, 0.48))
    x = _exact_sample(sigma, 400)
    got = bifactor_omega(x, WAI_GROUPS)
    assert got["omega_hierarchical"] == pytest.approx(51.84 / 65.28, abs=1e-6)
    assert got["omega_total"] == pytest.approx(59.52 / 65.28, abs=1e-6)


def _exact_sample(sigma, n, seed=5):
    # Data whose sample covariance (n - 1 divisor) equals sigma exactly.
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, sigma.shape[0]))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
    return z @ np.linalg.cholesky(sigma).T


def test_cluster_bootstrap_is_seeded_and_wider_than_feldt_when_clients_repeat():
    from alliance.scoring.psychometrics import cluster_bootstrap_reliability

    data = pd.read_csv(ML_DATA / "twolevel.csv")
    x, clients = data.filter(like="y"), data["client"]
    first = cluster_bootstrap_reliability(x, clients, n_boot=100, seed=11)
    assert first == cluster_bootstrap_reliability(x, clients, n_boot=100, seed=11)
    alpha, feldt_low, feldt_high = cronbach_alpha(x)
    assert first["alpha_ci_low"] < alpha < first["alpha_ci_high"]
    # 5 administrations per client that share a between-client part: independence understates
    # the uncertainty (design effect 1 + (m - 1) ICC); the cluster interval is wider.
    assert first["alpha_ci_high"] - first["alpha_ci_low"] > 1.5 * (feldt_high - feldt_low)
    ref = _ml_reference()["twolevel"]
    for name in ("alpha_within", "alpha_between", "omega_within", "omega_between"):
        assert first[f"{name}_ci_low"] < ref[name] < first[f"{name}_ci_high"], name


def test_between_cluster_sums_in_order_and_by_matrix_product_agree(monkeypatch):
    """Up to _CLUSTER_SUM_IN_ORDER_UP_TO clusters the bootstrap's between-cluster covariance
    sums the clusters in order (a small study's numbers as before), above it by a matrix
    product: the intervals agree to the replicates' optimiser tolerance (1e-9; seen 1.4e-7
    relative in the limits), the point estimates exactly."""
    from alliance.scoring import psychometrics as P

    data = pd.read_csv(ML_DATA / "twolevel.csv")
    x, clients = data.filter(like="y"), data["client"]
    in_order = P.cluster_bootstrap_reliability(x, clients, n_boot=40, seed=11)
    monkeypatch.setattr(P, "_CLUSTER_SUM_IN_ORDER_UP_TO", 0)
    product = P.cluster_bootstrap_reliability(x, clients, n_boot=40, seed=11)
    assert in_order.keys() == product.keys()
    for key, value in in_order.items():
        assert product[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_declared_groups_come_from_the_keys_subscales():
    from alliance.scoring.psychometrics import declared_groups

    wai = load_key("wai_sr")
    assert declared_groups(wai, "total") == WAI_GROUPS
    assert declared_groups(wai, "bond") is None
    oq = load_key("oq45")
    groups = declared_groups(oq, "total")
    assert groups is not None and sorted(set(groups)) == ["ir", "sd", "sr"]
    assert groups.count("sd") == 25


def test_internal_consistency_table_uses_the_structure_and_the_nesting():
    data = pd.read_csv(ML_DATA / "bifactor.csv")
    admin = _admin("wai", data.to_numpy(float))
    admin["client"] = [f"C-{i // 5:04d}" for i in range(len(admin))]   # 100 clients x 5 sessions
    table = internal_consistency(admin, {"wai": load_key("wai_sr")}, seed=3, n_boot=50).set_index("scale")
    total = table.loc["total"]
    assert total["omega_model"] == "bifactor: task, bond, goal"
    from alliance.scoring.psychometrics import bifactor_omega, multilevel_reliability
    expected = bifactor_omega(data, WAI_GROUPS)
    assert total["omega_total"] == pytest.approx(expected["omega_total"], abs=1e-12)
    assert total["omega_hierarchical"] == pytest.approx(expected["omega_hierarchical"], abs=1e-12)
    assert total["n_clients"] == 100 and total["n_boot"] == 50
    assert total["ci_method"].startswith("cluster bootstrap")
    multilevel = multilevel_reliability(data, admin["client"])
    assert total["omega_within"] == pytest.approx(multilevel["omega_within"], abs=1e-12)
    assert table.loc["bond", "omega_model"] == "one factor"
    assert np.isnan(table.loc["bond", "omega_hierarchical"])


def test_no_bootstrap_replicates_keep_the_estimates_and_leave_the_repeated_rows_cis_empty():
    # scoring: reliability_bootstrap 0: the same point estimates as with replicates; the rows
    # whose clients repeat have no CI (Feldt's assumes one row per client) and say why; a
    # session's rows keep Feldt's CI.
    from alliance.scoring.psychometrics import NO_BOOTSTRAP

    data = pd.read_csv(ML_DATA / "bifactor.csv")
    admin = _admin("wai", data.to_numpy(float))
    admin["client"] = [f"C-{i // 5:04d}" for i in range(len(admin))]
    admin["session"] = [i % 5 + 1 for i in range(len(admin))]
    key = {"wai": load_key("wai_sr")}
    with_boot = internal_consistency(admin, key, seed=3, n_boot=20)
    without = internal_consistency(admin, key, seed=3, n_boot=0)
    estimates = ["n", "k", "n_clients", "alpha", "omega_total", "omega_hierarchical", "alpha_within",
                 "alpha_between", "omega_within", "omega_between"]
    pd.testing.assert_frame_equal(without[estimates], with_boot[estimates])
    assert without["ci_method"].eq(NO_BOOTSTRAP).all() and without["n_boot"].eq(0).all()
    intervals = [c for c in without.columns if c.endswith(("ci_low", "ci_high"))]
    assert without[intervals].isna().all().all() and with_boot[intervals].notna().all().all()
    at_one = internal_consistency(admin, key, session=1, n_boot=0)
    assert at_one["ci_method"].eq("Feldt").all() and at_one[["ci_low", "ci_high"]].notna().all().all()
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="n_boot"):
            internal_consistency(admin, key, n_boot=bad)


def test_rows_with_no_more_administrations_than_items_are_left_out_with_a_reason():
    rng = np.random.default_rng(8)
    key = load_key("wai_sr")
    table = internal_consistency(_admin("wai", _likert(rng, 6, loadings=np.full(12, 0.7))), {"wai": key})
    table = table.set_index("scale")
    assert table.loc["total", "status"].startswith("not estimated: 6 complete administrations for 12 items")
    assert table.loc["total", ["alpha", "ci_low", "ci_high", "omega_total"]].isna().all()
    assert (table.loc[["task", "bond", "goal"], "status"] == "ok").all()   # 6 > 4 items
    assert table.loc[["task", "bond", "goal"], "ci_method"].eq("Feldt").all()   # one row per client


def test_between_alpha_never_exceeds_one_when_the_between_covariance_is_not_positive():
    # One between-client factor with no unique between variance, 40 clients x 2 sessions: the
    # moment estimate (S_B - S_PW) / c has negative eigenvalues; unclipped, alpha_between
    # exceeds 1 (checked below), clipped it is at most 1.
    from alliance.scoring.psychometrics import _alpha_of, level_covariances, multilevel_reliability

    rng = np.random.default_rng(12)
    clients = np.repeat(np.arange(40), 2)
    x = rng.standard_normal(40)[clients, None] * 0.3 + rng.standard_normal((80, 6))
    raw = _alpha_of(level_covariances(x, clients)["sigma_b"])
    got = multilevel_reliability(x, clients)["alpha_between"]
    assert np.linalg.eigvalsh(level_covariances(x, clients)["sigma_b"]).min() < 0
    assert raw > 1 and 0 < got <= 1


def test_multilevel_omega_on_unbalanced_clusters_is_close_to_lavaans_full_ml():
    # 2-5 sessions per client: MUML uses one average cluster size, so it only approximates
    # lavaan's full-information ML; measured differences 2e-4 (within) and 4e-4 (between).
    from alliance.scoring.psychometrics import multilevel_reliability

    data = pd.read_csv(ML_DATA / "twolevel_unbalanced.csv")
    ref = _ml_reference()["twolevel_unbalanced"]
    got = multilevel_reliability(data.filter(like="y"), data["client"])
    assert got["omega_within"] == pytest.approx(ref["omega_within"], abs=1e-3)
    assert got["omega_between"] == pytest.approx(ref["omega_between"], abs=1e-3)
