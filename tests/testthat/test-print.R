# Printed output has lme4's layout: compare line by line with lme4's, after
# replacing the class tag and allowing the last printed digit of estimates to differ.
normalise <- function(lines) {
  lines <- sub("['lmerMod']", "['lmm']", lines, fixed = TRUE)
  gsub("[0-9]", "#", lines)
}

test_that("print and summary have lme4's lines", {
  f <- fit_both(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_equal(normalise(capture.output(print(f$ours))), normalise(capture.output(print(f$ref))))
  expect_equal(normalise(capture.output(summary(f$ours, ddf = "lme4"))), normalise(capture.output(summary(f$ref))))
  expect_equal(normalise(capture.output(print(VarCorr(f$ours)))), normalise(capture.output(print(lme4::VarCorr(f$ref)))))
  g <- fit_both(Reaction ~ Days + (1 | Subject), lme4::sleepstudy, REML = FALSE)
  expect_equal(normalise(capture.output(summary(g$ours, ddf = "lme4"))), normalise(capture.output(summary(g$ref))))
})

test_that("summary has lmerTest's lines (Satterthwaite df and p-values)", {
  # lmerTest wraps its long title before the class tag; compare from "Formula:" on
  from_formula <- function(lines) lines[seq(grep("^Formula:", lines)[1L], length(lines))]
  for (reml in c(TRUE, FALSE)) {
    ours <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, REML = reml)
    ref <- lmerTest::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, REML = reml)
    a <- capture.output(summary(ours))
    b <- capture.output(summary(ref))
    expect_equal(normalise(from_formula(a)), normalise(from_formula(b)))
    title <- if (reml) "Linear mixed model fit by REML. t-tests use Satterthwaite's method"
             else "Linear mixed model fit by maximum likelihood . t-tests use Satterthwaite's method"
    expect_equal(a[1], paste(title, "['lmm']"))
    expect_equal(gsub("\\s+", " ", paste(b[1:2], collapse = "")), gsub("\\s+", " ", paste0(title, " [lmerModLmerTest]")))
  }
})

test_that("the header shows Weights, Offset and Subset lines and lme4's correlation rules", {
  d <- lme4::sleepstudy
  d$w <- rep(c(1, 2), 90)
  m <- lmm(Reaction ~ Days + (Days | Subject), d, weights = w, subset = (Days != 3))
  out <- capture.output(summary(m))
  expect_true(any(grepl("^Weights: w", out)))
  expect_true(any(grepl("^ Subset: \\(Days != 3\\)", out)))
  expect_true(any(grepl("Correlation of Fixed Effects", out)))
  expect_false(any(grepl("Correlation of Fixed Effects", capture.output(summary(m, correlation = FALSE)))))
  expect_message(capture.output(print(summary(m, correlation = FALSE), correlation = TRUE)), "could have been required")
  expect_warning(summary(m, nonsense = 1), "additional arguments ignored")
  # more than 12 fixed effects: not shown by default, with lme4's message
  d$f <- factor(rep(1:14, length.out = nrow(d)))
  m2 <- lmm(Reaction ~ f + (1 | Subject), d)
  expect_message(capture.output(summary(m2)), "Correlation matrix not shown by default")
})

test_that("print() of a fit with correlated residuals shows nlme's correlation block", {
  m <- lmm(distance ~ age + (1 | Subject), nlme::Orthodont, correlation = nlme::corAR1())
  out <- capture.output(print(m))
  expect_true(any(grepl("Correlation Structure: AR\\(1\\)", out)))
  expect_true(any(grepl("Phi", out)))
})
