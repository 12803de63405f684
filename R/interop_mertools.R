# merTools reads lme4's slots inside functions that are not generics, so an lmm fit
# cannot answer them through methods. These are mixedrs's functions of the same
# names: for an lmm fit they hand merTools the lme4 fit that as_lmerMod() builds from
# it (the same estimates; built only when one of them is called), for a glmm fit the
# one as_glmerMod() builds; any other object goes to merTools' function unchanged. merTools supports lme4's fits only, so fits
# with correlated residuals are an error here, as lme fits are there. Attach mixedrs
# after merTools (or call mixedrs::predictInterval()), else merTools' own functions
# mask these.

#' merTools' simulation-based summaries of an lmm fit
#'
#' merTools' `predictInterval()`, `REsim()` and `FEsim()` for lmm fits: merTools reads
#' lme4's internals, so an lmm fit is handed over as the lme4 fit [as_lmerMod()]
#' builds from it (same estimates). Other objects go to merTools unchanged.
#' @param merMod a fit: an `lmm` fit (without correlated residuals), a `glmm` fit,
#'   or anything merTools takes.
#' @param ... merTools' arguments (`newdata`, `n.sims`, `seed`, ...).
#' @return merTools' result.
#' @examples
#' if (requireNamespace("merTools", quietly = TRUE)) {
#'   fm <- lmm(Reaction ~ Days + (Days | Subject), lme4::sleepstudy)
#'   head(REsim(fm, n.sims = 100, seed = 1))
#' }
#' @name merTools-interop
#' @export
predictInterval <- function(merMod, ...) mertools_call("predictInterval", merMod, ...)

#' @rdname merTools-interop
#' @export
REsim <- function(merMod, ...) mertools_call("REsim", merMod, ...)

#' @rdname merTools-interop
#' @export
FEsim <- function(merMod, ...) mertools_call("FEsim", merMod, ...)

mertools_call <- function(name, merMod, ...) {
  f <- defer_function("merTools", name)
  if (inherits(merMod, "lmm")) {
    if (structured_residuals(merMod)) {
      mixedrs_abort(sprintf("merTools::%s() takes lme4 fits only; it is not available for fits with correlated or heteroscedastic residuals", name),
                    kind = "not_available")
    }
    merMod <- as_lmerMod(merMod)
  } else if (inherits(merMod, "glmm")) {
    merMod <- glmer_of(merMod)
  }
  f(merMod, ...)
}
