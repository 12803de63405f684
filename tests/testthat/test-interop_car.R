# car (and the pbkrtest methods its F tests call) on lmm fits, live against
# lmerTest::lmer and pbkrtest on lme4's fits (nlme::lme with correlated residuals);
# tolerance 1e-4 relative.
skip_if_not_installed("car")
skip_if_not_installed("pbkrtest")

an <- function(...) function(m) as.data.frame(car::Anova(m, ...))

test_that("car::Anova() equals its tables for lmerTest's fit: types II and III, Wald chi-square and KR F", {
  for (nm in c("sleep", "cake", "singular", "penicillin")) {
    cs <- lmer_cases()[[nm]]
    for (type in c("II", "III")) {
      expect_interop(an(type = type), cs, label = paste(nm, type))
      expect_interop(an(type = type, test.statistic = "F"), cs, label = paste(nm, type, "F"))
    }
  }
  cs <- interop_cases()$car1
  expect_interop(an(), cs, label = "BodyWeight II")
  expect_interop(an(type = "III"), cs, label = "BodyWeight III")
  # car's F tests with Kenward-Roger df come from our structured Kenward-Roger (nlme has
  # none, so the reference is our own anova(): the terms both test the same way)
  a <- as.data.frame(car::Anova(cs$ours, test.statistic = "F", type = "III"))
  b <- as.data.frame(anova(cs$ours, ddf = "Kenward-Roger"))
  for (term in c("Diet", "Time:Diet")) {
    expect_equal(unlist(a[term, c("F", "Df", "Df.res", "Pr(>F)")]), unlist(b[term, c("F value", "NumDF", "DenDF", "Pr(>F)")]),
                 tolerance = 1e-8, ignore_attr = TRUE)
  }
})

test_that("linearHypothesis(), deltaMethod() and vif() equal lmerTest's", {
  cs <- lmer_cases()$cake
  expect_interop(function(m) as.data.frame(car::linearHypothesis(m, c("recipeB = 0", "recipeC = 0"))), cs)
  expect_interop(function(m) as.data.frame(car::linearHypothesis(m, c("recipeB = recipeC"), test = "F")), cs)
  expect_interop(function(m) as.data.frame(car::deltaMethod(m, "recipeB / recipeC")), cs)
  expect_interop(function(m) car::vif(m), cs)
  expect_interop(function(m) as.data.frame(car::linearHypothesis(m, "Days = 10")), lmer_cases()$sleep)
})

test_that("pbkrtest's KR and Satterthwaite tests on an lmm fit equal pbkrtest's on lme4's", {
  cs <- lmer_cases()$cake
  L <- rbind(c(0, 1, rep(0, 16)), c(0, 0, 1, rep(0, 15)))
  expect_equal(as.matrix(pbkrtest::vcovAdj(cs$ours)), as.matrix(pbkrtest::vcovAdj(cs$ref)), tolerance = 1e-4,
               ignore_attr = TRUE)
  a <- pbkrtest::KRmodcomp(cs$ours, L)$test
  b <- pbkrtest::KRmodcomp(cs$ref, L)$test
  expect_equal(a[c("stat", "ndf", "ddf", "p.value")], b[c("stat", "ndf", "ddf", "p.value")], tolerance = 1e-4)
  expect_equal(pbkrtest::get_Lb_ddf(cs$ours, L[1, , drop = FALSE]), pbkrtest::get_Lb_ddf(cs$ref, L[1, , drop = FALSE]),
               tolerance = 1e-4)
  s <- pbkrtest::SATmodcomp(cs$ours, L)$test
  r <- pbkrtest::SATmodcomp(cs$ref, L)$test
  expect_equal(s[c("statistic", "ndf", "ddf", "p.value")], r[c("statistic", "ndf", "ddf", "p.value")], tolerance = 1e-4,
               ignore_attr = TRUE)
  # what needs lme4's internals is a clear error
  expect_error(pbkrtest::PBmodcomp(cs$ours, L), class = "mixedrs_not_available_error")
})
