# sjPlot's tab_model() on lmm fits, live against lmerTest::lmer (nlme::lme with
# correlated residuals): the same table, each number within 1e-4 relative (or the
# last printed digit).
skip_if_not_installed("sjPlot")

table_cells <- function(m) {
  html <- sjPlot::tab_model(m)$knitr
  cells <- regmatches(html, gregexpr(">[^<>]*<", html))[[1]]
  cells <- trimws(gsub("[<>]", "", cells))
  cells[nzchar(cells)]
}

test_that("tab_model() shows the table lmerTest's fit gets", {
  for (nm in names(interop_cases())) {
    cs <- interop_cases()[[nm]]
    a <- quietly(table_cells(cs$ours))
    b <- quietly(table_cells(cs$ref))
    expect_identical(length(a), length(b), label = nm)
    num <- suppressWarnings(as.numeric(b))
    # labels and formatted text equal; numbers to the digits shown
    expect_identical(a[is.na(num)], b[is.na(num)], label = nm)
    shown <- !is.na(num)
    expect_equal(as.numeric(a[shown]), num[shown], tolerance = 1e-4, label = nm)
  }
})
