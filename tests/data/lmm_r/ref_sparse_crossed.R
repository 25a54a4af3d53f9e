# lme4 reference fits of a large crossed design (client x rater, 3,500 raters) for the sparse
# path of alliance.lmm (tests/test_lmm_sparse.py).
# usage: python sim_sparse_crossed.py /tmp/sparse_crossed.csv
#        Rscript ref_sparse_crossed.R /tmp/sparse_crossed.csv DIR [RUNS]
#        (writes DIR/sparse_crossed_reference.json and prints CPU / wall seconds of RUNS fits
#        of each model with lme4's default control, default 3; the reference values come from
#        a refit with a tight bobyqa tolerance)
# Produced with R 4.x, lme4 1.1-31, lmerTest 3.1-3 (Debian r-cran-* packages; reference BLAS).
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(args[1])
dir <- args[2]
runs <- if (length(args) > 2) as.integer(args[3]) else 3L
d$client <- factor(d$client)
d$rater <- factor(d$rater)
models <- list(
  crossed_intercepts = score ~ time + severity + (1 | client) + (1 | rater),
  crossed_slope = score ~ time + severity + (1 + time | client) + (1 | rater)
)
ctrl <- lmerControl(calc.derivs = FALSE)
out <- list(data = list(nobs = nrow(d), sum_score = sum(d$score), sum_severity = sum(d$severity),
                        clients = nlevels(d$client), raters = nlevels(d$rater)),
            blas = La_library())
for (name in names(models)) {
  f <- models[[name]]
  times <- list()
  for (i in seq_len(runs)) {
    t <- system.time(m <- lmer(f, data = d, REML = TRUE, control = ctrl))
    times[[i]] <- list(cpu = unname(t["user.self"] + t["sys.self"]), wall = unname(t["elapsed"]))
    cat(sprintf("%s lme4 run %d: cpu %.2f s, wall %.2f s\n", name, i, times[[i]]$cpu, times[[i]]$wall))
  }
  # the reference values: bobyqa restarted from the default fit's theta with a tight rhoend
  # (the default stops with theta good to ~1e-5 on these flat 42,000-row criteria)
  default_objective <- REMLcrit(m)
  m <- lmer(f, data = d, REML = TRUE, start = getME(m, "theta"),
            control = lmerControl(calc.derivs = FALSE, optCtrl = list(rhobeg = 1e-3, rhoend = 1e-10)))
  t <- system.time(mt <- lmerTest::as_lmerModLmerTest(m))
  co <- summary(mt)$coefficients
  vc <- as.data.frame(VarCorr(m))
  out[[name]] <- list(
    formula = paste(deparse(f), collapse = ""), reml = TRUE,
    objective = unname(REMLcrit(m)), default_objective = unname(default_objective), theta = unname(getME(m, "theta")), sigma = sigma(m),
    fixed = lapply(setNames(rownames(co), rownames(co)), function(r) as.list(co[r, ])),
    varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])),
    ranef_rater_head = unname(ranef(m)$rater[1:5, 1]),
    ranef_client_head = unname(as.matrix(ranef(m)$client[1:3, , drop = FALSE])),
    nobs = nobs(m), times = times, lmertest_df_cpu = unname(t["user.self"] + t["sys.self"]))
}
write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
      file.path(dir, "sparse_crossed_reference.json"))
