# Inference on the fixed effects, as lmerTest does it: t and F tests with
# Satterthwaite's denominator df. The Rust engine supplies the Hessian of the
# deviance over the variance parameters (θ, σ) and the Jacobian of Var(β̂);
# everything here is small p×p algebra.

ddf_methods <- c("Satterthwaite", "Kenward-Roger", "lme4")

# Asymptotic covariance of (θ, σ), 2 H⁻¹, and ∂Var(β̂)/∂(θ, σ); computed once per fit.
varpar_info <- function(object) {
  cache <- object$cache
  if (is.environment(cache) && !is.null(cache$varpar)) return(cache$varpar)
  # Satterthwaite's df do not depend on how the variance parameters are expressed; the
  # engine takes the derivatives where they are well scaled (σ in units of σ̂, so the
  # eigenvalue check below means the same for y in any unit; badly scaled X or y
  # conditioned) and maps the Jacobian back to (θ, σ).
  theta <- as.double(full_theta(object))
  sigma <- as.double(object$sigma)
  res <- call_rust(engine_varpar_rs, fit_engine(object), theta, sigma)
  k1 <- length(theta) + 1L
  h <- matrix(res$hessian, k1, k1)
  eig <- eigen(h, symmetric = TRUE)
  tol <- 1e-8
  neg <- eig$values < -tol
  zero <- abs(eig$values) <= tol
  plural <- function(n) if (n > 1) "eigenvalues" else "eigenvalue"
  if (any(neg)) {
    warning(sprintf("Model failed to converge with %d negative %s: %s", sum(neg), plural(sum(neg)),
                    paste(sprintf("%1.1e", eig$values[neg]), collapse = " ")), call. = FALSE)
  }
  if (any(zero)) {
    warning(sprintf("Model may not have converged with %d %s close to zero: %s", sum(zero), plural(sum(zero)),
                    paste(sprintf("%1.1e", eig$values[zero]), collapse = " ")), call. = FALSE)
  }
  pos <- eig$values > tol
  v <- eig$vectors[, pos, drop = FALSE]
  h_inv <- v %*% (t(v) / eig$values[pos])
  # back to (θ, σ): dσ/du = σ̂
  ds <- c(rep(1, k1 - 1L), sigma)
  p <- length(object$beta)
  jacobian <- lapply(res$jacobian, function(J) matrix(J, p, p))
  info <- list(vcov_varpar = 2 * h_inv * outer(ds, ds), jacobian = jacobian, vcov = unname(object$vcov))
  if (is.environment(cache)) cache$varpar <- info
  info
}

qform <- function(x, A) sum(x * (A %*% x))

check_ddf <- function(ddf, object) {
  ddf <- match.arg(ddf, ddf_methods)
  if (ddf == "Kenward-Roger") {
    if (!object$REML) mixedrs_abort("Kenward-Roger's method is only available for REML model fits")
  }
  ddf
}

# One t test of L β = rhs.
contest_1d <- function(object, L, rhs = 0, ddf = "Satterthwaite", confint = FALSE, level = 0.95) {
  L <- as.double(L)
  beta <- unname(object$beta)
  if (length(L) != length(beta)) mixedrs_abort(sprintf("contrast has length %d, but the model has %d fixed effects", length(L), length(beta)))
  est <- sum(L * beta)
  if (ddf == "Kenward-Roger") {
    kr <- kr_info(object)
    var_con <- qform(L, kr$vcov_adj)
    df <- kr_ddf_1d(kr, L)
  } else {
    info <- varpar_info(object)
    var_con <- qform(L, info$vcov)
    grad <- vapply(info$jacobian, function(J) qform(L, J), 0)
    df <- 2 * var_con^2 / qform(grad, info$vcov_varpar)
  }
  se <- sqrt(var_con)
  tval <- (est - rhs) / se
  out <- data.frame(Estimate = est, `Std. Error` = se, df = df, `t value` = tval, check.names = FALSE)
  if (confint) {
    fac <- stats::qt((1 - level) / 2, df = df, lower.tail = FALSE)
    out$lower <- est - fac * se
    out$upper <- est + fac * se
  }
  out[["Pr(>|t|)"]] <- p_value("t", tval, df)
  out
}

# p-values from the Rust core (statrs): "t" two-sided, "F" and "chisq" upper tails.
# Arguments are recycled; a missing statistic or df gives NA, as pt() and pf() do.
p_value <- function(kind, stat, df1, df2 = NA_real_) {
  n <- max(length(stat), length(df1), length(df2))
  if (n == 0L || length(stat) == 0L) return(numeric(0))
  recycle <- function(x) rep_len(as.double(x), n)
  stat <- recycle(stat)
  p <- call_rust(pvalues_rs, kind, stat, recycle(df1), recycle(df2))$p
  p[is.nan(p) | is.na(stat)] <- NA_real_
  p
}

# lmerTest's F statistic's denominator df from the eigen-contrasts' df.
fstat_ddf <- function(nu, tol = 1e-8) {
  if (length(nu) == 1L) return(nu)
  if (all(abs(diff(nu)) < tol)) return(mean(nu))
  if (any(nu <= 2)) return(2)
  E <- sum(nu / (nu - 2))
  2 * E / (E - length(nu))
}

f_table <- function(Fvalue, ndf, ddf, sigma, Fscale = 1) {
  ms <- Fvalue * sigma^2
  Fv <- Fvalue * Fscale
  data.frame(`Sum Sq` = ms * ndf, `Mean Sq` = ms, NumDF = ndf, DenDF = ddf, `F value` = Fv,
             `Pr(>F)` = p_value("F", Fv, ndf, ddf), check.names = FALSE)
}

# Joint F test of L β = rhs (L has one row per hypothesis), lmerTest's contestMD.
contest_md <- function(object, L, rhs = 0, ddf = "Satterthwaite", eps = sqrt(.Machine$double.eps)) {
  if (!is.matrix(L)) L <- matrix(L, nrow = 1L)
  storage.mode(L) <- "double"
  if (ncol(L) != length(object$beta)) mixedrs_abort(sprintf("contrast matrix has %d columns, but the model has %d fixed effects", ncol(L), length(object$beta)))
  if (length(rhs) == 1L) rhs <- rep(rhs, nrow(L))
  if (length(rhs) != nrow(L)) mixedrs_abort("'rhs' must have one value per row of L")
  if (nrow(L) == 0L || ncol(L) == 0L) return(f_table(numeric(0), numeric(0), numeric(0), numeric(0)))
  if (ddf == "Kenward-Roger") return(kr_ftest(object, L, rhs))
  if (nrow(L) == 1L) {
    r <- contest_1d(object, L[1L, ], rhs = rhs, ddf = ddf)
    return(f_table(r[["t value"]]^2, 1L, r$df, object$sigma))
  }
  beta <- unname(object$beta)
  if (!all(rhs == 0)) beta <- beta - drop(ginv(L) %*% rhs)
  info <- varpar_info(object)
  eig <- eigen(L %*% info$vcov %*% t(L), symmetric = TRUE)
  d <- eig$values
  q <- sum(d > max(eps * d[1L], 0))
  if (q < nrow(L) && !all(rhs == 0)) warning("Contrast is rank deficient and test may be affected")
  if (q <= 0L) return(f_table(numeric(0), numeric(0), numeric(0), numeric(0)))
  PtL <- crossprod(eig$vectors, L)[seq_len(q), , drop = FALSE]
  if (q == 1L) {
    r <- contest_1d(object, PtL[1L, ], rhs = rhs[1L], ddf = ddf)
    return(f_table(r[["t value"]]^2, 1L, r$df, object$sigma))
  }
  Fvalue <- sum(drop(PtL %*% beta)^2 / d[seq_len(q)]) / q
  nu <- vapply(seq_len(q), function(m) {
    grad <- vapply(info$jacobian, function(J) qform(PtL[m, ], J), 0)
    2 * d[m]^2 / qform(grad, info$vcov_varpar)
  }, 0)
  f_table(Fvalue, q, fstat_ddf(nu), object$sigma)
}

# Moore–Penrose inverse.
ginv <- function(X, tol = sqrt(.Machine$double.eps)) {
  s <- svd(X)
  pos <- s$d > max(tol * s$d[1L], 0)
  if (!any(pos)) return(array(0, dim(X)[2:1]))
  s$v[, pos, drop = FALSE] %*% (t(s$u[, pos, drop = FALSE]) / s$d[pos])
}

# The coefficient table of summary(): one t test per fixed effect.
coef_table <- function(object, ddf) {
  p <- length(object$beta)
  if (p == 0L) {
    cols <- if (ddf == "lme4") c("Estimate", "Std. Error", "t value") else c("Estimate", "Std. Error", "df", "t value", "Pr(>|t|)")
    return(matrix(numeric(0), 0L, length(cols), dimnames = list(NULL, cols)))
  }
  if (ddf == "lme4") {
    se <- sqrt(diag(object$vcov))
    return(cbind(Estimate = object$beta, `Std. Error` = se, `t value` = object$beta / se))
  }
  tab <- do.call(rbind, lapply(seq_len(p), function(i) {
    contest_1d(object, as.double(seq_len(p) == i), ddf = ddf)
  }))
  tab <- as.matrix(tab)
  rownames(tab) <- names(object$beta)
  tab
}
