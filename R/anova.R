# F tables for the fixed-effect terms (types I, II, III as lmerTest defines them),
# likelihood-ratio tests between fits, and ranova().

# The fixed part's terms, with the data classes lmerTest's containment rule needs.
fixed_terms <- function(object) object$model$fixed_terms

data_classes <- function(object) attr(attr(object$model$frame, "terms"), "dataClasses")

# Columns of X belonging to each term ("(Intercept)" included when present).
term_columns <- function(tt, X) {
  asgn <- attr(X, "assign")
  labels <- attr(tt, "term.labels")
  col_terms <- if (attr(tt, "intercept") > 0) c("(Intercept)", labels)[asgn + 1L] else labels[asgn]
  nm <- union(unique(col_terms), labels)
  out <- stats::setNames(rep(list(integer(0)), length(nm)), nm)
  idx <- split(seq_along(col_terms), col_terms)
  out[names(idx)] <- idx
  out
}

# For each term, the terms that contain it (all its variables and more, with the
# same numeric variables): lmerTest's marginality rule.
containment <- function(tt, classes) {
  labels <- attr(tt, "term.labels")
  fac <- attr(tt, "factors")
  vars <- lapply(stats::setNames(labels, labels), function(l) rownames(fac)[fac[, l] > 0])
  numerics <- lapply(vars, function(v) v[classes[v] %in% "numeric"])
  lapply(stats::setNames(labels, labels), function(l1) {
    v1 <- vars[[l1]]
    labels[vapply(labels, function(l2) {
      v2 <- vars[[l2]]
      all(v1 %in% v2) && length(setdiff(v2, v1)) > 0L && setequal(numerics[[l1]], numerics[[l2]])
    }, TRUE)]
  })
}

# Rows of the unit-lower-triangular factor of a Doolittle LU of X'X, i.e. of the
# Cholesky factor with its rows scaled to a unit diagonal (lmerTest zeroes |x| < 1e-6).
doolittle_t <- function(XtX) {
  R <- chol(XtX, pivot = FALSE)
  Lt <- R / diag(R)
  Lt[abs(Lt) < 1e-6] <- 0
  dimnames(Lt) <- dimnames(XtX)
  Lt
}

contrasts_type1 <- function(object) {
  X <- object$model$X
  tt <- fixed_terms(object)
  p <- ncol(X)
  if (p == 0L) return(list())
  if (p == 1L && attr(tt, "intercept")) return(list())
  L <- doolittle_t(crossprod(X))
  lapply(term_columns(tt, X)[attr(tt, "term.labels")], function(rows) L[rows, , drop = FALSE])
}

contrasts_marginal <- function(object, which) {
  X <- object$model$X
  cols <- term_columns(fixed_terms(object), X)
  I <- diag(ncol(X))
  dimnames(I) <- list(colnames(X), colnames(X))
  lapply(stats::setNames(which, which), function(term) I[cols[[term]], , drop = FALSE])
}

# lmerTest's type II ("unfolded"): marginal hypotheses for the terms no other term
# contains, the type II contrast for the rest; `unfolded = FALSE` is its "2b", the
# type II contrast for every term.
contrasts_type2 <- function(object, unfolded = TRUE, which = NULL) {
  X <- object$model$X
  tt <- fixed_terms(object)
  labels <- attr(tt, "term.labels")
  if (is.null(which) && (ncol(X) <= 1L || length(labels) <= 1L)) return(contrasts_type1(object))
  contained <- containment(tt, data_classes(object))
  marginal <- if (unfolded) labels[lengths(contained) == 0L] else character(0)
  if (!is.null(which)) marginal <- intersect(marginal, which)
  cols <- term_columns(tt, X)
  out <- contrasts_marginal(object, marginal)
  for (term in setdiff(if (is.null(which)) labels else which, marginal)) {
    move <- unlist(cols[c(term, contained[[term]])])
    if (length(cols[[term]]) == 0L) {
      # an aliased term: no columns, no hypothesis
      out[[term]] <- matrix(0, 0L, ncol(X), dimnames = list(NULL, colnames(X)))
      next
    }
    Xnew <- cbind(X[, -move, drop = FALSE], X[, move, drop = FALSE])
    owner <- c(rep("", ncol(X) - length(move)), rep(c(term, contained[[term]]), lengths(cols[c(term, contained[[term]])])))
    Lc <- doolittle_t(crossprod(Xnew))
    out[[term]] <- Lc[owner == term, colnames(X), drop = FALSE]
  }
  out[if (is.null(which)) labels else which]
}

# lmerTest's "yates" hypotheses: marginal for terms no other term contains, the
# differences of equally weighted marginal means (Yates's weighted squares of means)
# for factor terms that others contain, type II for the remaining (numeric) terms.
contrasts_yates <- function(object) {
  tt <- fixed_terms(object)
  labels <- attr(tt, "term.labels")
  contained <- containment(tt, data_classes(object))
  marginal <- labels[lengths(contained) == 0L]
  yates <- intersect(setdiff(labels, marginal), factor_terms(object))
  type2 <- setdiff(labels, c(marginal, yates))
  out <- c(if (length(marginal)) contrasts_marginal(object, marginal),
           if (length(type2)) contrasts_type2(object, unfolded = FALSE, which = type2))
  XX <- full_rank_free_design(object)
  N <- null_space(XX)
  keep <- match(colnames(object$model$X), colnames(XX))
  for (term in yates) {
    means <- lsmeans_contrasts(object, term)[[term]]
    if (length(N) && any(abs(rowSums(means %*% N)) >= sqrt(.Machine$double.eps))) {
      warning(sprintf("Yates contrast is not uniquely defined for: %s", term), call. = FALSE)
    }
    levs <- rownames(means)
    diffs <- rbind(-1, diag(length(levs) - 1L))
    L <- t(diffs) %*% means
    rownames(L) <- paste(levs[-1L], levs[1L], sep = " - ")
    out[[term]] <- L[, keep, drop = FALSE]
  }
  out[labels]
}

# The distinct rows of the fixed-effects variables and how often each occurs. The
# type III hypotheses depend on the data only through cross products, so they are
# built on these rows, weighted by the counts (28 rows instead of 73,421 for
# InstEval's service*dept). Without the variables at hand, every row, each once.
fixed_cells <- function(object) {
  frame <- object$model$frame
  n <- nrow(frame)
  vars <- all.vars(stats::delete.response(fixed_terms(object)))
  if (length(vars) == 0L || !all(vars %in% names(frame))) return(list(rows = seq_len(n), count = rep(1, n)))
  key <- rep(1, n)
  for (v in vars) {
    x <- frame[[v]]
    if (!is.atomic(x) || !is.null(dim(x))) return(list(rows = seq_len(n), count = rep(1, n)))
    code <- if (is.factor(x)) as.integer(x) else match(x, unique(x))
    code[is.na(code)] <- 0L
    # recoded (1..distinct) only when the combined key could lose integer precision
    if (max(key) * (max(code) + 1) > 2^50) key <- match(key, unique(key))
    key <- key * (max(code) + 1) + code
  }
  key <- match(key, unique(key))
  list(rows = match(seq_len(max(key)), key), count = tabulate(key))
}

# Design with one column per level of every factor ("rdX" in lmerTest), on `rows`.
full_design <- function(object, rows) {
  tt <- fixed_terms(object)
  labels <- attr(tt, "term.labels")
  frame <- object$model$frame[rows, , drop = FALSE]
  blocks <- lapply(labels, function(l) stats::model.matrix(stats::as.formula(paste("~ 0 +", l)), data = frame))
  rdX <- do.call(cbind, c(list(matrix(numeric(0), nrow(frame), 0)), blocks))
  nms <- unlist(lapply(blocks, colnames))
  if (attr(tt, "intercept") != 0) {
    rdX <- cbind(1, rdX)
    nms <- c("(Intercept)", nms)
  }
  colnames(rdX) <- nms
  if (any(zero <- colSums(rdX != 0) == 0)) {
    message(sprintf("Missing cells for: %s. \nInterpret type III hypotheses with care.", paste(nms[zero], collapse = ", ")))
  }
  rdX
}

contrasts_type3 <- function(object) {
  X <- object$model$X
  tt <- fixed_terms(object)
  labels <- attr(tt, "term.labels")
  if (ncol(X) <= 1L || length(labels) <= 1L) return(contrasts_type1(object))
  cells <- fixed_cells(object)
  sw <- sqrt(cells$count)
  Xu <- X[cells$rows, , drop = FALSE]
  attr(Xu, "assign") <- attr(X, "assign")
  codings <- unlist(attr(X, "contrasts"))
  facs <- names(attr(X, "contrasts"))
  treatment <- length(codings) == 0L ||
    (all(vapply(codings, is.character, TRUE)) && all(codings == "contr.treatment"))
  Xt <- Xu
  if (!treatment) {
    Xt <- stats::model.matrix(tt, object$model$frame[cells$rows, , drop = FALSE],
                              contrasts.arg = stats::setNames(rep(list("contr.treatment"), length(facs)), facs))
    # weighted by sqrt(count), the distinct rows have the full data's R factor
    qx <- qr(Xt * sw, tol = 1e-7)
    if (qx$rank < ncol(Xt)) {
      keep <- qx$pivot[seq_len(qx$rank)]
      asgn <- attr(Xt, "assign")[keep]
      Xt <- Xt[, keep, drop = FALSE]
      attr(Xt, "assign") <- asgn
    }
  }
  rdX <- full_design(object, cells$rows)
  # ginv(Xt) %*% rdX (Xt has full column rank), by least squares on the distinct rows
  # weighted by sqrt(count): the same solution as on all rows, and by QR, not the
  # normal equations, which lose the digits this needs when a covariate is far from 0
  qt <- qr(Xt * sw)
  L <- zapsmall(t(qr.coef(qt, rdX * sw)))
  L[is.na(L)] <- 0
  dimnames(L) <- list(colnames(rdX), colnames(Xt))
  cols <- term_columns(tt, Xt)
  contained <- containment(tt, data_classes(object))
  for (term in labels[order(attr(tt, "order"), decreasing = TRUE)]) {
    if (length(cont <- contained[[term]]) > 0L) {
      Lc <- L[, unlist(cols[cont]), drop = FALSE]
      L[, cols[[term]]] <- zapsmall(stats::resid(stats::lm.fit(x = Lc, y = L[, cols[[term]], drop = FALSE])))
    }
  }
  L <- L[colnames(Xt), , drop = FALSE]
  out <- lapply(cols[labels], function(cl) {
    Lt <- t(L[, cl, drop = FALSE])
    Lt[rowSums(abs(Lt)) > 1e-8, , drop = FALSE]
  })
  if (!treatment) {
    map <- zapsmall(qr.coef(qt, Xu * sw))
    out <- lapply(out, function(Lt) Lt %*% map)
  }
  out
}

fixed_anova <- function(object, type, ddf) {
  type <- as.character(type)[1L]
  type <- switch(type, "1" = , I = "I", "2" = , II = "II", "3" = , III = "III", marginal = "marginal",
                 "2b" = "IIb", yates = "yates",
                 mixedrs_abort(sprintf("anova(): type '%s' is not one of \"III\", \"II\", \"I\", \"marginal\", \"2b\", \"yates\"", type)))
  labels <- attr(fixed_terms(object), "term.labels")
  few <- ncol(object$model$X) <= 1L || length(labels) <= 1L
  Ls <- switch(type, I = contrasts_type1(object), II = contrasts_type2(object), III = contrasts_type3(object),
               marginal = if (few) contrasts_type1(object) else contrasts_marginal(object, labels),
               IIb = if (few) contrasts_type1(object) else contrasts_type2(object, unfolded = FALSE),
               yates = if (few) contrasts_type1(object) else contrasts_yates(object))
  rows <- lapply(Ls, function(L) contest_md(object, L, ddf = ddf))
  tab <- do.call(rbind, c(list(f_table(numeric(0), numeric(0), numeric(0), numeric(0))), rows))
  rownames(tab) <- names(Ls)[vapply(rows, nrow, 1L) > 0L]
  # terms without a hypothesis (aliased) get a row of NA, as lmerTest gives them
  if (length(missing_terms <- setdiff(names(Ls), rownames(tab)))) {
    na_rows <- tab[rep(NA_integer_, length(missing_terms)), , drop = FALSE]
    rownames(na_rows) <- missing_terms
    tab <- rbind(tab, na_rows)
  }
  method <- if (ddf == "Kenward-Roger") "Kenward-Roger's" else "Satterthwaite's"
  title <- switch(type, marginal = "Marginal", IIb = "Type IIb", yates = "Yates", paste("Type", type))
  structure(tab, heading = paste(title, "Analysis of Variance Table with", method, "method"),
            hypotheses = Ls, class = c("anova", "data.frame"))
}

#' Model comparisons that include an lmm fit, whatever comes first
#'
#' stats' `anova()`, with one addition: when the first model is not an lmm fit but a
#' later one is, the comparison is made here. lme4's and lmerTest's methods, which
#' would otherwise handle `anova(lmer_fit, lmm_fit)`, keep only models of their own
#' classes and would drop the lmm fit without a word. An lme4 or `lm()` fit is
#' compared with the lmm fits by likelihood ratio, as [anova.lmm()] compares them;
#' a model of another class (nlme's `lme`, say) is an error. Every other call goes
#' to stats' `anova()` unchanged, its arguments evaluated once, where they were
#' written.
#' @param object a fitted model.
#' @param ... further models and options, as for [stats::anova()].
#' @examples
#' fm1 <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' fm0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
#' anova(fm0, fm1)
#' @export
anova <- function(object, ...) {
  call <- sys.call()
  env <- parent.frame()
  mixed <- anova_led_by_other(call, env)
  if (!is.null(mixed)) return(mixed)
  call[[1L]] <- quote(stats::anova)
  eval(call, env)
}

# A comparison whose first model is not an lmm fit and a later one is: the models are
# read from the call without evaluating anything but names (a call such as lmer(...)
# stays unevaluated unless this comparison needs it); NULL when stats' anova() should
# handle the call.
anova_led_by_other <- function(call, env) {
  args <- as.list(call)[-1L]
  if (length(args) < 2L) return(NULL)
  nms <- names(args) %||% rep("", length(args))
  models <- nzchar(nms) == FALSE | nms == "object"
  # names, and extractions such as fits$m1 or fits[["m1"]], are read; other calls are not
  value_of <- function(e) {
    if (is.symbol(e)) return(if (identical(e, quote(...))) NULL else get0(as.character(e), envir = env))
    if (!is.call(e)) return(e)
    if (is.symbol(e[[1L]]) && as.character(e[[1L]]) %in% c("$", "[[", "(")) tryCatch(eval(e, env), error = function(err) NULL) else NULL
  }
  vals <- lapply(args[models], value_of)
  first <- vals[[1L]]
  if (is.null(first) || inherits(first, "lmm")) return(NULL)
  if (!any(vapply(vals[-1L], inherits, NA, "lmm"))) return(NULL)
  if (!comparable_fit(first)) {
    mixedrs_abort(sprintf("anova(): cannot compare an object of class '%s' with an lmm fit; refit it with lmm(), lme4::lmer() or lm()",
                          class(first)[1L]))
  }
  fits <- Map(function(v, e) if (is.null(v)) eval(e, env) else v, vals, args[models])
  bad <- !vapply(fits, comparable_fit, NA)
  if (any(bad)) {
    mixedrs_abort(sprintf("anova(): cannot compare an object of class '%s' with an lmm fit; refit it with lmm(), lme4::lmer() or lm()",
                          class(fits[bad][[1L]])[1L]))
  }
  opt <- function(name, default) if (name %in% nms) eval(args[[name]], env) else default
  names <- opt("model.names", vapply(args[models], deparse1, ""))
  lrt_anova(fits, names, opt("refit", TRUE))
}

#' ANOVA tables for lmm fits
#'
#' With one fit: lmerTest's F table for the fixed-effect terms (type III by
#' default, Satterthwaite's df). With several fits: likelihood-ratio tests as
#' lme4's `anova()` prints them; REML fits are refitted by ML first unless
#' `refit = FALSE`. Fits that cannot be compared (of another class) are an error,
#' never dropped.
#' @param object an `lmm` fit.
#' @param ... further fits (`lmm`, `merMod` or `lm`) to compare.
#' @param type "III", "II" or "I" (or 3, 2, 1).
#' @param ddf "Satterthwaite", "Kenward-Roger" or "lme4" (no df: F values only).
#' @param refit refit REML fits by ML before comparing.
#' @param model.names names for the models of a comparison (default: as written in the call).
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' anova(fm)
#' anova(fm, type = "II", ddf = "Kenward-Roger")
#' fm0 <- lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
#' anova(fm0, fm)
#' @method anova lmm
#' @export
anova.lmm <- function(object, ..., type = c("III", "II", "I", "3", "2", "1"),
                      ddf = c("Satterthwaite", "Kenward-Roger", "lme4"), refit = TRUE, model.names = NULL) {
  dots <- list(...)
  is_fit <- vapply(dots, comparable_fit, TRUE)
  nms <- names(dots)
  if (is.null(nms)) nms <- rep("", length(dots))
  other <- !is_fit & !nzchar(nms)
  if (any(other)) {
    cls <- vapply(dots[other], function(d) class(d)[1L], "")
    mixedrs_abort(sprintf("anova(): cannot compare an lmm fit with an object of class '%s'; refit it with lmm(), lme4::lmer() or lm()",
                          cls[1L]))
  }
  if (any(is_fit)) {
    mcall <- match.call(expand.dots = FALSE)
    names <- model.names
    if (is.null(names)) {
      names <- c(deparse1(mcall$object), vapply(mcall$...[is_fit], deparse1, ""))
      if (any(duplicated(names)) || max(nchar(names)) > 200 || any(substr(names, 1L, 4L) %in% c("new(", "list"))) {
        warning("failed to find model names, assigning generic names", call. = FALSE)
        names <- paste0("MODEL", seq_along(names))
      }
    }
    fits <- c(list(object), dots[is_fit])
    if (length(names) != length(fits)) mixedrs_abort("model names vector and model list have different lengths")
    return(lrt_anova(fits, names, refit))
  }
  if (any(nzchar(nms))) warning(paste0("additional arguments ignored: ", paste(sQuote(nms[nzchar(nms)]), collapse = ", ")), call. = FALSE)
  ddf <- check_ddf(ddf, object)
  if (ddf == "lme4") return(lme4_style_anova(object))
  fixed_anova(object, type[1L], ddf)
}

# Fits a likelihood-ratio comparison can take: ours, lme4's and lm()'s.
comparable_fit <- function(d) inherits(d, c("lmm", "merMod", "lm"))

# lme4's own anova of one fit: sequential sums of squares from R_X.
lme4_style_anova <- function(object) {
  tt <- fixed_terms(object)
  X <- object$model$X
  asgn <- attr(X, "assign")
  p <- ncol(X)
  if (p == 0L) {
    return(structure(data.frame(npar = integer(0), `Sum Sq` = numeric(0), `Mean Sq` = numeric(0), `F value` = numeric(0),
                                check.names = FALSE), heading = "Analysis of Variance Table", class = c("anova", "data.frame")))
  }
  effects <- drop(lme4_rx(object) %*% object$beta)
  ss <- vapply(split(effects^2, asgn), sum, 0)
  df <- lengths(split(asgn, asgn))
  labels <- c("(Intercept)", attr(tt, "term.labels"))[sort(unique(asgn)) + 1L]
  ms <- ss / df
  tab <- data.frame(npar = df, `Sum Sq` = ss, `Mean Sq` = ms, `F value` = ms / object$sigma^2,
                    check.names = FALSE, row.names = labels)
  tab <- tab[labels != "(Intercept)", , drop = FALSE]
  structure(tab, heading = "Analysis of Variance Table", class = c("anova", "data.frame"))
}

# lme4's likelihood-ratio table of several fits, ordered by their number of parameters.
lrt_anova <- function(fits, names, refit) {
  names(fits) <- names
  reml <- vapply(fits, function(f) (inherits(f, "lmm") && isTRUE(f$REML)) ||
                   (inherits(f, "merMod") && lme4::isREML(f)), TRUE)
  if (refit) {
    if (any(reml)) message("refitting model(s) with ML (instead of REML)")
    fits[reml] <- lapply(fits[reml], function(f) if (inherits(f, "lmm")) refitML.lmm(f) else lme4::refitML(f))
  } else if (any(reml) && any(!reml)) {
    warning("some models fit with REML = TRUE, some not", call. = FALSE)
  }
  n <- vapply(fits, stats::nobs, 1)
  if (length(unique(n)) > 1L) mixedrs_abort("models were not all fitted to the same size of dataset")
  ll <- lapply(fits, stats::logLik)
  npar <- vapply(ll, function(l) attr(l, "df"), 1)
  ord <- order(npar)
  fits <- fits[ord]
  ll <- ll[ord]
  npar <- npar[ord]
  calls <- lapply(fits, stats::getCall)
  data <- lapply(calls, `[[`, "data")
  if (!all(vapply(data, identical, NA, data[[1L]]))) mixedrs_abort("all models must be fit to the same data object")
  header <- paste("Data:", if (is.null(data[[1L]])) "NULL" else deparse1(data[[1L]]))
  subset <- lapply(calls, `[[`, "subset")
  if (!all(vapply(subset, identical, NA, subset[[1L]]))) mixedrs_abort("all models must use the same subset")
  if (!is.null(subset[[1L]])) header <- c(header, paste("Subset:", deparse1(subset[[1L]])))
  llv <- vapply(ll, as.numeric, 1)
  chisq <- 2 * pmax(0, c(NA, diff(llv)))
  dfs <- c(NA, diff(npar))
  p <- rep(NA_real_, length(dfs))
  ok <- !is.na(dfs) & dfs != 0
  p[ok] <- p_value("chisq", chisq[ok], dfs[ok])
  tab <- data.frame(npar = npar, AIC = -2 * llv + 2 * npar, BIC = -2 * llv + log(n[1L]) * npar, logLik = llv,
                    deviance = -2 * llv, Chisq = chisq, Df = dfs, `Pr(>Chisq)` = p,
                    check.names = FALSE, row.names = names(fits))
  forms <- vapply(fits, function(f) deparse1(stats::formula(f)), "")
  structure(tab, heading = c(header, "Models:", paste0(names(fits), ": ", forms)),
            class = c("anova", "data.frame"))
}

#' Likelihood-ratio tests for the random-effects terms
#'
#' As lmerTest's `ranova()`: each random-effects term is removed (or, with
#' `reduce.terms = TRUE`, reduced to a random intercept when it has slopes) and
#' the reduced model is refitted with the same criterion.
#' @param model an `lmm` fit.
#' @param reduce.terms reduce slope terms rather than removing them.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' ranova(fm)
#' ranova(fm, reduce.terms = FALSE)
#' @export
ranova <- function(model, reduce.terms = TRUE, ...) UseMethod("ranova")

#' @export
ranova.default <- function(model, reduce.terms = TRUE, ...) defer_function("lmerTest", "ranova")(model, reduce.terms = reduce.terms, ...)

#' @rdname ranova
#' @export
rand <- function(model, reduce.terms = TRUE, ...) ranova(model, reduce.terms = reduce.terms, ...)

#' @rdname ranova
#' @export
ranova.lmm <- function(model, reduce.terms = TRUE, ...) {
  parsed <- model$model$parsed
  fixed_rhs <- deparse1(parsed$fixed[[length(parsed$fixed)]])
  bars <- vapply(parsed$bars, bar_text, "")
  resp <- deparse1(parsed$response)
  env <- environment(model$formula)
  full_form <- stats::as.formula(paste(resp, "~", paste(c(fixed_rhs, paste0("(", bars, ")")), collapse = " + ")), env = env)
  forms <- ranova_formulas(bars, full_form, reduce.terms)
  ll <- logLik(model)
  rows <- list(c(npar = attr(ll, "df"), logLik = as.numeric(ll)))
  for (f in forms) {
    fit <- refit_formula(model, f)
    if (stats::nobs(fit) != stats::nobs(model)) mixedrs_abort("number of rows in use has changed: remove missing values?")
    llf <- stats::logLik(fit, REML = model$REML)
    rows[[length(rows) + 1L]] <- c(npar = attr(llf, "df"), logLik = as.numeric(llf))
  }
  ll <- do.call(rbind, rows)
  tab <- data.frame(npar = ll[, "npar"], logLik = ll[, "logLik"], AIC = -2 * ll[, "logLik"] + 2 * ll[, "npar"],
                    LRT = NA_real_, Df = NA_real_, `Pr(>Chisq)` = NA_real_, check.names = FALSE)
  if (nrow(tab) > 1L) {
    tab$LRT[-1L] <- 2 * (tab$logLik[1L] - tab$logLik[-1L])
    tab$Df[-1L] <- tab$npar[1L] - tab$npar[-1L]
    tab[-1L, "Pr(>Chisq)"] <- p_value("chisq", tab$LRT[-1L], ifelse(tab$Df[-1L] > 0, tab$Df[-1L], NA))
  }
  rownames(tab) <- c("<none>", names(forms))
  structure(tab, heading = c("ANOVA-like table for random-effects: Single term deletions", "\nModel:", deparse1(full_form)),
            formulae = forms, formulae_full = forms, class = c("anova", "data.frame"))
}

# lmerTest's reduced formulas, one per test. A term whose left-hand side has terms
# beyond the intercept (in the sense of drop.scope()) is reduced term by term, each
# replaced by the rest of the left-hand side, or by an intercept when nothing else is
# left ((0 + x | g) becomes (1 | g)); a term (1 | g), or any term with
# reduce.terms = FALSE, is removed.
ranova_formulas <- function(bars, full_form, reduce.terms) {
  env <- environment(full_form)
  upd <- function(change) {
    f <- stats::update.formula(full_form, stats::as.formula(paste("~ .", change), env = env))
    environment(f) <- env
    f
  }
  forms <- list()
  for (bar in bars) {
    parts <- strsplit(bar, " | ", fixed = TRUE)[[1L]]
    lhs <- stats::as.formula(paste("~", parts[1L]), env = env)
    group <- paste(parts[-1L], collapse = " | ")
    labels <- attr(stats::terms(lhs), "term.labels")
    scope <- if (length(labels)) stats::drop.scope(lhs) else character(0)
    if (!reduce.terms || length(scope) == 0L) {
      forms[[paste0("(", bar, ")")]] <- upd(paste0("- (", bar, ")"))
      next
    }
    for (scp in scope) {
      new_lhs <- if (setequal(labels, scp)) "1" else {
        gsub("~", "", deparse1(stats::update.formula(lhs, stats::as.formula(paste("~ . -", scp)))), fixed = TRUE)
      }
      forms[[paste(scp, paste0("in (", bar, ")"))]] <- upd(paste0("- (", bar, ") + (", trimws(new_lhs), " | ", group, ")"))
    }
  }
  forms
}

# Refit `model` with another formula on the same data, subset, weights and offset:
# lmm() while random effects remain, lm() after.
refit_formula <- function(model, formula) {
  m <- model$model
  glmm_fit <- inherits(model, "glmm")
  if (length(find_bars(formula[[3L]])) == 0L) {
    # no random effects left: lm(), or glm() in the GLMM's family
    call <- m$mf_call
    call[[1L]] <- if (glmm_fit) quote(stats::glm) else quote(stats::lm)
    call$formula <- formula
    if (glmm_fit) call$family <- model$family
    call$contrasts <- m$contrasts
    return(eval(call, m$env))
  }
  control <- model$control
  control$start <- NULL
  if (glmm_fit) {
    fam <- model$family
    new_model <- build_model(formula, m$mf_call, m$env, m$contrasts, control,
                             response = function(y, name) glmm_response(y, name, fam$family))
    fit <- glmm_from_model(new_model, fam, model$nAGQ, control, NULL, model$call)
  } else {
    new_model <- suppressMessages(build_model(formula, m$mf_call, m$env, m$contrasts, control, m$correlation, m$variance,
                                              fitted_values = m$var_fitted))
    res <- engine_fit(new_model, model$REML, control)
    fit <- package_fit(new_model, res, model$REML, model$call, model$control)
  }
  fit$call$formula <- new_model$formula
  fit
}
