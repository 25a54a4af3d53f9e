# Reference numbers for the ML fit statistics of fit.json (loglik_ml, aic_ml, bic_ml) and the
# AIC/BIC rows of the model tables (tests/test_tables.py, tests/test_manuscript.py), from R:
# lme4 1.1-31 logLik(refitML(m)), AIC(refitML(m)), BIC(refitML(m)) of REML fits (df = fixed
# effects + variance-covariance parameters + 1 residual; BIC with log(nobs)).
#
# Models: lme4's sleepstudy (tests/data/lmm_r/sleepstudy.csv) with two different fixed parts and
# with prior weights, and three models of the bundled example as the workflow fitted them
# (results/interim/models/{model}.parquet of a run on the bundled example, written as CSV since
# R here has no parquet reader):
#   for m in within_between early_phq9_post trait_state; do python -c "import pandas as pd; \
#     pd.read_parquet('results/interim/models/$m.parquet').to_csv('$m.csv', index=False)"; done
# Run: Rscript tests/data/tables_r/ref_ml_refit.R tests/data/lmm_r/sleepstudy.csv DIR_WITH_CSVS \
#        tests/data/tables_r/ml_refit.json
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
sleep <- read.csv(args[1])
sleep$Subject <- factor(sleep$Subject)
example <- function(name) read.csv(file.path(args[2], paste0(name, ".csv")))
models <- list(
  list(name = "sleepstudy_days", data = sleep, formula = "Reaction ~ Days + (Days | Subject)"),
  list(name = "sleepstudy_intercept", data = sleep, formula = "Reaction ~ 1 + (Days | Subject)"),
  list(name = "sleepstudy_weighted", data = sleep, formula = "Reaction ~ Days + (1 | Subject)", weights = "w"),
  list(name = "within_between", data = example("within_between"),
       formula = "symptoms ~ session + a_cw_lag + a_cm + (1 + session | client) + (1 | therapist)"),
  list(name = "early_phq9_post", data = example("early_phq9_post"),
       formula = "post ~ early_alliance + baseline + arm + phq9_early_change + (1 | therapist)"),
  list(name = "trait_state", data = example("trait_state"),
       formula = "symptoms_next ~ session + alliance_trait + alliance_state + symptoms + (1 | client) + (1 | therapist)")
)
num <- function(x) formatC(unname(x), digits = 15, format = "g")
entries <- vapply(models, function(spec) {
  d <- spec$data
  w <- if (is.null(spec$weights)) NULL else d[[spec$weights]]
  fit <- if (is.null(w)) {
    lmer(as.formula(spec$formula), data = d, REML = TRUE, control = lmerControl(optimizer = "bobyqa"))
  } else {
    d$.w <- w
    lmer(as.formula(spec$formula), data = d, REML = TRUE, weights = .w, control = lmerControl(optimizer = "bobyqa"))
  }
  ml <- refitML(fit)
  ll <- logLik(ml)
  sprintf('  "%s": {"formula": "%s", "weights": %s, "nobs": %d, "df": %d, "aic_reml": %s, "bic_reml": %s, "loglik_ml": %s, "aic_ml": %s, "bic_ml": %s}',
          spec$name, spec$formula, if (is.null(spec$weights)) "null" else sprintf('"%s"', spec$weights),
          nobs(ml), attr(ll, "df"), num(AIC(fit)), num(BIC(fit)), num(ll), num(AIC(ml)), num(BIC(ml)))
}, character(1))
writeLines(c("{", paste(entries, collapse = ",\n"), "}"), args[3])
