# The seam between R and the Rust engine: every .Call wrapper, the spec the engine
# reads, the bridge that turns the engine's tagged errors into classed conditions,
# and the fit driver (conditioning of badly scaled data, multistart on tiny data).

# Hand-written .Call wrappers for the routines registered by the Rust binding
# (rextendr is not available). Each takes and returns plain lists.
lmm_fit_rs <- function(spec, control) .Call(wrap__lmm_fit_rs, spec, control)
lmm_varpar_rs <- function(spec, theta, sigma) .Call(wrap__lmm_varpar_rs, spec, theta, sigma)
lmm_profile_rs <- function(spec, control) .Call(wrap__lmm_profile_rs, spec, control)
lmm_simulate_rs <- function(spec, params, control) .Call(wrap__lmm_simulate_rs, spec, params, control)
lmm_bootstrap_rs <- function(spec, params, control) .Call(wrap__lmm_bootstrap_rs, spec, params, control)
sim_workshop_rs <- function(which, params) .Call(wrap__sim_workshop_rs, which, params)
pvalues_rs <- function(kind, stat, df1, df2) .Call(wrap__pvalues_rs, kind, stat, df1, df2)

# Call into Rust and turn its tagged error text ("mixedrs_<kind>_error|message")
# into a classed R condition.
call_rust <- function(fun, ...) {
  tryCatch(fun(...), error = function(e) {
    msg <- conditionMessage(e)
    m <- regmatches(msg, regexec("mixedrs_([a-z]+)_error\\|(.*)$", msg))[[1]]
    if (length(m) == 3L) mixedrs_abort(m[3L], kind = m[2L])
    mixedrs_abort(paste("the Rust engine failed:", msg), kind = "internal")
  })
}

# The plain list the Rust engine reads.
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
    terms = lapply(model$terms, function(t) list(
      # a factor is already the integer codes the engine reads; no copy
      codes = t$factor,
      nlevels = nlevels(t$factor),
      Z = as_double_matrix(t$Z),
      k = ncol(t$Z),
      diagonal = t$diagonal
    ))
  )
}

# The engine reads a double vector with any attributes; copy only when the storage is not double.
as_double_matrix <- function(m) {
  if (is.double(m)) m else array(as.double(m), dim(m))
}

# Run the engine: optimise, or evaluate at `theta` (then condvar can be requested).
engine_fit <- function(model, REML, control, theta = NULL, condvar = FALSE, verbose = 0L) {
  if (is.null(theta) && !isTRUE(control$optimize)) {
    # lme4's optimizer = NULL: the fit at the start, lme4's own when none is given
    theta <- if (is.null(control$start)) initial_theta(model) else control$start
  }
  ctl <- engine_control(control, start = if (is.null(theta)) control$start else as.double(theta),
                        optimize = is.null(theta), condvar = condvar, verbose = as.integer(verbose))
  spec <- rust_spec(model, REML)
  # a start given by the user is in the data's units, so it is used on the data as given
  conditioned <- is.null(theta) && is.null(control$start) && ill_conditioned(spec)
  if (conditioned) {
    # θ̂ does not change when y is replaced by (y − Xγ)/s, X by X S⁻¹ and a term's
    # columns by a linear map of them (β is profiled out; the covariance family is
    # the same), so optimise on a well-conditioned copy, then evaluate at θ̂ on a
    # copy with only X and y conditioned (Z as given, so θ keeps its meaning) and
    # map the results back.
    cond <- conditioned_spec(spec)
    release_temporaries(spec)
    first <- fit_from_starts(cond$spec, ctl)
    theta <- unconditioned_theta(first, cond$z_transforms)
    ctl$start <- c(theta, if (is.null(first$cor_eta)) numeric(0) else first$cor_eta)
    ctl$optimize <- FALSE
    fspec <- cond$spec
    fspec$terms <- spec$terms
    res <- unconditioned_result(call_rust(lmm_fit_rs, fspec, ctl), cond, spec)
    res[c("evaluations", "gradients", "converged", "message", "grad_norm")] <- first[c("evaluations", "gradients", "converged", "message", "grad_norm")]
    return(res)
  }
  release_temporaries(spec)
  if (is.null(theta)) fit_from_starts(spec, ctl) else call_rust(lmm_fit_rs, spec, ctl)
}

# The engine's control list from an lmm_control.
engine_control <- function(control, start = control$start, ...) {
  c(list(max_iter = control$max_iter, max_restarts = control$max_restarts, grad_tol = control$grad_tol,
         boundary_tol = control$boundary_tol, start = start, max_evals = control$max_evals), list(...))
}

# lme4's starting θ: 1 on the diagonal of every Λ, 0 below it; for a model of random
# intercepts only, the square roots of the between-group variance ratios of y, as
# lme4 (1.1-31) starts them.
initial_theta <- function(model) {
  scalar <- vapply(model$terms, function(t) ncol(t$Z) == 1L && identical(t$cnms, "(Intercept)"), TRUE)
  if (all(scalar)) {
    y <- model$y
    v <- vapply(model$terms, function(t) stats::var(stats::ave(y, t$factor)), 0)
    ve <- stats::var(y) - sum(v)
    if (!is.na(ve) && ve > 0) return(sqrt(v / ve))
  }
  unlist(lapply(model$terms, function(t) {
    k <- ncol(t$Z)
    if (t$diagonal) return(rep(1, k))
    m <- diag(1, k)
    m[lower.tri(m, diag = TRUE)]
  }))
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

# On tiny data (a few rows per group) the criterion often has several local minima,
# and BFGS from lme4's start (diagonal of Λ 1, the rest 0) can end in the higher one.
# Such fits take about a millisecond, so up to 100 rows the engine also starts from
# diagonals 0.1, 3 and 30 and keeps the lowest criterion. Not for correlated fits, or
# when the user gave a start.
multistart_max_rows <- 100L

fit_from_starts <- function(spec, ctl) {
  best <- call_rust(lmm_fit_rs, spec, ctl)
  if (!is.null(ctl$start) || !is.null(spec$cor) || length(spec$y) > multistart_max_rows ||
      length(best$theta) == 0L) {
    return(best)
  }
  evaluations <- best$evaluations
  gradients <- best$gradients
  diagonal <- best$theta_row == best$theta_col
  for (value in c(0.1, 3, 30)) {
    ctl$start <- ifelse(diagonal, value, 0)
    alt <- tryCatch(call_rust(lmm_fit_rs, spec, ctl), mixedrs_numerical_error = function(e) NULL,
                    mixedrs_convergence_error = function(e) NULL)
    if (is.null(alt)) next
    evaluations <- evaluations + alt$evaluations
    gradients <- gradients + alt$gradients
    if (alt$criterion < best$criterion - 1e-10 * abs(best$criterion)) best <- alt
  }
  best$evaluations <- evaluations
  best$gradients <- gradients
  best
}

# Whether X or y are scaled badly enough to cost the optimiser accuracy: columns of X
# nearly collinear (e.g. a predictor far from 0 beside the intercept), or a response
# whose spread is tiny or huge, or small beside its mean.
ill_conditioned <- function(spec) {
  # a heuristic, so on large data an evenly spaced sample of rows is enough
  n <- length(spec$y)
  rows <- if (n > 20000L) unique(as.integer(round(seq(1, n, length.out = 20000L)))) else seq_len(n)
  # those rows of an n x k matrix (or column-major vector), without copying it whole
  pick <- function(v, k) {
    if (is.matrix(v)) return(v[rows, , drop = FALSE])
    vapply(seq_len(k) - 1, function(j) v[rows + j * n], numeric(length(rows)))
  }
  y <- spec$y[rows]
  sy <- stats::sd(y)
  if (!is.finite(sy) || sy == 0) return(FALSE)
  if (sy < 1e-2 || sy > 1e2 || abs(mean(y)) > 1e2 * sy) return(TRUE)
  # a column's scale alone matters for Z (θ must absorb it) but hardly for X (β is
  # profiled out exactly; rare factor levels give indicator columns of small norm)
  bad_columns <- function(M, scale_limit) {
    if (ncol(M) == 0L) return(FALSE)
    ns <- sqrt(colMeans(M^2))
    if (any(ns == 0)) return(FALSE)
    if (any(ns < 1 / scale_limit | ns > scale_limit)) return(TRUE)
    if (ncol(M) < 2L) return(FALSE)
    ev <- eigen(crossprod(M) / outer(ns, ns), symmetric = TRUE, only.values = TRUE)$values
    min(ev) <= 0 || max(ev) / min(ev) > 1e6
  }
  if (spec$p >= 1L && bad_columns(pick(spec$X, spec$p), 1e3)) return(TRUE)
  any(vapply(spec$terms, function(t) bad_columns(pick(t$Z, t$k), 10), TRUE))
}

# X and y of a spec conditioned: X orthonormalised (X = X* Sx), y replaced by its residual
# from the OLS fit scaled to unit size (y = X β_ols + s y*). θ keeps its meaning (Z is as
# given), β and σ map back through Sx, β_ols and s.
condition_xy <- function(spec) {
  n <- length(spec$y)
  y <- spec$y
  w <- if (is.null(spec$weights)) rep(1, n) else spec$weights
  beta_ols <- numeric(spec$p)
  Sx <- diag(1, spec$p)
  if (spec$p > 0L) {
    X <- matrix(spec$X, ncol = spec$p)
    q <- qr(X * sqrt(w))
    if (q$rank == spec$p) {
      beta_ols <- qr.coef(q, y * sqrt(w))
      y <- y - drop(X %*% beta_ols)
      Sx <- qr.R(q)[, order(q$pivot), drop = FALSE] / sqrt(n)
      spec$X <- X %*% solve(Sx)
    }
  }
  s <- sqrt(sum(w * y^2) / n)
  if (!is.finite(s) || s == 0) s <- 1
  spec$y <- y / s
  list(spec = spec, Sx = Sx, beta_ols = beta_ols, s = s)
}

# The whole spec conditioned for the optimiser: X and y as condition_xy() does, and each
# term's Z columns orthonormalised or scaled (`z_transforms` maps θ back).
conditioned_spec <- function(spec) {
  cond <- condition_xy(spec)
  spec <- cond$spec
  n <- length(spec$y)
  # Z: a linear change of a term's columns is a reparametrisation of its covariance
  # (full terms: Z = Z* S with S upper triangular; diagonal terms: per-column scales)
  tr <- vector("list", length(spec$terms))
  for (i in seq_along(spec$terms)) {
    t <- spec$terms[[i]]
    Z <- matrix(t$Z, ncol = t$k)
    if (t$k > 1L && !t$diagonal) {
      q <- qr(Z)
      if (q$rank < t$k) next
      S <- qr.R(q)[, order(q$pivot), drop = FALSE] / sqrt(n)
      spec$terms[[i]]$Z <- Z %*% solve(S)
      tr[[i]] <- list(type = "full", S = S)
    } else {
      sc <- sqrt(colMeans(Z^2))
      if (any(sc == 0)) next
      spec$terms[[i]]$Z <- sweep(Z, 2, sc, "/")
      tr[[i]] <- list(type = "scale", scale = sc)
    }
  }
  c(cond[c("Sx", "beta_ols", "s")], list(spec = spec, z_transforms = tr))
}

# Results of the evaluation on the X- and y-conditioned copy, in the data's units:
# y = Xβ_ols + s(X S⁻¹ β* + Z b* + e*), so β = β_ols + s S⁻¹β*, b = s b*, σ = s σ*.
unconditioned_result <- function(res, cond, spec) {
  s <- cond$s
  p <- spec$p
  n <- length(spec$y)
  if (p > 0L) {
    Si <- solve(cond$Sx)
    res$beta <- cond$beta_ols + s * drop(Si %*% res$beta)
    res$vcov <- as.double(s^2 * Si %*% matrix(res$vcov, p, p) %*% t(Si))
    res$ldRX2 <- res$ldRX2 + 2 * sum(log(abs(diag(cond$Sx))))
    res$fitted <- drop(matrix(spec$X, ncol = p) %*% cond$beta_ols) + s * res$fitted
  } else {
    res$fitted <- s * res$fitted
  }
  res$sigma <- s * res$sigma
  res$b <- lapply(res$b, `*`, s)
  res$u <- lapply(res$u, `*`, s)
  if (!is.null(res$condvar)) res$condvar <- lapply(res$condvar, `*`, s^2)
  res$pwrss <- s^2 * res$pwrss
  ldw <- if (is.null(spec$weights)) 0 else sum(log(spec$weights))
  ldpsi <- if (is.null(res$ldPsi)) 0 else res$ldPsi
  res$criterion <- if (isTRUE(spec$REML)) {
    res$ldL2 + res$ldRX2 - ldw + ldpsi + (n - p) * (1 + log(2 * pi * res$pwrss / (n - p)))
  } else {
    res$ldL2 - ldw + ldpsi + n * (1 + log(2 * pi * res$pwrss / n))
  }
  res
}

# θ of the original model from θ* of the conditioned one (see conditioned_spec()).
unconditioned_theta <- function(res, transforms) {
  theta <- res$theta
  if (is.null(transforms)) return(theta)
  for (i in seq_along(transforms)) {
    tr <- transforms[[i]]
    if (is.null(tr)) next
    here <- res$theta_term == i
    rows <- res$theta_row[here]
    cols <- res$theta_col[here]
    k <- max(rows)
    if (tr$type == "scale") {
      theta[here] <- theta[here] / tr$scale[rows]
      next
    }
    lam <- term_lambda(list(term = res$theta_term, row = res$theta_row, col = res$theta_col), theta, i, k)
    Si <- solve(tr$S)
    C <- Si %*% tcrossprod(lam) %*% t(Si)
    theta[here] <- semidefinite_chol(C)[cbind(rows, cols)]
  }
  theta
}

# Lower Cholesky factor that tolerates a semidefinite matrix (zero pivots give zero columns).
semidefinite_chol <- function(C) {
  k <- nrow(C)
  L <- matrix(0, k, k)
  for (j in seq_len(k)) {
    d <- C[j, j] - sum(L[j, seq_len(j - 1L)]^2)
    L[j, j] <- if (d > 1e-14 * max(abs(diag(C)))) sqrt(d) else 0
    if (j < k) for (i in (j + 1L):k) {
      L[i, j] <- if (L[j, j] > 0) (C[i, j] - sum(L[i, seq_len(j - 1L)] * L[j, seq_len(j - 1L)])) / L[j, j] else 0
    }
  }
  L
}
