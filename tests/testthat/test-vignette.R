# The workshop vignette renders, and a screenshot from headless Chromium shows its
# plots and tables (make setup installs chromium and pandoc; without them this fails).

vignette_source <- function(name) {
  f <- test_path("..", "..", "vignettes", paste0(name, ".Rmd"))
  if (!file.exists(f)) skip("the vignettes' sources are not beside the tests (installed tests)")
  normalizePath(f)
}

render_html <- function(name) {
  work <- tempfile("vignette-")
  dir.create(work)
  html <- rmarkdown::render(vignette_source(name), output_dir = work, intermediates_dir = work,
                            envir = new.env(), quiet = TRUE)
  list(html = html, dir = work)
}

chromium <- function(...) {
  exe <- Sys.which("chromium")
  if (!nzchar(exe)) stop("chromium is not installed (make setup installs Debian's chromium)")
  out <- suppressWarnings(system2(exe, c("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                         "--disable-dev-shm-usage", ...), stdout = TRUE, stderr = FALSE))
  out
}

# Pixel counts of a headless-Chromium screenshot of an HTML page, optionally with
# the elements `hide` names made invisible (their space kept).
screenshot_stats <- function(html, hide = NULL) {
  page <- html
  if (!is.null(hide)) {
    page <- tempfile(fileext = ".html", tmpdir = dirname(html))
    lines <- readLines(html, warn = FALSE)
    lines <- sub("</head>", sprintf("<style>%s { visibility: hidden !important; }</style></head>", hide), lines, fixed = TRUE)
    writeLines(lines, page)
  }
  shot <- tempfile(fileext = ".png", tmpdir = dirname(html))
  chromium("--window-size=1000,30000", paste0("--screenshot=", shot), paste0("file://", page))
  if (!file.exists(shot)) stop("chromium wrote no screenshot")
  img <- png::readPNG(shot)
  red <- img[, , 1]; green <- img[, , 2]; blue <- img[, , 3]
  hi <- pmax(red, green, blue)
  lo <- pmin(red, green, blue)
  ink <- lo < 0.9
  list(height = diff(range(which(rowSums(ink) > 0))), ink = sum(ink), colour = sum(hi - lo > 0.35),
       rules = sum(rowSums(hi < 0.4) > 300), file = shot)
}

# The text of an HTML page: tags dropped, entities decoded.
page_text <- function(dom) {
  text <- gsub("<[^>]+>", "", dom)
  entities <- c("&lt;" = "<", "&gt;" = ">", "&quot;" = "\"", "&#39;" = "'", "&amp;" = "&")
  for (e in names(entities)) text <- gsub(e, entities[[e]], text, fixed = TRUE)
  text
}

test_that("the workshop vignette shows its plots and tables in headless Chromium", {
  r <- render_html("workshop")
  on.exit(unlink(r$dir, recursive = TRUE))
  url <- paste0("file://", r$html)

  dom <- paste(chromium("--dump-dom", url), collapse = "\n")
  images <- regmatches(dom, gregexpr("<img[^>]*src=\"data:image/png;base64,", dom))[[1]]
  tables <- regmatches(dom, gregexpr("<table", dom))[[1]]
  expect_gte(length(images), 8)   # profiles, caterpillars, residuals, bootstrap, growth curves
  expect_gte(length(tables), 10)  # compare_fits() and truth tables
  text <- page_text(dom)
  for (call in c("compare_fits(m1, ref1)", "confint(m1, oldNames = FALSE)", "ranova(m2, reduce.terms = FALSE)",
                 "intervals(m4)$reStruct$tree", "contrast(e4$emmeans, list(c(-.5, -.5, 1)))",
                 "corRandomWalk(~ age | tree)", "simulate(m3, 1e5", "confint(m_speed, level = 0.99)",
                 "emtrends(m_chick")) {
    expect_true(grepl(call, text, fixed = TRUE), label = call)
  }
  expect_false(grepl("#> Error", text, fixed = TRUE))

  # Screenshots of the whole page, as rendered and with the images (then the tables)
  # hidden: what the plots and tables add must be visible on the page
  full <- screenshot_stats(r$html)
  expect_gt(full$height, 15000)   # the whole page, not a blank or error page
  no_plots <- screenshot_stats(r$html, hide = "img")
  no_tables <- screenshot_stats(r$html, hide = "table")
  expect_gt(full$colour - no_plots$colour, 5000)    # coloured lines and points of the plots (~10,000 px)
  expect_gt(full$ink - no_plots$ink, 60000)      # everything the plots draw (~130,000 px)
  expect_gte(full$rules - no_tables$rules, 40)      # the tables' horizontal rules (~115 rows)
})

test_that("the performance vignette shows the benchmark table and the scaling plot", {
  r <- render_html("performance")
  on.exit(unlink(r$dir, recursive = TRUE))
  dom <- paste(chromium("--dump-dom", paste0("file://", r$html)), collapse = "\n")
  expect_gte(length(regmatches(dom, gregexpr("<table", dom))[[1]]), 2)
  expect_gte(length(regmatches(dom, gregexpr("<img[^>]*src=\"data:image/png", dom))[[1]]), 1)
  expect_true(grepl("B2 500k rows", dom, fixed = TRUE))
})
