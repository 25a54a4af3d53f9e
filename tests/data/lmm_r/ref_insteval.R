# lme4 reference fit and timing of InstEval (73,421 ratings; crossed students x lecturers)
# for alliance.lmm: y ~ service + (1|s) + (1|d) + (1|dept:service), REML.
# usage: Rscript ref_insteval.R DIR [RUNS]  (writes DIR/insteval.csv.gz, DIR/insteval_reference.json
#        and prints CPU / wall seconds of RUNS fits, default 3)
# Produced with R 4.x, lme4 1.1-31, lmerTest 3.1-3 (Debian r-cran-* packages; reference BLAS).
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
dir <- args[1]
runs <- if (length(args) > 1) as.integer(args[2]) else 3L
data(InstEval, package = "lme4")
ie <- InstEval[, c("s", "d", "dept", "service", "y")]
gz <- gzfile(file.path(dir, "insteval.csv.gz"), "w")
write.csv(ie, gz, row.names = FALSE)
close(gz)
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept:service)
ctrl <- lmerControl(calc.derivs = FALSE)
times <- list()
for (i in seq_len(runs)) {
  t <- system.time(m <- lmer(f, data = ie, control = ctrl))
  times[[i]] <- list(cpu = unname(t["user.self"] + t["sys.self"]), wall = unname(t["elapsed"]))
  cat(sprintf("lme4 run %d: cpu %.2f s, wall %.2f s\n", i, times[[i]]$cpu, times[[i]]$wall))
}
t <- system.time(mt <- lmerTest::as_lmerModLmerTest(m))
co <- summary(mt)$coefficients
vc <- as.data.frame(VarCorr(m))
out <- list(
  formula = paste(deparse(f), collapse = ""), reml = TRUE,
  objective = unname(REMLcrit(m)), theta = unname(getME(m, "theta")), sigma = sigma(m),
  fixed = lapply(setNames(rownames(co), rownames(co)), function(r) as.list(co[r, ])),
  varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])),
  nobs = nobs(m), times = times, blas = La_library(),
  lmertest_df_cpu = unname(t["user.self"] + t["sys.self"]))
write(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
      file.path(dir, "insteval_reference.json"))
