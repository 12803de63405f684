# broom.mixed-style tidy(), glance() and augment() for lmm fits, with the columns
# broom.mixed gives for lme4/lmerTest fits. Registered on the generics package's
# generics (which broom and broom.mixed re-export) when that package is loaded.

as_tibble_if <- function(df) {
  if (requireNamespace("tibble", quietly = TRUE)) tibble::as_tibble(df) else df
}

#' Tidy, glance and augment an lmm fit (broom.mixed style)
#'
#' `tidy()` gives one row per fixed effect and per variance parameter (and,
#' on request, per random effect), `glance()` one row of fit statistics, and
#' `augment()` the model frame with fitted values, residuals, leverages and
#' Cook's distances. Column names and layout follow broom.mixed's methods for
#' lme4 fits; fixed effects carry Satterthwaite df and p-values as for lmerTest fits.
#' These are methods for the generics of the 'generics' package, so they are
#' found after `library(broom.mixed)` or `library(broom)`.
#' @param x an `lmm` fit.
#' @param effects any of "fixed", "ran_pars", "ran_vals", "ran_coefs".
#' @param scales "sdcor" (standard deviations and correlations) or "vcov"
#'   (variances and covariances) for the "ran_pars" rows.
#' @param conf.int add `conf.low` and `conf.high`.
#' @param conf.level confidence level.
#' @param conf.method "Wald" or "profile" (see [confint.lmm()]).
#' @param ddf.method "Satterthwaite", "Kenward-Roger" or "lme4" (no df or p-value).
#' @param data,newdata unused except `data`, which may supply the original data
#'   frame for `augment()` (default: the model frame).
#' @param ... unused.
#' @return a tibble if the tibble package is installed, else a data frame.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' if (requireNamespace("broom.mixed", quietly = TRUE)) {
#'   print(broom.mixed::tidy(fm, conf.int = TRUE))
#'   print(broom.mixed::glance(fm))
#'   print(head(broom.mixed::augment(fm)))
#' }
#' @name tidy.lmm
#' @export
tidy.lmm <- function(x, effects = c("ran_pars", "fixed"), scales = NULL, conf.int = FALSE, conf.level = 0.95,
                     conf.method = c("Wald", "profile"), ddf.method = c("Satterthwaite", "Kenward-Roger", "lme4"),
                     ...) {
  ok <- c("fixed", "ran_pars", "ran_vals", "ran_coefs")
  if (!is.character(effects) || !length(effects) || !all(effects %in% ok)) {
    mixedrs_abort(sprintf("'effects' must be among %s", paste(dQuote(ok, FALSE), collapse = ", ")))
  }
  # broom.mixed takes one scale per element of `effects` (NA where none applies)
  if (!is.null(scales) && length(scales) != length(effects)) {
    mixedrs_abort("if 'scales' is given it needs one value (or NA) for each element of 'effects'")
  }
  scales <- if (is.null(scales) || !"ran_pars" %in% effects) "sdcor" else
    match.arg(scales[[match("ran_pars", effects)]], c("sdcor", "vcov"))
  conf.method <- match.arg(conf.method)
  ddf.method <- match.arg(ddf.method)
  parts <- list()
  ci <- if (conf.int) confint.lmm(x, level = conf.level, method = conf.method, oldNames = FALSE, quiet = TRUE) else NULL
  if ("fixed" %in% effects) parts$fixed <- tidy_fixed(x, ddf.method, ci, conf.method, conf.level)
  if ("ran_pars" %in% effects) parts$ran_pars <- tidy_ran_pars(x, scales, ci, conf.method)
  if ("ran_vals" %in% effects) parts$ran_vals <- tidy_ran_vals(x, conf.int, conf.level)
  if ("ran_coefs" %in% effects) parts$ran_coefs <- tidy_ran_coefs(x)
  # broom.mixed orders fixed effects before variance parameters, whatever `effects` says
  parts <- parts[intersect(ok, names(parts))]
  cols <- unique(unlist(lapply(parts, names)))
  out <- do.call(rbind, lapply(parts, function(p) {
    for (nm in setdiff(cols, names(p))) p[[nm]] <- if (nm %in% c("group", "level", "term")) NA_character_ else NA_real_
    p[cols]
  }))
  rownames(out) <- NULL
  as_tibble_if(out)
}

tidy_fixed <- function(x, ddf, ci, conf.method, conf.level) {
  ct <- coef_table(x, if (ddf == "lme4") "lme4" else ddf)
  out <- data.frame(effect = "fixed", group = NA_character_, term = rownames(ct),
                    estimate = ct[, "Estimate"], std.error = ct[, "Std. Error"],
                    statistic = ct[, "t value"], stringsAsFactors = FALSE)
  if (ddf != "lme4") {
    out$df <- ct[, "df"]
    out$p.value <- ct[, "Pr(>|t|)"]
  }
  if (!is.null(ci)) {
    if (conf.method == "Wald" && ddf != "lme4") {
      # with df, Wald intervals use t quantiles, as broom.mixed does for lmerTest fits
      q <- stats::qt(1 - (1 - conf.level) / 2, out$df)
      out$conf.low <- out$estimate - q * out$std.error
      out$conf.high <- out$estimate + q * out$std.error
    } else {
      out$conf.low <- ci[rownames(ct), 1L]
      out$conf.high <- ci[rownames(ct), 2L]
    }
  }
  out
}

# Lower triangle of each VarCorr block, column by column, as broom.mixed lists it;
# the profile interval's name for each row, to look up its ends.
tidy_ran_pars <- function(x, scales, ci, conf.method, residual = TRUE) {
  vc <- VarCorr.lmm(x)
  rows <- list()
  for (g in names(vc)) {
    v <- vc[[g]]
    nm <- rownames(v)
    sd <- attr(v, "stddev")
    cr <- attr(v, "correlation")
    # VarCorr names a factor's second (x || g) term g.1, as broom.mixed shows it;
    # profile intervals are named by the factor itself
    grp <- g
    base <- sub("\\.[0-9]+$", "", g)
    if (!base %in% vapply(x$model$terms, `[[`, "", "group")) base <- g
    for (j in seq_along(nm)) for (i in j:length(nm)) {
      if (i == j) {
        est <- if (scales == "sdcor") sd[[i]] else v[i, i]
        term <- paste0(if (scales == "sdcor") "sd__" else "var__", nm[i])
        ci_name <- paste0("sd_", nm[i], "|", base)
      } else {
        est <- if (scales == "sdcor") cr[i, j] else v[i, j]
        term <- paste0(if (scales == "sdcor") "cor__" else "cov__", nm[j], ".", nm[i])
        ci_name <- paste0("cor_", nm[i], ".", nm[j], "|", base)
      }
      rows[[length(rows) + 1L]] <- data.frame(effect = "ran_pars", group = grp, term = term, estimate = est,
                                              ci_name = ci_name, stringsAsFactors = FALSE)
    }
  }
  s <- sigma(x)
  if (residual) rows[[length(rows) + 1L]] <- data.frame(effect = "ran_pars", group = "Residual",
                                          term = if (scales == "sdcor") "sd__Observation" else "var__Observation",
                                          estimate = if (scales == "sdcor") s else s^2, ci_name = "sigma",
                                          stringsAsFactors = FALSE)
  out <- do.call(rbind, rows)
  if (!is.null(ci)) {
    # Wald intervals exist only for fixed effects; profile ends are on the sd/cor scale
    have <- conf.method == "profile" && scales == "sdcor"
    out$conf.low <- if (have) unname(ci[out$ci_name, 1L]) else NA_real_
    out$conf.high <- if (have) unname(ci[out$ci_name, 2L]) else NA_real_
  }
  out$ci_name <- NULL
  out
}

tidy_ran_vals <- function(x, conf.int, conf.level) {
  re <- ranef.lmm(x, condVar = TRUE)
  rows <- lapply(names(re), function(g) {
    df <- re[[g]]
    se <- condvar_sd(attr(df, "postVar"), ncol(df), nrow(df))
    do.call(rbind, lapply(seq_along(df), function(j) {
      out <- data.frame(effect = "ran_vals", group = g, level = rownames(df), term = names(df)[j],
                        estimate = df[[j]], std.error = se[, j], stringsAsFactors = FALSE)
      if (conf.int) {
        z <- stats::qnorm(1 - (1 - conf.level) / 2)
        out$conf.low <- out$estimate - z * out$std.error
        out$conf.high <- out$estimate + z * out$std.error
      }
      out
    }))
  })
  do.call(rbind, rows)
}

# Conditional standard deviations (levels x columns) from a postVar array or the
# per-term list lme4 uses when a factor has several terms.
condvar_sd <- function(pv, k, nl) {
  if (is.list(pv)) return(do.call(cbind, lapply(pv, function(a) condvar_sd(a, dim(a)[1L], nl))))
  vapply(seq_len(k), function(j) sqrt(pv[j, j, ]), numeric(nl))
}

tidy_ran_coefs <- function(x) {
  cf <- coef.lmm(x)
  do.call(rbind, lapply(names(cf), function(g) {
    df <- cf[[g]]
    do.call(rbind, lapply(seq_along(df), function(j) {
      data.frame(effect = "ran_coefs", group = g, level = rownames(df), term = names(df)[j],
                 estimate = df[[j]], stringsAsFactors = FALSE)
    }))
  }))
}

#' @rdname tidy.lmm
#' @export
glance.lmm <- function(x, ...) {
  ll <- logLik.lmm(x)
  out <- data.frame(nobs = as.integer(nobs(x)), sigma = sigma(x), logLik = c(ll), AIC = stats::AIC(ll),
                    BIC = stats::BIC(ll))
  if (x$REML) out$REMLcrit <- REMLcrit.lmm(x) else out$deviance <- deviance.lmm(x)
  out$df.residual <- as.integer(df.residual.lmm(x))
  as_tibble_if(out)
}

#' @rdname tidy.lmm
#' @export
augment.lmm <- function(x, data = NULL, newdata = NULL, ...) {
  if (!is.null(newdata)) mixedrs_abort("augment(): 'newdata' is not supported for lmm fits; use predict()")
  frame <- if (is.null(data)) model.frame.lmm(x) else data
  if (nrow(frame) != nobs(x)) mixedrs_abort("augment(): 'data' must have one row per observation used in the fit")
  out <- as.data.frame(frame, stringsAsFactors = FALSE)
  attr(out, "terms") <- NULL
  # broom keeps row names that are not just 1..n in a .rownames column
  rn <- rownames(out)
  if (!identical(rn, as.character(seq_len(nrow(out))))) out <- cbind(.rownames = rn, out, stringsAsFactors = FALSE)
  w <- weights.lmm(x)
  off <- if (is.null(x$model$offset)) rep(0, nobs(x)) else x$model$offset
  hat <- leverages(x)
  pres <- unname((x$model$y - x$fitted) * sqrt(w))
  p <- qr(x$model$X)$rank
  cook <- (pres / (1 - hat))^2 * hat / (sigma(x)^2 * p)
  cook[is.infinite(cook)] <- NaN
  out$.fitted <- unname(x$fitted)
  out$.resid <- unname(x$model$y - x$fitted)
  out$.hat <- hat
  out$.cooksd <- cook
  out$.fixed <- x_beta(x$model$X, x$beta) + off
  out$.mu <- unname(x$fitted)
  out$.offset <- off
  out$.sqrtXwt <- rep(1, nobs(x))
  out$.sqrtrwt <- sqrt(w)
  out$.weights <- w
  out$.wtres <- pres
  rownames(out) <- NULL
  as_tibble_if(out)
}

#' Tidy, glance and augment a glmm fit (broom.mixed style)
#'
#' As broom.mixed's methods for glmer fits: `tidy()` gives the fixed effects with z
#' statistics and their p-values, and the random-effects standard deviations and
#' correlations; `glance()` one row of fit statistics; `augment()` the model frame
#' with the linear predictor, mean, residuals and weights (no hat values, which
#' lme4 itself warns "may not make sense for GLMMs").
#' @param x a `glmm` fit.
#' @inheritParams tidy.lmm
#' @return a tibble if the tibble package is installed, else a data frame.
#' @examples
#' gm <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), lme4::cbpp, family = binomial)
#' if (requireNamespace("broom.mixed", quietly = TRUE)) print(broom.mixed::tidy(gm))
#' @name tidy.glmm
#' @export
tidy.glmm <- function(x, effects = c("ran_pars", "fixed"), scales = NULL, conf.int = FALSE, conf.level = 0.95,
                      conf.method = c("Wald", "profile"), ...) {
  ok <- c("fixed", "ran_pars")
  if (!is.character(effects) || !length(effects) || !all(effects %in% ok)) {
    mixedrs_abort(sprintf("'effects' must be among %s for glmm fits", paste(dQuote(ok, FALSE), collapse = ", ")))
  }
  scales <- if (is.null(scales) || !"ran_pars" %in% effects) "sdcor" else
    match.arg(scales[[match("ran_pars", effects)]], c("sdcor", "vcov"))
  conf.method <- match.arg(conf.method)
  ci <- if (conf.int) confint.glmm(x, level = conf.level, method = conf.method, oldNames = FALSE) else NULL
  parts <- list()
  if ("fixed" %in% effects) {
    se <- sqrt(diag(x$vcov))
    z <- x$beta / se
    f <- data.frame(effect = "fixed", group = NA_character_, term = names(x$beta), estimate = unname(x$beta),
                    std.error = unname(se), statistic = unname(z), p.value = unname(2 * stats::pnorm(-abs(z))),
                    stringsAsFactors = FALSE)
    if (!is.null(ci)) {
      f$conf.low <- unname(ci[f$term, 1L])
      f$conf.high <- unname(ci[f$term, 2L])
    }
    parts$fixed <- f
  }
  if ("ran_pars" %in% effects) parts$ran_pars <- tidy_ran_pars(x, scales, ci, conf.method, residual = FALSE)
  cols <- unique(unlist(lapply(parts, names)))
  out <- do.call(rbind, lapply(parts, function(p) {
    for (nm in setdiff(cols, names(p))) p[[nm]] <- if (nm %in% c("group", "term")) NA_character_ else NA_real_
    p[cols]
  }))
  rownames(out) <- NULL
  as_tibble_if(out)
}

#' @rdname tidy.glmm
#' @export
glance.glmm <- function(x, ...) {
  ll <- logLik.glmm(x)
  as_tibble_if(data.frame(nobs = as.integer(nobs(x)), sigma = 1, logLik = c(ll), AIC = stats::AIC(ll), BIC = stats::BIC(ll),
                          deviance = deviance.glmm(x), df.residual = as.integer(df.residual.glmm(x))))
}

#' @rdname tidy.glmm
#' @export
augment.glmm <- function(x, data = NULL, newdata = NULL, ...) {
  if (!is.null(newdata)) mixedrs_abort("augment(): 'newdata' is not supported for glmm fits; use predict()")
  frame <- if (is.null(data)) x$model$frame else data
  if (nrow(frame) != nobs(x)) mixedrs_abort("augment(): 'data' must have one row per observation used in the fit")
  out <- as.data.frame(frame, stringsAsFactors = FALSE)
  attr(out, "terms") <- NULL
  rn <- rownames(out)
  if (!identical(rn, as.character(seq_len(nrow(out))))) out <- cbind(.rownames = rn, out, stringsAsFactors = FALSE)
  fam <- x$family
  wt <- x$prior_weights
  off <- if (is.null(x$model$offset)) rep(0, nobs(x)) else x$model$offset
  v <- fam$variance(x$mu)
  out$.fitted <- x$eta
  out$.resid <- unname(residuals.glmm(x, type = "deviance"))
  out$.fixed <- x_beta(x$model$X, x$beta) + off
  out$.mu <- x$mu
  out$.offset <- off
  out$.sqrtXwt <- sqrt(wt) * fam$mu.eta(x$eta) / sqrt(v)
  out$.sqrtrwt <- sqrt(wt / v)
  out$.weights <- wt
  out$.wtres <- unname(residuals.glmm(x, type = "pearson"))
  out$.eta <- x$eta
  rownames(out) <- NULL
  as_tibble_if(out)
}
