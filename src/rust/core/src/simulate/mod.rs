//! Simulation from a fitted model and the parametric bootstrap, both in Rust.
//!
//! Every replicate r draws from its own generator seeded by `replicate_seed(seed, r)`,
//! so results depend on the seed only, never on how many threads ran them. A refit
//! changes only the response: [`LinearMixedModel::set_response`] re-forms the y row of
//! A, and the Z and X blocks are reused.
use crate::error::{MixedError, Result};
use crate::lmm::model::LinearMixedModel;
use crate::lmm::reterm::ReTerm;
use crate::lmm::optimize::optimize_theta;
use crate::optim::bfgs::FitControl;
use crate::inference::profile::theta_to_sdcor;
use crate::residuals::correlation::{fit_correlated, CorStruct, CorrelatedModel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// The fitted parameters a simulation draws from.
#[derive(Debug, Clone)]
pub struct FittedParams {
    pub theta: Vec<f64>,
    pub beta: Vec<f64>,
    pub sigma: f64,
    /// Conditional modes per term (level-major), for `use.u = TRUE` and residual bootstraps.
    pub b: Vec<Vec<f64>>,
}

/// splitmix64 of (seed, r): independent, well-mixed seeds per replicate.
pub fn replicate_seed(seed: u64, r: u64) -> u64 {
    let mut z = seed ^ r.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(0xD1B54A32D192ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// What a simulation draws from: X (n×p), the random-effects terms and the prior
/// weights. No cross-products: simulating never needs A, so it never builds a model.
pub struct Design<'a, 'd> {
    pub x: &'a [f64],
    pub n: usize,
    pub terms: &'a [ReTerm<'d>],
    pub weights: Option<&'a [f64]>,
}

impl<'d> LinearMixedModel<'d> {
    /// The model's design, for simulation.
    pub fn design(&self) -> Design<'_, 'd> {
        Design { x: &self.x, n: self.n, terms: &self.terms, weights: self.weights() }
    }
}

/// Errors that are not independent with one variance: ε = σ V C z, with C the
/// correlation's Cholesky factor in each group and V the variance function's
/// standard-deviation multipliers.
#[derive(Debug, Clone, Default)]
pub struct ErrorStructure {
    pub cor: Option<(CorStruct, Vec<f64>)>,
    pub sd: Option<Vec<f64>>,
}

impl ErrorStructure {
    /// z (independent N(0, 1)) → V C z, in place.
    pub fn colour(&self, e: &mut [f64]) -> Result<()> {
        if let Some((c, phi)) = &self.cor {
            c.colour(phi, e)?;
        }
        if let Some(sd) = &self.sd {
            e.iter_mut().zip(sd).for_each(|(e, s)| *e *= s);
        }
        Ok(())
    }
}

/// One simulated response: new random effects b = σΛu (u ~ N(0, I)) unless `use_u`,
/// then independent N(0, σ²/w) errors. Without terms, only the errors are drawn.
pub fn simulate_one(d: &Design, par: &FittedParams, use_u: bool, rng: &mut StdRng) -> Vec<f64> {
    simulate_one_with(d, par, use_u, rng, None).expect("independent errors cannot fail")
}

/// [`simulate_one`] with the errors' structure (the same draws, then coloured).
pub fn simulate_one_with(d: &Design, par: &FittedParams, use_u: bool, rng: &mut StdRng, errors: Option<&ErrorStructure>) -> Result<Vec<f64>> {
    let mut y = crate::lmm::fit::x_beta(d.x, d.n, &par.beta);
    if use_u {
        crate::lmm::fit::add_zb(d.terms, d.n, &par.b, &mut y);
    } else {
        let mut off = 0;
        let b: Vec<Vec<f64>> = d
            .terms
            .iter()
            .map(|t| {
                let nth = t.ntheta();
                let mut lam = vec![0.0; t.k * t.k];
                t.fill_lambda(&par.theta[off..off + nth], &mut lam);
                off += nth;
                let mut bt = vec![0.0; t.q()];
                let mut u = vec![0.0; t.k];
                for lev in 0..t.nlevels {
                    for v in u.iter_mut() {
                        *v = rng.sample::<f64, _>(StandardNormal);
                    }
                    for a in 0..t.k {
                        bt[lev * t.k + a] = par.sigma * (0..=a).map(|c| lam[a + c * t.k] * u[c]).sum::<f64>();
                    }
                }
                bt
            })
            .collect();
        crate::lmm::fit::add_zb(d.terms, d.n, &b, &mut y);
    }
    match errors {
        None => {
            for (o, v) in y.iter_mut().enumerate() {
                let e: f64 = rng.sample(StandardNormal);
                *v += par.sigma * e / d.weights.map_or(1.0, |w| w[o].sqrt());
            }
        }
        Some(es) => {
            let mut e: Vec<f64> = (0..d.n).map(|_| rng.sample(StandardNormal)).collect();
            es.colour(&mut e)?;
            y.iter_mut().zip(e).for_each(|(v, e)| *v += par.sigma * e);
        }
    }
    Ok(y)
}

/// `nsim` simulated responses, replicate r from `replicate_seed(seed, r)`.
pub fn simulate_design(d: &Design, par: &FittedParams, use_u: bool, nsim: usize, seed: u64) -> Vec<Vec<f64>> {
    simulate_design_with(d, par, use_u, nsim, seed, None).expect("independent errors cannot fail")
}

/// [`simulate_design`] with the errors' structure.
pub fn simulate_design_with(d: &Design, par: &FittedParams, use_u: bool, nsim: usize, seed: u64, errors: Option<&ErrorStructure>) -> Result<Vec<Vec<f64>>> {
    (0..nsim)
        .map(|r| {
            let mut rng = StdRng::seed_from_u64(replicate_seed(seed, r as u64));
            simulate_one_with(d, par, use_u, &mut rng, errors)
        })
        .collect()
}

/// [`simulate_design`] on a model's design.
pub fn simulate(model: &LinearMixedModel, par: &FittedParams, use_u: bool, nsim: usize, seed: u64) -> Vec<Vec<f64>> {
    simulate_design(&model.design(), par, use_u, nsim, seed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootType {
    /// New random effects and errors from the fitted model.
    Parametric,
    /// Fitted values Xβ̂ + Zb̂ plus residuals resampled with replacement.
    Residual,
}

#[derive(Debug, Clone)]
pub struct BootControl {
    pub nsim: usize,
    pub seed: u64,
    pub threads: usize,
    pub kind: BootType,
}

/// Bootstrap replicates of (sd/cor of each term, σ, β), lme4's order for confint.
pub struct BootResult {
    /// The statistics at the fitted parameters, in the same order.
    pub t0: Vec<f64>,
    pub stats: Vec<Vec<f64>>,
    /// Replicates whose refit failed (their row is NaN).
    pub failed: usize,
    /// Replicates done (fewer than asked when interrupted).
    pub done: usize,
}

fn refit_stats(m: &mut LinearMixedModel, y: &[f64], ctl: &FitControl) -> Result<Vec<f64>> {
    m.set_response(y)?;
    let opt = optimize_theta(m, ctl)?;
    let sigma = m.sigma();
    let mut s = theta_to_sdcor(m, &opt.theta, sigma);
    s.extend(m.beta());
    Ok(s)
}

/// Simulate and refit `nsim` times on `threads` threads, in chunks; after each chunk
/// `progress(done, nsim)` is called on this thread and may return false to stop.
pub fn bootstrap(
    model: &LinearMixedModel,
    par: &FittedParams,
    control: &BootControl,
    fit_control: &FitControl,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<BootResult> {
    let nstat = model.ntheta() + 1 + model.p;
    // workers never poll R for interrupts (R is single-threaded); this thread does, between chunks
    let ctl = FitControl { start: Some(par.theta.clone()), interrupt: None, ..fit_control.clone() };
    let (fitted, resid) = {
        let mut f = crate::lmm::fit::x_beta(&model.x, model.n, &par.beta);
        crate::lmm::fit::add_zb(&model.terms, model.n, &par.b, &mut f);
        let r: Vec<f64> = model.y.iter().zip(&f).map(|(y, f)| y - f).collect();
        (f, r)
    };
    let (stats, failed, done) = replicates(model, nstat, control, progress, |m, rng| {
        let y = match control.kind {
            BootType::Parametric => simulate_one(&m.design(), par, false, rng),
            BootType::Residual => fitted.iter().map(|f| f + resid[rng.random_range(0..resid.len())]).collect(),
        };
        refit_stats(m, &y, &ctl).ok()
    })?;
    let mut t0 = theta_to_sdcor(model, &par.theta, par.sigma);
    t0.extend(&par.beta);
    Ok(BootResult { t0, stats, failed, done })
}

/// The bootstrap of a fit with correlated or heteroscedastic residuals (at its η):
/// parametric draws coloured by the fitted structure, or the whitened residuals
/// resampled and coloured back; each replicate refits θ and η. The statistics are
/// [`bootstrap`]'s followed by the structure's parameters on their natural scale.
pub fn bootstrap_correlated(
    model: &CorrelatedModel,
    par: &FittedParams,
    control: &BootControl,
    fit_control: &FitControl,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<BootResult> {
    let errors = model.errors()?;
    let nth = model.model.ntheta();
    let nstat = nth + 1 + model.p + model.npar();
    let mut start = par.theta.clone();
    start.extend(model.eta());
    let ctl = FitControl { start: Some(start), interrupt: None, ..fit_control.clone() };
    let n = model.y.len();
    let fitted = model.fitted(&par.beta, &par.b);
    let whitened = model.whitened_residuals(&par.beta, &par.b);
    let design = Design { x: &model.x, n, terms: &model.terms, weights: None };
    let eta_hat = model.eta().to_vec();
    let stats_of = |m: &mut CorrelatedModel, y: &[f64]| -> Result<Vec<f64>> {
        // every replicate from the fitted η, whatever this worker's copy fitted before
        // (or failed on)
        m.set_eta(&eta_hat)?;
        m.set_response(y)?;
        let f = fit_correlated(m, &ctl, true)?;
        let mut s = theta_to_sdcor(&m.model, &f.fit.optim.theta, f.fit.sigma);
        s.extend(&f.fit.beta);
        s.extend(&f.phi);
        Ok(s)
    };
    let (stats, failed, done) = replicates(model, nstat, control, progress, |m, rng| {
        let y = match control.kind {
            BootType::Parametric => simulate_one_with(&design, par, false, rng, Some(&errors)).ok()?,
            BootType::Residual => {
                let mut e: Vec<f64> = (0..n).map(|_| whitened[rng.random_range(0..n)]).collect();
                errors.colour(&mut e).ok()?;
                fitted.iter().zip(e).map(|(f, e)| f + e).collect()
            }
        };
        stats_of(m, &y).ok()
    })?;
    let mut t0 = theta_to_sdcor(&model.model, &par.theta, par.sigma);
    t0.extend(&par.beta);
    t0.extend(model.natural(model.eta()));
    Ok(BootResult { t0, stats, failed, done })
}

/// Replicates `0..nsim` on the control's threads, each on its own copy of `proto`
/// (made once per worker) and its own generator; failed ones are NaN rows.
fn replicates<M: Clone + Send + Sync>(
    proto: &M,
    nstat: usize,
    control: &BootControl,
    progress: &mut dyn FnMut(usize, usize) -> bool,
    one: impl Fn(&mut M, &mut StdRng) -> Option<Vec<f64>> + Sync,
) -> Result<(Vec<Vec<f64>>, usize, usize)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(control.threads.max(1))
        .build()
        .map_err(|e| MixedError::Numerical(format!("could not start worker threads: {}", e)))?;
    let mut stats = Vec::with_capacity(control.nsim);
    let chunk = (4 * control.threads.max(1)).max(8);
    let mut done = 0;
    let mut failed = 0;
    while done < control.nsim {
        let end = (done + chunk).min(control.nsim);
        let rows: Vec<Option<Vec<f64>>> = pool.install(|| {
            (done..end)
                .into_par_iter()
                .map_init(
                    || proto.clone(),
                    |m, r| {
                        let mut rng = StdRng::seed_from_u64(replicate_seed(control.seed, r as u64));
                        one(m, &mut rng)
                    },
                )
                .collect()
        });
        for row in rows {
            match row {
                Some(s) => stats.push(s),
                None => {
                    failed += 1;
                    stats.push(vec![f64::NAN; nstat]);
                }
            }
        }
        done = end;
        if !progress(done, control.nsim) {
            break;
        }
    }
    Ok((stats, failed, done))
}
