# Diagnostic plots in base graphics and lattice, as lme4 and nlme users know them:
# residuals against fitted values, a normal QQ plot, a caterpillar plot of the
# random effects, likelihood profiles and bootstrap distributions.

#' Diagnostic plots of an lmm fit, as lme4's plot()
#'
#' lme4's lattice interface: `form` is evaluated with `.` standing for the fit and the
#' variables of the data it was fitted to, so `resid(., type = "pearson") ~ fitted(.)`
#' (the default), `resid(.) ~ fitted(.) | Subject` or `sqrt(abs(resid(.))) ~ fitted(.)`
#' work; `type = c("p", "smooth")` adds a smoother, `abline` reference lines, and `id`
#' labels the observations whose standardised residuals exceed `qnorm(1 - id/2)`.
#' A factor on the left gives box plots; a one-sided formula a histogram.
#' @param x an `lmm` fit.
#' @param form a formula `y ~ x | g` in terms of `.` and the data's variables.
#' @param abline a horizontal line (one number) or a line `c(a, b)`; `h = 0` for the
#'   default form.
#' @param id,idLabels a tail probability (or a logical formula) selecting
#'   observations to label, and their labels (a formula of grouping factors, or a vector).
#' @param grid draw a background grid (xyplots by default).
#' @param ... passed to lattice (e.g. `type`, `xlab`).
#' @return a trellis object.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' plot(fm)
#' plot(fm, resid(.) ~ fitted(.) | Subject, type = c("p", "smooth"))
#' lattice::qqmath(fm)
#' qqnorm(fm)
#' @export
plot.lmm <- function(x, form = resid(., type = "pearson") ~ fitted(.), abline, id = NULL, idLabels = NULL,
                     grid, ...) {
  if (!inherits(form, "formula")) mixedrs_abort("'form' must be a formula")
  data <- plot_data(x)
  env <- c(as.list(data), list(. = x, .obs = seq_len(nrow(data))))
  rhs <- form[[length(form)]]
  groups <- NULL
  if (is.call(rhs) && identical(rhs[[1L]], as.name("|"))) {
    groups <- rhs[[3L]]
    rhs <- rhs[[2L]]
  }
  .x <- eval(rhs, env, environment(form))
  if (!is.numeric(.x)) mixedrs_abort("Covariate must be numeric")
  args <- list(...)
  if (is.null(args$xlab)) args$xlab <- deparse1(rhs)
  pdata <- data.frame(.x = .x)
  two_sided <- length(form) == 3L
  if (two_sided) {
    .y <- eval(form[[2L]], env, environment(form))
    pdata$.y <- .y
    if (is.null(args$ylab)) args$ylab <- deparse1(form[[2L]])
  }
  for (v in all.vars(groups)) pdata[[v]] <- eval(as.name(v), env)
  lhs <- if (two_sided) ".y ~ .x" else "~ .x"
  pform <- stats::as.formula(if (is.null(groups)) lhs else paste(lhs, "|", deparse1(groups)))
  if (missing(abline)) abline <- if (missing(form)) c(0, 0) else NULL
  labels <- plot_ids(x, id, idLabels, env)
  plot_fun <- if (!two_sided) "histogram" else if (is.numeric(pdata$.y)) "xyplot" else "bwplot"
  if (missing(grid)) grid <- plot_fun == "xyplot"
  if (is.null(args$panel)) {
    args$panel <- switch(plot_fun,
      xyplot = function(x, y, subscripts, ...) {
        if (grid) lattice::panel.grid()
        lattice::panel.xyplot(x, y, ...)
        if (!is.null(labels) && any(hit <- labels$id[subscripts])) {
          lattice::ltext(x[hit], y[hit], labels$labels[subscripts][hit], cex = 0.8, adj = c(-0.2, 0.5))
        }
        if (!is.null(abline)) {
          if (length(abline) == 2L) lattice::panel.abline(a = abline, col = "grey40", lty = 2)
          else lattice::panel.abline(h = abline, col = "grey40", lty = 2)
        }
      },
      bwplot = function(x, y, ...) {
        if (grid) lattice::panel.grid()
        lattice::panel.bwplot(x, y, ...)
        if (!is.null(abline)) lattice::panel.abline(v = abline[1L], col = "grey40", lty = 2)
      },
      histogram = function(x, ...) {
        if (grid) lattice::panel.grid()
        lattice::panel.histogram(x, ...)
        if (!is.null(abline)) lattice::panel.abline(v = abline[1L], col = "grey40", lty = 2)
      })
  }
  do.call(getExportedValue("lattice", plot_fun), c(list(pform, data = pdata), args))
}

# The data a plot formula is evaluated in: the data of the call when it can be found
# and has one row per observation, else the model frame.
plot_data <- function(object) {
  data <- tryCatch(getData.lmm(object), error = function(e) NULL)
  if (is.null(data) || nrow(data) != length(stats::fitted(object))) data <- object$model$frame
  data
}

# Which observations to label (id: a tail probability of the standardised residuals,
# or a logical formula) and the labels (idLabels: a formula of grouping factors or a
# vector; by default the grouping factors of the fit).
plot_ids <- function(object, id, idLabels, env) {
  if (is.null(id)) return(NULL)
  r <- stats::residuals(object, type = "pearson", scaled = TRUE)
  sel <- if (is.numeric(id)) {
    if (id <= 0 || id >= 1) mixedrs_abort("'id' must be between 0 and 1")
    !is.na(r) & abs(r) > -stats::qnorm(id / 2)
  } else if (inherits(id, "formula")) {
    as.logical(eval(id[[length(id)]], env))
  } else mixedrs_abort("'id' can only be a formula or numeric")
  labs <- if (is.null(idLabels)) {
    as.character(interaction(lapply(group_index(object), function(ii) object$model$terms[[ii[1L]]]$factor)))
  } else if (inherits(idLabels, "formula")) {
    as.character(interaction(lapply(all.vars(idLabels), function(v) eval(as.name(v), env))))
  } else as.character(unlist(idLabels))
  if (length(labs) != length(sel)) mixedrs_abort("\"idLabels\" of incorrect length")
  list(id = sel, labels = labs)
}

#' @rdname plot.lmm
#' @param y an `lmm` fit (for `qqnorm()`).
#' @param type residual type for `qqnorm()`.
#' @param main title.
#' @export
qqnorm.lmm <- function(y, type = "pearson", main = "Normal Q-Q plot of residuals", ...) {
  r <- stats::residuals(y, type = type)
  stats::qqnorm(r, main = main, ...)
  stats::qqline(r, lty = 2, col = "grey40")
  invisible(y)
}

#' @rdname plot.lmm
#' @param data unused (lattice's generic).
#' @export
qqmath.lmm <- function(x, data = NULL, id = NULL, idLabels = NULL, ...) {
  values <- stats::residuals(x, type = "pearson", scaled = TRUE)
  env <- c(as.list(plot_data(x)), list(. = x))
  labels <- plot_ids(x, id, idLabels, env)
  lattice::qqmath(~ values, xlab = "Standard normal quantiles", ylab = "Standardized residuals",
                  panel = function(x, ...) {
                    lattice::panel.qqmathline(x, ...)
                    lattice::panel.qqmath(x, ...)
                    if (!is.null(labels) && any(labels$id, na.rm = TRUE)) {
                      ord <- order(x)
                      q <- stats::qnorm(stats::ppoints(length(x)))
                      hit <- which(labels$id[ord])
                      lattice::ltext(q[hit], x[ord][hit], labels$labels[ord][hit], cex = 0.8, adj = c(-0.2, 0.5))
                    }
                  }, ...)
}

#' The data an lmm fit was made from
#'
#' nlme's and lme4's `getData()`: the `data` of the call, evaluated where the
#' formula was written.
#' @param object an `lmm` fit.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' head(nlme::getData(fm))
#' @export
getData.lmm <- function(object) {
  d <- object$call$data
  if (is.null(d)) return(NULL)
  data <- eval(d, environment(object$formula))
  if (!is.data.frame(data) && !is.matrix(data)) mixedrs_abort("'data' object found is not a data frame or matrix")
  as.data.frame(data)
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
    # one x scale for the panels, as lme4 draws them (scales = list(x = list(relation =
    # "free")) in ... frees it)
    lattice::dotplot(level ~ value | term, data = long, se = long$se, xlab = NULL,
                     main = if (isTRUE(main)) g else NULL,
                     # each panel's x range covers the interval bars, as lme4's prepanel.ci
                     prepanel = function(x, y, subscripts, se, ...) {
                       list(xlim = range(x - z * se[subscripts], x + z * se[subscripts], finite = TRUE))
                     },
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
#' each parameter, with the normal approximation's straight line for reference;
#' `confint()` of a profile gives the interval ends (solved exactly, on the
#' profile's scale); `logProf()` and `varianceProf()` put the standard deviations on
#' the log or variance scale, as lme4's do.
#' @param fitted an `lmm` fit; a residual structure's parameters are re-optimised at
#'   every point (their own profiles are in [confint.lmm()]).
#' @param which parameters, as `parm` in [confint.lmm()] (also "theta_", "beta_").
#' @param alphamax the largest two-sided α the profile covers.
#' @param npoints points on each side of the estimate.
#' @param oldNames,signames parameter names as in [confint.lmm()] (`signames` is
#'   lme4's name for it: `.sig01`, ... when TRUE).
#' @param prof.scale "sdcor" (standard deviations and correlations) or "varcov"
#'   (variances; covariances are not available).
#' @param ... other lme4 arguments (accepted and not used).
#' @return a data frame of class `lmm_profile` with columns `.zeta`, `.par` and
#'   `.focal` (lme4's `as.data.frame()` layout of a profile).
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' pr <- profile(fm)
#' plot(pr)
#' confint(pr)
#' confint(logProf(pr))
#' @export
profile.lmm <- function(fitted, which = NULL, alphamax = 0.01, npoints = 6, oldNames = signames, signames = TRUE,
                        prof.scale = c("sdcor", "varcov"), ...) {
  prof.scale <- match.arg(prof.scale)
  zmax <- stats::qnorm(1 - alphamax / 2)
  zs <- zmax * seq_len(npoints) / npoints
  vnames <- profile_names(fitted, oldNames)
  all_names <- c(vnames, names(fitted$beta))
  which <- select_parm(which, all_names, length(vnames), is.null(which))
  varcov <- prof.scale == "varcov"
  if (varcov && !oldNames) {
    # lme4's names on the variance-covariance scale (sigma keeps its name)
    all_names <- sub("^sd_", "var_", sub("^cor_", "cov_", all_names))
  }
  rows <- vector("list", length(zs))
  for (i in seq_along(zs)) {
    res <- profile_ends(fitted, zs[i], which, covariances = varcov)
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
  transform <- stats::setNames(rep("identity", length(which)), all_names[which])
  if (varcov) {
    # variances are the profiled standard deviations squared; covariances were
    # profiled as such
    sds <- profile_kinds(fitted)[which] == "sd"
    transform[sds] <- "square"
    rows <- as.character(out$.par) %in% names(transform)[sds]
    out$.focal[rows] <- out$.focal[rows]^2
  }
  structure(out, class = c("lmm_profile", "data.frame"), fit = fitted, which = which, transform = transform,
            covariances = varcov)
}

# "sd", "cor" or "fixed" for each profiled parameter (θ's layout, then σ, then β).
profile_kinds <- function(object) {
  lay <- object$theta_layout
  c(ifelse(lay$row == lay$col, "sd", "cor"), "sd", rep("fixed", length(object$beta)))
}

# The profile's standard deviations (and σ) transformed and renamed; `ranef = FALSE`
# leaves the random-effects standard deviations alone.
transform_profile <- function(x, ranef, fun, how, rename_old, rename_new) {
  fit <- attr(x, "fit")
  kinds <- stats::setNames(profile_kinds(fit)[attr(x, "which")], names(attr(x, "transform")))
  pars <- names(kinds)
  sigma_par <- pars %in% c(".sigma", "sigma")
  pick <- kinds == "sd" & attr(x, "transform") == "identity" & (ranef | sigma_par)
  if (!any(pick)) return(x)
  newnames <- pars
  newnames[pick] <- ifelse(startsWith(pars[pick], "."), rename_old(pars[pick]), rename_new(pars[pick]))
  rows <- as.character(x$.par) %in% pars[pick]
  x$.focal[rows] <- fun(x$.focal[rows])
  x <- x[is.finite(x$.focal), ]
  levels(x$.par) <- newnames[match(levels(x$.par), pars)]
  tr <- attr(x, "transform")
  tr[pick] <- how
  names(tr) <- newnames
  attr(x, "transform") <- tr
  rownames(x) <- NULL
  x
}

#' @rdname profile.lmm
#' @param x an `lmm_profile` (or an lme4 profile, which is handed to lme4).
#' @param base the logarithm's base.
#' @param ranef transform the random-effects standard deviations too (not only σ).
#' @param sigIni lme4's prefix of the names to transform (unused for lmm profiles).
#' @export
logProf <- function(x, base = exp(1), ranef = TRUE, sigIni = if (ranef) "sig" else "sigma") {
  if (!inherits(x, "lmm_profile")) return(defer_function("lme4", "logProf")(x, base = base, ranef = ranef, sigIni = sigIni))
  transform_profile(x, ranef, function(v) log(v, base = base), paste0("log:", base),
                    function(n) sub("^\\.sig", ".lsig", n), function(n) paste0("log(", n, ")"))
}

#' @rdname profile.lmm
#' @export
varianceProf <- function(x, ranef = TRUE) {
  if (!inherits(x, "lmm_profile")) return(defer_function("lme4", "varianceProf")(x, ranef = ranef))
  transform_profile(x, ranef, function(v) v^2, "square", function(n) paste0(n, "sq"),
                    function(n) ifelse(n == "sigma", "sigmasq", sub("^sd_", "var_", n)))
}

#' @rdname profile.lmm
#' @param object an `lmm_profile`.
#' @param parm parameters (names or indices among the profiled ones).
#' @param level confidence level.
#' @export
confint.lmm_profile <- function(object, parm, level = 0.95, ...) {
  pars <- names(attr(object, "transform"))
  idx <- if (missing(parm)) seq_along(pars) else if (is.numeric(parm)) as.integer(parm) else match(parm, pars)
  if (anyNA(idx) || any(idx < 1L | idx > length(pars))) mixedrs_abort("'parm' must name profiled parameters")
  a <- (1 - level) / 2
  res <- profile_ends(attr(object, "fit"), stats::qnorm(1 - a), attr(object, "which")[idx],
                      covariances = isTRUE(attr(object, "covariances")))
  out <- cbind(res$lower, res$upper)
  tr <- attr(object, "transform")[idx]
  for (i in seq_along(idx)) {
    if (startsWith(tr[i], "log:")) out[i, ] <- log(out[i, ], base = as.numeric(sub("log:", "", tr[i])))
    if (tr[i] == "square") out[i, ] <- out[i, ]^2
  }
  dimnames(out) <- list(pars[idx], format_perc(c(a, 1 - a)))
  out
}

#' @export
as.data.frame.lmm_profile <- function(x, ...) {
  out <- x
  attr(out, "fit") <- NULL
  attr(out, "which") <- NULL
  attr(out, "transform") <- NULL
  attr(out, "covariances") <- NULL
  class(out) <- "data.frame"
  out
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
