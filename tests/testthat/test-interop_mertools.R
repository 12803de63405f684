# merTools on lmm fits (through mixedrs's predictInterval(), REsim() and FEsim(), which
# hand merTools the lme4 fit as_lmerMod() builds), live against merTools on
# lmerTest::lmer's fit; the simulations are seeded, so tolerance 1e-4 relative.
skip_if_not_installed("merTools")

test_that("predictInterval(), REsim() and FEsim() equal merTools' results on lmerTest's fit", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    expect_interop(function(m) predictInterval(m, n.sims = 200, seed = 1), cs, label = paste(nm, "predictInterval"))
    expect_interop(function(m) REsim(m, n.sims = 200, seed = 1), cs, label = paste(nm, "REsim"))
    expect_interop(function(m) FEsim(m, n.sims = 200, seed = 1), cs, label = paste(nm, "FEsim"))
  }
  nd <- lme4::sleepstudy[c(1, 50, 100), ]
  expect_interop(function(m) predictInterval(m, newdata = nd, n.sims = 200, seed = 1), lmer_cases()$sleep)
  # merTools takes lme4's fits only: correlated residuals are a clear error
  expect_error(REsim(interop_cases()$car1$ours), class = "mixedrs_not_available_error")
  # anything else goes to merTools unchanged
  expect_identical(REsim(lmer_cases()$sleep$ref, n.sims = 50, seed = 2), merTools::REsim(lmer_cases()$sleep$ref, n.sims = 50, seed = 2))
})
