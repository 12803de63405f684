# model_frame(): the same frame as model.frame(drop.unused.levels = TRUE) with the
# caller's na.action, whether or not the data have NAs.

test_that("model_frame() gives model.frame()'s frame, with and without NAs", {
  model_frame <- getFromNamespace("model_frame", "mixedrs")
  d <- lme4::sleepstudy
  set.seed(1)
  d$f <- factor(sample(c("a", "b", "c"), nrow(d), TRUE), levels = c("a", "b", "c", "unused"))
  d$o <- factor(d$f, ordered = TRUE)
  d$g <- factor(d$Subject, levels = c(levels(d$Subject), "unused"))
  d$w <- runif(nrow(d))
  d_na <- d
  d_na$Reaction[3] <- NA
  d_na$f[10] <- NA
  for (data in list(d, d_na)) {
    for (na in list(NULL, quote(na.omit), quote(na.exclude))) {
      call <- quote(stats::model.frame(Reaction ~ Days + f + o + g, data = data, weights = w))
      call$na.action <- na
      ref <- eval(as.call(c(as.list(call), drop.unused.levels = TRUE)))
      ours <- model_frame(call, environment())
      expect_identical(ours, ref)
      expect_identical(levels(ours$g), levels(d$Subject))
    }
  }
  call <- quote(stats::model.frame(Reaction ~ Days, data = d_na, na.action = na.fail))
  expect_error(model_frame(call, environment()), class = "mixedrs_input_error")
})

test_that("fits on data with NAs and unused levels match fits on the cleaned data", {
  d <- lme4::sleepstudy
  d$Subject <- factor(d$Subject, levels = c(levels(d$Subject), "unused"))
  d$Reaction[c(5, 50)] <- NA
  a <- lmm(Reaction ~ Days + (Days | Subject), d)
  b <- lmm(Reaction ~ Days + (Days | Subject), droplevels(d[!is.na(d$Reaction), ]))
  expect_equal(fixef(a), fixef(b), tolerance = 1e-10)
  expect_equal(nobs(a), 178L)
  expect_equal(ngrps(a), c(Subject = 18))
})
