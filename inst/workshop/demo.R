# make demo: the workshop's examples 1-3 fitted with mixedrs::lmm() and lme4::lmer(),
# printed side by side with the largest differences.
suppressPackageStartupMessages({
  library(mixedrs)
  library(lme4)
})
source(system.file("workshop", "simulate.R", package = "mixedrs"))

side_by_side <- function(title, formula, data) {
  cat("\n", strrep("=", 78), "\n", title, "\n  ", deparse1(formula), "\n", strrep("=", 78), "\n", sep = "")
  t_ours <- system.time(ours <- suppressMessages(lmm(formula, data)))[["elapsed"]]
  t_ref <- system.time(ref <- suppressMessages(lmer(formula, data)))[["elapsed"]]
  cat("\n--- mixedrs::lmm ---\n")
  print(summary(ours))
  cat("\n--- lme4::lmer ---\n")
  print(summary(ref))
  fe <- cbind(mixedrs = fixef(ours), lme4 = fixef(ref))
  vc <- merge(as.data.frame(VarCorr(ours)), as.data.frame(lme4::VarCorr(ref)),
              by = c("grp", "var1", "var2"), suffixes = c(".mixedrs", ".lme4"), sort = FALSE)
  cat("\nFixed effects:\n")
  print(cbind(fe, abs.diff = abs(fe[, 1] - fe[, 2])), digits = 8)
  cat("\nVariance components (sd / cor):\n")
  print(data.frame(vc[, 1:3], mixedrs = vc$sdcor.mixedrs, lme4 = vc$sdcor.lme4,
                   abs.diff = abs(vc$sdcor.mixedrs - vc$sdcor.lme4)), digits = 8)
  crit <- c(mixedrs = mixedrs::REMLcrit(ours), lme4 = lme4::REMLcrit(ref))
  cat(sprintf("\nREML criterion: mixedrs %.6f  lme4 %.6f  (mixedrs - lme4 = %.2e)\n",
              crit[1], crit[2], crit[1] - crit[2]))
  cat(sprintf("Largest differences: fixed effects %.2e, sd/cor %.2e\n",
              max(abs(fe[, 1] - fe[, 2])), max(abs(vc$sdcor.mixedrs - vc$sdcor.lme4))))
  cat(sprintf("Time: mixedrs %.3f s, lme4 %.3f s\n", t_ours, t_ref))
  truth <- attr(data, "truth")
  cat("Truth: fixed effects", paste(names(truth$fixef), truth$fixef, collapse = ", "), "\n")
  invisible(list(ours = ours, ref = ref))
}

ex1 <- side_by_side("Example 1: repeated blood pressure measurements", bp ~ sex + (1 | subject), sim_bp())
cat("\nranef(m)$subject[, 1]:\n"); print(ranef(ex1$ours)$subject[, 1])
ex2 <- side_by_side("Example 2: SAT scores on school-specific lines",
                    sat ~ log.income + (log.income | school), sim_sat_lines())
ex2b <- side_by_side("Example 2b: the simpler random-intercept model", sat ~ log.income + (1 | school), sim_sat_lines())
ex3 <- side_by_side("Example 3: students nested in schools", sat ~ sex + (1 | school/student), sim_sat_nested())
cat("\nStd. deviations of both components:\n")
print(sapply(VarCorr(ex3$ours), attr, "stddev"))
cat("\nNot yet in mixedrs (later issues): Satterthwaite df and p-values, profile confint, ranova, ",
    "correlated residuals (example 4), simulation.\n", sep = "")
