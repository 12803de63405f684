# Generalized linear mixed models: glmm(), glmer's formula and arguments, fitted in
# Rust by PIRLS on the blocked structure (src/rust/core/src/glmm/). This file: the
# response and family checks, the call, and the fit's class with glmer's layout.

#' Fit a generalized linear mixed model
#'
#' A drop-in for lme4's `glmer()`: binomial (logit, probit, cloglog) and Poisson (log)
#' families, the Laplace approximation (`nAGQ = 1`), adaptive Gauss-Hermite
#' quadrature (`nAGQ > 1`) or glmer's first stage alone (`nAGQ = 0`). The conditional modes come from PIRLS and the standard errors of the
#' fixed effects from the Hessian of the Laplace deviance, as glmer's `vcov()`.
#' @param formula a two-sided formula with random-effects terms, as for `glmer()`.
#'   A binomial response may be 0/1, logical, a two-level factor, `cbind(successes,
#'   failures)`, or a proportion with the trials as `weights`.
#' @param data a data frame.
#' @param family a family object, function or name: `binomial`, `poisson`.
#' @param weights,offset,subset,na.action,contrasts as in `glmer()`.
#' @param nAGQ 1 (Laplace), 0 (glmer's first stage alone), or more: adaptive
#'   Gauss-Hermite quadrature with that many nodes, for a single scalar
#'   random-effects term (as glmer).
#' @param control [lmm_control()] settings.
#' @param start starting values: a list with `theta` (and `fixef`), or θ.
#' @return an object of class `"glmm"`.
#' @examples
#' gm <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), lme4::cbpp, family = binomial)
#' summary(gm)
#' @export
glmm <- function(formula, data = NULL, family = stats::binomial, weights, offset, nAGQ = 1L, subset, na.action,
                 control = lmm_control(), start = NULL, contrasts = NULL) {
  mc <- match.call()
  fam <- glmm_family(family)
  control <- as_lmm_control(control)
  if (!is.numeric(nAGQ) || length(nAGQ) != 1L || nAGQ < 0 || nAGQ != round(nAGQ)) mixedrs_abort("'nAGQ' must be 0, 1 or more")
  if (missing(formula)) mixedrs_abort("'formula' is missing")
  if (is.character(formula)) formula <- stats::as.formula(formula, env = parent.frame())
  if (!inherits(formula, "formula")) mixedrs_abort("'formula' must be a formula or a string that parses to one")
  if (is.matrix(data)) data <- as.data.frame(data)
  mf_call <- mc[c(1L, match(c("subset", "weights", "na.action", "offset"), names(mc), 0L))]
  mf_call$data <- data
  if (is.null(mf_call$na.action)) mf_call$na.action <- as.name(getOption("na.action", "na.omit"))
  model <- build_model(formula, mf_call, parent.frame(), contrasts, control,
                       response = function(y, name) glmm_response(y, name, fam$family))
  theta0 <- NULL
  if (!is.null(start)) {
    theta0 <- if (is.list(start)) start$theta else start
    if (!is.null(theta0)) theta0 <- start_theta(theta0, length(lower_bounds(model)))
  }
  glmm_from_model(model, fam, as.integer(nAGQ), control, theta0, mc)
}

# Fit a built model (glmm(), refits, bootstrap replicates, reduced models). `start`:
# θ, or θ then β (a refit, which skips glmer's first stage).
glmm_from_model <- function(model, fam, nAGQ, control, start, call) {
  if (nAGQ > 1L) {
    scalar <- length(model$terms) == 1L && ncol(model$terms[[1L]]$Z) == 1L
    if (!scalar) mixedrs_abort("nAGQ > 1 is only available for models with a single, scalar random-effects term")
  }
  wt <- glmm_prior_weights(model, fam)
  spec <- glmm_spec(model, fam, wt)
  rule <- if (nAGQ > 1L) gauss_hermite(nAGQ) else NULL
  ctl <- engine_control(control, start = start, nagq0 = nAGQ == 0L, hessian = TRUE, agq_z = rule$z, agq_w = rule$w)
  res <- call_rust(glmm_fit_rs, spec, ctl)
  fit <- package_glmm(model, res, fam, wt, call, nAGQ, control)
  if (!isTRUE(res$converged)) warning(paste("Model failed to converge:", res$message), call. = FALSE)
  if (fam$family == "binomial" && any(fit$mu < 1e-10 | fit$mu > 1 - 1e-10)) {
    # as glm() warns: the estimates are finite but run off towards infinity
    warning("fitted probabilities numerically 0 or 1 occurred: complete or quasi-complete separation?", call. = FALSE)
  }
  fit
}

# The prior weights the engine reads: the binomial trials times any user weights.
glmm_prior_weights <- function(model, fam) {
  trials <- attr(model$y, "trials")
  wt <- (if (is.null(model$weights)) 1 else model$weights) * (if (is.null(trials)) 1 else trials)
  wt <- rep_len(as.double(wt), model$n)
  if (fam$family == "binomial" && !is.null(model$weights) && is.null(trials)) {
    k <- model$y * wt
    if (any(abs(k - round(k)) > 1e-7)) mixedrs_abort("non-integer #successes in a binomial glm: the proportions times the weights must be counts")
  }
  wt
}

# Gauss-Hermite nodes and weights for the standard normal density (lme4's GHrule):
# the eigenvalues of the Jacobi matrix of the probabilists' Hermite polynomials, and
# the squared first components of its eigenvectors.
gauss_hermite <- function(n) {
  if (n > 100L) mixedrs_abort("nAGQ must be at most 100")
  J <- matrix(0, n, n)
  off <- sqrt(seq_len(n - 1L))
  J[cbind(seq_len(n - 1L), 2:n)] <- off
  J[cbind(2:n, seq_len(n - 1L))] <- off
  e <- eigen(J, symmetric = TRUE)
  z <- e$values
  z[abs(z) < 1e-12] <- 0
  w <- e$vectors[1L, ]^2
  o <- order(z)
  list(z = z[o], w = w[o] / sum(w))
}

# The family object, from a family, a family function or its name; only what the
# engine fits.
glmm_family <- function(family) {
  fam <- tryCatch({
    if (is.character(family)) family <- get(family, mode = "function", envir = parent.frame(2))
    if (is.function(family)) family <- family()
    family
  }, error = function(e) mixedrs_abort(paste("'family' not recognised:", conditionMessage(e))))
  if (!inherits(fam, "family")) mixedrs_abort("'family' must be a family object, function or name such as binomial")
  ok <- (fam$family == "binomial" && fam$link %in% c("logit", "probit", "cloglog")) ||
    (fam$family == "poisson" && fam$link == "log")
  if (!ok) {
    mixedrs_abort(sprintf("the %s family with the %s link is not available yet (binomial: logit, probit, cloglog; poisson: log)",
                          fam$family, fam$link), kind = "not_available")
  }
  fam
}

# The response as the engine reads it: a proportion with its trials (attribute
# "trials") for the binomial family, counts for the Poisson.
glmm_response <- function(y, name, family) {
  if (family == "binomial") {
    if (is.matrix(y) && ncol(y) == 2L) {
      if (anyNA(y) || any(y < 0) || any(abs(y - round(y)) > 1e-7)) {
        mixedrs_abort(sprintf("the binomial response '%s' must hold non-negative integer counts (successes, failures)", name))
      }
      n <- as.double(y[, 1L] + y[, 2L])
      if (any(n == 0)) mixedrs_abort("binomial rows with no trials (successes + failures = 0): drop them")
      return(structure(as.double(y[, 1L]) / n, trials = n))
    }
    if (is.factor(y)) {
      if (nlevels(y) != 2L && nlevels(droplevels(y)) > 2L) mixedrs_abort(sprintf("a factor response '%s' must have two levels", name))
      return(as.double(y != levels(y)[1L]))
    }
    if (is.logical(y)) y <- as.double(y)
    if (!is.numeric(y) || is.matrix(y)) mixedrs_abort(sprintf("the binomial response '%s' must be 0/1, logical, a factor, cbind(successes, failures) or a proportion", name))
    if (anyNA(y)) mixedrs_abort(sprintf("NA in the response '%s'", name))
    if (any(y < 0 | y > 1)) mixedrs_abort(sprintf("the binomial response '%s' has values outside [0, 1]", name))
    return(as.double(y))
  }
  if (!is.numeric(y) || is.matrix(y)) mixedrs_abort(sprintf("the Poisson response '%s' must be numeric counts", name))
  if (anyNA(y)) mixedrs_abort(sprintf("NA in the response '%s'", name))
  if (any(y < 0) || any(abs(y - round(y)) > 1e-7)) mixedrs_abort(sprintf("the Poisson response '%s' must be non-negative integer counts", name))
  as.double(y)
}

glmm_spec <- function(model, fam, wt) {
  list(y = as.double(model$y), X = as_double_matrix(model$X), p = ncol(model$X), wt = wt,
       offset = if (is.null(model$offset)) rep(0, model$n) else as.double(model$offset),
       family = fam$family, link = fam$link, terms = spec_terms(model))
}

# glmer's layout of a fit: θ named as lme4 names it, b per term, vcov of β̂ from the
# Hessian of the Laplace deviance over [θ, β] (2 H^-1, the β block).
package_glmm <- function(model, res, fam, wt, call, nAGQ, control) {
  X <- model$X
  p <- ncol(X)
  layout <- data.frame(term = res$theta_term, row = res$theta_row, col = res$theta_col)
  tn <- theta_names(model$terms, layout)
  b <- Map(function(t, bt) matrix(bt, nrow = nlevels(t$factor), byrow = TRUE, dimnames = list(levels(t$factor), t$cnms)),
           model$terms, res$b)
  nth <- length(res$theta)
  V <- matrix(NA_real_, p, p, dimnames = list(colnames(X), colnames(X)))
  if (!is.null(res$vcov_rx)) V[] <- res$vcov_rx
  if (!is.null(res$hessian)) {
    H <- matrix(res$hessian, nth + p, nth + p)
    Vall <- tryCatch(2 * solve(H), error = function(e) NULL)
    if (is.null(Vall) || any(diag(Vall)[nth + seq_len(p)] <= 0)) {
      warning("the Hessian of the deviance is not positive definite: no standard errors", call. = FALSE)
    } else {
      V[] <- Vall[nth + seq_len(p), nth + seq_len(p)]
      V <- (V + t(V)) / 2
    }
  }
  y <- as.double(model$y)
  aic_dev <- fam$aic(y, wt, res$mu, wt, sum(fam$dev.resids(y, res$mu, wt)))
  cond_var <- Map(function(t, v) {
    k <- ncol(t$Z)
    array(v, c(k, k, nlevels(t$factor)))
  }, model$terms, res$cond_var)
  structure(list(
    call = call, formula = model$formula, family = fam, nAGQ = nAGQ, model = model,
    theta = stats::setNames(res$theta, tn), theta_layout = layout,
    beta = stats::setNames(res$beta, colnames(X)), b = b, u = res$u,
    lambda = Map(function(t, lam) matrix(lam, ncol(t$Z), ncol(t$Z)), model$terms, res$lambdas),
    sigma = 1, vcov = V, eta = res$eta, mu = res$mu, prior_weights = wt, cond_var = cond_var,
    hessian = if (is.null(res$hessian)) NULL else matrix(res$hessian, nth + p, nth + p),
    # -2 log L: the deviance optimised (Laplace or AGQ), which sums deviance residuals,
    # with the family's -2 log-likelihood at the conditional modes in their place
    # (glmer's AGQ fits report the deviance optimised itself)
    devcomp = c(minus2ll = if (nAGQ > 1L) res$deviance else res$deviance - res$dev_resid + aic_dev, laplace = res$deviance, dev_resid = res$dev_resid,
                sqr_u = res$sqr_u, ldL2 = res$ldL2),
    optinfo = list(evaluations = res$evaluations, converged = res$converged, message = res$message),
    control = control
  ), class = glmm_classes)
}

#' @export
fixef.glmm <- function(object, ...) object$beta

#' @export
vcov.glmm <- function(object, ...) object$vcov

#' @export
logLik.glmm <- function(object, ...) {
  structure(-object$devcomp[["minus2ll"]] / 2, nobs = object$model$n,
            df = length(object$beta) + length(object$theta), class = "logLik")
}

# lme4's deviance() of a GLMM: the sum of squared deviance residuals (its summary
# prints -2 log L as "deviance")
#' @export
deviance.glmm <- function(object, ...) sum(stats::residuals(object, type = "deviance")^2, na.rm = TRUE)

#' @export
nobs.glmm <- function(object, ...) object$model$n

#' @export
ngrps.glmm <- function(object, ...) ngrps.lmm(object)

# lme4's ranef() of a GLMM: as for lmm fits, with the conditional variances from the
# factor at the final PIRLS weights (given beta-hat).
#' @export
ranef.glmm <- function(object, condVar = TRUE, drop = FALSE, whichel = NULL, ...) {
  ranef.lmm(object, condVar = condVar, drop = drop, whichel = whichel, ...)
}

#' @export
VarCorr.glmm <- function(x, sigma = 1, ...) {
  vc <- VarCorr.lmm(x)
  attr(vc, "useSc") <- FALSE
  vc
}

#' @export
fitted.glmm <- function(object, ...) {
  stats::napredict(fit_na_action(object), stats::setNames(object$mu, rownames(object$model$frame)))
}

#' Predictions from a glmm fit
#'
#' As lme4's `predict()` for glmer fits: the linear predictor (`type = "link"`) or the
#' mean (`type = "response"`) on the data or on `newdata`, with the random effects that
#' `re.form` selects (see [predict.lmm()] for `re.form`, `allow.new.levels` and
#' `na.action`).
#' @inheritParams predict.lmm
#' @param object a `glmm` fit.
#' @examples
#' gm <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), lme4::cbpp, family = binomial)
#' predict(gm, newdata = data.frame(period = factor(1:4), herd = "1"), type = "response")
#' predict(gm, newdata = data.frame(period = factor(1:4)), re.form = NA)
#' @export
predict.glmm <- function(object, newdata = NULL, newparams = NULL, re.form = NULL, random.only = FALSE,
                         terms = NULL, type = c("link", "response"), allow.new.levels = FALSE,
                         na.action = stats::na.pass, ...) {
  type <- match.arg(type)
  on_link <- object
  on_link$fitted <- object$eta  # predict.lmm's values on the fitted data
  args <- list(on_link, newdata = newdata, newparams = newparams, re.form = re.form, random.only = random.only,
               terms = terms, allow.new.levels = allow.new.levels)
  if (!missing(na.action)) args$na.action <- na.action
  eta <- do.call(predict.lmm, args)
  if (type == "response") eta[] <- object$family$linkinv(eta)
  eta
}

#' @export
residuals.glmm <- function(object, type = c("deviance", "pearson", "working", "response"), ...) {
  type <- match.arg(type)
  y <- as.double(object$model$y)
  mu <- object$mu
  wt <- object$prior_weights
  fam <- object$family
  r <- switch(type,
    deviance = sign(y - mu) * sqrt(pmax(fam$dev.resids(y, mu, wt), 0)),
    pearson = (y - mu) * sqrt(wt) / sqrt(fam$variance(mu)),
    working = (y - mu) / fam$mu.eta(object$eta),
    response = y - mu)
  stats::naresid(fit_na_action(object), stats::setNames(r, rownames(object$model$frame)))
}

#' @export
summary.glmm <- function(object, ...) {
  se <- sqrt(diag(object$vcov))
  z <- object$beta / se
  coefs <- cbind(Estimate = object$beta, `Std. Error` = se, `z value` = z, `Pr(>|z|)` = 2 * stats::pnorm(-abs(z)))
  structure(list(object = object, coefficients = coefs, varcor = VarCorr(object),
                 residuals = stats::residuals(object, type = "pearson")), class = "summary.glmm")
}

glmm_title <- function(x) {
  approx <- if (x$nAGQ == 1L) "Laplace Approximation" else sprintf("Adaptive Gauss-Hermite Quadrature, nAGQ = %d", x$nAGQ)
  c(sprintf("Generalized linear mixed model fit by maximum likelihood (%s) ['glmm']", approx),
    sprintf(" Family: %s  ( %s )", x$family$family, x$family$link))
}

glmm_fit_table <- function(x) {
  ll <- logLik(x)
  df <- attr(ll, "df")
  n <- nobs(x)
  c(AIC = -2 * c(ll) + 2 * df, BIC = -2 * c(ll) + log(n) * df, logLik = c(ll), deviance = -2 * c(ll), df.resid = n - df)
}

#' @export
print.glmm <- function(x, digits = max(3, getOption("digits") - 3), ...) {
  cat(glmm_title(x), sep = "\n")
  cat("Formula:", deparse1(x$formula), "\n")
  if (!is.null(x$call$data)) cat("   Data:", deparse1(x$call$data), "\n")
  tab <- glmm_fit_table(x)
  f <- format(round(tab, 4))
  print(f, quote = FALSE)
  cat("Random effects:\n")
  print(format_varcorr(VarCorr(x), digits = digits), quote = FALSE)
  print_groups(x)
  cat("Fixed Effects:\n")
  print.default(format(fixef(x), digits = digits), print.gap = 2L, quote = FALSE)
  invisible(x)
}

#' @export
print.summary.glmm <- function(x, digits = max(3, getOption("digits") - 3), signif.stars = getOption("show.signif.stars"), ...) {
  o <- x$object
  cat(glmm_title(o), sep = "\n")
  cat("Formula:", deparse1(o$formula), "\n")
  if (!is.null(o$call$data)) cat("   Data:", deparse1(o$call$data), "\n")
  cat("\n")
  print(format(round(glmm_fit_table(o), 1)), quote = FALSE)
  cat("\nScaled residuals: \n")
  q <- stats::quantile(x$residuals, na.rm = TRUE)
  names(q) <- c("Min", "1Q", "Median", "3Q", "Max")
  print(q, digits = digits)
  cat("\nRandom effects:\n")
  print(format_varcorr(x$varcor, digits = digits, comp = c("Variance", "Std.Dev.")), quote = FALSE)
  print_groups(o)
  cat("\nFixed effects:\n")
  stats::printCoefmat(x$coefficients, digits = digits, signif.stars = signif.stars, has.Pvalue = TRUE)
  invisible(x)
}
