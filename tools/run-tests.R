# Run the testthat suite against the installed package and end with a plain
# "N passed, N failed" line. Exits non-zero on any failure.
library(testthat)
options(testthat.progress.max_fails = Inf)
res <- as.data.frame(test_dir("tests/testthat", package = "mixedrs", load_package = "installed",
                              reporter = ProgressReporter$new(show_praise = FALSE), stop_on_failure = FALSE))
failed <- sum(res$failed) + sum(res$error)
cat(sprintf("testthat: %d passed, %d failed, %d skipped\n", sum(res$passed), failed, sum(res$skipped)))
quit(status = if (failed > 0) 1L else 0L)
