//! mixedrs-core: linear mixed models by the profiled deviance of Bates et al. (2015),
//! organised like MixedModels.jl. No R here; the binding crate converts.
pub mod blocks;
pub mod correlation;
pub mod dense;
pub mod distributions;
pub mod error;
pub mod fit;
pub mod gradient;
pub mod hessian;
pub mod model;
pub mod optimize;
pub mod profile;
pub mod reterm;
pub mod selinv;
pub mod simulate;
pub mod structure;
pub mod varpar;
pub mod workshop;

pub use correlation::{fit_correlated, CorKind, CorStruct, CorrelatedFit, CorrelatedModel};
pub use error::{MixedError, Result};
pub use fit::{fit, Fit};
pub use model::LinearMixedModel;
pub use optimize::{minimize, FitControl, Minimum, OptimSummary};
pub use profile::{profile_confint, profile_confint_scaled, ProfileResult};
pub use varpar::{varpar_derivatives, varpar_derivatives_richardson, VarparDerivatives};
pub use reterm::{CovForm, ReTerm};
pub use simulate::{bootstrap, simulate, simulate_fixed, BootControl, BootResult, BootType, FittedParams};
