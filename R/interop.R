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
# lme4's fits: ours where we define one, else a forwarder.
adopt_lmer_methods <- function(pkg, own = own_methods(pkg)) {
  ns <- asNamespace(pkg)
  table <- get(".__S3MethodsTable__.", envir = ns)
  pattern <- sprintf("^(.+)\\.(%s)$", paste(union(lmer_fit_classes, lmm_classes[-(1:2)]), collapse = "|"))
  # registered methods, and methods the package's own calls find in its namespace
  found <- c(ls(table, all.names = TRUE), ls(ns, all.names = TRUE))
  generics <- unique(sub(pattern, "\\1", grep(pattern, found, value = TRUE)))
  for (g in union(generics, names(own))) {
    # only S3 generics defined here (the table also holds other packages' registrations,
    # and methods for classes such as "sim.merMod")
    f <- get0(g, envir = ns, mode = "function", inherits = FALSE)
    if (is.null(f) || !isTRUE(utils::isS3stdGeneric(f))) next
    registerS3method(g, "lmm", own[[g]] %||% forward_to_lmer(pkg, g), envir = ns)
  }
  invisible(generics)
}

# On every load of one of these packages, adopt for all that are loaded: a package
# loaded later can add methods for lme4's fits to an earlier one's generics.
adopt_loaded <- function(...) {
  for (p in interop_packages) if (isNamespaceLoaded(p)) adopt_lmer_methods(p)
  invisible()
}

`%||%` <- function(a, b) if (is.null(a)) b else a
