//! The linear mixed model: its terms, the blocked system and `update_l`, the exact
//! gradient, the θ policy of the optimiser and the packaged fit.
pub mod conditioning;
pub mod fit;
pub mod gradient;
pub mod model;
pub mod optimize;
pub mod reterm;
pub mod start;
