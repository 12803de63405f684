# predict(): data-dependent bases keep their coefficients on new data, partial
# re.form, na.action, live against lme4.

ss <- lme4::sleepstudy

test_that("poly(), ns(), bs() and scale() are evaluated with the fit's coefficients on new data (as lme4)", {
  forms <- list(Reaction ~ poly(Days, 2) + (1 | Subject),
                Reaction ~ splines::ns(Days, 3) + (1 | Subject),
                Reaction ~ splines::bs(Days, 3) + (1 | Subject),
                Reaction ~ scale(Days) + (Days | Subject))
  nd <- ss[c(5, 20, 97, 150), ]
  for (f in forms) {
    m <- lmm(f, ss)
    r <- lme4::lmer(f, ss)
    # rows of the original data predict their fitted values
    expect_equal(predict(m, nd), fitted(m)[rownames(nd)], tolerance = 1e-10, label = deparse1(f))
    expect_equal(unname(predict(m, nd)), unname(predict(r, nd)), tolerance = 1e-6, label = deparse1(f))
    expect_equal(unname(predict(m, nd, re.form = NA)), unname(predict(r, nd, re.form = NA)), tolerance = 1e-6)
  }
})

test_that("a basis inside a random-effects term also keeps its coefficients", {
  f <- Reaction ~ Days + (poly(Days, 2) | Subject)
  m <- lmm(f, ss)
  r <- suppressWarnings(lme4::lmer(f, ss, control = lme4::lmerControl(check.conv.singular = "ignore")))
  nd <- ss[c(3, 44, 171), ]
  expect_equal(predict(m, nd), fitted(m)[rownames(nd)], tolerance = 1e-10)
  expect_equal(unname(predict(m, nd)), unname(predict(r, nd)), tolerance = 1e-4)
})

test_that("re.form selects terms, as lme4's predict() does", {
  f <- Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)
  m <- lmm(f, ss)
  r <- lme4::lmer(f, ss, control = TIGHT_LME4)
  for (rf in list(~ (1 | Subject), ~ (0 + Days | Subject), NA, NULL)) {
    expect_equal(unname(predict(m, re.form = rf)), unname(predict(r, re.form = rf)), tolerance = 1e-5)
    expect_equal(unname(predict(m, ss[1:30, ], re.form = rf)), unname(predict(r, ss[1:30, ], re.form = rf)), tolerance = 1e-5)
  }
  expect_equal(unname(predict(m, random.only = TRUE)), unname(predict(r, random.only = TRUE)), tolerance = 1e-5)
  expect_error(predict(m, re.form = ~ (1 | nonsense)), class = "mixedrs_input_error")
})

test_that("na.exclude pads fitted, residuals, predict, hatvalues and simulate with NA, as lme4", {
  d <- ss
  d$Reaction[c(3, 50, 51)] <- NA
  m <- lmm(Reaction ~ Days + (Days | Subject), d, na.action = na.exclude)
  r <- lme4::lmer(Reaction ~ Days + (Days | Subject), d, na.action = na.exclude)
  for (fun in list(fitted, residuals, predict, hatvalues)) {
    a <- fun(m)
    b <- fun(r)
    expect_length(a, nrow(d))
    expect_equal(which(is.na(a)), which(is.na(b)))
    expect_equal(names(a), names(b))
    expect_equal(unname(a), unname(b), tolerance = 1e-5)
  }
  s <- simulate(m, 2, seed = 1)
  expect_equal(nrow(s), nrow(d))
  expect_true(all(is.na(s[c(3, 50, 51), ])))
  expect_s3_class(attr(s, "na.action"), "exclude")
  # na.omit fit: predict(na.action = na.exclude) pads, as lme4
  m2 <- lmm(Reaction ~ Days + (Days | Subject), d)
  expect_length(predict(m2), 177)
  expect_length(predict(m2, na.action = na.exclude), 180)
  expect_s3_class(attr(simulate(m2), "na.action"), "omit")
})

test_that("predict() errors are classed", {
  m <- lmm(Reaction ~ Days + (Days | Subject), ss)
  expect_error(predict(m, data.frame(Days = 1, Subject = "nope")), "new levels", class = "mixedrs_input_error")
  expect_error(predict(m, newparams = list(theta = 1)), class = "mixedrs_not_available_error")
  expect_error(predict(m, terms = "Days"), class = "mixedrs_not_available_error")
})
