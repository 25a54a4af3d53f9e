"""Result object of :func:`alliance.lmm.fit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .design import FixedSpec, Structure, factor_lambda, fixed_matrix, group_codes, term_rows


@dataclass
class LmmResult:
    """A fitted linear mixed model with lme4's semantics.

    Attributes
    ----------
    formula : str
    reml : bool
    fixed_effects : DataFrame
        Index: lme4 term names (``(Intercept)``, ``session``, ``armB``, ``a:b``...). Columns:
        ``estimate``, ``se``, ``df`` (Satterthwaite, as lmerTest), ``t``, ``p``, ``ci_low``,
        ``ci_high`` (estimate +- t_{df, .975} se).
    random_effects : DataFrame
        lme4's ``as.data.frame(VarCorr(m))`` order; columns ``group``, ``term1``, ``term2``,
        ``variance`` (a covariance on rows with ``term2``), ``sd``, ``corr``.
    sigma, theta, objective, loglik, aic, bic, nobs, ngroups, converged, singular, warnings
        As lme4: ``objective`` is the REML criterion for REML fits and the deviance for ML
        fits; ``theta`` the relative Cholesky factors, column-major lower triangle per term.
    ranef : dict of DataFrame
        Conditional modes per grouping factor (rows: levels, columns: the factor's terms).
    vcov : DataFrame
        Covariance matrix of the fixed effects.
    dropped : list of str
        Aliased fixed-effects columns dropped before fitting (lme4's ``fixef.rank.drop``).
    """

    formula: str
    reml: bool
    engine: str
    fixed_effects: pd.DataFrame
    random_effects: pd.DataFrame
    sigma: float
    theta: np.ndarray
    objective: float
    loglik: float
    aic: float
    bic: float
    nobs: int
    ngroups: dict[str, int]
    converged: bool
    singular: bool
    warnings: list[str]
    ranef: dict[str, pd.DataFrame]
    vcov: pd.DataFrame
    npar: int
    n_evaluations: int = 0
    dropped: list[str] = field(default_factory=list)
    max_grad: float = float("nan")
    _spec: FixedSpec | None = field(default=None, repr=False)
    _structure: Structure | None = field(default=None, repr=False)
    _data: pd.DataFrame | None = field(default=None, repr=False)
    _fitted: np.ndarray | None = field(default=None, repr=False)
    _frame: pd.DataFrame | None = field(default=None, repr=False)
    _model_frame: Any = field(default=None, repr=False)
    _weights: np.ndarray | None = field(default=None, repr=False)
    _contrasts: dict | None = field(default=None, repr=False)

    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False) -> np.ndarray:
        """Predictions as lme4's ``predict.merMod``.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict; default the rows used in the fit (after dropping missing values).
        re_form : None, "~0", "NA", False or a formula of random terms
            ``None`` includes all random effects (conditional prediction); ``"~0"``, ``"NA"``
            or ``False`` gives population-level predictions from the fixed effects only; a
            formula such as ``"~ (1 | therapist)"`` includes only the random terms it lists,
            each written as in the model formula (as lme4's ``re.form``).
        allow_new_levels : bool
            If True, levels not seen in the fit get random effects 0 (as lme4's
            ``allow.new.levels=TRUE``); otherwise they raise ValueError.
        """
        selected = self._selected_terms(re_form)
        if newdata is None:
            data = self._frame
        else:
            parsed = self._model_frame.parsed
            response_vars = parsed.expressions[parsed.response].variables
            missing = [v for v in parsed.variables if v not in newdata.columns and v not in response_vars]
            if missing:
                raise ValueError(f"newdata lacks the model column(s) {missing}")
            filled = newdata.copy()
            for v in response_vars:
                if v not in filled.columns:
                    filled[v] = np.nan  # the response is not needed to predict
            data = self._model_frame.build(filled.reset_index(drop=True))
        beta = self.fixed_effects["estimate"].to_numpy()
        X, _ = fixed_matrix(self._spec, data)
        pred = X @ beta + self._model_frame.offset(data)
        if not selected:
            return pred
        s = self._structure
        for fac in s.factors:
            use = np.zeros(fac.q, dtype=bool)
            for ti, off in zip(fac.terms, fac.offsets):
                use[off : off + s.terms[ti].q] = ti in selected
            if not use.any():
                continue
            terms = [s.terms[i] for i in fac.terms]
            codes, labels = group_codes(data, terms[0].group)
            lookup = pd.Index(fac.labels).get_indexer(labels)
            row_level = lookup[codes]
            unseen = row_level < 0
            if unseen.any() and not allow_new_levels:
                # rows, not the levels: a level may be a client's or therapist's own id
                n_levels = len(set(np.asarray(labels)[codes[unseen]].tolist()))
                rows = np.flatnonzero(unseen)[:3].tolist()
                raise ValueError(
                    f"grouping factor {fac.name!r} has {n_levels} level(s) not in the fitted data (rows "
                    f"{rows} by position); pass allow_new_levels=True to predict them at the population level"
                )
            b = self.ranef[fac.name].to_numpy() * use[None, :]
            z = term_rows(data, s.terms, fac)
            contrib = np.einsum("nj,nj->n", z, b[np.where(unseen, 0, row_level)])
            pred = pred + np.where(unseen, 0.0, contrib)
        return pred

    def _selected_terms(self, re_form) -> set[int]:
        """Indices (in the fitted, lme4-ordered terms) of the random terms ``re_form`` keeps."""
        terms = self._structure.terms
        if re_form is None:
            return set(range(len(terms)))
        if re_form is False or (isinstance(re_form, str) and re_form.replace(" ", "") in ("~0", "NA", "~-1")):
            return set()
        if not (isinstance(re_form, str) and re_form.strip().startswith("~")):
            raise ValueError(
                f"re_form must be None (all random effects), '~0'/'NA'/False (none) or a formula of "
                f"random terms such as '~ (1 | group)', got {re_form!r}"
            )
        from .formula import parse_formula

        wanted = parse_formula("re_form_ " + re_form.strip()).random_terms
        mf = self._model_frame
        original = mf.parsed.random_terms
        chosen = set()
        for rt in wanted:
            key = (rt.intercept, rt.slopes, rt.group)
            match = [i for i, t in enumerate(original) if (t.intercept, t.slopes, t.group) == key]
            if not match:
                fitted = ", ".join(f"({' + '.join(t.column_names)} | {t.group_name})" for t in original)
                raise ValueError(
                    f"re_form term ({' + '.join(rt.column_names)} | {rt.group_name}) is not a random "
                    f"term of the model; its random terms are {fitted}"
                )
            chosen.add(terms.index(mf.random_terms[match[0]]))
        return chosen

    @property
    def fitted(self) -> np.ndarray:
        """Conditional fitted values on the fitted rows (lme4's ``fitted``)."""
        return self._fitted

    @property
    def residuals(self) -> np.ndarray:
        """Response minus conditional fitted values."""
        y = self._frame[self._model_frame.parsed.response].to_numpy(dtype=float)
        return y - self._fitted

    def cond_var(self, factors=None) -> dict[str, np.ndarray]:
        """Conditional covariance matrices of the random effects, lme4's
        ``ranef(m, condVar = TRUE)`` (``attr(, "postVar")``): per grouping factor an array of
        shape ``(levels, q, q)`` in the row and column order of ``ranef[factor]``.

        ``sigma^2 Lambda_i [(Lambda' Z' W Z Lambda + I)^-1]_ii Lambda_i'`` for level ``i``,
        given the estimated variance components and fixed effects, as lme4 computes it (Bates
        et al., 2015). Only the diagonal blocks of the inverse are formed
        (:func:`_inverse_diagonal_blocks`), so memory grows with the number of random effects,
        not with its square.

        Parameters
        ----------
        factors : sequence of str, optional
            The grouping factors wanted (default: all). A study's client factor has a hundred
            times the therapist factor's levels: asking for the therapists only saves its work.
        """
        s = self._structure
        names = [fac.name for fac in s.factors]
        wanted = names if factors is None else list(factors)
        unknown = [name for name in wanted if name not in names]
        if unknown:
            raise ValueError(f"the fit has no grouping factor {unknown[0]!r}; it has {names}")
        precision, offsets = self._posterior_precision()
        qs = [fac.q for fac in s.factors]
        out = {}
        for name in wanted:
            f = names.index(name)
            lam = factor_lambda(s, f, self.theta)
            blocks = _factor_inverse_blocks(precision, offsets, f, qs)
            out[name] = self.sigma**2 * np.einsum("ab,lbc,dc->lad", lam, blocks, lam)
        return out

    def _posterior_precision(self):
        """``Lambda' Z' W Z Lambda + I`` (sparse, CSC) with the factors' first columns."""
        from scipy import sparse

        s = self._structure
        z_blocks, lam_blocks, offsets = [], [], [0]
        for f, fac in enumerate(s.factors):
            z = term_rows(self._frame, s.terms, fac)
            n, q = z.shape
            cols = (fac.codes[:, None] * q + np.arange(q)[None, :]).ravel()
            rows = np.repeat(np.arange(n), q)
            z_blocks.append(sparse.csr_matrix((z.ravel(), (rows, cols)), shape=(n, fac.nlevels * q)))
            lam = sparse.csr_matrix(factor_lambda(s, f, self.theta))
            lam_blocks.append(sparse.kron(sparse.identity(fac.nlevels), lam))
            offsets.append(offsets[-1] + fac.nlevels * q)
        zl = sparse.hstack(z_blocks).tocsr() @ sparse.block_diag(lam_blocks).tocsr()
        if self._weights is not None:
            zl = sparse.diags(np.sqrt(self._weights)) @ zl
        return (zl.T @ zl + sparse.identity(offsets[-1])).tocsc(), offsets

    def summary(self) -> str:
        """A short text summary in lme4's layout."""
        kind = "REML criterion" if self.reml else "deviance"
        lines = [
            f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'} ({self.engine})",
            f"Formula: {self.formula}",
            f"{kind} at convergence: {self.objective:.4f}   AIC {self.aic:.4f}   BIC {self.bic:.4f}",
            f"Observations: {self.nobs}; groups: "
            + ", ".join(f"{k} {v}" for k, v in self.ngroups.items()),
            "Random effects:",
            self.random_effects.to_string(index=False),
            "Fixed effects:",
            self.fixed_effects.to_string(),
        ]
        if self.singular:
            lines.append("boundary (singular) fit: see isSingular")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def __repr__(self) -> str:  # keep notebooks readable
        return self.summary()


# --------------------------------------------------------------------------------------
# Diagonal blocks of the inverse posterior precision (lme4's condVar)
# --------------------------------------------------------------------------------------
#: Largest order of a matrix inverted densely when it is not block-diagonal.
DENSE_INVERSE = 4000
#: Largest order of a precision matrix whose whole sparse LU is solved for every factor (a
#: fraction of a second there): small fits keep the numbers of that route, the bundled
#: example's byte for byte; larger two-factor fits take the Schur complement.
WHOLE_LU_UP_TO = 4000


def _factor_inverse_blocks(precision, offsets: list[int], f: int, qs: list[int]) -> np.ndarray:
    """The ``(levels, q, q)`` diagonal blocks of ``precision^-1`` on factor ``f``'s columns.

    With two grouping factors (clients and therapists, targets and raters) the other factor's
    block of ``precision`` is block-diagonal by level, so it is eliminated exactly by its
    Schur complement, ``[A^-1]_ff = (A_ff - A_fo A_oo^-1 A_of)^-1``: the client factor of a
    national study (100,000 levels, slopes) then costs a batch of 2 x 2 inverses instead of
    a sparse solve per column. With one factor the matrix itself is block-diagonal; with
    three or more, or an order up to :data:`WHOLE_LU_UP_TO`, the sparse LU of the whole
    matrix is solved for ``f``'s columns.
    """
    from scipy import sparse

    if len(qs) > 2 or precision.shape[0] <= WHOLE_LU_UP_TO:
        return _inverse_blocks_by_lu(precision, offsets[f], qs[f], (offsets[f + 1] - offsets[f]) // qs[f])
    own = slice(offsets[f], offsets[f + 1])
    a_ff = precision[own, own]
    if len(qs) == 2:
        o = 1 - f
        other = slice(offsets[o], offsets[o + 1])
        a_fo = precision[own, other]
        blocks_oo, _ = _diagonal_blocks(precision[other, other], qs[o])  # block-diagonal by level
        inverse_oo = _block_diagonal(np.linalg.inv(blocks_oo))
        a_ff = (a_ff - (a_fo @ inverse_oo @ a_fo.T)).tocsc()
    return _inverse_diagonal_blocks(sparse.csc_matrix(a_ff), qs[f])


def _diagonal_blocks(m, q: int) -> tuple[np.ndarray, bool]:
    """The ``(levels, q, q)`` diagonal blocks of a sparse matrix of order ``levels * q``, and
    whether the matrix has no entries outside them."""
    coo = m.tocoo()
    level = coo.row // q
    inside = level == coo.col // q
    blocks = np.zeros((m.shape[0] // q, q, q))
    np.add.at(blocks, (level[inside], coo.row[inside] % q, coo.col[inside] % q), coo.data[inside])
    return blocks, bool(inside.all())


def _block_diagonal(blocks: np.ndarray):
    """The sparse block-diagonal matrix of ``(levels, q, q)`` blocks."""
    from scipy import sparse

    levels, q, _ = blocks.shape
    base = np.arange(levels)[:, None, None] * q
    rows = np.broadcast_to(base + np.arange(q)[None, :, None], blocks.shape).ravel()
    cols = np.broadcast_to(base + np.arange(q)[None, None, :], blocks.shape).ravel()
    return sparse.csr_matrix((blocks.ravel(), (rows, cols)), shape=(levels * q, levels * q))


def _inverse_diagonal_blocks(m, q: int) -> np.ndarray:
    """The ``(levels, q, q)`` diagonal blocks of ``m^-1`` (``m`` sparse, symmetric positive
    definite): a batch of small inverses when ``m`` is block-diagonal (nested designs), a dense
    inverse up to :data:`DENSE_INVERSE`, else the sparse LU solved for the columns."""
    levels = m.shape[0] // q
    blocks, block_diagonal = _diagonal_blocks(m, q)
    if block_diagonal:
        return np.linalg.inv(blocks)
    if m.shape[0] <= DENSE_INVERSE:
        inverse = np.linalg.inv(m.toarray())
        idx = np.arange(levels)[:, None] * q + np.arange(q)[None, :]
        return inverse[idx[:, :, None], idx[:, None, :]]
    return _inverse_blocks_by_lu(m, 0, q, levels)


def _inverse_blocks_by_lu(m, first_col: int, q: int, levels: int) -> np.ndarray:
    """Diagonal blocks of ``m^-1`` for ``levels`` blocks of order ``q`` from column ``first_col``,
    by the sparse LU of ``m`` solved a bounded number of columns at a time."""
    from scipy.sparse.linalg import splu

    lu = splu(m.tocsc())
    blocks = np.empty((levels, q, q))
    step = max(1, 512 // q)  # levels per solve: bounded memory
    for first in range(0, levels, step):
        last = min(levels, first + step)
        cols = np.arange(first_col + first * q, first_col + last * q)
        rhs = np.zeros((m.shape[0], len(cols)))
        rhs[cols, np.arange(len(cols))] = 1.0
        solved = lu.solve(rhs)[cols].reshape(last - first, q, last - first, q)
        idx = np.arange(last - first)
        blocks[first:last] = solved[idx, :, idx, :]
    return blocks
