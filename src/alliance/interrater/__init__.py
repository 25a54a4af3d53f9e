"""Inter-rater reliability of observer-rated alliance: intraclass correlations
(:func:`icc`, Shrout & Fleiss 1979; McGraw & Wong 1996), coding agreement of categorical codes,
rater effects, and the long ratings table they share. Steps in :mod:`alliance.interrater.steps`,
figures in :mod:`alliance.interrater.figures`.
"""

from alliance.interrater.intraclass import (
    ICC_COLUMNS,
    ICC_FORMS,
    CI_METHODS,
    CrossedVarianceComponents,
    icc,
    icc_complete,
    icc_incomplete,
    anova_mean_squares,
    crossed_variance_components,
    koo_li_label,
    interpret_icc_ci,
)
from alliance.interrater.coding_agreement import (
    AGREEMENT_COLUMNS,
    PAIRWISE_COLUMNS,
    agreement_weights,
    krippendorff_alpha,
    cohen_kappa,
    pairwise_cohen_kappa,
    fleiss_kappa,
    coding_agreement_table,
)
from alliance.interrater.rater_effects import (
    LENIENCY_COLUMNS,
    PAIR_COLUMNS,
    rater_leniency,
    pairwise_rater_agreement,
    paired_ratings,
)

__all__ = [
    "ICC_COLUMNS",
    "ICC_FORMS",
    "CI_METHODS",
    "CrossedVarianceComponents",
    "icc",
    "icc_complete",
    "icc_incomplete",
    "anova_mean_squares",
    "crossed_variance_components",
    "koo_li_label",
    "interpret_icc_ci",
    "AGREEMENT_COLUMNS",
    "PAIRWISE_COLUMNS",
    "agreement_weights",
    "krippendorff_alpha",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "fleiss_kappa",
    "coding_agreement_table",
    "LENIENCY_COLUMNS",
    "PAIR_COLUMNS",
    "rater_leniency",
    "pairwise_rater_agreement",
    "paired_ratings",
]
