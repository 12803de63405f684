# as_lmerMod(): an lme4 merMod at our parameters, checked with lme4's own tools.

as_cases <- function() {
  w <- lme4::sleepstudy
  w$w <- rep(c(0.5, 1, 2), length.out = nrow(w))
  list(
    sleepstudy = quote(lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)),
    uncorrelated = quote(lmm(Reaction ~ Days + (Days || Subject), lme4::sleepstudy)),
    nested_ml = quote(lmm(sat ~ sex + (1 | school/student), sim_sat_nested(), REML = FALSE)),
    crossed = quote(lmm(y ~ x + cond + (1 | subj) + (1 | item), sim_crossed())),
    weighted = bquote(lmm(Reaction ~ Days + (1 | Subject), .(w), weights = w))
  )
}

for (nm in names(as_cases())) {
  test_that(paste("as_lmerMod() gives an lme4 fit at our estimates:", nm), {
    ours <- suppressMessages(eval(as_cases()[[nm]]))
    mm <- as_lmerMod(ours)
    expect_s4_class(mm, "lmerMod")
    expect_equal(unname(lme4::getME(mm, "theta")), unname(ours$theta[match(names(lme4::getME(mm, "theta")), names(ours$theta))]),
                 tolerance = 1e-12)
    expect_equal(lme4::fixef(mm), fixef(ours), tolerance = 1e-8)
    expect_equal(sigma(mm), sigma(ours), tolerance = 1e-8)
    crit <- if (ours$REML) c(lme4::REMLcrit(mm), mixedrs::REMLcrit(ours)) else c(deviance(mm), deviance(ours))
    expect_equal(crit[1], crit[2], tolerance = 1e-10)
    expect_equal(as.matrix(vcov(mm)), vcov(ours), tolerance = 1e-6, ignore_attr = TRUE)
    expect_equal(lme4::getME(mm, "n"), nobs(ours))
    expect_equal(dim(lme4::getME(mm, "Z")), dim(model.matrix(ours, type = "random")))
    expect_equal(as.data.frame(lme4::VarCorr(mm))$sdcor, as.data.frame(VarCorr(ours))$sdcor, tolerance = 1e-8)
    s <- summary(mm)
    expect_equal(unname(s$coefficients[, "Std. Error"]), unname(sqrt(diag(vcov(ours)))), tolerance = 1e-6)
    expect_output(print(s), "Linear mixed model fit by")
    # lme4's conditional modes equal ours
    expect_equal(unlist(lme4::ranef(mm)), unlist(lapply(ranef(ours, condVar = FALSE), as.list)), tolerance = 1e-6,
                 ignore_attr = TRUE)
  })
}

test_that("as_lmerMod() output works with lmerTest and hatvalues agree", {
  ours <- suppressMessages(lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy))
  mm <- as_lmerMod(ours)
  lt <- lmerTest::as_lmerModLmerTest(mm)
  expect_equal(unname(summary(lt)$coefficients[, "df"]), unname(summary(ours)$coefficients[, "df"]), tolerance = TOL_DF)
  expect_equal(stats::hatvalues(mm), hatvalues(ours), tolerance = 1e-6)
})

test_that("as_lmerMod() refuses what lme4 cannot represent", {
  trees <- sim_growth(trees = 4, seed = 3)
  m <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees, correlation = corAR1())
  expect_error(as_lmerMod(m), class = "mixedrs_not_available_error")
  expect_error(as_lmerMod(lm(dist ~ speed, cars)), class = "mixedrs_input_error")
  f <- function() {
    d <- lme4::sleepstudy
    lmm(Reaction ~ Days + (1 | Subject), d)
  }
  m2 <- f()
  rm_env <- environment(m2$formula)
  # the data lived in f's frame, which the formula keeps: still reachable
  expect_s4_class(as_lmerMod(m2), "lmerMod")
  m3 <- m2
  m3$call$data <- quote(no_such_data_frame)
  expect_error(as_lmerMod(m3), class = "mixedrs_input_error")
  expect_s4_class(as_lmerMod(m3, data = lme4::sleepstudy), "lmerMod")
})
