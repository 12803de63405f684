# Classed conditions. Every error mixedrs raises has class "mixedrs_error" plus
# one of: mixedrs_input_error, mixedrs_numerical_error, mixedrs_convergence_error,
# mixedrs_internal_error.

mixedrs_abort <- function(message, kind = "input", call = NULL) {
  cls <- c(paste0("mixedrs_", kind, "_error"), "mixedrs_error", "error", "condition")
  stop(structure(class = cls, list(message = message, call = call)))
}

# Call into Rust and turn its tagged error text ("mixedrs_<kind>_error|message")
# into a classed R condition.
call_rust <- function(fun, ...) {
  tryCatch(fun(...), error = function(e) {
    msg <- conditionMessage(e)
    m <- regmatches(msg, regexec("mixedrs_([a-z]+)_error\\|(.*)$", msg))[[1]]
    if (length(m) == 3L) mixedrs_abort(m[3L], kind = m[2L])
    mixedrs_abort(paste("the Rust engine failed:", msg), kind = "internal")
  })
}
