# Kenward–Roger: the small-sample adjusted Var(β̂) and denominator df, in the
# formulation pbkrtest uses (Halekoh & Højsgaard 2014). Var(y) = Σ is written as
# Σ_r γ_r G_r with G_r = ∂Σ/∂γ_r over the covariance elements γ (each term's lower
# triangle, then σ²): for fits with independent residuals Σ is linear in γ. A residual
# structure adds its parameters η: Σ = ZΛΛᵀZᵀσ² + σ²R(η), with ∂Σ/∂η_k = σ²∂R/∂η_k by
# central differences of the engine's R. Kenward & Roger's term in the second
# derivatives of Σ is left out (SAS's DDFM=KR(FIRSTORDER)), as pbkrtest leaves it out:
# without it the adjustment does not depend on how the structure is parameterised, and
# it equals pbkrtest's whenever Σ is linear in some parameterisation. This is dense
# n×n algebra, like pbkrtest's, meant for the small data sets where KR matters.

kr_info <- function(object) {
  cache <- object$cache
  if (is.environment(cache) && !is.null(cache$kr)) return(cache$kr)
  if (!object$REML) mixedrs_abort("Kenward-Roger's method is only available for REML model fits")
  if (!is.null(object$model$weights)) mixedrs_abort("Kenward-Roger's method is not available for weighted fits", kind = "not_available")
  n <- nobs(object)
  if (n > 5000) mixedrs_abort(sprintf("Kenward-Roger's method needs dense %d x %d matrices; use ddf = \"Satterthwaite\"", n, n), kind = "not_available")
  X <- unname(object$model$X)
  G <- list()
  gamma <- numeric(0)
  for (ti in seq_along(object$model$terms)) {
    t <- object$model$terms[[ti]]
    here <- object$theta_layout$term == ti
    vc <- object$sigma^2 * tcrossprod(object$lambda[[ti]])
    # A[[a]]: n × levels, column l holds Z[, a] on the rows of level l
    ind <- outer(as.integer(t$factor), seq_len(nlevels(t$factor)), "==")
    A <- lapply(seq_len(ncol(t$Z)), function(a) ind * t$Z[, a])
    lay <- object$theta_layout[here, ]
    for (r in seq_len(nrow(lay))) {
      i <- lay$row[r]
      j <- lay$col[r]
      G[[length(G) + 1L]] <- if (i == j) tcrossprod(A[[i]]) else tcrossprod(A[[i]], A[[j]]) + tcrossprod(A[[j]], A[[i]])
      gamma <- c(gamma, vc[i, j])
    }
  }
  structured <- structured_residuals(object)
  R <- if (structured) residual_cov(object, object$cor_eta) else diag(n)
  G[[length(G) + 1L]] <- R
  gamma <- c(gamma, object$sigma^2)
  if (structured) {
    for (k in seq_along(object$cor_eta)) {
      h <- 1e-4 * max(1, abs(object$cor_eta[k]))
      step <- replace(numeric(length(object$cor_eta)), k, h)
      G[[length(G) + 1L]] <- object$sigma^2 * (residual_cov(object, object$cor_eta + step) -
                                                  residual_cov(object, object$cor_eta - step)) / (2 * h)
    }
  }
  Sigma <- Reduce(`+`, Map(`*`, gamma, G[seq_along(gamma)]))  # the η entries are derivatives only
  Sinv <- chol2inv(chol(Sigma))
  Phi <- unname(object$vcov)
  ng <- length(G)
  TT <- Sinv %*% X
  HH <- lapply(G, function(g) g %*% Sinv)
  OO <- lapply(HH, function(h) h %*% X)
  PP <- lapply(OO, function(o) -crossprod(o, TT))
  PP <- lapply(PP, function(p) (p + t(p)) / 2)
  QQ <- matrix(list(), ng, ng)
  IE2 <- matrix(0, ng, ng)
  for (r in seq_len(ng)) {
    for (s in r:ng) {
      QQ[[r, s]] <- crossprod(OO[[r]], Sinv %*% OO[[s]])
      IE2[r, s] <- IE2[s, r] <- sum(t(HH[[r]]) * HH[[s]]) - 2 * sum(Phi * QQ[[r, s]]) +
        sum((Phi %*% PP[[r]]) * (PP[[s]] %*% Phi))
    }
  }
  W <- if (min(abs(eigen(IE2, symmetric = TRUE, only.values = TRUE)$values)) > 1e-10) 2 * solve(IE2) else 2 * ginv(IE2)
  U <- matrix(0, ncol(X), ncol(X))
  for (r in seq_len(ng)) {
    for (s in r:ng) {
      term <- W[r, s] * (QQ[[r, s]] - PP[[r]] %*% Phi %*% PP[[s]])
      U <- U + if (r == s) term else term + t(term)
    }
  }
  info <- list(vcov = Phi, vcov_adj = Phi + 2 * Phi %*% U %*% Phi, P = PP, W = W)
  if (is.environment(cache)) cache$kr <- info
  info
}

# Var(ε)/σ² (dense n × n) at the structure's unconstrained parameters eta.
residual_cov <- function(object, eta) call_rust(engine_residual_cov_rs, fit_engine(object), as.double(eta))$cov

# A1, A2 and the df of Kenward & Roger for the hypothesis L (q rows, rank q).
kr_df_parts <- function(kr, L, q) {
  Phi <- kr$vcov
  Theta <- t(L) %*% solve(L %*% Phi %*% t(L), L)
  u <- lapply(kr$P, function(P) Theta %*% Phi %*% P %*% Phi)
  A1 <- A2 <- 0
  ng <- length(u)
  for (i in seq_len(ng)) {
    for (j in i:ng) {
      e <- if (i == j) 1 else 2
      A1 <- A1 + e * kr$W[i, j] * sum(diag(u[[i]])) * sum(diag(u[[j]]))
      A2 <- A2 + e * kr$W[i, j] * sum(u[[i]] * t(u[[j]]))
    }
  }
  B <- (A1 + 6 * A2) / (2 * q)
  g <- ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
  den <- 3 * q + 2 * (1 - g)
  c1 <- g / den
  c2 <- (q - g) / den
  c3 <- (q + 2 - g) / den
  V0 <- 1 + c1 * B
  if (abs(V0) < 1e-10) V0 <- 0
  V1 <- 1 - c2 * B
  V2 <- 1 - c3 * B
  ratio <- if (abs(1 - A2 / q) < 1e-14 && abs(V1) < 1e-14) 1 else (1 - A2 / q) / V1
  rho <- ratio^2 * V0 / V2 / q
  ddf <- 4 + (q + 2) / (q * rho - 1)
  scaling <- if (abs(ddf - 2) < 0.01) 1 else ddf * (1 - A2 / q) / (ddf - 2)
  list(ddf = ddf, scaling = scaling)
}

kr_ddf_1d <- function(kr, L) kr_df_parts(kr, matrix(L, nrow = 1L), 1)$ddf

kr_ftest <- function(object, L, rhs) {
  kr <- kr_info(object)
  q <- qr(L)$rank
  if (q < nrow(L) && !all(rhs == 0)) warning("Contrast is rank deficient and test may be affected")
  if (q == 0L) return(f_table(numeric(0), numeric(0), numeric(0), numeric(0)))
  if (q < nrow(L)) {
    # the same hypothesis on an orthonormal basis B of L's row space: Bβ = B β₀ with
    # β₀ = L⁺ rhs
    B <- t(qr.Q(qr(t(L)))[, seq_len(q), drop = FALSE])
    rhs <- drop(B %*% ginv(L) %*% rhs)
    L <- B
  }
  parts <- kr_df_parts(kr, L, q)
  beta <- unname(object$beta)
  if (!all(rhs == 0)) beta <- beta - drop(ginv(L) %*% rhs)
  Lb <- L %*% beta
  wald <- drop(crossprod(Lb, solve(L %*% kr$vcov_adj %*% t(L), Lb)))
  f_table(wald / q, q, parts$ddf, object$sigma, Fscale = parts$scaling)
}
