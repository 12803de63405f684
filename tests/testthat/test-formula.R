test_that("bars, double bars and nesting are found in lme4's order, as lme4's findbars() finds them", {
  f <- y ~ x + (x | g) + (1 | a/b) + (z || h) + (1 | a/b/c) + (w + f || k)
  p <- parse_mixed_formula(f)
  ours <- vapply(p$bars, bar_text, "")
  ref <- vapply(lme4::findbars(f), deparse1, "")
  expect_equal(ours, ref)
  expect_equal(deparse1(p$fixed), "y ~ x")
  # the stored formula has `||` expanded exactly as lme4 stores it
  expect_equal(p$expanded, lme4::expandDoubleVerts(f), ignore_formula_env = TRUE)
  expect_equal(formula(lmm(Reaction ~ Days + (Days || Subject), lme4::sleepstudy)),
               formula(lme4::lmer(Reaction ~ Days + (Days || Subject), lme4::sleepstudy)), ignore_formula_env = TRUE)
})

test_that("update() removes a term of an expanded (x || g), as in lme4", {
  ss <- lme4::sleepstudy
  m <- lmm(Reaction ~ Days + (Days || Subject), ss)
  r <- suppressMessages(lme4::lmer(Reaction ~ Days + (Days || Subject), ss))
  m1 <- update(m, . ~ . - (0 + Days | Subject))
  r1 <- update(r, . ~ . - (0 + Days | Subject))
  expect_equal(deparse1(formula(m1)), deparse1(formula(r1)))
  expect_equal(fitted(m1), fitted(lmm(Reaction ~ Days + (1 | Subject), ss)))
  expect_equal(mixedrs::REMLcrit(m1), lme4::REMLcrit(r1), tolerance = 1e-7)
})

test_that("fixed part keeps -1 and becomes ~1 when empty", {
  expect_equal(deparse1(parse_mixed_formula(y ~ x - 1 + (1 | g))$fixed), "y ~ x - 1")
  expect_equal(deparse1(parse_mixed_formula(y ~ (1 | g))$fixed), "y ~ 1")
  expect_equal(deparse1(parse_mixed_formula(y ~ x + (1 | g) - 1)$fixed), "y ~ x - 1")
})

test_that("a formula without random effects is an input error", {
  expect_error(parse_mixed_formula(y ~ x), class = "mixedrs_input_error")
  expect_error(parse_mixed_formula(~ x + (1 | g)), class = "mixedrs_input_error")
})
