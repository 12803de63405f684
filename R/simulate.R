# simulate() and bootstrap(): draws and refits happen in Rust. The Rust generator's
# seed is drawn from R's RNG, so set.seed() (or `seed =`) makes every result
# reproducible, whatever the number of threads.

# A 52-bit seed for the Rust generator, drawn from R's RNG.
rust_seed <- function() {
  s <- floor(stats::runif(2L) * 2^26)
  s[1L] * 2^26 + s[2L]
}

# Run `expr` with R's RNG seeded by `seed` (when given), restoring the previous
# state afterwards, as stats::simulate methods do. Returns the value with the
# seed (or the RNG state used) in attr "seed".
with_r_seed <- function(seed, expr) {
  if (!exists(".Random.seed", envir = globalenv(), inherits = FALSE)) stats::runif(1L)
  if (is.null(seed)) {
    state <- get(".Random.seed", envir = globalenv())
    val <- expr
    attr(val, "seed") <- structure(state, kind = as.list(RNGkind()))
    return(val)
  }
  old <- get(".Random.seed", envir = globalenv())
  on.exit(assign(".Random.seed", old, envir = globalenv()))
  set.seed(seed)
  val <- expr
  attr(val, "seed") <- seed
  val
}

check_no_correlation <- function(object, what) {
  if (structured_residuals(object)) {
    mixedrs_abort(sprintf("%s is not available yet for fits with correlated or heteroscedastic residuals", what), kind = "not_available")
  }
}

#' Simulate responses from a fitted lmm
#'
#' As lme4's `simulate()`: with `re.form = NA` (or `~0`, the default) new random
#' effects are drawn for every replicate; with `re.form = NULL` (or `use.u = TRUE`)
#' the conditional modes are kept and only the residuals are new; a formula such as
#' `~ (1 | Subject)` keeps the conditional modes of the terms it names and draws the
#' others. The draws are made in Rust from a seed taken from R's RNG, so
#' `set.seed(1); simulate(m)` and `simulate(m, seed = 1)` are reproducible, and
#' `simulate(m, newdata = <the data>, seed = s)` equals `simulate(m, seed = s)`.
#' @param object an `lmm` fit.
#' @param nsim number of replicates.
#' @param seed optional seed for R's RNG (restored afterwards).
#' @param use.u keep the conditional modes of the random effects.
#' @param re.form `NA` or `~0` (new random effects), `NULL` (conditional), or a formula
#'   naming the terms to condition on.
#' @param newdata optional data frame to simulate at: new random effects are drawn for
#'   every level it contains (or, for terms conditioned on, the fitted ones are used).
#'   A correlation or variance function is rebuilt on `newdata` at the fitted
#'   parameters: its groups, times, strata and covariates are read from `newdata`
#'   (strata must be the fit's), and nlme's default `varPower()` reads the predictions.
#' @param newparams not supported (lme4's alternative parameters).
#' @param allow.new.levels for terms conditioned on, levels not in the fit get random
#'   effect 0 instead of an error (as in `predict()`).
#' @param na.action with `na.exclude`, rows the fit dropped are padded with `NA`
#'   (the fit's own `na.action` by default).
#' @param ... unused.
#' @return a data frame with columns `sim_1`, ..., with the seed in attr "seed" and
#'   the fit's na.action in attr "na.action".
#' @examples
#' fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#' y <- simulate(fm, 3, seed = 1)
#' dim(y)
#' simulate(fm, 2, seed = 1, newdata = data.frame(Days = 0, Subject = "new"))
#' @export
simulate.lmm <- function(object, nsim = 1, seed = NULL, use.u = FALSE, re.form = NA, newdata = NULL,
                         newparams = NULL, allow.new.levels = FALSE, na.action = stats::na.pass, ...) {
  if (!is.null(newparams)) mixedrs_abort("simulate(newparams =) is not available for lmm fits", kind = "not_available")
  if (!is.numeric(nsim) || length(nsim) != 1L || nsim < 1) mixedrs_abort("'nsim' must be a positive number")
  if (!missing(use.u) && !missing(re.form)) mixedrs_abort("should specify only one of 'use.u' and 're.form'")
  if (isTRUE(use.u)) re.form <- NULL
  nsim <- as.integer(nsim)
  model <- object$model
  selected <- re_selection(object, re.form)
  # per term: the columns conditioned on (their fitted b) and the columns drawn; a
  # term with a full Λ cannot be split, a diagonal one can
  for (i in seq_along(model$terms)) {
    k <- length(model$terms[[i]]$cnms)
    if (length(selected[[i]]) > 0L && length(selected[[i]]) < k && !model$terms[[i]]$diagonal) {
      mixedrs_abort("simulate(): re.form must name whole random-effects terms", kind = "not_available")
    }
  }
  lay <- object$theta_layout
  free_theta <- numeric(0)
  add_free <- function(Z, f, i, cols, own = FALSE) {
    t <- model$terms[[i]]
    here <- which(lay$term == i)
    free_theta <<- c(free_theta, if (t$diagonal) object$theta[here][cols] else object$theta[here])
    sim_term(if (length(cols) == ncol(Z)) Z else Z[, cols, drop = FALSE], f, t$diagonal && length(cols) > 1L, own)
  }
  free <- list()
  new_terms <- vector("list", length(model$terms))
  # the errors' structure: the fit's, or rebuilt on newdata at the fitted parameters
  cor_spec <- if (!is.null(model$cor)) model$cor[c("type", "groups", "times", "nugget")]
  var_sd <- object$var_sd
  var_spec <- NULL
  if (is.null(newdata)) {
    mu <- fixed_part(object)
    for (i in seq_along(model$terms)) {
      t <- model$terms[[i]]
      cond <- selected[[i]]
      if (length(cond)) mu <- mu + term_contribution(t$Z[, cond, drop = FALSE], as.integer(t$factor), object$b[[i]][, cond, drop = FALSE])
      drawn <- setdiff(seq_along(t$cnms), cond)
      if (length(drawn)) free[[length(free) + 1L]] <- add_free(t$Z, t$factor, i, drawn, own = TRUE)
    }
    weights <- model$weights
    # the frame's row names as stored (compact when automatic): no n-sized strings
    rows <- .row_names_info(model$frame, 0L)
  } else {
    if (!is.data.frame(newdata)) mixedrs_abort("'newdata' must be a data frame")
    if (nrow(newdata) == 0L) mixedrs_abort("'newdata' has no rows")
    fx <- newdata_fixed(object, newdata)
    if (anyNA(fx$X)) mixedrs_abort("'newdata' has missing values in the fixed-effects variables")
    mu <- x_beta(fx$X, object$beta)
    if (!is.null(fx$offset)) mu <- mu + fx$offset
    for (i in seq_along(model$terms)) {
      t <- model$terms[[i]]
      zt <- newdata_term(t, newdata)
      # what a residual structure rebuilt on newdata reads of the term
      new_terms[[i]] <- list(factor = as.factor(zt$factor), group = t$group)
      if (anyNA(zt$Z)) mixedrs_abort(sprintf("'newdata' has missing values for the term of '%s'", t$group))
      cond <- selected[[i]]
      if (length(cond)) {
        lev <- match(zt$group, levels(t$factor))
        if (anyNA(lev) && !allow.new.levels) {
          mixedrs_abort(sprintf("new levels detected in newdata: %s", paste(unique(zt$group[is.na(lev)]), collapse = ", ")))
        }
        contrib <- term_contribution(zt$Z[, cond, drop = FALSE], ifelse(is.na(lev), 1L, lev), object$b[[i]][, cond, drop = FALSE])
        contrib[is.na(lev)] <- 0
        mu <- mu + contrib
      }
      drawn <- setdiff(seq_along(t$cnms), cond)
      if (length(drawn)) {
        if (anyNA(zt$factor)) mixedrs_abort(sprintf("'newdata' has missing values for the term of '%s'", t$group))
        free[[length(free) + 1L]] <- add_free(zt$Z, zt$factor, i, drawn)
      }
    }
    weights <- NULL
    rows <- .row_names_info(newdata, 0L)
    if (structured_residuals(object)) {
      if (!is.null(model$cor)) cor_spec <- cor_setup(model$correlation, newdata, new_terms)[c("type", "groups", "times", "nugget")]
      if (!is.null(model$var)) {
        # a variance function of the fitted values reads the predictions at newdata
        fv <- if (uses_fitted(model$variance)) stats::predict(object, newdata = newdata, allow.new.levels = TRUE)
        vs <- var_setup(model$variance, newdata, new_terms, fitted_values = fv, fit = object$varStruct)
        var_spec <- list(parts = vs$parts, start = vs$start)
        var_sd <- NULL
      }
    }
  }
  n <- length(mu)
  # the fixed part (and the terms conditioned on) enter as one column with coefficient 1
  dim(mu) <- c(n, 1L)
  spec <- list(n = n, X = mu, p = 1L, weights = weights, terms = free,
               # correlated or heteroscedastic errors, at the fitted structure
               cor = if (!is.null(cor_spec)) c(cor_spec, list(start = unname(as.double(coef(object$correlation))))),
               var_sd = var_sd, var = var_spec)
  params <- list(theta = unname(as.double(free_theta)),
                 beta = 1, sigma = as.double(object$sigma), b = lapply(free, function(t) rep(0, t$nlevels * t$k)))
  out <- with_r_seed(seed, {
    y <- call_rust(simulate_rs, spec, params, list(nsim = nsim, seed = rust_seed(), use_u = FALSE))$y
    if (nsim == 1L) list(y) else lapply(seq_len(nsim), function(j) y[(j - 1L) * n + seq_len(n)])
  })
  seed_attr <- attr(out, "seed")
  # row names unique already (a data frame's), so set without rownames<-'s check
  out <- structure(out, names = paste0("sim_", seq_len(nsim)), row.names = rows, class = "data.frame")
  fit_na <- if (is.null(newdata)) fit_na_action(object) else NULL
  if (!missing(na.action) && !is.null(fit_na)) class(fit_na) <- class(attr(na.action(NA), "na.action"))
  if (!is.null(fit_na)) {
    rows <- rownames(out)
    padded <- as.data.frame(lapply(out, function(v) stats::napredict(fit_na, stats::setNames(v, rows))))
    rownames(padded) <- names(stats::napredict(fit_na, stats::setNames(out[[1L]], rows)))
    out <- padded
  }
  structure(out, na.action = fit_na, seed = seed_attr)
}

# One random-effects term as the engine's simulation reads it. A fit's own grouping
# factor (`own`) has every level present and is passed as it is (its codes, no copy);
# others are made so.
sim_term <- function(Z, f, diagonal, own = FALSE) {
  if (!own) f <- droplevels(as.factor(f))
  list(codes = f, nlevels = nlevels(f), Z = as_double_matrix(if (is.matrix(Z)) Z else as.matrix(Z)), k = ncol(Z),
       diagonal = diagonal)
}

#' Parametric bootstrap of an lmm fit
#'
#' Simulates `nsim` responses from the fitted model and refits each, like lme4's
#' `bootMer()`, but inside Rust: only the response blocks are rebuilt, and
#' replicates run in parallel over `cores` threads. Replicate r uses a seed derived
#' from the run's seed and r, so the result does not depend on `cores`. A progress
#' bar appears for runs longer than about 2 seconds; Ctrl-C stops the run and
#' returns the replicates done so far.
#' @param object an `lmm` fit.
#' @param nsim number of replicates.
#' @param FUN `NULL` for the standard deviations/correlations, sigma and fixed
#'   effects (computed in Rust); or an R function of a refitted `lmm` returning a
#'   numeric vector (slower: each refit returns to R).
#' @param type "parametric" (new random effects and errors) or "residual" (fitted
#'   values plus resampled residuals).
#' @param seed optional seed for R's RNG (restored afterwards).
#' @param cores threads to use.
#' @param progress show a progress bar on long runs.
#' @param oldNames name the variance parameters `.sig01`, ... (TRUE) or `sd_(Intercept)|g`, ...
#' @return an object of class `lmm_boot` with `t0`, `t` (nsim × statistics), `R`.
#' @examples
#' fm <- lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
#' b <- bootstrap(fm, 200, seed = 1)
#' b
#' confint(b)
#' head(as.data.frame(b))
#' @export
bootstrap <- function(object, nsim = 1000, FUN = NULL, type = c("parametric", "residual"), seed = NULL,
                      cores = getOption("mixedrs.cores", parallel::detectCores()), progress = interactive(),
                      oldNames = TRUE) {
  type <- match.arg(type)
  if (inherits(object, "glmm")) {
    if (type != "parametric") mixedrs_abort("bootstrap() of a glmm fit is parametric only", kind = "not_available")
    return(bootstrap_glmm(object, nsim, FUN, seed, oldNames, cores = max(1L, as.integer(cores))))
  }
  if (!inherits(object, "lmm")) mixedrs_abort("bootstrap() needs an lmm or glmm fit")
  if (!is.numeric(nsim) || length(nsim) != 1L || nsim < 1) mixedrs_abort("'nsim' must be a positive number")
  nsim <- as.integer(nsim)
  cores <- max(1L, as.integer(cores))
  if (!is.null(FUN)) return(bootstrap_r(object, nsim, match.fun(FUN), type, seed))
  names <- c(profile_names(object, oldNames), names(object$beta), structure_names(object))
  ctl <- engine_control(object$control, start = NULL, nsim = nsim, seed = NULL, threads = cores, type = type,
                        progress = isTRUE(progress))
  res <- with_r_seed(seed, {
    ctl$seed <- rust_seed()
    call_rust(engine_bootstrap_rs, fit_engine(object), fit_params(object), ctl)
  })
  if (isTRUE(res$interrupted)) warning(sprintf("bootstrap interrupted after %d of %d replicates", res$done, nsim), call. = FALSE)
  t <- matrix(res$stats, ncol = length(names), byrow = TRUE, dimnames = list(NULL, names))
  if (res$failed > 0) warning(sprintf("%d of %d bootstrap refits failed", res$failed, res$done), call. = FALSE)
  structure(list(t0 = stats::setNames(res$t0, names), t = t, R = nrow(t), type = type, seed = attr(res, "seed"),
                 failed = res$failed, call = match.call()), class = "lmm_boot")
}

# The slow path for a user FUN: responses from Rust, refits and FUN in R.
bootstrap_r <- function(object, nsim, FUN, type, seed) {
  sims <- if (type == "parametric") {
    simulate.lmm(object, nsim = nsim, seed = seed, na.action = stats::na.omit)
  } else if (structured_residuals(object)) {
    # the whitened residuals resampled and coloured by the fitted structure, as the
    # engine's own residual bootstrap does
    w <- unname(object$whitened_residuals)
    draws <- with_r_seed(seed, as.double(replicate(nsim, sample(w, replace = TRUE))))
    e <- call_rust(engine_colour_rs, fit_engine(object), as.double(draws))$e
    structure(as.data.frame(matrix(unname(object$fitted) + e, ncol = nsim)), seed = attr(draws, "seed"))
  } else {
    r <- unname(object$model$y - object$fitted)
    f <- unname(object$fitted)
    with_r_seed(seed, as.data.frame(replicate(nsim, f + sample(r, replace = TRUE))))
  }
  t0 <- FUN(object)
  t <- t(vapply(seq_len(nsim), function(i) {
    model <- object$model
    model$y <- sims[[i]]
    res <- engine_fit(model, object$REML, utils::modifyList(object$control, list(start = unname(object$theta))))
    FUN(package_fit(model, res, object$REML, object$call, object$control))
  }, t0))
  if (length(t0) == 1L) t <- t(t)
  colnames(t) <- names(t0)
  structure(list(t0 = t0, t = t, R = nsim, type = type, seed = attr(sims, "seed"), failed = 0L, call = match.call()),
            class = "lmm_boot")
}

#' @export
print.lmm_boot <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  cat(sprintf("%s bootstrap of %s fit: %d replicates%s\n\n", if (x$type == "parametric") "Parametric" else "Residual",
              if (identical(x$fit_class, "glmm")) "a glmm" else "an lmm", x$R, if (x$failed > 0) sprintf(" (%d failed)", x$failed) else ""))
  tab <- cbind(original = x$t0, bias = colMeans(x$t, na.rm = TRUE) - x$t0,
               `std. error` = apply(x$t, 2, stats::sd, na.rm = TRUE))
  print(tab, digits = digits)
  invisible(x)
}

#' @export
as.data.frame.lmm_boot <- function(x, ...) as.data.frame(x$t)

#' Bootstrap confidence intervals
#' @param object an `lmm_boot`.
#' @param parm statistics (names or indices); all by default.
#' @param level confidence level.
#' @param type "perc" (percentile), "basic" or "norm".
#' @param ... unused.
#' @examples
#' fm <- lmm(Reaction ~ Days + (1 | Subject), lme4::sleepstudy)
#' b <- bootstrap(fm, 200, seed = 1)
#' confint(b)
#' confint(b, type = "norm")
#' @export
confint.lmm_boot <- function(object, parm, level = 0.95, type = c("perc", "basic", "norm"), ...) {
  type <- match.arg(type)
  t <- object$t
  if (!missing(parm)) t <- t[, parm, drop = FALSE]
  t0 <- object$t0[colnames(t)]
  a <- (1 - level) / 2
  q <- apply(t, 2, stats::quantile, probs = c(a, 1 - a), na.rm = TRUE, names = FALSE)
  ci <- switch(type,
    perc = t(q),
    basic = cbind(2 * t0 - q[2L, ], 2 * t0 - q[1L, ]),
    norm = {
      bias <- colMeans(t, na.rm = TRUE) - t0
      se <- apply(t, 2, stats::sd, na.rm = TRUE)
      z <- stats::qnorm(1 - a)
      cbind(t0 - bias - z * se, t0 - bias + z * se)
    })
  dimnames(ci) <- list(colnames(t), format_perc(c(a, 1 - a)))
  ci
}
