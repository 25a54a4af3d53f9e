# Reference numbers for tests/test_psychometrics.py (multilevel and bifactor omega).
# R 4 with lavaan 0.6-14 and psych 2.2.9 (Debian r-cran-*). Run from this folder:
#   Rscript ref_lavaan.R   -> reference.json
library(lavaan)
library(jsonlite)

# 1. Two-level one-factor CFA (Geldhof, Preacher & Zyphur 2014): omega within and between.
d <- read.csv("twolevel.csv")
items <- paste0("y", 1:6)
model <- paste0("level: 1\n fw =~ ", paste(items, collapse = " + "),
                "\nlevel: 2\n fb =~ ", paste(items, collapse = " + "), "\n")
fit <- cfa(model, data = d, cluster = "client", std.lv = TRUE)
est <- lavInspect(fit, "est")
omega_of <- function(level) {
  lam <- level$lambda[, 1]; th <- diag(level$theta)
  sum(lam)^2 / (sum(lam)^2 + sum(th))
}
# Saturated two-level model: the unrestricted within and between covariance matrices.
sat <- paste0("level: 1\n", paste(combn(items, 2, paste, collapse = " ~~ "), collapse = "\n"),
              "\nlevel: 2\n", paste(combn(items, 2, paste, collapse = " ~~ "), collapse = "\n"), "\n")
fit_sat <- sem(sat, data = d, cluster = "client")
h1 <- lavInspect(fit_sat, "implied")
alpha_of <- function(S) { k <- nrow(S); k / (k - 1) * (1 - sum(diag(S)) / sum(S)) }

# 1b. The same on unbalanced clusters (2-5 sessions per client): lavaan's full ML, which
# MUML (the Python implementation) only approximates there.
du <- read.csv("twolevel_unbalanced.csv")
fit_u <- cfa(model, data = du, cluster = "client", std.lv = TRUE)
est_u <- lavInspect(fit_u, "est")

# 2. Bifactor CFA with the declared groups (WAI task/bond/goal), on the item correlations.
b <- read.csv("bifactor.csv")
R <- cor(b)
bif <- "g =~ w1 + w2 + w3 + w4 + w5 + w6 + w7 + w8 + w9 + w10 + w11 + w12
task =~ w1 + w2 + w10 + w12
bond =~ w3 + w5 + w7 + w9
goal =~ w4 + w6 + w8 + w11"
fb <- cfa(bif, sample.cov = R, sample.nobs = nrow(b), std.lv = TRUE, orthogonal = TRUE,
          sample.cov.rescale = FALSE)
L <- lavInspect(fb, "est")$lambda
V <- sum(lavInspect(fb, "implied")$cov)
sums <- colSums(L)^2
ref <- list(
  twolevel = list(omega_within = omega_of(est$within), omega_between = omega_of(est$client),
                  alpha_within = alpha_of(h1$within$cov), alpha_between = alpha_of(h1$client$cov),
                  converged = lavInspect(fit, "converged")),
  twolevel_unbalanced = list(omega_within = omega_of(est_u$within), omega_between = omega_of(est_u$client),
                             converged = lavInspect(fit_u, "converged")),
  bifactor = list(omega_total = sum(sums) / V, omega_hierarchical = sums[["g"]] / V,
                  omega_total_observed = sum(sums) / sum(R),
                  omega_hierarchical_observed = sums[["g"]] / sum(R),
                  converged = lavInspect(fb, "converged")),
  versions = list(lavaan = as.character(packageVersion("lavaan")), R = R.version.string))
write_json(ref, "reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
