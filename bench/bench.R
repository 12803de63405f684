# make bench: time mixedrs::lmm() against lme4::lmer() in one R process.
# Ratios are lme4 time / mixedrs time (above 1 means mixedrs is faster).
suppressPackageStartupMessages({
  library(mixedrs)
  library(lme4)
})
args <- commandArgs(trailingOnly = TRUE)
big_n <- if (length(args)) as.integer(args[1]) else 500000L

time_it <- function(expr, reps) {
  expr <- substitute(expr)
  env <- parent.frame()
  gc()
  t <- system.time(for (i in seq_len(reps)) val <- eval(expr, env))[["elapsed"]] / reps
  list(time = t, value = val)
}

row <- function(case, ours, ref, reml = TRUE) {
  crit_o <- if (reml) mixedrs::REMLcrit(ours$value) else deviance(ours$value)
  crit_r <- if (reml) lme4::REMLcrit(ref$value) else deviance(ref$value)
  data.frame(case = case, mixedrs_s = signif(ours$time, 4), lme4_s = signif(ref$time, 4),
             ratio = round(ref$time / ours$time, 2),
             crit_diff_rel = signif((crit_o - crit_r) / abs(crit_r), 3),
             evals = ours$value$optinfo$evaluations)
}

res <- list()
ss <- lme4::sleepstudy
o <- time_it(lmm(Reaction ~ Days + (Days | Subject), ss), 50)
r <- time_it(lmer(Reaction ~ Days + (Days | Subject), ss), 50)
res[[1]] <- row("B1 sleepstudy (Days|Subject)", o, r)

set.seed(20)
nsubj <- 20000L
per <- big_n %/% nsubj
subj <- factor(rep(seq_len(nsubj), each = per))
x <- rnorm(nsubj * per)
b0 <- rnorm(nsubj, 0, 1)
b1 <- rnorm(nsubj, 0, 0.5)
d <- data.frame(subj = subj, x = x,
                y = 1 + 0.5 * x + b0[subj] + b1[subj] * x + rnorm(nsubj * per))
o <- time_it(lmm(y ~ x + (x | subj), d), 1)
r <- time_it(lmer(y ~ x + (x | subj), d), 1)
res[[2]] <- row(sprintf("B2 simulated %d rows, %d subjects (x|subj)", nrow(d), nsubj), o, r)

tab <- do.call(rbind, res)
cat(sprintf("mixedrs bench, %s, %d cores, R %s\n", format(Sys.Date()), parallel::detectCores(),
            getRversion()))
print(tab, row.names = FALSE)
