# Simulators for the workshop's examples 1-3, written from the mechanisms in
# shared/workshop.md. Each returns a data frame with the truth in attr(, "truth").

sim_bp <- function(seed = 1) {
  set.seed(seed)
  sex <- factor(c(rep("F", 5), rep("M", 6)), levels = c("F", "M"))
  mu <- ifelse(sex == "F", 112, 128)
  b <- rnorm(11, 0, 7)
  reps <- sample(1:4, 11, replace = TRUE)
  subject <- factor(rep(seq_len(11), reps))
  i <- as.integer(subject)
  d <- data.frame(subject = subject, sex = sex[i],
                  bp = round(mu[i] + b[i] + rnorm(length(i), 0, 6)))
  attr(d, "truth") <- list(fixef = c("(Intercept)" = 112, sexM = 16), sd_subject = 7, sigma = 6)
  d
}

sim_sat_lines <- function(seed = 2) {
  set.seed(seed)
  nsch <- 30
  size <- sample(10:15, nsch, replace = TRUE)
  school <- factor(rep(seq_len(nsch), size))
  i <- as.integer(school)
  center <- rnorm(nsch, 4.2, 0.5)
  x <- round(rnorm(length(i), center[i], 1), 2)
  a <- rnorm(nsch, 0, 75)
  s <- rnorm(nsch, 0, 15)
  sat <- round((1050 + a[i]) + (40 + s[i]) * (x - 4.2) + rnorm(length(i), 0, 100))
  d <- data.frame(school = school, log.income = x, sat = sat)
  # intercept at x = 0 is (1050 - 40*4.2) + a - 4.2 s
  attr(d, "truth") <- list(fixef = c("(Intercept)" = 1050 - 40 * 4.2, log.income = 40),
                           sd_slope = 15, sd_intercept = sqrt(75^2 + 4.2^2 * 15^2), sigma = 100)
  d
}

sim_sat_nested <- function(seed = 3) {
  set.seed(seed)
  rows <- list()
  sid <- 0L
  for (sch in 1:4) {
    a <- rnorm(1, 0, 50)
    for (sx in c("F", "M")) {
      for (j in seq_len(sample(5:10, 1))) {
        sid <- sid + 1L
        b <- rnorm(1, 0, 50)
        k <- sample(1:3, 1)
        mu <- if (sx == "F") 1055 else 1042
        rows[[length(rows) + 1L]] <- data.frame(
          school = sch, student = sid, sex = sx,
          sat = round(mu + a + b + rnorm(k, 0, 50)))
      }
    }
  }
  d <- do.call(rbind, rows)
  d$school <- factor(d$school)
  d$student <- factor(d$student)
  d$sex <- factor(d$sex, levels = c("F", "M"))
  attr(d, "truth") <- list(fixef = c("(Intercept)" = 1055, sexM = -13), sd_school = 50, sd_student = 50, sigma = 50)
  d
}

# Example 4: trees under three fertilisers, heights at ages 1-4 that grow by a
# random walk: each year adds the tree's slope plus an independent N(0, 0.5^2) shock.
# `trees` is the number of trees per fertiliser (the workshop draws 2-4).
sim_growth <- function(trees = NULL, seed = 3, round_to = 1) {
  set.seed(seed)
  slopes <- c(A = 2.7, B = 3.0, C = 3.6)
  if (is.null(trees)) trees <- sample(2:4, 3, replace = TRUE)
  trees <- rep_len(trees, 3)
  treatment <- factor(rep(names(slopes), trees), levels = names(slopes))
  ntree <- length(treatment)
  slope <- slopes[as.character(treatment)] + rnorm(ntree, 0, 0.5)
  rows <- lapply(seq_len(ntree), function(i) {
    h <- cumsum(slope[i] + rnorm(4, 0, 0.5))
    data.frame(tree = i, treatment = treatment[i], age = 1:4,
               height = if (is.null(round_to)) h else round(h, round_to))
  })
  d <- do.call(rbind, rows)
  d$tree <- factor(d$tree)
  attr(d, "truth") <- list(fixef = c("treatmentA:age" = 2.7, "treatmentB:age" = 3.0, "treatmentC:age" = 3.6),
                           sd_slope = 0.5, sigma = 0.5)
  d
}
