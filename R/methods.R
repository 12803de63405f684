# Accessors with lme4's names and return structures.

#' @importFrom nlme fixef ranef VarCorr
#' @export
nlme::fixef
#' @export
nlme::ranef
#' @export
nlme::VarCorr
#' @importFrom nlme corAR1 corCAR1 corCompSymm intervals
#' @export
nlme::corAR1
#' @export
nlme::corCAR1
#' @export
nlme::corCompSymm
#' @export
nlme::intervals
#' @importFrom nlme varIdent varPower varExp varConstPower varFixed varComb
#' @export
nlme::varIdent
#' @export
nlme::varPower
#' @export
nlme::varExp
#' @export
nlme::varConstPower
#' @export
nlme::varFixed
#' @export
nlme::varComb
#' @importFrom stats drop1
#' @export
stats::drop1

#' @export
fixef.lmm <- function(object, add.dropped = FALSE, ...) {
  ff <- object$beta
  dropped <- attr(object$model$X, "col.dropped")
  if (!isTRUE(add.dropped) || is.null(dropped)) return(ff)
  # back in the positions of the full model matrix, with NA where a column was dropped
  p <- length(ff) + length(dropped)
  out <- rep(NA_real_, p)
  kept <- setdiff(seq_len(p), dropped)
  out[kept] <- ff
  nm <- character(p)
  nm[kept] <- names(ff)
  nm[dropped] <- names(dropped)
  stats::setNames(out, nm)
}

# Unique grouping factors in term order, with the terms that use each.
group_index <- function(object) {
  groups <- vapply(object$model$terms, `[[`, "", "group")
  split(seq_along(groups), factor(groups, levels = unique(groups)))
}

#' Conditional modes of the random effects
#'
#' A list of data frames, one per grouping factor, as `lme4::ranef()` returns.
#' With `condVar = TRUE` each carries the conditional covariances in
#' `attr(, "postVar")` (a k x k x levels array).
#' @param object an `lmm` fit.
#' @param condVar attach conditional variances.
#' @param drop return vectors for single-column terms.
#' @param whichel names of the grouping factors to keep.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' head(ranef(fm)$Subject)
#' str(attr(ranef(fm)$Subject, "postVar"))
#' @export
ranef.lmm <- function(object, condVar = TRUE, drop = FALSE, whichel = NULL, ...) {
  idx <- group_index(object)
  cv <- if (condVar) condvar_blocks(object) else NULL
  out <- lapply(idx, function(ii) {
    df <- as.data.frame(do.call(cbind, object$b[ii]), check.names = FALSE)
    if (condVar) attr(df, "postVar") <- group_postvar(object$model$terms[ii], cv[ii])
    df
  })
  if (!is.null(whichel)) out <- out[whichel]
  if (drop) {
    out <- lapply(out, function(df) {
      if (ncol(df) == 1L) stats::setNames(df[[1L]], rownames(df)) else df
    })
  }
  structure(out, class = c("ranef.lmm", "ranef.mer"))
}

# lme4's postVar for one grouping factor: a k x k x levels array when the factor
# has one lme4 term, otherwise a list with one array per term (a diagonal term from
# (x || g) is one term per column in lme4), named by the term's columns.
group_postvar <- function(terms, cvs) {
  blocks <- list()
  for (i in seq_along(terms)) {
    t <- terms[[i]]
    if (t$diagonal) {
      for (j in seq_along(t$cnms)) {
        blocks[[length(blocks) + 1L]] <- cvs[[i]][j, j, , drop = FALSE]
        names(blocks)[length(blocks)] <- t$cnms[j]
      }
    } else {
      blocks[[length(blocks) + 1L]] <- cvs[[i]]
      names(blocks)[length(blocks)] <- if (length(t$cnms) == 1L) t$cnms else deparse(t$cnms)
    }
  }
  if (length(blocks) == 1L) unname(blocks[[1L]]) else blocks
}

# σ² Λ [(LLᵀ)⁻¹]_ll Λᵀ per term, from the fit's engine (its factor at θ̂).
condvar_blocks <- function(object) {
  if (inherits(object, "glmm")) return(object$cond_var)  # computed with the fit
  cv <- call_rust(engine_condvar_rs, fit_engine(object), as.double(object$sigma))
  Map(function(t, v) {
    k <- length(t$cnms)
    array(v, c(k, k, nlevels(t$factor)))
  }, object$model$terms, cv)
}

#' @export
print.ranef.lmm <- function(x, ...) {
  has_cv <- vapply(x, function(el) !is.null(attr(el, "postVar")), TRUE)
  print(lapply(unclass(x), function(el) { attr(el, "postVar") <- NULL; el }), ...)
  if (any(has_cv)) {
    cat(sprintf("with conditional variances for %s \n",
                paste(dQuote(names(x)[has_cv]), collapse = " ")))
  }
  invisible(x)
}

#' @export
as.data.frame.ranef.lmm <- function(x, ...) {
  rows <- lapply(names(x), function(g) {
    df <- x[[g]]
    pv <- attr(df, "postVar")
    # per-column conditional variances, whether postVar is one array or a list of them
    cv <- if (is.null(pv)) NULL else if (is.list(pv)) do.call(rbind, lapply(pv, function(a) {
      matrix(apply(a, 3L, diag), nrow = dim(a)[1L])
    })) else matrix(apply(pv, 3L, diag), nrow = dim(pv)[1L])
    do.call(rbind, lapply(seq_along(df), function(j) {
      # levels ordered by the first column's conditional mode, as lme4 orders them
      data.frame(grpvar = g, term = factor(names(df)[j], levels = names(df)),
                 grp = factor(rownames(df), levels = rownames(df)[order(df[[1L]])]),
                 condval = df[[j]],
                 condsd = if (is.null(cv)) NA_real_ else sqrt(cv[j, ]),
                 stringsAsFactors = FALSE)
    }))
  })
  do.call(rbind, rows)
}

#' @export
coef.lmm <- function(object, ...) {
  fe <- fixef(object)
  re <- ranef(object, condVar = FALSE)
  # as lme4: random-effects columns missing from the fixed part come first, at 0
  missing_cols <- setdiff(unlist(lapply(re, names)), names(fe))
  fe <- c(stats::setNames(rep(0, length(missing_cols)), missing_cols), fe)
  out <- lapply(re, function(r) {
    val <- as.data.frame(matrix(fe, nrow(r), length(fe), byrow = TRUE,
                                dimnames = list(rownames(r), names(fe))), check.names = FALSE)
    for (nm in names(r)) val[[nm]] <- val[[nm]] + r[[nm]]
    val
  })
  structure(out, class = c("coef.lmm", "coef.mer"))
}

#' @export
print.coef.lmm <- function(x, ...) {
  print(unclass(x), ...)
  invisible(x)
}

#' Variance components
#'
#' lme4's structure: one covariance matrix per random-effects term with
#' `attr(, "stddev")` and `attr(, "correlation")`, and the residual standard
#' deviation in `attr(, "sc")`. `(x || g)` terms appear as `g`, `g.1`, ... as in lme4.
#' @param x an `lmm` fit.
#' @param sigma unused (lme4 compatibility).
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' VarCorr(fm)
#' as.data.frame(VarCorr(fm))
#' print(VarCorr(fm), comp = c("Variance", "Std.Dev."))
#' @export
VarCorr.lmm <- function(x, sigma = 1, ...) {
  s <- x$sigma
  mats <- list()
  nms <- character()
  for (ti in seq_along(x$model$terms)) {
    t <- x$model$terms[[ti]]
    k <- length(t$cnms)
    lam <- x$lambda[[ti]]
    if (t$diagonal) {
      # lme4 shows (x || g) as separate 1 x 1 terms g, g.1, ...
      for (j in seq_len(k)) {
        mats[[length(mats) + 1L]] <- vc_matrix(lam[j, j, drop = FALSE], t$cnms[j], s)
        nms <- c(nms, t$group)
      }
    } else {
      mats[[length(mats) + 1L]] <- vc_matrix(lam, t$cnms, s)
      nms <- c(nms, t$group)
    }
  }
  names(mats) <- make.unique(nms)
  structure(mats, sc = s, useSc = TRUE, class = "VarCorr.lmm")
}

vc_matrix <- function(lam, cnms, sigma) {
  v <- sigma^2 * lam %*% t(lam)
  dimnames(v) <- list(cnms, cnms)
  sd <- sqrt(diag(v))
  cor <- v / outer(sd, sd)
  cor[!is.finite(cor)] <- NaN
  diag(cor) <- 1
  structure(v, stddev = stats::setNames(sd, cnms), correlation = cor)
}

#' @export
print.VarCorr.lmm <- function(x, digits = max(3, getOption("digits") - 2),
                              comp = "Std.Dev.", ...) {
  print(format_varcorr(x, digits = digits, comp = comp), quote = FALSE, ...)
  invisible(x)
}

#' @export
as.data.frame.VarCorr.lmm <- function(x, row.names = NULL, optional = FALSE, ...) {
  rows <- lapply(names(x), function(g) {
    v <- x[[g]]
    sd <- attr(v, "stddev")
    cor <- attr(v, "correlation")
    k <- nrow(v)
    nm <- rownames(v)
    out <- data.frame(grp = g, var1 = nm, var2 = NA_character_, vcov = diag(v), sdcor = sd,
                      stringsAsFactors = FALSE)
    if (k > 1L) {
      lt <- which(lower.tri(v), arr.ind = TRUE)
      lt <- lt[order(lt[, 2L], lt[, 1L]), , drop = FALSE]
      out <- rbind(out, data.frame(grp = g, var1 = nm[lt[, 2L]], var2 = nm[lt[, 1L]],
                                   vcov = v[lt], sdcor = cor[lt], stringsAsFactors = FALSE))
    }
    out
  })
  s <- attr(x, "sc")
  out <- do.call(rbind, c(rows, list(data.frame(grp = "Residual", var1 = NA_character_, var2 = NA_character_,
                                                vcov = s^2, sdcor = s, stringsAsFactors = FALSE))))
  rownames(out) <- NULL
  out
}

#' @export
sigma.lmm <- function(object, ...) object$sigma

#' @export
vcov.lmm <- function(object, correlation = FALSE, ...) {
  v <- object$vcov
  if (isTRUE(correlation)) attr(v, "correlation") <- stats::cov2cor(v)
  v
}

#' @export
nobs.lmm <- function(object, ...) object$model$n

# The REML criterion or ML deviance at the fitted parameters, whichever is asked:
# both come from the engine (lme4's devCrit).
dev_crit <- function(object, REML) unname(object$devcomp[[if (REML) "REML" else "ML"]])

#' @export
logLik.lmm <- function(object, REML = NULL, ...) {
  if (is.null(REML) || is.na(REML[1L])) REML <- object$REML
  structure(-dev_crit(object, REML) / 2, nobs = nobs(object), nall = nobs(object),
            df = npar_lmm(object), class = "logLik")
}

#' @export
deviance.lmm <- function(object, REML = NULL, ...) {
  if (object$REML && is.null(REML)) {
    warning("deviance() is deprecated for REML fits; use REMLcrit for the REML criterion or deviance(.,REML=FALSE) for deviance calculated at the REML fit")
    return(dev_crit(object, TRUE))
  }
  dev_crit(object, isTRUE(REML))
}

#' REML criterion of a fit
#' @param object a fitted model.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' REMLcrit(fm)
#' REMLcrit(update(fm, REML = FALSE))
#' @export
REMLcrit <- function(object) UseMethod("REMLcrit")

#' @export
REMLcrit.lmm <- function(object) dev_crit(object, TRUE)

#' @export
REMLcrit.default <- function(object) {
  if (requireNamespace("lme4", quietly = TRUE)) return(lme4::REMLcrit(object))
  mixedrs_abort("REMLcrit() has no method for this object")
}

#' Number of levels of each grouping factor
#' @param object a fitted model.
#' @param ... unused.
#' @examples
#' fm <- lmm(sat ~ sex + (1 | school/student), sim_nested(seed = 3))
#' ngrps(fm)
#' @export
ngrps <- function(object, ...) UseMethod("ngrps")

#' @export
ngrps.lmm <- function(object, ...) {
  idx <- group_index(object)
  vapply(idx, function(ii) nlevels(object$model$terms[[ii[1L]]]$factor), 1)
}

#' @export
ngrps.default <- function(object, ...) defer_method("lme4", "ngrps", object)(object, ...)

#' Is the fit singular?
#'
#' As in lme4: TRUE when a diagonal element of some Λ (whose lower bound is 0)
#' is below `tol`.
#' @param x a fitted model.
#' @param tol tolerance.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' isSingular(fm)
#' @export
isSingular <- function(x, tol = 1e-4) UseMethod("isSingular")

#' @export
isSingular.lmm <- function(x, tol = 1e-4) any(x$theta[x$lower == 0] < tol)

#' @export
isSingular.default <- function(x, tol = 1e-4) {
  if (requireNamespace("lme4", quietly = TRUE)) return(lme4::isSingular(x, tol = tol))
  mixedrs_abort("isSingular() has no method for this object")
}

# The fit's na.action (NULL without dropped rows), which napredict()/naresid() use
# to pad results with NA under na.exclude.
fit_na_action <- function(object) attr(object$model$frame, "na.action")

#' @export
fitted.lmm <- function(object, ...) {
  stats::napredict(fit_na_action(object), stats::setNames(object$fitted, rownames(object$model$frame)))
}

# nlme decorrelates compound symmetry with its own factor, not the Cholesky factor: in
# each group of m rows (in data order), the first normalized residual is the scaled sum
# Σe/√(m(1 + (m − 1)ρ)) and the k-th (k ≥ 1) the Helmert contrast
# (k e_k − Σ_{j<k} e_j)/√((1 − ρ) k (k + 1)) of the Pearson residuals e.
cs_normalized <- function(e, groups, rho) {
  for (idx in split(seq_along(e), groups)) {
    m <- length(idx)
    x <- e[idx]
    k <- seq_len(m - 1L)
    e[idx] <- c(sum(x) / sqrt(m * (1 + (m - 1) * rho)),
                (k * x[-1L] - cumsum(x)[k]) / sqrt((1 - rho) * k * (k + 1)))
  }
  e
}

#' @export
residuals.lmm <- function(object, type = c("response", "pearson", "working", "deviance", "partial", "normalized"),
                          scaled = FALSE, ...) {
  type <- match.arg(type)
  if (type == "partial") mixedrs_abort("partial residuals are not implemented yet", kind = "not_available")
  r <- object$model$y - object$fitted
  # nlme's normalized residuals: decorrelated and standardized, (V C)^-1 r / sigma
  if (type == "normalized") {
    r <- if (identical(object$correlation$class, "corCompSymm")) {
      cs_normalized(r / (object$var_sd %||% 1) / object$sigma, object$model$cor$groups, coef(object$correlation))
    } else if (is.null(object$whitened_residuals)) r / object$sigma else object$whitened_residuals / object$sigma
    if (!is.null(object$model$weights)) r <- r * sqrt(object$model$weights)
    names(r) <- rownames(object$model$frame)
    return(stats::naresid(fit_na_action(object), r))
  }
  names(r) <- rownames(object$model$frame)
  if (type %in% c("pearson", "deviance") && !is.null(object$model$weights)) r <- r * sqrt(object$model$weights)
  # with a variance function, nlme's Pearson residuals divide by each row's v_i
  if (type %in% c("pearson", "deviance") && !is.null(object$var_sd)) r <- r / object$var_sd
  if (scaled) r <- r / object$sigma
  stats::naresid(fit_na_action(object), r)
}

#' @export
model.matrix.lmm <- function(object, type = c("fixed", "random"), ...) {
  type <- match.arg(type)
  if (type == "fixed") return(object$model$X)
  blocks <- lapply(object$model$terms, function(t) {
    n <- length(t$factor)
    k <- ncol(t$Z)
    nl <- nlevels(t$factor)
    Z <- matrix(0, n, nl * k, dimnames = list(NULL, rep(levels(t$factor), each = k)))
    for (a in seq_len(k)) Z[cbind(seq_len(n), (as.integer(t$factor) - 1L) * k + a)] <- t$Z[, a]
    Z
  })
  do.call(cbind, blocks)
}

#' @export
formula.lmm <- function(x, fixed.only = FALSE, random.only = FALSE, ...) {
  if (missing(fixed.only) && random.only) fixed.only <- FALSE
  if (fixed.only && random.only) mixedrs_abort("can't specify 'only fixed' and 'only random' terms")
  if (fixed.only) return(x$model$parsed$fixed)
  if (random.only) {
    f <- x$formula
    bars <- find_bars(f[[3L]])
    f[[3L]] <- Reduce(function(a, b) call("+", a, b), lapply(bars, function(b) call("(", b)))
    return(f)
  }
  x$formula
}

#' @export
terms.lmm <- function(x, fixed.only = TRUE, random.only = FALSE, ...) {
  if (missing(fixed.only) && random.only) fixed.only <- FALSE
  if (fixed.only && random.only) mixedrs_abort("can't specify 'only fixed' and 'only random' terms")
  if (fixed.only) {
    tt <- x$model$fixed_terms
    full <- attr(x$model$frame, "terms")
    # the data classes of the fixed part's variables, as model.frame() gives them
    dc <- attr(full, "dataClasses")
    vars <- vapply(as.list(attr(tt, "variables"))[-1L], deparse1, "")
    attr(tt, "dataClasses") <- dc[intersect(vars, names(dc))]
    return(tt)
  }
  if (random.only) return(with_predvars(stats::terms(bars_to_plus_formula(formula.lmm(x, random.only = TRUE))), x$model$frame))
  attr(x$model$frame, "terms")
}

bars_to_plus_formula <- function(f) {
  f[[length(f)]] <- bars_to_plus(f[[length(f)]])
  f
}

#' @export
model.frame.lmm <- function(formula, fixed.only = FALSE, ...) {
  fr <- formula$model$frame
  if (!isTRUE(fixed.only)) return(fr)
  tt <- terms.lmm(formula, fixed.only = TRUE)
  vars <- vapply(as.list(attr(tt, "variables"))[-1L], deparse1, "")
  keep <- names(fr) %in% vars
  out <- fr[keep]
  attr(out, "terms") <- tt
  out
}

#' @export
weights.lmm <- function(object, ...) {
  w <- object$model$weights
  if (is.null(w)) rep(1, nobs(object)) else w
}

#' @export
df.residual.lmm <- function(object, ...) nobs(object) - npar_lmm(object)

#' @export
getCall.lmm <- function(x, ...) x$call

# update() as stats' default method does it (the call re-evaluated where update() was
# called); defined so that no other class of the fit (lmerTest's legacy
# "merModLmerTest") takes it.
#' @export
update.lmm <- function(object, ...) {
  call <- sys.call()
  call[[1L]] <- utils::getS3method("update", "default")
  eval(call, parent.frame())
}
