# Fuzz harness: random formulas and data sets, each fitted by lmm() (and lme4 for
# comparison) in child R processes. Every outcome must be a fit or a classed
# mixedrs error; a crash of a child is caught by the parent. Where lme4 fits the
# same model, our criterion must be equal or better (1e-6 relative). Cases whose
# fixed-effects matrix has condition number above 1e8 are fitted but not compared:
# there lme4's own criterion is rounding noise (it moves by ~1e-3 between nearby θ).
# Nor are ML fits whose likelihood is unbounded (σ → 0 as θ → ∞, e.g. 4 rows and two
# grouping factors): both optimisers stop somewhere on the way to -Inf, so "lower"
# means nothing. They are counted as `unbounded`.
#
# run_fuzz(n_cases, seed, children) returns a summary list; used by the test suite
# (500 cases) and by `make fuzz` (10,000).

fuzz_case <- function(id, seed) {
  set.seed(seed * 100003 + id)
  n <- sample(c(3:12, 20, 50, 100, 300), 1)
  nlev <- function() sample(c(1:6, 10, 30), 1)
  g1 <- factor(sample(nlev(), n, TRUE))
  g2 <- factor(sample(nlev(), n, TRUE))
  nested_h <- factor(paste(g1, sample(3, n, TRUE)))
  scale <- 10^sample(c(-6, -2, 0, 0, 0, 3, 6), 1)
  x <- rnorm(n) * 10^sample(c(-3, 0, 0, 2), 1) + sample(c(0, 0, 1e4), 1)
  z <- sample(c(-1, 1), n, TRUE)
  y <- (1 + 0.5 * x + rnorm(nlevels(g1))[g1] * sample(c(0, 1, 5), 1) + rnorm(n)) * scale
  if (runif(1) < 0.2) y[sample(n, max(1, n %/% 5))] <- NA
  if (runif(1) < 0.05) y[] <- NA
  if (runif(1) < 0.05) y[] <- 3
  if (runif(1) < 0.05) x[sample(n, 1)] <- Inf
  d <- data.frame(y = y, x = x, z = z, g1 = g1, g2 = g2, h = nested_h)
  if (runif(1) < 0.1) d$g1 <- as.integer(d$g1)      # numeric grouping variable
  if (runif(1) < 0.1) d$g2 <- as.character(d$g2)    # character grouping variable
  forms <- c("y ~ x + (1 | g1)", "y ~ x + (x | g1)", "y ~ x + (x || g1)", "y ~ 1 + (1 | g1) + (1 | g2)",
             "y ~ x + z + (1 | g1/h)", "y ~ x + (1 | g1) + (0 + x | g2)", "y ~ x * z + (z | g1) + (1 | g2)",
             "y ~ (1 | g1)", "y ~ x + (1 | nope)", "y ~ x + (1 | g1) + (1 | g1:g2)", "y ~ x")
  f <- sample(forms, 1)
  w <- if (runif(1) < 0.1) abs(rnorm(n)) + sample(c(0, 0.1), 1) else NULL
  list(id = id, formula = f, data = d, weights = w, reml = runif(1) < 0.7)
}

# Fit one case; returns a one-row data frame of the outcome.
fuzz_fit <- function(case) {
  f <- stats::as.formula(case$formula)
  d <- case$data
  d$.w <- if (is.null(case$weights)) rep(1, nrow(d)) else case$weights
  args <- list(f, data = d, REML = case$reml)
  if (!is.null(case$weights)) args$weights <- d$.w
  res <- tryCatch(suppressWarnings(suppressMessages(do.call(mixedrs::lmm, args))), error = function(e) e)
  outcome <- if (inherits(res, "lmm")) "fit" else if (inherits(res, "mixedrs_error")) "classed_error" else "unclassed_error"
  msg <- if (inherits(res, "error")) conditionMessage(res) else ""
  crit <- ref_crit <- NA_real_
  if (outcome == "fit") {
    crit <- if (case$reml) mixedrs::REMLcrit(res) else stats::deviance(res)
    X <- stats::model.matrix(res)
    comparable <- ncol(X) == 0L || kappa(X, exact = TRUE) < 1e8
    ref <- if (comparable) tryCatch(suppressWarnings(suppressMessages(do.call(lme4::lmer, args))), error = function(e) NULL)
    if (!is.null(ref)) {
      sy <- stats::sd(stats::model.response(stats::model.frame(res)))
      unbounded <- max(lme4::getME(ref, "theta"), res$theta) > 1e3 || stats::sigma(ref) < 1e-3 * sy
      if (unbounded) outcome <- "fit_unbounded" else ref_crit <- if (case$reml) lme4::REMLcrit(ref) else stats::deviance(ref)
    }
  }
  data.frame(id = case$id, formula = case$formula, n = nrow(d), outcome = outcome, crit = crit,
             ref_crit = ref_crit, message = substr(gsub("\n", " ", msg), 1, 120), stringsAsFactors = FALSE)
}

# Child process body: fit cases ids[] and append each outcome line to `out` as it finishes.
fuzz_child <- function(ids, seed, out) {
  suppressPackageStartupMessages({library(mixedrs); library(lme4)})
  for (id in ids) {
    cat(sprintf("START\t%d\n", id), file = out, append = TRUE)
    r <- fuzz_fit(fuzz_case(id, seed))
    cat(paste(c("DONE", r$id, r$outcome, r$crit, r$ref_crit, r$formula, r$message), collapse = "\t"), "\n",
        file = out, append = TRUE, sep = "")
  }
  cat("FINISHED\n", file = out, append = TRUE)
}

run_fuzz <- function(n_cases = 500, seed = 1, children = 4, lib = NULL) {
  ids <- split(seq_len(n_cases), rep_len(seq_len(children), n_cases))
  self <- normalizePath(system.file("fuzz", "fuzz.R", package = "mixedrs"))
  outs <- vapply(seq_along(ids), function(i) tempfile(sprintf("fuzz%d_", i)), "")
  pids <- character(0)
  for (i in seq_along(ids)) {
    script <- tempfile(fileext = ".R")
    writeLines(c(sprintf("source('%s')", self),
                 sprintf("fuzz_child(c(%s), %d, '%s')", paste(ids[[i]], collapse = ","), seed, outs[i])), script)
    system2("Rscript", script, wait = FALSE, stdout = FALSE, stderr = FALSE)
  }
  # wait for every child to finish or die (a dead child leaves no FINISHED line)
  deadline <- Sys.time() + 3600
  repeat {
    Sys.sleep(0.5)
    done <- vapply(outs, function(o) file.exists(o) && any(readLines(o, warn = FALSE) == "FINISHED"), TRUE)
    alive <- length(system("pgrep -f 'fuzz_child'", intern = TRUE, ignore.stderr = TRUE)) > 0
    if (all(done) || !alive || Sys.time() > deadline) break
  }
  lines <- unlist(lapply(outs, function(o) if (file.exists(o)) readLines(o, warn = FALSE) else character(0)))
  started <- as.integer(sub("START\t", "", grep("^START", lines, value = TRUE)))
  done_lines <- grep("^DONE", lines, value = TRUE)
  parts <- strsplit(done_lines, "\t")
  res <- data.frame(id = as.integer(vapply(parts, `[`, "", 2)), outcome = vapply(parts, `[`, "", 3),
                    crit = suppressWarnings(as.numeric(vapply(parts, `[`, "", 4))),
                    ref_crit = suppressWarnings(as.numeric(vapply(parts, `[`, "", 5))),
                    formula = vapply(parts, `[`, "", 6), message = vapply(parts, function(p) if (length(p) >= 7) p[7] else "", ""),
                    stringsAsFactors = FALSE)
  crashed <- setdiff(started, res$id)
  never_ran <- setdiff(seq_len(n_cases), started)
  both <- !is.na(res$crit) & !is.na(res$ref_crit)
  worse <- both & res$crit > res$ref_crit + 1e-6 * abs(res$ref_crit)
  list(cases = n_cases, results = res, crashed = crashed, never_ran = never_ran,
       counts = table(factor(sub("fit_unbounded", "fit", res$outcome), c("fit", "classed_error", "unclassed_error"))),
       unbounded = sum(res$outcome == "fit_unbounded"),
       compared = sum(both), worse = res[worse, ])
}
