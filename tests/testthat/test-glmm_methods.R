# The methods of a glmm fit (R/glmm_methods.R and the glmm parts of predict, broom,
# emmeans, compare and as_lmerMod) against the same methods on glmer fits, live.
# Reference fits use glmerControl(tolPwrss = 1e-13) (see test-glmm.R). Tolerances:
# predictions and conditional variances 1e-4 relative; profile ends 1e-3 (lme4
# interpolates its profile with splines, ours solves for each end); same-seed
# simulations exactly.
skip_if_not_installed("lme4")

tight <- function() lme4::glmerControl(tolPwrss = 1e-13)
cbpp <- lme4::cbpp
f_cbpp <- cbind(incidence, size - incidence) ~ period + (1 | herd)
gm <- glmm(f_cbpp, cbpp, family = binomial)
rm <- lme4::glmer(f_cbpp, cbpp, family = binomial, control = tight())

test_that("predict(newdata) with re.form and allow.new.levels matches glmer", {
  nd <- data.frame(period = factor(c(1, 2, 3, 4, 1), levels = 1:4), herd = factor(c(1, 2, 3, 15, 7), levels = levels(cbpp$herd)))
  for (type in c("link", "response")) {
    expect_equal(unname(predict(gm, nd, type = type)), unname(predict(rm, nd, type = type)), tolerance = 1e-4, label = type)
    expect_equal(unname(predict(gm, nd, re.form = NA, type = type)), unname(predict(rm, nd, re.form = NA, type = type)),
                 tolerance = 1e-4)
  }
  new <- data.frame(period = factor(1:2, levels = 1:4), herd = c("new", "1"))
  expect_equal(unname(predict(gm, new, allow.new.levels = TRUE, type = "response")),
               unname(predict(rm, new, allow.new.levels = TRUE, type = "response")), tolerance = 1e-4)
  expect_error(predict(gm, new), "new levels")
  # the fitted data: the same as fitted() on the response scale
  expect_equal(unname(predict(gm, type = "response")), unname(fitted(gm)))
})

test_that("ranef(condVar = TRUE) gives glmer's conditional variances", {
  pv <- attr(ranef(gm)$herd, "postVar")
  ref <- attr(lme4::ranef(rm, condVar = TRUE)$herd, "postVar")
  expect_equal(dim(pv), dim(ref))
  expect_equal(as.vector(pv), as.vector(ref), tolerance = 1e-4)
  g <- lme4::grouseticks
  ours <- glmm(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION), g, family = poisson)
  # (glmer warns about the scale of HEIGHT; its estimates agree with ours to 1e-3)
  theirs <- suppressWarnings(lme4::glmer(TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION), g, family = poisson,
                                         control = tight()))
  for (grp in c("BROOD", "LOCATION")) {
    expect_equal(as.vector(attr(ranef(ours)[[grp]], "postVar")), as.vector(attr(lme4::ranef(theirs)[[grp]], "postVar")),
                 tolerance = 1e-3, label = grp)
  }
})

test_that("simulate() draws what glmer's simulate() draws for the same seed", {
  s1 <- simulate(gm, 3, seed = 42)
  s2 <- simulate(rm, 3, seed = 42)
  expect_equal(names(s1), names(s2))
  for (j in 1:3) expect_equal(unname(as.matrix(s1[[j]])), unname(as.matrix(s2[[j]])))
  # conditional on the fitted random effects
  c1 <- simulate(gm, 2, seed = 3, use.u = TRUE)
  c2 <- simulate(rm, 2, seed = 3, use.u = TRUE)
  expect_equal(unname(as.matrix(c1[[2]])), unname(as.matrix(c2[[2]])))
  # a Poisson response and a 0/1 one
  g <- lme4::grouseticks
  po <- glmm(TICKS ~ YEAR + (1 | BROOD), g, family = poisson)
  pr <- lme4::glmer(TICKS ~ YEAR + (1 | BROOD), g, family = poisson, control = tight())
  expect_equal(simulate(po, 2, seed = 7)$sim_2, simulate(pr, 2, seed = 7)$sim_2)
  long <- cbpp[rep(seq_len(nrow(cbpp)), cbpp$size), ]
  long$y <- unlist(lapply(seq_len(nrow(cbpp)), function(i) rep(c(1, 0), c(cbpp$incidence[i], cbpp$size[i] - cbpp$incidence[i]))))
  bo <- glmm(y ~ period + (1 | herd), long, family = binomial)
  br <- lme4::glmer(y ~ period + (1 | herd), long, family = binomial, control = tight())
  expect_equal(unname(simulate(bo, 1, seed = 9)$sim_1), unname(simulate(br, 1, seed = 9)$sim_1))
  expect_error(simulate(gm, newdata = cbpp), class = "mixedrs_not_available_error")
})

test_that("refit(), anova() and drop1() give glmer's likelihood-ratio tests", {
  s <- simulate(gm, 1, seed = 5)[[1]]
  expect_equal(unname(fixef(refit(gm, s))), unname(lme4::fixef(lme4::refit(rm, s))), tolerance = 1e-3)
  g0 <- glmm(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, family = binomial)
  r0 <- lme4::glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, family = binomial, control = tight())
  a <- anova(g0, gm)
  b <- anova(r0, rm)
  expect_equal(unname(as.matrix(a)), unname(as.matrix(b)), tolerance = 1e-4)
  d <- drop1(gm, test = "Chisq")
  e <- drop1(rm, test = "Chisq")
  expect_equal(rownames(d), rownames(e))
  expect_equal(unname(as.matrix(d)), unname(as.matrix(e)), tolerance = 1e-4)
  expect_error(anova(gm), class = "mixedrs_not_available_error")
})

test_that("confint(): Wald and profile as glmer's, boot reproducible; nAGQ = 9 profiles too", {
  w <- confint(gm, method = "Wald")
  expect_equal(unname(w), unname(confint(rm, method = "Wald")), tolerance = 1e-4)
  p <- confint(gm)
  ref <- suppressMessages(confint(rm))
  expect_equal(rownames(p), rownames(ref))
  expect_equal(unname(p), unname(ref), tolerance = 1e-3)
  g9 <- glmm(f_cbpp, cbpp, family = binomial, nAGQ = 9)
  r9 <- lme4::glmer(f_cbpp, cbpp, family = binomial, nAGQ = 9, control = tight())
  expect_equal(unname(confint(g9)), unname(suppressMessages(confint(r9))), tolerance = 1e-3)
  b1 <- confint(gm, method = "boot", nsim = 20, oldNames = FALSE)
  expect_equal(rownames(b1), c("sd_(Intercept)|herd", names(fixef(gm))))
  expect_true(all(b1[, 1] < b1[, 2]))
  x <- bootstrap(gm, 10, seed = 11)
  y <- bootstrap(gm, 10, seed = 11)
  expect_identical(x$t, y$t)
  expect_equal(colnames(x$t), c(".sig01", names(fixef(gm))))
  expect_output(print(x), "Parametric bootstrap of a glmm fit: 10 replicates")
  # the engine's refits (on any number of threads) are refit()'s, replicate by replicate
  z <- bootstrap(gm, 10, seed = 11, cores = 1)
  expect_identical(z$t, x$t)
  slow <- bootstrap(gm, 10, seed = 11, FUN = function(f) mixedrs:::glmm_boot_stats(f))
  expect_equal(unname(x$t), unname(slow$t), tolerance = 1e-8)
  expect_equal(x$t0, slow$t0)
  # a cbind() response and a Poisson one too
  gt <- glmm(TICKS ~ YEAR + (1 | BROOD), lme4::grouseticks, family = poisson)
  a <- bootstrap(gt, 6, seed = 2)
  b <- bootstrap(gt, 6, seed = 2, FUN = function(f) mixedrs:::glmm_boot_stats(f))
  expect_equal(unname(a$t), unname(b$t), tolerance = 1e-8)
})

test_that("emmeans on the response scale and its contrasts equal emmeans on glmer", {
  skip_if_not_installed("emmeans")
  a <- as.data.frame(emmeans::emmeans(gm, ~ period, type = "response"))
  b <- as.data.frame(emmeans::emmeans(rm, ~ period, type = "response"))
  expect_equal(names(a), names(b))
  expect_equal(a$prob, b$prob, tolerance = 1e-4)
  expect_equal(a$SE, b$SE, tolerance = 1e-3)
  expect_equal(a$df, b$df)
  pa <- as.data.frame(pairs(emmeans::emmeans(gm, ~ period)))
  pb <- as.data.frame(pairs(emmeans::emmeans(rm, ~ period)))
  expect_equal(pa$estimate, pb$estimate, tolerance = 1e-3)
  expect_equal(pa$p.value, pb$p.value, tolerance = 1e-3)
})

test_that("broom.mixed's tidy, glance and augment columns and values as for glmer", {
  skip_if_not_installed("broom.mixed")
  a <- as.data.frame(broom.mixed::tidy(gm, conf.int = TRUE))
  b <- as.data.frame(broom.mixed::tidy(rm, conf.int = TRUE))
  expect_equal(names(a), names(b))
  expect_equal(a$term, b$term)
  expect_equal(a$effect, b$effect)
  num <- c("estimate", "std.error", "statistic", "p.value", "conf.low", "conf.high")
  expect_equal(as.matrix(a[num]), as.matrix(b[num]), tolerance = 1e-3)
  ga <- as.data.frame(broom.mixed::glance(gm))
  gb <- as.data.frame(broom.mixed::glance(rm))
  expect_equal(names(ga), names(gb))
  expect_equal(unlist(ga), unlist(gb), tolerance = 1e-4)
  aa <- as.data.frame(broom.mixed::augment(gm))
  ab <- suppressWarnings(as.data.frame(broom.mixed::augment(rm)))
  cols <- c(".fitted", ".resid", ".fixed", ".mu", ".offset", ".sqrtXwt", ".sqrtrwt", ".weights", ".wtres", ".eta")
  expect_equal(as.matrix(aa[cols]), as.matrix(ab[cols]), tolerance = 1e-3)
})

test_that("compare_fits() against glmer, as_glmerMod() and lme4's own helpers on a glmm fit", {
  cmp <- compare_fits(gm, rm)
  expect_true(all(cmp$flag == ""))
  expect_true(any(grepl("^SE ", cmp$quantity)))
  expect_error(compare_fits(gm, lme4::lmer(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)), class = "mixedrs_input_error")
  m <- as_glmerMod(gm)
  expect_s4_class(m, "glmerMod")
  expect_equal(unname(as.matrix(vcov(m))), unname(vcov(gm)), tolerance = 1e-8)
  expect_equal(c(logLik(m)), c(logLik(gm)), tolerance = 1e-6)
  expect_equal(lme4::getME(m, "theta"), lme4::getME(rm, "theta"), tolerance = 1e-4)
  expect_false(lme4::isSingular(gm))
  expect_true(lme4::isGLMM(gm))
  expect_equal(lme4::getME(gm, "theta"), lme4::getME(rm, "theta"), tolerance = 1e-4)
  expect_equal(lme4::getME(gm, "lower"), lme4::getME(rm, "lower"))
  expect_error(lme4::getME(gm, "RX"), class = "mixedrs_not_available_error")
  expect_true(isSingular(glmm(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | period), cbpp,
                              family = binomial)))
})

test_that("bad requests to a glmm fit's methods are classed errors", {
  expect_error(bootstrap(gm, 5, type = "residual"), class = "mixedrs_not_available_error")
  expect_error(refit(gm, rep(0, 3)), "newresp", class = "mixedrs_input_error")
  expect_error(as_glmerMod(lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)), class = "mixedrs_input_error")
  expect_error(predict(gm, terms = "period"), class = "mixedrs_not_available_error")
  expect_error(glmm(f_cbpp, cbpp, family = binomial, nAGQ = 101), "at most 100", class = "mixedrs_input_error")
  skip_if_not_installed("broom.mixed")
  expect_error(broom.mixed::tidy(gm, effects = "ran_vals"), class = "mixedrs_input_error")
  skip_if_not_installed("mlmRev")
  data("Contraception", package = "mlmRev", envir = environment())
  gc2 <- glmm(use ~ urban + age + (urban | district), Contraception, family = binomial)
  expect_equal(dim(confint(gc2, method = "Wald")), c(6L, 2L))
  expect_error(confint(gc2, parm = 7), "out of range", class = "mixedrs_input_error")
  expect_error(confint(gc2, parm = "nope"), class = "mixedrs_input_error")
  expect_equal(rownames(confint(gc2, parm = "beta_", method = "Wald")), names(fixef(gc2)))
})

test_that("profile confint() of correlated random effects: sd and cor ends as glmer's, and where the profile reaches the cutoff", {
  skip_if_not_installed("mlmRev")
  data("Contraception", package = "mlmRev", envir = environment())
  f <- use ~ urban + age + (urban | district)
  ours <- glmm(f, Contraception, family = binomial)
  ref <- lme4::glmer(f, Contraception, family = binomial, control = tight())
  p <- confint(ours, parm = 1:3)
  r <- suppressWarnings(suppressMessages(confint(ref, parm = 1:3)))
  expect_equal(rownames(p), rownames(r))
  expect_equal(rownames(p), c(".sig01", ".sig02", ".sig03"))
  # the standard deviations' ends as lme4's (its spline through the profile, 1e-3)
  expect_equal(unname(p[c(1, 3), ]), unname(r[c(1, 3), ]), tolerance = 1e-3)
  # lme4 finds the correlation's profile non-monotonic and interpolates it linearly,
  # which puts its ends ~2e-3 from the profile's own: within 5e-3 of ours ...
  expect_equal(unname(p[2, ]), unname(r[2, ]), tolerance = 5e-3)
  # ... and ours are where lme4's own deviance function, minimised over the other
  # parameters (bobyqa) with the correlation fixed, rises by qchisq(0.95, 1)
  skip_if_not_installed("minqa")
  dfun <- lme4::glmer(f, Contraception, family = binomial, devFunOnly = TRUE)
  est <- c(sqrt(diag(VarCorr(ours)$district)), fixef(ours))
  dmin <- dfun(c(getME(ours, "theta"), fixef(ours)))
  # (lme4's devfun runs its PIRLS to its default tolerance)
  expect_equal(dmin, -2 * c(logLik(ours)), tolerance = 1e-6)
  rise <- vapply(p[2, ], function(cor) {
    dev <- function(par) tryCatch(dfun(c(par[1], cor * par[2], par[2] * sqrt(1 - cor^2), par[-(1:2)])), error = function(e) Inf)
    minqa::bobyqa(est, dev, lower = c(0, 0, rep(-Inf, length(est) - 2)), control = list(rhoend = 1e-9))$fval - dmin
  }, numeric(1))
  expect_equal(unname(rise), rep(stats::qchisq(0.95, 1), 2), tolerance = 1e-3)
  # only the parameters asked for are profiled; a fixed effect's ends as lme4's
  b <- confint(ours, parm = "urbanY")
  expect_equal(rownames(b), "urbanY")
  expect_equal(unname(b), unname(suppressMessages(confint(ref, parm = "urbanY"))), tolerance = 1e-3)
})

test_that("contrasts = as glmer's, through as_glmerMod() and drop1() too", {
  # literal lists: lme4's drop1() re-evaluates the call, as ours does
  ours <- glmm(f_cbpp, cbpp, family = binomial, contrasts = list(period = "contr.sum"))
  ref <- lme4::glmer(f_cbpp, cbpp, family = binomial, contrasts = list(period = "contr.sum"), control = tight())
  expect_equal(names(fixef(ours)), names(lme4::fixef(ref)))
  expect_equal(unname(fixef(ours)), unname(lme4::fixef(ref)), tolerance = 1e-3)
  expect_equal(unname(sqrt(diag(vcov(ours)))), unname(sqrt(diag(as.matrix(vcov(ref))))), tolerance = 5e-3)
  expect_equal(unname(as.matrix(vcov(as_glmerMod(ours)))), unname(vcov(ours)), tolerance = 1e-8)
  nd <- data.frame(period = factor(1:4), herd = factor(1, levels = levels(cbpp$herd)))
  expect_equal(unname(predict(ours, nd)), unname(predict(ref, nd)), tolerance = 1e-4)
  # (both warn that the dropped factor's contrast is ignored)
  expect_equal(unname(as.matrix(suppressWarnings(drop1(ours, test = "Chisq")))),
               unname(as.matrix(suppressWarnings(drop1(ref, test = "Chisq")))), tolerance = 1e-4)
})

test_that("terms() as lme4's for glmer fits: the fixed part, or the random part", {
  expect_equal(terms(gm), terms(rm), ignore_attr = TRUE)
  expect_equal(attr(terms(gm), "term.labels"), attr(terms(rm), "term.labels"))
  expect_equal(attr(terms(gm, random.only = TRUE), "term.labels"), attr(terms(rm, random.only = TRUE), "term.labels"))
  expect_equal(attr(terms(gm, fixed.only = FALSE), "term.labels"), attr(terms(rm, fixed.only = FALSE), "term.labels"))
})
