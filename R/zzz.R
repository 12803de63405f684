# Register our methods on lme4's generics when lme4 is loaded, so that lme4's own
# helpers (getME(), ngrps(), isSingular()) work on lmm fits in either load order.

getME_lmm <- function(object, name, ...) {
  switch(name,
    theta = object$theta,
    lower = object$lower,
    beta = object$beta,
    sigma = object$sigma,
    n = nobs(object),
    X = object$model$X,
    y = object$model$y,
    cnms = stats::setNames(lapply(object$model$terms, `[[`, "cnms"),
                           vapply(object$model$terms, `[[`, "", "group")),
    flist = lapply(group_index(object), function(ii) object$model$terms[[ii[1L]]]$factor),
    REML = as.integer(object$REML),
    devcomp = list(cmp = object$devcomp),
    mixedrs_abort(sprintf("getME(): '%s' is not available for lmm fits", name))
  )
}

register_lme4_methods <- function(...) {
  ns <- asNamespace("lme4")
  registerS3method("getME", "lmm", getME_lmm, envir = ns)
  registerS3method("ngrps", "lmm", ngrps.lmm, envir = ns)
}

# lmerTest's contest(), step() and get_model() generics dispatch to ours too
# (its ranova() is not generic: call mixedrs::ranova()).
register_lmertest_methods <- function(...) {
  ns <- asNamespace("lmerTest")
  registerS3method("contest", "lmm", contest.lmm, envir = ns)
  registerS3method("step", "lmm", step.lmm, envir = ns)
  registerS3method("get_model", "lmm_step", get_model.lmm_step, envir = ns)
}

.onLoad <- function(libname, pkgname) {
  if (isNamespaceLoaded("lme4")) register_lme4_methods()
  setHook(packageEvent("lme4", "onLoad"), register_lme4_methods)
  if (isNamespaceLoaded("lmerTest")) register_lmertest_methods()
  setHook(packageEvent("lmerTest", "onLoad"), register_lmertest_methods)
  if (isNamespaceLoaded("emmeans")) register_emmeans_methods()
  setHook(packageEvent("emmeans", "onLoad"), register_emmeans_methods)
  invisible()
}
