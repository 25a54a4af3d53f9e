"""Penalised least squares with a sparse factorisation, for crossed designs too large for the
blocked one (:mod:`alliance.lmm.deviance`).

The blocked factorisation eliminates the largest nested chain of grouping factors group by
group and factors every other (crossed) grouping factor as one dense block, which is bounded by
``design.MAX_DENSE`` levels x terms (3,000). A national study's client x rater or therapist x
site crossing can exceed that. Such designs take this path instead, which is lme4's own
(Bates, Maechler, Bolker & Walker 2015, "Fitting linear mixed-effects models using lme4", JSS
67(1), sections 3.2-3.4, 5.3-5.4): the whole random-effects design Z (n x q) and the relative
covariance factor Lambda(theta) (block-diagonal, its pattern fixed and its entries indexed into
theta as lme4's ``Lind``) are sparse, and each evaluation factorises

    M = Lambda' Z'W Z Lambda + I   (q x q, sparse, symmetric positive definite)

with a fill-reducing ordering. Then, as in lme4,

* log det(L_theta)^2 = log det M,
* R_ZX = L^-1 Lambda'Z'X and R_X'R_X = X'X - R_ZX'R_ZX; here the Schur complement of M in the
  cross-product of [Z Lambda, X, y] is formed directly as ``[X y]'[X y] - B' M^-1 B`` with
  ``B = Lambda'Z'[X y]``, whose dense Cholesky factor gives beta, R_X, the penalised residual
  sum of squares and so the profiled criterion, exactly as in :class:`PLSSolution`,
* the spherical conditional modes u = M^-1 (Lambda'Z'y - Lambda'Z'X beta), b = Lambda u.

Why hand-written: lme4 factorises M with CHOLMOD (supernodal sparse Cholesky, symbolic analysis
once per fit). Its Python binding, scikit-sparse (``sksparse.cholmod``), needs the SuiteSparse
library, which is not available where this package is developed and tested (PyPI has only a
source distribution), and scipy has no sparse Cholesky. So the path works with scipy alone:
SuperLU (``scipy.sparse.linalg.splu``) on the symmetric positive definite M, with a symmetric
minimum-degree ordering of M + M' (``MMD_AT_PLUS_A``), diagonal pivoting only
(``diag_pivot_thresh=0``, SuperLU's symmetric mode), which is Gaussian elimination without
pivoting on an SPD matrix and as stable as Cholesky; log det M = sum log |diag U| (the
determinant of an SPD matrix is positive). When ``sksparse.cholmod`` can be imported it is used
instead (a fresh ``cholesky`` per evaluation; this branch is not exercised by the test suite,
which runs without CHOLMOD). Everything else (the optimiser, lme4's convergence check,
Satterthwaite's df by numerical derivatives of the deviance in (theta, sigma)) is the engine's
own and runs on this criterion unchanged.

Cost: one sparse factorisation per evaluation, whose fill depends on the crossing. A client x
rater design where raters work within regions (and a few across them) has small separators and
factorises fast; a fully random crossing fills in to a dense rater block, as it does in lme4.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from .design import Structure

try:  # optional: CHOLMOD through scikit-sparse, as lme4 (not installed here; see above)
    from sksparse.cholmod import cholesky as _cholmod_cholesky
except ImportError:  # pragma: no cover - depends on the environment
    _cholmod_cholesky = None

__all__ = ["SparsePLS", "have_cholmod"]


def have_cholmod() -> bool:
    """Whether the sparse path factorises with CHOLMOD (scikit-sparse) rather than SuperLU."""
    return _cholmod_cholesky is not None


class SparsePLS:
    """The PLS pieces of one evaluation from a sparse Z (``structure.sparse``).

    ``use_cholmod`` (default: when importable) chooses CHOLMOD over SuperLU.
    """

    def __init__(self, structure: Structure, use_cholmod: bool | None = None):
        d = structure.sparse
        if d is None:
            raise ValueError("structure has no sparse design")
        self.s = structure
        self.d = d
        q = d.q
        self.use_cholmod = have_cholmod() if use_cholmod is None else bool(use_cholmod and have_cholmod())
        # Lambda's CSC pattern once; per evaluation only its values theta[lind] change
        k = np.arange(1, len(d.lam_rows) + 1, dtype=float)
        pattern = sp.csc_matrix((k, (d.lam_rows, d.lam_cols)), shape=(q, q))
        pattern.sort_indices()
        self._lam_indices = pattern.indices.copy()
        self._lam_indptr = pattern.indptr.copy()
        self._lind = d.lam_theta[pattern.data.astype(np.int64) - 1]
        self._eye = sp.identity(q, format="csc")

    def lam(self, theta: np.ndarray) -> sp.csc_matrix:
        """Lambda(theta), sparse (q x q)."""
        q = self.d.q
        return sp.csc_matrix((np.asarray(theta, dtype=float)[self._lind], self._lam_indices,
                              self._lam_indptr), shape=(q, q))

    def factorise(self, theta: np.ndarray):
        """Factorise M(theta). Returns (log det M, solve, B = Lambda'Z'[X y], Lambda)."""
        lam = self.lam(theta)
        lamT = lam.T.tocsr()
        M = (lamT @ self.d.ZtZ @ lam + self._eye).tocsc()
        B = np.asarray(lamT @ self.d.ZtXY)
        if self.use_cholmod:  # pragma: no cover - CHOLMOD is not installed here
            F = _cholmod_cholesky(M)
            return float(F.logdet()), F, B, lam
        lu = splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
        ld = float(np.sum(np.log(np.abs(lu.U.diagonal()))))
        return ld, lu.solve, B, lam

    def solve(self, theta: np.ndarray, keep: bool = False):
        """(log det M, Cholesky factor of the Schur complement of [X y], kept) at ``theta``.

        ``kept`` (when ``keep``) holds M^-1 B and Lambda for the conditional modes.
        """
        ld, solve, B, lam = self.factorise(theta)
        W = solve(B)
        if W.ndim == 1:
            W = W[:, None]
        S = self.s.XX - B.T @ W
        LX = np.linalg.cholesky(0.5 * (S + S.T))
        return ld, LX, ((W, lam) if keep else None)

    def random_effects(self, kept, beta: np.ndarray) -> list[np.ndarray]:
        """Conditional modes b = Lambda u per factor, shape (levels, q_f), levels in order."""
        W, lam = kept
        p = len(beta)
        u = W[:, p] - W[:, :p] @ beta
        b = lam @ u
        offs = self.d.offsets
        return [b[offs[f]:offs[f + 1]].reshape(fac.nlevels, fac.q)
                for f, fac in enumerate(self.s.factors)]
