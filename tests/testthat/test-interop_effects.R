# effects on lmm fits, live against lmerTest::lmer (nlme::lme with correlated
# residuals); tolerance 1e-4 relative.
skip_if_not_installed("effects")

test_that("allEffects() and Effect() equal those for lmerTest's fit", {
  eff <- function(m) lapply(effects::allEffects(m), as.data.frame)
  expect_interop(eff, interop_cases()$sleep, label = "sleep")
  expect_interop(eff, interop_cases()$cake, label = "cake")
  expect_interop(eff, interop_cases()$car1, label = "BodyWeight")
  expect_interop(function(m) as.data.frame(effects::Effect("temperature", m)), interop_cases()$cake, label = "Effect")
  expect_interop(function(m) as.data.frame(effects::predictorEffect("Days", m)), interop_cases()$sleep, label = "predictorEffect")
  # an intercept-only model has no effects, for lme4's fit as for ours
  expect_interop(eff, interop_cases()$penicillin, label = "penicillin")
})
