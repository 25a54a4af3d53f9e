"""Linear mixed models with lme4's semantics, vectorised over groups.

``fit(formula, data, reml=True)`` fits models written in lme4's formula syntax by profiled
REML/ML (Bates et al. 2015, JSS 67(1)); ``lrt(m0, m1)`` (alias ``anova``) compares nested fits
by likelihood ratio; ``refit_ml(m)`` refits a REML fit by ML (lme4's ``refitML``). Satterthwaite df as lmerTest (Kuznetsova et al. 2017, JSS 82(13)).
"""

from .crossed import CrossedComponents, fit_crossed
from .fit import anova, fit, lrt, refit_ml
from .formula import parse_formula
from .result import LmmResult

__all__ = ["fit", "refit_ml", "lrt", "anova", "parse_formula", "LmmResult", "fit_crossed", "CrossedComponents"]
