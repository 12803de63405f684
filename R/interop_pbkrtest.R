# pbkrtest's generics, which car's Anova(test.statistic = "F") and linearHypothesis()
# call for lme4's fits: answered from mixedrs's own Kenward-Roger (R/kenward_roger.R,
# pbkrtest's formulation) and Satterthwaite computations. Those of pbkrtest's methods
# for lme4's fits that read its slots are not available for lmm fits.

pbkrtest_methods <- function() {
  unavailable <- function(g) function(...) {
    mixedrs_abort(sprintf("pbkrtest::%s() is not available for lmm fits", g), kind = "not_available")
  }
  c(list(vcovAdj = vcov_adj_lmm, KRmodcomp = kr_modcomp_lmm, get_Lb_ddf = kr_lb_ddf_lmm,
         SATmodcomp = sat_modcomp_lmm),
    stats::setNames(lapply(c("get_SigmaG", "getLRT", "restriction_matrix2model", "PBmodcomp"), unavailable),
                    c("get_SigmaG", "getLRT", "restriction_matrix2model", "PBmodcomp")))
}

# The Kenward-Roger adjusted covariance of β̂.
vcov_adj_lmm <- function(object, details = 0, ...) {
  v <- kr_info(object)$vcov_adj
  dimnames(v) <- list(names(object$beta), names(object$beta))
  v
}

# A hypothesis as pbkrtest takes it: a restriction matrix L (or one row of it).
restriction_matrix <- function(object, smallModel) {
  if (is.numeric(smallModel) && !is.matrix(smallModel)) smallModel <- matrix(smallModel, nrow = 1L)
  if (!is.matrix(smallModel)) {
    mixedrs_abort("for lmm fits, give the hypothesis as a restriction matrix L (one row per contrast)", kind = "not_available")
  }
  if (ncol(smallModel) != length(object$beta)) {
    mixedrs_abort(sprintf("the restriction matrix has %d columns, but the model has %d fixed effects", ncol(smallModel), length(object$beta)))
  }
  smallModel
}

# pbkrtest's KRmodcomp() for L β = 0: the scaled F test ("Ftest") and the unscaled one.
kr_modcomp_lmm <- function(largeModel, smallModel, betaH = 0, details = 0, ...) {
  L <- restriction_matrix(largeModel, smallModel)
  if (!all(betaH == 0)) mixedrs_abort("betaH other than 0 is not available for lmm fits", kind = "not_available")
  tab <- kr_ftest(largeModel, L, rep(0, nrow(L)))
  ndf <- tab$NumDF
  ddf <- tab$DenDF
  scaled <- tab[["F value"]]
  unscaled <- tab[["Mean Sq"]] / largeModel$sigma^2
  test <- data.frame(stat = c(scaled, unscaled), ndf = ndf, ddf = ddf, F.scaling = c(scaled / unscaled, NA),
                     p.value = c(tab[["Pr(>F)"]], stats::pf(unscaled, ndf, ddf, lower.tail = FALSE)),
                     row.names = c("Ftest", "FtestU"))
  structure(list(test = test, type = "F", aux = NULL, stats = NULL, ctime = 0), class = "KRmodcomp")
}

# Kenward-Roger's denominator df for one contrast.
kr_lb_ddf_lmm <- function(object, L, ...) {
  L <- restriction_matrix(object, L)
  kr_df_parts(kr_info(object), L, qr(L)$rank)$ddf
}

# pbkrtest's SATmodcomp(): Satterthwaite's F test of L β = 0.
sat_modcomp_lmm <- function(largeModel, smallModel, betaH = 0, details = 0, eps = sqrt(.Machine$double.eps), ...) {
  L <- restriction_matrix(largeModel, smallModel)
  tab <- contest_md(largeModel, L, ddf = "Satterthwaite", eps = eps)
  test <- data.frame(statistic = tab[["F value"]], ndf = tab$NumDF, ddf = tab$DenDF, p.value = tab[["Pr(>F)"]])
  structure(list(test = test, type = "F", aux = NULL, stats = NULL, ctime = 0), class = "SATmodcomp")
}
