"""Rater leniency and pairwise agreement of observer ratings (incomplete crossed designs).

Observer-rated alliance is coded by several coders, each session (target) by two or three of
them. The ICCs of :mod:`alliance.reliability` summarise the whole design; this module says
*which* coders differ:

* :func:`rater_leniency`: each rater's effect in the crossed model
  ``rating ~ 1 + (1|target) + (1|rater)`` as its conditional mode (BLUP; lme4's ``ranef``)
  with the conditional standard deviation (lme4's ``condVar``), beside a descriptive mean
  deviation from the other coders of the same sessions. Raters that rate systematically
  higher than the others are lenient, lower ones severe (Myford & Wolfe 2003).
* :func:`pairwise_rater_agreement`: for every pair of raters with enough sessions in common,
  the mean difference with Bland & Altman (1986) limits of agreement, Pearson's r, the
  absolute-agreement ICC(A,1) of the pair (McGraw & Wong 1996) and the share of identical
  ratings.

References
----------
Henderson, C. R. (1975). Best linear unbiased estimation and prediction under a selection
model. *Biometrics*, 31, 423–447.
Robinson, G. K. (1991). That BLUP is a good thing: the estimation of random effects.
*Statistical Science*, 6, 15–32.
Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models
using lme4. *Journal of Statistical Software*, 67(1).
Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement between two
methods of clinical measurement. *The Lancet*, 327, 307–310.
McGraw, K. O., & Wong, S. P. (1996). Forming inferences about some intraclass correlation
coefficients. *Psychological Methods*, 1, 30–46.
Myford, C. M., & Wolfe, E. W. (2003). Detecting and measuring rater effects using many-facet
Rasch measurement: Part I. *Journal of Applied Measurement*, 4, 386–422.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from alliance.interrater.intraclass import crossed_variance_components
from alliance.interrater.ratings import LongRatings, prepare_ratings

__all__ = [
    "LENIENCY_COLUMNS",
    "PAIR_COLUMNS",
    "rater_leniency",
    "pairwise_rater_agreement",
    "paired_ratings",
]

LENIENCY_COLUMNS = [
    "rater", "n_ratings", "leniency", "se", "ci_low", "ci_high", "mean_deviation",
    "n_shared_targets",
]
PAIR_COLUMNS = [
    "rater_a", "rater_b", "n_shared", "mean_difference", "sd_difference", "loa_low",
    "loa_high", "pearson_r", "icc_a1", "exact_agreement",
]

#: two ratings within this absolute distance count as the same rating
EXACT_TOLERANCE = 1e-9
#: Bland & Altman's (1986) multiplier of the SD of the differences
LOA_MULTIPLIER = 1.96


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------
def _prepare(data: pd.DataFrame, target: str, rater: str, rating: str) -> LongRatings:
    """:func:`alliance.interrater.ratings.prepare_ratings`, and at least two raters to compare."""
    d = prepare_ratings(data, target, rater, rating)
    if d.n_raters < 2:
        raise ValueError(
            f"column {rater!r} has {d.n_raters} distinct rater(s) with ratings; comparing raters "
            "needs at least 2"
        )
    return d


# --------------------------------------------------------------------------------------------
# Rater leniency: conditional modes of the rater effect
# --------------------------------------------------------------------------------------------
def _variances(components) -> tuple[float, float, float]:
    """(target, rater, residual) variances from a fit object or a mapping, checked."""
    names = ("target", "rater", "residual")
    if isinstance(components, Mapping):
        missing = [n for n in names if n not in components]
        values = [components.get(n) for n in names]
    else:
        missing = [n for n in names if not hasattr(components, n)]
        values = [getattr(components, n, None) for n in names]
    if missing:
        raise ValueError(
            f"components must give the variances {list(names)} (attributes or keys); "
            f"missing {missing}"
        )
    try:
        vt, vr, ve = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"components must be numbers, got {dict(zip(names, values))}") from None
    if not all(np.isfinite([vt, vr, ve])) or vt < 0 or vr < 0 or ve <= 0:
        raise ValueError(
            "components must be finite with target, rater >= 0 and residual > 0, got "
            f"target={vt!r}, rater={vr!r}, residual={ve!r}"
        )
    return vt, vr, ve


@dataclass(frozen=True)
class _RaterModes:
    leniency: np.ndarray
    cond_sd: np.ndarray
    intercept: float


def _rater_modes(d: LongRatings, vt: float, vr: float, ve: float) -> _RaterModes:
    """Conditional modes and SDs of the rater effects given the variance components.

    In lme4's form (Bates et al. 2015) the spherical modes solve M u = Lambda' Z' (y - X beta)
    with M = Lambda' Z' Z Lambda + I, Lambda = diag(theta_t, theta_r), theta^2 = v / v_e;
    the rater effects are b_r = theta_r u_r and their conditional variance
    v_e theta_r^2 diag((M^-1)_rr). The target block A of M is diagonal, so u_t is eliminated
    and only the Schur complement S = C - B' A^-1 B (raters × raters) is factorised:
    (M^-1)_rr = S^-1. beta is the GLS intercept at these components (Henderson 1975), found
    from the same solves with the response and the intercept column side by side. This form
    stays valid on the boundary (a zero variance gives theta = 0: modes and SDs 0).
    """
    n = len(d.y)
    ybar = float(d.y.mean())
    yc = d.y - ybar  # centring keeps the sums free of cancellation; beta absorbs it
    tt, tr = np.sqrt(vt / ve), np.sqrt(vr / ve)
    dt = np.bincount(d.t, minlength=d.n_targets).astype(float)
    dr = np.bincount(d.r, minlength=d.n_raters).astype(float)
    N = sp.csr_matrix((np.ones(n), (d.t, d.r)), shape=(d.n_targets, d.n_raters))
    a = 1.0 + tt**2 * dt
    NtAN = (N.T @ sp.diags(1.0 / a) @ N).toarray()
    S = np.diag(1.0 + tr**2 * dr) - (tt * tr) ** 2 * NtAN
    # Right-hand sides Lambda' Z' [y, 1]: column 0 the response, column 1 the intercept.
    ct = tt * np.column_stack([np.bincount(d.t, yc, d.n_targets), dt])
    cr = tr * np.column_stack([np.bincount(d.r, yc, d.n_raters), dr])
    ur = np.linalg.solve(S, cr - tt * tr * (N.T @ (ct / a[:, None])))
    ut = (ct - tt * tr * (N @ ur)) / a[:, None]
    # c' M^-1 c for the pairs (1, y) and (1, 1): the penalised parts of 1'V^-1 y and 1'V^-1 1.
    q = ct[:, 1] @ ut + cr[:, 1] @ ur
    beta_c = (yc.sum() - q[0]) / (n - q[1])
    u_r = ur[:, 0] - beta_c * ur[:, 1]
    S_inv_diag = np.diag(np.linalg.inv(S))
    return _RaterModes(leniency=tr * u_r, cond_sd=np.sqrt(ve * tr**2 * S_inv_diag),
                       intercept=ybar + beta_c)


def _mean_deviation(d: LongRatings) -> tuple[np.ndarray, np.ndarray]:
    """Per rater: mean of (rating - mean of the other raters' ratings of the same target),
    over targets that others rated too, and the number of those targets."""
    yc = d.y - d.y.mean()
    count = np.bincount(d.t, minlength=d.n_targets)[d.t]
    total = np.bincount(d.t, yc, d.n_targets)[d.t]
    shared = count > 1
    others = np.where(shared, (total - yc) / np.maximum(count - 1, 1), 0.0)
    dev = np.where(shared, yc - others, 0.0)
    n_shared = np.bincount(d.r, shared.astype(float), d.n_raters)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_dev = np.bincount(d.r, dev, d.n_raters) / n_shared
    return np.where(n_shared > 0, mean_dev, np.nan), n_shared.astype(np.int64)


def _check_level(ci_level: float) -> None:
    if not (isinstance(ci_level, (int, float)) and 0 < ci_level < 1):
        raise ValueError(f"ci_level must lie strictly between 0 and 1, got {ci_level!r}")


def rater_leniency(data: pd.DataFrame, target: str, rater: str, rating: str, *,
                   components=None, ci_level: float = 0.95) -> pd.DataFrame:
    """Each rater's leniency: the conditional mode of its effect in the crossed model.

    The model is ``rating ~ 1 + (1|target) + (1|rater)`` (targets, e.g. sessions, and raters
    crossed, every target rated by any subset of raters). ``leniency`` is the rater's
    conditional mode (best linear unbiased predictor; Henderson 1975, Robinson 1991) at the
    REML variance components, as lme4's ``ranef`` reports it: positive for raters who rate
    higher than the model's mean for the same targets (lenient), negative for severe ones
    (Myford & Wolfe 2003). ``se`` is its conditional standard deviation, lme4's ``condVar``
    (given the variance components and the intercept, as lme4 computes it), and the interval
    is normal, ``leniency ± z se``. The modes are shrunk towards 0, more so for raters with
    few ratings; on a singular fit with rater variance 0 all modes and SDs are 0.

    ``mean_deviation`` is a model-free companion: the mean, over the rater's ratings of
    targets that others rated too, of the rating minus the mean of the other raters' ratings
    of that target (NaN for a rater who shares no target; ``n_shared_targets`` counts them).

    The mixed-model equations are solved with the target block (diagonal) eliminated, so
    only a raters × raters matrix is factorised: the cost grows with the number of ratings,
    not with targets × raters (250,000 ratings and 100 raters took 1.6 s on a shared 2-core
    machine, 1.1 s of it the REML fit). Tested against lme4 1.1-31 (``ranef`` and
    ``condVar`` of ``lmer(..., REML = TRUE)``) on incomplete observer designs, one of them
    singular, and by recovery of known leniencies in simulated designs.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per rating. Missing ratings are dropped with a warning.
    target, rater, rating : str
        Column names: the rated unit (e.g. client × session), the rater id, the rating.
    components : CrossedVarianceComponents or mapping, optional
        Variance components ``target``, ``rater``, ``residual`` (attributes or keys) to use;
        default the REML fit of :func:`alliance.interrater.intraclass.crossed_variance_components`.
        The intercept is always the GLS estimate at these components (lme4's ``fixef``).
    ci_level : float, default 0.95

    Returns
    -------
    DataFrame
        One row per rater, sorted by rater id, columns :data:`LENIENCY_COLUMNS`. ``attrs``
        hold the variance components used and the intercept.

    Raises
    ------
    ValueError
        Missing columns, non-numeric or infinite ratings, missing ids, duplicate
        target × rater pairs, fewer than 2 raters, invalid components or ``ci_level``, and
        the REML fit's own refusals (e.g. ratings that do not vary within raters).
    """
    _check_level(ci_level)
    d = _prepare(data, target, rater, rating)
    if components is None:
        frame = pd.DataFrame({"target": d.t, "rater": d.r, "rating": d.y})
        components = crossed_variance_components(frame, "target", "rater", "rating")
    vt, vr, ve = _variances(components)
    modes = _rater_modes(d, vt, vr, ve)
    mean_dev, n_shared = _mean_deviation(d)
    z = stats.norm.ppf(0.5 + ci_level / 2)
    out = pd.DataFrame({
        "rater": d.raters,
        "n_ratings": np.bincount(d.r, minlength=d.n_raters).astype(np.int64),
        "leniency": modes.leniency,
        "se": modes.cond_sd,
        "ci_low": modes.leniency - z * modes.cond_sd,
        "ci_high": modes.leniency + z * modes.cond_sd,
        "mean_deviation": mean_dev,
        "n_shared_targets": n_shared,
    })
    out.attrs.update(variance_target=vt, variance_rater=vr, variance_residual=ve,
                     intercept=float(modes.intercept), ci_level=ci_level)
    return out[LENIENCY_COLUMNS]


# --------------------------------------------------------------------------------------------
# Pairwise agreement
# --------------------------------------------------------------------------------------------
def _rating_pairs(d: LongRatings) -> pd.DataFrame:
    """Every target's ratings by two raters a < b (in sorted id order), one row per pair."""
    one = pd.DataFrame({"t": d.t, "r": d.r, "y": d.y})
    both = one.merge(one, on="t", suffixes=("_a", "_b"))
    return both[both["r_a"] < both["r_b"]].reset_index(drop=True)


def paired_ratings(data: pd.DataFrame, target: str, rater: str, rating: str) -> pd.DataFrame:
    """The ratings of every target by every pair of its raters, one row per target and pair.

    Columns ``rater_a``, ``rater_b`` (``rater_a`` first in sorted id order), ``target``,
    ``rating_a``, ``rating_b``; sorted by pair and target. The same input checks as
    :func:`pairwise_rater_agreement`.
    """
    d = _prepare(data, target, rater, rating)
    pairs = _rating_pairs(d).sort_values(["r_a", "r_b", "t"], kind="stable")
    return pd.DataFrame({
        "rater_a": d.raters[pairs["r_a"].to_numpy()],
        "rater_b": d.raters[pairs["r_b"].to_numpy()],
        "target": d.targets[pairs["t"].to_numpy()],
        "rating_a": pairs["y_a"].to_numpy(),
        "rating_b": pairs["y_b"].to_numpy(),
    })


def _pair_sums(pairs: pd.DataFrame, n_raters: int) -> pd.DataFrame:
    """Per rater pair: n, means and centred sums of squares and products of (x, y, x - y)."""
    g = (pairs["r_a"].to_numpy() * n_raters + pairs["r_b"].to_numpy()).astype(np.intp)
    key, g = np.unique(g, return_inverse=True)
    x, y = pairs["y_a"].to_numpy(), pairs["y_b"].to_numpy()
    n = np.bincount(g).astype(float)
    mx, my = np.bincount(g, x) / n, np.bincount(g, y) / n
    xc, yc = x - mx[g], y - my[g]  # centred first: no cancellation in the sums of squares
    exact = np.abs(x - y) <= EXACT_TOLERANCE
    return pd.DataFrame({
        "ra": key // n_raters, "rb": key % n_raters, "n": n, "mx": mx, "my": my,
        "sxx": np.bincount(g, xc * xc), "syy": np.bincount(g, yc * yc),
        "sxy": np.bincount(g, xc * yc), "sdd": np.bincount(g, (xc - yc) ** 2),
        "exact": np.bincount(g, exact.astype(float)) / n,
    })


def _icc_a1_two_raters(s: pd.DataFrame) -> np.ndarray:
    """ICC(A,1) (McGraw & Wong 1996; Shrout & Fleiss's ICC(2,1)) of complete 2-rater designs.

    Two-way ANOVA of the n targets × 2 raters table written in the pair's centred sums:
    SS_targets = (Sxx + Syy + 2 Sxy) / 2, SS_raters = n (mean_x - mean_y)^2 / 2,
    SS_error = S_dd / 2 (d = x - y), on n - 1, 1 and n - 1 degrees of freedom.
    """
    n = s["n"].to_numpy()
    msr = (s["sxx"] + s["syy"] + 2 * s["sxy"]).to_numpy() / 2 / (n - 1)
    msc = n * (s["mx"] - s["my"]).to_numpy() ** 2 / 2
    mse = s["sdd"].to_numpy() / 2 / (n - 1)
    return (msr - mse) / (msr + mse + 2 * (msc - mse) / n)


def _check_min_shared(min_shared) -> None:
    if isinstance(min_shared, bool) or not float(min_shared).is_integer() or min_shared < 2:
        raise ValueError(
            f"min_shared must be an integer >= 2 (a pair needs two shared targets for an SD), "
            f"got {min_shared!r}"
        )


def pairwise_rater_agreement(data: pd.DataFrame, target: str, rater: str, rating: str, *,
                             min_shared: int = 10) -> pd.DataFrame:
    """Agreement of every pair of raters on the targets both rated.

    For each pair ``rater_a < rater_b`` (sorted ids) with at least ``min_shared`` targets in
    common: the number of shared targets, the mean and SD of the differences a − b and the
    Bland & Altman (1986) 95% limits of agreement, mean ± 1.96 SD; Pearson's r; the
    absolute-agreement ICC(A,1) of the pair's complete n × 2 design (McGraw & Wong 1996;
    ICC(2,1) of Shrout & Fleiss 1979, from two-way ANOVA mean squares, as ``psych::ICC``
    and :func:`alliance.interrater.intraclass.icc` compute it); and the share of identical ratings
    (within 1e-9). Pairs are found by joining the ratings on target, so the cost grows with
    the number of rating pairs, not with raters². Tested against an independent R
    implementation (loops, ``cor``, ``sd``, ``psych::ICC`` 2.2.9).

    r and ICC(A,1) are NaN when a rater's ratings of the shared targets do not vary.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per rating. Missing ratings are dropped with a warning.
    target, rater, rating : str
        Column names.
    min_shared : int, default 10
        Pairs with fewer shared targets are left out (at least 2).

    Returns
    -------
    DataFrame
        Columns :data:`PAIR_COLUMNS`, one row per pair, sorted by ``rater_a``, ``rater_b``;
        empty (with these columns) when no pair shares ``min_shared`` targets.

    Raises
    ------
    ValueError
        Missing columns, non-numeric or infinite ratings, missing ids, duplicate
        target × rater pairs, fewer than 2 raters, ``min_shared`` below 2.
    """
    _check_min_shared(min_shared)
    d = _prepare(data, target, rater, rating)
    s = _pair_sums(_rating_pairs(d), d.n_raters)
    s = s[s["n"] >= min_shared].reset_index(drop=True)
    n = s["n"].to_numpy()
    mean_diff = (s["mx"] - s["my"]).to_numpy()
    sd_diff = np.sqrt(s["sdd"].to_numpy() / (n - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (s["sxy"] / np.sqrt(s["sxx"] * s["syy"])).to_numpy()
        icc_a1 = _icc_a1_two_raters(s)
    out = pd.DataFrame({
        "rater_a": d.raters[s["ra"].to_numpy(dtype=np.intp)],
        "rater_b": d.raters[s["rb"].to_numpy(dtype=np.intp)],
        "n_shared": n.astype(np.int64),
        "mean_difference": mean_diff,
        "sd_difference": sd_diff,
        "loa_low": mean_diff - LOA_MULTIPLIER * sd_diff,
        "loa_high": mean_diff + LOA_MULTIPLIER * sd_diff,
        "pearson_r": np.where(np.isfinite(r), r, np.nan),
        "icc_a1": np.where(np.isfinite(icc_a1), icc_a1, np.nan),
        "exact_agreement": s["exact"].to_numpy(),
    })
    return out[PAIR_COLUMNS]
