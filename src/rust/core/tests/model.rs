//! Known-answer tests: the blocked factor and criterion against direct dense computations.
mod common;
use common::*;
use mixedrs_core::{fit, CovForm, FitControl, LinearMixedModel, ReTerm};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const THETAS: [[f64; 6]; 3] = [
    [1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
    [0.7, -0.3, 0.2, 1.4, 0.5, 0.0],
    [0.0, 0.9, 0.0, 0.3, 2.0, 0.1],
];

#[test]
fn criterion_matches_marginal_likelihood() {
    for weighted in [false, true] {
        let d = crossed_data(7, weighted);
        for reml in [false, true] {
            let mut m = model(&d, reml);
            for th in THETAS {
                let got = m.objective(&th).unwrap();
                let (want, beta) = marginal_criterion(&d, &th, reml);
                assert!((got - want).abs() < 1e-8 * want.abs(), "reml={reml} w={weighted} {got} vs {want}");
                for (a, b) in m.beta().iter().zip(beta.iter()) {
                    assert!((a - b).abs() < 1e-8, "beta {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn blocked_cholesky_matches_dense_cholesky() {
    let d = crossed_data(11, false);
    let mut m = model(&d, true);
    check_against_dense(&d, &mut m, &THETAS[1]);
}

/// Nested terms: L's later diagonal blocks stay block-diagonal and the blocks between
/// terms sparse (with fill-in added to the first column's pattern), and everything
/// agrees with the dense factor, at an interior θ and at one with zeros.
#[test]
fn nested_terms_keep_sparse_blocks_and_match_dense_cholesky() {
    let d = nested_data(5);
    let mut m = LinearMixedModel::with_sparse_share(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), None, true, 1.0).unwrap();
    // blocks (0,0) (1,0) (1,1) (2,0) (2,1) (2,2), then the [X y] row
    assert_eq!(&m.storage_kinds()[..6], &["diag", "sparse", "diag", "sparse", "sparse", "diag"]);
    check_against_dense(&d, &mut m, &[0.8, 1.2, -0.3, 0.6, 0.9]);
    check_against_dense(&d, &mut m, &[0.0, 1.2, 0.0, 0.0, 0.9]);
    for reml in [true, false] {
        let mut m = model(&d, reml);
        for th in [[0.8, 1.2, -0.3, 0.6, 0.9], [1.0, 1.0, 0.0, 1.0, 1.0]] {
            let got = m.objective(&th).unwrap();
            let (want, _) = marginal_criterion(&d, &th, reml);
            assert!((got - want).abs() < 1e-8 * want.abs(), "nested reml={reml} {got} vs {want}");
        }
    }
}

/// The factor's parts, u and the conditional variances against dense computations.
fn check_against_dense(d: &Data, m: &mut LinearMixedModel, th: &[f64]) {
    m.update_l(th).unwrap();
    let parts = m.parts();
    // Dense [ΛᵀZᵀZΛ+I, ΛᵀZᵀX, ΛᵀZᵀy; ...] and its Cholesky factor
    let n = d.y.len();
    let (z, lam) = dense_z_lambda(d, th);
    let q = z.ncols();
    let zl = &z * &lam;
    let mut big = DMatrix::zeros(n, q + d.p + 1);
    big.view_mut((0, 0), (n, q)).copy_from(&zl);
    big.view_mut((0, q), (n, d.p)).copy_from(&DMatrix::from_column_slice(n, d.p, &d.x));
    big.view_mut((0, q + d.p), (n, 1)).copy_from(&DMatrix::from_column_slice(n, 1, &d.y));
    let mut a = big.transpose() * &big;
    for i in 0..q {
        a[(i, i)] += 1.0;
    }
    let l = a.cholesky().unwrap().l();
    let ldl2: f64 = (0..q).map(|i| 2.0 * l[(i, i)].ln()).sum();
    let ldrx2: f64 = (q..q + d.p).map(|i| 2.0 * l[(i, i)].ln()).sum();
    let r = l[(q + d.p, q + d.p)];
    assert!((parts.ldl2 - ldl2).abs() < 1e-9);
    assert!((parts.ldrx2 - ldrx2).abs() < 1e-9);
    assert!((parts.pwrss - r * r).abs() < 1e-9 * r * r);
    // conditional modes: u solves (ΛᵀZᵀZΛ + I) u = ΛᵀZᵀ(y − Xβ)
    let beta = DVector::from_vec(m.beta());
    let resid = DVector::from_column_slice(&d.y) - DMatrix::from_column_slice(n, d.p, &d.x) * beta;
    let mut lhs = zl.transpose() * &zl;
    for i in 0..q {
        lhs[(i, i)] += 1.0;
    }
    let u_want = lhs.clone().cholesky().unwrap().solve(&(zl.transpose() * resid));
    let u_got: Vec<f64> = m.u().into_iter().flatten().collect();
    for (a, b) in u_got.iter().zip(u_want.iter()) {
        assert!((a - b).abs() < 1e-9, "u {a} vs {b}");
    }
    // conditional variances: diagonal blocks of Λ (ΛᵀZᵀZΛ+I)⁻¹ Λᵀ
    let cv = lam.clone() * lhs.try_inverse().unwrap() * lam.transpose();
    let mut off = 0;
    for (t, term) in d.terms.iter().enumerate() {
        let got = m.cond_var(t).unwrap();
        let k = term.k;
        for lev in 0..term.nlevels {
            for a in 0..k {
                for b in 0..k {
                    let want = cv[(off + lev * k + a, off + lev * k + b)];
                    assert!((got[lev * k * k + a + b * k] - want).abs() < 1e-9, "condvar term {t}");
                }
            }
        }
        off += term.q();
    }
}

#[test]
fn optimum_is_a_stationary_minimum() {
    let d = crossed_data(3, false);
    let mut m = model(&d, true);
    let f = fit(&mut m, &FitControl::default(), true).unwrap();
    assert!(f.optim.converged, "{}", f.optim.message);
    // no coordinate perturbation improves the criterion
    for i in 0..f.optim.theta.len() {
        for h in [1e-4, -1e-4] {
            let mut t = f.optim.theta.clone();
            t[i] += h;
            assert!(m.objective(&t).unwrap() >= f.criterion - 1e-9);
        }
    }
    // diagonal elements of Λ are non-negative after normalisation
    for (v, diag) in f.optim.theta.iter().zip(m.theta_is_diagonal()) {
        if diag {
            assert!(*v >= 0.0);
        }
    }
}

#[test]
fn boundary_fit_reaches_exact_zero() {
    // no between-group variation at all: the optimum is θ = 0 exactly
    let n = 60;
    let mut rng = StdRng::seed_from_u64(5);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    let g: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let mut y: Vec<f64> = (0..n).map(|_| nrm.sample(&mut rng)).collect();
    // remove group means so the between-group sum of squares is zero
    for lev in 0..10 {
        let idx: Vec<usize> = (0..n).filter(|&i| g[i] == lev).collect();
        let mean = idx.iter().map(|&i| y[i]).sum::<f64>() / idx.len() as f64;
        idx.iter().for_each(|&i| y[i] -= mean);
    }
    let term = ReTerm::new(g, 10, vec![1.0; n], 1, CovForm::Full).unwrap();
    let mut m = LinearMixedModel::new(vec![term], vec![1.0; n], 1, y, None, true).unwrap();
    let f = fit(&mut m, &FitControl::default(), true).unwrap();
    assert_eq!(f.optim.theta, vec![0.0]);
}

#[test]
fn cost_of_an_evaluation_does_not_depend_on_n() {
    // same levels, 10× the rows: the factor has the same sizes, so the same work
    let small = crossed_data(1, false);
    let m1 = model(&small, true);
    let mut big = crossed_data(1, false);
    let n = big.y.len();
    for t in &mut big.terms {
        let codes = t.codes.to_zero_based().repeat(10);
        let z: Vec<f64> = (0..t.k).flat_map(|a| t.z[a * n..(a + 1) * n].repeat(10)).collect();
        *t = ReTerm::new(codes, t.nlevels, z, t.k, t.cov).unwrap();
    }
    big.x = (0..big.p).flat_map(|a| big.x[a * n..(a + 1) * n].repeat(10)).collect();
    big.y = big.y.repeat(10);
    let m2 = model(&big, true);
    assert_eq!(m1.storage_len(), m2.storage_len());
}

#[test]
fn rejects_inconsistent_input() {
    let d = crossed_data(2, false);
    assert!(LinearMixedModel::new(d.terms.clone(), d.x[..10].to_vec(), d.p, d.y.clone(), None, true).is_err());
    assert!(LinearMixedModel::new(vec![], d.x.clone(), d.p, d.y.clone(), None, true).is_err());
    let mut y = d.y.clone();
    y[0] = f64::NAN;
    assert!(LinearMixedModel::new(d.terms.clone(), d.x.clone(), d.p, y, None, true).is_err());
    let w = Some(vec![-1.0; d.y.len()].into());
    assert!(LinearMixedModel::new(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), w, true).is_err());
}

/// One scalar term whose optimum lies in (0, 1) with the criterion lower at 0 than
/// at the start θ = 1: the fit must not stop at the stationary point θ = 0.
fn small_component_data(seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    let (n, ng) = (120, 10);
    let g: Vec<u32> = (0..n).map(|i| (i % ng) as u32).collect();
    let b: Vec<f64> = (0..ng).map(|_| 0.35 * nrm.sample(&mut rng)).collect();
    let xs: Vec<f64> = (0..n).map(|_| nrm.sample(&mut rng)).collect();
    let y = (0..n).map(|i| 1.0 + 0.5 * xs[i] + b[g[i] as usize] + nrm.sample(&mut rng)).collect();
    let mut x = vec![1.0; n];
    x.extend(&xs);
    Data { terms: vec![ReTerm::new(g, ng, vec![1.0; n], 1, CovForm::Full).unwrap()], x, p: 2, y, w: None }
}

#[test]
fn interior_optimum_below_the_start_is_found() {
    let mut found = 0;
    for seed in 0..40 {
        let d = small_component_data(seed);
        let mut m = model(&d, true);
        let f0 = m.objective(&[0.0]).unwrap();
        let f1 = m.objective(&[1.0]).unwrap();
        // a grid minimum, to compare with
        let grid_best = (1..400).map(|i| m.objective(&[i as f64 * 0.005]).unwrap()).fold(f64::INFINITY, f64::min);
        if !(f0 < f1 && grid_best < f0 - 1e-3) {
            continue;
        }
        found += 1;
        let f = fit(&mut m, &FitControl::default(), true).unwrap();
        assert!(f.optim.theta[0] > 0.0, "seed {}: stopped at theta = 0", seed);
        assert!(f.criterion <= grid_best + 1e-8, "seed {}: {} > grid {}", seed, f.criterion, grid_best);
    }
    assert!(found >= 3, "too few seeds exercise the edge case ({})", found);
}

#[test]
fn set_response_equals_a_fresh_model() {
    let d = crossed_data(5, true);
    let mut m = model(&d, true);
    let y2: Vec<f64> = d.y.iter().enumerate().map(|(i, v)| v * 0.7 + (i as f64).cos()).collect();
    m.set_response(&y2).unwrap();
    let d2 = Data { terms: d.terms.clone(), x: d.x.clone(), p: d.p, y: y2, w: d.w.clone() };
    let mut fresh = model(&d2, true);
    let th = [0.8, 0.1, 0.5, 0.6, 0.3, 0.2];
    let a = m.objective(&th).unwrap();
    let b = fresh.objective(&th).unwrap();
    assert!((a - b).abs() < 1e-10 * b.abs(), "{} vs {}", a, b);
}

#[test]
fn varpar_derivatives_match_finite_differences_of_the_deviance() {
    use mixedrs_core::varpar_derivatives;
    let d = crossed_data(6, false);
    let mut m = model(&d, true);
    let f = fit(&mut m, &FitControl::default(), true).unwrap();
    let th = f.optim.theta.clone();
    let k = th.len();
    let der = varpar_derivatives(&mut m, &th, f.sigma, true).unwrap();
    let n1 = k + 1;
    // the deviance as a function of (θ, σ), differenced crudely but independently
    let mut dev = |v: &[f64]| m.deviance_at(&v[..k], v[k], true).unwrap();
    let mut v0 = th.clone();
    v0.push(f.sigma);
    let h = 1e-4;
    for i in 0..n1 {
        for j in 0..n1 {
            let mut e = |si: f64, sj: f64| {
                let mut v = v0.clone();
                v[i] += si * h;
                v[j] += sj * h;
                dev(&v)
            };
            let fd = (e(1.0, 1.0) - e(1.0, -1.0) - e(-1.0, 1.0) + e(-1.0, -1.0)) / (4.0 * h * h);
            let an = der.hessian[i + j * n1];
            assert!((fd - an).abs() < 1e-3 * (1.0 + an.abs()), "H[{},{}]: {} vs {}", i, j, an, fd);
        }
    }
    // at the optimum, the σ-gradient of the deviance vanishes: σ̂² = PWRSS/(n − p)
    let up = dev(&[&th[..], &[f.sigma * (1.0 + 1e-6)]].concat());
    let dn = dev(&[&th[..], &[f.sigma * (1.0 - 1e-6)]].concat());
    assert!((up - dn).abs() < 1e-6);
}

/// The exact Satterthwaite ingredients against numeric ones (Richardson extrapolation).
#[test]
fn exact_varpar_derivatives_agree_with_richardson() {
    use mixedrs_core::{varpar_derivatives, varpar_derivatives_richardson};
    let d = crossed_data(8, false);
    let mut m = model(&d, true);
    let f = fit(&mut m, &FitControl::default(), true).unwrap();
    let a = varpar_derivatives(&mut m, &f.optim.theta, f.sigma, true).unwrap();
    let b = varpar_derivatives_richardson(&mut m, &f.optim.theta, f.sigma, true).unwrap();
    // this fit is on the boundary (a zero on Λ's diagonal): that term's rows are central
    // differences of the exact gradient, good to about 1e-6 like Richardson's
    m.update_l(&f.optim.theta).unwrap();
    let differenced = m.piece_derivatives().unwrap().differenced;
    assert!(!differenced.is_empty());
    let nv = f.optim.theta.len() + 1;
    for (idx, (x, y)) in a.hessian.iter().zip(&b.hessian).enumerate() {
        let (i, j) = (idx % nv, idx / nv);
        let tol = if differenced.contains(&i) || differenced.contains(&j) { 1e-5 } else { 1e-6 };
        assert!((x - y).abs() < tol * (1.0 + y.abs()), "({}, {}): {} vs {}", i, j, x, y);
    }
    for (ja, jb) in a.jacobian.iter().zip(&b.jacobian) {
        for (x, y) in ja.iter().zip(jb) {
            assert!((x - y).abs() < 1e-6 * (1.0 + y.abs()), "{} vs {}", x, y);
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn blocked_criterion_equals_dense(seed in 0u64..10_000, n in 8usize..40, nterms in 1usize..4, reml in any::<bool>(),
                                          scale in 0.05f64..3.0) {
            let d = random_data(seed, n, nterms);
            let mut m = model(&d, reml);
            let theta: Vec<f64> = m.theta_start().iter().enumerate().map(|(i, &v)| if v == 1.0 { scale * (1.0 + 0.1 * i as f64) } else { 0.2 }).collect();
            let ours = m.objective(&theta);
            prop_assume!(ours.is_ok());
            let (dense, beta) = marginal_criterion(&d, &theta, reml);
            let ours = ours.unwrap();
            prop_assert!((ours - dense).abs() < 1e-8 * (1.0 + dense.abs()), "{} vs {}", ours, dense);
            let b = m.beta();
            prop_assert!((b[1] - beta[1]).abs() < 1e-7 * (1.0 + beta[1].abs()));
        }

        #[test]
        fn set_response_equals_fresh_model(seed in 0u64..10_000, n in 8usize..40, nterms in 1usize..4, shift in -5.0f64..5.0) {
            let d = random_data(seed, n, nterms);
            let mut m = model(&d, true);
            let y2: Vec<f64> = d.y.iter().map(|v| v * 1.3 + shift).collect();
            m.set_response(&y2).unwrap();
            let d2 = Data { terms: d.terms.clone(), x: d.x.clone(), p: d.p, y: y2, w: None };
            let mut fresh = model(&d2, true);
            let th = m.theta_start();
            let (a, b) = (m.objective(&th).unwrap(), fresh.objective(&th).unwrap());
            prop_assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()));
        }
    }
}

/// The block-diagonal form of a later block, once found, is reused at every θ; it
/// must not be taken from a θ whose zeros (here Λ₀'s off-diagonal) cancel the
/// coupling of two levels. Fuzz case 7877 (7 rows, (z | g1) + (1 | g2)): after an
/// evaluation at θ = (30, 0, 30, 30) the criterion elsewhere came out 10 too low.
#[test]
fn zeros_in_theta_do_not_fix_the_structure_of_later_blocks() {
    let y = vec![0.62075705295310735, 0.65588571581590949, 0.57328923409682653, -1.6738121900388381,
                 0.44463724012610223, -1.4644571374995889, 0.84370008454618506];
    let zc = 1.1547005383792515;
    let zm = -0.86602540378443871;
    let x = vec![-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, zc, zm, zm, zm, zm, zc, zc];
    let terms = || {
        vec![
            ReTerm::new(vec![1, 1, 1, 0, 1, 0, 1], 2, x.clone(), 2, CovForm::Full).unwrap(),
            ReTerm::new(vec![1, 0, 0, 1, 0, 1, 1], 2, vec![1.0; 7], 1, CovForm::Full).unwrap(),
        ]
    };
    let theta = [9.1558623022060335, -2.397655439191086, 1.7760411080191303, 8.8501047875614542];
    let mut fresh = LinearMixedModel::new(terms(), x.clone(), 2, y.clone(), None, true).unwrap();
    let expected = fresh.objective(&theta).unwrap();
    let mut reused = LinearMixedModel::new(terms(), x.clone(), 2, y.clone(), None, true).unwrap();
    reused.objective(&[30.0, 0.0, 30.0, 30.0]).unwrap();
    let got = reused.objective(&theta).unwrap();
    assert!((got - expected).abs() < 1e-10 * (1.0 + expected.abs()), "{got} vs {expected}");
    // the dense marginal likelihood (R, this θ): 6.876811
    assert!((expected - 6.876811).abs() < 1e-5, "{expected}");
}

/// Two crossed scalar terms on n rows with known standard deviations (σ = 1).
fn crossed_scalar_data(n: usize, seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    let (l1, l2) = (n / 20, 40);
    let b1: Vec<f64> = (0..l1).map(|_| 0.6 * nrm.sample(&mut rng)).collect();
    let b2: Vec<f64> = (0..l2).map(|_| 1.5 * nrm.sample(&mut rng)).collect();
    let g1: Vec<u32> = (0..n).map(|i| (i % l1) as u32).collect();
    let g2: Vec<u32> = (0..n).map(|_| rng.random_range(0..l2 as u32)).collect();
    let x: Vec<f64> = (0..n).map(|_| nrm.sample(&mut rng)).collect();
    let y: Vec<f64> = (0..n).map(|i| 2.0 + 0.5 * x[i] + b1[g1[i] as usize] + b2[g2[i] as usize] + nrm.sample(&mut rng)).collect();
    let mut xm = vec![1.0; n];
    xm.extend(&x);
    let terms = vec![
        ReTerm::new(g1, l1, vec![1.0; n], 1, CovForm::Full).unwrap(),
        ReTerm::new(g2, l2, vec![1.0; n], 1, CovForm::Full).unwrap(),
    ];
    Data { terms, x: xm, p: 2, y, w: None }
}

/// On large data with scalar terms the optimiser starts from moment estimates read from
/// A: near θ̂ (here within a factor of 1.5 of each element, where lme4's start Λ = I is
/// off by 1.6 and 1.5), and the fit reaches the same optimum as from lme4's start in
/// fewer gradients. Below the row threshold, or with a k = 2 term, the start is lme4's.
#[test]
fn moment_start_is_near_the_optimum_on_large_data() {
    let d = crossed_scalar_data(12_000, 3);
    let mut m = model(&d, true);
    let start = m.theta_moment_start().unwrap();
    assert_eq!(m.default_start(), start);
    let from_moments = fit(&mut m, &FitControl::default(), true).unwrap();
    let mut m2 = model(&d, true);
    let ctl = FitControl { start: Some(m2.theta_start()), ..FitControl::default() };
    let from_identity = fit(&mut m2, &ctl, true).unwrap();
    assert!((from_moments.criterion - from_identity.criterion).abs() < 1e-8 * from_identity.criterion.abs());
    for (s, t) in start.iter().zip(&from_moments.optim.theta) {
        assert!(s / t < 1.5 && t / s < 1.5, "start {:?} vs θ̂ {:?}", start, from_moments.optim.theta);
    }
    assert!(from_moments.optim.gradients < from_identity.optim.gradients, "{} vs {} gradients", from_moments.optim.gradients, from_identity.optim.gradients);
    let small = crossed_scalar_data(2_000, 3);
    let ms = model(&small, true);
    assert!(ms.theta_moment_start().is_some());
    assert_eq!(ms.default_start(), ms.theta_start());
    let vector = crossed_data(3, false);
    assert!(model(&vector, true).theta_moment_start().is_none());
}

/// The selected inverse is kept while θ stays (conditional variances of every term
/// compute it once) and recomputed after the factor moves.
#[test]
fn the_selected_inverse_is_reused_at_one_theta_and_renewed_at_another() {
    let d = nested_data(11);
    let mut m = model(&d, true);
    let t1: Vec<f64> = m.theta_start();
    let t2: Vec<f64> = t1.iter().map(|v| v * 0.7 + 0.05).collect();
    m.update_l(&t1).unwrap();
    let first: Vec<Vec<f64>> = (0..d.terms.len()).map(|t| m.cond_var(t).unwrap()).collect();
    m.update_l(&t2).unwrap();
    let moved: Vec<Vec<f64>> = (0..d.terms.len()).map(|t| m.cond_var(t).unwrap()).collect();
    let mut fresh = model(&d, true);
    fresh.update_l(&t2).unwrap();
    for t in 0..d.terms.len() {
        let f = fresh.cond_var(t).unwrap();
        assert!(moved[t].iter().zip(&f).all(|(a, b)| (a - b).abs() <= 1e-12 * (1.0 + b.abs())));
        assert!(first[t].iter().zip(&f).any(|(a, b)| (a - b).abs() > 1e-6));
    }
    // ensure_factor at the current θ keeps the factor (and Σ); at another θ refactors
    m.ensure_factor(&t2).unwrap();
    let again = m.cond_var(0).unwrap();
    assert_eq!(again, moved[0]);
    m.ensure_factor(&t1).unwrap();
    assert_eq!(m.cond_var(0).unwrap(), first[0]);
}
