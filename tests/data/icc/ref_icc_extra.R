# Extra lme4 references for the incomplete-design ICCs (alliance.reliability):
# REML criteria of the two-way model and the one-way model rating ~ 1 + (1 | target).
# usage: Rscript ref_icc_extra.R DIR   (DIR/ratings.csv long: target, rater, rating) -> DIR/lme4_extra.json
suppressMessages({library(lme4); library(jsonlite)})
dir <- commandArgs(TRUE)[1]
d <- read.csv(file.path(dir, "ratings.csv"), stringsAsFactors = FALSE)
m2 <- lmer(rating ~ 1 + (1 | target) + (1 | rater), d, REML = TRUE)
m1 <- lmer(rating ~ 1 + (1 | target), d, REML = TRUE)
vc1 <- as.data.frame(VarCorr(m1))
vt <- vc1$vcov[vc1$grp == "target"]; vw <- vc1$vcov[vc1$grp == "Residual"]
out <- list(
  two_way = list(REMLcrit = REMLcrit(m2), intercept = unname(fixef(m2)[1]), singular = isSingular(m2)),
  one_way = list(target = vt, residual = vw, icc_single = vt / (vt + vw), REMLcrit = REMLcrit(m1),
                 intercept = unname(fixef(m1)[1])),
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "lme4_extra.json"))
