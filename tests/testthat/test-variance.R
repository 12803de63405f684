# Variance functions (lmm(weights = varIdent(...)) and so on) against nlme::lme live.
# nlme is fitted with both of its optimisers (nlminb and optim) and the better
# log-likelihood is the reference: nlme sometimes stops early, and we must not copy that.
# Tolerances (the issue's): log-likelihood never worse than nlme's by more than 1e-4
# relative; fixed effects 1e-3, sigma 2e-3, standard errors 5e-3, variance parameters
# 2e-3 (relative; absolute below 1).

best_lme <- function(...) {
  fit <- function(opt) {
    tryCatch(suppressWarnings(nlme::lme(..., control = nlme::lmeControl(opt = opt, maxIter = 200, msMaxIter = 200))),
             error = function(e) NULL)
  }
  a <- fit("nlminb")
  b <- fit("optim")
  if (is.null(a)) return(b)
  if (is.null(b)) return(a)
  if (c(logLik(b)) > c(logLik(a))) b else a
}

expect_variance_parity <- function(ours, ref, label) {
  ll_ours <- c(logLik(ours))
  ll_ref <- c(logLik(ref))
  # never worse than nlme's by more than 1e-4 relative (better is a better optimum)
  expect_gte(ll_ours, ll_ref - 1e-4 * abs(ll_ref))
  expect_equal(unname(fixef(ours)), unname(nlme::fixef(ref)), tolerance = 1e-3, label = paste(label, "fixef"))
  expect_equal(sigma(ours), ref$sigma, tolerance = 2e-3, label = paste(label, "sigma"))
  expect_equal(unname(sqrt(diag(vcov(ours)))), unname(sqrt(diag(vcov(ref)))), tolerance = 5e-3, label = paste(label, "SE"))
  theirs <- coef(ref$modelStruct$varStruct, unconstrained = FALSE)
  expect_equal(names(coef(ours$varStruct)), names(theirs), label = paste(label, "parameter names"))
  expect_equal(unname(coef(ours$varStruct)), unname(theirs), tolerance = 2e-3, label = paste(label, "variance parameters"))
  if (!is.null(ref$modelStruct$corStruct)) {
    expect_equal(unname(coef(ours$correlation)), unname(coef(ref$modelStruct$corStruct, unconstrained = FALSE)),
                 tolerance = 2e-3, label = paste(label, "correlation"))
  }
}

o <- nlme::Orthodont
bw <- nlme::BodyWeight

test_that("varIdent by Sex on Orthodont matches nlme (REML and ML)", {
  for (method in c("REML", "ML")) {
    ours <- lmm(distance ~ age + (1 | Subject), o, REML = method == "REML", weights = varIdent(form = ~ 1 | Sex))
    ref <- best_lme(distance ~ age, random = ~ 1 | Subject, data = o, method = method,
                    weights = nlme::varIdent(form = ~ 1 | Sex))
    expect_variance_parity(ours, ref, paste("Orthodont varIdent", method))
  }
})

test_that("varPower(~ Time) on BodyWeight, alone and with corCAR1, matches nlme", {
  ours <- lmm(weight ~ Time * Diet + (Time | Rat), bw, weights = varPower(form = ~ Time))
  ref <- best_lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw, weights = nlme::varPower(form = ~ Time))
  expect_variance_parity(ours, ref, "BodyWeight varPower")
  ours <- lmm(weight ~ Time * Diet + (Time | Rat), bw, weights = varPower(form = ~ Time),
              correlation = corCAR1(form = ~ Time | Rat))
  ref <- best_lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw, weights = nlme::varPower(form = ~ Time),
                  correlation = nlme::corCAR1(form = ~ Time | Rat))
  expect_variance_parity(ours, ref, "BodyWeight corCAR1 + varPower")
})

test_that("varExp, varConstPower, varFixed, varIdent with corAR1 and varComb match nlme", {
  ours <- lmm(distance ~ age + (1 | Subject), o, weights = varExp(form = ~ age))
  ref <- best_lme(distance ~ age, random = ~ 1 | Subject, data = o, weights = nlme::varExp(form = ~ age))
  expect_variance_parity(ours, ref, "varExp")
  # varConstPower where its constant is identified (on Orthodont it runs to 0)
  set.seed(11)
  d <- data.frame(g = factor(rep(1:40, each = 8)), x = runif(320, 1, 10))
  d$y <- 2 + 0.5 * d$x + rnorm(40)[d$g] + rnorm(320, sd = 0.2 * (5 + d$x^1.5))
  ours <- lmm(y ~ x + (1 | g), d, weights = varConstPower(form = ~ x))
  ref <- best_lme(y ~ x, random = ~ 1 | g, data = d, weights = nlme::varConstPower(form = ~ x))
  expect_variance_parity(ours, ref, "varConstPower")
  # varFixed: no parameters; the fit is lme's with weights 1/age
  ours <- lmm(distance ~ age + (1 | Subject), o, weights = varFixed(~ age))
  ref <- best_lme(distance ~ age, random = ~ 1 | Subject, data = o, weights = nlme::varFixed(~ age))
  expect_equal(c(logLik(ours)), c(logLik(ref)), tolerance = 1e-6)
  expect_equal(unname(fixef(ours)), unname(nlme::fixef(ref)), tolerance = 1e-6)
  expect_equal(sigma(ours), ref$sigma, tolerance = 1e-5)
  ours <- lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex), correlation = corAR1())
  ref <- best_lme(distance ~ age, random = ~ 1 | Subject, data = o, weights = nlme::varIdent(form = ~ 1 | Sex),
                  correlation = nlme::corAR1())
  expect_variance_parity(ours, ref, "varIdent + corAR1")
  ours <- lmm(weight ~ Time * Diet + (Time | Rat), bw, REML = FALSE,
              weights = varComb(varIdent(form = ~ 1 | Diet), varPower(form = ~ Time)))
  ref <- best_lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw, method = "ML",
                  weights = nlme::varComb(nlme::varIdent(form = ~ 1 | Diet), nlme::varPower(form = ~ Time)))
  expect_variance_parity(ours, ref, "varComb ML")
})

test_that("nlme's default varPower() on the fitted values matches nlme (its outer iteration)", {
  for (case in list(list(distance ~ age + (1 | Subject), distance ~ age, ~ 1 | Subject, o),
                    list(weight ~ Time * Diet + (Time | Rat), weight ~ Time * Diet, ~ Time | Rat, bw))) {
    ours <- lmm(case[[1]], case[[4]], weights = varPower())
    ref <- best_lme(case[[2]], random = case[[3]], data = case[[4]], weights = nlme::varPower())
    expect_variance_parity(ours, ref, paste("varPower() on fitted values", deparse(case[[2]])))
    expect_equal(deparse(ours$varStruct$parts[[1]]$form), "~fitted(.)")
    expect_lt(ours$var_rounds, 50L)
  }
})

test_that("summary, intervals, residuals, predict, anova and compare_fits as nlme's", {
  ours <- lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex))
  ref <- best_lme(distance ~ age, random = ~ 1 | Subject, data = o, weights = nlme::varIdent(form = ~ 1 | Sex))
  # the "Variance function" block as nlme prints it (its text, and the strata; the
  # estimates are compared above, to their tolerance)
  block <- function(lines) {
    i <- grep("^Variance function:", lines)
    c(lines[i:(i + 3L)], strsplit(trimws(lines[i + 4L]), " +")[[1L]])
  }
  expect_equal(block(capture.output(summary(ours))), block(capture.output(summary(ref))))
  expect_equal(block(capture.output(print(ours))), block(capture.output(summary(ref))))
  # intervals on the log-ratio scale, nlme's layout
  a <- intervals(ours)$varStruct
  b <- nlme::intervals(ref)$varStruct
  expect_equal(dimnames(a), dimnames(b))
  expect_equal(attr(a, "label"), attr(b, "label"))
  expect_equal(unname(a[, "est."]), unname(b[, "est."]), tolerance = 2e-3)
  expect_equal(unname(a[, c("lower", "upper")]), unname(b[, c("lower", "upper")]), tolerance = 5e-3)
  # nlme's Pearson and normalized residuals
  expect_equal(as.numeric(resid(ours, type = "pearson", scaled = TRUE)), as.numeric(resid(ref, type = "pearson")), tolerance = 1e-4)
  expect_equal(as.numeric(resid(ours, type = "normalized")), as.numeric(resid(ref, type = "normalized")), tolerance = 1e-4)
  expect_equal(as.numeric(predict(ours)), as.numeric(predict(ref)), tolerance = 1e-5)
  expect_equal(as.numeric(predict(ours, re.form = NA)), as.numeric(predict(ref, level = 0)), tolerance = 1e-5)
  # normalized residuals decorrelate too
  oc <- lmm(weight ~ Time * Diet + (Time | Rat), bw, weights = varPower(form = ~ Time), correlation = corCAR1(form = ~ Time | Rat))
  rc <- best_lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw, weights = nlme::varPower(form = ~ Time),
                 correlation = nlme::corCAR1(form = ~ Time | Rat))
  expect_equal(as.numeric(resid(oc, type = "normalized")), as.numeric(resid(rc, type = "normalized")), tolerance = 1e-3)
  # with compound symmetry nlme decorrelates by its own (Helmert) factor, row order within
  # each group as in the data
  oats <- as.data.frame(nlme::Oats)
  oats$BV <- interaction(oats$Block, oats$Variety)
  ocs <- lmm(yield ~ nitro + (1 | Block), oats, correlation = corCompSymm(form = ~ 1 | BV), weights = varIdent(form = ~ 1 | Variety))
  rcs <- best_lme(yield ~ nitro, random = ~ 1 | Block, data = oats, correlation = nlme::corCompSymm(form = ~ 1 | Block/Variety),
                  weights = nlme::varIdent(form = ~ 1 | Variety))
  expect_equal(as.numeric(logLik(ocs)), as.numeric(logLik(rcs)), tolerance = 1e-6)
  expect_equal(as.numeric(resid(ocs, type = "normalized")), as.numeric(resid(rcs, type = "normalized")), tolerance = 1e-4)
  # the likelihood-ratio test of the variance function, as nlme's anova()
  o0 <- lmm(distance ~ age + (1 | Subject), o, REML = FALSE)
  o1 <- lmm(distance ~ age + (1 | Subject), o, REML = FALSE, weights = varIdent(form = ~ 1 | Sex))
  r0 <- nlme::lme(distance ~ age, random = ~ 1 | Subject, data = o, method = "ML")
  r1 <- best_lme(distance ~ age, random = ~ 1 | Subject, data = o, method = "ML", weights = nlme::varIdent(form = ~ 1 | Sex))
  a <- anova(o0, o1)
  b <- nlme::anova.lme(r0, r1)
  expect_equal(a$npar, b$df)
  expect_equal(a$Chisq[2], b$L.Ratio[2], tolerance = 1e-4)
  expect_equal(a[["Pr(>Chisq)"]][2], b[["p-value"]][2], tolerance = 1e-3)
  # compare_fits() against the lme fit flags nothing
  cf <- compare_fits(ours, ref, tolerance = 5e-3)
  expect_true(any(grepl("^varStruct", cf$quantity)))
  expect_false(any(cf$flag[!grepl("^df ", cf$quantity)] == "*"))
  # Satterthwaite's df exist
  expect_true(all(is.finite(summary(ours)$coefficients[, "df"])))
})

test_that("bad variance functions give classed errors", {
  expect_error(lmm(distance ~ age + (1 | Subject), o, weights = varPower(form = ~ log(fitted(.)))), "fitted\\(\\.\\) itself",
               class = "mixedrs_not_available_error")
  expect_error(lmm(distance ~ age + (1 | Subject), o, weights = varPower(0.5, form = ~ age)), "initial",
               class = "mixedrs_not_available_error")
  o2 <- o
  o2$lone <- ifelse(seq_len(nrow(o)) == 1L, "a", "b")
  expect_error(lmm(distance ~ age + (1 | Subject), o2, weights = varIdent(form = ~ 1 | lone)), "one observation",
               class = "mixedrs_input_error")
  o2$z <- o2$age - 8
  expect_error(lmm(distance ~ age + (1 | Subject), o2, weights = varPower(form = ~ z)), "is 0 in 27 rows",
               class = "mixedrs_input_error")
  o2$w <- o2$age
  o2$w[3] <- NA
  expect_error(lmm(distance ~ age + (1 | Subject), o2, weights = varExp(form = ~ w)), "missing values",
               class = "mixedrs_input_error")
  o2$w[3] <- Inf
  expect_error(lmm(distance ~ age + (1 | Subject), o2, weights = varExp(form = ~ w)), "infinite",
               class = "mixedrs_input_error")
  expect_error(lmm(distance ~ age + (1 | Subject), o2, weights = varFixed(~ z)), "positive",
               class = "mixedrs_input_error")
  expect_error(lmm(distance ~ age + (1 | Subject), o, weights = nlme::varPower(form = ~ age | Sex)), "strata",
               class = "mixedrs_not_available_error")
  # the correlation's groups must still nest in the random effects
  expect_error(lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex), correlation = corAR1(form = ~ 1 | Sex)),
               "nested", class = "mixedrs_input_error")
  # what needs independent residuals says so
  m <- lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex))
  expect_error(as_lmerMod(m), "heteroscedastic", class = "mixedrs_not_available_error")
  expect_warning(cd <- cooks.distance(m), "heteroscedastic")
  expect_true(all(is.nan(cd)))
})

test_that("simulate() draws errors with the fitted variance function and correlation", {
  m <- lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex))
  # conditional on the random effects, the errors' sd ratio is the fitted one
  s <- simulate(m, 400, seed = 1, use.u = TRUE)
  e <- as.matrix(s) - fitted(m)
  ratio <- sd(e[o$Sex == "Female", ]) / sd(e[o$Sex == "Male", ])
  expect_equal(ratio, unname(coef(m$varStruct)), tolerance = 0.03)
  expect_equal(sd(e[o$Sex == "Male", ]), sigma(m), tolerance = 0.03)
  # AR(1) within rats at the fitted phi (lag-1 correlation of the errors)
  mc <- lmm(weight ~ Time * Diet + (Time | Rat), bw, weights = varPower(form = ~ Time), correlation = corAR1(form = ~ 1 | Rat))
  s <- simulate(mc, 300, seed = 2, use.u = TRUE)
  e <- (as.matrix(s) - fitted(mc)) / mc$var_sd
  lag <- unlist(lapply(split(seq_len(nrow(bw)), bw$Rat), function(i) i[-1]))
  expect_equal(cor(as.vector(e[lag, ]), as.vector(e[lag - 1L, ])), unname(coef(mc$correlation)), tolerance = 0.05)
  # the same draws from the same seed, and newdata is refused with a structure
  expect_identical(simulate(m, 2, seed = 5), simulate(m, 2, seed = 5))
})

test_that("bootstrap() refits the residual structure; its intervals; profiles of its parameters", {
  m <- lmm(weight ~ Time * Diet + (Time | Rat), bw, weights = varPower(form = ~ Time), correlation = corCAR1(form = ~ Time | Rat))
  b1 <- bootstrap(m, 24, seed = 3, cores = 1)
  b2 <- bootstrap(m, 24, seed = 3, cores = 2)
  expect_identical(b1$t, b2$t)
  expect_equal(b1$failed, 0L)
  expect_equal(tail(names(b1$t0), 2), c("corStruct.Phi", "varStruct.power"))
  expect_equal(unname(b1$t0[c("corStruct.Phi", "varStruct.power")]), unname(c(coef(m$correlation), coef(m$varStruct))))
  expect_true(all(is.finite(b1$t)))
  ci <- suppressMessages(confint(m, parm = c("corStruct.Phi", "varStruct.power"), method = "boot", nsim = 24, seed = 3))
  expect_equal(unname(ci), unname(confint(b1, parm = c("corStruct.Phi", "varStruct.power"))))
  expect_true(all(is.na(suppressMessages(confint(m, method = "Wald"))[c("corStruct.Phi", "varStruct.power"), ])))
  # the profile's ends are where the ML deviance, minimised over the other parameters,
  # is z^2 above its minimum (checked with the criterion itself and optim())
  mi <- lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex))
  ends <- suppressMessages(confint(mi, parm = "varStruct.Female"))
  dev <- lmm(distance ~ age + (1 | Subject), o, weights = varIdent(form = ~ 1 | Sex), REML = FALSE, devFunOnly = TRUE)
  best <- optim(c(1, 0), dev, method = "L-BFGS-B", lower = c(0, -Inf))$value
  at <- function(ratio) optimize(function(th) dev(c(th, log(ratio))), c(0, 10))$objective - best
  expect_equal(at(ends[1, 1]), qnorm(0.975)^2, tolerance = 2e-3)
  expect_equal(at(ends[1, 2]), qnorm(0.975)^2, tolerance = 2e-3)
  # every parameter's profile, in one call: the variance components' and fixed effects'
  # re-optimise the ratio at every point, so their ends lie outside the Wald ones
  all <- confint(mi, quiet = TRUE)
  expect_equal(rownames(all), c(".sig01", ".sigma", "(Intercept)", "age", "varStruct.Female"))
  expect_equal(all["varStruct.Female", ], ends[1, ])
  wald <- confint(mi, method = "Wald")
  expect_equal(all["age", ], wald["age", ], tolerance = 0.02)
  # residual bootstraps resample the whitened residuals
  br <- bootstrap(mi, 20, seed = 4, type = "residual")
  expect_true(all(is.finite(br$t)))
})
