# Classed conditions. Every error mixedrs raises has class "mixedrs_error" plus
# one of: mixedrs_input_error, mixedrs_numerical_error, mixedrs_convergence_error,
# mixedrs_internal_error.

mixedrs_abort <- function(message, kind = "input", call = NULL) {
  cls <- c(paste0("mixedrs_", kind, "_error"), "mixedrs_error", "error", "condition")
  stop(structure(class = cls, list(message = message, call = call)))
}
