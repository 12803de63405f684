# ggeffects on lmm fits, live against lmerTest::lmer (nlme::lme with correlated
# residuals); tolerance 1e-4 relative.
skip_if_not_installed("ggeffects")

gp <- function(terms, ...) function(m) as.data.frame(ggeffects::ggpredict(m, terms, ...))

test_that("ggpredict() and ggemmeans() equal those for lmerTest's fit", {
  cs <- interop_cases()
  expect_interop(gp("Days"), cs$sleep, label = "sleep")
  expect_interop(gp("Days [0, 5, 9]"), cs$sleep, label = "sleep at values")
  expect_interop(gp("Days", type = "re"), cs$sleep, label = "sleep, random effects")
  expect_interop(gp("sample", type = "re"), cs$penicillin, label = "Penicillin, random effects")
  expect_interop(function(m) as.data.frame(ggeffects::ggemmeans(m, "recipe")), cs$cake, label = "cake ggemmeans")
  # with correlated residuals, nlme's lme fit is the reference (population-level predictions)
  expect_interop(gp(c("Time", "Diet")), cs$car1, label = "BodyWeight")
})

test_that("ggpredict() gives no intervals where ggeffects would get them wrong", {
  # ggeffects builds its grid's model matrix with the default contrasts; cake's
  # temperature is an ordered factor (polynomial contrasts), so its standard errors for
  # lmerTest's fit are not emmeans' (this fails once ggeffects mends that), and for
  # ours it gets none: equal predictions, no intervals
  cs <- interop_cases()
  for (terms in list("temperature", c("temperature", "recipe"))) {
    a <- quietly(gp(terms)(cs$cake$ours))
    b <- quietly(gp(terms)(cs$cake$ref))
    expect_equal(a$predicted, b$predicted, tolerance = 1e-4)
    expect_null(a$std.error)
  }
  em <- as.data.frame(quietly(emmeans::emmeans(cs$cake$ref, ~ temperature | recipe, lmer.df = "asymptotic")))
  b <- b[order(b$group, b$x), ]
  expect_false(isTRUE(all.equal(b$std.error, em$SE, tolerance = 1e-3)))
  # with treatment contrasts they are right: emmeans' at the level held constant (where
  # ggeffects finds none for lmerTest's fit)
  ck <- lme4::cake
  ck$temperature <- factor(ck$temperature, ordered = FALSE)
  ours <- lmm(angle ~ recipe * temperature + (1 | recipe:replicate), ck)
  ref <- lmerTest::lmer(angle ~ recipe * temperature + (1 | recipe:replicate), ck)
  a <- quietly(gp("temperature")(ours))
  em <- as.data.frame(quietly(emmeans::emmeans(ref, ~ temperature, at = list(recipe = "A"), lmer.df = "asymptotic")))
  expect_equal(a$std.error, em$SE, tolerance = 1e-4)
  expect_interop(gp(c("temperature", "recipe")), list(ours = ours, ref = ref), label = "cake, treatment contrasts")
})
