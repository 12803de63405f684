# Register our methods on lme4's and lmerTest's generics when those packages load,
# so that their own helpers (getME(), refit(), bootMer(), contest(), ...) work on
# lmm fits in either load order.

lme4_generics <- c("getME", "refit", "refitML", "isREML", "isLMM", "isGLMM", "isNLMM", "ngrps", "rePCA")

register_lme4_methods <- function(...) {
  ns <- asNamespace("lme4")
  for (g in lme4_generics) registerS3method(g, "lmm", get(paste0(g, ".lmm"), mode = "function"), envir = ns)
  for (g in intersect(lme4_generics, c("getME", "refit", "isREML", "isLMM", "isGLMM", "isNLMM", "ngrps"))) {
    registerS3method(g, "glmm", get(paste0(g, ".glmm"), mode = "function"), envir = ns)
  }
}

# lmerTest's generics dispatch to ours too (its ranova() is not generic: ours defers
# to it for lme4 fits).
lmertest_generics <- c("contest", "contest1D", "contestMD", "step", "ls_means", "lsmeansLT", "difflsmeans")

register_lmertest_methods <- function(...) {
  ns <- asNamespace("lmerTest")
  for (g in lmertest_generics) registerS3method(g, "lmm", get(paste0(g, ".lmm"), mode = "function"), envir = ns)
  registerS3method("get_model", "lmm_step", get_model.lmm_step, envir = ns)
}

.onLoad <- function(libname, pkgname) {
  # on stats' generic: our exported anova() (R/anova.R) is a wrapper around it, so a
  # NAMESPACE registration would be read as a method of the wrapper
  registerS3method("anova", "lmm", anova.lmm, envir = asNamespace("stats"))
  registerS3method("anova", "glmm", anova.glmm, envir = asNamespace("stats"))
  if (isNamespaceLoaded("lme4")) register_lme4_methods()
  setHook(packageEvent("lme4", "onLoad"), register_lme4_methods)
  if (isNamespaceLoaded("lmerTest")) register_lmertest_methods()
  setHook(packageEvent("lmerTest", "onLoad"), register_lmertest_methods)
  if (isNamespaceLoaded("emmeans")) register_emmeans_methods()
  setHook(packageEvent("emmeans", "onLoad"), register_emmeans_methods)
  adopt_loaded()
  for (p in interop_packages) setHook(packageEvent(p, "onLoad"), adopt_loaded)
  invisible()
}
