# Kenward-Roger with a residual structure. pbkrtest has no lme-type fits, so the live
# reference is a structured fit that lme4 can also write: compound symmetry within
# Block:Variety plus (1 | Block) is lmer's (1 | Block) + (1 | Block:Variety). Σ is
# linear in lmer's parameters and not in ours (σ², ρ), and the first-order adjustment
# we compute does not depend on the parameterisation, so the two must agree.

oats_pair <- function() {
  data(Oats, package = "nlme", envir = environment())
  o <- as.data.frame(Oats)
  o$BV <- interaction(o$Block, o$Variety)
  o <- o[-c(3, 10, 17, 30, 41, 55, 62), ]   # unbalanced, so that the adjustment is not nil
  list(ours = lmm(yield ~ nitro + Variety + (1 | Block), o, correlation = nlme::corCompSymm(form = ~ 1 | BV)),
       ref = lmerTest::lmer(yield ~ nitro + Variety + (1 | Block) + (1 | BV), o))
}

test_that("Kenward-Roger with compound-symmetric residuals equals pbkrtest on the same model written for lmer", {
  skip_if_not_installed("pbkrtest")
  f <- oats_pair()
  expect_equal(as.numeric(logLik(f$ours)), as.numeric(logLik(f$ref)), tolerance = 1e-6)
  ours <- summary(f$ours, ddf = "Kenward-Roger")$coefficients
  ref <- summary(f$ref, ddf = "Kenward-Roger")$coefficients
  expect_equal(ours[, "df"], ref[, "df"], tolerance = TOL_DF)
  # the adjustment moves the SEs by ~2e-4 here, so they are compared to 1e-5 (they agree
  # to ~1e-6, the difference between the two optima)
  expect_equal(ours[, "Std. Error"], ref[, "Std. Error"], tolerance = 1e-5)
  expect_gt(max(abs(ours[, "Std. Error"] / summary(f$ours)$coefficients[, "Std. Error"] - 1)), 1e-4)
  expect_abs_equal(ours[, "Pr(>|t|)"], ref[, "Pr(>|t|)"], TOL_P)
  a <- anova(f$ours, ddf = "Kenward-Roger")
  b <- anova(f$ref, ddf = "Kenward-Roger")
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["Pr(>F)"]], b[["Pr(>F)"]], tolerance = TOL_DF)
  # and through emmeans
  skip_if_not_installed("emmeans")
  e1 <- as.data.frame(emmeans::emmeans(f$ours, ~ Variety, lmer.df = "kenward-roger"))
  e2 <- as.data.frame(emmeans::emmeans(f$ref, ~ Variety, lmer.df = "kenward-roger"))
  expect_equal(e1$df, e2$df, tolerance = TOL_DF)
  expect_equal(e1$SE, e2$SE, tolerance = TOL_DF)
})

test_that("Kenward-Roger works for every residual structure and inflates Var(beta)", {
  o <- as.data.frame(nlme::Orthodont)
  fits <- list(
    ar1_ident = lmm(distance ~ age * Sex + (1 | Subject), o, correlation = nlme::corAR1(form = ~ 1 | Subject),
                    weights = nlme::varIdent(form = ~ 1 | Sex)),
    car1 = lmm(weight ~ Time * Diet + (1 | Rat), as.data.frame(nlme::BodyWeight),
                correlation = nlme::corCAR1(form = ~ Time | Rat)),
    power = lmm(distance ~ age * Sex + (1 | Subject), o, weights = nlme::varPower(form = ~ age)),
    fixed = lmm(distance ~ age * Sex + (1 | Subject), o, weights = nlme::varFixed(~ age)))
  for (nm in names(fits)) {
    kr <- summary(fits[[nm]], ddf = "Kenward-Roger")$coefficients
    sat <- summary(fits[[nm]])$coefficients
    expect_true(all(is.finite(kr[, "df"]) & kr[, "df"] > 0), label = nm)
    expect_true(all(kr[, "Std. Error"] >= sat[, "Std. Error"] * (1 - 1e-8)), label = nm)
    expect_equal(kr[, "Estimate"], sat[, "Estimate"])
    # for one coefficient, KR's df is Satterthwaite's formula with the expected
    # information W (ours uses the observed): check that identity on the slope
    info <- mixedrs:::kr_info(fits[[nm]])
    L <- replace(numeric(nrow(kr)), 2L, 1)
    g <- vapply(info$P, function(P) drop(L %*% info$vcov %*% P %*% info$vcov %*% L), 0)
    expect_equal(kr[2L, "df"], 2 * drop(L %*% info$vcov %*% L)^2 / drop(g %*% info$W %*% g), tolerance = 1e-8)
  }
})

test_that("Kenward-Roger's structure derivatives are those of Var(y)", {
  # a residual structure with no free parameter (varFixed) makes Σ linear in the
  # covariance elements: Σ = γ ZZ' + σ² diag(age); its derivative entries are exactly
  # those, whatever the engine's differences do for structures with parameters
  o <- as.data.frame(nlme::Orthodont)
  m <- lmm(distance ~ age + (1 | Subject), o, weights = nlme::varFixed(~ age))
  R <- mixedrs:::residual_cov(m, m$cor_eta)
  expect_equal(diag(R), o$age)
  expect_equal(sum(abs(R[upper.tri(R)])), 0)
  m2 <- lmm(distance ~ age + (1 | Subject), o, correlation = nlme::corAR1(form = ~ 1 | Subject))
  R2 <- mixedrs:::residual_cov(m2, m2$cor_eta)
  phi <- coef(m2$correlation)
  first <- which(o$Subject == o$Subject[1])
  expect_equal(R2[first, first], phi^abs(outer(seq_along(first), seq_along(first), "-")), tolerance = 1e-12)
  expect_equal(sum(R2[first, -first]), 0)
})

test_that("Kenward-Roger refuses what it cannot do", {
  o <- as.data.frame(nlme::Orthodont)
  m <- lmm(distance ~ age + (1 | Subject), o, correlation = nlme::corAR1(form = ~ 1 | Subject), REML = FALSE)
  expect_error(summary(m, ddf = "Kenward-Roger"), "REML", class = "mixedrs_input_error")
  expect_error(mixedrs:::residual_cov(lmm(distance ~ age + (1 | Subject), o), numeric(0)), "no residual structure",
               class = "mixedrs_input_error")
})
