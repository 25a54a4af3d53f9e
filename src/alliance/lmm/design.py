"""Model matrices for :mod:`alliance.lmm`: fixed-effects matrix with R's treatment contrasts,
random-effects terms in lme4's order, grouping factors, and the nesting structure.

The random-effects structure is stored per *grouping factor* rather than per term: all terms
that share a factor (e.g. the two terms of ``(x || g)``) form one block per level of that
factor, with a block-diagonal relative covariance factor. Grouping factors are arranged in
"levels" of the blocked Cholesky factorisation (finest first). A run of factors in which each
is nested in the next gives block-diagonal blocks at every level; any factors left after that
run (a crossed design, e.g. targets x raters) are gathered into one dense block. A crossed
design too large for that block (``MAX_DENSE``) keeps the whole sparse Z instead
(:class:`SparseDesign`, factorised by :mod:`alliance.lmm.sparse`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .formula import ParsedFormula, RandomTerm

#: largest dense block (summed levels x terms of the crossed factors) of the blocked
#: factorisation; larger crossed designs go to the sparse path (:mod:`alliance.lmm.sparse`)
MAX_DENSE = 3000
#: largest number of stored entries in a dense cross block to the dense level (larger: sparse path)
MAX_DENSE_CROSS = 60_000_000
#: send every design through the sparse path (for cross-checks and tests)
FORCE_SPARSE = False


# --------------------------------------------------------------------------- fixed effects
@dataclass
class FixedSpec:
    """How to rebuild the fixed-effects matrix on new data (variables, levels, terms)."""

    intercept: bool
    terms: list[tuple[str, ...]]
    levels: dict[str, list]  # categorical variable -> its levels (first = reference)
    coding: list[list[str]]  # per term, per variable: 'numeric' | 'contrast' | 'full'
    names: list[str] = field(default_factory=list)
    contrasts: dict[str, str] = field(default_factory=dict)  # categorical variable -> kind
    keep: list[int] | None = None  # columns kept after dropping aliased ones (None: all)
    dropped: list[str] = field(default_factory=list)  # aliased columns dropped, as lme4
    matrix_cols: dict[str, list[str]] = field(default_factory=dict)  # poly(x, k) -> its columns


#: contrast kinds of the ``contrasts=`` argument, as R's ``contr.*`` functions
CONTRASTS = ("treatment", "sum", "helmert", "poly")


def contrast_matrix(kind: str, n: int) -> np.ndarray:
    """R's ``contr.<kind>(n)``: an ``n x (n - 1)`` coding matrix, rows in level order."""
    if kind == "treatment":
        return np.eye(n)[:, 1:]
    if kind == "sum":
        return np.vstack([np.eye(n - 1), -np.ones((1, n - 1))])
    if kind == "helmert":
        m = np.zeros((n, n - 1))
        for j in range(n - 1):
            m[: j + 1, j] = -1.0
            m[j + 1, j] = j + 1
        return m
    if kind == "poly":
        return _contr_poly(n)
    raise ValueError(f"unknown contrast {kind!r}; expected one of {list(CONTRASTS)}")


def _contr_poly(n: int) -> np.ndarray:
    """R's ``contr.poly(n)``: orthonormal polynomials in the scores 1..n (R's make.poly).

    ``Q diag(R)`` of the QR decomposition of the Vandermonde matrix does not depend on the
    sign convention of the QR routine, so the columns come out with R's signs.
    """
    x = np.arange(1, n + 1, dtype=float)
    x -= x.mean()
    vander = x[:, None] ** np.arange(n)[None, :]
    q, r = np.linalg.qr(vander)
    z = q * np.diag(r)[None, :]
    z /= np.sqrt((z**2).sum(axis=0))
    return z[:, 1:]


def contrast_suffixes(kind: str, levels: list) -> list[str]:
    """R's column-name suffixes: level labels (treatment), ``.L .Q .C ^4`` (poly), 1..n-1."""
    n = len(levels)
    if kind == "treatment":
        return [_r_label(lev) for lev in levels[1:]]
    if kind == "poly":
        return [".L", ".Q", ".C"][: n - 1] + [f"^{k}" for k in range(4, n)]
    return [str(k) for k in range(1, n)]


def default_contrast(s: pd.Series) -> str:
    """R's ``options(contrasts = c("contr.treatment", "contr.poly"))``: poly when ordered."""
    if isinstance(s.dtype, pd.CategoricalDtype) and s.dtype.ordered:
        return "poly"
    return "treatment"


def resolve_contrasts(data: pd.DataFrame, categorical: list[str], contrasts) -> dict[str, str]:
    """The contrast kind of every categorical fixed-effect variable (defaults as R's)."""
    given = dict(contrasts or {})
    bad = {k: v for k, v in given.items() if v not in CONTRASTS}
    if bad:
        raise ValueError(f"contrasts must be one of {list(CONTRASTS)}; got {bad}")
    unused = sorted(set(given) - set(categorical))
    if unused:
        raise ValueError(
            f"contrasts given for {unused}, which are not categorical fixed-effect variables of "
            f"the model (categorical ones: {categorical})"
        )
    return {v: given.get(v, default_contrast(data[v])) for v in categorical}


def is_categorical(s: pd.Series) -> bool:
    """Categorical as R's model.matrix sees it: anything not numeric (logicals included)."""
    return not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


_is_categorical = is_categorical


def _levels_of(s: pd.Series) -> list:
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique())
        return [c for c in s.cat.categories if c in present]
    return sorted(s.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


def fixed_spec(data: pd.DataFrame, parsed: ParsedFormula, contrasts=None,
               matrix_cols: dict[str, list[str]] | None = None) -> FixedSpec:
    """Decide the coding of every fixed term as R's ``model.matrix`` does.

    A categorical variable in a term gets contrasts when the term without it is in the model
    (the intercept counting as the empty term), otherwise full indicator coding. Contrasts
    are R's defaults (``contr.treatment`` for unordered, ``contr.poly`` for ordered
    categoricals) unless ``contrasts`` names another kind for the variable.
    """
    levels: dict[str, list] = {}
    matrix_cols = dict(matrix_cols or {})
    for term in parsed.fixed_terms:
        for var in term:
            if var not in levels and var not in matrix_cols and _is_categorical(data[var]):
                levels[var] = _levels_of(data[var])
                _require_two_levels(var, levels[var], len(data))
    present = {frozenset(t) for t in parsed.fixed_terms}
    if parsed.intercept:
        present.add(frozenset())
    coding = []
    for term in parsed.fixed_terms:
        codes = []
        for var in term:
            if var not in levels:
                codes.append("numeric")
            else:
                margin = frozenset(term) - {var}
                codes.append("contrast" if margin in present else "full")
        coding.append(codes)
    kinds = resolve_contrasts(data, list(levels), contrasts)
    spec = FixedSpec(parsed.intercept, list(parsed.fixed_terms), levels, coding, contrasts=kinds,
                     matrix_cols=matrix_cols)
    spec.names = fixed_matrix(spec, data)[1]
    return spec


def _require_two_levels(var: str, levels: list, n_rows: int) -> None:
    """Refuse a categorical fixed effect with fewer than two levels, as R's ``model.matrix``.

    Its contrasts would have no column, so the term would vanish from the model unnoticed
    (R: "contrasts can be applied only to factors with 2 or more levels").
    """
    if len(levels) < 2:
        shown = f" ({_r_label(levels[0])!r})" if levels else ""
        raise ValueError(
            f"categorical column {var!r} has {len(levels)} level{shown} in the {n_rows} row(s) "
            f"with complete model variables; a categorical fixed effect needs 2 or more levels "
            f"(R: contrasts can be applied only to factors with 2 or more levels); drop {var!r} "
            f"from the formula"
        )


def _variable_columns(data: pd.DataFrame, var: str, code: str, spec: FixedSpec):
    if var in spec.matrix_cols:
        names = spec.matrix_cols[var]
        return [data[c].to_numpy(dtype=float) for c in names], names
    values = data[var]
    if code == "numeric":
        if _is_categorical(values):
            raise ValueError(f"column {var!r} must be numeric (it was numeric when the model was fitted)")
        return [values.to_numpy(dtype=float)], [var]
    levels = spec.levels[var]
    unknown = set(values.dropna().unique()) - set(levels)
    if unknown:
        raise ValueError(f"column {var!r} has levels {sorted(map(str, unknown))} not seen when fitting; expected one of {levels}")
    index = pd.Index(levels).get_indexer(values)
    if code == "full":
        return [(index == k).astype(float) for k in range(len(levels))], [f"{var}{_r_label(lev)}" for lev in levels]
    kind = spec.contrasts.get(var, "treatment")
    coded = np.where((index >= 0)[:, None], contrast_matrix(kind, len(levels))[index], np.nan)
    return list(coded.T), [f"{var}{sfx}" for sfx in contrast_suffixes(kind, levels)]


def _r_label(level) -> str:
    """Level as R prints it in a coefficient name (TRUE/FALSE for logicals)."""
    if isinstance(level, (bool, np.bool_)):
        return "TRUE" if level else "FALSE"
    return str(level)


def fixed_matrix(spec: FixedSpec, data: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Build the fixed-effects model matrix (R column order and lme4 names)."""
    n = len(data)
    cols: list[np.ndarray] = []
    names: list[str] = []
    if spec.intercept:
        cols.append(np.ones(n))
        names.append("(Intercept)")
    for term, codes in zip(spec.terms, spec.coding):
        acc_cols, acc_names = [np.ones(n)], [""]
        for var, code in zip(term, codes):
            vcols, vnames = _variable_columns(data, var, code, spec)
            # earlier variables vary fastest, as in R's model.matrix
            acc_cols = [a * v for v in vcols for a in acc_cols]
            acc_names = [f"{a}:{b}" if a else b for b in vnames for a in acc_names]
        cols.extend(acc_cols)
        names.extend(acc_names)
    X = np.column_stack(cols) if cols else np.empty((n, 0))
    if spec.keep is not None:
        X, names = X[:, spec.keep], [names[j] for j in spec.keep]
    return X, names


def aliased_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Columns of X that are linear combinations of earlier ones, as R's ``qr(X, tol = 1e-7)``.

    R's LINPACK routine (dqrdc2, used by lme4's ``chkRank.drop``) moves a column to the end
    when the norm of its part orthogonal to the earlier columns falls below ``tol`` times its
    own norm, so the later of two aliased columns is the one dropped; an all-zero column is
    always dropped. Gram-Schmidt, orthogonalising twice, gives the same decisions.
    """
    basis: list[np.ndarray] = []
    dropped = []
    for j in range(X.shape[1]):
        v = X[:, j].astype(float)
        norm0 = float(np.sqrt(v @ v))
        if norm0 > 0 and basis:
            Q = np.column_stack(basis)
            for _ in range(2):
                v = v - Q @ (Q.T @ v)
        norm = float(np.sqrt(v @ v))
        if norm0 == 0 or norm < tol * norm0:
            dropped.append(j)
        else:
            basis.append(v / norm)
    return dropped


def drop_aliased(spec: FixedSpec, X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop aliased fixed-effects columns as lme4's ``fixef.rank.drop``; record them in ``spec``.

    Returns the reduced matrix, its names and the names dropped.
    """
    bad = aliased_columns(X)
    if not bad:
        return X, names, []
    if len(bad) == X.shape[1]:
        raise ValueError(f"fixed-effects columns {names} are all zero; the fixed-effects design has rank 0")
    spec.keep = [j for j in range(X.shape[1]) if j not in set(bad)]
    spec.names = [names[j] for j in spec.keep]
    spec.dropped = [names[j] for j in bad]
    return X[:, spec.keep], spec.names, spec.dropped


def rank_drop_message(dropped: list[str]) -> str:
    """lme4's message, with the names of the columns dropped."""
    k = len(dropped)
    s = "s" if k > 1 else ""
    return (f"fixed-effect model matrix is rank deficient so dropping {k} column{s} / "
            f"coefficient{s}: {dropped}")


#: relative residual norm ||y - X b|| / ||y|| below which the response counts as fitted exactly:
#: the deviance factorises the cross-product of [X y], which keeps only about half the digits,
#: and its last pivot (the residual sum of squares) fails near 1e-8 relative in practice
EXACT_FIT_TOL = 1e-7


def check_residual_variance(X: np.ndarray, y: np.ndarray, names: list[str], response: str) -> None:
    """Raise ValueError when the fixed effects fit the response exactly (e.g. it is constant).

    The residual variance is then 0 and the profiled likelihood unbounded; the Cholesky
    factorisation of the penalised least-squares system breaks down on its last pivot.
    """
    if X.shape[1]:
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
        resid = y - X @ beta
    else:
        resid = y
    rss, tss = float(resid @ resid), float(y @ y)
    if rss > EXACT_FIT_TOL**2 * tss:
        return
    if np.ptp(y) == 0:
        raise ValueError(
            f"response {response!r} has no residual variance: all {len(y)} values equal "
            f"{float(y[0])!r}, so a mixed model of it is undefined (its likelihood is unbounded); "
            "a linear mixed model needs a response that varies"
        )
    raise ValueError(
        f"response {response!r} has no residual variance: the fixed effects {names} fit it "
        f"exactly, to rounding (residual sum of squares {rss:.3g} against {tss:.3g} for the "
        "response), so the likelihood is unbounded; check that the response is not computed "
        "from the predictors"
    )


# --------------------------------------------------------------------------- random effects
@dataclass
class Factor:
    """A grouping factor: integer codes per row (0..n-1), labels, and its terms."""

    name: str
    codes: np.ndarray
    labels: np.ndarray
    terms: list[int] = field(default_factory=list)  # indices into the lme4-ordered terms
    offsets: list[int] = field(default_factory=list)  # column offset of each term in the block
    q: int = 0

    @property
    def nlevels(self) -> int:
        return len(self.labels)


def group_codes(data: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and labels of the (interaction) grouping factor, levels sorted."""
    if len(group) == 1:
        codes, labels = pd.factorize(data[group[0]], sort=True)
        return codes.astype(np.int64), np.asarray(labels.astype(str))
    parts = [data[g].astype(str) for g in group]
    key = parts[0]
    for part in parts[1:]:
        key = key + ":" + part
    codes, labels = pd.factorize(key, sort=True)
    return codes.astype(np.int64), np.asarray(labels)


def term_matrix(data: pd.DataFrame, term: RandomTerm) -> np.ndarray:
    """The raw random-effects columns of a term (before grouping), shape (n, q)."""
    n = len(data)
    cols = [np.ones(n)] if term.intercept else []
    for s in term.slopes:
        if _is_categorical(data[s]):
            raise ValueError(
                f"random slope variable {s!r} is categorical; only numeric random slopes are supported"
            )
        cols.append(data[s].to_numpy(dtype=float))
    return np.column_stack(cols)


def order_terms(terms: list[RandomTerm], nlevels: list[int]) -> list[int]:
    """lme4's mkReTrms ordering: by decreasing number of levels, as ``rev(order(nl))``."""
    nl = np.asarray(nlevels)
    if len(nl) > 1 and np.any(np.diff(nl) > 0):
        return list(np.argsort(nl, kind="stable")[::-1])
    return list(range(len(terms)))


def is_nested(child: np.ndarray, parent: np.ndarray, n_child: int, n_parent: int) -> bool:
    """True when every level of ``child`` occurs with exactly one level of ``parent``."""
    pairs = np.unique(child * n_parent + parent)
    return len(pairs) == n_child


# --------------------------------------------------------------------------- level structure
@dataclass
class Level:
    """One level of the blocked factorisation.

    ``kind == 'blocks'``: one factor, ``n`` groups with ``q x q`` blocks.
    ``kind == 'dense'``: one group holding all levels of the crossed factors in ``factors``
    (columns ``segment offset + level * q_f + j``).
    """

    kind: str
    factors: list[int]
    n: int
    q: int
    seg_offsets: list[int] = field(default_factory=list)


@dataclass
class Structure:
    """Everything the profiled deviance needs, precomputed once per fit."""

    terms: list[RandomTerm]
    term_names: list[str]  # lme4 VarCorr group names (make.unique)
    theta_slices: list[slice]
    lower: np.ndarray
    factors: list[Factor]
    levels: list[Level]
    # blocks, groups last: A[l][m] (q_l, q_m, n_l) for m >= l; AX[l] (q_l, p+1, n_l)
    A: list[dict[int, np.ndarray]]
    AX: list[np.ndarray]
    XX: np.ndarray
    starts: list[dict[int, np.ndarray]]  # starts[l][m]: first group of level l in each group of m
    parent: list[dict[int, np.ndarray]]
    n: int
    p: int
    group_order: list[np.ndarray]  # per level: original factor code of each internal group
    # crossed design with one blocked level: Z_0'Z_s as a sparse (n_0 q_0, Q) matrix
    cross_sparse: sp.csr_matrix | None = None
    ldW: float = 0.0  # sum of log prior weights (lme4 subtracts it from the objective)
    # crossed design too large for the dense level: the whole sparse Z (then ``levels`` is empty)
    sparse: SparseDesign | None = None

    @property
    def ntheta(self) -> int:
        return len(self.lower)


def theta_layout(terms: list[RandomTerm]) -> tuple[list[slice], np.ndarray]:
    """Slices of theta per term and lower bounds (0 on diagonals), lme4's column-major order."""
    slices, lower, pos = [], [], 0
    for t in terms:
        q = t.q
        k = q * (q + 1) // 2
        slices.append(slice(pos, pos + k))
        for j in range(q):
            for i in range(j, q):
                lower.append(0.0 if i == j else -np.inf)
        pos += k
    return slices, np.asarray(lower)


def lower_tri_from_theta(th: np.ndarray, q: int) -> np.ndarray:
    L = np.zeros((q, q))
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))  # column-major
    L[rows[order], cols[order]] = th
    return L


def factor_lambda(structure: Structure, f: int, theta: np.ndarray) -> np.ndarray:
    """Relative covariance factor of a grouping factor: block-diagonal over its terms."""
    fac = structure.factors[f]
    lam = np.zeros((fac.q, fac.q))
    for ti, off in zip(fac.terms, fac.offsets):
        q = structure.terms[ti].q
        lam[off : off + q, off : off + q] = lower_tri_from_theta(theta[structure.theta_slices[ti]], q)
    return lam


def level_lambda(structure: Structure, level: Level, theta: np.ndarray) -> np.ndarray:
    if level.kind == "blocks":
        return factor_lambda(structure, level.factors[0], theta)
    lam = np.zeros((level.q, level.q))
    for f, off in zip(level.factors, level.seg_offsets):
        fl = factor_lambda(structure, f, theta)
        nl, qf = structure.factors[f].nlevels, structure.factors[f].q
        lam[off : off + nl * qf, off : off + nl * qf] = np.kron(np.eye(nl), fl)
    return lam


def _make_unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for nm in names:
        if nm in seen:
            seen[nm] += 1
            out.append(f"{nm}.{seen[nm]}")
        else:
            seen[nm] = 0
            out.append(nm)
    return out


def _segment_starts(codes_sorted: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.flatnonzero(np.diff(codes_sorted)) + 1))


def build_structure(
    data: pd.DataFrame, random_terms: list[RandomTerm], X: np.ndarray, y: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[Structure, np.ndarray]:
    """Order terms as lme4, detect nesting, precompute the blocks of [Z X y]'[Z X y].

    Prior ``weights`` (residual variance sigma^2 / w, as lme4's) scale the rows of Z, X and y
    by sqrt(w); their log sum is kept for the objective.

    Returns the structure and the row permutation applied to the data (rows sorted by the
    finest grouping factor, groups sorted by their parents; the identity for a design on the
    sparse path).
    """
    n = len(data)
    codes_by_group: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for t in random_terms:
        if t.group_name not in codes_by_group:
            codes_by_group[t.group_name] = group_codes(data, t.group)
    nl = [len(codes_by_group[t.group_name][1]) for t in random_terms]
    for t, k in zip(random_terms, nl):
        if k < 2:
            raise ValueError(f"grouping factor {t.group_name!r} has {k} level(s); grouping factors must have > 1 sampled level")
        if k >= n:
            raise ValueError(
                f"grouping factor {t.group_name!r} has {k} levels for {n} observations; the number of "
                f"levels of each grouping factor must be < number of observations"
            )
    order = order_terms(random_terms, nl)
    terms = [random_terms[i] for i in order]
    term_names = _make_unique([t.group_name for t in terms])
    slices, lower = theta_layout(terms)
    n_re = sum(t.q * len(codes_by_group[t.group_name][1]) for t in terms)
    if n_re >= n:
        raise ValueError(
            f"number of observations ({n}) <= number of random effects ({n_re}); the random-effects "
            f"parameters and the residual variance are probably unidentifiable"
        )

    factors: list[Factor] = []
    fidx: dict[str, int] = {}
    for ti, t in enumerate(terms):
        if t.group_name not in fidx:
            codes, labels = codes_by_group[t.group_name]
            fidx[t.group_name] = len(factors)
            factors.append(Factor(t.group_name, codes, labels))
        fac = factors[fidx[t.group_name]]
        fac.terms.append(ti)
        fac.offsets.append(fac.q)
        fac.q += t.q

    # finest factor first; a run of nested factors, then the rest as one dense level
    by_size = sorted(range(len(factors)), key=lambda f: -factors[f].nlevels)
    chain = [by_size[0]]
    for f in by_size[1:]:
        prev = factors[chain[-1]]
        if is_nested(prev.codes, factors[f].codes, prev.nlevels, factors[f].nlevels):
            chain.append(f)
        else:
            break
    rest = [f for f in by_size if f not in chain]

    # renumber chain groups so that each level's groups are sorted by their parents
    keys = [factors[f].codes for f in chain]
    row_order = np.lexsort(tuple(keys))  # last key (coarsest) is primary
    group_order = []
    new_codes = []
    for f in chain:
        c = factors[f].codes[row_order]
        first = np.unique(c, return_index=True)[1]
        appear = c[np.sort(first)]  # original codes in order of appearance
        remap = np.empty(factors[f].nlevels, dtype=np.int64)
        remap[appear] = np.arange(len(appear))
        group_order.append(appear)
        new_codes.append(remap[factors[f].codes])
    perm = np.lexsort((new_codes[0],))  # stable sort of rows by finest group
    sorted_codes = [c[perm] for c in new_codes]

    if FORCE_SPARSE or (rest and _too_large_for_dense(factors, chain, rest)):
        # a large crossed design: sparse Z and a sparse factorisation (alliance.lmm.sparse)
        sqrt_w = None if weights is None else np.sqrt(np.asarray(weights, dtype=float))
        XY = np.column_stack([X, y]) if sqrt_w is None else np.column_stack([X, y]) * sqrt_w[:, None]
        return Structure(
            terms, term_names, slices, lower, factors, [], [], [], XY.T @ XY, [], [], n,
            X.shape[1], [], None, 0.0 if weights is None else float(np.sum(np.log(weights))),
            sparse_design(data, terms, factors, XY, sqrt_w),
        ), np.arange(n)

    levels = [Level("blocks", [f], factors[f].nlevels, factors[f].q) for f in chain]
    if rest:
        offsets, off = [], 0
        for f in rest:
            offsets.append(off)
            off += factors[f].nlevels * factors[f].q
        levels.append(Level("dense", rest, 1, off, offsets))
        group_order.append(np.zeros(1, dtype=np.int64))

    sqrt_w = np.ones(n) if weights is None else np.sqrt(np.asarray(weights, dtype=float))
    XY = (np.column_stack([X, y]) * sqrt_w[:, None])[perm]
    z = [(term_rows(data, terms, factors[f]) * sqrt_w[:, None])[perm] for f in chain]
    K = len(levels)
    A: list[dict[int, np.ndarray]] = [dict() for _ in range(K)]
    AX: list[np.ndarray] = []
    starts: list[dict[int, np.ndarray]] = [dict() for _ in range(K)]
    parent: list[dict[int, np.ndarray]] = [dict() for _ in range(K)]
    obs_starts = [_segment_starts(c) for c in sorted_codes]
    cross_sparse = None
    for li in range(len(chain)):
        st = obs_starts[li]
        for m in range(li, len(chain)):
            A[li][m] = np.add.reduceat(z[li][:, :, None] * z[m][:, None, :], st, axis=0)
        AX.append(np.add.reduceat(z[li][:, :, None] * XY[:, None, :], st, axis=0))
        first_obs = st
        for m in range(li + 1, len(chain)):
            par = sorted_codes[m][first_obs]
            parent[li][m] = par
            starts[li][m] = _segment_starts(par)
    if rest:
        s = K - 1
        Zs = _dense_level_matrix(data, terms, factors, levels[-1], perm)
        if weights is not None:
            Zs = sp.csr_matrix(sp.diags(sqrt_w[perm]) @ Zs)
        A[s][s] = (Zs.T @ Zs).toarray()[None]
        AX.append(np.asarray(Zs.T @ XY)[None])
        if len(chain) == 1:
            # targets x raters: keep the cross block sparse (rows group-major: g * q0 + a)
            blocks_sp = []
            for a in range(levels[0].q):
                G = sp.csr_matrix((z[0][:, a], (sorted_codes[0], np.arange(n))), shape=(levels[0].n, n))
                blocks_sp.append((G @ Zs).tocoo())
            rows = np.concatenate([b.row * levels[0].q + a for a, b in enumerate(blocks_sp)])
            cols = np.concatenate([b.col for b in blocks_sp])
            vals = np.concatenate([b.data for b in blocks_sp])
            cross_sparse = sp.csr_matrix((vals, (rows, cols)), shape=(levels[0].n * levels[0].q, levels[-1].q))
        for li in range(len(chain) if cross_sparse is None else 0):
            nli, qli = levels[li].n, levels[li].q
            blocks = []
            for a in range(qli):
                G = sp.csr_matrix((z[li][:, a], (sorted_codes[li], np.arange(n))), shape=(nli, n))
                blocks.append((G @ Zs).toarray())
            A[li][s] = np.stack(blocks, axis=1)
            parent[li][s] = np.zeros(nli, dtype=np.int64)
            starts[li][s] = np.zeros(1, dtype=np.int64)
    XX = XY.T @ XY
    # groups on the last axis: each block entry is a contiguous vector over groups
    A = [{m: np.ascontiguousarray(np.moveaxis(v, 0, 2)) for m, v in row.items()} for row in A]
    AX = [np.ascontiguousarray(np.moveaxis(v, 0, 2)) for v in AX]
    structure = Structure(
        terms, term_names, slices, lower, factors, levels, A, AX, XX, starts, parent, n,
        X.shape[1], group_order, cross_sparse,
        0.0 if weights is None else float(np.sum(np.log(weights))),
    )
    return structure, perm


def _too_large_for_dense(factors: list[Factor], chain: list[int], rest: list[int]) -> bool:
    """Whether a crossed design exceeds the blocked factorisation's dense level: more than
    ``MAX_DENSE`` levels x terms outside the nested chain, or (with a chain of two or more
    factors) a dense cross block of more than ``MAX_DENSE_CROSS`` entries."""
    dense_q = sum(factors[f].nlevels * factors[f].q for f in rest)
    if dense_q > MAX_DENSE:
        return True
    return len(chain) > 1 and any(factors[f].nlevels * factors[f].q * dense_q > MAX_DENSE_CROSS
                                  for f in chain)


@dataclass
class SparseDesign:
    """The random-effects design of the sparse path: all of Z at once, in lme4's layout.

    Columns are grouped by factor (the order of ``Structure.factors``, which is lme4's term
    order), within a factor by level, within a level by the factor's terms:
    ``offsets[f] + level * q_f + j``. Rows carry the square roots of the prior weights.
    """

    ZtZ: sp.csc_matrix  # Z'Z (q x q)
    ZtXY: np.ndarray  # Z'[X y] (q x (p + 1))
    lam_rows: np.ndarray  # pattern of Lambda (lower triangular, block-diagonal) ...
    lam_cols: np.ndarray
    lam_theta: np.ndarray  # ... and the index into theta of each of its entries (lme4's Lind)
    offsets: list[int]  # first column of each factor; offsets[-1] is q

    @property
    def q(self) -> int:
        return self.offsets[-1]


def sparse_design(data: pd.DataFrame, terms: list[RandomTerm], factors: list[Factor],
                  XY: np.ndarray, sqrt_w: np.ndarray | None) -> SparseDesign:
    """Sparse Z, Z'Z, Z'[X y] and the pattern of Lambda for :mod:`alliance.lmm.sparse`
    (``XY`` is [X y] with rows already scaled by ``sqrt_w``)."""
    n = len(data)
    slices, _ = theta_layout(terms)
    z_blocks, offsets = [], [0]
    lam_rows, lam_cols, lam_theta = [], [], []
    for fac in factors:
        z = term_rows(data, terms, fac)
        q = fac.q
        cols = (fac.codes[:, None] * q + np.arange(q)[None, :]).ravel()
        z_blocks.append(sp.csr_matrix((z.ravel(), (np.repeat(np.arange(n), q), cols)),
                                      shape=(n, fac.nlevels * q)))
        # one level's block of Lambda: each term's lower triangle, theta column-major
        r0, c0, t0 = [], [], []
        for ti, off in zip(fac.terms, fac.offsets):
            qt = terms[ti].q
            k = slices[ti].start
            for j in range(qt):
                for i in range(j, qt):
                    r0.append(off + i)
                    c0.append(off + j)
                    t0.append(k)
                    k += 1
        base = offsets[-1] + np.arange(fac.nlevels)[:, None] * q
        lam_rows.append((base + np.asarray(r0)[None, :]).ravel())
        lam_cols.append((base + np.asarray(c0)[None, :]).ravel())
        lam_theta.append(np.tile(np.asarray(t0), fac.nlevels))
        offsets.append(offsets[-1] + fac.nlevels * q)
    Z = sp.hstack(z_blocks).tocsr()
    if sqrt_w is not None:  # XY comes weighted
        Z = sp.csr_matrix(sp.diags(sqrt_w) @ Z)
    return SparseDesign(
        ZtZ=(Z.T @ Z).tocsc(), ZtXY=np.asarray(Z.T @ XY),
        lam_rows=np.concatenate(lam_rows), lam_cols=np.concatenate(lam_cols),
        lam_theta=np.concatenate(lam_theta), offsets=offsets,
    )


def term_rows(data: pd.DataFrame, terms: list[RandomTerm], fac: Factor) -> np.ndarray:
    """Per-row random-effects columns of all terms of one factor, shape (n, q_f)."""
    return np.column_stack([term_matrix(data, terms[ti]) for ti in fac.terms])


def _dense_level_matrix(data, terms, factors, level: Level, perm) -> sp.csr_matrix:
    n = len(data)
    rows, cols, vals = [], [], []
    for f, off in zip(level.factors, level.seg_offsets):
        fac = factors[f]
        zr = term_rows(data, terms, fac)[perm]
        codes = fac.codes[perm]
        for j in range(fac.q):
            rows.append(np.arange(n))
            cols.append(off + codes * fac.q + j)
            vals.append(zr[:, j])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, level.q)
    )
