# lmerTest's interface to tests of contrasts and least-squares means: contest(),
# contest1D(), contestMD(), ls_means() (lsmeansLT(), difflsmeans()) and show_tests().
# The generics are exported here too; for other classes each defers to lmerTest.

#' Tests of linear contrasts of the fixed effects
#'
#' `contest(m, L)` tests `L %*% beta = rhs`, as lmerTest's `contest()`: with
#' `joint = TRUE` one F test per contrast matrix (Satterthwaite's or Kenward–Roger's
#' df), otherwise one t test per row. `L` may be a list of contrasts.
#' `contest1D()` is the t test of one contrast vector, `contestMD()` the F test of a
#' contrast matrix.
#' @param model an `lmm` fit.
#' @param L a contrast vector or matrix with one column per fixed effect, or a list of them.
#' @param rhs right-hand side, 0 by default.
#' @param joint one joint F test (TRUE) or a t test per row.
#' @param collect bind the results of a list `L` into one table.
#' @param confint,level add Wald intervals with the t df to the t tests.
#' @param check_estimability set contrasts that are not estimable (with aliased
#'   columns of X) to NA.
#' @param ddf "Satterthwaite", "Kenward-Roger" or "lme4".
#' @param eps tolerance on the eigenvalues of Var(Lβ) (contestMD).
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' contest(fm, c(0, 1))
#' contest(fm, diag(2), joint = FALSE)
#' contest1D(fm, c(0, 1), confint = TRUE)
#' contestMD(fm, diag(2))
#' @export
contest <- function(model, L, ...) UseMethod("contest")

#' @export
contest.default <- function(model, L, ...) defer_method("lmerTest", "contest", model)(model, L, ...)

#' @rdname contest
#' @export
contest.lmm <- function(model, L, rhs = 0, joint = TRUE, collect = TRUE, confint = TRUE, level = 0.95,
                        check_estimability = FALSE, ddf = c("Satterthwaite", "Kenward-Roger", "lme4"), ...) {
  ddf <- check_ddf(ddf, model)
  if (ddf == "lme4") ddf <- "Satterthwaite"
  is_list <- is.list(L)
  if (!is_list) L <- list(L)
  res <- lapply(L, function(l) {
    if (!is.matrix(l)) l <- matrix(l, nrow = 1L)
    if (!is.numeric(l)) mixedrs_abort("'L' must be a numeric vector or matrix")
    if (joint) return(contestMD.lmm(model, l, rhs = rhs, ddf = ddf))
    if (check_estimability) l <- estimable_or_na(model, l)
    r <- if (length(rhs) == 1L) rep(rhs, nrow(l)) else rhs
    tab <- do.call(rbind, lapply(seq_len(nrow(l)), function(i) {
      contest1D.lmm(model, l[i, ], rhs = r[i], ddf = ddf, confint = confint, level = level)
    }))
    if (!is.null(rownames(l))) rownames(tab) <- rownames(l)
    tab
  })
  if (collect) do.call(rbind, res) else res
}

#' @rdname contest
#' @export
contest1D <- function(model, L, ...) UseMethod("contest1D")

#' @export
contest1D.default <- function(model, L, ...) defer_method("lmerTest", "contest1D", model)(model, L, ...)

#' @rdname contest
#' @export
contest1D.lmm <- function(model, L, rhs = 0, ddf = c("Satterthwaite", "Kenward-Roger"), confint = FALSE,
                          level = 0.95, ...) {
  ddf <- match.arg(ddf)
  ddf <- check_ddf(ddf, model)
  if (is.matrix(L)) {
    if (min(dim(L)) != 1L) mixedrs_abort("contest1D(): 'L' must be a vector or a one-row matrix")
    L <- drop(L)
  }
  if (length(L) == 0L && length(model$beta) == 0L) {
    cols <- c("Estimate", "Std. Error", "df", "t value", if (confint) c("lower", "upper"), "Pr(>|t|)")
    return(as.data.frame(matrix(numeric(0), 0L, length(cols), dimnames = list(NULL, cols)), check.names = FALSE))
  }
  if (!is.numeric(L) || length(L) != length(model$beta)) {
    mixedrs_abort(sprintf("contrast has length %d, but the model has %d fixed effects", length(L), length(model$beta)))
  }
  if (!is.numeric(rhs) || length(rhs) != 1L) mixedrs_abort("'rhs' must be a single number")
  if (anyNA(L)) {
    out <- data.frame(Estimate = NA_real_, `Std. Error` = NA_real_, df = NA_real_, `t value` = NA_real_, check.names = FALSE)
    if (confint) out[c("lower", "upper")] <- NA_real_
    out[["Pr(>|t|)"]] <- NA_real_
    return(out)
  }
  contest_1d(model, L, rhs = rhs, ddf = ddf, confint = confint, level = level)
}

#' @rdname contest
#' @export
contestMD <- function(model, L, ...) UseMethod("contestMD")

#' @export
contestMD.default <- function(model, L, ...) defer_method("lmerTest", "contestMD", model)(model, L, ...)

#' @rdname contest
#' @export
contestMD.lmm <- function(model, L, rhs = 0, ddf = c("Satterthwaite", "Kenward-Roger"),
                          eps = sqrt(.Machine$double.eps), ...) {
  ddf <- match.arg(ddf)
  ddf <- check_ddf(ddf, model)
  if (!is.matrix(L)) L <- matrix(L, ncol = length(L))
  if (anyNA(L)) return(f_table(NA_real_, NA_real_, NA_real_, NA_real_))
  contest_md(model, L, rhs = rhs, ddf = ddf, eps = eps)
}

# Contrast rows that are not estimable (they reach into the null space of the full,
# rank-deficient design) set to NA, then restricted to X's kept columns.
estimable_or_na <- function(model, L) {
  XX <- full_rank_free_design(model)
  if (ncol(L) != ncol(XX)) {
    mixedrs_abort(sprintf("Contrast has length/ncol %d, expecting length/ncol %d when checking estimability.", ncol(L), ncol(XX)))
  }
  N <- null_space(XX)
  if (length(N)) L[abs(rowSums(L %*% N)) >= sqrt(.Machine$double.eps), ] <- NA_real_
  L[, match(colnames(model$model$X), colnames(XX)), drop = FALSE]
}

# X before aliased columns were dropped.
full_rank_free_design <- function(model) {
  stats::model.matrix(model$model$fixed_terms, model$model$frame, contrasts.arg = attr(model$model$X, "contrasts"))
}

# Right null space of A, by SVD.
null_space <- function(A, tol = 1e-8) {
  if (length(A) == 0L) return(matrix(numeric(0)))
  s <- svd(A, nv = ncol(A))
  rank <- sum(s$d > max(tol * s$d[1L], 0))
  if (rank == ncol(A)) return(matrix(numeric(0), ncol(A), 0))
  s$v[, if (rank == 0L) seq_len(ncol(A)) else -seq_len(rank), drop = FALSE]
}

#' Least-squares means, as lmerTest's ls_means()
#'
#' The population marginal means of every factor term of the fixed part (numeric
#' variables at their means, other factors averaged with equal weights), with
#' Satterthwaite's or Kenward–Roger's df and Wald intervals; with `pairwise = TRUE`
#' (or `difflsmeans()`) their pairwise differences. `lsmeansLT()` is another name
#' for `ls_means()`. Means that are not estimable are NA.
#' @param model an `lmm` fit.
#' @param which factor terms (all by default).
#' @param level confidence level.
#' @param ddf "Satterthwaite" or "Kenward-Roger".
#' @param pairwise pairwise differences instead of the means.
#' @param ... unused.
#' @examples
#' fm <- lmm(angle ~ recipe + temperature + (1 | recipe:replicate), lme4::cake)
#' ls_means(fm, which = "recipe")
#' difflsmeans(fm, which = "recipe")
#' @export
ls_means <- function(model, ...) UseMethod("ls_means")

#' @export
ls_means.default <- function(model, ...) defer_method("lmerTest", "ls_means", model)(model, ...)

#' @rdname ls_means
#' @export
ls_means.lmm <- function(model, which = NULL, level = 0.95, ddf = c("Satterthwaite", "Kenward-Roger"),
                         pairwise = FALSE, ...) {
  ddf <- match.arg(ddf)
  Ls <- lsmeans_contrasts(model, which)
  if (pairwise) Ls <- lapply(Ls, function(L) crossprod(pair_differences(rownames(L)), L))
  XX <- full_rank_free_design(model)
  N <- null_space(XX)
  keep <- match(colnames(model$model$X), colnames(XX))
  empty <- contest1D.lmm(model, rep(NA_real_, length(model$beta)), ddf = ddf, confint = TRUE, level = level)[0L, ]
  means <- do.call(rbind, c(list(empty), lapply(names(Ls), function(term) {
    L <- Ls[[term]]
    if (length(N)) L[abs(rowSums(L %*% N)) >= sqrt(.Machine$double.eps), ] <- NA_real_
    L <- L[, keep, drop = FALSE]
    tab <- do.call(rbind, lapply(seq_len(nrow(L)), function(i) {
      contest1D.lmm(model, L[i, ], ddf = ddf, confint = TRUE, level = level)
    }))
    rownames(tab) <- rownames(L)
    tab
  })))
  structure(means, response = deparse1(model$model$parsed$response), confidence_level = level, ddf = ddf,
            hypotheses = Ls, heading = if (pairwise) "Least Squares Means table:\n" else "Least Squares Means table:\n",
            class = c("lmm_ls_means", "ls_means", "data.frame"))
}

#' @rdname ls_means
#' @export
lsmeansLT <- function(model, ...) UseMethod("lsmeansLT")

#' @export
lsmeansLT.default <- function(model, ...) defer_method("lmerTest", "lsmeansLT", model)(model, ...)

#' @rdname ls_means
#' @export
lsmeansLT.lmm <- function(model, which = NULL, level = 0.95, ddf = c("Satterthwaite", "Kenward-Roger"),
                          pairwise = FALSE, ...) {
  ls_means.lmm(model, which = which, level = level, ddf = ddf, pairwise = pairwise)
}

#' @rdname ls_means
#' @export
difflsmeans <- function(model, ...) UseMethod("difflsmeans")

#' @export
difflsmeans.default <- function(model, ...) defer_method("lmerTest", "difflsmeans", model)(model, ...)

#' @rdname ls_means
#' @export
difflsmeans.lmm <- function(model, which = NULL, level = 0.95, ddf = c("Satterthwaite", "Kenward-Roger"), ...) {
  ls_means.lmm(model, which = which, level = level, ddf = ddf, pairwise = TRUE)
}

# The terms of the fixed part whose variables are all factors.
factor_terms <- function(model) {
  tt <- fixed_terms(model)
  labels <- attr(tt, "term.labels")
  classes <- data_classes(model)
  facs <- names(classes)[classes %in% c("factor", "ordered")]
  fac <- attr(tt, "factors")
  labels[vapply(labels, function(l) all(rownames(fac)[fac[, l] > 0] %in% facs), TRUE)]
}

# One contrast matrix per factor term: the equally weighted means over a grid of
# every factor's levels, with numeric variables at their means.
lsmeans_contrasts <- function(model, which = NULL) {
  terms <- factor_terms(model)
  if (is.null(which)) which <- terms
  if (!is.character(which) || !all(which %in% terms)) {
    mixedrs_abort(sprintf("'which' must name factor terms of the model: %s", paste(terms, collapse = ", ")))
  }
  tt <- stats::delete.response(fixed_terms(model))
  frame <- model$model$frame
  vars <- vapply(as.list(attr(tt, "variables"))[-1L], deparse1, "")
  grid_vars <- lapply(stats::setNames(vars, vars), function(v) {
    x <- frame[[v]]
    if (is.factor(x)) levels(x) else if (is.numeric(x) && is.null(dim(x))) mean(x) else NULL
  })
  grid_vars <- grid_vars[!vapply(grid_vars, is.null, TRUE)]
  grid <- do.call(expand.grid, c(grid_vars, list(KEEP.OUT.ATTRS = FALSE, stringsAsFactors = TRUE)))
  for (v in names(grid)) if (is.factor(frame[[v]])) grid[[v]] <- factor(grid[[v]], levels = levels(frame[[v]]))
  uX <- stats::model.matrix(tt, grid, contrasts.arg = attr(model$model$X, "contrasts"))
  fac <- attr(tt, "factors")
  lapply(stats::setNames(which, which), function(term) {
    in_term <- rownames(fac)[fac[, term] > 0]
    contr <- stats::setNames(rep(list("contr.treatment"), length(in_term)), in_term)
    Lt <- stats::model.matrix(stats::as.formula(paste("~ 0 +", term)), grid, contrasts.arg = contr)
    L <- t(sweep(Lt, 2L, 1 / colSums(Lt), "*")) %*% uX
    L
  })
}

# Pairwise differences of named means: one column per pair, +1 and -1.
pair_differences <- function(levs) {
  if (length(levs) < 2L) return(matrix(numeric(0), length(levs), 0, dimnames = list(levs, NULL)))
  pairs <- utils::combn(seq_along(levs), 2L)
  A <- matrix(0, length(levs), ncol(pairs), dimnames = list(levs, paste(levs[pairs[1L, ]], levs[pairs[2L, ]], sep = " - ")))
  A[cbind(pairs[1L, ], seq_len(ncol(pairs)))] <- 1
  A[cbind(pairs[2L, ], seq_len(ncol(pairs)))] <- -1
  A
}

#' @export
print.lmm_ls_means <- function(x, digits = max(getOption("digits") - 2L, 3L),
                               signif.stars = getOption("show.signif.stars"), ...) {
  if (!is.null(heading <- attr(x, "heading"))) cat(heading, sep = "\n")
  y <- as.data.frame(unclass(x), check.names = FALSE, row.names = rownames(x))
  if (nrow(y) > 0L) y$df <- round(y$df, 1L)
  stats::printCoefmat(as.matrix(y), digits = digits, signif.stars = signif.stars, has.Pvalue = TRUE,
                      cs.ind = c(1:2, 5:6), tst.ind = 4L)
  cat(paste0("\n  Confidence level: ", format(100 * attr(x, "confidence_level"), digits = 2), "%\n"))
  cat("  Degrees of freedom method:", attr(x, "ddf"), "\n")
  invisible(x)
}

#' @export
as.data.frame.lmm_ls_means <- function(x, ..., add_levels = TRUE) {
  hyp <- attr(x, "hypotheses")
  out <- data.frame(unclass(x), check.names = FALSE, row.names = rownames(x))
  if (!add_levels) return(out)
  strip <- function(term, labels) {
    pat <- paste(paste0("^", strsplit(term, ":", fixed = TRUE)[[1L]]), collapse = "|")
    one <- function(l) vapply(strsplit(l, ":", fixed = TRUE), function(p) paste(gsub(pat, "", p), collapse = ":"), "")
    if (length(labels) && all(grepl(" - ", labels, fixed = TRUE))) {
      vapply(strsplit(labels, " - ", fixed = TRUE), function(pr) paste(one(pr), collapse = " - "), "")
    } else one(labels)
  }
  levs <- lapply(names(hyp), function(t) strip(t, rownames(hyp[[t]])))
  cbind(term = rep(names(hyp), lengths(levs)), levels = unlist(levs), out, stringsAsFactors = FALSE)
}

#' The hypotheses behind a table of tests
#'
#' As lmerTest's `show_tests()`: the contrast matrices of an `anova()`, `drop1()` or
#' `ls_means()` table (its `"hypotheses"` attribute).
#' @param object a table with a `"hypotheses"` attribute.
#' @param fractions show the entries as fractions (MASS::fractions).
#' @param names keep the dimnames.
#' @param ... unused.
#' @examples
#' fm <- lmm(angle ~ recipe * temperature + (1 | recipe:replicate), lme4::cake)
#' show_tests(anova(fm), fractions = TRUE)$recipe
#' @export
show_tests <- function(object, ...) UseMethod("show_tests")

#' @rdname show_tests
#' @export
show_tests.default <- function(object, fractions = FALSE, names = TRUE, ...) {
  tests <- attr(object, "hypotheses")
  if (is.null(tests)) mixedrs_abort("'object' does not have an 'hypotheses' attribute")
  if (fractions) tests <- lapply(tests, MASS::fractions)
  if (names) tests else lapply(tests, unname)
}

#' Satterthwaite's F test of a contrast, as lmerTest's calcSatterth()
#'
#' @param model an `lmm` fit (other fits are handed to lmerTest).
#' @param L a contrast matrix with one column per fixed effect.
#' @return a list with `denom`, `Fstat`, `pvalue` and `ndf`, as lmerTest's.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' calcSatterth(fm, cbind(0, 1))
#' @export
calcSatterth <- function(model, L) {
  if (!inherits(model, "lmm")) return(defer_function("lmerTest", "calcSatterth")(model, L))
  x <- contestMD.lmm(model, L)
  list(denom = x[["DenDF"]], Fstat = as.matrix(x[["F value"]]), pvalue = as.matrix(x[["Pr(>F)"]]), ndf = x[["NumDF"]])
}
