"""Refits of a random-intercept model on reweighted clusters, from per-cluster cross-products.

A cluster bootstrap that draws whole clusters with replacement (Davison & Hinkley 1997,
sec. 3.8, strategy 1) changes only how often each cluster enters the model. For
``y ~ X + (1 | g)`` every piece of lme4's profiled criterion (Bates et al. 2015, eqs. 34-42)
is a sum over clusters of the cluster's own cross-products: with ``gamma = theta^2``, cluster
``t`` of ``n_t`` rows has ``H_t = I + gamma 1 1'``, ``H_t^-1 = I - c_t 1 1'`` with
``c_t = gamma / (1 + gamma n_t)`` and ``log|H_t| = log(1 + gamma n_t)``, so

    X'H^-1X = sum_t w_t (X_t'X_t - c_t s_t s_t'),      s_t = X_t'1,
    X'H^-1y = sum_t w_t (X_t'y_t - c_t s_t u_t),       u_t = 1'y_t,
    y'H^-1y = sum_t w_t (y_t'y_t - c_t u_t^2),
    log|H|  = sum_t w_t log(1 + gamma n_t),

where ``w_t`` is how often the cluster was drawn (a cluster drawn twice enters as two
clusters, as :func:`alliance.models.cluster_resample` relabels it). A refit then costs a few
dozen evaluations of ``O(clusters x p^2)`` instead of rebuilding the model frame and the
design of the resampled rows. theta is found by Brent's method (one dimension; the general
fit's COBYQA took 90% of a refit's time here); the convergence and singularity checks are
lme4's, as the general fit's. A refit here and :func:`alliance.lmm.fit` on the resampled rows
agree to the optimisers' tolerance: tested against such refits in tests/test_models.py
(bootstrap draws) and against lme4 1.1-31's leave-one-therapist-out refits in
tests/test_model_diagnostics.py.

Small data keep the refits of their rows (:func:`use_blocks`): up to :data:`ROW_REFITS_UP_TO`
rows a refit of the rows costs 30-60 ms on the general engine (COBYQA), which is the
reference this route is tested against, and a study of a few hundred clients gets exactly
the numbers it got before this module existed (the bundled example's results are recorded
byte for byte). From there on the blocks' Brent search gives the same refits to the
optimisers' tolerance at 2-5 ms each (100,000 clients: a bootstrap batch 160 s -> 4 s).

Only this model class is handled; :meth:`InterceptBlocks.build` returns None for any other
(random slopes, several grouping factors, prior weights, offsets, ``scale()``/``poly()``
terms, aliased columns), and :meth:`InterceptBlocks.refit` returns None for a draw whose
design loses rank (a factor level not drawn): the caller then refits the resampled rows,
which drops or reports what the general fit does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from .design import fixed_matrix, fixed_spec
from .fit import SINGULAR_TOL, _model_frame
from .formula import expand_dot
from .inference import gradient_check

__all__ = ["InterceptBlocks", "ROW_REFITS_UP_TO", "use_blocks"]

#: Rows of the model's data up to which resampled and leave-one-out refits refit the rows
#: (see the module docstring); :func:`use_blocks` applies it.
ROW_REFITS_UP_TO = 4_000


def use_blocks(n_rows: int, blocks: bool | None) -> bool:
    """Whether refits come from the per-cluster cross-products: ``blocks=None`` (the default
    of the callers) above :data:`ROW_REFITS_UP_TO` rows only, ``True`` whenever the model
    allows it, ``False`` never."""
    if blocks is not None and not isinstance(blocks, bool):
        raise ValueError(f"blocks must be True, False or None (by the data's size), got {blocks!r}")
    return n_rows > ROW_REFITS_UP_TO if blocks is None else blocks


def _minimise_even(deviance, start: float) -> float:
    """The minimiser over theta >= 0 of a criterion that depends on theta^2 only: Brent's
    method on the whole line from ``start`` (the criterion is even, so the minimiser's absolute
    value is the answer and theta = 0 needs no bound). A one-dimensional search costs a
    fraction of COBYQA's overhead, which was 90% of a refit's time here."""
    step = max(abs(start), 1e-3)
    res = optimize.minimize_scalar(lambda t: deviance(abs(t)), bracket=(abs(start), abs(start) + 0.5 * step),
                                   method="brent", options={"xtol": 1e-10, "maxiter": 500})
    return abs(float(res.x))


@dataclass
class InterceptBlocks:
    """Per-cluster cross-products of ``y ~ X + (1 | g)``, clusters in the order :meth:`build` was given."""

    names: list[str]
    n: np.ndarray  # (T,) rows per cluster
    XtX: np.ndarray  # (T, p, p)
    s: np.ndarray  # (T, p) column sums
    Xty: np.ndarray  # (T, p)
    u: np.ndarray  # (T,) response sums
    yty: np.ndarray  # (T,)
    reml: bool

    @classmethod
    def build(cls, formula: str, data: pd.DataFrame, group: str, clusters: pd.Index,
              reml: bool = True) -> InterceptBlocks | None:
        """The blocks of ``formula`` on ``data``, one per label of ``clusters`` (rows of a label
        absent from the complete rows give an empty block), or None when the model is not
        ``y ~ X + (1 | group)`` without weights, offsets or learned transformations."""
        parsed, mf, raw, frame, _, _ = _model_frame(expand_dot(formula, data.columns), data)
        terms = mf.random_terms
        if (len(terms) != 1 or terms[0].group != (group,) or not terms[0].intercept or terms[0].slopes
                or parsed.offsets or mf.state):
            return None
        spec = fixed_spec(frame, parsed, None, mf.matrix_cols)
        X, names = fixed_matrix(spec, frame)
        if X.shape[1] and np.linalg.matrix_rank(X) < X.shape[1]:
            return None
        y = frame[parsed.response].to_numpy(dtype=float)
        codes = clusters.get_indexer(raw[group])
        if (codes < 0).any():
            return None
        T, p = len(clusters), X.shape[1]
        XtX = np.zeros((T, p, p))
        np.add.at(XtX, codes, X[:, :, None] * X[:, None, :])
        s = np.zeros((T, p))
        np.add.at(s, codes, X)
        Xty = np.zeros((T, p))
        np.add.at(Xty, codes, X * y[:, None])
        return cls(names=list(names), n=np.bincount(codes, minlength=T).astype(float), XtX=XtX, s=s, Xty=Xty,
                   u=np.bincount(codes, weights=y, minlength=T), yty=np.bincount(codes, weights=y * y, minlength=T),
                   reml=reml)

    def _sums(self, w: np.ndarray) -> tuple:
        keep = w > 0
        w, n = w[keep], self.n[keep]
        return (w, n, np.einsum("t,tij->ij", w, self.XtX[keep]), self.s[keep], w @ self.Xty[keep],
                self.u[keep], float(w @ self.yty[keep]))

    def _solve(self, theta: float, sums: tuple) -> tuple[float, np.ndarray, float, float, np.ndarray]:
        """(log|H|, beta, log|X'H^-1X|, y'Py, X'H^-1X) at ``theta``."""
        w, n, XtX, s, Xty, u, yty = sums
        gamma = theta * theta
        c = w * gamma / (1.0 + gamma * n)
        A = XtX - (s * c[:, None]).T @ s
        b = Xty - (c * u) @ s
        L = np.linalg.cholesky(A)
        z = np.linalg.solve(L, b)
        beta = np.linalg.solve(L.T, z)
        r2 = yty - float(c @ (u * u)) - float(z @ z)
        return float(w @ np.log1p(gamma * n)), beta, 2.0 * float(np.log(np.diag(L)).sum()), r2, A

    def refit(self, weights: np.ndarray, start: float = 1.0) -> dict | None:
        """The fit with cluster ``t`` entered ``weights[t]`` times (0 leaves it out), the theta
        search starting at ``start`` (the general fit's default 1; a leave-one-out refit starts
        at the full fit's theta, as :func:`alliance.models.diagnostics.leave_one_group_out`).

        Returns ``beta`` and ``se`` (Series by term), ``vcov`` (DataFrame, ``sigma^2
        (X'H^-1X)^-1`` as lme4's ``vcov``), ``sigma``, ``theta``, ``converged`` (lme4's
        gradient check, as the general fit's flag) and ``singular``; None when the design
        loses rank or the response its residual variance in this draw.
        """
        w = np.asarray(weights, dtype=float)
        sums = self._sums(w)
        N, p = float(w @ self.n), len(self.names)
        if N <= p or (p and np.linalg.matrix_rank(sums[2]) < p):
            return None
        dof = N - p if self.reml else N

        def deviance(theta) -> float:
            try:
                logdet_h, _, logdet_x, r2, _ = self._solve(float(np.atleast_1d(theta)[0]), sums)
            except np.linalg.LinAlgError:
                return math.inf
            if not r2 > 0:
                return math.inf
            out = logdet_h + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof))
            return out + logdet_x if self.reml else out

        lower = np.zeros(1)
        try:
            theta = np.array([_minimise_even(deviance, float(start))])
        except (RuntimeError, ValueError, FloatingPointError):
            return None  # no bracket found: the general fit reports what is wrong
        if not math.isfinite(deviance(theta)):
            return None
        converged, _ = gradient_check(deviance, theta, lower)
        t = float(theta[0])
        _, beta, _, r2, xhx = self._solve(t, sums)
        sigma2 = r2 / dof
        vcov = sigma2 * np.linalg.inv(xhx)
        return {"beta": pd.Series(beta, index=self.names), "se": pd.Series(np.sqrt(np.diag(vcov)), index=self.names),
                "vcov": pd.DataFrame(vcov, index=self.names, columns=self.names), "sigma": math.sqrt(sigma2),
                "theta": t, "converged": bool(converged), "singular": bool(t < SINGULAR_TOL)}
