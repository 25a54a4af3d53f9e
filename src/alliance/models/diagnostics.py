"""Model diagnostics of a fitted linear mixed model, as R's ``performance::check_model`` and
``influence.ME`` give them: residuals against fitted values, QQ plots of the conditional
residuals and of every random effect, and the influence of each therapist by leaving them out
one at a time, with simple flags and a one-sentence summary per model (statistics only, no
files; the workflow step is :func:`alliance.models.steps.write_model_diagnostics`, the figure
:mod:`alliance.models.diagnostic_figures`).

The flags and their rules (constants of this module):

* **residual shape**: the conditional residuals have ``|skewness| >= 1`` or excess kurtosis
  ``>= 3`` (sample moments g1, g2). A size rule, not a test: with thousands of session rows a
  normality test rejects for departures too small to matter.
* **heteroscedasticity**: the Breusch–Pagan score test of ``performance::check_heteroscedasticity``
  has ``p < .05`` *and* the residual SD among the highest third of fitted values differs from the
  SD among the lowest third by a factor of 1.5 or more (either way).
* **random-effect QQ departure**: for a random-effect term with at least 8 levels and a variance
  above 0, a Shapiro–Wilk test of its conditional modes (BLUPs) gives ``p < .01``. The modes are
  shrunken and correlated, so the test is only approximate and a departure can come from the
  fixed-effects specification as well as from the random-effect distribution (Loy & Hofmann,
  2014); the stricter level keeps the flag for clear departures.
* **influential therapist**: leaving one therapist out changes an alliance estimate by more
  than the full model's SE of it, or changes its significance at .05 (significant becomes
  non-significant or the reverse, or significant with the opposite sign). The refitted
  estimate's p uses the full model's (Satterthwaite) df for the term.

Cook's distance and DFBETAS for the dropped group are reported as influence.ME computes them
(``cooks.distance.estex``, ``dfbetas.estex``: the change of all fixed effects scaled by the
covariance matrix and SEs of the refit without the group; cutoffs 4/k and 2/sqrt(k) for k
groups, Nieuwenhuis, te Grotenhuis & Pelzer, 2012) but do not raise a flag by themselves: with
40 therapists about one in twenty exceeds 4/k by chance.

Tested in tests/test_model_diagnostics.py against lme4 1.1-31 and performance 0.10.2
(``tests/data/diagnostics/ref_diagnostics.R``: fitted values, residuals, conditional modes,
the Breusch–Pagan and Shapiro–Wilk p-values and every leave-one-therapist-out refit with its
Cook's distance and DFBETAS) and by injecting one outlying therapist into simulated data.

References
----------
Loy, A., & Hofmann, H. (2014). HLMdiag: A suite of diagnostics for hierarchical linear models
in R. *Journal of Statistical Software*, 56(5), 1–28. (Section 4: QQ plots of the random
effects and the confounding of their distribution with the fixed effects.)
Lüdecke, D., Ben-Shachar, M. S., Patil, I., Waggoner, P., & Makowski, D. (2021). performance:
An R package for assessment, comparison and testing of statistical models. *Journal of Open
Source Software*, 6(60), 3139.
Nieuwenhuis, R., te Grotenhuis, M., & Pelzer, B. (2012). influence.ME: Tools for detecting
influential data in mixed effects models. *The R Journal*, 4(2), 38–47.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliance.lmm.reweight import InterceptBlocks, use_blocks
from alliance.models.data import CLIENT, THERAPIST
from alliance.models.families import fit_model

__all__ = [
    "RESIDUAL_SKEW_LIMIT",
    "RESIDUAL_KURTOSIS_LIMIT",
    "SPREAD_RATIO_LIMIT",
    "HETEROSCEDASTICITY_ALPHA",
    "RANDOM_EFFECT_ALPHA",
    "MIN_LEVELS_FOR_TEST",
    "SIGNIFICANCE",
    "INFLUENCE_COLUMNS",
    "ModelDiagnostics",
    "qq_points",
    "residual_frame",
    "breusch_pagan",
    "binned_means",
    "spread_ratio",
    "residual_checks",
    "random_effect_qq",
    "random_effect_checks",
    "leave_one_group_out",
    "group_influence",
    "influence_checks",
    "summary_sentence",
    "diagnose",
]

RESIDUAL_SKEW_LIMIT = 1.0
RESIDUAL_KURTOSIS_LIMIT = 3.0  # excess kurtosis
SPREAD_RATIO_LIMIT = 1.5
HETEROSCEDASTICITY_ALPHA = 0.05
RANDOM_EFFECT_ALPHA = 0.01
MIN_LEVELS_FOR_TEST = 8
SIGNIFICANCE = 0.05
NO_PROBLEMS = "no problems found"

INFLUENCE_COLUMNS = [
    "therapist", "rank", "n_clients", "n_rows", "cooks_distance", "term", "estimate_full", "se_full",
    "p_full", "estimate", "se", "p", "change", "change_in_se", "dfbetas", "flagged", "reason",
    "converged", "singular", "error",
]


@dataclass
class ModelDiagnostics:
    """Everything :func:`diagnose` computes for one model.

    Attributes
    ----------
    residuals : DataFrame
        One row per fitted row: ``fitted``, ``residual``, ``standardised`` (Pearson residual).
    residual : dict
        :func:`residual_checks`.
    random_qq : DataFrame
        :func:`random_effect_qq`.
    random : list of dict
        :func:`random_effect_checks`.
    influence : DataFrame or None
        :func:`group_influence` (None when the influence was not computed).
    influence_summary : dict
        :func:`influence_checks` (``{"computed": False}`` when not computed).
    flags : list of dict
        Each ``{"check", "message"}``; empty when nothing is off.
    summary : str
        :func:`summary_sentence`.
    """

    residuals: pd.DataFrame
    residual: dict[str, Any]
    random_qq: pd.DataFrame
    random: list[dict[str, Any]]
    influence: pd.DataFrame | None
    influence_summary: dict[str, Any]
    flags: list[dict[str, str]] = field(default_factory=list)
    summary: str = ""


# --------------------------------------------------------------------------------------
# Residuals
# --------------------------------------------------------------------------------------
def qq_points(values: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """Normal QQ points as R's ``qqnorm`` and the reference line of ``qqline``.

    Theoretical quantiles at R's ``ppoints(n)``: ``(i - a) / (n + 1 - 2a)`` with ``a = 3/8``
    for ``n <= 10`` and ``1/2`` otherwise (Blom's positions). The line passes through the
    first and third quartiles of the sample and of the normal distribution.

    Returns
    -------
    DataFrame
        Sorted: ``theoretical``, ``sample``, ``line`` (the qqline at the theoretical quantile).
        ``attrs`` hold ``slope`` and ``intercept`` of the line.
    """
    x = np.sort(np.asarray(values, dtype=float))
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return pd.DataFrame(columns=["theoretical", "sample", "line"])
    a = 3 / 8 if n <= 10 else 0.5
    theoretical = stats.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))
    q_sample = np.quantile(x, [0.25, 0.75])  # R's quantile type 7, numpy's default
    q_normal = stats.norm.ppf([0.25, 0.75])
    slope = (q_sample[1] - q_sample[0]) / (q_normal[1] - q_normal[0])
    intercept = q_sample[0] - slope * q_normal[0]
    out = pd.DataFrame({"theoretical": theoretical, "sample": x, "line": intercept + slope * theoretical})
    out.attrs.update(slope=float(slope), intercept=float(intercept))
    return out


def residual_frame(result: Any) -> pd.DataFrame:
    """Fitted values, conditional residuals and Pearson residuals of a fitted model.

    ``fitted`` and ``residual`` are lme4's ``fitted()`` and ``residuals()`` (conditional on the
    random effects); ``standardised`` is the Pearson residual ``residual * sqrt(w) / sigma``
    (``w`` the prior weights, 1 without).
    """
    fitted = np.asarray(result.fitted, dtype=float)
    resid = np.asarray(result.residuals, dtype=float)
    weights = getattr(result, "_weights", None)
    w = np.ones(len(resid)) if weights is None else np.asarray(weights, dtype=float)
    return pd.DataFrame({"fitted": fitted, "residual": resid, "standardised": resid * np.sqrt(w) / result.sigma})


def breusch_pagan(pearson: np.ndarray, fitted: np.ndarray, sigma: float, residual_df: float) -> tuple[float, float]:
    """Breusch–Pagan (Cook–Weisberg score) test of a residual variance that changes with the
    fitted values, as ``performance::check_heteroscedasticity`` defines it (Lüdecke et al., 2021).

    ``U = r^2 / S^2`` with ``S^2 = residual_df * sigma^2 / n``, regressed on the fitted values;
    the statistic is half the regression sum of squares, chi-squared with 1 df. ``sigma`` is
    the model's residual SD (performance 0.10.2 uses ``sqrt(deviance / (n - p))`` for lme4
    fits instead, which is not the residual SD of a mixed model; the reference in
    ``tests/data/diagnostics/`` records both).

    Returns
    -------
    tuple of float
        ``(chisq, p)``.
    """
    r = np.asarray(pearson, dtype=float)
    f = np.asarray(fitted, dtype=float)
    u = r**2 / (residual_df * sigma**2 / len(r))
    fc = f - f.mean()
    denom = float(fc @ fc)
    if denom == 0.0:
        return 0.0, 1.0
    slope = float(fc @ (u - u.mean())) / denom
    chisq = slope**2 * denom / 2.0
    return float(chisq), float(stats.chi2.sf(chisq, 1))


def binned_means(fitted: np.ndarray, residual: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean residual in bins of equal count along the fitted values (a smoother that needs no
    bandwidth): ``bin``, ``n``, ``fitted`` (mean), ``residual`` (mean), ``sd``."""
    order = np.argsort(np.asarray(fitted, dtype=float), kind="mergesort")
    parts = np.array_split(order, min(bins, len(order))) if len(order) else []
    rows = []
    for k, idx in enumerate(parts, start=1):
        r = np.asarray(residual, dtype=float)[idx]
        rows.append({"bin": k, "n": len(idx), "fitted": float(np.mean(np.asarray(fitted)[idx])),
                     "residual": float(np.mean(r)), "sd": float(np.std(r, ddof=1)) if len(r) > 1 else math.nan})
    return pd.DataFrame(rows, columns=["bin", "n", "fitted", "residual", "sd"])


def spread_ratio(fitted: np.ndarray, residual: np.ndarray) -> float:
    """Residual SD among the highest third of fitted values over the SD among the lowest third
    (NaN with fewer than 6 rows)."""
    order = np.argsort(np.asarray(fitted, dtype=float), kind="mergesort")
    if len(order) < 6:
        return math.nan
    thirds = np.array_split(order, 3)
    r = np.asarray(residual, dtype=float)
    low, high = np.std(r[thirds[0]], ddof=1), np.std(r[thirds[-1]], ddof=1)
    return float(high / low) if low > 0 else math.inf


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Sample skewness g1 and excess kurtosis g2 (moment estimators, scipy's defaults)."""
    if len(x) < 3 or np.std(x) == 0:
        return math.nan, math.nan
    return float(stats.skew(x)), float(stats.kurtosis(x))


def _shapiro(x: np.ndarray) -> float:
    """Shapiro–Wilk p (R's ``shapiro.test`` allows 3 to 5000 values; NaN outside)."""
    if not 3 <= len(x) <= 5000 or np.ptp(x) == 0:
        return math.nan
    return float(stats.shapiro(x).pvalue)


def residual_checks(result: Any, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """Shape and spread of the conditional residuals, with the flags of the module's rules.

    Returns
    -------
    dict
        ``n``, ``skewness``, ``excess_kurtosis``, ``shapiro_p``, ``breusch_pagan_chisq``,
        ``breusch_pagan_p``, ``spread_ratio``, ``non_normal`` and ``heteroscedastic`` (bool).
    """
    frame = residual_frame(result) if frame is None else frame
    r = frame["standardised"].to_numpy()
    skew, kurt = _moments(frame["residual"].to_numpy())
    residual_df = result.nobs - result.npar  # insight::get_df(type = "residual") for merMod
    chisq, p = breusch_pagan(r, frame["fitted"].to_numpy(), 1.0, residual_df)
    ratio = spread_ratio(frame["fitted"].to_numpy(), frame["residual"].to_numpy())
    non_normal = bool(abs(skew) >= RESIDUAL_SKEW_LIMIT or kurt >= RESIDUAL_KURTOSIS_LIMIT)
    spread_off = math.isfinite(ratio) and (ratio >= SPREAD_RATIO_LIMIT or ratio <= 1 / SPREAD_RATIO_LIMIT) \
        or ratio == math.inf
    return {"n": int(len(r)), "skewness": skew, "excess_kurtosis": kurt, "shapiro_p": _shapiro(r),
            "breusch_pagan_chisq": chisq, "breusch_pagan_p": p, "spread_ratio": ratio,
            "non_normal": non_normal, "heteroscedastic": bool(p < HETEROSCEDASTICITY_ALPHA and spread_off)}


# --------------------------------------------------------------------------------------
# Random effects
# --------------------------------------------------------------------------------------
def _term_variances(result: Any) -> dict[tuple[str, str], float]:
    """Variance of each random-effect term, keyed by (grouping factor, term)."""
    re = result.random_effects
    rows = re.loc[(re["group"] != "Residual") & re["term2"].isna()]
    out = {}
    for _, row in rows.iterrows():
        # lme4 names split terms of one factor "client.1"; the conditional modes use the factor
        out[(str(row["group"]).split(".")[0], str(row["term1"]))] = float(row["variance"])
    return out


def random_effect_qq(result: Any) -> pd.DataFrame:
    """QQ points (:func:`qq_points`) of the conditional modes of every grouping factor and
    term: ``group``, ``term``, ``theoretical``, ``sample``, ``line``, ``standardised_sample``
    (the mode over the SD of the term's modes, to draw several terms on one scale)."""
    parts = []
    for group, modes in (getattr(result, "ranef", None) or {}).items():
        for term in modes.columns:
            values = modes[term].to_numpy(dtype=float)
            qq = qq_points(values)
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            qq["standardised_sample"] = qq["sample"] / sd if sd > 0 else 0.0
            qq.insert(0, "term", term)
            qq.insert(0, "group", group)
            parts.append(qq)
    columns = ["group", "term", "theoretical", "sample", "line", "standardised_sample"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def random_effect_checks(result: Any) -> list[dict[str, Any]]:
    """Per grouping factor and term: ``group``, ``term``, ``n_levels``, ``variance``,
    ``skewness``, ``excess_kurtosis``, ``shapiro_p`` and ``departs`` (the module's rule:
    Shapiro–Wilk p < .01 with at least 8 levels and a variance above 0; ``tested`` says
    whether the rule applied)."""
    variances = _term_variances(result)
    out = []
    for group, modes in (getattr(result, "ranef", None) or {}).items():
        for term in modes.columns:
            values = modes[term].to_numpy(dtype=float)
            variance = variances.get((group, term), math.nan)
            tested = len(values) >= MIN_LEVELS_FOR_TEST and variance > 0 and np.ptp(values) > 0
            p = _shapiro(values) if tested else math.nan
            skew, kurt = _moments(values)
            out.append({"group": group, "term": term, "n_levels": int(len(values)), "variance": variance,
                        "skewness": skew, "excess_kurtosis": kurt, "shapiro_p": p, "tested": bool(tested),
                        "departs": bool(tested and p < RANDOM_EFFECT_ALPHA)})
    return out


# --------------------------------------------------------------------------------------
# Influence of groups (therapists)
# --------------------------------------------------------------------------------------
def leave_one_group_out(result: Any, data: pd.DataFrame, group: str = THERAPIST, engine: str = "alliance",
                        fit: Callable[..., Any] | None = None, progress: Callable | None = None,
                        blocks: bool | None = None) -> pd.DataFrame:
    """Refit the model once without each level of ``group`` (influence.ME's ``influence()``).

    Each refit has the full model's formula and REML setting, starts at its theta (a warm
    start: the refit is near the full fit), and skips Satterthwaite df (only estimates, SEs and
    the covariance matrix are used). A refit that fails is kept with its message. A
    ``(1 | group)`` model on the project's engine of more than
    :data:`alliance.lmm.reweight.ROW_REFITS_UP_TO` rows is refitted from per-group
    cross-products with the left-out group weighted 0 (:class:`alliance.lmm.reweight.InterceptBlocks`:
    the same criterion and start, without rebuilding the data of each refit).

    Parameters
    ----------
    result : LmmResult
        The full fit.
    data : DataFrame
        The rows the model was fitted to (other rows are dropped by the engine as in the fit).
    group : str
        Column of the group to leave out, default the therapist.
    engine : str
        As :func:`alliance.models.fit_model`.
    fit : callable, optional
        Replacement engine (tests).
    progress : callable, optional
        Wraps the iterable of groups (e.g. :func:`alliance.logs.progress`).
    blocks : bool, optional
        Refits of a ``(1 | group)`` model from the per-group cross-products: None (default)
        above :data:`alliance.lmm.reweight.ROW_REFITS_UP_TO` rows of ``data`` only, True
        whenever the model allows, False never.

    Returns
    -------
    DataFrame
        One row per left-out level and fixed-effect term: ``group`` (the level), ``term``,
        ``estimate``, ``se``, ``converged``, ``singular``, ``error``; ``attrs['vcov']`` maps
        each level to the refit's fixed-effects covariance matrix (a DataFrame).
    """
    if group not in data.columns:
        raise ValueError(f"data has no column {group!r} to leave out one level at a time")
    levels = sorted(pd.unique(data[group].dropna()).tolist(), key=str)
    options: dict[str, Any] = {"satterthwaite_df": False}
    if fit is None and engine == "alliance":
        options["start"] = np.asarray(result.theta, dtype=float)
    rows, vcovs = [], {}
    cross = (_group_blocks(result, data, group, levels)
             if fit is None and engine == "alliance" and use_blocks(len(data), blocks) else None)
    iterable = levels if progress is None else progress(levels)
    for k, level in enumerate(iterable):
        if cross is not None:
            # (1 | group) models: the refit without the level from the per-group cross-products
            weights = np.ones(len(levels))
            weights[k] = 0.0
            refit = cross.refit(weights, start=float(options["start"][0]))
            if refit is not None:
                vcovs[level] = refit["vcov"]
                rows += [{"group": level, "term": term, "estimate": float(est), "se": float(refit["se"][term]),
                          "converged": refit["converged"], "singular": refit["singular"], "error": ""}
                         for term, est in refit["beta"].items()]
                continue
        subset = data.loc[data[group] != level].reset_index(drop=True)
        try:
            refit = fit_model(result.formula, subset, reml=bool(result.reml), engine=engine, fit=fit, options=options)
        except (ValueError, np.linalg.LinAlgError) as exc:
            rows.append({"group": level, "term": None, "estimate": math.nan, "se": math.nan,
                         "converged": False, "singular": False, "error": str(exc)})
            continue
        vcovs[level] = refit.vcov
        for term, row in refit.fixed_effects.iterrows():
            rows.append({"group": level, "term": term, "estimate": float(row["estimate"]), "se": float(row["se"]),
                         "converged": bool(refit.converged), "singular": bool(refit.singular), "error": ""})
    out = pd.DataFrame(rows, columns=["group", "term", "estimate", "se", "converged", "singular", "error"])
    out.attrs["vcov"] = vcovs
    return out


def _group_blocks(result: Any, data: pd.DataFrame, group: str, levels: list) -> InterceptBlocks | None:
    """Per-group cross-products of a ``(1 | group)`` model (:mod:`alliance.lmm.reweight`), in
    the order of ``levels``; None for other models (each refit then refits the rows)."""
    try:
        return InterceptBlocks.build(result.formula, data, group, pd.Index(levels), bool(result.reml))
    except ValueError:
        return None


def _cooks_distance(full: pd.Series, refit: pd.Series, vcov: pd.DataFrame) -> float:
    """influence.ME's ``cooks.distance.estex``: ``(b - b_g)' V_g^-1 (b - b_g) / p`` over the
    terms both fits estimate (``V_g`` the refit's covariance matrix)."""
    terms = [t for t in full.index if t in refit.index and t in vcov.index]
    d = (full[terms] - refit[terms]).to_numpy(dtype=float)
    v = vcov.loc[terms, terms].to_numpy(dtype=float)
    return float(d @ np.linalg.solve(v, d) / len(terms))


def _p_value(estimate: float, se: float, df: float) -> float:
    if not (math.isfinite(estimate) and se > 0):
        return math.nan
    t = abs(estimate / se)
    return float(2 * (stats.t.sf(t, df) if math.isfinite(df) else stats.norm.sf(t)))


def _conclusion(estimate: float, p: float) -> int:
    """+1 / -1 for a significant positive / negative estimate, 0 for a non-significant one."""
    return 0 if not p < SIGNIFICANCE else int(np.sign(estimate))


def group_influence(result: Any, loo: pd.DataFrame, data: pd.DataFrame, terms: Sequence[str],
                    group: str = THERAPIST, client: str = CLIENT) -> pd.DataFrame:
    """Influence of each left-out group on the fixed effects ``terms`` (the alliance terms).

    Parameters
    ----------
    result : LmmResult
        The full fit.
    loo : DataFrame
        :func:`leave_one_group_out`.
    data : DataFrame
        The model's rows (for the number of clients and rows per group).
    terms : sequence of str
        Fixed-effect terms to judge (those not in the model are skipped).

    Returns
    -------
    DataFrame
        One row per group and term, columns :data:`INFLUENCE_COLUMNS` (``therapist`` holds the
        group's id): ``rank`` orders groups by Cook's distance, largest first (1 = most
        influential; ties by id); ``cooks_distance`` over all fixed effects; ``change`` is the
        refit's estimate minus the full one, ``change_in_se`` that change over the full model's
        SE, ``dfbetas`` influence.ME's ``(full - refit) / refit SE``; ``p`` uses the full
        model's df for the term; ``flagged`` and ``reason`` the module's rule.
    """
    fe = result.fixed_effects
    full = fe["estimate"]
    terms = [t for t in terms if t in fe.index]
    vcovs = loo.attrs.get("vcov", {})
    # pandas deep-copies attrs into every derived frame: without them here, a frame per group
    # does not copy every group's covariance matrix (quadratic in the number of therapists)
    loo = pd.DataFrame(loo.to_dict("series"))
    n_clients = data.groupby(group, sort=False)[client].nunique() if client in data.columns else None
    n_rows = data.groupby(group, sort=False).size()
    parts = dict(list(loo.groupby("group", sort=False)))
    cooks = {}
    for level, part in parts.items():
        if (part["error"] == "").all():
            cooks[level] = _cooks_distance(full, part.set_index("term")["estimate"], vcovs[level])
    levels = sorted(pd.unique(loo["group"]).tolist(), key=str)
    order = sorted(levels, key=lambda g: (-cooks.get(g, -math.inf), str(g)))
    rank = {g: k for k, g in enumerate(order, start=1)}
    rows = []
    for level in levels:
        part = parts[level]
        error = str(part["error"].iloc[0])
        by_term = part.set_index("term") if not error else None
        for term in terms:
            est_full, se_full, df = (float(fe.at[term, c]) for c in ("estimate", "se", "df"))
            p_full = _p_value(est_full, se_full, df)
            if by_term is not None and term in by_term.index:
                est, se = float(by_term.at[term, "estimate"]), float(by_term.at[term, "se"])
            else:
                est = se = math.nan
            p = _p_value(est, se, df)
            change = est - est_full
            reason = _influence_reason(est_full, p_full, est, p, change, se_full, error)
            rows.append({
                "therapist": level, "rank": rank[level],
                "n_clients": int(n_clients.get(level, 0)) if n_clients is not None else 0,
                "n_rows": int(n_rows.get(level, 0)), "cooks_distance": cooks.get(level, math.nan),
                "term": term, "estimate_full": est_full, "se_full": se_full, "p_full": p_full,
                "estimate": est, "se": se, "p": p, "change": change,
                "change_in_se": change / se_full if se_full > 0 else math.nan,
                "dfbetas": (est_full - est) / se if se > 0 else math.nan,
                "flagged": bool(reason), "reason": reason,
                "converged": bool(part["converged"].iloc[0]), "singular": bool(part["singular"].iloc[0]),
                "error": error,
            })
    out = pd.DataFrame(rows, columns=INFLUENCE_COLUMNS)
    out["_order"] = out["term"].map({t: i for i, t in enumerate(terms)})
    return out.sort_values(["rank", "_order"], kind="mergesort").drop(columns="_order").reset_index(drop=True)


def _influence_reason(est_full: float, p_full: float, est: float, p: float, change: float, se_full: float,
                      error: str) -> str:
    """Why leaving a group out matters for a term ('' when it does not)."""
    if error or not math.isfinite(est):
        return ""
    reasons = []
    if abs(change) > se_full:
        reasons.append(f"changes the estimate by {abs(change) / se_full:.1f} SE")
    before, after = _conclusion(est_full, p_full), _conclusion(est, p)
    if before != after:
        if before == 0:
            reasons.append("makes it significant")
        elif after == 0:
            reasons.append("makes it non-significant")
        else:
            reasons.append("reverses its significant sign")
    return " and ".join(reasons)


def influence_checks(influence: pd.DataFrame) -> dict[str, Any]:
    """Summary of :func:`group_influence`: ``computed``, ``n_groups``, ``n_failed`` (refits
    that raised), ``cooks_cutoff`` (4/k), ``n_above_cooks_cutoff``, ``dfbetas_cutoff``
    (2/sqrt(k)), ``max_abs_change_in_se`` per term and ``flagged``: one record per flagged
    group and term (``rank``, ``therapist``, ``term``, ``change_in_se``, ``p_full``, ``p``,
    ``reason``)."""
    levels = influence.drop_duplicates("therapist")
    k = len(levels)
    columns = ["rank", "therapist", "term", "change_in_se", "p_full", "p", "reason"]
    flagged = influence.loc[influence["flagged"], columns]
    return {
        "computed": True, "n_groups": k, "n_failed": int((levels["error"] != "").sum()),
        "cooks_cutoff": 4 / k if k else math.nan,
        "n_above_cooks_cutoff": int((levels["cooks_distance"] > 4 / k).sum()) if k else 0,
        "dfbetas_cutoff": 2 / math.sqrt(k) if k else math.nan,
        "max_abs_change_in_se": {t: float(g["change_in_se"].abs().max())
                                 for t, g in influence.groupby("term", sort=False)},
        "flagged": flagged.to_dict("records"),
    }


# --------------------------------------------------------------------------------------
# Flags and the sentence
# --------------------------------------------------------------------------------------
def _flags(residual: dict[str, Any], random: list[dict[str, Any]], influence: dict[str, Any],
           term_labels: dict[str, str]) -> list[dict[str, str]]:
    flags = []
    if residual["non_normal"]:
        flags.append({"check": "residual_shape",
                      "message": f"the residuals are skewed or heavy-tailed (skewness {residual['skewness']:.2f}, "
                                 f"excess kurtosis {residual['excess_kurtosis']:.2f})"})
    if residual["heteroscedastic"]:
        flags.append({"check": "heteroscedasticity",
                      "message": f"the residual spread changes with the fitted values (SD ratio of the highest "
                                 f"to the lowest third {residual['spread_ratio']:.2f}, Breusch–Pagan "
                                 f"p {_p_text(residual['breusch_pagan_p'])})"})
    for r in random:
        if r["departs"]:
            flags.append({"check": "random_effect_qq",
                          "message": f"the {_term_name(r['group'], r['term'])} depart from normality "
                                     f"(Shapiro–Wilk p {_p_text(r['shapiro_p'])})"})
    if influence.get("computed"):
        for term, records in _group_by_term(influence["flagged"]).items():
            flags.append({"check": "influential_therapist",
                          "message": _influence_message(term_labels.get(term, term), records, influence["n_groups"])})
        if influence["n_failed"]:
            flags.append({"check": "influence_refits",
                          "message": f"{influence['n_failed']} of {influence['n_groups']} leave-one-therapist-out "
                                     "refits failed"})
    return flags


def _term_name(group: str, term: str) -> str:
    return f"{group} random intercepts" if term == "(Intercept)" else f"{group} random slopes of {term}"


def _influence_message(name: str, records: list[dict[str, Any]], k: int) -> str:
    """What leaving therapists out does to one term, therapists by influence rank only."""
    ranks = sorted({int(r["rank"]) for r in records})
    if len(ranks) == 1:
        who = f"the therapist ranked {ranks[0]} of {k} by influence"
    elif len(ranks) <= 3:
        who = f"any one of the therapists ranked {', '.join(map(str, ranks))} of {k} by influence"
    else:
        who = f"any one of {len(ranks)} of the {k} therapists"
    parts = []
    shifts = [abs(r["change_in_se"]) for r in records if "SE" in r["reason"]]
    if shifts:
        parts.append(f"changes the estimate of {name} by more than its SE (up to {max(shifts):.1f} SE)")
    if any("significan" in r["reason"] for r in records):
        p_full = records[0]["p_full"]
        parts.append(f"changes whether the estimate of {name} (p {_p_text(p_full)}) is significant at .05")
    return f"leaving out {who} " + " or ".join(parts)


def _group_by_term(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["term"], []).append(r)
    return out


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "= NA"
    return "< .001" if p < 0.001 else f"= {p:.3f}".replace("0.", ".", 1)


def summary_sentence(label: str, flags: Sequence[dict[str, str]]) -> str:
    """One sentence per model: ``"<label>: no problems found."`` or what is off, e.g.
    ``"within_between: the residual spread changes with the fitted values (...); leaving out
    therapist ranked 1 of 40 changes the estimate by 1.4 SE of a_cm."``"""
    if not flags:
        return f"{label}: {NO_PROBLEMS}."
    return f"{label}: " + "; ".join(f["message"] for f in flags) + "."


def diagnose(result: Any, data: pd.DataFrame, terms: Sequence[str], label: str | None = None, *,
             influence: bool = True, group: str = THERAPIST, engine: str = "alliance",
             fit: Callable[..., Any] | None = None, term_labels: dict[str, str] | None = None,
             progress: Callable | None = None) -> ModelDiagnostics:
    """All diagnostics of one fitted model, with its flags and sentence.

    Parameters
    ----------
    result : LmmResult
    data : DataFrame
        The rows the model was fitted to (pseudonymised ids).
    terms : sequence of str
        The alliance terms whose change the influence flag judges.
    label : str, optional
        Name in the sentence (default the formula).
    influence : bool, default True
        Refit without each therapist (:func:`leave_one_group_out`); costs one fit per therapist.
    group, engine, fit, progress
        As :func:`leave_one_group_out`.
    term_labels : dict, optional
        Display names of the terms in the sentence.
    """
    frame = residual_frame(result)
    residual = residual_checks(result, frame)
    random = random_effect_checks(result)
    table = None
    summary: dict[str, Any] = {"computed": False}
    if influence and group in data.columns:
        loo = leave_one_group_out(result, data, group, engine=engine, fit=fit, progress=progress)
        table = group_influence(result, loo, data, terms, group)
        summary = influence_checks(table)
    flags = _flags(residual, random, summary, term_labels or {})
    return ModelDiagnostics(frame, residual, random_effect_qq(result), random, table, summary, flags,
                            summary_sentence(label or result.formula, flags))
