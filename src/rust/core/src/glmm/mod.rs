//! Generalized linear mixed models: PIRLS on the blocked structure of
//! [`LinearMixedModel`], the Laplace approximation to the deviance, and the two stages
//! of glmer (θ with β in PIRLS, then θ and β together).
pub mod family;
pub mod pirls;

pub use family::{Family, Link};
pub use pirls::{fit_glmm, GeneralizedLinearMixedModel, GlmmFit};
