"""Dynamic within-person alliance–outcome model: the random-intercept cross-lagged panel model.

Falkenström, Finkel, Sandell, Rubel & Holmqvist (2017) show that the session-by-session
question — does this session's alliance predict the next session's symptoms over and above
the symptoms already there, and the other way round? — needs (a) the lagged outcome in the
model, (b) stable between-person differences separated from within-person change, and (c) an
estimator free of the Nickell (1981) bias that a person-mean-centred lagged outcome in a
mixed model carries for short series. The random-intercept cross-lagged panel model
(RI-CLPM; Hamaker, Kuiper & Grasman, 2015) does all three by maximum likelihood: the random
intercepts are latent (so the "person means" rest only on the sessions used and are not
estimated from future sessions as observed means), the lagged within-person parts of both
variables predict both next-session parts, and each session has its own mean, which removes
the average trajectory (detrending) without assuming it linear.

For alliance ``x`` and outcome ``y`` at waves (sessions) ``t = 1..T``::

    x_it = mu_x,t + RIx_i + wx_it          y_it = mu_y,t + RIy_i + wy_it
    wx_it = a_xx wx_i,t-1 + a_xy wy_i,t-1 + ux_it
    wy_it = a_yy wy_i,t-1 + a_yx wx_i,t-1 + uy_it          (t >= 2)

with (RIx, RIy) bivariate with free covariance and uncorrelated with the wave-1 parts
(wx_1, wy_1), which have a free covariance; innovations (ux, uy) with one covariance matrix
for all t >= 2; lag coefficients equal over time. ``a_yx`` (``alliance_to_outcome``) is the
effect of the alliance at session t-1 on the outcome at t controlling the outcome at t-1;
``a_xy`` (``outcome_to_alliance``) the reverse cross-lag.

Estimation: full-information ML (missing sessions are missing at random; each missing-data
pattern contributes the likelihood of its observed part), the structured covariance written
out in closed form and maximised with scipy's L-BFGS-B. Standard errors come from the
observed information (central differences of the analytic gradient at the maximum), as
lavaan's default for ``missing = "ml"``. The likelihood is written here with
numpy/scipy rather than taken from ``semopy`` because semopy is not among the project's
pinned packages and the model is small enough to state exactly; it is verified against
lavaan 0.6-14 (``tests/data/dynamic_r/riclpm.R``) in ``tests/test_dynamic.py``.

References
----------
Allison, P. D., Williams, R., & Moral-Benito, E. (2017). Maximum likelihood for cross-lagged
panel models with fixed effects. *Socius*, 3, 1–17.
Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
models of individual change in psychotherapy process research. *Journal of Consulting and
Clinical Psychology*, 85, 537–549.
Hamaker, E. L., Kuiper, R. M., & Grasman, R. P. P. P. (2015). A critique of the cross-lagged
panel model. *Psychological Methods*, 20, 102–116.
Nickell, S. (1981). Biases in dynamic models with fixed effects. *Econometrica*, 49, 1417–1426.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance.errors import require_columns as _require_columns
from alliance.models.data import CLIENT, SESSION, NotEstimableError

__all__ = ["RICLPM_PARAMETERS", "DynamicResult", "wide_panel", "riclpm_covariance", "riclpm_loglik",
           "fit_riclpm", "fit_dynamic", "simulate_riclpm"]

#: Structural parameters in the order of the parameter vector (the wave means follow).
RICLPM_PARAMETERS = (
    "ar_alliance",            # a_xx: alliance at t-1 -> alliance at t (within person)
    "ar_outcome",             # a_yy: outcome at t-1 -> outcome at t
    "alliance_to_outcome",    # a_yx: alliance at t-1 -> outcome at t
    "outcome_to_alliance",    # a_xy: outcome at t-1 -> alliance at t
    "var_ri_alliance", "var_ri_outcome", "cov_ri",
    "var_w1_alliance", "var_w1_outcome", "cov_w1",
    "var_u_alliance", "var_u_outcome", "cov_u",
)
_N_STRUCT = len(RICLPM_PARAMETERS)
_VARIANCES = (4, 5, 7, 8, 10, 11)


@dataclass
class DynamicResult:
    """An RI-CLPM fit.

    ``estimates`` holds every parameter (the structural ones of :data:`RICLPM_PARAMETERS`,
    then ``mean_alliance_t``, ``mean_outcome_t``) with ``estimate``, ``se``, ``z``, ``p``,
    ``ci_low``, ``ci_high`` (normal-theory Wald).
    """

    estimates: pd.DataFrame
    loglik: float
    n_clients: int
    n_waves: int
    n_observed: int
    converged: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def n_parameters(self) -> int:
        return len(self.estimates)

    def fit_info(self) -> dict:
        """Plain-type summary for ``fit.json``."""
        return {"estimator": "ML (FIML), RI-CLPM", "loglik": self.loglik, "n_clients": self.n_clients,
                "n_waves": self.n_waves, "n_observed": self.n_observed, "n_parameters": self.n_parameters,
                "aic": -2 * self.loglik + 2 * self.n_parameters, "converged": self.converged,
                "warnings": list(self.warnings)}


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------
def wide_panel(session_data: pd.DataFrame, alliance: str, outcome: str, waves: int,
               by: str = CLIENT, session: str = SESSION, first: int = 1) -> pd.DataFrame:
    """Sessions ``first .. first + waves - 1`` in wide format, one row per client.

    Columns ``x1..xT`` (alliance) then ``y1..yT`` (outcome); a session not observed is NaN.
    Clients with no observed value in the window are left out.
    """
    _require_columns(session_data, [by, session, alliance, outcome], "session_data")
    if int(waves) < 3:
        raise ValueError(f"waves must be at least 3 for a cross-lagged model with random intercepts, got {waves!r}")
    sessions = list(range(first, first + int(waves)))
    d = session_data.loc[session_data[session].isin(sessions), [by, session, alliance, outcome]]
    x = d.pivot_table(index=by, columns=session, values=alliance, aggfunc="mean").reindex(columns=sessions)
    y = d.pivot_table(index=by, columns=session, values=outcome, aggfunc="mean").reindex(columns=sessions)
    ids = x.index.union(y.index)
    x, y = x.reindex(ids), y.reindex(ids)
    x.columns = [f"x{t}" for t in range(1, len(sessions) + 1)]
    y.columns = [f"y{t}" for t in range(1, len(sessions) + 1)]
    wide = pd.concat([x, y], axis=1)
    return wide.loc[wide.notna().any(axis=1)]


# --------------------------------------------------------------------------------------
# Model-implied moments and likelihood
# --------------------------------------------------------------------------------------
def riclpm_covariance(theta: np.ndarray, waves: int) -> np.ndarray:
    """Model-implied covariance of ``(x1..xT, y1..yT)`` at structural parameters ``theta``."""
    axx, ayy, ayx, axy, vrx, vry, crr, v1x, v1y, c1, vux, vuy, cu = theta[:_N_STRUCT]
    T = int(waves)
    B = np.array([[axx, axy], [ayx, ayy]])
    psi = np.array([[vux, cu], [cu, vuy]])
    W = [np.array([[v1x, c1], [c1, v1y]])]
    for _ in range(1, T):
        W.append(B @ W[-1] @ B.T + psi)
    # time-major covariance of z_t = (wx_t, wy_t): Cov(z_t, z_s) = B^(t-s) W_s for t >= s
    S = np.zeros((2 * T, 2 * T))
    for s in range(T):
        block = W[s]
        for t in range(s, T):
            S[2 * t:2 * t + 2, 2 * s:2 * s + 2] = block
            S[2 * s:2 * s + 2, 2 * t:2 * t + 2] = block.T
            block = B @ block
    order = np.r_[np.arange(0, 2 * T, 2), np.arange(1, 2 * T, 2)]  # to (x1..xT, y1..yT)
    S = S[np.ix_(order, order)]
    S[:T, :T] += vrx
    S[T:, T:] += vry
    S[:T, T:] += crr
    S[T:, :T] += crr
    return S


class _Patterns:
    """The wide data grouped by missing-data pattern, for the FIML likelihood."""

    def __init__(self, values: np.ndarray):
        observed = ~np.isnan(values)
        keys, inverse = np.unique(observed, axis=0, return_inverse=True)
        self.groups = []
        for k, mask in enumerate(keys):
            if not mask.any():
                continue
            rows = values[np.asarray(inverse).ravel() == k][:, mask]
            self.groups.append((np.flatnonzero(mask), rows))
        self.n_observed = int(observed.sum())

    def loglik_and_gradients(self, mu: np.ndarray, sigma: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Log-likelihood, its derivative in the entries of ``sigma`` and in ``mu``."""
        total, d_sigma, d_mu = 0.0, np.zeros_like(sigma), np.zeros_like(mu)
        for idx, rows in self.groups:
            s = sigma[np.ix_(idx, idx)]
            try:
                chol = np.linalg.cholesky(s)
            except np.linalg.LinAlgError:
                return -np.inf, d_sigma, d_mu
            inv = np.linalg.inv(s)
            r = rows - mu[idx]
            n, p = rows.shape
            ir = r @ inv
            total += -0.5 * (n * (p * math.log(2 * math.pi) + 2.0 * np.log(np.diag(chol)).sum())
                             + float((ir * r).sum()))
            d_sigma[np.ix_(idx, idx)] += -0.5 * (n * inv - ir.T @ ir)
            d_mu[idx] += ir.sum(axis=0)
        return total, d_sigma, d_mu

    def loglik(self, mu: np.ndarray, sigma: np.ndarray) -> float:
        total = 0.0
        for idx, rows in self.groups:
            s = sigma[np.ix_(idx, idx)]
            try:
                chol = np.linalg.cholesky(s)
            except np.linalg.LinAlgError:
                return -np.inf
            r = np.linalg.solve(chol, (rows - mu[idx]).T)
            logdet = 2.0 * np.log(np.diag(chol)).sum()
            n, p = rows.shape
            total += -0.5 * (n * (p * math.log(2 * math.pi) + logdet) + float((r * r).sum()))
        return total


def riclpm_loglik(params: np.ndarray, wide: np.ndarray) -> float:
    """FIML log-likelihood of the RI-CLPM at ``params`` (structural parameters, then the
    ``T`` alliance and ``T`` outcome wave means) for ``wide`` (n x 2T, NaN = missing)."""
    T = wide.shape[1] // 2
    return _Patterns(np.asarray(wide, float)).loglik(np.asarray(params[_N_STRUCT:]),
                                                       riclpm_covariance(np.asarray(params), T))


def _covariance_jacobian(theta: np.ndarray, waves: int) -> np.ndarray:
    """d Sigma / d theta_k for the structural parameters (central differences; Sigma is a
    polynomial of low degree in theta, so the error is at rounding level)."""
    out = np.empty((_N_STRUCT, 2 * waves, 2 * waves))
    for k in range(_N_STRUCT):
        h = 1e-6 * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        out[k] = (riclpm_covariance(up, waves) - riclpm_covariance(down, waves)) / (2 * h)
    return out


def _start(wide: np.ndarray) -> np.ndarray:
    T = wide.shape[1] // 2
    var_x = np.nanmean(np.nanvar(wide[:, :T], axis=0))
    var_y = np.nanmean(np.nanvar(wide[:, T:], axis=0))
    theta = [0.2, 0.2, 0.0, 0.0, var_x / 2, var_y / 2, 0.0, var_x / 2, var_y / 2, 0.0,
             var_x / 2, var_y / 2, 0.0]
    return np.r_[theta, np.nanmean(wide, axis=0)]


def _hessian_from_gradient(grad, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Central-difference Hessian from the analytic gradient ``grad`` at ``x``, symmetrised."""
    k = len(x)
    H = np.zeros((k, k))
    for i in range(k):
        h = step * max(1.0, abs(x[i]))
        e = np.zeros(k)
        e[i] = h
        H[i] = (grad(x + e) - grad(x - e)) / (2 * h)
    return (H + H.T) / 2


def fit_riclpm(wide: pd.DataFrame | np.ndarray, level: float = 0.95, standard_errors: bool = True) -> DynamicResult:
    """Fit the RI-CLPM by full-information maximum likelihood.

    Parameters
    ----------
    wide : DataFrame or array
        ``n x 2T``: alliance at waves 1..T, then the outcome at waves 1..T (:func:`wide_panel`).
    level : float
        Confidence level of the Wald intervals.
    standard_errors : bool
        False skips the Hessian (point estimates only, e.g. inside a simulation).

    Raises
    ------
    NotEstimableError
        Fewer clients than parameters, or no maximum found.
    """
    values = np.asarray(wide, dtype=float)
    if values.ndim != 2 or values.shape[1] % 2 or values.shape[1] < 6:
        raise ValueError(f"wide must have 2T columns with T >= 3 waves, got shape {values.shape}")
    T = values.shape[1] // 2
    values = values[~np.isnan(values).all(axis=1)]
    n_par = _N_STRUCT + 2 * T
    if len(values) <= n_par:
        raise NotEstimableError(f"{len(values)} client(s) with a score in the {T} waves for {n_par} parameters; "
                                "the RI-CLPM needs more clients than parameters")
    patterns = _Patterns(values)
    # Work on standardised scales so that the optimiser's steps are of one size.
    sx = np.nanstd(values[:, :T]) or 1.0
    sy = np.nanstd(values[:, T:]) or 1.0
    scale = _parameter_scale(sx, sy, T)

    def negll(u: np.ndarray) -> tuple[float, np.ndarray]:
        p = u * scale
        value, d_sigma, d_mu = patterns.loglik_and_gradients(p[_N_STRUCT:], riclpm_covariance(p, T))
        if not np.isfinite(value):
            return 1e20, np.zeros_like(u)
        jac = _covariance_jacobian(p, T)
        grad = np.r_[np.einsum("kij,ij->k", jac, d_sigma), d_mu]
        return -value, -grad * scale

    u0 = _start(values) / scale
    bounds = [(None, None)] * n_par
    for i in _VARIANCES:
        bounds[i] = (1e-8, None)
    best = optimize.minimize(negll, u0, jac=True, method="L-BFGS-B", bounds=bounds,
                             options={"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-9})
    polished = optimize.minimize(negll, best.x, jac=True, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
    if polished.fun <= best.fun and all(polished.x[i] > 0 for i in _VARIANCES):
        best = polished
    warnings = []
    if not np.isfinite(best.fun) or best.fun >= 1e20:
        raise NotEstimableError("the RI-CLPM likelihood has no finite maximum from these data")
    # BFGS often ends on "precision loss" at the maximum itself; judge by the gradient, in
    # units of the standardised parameters, instead of the optimiser's flag.
    gradient = negll(best.x)[1]
    converged = bool(np.max(np.abs(gradient)) < 1e-3)
    if not converged:
        warnings.append(f"no maximum found: largest gradient {np.max(np.abs(gradient)):.2g} ({best.message})")
    params = best.x * scale
    se = np.full(n_par, np.nan)
    if standard_errors:
        H = _hessian_from_gradient(lambda u: negll(u)[1], best.x)
        try:
            cov_u = np.linalg.inv(H)
            variances = np.diag(cov_u)
            # a negative sampling variance means the information is not positive definite there
            # (no maximum): the SE is missing, not 0, so no interval pretends to be exact
            se = np.sqrt(np.where(variances > 0, variances, np.nan)) * scale
            if not (variances > 0).all():
                warnings.append(f"the information matrix is not positive definite: {int((variances <= 0).sum())} "
                                "standard errors are missing")
        except np.linalg.LinAlgError:
            warnings.append("the information matrix is singular; standard errors are missing")
    for i in _VARIANCES:
        if params[i] < 1e-6 * scale[i] ** 2:
            warnings.append(f"{RICLPM_PARAMETERS[i]} is estimated at its lower bound 0")
    names = [*RICLPM_PARAMETERS, *(f"mean_alliance_{t}" for t in range(1, T + 1)),
             *(f"mean_outcome_{t}" for t in range(1, T + 1))]
    return DynamicResult(_estimate_table(names, params, se, level), float(-best.fun), len(values), T,
                         patterns.n_observed, converged, warnings)


def _parameter_scale(sx: float, sy: float, T: int) -> np.ndarray:
    struct = [1.0, 1.0, sy / sx, sx / sy, sx * sx, sy * sy, sx * sy, sx * sx, sy * sy, sx * sy,
              sx * sx, sy * sy, sx * sy]
    return np.r_[struct, np.full(T, sx), np.full(T, sy)]


def _estimate_table(names: Sequence[str], est: np.ndarray, se: np.ndarray, level: float) -> pd.DataFrame:
    z = est / se
    q = stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame({"estimate": est, "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
                         "ci_low": est - q * se, "ci_high": est + q * se}, index=pd.Index(names, name="parameter"))


def fit_dynamic(session_data: pd.DataFrame, outcome: str = "symptoms", alliance: str = "alliance",
                waves: int = 8, first: int = 1, level: float = 0.95) -> tuple[DynamicResult, pd.DataFrame]:
    """Fit the RI-CLPM to sessions ``first .. first + waves - 1`` of a session-level dataset
    (:func:`alliance.models.session_level_data`). Returns ``(result, wide data)``."""
    wide = wide_panel(session_data, alliance, outcome, waves, first=first)
    return fit_riclpm(wide, level=level), wide


def simulate_riclpm(params: Sequence[float], n: int, waves: int, seed: int,
                    missing_share: float = 0.0) -> pd.DataFrame:
    """Draw wide data from the RI-CLPM at ``params`` (structural, then 2T means), with each
    value missing completely at random with probability ``missing_share`` (tests, recovery)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(params, float)
    sigma = riclpm_covariance(p, waves)
    values = rng.multivariate_normal(p[_N_STRUCT:], sigma, size=n, method="cholesky")
    if missing_share > 0:
        values[rng.random(values.shape) < missing_share] = np.nan
    return pd.DataFrame(values, columns=[*(f"x{t}" for t in range(1, waves + 1)),
                                         *(f"y{t}" for t in range(1, waves + 1))])
