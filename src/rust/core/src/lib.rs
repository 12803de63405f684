//! mixedrs-core: linear mixed models by the profiled deviance of Bates et al. (2015),
//! organised like MixedModels.jl. No R here; the binding crate converts.
//!
//! - [`linalg`]: the blocks of the factor and the kernels between them, the symbolic
//!   factorisation, the selected inverse;
//! - [`lmm`]: one random-effects term ([`ReTerm`]), the model ([`LinearMixedModel`],
//!   with `update_l`), its exact gradient, the θ policy of the optimiser, the fit;
//! - [`optim`]: a BFGS minimiser that knows nothing of mixed models;
//! - [`inference`]: second derivatives for Satterthwaite's df, profiles, tail areas;
//! - [`residuals`]: correlated residuals and variance functions;
//! - [`simulate`]: simulation and the parametric bootstrap.
pub mod engine;
pub mod error;
pub mod inference;
pub mod linalg;
pub mod lmm;
pub mod optim;
pub mod residuals;
pub mod glmm;
pub mod simulate;

pub use engine::{CorFit, Engine, EngineFit, Residuals};
pub use error::{MixedError, Result};
pub use inference::profile::{profile_confint, profile_confint_scaled, ProfileResult};
pub use inference::varpar::{varpar_derivatives, varpar_derivatives_richardson, VarparDerivatives};
pub use lmm::fit::{fit, Fit};
pub use lmm::model::LinearMixedModel;
pub use lmm::optimize::OptimSummary;
pub use lmm::reterm::{Codes, CovForm, ReTerm};
pub use optim::bfgs::{minimize, FitControl, Minimum};
pub use residuals::correlation::{fit_correlated, CorKind, CorStruct, CorrelatedFit, CorrelatedModel};
pub use residuals::variance::{VarFunc, VarPart};
pub use glmm::{fit_glmm, profile_ends, refit_responses, Approximation, Family, GeneralizedLinearMixedModel, GlmmFit, Link};
pub use simulate::{bootstrap, simulate, simulate_design, simulate_design_with, BootControl, BootResult, BootType, Design, ErrorStructure, FittedParams};
