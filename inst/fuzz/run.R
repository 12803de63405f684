# make fuzz: Rscript inst/fuzz/run.R [cases] [seed]
args <- commandArgs(trailingOnly = TRUE)
n <- if (length(args) >= 1) as.integer(args[1]) else 10000L
seed <- if (length(args) >= 2) as.integer(args[2]) else 2L
source(system.file("fuzz", "fuzz.R", package = "mixedrs"))
t0 <- Sys.time()
r <- run_fuzz(n, seed = seed, children = 2)
cat(sprintf("fuzz: %d cases, %d fits (%d with an unbounded likelihood), %d classed errors, %d unclassed, %d crashes, %d not run, %d compared with lme4, %d worse (%.0f s)\n",
            r$cases, r$counts[["fit"]], r$unbounded, r$counts[["classed_error"]], r$counts[["unclassed_error"]], length(r$crashed),
            length(r$never_ran), r$compared, nrow(r$worse), as.numeric(difftime(Sys.time(), t0, units = "secs"))))
if (nrow(r$worse)) print(r$worse)
bad <- r$results[r$results$outcome == "unclassed_error", ]
if (nrow(bad)) print(utils::head(bad, 20))
if (length(r$crashed)) cat("crashed cases:", r$crashed, "\n")
quit(status = as.integer(length(r$crashed) + nrow(bad) + nrow(r$worse) > 0))
