# Reference numbers for alliance.models.diagnostics (tests/test_model_diagnostics.py).
#
# Run from the repository root:  Rscript tests/data/diagnostics/ref_diagnostics.R
# R 4, lme4 1.1-31, performance 0.10.2. influence.ME is not installed here, so its
# leave-one-group-out refits are written out in plain lme4, with its formulas:
#   dfbetas.estex:        (fixef(full) - fixef(without g)) / se(without g)
#   cooks.distance.estex: (b - b_g)' vcov(without g)^-1 (b - b_g) / p
# (influence.ME 0.9-9, Nieuwenhuis, te Grotenhuis & Pelzer 2012, R Journal 4(2), 38-47).
# Writes a simulated three-level data set (therapists > clients > sessions) and a client-level
# one, and per model: fitted values, conditional residuals, conditional modes (BLUPs) with
# their conditional SDs (condVar), the Breusch-Pagan test of performance::check_heteroscedasticity
# (with lme4's sigma, see breusch_pagan below),
# Shapiro-Wilk tests of the residuals and the modes, and every leave-one-therapist-out refit.
suppressMessages({library(lme4); library(performance); library(jsonlite)})
here <- "tests/data/diagnostics"
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                    calc.derivs = FALSE)

set.seed(20261205)
# --- client level: 14 therapists with 4-15 clients each ------------------------------------
n_t <- 14
sizes <- sample(4:15, n_t, replace = TRUE)
therapist <- rep(sprintf("T%02d", seq_len(n_t)), sizes)
u <- rnorm(n_t, 0, 2)[match(therapist, sprintf("T%02d", seq_len(n_t)))]
n <- length(therapist)
alliance <- round(rnorm(n, 4.5, 0.8), 3)
baseline <- round(rnorm(n, 15, 4), 3)
post <- round(8 + 0.5 * baseline - 1.1 * alliance + u + rnorm(n, 0, 3), 3)
clients <- data.frame(client = sprintf("C%03d", seq_len(n)), therapist, alliance, baseline, post)
write.csv(clients, file.path(here, "client_level.csv"), row.names = FALSE)

# --- session level: 8 therapists, 5 clients each, 6 sessions ------------------------------
sess <- expand.grid(session = 0:5, client = sprintf("S%03d", 1:40))
sess$therapist <- sprintf("T%02d", (as.integer(factor(sess$client)) - 1) %/% 5 + 1)
cu <- rnorm(40, 0, 2)[as.integer(factor(sess$client))]
cs <- rnorm(40, 0, 0.8)[as.integer(factor(sess$client))]
tu <- rnorm(8, 0, 2.5)[as.integer(factor(sess$therapist))]
sess$alliance <- round(rnorm(nrow(sess), 0, 1), 3)
sess$symptoms <- round(20 - 1.5 * sess$session - 0.8 * sess$alliance + cu + cs * sess$session + tu +
                       rnorm(nrow(sess), 0, 2), 3)
sess <- sess[, c("client", "therapist", "session", "alliance", "symptoms")]
write.csv(sess, file.path(here, "session_level.csv"), row.names = FALSE)

models <- list(
  client_level = list(formula = "post ~ alliance + baseline + (1 | therapist)", data = clients),
  session_level = list(formula = "symptoms ~ session + alliance + (1 + session | client) + (1 | therapist)",
                       data = sess)
)

fit_one <- function(formula, data) lmer(as.formula(formula), data = data, REML = TRUE, control = ctrl)

modes <- function(m) {
  re <- ranef(m, condVar = TRUE)
  lapply(names(re), function(g) {
    pv <- attr(re[[g]], "postVar")
    list(group = g, levels = rownames(re[[g]]),
         values = lapply(as.list(re[[g]]), unname),
         cond_sd = lapply(seq_len(ncol(re[[g]])), function(j) sqrt(pv[j, j, ])),
         terms = I(colnames(re[[g]])),
         shapiro_p = I(unname(sapply(re[[g]], function(v) shapiro.test(v)$p.value))))
  })
}

# The score test of performance::check_heteroscedasticity written out with lme4's sigma:
# performance 0.10.2 scales by its .sigma(), which for merMod is sqrt(deviance / (n - p)) (not
# the residual SD), so its p-value is recorded beside this one for information only.
breusch_pagan <- function(m) {
  r <- residuals(m, type = "pearson")
  S.sq <- insight::get_df(m, type = "residual") * sigma(m)^2 / sum(!is.na(r))
  U <- r^2 / S.sq
  SS <- anova(lm(U ~ fitted(m)))$"Sum Sq"
  pchisq((sum(SS) - SS[length(SS)]) / 2, df = 1, lower.tail = FALSE)
}

# The reference line of qqline(): through the first and third quartiles.
qqline_coef <- function(y) {
  yq <- quantile(y, c(0.25, 0.75)); xq <- qnorm(c(0.25, 0.75))
  slope <- diff(yq) / diff(xq)
  list(intercept = unname(yq[1] - slope * xq[1]), slope = unname(slope))
}

out <- list()
for (name in names(models)) {
  spec <- models[[name]]
  m <- fit_one(spec$formula, spec$data)
  groups <- sort(unique(spec$data$therapist))
  loo <- lapply(groups, function(g) {
    mg <- fit_one(spec$formula, spec$data[spec$data$therapist != g, ])
    b <- fixef(m); bg <- fixef(mg); v <- as.matrix(vcov(mg))
    list(therapist = g, estimate = as.list(bg), se = as.list(sqrt(diag(v))),
         dfbetas = as.list((b - bg) / sqrt(diag(v))),
         cooks_distance = as.numeric(t(b - bg) %*% solve(v) %*% (b - bg)) / length(b),
         singular = isSingular(mg))
  })
  r <- residuals(m)
  out[[name]] <- list(
    formula = spec$formula,
    fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
    sigma = sigma(m), theta = unname(getME(m, "theta")),
    fitted = unname(fitted(m)), residuals = unname(r),
    ranef = modes(m),
    breusch_pagan_p = breusch_pagan(m),
    performance_breusch_pagan_p = as.numeric(check_heteroscedasticity(m)),
    residual_df = insight::get_df(m, type = "residual"),
    shapiro_residuals_p = shapiro.test(r)$p.value,
    qq_theoretical = sort(qqnorm(unname(r), plot.it = FALSE)$x),
    qqline = qqline_coef(unname(r)),
    loo = loo
  )
}
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     performance = as.character(packageVersion("performance")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "diagnostics_reference.json"))
