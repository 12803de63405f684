//! Data generators and dense reference computations shared by the core's tests.
#![allow(dead_code)]
use mixedrs_core::{CovForm, LinearMixedModel, ReTerm};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

pub struct Data {
    pub terms: Vec<ReTerm<'static>>,
    pub x: Vec<f64>,
    pub p: usize,
    pub y: Vec<f64>,
    pub w: Option<Vec<f64>>,
}

/// Three terms: a vector-valued term (k = 2) on 12 levels, a crossed scalar term on
/// 7 levels and a diagonal k = 2 term on 4 levels.
pub fn crossed_data(seed: u64, weighted: bool) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    let n = 150;
    let t: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..5.0)).collect();
    let g1: Vec<u32> = (0..n).map(|i| (i % 12) as u32).collect();
    let g2: Vec<u32> = (0..n).map(|_| rng.random_range(0..7)).collect();
    let g3: Vec<u32> = (0..n).map(|i| ((i / 3) % 4) as u32).collect();
    let mut z1 = vec![1.0; n];
    z1.extend(&t);
    let z2 = vec![1.0; n];
    let mut z3 = vec![1.0; n];
    z3.extend(t.iter().map(|v| v * 0.5));
    let mut x = vec![1.0; n];
    x.extend(&t);
    x.extend((0..n).map(|_| nrm.sample(&mut rng)));
    let y: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.5 * t[i] + g1[i] as f64 * 0.3 + (g2[i] as f64).sin() + nrm.sample(&mut rng))
        .collect();
    let w = weighted.then(|| (0..n).map(|_| rng.random_range(0.5..2.0)).collect());
    Data {
        terms: vec![
            ReTerm::new(g1, 12, z1, 2, CovForm::Full).unwrap(),
            ReTerm::new(g2, 7, z2, 1, CovForm::Full).unwrap(),
            ReTerm::new(g3, 4, z3, 2, CovForm::Diagonal).unwrap(),
        ],
        x,
        p: 3,
        y,
        w,
    }
}

/// Dense Z and block-diagonal Λ for θ.
pub fn dense_z_lambda(d: &Data, theta: &[f64]) -> (DMatrix<f64>, DMatrix<f64>) {
    let n = d.y.len();
    let q: usize = d.terms.iter().map(|t| t.q()).sum();
    let mut z = DMatrix::zeros(n, q);
    let mut lam = DMatrix::zeros(q, q);
    let (mut off, mut toff) = (0, 0);
    for t in &d.terms {
        let mut l = vec![0.0; t.k * t.k];
        t.fill_lambda(&theta[toff..toff + t.ntheta()], &mut l);
        for o in 0..n {
            for a in 0..t.k {
                z[(o, off + t.codes.get(o) * t.k + a)] = t.z[o + a * n];
            }
        }
        for lev in 0..t.nlevels {
            for a in 0..t.k {
                for b in 0..t.k {
                    lam[(off + lev * t.k + a, off + lev * t.k + b)] = l[a + b * t.k];
                }
            }
        }
        off += t.q();
        toff += t.ntheta();
    }
    (z, lam)
}

/// Profiled criterion from the marginal model V₀ = W⁻¹ + ZΛΛᵀZᵀ, no blocks at all.
pub fn marginal_criterion(d: &Data, theta: &[f64], reml: bool) -> (f64, DVector<f64>) {
    let n = d.y.len();
    let (z, lam) = dense_z_lambda(d, theta);
    let x = DMatrix::from_column_slice(n, d.p, &d.x);
    let y = DVector::from_column_slice(&d.y);
    let mut v0 = &z * &lam * lam.transpose() * z.transpose();
    let w = d.w.clone().unwrap_or(vec![1.0; n]);
    for i in 0..n {
        v0[(i, i)] += 1.0 / w[i];
    }
    let ch = v0.clone().cholesky().unwrap();
    let logdet_v0: f64 = 2.0 * ch.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
    let vix = ch.solve(&x);
    let viy = ch.solve(&y);
    let xtvix = x.transpose() * &vix;
    let beta = xtvix.clone().cholesky().unwrap().solve(&(x.transpose() * &viy));
    let r = &y - &x * &beta;
    let r2 = (r.transpose() * ch.solve(&r))[(0, 0)];
    let nf = n as f64;
    let tp = 2.0 * std::f64::consts::PI;
    // log|V₀| = log|L_θ|² − Σ log w, so the weights enter exactly as in lme4
    let dev = if reml {
        let nmp = nf - d.p as f64;
        let ldx = xtvix.determinant().ln();
        logdet_v0 + ldx + nmp * (1.0 + (tp * r2 / nmp).ln())
    } else {
        logdet_v0 + nf * (1.0 + (tp * r2 / nf).ln())
    };
    (dev, beta)
}

pub fn model(d: &Data, reml: bool) -> LinearMixedModel<'static> {
    LinearMixedModel::new(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), d.w.clone().map(Into::into), reml).unwrap()
}


/// Three nested terms, as `(x | school/class/student)` would give after sorting:
/// student (k = 1), class (k = 2, slope on x), school (k = 1). Class sizes and the
/// number of rows per student vary.
pub fn nested_data(seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    let (mut student, mut class, mut school) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ns, mut nc) = (0u32, 0u32);
    for sch in 0..5u32 {
        for _ in 0..rng.random_range(2..5) {
            for _ in 0..rng.random_range(2..6) {
                for _ in 0..rng.random_range(1..4) {
                    student.push(ns);
                    class.push(nc);
                    school.push(sch);
                }
                ns += 1;
            }
            nc += 1;
        }
    }
    let n = student.len();
    let t: Vec<f64> = (0..n).map(|_| nrm.sample(&mut rng)).collect();
    let mut zc = vec![1.0; n];
    zc.extend(&t);
    let mut x = vec![1.0; n];
    x.extend(&t);
    let y: Vec<f64> = (0..n).map(|i| 2.0 + t[i] + 0.4 * (class[i] as f64).sin() + 0.3 * school[i] as f64 + nrm.sample(&mut rng)).collect();
    Data {
        terms: vec![
            ReTerm::new(student, ns as usize, vec![1.0; n], 1, CovForm::Full).unwrap(),
            ReTerm::new(class, nc as usize, zc, 2, CovForm::Full).unwrap(),
            ReTerm::new(school, 5, vec![1.0; n], 1, CovForm::Full).unwrap(),
        ],
        x,
        p: 2,
        y,
        w: None,
    }
}

/// Central differences of the criterion, with steps small enough for 1e-6 agreement.
pub fn fd_gradient(m: &mut LinearMixedModel, theta: &[f64]) -> Vec<f64> {
    let mut t = theta.to_vec();
    (0..theta.len())
        .map(|i| {
            let h = 1e-6 * theta[i].abs().max(1.0);
            t[i] = theta[i] + h;
            let fp = m.objective(&t).unwrap();
            t[i] = theta[i] - h;
            let fm = m.objective(&t).unwrap();
            t[i] = theta[i];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// A random model: 1-3 terms (k 1 or 2, full or diagonal), random levels and data.
pub fn random_data(seed: u64, n: usize, nterms: usize) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    let t: Vec<f64> = (0..n).map(|_| nrm.sample(&mut rng)).collect();
    let mut terms = Vec::new();
    let mut nlev_used = Vec::new();
    for ti in 0..nterms {
        let nlev = rng.random_range(1..=(n / 2).max(1).min(9));
        let codes: Vec<u32> = (0..n).map(|o| if o < nlev { o as u32 } else { rng.random_range(0..nlev) as u32 }).collect();
        let k = if ti == 0 { rng.random_range(1..=2) } else { 1 };
        let mut z = vec![1.0; n];
        if k == 2 {
            z.extend(&t);
        }
        let cov = if k == 2 && rng.random_bool(0.5) { CovForm::Diagonal } else { CovForm::Full };
        nlev_used.push(nlev);
        terms.push(ReTerm::new(codes, nlev, z, k, cov).unwrap());
    }
    // largest first, as the R side sorts them
    terms.sort_by(|a, b| b.nlevels.cmp(&a.nlevels));
    let mut x = vec![1.0; n];
    x.extend(&t);
    let y = (0..n).map(|i| 0.5 + t[i] + nrm.sample(&mut rng)).collect();
    Data { terms, x, p: 2, y, w: None }
}
