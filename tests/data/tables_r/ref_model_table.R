# Reference numbers for the side-by-side model table (tests/test_manuscript.py), from R:
# lme4 1.1-31 (REML fit, VarCorr, AIC/BIC of the REML criterion), performance 0.10.2 (icc,
# r2_nakagawa: the quantities sjPlot::tab_model prints) for the bundled example's
# within_between model.
#
# Input: the model's data as the workflow fitted it, results/interim/models/within_between.parquet
# of a run on the bundled example, written as CSV (R here has no parquet reader):
#   python -c "import pandas as pd; pd.read_parquet('results/interim/models/within_between.parquet')\
#              .to_csv('within_between.csv', index=False)"
# Run: Rscript tests/data/tables_r/ref_model_table.R within_between.csv tests/data/tables_r/within_between.json
suppressPackageStartupMessages({library(lme4); library(performance)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
fit <- lmer(symptoms ~ session + a_cw_lag + a_cm + (1 + session | client) + (1 | therapist), data = d, REML = TRUE,
            control = lmerControl(optimizer = "bobyqa"))
vc <- as.data.frame(VarCorr(fit))
r2 <- r2_nakagawa(fit)
ml <- refitML(fit)
num <- function(x) formatC(unname(x), digits = 15, format = "g")
out <- c(
  sprintf('"nobs": %d', nobs(fit)),
  sprintf('"n_client": %d', ngrps(fit)[["client"]]),
  sprintf('"n_therapist": %d', ngrps(fit)[["therapist"]]),
  sprintf('"sigma2": %s', num(sigma(fit)^2)),
  sprintf('"tau00_client": %s', num(vc$vcov[vc$grp == "client" & vc$var1 == "(Intercept)" & is.na(vc$var2)])),
  sprintf('"tau11_client_session": %s', num(vc$vcov[vc$grp == "client" & vc$var1 == "session" & is.na(vc$var2)])),
  sprintf('"rho01_client": %s', num(vc$sdcor[vc$grp == "client" & !is.na(vc$var2)])),
  sprintf('"tau00_therapist": %s', num(vc$vcov[vc$grp == "therapist"])),
  sprintf('"icc_adjusted": %s', num(icc(fit)$ICC_adjusted)),
  sprintf('"r2_marginal": %s', num(r2$R2_marginal)),
  sprintf('"r2_conditional": %s', num(r2$R2_conditional)),
  sprintf('"aic_reml": %s', num(AIC(fit))),
  sprintf('"bic_reml": %s', num(BIC(fit))),
  sprintf('"aic_ml": %s', num(AIC(ml))),
  sprintf('"bic_ml": %s', num(BIC(ml)))
)
fixed <- fixef(fit)
out <- c(out, sprintf('"fixed": {%s}', paste(sprintf('"%s": %s', names(fixed), num(fixed)), collapse = ", ")))
writeLines(c("{", paste0("  ", out, collapse = ",\n"), "}"), args[2])
