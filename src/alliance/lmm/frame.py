"""The model frame of :mod:`alliance.lmm`: the formula's variables and transformations
evaluated on the data, and categorical random slopes expanded to their model-matrix columns.

:class:`ModelFrame` learns on the fitted rows (``scale``/``poly`` parameters, the levels and
contrasts of categorical random slopes) and applies the same to new data in ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .design import FixedSpec, fixed_matrix, fixed_spec, is_categorical
from .formula import ParsedFormula, RandomTerm

#: prefix of the model-frame columns holding a categorical random slope's indicator columns
_RE_PREFIX = "\x00re:"


@dataclass
class ModelFrame:
    """How the formula's elements are computed from data columns.

    Attributes
    ----------
    parsed : ParsedFormula
    state : dict
        What ``scale()`` and ``poly()`` learned on the fitted rows.
    matrix_cols : dict
        Key of a multi-column element (``poly(x, 3)``) -> its model-frame columns, named as R
        names the coefficients (``poly(x, 3)1``...).
    random_specs : dict
        Index of a random term with a categorical slope -> the spec of its model matrix.
    """

    parsed: ParsedFormula
    state: dict = field(default_factory=dict)
    matrix_cols: dict[str, list[str]] = field(default_factory=dict)
    random_specs: dict[int, FixedSpec] = field(default_factory=dict)
    random_terms: list[RandomTerm] = field(default_factory=list)

    def build(self, data: pd.DataFrame, learn: bool = False) -> pd.DataFrame:
        """Evaluate every element on ``data`` (rows kept as given).

        With ``learn`` the data-dependent parts are learned from ``data`` (the fitted rows).
        """
        cols: dict[str, object] = {}
        for key in self.parsed.keys:
            value = self.parsed.expressions[key].evaluate(data, self.state)
            if isinstance(value, pd.Series):
                cols[key] = value.reset_index(drop=True)
            elif np.ndim(value) == 2:
                names = [f"{key}{j + 1}" for j in range(value.shape[1])]
                if learn:
                    self.matrix_cols[key] = names
                for j, name in enumerate(names):
                    cols[name] = value[:, j]
            else:
                cols[key] = np.broadcast_to(np.asarray(value, dtype=float), (len(data),)).copy()
        for rt in self.parsed.random_terms:
            for g in rt.group:
                cols[g] = data[g].reset_index(drop=True)
        frame = pd.DataFrame(cols, index=pd.RangeIndex(len(data)))
        if learn:
            self._learn_random_terms(frame)
        for i, spec in self.random_specs.items():
            X, names = fixed_matrix(spec, frame)
            for j, name in enumerate(names):
                frame[f"{_RE_PREFIX}{i}:{name}"] = X[:, j]
        return frame

    def _learn_random_terms(self, frame: pd.DataFrame) -> None:
        """Replace random terms with categorical slopes by their model-matrix columns (lme4's
        ``model.matrix(~ lhs)``: default contrasts, full indicators without an intercept)."""
        self.random_terms = []
        for i, rt in enumerate(self.parsed.random_terms):
            if not any(s in frame and is_categorical(frame[s]) for s in rt.slopes):
                self.random_terms.append(rt)
                continue
            mini = SimpleNamespace(intercept=rt.intercept, fixed_terms=[(s,) for s in rt.slopes])
            spec = fixed_spec(frame, mini)
            self.random_specs[i] = spec
            cols = tuple(f"{_RE_PREFIX}{i}:{name}" for name in spec.names)
            self.random_terms.append(RandomTerm(False, cols, rt.group, tuple(spec.names)))

    def offset(self, frame: pd.DataFrame) -> np.ndarray:
        """Sum of the ``offset()`` terms (0 without any)."""
        total = np.zeros(len(frame))
        for key in self.parsed.offsets:
            total = total + frame[key].to_numpy(dtype=float)
        return total
