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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=reml, method=["lbfgs", "bfgs", "cg"])
    p = X.shape[1]
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
        "vcov": np.asarray(res.cov_params())[:p, :p],
        "llf": float(res.llf),
    }
    return theta, extra
