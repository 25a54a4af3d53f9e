# Reference values for tests/test_coding_agreement.py: simulated coder data and
# psych::cohen.kappa (Cohen 1960/1968 kappa, Fleiss, Cohen & Everitt 1969 variances).
# usage (from this folder): Rscript make_psych_reference.R
# Writes two_coders.csv, observer_incomplete.csv and psych_reference.json.
# Made with R 4.2.2, psych 2.2.9, jsonlite.
suppressMessages({library(psych); library(jsonlite)})
set.seed(20240609)

# ---- 1. Two coders, 7-point ordinal code; category 1 never used, 5 targets coded by A only
n <- 120
truth <- rnorm(n)
code7 <- function(x) as.integer(pmin(7, pmax(2, round(4.6 + 1.2 * x))))
a <- code7(truth + rnorm(n, 0, 0.5))
b <- code7(truth + 0.3 + rnorm(n, 0, 0.6))
extra <- code7(rnorm(5))
two <- rbind(data.frame(target = sprintf("s%03d", 1:n), rater = "A", code = a),
             data.frame(target = sprintf("s%03d", 1:n), rater = "B", code = b),
             data.frame(target = sprintf("x%03d", 1:5), rater = "A", code = extra))
write.csv(two, "two_coders.csv", row.names = FALSE)

lin <- function(q) 1 - abs(outer(1:q, 1:q, "-")) / (q - 1)
quad <- function(q) 1 - (outer(1:q, 1:q, "-"))^2 / (q - 1)^2
one_pair <- function(x, w, levels) {
  r <- cohen.kappa(x, w = w, levels = levels)
  list(n = r$n.obs, kappa = r$kappa, var_kappa = r$var.kappa,
       weighted_kappa = r$weighted.kappa, var_weighted = r$var.weighted,
       ci_kappa = unname(r$confid[1, c(1, 3)]), ci_weighted = unname(r$confid[2, c(1, 3)]))
}
x2 <- cbind(a, b)
out <- list()
out$two_coders <- list(
  levels_1_7_linear = one_pair(x2, lin(7), 1:7),
  levels_1_7_quadratic = one_pair(x2, quad(7), 1:7),
  observed_levels_linear = one_pair(x2, lin(6), 2:7),
  observed_levels_quadratic = one_pair(x2, quad(6), 2:7))

# ---- 2. Five coders, each session coded by 2 or 3 of them (incomplete design):
# 7-point ordinal item and a 0/1 rupture marker
ns <- 80
lenient <- c(-0.3, 0, 0.2, 0.4, -0.1)
rows <- list()
for (s in 1:ns) {
  k <- sample(2:3, 1)
  who <- sort(sample(1:5, k))
  t <- rnorm(1); rup <- rnorm(1)
  for (c in who) {
    code <- as.integer(min(7, max(1, round(4 + 1.3 * t + lenient[c] + rnorm(1, 0, 0.6)))))
    rupture <- as.integer(rup + rnorm(1, 0, 0.6) > 0.7)
    rows[[length(rows) + 1]] <- data.frame(target = sprintf("t%02d", s), rater = sprintf("C%d", c),
                                           code = code, rupture = rupture)
  }
}
obs <- do.call(rbind, rows)
write.csv(obs, "observer_incomplete.csv", row.names = FALSE)

wide_of <- function(col) {
  w <- reshape(obs[, c("target", "rater", col)], idvar = "target", timevar = "rater",
               direction = "wide")
  m <- as.matrix(w[, -1]); colnames(m) <- sub(paste0(col, "."), "", colnames(m), fixed = TRUE)
  m[, sort(colnames(m))]
}
pairs_of <- function(m, w, levels) {
  res <- list()
  cn <- colnames(m)
  for (i in 1:(ncol(m) - 1)) for (j in (i + 1):ncol(m)) {
    x <- na.omit(m[, c(i, j)])
    r <- one_pair(x, w, levels)
    res[[length(res) + 1]] <- c(list(rater_1 = cn[i], rater_2 = cn[j]), r)
  }
  res
}
code_wide <- wide_of("code")
rup_wide <- wide_of("rupture")
out$observer_incomplete <- list(
  code_pairs_quadratic = pairs_of(code_wide, quad(7), 1:7),
  code_pairs_linear = pairs_of(code_wide, lin(7), 1:7),
  rupture_pairs = pairs_of(rup_wide, quad(2), 0:1),
  psych_multi_code = {r <- cohen.kappa(code_wide, levels = 1:7)
                      list(av_kappa = r$av.kappa, av_weighted_quadratic = r$av.wt)},
  psych_multi_rupture = {r <- cohen.kappa(rup_wide, levels = 0:1)
                         list(av_kappa = r$av.kappa)})
out$note <- paste(
  "psych::cohen.kappa 2.2.9. 'kappa' unweighted, 'weighted_kappa' with the weight matrix named",
  "(linear 1-|i-j|/(q-1), quadratic 1-(i-j)^2/(q-1)^2 over the levels given). var_kappa is the",
  "Fleiss, Cohen & Everitt (1969) large-sample variance; var_weighted is psych's weighted",
  "variance, which uses rs_i * sum_j w_ij where FCE 1969 has sum_j w_ij p_.j (see tests).",
  "ci_* are psych's normal intervals at alpha = .05, clipped to [-1, 1].")
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "psych_reference.json")
