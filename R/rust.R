# Hand-written .Call wrappers for the routines registered by the Rust binding
# (rextendr is not available). Each takes and returns plain lists.

lmm_fit_rs <- function(spec, control) .Call(wrap__lmm_fit_rs, spec, control)
lmm_varpar_rs <- function(spec, theta, sigma) .Call(wrap__lmm_varpar_rs, spec, theta, sigma)
lmm_profile_rs <- function(spec, control) .Call(wrap__lmm_profile_rs, spec, control)
lmm_simulate_rs <- function(spec, params, control) .Call(wrap__lmm_simulate_rs, spec, params, control)
lmm_bootstrap_rs <- function(spec, params, control) .Call(wrap__lmm_bootstrap_rs, spec, params, control)
sim_workshop_rs <- function(which, params) .Call(wrap__sim_workshop_rs, which, params)
pvalues_rs <- function(kind, stat, df1, df2) .Call(wrap__pvalues_rs, kind, stat, df1, df2)
