# Building the model: model frame, fixed-effects matrix, random-effects terms,
# and lme4's input checks. Nothing here fits anything.

# Evaluate a grouping expression in the model frame. `a:b` means the interaction of
# two factors (levels "a1:b1", ... with the first factor slowest), as in lme4.
group_factor <- function(g, frame) {
  env <- list2env(as.list(frame), parent = environment(group_factor))
  # a:b with levels in interaction(lex.order = TRUE) order, built from the observed
  # combinations only (interaction() enumerates all nlevels(a) * nlevels(b) first)
  env[[":"]] <- function(a, b) {
    a <- as.factor(a)
    b <- as.factor(b)
    key <- (as.double(as.integer(a)) - 1) * nlevels(b) + as.integer(b)
    keys <- sort(unique(key))
    ia <- (keys - 1) %/% nlevels(b) + 1
    ib <- (keys - 1) %% nlevels(b) + 1
    structure(match(key, keys), levels = paste(levels(a)[ia], levels(b)[ib], sep = ":"), class = "factor")
  }
  f <- eval(g, env)
  if (is.null(f)) mixedrs_abort(sprintf("grouping variable '%s' not found", deparse1(g)))
  if (is.factor(f)) {
    # already a factor: only drop unused levels (factor() would re-derive the levels)
    if (all(tabulate(f, nlevels(f)) > 0L)) return(f)
    return(droplevels(f))
  }
  factor(f)
}

# A terms object with the model frame's predvars for its variables, so that a
# data-dependent basis (poly(), ns(), scale()) is evaluated on new data with the
# coefficients it had in the fit, as lm() and lme4 do.
with_predvars <- function(tt, frame) {
  full <- attr(frame, "terms")
  pv <- attr(full, "predvars")
  # nothing data-dependent in the formula: the variables are their own predvars
  if (is.null(pv) || identical(pv, attr(full, "variables"))) return(tt)
  vars <- as.list(attr(full, "variables"))[-1L]
  pv <- stats::setNames(as.list(pv)[-1L], vapply(vars, deparse1, ""))
  own <- as.list(attr(tt, "variables"))[-1L]
  attr(tt, "predvars") <- as.call(c(list(as.name("list")), lapply(own, function(v) {
    p <- pv[[deparse1(v)]]
    if (is.null(p)) v else p
  })))
  tt
}

# The columns of one random-effects term's left-hand side, and its terms (with
# predvars) for new data.
lhs_columns <- function(lhs, frame, gname) {
  tt <- with_predvars(stats::terms(stats::as.formula(call("~", lhs), env = environment(lhs_columns))), frame)
  Z <- stats::model.matrix(tt, frame)
  if (nrow(Z) != nrow(frame) || anyNA(Z)) {
    mixedrs_abort("NA in Z (random-effects model matrix): please use na.action='na.omit' or na.action='na.exclude'")
  }
  if (!all_finite(Z)) mixedrs_abort(sprintf("random-effects model matrix for '%s' has infinite values", gname))
  list(Z = unname(Z), cnms = colnames(Z), terms = tt)
}

# One random-effects term (lhs | group) as it goes to Rust, plus what R needs to
# label results and to rebuild its columns on new data (`pieces`).
make_reterm <- function(lhs, group, frame) {
  gname <- deparse1(group)
  f <- group_factor(group, frame)
  if (anyNA(f)) mixedrs_abort(sprintf("grouping factor '%s' has missing values", gname))
  cols <- lhs_columns(lhs, frame, gname)
  if (ncol(cols$Z) == 0L) mixedrs_abort(sprintf("random-effects term (%s | %s) has no columns", deparse1(lhs), gname))
  list(group = gname, factor = f, cnms = cols$cnms, Z = cols$Z, diagonal = FALSE,
       pieces = list(list(lhs = lhs, terms = cols$terms)))
}

# Adjacent scalar terms on the same grouping factor, such as lme4's expansion of
# (x || g) into (1 | g) + (0 + x | g), share one term with a diagonal Λ: the same
# model and the same θ, with one block instead of several.
merge_scalar_terms <- function(terms) {
  out <- list()
  for (t in terms) {
    last <- if (length(out)) out[[length(out)]] else NULL
    if (!is.null(last) && ncol(t$Z) == 1L && (ncol(last$Z) == 1L || last$diagonal) &&
        identical(last$group, t$group)) {
      last$Z <- cbind(last$Z, t$Z)
      last$cnms <- c(last$cnms, t$cnms)
      last$pieces <- c(last$pieces, t$pieces)
      last$diagonal <- TRUE
      out[[length(out)]] <- last
    } else {
      out[[length(out) + 1L]] <- t
    }
  }
  out
}

# A term as lme4 names it in its checks: "Days | Subject".
term_label <- function(t) paste(paste(vapply(t$pieces, function(p) deparse1(p$lhs), ""), collapse = " + "), "|", t$group)

# lme4's checks of the grouping factors and of Z's size, each with its action.
check_grouping <- function(terms, n, control) {
  ck <- control$checks
  nl <- vapply(terms, function(t) nlevels(t$factor), 1L)
  groups <- vapply(terms, `[[`, "", "group")
  if (any(nl < 2L)) act_on(ck$check.nlev.gtr.1, "grouping factors must have > 1 sampled level")
  if (any(nl >= n)) {
    act_on(ck$check.nobs.vs.nlev, sprintf(
      "number of levels of each grouping factor must be < number of observations (problems: %s)",
      paste(unique(groups[nl >= n]), collapse = ", ")))
  }
  if (any(nl < 5L)) act_on(ck$check.nlev.gtreq.5, "grouping factors with < 5 sampled levels may give unreliable estimates")
  for (t in terms) {
    q <- nlevels(t$factor) * ncol(t$Z)
    if (q >= n) {
      act_on(ck$check.nobs.vs.nRE, sprintf(paste0(
        "number of observations (=%d) <= number of random effects (=%d) for term (%s);",
        " the random-effects parameters and the residual variance (or scale parameter) are probably unidentifiable"),
        n, q, term_label(t)))
    }
  }
  if (ck$check.nobs.vs.rankZ != "ignore") {
    small_only <- grepl("Small$", ck$check.nobs.vs.rankZ)
    q <- sum(vapply(terms, function(t) nlevels(t$factor) * ncol(t$Z), 1))
    if (!(small_only && q * n > 1e6)) {
      rz <- Matrix::rankMatrix(sparse_z(terms, n), method = "qr")
      if (rz >= n) {
        act_on(ck$check.nobs.vs.rankZ, sprintf(paste0(
          "number of observations (=%d) <= rank(Z) (=%d); the random-effects parameters and the",
          " residual variance (or scale parameter) are probably unidentifiable"), n, as.integer(rz)))
      }
    }
  }
}

# Z of all terms as one sparse n x q matrix (columns level by level within a term).
sparse_z <- function(terms, n) {
  blocks <- lapply(terms, function(t) {
    k <- ncol(t$Z)
    Matrix::sparseMatrix(i = rep(seq_len(n), k), j = (rep(as.integer(t$factor), k) - 1L) * k + rep(seq_len(k), each = n),
                         x = as.vector(t$Z), dims = c(n, nlevels(t$factor) * k))
  })
  do.call(cbind, blocks)
}

# Drop aliased fixed-effect columns as lme4's check.rankX asks; the dropped columns
# are kept in attr(, "col.dropped") (their positions, named), as lme4 keeps them.
drop_rank_deficient <- function(X, action = "message+drop.cols") {
  p <- ncol(X)
  if (p == 0L || action == "ignore") return(X)
  # a p x p check first: a clearly full-rank X needs no QR of all n rows. Rows can
  # only add rank, so a clearly full-rank sample of evenly spaced rows settles it
  # (InstEval's 73,421 x 28: 23 ms for all rows, 2 for the sample); else all rows.
  clearly_full_rank <- function(M) {
    xtx <- crossprod(M)
    d <- sqrt(diag(xtx))
    if (!all(d > 0)) return(FALSE)
    ev <- eigen(xtx / outer(d, d), symmetric = TRUE, only.values = TRUE)$values
    min(ev) > 1e-8 * max(ev)
  }
  n <- nrow(X)
  if (n > 20L * p && n > 5000L) {
    rows <- unique(round(seq(1, n, length.out = max(5000L, 20L * p))))
    if (clearly_full_rank(X[rows, , drop = FALSE])) return(X)
  }
  if (clearly_full_rank(X)) return(X)
  qx <- qr(X, tol = 1e-7)
  if (qx$rank == p) return(X)
  if (action == "stop.deficient") {
    mixedrs_abort(sprintf(paste0("the fixed-effects model matrix is column rank deficient (rank(X) = %d < %d = p);\n",
                                 "the fixed effects will be jointly unidentifiable"), qx$rank, p))
  }
  keep <- qx$pivot[seq_len(qx$rank)]
  nd <- p - qx$rank
  msg <- sprintf("fixed-effect model matrix is rank deficient so dropping %d column%s / coefficient%s",
                 nd, if (nd > 1) "s" else "", if (nd > 1) "s" else "")
  if (action == "message+drop.cols") message(msg)
  if (action == "warn+drop.cols") warning(msg, call. = FALSE)
  dropped <- qx$pivot[(qx$rank + 1L):p]
  assign <- attr(X, "assign")
  contr <- attr(X, "contrasts")
  keep <- sort(keep)
  out <- X[, keep, drop = FALSE]
  attr(out, "assign") <- assign[keep]
  attr(out, "contrasts") <- contr
  attr(out, "col.dropped") <- stats::setNames(dropped, colnames(X)[dropped])
  out
}

# lme4's check.scaleX: continuous columns of X whose standard deviations differ by
# more than a factor 1000 from each other or from 1.
check_scale <- function(X, action) {
  if (action == "ignore" || ncol(X) == 0L) return(invisible())
  # a heuristic, so on large data an evenly spaced sample of rows is enough (a 0/1
  # column is 0/1 in any sample); rows by subsetting, as X's row names are deferred
  n <- nrow(X)
  rows <- if (n > 20000L) unique(as.integer(round(seq(1, n, length.out = 20000L)))) else seq_len(n)
  Xs <- unname(X[rows, , drop = FALSE])
  binary <- colSums(Xs == 0 | Xs == 1) == nrow(Xs)
  if (all(binary)) return(invisible())
  cont <- Xs[, !binary, drop = FALSE]
  sds <- sqrt(colSums((cont - rep(colMeans(cont), each = nrow(cont)))^2) / (nrow(cont) - 1))
  ratios <- abs(log(outer(sds, sds, "/")))
  if (any(c(ratios[lower.tri(ratios)], abs(log(sds))) > log(1e3))) {
    if (action %in% c("warning", "stop")) {
      act_on(action, "Some predictor variables are on very different scales: consider rescaling")
    } else if (action != "silent.rescale") {
      # lmm() conditions badly scaled data itself, so nothing is rescaled by hand
      act_on(if (action == "message+rescale") "message" else "warning",
             "Some predictor variables are on very different scales: lmm() conditions them internally")
    }
  }
  invisible()
}

check_response <- function(y, name, control) {
  if (is.logical(y)) y <- as.double(y)
  if (is.factor(y) || is.character(y) || !is.numeric(y)) {
    mixedrs_abort(sprintf("response '%s' must be numeric; lmm fits Gaussian models only", name))
  }
  if (is.matrix(y) && ncol(y) > 1L) mixedrs_abort("the response must be a vector, not a matrix")
  y <- as.double(y)
  r <- range(y)
  if (!all(is.finite(r))) mixedrs_abort(sprintf("NA/NaN/Inf in 'y': the response '%s' has missing or infinite values", name))
  if (r[1L] == r[2L]) {
    act_on(control$checks$check.response.not.const, "Response is constant")
  }
  y
}

# No NA, NaN or Inf in a numeric vector or matrix, without an n-long temporary
# (on large data every temporary costs R's garbage collector a pass).
all_finite <- function(x) length(x) == 0L || (is.finite(min(x)) && is.finite(max(x)))

# lme4's model frame: NA handling by na.action and unused factor levels dropped.
# When no variable has an NA, the frame is built with na.pass and the unused levels
# are dropped here, which avoids na.omit()'s copy of every column and
# model.frame()'s unique() of every factor (on 500,000 rows these copies cost more
# than the fit); otherwise model.frame() does both, exactly as lme4 asks it to.
model_frame <- function(mf_call, env) {
  build <- function(call) tryCatch(eval(call, env), error = function(e) {
    mixedrs_abort(paste("could not build the model frame:", conditionMessage(e)))
  })
  fast <- mf_call
  fast$na.action <- quote(stats::na.pass)
  fast$drop.unused.levels <- FALSE
  frame <- build(fast)
  if (any(vapply(frame, anyNA, TRUE))) {
    mf_call$drop.unused.levels <- TRUE
    frame <- build(mf_call)
    for (j in seq_along(frame)) if (is.character(frame[[j]])) frame[[j]] <- factor(frame[[j]])
    return(frame)
  }
  for (j in seq_along(frame)) {
    f <- frame[[j]]
    if (is.factor(f) && any(tabulate(f, nlevels(f)) == 0L)) frame[[j]] <- f[, drop = TRUE]
    if (is.character(f)) frame[[j]] <- factor(f)
  }
  frame
}

# Model frame, X, y, weights, offset and the sorted random-effects terms.
build_model <- function(formula, mf_call, env, contrasts, control, correlation = NULL, variance = NULL,
                        fitted_values = NULL, response = NULL) {
  orig_call <- mf_call
  parsed <- parse_mixed_formula(formula)
  frame_formula <- parsed$frame
  # the correlation's time and group variables join the frame, so NA handling covers them
  for (v in c(cor_variables(correlation), var_variables(variance))) frame_formula[[3L]] <- call("+", frame_formula[[3L]], v)
  mf_call$formula <- frame_formula
  mf_call[[1L]] <- quote(stats::model.frame)
  check_variance_na(variance, mf_call, env)
  frame <- model_frame(mf_call, env)
  n <- nrow(frame)
  if (n == 0L) mixedrs_abort("0 (non-NA) cases: no observations left after subset and NA removal")
  yname <- deparse1(parsed$response)
  # the response is the frame's first column (model.response() would also build
  # n row names, which costs more than the rest of this function on large data)
  # glmm() reads its response its own way (counts, proportions, factors)
  y <- if (is.null(response)) check_response(frame[[1L]], yname, control) else response(frame[[1L]], yname)

  # the random-effects terms first, as lme4 checks Z before X
  terms <- lapply(parsed$bars, function(b) make_reterm(b$lhs, b$group, frame))
  check_grouping(terms, n, control)
  # largest grouping factor first, ties in formula order (as lme4)
  ord <- order(vapply(terms, function(t) nlevels(t$factor), 1L), decreasing = TRUE, method = "radix")
  terms <- merge_scalar_terms(terms[ord])

  fixed_terms <- with_predvars(stats::terms(parsed$fixed, data = frame), frame)
  X <- stats::model.matrix(fixed_terms, frame, contrasts.arg = contrasts)
  if (nrow(X) != n) mixedrs_abort("NA/NaN/Inf in the fixed-effects model matrix: some of its variables have missing values")
  bad <- if (all_finite(X)) character(0) else colnames(X)[colSums(!is.finite(X)) > 0]
  if (length(bad)) mixedrs_abort(sprintf("NA/NaN/Inf in the fixed-effects model matrix (column%s %s)",
                                         if (length(bad) > 1) "s" else "", paste0("'", bad, "'", collapse = ", ")))
  X <- drop_rank_deficient(X, control$checks$check.rankX)
  check_scale(X, control$checks$check.scaleX)

  w <- stats::model.weights(frame)
  if (!is.null(w)) {
    if (!is.numeric(w) || length(w) != n) mixedrs_abort("weights must be a numeric vector with one value per observation")
    if (any(!is.finite(w))) mixedrs_abort("weights must be finite (no NaN or Inf)")
    if (any(w < 0)) mixedrs_abort("negative weights not allowed")
    if (any(w == 0)) mixedrs_abort("zero weights are not supported: drop those observations instead")
    w <- as.double(w)
  }
  off <- stats::model.offset(frame)
  if (!is.null(off)) {
    if (length(off) != n) mixedrs_abort(sprintf("offset has length %d, but there are %d observations", length(off), n))
    if (any(!is.finite(off))) mixedrs_abort("offset must be finite")
    off <- as.double(off)
  }

  cor <- NULL
  if (!is.null(correlation)) {
    if (!is.null(w)) mixedrs_abort("weights together with a correlation structure are not supported")
    cor <- cor_setup(correlation, frame, terms)
  }
  var <- if (is.null(variance)) NULL else var_setup(variance, frame, terms, fitted_values)

  list(formula = parsed$expanded, parsed = parsed, frame = frame, X = X, y = y, fixed_terms = fixed_terms,
       cor = cor, correlation = correlation, var = var, variance = variance, var_fitted = fitted_values,
       weights = w, offset = off, terms = terms, n = n,
       # how the frame was built, so a fit can be redone with another formula (ranova)
       mf_call = orig_call, env = env, contrasts = contrasts)
}
