# Child process for the interrupt test: a long fit that the parent interrupts with
# SIGINT. Prints when the fit started and stopped, how it stopped, and that R still
# works afterwards.
suppressPackageStartupMessages(library(mixedrs))
set.seed(1)
# about 4 s on 2 cores: the signal (1.5 s after START) comes mid-optimisation
n_s <- 6000; n_i <- 3000
d <- data.frame(s = factor(sample(n_s, 150000, TRUE)), i = factor(sample(n_i, 150000, TRUE)))
d$y <- rnorm(n_s)[d$s] + rnorm(n_i)[d$i] + rnorm(nrow(d))
cat("START", format(as.numeric(Sys.time()), nsmall = 3), "\n")
flush(stdout())
res <- tryCatch(lmm(y ~ 1 + (1 | s) + (1 | i), d),
                mixedrs_interrupted_error = function(e) "mixedrs_interrupted_error",
                interrupt = function(e) "interrupt",
                error = function(e) paste("error:", conditionMessage(e)))
cat("STOP", format(as.numeric(Sys.time()), nsmall = 3), "\n")
cat("RESULT", if (is.character(res)) res else "finished", "\n")
cat("ALIVE", sum(1:10), nrow(d), "\n")
