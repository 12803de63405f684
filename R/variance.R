# Heteroscedastic residuals: nlme's variance functions (varIdent, varPower, varExp,
# varConstPower, varFixed and varComb of them), given as lmm(weights = ). Var(e_i) =
# sigma^2 v_i^2; the engine whitens each row by v_i before any correlation
# (src/rust/core/src/residuals/variance.rs). Here: recognising them, the plain list
# the engine reads, and the fit's varStruct component with nlme's print layout.

var_types <- c(varIdent = "Ident", varPower = "Power", varExp = "Exp", varConstPower = "ConstPower", varFixed = "Fixed")

var_structure_names <- c(Ident = "Different standard deviations per stratum", Power = "Power of variance covariate",
                         Exp = "Exponential of variance covariate",
                         ConstPower = "Constant plus power of variance covariate", Fixed = "fixed weights")

# The variance function in lmm()'s `weights` argument, or NULL when it is numeric
# weights (lme4's prior weights), evaluated where model.frame() would evaluate it.
variance_function <- function(expr, data, env) {
  if (is.null(expr)) return(NULL)
  v <- tryCatch(eval(expr, if (is.data.frame(data) || is.list(data)) data else NULL, env), error = function(e) NULL)
  if (inherits(v, "varFunc")) v else NULL
}

# The parts of a variance function (varComb combines several).
var_parts <- function(v) if (inherits(v, "varComb")) lapply(seq_along(v), function(i) v[[i]]) else list(v)

check_variance <- function(variance) {
  if (is.null(variance)) return(invisible())
  for (part in var_parts(variance)) {
    cls <- class(part)[1L]
    if (!cls %in% names(var_types)) {
      mixedrs_abort(sprintf("variance function '%s' is not supported; use varIdent, varPower, varExp, varConstPower, varFixed or varComb of them", cls),
                    kind = "not_available")
    }
    given <- unlist(lapply(unclass(part), as.numeric))
    if (!is.null(attr(part, "fixed")) || isTRUE(any(attr(part, "whichFix"))) || length(given) > 0L) {
      mixedrs_abort(sprintf("%s(): fixed or initial parameter values are not available yet; give only 'form'", cls),
                    kind = "not_available")
    }
    parts <- cor_form_parts(var_formula(part))
    if (on_fitted(parts$covariate) && !identical(parts$covariate, quote(fitted(.)))) {
      mixedrs_abort(sprintf("%s(): of the fitted values only form = ~ fitted(.) itself is available", cls), kind = "not_available")
    }
    if (cls == "varIdent" && is.null(parts$group)) mixedrs_abort("varIdent() needs strata: form = ~ 1 | g")
    if (cls != "varIdent" && !is.null(parts$group)) {
      mixedrs_abort(sprintf("%s() with strata (form = ~ x | g) is not available yet", cls), kind = "not_available")
    }
    if (cls != "varIdent" && identical(parts$covariate, 1)) mixedrs_abort(sprintf("%s() needs a covariate: form = ~ x", cls))
  }
  invisible()
}

# nlme's `~ fitted(.)`: the covariate is the fit's own fitted values.
on_fitted <- function(expr) any(all.names(expr) %in% c("fitted", "."))
uses_fitted <- function(variance) {
  !is.null(variance) && any(vapply(var_parts(variance), function(p) on_fitted(cor_form_parts(var_formula(p))$covariate), NA))
}

var_formula <- function(part) {
  form <- attr(part, "formula")
  if (is.null(form)) form <- stats::formula(part)
  form
}

# Variables the variance function needs in the model frame (so NA handling covers them).
var_variables <- function(variance) {
  if (is.null(variance)) return(list())
  unlist(lapply(var_parts(variance), function(part) {
    parts <- cor_form_parts(var_formula(part))
    c(if (!identical(parts$covariate, 1) && !on_fitted(parts$covariate)) list(parts$covariate),
      if (!is.null(parts$group)) list(group_variables(parts$group)))
  }), recursive = FALSE)
}

# As nlme: a variance covariate or stratum with missing values is an error (the rows
# are not dropped as for the model's other variables).
check_variance_na <- function(variance, mf_call, env) {
  vars <- var_variables(variance)
  if (!length(vars)) return(invisible())
  mf_call$formula <- stats::as.formula(call("~", Reduce(function(a, b) call("+", a, b), vars)), env = env)
  mf_call$na.action <- quote(stats::na.pass)
  frame <- tryCatch(eval(mf_call, env), error = function(e) NULL)
  if (is.null(frame)) return(invisible())
  bad <- names(frame)[vapply(frame, anyNA, NA)]
  if (length(bad)) mixedrs_abort(sprintf("the variance function's variable '%s' has missing values", bad[1L]))
  invisible()
}

# varIdent's `a * b` strata name the variables a and b.
group_variables <- function(expr) {
  if (is.call(expr) && identical(expr[[1L]], as.name("*"))) return(call("+", group_variables(expr[[2L]]), group_variables(expr[[3L]])))
  expr
}

# The strata of varIdent's group expression (a * b: their combinations, named a*b as nlme).
eval_strata <- function(expr, frame, env) {
  if (is.call(expr) && identical(expr[[1L]], as.name("*"))) {
    return(paste(eval_strata(expr[[2L]], frame, env), eval_strata(expr[[3L]], frame, env), sep = "*"))
  }
  as.character(eval(expr, frame, env))
}

# The engine's description of the variance function, from the model frame. nlme orders
# the data by the grouping factors before it reads the strata, and the first stratum
# it meets is the reference (ratio 1): the same order here.
# With `fit` (a fit's varStruct), the strata are the fit's (new data may hold any of
# them, in any number) and a stratum the fit did not have is an error.
var_setup <- function(variance, frame, terms, fitted_values = NULL, fit = NULL) {
  n <- nrow(frame)
  factors <- lapply(terms[order(vapply(terms, function(t) nlevels(t$factor), 1L))], `[[`, "factor")
  ord <- if (length(factors)) do.call(order, unname(factors)) else seq_len(n)
  vparts <- var_parts(variance)
  parts <- lapply(seq_along(vparts), function(i) {
    part <- vparts[[i]]
    known <- if (is.null(fit)) NULL else fit$parts[[i]]
    cls <- class(part)[1L]
    form <- var_formula(part)
    fp <- cor_form_parts(form)
    env <- environment(form) %||% parent.frame()
    if (cls == "varIdent") {
      s <- eval_strata(fp$group, frame, env)
      if (anyNA(s)) mixedrs_abort("the varIdent strata have missing values")
      if (!is.null(known)) {
        names_s <- c(known$reference, names(known$value))
        if (!all(s %in% names_s)) {
          mixedrs_abort(sprintf("varIdent(): stratum '%s' is not one of the fit's", s[!s %in% names_s][1L]))
        }
        return(list(type = "Ident", strata = match(s, names_s), nstrata = length(names_s), start = unname(known$value)))
      }
      names_s <- unique(s[ord])
      counts <- table(factor(s, levels = names_s))
      if (length(names_s) > 1L && any(counts < 2L)) {
        mixedrs_abort(sprintf("varIdent(): stratum '%s' has one observation; its standard deviation cannot be estimated",
                              names(counts)[counts < 2L][1L]))
      }
      return(list(type = "Ident", strata = match(s, names_s), nstrata = length(names_s), class = cls, form = form,
                  names = names_s[-1L], reference = names_s[1L], start = rep(1, length(names_s) - 1L)))
    }
    label <- deparse1(fp$covariate)
    x <- if (on_fitted(fp$covariate)) {
      # the fitted values of the previous round of nlme's outer iteration (lmm())
      if (length(fitted_values) != n) mixedrs_abort("internal: the fitted values for ~ fitted(.) are missing", kind = "internal")
      fitted_values
    } else eval(fp$covariate, frame, env)
    if (!is.numeric(x) || length(x) != n) mixedrs_abort(sprintf("the variance covariate '%s' must be numeric", label))
    if (anyNA(x)) mixedrs_abort(sprintf("the variance covariate '%s' has missing values", label))
    if (any(!is.finite(x))) mixedrs_abort(sprintf("the variance covariate '%s' has infinite values", label))
    x <- as.double(x)
    if (cls %in% c("varPower") && any(x == 0)) {
      mixedrs_abort(sprintf("%s(): the covariate '%s' is 0 in %d rows, where |x|^power is 0 (or infinite) and the likelihood degenerate; use varConstPower() or shift the covariate",
                            cls, label, sum(x == 0)))
    }
    if (cls == "varFixed" && any(x <= 0)) {
      mixedrs_abort(sprintf("varFixed(): the covariate '%s' must be positive (it is the variance's multiplier)", label))
    }
    start <- if (!is.null(known)) unname(known$value) else switch(cls, varPower = 0, varExp = 0, varConstPower = c(1, 0), varFixed = numeric(0))
    names <- switch(cls, varPower = "power", varExp = "expon", varConstPower = c("const", "power"), varFixed = character(0))
    list(type = var_types[[cls]], covariate = x, class = cls, form = form, names = names, start = start)
  })
  list(parts = lapply(parts, function(p) p[intersect(c("type", "strata", "nstrata", "covariate"), names(p))]),
       start = as.double(unlist(lapply(parts, `[[`, "start"))),
       info = lapply(parts, function(p) p[c("class", "form", "names", if (p$type == "Ident") "reference")]),
       class = class(variance)[1L])
}

# Number of parameters of the correlation and of the variance function in the fit's η.
n_cor_par <- function(object) if (is.null(object$correlation)) 0L else length(object$correlation$value)

# The fit's varStruct: each part's estimates on nlme's scale (ratios, powers, const and
# power), named as nlme names them.
package_variance <- function(spec, phi) {
  if (is.null(spec)) return(NULL)
  at <- 0L
  parts <- lapply(spec$info, function(p) {
    k <- length(p$names)
    value <- stats::setNames(as.double(phi[at + seq_len(k)]), p$names)
    at <<- at + k
    c(p, list(value = value))
  })
  structure(list(parts = parts, class = spec$class), class = "lmm_varFunc")
}

# The fit's varStruct estimates (nlme's coef(, unconstrained = FALSE)).
#' @export
coef.lmm_varFunc <- function(object, allCoef = FALSE, ...) {
  out <- lapply(object$parts, function(p) {
    v <- p$value
    if (allCoef && identical(p$class, "varIdent")) v <- c(stats::setNames(1, p$reference), v)
    v
  })
  if (length(out) == 1L) return(out[[1L]])
  names(out) <- LETTERS[seq_along(out)]
  unlist(out)
}

#' @export
print.lmm_varFunc <- function(x, ...) {
  cat("Variance function:\n")
  if (length(x$parts) > 1L) cat(" Structure: Combination of variance functions: \n")
  for (p in x$parts) {
    cat(" Structure: ", var_structure_names[[var_types[[p$class]]]], "\n", sep = "")
    cat(" Formula:", deparse(p$form), "\n")
    if (length(p$value) || identical(p$class, "varIdent")) {
      cat(" Parameter estimates:\n")
      v <- p$value
      if (identical(p$class, "varIdent")) v <- c(stats::setNames(1, p$reference), v)
      print(v)
    }
  }
  invisible(x)
}

# Residuals that are not independent with one variance: a correlation or a variance
# function (for the methods that assume them).
structured_residuals <- function(object) !is.null(object$correlation) || !is.null(object$varStruct)

# Names of the residual structure's parameters in bootstraps and intervals, after the
# fixed effects: "corStruct.Phi", "varStruct.Female", ...
structure_names <- function(object) {
  c(if (!is.null(object$correlation)) paste0("corStruct.", names(coef(object$correlation))),
    if (!is.null(object$varStruct)) paste0("varStruct.", names(coef(object$varStruct))))
}

# Profile-likelihood (ML) ends of the residual structure's parameters `which` (indices
# among them), on their natural scale, from the engine.
structure_profile_ends <- function(object, z, which) {
  ctl <- engine_control(object$control, start = NULL)
  call_rust(engine_profile_structure_rs, fit_engine(object), as.double(z), as.integer(which - 1L), ctl)
}

# nlme's outer iteration for a variance function of the fitted values (its default
# varPower()): fit with the covariate fixed at the last fit's fitted values (at first,
# those of the fit without the variance function), update it, and repeat until the
# fitted values stop moving. The fit keeps the covariate of its last round.
fit_on_fitted <- function(formula, mf_call, env, contrasts, control, correlation, variance, REML, start, verbose, mc) {
  model <- build_model(formula, mf_call, env, contrasts, control, correlation)
  if (!is.null(start)) control$start <- start_theta(start, length(lower_bounds(model)))
  res <- engine_fit(model, REML, control, verbose = verbose)
  mu <- res$fitted + if (is.null(model$offset)) 0 else model$offset
  params <- NULL
  for (round in seq_len(50L)) {
    model <- build_model(formula, mf_call, env, contrasts, control, correlation, variance, fitted_values = mu)
    ctl <- control
    if (!is.null(params)) ctl$start <- params
    res <- engine_fit(model, REML, ctl, verbose = verbose)
    params <- c(res$theta, res$cor_eta)
    new_mu <- res$fitted + if (is.null(model$offset)) 0 else model$offset
    moved <- max(abs(new_mu - mu)) / max(abs(mu), 1e-300)
    mu <- new_mu
    if (moved < 1e-8) break
  }
  if (moved >= 1e-8) {
    warning(sprintf("the variance function's fitted values did not settle in 50 rounds (last relative change %.2g)", moved),
            call. = FALSE)
  }
  mc$formula <- model$formula
  control$start <- NULL
  fit <- package_fit(model, res, REML, mc, control)
  fit$var_rounds <- round
  convergence_checks(fit)
  fit
}
