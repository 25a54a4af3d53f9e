"""Fast REML for two crossed scalar random intercepts, ``y ~ 1 + (1|a) + (1|b)``.

The general engine (:func:`alliance.lmm.fit`) handles any lme4 formula; this module is its fast
path for the one model with two crossed grouping factors, each with a random intercept only,
and its one-factor variant ``y ~ 1 + (1|a)`` on the same design. It works on sufficient
statistics (per-level sums and counts, the sparse ``a × b`` count matrix) and evaluates the
profiled REML criterion, its analytic gradient and the REML fit of many responses at once,
which makes parametric bootstraps and observed-information covariances cheap.

Factor ``a`` may have many levels with few observations each; factor ``b`` should have few
levels (its dense Schur complement costs ``n_b^3`` per evaluation). Every quantity follows
lme4's definitions (Bates et al. 2015): ``theta`` the relative standard deviations, the REML
criterion -2 restricted log-likelihood; the criterion is optimised over ``gamma = theta^2``.

References
----------
Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects models
using lme4. *Journal of Statistical Software*, 67(1).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import optimize

from .design import MAX_DENSE

try:  # pinned in requirements.lock (via scikit-learn); only speed depends on it
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "CrossedComponents",
    "CrossedREML",
    "CrossedResponses",
    "fit_crossed",
    "single_threaded_blas",
]


@dataclass(frozen=True)
class CrossedComponents:
    """REML fit of ``y ~ 1 + (1|a) + (1|b)`` (or ``y ~ 1 + (1|a)``).

    Attributes
    ----------
    var_a, var_b, residual : float
        Variance components (lme4's ``VarCorr``); ``var_b`` is 0 for the one-factor model.
    intercept : float
        Fixed intercept (GLS estimate at the variance components, lme4's ``fixef``).
    reml_criterion : float
        -2 × restricted log-likelihood, lme4's ``REMLcrit``.
    theta : ndarray
        Relative standard deviations (a, b), lme4's ``theta``.
    n_obs, n_a, n_b : int
        Observations and levels of the two factors.
    converged : bool
        Whether the REML gradient vanishes at the estimate (|gradient| < 0.002 except in a
        direction held by the bound theta >= 0; lme4's tolerance).
    """

    var_a: float
    var_b: float
    residual: float
    intercept: float
    reml_criterion: float
    theta: np.ndarray
    n_obs: int
    n_a: int
    n_b: int
    converged: bool


@dataclass(frozen=True)
class CrossedResponses:
    """Sufficient statistics of B centred responses for :class:`CrossedREML`.

    ``C0a`` = [Z_a'y_1..Z_a'y_B, Z_a'1 (B times)] (levels of a × 2B), ``C0b`` likewise for b,
    ``yy`` = y'y and ``mean`` the mean removed by centring (length B).
    """

    C0a: np.ndarray
    C0b: np.ndarray
    yy: np.ndarray
    mean: np.ndarray

    def take(self, idx) -> CrossedResponses:
        idx = np.arange(len(self.yy))[idx]
        cols = np.concatenate([idx, idx + len(self.yy)])
        return CrossedResponses(self.C0a[:, cols], self.C0b[:, cols], self.yy[idx], self.mean[idx])


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a non-negative integer array, as ``np.unique(rows, axis=0,
    return_index=True, return_inverse=True)`` finds them: the index of each distinct row's
    first occurrence in lexicographic order of the rows, and each row's distinct row.

    One integer key per row (the first column its most significant digit) replaces np.unique's
    sort of row records, which is about 10 times slower at 100,000 rows; the same order keeps
    the bytes of every sum taken over the distinct rows. Rows too wide for an int64 key take
    np.unique itself.
    """
    base, width = int(rows.max(initial=0)) + 1, rows.shape[1]
    if width * np.log2(base) >= 62:  # the key would overflow int64
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        return first, inverse.ravel()
    key = rows.astype(np.int64) @ (base ** np.arange(width - 1, -1, -1, dtype=np.int64))
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.ravel()


class PatternCriterion:
    """:meth:`CrossedREML.evaluate`'s criterion for one response, with the a-levels that share
    their row of N (the same b-levels, as often) gathered into one pattern.

    Levels of a enter the criterion through their row n_i of N, their count d_i (the row's
    sum) and their response sum; every term of the evaluation is, per level, a function of
    (n_i, d_i) times 1, the response sum or its square. Summed per pattern g (m_g levels, sums
    S_g and Q_g of the response sums and of their squares), an evaluation costs
    O(patterns x n_b^2) instead of O(n_a): in a coding study the targets are sessions and the
    patterns the sets of coders who rated them (11 patterns of 4 coders for 83,000 sessions;
    8 ms per evaluation before, a profile interval taking about 1,700 of them). Equal to
    :meth:`CrossedREML.evaluate` to rounding (tested in tests/test_lmm_crossed.py).
    """

    def __init__(self, engine: CrossedREML, resp: CrossedResponses):
        if resp.C0a.shape[1] != 2:
            raise ValueError("a pattern criterion takes one response")
        N = engine.N.tocsr()
        N.sort_indices()
        per_row = np.diff(N.indptr)
        width = int(per_row.max()) if len(per_row) else 0
        # each level's (b-level, count) pairs in b order, 0 after its last pair; every entry
        # one more than its value, so that no real pair sorts with the padding
        key = np.zeros((N.shape[0], 2 * width), dtype=np.int64)
        slot = np.arange(N.nnz) - np.repeat(N.indptr[:-1], per_row)
        rows = np.repeat(np.arange(N.shape[0]), per_row)
        key[rows, 2 * slot] = N.indices + 1
        key[rows, 2 * slot + 1] = np.rint(N.data).astype(np.int64) + 1
        first, inverse = distinct_rows(key)
        G = len(first)
        ya = resp.C0a[:, 0]
        self.P = N[first].toarray()  # patterns x n_b
        self.m = np.bincount(inverse, minlength=G).astype(float)
        self.d = engine.da[first]
        self.S = np.bincount(inverse, weights=ya, minlength=G)
        self.Q = np.bincount(inverse, weights=ya * ya, minlength=G)
        self.C0b, self.db, self.yy, self.n = resp.C0b, engine.db, float(resp.yy[0]), engine.n
        self.one_way = engine.one_way

    def __call__(self, gamma_a: float, gamma_b: float) -> float:
        ga = max(float(gamma_a), 0.0)
        gb = 0.0 if self.one_way else max(float(gamma_b), 0.0)
        ta, tb = np.sqrt(ga), np.sqrt(gb)
        c = ta * tb
        P, m, d, Sg, Qg = self.P, self.m, self.d, self.S, self.Q
        a = 1.0 + d * ga
        w = c / a
        S = -c * (P.T @ ((m * w)[:, None] * P))
        S[np.diag_indices_from(S)] += gb * self.db + 1.0
        Cb = self.C0b * tb
        Wb = np.linalg.solve(S, Cb - P.T @ (ta * w[:, None] * np.column_stack([Sg, m * d])))
        NWb = P @ Wb
        cw_y = np.sum(ga * Qg / a - ta * w * NWb[:, 0] * Sg) + Cb[:, 0] @ Wb[:, 0]
        cw_1 = np.sum(m * (ga * d * d / a - ta * d * w * NWb[:, 1])) + Cb[:, 1] @ Wb[:, 1]
        c1w = np.sum(ta * d * (ta * Sg / a - m * w * NWb[:, 0])) + Cb[:, 1] @ Wb[:, 0]
        logdet = float(m @ np.log(a)) + np.linalg.slogdet(S)[1]
        dfr = self.n - 1
        oho, ohy, yhy = self.n - cw_1, -c1w, self.yy - cw_y
        pwrss = yhy - ohy * ohy / oho
        return float(logdet + np.log(oho) + dfr * (1.0 + np.log(2.0 * np.pi * pwrss / dfr)))


def _pair_matrix(N: sp.csr_matrix, weight: np.ndarray) -> sp.csr_matrix:
    """Sparse n_a × n_b^2 matrix E with E[i, j*R + k] = N_ij N_ik weight_k.

    Quadratic forms n_i' X n_i (weighted) of every a-level's counts n_i over the b-levels
    become E @ vec(X), at a cost of sum_i (b-levels of a-level i)^2 instead of n_a × n_b^2.
    """
    R = N.shape[1]
    coo = N.tocoo()
    by_row = pd.DataFrame({"i": coo.row, "j": coo.col, "v": coo.data})
    pairs = by_row.merge(by_row, on="i", suffixes=("_a", "_b"))
    values = pairs["v_a"].to_numpy() * pairs["v_b"].to_numpy() * weight[pairs["j_b"].to_numpy()]
    cols = pairs["j_a"].to_numpy() * R + pairs["j_b"].to_numpy()
    return sp.csr_matrix((values, (pairs["i"].to_numpy(), cols)), shape=(N.shape[0], R * R))


class CrossedREML:
    """Profiled REML criterion of y = mu + Z_a u_a + Z_b u_b + e, vectorised over responses.

    Works on sufficient statistics only: per-level sums and counts of both factors and the
    sparse n_a × n_b count matrix N. In lme4's notation (Bates et al. 2015)
    M = Lambda' Z' Z Lambda + I has a diagonal a-block A = theta_a^2 D_a + I, a diagonal
    b-block and the off-diagonal block B = theta_a theta_b N; the Schur complement of the
    b-block, S = C - B' A^-1 B, is small and dense (factor b has few levels). One evaluation
    costs O(sum_i k_i^2 + n_b^3) per response, k_i the b-levels met by a-level i, with no loop
    over levels; a batch of responses (columns, e.g. bootstrap replicates) is evaluated in one
    pass.

    Parameters
    ----------
    a, b : ndarray of int
        Codes 0..n_a-1 and 0..n_b-1 of each observation's levels (every level present).
    n_a, n_b : int
        Numbers of levels.
    one_way : bool, default False
        The model ``y ~ 1 + (1|a)`` (the b variance held at 0).

    The criterion is optimised over the variance ratios gamma = theta^2 >= 0 rather than
    over theta as lme4 does: d/dtheta vanishes at theta = 0 (the criterion depends on
    theta^2), which would leave a gradient method stuck on the boundary; d/dgamma does not.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, n_a: int, n_b: int,
                 one_way: bool = False):
        self.n = len(a)
        self.na, self.nb = n_a, n_b
        self.codes_a, self.codes_b = a, b
        ones = np.ones(self.n)
        self.Za = sp.csr_matrix((ones, (a, np.arange(self.n))), shape=(n_a, self.n))
        self.Zb = sp.csr_matrix((ones, (b, np.arange(self.n))), shape=(n_b, self.n))
        self.da = np.asarray(self.Za.sum(axis=1)).ravel()
        self.db = np.asarray(self.Zb.sum(axis=1)).ravel()
        self.N = (self.Za @ self.Zb.T).tocsr()
        self.NT = self.N.T.tocsr()
        self.E = _pair_matrix(self.N, np.ones(n_b))
        self.E_db = _pair_matrix(self.N, self.db)
        self.N2_rows = np.asarray(self.N.multiply(self.N).sum(axis=1)).ravel()
        self.one_way = one_way

    def one_way_model(self) -> CrossedREML:
        """The same design under ``y ~ 1 + (1|a)`` (shares the design matrices)."""
        other = copy.copy(self)
        other.one_way = True
        return other

    def responses(self, Y: np.ndarray) -> CrossedResponses:
        """Sufficient statistics of the columns of Y, centred.

        Centring leaves REML unchanged (the intercept absorbs it) and keeps y'H^-1 y free
        of cancellation.
        """
        Y = np.asarray(Y, dtype=float).reshape(self.n, -1)
        mean = Y.mean(axis=0)
        Yc = Y - mean
        B = Y.shape[1]
        C0a = np.hstack([self.Za @ Yc, np.repeat(self.da[:, None], B, axis=1)])
        C0b = np.hstack([self.Zb @ Yc, np.repeat(self.db[:, None], B, axis=1)])
        return CrossedResponses(C0a, C0b, np.sum(Yc**2, axis=0), mean)

    def _batched_solve(self, Sinv: np.ndarray, R2: np.ndarray) -> np.ndarray:
        """Apply each response's S^-1 to its [y, 1] columns of R2 (n_b × 2B)."""
        B = Sinv.shape[0]
        R3 = R2.reshape(self.nb, 2, B).transpose(2, 0, 1)
        return (Sinv @ R3).transpose(1, 2, 0).reshape(self.nb, 2 * B)

    def evaluate(self, gamma: np.ndarray, resp: CrossedResponses, gradient: bool = True):
        """REML criterion, gradient in gamma, intercept shift and sigma^2 of B responses.

        ``gamma`` is B × 2 (variance ratios of a and b); returns arrays of length B and the
        gradient as B × 2 (None with ``gradient=False``: a profile search needs the criterion
        only, and the gradient costs as much again). Columns of the 2B-wide work arrays are
        [y_1..y_B, 1_1..1_B].
        """
        gamma = np.maximum(np.asarray(gamma, dtype=float).reshape(-1, 2), 0.0)
        B = gamma.shape[0]
        ga = gamma[:, 0]
        gb = np.zeros(B) if self.one_way else gamma[:, 1]
        ta, tb = np.sqrt(ga), np.sqrt(gb)
        c = ta * tb
        a = 1.0 + self.da[:, None] * ga  # n_a × B
        w = c / a  # A^-1 B = diag(w) N
        NtG = (self.E.T @ w).T.reshape(B, self.nb, self.nb)  # N' diag(w) N
        S = -c[:, None, None] * NtG
        S[:, np.arange(self.nb), np.arange(self.nb)] += gb[:, None] * self.db + 1.0
        # S is the Schur complement of M >= I, so S >= I: an explicit inverse is safe.
        Sinv = np.linalg.inv(S)
        C0a, C0b = resp.C0a, resp.C0b
        ta2, tb2, w2, a2 = np.tile(ta, 2), np.tile(tb, 2), np.tile(w, 2), np.tile(a, 2)
        Ca, Cb = C0a * ta2, C0b * tb2
        Wb = self._batched_solve(Sinv, Cb - self.NT @ (w2 * Ca))
        NWb = self.N @ Wb
        Wa = Ca / a2 - w2 * NWb
        CW = np.sum(Ca * Wa, axis=0) + np.sum(Cb * Wb, axis=0)
        C1W = np.sum(Ca[:, B:] * Wa[:, :B], axis=0) + np.sum(Cb[:, B:] * Wb[:, :B], axis=0)
        logdet = np.sum(np.log(a), axis=0) + np.linalg.slogdet(S)[1]
        dfr = self.n - 1
        oho, ohy, yhy = self.n - CW[B:], -C1W, resp.yy - CW[:B]
        beta = ohy / oho
        pwrss = yhy - ohy * beta
        crit = logdet + np.log(oho) + dfr * (1.0 + np.log(2.0 * np.pi * pwrss / dfr))
        work = dict(ga=ga, gb=gb, ta2=ta2, tb2=tb2, a=a, w=w, NtG=NtG, Sinv=Sinv, Wa=Wa,
                    Wb=Wb, NWb=NWb, C0a=C0a, C0b=C0b, oho=oho, beta=beta, pwrss=pwrss)
        return crit, (self._gradient(work) if gradient else None), beta, pwrss / dfr

    def pattern_criterion(self, resp: CrossedResponses) -> PatternCriterion:
        """The REML criterion of one response from the a-levels grouped by their row of N
        (:class:`PatternCriterion`): what a profile search evaluates thousands of times."""
        return PatternCriterion(self, resp)

    def _gradient(self, k: dict) -> np.ndarray:
        # d crit / d gamma_j = tr(P Z_j Z_j') - (n - 1) |Z_j' P y|^2 / y'Py, P the REML
        # projector of H = I + gamma_a Z_a Z_a' + gamma_b Z_b Z_b'; H^-1 by Woodbury via M,
        # whose inverse has blocks A^-1 + G S^-1 G' (a), -G S^-1, S^-1 (b),
        # G = diag(w) N. Traces over the a-levels need only q_i = n_i' S^-1 n_i.
        ga, gb, a, w, Sinv, NtG = k["ga"], k["gb"], k["a"], k["w"], k["Sinv"], k["NtG"]
        B = len(ga)
        c = np.sqrt(ga * gb)
        da, db = self.da, self.db
        Sinv_flat = Sinv.reshape(B, -1).T
        q = self.E @ Sinv_flat
        q_db = self.E_db @ Sinv_flat
        diag_aa = 1.0 / a + w**2 * q
        kmk_a = ga * (da**2 @ diag_aa) - 2 * c * (da @ (w * q)) + gb * q.sum(axis=0)
        kmk_b = (ga * (self.N2_rows @ (1.0 / a) + np.sum((NtG @ Sinv) * NtG, axis=(1, 2)))
                 - 2 * c * np.sum(w * q_db, axis=0)
                 + gb * (np.diagonal(Sinv, axis1=1, axis2=2) @ db**2))
        Ua = k["C0a"] - k["ta2"] * da[:, None] * k["Wa"] - k["tb2"] * k["NWb"]
        Ub = k["C0b"] - k["ta2"] * (self.NT @ k["Wa"]) - k["tb2"] * db[:, None] * k["Wb"]
        oho, beta, pwrss = k["oho"], k["beta"], k["pwrss"]
        grad = np.empty((B, 2))
        for j, (kmk, U) in enumerate(((kmk_a, Ua), (kmk_b, Ub))):
            trace_p = self.n - kmk - np.sum(U[:, B:] ** 2, axis=0) / oho
            zpy = U[:, :B] - beta * U[:, B:]
            grad[:, j] = trace_p - (self.n - 1) * np.sum(zpy**2, axis=0) / pwrss
        if self.one_way:
            grad[:, 1] = 0.0
        return grad

    def converged(self, gamma: np.ndarray, grad: np.ndarray, tol: float = 2e-3) -> np.ndarray:
        """lme4's check on the theta scale, |d crit / d theta| = |2 theta d/dgamma| < tol;
        on the bound gamma = 0 the slope must point outwards."""
        interior = gamma > 0
        bad = np.where(interior, np.abs(2 * np.sqrt(np.maximum(gamma, 0)) * grad) >= tol,
                       grad <= -tol)
        if self.one_way:
            bad[:, 1] = False
        return ~bad.any(axis=1)

    def moment_start(self, resp: CrossedResponses) -> np.ndarray:
        """Starting theta from moments of one response: variance of the a-level means, of the
        b-level means of deviations from the a-level means, and the variance within a-levels.
        Halves the optimiser's evaluations against a start at theta = 1 (20,000 a-levels,
        8 b-levels).
        """
        a_mean = resp.C0a[:, 0] / self.da
        within = max((resp.yy[0] - self.da @ a_mean**2) / max(self.n - self.na, 1), 1e-12)
        v_a = np.var(a_mean, ddof=1) - within / np.mean(self.da)
        v_b = np.var((resp.C0b[:, 0] - self.NT @ a_mean) / self.db, ddof=1) if self.nb > 1 else 0.0
        floor = 1e-3 * within
        return np.sqrt(np.maximum([v_a, v_b], floor) / within)

    def fit(self, resp: CrossedResponses, start: np.ndarray | None = None):
        """Minimise the REML criterion of one response by L-BFGS-B over gamma >= 0."""
        dim = 1 if self.one_way else 2
        start = self.moment_start(resp) if start is None else np.asarray(start, dtype=float)
        start = start[:dim] ** 2

        def objective(g):
            crit, grad, _, _ = self.evaluate(np.append(g, 0.0)[:2], resp)
            return float(crit[0]), grad[0, :dim]

        res = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                                bounds=[(0.0, None)] * dim,
                                options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000})
        gamma = np.append(res.x, 0.0)[:2]
        _, grad, _, _ = self.evaluate(gamma, resp)
        return np.sqrt(gamma), bool(self.converged(gamma[None], grad)[0])

    def fit_batch(self, resp: CrossedResponses, start: np.ndarray, max_iter: int = 100,
                  tol: float = 1e-10):
        """Minimise the criteria of B responses at once by projected Newton over gamma >= 0.

        Newton steps use a forward-difference Hessian of the analytic gradient; coordinates on
        the bound with an outward slope are held; an Armijo backtracking line search keeps
        every step a descent. Returns theta (B × 2) and the convergence flags.
        """
        B = len(resp.yy)
        gamma = np.tile(np.asarray(start, dtype=float)[:2] ** 2, (B, 1))
        if self.one_way:
            gamma[:, 1] = 0.0
        f, grad, _, _ = self.evaluate(gamma, resp)
        todo = np.arange(B)
        for _ in range(max_iter):
            if todo.size == 0:
                break
            sub = resp.take(todo)
            g0, f0, d0 = gamma[todo], f[todo], grad[todo]
            step = self._newton_step(g0, d0, self._hessian(g0, d0, sub))
            # Newton decrement: the predicted fall of the criterion (-2 log-likelihood).
            # Below 1e-10 the gradient meets lme4's tolerance even for large designs and
            # the remaining change of gamma is near the rounding of the gradient.
            decrement = -np.sum(d0 * step, axis=1)
            go = decrement > tol
            g1, f1, d1 = self._line_search(g0[go], f0[go], d0[go], step[go], sub.take(go))
            idx = todo[go]
            gamma[idx], f[idx], grad[idx] = g1, f1, d1
            todo = idx[np.any(g1 != g0[go], axis=1)]  # a stalled line search ends it too
        return np.sqrt(gamma), self.converged(gamma, grad)

    def _fixed(self, gamma: np.ndarray, grad: np.ndarray) -> np.ndarray:
        fixed = (gamma <= 0) & (grad > 0)
        if self.one_way:
            fixed[:, 1] = True
        return fixed

    def _hessian(self, gamma, grad, resp: CrossedResponses) -> np.ndarray:
        H = np.empty((len(gamma), 2, 2))
        for j in range(2):
            h = 1e-6 * (1.0 + gamma[:, j])
            shifted = gamma.copy()
            shifted[:, j] += h
            H[:, :, j] = (self.evaluate(shifted, resp)[1] - grad) / h[:, None]
        return 0.5 * (H + H.transpose(0, 2, 1))

    def _newton_step(self, gamma, grad, H) -> np.ndarray:
        fixed = self._fixed(gamma, grad)
        g = np.where(fixed, 0.0, grad)
        H = np.where(fixed[:, :, None] | fixed[:, None, :], 0.0, H)
        H[:, [0, 1], [0, 1]] = np.where(fixed, 1.0, H[:, [0, 1], [0, 1]])
        det = H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] ** 2
        pd_ = (H[:, 0, 0] > 0) & (det > 0)
        newton = -np.linalg.solve(np.where(pd_[:, None, None], H, np.eye(2)), g[:, :, None])[..., 0]
        # Where the Hessian is not positive definite: a scaled steepest-descent step.
        scaled = (1.0 + gamma) * g
        norm = np.maximum(np.linalg.norm(scaled, axis=1), 1e-300)
        descent = -(1.0 + gamma) * scaled / norm[:, None]
        return np.where(pd_[:, None], newton, descent)

    def _line_search(self, gamma, f, grad, step, resp: CrossedResponses, max_halvings: int = 40):
        """Armijo backtracking; a response whose step shrinks below rounding keeps gamma."""
        g_new, f_new, d_new = gamma.copy(), f.copy(), grad.copy()
        alpha = np.ones(len(gamma))
        left = np.arange(len(gamma))
        for _ in range(max_halvings):
            moves = np.any(np.abs(alpha[left, None] * step[left]) > 1e-12 * (1 + gamma[left]), 1)
            left = left[moves]
            if left.size == 0:
                break
            cand = np.maximum(gamma[left] + alpha[left, None] * step[left], 0.0)
            fc, dc, _, _ = self.evaluate(cand, resp.take(left))
            armijo = f[left] + 1e-4 * np.sum(grad[left] * (cand - gamma[left]), axis=1)
            ok = np.isfinite(fc) & (fc <= armijo)
            idx = left[ok]
            g_new[idx], f_new[idx], d_new[idx] = cand[ok], fc[ok], dc[ok]
            alpha[left[~ok]] *= 0.5
            left = left[~ok]
        return g_new, f_new, d_new


    # ----------------------------------------------------------------------------------------
    # Fits, simulation and the observed information
    # ----------------------------------------------------------------------------------------
    def fit_components(self, y: np.ndarray, start: np.ndarray | None = None) -> CrossedComponents:
        """REML fit of one response (L-BFGS-B over gamma >= 0, :meth:`fit`) as variances."""
        resp = self.responses(y)
        theta, ok = self.fit(resp, start)
        crit, _, shift, s2 = self.evaluate(theta**2, resp, gradient=False)
        s2 = float(s2[0])
        return CrossedComponents(
            var_a=float(s2 * theta[0] ** 2), var_b=float(s2 * theta[1] ** 2), residual=s2,
            intercept=float(resp.mean[0] + shift[0]), reml_criterion=float(crit[0]),
            theta=np.asarray(theta, dtype=float), n_obs=self.n, n_a=self.na,
            n_b=self.nb, converged=ok,
        )

    def simulate(self, fit: CrossedComponents, n_rep: int, rng: np.random.Generator) -> np.ndarray:
        """``n_rep`` responses (columns) drawn from the fitted model on this design."""
        ba = rng.standard_normal((self.na, n_rep)) * np.sqrt(fit.var_a)
        bb = rng.standard_normal((self.nb, n_rep)) * np.sqrt(fit.var_b)
        e = rng.standard_normal((self.n, n_rep)) * np.sqrt(fit.residual)
        return fit.intercept + ba[self.codes_a] + bb[self.codes_b] + e

    def refit_batch(self, Y: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Variance components (a, b, residual; 3 × B) of the columns of Y, warm-started at
        theta ``start`` (:meth:`fit_batch`), and the convergence flags."""
        resp = self.responses(Y)
        theta, ok = self.fit_batch(resp, start)
        _, _, _, s2 = self.evaluate(theta**2, resp, gradient=False)
        return np.vstack([s2 * theta[:, 0] ** 2, s2 * theta[:, 1] ** 2, s2]), ok

    def deviance(self, resp: CrossedResponses, v: np.ndarray) -> np.ndarray:
        """-2 restricted log-likelihood at variances v = (a, b, residual), one row each.

        The engine profiles sigma^2 out; the full criterion adds it back:
        D(gamma, s^2) = crit(gamma) - (n-1)(1 + log 2 pi s2hat) + (n-1)(log 2 pi s^2 + s2hat / s^2).
        """
        v = np.atleast_2d(v)
        reps = resp.take(np.zeros(len(v), dtype=int))
        crit, _, _, s2hat = self.evaluate(v[:, :2] / v[:, 2:3], reps, gradient=False)
        dfr = self.n - 1
        return (crit - dfr * (1.0 + np.log(2 * np.pi * s2hat))
                + dfr * (np.log(2 * np.pi * v[:, 2]) + s2hat / v[:, 2]))

    def covariance(self, resp: CrossedResponses, v: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Inverse observed information of the free variances (2 H^-1, H the Hessian of -2 l_R).

        Central differences with steps of 1e-4 of each variance; all points in one batch.
        Returns a 3 × 3 matrix, zero in the rows and columns of fixed (boundary) variances.
        """
        idx = np.flatnonzero(free)
        h = 1e-4 * v[idx]
        points, signs = [v], []
        for a_, i in enumerate(idx):
            for b_, j in enumerate(idx[a_:], start=a_):
                for si, sj in (((1, 1), (-1, -1)) if i == j else ((1, 1), (1, -1), (-1, 1), (-1, -1))):
                    x = v.copy()
                    x[i] += si * h[a_]
                    x[j] += sj * h[b_]
                    points.append(x)
                    signs.append((a_, b_, si * sj))
        f = self.deviance(resp, np.array(points))
        H = np.zeros((len(idx), len(idx)))
        for n_, (a_, b_, sign) in enumerate(signs, start=1):
            H[a_, b_] += sign * f[n_] / (4 * h[a_] * h[b_])
        # diagonal: (f(x + 2h) - 2 f(x) + f(x - 2h)) / 4h^2
        H[np.diag_indices(len(idx))] -= 2 * f[0] / (4 * h**2)
        H = np.triu(H) + np.triu(H, 1).T
        cov = np.zeros((3, 3))
        cov[np.ix_(idx, idx)] = 2.0 * np.linalg.inv(H) if np.all(np.linalg.eigvalsh(H) > 0) else np.nan
        return cov


def single_threaded_blas():
    """Tiny matrices: multi-threaded BLAS only spins (5x slower on a loaded 2-core machine)."""
    if threadpool_limits is None:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _level_codes(values, name: str) -> tuple[np.ndarray, int]:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {values.shape}")
    if pd.isna(values).any():
        raise ValueError(f"{name} has {int(pd.isna(values).sum())} missing level(s)")
    codes, levels = pd.factorize(values, sort=True)
    return codes.astype(np.intp), len(levels)


def fit_crossed(a, b, y, *, one_way: bool = False,
                start: np.ndarray | None = None) -> CrossedComponents:
    """REML fit of ``y ~ 1 + (1|a) + (1|b)``, the fast path for two crossed intercepts.

    The profiled REML criterion of Bates et al. (2015) is minimised over the variance ratios
    gamma = (var_a, var_b) / residual >= 0 (lme4's theta squared) by bound-constrained
    L-BFGS-B with the analytic gradient, so boundary fits (a zero variance, lme4's singular
    fit) are reached as in lme4. Linear algebra uses the ``a`` block of lme4's M (diagonal)
    and the small dense Schur complement of the ``b`` block, so the cost grows with the
    number of observations, not with ``n_a × n_b``. Agrees with :func:`alliance.lmm.fit` on
    the same formula (tests/test_lmm_crossed.py) and with lme4 1.1-31.

    Parameters
    ----------
    a, b : array-like
        Level of each observation in the two grouping factors (any sortable labels; levels
        are coded in sorted order). ``b`` is ignored by the fit when ``one_way``.
    y : array-like of float
        Response, finite.
    one_way : bool, default False
        Fit ``y ~ 1 + (1|a)`` instead (``var_b`` fixed at 0).
    start : array, optional
        Starting theta (a, b); default a moment estimate.

    Returns
    -------
    CrossedComponents

    Raises
    ------
    ValueError
        Lengths differ, missing levels, or a response that is not finite.
    """
    y = np.asarray(y, dtype=float)
    ca, n_a = _level_codes(a, "a")
    cb, n_b = _level_codes(b, "b")
    if not len(ca) == len(cb) == len(y) or y.ndim != 1:
        raise ValueError(f"a, b and y must be 1-D of one length, got {len(ca)}, {len(cb)} and shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"y has {int(np.sum(~np.isfinite(y)))} missing or infinite value(s)")
    with single_threaded_blas():
        return CrossedREML(ca, cb, n_a, n_b, one_way).fit_components(y, start)


def crossed_intercepts_theta(parsed, frame: pd.DataFrame, y: np.ndarray, reml: bool,
                             structure) -> np.ndarray | None:
    """theta of ``y ~ 1 + (1|a) + (1|b)`` by the fast path, in ``structure``'s term order.

    The hook through which :func:`alliance.lmm.fit` hands this one model to the fast path:
    REML, an intercept as the only fixed effect, two random intercepts on two different
    single grouping variables. Returns None for every other model, and when the fast fit does
    not meet lme4's convergence check (the general optimiser then runs as usual). The factor
    with more levels plays ``a`` (its blocks are diagonal), as in the general engine.
    """
    terms = parsed.random_terms
    if (not reml or not parsed.intercept or parsed.fixed_terms or len(terms) != 2
            or any(t.slopes or not t.intercept or len(t.group) != 1 for t in terms)
            or terms[0].group == terms[1].group):
        return None
    groups = [t.group[0] for t in terms]
    levels = [frame[g].nunique() for g in groups]
    if min(levels) > MAX_DENSE:
        # the smaller factor is this path's dense level (an n_b x n_b inverse per evaluation):
        # beyond the general engine's dense bound, that engine (block-diagonal when nested) is
        # faster: 5,000 therapists over 100,000 clients took minutes here, seconds there
        return None
    order = [0, 1] if levels[0] >= levels[1] else [1, 0]
    fit = fit_crossed(frame[groups[order[0]]], frame[groups[order[1]]], y)
    if not fit.converged:
        return None
    by_group = {groups[order[0]]: fit.theta[0], groups[order[1]]: fit.theta[1]}
    return np.array([by_group[t.group[0]] for t in structure.terms], dtype=float)
