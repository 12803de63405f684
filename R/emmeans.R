# emmeans support: recover_data() and emm_basis() for lmm fits, registered with
# emmeans when it is loaded. Degrees of freedom: Satterthwaite (default, as emmeans
# gives for lmerTest fits), Kenward-Roger, nlme's "containment" rule (as emmeans
# gives for nlme::lme fits), or asymptotic.

recover_data.lmm <- function(object, ...) {
  fcall <- object$call
  trms <- stats::delete.response(object$model$fixed_terms)
  emmeans::recover_data(fcall, trms, na.action = NULL, frame = object$model$frame, ...)
}

emm_basis.lmm <- function(object, trms, xlev, grid, vcov., mode = c("satterthwaite", "kenward-roger", "containment", "asymptotic"),
                          lmer.df, ...) {
  if (!missing(lmer.df)) mode <- lmer.df  # emmeans' name for lme4 fits
  mode <- match.arg(tolower(mode), c("satterthwaite", "kenward-roger", "containment", "asymptotic"))
  m <- stats::model.frame(trms, grid, na.action = stats::na.pass, xlev = xlev)
  Xfull <- stats::model.matrix(trms, m, contrasts.arg = attr(object$model$X, "contrasts"))
  X <- Xfull[, colnames(object$model$X), drop = FALSE]
  bhat <- unname(object$beta)
  V <- if (mode == "kenward-roger") kr_info(object)$vcov_adj else unname(object$vcov)
  if (!missing(vcov.)) V <- emmeans::.my.vcov(object, vcov.)
  # emmeans may replace dffun's environment, so the df computation travels in dfargs
  # as a closure over this package's functions
  dfx <- if (mode == "containment") emmeans_containment_df(object) else NULL
  df_of <- function(k) {
    k <- as.numeric(k)
    switch(mode,
      asymptotic = Inf,
      containment = {
        idx <- which(abs(k) > 1e-4)
        if (length(idx)) min(dfx[idx]) else NA_real_
      },
      satterthwaite = contest_1d(object, k)$df,
      `kenward-roger` = contest_1d(object, k, ddf = "Kenward-Roger")$df)
  }
  dfargs <- list(df_of = df_of)
  dffun <- function(k, dfargs) dfargs$df_of(k)
  attr(dffun, "mesg") <- mode  # printed by emmeans as "Degrees-of-freedom method: ..."
  list(X = X, bhat = bhat, nbasis = estimability::all.estble, V = V, dffun = dffun, dfargs = dfargs)
}

# nlme's "containment" denominator df of each column of X (Pinheiro & Bates 2000,
# sec. 2.4.2), for nested grouping factors: each column is estimated in the
# innermost stratum within whose groups it varies.
containment_df <- function(object) {
  X <- object$model$X
  idx <- group_index(object)
  facs <- lapply(idx, function(ii) object$model$terms[[ii[1L]]]$factor)
  # outermost first
  facs <- facs[order(vapply(facs, nlevels, 1L))]
  ng <- vapply(facs, nlevels, 1L)
  N <- nrow(X)
  Q <- length(facs)
  df_strata <- c(ng, N) - c(0, ng)
  const <- apply(X, 2, function(x) all(x == x[1L]))
  varies_within <- function(x, f) any(tapply(x, f, function(v) any(v != v[1L])))
  stratum <- vapply(seq_len(ncol(X)), function(j) {
    if (const[j]) return(1L)
    s <- 1L
    for (lev in seq_len(Q)) if (varies_within(X[, j], facs[[lev]])) s <- lev + 1L
    s
  }, 1L)
  for (s in seq_len(Q + 1L)) df_strata[s] <- df_strata[s] - sum(stratum == s & !const)
  # an intercept is estimated in the outermost stratum; without one, nlme adds 1 to the others
  if (any(const)) df_strata[1L] <- df_strata[1L] - 1L else df_strata[-1L] <- df_strata[-1L] + 1L
  out <- df_strata[stratum]
  out[const] <- max(df_strata)
  stats::setNames(out, colnames(X))
}

# emmeans' containment df for an lme fit: nlme's, except that the intercept's are the
# number of outermost groups minus one (emmeans' correction of nlme's rule).
emmeans_containment_df <- function(object) {
  dfx <- containment_df(object)
  if (identical(names(dfx)[1L], "(Intercept)") && length(object$model$terms)) {
    dfx[1L] <- min(vapply(object$model$terms, function(t) nlevels(t$factor), 1L)) - 1L
  }
  dfx
}

# A glmm fit: asymptotic (z) inference on the link scale, as emmeans gives for glmer
# fits; the family's link in `misc` makes type = "response" back-transform.
recover_data.glmm <- function(object, ...) recover_data.lmm(object, ...)

emm_basis.glmm <- function(object, trms, xlev, grid, vcov., ...) {
  m <- stats::model.frame(trms, grid, na.action = stats::na.pass, xlev = xlev)
  X <- stats::model.matrix(trms, m, contrasts.arg = attr(object$model$X, "contrasts"))[, colnames(object$model$X), drop = FALSE]
  V <- unname(object$vcov)
  if (!missing(vcov.)) V <- emmeans::.my.vcov(object, vcov.)
  misc <- emmeans::.std.link.labels(object$family, list())
  list(X = X, bhat = unname(object$beta), nbasis = estimability::all.estble, V = V,
       dffun = function(k, dfargs) Inf, dfargs = list(), misc = misc)
}

register_emmeans_methods <- function(...) {
  emmeans::.emm_register(c("lmm", "glmm"), "mixedrs")
}
