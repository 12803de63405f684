# drop1() and step() with lmerTest's semantics: F tests for the marginal fixed
# terms, and backward elimination of random terms (by ranova's LRT) and then of
# fixed terms (by drop1's F tests).

#' Single-term deletions and backward elimination for lmm fits
#'
#' `drop1()` tests each marginal fixed-effect term (one not contained in another)
#' with an F test on Satterthwaite's or Kenward-Roger's df, as lmerTest does.
#' `step()` first removes random-effects terms whose likelihood-ratio p-value
#' exceeds `alpha.random` (largest first, refitting each time), then fixed terms
#' whose F-test p-value exceeds `alpha.fixed`, respecting marginality.
#' @param object an `lmm` fit.
#' @param scope marginal terms to test (all by default).
#' @param ddf "Satterthwaite" or "Kenward-Roger" (for `drop1()` also "lme4": lme4's
#'   likelihood-ratio `drop1()` from ML refits).
#' @param force_get_contrasts compute each term's hypothesis as what dropping it
#'   removes from X (always done when X had aliased columns), as lmerTest's.
#' @param test,k with `ddf = "lme4"`: "Chisq" adds likelihood-ratio tests; `k` is
#'   the AIC penalty.
#' @param alpha.random,alpha.fixed elimination thresholds.
#' @param reduce.random,reduce.fixed whether to eliminate at all.
#' @param keep fixed terms never to eliminate.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + I(Days^2) + (Days | Subject), lme4::sleepstudy)
#' drop1(fm)
#' @export
drop1.lmm <- function(object, scope, ddf = c("Satterthwaite", "Kenward-Roger", "lme4"), force_get_contrasts = FALSE,
                      test = c("none", "Chisq"), k = 2, ...) {
  ddf <- match.arg(ddf)
  if (ddf == "lme4") return(drop1_lrt(object, scope, match.arg(test), k))
  ddf <- check_ddf(ddf, object)
  tt <- fixed_terms(object)
  marg <- stats::drop.scope(tt)
  if (missing(scope)) {
    scope <- marg
  } else if (!is.character(scope) || length(scope) == 0L) {
    mixedrs_abort("'scope' should be a character vector naming terms to be dropped")
  } else if (!all(scope %in% marg)) {
    mixedrs_abort("Only marginal terms can be dropped from the model")
  }
  X <- object$model$X
  Ls <- if (length(scope)) contrasts_marginal(object, scope) else list()
  if (length(scope) && (!is.null(attr(X, "col.dropped")) || isTRUE(force_get_contrasts))) {
    # with aliased columns, a term's hypothesis is what dropping it removes from X's
    # column space: none at all when it is aliased with the rest (then NA, as lmerTest)
    Ls <- lapply(stats::setNames(scope, scope), function(term) dropped_term_contrast(object, term))
  }
  rows <- lapply(Ls, function(L) {
    if (anyNA(L)) return(f_table(NA_real_, NA_real_, NA_real_, NA_real_))
    contest_md(object, L, ddf = ddf)
  })
  tab <- do.call(rbind, c(list(f_table(numeric(0), numeric(0), numeric(0), numeric(0))), rows))
  rownames(tab) <- names(Ls)[vapply(rows, nrow, 1L) > 0L]
  method <- if (ddf == "Kenward-Roger") "Kenward-Roger's" else "Satterthwaite's"
  structure(tab, heading = c(paste("Single term deletions using", method, "method:"), "\nModel:",
                             deparse1(formula(object))),
            hypotheses = Ls, ddf = ddf, class = c("anova", "data.frame"))
}

# The contrast that dropping `term` tests: X's columns projected off the design
# without it, orthonormalised; NA when dropping it changes nothing.
dropped_term_contrast <- function(object, term) {
  X <- object$model$X
  tt <- fixed_terms(object)
  reduced <- stats::drop.terms(tt, match(term, attr(tt, "term.labels")), keep.response = FALSE)
  X0 <- suppressWarnings(stats::model.matrix(reduced, object$model$frame, contrasts.arg = attr(X, "contrasts")))
  R <- stats::resid(stats::lm.fit(x = X0, y = unclass(X)))
  R <- R[, colSums(abs(R)) > 1e-8, drop = FALSE]
  if (ncol(R) == 0L) return(matrix(NA_real_, 1L, ncol(X), dimnames = list(NULL, colnames(X))))
  Lt <- crossprod(X, R)
  q <- qr(Lt)
  Lt <- qr.Q(q)[, seq_len(q$rank), drop = FALSE]
  L <- t(zapsmall(Lt))
  colnames(L) <- colnames(X)
  L
}

# lme4's drop1() (ddf = "lme4"): AIC of ML refits without each term, with
# likelihood-ratio tests when test = "Chisq".
drop1_lrt <- function(object, scope, test, k) {
  tt <- fixed_terms(object)
  if (missing(scope)) scope <- stats::drop.scope(tt)
  if (!all(scope %in% attr(tt, "term.labels"))) mixedrs_abort("scope is not a subset of term labels")
  aic <- function(fit) stats::setNames(extractAIC(fit, k = k), c("df", "AIC"))
  ans <- matrix(NA_real_, length(scope) + 1L, 2L, dimnames = list(c("<none>", scope), c("df", "AIC")))
  ans[1L, ] <- aic(object)
  for (i in seq_along(scope)) {
    f <- stats::update(formula(object), stats::as.formula(paste("~ . -", scope[i])))
    environment(f) <- environment(formula(object))
    fit <- refit_formula(object, f)
    if (stats::nobs(fit) != stats::nobs(object)) mixedrs_abort("number of rows in use has changed: remove missing values?")
    ans[i + 1L, ] <- aic(fit)
  }
  dfs <- ans[1L, 1L] - ans[, 1L]
  dfs[1L] <- NA
  aod <- data.frame(npar = dfs, AIC = ans[, 2L])
  if (test == "Chisq") {
    dev <- ans[, 2L] - k * ans[, 1L]
    dev <- dev - dev[1L]
    dev[1L] <- NA
    pv <- rep(NA_real_, length(dev))
    ok <- !is.na(dev)
    pv[ok] <- p_value("chisq", pmax(dev[ok], 0), dfs[ok])
    aod$LRT <- dev
    aod[["Pr(Chi)"]] <- pv
  }
  structure(aod, heading = c("Single term deletions", "\nModel:", deparse1(formula(object))),
            class = c("anova", "data.frame"))
}

#' @rdname drop1.lmm
#' @export
step.lmm <- function(object, ddf = c("Satterthwaite", "Kenward-Roger"), alpha.random = 0.1, alpha.fixed = 0.05,
                     reduce.fixed = TRUE, reduce.random = TRUE, keep, ...) {
  ddf <- match.arg(ddf)
  # lmerTest's arguments from before its version 3
  dots <- names(list(...))
  for (nm in c("type", "fixed.calc", "lsmeans.calc", "difflsmeans.calc", "test.effs")) {
    if (any(pmatch(dots, nm, nomatch = 0L) > 0L)) warning(paste0("Argument '", nm, "' is deprecated and ignored."), call. = FALSE)
  }
  if (any(pmatch(dots, "keep.effs", nomatch = 0L) > 0L)) warning("Argument 'keep.effs' is deprecated: use 'keep' instead", call. = FALSE)
  if (!reduce.random) alpha.random <- 1
  if (!reduce.fixed) alpha.fixed <- 1
  if (missing(keep)) keep <- character(0)
  # random part
  model <- object
  ran <- ranova(model)
  removed <- ran[0L, ]
  repeat {
    p <- ran[-1L, "Pr(>Chisq)"]
    above <- !is.na(p) & p > alpha.random
    if (!any(above)) break
    k <- which.max(ifelse(above, p, -Inf))
    removed <- rbind(removed, ran[1L + k, ])
    model <- refit_formula(model, attr(ran, "formulae_full")[[k]])
    if (!inherits(model, "lmm")) {
      ran <- ran[0L, ]
      break
    }
    ran <- ranova(model)
  }
  random_tab <- rbind(cbind(Eliminated = c(NA_real_, seq_len(nrow(removed)))[seq_len(nrow(removed) + 1L)],
                            rbind(if (inherits(model, "lmm")) ran[1L, ] else removed[0L, ], removed)),
                      cbind(Eliminated = rep(0, max(nrow(ran) - 1L, 0L)), ran[-1L, , drop = FALSE]))
  if (!inherits(model, "lmm")) random_tab <- cbind(Eliminated = seq_len(nrow(removed)), removed)
  class(random_tab) <- c("anova", "data.frame")
  attr(random_tab, "heading") <- "Backward reduced random-effect table:\n"
  # fixed part
  fixed_removed <- NULL
  if (inherits(model, "lmm")) {
    aov <- drop1(model, ddf = ddf)
    repeat {
      consider <- setdiff(rownames(aov), keep)
      p <- aov[consider, "Pr(>F)"]
      above <- !is.na(p) & p > alpha.fixed
      if (!any(above)) break
      drop_term <- consider[which.max(ifelse(above, p, -Inf))]
      fixed_removed <- rbind(fixed_removed, aov[drop_term, ])
      f <- stats::update(formula(model), stats::as.formula(paste(". ~ . -", drop_term)))
      environment(f) <- environment(formula(model))
      n0 <- stats::nobs(model)
      model <- refit_formula(model, f)
      if (stats::nobs(model) != n0) mixedrs_abort("number of rows in use has changed: remove missing values?")
      aov <- drop1(model, ddf = ddf)
    }
    if (is.null(fixed_removed)) fixed_removed <- aov[0L, ]
    fixed_tab <- rbind(cbind(Eliminated = seq_len(nrow(fixed_removed)), fixed_removed),
                       cbind(Eliminated = rep(0, nrow(aov)), aov))
  } else {
    fixed_tab <- stats::drop1(model, test = "F")
  }
  class(fixed_tab) <- c("anova", "data.frame")
  attr(fixed_tab, "heading") <- c("Backward reduced fixed-effect table:", paste("Degrees of freedom method:", ddf, "\n"))
  structure(list(random = random_tab, fixed = fixed_tab), model = model,
            drop1 = if (inherits(model, "lmm")) drop1.lmm(model, ddf = ddf) else NULL, class = "lmm_step")
}

#' @export
print.lmm_step <- function(x, ...) {
  print(x$random)
  cat("\n")
  print(x$fixed)
  cat("\nModel found:", deparse1(formula(attr(x, "model"))), sep = "\n")
  invisible(x)
}

#' The model a step() search ended with
#' @param x the result of `step()` on an lmm fit.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + I(Days^2) + (Days | Subject), lme4::sleepstudy)
#' s <- step(fm)
#' get_model(s)
#' @export
get_model <- function(x, ...) UseMethod("get_model")

#' @export
get_model.lmm_step <- function(x, ...) attr(x, "model")

#' @export
get_model.default <- function(x, ...) defer_method("lmerTest", "get_model", x)(x, ...)

#' Backward elimination
#'
#' A generic version of [stats::step()] (which is not generic), as lmerTest provides:
#' lmm fits get [step.lmm()], everything else goes to `stats::step()`.
#' @param object a fitted model.
#' @param ... passed on.
#' @examples
#' fm <- lmm(Reaction ~ Days + I(Days^2) + (Days | Subject), lme4::sleepstudy)
#' step(fm)
#' @export
step <- function(object, ...) UseMethod("step")

#' @export
step.default <- function(object, ...) {
  # lmerTest's step() method for lme4 fits; everything else goes to stats::step()
  if (inherits(object, "merMod")) return(defer_method("lmerTest", "step", object)(object, ...))
  stats::step(object, ...)
}
