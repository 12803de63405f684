# Profile and Wald intervals against lme4::confint, live.

test_that("profile intervals match lme4 (sleepstudy, both name styles)", {
  f <- fit_both(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  a <- suppressMessages(confint(f$ours, oldNames = FALSE))
  b <- suppressMessages(confint(f$ref, oldNames = FALSE))
  expect_equal(dimnames(a), dimnames(b))
  expect_equal(a, b, tolerance = TOL_CI)
  a2 <- suppressMessages(confint(f$ours))
  # lme4's old names (.sig01, ..., .sigma); its Wald table lists every row cheaply
  expect_equal(rownames(a2), rownames(confint(f$ref, method = "Wald")))
  expect_equal(unname(a2), unname(a))
})

# lme4's default profile interpolates between steps of delta.cutoff = 1/8 with splines,
# which moves its ends by up to ~1e-3 on small data; mixedrs solves for the ends, so
# the reference here is lme4's profile at delta.cutoff = 1/40.
test_that("profile intervals match lme4 on the workshop examples and other levels", {
  cases <- list(list(bp ~ sex + (1 | subject), sim_bp()),
                list(sat ~ sex + (1 | school/student), sim_sat_nested()),
                list(Reaction ~ Days + (Days || Subject), lme4::sleepstudy))
  for (cs in cases) {
    f <- fit_both(cs[[1]], cs[[2]])
    a <- suppressMessages(confint(f$ours, level = 0.9))
    b <- suppressWarnings(suppressMessages(confint(f$ref, level = 0.9, delta.cutoff = 1 / 40)))
    expect_equal(a, b, tolerance = TOL_CI, label = deparse1(cs[[1]]))
    a <- suppressMessages(confint(f$ours, oldNames = FALSE))
    b <- suppressWarnings(suppressMessages(confint(f$ref, oldNames = FALSE, delta.cutoff = 1 / 40)))
    expect_equal(dimnames(a), dimnames(b))
    expect_equal(a, b, tolerance = TOL_CI, label = deparse1(cs[[1]]))
  }
})

test_that("Wald intervals and parm selection follow lme4", {
  f <- fit_both(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_equal(confint(f$ours, method = "Wald"), confint(f$ref, method = "Wald"), tolerance = TOL_CI)
  a <- suppressMessages(confint(f$ours, parm = "beta_"))
  b <- suppressMessages(confint(f$ref, parm = "beta_"))
  expect_equal(a, b, tolerance = TOL_CI)
  a <- suppressMessages(confint(f$ours, parm = c(".sig01", ".sigma")))
  expect_equal(rownames(a), c(".sig01", ".sigma"))
  expect_equal(dim(confint(f$ours, method = "boot", nsim = 20, seed = 1, quiet = TRUE)), c(6L, 2L))
  expect_error(confint(f$ours, parm = "nope"), class = "mixedrs_input_error")
  expect_error(confint(f$ours, level = 2), class = "mixedrs_input_error")
})
