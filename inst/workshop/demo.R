# make demo: the workshop's four examples fitted with mixedrs::lmm() and with
# lmerTest::lmer() (examples 1-3) or nlme::lme() (example 4), printed side by side
# with the largest differences, then the workshop's inference calls.
suppressPackageStartupMessages({
  library(mixedrs)
  library(lme4)
  library(lmerTest)
  library(nlme)
})
options(width = 100)
source(system.file("workshop", "simulate.R", package = "mixedrs"))

# Fits go through calls naming a global data set, as in a workshop script, so that
# refits (ranova) and printed headers see the same "Data:" name.
side_by_side <- function(title, formula, data_name) {
  data <- get(data_name, envir = globalenv())
  cat("\n", strrep("=", 78), "\n", title, "\n  ", deparse1(formula), "\n", strrep("=", 78), "\n", sep = "")
  dn <- as.name(data_name)
  t_ours <- system.time(ours <- suppressMessages(eval(bquote(lmm(.(formula), data = .(dn))), globalenv())))[["elapsed"]]
  t_ref <- system.time(ref <- suppressWarnings(suppressMessages(
    eval(bquote(lmerTest::lmer(.(formula), data = .(dn))), globalenv()))))[["elapsed"]]
  cat("\n--- mixedrs::lmm ---\n")
  print(summary(ours))
  cat("\n--- lmerTest::lmer ---\n")
  print(summary(ref))
  fe <- cbind(mixedrs = fixef(ours), lme4 = lme4::fixef(ref))
  pv <- cbind(mixedrs = summary(ours)$coefficients[, "Pr(>|t|)"], lmerTest = summary(ref)$coefficients[, "Pr(>|t|)"])
  dfs <- cbind(mixedrs = summary(ours)$coefficients[, "df"], lmerTest = summary(ref)$coefficients[, "df"])
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
  cat("\nSatterthwaite df and p-values:\n")
  print(cbind(df = dfs, p = pv), digits = 6)
  cat(sprintf("Largest differences: fixed effects %.2e, sd/cor %.2e, df %.2e (rel.), p %.2e\n",
              max(abs(fe[, 1] - fe[, 2])), max(abs(vc$sdcor.mixedrs - vc$sdcor.lme4)),
              max(abs(dfs[, 1] / dfs[, 2] - 1)), max(abs(pv[, 1] - pv[, 2]))))
  cat(sprintf("Time: mixedrs %.3f s, lme4 %.3f s\n", t_ours, t_ref))
  truth <- attr(data, "truth")
  cat("Truth: fixed effects", paste(names(truth$fixef), truth$fixef, collapse = ", "), "\n")
  invisible(list(ours = ours, ref = ref))
}

# lme4 interpolates its profile with splines between steps of delta.cutoff = 1/8; with
# 1/40 its ends move onto the exact ones mixedrs solves for, so both are shown.
compare_ci <- function(ours, ref, ...) {
  a <- suppressMessages(confint(ours, ...))
  b <- suppressMessages(confint(ref, ...))
  b40 <- suppressMessages(confint(ref, ..., delta.cutoff = 1 / 40))
  colnames(b40) <- paste(colnames(b40), "(1/40)")
  print(cbind(a, b, b40, rel.diff.lme4 = apply(abs(a / b - 1), 1, max),
              rel.diff.lme4.1_40 = apply(abs(a / b40 - 1), 1, max)), digits = 6)
}
compare_ranova <- function(ours, ref, ...) {
  a <- mixedrs::ranova(ours, ...)   # lmerTest's ranova() is not generic, so call ours by name
  b <- suppressMessages(lmerTest::ranova(ref, ...))
  cat("mixedrs:\n"); print(a)
  cat("lmerTest:\n"); print(b)
}

bp_data <- sim_bp()
lines_data <- sim_sat_lines()
nested_data <- sim_sat_nested()
ex1 <- side_by_side("Example 1: repeated blood pressure measurements", bp ~ sex + (1 | subject), "bp_data")
cat("\nranef(m)$subject[, 1]:\n"); print(ranef(ex1$ours)$subject[, 1])
cat("\nsummary(m)$coefficients[2, 5]:", summary(ex1$ours)$coefficients[2, 5],
    " lmerTest:", summary(ex1$ref)$coefficients[2, 5], "\n")
cat("\nconfint(m, oldNames = FALSE): mixedrs | lme4\n"); compare_ci(ex1$ours, ex1$ref, oldNames = FALSE)
cat("\nranova(m):\n"); compare_ranova(ex1$ours, ex1$ref)
ex2 <- side_by_side("Example 2: SAT scores on school-specific lines",
                    sat ~ log.income + (log.income | school), "lines_data")
cat("\nconfint(m, c('(Intercept)', 'log.income'), oldNames = FALSE): mixedrs | lme4\n")
compare_ci(ex2$ours, ex2$ref, c("(Intercept)", "log.income"), oldNames = FALSE)
cat("\nranova(m) and ranova(m, reduce.terms = FALSE):\n")
compare_ranova(ex2$ours, ex2$ref)
compare_ranova(ex2$ours, ex2$ref, reduce.terms = FALSE)
ex2b <- side_by_side("Example 2b: the simpler random-intercept model", sat ~ log.income + (1 | school), "lines_data")
ex3 <- side_by_side("Example 3: students nested in schools", sat ~ sex + (1 | school/student), "nested_data")
cat("\nStd. deviations of both components:\n")
print(sapply(VarCorr(ex3$ours), attr, "stddev"))
cat("\nconfint(m): mixedrs | lme4\n"); compare_ci(ex3$ours, ex3$ref)
cat("\nranova(m):\n"); compare_ranova(ex3$ours, ex3$ref)

cat("\n", strrep("=", 78), "\nExample 4: tree growth under three fertilisers (random-walk errors)\n",
    "  nlme::lme(height ~ treatment:age - 1, random = ~ age - 1 | tree, correlation = corAR1())\n",
    "  lmm(height ~ treatment:age - 1 + (age - 1 | tree), correlation = corAR1())\n",
    "  lmm(height ~ treatment:age - 1 + (age - 1 | tree), correlation = corRandomWalk(~ age | tree))\n",
    strrep("=", 78), "\n", sep = "")
trees <- sim_growth(trees = 30)
t_nlme <- system.time(m_nlme <- lme(height ~ treatment:age - 1, random = ~ age - 1 | tree,
                                    correlation = corAR1(), data = trees))[["elapsed"]]
t_ar1 <- system.time(m_ar1 <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees, correlation = corAR1()))[["elapsed"]]
t_rw <- system.time(m_rw <- lmm(height ~ treatment:age - 1 + (age - 1 | tree), trees,
                                correlation = corRandomWalk(~ age | tree)))[["elapsed"]]
cat("\n--- mixedrs::lmm, corAR1 ---\n"); print(summary(m_ar1))
cat("\n--- nlme::lme, corAR1 ---\n"); print(summary(m_nlme))
cat("\n--- mixedrs::lmm, exact random walk ---\n"); print(summary(m_rw))
tab <- rbind(
  `nlme corAR1` = c(nlme::fixef(m_nlme), sd_age = as.numeric(VarCorr(m_nlme)["age", "StdDev"]), sigma = m_nlme$sigma,
                    cor = unname(coef(m_nlme$modelStruct$corStruct, unconstrained = FALSE)), `-2logLik` = -2 * c(logLik(m_nlme)),
                    seconds = t_nlme),
  `mixedrs corAR1` = c(fixef(m_ar1), sd_age = attr(VarCorr(m_ar1)$tree, "stddev")[[1]], sigma = sigma(m_ar1),
                       cor = unname(coef(m_ar1$correlation)), `-2logLik` = -2 * c(logLik(m_ar1)), seconds = t_ar1),
  `mixedrs random walk` = c(fixef(m_rw), sd_age = attr(VarCorr(m_rw)$tree, "stddev")[[1]], sigma = sigma(m_rw),
                            cor = NA, `-2logLik` = -2 * c(logLik(m_rw)), seconds = t_rw),
  truth = c(attr(trees, "truth")$fixef, sd_age = 0.5, sigma = 0.5, cor = NA, `-2logLik` = NA, seconds = NA))
print(round(tab, 5))
cat(sprintf("\ncorAR1, mixedrs - nlme: -2logLik %.2e, fixed effects %.2e, Phi %.2e\n",
            tab[2, "-2logLik"] - tab[1, "-2logLik"], max(abs(tab[2, 1:3] - tab[1, 1:3])), tab[2, "cor"] - tab[1, "cor"]))
cat("\nintervals(m)$reStruct$tree (mixedrs corAR1, nlme corAR1, mixedrs random walk):\n")
print(intervals(m_ar1)$reStruct$tree); print(intervals(m_nlme)$reStruct$tree); print(intervals(m_rw)$reStruct$tree)
cat("\nintervals(m) for the random walk:\n"); print(intervals(m_rw))

cat("\nemmeans(m, pairwise ~ treatment) and contrast(e, list(c(-.5, -.5, 1))): mixedrs (containment df) | nlme\n")
if (requireNamespace("emmeans", quietly = TRUE)) {
  e_ours <- suppressMessages(emmeans::emmeans(m_ar1, pairwise ~ treatment, mode = "containment"))
  e_nlme <- suppressMessages(emmeans::emmeans(m_nlme, pairwise ~ treatment))
  print(e_ours$contrasts); print(e_nlme$contrasts)
  print(emmeans::contrast(e_ours$emmeans, list(c(-.5, -.5, 1))))
  print(emmeans::contrast(e_nlme$emmeans, list(c(-.5, -.5, 1))))
}

cat("\n", strrep("=", 78), "\nExercise 1: P(a new female student at a new school scores > 1200), by Monte Carlo\n",
    strrep("=", 78), "\n", sep = "")
sims <- simulate(ex3$ours, 100000, seed = 1,
                 newdata = data.frame(sex = factor("F", levels = c("F", "M")), school = "new", student = "new"))
sds <- c(sapply(VarCorr(ex3$ours), attr, "stddev"), sigma(ex3$ours))
cat(sprintf("Monte Carlo (100,000 draws): %.4f   exact normal: %.4f\n", mean(unlist(sims) > 1200),
            stats::pnorm(1200, fixef(ex3$ours)[[1]], sqrt(sum(sds^2)), lower.tail = FALSE)))
cat("\nParametric bootstrap of example 1 (1,000 refits in Rust):\n")
print(system.time(bt <- bootstrap(ex1$ours, 1000, seed = 1, progress = FALSE)))
print(confint(bt))

cat("\nThe workshop vignette, with the plots, is in demo-output/workshop.html.\n")
