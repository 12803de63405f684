# F tables (types I-III), LRT anova and ranova against lmerTest and lme4, live.

test_that("anova() types I, II and III match lmerTest", {
  for (nm in c("crossed", "nested", "sleepstudy", "workshop_bp")) {
    cs <- inference_cases()[[nm]]
    f <- fit_lmertest(cs[[1]], cs[[2]])
    for (type in c("III", "II", "I")) {
      a <- anova(f$ours, type = type)
      b <- anova(f$ref, type = type)
      lab <- paste(nm, "type", type)
      expect_equal(rownames(a), rownames(b), label = lab)
      expect_equal(a$NumDF, b$NumDF, label = lab)
      expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF, label = lab)
      expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF, label = lab)
      expect_abs_equal(a[["Pr(>F)"]], b[["Pr(>F)"]], TOL_P, label = lab)
      expect_equal(attr(a, "heading"), sub("Satterthwaite's", "Satterthwaite's", attr(b, "heading")))
    }
  }
})

test_that("type III with sum-to-zero contrasts and an interaction matches lmerTest", {
  d <- sim_crossed()
  d$f2 <- factor(rep(c("u", "v"), length.out = nrow(d)))
  op <- options(contrasts = c("contr.sum", "contr.poly"))
  on.exit(options(op))
  f <- fit_lmertest(y ~ cond * f2 + x + (1 | subj), d)
  for (type in c("III", "II")) {
    a <- anova(f$ours, type = type)
    b <- anova(f$ref, type = type)
    expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
    expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
  }
  a <- anova(f$ours, ddf = "Kenward-Roger")
  b <- anova(f$ref, ddf = "Kenward-Roger")
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
})

test_that("type III hypotheses from the distinct rows match lmerTest: a log() covariate, a character factor, a missing cell", {
  d <- sim_crossed()
  d$g <- rep(c("a", "b", "c"), length.out = nrow(d))
  d$xp <- round(abs(d$x), 1) + 0.5
  f <- fit_lmertest(y ~ cond * g + log(xp) + (1 | subj), d)
  a <- anova(f$ours, type = "III")
  b <- anova(f$ref, type = "III")
  expect_equal(rownames(a), rownames(b))
  expect_equal(a$NumDF, b$NumDF)
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
  # a cond x g cell with no data: both say so, and the tests still agree
  d2 <- d[!(d$g == "c" & d$cond == levels(factor(d$cond))[1]), ]
  f2 <- fit_lmertest(y ~ cond * g + (1 | subj), d2)
  expect_message(a2 <- anova(f2$ours, type = "III"), "Missing cells for")
  b2 <- suppressMessages(anova(f2$ref, type = "III"))
  expect_equal(a2$NumDF, b2$NumDF)
  expect_equal(a2$DenDF, b2$DenDF, tolerance = TOL_DF)
  expect_equal(a2[["F value"]], b2[["F value"]], tolerance = TOL_DF)
})

test_that("anova(m1, m2) is lme4's likelihood-ratio test, refitting REML fits by ML", {
  d <- lme4::sleepstudy
  m0 <- lmm(Reaction ~ Days + (1 | Subject), d)
  m1 <- lmm(Reaction ~ Days + (Days | Subject), d)
  r0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), d)
  r1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), d)
  expect_message(a <- anova(m0, m1), "refitting model\\(s\\) with ML")
  b <- suppressMessages(anova(r0, r1))
  expect_equal(colnames(a), colnames(b))
  expect_equal(a$npar, b$npar)
  expect_equal(a$Chisq, b$Chisq, tolerance = TOL_LRT)
  expect_equal(a$logLik, b$logLik, tolerance = TOL_LRT)
  expect_abs_equal(a[["Pr(>Chisq)"]], b[["Pr(>Chisq)"]], TOL_P)
  expect_equal(rownames(a), c("m0", "m1"))
  expect_equal(attr(a, "heading")[1:2], c("Data: d", "Models:"))
  # order of the arguments does not matter: rows are sorted by npar
  expect_equal(rownames(anova(m1, m0)), c("m0", "m1"))
})

test_that("ranova() matches lmerTest, reduced and removed terms", {
  for (nm in c("sleepstudy", "nested", "crossed", "workshop_lines", "workshop_bp")) {
    cs <- inference_cases()[[nm]]
    f <- fit_lmertest(cs[[1]], cs[[2]])
    for (reduce in c(TRUE, FALSE)) {
      a <- suppressWarnings(ranova(f$ours, reduce.terms = reduce))
      b <- suppressWarnings(suppressMessages(lmerTest::ranova(f$ref, reduce.terms = reduce)))
      lab <- paste(nm, reduce)
      ia <- order(rownames(a))
      ib <- order(rownames(b))
      expect_equal(rownames(a)[ia], rownames(b)[ib], label = lab)
      expect_equal(a$npar[ia], b$npar[ib], label = lab)
      expect_equal(a$LRT[ia], b$LRT[ib], tolerance = TOL_LRT, label = lab)
      expect_equal(a$logLik[ia], b$logLik[ib], tolerance = TOL_LRT, label = lab)
    }
  }
})

test_that("type III with a numeric x factor interaction matches lmerTest (cake)", {
  cake <- lme4::cake
  f <- fit_lmertest(angle ~ recipe * temp + (1 | recipe:replicate), cake)
  for (ddf in c("Satterthwaite", "Kenward-Roger")) {
    a <- anova(f$ours, ddf = ddf)
    b <- anova(f$ref, ddf = ddf)
    expect_equal(a[["Sum Sq"]], b[["Sum Sq"]], tolerance = TOL_DF, label = ddf)
    expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF, label = ddf)
    expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF, label = ddf)
  }
  # the hypotheses themselves, as lmerTest's show_tests() prints them
  expect_equal(show_tests(anova(f$ours)), lmerTest::show_tests(anova(f$ref)), tolerance = 1e-8)
})

test_that("type III needs no factor: numeric terms only", {
  f <- fit_lmertest(Reaction ~ Days + I(Days^2) + (1 | Subject), lme4::sleepstudy)
  a <- anova(f$ours)
  b <- anova(f$ref)
  expect_equal(rownames(a), rownames(b))
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
})

test_that("lmerTest's other anova types: marginal, 2b and yates", {
  cake <- lme4::cake
  cake$temperature <- factor(cake$temperature, ordered = FALSE)
  f <- fit_lmertest(angle ~ recipe * temperature + (1 | recipe:replicate), cake)
  for (type in c("marginal", "2b", "yates")) {
    a <- suppressWarnings(suppressMessages(anova(f$ours, type = type)))
    b <- suppressWarnings(suppressMessages(anova(f$ref, type = type)))
    expect_equal(rownames(a), rownames(b), label = type)
    expect_equal(attr(a, "heading"), attr(b, "heading"), label = type)
    ok <- !is.na(b$DenDF)
    expect_equal(a$DenDF[ok], b$DenDF[ok], tolerance = TOL_DF, label = type)
    expect_equal(a[["F value"]][ok], b[["F value"]][ok], tolerance = TOL_DF, label = type)
    expect_equal(is.na(a$DenDF), is.na(b$DenDF), label = type)
  }
})

test_that("anova() of several fits takes model.names and refuses fits it cannot compare", {
  ss <- lme4::sleepstudy
  m0 <- lmm(Reaction ~ Days + (1 | Subject), ss, REML = FALSE)
  m1 <- lmm(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
  a <- anova(m0, m1, model.names = c("small", "big"))
  expect_equal(rownames(a), c("small", "big"))
  expect_error(anova(m0, m1, model.names = c("a", "b", "c")), "different lengths", class = "mixedrs_input_error")
  l1 <- nlme::lme(Reaction ~ Days, random = ~ Days | Subject, data = ss, method = "ML")
  expect_error(anova(m0, l1), "cannot compare", class = "mixedrs_input_error")
  # a reference lme4 fit is compared, never dropped
  r1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
  a2 <- anova(m0, r1)
  expect_equal(nrow(a2), 2L)
  expect_equal(a2$Chisq[2], a$Chisq[2], tolerance = 1e-5)
  expect_warning(do.call(anova, list(m0, m1)), "generic names")
})

test_that("ranova() reduces (0 + x | g) and no-intercept poly() terms as lmerTest does", {
  ss <- lme4::sleepstudy
  for (f in list(Reaction ~ Days + (0 + Days | Subject), Reaction ~ Days + (0 + poly(Days, 2) | Subject),
                 Reaction ~ Days + (Days || Subject), Reaction ~ Days + (Days + I(Days^2) | Subject))) {
    x <- fit_lmertest(f, ss)
    a <- suppressMessages(ranova(x$ours))
    b <- suppressMessages(lmerTest::ranova(x$ref))
    lab <- deparse1(f)
    expect_equal(rownames(a), rownames(b), label = lab)
    expect_equal(a$npar, b$npar, label = lab)
    expect_equal(a$Df, b$Df, label = lab)
    expect_equal(a$LRT, b$LRT, tolerance = TOL_LRT, label = lab)
    expect_equal(is.na(a[["Pr(>Chisq)"]]), is.na(b[["Pr(>Chisq)"]]), label = lab)
  }
})

test_that("anova() led by another fit compares lmm fits as lme4 compares its own", {
  ss <- lme4::sleepstudy
  r0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), ss)
  r1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss)
  m1 <- lmm(Reaction ~ Days + (Days | Subject), ss)
  ref <- suppressMessages(stats::anova(r0, r1))
  a <- suppressMessages(anova(r0, m1))
  expect_equal(rownames(a), c("r0", "m1"))
  for (col in c("npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)")) {
    expect_equal(a[[col]], ref[[col]], tolerance = 1e-5, label = col)
  }
  # extractions such as fits$m1 are read as models too
  fits <- list(r0 = r0, m1 = m1)
  expect_equal(suppressMessages(anova(fits$r0, fits[["m1"]]))$Chisq, ref$Chisq, tolerance = 1e-5)
  # an lme fit cannot be compared with an lmm fit, whichever comes first
  l0 <- nlme::lme(Reaction ~ Days, random = ~ 1 | Subject, data = ss)
  expect_error(anova(l0, m1), "cannot compare an object of class 'lme'", class = "mixedrs_input_error")
  expect_error(anova(m1, l0), "cannot compare", class = "mixedrs_input_error")
  # calls without lmm fits are stats::anova()'s
  expect_equal(suppressMessages(anova(r0, r1)), ref)
  expect_s3_class(anova(lm(Reaction ~ Days, ss)), "anova")
})
