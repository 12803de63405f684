# How lmm fits meet other packages (R/interop.R): lme4's and lmerTest's methods all
# have lmm counterparts, no package takes lmm's calls through the "elm" class, and every
# generic of the interop packages with a method for lme4's fits has one for lmm fits,
# whatever the load order.

interop_installed <- function() Filter(function(p) requireNamespace(p, quietly = TRUE), mixedrs:::interop_packages)

# Namespace `ns`'s methods for class `cls`: the functions it defines under such names,
# and those registered in its S3 table (named list).
class_methods <- function(ns, cls) {
  env <- asNamespace(ns)
  pattern <- paste0("\\.", cls, "$")
  table <- get0(".__S3MethodsTable__.", envir = env, inherits = FALSE)
  keys <- if (is.null(table)) character() else grep(pattern, ls(table, all.names = TRUE), value = TRUE)
  list(own = grep(pattern, ls(env, all.names = TRUE), value = TRUE),
       registered = stats::setNames(lapply(keys, get, envir = table), keys))
}

test_that("every method lme4 and lmerTest define for their fits has an lmm method", {
  for (pkg in c("lme4", "lmerTest")) {
    registered <- getNamespaceInfo(asNamespace(pkg), "S3methods")
    classes <- c("merMod", "lmerMod", "lmerModLmerTest", "merModLmerTest")
    generics <- unique(registered[registered[, 2] %in% classes, 1])
    expect_gt(length(generics), if (pkg == "lme4") 40 else 5)
    for (g in generics) {
      found <- utils::getS3method(g, "lmm", optional = TRUE, envir = asNamespace("mixedrs"))
      expect_false(is.null(found), label = sprintf("%s's %s() for lmm fits", pkg, g))
    }
  }
})

test_that("no loaded package defines methods for the class 'elm', and adopted generics reach lmm", {
  for (p in interop_installed()) loadNamespace(p)
  for (ns in setdiff(loadedNamespaces(), "mixedrs")) {
    m <- class_methods(ns, "elm")
    expect_equal(c(m$own, names(m$registered)), character(), label = sprintf("methods for 'elm' in %s", ns))
  }
  for (p in interop_installed()) {
    adopted <- mixedrs:::adopt_lmer_methods(p)
    ns <- asNamespace(p)
    for (g in adopted) {
      f <- get0(g, envir = ns, mode = "function", inherits = FALSE)
      if (is.null(f) || !isTRUE(utils::isS3stdGeneric(f))) next
      expect_false(is.null(utils::getS3method(g, "lmm", optional = TRUE, envir = ns)), label = sprintf("%s::%s for lmm", p, g))
    }
  }
})

test_that("rePCA() equals lme4's", {
  fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  ref <- lme4::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  a <- rePCA(fm)
  b <- lme4::rePCA(ref)
  expect_s3_class(a, "prcomplist")
  expect_equal(names(a), names(b))
  expect_equal(a$Subject$sdev, b$Subject$sdev, tolerance = 1e-4)
  expect_equal(abs(a$Subject$rotation), abs(unname(as.matrix(b$Subject$rotation))), tolerance = 1e-3)
  expect_equal(lme4::rePCA(fm)$Subject$sdev, a$Subject$sdev)
  sing <- suppressMessages(lmm(Yield ~ 1 + (1 | Batch), lme4::Dyestuff2))
  expect_equal(rePCA(sing)$Batch$sdev, 0)
})

# Each load order in a fresh R process: lme4's, lmerTest's and nlme's functions on
# their own fits and ours, and performance's on an lmm fit.
run_in_child <- function(packages, code) {
  script <- tempfile(fileext = ".R")
  writeLines(c(sprintf("suppressPackageStartupMessages(library(%s))", packages), code), script)
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = TRUE))
  unlink(script)
  out
}

test_that("lme4, lmerTest, nlme and the interop packages work in any load order", {
  code <- c(
    "fm <- lme4::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)",
    "m <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)",
    "ours <- mixedrs::lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)",
    "g <- nlme::lme(distance ~ age, random = ~ 1 | Subject, data = nlme::Orthodont)",
    "chk <- function(label, expr) cat(label, tryCatch({force(expr); 'ok'}, error = function(e) paste('ERROR', conditionMessage(e))), '\\n')",
    "chk('ranova', ranova(m)); chk('step', step(m)); chk('get_model', get_model(step(m))); chk('contest', contest(m, c(0, 1)))",
    "chk('anova', anova(m)); chk('drop1', drop1(m)); chk('REMLcrit', REMLcrit(fm)); chk('ngrps', ngrps(fm))",
    "chk('lme4 anova', anova(fm, ours)); chk('getME', getME(fm, 'theta')); chk('refit', refit(fm)); chk('rePCA', rePCA(fm))",
    "chk('lmm getME', getME(ours, 'theta')); chk('lmm refit', refit(ours)); chk('lmm rePCA', rePCA(ours)); chk('lmm ranova', ranova(ours))",
    "chk('fixef', fixef(fm)); chk('ranef', ranef(fm)); chk('VarCorr', VarCorr(fm)); chk('isSingular', isSingular(fm))",
    "chk('nlme fixef', fixef(g)); chk('nlme ranef', ranef(g)); chk('nlme VarCorr', VarCorr(g)); chk('nlme intervals', intervals(g))",
    "chk('bootMer', lme4::bootMer(fm, lme4::fixef, nsim = 2)); chk('stats step', step(lm(mpg ~ wt + cyl, mtcars), trace = 0))",
    "if (requireNamespace('performance', quietly = TRUE)) chk('icc', stopifnot(isTRUE(all.equal(performance::icc(ours)$ICC_adjusted, performance::icc(m)$ICC_adjusted, tolerance = 1e-4))))"
  )
  orders <- list(c("mixedrs", "lme4", "lmerTest", "nlme"), c("lme4", "lmerTest", "nlme", "mixedrs"),
                 c("nlme", "lme4", "mixedrs", "lmerTest"), c("performance", "lmerTest", "mixedrs"),
                 c("mixedrs", "lmerTest", "performance"))
  for (o in orders) {
    if (!all(vapply(o, requireNamespace, NA, quietly = TRUE))) next
    out <- run_in_child(o, code)
    checks <- grep(" (ok|ERROR.*) $", out, value = TRUE)
    expect_gte(length(checks), 26)
    expect_equal(grep("ERROR", out, value = TRUE), character(), label = paste(o, collapse = ", "))
  }
})

test_that("glmm() fits: the packages' generics take them as glmer's fit of the same model", {
  skip_if_not_installed("performance")
  skip_if_not_installed("parameters")
  skip_if_not_installed("car")
  f <- cbind(incidence, size - incidence) ~ period + (1 | herd)
  m <- glmm(f, lme4::cbpp, family = binomial)
  ref <- lme4::glmer(f, lme4::cbpp, family = binomial, control = lme4::glmerControl(tolPwrss = 1e-13))
  expect_equal(class(m), c("mixedrs_glmm", "glmm", "glmerMod"))
  expect_false(methods::is(m, "merMod"))
  # insight's methods for the glmm package's class "glmm" would misread these fits (a
  # 0 x 0 covariance); the first class's methods reach glmer's instead
  expect_equal(insight::get_varcov(m), insight::get_varcov(ref), tolerance = 5e-3, ignore_attr = TRUE)
  expect_equal(insight::get_parameters(m), insight::get_parameters(ref), tolerance = 1e-3)
  expect_equal(insight::get_variance(m), insight::get_variance(ref), tolerance = 1e-3)
  expect_equal(insight::find_formula(m), insight::find_formula(ref), ignore_attr = TRUE)
  expect_true(insight::model_info(m)$is_binomial && insight::model_info(m)$is_mixed)
  expect_equal(unlist(performance::r2(m)), unlist(performance::r2(ref)), tolerance = 1e-3)
  expect_equal(unlist(performance::icc(m)), unlist(performance::icc(ref)), tolerance = 1e-3)
  cols <- c("AIC", "BIC", "R2_conditional", "R2_marginal", "ICC", "RMSE")
  pm <- suppressMessages(as.data.frame(performance::model_performance(m)))
  pr <- suppressMessages(as.data.frame(performance::model_performance(ref)))
  expect_equal(pm[cols], pr[cols], tolerance = 1e-3)
  cp <- suppressMessages(as.data.frame(performance::compare_performance(m, ref)))
  expect_equal(unlist(cp[1, cols]), unlist(cp[2, cols]), tolerance = 1e-3)
  expect_equal(unlist(performance::check_overdispersion(m)), unlist(performance::check_overdispersion(ref)), tolerance = 1e-3)
  a <- suppressMessages(parameters::model_parameters(m, effects = "fixed"))
  b <- suppressMessages(parameters::model_parameters(ref, effects = "fixed"))
  expect_equal(a$Parameter, b$Parameter)
  expect_equal(a$Coefficient, b$Coefficient, tolerance = 1e-3)
  expect_equal(a$SE, b$SE, tolerance = 5e-3)
  expect_equal(as.data.frame(car::Anova(m)), as.data.frame(car::Anova(ref)), tolerance = 1e-3)
  skip_if_not_installed("ggeffects")
  skip_if_not_installed("effects")
  skip_if_not_installed("multcomp")
  expect_equal(as.data.frame(ggeffects::ggemmeans(m, "period")), as.data.frame(ggeffects::ggemmeans(ref, "period")),
               tolerance = 5e-3, ignore_attr = TRUE)
  expect_equal(as.data.frame(effects::Effect("period", m)), as.data.frame(effects::Effect("period", ref)), tolerance = 5e-3)
  set.seed(3)
  ga <- summary(multcomp::glht(m, multcomp::mcp(period = "Tukey")))$test
  set.seed(3)
  gb <- summary(multcomp::glht(ref, multcomp::mcp(period = "Tukey")))$test
  expect_equal(ga$coefficients, gb$coefficients, tolerance = 1e-3)
  expect_equal(ga$tstat, gb$tstat, tolerance = 5e-3)
  expect_equal(ga$pvalues, gb$pvalues, tolerance = 0.05, ignore_attr = TRUE)
  # functions that call the generics from inside: those tested here take glmm() fits
  expect_equal(as.data.frame(ggeffects::ggpredict(m, "period")), as.data.frame(ggeffects::ggpredict(ref, "period")),
               tolerance = 5e-3, ignore_attr = TRUE)
  expect_equal(as.data.frame(ggeffects::ggpredict(m, c("period", "herd [1,2]"), type = "re")),
               as.data.frame(ggeffects::ggpredict(ref, c("period", "herd [1,2]"), type = "re")), tolerance = 5e-3, ignore_attr = TRUE)
  expect_equal(as.data.frame(ggeffects::ggeffect(m, "period")), as.data.frame(ggeffects::ggeffect(ref, "period")),
               tolerance = 5e-3, ignore_attr = TRUE)
  rp <- as.data.frame(parameters::random_parameters(m))
  expect_equal(rp$Value, as.data.frame(parameters::random_parameters(ref))$Value, tolerance = 1e-3)
  # a generic with only a default method takes the fit as glmer's too (get_df() asks
  # find_statistic(), which knows glmer's class): Wald df are infinite, as glmer's
  expect_equal(insight::get_df(m, type = "wald"), insight::get_df(ref, type = "wald"))
  # a function not tested here that reads the fit through insight's class lists is a
  # classed error naming as_glmerMod()
  expect_error(insight::find_statistic(m), "as_glmerMod", class = "mixedrs_not_available_error")
  expect_equal(insight::find_statistic(as_glmerMod(m)), insight::find_statistic(ref))
  skip_if_not_installed("merTools")
  expect_equal(mixedrs::REsim(m, n.sims = 50, seed = 2), merTools::REsim(ref, n.sims = 50, seed = 2), tolerance = 5e-3)
  skip_if_not_installed("sjPlot")
  expect_identical(sjPlot::tab_model(m)$knitr, sjPlot::tab_model(ref)$knitr)
  for (type in c("est", "pred", "eff")) {
    a <- sjPlot::plot_model(m, type = type, terms = if (type != "est") "period")
    b <- sjPlot::plot_model(ref, type = type, terms = if (type != "est") "period")
    expect_equal(as.data.frame(a$data), as.data.frame(b$data), tolerance = 5e-3, ignore_attr = TRUE, label = type)
  }
})

test_that("only our methods are registered for glmm() fits' first class; the glmm package's objects keep insight's", {
  for (p in interop_installed()) loadNamespace(p)
  for (ns in setdiff(loadedNamespaces(), "mixedrs")) {
    m <- class_methods(ns, "mixedrs_glmm")
    expect_equal(m$own, character(), label = sprintf("functions for 'mixedrs_glmm' in %s", ns))
    for (key in names(m$registered)) {
      expect_true(isTRUE(attr(m$registered[[key]], "mixedrs")), label = sprintf("%s in %s", key, ns))
    }
  }
  # the third class, "glmerMod", is never the one dispatched on: lme4 registers no S3
  # method for it, and every other package's method for it is on a generic where a
  # glmm() fit's first or second class has one
  reg <- getNamespaceInfo(asNamespace("lme4"), "S3methods")
  expect_equal(sum(reg[, 2] == "glmerMod"), 0L)
  for (ns in c(setdiff(loadedNamespaces(), "mixedrs"), if (requireNamespace("broom.mixed", quietly = TRUE)) "broom.mixed")) {
    env <- asNamespace(ns)
    m <- class_methods(ns, "glmerMod")
    for (key in unique(c(m$own, names(m$registered)))) {
      g <- sub("\\.glmerMod$", "", key)
      gen <- get0(g, envir = env, mode = "function")
      if (is.null(gen) || !isTRUE(tryCatch(utils::isS3stdGeneric(gen), error = function(e) FALSE))) next
      first <- utils::getS3method(g, "mixedrs_glmm", optional = TRUE, envir = env)
      second <- utils::getS3method(g, "glmm", optional = TRUE, envir = asNamespace("mixedrs"))
      expect_false(is.null(first) && is.null(second), label = sprintf("%s's %s() for glmm fits", ns, g))
    }
  }
  other <- structure(list(call = quote(glmm::glmm(y ~ x, random = list(~ 0 + g)))), class = "glmm")
  err <- tryCatch(insight::find_formula(other), error = function(e) e)
  expect_false(inherits(err, "mixedrs_error"))
})
