# The packages users hand a fit to (insight and through it performance, parameters,
# sjPlot; ggeffects, car, effects, multcomp, merTools) read models through their S3
# generics. An lmm fit answers each generic as lmerTest's fit of the same model does:
# by the package's own method for lme4 fits wherever that method reads the fit through
# lme4's accessors (fixef, VarCorr, getME, ...), which lmm implements; by a method of
# ours where it reads lme4's slots or where the package branches on lme4's classes.
#
# insight decides what is a model, and which statistic a model reports, from fixed
# lists of class names: insight::is_model() asks whether any class is listed,
# find_statistic() whether the first one is (t, z, F, ...). A fit whose first class is
# not listed is "not a model object" to everything downstream (parameters, performance,
# sjPlot, ggeffects). So an lmm fit's first class is "elm", listed as a model reporting
# t statistics (eflm's efficient linear models), and "lmm" comes second. "elm" was
# chosen because no installed package defines a method for it or branches on it (it
# appears only in insight's lists), so S3 dispatch passes it by and reaches the lmm
# methods; a package that later defines methods for "elm" would take calls from lmm
# (tests/testthat/test-interop.R fails if one is loaded).
#
# ggeffects, sjPlot, performance and parameters choose their code for lme4's linear
# fits by class, from "lmerMod", so that is the third class: lme4 registers no S3
# method for "lmerMod" that lmm does not define first (tests/testthat/test-interop.R),
# and is(x, "merMod") stays FALSE: lme4's functions that branch on it read S4 slots
# for their own fits (bootMer() takes x@call) and reach an lmm fit through its S3
# methods instead (refit, simulate, getME). "merMod" itself is not claimed for that
# reason. ggeffects asks for "merMod" (or robustlmm's
# "rlmerMod") when it holds grouping factors at population level for type = "re"; the
# fourth class, "rlmerMod", gets lmm fits that treatment (robustlmm is not installed
# here; its methods, wherever a package defines them, are adopted as lme4's below).
# See the README, "Working with other packages".
lmm_classes <- c("elm", "lmm", "lmerMod", "rlmerMod")

# The classes whose methods lmerTest::lmer's fit reaches, in dispatch order.
lmer_fit_classes <- c("lmerModLmerTest", "lmerMod", "merMod")

# glmer's fit's classes. glmm() fits are not adopted by these packages yet: their
# generics that have a method for glmer's fits, or for the class "glmm" (the glmm
# package's, whose methods in insight would misread a glmm() fit: a 0 x 0 covariance),
# raise a classed error for glmm() fits that names as_glmerMod(), and keep answering
# the glmm package's objects as before.
glmer_fit_classes <- c("glmerMod", "merMod")

# The method of `pkg`'s generic that lmerTest's fit (or glmer's) would use, else the default.
lmer_method <- function(pkg, generic, classes = lmer_fit_classes) {
  ns <- asNamespace(pkg)
  for (cl in c(classes, "default")) {
    m <- utils::getS3method(generic, cl, optional = TRUE, envir = ns)
    if (!is.null(m)) return(m)
  }
  NULL
}

# A method that re-issues the generic's call to the method lmerTest's fit would use
# (looked up at each call: packages loaded later may add methods for lme4's fits), so
# that the arguments keep their expressions (packages name models by
# deparse(substitute(x))).
forward_to_lmer <- function(pkg, generic) {
  force(pkg)
  force(generic)
  function(...) {
    target <- lmer_method(pkg, generic)
    if (is.null(target)) {
      mixedrs_abort(sprintf("%s::%s() is not available for lmm fits", pkg, generic), kind = "not_available")
    }
    call <- sys.call()
    call[[1L]] <- target
    eval(call, parent.frame())
  }
}

# The packages whose generics lmm fits answer, and our own methods for each (a list of
# generic = function); generics not listed forward to lme4's methods.
interop_packages <- c("insight", "performance", "parameters", "bayestestR", "datawizard", "effectsize",
                      "ggeffects", "car", "effects", "multcomp", "merTools", "sjPlot", "pbkrtest")

own_methods <- function(pkg) {
  f <- get0(paste0(pkg, "_methods"), envir = environment(own_methods), mode = "function")
  if (is.null(f)) list() else f()
}

# Register, on `pkg`'s generics, an lmm method for every generic that has a method for
# lme4's fits: ours where we define one, else a forwarder; and the glmm guard.
adopt_lmer_methods <- function(pkg, own = own_methods(pkg)) {
  generics <- package_generics(pkg, union(lmer_fit_classes, lmm_classes[-(1:2)]), names(own))
  for (g in generics) registerS3method(g, "lmm", own[[g]] %||% forward_to_lmer(pkg, g), envir = asNamespace(pkg))
  guard_glmm_fits(pkg)
  invisible(generics)
}

# `pkg`'s S3 generics with a method for one of `classes` (or named in `extra`).
package_generics <- function(pkg, classes, extra = character(0)) {
  ns <- asNamespace(pkg)
  table <- get(".__S3MethodsTable__.", envir = ns)
  pattern <- sprintf("^(.+)\\.(%s)$", paste(classes, collapse = "|"))
  # registered methods, and methods the package's own calls find in its namespace
  found <- c(ls(table, all.names = TRUE), ls(ns, all.names = TRUE))
  generics <- union(unique(sub(pattern, "\\1", grep(pattern, found, value = TRUE))), extra)
  # only S3 generics defined here (the table also holds other packages' registrations,
  # and methods for classes such as "sim.merMod")
  Filter(function(g) {
    f <- get0(g, envir = ns, mode = "function", inherits = FALSE)
    !is.null(f) && isTRUE(utils::isS3stdGeneric(f))
  }, generics)
}

# The glmm guard on `pkg`'s generics with a method for glmer's fits or for "glmm".
guard_glmm_fits <- function(pkg) {
  ns <- asNamespace(pkg)
  table <- get(".__S3MethodsTable__.", envir = ns)
  for (g in package_generics(pkg, c(glmer_fit_classes, "glmm"))) {
    key <- paste0(g, ".glmm")
    before <- get0(key, envir = table, inherits = FALSE)
    if (!is.null(before) && isTRUE(attr(before, "mixedrs"))) next
    registerS3method(g, "glmm", glmm_guard(pkg, g, before), envir = ns)
  }
}

glmm_guard <- function(pkg, generic, before) {
  force(pkg)
  force(generic)
  force(before)
  out <- function(...) {
    if (is_glmm_fit(..1)) {
      mixedrs_abort(sprintf("%s::%s() does not take glmm() fits yet; pass it as_glmerMod(fit), which carries the same estimates",
                            pkg, generic), kind = "not_available")
    }
    # the glmm package's objects: the method they had (else the default), with the
    # caller's argument expressions
    target <- before %||% utils::getS3method(generic, "default", optional = TRUE, envir = asNamespace(pkg))
    if (is.null(target)) stop(sprintf("no %s() method for this object", generic), call. = FALSE)
    call <- sys.call()
    call[[1L]] <- target
    eval(call, parent.frame())
  }
  attr(out, "mixedrs") <- TRUE
  out
}

# A fit made by glmm() (the glmm package's objects share the class).
is_glmm_fit <- function(x) inherits(x, "glmm") && is.list(x) && !is.null(x$theta_layout) && !is.null(x$family)

# On every load of one of these packages, adopt for all that are loaded: a package
# loaded later can add methods for lme4's fits to an earlier one's generics.
adopt_loaded <- function(...) {
  for (p in interop_packages) if (isNamespaceLoaded(p)) adopt_lmer_methods(p)
  invisible()
}

`%||%` <- function(a, b) if (is.null(a)) b else a
