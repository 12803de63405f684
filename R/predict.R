#' Predictions from an lmm fit
#'
#' As lme4's `predict()`: the fixed part on the data (or `newdata`) plus the
#' random effects that `re.form` selects. Data-dependent bases in the formula
#' (`poly()`, `ns()`, `scale()`) are evaluated on `newdata` with the coefficients they
#' had in the fit.
#' @param object an `lmm` fit.
#' @param newdata optional data frame; the fitted data when NULL.
#' @param newparams not supported (lme4's alternative parameters).
#' @param re.form `NULL` (all random effects), `NA` or `~0` (none), or a formula
#'   naming some of the model's random-effects terms, e.g. `~ (1 | Subject)`.
#' @param random.only the random-effects part alone.
#' @param terms not supported (as in lme4).
#' @param type "link" or "response" (the same for a linear mixed model).
#' @param allow.new.levels if TRUE, levels not seen in the fit (and missing
#'   grouping values) get random effect 0.
#' @param na.action how to treat rows of `newdata` with missing values; without
#'   `newdata`, `na.exclude` pads the predictions with `NA` where the fit dropped rows.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' head(predict(fm))
#' predict(fm, newdata = data.frame(Days = 0:2, Subject = "new"), allow.new.levels = TRUE)
#' predict(fm, newdata = data.frame(Days = 0:2), re.form = NA)
#' @export
predict.lmm <- function(object, newdata = NULL, newparams = NULL, re.form = NULL, random.only = FALSE,
                        terms = NULL, type = c("link", "response"), allow.new.levels = FALSE,
                        na.action = stats::na.pass, ...) {
  type <- match.arg(type)
  if (!is.null(terms)) mixedrs_abort("terms functionality for predict not yet implemented", kind = "not_available")
  if (!is.null(newparams)) mixedrs_abort("predict(newparams =) is not available for lmm fits; refit instead", kind = "not_available")
  model <- object$model
  selected <- re_selection(object, re.form)
  fit_na <- attr(model$frame, "na.action")
  if (is.null(newdata)) {
    if (is.null(re.form) && !random.only) {
      pred <- unname(object$fitted)
    } else {
      pred <- if (random.only) rep(0, nobs(object)) else fixed_part(object)
      for (i in seq_along(model$terms)) {
        cols <- selected[[i]]
        if (length(cols)) pred <- pred + term_contribution(model$terms[[i]]$Z[, cols, drop = FALSE],
                                                           as.integer(model$terms[[i]]$factor), object$b[[i]][, cols, drop = FALSE])
      }
    }
    names(pred) <- rownames(model$frame)
    if (!missing(na.action) && !is.null(fit_na)) class(fit_na) <- class(attr(na.action(NA), "na.action"))
    return(stats::napredict(fit_na, pred))
  }
  if (!is.data.frame(newdata)) mixedrs_abort("'newdata' must be a data frame")
  fx <- newdata_fixed(object, newdata, na.action)
  rows <- fx$rows
  nd <- newdata[rows, , drop = FALSE]
  pred <- if (random.only) rep(0, length(rows)) else {
    eta <- x_beta(fx$X, object$beta)
    if (!is.null(fx$offset)) eta + fx$offset else eta
  }
  for (i in seq_along(model$terms)) {
    cols <- selected[[i]]
    if (!length(cols)) next
    t <- model$terms[[i]]
    zt <- newdata_term(t, nd)
    lev <- match(zt$group, levels(t$factor))
    if (anyNA(lev) && !allow.new.levels) {
      if (anyNA(zt$group)) {
        mixedrs_abort("NAs are not allowed in prediction data for grouping variables unless allow.new.levels is TRUE")
      }
      mixedrs_abort(sprintf("new levels detected in newdata: %s", paste(unique(zt$group[is.na(lev)]), collapse = ", ")))
    }
    contrib <- term_contribution(zt$Z[, cols, drop = FALSE], ifelse(is.na(lev), 1L, lev), object$b[[i]][, cols, drop = FALSE])
    contrib[is.na(lev)] <- 0
    pred <- pred + contrib
  }
  names(pred) <- rownames(nd)
  stats::napredict(fx$na_action, pred)
}

# Xβ (plus any offset) on the fitted data.
fixed_part <- function(object) {
  eta <- x_beta(object$model$X, object$beta)
  if (!is.null(object$model$offset)) eta <- unname(eta + object$model$offset)
  eta
}

# Xβ as a plain vector. Not drop() or as.vector(): they expand X's deferred row names
# (on 1M rows, 0.4 s for strings nobody reads); dim<- drops them unread.
x_beta <- function(X, beta) {
  eta <- X %*% beta
  dim(eta) <- NULL
  eta
}

# Σ_a Z[, a] b[level, a] for each row.
term_contribution <- function(Z, level, b) rowSums(Z * b[level, , drop = FALSE])

# Which columns of each term re.form keeps: all (NULL), none (NA or ~0), or those of
# the bars it names, matched to the model's terms by grouping factor and column.
re_selection <- function(object, re.form) {
  terms <- object$model$terms
  all_cols <- lapply(terms, function(t) seq_along(t$cnms))
  if (is.null(re.form)) return(all_cols)
  none <- lapply(terms, function(t) integer(0))
  if (length(re.form) == 1L && !inherits(re.form, "formula") && is.na(re.form)) return(none)
  if (!inherits(re.form, "formula")) mixedrs_abort("re.form must be NULL, NA or a formula such as ~ (1 | g)")
  rhs <- expand_double_verts(re.form[[length(re.form)]])
  bars <- find_bars(rhs)
  if (length(bars) == 0L) return(none)
  out <- none
  frame <- object$model$frame
  for (b in bars) {
    for (g in expand_slash(b[[3L]])) {
      gname <- deparse1(g)
      cn <- lhs_columns(b[[2L]], frame, gname)$cnms
      hit <- FALSE
      for (i in seq_along(terms)) {
        if (terms[[i]]$group != gname || !all(cn %in% terms[[i]]$cnms)) next
        out[[i]] <- sort(unique(c(out[[i]], match(cn, terms[[i]]$cnms))))
        hit <- TRUE
        break
      }
      if (!hit) mixedrs_abort(sprintf("random-effects term (%s | %s) in re.form is not in the model", deparse1(b[[2L]]), gname))
    }
  }
  out
}

# The fixed-effects matrix (columns as in the fit) and offset for new data, with the
# fit's predvars and factor levels; rows dropped by na.action are left out (`rows`
# are the rows of newdata kept).
newdata_fixed <- function(object, newdata, na.action = stats::na.pass) {
  model <- object$model
  tt <- stats::delete.response(model$fixed_terms)
  xlev <- stats::.getXlevels(tt, model$frame)
  mf <- tryCatch(stats::model.frame(tt, newdata, xlev = xlev, na.action = na.action),
                 error = function(e) mixedrs_abort(paste("could not evaluate the fixed effects on newdata:", conditionMessage(e))))
  rows <- if (is.null(attr(mf, "na.action"))) seq_len(nrow(newdata)) else seq_len(nrow(newdata))[-attr(mf, "na.action")]
  X <- stats::model.matrix(tt, mf, contrasts.arg = attr(model$X, "contrasts"))
  missing_cols <- setdiff(names(object$beta), colnames(X))
  if (length(missing_cols)) mixedrs_abort(sprintf("newdata gives no column for %s", paste(missing_cols, collapse = ", ")))
  list(X = X[, names(object$beta), drop = FALSE], offset = stats::model.offset(mf), rows = rows,
       na_action = attr(mf, "na.action"))
}

# One random-effects term's columns (with the fit's predvars) and grouping values (as
# character) for new data.
newdata_term <- function(t, newdata) {
  Z <- do.call(cbind, lapply(t$pieces, function(p) {
    mf <- stats::model.frame(p$terms, newdata, na.action = stats::na.pass)
    stats::model.matrix(p$terms, mf)
  }))
  group <- tryCatch(group_factor(str2lang(t$group), newdata), error = function(e) {
    mixedrs_abort(sprintf("grouping variable for '%s' not found in newdata", t$group))
  })
  list(Z = Z[, t$cnms, drop = FALSE], group = as.character(group), factor = group)
}
