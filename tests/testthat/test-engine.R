# The engine handle (R/engine.R): a fit holds the Rust model; after serialisation the
# handle is dead and the first method that needs it rebuilds it once from the fit.

# Every method a user calls on a fit, as one list of numbers (the same code runs in
# this session and in a fresh R process on the fit read back from disk).
method_results <- function(fits) {
  lapply(fits, function(f) {
    m <- f$fit
    nd <- f$newdata
    corr <- !is.null(m$correlation)
    re <- ranef(m, condVar = TRUE)
    out <- list(
      fixef = fixef(m), ranef = re[[1L]], postVar = attr(re[[1L]], "postVar"),
      varcorr = as.data.frame(VarCorr(m)), sigma = sigma(m), loglik = logLik(m), remlcrit = REMLcrit(m),
      vcov = as.matrix(vcov(m)), coefs = summary(m)$coefficients, anova = as.data.frame(anova(m)),
      predict = predict(m, newdata = nd), fitted = fitted(m), residuals = residuals(m),
      wald = confint(m, method = "Wald"), refit = refit(m)$theta, ml = deviance(update(m, REML = FALSE)),
      drop1 = as.data.frame(drop1(m)), devfun = as.function(m)(c(m$theta, m$cor_eta))
    )
    if (corr) {
      out$intervals <- intervals(m)$corStruct
    } else {
      out$kr <- summary(m, ddf = "Kenward-Roger")$coefficients
      out$profile <- confint(m, quiet = TRUE)
      out$simulate <- simulate(m, 2, seed = 1)
      out$bootstrap <- bootstrap(m, 5, seed = 1, cores = 1)$t
      out$ranova <- unlist(ranova(m))
      out$cooks <- cooks.distance(m)
    }
    out
  })
}

# update(), drop1() and ranova() refit from the call, as lme4's and lmerTest's do, so
# the calls name data a fresh session can find; everything else reads the fit only.
fits_for_disk <- function() {
  list(
    slopes = list(fit = lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy),
                  newdata = lme4::sleepstudy[c(1, 50, 100), ]),
    nested = list(fit = lmm(sat ~ sex + (1 | school/student), mixedrs::sim_nested(seed = 3)),
                  newdata = sim_nested(seed = 3)[c(1, 40, 80), ]),
    ar1 = list(fit = lmm(height ~ treatment:age - 1 + (age - 1 | tree), mixedrs::sim_growth(seed = 4),
                         correlation = corAR1()),
               newdata = sim_growth(seed = 4)[1:3, ])
  )
}

test_that("a fit holds a live engine; a copy read back rebuilds it once and gives the same numbers", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_true(mixedrs:::engine_alive_rs(m$cache$engine))
  back <- unserialize(serialize(m, NULL))
  expect_false(mixedrs:::engine_alive_rs(back$cache$engine))
  expect_equal(ranef(back, condVar = TRUE), ranef(m, condVar = TRUE), tolerance = 1e-12)
  h <- back$cache$engine
  expect_true(mixedrs:::engine_alive_rs(h))
  # later methods reuse the rebuilt engine
  expect_equal(summary(back)$coefficients, summary(m)$coefficients, tolerance = 1e-10)
  expect_identical(back$cache$engine, h)
})

test_that("a fit survives saveRDS/readRDS into a fresh R process, and every method works there", {
  fits <- fits_for_disk()
  dir <- tempfile("engine")
  dir.create(dir)
  saveRDS(fits, file.path(dir, "fits.rds"))
  script <- file.path(dir, "child.R")
  writeLines(c(
    "suppressPackageStartupMessages(library(mixedrs))",
    "library(stats)",
    paste("method_results <-", paste(deparse(method_results), collapse = "\n")),
    sprintf("fits <- readRDS(%s)", deparse(file.path(dir, "fits.rds"))),
    "alive <- vapply(fits, function(f) mixedrs:::engine_alive_rs(f$fit$cache$engine), NA)",
    sprintf("saveRDS(list(alive = alive, results = method_results(fits)), %s)", deparse(file.path(dir, "out.rds")))
  ), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  log <- suppressWarnings(system2(rscript, script, stdout = TRUE, stderr = TRUE,
                                  env = paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  expect_true(file.exists(file.path(dir, "out.rds")), info = paste(log, collapse = "\n"))
  child <- readRDS(file.path(dir, "out.rds"))
  # the handles came back dead: everything below ran on engines rebuilt from the fits
  expect_false(any(child$alive))
  here <- method_results(fits)
  for (f in names(here)) {
    expect_setequal(names(child$results[[f]]), names(here[[f]]))
    for (what in names(here[[f]])) {
      expect_equal(child$results[[f]][[what]], here[[f]][[what]], tolerance = 1e-8, label = paste(f, what))
    }
  }
})
