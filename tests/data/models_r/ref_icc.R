# Unconditional therapist ICC of the outcome with profile-likelihood CIs (lme4 1.1-31),
# the reference of alliance.models.therapist_icc (tests/test_models.py).
# usage: Rscript ref_icc.R   (reads ../lme4/small/{clients_derived,sessions}.csv, writes icc_reference.json)
#
# Two levels: post ~ 1 + (1 | therapist). ICC = theta^2 / (1 + theta^2) (theta = sd_therapist / sigma),
# a monotone function of theta, so the 95% CI is {theta : REML deviance(theta) - min <= qchisq(.95, 1)}
# mapped to the ICC; the REML deviance profiles sigma and the intercept out (lme4's devFunOnly).
# Three levels (sessions in clients in therapists): symptoms ~ 1 + (1 | client) + (1 | therapist),
# ICC_therapist = theta_t^2 / (1 + theta_t^2 + theta_c^2); its profile deviance at rho fixes
# theta_t^2 = rho (1 + theta_c^2) / (1 - rho) and minimises over theta_c.
# performance::icc (adjusted ICC) on the same null models is stored as a check of the point estimates.
suppressMessages({library(lme4); library(performance); library(jsonlite)})
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
src <- file.path(here, "..", "lme4", "small")
cl <- read.csv(file.path(src, "clients_derived.csv"), stringsAsFactors = FALSE)
ss <- read.csv(file.path(src, "sessions.csv"), stringsAsFactors = FALSE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
crit <- qchisq(0.95, 1)

two <- lmer(post ~ 1 + (1 | therapist_id), cl, REML = TRUE, control = ctrl)
dev2 <- lmer(post ~ 1 + (1 | therapist_id), cl, REML = TRUE, devFunOnly = TRUE)
th <- getME(two, "theta"); d0 <- dev2(th)
f2 <- function(t) dev2(t) - d0 - crit
lo <- if (f2(0) <= 0) 0 else uniroot(f2, c(0, th), tol = 1e-12)$root
hi <- uniroot(f2, c(th, th * 10 + 5), tol = 1e-12)$root
icc <- function(t) t^2 / (1 + t^2)
vc2 <- as.data.frame(VarCorr(two))
res <- list(two_level = list(
  formula = "post ~ 1 + (1 | therapist)", nobs = nobs(two), n_therapists = unname(ngrps(two)),
  theta = unname(th), var_therapist = vc2$vcov[1], var_residual = vc2$vcov[2],
  icc = icc(unname(th)), ci_low = icc(lo), ci_high = icc(hi),
  performance_icc = unname(performance::icc(two)$ICC_adjusted)))

three <- lmer(symptoms ~ 1 + (1 | client_id) + (1 | therapist_id), ss, REML = TRUE, control = ctrl)
dev3 <- lmer(symptoms ~ 1 + (1 | client_id) + (1 | therapist_id), ss, REML = TRUE, devFunOnly = TRUE)
th3 <- getME(three, "theta")  # lme4 order: client_id, therapist_id (levels decreasing)
stopifnot(names(th3)[1] == "client_id.(Intercept)")
d30 <- dev3(th3)
icc3 <- function(t) t[2]^2 / (1 + t[1]^2 + t[2]^2)
prof <- function(rho) {
  g <- function(tc) dev3(c(tc, sqrt(rho * (1 + tc^2) / (1 - rho))))
  optimize(g, c(0, 20), tol = 1e-10)$objective - d30 - crit
}
rho0 <- icc3(th3)
lo3 <- if (prof(1e-12) <= 0) 0 else uniroot(prof, c(1e-12, rho0), tol = 1e-12)$root
hi3 <- uniroot(prof, c(rho0, 0.99), tol = 1e-12)$root
vc3 <- as.data.frame(VarCorr(three))
res$three_level <- list(
  formula = "symptoms ~ 1 + (1 | client) + (1 | therapist)", nobs = nobs(three),
  n_therapists = unname(ngrps(three)["therapist_id"]), n_clients = unname(ngrps(three)["client_id"]),
  theta = unname(th3), var_client = vc3$vcov[vc3$grp == "client_id"],
  var_therapist = vc3$vcov[vc3$grp == "therapist_id"], var_residual = vc3$vcov[vc3$grp == "Residual"],
  icc = rho0, ci_low = lo3, ci_high = hi3,
  performance_icc_by_group = as.list(setNames(performance::icc(three, by_group = TRUE)$ICC,
                                              performance::icc(three, by_group = TRUE)$Group)))
# Therapist-level term: lmerTest's Satterthwaite df of the therapist mean of early alliance
# (Baldwin, Wampold & Imel 2007 decomposition), which the pipeline bounds by
# 40 therapists - 1 therapist-level predictor - 1 = 38.
suppressMessages(library(lmerTest))
tm <- ave(cl$early_alliance, cl$therapist_id)
cl$early_alliance_tm <- tm - mean(tapply(cl$early_alliance, cl$therapist_id, mean))
cl$early_alliance_cd <- cl$early_alliance - tm
tc <- lmerTest::lmer(post ~ early_alliance_tm + early_alliance_cd + baseline + (1 | therapist_id), cl,
                     REML = TRUE, control = ctrl)
co <- summary(tc)$coefficients
res$therapist_client <- list(
  formula = "post ~ early_alliance_tm + early_alliance_cd + baseline + (1 | therapist)",
  fixed = lapply(setNames(rownames(co), rownames(co)), function(r) as.list(co[r, ])),
  n_therapists = unname(ngrps(tc)), nobs = nobs(tc))
res$versions <- list(lmerTest = as.character(packageVersion("lmerTest")), lme4 = as.character(packageVersion("lme4")),
                     performance = as.character(packageVersion("performance")), R = R.version.string)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(here, "icc_reference.json"))
