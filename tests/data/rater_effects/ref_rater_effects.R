# Reference rater effects and pairwise rater agreement for tests/test_rater_effects.py.
# usage: Rscript ref_rater_effects.R DIR   (DIR/ratings.csv long: target, rater, rating)
#        -> DIR/rater_effects_reference.json
# lme4: rating ~ 1 + (1|target) + (1|rater), REML; ranef (conditional modes) and their
# conditional SDs (condVar). Descriptive statistics by explicit loops (a second,
# independent implementation): mean deviation from the other raters of the same target,
# and for every rater pair the shared targets, differences (Bland & Altman 1986), Pearson r,
# exact agreement and psych::ICC's ICC2 (= McGraw & Wong's ICC(A,1)) of the pair.
suppressMessages({library(lme4); library(psych); library(jsonlite)})
invisible(Sys.setlocale("LC_COLLATE", "C"))  # sort rater ids as Python does
dir <- commandArgs(TRUE)[1]
d <- read.csv(file.path(dir, "ratings.csv"), stringsAsFactors = FALSE)
d$target <- as.character(d$target); d$rater <- as.character(d$rater)

m <- lmer(rating ~ 1 + (1 | target) + (1 | rater), d, REML = TRUE)
re <- ranef(m, condVar = TRUE)$rater
vc <- as.data.frame(VarCorr(m))
raters <- sort(unique(d$rater))
blup <- re[raters, "(Intercept)"]
csd <- sqrt(attr(re, "postVar")[1, 1, match(raters, rownames(re))])

mean_dev <- n_shared <- numeric(length(raters))
for (j in seq_along(raters)) {
  own <- d[d$rater == raters[j], ]
  devs <- c()
  for (i in seq_len(nrow(own))) {
    others <- d$rating[d$target == own$target[i] & d$rater != raters[j]]
    if (length(others) > 0) devs <- c(devs, own$rating[i] - mean(others))
  }
  n_shared[j] <- length(devs)
  mean_dev[j] <- if (length(devs)) mean(devs) else NA
}

pairs <- list()
for (a in seq_along(raters)) for (b in seq_along(raters)) if (a < b) {
  da <- d[d$rater == raters[a], c("target", "rating")]
  db <- d[d$rater == raters[b], c("target", "rating")]
  both <- merge(da, db, by = "target", suffixes = c("_a", "_b"))
  n <- nrow(both)
  if (n < 2) next
  x <- both$rating_a; y <- both$rating_b; dif <- x - y
  icc2 <- suppressWarnings(suppressMessages(
    ICC(cbind(x, y), lmer = FALSE)$results["Single_random_raters", "ICC"]))
  pairs[[length(pairs) + 1]] <- list(
    rater_a = raters[a], rater_b = raters[b], n_shared = n,
    mean_difference = mean(dif), sd_difference = sd(dif),
    loa_low = mean(dif) - 1.96 * sd(dif), loa_high = mean(dif) + 1.96 * sd(dif),
    pearson_r = cor(x, y), icc_a1 = icc2, exact_agreement = mean(abs(dif) <= 1e-9))
}

out <- list(
  model = "lmer(rating ~ 1 + (1|target) + (1|rater), REML = TRUE)",
  varcomp = list(target = vc$vcov[vc$grp == "target"], rater = vc$vcov[vc$grp == "rater"],
                 residual = vc$vcov[vc$grp == "Residual"]),
  intercept = unname(fixef(m)[1]), singular = isSingular(m),
  raters = list(rater = raters, leniency = blup, cond_sd = csd,
                n_ratings = as.vector(table(factor(d$rater, levels = raters))),
                mean_deviation = mean_dev, n_shared_targets = n_shared),
  pairs = pairs,
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  psych = as.character(packageVersion("psych"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(dir, "rater_effects_reference.json"))
