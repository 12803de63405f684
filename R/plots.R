# Diagnostic plots in base graphics and lattice, as lme4 and nlme users know them:
# residuals against fitted values, a normal QQ plot, a caterpillar plot of the
# random effects, likelihood profiles and bootstrap distributions.

#' Residuals against fitted values
#'
#' lme4's default `plot()` of a merMod: Pearson residuals against fitted values,
#' with a horizontal line at zero.
#' @param x an `lmm` fit.
#' @param type residual type, as for [residuals()][stats::residuals].
#' @param xlab,ylab,main axis labels and title.
#' @param ... passed to [graphics::plot()].
#' @return `x`, invisibly.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' plot(fm)
#' qqnorm(fm)
#' @export
plot.lmm <- function(x, type = "pearson", xlab = "fitted(.)", ylab = "residuals(., type = \"pearson\")",
                     main = NULL, ...) {
  r <- residuals.lmm(x, type = type)
  graphics::plot(fitted.lmm(x), r, xlab = xlab, ylab = ylab, main = main, ...)
  graphics::abline(h = 0, lty = 2, col = "grey40")
  invisible(x)
}

#' Normal QQ plot of the residuals of an lmm fit
#' @param y an `lmm` fit.
#' @param type residual type.
#' @param main title.
#' @param ... passed to [stats::qqnorm()].
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' qqnorm(fm)
#' @export
qqnorm.lmm <- function(y, type = "pearson", main = "Normal Q-Q plot of residuals", ...) {
  r <- residuals.lmm(y, type = type)
  stats::qqnorm(r, main = main, ...)
  stats::qqline(r, lty = 2, col = "grey40")
  invisible(y)
}

#' Caterpillar plot of the random effects
#'
#' As lme4's `dotplot(ranef(m, condVar = TRUE))`: for each grouping factor, the
#' conditional modes sorted by size with intervals of `level` from their conditional
#' variances, one panel per random-effects column.
#' @param x `ranef(m, condVar = TRUE)` of an `lmm` fit.
#' @param data unused (lattice's generic).
#' @param main title each plot with its grouping factor.
#' @param level coverage of the intervals.
#' @param ... passed to `lattice::dotplot()`.
#' @return a list of trellis objects, one per grouping factor.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' lattice::dotplot(ranef(fm, condVar = TRUE))
#' @export
dotplot.ranef.lmm <- function(x, data, main = TRUE, level = 0.95, ...) {
  z <- stats::qnorm(1 - (1 - level) / 2)
  out <- lapply(names(x), function(g) {
    df <- x[[g]]
    pv <- attr(df, "postVar")
    if (is.null(pv)) mixedrs_abort("dotplot(): use ranef(m, condVar = TRUE)")
    se <- condvar_sd(pv, ncol(df), nrow(df))
    # levels ordered by the first column, as lme4 orders them
    ord <- order(df[[1L]])
    lev <- factor(rownames(df), levels = rownames(df)[ord])
    long <- data.frame(level = rep(lev, ncol(df)), term = factor(rep(names(df), each = nrow(df)), levels = names(df)),
                       value = unlist(df, use.names = FALSE), se = as.vector(se))
    lattice::dotplot(level ~ value | term, data = long, se = long$se,
                     scales = list(x = list(relation = "free")), xlab = NULL,
                     main = if (isTRUE(main)) g else NULL,
                     panel = function(x, y, subscripts, se, ...) {
                       lattice::panel.abline(v = 0, col = "grey60", lty = 2)
                       lattice::panel.segments(x - z * se[subscripts], as.numeric(y), x + z * se[subscripts],
                                               as.numeric(y), col = "black")
                       lattice::panel.xyplot(x, y, pch = 16, col = "steelblue", ...)
                     }, ...)
  })
  names(out) <- names(x)
  out
}

#' Likelihood profiles of an lmm fit
#'
#' The signed square root of the change in ML deviance, ζ, against each
#' parameter (standard deviations, correlations, sigma and fixed effects), at ζ
#' from `-qnorm(1 - alphamax / 2)` to its negative. Each point is solved for
#' exactly, as [confint.lmm()] solves for interval ends. `plot()` draws ζ against
#' each parameter, with the normal approximation's straight line for reference.
#' @param fitted an `lmm` fit without correlated residuals.
#' @param which parameters, as `parm` in [confint.lmm()].
#' @param alphamax the largest two-sided α the profile covers.
#' @param npoints points on each side of the estimate.
#' @param oldNames parameter names as in [confint.lmm()].
#' @param ... unused.
#' @return a data frame of class `lmm_profile` with columns `.zeta`, `.par` and
#'   `.focal` (lme4's `as.data.frame()` layout of a profile).
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' pr <- profile(fm)
#' plot(pr)
#' @export
profile.lmm <- function(fitted, which = NULL, alphamax = 0.01, npoints = 6, oldNames = FALSE, ...) {
  zmax <- stats::qnorm(1 - alphamax / 2)
  zs <- zmax * seq_len(npoints) / npoints
  vnames <- profile_names(fitted, oldNames)
  all_names <- c(vnames, names(fitted$beta))
  which <- select_parm(which, all_names, length(vnames), is.null(which))
  rows <- vector("list", length(zs))
  for (i in seq_along(zs)) {
    res <- profile_ends(fitted, zs[i], which)
    rows[[i]] <- data.frame(.zeta = rep(c(-zs[i], zs[i]), length(which)), .par = rep(all_names[which], each = 2L),
                            .focal = as.vector(rbind(res$lower, res$upper)))
  }
  est <- res$estimates
  # ζ = 0 at the ML estimates, where the ML profile is centred
  center <- data.frame(.zeta = 0, .par = all_names[which], .focal = est[which])
  out <- do.call(rbind, c(list(center), rows))
  out$.par <- factor(out$.par, levels = all_names[which])
  out <- out[order(out$.par, out$.zeta), ]
  out <- out[is.finite(out$.focal), ]
  rownames(out) <- NULL
  structure(out, class = c("lmm_profile", "data.frame"))
}

#' @rdname profile.lmm
#' @param x an `lmm_profile`.
#' @param level confidence levels marked by horizontal lines.
#' @export
plot.lmm_profile <- function(x, level = c(0.5, 0.8, 0.9, 0.95, 0.99), ...) {
  pars <- levels(droplevels(x$.par))
  nc <- ceiling(sqrt(length(pars)))
  op <- graphics::par(mfrow = c(ceiling(length(pars) / nc), nc), mar = c(4, 4, 1.5, 0.5))
  on.exit(graphics::par(op))
  zl <- stats::qnorm(1 - (1 - level) / 2)
  for (p in pars) {
    d <- x[x$.par == p, ]
    graphics::plot(d$.focal, d$.zeta, type = "b", pch = 16, cex = 0.6, xlab = p, ylab = expression(zeta), ...)
    graphics::abline(h = c(-zl, zl), col = "grey75", lty = 3)
    # the straight line ζ would follow if the parameter's estimate were normal
    ctr <- d[d$.zeta == 0, ".focal"]
    far <- d[which.max(abs(d$.zeta)), ]
    if (length(ctr) == 1L && nrow(far) == 1L && far$.focal != ctr) {
      graphics::abline(a = -ctr * far$.zeta / (far$.focal - ctr), b = far$.zeta / (far$.focal - ctr),
                       col = "grey50", lty = 2)
    }
  }
  invisible(x)
}

#' Bootstrap distributions
#'
#' One histogram per statistic, with the estimate (solid line) and the
#' percentile interval of `level` (dashed lines).
#' @param x an `lmm_boot` from [bootstrap()].
#' @param level interval level.
#' @param ... passed to [graphics::hist()].
#' @examples
#' fm <- lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
#' plot(bootstrap(fm, 200, seed = 1))
#' @export
plot.lmm_boot <- function(x, level = 0.95, ...) {
  st <- colnames(x$t)
  nc <- ceiling(sqrt(length(st)))
  op <- graphics::par(mfrow = c(ceiling(length(st) / nc), nc), mar = c(4, 4, 1.5, 0.5))
  on.exit(graphics::par(op))
  ci <- confint.lmm_boot(x, level = level)
  for (s in st) {
    v <- x$t[, s]
    graphics::hist(v[is.finite(v)], breaks = 30, main = s, xlab = NULL, col = "grey85", border = "white", ...)
    graphics::abline(v = x$t0[[s]], col = "firebrick", lwd = 2)
    graphics::abline(v = ci[s, ], col = "steelblue", lty = 2, lwd = 2)
  }
  invisible(x)
}
