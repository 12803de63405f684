# Confidence intervals as lme4's confint.merMod: likelihood profiles (the default)
# or Wald, with lme4's row names.

# Names of the variance parameters on the sd/cor scale, in θ's layout, then sigma.
# oldNames = TRUE gives lme4's .sig01, .sig02, ..., .sigma.
profile_names <- function(object, oldNames = TRUE) {
  lay <- object$theta_layout
  nvp <- nrow(lay)
  if (oldNames) return(c(sprintf(".sig%02d", seq_len(nvp)), ".sigma"))
  nm <- vapply(seq_len(nvp), function(i) {
    t <- object$model$terms[[lay$term[i]]]
    r <- lay$row[i]
    c <- lay$col[i]
    if (r == c) paste0("sd_", t$cnms[r], "|", t$group) else paste0("cor_", t$cnms[r], ".", t$cnms[c], "|", t$group)
  }, "")
  c(nm, "sigma")
}

format_perc <- function(probs, digits = 3) {
  paste(format(100 * probs, trim = TRUE, scientific = FALSE, digits = digits), "%")
}

#' Confidence intervals for lmm fits
#'
#' Profile-likelihood intervals (the default) for the standard deviations,
#' correlations, residual standard deviation and fixed effects, as lme4's
#' `confint()` computes them from the ML deviance; or Wald intervals for the
#' fixed effects. The interval ends are solved for directly rather than read off
#' an interpolated profile.
#' @param object an `lmm` fit.
#' @param parm parameters: names, indices, "theta_" or "beta_"; all by default.
#' @param level confidence level.
#' @param method "profile", "Wald" or "boot".
#' @param oldNames lme4's `.sig01` names (TRUE) or `sd_(Intercept)|g` names.
#' @param quiet suppress the "Computing ..." message.
#' @param nsim,boot.type,seed for `method = "boot"`: replicates of [bootstrap()],
#'   the interval type, and a seed.
#' @param FUN for `method = "boot"`: a function of a fit returning the statistics to
#'   give intervals for (as lme4's); the variance parameters and fixed effects when NULL.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' confint(fm)
#' confint(fm, oldNames = FALSE, level = 0.99)
#' confint(fm, method = "Wald")
#' @export
confint.lmm <- function(object, parm, level = 0.95, method = c("profile", "Wald", "boot"),
                        oldNames = TRUE, quiet = FALSE, nsim = 500, boot.type = c("perc", "basic", "norm"),
                        seed = NULL, FUN = NULL, ...) {
  method <- match.arg(method)
  if (!is.numeric(level) || length(level) != 1L || !(level > 0 && level < 1)) {
    mixedrs_abort("'level' must be a single number between 0 and 1")
  }
  a <- (1 - level) / 2
  cn <- format_perc(c(a, 1 - a))
  vnames <- profile_names(object, oldNames)
  # a correlation's and a variance function's parameters come last (on their natural scale)
  all_names <- c(vnames, names(object$beta), structure_names(object))
  which <- select_parm(parm, all_names, length(vnames), missing(parm), length(object$beta))
  out <- matrix(NA_real_, length(which), 2L, dimnames = list(all_names[which], cn))
  if (method == "boot" && !is.null(FUN)) {
    # lme4: intervals for what FUN returns, from parametric bootstrap refits
    if (!quiet) message("Computing bootstrap confidence intervals ...")
    bt <- bootstrap(object, nsim = nsim, FUN = FUN, seed = seed, progress = FALSE)
    return(confint.lmm_boot(bt, parm = if (missing(parm)) seq_len(ncol(bt$t)) else parm, level = level,
                            type = match.arg(boot.type)))
  }
  if (method == "boot") {
    if (!quiet) message("Computing bootstrap confidence intervals ...")
    bt <- bootstrap(object, nsim = nsim, seed = seed, oldNames = oldNames, progress = interactive())
    ci <- confint.lmm_boot(bt, parm = which, level = level, type = match.arg(boot.type))
    return(ci)
  }
  if (method == "Wald") {
    fe <- which > length(vnames) & which <= length(vnames) + length(object$beta)
    j <- which[fe] - length(vnames)
    se <- sqrt(diag(object$vcov))[j]
    z <- stats::qnorm(1 - a)
    out[fe, ] <- cbind(object$beta[j] - z * se, object$beta[j] + z * se)
    return(out)
  }
  if (!quiet) message("Computing profile confidence intervals ...")
  base <- which <= length(vnames) + length(object$beta)
  z <- stats::qnorm(1 - a)
  if (any(base)) {
    # with a residual structure, its parameters are re-optimised at every profile point
    res <- profile_ends(object, z, which[base])
    out[base, ] <- cbind(res$lower, res$upper)
  }
  if (any(!base)) {
    ends <- structure_profile_ends(object, z, which[!base] - length(vnames) - length(object$beta))
    out[!base, ] <- cbind(ends$lower, ends$upper)
  }
  out
}

# Where the ML profile of each parameter in `which` (indices into [sd/cor, sigma,
# beta]) reaches ζ = -z and ζ = z, solved in Rust; also the ML estimates.
profile_ends <- function(object, z, which, covariances = FALSE) {
  ctl <- engine_control(object$control, start = unname(object$theta), z = z,
                        which = as.integer(which - 1L), covariances = isTRUE(covariances))
  call_rust(engine_profile_rs, fit_engine(object), ctl)
}

select_parm <- function(parm, all_names, nvp, missing_parm, nbeta = length(all_names) - nvp) {
  if (missing_parm) return(seq_along(all_names))
  if (is.numeric(parm)) {
    if (any(parm < 1 | parm > length(all_names))) mixedrs_abort("'parm' indices are out of range")
    return(as.integer(parm))
  }
  parm <- as.character(parm)
  # nvp counts sigma too
  if (identical(parm, "theta_")) return(seq_len(nvp))
  if (identical(parm, "beta_")) return(seq(nvp + 1L, length.out = nbeta))
  bad <- setdiff(parm, all_names)
  if (length(bad)) mixedrs_abort(sprintf("unknown parameter%s: %s", if (length(bad) > 1) "s" else "", paste(bad, collapse = ", ")))
  match(parm, all_names)
}
