//! The engine: the whole fit in one call, and the methods after it reading the factor at
//! θ̂ whatever was evaluated in between.
mod common;
use common::*;
use mixedrs_core::{CorKind, CorStruct, CorrelatedModel, Engine, FitControl, LinearMixedModel, ReTerm, Residuals};

fn engine(d: &Data, reml: bool) -> Engine<'static> {
    Engine::new(Residuals::Independent(model(d, reml)))
}

#[test]
fn methods_after_the_fit_read_the_factor_at_the_optimum() {
    let d = nested_data(3);
    let mut e = engine(&d, true);
    let fit = e.fit(&FitControl::default(), true).unwrap();
    let theta = fit.params();
    let before = e.cond_var(fit.fit.sigma).unwrap();
    // an evaluation elsewhere (as a devfun call would make) moves the factor
    let elsewhere: Vec<f64> = theta.iter().map(|v| v * 0.5 + 0.1).collect();
    let at_elsewhere = e.objective(&elsewhere).unwrap();
    assert!(at_elsewhere > fit.fit.criterion);
    let after = e.cond_var(fit.fit.sigma).unwrap();
    for (a, b) in before.iter().flatten().zip(after.iter().flatten()) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // the criterion at θ̂ is the fit's
    let again = e.objective(&theta).unwrap();
    assert!((again - fit.fit.criterion).abs() <= 1e-10 * fit.fit.criterion.abs());
}

#[test]
fn an_engine_set_at_the_fitted_parameters_gives_the_fitted_engine_s_answers() {
    // what a fit read back from disk does: a new engine, put at θ̂ without optimising
    let d = crossed_data(5, true);
    let mut fitted = engine(&d, true);
    let fit = fitted.fit(&FitControl::default(), true).unwrap();
    let mut restored = engine(&d, true);
    restored.set_fitted(&fit.params()).unwrap();
    let (a, b) = (fitted.cond_var(fit.fit.sigma).unwrap(), restored.cond_var(fit.fit.sigma).unwrap());
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()));
    }
    let (va, vb) = (fitted.varpar(&fit.params(), fit.fit.sigma).unwrap(), restored.varpar(&fit.params(), fit.fit.sigma).unwrap());
    for (x, y) in va.hessian.iter().zip(&vb.hessian) {
        assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()));
    }
}

#[test]
fn badly_scaled_data_give_the_fit_of_the_scaled_data_mapped_back() {
    // y in tiny units and a predictor shifted far from 0: the engine optimises on a
    // conditioned copy; θ is unit-free, β and σ follow the units
    let d = nested_data(8);
    let n = d.y.len();
    let s = 1e-7;
    let mut x = d.x.clone();
    x[n..].iter_mut().for_each(|v| *v += 1e5);
    let scaled = Data { terms: d.terms.clone(), x, p: d.p, y: d.y.iter().map(|v| v * s).collect(), w: None };
    let mut plain = engine(&d, false);
    let mut bad = engine(&scaled, false);
    assert!(!plain.ill_conditioned());
    assert!(bad.ill_conditioned());
    let (a, b) = (plain.fit(&FitControl::default(), true).unwrap(), bad.fit(&FitControl::default(), true).unwrap());
    for (t1, t2) in a.fit.optim.theta.iter().zip(&b.fit.optim.theta) {
        assert!((t1 - t2).abs() < 1e-5 * (1.0 + t1.abs()), "θ {t1} vs {t2}");
    }
    assert!((b.fit.sigma / s - a.fit.sigma).abs() < 1e-6 * a.fit.sigma);
    assert!((b.fit.beta[1] / s - a.fit.beta[1]).abs() < 1e-6 * (1.0 + a.fit.beta[1].abs()));
    // ML deviance moves by 2n log s with y's units
    let shift = 2.0 * n as f64 * s.ln();
    assert!((b.fit.criterion - shift - a.fit.criterion).abs() < 1e-7 * a.fit.criterion.abs(), "{} vs {}", b.fit.criterion - shift, a.fit.criterion);
}

#[test]
fn lme4_start_is_the_variance_ratio_start_for_random_intercepts() {
    let d = nested_data(2);
    let intercepts = Data {
        terms: vec![d.terms[0].clone(), d.terms[2].clone()],
        x: d.x.clone(),
        p: d.p,
        y: d.y.clone(),
        w: None,
    };
    let e = engine(&intercepts, true);
    let start = e.lme4_start();
    assert_eq!(start.len(), 2);
    assert!(start.iter().all(|v| *v > 0.0) && start.iter().any(|v| (v - 1.0).abs() > 1e-6), "{start:?}");
    // a vector-valued term: Λ = I
    let e = engine(&d, true);
    let lam_i: Vec<f64> = e.model.lmm().theta_start();
    assert_eq!(e.lme4_start(), lam_i);
}

#[test]
fn a_start_of_theta_alone_takes_the_correlation_s_own_start() {
    let n = 30;
    let codes: Vec<u32> = (0..n).map(|i| (i / 6) as u32).collect();
    let times: Vec<f64> = (0..n).map(|i| (i % 6) as f64 + 1.0).collect();
    let mut x = vec![1.0; n];
    x.extend(&times);
    let y: Vec<f64> = (0..n).map(|i| 1.0 + 0.3 * times[i] + ((i * 7919 % 13) as f64 / 6.0 - 1.0) + 0.4 * codes[i] as f64).collect();
    let term = || ReTerm::new(codes.clone(), 5, vec![1.0; n], 1, mixedrs_core::CovForm::Full).unwrap();
    let cor = || CorStruct::new(CorKind::Ar1, &codes, times.clone()).unwrap();
    let build = || {
        let c = cor();
        let eta = c.unconstrained(&[0.1]);
        Engine::new(Residuals::Correlated(CorrelatedModel::new(vec![term()], x.clone(), 2, y.clone(), true, c, None, eta).unwrap()))
    };
    let mut free = build();
    let best = free.fit(&FitControl::default(), true).unwrap();
    let mut started = build();
    let ctl = FitControl { start: Some(best.fit.optim.theta.clone()), ..FitControl::default() };
    let from_theta = started.fit(&ctl, true).unwrap();
    assert!((from_theta.fit.criterion - best.fit.criterion).abs() < 1e-8 * best.fit.criterion.abs());
    assert_eq!(from_theta.params().len(), 2);
    // a start of the wrong length is an input error, not a panic
    let bad = FitControl { start: Some(vec![1.0, 0.0, 0.5]), ..FitControl::default() };
    assert!(build().fit(&bad, true).is_err());
}

#[test]
fn the_engine_borrows_the_codes_and_columns_it_is_given() {
    // R's factor codes (1-based) and Z are borrowed, not copied
    let codes: Vec<i32> = (0..12).map(|i| i % 3 + 1).collect();
    let z = vec![1.0; 12];
    let term = ReTerm::new(mixedrs_core::Codes::one_based(&codes), 3, &z[..], 1, mixedrs_core::CovForm::Full).unwrap();
    assert!(matches!(term.z, std::borrow::Cow::Borrowed(_)));
    assert_eq!(term.codes.iter().collect::<Vec<_>>(), (0..12).map(|i| i % 3).collect::<Vec<_>>());
    let x = vec![1.0; 12];
    let y: Vec<f64> = (0..12).map(|i| (i as f64).sin()).collect();
    let m = LinearMixedModel::new(vec![term], &x[..], 1, &y[..], None, true).unwrap();
    assert_eq!(m.n, 12);
    // a code of 0 (R's NA is negative) or beyond the levels is refused
    let bad: Vec<i32> = vec![1, 0, 2];
    assert!(ReTerm::new(mixedrs_core::Codes::one_based(&bad), 2, vec![1.0; 3], 1, mixedrs_core::CovForm::Full).is_err());
    let bad: Vec<i32> = vec![1, 3, 2];
    assert!(ReTerm::new(mixedrs_core::Codes::one_based(&bad), 2, vec![1.0; 3], 1, mixedrs_core::CovForm::Full).is_err());
}
