# The fits the interop tests hand to other packages: each lmm fit beside the reference
# fit of the same model (lmerTest::lmer, or nlme::lme for correlated residuals), made
# once per test run. The five models are the issue's: sleepstudy, Penicillin, cake, a
# singular fit, and BodyWeight with continuous-time AR(1) residuals.
interop_cases <- local({
  cache <- NULL
  function() {
    if (!is.null(cache)) return(cache)
    both <- function(ours, ref) list(ours = suppressMessages(ours), ref = suppressMessages(suppressWarnings(ref)))
    # the data are named in the calls, so that packages that refit or re-read the data
    # from the call (pbkrtest, sjPlot) find them
    cache <<- list(
      sleep = both(lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy),
                   lmerTest::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)),
      penicillin = both(lmm(diameter ~ 1 + (1 | plate) + (1 | sample), lme4::Penicillin),
                        lmerTest::lmer(diameter ~ 1 + (1 | plate) + (1 | sample), lme4::Penicillin)),
      cake = both(lmm(angle ~ recipe * temperature + (1 | recipe:replicate), lme4::cake),
                  lmerTest::lmer(angle ~ recipe * temperature + (1 | recipe:replicate), lme4::cake)),
      singular = both(lmm(Yield ~ 1 + (1 | Batch), lme4::Dyestuff2), lmerTest::lmer(Yield ~ 1 + (1 | Batch), lme4::Dyestuff2)),
      car1 = both(lmm(weight ~ Time * Diet + (Time | Rat), nlme::BodyWeight, correlation = corCAR1(form = ~ Time | Rat)),
                  nlme::lme(weight ~ Time * Diet, random = ~ Time | Rat, data = nlme::BodyWeight,
                            correlation = nlme::corCAR1(form = ~ Time | Rat)))
    )
    cache
  }
})

# The cases without correlated residuals (lmerTest's fits as reference).
lmer_cases <- function() interop_cases()[c("sleep", "penicillin", "cake", "singular")]

# Warnings and messages of the other packages are theirs; the tests compare results.
quietly <- function(expr) suppressMessages(suppressWarnings(expr))

# Our result against the reference package's on its own fit, with a stated tolerance.
# Where the reference package fails on its own fit, ours must fail too (with our
# message), never return something the reference cannot.
expect_interop <- function(f, case, tolerance = 1e-4, label = NULL) {
  ref <- tryCatch(quietly(f(case$ref)), error = function(e) e)
  if (inherits(ref, "error")) {
    expect_error(quietly(f(case$ours)), label = paste(label, "(fails for the reference too)"))
    return(invisible())
  }
  ours <- tryCatch(quietly(f(case$ours)), error = function(e) stop(label, " on the lmm fit: ", conditionMessage(e), call. = FALSE))
  expect_equal(ours, ref, tolerance = tolerance, label = label, ignore_attr = TRUE)
}
