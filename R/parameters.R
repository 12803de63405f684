# The fit's parameters, shared by the methods: θ (and any correlation parameters η)
# as the engine reads them, lme4's bounds and start, Λ per term, the parameter count.

# θ, then any correlation parameters (unconstrained): the engine's full parameter vector.
full_theta <- function(object) c(unname(object$theta), object$cor_eta)

npar_lmm <- function(object) length(object$beta) + length(object$theta) + length(object$cor_eta) + 1L

# lme4's bounds on θ: 0 for diagonal elements of Λ, -Inf below the diagonal.
lower_bounds <- function(model) {
  unlist(lapply(model$terms, function(t) {
    k <- ncol(t$Z)
    if (t$diagonal) return(rep(0, k))
    m <- matrix(-Inf, k, k)
    diag(m) <- 0
    m[lower.tri(m, diag = TRUE)]
  }))
}

# θ from lme4's `start`: a numeric vector, or a list with `theta` (and `fixef`,
# which an LMM does not use: β is profiled out).
start_theta <- function(start, ntheta) {
  if (is.list(start)) {
    if (!all(vapply(start, is.numeric, NA))) mixedrs_abort("all elements of start must be numeric")
    bad <- setdiff(names(start), c("theta", "fixef"))
    if (length(bad)) mixedrs_abort(paste("incorrect components in start list:", paste(bad, collapse = ", ")))
    start <- start$theta
    if (is.null(start)) return(NULL)
  }
  if (!is.numeric(start)) mixedrs_abort("'start' must be NULL, a numeric vector or named list of such vectors")
  if (length(start) != ntheta) mixedrs_abort(sprintf("incorrect number of theta components (!=%d)", ntheta))
  if (!all(is.finite(start))) mixedrs_abort("'start' must be finite")
  unname(as.double(start))
}

fit_params <- function(object) {
  list(theta = unname(as.double(object$theta)), beta = unname(as.double(object$beta)),
       sigma = as.double(object$sigma), b = lapply(object$b, function(m) as.double(t(m))))
}

# Each term's Λ at θ, from the engine (θ → Λ is defined there only): the fit's own
# at θ̂, else computed for the θ asked for.
term_lambdas <- function(object, theta = NULL) {
  if (is.null(theta) || identical(unname(as.double(theta)), unname(as.double(object$theta)))) return(object$lambda)
  lam <- call_rust(engine_lambdas_rs, fit_engine(object), as.double(theta))
  Map(function(t, l) matrix(l, ncol(t$Z), ncol(t$Z)), object$model$terms, lam)
}
