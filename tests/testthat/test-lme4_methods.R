# lme4's accessors and generics on lmm fits: getME() with every name, refit(),
# refitML(), the is*() predicates, extractAIC(), family(), bootMer() -- live
# against the same model fitted by lme4 (tight optimizer, so both sit at one optimum).

ss <- lme4::sleepstudy
fits <- function(f, data = ss, REML = TRUE) {
  list(ours = suppressMessages(lmm(f, data, REML = REML)),
       ref = suppressMessages(lme4::lmer(f, data, REML = REML, control = TIGHT_LME4)))
}

test_that("getME() gives lme4's structures for every name", {
  cases <- list(Reaction ~ Days + (Days | Subject),
                Reaction ~ Days + (Days || Subject),
                diameter ~ 1 + (1 | plate) + (1 | sample))
  for (f in cases) {
    data <- if (grepl("diameter", deparse1(f))) lme4::Penicillin else ss
    x <- fits(f, data)
    lab <- deparse1(f)
    num <- function(nm, tol = 1e-4) {
      a <- getME(x$ours, nm)
      b <- lme4::getME(x$ref, nm)
      expect_equal(as.matrix(a), as.matrix(b), tolerance = tol, label = paste(lab, nm), ignore_attr = TRUE)
    }
    for (nm in c("Zt", "Z", "Lambdat", "Lambda", "A", "X", "y", "mu", "RX", "RZX", "b", "u", "theta", "beta",
                 "sigma", "Gp", "Tp", "lower", "offset")) num(nm)
    expect_equal(getME(x$ours, "Lind"), lme4::getME(x$ref, "Lind"), label = paste(lab, "Lind"))
    expect_equal(dimnames(getME(x$ours, "Zt")), dimnames(lme4::getME(x$ref, "Zt")))
    expect_s4_class(getME(x$ours, "Lambdat"), "dgCMatrix")
    expect_s4_class(getME(x$ours, "Zt"), "dgCMatrix")
    for (nm in c("n_rtrms", "n_rfacs", "N", "n", "p", "q", "p_i", "l_i", "q_i", "k", "m_i", "m", "REML", "is_REML")) {
      expect_equal(unname(getME(x$ours, nm)), unname(lme4::getME(x$ref, nm)), label = paste(lab, nm))
    }
    expect_equal(getME(x$ours, "cnms"), lme4::getME(x$ref, "cnms"))
    expect_equal(lapply(getME(x$ours, "flist"), levels), lapply(lme4::getME(x$ref, "flist"), levels))
    expect_equal(attr(getME(x$ours, "flist"), "assign"), attr(lme4::getME(x$ref, "flist"), "assign"))
    expect_equal(names(getME(x$ours, "Ztlist")), names(lme4::getME(x$ref, "Ztlist")))
    expect_equal(lapply(getME(x$ours, "Ztlist"), as.matrix), lapply(lme4::getME(x$ref, "Ztlist"), as.matrix),
                 ignore_attr = TRUE)
    expect_equal(getME(x$ours, "ST"), lme4::getME(x$ref, "ST"), tolerance = 1e-4, ignore_attr = TRUE)
    expect_equal(getME(x$ours, "Tlist"), lme4::getME(x$ref, "Tlist"), tolerance = 1e-4, ignore_attr = TRUE)
    dc <- getME(x$ours, "devcomp")
    dr <- lme4::getME(x$ref, "devcomp")
    expect_equal(dc$dims, dr$dims)
    keep <- c("ldL2", "ldRX2", "wrss", "ussq", "pwrss", "REML", "sigmaML", "sigmaREML")
    expect_equal(dc$cmp[keep], dr$cmp[keep], tolerance = 1e-4)
    L <- getME(x$ours, "L")
    expect_s4_class(L, "CHMfactor")
    expect_equal(Matrix::determinant(L)$modulus, Matrix::determinant(lme4::getME(x$ref, "L"))$modulus, tolerance = 1e-5)
    expect_true(is.function(getME(x$ours, "devfun")))
    expect_length(getME(x$ours, "ALL"), length(getME_names))
    expect_error(getME(x$ours, "nonsense"), class = "mixedrs_input_error")
  }
})

test_that("refit(), refitML(), isREML(), isLMM(), family(), extractAIC() as lme4's", {
  x <- fits(Reaction ~ Days + (Days | Subject))
  y <- simulate(x$ref, seed = 3)[[1]]
  a <- refit(x$ours, y)
  expect_s3_class(a, "lmm")
  # the reference is a fresh lme4 fit to the new response: lme4::refit() from its
  # stored state stops at a criterion 8 units higher on this response
  d <- ss
  d$y <- y
  b <- lme4::lmer(y ~ Days + (Days | Subject), d, control = TIGHT_LME4)
  expect_equal(unname(fixef(a)), unname(lme4::fixef(b)), tolerance = 1e-5)
  expect_equal(mixedrs::REMLcrit(a), lme4::REMLcrit(b), tolerance = 1e-7)
  expect_lte(mixedrs::REMLcrit(a), lme4::REMLcrit(lme4::refit(x$ref, y)))
  ml <- refitML(x$ours)
  expect_false(isREML(ml))
  expect_true(isREML(x$ours))
  expect_equal(deviance(ml), deviance(lme4::refitML(x$ref)), tolerance = 1e-7)
  expect_true(isLMM(x$ours))
  expect_false(isGLMM(x$ours))
  expect_false(isNLMM(x$ours))
  expect_equal(family(x$ours), stats::gaussian())
  expect_equal(extractAIC(x$ours), extractAIC(x$ref), tolerance = 1e-7)
  expect_error(refit(x$ours, y[-1]), "length", class = "mixedrs_input_error")
  expect_error(refit(x$ours, simulate(x$ours, 2)), "lists", class = "mixedrs_input_error")
})

test_that("the generics still reach lme4's methods for lme4 fits, in both load orders", {
  x <- fits(Reaction ~ Days + (Days | Subject))
  expect_equal(mixedrs::getME(x$ref, "theta"), lme4::getME(x$ref, "theta"))
  expect_true(mixedrs::isREML(x$ref))
  expect_s4_class(mixedrs::refit(x$ref, simulate(x$ref, seed = 1)[[1]]), "lmerMod")
  expect_equal(lme4::getME(x$ours, "theta"), getME(x$ours, "theta"))
  expect_true(lme4::isLMM(x$ours))
  expect_error(mixedrs::getME(structure(list(), class = "foo"), "theta"), "no applicable method")
})

test_that("lme4::bootMer() runs on an lmm fit and agrees with bootstrap() in distribution", {
  m <- lmm(Reaction ~ Days + (1 | Subject), ss)
  b <- lme4::bootMer(m, fixef, nsim = 20, seed = 1)
  expect_equal(dim(b$t), c(20L, 2L))
  expect_equal(unname(b$t0), unname(fixef(m)))
  expect_true(all(is.finite(b$t)))
  # the replicates scatter around the estimate by about its standard error
  expect_lt(abs(mean(b$t[, 2]) - fixef(m)[[2]]), 4 * sqrt(vcov(m)[2, 2]))
})
