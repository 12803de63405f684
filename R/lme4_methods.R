# Methods for lme4's own generics and accessors: getME() with every name lme4
# knows, refit(), refitML(), isREML() and friends, as.function(), family(),
# extractAIC(). The generics are exported here too, each deferring to lme4 for other
# classes, so they work whichever package is attached last.

# lme4's view of the random-effects terms: our diagonal term (merged from
# (1 | g) + (0 + x | g)) is one lme4 term per column. Each has its grouping factor,
# columns, Z, the indices of its θ (lme4's order), u and b as levels x columns.
lme4_terms <- function(object) {
  out <- list()
  lay <- object$theta_layout
  for (ti in seq_along(object$model$terms)) {
    t <- object$model$terms[[ti]]
    idx <- which(lay$term == ti)
    u <- matrix(object$u[[ti]], nrow = nlevels(t$factor), byrow = TRUE)
    lam <- object$lambda[[ti]]
    if (t$diagonal) {
      for (j in seq_along(t$cnms)) {
        out[[length(out) + 1L]] <- list(group = t$group, cnms = t$cnms[j], factor = t$factor, Z = t$Z[, j, drop = FALSE],
                                        theta = idx[j], u = u[, j, drop = FALSE], b = object$b[[ti]][, j, drop = FALSE],
                                        lambda = lam[j, j, drop = FALSE], label = paste(deparse1(t$pieces[[j]]$lhs), "|", t$group))
      }
    } else {
      out[[length(out) + 1L]] <- list(group = t$group, cnms = t$cnms, factor = t$factor, Z = t$Z, theta = idx, u = u,
                                      b = object$b[[ti]], lambda = lam, label = term_label(t))
    }
  }
  out
}

# Zᵀ as lme4 lays it out: term by term, levels within a term, a term's columns
# within a level; rows named by level, columns by observation.
lme4_zt <- function(object, terms = lme4_terms(object)) {
  n <- nobs(object)
  blocks <- lapply(terms, function(t) {
    k <- ncol(t$Z)
    Matrix::sparseMatrix(i = (rep(as.integer(t$factor), k) - 1L) * k + rep(seq_len(k), each = n), j = rep(seq_len(n), k),
                         x = as.vector(t$Z), dims = c(nlevels(t$factor) * k, n),
                         dimnames = list(rep(levels(t$factor), each = k), rownames(object$model$frame)))
  })
  Zt <- do.call(rbind, blocks)
  methods::as(Zt, "CsparseMatrix")
}

# Λᵀ (block diagonal, upper triangular blocks) and lme4's Lind: the θ index of each
# stored element of Λᵀ.
lme4_lambdat <- function(object, terms = lme4_terms(object)) {
  rows <- cols <- idx <- list()
  off <- 0L
  for (t in terms) {
    k <- length(t$cnms)
    nl <- nlevels(t$factor)
    # Λᵀ's stored elements, column by column: column i holds row i of Λ, (i, j) for j ≤ i
    pairs <- do.call(rbind, lapply(seq_len(k), function(i) cbind(r = seq_len(i), c = i)))
    th <- vapply(seq_len(nrow(pairs)), function(a) {
      m <- matrix(0L, k, k)
      m[lower.tri(m, diag = TRUE)] <- t$theta
      m[pairs[a, "c"], pairs[a, "r"]]
    }, 1L)
    base <- off + (seq_len(nl) - 1L) * k
    rows[[length(rows) + 1L]] <- as.vector(outer(pairs[, "r"], base, `+`))
    cols[[length(cols) + 1L]] <- as.vector(outer(pairs[, "c"], base, `+`))
    idx[[length(idx) + 1L]] <- rep(th, nl)
    off <- off + nl * k
  }
  lind <- unlist(idx)
  lt <- Matrix::sparseMatrix(i = unlist(rows), j = unlist(cols), x = as.double(lind), dims = c(off, off))
  lind <- as.integer(lt@x)
  lt@x <- unname(object$theta)[lind]
  list(Lambdat = lt, Lind = lind)
}

#' Extract parts of an lmm fit, as lme4's getME()
#'
#' Every name `lme4::getME()` knows: `"X"`, `"Z"`, `"Zt"`, `"Ztlist"`, `"mmList"`,
#' `"y"`, `"mu"`, `"u"`, `"b"`, `"Gp"`, `"Tp"`, `"L"`, `"Lambda"`, `"Lambdat"`,
#' `"Lind"`, `"Tlist"`, `"A"`, `"RX"`, `"RZX"`, `"sigma"`, `"flist"`, `"fixef"`,
#' `"beta"`, `"theta"`, `"ST"`, `"REML"`, `"is_REML"`, `"n_rtrms"`, `"n_rfacs"`,
#' `"N"`, `"n"`, `"p"`, `"q"`, `"p_i"`, `"l_i"`, `"q_i"`, `"k"`, `"m_i"`, `"m"`,
#' `"cnms"`, `"devcomp"`, `"offset"`, `"lower"`, `"devfun"`, `"glmer.nb.theta"` and
#' `"ALL"`, laid out as lme4 lays them out. A term `(x || g)` counts as lme4's
#' separate terms.
#' @param object an `lmm` fit.
#' @param name one or more names.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' getME(fm, "theta")
#' dim(getME(fm, "Zt"))
#' getME(fm, c("n_rtrms", "cnms"))
#' @export
getME <- function(object, name, ...) UseMethod("getME")

#' @export
getME.default <- function(object, name, ...) defer_method("lme4", "getME", object)(object, name, ...)

getME_names <- c("X", "Z", "Zt", "Ztlist", "mmList", "y", "mu", "u", "b", "Gp", "Tp", "L", "Lambda", "Lambdat",
                 "Lind", "Tlist", "A", "RX", "RZX", "sigma", "flist", "fixef", "beta", "theta", "ST", "REML",
                 "is_REML", "n_rtrms", "n_rfacs", "N", "n", "p", "q", "p_i", "l_i", "q_i", "k", "m_i", "m", "cnms",
                 "devcomp", "offset", "lower", "devfun", "glmer.nb.theta")

#' @rdname getME
#' @export
getME.lmm <- function(object, name, ...) {
  if (missing(name)) mixedrs_abort("'name' must not be missing")
  name <- as.character(name)
  if (length(name) > 1L) return(lapply(stats::setNames(name, name), function(nm) getME.lmm(object, nm)))
  if (name == "ALL") return(sapply(getME_names, function(nm) getME.lmm(object, nm), simplify = FALSE))
  if (!name %in% getME_names) {
    mixedrs_abort(sprintf("Mixed-Effects extraction of '%s' is not available for class \"lmm\"", name))
  }
  terms <- lme4_terms(object)
  theta <- unname(object$theta)
  n <- nobs(object)
  p_i <- vapply(terms, function(t) length(t$cnms), 1L)
  flist <- lme4_flist(object, terms)
  switch(name,
    X = object$model$X,
    Z = Matrix::t(lme4_zt(object, terms)),
    Zt = lme4_zt(object, terms),
    Ztlist = {
      Zt <- lme4_zt(object, terms)
      gp <- lme4_gp(terms)
      out <- list()
      nms <- character()
      for (i in seq_along(terms)) {
        k <- p_i[i]
        for (a in seq_len(k)) {
          out[[length(out) + 1L]] <- Zt[gp[i] + seq(a, gp[i + 1L] - gp[i], by = k), , drop = FALSE]
          nms <- c(nms, paste(terms[[i]]$group, terms[[i]]$cnms[a], sep = "."))
        }
      }
      stats::setNames(out, nms)
    },
    mmList = stats::setNames(lapply(terms, function(t) {
      Z <- t$Z
      dimnames(Z) <- list(rownames(object$model$frame), t$cnms)
      Z
    }), vapply(terms, `[[`, "", "label")),
    y = stats::setNames(object$model$y, rownames(object$model$frame)),
    mu = unname(object$fitted),
    u = unlist(lapply(terms, function(t) as.vector(t(t$u)))),
    b = Matrix::Matrix(unlist(lapply(terms, function(t) as.vector(t(t$b)))), ncol = 1L),
    Gp = lme4_gp(terms),
    Tp = {
      cl <- cumsum(p_i * (p_i + 1L) / 2)
      stats::setNames(c(0, cl), c("beg__", vapply(terms, `[[`, "", "group")))
    },
    L = lme4_factor(object, terms),
    Lambda = Matrix::t(lme4_lambdat(object, terms)$Lambdat),
    Lambdat = lme4_lambdat(object, terms)$Lambdat,
    Lind = lme4_lambdat(object, terms)$Lind,
    Tlist = stats::setNames(lapply(terms, `[[`, "lambda"), vapply(terms, `[[`, "", "group")),
    A = lme4_lambdat(object, terms)$Lambdat %*% lme4_zt(object, terms),
    RX = lme4_rx(object),
    RZX = lme4_rzx(object, terms),
    sigma = object$sigma,
    flist = flist,
    fixef = fixef(object),
    beta = unname(object$beta),
    theta = object$theta,
    ST = stats::setNames(lapply(terms, function(t) {
      lam <- t$lambda
      d <- diag(lam)
      st <- sweep(lam, 2L, ifelse(d == 0, 1, d), "/")
      diag(st) <- d
      st
    }), vapply(terms, `[[`, "", "group")),
    REML = if (object$REML) length(object$beta) else 0L,
    is_REML = object$REML,
    n_rtrms = length(terms),
    n_rfacs = length(flist),
    N = n,
    n = n,
    p = length(object$beta),
    q = sum(vapply(terms, function(t) nlevels(t$factor) * length(t$cnms), 1)),
    p_i = p_i,
    l_i = vapply(flist, nlevels, 1L),
    q_i = p_i * vapply(terms, function(t) nlevels(t$factor), 1L),
    k = length(terms),
    m_i = choose(p_i + 1, 2),
    m = length(theta),
    cnms = stats::setNames(lapply(terms, `[[`, "cnms"), vapply(terms, `[[`, "", "group")),
    devcomp = lme4_devcomp(object),
    offset = if (is.null(object$model$offset)) rep(0, n) else object$model$offset,
    lower = object$lower,
    devfun = as.function.lmm(object),
    glmer.nb.theta = NA)
}

# Where each lme4 term's columns start in Zᵀ's rows (0-based, with the end last).
lme4_gp <- function(terms) {
  as.integer(c(0, cumsum(vapply(terms, function(t) nlevels(t$factor) * length(t$cnms), 1))))
}

# lme4's flist: the distinct grouping factors in term order, with attr "assign"
# giving each term's factor.
lme4_flist <- function(object, terms = lme4_terms(object)) {
  groups <- vapply(terms, `[[`, "", "group")
  nm <- unique(groups)
  fl <- lapply(nm, function(g) terms[[match(g, groups)]]$factor)
  names(fl) <- nm
  attr(fl, "assign") <- match(groups, nm)
  fl
}

# The sparse Cholesky factor of ΛᵀZᵀWZΛ + I, as lme4's L (with its fill-reducing permutation).
lme4_factor <- function(object, terms = lme4_terms(object)) {
  lz <- lme4_lambdat(object, terms)$Lambdat %*% lme4_zt(object, terms)
  w <- object$model$weights
  if (!is.null(w)) lz <- lz %*% Matrix::Diagonal(x = sqrt(w))
  Matrix::Cholesky(Matrix::tcrossprod(lz), LDL = FALSE, Imult = 1)
}

# R_X with R_XᵀR_X = σ² Var(β̂)⁻¹.
lme4_rx <- function(object) {
  p <- length(object$beta)
  if (p == 0L) return(matrix(0, 0, 0))
  rx <- chol(object$sigma^2 * solve(object$vcov))
  dimnames(rx) <- list(names(object$beta), names(object$beta))
  rx
}

# R_ZX = L⁻¹ P ΛᵀZᵀWX.
lme4_rzx <- function(object, terms = lme4_terms(object)) {
  L <- lme4_factor(object, terms)
  X <- object$model$X
  w <- object$model$weights
  if (!is.null(w)) X <- X * w
  rhs <- lme4_lambdat(object, terms)$Lambdat %*% (lme4_zt(object, terms) %*% X)
  out <- as.matrix(Matrix::solve(L, Matrix::solve(L, rhs, system = "P"), system = "L"))
  dimnames(out) <- list(NULL, colnames(object$model$X))
  out
}

# lme4's devcomp: the criterion's parts (cmp) and the model's dimensions (dims).
lme4_devcomp <- function(object) {
  dc <- object$devcomp
  n <- nobs(object)
  p <- length(object$beta)
  ussq <- sum(unlist(object$u)^2)
  w <- if (is.null(object$model$weights)) 1 else object$model$weights
  wrss <- sum(w * (object$model$y - object$fitted)^2)
  cmp <- c(ldL2 = dc[["ldL2"]], ldRX2 = dc[["ldRX2"]], wrss = wrss, ussq = ussq, pwrss = dc[["pwrss"]],
           drsum = NA, REML = if (object$REML) dev_crit(object, TRUE) else NA,
           dev = if (object$REML) NA else dev_crit(object, FALSE),
           sigmaML = sqrt(dc[["pwrss"]] / n), sigmaREML = sqrt(dc[["pwrss"]] / (n - p)), tolPwrss = NA)
  q <- sum(vapply(object$model$terms, function(t) nlevels(t$factor) * ncol(t$Z), 1))
  dims <- c(N = n, n = n, p = p, nmp = n - p, q = q, nth = length(object$theta), useSc = 1L,
            reTrms = length(lme4_terms(object)),
            spFe = 0L, REML = if (object$REML) p else 0L, GLMM = 0L, NLMM = 0L)
  list(cmp = cmp, dims = dims)
}

#' Refit an lmm with a new response, or by maximum likelihood
#'
#' As lme4's `refit()` and `refitML()`: the same model (formula, data, weights,
#' offset, control) refitted to `newresp`, or by ML. The fit starts at the current θ.
#' With these, `lme4::bootMer()` works on lmm fits.
#' @param object an `lmm` fit.
#' @param newresp a new response: a numeric vector (or one-column data frame) with
#'   one value per observation used in the fit, or per row of the original data
#'   when the fit dropped rows with missing values.
#' @param ... unused (lme4's `control` and others are accepted and ignored).
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' fm2 <- refit(fm, simulate(fm, seed = 1)[[1]])
#' refitML(fm)
#' @export
refit <- function(object, newresp, ...) UseMethod("refit")

#' @export
refit.default <- function(object, newresp, ...) {
  f <- defer_method("lme4", "refit", object)
  # lme4's refit() takes newresp = NULL: a missing one is not passed on
  if (missing(newresp)) f(object, ...) else f(object, newresp, ...)
}

#' @rdname refit
#' @export
refit.lmm <- function(object, newresp = NULL, ...) {
  model <- object$model
  if (!is.null(newresp)) {
    if (is.data.frame(newresp) || is.list(newresp)) {
      if (length(newresp) != 1L) {
        mixedrs_abort("refit not implemented for 'newresp' lists of several responses: refit one column at a time")
      }
      newresp <- newresp[[1L]]
    }
    if (is.matrix(newresp) && ncol(newresp) == 1L) newresp <- drop(newresp)
    if (!is.numeric(newresp) && !is.logical(newresp)) mixedrs_abort("refit(): 'newresp' must be numeric")
    na_act <- fit_na_action(object)
    n <- nobs(object)
    if (length(newresp) == n + length(na_act) && length(na_act) > 0L) newresp <- newresp[-na_act]
    if (length(newresp) != n) {
      mixedrs_abort(sprintf("refit(): 'newresp' has length %d, but the model was fitted to %d observations", length(newresp), n))
    }
    if (anyNA(newresp)) mixedrs_abort("refit(): 'newresp' has missing values")
    model$y <- as.double(newresp)
  }
  control <- object$control
  control$start <- full_theta(object)
  res <- engine_fit(model, object$REML, control)
  fit <- package_fit(model, res, object$REML, object$call, object$control)
  convergence_checks(fit)
  fit
}

#' @rdname refit
#' @export
refitML <- function(object, ...) UseMethod("refitML")

#' @export
refitML.default <- function(object, ...) defer_method("lme4", "refitML", object)(object, ...)

#' @rdname refit
#' @export
refitML.lmm <- function(object, ...) {
  if (!object$REML) return(object)
  res <- engine_fit(object$model, REML = FALSE, object$control)
  fit <- package_fit(object$model, res, REML = FALSE, object$call, object$control)
  fit$call$REML <- FALSE
  fit
}

#' Model-type predicates, as lme4's
#'
#' `isREML()` is TRUE for a fit by REML; an lmm fit is a linear mixed model, so
#' `isLMM()` is TRUE and `isGLMM()` and `isNLMM()` are FALSE.
#' @param x a fitted model.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' isREML(fm); isLMM(fm); isGLMM(fm)
#' @export
isREML <- function(x, ...) UseMethod("isREML")
#' @export
isREML.default <- function(x, ...) defer_method("lme4", "isREML", x)(x, ...)
#' @rdname isREML
#' @export
isREML.lmm <- function(x, ...) isTRUE(x$REML)

#' @rdname isREML
#' @export
isLMM <- function(x, ...) UseMethod("isLMM")
#' @export
isLMM.default <- function(x, ...) defer_method("lme4", "isLMM", x)(x, ...)
#' @rdname isREML
#' @export
isLMM.lmm <- function(x, ...) TRUE

#' @rdname isREML
#' @export
isGLMM <- function(x, ...) UseMethod("isGLMM")
#' @export
isGLMM.default <- function(x, ...) defer_method("lme4", "isGLMM", x)(x, ...)
#' @rdname isREML
#' @export
isGLMM.lmm <- function(x, ...) FALSE

#' @rdname isREML
#' @export
isNLMM <- function(x, ...) UseMethod("isNLMM")
#' @export
isNLMM.default <- function(x, ...) defer_method("lme4", "isNLMM", x)(x, ...)
#' @rdname isREML
#' @export
isNLMM.lmm <- function(x, ...) FALSE

#' @export
family.lmm <- function(object, ...) stats::gaussian()

#' @export
extractAIC.lmm <- function(fit, scale = 0, k = 2, ...) {
  ll <- logLik.lmm(refitML.lmm(fit))
  edf <- attr(ll, "df")
  c(edf, -2 * as.numeric(ll) + k * edf)
}

#' The profiled criterion of an lmm fit as a function of θ
#'
#' lme4's `as.function()` of a fit (and `devFunOnly = TRUE`): the REML criterion or
#' ML deviance, whichever the fit used, evaluated by the engine at any θ. For a fit
#' with correlated residuals it is a function of θ followed by the correlation's
#' unconstrained parameters (the fit's `cor_eta`).
#' @param x an `lmm` fit.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' f <- as.function(fm)
#' f(getME(fm, "theta")) - REMLcrit(fm)
#' @export
as.function.lmm <- function(x, ...) {
  control <- x$control
  control$start <- full_theta(x)
  make_devfun(x$model, x$REML, control)
}

# The profiled criterion as a function of θ (lme4's devFunOnly = TRUE): the REML
# criterion or the ML deviance. Its environment holds `lower` and the start, as lme4's
# devfun's does, so lme4::optimizeLmer() can drive it.
make_devfun <- function(model, REML, control) {
  rho <- new.env(parent = environment(make_devfun))
  rho$model <- model
  rho$REML <- REML
  rho$engine <- new_engine(model, REML)
  # with correlated residuals the function takes [θ, η], η unbounded
  rho$lower <- lower_bounds(model)
  n_eta <- length(call_rust(engine_start_rs, rho$engine)$theta) - length(rho$lower)
  rho$lower <- c(rho$lower, rep(-Inf, n_eta))
  # where lme4's devfun starts, unless a start was given
  rho$pp <- list(theta = if (is.null(control$start)) call_rust(engine_start_rs, rho$engine)$theta else control$start)
  devfun <- function(theta) {
    n_theta <- length(rho$lower)
    if (!is.numeric(theta) || length(theta) != n_theta) {
      mixedrs_abort(sprintf("theta must be numeric of length %d%s", n_theta,
                            if (is.null(rho$model$cor)) "" else " (theta, then the correlation's unconstrained parameters)"))
    }
    if (!isTRUE(engine_alive_rs(rho$engine))) rho$engine <- new_engine(rho$model, rho$REML)
    val <- call_rust(engine_objective_rs, rho$engine, as.double(theta))$criterion
    # as lme4's pp, the environment holds the θ last evaluated
    rho$pp$theta <- as.double(theta)
    val
  }
  rho$rho <- rho
  environment(devfun) <- rho
  devfun
}

#' Principal components of the random-effect covariance
#'
#' lme4's `rePCA()`: for each grouping factor, the singular values (`sdev`) and left
#' singular vectors (`rotation`) of its relative covariance factor, block-diagonal
#' over that factor's terms. Zero standard deviations show a singular fit's
#' degenerate directions.
#' @param x a fitted model.
#' @return An object of class `"prcomplist"`: a list of `"prcomp"` objects named by
#'   grouping factor.
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' rePCA(fm)
#' @export
rePCA <- function(x) UseMethod("rePCA")

#' @export
rePCA.lmm <- function(x) {
  factors <- getME(x, "Tlist")
  groups <- unique(names(factors))
  components <- function(g) {
    s <- svd(as.matrix(Matrix::bdiag(unname(factors[names(factors) == g]))), nv = 0L)
    structure(list(sdev = s$d, rotation = s$u, center = FALSE, scale = FALSE), class = "prcomp")
  }
  structure(lapply(stats::setNames(groups, groups), components), class = "prcomplist")
}

#' @export
rePCA.default <- function(x) defer_method("lme4", "rePCA", x)(x)
