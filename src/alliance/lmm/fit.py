"""Fitting linear mixed models by profiled REML / ML (Bates et al. 2015, JSS 67(1))."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import optimize

from .crossed import crossed_intercepts_theta, single_threaded_blas
from .deviance import ProfiledDeviance
from .design import (
    FixedSpec,
    Structure,
    build_structure,
    drop_aliased,
    rank_drop_message,
    check_residual_variance,
    fixed_matrix,
    fixed_spec,
    lower_tri_from_theta,
    term_rows,
)
from .formula import expand_dot, parse_formula
from .frame import ModelFrame
from .inference import coef_table, df_from_derivatives, gradient_check, satterthwaite, scaled_gradient_check
from .result import LmmResult
from .scalar import ScalarCrossed, is_scalar_crossed

SINGULAR_TOL = 1e-4


def _model_frame(formula: str, data: pd.DataFrame, weights=None):
    """Parse the formula, drop rows with missing model variables, evaluate the model frame.

    Returns the parsed formula, the :class:`ModelFrame`, the complete rows of the data
    columns used, the evaluated frame, the prior weights (or None) and the messages.
    """
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    parsed = parse_formula(formula)
    missing = [v for v in parsed.variables if v not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} used in formula {formula!r} are not in the data")
    raw = data[parsed.variables]
    w = _prior_weights(weights, data)
    na = raw.isna().any(axis=1).to_numpy()
    messages = []
    if na.any():
        cols = [c for c in parsed.variables if raw[c].isna().any()]
        messages.append(f"dropped {int(na.sum())} row(s) with missing values in model variables {cols}")
        raw = raw.loc[~na]
        w = None if w is None else w[~na]
    raw = raw.reset_index(drop=True)
    if len(raw) == 0:
        raise ValueError("no rows left after dropping rows with missing values in model variables")
    _require_finite(raw)
    mf = ModelFrame(parsed)
    frame = mf.build(raw, learn=True)
    y = frame[parsed.response]
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        raise ValueError(f"response column {parsed.response!r} must be numeric, got dtype {y.dtype}")
    _require_finite(frame.drop(columns=[v for v in parsed.variables if v in frame.columns]))
    return parsed, mf, raw, frame, w, messages


def _prior_weights(weights, data: pd.DataFrame) -> np.ndarray | None:
    """Prior weights from a column name or a vector of one value per row of ``data``."""
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights not in data.columns:
            raise ValueError(f"weights column {weights!r} is not in the data")
        values = data[weights]
        where = f"weights column {weights!r}"
    else:
        values = pd.Series(np.asarray(weights))
        where = "weights"
        if len(values) != len(data):
            raise ValueError(f"weights has {len(values)} values for {len(data)} rows of data")
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise ValueError(f"{where} must be numeric, got dtype {values.dtype}")
    w = values.to_numpy(dtype=float)
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        raise ValueError(f"{where} must be positive and finite; {int(bad.sum())} row(s) are not "
                         f"(first at row {int(np.flatnonzero(bad)[0])})")
    return w


def _require_finite(frame: pd.DataFrame) -> None:
    """Refuse infinite values in any numeric model column, naming every such column."""
    bad = {}
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            inf = ~np.isfinite(values.to_numpy(dtype=float))
            if inf.any():
                bad[col.split(":", 1)[-1] if col.startswith("\x00") else col] = int(inf.sum())
    if bad:
        listed = ", ".join(f"{col!r} ({k} row(s))" for col, k in bad.items())
        raise ValueError(
            f"non-finite values (inf, -inf or a NaN from a transformation such as log of a "
            f"negative number) in model column(s) {listed}; a linear mixed model needs finite "
            "values: recode or drop those rows (missing values are dropped, infinite ones are not)"
        )


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


def contrasts_given(spec: FixedSpec) -> dict[str, str]:
    """The contrasts of a fit, to refit it the same way."""
    return dict(spec.contrasts)


def fit(formula: str, data: pd.DataFrame, reml: bool = True, *, contrasts: dict[str, str] | None = None,
        weights=None, engine: str = "alliance", satterthwaite_df: bool = True,
        start: np.ndarray | None = None) -> LmmResult:
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
      other factors form one dense block (up to ``design.MAX_DENSE`` = 3,000 levels x terms);
    * larger crossed designs (a national study's clients x 3,500 raters) are factorised as lme4
      does, with the whole sparse Z and a sparse factorisation of Lambda'Z'Z Lambda + I
      (:mod:`alliance.lmm.sparse`: SuperLU from scipy, or CHOLMOD when scikit-sparse is
      installed).

    Designs whose random terms are all scalar, with one large factor crossed with others (lme4's
    InstEval benchmark: students x lecturers), take a faster route (:mod:`alliance.lmm.scalar`):
    the exact REML gradient, average-information Newton steps over theta^2 >= 0, and the
    convergence check and Satterthwaite df from differences of the exact gradient.

    Denominator degrees of freedom are Satterthwaite's, computed as lmerTest does
    (Kuznetsova et al. 2017, JSS 82(13)).

    Tested against lme4 1.1-31 / lmerTest 3.1-3 (objective, fixed effects, standard errors,
    Satterthwaite df, variance components, singular flag) on the reference fits in
    ``tests/data/lme4/`` and ``tests/data/lmm_r/`` (lme4's cake, sleepstudy and InstEval: every
    construct of the formula language), and against statsmodels MixedLM on a two-level model.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"y ~ session + a_cw + a_cm + (1 + session | client) + (1 | therapist)"``.
        See :mod:`alliance.lmm.formula` for the supported language: transformations
        (``I()``, ``log()``, ``exp()``, ``sqrt()``, ``scale()``, orthogonal ``poly(x, k)``), a
        transformed response, ``offset()``, ``-`` removals, ``%in%``, ``a/b``, ``(a + b)^2``,
        categorical random slopes ``(f | g)`` and ``||`` (as lme4, ``||`` splits the terms of
        different variables only: a categorical variable stays one term with correlated
        indicator columns). Malformed formulas raise a ``ValueError`` naming the position.
        ``.`` in the fixed part stands for every other column of ``data``, as in lme4
        (grouping columns included; see :func:`alliance.lmm.formula.expand_dot`); the result's
        ``formula`` is the expanded one.
        A transformation is evaluated on the complete rows (R evaluates it before dropping
        rows with missing values, which changes ``scale``/``poly`` when other model columns
        have missing values); a NaN it produces (log of a negative number) is an error, where
        R drops the row.
    data : DataFrame
        Rows with a missing value in any model variable are dropped (count in ``warnings``).
    reml : bool, default True
        REML (lme4's default) or maximum likelihood.
    contrasts : dict, optional
        ``{column: "treatment" | "sum" | "helmert" | "poly"}`` for categorical fixed-effect
        variables, as R's ``contr.*`` (lme4's ``contrasts=`` argument). The default is R's:
        treatment contrasts for unordered, polynomial contrasts for ordered factors (a pandas
        ordered ``Categorical``). Column names are R's: ``armB`` (treatment),
        ``temperature.L``, ``temperature.Q``, ``temperature.C``, ``temperature^4`` (poly),
        ``arm1``, ``arm2`` (sum, helmert).
    weights : str or array-like, optional
        Prior weights, as lme4's ``weights``: a column of ``data`` or one positive value per
        row; the residual variance of a row is sigma^2 / w, and the objective includes
        -sum(log w) as lme4's.
    engine : {"alliance", "statsmodels"}
        ``"statsmodels"`` fits the model with statsmodels' MixedLM instead (one grouping
        factor, one term only) as a cross-check, returning the same result object: fixed
        effects and variance parameters are MixedLM's; standard errors (lme4's
        ``sigma^2 (R_X'R_X)^-1``), objective, df and conditional modes are evaluated at
        MixedLM's variance parameters.
    satterthwaite_df : bool, default True
        Compute Satterthwaite df (costs about 70-120 extra deviance evaluations; almost
        nothing on the crossed-scalar route, which shares the convergence check's); if False,
        ``df`` is infinite and p-values and intervals are normal-based.
    start : array, optional
        Starting theta (default lme4's: 1 on diagonal elements, 0 elsewhere).

    Returns
    -------
    LmmResult
        Aliased fixed-effects columns (linear combinations of earlier columns, R's ``qr``
        tolerance 1e-7) are dropped as lme4's default ``fixef.rank.drop`` does; the message
        "fixed-effect model matrix is rank deficient so dropping N columns / coefficients"
        with their names is in ``warnings`` and the names in ``dropped``.

    Raises
    ------
    ValueError
        Unsupported or malformed formula syntax (a ``FormulaSyntaxError`` naming the
        position), missing columns, non-numeric response, a non-finite value in a model
        column (naming it), a categorical fixed effect with fewer than two
        levels in the rows analysed (as R's ``model.matrix``), a response without residual
        variance (constant, or fitted exactly by the fixed effects, or by fixed and random
        effects), too few levels of a grouping factor.
    """
    if engine not in ("alliance", "statsmodels"):
        raise ValueError(f"engine must be 'alliance' or 'statsmodels', got {engine!r}")
    if isinstance(data, pd.DataFrame):
        formula = expand_dot(formula, data.columns)
    parsed, mf, raw, frame, w, messages = _model_frame(formula, data, weights)
    if engine == "statsmodels" and (w is not None or parsed.offsets):
        raise ValueError("engine='statsmodels' fits neither prior weights nor offsets; use engine='alliance'")
    spec = fixed_spec(frame, parsed, contrasts, mf.matrix_cols)
    X, names = fixed_matrix(spec, frame)
    X, names, dropped = drop_aliased(spec, X, names)
    if dropped:
        messages.append(rank_drop_message(dropped))
    offset = mf.offset(frame)
    y = frame[parsed.response].to_numpy(dtype=float) - offset
    sqrt_w = np.ones(len(y)) if w is None else np.sqrt(w)
    check_residual_variance(X * sqrt_w[:, None], y * sqrt_w, names, parsed.response)
    context = SimpleNamespace(model_frame=mf, raw=raw, weights=w, offset=offset)
    with single_threaded_blas():  # skinny per-group GEMMs: threading only spins
        structure, _ = build_structure(frame, mf.random_terms, X, y, w)
        dev = ProfiledDeviance(structure, reml)
        try:
            return _fit_theta(formula, parsed, frame, spec, X, y, structure, dev, reml, messages,
                              engine, satterthwaite_df, start, context)
        except np.linalg.LinAlgError as err:
            raise _no_residual_variance(parsed.response, structure) from err


def _fit_theta(formula, parsed, frame, spec, X, y, structure: Structure, dev: ProfiledDeviance,
               reml, messages, engine, satterthwaite_df, start, context) -> LmmResult:
    """Estimate theta with the chosen engine and assemble the result."""
    if engine == "statsmodels":
        from .statsmodels_engine import statsmodels_theta

        theta, sm_extra = statsmodels_theta(parsed, structure, frame, X, y, reml)
    else:
        theta0 = _start_theta(structure) if start is None else np.asarray(start, dtype=float)
        if theta0.shape != structure.lower.shape:
            raise ValueError(f"start must have {structure.ntheta} elements (lme4's theta), got {theta0.shape}")
        sm_extra = None
        # y ~ 1 + (1|a) + (1|b) by REML: the fast path of alliance.lmm.crossed (none if start
        # given; nor for designs on the sparse path, where its dense n_b x n_b block is too large)
        theta = (None if start is not None or structure.sparse is not None
                 else crossed_intercepts_theta(parsed, frame, y, reml, structure))
        if theta is None and is_scalar_crossed(structure):
            # crossed scalar terms (lme4's InstEval): exact gradient, AI-REML steps
            dev.scalar = ScalarCrossed(structure, reml)
            theta, res = dev.scalar.optimise(theta0)
            if not res.success:
                messages.append(f"optimiser did not report success: {res.message}")
        elif theta is None:
            theta, res = _optimise(dev, structure.lower, theta0)
            if not res.success:
                messages.append(f"optimiser did not report success: {res.message}")
    return _finish(formula, parsed, frame, spec, X, structure, dev, theta, reml, messages,
                   engine, satterthwaite_df, sm_extra, context)


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
            dev: ProfiledDeviance, theta, reml, messages, engine, want_df, sm_extra,
            context) -> LmmResult:
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
    scalar = getattr(dev, "scalar", None)
    if scalar is not None:
        # exact gradient; Hessians by differences of it, shared with Satterthwaite's df
        grad, hess, hess_varpar, jac_cov = scalar.theta_derivatives(theta, sigma)
        converged, worst = scaled_gradient_check(grad, hess, theta, structure.lower)
    else:
        converged, worst = gradient_check(dev, theta, structure.lower)
    if not converged:
        messages.append(f"model failed to converge: max|grad| = {worst:.3g} (tol = 0.002), as lme4's check")
    singular = bool(np.any(theta[structure.lower == 0.0] < SINGULAR_TOL))
    if singular:
        messages.append("boundary (singular) fit: see lme4's ?isSingular")
    if want_df and scalar is not None:
        df, df_messages = df_from_derivatives(hess_varpar, jac_cov, np.diag(vcov))
        messages.extend(df_messages)
    elif want_df:
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
        dropped=list(spec.dropped),
        ranef=_ranef(structure, b),
        vcov=pd.DataFrame(vcov, index=names, columns=names),
        npar=npar,
        n_evaluations=dev.n_evals + (0 if scalar is None else scalar.n_evals),
        max_grad=worst,
        _spec=spec,
        _structure=structure,
        _data=context.raw,
        _fitted=_fitted(structure, frame, X, sol.beta(), b) + context.offset,
        _frame=frame,
        _model_frame=context.model_frame,
        _weights=context.weights,
        _contrasts=contrasts_given(spec),
    )


def refit_ml(m: LmmResult) -> LmmResult:
    """The model refitted by maximum likelihood, as lme4's ``refitML(m)`` (``m`` itself if it
    was fitted by ML).

    Same formula, rows (those the fit used, after dropping missing values), contrasts and prior
    weights; always by the ``"alliance"`` engine (lme4's semantics), whichever engine fitted
    ``m``; no Satterthwaite df. Its ``loglik``, ``aic`` and ``bic`` are lme4's
    ``logLik``/``AIC``/``BIC`` of ``refitML(m)``: ``npar`` = fixed effects + variance-covariance
    parameters + 1 (residual), BIC with log(nobs). :func:`lrt` compares models this way.
    """
    if not isinstance(m, LmmResult):
        raise ValueError(f"refit_ml expects an LmmResult, got {type(m).__name__}")
    if not m.reml:
        return m
    if m._data is None:
        raise ValueError("refit_ml: the result holds no data to refit (not made by alliance.lmm.fit)")
    return fit(m.formula, m._data, reml=False, satterthwaite_df=False, contrasts=m._contrasts,
               weights=m._weights)


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
        models.append(refit_ml(m))
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
