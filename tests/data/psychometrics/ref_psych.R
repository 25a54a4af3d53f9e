# Reference values for tests/test_psychometrics.py, from psych (2.2.9) and stats::factanal.
# Usage: Rscript ref_psych.R DIR   (DIR holds items.csv; writes reference.json there)
suppressPackageStartupMessages({library(psych); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
dir <- if (length(args)) args[1] else "."
x <- read.csv(file.path(dir, "items.csv"))
r <- cor(x)
fa1 <- psych::fa(r, nfactors = 1, fm = "ml", n.obs = nrow(x))
lam <- as.numeric(fa1$loadings)
psi <- as.numeric(fa1$uniquenesses)
fan <- stats::factanal(covmat = r, factors = 1, n.obs = nrow(x))
om <- suppressWarnings(suppressMessages(psych::omega(r, nfactors = 1, fm = "ml", n.obs = nrow(x), plot = FALSE)))
al <- psych::alpha(x)
out <- list(
  psych_version = as.character(packageVersion("psych")),
  fa_ml_loadings = lam, fa_ml_uniquenesses = psi,
  omega_from_fa_ml = sum(lam)^2 / (sum(lam)^2 + sum(psi)),
  factanal_loadings = as.numeric(fan$loadings), factanal_uniquenesses = as.numeric(fan$uniquenesses),
  psych_omega_tot = om$omega.tot,
  alpha_raw = al$total$raw_alpha,
  item_total_r_drop = as.numeric(al$item.stats$r.drop)
)
write_json(out, file.path(dir, "reference.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
