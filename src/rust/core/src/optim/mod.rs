//! General optimisation, independent of the model.
pub mod bfgs;

pub use bfgs::{minimize, minimize_objective, FitControl, Minimum, Objective, ValueOnly};
