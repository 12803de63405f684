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
#' @param ddf "Satterthwaite" or "Kenward-Roger".
#' @param alpha.random,alpha.fixed elimination thresholds.
#' @param reduce.random,reduce.fixed whether to eliminate at all.
#' @param keep fixed terms never to eliminate.
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + I(Days^2) + (Days | Subject), lme4::sleepstudy)
#' drop1(fm)
#' @export
drop1.lmm <- function(object, scope, ddf = c("Satterthwaite", "Kenward-Roger"), ...) {
  ddf <- check_ddf(ddf[1L], object)
  tt <- fixed_terms(object)
  marg <- stats::drop.scope(tt)
  if (missing(scope)) {
    scope <- marg
  } else if (!is.character(scope) || length(scope) == 0L) {
    mixedrs_abort("'scope' should be a character vector naming terms to be dropped")
  } else if (!all(scope %in% marg)) {
    mixedrs_abort("Only marginal terms can be dropped from the model")
  }
  Ls <- if (length(scope)) contrasts_marginal(object, scope) else list()
  rows <- lapply(Ls, function(L) contest_md(object, L, ddf = ddf))
  tab <- do.call(rbind, c(list(f_table(numeric(0), numeric(0), numeric(0), numeric(0))), rows))
  rownames(tab) <- names(Ls)[vapply(rows, nrow, 1L) > 0L]
  method <- if (ddf == "Kenward-Roger") "Kenward-Roger's" else "Satterthwaite's"
  structure(tab, heading = c(paste("Single term deletions using", method, "method:"), "\nModel:",
                             deparse1(formula(object))),
            hypotheses = Ls, ddf = ddf, class = c("anova", "data.frame"))
}

#' @rdname drop1.lmm
#' @export
step.lmm <- function(object, ddf = c("Satterthwaite", "Kenward-Roger"), alpha.random = 0.1, alpha.fixed = 0.05,
                     reduce.fixed = TRUE, reduce.random = TRUE, keep, ...) {
  ddf <- match.arg(ddf)
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
      model <- refit_formula(model, f)
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
  structure(list(random = random_tab, fixed = fixed_tab), model = model, class = "lmm_step")
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
step.default <- function(object, ...) stats::step(object, ...)
