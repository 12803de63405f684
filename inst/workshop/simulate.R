# The workshop's examples 1-3 with the seeds the demo and the tests use. The
# simulators themselves are the package's (written in Rust): sim_repeated(),
# sim_lines(), sim_nested() and sim_growth().
sim_bp <- function(seed = 1) mixedrs::sim_repeated(seed = seed)
sim_sat_lines <- function(seed = 2) mixedrs::sim_lines(seed = seed)
sim_sat_nested <- function(seed = 3) mixedrs::sim_nested(seed = seed)
sim_growth <- mixedrs::sim_growth
