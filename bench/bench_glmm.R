# make bench (GLMM rows): glmm() against lme4::glmer, issue 18's cases G1-G4.
# Each case runs in its own child R process holding only its data: glmm() timed (median
# of `times` fits), then glmer in the same process (so the ratio is measured in one R
# process), with each fit's peak RSS above the loaded data (VmHWM; glmer's is read after
# ours, so when it stays below ours it is reported as "<= ours").
# Usage: Rscript bench/bench_glmm.R [quick]   ("quick" skips G2, whose glmer fit takes
# about 9 minutes here)
args <- commandArgs(trailingOnly = TRUE)
quick <- "quick" %in% args

child <- function(setup, ours, ref, times_ours = 3L, times_ref = 3L) {
  script <- tempfile(fileext = ".R")
  out <- tempfile(fileext = ".rds")
  writeLines(c(
    "suppressPackageStartupMessages({library(mixedrs); library(lme4)})",
    setup,
    "hwm <- function() as.numeric(sub('kB', '', sub('VmHWM:', '', grep('VmHWM', readLines('/proc/self/status'), value = TRUE)[1L]))) / 1024",
    "invisible(gc()); base <- hwm()",
    sprintf("t_ours <- sapply(seq_len(%d), function(i) { invisible(gc()); system.time(fo <<- %s)[['elapsed']] })", times_ours, ours),
    "peak_ours <- hwm() - base",
    sprintf("t_ref <- sapply(seq_len(%d), function(i) { invisible(gc()); system.time(fr <<- suppressWarnings(%s))[['elapsed']] })", times_ref, ref),
    "peak_ref <- hwm() - base",
    sprintf("saveRDS(list(ours = median(t_ours), ref = median(t_ref), peak_ours = peak_ours, peak_ref = peak_ref, evals = fo$optinfo$evaluations, n = nobs(fo), ll_ours = c(logLik(fo)), ll_ref = c(logLik(fr)), fixef_diff = max(abs(fixef(fo) - lme4::fixef(fr)) / pmax(1, abs(lme4::fixef(fr))))), %s)", deparse(out))
  ), script)
  system2(file.path(R.home("bin"), "Rscript"), script)
  readRDS(out)
}

verbagg_setup <- "d <- lme4::VerbAgg"
verbagg_form <- "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
stacked_setup <- c("v <- lme4::VerbAgg",
                   "d <- do.call(rbind, lapply(1:40, function(i) { x <- v; x$id <- factor(paste(i, x$id, sep = ':')); x }))")
cases <- list(
  list(id = "G1", label = "VerbAgg, 7,584 rows, (1|id) + (1|item) crossed", setup = verbagg_setup,
       form = verbagg_form, family = "binomial", target = 20, times_ref = 3L),
  list(id = "G2", label = "VerbAgg x40, 303,360 rows, 12,640 subjects", setup = stacked_setup,
       form = verbagg_form, family = "binomial", target = 50, times_ref = 1L),
  list(id = "G3", label = "grouseticks, Poisson, (1|BROOD) + (1|LOCATION)", setup = "d <- lme4::grouseticks",
       form = "TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | LOCATION)", family = "poisson", target = NA, times_ref = 3L),
  list(id = "G4", label = "Contraception, (urban | district)",
       setup = "data('Contraception', package = 'mlmRev'); d <- Contraception",
       form = "use ~ urban + age + I(age^2) + livch + (urban | district)", family = "binomial", target = NA, times_ref = 3L))
if (quick) cases <- Filter(function(cs) cs$id != "G2", cases)

rows <- lapply(cases, function(cs) {
  r <- child(cs$setup, sprintf("glmm(%s, d, family = %s)", cs$form, cs$family),
             sprintf("lme4::glmer(%s, d, family = %s)", cs$form, cs$family), times_ref = cs$times_ref)
  data.frame(case = paste(cs$id, cs$label), mixedrs_s = signif(r$ours, 4), glmer_s = signif(r$ref, 4),
             ratio = round(r$ref / r$ours, 1), target = cs$target,
             logLik_diff = signif(r$ll_ours - r$ll_ref, 3), fixef_rel_diff = signif(r$fixef_diff, 2), evals = r$evals,
             mixedrs_MiB = round(r$peak_ours), glmer_MiB = if (r$peak_ref > r$peak_ours) as.character(round(r$peak_ref)) else "<= ours")
})
tab <- do.call(rbind, rows)
cat(sprintf("\nmixedrs GLMM bench, %s, %d cores, R %s, lme4 %s\n", format(Sys.Date()), parallel::detectCores(), getRversion(),
            packageVersion("lme4")))
cat("(ratio = glmer / glmm; logLik_diff > 0: glmm's is higher; peak RSS above the loaded data)\n")
print(tab, row.names = FALSE)
shipped <- data.frame(kind = "glmm", case = tab$case, mixedrs_s = tab$mixedrs_s, reference_s = tab$glmer_s, ratio = tab$ratio,
                      max_rel_diff = tab$fixef_rel_diff, date = format(Sys.Date()),
                      machine = sprintf("%d cores, R %s, lme4 %s", parallel::detectCores(), getRversion(), packageVersion("lme4")))
dir.create("inst/bench", showWarnings = FALSE, recursive = TRUE)
utils::write.csv(shipped, "inst/bench/results_glmm.csv", row.names = FALSE)
