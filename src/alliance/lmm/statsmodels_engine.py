"""Cross-check path: fit a two-level model with statsmodels' MixedLM (Lindstrom & Bates 1988).

Only models MixedLM can express are accepted: one grouping factor with one (correlated)
random-effects term. The variance parameters MixedLM finds are translated to lme4's theta so
that the same result object (with Satterthwaite df computed at MixedLM's estimates) comes out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .design import Structure, term_rows


def _usable(res) -> bool:
    return (res is not None and np.isfinite(res.llf) and np.all(np.isfinite(res.fe_params))
            and np.all(np.isfinite(np.asarray(res.cov_re))) and res.scale > 0)


def _best_mixedlm_fit(model, reml: bool):
    """MixedLM's fit with the highest finite log-likelihood over its optimisers.

    With lbfgs alone MixedLM can end at llf = inf with nonsense estimates on near-boundary
    fits (seen with statsmodels 0.15 on a client-level model with a near-zero therapist
    variance); Powell then reaches lme4's optimum. lbfgs is tried first and Powell only when
    lbfgs fails or does not report convergence.
    """
    fits = []
    for method in (["lbfgs"], ["powell"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = model.fit(reml=reml, method=method)
            except (np.linalg.LinAlgError, ValueError):
                res = None
        if _usable(res):
            fits.append(res)
            if res.converged:
                break
    if not fits:
        raise ValueError("statsmodels MixedLM did not reach a finite likelihood with lbfgs or powell; "
                         "use engine='alliance'")
    return max(fits, key=lambda r: r.llf)


def statsmodels_theta(parsed, structure: Structure, frame: pd.DataFrame, X: np.ndarray,
                      y: np.ndarray, reml: bool):
    """Fit with MixedLM; return lme4's theta and MixedLM's fixed effects and their covariance."""
    if len(structure.factors) != 1 or len(structure.terms) != 1:
        raise ValueError(
            "engine='statsmodels' supports one grouping factor with one random-effects term "
            "(e.g. '(1 + x | g)'); use engine='alliance' for nested, crossed or '||' terms"
        )
    from statsmodels.regression.mixed_linear_model import MixedLM

    fac = structure.factors[0]
    Z = term_rows(frame, structure.terms, fac)
    model = MixedLM(y, X, groups=fac.codes, exog_re=Z)
    res = _best_mixedlm_fit(model, reml)
    rel = np.asarray(res.cov_re) / res.scale
    q = rel.shape[0]
    try:
        lam = np.linalg.cholesky(rel)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(rel)
        lam = np.linalg.cholesky(v @ np.diag(np.maximum(w, 0) + 1e-12) @ v.T)
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    theta = lam[rows[order], cols[order]]
    extra = {
        "beta": np.asarray(res.fe_params),
        "llf": float(res.llf),
    }
    return theta, extra
