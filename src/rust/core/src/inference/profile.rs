//! Likelihood-profile confidence intervals, as lme4's `profile()` + `confint()` define
//! them, but solving for the interval ends directly instead of tabulating the profile
//! and interpolating it with splines.
//!
//! Like lme4, profiles use the ML deviance. The variance parameters are profiled on
//! the standard-deviation/correlation scale φ = (sd, cor per term in θ's layout, then σ),
//! with σ explicit in the deviance; each fixed effect βⱼ is profiled by moving xⱼβⱼ
//! into the response and re-optimising θ. ζ(x) = sign(x − x̂)·√(dev(x) − dev̂), and
//! the interval ends solve ζ(x) = ±z.
use crate::error::{MixedError, Result};
use crate::lmm::model::LinearMixedModel;
use crate::lmm::optimize::optimize_theta;
use crate::optim::bfgs::{minimize, FitControl};
use crate::lmm::reterm::{CovForm, ReTerm};
use std::borrow::Cow;

/// Kind of each element of φ, which fixes its range and the inner transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParKind {
    Sd,
    Cor,
    Sigma,
}

/// What a profile minimises: a model's ML deviance at θ (σ profiled out) or at (θ, σ),
/// with [`Profiled::n_extra`] more parameters the model owns (a residual structure's η,
/// last in every inner vector), and the refits a fixed effect's profile needs.
pub trait Profiled<'d>: Sized {
    /// The (whitened) blocks: θ's layout and the factor's state.
    fn lmm(&self) -> &LinearMixedModel<'d>;
    fn n_extra(&self) -> usize {
        0
    }
    /// The ML criterion at θ with σ profiled out.
    fn criterion(&mut self, theta: &[f64], extra: &[f64]) -> Result<f64>;
    /// The ML deviance at (θ, σ).
    fn deviance(&mut self, theta: &[f64], sigma: f64, extra: &[f64]) -> Result<f64>;
    /// The same model without fixed-effect column j.
    fn without_column(&self, j: usize) -> Result<Self>;
    /// The response and X on the data scale (X column-major).
    fn data(&self) -> (&[f64], &[f64]);
    fn set_y(&mut self, y: &[f64]) -> Result<()>;
    /// The ML minimum over [θ, extra] from `control.start`, and where it is.
    fn optimum(&mut self, control: &FitControl) -> Result<(f64, Vec<f64>)>;
}

/// X without column j (column-major, n rows, p columns).
pub(crate) fn drop_column(x: &[f64], n: usize, p: usize, j: usize) -> Vec<f64> {
    (0..p).filter(|&a| a != j).flat_map(|a| x[a * n..(a + 1) * n].iter().copied()).collect()
}

impl<'d> Profiled<'d> for LinearMixedModel<'d> {
    fn lmm(&self) -> &LinearMixedModel<'d> {
        self
    }
    fn criterion(&mut self, theta: &[f64], _: &[f64]) -> Result<f64> {
        self.objective(theta)
    }
    fn deviance(&mut self, theta: &[f64], sigma: f64, _: &[f64]) -> Result<f64> {
        self.deviance_at(theta, sigma, false)
    }
    fn without_column(&self, j: usize) -> Result<Self> {
        let xdrop = drop_column(&self.x, self.n, self.p, j);
        LinearMixedModel::new(self.terms.clone(), xdrop, self.p - 1, self.y.to_vec(), self.weights().map(|w| Cow::Owned(w.to_vec())), false)
    }
    fn data(&self) -> (&[f64], &[f64]) {
        (&self.y, &self.x)
    }
    fn set_y(&mut self, y: &[f64]) -> Result<()> {
        self.set_response(y)
    }
    fn optimum(&mut self, control: &FitControl) -> Result<(f64, Vec<f64>)> {
        let opt = optimize_theta(self, control)?;
        Ok((opt.criterion, opt.theta))
    }
}

/// φ's kinds, from the model's θ layout, with σ last.
pub fn sdcor_kinds(model: &LinearMixedModel) -> Vec<ParKind> {
    let mut k: Vec<ParKind> = model
        .terms
        .iter()
        .flat_map(|t| t.theta_layout().iter().map(|&(i, j)| if i == j { ParKind::Sd } else { ParKind::Cor }).collect::<Vec<_>>())
        .collect();
    k.push(ParKind::Sigma);
    k
}

/// θ and σ to φ (lme4's `Cv_to_Sv`): per term C = ΛΛᵀ, sd = σ√Cⱼⱼ, cor = Cᵢⱼ/√(CᵢᵢCⱼⱼ).
pub fn theta_to_sdcor(model: &LinearMixedModel, theta: &[f64], sigma: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(theta.len() + 1);
    let mut off = 0;
    for t in &model.terms {
        let k = t.k;
        let nth = t.ntheta();
        let mut lam = vec![0.0; k * k];
        t.fill_lambda(&theta[off..off + nth], &mut lam);
        let c = |i: usize, j: usize| (0..k).map(|a| lam[i + a * k] * lam[j + a * k]).sum::<f64>();
        for &(i, j) in t.theta_layout() {
            if i == j {
                out.push(sigma * c(i, i).sqrt());
            } else {
                let d = (c(i, i) * c(j, j)).sqrt();
                out.push(if d > 0.0 { c(i, j) / d } else { 0.0 });
            }
        }
        off += nth;
    }
    out.push(sigma);
    out
}

/// One term's θ from its relative standard deviations (sd/σ) and k×k correlation
/// matrix: Λ = chol(D R D). The factorisation tolerates semidefinite C (a zero sd, or
/// |cor| = 1) by zeroing the dependent column, and errors when R is indefinite.
pub fn term_theta(t: &ReTerm, sd: &[f64], cor: &[f64]) -> Result<Vec<f64>> {
    let k = t.k;
    let mut l = vec![0.0; k * k];
    for j in 0..k {
        let d = sd[j] * sd[j] - (0..j).map(|a| l[j + a * k] * l[j + a * k]).sum::<f64>();
        if d < -1e-10 * (sd[j] * sd[j]).max(1e-300) {
            return Err(MixedError::Numerical("correlation matrix is not positive semidefinite".into()));
        }
        let ljj = d.max(0.0).sqrt();
        l[j + j * k] = ljj;
        for i in j + 1..k {
            let cij = sd[i] * sd[j] * cor[i + j * k];
            let s = cij - (0..j).map(|a| l[i + a * k] * l[j + a * k]).sum::<f64>();
            l[i + j * k] = if ljj > 1e-12 * sd[j].abs().max(1e-300) { s / ljj } else { 0.0 };
        }
    }
    // a diagonal term's θ is just sd/σ (its sign is irrelevant)
    Ok(t.theta_layout()
        .iter()
        .map(|&(i, j)| if i == j && t.cov == CovForm::Diagonal { sd[i] } else { l[i + j * k] })
        .collect())
}

/// One term's relative sds and correlation matrix (k×k) from its θ.
pub fn term_sdcor(t: &ReTerm, theta: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let k = t.k;
    let mut lam = vec![0.0; k * k];
    t.fill_lambda(theta, &mut lam);
    let c = |i: usize, j: usize| (0..k).map(|a| lam[i + a * k] * lam[j + a * k]).sum::<f64>();
    let sd: Vec<f64> = (0..k).map(|i| c(i, i).sqrt()).collect();
    let mut cor = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            let d = sd[i] * sd[j];
            cor[i + j * k] = if i == j { 1.0 } else if d > 0.0 { c(i, j) / d } else { 0.0 };
        }
    }
    (sd, cor)
}

/// φ to θ (lme4's `Sv_to_Cv`).
pub fn sdcor_to_theta(model: &LinearMixedModel, phi: &[f64]) -> Result<(Vec<f64>, f64)> {
    let sigma = *phi.last().ok_or_else(|| MixedError::Input("empty parameter vector".into()))?;
    let mut theta = Vec::with_capacity(phi.len() - 1);
    let mut off = 0;
    for t in &model.terms {
        let k = t.k;
        let layout = t.theta_layout();
        let mut sd = vec![0.0; k];
        let mut cor = vec![0.0; k * k];
        for d in 0..k {
            cor[d + d * k] = 1.0;
        }
        for (&(i, j), &v) in layout.iter().zip(&phi[off..off + layout.len()]) {
            if i == j {
                sd[i] = v / sigma;
            } else {
                cor[i + j * k] = v;
                cor[j + i * k] = v;
            }
        }
        theta.extend(term_theta(t, &sd, &cor)?);
        off += layout.len();
    }
    Ok((theta, sigma))
}

/// One end of an interval, from the estimate outward until ζ = target.
struct Side {
    est: f64,
    target: f64,
    lower: f64,
    upper: f64,
}

/// Solve ζ(x) = target on one side of the estimate. `zeta` returns ζ at x. `scale` is a
/// first guess of the x change per unit ζ. Returns the bound if ζ cannot reach the
/// target before it, and NaN if the profile flattens out.
fn solve_side<F: FnMut(f64) -> Result<f64>>(side: &Side, scale: f64, mut zeta: F) -> Result<f64> {
    let dir = side.target.signum();
    let clamp = |x: f64| x.max(side.lower).min(side.upper);
    // (x, ζ) known points; start at the estimate with ζ = 0
    let (mut x0, mut z0) = (side.est, 0.0);
    let mut x1 = clamp(side.est + dir * scale.abs().max(1e-8) * side.target.abs());
    if x1 == side.est {
        return Ok(side.est);
    }
    let mut z1 = zeta(x1)?;
    let mut bracket: Option<(f64, f64, f64, f64)> = None; // (x_in, z_in, x_out, z_out)
    for _ in 0..60 {
        // ζ within 1e-6 puts the end within ~1e-6 standard errors of the root
        if (z1 - side.target).abs() < 1e-6 {
            return Ok(x1);
        }
        if (z1 - side.target) * dir >= 0.0 {
            bracket = Some(match bracket {
                Some((xi, zi, _, _)) => (xi, zi, x1, z1),
                None => (x0, z0, x1, z1),
            });
        } else if let Some((_, _, xo, zo)) = bracket {
            bracket = Some((x1, z1, xo, zo));
        } else if x1 == side.lower || x1 == side.upper {
            return Ok(x1);
        }
        let next = match bracket {
            Some((xi, zi, xo, zo)) => {
                if (xo - xi).abs() <= 1e-10 * (xi.abs() + xo.abs()).max(1e-10) {
                    return Ok(0.5 * (xi + xo));
                }
                // regula falsi, with a bisection guard
                let t = (side.target - zi) / (zo - zi);
                let t = if t.is_finite() { t.clamp(0.05, 0.95) } else { 0.5 };
                xi + t * (xo - xi)
            }
            None => {
                // secant through the last two points, at most ten times the last step
                let slope = (z1 - z0) / (x1 - x0);
                let step = if slope.is_finite() && slope * dir * (x1 - x0).signum() > 0.0 && slope != 0.0 {
                    (side.target - z1) / slope
                } else {
                    2.0 * (x1 - x0)
                };
                let cap = 10.0 * (x1 - x0).abs();
                clamp(x1 + step.clamp(-cap, cap))
            }
        };
        x0 = x1;
        z0 = z1;
        x1 = next;
        z1 = zeta(x1)?;
    }
    Ok(f64::NAN)
}

fn inner_control() -> FitControl {
    FitControl { grad_tol: 1e-9, max_iter: 200, max_restarts: 2, ..FitControl::default() }
}

/// Profile intervals. `model` must be an ML model. Returns the ML optimum's θ, the
/// estimates φ̂ and β̂, and one (lower, upper) per element of [φ, β] listed in `which`
/// (0-based, φ first).
pub struct ProfileResult {
    pub theta_ml: Vec<f64>,
    pub deviance: f64,
    pub estimates: Vec<f64>,
    pub intervals: Vec<(f64, f64)>,
}

pub fn profile_confint(model: &mut LinearMixedModel, z: f64, which: &[usize], control: &FitControl) -> Result<ProfileResult> {
    profile_confint_scaled(model, z, which, control, false)
}

/// [`profile_confint`], with the correlations profiled as covariances (σ² ΛΛᵀ's
/// off-diagonal elements; lme4's `prof.scale = "varcov"`) when `covariances` is set.
/// Standard deviations are profiled as they are: a variance's profile is the sd's squared.
/// A model with a residual structure re-optimises its η inside every profile point.
pub fn profile_confint_scaled<'d, M: Profiled<'d>>(model: &mut M, z: f64, which: &[usize], control: &FitControl, covariances: bool) -> Result<ProfileResult> {
    if model.lmm().reml {
        return Err(MixedError::Input("profiles use the ML deviance; build the model with REML = FALSE".into()));
    }
    let (base, at) = model.optimum(control)?;
    let nth = model.lmm().ntheta();
    let (theta_hat, extra_hat) = at.split_at(nth);
    model.criterion(theta_hat, extra_hat)?;
    let lmm = model.lmm();
    let sigma = lmm.sigma();
    let beta = lmm.beta();
    let vcov = lmm.vcov_unscaled();
    let p = lmm.p;
    let mut phi_hat = theta_to_sdcor(lmm, theta_hat, sigma);
    let kinds = sdcor_kinds(lmm);
    let nphi = phi_hat.len();
    if covariances {
        for w in 0..nphi {
            if kinds[w] == ParKind::Cor {
                phi_hat[w] = covariance_of(lmm, theta_hat, sigma, w);
            }
        }
    }
    let mut estimates = phi_hat.clone();
    estimates.extend(&beta);
    let mut intervals = Vec::with_capacity(which.len());
    for &w in which {
        if w >= estimates.len() {
            return Err(MixedError::Input(format!("parameter index {} is out of range", w + 1)));
        }
        let iv = if w < nphi && covariances && kinds[w] == ParKind::Cor {
            profile_covariance(model, theta_hat, extra_hat, sigma, &phi_hat, w, base, z)?
        } else if w < nphi {
            profile_varpar(model, theta_hat, extra_hat, &phi_hat, &kinds, w, base, z)?
        } else {
            let j = w - nphi;
            let se = (vcov[j + j * p]).sqrt() * sigma;
            profile_fixef(model, &at, beta[j], se, j, base, z)?
        };
        intervals.push(iv);
    }
    model.criterion(theta_hat, extra_hat)?;
    Ok(ProfileResult { theta_ml: theta_hat.to_vec(), deviance: base, estimates, intervals })
}

/// Where φ_w sits: its term and (row, column) in that term's Λ, or σ.
enum Target {
    Sigma,
    Sd { term: usize, row: usize },
    Cor { term: usize, row: usize, col: usize },
}

fn locate(model: &LinearMixedModel, w: usize) -> Target {
    let mut off = 0;
    for (ti, t) in model.terms.iter().enumerate() {
        let lay = t.theta_layout();
        if w < off + lay.len() {
            let (i, j) = lay[w - off];
            return if i == j { Target::Sd { term: ti, row: i } } else { Target::Cor { term: ti, row: i, col: j } };
        }
        off += lay.len();
    }
    Target::Sigma
}

/// The profiled deviance at φ_w = x, minimised over a parametrisation that keeps the
/// inner problem as well scaled as the fit itself:
/// * σ fixed: minimise dev(θ, x) over θ;
/// * an sd fixed: minimise over θ with σ = x/‖row of Λ‖ (so sd = x exactly);
/// * a correlation fixed: that term by its relative sds and other correlations
///   (through tanh), other terms by θ, with σ profiled out as in the fit.
struct VarparProfile<'a, 'd, M: Profiled<'d>> {
    model: &'a mut M,
    terms: Vec<ReTerm<'d>>,
    target: Target,
    offsets: Vec<usize>,
}

impl<'d, M: Profiled<'d>> VarparProfile<'_, 'd, M> {
    fn inner_start(&self, theta: &[f64]) -> Vec<f64> {
        match self.target {
            Target::Cor { term, row, col } => {
                let t = &self.terms[term];
                let (o0, o1) = (self.offsets[term], self.offsets[term + 1]);
                let (sd, cor) = term_sdcor(t, &theta[o0..o1]);
                let mut v: Vec<f64> = theta[..o0].to_vec();
                v.extend(&sd);
                for &(i, j) in t.theta_layout() {
                    if i != j && !(i == row && j == col) {
                        v.push(cor[i + j * t.k].clamp(-0.999999, 0.999999).atanh());
                    }
                }
                v.extend(&theta[o1..]);
                v
            }
            Target::Sd { term, row } => {
                // σ = x/‖row of Λ‖, so the row must not start at zero (a singular fit's
                // sd at its bound): start it small, where x's first steps put σ near σ̂
                let t = &self.terms[term];
                let o0 = self.offsets[term];
                let mut v = theta.to_vec();
                let norm: f64 = t.theta_layout().iter().enumerate().filter(|(_, &(i, _))| i == row).map(|(a, _)| v[o0 + a] * v[o0 + a]).sum::<f64>().sqrt();
                if !(norm > 1e-12) {
                    if let Some(a) = t.theta_layout().iter().position(|&(i, j)| i == row && j == row) {
                        v[o0 + a] = 3e-4;
                    }
                }
                v
            }
            _ => theta.to_vec(),
        }
    }

    /// θ (and σ, when it is not profiled out) from the inner parameters at φ_w = x.
    fn theta_of(&self, inner: &[f64], x: f64) -> Result<(Vec<f64>, Option<f64>)> {
        match self.target {
            Target::Sigma => Ok((inner.to_vec(), Some(x))),
            Target::Sd { term, row } => {
                let t = &self.terms[term];
                let mut theta = inner.to_vec();
                let o0 = self.offsets[term];
                if x == 0.0 {
                    // the sd at its bound: that row of Λ is zero and σ is free again
                    for (a, &(i, _)) in t.theta_layout().iter().enumerate() {
                        if i == row {
                            theta[o0 + a] = 0.0;
                        }
                    }
                    return Ok((theta, None));
                }
                let norm = t
                    .theta_layout()
                    .iter()
                    .enumerate()
                    .filter(|(_, &(i, _))| i == row)
                    .map(|(a, _)| theta[o0 + a] * theta[o0 + a])
                    .sum::<f64>()
                    .sqrt();
                if !(norm > 1e-12) {
                    return Err(MixedError::Numerical("relative sd is zero".into()));
                }
                Ok((theta, Some(x / norm)))
            }
            Target::Cor { term, row, col } => {
                let t = &self.terms[term];
                let k = t.k;
                let o0 = self.offsets[term];
                // sds enter by absolute value: a negative sd would flip the sign of the
                // fixed correlation's effect
                let sd: Vec<f64> = inner[o0..o0 + k].iter().map(|v| v.abs()).collect();
                let mut cor = vec![0.0; k * k];
                let mut a = o0 + k;
                for &(i, j) in t.theta_layout() {
                    if i == j {
                        cor[i + i * k] = 1.0;
                    } else {
                        let v = if i == row && j == col {
                            x
                        } else {
                            a += 1;
                            inner[a - 1].tanh()
                        };
                        cor[i + j * k] = v;
                        cor[j + i * k] = v;
                    }
                }
                let mut theta = inner[..o0].to_vec();
                theta.extend(term_theta(t, &sd, &cor)?);
                theta.extend(&inner[a..]);
                Ok((theta, None))
            }
        }
    }

    fn deviance(&mut self, inner: &[f64], x: f64) -> Result<f64> {
        let (core, extra) = inner.split_at(inner.len() - self.model.n_extra());
        let (theta, sigma) = self.theta_of(core, x)?;
        let d = match sigma {
            Some(s) => self.model.deviance(&theta, s, extra)?,
            None => self.model.criterion(&theta, extra)?,
        };
        if d.is_finite() {
            Ok(d)
        } else {
            Err(MixedError::Numerical("deviance is not finite".into()))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn profile_varpar<'d, M: Profiled<'d>>(model: &mut M, theta_hat: &[f64], extra_hat: &[f64], phi_hat: &[f64], kinds: &[ParKind], w: usize, base: f64, z: f64) -> Result<(f64, f64)> {
    let (lower, upper) = match kinds[w] {
        ParKind::Sd | ParKind::Sigma => (0.0, f64::INFINITY),
        ParKind::Cor => (-1.0, 1.0),
    };
    let terms = model.lmm().terms.clone();
    let mut offsets = vec![0];
    for t in &terms {
        offsets.push(offsets.last().copied().unwrap_or(0) + t.ntheta());
    }
    let target = locate(model.lmm(), w);
    let mut prof = VarparProfile { model, terms, target, offsets };
    let mut start0 = prof.inner_start(theta_hat);
    start0.extend(extra_hat);
    let ctl = inner_control();
    let scale = match kinds[w] {
        ParKind::Cor => 0.1,
        _ => 0.15 * phi_hat[w].abs().max(1e-3 * phi_hat[phi_hat.len() - 1]),
    };
    let mut ends = [f64::NAN; 2];
    for (e, target) in [-z, z].into_iter().enumerate() {
        // warm start: the previous inner optimum on this side
        let mut start = start0.clone();
        let side = Side { est: phi_hat[w], target, lower, upper };
        ends[e] = solve_side(&side, scale, |x| {
            let m = minimize(|inner: &[f64]| prof.deviance(inner, x), &start, &ctl)?;
            start = m.x;
            Ok((x - phi_hat[w]).signum() * (m.f - base).max(0.0).sqrt())
        })?;
    }
    Ok((ends[0], ends[1]))
}

/// σ² (ΛΛᵀ)ᵢⱼ of the correlation φ_w sits on.
fn covariance_of(model: &LinearMixedModel, theta: &[f64], sigma: f64, w: usize) -> f64 {
    match locate(model, w) {
        Target::Cor { term, row, col } => {
            let off: usize = model.terms[..term].iter().map(|t| t.ntheta()).sum();
            let t = &model.terms[term];
            let mut lam = vec![0.0; t.k * t.k];
            t.fill_lambda(&theta[off..off + t.ntheta()], &mut lam);
            sigma * sigma * (0..t.k).map(|a| lam[row + a * t.k] * lam[col + a * t.k]).sum::<f64>()
        }
        _ => f64::NAN,
    }
}

/// The profile of a covariance c = σ² sᵢ sⱼ ρᵢⱼ (s the relative sds). With c fixed, the
/// inner problem runs over log σ, the logs of the term's relative sds except sⱼ, |ρᵢⱼ|
/// through a logistic map (its sign is c's), the term's other correlations through
/// tanh and the other terms' θ; sⱼ = |c| / (σ² sᵢ |ρᵢⱼ|) follows. Every inner point is
/// then a model, so the search can approach |ρᵢⱼ| = 1, where a fit with a correlation
/// of ±1 has its optimum. At c = 0 exactly, ρᵢⱼ = 0 and sⱼ is free.
#[allow(clippy::too_many_arguments)]
fn profile_covariance<'d, M: Profiled<'d>>(model: &mut M, theta_hat: &[f64], extra_hat: &[f64], sigma_hat: f64, phi_hat: &[f64], w: usize, base: f64, z: f64) -> Result<(f64, f64)> {
    let (term, row, col) = match locate(model.lmm(), w) {
        Target::Cor { term, row, col } => (term, row, col),
        _ => return Err(MixedError::internal("profile", "a covariance profile needs a correlation")),
    };
    let terms = &model.lmm().terms;
    let o0: usize = terms[..term].iter().map(|t| t.ntheta()).sum();
    let o1 = o0 + terms[term].ntheta();
    let t = terms[term].clone();
    let n_extra = model.n_extra();
    let k = t.k;
    let (sd, cor) = term_sdcor(&t, &theta_hat[o0..o1]);
    let floor = 1e-3;
    // inner = [θ before | log s (k, sⱼ's slot unused unless c = 0) | logit |ρ| | atanh of
    //          the other correlations | θ after | log σ]
    let mut start: Vec<f64> = theta_hat[..o0].to_vec();
    start.extend(sd.iter().map(|v| v.max(floor).ln()));
    let rho_hat = cor[row + col * k].abs().clamp(0.01, 0.99);
    start.push((rho_hat / (1.0 - rho_hat)).ln());
    for &(i, j) in t.theta_layout() {
        if i != j && !(i == row && j == col) {
            start.push(cor[i + j * k].clamp(-0.999999, 0.999999).atanh());
        }
    }
    start.extend(&theta_hat[o1..]);
    start.push(sigma_hat.ln());
    start.extend(extra_hat);
    let ntail = theta_hat.len() - o1;
    let mut deviance = |inner: &[f64], x: f64| -> Result<f64> {
        let (inner, extra) = inner.split_at(inner.len() - n_extra);
        let m = inner.len();
        let sigma = inner[m - 1].exp();
        let mut s: Vec<f64> = inner[o0..o0 + k].iter().map(|v| v.exp()).collect();
        let mut a = o0 + k;
        let rho_abs = 1.0 / (1.0 + (-inner[a]).exp());
        a += 1;
        let rho = if x == 0.0 { 0.0 } else { rho_abs * x.signum() };
        if x != 0.0 {
            s[col] = x.abs() / (sigma * sigma * s[row] * rho_abs);
        }
        let mut c = vec![0.0; k * k];
        for &(i, j) in t.theta_layout() {
            if i == j {
                c[i + i * k] = 1.0;
            } else {
                let v = if i == row && j == col {
                    rho
                } else {
                    a += 1;
                    inner[a - 1].tanh()
                };
                c[i + j * k] = v;
                c[j + i * k] = v;
            }
        }
        let th_term = match term_theta(&t, &s, &c) {
            Ok(v) => v,
            Err(_) => return Ok(1e300),
        };
        let mut theta = inner[..o0].to_vec();
        theta.extend(th_term);
        theta.extend(&inner[a..a + ntail]);
        let d = model.deviance(&theta, sigma, extra)?;
        Ok(if d.is_finite() { d } else { 1e300 })
    };
    let ctl = inner_control();
    let scale = 0.15 * phi_hat[w].abs().max(1e-3 * sigma_hat * sigma_hat);
    let mut ends = [f64::NAN; 2];
    for (e, target) in [-z, z].into_iter().enumerate() {
        let mut inner = start.clone();
        let side = Side { est: phi_hat[w], target, lower: f64::NEG_INFINITY, upper: f64::INFINITY };
        ends[e] = solve_side(&side, scale, |x| {
            let m = minimize(|v: &[f64]| deviance(v, x), &inner, &ctl)?;
            inner = m.x;
            Ok((x - phi_hat[w]).signum() * (m.f - base).max(0.0).sqrt())
        })?;
    }
    Ok((ends[0], ends[1]))
}

/// βⱼ fixed at b: xⱼb moves into the response of the model without column j, whose
/// ML criterion is minimised over θ (and η) from the last point found on this side.
fn profile_fixef<'d, M: Profiled<'d>>(model: &M, start: &[f64], est: f64, se: f64, j: usize, base: f64, z: f64) -> Result<(f64, f64)> {
    let n = model.lmm().n;
    let (y0, x) = model.data();
    let xj: Vec<f64> = x[j * n..(j + 1) * n].to_vec();
    let y0 = y0.to_vec();
    let mut mj = model.without_column(j)?;
    let mut ctl = inner_control();
    let mut ends = [f64::NAN; 2];
    let mut y = y0.clone();
    for (e, target) in [-z, z].into_iter().enumerate() {
        ctl.start = Some(start.to_vec());
        let side = Side { est, target, lower: f64::NEG_INFINITY, upper: f64::INFINITY };
        ends[e] = solve_side(&side, se, |b| {
            for o in 0..n {
                y[o] = y0[o] - b * xj[o];
            }
            mj.set_y(&y)?;
            let (criterion, at) = mj.optimum(&ctl)?;
            ctl.start = Some(at);
            Ok((b - est).signum() * (criterion - base).max(0.0).sqrt())
        })?;
    }
    Ok((ends[0], ends[1]))
}
