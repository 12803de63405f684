# insight on lmm fits, live against lmerTest::lmer (and nlme::lme for correlated
# residuals) on the same models. insight is what performance, parameters, sjPlot and
# ggeffects read models through. Tolerance 1e-4 relative: the fits' own estimates
# agree to about 1e-6 (ours at the same or a lower criterion; test-lmm.R).
skip_if_not_installed("insight")

test_that("insight sees an lmm fit as the mixed model lmerTest's fit is", {
  for (nm in names(interop_cases())) {
    cs <- interop_cases()[[nm]]
    expect_true(insight::is_model(cs$ours), label = nm)
    expect_true(insight::is_mixed_model(cs$ours), label = nm)
    expect_identical(insight::find_statistic(cs$ours), insight::find_statistic(cs$ref), label = nm)
    mi <- insight::model_info(cs$ours)
    ri <- insight::model_info(cs$ref)
    expect_identical(mi[c("is_linear", "is_mixed", "family", "link_function", "is_bayesian")],
                     ri[c("is_linear", "is_mixed", "family", "link_function", "is_bayesian")], label = nm)
    expect_interop(function(m) unclass(insight::find_formula(m)), cs, label = paste(nm, "find_formula"))
    expect_interop(insight::find_random, cs, label = paste(nm, "find_random"))
    expect_interop(insight::find_response, cs, label = paste(nm, "find_response"))
    expect_interop(function(m) insight::find_parameters(m), cs, label = paste(nm, "find_parameters"))
    expect_interop(insight::get_parameters, cs, label = paste(nm, "get_parameters"))
    expect_interop(insight::get_statistic, cs, label = paste(nm, "get_statistic"))
    expect_interop(insight::get_sigma, cs, label = paste(nm, "get_sigma"))
    expect_interop(function(m) as.matrix(insight::get_varcov(m)), cs, label = paste(nm, "get_varcov"))
    expect_interop(insight::n_obs, cs, label = paste(nm, "n_obs"))
    expect_interop(insight::n_parameters, cs, label = paste(nm, "n_parameters"))
    expect_interop(function(m) as.numeric(insight::get_loglikelihood(m)), cs, label = paste(nm, "get_loglikelihood"))
    # (for an lme fit insight adds intervals even with ci = NULL, by recycling the wrong
    # vector; the predictions are compared)
    expect_interop(function(m) as.data.frame(insight::get_predicted(m, ci = NULL))$Predicted, cs,
                   label = paste(nm, "get_predicted"))
  }
})

test_that("insight's variance components, the singular fit's included, equal lmerTest's", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    expect_interop(insight::get_variance, cs, label = nm)
  }
  # a singular fit has no random-effect variance, with insight's warning, as lme4's
  sing <- lmer_cases()$singular$ours
  expect_warning(v <- insight::get_variance(sing), "singularity")
  expect_null(v$var.random)
  expect_false(is.null(insight::get_variance(lmer_cases()$sleep$ours)$var.random))
})

test_that("with correlated residuals, insight's answers are those for nlme's lme fit", {
  cs <- interop_cases()$car1
  # nlme's VarCorr() prints correlations to 3 decimals, and insight reads them from there
  v <- quietly(insight::get_variance(cs$ours))
  r <- quietly(insight::get_variance(cs$ref))
  expect_equal(v[names(v) != "cor.slope_intercept"], r[names(r) != "cor.slope_intercept"], tolerance = 1e-4)
  expect_equal(v$cor.slope_intercept, r$cor.slope_intercept, tolerance = 5e-4 / 0.149)
  ff <- insight::find_formula(cs$ours)
  expect_equal(deparse(ff$correlation), deparse(insight::find_formula(cs$ref)$correlation))
  # nlme's per-coefficient within-between df
  for (type in c("residual", "wald", "analytical", "normal", "model")) {
    expect_equal(insight::get_df(cs$ours, type = type), insight::get_df(cs$ref, type = type), label = type)
  }
})

test_that("insight's degrees of freedom are lmerTest's", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    for (type in c("residual", "wald", "model", "normal")) {
      expect_interop(function(m) insight::get_df(m, type = type), cs, label = paste(nm, type))
    }
  }
  # Satterthwaite's per coefficient, as lmerTest reports them
  cs <- lmer_cases()$cake
  expect_equal(unname(insight::get_df(cs$ours, type = "satterthwaite")),
               unname(summary(cs$ref)$coefficients[, "df"]), tolerance = 1e-4)
})

test_that("an lmm fit reports its call, algorithm and convergence to insight", {
  m <- lmer_cases()$sleep$ours
  expect_identical(insight::get_call(m), m$call)
  expect_identical(insight::find_algorithm(m)$algorithm, "REML")
  expect_identical(insight::find_algorithm(update(m, REML = FALSE))$algorithm, "ML")
  expect_null(insight::find_weights(m))
  w <- lmm(Reaction ~ Days + (1 | Subject), transform(lme4::sleepstudy, w = rep(1:2, 90)), weights = w)
  expect_identical(insight::find_weights(w), "w")
  # lme4's measure, max |H^-1 g|: ours reaches a smaller gradient than lme4's optimiser
  conv <- insight::is_converged(m)
  ref <- insight::is_converged(lmer_cases()$sleep$ref)
  expect_true(conv)
  expect_true(ref)
  expect_lt(attr(conv, "gradient"), 1e-4)
})
