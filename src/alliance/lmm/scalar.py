"""Profiled criterion with its analytic gradient for crossed scalar random effects.

The model class of lme4's InstEval benchmark, ``y ~ X + (1|s) + (1|d) + (1|dept:service)``:
one grouping factor with many levels (the "blocked" level of
:mod:`alliance.lmm.deviance`, here with diagonal blocks) crossed with any number of grouping
factors gathered into one dense level, every random term scalar (an intercept or one slope
without correlation). For these designs the general path evaluates the criterion only and
leaves the search to a derivative-free optimiser (about 70 evaluations on InstEval, as
lme4's bobyqa). This module adds the exact gradient, so that a quasi-Newton method (L-BFGS-B
over gamma = theta^2 >= 0) converges in a fraction of the evaluations, and the convergence
check and Satterthwaite's df need a few gradient evaluations instead of many criterion values.

Notation (Bates et al. 2015): M = Lambda' Z'Z Lambda + I with Lambda = diag(theta of each
column), H = I + Z Lambda Lambda' Z' (rows scaled by the square roots of the prior weights), so
that log|M| = log|H|; P is the REML projector of H. In gamma_k = theta_k^2 the REML criterion
has (Searle et al. 1992, eq. 6.75; Kuznetsova et al. 2017)

    d crit / d gamma_k = tr(H^-1 Z_k Z_k') - tr((X'H^-1X)^-1 X'H^-1 Z_k Z_k' H^-1 X)
                         - (n - p) |Z_k' P y|^2 / y'Py

(the ML deviance drops the second term and has n in place of n - p). The pieces come from the
blocked factor: the blocked level has diagonal blocks a_i = 1 + gamma_0 d_i, the dense level the
Schur complement S = Lambda_1 T Lambda_1 + I, T = Z_1'H_0^-1 Z_1. Then

* tr(H^-1 Z_0 Z_0') = sum_i d_i / a_i - <S^-1, Lambda_1 N' diag(1/a^2) N Lambda_1>,
* tr(H^-1 Z_k Z_k') = sum_{j in k} (1 - (S^-1)_jj) / gamma_k for a dense-level term with
  gamma_k > 0 (by T's diagonal directly at gamma_k = 0),
* Z'H^-1 [X y] = Z'[X y] - Z'Z Lambda M^-1 Lambda Z'[X y] by two triangular solves,

with N = Z_0'Z_1 sparse. The only cubic step besides the Cholesky factor of S is S^-1 (LAPACK
potri), so a gradient evaluation costs about three criterion evaluations.

Sparse Cholesky: the dense level is factored densely (LAPACK potrf), after the Schur
complement of the blocked level (diagonal here) has been taken by sparse products. On InstEval
the crossed part Z_1'H_0^-1 Z_1 (1,128 lecturers + 28 dept:service cells) has 20% nonzeros
before any fill, so a fill-reducing sparse factorisation (CHOLMOD, as lme4) could not beat
the dense one (17 ms single-threaded here). scikit-sparse, which wraps CHOLMOD, is not used:
PyPI has only its source distribution (0.5.0, no wheel for CPython 3.11 on linux x86_64) and
this machine has no SuiteSparse library to build it against. The dense level stays bounded by
``design.MAX_DENSE`` (3,000 levels x terms); larger crossed designs take the general sparse
path (:mod:`alliance.lmm.sparse`), not this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy import optimize
from scipy.linalg import lapack

from .design import Structure

__all__ = ["ScalarCrossed", "is_scalar_crossed"]

#: largest number of (blocked level, dense pair) entries kept for the pair map (~300 MB)
MAX_PAIRS = 20_000_000


def is_scalar_crossed(s: Structure) -> bool:
    """A crossed design (one blocked factor, one dense level) with every random term scalar."""
    return (s.cross_sparse is not None and len(s.levels) == 2 and s.levels[0].q == 1
            and all(s.factors[f].q == 1 for f in s.levels[1].factors))


@dataclass
class ScalarFactor:
    """One evaluation's factorisation (what the gradient reuses)."""

    theta: np.ndarray
    gamma0: float
    lam: np.ndarray  # dense-level Lambda diagonal (Q)
    a: np.ndarray  # blocked-level pivots 1 + gamma_0 d (n0)
    L1: np.ndarray  # Cholesky factor of S (lower, Fortran order)
    D0: np.ndarray  # (n0, p+1)
    D1: np.ndarray  # (Q, p+1)
    LX: np.ndarray  # (p+1, p+1) lower
    ldL2: float
    ldRX2: float
    r2: float


@dataclass
class ScalarPieces:
    """Per-term parts of the gradient in gamma at one theta."""

    trace_h: np.ndarray  # tr(H^-1 Z_k Z_k')
    trace_x: np.ndarray  # tr((X'H^-1X)^-1 X'H^-1 Z_k Z_k' H^-1 X)
    zpy2: np.ndarray  # |Z_k' P y|^2
    dcov: np.ndarray  # (k, p): d diag((X'H^-1X)^-1) / d gamma_k
    cov: np.ndarray  # (p, p): (X'H^-1X)^-1
    r2: float
    objective: float
    vpv: np.ndarray  # (k, k): v_k'P v_l, v_k = Z_k Z_k' P y (the average information)


def _pair_matrix(N: sp.csr_matrix, low_keys: np.ndarray, Q: int) -> sp.csc_matrix:
    """Sparse map P with (N' diag(w) N)[lower pattern] = P @ w.

    Row r of P is an entry (j, k), j >= k, of the lower triangle of N'N (``low_keys`` =
    j Q + k, sorted), column i a level of the blocked factor; P[r, i] = N_ij N_ik. The
    product costs the number of pairs of dense levels met within a blocked level, not a
    sparse matrix product per evaluation. Pairs are generated row by row of N, so P comes
    out in CSC order without sorting.
    """
    N = N.tocsr()
    N.sort_indices()
    ptr, col, val = N.indptr, N.indices.astype(np.int64), N.data
    k = np.diff(ptr)
    row_of = np.repeat(np.arange(N.shape[0]), k)
    # every entry e of row i pairs with the entries of row i up to and including itself
    # (indices sorted, so those have k <= j): the lower triangle only
    upto = np.arange(len(col)) - ptr[row_of] + 1
    first = np.repeat(ptr[row_of], upto)
    offs = np.arange(upto.sum()) - np.repeat(np.cumsum(upto) - upto, upto)
    e_a = np.repeat(np.arange(len(col)), upto)
    e_b = first + offs
    pos = np.searchsorted(low_keys, col[e_a] * Q + col[e_b])
    counts = np.bincount(row_of[e_a], minlength=N.shape[0])
    indptr = np.concatenate(([0], np.cumsum(counts)))
    return sp.csc_matrix((val[e_a] * val[e_b], pos, indptr), shape=(len(low_keys), N.shape[0]))


class ScalarCrossed:
    """Criterion, gradient and derived quantities of a scalar crossed model (see module doc).

    Parameters
    ----------
    structure : Structure
        From :func:`alliance.lmm.design.build_structure`; :func:`is_scalar_crossed` must hold.
    reml : bool
        REML criterion or ML deviance, as :class:`alliance.lmm.deviance.ProfiledDeviance`.
    """

    def __init__(self, structure: Structure, reml: bool):
        if not is_scalar_crossed(structure):
            raise ValueError("ScalarCrossed needs a crossed design with scalar random terms only")
        s = structure
        self.s, self.reml = s, reml
        self.n_evals = 0
        lev0, lev1 = s.levels
        self.n0, self.Q, self.p = lev0.n, lev1.q, s.p
        self.d = s.A[0][0][0, 0, :].copy()
        self.N = s.cross_sparse.tocsr()
        self.NT = self.N.T.tocsr()
        self.A11 = np.asfortranarray(s.A[1][1][:, :, 0])
        self.AX0 = np.ascontiguousarray(s.AX[0][0].T)  # (n0, p+1)
        self.AX1 = s.AX[1][:, :, 0]  # (Q, p+1)
        # theta index of the blocked factor and of every dense-level column
        f0 = lev0.factors[0]
        self.idx0 = s.theta_slices[s.factors[f0].terms[0]].start
        col_theta = np.empty(self.Q, dtype=np.int64)
        self.dense_terms = []  # (theta index, column slice)
        for f, off in zip(lev1.factors, lev1.seg_offsets):
            k = s.theta_slices[s.factors[f].terms[0]].start
            cols = slice(off, off + s.factors[f].nlevels)
            col_theta[cols] = k
            self.dense_terms.append((k, cols))
        self.col_theta = col_theta
        NN = (self.NT @ self.N).tocoo()
        low = NN.row >= NN.col
        r, c = NN.row[low].astype(np.int64), NN.col[low].astype(np.int64)
        order = np.argsort(r * self.Q + c)
        r, c = r[order], c[order]
        self.low_r, self.low_c = r, c
        self.low_fflat = c * self.Q + r  # position in a Fortran-ordered Q x Q array
        self.low_mult = np.where(r == c, 1.0, 2.0)  # both triangles in inner products
        k_rows = np.diff(self.N.indptr).astype(np.int64)
        n_pairs = int(np.sum(k_rows * (k_rows + 1) // 2))
        # the pair map pays off unless blocked levels meet very many dense levels each
        self.P = _pair_matrix(self.N, r * self.Q + c, self.Q) if n_pairs <= MAX_PAIRS else None
        self.diag_f = np.arange(self.Q) * (self.Q + 1)

    # ------------------------------------------------------------------------ evaluation
    def factor(self, theta: np.ndarray) -> ScalarFactor:
        """Blocked Cholesky factorisation at theta (the criterion's work)."""
        self.n_evals += 1
        theta = np.asarray(theta, dtype=float)
        t0 = theta[self.idx0]
        g0 = t0 * t0
        lam = theta[self.col_theta]
        a = 1.0 + g0 * self.d
        w = g0 / a
        S = np.multiply(self.A11, lam[None, :], order="F")
        S *= lam[:, None]
        flat = S.reshape(-1, order="F")
        flat[self.low_fflat] -= self._gram_lower(w) * lam[self.low_r] * lam[self.low_c]
        flat[self.diag_f] += 1.0
        L1, info = lapack.dpotrf(S, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError("Schur complement of the crossed level is not positive definite")
        sa = np.sqrt(a)
        D0 = (t0 / sa)[:, None] * self.AX0
        MX1 = lam[:, None] * (self.AX1 - self.NT @ (w[:, None] * self.AX0))
        D1 = scipy.linalg.solve_triangular(L1, MX1, lower=True, check_finite=False)
        XX = self.s.XX - D0.T @ D0 - D1.T @ D1
        LX = np.linalg.cholesky(XX)
        dX = np.diag(LX)
        ldL2 = float(np.sum(np.log(a))) + 2.0 * float(np.sum(np.log(np.diag(L1))))
        return ScalarFactor(theta.copy(), g0, lam, a, L1, D0, D1, LX, ldL2,
                            2.0 * float(np.sum(np.log(dX[:-1]))), float(dX[-1] ** 2))

    def _gram_lower(self, w: np.ndarray) -> np.ndarray:
        """(N' diag(w) N) on the lower pattern of N'N."""
        if self.P is not None:
            return self.P @ w
        G = (self.NT @ self.N.multiply(w[:, None])).tocsr()
        return np.asarray(G[self.low_r, self.low_c]).ravel()

    def criterion_of(self, f: ScalarFactor) -> float:
        """lme4's REML criterion or ML deviance (as ProfiledDeviance.criterion)."""
        n, p = self.s.n, self.p
        if self.reml:
            nmp = n - p
            return f.ldL2 - self.s.ldW + f.ldRX2 + nmp * (1.0 + np.log(2.0 * np.pi * f.r2 / nmp))
        return f.ldL2 - self.s.ldW + n * (1.0 + np.log(2.0 * np.pi * f.r2 / n))

    def __call__(self, theta: np.ndarray) -> float:
        return self.criterion_of(self.factor(theta))

    def pieces(self, f: ScalarFactor) -> ScalarPieces:
        """The per-term traces and quadratic forms of the gradient at a factorisation."""
        p = self.p
        t0, lam, a, L1 = f.theta[self.idx0], f.lam, f.a, f.L1
        sa = np.sqrt(a)
        # U = M^-1 Lambda Z'[X y] by back-substitution through the blocked factor
        U1 = scipy.linalg.solve_triangular(L1, f.D1, lower=True, trans="T", check_finite=False)
        LU1 = lam[:, None] * U1
        U0 = (f.D0 - (t0 / sa)[:, None] * (self.N @ LU1)) / sa[:, None]
        # G = Z'H^-1 [X y] = Z'[X y] - Z'Z Lambda U
        G0 = self.AX0 - (self.d * t0)[:, None] * U0 - self.N @ LU1
        G1 = self.AX1 - t0 * (self.NT @ U0) - self.A11 @ LU1
        LXp = f.LX[:p, :p]
        beta = scipy.linalg.solve_triangular(LXp.T, f.LX[p, :p], lower=False, check_finite=False) if p else np.zeros(0)
        Linv = scipy.linalg.solve_triangular(LXp, np.eye(p), lower=True, check_finite=False)
        cov = Linv.T @ Linv  # (X'H^-1X)^-1
        # per row of G: |L_X^-1 g_x|^2 (trace term), (g_x' C e_j)^2 (d cov), (g_y - g_x beta)^2
        W0, W1 = G0[:, :p] @ Linv.T, G1[:, :p] @ Linv.T
        V0, V1 = G0[:, :p] @ cov, G1[:, :p] @ cov
        e0 = G0[:, p] - G0[:, :p] @ beta
        e1 = G1[:, p] - G1[:, :p] @ beta
        # S^-1 from the factor (LAPACK potri on a copy; lower triangle)
        Sinv, info = lapack.dpotri(np.array(L1, order="F"), lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError("inverting the crossed level's factor failed")
        sflat = Sinv.reshape(-1, order="F")
        sdiag = sflat[self.diag_f]
        k = self.s.ntheta
        trace_h, trace_x, zpy2 = np.zeros(k), np.zeros(k), np.zeros(k)
        dcov = np.zeros((k, p))
        i0 = self.idx0
        K = self._gram_lower(1.0 / a**2) * lam[self.low_r] * lam[self.low_c]
        trace_h[i0] = float(np.sum(self.d / a) - np.sum(self.low_mult * K * sflat[self.low_fflat]))
        trace_x[i0], zpy2[i0], dcov[i0] = np.sum(W0**2), e0 @ e0, np.sum(V0**2, axis=0)
        for ki, cols in self.dense_terms:
            g = lam[cols.start] ** 2
            if g > 0:
                trace_h[ki] = float(np.sum(1.0 - sdiag[cols])) / g
            else:
                trace_h[ki] = self._trace_at_zero(f, cols)
            trace_x[ki] = np.sum(W1[cols] ** 2)
            zpy2[ki] = e1[cols] @ e1[cols]
            dcov[ki] = np.sum(V1[cols] ** 2, axis=0)
        vpv = self._vpv(f, e0, e1, cov)
        return ScalarPieces(trace_h, trace_x, zpy2, dcov, cov, f.r2, self.criterion_of(f), vpv)

    def _vpv(self, f: ScalarFactor, c0: np.ndarray, c1: np.ndarray, cov: np.ndarray) -> np.ndarray:
        """v_k'P v_l for v_k = Z_k c_k, c_k = Z_k'P y (Gilmour et al. 1995's average information).

        With B = Z'V (columns Z'Z_l c_l) and E = L^-1 Lambda B (forward substitution as for
        D): V'H^-1V = V'V - E'E and X'H^-1V = X'V - D_X'E; then P adds -(X'H^-1V)'C(X'H^-1V).
        """
        p, k = self.p, self.s.ntheta
        B0, B1 = np.zeros((self.n0, k)), np.zeros((self.Q, k))
        XV = np.zeros((p, k))
        i0 = self.idx0
        B0[:, i0], B1[:, i0] = self.d * c0, self.NT @ c0
        XV[:, i0] = self.AX0[:, :p].T @ c0
        for ki, cols in self.dense_terms:
            B0[:, ki] = self.N[:, cols] @ c1[cols]
            B1[:, ki] = self.A11[:, cols] @ c1[cols]
            XV[:, ki] = self.AX1[cols, :p].T @ c1[cols]
        VV = np.zeros((k, k))
        VV[i0] = c0 @ B0
        for ki, cols in self.dense_terms:
            VV[ki] = c1[cols] @ B1[cols]
        t0, lam, a = f.theta[self.idx0], f.lam, f.a
        E0 = (t0 / np.sqrt(a))[:, None] * B0
        E1 = scipy.linalg.solve_triangular(
            f.L1, lam[:, None] * (B1 - self.NT @ ((t0 * t0 / a)[:, None] * B0)), lower=True,
            check_finite=False)
        VHV = VV - E0.T @ E0 - E1.T @ E1
        XHV = XV - f.D0[:, :p].T @ E0 - f.D1[:, :p].T @ E1
        out = VHV - XHV.T @ cov @ XHV
        return (out + out.T) / 2

    def _trace_at_zero(self, f: ScalarFactor, cols: slice) -> float:
        """tr(Z_k'H^-1Z_k) = sum_j T_jj - |L_1^-1 Lambda_1 T e_j|^2 for a term with gamma_k = 0."""
        w = f.gamma0 / f.a
        Ncols = self.N[:, cols]
        T = self.A11[:, cols] - np.asarray((self.NT @ Ncols.multiply(w[:, None])).todense())
        Y = scipy.linalg.solve_triangular(f.L1, f.lam[:, None] * T, lower=True, check_finite=False)
        return float(np.trace(T[cols]) - np.sum(Y**2))

    def gradient_gamma(self, pc: ScalarPieces) -> np.ndarray:
        """d criterion / d gamma (profiled REML criterion or ML deviance)."""
        n, p = self.s.n, self.p
        if self.reml:
            return pc.trace_h - pc.trace_x - (n - p) * pc.zpy2 / pc.r2
        return pc.trace_h - n * pc.zpy2 / pc.r2

    def objective_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray, ScalarPieces]:
        """Criterion and its gradient in theta (d/dtheta = 2 theta d/dgamma)."""
        pc = self.pieces(self.factor(theta))
        return pc.objective, 2.0 * np.asarray(theta, dtype=float) * self.gradient_gamma(pc), pc

    # ------------------------------------------------------------------------ optimiser
    def average_information(self, pc: ScalarPieces) -> np.ndarray:
        """Average-information approximation of the criterion's Hessian in gamma.

        The exact Hessian is -tr(P Z_k Z_k' P Z_l Z_l') + m (2 v_k'Pv_l / y'Py - q_k q_l /
        (y'Py)^2), m = n - p (REML) or n, q_k = |Z_k'Py|^2; the trace is replaced by its
        estimate v_k'P v_l / sigma^2 (its expectation; Gilmour, Thompson & Cullis 1995), which
        leaves m (v'Pv / y'Py - q q' / (y'Py)^2): positive semi-definite and cheap.
        """
        m = self.s.n - self.p if self.reml else self.s.n
        return m * (pc.vpv / pc.r2 - np.outer(pc.zpy2, pc.zpy2) / pc.r2**2)

    def optimise(self, start: np.ndarray, max_iter: int = 200, tol: float = 1e-10):
        """Minimise the criterion over gamma = theta^2 >= 0 by projected Newton steps with the
        average-information Hessian (AI-REML) and an Armijo line search.

        Over gamma the gradient does not vanish on the bound (over theta it does, which would
        stop a gradient method at theta = 0 although the interior is better). Coordinates on
        the bound with an outward slope are held; the iteration stops when the predicted fall
        of the criterion (the Newton decrement) is below ``tol``, or when a step no longer
        changes gamma. Returns theta and a result with ``success``, ``message``, ``nit``.
        """
        gamma = np.asarray(start, dtype=float) ** 2
        pc = self.pieces(self.factor(np.sqrt(gamma)))
        f, g = pc.objective, self.gradient_gamma(pc)
        message, success, it = "iteration limit reached", False, 0
        for it in range(1, max_iter + 1):
            step = self._newton_step(gamma, g, self.average_information(pc))
            decrement = -float(g @ step)
            if decrement < tol:
                message, success = "Newton decrement below tolerance", True
                break
            alpha, moved = 1.0, False
            for _ in range(60):
                cand = np.maximum(gamma + alpha * step, 0.0)
                if np.all(np.abs(cand - gamma) <= 1e-14 * (1.0 + gamma)):
                    break
                pc_c = self.pieces(self.factor(np.sqrt(cand)))
                if np.isfinite(pc_c.objective) and pc_c.objective <= f + 1e-4 * float(g @ (cand - gamma)):
                    gamma, pc, f, g, moved = cand, pc_c, pc_c.objective, self.gradient_gamma(pc_c), True
                    break
                alpha *= 0.5
            if not moved:
                message, success = "step below rounding of gamma", True
                break
        return np.sqrt(gamma), optimize.OptimizeResult(x=np.sqrt(gamma), fun=f, success=success,
                                                       message=message, nit=it)

    @staticmethod
    def _newton_step(gamma: np.ndarray, grad: np.ndarray, H: np.ndarray) -> np.ndarray:
        """Newton step over the free coordinates (held: on the bound with an outward slope)."""
        free = ~((gamma <= 0.0) & (grad > 0.0))
        step = np.zeros_like(gamma)
        if not free.any():
            return step
        Hf = H[np.ix_(free, free)]
        gf = grad[free]
        scale = np.sqrt(np.maximum(np.diag(Hf), 1e-300))
        try:  # Cholesky of the scaled matrix; a singular AI falls back to a damped one
            c = scipy.linalg.cho_factor(Hf / np.outer(scale, scale) + 1e-12 * np.eye(len(gf)))
            step[free] = -scipy.linalg.cho_solve(c, gf / scale) / scale
        except np.linalg.LinAlgError:
            step[free] = -gf / scale**2
        return step

    # ------------------------------------------------------------------------ second order
    def theta_derivatives(self, theta: np.ndarray, sigma: float, delta: float = 1e-4):
        """Gradients and Hessians at the optimum, from central differences of the exact gradient.

        Returns ``(grad, hess, hess_varpar, jac_cov)``: gradient and Hessian of the profiled
        criterion in theta (for lme4's convergence check); the Hessian of lmerTest's deviance in
        varpar = (theta, sigma); the Jacobian of diag(Cov(beta)) = diag(sigma^2 (X'H^-1X)^-1)
        in varpar (p x (k + 1)). ``2k`` gradient evaluations in all, shared by both uses.
        """
        theta = np.asarray(theta, dtype=float)
        k, n, p = len(theta), self.s.n, self.p
        nres = n - p if self.reml else n
        s2 = sigma**2
        pc = self.pieces(self.factor(theta))

        def profiled(pc_, th):
            return 2.0 * th * self.gradient_gamma(pc_)

        def unprofiled(pc_, th):  # d deviance(theta, sigma) / d theta at fixed sigma
            g = pc_.trace_h - pc_.zpy2 / s2
            if self.reml:
                g = g - pc_.trace_x
            return 2.0 * th * g

        grad = profiled(pc, theta)
        Hp, Hu = np.zeros((k, k)), np.zeros((k, k))
        for j in range(k):
            e = np.zeros(k)
            e[j] = delta
            up = self.pieces(self.factor(theta + e))
            dn = self.pieces(self.factor(theta - e))
            # the criterion is even in each theta: negative steps use |theta| inside factor()
            Hp[:, j] = (profiled(up, theta + e) - profiled(dn, theta - e)) / (2 * delta)
            Hu[:, j] = (unprofiled(up, theta + e) - unprofiled(dn, theta - e)) / (2 * delta)
        Hp, Hu = (Hp + Hp.T) / 2, (Hu + Hu.T) / 2
        # sigma parts of lmerTest's deviance: r2/sigma^2 + nres log(2 pi sigma^2) + ...
        hv = np.zeros((k + 1, k + 1))
        hv[:k, :k] = Hu
        hv[:k, k] = hv[k, :k] = 4.0 * theta * pc.zpy2 / sigma**3
        hv[k, k] = 6.0 * pc.r2 / sigma**4 - 2.0 * nres / s2
        jac = np.zeros((p, k + 1))
        jac[:, :k] = (2.0 * theta[:, None] * s2 * pc.dcov).T
        jac[:, k] = 2.0 * sigma * np.diag(pc.cov)
        return grad, Hp, hv, jac
