//! Residual structures beyond independent errors: correlation within groups, and
//! variance functions.
pub mod correlation;
mod gradient;
pub mod variance;
