# lme4 reference for '.' in an lmer formula (tests/test_lmm_formula.py::test_dot_*).
# In lme4 (as in R's terms(formula, data = )) '.' stands for every column of the data except
# the response; grouping columns are included, so the fixture removes the grouping column
# with '- Subject'. Data: lme4's sleepstudy plus x2 = Days^2 / 10.
# usage: Rscript ref_lmm_dot.R DIR   (writes DIR/lmm_dot_reference.json)
# Produced with R 4.x, lme4 1.1-31, lmerTest 3.1-3 (Debian r-cran-* packages).
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
dir <- commandArgs(TRUE)[1]
d <- sleepstudy
d$x2 <- d$Days^2 / 10
m <- lmerTest::lmer(Reaction ~ . - Subject + (Days | Subject), data = d)
co <- summary(m)$coefficients
out <- list(
  formula = "Reaction ~ . - Subject + (Days | Subject)",
  columns = names(d),
  objective = unname(REMLcrit(m)), theta = unname(getME(m, "theta")), sigma = sigma(m),
  fixed = lapply(setNames(rownames(co), rownames(co)), function(r) as.list(co[r, ])))
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "lmm_dot_reference.json"))
