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
  lf <- lme4_parts(m, quote(lme4::lFormula), list(REML = m$REML), data, "as_lmerMod", parent.frame())
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

# lme4's model structures (lFormula() or glFormula(), `builder`) for a fit's formula
# and the data arguments of its call (data, subset, weights, na.action, offset), found
# as the original call found them, or `data` when given; the contrasts the fit used
# (evaluated, so no variable of the caller's needs to be found again).
lme4_parts <- function(m, builder, extra, data, who, caller) {
  mc <- m$call
  call <- mc[c(1L, match(c("data", "subset", "weights", "na.action", "offset"), names(mc), 0L))]
  call[[1L]] <- builder
  call$formula <- m$formula
  call$contrasts <- m$model$contrasts
  for (nm in names(extra)) call[[nm]] <- extra[[nm]]
  env <- environment(m$formula)
  if (is.null(env)) env <- caller
  if (!is.null(data)) call$data <- data
  parts <- tryCatch(eval(call, env), error = function(e) {
    mixedrs_abort(paste0(who, "(): could not rebuild the model for lme4: ", conditionMessage(e), " (pass the data with 'data =')"))
  })
  if (nrow(parts$fr) != nobs(m)) mixedrs_abort(paste0(who, "(): lme4's model frame has a different number of rows"))
  parts
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
  glmod <- lme4_parts(m, quote(lme4::glFormula), list(family = m$family), data, "as_glmerMod", parent.frame())
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
