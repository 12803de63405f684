sleepstudy <- lme4::sleepstudy

test_that("each bad input gets a classed, named error", {
  expect_error(lmm(Reaction ~ Days, sleepstudy), "No random effects", class = "mixedrs_input_error")
  d <- sleepstudy
  d$one <- factor("a")
  expect_error(lmm(Reaction ~ Days + (1 | one), d), "> 1 sampled level", class = "mixedrs_input_error")
  d$id <- factor(seq_len(nrow(d)))
  expect_error(lmm(Reaction ~ Days + (1 | id), d), "problems: id", class = "mixedrs_input_error")
  d$r2 <- as.character(d$Reaction)
  expect_error(lmm(r2 ~ Days + (1 | Subject), d), "must be numeric", class = "mixedrs_input_error")
  d$bad <- d$Reaction
  d$bad[1] <- Inf
  expect_error(lmm(bad ~ Days + (1 | Subject), d), "infinite", class = "mixedrs_input_error")
  d$const <- 1
  expect_error(lmm(const ~ Days + (1 | Subject), d), "constant", class = "mixedrs_input_error")
  d$allna <- NA_real_
  expect_error(lmm(allna ~ Days + (1 | Subject), d), "0 \\(non-NA\\) cases", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (1 | Subject), sleepstudy, subset = Days > 100),
               "0 \\(non-NA\\) cases", class = "mixedrs_input_error")
  d$w <- -1
  expect_error(lmm(Reaction ~ Days + (1 | Subject), d, weights = w), "negative weights", class = "mixedrs_input_error")
  d$w <- NaN
  expect_error(lmm(Reaction ~ Days + (1 | Subject), d, weights = w, na.action = na.pass), "finite",
               class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (Days | Subject), sleepstudy[sleepstudy$Days < 2, ]),
               "number of random effects", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (1 | nosuchvar), sleepstudy), class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (1 | Subject), "not data"), "data", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (1 | Subject), sleepstudy, REML = NA), "REML", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (1 | Subject), sleepstudy, control = 5), "lmm_control", class = "mixedrs_input_error")
  expect_error(suppressWarnings(lmm(Reaction ~ Days + (1 | Subject), sleepstudy, control = list(max_iter = -1))),
               "non-negative", class = "mixedrs_input_error")
  expect_error(lmm(Reaction ~ Days + (1 | Subject), sleepstudy, control = lmm_control(check.rankX = "maybe")),
               "invalid control level", class = "mixedrs_input_error")
  expect_error(lmm_control(nonsense = 1), "unknown setting", class = "mixedrs_input_error")
})

test_that("a data matrix is converted to a data frame", {
  mat <- as.matrix(data.frame(y = sleepstudy$Reaction, x = sleepstudy$Days,
                              g = as.integer(sleepstudy$Subject)))
  m <- lmm(y ~ x + (1 | g), mat)
  ref <- lme4::lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
  expect_equal(unname(fixef(m)), unname(lme4::fixef(ref)), tolerance = TOL_FIXEF)
})

test_that("errors from the engine arrive classed, with % intact and no panic text", {
  spec <- list(y = c(1, 2), X = c(1, 1), p = 1L, weights = NULL, REML = TRUE,
               terms = list(list(codes = c(1L, 5L), nlevels = 2L, Z = c(1, 1), k = 1L, diagonal = FALSE)))
  e <- tryCatch(mixedrs:::call_rust(mixedrs:::engine_new_rs, spec), error = identity)
  expect_s3_class(e, "mixedrs_input_error")
  expect_match(conditionMessage(e), "out of range")
  expect_false(grepl("panick", conditionMessage(e)))
})
