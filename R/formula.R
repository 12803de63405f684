# Parsing the lme4 random-effects syntax: (x | g), (x || g), (1 | a/b), (1 | a:b).
# `||` is expanded here and only here, into the formula lme4 stores, so update(),
# ranova() and printing all see lme4's formula.

is_bar <- function(e) {
  is.call(e) && (identical(e[[1L]], as.name("|")) || identical(e[[1L]], as.name("||")))
}

is_double_bar <- function(e) is.call(e) && identical(e[[1L]], as.name("||"))

# The name of a call's function ("" for pkg::fun or other computed heads).
call_name <- function(e) if (is.name(e[[1L]])) as.character(e[[1L]]) else ""

strip_parens <- function(e) {
  while (is.call(e) && identical(e[[1L]], as.name("("))) e <- e[[2L]]
  e
}

# (x + z || g) -> ((1 | g) + (0 + x | g) + (0 + z | g)), as lme4's expandDoubleVerts:
# one term for the intercept (if any) and one per term label of the left-hand side.
expand_double_bar <- function(bar) {
  lhs_terms <- stats::terms(stats::as.formula(call("~", bar[[2L]]), env = baseenv()))
  pieces <- lapply(attr(lhs_terms, "term.labels"), function(l) call("+", 0, str2lang(l)))
  if (attr(lhs_terms, "intercept") != 0) pieces <- c(list(1), pieces)
  if (length(pieces) == 0L) mixedrs_abort(sprintf("random-effects term '%s' has no columns", deparse1(bar)))
  bars <- lapply(pieces, function(p) call("(", call("|", p, bar[[3L]])))
  Reduce(function(a, b) call("+", a, b), bars)
}

# A right-hand side with every `||` replaced by its expansion.
expand_double_verts <- function(e) {
  if (!is.call(e)) return(e)
  if (is_double_bar(e)) return(expand_double_bar(e))
  for (i in seq_along(e)[-1L]) if (!is.null(e[[i]])) e[[i]] <- expand_double_verts(e[[i]])
  e
}

# All (lhs | g) terms of an expanded right-hand side, found through `+`, `-` and
# parentheses, in formula order.
find_bars <- function(e) {
  if (!is.call(e)) return(list())
  if (identical(e[[1L]], as.name("("))) return(find_bars(strip_parens(e)))
  if (is_bar(e)) return(list(e))
  op <- call_name(e)
  if (op %in% c("+", "-")) return(unlist(lapply(as.list(e)[-1L], find_bars), recursive = FALSE))
  list()
}

# The right-hand side with every bar term removed (NULL when nothing is left).
drop_bars <- function(e) {
  if (!is.call(e)) return(e)
  if (is_bar(strip_parens(e))) return(NULL)
  op <- call_name(e)
  if (op == "(") {
    inner <- drop_bars(e[[2L]])
    if (is.null(inner)) return(NULL)
    e[[2L]] <- inner
    return(e)
  }
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

# Expand a grouping expression with `/` into its nested factors in lme4's order:
# a/b -> b:a, a; a/b/c -> c:(b:a), b:a, a.
expand_slash <- function(g) {
  if (is.call(g) && identical(g[[1L]], as.name("/"))) {
    outer <- expand_slash(g[[2L]])
    return(c(list(call(":", g[[3L]], outer[[1L]])), outer))
  }
  list(g)
}

#' Parse a mixed-model formula
#'
#' Splits an lme4-style formula into its fixed part and its random-effects terms.
#' `(x || g)` is expanded as lme4 expands it, into `(1 | g) + (0 + x | g)`;
#' `(1 | a/b)` becomes `(1 | b:a)` and `(1 | a)`, in lme4's order.
#'
#' @param formula a two-sided formula, or a string that parses to one.
#' @return a list with `response`, `fixed` (a formula), `bars` (a list of
#'   `list(lhs, group)`), `frame` (the formula for the model frame) and `expanded`
#'   (the formula with `||` expanded, which a fit reports as its formula).
#' @examples
#' str(parse_mixed_formula(y ~ x + (x | g) + (1 | h/k))$bars)
#' parse_mixed_formula(y ~ x + (x || g))$expanded
#' @export
parse_mixed_formula <- function(formula) {
  if (is.character(formula)) formula <- stats::as.formula(formula)
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    mixedrs_abort("'formula' must be a two-sided formula such as y ~ x + (1 | g)")
  }
  expanded <- formula
  expanded[[3L]] <- expand_double_verts(formula[[3L]])
  rhs <- expanded[[3L]]
  bars <- find_bars(rhs)
  if (length(bars) == 0L) {
    mixedrs_abort("No random effects terms specified in formula")
  }
  terms <- list()
  for (b in bars) {
    for (g in expand_slash(b[[3L]])) {
      terms[[length(terms) + 1L]] <- list(lhs = b[[2L]], group = g)
    }
  }
  fixed_rhs <- drop_bars(rhs)
  if (is.null(fixed_rhs)) fixed_rhs <- 1
  fixed <- expanded
  fixed[[3L]] <- fixed_rhs
  frame_formula <- expanded
  frame_formula[[3L]] <- bars_to_plus(rhs)
  list(response = formula[[2L]], fixed = fixed, bars = terms, frame = frame_formula, expanded = expanded)
}

# "lhs | group" of a parsed bar, as lme4's findbars() deparses it.
bar_text <- function(b) paste(deparse1(b$lhs), "|", deparse1(b$group))
