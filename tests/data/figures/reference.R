# Reference numbers for tests/test_figure_statistics.py: lme4's conditional SDs of the therapist
# conditional modes (ranef(condVar = TRUE), as dotplot(ranef(m, condVar = TRUE)) draws them) and
# the model-implied line with its 95% band (x0' V x0, other columns of the model matrix at their
# means). Run: Rscript reference.R   (lme4 1.1-31)
suppressPackageStartupMessages(library(lme4))
d <- read.csv("caterpillar_data.csv", stringsAsFactors = TRUE)
# (1) client level: one row per client (the first session), therapist intercept
c1 <- d[d$session == 1, ]
m1 <- lmer(y ~ x + grp + (1 | therapist), data = c1, REML = TRUE)
re1 <- ranef(m1, condVar = TRUE)$therapist
out1 <- data.frame(model = "client", therapist = rownames(re1), mode = re1[, 1],
                   cond_sd = sqrt(attr(re1, "postVar")[1, 1, ]))
# (2) session level: client intercept and slope nested in therapists
m2 <- lmer(y ~ x + grp + session + (1 | therapist) + (1 + session | client), data = d, REML = TRUE)
re2 <- ranef(m2, condVar = TRUE)$therapist
out2 <- data.frame(model = "session", therapist = rownames(re2), mode = re2[, 1],
                   cond_sd = sqrt(attr(re2, "postVar")[1, 1, ]))
write.csv(rbind(out1, out2), "ref_condvar.csv", row.names = FALSE)
# the implied line of model (1): x on a grid, other columns at their means
X <- model.matrix(m1)
grid <- seq(min(c1$x), max(c1$x), length.out = 7)
X0 <- matrix(colMeans(X), nrow = length(grid), ncol = ncol(X), byrow = TRUE)
colnames(X0) <- colnames(X)
X0[, "x"] <- grid
V <- as.matrix(vcov(m1))
fit <- as.vector(X0 %*% fixef(m1))
se <- sqrt(rowSums((X0 %*% V) * X0))
write.csv(data.frame(x = grid, fit = fit, se = se), "ref_line.csv", row.names = FALSE)
