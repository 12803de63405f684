# make bench: time mixedrs against lme4 / lmerTest in one R process.
# Ratios are reference time / mixedrs time (above 1 means mixedrs is faster).
# Usage: Rscript bench/bench.R [quick]   ("quick" skips B6 and the 10x scaling runs)
suppressPackageStartupMessages({
  library(mixedrs)
  library(lme4)
  library(lmerTest)
})
args <- commandArgs(trailingOnly = TRUE)
quick <- "quick" %in% args

time_it <- function(expr, reps = 1) {
  expr <- substitute(expr)
  env <- parent.frame()
  gc()
  t <- system.time(for (i in seq_len(reps)) val <- eval(expr, env))[["elapsed"]] / reps
  list(time = t, value = val)
}

# Median of `times` single runs: a single large fit's time moves by up to 2x with the
# state of R's heap (the first large allocations of a process are slow).
median_time <- function(expr, times = 3) {
  expr <- substitute(expr)
  env <- parent.frame()
  runs <- lapply(seq_len(times), function(i) {
    gc()
    t <- system.time(val <- eval(expr, env))[["elapsed"]]
    list(time = t, value = val)
  })
  list(time = stats::median(vapply(runs, `[[`, 0, "time")), value = runs[[1]]$value)
}

crit <- function(fit, reml) {
  if (inherits(fit, "lmm")) return(if (reml) mixedrs::REMLcrit(fit) else deviance(fit))
  if (reml) lme4::REMLcrit(fit) else deviance(fit)
}

fit_row <- function(case, ours, ref, reml = TRUE) {
  co <- crit(ours$value, reml)
  cr <- crit(ref$value, reml)
  data.frame(case = case, mixedrs_s = signif(ours$time, 4), ref_s = signif(ref$time, 4),
             ratio = round(ref$time / ours$time, 2), crit_diff_rel = signif((co - cr) / abs(cr), 3),
             evals = ours$value$optinfo$evaluations, grads = ours$value$optinfo$gradients,
             ref_warning = ref$warning %||% "")
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# lme4 with its warnings recorded (B4 warns about convergence)
lmer_w <- function(...) {
  w <- NULL
  fit <- withCallingHandlers(lme4::lmer(...), warning = function(e) {
    w <<- conditionMessage(e)
    invokeRestart("muffleWarning")
  })
  attr(fit, "bench_warning") <- w
  fit
}
ref_fit <- function(expr) {
  r <- eval.parent(substitute(time_it(expr)))
  r$warning <- if (is.null(attr(r$value, "bench_warning"))) "" else substr(attr(r$value, "bench_warning"), 1, 40)
  r
}

res <- list()
add <- function(row) {
  res[[length(res) + 1L]] <<- row
  print(row, row.names = FALSE)
  flush(stdout())
}

## B1
ss <- lme4::sleepstudy
o <- time_it(lmm(Reaction ~ Days + (Days | Subject), ss), 50)
r <- ref_fit(for (i in 1:50) f <- lmer_w(Reaction ~ Days + (Days | Subject), ss))
r$time <- r$time / 50
r$value <- f
add(fit_row("B1 sleepstudy (Days|Subject)", o, r))

## B2 and its 10x
sim_b2 <- function(nsubj, per, seed = 20) {
  set.seed(seed)
  subj <- factor(rep(seq_len(nsubj), each = per))
  x <- rnorm(nsubj * per)
  b0 <- rnorm(nsubj, 0, 1)
  b1 <- rnorm(nsubj, 0, 0.5)
  data.frame(subj = subj, x = x, y = 1 + 0.5 * x + b0[subj] + b1[subj] * x + rnorm(nsubj * per))
}
d2 <- sim_b2(20000L, 25L)
o <- median_time(lmm(y ~ x + (x | subj), d2), 3)
r <- ref_fit(lmer_w(y ~ x + (x | subj), d2))
r$time <- stats::median(c(r$time, time_it(lmer_w(y ~ x + (x | subj), d2))$time))
add(fit_row("B2 500k rows, 20k subjects (x|subj)", o, r))

## B3, B4: InstEval
data(InstEval, package = "lme4")
o <- time_it(lmm(y ~ 1 + service + lectage + studage + (1 | s) + (1 | d) + (1 | dept:service), InstEval, REML = FALSE))
r <- ref_fit(lmer_w(y ~ 1 + service + lectage + studage + (1 | s) + (1 | d) + (1 | dept:service), InstEval, REML = FALSE))
add(fit_row("B3 InstEval ML, 3 crossed intercepts", o, r, reml = FALSE))
o <- time_it(lmm(y ~ 1 + service * dept + (1 | s) + (1 | d), InstEval))
r <- ref_fit(lmer_w(y ~ 1 + service * dept + (1 | s) + (1 | d), InstEval))
add(fit_row("B4 InstEval REML service*dept", o, r))
b4_ours <- o$value
b4_ref <- r$value

## B5: kb07-like crossed design, 4x4 covariance on both factors
set.seed(5)
n_s <- 50; n_i <- 50
d5 <- expand.grid(subj = factor(1:n_s), item = factor(1:n_i))
d5 <- d5[sample(nrow(d5), 2000), ]
d5$a <- sample(c(-0.5, 0.5), nrow(d5), TRUE)
d5$b <- sample(c(-0.5, 0.5), nrow(d5), TRUE)
d5$c <- sample(c(-0.5, 0.5), nrow(d5), TRUE)
Ls <- matrix(c(1, 0.3, 0.2, 0.1, 0, 0.5, 0.1, 0.1, 0, 0, 0.4, 0.1, 0, 0, 0, 0.3), 4, 4)
bs <- matrix(rnorm(n_s * 4), n_s) %*% t(Ls)
bi <- matrix(rnorm(n_i * 4), n_i) %*% t(Ls * 0.8)
Z <- cbind(1, d5$a, d5$b, d5$c)
d5$y <- drop(Z %*% c(2, 0.5, -0.3, 0.2)) + rowSums(Z * bs[d5$subj, ]) + rowSums(Z * bi[d5$item, ]) + rnorm(nrow(d5))
o <- time_it(lmm(y ~ a + b + c + (a + b + c | subj) + (a + b + c | item), d5))
r <- ref_fit(lmer_w(y ~ a + b + c + (a + b + c | subj) + (a + b + c | item), d5))
add(fit_row("B5 kb07-like, 2000 rows, 4x4 cov on 2 crossed factors", o, r))

## B6: 2M rows nested, and ours alone at 10x of B2 and B6
sim_b6 <- function(nschool, per_school, per_student, seed = 6) {
  set.seed(seed)
  nstud <- nschool * per_school
  school <- factor(rep(seq_len(nschool), each = per_school * per_student))
  student <- factor(rep(seq_len(nstud), each = per_student))
  data.frame(school = school, student = student,
             y = 10 + rnorm(nschool)[school] + rnorm(nstud, 0, 0.7)[student] + rnorm(nstud * per_student))
}
if (!quick) {
  d6 <- sim_b6(2000L, 50L, 20L)
  o <- time_it(lmm(y ~ 1 + (1 | school/student), d6))
  r <- ref_fit(lmer_w(y ~ 1 + (1 | school/student), d6))
  add(fit_row("B6 2M rows nested (1|school/student)", o, r))
  rm(d6); gc()
  d2x <- sim_b2(200000L, 25L)
  o <- time_it(lmm(y ~ x + (x | subj), d2x))
  add(data.frame(case = "B2 x10: 5M rows, 200k subjects (mixedrs only)", mixedrs_s = signif(o$time, 4),
                 ref_s = NA, ratio = NA, crit_diff_rel = NA, evals = o$value$optinfo$evaluations,
                 grads = o$value$optinfo$gradients, ref_warning = ""))
  rm(d2x); gc()
  d6x <- sim_b6(20000L, 50L, 20L)
  o <- time_it(lmm(y ~ 1 + (1 | school/student), d6x))
  add(data.frame(case = "B6 x10: 20M rows nested (mixedrs only)", mixedrs_s = signif(o$time, 4),
                 ref_s = NA, ratio = NA, crit_diff_rel = NA, evals = o$value$optinfo$evaluations,
                 grads = o$value$optinfo$gradients, ref_warning = ""))
  rm(d6x); gc()
}

## Inference: Satterthwaite summary and type III anova on B4, profile confint on sleepstudy
inf <- list()
# lmerTest computes its derivatives when it converts a fit; count that and summary()
devfun <- lme4::lmer(y ~ 1 + service * dept + (1 | s) + (1 | d), InstEval, devFunOnly = TRUE)
ref_sum <- time_it({rt <- lmerTest:::as_lmerModLT(b4_ref, devfun = devfun); summary(rt)})
b4_ours$cache <- new.env()
our_sum <- time_it(summary(b4_ours))
df_diff <- max(abs(our_sum$value$coefficients[, "df"] / ref_sum$value$coefficients[, "df"] - 1))
inf[[1]] <- data.frame(case = "I1 summary(), Satterthwaite df, B4 (vs lmerTest)", mixedrs_s = signif(our_sum$time, 4),
                       ref_s = signif(ref_sum$time, 4), ratio = round(ref_sum$time / our_sum$time, 1),
                       max_rel_diff = signif(df_diff, 3))
ref_an <- time_it(anova(rt))
our_an <- time_it(anova(b4_ours))
inf[[2]] <- data.frame(case = "I2 anova() type III after summary(), B4 (vs lmerTest)", mixedrs_s = signif(our_an$time, 4),
                       ref_s = signif(ref_an$time, 4), ratio = round(ref_an$time / our_an$time, 1),
                       max_rel_diff = signif(max(abs(our_an$value$DenDF / ref_an$value$DenDF - 1)), 3))
m1 <- lmm(Reaction ~ Days + (Days | Subject), ss)
r1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss)
our_ci <- time_it(confint(m1, quiet = TRUE), 5)
ref_ci <- time_it(suppressMessages(confint(r1)), 2)
inf[[3]] <- data.frame(case = "I3 profile confint(), sleepstudy (vs lme4)", mixedrs_s = signif(our_ci$time, 4),
                       ref_s = signif(ref_ci$time, 4), ratio = round(ref_ci$time / our_ci$time, 1),
                       max_rel_diff = signif(max(abs(our_ci$value / ref_ci$value - 1)), 3))

## Bootstrap: 1000 parametric refits of sleepstudy, and a 100k-row case
boot_row <- function(case, fit, ref, nsim) {
  ours <- time_it(bootstrap(fit, nsim, seed = 1, progress = FALSE))
  theirs <- time_it(suppressWarnings(suppressMessages(lme4::bootMer(ref, lme4::fixef, nsim = nsim, seed = 1))))
  data.frame(case = case, mixedrs_s = signif(ours$time, 4), ref_s = signif(theirs$time, 4),
             ratio = round(theirs$time / ours$time, 1), max_rel_diff = NA)
}
inf[[4]] <- boot_row("I4 bootstrap, 1000 refits, sleepstudy (vs lme4::bootMer)",
                     lmm(Reaction ~ Days + (Days | Subject), ss), lme4::lmer(Reaction ~ Days + (Days | Subject), ss), 1000)
d100 <- sim_b2(5000L, 20L, seed = 21)
inf[[5]] <- boot_row("I5 bootstrap, 100 refits, 100k rows (x|subj) (vs lme4::bootMer)",
                     lmm(y ~ x + (x | subj), d100), lme4::lmer(y ~ x + (x | subj), d100), 100)

## After the fit: the methods a user calls next, on a 1M-row nested model, against the
## fit itself (issue 20: they read the engine's blocks, so together they should cost
## at most 0.3 of the fit). Medians over three fresh fits, each method called once. It
## runs in a child R process holding only this data, as a user's session would: in this
## process the heap still holds the 20M-row runs, and every collection walks it.
after_fit <- function() {
  set.seed(20)
  nsch <- 2000; nst <- nsch * 25; each <- 20
  school <- factor(rep(seq_len(nsch), each = 25 * each))
  student <- factor(rep(seq_len(nst), each = each))
  x <- rnorm(nst * each)
  da <- data.frame(school, student, x, y = 1 + 0.3 * x + rnorm(nsch)[school] + rnorm(nst, 0, 0.7)[student] + rnorm(nst * each))
  nd <- da[1:1000, ]
  elapsed <- function(e) system.time(e)[["elapsed"]]
  runs <- t(replicate(3, {
    gc()
    fit_s <- elapsed(ma <- lmm(y ~ x + (1 | school/student), da))
    parts <- c(ranef_condVar = elapsed(ranef(ma, condVar = TRUE)), summary = elapsed(summary(ma)),
               anova = elapsed(anova(ma)), predict_newdata = elapsed(predict(ma, newdata = nd)),
               confint_Wald = elapsed(confint(ma, method = "Wald")), simulate_1 = elapsed(simulate(ma, 1)))
    c(fit = fit_s, parts, methods = sum(parts))
  }))
  apply(runs, 2, stats::median)
}
after_script <- tempfile(fileext = ".R")
after_out <- tempfile(fileext = ".rds")
writeLines(c("suppressPackageStartupMessages(library(mixedrs))",
             paste("after_fit <-", paste(deparse(after_fit), collapse = "\n")),
             sprintf("saveRDS(after_fit(), %s)", deparse(after_out))), after_script)
system2(file.path(R.home("bin"), "Rscript"), after_script)
after <- readRDS(after_out)
after_row <- data.frame(case = "A1 ranef(condVar)+summary+anova+predict(newdata)+Wald confint+simulate(m,1), 1M rows (1|school/student)",
                        methods_s = signif(after[["methods"]], 3), fit_s = signif(after[["fit"]], 3),
                        methods_over_fit = round(after[["methods"]] / after[["fit"]], 3))

## Peak memory (VmHWM of a child R process, above its level after loading the data)
peak_rss <- function(setup, fit) {
  script <- tempfile(fileext = ".R")
  writeLines(c("suppressPackageStartupMessages({library(mixedrs); library(lme4)})", setup,
               "hwm <- function() as.numeric(sub('kB', '', grep('VmHWM', readLines('/proc/self/status'), value = TRUE)[1L] |> sub(pattern = 'VmHWM:', replacement = '')))",
               "gc(); base <- hwm()", paste0("f <- ", fit), "cat((hwm() - base) / 1024, '\\n')"), script)
  out <- suppressWarnings(as.numeric(system2("Rscript", script, stdout = TRUE, stderr = FALSE)))
  utils::tail(out[!is.na(out)], 1L)
}
mem <- list()
b2_setup <- c(paste("sim_b2 <-", paste(deparse(sim_b2), collapse = "\n")), "d <- sim_b2(20000L, 25L)")
b3_setup <- "data(InstEval, package = 'lme4'); d <- InstEval"
b3_form <- "y ~ 1 + service + lectage + studage + (1 | s) + (1 | d) + (1 | dept:service)"
for (cs in list(list("B2", b2_setup, "y ~ x + (x | subj)", TRUE), list("B3", b3_setup, b3_form, FALSE))) {
  o <- peak_rss(cs[[2]], sprintf("lmm(%s, d, REML = %s)", cs[[3]], cs[[4]]))
  r <- peak_rss(cs[[2]], sprintf("lme4::lmer(%s, d, REML = %s)", cs[[3]], cs[[4]]))
  mem[[length(mem) + 1L]] <- data.frame(case = cs[[1]], mixedrs_MiB = round(o), lme4_MiB = round(r), share = round(o / r, 2))
}

## Residual structures: 100k longitudinal rows, varIdent by arm and AR(1) within subject
## (issue 19: at least 20x nlme::lme), with both fits' peak RSS
sim_v1 <- function(ns, nt = 5L, seed = 42) {
  set.seed(seed)
  d <- data.frame(subj = factor(rep(seq_len(ns), each = nt)), time = rep(seq_len(nt), ns))
  d$arm <- factor(sample(c("a", "b", "c"), ns, TRUE)[d$subj])
  d$x <- rnorm(nrow(d))
  sdv <- c(a = 1, b = 1.5, c = 0.7)[as.character(d$arm)]
  e <- as.vector(stats::filter(matrix(rnorm(nrow(d)), nt), 0.5, "recursive"))
  d$y <- 1 + 0.3 * d$time + 0.5 * d$x + rnorm(ns)[d$subj] + sdv * e
  d
}
dv <- sim_v1(20000L)
v_ours <- median_time(lmm(y ~ time + x + arm + (1 | subj), dv, weights = varIdent(form = ~ 1 | arm),
                          correlation = corAR1(form = ~ time | subj)))
v_ref <- time_it(nlme::lme(y ~ time + x + arm, random = ~ 1 | subj, data = dv, weights = nlme::varIdent(form = ~ 1 | arm),
                           correlation = nlme::corAR1(form = ~ time | subj)))
v_setup <- c(paste("sim_v1 <-", paste(deparse(sim_v1), collapse = "\n")), "d <- sim_v1(20000L)")
v_mem_ours <- peak_rss(v_setup, "lmm(y ~ time + x + arm + (1 | subj), d, weights = varIdent(form = ~ 1 | arm), correlation = corAR1(form = ~ time | subj))")
v_mem_ref <- peak_rss(v_setup, "nlme::lme(y ~ time + x + arm, random = ~ 1 | subj, data = d, weights = nlme::varIdent(form = ~ 1 | arm), correlation = nlme::corAR1(form = ~ time | subj))")
v_row <- data.frame(case = "V1 100k rows, varIdent + corAR1, (1 | subj) (vs nlme::lme)", mixedrs_s = signif(v_ours$time, 4),
                    ref_s = signif(v_ref$time, 4), ratio = round(v_ref$time / v_ours$time, 1),
                    logLik_diff = signif(c(logLik(v_ours$value)) - c(logLik(v_ref$value)), 3),
                    mixedrs_MiB = round(v_mem_ours), nlme_MiB = round(v_mem_ref))

cat(sprintf("\nmixedrs bench, %s, %d cores, R %s, lme4 %s, lmerTest %s\n", format(Sys.Date()), parallel::detectCores(),
            getRversion(), packageVersion("lme4"), packageVersion("lmerTest")))
cat("\nFits (time per fit; ratio = lme4 / mixedrs; crit_diff_rel < 0 means mixedrs reached a lower criterion;",
    "evals = criterion evaluations, grads = exact gradients):\n")
print(do.call(rbind, res), row.names = FALSE)
cat("\nInference:\n")
print(do.call(rbind, inf), row.names = FALSE)
cat("\nAfter the fit (medians of 3; methods_over_fit should be at most 0.3):\n")
print(after_row, row.names = FALSE)
print(signif(after, 3))
cat("\nResidual structures (ratio = nlme / mixedrs; logLik_diff > 0: mixedrs's is higher; peak RSS above the loaded data):\n")
print(v_row, row.names = FALSE)
cat("\nPeak RSS of the fit above the loaded data (MiB):\n")
print(do.call(rbind, mem), row.names = FALSE)

# The performance vignette shows the last run's table from this file.
fits <- do.call(rbind, res)
inference <- do.call(rbind, inf)
shipped <- rbind(
  data.frame(kind = "fit", case = fits$case, mixedrs_s = fits$mixedrs_s, reference_s = fits$ref_s,
             ratio = fits$ratio, max_rel_diff = fits$crit_diff_rel),
  data.frame(kind = "inference", case = inference$case, mixedrs_s = inference$mixedrs_s,
             reference_s = inference$ref_s, ratio = inference$ratio, max_rel_diff = inference$max_rel_diff),
  data.frame(kind = "residual_structure", case = v_row$case, mixedrs_s = v_row$mixedrs_s, reference_s = v_row$ref_s,
             ratio = v_row$ratio, max_rel_diff = NA),
  # here the reference is mixedrs's own fit and the ratio is methods / fit
  data.frame(kind = "after_fit", case = after_row$case, mixedrs_s = after_row$methods_s, reference_s = after_row$fit_s,
             ratio = after_row$methods_over_fit, max_rel_diff = NA))
shipped$date <- format(Sys.Date())
shipped$machine <- sprintf("%d cores, R %s, lme4 %s, lmerTest %s", parallel::detectCores(), getRversion(),
                           packageVersion("lme4"), packageVersion("lmerTest"))
dir.create("inst/bench", showWarnings = FALSE, recursive = TRUE)
utils::write.csv(shipped, "inst/bench/results.csv", row.names = FALSE)
