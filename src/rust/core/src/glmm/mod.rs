//! Generalized linear mixed models: PIRLS on the blocked structure of
//! [`LinearMixedModel`], the Laplace approximation to the deviance, and the two stages
//! of glmer (θ with β in PIRLS, then θ and β together), and glmer's adaptive
//! Gauss–Hermite deviance for a single scalar term.
pub mod bootstrap;
pub mod family;
pub mod gradient;
pub mod pirls;
pub mod profile;

pub use bootstrap::refit_responses;
pub use family::{Family, Link};
pub use pirls::{fit_glmm, Approximation, GeneralizedLinearMixedModel, GlmmFit};
pub use profile::profile_ends;
