# Two-level SEM with latent therapist means (Lüdtke et al., 2008) by lavaan 0.6-14: the
# reference of alliance.models.fit_latent_mean_slopes (tests/test_latent_means.py).
# usage: Rscript ref_latent_means.R   (writes latent_means_reference.csv, latent_means_loglik.csv)
#
# Data (beside this script):
# * latent_means_sim.csv: alliance.models.simulate_latent_mean_data(sizes, 0.3, 0.9, seed=15) with
#   sizes = numpy.random.default_rng(20080203).integers(2, 13, size=60) (60 therapists, 2-12
#   clients each, 414 clients); fitted as y ~ x and as y ~ x + z.
# * latent_means_example.csv: the bundled example's therapist_client model data
#   (results/interim/models/therapist_client.parquet), complete in post, early_alliance and
#   baseline (376 clients, 40 therapists, ids recoded T01..T40); fitted as
#   post ~ early_alliance + baseline. Its between-therapist residual variance of post is at the
#   boundary 0 (the estimator holds it there), so lavaan fits it with that variance fixed at 0.
# Options: ML, optimiser BFGS with reltol 1e-14 (nlminb's default stops ~1e-5 short of the
# maximum on the example and fails at tighter tolerances), fixed.x = FALSE (the predictors' variances and covariances are free parameters,
# as in the saturated model the estimator fits), information = "observed".
suppressMessages(library(lavaan))
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
sim <- read.csv(file.path(here, "latent_means_sim.csv"))
example <- read.csv(file.path(here, "latent_means_example.csv"))

model <- function(y, x, covariates = character(), fix_between_residual = FALSE) {
  rhs <- function(label) paste(c(paste0(label, "*", x), covariates), collapse = " + ")
  paste0("level: 1\n  ", y, " ~ ", rhs("bw"), "\n",
         "level: 2\n  ", y, " ~ ", rhs("bb"), "\n",
         if (fix_between_residual) paste0("  ", y, " ~~ 0*", y, "\n") else "",
         "contextual := bb - bw\n")
}
fits <- list(
  sim_xy = list(data = sim, model = model("y", "x")),
  sim_xzy = list(data = sim, model = model("y", "x", "z")),
  example = list(data = example, model = model("post", "early_alliance", "baseline", TRUE))
)
rows <- list(); ll <- list()
for (name in names(fits)) {
  f <- sem(fits[[name]]$model, data = fits[[name]]$data, cluster = "therapist", estimator = "ML",
           fixed.x = FALSE, information = "observed",
           optim.method = "BFGS", control = list(reltol = 1e-14, maxit = 1e5))
  stopifnot(lavInspect(f, "converged"))
  pe <- parameterEstimates(f)
  pe <- pe[!(pe$op == "~1" & pe$level == 1), ]  # level-1 intercepts are fixed at 0
  pe$level <- c("", "within", "between")[pe$level + 1]
  rows[[name]] <- data.frame(fit = name, level = pe$level, lhs = pe$lhs, op = pe$op, rhs = pe$rhs,
                             estimate = pe$est, se = pe$se)
  ll[[name]] <- data.frame(fit = name, loglik = as.numeric(logLik(f)), npar = lavInspect(f, "npar"),
                           nobs = lavInspect(f, "nobs"), n_clusters = lavInspect(f, "nclusters"),
                           lavaan = as.character(packageVersion("lavaan")))
}
write.csv(do.call(rbind, rows), file.path(here, "latent_means_reference.csv"), row.names = FALSE)
write.csv(do.call(rbind, ll), file.path(here, "latent_means_loglik.csv"), row.names = FALSE)
