# Ctrl-C: SIGINT to an Rscript child running a long fit stops the fit within a
# second, as a classed condition, and R keeps working.

test_that("a long fit stops within a second of SIGINT and R stays usable", {
  skip_on_os("windows")
  script <- system.file("scripts", "interrupt_child.R", package = "mixedrs")
  out <- tempfile()
  cmd <- sprintf(paste(
    "Rscript %s > %s 2>&1 & pid=$!;",
    "for k in $(seq 1 100); do grep -q START %s && break; sleep 0.1; done;",
    "sleep 1.5; date +SENT%%s.%%N >> %s.sent; kill -INT $pid; wait $pid"), script, out, out, out)
  system(cmd)
  lines <- readLines(out)
  sent <- as.numeric(sub("SENT", "", readLines(paste0(out, ".sent"))))
  stop_time <- as.numeric(sub("STOP ", "", grep("^STOP", lines, value = TRUE)))
  expect_length(stop_time, 1L)
  expect_match(grep("^RESULT", lines, value = TRUE), "mixedrs_interrupted_error|interrupt")
  expect_match(grep("^ALIVE", lines, value = TRUE), "ALIVE 55 100000")
  # the fit returned within a second of the signal
  expect_lt(stop_time - sent, 1)
  cat(sprintf("\n  interrupt: fit stopped %.3f s after SIGINT (%s)\n", stop_time - sent, grep("^RESULT", lines, value = TRUE)))
})

test_that("a long bootstrap stops on SIGINT and returns the replicates done", {
  skip_on_os("windows")
  script <- system.file("scripts", "interrupt_bootstrap_child.R", package = "mixedrs")
  out <- tempfile()
  cmd <- sprintf(paste(
    "Rscript %s > %s 2>&1 & pid=$!;",
    "for k in $(seq 1 100); do grep -q START %s && break; sleep 0.1; done;",
    "sleep 1.5; date +SENT%%s.%%N >> %s.sent; kill -INT $pid; wait $pid"), script, out, out, out)
  system(cmd)
  lines <- readLines(out)
  sent <- as.numeric(sub("SENT", "", readLines(paste0(out, ".sent"))))
  stop_time <- as.numeric(sub("STOP ", "", grep("^STOP", lines, value = TRUE)))
  expect_length(stop_time, 1L)
  expect_match(grep("^RESULT", lines, value = TRUE), "bootstrap interrupted after")
  expect_match(grep("^ALIVE", lines, value = TRUE), "ALIVE 55")
  expect_lt(stop_time - sent, 1)
  cat(sprintf("\n  interrupt: bootstrap stopped %.3f s after SIGINT (%s)\n", stop_time - sent,
              grep("^RESULT", lines, value = TRUE)))
})
