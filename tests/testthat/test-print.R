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
