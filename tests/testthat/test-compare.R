# compare_fits() lines an lmm fit up with lmerTest and nlme fits.

test_that("compare_fits() against lmerTest flags nothing on an agreeing fit", {
  f <- fit_lmertest(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  cmp <- compare_fits(f$ours, f$ref)
  expect_s3_class(cmp, "lmm_comparison")
  expect_true(all(c("fixef (Intercept)", "SE Days", "df Days", "sd((Intercept))|Subject",
                    "cor((Intercept),Days)|Subject", "sigma", "logLik") %in% cmp$quantity))
  expect_false(anyNA(cmp$other))
  expect_true(all(cmp$flag == ""))
  expect_output(print(cmp), "No differences beyond the tolerance")
  # a tolerance of zero flags the tiny optimizer differences
  expect_true(any(compare_fits(f$ours, f$ref, tolerance = 0)$flag == "*"))
})

test_that("compare_fits() against nlme includes the correlation parameter and df", {
  d <- sim_growth(trees = 30)
  ours <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corAR1())
  ref <- nlme::lme(height ~ treatment:age - 1, random = ~ age - 1 | tree, correlation = nlme::corAR1(), data = d)
  cmp <- compare_fits(ours, ref)
  expect_true("corStruct Phi" %in% cmp$quantity)
  expect_false(anyNA(cmp$other))
  expect_true(all(cmp$flag == ""))
  expect_error(compare_fits(ours, lm(height ~ age, d)), class = "mixedrs_input_error")
})

test_that("compare_fits() matches nlme's random-effects correlation by name", {
  ours <- lmm(distance ~ age + (age | Subject), nlme::Orthodont)
  ref <- nlme::lme(distance ~ age, random = ~ age | Subject, data = nlme::Orthodont, method = "REML")
  cmp <- compare_fits(ours, ref)
  row <- cmp[cmp$quantity == "cor((Intercept),age)|Subject", ]
  expect_equal(nrow(row), 1L)
  expect_equal(row$other, stats::cov2cor(nlme::getVarCov(ref))[2, 1], tolerance = 1e-12)
  expect_false(anyNA(cmp$other))
})
