# compare_fits(): one table of an lmm fit against the same model fitted by lme4,
# lmerTest or nlme, with absolute and relative differences.

#' Compare an lmm fit with an lme4, lmerTest or nlme fit of the same model
#'
#' Lines up fixed effects, their standard errors and df, the variance components
#' (standard deviations and correlations), sigma, the correlation parameter (nlme)
#' and the log-likelihood, and flags differences beyond `tolerance` (relative to
#' the larger of 1 and the reference's magnitude). The df are Satterthwaite's for
#' lmerTest fits and nlme's containment df for `lme` fits; plain lme4 fits have none.
#' @param m an `lmm` fit.
#' @param other a `merMod` (lme4 or lmerTest) or `lme` (nlme) fit.
#' @param tolerance flag threshold.
#' @return a data frame of class `lmm_comparison`.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' compare_fits(fm, lme4::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy))
#' @export
compare_fits <- function(m, other, tolerance = 1e-4) {
  if (inherits(m, "glmm")) return(compare_glmm(m, other, tolerance))
  if (!inherits(m, "lmm")) mixedrs_abort("compare_fits(): 'm' must be an lmm or glmm fit")
  ref <- if (inherits(other, "merMod")) ref_merMod(other) else if (inherits(other, "lme")) ref_lme(other) else
    mixedrs_abort("compare_fits(): 'other' must be an lme4/lmerTest merMod or an nlme lme fit")
  ct <- coef_table(m, "Satterthwaite")
  ours_df <- if (inherits(other, "lme")) containment_df(m) else ct[, "df"]
  vc <- as.data.frame(VarCorr(m))
  vc_names <- ifelse(is.na(vc$var2), ifelse(is.na(vc$var1), "sigma", paste0("sd(", vc$var1, ")|", vc$grp)),
                     paste0("cor(", vc$var1, ",", vc$var2, ")|", vc$grp))
  ours <- c(stats::setNames(ct[, "Estimate"], paste("fixef", rownames(ct))),
            stats::setNames(ct[, "Std. Error"], paste("SE", rownames(ct))),
            stats::setNames(ours_df, paste("df", rownames(ct))),
            stats::setNames(vc$sdcor, vc_names),
            if (!is.null(m$correlation)) stats::setNames(coef(m$correlation), paste("corStruct", names(coef(m$correlation)))),
            if (!is.null(m$varStruct)) stats::setNames(coef(m$varStruct), paste("varStruct", names(coef(m$varStruct)))),
            logLik = c(logLik(m)))
  comparison_table(ours, ref, tolerance, other)
}

# A glmm fit against glmer: fixed effects, their (Hessian-based) standard errors, the
# random-effects standard deviations and correlations, and the log-likelihood.
compare_glmm <- function(m, other, tolerance) {
  if (!inherits(other, "glmerMod") || inherits(other, "glmm")) mixedrs_abort("compare_fits(): a glmm fit is compared with an lme4 glmer fit")
  se <- sqrt(diag(m$vcov))
  vc <- as.data.frame(VarCorr(m))
  vc <- vc[vc$grp != "Residual", , drop = FALSE]
  vc_names <- ifelse(is.na(vc$var2), paste0("sd(", vc$var1, ")|", vc$grp), paste0("cor(", vc$var1, ",", vc$var2, ")|", vc$grp))
  ours <- c(stats::setNames(m$beta, paste("fixef", names(m$beta))), stats::setNames(se, paste("SE", names(m$beta))),
            stats::setNames(vc$sdcor, vc_names), logLik = c(logLik(m)))
  comparison_table(ours, ref_merMod(other), tolerance, other)
}

comparison_table <- function(ours, ref, tolerance, other) {
  theirs <- ref[names(ours)]
  names(theirs) <- names(ours)
  scale <- pmax(1, abs(theirs))
  out <- data.frame(quantity = names(ours), mixedrs = unname(ours), other = unname(theirs),
                    abs_diff = unname(abs(ours - theirs)), rel_diff = unname(abs(ours - theirs) / scale),
                    stringsAsFactors = FALSE)
  out$flag <- ifelse(is.na(out$rel_diff), "", ifelse(out$rel_diff > tolerance, "*", ""))
  structure(out, class = c("lmm_comparison", "data.frame"), tolerance = tolerance,
            other_class = class(other)[1L])
}

ref_merMod <- function(other) {
  cf <- summary(other)$coefficients
  df <- if ("df" %in% colnames(cf)) cf[, "df"] else rep(NA_real_, nrow(cf))
  vc <- as.data.frame(lme4::VarCorr(other))
  vc_names <- ifelse(is.na(vc$var2), ifelse(is.na(vc$var1), "sigma", paste0("sd(", vc$var1, ")|", vc$grp)),
                     paste0("cor(", vc$var1, ",", vc$var2, ")|", vc$grp))
  c(stats::setNames(cf[, "Estimate"], paste("fixef", rownames(cf))),
    stats::setNames(cf[, "Std. Error"], paste("SE", rownames(cf))),
    stats::setNames(df, paste("df", rownames(cf))),
    stats::setNames(vc$sdcor, vc_names),
    logLik = c(stats::logLik(other)))
}

ref_lme <- function(other) {
  tt <- summary(other)$tTable
  vc <- nlme::VarCorr(other)
  grp <- names(other$groups)[1L]
  rn <- rownames(vc)
  keep <- rn != "Residual"
  sds <- stats::setNames(as.numeric(vc[keep, "StdDev"]), paste0("sd(", rn[keep], ")|", grp))
  cors <- numeric(0)
  if ("Corr" %in% colnames(vc)) {
    R <- nlme::getVarCov(other)
    R <- stats::cov2cor(R)
    nm <- rownames(R)
    for (j in seq_len(ncol(R))) for (i in seq_len(nrow(R))) if (i > j) {
      cors[paste0("cor(", nm[j], ",", nm[i], ")|", grp)] <- R[i, j]  # lme4's var1, var2 order
    }
  }
  cs <- other$modelStruct$corStruct
  cor_par <- if (is.null(cs)) numeric(0) else {
    v <- coef(cs, unconstrained = FALSE)
    stats::setNames(v, paste("corStruct", names(v)))
  }
  vs <- other$modelStruct$varStruct
  var_par <- if (is.null(vs)) numeric(0) else {
    v <- coef(vs, unconstrained = FALSE)
    stats::setNames(v, paste("varStruct", names(v)))
  }
  c(stats::setNames(tt[, "Value"], paste("fixef", rownames(tt))),
    stats::setNames(tt[, "Std.Error"], paste("SE", rownames(tt))),
    stats::setNames(tt[, "DF"], paste("df", rownames(tt))),
    sds, cors, sigma = other$sigma, cor_par, var_par, logLik = c(stats::logLik(other)))
}

#' @export
print.lmm_comparison <- function(x, digits = 6, ...) {
  cat(sprintf("mixedrs vs %s (flag: relative difference > %g)\n", attr(x, "other_class"), attr(x, "tolerance")))
  y <- as.data.frame(unclass(x), stringsAsFactors = FALSE)
  attr(y, "tolerance") <- NULL
  attr(y, "other_class") <- NULL
  print(format(y, digits = digits), row.names = FALSE)
  n <- sum(x$flag == "*")
  cat(if (n == 0) "No differences beyond the tolerance.\n" else sprintf("%d difference%s beyond the tolerance.\n", n, if (n > 1) "s" else ""))
  invisible(x)
}
