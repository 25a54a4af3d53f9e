"""Tests of alliance.coding_agreement (alpha and kappa for coded data) against references.

References (tests/data/coding_agreement/, see README.md there):

- ``published.json``: Krippendorff (2011) 4 observers × 12 units with missing codes
  (alpha .743 nominal, .815 ordinal, .849 interval, .797 ratio); Fleiss (1971) 30 patients ×
  6 psychiatrists (kappa .430; R irr 0.4302445, z 17.65183); the 10 × 14 worked example
  (kappa .210, P-bar .378, P-bar_e .213); a SAS PROC FREQ printout for a 3 × 3 table
  (Cohen's kappa, ASE, CI, null ASE, z, p; unweighted and linear).
- ``psych_reference.json`` (``make_psych_reference.R``, R 4.2.2, psych 2.2.9): simulated
  two-coder and five-coder incomplete data with psych::cohen.kappa for every pair.
- ``irrcac_reference.json`` (``make_irrcac_reference.py``, irrCAC 0.4.4 in a throwaway
  environment): Gwet's generalised (weighted) Fleiss kappa, its SE, interval and p, and
  Krippendorff's alpha on the incomplete design.

Tolerances: published values to half their last printed digit (5e-4 for three decimals, 5e-5
for four, 5e-8 and 5e-6 for irr's seven-digit kappa and z); computer references (psych,
irrCAC, statsmodels, sklearn) 1e-10 absolute on estimates, variances and SEs (same formulas,
double precision), 1e-9 on intervals (irrCAC computes t quantiles with another scipy) and
1e-6 relative on p-values. The vectorised bootstrap alpha against ``krippendorff.alpha`` and
against the former loop over replicates (kept here as ``loop_bootstrap_alpha``): 1e-12 (the
same sums in another order). Monte Carlo checks of standard errors: 10% relative (Cohen,
2,000 multinomial replicates) and 15% (mean alpha bootstrap SE over 20 simulated studies vs
the SD over 300).
"""

from __future__ import annotations

import doctest
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import krippendorff
import pytest

from alliance.interrater import coding_agreement as ca
from alliance.interrater.coding_agreement import (
    AGREEMENT_COLUMNS,
    PAIRWISE_COLUMNS,
    agreement_weights,
    coding_agreement_table,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
)

DATA = Path(__file__).parent / "data" / "coding_agreement"
SEVEN = range(1, 8)


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


PUBLISHED = load("published.json")
PSYCH = load("psych_reference.json")
IRRCAC = load("irrcac_reference.json")


@pytest.fixture(scope="module")
def two_coders() -> pd.DataFrame:
    return pd.read_csv(DATA / "two_coders.csv")


@pytest.fixture(scope="module")
def observers() -> pd.DataFrame:
    return pd.read_csv(DATA / "observer_incomplete.csv")


def krippendorff_2011() -> pd.DataFrame:
    ref = PUBLISHED["krippendorff_2011"]
    return pd.DataFrame(
        [(unit + 1, obs, v) for obs, row in zip(ref["observers"], ref["data"])
         for unit, v in enumerate(row) if v is not None],
        columns=["unit", "observer", "value"])


def fleiss_1971() -> pd.DataFrame:
    rows = PUBLISHED["fleiss_1971"]["data"]
    return pd.DataFrame([(i, j, v) for i, row in enumerate(rows) for j, v in enumerate(row)],
                        columns=["patient", "psychiatrist", "diagnosis"])


def long_from_counts(counts) -> pd.DataFrame:
    """Subjects × categories counts as long codes (raters numbered within subject)."""
    rows = []
    for i, row in enumerate(np.asarray(counts)):
        codes = np.repeat(np.arange(1, len(row) + 1), row)
        rows += [(i, j, c) for j, c in enumerate(codes)]
    return pd.DataFrame(rows, columns=["subject", "rater", "code"])


def long_from_table(table) -> pd.DataFrame:
    """Two-rater contingency table (rows rater a, columns rater b; codes 1..q) as long codes."""
    rows, target = [], 0
    for (i, j), n in np.ndenumerate(np.asarray(table)):
        for _ in range(n):
            rows += [(target, "a", i + 1), (target, "b", j + 1)]
            target += 1
    return pd.DataFrame(rows, columns=["target", "rater", "code"])


def quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return func(*args, **kwargs)


def test_doctests():
    assert doctest.testmod(ca).failed == 0


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_krippendorff_2011(level):
    ref = PUBLISHED["krippendorff_2011"]
    res = krippendorff_alpha(krippendorff_2011(), "unit", "observer", "value", level=level)
    assert res["estimate"] == pytest.approx(ref["alpha"][level], abs=5e-4)
    # unit 12 is coded by one observer: not pairable; n.. = 40 pairable values
    assert res["n_units_pairable"] == res["n_targets"] == ref["n_units_pairable"]
    assert res["n_units_single"] == 1
    assert res["n_ratings"] == ref["n_pairable_values"]
    assert res["n_raters"] == 4
    assert np.isnan(res["se"]) and np.isnan(res["z"])


def test_alpha_ignores_unused_categories_and_row_order():
    data = krippendorff_2011()
    shuffled = data.sample(frac=1, random_state=3)
    for level in ("ordinal", "interval"):
        base = krippendorff_alpha(data, "unit", "observer", "value", level=level)["estimate"]
        wider = krippendorff_alpha(shuffled, "unit", "observer", "value", level=level,
                                   categories=range(0, 9))["estimate"]
        assert wider == pytest.approx(base, abs=1e-12)


def test_alpha_incomplete_design_matches_irrcac(observers):
    interval = krippendorff_alpha(observers, "target", "rater", "code", level="interval")
    assert interval["estimate"] == pytest.approx(
        IRRCAC["observer_code_alpha_interval"]["alpha"], abs=1e-10)
    nominal = krippendorff_alpha(observers, "target", "rater", "rupture", level="nominal")
    assert nominal["estimate"] == pytest.approx(
        IRRCAC["observer_rupture_alpha_nominal"]["alpha"], abs=1e-10)
    assert interval["n_units_pairable"] == 80 and interval["n_ratings"] == len(observers)


def test_alpha_nominal_accepts_text_codes():
    data = krippendorff_2011()
    labels = dict(zip(range(1, 6), ["a", "b", "c", "d", "e"]))
    text = data.assign(value=data["value"].map(labels))
    res = krippendorff_alpha(text, "unit", "observer", "value", level="nominal")
    assert res["estimate"] == pytest.approx(PUBLISHED["krippendorff_2011"]["alpha"]["nominal"],
                                            abs=5e-4)


def test_alpha_bootstrap_is_reproducible_and_brackets_the_estimate(observers):
    one = krippendorff_alpha(observers, "target", "rater", "code", level="ordinal",
                             n_boot=300, seed=11)
    again = krippendorff_alpha(observers, "target", "rater", "code", level="ordinal",
                               n_boot=300, seed=11)
    other = krippendorff_alpha(observers, "target", "rater", "code", level="ordinal",
                               n_boot=300, seed=12)
    assert (one["ci_low"], one["ci_high"], one["se"]) == (again["ci_low"], again["ci_high"],
                                                          again["se"])
    assert one["ci_low"] != other["ci_low"]
    assert one["ci_low"] < one["estimate"] < one["ci_high"]
    assert "percentile bootstrap" in one["ci_method"]


def simulate_coding(rng: np.random.Generator, n_targets: int = 60) -> pd.DataFrame:
    """Each target coded by 2 or 3 of 5 coders on a 1-7 scale (true score + coder noise)."""
    rows = []
    for t in range(n_targets):
        truth = rng.normal()
        for c in rng.choice(5, size=rng.integers(2, 4), replace=False):
            code = np.clip(np.rint(4 + 1.2 * truth + rng.normal(0, 0.7)), 1, 7)
            rows.append((t, c, code))
    return pd.DataFrame(rows, columns=["target", "rater", "code"])


def test_alpha_bootstrap_se_matches_sampling_sd():
    """Recovery of the SE: mean bootstrap SE over 20 studies vs the SD over 300 studies."""
    rng = np.random.default_rng(2024)
    alphas = [krippendorff_alpha(simulate_coding(rng), "target", "rater", "code")["estimate"]
              for _ in range(300)]
    sampling_sd = np.std(alphas, ddof=1)
    rng = np.random.default_rng(99)
    boot_se = [krippendorff_alpha(simulate_coding(rng), "target", "rater", "code", n_boot=200,
                                  seed=i)["se"] for i in range(20)]
    assert np.mean(boot_se) == pytest.approx(sampling_sd, rel=0.15)


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha: vectorised bootstrap replicates
# --------------------------------------------------------------------------------------------
def loop_bootstrap_alpha(counts, domain, level, n_boot, seed) -> np.ndarray:
    """Reference: the former implementation, one ``krippendorff.alpha`` call per replicate."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    out = np.empty(n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b, rows in enumerate(draws):
            out[b] = krippendorff.alpha(value_counts=counts[rows], value_domain=domain,
                                        level_of_measurement=level)
    return out[np.isfinite(out)]


def counts_of(data, target, rater, value, level="ordinal", categories=None):
    d = ca._prepare(data, target, rater, value, numeric=level != "nominal",
                    categories=categories)
    return d.counts(), d.categories


def simulated_counts(n_units: int = 300, seed: int = 8) -> np.ndarray:
    """Units coded by 2 to 5 coders (m_u - 1 = 3, 4: coincidences that are not exact binary
    fractions), codes 1-7 around a unit mean."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_units, 7), dtype=np.int64)
    for u, m in enumerate(rng.integers(2, 6, size=n_units)):
        codes = np.clip(np.rint(rng.normal(rng.uniform(1, 7), 0.8, size=m)), 1, 7).astype(int)
        np.add.at(counts[u], codes - 1, 1)
    return counts


LEVELS = ["nominal", "ordinal", "interval", "ratio"]


@pytest.mark.parametrize("level", LEVELS)
def test_vectorised_alpha_matches_package_on_krippendorff_2011(level):
    counts, domain = counts_of(krippendorff_2011(), "unit", "observer", "value")
    # unit 12 (coded once) is kept: it must contribute nothing, as in the package
    assert counts.shape == (12, 5) and counts.sum(axis=1).min() == 1
    ours = ca._alpha_of_weights(counts, np.ones((1, len(counts))), domain, level)
    package = krippendorff.alpha(value_counts=counts, value_domain=domain,
                                 level_of_measurement=level)
    assert ours.shape == (1,)
    assert ours[0] == pytest.approx(package, abs=1e-12)
    assert ours[0] == pytest.approx(PUBLISHED["krippendorff_2011"]["alpha"][level], abs=5e-4)


@pytest.mark.parametrize("level", LEVELS)
def test_vectorised_alpha_matches_package_on_resampled_tables(observers, level):
    """Unit weights from resampling draws give the alpha of the resampled table."""
    tables = [counts_of(krippendorff_2011(), "unit", "observer", "value"),
              counts_of(observers, "target", "rater", "code", categories=SEVEN),
              (simulated_counts(), np.arange(1.0, 8.0))]
    rng = np.random.default_rng(17)
    for counts, domain in tables:
        draws = rng.integers(0, len(counts), size=(6, len(counts)))
        weights = np.array([np.bincount(rows, minlength=len(counts)) for rows in draws])
        ours = ca._alpha_of_weights(counts, weights.astype(float), domain, level)
        package = [krippendorff.alpha(value_counts=counts[rows], value_domain=domain,
                                      level_of_measurement=level) for rows in draws]
        np.testing.assert_allclose(ours, package, rtol=0, atol=1e-12)


@pytest.mark.parametrize("level", LEVELS)
def test_vectorised_bootstrap_equals_loop_over_replicates(monkeypatch, level):
    counts = simulated_counts(n_units=400, seed=3)
    domain = np.arange(1.0, 8.0)
    reference = loop_bootstrap_alpha(counts, domain, level, 120, seed=21)
    # chunks of 7 replicates (the last one short): chunking must not change the draws
    monkeypatch.setattr(ca, "_BOOT_CHUNK_DRAWS", 7 * len(counts))
    chunked = ca._bootstrap_alpha(counts, domain, level, 120, seed=21)
    np.testing.assert_allclose(chunked, reference, rtol=0, atol=1e-12)
    monkeypatch.setattr(ca, "_BOOT_CHUNK_DRAWS", 10**9)
    np.testing.assert_allclose(ca._bootstrap_alpha(counts, domain, level, 120, seed=21),
                               reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("level", ["ordinal", "interval", "nominal"])
def test_alpha_bootstrap_se_and_interval_equal_the_loop(observers, level):
    column = "rupture" if level == "nominal" else "code"
    res = krippendorff_alpha(observers, "target", "rater", column, level=level, n_boot=400,
                             seed=11)
    counts, cats = counts_of(observers, "target", "rater", column, level=level)
    pairable = counts[counts.sum(axis=1) >= 2]
    domain = np.arange(len(cats)) if level == "nominal" else cats
    reps = loop_bootstrap_alpha(pairable, domain, level, 400, seed=11)
    assert res["se"] == pytest.approx(np.std(reps, ddof=1), abs=1e-12)
    assert res["ci_low"] == pytest.approx(np.quantile(reps, 0.025), abs=1e-12)
    assert res["ci_high"] == pytest.approx(np.quantile(reps, 0.975), abs=1e-12)


def test_alpha_bootstrap_leaves_out_replicates_without_variation():
    """Three units, two alike: about 8/27 of the replicates hold one code only."""
    counts = np.array([[2, 0], [2, 0], [1, 1]])
    domain = np.array([0.0, 1.0])
    reference = loop_bootstrap_alpha(counts, domain, "interval", 200, seed=4)
    assert 30 < 200 - len(reference) < 90
    with pytest.warns(UserWarning, match=f"{200 - len(reference)} of 200 bootstrap replicates"):
        ours = ca._bootstrap_alpha(counts, domain, "interval", 200, seed=4)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Cohen's kappa
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights,key", [(None, "unweighted"), ("linear", "linear")])
def test_cohen_sas_printout(weights, key):
    ref = PUBLISHED["sas_cohen_3x3"][key]
    res = cohen_kappa(long_from_table(PUBLISHED["sas_cohen_3x3"]["table"]), "target", "rater",
                      "code", weights=weights)
    assert res["estimate"] == pytest.approx(ref["kappa"], abs=5e-5)
    assert res["se"] == pytest.approx(ref["ase"], abs=5e-5)
    assert [res["ci_low"], res["ci_high"]] == pytest.approx(ref["ci"], abs=5e-5)
    assert res["se0"] == pytest.approx(ref["ase0"], abs=5e-5)
    assert res["z"] == pytest.approx(ref["z"], abs=5e-5)
    assert res["p"] == pytest.approx(ref["p"], abs=5e-5)


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_cohen_matches_psych(two_coders, weights):
    ref = PSYCH["two_coders"][f"levels_1_7_{weights}"]
    with pytest.warns(UserWarning, match="5 target"):
        plain = cohen_kappa(two_coders, "target", "rater", "code", categories=SEVEN)
    with pytest.warns(UserWarning, match="5 target"):
        weighted = cohen_kappa(two_coders, "target", "rater", "code", weights=weights,
                               categories=SEVEN)
    assert plain["n_targets"] == ref["n"] == 120 and plain["n_dropped"] == 5
    assert plain["estimate"] == pytest.approx(ref["kappa"], abs=1e-10)
    assert plain["se"] ** 2 == pytest.approx(ref["var_kappa"], abs=1e-10)
    assert [plain["ci_low"], plain["ci_high"]] == pytest.approx(ref["ci_kappa"], abs=1e-10)
    assert weighted["estimate"] == pytest.approx(ref["weighted_kappa"], abs=1e-10)


def test_cohen_weighted_matches_statsmodels_and_sklearn(two_coders):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    wide = two_coders.pivot(index="target", columns="rater", values="code").dropna()
    table = pd.crosstab(pd.Categorical(wide["A"], categories=SEVEN),
                        pd.Categorical(wide["B"], categories=SEVEN), dropna=False).to_numpy()
    for weights in (None, "linear", "quadratic"):
        ours = quiet(cohen_kappa, two_coders, "target", "rater", "code", weights=weights,
                     categories=SEVEN)
        sm = cohens_kappa(table, wt=weights) if weights else cohens_kappa(table)
        assert ours["estimate"] == pytest.approx(sm.kappa, abs=1e-10)
        assert ours["se"] == pytest.approx(sm.std_kappa, abs=1e-10)
        assert ours["se0"] == pytest.approx(sm.std_kappa0, abs=1e-10)
        assert ours["estimate"] == pytest.approx(
            cohen_kappa_score(wide["A"], wide["B"], weights=weights), abs=1e-10)


def weighted_kappas(tables: np.ndarray, W: np.ndarray) -> np.ndarray:
    p = tables / tables.sum(axis=(1, 2), keepdims=True)
    chance = p.sum(axis=2)[:, :, None] * p.sum(axis=1)[:, None, :]
    po, pe = (p * W).sum(axis=(1, 2)), (chance * W).sum(axis=(1, 2))
    return (po - pe) / (1 - pe)


def test_cohen_weighted_se_matches_multinomial_monte_carlo(two_coders):
    """The FCE (1969) SE is the SD of kappa under multinomial sampling of the table.

    psych 2.2.9 reports a larger weighted variance (its row-margin term is off), which this
    Monte Carlo shows to be wrong; the estimate itself agrees with psych.
    """
    wide = two_coders.pivot(index="target", columns="rater", values="code").dropna()
    table = pd.crosstab(pd.Categorical(wide["A"], categories=SEVEN),
                        pd.Categorical(wide["B"], categories=SEVEN), dropna=False).to_numpy()
    rng = np.random.default_rng(5)
    draws = rng.multinomial(table.sum(), (table / table.sum()).ravel(), size=2000)
    for weights in ("linear", "quadratic"):
        ours = quiet(cohen_kappa, two_coders, "target", "rater", "code", weights=weights,
                     categories=SEVEN)
        mc_sd = np.std(weighted_kappas(draws.reshape(-1, 7, 7),
                                       agreement_weights(SEVEN, weights)), ddof=1)
        assert ours["se"] == pytest.approx(mc_sd, rel=0.10)
        psych_se = np.sqrt(PSYCH["two_coders"][f"levels_1_7_{weights}"]["var_weighted"])
        assert abs(psych_se - mc_sd) > 0.5 * mc_sd


def test_cohen_unused_categories_do_not_change_weighted_kappa(two_coders):
    full = quiet(cohen_kappa, two_coders, "target", "rater", "code", weights="quadratic",
                 categories=SEVEN)
    observed = quiet(cohen_kappa, two_coders, "target", "rater", "code", weights="quadratic")
    assert observed["n_categories"] == 6 and full["n_categories"] == 7
    for key in ("estimate", "se", "se0"):
        assert observed[key] == pytest.approx(full[key], abs=1e-12)


def test_cohen_refuses_more_than_two_raters(observers):
    with pytest.raises(ValueError, match="exactly 2 raters in column 'rater', found 5"):
        cohen_kappa(observers, "target", "rater", "code")


# --------------------------------------------------------------------------------------------
# Pairwise Cohen's kappa
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("column,weights,key,levels", [
    ("code", "quadratic", "code_pairs_quadratic", SEVEN),
    ("code", "linear", "code_pairs_linear", SEVEN),
    ("rupture", None, "rupture_pairs", [0, 1]),
])
def test_pairwise_matches_psych(observers, column, weights, key, levels):
    ref = pd.DataFrame(PSYCH["observer_incomplete"][key])
    res = pairwise_cohen_kappa(observers, "target", "rater", column, weights=weights,
                               categories=levels, min_shared=1)
    assert list(res.columns) == PAIRWISE_COLUMNS
    pairs = ["rater_1", "rater_2"]
    assert res[pairs].to_numpy().tolist() == ref[pairs].to_numpy().tolist()
    assert res["n_shared"].tolist() == ref["n"].tolist()
    expected = ref["kappa"] if weights is None else ref["weighted_kappa"]
    np.testing.assert_allclose(res["estimate"], expected, atol=1e-10)
    if weights is None:  # psych's weighted variance departs from FCE 1969 (see above)
        np.testing.assert_allclose(res["se"] ** 2, ref["var_kappa"], atol=1e-10)


def test_pairwise_leaves_out_pairs_with_few_shared_targets(observers):
    with pytest.warns(UserWarning, match="2 rater pair"):
        res = pairwise_cohen_kappa(observers, "target", "rater", "code", min_shared=15)
    assert len(res) == 8 and (res["n_shared"] >= 15).all()


# --------------------------------------------------------------------------------------------
# Fleiss' kappa
# --------------------------------------------------------------------------------------------
def test_fleiss_1971_example():
    ref = PUBLISHED["fleiss_1971"]
    res = fleiss_kappa(fleiss_1971(), "patient", "psychiatrist", "diagnosis")
    assert res["estimate"] == pytest.approx(ref["kappa_published"], abs=5e-4)
    assert res["estimate"] == pytest.approx(ref["kappa_irr"], abs=5e-8)
    assert res["z"] == pytest.approx(ref["z_irr"], abs=5e-6)
    assert "Fleiss-Nee-Landis" in res["test"]
    assert (res["n_targets"], res["n_ratings"], res["n_categories"]) == (30, 180, 5)


def test_fleiss_worked_example_10_by_14():
    ref = PUBLISHED["fleiss_10x14"]
    res = fleiss_kappa(long_from_counts(ref["counts"]), "subject", "rater", "code")
    assert res["estimate"] == pytest.approx(ref["kappa"], abs=5e-4)
    assert res["pa"] == pytest.approx(ref["p_bar"], abs=5e-4)
    assert res["pe"] == pytest.approx(ref["p_bar_e"], abs=5e-4)


def test_fleiss_matches_statsmodels():
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    counts = PUBLISHED["fleiss_10x14"]["counts"]
    res = fleiss_kappa(long_from_counts(counts), "subject", "rater", "code")
    assert res["estimate"] == pytest.approx(sm_fleiss(np.asarray(counts)), abs=1e-12)
    table, _ = aggregate_raters(np.asarray(PUBLISHED["fleiss_1971"]["data"]))
    res = fleiss_kappa(fleiss_1971(), "patient", "psychiatrist", "diagnosis")
    assert res["estimate"] == pytest.approx(sm_fleiss(table), abs=1e-12)


def check_against_irrcac(res: dict, ref: dict, gwet_test: bool = True) -> None:
    assert res["estimate"] == pytest.approx(ref["kappa"], abs=1e-10)
    assert res["se"] == pytest.approx(ref["se"], abs=1e-10)
    assert res["pa"] == pytest.approx(ref["pa"], abs=1e-10)
    assert res["pe"] == pytest.approx(ref["pe"], abs=1e-10)
    assert [res["ci_low"], res["ci_high"]] == pytest.approx(ref["ci"], abs=1e-9)
    assert res["n_targets"] == ref["n_subjects"]
    if gwet_test and ref["p"] > 1e-12:  # irrCAC computes 1 - cdf, which underflows to 0
        assert res["p"] == pytest.approx(ref["p"], rel=1e-6)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_fleiss_weighted_incomplete_matches_irrcac(observers, weights):
    res = fleiss_kappa(observers, "target", "rater", "code", weights=weights, categories=SEVEN)
    check_against_irrcac(res, IRRCAC["observer_code"][weights or "identity"])
    # 2 or 3 coders per session: no published null variance, Gwet's t test instead
    assert np.isnan(res["se0"]) and "Gwet" in res["test"]


def test_fleiss_rupture_marker_matches_irrcac(observers):
    res = fleiss_kappa(observers, "target", "rater", "rupture")
    check_against_irrcac(res, IRRCAC["observer_rupture"])


@pytest.mark.parametrize("weights", [None, "quadratic"])
def test_fleiss_1971_se_matches_irrcac(weights):
    res = fleiss_kappa(fleiss_1971(), "patient", "psychiatrist", "diagnosis", weights=weights)
    # unweighted with 6 raters each: p is Fleiss-Nee-Landis's, tested above against irr
    check_against_irrcac(res, IRRCAC["fleiss_1971"][weights or "identity"],
                         gwet_test=weights is not None)


def test_fleiss_drops_single_coded_targets(observers):
    extra = pd.DataFrame({"target": ["lone1", "lone2"], "rater": ["C1", "C2"], "code": [3, 4],
                          "rupture": [0, 1]})
    with pytest.warns(UserWarning, match="2 target.*one rater only"):
        res = fleiss_kappa(pd.concat([observers, extra]), "target", "rater", "code",
                           weights="quadratic", categories=SEVEN)
    assert res["n_targets"] == 80
    assert res["estimate"] == pytest.approx(IRRCAC["observer_code"]["quadratic"]["kappa"],
                                            abs=1e-10)


# --------------------------------------------------------------------------------------------
# Summary table
# --------------------------------------------------------------------------------------------
def test_table_ordinal(observers):
    table = coding_agreement_table(observers, "target", "rater", "code", categories=SEVEN,
                                   n_boot=200, seed=3)
    assert list(table.columns) == AGREEMENT_COLUMNS
    assert table[["statistic", "metric", "weights"]].values.tolist() == [
        ["krippendorff_alpha", "ordinal", ""], ["krippendorff_alpha", "interval", ""],
        ["fleiss_kappa", "", "quadratic"], ["cohen_kappa_mean_pairs", "", "quadratic"]]
    est = table["estimate"].tolist()
    assert est[1] == pytest.approx(IRRCAC["observer_code_alpha_interval"]["alpha"], abs=1e-10)
    assert est[2] == pytest.approx(IRRCAC["observer_code"]["quadratic"]["kappa"], abs=1e-10)
    assert est[3] == pytest.approx(PSYCH["observer_incomplete"]["psych_multi_code"]
                                   ["av_weighted_quadratic"], abs=1e-10)
    ordinal = krippendorff_alpha(observers, "target", "rater", "code", level="ordinal",
                                 n_boot=200, seed=3)
    assert table.loc[0, ["estimate", "ci_low", "ci_high"]].tolist() == [
        ordinal["estimate"], ordinal["ci_low"], ordinal["ci_high"]]
    assert table.loc[3, "n_pairs"] == 10 and np.isnan(table.loc[3, "se"])
    assert (table[["n_targets", "n_raters", "n_ratings"]].to_numpy() == [80, 5, 204]).all()


def test_table_has_no_ids(observers):
    table = coding_agreement_table(observers, "target", "rater", "rupture", level="nominal",
                                   n_boot=50)
    ids = set(observers["target"]) | set(observers["rater"])
    cells = {v for v in table.to_numpy().ravel() if isinstance(v, str)}
    assert not cells & ids
    assert table["statistic"].tolist() == ["krippendorff_alpha", "fleiss_kappa",
                                           "cohen_kappa_mean_pairs"]
    assert table.loc[2, "estimate"] == pytest.approx(
        PSYCH["observer_incomplete"]["psych_multi_rupture"]["av_kappa"], abs=1e-10)


def test_table_two_coders_reports_cohen_with_se(two_coders):
    with pytest.warns(UserWarning):
        table = coding_agreement_table(two_coders, "target", "rater", "code", categories=SEVEN,
                                       n_boot=0)
    row = table.set_index("statistic").loc["cohen_kappa"]
    single = quiet(cohen_kappa, two_coders, "target", "rater", "code", weights="quadratic",
                   categories=SEVEN)
    for key in ("estimate", "se", "ci_low", "ci_high", "se0", "z", "p"):
        assert row[key] == single[key]
    assert np.isnan(table.loc[0, "se"])  # no bootstrap asked


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def small() -> pd.DataFrame:
    return pd.DataFrame({"t": [1, 1, 2, 2, 3, 3], "r": ["a", "b"] * 3,
                         "c": [1, 2, 2, 2, 3, 3]})


@pytest.mark.parametrize("func", [krippendorff_alpha, cohen_kappa, pairwise_cohen_kappa,
                                  fleiss_kappa, coding_agreement_table])
def test_missing_column(func):
    with pytest.raises(ValueError, match="column.*'code'.*not in data|not in data.*'code'"):
        func(small(), "t", "r", "code")


@pytest.mark.parametrize("call", [
    lambda d: krippendorff_alpha(d, "t", "r", "c", level="ordinal"),
    lambda d: krippendorff_alpha(d, "t", "r", "c", level="interval"),
    lambda d: cohen_kappa(d, "t", "r", "c", weights="quadratic"),
    lambda d: fleiss_kappa(d, "t", "r", "c", weights="linear"),
    lambda d: coding_agreement_table(d, "t", "r", "c", level="ordinal"),
])
def test_non_numeric_codes(call):
    data = small().astype({"c": object})
    data.loc[3, "c"] = "high"
    # the row, and the value by its shape only: a text in a code column may identify someone
    with pytest.raises(ValueError, match=r"column 'c' must hold numeric codes.*row 3: value is a text of 4 "
                                         r"characters \(letters\)$"):
        call(data)


@pytest.mark.parametrize("func", [krippendorff_alpha, cohen_kappa, fleiss_kappa,
                                  coding_agreement_table])
def test_code_outside_categories(func):
    data = small()
    data.loc[4, "c"] = 9
    with pytest.raises(ValueError, match=r"column 'c' in row 4 has a code that is not among the categories \[1, 2, .*7\]: value 9$"):
        func(data, "t", "r", "c", categories=SEVEN)


@pytest.mark.parametrize("func", [krippendorff_alpha, cohen_kappa, fleiss_kappa,
                                  pairwise_cohen_kappa, coding_agreement_table])
def test_duplicate_target_rater(func):
    data = pd.concat([small(), small().iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 duplicate \(t, r\) pair\(s\), e.g. in rows \[2, 6\]; "):
        func(data, "t", "r", "c")


@pytest.mark.parametrize("func", [krippendorff_alpha, cohen_kappa, fleiss_kappa,
                                  coding_agreement_table])
def test_fewer_than_two_raters(func):
    data = small().assign(r="a", t=range(6))
    with pytest.raises(ValueError, match="column 'r' has 1 distinct rater"):
        func(data, "t", "r", "c")


@pytest.mark.parametrize("func", [krippendorff_alpha, cohen_kappa, fleiss_kappa,
                                  pairwise_cohen_kappa, coding_agreement_table])
def test_no_variation(func):
    with pytest.raises(ValueError, match="no variation: all 6 codes in column 'c' equal 4"):
        func(small().assign(c=4), "t", "r", "c")


def test_missing_ids_and_codes():
    data = small().astype({"t": object})
    data.loc[2, "t"] = None
    with pytest.raises(ValueError, match="column 't' has a missing id in row 2"):
        fleiss_kappa(data, "t", "r", "c")
    data = small().astype({"c": float})
    data.loc[0, "c"] = np.nan
    with pytest.warns(UserWarning, match="1 code.*missing in column 'c'"):
        krippendorff_alpha(data, "t", "r", "c")


@pytest.mark.parametrize("call,message", [
    (lambda d: krippendorff_alpha(d, "t", "r", "c", level="metric"), "level must be one of"),
    (lambda d: cohen_kappa(d, "t", "r", "c", weights="squared"), "weights must be one of"),
    (lambda d: fleiss_kappa(d, "t", "r", "c", ci_level=95), "ci_level must be"),
    (lambda d: krippendorff_alpha(d, "t", "r", "c", n_boot=-5), "n_boot must be"),
    (lambda d: pairwise_cohen_kappa(d, "t", "r", "c", min_shared=0), "min_shared must be"),
    (lambda d: coding_agreement_table(d, "t", "r", "c", level="interval"), "level must be one"),
    (lambda d: cohen_kappa(d, "t", "r", "c", categories=[1, 2, 2, 3]), "duplicate value"),
])
def test_bad_options(call, message):
    with pytest.raises(ValueError, match=message):
        call(small())


def test_alpha_needs_a_unit_coded_twice():
    data = pd.DataFrame({"t": [1, 2, 3], "r": ["a", "b", "a"], "c": [1, 2, 3]})
    with pytest.raises(ValueError, match="no target is coded by two or more raters"):
        krippendorff_alpha(data, "t", "r", "c")


def test_cohen_no_shared_target():
    data = pd.DataFrame({"t": [1, 2, 3, 4], "r": ["a", "a", "b", "b"], "c": [1, 2, 1, 2]})
    with pytest.raises(ValueError, match="share no target"), pytest.warns(UserWarning):
        cohen_kappa(data, "t", "r", "c")
