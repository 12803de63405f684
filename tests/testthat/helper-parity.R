# Shared helpers: the workshop simulators and a live comparison with lme4.
source(system.file("workshop", "simulate.R", package = "mixedrs"))

# Tolerances of the foundation issue.
TOL_CRIT <- 1e-6   # criterion, relative
TOL_FIXEF <- 1e-5  # fixed effects, relative to their scale
TOL_VC <- 1e-4     # variance components (sd and correlations), relative to their scale

# lme4 with tighter optimizer tolerances, for flat criteria where its defaults
# stop short of the optimum (the reference is still computed live).
TIGHT_LME4 <- lme4::lmerControl(optimizer = "nloptwrap",
                                optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                               ftol_rel = 1e-15, maxeval = 1e5))

fit_both <- function(formula, data, REML = TRUE, ..., ref_control = NULL) {
  ours <- suppressMessages(lmm(formula, data, REML = REML, ...))
  # lme4 warns that it did not converge on workshop example 2; the parity checks
  # below (our criterion equal or lower) are what matter, so only its warning is dropped.
  ref <- suppressWarnings(suppressMessages(
    if (is.null(ref_control)) lme4::lmer(formula, data, REML = REML, ...)
    else lme4::lmer(formula, data, REML = REML, control = ref_control, ...)))
  list(ours = ours, ref = ref)
}

expect_lme4_parity <- function(formula, data, REML = TRUE, ..., ref_control = NULL) {
  f <- fit_both(formula, data, REML = REML, ..., ref_control = ref_control)
  ours <- f$ours
  ref <- f$ref
  crit_ours <- if (REML) mixedrs::REMLcrit(ours) else deviance(ours)
  crit_ref <- if (REML) lme4::REMLcrit(ref) else deviance(ref)
  # same or better criterion (we minimise it), within TOL_CRIT relative
  expect_lte(crit_ours, crit_ref + TOL_CRIT * abs(crit_ref))
  expect_equal(crit_ours, crit_ref, tolerance = TOL_CRIT)
  expect_equal(fixef(ours), lme4::fixef(ref), tolerance = TOL_FIXEF)
  vc_ours <- as.data.frame(VarCorr(ours))
  vc_ref <- as.data.frame(lme4::VarCorr(ref))
  expect_equal(vc_ours$grp, vc_ref$grp)
  expect_equal(vc_ours$var1, vc_ref$var1)
  expect_equal(vc_ours$sdcor, vc_ref$sdcor, tolerance = TOL_VC)
  expect_equal(sigma(ours), sigma(ref), tolerance = TOL_VC)
  expect_equal(unname(ours$theta), unname(lme4::getME(ref, "theta")), tolerance = TOL_VC)
  invisible(f)
}
