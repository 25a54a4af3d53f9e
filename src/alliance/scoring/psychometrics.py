"""Internal consistency: Cronbach's alpha with Feldt's CI, McDonald's omega total from a
one-factor maximum-likelihood factor analysis or, for a scale with declared subscales, omega
total and hierarchical from a bifactor CFA; within- and between-client alpha and omega
(Geldhof, Preacher & Zyphur, 2014) with cluster-bootstrap CIs; corrected item-total
correlations.

All functions take an (administrations x items) array or DataFrame of keyed item scores
(reverse-keyed items already reversed). :func:`internal_consistency` does the keying from the
instrument keys and tabulates every instrument x scale x respondent.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance.lmm.crossed import single_threaded_blas
from alliance.scoring.instruments import InstrumentKey
from alliance.scoring.scores import keyed_items

#: Columns of the internal-consistency table. The first thirteen are those of earlier
#: versions (same names and meanings, except that ``omega_total`` of a scale with declared
#: subscales now comes from the bifactor model and ``ci_low``/``ci_high`` from a cluster
#: bootstrap when clients repeat); the rest were added.
CONSISTENCY_COLUMNS = ("instrument", "key", "scale", "respondent", "session", "n", "k", "alpha",
                       "ci_low", "ci_high", "omega_total", "mean_item_total_r", "min_item_total_r",
                       "status", "n_clients", "ci_method", "omega_model", "omega_hierarchical",
                       "alpha_within", "alpha_within_ci_low", "alpha_within_ci_high",
                       "alpha_between", "alpha_between_ci_low", "alpha_between_ci_high",
                       "omega_within", "omega_within_ci_low", "omega_within_ci_high",
                       "omega_between", "omega_between_ci_low", "omega_between_ci_high", "n_boot")
_NUMBERS = tuple(c for c in CONSISTENCY_COLUMNS[7:] if c not in ("status", "n_clients"))
#: Cluster-bootstrap replicates of the internal-consistency table.
N_BOOT = 200
#: ``ci_method`` of a row whose clients repeat when the bootstrap has no replicates
NO_BOOTSTRAP = "none (no bootstrap replicates)"


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


def declared_groups(key: InstrumentKey, scale: str) -> list[str] | None:
    """The declared group (subscale) of each item of ``scale``, when the key's other scales
    partition its items into at least two groups of three or more items (the WAI's task,
    bond and goal under its total; the OQ-45's SD, IR and SR); else None (one factor).

    The instrument key's subscale declaration is the factor structure: no separate
    ``factors:`` entry is needed."""
    items = key.scale_items(scale)
    parts = [name for name in key.scales if name != scale and not key.scales[name].is_composite
             and set(key.scale_items(name)) < set(items)]
    members = [i for name in parts for i in key.scale_items(name)]
    if len(parts) < 2 or sorted(members) != sorted(items):
        return None
    if min(len(key.scale_items(name)) for name in parts) < 3:
        return None
    owner = {i: name for name in parts for i in key.scale_items(name)}
    return [owner[i] for i in items]


def internal_consistency(administrations: pd.DataFrame, instruments: Mapping[str, InstrumentKey],
                         session: int | None = None, seed: int | None = 0,
                         n_boot: int = N_BOOT) -> pd.DataFrame:
    """Alpha (with 95% CI), omega and item-total correlations per instrument x scale x
    respondent, with within- and between-client alpha and omega where clients repeat.

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
    seed, n_boot
        The cluster bootstrap's seed (``numpy.random.default_rng``) and replicates (0: none;
        the CIs of the rows where clients repeat are then NaN, ``ci_method`` says so).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CONSISTENCY_COLUMNS`. ``n`` is the number of complete administrations
        (listwise), ``k`` the number of items, ``n_clients`` the clients they come from.
        ``ci_low``/``ci_high``: Feldt's CI when every client gives one row, else a
        percentile cluster bootstrap over clients (``ci_method``). ``omega_total`` comes from
        a bifactor model of the declared subscales where the key declares them
        (:func:`declared_groups`; ``omega_hierarchical`` then too), else from one factor
        (``omega_model``). ``*_within``/``*_between``: :func:`multilevel_reliability` with
        cluster-bootstrap CIs, where some client gives more than one row. ``status`` is
        ``ok`` or why the row holds no numbers (fewer complete rows than items + 1, or one
        item).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"internal consistency: n_boot must be a whole number >= 0, got {n_boot!r}")
    rows = []
    data = administrations if session is None else administrations[administrations["session"].eq(session)]
    with single_threaded_blas():
        for entry, key in instruments.items():
            columns = [f"{entry}_{n}" for n in range(1, key.n_items + 1)]
            missing = [c for c in columns if c not in data.columns]
            if missing:
                raise ValueError(f"internal consistency: instrument '{entry}' lacks item column(s) {missing}")
            x_all = data[columns].to_numpy(dtype=float, na_value=np.nan)
            administered = (~np.isnan(x_all)).any(axis=1)
            # only the rows that answered this instrument (a wide table is mostly empty cells)
            x_all = keyed_items(x_all[administered], key, copy=False)
            respondents, clients_all = data["respondent"][administered], data["client"].to_numpy()[administered]
            for respondent in sorted(pd.unique(respondents.dropna())):
                chosen = respondents.eq(respondent).to_numpy()
                clients = clients_all[chosen]
                x = x_all[chosen]
                for name in key.scales:
                    items = np.asarray(key.scale_items(name)) - 1
                    row = {"instrument": entry, "key": key.name, "scale": name, "respondent": respondent,
                           "session": session}
                    rows.append(row | _consistency_numbers(x[:, items], clients, declared_groups(key, name), seed,
                                                           n_boot))
            del x_all
    return pd.DataFrame(rows, columns=list(CONSISTENCY_COLUMNS))


def _consistency_numbers(x: np.ndarray, clients: np.ndarray, groups: list[str] | None, seed: int | None,
                         n_boot: int) -> dict:
    keep = ~np.isnan(x).any(axis=1)
    complete, clients = x[keep], clients[keep]
    n, k = complete.shape
    n_clients = int(pd.unique(clients).size)
    row = {"n": n, "k": k, "n_clients": n_clients} | dict.fromkeys(_NUMBERS, np.nan)
    if k < 2:
        return row | {"status": "not estimated: a single item"}
    if n <= k:
        return row | {"status": f"not estimated: {n} complete administrations for {k} items (needs more than {k})"}
    alpha, low, high = cronbach_alpha(complete)
    r = item_total_correlations(complete)
    row |= {"status": "ok", "alpha": alpha, "ci_low": low, "ci_high": high, "ci_method": "Feldt",
            "mean_item_total_r": float(np.nanmean(r)) if np.isfinite(r).any() else np.nan,
            "min_item_total_r": float(np.nanmin(r)) if np.isfinite(r).any() else np.nan}
    structure = bifactor_omega(complete, groups) if groups else {"omega_total": np.nan}
    if groups and np.isfinite(structure["omega_total"]):
        row |= structure | {"omega_model": "bifactor: " + ", ".join(dict.fromkeys(groups))}
    else:
        row |= {"omega_total": omega_total(complete), "omega_model": "one factor"}
    if n_clients < n:  # clients repeat: administrations are nested in clients
        point, boot = _bootstrap_from_stats(_cluster_stats(complete, clients), n_boot, seed, 0.95)
        row |= point | {
            name: value for name, value in boot.items() if name not in ("alpha_ci_low", "alpha_ci_high")}
        row |= {"ci_low": boot["alpha_ci_low"], "ci_high": boot["alpha_ci_high"],
                "ci_method": "cluster bootstrap over clients (percentile)" if n_boot
                else NO_BOOTSTRAP}
    return row


def _as_matrix(items) -> np.ndarray:
    if isinstance(items, pd.DataFrame):
        return items.to_numpy(dtype=float, na_value=np.nan)
    x = np.asarray(items, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (administrations x items) array, got shape {x.shape}")
    return x


# --- factor models with a declared structure ------------------------------------------------------

def _ml_discrepancy(s: np.ndarray, sigma: np.ndarray) -> tuple[float, np.ndarray]:
    """ML discrepancy log|Sigma| + tr(S Sigma^-1) (constants dropped) and its gradient in Sigma."""
    sign, logdet = np.linalg.slogdet(sigma)
    if sign <= 0:
        return np.inf, np.zeros_like(sigma)
    inv = np.linalg.inv(sigma)
    return float(logdet + np.trace(s @ inv)), inv - inv @ s @ inv


def _pattern_fit(s: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood fit of Sigma = L L' + diag(psi) with L zero outside ``pattern``
    (orthogonal factors of unit variance), as a confirmatory factor analysis (``lavaan`` with
    ``std.lv = TRUE, orthogonal = TRUE``). Uniquenesses are bounded below by 1e-6 var."""
    p, m = pattern.shape
    variances = np.diag(s)
    free = np.flatnonzero(pattern.ravel())
    start_l = np.where(pattern, 0.3 * np.sqrt(variances)[:, None], 0.0)
    start_l[:, 0] = 0.6 * np.sqrt(variances) if m > 1 else start_l[:, 0]
    psi0 = np.clip(variances - (start_l ** 2).sum(axis=1), 0.05 * variances, None)
    start = np.concatenate([start_l.ravel()[free], psi0])

    def unpack(theta):
        loadings = np.zeros(p * m)
        loadings[free] = theta[:free.size]
        return loadings.reshape(p, m), theta[free.size:]

    def objective(theta):
        loadings, psi = unpack(theta)
        value, g = _ml_discrepancy(s, loadings @ loadings.T + np.diag(psi))
        grad_l = (2 * g @ loadings).ravel()[free]
        return value, np.concatenate([grad_l, np.diag(g)])

    bounds = [(None, None)] * free.size + [(1e-6 * v, None) for v in variances]
    fit = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9})
    loadings, psi = unpack(fit.x)
    signs = np.where(loadings.sum(axis=0) < 0, -1.0, 1.0)
    return loadings * signs, psi


def bifactor_omega(items, groups, standardize: bool = True, variance: str = "model") -> dict[str, float]:
    """Omega total and omega hierarchical from a confirmatory bifactor model with the
    instrument's declared groups (e.g. the WAI's goal, task and bond).

    Every item loads on a general factor and on the one group factor of its declared
    subscale; all factors are orthogonal with unit variance (a bifactor CFA, fitted by maximum
    likelihood). With ``V`` the variance of the sum (model-implied, or observed with
    ``variance="observed"``), omega_total = ((sum g)^2 + sum_k (sum s_k)^2) / V and
    omega_hierarchical = (sum g)^2 / V (McDonald, 1999; Zinbarg et al., 2005; Reise, 2012).

    Parameters
    ----------
    items
        (n x k) keyed item scores; rows with a missing item are dropped.
    groups
        Length-k sequence of group labels (the declared subscale of each item). Each group
        needs at least 3 items for the model to be identified.

    Returns
    -------
    dict
        ``omega_total``, ``omega_hierarchical`` (NaN when n <= k or the groups identify no
        model).

    Notes
    -----
    Tested against ``lavaan`` 0.6-14 (bifactor CFA on the item correlation matrix with
    ``sample.cov.rescale = FALSE``) on a simulated fixture (tests/data/psychometrics_ml/).
    """
    if variance not in ("model", "observed"):
        raise ValueError(f"bifactor_omega: variance must be 'model' or 'observed', got {variance!r}")
    x = _as_matrix(items)
    groups = list(groups)
    if len(groups) != x.shape[1]:
        raise ValueError(f"bifactor_omega: {len(groups)} group labels for {x.shape[1]} items")
    x = x[~np.isnan(x).any(axis=1)]
    labels = list(dict.fromkeys(groups))
    nan = {"omega_total": np.nan, "omega_hierarchical": np.nan}
    if x.shape[0] <= x.shape[1] or len(labels) < 2 or min(groups.count(g) for g in labels) < 3:
        return nan
    s = np.corrcoef(x, rowvar=False) if standardize else np.cov(x, rowvar=False)
    if not np.all(np.isfinite(s)):
        return nan
    pattern = np.zeros((x.shape[1], len(labels) + 1), dtype=bool)
    pattern[:, 0] = True
    for i, g in enumerate(groups):
        pattern[i, labels.index(g) + 1] = True
    loadings, psi = _pattern_fit(s, pattern)
    sums = loadings.sum(axis=0) ** 2
    total = s.sum() if variance == "observed" else sums.sum() + psi.sum()
    return {"omega_total": float(sums.sum() / total), "omega_hierarchical": float(sums[0] / total)}


# --- multilevel reliability ----------------------------------------------------------------------

def level_covariances(items, clusters) -> dict[str, Any]:
    """Pooled within-cluster and between-cluster covariance matrices (Muthen, 1994).

    S_PW = sum (x_ij - xbar_j)(x_ij - xbar_j)' / (N - J);
    S_B = sum n_j (xbar_j - xbar)(xbar_j - xbar)' / J (the ML divisor);
    c = (N^2 - sum n_j^2) / (N (J - 1)) (the cluster size, for balanced data);
    Sigma_B = (S_B - S_PW) / c. For balanced data S_PW and S_B are the ML estimates of the
    unrestricted two-level model's Sigma_W and Sigma_W + c Sigma_B. Rows with a missing item
    are dropped.
    """
    return _covariances_from_stats(*_cluster_stats(items, clusters))


def _cluster_stats(items, clusters) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: size, item means, within SSCP matrix; and a weight of 1 each."""
    x = _as_matrix(items)
    clusters = np.asarray(clusters)
    keep = ~np.isnan(x).any(axis=1)
    x, clusters = x[keep], clusters[keep]
    codes, index = np.unique(clusters, return_inverse=True)
    sizes = np.bincount(index, minlength=codes.size).astype(float)
    means = np.zeros((codes.size, x.shape[1]))
    np.add.at(means, index, x)
    means /= sizes[:, None]
    dev = x - means[index]
    sscp = np.zeros((codes.size, x.shape[1], x.shape[1]))
    # a block of rows at a time: the rows' outer products (rows x k x k) of a national study
    # would take gigabytes; add.at still adds each row in turn, so the sums are the same
    for start in range(0, len(dev), _SSCP_BLOCK_ROWS):
        block = dev[start:start + _SSCP_BLOCK_ROWS]
        np.add.at(sscp, index[start:start + _SSCP_BLOCK_ROWS], block[:, :, None] * block[:, None, :])
    return sizes, means, sscp, np.ones(codes.size)


#: rows whose outer products _cluster_stats adds at once
_SSCP_BLOCK_ROWS = 8192
#: clusters up to which the between-cluster covariance sums them in order (einsum); above it
#: a matrix product (blocked sums, equal to rounding; internal consistency at 100,000 clients
#: 173 s -> 113 s). The bundled example's intervals keep their bytes.
_CLUSTER_SUM_IN_ORDER_UP_TO = 4000


def _covariances_from_stats(sizes, means, sscp, weights) -> dict[str, Any]:
    # ``weights``: how often each cluster is drawn (1 each for the data; counts in a bootstrap).
    n_total, n_clusters = float(weights @ sizes), float(weights.sum())
    grand = (weights * sizes) @ means / n_total
    within = np.tensordot(weights, sscp, axes=1)  # once: a bootstrap replicate's largest cost
    s_pw = within / (n_total - n_clusters)
    dev = means - grand
    if len(sizes) > _CLUSTER_SUM_IN_ORDER_UP_TO:
        s_b = (dev.T * (weights * sizes)) @ dev / n_clusters  # a matrix product: einsum's loop was 40% of the bootstrap
    else:  # the clusters summed in order: a small study's numbers as before the matrix product
        s_b = np.einsum("j,ja,jb->ab", weights * sizes, dev, dev) / n_clusters
    c = (n_total ** 2 - weights @ sizes ** 2) / (n_total * (n_clusters - 1))
    total = (within + (n_clusters * s_b)) / (n_total - 1)
    return {"s_pw": s_pw, "s_b": s_b, "c": float(c), "n": int(round(n_total)),
            "n_clusters": int(round(n_clusters)), "sigma_b": (s_b - s_pw) / c, "s_total": total}


def multilevel_reliability(items, clusters) -> dict[str, float]:
    """Within- and between-person alpha and omega (Geldhof, Preacher & Zyphur, 2014).

    Alpha at each level is Cronbach's formula applied to that level's covariance matrix
    (Sigma_W = S_PW; Sigma_B = (S_B - S_PW) / c, :func:`level_covariances`, with negative
    eigenvalues clipped at 0 as an ML estimate would be). Omega at each
    level comes from a two-level one-factor CFA, one factor per level, fitted by maximum
    likelihood to S_PW and S_B jointly (Muthen's MUML, the exact ML for balanced data):
    omega = (sum lambda)^2 / ((sum lambda)^2 + sum theta). Between-level residual variances
    are bounded at 0.

    Parameters
    ----------
    items
        (N x k) keyed item scores, raw metric (not standardised).
    clusters
        Length-N cluster (client) labels.

    Returns
    -------
    dict
        ``alpha_within``, ``alpha_between``, ``omega_within``, ``omega_between`` (NaN when
        fewer than k + 1 clusters or fewer than k + 1 within-cluster degrees of freedom).

    Notes
    -----
    Tested against ``lavaan`` 0.6-14 two-level CFA in tests/data/psychometrics_ml/: to 1e-5 on
    balanced clusters, where MUML is ML; on unbalanced clusters (2-5 sessions per client) MUML
    approximates lavaan's full ML to within 5e-4.
    """
    x = _as_matrix(items)
    if x.shape[1] < 2:
        return dict.fromkeys(MULTILEVEL_STATISTICS, np.nan)
    return _multilevel_from_cov(level_covariances(x, clusters))[0]


MULTILEVEL_STATISTICS = ("alpha_within", "alpha_between", "omega_within", "omega_between")


def _multilevel_from_cov(cov: Mapping[str, Any], start: np.ndarray | None = None, ftol: float = 1e-15):
    k = cov["s_pw"].shape[0]
    if cov["n_clusters"] <= k or cov["n"] - cov["n_clusters"] <= k or not np.isfinite(cov["c"]):
        return dict.fromkeys(MULTILEVEL_STATISTICS, np.nan), None
    out = {"alpha_within": _alpha_of(cov["s_pw"]), "alpha_between": _alpha_of(_psd(cov["sigma_b"]))}
    theta = _two_level_one_factor(cov, start, ftol)
    lam_w, psi_w, lam_b, psi_b = np.split(theta, 4)
    out["omega_within"] = float(lam_w.sum() ** 2 / (lam_w.sum() ** 2 + psi_w.sum()))
    out["omega_between"] = float(lam_b.sum() ** 2 / (lam_b.sum() ** 2 + psi_b.sum()))
    return out, theta


def cluster_bootstrap_reliability(items, clusters, n_boot: int = 200, seed: int | None = 0,
                                  ci: float = 0.95) -> dict[str, float]:
    """Percentile cluster-bootstrap CIs of alpha and of the multilevel alpha and omega.

    Whole clusters (clients) are drawn with replacement, so repeated administrations of one
    client stay together (Field & Welsh, 2007); each replicate recomputes Cronbach's alpha
    over all rows and :func:`multilevel_reliability` from the resampled clusters' sufficient
    statistics. Random numbers from ``numpy.random.default_rng(seed)``.

    Returns
    -------
    dict
        ``{stat}_ci_low`` and ``{stat}_ci_high`` for ``alpha`` (all rows) and each of
        :data:`MULTILEVEL_STATISTICS`; ``n_boot`` (replicates with a finite estimate of alpha).
    """
    return _bootstrap_from_stats(_cluster_stats(items, clusters), n_boot, seed, ci)[1]


def _bootstrap_from_stats(stats_: tuple, n_boot: int, seed: int | None,
                          ci: float) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`multilevel_reliability` and :func:`cluster_bootstrap_reliability` from one
    :func:`_cluster_stats` (the point estimate is the bootstrap's warm start: fitted once)."""
    sizes = stats_[0]
    cov = _covariances_from_stats(*stats_)
    point, theta = _multilevel_from_cov(cov)
    rng = np.random.default_rng(seed)
    names = ("alpha",) + MULTILEVEL_STATISTICS
    draws = np.full((n_boot, len(names)), np.nan)
    for b in range(n_boot):
        weights = np.bincount(rng.integers(0, sizes.size, sizes.size), minlength=sizes.size).astype(float)
        replicate = _covariances_from_stats(*stats_[:3], weights)
        draws[b, 0] = _alpha_of(replicate["s_total"])
        if theta is not None:
            # warm start and a looser tolerance: replicates need 3 digits, not 12
            estimates, _ = _multilevel_from_cov(replicate, theta, ftol=1e-9)
            draws[b, 1:] = [estimates[name] for name in MULTILEVEL_STATISTICS]
    tail = (1 - ci) / 2 * 100
    out: dict[str, float] = {"n_boot": int(np.isfinite(draws[:, 0]).sum())}
    for j, name in enumerate(names):
        finite = draws[np.isfinite(draws[:, j]), j]
        low, high = np.percentile(finite, [tail, 100 - tail]) if finite.size else (np.nan, np.nan)
        out |= {f"{name}_ci_low": float(low), f"{name}_ci_high": float(high)}
    return point, out


def _psd(cov: np.ndarray) -> np.ndarray:
    """The moment estimate of Sigma_B can have negative eigenvalues (between-client variance
    small next to its sampling error); an ML estimate cannot, so clip them at 0 (without
    this, alpha_between can exceed 1)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    if values.min() >= 0:
        return cov
    return (vectors * np.clip(values, 0, None)) @ vectors.T


def _alpha_of(cov: np.ndarray) -> float:
    k = cov.shape[0]
    total = cov.sum()
    if not np.isfinite(total) or total <= 0:
        return np.nan
    return float(k / (k - 1) * (1 - np.trace(cov) / total))


def _two_level_one_factor(cov: Mapping[str, Any], start: np.ndarray | None = None,
                          ftol: float = 1e-15) -> np.ndarray:
    """(lambda_W, theta_W, lambda_B, theta_B) stacked, from the MUML fit (warm-started when
    ``start`` is given, as in the bootstrap)."""
    s_pw, s_b, c = cov["s_pw"], cov["s_b"], cov["c"]
    w_within, w_between = cov["n"] - cov["n_clusters"], cov["n_clusters"]
    k = s_pw.shape[0]
    if start is None:
        lam_w0, psi_w0 = one_factor_ml(s_pw)
        b0 = np.clip(np.diag(cov["sigma_b"]), 1e-3 * np.diag(s_pw), None)
        start = np.concatenate([lam_w0, psi_w0, np.sqrt(0.8 * b0), 0.2 * b0])

    def objective(theta):
        lam_w, psi_w, lam_b, psi_b = np.split(theta, 4)
        sigma_w = np.outer(lam_w, lam_w) + np.diag(psi_w)
        sigma_b = np.outer(lam_b, lam_b) + np.diag(psi_b)
        f_w, g_w = _ml_discrepancy(s_pw, sigma_w)
        f_b, g_b = _ml_discrepancy(s_b, sigma_w + c * sigma_b)
        if not (np.isfinite(f_w) and np.isfinite(f_b)):
            return np.inf, np.zeros_like(theta)
        grad_w = w_within * g_w + w_between * g_b
        grad_b = w_between * c * g_b
        value = w_within * f_w + w_between * f_b
        return value, np.concatenate([2 * grad_w @ lam_w, np.diag(grad_w), 2 * grad_b @ lam_b, np.diag(grad_b)])

    diag_w = np.diag(s_pw)
    bounds = ([(None, None)] * k + [(1e-6 * v, None) for v in diag_w] + [(None, None)] * k
              + [(0.0, None)] * k)
    fit = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 5000, "ftol": ftol, "gtol": 1e-9})
    lam_w, psi_w, lam_b, psi_b = np.split(fit.x, 4)
    return np.concatenate([lam_w * np.sign(lam_w.sum() or 1), psi_w, lam_b * np.sign(lam_b.sum() or 1), psi_b])
