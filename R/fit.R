# Packaging the engine's result as an lmm fit: names, shapes and class, as lme4's
# mkMerMod packages its optimum.

# θ names as lme4 gives them ("g.(Intercept)", "g.x.(Intercept)"), from the
# engine's layout of θ: term, row and column of each element in that term's Λ.
theta_names <- function(terms, layout) {
  vapply(seq_len(nrow(layout)), function(i) {
    t <- terms[[layout$term[i]]]
    r <- layout$row[i]
    c <- layout$col[i]
    if (r == c) paste(t$group, t$cnms[r], sep = ".") else paste(t$group, t$cnms[r], t$cnms[c], sep = ".")
  }, "")
}

# Give the engine's plain list its names, shapes and class.
package_fit <- function(model, res, REML, call, control) {
  X <- model$X
  p <- ncol(X)
  b <- Map(function(t, bt) {
    matrix(bt, nrow = nlevels(t$factor), byrow = TRUE, dimnames = list(levels(t$factor), t$cnms))
  }, model$terms, res$b)
  layout <- data.frame(term = res$theta_term, row = res$theta_row, col = res$theta_col)
  tn <- theta_names(model$terms, layout)
  # unnamed here: n row names cost more than the fit on large data; fitted() and
  # residuals() add them
  fitted <- if (is.null(model$offset)) res$fitted else res$fitted + model$offset
  cache <- new.env(parent = emptyenv())
  n_cor <- if (is.null(model$cor)) 0L else length(res$cor_phi) - if (is.null(model$var)) 0L else length(model$var$start)
  cache$engine <- res$handle
  structure(list(
    call = call,
    formula = model$formula,
    REML = REML,
    model = model,
    theta = stats::setNames(res$theta, tn),
    theta_layout = layout,
    lower = stats::setNames(ifelse(layout$row == layout$col, 0, -Inf), tn),
    beta = stats::setNames(res$beta, colnames(X)),
    # nlme's place for β̂: car's helpers read an S3 mixed model's fixed effects there
    coefficients = list(fixed = stats::setNames(res$beta, colnames(X))),
    sigma = res$sigma,
    b = b,
    u = res$u,
    vcov = matrix(res$vcov, p, p, dimnames = list(colnames(X), colnames(X))),
    # each term's Λ at θ̂ (θ → Λ is the engine's)
    lambda = Map(function(t, lam) matrix(lam, ncol(t$Z), ncol(t$Z)), model$terms, res$lambdas),
    # both criteria from the engine's parts, whichever was optimised
    devcomp = c(ldL2 = res$ldL2, ldRX2 = res$ldRX2, pwrss = res$pwrss, criterion = res$criterion,
                REML = res$criterion_reml, ML = res$criterion_ml, ldPsi = res$ldPsi),
    fitted = fitted,
    cache = cache,
    correlation = package_correlation(model$cor, res$cor_phi[seq_len(n_cor)]),
    varStruct = package_variance(model$var, res$cor_phi[n_cor + seq_len(length(res$cor_phi) - n_cor)]),
    # the residual structure's parameters (correlation, then variance function), unconstrained
    cor_eta = if (is.null(model$cor) && is.null(model$var)) numeric(0) else res$cor_eta,
    # v_i of the variance function, and (V C)^-1 (y - fitted): nlme's normalized residuals times sigma
    var_sd = if (!is.null(model$var)) res$var_sd,
    whitened_residuals = res$whitened_residuals,
    optinfo = list(evaluations = res$evaluations, gradients = res$gradients, converged = res$converged,
                   message = res$message, grad_norm = res$grad_norm),
    control = control
  ), class = lmm_classes)
}

# lme4's convergence checks after the fit, each with the action the control asks for.
convergence_checks <- function(fit) {
  ctl <- fit$control
  if (!fit$optinfo$converged && ctl$calc_derivs) {
    act_on(ctl$checks$check.conv.grad, paste("Model failed to converge:", fit$optinfo$message),
           class = "mixedrs_convergence")
  }
  if (isSingular(fit, tol = ctl$conv_tol$singular)) {
    act_on(ctl$checks$check.conv.singular, "boundary (singular) fit: see help('isSingular')")
  }
}
