# as_lmerMod(): an lme4 merMod at mixedrs's parameters, built with lme4's own
# modular steps (lFormula -> mkLmerDevfun -> mkMerMod) so every lme4 tool accepts it.

#' Convert an lmm fit to an lme4 merMod
#'
#' Builds lme4's model structures for the same formula and data, evaluates lme4's
#' deviance function once at the fitted θ, and packages the result with
#' `lme4::mkMerMod()`, so that `getME()`, `summary()`, `lmerTest::as_lmerModLmerTest()`
#' and other merMod tools work on it. No optimisation is run: the estimates are
#' mixedrs's. The data are found as the original `lmm()` call found them.
#' @param m an `lmm` fit without correlated residuals (lme4 cannot represent them).
#' @param data optional data frame, if the original data are no longer reachable.
#' @return an object of class `lmerMod`.
#' @examples
#' if (requireNamespace("lme4", quietly = TRUE)) {
#'   fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#'   mm <- as_lmerMod(fm)
#'   lme4::getME(mm, "theta")
#' }
#' @export
as_lmerMod <- function(m, data = NULL) {
  if (!inherits(m, "lmm")) mixedrs_abort("as_lmerMod(): 'm' must be an lmm fit")
  if (!requireNamespace("lme4", quietly = TRUE)) {
    mixedrs_abort("as_lmerMod() needs the lme4 package", kind = "not_available")
  }
  if (structured_residuals(m)) {
    mixedrs_abort("as_lmerMod(): lme4 cannot represent correlated or heteroscedastic residuals (this fit has a correlation structure or a variance function)",
                  kind = "not_available")
  }
  mc <- m$call
  lf_call <- mc[c(1L, match(c("data", "subset", "weights", "na.action", "offset", "contrasts"), names(mc), 0L))]
  lf_call[[1L]] <- quote(lme4::lFormula)
  lf_call$formula <- m$formula
  lf_call$REML <- m$REML
  env <- environment(m$formula)
  if (is.null(env)) env <- parent.frame()
  if (!is.null(data)) lf_call$data <- data
  lf <- tryCatch(eval(lf_call, env), error = function(e) {
    mixedrs_abort(paste("as_lmerMod(): could not rebuild the model for lme4:", conditionMessage(e),
                        "(pass the data with 'data =')"))
  })
  if (nrow(lf$fr) != nobs(m)) mixedrs_abort("as_lmerMod(): lme4's model frame has a different number of rows")
  theta <- lme4_theta(m, lf$reTrms$cnms)
  devfun <- do.call(lme4::mkLmerDevfun, lf)
  fval <- devfun(theta)
  opt <- list(par = theta, fval = fval, conv = 0L, feval = m$optinfo$evaluations,
              message = "estimates from mixedrs::lmm()")
  attr(opt, "optimizer") <- "mixedrs"
  out_call <- mc
  out_call[[1L]] <- quote(lmer)
  out_call$control <- NULL
  lme4::mkMerMod(environment(devfun), opt, lf$reTrms, fr = lf$fr, mc = out_call)
}

# Our θ in lme4's order: lme4 lists its terms' lower-triangular elements column by
# column; ours are named group.row(.col) just as lme4 names them.
lme4_theta <- function(m, cnms) unname(m$theta[match(lme4_theta_names(m, cnms), names(m$theta))])

# Our θ names in lme4's order of θ.
lme4_theta_names <- function(m, cnms) {
  keys <- unlist(Map(function(g, cn) {
    k <- length(cn)
    out <- character()
    for (j in seq_len(k)) for (i in j:k) {
      out <- c(out, if (i == j) paste(g, cn[i], sep = ".") else paste(g, cn[i], cn[j], sep = "."))
    }
    out
  }, names(cnms), cnms), use.names = FALSE)
  ours <- names(m$theta)
  # a diagonal (x || g) term has no off-diagonal θ; lme4 splits it into 1 x 1 terms
  idx <- match(keys, ours)
  if (anyNA(idx) || anyDuplicated(keys) || length(keys) != length(ours)) {
    mixedrs_abort("as_lmerMod(): the random-effects terms do not map one to one onto lme4's")
  }
  keys
}

#' Convert a glmm fit to an lme4 glmerMod
#'
#' As [as_lmerMod()] for `glmm()` fits: lme4's structures for the same formula,
#' family and data (`glFormula()`, `mkGlmerDevfun()`, and `updateGlmerDevfun()` for
#' `nAGQ >= 1`), its deviance function evaluated once at mixedrs's θ and β, and the
#' Hessian of the deviance over (θ, β) stored where glmer stores it, so that
#' `vcov()` gives the same standard errors. No optimisation is run.
#' @param m a `glmm` fit.
#' @param data optional data frame, if the original data are no longer reachable.
#' @return an object of class `glmerMod`.
#' @examples
#' if (requireNamespace("lme4", quietly = TRUE)) {
#'   gm <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), lme4::cbpp, family = binomial)
#'   lme4::getME(as_glmerMod(gm), "theta")
#' }
#' @export
as_glmerMod <- function(m, data = NULL) {
  if (!inherits(m, "glmm")) mixedrs_abort("as_glmerMod(): 'm' must be a glmm fit")
  if (!requireNamespace("lme4", quietly = TRUE)) mixedrs_abort("as_glmerMod() needs the lme4 package", kind = "not_available")
  mc <- m$call
  gl_call <- mc[c(1L, match(c("data", "subset", "weights", "na.action", "offset"), names(mc), 0L))]
  gl_call[[1L]] <- quote(lme4::glFormula)
  gl_call$formula <- m$formula
  gl_call$family <- m$family
  env <- environment(m$formula)
  if (is.null(env)) env <- parent.frame()
  if (!is.null(data)) gl_call$data <- data
  glmod <- tryCatch(eval(gl_call, env), error = function(e) {
    mixedrs_abort(paste("as_glmerMod(): could not rebuild the model for lme4:", conditionMessage(e), "(pass the data with 'data =')"))
  })
  if (nrow(glmod$fr) != nobs(m)) mixedrs_abort("as_glmerMod(): lme4's model frame has a different number of rows")
  theta <- lme4_theta(m, glmod$reTrms$cnms)
  # PIRLS to our tolerance (glmer's default 1e-7 moves the deviance by ~1e-4);
  # called from a frame inside lme4's namespace: the deviance function's environment
  # takes the caller's frame as parent and looks up lme4's internals (GHrule) there
  devfun <- eval(quote(do.call(mkGlmerDevfun, args)),
                 list2env(list(args = c(glmod, list(nAGQ = 0L, control = lme4::glmerControl(tolPwrss = 1e-13)))),
                          parent = asNamespace("lme4")))
  fval <- devfun(theta)
  par <- theta
  if (m$nAGQ > 0L) {
    devfun <- lme4::updateGlmerDevfun(devfun, glmod$reTrms, nAGQ = m$nAGQ)
    par <- c(theta, unname(m$beta))
    fval <- devfun(par)
  }
  opt <- list(par = par, fval = fval, conv = 0L, feval = m$optinfo$evaluations, message = "estimates from mixedrs::glmm()")
  attr(opt, "optimizer") <- "mixedrs"
  if (!is.null(m$hessian)) {
    # ours is over [θ, β] in our θ order; lme4's θ order may differ
    ours <- names(m$theta)
    idx <- c(match(lme4_theta_names(m, glmod$reTrms$cnms), ours), length(ours) + seq_along(m$beta))
    attr(opt, "derivs") <- list(gradient = rep(0, length(idx)), Hessian = m$hessian[idx, idx])
  }
  out_call <- mc
  out_call[[1L]] <- quote(glmer)
  out_call$control <- NULL
  lme4::mkMerMod(environment(devfun), opt, glmod$reTrms, fr = glmod$fr, mc = out_call)
}
