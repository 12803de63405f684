# Ctrl-C: SIGINT to an Rscript child in the middle of long work stops it within a
# second, as a classed condition or a short result, and R keeps working.

# Run `script` in a child, send SIGINT 1.5 s after it prints START, and return its
# output lines and the delay from the signal to its STOP line.
interrupt_child <- function(script) {
  out <- tempfile()
  cmd <- sprintf(paste(
    "Rscript %s > %s 2>&1 & pid=$!;",
    "for k in $(seq 1 100); do grep -q START %s && break; sleep 0.1; done;",
    "sleep 1.5; date +SENT%%s.%%N >> %s.sent; kill -INT $pid; wait $pid"), script, out, out, out)
  system(cmd)
  lines <- readLines(out)
  sent <- as.numeric(sub("SENT", "", readLines(paste0(out, ".sent"))))
  stop_time <- as.numeric(sub("STOP ", "", grep("^STOP", lines, value = TRUE)))
  list(lines = lines, delay = stop_time - sent, result = grep("^RESULT", lines, value = TRUE),
       alive = grep("^ALIVE", lines, value = TRUE))
}

test_that("a long fit stops within a second of SIGINT and R stays usable", {
  skip_on_os("windows")
  r <- interrupt_child(system.file("scripts", "interrupt_child.R", package = "mixedrs"))
  expect_length(r$delay, 1L)
  expect_match(r$result, "mixedrs_interrupted_error|interrupt")
  expect_match(r$alive, "ALIVE 55 150000")
  expect_lt(r$delay, 1)
  cat(sprintf("\n  interrupt: fit stopped %.3f s after SIGINT (%s)\n", r$delay, r$result))
})

test_that("a long bootstrap stops on SIGINT and returns the replicates done", {
  skip_on_os("windows")
  r <- interrupt_child(system.file("scripts", "interrupt_bootstrap_child.R", package = "mixedrs"))
  expect_length(r$delay, 1L)
  expect_match(r$result, "bootstrap interrupted after")
  expect_match(r$alive, "ALIVE 55")
  expect_lt(r$delay, 1)
  cat(sprintf("\n  interrupt: bootstrap stopped %.3f s after SIGINT (%s)\n", r$delay, r$result))
})
