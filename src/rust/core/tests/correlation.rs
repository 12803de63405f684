//! Correlated residuals: the whitened blocked criterion against the dense marginal
//! likelihood with V = σ²(ZΛΛᵀZᵀ + Ψ), Ψ block-diagonal over the correlation groups.
mod common;
use common::*;
use mixedrs_core::{CorKind, CorStruct, CorrelatedModel};
use nalgebra::{DMatrix, DVector};

/// Four subjects with six ordered times each, a random intercept per subject.
fn grouped() -> Data {
    let n = 24;
    let codes: Vec<u32> = (0..n).map(|i| (i / 6) as u32).collect();
    let t: Vec<f64> = (0..n).map(|i| (i % 6) as f64 + 1.0).collect();
    let mut x = vec![1.0; n];
    x.extend(&t);
    let y: Vec<f64> = (0..n).map(|i| 1.0 + 0.3 * t[i] + ((i * 7919 % 13) as f64 / 6.0 - 1.0) + 0.5 * (codes[i] as f64)).collect();
    Data { terms: vec![mixedrs_core::ReTerm::new(codes, 4, vec![1.0; n], 1, mixedrs_core::CovForm::Full).unwrap()], x, p: 2, y, w: None }
}

fn dense_criterion(d: &Data, theta: &[f64], psi: &DMatrix<f64>, reml: bool) -> f64 {
    let n = d.y.len();
    let (z, lam) = dense_z_lambda(d, theta);
    let x = DMatrix::from_column_slice(n, d.p, &d.x);
    let y = DVector::from_column_slice(&d.y);
    let v0 = &z * &lam * lam.transpose() * z.transpose() + psi;
    let ch = v0.clone().cholesky().unwrap();
    let logdet: f64 = 2.0 * ch.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
    let vix = ch.solve(&x);
    let xtvix = x.transpose() * &vix;
    let beta = xtvix.clone().cholesky().unwrap().solve(&(x.transpose() * ch.solve(&y)));
    let r = &y - &x * &beta;
    let r2 = (r.transpose() * ch.solve(&r))[(0, 0)];
    let tp = 2.0 * std::f64::consts::PI;
    if reml {
        let nmp = (n - d.p) as f64;
        logdet + xtvix.determinant().ln() + nmp * (1.0 + (tp * r2 / nmp).ln())
    } else {
        logdet + n as f64 * (1.0 + (tp * r2 / n as f64).ln())
    }
}

#[test]
fn ar1_and_compound_symmetry_match_the_dense_likelihood() {
    let d = grouped();
    let n = d.y.len();
    let times: Vec<f64> = (0..n).map(|i| (i % 6) as f64 + 1.0).collect();
    let codes: Vec<u32> = (0..n).map(|i| (i / 6) as u32).collect();
    for (kind, phi) in [(CorKind::Ar1, 0.6), (CorKind::Ar1, -0.3), (CorKind::CompSymm, 0.25)] {
        let cor = CorStruct::new(kind, &codes, times.clone()).unwrap();
        let eta = cor.unconstrained(&[phi]);
        let mut psi = DMatrix::zeros(n, n);
        for i in 0..n {
            for j in 0..n {
                if codes[i] == codes[j] {
                    psi[(i, j)] = match kind {
                        CorKind::Ar1 => phi.powf((times[i] - times[j]).abs()),
                        _ => if i == j { 1.0 } else { phi },
                    };
                }
            }
        }
        for reml in [true, false] {
            let mut cm = CorrelatedModel::new(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), reml, cor.clone(), None, eta.clone()).unwrap();
            for th in [0.4, 1.3] {
                let ours = cm.objective(&[th], &eta).unwrap();
                let want = dense_criterion(&d, &[th], &psi, reml);
                assert!((ours - want).abs() < 1e-8 * want.abs(), "{:?} φ {} reml {} θ {}: {} vs {}", kind, phi, reml, th, ours, want);
            }
        }
    }
}

#[test]
fn groups_that_cut_across_a_grouping_factor_are_refused() {
    let d = grouped();
    let n = d.y.len();
    let codes: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let cor = CorStruct::new(CorKind::CompSymm, &codes, vec![1.0; n]).unwrap();
    assert!(CorrelatedModel::new(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), true, cor, None, vec![0.0]).is_err());
}
