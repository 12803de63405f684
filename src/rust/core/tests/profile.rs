//! Likelihood profiles: the sd/cor parametrisation round trip, and interval ends where
//! the profiled deviance rises by z², checked by refits in other parametrisations.
mod common;
use common::*;
use mixedrs_core::inference::profile::{profile_confint_scaled, sdcor_to_theta, theta_to_sdcor};
use mixedrs_core::{fit, minimize, FitControl, LinearMixedModel};
use proptest::prelude::*;

#[test]
fn sdcor_round_trip_and_profile_ends() {
    use mixedrs_core::inference::profile::{sdcor_to_theta, theta_to_sdcor};
    use mixedrs_core::profile_confint;
    let d = crossed_data(7, false);
    let m = model(&d, false);
    let th = vec![0.9, -0.2, 0.4, 0.7, 1.3, 0.6];
    let phi = theta_to_sdcor(&m, &th, 2.0);
    let (back, s) = sdcor_to_theta(&m, &phi).unwrap();
    assert_eq!(s, 2.0);
    for (a, b) in th.iter().zip(&back) {
        assert!((a - b).abs() < 1e-12, "{:?} vs {:?}", th, back);
    }
    // the interval ends are where the profiled deviance rises by z²
    let mut m = model(&d, false);
    let z = 1.959963984540054;
    let r = profile_confint(&mut m, z, &[0, 1, 7, 8], &FitControl::default()).unwrap();
    let base = r.deviance;
    // fixed effect 1: refit with β₀ fixed at the interval end, by moving x₀β₀ into y
    let n = d.y.len();
    for &end in &[r.intervals[2].0, r.intervals[2].1] {
        let y: Vec<f64> = (0..n).map(|i| d.y[i] - end * d.x[i]).collect();
        let xd = d.x[n..].to_vec();
        let mut mj = LinearMixedModel::new(d.terms.clone(), xd, d.p - 1, y, None, false).unwrap();
        let f = fit(&mut mj, &FitControl::default(), true).unwrap();
        assert!(((f.criterion - base) - z * z).abs() < 1e-4, "{} vs {}", f.criterion - base, z * z);
    }
    for iv in &r.intervals {
        assert!(iv.0 < iv.1);
    }
    assert!(r.intervals[0].0 < r.estimates[0] && r.estimates[0] < r.intervals[0].1);
}


/// Covariance profiles (lme4's `prof.scale = "varcov"`): at each end the deviance,
/// minimised with the covariance fixed, is z² above the optimum. The check minimises
/// over its own parametrisation: the term's first relative sd and |ρ| (logistic), log σ
/// and the other terms' θ, with the second sd implied by the fixed covariance.
#[test]
fn covariance_profile_ends_raise_the_deviance_by_z_squared() {
    for seed in [3u64, 11] {
        let d = crossed_data(seed, false);
        let mut m = model(&d, false);
        let z = 1.959963984540054;
        // θ's layout: term 0 (k = 2, full) is (0,0), (1,0), (1,1); its correlation is φ₁
        let r = profile_confint_scaled(&mut m, z, &[1], &FitControl::default(), true).unwrap();
        let base = r.deviance;
        let (lo, hi) = r.intervals[0];
        assert!(lo < r.estimates[1] && r.estimates[1] < hi, "{} {} {}", lo, r.estimates[1], hi);
        let nth = m.ntheta();
        let sigma0 = r.estimates[nth];
        for &c in &[lo, hi] {
            let mut mm = model(&d, false);
            let mut dev = |v: &[f64]| -> mixedrs_core::Result<f64> {
                let (s1, rho, sigma) = (v[0].exp(), 1.0 / (1.0 + (-v[1]).exp()), v[2].exp());
                let s2 = c.abs() / (sigma * sigma * s1 * rho);
                let r = rho * c.signum();
                let mut theta = vec![s1, s2 * r, s2 * (1.0 - r * r).sqrt()];
                theta.extend(&v[3..]);
                mm.deviance_at(&theta, sigma, false)
            };
            let mut best = f64::INFINITY;
            for rho0 in [0.3, 0.7, 0.95] {
                let mut start = vec![(r.estimates[0] / sigma0).max(1e-3).ln(), (rho0 / (1.0 - rho0) as f64).ln(), sigma0.ln()];
                start.extend(&r.theta_ml[3..]);
                let ctl = FitControl { grad_tol: 1e-10, ..FitControl::default() };
                best = best.min(minimize(&mut dev, &start, &ctl).unwrap().f);
            }
            assert!(((best - base) - z * z).abs() < 2e-3, "seed {} cov {}: {} vs {}", seed, c, best - base, z * z);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn sdcor_round_trip(seed in 0u64..10_000, a in 0.01f64..3.0, c in -2.0f64..2.0, e in 0.01f64..3.0, sigma in 0.1f64..10.0) {
        let d = random_data(seed, 20, 2);
        let m = model(&d, true);
        let theta: Vec<f64> = m
            .terms
            .iter()
            .flat_map(|t| t.theta_layout().iter().map(|&(i, j)| if i != j { c } else if i == 0 { a } else { e }).collect::<Vec<_>>())
            .collect();
        let phi = theta_to_sdcor(&m, &theta, sigma);
        let (back, s) = sdcor_to_theta(&m, &phi).unwrap();
        prop_assert!((s - sigma).abs() < 1e-12);
        for (x, y) in theta.iter().zip(&back) {
            prop_assert!((x.abs() - y.abs()).abs() < 1e-9 * (1.0 + x.abs()), "{:?} vs {:?}", theta, back);
        }
    }
}
