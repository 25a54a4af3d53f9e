# lme4 / lmerTest reference fits for alliance.lmm's formula language (tests/test_lmm_formula.py):
# contrasts (R's defaults and the contrasts= argument), rank-deficient fixed effects,
# transformations, offset, term removal, %in%, prior weights, factor random slopes.
# usage: Rscript ref_lmm_formula.R DIR   (writes DIR/cake.csv, DIR/sleepstudy.csv and
#        DIR/lmm_formula_reference.json)
# Produced with R 4.x, lme4 1.1-31, lmerTest 3.1-3 (Debian r-cran-* packages).
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
dir <- commandArgs(TRUE)[1]
data(cake, package = "lme4")
data(sleepstudy, package = "lme4")
# temperature's order is written as the level order; recipe and replicate stay unordered
write.csv(cake[, c("replicate", "recipe", "temperature", "angle", "temp")],
          file.path(dir, "cake.csv"), row.names = FALSE)
ss <- sleepstudy
ss$Days2 <- 2 * ss$Days                      # aliased with Days
ss$w <- 1 + (ss$Days %% 3)                   # prior weights
ss$half <- factor(ifelse(ss$Days < 5, "early", "late"))
write.csv(ss, file.path(dir, "sleepstudy.csv"), row.names = FALSE)

ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
summ <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  co <- summary(m)$coefficients
  list(
    formula = paste(deparse(formula(m)), collapse = ""),
    reml = isREML(m),
    fixed = lapply(setNames(rownames(co), rownames(co)), function(r) as.list(co[r, ])),
    varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])),
    sigma = sigma(m), theta = unname(getME(m, "theta")),
    objective = if (isREML(m)) unname(REMLcrit(m)) else unname(deviance(m)),
    logLik = as.numeric(logLik(m)), nobs = nobs(m),
    dropped = as.list(attr(getME(m, "X"), "col.dropped")),
    singular = isSingular(m))
}
fitm <- function(f, data, ...) summ(lmer(f, data = data, control = ctrl, ...))
out <- list(
  cake_poly = fitm(angle ~ recipe * temperature + (1 | recipe:replicate), cake),
  cake_poly_ml = fitm(angle ~ recipe * temperature + (1 | recipe:replicate), cake, REML = FALSE),
  cake_sum_treatment = fitm(angle ~ recipe * temperature + (1 | recipe:replicate), cake,
                            contrasts = list(recipe = "contr.sum", temperature = "contr.treatment")),
  cake_helmert_poly = fitm(angle ~ recipe + temperature + (1 | recipe:replicate), cake,
                           contrasts = list(recipe = "contr.helmert")),
  cake_minus = fitm(angle ~ recipe * temperature - recipe:temperature + (1 | recipe:replicate), cake),
  cake_in = fitm(angle ~ recipe + temp %in% recipe + (1 | recipe:replicate), cake),
  cake_nest = fitm(angle ~ recipe / temp + (1 | replicate), cake),
  cake_power = fitm(angle ~ (recipe + temp + I(temp^2))^2 + (1 | replicate), cake),
  cake_factor_slope = fitm(angle ~ recipe + temp + (recipe | replicate), cake),
  cake_factor_slope0 = fitm(angle ~ recipe + temp + (0 + recipe | replicate), cake),
  cake_factor_dbar = fitm(angle ~ recipe + temp + (recipe || replicate), cake),
  ss_rank = fitm(Reaction ~ Days + Days2 + (1 | Subject), ss),
  ss_transform = fitm(log(Reaction) ~ I(Days^2) + sqrt(Days + 1) + exp(Days / 10) + (1 | Subject), ss),
  ss_poly = fitm(Reaction ~ poly(Days, 3) + (1 | Subject), ss),
  ss_scale = fitm(Reaction ~ scale(Days) + (scale(Days) | Subject), ss),
  ss_offset = fitm(Reaction ~ Days + offset(10 * Days) + (1 | Subject), ss),
  ss_weights = summ(lmer(Reaction ~ Days + (Days | Subject), ss, weights = w, control = ctrl)),
  ss_weights_ml = summ(lmer(Reaction ~ Days + (1 | Subject), ss, weights = w, REML = FALSE, control = ctrl)),
  ss_dbar_factor = fitm(Reaction ~ Days + (Days + half || Subject), ss)
)
# partial re.form in predict: only the replicate intercepts, on the first 12 rows
m2 <- lmer(angle ~ temp + (1 | replicate) + (1 | recipe:replicate), cake, control = ctrl)
out$cake_re_form <- c(summ(m2), list(
  predict_all = unname(predict(m2, newdata = cake[1:12, ])),
  predict_replicate = unname(predict(m2, newdata = cake[1:12, ], re.form = ~ (1 | replicate))),
  predict_none = unname(predict(m2, newdata = cake[1:12, ], re.form = NA))))
# column names as R's contrasts produce them, for the record
out$cake_poly$contr_poly6 <- unname(contr.poly(6))
write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
      file.path(dir, "lmm_formula_reference.json"))
