"""Batched dense linear algebra on stacks of small blocks, groups on the LAST axis.

A stack of ``n`` blocks of size ``a x b`` is stored as an array of shape ``(a, b, n)``, so that
each block entry is a contiguous vector over groups. numpy's gufuncs would loop over LAPACK
calls one 2 x 2 block at a time; looping instead over the tiny block dimensions lets every
operation run over all groups at once (memory-bound vector arithmetic, no Python loop over
groups). A level with a single large block (the dense crossed level) has ``n == 1`` and goes
to LAPACK directly.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

_SMALL = 8


def _dense(q: int, n: int) -> bool:
    """Blocks too large for the unrolled loops go to LAPACK."""
    return q > _SMALL


def cholesky(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of each block of ``M`` (shape (q, q, n))."""
    q, _, n = M.shape
    if q == 1:
        return np.sqrt(M)
    if _dense(q, n):
        return np.moveaxis(np.linalg.cholesky(np.moveaxis(M, 2, 0)), 0, 2)
    L = np.zeros_like(M)
    for j in range(q):
        s = M[j, j].copy()
        for k in range(j):
            s -= L[j, k] ** 2
        d = np.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, q):
            s = M[i, j].copy()
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / d
    return L


def solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``L_g X_g = B_g`` for each group g (L (q, q, n) lower triangular, B (q, r, n))."""
    q, _, n = L.shape
    if q == 1:
        return B / L
    if _dense(q, n):
        if n == 1:
            return scipy.linalg.solve_triangular(L[:, :, 0], B[:, :, 0], lower=True)[:, :, None]
        X = np.linalg.solve(np.moveaxis(L, 2, 0), np.moveaxis(B, 2, 0))
        return np.moveaxis(X, 0, 2)
    X = np.empty(B.shape)
    np.divide(B[0], L[0, 0], out=X[0])
    for i in range(1, q):
        acc = L[i, 0] * X[0]
        for k in range(1, i):
            acc += L[i, k] * X[k]
        np.subtract(B[i], acc, out=acc)
        np.divide(acc, L[i, i], out=X[i])
    return X


def solve_upper_t(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``L_g' X_g = B_g`` for each group g (L (q, q, n) lower triangular, B (q, r, n))."""
    q, _, n = L.shape
    if q == 1:
        return B / L
    if _dense(q, n):
        if n == 1:
            return scipy.linalg.solve_triangular(L[:, :, 0], B[:, :, 0], lower=True, trans="T")[:, :, None]
        X = np.linalg.solve(np.swapaxes(np.moveaxis(L, 2, 0), 1, 2), np.moveaxis(B, 2, 0))
        return np.moveaxis(X, 0, 2)
    X = np.empty(B.shape)
    for i in reversed(range(q)):
        acc = B[i].copy()
        for k in range(i + 1, q):
            acc -= L[k, i] * X[k]
        X[i] = acc / L[i, i]
    return X


def sandwich(A: np.ndarray, La: np.ndarray, Lb: np.ndarray | None) -> np.ndarray:
    """``La' A_g Lb`` for every block of ``A`` (shape (a, b, n)); ``Lb=None`` is the identity."""
    a, b, n = A.shape
    if Lb is None:
        if a * a <= 64:
            # out[i] = sum_k La[k, i] A[k]: one small GEMM over the flattened rest
            return (La.T @ A.reshape(a, b * n)).reshape(a, b, n)
        return np.tensordot(La.T, A, axes=(1, 0))
    if a * b <= 64:
        K = np.kron(La, Lb)  # K[(k,l),(i,j)] = La[k,i] Lb[l,j]
        return (K.T @ A.reshape(a * b, n)).reshape(a, b, n)
    left = np.tensordot(La.T, A, axes=(1, 0))  # (a, b, n)
    return np.moveaxis(np.tensordot(left, Lb, axes=(1, 0)), 2, 1)


def crossprod_sum(C: np.ndarray, D: np.ndarray, starts: np.ndarray, n_out: int) -> np.ndarray:
    """Segment sums of ``C_g' D_g`` (C (k, a, n), D (k, b, n)) over consecutive groups."""
    k, a, n = C.shape
    b = D.shape[1]
    if n_out == 1:
        out = np.zeros((a, b))
        for j in range(k):
            out += C[j] @ D[j].T
        return out[:, :, None]
    prod = np.zeros((a, b, n))
    for j in range(k):
        for i in range(a):
            prod[i] += C[j, i] * D[j]
    return np.add.reduceat(prod, starts, axis=2)


def gram(D: np.ndarray) -> np.ndarray:
    """``sum_g D_g' D_g`` for D (k, b, n)."""
    k, b, n = D.shape
    if k <= _SMALL:
        out = D[0] @ D[0].T
        for j in range(1, k):
            out += D[j] @ D[j].T
        return out
    D2 = np.moveaxis(D, 1, 0).reshape(b, k * n)
    return D2 @ D2.T


def logdet_diag(L: np.ndarray) -> float:
    """``2 * sum(log(diag))`` over all blocks: log-determinant of ``L L'``."""
    q = L.shape[0]
    if q == 2:
        # diagonals of these factors are >= 1 (M = Lambda'Z'Z Lambda + I), so the product
        # cannot underflow; one log per group instead of two
        return 2.0 * float(np.sum(np.log(L[0, 0] * L[1, 1])))
    return 2.0 * float(sum(np.sum(np.log(L[i, i])) for i in range(q)))
