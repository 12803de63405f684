#' Predictions from an lmm fit
#'
#' @param object an `lmm` fit.
#' @param newdata optional data frame; the fitted data when NULL.
#' @param re.form NULL (all random effects), or NA / `~0` (none), as in lme4.
#' @param allow.new.levels if TRUE, levels not seen in the fit get random effect 0.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' head(predict(fm))
#' predict(fm, newdata = data.frame(Days = 0:2, Subject = "new"), allow.new.levels = TRUE)
#' predict(fm, newdata = data.frame(Days = 0:2), re.form = NA)
#' @export
predict.lmm <- function(object, newdata = NULL, re.form = NULL, allow.new.levels = FALSE, ...) {
  no_re <- (length(re.form) == 1L && is.na(re.form)) ||
    (inherits(re.form, "formula") && length(re.form) == 2L && identical(re.form[[2L]], 0))
  if (!is.null(re.form) && !no_re) mixedrs_abort("re.form must be NULL, NA or ~0")
  model <- object$model
  if (is.null(newdata)) {
    if (!no_re) return(stats::fitted(object))
    eta <- drop(model$X %*% object$beta)
    if (!is.null(model$offset)) eta <- eta + model$offset
    return(stats::setNames(eta, rownames(model$frame)))
  }
  if (!is.data.frame(newdata)) mixedrs_abort("'newdata' must be a data frame")
  fx <- newdata_fixed(object, newdata)
  eta <- drop(fx$X %*% object$beta)
  if (!is.null(fx$offset)) eta <- eta + fx$offset
  if (!no_re) {
    for (i in seq_along(model$terms)) {
      t <- model$terms[[i]]
      zt <- newdata_term(t, newdata)
      Z <- zt$Z
      g <- zt$group
      lev <- match(g, levels(t$factor))
      if (anyNA(lev) && !allow.new.levels) {
        mixedrs_abort(sprintf("new levels detected in newdata: %s",
                              paste(unique(g[is.na(lev)]), collapse = ", ")))
      }
      bt <- object$b[[i]]
      contrib <- rowSums(Z * bt[ifelse(is.na(lev), 1L, lev), , drop = FALSE])
      contrib[is.na(lev)] <- 0
      eta <- eta + contrib
    }
  }
  stats::setNames(eta, rownames(newdata))
}

# The fixed-effects matrix (columns as in the fit) and offset for new data.
newdata_fixed <- function(object, newdata) {
  model <- object$model
  tt <- stats::delete.response(stats::terms(model$parsed$fixed, data = model$frame))
  xlev <- stats::.getXlevels(tt, model$frame)
  mf <- stats::model.frame(tt, newdata, xlev = xlev, na.action = stats::na.pass)
  X <- stats::model.matrix(tt, mf, contrasts.arg = attr(model$X, "contrasts"))
  list(X = X[, names(object$beta), drop = FALSE], offset = stats::model.offset(mf))
}

# One random-effects term's columns and grouping values (as character) for new data.
newdata_term <- function(t, newdata) {
  Z <- stats::model.matrix(t$lhs_formula, stats::model.frame(t$lhs_formula, newdata, na.action = stats::na.pass))
  list(Z = Z[, t$cnms, drop = FALSE], group = as.character(group_factor(parse(text = t$group)[[1L]], newdata)))
}
