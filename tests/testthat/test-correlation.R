# Correlated residuals against nlme::lme live, the random walk against the
# differenced model fitted by lme4, and bad input.

TOL_LL <- 1e-4      # -2 log-likelihood, absolute
TOL_FE <- 1e-4      # fixed effects, relative
TOL_PAR <- 1e-3     # sigma and the correlation parameter, relative

# `ref_short`: nlme stops short of the optimum here (we must then be better, and the
# estimates are compared at the precision nlme reached).
expect_nlme_parity <- function(ours, ref, label, ref_short = FALSE) {
  d_ours <- -2 * c(logLik(ours))
  d_ref <- -2 * c(logLik(ref))
  expect_lte(d_ours, d_ref + TOL_LL, label = paste(label, "-2logLik is as low as nlme's"))
  if (ref_short) {
    expect_equal(unname(fixef(ours)), unname(nlme::fixef(ref)), tolerance = 1e-2, label = paste(label, "fixef"))
    expect_equal(unname(coef(ours$correlation)), unname(coef(ref$modelStruct$corStruct, unconstrained = FALSE)),
                 tolerance = TOL_PAR, label = paste(label, "correlation"))
    return(invisible(d_ref - d_ours))
  }
  expect_abs_equal(d_ours, d_ref, TOL_LL, label = paste(label, "-2logLik"))
  expect_equal(unname(fixef(ours)), unname(nlme::fixef(ref)), tolerance = TOL_FE, label = paste(label, "fixef"))
  expect_equal(sigma(ours), ref$sigma, tolerance = TOL_PAR, label = paste(label, "sigma"))
  expect_equal(unname(coef(ours$correlation)),
               unname(coef(ref$modelStruct$corStruct, unconstrained = FALSE)), tolerance = TOL_PAR,
               label = paste(label, "correlation"))
}

test_that("corAR1 matches nlme on the workshop's trees (REML and ML)", {
  d <- sim_growth(trees = 30)
  for (method in c("REML", "ML")) {
    ref <- nlme::lme(height ~ treatment:age - 1, random = ~ age - 1 | tree, correlation = nlme::corAR1(),
                     data = d, method = method)
    ours <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, REML = method == "REML", correlation = corAR1())
    expect_nlme_parity(ours, ref, paste("trees", method))
  }
})

test_that("corAR1, corCompSymm and corCAR1 match nlme on nlme's data sets", {
  o <- nlme::Orthodont
  ref <- nlme::lme(distance ~ age, random = ~ age | Subject, data = o, correlation = nlme::corAR1())
  ours <- lmm(distance ~ age + (age | Subject), o, correlation = corAR1())
  expect_nlme_parity(ours, ref, "Orthodont corAR1")
  # compound symmetry within classes, nested in schools that have a random intercept
  # (within the random-effect groups themselves CS would be confounded with them)
  set.seed(9)
  cs <- expand.grid(pupil = 1:6, class = 1:4, school = 1:20)
  cs$school <- factor(cs$school)
  cs$class <- factor(cs$class)
  cs$x <- rnorm(nrow(cs))
  cs$y <- 1 + 0.5 * cs$x + rnorm(20)[cs$school] + rnorm(80, 0, 0.6)[interaction(cs$school, cs$class)] + rnorm(nrow(cs))
  ref <- nlme::lme(y ~ x, random = ~ 1 | school, data = cs, correlation = nlme::corCompSymm(form = ~ 1 | school/class))
  ours <- lmm(y ~ x + (1 | school), cs, correlation = corCompSymm(form = ~ 1 | school/class))
  expect_nlme_parity(ours, ref, "corCompSymm within classes")
  b <- nlme::BodyWeight
  ref <- nlme::lme(weight ~ Time * Diet, random = ~ 1 | Rat, data = b, correlation = nlme::corCAR1(form = ~ Time))
  ours <- lmm(weight ~ Time * Diet + (1 | Rat), b, correlation = corCAR1(form = ~ Time))
  expect_nlme_parity(ours, ref, "BodyWeight corCAR1")
  ref <- nlme::lme(weight ~ Time * Diet, random = ~ 1 | Rat, data = b, correlation = nlme::corCAR1(form = ~ Time), method = "ML")
  ours <- lmm(weight ~ Time * Diet + (1 | Rat), b, correlation = corCAR1(form = ~ Time | Rat), REML = FALSE)
  expect_nlme_parity(ours, ref, "BodyWeight corCAR1 ML")
})

test_that("the workshop's ChickWeight exercise matches nlme with opt = 'optim'", {
  cw <- as.data.frame(datasets::ChickWeight)
  ref <- nlme::lme(sqrt(weight) ~ Diet:Time, random = ~ Time | Chick, data = cw, correlation = nlme::corAR1(),
                   control = nlme::lmeControl(opt = "optim"))
  ours <- lmm(sqrt(weight) ~ Diet:Time + (Time | Chick), cw, correlation = corAR1())
  # nlme stops short here (with optim, BFGS or nlminb alike); we reach a lower -2logLik
  gap <- expect_nlme_parity(ours, ref, "ChickWeight", ref_short = TRUE)
  expect_gte(gap, 0)
})

test_that("the random walk's log-likelihood equals that of the differenced model", {
  d <- sim_growth(trees = 40, seed = 7, digits = NULL)
  d$inc <- stats::ave(d$height, d$tree, FUN = function(h) c(h[1L], diff(h)))
  for (reml in c(TRUE, FALSE)) {
    rw <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, REML = reml, correlation = corRandomWalk(~ age | tree))
    inc <- lme4::lmer(inc ~ treatment - 1 + (1 | tree), d, REML = reml, control = TIGHT_LME4)
    expect_abs_equal(c(logLik(rw)), c(logLik(inc)), 1e-6)
    expect_equal(unname(fixef(rw)), unname(lme4::fixef(inc)), tolerance = 1e-6)
    expect_equal(sigma(rw), sigma(inc), tolerance = 1e-5)
  }
  # without the group in the formula, the tree factor is used
  rw1 <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corRandomWalk(~ age | tree))
  rw2 <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corRandomWalk(~ age))
  expect_equal(c(logLik(rw2)), c(logLik(rw1)), tolerance = 1e-10)
})

test_that("the random walk recovers the workshop's truth within its intervals", {
  d <- sim_growth(trees = 100, seed = 8, digits = NULL)
  truth <- attr(d, "truth")
  rw <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corRandomWalk(~ age | tree))
  iv <- intervals(rw)
  expect_true(all(iv$fixed[, "lower"] <= truth$fixef & truth$fixef <= iv$fixed[, "upper"]))
  sd_row <- iv$reStruct$tree["sd(age)", ]
  expect_true(sd_row$lower <= truth$sd_slope && truth$sd_slope <= sd_row$upper)
  expect_true(iv$sigma[["lower"]] <= truth$sigma && truth$sigma <= iv$sigma[["upper"]])
  expect_equal(names(iv), c("fixed", "reStruct", "sigma"))
})

test_that("coverage: random-walk intervals are nominal; corAR1's slope-SD intervals are not", {
  source(system.file("workshop", "coverage.R", package = "mixedrs"))
  cs <- suppressMessages(coverage_study(nsim = 200, trees = 30))
  rw <- cs[cs$model == "random_walk", ]
  ar <- cs[cs$model == "ar1", ]
  # nominal 0.95 within 3 Monte Carlo standard errors (about 0.025)
  expect_lt(abs(rw$slope_coverage - 0.95), 3 * max(rw$slope_mc_se, 0.008))
  expect_lt(abs(rw$sd_slope_coverage - 0.95), 3 * sqrt(0.95 * 0.05 / 200))
  # corAR1 misattributes the walk's growing variance to the slope SD
  expect_lt(ar$sd_slope_coverage, 0.95 - 3 * sqrt(0.95 * 0.05 / 200))
})

test_that("summary, intervals and coef show the correlation as nlme does", {
  d <- sim_growth(trees = 30)
  m <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corAR1())
  out <- capture.output(print(summary(m)))
  expect_true(any(out == "Correlation Structure: AR(1)"))
  expect_true(any(out == " Formula: ~1 | tree"))
  expect_named(coef(m$correlation), "Phi")
  iv <- intervals(m)
  expect_named(iv, c("fixed", "reStruct", "corStruct", "sigma"))
  expect_equal(colnames(iv$fixed), c("lower", "est.", "upper"))
  expect_true(is.data.frame(iv$reStruct$tree))
  ref <- nlme::lme(height ~ treatment:age - 1, random = ~ age - 1 | tree, correlation = nlme::corAR1(), data = d)
  ivr <- nlme::intervals(ref)
  # variance-parameter intervals are Wald intervals on nlme's scales: close to nlme's
  expect_equal(unlist(iv$reStruct$tree), unlist(ivr$reStruct$tree), tolerance = 1e-2)
  expect_equal(unname(iv$corStruct), unname(ivr$corStruct), tolerance = 1e-2)
  expect_equal(unname(iv$sigma), unname(ivr$sigma), tolerance = 1e-2)
  expect_output(print(iv), "Approximate 95% confidence intervals")
})

test_that("bad correlation input gives classed errors", {
  d <- sim_growth(trees = 5)
  f <- height ~ treatment:age - 1 + (age - 1 | tree)
  # groups that cut across the random-effects groups
  d$half <- factor(rep(1:2, length.out = nrow(d)))
  expect_error(lmm(f, d, correlation = corAR1(form = ~ 1 | half)), class = "mixedrs_input_error",
               regexp = "cut across the random-effects grouping factor 'tree'")
  # duplicated times
  d2 <- d
  d2$age[d2$age == 2] <- 1
  expect_error(lmm(f, d2, correlation = corCAR1(form = ~ age | tree)), class = "mixedrs_input_error", regexp = "duplicated times")
  expect_error(lmm(f, d2, correlation = corRandomWalk(~ age | tree)), class = "mixedrs_input_error", regexp = "duplicated times")
  # unsupported structures and non-structures
  expect_error(lmm(f, d, correlation = nlme::corExp(form = ~ age | tree)), class = "mixedrs_input_error", regexp = "not supported")
  expect_error(lmm(f, d, correlation = "AR1"), class = "mixedrs_input_error")
  # random-walk times must be positive; AR1 positions integer
  d3 <- d
  d3$age <- d3$age - 1
  expect_error(lmm(f, d3, correlation = corRandomWalk(~ age | tree)), class = "mixedrs_input_error", regexp = "positive")
  d3$age <- d$age + 0.5
  expect_error(lmm(f, d3, correlation = corAR1(form = ~ age | tree)), class = "mixedrs_input_error", regexp = "integer")
})

test_that("a random walk with a nugget nests the plain walk and finds measurement error", {
  d <- sim_growth(trees = 100, seed = 12, digits = NULL)
  set.seed(13)
  d$height <- d$height + rnorm(nrow(d), 0, 0.5)   # measurement error with variance sigma^2
  rw <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corRandomWalk(~ age | tree))
  rn <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corRandomWalk(~ age | tree, nugget = TRUE))
  expect_named(coef(rn$correlation), "nugget")
  # one more parameter: the likelihood cannot be lower
  expect_gte(c(logLik(rn)), c(logLik(rw)) - 1e-6)
  expect_equal(attr(logLik(rn), "df"), attr(logLik(rw), "df") + 1)
  # the nugget is the measurement-error variance over sigma^2 = 1 here
  expect_gt(coef(rn$correlation), 0.4)
  expect_lt(coef(rn$correlation), 2.5)
  expect_equal(sigma(rn), 0.5, tolerance = 0.15)
})

test_that("with correlated residuals, start = θ, refit() and as.function() work on [θ, η]", {
  d <- sim_growth(seed = 4)
  f <- height ~ treatment:age - 1 + (age - 1 | tree)
  m <- lmm(f, d, correlation = corAR1())
  # lme4's start is θ alone: η starts where the correlation starts by default
  s <- lmm(f, d, correlation = corAR1(), start = m$theta)
  expect_equal(REMLcrit(s), REMLcrit(m), tolerance = 1e-9)
  expect_equal(coef(s$correlation), coef(m$correlation), tolerance = 1e-5)
  r <- refit(m)
  expect_equal(REMLcrit(r), REMLcrit(m), tolerance = 1e-9)
  dev <- as.function(m)
  expect_equal(dev(c(m$theta, m$cor_eta)), REMLcrit(m), tolerance = 1e-10)
  # moving η away from the optimum raises the criterion
  expect_gt(dev(c(m$theta, m$cor_eta + 0.5)), REMLcrit(m))
  expect_error(dev(m$theta), "correlation's unconstrained parameters", class = "mixedrs_input_error")
})

test_that("normalized residuals do not depend on the row order (nlme's do: it decorrelates in sorted order rows it keeps in data order)", {
  o <- as.data.frame(nlme::Orthodont)
  set.seed(3)
  s <- o[sample(nrow(o)), ]
  ours <- function(d) resid(lmm(distance ~ age + (1 | Subject), d, correlation = nlme::corCAR1(form = ~ age | Subject)), type = "normalized")
  ref <- function(d) resid(nlme::lme(distance ~ age, random = ~ 1 | Subject, data = d,
                                     correlation = nlme::corCAR1(form = ~ age | Subject)), type = "normalized")
  m <- match(paste(o$Subject, o$age), paste(s$Subject, s$age))
  # on data sorted by group, as nlme's
  expect_equal(as.numeric(ours(o)), as.numeric(ref(o)), tolerance = 1e-4)
  # shuffled: ours are the same residuals, row for row
  expect_equal(as.numeric(ours(s))[m], as.numeric(ours(o)), tolerance = 1e-5)
  # nlme's are not (so no parity is claimed there)
  expect_gt(max(abs(as.numeric(ref(s))[m] - as.numeric(ref(o)))), 0.1)
})
