# The workshop's data simulators, written in Rust (see src/rust/core/src/workshop.rs).
# Each returns a data frame with the true parameter values in attr(, "truth").
# Seeds follow R's conventions: `seed =` or set.seed() make the data reproducible.

sim_call <- function(which, params, seed) {
  with_r_seed(seed, {
    params$seed <- rust_seed()
    call_rust(sim_workshop_rs, which, params)
  })
}

#' Simulate the workshop's data sets
#'
#' `sim_repeated()`: example 1, blood pressure of women and men measured 1-4 times.
#' `sim_lines()`: example 2, SAT scores on a line in log income per school.
#' `sim_nested()`: example 3, SAT scores of students (by sex) within schools, 1-3 sittings.
#' `sim_growth()`: example 4, tree heights under three fertilisers at ages 1-4, growing
#' by a random walk around each tree's own rate.
#'
#' @param n numbers of women and men.
#' @param mean means by sex (women, men).
#' @param sd_subject,sd_school,sd_student,sd_intercept,sd_slope standard deviations of
#'   the random effects.
#' @param sd residual standard deviation (for `sim_growth()`, of the yearly increments).
#' @param reps,sittings range of measurements per subject or student.
#' @param digits rounding of the response (`NULL`: none).
#' @param seed optional seed for R's RNG (restored afterwards).
#' @param n_schools,size,students numbers of schools, students per school (range), students per sex (range).
#' @param center,sd_center,sd_x log income: overall centre, SD of school centres, SD within schools.
#' @param intercept,slope the line at the centre of log income.
#' @param x_digits rounding of log income.
#' @param trees trees per fertiliser (`NULL`: 2-4 each, drawn as the workshop does).
#' @param slopes growth rates per fertiliser.
#' @param n_ages ages 1, ..., n_ages.
#' @return a data frame with attr "truth".
#' @examples
#' d <- sim_growth(trees = 10, seed = 3)
#' head(d)
#' attr(d, "truth")
#' @name workshop_simulators
NULL

#' @rdname workshop_simulators
#' @export
sim_repeated <- function(n = c(5, 6), mean = c(F = 112, M = 128), sd_subject = 7, sd = 6, reps = c(1, 4),
                         digits = 0, seed = NULL) {
  cols <- sim_call("repeated", list(n = as.double(n), mean = as.double(mean), sd_subject = sd_subject, sd = sd,
                                    reps = as.double(reps), digits = digits), seed)
  d <- data.frame(subject = factor(cols$subject), sex = factor(c("F", "M")[cols$sex], levels = c("F", "M")),
                  bp = cols$bp)
  attr(d, "truth") <- list(fixef = c("(Intercept)" = mean[[1]], sexM = mean[[2]] - mean[[1]]),
                           sd_subject = sd_subject, sigma = sd)
  d
}

#' @rdname workshop_simulators
#' @export
sim_lines <- function(n_schools = 30, size = c(10, 15), center = 4.2, sd_center = 0.5, sd_x = 1,
                      intercept = 1050, slope = 40, sd_intercept = 75, sd_slope = 15, sd = 100,
                      digits = 0, x_digits = 2, seed = NULL) {
  cols <- sim_call("lines", list(n_schools = as.integer(n_schools), size = as.double(size), center = center,
                                 sd_center = sd_center, sd_x = sd_x, intercept = intercept, slope = slope,
                                 sd_intercept = sd_intercept, sd_slope = sd_slope, sd = sd,
                                 digits = digits, x_digits = x_digits), seed)
  d <- data.frame(school = factor(cols$school), log.income = cols$log.income, sat = cols$sat)
  # in uncentred log income the intercept is intercept - slope * center, and its SD
  # combines both random effects
  attr(d, "truth") <- list(fixef = c("(Intercept)" = intercept - slope * center, log.income = slope),
                           sd_slope = sd_slope, sd_intercept = sqrt(sd_intercept^2 + center^2 * sd_slope^2),
                           sigma = sd)
  d
}

#' @rdname workshop_simulators
#' @export
sim_nested <- function(n_schools = 4, students = c(5, 10), mean = c(F = 1055, M = 1042), sd_school = 50,
                       sd_student = 50, sittings = c(1, 3), sd = 50, digits = 0, seed = NULL) {
  cols <- sim_call("nested", list(n_schools = as.integer(n_schools), students = as.double(students),
                                  mean = as.double(mean), sd_school = sd_school, sd_student = sd_student,
                                  sittings = as.double(sittings), sd = sd, digits = digits), seed)
  d <- data.frame(school = factor(cols$school), student = factor(cols$student),
                  sex = factor(c("F", "M")[cols$sex], levels = c("F", "M")), sat = cols$sat)
  attr(d, "truth") <- list(fixef = c("(Intercept)" = mean[[1]], sexM = mean[[2]] - mean[[1]]),
                           sd_school = sd_school, sd_student = sd_student, sigma = sd)
  d
}

#' @rdname workshop_simulators
#' @export
sim_growth <- function(trees = NULL, slopes = c(A = 2.7, B = 3.0, C = 3.6), sd_slope = 0.5, sd = 0.5,
                       n_ages = 4, digits = 1, seed = NULL) {
  if (is.null(names(slopes))) names(slopes) <- LETTERS[seq_along(slopes)]
  d <- with_r_seed(seed, {
    tr <- if (is.null(trees)) sample(2:4, length(slopes), replace = TRUE) else rep_len(trees, length(slopes))
    cols <- call_rust(sim_workshop_rs, "growth", list(trees = as.double(tr), slopes = as.double(slopes),
                                                      sd_slope = sd_slope, sd = sd, n_ages = as.integer(n_ages),
                                                      digits = digits, seed = rust_seed()))
    data.frame(tree = factor(cols$tree), treatment = factor(names(slopes)[cols$treatment], levels = names(slopes)),
               age = cols$age, height = cols$height)
  })
  attr(d, "seed") <- NULL
  attr(d, "truth") <- list(fixef = stats::setNames(unname(slopes), paste0("treatment", names(slopes), ":age")),
                           sd_slope = sd_slope, sigma = sd)
  d
}
