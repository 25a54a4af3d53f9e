"""The engine's fast path for two crossed random intercepts (alliance.lmm.crossed).

References: the general engine :func:`alliance.lmm.fit` on the same formula (its own criterion,
factorisation and optimiser, tested against lme4 in tests/test_lmm.py), and lme4 1.1-31 fits
of ``rating ~ 1 + (1|target) + (1|rater)`` in tests/data/lme4/lme4_extra_reference.json
(``crossed_raters``, made by ref_lme4_extra.R) and tests/data/icc/observer_boundary
(a singular fit, made by tests/data/icc/ref_icc_extra.R).

Tolerances: at the same theta both engines compute the same criterion, residual variance and
intercept (1e-10 relative; rounding only). At the optimum the objective agrees to 1e-6
relative (measured 1e-13) and the variance components of the factor with many levels and the
residual to 1e-6 relative (measured < 9e-7); the variance of the factor with 6 levels to 1e-5
(measured < 2.5e-6): the criterion is flat there, a relative change of 1e-6 moves it by about
its rounding, so a derivative-free optimiser (the general path's COBYQA) cannot place it closer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance import lmm
from alliance.lmm.crossed import CrossedREML, distinct_rows, fit_crossed
from alliance.lmm.deviance import ProfiledDeviance

DATA = Path(__file__).parent / "data"
TWO = "y ~ 1 + (1|a) + (1|b)"
ONE = "y ~ 1 + (1|a)"


def crossed_design(seed: int, n_a: int = 300, n_b: int = 6, var_a: float = 0.5,
                   var_b: float = 0.1, residual: float = 0.2) -> pd.DataFrame:
    """Each a-level observed with 2-3 of the n_b b-levels; y = 3 + u_a + u_b + e."""
    rng = np.random.default_rng(seed)
    k = rng.integers(2, 4, size=n_a)
    a = np.repeat(np.arange(n_a), k)
    b = np.concatenate([rng.choice(n_b, size=m, replace=False) for m in k])
    u_a, u_b = rng.normal(0, np.sqrt(var_a), n_a), rng.normal(0, np.sqrt(var_b), n_b)
    y = 3.0 + u_a[a] + u_b[b] + rng.normal(0, np.sqrt(residual), len(a))
    out = pd.DataFrame({"a": np.char.add("A", a.astype(str)), "b": np.char.add("B", b.astype(str)),
                        "y": y})
    out.attrs["realised_var_b"] = float(np.var(u_b, ddof=1))
    return out


def general_fit(data: pd.DataFrame) -> lmm.LmmResult:
    """The general path: an explicit start (lme4's default theta) bypasses the fast path."""
    return lmm.fit(TWO, data, satterthwaite_df=False, start=np.array([1.0, 1.0]))


def general_variances(m: lmm.LmmResult) -> pd.Series:
    return m.random_effects.set_index("group")["variance"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_factor_fit_matches_the_general_engine(seed):
    data = crossed_design(seed)
    fast = fit_crossed(data["a"], data["b"], data["y"])
    m = general_fit(data)
    v = general_variances(m)
    assert fast.converged and m.converged
    # the fast path's optimum is at least as good as the general one (within rounding)
    assert fast.reml_criterion <= m.objective + 1e-9 * abs(m.objective)
    assert fast.reml_criterion == pytest.approx(m.objective, rel=1e-6)
    assert fast.var_a == pytest.approx(v["a"], rel=1e-6)
    assert fast.residual == pytest.approx(m.sigma**2, rel=1e-6)
    assert fast.var_b == pytest.approx(v["b"], rel=1e-5)
    assert fast.intercept == pytest.approx(m.fixed_effects.loc["(Intercept)", "estimate"], rel=1e-6)
    np.testing.assert_allclose(fast.theta, m.theta, rtol=1e-5)
    assert (fast.n_obs, fast.n_a, fast.n_b) == (m.nobs, m.ngroups["a"], m.ngroups["b"])


@pytest.mark.parametrize("seed", [0, 3])
def test_one_factor_fit_matches_the_general_engine(seed):
    data = crossed_design(seed)
    fast = fit_crossed(data["a"], data["b"], data["y"], one_way=True)
    m = lmm.fit(ONE, data, satterthwaite_df=False)
    assert fast.var_b == 0.0 and fast.theta[1] == 0.0
    assert fast.reml_criterion == pytest.approx(m.objective, rel=1e-6)
    assert fast.var_a == pytest.approx(general_variances(m)["a"], rel=1e-6)
    assert fast.residual == pytest.approx(m.sigma**2, rel=1e-6)
    assert fast.intercept == pytest.approx(m.fixed_effects.loc["(Intercept)", "estimate"], rel=1e-6)


@pytest.mark.parametrize("theta", [(1.0, 1.0), (0.3, 2.0), (1.7, 0.05), (2.0, 0.0)])
def test_same_criterion_as_the_general_engine_at_a_given_theta(theta):
    # No optimiser involved: the two factorisations of lme4's penalised least squares agree.
    data = crossed_design(4, n_a=150, n_b=5)
    m = general_fit(data)
    dev = ProfiledDeviance(m._structure, reml=True)
    sol = dev.solve(np.array(theta))
    codes_a, n_a = pd.factorize(data["a"], sort=True)[0], data["a"].nunique()
    codes_b, n_b = pd.factorize(data["b"], sort=True)[0], data["b"].nunique()
    engine = CrossedREML(codes_a, codes_b, n_a, n_b)
    resp = engine.responses(data["y"].to_numpy())
    crit, _, shift, s2 = engine.evaluate(np.square(theta), resp)
    assert crit[0] == pytest.approx(dev.criterion(sol), rel=1e-10)
    assert s2[0] == pytest.approx(dev.sigma(sol) ** 2, rel=1e-10)
    assert resp.mean[0] + shift[0] == pytest.approx(sol.beta()[0], rel=1e-10)


def test_recovers_known_components():
    data = crossed_design(7, n_a=3000, n_b=40, var_a=0.6, var_b=0.15, residual=0.25)
    fast = fit_crossed(data["a"], data["b"], data["y"])
    assert fast.var_a == pytest.approx(0.6, rel=0.08)
    assert fast.residual == pytest.approx(0.25, rel=0.05)
    # 40 levels: the estimate follows the variance of the 40 effects drawn (0.251 here)
    assert fast.var_b == pytest.approx(data.attrs["realised_var_b"], rel=0.1)


def test_matches_lme4_crossed_fixture():
    ref = json.loads((DATA / "lme4" / "lme4_extra_reference.json").read_text())["crossed_raters"]
    assert " ".join(ref["formula"].split()) == "rating ~ 1 + (1 | target) + (1 | rater)" and ref["reml"]
    data = pd.read_csv(DATA / "lme4" / "observer_unbalanced_ratings.csv")
    fast = fit_crossed(data["target"], data["rater"], data["rating"])
    variances = {r["grp"]: r["vcov"] for r in ref["varcorr"]}
    assert fast.reml_criterion <= ref["objective"] * (1 + 1e-6)
    assert fast.reml_criterion == pytest.approx(ref["objective"], rel=1e-6)
    assert fast.var_a == pytest.approx(variances["target"], rel=1e-3)
    assert fast.var_b == pytest.approx(variances["rater"], rel=1e-3)
    assert fast.residual == pytest.approx(variances["Residual"], rel=1e-3)
    assert fast.intercept == pytest.approx(ref["fixed"]["(Intercept)"]["Estimate"], rel=1e-4)
    np.testing.assert_allclose(fast.theta, ref["theta"], rtol=2e-3)
    assert (fast.n_obs, fast.n_a, fast.n_b) == (ref["nobs"], ref["ngrps"]["target"], ref["ngrps"]["rater"])


def test_matches_lme4_singular_fixture():
    # lme4 puts the rater variance on the bound (isSingular TRUE); so must the fast path.
    folder = DATA / "icc" / "observer_boundary"
    ref = json.loads((folder / "lme4_extra.json").read_text())["two_way"]
    comps = json.loads((folder / "icc_reference.json").read_text())["lme4_varcomp"]
    data = pd.read_csv(folder / "ratings.csv")
    fast = fit_crossed(data["target"], data["rater"], data["rating"])
    assert ref["singular"] and fast.var_b == 0.0 and fast.converged
    assert fast.reml_criterion == pytest.approx(ref["REMLcrit"], rel=1e-6)
    assert fast.var_a == pytest.approx(comps["target"], rel=1e-3)
    assert fast.residual == pytest.approx(comps["residual"], rel=1e-3)
    assert fast.intercept == pytest.approx(ref["intercept"], rel=1e-6)


def test_level_labels_and_row_order_do_not_matter():
    data = crossed_design(2, n_a=100, n_b=5)
    base = fit_crossed(data["a"], data["b"], data["y"])
    shuffled = data.sample(frac=1.0, random_state=3)
    other = fit_crossed(shuffled["a"].str.lower(), shuffled["b"] + "x", shuffled["y"])
    assert other.reml_criterion == pytest.approx(base.reml_criterion, rel=1e-12)
    assert other.var_a == pytest.approx(base.var_a, rel=1e-7)
    assert other.var_b == pytest.approx(base.var_b, rel=1e-6)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="one length"):
        fit_crossed([0, 1, 2], [0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="missing or infinite"):
        fit_crossed([0, 1, 1, 0], [0, 1, 0, 1], [1.0, np.nan, 2.0, 3.0])
    with pytest.raises(ValueError, match="missing level"):
        fit_crossed([0, None, 1, 0], [0, 1, 0, 1], [1.0, 2.0, 2.0, 3.0])


def test_batched_refits_equal_single_fits():
    # The bootstrap's batched Newton (refit_batch) and one L-BFGS-B fit per column agree.
    data = crossed_design(5, n_a=120, n_b=6)
    codes_a = pd.factorize(data["a"], sort=True)[0]
    codes_b = pd.factorize(data["b"], sort=True)[0]
    engine = CrossedREML(codes_a, codes_b, codes_a.max() + 1, codes_b.max() + 1)
    fit = engine.fit_components(data["y"].to_numpy())
    Y = engine.simulate(fit, 6, np.random.default_rng(1))
    batch, ok = engine.refit_batch(Y, fit.theta)
    assert ok.all()
    for j in range(Y.shape[1]):
        single = engine.fit_components(Y[:, j])
        np.testing.assert_allclose(batch[:, j], [single.var_a, single.var_b, single.residual],
                                   rtol=1e-4, atol=1e-8)


def test_fit_dispatches_the_crossed_model_to_the_fast_path():
    # lmm.fit("y ~ 1 + (1|a) + (1|b)") by REML takes theta from the fast path (the rest of the
    # result from the general engine at that theta); ML, other formulas and a given start do not.
    data = crossed_design(6, n_a=200, n_b=6)
    fast = fit_crossed(data["a"], data["b"], data["y"])
    m = lmm.fit(TWO, data)
    np.testing.assert_array_equal(m.theta, fast.theta)
    assert m.objective == pytest.approx(fast.reml_criterion, rel=1e-12) and m.converged
    general = general_fit(data)
    assert m.objective <= general.objective + 1e-9 * abs(general.objective)
    # written the other way round: theta still in lme4's term order (more levels first)
    swapped = lmm.fit("y ~ 1 + (1|b) + (1|a)", data, satterthwaite_df=False)
    assert list(swapped.ngroups) == ["a", "b"]
    np.testing.assert_array_equal(swapped.theta, fast.theta)
    ml = lmm.fit(TWO, data, reml=False, satterthwaite_df=False)
    assert not np.array_equal(ml.theta, fast.theta)


def test_crossed_path_leaves_factors_beyond_the_dense_bound_to_the_general_engine(monkeypatch):
    """With both factors above design.MAX_DENSE levels (lowered here to 5), lmm.fit takes theta
    from the general engine, which reaches the same optimum (criterion within 1e-9 relative)."""
    import alliance.lmm.crossed as crossed_module

    data = crossed_design(6, n_a=200, n_b=6)
    fast = lmm.fit(TWO, data, satterthwaite_df=False)
    monkeypatch.setattr(crossed_module, "MAX_DENSE", 5)
    calls = []
    monkeypatch.setattr(crossed_module, "fit_crossed", lambda *a, **k: calls.append(1))
    general = lmm.fit(TWO, data, satterthwaite_df=False)
    assert calls == [] and general.converged
    assert general.objective == pytest.approx(fast.objective, rel=1e-9)


@pytest.mark.parametrize("one_way", [False, True])
def test_pattern_criterion_equals_the_evaluated_criterion(one_way):
    """Targets grouped by who rated them (and how often) give the same REML criterion as
    CrossedREML.evaluate, to 1e-12 relative (largest seen 4e-16), at interior and boundary
    variance ratios; the design has 1-4 of 5 raters per target and some repeated ratings."""
    rng = np.random.default_rng(8)
    a, b = [], []
    for i in range(3000):
        for r in rng.choice(5, size=rng.integers(1, 5), replace=False):
            times = 1 + int(rng.random() < 0.05)
            a += [i] * times
            b += [r] * times
    a, b = np.array(a), np.array(b)
    y = 0.8 * rng.normal(size=3000)[a] + 0.3 * rng.normal(size=5)[b] + rng.normal(size=len(a))
    engine = CrossedREML(a, b, 3000, 5)
    engine = engine.one_way_model() if one_way else engine
    resp = engine.responses(y)
    criterion = engine.pattern_criterion(resp)
    assert len(criterion.m) < 200  # patterns, not targets
    for gammas in [(0.5, 0.1), (2.0, 0.0), (0.0, 0.3), (10.0, 5.0), (1e-6, 1e-6)]:
        full = float(engine.evaluate(np.array(gammas), resp, gradient=False)[0][0])
        assert criterion(*gammas) == pytest.approx(full, rel=1e-12), gammas


def test_distinct_rows_are_numpys_unique_rows_in_the_same_order():
    # The alpha bootstrap's weights and the pattern criterion's sums follow the order of the
    # distinct rows: the same order as np.unique keeps their bytes.
    rng = np.random.default_rng(5)
    for rows in (rng.integers(0, 4, size=(5_000, 7)), rng.integers(0, 2, size=(40, 3)),
                 np.zeros((3, 2), dtype=np.int64), np.zeros((4, 0), dtype=np.int64),
                 rng.integers(0, 2**20, size=(50, 4))):  # last: the int64 key would overflow
        first, inverse = distinct_rows(rows)
        _, expected_first, expected_inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first, expected_first)
        np.testing.assert_array_equal(inverse, expected_inverse.ravel())


def test_pattern_criterion_keeps_the_patterns_of_a_sort_of_its_rows():
    """The patterns in the order np.unique(axis=0) gives the rows of (b-level, count) pairs
    padded with -1, as the criterion found them before its integer key: its sums over patterns
    keep their bytes (the inter-rater intervals of the bundled example)."""
    rng = np.random.default_rng(9)
    a, b = [], []
    for i in range(2000):
        for r in rng.choice(6, size=rng.integers(1, 6), replace=False):
            times = 1 + int(rng.random() < 0.1) + int(rng.random() < 0.02)
            a += [i] * times
            b += [r] * times
    a, b = np.array(a), np.array(b)
    engine = CrossedREML(a, b, 2000, 6)
    criterion = engine.pattern_criterion(engine.responses(rng.normal(size=len(a))))
    N = engine.N.tocsr()
    N.sort_indices()
    per_row = np.diff(N.indptr)
    key = np.full((N.shape[0], 2 * int(per_row.max())), -1.0)
    slot = np.arange(N.nnz) - np.repeat(N.indptr[:-1], per_row)
    rows = np.repeat(np.arange(N.shape[0]), per_row)
    key[rows, 2 * slot] = N.indices
    key[rows, 2 * slot + 1] = N.data
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    np.testing.assert_array_equal(criterion.P, N[first].toarray())
    np.testing.assert_array_equal(criterion.m, np.bincount(inverse.ravel()))
    assert len(first) > 50  # many patterns, some with repeated ratings
