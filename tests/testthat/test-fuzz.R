# 500 random formulas and data sets, fitted in child processes (inst/fuzz/fuzz.R).
# `make fuzz` runs 10,000.

test_that("500 fuzz cases: every outcome is a fit or a classed error, no crash, never worse than lme4", {
  skip_on_os("windows")
  source(system.file("fuzz", "fuzz.R", package = "mixedrs"))
  n <- as.integer(Sys.getenv("MIXEDRS_FUZZ_CASES", "500"))
  res <- run_fuzz(n, seed = 1, children = 2)
  expect_length(res$crashed, 0)
  expect_length(res$never_ran, 0)
  expect_equal(nrow(res$results), n)
  expect_equal(res$counts[["unclassed_error"]], 0L,
               info = paste(utils::head(res$results$message[res$results$outcome == "unclassed_error"], 5), collapse = " | "))
  expect_equal(nrow(res$worse), 0L, info = paste(utils::capture.output(print(utils::head(res$worse))), collapse = "\n"))
  expect_gt(res$counts[["fit"]], n / 3)
  expect_gt(res$counts[["classed_error"]], 0)
  cat(sprintf("\n  fuzz: %d cases, %d fits, %d classed errors, %d unclassed, %d crashes, %d compared with lme4, %d worse\n",
              n, res$counts[["fit"]], res$counts[["classed_error"]], res$counts[["unclassed_error"]],
              length(res$crashed), res$compared, nrow(res$worse)))
})
