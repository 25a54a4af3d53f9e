# Reference fit of the RI-CLPM (Hamaker et al., 2015) for tests/test_dynamic.py.
# Data: riclpm_data.csv, drawn by alliance.models.dynamic.simulate_riclpm(
#   [0.3, 0.4, -0.15, 0.1, 4, 9, -2, 3, 6, -1, 2, 5, -0.8] + means, n = 300, waves = 5,
#   seed = 1, missing_share = 0.15); x = alliance, y = outcome.
# Run: Rscript riclpm.R   (lavaan 0.6-14) -> riclpm_expected.csv, riclpm_loglik.csv
library(lavaan)
d <- read.csv("riclpm_data.csv")
T <- 5
w <- 1:T
m <- c(
  paste0("RIx =~ ", paste0("1*x", w, collapse = " + ")),
  paste0("RIy =~ ", paste0("1*y", w, collapse = " + ")),
  paste0("wx", w, " =~ 1*x", w),
  paste0("wy", w, " =~ 1*y", w),
  paste0("x", w, " ~~ 0*x", w),
  paste0("y", w, " ~~ 0*y", w),
  paste0("wx", w[-1], " ~ ar_alliance*wx", w[-T], " + outcome_to_alliance*wy", w[-T]),
  paste0("wy", w[-1], " ~ ar_outcome*wy", w[-T], " + alliance_to_outcome*wx", w[-T]),
  "wx1 ~~ var_w1_alliance*wx1", "wy1 ~~ var_w1_outcome*wy1", "wx1 ~~ cov_w1*wy1",
  paste0("wx", w[-1], " ~~ var_u_alliance*wx", w[-1]),
  paste0("wy", w[-1], " ~~ var_u_outcome*wy", w[-1]),
  paste0("wx", w[-1], " ~~ cov_u*wy", w[-1]),
  "RIx ~~ var_ri_alliance*RIx", "RIy ~~ var_ri_outcome*RIy", "RIx ~~ cov_ri*RIy",
  "RIx ~~ 0*wx1 + 0*wy1", "RIy ~~ 0*wx1 + 0*wy1",
  paste0("x", w, " ~ mean_alliance_", w, "*1"),
  paste0("y", w, " ~ mean_outcome_", w, "*1")
)
fit <- lavaan(paste(m, collapse = "\n"), data = d, missing = "ml", estimator = "ML",
              meanstructure = TRUE, int.lv.free = FALSE, information = "observed")
pe <- parameterEstimates(fit)
pe <- pe[pe$label != "", c("label", "est", "se")]
pe <- pe[!duplicated(pe$label), ]
names(pe) <- c("parameter", "estimate", "se")
write.csv(pe, "riclpm_expected.csv", row.names = FALSE)
write.csv(data.frame(loglik = as.numeric(logLik(fit)), n = lavInspect(fit, "ntotal"),
                     npar = lavInspect(fit, "npar"), version = as.character(packageVersion("lavaan"))),
          "riclpm_loglik.csv", row.names = FALSE)
