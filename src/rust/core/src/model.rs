//! `LinearMixedModel`: the blocked A = [Z X y]ᵀ[Z X y], formed once, and its
//! Cholesky factor L(θ), updated in place at each θ by [`LinearMixedModel::update_l`].
//!
//! Block rows/columns are the random-effects terms (sorted by number of levels,
//! largest first) and then one block for [X y]. With `nt` terms:
//! * [0,0] is block-diagonal ([`BlockDiagonal`]), so it never fills in;
//! * [i,0] for terms i ≥ 1 is block-sparse ([`BlockSparse`]) with the pattern of the data;
//! * [nt,0] (the [X y] rows against the first term) is dense (p+1)×q₀;
//! * everything with both indices ≥ 1 is dense.
//! Once A is formed, nothing here touches the n observations again, so one
//! evaluation costs the same whatever n is.
use crate::blocks::{scale_block, scale_dense_cols, scale_dense_rows, BlockDiagonal, BlockSparse};
use crate::dense;
use crate::error::{MixedError, Result};
use crate::reterm::ReTerm;

/// Storage for A or L, with identical structure.
#[derive(Debug, Clone)]
struct Blocked {
    diag0: BlockDiagonal,
    /// [i,0] for terms i = 1..nt (index i-1).
    sparse: Vec<BlockSparse>,
    /// [nt,0]: (p+1) × q₀, column-major.
    fe0: Vec<f64>,
    /// Lower triangle of blocks [i,j] with 1 ≤ j ≤ i ≤ nt, row by row.
    dense: Vec<Vec<f64>>,
}

fn tri(i: usize, j: usize) -> usize {
    (i - 1) * i / 2 + (j - 1)
}

/// The parts of the profiled criterion at one θ.
#[derive(Debug, Clone, Copy)]
pub struct CriterionParts {
    /// log |L_θ|², the random-effects part of the factor.
    pub ldl2: f64,
    /// log |R_X|².
    pub ldrx2: f64,
    /// Penalised weighted residual sum of squares.
    pub pwrss: f64,
}

pub struct LinearMixedModel {
    pub terms: Vec<ReTerm>,
    /// n×p fixed-effects matrix, column-major, unweighted.
    pub x: Vec<f64>,
    pub p: usize,
    /// Response with any offset already subtracted, unweighted.
    pub y: Vec<f64>,
    pub n: usize,
    pub reml: bool,
    /// Σ log wᵢ (0 without weights), as in lme4's criterion.
    pub log_det_w: f64,
    /// Prior weights, if any.
    weights: Option<Vec<f64>>,
    a: Blocked,
    l: Blocked,
    lambdas: Vec<Vec<f64>>,
    theta: Vec<f64>,
    theta_offsets: Vec<usize>,
    /// Scratch for one k×k block.
    tmp: Vec<f64>,
    /// faer's workspace for the largest dense diagonal block.
    chol_work: faer::dyn_stack::MemBuffer,
    /// Whether term j's diagonal block of L stays block-diagonal (index j, 1 ≤ j < nt).
    /// A property of the data's pattern: found once, at a θ with no zero on Λ's
    /// diagonal (a zero could hide fill-in), then reused at every evaluation.
    block_diag: Vec<Option<bool>>,
}

/// Dense blocks beyond this many scalars in total are refused rather than allocated.
const MAX_DENSE_ELEMENTS: usize = 1usize << 31;

/// A copy for another thread: everything but faer's workspace, which is made afresh.
impl Clone for LinearMixedModel {
    fn clone(&self) -> Self {
        let maxdim = (1..=self.terms.len()).map(|i| self.dim(i)).max().unwrap_or(1);
        LinearMixedModel {
            terms: self.terms.clone(),
            x: self.x.clone(),
            p: self.p,
            y: self.y.clone(),
            n: self.n,
            reml: self.reml,
            log_det_w: self.log_det_w,
            weights: self.weights.clone(),
            a: self.a.clone(),
            l: self.l.clone(),
            lambdas: self.lambdas.clone(),
            theta: self.theta.clone(),
            theta_offsets: self.theta_offsets.clone(),
            tmp: self.tmp.clone(),
            chol_work: dense::chol_workspace(maxdim),
            block_diag: self.block_diag.clone(),
        }
    }
}

impl LinearMixedModel {
    pub fn new(
        terms: Vec<ReTerm>,
        x: Vec<f64>,
        p: usize,
        y: Vec<f64>,
        weights: Option<Vec<f64>>,
        reml: bool,
    ) -> Result<Self> {
        let n = y.len();
        if n == 0 {
            return Err(MixedError::Input("no observations".into()));
        }
        if terms.is_empty() {
            return Err(MixedError::Input("no random-effects terms".into()));
        }
        if x.len() != n * p {
            return Err(MixedError::Input(format!("X has {} values, expected {} x {}", x.len(), n, p)));
        }
        if y.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Input("response has non-finite values".into()));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Input("fixed-effects model matrix has non-finite values".into()));
        }
        if reml && p >= n {
            return Err(MixedError::Input(format!("REML needs more observations ({}) than fixed effects ({})", n, p)));
        }
        for (i, t) in terms.iter().enumerate() {
            if t.codes.len() != n {
                return Err(MixedError::Input(format!(
                    "random-effects term {} has {} observations, expected {}",
                    i + 1,
                    t.codes.len(),
                    n
                )));
            }
        }
        let sqrtw = match weights {
            None => None,
            Some(w) => {
                if w.len() != n {
                    return Err(MixedError::Input(format!("weights have length {}, expected {}", w.len(), n)));
                }
                if w.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                    return Err(MixedError::Input("weights must be finite and positive".into()));
                }
                Some(w)
            }
        };
        let log_det_w = sqrtw.as_ref().map_or(0.0, |w| w.iter().map(|v| v.ln()).sum());
        let weights = sqrtw.clone();
        let sqrtw: Option<Vec<f64>> = sqrtw.map(|w| w.iter().map(|v| v.sqrt()).collect());

        let nt = terms.len();
        let dims: Vec<usize> = terms.iter().map(|t| t.q()).chain(std::iter::once(p + 1)).collect();
        let dense_total: usize = (1..=nt).map(|i| (1..=i).map(|j| dims[i] * dims[j]).sum::<usize>()).sum();
        if dense_total > MAX_DENSE_ELEMENTS {
            return Err(MixedError::Numerical(format!(
                "the dense blocks of this model would need {} values; too many levels in the second and later grouping factors",
                dense_total
            )));
        }
        let a = Self::form_a(&terms, &x, p, &y, n, sqrtw.as_deref());
        let l = a.clone();
        let lambdas = terms.iter().map(|t| vec![0.0; t.k * t.k]).collect();
        let mut theta_offsets = vec![0];
        for t in &terms {
            let last = *theta_offsets.last().unwrap_or(&0);
            theta_offsets.push(last + t.ntheta());
        }
        let kmax = terms.iter().map(|t| t.k).max().unwrap_or(1);
        let theta = terms.iter().flat_map(|t| t.theta_start()).collect();
        Ok(LinearMixedModel {
            terms,
            x,
            p,
            y,
            n,
            reml,
            log_det_w,
            weights,
            a,
            l,
            lambdas,
            theta,
            theta_offsets,
            tmp: vec![0.0; kmax * kmax],
            chol_work: dense::chol_workspace(dims[1..].iter().copied().max().unwrap_or(1)),
            block_diag: vec![None; nt],
        })
    }

    /// Form every block of A from the data. The only pass over the n observations.
    fn form_a(terms: &[ReTerm], x: &[f64], p: usize, y: &[f64], n: usize, sqrtw: Option<&[f64]>) -> Blocked {
        let nt = terms.len();
        let w = |o: usize| sqrtw.map_or(1.0, |s| s[o] * s[o]);
        let xy = |o: usize, a: usize| if a < p { x[o + a * n] } else { y[o] };
        let t0 = &terms[0];
        let k0 = t0.k;
        let mut diag0 = BlockDiagonal::zeros(k0, t0.nlevels);
        for o in 0..n {
            let wo = w(o);
            let blk = diag0.block_mut(t0.codes[o] as usize);
            for b in 0..k0 {
                let zb = t0.z[o + b * n] * wo;
                for a in 0..k0 {
                    blk[a + b * k0] += t0.z[o + a * n] * zb;
                }
            }
        }
        let sparse = (1..nt)
            .map(|i| {
                let ti = &terms[i];
                BlockSparse::cross_product(&ti.codes, &ti.z, ti.k, ti.nlevels, &t0.codes, &t0.z, k0, t0.nlevels, sqrtw)
            })
            .collect();
        let m = p + 1;
        let mut fe0 = vec![0.0; m * t0.q()];
        for o in 0..n {
            let wo = w(o);
            let lev = t0.codes[o] as usize;
            for b in 0..k0 {
                let zb = t0.z[o + b * n] * wo;
                let col = &mut fe0[(lev * k0 + b) * m..(lev * k0 + b + 1) * m];
                for (a, c) in col.iter_mut().enumerate() {
                    *c += xy(o, a) * zb;
                }
            }
        }
        let mut dense = Vec::new();
        for i in 1..=nt {
            for j in 1..=i {
                let blk = if i < nt {
                    let (ti, tj) = (&terms[i], &terms[j]);
                    let (qi, ki, kj) = (ti.q(), ti.k, tj.k);
                    let mut blk = vec![0.0; qi * tj.q()];
                    for o in 0..n {
                        let wo = w(o);
                        let (ri, cj) = (ti.codes[o] as usize * ki, tj.codes[o] as usize * kj);
                        for b in 0..kj {
                            let zb = tj.z[o + b * n] * wo;
                            for a in 0..ki {
                                blk[(ri + a) + (cj + b) * qi] += ti.z[o + a * n] * zb;
                            }
                        }
                    }
                    blk
                } else if j < nt {
                    let tj = &terms[j];
                    let kj = tj.k;
                    let mut blk = vec![0.0; m * tj.q()];
                    for o in 0..n {
                        let wo = w(o);
                        let cj = tj.codes[o] as usize * kj;
                        for b in 0..kj {
                            let zb = tj.z[o + b * n] * wo;
                            for a in 0..m {
                                blk[a + (cj + b) * m] += xy(o, a) * zb;
                            }
                        }
                    }
                    blk
                } else {
                    let mut blk = vec![0.0; m * m];
                    for o in 0..n {
                        let wo = w(o);
                        for b in 0..m {
                            let vb = xy(o, b) * wo;
                            for a in b..m {
                                blk[a + b * m] += xy(o, a) * vb;
                            }
                        }
                    }
                    blk
                };
                dense.push(blk);
            }
        }
        Blocked { diag0, sparse, fe0, dense }
    }

    /// Replace the response and re-form only the y row of A (Zᵀy, Xᵀy, yᵀy); the
    /// Z and X blocks are untouched. Used by profiles and simulation refits.
    pub fn set_response(&mut self, y: &[f64]) -> Result<()> {
        if y.len() != self.n {
            return Err(MixedError::Input(format!("response has length {}, expected {}", y.len(), self.n)));
        }
        if y.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Input("response has non-finite values".into()));
        }
        self.y.copy_from_slice(y);
        let (n, p, m, nt) = (self.n, self.p, self.p + 1, self.terms.len());
        let w = |o: usize| self.weights.as_ref().map_or(1.0, |w| w[o]);
        let t0 = &self.terms[0];
        let k0 = t0.k;
        for c in 0..t0.q() {
            self.a.fe0[p + c * m] = 0.0;
        }
        for o in 0..n {
            let wy = w(o) * y[o];
            let lev = t0.codes[o] as usize;
            for b in 0..k0 {
                self.a.fe0[p + (lev * k0 + b) * m] += t0.z[o + b * n] * wy;
            }
        }
        for j in 1..=nt {
            let blk = &mut self.a.dense[tri(nt, j)];
            if j < nt {
                let tj = &self.terms[j];
                let kj = tj.k;
                for c in 0..tj.q() {
                    blk[p + c * m] = 0.0;
                }
                for o in 0..n {
                    let wy = w(o) * y[o];
                    let cj = tj.codes[o] as usize * kj;
                    for b in 0..kj {
                        blk[p + (cj + b) * m] += tj.z[o + b * n] * wy;
                    }
                }
            } else {
                for b in 0..m {
                    blk[p + b * m] = 0.0;
                }
                for o in 0..n {
                    let wy = w(o) * y[o];
                    for b in 0..p {
                        blk[p + b * m] += self.x[o + b * n] * wy;
                    }
                    blk[p + p * m] += y[o] * wy;
                }
            }
        }
        Ok(())
    }

    /// The deviance with σ given rather than profiled out, at θ: lme4's `devfun2` (ML)
    /// and lmerTest's `devfun_vp` (REML adds log|R_X|² − p log 2πσ²).
    pub fn deviance_at(&mut self, theta: &[f64], sigma: f64, reml: bool) -> Result<f64> {
        self.update_l(theta)?;
        Ok(self.deviance_from(&self.parts(), sigma, reml))
    }

    pub fn deviance_from(&self, c: &CriterionParts, sigma: f64, reml: bool) -> f64 {
        let s2 = sigma * sigma;
        let l2ps = (2.0 * std::f64::consts::PI * s2).ln();
        let mut d = c.ldl2 - self.log_det_w + c.pwrss / s2 + self.n as f64 * l2ps;
        if reml {
            d += c.ldrx2 - self.p as f64 * l2ps;
        }
        d
    }

    /// Prior weights, if any.
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
    }

    /// Number of scalars stored in L; it depends on the levels and the data pattern, not on n.
    pub fn storage_len(&self) -> usize {
        self.l.diag0.data.len()
            + self.l.sparse.iter().map(|s| s.nnz()).sum::<usize>()
            + self.l.fe0.len()
            + self.l.dense.iter().map(|d| d.len()).sum::<usize>()
    }

    pub fn ntheta(&self) -> usize {
        *self.theta_offsets.last().unwrap_or(&0)
    }

    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    pub fn theta_start(&self) -> Vec<f64> {
        self.terms.iter().flat_map(|t| t.theta_start()).collect()
    }

    /// Which θ elements are diagonal elements of some Λ (bounded below by 0 in lme4).
    pub fn theta_is_diagonal(&self) -> Vec<bool> {
        self.terms.iter().flat_map(|t| t.theta_is_diagonal()).collect()
    }

    pub fn normalize_theta(&self, theta: &mut [f64]) {
        for (i, t) in self.terms.iter().enumerate() {
            t.normalize_theta(&mut theta[self.theta_offsets[i]..self.theta_offsets[i + 1]]);
        }
    }

    fn dim(&self, i: usize) -> usize {
        if i < self.terms.len() {
            self.terms[i].q()
        } else {
            self.p + 1
        }
    }

    /// Scale and inflate A into L at θ and factor it blockwise. This is the whole fit step.
    pub fn update_l(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.ntheta() {
            return Err(MixedError::Input(format!("theta has length {}, expected {}", theta.len(), self.ntheta())));
        }
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Numerical("theta has non-finite values".into()));
        }
        self.theta.copy_from_slice(theta);
        // The zero pattern of a later block can depend on θ's zeros, off-diagonal ones
        // included (a zero in Λ₀ can cancel the coupling of two levels), so the
        // block-diagonal test is remembered only when found at a θ without zeros.
        let generic_theta = theta.iter().all(|&v| v != 0.0);
        for (i, t) in self.terms.iter().enumerate() {
            t.fill_lambda(&theta[self.theta_offsets[i]..self.theta_offsets[i + 1]], &mut self.lambdas[i]);
        }
        let nt = self.terms.len();
        let m = self.p + 1;
        let k0 = self.terms[0].k;

        // [0,0]: Λ₀ᵀ A Λ₀ + I, then a small Cholesky per level.
        for lev in 0..self.terms[0].nlevels {
            let dst = self.l.diag0.block_mut(lev);
            scale_block(dst, self.a.diag0.block(lev), k0, k0, &self.lambdas[0], &self.lambdas[0], &mut self.tmp);
            for d in 0..k0 {
                dst[d + d * k0] += 1.0;
            }
            dense::chol_lower(dst, k0).map_err(|_| MixedError::Numerical("Cholesky of the first block failed".into()))?;
        }
        // First block column below the diagonal: scale, then divide by L₀₀ᵀ.
        for i in 1..nt {
            let (dst, src) = (&mut self.l.sparse[i - 1], &self.a.sparse[i - 1]);
            dst.scale_from(src, &self.lambdas[i], &self.lambdas[0], &mut self.tmp);
            dst.rdiv_block_diag(&self.l.diag0);
        }
        self.l.fe0.copy_from_slice(&self.a.fe0);
        scale_dense_cols(&mut self.l.fe0, m, k0, &self.lambdas[0]);
        for lev in 0..self.terms[0].nlevels {
            let blk = &mut self.l.fe0[lev * k0 * m..(lev + 1) * k0 * m];
            dense::rdiv_lower_t(blk, m, self.l.diag0.block(lev), k0);
        }
        // Dense part: scale A, inflate the diagonal, subtract the first column's contribution.
        for i in 1..=nt {
            for j in 1..=i {
                let idx = tri(i, j);
                let rows = self.dim(i);
                let dst = &mut self.l.dense[idx];
                dst.copy_from_slice(&self.a.dense[idx]);
                if i < nt {
                    scale_dense_rows(dst, rows, self.terms[i].k, &self.lambdas[i]);
                }
                if j < nt {
                    scale_dense_cols(dst, rows, self.terms[j].k, &self.lambdas[j]);
                }
                if i == j && i < nt {
                    for d in 0..rows {
                        dst[d + d * rows] += 1.0;
                    }
                }
            }
        }
        for i in 1..=nt {
            let mut target = std::mem::take(&mut self.l.dense[tri(i, i)]);
            if i < nt {
                self.l.sparse[i - 1].syrk_sub_into(&mut target);
            } else {
                dense::syrk_sub_lower(&mut target, m, &self.l.fe0, self.terms[0].q());
            }
            self.l.dense[tri(i, i)] = target;
            for k in 1..i {
                let mut target = std::mem::take(&mut self.l.dense[tri(i, k)]);
                if i < nt {
                    self.l.sparse[i - 1].gemm_nt_sub_into(&self.l.sparse[k - 1], &mut target);
                } else {
                    self.l.sparse[k - 1].dense_nt_sub_into(&self.l.fe0, m, &mut target);
                }
                self.l.dense[tri(i, k)] = target;
            }
        }
        // Right-looking blocked Cholesky of the dense part. A term's diagonal block stays
        // block-diagonal when its levels nest the first term's (nested designs); then
        // it is factored, and divided by, block by block.
        for j in 1..=nt {
            let dj = self.dim(j);
            let kj = if j < nt { self.terms[j].k } else { 0 };
            let block_diag = j < nt
                && match self.block_diag[j] {
                    Some(b) => b,
                    None => {
                        let b = dense::is_block_diagonal(&self.l.dense[tri(j, j)], dj, kj);
                        if generic_theta {
                            self.block_diag[j] = Some(b);
                        }
                        b
                    }
                };
            {
                let djj = &mut self.l.dense[tri(j, j)];
                let res = if block_diag {
                    dense::chol_block_diagonal(djj, dj, kj, &mut self.tmp)
                } else {
                    dense::chol_lower_any(djj, dj, &mut self.chol_work)
                };
                if let Err(col) = res {
                    return Err(if j == nt && col < self.p {
                        MixedError::Numerical("fixed-effect model matrix is rank deficient at this theta".into())
                    } else if j == nt {
                        MixedError::Numerical("the residual sum of squares is zero: the model fits the data exactly".into())
                    } else {
                        MixedError::Numerical(format!("Cholesky of block {} failed", j + 1))
                    });
                }
            }
            for i in j + 1..=nt {
                let mut lij = std::mem::take(&mut self.l.dense[tri(i, j)]);
                if block_diag {
                    dense::rdiv_block_diagonal_t(&mut lij, self.dim(i), &self.l.dense[tri(j, j)], dj, kj, &mut self.tmp);
                } else {
                    dense::rdiv_lower_t_any(&mut lij, self.dim(i), &self.l.dense[tri(j, j)], dj);
                }
                self.l.dense[tri(i, j)] = lij;
            }
            for i in j + 1..=nt {
                let di = self.dim(i);
                let mut lii = std::mem::take(&mut self.l.dense[tri(i, i)]);
                dense::syrk_sub_lower(&mut lii, di, &self.l.dense[tri(i, j)], dj);
                self.l.dense[tri(i, i)] = lii;
                for k in j + 1..i {
                    let mut lik = std::mem::take(&mut self.l.dense[tri(i, k)]);
                    dense::gemm_nt_sub(&mut lik, di, self.dim(k), &self.l.dense[tri(i, j)], &self.l.dense[tri(k, j)], dj);
                    self.l.dense[tri(i, k)] = lik;
                }
            }
        }
        Ok(())
    }

    /// log|L_θ|², log|R_X|² and the PWRSS from the current factor.
    pub fn parts(&self) -> CriterionParts {
        let nt = self.terms.len();
        let k0 = self.terms[0].k;
        let mut ldl2 = 0.0;
        for lev in 0..self.terms[0].nlevels {
            ldl2 += dense::log_diag_sum(self.l.diag0.block(lev), k0, k0);
        }
        for j in 1..nt {
            ldl2 += dense::log_diag_sum(&self.l.dense[tri(j, j)], self.dim(j), self.dim(j));
        }
        let f = &self.l.dense[tri(nt, nt)];
        let m = self.p + 1;
        let ldrx2 = 2.0 * dense::log_diag_sum(f, self.p, m);
        let r = f[self.p + self.p * m];
        CriterionParts { ldl2: 2.0 * ldl2, ldrx2, pwrss: r * r }
    }

    /// lme4's objective from the parts: the REML criterion or the ML deviance.
    pub fn criterion_from(&self, c: &CriterionParts, reml: bool) -> f64 {
        let n = self.n as f64;
        let two_pi = 2.0 * std::f64::consts::PI;
        if reml {
            let nmp = n - self.p as f64;
            c.ldl2 - self.log_det_w + c.ldrx2 + nmp * (1.0 + (two_pi * c.pwrss / nmp).ln())
        } else {
            c.ldl2 - self.log_det_w + n * (1.0 + (two_pi * c.pwrss / n).ln())
        }
    }

    /// The profiled criterion at θ (REML or ML according to `self.reml`).
    pub fn objective(&mut self, theta: &[f64]) -> Result<f64> {
        self.update_l(theta)?;
        let v = self.criterion_from(&self.parts(), self.reml);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(MixedError::Numerical("the criterion is not finite at this theta".into()))
        }
    }

    /// σ̂ at the current factor.
    pub fn sigma(&self) -> f64 {
        let c = self.parts();
        let denom = if self.reml { (self.n - self.p) as f64 } else { self.n as f64 };
        (c.pwrss / denom).sqrt()
    }

    fn fe_factor(&self) -> &[f64] {
        &self.l.dense[tri(self.terms.len(), self.terms.len())]
    }

    /// β̂ at the current factor: solve R_Xᵀ β = c_β.
    pub fn beta(&self) -> Vec<f64> {
        let (p, m) = (self.p, self.p + 1);
        let f = self.fe_factor();
        let mut beta: Vec<f64> = (0..p).map(|a| f[p + a * m]).collect();
        // R_X is the leading p×p of f with leading dimension m; copy to a p×p for the solver.
        let rx: Vec<f64> = (0..p).flat_map(|b| (0..p).map(move |a| f[a + b * m])).collect();
        dense::solve_lower_t(&rx, p, &mut beta);
        beta
    }

    /// Spherical random effects u at the current factor, one vector per term (level-major).
    pub fn u(&self) -> Vec<Vec<f64>> {
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let beta = self.beta();
        // rhs_j = c_u,j − L_Xjᵀ β, from the y row and X rows of block [nt, j].
        let rhs_from = |blk: &[f64], q: usize| -> Vec<f64> {
            (0..q)
                .map(|c| {
                    let col = &blk[c * m..(c + 1) * m];
                    col[p] - (0..p).map(|a| col[a] * beta[a]).sum::<f64>()
                })
                .collect()
        };
        let mut u: Vec<Vec<f64>> = (0..nt)
            .map(|j| if j == 0 { rhs_from(&self.l.fe0, self.dim(0)) } else { rhs_from(&self.l.dense[tri(nt, j)], self.dim(j)) })
            .collect();
        for j in (1..nt).rev() {
            let qj = self.dim(j);
            let mut r = std::mem::take(&mut u[j]);
            for i in j + 1..nt {
                let lij = &self.l.dense[tri(i, j)];
                let qi = self.dim(i);
                for c in 0..qj {
                    r[c] -= (0..qi).map(|a| lij[a + c * qi] * u[i][a]).sum::<f64>();
                }
            }
            dense::solve_lower_t(&self.l.dense[tri(j, j)], qj, &mut r);
            u[j] = r;
        }
        let mut r0 = std::mem::take(&mut u[0]);
        for i in 1..nt {
            self.l.sparse[i - 1].t_mul_sub(&u[i], &mut r0);
        }
        let k0 = self.terms[0].k;
        for lev in 0..self.terms[0].nlevels {
            dense::solve_lower_t(self.l.diag0.block(lev), k0, &mut r0[lev * k0..(lev + 1) * k0]);
        }
        u[0] = r0;
        u
    }

    /// Conditional modes b = Λu, one vector per term, level-major (level l, column a at l·k + a).
    pub fn b_from_u(&self, u: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut u = u.to_vec();
        for (i, t) in self.terms.iter().enumerate() {
            let k = t.k;
            let lam = &self.lambdas[i];
            for lev in 0..t.nlevels {
                let ul = &mut u[i][lev * k..(lev + 1) * k];
                let old: Vec<f64> = ul.to_vec();
                for a in 0..k {
                    ul[a] = (0..=a).map(|c| lam[a + c * k] * old[c]).sum();
                }
            }
        }
        u
    }

    /// (R_X R_Xᵀ)⁻¹, the unscaled covariance of β̂ (p×p column-major).
    pub fn vcov_unscaled(&self) -> Vec<f64> {
        let (p, m) = (self.p, self.p + 1);
        let f = self.fe_factor();
        let rx: Vec<f64> = (0..p).flat_map(|b| (0..p).map(move |a| f[a + b * m])).collect();
        // columns of R_X⁻¹
        let mut inv = vec![0.0; p * p];
        for c in 0..p {
            let col = &mut inv[c * p..(c + 1) * p];
            col[c] = 1.0;
            dense::solve_lower(&rx, p, col);
        }
        let mut v = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..p {
                v[i + j * p] = (0..p).map(|r| inv[r + i * p] * inv[r + j * p]).sum();
            }
        }
        v
    }

    /// Conditional covariance of term t's random effects, per level: Λ [(L_θL_θᵀ)⁻¹]_ll Λᵀ
    /// (not yet multiplied by σ²), returned as nlevels column-major k×k blocks.
    /// Costs one forward solve through the later blocks per level and column.
    pub fn cond_var(&self, t: usize) -> Vec<f64> {
        let nt = self.terms.len();
        let term = &self.terms[t];
        let k = term.k;
        let mut out = vec![0.0; term.nlevels * k * k];
        // cols[c] = column c of L⁻¹E for the level, as blocks t..nt
        let mut cols: Vec<Vec<Vec<f64>>> = (0..k).map(|_| (0..nt).map(|i| vec![0.0; self.dim(i)]).collect()).collect();
        let mut acc = vec![0.0; k * k];
        for lev in 0..term.nlevels {
            for (col, x) in cols.iter_mut().enumerate() {
                for v in x.iter_mut() {
                    v.iter_mut().for_each(|e| *e = 0.0);
                }
                if t == 0 {
                    let xl = &mut x[0][lev * k..(lev + 1) * k];
                    xl[col] = 1.0;
                    dense::solve_lower(self.l.diag0.block(lev), k, xl);
                } else {
                    x[t][lev * k + col] = 1.0;
                }
                let first_dense = if t == 0 { 1 } else { t };
                for i in first_dense..nt {
                    let qi = self.dim(i);
                    let mut xi = std::mem::take(&mut x[i]);
                    if t == 0 {
                        self.l.sparse[i - 1].col_mul_sub(lev, &x[0][lev * k..(lev + 1) * k], &mut xi);
                    }
                    for j in first_dense..i {
                        let lij = &self.l.dense[tri(i, j)];
                        for (c, &v) in x[j].iter().enumerate() {
                            if v != 0.0 {
                                for (a, e) in xi.iter_mut().enumerate() {
                                    *e -= lij[a + c * qi] * v;
                                }
                            }
                        }
                    }
                    dense::solve_lower(&self.l.dense[tri(i, i)], qi, &mut xi);
                    x[i] = xi;
                }
            }
            for a in 0..k {
                for b in 0..k {
                    acc[a + b * k] = (t..nt)
                        .map(|i| cols[a][i].iter().zip(&cols[b][i]).map(|(u, v)| u * v).sum::<f64>())
                        .sum();
                }
            }
            let lam = &self.lambdas[t];
            let blk = &mut out[lev * k * k..(lev + 1) * k * k];
            for a in 0..k {
                for b in 0..k {
                    let mut s = 0.0;
                    for c in 0..k {
                        for d in 0..k {
                            s += lam[a + c * k] * acc[c + d * k] * lam[b + d * k];
                        }
                    }
                    blk[a + b * k] = s;
                }
            }
        }
        out
    }
}
