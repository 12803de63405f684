# Our generics share their names with lme4's and lmerTest's (getME, refit, contest,
# ranova, ...), so whichever package is attached last, a call on another package's
# object must reach that package's method. These helpers find it.

# The method of `pkg`'s S3 generic `generic` for `object`: looked up in that package's
# own method table (never ours, which would call back here), then its default.
defer_method <- function(pkg, generic, object) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    mixedrs_abort(sprintf("%s() has no method for an object of class \"%s\" (and %s is not installed)",
                          generic, class(object)[1L], pkg))
  }
  ns <- asNamespace(pkg)
  # an S4 object's S3 classes are its class and every class it extends
  classes <- if (isS4(object)) methods::extends(class(object)) else class(object)
  for (cl in c(classes, "default")) {
    m <- utils::getS3method(generic, cl, optional = TRUE, envir = ns)
    if (!is.null(m) && !identical(environment(m), environment(defer_method))) return(m)
  }
  mixedrs_abort(sprintf("no applicable method for '%s' applied to an object of class \"%s\"", generic, class(object)[1L]))
}

# A function of `pkg` that is not a generic (lmerTest's ranova(), lme4's logProf()).
defer_function <- function(pkg, name) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    mixedrs_abort(sprintf("%s() has no method for this object (and %s is not installed)", name, pkg))
  }
  getExportedValue(pkg, name)
}
