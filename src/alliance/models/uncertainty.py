"""Uncertainty that the figures draw: conditional SDs of conditional modes and the band of a
model-implied line.

* :func:`conditional_sd` — lme4's ``ranef(m, condVar = TRUE)``: the conditional variance of the
  random effects given the data and the estimated parameters, sigma^2 Lambda (Lambda'Z'WZ Lambda
  + I)^-1 Lambda' (Bates, Maechler, Bolker & Walker, 2015, section 5.1), the intervals of
  ``dotplot(ranef(m, condVar = TRUE))``.
* :func:`implied_line` — the fixed-effects prediction along one term with the other columns of
  the model matrix at their sample means, and its pointwise confidence band from the fixed
  effects' covariance matrix, x0' V x0.

Pure statistics on a fitted :class:`alliance.lmm.LmmResult`; tested against lme4 in
``tests/test_figure_statistics.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from alliance.lmm.design import fixed_matrix

__all__ = ["conditional_sd", "implied_line"]


def _fitted_parts(result):
    structure, frame = getattr(result, "_structure", None), getattr(result, "_frame", None)
    if structure is None or frame is None:
        raise ValueError("the fit keeps no model structure (a fit of alliance.lmm.fit is needed)")
    return structure, frame


def conditional_sd(result, factor: str) -> pd.DataFrame:
    """Conditional SDs of one grouping factor's conditional modes (lme4's ``condVar``).

    Parameters
    ----------
    result : LmmResult
        A fit of :func:`alliance.lmm.fit`.
    factor : str
        A grouping factor of the fit (e.g. ``"therapist"``).

    Returns
    -------
    DataFrame
        Rows and columns as ``result.ranef[factor]``; each cell the conditional SD of that
        conditional mode.
    """
    structure, _ = _fitted_parts(result)
    names = [f.name for f in structure.factors]
    if factor not in names:
        raise ValueError(f"the fit has no grouping factor {factor!r}; it has {names}")
    blocks = result.cond_var([factor])[factor]  # (levels, q, q), lme4's postVar
    ranef = result.ranef[factor]
    return pd.DataFrame(np.sqrt(np.einsum("lii->li", blocks)), index=ranef.index, columns=ranef.columns)


def implied_line(result, term: str, grid, level: float = 0.95) -> pd.DataFrame:
    """The model-implied line along ``term`` with its pointwise confidence band.

    Every other column of the fixed-effects model matrix is held at its mean over the fitted
    rows (numeric covariates at their means, factor contrasts at the sample's proportions);
    ``term`` takes the values of ``grid``. The band is fit +- t(df) x sqrt(x0' V x0), df the
    term's (Satterthwaite) df.

    Returns
    -------
    DataFrame
        ``x``, ``fit``, ``se``, ``ci_low``, ``ci_high``.
    """
    structure, frame = _fitted_parts(result)
    fixed = result.fixed_effects
    if term not in fixed.index:
        raise ValueError(f"the fit has no fixed effect {term!r}; it has {list(fixed.index)}")
    X, _ = fixed_matrix(result._spec, frame)
    names = list(fixed.index)
    grid = np.asarray(grid, dtype=float)
    x0 = np.tile(X.mean(axis=0), (len(grid), 1))
    x0[:, names.index(term)] = grid
    vcov = result.vcov.loc[names, names].to_numpy()
    fit = x0 @ fixed["estimate"].to_numpy()
    se = np.sqrt(np.einsum("ij,jk,ik->i", x0, vcov, x0))
    df = float(fixed.loc[term, "df"])
    crit = stats.t.ppf(0.5 + level / 2, df) if np.isfinite(df) else stats.norm.ppf(0.5 + level / 2)
    return pd.DataFrame({"x": grid, "fit": fit, "se": se, "ci_low": fit - crit * se, "ci_high": fit + crit * se})
