# parameters on lmm fits, live against lmerTest::lmer (nlme::lme with correlated
# residuals) on the same models; tolerance 1e-4 relative.
skip_if_not_installed("parameters")

mp <- function(...) function(m) as.data.frame(parameters::model_parameters(m, ...))

test_that("model_parameters() equals lmerTest's, for each kind of interval and df", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    expect_interop(mp(), cs, label = paste(nm, "default"))
    for (ci_method in c("wald", "residual", "satterthwaite", "kenward", "normal")) {
      expect_interop(mp(ci_method = ci_method, effects = "fixed"), cs, label = paste(nm, ci_method))
    }
    expect_interop(mp(effects = "random", group_level = TRUE), cs, label = paste(nm, "group level"))
    expect_interop(mp(standardize = "refit", effects = "fixed"), cs, label = paste(nm, "standardized"))
  }
})

test_that("profile intervals of the fixed effects equal lme4's", {
  for (nm in c("sleep", "cake")) {
    cs <- lmer_cases()[[nm]]
    expect_interop(mp(ci_method = "profile", effects = "fixed"), cs, label = nm)
  }
})

test_that("with correlated residuals, model_parameters() is nlme's lme fit's (within-between df)", {
  cs <- interop_cases()$car1
  a <- quietly(mp()(cs$ours))
  b <- quietly(mp()(cs$ref))
  fixed <- a$Effects == "fixed"
  expect_equal(a[fixed, ], b[fixed, ], tolerance = 1e-4, ignore_attr = TRUE)
  expect_equal(a$df_error[fixed], unname(insight::get_df(cs$ref)))
  # nlme rounds the correlation to 3 decimals
  expect_equal(a$Coefficient[!fixed], b$Coefficient[!fixed], tolerance = 5e-4 / 0.149)
  for (method in c("residual", "wald", "normal", "any")) {
    expect_equal(parameters::degrees_of_freedom(cs$ours, method = method),
                 parameters::degrees_of_freedom(cs$ref, method = method), label = method)
  }
})

test_that("parameters' p-values, standard errors and df equal lmerTest's", {
  for (nm in names(lmer_cases())) {
    cs <- lmer_cases()[[nm]]
    expect_interop(function(m) as.data.frame(parameters::p_value(m)), cs, label = paste(nm, "p"))
    expect_interop(function(m) as.data.frame(parameters::standard_error(m)), cs, label = paste(nm, "se"))
    expect_interop(function(m) as.data.frame(parameters::ci(m)), cs, label = paste(nm, "ci"))
    for (method in c("residual", "satterthwaite", "kenward", "betwithin", "ml1")) {
      expect_interop(function(m) parameters::degrees_of_freedom(m, method = method), cs, label = paste(nm, method))
    }
  }
})
