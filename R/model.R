# Building the model: model frame, fixed-effects matrix, random-effects terms,
# and the lme4 input checks. Nothing here fits anything.

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

# One random-effects term as it goes to Rust, plus what R needs to label results.
make_reterm <- function(lhs, group, double, frame) {
  gname <- deparse1(group)
  f <- group_factor(group, frame)
  if (anyNA(f)) mixedrs_abort(sprintf("grouping factor '%s' has missing values", gname))
  lhs_formula <- stats::as.formula(call("~", lhs), env = environment(make_reterm))
  Z <- stats::model.matrix(lhs_formula, frame)
  if (nrow(Z) != nrow(frame)) mixedrs_abort(sprintf("random-effects term for '%s' has missing values", gname))
  if (!all_finite(Z)) mixedrs_abort(sprintf("random-effects model matrix for '%s' has infinite values", gname))
  list(
    assign = attr(Z, "assign"),
    group = gname,
    factor = f,
    cnms = colnames(Z),
    Z = unname(Z),
    diagonal = FALSE,
    double = double,
    lhs_formula = lhs_formula
  )
}

# (x || g): lme4's expansion (1 | g) + (0 + a | g) + ..., each piece built from
# its own formula (so a factor gets indicator columns). When every piece has a
# single column they are merged into one term with a diagonal Λ: the same model,
# with one block instead of several.
expand_double <- function(term, frame) {
  if (!term$double) return(list(term))
  tt <- stats::terms(term$lhs_formula)
  lhs <- lapply(attr(tt, "term.labels"), function(lab) str2lang(paste("0 +", lab)))
  if (attr(tt, "intercept") == 1L) lhs <- c(list(1), lhs)
  group <- str2lang(term$group)
  pieces <- lapply(lhs, function(l) make_reterm(l, group, FALSE, frame))
  if (length(pieces) == 1L || any(vapply(pieces, function(p) ncol(p$Z) != 1L, TRUE))) return(pieces)
  merged <- pieces[[1L]]
  merged$Z <- do.call(cbind, lapply(pieces, `[[`, "Z"))
  merged$cnms <- unlist(lapply(pieces, `[[`, "cnms"))
  merged$diagonal <- TRUE
  list(merged)
}

check_grouping <- function(terms, n, control) {
  for (t in terms) {
    nl <- nlevels(t$factor)
    if (nl < 2L) {
      mixedrs_abort(sprintf("grouping factors must have > 1 sampled level (problem: %s)", t$group))
    }
    if (control$check_nlev && nl >= n) {
      mixedrs_abort(sprintf(
        "number of levels of each grouping factor must be < number of observations (problems: %s)", t$group))
    }
    q <- nl * ncol(t$Z)
    if (control$check_zdims && q >= n) {
      mixedrs_abort(sprintf(paste0(
        "number of observations (=%d) <= number of random effects (=%d) for term (%s);",
        " the random-effects parameters and the residual variance are probably unidentifiable"),
        n, q, paste(deparse1(t$lhs_formula[[2L]]), "|", t$group)))
    }
  }
}

# Drop aliased fixed-effect columns with lme4's message.
drop_rank_deficient <- function(X) {
  p <- ncol(X)
  if (p == 0L) return(X)
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
  if (qx$rank < p) {
    keep <- sort(qx$pivot[seq_len(qx$rank)])
    nd <- p - qx$rank
    message(sprintf("fixed-effect model matrix is rank deficient so dropping %d column%s / coefficient%s",
                    nd, if (nd > 1) "s" else "", if (nd > 1) "s" else ""))
    assign <- attr(X, "assign")
    contr <- attr(X, "contrasts")
    X <- X[, keep, drop = FALSE]
    attr(X, "assign") <- assign[keep]
    attr(X, "contrasts") <- contr
  }
  X
}

check_response <- function(y, name) {
  if (is.logical(y) || is.factor(y) || is.character(y) || !is.numeric(y)) {
    mixedrs_abort(sprintf("response '%s' must be numeric; lmm fits Gaussian models only", name))
  }
  if (is.matrix(y) && ncol(y) > 1L) mixedrs_abort("the response must be a vector, not a matrix")
  y <- as.double(y)
  r <- range(y)
  if (!all(is.finite(r))) mixedrs_abort(sprintf("response '%s' has infinite values", name))
  if (r[1L] == r[2L]) mixedrs_abort(sprintf("response '%s' is constant", name))
  y
}

# No NA, NaN or Inf in a numeric vector or matrix, without an n-long temporary
# (on large data every temporary costs R's garbage collector a pass).
all_finite <- function(x) length(x) == 0L || all(is.finite(range(x)))

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
    return(build(mf_call))
  }
  for (j in seq_along(frame)) {
    f <- frame[[j]]
    if (is.factor(f) && any(tabulate(f, nlevels(f)) == 0L)) frame[[j]] <- f[, drop = TRUE]
  }
  frame
}

# Model frame, X, y, weights, offset and the sorted random-effects terms.
build_model <- function(formula, mf_call, env, contrasts, control, correlation = NULL) {
  orig_call <- mf_call
  parsed <- parse_mixed_formula(formula)
  frame_formula <- parsed$frame
  # the correlation's time and group variables join the frame, so NA handling covers them
  for (v in cor_variables(correlation)) frame_formula[[3L]] <- call("+", frame_formula[[3L]], v)
  mf_call$formula <- frame_formula
  mf_call[[1L]] <- quote(stats::model.frame)
  frame <- model_frame(mf_call, env)
  n <- nrow(frame)
  if (n == 0L) mixedrs_abort("0 (non-NA) cases: no observations left after subset and NA removal")
  yname <- deparse1(parsed$response)
  # the response is the frame's first column (model.response() would also build
  # n row names, which costs more than the rest of this function on large data)
  y <- check_response(frame[[1L]], yname)

  fixed_terms <- stats::terms(parsed$fixed, data = frame)
  X <- stats::model.matrix(fixed_terms, frame, contrasts.arg = contrasts)
  bad <- if (all_finite(X)) character(0) else colnames(X)[colSums(!is.finite(X)) > 0]
  if (length(bad)) mixedrs_abort(sprintf("fixed-effects model matrix has infinite values in column%s %s",
                                         if (length(bad) > 1) "s" else "", paste0("'", bad, "'", collapse = ", ")))
  X <- drop_rank_deficient(X)

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

  terms <- unlist(lapply(parsed$bars, function(b) {
    expand_double(make_reterm(b$lhs, b$group, b$double, frame), frame)
  }), recursive = FALSE)
  check_grouping(terms, n, control)
  # largest grouping factor first, ties in formula order (as lme4)
  ord <- order(vapply(terms, function(t) nlevels(t$factor), 1L), decreasing = TRUE, method = "radix")
  terms <- terms[ord]

  cor <- NULL
  if (!is.null(correlation)) {
    if (!is.null(w)) mixedrs_abort("weights together with a correlation structure are not supported")
    cor <- cor_setup(correlation, frame, terms)
  }

  list(formula = formula, parsed = parsed, frame = frame, X = X, y = y, fixed_terms = fixed_terms,
       cor = cor, correlation = correlation,
       weights = w, offset = off, terms = terms, n = n,
       # how the frame was built, so a fit can be redone with another formula (ranova)
       mf_call = orig_call, env = env, contrasts = contrasts)
}

# The plain list the Rust engine reads.
rust_spec <- function(model, REML) {
  y <- model$y
  if (!is.null(model$offset)) y <- y - model$offset
  list(
    y = y,
    X = as_double_matrix(model$X),
    p = ncol(model$X),
    weights = model$weights,
    REML = isTRUE(REML),
    cor = if (is.null(model$cor)) NULL else model$cor[c("type", "groups", "times", "start", "nugget")],
    terms = lapply(model$terms, function(t) list(
      # a factor is already the integer codes the engine reads; no copy
      codes = t$factor,
      nlevels = nlevels(t$factor),
      Z = as_double_matrix(t$Z),
      k = ncol(t$Z),
      diagonal = t$diagonal
    ))
  )
}

# The engine reads a double vector with any attributes; copy only when the storage is not double.
as_double_matrix <- function(m) {
  if (is.double(m)) m else array(as.double(m), dim(m))
}
