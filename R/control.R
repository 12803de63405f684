# Control settings: lmm_control(), and lme4's lmerControl() objects mapped onto it.
# The checks use lme4's names and actions ("ignore", "message", "warning", "stop").

check_actions <- c("ignore", "message", "warning", "stop")

# lme4's checks with lme4's defaults.
default_checks <- list(
  check.nobs.vs.rankZ = "ignore", check.nobs.vs.nlev = "stop", check.nlev.gtreq.5 = "ignore",
  check.nlev.gtr.1 = "stop", check.nobs.vs.nRE = "stop", check.rankX = "message+drop.cols",
  check.scaleX = "warning", check.formula.LHS = "stop", check.response.not.const = "stop",
  check.conv.grad = "warning", check.conv.singular = "message", check.conv.hess = "warning"
)
rank_actions <- c("message+drop.cols", "silent.drop.cols", "warn+drop.cols", "stop.deficient", "ignore")
scale_actions <- c("warning", "stop", "silent.rescale", "message+rescale", "warn+rescale", "ignore")

#' Control settings for lmm()
#'
#' Settings of the optimiser, and lme4's input and convergence checks under lme4's
#' names. `lmm()` also accepts lme4's `lmerControl()` objects and maps them onto
#' these settings (see Details).
#'
#' The checks take lme4's actions: `"ignore"`, `"message"`, `"warning"` or `"stop"`
#' (and for `check.rankX` and `check.scaleX` lme4's own options). Of an
#' `lmerControl()` object, `lmm()` uses the checks, `calc.derivs`, `boundary.tol`,
#' the convergence checks' actions and tolerances, an evaluation limit in
#' `optCtrl` (`maxfun`, `maxeval` or `maxit`), and `optimizer = NULL` (no
#' optimisation: the fit is evaluated at the start). Any other optimizer is not
#' used, and `lmm()` says so with a message: the fit is always made by BFGS with
#' exact gradients.
#' @param max_iter BFGS iterations per restart.
#' @param max_restarts restarts from the best point after a stalled line search.
#' @param grad_tol gradient tolerance, relative to 1 + |criterion|.
#' @param boundary_tol diagonal elements of Λ smaller than this are tried at exactly 0.
#' @param check_nlev,check_zdims logical shortcuts for `check.nobs.vs.nlev` and
#'   `check.nobs.vs.nRE` ("stop" when TRUE, "ignore" when FALSE).
#' @param start optional starting θ.
#' @param optimize FALSE evaluates the fit at the start without optimising.
#' @param calc.derivs check convergence by the gradient at the optimum.
#' @param ... lme4's check settings by name, e.g. `check.nlev.gtreq.5 = "warning"`,
#'   `check.conv.singular = "ignore"`, `check.rankX = "stop.deficient"`.
#' @examples
#' lmm_control()
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy,
#'           control = lmm_control(grad_tol = 1e-9))
#' lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy,
#'     control = lmm_control(check.nlev.gtreq.5 = "warning"))
#' @export
lmm_control <- function(max_iter = 500L, max_restarts = 4L, grad_tol = 1e-7, boundary_tol = 1e-4,
                        check_nlev = TRUE, check_zdims = TRUE, start = NULL, optimize = TRUE,
                        calc.derivs = TRUE, ...) {
  # the defaults (the common case, built at every lmm() call) are made once
  if (nargs() == 0L && is.null(getOption("lmerControl")) && !is.null(control_cache$default)) return(control_cache$default)
  num_ok <- function(x) is.numeric(x) && length(x) == 1L && is.finite(x) && x >= 0
  if (!num_ok(max_iter) || !num_ok(max_restarts) || !num_ok(grad_tol) || !num_ok(boundary_tol)) {
    mixedrs_abort("lmm_control(): max_iter, max_restarts, grad_tol and boundary_tol must be single non-negative numbers")
  }
  checks <- default_checks
  # lme4's global defaults, options(lmerControl = list(check.* = ...)), for the checks
  # not given here
  opts <- getOption("lmerControl")
  if (length(opts)) {
    ok <- intersect(names(opts), names(default_checks))
    ignored <- setdiff(names(opts), ok)
    if (length(ignored)) {
      warning("some options in 'getOption(\"lmerControl\")' ignored : ", paste(ignored, collapse = ", "), call. = FALSE)
    }
    for (nm in ok) checks[[nm]] <- if (is.list(opts[[nm]])) opts[[nm]]$action else opts[[nm]]
  }
  if (!missing(check_nlev)) checks$check.nobs.vs.nlev <- if (isTRUE(check_nlev)) "stop" else "ignore"
  if (!missing(check_zdims)) checks$check.nobs.vs.nRE <- if (isTRUE(check_zdims)) "stop" else "ignore"
  dots <- list(...)
  if (length(dots)) {
    bad <- setdiff(names(dots), names(default_checks))
    if (is.null(names(dots)) || length(bad)) {
      mixedrs_abort(sprintf("lmm_control(): unknown setting%s %s", if (length(bad) > 1) "s" else "",
                            paste(sQuote(bad, FALSE), collapse = ", ")))
    }
    checks[names(dots)] <- dots
  }
  checks <- validate_checks(checks)
  out <- structure(list(max_iter = as.integer(max_iter), max_restarts = as.integer(max_restarts),
                 grad_tol = as.double(grad_tol), boundary_tol = as.double(boundary_tol),
                 start = if (is.null(start)) NULL else as.double(start),
                 optimize = !isFALSE(optimize), calc_derivs = !isFALSE(calc.derivs), max_evals = NULL,
                 checks = checks, conv_tol = list(grad = 2e-3, singular = 1e-4, hess = 1e-6)),
            class = "lmm_control")
  if (nargs() == 0L && is.null(getOption("lmerControl"))) control_cache$default <- out
  out
}

control_cache <- new.env(parent = emptyenv())

validate_checks <- function(checks) {
  for (nm in names(checks)) {
    allowed <- switch(nm, check.rankX = rank_actions, check.scaleX = scale_actions,
                      check.nobs.vs.rankZ = c(check_actions, "warningSmall", "stopSmall"), check_actions)
    v <- checks[[nm]]
    if (!is.character(v) || length(v) != 1L || !v %in% allowed) {
      mixedrs_abort(sprintf("invalid control level %s in %s: valid options are {%s}", sQuote(format(v), FALSE), nm,
                            paste(sQuote(allowed, FALSE), collapse = ",")))
    }
  }
  checks
}

#' @export
print.lmm_control <- function(x, ...) {
  cat("lmm control settings\n")
  utils::str(unclass(x[c("max_iter", "max_restarts", "grad_tol", "boundary_tol", "start", "optimize", "calc_derivs")]),
             give.head = FALSE, no.list = TRUE)
  cat("checks:\n")
  utils::str(x$checks, give.head = FALSE, no.list = TRUE)
  invisible(x)
}

# lmm_control from what a user passes as `control`: an lmm_control, lme4's
# lmerControl(), or (deprecated in lme4 too) a plain list of either's settings.
as_lmm_control <- function(control) {
  if (is.null(control)) return(lmm_control())
  if (inherits(control, "lmm_control")) return(control)
  if (inherits(control, "merControl")) return(from_lmer_control(control))
  if (!is.list(control)) mixedrs_abort("'control' must come from lmm_control() or lme4::lmerControl()")
  warning("passing control as list is deprecated: please use lmerControl() or lmm_control() instead", call. = FALSE)
  ours <- names(formals(lmm_control))
  if (length(control) == 0L || all(names(control) %in% c(ours, names(default_checks)))) {
    return(do.call(lmm_control, control))
  }
  if (!requireNamespace("lme4", quietly = TRUE)) {
    mixedrs_abort(sprintf("unknown control settings: %s", paste(setdiff(names(control), ours), collapse = ", ")))
  }
  from_lmer_control(tryCatch(do.call(lme4::lmerControl, control), error = function(e) {
    mixedrs_abort(paste("invalid 'control' list:", conditionMessage(e)))
  }))
}

# lme4's lmerControl() mapped onto lmm_control(): the checks and their actions,
# calc.derivs, the convergence tolerances, boundary.tol when changed from lme4's
# default, an evaluation limit, and optimizer = NULL. Other optimizers are named in a
# message, since the fit is always made by BFGS.
from_lmer_control <- function(ctl) {
  ours <- lmm_control()
  cc <- ctl$checkControl
  for (nm in intersect(names(cc), names(ours$checks))) if (!is.null(cc[[nm]])) ours$checks[[nm]] <- cc[[nm]]
  conv <- ctl$checkConv
  if (!is.null(conv)) {
    if (!is.null(g <- conv$check.conv.grad)) {
      ours$checks$check.conv.grad <- g$action
      if (!is.null(g$tol)) ours$conv_tol$grad <- g$tol
    }
    if (!is.null(s <- conv$check.conv.singular)) {
      ours$checks$check.conv.singular <- s$action
      if (!is.null(s$tol)) ours$conv_tol$singular <- s$tol
    }
    if (!is.null(h <- conv$check.conv.hess)) {
      ours$checks$check.conv.hess <- h$action
      if (!is.null(h$tol)) ours$conv_tol$hess <- h$tol
    }
  }
  ours$checks <- validate_checks(ours$checks)
  if (!is.null(ctl$calc.derivs)) ours$calc_derivs <- isTRUE(ctl$calc.derivs)
  if (is.numeric(ctl$boundary.tol) && length(ctl$boundary.tol) == 1L && ctl$boundary.tol != 1e-5) {
    ours$boundary_tol <- ctl$boundary.tol
  }
  opt_ctrl <- ctl$optCtrl
  limit <- opt_ctrl[intersect(c("maxfun", "maxeval", "maxit"), names(opt_ctrl))]
  if (length(limit) && is.numeric(limit[[1L]]) && limit[[1L]] > 0) ours$max_evals <- as.integer(limit[[1L]])
  opt <- ctl$optimizer
  if (is.null(opt)) {
    ours$optimize <- FALSE
  } else if (is.character(opt)) {
    opt <- opt[length(opt)]
    if (identical(opt, "none")) mixedrs_abort("deprecated use of optimizer=='none'; use NULL instead")
    found <- exists(opt, mode = "function") ||
      (requireNamespace("lme4", quietly = TRUE) && exists(opt, envir = asNamespace("lme4"), mode = "function"))
    if (!found) mixedrs_abort(sprintf("couldn't find optimizer function %s", opt))
    if (opt != "nloptwrap") message(sprintf("lmm() fits by BFGS with exact gradients; optimizer '%s' is not used", opt))
  } else if (is.function(opt)) {
    message("lmm() fits by BFGS with exact gradients; the optimizer function given is not used")
  }
  ours
}

# Act on a check's outcome as lme4 does: nothing, a message, a warning or an error.
act_on <- function(action, text, class = "mixedrs_check") {
  if (is.null(action) || action == "ignore") return(invisible(FALSE))
  switch(sub("Small$", "", sub("[+].*$", "", action)),
    message = message(text),
    warning = , warn = warning(structure(class = c(paste0(class, "_warning"), "warning", "condition"),
                                         list(message = text, call = NULL))),
    stop = mixedrs_abort(text),
    invisible(FALSE))
  invisible(TRUE)
}
