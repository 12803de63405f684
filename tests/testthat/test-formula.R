test_that("bars, double bars and nesting are found", {
  p <- parse_mixed_formula(y ~ x + (x | g) + (1 | a/b) + (z || h))
  expect_length(p$bars, 4)
  groups <- vapply(p$bars, function(b) deparse1(b$group), "")
  expect_equal(groups, c("g", "a", "b:a", "h"))
  expect_equal(vapply(p$bars, `[[`, TRUE, "double"), c(FALSE, FALSE, FALSE, TRUE))
  expect_equal(deparse1(p$fixed), "y ~ x")
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
