//! Derivatives over the variance parameters (θ, σ) that Satterthwaite's df need:
//! the Hessian of the deviance and the Jacobian of Var(β̂) = σ²(R_XᵀR_X)⁻¹.
//!
//! The deviance is D(θ) + P(θ)/σ² + n′ log 2πσ², with D = log|L_θ|² (+ log|R_X|² for
//! REML), P the PWRSS and n′ = n (ML) or n − p (REML). Everything in σ is analytic;
//! the derivatives of D, P and U = (R_XᵀR_X)⁻¹ over θ are exact
//! ([`crate::inference::hessian`]), except the log-determinant rows of a term whose Λ has a
//! zero on its diagonal, which are central differences of the exact gradient.
//! [`varpar_derivatives_richardson`] differentiates the same pieces numerically (central
//! differences at three steps with Richardson extrapolation): the tests' reference,
//! and the method for correlated residuals, whose η derivatives are numeric.
use crate::error::Result;
use crate::lmm::model::LinearMixedModel;

#[derive(Debug, Clone)]
pub struct VarparDerivatives {
    /// Hessian of the deviance over (θ, σ), (k+1)×(k+1) column-major.
    pub hessian: Vec<f64>,
    /// ∂Var(β̂)/∂(θ, σ): k+1 matrices, each p×p column-major.
    pub jacobian: Vec<Vec<f64>>,
    /// Var(β̂) at (θ, σ).
    pub vcov: Vec<f64>,
}

/// [D, P, U…] at θ.
fn pieces(model: &mut LinearMixedModel, theta: &[f64], reml: bool) -> Result<Vec<f64>> {
    model.update_l(theta)?;
    Ok(pieces_now(model, reml, 0.0))
}

/// [D, P, U…] from the model's current factor; `extra_logdet` is added to D.
pub fn pieces_now(model: &LinearMixedModel, reml: bool, extra_logdet: f64) -> Vec<f64> {
    let c = model.parts();
    let mut v = Vec::with_capacity(2 + model.p * model.p);
    v.push(c.ldl2 - model.log_det_w + extra_logdet + if reml { c.ldrx2 } else { 0.0 });
    v.push(c.pwrss);
    v.extend(model.vcov_unscaled());
    v
}

/// Richardson extrapolation of central differences computed at h, h/2, h/4.
fn richardson(d: [Vec<f64>; 3]) -> Vec<f64> {
    let r1 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (4.0 * y - x) / 3.0).collect::<Vec<f64>>();
    let a = r1(&d[0], &d[1]);
    let b = r1(&d[1], &d[2]);
    a.iter().zip(&b).map(|(x, y)| (16.0 * y - x) / 15.0).collect()
}

fn step(theta: f64, levels: usize) -> f64 {
    if levels == 1 {
        1e-3 * theta.abs().max(0.05)
    } else {
        1e-2 * theta.abs().max(0.05)
    }
}

/// The exact derivatives at (θ, σ); the factor is left at θ.
pub fn varpar_derivatives(model: &mut LinearMixedModel, theta: &[f64], sigma: f64, reml: bool) -> Result<VarparDerivatives> {
    if reml != model.reml {
        return Err(crate::error::MixedError::Input("the model's REML setting differs from the one asked for".into()));
    }
    model.ensure_factor(theta)?;
    let d = model.piece_derivatives()?;
    let k = theta.len();
    let (n, p) = (model.n, model.p);
    let nprime = if reml { (n - p) as f64 } else { n as f64 };
    let s2 = sigma * sigma;
    let n1 = k + 1;
    let mut hessian = vec![0.0; n1 * n1];
    for i in 0..k {
        for j in 0..k {
            hessian[i + j * n1] = d.logdet_hessian[i + j * k] + d.pwrss_hessian[i + j * k] / s2;
        }
        let cross = -2.0 * d.pwrss_gradient[i] / (s2 * sigma);
        hessian[i + k * n1] = cross;
        hessian[k + i * n1] = cross;
    }
    hessian[k + k * n1] = 6.0 * d.pwrss / (s2 * s2) - 2.0 * nprime / s2;
    let mut jacobian: Vec<Vec<f64>> = d.vcov_jacobian.iter().map(|j| j.iter().map(|v| v * s2).collect()).collect();
    jacobian.push(d.vcov.iter().map(|v| 2.0 * sigma * v).collect());
    Ok(VarparDerivatives { hessian, jacobian, vcov: d.vcov.iter().map(|v| v * s2).collect() })
}

/// Central differences at h, h/2, h/4 with Richardson extrapolation (error O(h⁶)).
pub fn varpar_derivatives_richardson(model: &mut LinearMixedModel, theta: &[f64], sigma: f64, reml: bool) -> Result<VarparDerivatives> {
    derivatives(model, theta, sigma, reml, 3)
}

fn derivatives(model: &mut LinearMixedModel, theta: &[f64], sigma: f64, reml: bool, levels: usize) -> Result<VarparDerivatives> {
    // the numeric pieces: D, P and U as functions of θ
    let (p, n) = (model.p, model.n);
    let d = derivatives_with(|t| pieces(model, t, reml), theta, sigma, p, n, reml, levels);
    // leave the factor at θ for whoever asks next
    model.update_l(theta)?;
    d
}

/// The derivatives for any parametrisation `vars` of the variance (θ, then any
/// correlation parameters): `pieces(vars)` returns [D, P, U…] there.
pub fn derivatives_with<F: FnMut(&[f64]) -> Result<Vec<f64>>>(
    mut pieces: F,
    theta: &[f64],
    sigma: f64,
    p: usize,
    n: usize,
    reml: bool,
    levels: usize,
) -> Result<VarparDerivatives> {
    let k = theta.len();
    let nprime = if reml { (n - p) as f64 } else { n as f64 };
    let f0 = pieces(theta)?;
    let m = f0.len();
    let mut first: Vec<Vec<f64>> = Vec::with_capacity(k); // ∂/∂θᵢ of all pieces
    let mut second = vec![0.0; 2 * k * k]; // ∂²D and ∂²P, k×k each
    let mut t = theta.to_vec();
    for i in 0..k {
        let h0 = step(theta[i], levels);
        let mut d1: [Vec<f64>; 3] = Default::default();
        let mut d2: [Vec<f64>; 3] = Default::default();
        for (lvl, h) in [h0, h0 / 2.0, h0 / 4.0].into_iter().take(levels).enumerate() {
            t[i] = theta[i] + h;
            let fp = pieces(&t)?;
            t[i] = theta[i] - h;
            let fm = pieces(&t)?;
            t[i] = theta[i];
            d1[lvl] = (0..m).map(|a| (fp[a] - fm[a]) / (2.0 * h)).collect();
            d2[lvl] = (0..2).map(|a| (fp[a] - 2.0 * f0[a] + fm[a]) / (h * h)).collect();
        }
        first.push(if levels == 1 { d1[0].clone() } else { richardson(d1) });
        let s = if levels == 1 { d2[0].clone() } else { richardson(d2) };
        second[i + i * k] = s[0];
        second[k * k + i + i * k] = s[1];
    }
    for i in 0..k {
        for j in 0..i {
            let (hi0, hj0) = (step(theta[i], levels), step(theta[j], levels));
            let mut d: [Vec<f64>; 3] = Default::default();
            for (lvl, div) in [1.0, 2.0, 4.0].into_iter().take(levels).enumerate() {
                let (hi, hj) = (hi0 / div, hj0 / div);
                let mut corner = |si: f64, sj: f64| -> Result<Vec<f64>> {
                    t[i] = theta[i] + si * hi;
                    t[j] = theta[j] + sj * hj;
                    let v = pieces(&t);
                    t[i] = theta[i];
                    t[j] = theta[j];
                    v.map(|v| v[..2].to_vec())
                };
                let (pp, pm, mp, mm) = (corner(1.0, 1.0)?, corner(1.0, -1.0)?, corner(-1.0, 1.0)?, corner(-1.0, -1.0)?);
                d[lvl] = (0..2).map(|a| (pp[a] - pm[a] - mp[a] + mm[a]) / (4.0 * hi * hj)).collect();
            }
            let s = if levels == 1 { d[0].clone() } else { richardson(d) };
            for (a, v) in s.into_iter().enumerate() {
                second[a * k * k + i + j * k] = v;
                second[a * k * k + j + i * k] = v;
            }
        }
    }
    let s2 = sigma * sigma;
    let n1 = k + 1;
    let mut hessian = vec![0.0; n1 * n1];
    for i in 0..k {
        for j in 0..k {
            hessian[i + j * n1] = second[i + j * k] + second[k * k + i + j * k] / s2;
        }
        let cross = -2.0 * first[i][1] / (s2 * sigma);
        hessian[i + k * n1] = cross;
        hessian[k + i * n1] = cross;
    }
    hessian[k + k * n1] = 6.0 * f0[1] / (s2 * s2) - 2.0 * nprime / s2;
    let u = &f0[2..];
    let mut jacobian: Vec<Vec<f64>> = first.iter().map(|d| d[2..].iter().map(|v| v * s2).collect()).collect();
    jacobian.push(u.iter().map(|v| 2.0 * sigma * v).collect());
    Ok(VarparDerivatives { hessian, jacobian, vcov: u.iter().map(|v| v * s2).collect() })
}
