//! Bootstrap refits of a GLMM: the responses are drawn in R (glmer's draws for the same
//! seed), and each is refitted here as `refit()` would, on several threads.
use super::pirls::{fit_glmm, Approximation, GeneralizedLinearMixedModel};
use crate::error::{MixedError, Result};
use crate::inference::profile::theta_to_sdcor;
use crate::optim::bfgs::FitControl;
use rayon::prelude::*;

/// Each response in `ys` refitted from `control.start` as a fresh model with the same
/// design, weights and offset (what `refit()` does): per replicate the random effects'
/// standard deviations and correlations in θ's layout, then β; a NaN row where the refit
/// fails. Returns the rows and the number of failures. Each replicate is independent,
/// so the rows do not depend on the number of threads.
pub fn refit_responses(m: &GeneralizedLinearMixedModel, ys: &[Vec<f64>], control: &FitControl, nagq0: bool, approx: Approximation, threads: usize) -> Result<(Vec<Vec<f64>>, usize)> {
    let nstat = m.ntheta() + m.p;
    // the R session's interrupt check cannot run off the main thread
    let ctl = FitControl { interrupt: None, ..control.clone() };
    let one = |y: &Vec<f64>| -> Option<Vec<f64>> {
        let mut r = GeneralizedLinearMixedModel::new(m.terms.clone(), m.x.clone(), m.p, y.clone(), m.wt.clone(), m.offset.clone(), m.family, m.link).ok()?;
        let f = fit_glmm(&mut r, &ctl, nagq0, false, approx).ok()?;
        let mut s = theta_to_sdcor(r.working_model(), &f.theta, 1.0);
        s.pop(); // σ: none in a GLMM
        s.extend(&f.beta);
        s.iter().all(|v| v.is_finite()).then_some(s)
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| MixedError::Numerical(format!("could not start worker threads: {}", e)))?;
    let rows: Vec<Option<Vec<f64>>> = pool.install(|| ys.par_iter().map(one).collect());
    let failed = rows.iter().filter(|r| r.is_none()).count();
    Ok((rows.into_iter().map(|r| r.unwrap_or_else(|| vec![f64::NAN; nstat])).collect(), failed))
}
