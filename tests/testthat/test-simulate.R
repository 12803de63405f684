# simulate() and bootstrap(): reproducibility, moments, and lme4::bootMer live.

test_that("simulate() is reproducible under set.seed() and seed =, and restores the RNG", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  set.seed(1); a <- simulate(m, 3)
  set.seed(1); b <- simulate(m, 3)
  expect_identical(a, b)
  expect_equal(names(a), paste0("sim_", 1:3))
  expect_equal(nrow(a), nobs(m))
  set.seed(2); before <- runif(1)
  set.seed(2); s <- simulate(m, 2, seed = 9); after <- runif(1)
  expect_identical(before, after)
  expect_identical(simulate(m, 2, seed = 9), s)
  expect_false(identical(simulate(m, 2, seed = 10), s))
})

test_that("simulated responses have the fitted model's moments", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  nsim <- 4000
  y <- as.matrix(simulate(m, nsim, seed = 3))
  X <- m$model$X
  mu <- drop(X %*% m$beta)
  vc <- VarCorr(m)$Subject
  Z <- cbind(1, lme4::sleepstudy$Days)
  same <- outer(lme4::sleepstudy$Subject, lme4::sleepstudy$Subject, "==")
  V <- (Z %*% vc %*% t(Z)) * same + diag(sigma(m)^2, nobs(m))
  # mean: within 4 Monte Carlo standard errors everywhere
  expect_true(all(abs(rowMeans(y) - mu) < 4 * sqrt(diag(V) / nsim)))
  # variances and within-subject covariances of the first subject: within 10%
  i <- which(lme4::sleepstudy$Subject == lme4::sleepstudy$Subject[1])
  S <- stats::cov(t(y[i, ]))
  expect_equal(unname(S), unname(V[i, i]), tolerance = 0.1)
  # observations of different subjects are uncorrelated
  j <- which(lme4::sleepstudy$Subject == lme4::sleepstudy$Subject[100])[1]
  expect_lt(abs(stats::cor(y[i[1], ], y[j, ])), 4 / sqrt(nsim))
  # use.u = TRUE keeps the conditional modes: mean is the fitted values, variance sigma^2
  yc <- as.matrix(simulate(m, nsim, seed = 4, use.u = TRUE))
  expect_true(all(abs(rowMeans(yc) - fitted(m)) < 4 * sigma(m) / sqrt(nsim)))
  expect_equal(mean(apply(yc, 1, var)), sigma(m)^2, tolerance = 0.05)
})

test_that("the bootstrap does not depend on the number of cores", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  a <- bootstrap(m, 100, seed = 7, cores = 1, progress = FALSE)
  b <- bootstrap(m, 100, seed = 7, cores = 2, progress = FALSE)
  expect_identical(a$t, b$t)
  expect_identical(bootstrap(m, 30, seed = 8, cores = 2, progress = FALSE)$t,
                   bootstrap(m, 30, seed = 8, cores = 2, progress = FALSE)$t)
  expect_equal(colnames(a$t), c(".sig01", ".sig02", ".sig03", ".sigma", "(Intercept)", "Days"))
  expect_equal(unname(a$t0[5:6]), unname(fixef(m)))
  expect_s3_class(as.data.frame(a), "data.frame")
  expect_output(print(a), "Parametric bootstrap of an lmm fit: 100 replicates")
  r <- bootstrap(m, 50, type = "residual", seed = 1, progress = FALSE)
  expect_equal(dim(r$t), c(50L, 6L))
})

test_that("percentile intervals agree with lme4::bootMer within Monte Carlo error", {
  d <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (Days | Subject), d)
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), d)
  nsim <- 300
  ours <- bootstrap(m, nsim, seed = 11, progress = FALSE)
  ref <- suppressWarnings(suppressMessages(confint(r, method = "boot", nsim = nsim, seed = 12)))
  a <- confint(ours)
  # the SE of an estimated 2.5% quantile is about 0.12 bootstrap SDs at this nsim;
  # the difference of two independent runs is allowed 5 of those
  sds <- apply(ours$t, 2, stats::sd)
  expect_true(all(abs(a - ref) <= 5 * 0.12 * sqrt(2) * sds))
  expect_equal(dimnames(confint(m, method = "boot", nsim = 50, seed = 1, quiet = TRUE)), dimnames(ref))
  ab <- confint(ours, type = "basic")
  an <- confint(ours, type = "norm")
  expect_true(all(ab[, 1] < ab[, 2]) && all(an[, 1] < an[, 2]))
})

test_that("a user FUN takes the slower R path", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  b <- bootstrap(m, 10, FUN = function(f) c(slope = unname(fixef(f)[2])), seed = 3)
  expect_equal(dim(b$t), c(10L, 1L))
  expect_equal(colnames(b$t), "slope")
  # the same parametric draws as the Rust path gives the same refits
  fast <- bootstrap(m, 10, seed = 3, progress = FALSE)
  expect_equal(unname(b$t[, 1]), unname(fast$t[, "Days"]), tolerance = 1e-5)
})

test_that("bad simulation requests are classed errors", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_error(simulate(m, 0), class = "mixedrs_input_error")
  expect_error(simulate(m, newdata = "a"), class = "mixedrs_input_error")
  expect_error(bootstrap(m, -1), class = "mixedrs_input_error")
  # new data must carry what the residual structure reads
  o <- as.data.frame(nlme::Orthodont)
  mv <- lmm(distance ~ age + (1 | Subject), o, correlation = nlme::corAR1(form = ~ 1 | Subject),
            weights = nlme::varIdent(form = ~ 1 | Sex))
  expect_error(simulate(mv, 1, newdata = data.frame(age = 8, Subject = "new", Sex = "Other")), "Other",
               class = "mixedrs_input_error")
  expect_error(simulate(mv, 1, newdata = data.frame(age = 8, Subject = "new")), class = "error")
  mc <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), sim_growth(trees = 5), correlation = corAR1(form = ~ age | tree))
  nd <- sim_growth(trees = 2)
  nd$age[2] <- nd$age[1]
  expect_error(simulate(mc, 1, newdata = nd), "duplicated times", class = "mixedrs_input_error")
})

test_that("simulate(newdata =) with a residual structure: the fit's draws on its own data, the model's covariance on new groups", {
  o <- as.data.frame(nlme::Orthodont)
  bw <- as.data.frame(nlme::BodyWeight)
  oats <- as.data.frame(nlme::Oats)
  oats$BV <- interaction(oats$Block, oats$Variety)
  fits <- list(
    ar1_ident = lmm(distance ~ age + (1 | Subject), o, correlation = nlme::corAR1(form = ~ 1 | Subject),
                    weights = nlme::varIdent(form = ~ 1 | Sex)),
    cs_comb = lmm(yield ~ nitro + (1 | Block), oats, correlation = nlme::corCompSymm(form = ~ 1 | BV),
                  weights = nlme::varComb(nlme::varIdent(form = ~ 1 | Variety), nlme::varExp(form = ~ nitro))),
    car1_power = lmm(weight ~ Time + (1 | Rat), bw, correlation = nlme::corCAR1(form = ~ Time | Rat),
                     weights = nlme::varPower(form = ~ Time)),
    walk = lmm(weight ~ Time + (1 | Rat), bw, correlation = corRandomWalk(form = ~ Time | Rat)))
  for (nm in names(fits)) {
    m <- fits[[nm]]
    d <- list(o, oats, bw)[[match(nobs(m), c(nrow(o), nrow(oats), nrow(bw)))]]
    expect_equal(simulate(m, 3, seed = 5, newdata = d), simulate(m, 3, seed = 5), tolerance = 1e-12,
                 ignore_attr = TRUE, label = nm)
    expect_equal(simulate(m, 2, seed = 6, newdata = d, re.form = NULL), simulate(m, 2, seed = 6, use.u = TRUE),
                 tolerance = 1e-12, ignore_attr = TRUE, label = nm)
  }
  # nlme's default varPower() reads the predictions at newdata (the fit's last round of
  # fitted values on its own data: equal to ~1e-7)
  mf <- lmm(distance ~ age + (1 | Subject), o, weights = nlme::varPower())
  expect_equal(simulate(mf, 2, seed = 7, newdata = o), simulate(mf, 2, seed = 7), tolerance = 1e-6, ignore_attr = TRUE)
  # two new subjects, one per stratum: Var(y) = tau^2 J + sigma^2 r_s^2 phi^|i - j|
  m <- fits$ar1_ident
  nd <- data.frame(age = rep(c(8, 10, 12, 14), 2), Subject = rep(c("new1", "new2"), each = 4),
                   Sex = rep(c("Male", "Female"), each = 4))
  y <- as.matrix(simulate(m, 20000, seed = 1, newdata = nd))
  phi <- unname(coef(m$correlation))
  tau2 <- VarCorr(m)$Subject[1]
  for (sex in c("Male", "Female")) {
    r <- if (sex == "Male") 1 else unname(coef(m$varStruct)["Female"])
    expected <- tau2 + sigma(m)^2 * r^2 * phi^abs(outer(1:4, 1:4, "-"))
    # 20000 draws: a variance's Monte Carlo error is about 1%
    expect_equal(unname(cov(t(y[nd$Sex == sex, ]))), expected, tolerance = 0.04, label = sex)
  }
  # the subjects are independent
  expect_lt(abs(cor(y[1, ], y[5, ])), 0.03)
})

test_that("simulate(newdata =) draws new random effects for the levels of newdata", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  nd <- data.frame(Subject = factor(rep(c("new1", "new2"), each = 5)), Days = rep(0:4, 2))
  s <- simulate(m, 3000, seed = 1, newdata = nd)
  expect_equal(dim(s), c(10L, 3000L))
  y <- as.matrix(s)
  vc <- VarCorr(m)$Subject
  Z <- cbind(1, nd$Days)
  V <- (Z %*% vc %*% t(Z)) * outer(nd$Subject, nd$Subject, "==") + diag(sigma(m)^2, 10)
  mu <- drop(cbind(1, nd$Days) %*% fixef(m))
  expect_true(all(abs(rowMeans(y) - mu) < 4 * sqrt(diag(V) / 3000)))
  expect_equal(unname(stats::cov(t(y[1:5, ]))), unname(V[1:5, 1:5]), tolerance = 0.12)
  # the workshop's exercise: P(new female student at a new school scores > 1200)
  d <- sim_nested(seed = 3)
  mn <- lmm(sat ~ sex + (1 | school/student), d)
  sims <- simulate(mn, 20000, seed = 2, newdata = data.frame(sex = factor("F", levels = c("F", "M")), school = "new", student = "new"))
  p_mc <- mean(unlist(sims) > 1200)
  sds <- c(attr(VarCorr(mn)[[1]], "stddev"), attr(VarCorr(mn)[[2]], "stddev"), sigma(mn))
  p_exact <- stats::pnorm(1200, fixef(mn)[[1]], sqrt(sum(sds^2)), lower.tail = FALSE)
  expect_lt(abs(p_mc - p_exact), 4 * sqrt(p_exact * (1 - p_exact) / 20000))
  # use.u keeps fitted random effects: known levels only, unless allowed
  su <- simulate(m, 2, seed = 3, newdata = lme4::sleepstudy[1:4, ], use.u = TRUE)
  expect_equal(dim(su), c(4L, 2L))
  expect_error(simulate(m, 1, newdata = nd, use.u = TRUE), class = "mixedrs_input_error")
})

test_that("simulate(newdata = <the data>) gives the same draws as simulate(), as in lme4", {
  for (f in list(distance ~ age + (age | Subject), distance ~ age + (1 | Subject) + (0 + age | Subject))) {
    m <- lmm(f, nlme::Orthodont)
    expect_equal(simulate(m, 3, newdata = nlme::Orthodont, seed = 101), simulate(m, 3, seed = 101),
                 ignore_attr = TRUE)
  }
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_equal(simulate(m, 2, use.u = TRUE, newdata = lme4::sleepstudy, seed = 4), simulate(m, 2, use.u = TRUE, seed = 4),
               ignore_attr = TRUE)
})

test_that("a partial re.form conditions on the terms it names and draws the others", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), ss)
  s <- simulate(m, 4000, seed = 1, re.form = ~ (1 | Subject))
  # conditional mean: fixed part + the Subject intercepts; variance adds the slopes' and σ²
  mu <- predict(m, re.form = ~ (1 | Subject))
  v <- VarCorr(m)
  var_expected <- attr(v[[2L]], "stddev")^2 * ss$Days^2 + sigma(m)^2
  expect_lt(max(abs(rowMeans(s) - mu) / sqrt(var_expected / 4000)), 4.5)
  expect_equal(unname(apply(s, 1, var)), var_expected, tolerance = 0.1)
  expect_error(simulate(m, use.u = TRUE, re.form = NA), "only one", class = "mixedrs_input_error")
})

test_that("bootstrap(FUN =, type = 'residual') with a residual structure colours resampled whitened residuals", {
  o <- as.data.frame(nlme::Orthodont)
  m <- lmm(distance ~ age + (1 | Subject), o, correlation = nlme::corAR1(form = ~ 1 | Subject),
           weights = nlme::varIdent(form = ~ 1 | Sex))
  # colouring the whitened residuals gives the residuals back
  e <- mixedrs:::call_rust(mixedrs:::engine_colour_rs, mixedrs:::fit_engine(m), as.double(m$whitened_residuals))$e
  expect_equal(e, unname(o$distance - fitted(m)), tolerance = 1e-10)
  b <- bootstrap(m, 200, FUN = fixef, type = "residual", seed = 3)
  expect_equal(dim(b$t), c(200L, 2L))
  expect_true(all(is.finite(b$t)))
  expect_equal(b$t0, fixef(m))
  expect_equal(bootstrap(m, 5, FUN = fixef, type = "residual", seed = 3)$t, b$t[1:5, ])
  # the replicates spread as the fit says: the slope's bootstrap sd near its standard
  # error (200 replicates: a Monte Carlo error of about 5%)
  expect_equal(sd(b$t[, "age"]), unname(sqrt(diag(vcov(m)))[2]), tolerance = 0.25)
  expect_error(mixedrs:::call_rust(mixedrs:::engine_colour_rs, mixedrs:::fit_engine(lmm(distance ~ age + (1 | Subject), o)), 1),
               class = "mixedrs_input_error")
})
