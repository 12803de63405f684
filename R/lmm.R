#' Fit a linear mixed-effects model
#'
#' Fits `formula` by REML or maximum likelihood with the profiled criterion of
#' Bates et al. (2015), in Rust. The formula and the arguments are lme4's
#' `lmer()`'s, so a script can switch by replacing `lmer(` with `lmm(`.
#'
#' @param formula a two-sided formula with random-effects terms such as `(1 | g)`,
#'   `(x | g)`, `(x || g)`, `(1 | a/b)`; a string is accepted.
#' @param data a data frame (a matrix or list is converted).
#' @param REML fit by REML (default) or maximum likelihood.
#' @param control [lmm_control()] settings, or lme4's `lmerControl()` (see
#'   [lmm_control()] for what of it is used).
#' @param start starting θ: a numeric vector, or a list with element `theta` (as lme4).
#' @param verbose print the criterion at every evaluation when positive.
#' @param subset,weights,na.action,offset as in [stats::lm()]; with
#'   `na.action = na.exclude`, fitted values, residuals and predictions are padded
#'   with `NA` where rows were dropped. `weights` may also be one of nlme's variance
#'   functions (`varIdent(form = ~ 1 | g)`, `varPower(form = ~ x)`, `varExp()`,
#'   `varConstPower()`, `varFixed()`, `varComb()` of them): residual standard
#'   deviations that differ by stratum or change with a covariate, as in `nlme::lme()`.
#' @param contrasts an optional list of contrasts for factors in the fixed part.
#' @param devFunOnly return the profiled criterion (REML criterion or ML deviance)
#'   as a function of θ instead of fitting.
#' @param correlation `NULL` (independent residuals) or a correlation structure:
#'   nlme's `corAR1()`, `corCAR1()`, `corCompSymm()`, or [corRandomWalk()]. Its
#'   groups must be nested in every random-effects grouping factor; without a group
#'   in its `form`, the grouping factor with the most levels is used, as nlme uses
#'   the innermost.
#' @return an object of class `"lmm"`, or a function with `devFunOnly = TRUE`.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' fm
#' dev <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy, devFunOnly = TRUE)
#' dev(c(1, 0, 1))
#' @export
lmm <- function(formula, data = NULL, REML = TRUE, control = lmm_control(), start = NULL, verbose = 0L,
                subset, weights, na.action, offset, contrasts = NULL, devFunOnly = FALSE, correlation = NULL) {
  mc <- match.call()
  data <- tryCatch(data, error = function(e) mixedrs_abort(paste0("bad 'data': ", conditionMessage(e))))
  control <- as_lmm_control(control)
  if (!is.logical(REML) || length(REML) != 1L || is.na(REML)) mixedrs_abort("'REML' must be TRUE or FALSE")
  if (missing(formula)) mixedrs_abort("'formula' is missing")
  if (is.character(formula)) formula <- stats::as.formula(formula, env = parent.frame())
  if (!inherits(formula, "formula")) mixedrs_abort("'formula' must be a formula or a string that parses to one")
  if (!is.null(data)) {
    if (is.matrix(data)) data <- as.data.frame(data)
    if (!is.data.frame(data) && !is.list(data) && !is.environment(data)) {
      mixedrs_abort("'data' must be a data.frame, a list or a matrix")
    }
  }
  mf_call <- mc[c(1L, match(c("subset", "weights", "na.action", "offset"), names(mc), 0L))]
  mf_call$data <- data
  # the default na.action made explicit and the arguments in one order, so that
  # equivalent fits are equal objects
  if (is.null(mf_call$na.action)) mf_call$na.action <- as.name(getOption("na.action", "na.omit"))
  args <- as.list(mf_call)[-1L]
  mf_call <- as.call(c(as.list(mf_call)[1L], args[intersect(c("data", "subset", "weights", "na.action", "offset"), names(args))]))
  check_correlation(correlation)
  # nlme's variance functions come as weights = varIdent(...) and so on
  variance <- variance_function(mf_call$weights, data, parent.frame())
  if (!is.null(variance)) {
    check_variance(variance)
    mf_call$weights <- NULL
  }
  if (uses_fitted(variance)) {
    if (isTRUE(devFunOnly)) mixedrs_abort("devFunOnly = TRUE with a variance function of the fitted values is not available", kind = "not_available")
    return(fit_on_fitted(formula, mf_call, parent.frame(), contrasts, control, correlation, variance, REML, start, verbose, mc))
  }
  model <- build_model(formula, mf_call, parent.frame(), contrasts, control, correlation, variance)
  if (!is.null(start)) control$start <- start_theta(start, length(lower_bounds(model)))
  if (isTRUE(devFunOnly)) return(make_devfun(model, REML, control))
  res <- engine_fit(model, REML, control, verbose = verbose)
  # as lme4, the call holds the formula with (x || g) expanded, so update() edits it
  mc$formula <- model$formula
  # the start is where this fit began, not a setting for refits
  control$start <- NULL
  fit <- package_fit(model, res, REML, mc, control)
  convergence_checks(fit)
  fit
}

