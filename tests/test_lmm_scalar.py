"""The exact gradient and AI-REML optimiser for crossed scalar random effects
(alliance.lmm.scalar), used by :func:`alliance.lmm.fit` for designs like lme4's InstEval.

References: the general engine's own criterion (ProfiledDeviance, tested against lme4 in
tests/test_lmm*.py) for values; central differences of that criterion for the gradient; the
general path (COBYQA, lme4's numerical convergence check, lmerTest's numerical Satterthwaite
derivatives; forced by switching the fast path off) for the optimum, standard errors and df. The InstEval comparison with lme4/lmerTest is in tests/test_lmm_formula.py.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from alliance import lmm
from alliance.lmm.deviance import ProfiledDeviance
from alliance.lmm.design import build_structure, fixed_matrix, fixed_spec
from alliance.lmm.scalar import ScalarCrossed, is_scalar_crossed

fit_module = importlib.import_module("alliance.lmm.fit")  # the module, not lmm.fit


def crossed_data(seed: int, n_a: int = 150, n_b: int = 12, n_c: int = 4) -> pd.DataFrame:
    """Students a x lecturers b crossed, a small factor c, a covariate x and a two-level f."""
    rng = np.random.default_rng(seed)
    k = rng.integers(3, 7, size=n_a)
    a = np.repeat(np.arange(n_a), k)
    b = np.concatenate([rng.choice(n_b, size=m, replace=False) for m in k])
    c = rng.integers(0, n_c, size=len(a))
    x = rng.normal(size=len(a))
    f = rng.integers(0, 2, size=len(a))
    y = (1.0 + 0.3 * x + 0.2 * f + rng.normal(0, 0.6, n_a)[a] + rng.normal(0, 0.5, n_b)[b]
         + rng.normal(0, 0.2, n_c)[c] + rng.normal(0, 1.0, len(a)))
    return pd.DataFrame({"a": np.char.add("A", a.astype(str)), "b": np.char.add("B", b.astype(str)),
                         "c": np.char.add("C", c.astype(str)), "f": np.char.add("F", f.astype(str)),
                         "x": x, "y": y, "w": 1.0 + (a % 3)})


FORMULA = "y ~ x + f + (1 | a) + (1 | b) + (1 | c)"


def scalar_engine(data: pd.DataFrame, reml: bool, weights=None):
    parsed, mf, raw, frame, w, _ = fit_module._model_frame(FORMULA, data, weights)
    spec = fixed_spec(frame, parsed, None, mf.matrix_cols)
    X, _ = fixed_matrix(spec, frame)
    y = frame[parsed.response].to_numpy(float)
    structure, _ = build_structure(frame, mf.random_terms, X, y, w)
    assert is_scalar_crossed(structure)
    return ScalarCrossed(structure, reml), ProfiledDeviance(structure, reml)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("theta", [[0.6, 0.5, 0.2], [0.6, 0.0, 0.2], [0.0, 0.5, 0.0]])
def test_criterion_and_gradient_match_the_general_engine(reml, theta):
    """Same criterion as ProfiledDeviance (1e-10 relative); gradient as central differences
    of it (1e-5 relative to the largest component), on and off the boundary."""
    sc, dev = scalar_engine(crossed_data(0), reml, weights="w")
    theta = np.array(theta)
    obj, grad, _ = sc.objective_and_gradient(theta)
    assert obj == pytest.approx(dev(theta), rel=1e-10)
    h = 1e-5
    fd = np.array([(dev(theta + h * e) - dev(np.abs(theta - h * e))) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-5 * np.max(np.abs(fd)))


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("reml", [True, False])
def test_fit_matches_the_derivative_free_path(seed, reml, monkeypatch):
    """The AI-REML fit reaches the COBYQA fit's optimum (objective never worse than 1e-9
    relative above it), and gives the same estimates (1e-5 SEs), SEs and Satterthwaite df
    (lmerTest's numerical derivatives on the general path; 1e-3 relative)."""
    data = crossed_data(seed)
    fast = lmm.fit(FORMULA, data, reml=reml)
    monkeypatch.setattr(fit_module, "is_scalar_crossed", lambda s: False)
    slow = lmm.fit(FORMULA, data, reml=reml)
    assert fast.objective <= slow.objective * (1 + 1e-9)
    assert fast.objective == pytest.approx(slow.objective, rel=1e-8)
    fe, ref = fast.fixed_effects, slow.fixed_effects
    np.testing.assert_allclose(fe["estimate"], ref["estimate"], rtol=0, atol=1e-5 * ref["se"].min())
    np.testing.assert_allclose(fe["se"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(fe["df"], ref["df"], rtol=1e-3)
    assert fast.converged and slow.converged
    assert fast.n_evaluations < slow.n_evaluations


def test_boundary_fit_is_singular_as_the_general_path(monkeypatch):
    """A factor without variance (c's effects are zero): theta_c on the bound in both paths."""
    data = crossed_data(3)
    rng = np.random.default_rng(3)
    data["y"] = 1.0 + rng.normal(0, 0.8, 150)[data["a"].str[1:].astype(int)] + rng.normal(size=len(data))
    fast = lmm.fit(FORMULA, data)
    monkeypatch.setattr(fit_module, "is_scalar_crossed", lambda s: False)
    slow = lmm.fit(FORMULA, data)
    assert fast.singular and slow.singular
    assert fast.objective <= slow.objective * (1 + 1e-9)
    np.testing.assert_allclose(fast.fixed_effects["se"], slow.fixed_effects["se"], rtol=1e-4)


def test_without_the_pair_map_the_same_numbers(monkeypatch):
    """Designs with too many pairs fall back to a sparse product per evaluation: same criterion
    and gradient (1e-10 relative)."""
    sc, _ = scalar_engine(crossed_data(4), True)
    theta = np.array([0.5, 0.4, 0.3])
    obj, grad, _ = sc.objective_and_gradient(theta)
    monkeypatch.setattr("alliance.lmm.scalar.MAX_PAIRS", 0)
    sc2, _ = scalar_engine(crossed_data(4), True)
    assert sc2.P is None
    obj2, grad2, _ = sc2.objective_and_gradient(theta)
    assert obj2 == pytest.approx(obj, rel=1e-12)
    np.testing.assert_allclose(grad2, grad, rtol=1e-10, atol=1e-10 * np.max(np.abs(grad)))
