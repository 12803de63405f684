# The seam between R and the Rust engine: every .Call wrapper, the spec the engine
# reads, and the engine handle of a fit. The fit itself (the start, the optimiser on a
# conditioned copy of badly scaled data, the multistart on tiny data) is one call.

# Hand-written .Call wrappers for the routines registered by the Rust binding
# (rextendr is not available).
engine_new_rs <- function(spec) .Call(wrap__engine_new, spec)
engine_alive_rs <- function(handle) .Call(wrap__engine_alive, handle)
engine_fit_rs <- function(handle, control) .Call(wrap__engine_fit, handle, control)
engine_set_rs <- function(handle, params) .Call(wrap__engine_set, handle, params)
engine_condvar_rs <- function(handle, sigma) .Call(wrap__engine_condvar, handle, sigma)
engine_varpar_rs <- function(handle, params, sigma) .Call(wrap__engine_varpar, handle, params, sigma)
engine_objective_rs <- function(handle, params) .Call(wrap__engine_objective, handle, params)
engine_start_rs <- function(handle) .Call(wrap__engine_start, handle)
engine_lambdas_rs <- function(handle, theta) .Call(wrap__engine_lambdas, handle, theta)
engine_profile_rs <- function(handle, control) .Call(wrap__engine_profile, handle, control)
engine_profile_structure_rs <- function(handle, z, which, control) .Call(wrap__engine_profile_structure, handle, z, which, control)
engine_residual_cov_rs <- function(handle, eta) .Call(wrap__engine_residual_cov, handle, eta)
engine_colour_rs <- function(handle, e) .Call(wrap__engine_colour, handle, e)
engine_bootstrap_rs <- function(handle, params, control) .Call(wrap__engine_bootstrap, handle, params, control)
simulate_rs <- function(spec, params, control) .Call(wrap__simulate_rs, spec, params, control)
glmm_fit_rs <- function(spec, control) .Call(wrap__glmm_fit_rs, spec, control)
glmm_profile_rs <- function(spec, control) .Call(wrap__glmm_profile_rs, spec, control)
glmm_refits_rs <- function(spec, ys, control) .Call(wrap__glmm_refits_rs, spec, ys, control)
sim_workshop_rs <- function(which, params) .Call(wrap__sim_workshop_rs, which, params)
pvalues_rs <- function(kind, stat, df1, df2) .Call(wrap__pvalues_rs, kind, stat, df1, df2)

# Call into Rust and turn its tagged error text ("mixedrs_<kind>_error|message")
# into a classed R condition.
call_rust <- function(fun, ...) {
  tryCatch(fun(...), error = function(e) {
    msg <- conditionMessage(e)
    m <- regmatches(msg, regexec("mixedrs_([a-z_]+)_error\\|(.*)$", msg))[[1]]
    if (length(m) == 3L) mixedrs_abort(m[3L], kind = m[2L])
    mixedrs_abort(paste("the Rust engine failed:", msg), kind = "internal")
  })
}

# The plain list the Rust engine reads. The engine borrows these vectors for as long
# as it lives (the handle keeps them), so nothing n-sized is copied into it.
rust_spec <- function(model, REML) {
  y <- model$y
  if (!is.null(model$offset)) y <- y - model$offset
  list(
    y = y,
    X = as_double_matrix(model$X),
    p = ncol(model$X),
    weights = model$weights,
    REML = isTRUE(REML),
    cor = if (is.null(model$cor)) NULL else model$cor[c("type", "groups", "times", "start", "nugget")],
    var = if (is.null(model$var)) NULL else model$var[c("parts", "start")],
    terms = spec_terms(model)
  )
}

# Each random-effects term as the engine reads it (lmm() and glmm() alike).
spec_terms <- function(model) {
  lapply(model$terms, function(t) list(
    # a factor is already the integer codes the engine reads; no copy
    codes = t$factor,
    nlevels = nlevels(t$factor),
    Z = as_double_matrix(t$Z),
    k = ncol(t$Z),
    diagonal = t$diagonal
  ))
}

# The engine reads a double vector with any attributes; copy only when the storage is not double.
as_double_matrix <- function(m) {
  if (is.double(m)) m else array(as.double(m), dim(m))
}

# A new engine for a model: the blocks of A are formed here, once.
new_engine <- function(model, REML) {
  spec <- rust_spec(model, REML)
  release_temporaries(spec)
  call_rust(engine_new_rs, spec)
}

# Fit a model in a new engine: optimise, or evaluate at `theta` (the parameters
# [θ, η]). The result carries the engine's handle.
engine_fit <- function(model, REML, control, theta = NULL, verbose = 0L) {
  handle <- new_engine(model, REML)
  start <- if (is.null(theta)) control$start else as.double(theta)
  ctl <- engine_control(control, start = start, optimize = is.null(theta) && isTRUE(control$optimize),
                        verbose = as.integer(verbose))
  res <- call_rust(engine_fit_rs, handle, ctl)
  res$handle <- handle
  res
}

# The engine's control list from an lmm_control.
engine_control <- function(control, start = control$start, ...) {
  c(list(max_iter = control$max_iter, max_restarts = control$max_restarts, grad_tol = control$grad_tol,
         boundary_tol = control$boundary_tol, start = start, max_evals = control$max_evals), list(...))
}

# A fit's engine: the one that fitted it, or (after saveRDS/readRDS, or in a fresh
# session, where the handle is NULL) one rebuilt once from what the fit stores and put
# at its parameters.
fit_engine <- function(object) {
  cache <- object$cache
  h <- if (is.environment(cache)) cache$engine else NULL
  if (!is.null(h) && isTRUE(engine_alive_rs(h))) return(h)
  h <- new_engine(object$model, object$REML)
  call_rust(engine_set_rs, h, as.double(full_theta(object)))
  if (is.environment(cache)) cache$engine <- h
  h
}

# The engine allocates its blocks next. On large data a minor collection first frees
# what building the model left behind (model.matrix()'s copies, the grouping factors'
# keys, the conditioning check's sample of rows), which would otherwise stay resident
# beside those blocks: on InstEval (73,421 rows) the fit's peak memory drops by
# ~14 MiB. It costs 1-2 ms, as much as a whole fit of sleepstudy, so only when X, y
# and Z take more than 4 MB.
release_temporaries <- function(spec) {
  columns <- spec$p + 1 + sum(vapply(spec$terms, `[[`, 1L, "k"))
  if (length(spec$y) * columns * 8 > 4e6) invisible(gc(verbose = FALSE, full = FALSE))
}
