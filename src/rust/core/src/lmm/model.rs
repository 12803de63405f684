//! `LinearMixedModel`: the blocked A = [Z X y]ᵀ[Z X y], formed once, and its
//! Cholesky factor L(θ), updated in place at each θ by [`LinearMixedModel::update_l`].
//!
//! Block rows and columns are the random-effects terms (sorted by number of levels,
//! largest first) and then one block for [X y]; block (i, j), i ≥ j, is stored at
//! i(i+1)/2 + j. Every block of A keeps its natural storage (a term's diagonal block is
//! block-diagonal, two terms meet in a block-sparse block, the [X y] rows are dense);
//! L's storage is decided once from the data's pattern ([`crate::linalg::structure`]). Once A
//! is formed nothing here touches the n observations again, so an evaluation costs the
//! same whatever n is.
use crate::linalg::blocks::{self, Block, BlockDiagonal, BlockSparse, Dense};
use crate::linalg::dense;
use crate::linalg::tri;
use crate::error::{MixedError, Result};
use crate::lmm::reterm::ReTerm;
use crate::linalg::selinv;
use crate::linalg::structure::{self, Pattern};
use rayon::prelude::*;
use std::borrow::Cow;

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

/// The data (X, y, weights and each term's Z) are borrowed when the caller owns them
/// (R's vectors during one call) and owned otherwise (whitened copies, tests).
pub struct LinearMixedModel<'d> {
    pub terms: Vec<ReTerm<'d>>,
    /// n×p fixed-effects matrix, column-major, unweighted.
    pub x: Cow<'d, [f64]>,
    pub p: usize,
    /// Response with any offset already subtracted, unweighted.
    pub y: Cow<'d, [f64]>,
    pub n: usize,
    pub reml: bool,
    /// Σ log wᵢ (0 without weights), as in lme4's criterion.
    pub log_det_w: f64,
    /// Prior weights, if any.
    weights: Option<Cow<'d, [f64]>>,
    pub(crate) a: Vec<Block>,
    pub(crate) l: Vec<Block>,
    /// For each sparse block of L: the index in L's pattern of each stored block of A.
    pub(crate) a_to_l: Vec<Vec<usize>>,
    pub(crate) lambdas: Vec<Vec<f64>>,
    theta: Vec<f64>,
    pub(crate) theta_offsets: Vec<usize>,
    /// Scratch for two k×k blocks.
    tmp: Vec<f64>,
    /// faer's workspace for the largest dense diagonal block.
    chol_work: faer::dyn_stack::MemBuffer,
    /// The selected inverse and its workspace, made on first use.
    pub(crate) sigma: Vec<Block>,
    pub(crate) selinv_ws: selinv::Workspace,
    /// The X rows of the last block row, without y (REML's selected inverse).
    pub(crate) x_only: Vec<Block>,
    /// Block columns whose dense L_jj a gradient spent: it holds Σ_jj in `sigma`, and
    /// the next [`LinearMixedModel::update_l`] takes the buffer back.
    spent: Vec<bool>,
    /// `Some(with_x)` while `sigma` holds the whole selected inverse at the current θ,
    /// so the methods after a fit (conditional variances of every term, then
    /// Satterthwaite's derivatives) compute it once.
    sigma_at_theta: Option<bool>,
    /// Whether L is the factor at `theta` of the current A (cleared while `update_l`
    /// runs and by `set_response`).
    factor_current: bool,
    /// For each block of A between two terms, the stored block each observation adds
    /// to; found on the first re-forming so that later ones (PIRLS steps, whitened
    /// copies at a new η) refill A in place without sorting.
    slots: Option<Vec<Vec<u32>>>,
}

fn cholesky_error(nt: usize, p: usize, j: usize, col: usize) -> MixedError {
    if j == nt && col < p {
        MixedError::Numerical("fixed-effect model matrix is rank deficient: its downdated cross-product is not positive definite at this theta".into())
    } else if j == nt {
        MixedError::Numerical("the residual sum of squares is zero: the model fits the data exactly".into())
    } else {
        MixedError::Numerical(format!("Cholesky of block {} failed", j + 1))
    }
}

const SPENT: &str = "the factor was spent by a gradient; update_l first";

/// Below this many observations A's blocks are refilled one after another (a thread
/// costs more than the pass).
const PARALLEL_REFILL_ROWS: usize = 20_000;

/// Dense blocks beyond this many scalars in total are refused rather than allocated.
const MAX_DENSE_ELEMENTS: usize = 1usize << 31;

/// A copy for another thread: everything but the workspaces, which are made afresh.
impl Clone for LinearMixedModel<'_> {
    fn clone(&self) -> Self {
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
            l: self.l_with_storage(),
            a_to_l: self.a_to_l.clone(),
            lambdas: self.lambdas.clone(),
            theta: self.theta.clone(),
            theta_offsets: self.theta_offsets.clone(),
            tmp: self.tmp.clone(),
            chol_work: Self::workspace(&self.l),
            sigma: Vec::new(),
            selinv_ws: selinv::Workspace::default(),
            x_only: Vec::new(),
            spent: Vec::new(),
            sigma_at_theta: None,
            factor_current: false,
            slots: self.slots.clone(),
        }
    }
}

impl<'d> LinearMixedModel<'d> {
    /// A copy of L's blocks in which a spent block (a placeholder) gets storage again.
    fn l_with_storage(&self) -> Vec<Block> {
        let mut l = self.l.clone();
        for (j, _) in self.spent.iter().enumerate().filter(|(_, &s)| s) {
            l[tri(j, j)] = self.sigma[tri(j, j)].zeros_like();
        }
        l
    }

    pub fn new(
        terms: Vec<ReTerm<'d>>,
        x: impl Into<Cow<'d, [f64]>>,
        p: usize,
        y: impl Into<Cow<'d, [f64]>>,
        weights: Option<Cow<'d, [f64]>>,
        reml: bool,
    ) -> Result<Self> {
        Self::with_sparse_share(terms, x, p, y, weights, reml, structure::SPARSE_MAX_SHARE)
    }

    /// As [`LinearMixedModel::new`], with the share of level pairs up to which a block
    /// of L below a block-diagonal one is stored sparse (1 keeps every such block sparse).
    pub fn with_sparse_share(
        terms: Vec<ReTerm<'d>>,
        x: impl Into<Cow<'d, [f64]>>,
        p: usize,
        y: impl Into<Cow<'d, [f64]>>,
        weights: Option<Cow<'d, [f64]>>,
        reml: bool,
        max_share: f64,
    ) -> Result<Self> {
        let (x, y) = (x.into(), y.into());
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
        if let Some(w) = &weights {
            if w.len() != n {
                return Err(MixedError::Input(format!("weights have length {}, expected {}", w.len(), n)));
            }
            if w.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(MixedError::Input("weights must be finite and positive".into()));
            }
        }
        let log_det_w = weights.as_ref().map_or(0.0, |w| w.iter().map(|v| v.ln()).sum());
        let a = Self::form_a(&terms, &x, p, &y, n, weights.as_deref());
        let (l, a_to_l) = Self::allocate_l(&terms, p, &a, max_share)?;
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
            chol_work: Self::workspace(&l),
            a,
            l,
            a_to_l,
            lambdas,
            theta,
            theta_offsets,
            tmp: vec![0.0; 2 * kmax * kmax],
            sigma: Vec::new(),
            selinv_ws: selinv::Workspace::default(),
            x_only: Vec::new(),
            spent: Vec::new(),
            sigma_at_theta: None,
            factor_current: false,
            slots: None,
        })
    }

    fn workspace(l: &[Block]) -> faer::dyn_stack::MemBuffer {
        let nb = (((8 * l.len() + 1) as f64).sqrt() as usize - 1) / 2;
        let maxdim = (0..nb).filter_map(|j| l[tri(j, j)].as_dense().map(|d| d.rows)).max().unwrap_or(1);
        dense::chol_workspace(maxdim)
    }

    /// Form every block of A from the data. The only pass over the n observations.
    /// A = [Z X y]ᵀ W [Z X y] in blocks. `by_products`: [X y]ᵀ[X y] by matrix products
    /// (the whitened copies re-formed at every η; a model's own A keeps the row pass,
    /// whose rounding its fits were tuned on).
    fn form_a(terms: &[ReTerm], x: &[f64], p: usize, y: &[f64], n: usize, weights: Option<&[f64]>) -> Vec<Block> {
        Self::form_a_with(terms, x, p, y, n, weights, false)
    }

    fn form_a_with(terms: &[ReTerm], x: &[f64], p: usize, y: &[f64], n: usize, weights: Option<&[f64]>, by_products: bool) -> Vec<Block> {
        let nt = terms.len();
        let m = p + 1;
        let mut a = Vec::with_capacity(tri(nt, nt) + 1);
        for i in 0..=nt {
            for j in 0..=i {
                let blk = if i < nt && i == j {
                    let t = &terms[i];
                    let mut d = BlockDiagonal::zeros(t.k, t.nlevels);
                    accumulate_diag(t, n, weights, &mut d);
                    Block::Diag(d)
                } else if i < nt {
                    let (ti, tj) = (&terms[i], &terms[j]);
                    Block::Sparse(BlockSparse::cross_product(n, |o| ti.codes.get(o), &ti.z, ti.k, ti.nlevels, |o| tj.codes.get(o), &tj.z, tj.k, tj.nlevels, weights))
                } else if j < nt {
                    let mut d = Dense::zeros(m, terms[j].q());
                    accumulate_xy_z(&terms[j], x, p, y, n, weights, &mut d);
                    Block::Dense(d)
                } else {
                    let mut d = Dense::zeros(m, m);
                    accumulate_xy(x, p, y, n, weights, by_products, &mut d);
                    Block::Dense(d)
                };
                a.push(blk);
            }
        }
        a
    }

    /// L's storage from the symbolic factorisation, and where A's sparse blocks sit in it.
    fn allocate_l(terms: &[ReTerm], p: usize, a: &[Block], max_share: f64) -> Result<(Vec<Block>, Vec<Vec<usize>>)> {
        let nt = terms.len();
        let m = p + 1;
        let mut a_off: Vec<&BlockSparse> = Vec::new();
        for i in 1..nt {
            for j in 0..i {
                match &a[tri(i, j)] {
                    Block::Sparse(s) => a_off.push(s),
                    _ => return Err(MixedError::internal("the model", "A's blocks between terms are not sparse")),
                }
            }
        }
        let nlevels: Vec<usize> = terms.iter().map(|t| t.nlevels).collect();
        let st = structure::analyse(|i, j| a_off[structure::off_index(i, j)], &nlevels, max_share);
        let dense_total: usize = (0..nt)
            .map(|i| {
                let diag = if st.diag_dense[i] { terms[i].q() * terms[i].q() } else { 0 };
                let off: usize = (0..i).filter(|&j| matches!(st.off[structure::off_index(i, j)], Pattern::Dense)).map(|j| terms[i].q() * terms[j].q()).sum();
                diag + off + m * terms[i].q()
            })
            .sum();
        if dense_total > MAX_DENSE_ELEMENTS {
            return Err(MixedError::Numerical(format!(
                "the dense blocks of this model would need {} values; too many levels in the second and later grouping factors",
                dense_total
            )));
        }
        let mut l = Vec::with_capacity(a.len());
        let mut a_to_l = Vec::with_capacity(a.len());
        for i in 0..=nt {
            for j in 0..=i {
                let mut map = Vec::new();
                let blk = if i < nt && i == j {
                    let t = &terms[i];
                    if st.diag_dense[i] {
                        Block::Dense(Dense::zeros(t.q(), t.q()))
                    } else {
                        Block::Diag(BlockDiagonal::zeros(t.k, t.nlevels))
                    }
                } else if i < nt {
                    let (ti, tj) = (&terms[i], &terms[j]);
                    match &st.off[structure::off_index(i, j)] {
                        Pattern::Dense => Block::Dense(Dense::zeros(ti.q(), tj.q())),
                        Pattern::Sparse(cols) => {
                            let s = BlockSparse::with_pattern(ti.k, tj.k, ti.nlevels, cols);
                            let asp = a_off[structure::off_index(i, j)];
                            for c in 0..asp.ncol_levels {
                                for idx in asp.col_blocks(c) {
                                    let to = s.find(asp.rowlev[idx] as usize, c).ok_or_else(|| {
                                        MixedError::internal("the model", "L's pattern misses a block of A")
                                    })?;
                                    map.push(to);
                                }
                            }
                            Block::Sparse(s)
                        }
                    }
                } else if j < nt {
                    Block::Dense(Dense::zeros(m, terms[j].q()))
                } else {
                    Block::Dense(Dense::zeros(m, m))
                };
                l.push(blk);
                a_to_l.push(map);
            }
        }
        Ok((l, a_to_l))
    }

    /// Replace the response and re-form only the y row of A (Zᵀy, Xᵀy, yᵀy); the
    /// Z and X blocks are untouched. Used by profiles and simulation refits.
    /// Re-form A from the current data, whose values changed but not their structure
    /// (the whitened copy of a model with correlated residuals at a new η); L keeps its
    /// pattern and is refactored at the next evaluation.
    pub fn reform_a(&mut self) {
        self.refill_a(true);
    }

    /// New prior weights and response with the same structure (a PIRLS step of a GLMM:
    /// GLM weights and working response); A is re-formed in place. The GLMM reads only
    /// the factor (log|L|², modes), never the LMM criterion Σ log w enters, so that sum
    /// is not formed (NaN marks it).
    pub fn set_weights_response(&mut self, w: &[f64], y: &[f64]) -> Result<()> {
        if w.len() != self.n || y.len() != self.n {
            return Err(MixedError::Input("weights or response of the wrong length".into()));
        }
        if w.iter().any(|v| !(v.is_finite() && *v > 0.0)) || y.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Numerical("PIRLS weights or working response are not finite".into()));
        }
        match &mut self.weights {
            Some(own) => own.to_mut().copy_from_slice(w),
            None => self.weights = Some(Cow::Owned(w.to_vec())),
        }
        self.y.to_mut().copy_from_slice(y);
        self.log_det_w = f64::NAN;
        self.reform_a_rows();
        Ok(())
    }

    /// Each term's Λ at θ, without factoring (b = Λu for a given u).
    pub fn update_lambdas_only(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.ntheta() {
            return Err(MixedError::Input("theta has the wrong length".into()));
        }
        self.reclaim_factor();
        self.factor_current = false;
        self.sigma_at_theta = None;
        for (i, t) in self.terms.iter().enumerate() {
            t.fill_lambda(&theta[self.theta_offsets[i]..self.theta_offsets[i + 1]], &mut self.lambdas[i]);
        }
        Ok(())
    }

    /// As [`LinearMixedModel::reform_a`], with the row pass for [X y]ᵀW[X y].
    fn reform_a_rows(&mut self) {
        self.refill_a(false);
    }

    /// Re-form A's values in place from the current data (same pattern): the diagonal
    /// and [X y] blocks by the passes of [`LinearMixedModel::form_a_with`], the blocks
    /// between terms through each observation's slot.
    fn refill_a(&mut self, by_products: bool) {
        let nt = self.terms.len();
        if self.slots.is_none() {
            let mut slots = Vec::new();
            for i in 1..nt {
                for j in 0..i {
                    if let Block::Sparse(s) = &self.a[tri(i, j)] {
                        let (ti, tj) = (&self.terms[i], &self.terms[j]);
                        slots.push((0..self.n).map(|o| s.slot(tj.codes.get(o), ti.codes.get(o)) as u32).collect());
                    }
                }
            }
            self.slots = Some(slots);
        }
        let (terms, x, y, n, p) = (&self.terms, &self.x[..], &self.y[..], self.n, self.p);
        let weights = self.weights.as_deref();
        let slots = self.slots.as_ref().expect("slots set above");
        // each block is one pass over the observations, in order, by one thread: the
        // blocks in parallel give the same numbers as one after another
        let mut jobs = Vec::with_capacity(self.a.len());
        let mut next_slot = 0;
        for i in 0..=nt {
            for j in 0..=i {
                let slot = (i < nt && i != j).then(|| {
                    next_slot += 1;
                    next_slot - 1
                });
                jobs.push((i, j, slot));
            }
        }
        let fill = |(i, j, slot): (usize, usize, Option<usize>), blk: &mut Block| match blk {
            Block::Diag(d) if i < nt && i == j => {
                d.data.fill(0.0);
                accumulate_diag(&terms[i], n, weights, d);
            }
            Block::Sparse(s) if i < nt => {
                s.values.fill(0.0);
                let (ti, tj) = (&terms[i], &terms[j]);
                let bs = ti.k * tj.k;
                for (o, &sl) in slots[slot.expect("a block between terms")].iter().enumerate() {
                    let wo = weights.map_or(1.0, |w| w[o]);
                    let base = sl as usize * bs;
                    for b in 0..tj.k {
                        let zb = tj.z[o + b * n] * wo;
                        for a in 0..ti.k {
                            s.values[base + a + b * ti.k] += ti.z[o + a * n] * zb;
                        }
                    }
                }
            }
            Block::Dense(d) if i == nt && j < nt => {
                d.data.fill(0.0);
                accumulate_xy_z(&terms[j], x, p, y, n, weights, d);
            }
            Block::Dense(d) if i == nt => {
                d.data.fill(0.0);
                accumulate_xy(x, p, y, n, weights, by_products, d);
            }
            other => *other = Self::form_a_with(terms, x, p, y, n, weights, by_products).swap_remove(tri(i, j)),
        };
        if n >= PARALLEL_REFILL_ROWS {
            self.a.par_iter_mut().zip(jobs.into_par_iter()).for_each(|(blk, job)| fill(job, blk));
        } else {
            self.a.iter_mut().zip(jobs).for_each(|(blk, job)| fill(job, blk));
        }
        self.factor_current = false;
        self.sigma_at_theta = None;
    }

    /// A's values (block by block) as Σ_s c_s A_s from stored snapshots `parts[s][block]`
    /// of the same pattern: a variance function constant on strata makes A a weighted
    /// sum of the strata's cross-products, formed without the rows.
    pub(crate) fn set_a_weighted(&mut self, parts: &[Vec<Vec<f64>>], c: &[f64]) {
        for (bi, blk) in self.a.iter_mut().enumerate() {
            let v = blk.values_mut();
            v.copy_from_slice(&parts[0][bi]);
            v.iter_mut().for_each(|x| *x *= c[0]);
            for (part, &cs) in parts.iter().zip(c).skip(1) {
                v.iter_mut().zip(&part[bi]).for_each(|(x, p)| *x += cs * p);
            }
        }
        self.factor_current = false;
        self.sigma_at_theta = None;
    }

    /// A snapshot of A's values, block by block.
    pub(crate) fn a_values(&self) -> Vec<Vec<f64>> {
        self.a.iter().map(|b| b.values().to_vec()).collect()
    }

    pub fn set_response(&mut self, y: &[f64]) -> Result<()> {
        if y.len() != self.n {
            return Err(MixedError::Input(format!("response has length {}, expected {}", y.len(), self.n)));
        }
        if y.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Input("response has non-finite values".into()));
        }
        // a borrowed response is copied once here; refits reuse that copy
        self.y.to_mut().copy_from_slice(y);
        self.factor_current = false;
        self.sigma_at_theta = None;
        let (n, p, m, nt) = (self.n, self.p, self.p + 1, self.terms.len());
        let weights = self.weights.as_deref();
        let w = |o: usize| weights.map_or(1.0, |w| w[o]);
        for j in 0..=nt {
            let blk = match &mut self.a[tri(nt, j)] {
                Block::Dense(d) => d,
                _ => return Err(MixedError::internal("the model", "A's [X y] rows are not dense")),
            };
            if j < nt {
                let tj = &self.terms[j];
                let kj = tj.k;
                for c in 0..tj.q() {
                    blk.data[p + c * m] = 0.0;
                }
                for o in 0..n {
                    let wy = w(o) * y[o];
                    let cj = tj.codes.get(o) * kj;
                    for b in 0..kj {
                        blk.data[p + (cj + b) * m] += tj.z[o + b * n] * wy;
                    }
                }
            } else {
                for b in 0..m {
                    blk.data[p + b * m] = 0.0;
                }
                for o in 0..n {
                    let wy = w(o) * y[o];
                    for b in 0..p {
                        blk.data[p + b * m] += self.x[o + b * n] * wy;
                    }
                    blk.data[p + p * m] += y[o] * wy;
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
        self.l.iter().map(|b| b.len()).sum()
    }

    /// How each block of L is stored, as "diag", "sparse" or "dense" (lower triangle, by block row).
    pub fn storage_kinds(&self) -> Vec<&'static str> {
        self.l
            .iter()
            .map(|b| match b {
                Block::Diag(_) => "diag",
                Block::Sparse(_) => "sparse",
                Block::Dense(_) => "dense",
            })
            .collect()
    }

    pub fn ntheta(&self) -> usize {
        *self.theta_offsets.last().unwrap_or(&0)
    }

    pub fn theta(&self) -> &[f64] {
        &self.theta
    }




    /// Which θ elements are diagonal elements of some Λ (bounded below by 0 in lme4).
    pub fn theta_is_diagonal(&self) -> Vec<bool> {
        self.terms.iter().flat_map(|t| t.theta_is_diagonal()).collect()
    }

    /// θ elements that are each a standard deviation on their own (the terms' Λ is
    /// 1×1 or diagonal): the optimiser searches these on a log-like scale. In a full Λ
    /// the diagonal and the off-diagonal elements together set the variances, and
    /// there a linear scale does better.
    pub(crate) fn theta_is_lone_sd(&self) -> Vec<bool> {
        self.terms
            .iter()
            .flat_map(|t| {
                let lone = t.k == 1 || t.cov == crate::lmm::reterm::CovForm::Diagonal;
                t.theta_is_diagonal().into_iter().map(move |d| d && lone)
            })
            .collect()
    }

    pub fn normalize_theta(&self, theta: &mut [f64]) {
        for (i, t) in self.terms.iter().enumerate() {
            t.normalize_theta(&mut theta[self.theta_offsets[i]..self.theta_offsets[i + 1]]);
        }
    }

    pub(crate) fn dim(&self, i: usize) -> usize {
        if i < self.terms.len() {
            self.terms[i].q()
        } else {
            self.p + 1
        }
    }

    /// Scale and inflate A into L at θ and factor it blockwise, block column by block
    /// column (left-looking): L_jj = chol(Λⱼᵀ A_jj Λⱼ + I − Σ_{k<j} L_jk L_jkᵀ), then
    /// L_ij = (Λᵢᵀ A_ij Λⱼ − Σ_{k<j} L_ik L_jkᵀ) L_jj⁻ᵀ. This is the whole fit step.
    pub fn update_l(&mut self, theta: &[f64]) -> Result<()> {
        self.reclaim_factor();
        self.sigma_at_theta = None;
        self.factor_current = false;
        if theta.len() != self.ntheta() {
            return Err(MixedError::Input(format!("theta has length {}, expected {}", theta.len(), self.ntheta())));
        }
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Numerical("theta has non-finite values".into()));
        }
        self.theta.copy_from_slice(theta);
        for (i, t) in self.terms.iter().enumerate() {
            t.fill_lambda(&theta[self.theta_offsets[i]..self.theta_offsets[i + 1]], &mut self.lambdas[i]);
        }
        let nt = self.terms.len();
        let p = self.p;
        let (a, l, lambdas, a_to_l) = (&self.a, &mut self.l, &self.lambdas, &self.a_to_l);
        let (tmp, work) = (&mut self.tmp, &mut self.chol_work);
        for j in 0..=nt {
            let lam_j = if j < nt { Some(&lambdas[j][..]) } else { None };
            let mut ljj = std::mem::take(&mut l[tri(j, j)]);
            let res = (|| -> Result<()> {
                blocks::fill_scaled(&mut ljj, &a[tri(j, j)], lam_j, lam_j, j < nt, &[], tmp)?;
                for k in 0..j {
                    blocks::rank_update(&mut ljj, &l[tri(j, k)])?;
                }
                blocks::cholesky(&mut ljj, work).map_err(|col| cholesky_error(nt, p, j, col))
            })();
            l[tri(j, j)] = ljj;
            res?;
            for i in j + 1..=nt {
                let lam_i = if i < nt { Some(&lambdas[i][..]) } else { None };
                let mut lij = std::mem::take(&mut l[tri(i, j)]);
                let res = (|| -> Result<()> {
                    blocks::fill_scaled(&mut lij, &a[tri(i, j)], lam_i, lam_j, false, &a_to_l[tri(i, j)], tmp)?;
                    for k in 0..j {
                        blocks::mul_nt_sub(&mut lij, &l[tri(i, k)], &l[tri(j, k)])?;
                    }
                    blocks::rdiv_lower_t(&mut lij, &l[tri(j, j)])
                })();
                l[tri(i, j)] = lij;
                res?;
            }
        }
        self.factor_current = true;
        Ok(())
    }

    /// `update_l(theta)` unless L is already the factor there (and not spent).
    pub fn ensure_factor(&mut self, theta: &[f64]) -> Result<()> {
        if self.factor_current && !self.factor_spent() && self.theta[..] == theta[..] {
            return Ok(());
        }
        self.update_l(theta)
    }

    /// The [X y] block of L: R_X and the y row, (p+1)×(p+1) column-major.
    pub(crate) fn fe_factor(&self) -> &[f64] {
        let nt = self.terms.len();
        match &self.l[tri(nt, nt)] {
            Block::Dense(d) => &d.data,
            _ => &[],
        }
    }

    /// log|L_θ|², log|R_X|² and the PWRSS from the current factor.
    pub fn parts(&self) -> CriterionParts {
        self.assert_factor();
        let nt = self.terms.len();
        let ldl2: f64 = (0..nt).map(|j| blocks::log_diag_sum(&self.l[tri(j, j)])).sum();
        let f = self.fe_factor();
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

    /// β̂ at the current factor: solve R_Xᵀ β = c_β.
    pub fn beta(&self) -> Vec<f64> {
        let (p, m) = (self.p, self.p + 1);
        let f = self.fe_factor();
        let mut beta: Vec<f64> = (0..p).map(|a| f[p + a * m]).collect();
        let rx: Vec<f64> = (0..p).flat_map(|b| (0..p).map(move |a| f[a + b * m])).collect();
        dense::solve_lower_t(&rx, p, &mut beta);
        beta
    }

    /// Spherical random effects u at the current factor, one vector per term (level-major):
    /// back-substitution through the blocks with the right-hand side c_u − L_Xᵀβ̂.
    pub fn u(&self) -> Vec<Vec<f64>> {
        self.assert_factor();
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let beta = self.beta();
        let mut u: Vec<Vec<f64>> = (0..nt)
            .map(|j| match &self.l[tri(nt, j)] {
                Block::Dense(d) => (0..d.cols)
                    .map(|c| {
                        let col = &d.data[c * m..(c + 1) * m];
                        col[p] - (0..p).map(|a| col[a] * beta[a]).sum::<f64>()
                    })
                    .collect(),
                _ => vec![0.0; self.dim(j)],
            })
            .collect();
        for j in (0..nt).rev() {
            let mut r = std::mem::take(&mut u[j]);
            for i in j + 1..nt {
                blocks::t_mul_sub(&self.l[tri(i, j)], &u[i], &mut r);
            }
            blocks::solve_lower_t(&self.l[tri(j, j)], &mut r);
            u[j] = r;
        }
        u
    }

    /// x ← (L_θL_θᵀ)⁻¹x for the random-effects part of the current factor (one vector
    /// per term, level-major).
    pub(crate) fn solve_random(&self, x: &mut [Vec<f64>]) {
        let nt = self.terms.len();
        let l = &self.l;
        for j in 0..nt {
            let mut r = std::mem::take(&mut x[j]);
            for i in 0..j {
                blocks::mul_sub(&l[tri(j, i)], &x[i], &mut r);
            }
            blocks::solve_lower(&l[tri(j, j)], &mut r);
            x[j] = r;
        }
        for j in (0..nt).rev() {
            let mut r = std::mem::take(&mut x[j]);
            for i in j + 1..nt {
                blocks::t_mul_sub(&l[tri(i, j)], &x[i], &mut r);
            }
            blocks::solve_lower_t(&l[tri(j, j)], &mut r);
            x[j] = r;
        }
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
        let mut v = vec![0.0; p * p];
        dense::llt_inverse(&rx, p, &mut v);
        v
    }

    /// The selected inverse of the current factor: of the random-effects part alone
    /// (`with_x` false: (L_θ L_θᵀ)⁻¹), or of [Z X] (`with_x`: the inverse of REML's M).
    /// Left in `self.sigma`, stored like L (the last block row holds only X when `with_x`).
    pub(crate) fn selected_inverse(&mut self, with_x: bool) -> Result<()> {
        self.selected_inverse_from(with_x, 0)
    }

    /// [`Self::selected_inverse`] of block columns `from..` only.
    pub(crate) fn selected_inverse_from(&mut self, with_x: bool, from: usize) -> Result<()> {
        self.selected_inverse_in(with_x, from, false)
    }

    /// [`Self::selected_inverse_from`] with Σ's dense diagonal blocks of the terms formed
    /// over L's own (the optimiser's gradient reads no more of L at this θ), so the largest
    /// dense block is held once: InstEval's 1,128² instructor block is 10 MB. L is spent
    /// until the next [`Self::update_l`], which takes those buffers back.
    pub(crate) fn selected_inverse_spending_factor(&mut self, with_x: bool, from: usize) -> Result<()> {
        self.selected_inverse_in(with_x, from, true)
    }

    fn selected_inverse_in(&mut self, with_x: bool, from: usize, spend: bool) -> Result<()> {
        if self.factor_spent() {
            return Err(MixedError::internal("the model", SPENT));
        }
        let whole = from == 0 && !spend;
        if whole && self.sigma_at_theta == Some(with_x) {
            return Ok(());
        }
        self.sigma_at_theta = None;
        self.refresh_x_only(with_x)?;
        let nt = self.terms.len();
        if spend {
            self.spent.resize(nt, false);
            if self.sigma.len() < tri(nt, 0) {
                self.sigma.resize_with(tri(nt, 0), Block::default);
            }
            // Σ's columns before `from` are not computed here: drop any left from a full inverse
            for r in 0..=nt {
                for j in 0..from.min(r + 1) {
                    if let Some(b) = self.sigma.get_mut(tri(r, j)) {
                        *b = Block::default();
                    }
                }
            }
            for j in from..nt {
                if matches!(self.l[tri(j, j)], Block::Dense(_)) {
                    // any Σ_jj left from an earlier selected inverse is dropped here
                    self.sigma[tri(j, j)] = std::mem::take(&mut self.l[tri(j, j)]);
                    self.spent[j] = true;
                }
            }
        }
        let (view, nb) = Self::factor_view(&self.l, &self.x_only, nt, with_x);
        let moved: &[bool] = if spend { &self.spent } else { &[] };
        selinv::selected_inverse_from(&view, nb, from, moved, &mut self.sigma, &mut self.selinv_ws)?;
        if whole {
            self.sigma_at_theta = Some(with_x);
        }
        Ok(())
    }

    pub(crate) fn factor_spent(&self) -> bool {
        self.spent.iter().any(|&s| s)
    }

    /// Take back the dense L_jj a gradient spent (their Σ contents are overwritten by
    /// the fill that follows in [`Self::update_l`]).
    fn reclaim_factor(&mut self) {
        for j in 0..self.spent.len() {
            if std::mem::take(&mut self.spent[j]) {
                self.l[tri(j, j)] = std::mem::take(&mut self.sigma[tri(j, j)]);
            }
        }
    }

    /// Readers of L's diagonal blocks call this: a spent factor is a broken invariant.
    fn assert_factor(&self) {
        assert!(!self.factor_spent(), "internal error in the model: {}", SPENT);
    }

    /// The X rows of L's last block row without the y row (`x_only`), for M over [Z X].
    fn refresh_x_only(&mut self, with_x: bool) -> Result<()> {
        if !with_x {
            return Ok(());
        }
        let (nt, p) = (self.terms.len(), self.p);
        self.x_only.resize_with(nt + 1, Block::default);
        for j in 0..=nt {
            let src = match &self.l[tri(nt, j)] {
                Block::Dense(d) => d,
                _ => return Err(MixedError::internal("the model", "L's [X y] rows are not dense")),
            };
            let cols = if j == nt { p } else { src.cols };
            let dst = &mut self.x_only[j];
            if dst.rows() != p || dst.cols() != cols {
                *dst = Block::Dense(Dense::zeros(p, cols));
            }
            if let Block::Dense(d) = dst {
                for c in 0..cols {
                    d.data[c * p..(c + 1) * p].copy_from_slice(&src.data[c * (p + 1)..c * (p + 1) + p]);
                }
            }
        }
        Ok(())
    }

    /// The blocks of the factor of M: the terms' blocks of L and, with X, the X rows
    /// without y (`x_only`, refreshed by `selected_inverse(true)`). Returns the view
    /// (lower triangle of blocks) and its number of block columns.
    pub(crate) fn factor_view<'a>(l: &'a [Block], x_only: &'a [Block], nt: usize, with_x: bool) -> (Vec<&'a Block>, usize) {
        let nb = if with_x { nt + 1 } else { nt };
        let mut view = Vec::with_capacity(nb * (nb + 1) / 2);
        for i in 0..nb {
            for j in 0..=i {
                view.push(if i == nt { &x_only[j] } else { &l[tri(i, j)] });
            }
        }
        (view, nb)
    }

    /// A_ZZ x over the terms (x per term, level-major), from A's blocks.
    pub(crate) fn a_zz_times(&self, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let nt = self.terms.len();
        (0..nt)
            .map(|s| {
                let mut y = vec![0.0; self.terms[s].q()];
                for t in 0..nt {
                    if x[t].iter().all(|&v| v == 0.0) {
                        continue;
                    }
                    if t <= s {
                        blocks::mul_sub(&self.a[tri(s, t)], &x[t], &mut y);
                    } else {
                        blocks::t_mul_sub(&self.a[tri(t, s)], &x[t], &mut y);
                    }
                }
                y.iter_mut().for_each(|v| *v = -*v);
                y
            })
            .collect()
    }

    /// Conditional covariance of term t's random effects, per level: Λ [(L_θL_θᵀ)⁻¹]_ll Λᵀ
    /// (not yet multiplied by σ²), returned as nlevels column-major k×k blocks. The
    /// diagonal blocks come from the selected inverse of the random-effects part.
    pub fn cond_var(&mut self, t: usize) -> Result<Vec<f64>> {
        self.selected_inverse(false)?;
        let term = &self.terms[t];
        let k = term.k;
        let lam = &self.lambdas[t];
        let sig = &self.sigma[tri(t, t)];
        let mut s = vec![0.0; k * k];
        let mut out = vec![0.0; term.nlevels * k * k];
        for lev in 0..term.nlevels {
            sig.sub_block(lev, lev, k, k, &mut s);
            let blk = &mut out[lev * k * k..(lev + 1) * k * k];
            for a in 0..k {
                for b in 0..k {
                    let mut v = 0.0;
                    for c in 0..k {
                        for d in 0..k {
                            v += lam[a + c * k] * s[c + d * k] * lam[b + d * k];
                        }
                    }
                    blk[a + b * k] = v;
                }
            }
        }
        Ok(out)
    }
}

/// Calls `f(first_row, rows)` on consecutive chunks of [X y] copied row-major, so the
/// per-row products read contiguous memory rather than p + 1 columns n apart; the
/// buffer is small and reused, so no copy of the data is kept.
/// Adds a term's ZᵀWZ to its (zeroed) diagonal block of A.
fn accumulate_diag(t: &ReTerm, n: usize, weights: Option<&[f64]>, d: &mut BlockDiagonal) {
    let k = t.k;
    for o in 0..n {
        let wo = weights.map_or(1.0, |w| w[o]);
        let blk = d.block_mut(t.codes.get(o));
        for b in 0..k {
            let zb = t.z[o + b * n] * wo;
            for c in 0..k {
                blk[c + b * k] += t.z[o + c * n] * zb;
            }
        }
    }
}

/// Adds [X y]ᵀWZ_j to the (zeroed) block of A in the [X y] rows and term j's columns.
fn accumulate_xy_z(tj: &ReTerm, x: &[f64], p: usize, y: &[f64], n: usize, weights: Option<&[f64]>, d: &mut Dense) {
    let m = p + 1;
    let kj = tj.k;
    if p == 0 {
        // the y row alone (a GLMM's working model for u): no row buffer
        for o in 0..n {
            let wy = weights.map_or(1.0, |w| w[o]) * y[o];
            let cj = tj.codes.get(o) * kj;
            for b in 0..kj {
                d.data[cj + b] += tj.z[o + b * n] * wy;
            }
        }
        return;
    }
    for_row_chunks(x, p, y, n, |o0, rows| {
        for (i, row) in rows.chunks_exact(m).enumerate() {
            let o = o0 + i;
            let wo = weights.map_or(1.0, |w| w[o]);
            let cj = tj.codes.get(o) * kj;
            for b in 0..kj {
                let zb = tj.z[o + b * n] * wo;
                let col = &mut d.data[(cj + b) * m..(cj + b + 1) * m];
                for (c, v) in col.iter_mut().zip(row) {
                    *c += v * zb;
                }
            }
        }
    });
}

/// Adds [X y]ᵀW[X y] to the (zeroed) last diagonal block of A. Without weights and
/// with `by_products`, by dot products of the columns (no row pass) in a fixed order
/// of summation whatever the buffers' alignment, so that refits give the same numbers
/// on any thread.
fn accumulate_xy(x: &[f64], p: usize, y: &[f64], n: usize, weights: Option<&[f64]>, by_products: bool, d: &mut Dense) {
    let m = p + 1;
    if weights.is_none() && by_products {
        let col = |j: usize| if j < p { &x[j * n..(j + 1) * n] } else { y };
        for b in 0..m {
            for c in b..m {
                d.data[b * m + c] = dense::dot(col(c), col(b));
            }
        }
        return;
    }
    for_row_chunks(x, p, y, n, |o0, rows| {
        for (i, row) in rows.chunks_exact(m).enumerate() {
            let wo = weights.map_or(1.0, |w| w[o0 + i]);
            for b in 0..m {
                let vb = row[b] * wo;
                let col = &mut d.data[b * m + b..(b + 1) * m];
                for (c, v) in col.iter_mut().zip(&row[b..]) {
                    *c += v * vb;
                }
            }
        }
    });
}

fn for_row_chunks(x: &[f64], p: usize, y: &[f64], n: usize, mut f: impl FnMut(usize, &[f64])) {
    const CHUNK: usize = 256;
    let m = p + 1;
    let mut buf = vec![0.0; CHUNK * m];
    let mut o0 = 0;
    while o0 < n {
        let len = CHUNK.min(n - o0);
        for c in 0..m {
            let src = if c < p { &x[c * n + o0..c * n + o0 + len] } else { &y[o0..o0 + len] };
            for (i, v) in src.iter().enumerate() {
                buf[i * m + c] = *v;
            }
        }
        f(o0, &buf[..len * m]);
        o0 += len;
    }
}
