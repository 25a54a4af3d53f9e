"""Profiled deviance and REML criterion of a linear mixed model as a function of theta.

Bates, Maechler, Bolker & Walker (2015), "Fitting linear mixed-effects models using lme4",
JSS 67(1), sections 3.1-3.4: for a given relative covariance factor Lambda(theta) the
penalised least-squares problem is solved through the Cholesky factor of

    [ Lambda'Z'Z Lambda + I   Lambda'Z'X   Lambda'Z'y ]
    [ X'Z Lambda              X'X          X'y        ]
    [ y'Z Lambda              y'X          y'y        ]

and the deviance is profiled over beta and sigma. Here the factorisation is blocked by
grouping factor (as in MixedModels.jl): the finest factor's blocks are small and independent,
and their Schur complements into coarser nested factors stay block-diagonal, so every step is a
batched operation over groups. Crossed designs too large for the blocked factorisation's dense
level (``design.MAX_DENSE``) are factorised sparsely by :mod:`alliance.lmm.sparse`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from . import blocks
from .design import Structure, level_lambda
from .sparse import SparsePLS


@dataclass
class PLSSolution:
    """Result of one penalised least-squares solve at ``theta``."""

    theta: np.ndarray
    ldL2: float  # log det(L_theta)^2
    ldRX2: float  # log det(R_X)^2
    r2: float  # penalised residual sum of squares
    LX: np.ndarray  # lower Cholesky factor of the (p+1) x (p+1) Schur complement
    factors: list | None = None  # per level (L, C dict, D) when kept

    @property
    def p(self) -> int:
        return self.LX.shape[0] - 1

    def beta(self) -> np.ndarray:
        p = self.p
        if p == 0:
            return np.zeros(0)
        return np.linalg.solve(self.LX[:p, :p].T, self.LX[p, :p])

    def RXinv_cross(self) -> np.ndarray:
        """(R_X' R_X)^{-1}: the unscaled covariance matrix of beta."""
        p = self.p
        Linv = np.linalg.inv(self.LX[:p, :p])
        return Linv.T @ Linv


class ProfiledDeviance:
    """Objective function of theta for one model, with all data-sized work done up front.

    Parameters
    ----------
    structure : Structure
        Blocks of [Z X y]'[Z X y] from :func:`alliance.lmm.design.build_structure`.
    reml : bool
        REML criterion (True) or ML deviance (False), as lme4 computes them.
    """

    def __init__(self, structure: Structure, reml: bool):
        self.s = structure
        self.reml = reml
        self.n_evals = 0
        self.sparse = None if structure.sparse is None else SparsePLS(structure)

    def solve(self, theta: np.ndarray, keep: bool = False) -> PLSSolution:
        """Factorise at ``theta``; keep the per-level factors when ``keep`` (for modes)."""
        if self.sparse is not None:
            self.n_evals += 1
            ld, LX, kept = self.sparse.solve(theta, keep)
            dX = np.diag(LX)
            return PLSSolution(np.array(theta, dtype=float), ld, 2.0 * float(np.sum(np.log(dX[:-1]))),
                               float(dX[-1] ** 2), LX, kept)
        if self.s.cross_sparse is not None:
            return self._solve_crossed(theta, keep)
        s = self.s
        self.n_evals += 1
        levels = s.levels
        K = len(levels)
        lams = [level_lambda(s, lev, theta) for lev in levels]
        M: list[dict[int, np.ndarray]] = []
        MX: list[np.ndarray] = []
        for li in range(K):
            row = {}
            for m, A in s.A[li].items():
                row[m] = blocks.sandwich(A, lams[li], lams[m])
            idx = np.arange(levels[li].q)
            row[li][idx, idx, :] += 1.0
            M.append(row)
            MX.append(blocks.sandwich(s.AX[li], lams[li], None))
        XX = s.XX.copy()
        ld = 0.0
        kept = [] if keep else None
        for li in range(K):
            L = blocks.cholesky(M[li][li])
            ld += blocks.logdet_diag(L)
            C = {m: blocks.solve_lower(L, M[li][m]) for m in M[li] if m > li}
            D = blocks.solve_lower(L, MX[li])
            for m in C:
                st, nm = s.starts[li][m], levels[m].n
                for m2 in C:
                    if m2 >= m:
                        M[m][m2] = M[m][m2] - blocks.crossprod_sum(C[m], C[m2], st, nm)
                MX[m] = MX[m] - blocks.crossprod_sum(C[m], D, st, nm)
            XX -= blocks.gram(D)
            if keep:
                kept.append((L, C, D))
        LX = np.linalg.cholesky(XX)
        dX = np.diag(LX)
        return PLSSolution(
            theta=np.array(theta, dtype=float),
            ldL2=ld,
            ldRX2=2.0 * float(np.sum(np.log(dX[:-1]))),
            r2=float(dX[-1] ** 2),
            LX=LX,
            factors=kept,
        )

    def _solve_crossed(self, theta: np.ndarray, keep: bool) -> PLSSolution:
        """Blocked factorisation for a crossed design: many small blocks (e.g. targets) and
        one dense block for the crossed factors (e.g. raters), with a sparse cross block so
        that the Schur complement costs O(nonzeros), not O(n_targets x n_raters^2)."""
        s = self.s
        self.n_evals += 1
        lev0, lev1 = s.levels
        n0, q0 = lev0.n, lev0.q
        lam0 = level_lambda(s, lev0, theta)
        lam1_dense = level_lambda(s, lev1, theta)
        # scalar crossed terms (e.g. lecturers, raters): Lambda_1 is diagonal
        l1 = np.diag(lam1_dense).copy() if self._diagonal(lam1_dense) else None
        M00 = blocks.sandwich(s.A[0][0], lam0, lam0)
        idx = np.arange(q0)
        M00[idx, idx, :] += 1.0
        L0 = blocks.cholesky(M00)
        ld = blocks.logdet_diag(L0)
        D0 = blocks.solve_lower(L0, blocks.sandwich(s.AX[0], lam0, None))
        # block-diagonal L0^{-1} Lambda0' as a sparse matrix, rows/cols g * q0 + a
        T = blocks.solve_lower(L0, np.broadcast_to(lam0.T[:, :, None], (q0, q0, n0)))
        D_rows = np.moveaxis(D0, 2, 0).reshape(n0 * q0, -1)
        A11 = s.A[1][1][:, :, 0]
        if l1 is not None and q0 == 1:
            # both levels scalar: B and Lambda_1 are diagonal, so C is a scaling of the
            # cross block and the sandwiches are elementwise
            C = s.cross_sparse.multiply(T[0, 0, :][:, None]).multiply(l1[None, :]).tocsr()
            M11 = A11 * l1[:, None] * l1[None, :] + np.eye(lev1.q) - (C.T @ C).toarray()
            MX1 = l1[:, None] * s.AX[1][:, :, 0] - C.T @ D_rows
        else:
            lam1 = sp.csr_matrix(lam1_dense)
            rows = (np.arange(n0)[:, None, None] * q0 + np.arange(q0)[None, :, None]).repeat(q0, 2)
            cols = (np.arange(n0)[:, None, None] * q0 + np.arange(q0)[None, None, :]).repeat(q0, 1)
            B = sp.csr_matrix((np.moveaxis(T, 2, 0).ravel(), (rows.ravel(), cols.ravel())), shape=(n0 * q0,) * 2)
            C = (B @ s.cross_sparse @ lam1).tocsr()
            M11 = (lam1.T @ (lam1.T @ A11).T).T + np.eye(lev1.q) - (C.T @ C).toarray()
            MX1 = lam1.T @ s.AX[1][:, :, 0] - C.T @ D_rows
        L1 = np.linalg.cholesky(M11)
        ld += 2.0 * float(np.sum(np.log(np.diag(L1))))
        D1 = scipy.linalg.solve_triangular(L1, MX1, lower=True)
        XX = s.XX - blocks.gram(D0) - D1.T @ D1
        LX = np.linalg.cholesky(XX)
        dX = np.diag(LX)
        kept = None
        if keep:
            kept = [(L0, {"sparse": C}, D0), (L1[:, :, None], {}, D1[:, :, None])]
        return PLSSolution(np.array(theta, dtype=float), ld, 2.0 * float(np.sum(np.log(dX[:-1]))),
                           float(dX[-1] ** 2), LX, kept)

    def _diagonal(self, lam: np.ndarray) -> bool:
        """Whether the dense level's Lambda is diagonal (all its terms scalar), cached."""
        if not hasattr(self, "_lam1_diagonal"):
            self._lam1_diagonal = all(self.s.factors[f].q == 1 for f in self.s.levels[-1].factors)
        return self._lam1_diagonal

    def criterion(self, sol: PLSSolution) -> float:
        """lme4's REML criterion or ML deviance from a PLS solution."""
        n, p = self.s.n, self.s.p
        if self.reml:
            nmp = n - p
            return sol.ldL2 - self.s.ldW + sol.ldRX2 + nmp * (1.0 + np.log(2.0 * np.pi * sol.r2 / nmp))
        return sol.ldL2 - self.s.ldW + n * (1.0 + np.log(2.0 * np.pi * sol.r2 / n))

    def __call__(self, theta: np.ndarray) -> float:
        return self.criterion(self.solve(theta))

    def sigma(self, sol: PLSSolution) -> float:
        n, p = self.s.n, self.s.p
        return float(np.sqrt(sol.r2 / (n - p if self.reml else n)))

    def modes(self, sol: PLSSolution) -> list[np.ndarray]:
        """Spherical conditional modes u per level (shape (q_l, n_l)) by back-substitution."""
        if sol.factors is None:
            raise ValueError("PLS solution was computed without keep=True")
        s = self.s
        p = s.p
        beta = sol.beta()
        K = len(s.levels)
        u: list[np.ndarray | None] = [None] * K
        for li in reversed(range(K)):
            L, C, D = sol.factors[li]
            rhs = D[:, p, :] - np.einsum("ijn,j->in", D[:, :p, :], beta)
            for m, Cm in C.items():
                if m == "sparse":  # crossed design: C (n0 q0, Q) times the dense level's u
                    Cu = Cm @ u[1][:, 0]
                    rhs = rhs - Cu.reshape(-1, rhs.shape[0]).T
                    continue
                um = u[m][:, s.parent[li][m]]  # (q_m, n_l)
                rhs = rhs - np.einsum("ijn,jn->in", Cm, um)
            u[li] = blocks.solve_upper_t(L, rhs[:, None, :])[:, 0, :]
        return u

    def random_effects(self, sol: PLSSolution) -> list[np.ndarray]:
        """Conditional modes b = Lambda u per factor, rows in the factor's original level order."""
        if self.sparse is not None:
            if sol.factors is None:
                raise ValueError("PLS solution was computed without keep=True")
            return self.sparse.random_effects(sol.factors, sol.beta())
        s = self.s
        u = self.modes(sol)
        out: list[np.ndarray | None] = [None] * len(s.factors)
        for li, lev in enumerate(s.levels):
            lam = level_lambda(s, lev, sol.theta)
            b = (lam @ u[li]).T  # (n_l, q_l)
            if lev.kind == "blocks":
                f = lev.factors[0]
                bf = np.empty_like(b)
                bf[s.group_order[li]] = b
                out[f] = bf
            else:
                for f, off in zip(lev.factors, lev.seg_offsets):
                    nl, qf = s.factors[f].nlevels, s.factors[f].q
                    out[f] = b[0, off : off + nl * qf].reshape(nl, qf)
        return out
