"""Fitting linear mixed models by profiled REML / ML (Bates et al. 2015, JSS 67(1))."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
from scipy import optimize

from .crossed import crossed_intercepts_theta
from .deviance import ProfiledDeviance
from .design import (
    FixedSpec,
    Structure,
    build_structure,
    check_rank,
    check_residual_variance,
    fixed_matrix,
    fixed_spec,
    lower_tri_from_theta,
    term_rows,
)
from .formula import ParsedFormula, parse_formula
from .inference import coef_table, gradient_check, satterthwaite
from .result import LmmResult

SINGULAR_TOL = 1e-4


@contextlib.contextmanager
def _single_threaded_blas():
    """Run BLAS single-threaded: the per-group products are skinny GEMMs (4 x 66,000) for
    which OpenBLAS's threading costs up to 20x, worst when other processes share the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _model_frame(formula: str, data: pd.DataFrame) -> tuple[ParsedFormula, pd.DataFrame, list[str]]:
    """Parse the formula, check the columns and drop rows with missing model variables."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    parsed = parse_formula(formula)
    missing = [v for v in parsed.variables if v not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} used in formula {formula!r} are not in the data")
    frame = data[parsed.variables]
    na = frame.isna().any(axis=1).to_numpy()
    messages = []
    if na.any():
        cols = [c for c in parsed.variables if frame[c].isna().any()]
        messages.append(f"dropped {int(na.sum())} row(s) with missing values in model variables {cols}")
        frame = frame.loc[~na]
    frame = frame.reset_index(drop=True)
    if len(frame) == 0:
        raise ValueError("no rows left after dropping rows with missing values in model variables")
    y = frame[parsed.response]
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        raise ValueError(f"response column {parsed.response!r} must be numeric, got dtype {y.dtype}")
    if not np.all(np.isfinite(y.to_numpy(dtype=float))):
        raise ValueError(f"response column {parsed.response!r} has infinite values")
    return parsed, frame, messages


def _optimise(dev: ProfiledDeviance, lower: np.ndarray, start: np.ndarray):
    """Minimise the objective over theta with COBYQA (Powell's derivative-free trust-region
    method, successor of the bobyqa that lme4 uses), lower bound 0 on diagonal elements.

    A gradient-based method is a poor fit here: the objective is even in a scalar diagonal
    theta, so its gradient vanishes on the bound theta = 0 and a projected-gradient method
    can stop there although the interior is better.
    """
    bounds = optimize.Bounds(np.where(np.isfinite(lower), lower, -np.inf), np.inf)
    res = optimize.minimize(
        dev, start, method="COBYQA", bounds=bounds,
        options={"maxfev": 2000 * max(len(start), 1)},
    )
    theta = np.maximum(res.x, lower)
    return theta, res


def _start_theta(structure: Structure) -> np.ndarray:
    return np.where(structure.lower == 0.0, 1.0, 0.0)


def _varcorr(structure: Structure, theta: np.ndarray, sigma: float) -> pd.DataFrame:
    rows = []
    for t, name, sl in zip(structure.terms, structure.term_names, structure.theta_slices):
        lam = lower_tri_from_theta(theta[sl], t.q)
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        cols = t.column_names
        for i in range(t.q):
            rows.append((name, cols[i], None, cov[i, i], sd[i], np.nan))
        for i in range(t.q):
            for j in range(i + 1, t.q):
                corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append((name, cols[i], cols[j], cov[i, j], np.nan, corr))
    rows.append(("Residual", None, None, sigma**2, sigma, np.nan))
    return pd.DataFrame(rows, columns=["group", "term1", "term2", "variance", "sd", "corr"])


def _ranef(structure: Structure, b_by_factor: list[np.ndarray]) -> dict[str, pd.DataFrame]:
    out = {}
    for fac, b in zip(structure.factors, b_by_factor):
        cols = []
        for ti in fac.terms:
            cols.extend(structure.terms[ti].column_names)
        out[fac.name] = pd.DataFrame(b, index=pd.Index(fac.labels, name=fac.name), columns=cols)
    return out


def _fitted(structure: Structure, frame: pd.DataFrame, X: np.ndarray, beta: np.ndarray,
            b_by_factor: list[np.ndarray]) -> np.ndarray:
    fit = X @ beta
    for fac, b in zip(structure.factors, b_by_factor):
        z = term_rows(frame, structure.terms, fac)
        fit += np.einsum("nj,nj->n", z, b[fac.codes])
    return fit


def fit(formula: str, data: pd.DataFrame, reml: bool = True, *, engine: str = "alliance",
        satterthwaite_df: bool = True, start: np.ndarray | None = None) -> LmmResult:
    """Fit a linear mixed model written in lme4's formula syntax.

    The profiled REML criterion (or ML deviance) is minimised over the relative covariance
    factor theta by COBYQA (derivative-free trust region, the successor of lme4's bobyqa;
    lower bound 0 on diagonal elements as in lme4). Each evaluation solves the penalised
    least-squares problem of Bates et al. (2015), "Fitting linear mixed-effects models using
    lme4", JSS 67(1), with the Cholesky factor blocked by grouping factor and vectorised over
    groups (no Python loop over groups):

    * nested factors (sessions in clients in therapists, ``(1 | a/b)``): every level is
      block-diagonal, each coarser level gets the Schur complement of the finer one;
    * crossed factors (targets x raters): the largest factor's blocks are independent, all
      other factors form one dense block (up to a few thousand levels x terms in total).

    Denominator degrees of freedom are Satterthwaite's, computed as lmerTest does
    (Kuznetsova et al. 2017, JSS 82(13)).

    Tested against lme4 1.1-31 / lmerTest 3.1-3 (objective, fixed effects, standard errors,
    Satterthwaite df, variance components, singular flag) on the reference fits in
    ``tests/data/lme4/``, and against statsmodels MixedLM on a two-level model.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ session + a_cw + a_cm + (1 + session | client) + (1 | therapist)"``.
        See :mod:`alliance.lmm.formula` for the supported syntax.
    data : DataFrame
        Rows with a missing value in any model variable are dropped (count in ``warnings``).
    reml : bool, default True
        REML (lme4's default) or maximum likelihood.
    engine : {"alliance", "statsmodels"}
        ``"statsmodels"`` fits the model with statsmodels' MixedLM instead (one grouping
        factor, one term only) as a cross-check, returning the same result object: fixed
        effects and variance parameters are MixedLM's; standard errors (lme4's
        ``sigma^2 (R_X'R_X)^-1``), objective, df and conditional modes are evaluated at
        MixedLM's variance parameters.
    satterthwaite_df : bool, default True
        Compute Satterthwaite df (costs about 70-120 extra deviance evaluations); if False,
        ``df`` is infinite and p-values and intervals are normal-based.
    start : array, optional
        Starting theta (default lme4's: 1 on diagonal elements, 0 elsewhere).

    Returns
    -------
    LmmResult

    Raises
    ------
    ValueError
        Unsupported formula syntax, missing columns, non-numeric response, rank-deficient
        fixed effects (naming the columns), a categorical fixed effect with fewer than two
        levels in the rows analysed (as R's ``model.matrix``), a response without residual
        variance (constant, or fitted exactly by the fixed effects, or by fixed and random
        effects), too few levels of a grouping factor.
    """
    if engine not in ("alliance", "statsmodels"):
        raise ValueError(f"engine must be 'alliance' or 'statsmodels', got {engine!r}")
    parsed, frame, messages = _model_frame(formula, data)
    spec = fixed_spec(frame, parsed)
    X, names = fixed_matrix(spec, frame)
    check_rank(X, names)
    y = frame[parsed.response].to_numpy(dtype=float)
    check_residual_variance(X, y, names, parsed.response)
    with _single_threaded_blas():
        structure, _ = build_structure(frame, parsed.random_terms, X, y)
        dev = ProfiledDeviance(structure, reml)
        try:
            return _fit_theta(formula, parsed, frame, spec, X, y, structure, dev, reml, messages,
                              engine, satterthwaite_df, start)
        except np.linalg.LinAlgError as err:
            raise _no_residual_variance(parsed.response, structure) from err


def _fit_theta(formula, parsed, frame, spec, X, y, structure: Structure, dev: ProfiledDeviance,
               reml, messages, engine, satterthwaite_df, start) -> LmmResult:
    """Estimate theta with the chosen engine and assemble the result."""
    if engine == "statsmodels":
        from .statsmodels_engine import statsmodels_theta

        theta, sm_extra = statsmodels_theta(parsed, structure, frame, X, y, reml)
    else:
        theta0 = _start_theta(structure) if start is None else np.asarray(start, dtype=float)
        if theta0.shape != structure.lower.shape:
            raise ValueError(f"start must have {structure.ntheta} elements (lme4's theta), got {theta0.shape}")
        sm_extra = None
        # y ~ 1 + (1|a) + (1|b) by REML: the fast path of alliance.lmm.crossed (none if start given)
        theta = None if start is not None else crossed_intercepts_theta(parsed, frame, y, reml, structure)
        if theta is None:
            theta, res = _optimise(dev, structure.lower, theta0)
            if not res.success:
                messages.append(f"optimiser did not report success: {res.message}")
    return _finish(formula, parsed, frame, spec, X, structure, dev, theta, reml, messages,
                   engine, satterthwaite_df, sm_extra)


def _no_residual_variance(response: str, structure: Structure) -> ValueError:
    """The error for a breakdown of the Cholesky factorisation during the fit.

    The fixed effects alone do not fit the response exactly (checked before), but fixed plus
    random effects do, e.g. a response constant within the groups: theta grows without bound
    and the residual sum of squares, the last pivot, reaches rounding level.
    """
    groups = [f.name for f in structure.factors]
    return ValueError(
        f"response {response!r} has (almost) no residual variance: the fixed and random effects "
        f"fit it exactly (e.g. it is constant within the groups of {groups}), so the residual "
        "variance goes to 0 and the Cholesky factorisation of the penalised least-squares "
        "system breaks down; check that the response is not computed from the predictors"
    )


def _finish(formula, parsed, frame, spec: FixedSpec, X, structure: Structure,
            dev: ProfiledDeviance, theta, reml, messages, engine, want_df, sm_extra) -> LmmResult:
    sol = dev.solve(theta, keep=True)
    objective = dev.criterion(sol)
    sigma = dev.sigma(sol)
    beta = sol.beta()
    vcov = sigma**2 * sol.RXinv_cross()
    names = spec.names
    if sm_extra is not None:
        # MixedLM's estimates; standard errors keep lme4's meaning, sigma^2 (R_X'R_X)^-1 at
        # MixedLM's variance parameters (its own bse come from the joint Hessian and differ
        # by about 1% near the boundary)
        beta = sm_extra["beta"]
    se = np.sqrt(np.diag(vcov))
    converged, worst = gradient_check(dev, theta, structure.lower)
    if not converged:
        messages.append(f"model failed to converge: max|grad| = {worst:.3g} (tol = 0.002), as lme4's check")
    singular = bool(np.any(theta[structure.lower == 0.0] < SINGULAR_TOL))
    if singular:
        messages.append("boundary (singular) fit: see lme4's ?isSingular")
    if want_df:
        df, df_messages = satterthwaite(dev, theta, sigma)
        messages.extend(df_messages)
    else:
        df = np.full(len(beta), np.inf)
    t, pval, lo, hi = coef_table(beta, se, df)
    fixed = pd.DataFrame(
        {"estimate": beta, "se": se, "df": df, "t": t, "p": pval, "ci_low": lo, "ci_high": hi},
        index=pd.Index(names, name="term"),
    )
    b = dev.random_effects(sol)
    n = structure.n
    npar = len(beta) + len(theta) + 1
    loglik = -objective / 2.0
    return LmmResult(
        formula=formula,
        reml=reml,
        engine=engine,
        fixed_effects=fixed,
        random_effects=_varcorr(structure, theta, sigma),
        sigma=sigma,
        theta=theta,
        objective=objective,
        loglik=loglik,
        aic=-2 * loglik + 2 * npar,
        bic=-2 * loglik + npar * np.log(n),
        nobs=n,
        ngroups={f.name: f.nlevels for f in structure.factors},
        converged=converged,
        singular=singular,
        warnings=messages,
        ranef=_ranef(structure, b),
        vcov=pd.DataFrame(vcov, index=names, columns=names),
        npar=npar,
        n_evaluations=dev.n_evals,
        max_grad=worst,
        _spec=spec,
        _structure=structure,
        _data=frame,
        _fitted=_fitted(structure, frame, X, sol.beta(), b),
    )


def lrt(m0: LmmResult, m1: LmmResult) -> pd.DataFrame:
    """Likelihood-ratio test of nested models, as lme4's ``anova(m0, m1)``.

    REML fits are refitted by maximum likelihood first (as lme4 does, with a note in
    ``attrs['note']``). The models must be fitted to the same rows.

    Returns
    -------
    DataFrame
        Rows ``m0``, ``m1``; columns ``npar``, ``AIC``, ``BIC``, ``logLik``, ``deviance``,
        ``Chisq``, ``Df``, ``p`` (``Pr(>Chisq)``).
    """
    from scipy import stats

    refitted = []
    models = []
    for m in (m0, m1):
        if not isinstance(m, LmmResult):
            raise ValueError(f"lrt expects two LmmResult objects, got {type(m).__name__}")
        if m.reml:
            refitted.append(m.formula)
            m = fit(m.formula, m._data, reml=False, satterthwaite_df=False)
        models.append(m)
    a, b = models
    responses = {m.formula.split("~")[0].strip() for m in models}
    if len(responses) != 1:
        raise ValueError(f"models have different responses {sorted(responses)}; a likelihood-ratio test needs the same response")
    if a.nobs != b.nobs:
        raise ValueError(f"models were fitted to different numbers of rows ({a.nobs} vs {b.nobs})")
    if a.npar > b.npar:
        a, b = b, a
    chisq = max(a.objective - b.objective, 0.0)
    ddf = b.npar - a.npar
    p = float(stats.chi2.sf(chisq, ddf)) if ddf > 0 else np.nan
    out = pd.DataFrame(
        {
            "npar": [a.npar, b.npar],
            "AIC": [a.aic, b.aic],
            "BIC": [a.bic, b.bic],
            "logLik": [a.loglik, b.loglik],
            "deviance": [a.objective, b.objective],
            "Chisq": [np.nan, chisq],
            "Df": [np.nan, ddf],
            "p": [np.nan, p],
        },
        index=["m0", "m1"],
    )
    if refitted:
        out.attrs["note"] = "refitted model(s) with ML (instead of REML)"
    return out


anova = lrt
