"""The specification grid (multiverse) of early-alliance definitions x outcomes, and the
specification curve that orders its estimates (Simonsohn, Simmons & Nelson, 2020).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from alliance.errors import require_columns as _require_columns

__all__ = [
    "specification_grid",
    "specification_curve",
]


# --------------------------------------------------------------------------------------
# Multiverse (specification curve)
# --------------------------------------------------------------------------------------
def specification_grid(early_definitions: Mapping[str, Any], outcomes: Mapping[str, Sequence[str]],
                       respondents: Sequence[str], covariate_sets: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Every combination of early-alliance definition, outcome, respondent and covariate set.

    Each argument maps a short label to its value (``respondents`` is a list of respondent
    names); the labels form the ``spec`` id ``early__outcome__respondent__covariates``, one
    job each (Simonsohn, Simmons & Nelson, 2020).

    Returns
    -------
    DataFrame
        Columns ``spec``, ``early``, ``outcome``, ``respondent``, ``covariates`` (labels) and
        ``early_definition``, ``outcome_measure``, ``covariate_columns`` (values).
    """
    parts = {"early": early_definitions, "outcome": outcomes,
             "respondent": {r: r for r in respondents}, "covariates": covariate_sets}
    for name, options in parts.items():
        if not options:
            raise ValueError(f"specification grid: no {name} options given")
        for label in options:
            if not isinstance(label, str) or not re.match(r"^[A-Za-z0-9_.-]+$", label) or "__" in label:
                raise ValueError(f"specification grid: {name} label {label!r} must be letters, digits, '.', '-', "
                                 "single '_' (it becomes part of a file name)")
    rows = []
    for e, ev in early_definitions.items():
        for o, ov in outcomes.items():
            for r in respondents:
                for c, cv in covariate_sets.items():
                    rows.append({"spec": f"{e}__{o}__{r}__{c}", "early": e, "outcome": o, "respondent": r,
                                 "covariates": c, "early_definition": ev, "outcome_measure": tuple(ov),
                                 "covariate_columns": tuple(cv)})
    return pd.DataFrame(rows)


def specification_curve(estimates: pd.DataFrame) -> pd.DataFrame:
    """Order specification results for the specification-curve figure and table.

    Parameters
    ----------
    estimates : DataFrame
        One row per specification with ``spec``, ``estimate``, ``ci_low``, ``ci_high``,
        ``p`` (and any label columns), e.g. the alliance term of each model, best as
        ``r_benefit`` and its CI so that outcomes on different scales are comparable.

    Returns
    -------
    DataFrame
        Sorted by estimate, with ``rank`` (1 = smallest) and ``significant`` (p < .05); the
        median estimate and the share of significant specifications in ``attrs``.
    """
    _require_columns(estimates, ["spec", "estimate", "ci_low", "ci_high", "p"], "estimates")
    if estimates["spec"].duplicated().any():
        raise ValueError(f"estimates has spec {estimates['spec'][estimates['spec'].duplicated()].iloc[0]!r} twice")
    out = estimates.sort_values(["estimate", "spec"], kind="mergesort").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out["significant"] = out["p"] < 0.05
    out.attrs["median_estimate"] = float(out["estimate"].median())
    out.attrs["share_significant"] = float(out["significant"].mean())
    return out
