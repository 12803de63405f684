# Printing in lme4's layout.

method_title <- function(object, ddf = "lme4") {
  base <- if (object$REML) "Linear mixed model fit by REML" else "Linear mixed model fit by maximum likelihood "
  tests <- switch(ddf, Satterthwaite = ". t-tests use Satterthwaite's method", `Kenward-Roger` = ". t-tests use Kenward-Roger's method", "")
  paste0(base, tests, " ['lmm']")
}

data_name <- function(object) {
  d <- object$call$data
  if (is.null(d)) NULL else deparse1(d)
}

# lme4's header: title, formula, and the data, weights, offset, control (summary
# only, when not the default) and subset as the call gave them.
print_header <- function(object, ddf = "lme4", long = FALSE) {
  cat(method_title(object, ddf), "\n", sep = "")
  cat("Formula: ", deparse1(object$formula), "\n", sep = "")
  cl <- object$call
  if (!is.null(dn <- data_name(object))) cat("   Data: ", dn, "\n", sep = "")
  if (!is.null(cl$weights)) cat("Weights: ", deparse1(cl$weights), "\n", sep = "")
  if (!is.null(cl$offset)) cat(" Offset: ", deparse1(cl$offset), "\n", sep = "")
  if (long && length(cl$control) && !deparse1(cl$control) %in% c("lmerControl()", "lmm_control()")) {
    cat("Control: ", deparse1(cl$control), "\n", sep = "")
  }
  if (!is.null(cl$subset)) cat(" Subset: ", deparse1(cl$subset), "\n", sep = "")
}

aic_table <- function(object) {
  if (object$REML) return(c(REML = dev_crit(object, TRUE)))
  ll <- logLik(object)
  n <- nobs(object)
  df <- attr(ll, "df")
  c(AIC = -2 * ll + 2 * df, BIC = -2 * ll + log(n) * df, logLik = c(ll),
    deviance = dev_crit(object, FALSE), df.resid = n - df)
}

print_aic <- function(tab, digits) {
  t4 <- round(tab, digits)
  if (length(tab) == 1L && names(tab) == "REML") {
    cat("REML criterion at convergence: ", t4, "\n", sep = "")
  } else {
    f <- format(t4)
    f["df.resid"] <- format(t4["df.resid"])
    print(f, quote = FALSE)
  }
}

format_varcorr <- function(vc, digits, comp = "Std.Dev.") {
  # a GLMM's (useSc = FALSE) has no residual row
  sds <- c(lapply(vc, attr, "stddev"), if (!isFALSE(attr(vc, "useSc"))) list(Residual = attr(vc, "sc")))
  lens <- lengths(sds)
  nr <- sum(lens)
  cols <- c("Groups", "Name", comp)
  out <- matrix("", nr, length(cols), dimnames = list(rep("", nr), cols))
  out[1L + cumsum(lens) - lens, "Groups"] <- names(lens)
  out[, "Name"] <- c(unlist(lapply(vc, colnames)), if (!isFALSE(attr(vc, "useSc"))) "")
  sd <- unlist(sds)
  if ("Variance" %in% comp) out[, "Variance"] <- format(sd^2, digits = digits)
  if ("Std.Dev." %in% comp) out[, "Std.Dev."] <- format(sd, digits = digits)
  if (any(lens > 1L)) {
    maxlen <- max(lens)
    dig <- max(2L, digits - 2L)
    corr <- do.call(rbind, lapply(vc, function(v) {
      cc <- format(round(attr(v, "correlation"), dig), nsmall = dig)
      cc[!lower.tri(cc)] <- ""
      if (nrow(cc) < maxlen) cc <- cbind(cc, matrix("", nrow(cc), maxlen - nrow(cc)))
      cc
    }))[, -maxlen, drop = FALSE]
    corr <- rbind(corr, matrix("", nr - nrow(corr), ncol(corr)))
    colnames(corr) <- c("Corr", rep("", ncol(corr) - 1L))
    out <- cbind(out, corr)
  }
  out
}

print_groups <- function(object) {
  ng <- ngrps(object)
  cat(sprintf("Number of obs: %d, groups: ", nobs(object)),
      paste(paste(names(ng), ng, sep = ", "), collapse = "; "), fill = TRUE)
}

#' @export
print.lmm <- function(x, digits = max(3, getOption("digits") - 3), ...) {
  print_header(x)
  print_aic(aic_table(x), 4)
  cat("Random effects:\n")
  print(format_varcorr(VarCorr(x), digits = digits), quote = FALSE)
  print_groups(x)
  # correlated residuals: nlme's block for the correlation structure
  if (!is.null(x$correlation)) print(x$correlation)
  # and for a variance function
  if (!is.null(x$varStruct)) print(x$varStruct)
  cat("Fixed Effects:\n")
  if (length(fixef(x))) print.default(format(fixef(x), digits = digits), print.gap = 2L, quote = FALSE)
  else cat("No fixed effect coefficients\n")
  if (!x$optinfo$converged) cat("optimizer warning:", x$optinfo$message, "\n")
  invisible(x)
}

#' Summary of an lmm fit
#'
#' lmerTest's layout: the coefficient table has Satterthwaite's (default) or
#' Kenward–Roger's denominator df and p-values; `ddf = "lme4"` gives lme4's
#' three columns.
#' @param object an `lmm` fit.
#' @param ddf "Satterthwaite", "Kenward-Roger" or "lme4".
#' @param correlation show the correlation of the fixed effects when printed (by
#'   default up to 12 fixed effects, as lme4).
#' @param ... unused (a warning names them).
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' summary(fm)
#' summary(fm, ddf = "Kenward-Roger")$coefficients
#' @method summary lmm
#' @export
summary.lmm <- function(object, ddf = c("Satterthwaite", "Kenward-Roger", "lme4"),
                        correlation = (length(object$beta) <= 12L), ...) {
  if (...length() > 0L) {
    nd <- ...names()
    warning(paste0("additional arguments ignored", if (length(nd)) paste0(": ", paste(sQuote(nd), collapse = ", ")) else ""),
            call. = FALSE)
  }
  if (!(is.logical(correlation) && length(correlation) == 1L && !is.na(correlation))) {
    mixedrs_abort("'correlation' must be TRUE or FALSE")
  }
  ddf <- check_ddf(ddf, object)
  coefs <- coef_table(object, ddf)
  if (ddf == "Kenward-Roger") object_vcov <- kr_info(object)$vcov_adj else object_vcov <- object$vcov
  dimnames(object_vcov) <- dimnames(object$vcov)
  structure(list(
    methTitle = method_title(object, ddf),
    ddf = ddf,
    call = object$call,
    formula = object$formula,
    data = data_name(object),
    AICtab = aic_table(object),
    residuals = residuals(object, type = "pearson", scaled = TRUE),
    varcor = VarCorr(object),
    ngrps = ngrps(object),
    nobs = nobs(object),
    coefficients = coefs,
    vcov = object_vcov,
    sigma = object$sigma,
    logLik = logLik(object),
    REML = object$REML,
    correlation = correlation,
    object = object
  ), class = "summary.lmm")
}

#' @export
print.summary.lmm <- function(x, digits = max(3, getOption("digits") - 3), correlation = NULL,
                              signif.stars = getOption("show.signif.stars"), ...) {
  print_header(x$object, x$ddf, long = TRUE)
  cat("\n")
  print_aic(x$AICtab, 1)
  cat("\n")
  cat("Scaled residuals:", "\n")
  rq <- stats::setNames(zapsmall(stats::quantile(x$residuals, na.rm = TRUE), digits + 1L),
                        c("Min", "1Q", "Median", "3Q", "Max"))
  print(rq, digits = digits)
  cat("\n")
  cat("Random effects:\n")
  print(format_varcorr(x$varcor, digits = digits, comp = c("Variance", "Std.Dev.")), quote = FALSE)
  print_groups(x$object)
  cat("\n")
  if (!is.null(x$object$correlation)) {
    print(x$object$correlation)
    cat("\n")
  }
  if (!is.null(x$object$varStruct)) {
    print(x$object$varStruct)
    cat("\n")
  }
  cf <- x$coefficients
  if (nrow(cf) > 0L) {
    cat("Fixed effects:\n")
    stats::printCoefmat(cf, digits = digits, signif.stars = signif.stars, ...)
    p <- nrow(cf)
    # as lme4: by default shown when summary() computed it and p <= 12; print()'s
    # correlation = TRUE shows it anyway
    if (is.null(correlation)) {
      correlation <- isTRUE(x$correlation) && p <= 12L
      if (!correlation && p > 12L) {
        message(sprintf(paste("\nCorrelation matrix not shown by default, as p = %d > 12.",
                              "Use print(summary(x), correlation=TRUE)  or",
                              "    vcov(x)        if you need it\n", sep = "\n"), p))
      }
    }
    else if (!is.logical(correlation)) mixedrs_abort("'correlation' must be NULL or logical")
    else if (correlation && !isTRUE(x$correlation)) {
      message("\nCorrelation of fixed effects could have been required in summary()")
    }
    if (correlation && p > 1L) {
      cat("\nCorrelation of Fixed Effects:\n")
      v <- x$vcov
      corr <- v / outer(sqrt(diag(v)), sqrt(diag(v)))
      cc <- format(round(corr, 3), nsmall = 3)
      cc[!lower.tri(cc)] <- ""
      dimnames(cc) <- list(abbreviate(rownames(cf), minlength = 11L), abbreviate(rownames(cf), minlength = 6L))
      print(cc[-1L, -p, drop = FALSE], quote = FALSE)
    }
  } else {
    cat("No fixed effect coefficients\n")
  }
  if (isSingular(x$object)) cat("optimizer (BFGS) convergence code: 0 (OK)\nboundary (singular) fit: see help('isSingular')\n")
  invisible(x)
}
