# Satterthwaite and Kenward-Roger t tests, and contest(), against lmerTest live.

for (nm in names(inference_cases())) {
  test_that(paste("summary() df and p-values match lmerTest:", nm), {
    cs <- inference_cases()[[nm]]
    f <- fit_lmertest(cs[[1]], cs[[2]])
    ours <- suppressWarnings(summary(f$ours)$coefficients)
    ref <- suppressWarnings(summary(f$ref)$coefficients)
    expect_equal(colnames(ours), colnames(ref))
    expect_equal(rownames(ours), rownames(ref))
    expect_equal(ours[, "df"], ref[, "df"], tolerance = TOL_DF)
    expect_abs_equal(ours[, "Pr(>|t|)"], ref[, "Pr(>|t|)"], TOL_P)
    expect_equal(ours[, "Estimate"], ref[, "Estimate"], tolerance = TOL_FIXEF)
  })
}

test_that("Kenward-Roger df and adjusted SEs match pbkrtest (through lmerTest)", {
  for (nm in c("sleepstudy", "nested", "crossed", "workshop_bp")) {
    cs <- inference_cases()[[nm]]
    f <- fit_lmertest(cs[[1]], cs[[2]])
    ours <- summary(f$ours, ddf = "Kenward-Roger")$coefficients
    ref <- summary(f$ref, ddf = "Kenward-Roger")$coefficients
    expect_equal(ours[, "df"], ref[, "df"], tolerance = TOL_DF, label = paste(nm, "KR df"))
    expect_equal(ours[, "Std. Error"], ref[, "Std. Error"], tolerance = TOL_DF)
    expect_abs_equal(ours[, "Pr(>|t|)"], ref[, "Pr(>|t|)"], TOL_P)
  }
})

test_that("summary() prints lmerTest's layout and header", {
  f <- fit_lmertest(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  out <- capture.output(print(summary(f$ours)))
  expect_match(out[1], "Linear mixed model fit by REML. t-tests use Satterthwaite's method ['lmm']", fixed = TRUE)
  hdr <- grep("Estimate", out, value = TRUE)
  expect_match(hdr, "Estimate Std. Error\\s+df t value Pr\\(>\\|t\\|\\)")
  expect_equal(colnames(summary(f$ours, ddf = "lme4")$coefficients), c("Estimate", "Std. Error", "t value"))
  # the workshop's idiom
  expect_abs_equal(summary(f$ours)$coefficients[2, 5], summary(f$ref)$coefficients[2, 5], TOL_P)
})

test_that("contest() matches lmerTest for 1-df and joint tests", {
  cs <- inference_cases()$crossed
  f <- fit_lmertest(cs[[1]], cs[[2]])
  L1 <- c(0, 1, 0, 0)
  expect_equal(contest(f$ours, L1, joint = FALSE)[, c("df", "t value", "Pr(>|t|)", "lower", "upper")],
               lmerTest::contest(f$ref, L1, joint = FALSE)[, c("df", "t value", "Pr(>|t|)", "lower", "upper")],
               tolerance = TOL_DF)
  L2 <- rbind(c(0, 0, 1, 0), c(0, 0, 0, 1))
  a <- contest(f$ours, L2)
  b <- lmerTest::contest(f$ref, L2)
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
  expect_abs_equal(a[["Pr(>F)"]], b[["Pr(>F)"]], TOL_P)
  a <- contest(f$ours, L2, rhs = c(0.2, -0.1))
  b <- lmerTest::contest(f$ref, L2, rhs = c(0.2, -0.1))
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
  a <- contest(f$ours, L2, ddf = "Kenward-Roger")
  b <- lmerTest::contest(f$ref, L2, ddf = "Kenward-Roger")
  expect_equal(a$DenDF, b$DenDF, tolerance = TOL_DF)
  expect_equal(a[["F value"]], b[["F value"]], tolerance = TOL_DF)
})

test_that("bad inference requests are classed errors", {
  m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_error(contest(m, c(1, 2, 3)), class = "mixedrs_input_error")
  expect_error(summary(m, ddf = "bogus"))
  ml <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, REML = FALSE)
  expect_error(summary(ml, ddf = "Kenward-Roger"), class = "mixedrs_input_error")
})

test_that("p-values from the Rust core (statrs) match R's pt, pf and pchisq", {
  p_value <- mixedrs:::p_value
  tv <- c(-40, -3.2, -0.5, 0, 0.01, 1.96, 7.5, 25)
  for (df in c(0.7, 1, 2.5, 9.83, 150.2, 1e6, Inf)) {
    expect_equal(p_value("t", tv, df), 2 * stats::pt(abs(tv), df, lower.tail = FALSE),
                 tolerance = 1e-10, label = paste("t, df", df))
  }
  fv <- c(0, 0.3, 1, 4.2, 60, 1e4)
  for (dd in list(c(1, 3.5), c(2, 17.2), c(5.5, 200), c(3, Inf))) {
    expect_equal(p_value("F", fv, dd[1], dd[2]), stats::pf(fv, dd[1], dd[2], lower.tail = FALSE),
                 tolerance = 1e-10, label = paste("F, df", dd[1], dd[2]))
  }
  xv <- c(0, 0.2, 3.84, 12, 90)
  for (df in c(1, 2, 3.3, 10)) {
    expect_equal(p_value("chisq", xv, df), stats::pchisq(xv, df, lower.tail = FALSE),
                 tolerance = 1e-10, label = paste("chisq, df", df))
  }
  # tiny tails keep their relative precision
  expect_equal(p_value("t", 60, 30), 2 * stats::pt(60, 30, lower.tail = FALSE), tolerance = 1e-8)
  # missing input is NA, as for pt()
  expect_equal(p_value("t", c(1, NA), c(NA, 3)), c(NA_real_, NA_real_))
  expect_error(p_value("gamma", 1, 1), class = "mixedrs_input_error")
})
