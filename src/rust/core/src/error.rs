//! Typed errors of the core. The binding turns each kind into a classed R condition.
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum MixedError {
    /// The inputs are inconsistent (lengths, codes, dimensions).
    Input(String),
    /// A factorization or the criterion failed numerically.
    Numerical(String),
    /// The optimizer stopped before meeting its tolerances.
    NotConverged(String),
    /// The caller's interrupt check (Ctrl-C in R) asked to stop.
    Interrupted,
    /// Not available for this kind of model (yet).
    NotAvailable(String),
}

impl MixedError {
    /// Short tag that the R side maps to a condition class.
    pub fn kind(&self) -> &'static str {
        match self {
            MixedError::Input(_) => "input",
            MixedError::Numerical(_) => "numerical",
            MixedError::NotConverged(_) => "convergence",
            MixedError::Interrupted => "interrupted",
            MixedError::NotAvailable(_) => "not_available",
        }
    }
    /// A broken invariant of the blocked storage (a block where none can be, or of the
    /// wrong kind): reported as a numerical failure naming the part that found it.
    pub(crate) fn internal(part: &str, what: &str) -> Self {
        MixedError::Numerical(format!("internal error in {part}: {what}"))
    }
    pub fn message(&self) -> &str {
        match self {
            MixedError::Input(m) | MixedError::Numerical(m) | MixedError::NotConverged(m) | MixedError::NotAvailable(m) => m,
            MixedError::Interrupted => "interrupted by the user",
        }
    }
}

impl fmt::Display for MixedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind(), self.message())
    }
}

impl std::error::Error for MixedError {}

pub type Result<T> = std::result::Result<T, MixedError>;
