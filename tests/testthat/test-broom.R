# tidy(), glance() and augment() against broom.mixed's methods for the same model
# fitted by lmerTest (live, same process).
skip_if_not_installed("broom.mixed")
library(broom.mixed)

broom_cases <- function() {
  w <- lme4::sleepstudy
  w$w <- rep(c(0.5, 1, 2), length.out = nrow(w))
  list(
    sleepstudy = list(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, NULL),
    uncorrelated = list(Reaction ~ Days + (Days || Subject), lme4::sleepstudy, NULL),
    nested = list(sat ~ sex + (1 | school/student), sim_sat_nested(), NULL),
    crossed = list(y ~ x + cond + (1 | subj) + (1 | item), sim_crossed(), NULL),
    weighted = list(Reaction ~ Days + (1 | Subject), w, "w")
  )
}

fit_broom_pair <- function(case) {
  if (is.null(case[[3]])) return(fit_lmertest(case[[1]], case[[2]]))
  d <- case[[2]]
  ours <- suppressMessages(lmm(case[[1]], d, weights = w))
  ref <- suppressMessages(lmerTest::lmer(case[[1]], d, weights = w, control = TIGHT_LME4))
  list(ours = ours, ref = ref)
}

# equal to within tol of the larger of 1 and the reference's largest magnitude
expect_scaled_equal <- function(actual, expected, tol, label = "values") {
  expect_equal(length(actual), length(expected))
  err <- max(abs(actual - expected)) / max(1, abs(expected))
  expect_true(is.finite(err) && err < tol, label = sprintf("%s: scaled difference %.2e < %g", label, err, tol))
}

for (nm in names(broom_cases())) {
  test_that(paste("tidy() matches broom.mixed:", nm), {
    f <- fit_broom_pair(broom_cases()[[nm]])
    a <- tidy(f$ours)
    b <- tidy(f$ref)
    expect_s3_class(a, "tbl_df")
    expect_identical(names(a), names(b))
    expect_identical(a$effect, b$effect)
    expect_identical(a$group, b$group)
    expect_identical(a$term, b$term)
    expect_equal(a$estimate, b$estimate, tolerance = TOL_VC)
    expect_equal(a$std.error, b$std.error, tolerance = TOL_VC)
    expect_equal(a$statistic, b$statistic, tolerance = TOL_VC)
    expect_equal(a$df, b$df, tolerance = TOL_DF)
    fx <- a$effect == "fixed"
    expect_lt(max(abs(a$p.value[fx] - b$p.value[fx])), TOL_P)
    # variances and covariances
    av <- tidy(f$ours, effects = "ran_pars", scales = "vcov")
    bv <- tidy(f$ref, effects = "ran_pars", scales = "vcov")
    expect_identical(names(av), names(bv))
    expect_identical(av$term, bv$term)
    expect_equal(av$estimate, bv$estimate, tolerance = TOL_VC)
  })

  test_that(paste("tidy() random effects and glance() match broom.mixed:", nm), {
    f <- fit_broom_pair(broom_cases()[[nm]])
    for (eff in c("ran_vals", "ran_coefs")) {
      a <- tidy(f$ours, effects = eff)
      b <- tidy(f$ref, effects = eff)
      expect_identical(names(a), names(b))
      key_a <- paste(a$group, a$level, a$term)
      key_b <- paste(b$group, b$level, b$term)
      expect_setequal(key_a, key_b)
      i <- match(key_b, key_a)
      expect_scaled_equal(a$estimate[i], b$estimate, TOL_VC)
      if (eff == "ran_vals") expect_equal(a$std.error[i], b$std.error, tolerance = TOL_VC)
    }
    ga <- glance(f$ours)
    gb <- glance(f$ref)
    expect_identical(names(ga), names(gb))
    expect_identical(ga$nobs, gb$nobs)
    expect_identical(ga$df.residual, gb$df.residual)
    expect_equal(unlist(ga[c("sigma", "logLik", "AIC", "BIC", "REMLcrit")]),
                 unlist(gb[c("sigma", "logLik", "AIC", "BIC", "REMLcrit")]), tolerance = TOL_CRIT * 10)
  })

  test_that(paste("augment() matches broom.mixed:", nm), {
    f <- fit_broom_pair(broom_cases()[[nm]])
    a <- augment(f$ours)
    b <- augment(f$ref)
    expect_identical(names(a), names(b))
    expect_equal(nrow(a), nrow(b))
    for (col in c(".fitted", ".resid", ".hat", ".cooksd", ".fixed", ".mu", ".offset", ".sqrtrwt", ".weights", ".wtres")) {
      expect_scaled_equal(unname(a[[col]]), unname(as.numeric(b[[col]])), 1e-4, label = paste("augment", col))
    }
  })
}

test_that("tidy() intervals: Wald for fixed effects, profile for all, as broom.mixed gives them", {
  f <- fit_lmertest(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  a <- tidy(f$ours, conf.int = TRUE)
  b <- tidy(f$ref, conf.int = TRUE)
  expect_identical(names(a), names(b))
  expect_equal(a$conf.low, b$conf.low, tolerance = TOL_CI)
  expect_equal(a$conf.high, b$conf.high, tolerance = TOL_CI)
  ap <- tidy(f$ours, conf.int = TRUE, conf.method = "profile")
  bp <- suppressMessages(suppressWarnings(tidy(f$ref, conf.int = TRUE, conf.method = "profile")))
  expect_identical(ap$term, bp$term)
  # lme4 interpolates its profile with splines, so its ends agree to about 1e-3
  expect_equal(ap$conf.low, bp$conf.low, tolerance = 5e-3)
  expect_equal(ap$conf.high, bp$conf.high, tolerance = 5e-3)
})

test_that("broom methods reject what they cannot do with classed errors", {
  fm <- suppressMessages(lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy))
  expect_error(tidy(fm, effects = "everything"), class = "mixedrs_input_error")
  expect_error(tidy(fm, scales = "vcov"), class = "mixedrs_input_error")
  expect_error(augment(fm, newdata = lme4::sleepstudy), class = "mixedrs_input_error")
  expect_error(augment(fm, data = lme4::sleepstudy[1:10, ]), class = "mixedrs_input_error")
  trees <- sim_growth(trees = 4, seed = 3)
  m <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees, correlation = corAR1())
  expect_error(augment(m), class = "mixedrs_not_available_error")
})
