# Parsing the lme4 random-effects syntax: (x | g), (x || g), (1 | a/b), (1 | a:b).

is_bar <- function(e) {
  is.call(e) && (identical(e[[1L]], as.name("|")) || identical(e[[1L]], as.name("||")))
}

strip_parens <- function(e) {
  while (is.call(e) && identical(e[[1L]], as.name("("))) e <- e[[2L]]
  e
}

# All (lhs | g) terms of a right-hand side, found through `+`, `-` and parentheses.
find_bars <- function(e) {
  if (!is.call(e)) return(list())
  if (identical(e[[1L]], as.name("("))) {
    inner <- strip_parens(e)
    if (is_bar(inner)) return(list(inner))
    return(find_bars(inner))
  }
  if (is_bar(e)) return(list(e))
  op <- as.character(e[[1L]])
  if (op %in% c("+", "-")) return(unlist(lapply(as.list(e)[-1L], find_bars), recursive = FALSE))
  list()
}

# The right-hand side with every bar term removed (NULL when nothing is left).
drop_bars <- function(e) {
  if (!is.call(e)) return(e)
  if (is_bar(strip_parens(e))) return(NULL)
  op <- as.character(e[[1L]])
  if (op %in% c("+", "-") && length(e) == 3L) {
    l <- drop_bars(e[[2L]])
    r <- drop_bars(e[[3L]])
    if (is.null(l) && is.null(r)) return(NULL)
    if (is.null(r)) return(l)
    if (is.null(l)) return(if (op == "-") e else r)
    e[[2L]] <- l
    e[[3L]] <- r
    return(e)
  }
  e
}

# The right-hand side with every `|` and `||` replaced by `+`, for model.frame.
bars_to_plus <- function(e) {
  if (!is.call(e)) return(e)
  if (is_bar(e)) e[[1L]] <- as.name("+")
  for (i in seq_along(e)[-1L]) if (!is.null(e[[i]])) e[[i]] <- bars_to_plus(e[[i]])
  e
}

# Expand a grouping expression with `/` into its nested factors: a/b -> a, b:a.
expand_slash <- function(g) {
  if (is.call(g) && identical(g[[1L]], as.name("/"))) {
    outer <- expand_slash(g[[2L]])
    inner <- g[[3L]]
    last <- outer[[length(outer)]]
    return(c(outer, list(call(":", inner, last))))
  }
  list(g)
}

#' Parse a mixed-model formula
#'
#' Splits an lme4-style formula into its fixed part and its random-effects terms.
#' `(x || g)` is marked `double = TRUE`; `(1 | a/b)` becomes `(1 | a) + (1 | b:a)`.
#'
#' @param formula a two-sided formula, or a string that parses to one.
#' @return a list with `response`, `fixed` (a formula) and `bars`, a list of
#'   `list(lhs, group, double)`.
#' @examples
#' str(parse_mixed_formula(y ~ x + (x | g) + (1 | h/k)))
#' @export
parse_mixed_formula <- function(formula) {
  if (is.character(formula)) formula <- stats::as.formula(formula)
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    mixedrs_abort("'formula' must be a two-sided formula such as y ~ x + (1 | g)")
  }
  rhs <- formula[[3L]]
  bars <- find_bars(rhs)
  if (length(bars) == 0L) {
    mixedrs_abort("No random effects terms specified in formula")
  }
  terms <- list()
  for (b in bars) {
    double <- identical(b[[1L]], as.name("||"))
    for (g in expand_slash(b[[3L]])) {
      terms[[length(terms) + 1L]] <- list(lhs = b[[2L]], group = g, double = double)
    }
  }
  fixed_rhs <- drop_bars(rhs)
  if (is.null(fixed_rhs)) fixed_rhs <- 1
  fixed <- formula
  fixed[[3L]] <- fixed_rhs
  frame_formula <- formula
  frame_formula[[3L]] <- bars_to_plus(rhs)
  list(response = formula[[2L]], fixed = fixed, bars = terms, frame = frame_formula)
}
