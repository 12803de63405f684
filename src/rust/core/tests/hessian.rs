//! The exact second derivatives against Richardson-extrapolated central differences
//! of the criterion's pieces.
mod common;
use common::*;
use mixedrs_core::LinearMixedModel;

/// log|M| (REML: ldL2 + ldRX2, ML: ldL2), the PWRSS and (R_XᵀR_X)⁻¹ at θ.
fn pieces(m: &mut LinearMixedModel, theta: &[f64]) -> Vec<f64> {
    m.update_l(theta).unwrap();
    let c = m.parts();
    let mut v = vec![c.ldl2 + if m.reml { c.ldrx2 } else { 0.0 }, c.pwrss];
    v.extend(m.vcov_unscaled());
    v
}

/// First and second derivatives of the pieces by central differences at h, h/2, h/4
/// with Richardson extrapolation: (gradients [piece][i], Hessians of the first two).
fn reference(m: &mut LinearMixedModel, theta: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let n = theta.len();
    let f0 = pieces(m, theta);
    let np = f0.len();
    let rich = |d: [f64; 3]| {
        let a = (4.0 * d[1] - d[0]) / 3.0;
        let b = (4.0 * d[2] - d[1]) / 3.0;
        (16.0 * b - a) / 15.0
    };
    let mut grad = vec![vec![0.0; n]; np];
    let mut hess = vec![vec![0.0; n * n]; 2];
    let mut t = theta.to_vec();
    for i in 0..n {
        let h0 = 1e-2 * theta[i].abs().max(0.1);
        let mut d1 = vec![[0.0; 3]; np];
        let mut d2 = vec![[0.0; 3]; 2];
        for (lvl, h) in [h0, h0 / 2.0, h0 / 4.0].into_iter().enumerate() {
            t[i] = theta[i] + h;
            let fp = pieces(m, &t);
            t[i] = theta[i] - h;
            let fm = pieces(m, &t);
            t[i] = theta[i];
            for a in 0..np {
                d1[a][lvl] = (fp[a] - fm[a]) / (2.0 * h);
            }
            for a in 0..2 {
                d2[a][lvl] = (fp[a] - 2.0 * f0[a] + fm[a]) / (h * h);
            }
        }
        for a in 0..np {
            grad[a][i] = rich(d1[a]);
        }
        for a in 0..2 {
            hess[a][i + i * n] = rich(d2[a]);
        }
        for j in 0..i {
            let hj0 = 1e-2 * theta[j].abs().max(0.1);
            let mut d = vec![[0.0; 3]; 2];
            for (lvl, div) in [1.0, 2.0, 4.0].into_iter().enumerate() {
                let (hi, hj) = (h0 / div, hj0 / div);
                let mut corner = |si: f64, sj: f64| {
                    t[i] = theta[i] + si * hi;
                    t[j] = theta[j] + sj * hj;
                    let v = pieces(m, &t);
                    t[i] = theta[i];
                    t[j] = theta[j];
                    v
                };
                let (pp, pm, mp, mm) = (corner(1.0, 1.0), corner(1.0, -1.0), corner(-1.0, 1.0), corner(-1.0, -1.0));
                for a in 0..2 {
                    d[a][lvl] = (pp[a] - pm[a] - mp[a] + mm[a]) / (4.0 * hi * hj);
                }
            }
            for a in 0..2 {
                let v = rich(d[a]);
                hess[a][i + j * n] = v;
                hess[a][j + i * n] = v;
            }
        }
    }
    m.update_l(theta).unwrap();
    (grad, hess)
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    let scale = 1.0 + want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() < tol * scale, "{what}[{i}]: exact {a} vs differences {b} (scale {scale})");
    }
}

fn check(m: &mut LinearMixedModel, theta: &[f64], what: &str, expect_differenced: bool) {
    let (grad, hess) = reference(m, theta);
    m.update_l(theta).unwrap();
    let d = m.piece_derivatives().unwrap();
    assert_eq!(!d.differenced.is_empty(), expect_differenced, "{what}: differenced rows {:?}", d.differenced);
    close(&d.logdet_hessian, &hess[0], 1e-6, &format!("{what} log|M| Hessian"));
    close(&d.pwrss_hessian, &hess[1], 1e-6, &format!("{what} PWRSS Hessian"));
    close(&d.pwrss_gradient, &grad[1], 1e-7, &format!("{what} PWRSS gradient"));
    let p = m.p;
    for (i, jac) in d.vcov_jacobian.iter().enumerate() {
        let want: Vec<f64> = (0..p * p).map(|a| grad[2 + a][i]).collect();
        close(jac, &want, 1e-6, &format!("{what} d vcov / d theta[{i}]"));
    }
    // the factor is left at θ
    let again = pieces(m, theta);
    m.update_l(theta).unwrap();
    assert_eq!(m.theta(), theta);
    assert!(again[0].is_finite());
}

#[test]
fn crossed_terms_reml_and_ml_with_and_without_weights() {
    for weighted in [false, true] {
        let d = crossed_data(9, weighted);
        for reml in [true, false] {
            let mut m = model(&d, reml);
            check(&mut m, &[0.7, -0.3, 0.6, 1.4, 0.5, 0.9], &format!("crossed w={weighted} reml={reml}"), false);
            check(&mut m, &[1.3, 0.4, 0.2, 0.5, 1.1, 0.35], &format!("crossed w={weighted} reml={reml} (2)"), false);
        }
    }
}

#[test]
fn nested_terms_with_sparse_and_default_storage() {
    let d = nested_data(3);
    for share in [1.0, mixedrs_core::linalg::structure::SPARSE_MAX_SHARE] {
        for reml in [true, false] {
            let mut m = LinearMixedModel::with_sparse_share(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), None, reml, share).unwrap();
            check(&mut m, &[0.8, 1.2, -0.3, 0.6, 0.9], &format!("nested share={share} reml={reml}"), false);
        }
    }
}

/// A variance at zero (a boundary fit): that term's rows come from differences of the
/// exact gradient, the rest stay exact.
#[test]
fn boundary_theta_is_differenced_and_still_right() {
    let d = crossed_data(4, false);
    for reml in [true, false] {
        let mut m = model(&d, reml);
        check(&mut m, &[0.7, -0.3, 0.6, 0.0, 0.5, 0.9], &format!("boundary reml={reml}"), true);
    }
}
