//! Where the optimiser starts: every starting value of θ is chosen here.
//!
//! - lme4's start, Λ = I ([`LinearMixedModel::theta_start`]);
//! - on large data with scalar terms only, moment estimates read from A
//!   ([`LinearMixedModel::theta_moment_start`]), which save gradients;
//! - for a model of random intercepts only evaluated without optimising (lme4's
//!   `optimizer = NULL`), lme4's variance-ratio start ([`LinearMixedModel::variance_ratio_start`]);
//! - on tiny data, the extra starts of the multistart ([`MULTISTART_DIAGONALS`]).
use crate::linalg::blocks::Block;
use crate::linalg::{dense, tri};
use crate::lmm::model::LinearMixedModel;

/// From this many observations the optimiser starts from moment estimates
/// ([`LinearMixedModel::default_start`]).
pub const MOMENT_START_MIN_ROWS: usize = 10_000;

/// Up to this many rows the fit also starts from Λ diagonals [`MULTISTART_DIAGONALS`]
/// (zero off the diagonal) and keeps the lowest criterion: on a few rows per group the
/// criterion often has several local minima, and lme4's start can end in the higher one.
/// Such fits take about a millisecond.
pub const MULTISTART_MAX_ROWS: usize = 100;
pub const MULTISTART_DIAGONALS: [f64; 3] = [0.1, 3.0, 30.0];

impl LinearMixedModel<'_> {
    pub fn theta_start(&self) -> Vec<f64> {
        self.terms.iter().flat_map(|t| t.theta_start()).collect()
    }
    /// Where the optimiser starts without a start from the user: lme4's (Λ = I), or on
    /// large data with scalar terms only, [`Self::theta_moment_start`]. On small data the
    /// criterion can have several minima and lme4's start decides which one lme4 reports,
    /// so mixedrs starts there too.
    pub fn default_start(&self) -> Vec<f64> {
        if self.n >= MOMENT_START_MIN_ROWS {
            if let Some(t) = self.theta_moment_start() {
                return t;
            }
        }
        self.theta_start()
    }
    /// θ from moments when every term is scalar (k = 1), read from A's blocks (no pass
    /// over the data). On the OLS residuals r, term t's level l has the least-squares
    /// effect û_l = (zᵀr)_l / d_l, d_l = (zᵀz)_l, and σ_t² = (RSS − Σ_l d_l û_l²) /
    /// (n − p − levels) is what that term leaves; it still holds the other terms'
    /// variance, so σ² is the smallest σ_t². Then σ_b² = mean_l(û_l² − σ²/d_l) and
    /// θ_t = σ_b/σ, kept within [0.1, 10] (θ = 0 is a stationary point BFGS cannot leave).
    /// InstEval's start from Λ = I spent five of ten iterations getting near θ̂. None
    /// when X'X is singular or the residuals vanish.
    pub fn theta_moment_start(&self) -> Option<Vec<f64>> {
        if self.terms.iter().any(|t| t.k != 1) {
            return None;
        }
        let (nt, p, m) = (self.terms.len(), self.p, self.p + 1);
        let axx = self.a[tri(nt, nt)].as_dense()?;
        // β_ols from X'X (lower triangle of A's last block) and X'y (its y row)
        let mut xtx: Vec<f64> = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| axx.data[i.max(j) + i.min(j) * m]).collect();
        let xty: Vec<f64> = (0..p).map(|a| axx.data[p + a * m]).collect();
        dense::chol_lower(&mut xtx, p).ok()?;
        let mut beta = xty.clone();
        dense::solve_lower(&xtx, p, &mut beta);
        dense::solve_lower_t(&xtx, p, &mut beta);
        let rss = axx.data[p + p * m] - beta.iter().zip(&xty).map(|(b, v)| b * v).sum::<f64>();
        let nf = self.n as f64;
        // per term: Σ û_l², Σ 1/d_l, the number of levels, and σ_t²
        let mut moments = Vec::with_capacity(nt);
        for (t, term) in self.terms.iter().enumerate() {
            let (azt, att) = match (&self.a[tri(nt, t)], &self.a[tri(t, t)]) {
                (Block::Dense(x), Block::Diag(d)) => (x, d),
                _ => return None,
            };
            let (mut ssb, mut sum_u2, mut sum_inv_d, mut levels) = (0.0, 0.0, 0.0, 0.0);
            for l in 0..term.nlevels {
                let d = att.block(l)[0];
                if d <= 0.0 {
                    continue;
                }
                let col = &azt.data[l * m..(l + 1) * m];
                let u = (col[p] - (0..p).map(|a| col[a] * beta[a]).sum::<f64>()) / d;
                ssb += d * u * u;
                sum_u2 += u * u;
                sum_inv_d += 1.0 / d;
                levels += 1.0;
            }
            let df = nf - p as f64 - levels;
            let sigma2 = if df > 0.0 { (rss - ssb) / df } else { rss / (nf - p as f64).max(1.0) };
            moments.push((sum_u2, sum_inv_d, levels, sigma2));
        }
        let sigma2 = moments.iter().map(|m| m.3).fold(f64::INFINITY, f64::min);
        if !(sigma2 > 0.0) || !sigma2.is_finite() || moments.iter().any(|m| m.2 == 0.0) {
            return None;
        }
        Some(moments.iter().map(|&(su2, sid, lev, _)| (((su2 - sigma2 * sid) / lev).max(0.0) / sigma2).sqrt().clamp(0.1, 10.0)).collect())
    }

    /// lme4's start for a model whose terms are all random intercepts: √(v_t / v_e),
    /// v_t the variance of y's group means over the rows of term t and v_e what remains of
    /// y's variance; None when that is not positive or another kind of term is present.
    pub fn variance_ratio_start(&self) -> Option<Vec<f64>> {
        if self.terms.iter().any(|t| t.k != 1 || t.z.iter().any(|&z| z != 1.0)) {
            return None;
        }
        let n = self.n as f64;
        let mean = self.y.iter().sum::<f64>() / n;
        let var = |v: &mut dyn Iterator<Item = f64>| v.map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
        let vy = var(&mut self.y.iter().copied());
        let mut v = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let (mut sum, mut cnt) = (vec![0.0; t.nlevels], vec![0.0; t.nlevels]);
            for (o, c) in t.codes.iter().enumerate() {
                sum[c] += self.y[o];
                cnt[c] += 1.0;
            }
            let means: Vec<f64> = sum.iter().zip(&cnt).map(|(s, c)| s / c).collect();
            v.push(var(&mut t.codes.iter().map(|c| means[c])));
        }
        let ve = vy - v.iter().sum::<f64>();
        if !(ve > 0.0) {
            return None;
        }
        Some(v.iter().map(|vt| (vt / ve).sqrt()).collect())
    }

    /// The θ of one of the multistart's starts: `diag` on every diagonal of Λ, 0 below.
    pub fn theta_with_diagonal(&self, diag: f64) -> Vec<f64> {
        self.terms.iter().flat_map(|t| t.theta_layout().iter().map(move |&(i, j)| if i == j { diag } else { 0.0 })).collect()
    }
}
