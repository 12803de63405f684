# emmeans on lmm fits against emmeans on the equivalent lmerTest / nlme fits, live.

emm_table <- function(x) as.data.frame(summary(x))

expect_emm_equal <- function(a, b, label) {
  a <- emm_table(a)
  b <- emm_table(b)
  num <- intersect(c("emmean", "estimate", "SE", "df", "t.ratio", "p.value", "lower.CL", "upper.CL"), names(b))
  for (col in num) {
    expect_abs_equal(a[[col]], b[[col]], 1e-4 * max(1, max(abs(b[[col]]))), label = paste(label, col))
  }
}

test_that("emmeans with Satterthwaite and Kenward-Roger df match emmeans on lmerTest", {
  d <- sim_crossed()
  f <- fit_lmertest(y ~ x + cond + (1 | subj) + (1 | item), d)
  a <- emmeans::emmeans(f$ours, pairwise ~ cond)
  b <- emmeans::emmeans(f$ref, pairwise ~ cond, lmer.df = "satterthwaite")
  expect_emm_equal(a$emmeans, b$emmeans, "satterthwaite emmeans")
  expect_emm_equal(a$contrasts, b$contrasts, "satterthwaite contrasts")
  a <- emmeans::emmeans(f$ours, ~ cond, mode = "kenward-roger")
  b <- emmeans::emmeans(f$ref, ~ cond, lmer.df = "kenward-roger")
  expect_emm_equal(a, b, "kenward-roger")
  # emmeans' argument for lme4 fits selects the method too (it was once ignored)
  expect_emm_equal(emmeans::emmeans(f$ours, ~ cond, lmer.df = "kenward-roger"), b, "lmer.df = kenward-roger")
  expect_emm_equal(emmeans::contrast(a, list(c(-.5, -.5, 1))), emmeans::contrast(b, list(c(-.5, -.5, 1))), "custom contrast")
})

test_that("the workshop's example 4 calls match emmeans on the nlme corAR1 fit", {
  d <- sim_growth()   # the workshop's size: 2-4 trees per fertiliser
  ref <- nlme::lme(height ~ treatment:age - 1, random = ~ age - 1 | tree, correlation = nlme::corAR1(), data = d)
  ours <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corAR1())
  expect_equal(mixedrs:::containment_df(ours), ref$fixDF$X)
  a <- suppressMessages(emmeans::emmeans(ours, pairwise ~ treatment, mode = "containment"))
  b <- suppressMessages(emmeans::emmeans(ref, pairwise ~ treatment))
  expect_emm_equal(a$emmeans, b$emmeans, "trees emmeans")
  expect_emm_equal(a$contrasts, b$contrasts, "trees pairwise")
  ca <- emmeans::contrast(a$emmeans, list(c(-.5, -.5, 1)))
  cb <- emmeans::contrast(b$emmeans, list(c(-.5, -.5, 1)))
  expect_emm_equal(ca, cb, "trees custom contrast")
})

test_that("emmeans prints the df method as it does for lmerTest and nlme fits", {
  dfm <- function(x) grep("Degrees-of-freedom method", capture.output(print(x)), value = TRUE)
  f <- fit_lmertest(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  for (mode in c("satterthwaite", "kenward-roger")) {
    expect_identical(dfm(emmeans::emmeans(f$ours, ~ Days, mode = mode)),
                     dfm(emmeans::emmeans(f$ref, ~ Days, lmer.df = mode)))
  }
  d <- sim_growth()
  ref <- nlme::lme(height ~ treatment:age - 1, random = ~ age - 1 | tree, data = d)
  ours <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d)
  expect_identical(dfm(emmeans::emmeans(ours, ~ treatment, mode = "containment")),
                   dfm(emmeans::emmeans(ref, ~ treatment)))
})

test_that("containment df are emmeans' for lme fits, intercept included (BodyWeight, corCAR1, varPower)", {
  b <- nlme::BodyWeight
  ref <- nlme::lme(weight ~ Time * Diet, random = ~ Time | Rat, data = b, correlation = nlme::corCAR1(form = ~ Time | Rat))
  ours <- lmm(weight ~ Time * Diet + (Time | Rat), b, correlation = corCAR1(form = ~ Time | Rat))
  a <- suppressMessages(as.data.frame(emmeans::emmeans(ours, ~ Diet, mode = "containment")))
  e <- suppressMessages(as.data.frame(emmeans::emmeans(ref, ~ Diet)))
  expect_equal(a$df, e$df)
  expect_equal(a$df[1], 15)
  expect_equal(a$emmean, e$emmean, tolerance = 1e-5)
  expect_equal(a$SE, e$SE, tolerance = 1e-3)
  ref <- nlme::lme(weight ~ Time * Diet, random = ~ Time | Rat, data = b, weights = nlme::varPower(form = ~ Time))
  ours <- lmm(weight ~ Time * Diet + (Time | Rat), b, weights = varPower(form = ~ Time))
  a <- suppressMessages(as.data.frame(emmeans::emmeans(ours, pairwise ~ Diet, mode = "containment")$contrasts))
  e <- suppressMessages(as.data.frame(emmeans::emmeans(ref, pairwise ~ Diet)$contrasts))
  expect_equal(a$df, e$df)
  expect_equal(a$estimate, e$estimate, tolerance = 1e-4)
  expect_equal(a$SE, e$SE, tolerance = 5e-3)
})
