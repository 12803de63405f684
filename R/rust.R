# Hand-written .Call wrappers for the routines registered by the Rust binding
# (rextendr is not available). Each takes and returns plain lists.

lmm_fit_rs <- function(spec, control) .Call(wrap__lmm_fit_rs, spec, control)
