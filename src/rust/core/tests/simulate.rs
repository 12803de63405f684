//! Simulation and the parametric bootstrap: draws that depend on the seed only (not on
//! the number of threads), the fitted model's moments, and refits that equal fresh fits.
mod common;
use common::*;
use mixedrs_core::{bootstrap, fit, simulate, simulate_design, BootControl, BootType, Design, FitControl, FittedParams};

fn params(d: &Data) -> FittedParams {
    let mut m = model(d, true);
    let f = fit(&mut m, &FitControl::default(), true).unwrap();
    FittedParams { theta: f.optim.theta.clone(), beta: f.beta.clone(), sigma: f.sigma, b: f.b.clone() }
}

#[test]
fn draws_depend_on_the_seed_only() {
    let d = crossed_data(2, false);
    let m = model(&d, true);
    let par = params(&d);
    let a = simulate(&m, &par, false, 3, 42);
    let b = simulate(&m, &par, false, 3, 42);
    assert_eq!(a, b);
    assert_ne!(a, simulate(&m, &par, false, 3, 43));
    // replicate r is the same whatever the number of replicates
    assert_eq!(simulate(&m, &par, false, 1, 42)[0], a[0]);
}

#[test]
fn conditional_draws_have_the_fitted_mean_and_residual_variance() {
    let d = crossed_data(4, false);
    let m = model(&d, true);
    let par = params(&d);
    let nsim = 4000;
    let sims = simulate(&m, &par, true, nsim, 7);
    let n = d.y.len();
    let mu = mixedrs_core::lmm::fit::fitted_values(&d.x, n, &d.terms, &par.beta, &par.b);
    for o in [0, 37, 149] {
        let mean: f64 = sims.iter().map(|s| s[o]).sum::<f64>() / nsim as f64;
        let var: f64 = sims.iter().map(|s| (s[o] - mean).powi(2)).sum::<f64>() / (nsim - 1) as f64;
        assert!((mean - mu[o]).abs() < 4.0 * par.sigma / (nsim as f64).sqrt(), "row {}: {} vs {}", o, mean, mu[o]);
        assert!((var / par.sigma.powi(2) - 1.0).abs() < 0.1, "row {}: variance {} vs {}", o, var, par.sigma.powi(2));
    }
    // with every term conditioned on, only residuals are drawn, from the same generators
    let fixed = simulate_design(&Design { x: &mu, n, terms: &[], weights: None }, &FittedParams { beta: vec![1.0], ..par.clone() }, false, 2, 7);
    let cond = simulate(&m, &par, true, 2, 7);
    for (a, b) in fixed.iter().zip(&cond) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-10);
        }
    }
}

#[test]
fn bootstrap_refits_equal_fresh_fits_on_any_number_of_threads() {
    let d = crossed_data(6, false);
    let m = model(&d, true);
    let par = params(&d);
    let run = |threads| {
        let bc = BootControl { nsim: 6, seed: 11, threads, kind: BootType::Parametric };
        bootstrap(&m, &par, &bc, &FitControl::default(), &mut |_, _| true).unwrap()
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.done, 6);
    for (a, b) in one.stats.iter().zip(&two.stats) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-8 * (1.0 + x.abs()), "{} vs {}", x, y);
        }
    }
    // replicate 0 is the same draw as simulate()'s first replicate with the same seed,
    // and its statistics are those of a fresh fit to it
    let y0 = simulate(&m, &par, false, 1, 11)[0].clone();
    let mut fresh = mixedrs_core::LinearMixedModel::new(d.terms.clone(), d.x.clone(), d.p, y0, None, true).unwrap();
    let f = fit(&mut fresh, &FitControl::default(), true).unwrap();
    let mut want = mixedrs_core::inference::profile::theta_to_sdcor(&fresh, &f.optim.theta, f.sigma);
    want.extend(&f.beta);
    for (x, y) in one.stats[0].iter().zip(&want) {
        assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{:?} vs {:?}", one.stats[0], want);
    }
}
