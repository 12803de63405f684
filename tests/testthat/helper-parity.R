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

# Tolerances of the inference issue.
TOL_DF <- 1e-3     # Satterthwaite / Kenward-Roger df and F, relative
TOL_P <- 1e-4      # p-values, absolute
TOL_CI <- 1e-3     # profile and Wald interval ends, relative
TOL_LRT <- 1e-4    # ranova and LRT statistics

# The same model by lmm() and by lmerTest::lmer() (tight optimizer, so both sit at
# the same optimum and the comparison is of the inference, not of the fits).
fit_lmertest <- function(formula, data, REML = TRUE) {
  ours <- suppressMessages(lmm(formula, data, REML = REML))
  # data and settings go into the call itself, so lmerTest's ranova() can re-evaluate it
  ref <- suppressWarnings(suppressMessages(eval(bquote(
    lmerTest::lmer(.(formula), data = .(data), REML = .(REML), control = .(TIGHT_LME4))))))
  list(ours = ours, ref = ref)
}

# A crossed design with a covariate: items crossed with subjects.
sim_crossed <- function(seed = 4) {
  set.seed(seed)
  d <- expand.grid(subj = factor(1:15), item = factor(1:10))
  d <- d[sample(nrow(d), 120), ]
  d$x <- rnorm(nrow(d))
  d$cond <- factor(sample(c("a", "b", "c"), nrow(d), TRUE))
  d$y <- 2 + 0.5 * d$x + c(a = 0, b = 0.3, c = -0.4)[as.character(d$cond)] +
    rnorm(15, 0, 0.8)[d$subj] + rnorm(10, 0, 0.5)[d$item] + rnorm(nrow(d), 0, 0.7)
  d
}

# Inference parity cases: name, formula, data.
inference_cases <- function() {
  list(
    sleepstudy = list(Reaction ~ Days + (Days | Subject), lme4::sleepstudy),
    uncorrelated = list(Reaction ~ Days + (Days || Subject), lme4::sleepstudy),
    nested = list(sat ~ sex + (1 | school/student), sim_sat_nested()),
    crossed = list(y ~ x + cond + (1 | subj) + (1 | item), sim_crossed()),
    workshop_bp = list(bp ~ sex + (1 | subject), sim_bp()),
    workshop_lines = list(sat ~ log.income + (log.income | school), sim_sat_lines())
  )
}

# |a - b| <= tol elementwise (testthat 3.1's expect_equal has no absolute scale).
expect_abs_equal <- function(a, b, tol, label = NULL) {
  a <- unname(as.numeric(a))
  b <- unname(as.numeric(b))
  expect_equal(length(a), length(b))
  expect_true(all(abs(a - b) <= tol | (is.na(a) & is.na(b))),
              label = paste(label, "max abs difference", format(max(abs(a - b), na.rm = TRUE)), "<=", tol))
}
