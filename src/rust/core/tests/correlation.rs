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

/// Subjects nested in schools, random intercepts for both and a random slope for the
/// subject; rows shuffled unless `in_order` (the whitening then gathers predecessors).
fn nested(in_order: bool) -> (Data, Vec<u32>, Vec<f64>, Vec<u32>) {
    let (ns, nt) = (12usize, 6usize);
    let n = ns * nt;
    let mut order: Vec<usize> = (0..n).collect();
    if !in_order {
        order.sort_by_key(|&i| (i * 7919) % n);
    }
    let subj: Vec<u32> = order.iter().map(|&i| (i / nt) as u32).collect();
    let school: Vec<u32> = subj.iter().map(|&s| s / 4).collect();
    // irregular times, so that CAR(1) sees several gaps
    let t: Vec<f64> = order.iter().map(|&i| (i % nt) as f64 * 1.5 + ((i / nt) % 3) as f64 * 0.5 + 1.0).collect();
    let stratum: Vec<u32> = order.iter().map(|&i| ((i * 31) % 3) as u32).collect();
    let mut zs = vec![1.0; n];
    zs.extend(&t);
    let mut x = vec![1.0; n];
    x.extend(&t);
    let y: Vec<f64> = (0..n).map(|o| 2.0 + 0.4 * t[o] + (subj[o] as f64 * 1.7).sin() + ((o * 7) % 11) as f64 / 5.0 - 1.0 + 0.3 * stratum[o] as f64).collect();
    let d = Data {
        terms: vec![
            mixedrs_core::ReTerm::new(subj.clone(), ns, zs, 2, mixedrs_core::CovForm::Full).unwrap(),
            mixedrs_core::ReTerm::new(school, ns / 4, vec![1.0; n], 1, mixedrs_core::CovForm::Full).unwrap(),
        ],
        x,
        p: 2,
        y,
        w: None,
    };
    (d, subj, t, stratum)
}

#[test]
fn the_exact_eta_gradient_of_markov_structures_matches_differences() {
    use mixedrs_core::{VarFunc, VarPart};
    for in_order in [true, false] {
        let (d, subj, t, stratum) = nested(in_order);
        let n = d.y.len();
        let pos: Vec<f64> = t.iter().map(|v| (v * 2.0).round()).collect();
        let cases: Vec<(CorStruct, Option<VarFunc>, Vec<f64>)> = vec![
            (CorStruct::new(CorKind::Ar1, &subj, pos.clone()).unwrap(), None, vec![0.4]),
            (CorStruct::new(CorKind::Car1, &subj, t.clone()).unwrap(),
             Some(VarFunc::new(vec![VarPart::Power { covariate: t.clone() }], n).unwrap()), vec![0.3, 0.2]),
            (CorStruct::new(CorKind::Ar1, &subj, pos.clone()).unwrap(),
             Some(VarFunc::new(vec![VarPart::Ident { strata: stratum.clone(), nstrata: 3 }], n).unwrap()), vec![-0.5, 0.3, -0.4]),
            (CorStruct::independent(n),
             Some(VarFunc::new(vec![VarPart::ConstPower { covariate: t.clone() }], n).unwrap()), vec![-0.2, 0.6]),
            (CorStruct::new(CorKind::Car1, &subj, t.clone()).unwrap(),
             Some(VarFunc::new(vec![VarPart::Ident { strata: stratum.clone(), nstrata: 3 }, VarPart::Exp { covariate: t.clone() }], n).unwrap()),
             vec![1.0, 0.2, -0.3, 0.1]),
        ];
        for (ci, (cor, var, eta)) in cases.into_iter().enumerate() {
            for reml in [true, false] {
                let mut cm = CorrelatedModel::new(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), reml, cor.clone(), var.clone(), eta.clone()).unwrap();
                let theta = [0.8, 0.1, 0.3, 0.5];
                let g = cm.gradient(&theta, &eta).unwrap();
                for k in 0..eta.len() {
                    let h = 1e-5;
                    let (mut ep, mut em) = (eta.clone(), eta.clone());
                    ep[k] += h;
                    em[k] -= h;
                    let fd = (cm.objective(&theta, &ep).unwrap() - cm.objective(&theta, &em).unwrap()) / (2.0 * h);
                    let ex = g[theta.len() + k];
                    assert!((ex - fd).abs() < 1e-6 * (1.0 + fd.abs()), "case {ci} reml {reml} in_order {in_order} eta {k}: exact {ex} vs differences {fd}");
                }
                // and the θ part is unchanged by the structure's
                let fd0 = {
                    let h = 1e-6;
                    let (mut tp, mut tm) = (theta.to_vec(), theta.to_vec());
                    tp[0] += h;
                    tm[0] -= h;
                    (cm.objective(&tp, &eta).unwrap() - cm.objective(&tm, &eta).unwrap()) / (2.0 * h)
                };
                assert!((g[0] - fd0).abs() < 1e-5 * (1.0 + fd0.abs()));
            }
        }
    }
}

#[test]
fn varident_alone_forms_a_from_the_strata_as_the_rows_would() {
    use mixedrs_core::{VarFunc, VarPart};
    // 10 subjects × 30 rows: A is small beside the rows, so A(δ) is summed from the strata
    let (ns, nt) = (10usize, 30usize);
    let n = ns * nt;
    let subj: Vec<u32> = (0..n).map(|o| (o / nt) as u32).collect();
    let t: Vec<f64> = (0..n).map(|o| (o % nt) as f64 / 3.0).collect();
    let stratum: Vec<u32> = (0..n).map(|o| ((o * 13) % 3) as u32).collect();
    let mut x = vec![1.0; n];
    x.extend(&t);
    let y: Vec<f64> = (0..n).map(|o| 1.0 + 0.2 * t[o] + (subj[o] as f64).cos() + ((o * 17) % 7) as f64 / 4.0 * (1.0 + stratum[o] as f64)).collect();
    let term = || vec![mixedrs_core::ReTerm::new(subj.clone(), ns, vec![1.0; n], 1, mixedrs_core::CovForm::Full).unwrap()];
    let ident = VarFunc::new(vec![VarPart::Ident { strata: stratum.clone(), nstrata: 3 }], n).unwrap();
    // the same variance function with a factor of one more part: formed from the rows
    let rows = VarFunc::new(vec![VarPart::Ident { strata: stratum.clone(), nstrata: 3 }, VarPart::Fixed { covariate: vec![1.0; n] }], n).unwrap();
    for reml in [true, false] {
        let eta0 = vec![0.3, -0.2];
        let mut a = CorrelatedModel::new(term(), x.clone(), 2, y.clone(), reml, CorStruct::independent(n), Some(ident.clone()), eta0.clone()).unwrap();
        let mut b = CorrelatedModel::new(term(), x.clone(), 2, y.clone(), reml, CorStruct::independent(n), Some(rows.clone()), eta0.clone()).unwrap();
        for (theta, eta) in [(0.7, [0.3, -0.2]), (1.4, [-0.5, 0.8]), (0.2, [0.0, 0.0])] {
            let (fa, fb) = (a.objective(&[theta], &eta).unwrap(), b.objective(&[theta], &eta).unwrap());
            assert!((fa - fb).abs() < 1e-10 * fb.abs(), "{fa} vs {fb}");
            let (ga, gb) = (a.gradient(&[theta], &eta).unwrap(), b.gradient(&[theta], &eta).unwrap());
            assert!(ga.iter().zip(&gb).all(|(u, v)| (u - v).abs() < 1e-8 * (1.0 + v.abs())));
        }
        // the fit: the optimiser's criterion leaves the whitened copy of the data behind,
        // what the fit reads afterwards (β̂, fitted values, whitened residuals) catches up
        let ctl = mixedrs_core::FitControl::default();
        let (fa, fb) = (mixedrs_core::fit_correlated(&mut a, &ctl, true).unwrap(), mixedrs_core::fit_correlated(&mut b, &ctl, true).unwrap());
        assert!((fa.fit.criterion - fb.fit.criterion).abs() < 1e-8 * fb.fit.criterion.abs());
        assert!(fa.fit.beta.iter().zip(&fb.fit.beta).all(|(u, v)| (u - v).abs() < 1e-6 * (1.0 + v.abs())));
        assert!(fa.fit.fitted.iter().zip(&fb.fit.fitted).all(|(u, v)| (u - v).abs() < 1e-6 * (1.0 + v.abs())));
        let (ra, rb) = (a.whitened_residuals(&fa.fit.beta, &fa.fit.b), b.whitened_residuals(&fb.fit.beta, &fb.fit.b));
        assert!(ra.iter().zip(&rb).all(|(u, v)| (u - v).abs() < 1e-6 * (1.0 + v.abs())));
        // a new response re-forms the strata's A (a bootstrap replicate)
        let y2: Vec<f64> = y.iter().enumerate().map(|(o, v)| v + (o % 5) as f64 * 0.3).collect();
        a.set_response(&y2).unwrap();
        b.set_response(&y2).unwrap();
        let (fa, fb) = (a.objective(&[0.9], &[0.1, 0.4]).unwrap(), b.objective(&[0.9], &[0.1, 0.4]).unwrap());
        assert!((fa - fb).abs() < 1e-10 * fb.abs(), "after set_response: {fa} vs {fb}");
    }
}
