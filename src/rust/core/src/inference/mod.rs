//! Inference after the fit: exact second derivatives for Satterthwaite's df
//! ([`hessian`], assembled by [`varpar`]), likelihood profiles ([`profile`]) and the
//! tail areas of t, F and χ² ([`distributions`]).
pub mod distributions;
pub mod hessian;
pub mod profile;
pub mod varpar;
