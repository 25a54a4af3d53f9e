"""Cluster bootstrap of alliance-outcome models: resample therapists, clients or both
stages, refit, and take percentile intervals. Tested in tests/test_models.py by coverage on
simulated studies with known effects.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import require_columns as _require_columns
from alliance.models.families import fit_model
from alliance.lmm.reweight import InterceptBlocks, use_blocks
from alliance.models.data import CLIENT, THERAPIST

__all__ = [
    "cluster_resample",
    "cluster_bootstrap",
    "bootstrap_intervals",
]


# --------------------------------------------------------------------------------------
# Cluster bootstrap
# --------------------------------------------------------------------------------------
BOOTSTRAP_STAGES = ("therapists", "clients", "therapists_then_clients")


def cluster_resample(data: pd.DataFrame, rng: np.random.Generator, stages: str = "therapists",
                     therapist: str = THERAPIST, client: str = CLIENT) -> pd.DataFrame:
    """One cluster bootstrap sample of nested data.

    ``stages``:

    * ``"therapists"``: therapists drawn with replacement, each with all its clients and
      their rows (resampling the top level only; Davison & Hinkley, 1997, sec. 3.8,
      strategy 1, which they recommend: it keeps the within-therapist structure intact);
    * ``"clients"``: clients drawn with replacement (all their rows), therapists ignored:
      for two-level data or a therapist-free sensitivity check;
    * ``"therapists_then_clients"``: therapists drawn with replacement, then each drawn
      therapist's clients drawn with replacement (strategy 2). It adds the client-level
      variance a second time and so overstates the variance when the therapist variance is
      small (Davison & Hinkley, 1997, sec. 3.8): a conservative variant.

    Repeated draws get new ids (``id#k``), so that a therapist or client drawn twice enters
    the model as two clusters.
    """
    if stages not in BOOTSTRAP_STAGES:
        raise ValueError(f"stages must be one of {BOOTSTRAP_STAGES}, got {stages!r}")
    _require_columns(data, [therapist, client], "data")
    if data[[therapist, client]].isna().any().any():
        raise ValueError(f"data has missing {therapist!r} or {client!r} ids; drop those rows first")
    rows = data.reset_index(drop=True)
    c_codes, c_labels = pd.factorize(rows[client], sort=True)
    rows_of = np.split(np.argsort(c_codes, kind="stable"), np.cumsum(np.bincount(c_codes))[:-1])
    if stages == "clients":
        groups = [np.arange(len(c_labels))]
        group_labels = np.array([""], dtype=object)
        draws = [0]
    else:
        t_codes, group_labels = pd.factorize(rows.groupby(c_codes, sort=True)[therapist].first(), sort=True)
        groups = [np.flatnonzero(t_codes == t) for t in range(len(group_labels))]
        draws = rng.integers(0, len(groups), len(groups))
    picks, t_ids, c_ids = [], [], []
    for k, t in enumerate(draws):
        members = groups[t]
        if stages != "therapists":
            members = members[rng.integers(0, len(members), len(members))]
        for j, c in enumerate(members):
            n = len(rows_of[c])
            picks.append(rows_of[c])
            t_ids.append(np.full(n, f"{group_labels[t]}#{k}", dtype=object))
            c_ids.append(np.full(n, f"{c_labels[c]}#{k}.{j}", dtype=object))
    sample = rows.iloc[np.concatenate(picks)].reset_index(drop=True)
    if stages != "clients":
        sample[therapist] = np.concatenate(t_ids)
    sample[client] = np.concatenate(c_ids)
    return sample


def cluster_bootstrap(data: pd.DataFrame, formula: str, seed: int, replicates: Sequence[int],
                      stages: str = "therapists", therapist: str = THERAPIST, client: str = CLIENT, reml: bool = True,
                      engine: str = "alliance", fit: Callable[..., Any] | None = None,
                      blocks: bool | None = None) -> pd.DataFrame:
    """Refit a model on cluster bootstrap samples (:func:`cluster_resample`, ``stages``).

    Replicate ``b`` draws from ``numpy.random.default_rng([seed, b])``, so a replicate is the
    same whichever job computes it: ``replicates=range(0, 500)`` and ``range(500, 1000)`` in
    two parallel jobs give the same draws as ``range(0, 1000)`` in one. Satterthwaite df are
    skipped (only estimates are kept).

    With whole therapists resampled (``stages="therapists"``), clients nested in therapists
    and a ``(1 | therapist)`` model on the project's engine, a replicate is refitted from the
    per-therapist cross-products weighted by how often each therapist was drawn
    (:class:`alliance.lmm.reweight.InterceptBlocks`), the same draw as
    :func:`cluster_resample`'s without building its rows; other designs, and a draw that
    leaves the design short of rank, refit the resampled rows. ``blocks``: None (default)
    takes the cross-products above :data:`alliance.lmm.reweight.ROW_REFITS_UP_TO` rows of
    ``data`` only (small data keep the general engine's refits), True wherever they apply,
    False never.

    Returns
    -------
    DataFrame
        One row per replicate and fixed-effect term: ``replicate``, ``term``, ``estimate``,
        ``converged``, ``singular``, ``error`` (the message when the refit failed; then one
        row with term and estimate missing). Failed refits are kept, not dropped, so that
        their number is reported.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    cross = (_therapist_blocks(data, formula, stages, therapist, client, reml, engine, fit)
             if use_blocks(len(data), blocks) else None)
    out = []
    for b in replicates:
        if cross is not None:
            # the draw of cluster_resample (same generator, same first call), as multiplicities
            draws = np.random.default_rng([int(seed), int(b)]).integers(0, len(cross.n), len(cross.n))
            refit = cross.refit(np.bincount(draws, minlength=len(cross.n)))
            if refit is not None:
                out += [{"replicate": int(b), "term": term, "estimate": float(est), "converged": refit["converged"],
                         "singular": refit["singular"], "error": ""} for term, est in refit["beta"].items()]
                continue
        sample = cluster_resample(data, np.random.default_rng([int(seed), int(b)]), stages, therapist, client)
        try:
            res = fit_model(formula, sample, reml=reml, engine=engine, fit=fit,
                            options={"satterthwaite_df": False})
        except (ValueError, np.linalg.LinAlgError) as exc:
            out.append({"replicate": int(b), "term": None, "estimate": math.nan, "converged": False,
                        "singular": False, "error": str(exc)})
            continue
        for term, est in res.fixed_effects["estimate"].items():
            out.append({"replicate": int(b), "term": term, "estimate": float(est),
                        "converged": bool(res.converged), "singular": bool(res.singular), "error": ""})
    return pd.DataFrame(out, columns=["replicate", "term", "estimate", "converged", "singular", "error"])


def _therapist_blocks(data: pd.DataFrame, formula: str, stages: str, therapist: str, client: str, reml: bool,
                      engine: str, fit) -> InterceptBlocks | None:
    """Per-therapist cross-products when every replicate can be refitted from them
    (:mod:`alliance.lmm.reweight`): whole therapists resampled, clients nested in therapists,
    the project's engine, a ``(1 | therapist)`` model; else None (each replicate is refitted
    on its resampled rows)."""
    if stages != "therapists" or fit is not None or engine != "alliance":
        return None
    _require_columns(data, [therapist, client], "data")
    ids = data[[therapist, client]]
    if ids.isna().any().any() or (ids.groupby(client)[therapist].nunique() > 1).any():
        return None  # cluster_resample reports missing ids; crossed ids are resampled as it does
    try:
        labels = pd.factorize(ids[therapist], sort=True)[1]  # cluster_resample's order of therapists
        return InterceptBlocks.build(formula, data, therapist, pd.Index(labels), reml)
    except ValueError:
        return None  # the refits report it, replicate by replicate


def bootstrap_intervals(draws: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Percentile intervals from :func:`cluster_bootstrap` draws (all jobs concatenated).

    Returns
    -------
    DataFrame
        Per term: ``n_replicates`` (successful refits), ``n_failed`` (refits that raised),
        ``n_not_converged``, ``mean``, ``se`` (SD of the draws), ``ci_low``, ``ci_high``
        (the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles).
    """
    _require_columns(draws, ["replicate", "term", "estimate", "converged", "error"], "draws")
    if draws.duplicated(["replicate", "term"]).any():
        raise ValueError("draws has a replicate twice; the jobs' replicate ranges overlap")
    failed = int(draws.loc[draws["error"].fillna("") != "", "replicate"].nunique())
    ok = draws.loc[draws["term"].notna()]
    g = ok.groupby("term", sort=False)
    q = (1 - level) / 2
    return pd.DataFrame({
        "n_replicates": g["estimate"].size(),
        "n_failed": failed,
        "n_not_converged": g["converged"].apply(lambda c: int((~c.astype(bool)).sum())),
        "mean": g["estimate"].mean(),
        "se": g["estimate"].std(ddof=1),
        "ci_low": g["estimate"].quantile(q),
        "ci_high": g["estimate"].quantile(1 - q),
    }).rename_axis("term").reset_index()
