# Reference values for tests/test_change.py: the JTRCI() function of the R package
# AWKruijt/JT-RCI (R/JT-RCI.R, commit 0ddc061; not redistributed here) run on the Dyadic
# Adjustment Scale data of Jacobson & Truax (1991, Table 2) in das_pre_post.csv.
# Settings: reliability .84 (the value of that package's README example on these data),
# higherIsBetter = TRUE, criterion A (sample baseline as the dysfunctional distribution) and,
# separately, criterion C with the functional norm M = 114.8, SD = 17.8 (values commonly quoted
# from Jacobson & Truax 1991 for the DAS but NOT verified against the paper; here they only
# exercise the formula). Note that JTRCI's criterion C uses the sample's pre mean and SD as
# the dysfunctional distribution.
# Usage: Rscript ref_jtrci.R path/to/JT-RCI.R DIR   (writes DIR/jtrci_reference.json)
suppressPackageStartupMessages(library(jsonlite))
args <- commandArgs(trailingOnly = TRUE)
source(args[1])
dir <- if (length(args) > 1) args[2] else "."
data <- read.csv(file.path(dir, "das_pre_post.csv"))
df <- data  # JTRCI() reads the global 'df' when the data have no missing values
run <- function(...) { JTRCI(data = data, pre = "pre", post = "post", ppid = "id", reliability = .84,
                             higherIsBetter = TRUE, indextype = "JT", plot = FALSE, table = FALSE, ...); JTRCIdf }
a <- run(JTcrit = "A")
c <- run(JTcrit = "C", normM = 114.8, normSD = 17.8)
out <- list(reliability = .84, Sdiff = a$Sdiff[1], SEmeasurement = a$SEmeasurement[1],
            rci = a$RCI, criterion_a = a$critval[1], class_a = as.character(a$class_JTRCI),
            criterion_c = c$critval[1], class_c = as.character(c$class_JTRCI),
            pre_mean = mean(data$pre), pre_sd = sd(data$pre))
write_json(out, file.path(dir, "jtrci_reference.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
