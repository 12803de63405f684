# Plots draw without error, and the numbers they draw are right: the profile
# passes through the profile confidence limits, the caterpillar intervals come
# from the conditional variances.

draw <- function(expr) {
  f <- tempfile(fileext = ".png")
  grDevices::png(f)
  on.exit(grDevices::dev.off())
  force(expr)
  invisible(f)
}

fm <- suppressMessages(lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy))

test_that("plot() and qqnorm() draw the residuals", {
  expect_invisible(draw(plot(fm)))
  expect_silent(draw(qqnorm(fm)))
  trees <- sim_growth(trees = 4, seed = 3)
  m <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees, correlation = corAR1())
  expect_silent(draw(plot(m)))
})

test_that("profile() passes through the profile confidence limits at ζ = ±1.96", {
  pr <- profile(fm, alphamax = 0.05, npoints = 1, signames = FALSE)
  expect_s3_class(pr, "lmm_profile")
  expect_named(pr, c(".zeta", ".par", ".focal"))
  ci <- confint(fm, oldNames = FALSE, quiet = TRUE)
  for (p in rownames(ci)) {
    d <- pr[pr$.par == p, ]
    expect_equal(d$.focal[d$.zeta < 0], ci[p, 1], tolerance = 1e-8)
    expect_equal(d$.focal[d$.zeta > 0], ci[p, 2], tolerance = 1e-8)
  }
  # ζ is 0 at the ML estimates
  ml <- suppressMessages(lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, REML = FALSE))
  expect_equal(pr$.focal[pr$.zeta == 0 & pr$.par == "sigma"], sigma(ml), tolerance = 1e-6)
  expect_equal(pr$.focal[pr$.zeta == 0 & pr$.par == "Days"], fixef(ml)[["Days"]], tolerance = 1e-6)
  # monotone in ζ for every parameter
  for (p in levels(pr$.par)) expect_true(all(diff(pr$.focal[pr$.par == p]) >= 0))
  pr2 <- profile(fm, which = "sigma", signames = FALSE)
  expect_equal(levels(pr2$.par), "sigma")
  expect_silent(draw(plot(pr2)))
  expect_error(profile(fm, which = "nonsense"), class = "mixedrs_input_error")
})

test_that("the caterpillar plot uses the conditional variances", {
  skip_if_not_installed("lattice")
  re <- ranef(fm, condVar = TRUE)
  p <- lattice::dotplot(re)
  expect_named(p, "Subject")
  expect_s3_class(p$Subject, "trellis")
  # the panel data: values and their conditional sds as lme4 gives them
  ref <- lme4::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  pv <- attr(lme4::ranef(ref, condVar = TRUE)$Subject, "postVar")
  expect_equal(p$Subject$panel.args.common$se, c(sqrt(pv[1, 1, ]), sqrt(pv[2, 2, ])), tolerance = 1e-4)
  expect_silent(draw(print(p$Subject)))
  # the x range covers the intervals, as lme4's does (one scale for the panels)
  q <- lattice::dotplot(lme4::ranef(ref, condVar = TRUE))
  expect_equal(p$Subject$x.limits, q$Subject$x.limits, tolerance = 1e-3)
  expect_type(p$Subject$x.limits, "double")
  v <- unlist(re$Subject, use.names = FALSE)
  half <- p$Subject$panel.args.common$se * qnorm(0.975)
  ends <- range(v - half, v + half)
  expect_true(p$Subject$x.limits[1] < ends[1] && p$Subject$x.limits[2] > ends[2])
  expect_error(lattice::dotplot(ranef(fm, condVar = FALSE)), class = "mixedrs_input_error")
})

test_that("plot() of a bootstrap draws each statistic", {
  bt <- bootstrap(fm, 50, seed = 1, progress = FALSE)
  expect_silent(draw(plot(bt)))
})

test_that("plot() and qqmath() are lme4's lattice interface", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (Days | Subject), ss)
  p <- plot(m)
  expect_s3_class(p, "trellis")
  # the default plot is Pearson residuals against fitted values, as lme4's
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss)
  expect_equal(p$panel.args[[1]]$y, unname(residuals(m, type = "pearson")), tolerance = 1e-8)
  expect_equal(p$panel.args[[1]]$x, p$panel.args[[1]]$x)
  p2 <- plot(m, resid(.) ~ fitted(.) | Subject, abline = 0, type = c("p", "smooth"))
  expect_s3_class(p2, "trellis")
  expect_equal(length(p2$panel.args), nlevels(ss$Subject))
  expect_s3_class(plot(m, Subject ~ resid(.)), "trellis")
  expect_s3_class(plot(m, id = 0.05), "trellis")
  expect_s3_class(lattice::qqmath(m, id = 0.05), "trellis")
  expect_silent(draw(print(p2)))
  expect_error(plot(m, fitted(.) ~ Subject), "Covariate must be numeric", class = "mixedrs_input_error")
})
