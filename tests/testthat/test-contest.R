# lmerTest's contest(), contest1D(), contestMD(), ls_means(), difflsmeans(),
# show_tests() and calcSatterth() on lmm fits, live against lmerTest.

test_that("contest1D() and contestMD() match lmerTest, with Satterthwaite and Kenward-Roger", {
  f <- fit_lmertest(Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), lmerTest::ham)
  p <- length(fixef(f$ours))
  set.seed(1)
  L <- matrix(rnorm(3 * p), 3, p)
  L[3, ] <- L[1, ] + L[2, ]                     # rank 2
  for (ddf in c("Satterthwaite", "Kenward-Roger")) {
    a <- contest1D(f$ours, L[1, ], ddf = ddf, confint = TRUE)
    b <- lmerTest::contest1D(f$ref, L[1, ], ddf = ddf, confint = TRUE)
    expect_equal(names(a), names(b))
    expect_equal(a$df, b$df, tolerance = TOL_DF, label = ddf)
    expect_equal(a$lower, b$lower, tolerance = 1e-5, label = ddf)
    A <- contestMD(f$ours, L, ddf = ddf)
    B <- lmerTest::contestMD(f$ref, L, ddf = ddf)
    expect_equal(A$NumDF, B$NumDF, label = ddf)
    expect_equal(A$DenDF, B$DenDF, tolerance = TOL_DF, label = ddf)
    expect_equal(A[["F value"]], B[["F value"]], tolerance = TOL_DF, label = ddf)
  }
  expect_equal(contest(f$ours, list(L[1, ], L[2, ]), joint = FALSE)$df,
               lmerTest::contest(f$ref, list(L[1, ], L[2, ]), joint = FALSE)$df, tolerance = TOL_DF)
  cs <- calcSatterth(f$ours, L[1:2, ])
  cr <- lmerTest::calcSatterth(f$ref, L[1:2, ])
  expect_equal(cs$denom, cr$denom, tolerance = TOL_DF)
  expect_equal(cs$Fstat, cr$Fstat, tolerance = TOL_DF)
})

test_that("no fixed effects: empty tables, as lmerTest", {
  m <- lmm(Reaction ~ 0 + (1 | Subject) + (0 + Days | Subject), lme4::sleepstudy)
  expect_equal(nrow(contestMD(m, numeric(0))), 0L)
  expect_equal(nrow(contest1D(m, numeric(0), ddf = "Kenward-Roger")), 0L)
  expect_equal(nrow(coef(summary(m))), 0L)
  expect_equal(nrow(coef(summary(m, ddf = "Kenward-Roger"))), 0L)
  expect_output(print(summary(m)), "No fixed effect coefficients")
})

test_that("ls_means() and difflsmeans() match lmerTest's", {
  f <- fit_lmertest(Informed.liking ~ Product * Information + Gender + (1 | Consumer), lmerTest::ham)
  for (which in list(NULL, "Product", "Product:Information")) {
    a <- ls_means(f$ours, which = which)
    b <- lmerTest::ls_means(f$ref, which = which)
    expect_equal(rownames(a), rownames(b))
    expect_equal(a$Estimate, b$Estimate, tolerance = 1e-6)
    expect_equal(a$df, b$df, tolerance = TOL_DF)
    expect_equal(show_tests(a), lmerTest::show_tests(b), tolerance = 1e-10)
  }
  a <- difflsmeans(f$ours, which = "Product")
  b <- lmerTest::difflsmeans(f$ref, which = "Product")
  expect_equal(rownames(a), rownames(b))
  expect_equal(a[["Pr(>|t|)"]], b[["Pr(>|t|)"]], tolerance = 1e-4)
  expect_equal(as.data.frame(a)$levels, as.data.frame(b)$levels)
  expect_equal(lsmeansLT(f$ours)$Estimate, lmerTest::lsmeansLT(f$ref)$Estimate, tolerance = 1e-6)
  expect_output(print(a), "Least Squares Means table")
})
