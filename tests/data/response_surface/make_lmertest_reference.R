# Reference for alliance.agreement.response_surface(method = "mixed", covariates = ["baseline"]):
# polynomial regression with response surface analysis (Shanock et al. 2010; Humberg, Nestler &
# Back 2019) fitted by lme4 (REML) with Satterthwaite df from lmerTest, a1-a5 as contrasts L'beta
# (lmerTest::contest, joint = FALSE).  Run from this folder:  Rscript make_lmertest_reference.R
# Writes surface_data.csv (the simulated input) and lmertest_reference.csv (expected numbers).
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
set.seed(20101)
n_therapists <- 40; per <- 5
therapist <- rep(sprintf("T%02d", seq_len(n_therapists)), each = per)
n <- length(therapist)
latent <- rnorm(n, 46, 5)
x <- round(latent + rnorm(n, 0, 3), 2)            # client-rated alliance
y <- round(0.6 * latent + 18 + rnorm(n, 0, 4), 2) # therapist-rated alliance
baseline <- round(rnorm(n, 15, 5), 1)
u <- rnorm(n_therapists, 0, 1.5)[as.integer(factor(therapist))]
post <- round(3 + 0.55 * baseline - 0.12 * (x - 46) - 0.05 * (y - 46) - 0.004 * (x - 46)^2 +
              0.006 * (x - 46) * (y - 46) - 0.012 * (y - 46)^2 + u + rnorm(n, 0, 3.5), 1)
data <- data.frame(therapist, x, y, baseline, post)
write.csv(data, "surface_data.csv", row.names = FALSE)

# Centre both predictors at their pooled grand mean (one value, so x = y keeps its meaning) and
# the covariate at its mean.
centre <- mean(c(data$x, data$y))
d <- transform(data, xc = x - centre, yc = y - centre, bc = baseline - mean(baseline))
m <- lmer(post ~ xc + yc + I(xc^2) + I(xc * yc) + I(yc^2) + bc + (1 | therapist), data = d, REML = TRUE)
cf <- summary(m, ddf = "Satterthwaite")$coefficients
coefs <- data.frame(parameter = c("b0", "b1", "b2", "b3", "b4", "b5", "baseline"),
                    estimate = cf[, "Estimate"], se = cf[, "Std. Error"], df = cf[, "df"],
                    t = cf[, "t value"], p = cf[, "Pr(>|t|)"])
L <- rbind(a1 = c(0, 1, 1, 0, 0, 0, 0),
           a2 = c(0, 0, 0, 1, 1, 1, 0),
           a3 = c(0, 1, -1, 0, 0, 0, 0),
           a4 = c(0, 0, 0, 1, -1, 1, 0),
           a5 = c(0, 0, 0, 1, 0, -1, 0))
surf <- lapply(rownames(L), function(k) {
  r <- contest(m, L[k, , drop = FALSE], joint = FALSE, ddf = "Satterthwaite")
  data.frame(parameter = k, estimate = r$Estimate, se = r$`Std. Error`, df = r$df,
             t = r$`t value`, p = r$`Pr(>|t|)`)
})
out <- rbind(coefs, do.call(rbind, surf))
out$centre <- centre
out$variance_therapist <- as.data.frame(VarCorr(m))$vcov[1]
out$sigma <- sigma(m)
write.csv(out, "lmertest_reference.csv", row.names = FALSE)
print(out, digits = 10)
cat("lme4", as.character(packageVersion("lme4")), "lmerTest", as.character(packageVersion("lmerTest")), "\n")
