//! The selected inverse of the blocked factor: conditional variances of the random
//! effects against the dense inverse of M = ΛᵀZᵀWZΛ + I, on crossed and nested data.
mod common;
use common::*;
use nalgebra::DMatrix;

fn dense_condvar(d: &Data, theta: &[f64]) -> DMatrix<f64> {
    let n = d.y.len();
    let (z, lam) = dense_z_lambda(d, theta);
    let w = d.w.clone().unwrap_or(vec![1.0; n]);
    let mut zw = z.clone();
    for i in 0..n {
        for j in 0..zw.ncols() {
            zw[(i, j)] *= w[i].sqrt();
        }
    }
    let zl = &zw * &lam;
    let q = zl.ncols();
    let m = zl.transpose() * &zl + DMatrix::identity(q, q);
    // Var(b | y)/σ² = Λ M⁻¹ Λᵀ (with β known, as lme4's condVar)
    &lam * m.try_inverse().unwrap() * lam.transpose()
}

fn check(d: &Data, theta: &[f64]) {
    let mut m = model(d, false);
    m.update_l(theta).unwrap();
    let full = dense_condvar(d, theta);
    let mut off = 0;
    for t in 0..d.terms.len() {
        let term = &d.terms[t];
        let cv = m.cond_var(t).unwrap();
        let k = term.k;
        for lev in 0..term.nlevels {
            for a in 0..k {
                for b in 0..k {
                    let ours = cv[lev * k * k + a + b * k];
                    let want = full[(off + lev * k + a, off + lev * k + b)];
                    assert!((ours - want).abs() < 1e-9 * (1.0 + want.abs()), "term {} level {} ({}, {}): {} vs {}", t, lev, a, b, ours, want);
                }
            }
        }
        off += term.q();
    }
}

#[test]
fn crossed_terms_with_and_without_weights() {
    for weighted in [false, true] {
        let d = crossed_data(5, weighted);
        check(&d, &[0.8, -0.3, 0.5, 1.2, 0.7, 0.4]);
        // on the boundary (zeros in θ) the selected inverse still holds
        check(&d, &[0.8, 0.0, 0.0, 1.2, 0.0, 0.4]);
    }
}

#[test]
fn nested_terms() {
    let d = nested_data(9);
    check(&d, &[0.9, 0.6, 0.2, 0.5, 1.1]);
    check(&d, &[0.0, 0.6, 0.0, 0.5, 1.1]);
}
