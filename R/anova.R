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

contrasts_type2 <- function(object) {
  X <- object$model$X
  tt <- fixed_terms(object)
  labels <- attr(tt, "term.labels")
  if (ncol(X) <= 1L || length(labels) <= 1L) return(contrasts_type1(object))
  contained <- containment(tt, data_classes(object))
  marginal <- labels[lengths(contained) == 0L]
  cols <- term_columns(tt, X)
  out <- contrasts_marginal(object, marginal)
  for (term in setdiff(labels, marginal)) {
    move <- unlist(cols[c(term, contained[[term]])])
    Xnew <- cbind(X[, -move, drop = FALSE], X[, move, drop = FALSE])
    owner <- c(rep("", ncol(X) - length(move)), rep(c(term, contained[[term]]), lengths(cols[c(term, contained[[term]])])))
    Lc <- doolittle_t(crossprod(Xnew))
    out[[term]] <- Lc[owner == term, colnames(X), drop = FALSE]
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
  w <- cells$count
  Xu <- X[cells$rows, , drop = FALSE]
  attr(Xu, "assign") <- attr(X, "assign")
  codings <- unlist(attr(X, "contrasts"))
  treatment <- length(codings) > 0L && all(vapply(codings, is.character, TRUE)) && all(codings == "contr.treatment")
  Xt <- Xu
  if (!treatment) {
    facs <- names(attr(X, "contrasts"))
    Xt <- stats::model.matrix(tt, object$model$frame[cells$rows, , drop = FALSE],
                              contrasts.arg = stats::setNames(rep(list("contr.treatment"), length(facs)), facs))
    # weighted by sqrt(count), the distinct rows have the full data's R factor
    qx <- qr(Xt * sqrt(w), tol = 1e-7)
    if (qx$rank < ncol(Xt)) {
      keep <- qx$pivot[seq_len(qx$rank)]
      asgn <- attr(Xt, "assign")[keep]
      Xt <- Xt[, keep, drop = FALSE]
      attr(Xt, "assign") <- asgn
    }
  }
  rdX <- full_design(object, cells$rows)
  # ginv(Xt) %*% rdX through the normal equations (Xt has full column rank), with the
  # counts as weights: the same cross products as on all rows
  XtX_inv <- ginv(crossprod(Xt, Xt * w))
  L <- zapsmall(t(XtX_inv %*% crossprod(Xt * w, rdX)))
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
    map <- zapsmall(XtX_inv %*% crossprod(Xt * w, Xu))
    out <- lapply(out, function(Lt) Lt %*% map)
  }
  out
}

fixed_anova <- function(object, type, ddf) {
  type <- as.character(type)[1L]
  type <- switch(type, "1" = , I = "I", "2" = , II = "II", "3" = , III = "III",
                 mixedrs_abort(sprintf("anova(): type '%s' is not one of \"III\", \"II\", \"I\"", type)))
  Ls <- switch(type, I = contrasts_type1(object), II = contrasts_type2(object), III = contrasts_type3(object))
  rows <- lapply(Ls, function(L) contest_md(object, L, ddf = ddf))
  tab <- do.call(rbind, c(list(f_table(numeric(0), numeric(0), numeric(0), numeric(0))), rows))
  rownames(tab) <- names(Ls)[vapply(rows, nrow, 1L) > 0L]
  method <- if (ddf == "Kenward-Roger") "Kenward-Roger's" else "Satterthwaite's"
  structure(tab, heading = paste("Type", type, "Analysis of Variance Table with", method, "method"),
            hypotheses = Ls, class = c("anova", "data.frame"))
}

#' ANOVA tables for lmm fits
#'
#' With one fit: lmerTest's F table for the fixed-effect terms (type III by
#' default, Satterthwaite's df). With several fits: likelihood-ratio tests as
#' lme4's `anova()` prints them; REML fits are refitted by ML first unless
#' `refit = FALSE`.
#' @param object an `lmm` fit.
#' @param ... further fits (`lmm`, `merMod` or `lm`) to compare.
#' @param type "III", "II" or "I".
#' @param ddf "Satterthwaite", "Kenward-Roger" or "lme4" (no df: F values only).
#' @param refit refit REML fits by ML before comparing.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' anova(fm)
#' anova(fm, type = "II", ddf = "Kenward-Roger")
#' fm0 <- lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
#' anova(fm0, fm)
#' @export
anova.lmm <- function(object, ..., type = c("III", "II", "I", "3", "2", "1"),
                      ddf = c("Satterthwaite", "Kenward-Roger", "lme4"), refit = TRUE) {
  dots <- list(...)
  is_fit <- vapply(dots, function(d) inherits(d, c("lmm", "merMod", "lm")), TRUE)
  if (any(is_fit)) {
    mcall <- match.call(expand.dots = FALSE)
    names <- c(deparse1(mcall$object), vapply(mcall$...[is_fit], deparse1, ""))
    return(lrt_anova(c(list(object), dots[is_fit]), names, refit, object))
  }
  ddf <- check_ddf(ddf, object)
  if (ddf == "lme4") return(lme4_style_anova(object))
  fixed_anova(object, type[1L], ddf)
}

# lme4's own anova of one fit: sequential sums of squares from the Cholesky of Var(β̂).
lme4_style_anova <- function(object) {
  tt <- fixed_terms(object)
  labels <- attr(tt, "term.labels")
  cols <- term_columns(tt, object$model$X)[labels]
  R <- chol(solve(object$vcov))
  effects <- drop(R %*% object$beta) * object$sigma
  ss <- vapply(cols, function(cl) sum(effects[cl]^2), 0)
  df <- lengths(cols)
  ms <- ss / df
  tab <- data.frame(npar = df, `Sum Sq` = ss, `Mean Sq` = ms, `F value` = ms / object$sigma^2,
                    check.names = FALSE, row.names = labels)
  structure(tab, heading = "Analysis of Variance Table", class = c("anova", "data.frame"))
}

lrt_anova <- function(fits, names, refit, first) {
  fits <- lapply(fits, function(f) {
    if (refit && inherits(f, "lmm") && f$REML) return(refit_ml(f))
    if (refit && inherits(f, "merMod") && lme4::isREML(f)) return(lme4::refitML(f))
    f
  })
  if (refit && any(vapply(list(first), function(f) inherits(f, "lmm") && f$REML, TRUE))) {
    message("refitting model(s) with ML (instead of REML)")
  }
  n <- vapply(fits, stats::nobs, 1)
  if (length(unique(n)) > 1L) mixedrs_abort("models were not all fitted to the same size of dataset")
  ll <- lapply(fits, stats::logLik)
  npar <- vapply(ll, function(l) attr(l, "df"), 1)
  ord <- order(npar)
  ll <- ll[ord]
  npar <- npar[ord]
  names <- names[ord]
  llv <- vapply(ll, as.numeric, 1)
  dev <- -2 * llv
  chisq <- c(NA, pmax(0, -diff(dev)))
  dfs <- c(NA, diff(npar))
  tab <- data.frame(npar = npar, AIC = dev + 2 * npar, BIC = dev + log(n[1L]) * npar, logLik = llv,
                    deviance = dev, Chisq = chisq, Df = dfs,
                    `Pr(>Chisq)` = c(NA, p_value("chisq", chisq[-1L], dfs[-1L])),
                    check.names = FALSE, row.names = names)
  forms <- vapply(fits[ord], function(f) deparse1(stats::formula(f)), "")
  dname <- if (inherits(first, "lmm")) data_name(first) else NULL
  structure(tab, heading = c(paste("Data:", if (is.null(dname)) "NULL" else dname), "Models:",
                             paste0(names, ": ", forms)),
            class = c("anova", "data.frame"))
}

# The same model fitted by ML.
refit_ml <- function(object) {
  res <- engine_fit(object$model, REML = FALSE, object$control)
  fit <- package_fit(object$model, res, REML = FALSE, object$call, object$control)
  fit$call$REML <- FALSE
  fit
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

#' @rdname ranova
#' @export
ranova.lmm <- function(model, reduce.terms = TRUE, ...) {
  parsed <- model$model$parsed
  fixed_rhs <- deparse1(parsed$fixed[[length(parsed$fixed)]])
  bars <- unlist(lapply(parsed$bars, function(b) {
    lhs <- deparse1(b$lhs)
    if (b$double) {
      # (x || g) is (1 | g) + (0 + x | g): its pieces are tested one by one
      cols <- attr(stats::terms(stats::as.formula(paste("~", lhs))), "term.labels")
      icpt <- attr(stats::terms(stats::as.formula(paste("~", lhs))), "intercept")
      pieces <- c(if (icpt) "1" else NULL, paste("0 +", cols))
      return(lapply(pieces, function(pc) list(lhs = pc, group = deparse1(b$group))))
    }
    list(list(lhs = lhs, group = deparse1(b$group)))
  }), recursive = FALSE)
  bar_text <- vapply(bars, function(b) paste0(b$lhs, " | ", b$group), "")
  full_rhs <- paste(c(fixed_rhs, paste0("(", bar_text, ")")), collapse = " + ")
  resp <- deparse1(parsed$response)
  full_form <- stats::as.formula(paste(resp, "~", full_rhs), env = environment(model$formula))
  forms <- list()
  for (i in seq_along(bars)) {
    rest <- if (length(bar_text) > 1L) paste0("(", bar_text[-i], ")") else character(0)
    lhs_terms <- stats::terms(stats::as.formula(paste("~", bars[[i]]$lhs)))
    labels <- attr(lhs_terms, "term.labels")
    if (!reduce.terms || length(labels) == 0L) {
      forms[[paste0("(", bar_text[i], ")")]] <- c(fixed_rhs, rest)
    } else {
      for (lab in labels) {
        left <- setdiff(labels, lab)
        new_lhs <- if (length(left) == 0L) {
          if (attr(lhs_terms, "intercept")) "1" else NULL
        } else paste(c(if (!attr(lhs_terms, "intercept")) "0" else NULL, left), collapse = " + ")
        extra <- if (is.null(new_lhs)) NULL else paste0("(", new_lhs, " | ", bars[[i]]$group, ")")
        forms[[paste(lab, paste0("in (", bar_text[i], ")"))]] <- c(fixed_rhs, rest, extra)
      }
    }
  }
  rows <- list(c(npar = attr(logLik(model), "df"), logLik = as.numeric(logLik(model))))
  full_forms <- list()
  for (nm in names(forms)) {
    f <- stats::as.formula(paste(resp, "~", paste(forms[[nm]], collapse = " + ")), env = environment(model$formula))
    full_forms[[nm]] <- f
    fit <- refit_formula(model, f)
    if (stats::nobs(fit) != stats::nobs(model)) mixedrs_abort("number of rows in use has changed: remove missing values?")
    ll <- stats::logLik(fit, REML = model$REML)
    rows[[length(rows) + 1L]] <- c(npar = attr(ll, "df"), logLik = as.numeric(ll))
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
            formulae = forms, formulae_full = full_forms, class = c("anova", "data.frame"))
}

# Refit `model` with another formula on the same data, subset, weights and offset:
# lmm() while random effects remain, lm() after.
refit_formula <- function(model, formula) {
  m <- model$model
  if (length(find_bars(formula[[3L]])) == 0L) {
    call <- m$mf_call
    call[[1L]] <- quote(stats::lm)
    call$formula <- formula
    call$contrasts <- m$contrasts
    return(eval(call, m$env))
  }
  new_model <- suppressMessages(build_model(formula, m$mf_call, m$env, m$contrasts, model$control, m$correlation))
  res <- engine_fit(new_model, model$REML, model$control)
  fit <- package_fit(new_model, res, model$REML, model$call, model$control)
  fit$call$formula <- formula
  fit
}
