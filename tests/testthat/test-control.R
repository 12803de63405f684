# lme4's lmerControl() mapped onto lmm_control(): checks and their actions,
# calc.derivs, evaluation limits, optimizer = NULL; lmm()'s start, verbose and
# devFunOnly.

ss <- lme4::sleepstudy

test_that("lmerControl() is accepted and its checks take effect, as in lme4", {
  few <- subset(ss, Subject %in% levels(Subject)[1:4])
  expect_warning(lmm(Reaction ~ Days + (1 | Subject), few, control = lme4::lmerControl(check.nlev.gtreq.5 = "warning")),
                 "< 5 sampled levels")
  expect_error(lmm(Reaction ~ Days + (1 | Subject), few, control = lme4::lmerControl(check.nlev.gtreq.5 = "stop")),
               "< 5 sampled levels", class = "mixedrs_input_error")
  obs <- transform(ss, obs = factor(seq_len(nrow(ss))))
  expect_error(lmm(Reaction ~ Days + (1 | obs), obs), "number of levels of each grouping factor")
  # lme4 fits the same model when both checks are off; so do we, to the same optimum
  ctl <- lme4::lmerControl(check.nobs.vs.nlev = "ignore", check.nobs.vs.nRE = "ignore")
  m <- suppressMessages(lmm(Reaction ~ Days + (1 | obs), obs, control = ctl))
  r <- suppressMessages(suppressWarnings(lme4::lmer(Reaction ~ Days + (1 | obs), obs, control = ctl)))
  expect_lte(mixedrs::REMLcrit(m), lme4::REMLcrit(r) + 1e-6 * abs(lme4::REMLcrit(r)))
  expect_warning(lmm(Reaction ~ Days + (1 | obs), obs,
                     control = lme4::lmerControl(check.nobs.vs.nlev = "warning", check.nobs.vs.nRE = "ignore")),
                 "number of levels")
  expect_silent(lmm(Reaction ~ Days + (1 | Subject), ss, control = lme4::lmerControl(check.conv.singular = "ignore")))
})

test_that("the singular-fit message follows check.conv.singular", {
  set.seed(1)
  d <- data.frame(g = factor(rep(1:10, each = 5)), x = rnorm(50))
  d$y <- d$x + rnorm(50)
  expect_message(lmm(y ~ x + (1 | g), d), "boundary \\(singular\\) fit")
  expect_silent(lmm(y ~ x + (1 | g), d, control = lme4::lmerControl(check.conv.singular = "ignore")))
  expect_warning(lmm(y ~ x + (1 | g), d, control = lme4::lmerControl(check.conv.singular = "warning")), "singular")
  expect_error(lmm(y ~ x + (1 | g), d, control = lmm_control(check.conv.singular = "stop")), "singular",
               class = "mixedrs_input_error")
})

test_that("check.rankX and check.scaleX act as in lme4", {
  d <- ss
  d$Days2 <- 2 * d$Days
  expect_message(m <- lmm(Reaction ~ Days + Days2 + (1 | Subject), d), "rank deficient so dropping 1 column")
  expect_equal(attr(model.matrix(m), "col.dropped"), c(Days2 = 3L))
  expect_equal(names(fixef(m, add.dropped = TRUE)), c("(Intercept)", "Days", "Days2"))
  expect_true(is.na(fixef(m, add.dropped = TRUE)[["Days2"]]))
  expect_error(lmm(Reaction ~ Days + Days2 + (1 | Subject), d, control = lme4::lmerControl(check.rankX = "stop.deficient")),
               "column rank deficient", class = "mixedrs_input_error")
  d$big <- d$Days * 1e5
  expect_warning(lmm(Reaction ~ big + (1 | Subject), d), "very different scales")
  expect_silent(suppressMessages(lmm(Reaction ~ big + (1 | Subject), d, control = lme4::lmerControl(check.scaleX = "ignore"))))
})

test_that("optimizer choices: NULL evaluates at lme4's start, others are named in a message, junk is an error", {
  set.seed(101)
  d <- data.frame(f = factor(rep(1:10, each = 10)), z = rnorm(100))
  m <- lmm(z ~ 1 | f, d, control = lme4::lmerControl(optimizer = NULL))
  r <- lme4::lmer(z ~ 1 | f, d, control = lme4::lmerControl(optimizer = NULL))
  expect_equal(unname(m$theta), unname(lme4::getME(r, "theta")), tolerance = 1e-10)
  expect_equal(unname(fixef(m)), unname(lme4::fixef(r)), tolerance = 1e-8)
  expect_message(lmm(Reaction ~ Days + (Days | Subject), ss, control = lme4::lmerControl(optimizer = "bobyqa")),
                 "optimizer 'bobyqa' is not used")
  expect_error(lmm(Reaction ~ Days + (Days | Subject), ss, control = lme4::lmerControl(optimizer = "junk")),
               "couldn't find optimizer function", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (Days | Subject), ss, control = lme4::lmerControl(optimizer = "none")),
               "use NULL instead", class = "mixedrs_input_error")
})

test_that("an evaluation limit (maxfun) stops the fit with lme4's check.conv.grad action", {
  expect_warning(m <- lmm(Reaction ~ Days + (Days | Subject), ss, control = lme4::lmerControl(optCtrl = list(maxfun = 3))),
                 "failure to converge in 3 evaluations")
  expect_false(m$optinfo$converged)
  expect_silent(lmm(Reaction ~ Days + (Days | Subject), ss,
                    control = lme4::lmerControl(optCtrl = list(maxfun = 3), check.conv.grad = "ignore")))
  expect_silent(lmm(Reaction ~ Days + (Days | Subject), ss,
                    control = lme4::lmerControl(optCtrl = list(maxfun = 3), calc.derivs = FALSE)))
})

test_that("a list as control is deprecated, as in lme4; options(lmerControl) sets the checks", {
  expect_warning(lmm(Reaction ~ Days + (1 | Subject), ss, control = list()), "deprecated")
  expect_warning(lmm(Reaction ~ Days + (1 | Subject), ss, control = list(check.nlev.gtreq.5 = "ignore")), "deprecated")
  op <- options(lmerControl = list(junk = 1, check.conv.singular = "ignore"))
  on.exit(options(op))
  expect_warning(lmm(Reaction ~ Days + (1 | Subject), ss), "some options")
  options(lmerControl = list(check.nlev.gtreq.5 = "warning"))
  expect_warning(lmm(Reaction ~ Days + (1 | Subject), subset(ss, as.integer(Subject) <= 4)), "< 5 sampled levels")
})

test_that("start, verbose and devFunOnly work as lme4's", {
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
  m0 <- lmm(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
  for (st in list(c(1, 0, 1), list(theta = c(1, 0, 1)), unname(lme4::getME(r, "theta")))) {
    m <- lmm(Reaction ~ Days + (Days | Subject), ss, REML = FALSE, start = st)
    expect_equal(deviance(m), deviance(m0), tolerance = 1e-9)
  }
  expect_error(lmm(Reaction ~ Days + (Days | Subject), ss, start = c(1, 2)), "incorrect number of theta",
               class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (Days | Subject), ss, start = list(Theta = 1)), "incorrect components",
               class = "mixedrs_input_error")
  out <- capture.output(lmm(Reaction ~ Days + (Days | Subject), ss, verbose = 1))
  expect_gt(sum(grepl("^evaluation", out)), 5)
  dev <- lmm(Reaction ~ Days + (Days | Subject), ss, devFunOnly = TRUE)
  ref <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss, devFunOnly = TRUE)
  expect_equal(environment(dev)$pp$theta, environment(ref)$pp$theta, tolerance = 1e-12)
  expect_true(is.function(dev))
  expect_equal(names(formals(dev))[1], "theta")
  for (th in list(c(1, 0, 1), c(0.5, 0.1, 0.3), c(0, 0, 0.2))) expect_equal(dev(th), ref(th), tolerance = 1e-10)
  expect_equal(environment(dev)$lower, environment(ref)$lower)
  # as lme4's, the environment holds the θ last evaluated
  expect_equal(environment(dev)$pp$theta, environment(ref)$pp$theta, tolerance = 1e-12)
  # random intercepts: lme4's devfun starts at its variance-ratio start
  dev2 <- lmm(Reaction ~ Days + (1 | Subject), ss, devFunOnly = TRUE)
  ref2 <- lme4::lmer(Reaction ~ Days + (1 | Subject), ss, devFunOnly = TRUE)
  expect_equal(environment(dev2)$pp$theta, environment(ref2)$pp$theta, tolerance = 1e-10)
  expect_false(isTRUE(all.equal(environment(dev2)$pp$theta, 1)))
  # the devfun's engine is rebuilt after a round trip through serialisation
  dev3 <- unserialize(serialize(dev, NULL))
  expect_equal(dev3(c(0.5, 0.1, 0.3)), ref(c(0.5, 0.1, 0.3)), tolerance = 1e-10)
  expect_error(dev(c(1, 0)), "theta must be numeric of length 3", class = "mixedrs_input_error")
  f <- as.function(m0)
  expect_equal(f(m0$theta), deviance(m0), tolerance = 1e-10)
  # lme4's own optimizer can drive our deviance function
  opt <- lme4::optimizeLmer(update(m0, devFunOnly = TRUE), control = list(maxfun = 500), start = m0$theta)
  expect_equal(opt$fval, deviance(m0), tolerance = 1e-7)
})

test_that("bad data give lme4's 'bad data' errors", {
  expect_error(lmm(z ~ 1 | f, no_such_data), "bad 'data'", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ 1 | Subject, ss[, 1:100]), "bad 'data'", class = "mixedrs_input_error")
})
