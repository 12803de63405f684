sleepstudy <- lme4::sleepstudy
fits <- fit_both(Reaction ~ Days + (Days | Subject), sleepstudy)
m <- fits$ours
ref <- fits$ref

test_that("ranef has lme4's structure and conditional variances", {
  r <- ranef(m)
  rr <- lme4::ranef(ref, condVar = TRUE)
  expect_equal(names(r), names(rr))
  expect_equal(dimnames(r$Subject), dimnames(rr$Subject))
  expect_equal(r$Subject, rr$Subject, tolerance = 1e-4, ignore_attr = TRUE)
  expect_equal(attr(r$Subject, "postVar"), attr(rr$Subject, "postVar"), tolerance = 1e-4)
  expect_null(attr(ranef(m, condVar = FALSE)$Subject, "postVar"))
  expect_output(print(r), "with conditional variances for")
})

test_that("condVar for several terms on one factor has lme4's list form", {
  f <- fit_both(Reaction ~ Days + (Days || Subject), sleepstudy)
  pv <- attr(ranef(f$ours)$Subject, "postVar")
  pr <- attr(lme4::ranef(f$ref, condVar = TRUE)$Subject, "postVar")
  expect_equal(names(pv), names(pr))
  expect_equal(pv, pr, tolerance = 1e-4)
  expect_equal(as.data.frame(ranef(f$ours)), as.data.frame(lme4::ranef(f$ref, condVar = TRUE)),
               tolerance = 1e-4)
  expect_equal(as.data.frame(ranef(m)), as.data.frame(lme4::ranef(ref, condVar = TRUE)), tolerance = 1e-4)
  set.seed(7)
  d <- data.frame(g = factor(rep(1:25, each = 8)), x = rnorm(200), f = factor(sample(c("a", "b"), 200, TRUE)))
  d$y <- rnorm(25)[d$g] + d$x + rnorm(200)
  h <- fit_both(y ~ f + (0 + x + f || g), d, REML = FALSE, ref_control = TIGHT_LME4)
  pv <- attr(ranef(h$ours)$g, "postVar")
  pr <- attr(lme4::ranef(h$ref, condVar = TRUE)$g, "postVar")
  expect_equal(names(pv), names(pr))
  expect_equal(pv, pr, tolerance = 1e-4)
})

test_that("condVar with crossed terms matches lme4", {
  f <- fit_both(diameter ~ 1 + (1 | plate) + (1 | sample), lme4::Penicillin)
  r <- ranef(f$ours)
  rr <- lme4::ranef(f$ref, condVar = TRUE)
  for (g in names(rr)) {
    expect_equal(as.vector(attr(r[[g]], "postVar")), as.vector(attr(rr[[g]], "postVar")), tolerance = 1e-4)
  }
})

test_that("coef, VarCorr, sigma, vcov, logLik, AIC, BIC follow lme4", {
  expect_equal(as.matrix(coef(m)$Subject), as.matrix(coef(ref)$Subject), tolerance = 1e-4)
  vc <- VarCorr(m)
  vr <- lme4::VarCorr(ref)
  expect_equal(attr(vc$Subject, "stddev"), attr(vr$Subject, "stddev"), tolerance = TOL_VC)
  expect_equal(attr(vc$Subject, "correlation"), attr(vr$Subject, "correlation"), tolerance = 1e-3)
  expect_equal(attr(vc, "sc"), attr(vr, "sc"), tolerance = TOL_VC)
  expect_equal(as.data.frame(vc)[, 1:3], as.data.frame(vr)[, 1:3])
  expect_equal(vcov(m), as.matrix(vcov(ref)), tolerance = 1e-4)
  expect_equal(c(logLik(m)), c(logLik(ref)), tolerance = TOL_CRIT)
  expect_equal(attr(logLik(m), "df"), attr(logLik(ref), "df"))
  expect_equal(AIC(m), AIC(ref), tolerance = TOL_CRIT)
  expect_equal(BIC(m), BIC(ref), tolerance = TOL_CRIT)
  expect_equal(c(logLik(m, REML = FALSE)), c(logLik(ref, REML = FALSE)), tolerance = TOL_CRIT)
  expect_warning(deviance(m), "deprecated for REML fits")
  expect_equal(deviance(m, REML = FALSE), deviance(ref, REML = FALSE), tolerance = TOL_CRIT)
  expect_equal(nobs(m), nobs(ref))
  expect_equal(ngrps(m), lme4::ngrps(ref))
})

test_that("fitted, residuals, model.matrix, formula and update", {
  expect_equal(fitted(m), fitted(ref), tolerance = 1e-6)
  expect_equal(residuals(m), residuals(ref), tolerance = 1e-4)
  expect_equal(model.matrix(m), model.matrix(ref), ignore_attr = TRUE)
  Zr <- as.matrix(lme4::getME(ref, "Z"))
  expect_equal(unname(model.matrix(m, type = "random")), unname(Zr))
  expect_equal(deparse1(formula(m)), "Reaction ~ Days + (Days | Subject)")
  direct <- lmm(Reaction ~ Days + (Days | Subject), sleepstudy)
  m2 <- update(direct, . ~ . - Days)
  expect_equal(names(fixef(m2)), "(Intercept)")
  m3 <- update(direct, REML = FALSE)
  expect_false(m3$REML)
  expect_equal(deviance(m3), deviance(lme4::lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE)),
               tolerance = TOL_CRIT)
})

test_that("predict with newdata, re.form and new levels matches lme4", {
  nd <- data.frame(Days = c(0, 5, 9), Subject = factor(c("308", "309", "999")))
  expect_error(predict(m, nd), "new levels", class = "mixedrs_input_error")
  expect_equal(predict(m, nd, allow.new.levels = TRUE),
               predict(ref, nd, allow.new.levels = TRUE), tolerance = 1e-5)
  expect_equal(predict(m, nd, re.form = NA), predict(ref, nd, re.form = NA), tolerance = 1e-6)
  expect_equal(predict(m), predict(ref), tolerance = 1e-6)
  expect_equal(predict(m, re.form = ~0), predict(ref, re.form = ~0), tolerance = 1e-6)
})

test_that("the workshop's summary() idioms work", {
  d <- sim_bp()
  mb <- lmm(bp ~ sex + (1 | subject), d)
  rb <- lmerTest::lmer(bp ~ sex + (1 | subject), d)
  s <- summary(mb)
  sr <- summary(rb)
  expect_equal(s$sigma, sr$sigma, tolerance = TOL_VC)
  expect_equal(attr(s$varcor$subject, "stddev"), attr(sr$varcor$subject, "stddev"), tolerance = TOL_VC)
  expect_equal(colnames(s$coefficients), colnames(sr$coefficients))
  expect_equal(s$coefficients[, 1:4], sr$coefficients[, 1:4], tolerance = 1e-4)
  expect_equal(ranef(mb)$subject[, 1], lme4::ranef(rb)$subject[, 1], tolerance = 1e-4)
  l2 <- lmm(sat ~ log.income + (log.income | school), sim_sat_lines())
  r2 <- suppressWarnings(lme4::lmer(sat ~ log.income + (log.income | school), sim_sat_lines()))
  strip <- function(v) { attr(v, "stddev") <- NULL; attr(v, "correlation") <- NULL; v }
  expect_equal(strip(summary(l2)$varcor$school), strip(summary(r2)$varcor$school), tolerance = 1e-3)
})

test_that("isSingular, getME and ngrps work through lme4's own functions", {
  expect_false(lme4::isSingular(m))
  expect_equal(lme4::getME(m, "theta"), m$theta)
  expect_equal(lme4::ngrps(m), ngrps(m))
})

test_that("coef() puts random-only columns first and has lme4's class, as lme4", {
  set.seed(101)
  d <- data.frame(resp = runif(100), var1 = factor(sample(1:5, 100, TRUE)), var2 = runif(100),
                  var3 = factor(sample(1:5, 100, TRUE)))
  m <- suppressMessages(lmm(resp ~ 0 + var1 + var1:var2 + (1 | var3), d))
  r <- suppressMessages(lme4::lmer(resp ~ 0 + var1 + var1:var2 + (1 | var3), d))
  expect_s3_class(coef(m), "coef.mer")
  expect_equal(names(coef(m)$var3), names(coef(r)$var3))
  expect_equal(as.matrix(coef(m)$var3), as.matrix(coef(r)$var3), tolerance = 1e-4)
})

test_that("model.frame(fixed.only), formula(fixed.only/random.only) and terms() as lme4", {
  d <- lme4::sleepstudy
  d$u <- rnorm(nrow(d))
  m <- lmm(Reaction ~ Days + (u | Subject), d)
  r <- suppressMessages(lme4::lmer(Reaction ~ Days + (u | Subject), d))
  expect_equal(names(model.frame(m, fixed.only = TRUE)), names(model.frame(r, fixed.only = TRUE)))
  expect_equal(formula(m, fixed.only = TRUE), formula(r, fixed.only = TRUE), ignore_formula_env = TRUE)
  expect_equal(formula(m, random.only = TRUE), formula(r, random.only = TRUE), ignore_formula_env = TRUE)
  expect_equal(attr(terms(m), "term.labels"), attr(terms(r), "term.labels"))
  expect_equal(attr(terms(m, fixed.only = FALSE), "term.labels"), attr(terms(r, fixed.only = FALSE), "term.labels"))
})

test_that("a logical response is fitted as 0/1, as lm() and lme4 fit it", {
  d <- lme4::sleepstudy
  d$hi <- d$Reaction > 300
  m <- lmm(hi ~ Days + (1 | Subject), d)
  r <- lme4::lmer(hi ~ Days + (1 | Subject), d)
  expect_equal(unname(fixef(m)), unname(lme4::fixef(r)), tolerance = 1e-5)
})
