//! Optimisation of the profiled criterion over θ.
//!
//! θ is optimised unconstrained: the criterion depends on Λ only through ΛΛᵀ, so a
//! negative diagonal element is as good as its positive mirror and we normalise signs
//! at the end. A boundary optimum (θᵢ = 0, a singular fit) is then an interior,
//! smooth minimum, which BFGS reaches without box constraints. BFGS works on a
//! rescaled θ ([`SearchScale`]): for models whose θ are all lone standard deviations,
//! log-like beyond 0.1 and weighted by each term's number of levels. argmin's BFGS with a
//! More–Thuente (Wolfe) line search does the work. The model's criterion has an exact
//! gradient ([`crate::lmm::gradient`]); other criteria (profiles, correlation parameters)
//! fall back to central differences. Every evaluation records the best point seen, so
//! a line search that stalls in rounding noise near the optimum costs nothing.
use crate::error::{MixedError, Result};
use crate::lmm::model::LinearMixedModel;
use crate::optim::bfgs::{gradient_at, minimize_objective, norm, FitControl, Minimum, Objective, ValueOnly};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct OptimSummary {
    pub theta: Vec<f64>,
    pub criterion: f64,
    /// Evaluations of the criterion (each one factorisation).
    pub evaluations: usize,
    /// Exact gradients computed (each about one selected inverse); 0 with central differences.
    pub gradients: usize,
    pub converged: bool,
    /// Norm of the final gradient (zero components for θ fixed at the boundary).
    pub grad_norm: f64,
    pub message: String,
}

/// The scale s of [`SearchScale`]'s sinh map.
const SINH_SCALE: f64 = 0.1;

/// How the optimiser sees θ: xᵢ = wᵢ ψᵢ, with θᵢ = s·sinh(ψᵢ/s) for the elements that are
/// a standard deviation on their own (a scalar or diagonal Λ_t; `sinh`) and θᵢ = ψᵢ for
/// the rest.
///
/// - The sinh map is the identity near 0, so a boundary fit stays reachable and the
///   criterion stays even in ψᵢ; beyond s it is logarithmic. The profiled criterion
///   grows like n_levels·log θᵢ² for large θᵢ, so it is concave there and BFGS on θ
///   itself crawls down it: on InstEval (ML) θ for dept:service went from 1 to 0.085 in
///   16 of 30 iterations.
/// - The weight wᵢ ∝ √(levels of θᵢ's term) makes BFGS's first steps those of a method
///   scaled by the information about each θᵢ, which grows with its number of levels:
///   InstEval (ML) 19 → 13 gradients. The largest term has weight 1 (its first step
///   is as long as without weights).
///
/// The tolerance is still judged on ∂/∂θ.
#[derive(Debug, Clone)]
pub struct SearchScale {
    pub sinh: Vec<bool>,
    pub weight: Vec<f64>,
}

impl SearchScale {
    /// The model's scale: when every θ is a lone standard deviation, on the sinh scale,
    /// each weighted by √(levels of its term / levels of the largest term), so terms of
    /// one size leave θ's scale alone. With a full Λ among the terms, θ as it is: there
    /// the mixed scales made BFGS run away on a degenerate fit (σ → 0 with large θ) that
    /// θ's own scale handles.
    pub fn for_model(model: &LinearMixedModel) -> Self {
        let sinh = model.theta_is_lone_sd();
        if sinh.iter().any(|&s| !s) {
            return SearchScale::linear(sinh.len());
        }
        let most = model.terms.iter().map(|t| t.nlevels).max().unwrap_or(1) as f64;
        let weight = model
            .terms
            .iter()
            .flat_map(|t| std::iter::repeat((t.nlevels as f64 / most).sqrt()).take(t.theta_layout().len()))
            .collect();
        SearchScale { sinh, weight }
    }

    /// θ as it is.
    pub fn linear(n: usize) -> Self {
        SearchScale { sinh: vec![false; n], weight: vec![1.0; n] }
    }

    /// The weights of the first `along` coordinates set so that f's second difference
    /// at θ along each is 1 (where it is positive; else the weight is 1), on each one's
    /// sinh or linear map: there a unit step is about a Newton step. 1 + 2·`along`
    /// evaluations of f.
    pub fn set_unit_curvature<F: FnMut(&[f64]) -> Result<f64>>(&mut self, mut f: F, theta: &[f64], along: usize) -> Result<()> {
        let f0 = f(theta)?;
        for i in 0..along {
            let psi = if self.sinh[i] { sinh_map_inverse(theta[i]) } else { theta[i] };
            let h = 1e-3 * psi.abs().max(0.1);
            let at = |d: f64| {
                let mut t = theta.to_vec();
                t[i] = if self.sinh[i] { sinh_map(psi + d) } else { psi + d };
                t
            };
            let curv = (f(&at(h))? - 2.0 * f0 + f(&at(-h))?) / (h * h);
            self.weight[i] = if curv.is_finite() && curv > 1e-8 { curv.sqrt() } else { 1.0 };
        }
        Ok(())
    }
    fn to_theta(&self, x: &[f64], theta: &mut [f64]) {
        for (i, (t, &xi)) in theta.iter_mut().zip(x).enumerate() {
            let psi = xi / self.weight[i];
            *t = if self.sinh[i] { sinh_map(psi) } else { psi };
        }
    }
    fn to_x(&self, theta: &[f64]) -> Vec<f64> {
        theta.iter().enumerate().map(|(i, &t)| self.weight[i] * if self.sinh[i] { sinh_map_inverse(t) } else { t }).collect()
    }
    /// dθᵢ/dxᵢ
    fn slope(&self, i: usize, x: f64) -> f64 {
        let w = self.weight[i];
        if self.sinh[i] {
            sinh_map_slope(x / w) / w
        } else {
            1.0 / w
        }
    }
}

/// Where the sinh map turns linear (in units of s): θ = s·sinh(6) ≈ 20. A line search
/// on the log-like part can otherwise try θ = e^14 and more, where the factorisation
/// fails; beyond that θ it is linear again, as θ's own scale.
const SINH_LIMIT: f64 = 6.0;

/// θ = s·sinh(ψ/s), continued linearly (C¹) beyond |ψ/s| = [`SINH_LIMIT`].
fn sinh_map(psi: f64) -> f64 {
    let u = psi / SINH_SCALE;
    if u.abs() <= SINH_LIMIT {
        SINH_SCALE * u.sinh()
    } else {
        SINH_SCALE * u.signum() * (SINH_LIMIT.sinh() + SINH_LIMIT.cosh() * (u.abs() - SINH_LIMIT))
    }
}

fn sinh_map_inverse(theta: f64) -> f64 {
    let v = theta / SINH_SCALE;
    if v.abs() <= SINH_LIMIT.sinh() {
        SINH_SCALE * v.asinh()
    } else {
        SINH_SCALE * v.signum() * (SINH_LIMIT + (v.abs() - SINH_LIMIT.sinh()) / SINH_LIMIT.cosh())
    }
}

/// dθ/dψ
fn sinh_map_slope(psi: f64) -> f64 {
    (psi / SINH_SCALE).abs().min(SINH_LIMIT).cosh()
}


/// An objective over θ seen through [`SearchScale`]'s x.
struct Rescaled<'o, O: Objective + ?Sized> {
    obj: &'o mut O,
    scale: &'o SearchScale,
    theta: Vec<f64>,
}

impl<O: Objective + ?Sized> Objective for Rescaled<'_, O> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.scale.to_theta(x, &mut self.theta);
        self.obj.value(&self.theta)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        self.scale.to_theta(x, &mut self.theta);
        let g = self.obj.gradient(&self.theta)?;
        Some(g.map(|g| g.iter().zip(x).enumerate().map(|(i, (g, &xi))| g * self.scale.slope(i, xi)).collect()))
    }
    fn stop_norm(&self, x: &[f64], g: &[f64]) -> f64 {
        norm(&g.iter().zip(x).enumerate().map(|(i, (g, &xi))| g / self.scale.slope(i, xi)).collect::<Vec<_>>())
    }
    fn stop_norm_bound(&self) -> f64 {
        // |∂/∂θᵢ| = |∂/∂xᵢ| wᵢ / cosh(·) ≤ |∂/∂xᵢ| max(1, max w)
        self.scale.weight.iter().fold(1.0, |a, &w| a.max(w))
    }
    fn step_length(&self, x: &[f64], d: &[f64]) -> f64 {
        norm(&d.iter().zip(x).enumerate().map(|(i, (d, &xi))| d * self.scale.slope(i, xi)).collect::<Vec<_>>())
    }
    fn point(&self, x: &[f64]) -> Vec<f64> {
        let mut theta = vec![0.0; x.len()];
        self.scale.to_theta(x, &mut theta);
        theta
    }
    fn unit_curvature(&self) -> bool {
        self.obj.unit_curvature()
    }
}

/// [`minimize_objective`] on [`SearchScale`]'s x: starts and returns θ.
pub(crate) fn minimize_scaled<O: Objective + ?Sized>(obj: &mut O, theta0: &[f64], scale: &SearchScale, control: &FitControl) -> Result<Minimum> {
    let x0 = scale.to_x(theta0);
    let mut min = minimize_objective(&mut Rescaled { obj, scale, theta: vec![0.0; theta0.len()] }, &x0, control)?;
    let mut theta = vec![0.0; theta0.len()];
    scale.to_theta(&min.x, &mut theta);
    min.x = theta;
    Ok(min)
}

/// The model's profiled criterion over θ, with its exact gradient. The gradient at the
/// point just evaluated reuses that factor.
pub struct ThetaCriterion<'m, 'd> {
    pub model: &'m mut LinearMixedModel<'d>,
    factored_at: Option<Vec<f64>>,
}

impl<'m, 'd> ThetaCriterion<'m, 'd> {
    pub fn new(model: &'m mut LinearMixedModel<'d>) -> Self {
        ThetaCriterion { model, factored_at: None }
    }
}

impl Objective for ThetaCriterion<'_, '_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.factored_at = None;
        let v = self.model.objective(x)?;
        self.factored_at = Some(x.to_vec());
        Ok(v)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        if self.factored_at.as_deref() != Some(x) {
            if let Err(e) = self.model.update_l(x) {
                self.factored_at = None;
                return Some(Err(e));
            }
            self.factored_at = Some(x.to_vec());
        }
        // the gradient may spend the factor (see LinearMixedModel::gradient)
        self.factored_at = None;
        Some(self.model.gradient())
    }
}

/// Minimise the criterion over θ. Leaves the model's factor at the returned θ.
pub fn optimize_theta(model: &mut LinearMixedModel, control: &FitControl) -> Result<OptimSummary> {
    let start = control.start.clone().unwrap_or_else(|| model.default_start());
    if start.len() != model.ntheta() {
        return Err(MixedError::Input(format!("start has length {}, expected {}", start.len(), model.ntheta())));
    }
    let is_diag = model.theta_is_diagonal();
    let scale = SearchScale::for_model(model);
    let res = optimize_objective(&mut ThetaCriterion::new(model), &start, &is_diag, &scale, control)?;
    let mut theta = res.theta.clone();
    model.normalize_theta(&mut theta);
    // leaves the factor at θ̂ (the probes after BFGS moved it)
    let criterion = model.objective(&theta)?;
    Ok(OptimSummary { theta, criterion, evaluations: res.evaluations + 1, ..res })
}

/// The fit's optimisation of a criterion f over parameters whose `is_diag` entries are
/// diagonal elements of some Λ (f is even in each of them), searched on `scale`: BFGS,
/// then a step off
/// the edge wherever one of them sits at the stationary point 0, then exact zeros
/// for those that are nearly 0. The caller normalises signs.
pub fn optimize_with<F: FnMut(&[f64]) -> Result<f64>>(f: F, start: &[f64], is_diag: &[bool], scale: &SearchScale, control: &FitControl) -> Result<OptimSummary> {
    optimize_objective(&mut ValueOnly(f), start, is_diag, scale, control)
}

/// [`optimize_with`] for any [`Objective`].
pub fn optimize_objective<O: Objective + ?Sized>(obj: &mut O, start: &[f64], is_diag: &[bool], scale: &SearchScale, control: &FitControl) -> Result<OptimSummary> {
    let nth = start.len();
    // the probes after BFGS poll for interrupts as BFGS's evaluations do
    let mut last_check = Instant::now();
    let mut value = |obj: &mut O, x: &[f64]| -> Result<f64> {
        if let Some(check) = control.interrupt {
            if last_check.elapsed().as_millis() >= 100 {
                last_check = Instant::now();
                if check() {
                    return Err(MixedError::Interrupted);
                }
            }
        }
        obj.value(x)
    };
    let mut min = minimize_scaled(obj, start, scale, control)?;
    let mut evaluations = min.evaluations;
    let mut gradients = min.gradients;
    // A diagonal θᵢ at 0 is always stationary (the criterion is even in it), so BFGS can
    // stop there at a maximum along θᵢ. Step off the edge and restart when that
    // decreases the criterion (lme4's restart_edge does the same check).
    for _ in 0..3 {
        let mut escaped: Option<(Vec<f64>, f64)> = None;
        for i in 0..nth {
            if is_diag[i] && min.x[i].abs() < 1e-3 {
                let mut t = min.x.clone();
                t[i] = 0.05;
                evaluations += 1;
                let v = value(obj, &t)?;
                if v < min.f - 1e-10 * (1.0 + min.f.abs()) && escaped.as_ref().map_or(true, |e| v < e.1) {
                    escaped = Some((t, v));
                }
            }
        }
        match escaped {
            Some((t, _)) => {
                let again = minimize_scaled(obj, &t, scale, control)?;
                evaluations += again.evaluations;
                gradients += again.gradients;
                if again.f < min.f {
                    min = again;
                } else {
                    break;
                }
            }
            None => break,
        }
    }
    // The other way round: on small data the criterion can have an interior local
    // minimum while the boundary (a variance of exactly 0) is lower, which lme4's
    // bobyqa finds. Try each diagonal element at 0 and restart from there if lower.
    for i in 0..nth {
        if is_diag[i] && min.x[i] != 0.0 {
            let mut t = min.x.clone();
            t[i] = 0.0;
            evaluations += 1;
            let probe = value(obj, &t);
            if let Err(MixedError::Interrupted) = probe {
                return Err(MixedError::Interrupted);
            }
            if let Ok(v) = probe {
                if v < min.f - 1e-10 * (1.0 + min.f.abs()) {
                    let again = minimize_scaled(obj, &t, scale, control)?;
                    evaluations += again.evaluations;
                    gradients += again.gradients;
                    min = if again.f < v { again } else { Minimum { x: t, f: v, grad_norm: None, ..again } };
                }
            }
        }
    }
    // The far end: when a variance dwarfs the residual's (a diagonal θᵢ large) the
    // criterion is so flat there that the gradient test stops BFGS short of the
    // optimum, which lme4's bobyqa reaches; on degenerate data (σ → 0) it keeps falling
    // along the ray θ → ∞ with all the variances together. Double the large θᵢ jointly,
    // then each on its own, while that lowers the criterion, and polish from there.
    let large: Vec<usize> = (0..nth).filter(|&i| is_diag[i] && min.x[i].abs() > 10.0).collect();
    let mut directions: Vec<Vec<usize>> = Vec::new();
    if large.len() > 1 {
        directions.push(large.clone());
    }
    directions.extend(large.iter().map(|&i| vec![i]));
    for dir in directions {
        let mut best: Option<(Vec<f64>, f64)> = None;
        let mut t = min.x.clone();
        for _ in 0..10 {
            for &i in &dir {
                t[i] *= 2.0;
            }
            evaluations += 1;
            match value(obj, &t) {
                Err(MixedError::Interrupted) => return Err(MixedError::Interrupted),
                Ok(v) if v < best.as_ref().map_or(min.f, |b| b.1) - 1e-12 * (1.0 + min.f.abs()) => best = Some((t.clone(), v)),
                _ => break,
            }
        }
        if let Some((t, v)) = best {
            let again = minimize_scaled(obj, &t, scale, control)?;
            evaluations += again.evaluations;
            gradients += again.gradients;
            min = if again.f < v { again } else { Minimum { x: t, f: v, grad_norm: None, ..again } };
        }
    }
    let (converged, mut message) = (min.converged, min.message);
    // Diagonal elements that are nearly zero, at exactly zero (signs do not matter here).
    let mut theta: Vec<f64> = min.x;
    let mut grad_norm = min.grad_norm;
    let mut fbest = min.f;
    for i in 0..nth {
        if is_diag[i] && theta[i] != 0.0 && theta[i].abs() < control.boundary_tol {
            let mut t = theta.clone();
            t[i] = 0.0;
            evaluations += 1;
            let v = value(obj, &t)?;
            if v <= fbest + 1e-10 * (1.0 + fbest.abs()) {
                theta = t;
                fbest = v;
                grad_norm = None;
            }
        }
    }
    // the gradient where the search ended, unless the search left it
    let grad_norm = match grad_norm {
        Some(g) => g,
        None => {
            let (grad, e, g) = gradient_at(obj, &theta, control)?;
            evaluations += e;
            gradients += g;
            norm(&grad)
        }
    };
    if !converged {
        message = format!("{} (gradient norm {:.2e})", message, grad_norm);
    }
    Ok(OptimSummary { theta, criterion: fbest, evaluations, gradients, converged, grad_norm, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search map is C¹, odd and invertible across its linear continuation.
    #[test]
    fn sinh_map_is_smooth_and_invertible() {
        let edge = SINH_SCALE * SINH_LIMIT;
        for psi in [-3.0, -edge - 1e-9, -edge, -0.2, -1e-8, 0.0, 1e-8, 0.05, 0.3, edge, edge + 1e-9, 2.0, 40.0] {
            let t = sinh_map(psi);
            assert!((sinh_map_inverse(t) - psi).abs() < 1e-12 * (1.0 + psi.abs()), "{} -> {} -> {}", psi, t, sinh_map_inverse(t));
            assert_eq!(sinh_map(-psi), -t);
            let h = 1e-6;
            let num = (sinh_map(psi + h) - sinh_map(psi - h)) / (2.0 * h);
            assert!((num - sinh_map_slope(psi)).abs() < 1e-5 * num.abs(), "{}: {} vs {}", psi, num, sinh_map_slope(psi));
        }
        // continuous at the edge, and linear beyond it
        assert!((sinh_map(edge + 1e-12) - sinh_map(edge - 1e-12)).abs() < 1e-9);
        assert!((sinh_map(edge + 2.0) - sinh_map(edge + 1.0) - (sinh_map(edge + 1.0) - sinh_map(edge))).abs() < 1e-9);
    }
}
