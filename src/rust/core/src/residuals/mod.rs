//! Residual structures beyond independent errors: correlation within groups.
pub mod correlation;
