# performance on lmm fits, live against lmerTest::lmer (nlme::lme with correlated
# residuals) on the same models; tolerance 1e-4 relative.
skip_if_not_installed("performance")

test_that("r2, icc, model_performance and compare_performance equal lmerTest's", {
  for (nm in names(interop_cases())) {
    cs <- interop_cases()[[nm]]
    expect_interop(function(m) unclass(performance::r2(m)), cs, label = paste(nm, "r2"))
    expect_interop(function(m) unclass(performance::icc(m)), cs, label = paste(nm, "icc"))
    expect_interop(function(m) as.data.frame(performance::model_performance(m)), cs, label = paste(nm, "model_performance"))
    expect_interop(function(m) as.data.frame(performance::model_performance(m, metrics = "all")), cs,
                   label = paste(nm, "model_performance all"))
  }
  # two fits of each kind compared; the Model column names the classes
  ss <- lme4::sleepstudy
  ours <- list(lmm(Reaction ~ Days + (1 | Subject), ss), interop_cases()$sleep$ours)
  refs <- list(lmerTest::lmer(Reaction ~ Days + (1 | Subject), ss), interop_cases()$sleep$ref)
  a <- quietly(as.data.frame(performance::compare_performance(ours[[1]], ours[[2]])))
  b <- quietly(as.data.frame(performance::compare_performance(refs[[1]], refs[[2]])))
  expect_identical(a$Model, c("elm", "elm"))
  expect_equal(a[setdiff(names(a), c("Name", "Model"))], b[setdiff(names(b), c("Name", "Model"))], tolerance = 1e-4)
})

test_that("a singular fit is singular to performance, as lme4's is, and an R2 without random variance", {
  sing <- lmer_cases()$singular
  expect_true(performance::check_singularity(sing$ours))
  expect_false(performance::check_singularity(lmer_cases()$sleep$ours))
  expect_equal(performance::check_singularity(sing$ours, tolerance = 1e-12),
               performance::check_singularity(sing$ref, tolerance = 1e-12))
  r <- quietly(performance::r2(sing$ours))
  expect_true(is.na(r$R2_conditional))
  expect_identical(quietly(performance::icc(sing$ours)), quietly(performance::icc(sing$ref)))
})

test_that("check_convergence() is lme4's test, met by both fits", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    expect_identical(as.vector(performance::check_convergence(cs$ours)), as.vector(performance::check_convergence(cs$ref)),
                     label = nm)
  }
})

test_that("the data of check_model()'s panels equal those for lmerTest's fit", {
  pdf(NULL)
  on.exit(grDevices::dev.off())
  for (nm in names(interop_cases())) {
    cs <- interop_cases()[[nm]]
    a <- quietly(performance::check_model(cs$ours))
    b <- quietly(performance::check_model(cs$ref))
    # an lme fit has no random-effects QQ panel (insight cannot get its standard errors),
    # no homogeneity panel (performance finds no scaled residuals) and no posterior
    # predictive check (nlme has no simulate()); ours has all three
    shown <- if (nm == "car1") setdiff(names(a), c("REQQ", "HOMOGENEITY", "PP_CHECK")) else names(a)
    expect_identical(shown, names(b), label = nm)
    # the posterior predictive panel is made of simulations: ours draw from Rust's generator
    for (panel in setdiff(names(b), "PP_CHECK")) {
      expect_equal(a[[panel]], b[[panel]], tolerance = 1e-4, ignore_attr = TRUE, label = paste(nm, panel))
    }
    if ("PP_CHECK" %in% names(b)) expect_identical(dim(a$PP_CHECK), dim(b$PP_CHECK), label = nm)
    if (nm == "car1") expect_equal(nrow(a$PP_CHECK), nobs(cs$ours), label = "car1 PP_CHECK from simulate()")
  }
})

test_that("performance's other checks equal lmerTest's", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    expect_interop(function(m) as.data.frame(performance::check_collinearity(m)), cs, label = paste(nm, "collinearity"))
    expect_interop(function(m) as.vector(performance::check_normality(m)), cs, label = paste(nm, "normality"))
    expect_interop(function(m) as.vector(performance::check_heteroscedasticity(m)), cs, label = paste(nm, "heteroscedasticity"))
    expect_interop(function(m) as.data.frame(performance::check_outliers(m)), cs, label = paste(nm, "outliers"))
    expect_interop(function(m) performance::performance_aic(m), cs, label = paste(nm, "AIC"))
    expect_interop(function(m) performance::performance_aicc(m), cs, label = paste(nm, "AICc"))
    expect_interop(function(m) performance::performance_rmse(m), cs, label = paste(nm, "RMSE"))
  }
})
