"""Inter-rater agreement of categorical and ordinal codes.

Observer-coded alliance items are ordinal codes (e.g. 1–7) given by two or three of several
coders per session, and a coder's rupture marker is a nominal 0/1 code. For such codings
this module gives, from a long table with one row per rating (the same argument style as
:func:`alliance.interrater.intraclass.icc`):

* :func:`krippendorff_alpha` — Krippendorff's alpha at the nominal, ordinal, interval or
  ratio level, through the ``krippendorff`` package; any number of coders per unit, so
  incomplete designs need no special treatment. Optional percentile bootstrap over units.
* :func:`cohen_kappa` — Cohen's (1960) kappa of two coders, unweighted or with linear or
  quadratic agreement weights (Cohen 1968), with the large-sample standard error of
  Fleiss, Cohen & Everitt (1969) and a z test under its null variance.
* :func:`pairwise_cohen_kappa` — the same for every pair of coders sharing enough targets.
* :func:`fleiss_kappa` — Fleiss' (1971) kappa, weighted for ordinal codes and generalised to
  targets coded by different numbers of coders as in Gwet (2014), with Gwet's standard error
  and, where it is defined, the null standard error of Fleiss, Nee & Landis (1979).
* :func:`coding_agreement_table` — a tidy summary of the above for one coding, without ids.

Conventions shared by all functions
-----------------------------------
*Categories.* ``categories`` fixes the set of codes a coder could give (e.g. ``range(1, 8)``);
a code outside it is an error. Without it the set is the codes observed.

*Weights.* Agreement weights are computed from the code values ``x``, as in Gwet's irrCAC
and SAS PROC FREQ: ``linear`` ``w = 1 - |x_i - x_j| / (x_max - x_min)``, ``quadratic``
``w = 1 - (x_i - x_j)**2 / (x_max - x_min)**2`` (Cicchetti & Allison 1971; Fleiss & Cohen
1973), the identity for unweighted kappa. For consecutive integer codes this is Cohen's
(1968) index-based weighting used by R ``psych::cohen.kappa``. Weighted kappa is unchanged
by rescaling the disagreement ``1 - w``, so categories that nobody used do not change it.

*Counting.* ``n_targets``, ``n_raters`` and ``n_ratings`` count what enters the statistic:
a target coded by a single coder carries no information on agreement and is left out
(Krippendorff: not pairable; Fleiss: dropped with a warning; Cohen: not shared by the pair).
Missing codes are dropped with a warning.

References
----------
Cohen, J. (1960). A coefficient of agreement for nominal scales. *Educational and
Psychological Measurement*, 20, 37–46.
Cohen, J. (1968). Weighted kappa: nominal scale agreement with provision for scaled
disagreement or partial credit. *Psychological Bulletin*, 70, 213–220.
Fleiss, J. L., Cohen, J., & Everitt, B. S. (1969). Large sample standard errors of kappa and
weighted kappa. *Psychological Bulletin*, 72, 323–327.
Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters. *Psychological
Bulletin*, 76, 378–382.
Fleiss, J. L., Nee, J. C. M., & Landis, J. R. (1979). Large sample variance of kappa in the
case of different sets of raters. *Psychological Bulletin*, 86, 974–977.
Cicchetti, D. V., & Allison, T. (1971). A new procedure for assessing reliability of
scoring EEG sleep recordings. *American Journal of EEG Technology*, 11, 101–110.
Fleiss, J. L., & Cohen, J. (1973). The equivalence of weighted kappa and the intraclass
correlation coefficient as measures of reliability. *Educational and Psychological
Measurement*, 33, 613–619.
Light, R. J. (1971). Measures of response agreement for qualitative data: some
generalizations and alternatives. *Psychological Bulletin*, 76, 365–377.
Gwet, K. L. (2014). *Handbook of inter-rater reliability* (4th ed.). Advanced Analytics.
Hayes, A. F., & Krippendorff, K. (2007). Answering the call for a standard reliability
measure for coding data. *Communication Methods and Measures*, 1, 77–89.
Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability. Annenberg School for
Communication, Departmental Papers 43.
Castro, S. (2017). Fast Krippendorff: fast computation of Krippendorff's alpha agreement
measure (Python package ``krippendorff``). https://github.com/pln-fing-udelar/fast-krippendorff
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats

from alliance.interrater.ratings import (
    CodedIds,
    check_long_table,
    drop_missing,
    drop_single_rated,
    id_codes,
    numeric_values,
    refuse_duplicate_pairs,
)
from alliance.errors import first_row, shown_value
from alliance.lmm.crossed import distinct_rows

__all__ = [
    "AGREEMENT_COLUMNS",
    "PAIRWISE_COLUMNS",
    "agreement_weights",
    "krippendorff_alpha",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "fleiss_kappa",
    "coding_agreement_table",
]

LEVELS = ("nominal", "ordinal", "interval", "ratio")
WEIGHTS = (None, "linear", "quadratic")

#: Columns of :func:`coding_agreement_table` (and keys of every single-statistic result).
AGREEMENT_COLUMNS = [
    "statistic", "metric", "weights", "estimate", "se", "ci_low", "ci_high", "ci_level",
    "ci_method", "se0", "z", "p", "test", "n_targets", "n_raters", "n_ratings", "n_categories",
    "n_pairs", "pair_min", "pair_max",
]

#: Columns of :func:`pairwise_cohen_kappa`.
PAIRWISE_COLUMNS = [
    "rater_1", "rater_2", "n_shared", "weights", "estimate", "se", "ci_low", "ci_high",
    "ci_level", "se0", "z", "p",
]

_CI_COHEN = "normal, Fleiss-Cohen-Everitt (1969) SE, clipped to [-1, 1]"
_TEST_COHEN = "z = estimate / se0, se0 under kappa = 0 (Fleiss-Cohen-Everitt 1969), normal"
_CI_FLEISS = "t(n_targets - 1), Gwet (2014) linearisation SE, clipped to [-1, 1]"
_TEST_FLEISS_FNL = "z = estimate / se0, se0 under kappa = 0 (Fleiss-Nee-Landis 1979), normal"
_TEST_FLEISS_GWET = "t = estimate / se (Gwet 2014), t(n_targets - 1); reported in column z"


# --------------------------------------------------------------------------------------------
# Input: a long table of codes, checked and turned into integer indices
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Codes(CodedIds):
    """Codes as integer indices: target, rater and category (``k``) of each rating."""

    k: np.ndarray
    categories: np.ndarray  # ordered by value when numeric
    numeric: bool

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def counts(self) -> np.ndarray:
        """Targets × categories: how many coders gave each code to each target."""
        out = np.zeros((self.n_targets, self.n_categories), dtype=np.int64)
        np.add.at(out, (self.t, self.k), 1)
        return out

    def wide(self) -> np.ndarray:
        """Targets × raters matrix of category indices, -1 where a rater did not code."""
        out = np.full((self.n_targets, self.n_raters), -1, dtype=np.int64)
        out[self.t, self.r] = self.k
        return out


def _numeric_codes(values: pd.Series, code: str, why: str) -> pd.Series:
    return pd.Series(numeric_values(values, code, f"numeric codes for {why}"), index=values.index)


def _category_set(values: pd.Series, categories, numeric: bool, code: str) -> np.ndarray:
    if categories is None:
        found = pd.unique(values)
        try:
            return np.sort(np.asarray(found, dtype=float if numeric else None))
        except TypeError:
            return np.asarray(found, dtype=object)
    cats = pd.Series(list(categories))
    if cats.isna().any() or cats.empty:
        raise ValueError(f"categories must be non-empty and without missing values, got "
                         f"{list(categories)!r}")
    if numeric:
        cats = _numeric_codes(cats, "categories", f"the codes of column {code!r}")
    if cats.duplicated().any():
        raise ValueError(f"categories has duplicate value(s) {cats[cats.duplicated()].tolist()}")
    return np.sort(cats.to_numpy(float)) if numeric else cats.to_numpy(dtype=object)


def _shown(value):
    """A code as the user wrote it: plain Python, whole numbers without ``.0``."""
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _category_index(values: pd.Series, cats: np.ndarray, code: str) -> np.ndarray:
    index = pd.Index(cats).get_indexer(values.to_numpy())
    outside = index < 0
    if outside.any():
        row = first_row(values, outside)
        raise ValueError(
            f"column {code!r} in row {row} has a code that is not among the categories "
            f"{[_shown(c) for c in cats]}{shown_value(values[outside].iloc[0])}"
        )
    return index


def _prepare(data: pd.DataFrame, target: str, rater: str, code: str, *, numeric: bool,
             categories=None, why: str = "") -> _Codes:
    """Check the long table of codes and turn it into integer indices."""
    check_long_table(data, {"target": target, "rater": rater, "code": code})
    data = drop_missing(data, code, noun="code")
    values = _numeric_codes(data[code], code, why) if numeric else data[code]
    refuse_duplicate_pairs(data, target, rater, verb="code")
    cats = _category_set(values, categories, numeric, code)
    k = _category_index(values, cats, code)
    t, targets = id_codes(data[target].to_numpy())
    r, raters = id_codes(data[rater].to_numpy())
    d = _Codes(t=t, r=r, k=k, targets=np.asarray(targets), raters=np.asarray(raters),
               categories=cats, numeric=numeric)
    _check_counts(d, rater, code)
    return d


def _check_counts(d: _Codes, rater: str, code: str) -> None:
    if d.n_raters < 2:
        raise ValueError(
            f"column {rater!r} has {d.n_raters} distinct rater(s) with codes; agreement needs "
            "at least 2 raters"
        )
    used = np.unique(d.k)
    if len(used) < 2:
        raise ValueError(
            f"no variation: all {len(d.k)} codes in column {code!r} equal "
            f"{_shown(d.categories[used[0]])!r}, so chance agreement is 1 and alpha and kappa "
            "(ratios of disagreements) are undefined"
        )


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_ci_level(ci_level: float) -> None:
    if not (isinstance(ci_level, (int, float)) and 0 < ci_level < 1):
        raise ValueError(f"ci_level must be a number between 0 and 1, got {ci_level!r}")


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def agreement_weights(categories, weights: str | None = None) -> np.ndarray:
    """Agreement weights between ordered numeric categories (1 on the diagonal).

    ``None`` gives the identity (unweighted kappa); ``"linear"`` gives
    ``1 - |x_i - x_j| / (x_max - x_min)`` and ``"quadratic"``
    ``1 - (x_i - x_j)**2 / (x_max - x_min)**2`` (Cohen 1968; Cicchetti & Allison 1971;
    Fleiss & Cohen 1973), from the category values as irrCAC and SAS do.

    Examples
    --------
    >>> agreement_weights([1, 2, 3], "linear").tolist()
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]
    """
    _check_choice("weights", weights, WEIGHTS)
    if weights is None:
        return np.eye(len(categories))
    x = np.asarray(categories, dtype=float)
    distance = np.abs(x[:, None] - x[None, :]) / (x.max() - x.min())
    return 1 - distance if weights == "linear" else 1 - distance**2


def _weights_name(weights: str | None) -> str:
    return "none" if weights is None else weights


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha
# --------------------------------------------------------------------------------------------
def _alpha(counts: np.ndarray, domain: np.ndarray, level: str) -> float:
    return float(krippendorff.alpha(value_counts=counts, value_domain=domain,
                                    level_of_measurement=level))


#: Most random unit indices held at once by the bootstrap (bounds its memory at any size).
_BOOT_CHUNK_DRAWS = 5_000_000


def _unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Each unit's share of the coincidence matrix, units × V × V (Krippendorff 2011).

    ``n_uc n_uk / (m_u - 1)`` off the diagonal and ``n_uc (n_uc - 1) / (m_u - 1)`` on it,
    ``m_u`` the unit's number of values (as the ``krippendorff`` package, a unit coded once
    contributes nothing).
    """
    pairs = counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * np.eye(counts.shape[1])
    return pairs / (np.maximum(counts.sum(axis=1), 2) - 1)[:, None, None]


def _squared_distances(domain: np.ndarray, level: str, marginals: np.ndarray) -> np.ndarray:
    """Difference function δ²_ck of Krippendorff (2011), V × V or, ordinal, replicates × V × V.

    The ordinal δ² depends on the value marginals ``n_c`` (rows of ``marginals``):
    ``(Σ_{g=c..k} n_g - (n_c + n_k) / 2)²``.
    """
    V = len(domain)
    if level == "nominal":
        return 1.0 - np.eye(V)
    if level == "ordinal":
        cumulative = np.concatenate([np.zeros((len(marginals), 1)), marginals.cumsum(axis=1)],
                                    axis=1)
        low = np.minimum.outer(np.arange(V), np.arange(V))
        high = np.maximum.outer(np.arange(V), np.arange(V))
        between = cumulative[:, high + 1] - cumulative[:, low]
        return (between - (marginals[:, :, None] + marginals[:, None, :]) / 2) ** 2
    x = np.asarray(domain, dtype=float)
    diff, total = np.subtract.outer(x, x), np.add.outer(x, x)
    if level == "interval":
        return diff**2
    return np.divide(diff, total, out=np.zeros((V, V)), where=total != 0) ** 2


def _alpha_of_weights(counts: np.ndarray, weights: np.ndarray, domain: np.ndarray,
                      level: str) -> np.ndarray:
    """Krippendorff's alpha with units weighted, one value per row of ``weights``.

    With ``weights[b, u]`` the number of times unit ``u`` (row of the units × values
    ``counts``) is in replicate ``b``, the coincidences are ``o = Σ_u w_u O_u``, the marginals
    ``n_c = Σ_k o_ck`` and ``n = Σ_c n_c``, ``D_o = Σ o_ck δ²_ck``,
    ``D_e = Σ n_c n_k δ²_ck / (n - 1)`` and ``alpha = 1 - D_o / D_e`` (Krippendorff 2011).
    Equals ``krippendorff.alpha`` of the table with each unit repeated ``w_u`` times (tested
    to 1e-12); NaN where the replicate has no variation (``D_e = 0``).
    """
    V = counts.shape[1]
    o = (weights @ _unit_coincidences(counts).reshape(len(counts), V * V)).reshape(-1, V, V)
    marginals = o.sum(axis=2)
    delta2 = _squared_distances(domain, level, marginals)
    observed = (o * delta2).sum(axis=(1, 2))
    chance = marginals[:, :, None] * marginals[:, None, :]
    expected = (chance * delta2).sum(axis=(1, 2)) / (marginals.sum(axis=1) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - observed / expected


def _bootstrap_alpha(counts: np.ndarray, domain: np.ndarray, level: str, n_boot: int,
                     seed) -> np.ndarray:
    """Alpha on units resampled with replacement (percentile bootstrap replicates).

    Replicate ``b`` draws ``len(counts)`` units with ``rng.integers``, as a loop calling
    ``krippendorff.alpha`` on ``counts[draws[b]]`` would; the draws become weights on the
    distinct count rows (pattern counts), and alpha is computed for a chunk of replicates at
    once from the weighted coincidences (:func:`_alpha_of_weights`). Cost is linear in units ×
    replicates for the draws only, memory bounded by ``_BOOT_CHUNK_DRAWS``.
    """
    rng = np.random.default_rng(seed)
    n_units = len(counts)
    first, pattern_of_unit = distinct_rows(counts)
    patterns = counts[first]
    n_patterns = len(patterns)
    chunk = max(1, _BOOT_CHUNK_DRAWS // n_units)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        # drawing the chunk's rows in turn gives the same stream as one (n_boot, n_units) call
        draws = rng.integers(0, n_units, size=(size, n_units))
        weights = np.empty((size, n_patterns))
        for row, drawn in enumerate(draws):
            weights[row] = np.bincount(pattern_of_unit[drawn], minlength=n_patterns)
        out[start:start + size] = _alpha_of_weights(patterns, weights, domain, level)
    undefined = ~np.isfinite(out)
    if undefined.any():
        warnings.warn(f"{int(undefined.sum())} of {n_boot} bootstrap replicates had no variation"
                      " (alpha undefined) and were left out of the interval", stacklevel=3)
    return out[~undefined]


def _alpha_from_codes(d: _Codes, level: str, n_boot: int, ci_level: float, seed,
                      code: str) -> dict:
    counts = d.counts()
    per_unit = counts.sum(axis=1)
    pairable = counts[per_unit >= 2]
    if len(pairable) == 0:
        raise ValueError(
            f"no target is coded by two or more raters in column {code!r}: nothing is pairable"
        )
    if np.count_nonzero(pairable.sum(axis=0)) < 2:
        raise ValueError(
            f"no variation: all pairable codes in column {code!r} are equal, so the expected "
            "disagreement is 0 and alpha is undefined"
        )
    domain = d.categories if d.numeric else np.arange(d.n_categories)
    out = _result("krippendorff_alpha", level=level, estimate=_alpha(pairable, domain, level))
    ratings_used = per_unit >= 2
    raters_used = np.unique(d.r[ratings_used[d.t]])
    out.update(n_targets=len(pairable), n_raters=len(raters_used),
               n_ratings=int(pairable.sum()), n_categories=d.n_categories,
               n_units_pairable=len(pairable), n_units_single=int((per_unit == 1).sum()),
               n_boot=int(n_boot))
    if n_boot > 0:
        reps = _bootstrap_alpha(pairable, domain, level, n_boot, seed)
        tail = (1 - ci_level) / 2
        out.update(se=float(np.std(reps, ddof=1)), ci_level=ci_level,
                   ci_low=float(np.quantile(reps, tail)),
                   ci_high=float(np.quantile(reps, 1 - tail)),
                   ci_method=f"percentile bootstrap over targets, {n_boot} replicates")
    return out


def krippendorff_alpha(data: pd.DataFrame, target: str, rater: str, value: str, *,
                       level: str = "interval", categories=None, n_boot: int = 0,
                       ci_level: float = 0.95, seed: int | np.random.Generator | None = 0
                       ) -> dict:
    """Krippendorff's alpha of codes from any number of coders, missing codes allowed.

    ``alpha = 1 - D_o / D_e``, observed over expected disagreement from the coincidence
    matrix of pairable values (Krippendorff 2011), computed by the ``krippendorff`` package
    (Castro, ``krippendorff.alpha``) from the units × values count matrix. Units (targets)
    coded by one coder are not pairable and do not enter; ``n_units_pairable`` counts those
    that do.

    The optional interval is a **unit-resampling percentile bootstrap**: targets (with all
    their codes) are drawn with replacement ``n_boot`` times with
    ``np.random.default_rng(seed)`` and alpha is recomputed; the interval is the
    ``(1 - ci_level) / 2`` and ``(1 + ci_level) / 2`` quantiles and ``se`` the standard
    deviation of the replicates. It keeps the codes of a unit together, unlike the bootstrap of
    Hayes & Krippendorff (2007), which resamples pairs of values from the coincidence matrix.
    The replicates are computed together from the coincidence matrix weighted by how often
    each unit was drawn (Krippendorff 2011), not by a call to the package per replicate, so
    that 1000 replicates on 100,000 targets take seconds.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per code (target, rater, value).
    target, rater, value : str
        Column names: the coded unit (e.g. a client × session), the coder, the code.
    level : {"nominal", "ordinal", "interval", "ratio"}, default "interval"
        Level of measurement (difference function). All but nominal need numeric codes.
    categories : sequence, optional
        The codes a coder could give; a code outside them is an error. Categories nobody used
        do not change alpha.
    n_boot : int, default 0
        Bootstrap replicates for ``se`` and the interval; 0 gives the estimate only.
    ci_level : float, default 0.95
    seed : int, Generator or None, default 0

    Returns
    -------
    dict
        Keys :data:`AGREEMENT_COLUMNS` (``se0``, ``z``, ``p`` are NaN; ``se`` and the
        interval NaN without bootstrap), plus ``n_units_pairable`` (= ``n_targets``),
        ``n_units_single`` (units coded once, left out) and ``n_boot``. ``n_ratings`` is
        Krippendorff's number of pairable values ``n..``.

    Raises
    ------
    ValueError
        Missing columns, unknown level, non-numeric codes for a non-nominal level, a code
        outside ``categories``, duplicate target × rater pairs, fewer than 2 raters, no unit
        coded twice, or no variation in the codes.

    Notes
    -----
    Tested against the published example of Krippendorff (2011): 4 observers × 12 units with
    missing codes, alpha = .743 (nominal), .815 (ordinal), .849 (interval), .797 (ratio).
    The bootstrap replicates are tested against ``krippendorff.alpha`` of the resampled tables
    (1e-12, all four levels).

    Examples
    --------
    >>> import pandas as pd
    >>> codes = pd.DataFrame({"unit": [1, 1, 2, 2, 3, 3, 4],
    ...                       "coder": ["a", "b", "a", "b", "a", "b", "a"],
    ...                       "code": [1, 1, 2, 3, 3, 3, 2]})
    >>> res = krippendorff_alpha(codes, "unit", "coder", "code", level="interval")
    >>> round(res["estimate"], 4), res["n_units_pairable"]
    (0.8276, 3)
    """
    _check_choice("level", level, LEVELS)
    _check_ci_level(ci_level)
    _check_n_boot(n_boot)
    d = _prepare(data, target, rater, value, numeric=level != "nominal", categories=categories,
                 why=f"Krippendorff's alpha at the {level} level")
    return _alpha_from_codes(d, level, int(n_boot), ci_level, seed, value)


def _check_n_boot(n_boot: int) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0) or n_boot == 1:
        raise ValueError(f"n_boot must be 0 or an integer >= 2, got {n_boot!r}")


def _result(statistic: str, *, level: str = "", weights: str = "", estimate: float) -> dict:
    out = dict.fromkeys(AGREEMENT_COLUMNS, np.nan)
    out.update(statistic=statistic, metric=level, weights=weights, estimate=estimate,
               ci_method="", test="", n_pairs=np.nan)
    return out


# --------------------------------------------------------------------------------------------
# Cohen's kappa: two coders
# --------------------------------------------------------------------------------------------
def _cohen_from_table(table: np.ndarray, W: np.ndarray, ci_level: float) -> dict:
    """Kappa, its Fleiss-Cohen-Everitt (1969) SE and null SE from a q × q count table.

    Rows are the first coder, columns the second. Returns NaNs when chance agreement is 1
    (both coders used one and the same code throughout): kappa is then 0/0.
    """
    n = table.sum()
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    chance = np.outer(rows, cols)
    po, pe = float((W * p).sum()), float((W * chance).sum())
    if np.isclose(pe, 1.0, rtol=0, atol=1e-12):
        return dict(estimate=np.nan, se=np.nan, ci_low=np.nan, ci_high=np.nan,
                    ci_level=ci_level, se0=np.nan, z=np.nan, p=np.nan)
    kappa = (po - pe) / (1 - pe)
    # FCE 1969: mean weights of row i over the second coder's margin and of column j over
    # the first coder's margin
    w_row, w_col = W @ cols, W.T @ rows
    both = w_row[:, None] + w_col[None, :]
    var = ((p * (W - both * (1 - kappa)) ** 2).sum() - (kappa - pe * (1 - kappa)) ** 2) \
        / (n * (1 - pe) ** 2)
    var0 = ((chance * (W - both) ** 2).sum() - pe**2) / (n * (1 - pe) ** 2)
    se, se0 = float(np.sqrt(max(var, 0.0))), float(np.sqrt(max(var0, 0.0)))
    half = stats.norm.ppf((1 + ci_level) / 2) * se
    z = kappa / se0 if se0 > 0 else np.nan
    return dict(estimate=float(kappa), se=se, ci_low=float(max(kappa - half, -1.0)),
                ci_high=float(min(kappa + half, 1.0)), ci_level=ci_level, se0=se0, z=float(z),
                p=float(2 * stats.norm.sf(abs(z))))


def _pair_table(wide: np.ndarray, i: int, j: int, q: int) -> tuple[np.ndarray, int]:
    shared = (wide[:, i] >= 0) & (wide[:, j] >= 0)
    cells = wide[shared, i] * q + wide[shared, j]
    return np.bincount(cells, minlength=q * q).reshape(q, q), int(shared.sum())


def cohen_kappa(data: pd.DataFrame, target: str, rater: str, code: str, *,
                weights: str | None = None, categories=None, ci_level: float = 0.95) -> dict:
    """Cohen's kappa of exactly two coders, unweighted or weighted, with SE, CI and z test.

    ``kappa = (p_o - p_e) / (1 - p_e)`` with observed and chance agreement weighted by
    :func:`agreement_weights` (Cohen 1960, 1968). ``se`` is the large-sample standard error of
    Fleiss, Cohen & Everitt (1969), the one R ``psych::cohen.kappa`` and SAS PROC FREQ report,
    and gives the normal interval (clipped to [-1, 1] as psych does); ``se0`` is their
    standard error under kappa = 0, which gives ``z = kappa / se0`` and the two-sided ``p``
    (as SAS and R ``irr::kappa2``).

    Parameters
    ----------
    data : DataFrame
        Long table, one row per code, with exactly two distinct raters. Targets coded by only
        one of them are dropped with a warning giving their number.
    target, rater, code : str
        Column names.
    weights : {None, "linear", "quadratic"}, default None
        Agreement weights; weighted kappa needs numeric codes.
    categories : sequence, optional
        The codes a coder could give (e.g. ``range(1, 8)``); a code outside is an error.
    ci_level : float, default 0.95

    Returns
    -------
    dict
        Keys :data:`AGREEMENT_COLUMNS` plus ``n_dropped`` (targets coded by one rater only).

    Raises
    ------
    ValueError
        Missing columns, non-numeric codes with weights, a code outside ``categories``,
        duplicate target × rater pairs, not exactly two raters (use
        :func:`pairwise_cohen_kappa`), no shared target, or no variation.

    Notes
    -----
    Tested against R ``psych::cohen.kappa`` 2.2.9 (estimates; unweighted SE and interval) and
    a SAS PROC FREQ printout (kappa, ASE, interval, null ASE, z and p, unweighted and
    linear). psych's *weighted* variance departs from Fleiss, Cohen & Everitt (1969): it
    uses ``p_i. * sum_j w_ij`` where the formula has ``sum_j w_ij p_.j``; here the published
    formula is used, which agrees with SAS.

    Examples
    --------
    >>> import pandas as pd
    >>> codes = pd.DataFrame({"unit": [1, 1, 2, 2, 3, 3, 4, 4],
    ...                       "coder": ["a", "b"] * 4,
    ...                       "code": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> round(cohen_kappa(codes, "unit", "coder", "code")["estimate"], 4)
    0.5
    """
    _check_choice("weights", weights, WEIGHTS)
    _check_ci_level(ci_level)
    d = _prepare(data, target, rater, code, numeric=weights is not None, categories=categories,
                 why=f"{weights} weights")
    if d.n_raters != 2:
        raise ValueError(
            f"cohen_kappa needs exactly 2 raters in column {rater!r}, found {d.n_raters}; "
            "use pairwise_cohen_kappa or fleiss_kappa for more"
        )
    wide = d.wide()
    table, n_shared = _pair_table(wide, 0, 1, d.n_categories)
    dropped = d.n_targets - n_shared
    if dropped:
        warnings.warn(f"{dropped} target(s) in column {target!r} coded by one of the two raters "
                      "only: dropped", stacklevel=2)
    if n_shared == 0:
        raise ValueError(f"the two raters in column {rater!r} share no target in column "
                         f"{target!r}")
    res = _cohen_from_table(table, agreement_weights(d.categories, weights), ci_level)
    if not np.isfinite(res["estimate"]):
        raise ValueError(
            f"no variation: both raters gave the same single code in column {code!r} to all "
            f"{n_shared} shared targets, so chance agreement is 1 and kappa is undefined"
        )
    out = _result("cohen_kappa", weights=_weights_name(weights), estimate=res["estimate"])
    out.update(res, ci_method=_CI_COHEN, test=_TEST_COHEN, n_targets=n_shared, n_raters=2,
               n_ratings=2 * n_shared, n_categories=d.n_categories, n_pairs=1,
               pair_min=res["estimate"], pair_max=res["estimate"], n_dropped=dropped)
    return out


def _pairwise_from_codes(d: _Codes, weights, min_shared: int, ci_level: float,
                         rater: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Kappa of each rater pair sharing ``min_shared`` targets; also the wide mask used."""
    wide = d.wide()
    W = agreement_weights(d.categories, weights)
    used = np.zeros(wide.shape, dtype=bool)
    rows, too_few = [], 0
    for i, j in combinations(range(d.n_raters), 2):
        table, n_shared = _pair_table(wide, i, j, d.n_categories)
        if n_shared == 0:
            continue
        if n_shared < min_shared:
            too_few += 1
            continue
        res = _cohen_from_table(table, W, ci_level)
        rows.append(dict(rater_1=d.raters[i], rater_2=d.raters[j], n_shared=n_shared,
                         weights=_weights_name(weights), **res))
        shared = (wide[:, i] >= 0) & (wide[:, j] >= 0)
        used[shared, i] = used[shared, j] = True
    if too_few:
        warnings.warn(f"{too_few} rater pair(s) in column {rater!r} share fewer than "
                      f"{min_shared} targets: left out", stacklevel=3)
    out = pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
    undefined = out["estimate"].isna()
    if undefined.any():
        warnings.warn(f"{int(undefined.sum())} rater pair(s) gave one and the same code to all "
                      "their shared targets: kappa undefined (NaN)", stacklevel=3)
    return out, used


def _check_min_shared(min_shared: int) -> None:
    if not (isinstance(min_shared, (int, np.integer)) and min_shared >= 1):
        raise ValueError(f"min_shared must be an integer >= 1, got {min_shared!r}")


def pairwise_cohen_kappa(data: pd.DataFrame, target: str, rater: str, code: str, *,
                         weights: str | None = None, categories=None, min_shared: int = 10,
                         ci_level: float = 0.95) -> pd.DataFrame:
    """Cohen's kappa of every pair of coders that share at least ``min_shared`` targets.

    For designs where several coders each code part of the sessions. Each pair's kappa, SE,
    interval and z test are those of :func:`cohen_kappa` on the targets both coded; all pairs
    use the same category set (``categories`` or every code observed), so weighted kappas
    are comparable between pairs. Pairs sharing fewer targets are left out with a warning.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per code.
    target, rater, code : str
        Column names.
    weights : {None, "linear", "quadratic"}, default None
    categories : sequence, optional
    min_shared : int, default 10
        Fewest shared targets for a pair to be reported (a convention, not a published rule:
        kappa from a handful of targets is too unstable to read).
    ci_level : float, default 0.95

    Returns
    -------
    DataFrame
        Columns :data:`PAIRWISE_COLUMNS`, one row per pair, ``rater_1`` before ``rater_2`` in
        sorted order. The rater ids are those of the input (pass pseudonyms). A pair whose
        coders gave one and the same code to all shared targets has NaN kappa.

    Raises
    ------
    ValueError
        As :func:`cohen_kappa`, and for ``min_shared`` below 1.

    Notes
    -----
    Tested pair by pair against R ``psych::cohen.kappa`` on an incomplete design (5 coders,
    2–3 per session).
    """
    _check_choice("weights", weights, WEIGHTS)
    _check_ci_level(ci_level)
    _check_min_shared(min_shared)
    d = _prepare(data, target, rater, code, numeric=weights is not None, categories=categories,
                 why=f"{weights} weights")
    return _pairwise_from_codes(d, weights, int(min_shared), ci_level, rater)[0]


def _mean_pairwise(d: _Codes, weights, min_shared: int, ci_level: float, rater: str) -> dict:
    """One row summarising the pairwise kappas: the kappa itself when there is one pair."""
    pairs, used = _pairwise_from_codes(d, weights, min_shared, ci_level, rater)
    kappas = pairs["estimate"].dropna()
    if len(pairs) == 1:
        out = _result("cohen_kappa", weights=_weights_name(weights),
                      estimate=pairs["estimate"].iloc[0])
        out.update(pairs.iloc[0][["se", "ci_low", "ci_high", "ci_level", "se0", "z", "p"]],
                   ci_method=_CI_COHEN, test=_TEST_COHEN)
    else:
        out = _result("cohen_kappa_mean_pairs", weights=_weights_name(weights),
                      estimate=float(kappas.mean()) if len(kappas) else np.nan)
    out.update(n_targets=int(used.any(axis=1).sum()), n_raters=int(used.any(axis=0).sum()),
               n_ratings=int(used.sum()), n_categories=d.n_categories, n_pairs=len(kappas),
               pair_min=float(kappas.min()) if len(kappas) else np.nan,
               pair_max=float(kappas.max()) if len(kappas) else np.nan)
    return out


# --------------------------------------------------------------------------------------------
# Fleiss' kappa: many coders, generalised and weighted after Gwet (2014)
# --------------------------------------------------------------------------------------------
def _fleiss_from_counts(counts: np.ndarray, W: np.ndarray, ci_level: float) -> dict:
    """Fleiss' kappa (Gwet's weighted, generalised form) from targets × categories counts.

    Every target has at least two codes. With identity weights and equal counts per target
    this is Fleiss (1971).
    """
    n = len(counts)
    per_target = counts.sum(axis=1)
    shares = counts / per_target[:, None]
    # weighted agreement of target i: each code's count against its weighted neighbours
    agree_i = (counts * (counts @ W.T - 1)).sum(axis=1) / (per_target * (per_target - 1))
    pi = shares.mean(axis=0)
    pa, pe = float(agree_i.mean()), float(pi @ W @ pi)
    if np.isclose(pe, 1.0, rtol=0, atol=1e-12):
        raise ValueError("no variation: every code is the same, so chance agreement is 1 and "
                         "Fleiss' kappa is undefined")
    kappa = (pa - pe) / (1 - pe)
    se = _gwet_se(agree_i, shares, pi, W, pa, pe, kappa)
    half = stats.t.ppf((1 + ci_level) / 2, n - 1) * se
    return dict(estimate=float(kappa), se=se, ci_low=float(max(kappa - half, -1.0)),
                ci_high=float(min(kappa + half, 1.0)), ci_level=ci_level, pa=pa, pe=pe)


def _gwet_se(agree_i, shares, pi, W, pa, pe, kappa) -> float:
    """Gwet (2014) linearisation SE of the generalised Fleiss kappa (as irrCAC)."""
    n = len(agree_i)
    kappa_i = (agree_i - pe) / (1 - pe)
    chance_i = shares @ ((W @ pi + W.T @ pi) / 2)
    linear_i = kappa_i - 2 * (1 - kappa) * (chance_i - pe) / (1 - pe)
    return float(np.sqrt(((linear_i - kappa) ** 2).sum() / (n * (n - 1))))


def _fleiss_nee_landis_se0(counts: np.ndarray) -> float:
    """SE of unweighted Fleiss' kappa under kappa = 0 (Fleiss, Nee & Landis 1979).

    Defined for m codes per target; ``p_j`` is the share of all codes in category j.
    """
    n, m = len(counts), int(counts[0].sum())
    p = counts.sum(axis=0) / (n * m)
    pq = p * (1 - p)
    var0 = 2 * (pq.sum() ** 2 - (pq * (1 - 2 * p)).sum()) / (pq.sum() ** 2 * n * m * (m - 1))
    return float(np.sqrt(var0))


def _fleiss_from_codes(d: _Codes, weights, ci_level: float, target: str) -> dict:
    d = drop_single_rated(d, target, "Fleiss' kappa", values="k", verb="coded")
    if d.n_targets < 2:
        raise ValueError(f"Fleiss' kappa needs at least 2 targets coded by two or more raters "
                         f"in column {target!r}, found {d.n_targets}")
    counts = d.counts()
    res = _fleiss_from_counts(counts, agreement_weights(d.categories, weights), ci_level)
    out = _result("fleiss_kappa", weights=_weights_name(weights), estimate=res["estimate"])
    out.update(res, ci_method=_CI_FLEISS, n_targets=d.n_targets, n_raters=d.n_raters,
               n_ratings=len(d.k), n_categories=d.n_categories)
    per_target = counts.sum(axis=1)
    if weights is None and np.all(per_target == per_target[0]):
        se0 = _fleiss_nee_landis_se0(counts)
        z = res["estimate"] / se0
        out.update(se0=se0, z=z, p=float(2 * stats.norm.sf(abs(z))), test=_TEST_FLEISS_FNL)
    else:
        t = res["estimate"] / res["se"] if res["se"] > 0 else np.nan
        out.update(z=t, p=float(2 * stats.t.sf(abs(t), d.n_targets - 1)), test=_TEST_FLEISS_GWET)
    return out


def fleiss_kappa(data: pd.DataFrame, target: str, rater: str, code: str, *,
                 weights: str | None = None, categories=None, ci_level: float = 0.95) -> dict:
    """Fleiss' kappa for many coders, weighted for ordinal codes, any number of coders per target.

    Chance-corrected agreement of all pairs of codes within a target, the coders of each
    target being any from a pool (Fleiss 1971). Computed in Gwet's (2014, ch. 2–3) form,
    which allows weights and a number of codes ``r_i >= 2`` that differs between targets:
    ``p_a`` is the mean over targets of
    ``sum_k r_ik (r*_ik - 1) / (r_i (r_i - 1))`` with ``r*_ik = sum_l w_kl r_il``, and
    ``p_e = sum_kl w_kl pi_k pi_l`` with ``pi_k`` the mean over targets of ``r_ik / r_i``.
    With identity weights and the same number of coders for every target this is exactly
    Fleiss' (1971) kappa. Targets coded once are dropped with a warning.

    ``se`` is Gwet's (2014) linearisation standard error (the one of irrCAC), and the
    interval uses a t distribution with ``n_targets - 1`` df, as Gwet does. For unweighted
    kappa with equal numbers of coders per target, ``se0`` is the standard error under
    kappa = 0 of Fleiss, Nee & Landis (1979) and ``z = kappa / se0`` with a normal ``p`` (as R
    ``irr::kappam.fleiss``); otherwise no null variance is published, ``se0`` is NaN and
    ``z`` holds Gwet's ``t = kappa / se`` with ``p`` from t(n_targets - 1) (column ``test``
    says which).

    Parameters
    ----------
    data : DataFrame
        Long table, one row per code.
    target, rater, code : str
        Column names. Rater identity is not used beyond checking duplicates.
    weights : {None, "linear", "quadratic"}, default None
        Agreement weights (:func:`agreement_weights`); weighted kappa needs numeric codes.
    categories : sequence, optional
    ci_level : float, default 0.95

    Returns
    -------
    dict
        Keys :data:`AGREEMENT_COLUMNS` plus ``pa`` and ``pe`` (observed and chance
        agreement).

    Raises
    ------
    ValueError
        Missing columns, non-numeric codes with weights, a code outside ``categories``,
        duplicate target × rater pairs, fewer than 2 raters or 2 targets coded twice, no
        variation.

    Notes
    -----
    Tested against Fleiss' (1971) example (30 patients × 6 psychiatrists, kappa = .430, and
    irr's z = 17.65), the 10 × 14 worked example (kappa = .210), statsmodels'
    ``fleiss_kappa``, and irrCAC 0.4.4 (Gwet's package) for weighted kappa and SE on an
    incomplete design.
    """
    _check_choice("weights", weights, WEIGHTS)
    _check_ci_level(ci_level)
    d = _prepare(data, target, rater, code, numeric=weights is not None, categories=categories,
                 why=f"{weights} weights")
    return _fleiss_from_codes(d, weights, ci_level, target)


# --------------------------------------------------------------------------------------------
# Summary table for one coding
# --------------------------------------------------------------------------------------------
def coding_agreement_table(data: pd.DataFrame, target: str, rater: str, code: str, *,
                           level: str = "ordinal", categories=None, ci_level: float = 0.95,
                           n_boot: int = 1000, seed: int | np.random.Generator | None = 0,
                           min_shared: int = 10) -> pd.DataFrame:
    """Agreement statistics of one coding (an observer item or a categorical code), tidy.

    Rows, for ``level="ordinal"``: Krippendorff's alpha, ordinal and interval; Fleiss' kappa
    with quadratic weights; Cohen's kappa with quadratic weights. For ``level="nominal"``
    (e.g. a rupture marker): Krippendorff's alpha, nominal; unweighted Fleiss' and Cohen's
    kappa.

    The Cohen row is ``cohen_kappa`` with SE, interval and test when the data hold one pair of
    coders (sharing at least ``min_shared`` targets); with more pairs it is
    ``cohen_kappa_mean_pairs``: the unweighted mean of the pairwise kappas (Light's 1971 kappa
    for complete designs, extended to the pairs that share ``min_shared`` targets), with
    ``n_pairs``, ``pair_min`` and ``pair_max`` and no SE (the pairs share targets and coders).
    Per-pair values, which carry rater ids, come from :func:`pairwise_cohen_kappa`.

    Parameters
    ----------
    data : DataFrame
        Long table, one row per code.
    target, rater, code : str
        Column names.
    level : {"ordinal", "nominal"}, default "ordinal"
        Ordinal codes must be numeric.
    categories : sequence, optional
        The codes a coder could give (e.g. ``range(1, 8)``).
    ci_level : float, default 0.95
    n_boot, seed
        Bootstrap replicates and seed for the alpha intervals (both alpha rows use the same
        resampled targets).
    min_shared : int, default 10
        Fewest shared targets for a coder pair to enter the Cohen row.

    Returns
    -------
    DataFrame
        Columns :data:`AGREEMENT_COLUMNS`, one row per statistic; no target or rater ids.

    Raises
    ------
    ValueError
        As the single statistics.
    """
    _check_choice("level", level, ("ordinal", "nominal"))
    _check_ci_level(ci_level)
    _check_n_boot(n_boot)
    _check_min_shared(min_shared)
    d = _prepare(data, target, rater, code, numeric=level == "ordinal", categories=categories,
                 why="ordinal codes")
    weights = "quadratic" if level == "ordinal" else None
    alpha_levels = ("ordinal", "interval") if level == "ordinal" else ("nominal",)
    rows = [_alpha_from_codes(d, lev, int(n_boot), ci_level, seed, code) for lev in alpha_levels]
    rows.append(_fleiss_from_codes(d, weights, ci_level, target))
    rows.append(_mean_pairwise(d, weights, int(min_shared), ci_level, rater))
    return pd.DataFrame([{c: row[c] for c in AGREEMENT_COLUMNS} for row in rows],
                        columns=AGREEMENT_COLUMNS)
