# Estimates do not depend on row order, on the scale of y, or on a shift of a
# predictor; singular fits are flagged; the optimiser never returns NaN.

base_fit <- function(d) lmm(Reaction ~ Days + (Days | Subject), d)

test_that("permuting the rows leaves the fit unchanged", {
  d <- lme4::sleepstudy
  a <- base_fit(d)
  set.seed(1)
  b <- base_fit(d[sample(nrow(d)), ])
  expect_equal(mixedrs::REMLcrit(b), mixedrs::REMLcrit(a), tolerance = 1e-10)
  expect_equal(fixef(b), fixef(a), tolerance = 1e-6)
  expect_equal(unname(b$theta), unname(a$theta), tolerance = 1e-5)
})

test_that("rescaling y by 1e8 or 1e-8 rescales the estimates and nothing else", {
  d <- lme4::sleepstudy
  a <- base_fit(d)
  for (k in c(1e8, 1e-8)) {
    d2 <- d
    d2$Reaction <- d$Reaction * k
    b <- base_fit(d2)
    expect_equal(unname(b$theta), unname(a$theta), tolerance = 1e-5, label = paste("theta at scale", k))
    expect_equal(fixef(b) / k, fixef(a), tolerance = 1e-6)
    expect_equal(sigma(b) / k, sigma(a), tolerance = 1e-6)
    expect_true(b$optinfo$converged)
  }
})

test_that("shifting a fixed-effect predictor by 1e6 changes only the intercept", {
  d <- lme4::sleepstudy
  d$x <- rnorm(nrow(d))
  a <- lmm(Reaction ~ Days + x + (1 | Subject), d)
  d2 <- d
  d2$x <- d$x + 1e6
  b <- lmm(Reaction ~ Days + x + (1 | Subject), d2)
  expect_equal(unname(b$theta), unname(a$theta), tolerance = 1e-5)
  expect_equal(fixef(b)[-1], fixef(a)[-1], tolerance = 1e-5)
  expect_equal(unname(fixef(b)[1] + 1e6 * fixef(b)["x"]), unname(fixef(a)[1]), tolerance = 1e-5)
  expect_equal(mixedrs::REMLcrit(b) - mixedrs::REMLcrit(a), 0, tolerance = 1e-6 * mixedrs::REMLcrit(a))
})

test_that("rescaling a fixed-effect predictor rescales its coefficient and nothing else", {
  d <- sim_crossed()
  a <- lmm(y ~ x + cond + (1 | subj) + (1 | item), d)
  for (k in c(1e-6, 1e-2, 1e2, 1e6)) {
    d2 <- d
    d2$x <- d$x * k
    # lme4's scale check warns at 1e-6 and 1e6, as it should
    b <- suppressWarnings(lmm(y ~ x + cond + (1 | subj) + (1 | item), d2))
    expect_equal(unname(b$theta), unname(a$theta), tolerance = 1e-5, label = paste("theta at scale", k))
    expect_equal(unname(fixef(b)["x"] * k), unname(fixef(a)["x"]), tolerance = 1e-6)
    # REML's log|R_X|² shifts by 2 log k; ML's criterion does not move
    expect_equal(mixedrs::REMLcrit(b) - 2 * log(k), mixedrs::REMLcrit(a), tolerance = 1e-9)
    expect_equal(deviance(suppressWarnings(update(b, REML = FALSE))), deviance(update(a, REML = FALSE)), tolerance = 1e-9)
  }
})

test_that("Satterthwaite and Kenward-Roger df and p-values do not depend on the units of y or a predictor's origin", {
  d <- sim_crossed()
  f <- y ~ x + cond + (1 | subj) + (1 | item)
  a <- lmm(f, d)
  sa <- summary(a)$coefficients
  for (k in c(1e8, 1e-8)) {
    d2 <- d
    d2$y <- d$y * k
    b <- lmm(f, d2)
    sb <- summary(b)$coefficients
    expect_equal(sb[, "df"], sa[, "df"], tolerance = 1e-8, label = paste("Satterthwaite df, y x", k))
    expect_equal(sb[, "Pr(>|t|)"], sa[, "Pr(>|t|)"], tolerance = 1e-8)
    expect_equal(anova(b)$DenDF, anova(a)$DenDF, tolerance = 1e-8)
    expect_equal(summary(b, ddf = "Kenward-Roger")$coefficients[, "df"],
                 summary(a, ddf = "Kenward-Roger")$coefficients[, "df"], tolerance = 1e-8)
  }
  d3 <- d
  d3$x <- d$x + 1e6
  s3 <- summary(lmm(f, d3))$coefficients
  expect_equal(s3[-1, "df"], sa[-1, "df"], tolerance = 1e-8)
  expect_equal(s3[-1, "Pr(>|t|)"], sa[-1, "Pr(>|t|)"], tolerance = 1e-8)
})

test_that("singular fits converge, are flagged as in lme4, and never return NaN", {
  set.seed(1)
  d <- data.frame(g = factor(rep(1:10, each = 5)), x = rnorm(50))
  d$y <- 1 + d$x + rnorm(50)   # no group effect: the optimum is on the boundary
  expect_message(m <- lmm(y ~ x + (1 | g), d), "boundary (singular) fit", fixed = TRUE)
  r <- suppressMessages(lme4::lmer(y ~ x + (1 | g), d))
  expect_true(isSingular(m))
  expect_equal(isSingular(m), lme4::isSingular(r))
  expect_false(anyNA(c(m$theta, m$beta, m$sigma)))
  expect_lte(mixedrs::REMLcrit(m), lme4::REMLcrit(r) + 1e-6 * abs(lme4::REMLcrit(r)))
})
