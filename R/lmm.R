#' Control settings for lmm()
#'
#' @param max_iter BFGS iterations per restart.
#' @param max_restarts restarts from the best point after a stalled line search.
#' @param grad_tol gradient tolerance, relative to 1 + |criterion|.
#' @param boundary_tol diagonal elements of Λ smaller than this are tried at exactly 0.
#' @param check_nlev stop when a grouping factor has as many levels as observations (lme4's check.nobs.vs.nlev).
#' @param check_zdims stop when a term has at least as many random effects as observations (check.nobs.vs.nRE).
#' @param start optional starting θ.
#' @export
lmm_control <- function(max_iter = 500L, max_restarts = 4L, grad_tol = 1e-7, boundary_tol = 1e-4,
                        check_nlev = TRUE, check_zdims = TRUE, start = NULL) {
  num_ok <- function(x) is.numeric(x) && length(x) == 1L && is.finite(x) && x >= 0
  if (!num_ok(max_iter) || !num_ok(max_restarts) || !num_ok(grad_tol) || !num_ok(boundary_tol)) {
    mixedrs_abort("lmm_control(): max_iter, max_restarts, grad_tol and boundary_tol must be single non-negative numbers")
  }
  structure(list(max_iter = as.integer(max_iter), max_restarts = as.integer(max_restarts),
                 grad_tol = as.double(grad_tol), boundary_tol = as.double(boundary_tol),
                 check_nlev = isTRUE(check_nlev), check_zdims = isTRUE(check_zdims),
                 start = if (is.null(start)) NULL else as.double(start)),
            class = "lmm_control")
}

# Run the engine: optimise, or evaluate at `theta` (then condvar can be requested).
engine_fit <- function(model, REML, control, theta = NULL, condvar = FALSE) {
  ctl <- list(max_iter = control$max_iter, max_restarts = control$max_restarts,
              grad_tol = control$grad_tol, boundary_tol = control$boundary_tol,
              start = if (is.null(theta)) control$start else as.double(theta),
              optimize = is.null(theta), condvar = condvar)
  call_rust(lmm_fit_rs, rust_spec(model, REML), ctl)
}

#' Fit a linear mixed-effects model
#'
#' Fits `formula` by REML or maximum likelihood with the profiled criterion of
#' Bates et al. (2015), in Rust. The formula uses lme4's syntax.
#'
#' @param formula a two-sided formula with random-effects terms such as `(1 | g)`,
#'   `(x | g)`, `(x || g)`, `(1 | a/b)`; a string is accepted.
#' @param data a data frame (a matrix or list is converted).
#' @param REML fit by REML (default) or maximum likelihood.
#' @param subset,weights,na.action,offset as in [stats::lm()].
#' @param contrasts an optional list of contrasts for factors in the fixed part.
#' @param correlation `NULL` (independent residuals) or a correlation structure:
#'   nlme's `corAR1()`, `corCAR1()`, `corCompSymm()`, or [corRandomWalk()]. Its
#'   groups must be nested in every random-effects grouping factor; without a group
#'   in its `form`, the grouping factor with the most levels is used, as nlme uses
#'   the innermost.
#' @param control [lmm_control()] settings.
#' @return an object of class `"lmm"`.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' fm
#' @export
lmm <- function(formula, data = NULL, REML = TRUE, subset, weights, na.action, offset,
                contrasts = NULL, correlation = NULL, control = lmm_control()) {
  mc <- match.call()
  if (!inherits(control, "lmm_control")) mixedrs_abort("'control' must come from lmm_control()")
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
  check_correlation(correlation)
  model <- build_model(formula, mf_call, parent.frame(), contrasts, control, correlation)
  res <- engine_fit(model, REML, control)
  fit <- package_fit(model, res, REML, mc, control)
  if (!fit$optinfo$converged) {
    warning(structure(class = c("mixedrs_convergence_warning", "warning", "condition"),
                      list(message = paste("Model failed to converge:", fit$optinfo$message), call = NULL)))
  }
  if (isSingular(fit)) message("boundary (singular) fit: see help('isSingular')")
  fit
}

# θ names as lme4 gives them ("g.(Intercept)", "g.x.(Intercept)"), from the
# engine's layout of θ: term, row and column of each element in that term's Λ.
theta_names <- function(terms, layout) {
  vapply(seq_len(nrow(layout)), function(i) {
    t <- terms[[layout$term[i]]]
    r <- layout$row[i]
    c <- layout$col[i]
    if (r == c) paste(t$group, t$cnms[r], sep = ".") else paste(t$group, t$cnms[r], t$cnms[c], sep = ".")
  }, "")
}

# Give the engine's plain list its names, shapes and class.
package_fit <- function(model, res, REML, call, control) {
  X <- model$X
  p <- ncol(X)
  b <- Map(function(t, bt) {
    matrix(bt, nrow = nlevels(t$factor), byrow = TRUE, dimnames = list(levels(t$factor), t$cnms))
  }, model$terms, res$b)
  layout <- data.frame(term = res$theta_term, row = res$theta_row, col = res$theta_col)
  fitted <- res$fitted + if (is.null(model$offset)) 0 else model$offset
  names(fitted) <- rownames(model$frame)
  structure(list(
    call = call,
    formula = model$formula,
    REML = REML,
    model = model,
    theta = stats::setNames(res$theta, theta_names(model$terms, layout)),
    theta_layout = layout,
    lower = ifelse(layout$row == layout$col, 0, -Inf),
    beta = stats::setNames(res$beta, colnames(X)),
    sigma = res$sigma,
    b = b,
    u = res$u,
    vcov = matrix(res$vcov, p, p, dimnames = list(colnames(X), colnames(X))),
    devcomp = c(ldL2 = res$ldL2, ldRX2 = res$ldRX2, pwrss = res$pwrss, criterion = res$criterion, ldPsi = res$ldPsi),
    fitted = fitted,
    cache = new.env(parent = emptyenv()),
    correlation = package_correlation(model$cor, res$cor_phi),
    cor_eta = if (is.null(model$cor)) numeric(0) else res$cor_eta,
    optinfo = list(evaluations = res$evaluations, converged = res$converged,
                   message = res$message, grad_norm = res$grad_norm),
    control = control
  ), class = "lmm")
}
