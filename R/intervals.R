# nlme's intervals(): approximate (Wald) intervals in nlme's layout, so that idioms
# such as intervals(m)$reStruct$tree work on lmm fits. Fixed effects use t
# quantiles with Satterthwaite's df; variance parameters are Wald intervals on
# nlme's scales (log sd, Fisher z of correlations, the correlation structure's
# unconstrained scale, log sigma), from the Hessian of the criterion over (θ, η, σ).

# nlme-scale variance parameters from the engine's (θ, η, σ).
nlme_scale <- function(object, v) {
  nth <- length(object$theta)
  ncor <- length(object$cor_eta)
  theta <- v[seq_len(nth)]
  eta <- v[nth + seq_len(ncor)]
  sigma <- v[nth + ncor + 1L]
  lams <- term_lambdas(object, theta)
  out <- numeric(0)
  for (ti in seq_along(object$model$terms)) {
    t <- object$model$terms[[ti]]
    k <- length(t$cnms)
    C <- tcrossprod(lams[[ti]])
    sd <- sigma * sqrt(diag(C))
    out <- c(out, log(sd))
    if (!t$diagonal && k > 1L) {
      R <- C / outer(sqrt(diag(C)), sqrt(diag(C)))
      out <- c(out, atanh(pmin(pmax(R[lower.tri(R)], -1 + 1e-12), 1 - 1e-12)))
    }
  }
  c(out, eta, log(sigma))
}

#' Approximate confidence intervals in nlme's layout
#'
#' @param object an `lmm` fit.
#' @param level confidence level.
#' @param which "all", "fixed" or "var-cov".
#' @param ... unused.
#' @return a list with `fixed`, `reStruct`, `corStruct` (for fits with correlated
#'   residuals) and `sigma`, as nlme's `intervals.lme()`.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' intervals(fm)
#' trees <- sim_growth(trees = 10, seed = 3)
#' m <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees, correlation = corAR1())
#' intervals(m)$reStruct$tree
#' @export
intervals.lmm <- function(object, level = 0.95, which = c("all", "var-cov", "fixed"), ...) {
  which <- match.arg(which)
  if (!is.numeric(level) || length(level) != 1L || !(level > 0 && level < 1)) mixedrs_abort("'level' must be a single number between 0 and 1")
  out <- list()
  if (which != "var-cov") {
    ct <- coef_table(object, "Satterthwaite")
    q <- stats::qt((1 + level) / 2, ct[, "df"])
    fixed <- cbind(lower = ct[, "Estimate"] - q * ct[, "Std. Error"], est. = ct[, "Estimate"],
                   upper = ct[, "Estimate"] + q * ct[, "Std. Error"])
    attr(fixed, "label") <- "Fixed effects:"
    out$fixed <- fixed
  }
  if (which != "fixed") {
    info <- varpar_info(object)
    v0 <- c(full_theta(object), object$sigma)
    est <- nlme_scale(object, v0)
    J <- vapply(seq_along(v0), function(i) {
      h <- 1e-6 * max(abs(v0[i]), 1e-2)
      vp <- vm <- v0
      vp[i] <- vp[i] + h
      vm[i] <- vm[i] - h
      (nlme_scale(object, vp) - nlme_scale(object, vm)) / (2 * h)
    }, numeric(length(est)))
    J <- matrix(J, nrow = length(est))
    se <- sqrt(pmax(diag(J %*% info$vcov_varpar %*% t(J)), 0))
    z <- stats::qnorm((1 + level) / 2)
    lo <- est - z * se
    hi <- est + z * se
    pos <- 0L
    re <- list()
    for (ti in seq_along(object$model$terms)) {
      t <- object$model$terms[[ti]]
      k <- length(t$cnms)
      idx <- pos + seq_len(k)
      rows <- data.frame(lower = exp(lo[idx]), est. = exp(est[idx]), upper = exp(hi[idx]),
                         row.names = paste0("sd(", t$cnms, ")"))
      pos <- pos + k
      if (!t$diagonal && k > 1L) {
        pairs <- which(lower.tri(diag(k)), arr.ind = TRUE)
        idx <- pos + seq_len(nrow(pairs))
        rows <- rbind(rows, data.frame(lower = tanh(lo[idx]), est. = tanh(est[idx]), upper = tanh(hi[idx]),
                                       row.names = paste0("cor(", t$cnms[pairs[, 2]], ",", t$cnms[pairs[, 1]], ")")))
        pos <- pos + nrow(pairs)
      }
      re[[t$group]] <- if (is.null(re[[t$group]])) rows else rbind(re[[t$group]], rows)
    }
    attr(re, "label") <- "Random Effects:"
    out$reStruct <- re
    ncor <- n_cor_par(object)
    if (ncor) {
      idx <- pos + seq_len(ncor)
      back <- function(e) {
        type <- object$correlation$type
        switch(type, AR1 = tanh(e), CAR1 = stats::plogis(e), RandomWalk = exp(e),
               CompSymm = {
                 lo_cs <- max(-0.999, -1 / (max(table(object$model$cor$groups)) - 1))
                 lo_cs + (1 - lo_cs) * stats::plogis(e)
               })
      }
      cs <- cbind(lower = back(lo[idx]), est. = back(est[idx]), upper = back(hi[idx]))
      rownames(cs) <- names(object$correlation$value)
      attr(cs, "label") <- "Correlation structure:"
      out$corStruct <- cs
      pos <- pos + length(idx)
    }
    nvar <- length(object$cor_eta) - ncor
    if (nvar) {
      # nlme's: on the unconstrained scale (log ratios, powers, log const), mapped back
      idx <- pos + seq_len(nvar)
      back <- unlist(lapply(object$varStruct$parts, function(p) {
        switch(p$class, varIdent = rep(list(exp), length(p$value)), varConstPower = list(exp, identity),
               rep(list(identity), length(p$value)))
      }))
      vs <- cbind(lower = mapply(function(f, e) f(e), back, lo[idx]), est. = mapply(function(f, e) f(e), back, est[idx]),
                  upper = mapply(function(f, e) f(e), back, hi[idx]))
      rownames(vs) <- names(coef(object$varStruct))
      attr(vs, "label") <- "Variance function:"
      out$varStruct <- vs
      pos <- pos + nvar
    }
    sg <- c(lower = exp(lo[pos + 1L]), est. = object$sigma, upper = exp(hi[pos + 1L]))
    attr(sg, "label") <- "Within-group standard error:"
    out$sigma <- sg
  }
  structure(out, level = level, class = c("intervals.lmm", "intervals.lme"))
}
