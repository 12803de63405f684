# What a glmm fit does after fitting, as lme4 does it for glmer fits: simulate(),
# refit(), bootstrap(), likelihood-ratio anova() and drop1(), confint() (Wald, profile,
# boot), update(), and the accessors other packages read. Refits go through
# glmm_from_model() (R/glmm.R), so every formula and start is the one glmm() uses.

#' @export
formula.glmm <- function(x, ...) x$formula

#' @export
family.glmm <- function(object, ...) object$family

#' @export
model.frame.glmm <- function(formula, ...) formula$model$frame

# As lme4's terms() for its fits: the fixed part by default.
#' @export
terms.glmm <- function(x, fixed.only = TRUE, random.only = FALSE, ...) {
  if (missing(fixed.only) && random.only) fixed.only <- FALSE
  terms.lmm(x, fixed.only = fixed.only, random.only = random.only)
}

#' @export
model.matrix.glmm <- function(object, ...) object$model$X

#' @export
weights.glmm <- function(object, type = c("prior", "working"), ...) {
  type <- match.arg(type)
  w <- if (type == "prior") object$prior_weights else {
    d <- object$family$mu.eta(object$eta)
    object$prior_weights * d^2 / object$family$variance(object$mu)
  }
  stats::napredict(fit_na_action(object), w)
}

#' @export
sigma.glmm <- function(object, ...) 1

#' @export
df.residual.glmm <- function(object, ...) nobs(object) - length(object$beta) - length(object$theta)

#' @export
extractAIC.glmm <- function(fit, scale = 0, k = 2, ...) {
  ll <- logLik.glmm(fit)
  edf <- attr(ll, "df")
  c(edf, -2 * as.numeric(ll) + k * edf)
}

#' @export
update.glmm <- function(object, ...) {
  call <- sys.call()
  call[[1L]] <- utils::getS3method("update", "default")
  eval(call, parent.frame())
}

#' @export
isSingular.glmm <- function(x, tol = 1e-4) {
  diag_theta <- x$theta_layout$row == x$theta_layout$col
  any(abs(x$theta[diag_theta]) < tol)
}

#' @export
isREML.glmm <- function(x, ...) FALSE
#' @export
isLMM.glmm <- function(x, ...) FALSE
#' @export
isGLMM.glmm <- function(x, ...) TRUE
#' @export
isNLMM.glmm <- function(x, ...) FALSE

#' @export
refit.glmm <- function(object, newresp = NULL, ...) {
  model <- object$model
  if (!is.null(newresp)) {
    if (is.data.frame(newresp)) {
      if (length(newresp) != 1L) mixedrs_abort("refit(): 'newresp' must be one response")
      newresp <- newresp[[1L]]
    }
    if (NROW(newresp) != model$n) mixedrs_abort(sprintf("refit(): 'newresp' has %d rows, the fit %d", NROW(newresp), model$n))
    y <- glmm_response(newresp, "newresp", object$family$family)
    # a proportion refitted in place of counts keeps the fit's trials
    if (is.null(attr(y, "trials")) && !is.null(attr(model$y, "trials"))) attr(y, "trials") <- attr(model$y, "trials")
    model$y <- y
  }
  glmm_from_model(model, object$family, object$nAGQ, object$control, glmm_start(object), object$call)
}

# θ then β of a fit: a refit's start.
glmm_start <- function(object) unname(c(object$theta, object$beta))

#' Simulate responses from a glmm fit
#'
#' As lme4's `simulate()` for glmer fits, and with the same draws for the same seed:
#' new random effects (`re.form = NA`, the default) or the fitted ones
#' (`use.u = TRUE` or `re.form = NULL`), then responses from the family. A
#' `cbind(successes, failures)` response gives two-column matrices, a factor response
#' factors, and a 0/1 or proportion response proportions.
#' @param object a `glmm` fit.
#' @param nsim number of responses.
#' @param seed passed to `set.seed()`.
#' @param use.u condition on the fitted random effects.
#' @param re.form `NA` (new random effects) or `NULL` (the fitted ones).
#' @param newdata not available for glmm fits.
#' @param ... unused.
#' @return a data frame with one column per simulation, `sim_1`, `sim_2`, ...
#' @examples
#' gm <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), lme4::cbpp, family = binomial)
#' s <- simulate(gm, 2, seed = 1)
#' head(s$sim_1)
#' @export
simulate.glmm <- function(object, nsim = 1, seed = NULL, use.u = FALSE, re.form = NA, newdata = NULL, ...) {
  if (!is.null(newdata)) mixedrs_abort("simulate(newdata =) is not available yet for glmm fits", kind = "not_available")
  if (!is.numeric(nsim) || length(nsim) != 1L || nsim < 1) mixedrs_abort("'nsim' must be a positive number")
  nsim <- as.integer(nsim)
  conditional <- isTRUE(use.u) || is.null(re.form)
  if (!conditional && !(length(re.form) == 1L && !inherits(re.form, "formula") && is.na(re.form)) && !identical(re.form, ~0)) {
    mixedrs_abort("simulate() of a glmm fit takes re.form = NA or NULL", kind = "not_available")
  }
  with_r_seed(seed, glmm_draw(object, nsim, conditional))
}

# lme4's order of draws: one rnorm() for every spherical random effect of every
# replicate (terms in order, levels by k), then the family's draws for all replicates
# at once.
glmm_draw <- function(object, nsim, conditional) {
  model <- object$model
  n <- model$n
  eta <- if (conditional) matrix(object$eta, n, nsim) else {
    q <- vapply(model$terms, function(t) nlevels(t$factor) * ncol(t$Z), 1)
    U <- matrix(stats::rnorm(sum(q) * nsim), ncol = nsim)
    eta <- matrix(fixed_part(object), n, nsim)
    ends <- cumsum(q)
    for (i in seq_along(model$terms)) {
      t <- model$terms[[i]]
      k <- ncol(t$Z)
      rows <- (ends[i] - q[i] + 1L):ends[i]
      lev <- as.integer(t$factor)
      for (s in seq_len(nsim)) {
        b <- t(object$lambda[[i]] %*% matrix(U[rows, s], nrow = k))  # levels x k
        eta[, s] <- eta[, s] + rowSums(t$Z * b[lev, , drop = FALSE])
      }
    }
    eta
  }
  mu <- object$family$linkinv(as.vector(eta))
  wt <- object$prior_weights
  y <- model$y
  resp <- stats::model.response(model$frame)
  sims <- if (object$family$family == "binomial") {
    if (any(wt %% 1 != 0)) mixedrs_abort("cannot simulate from non-integer prior.weights")
    if (is.factor(resp)) {
      yy <- factor(1 + stats::rbinom(n * nsim, size = 1, prob = mu), levels = 1:2, labels = levels(resp))
      split(yy, rep(seq_len(nsim), each = n))
    } else if (is.matrix(resp) && ncol(resp) == 2L) {
      counts <- stats::rbinom(n * nsim, size = wt, prob = mu)
      lapply(split(counts, rep(seq_len(nsim), each = n)), function(k) {
        structure(cbind(k, rep_len(wt, n) - k), dimnames = list(NULL, colnames(resp)))
      })
    } else {
      split(stats::rbinom(n * nsim, size = wt, prob = mu) / wt, rep(seq_len(nsim), each = n))
    }
  } else {
    if (any(wt != 1)) warning("ignoring prior weights", call. = FALSE)
    split(stats::rpois(n * nsim, mu), rep(seq_len(nsim), each = n))
  }
  out <- as.data.frame(lapply(sims, function(s) if (is.matrix(s)) I(s) else s), optional = TRUE)
  for (j in seq_along(sims)) if (is.matrix(sims[[j]])) out[[j]] <- unclass(sims[[j]])
  names(out) <- paste0("sim_", seq_len(nsim))
  rownames(out) <- rownames(model$frame)
  out
}

# bootstrap() of a glmm fit: parametric (simulate.glmm() draws, refits from the fit's
# estimates), in R.
bootstrap_glmm <- function(object, nsim = 1000, FUN = NULL, seed = NULL, oldNames = TRUE, cores = 1L) {
  if (!inherits(object, "glmm")) mixedrs_abort("bootstrap_glmm() needs a glmm fit")
  if (!is.numeric(nsim) || length(nsim) != 1L || nsim < 1) mixedrs_abort("'nsim' must be a positive number")
  nsim <- as.integer(nsim)
  sims <- simulate.glmm(object, nsim = nsim, seed = seed)
  # the default statistics: every replicate refitted in the engine, on `cores` threads
  ys <- if (is.null(FUN)) glmm_boot_responses(object, sims)
  if (!is.null(ys)) {
    t0 <- glmm_boot_stats(object, oldNames)
    rule <- if (object$nAGQ > 1L) gauss_hermite(object$nAGQ) else NULL
    ctl <- engine_control(object$control, start = glmm_start(object), nagq0 = object$nAGQ == 0L, hessian = FALSE,
                          agq_z = rule$z, agq_w = rule$w, threads = as.integer(cores))
    res <- call_rust(glmm_refits_rs, glmm_spec(object$model, object$family, object$prior_weights), ys, ctl)
    t <- matrix(res$stats, ncol = length(t0), byrow = TRUE, dimnames = list(NULL, names(t0)))
    if (res$failed > 0L) warning(sprintf("%d of %d bootstrap refits failed", res$failed, nsim), call. = FALSE)
    return(structure(list(t0 = t0, t = t, R = nsim, type = "parametric", seed = attr(sims, "seed"), failed = res$failed,
                          call = match.call(), fit_class = "glmm"), class = "lmm_boot"))
  }
  FUN <- if (is.null(FUN)) function(fit) glmm_boot_stats(fit, oldNames) else match.fun(FUN)
  t0 <- FUN(object)
  failed <- 0L
  t <- t(vapply(seq_len(nsim), function(i) {
    fit <- tryCatch(suppressWarnings(refit.glmm(object, sims[[i]])), mixedrs_error = function(e) NULL)
    if (is.null(fit)) {
      failed <<- failed + 1L
      return(rep(NA_real_, length(t0)))
    }
    FUN(fit)
  }, t0))
  if (length(t0) == 1L) t <- t(t)
  colnames(t) <- names(t0)
  if (failed > 0L) warning(sprintf("%d of %d bootstrap refits failed", failed, nsim), call. = FALSE)
  structure(list(t0 = t0, t = t, R = nsim, type = "parametric", seed = attr(sims, "seed"), failed = failed,
                 call = match.call(), fit_class = "glmm"), class = "lmm_boot")
}

# The simulated responses as the engine reads them (n × nsim proportions or counts),
# when every replicate keeps the fit's prior weights (else NULL: refits in R).
glmm_boot_responses <- function(object, sims) {
  model <- object$model
  ys <- vapply(sims, function(s) {
    y <- glmm_response(s, "newresp", object$family$family)
    if (is.null(attr(y, "trials")) && !is.null(attr(model$y, "trials"))) attr(y, "trials") <- attr(model$y, "trials")
    model$y <- y
    if (!isTRUE(all.equal(glmm_prior_weights(model, object$family), object$prior_weights, tolerance = 0))) return(rep(NA_real_, model$n))
    as.double(y)
  }, numeric(model$n))
  if (anyNA(ys)) NULL else ys
}

# The standard deviations (and correlations) of the random effects, then β: the
# parameters confint() reports, named as lme4 names them.
glmm_boot_stats <- function(fit, oldNames = TRUE) {
  c(stats::setNames(glmm_sdcor(fit), glmm_par_names(fit, oldNames)), fit$beta)
}

# lme4's names of the random-effects parameters (no residual standard deviation).
glmm_par_names <- function(fit, oldNames = TRUE) utils::head(profile_names(fit, oldNames), -1L)

# The standard deviation or correlation each θ stands for, in θ's layout.
glmm_sdcor <- function(fit) {
  lay <- fit$theta_layout
  vapply(seq_len(nrow(lay)), function(i) {
    L <- fit$lambda[[lay$term[i]]]
    S <- L %*% t(L)
    r <- lay$row[i]
    c <- lay$col[i]
    if (r == c) sqrt(S[r, r]) else S[r, c] / sqrt(S[r, r] * S[c, c])
  }, 0)
}

#' @export
anova.glmm <- function(object, ..., model.names = NULL) {
  dots <- list(...)
  is_fit <- vapply(dots, function(d) inherits(d, c("glmm", "glmerMod", "glm")), TRUE)
  if (!any(is_fit)) {
    mixedrs_abort("anova() of one glmm fit is not available; compare two fits (a likelihood-ratio test) or use drop1(test = \"Chisq\")",
                  kind = "not_available")
  }
  if (any(!is_fit)) mixedrs_abort("anova(): every other argument must be a glmm, glmer or glm fit")
  mcall <- match.call(expand.dots = FALSE)
  names <- model.names
  if (is.null(names)) names <- c(deparse1(mcall$object), vapply(mcall$...[is_fit], deparse1, ""))
  lrt_anova(c(list(object), dots), names, refit = FALSE)
}

#' @export
drop1.glmm <- function(object, scope, test = c("none", "Chisq"), k = 2, ...) {
  drop1_lrt(object, scope, match.arg(test), k)
}

#' Confidence intervals for a glmm fit
#'
#' As lme4's `confint()` for glmer fits: Wald intervals for the fixed effects (and
#' `NA` for the random-effects parameters, as lme4), parametric bootstrap
#' percentile intervals for all parameters, or profile intervals (the deviance
#' profiled over each parameter with the others at their optimum).
#' @param object a `glmm` fit.
#' @param parm parameters: names, indices, "theta_" or "beta_"; all by default.
#' @param level confidence level.
#' @param method "profile", "Wald" or "boot".
#' @param nsim bootstrap replicates.
#' @param oldNames lme4's old (`.sig01`) or new (`sd_(Intercept)|herd`) names.
#' @param ... unused.
#' @examples
#' gm <- glmm(cbind(incidence, size - incidence) ~ period + (1 | herd), lme4::cbpp, family = binomial)
#' confint(gm, method = "Wald")
#' @export
confint.glmm <- function(object, parm, level = 0.95, method = c("profile", "Wald", "boot"), nsim = 500,
                         oldNames = TRUE, ...) {
  method <- match.arg(method)
  a <- (1 - level) / 2
  vp <- glmm_par_names(object, oldNames)
  all_names <- c(vp, names(object$beta))
  which <- select_parm(parm, all_names, length(vp), missing(parm), length(object$beta))
  ci <- matrix(NA_real_, length(all_names), 2L, dimnames = list(all_names, format_perc(c(a, 1 - a))))
  if (method == "Wald") {
    se <- sqrt(diag(object$vcov))
    z <- stats::qnorm(1 - a)
    ci[names(object$beta), ] <- cbind(object$beta - z * se, object$beta + z * se)
  } else if (method == "boot") {
    b <- bootstrap_glmm(object, nsim = nsim, oldNames = oldNames)
    ci[] <- confint.lmm_boot(b, level = level)[all_names, ]
  } else {
    # only the parameters asked for are profiled
    ci[which, ] <- glmm_profile_ci(object, level, which)
  }
  ci[which, , drop = FALSE]
}

# Profile intervals: for each parameter (the random-effects standard deviations and
# correlations first, on lme4's scale, then β), the values where the deviance profiled
# over the others rises by qchisq(level, 1). Found in the engine by a root search on
# each side.
glmm_profile_ci <- function(object, level, which) {
  if (object$nAGQ == 0L) mixedrs_abort("profile intervals need nAGQ >= 1", kind = "not_available")
  model <- object$model
  wt <- object$prior_weights
  spec <- glmm_spec(model, object$family, wt)
  rule <- if (object$nAGQ > 1L) gauss_hermite(object$nAGQ) else NULL
  ctl <- engine_control(object$control, start = glmm_start(object), nagq0 = FALSE, hessian = FALSE,
                        agq_z = rule$z, agq_w = rule$w, cutoff = stats::qchisq(level, 1), se = c(rep(NA_real_, length(object$theta)),
                                                                               sqrt(diag(object$vcov))),
                        which = as.integer(which - 1L))
  res <- call_rust(glmm_profile_rs, spec, ctl)
  matrix(res$ends, ncol = 2L, byrow = TRUE)
}

# getME() names a glmm fit answers from what it stores; the factor, R_X and the
# deviance function live in lme4's objects (see as_glmerMod()).
getME_glmm_names <- c("X", "Z", "Zt", "Ztlist", "mmList", "y", "mu", "u", "b", "Gp", "Tp", "Lambda", "Lambdat", "Lind",
                      "Tlist", "A", "sigma", "flist", "fixef", "beta", "theta", "ST", "REML", "is_REML", "n_rtrms",
                      "n_rfacs", "N", "n", "p", "q", "p_i", "l_i", "q_i", "k", "m_i", "m", "cnms", "offset", "lower",
                      "glmer.nb.theta")

#' @export
getME.glmm <- function(object, name, ...) {
  if (missing(name)) mixedrs_abort("'name' must not be missing")
  name <- as.character(name)
  if (length(name) > 1L) return(lapply(stats::setNames(name, name), function(nm) getME.glmm(object, nm)))
  if (name == "ALL") return(sapply(getME_glmm_names, function(nm) getME.glmm(object, nm), simplify = FALSE))
  if (!name %in% getME_glmm_names) {
    mixedrs_abort(sprintf("getME(, \"%s\") is not available for glmm fits; as_glmerMod() gives lme4's object", name),
                  kind = "not_available")
  }
  switch(name,
    y = stats::setNames(as.double(object$model$y), rownames(object$model$frame)),
    mu = object$mu,
    sigma = 1,
    REML = 0L,
    is_REML = FALSE,
    lower = stats::setNames(ifelse(object$theta_layout$row == object$theta_layout$col, 0, -Inf), names(object$theta)),
    getME.lmm(object, name))
}
