# Profile and Wald intervals against lme4::confint, live.

test_that("profile intervals match lme4 (sleepstudy, both name styles)", {
  f <- fit_both(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  a <- suppressMessages(confint(f$ours, oldNames = FALSE))
  b <- suppressMessages(confint(f$ref, oldNames = FALSE))
  expect_equal(dimnames(a), dimnames(b))
  expect_equal(a, b, tolerance = TOL_CI)
  a2 <- suppressMessages(confint(f$ours))
  # lme4's old names (.sig01, ..., .sigma); its Wald table lists every row cheaply
  expect_equal(rownames(a2), rownames(confint(f$ref, method = "Wald")))
  expect_equal(unname(a2), unname(a))
})

# lme4's default profile interpolates between steps of delta.cutoff = 1/8 with splines,
# which moves its ends by up to ~1e-3 on small data; mixedrs solves for the ends, so
# the reference here is lme4's profile at delta.cutoff = 1/40.
test_that("profile intervals match lme4 on the workshop examples and other levels", {
  cases <- list(list(bp ~ sex + (1 | subject), sim_bp()),
                list(sat ~ sex + (1 | school/student), sim_sat_nested()),
                list(Reaction ~ Days + (Days || Subject), lme4::sleepstudy))
  for (cs in cases) {
    f <- fit_both(cs[[1]], cs[[2]])
    a <- suppressMessages(confint(f$ours, level = 0.9))
    b <- suppressWarnings(suppressMessages(confint(f$ref, level = 0.9, delta.cutoff = 1 / 40)))
    expect_equal(a, b, tolerance = TOL_CI, label = deparse1(cs[[1]]))
    a <- suppressMessages(confint(f$ours, oldNames = FALSE))
    b <- suppressWarnings(suppressMessages(confint(f$ref, oldNames = FALSE, delta.cutoff = 1 / 40)))
    expect_equal(dimnames(a), dimnames(b))
    expect_equal(a, b, tolerance = TOL_CI, label = deparse1(cs[[1]]))
  }
})

test_that("Wald intervals and parm selection follow lme4", {
  f <- fit_both(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_equal(confint(f$ours, method = "Wald"), confint(f$ref, method = "Wald"), tolerance = TOL_CI)
  a <- suppressMessages(confint(f$ours, parm = "beta_"))
  b <- suppressMessages(confint(f$ref, parm = "beta_"))
  expect_equal(a, b, tolerance = TOL_CI)
  a <- suppressMessages(confint(f$ours, parm = c(".sig01", ".sigma")))
  expect_equal(rownames(a), c(".sig01", ".sigma"))
  expect_equal(dim(confint(f$ours, method = "boot", nsim = 20, seed = 1, quiet = TRUE)), c(6L, 2L))
  expect_error(confint(f$ours, parm = "nope"), class = "mixedrs_input_error")
  expect_error(confint(f$ours, level = 2), class = "mixedrs_input_error")
})

test_that("profile intervals on a singular fit: the bound is 0 and the other ends are exact (lme4 interpolates)", {
  set.seed(102)
  J <- 10; nj <- 5
  x <- rnorm(J * nj); z <- rnorm(J)
  u <- MASS::mvrnorm(J, c(0, 0), diag(c(1 / 18, 1 / 18)))
  d <- data.frame(X = x, Z = rep(z, each = nj), group = rep(1:J, each = nj))
  d$Y <- rep(1 + 0.3 * z + u[, 1], each = nj) + rep(0.3 + 0.3 * z + u[, 2], each = nj) * x + rnorm(J * nj, 0, sqrt(0.5))
  m <- suppressMessages(lmm(Y ~ X + Z + X:Z + (X || group), d))
  expect_true(isSingular(m))
  ci <- suppressMessages(confint(m, quiet = TRUE))
  expect_equal(ci[".sig01", 1], 0)
  # each end is where the ML deviance with that value fixed is 1.96^2 above the
  # optimum, computed by lme4 itself (a fixed effect fixed through an offset)
  dev0 <- deviance(suppressMessages(lme4::lmer(Y ~ X + Z + X:Z + (X || group), d, REML = FALSE, control = TIGHT_LME4)))
  for (b in ci["X", ]) {
    d$off <- b * d$X
    r <- suppressMessages(lme4::lmer(Y ~ Z + X:Z + (X || group) + offset(off), d, REML = FALSE, control = TIGHT_LME4))
    expect_equal(sqrt(deviance(r) - dev0), stats::qnorm(0.975), tolerance = 1e-4)
  }
})

test_that("confint() of a profile, logProf(), varianceProf() and prof.scale = 'varcov' agree with lme4", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (Days | Subject), ss)
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss)
  pm <- profile(m, which = "theta_")
  pr <- suppressWarnings(profile(r, which = "theta_", delta.cutoff = 1 / 40))
  expect_equal(confint(pm), confint(m, parm = "theta_", quiet = TRUE), tolerance = 1e-10)
  expect_equal(unname(confint(pm)), unname(confint(pr)), tolerance = TOL_CI)
  lp <- confint(logProf(pm))
  expect_equal(unname(lp[c(1, 3, 4), ]), unname(log(confint(pm)[c(1, 3, 4), ])), tolerance = 1e-10)
  expect_equal(unname(lp[2, ]), unname(confint(pm)[2, ]), tolerance = 1e-10)   # a correlation stays
  # the standard deviations are renamed as lme4 renames them (lme4 also takes the log
  # of the correlation, which gives NaN; we leave correlations alone)
  expect_equal(levels(logProf(pm)$.par)[-2], suppressWarnings(levels(logProf(pr)$.par))[-2])
  expect_equal(unname(confint(varianceProf(pm))[c(1, 3, 4), ]), unname(confint(pm)[c(1, 3, 4), ]^2), tolerance = 1e-10)
  # covariance profiles, solved in Rust
  pv <- profile(m, which = "theta_", prof.scale = "varcov", signames = FALSE)
  prv <- suppressWarnings(profile(r, which = "theta_", prof.scale = "varcov", signames = FALSE, delta.cutoff = 1 / 40))
  expect_equal(as.character(unique(pv$.par)), as.character(unique(prv$.par)))
  expect_equal(unname(confint(pv)), unname(suppressWarnings(confint(prv))), tolerance = 5e-3)
  ad <- as.data.frame(pm)
  expect_equal(names(ad), c(".zeta", ".par", ".focal"))
})

test_that("confint(method = 'boot', FUN = ) gives intervals for FUN's statistics, as lme4", {
  m <- lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
  ci <- confint(m, method = "boot", FUN = function(f) c(slope = fixef(f)[["Days"]]), nsim = 60, seed = 1, quiet = TRUE)
  expect_equal(rownames(ci), "slope")
  expect_true(ci[1, 1] < fixef(m)[["Days"]] && fixef(m)[["Days"]] < ci[1, 2])
  w <- confint(m, parm = "Days", method = "Wald")
  # 60 replicates: within a third of the Wald interval's width of it
  expect_lt(max(abs(ci - w)), diff(w[1, ]) / 3)
})

test_that("profile intervals with a residual structure: equal to lme4's where lme4 can write the model", {
  # compound symmetry within Block:Variety plus (1 | Block) is lmer's (1 | Block) +
  # (1 | Block:Variety): the Block sd and the fixed effects have the same profile
  data(Oats, package = "nlme", envir = environment())
  o <- as.data.frame(Oats)
  o$BV <- interaction(o$Block, o$Variety)
  o <- o[-c(3, 10, 17, 30, 41, 55, 62), ]
  m <- lmm(yield ~ nitro + Variety + (1 | Block), o, correlation = nlme::corCompSymm(form = ~ 1 | BV))
  plain <- lmm(yield ~ nitro + Variety + (1 | Block) + (1 | BV), o)
  ref <- lme4::lmer(yield ~ nitro + Variety + (1 | Block) + (1 | BV), o)
  fe <- names(fixef(m))
  ours <- confint(m, parm = c(".sig01", fe), quiet = TRUE)
  same <- confint(plain, parm = c(".sig02", fe), quiet = TRUE)
  expect_equal(unname(ours), unname(same), tolerance = 1e-4)
  # lme4 interpolates its profile with splines: 1e-3, as for other fits
  lme <- suppressMessages(confint(ref, parm = c(".sig02", fe), oldNames = TRUE))
  expect_equal(unname(ours), unname(lme), tolerance = 1e-3)
  # the structure's parameters come from their own profiles in the same call
  both <- confint(m, quiet = TRUE)
  expect_equal(rownames(both), c(".sig01", ".sigma", fe, "corStruct.Rho"))
  expect_equal(both[fe, ], ours[fe, ])
  expect_true(both["corStruct.Rho", 1] < coef(m$correlation) && coef(m$correlation) < both["corStruct.Rho", 2])
})

test_that("a fixed effect's profile end with corCAR1 + varPower is where the ML deviance rises by z^2", {
  b <- as.data.frame(nlme::BodyWeight)
  f <- weight ~ Time + Diet + (1 | Rat)
  m <- lmm(f, b, correlation = nlme::corCAR1(form = ~ Time | Rat), weights = nlme::varPower(form = ~ Time))
  ci <- confint(m, parm = "Time", quiet = TRUE)
  mfull <- update(m, REML = FALSE)
  for (end in ci) {
    # Time's coefficient fixed at the end: an offset, refitted by ML over everything else
    b$off <- end * b$Time
    m0 <- lmm(weight ~ Diet + (1 | Rat), b, offset = off, REML = FALSE,
              correlation = nlme::corCAR1(form = ~ Time | Rat), weights = nlme::varPower(form = ~ Time))
    expect_equal(deviance(m0) - deviance(mfull), qnorm(0.975)^2, tolerance = 1e-3)
  }
})
