# insight's generics, and performance's that read the same things. Everything not
# defined here forwards to insight's method for lme4's fits (R/interop.R); these are the
# ones whose lme4 method reads slots, or where insight branches on lme4's classes.

insight_methods <- function() {
  list(
    get_call = function(x, ...) x$call,
    find_algorithm = function(x, ...) {
      list(algorithm = if (x$REML) "REML" else "ML", optimizer = "mixedrs (BFGS on the profiled criterion)")
    },
    find_weights = function(x, ...) {
      w <- x$call$weights
      if (is.null(w)) NULL else paste(deparse(w), collapse = "")
    },
    is_converged = is_converged_lmm,
    find_formula = find_formula_lmm,
    get_variance = get_variance_lmm,
    get_df = get_df_lmm,
    find_parameters = find_parameters_lmm,
    get_varcov = get_varcov_lmm
  )
}

# ggeffects computes the standard errors of its predictions from a model matrix of its
# grid made with the default contrasts (stats::model.matrix(terms, grid)), whatever
# contrasts the fit used: for a fit with an ordered factor, or other contrasts, they are
# wrong (for lme4's fits too). There the covariance is refused to ggeffects, which then
# gives its predictions without intervals.
get_varcov_lmm <- function(x, ...) {
  if (in_ggeffects_standard_errors() && !default_contrasts(x)) {
    stop("the fit's factors are not coded with the default contrasts, which ggeffects assumes for its intervals",
         call. = FALSE)
  }
  lmer_method("insight", "get_varcov")(x, ...)
}

in_ggeffects_standard_errors <- function() {
  if (!isNamespaceLoaded("ggeffects")) return(FALSE)
  helper <- get0(".vcov_helper", envir = asNamespace("ggeffects"), inherits = FALSE)
  if (is.null(helper)) return(FALSE)
  any(vapply(seq_len(sys.nframe()), function(i) identical(sys.function(i), helper), NA))
}

default_contrasts <- function(x) {
  codings <- attr(stats::model.matrix(x), "contrasts")
  all(vapply(codings, identical, NA, getOption("contrasts")[["unordered"]]))
}

# The parameter names; with correlated residuals and one grouping factor, the random
# ones as one vector, as insight gives them for an lme fit.
find_parameters_lmm <- function(x, effects = "all", component = "all", flatten = FALSE, ...) {
  out <- lmer_method("insight", "find_parameters")(x, effects = effects, component = component, flatten = flatten, ...)
  if (structured_residuals(x) && is.list(out) && is.list(out$random) && length(out$random) == 1L) {
    out$random <- out$random[[1L]]
  }
  out
}

performance_methods <- function() {
  list(check_convergence = is_converged_lmm, check_model = check_model_lmm)
}

# performance's check_model(): its own checks, plus the homogeneity panel, which it
# draws for lme4's fits from their scaled residuals after asking for the "merMod"
# class (which an lmm fit does not claim, see R/interop.R). With correlated residuals
# it is left out, as for an lme fit.
check_model_lmm <- function(x, ...) {
  target <- lmer_method("performance", "check_model")
  if (structured_residuals(x)) return(target(x, ...))
  out <- withCallingHandlers(target(x, ...), message = function(m) {
    if (grepl("Homogeneity of variance could not be computed", conditionMessage(m))) invokeRestart("muffleMessage")
  })
  if (!is.null(out$HOMOGENEITY)) return(out)
  homogeneity <- data.frame(x = stats::fitted(x), y = sqrt(abs(stats::residuals(x, scaled = TRUE))))
  at <- match("NCV", names(out), nomatch = length(out))
  attrs <- attributes(out)[setdiff(names(attributes(out)), "names")]
  out <- c(unclass(out)[seq_len(at)], list(HOMOGENEITY = homogeneity), unclass(out)[-seq_len(at)])
  attributes(out)[names(attrs)] <- attrs
  out
}

# lme4's convergence measure: the gradient of the criterion scaled by its Hessian,
# max |H⁻¹ g| over θ at the optimum, below `tolerance`. lme4 takes both by finite
# differences of the deviance function; so do we, of ours.
is_converged_lmm <- function(x, tolerance = 0.001, ...) {
  d <- criterion_derivs(x)
  relgrad <- tryCatch(solve(d$Hessian, d$gradient), error = function(e) rep(Inf, length(d$gradient)))
  out <- max(abs(relgrad)) < tolerance
  attr(out, "gradient") <- max(abs(relgrad))
  out
}

# Central differences of the profiled criterion over θ (and η) at the fit: gradient and
# Hessian, as lme4's optinfo$derivs holds them.
criterion_derivs <- function(x) {
  f <- as.function.lmm(x)
  p <- full_theta(x)
  k <- length(p)
  h <- 1e-4 * pmax(abs(p), 0.1)
  f0 <- f(p)
  at <- function(i, j, si, sj) {
    q <- p
    q[i] <- q[i] + si * h[i]
    q[j] <- q[j] + sj * h[j]
    f(q)
  }
  g <- vapply(seq_len(k), function(i) (at(i, i, 1, 0) - at(i, i, -1, 0)) / (2 * h[i]), 0)
  H <- matrix(0, k, k)
  for (i in seq_len(k)) {
    H[i, i] <- (at(i, i, 1, 0) - 2 * f0 + at(i, i, -1, 0)) / h[i]^2
    for (j in seq_len(i - 1L)) {
      H[i, j] <- H[j, i] <- (at(i, j, 1, 1) - at(i, j, 1, -1) - at(i, j, -1, 1) + at(i, j, -1, -1)) / (4 * h[i] * h[j])
    }
  }
  list(gradient = g, Hessian = H)
}

# lme4's formula parts, and for correlated residuals nlme's `correlation` part as
# insight gives it for an lme fit.
find_formula_lmm <- function(x, verbose = TRUE, ...) {
  out <- lmer_method("insight", "find_formula")(x, verbose = verbose, ...)
  if (!is.null(x$correlation)) out$correlation <- correlation_formula(x$correlation)
  out
}

# insight's variance components. insight's own method for lme4 fits computes them from
# fixef, VarCorr and ranef, which lmm answers as lme4 does; its check for a singular fit
# asks for lme4's "merMod" class (which an lmm fit does not claim, see R/interop.R), so
# it is made here with lme4's rule: then, as for lme4's fits, there is no random-effect
# variance (and insight's warning).
get_variance_lmm <- function(x, component = c("all", "fixed", "random", "residual", "distribution", "dispersion",
                                              "intercept", "slope", "rho01", "rho00"),
                             verbose = TRUE, tolerance = 1e-05, ...) {
  component <- match.arg(component)
  out <- lmer_method("insight", "get_variance")(x, component = component, verbose = verbose,
                                               tolerance = tolerance, ...)
  singular <- any(abs(x$theta[x$lower == 0]) < tolerance)
  if (singular && !is.null(out) && !(component %in% c("slope", "intercept"))) {
    if (verbose) {
      insight::format_warning(
        "Can't compute random effect variances. Some variance components equal zero. Your model may suffer from singularity (see `?lme4::isSingular` and `?performance::check_singularity`).",
        "Solution: Respecify random structure! You may also decrease the `tolerance` level to enforce the calculation of random effect variances."
      )
    }
    out$var.random <- NULL
  }
  out
}

# Degrees of freedom: lmerTest's for independent residuals (through insight's method
# for its fits); with correlated residuals nlme's per-coefficient "within-between" df,
# as insight reports them for an lme fit.
get_df_lmm <- function(x, type = "residual", verbose = TRUE, ...) {
  if (structured_residuals(x) && tolower(type) %in% c("residual", "wald", "analytical")) {
    return(stats::setNames(containment_df(x), NULL))
  }
  # Satterthwaite's, which insight gets by converting to lmerTest's fit
  if (identical(tolower(type), "satterthwaite") && !isTRUE(list(...)$df_per_obs)) return(satterthwaite_df(x))
  lmer_method("insight", "get_df")(x, type = type, verbose = verbose, ...)
}

# lmerTest's Satterthwaite df of each coefficient.
satterthwaite_df <- function(x) stats::setNames(summary(x)$coefficients[, "df"], names(x$beta))

parameters_methods <- function() {
  list(degrees_of_freedom = degrees_of_freedom_lmm,
       # lmerTest's Satterthwaite df, which parameters gets by converting to its fit
       dof_satterthwaite = function(model, ...) satterthwaite_df(model))
}

# parameters' df: with correlated residuals, the residual df are nlme's
# per-coefficient "within-between" df, which parameters takes from an lme fit; other
# methods and independent residuals as for lmerTest's fit.
degrees_of_freedom_lmm <- function(model, method = "analytical", ...) {
  if (structured_residuals(model) && !is.null(method) && tolower(method) %in% c("residual", "any", "wald")) {
    return(unname(containment_df(model)))
  }
  lmer_method("parameters", "degrees_of_freedom")(model, method = method, ...)
}
