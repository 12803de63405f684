# Influence diagnostics against lme4's, live.

test_that("hatvalues, cooks.distance and rstudent match lme4's", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (Days | Subject), ss)
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss, control = TIGHT_LME4)
  expect_equal(hatvalues(m), hatvalues(r), tolerance = 1e-5)
  expect_equal(cooks.distance(m), cooks.distance(r), tolerance = 1e-5)
  expect_equal(rstudent(m), rstudent(r), tolerance = 1e-5)
})

test_that("influence() by group and by case matches lme4's deletion refits", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (Days | Subject), ss)
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss, control = TIGHT_LME4)
  a <- influence(m, "Subject")
  b <- influence(r, "Subject", ncores = 1)
  expect_equal(names(a), names(b))
  # lme4's refits stop at its default tolerance; ours are converged
  expect_equal(a[["fixed.effects[-Subject]"]], b[["fixed.effects[-Subject]"]], tolerance = 1e-4)
  expect_equal(a[["var.cov.comps[-Subject]"]], b[["var.cov.comps[-Subject]"]], tolerance = 1e-3)
  expect_equal(cooks.distance(a), cooks.distance(b), tolerance = 1e-3)
  expect_equal(dfbetas(a), dfbetas(b), tolerance = 1e-3)
  small <- lmm(Reaction ~ 1 + (1 | Subject), ss[1:60, ])
  rs <- lme4::lmer(Reaction ~ 1 + (1 | Subject), ss[1:60, ])
  expect_equal(influence(small)[["fixed.effects[-case]"]], influence(rs, ncores = 1)[["fixed.effects[-case]"]],
               tolerance = 1e-5)
  expect_equal(names(influence(m, do.coef = FALSE)), "hat")
})

test_that("influence measures pad with NA under na.exclude", {
  d <- lme4::sleepstudy
  d$Reaction[c(2, 77)] <- NA
  m <- lmm(Reaction ~ Days + (Days | Subject), d, na.action = na.exclude)
  expect_length(hatvalues(m), nrow(d))
  expect_length(cooks.distance(m), nrow(d))
  expect_length(rstudent(m), nrow(d))
  expect_true(is.na(rstudent(m)[77]))
})
