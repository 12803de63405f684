# drop1() and step() against lmerTest, live.

test_that("drop1() and step() match lmerTest on lmerTest's ham data", {
  f <- fit_lmertest(Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), lmerTest::ham)
  a <- drop1(f$ours)
  b <- drop1(f$ref)
  expect_equal(rownames(a), rownames(b))
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
  expect_equal(attr(a, "heading")[1], attr(b, "heading")[1])
  sa <- step(f$ours)
  sb <- suppressMessages(lmerTest::step(f$ref))
  expect_equal(deparse1(formula(get_model(sa))), deparse1(formula(lmerTest::get_model(sb))))
  expect_equal(rownames(sa$fixed), rownames(sb$fixed))
  expect_equal(sa$fixed$Eliminated, sb$fixed$Eliminated)
  expect_equal(sa$fixed$DenDF, sb$fixed$DenDF, tolerance = TOL_DF)
  expect_equal(sa$random$LRT, sb$random$LRT, tolerance = TOL_LRT)
  expect_equal(rownames(sa$random), rownames(sb$random))
  expect_output(print(sa), "Model found:")
  expect_error(drop1(f$ours, scope = "Product"), class = "mixedrs_input_error")
})

test_that("step() removes a random term whose LRT p-value is above alpha.random", {
  d <- sim_crossed()
  d$noise <- factor(sample(1:8, nrow(d), TRUE))
  f <- fit_lmertest(y ~ x + cond + (1 | subj) + (1 | noise), d)
  sa <- step(f$ours)
  sb <- suppressMessages(lmerTest::step(f$ref))
  expect_equal(deparse1(formula(get_model(sa))), deparse1(formula(lmerTest::get_model(sb))))
  expect_equal(rownames(sa$random), rownames(sb$random))
})

test_that("drop1() with an aliased term gives NA for it, as lmerTest (cake: temp with temperature)", {
  cake <- lme4::cake
  f <- suppressMessages(fit_lmertest(angle ~ recipe + temp + temperature + (1 | recipe:replicate), cake))
  a <- suppressMessages(drop1(f$ours))
  b <- suppressMessages(drop1(f$ref))
  expect_equal(rownames(a), rownames(b))
  expect_true(all(is.na(a["temp", ])))
  ok <- rownames(a) != "temp"
  expect_equal(a[ok, "F value"], b[ok, "F value"], tolerance = TOL_DF)
  expect_equal(a[ok, "DenDF"], b[ok, "DenDF"], tolerance = TOL_DF)
  # forcing the difference contrasts gives the same tests
  a2 <- suppressMessages(drop1(f$ours, force_get_contrasts = TRUE))
  expect_equal(a2[ok, "F value"], a[ok, "F value"], tolerance = 1e-8)
})

test_that("drop1(ddf = 'lme4') is lme4's likelihood-ratio drop1", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + I(Days^2) + (1 | Subject), ss, REML = FALSE)
  r <- lme4::lmer(Reaction ~ Days + I(Days^2) + (1 | Subject), ss, REML = FALSE)
  a <- drop1(m, ddf = "lme4", test = "Chisq")
  b <- drop1(r, test = "Chisq")
  expect_equal(rownames(a), rownames(b))
  expect_equal(a$AIC, b$AIC, tolerance = 1e-7)
  expect_equal(a[["Pr(Chi)"]], b[["Pr(Chi)"]], tolerance = 1e-6)
})

test_that("step() warns about lmerTest's retired arguments and keeps the final drop1 table", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_warning(step(m, reduce.fixed = FALSE, reduce.random = FALSE, type = 3), "deprecated and ignored")
  s <- step(m)
  expect_true(all(c("Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)") %in% colnames(attr(s, "drop1"))))
})
