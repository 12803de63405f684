//! Packaging a fitted model: everything R needs, computed once at θ̂.
use crate::error::Result;
use crate::lmm::model::LinearMixedModel;
use crate::lmm::optimize::{optimize_theta, OptimSummary};
use crate::optim::bfgs::FitControl;
use crate::lmm::reterm::ReTerm;

#[derive(Debug, Clone)]
pub struct Fit {
    pub optim: OptimSummary,
    pub beta: Vec<f64>,
    pub sigma: f64,
    /// Conditional modes per term, level-major.
    pub b: Vec<Vec<f64>>,
    pub u: Vec<Vec<f64>>,
    /// σ²(R_X R_Xᵀ)⁻¹, p×p column-major.
    pub vcov_beta: Vec<f64>,
    pub ldl2: f64,
    pub ldrx2: f64,
    pub pwrss: f64,
    /// REML criterion or ML deviance, whichever was optimised.
    pub criterion: f64,
    /// Fitted values Xβ + Zb (without any offset).
    pub fitted: Vec<f64>,
}

/// Optimise (or, with `optimize = false`, evaluate at `control.start`) and package.
pub fn fit(model: &mut LinearMixedModel, control: &FitControl, optimize: bool) -> Result<Fit> {
    let optim = if optimize {
        optimize_theta(model, control)?
    } else {
        let theta = control.start.clone().unwrap_or_else(|| model.theta_start());
        let criterion = model.objective(&theta)?;
        OptimSummary { theta, criterion, evaluations: 1, gradients: 0, converged: true, grad_norm: f64::NAN, message: "evaluated at the given theta".into() }
    };
    let parts = model.parts();
    let sigma = model.sigma();
    let beta = model.beta();
    let u = model.u();
    let b = model.b_from_u(&u);
    let vcov_beta = model.vcov_unscaled().into_iter().map(|v| v * sigma * sigma).collect();
    let fitted = fitted_values(&model.x, model.n, &model.terms, &beta, &b);
    Ok(Fit {
        criterion: optim.criterion,
        optim,
        beta,
        sigma,
        b,
        u,
        vcov_beta,
        ldl2: parts.ldl2,
        ldrx2: parts.ldrx2,
        pwrss: parts.pwrss,
        fitted,
    })
}

/// Xβ + Zb for n rows.
pub fn fitted_values(x: &[f64], n: usize, terms: &[ReTerm], beta: &[f64], b: &[Vec<f64>]) -> Vec<f64> {
    let mut mu = x_beta(x, n, beta);
    add_zb(terms, n, b, &mut mu);
    mu
}

/// Xβ for n rows (X column-major).
pub fn x_beta(x: &[f64], n: usize, beta: &[f64]) -> Vec<f64> {
    let mut mu = vec![0.0; n];
    for (a, &ba) in beta.iter().enumerate() {
        for (m, x) in mu.iter_mut().zip(&x[a * n..(a + 1) * n]) {
            *m += x * ba;
        }
    }
    mu
}

/// mu += Zb, for per-term b (level-major).
pub fn add_zb(terms: &[ReTerm], n: usize, b: &[Vec<f64>], mu: &mut [f64]) {
    for (t, bt) in terms.iter().zip(b) {
        for o in 0..n {
            let lev = t.codes.get(o);
            for a in 0..t.k {
                mu[o] += t.z[o + a * n] * bt[lev * t.k + a];
            }
        }
    }
}
