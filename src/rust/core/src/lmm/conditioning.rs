//! Badly scaled data: a predictor far from 0 beside the intercept, a response whose
//! spread is tiny or huge, columns of Z on very different scales. θ̂ does not change when
//! y is replaced by (y − Xγ)/s, X by X S⁻¹ and a term's columns by a linear map of them
//! (β is profiled out; the covariance family is the same), so the optimiser runs on a
//! well-conditioned copy, and the fit is evaluated at θ̂ with only X and y conditioned
//! (Z as given, so θ keeps its meaning) and mapped back exactly.
use crate::error::Result;
use crate::lmm::fit::Fit;
use crate::lmm::reterm::{CovForm, ReTerm};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Rows used by the heuristic: all up to 20,000, else 20,000 evenly spaced ones.
fn sample_rows(n: usize) -> Vec<usize> {
    if n <= 20_000 {
        return (0..n).collect();
    }
    let m = 20_000;
    let mut rows: Vec<usize> = (0..m).map(|i| ((i as f64) * (n - 1) as f64 / (m - 1) as f64).round() as usize).collect();
    rows.dedup();
    rows
}

/// Whether X, y or a term's Z are scaled badly enough to cost the optimiser accuracy:
/// a response whose spread is tiny or huge, or small beside its mean; columns of X off
/// by 1e3 from unit size or nearly collinear; columns of Z off by 10.
pub fn ill_conditioned(x: &[f64], p: usize, y: &[f64], terms: &[ReTerm]) -> bool {
    let n = y.len();
    if n < 2 {
        return false;
    }
    let rows = sample_rows(n);
    let m = rows.len() as f64;
    let mean = rows.iter().map(|&i| y[i]).sum::<f64>() / m;
    let sd = (rows.iter().map(|&i| (y[i] - mean).powi(2)).sum::<f64>() / (m - 1.0)).sqrt();
    if !sd.is_finite() || sd == 0.0 {
        return false;
    }
    if sd < 1e-2 || sd > 1e2 || mean.abs() > 1e2 * sd {
        return true;
    }
    if p >= 1 && bad_columns(x, n, p, &rows, 1e3) {
        return true;
    }
    terms.iter().any(|t| bad_columns(&t.z, n, t.k, &rows, 10.0))
}

/// Columns (of an n×k column-major matrix, on `rows`) whose root mean square is off by
/// `limit` from 1, or whose correlation-scaled cross-product has a condition number
/// above 1e6. A column of zeros is left alone (the model's checks deal with it).
fn bad_columns(mat: &[f64], n: usize, k: usize, rows: &[usize], limit: f64) -> bool {
    let m = rows.len() as f64;
    let ns: Vec<f64> = (0..k).map(|j| (rows.iter().map(|&i| mat[i + j * n].powi(2)).sum::<f64>() / m).sqrt()).collect();
    if ns.iter().any(|&v| v == 0.0) {
        return false;
    }
    if ns.iter().any(|&v| v < 1.0 / limit || v > limit) {
        return true;
    }
    if k < 2 {
        return false;
    }
    let mut g = DMatrix::zeros(k, k);
    for a in 0..k {
        for b in 0..=a {
            let v = rows.iter().map(|&i| mat[i + a * n] * mat[i + b * n]).sum::<f64>() / (ns[a] * ns[b]);
            g[(a, b)] = v;
            g[(b, a)] = v;
        }
    }
    let ev = SymmetricEigen::new(g).eigenvalues;
    let (lo, hi) = (ev.min(), ev.max());
    lo <= 0.0 || hi / lo > 1e6
}

/// The map between the data and their X- and y-conditioned copy:
/// y = X β_ols + s·y*, X = X* Sx, so β = β_ols + s Sx⁻¹ β*, b = s b*, σ = s σ*.
#[derive(Debug, Clone)]
pub struct XyMap {
    /// Sx (p×p upper triangular, column-major) and its inverse.
    pub sx: Vec<f64>,
    pub sx_inv: Vec<f64>,
    pub beta_ols: Vec<f64>,
    pub s: f64,
    pub p: usize,
}

/// X* = X Sx⁻¹ orthonormal (in the weighted inner product, up to √n) and y* the OLS
/// residual scaled to unit size; the map back. X is left alone when it is rank deficient.
pub fn condition_xy(x: &[f64], p: usize, y: &[f64], w: Option<&[f64]>) -> (Vec<f64>, Vec<f64>, XyMap) {
    let n = y.len();
    let nf = n as f64;
    let sw: Vec<f64> = match w {
        Some(w) => w.iter().map(|v| v.sqrt()).collect(),
        None => vec![1.0; n],
    };
    let mut sx = identity(p);
    let mut sx_inv = identity(p);
    let mut beta_ols = vec![0.0; p];
    let mut xs = x.to_vec();
    let mut r: Vec<f64> = y.to_vec();
    if p > 0 {
        let xw = DMatrix::from_fn(n, p, |i, j| x[i + j * n] * sw[i]);
        let qr = xw.qr();
        let rm = qr.r();
        let dmax = (0..p).map(|j| rm[(j, j)].abs()).fold(0.0, f64::max);
        if (0..p).all(|j| rm[(j, j)].abs() > 1e-7 * dmax) {
            let yw = DVector::from_fn(n, |i, _| y[i] * sw[i]);
            let qty = qr.q().transpose() * yw;
            let b = rm.solve_upper_triangular(&qty).expect("full-rank R");
            beta_ols = b.iter().copied().collect();
            for (i, ri) in r.iter_mut().enumerate() {
                *ri -= (0..p).map(|j| x[i + j * n] * beta_ols[j]).sum::<f64>();
            }
            let s_mat = rm / nf.sqrt();
            let s_inv = s_mat.clone().try_inverse().expect("full-rank R");
            sx = s_mat.iter().copied().collect();
            sx_inv = s_inv.iter().copied().collect();
            // X* = X Sx⁻¹, column j = Σ_a X[, a] Sx⁻¹[a, j]
            for j in 0..p {
                for i in 0..n {
                    xs[i + j * n] = (0..=j).map(|a| x[i + a * n] * sx_inv[a + j * p]).sum();
                }
            }
        }
    }
    let mut s = (r.iter().zip(&sw).map(|(v, w)| w * w * v * v).sum::<f64>() / nf).sqrt();
    if !s.is_finite() || s == 0.0 {
        s = 1.0;
    }
    for v in r.iter_mut() {
        *v /= s;
    }
    (xs, r, XyMap { sx, sx_inv, beta_ols, s, p })
}

fn identity(p: usize) -> Vec<f64> {
    let mut m = vec![0.0; p * p];
    for j in 0..p {
        m[j + j * p] = 1.0;
    }
    m
}

/// How a term's columns were conditioned (Z = Z* S or per-column scales), to map θ back.
#[derive(Debug, Clone)]
pub enum ZMap {
    Unchanged,
    Full(Vec<f64>),
    Scale(Vec<f64>),
}

/// A term's columns conditioned for the optimiser: orthonormalised (a full Λ: Z = Z* S,
/// S upper triangular) or scaled to unit root mean square (scalar or diagonal Λ).
pub fn condition_z(t: &ReTerm) -> (Vec<f64>, ZMap) {
    let n = t.codes.len();
    let k = t.k;
    if k > 1 && t.cov == CovForm::Full {
        let z = DMatrix::from_column_slice(n, k, &t.z);
        let rm = z.qr().r();
        let dmax = (0..k).map(|j| rm[(j, j)].abs()).fold(0.0, f64::max);
        if !(0..k).all(|j| rm[(j, j)].abs() > 1e-7 * dmax) {
            return (t.z.to_vec(), ZMap::Unchanged);
        }
        let s = rm / (n as f64).sqrt();
        let s_inv = s.clone().try_inverse().expect("full-rank R");
        let zs = DMatrix::from_column_slice(n, k, &t.z) * s_inv;
        return (zs.iter().copied().collect(), ZMap::Full(s.iter().copied().collect()));
    }
    let sc: Vec<f64> = (0..k).map(|j| (t.z[j * n..(j + 1) * n].iter().map(|v| v * v).sum::<f64>() / n as f64).sqrt()).collect();
    if sc.iter().any(|&v| v == 0.0) {
        return (t.z.to_vec(), ZMap::Unchanged);
    }
    let mut zs = t.z.to_vec();
    for j in 0..k {
        for v in &mut zs[j * n..(j + 1) * n] {
            *v /= sc[j];
        }
    }
    (zs, ZMap::Scale(sc))
}

/// θ of the model as given from θ* of the one with conditioned Z: per term Λ = S⁻¹Λ*, as
/// the lower Cholesky factor of S⁻¹Λ*Λ*ᵀS⁻ᵀ (a zero pivot gives a zero column).
pub fn unconditioned_theta(terms: &[ReTerm], theta_star: &[f64], maps: &[ZMap]) -> Vec<f64> {
    let mut out = Vec::with_capacity(theta_star.len());
    let mut off = 0;
    for (t, map) in terms.iter().zip(maps) {
        let nth = t.ntheta();
        let th = &theta_star[off..off + nth];
        off += nth;
        match map {
            ZMap::Unchanged => out.extend_from_slice(th),
            ZMap::Scale(sc) => out.extend(t.theta_layout().iter().zip(th).map(|(&(i, _), v)| v / sc[i])),
            ZMap::Full(s) => {
                let k = t.k;
                let mut lam = vec![0.0; k * k];
                t.fill_lambda(th, &mut lam);
                let s_inv = DMatrix::from_column_slice(k, k, s).try_inverse().expect("full-rank S");
                let l = s_inv * DMatrix::from_column_slice(k, k, &lam);
                let c = &l * l.transpose();
                let ch = semidefinite_chol(&c);
                out.extend(t.theta_layout().iter().map(|&(i, j)| ch[(i, j)]));
            }
        }
    }
    out
}

/// Lower Cholesky factor that tolerates a semidefinite matrix.
fn semidefinite_chol(c: &DMatrix<f64>) -> DMatrix<f64> {
    let k = c.nrows();
    let tol = 1e-14 * (0..k).map(|i| c[(i, i)]).fold(0.0, f64::max);
    let mut l = DMatrix::zeros(k, k);
    for j in 0..k {
        let d = c[(j, j)] - (0..j).map(|a| l[(j, a)] * l[(j, a)]).sum::<f64>();
        l[(j, j)] = if d > tol { d.sqrt() } else { 0.0 };
        for i in j + 1..k {
            l[(i, j)] = if l[(j, j)] > 0.0 { (c[(i, j)] - (0..j).map(|a| l[(i, a)] * l[(j, a)]).sum::<f64>()) / l[(j, j)] } else { 0.0 };
        }
    }
    l
}

/// A fit of the X- and y-conditioned data in the data's units. `x` is X as given and
/// `criterion` recomputes the criterion from the mapped parts (the model's formula).
pub fn unconditioned_fit(mut f: Fit, map: &XyMap, x: &[f64], n: usize, criterion: impl Fn(f64, f64, f64) -> f64) -> Result<Fit> {
    let (p, s) = (map.p, map.s);
    if p > 0 {
        let si = &map.sx_inv;
        let beta_star = f.beta.clone();
        f.beta = (0..p).map(|a| map.beta_ols[a] + s * (0..p).map(|b| si[a + b * p] * beta_star[b]).sum::<f64>()).collect();
        // vcov = s² Si V* Siᵀ
        let v = DMatrix::from_column_slice(p, p, &f.vcov_beta);
        let sim = DMatrix::from_column_slice(p, p, si);
        let vm = (&sim * v * sim.transpose()) * (s * s);
        f.vcov_beta = vm.iter().copied().collect();
        f.ldrx2 += 2.0 * (0..p).map(|j| map.sx[j + j * p].abs().ln()).sum::<f64>();
        for (i, fi) in f.fitted.iter_mut().enumerate() {
            *fi = (0..p).map(|a| x[i + a * n] * map.beta_ols[a]).sum::<f64>() + s * *fi;
        }
    } else {
        for fi in f.fitted.iter_mut() {
            *fi *= s;
        }
    }
    f.sigma *= s;
    for bt in f.b.iter_mut().chain(f.u.iter_mut()) {
        for v in bt.iter_mut() {
            *v *= s;
        }
    }
    f.pwrss *= s * s;
    f.criterion = criterion(f.ldl2, f.ldrx2, f.pwrss);
    Ok(f)
}
