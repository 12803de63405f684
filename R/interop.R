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

# A glmm() fit's classes. "glmm" is also the glmm package's class, for which insight
# has methods that would misread a glmm() fit (a 0 x 0 covariance), and insight's own
# calls reach them before any method registered from outside. So the first class is
# our own: every S3 generic of the interop packages gets a method for it
# (glmm_as_glmer()), which S3 dispatch finds first, from any caller; our own methods
# are for "glmm", and the glmm package's objects keep insight's methods. The third,
# "glmerMod", makes packages that branch on lme4's classes (ggeffects, sjPlot) treat
# the fit as glmer's; lme4 registers no S3 method for it (tests/testthat/test-interop.R).
glmm_classes <- c("mixedrs_glmm", "glmm", "glmerMod")

# The method of `pkg`'s generic that lmerTest's fit would use, else the default.
lmer_method <- function(pkg, generic) {
  ns <- asNamespace(pkg)
  for (cl in c(lmer_fit_classes, "default")) {
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
# lme4's fits: ours where we define one, else a forwarder; and the glmm() fits' methods.
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
  Filter(function(g) is_s3_generic(ns, g), generics)
}

# Whether `g` is an S3 generic defined in namespace `ns` (isS3stdGeneric() fails on
# some bodies).
is_s3_generic <- function(ns, g) {
  f <- get0(g, envir = ns, mode = "function", inherits = FALSE)
  !is.null(f) && isTRUE(tryCatch(utils::isS3stdGeneric(f), error = function(e) FALSE))
}

# On every S3 generic of `pkg`, the method for glmm() fits' first class: a generic with
# only a default method reads the fit through insight's class lists (get_df() asks
# find_statistic(), which knows glmer's class, not ours), so every generic takes the
# fit as glmer's.
guard_glmm_fits <- function(pkg) {
  ns <- asNamespace(pkg)
  generics <- Filter(function(g) is_s3_generic(ns, g), ls(ns, all.names = TRUE))
  for (g in generics) registerS3method(g, glmm_classes[1L], glmm_as_glmer(pkg, g), envir = ns)
}

glmm_as_glmer <- function(pkg, generic) {
  force(pkg)
  force(generic)
  out <- function(...) {
    call <- sys.call()
    if (identical(call[[2L]], quote(...))) {
      # called with the caller's dots: their values, the first converted
      args <- list(...)
      call <- as.call(c(list(call[[1L]]), lapply(seq_along(args), function(i) as.name(paste0(".mixedrs_arg", i)))))
      names(call) <- c("", names(args) %||% rep("", length(args)))
      env <- list2env(stats::setNames(args, paste0(".mixedrs_arg", seq_along(args))), parent = parent.frame())
      return(glmm_as_glmer_call(call, ..1, env, pkg, generic))
    }
    glmm_as_glmer_call(call, ..1, parent.frame(), pkg, generic)
  }
  attr(out, "mixedrs") <- TRUE
  out
}

# A generic of these packages called on a glmm() fit takes the fit as glmer's fit of
# the same model (as_glmerMod(): the same estimates, Hessian and modes), so that
# everything below runs on lme4's object. From the user's code that is always so. From
# inside one of these packages' own functions, which may already have branched on the
# fit's class, only where the outermost such function is one whose results on glmm()
# fits are tested equal to those on glmer's fit (glmm_entry_points); elsewhere it is a
# classed error: pass as_glmerMod(fit) there.
glmm_as_glmer_call <- function(call, fit, caller, pkg, generic) {
  top <- topenv(caller)
  if (isNamespace(top) && getNamespaceName(top) %in% interop_packages) {
    entry <- outermost_interop_call()
    if (!entry %in% glmm_entry_points) {
      mixedrs_abort(sprintf("%s() does not take glmm() fits yet; pass it as_glmerMod(fit), which carries the same estimates", entry),
                    kind = "not_available")
    }
  }
  g <- glmer_of(fit)
  # the generic again (the call names the method), and the first argument's expression
  # kept (packages name models by it)
  call[[1L]] <- call(":::", as.name(pkg), as.name(generic))
  env <- new.env(parent = caller)
  first <- call[[2L]]
  if (!is.symbol(first)) {
    first <- as.name(".mixedrs_glmer_fit")
    call[[2L]] <- first
  }
  assign(as.character(first), g, envir = env)
  eval(call, env)
}

# The functions of the interop packages that take glmm() fits directly (their calls
# into the packages' generics convert the fit; tests/testthat/test-interop.R compares
# each with glmer's fit).
glmm_entry_points <- c("performance::icc", "performance::compare_performance", "ggeffects::ggemmeans", "effects::Effect",
                       "multcomp::glht", "ggeffects::ggpredict", "ggeffects::ggeffect", "sjPlot::tab_model",
                       "parameters::random_parameters", "sjPlot::plot_model")

# "pkg::fun" of the outermost call on the stack into one of the interop packages.
outermost_interop_call <- function() {
  for (i in seq_len(sys.nframe())) {
    ns <- topenv(environment(sys.function(i)))
    if (isNamespace(ns) && (name <- getNamespaceName(ns)) %in% interop_packages) {
      fun <- sys.call(i)[[1L]]
      fun <- if (is.call(fun) && identical(fun[[1L]], as.name("::"))) fun[[3L]] else fun
      return(paste0(name, "::", paste(deparse(fun), collapse = "")))
    }
  }
  "this function"
}

# as_glmerMod(fit), kept for the last few fits converted: one call into a package can
# reach its generics many times.
glmer_of <- function(fit) {
  for (entry in glmer_cache$fits) if (identical(entry$fit, fit)) return(entry$glmer)
  g <- as_glmerMod(fit)
  glmer_cache$fits <- c(list(list(fit = fit, glmer = g)), utils::head(glmer_cache$fits, 2L))
  g
}
glmer_cache <- new.env(parent = emptyenv())

# On every load of one of these packages, adopt for all that are loaded: a package
# loaded later can add methods for lme4's fits to an earlier one's generics.
adopt_loaded <- function(...) {
  for (p in interop_packages) if (isNamespaceLoaded(p)) adopt_lmer_methods(p)
  invisible()
}

`%||%` <- function(a, b) if (is.null(a)) b else a
