# Extra lme4/lmerTest reference fits for alliance.lmm: categorical fixed effects with
# interactions, uncorrelated terms (||), nested slash syntax, a crossed targets x raters design,
# conditional modes, predictions and a likelihood-ratio test.
# usage: Rscript ref_lme4_extra.R DIR   (reads DIR/small/sessions.csv and
#        DIR/observer_unbalanced_ratings.csv, writes DIR/lme4_extra_reference.json)
# Produced with R 4.x, lme4 1.1-31, lmerTest 3.1-3 (Debian r-cran-* packages).
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
dir <- commandArgs(TRUE)[1]
df <- read.csv(file.path(dir, "small", "sessions.csv"), stringsAsFactors = FALSE)
df$a_cm <- ave(df$alliance, df$client_id)
df$a_cw <- df$alliance - df$a_cm
df$a_cm <- df$a_cm - mean(tapply(df$alliance, df$client_id, mean))
# a therapist-level three-arm factor, derived from the therapist number
df$arm <- c("A", "B", "C")[(as.integer(sub("T", "", df$therapist_id)) %% 3) + 1]
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
    logLik = as.numeric(logLik(m)), nobs = nobs(m), ngrps = as.list(ngrps(m)),
    singular = isSingular(m))
}
specs <- list(
  categorical_interaction = symptoms ~ session * arm + a_cm + (1 + session | client_id),
  uncorrelated = symptoms ~ session + a_cw + (session || client_id),
  nested_slash = symptoms ~ session + (1 | therapist_id/client_id))
fits <- list()
for (nm in names(specs)) {
  fits[[nm]] <- summ(lmerTest::lmer(specs[[nm]], df, REML = TRUE, control = ctrl))
  fits[[paste0(nm, "_ml")]] <- summ(lmerTest::lmer(specs[[nm]], df, REML = FALSE, control = ctrl))
}
rt <- read.csv(file.path(dir, "observer_unbalanced_ratings.csv"), stringsAsFactors = FALSE)
fits[["crossed_raters"]] <- summ(lmerTest::lmer(rating ~ 1 + (1 | target) + (1 | rater), rt, REML = TRUE, control = ctrl))
fits[["crossed_raters_ml"]] <- summ(lmerTest::lmer(rating ~ 1 + (1 | target) + (1 | rater), rt, REML = FALSE, control = ctrl))
# conditional modes and predictions of the three-level model (first 5 clients, all therapists' first 5)
m3 <- lmer(symptoms ~ session + a_cw + a_cm + (1 + session | client_id) + (1 | therapist_id), df, REML = TRUE, control = ctrl)
re <- ranef(m3)
fits[["three_level_ranef"]] <- list(
  client_id = list(level = rownames(re$client_id)[1:5], intercept = re$client_id[1:5, 1], session = re$client_id[1:5, 2]),
  therapist_id = list(level = rownames(re$therapist_id)[1:5], intercept = re$therapist_id[1:5, 1]),
  predict_rows = 1:10, predict = unname(predict(m3)[1:10]),
  predict_fixed = unname(predict(m3, re.form = NA)[1:10]))
# likelihood-ratio test of nested fits (anova refits REML fits with ML)
m0 <- lmer(symptoms ~ session + (1 + session | client_id), df, REML = TRUE, control = ctrl)
m1 <- lmer(symptoms ~ session + a_cw + a_cm + (1 + session | client_id), df, REML = TRUE, control = ctrl)
a <- anova(m0, m1)
fits[["lrt"]] <- list(m0 = "symptoms ~ session + (1 + session | client_id)",
  m1 = "symptoms ~ session + a_cw + a_cm + (1 + session | client_id)",
  npar = a$npar, deviance = a$deviance, Chisq = a$Chisq[2], Df = a$Df[2], p = a[["Pr(>Chisq)"]][2])
fits[["lme4_version"]] <- as.character(packageVersion("lme4"))
fits[["arm"]] <- "arm = c('A','B','C')[(therapist number %% 3) + 1]"
writeLines(toJSON(fits, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "lme4_extra_reference.json"))
cat("wrote", file.path(dir, "lme4_extra_reference.json"), "\n")
