# Child process for the bootstrap interrupt test: a bootstrap far too long to finish,
# interrupted with SIGINT by the parent.
suppressPackageStartupMessages(library(mixedrs))
m <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
cat("START", format(as.numeric(Sys.time()), nsmall = 3), "\n")
flush(stdout())
w <- NULL
b <- withCallingHandlers(bootstrap(m, 2e6, seed = 1, progress = FALSE),
                         warning = function(e) { w <<- conditionMessage(e); invokeRestart("muffleWarning") })
cat("STOP", format(as.numeric(Sys.time()), nsmall = 3), "\n")
cat("RESULT", b$R, "replicates;", w, "\n")
cat("ALIVE", sum(1:10), "\n")
