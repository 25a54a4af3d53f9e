"""Between- and within-therapist slopes with latent therapist means (two-level SEM by ML).

The therapist-vs-client model (:func:`alliance.models.fit_therapist_client`) splits early
alliance into the OBSERVED mean of the therapist's clients and the client's deviation from
it. With few clients per therapist that mean is an unreliable measure of the therapist's
true mean, so its slope is biased towards the within-therapist slope (the bias is
``(1 - lambda_j) (beta_B - beta_W)`` with ``lambda_j = tau^2 / (tau^2 + sigma^2 / n_j)``;
Lüdtke et al., 2008, eq. 12). Lüdtke et al. (2008) remove the bias by treating the
therapist mean as latent::

    x_ij = mu_x + u_j + e_ij
    y_ij = beta_0 + beta_W (x_ij - mu_x - u_j) + beta_B u_j + v_j + r_ij

which is the two-level structural equation model of Asparouhov & Muthén (2007) with ``y`` on
``x`` at both levels. Client-level covariates enter the same way (each split into a latent
therapist part and a within part with its own slope at each level, lavaan's default for a
level-1 covariate), so the alliance slopes are adjusted at both levels.

Estimation. Every variable ``z_ij = mu + z_B,j + z_W,ij`` with ``Cov(z_W) = Sigma_W`` and
``Cov(z_B) = Sigma_B``; the model above leaves both unrestricted, so its ML estimates are
those of the saturated two-level normal model. The log-likelihood of therapist ``j`` with
``n_j`` clients is::

    -1/2 [ n_j p log 2pi + (n_j - 1) log|Sigma_W| + log|V_j| + tr(Sigma_W^-1 S_j)
           + n_j (zbar_j - mu)' V_j^-1 (zbar_j - mu) ],     V_j = Sigma_W + n_j Sigma_B,

so the sufficient statistics are the cluster sizes, the cluster means and the pooled
within-cluster SSCP ``sum_j S_j``; unbalanced sizes are handled exactly (one ``V`` per
distinct ``n_j``). It is maximised with scipy (BFGS on a Cholesky factor of ``Sigma_W``,
then Newton steps), ``Sigma_B`` left unrestricted as lavaan leaves it (a between variance
may come out negative, a Heywood case, which is reported). The slopes, residual variances
and the contextual effect ``beta_B - beta_W`` are functions of ``(mu, Sigma_W, Sigma_B)``;
their standard errors come from the observed information (central differences of the
analytic gradient) by the delta method, which at the maximum equals the observed information
of the regression parameterisation (lavaan's ``information = "observed"``).

Why hand-written: no package pinned in ``requirements.lock`` fits two-level SEM with latent
cluster means (semopy, the Python SEM package on PyPI, is not pinned and has no two-level
latent-mean model). Verified against lavaan 0.6-14 two-level SEM (``level: 1`` / ``level: 2``
blocks, ML, observed information) in ``tests/test_latent_means.py`` on a simulated unbalanced
data set and on the bundled example's clients (``tests/data/models_r/ref_latent_means.R``),
and by parameter recovery against observed-mean centring.

Limitation: complete cases only (a client missing the outcome, the alliance or a covariate is
left out, as the mixed model does); lavaan's FIML for two-level data is not reproduced.

References
----------
Asparouhov, T., & Muthén, B. (2007). Computationally efficient estimation of multilevel
high-dimensional latent variable models. *Proceedings of the 2007 JSM meeting*, Section on
Statistics in Epidemiology, 2531–2535.
Lüdtke, O., Marsh, H. W., Robitzsch, A., Trautwein, U., Asparouhov, T., & Muthén, B. (2008).
The multilevel latent covariate model: a new, more reliable approach to group-level effects in
contextual studies. *Psychological Methods*, 13, 203–229.
Rosseel, Y. (2012). lavaan: an R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1–36.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance.errors import require_columns as _require_columns
from alliance.models.data import THERAPIST, NotEstimableError
from alliance.models.dynamic import _hessian_from_gradient

__all__ = [
    "LATENT_MEAN_REFERENCE",
    "ClusterStatistics",
    "LatentMeanResult",
    "cluster_statistics",
    "fit_latent_mean_slopes",
    "latent_mean_summary",
    "simulate_latent_mean_data",
    "two_level_loglik",
]

LATENT_MEAN_REFERENCE = ("Lüdtke, O., Marsh, H. W., Robitzsch, A., Trautwein, U., Asparouhov, T., & Muthén, B. "
                         "(2008). The multilevel latent covariate model: a new, more reliable approach to group-level "
                         "effects in contextual studies. Psychological Methods, 13, 203\u2013229.")


# --------------------------------------------------------------------------------------
# Sufficient statistics and the likelihood
# --------------------------------------------------------------------------------------
@dataclass
class ClusterStatistics:
    """Sufficient statistics of the two-level normal model.

    ``names`` the variables (predictors first, the outcome last); ``sizes`` ``n_j`` and
    ``means`` the cluster means (one row per cluster); ``within`` the pooled within-cluster
    SSCP ``sum_j sum_i (z_ij - zbar_j)(z_ij - zbar_j)'``.
    """

    names: list[str]
    sizes: np.ndarray
    means: np.ndarray
    within: np.ndarray

    @property
    def n_obs(self) -> int:
        return int(self.sizes.sum())

    @property
    def n_clusters(self) -> int:
        return len(self.sizes)


def cluster_statistics(values: np.ndarray, clusters: np.ndarray, names: Sequence[str]) -> ClusterStatistics:
    """Cluster sizes, cluster means and pooled within SSCP of ``values`` (n x p, complete)."""
    values = np.asarray(values, dtype=float)
    codes, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    sizes = np.bincount(inverse).astype(float)
    sums = np.zeros((len(codes), values.shape[1]))
    np.add.at(sums, inverse, values)
    means = sums / sizes[:, None]
    centred = values - means[inverse]
    return ClusterStatistics(list(names), sizes, means, centred.T @ centred)


def _loglik_and_gradient(s: ClusterStatistics, mu: np.ndarray, sigma_w: np.ndarray,
                         sigma_b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood and its matrix derivatives ``(d mu, d Sigma_W, d Sigma_B)`` (``dl =
    tr(G dSigma)``, G symmetric); ``-inf`` where ``Sigma_W`` or a ``V_j`` is not positive definite."""
    p = len(mu)
    try:
        chol_w = np.linalg.cholesky(sigma_w)
    except np.linalg.LinAlgError:
        return -np.inf, mu * 0, sigma_w * 0, sigma_b * 0
    inv_w = np.linalg.inv(sigma_w)
    n_total, n_clusters = s.n_obs, s.n_clusters
    value = -0.5 * (n_total * p * math.log(2 * math.pi) + (n_total - n_clusters) * 2 * np.log(np.diag(chol_w)).sum()
                    + float(np.sum(inv_w * s.within)))
    g_w = -0.5 * ((n_total - n_clusters) * inv_w - inv_w @ s.within @ inv_w)
    g_b = np.zeros_like(sigma_b)
    g_mu = np.zeros_like(mu)
    for n in np.unique(s.sizes):
        rows = s.sizes == n
        v = sigma_w + n * sigma_b
        try:
            chol_v = np.linalg.cholesky(v)
        except np.linalg.LinAlgError:
            return -np.inf, g_mu, g_w, g_b
        inv_v = np.linalg.inv(v)
        d = s.means[rows] - mu
        dv = d @ inv_v
        k = int(rows.sum())
        value -= 0.5 * (k * 2 * np.log(np.diag(chol_v)).sum() + n * float(np.sum(dv * d)))
        outer = dv.T @ dv
        part = -0.5 * (k * inv_v - n * outer)
        g_w += part
        g_b += n * part
        g_mu += n * dv.sum(axis=0)
    return float(value), g_mu, g_w, g_b


def two_level_loglik(s: ClusterStatistics, mu: np.ndarray, sigma_w: np.ndarray, sigma_b: np.ndarray) -> float:
    """Log-likelihood of the two-level normal model at ``(mu, Sigma_W, Sigma_B)``."""
    return _loglik_and_gradient(s, np.asarray(mu, float), np.asarray(sigma_w, float), np.asarray(sigma_b, float))[0]


# --------------------------------------------------------------------------------------
# Parameterisations
# --------------------------------------------------------------------------------------
def _vech(m: np.ndarray) -> np.ndarray:
    return m[np.tril_indices(len(m))]


def _unvech(v: np.ndarray, p: int) -> np.ndarray:
    m = np.zeros((p, p), dtype=np.result_type(v, float))
    m[np.tril_indices(p)] = v
    return m + np.tril(m, -1).T


def _split(v: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = p * (p + 1) // 2
    return v[:p], _unvech(v[p:p + q], p), _unvech(v[p + q:], p)


def _vech_gradient(g: np.ndarray) -> np.ndarray:
    """d l / d vech(Sigma) from the symmetric matrix derivative (off-diagonals count twice)."""
    return _vech(2 * g - np.diag(np.diag(g)))


def _moment_gradient(s: ClusterStatistics, v: np.ndarray) -> np.ndarray:
    p = len(s.names)
    value, g_mu, g_w, g_b = _loglik_and_gradient(s, *_split(v, p))
    if not np.isfinite(value):
        return np.full(len(v), np.nan)
    return np.r_[g_mu, _vech_gradient(g_w), _vech_gradient(g_b)]


def _regression(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(Phi, beta, psi)``: predictor covariance, slopes of the last variable on the others
    and its residual variance."""
    phi, c = sigma[:-1, :-1], sigma[:-1, -1]
    beta = np.linalg.solve(phi, c)
    return phi, beta, float(sigma[-1, -1] - c @ beta)


def _natural(v: np.ndarray, p: int) -> np.ndarray:
    """The model parameters (:func:`_parameter_rows` order, without the contextual effect)
    from the moments ``(mu, vech Sigma_W, vech Sigma_B)``."""
    mu, sigma_w, sigma_b = _split(v, p)
    phi_w, beta_w, psi_w = _regression(sigma_w)
    phi_b, beta_b, psi_b = _regression(sigma_b)
    intercept = mu[-1] - beta_b @ mu[:-1]
    return np.r_[beta_w, psi_w, _vech(phi_w), beta_b, psi_b, _vech(phi_b), intercept, mu[:-1]]


def _level_block(beta: np.ndarray, psi, phi: np.ndarray) -> np.ndarray:
    c = phi @ beta
    top = np.concatenate([phi, c[:, None]], axis=1)
    bottom = np.concatenate([c, [beta @ c + psi]])[None, :]
    return np.concatenate([top, bottom], axis=0)


def _moments(theta: np.ndarray, p: int) -> np.ndarray:
    """``(mu, vech Sigma_W, vech Sigma_B)`` from the model parameters (the inverse of
    :func:`_natural`; products only, so complex steps pass through)."""
    k = p - 1
    q = k * (k + 1) // 2
    blocks = []
    for start in (0, k + 1 + q):
        beta, psi, phi = theta[start:start + k], theta[start + k], _unvech(theta[start + k + 1:start + k + 1 + q], k)
        blocks.append(_level_block(beta, psi, phi))
    intercept, mu_x = theta[2 * (k + 1 + q)], theta[2 * (k + 1 + q) + 1:]
    beta_b = theta[k + 1 + q:2 * k + 1 + q]
    mu = np.concatenate([mu_x, [intercept + beta_b @ mu_x]])
    return np.concatenate([mu, _vech(blocks[0]), _vech(blocks[1])])


def _complex_jacobian(f, x: np.ndarray) -> np.ndarray:
    """Jacobian of an analytic map by complex steps (exact to rounding, no step-size trade-off)."""
    h = 1e-30
    cols = []
    for i in range(len(x)):
        z = x.astype(complex)
        z[i] += 1j * h
        cols.append(np.imag(f(z)) / h)
    return np.column_stack(cols)


def _parameter_rows(names: Sequence[str]) -> pd.DataFrame:
    """Level, lhs, op, rhs of every reported parameter, as lavaan's ``parameterEstimates``
    (covariances in :func:`_vech` order)."""
    predictors, outcome = list(names[:-1]), names[-1]
    pairs = list(zip(*np.tril_indices(len(predictors))))
    rows = []
    for level in ("within", "between"):
        rows += [(level, outcome, "~", x) for x in predictors]
        rows.append((level, outcome, "~~", outcome))
        rows += [(level, predictors[j], "~~", predictors[i]) for i, j in pairs]
    rows.append(("between", outcome, "~1", ""))
    rows += [("between", x, "~1", "") for x in predictors]
    rows.append(("", "contextual", ":=", f"between {predictors[0]} - within {predictors[0]}"))
    return pd.DataFrame(rows, columns=["level", "lhs", "op", "rhs"])


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------
@dataclass
class LatentMeanResult:
    """A fit of the latent-mean (two-level SEM) model.

    ``estimates`` has one row per parameter (columns ``level``, ``lhs``, ``op``, ``rhs``,
    ``estimate``, ``se``, ``z``, ``p`` with lavaan's meaning; ``y ~ x`` at ``between`` is the
    latent-mean slope beta_B, at ``within`` beta_W, ``contextual`` is beta_B - beta_W). The
    therapist-level effects (between slopes and the contextual effect) also have ``df`` =
    therapists - between predictors - 1 (:func:`alliance.models.therapist_df`) and a t-based
    ``ci_low``/``ci_high``; the others have df = inf (normal).
    """

    estimates: pd.DataFrame
    loglik: float
    n_obs: int
    n_clusters: int
    cluster_sizes: dict[str, float]
    predictor: str
    outcome: str
    covariates: list[str]
    converged: bool
    warnings: list[str] = field(default_factory=list)

    def effect(self, level: str) -> pd.Series:
        """The alliance row at ``level`` (``within``, ``between`` or ``contextual``)."""
        e = self.estimates
        if level == "contextual":
            return e.loc[e["lhs"] == "contextual"].iloc[0]
        return e.loc[(e["level"] == level) & (e["op"] == "~") & (e["rhs"] == self.predictor)].iloc[0]


def _design(data: pd.DataFrame, covariates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Covariate columns coded as the mixed model codes them (lme4 treatment contrasts, names
    such as ``armPDT``)."""
    if not covariates:
        return np.empty((len(data), 0)), []
    from alliance.lmm.design import fixed_matrix, fixed_spec
    from alliance.lmm.formula import parse_formula

    # only the fixed part is used; the parser requires a random term
    parsed = parse_formula(f"response__ ~ {' + '.join(covariates)} + (1 | group__)")
    spec = fixed_spec(data, parsed)
    matrix, names = fixed_matrix(spec, data)
    return matrix[:, 1:], names[1:]


def _start(s: ClusterStatistics) -> np.ndarray:
    """Moment estimates: pooled within covariance; between from the covariance of the cluster
    means less the within part (Muthén's sigma_B*), made positive definite."""
    sigma_w = s.within / max(s.n_obs - s.n_clusters, 1)
    mu = s.means.T @ s.sizes / s.n_obs
    n_tilde = (s.n_obs - (s.sizes ** 2).sum() / s.n_obs) / max(s.n_clusters - 1, 1)
    dev = s.means - mu
    between = (dev.T * s.sizes) @ dev / max(s.n_clusters - 1, 1)
    sigma_b = (between - sigma_w) / n_tilde
    w, vecs = np.linalg.eigh(sigma_b)
    floor = 0.05 * np.diag(sigma_w).min() / max(n_tilde, 1)
    sigma_b = (vecs * np.maximum(w, floor)) @ vecs.T
    return np.r_[mu, _vech(sigma_w), _vech(sigma_b)]


class _Layout:
    """Positions in the parameter vector of :func:`_natural` for ``p`` variables."""

    def __init__(self, p: int):
        k = p - 1
        q = k * (k + 1) // 2
        self.p, self.k, self.q = p, k, q
        self.psi_w, self.psi_b = k, 2 * k + 1 + q
        self.phi_w = slice(k + 1, k + 1 + q)
        self.phi_b = slice(2 * k + 2 + q, 2 * k + 2 + 2 * q)
        self.beta_w0, self.beta_b0 = 0, k + 1 + q
        self.size = 2 * (k + 1 + q) + 1 + k


def _from_unconstrained(u: np.ndarray, lay: _Layout) -> np.ndarray:
    """Model parameters from the optimiser's vector: log residual variance and Cholesky
    factor (log diagonal) within, squared residual SD and Cholesky factor between, so that
    Sigma_W is positive definite and Sigma_B positive semi-definite."""
    theta = u.astype(np.result_type(u, float)).copy()
    tril = np.tril_indices(lay.k)
    diag = tril[0] == tril[1]
    theta[lay.psi_w] = np.exp(u[lay.psi_w])
    theta[lay.psi_b] = u[lay.psi_b] ** 2
    for part, log_diag in ((lay.phi_w, True), (lay.phi_b, False)):
        lower = np.zeros((lay.k, lay.k), dtype=theta.dtype)
        lower[tril] = np.where(diag, np.exp(u[part]), u[part]) if log_diag else u[part]
        theta[part] = _vech(lower @ lower.T)
    return theta


def _to_unconstrained(theta: np.ndarray, lay: _Layout) -> np.ndarray:
    u = theta.astype(float).copy()
    tril = np.tril_indices(lay.k)
    diag = tril[0] == tril[1]
    u[lay.psi_w] = math.log(theta[lay.psi_w])
    u[lay.psi_b] = math.sqrt(max(theta[lay.psi_b], 1e-4))
    for part, log_diag in ((lay.phi_w, True), (lay.phi_b, False)):
        lower = np.linalg.cholesky(_unvech(theta[part], lay.k))
        values = lower[tril]
        if log_diag:
            values[diag] = np.log(values[diag])
        u[part] = values
    return u


def _standardised(s: ClusterStatistics) -> tuple[ClusterStatistics, np.ndarray, np.ndarray]:
    """The statistics of the variables centred and scaled to unit total SD (one step size
    for the optimiser), with the centre and the SDs."""
    centre = s.means.T @ s.sizes / s.n_obs
    total = s.within + ((s.means - centre).T * s.sizes) @ (s.means - centre)
    sd = np.sqrt(np.diag(total) / s.n_obs)
    return (ClusterStatistics(s.names, s.sizes, (s.means - centre) / sd, s.within / np.outer(sd, sd)),
            centre, sd)


def _theta_gradient(s: ClusterStatistics, theta: np.ndarray, lay: _Layout) -> np.ndarray:
    jac = _complex_jacobian(lambda t: _moments(t, lay.p), theta)
    return jac.T @ _moment_gradient(s, _moments(theta, lay.p))


def _loglik_at(s: ClusterStatistics, theta: np.ndarray, lay: _Layout) -> float:
    return two_level_loglik(s, *_split(_moments(theta, lay.p), lay.p))


def _newton(s: ClusterStatistics, theta: np.ndarray, free: np.ndarray, lay: _Layout) -> np.ndarray:
    """Newton steps with step halving on the free parameters until the gradient vanishes."""
    def grad(t_free: np.ndarray) -> np.ndarray:
        t = theta.copy()
        t[free] = t_free
        return _theta_gradient(s, t, lay)[free]

    for _ in range(30):
        g = grad(theta[free])
        if not np.all(np.isfinite(g)) or np.max(np.abs(g) * np.maximum(1.0, np.abs(theta[free]))) < 1e-10:
            break
        H = _hessian_from_gradient(grad, theta[free])
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        current = _loglik_at(s, theta, lay)
        for shrink in 0.5 ** np.arange(20):
            trial = theta.copy()
            trial[free] -= shrink * step
            if _loglik_at(s, trial, lay) >= current - 1e-10:
                theta = trial
                break
        else:
            break
    return theta


def _maximise(s: ClusterStatistics) -> tuple[np.ndarray, np.ndarray, float, bool, str]:
    """ML estimates of the model parameters with Sigma_W positive definite and Sigma_B positive
    semi-definite: BFGS on the standardised variables in an unconstrained parameterisation
    (:func:`_from_unconstrained`), then Newton steps on the original scale. A between residual
    variance of the outcome at the boundary 0 is fixed there (``free`` False) when the
    likelihood falls towards negative values.

    Returns
    -------
    (theta, free, loglik, converged, message)
    """
    lay = _Layout(len(s.names))
    std, centre, sd = _standardised(s)
    theta0 = _natural(_start(std), lay.p)
    u0 = _to_unconstrained(theta0, lay)

    def negll(u: np.ndarray) -> tuple[float, np.ndarray]:
        v = _moments(_from_unconstrained(u, lay), lay.p)
        value, g_mu, g_w, g_b = _loglik_and_gradient(std, *_split(v, lay.p))
        if not np.isfinite(value):
            return 1e20, np.zeros_like(u)
        jac = _complex_jacobian(lambda w: _moments(_from_unconstrained(w, lay), lay.p), u)
        return -value, -(jac.T @ np.r_[g_mu, _vech_gradient(g_w), _vech_gradient(g_b)])

    fit = optimize.minimize(negll, u0, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 10000})
    mu_s, w_s, b_s = _split(_moments(_from_unconstrained(fit.x, lay), lay.p), lay.p)
    scale = np.outer(sd, sd)
    theta = _natural(np.r_[centre + sd * mu_s, _vech(w_s * scale), _vech(b_s * scale)], lay.p)
    free = np.ones(lay.size, dtype=bool)
    at_zero = fit.x[lay.psi_b] ** 2 < 1e-4  # below 1e-4 of the outcome's total variance
    if at_zero:
        theta[lay.psi_b] = 0.0
        free[lay.psi_b] = False
    theta = _newton(s, theta, free, lay)
    if at_zero and _theta_gradient(s, theta, lay)[lay.psi_b] > 0:
        free[lay.psi_b] = True  # the maximum lies inside after all
        theta = _newton(s, theta, free, lay)
    g = _theta_gradient(s, theta, lay)[free]
    converged = bool(np.all(np.isfinite(g)) and np.max(np.abs(g) * np.maximum(1.0, np.abs(theta[free]))) < 1e-6)
    return theta, free, _loglik_at(s, theta, lay), converged, str(fit.message)


def _covariance(s: ClusterStatistics, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Inverse observed information of the free parameters (central differences of the
    analytic gradient); rows and columns of fixed parameters are 0."""
    lay = _Layout(len(s.names))

    def grad(t_free: np.ndarray) -> np.ndarray:
        t = theta.copy()
        t[free] = t_free
        return _theta_gradient(s, t, lay)[free]

    cov = np.zeros((lay.size, lay.size))
    cov[np.ix_(free, free)] = np.linalg.inv(-_hessian_from_gradient(grad, theta[free]))
    return cov


def fit_latent_mean_slopes(data: pd.DataFrame, outcome: str, predictor: str, covariates: Sequence[str] = (),
                           cluster: str = THERAPIST, level: float = 0.95) -> LatentMeanResult:
    """Fit the multilevel latent covariate model (Lüdtke et al., 2008) by maximum likelihood.

    ``outcome`` on ``predictor`` (and ``covariates``) at the within-therapist and at the
    between-therapist level, the therapist means latent (see the module docstring for the
    model, the likelihood and the tests against lavaan).

    Parameters
    ----------
    data : DataFrame
        One row per client: ``outcome``, ``predictor``, ``covariates`` and ``cluster``. Rows
        missing any of them are left out (complete cases).
    outcome, predictor : str
        Client-level outcome and predictor (e.g. ``post`` and ``early_alliance``).
    covariates : sequence of str
        Client-level covariates; categorical ones are coded as lme4 codes them (treatment
        contrasts); each gets a within and a between slope.
    cluster : str
        The therapist column.
    level : float
        Confidence level.

    Returns
    -------
    LatentMeanResult

    Raises
    ------
    ValueError
        A column is missing.
    NotEstimableError
        Too few therapists for the between-level regression, a variable without variation
        within therapists, or no maximum found.
    """
    _require_columns(data, [outcome, predictor, *covariates, cluster], "data")
    rows = data.loc[data[[outcome, predictor, *covariates, cluster]].notna().all(axis=1)]
    design, covariate_names = _design(rows, covariates)
    names = [predictor, *covariate_names, outcome]
    values = np.column_stack([rows[predictor].to_numpy(float), design, rows[outcome].to_numpy(float)])
    s = cluster_statistics(values, rows[cluster].astype(str).to_numpy(), names)
    p = len(names)
    from alliance.models.summaries import therapist_df

    df_between = therapist_df(s.n_clusters, p - 1)
    if df_between < 1 or s.n_obs - s.n_clusters <= p:
        raise NotEstimableError(f"{s.n_clusters} therapist(s) and {s.n_obs} client(s) with complete data for "
                                f"{p - 1} predictor(s) at each level; the latent-mean model needs more")
    within_var = np.diag(s.within)
    if np.any(within_var <= 1e-12 * np.maximum(1.0, np.abs(s.means).max(axis=0)) ** 2):
        flat = [n for n, w in zip(names, within_var) if w <= 0 or not np.isfinite(w)] or names
        raise NotEstimableError(f"variable(s) {flat} do not vary within therapists; they cannot have a within slope")
    theta, free, loglik, converged, message = _maximise(s)
    lay = _Layout(p)
    warnings = [] if converged else [f"latent-mean model: no maximum found ({message})"]
    contrast = np.zeros(lay.size)
    contrast[lay.beta_b0], contrast[lay.beta_w0] = 1.0, -1.0
    est = np.r_[theta, contrast @ theta]
    try:
        cov = _covariance(s, theta, free)
        se = np.sqrt(np.clip(np.r_[np.diag(cov), contrast @ cov @ contrast], 0, None))
    except np.linalg.LinAlgError:
        se = np.full(len(est), np.nan)
        warnings.append("latent-mean model: the information matrix is singular; standard errors are missing")
    table = _parameter_rows(names)
    table["estimate"], table["se"] = est, np.where(np.r_[free, True], se, np.nan)
    table["z"] = est / table["se"]
    table["p"] = 2 * stats.norm.sf(np.abs(table["z"]))
    therapist_level = ((table["level"] == "between") & (table["op"] == "~")) | (table["op"] == ":=")
    table["df"] = np.where(therapist_level, df_between, np.inf)
    t = np.where(therapist_level, table["z"], np.nan)
    table.loc[therapist_level, "p"] = 2 * stats.t.sf(np.abs(t[therapist_level]), df_between)
    q = np.where(therapist_level, stats.t.ppf(0.5 + level / 2, df_between), stats.norm.ppf(0.5 + level / 2))
    table["ci_low"], table["ci_high"] = est - q * table["se"], est + q * table["se"]
    if not free[lay.psi_b]:
        warnings.append(f"latent-mean model: the between-therapist residual variance of {outcome} is estimated "
                        "at 0 (boundary); it was held there for the standard errors")
    phi_b = _unvech(theta[lay.phi_b], lay.k)
    if np.linalg.eigvalsh(phi_b).min() <= 1e-8 * max(np.abs(phi_b).max(), 1e-300):
        warnings.append("latent-mean model: the between-therapist covariance matrix of the predictors is "
                        "singular (a between variance at 0); the between slopes are not identified")
    sizes = s.sizes
    return LatentMeanResult(table, loglik, s.n_obs, s.n_clusters,
                            {"min": float(sizes.min()), "median": float(np.median(sizes)), "max": float(sizes.max())},
                            predictor, outcome, covariate_names, converged, warnings)


def latent_mean_summary(result: LatentMeanResult, term_tm: str, term_cd: str) -> dict:
    """Plain-type record for ``fit.json``: the latent-mean between and within slopes and the
    contextual effect (estimate, se, df, p, CI), what they stand beside in the mixed model
    (``term_tm``, ``term_cd``), N per level, the loglik and the method. ``df`` is None for
    the normal-theory (within) row."""
    rows = {}
    for key in ("between", "within", "contextual"):
        r = result.effect(key)
        rows[key] = {k: float(r[k]) for k in ("estimate", "se", "df", "p", "ci_low", "ci_high")}
        if not math.isfinite(rows[key]["df"]):
            rows[key]["df"] = None  # normal-theory row (strict JSON has no infinity)
    return {"method": "two-level SEM with latent therapist means, ML (Lüdtke et al., 2008)",
            "outcome": result.outcome, "predictor": result.predictor, "covariates": list(result.covariates),
            "beside": {"between": term_tm, "within": term_cd},
            "n_clients": result.n_obs, "n_therapists": result.n_clusters, "cluster_sizes": result.cluster_sizes,
            "loglik": result.loglik, "converged": result.converged, "warnings": list(result.warnings), **rows}


# --------------------------------------------------------------------------------------
# Simulation (tests, the lavaan fixture)
# --------------------------------------------------------------------------------------
def simulate_latent_mean_data(sizes: Sequence[int], beta_within: float, beta_between: float, seed: int,
                              var_u: float = 1.0, var_e: float = 4.0, var_v: float = 0.5, var_r: float = 2.0,
                              mu_x: float = 5.0, intercept: float = 1.0, gamma: float = 0.4) -> pd.DataFrame:
    """Draw clients from the model of Lüdtke et al. (2008) with therapist ``j`` having
    ``sizes[j]`` clients: columns ``therapist`` (``T001``...), ``x``, ``z`` (a client-level
    covariate whose therapist part correlates with ``u_j``) and ``y`` (``gamma z`` added)."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes, dtype=int)
    u = rng.normal(0, math.sqrt(var_u), len(sizes))
    v = rng.normal(0, math.sqrt(var_v), len(sizes))
    z_between = 0.5 * u + rng.normal(0, 0.7, len(sizes))
    j = np.repeat(np.arange(len(sizes)), sizes)
    e = rng.normal(0, math.sqrt(var_e), len(j))
    r = rng.normal(0, math.sqrt(var_r), len(j))
    z = z_between[j] + 0.3 * e + rng.normal(0, 1.0, len(j))
    x = mu_x + u[j] + e
    y = intercept + beta_within * e + beta_between * u[j] + gamma * z + v[j] + r
    return pd.DataFrame({"therapist": [f"T{k + 1:03d}" for k in j], "x": x, "z": z, "y": y})
