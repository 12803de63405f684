# make demo: render the workshop and performance vignettes to HTML in the directory
# given (default demo-output/) and print where they are.
args <- commandArgs(trailingOnly = TRUE)
out <- normalizePath(if (length(args)) args[[1]] else "demo-output", mustWork = FALSE)
dir.create(out, showWarnings = FALSE, recursive = TRUE)
for (v in c("workshop", "performance")) {
  work <- tempfile("render-")
  dir.create(work)
  html <- rmarkdown::render(file.path("vignettes", paste0(v, ".Rmd")), output_dir = out,
                            intermediates_dir = work, envir = new.env(), quiet = TRUE)
  cat("Rendered", v, "vignette:", html, "\n")
}
