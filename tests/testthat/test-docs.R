# man/ is what roxygen2 makes of the comments in R/ (make docs), so the Rd files
# and their examples never drift from the code.

test_that("man/ matches the roxygen comments in R/", {
  root <- test_path("..", "..")
  if (!file.exists(file.path(root, "DESCRIPTION")) || !dir.exists(file.path(root, "man"))) {
    skip("the package sources are not beside the tests (installed tests)")
  }
  skip_if_not_installed("roxygen2")
  copy <- file.path(tempfile("docs-"), "mixedrs")
  dir.create(copy, recursive = TRUE)
  on.exit(unlink(dirname(copy), recursive = TRUE))
  file.copy(file.path(root, c("DESCRIPTION", "NAMESPACE", "R")), copy, recursive = TRUE)
  dir.create(file.path(copy, "man"))
  # a fresh R process, as make docs runs it: which generics roxygen2 recognises
  # depends on the packages loaded
  status <- system2(file.path(R.home("bin"), "Rscript"),
                    c("-e", shQuote(sprintf("roxygen2::roxygenise('%s', load_code = 'source')", copy))),
                    env = "LC_COLLATE=C", stdout = FALSE, stderr = FALSE)
  expect_identical(status, 0L)
  ours <- sort(list.files(file.path(root, "man")))
  expect_identical(sort(list.files(file.path(copy, "man"))), ours)
  for (f in ours) {
    expect_identical(readLines(file.path(copy, "man", f)), readLines(file.path(root, "man", f)), label = f)
  }
})
