"""Internal consistency: Cronbach's alpha with Feldt's CI, McDonald's omega total from a
one-factor maximum-likelihood factor analysis, and corrected item-total correlations.

All functions take an (administrations x items) array or DataFrame of keyed item scores
(reverse-keyed items already reversed). :func:`internal_consistency` does the keying from the
instrument keys and tabulates every instrument x scale x respondent.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance.scoring.instruments import InstrumentKey
from alliance.scoring.scores import keyed_items

CONSISTENCY_COLUMNS = ("instrument", "key", "scale", "respondent", "session", "n", "k", "alpha",
                       "ci_low", "ci_high", "omega_total", "mean_item_total_r", "min_item_total_r")


def cronbach_alpha(items, ci: float = 0.95, nan_policy: str = "listwise") -> tuple[float, float, float]:
    """Cronbach's alpha with Feldt's confidence interval.

    alpha = k / (k - 1) * (1 - sum of item variances / variance of the sum), computed from the
    item covariance matrix. The CI is Feldt's (1965): with n rows, df1 = n - 1 and
    df2 = (n - 1)(k - 1), the bounds are 1 - (1 - alpha) F_{1-a/2}(df1, df2) and
    1 - (1 - alpha) F_{a/2}(df1, df2).

    Parameters
    ----------
    items
        (n x k) array or DataFrame of item scores, k >= 2.
    ci
        Confidence level.
    nan_policy
        ``"listwise"`` (drop rows with any missing item; n = complete rows) or ``"pairwise"``
        (pairwise-complete covariances; n = all rows), as ``psych::alpha(use=...)``.

    Returns
    -------
    (alpha, ci_low, ci_high)
        At full precision. NaN when fewer than 2 rows are usable.

    Notes
    -----
    Cronbach (1951); Feldt (1965). Tested against ``pingouin.cronbach_alpha`` (which rounds
    the CI to 3 decimals, and with ``nan_policy="listwise"`` takes n before dropping rows; this
    function uses the number of complete rows).
    """
    x = _as_matrix(items)
    k = x.shape[1]
    if k < 2:
        raise ValueError(f"cronbach_alpha: needs at least 2 items, got {k}")
    if nan_policy not in ("listwise", "pairwise"):
        raise ValueError(f"cronbach_alpha: nan_policy must be 'listwise' or 'pairwise', got {nan_policy!r}")
    if nan_policy == "listwise":
        x = x[~np.isnan(x).any(axis=1)]
        cov = np.cov(x, rowvar=False) if x.shape[0] >= 2 else np.full((k, k), np.nan)
    else:
        cov = pd.DataFrame(x).cov().to_numpy()
    n = x.shape[0]
    if n < 2:
        return (np.nan, np.nan, np.nan)
    alpha = k / (k - 1) * (1 - np.trace(cov) / cov.sum())
    tail = (1 - ci) / 2
    df1, df2 = n - 1, (n - 1) * (k - 1)
    low = 1 - (1 - alpha) * stats.f.isf(tail, df1, df2)
    high = 1 - (1 - alpha) * stats.f.isf(1 - tail, df1, df2)
    return (float(alpha), float(low), float(high))


def one_factor_ml(corr: np.ndarray, n_obs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood one-factor solution of a correlation (or covariance) matrix.

    Minimises F(psi) = log|Sigma| + tr(S Sigma^-1) - log|S| - p, Sigma = l l' + diag(psi), by
    concentrating the loadings out: for given uniquenesses psi the optimal loadings are
    psi^1/2 v sqrt(theta - 1), with theta, v the largest eigenvalue and vector of
    psi^-1/2 S psi^-1/2 (Joreskog, 1967; the method of R's ``factanal``, which ``psych::fa``
    with ``fm = "ml"`` also uses). Uniquenesses are bounded to [0.005, var_i].

    Returns
    -------
    (loadings, uniquenesses)
        Loadings signed so that their sum is positive.
    """
    s = np.asarray(corr, dtype=float)
    p = s.shape[0]
    variances = np.diag(s)

    def objective(psi):
        scale = 1 / np.sqrt(psi)
        eig = np.linalg.eigvalsh(s * np.outer(scale, scale))[:-1]  # all but the largest
        return -(np.sum(np.log(eig) - eig) - 1 + p)

    def gradient(psi):
        loadings = _loadings_given(s, psi)
        residual = np.outer(loadings, loadings) + np.diag(psi) - s
        return np.diag(residual) / psi ** 2

    smc = 1 - 1 / np.diag(np.linalg.inv(s))  # squared multiple correlations as start
    start = np.clip(variances * (1 - smc), 0.005, variances)
    fit = optimize.minimize(objective, start, jac=gradient, method="L-BFGS-B",
                            bounds=list(zip(np.full(p, 0.005), variances)),
                            options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-10})
    psi = fit.x
    loadings = _loadings_given(s, psi)
    if loadings.sum() < 0:
        loadings = -loadings
    return loadings, psi


def _loadings_given(s: np.ndarray, psi: np.ndarray) -> np.ndarray:
    scale = 1 / np.sqrt(psi)
    values, vectors = np.linalg.eigh(s * np.outer(scale, scale))
    return np.sqrt(psi) * vectors[:, -1] * np.sqrt(max(values[-1] - 1, 0.0))


def omega_total(items, standardize: bool = True, variance: str = "model") -> float:
    """McDonald's omega total from a one-factor ML factor analysis.

    omega_total = (sum lambda)^2 / ((sum lambda)^2 + sum psi) for the one-factor model
    (McDonald, 1999), i.e. common variance over the model-implied variance of the sum. With
    ``variance="observed"`` the denominator is the observed variance of the sum,
    omega = 1 - sum psi / sum(S), which is what ``psych::omega(nfactors = 1)`` reports as
    ``omega.tot``. With ``standardize=True`` (default, as psych) the model is fitted to the item
    correlation matrix (reliability of the sum of standardised items); with ``False`` to the
    covariance matrix (reliability of the raw sum). Rows with any missing item are dropped;
    with no more complete rows than items the model is not identified and omega is NaN.

    Notes
    -----
    ``psych::omega`` fits a hierarchical (Schmid-Leiman) model by default; with one factor the
    two definitions above coincide when the model fits exactly. Tested against loadings of
    ``psych::fa(fm = "ml")`` and ``psych::omega`` on a simulated fixture, and on a population
    correlation matrix with known loadings, where omega is exact (tests/test_psychometrics.py).
    """
    if variance not in ("model", "observed"):
        raise ValueError(f"omega_total: variance must be 'model' or 'observed', got {variance!r}")
    x = _as_matrix(items)
    x = x[~np.isnan(x).any(axis=1)]
    if x.shape[0] < 3 or x.shape[1] < 2:
        return np.nan
    if x.shape[0] <= x.shape[1]:
        # n <= k: the item covariance matrix is singular and the one-factor ML model is not
        # identified; whether LAPACK notices depends on the BLAS kernel, so decide here.
        return np.nan
    s = np.corrcoef(x, rowvar=False) if standardize else np.cov(x, rowvar=False)
    if not np.all(np.isfinite(s)) or np.any(np.diag(s) <= 0):
        return np.nan
    loadings, psi = one_factor_ml(s)
    if variance == "observed":
        return float(1 - psi.sum() / s.sum())
    common = loadings.sum() ** 2
    return float(common / (common + psi.sum()))


def item_total_correlations(items) -> np.ndarray:
    """Corrected item-total correlations: each item with the sum of the other items.

    Rows with any missing item are dropped. Returns one correlation per item (NaN for an item
    or rest score with no variance).
    """
    x = _as_matrix(items)
    x = x[~np.isnan(x).any(axis=1)]
    if x.shape[0] < 3:
        return np.full(x.shape[1], np.nan)
    rest = x.sum(axis=1, keepdims=True) - x
    xc, rc = x - x.mean(axis=0), rest - rest.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * rc).sum(axis=0) / np.sqrt((xc ** 2).sum(axis=0) * (rc ** 2).sum(axis=0))
    return r


def internal_consistency(administrations: pd.DataFrame, instruments: Mapping[str, InstrumentKey],
                         session: int | None = None) -> pd.DataFrame:
    """Alpha (with 95% CI), omega total and item-total correlations per instrument x scale x
    respondent.

    Parameters
    ----------
    administrations
        Tidy administrations (item columns ``{entry}_{n}``), responses already validated by
        :func:`alliance.scoring.scores.score_administrations`.
    instruments
        Config entry name -> key. Reverse-keyed items are reversed first.
    session
        Only administrations at this session (``None``: all administrations, which repeats
        clients; the estimates then describe administrations, not independent people).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CONSISTENCY_COLUMNS`; ``n`` is the number of complete administrations
        (listwise), ``k`` the number of items. Scales of one item give NaN.
    """
    rows = []
    data = administrations if session is None else administrations[administrations["session"].eq(session)]
    for entry, key in instruments.items():
        columns = [f"{entry}_{n}" for n in range(1, key.n_items + 1)]
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise ValueError(f"internal consistency: instrument '{entry}' lacks item column(s) {missing}")
        x_all = keyed_items(data[columns].to_numpy(dtype=float, na_value=np.nan), key)
        administered = (~np.isnan(x_all)).any(axis=1)
        for respondent in sorted(pd.unique(data.loc[administered, "respondent"].dropna())):
            chosen = administered & data["respondent"].eq(respondent).to_numpy()
            for name in key.scales:
                items = np.asarray(key.scale_items(name)) - 1
                rows.append(_consistency_row(x_all[chosen][:, items], entry, key, name, respondent, session))
    return pd.DataFrame(rows, columns=list(CONSISTENCY_COLUMNS))


def _consistency_row(x: np.ndarray, entry: str, key: InstrumentKey, scale: str, respondent: str,
                     session: int | None) -> dict:
    complete = x[~np.isnan(x).any(axis=1)]
    n, k = complete.shape
    row = {"instrument": entry, "key": key.name, "scale": scale, "respondent": respondent,
           "session": session, "n": n, "k": k}
    if k < 2 or n < 3:
        return row | dict.fromkeys(("alpha", "ci_low", "ci_high", "omega_total", "mean_item_total_r",
                                    "min_item_total_r"), np.nan)
    alpha, low, high = cronbach_alpha(complete)
    r = item_total_correlations(complete)
    return row | {"alpha": alpha, "ci_low": low, "ci_high": high, "omega_total": omega_total(complete),
                  "mean_item_total_r": float(np.nanmean(r)) if np.isfinite(r).any() else np.nan,
                  "min_item_total_r": float(np.nanmin(r)) if np.isfinite(r).any() else np.nan}


def _as_matrix(items) -> np.ndarray:
    if isinstance(items, pd.DataFrame):
        return items.to_numpy(dtype=float, na_value=np.nan)
    x = np.asarray(items, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (administrations x items) array, got shape {x.shape}")
    return x
