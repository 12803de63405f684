# Influence diagnostics, as lme4's: leverages (hatvalues), Cook's distances,
# studentized residuals, and case- or group-deletion refits (influence()) with
# dfbeta, dfbetas and Cook's distances from them.

#' Leverages of an lmm fit
#'
#' The diagonal of the hat matrix that maps y to the fitted values (fixed effects
#' plus conditional modes), as `lme4::hatvalues()` computes it for merMod fits.
#' @param model an `lmm` fit without correlated residuals.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' summary(hatvalues(fm))
#' @export
hatvalues.lmm <- function(model, ...) {
  h <- stats::setNames(leverages(model), rownames(model$model$frame))
  stats::napredict(fit_na_action(model), h)
}

# The leverages of the observations used in the fit.
leverages <- function(model) {
  check_no_correlation(model, "hatvalues()")
  n <- nobs(model)
  sw <- sqrt(weights.lmm(model))
  # W = √w [ZΛ X]; h = diag(W (WᵀW + diag(1_q, 0_p))⁻¹ Wᵀ), with sparse Z
  blocks <- lapply(seq_along(model$model$terms), function(ti) {
    t <- model$model$terms[[ti]]
    k <- ncol(t$Z)
    nl <- nlevels(t$factor)
    lam <- model$lambda[[ti]]
    ZL <- t$Z %*% lam
    Matrix::sparseMatrix(i = rep(seq_len(n), k), j = (rep(as.integer(t$factor), k) - 1L) * k + rep(seq_len(k), each = n),
                         x = as.vector(ZL), dims = c(n, nl * k))
  })
  W <- cbind(do.call(cbind, blocks), Matrix::Matrix(model$model$X, sparse = TRUE)) * sw
  q <- ncol(W) - ncol(model$model$X)
  M <- Matrix::crossprod(W) + Matrix::Diagonal(ncol(W), c(rep(1, q), rep(0, ncol(model$model$X))))
  ch <- Matrix::Cholesky(Matrix::forceSymmetric(M), perm = TRUE, LDL = FALSE)
  CL <- Matrix::solve(ch, Matrix::solve(ch, Matrix::t(W), system = "P"), system = "L")
  unname(Matrix::colSums(CL^2))
}

#' @export
cooks.distance.lmm <- function(model, ...) {
  if (structured_residuals(model)) {
    # as for nlme's lme fits, which have none: NaN, so that diagnostics built on them
    # (performance's check_outliers() and check_model()) carry on without them
    warning("Cook's distances are not available for fits with correlated or heteroscedastic residuals; returning NaN", call. = FALSE)
    return(stats::napredict(fit_na_action(model), stats::setNames(rep(NaN, nobs(model)), rownames(model$model$frame))))
  }
  h <- hatvalues.lmm(model)
  p <- qr(model$model$X)$rank
  r <- stats::residuals(model, type = "pearson")
  d <- (r / (1 - h))^2 * h / (model$sigma^2 * p)
  d[is.infinite(d)] <- NaN
  d
}

#' @export
rstudent.lmm <- function(model, ...) {
  r <- stats::residuals(model, type = "deviance")
  h <- hatvalues.lmm(model)
  pr <- stats::residuals(model, type = "pearson")
  r <- sign(r) * sqrt(r^2 + (h * pr^2) / (1 - h))
  r[is.infinite(r)] <- NaN
  r / model$sigma
}

#' Deletion diagnostics for an lmm fit
#'
#' As lme4's `influence()`: the model is refitted without each observation (or
#' each level of `groups`), starting from the fitted θ, and the fixed effects,
#' variance components and Var(β̂) of every refit are returned. `dfbeta()`,
#' `dfbetas()` and `cooks.distance()` of the result summarise them; with
#' `do.coef = FALSE` only the leverages are returned.
#' @param model an `lmm` fit.
#' @param groups a grouping variable of the data (or several, pasted together);
#'   observations by default.
#' @param data the data (default: as the call gave them).
#' @param maxfun,ncores,start lme4's arguments; `maxfun` limits each refit's evaluations.
#' @param do.coef refit (TRUE) or leverages only.
#' @param ... unused.
#' @return an object of class `c("influence.lmm", "influence.merMod")`.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' inf <- influence(fm, "Subject")
#' head(cooks.distance(inf))
#' head(dfbetas(inf))
#' @export
influence.lmm <- function(model, groups, data, maxfun = 1000, do.coef = TRUE, ncores = 1, start = NULL, ...) {
  if (!do.coef) return(structure(list(hat = hatvalues.lmm(model)), class = c("influence.lmm", "influence.merMod")))
  check_no_correlation(model, "influence()")
  frame <- model$model$frame
  if (missing(data)) data <- tryCatch(getData.lmm(model), error = function(e) NULL)
  if (is.null(data) || nrow(data) != nrow(frame) + length(fit_na_action(model))) data <- frame
  data <- as.data.frame(data)
  used <- if (nrow(data) == nrow(frame)) seq_len(nrow(frame)) else
    setdiff(seq_len(nrow(data)), fit_na_action(model))
  if (missing(groups)) {
    key <- rownames(data)[used]
    gname <- "case"
  } else {
    if (!all(groups %in% names(data))) mixedrs_abort(sprintf("'groups' not found in the data: %s", paste(groups, collapse = ", ")))
    key <- if (length(groups) > 1L) apply(data[used, groups, drop = FALSE], 1L, paste0, collapse = ".") else data[used, groups]
    gname <- paste0(groups, collapse = ".")
  }
  deleted <- unique(key)
  fixed <- fixef(model)
  vc <- influence_vc(model)
  control <- model$control
  control$start <- if (is.null(start)) unname(model$theta) else start_theta(start, length(model$theta))
  control$max_evals <- as.integer(maxfun)
  runs <- lapply(deleted, function(del) {
    sub <- subset_model(model$model, key != del)
    res <- suppressWarnings(engine_fit(sub, model$REML, control))
    fit <- package_fit(sub, res, model$REML, model$call, model$control)
    list(fixed = fixef(fit), vc = influence_vc(fit), vcov = unname(fit$vcov), converged = fit$optinfo$converged,
         feval = fit$optinfo$evaluations)
  })
  dn <- as.character(deleted)
  fixed1 <- do.call(rbind, lapply(runs, `[[`, "fixed"))
  dimnames(fixed1) <- list(dn, names(fixed))
  vc1 <- do.call(rbind, lapply(runs, `[[`, "vc"))
  dimnames(vc1) <- list(dn, names(vc))
  vcov1 <- lapply(runs, function(r) {
    v <- r$vcov
    dimnames(v) <- dimnames(model$vcov)
    v
  })
  names(vcov1) <- dn
  sub <- function(x) paste0(x, "[-", gname, "]")
  out <- list(fixed, fixed1, vc, vc1, model$vcov, vcov1, gname, deleted,
              stats::setNames(vapply(runs, `[[`, TRUE, "converged"), dn),
              stats::setNames(vapply(runs, `[[`, 1, "feval"), dn))
  names(out) <- c("fixed.effects", sub("fixed.effects"), "var.cov.comps", sub("var.cov.comps"), "vcov", sub("vcov"),
                  "groups", "deleted", "converged", "function.evals")
  structure(out, class = c("influence.lmm", "influence.merMod"))
}

# σ² and each term's variances and covariances, named as lme4's influence() names them.
influence_vc <- function(fit) {
  vcs <- VarCorr.lmm(fit)
  nms <- names(vcs)
  sep <- ":"
  if (length(nms) == 1L) {
    nms <- ""
    sep <- ""
  }
  out <- c(`sigma^2` = fit$sigma^2)
  for (i in seq_along(vcs)) {
    V <- vcs[[i]]
    cn <- colnames(V)
    e <- outer(cn, cn, function(a, b) paste0("C[", a, ",", b, "]"))
    diag(e) <- paste0("v[", cn, "]")
    v <- V[lower.tri(V, diag = TRUE)]
    names(v) <- paste0(nms[i], sep, e[lower.tri(e, diag = TRUE)])
    out <- c(out, v)
  }
  out
}

# The model restricted to some of its rows (factor levels that vanish are dropped).
subset_model <- function(model, keep) {
  idx <- which(keep)
  m <- model
  m$frame <- model$frame[idx, , drop = FALSE]
  attr(m$frame, "terms") <- attr(model$frame, "terms")
  X <- model$X[idx, , drop = FALSE]
  attr(X, "assign") <- attr(model$X, "assign")
  attr(X, "contrasts") <- attr(model$X, "contrasts")
  m$X <- X
  m$y <- model$y[idx]
  if (!is.null(model$weights)) m$weights <- model$weights[idx]
  if (!is.null(model$offset)) m$offset <- model$offset[idx]
  m$terms <- lapply(model$terms, function(t) {
    t$Z <- t$Z[idx, , drop = FALSE]
    t$factor <- droplevels(t$factor[idx])
    t
  })
  m$n <- length(idx)
  m
}

ipos_influence <- c(fixed = 1L, fixed.sub = 2L, var.cov = 3L, var.cov.sub = 4L, vcov = 5L, vcov.sub = 6L)

#' @export
dfbeta.influence.lmm <- function(model, which = c("fixed", "var.cov"), ...) {
  which <- match.arg(which)
  b <- model[[ipos_influence[[paste0(which, ".sub")]]]]
  b0 <- model[[ipos_influence[[which]]]]
  b - matrix(b0, nrow(b), ncol(b), byrow = TRUE)
}

#' @export
dfbetas.influence.lmm <- function(model, ...) {
  vs <- model[[ipos_influence[["vcov.sub"]]]]
  se <- t(vapply(vs, function(v) sqrt(diag(v)), numeric(nrow(vs[[1L]]))))
  dfbeta.influence.lmm(model) / se
}

#' @export
cooks.distance.influence.lmm <- function(model, ...) {
  db <- dfbeta.influence.lmm(model)
  n <- nrow(db)
  p <- ncol(db)
  vinv <- (n - p) / (n * p) * solve(model$vcov)
  d <- vapply(seq_len(n), function(i) drop(db[i, ] %*% vinv %*% db[i, ]), 0)
  # named by case for case deletion (as lme4, whose names come from "vcov[-case]")
  names(d) <- names(model[["vcov[-case]"]])
  d
}
