# glmm() against lme4::glmer live. glmer's PIRLS stops at tolPwrss = 1e-7, which moves
# its Laplace deviance by ~5e-4 and its Hessian-based standard errors by up to 1.2% on
# cbpp; with glmerControl(tolPwrss = 1e-13) it agrees with ours to 1e-5. The
# reference is therefore glmer at that tolerance, and our log-likelihood is checked to
# be at least the default glmer's (a better optimum). Tolerances (issue 18): estimates
# 1e-3, standard errors 5e-3; the log-likelihood never worse than glmer's by 1e-4 relative.
skip_if_not_installed("lme4")

tight <- function() lme4::glmerControl(tolPwrss = 1e-13)

expect_glmer_parity <- function(ours, ref, default_ref, label) {
  ll <- c(logLik(ours))
  expect_gte(ll, c(logLik(ref)) - 1e-4 * abs(c(logLik(ref))))
  expect_gte(ll, c(logLik(default_ref)) - 1e-8 * abs(c(logLik(default_ref))))
  expect_equal(unname(fixef(ours)), unname(lme4::fixef(ref)), tolerance = 1e-3, label = paste(label, "fixef"))
  expect_equal(unname(ours$theta), unname(lme4::getME(ref, "theta")), tolerance = 1e-3, label = paste(label, "theta"))
  expect_equal(unname(sqrt(diag(vcov(ours)))), unname(sqrt(diag(as.matrix(vcov(ref))))), tolerance = 5e-3, label = paste(label, "SE"))
}

glmer_pair <- function(..., label) {
  ours <- glmm(...)
  ref <- suppressWarnings(lme4::glmer(..., control = tight()))
  default_ref <- suppressWarnings(lme4::glmer(...))
  expect_glmer_parity(ours, ref, default_ref, label)
  invisible(list(ours = ours, ref = ref))
}

test_that("glmm() matches glmer: cbpp (logit, probit, nAGQ = 0), grouseticks, Poisson with an offset", {
  cbpp <- lme4::cbpp
  f <- glmer_pair(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial, label = "cbpp")
  glmer_pair(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial(link = "probit"), label = "probit")
  glmer_pair(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial, nAGQ = 0L, label = "nAGQ = 0")
  glmer_pair(incidence ~ period + offset(log(size)) + (1 | herd), data = cbpp, family = poisson, label = "Poisson offset")
  g <- lme4::grouseticks
  glmer_pair(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION), data = g, family = poisson, label = "grouseticks")
  # the accessors and glmer's layout
  ours <- f$ours
  ref <- f$ref
  expect_equal(deviance(ours), deviance(ref), tolerance = 1e-4)
  expect_equal(AIC(ours), AIC(ref), tolerance = 1e-6)
  expect_equal(unname(as.matrix(ranef(ours)$herd)), unname(as.matrix(lme4::ranef(ref)$herd)), tolerance = 1e-3)
  expect_equal(unname(fitted(ours)), unname(fitted(ref)), tolerance = 1e-4)
  for (type in c("deviance", "pearson", "working", "response")) {
    expect_equal(unname(residuals(ours, type = type)), unname(residuals(ref, type = type)), tolerance = 1e-3, label = type)
  }
  expect_equal(unname(predict(ours, type = "response")), unname(predict(ref, type = "response")), tolerance = 1e-4)
  expect_equal(unname(predict(ours, re.form = NA)), unname(predict(ref, re.form = NA)), tolerance = 1e-4)
  out <- capture.output(summary(ours))
  expect_match(out[1], "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)", fixed = TRUE)
  expect_true(any(grepl("Pr(>|z|)", out, fixed = TRUE)))
  expect_false(any(grepl("Residual", out)))
})

test_that("glmm(nAGQ = 9) matches glmer's adaptive Gauss-Hermite fit on cbpp", {
  f <- glmer_pair(cbind(incidence, size - incidence) ~ period + (1 | herd), data = lme4::cbpp, family = binomial, nAGQ = 9L,
                  label = "nAGQ = 9")
  # glmer reports the AGQ deviance itself as -2 log L (not the Laplace fit's scale)
  expect_equal(c(logLik(f$ours)), c(logLik(f$ref)), tolerance = 1e-6)
  expect_match(capture.output(print(f$ours))[1], "Adaptive Gauss-Hermite Quadrature, nAGQ = 9", fixed = TRUE)
  # more nodes than 1 change the fit: the Laplace and AGQ estimates differ as glmer's do
  lap <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), data = lme4::cbpp, family = binomial)
  expect_equal(unname(f$ours$theta - lap$theta), unname(lme4::getME(f$ref, "theta") -
    lme4::getME(lme4::glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = lme4::cbpp, family = binomial,
                            control = tight()), "theta")), tolerance = 1e-2)
})

test_that("glmm() matches glmer on VerbAgg (crossed) and Contraception ((urban | district))", {
  skip_if_not_installed("mlmRev")
  glmer_pair(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = lme4::VerbAgg, family = binomial, label = "VerbAgg")
  data("Contraception", package = "mlmRev", envir = environment())
  glmer_pair(use ~ urban + age + I(age^2) + livch + (urban | district), data = Contraception, family = binomial,
             label = "Contraception")
})

test_that("responses: 0/1, logical, factor, cbind and proportions with weights give one fit", {
  cbpp <- lme4::cbpp
  long <- cbpp[rep(seq_len(nrow(cbpp)), cbpp$size), ]
  long$y <- unlist(lapply(seq_len(nrow(cbpp)), function(i) rep(c(1, 0), c(cbpp$incidence[i], cbpp$size[i] - cbpp$incidence[i]))))
  a <- glmm(y ~ period + (1 | herd), long, family = binomial)
  b <- glmm(as.logical(y) ~ period + (1 | herd), long, family = "binomial")
  long$f <- factor(long$y, labels = c("no", "yes"))
  c <- glmm(f ~ period + (1 | herd), long, family = binomial())
  d <- glmm(incidence / size ~ period + (1 | herd), cbpp, weights = size, family = binomial)
  e <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
  for (m in list(b, c, d, e)) expect_equal(fixef(m), fixef(a), tolerance = 1e-5)
})

test_that("bad GLMM input gives classed errors; separation warns with finite output", {
  cbpp <- lme4::cbpp
  expect_error(glmm(incidence / size * 2 ~ period + (1 | herd), cbpp, family = binomial), "outside \\[0, 1\\]",
               class = "mixedrs_input_error")
  expect_error(glmm(incidence / size ~ period + (1 | herd), cbpp, weights = size / 2, family = binomial), "non-integer",
               class = "mixedrs_input_error")
  expect_error(glmm(I(incidence - 1) ~ period + (1 | herd), cbpp, family = poisson), "non-negative integer",
               class = "mixedrs_input_error")
  expect_error(glmm(I(incidence + 0.5) ~ period + (1 | herd), cbpp, family = poisson), "non-negative integer",
               class = "mixedrs_input_error")
  expect_error(glmm(incidence ~ period + (1 | herd), cbpp, family = Gamma), class = "mixedrs_not_available_error")
  expect_error(glmm(incidence ~ period + (1 | herd), cbpp, family = poisson(link = "identity")), class = "mixedrs_not_available_error")
  expect_error(glmm(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | period), cbpp, family = binomial, nAGQ = 5),
               "single, scalar", class = "mixedrs_input_error")
  expect_error(glmm(incidence ~ period + (size | herd), cbpp, family = poisson, nAGQ = 3),
               "single, scalar", class = "mixedrs_input_error")
  d <- data.frame(y = c(0, 0, 0, 1, 1, 1, 0, 1), x = c(1, 2, 3, 4, 5, 6, 1, 6), g = factor(rep(1:4, 2)))
  warned <- character()
  m <- withCallingHandlers(glmm(y ~ x + (1 | g), d, family = binomial), warning = function(w) {
    warned <<- c(warned, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  expect_true(any(grepl("separation", warned)))
  expect_true(all(is.finite(fixef(m))))
})

test_that("ranef() of a glmm with (x || g) has one data frame per factor, as glmer", {
  g <- lme4::grouseticks
  ours <- glmm(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (0 + HEIGHT | BROOD), g, family = poisson)
  ref <- lme4::glmer(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (0 + HEIGHT | BROOD), g, family = poisson,
                     control = lme4::glmerControl(tolPwrss = 1e-13))
  expect_equal(names(ranef(ours)), names(lme4::ranef(ref)))
  expect_equal(colnames(ranef(ours)$BROOD), colnames(lme4::ranef(ref)$BROOD))
  expect_equal(unname(as.matrix(ranef(ours)$BROOD)), unname(as.matrix(lme4::ranef(ref)$BROOD)), tolerance = 1e-3)
  expect_equal(ngrps(ours), lme4::ngrps(ref))
})
