//! Profile intervals of a GLMM's parameters, as lme4's `confint(method = "profile")`:
//! for each of [φ, β] (φ: each term's standard deviations and correlations, lme4's
//! `.sig01`, … in θ's layout; σ = 1), the values on either side of the optimum at which
//! the deviance minimised over the other parameters rises by `cutoff`
//! (qchisq(level, 1)). Each end is found on the signed square root
//! ζ(v) = ±√(dev(v) − dev_min), which is close to linear in v, by expanding a bracket
//! and then the Illinois false-position rule.
use super::pirls::{Approximation, GeneralizedLinearMixedModel};
use crate::error::{MixedError, Result};
use crate::inference::profile::{term_sdcor, term_theta, theta_to_sdcor};
use crate::lmm::optimize::{optimize_with, SearchScale};
use crate::lmm::reterm::{CovForm, ReTerm};
use crate::optim::bfgs::FitControl;

/// How the parameters other than the profiled one are searched.
enum Inner {
    /// The profiled parameter is a coordinate of [θ, β] itself (a β, or the θ of a
    /// scalar or diagonal term, which is its standard deviation); the rest of [θ, β]
    /// is free.
    Direct,
    /// A standard deviation or correlation of a term with correlations: that term by
    /// its other standard deviations and the atanh of its other correlations, the
    /// other terms by θ, and β.
    SdCor { term: usize, o0: usize, o1: usize, at: usize },
}

/// The profiled parameter `i` of [φ, β] and the map from the free parameters to [θ, β].
struct Target<'a, 'd> {
    terms: &'a [ReTerm<'d>],
    nth: usize,
    i: usize,
    inner: Inner,
}

impl<'a, 'd> Target<'a, 'd> {
    fn new(terms: &'a [ReTerm<'d>], nth: usize, i: usize) -> Self {
        let mut o0 = 0;
        for (ti, t) in terms.iter().enumerate() {
            let o1 = o0 + t.ntheta();
            if i < o1 {
                let inner = if t.k > 1 && t.cov == CovForm::Full { Inner::SdCor { term: ti, o0, o1, at: i - o0 } } else { Inner::Direct };
                return Target { terms, nth, i, inner };
            }
            o0 = o1;
        }
        Target { terms, nth, i, inner: Inner::Direct }
    }

    /// The free parameters at the optimum [θ̂, β̂], and which of them are standard
    /// deviations (for the boundary probes at 0).
    fn start(&self, x_hat: &[f64]) -> (Vec<f64>, Vec<bool>) {
        match self.inner {
            Inner::Direct => {
                let rest = (0..x_hat.len()).filter(|&j| j != self.i).map(|j| x_hat[j]).collect();
                let diag = (0..x_hat.len()).filter(|&j| j != self.i).map(|j| j < self.nth && self.is_sd(j)).collect();
                (rest, diag)
            }
            Inner::SdCor { term, o0, o1, at } => {
                let t = &self.terms[term];
                let (sd, cor) = term_sdcor(t, &x_hat[o0..o1]);
                let mut rest: Vec<f64> = x_hat[..o0].to_vec();
                let mut diag: Vec<bool> = (0..o0).map(|j| self.is_sd(j)).collect();
                for (a, &(r, c)) in t.theta_layout().iter().enumerate() {
                    if a == at {
                        continue;
                    }
                    if r == c {
                        rest.push(sd[r]);
                        diag.push(true);
                    } else {
                        rest.push(cor[r + c * t.k].clamp(-0.999999, 0.999999).atanh());
                        diag.push(false);
                    }
                }
                rest.extend(&x_hat[o1..]);
                diag.extend((o1..x_hat.len()).map(|j| j < self.nth && self.is_sd(j)));
                (rest, diag)
            }
        }
    }

    /// Whether θ coordinate j is a diagonal element of its Λ.
    fn is_sd(&self, j: usize) -> bool {
        let mut o0 = 0;
        for t in self.terms {
            if j < o0 + t.ntheta() {
                let (r, c) = t.theta_layout()[j - o0];
                return r == c;
            }
            o0 += t.ntheta();
        }
        false
    }

    /// [θ, β] from the free parameters with the profiled one at v.
    fn full(&self, rest: &[f64], v: f64) -> Result<Vec<f64>> {
        match self.inner {
            Inner::Direct => {
                let mut x = Vec::with_capacity(rest.len() + 1);
                x.extend_from_slice(&rest[..self.i]);
                x.push(v);
                x.extend_from_slice(&rest[self.i..]);
                Ok(x)
            }
            Inner::SdCor { term, o0, at, .. } => {
                let t = &self.terms[term];
                let k = t.k;
                let mut sd = vec![0.0; k];
                let mut cor = vec![0.0; k * k];
                let mut next = o0;
                for (a, &(r, c)) in t.theta_layout().iter().enumerate() {
                    let val = if a == at {
                        v
                    } else {
                        next += 1;
                        // sds by absolute value: a negative sd would flip the sign of the
                        // correlations' effect
                        if r == c { rest[next - 1].abs() } else { rest[next - 1].tanh() }
                    };
                    if r == c {
                        sd[r] = val;
                        cor[r + r * k] = 1.0;
                    } else {
                        cor[r + c * k] = val;
                        cor[c + r * k] = val;
                    }
                }
                let mut x = rest[..o0].to_vec();
                x.extend(term_theta(t, &sd, &cor)?);
                x.extend_from_slice(&rest[next..]);
                Ok(x)
            }
        }
    }

    /// The profiled parameter's bounds: [0, ∞) for a standard deviation, [−1, 1] for
    /// a correlation, none for β.
    fn bounds(&self) -> (f64, f64) {
        if self.i >= self.nth {
            return (f64::NEG_INFINITY, f64::INFINITY);
        }
        if self.is_sd(self.i) {
            (0.0, f64::INFINITY)
        } else {
            (-1.0, 1.0)
        }
    }
}

/// The deviance with the profiled parameter at `v`, minimised over the others from
/// `rest` (updated to the minimiser, the next call's start).
fn profiled(m: &mut GeneralizedLinearMixedModel, target: &Target, v: f64, rest: &mut Vec<f64>, diag: &[bool], approx: Approximation, control: &FitControl) -> Result<f64> {
    let nth = target.nth;
    let mut dev = |r: &[f64]| -> Result<f64> {
        let x = target.full(r, v)?;
        m.deviance_at(&x[..nth], &x[nth..], approx)
    };
    if rest.is_empty() {
        return dev(rest);
    }
    let scale = SearchScale::linear(rest.len());
    let res = optimize_with(dev, rest, diag, &scale, control)?;
    *rest = res.theta.clone();
    Ok(res.criterion)
}

/// Lower and upper ends for the parameters `which` (0-based) of [φ, β] at the optimum `x_hat` = [θ̂, β̂]
/// (φ: the standard deviations and correlations of each term in θ's layout). `step` is
/// a first step per parameter (a standard error where one is known; NaN: half the
/// estimate, at least 0.1). A standard
/// deviation whose profile stays below the cutoff down to 0 gets 0 as its lower end, a
/// correlation that stays below it up to ±1 gets ±1; an end the search cannot bracket
/// is NaN.
#[allow(clippy::too_many_arguments)]
pub fn profile_ends(m: &mut GeneralizedLinearMixedModel, x_hat: &[f64], dev_min: f64, nth: usize, step: &[f64], cutoff: f64, which: &[usize], approx: Approximation, control: &FitControl) -> Result<Vec<[f64; 2]>> {
    let k = x_hat.len();
    if step.len() != k {
        return Err(MixedError::Input("one first step per parameter is needed".into()));
    }
    if let Some(w) = which.iter().find(|&&w| w >= k) {
        return Err(MixedError::Input(format!("parameter index {} is out of range", w + 1)));
    }
    let terms = m.terms.clone();
    let mut phi_hat = theta_to_sdcor(m.working_model(), &x_hat[..nth], 1.0);
    phi_hat.pop(); // σ: none in a GLMM
    phi_hat.extend(&x_hat[nth..]);
    let target_zeta = cutoff.sqrt();
    let u_hat = m.u.clone();
    let mut out = Vec::with_capacity(which.len());
    for &i in which {
        let target = Target::new(&terms, nth, i);
        let (lower, upper) = target.bounds();
        let mut ends = [f64::NAN; 2];
        for (side, dir) in [-1.0f64, 1.0].iter().enumerate() {
            m.u = u_hat.clone();
            let (mut rest, diag) = target.start(x_hat);
            let zeta = |m: &mut GeneralizedLinearMixedModel, v: f64, rest: &mut Vec<f64>| -> Result<f64> {
                let d = profiled(m, &target, v, rest, &diag, approx, control)?;
                Ok(dir * (d - dev_min).max(0.0).sqrt())
            };
            let bound = if *dir < 0.0 { lower } else { upper };
            // bracket: ζ(v̂) = 0 < target; step out until ζ passes the target or v its bound
            let (mut a, mut za) = (phi_hat[i], 0.0);
            let mut h = if step[i].is_finite() && step[i] > 0.0 { step[i] } else { 0.5 * phi_hat[i].abs().max(0.2) };
            let mut b = f64::NAN;
            let mut zb = f64::NAN;
            for _ in 0..30 {
                let v = (phi_hat[i] + dir * h).clamp(lower, upper);
                let z = zeta(m, v, &mut rest)?;
                if dir * z >= target_zeta {
                    b = v;
                    zb = z;
                    break;
                }
                a = v;
                za = z;
                if v == bound {
                    break;
                }
                h *= 2.0;
            }
            if b.is_nan() {
                if a == bound && bound.is_finite() {
                    ends[side] = bound;
                }
                continue;
            }
            // Illinois false position on ζ(v) − ±target between a and b
            let goal = dir * target_zeta;
            let (mut fa, mut fb) = (za - goal, zb - goal);
            let mut v = b;
            for _ in 0..60 {
                v = b - fb * (b - a) / (fb - fa);
                let fv = zeta(m, v, &mut rest)? - goal;
                if fv.abs() < 1e-6 || (b - a).abs() < 1e-10 * (1.0 + v.abs()) {
                    break;
                }
                if fv * fb < 0.0 {
                    a = b;
                    fa = fb;
                } else {
                    fa /= 2.0;
                }
                b = v;
                fb = fv;
            }
            ends[side] = v;
        }
        out.push(ends);
    }
    m.u = u_hat;
    Ok(out)
}
