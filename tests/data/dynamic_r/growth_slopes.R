# Reference for alliance.models.growth_slopes (tests/test_models.py): post-window rate of change
# from one ML growth model, slope_i = fixed slope + conditional mode. Window end k = 3; clients
# with at least 3 sessions after it. Run: Rscript growth_slopes.R (lme4 1.1-31) -> growth_expected.csv
library(lme4)
d <- read.csv("growth_data.csv")
k <- 3
d <- d[d$session > k, ]
n <- table(d$client)
d <- d[d$client %in% names(n)[n >= 3], ]
d$t <- d$session - k
fit <- lmer(score ~ t + (1 + t | client), data = d, REML = FALSE,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
co <- coef(fit)$client
write.csv(data.frame(client = rownames(co), slope = co[, "t"]), "growth_expected.csv", row.names = FALSE)
