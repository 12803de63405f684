//! Profile intervals of a GLMM's parameters, as lme4's `confint(method = "profile")`:
//! for each of [θ, β], the values on either side of the optimum at which the deviance
//! minimised over the other parameters rises by `cutoff` (qchisq(level, 1)). Each
//! end is found on the signed square root ζ(v) = ±√(dev(v) − dev_min), which is close
//! to linear in v, by expanding a bracket and then the Illinois false-position rule.
use super::pirls::{Approximation, GeneralizedLinearMixedModel};
use crate::error::{MixedError, Result};
use crate::lmm::optimize::{optimize_with, SearchScale};
use crate::optim::bfgs::FitControl;

/// The deviance at `x` with coordinate `i` held at `v`, minimised over the others
/// from `rest` (updated to the minimiser, the next call's start).
fn profiled(m: &mut GeneralizedLinearMixedModel, i: usize, v: f64, rest: &mut Vec<f64>, is_diag: &[bool], nth: usize, approx: Approximation, control: &FitControl) -> Result<f64> {
    let k = rest.len() + 1;
    let full = |r: &[f64]| -> Vec<f64> {
        let mut x = Vec::with_capacity(k);
        x.extend_from_slice(&r[..i]);
        x.push(v);
        x.extend_from_slice(&r[i..]);
        x
    };
    if rest.is_empty() {
        let x = full(rest);
        return m.deviance_at(&x[..nth], &x[nth..], approx);
    }
    let d: Vec<bool> = (0..k).filter(|&j| j != i).map(|j| is_diag[j]).collect();
    let scale = SearchScale::linear(rest.len());
    let res = optimize_with(|r| { let x = full(r); m.deviance_at(&x[..nth], &x[nth..], approx) }, rest, &d, &scale, control)?;
    *rest = res.theta.clone();
    Ok(res.criterion)
}

/// Lower and upper ends for every coordinate of `x_hat` = [θ, β] (θ: diagonal
/// elements, the standard deviations when σ = 1). `step` is a first step per
/// coordinate (a standard error where one is known). A θ whose profile stays below
/// the cutoff down to 0 gets 0 as its lower end; an end the search cannot bracket is NaN.
#[allow(clippy::too_many_arguments)]
pub fn profile_ends(m: &mut GeneralizedLinearMixedModel, x_hat: &[f64], dev_min: f64, nth: usize, step: &[f64], cutoff: f64, approx: Approximation, control: &FitControl) -> Result<Vec<[f64; 2]>> {
    let k = x_hat.len();
    if step.len() != k {
        return Err(MixedError::Input("one first step per parameter is needed".into()));
    }
    let is_diag: Vec<bool> = (0..k).map(|j| j < nth).collect();
    let target = cutoff.sqrt();
    let u_hat = m.u.clone();
    let mut out = Vec::with_capacity(k);
    for i in 0..k {
        let mut ends = [f64::NAN; 2];
        for (side, dir) in [-1.0f64, 1.0].iter().enumerate() {
            m.u = u_hat.clone();
            let mut rest: Vec<f64> = (0..k).filter(|&j| j != i).map(|j| x_hat[j]).collect();
            let zeta = |m: &mut GeneralizedLinearMixedModel, v: f64, rest: &mut Vec<f64>| -> Result<f64> {
                let d = profiled(m, i, v, rest, &is_diag, nth, approx, control)?;
                Ok(dir * (d - dev_min).max(0.0).sqrt())
            };
            // bracket: ζ(v̂) = 0 < target; step out until ζ passes the target
            let (mut a, mut za) = (x_hat[i], 0.0);
            let mut h = step[i];
            let mut b = f64::NAN;
            let mut zb = f64::NAN;
            for _ in 0..30 {
                let mut v = x_hat[i] + dir * h;
                if i < nth && v <= 0.0 {
                    // a standard deviation: the lower end is 0 unless ζ reaches the target first
                    v = 0.0;
                }
                let z = zeta(m, v, &mut rest)?;
                if dir * z >= target {
                    b = v;
                    zb = z;
                    break;
                }
                a = v;
                za = z;
                if i < nth && v == 0.0 {
                    break;
                }
                h *= 2.0;
            }
            if b.is_nan() {
                if i < nth && a == 0.0 && *dir < 0.0 {
                    ends[side] = 0.0;
                }
                continue;
            }
            // Illinois false position on ζ(v) − ±target between a and b
            let goal = dir * target;
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
