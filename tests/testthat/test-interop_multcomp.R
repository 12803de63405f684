# multcomp on lmm fits, live against lmerTest::lmer (nlme::lme with correlated
# residuals); tolerance 1e-4 relative (the adjusted p-values use the same
# multivariate-t integration, seeded).
skip_if_not_installed("multcomp")

test_that("glht() with Tukey contrasts equals its result for lmerTest's fit", {
  tk <- function(m) {
    set.seed(1)
    s <- summary(multcomp::glht(m, multcomp::mcp(recipe = "Tukey")))$test
    s[c("coefficients", "sigma", "tstat", "pvalues")]
  }
  expect_interop(tk, interop_cases()$cake, tolerance = 1e-4)
  ci <- function(m) {
    set.seed(1)
    unclass(confint(multcomp::glht(m, multcomp::mcp(Diet = "Tukey")))$confint)
  }
  expect_interop(ci, interop_cases()$car1)
  lin <- function(m) {
    set.seed(1)
    summary(multcomp::glht(m, linfct = c("Days = 10")))$test[c("coefficients", "sigma", "pvalues")]
  }
  expect_interop(lin, interop_cases()$sleep)
})
