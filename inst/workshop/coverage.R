# Coverage of 95% intervals for the fertiliser slopes in the workshop's tree model:
# random-walk errors (the true model) against corAR1 (the workshop's approximation).
# Slope intervals are estimate ± t(0.975, Satterthwaite df) × SE from summary();
# the tree-slope SD interval is intervals()'s Wald interval on the log scale.
coverage_study <- function(nsim = 200, trees = 10, level = 0.95, seed0 = 1000) {
  truth <- c(2.7, 3.0, 3.6)
  hits <- list(random_walk = matrix(NA, nsim, 3), ar1 = matrix(NA, nsim, 3))
  sd_hits <- list(random_walk = logical(nsim), ar1 = logical(nsim))
  for (i in seq_len(nsim)) {
    d <- sim_growth(trees = trees, seed = seed0 + i, digits = NULL)
    fits <- list(
      random_walk = lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corRandomWalk(~ age | tree)),
      ar1 = suppressWarnings(lmm(height ~ treatment:age - 1 + (age - 1 | tree), d, correlation = corAR1()))
    )
    for (nm in names(fits)) {
      ct <- suppressWarnings(summary(fits[[nm]])$coefficients)
      q <- stats::qt((1 + level) / 2, ct[, "df"])
      hits[[nm]][i, ] <- abs(ct[, "Estimate"] - truth) <= q * ct[, "Std. Error"]
      iv <- suppressWarnings(intervals(fits[[nm]], level = level)$reStruct$tree["sd(age)", ])
      sd_hits[[nm]][i] <- iv$lower <= 0.5 && 0.5 <= iv$upper
    }
  }
  cov <- vapply(hits, mean, 0)
  # Monte Carlo standard error, treating the 3 slopes of one data set as one cluster
  mcse <- vapply(hits, function(h) stats::sd(rowMeans(h)) / sqrt(nsim), 0)
  data.frame(model = names(hits), slope_coverage = cov, slope_mc_se = mcse,
             sd_slope_coverage = vapply(sd_hits, mean, 0), nsim = nsim, trees_per_fertiliser = trees,
             row.names = NULL)
}
