# Correlated residuals: nlme's corStruct objects (corAR1, corCAR1, corCompSymm) and
# corRandomWalk, turned into the plain list the engine whitens with.

#' Random-walk residuals
#'
#' Errors that are cumulative sums of independent Normal increments, observed at
#' times `t > 0` within each group: Cov(e_j, e_k) = sigma^2 min(t_j, t_k). With
#' `nugget = TRUE` an independent measurement error is added (its variance is
#' estimated as a multiple of sigma^2). Use it like nlme's correlation structures:
#' `lmm(height ~ treatment:age - 1 + (age - 1 | tree), data, correlation = corRandomWalk(~ age | tree))`.
#'
#' The model is exact for growth data where each period adds an independent shock,
#' as in the tree example of the workshop vignette; its likelihood equals that of
#' the within-group increments with independent errors.
#' @param form `~ t | g`: time covariate and group; `~ 1 | g` uses positions 1, 2, ...
#' @param nugget add an independent measurement error.
#' @return an object of class `c("corRandomWalk", "corStruct")`.
#' @examples
#' trees <- sim_growth(trees = 10, seed = 3)
#' m <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees,
#'          correlation = corRandomWalk(~ age | tree))
#' summary(m)
#' @export
corRandomWalk <- function(form = ~1, nugget = FALSE) {
  if (!inherits(form, "formula")) mixedrs_abort("corRandomWalk(): 'form' must be a one-sided formula such as ~ t | g")
  structure(numeric(0), formula = form, nugget = isTRUE(nugget), fixed = FALSE,
            class = c("corRandomWalk", "corStruct"))
}

cor_types <- c(corAR1 = "AR1", corCAR1 = "CAR1", corCompSymm = "CompSymm", corRandomWalk = "RandomWalk")

# Covariate and group expressions of a corStruct's form (~ t | g, ~ 1 | g, ~ t, ~ 1).
cor_form_parts <- function(form) {
  rhs <- form[[length(form)]]
  if (is.call(rhs) && identical(rhs[[1L]], as.name("|"))) return(list(covariate = rhs[[2L]], group = rhs[[3L]]))
  list(covariate = rhs, group = NULL)
}

# A correlation group expression, with nlme's nesting a/b (b within a).
eval_group <- function(expr, frame, env) {
  if (is.call(expr) && identical(expr[[1L]], as.name("/"))) {
    return(interaction(eval_group(expr[[2L]], frame, env), eval_group(expr[[3L]], frame, env), drop = TRUE, lex.order = TRUE))
  }
  g <- eval(expr, frame, env)
  if (is.factor(g)) droplevels(g) else factor(g)
}

# Variables the correlation needs in the model frame.
cor_variables <- function(correlation) {
  if (is.null(correlation)) return(list())
  parts <- cor_form_parts(attr(correlation, "formula"))
  vars <- list()
  if (!identical(parts$covariate, 1) && !identical(parts$covariate, 1L)) vars <- c(vars, list(parts$covariate))
  if (!is.null(parts$group)) vars <- c(vars, list(parts$group))
  vars
}

check_correlation <- function(correlation) {
  if (is.null(correlation)) return(invisible())
  if (!inherits(correlation, "corStruct")) mixedrs_abort("'correlation' must be a correlation structure such as nlme::corAR1() or corRandomWalk()")
  cls <- class(correlation)[1L]
  if (!cls %in% names(cor_types)) {
    mixedrs_abort(sprintf("correlation structure '%s' is not supported; use corAR1, corCAR1, corCompSymm or corRandomWalk", cls))
  }
  invisible()
}

# The engine's description of the correlation, from the model frame and terms.
cor_setup <- function(correlation, frame, terms) {
  cls <- class(correlation)[1L]
  form <- attr(correlation, "formula")
  parts <- cor_form_parts(form)
  if (is.null(parts$group)) {
    # as nlme: the innermost grouping factor (here, the one with the most levels)
    group <- terms[[1L]]$factor
    group_name <- terms[[1L]]$group
  } else {
    group <- eval_group(parts$group, frame, environment(form))
    group_name <- deparse1(parts$group)
  }
  if (anyNA(group)) mixedrs_abort("the correlation group has missing values")
  n <- nrow(frame)
  if (identical(parts$covariate, 1) || identical(parts$covariate, 1L)) {
    times <- stats::ave(seq_len(n), group, FUN = seq_along)
    time_name <- NULL
  } else {
    times <- eval(parts$covariate, frame, environment(form))
    time_name <- deparse1(parts$covariate)
    if (!is.numeric(times) || length(times) != n || anyNA(times)) {
      mixedrs_abort(sprintf("the correlation covariate '%s' must be numeric without missing values", time_name))
    }
  }
  times <- as.double(times)
  # rows in (group, time) order, so that neighbours tell duplicates and cut groups (one
  # pass instead of one function call per group)
  ord <- order(as.integer(group), times, method = "radix")
  same_group <- if (n > 1L) as.integer(group)[ord][-1L] == as.integer(group)[ord][-n] else logical(0)
  if (cls != "corCompSymm") {
    dup <- which(same_group & times[ord][-1L] == times[ord][-n])
    if (length(dup)) {
      mixedrs_abort(sprintf("duplicated times within correlation group '%s' (level %s)", group_name, as.character(group[ord][dup[1L]])))
    }
  }
  if (cls == "corAR1" && any(times != round(times))) {
    mixedrs_abort("corAR1 needs integer-valued times; use corCAR1 for continuous time")
  }
  if (cls == "corRandomWalk" && any(times <= 0)) {
    mixedrs_abort("corRandomWalk needs positive times (the walk is 0 at time 0)")
  }
  for (t in terms) {
    f <- as.integer(t$factor)[ord]
    if (any(same_group & f[-1L] != f[-n])) {
      mixedrs_abort(sprintf("correlation groups '%s' cut across the random-effects grouping factor '%s'; they must be nested in it",
                            group_name, t$group))
    }
  }
  start <- NULL
  v <- as.numeric(unclass(correlation))
  if (length(v) == 1L && v != 0) {
    start <- switch(cls, corAR1 = tanh(v / 2), corCAR1 = stats::plogis(v), NULL)
  }
  list(type = cor_types[[cls]], groups = as.integer(group), times = times, start = start,
       nugget = isTRUE(attr(correlation, "nugget")), class = cls, form = form, group_name = group_name,
       time_name = time_name)
}

# The fit's correlation component: what coef() and summary() read.
package_correlation <- function(spec, phi) {
  if (is.null(spec)) return(NULL)
  nm <- switch(spec$type, AR1 = "Phi", CAR1 = "Phi", CompSymm = "Rho", RandomWalk = if (spec$nugget) "nugget" else character(0))
  structure(list(class = spec$class, type = spec$type, value = stats::setNames(as.double(phi), nm),
                 form = spec$form, group = spec$group_name), class = "lmm_corStruct")
}

#' @export
coef.lmm_corStruct <- function(object, ...) object$value

#' @export
print.lmm_corStruct <- function(x, ...) {
  cat("Correlation Structure: ", cor_title(x), "\n", sep = "")
  cat(" Formula: ", deparse1(correlation_formula(x)), "\n", sep = "")
  if (length(x$value)) {
    cat(" Parameter estimate(s):\n")
    print(x$value, digits = 4)
  }
  invisible(x)
}

# The structure's formula with its group, as nlme stores it (~ Time | Rat).
correlation_formula <- function(x) {
  form <- x$form
  if (is.null(cor_form_parts(form)$group)) form <- stats::as.formula(paste(deparse1(form), "|", x$group))
  form
}

cor_title <- function(x) {
  switch(x$type, AR1 = "AR(1)", CAR1 = "Continuous AR(1)", CompSymm = "Compound symmetry",
         RandomWalk = if (length(x$value)) "Random walk with measurement error" else "Random walk")
}
