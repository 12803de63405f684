//! Correlated residuals: Var(ε) = σ²Ψ(φ), block-diagonal over correlation groups that
//! are nested in every random-effects grouping factor.
//!
//! Within each group g, Ψ_g = C_g C_gᵀ, and y, X and Z are whitened by C_g⁻¹. Because a
//! group lies inside one level of every grouping factor, whitening only changes the
//! values of each term's model columns, never which level a row belongs to: the
//! whitened model has exactly the blocked structure of [`LinearMixedModel`]. The
//! criterion gains log|Ψ| (ML and REML alike), and φ is optimised jointly with θ on an
//! unconstrained scale η.
use crate::linalg::dense;
use crate::error::{MixedError, Result};
use crate::lmm::fit::{fitted_values, Fit};
use crate::lmm::model::LinearMixedModel;
use crate::lmm::optimize::{optimize_objective, optimize_with, OptimSummary, SearchScale};
use crate::optim::bfgs::{FitControl, Objective};
use crate::lmm::reterm::ReTerm;
use crate::residuals::variance::{VarFunc, VarPart};
use rayon::prelude::*;
use std::borrow::Cow;

/// Rows from which the whitened columns are formed on several threads.
const PARALLEL_WHITEN_ROWS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorKind {
    /// nlme's corAR1: Ψ_jk = φ^|t_j − t_k| for integer positions t, φ ∈ (−1, 1).
    Ar1,
    /// nlme's corCAR1: Ψ_jk = φ^|t_j − t_k| for continuous times, φ ∈ (0, 1).
    Car1,
    /// nlme's corCompSymm: Ψ_jk = ρ (j ≠ k), ρ ∈ (−1/(m−1), 1) for groups of at most m.
    CompSymm,
    /// Random walk observed at times t > 0: Ψ_jk = min(t_j, t_k), plus τ on the
    /// diagonal with an extra iid measurement error (τ = its variance / σ²).
    RandomWalk { nugget: bool },
    /// No correlation (each row its own group): a variance function alone.
    Independent,
}

#[derive(Debug, Clone)]
pub struct CorStruct {
    pub kind: CorKind,
    /// Rows of each group, in time order.
    pub groups: Vec<Vec<usize>>,
    /// Time (or position) of each row.
    pub times: Vec<f64>,
    max_size: usize,
}

impl CorStruct {
    /// No correlation: every row its own group.
    pub fn independent(n: usize) -> Self {
        CorStruct { kind: CorKind::Independent, groups: (0..n).map(|i| vec![i]).collect(), times: (0..n).map(|i| i as f64).collect(), max_size: 1 }
    }

    pub fn new(kind: CorKind, codes: &[u32], times: Vec<f64>) -> Result<Self> {
        if codes.len() != times.len() {
            return Err(MixedError::Input("correlation groups and times differ in length".into()));
        }
        if times.iter().any(|t| !t.is_finite()) {
            return Err(MixedError::Input("correlation times must be finite".into()));
        }
        let ng = codes.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); ng];
        for (o, &c) in codes.iter().enumerate() {
            groups[c as usize].push(o);
        }
        groups.retain(|g| !g.is_empty());
        for g in &mut groups {
            g.sort_by(|&a, &b| times[a].partial_cmp(&times[b]).unwrap_or(std::cmp::Ordering::Equal));
            if g.windows(2).any(|w| times[w[0]] == times[w[1]]) && kind != CorKind::CompSymm {
                return Err(MixedError::Input("duplicated times within a correlation group".into()));
            }
        }
        if let CorKind::RandomWalk { .. } = kind {
            if times.iter().any(|&t| t <= 0.0) {
                return Err(MixedError::Input("random-walk times must be positive (the walk starts at 0 at time 0)".into()));
            }
        }
        if kind == CorKind::Ar1 && times.iter().any(|t| t.fract() != 0.0) {
            return Err(MixedError::Input("corAR1 needs integer-valued positions; use corCAR1 for continuous time".into()));
        }
        let max_size = groups.iter().map(|g| g.len()).max().unwrap_or(1);
        Ok(CorStruct { kind, groups, times, max_size })
    }

    /// Number of correlation parameters.
    pub fn npar(&self) -> usize {
        match self.kind {
            CorKind::RandomWalk { nugget: false } | CorKind::Independent => 0,
            _ => 1,
        }
    }

    fn cs_lower(&self) -> f64 {
        if self.max_size > 1 {
            -1.0 / (self.max_size as f64 - 1.0)
        } else {
            -0.999
        }
    }

    /// Natural-scale parameters from the unconstrained η.
    pub fn natural(&self, eta: &[f64]) -> Vec<f64> {
        eta.iter()
            .map(|&e| match self.kind {
                CorKind::Ar1 => e.tanh(),
                CorKind::Car1 => 1.0 / (1.0 + (-e).exp()),
                CorKind::CompSymm => {
                    let lo = self.cs_lower();
                    lo + (1.0 - lo) / (1.0 + (-e).exp())
                }
                CorKind::RandomWalk { .. } | CorKind::Independent => e.exp(),
            })
            .collect()
    }

    /// dφ/dη of a Markov structure's parameter (AR(1): tanh; CAR(1): logistic).
    pub(crate) fn dnatural(&self, eta: f64) -> f64 {
        let phi = self.natural(&[eta])[0];
        match self.kind {
            CorKind::Ar1 => 1.0 - phi * phi,
            CorKind::Car1 => phi * (1.0 - phi),
            _ => f64::NAN,
        }
    }

    /// η from natural-scale parameters (clamped just inside their range).
    pub fn unconstrained(&self, phi: &[f64]) -> Vec<f64> {
        phi.iter()
            .map(|&p| match self.kind {
                CorKind::Ar1 => p.clamp(-0.999999, 0.999999).atanh(),
                CorKind::Car1 => {
                    let p = p.clamp(1e-6, 1.0 - 1e-6);
                    (p / (1.0 - p)).ln()
                }
                CorKind::CompSymm => {
                    let lo = self.cs_lower();
                    let u = ((p - lo) / (1.0 - lo)).clamp(1e-6, 1.0 - 1e-6);
                    (u / (1.0 - u)).ln()
                }
                CorKind::RandomWalk { .. } | CorKind::Independent => p.max(1e-8).ln(),
            })
            .collect()
    }

    /// Ψ_g (column-major, m×m) at natural parameters φ.
    fn group_matrix(&self, g: &[usize], phi: &[f64], out: &mut [f64]) {
        let m = g.len();
        for a in 0..m {
            for b in 0..m {
                let (ta, tb) = (self.times[g[a]], self.times[g[b]]);
                out[a + b * m] = match self.kind {
                    CorKind::Ar1 | CorKind::Car1 => {
                        if a == b {
                            1.0
                        } else {
                            phi[0].powf((ta - tb).abs())
                        }
                    }
                    CorKind::CompSymm => {
                        if a == b {
                            1.0
                        } else {
                            phi[0]
                        }
                    }
                    CorKind::RandomWalk { nugget } => ta.min(tb) + if a == b && nugget { phi[0] } else { 0.0 },
                    CorKind::Independent => {
                        if a == b {
                            1.0
                        } else {
                            0.0
                        }
                    }
                };
            }
        }
    }

    /// Ψ (dense n×n, column-major) at natural parameters φ: Kenward–Roger's dense algebra
    /// needs Var(ε) itself, not its factor.
    pub fn dense(&self, phi: &[f64], n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        let mut psi = vec![0.0; self.max_size * self.max_size];
        for g in &self.groups {
            let m = g.len();
            self.group_matrix(g, phi, &mut psi[..m * m]);
            for (b, &ob) in g.iter().enumerate() {
                for (a, &oa) in g.iter().enumerate() {
                    out[oa + ob * n] = psi[a + b * m];
                }
            }
        }
        out
    }

    /// Whether C⁻¹ is bidiagonal in time order (AR(1), CAR(1), or no correlation).
    pub fn is_markov(&self) -> bool {
        matches!(self.kind, CorKind::Ar1 | CorKind::Car1 | CorKind::Independent)
    }

    /// Each row's predecessor in time within its group (itself for a group's first row).
    fn predecessors(&self, n: usize) -> Vec<u32> {
        let mut prev: Vec<u32> = (0..n as u32).collect();
        for g in &self.groups {
            for w in g.windows(2) {
                prev[w[1]] = w[0] as u32;
            }
        }
        prev
    }

    /// ρ = φ^gap and what follows from it, for rows taken in order: recomputed only
    /// when the gap changes (one power per run of equal gaps).
    pub(crate) fn gap_steps(phi: f64) -> GapSteps {
        GapSteps { phi, gap: f64::NAN, rho: 0.0, scale: 1.0, log_one_minus: 0.0 }
    }

    /// Each group's rows and the Cholesky factor C_g of Ψ_g (m×m, column-major), with a
    /// buffer of length m for the caller: the one place Ψ_g is formed and factored.
    fn for_each_factor(&self, phi: &[f64], mut f: impl FnMut(&[usize], &[f64], &mut [f64])) -> Result<()> {
        let mut psi = vec![0.0; self.max_size * self.max_size];
        let mut v = vec![0.0; self.max_size];
        for g in &self.groups {
            let m = g.len();
            let psi = &mut psi[..m * m];
            self.group_matrix(g, phi, psi);
            dense::chol_lower(psi, m).map_err(|_| MixedError::Numerical("the residual correlation matrix is not positive definite".into()))?;
            f(g, psi, &mut v[..m]);
        }
        Ok(())
    }

    /// Colour independent N(0, 1) draws in place: C_g z in every group (Ψ_g = C_g C_gᵀ).
    pub fn colour(&self, phi: &[f64], e: &mut [f64]) -> Result<()> {
        if self.kind == CorKind::Independent {
            return Ok(());
        }
        self.for_each_factor(phi, |g, c, v| {
            let m = g.len();
            for a in 0..m {
                v[a] = (0..=a).map(|b| c[a + b * m] * e[g[b]]).sum();
            }
            for (a, &o) in g.iter().enumerate() {
                e[o] = v[a];
            }
        })
    }

    /// Whiten the columns in place (each an n-vector) with C_g⁻¹ in every group;
    /// returns log|Ψ|. (A model with a Markov structure whitens by its bidiagonal
    /// (V C)⁻¹ instead, [`CorrelatedModel`]'s `bidiagonal`.)
    pub fn whiten(&self, phi: &[f64], cols: &mut [&mut [f64]]) -> Result<f64> {
        if self.kind == CorKind::Independent {
            return Ok(0.0);
        }
        let mut logdet = 0.0;
        self.for_each_factor(phi, |g, c, v| {
            let m = g.len();
            logdet += 2.0 * dense::log_diag_sum(c, m, m);
            for col in cols.iter_mut() {
                for (a, &o) in g.iter().enumerate() {
                    v[a] = col[o];
                }
                dense::solve_lower(c, m, v);
                for (a, &o) in g.iter().enumerate() {
                    col[o] = v[a];
                }
            }
        })?;
        Ok(logdet)
    }
}

/// AR(1)/CAR(1) between a row and the one before it in its group: ρ = φ^gap,
/// s = (1 − ρ²)^(−½) and log(1 − ρ²).
pub(crate) struct GapSteps {
    phi: f64,
    gap: f64,
    pub(crate) rho: f64,
    pub(crate) scale: f64,
    pub(crate) log_one_minus: f64,
}

impl GapSteps {
    /// Move to `gap`; true when the values were recomputed.
    pub(crate) fn at(&mut self, gap: f64) -> Result<bool> {
        if gap == self.gap {
            return Ok(false);
        }
        self.gap = gap;
        self.rho = self.phi.powf(gap);
        let one_minus = 1.0 - self.rho * self.rho;
        if !(one_minus > 0.0) {
            return Err(MixedError::Numerical("the residual correlation matrix is not positive definite".into()));
        }
        self.scale = 1.0 / one_minus.sqrt();
        self.log_one_minus = one_minus.ln();
        Ok(true)
    }
}

/// Whiten columns (y, X's, Z's, each an n-vector) in place: divide by the variance
/// function's v_i, then C_g⁻¹ in every correlation group; returns log|V Ψ V|.
fn whiten_columns(cor: &CorStruct, var: Option<&VarFunc>, eta: &[f64], n: usize, cols: &mut [&mut [f64]]) -> Result<f64> {
    let nc = cor.npar();
    let mut var_logdet = 0.0;
    if let Some(v) = var {
        let (mult, logsum) = v.multipliers(&eta[nc..], n)?;
        var_logdet = 2.0 * logsum;
        for col in cols.iter_mut() {
            col.iter_mut().zip(&mult).for_each(|(c, m)| *c /= m);
        }
    }
    Ok(var_logdet + cor.whiten(&cor.natural(&eta[..nc]), cols)?)
}

/// A linear mixed model with correlated residuals: the original data, the structure,
/// and the whitened [`LinearMixedModel`] at the current η.
/// The original data are borrowed like [`LinearMixedModel`]'s; the whitened copy is owned.
#[derive(Clone)]
pub struct CorrelatedModel<'d> {
    pub(crate) terms: Vec<ReTerm<'d>>,
    pub(crate) x: Cow<'d, [f64]>,
    pub(crate) p: usize,
    pub(crate) y: Cow<'d, [f64]>,
    pub(crate) reml: bool,
    pub cor: CorStruct,
    /// A variance function, with its parameters after the correlation's in η.
    pub var: Option<VarFunc>,
    pub model: LinearMixedModel<'d>,
    eta: Vec<f64>,
    logdet: f64,
    /// For a Markov structure, each row's predecessor in its group (see [`BidiagonalWhitening`]).
    pub(crate) prev: Vec<u32>,
    /// Every predecessor is the row before (rows in group and time order, the usual
    /// layout): the whitening pass then reads memory in order and vectorises.
    prev_in_order: bool,
    /// varIdent alone: each stratum's A (the cross-products of its rows, unscaled), so
    /// that A(δ) = Σ_s δ_s⁻² A_s is formed without the rows; empty otherwise.
    strata_a: Vec<Vec<Vec<f64>>>,
    /// Whether the whitened copy of the data is at η (the optimiser's criterion leaves it
    /// behind when A is summed from the strata; [`CorrelatedModel::set_eta`] catches up).
    data_current: bool,
}

/// (V C)⁻¹ of a Markov structure is bidiagonal: row o of the whitened data is
/// a_o·d_o + b_o·d_prev(o), with a_o = s_o/v_o and b_o = −ρ_o s_o/v_prev(o) (ρ_o =
/// φ^gap, s_o = 1/√(1 − ρ_o²); a group's first row has a_o = 1/v_o, b_o = 0). The
/// coefficients are formed once per η; every column is then one pass, the columns in
/// parallel.
pub(crate) struct BidiagonalWhitening {
    pub(crate) a: Vec<f64>,
    pub(crate) b: Vec<f64>,
    /// 1/v_i, the variance function's inverse multipliers (ones without one).
    pub(crate) inv_v: Vec<f64>,
    pub(crate) logdet: f64,
}

impl<'d> CorrelatedModel<'d> {
    pub fn new(
        terms: Vec<ReTerm<'d>>,
        x: impl Into<Cow<'d, [f64]>>,
        p: usize,
        y: impl Into<Cow<'d, [f64]>>,
        reml: bool,
        cor: CorStruct,
        var: Option<VarFunc>,
        eta0: Vec<f64>,
    ) -> Result<Self> {
        let (x, y) = (x.into(), y.into());
        let npar = cor.npar() + var.as_ref().map_or(0, VarFunc::npar);
        if eta0.len() != npar {
            return Err(MixedError::Input(format!("residual-structure start has {} values, expected {}", eta0.len(), npar)));
        }
        let n = y.len();
        if cor.times.len() != n {
            return Err(MixedError::Input("correlation structure and data differ in length".into()));
        }
        // nesting: every term's level must be constant within a correlation group
        for (ti, t) in terms.iter().enumerate() {
            for g in &cor.groups {
                if g.iter().any(|&o| t.codes.get(o) != t.codes.get(g[0])) {
                    return Err(MixedError::Input(format!(
                        "correlation groups cut across the grouping factor of random-effects term {}; they must be nested in it",
                        ti + 1
                    )));
                }
            }
        }
        let markov = cor.is_markov();
        let (model, logdet) = Self::whitened(&terms, &x, p, &y, reml, &cor, var.as_ref(), &eta0, !markov)?;
        let prev = if markov { cor.predecessors(n) } else { Vec::new() };
        let prev_in_order = prev.iter().enumerate().all(|(o, &p)| p as usize == o || p as usize + 1 == o);
        let mut cm = CorrelatedModel { terms, x, p, y, reml, cor, var, model, eta: eta0, logdet, prev, prev_in_order, strata_a: Vec::new(), data_current: true };
        if markov {
            // the copy was made unwhitened; whitened here as at every η
            let eta = cm.eta.clone();
            cm.logdet = cm.rewhiten(&eta, true)?;
        }
        cm.form_strata_a()?;
        Ok(cm)
    }

    /// Number of residual-structure parameters (the correlation's, then the variance function's).
    pub fn npar(&self) -> usize {
        self.cor.npar() + self.var.as_ref().map_or(0, VarFunc::npar)
    }

    /// Natural-scale parameters at η: the correlation's, then the variance function's.
    pub fn natural(&self, eta: &[f64]) -> Vec<f64> {
        let nc = self.cor.npar();
        let mut out = self.cor.natural(&eta[..nc]);
        if let Some(v) = &self.var {
            out.extend(v.natural(&eta[nc..]));
        }
        out
    }

    /// A new response (a bootstrap replicate): the whitened model is rebuilt at the current η.
    pub fn set_response(&mut self, y: &[f64]) -> Result<()> {
        if y.len() != self.y.len() {
            return Err(MixedError::Input("the response has the wrong length".into()));
        }
        self.y = Cow::Owned(y.to_vec());
        // the strata's A hold the old response's cross-products
        self.form_strata_a()?;
        // re-whitened in place, as at every η: the whitened model's A is then formed
        // the same way whatever this copy fitted before (bootstrap workers reuse copies)
        let eta = self.eta.clone();
        self.logdet = self.rewhiten(&eta, true)?;
        Ok(())
    }

    /// The errors' structure at the current η, for simulation.
    pub fn errors(&self) -> Result<crate::simulate::ErrorStructure> {
        let nc = self.cor.npar();
        let cor = if self.cor.kind == CorKind::Independent { None } else { Some((self.cor.clone(), self.cor.natural(&self.eta[..nc]))) };
        let sd = if self.var.is_some() { Some(self.multipliers()?) } else { None };
        Ok(crate::simulate::ErrorStructure { cor, sd })
    }

    /// Var(ε)/σ² = V Ψ V at η (dense n×n, column-major), leaving the model where it is.
    pub fn residual_covariance(&self, eta: &[f64]) -> Result<Vec<f64>> {
        let n = self.y.len();
        let nc = self.cor.npar();
        if eta.len() != self.eta.len() || eta.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Input("wrong or non-finite residual-structure parameters".into()));
        }
        let mut out = self.cor.dense(&self.cor.natural(&eta[..nc]), n);
        if let Some(v) = &self.var {
            let (mult, _) = v.multipliers(&eta[nc..], n)?;
            for (j, mj) in mult.iter().enumerate() {
                out[j * n..(j + 1) * n].iter_mut().zip(&mult).for_each(|(o, mi)| *o *= mi * mj);
            }
        }
        Ok(out)
    }

    /// The standard-deviation multipliers at the current η (ones without a variance function).
    pub fn multipliers(&self) -> Result<Vec<f64>> {
        let n = self.y.len();
        match &self.var {
            Some(v) => Ok(v.multipliers(&self.eta[self.cor.npar()..], n)?.0),
            None => Ok(vec![1.0; n]),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn whitened(
        terms: &[ReTerm<'d>],
        x: &[f64],
        p: usize,
        y: &[f64],
        reml: bool,
        cor: &CorStruct,
        var: Option<&VarFunc>,
        eta: &[f64],
        whiten: bool,
    ) -> Result<(LinearMixedModel<'d>, f64)> {
        let n = y.len();
        let mut xw = x.to_vec();
        let mut yw = y.to_vec();
        let mut zs: Vec<Vec<f64>> = terms.iter().map(|t| t.z.to_vec()).collect();
        let logdet = if !whiten {
            0.0
        } else {
            let mut cols: Vec<&mut [f64]> = vec![&mut yw[..]];
            cols.extend(xw.chunks_mut(n));
            for z in zs.iter_mut() {
                cols.extend(z.chunks_mut(n));
            }
            whiten_columns(cor, var, eta, n, &mut cols)?
        };
        let wterms = terms
            .iter()
            .zip(zs)
            .map(|(t, z)| ReTerm::new(t.codes.clone(), t.nlevels, z, t.k, t.cov))
            .collect::<Result<Vec<_>>>()?;
        Ok((LinearMixedModel::new(wterms, xw, p, yw, None, reml)?, logdet))
    }

    /// Re-whiten the data into the whitened model's own buffers at η and re-form its A
    /// (same blocks, same pattern of L): no allocation per evaluation. Without `data`,
    /// a model whose A is summed from the strata leaves the data's copy as it was.
    fn rewhiten(&mut self, eta: &[f64], data: bool) -> Result<f64> {
        if !self.prev.is_empty() {
            return self.rewhiten_bidiagonal(eta, data);
        }
        let n = self.y.len();
        let m = &mut self.model;
        m.y.to_mut().copy_from_slice(&self.y);
        m.x.to_mut().copy_from_slice(&self.x);
        for (wt, t) in m.terms.iter_mut().zip(&self.terms) {
            wt.z.to_mut().copy_from_slice(&t.z);
        }
        let logdet = {
            let mut cols: Vec<&mut [f64]> = vec![m.y.to_mut()];
            cols.extend(m.x.to_mut().chunks_mut(n));
            for t in m.terms.iter_mut() {
                cols.extend(t.z.to_mut().chunks_mut(n));
            }
            whiten_columns(&self.cor, self.var.as_ref(), eta, n, &mut cols)?
        };
        m.reform_a();
        Ok(logdet)
    }

    /// The strata of a variance function that is varIdent alone, without correlation.
    fn ident_strata(&self) -> Option<(&[u32], usize)> {
        match (&self.cor.kind, self.var.as_ref().map(|v| &v.parts[..])) {
            (CorKind::Independent, Some([VarPart::Ident { strata, nstrata }])) if *nstrata >= 2 => Some((strata, *nstrata)),
            _ => None,
        }
    }

    /// Each stratum's A, from the rows of that stratum alone (the others zeroed in the
    /// whitened copy, then re-formed in place, so every A_s has the pattern of A), when
    /// summing the S copies costs less than a pass over the rows; the whitened model is
    /// then restored at the current η.
    fn form_strata_a(&mut self) -> Result<()> {
        self.strata_a.clear();
        let Some((strata, ns)) = self.ident_strata() else { return Ok(()) };
        let strata = strata.to_vec();
        let n = self.y.len();
        let ncols = 1 + self.p + self.terms.iter().map(|t| t.k).sum::<usize>();
        let size: usize = self.model.a.iter().map(|b| b.values().len()).sum();
        if ns * size > n * ncols {
            return Ok(());
        }
        let mut snaps = Vec::with_capacity(ns);
        for st in 0..ns as u32 {
            let m = &mut self.model;
            let mut cols: Vec<(&[f64], &mut [f64])> = vec![(&self.y[..], m.y.to_mut())];
            cols.extend(self.x.chunks(n).zip(m.x.to_mut().chunks_mut(n)));
            for (wt, t) in m.terms.iter_mut().zip(&self.terms) {
                cols.extend(t.z.chunks(n).zip(wt.z.to_mut().chunks_mut(n)));
            }
            for (src, dst) in cols {
                for o in 0..n {
                    dst[o] = if strata[o] == st { src[o] } else { 0.0 };
                }
            }
            m.reform_a();
            snaps.push(m.a_values());
        }
        self.strata_a = snaps;
        let eta = self.eta.clone();
        self.logdet = self.rewhiten(&eta, true)?;
        Ok(())
    }

    /// The coefficients of the bidiagonal (V C)⁻¹ at η, and log|V Ψ V|.
    pub(crate) fn bidiagonal(&self, eta: &[f64]) -> Result<BidiagonalWhitening> {
        let n = self.y.len();
        let nc = self.cor.npar();
        let (inv_v, logsum) = match &self.var {
            Some(v) => {
                let (mult, logsum) = v.multipliers(&eta[nc..], n)?;
                (mult.iter().map(|m| 1.0 / m).collect(), logsum)
            }
            None => (vec![1.0; n], 0.0),
        };
        let phi = if nc > 0 { self.cor.natural(&eta[..nc])[0] } else { 0.0 };
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        let mut logdet = 2.0 * logsum;
        let mut steps = CorStruct::gap_steps(phi);
        for o in 0..n {
            let pv = self.prev[o] as usize;
            if pv == o {
                a[o] = inv_v[o];
                continue;
            }
            steps.at(self.cor.times[o] - self.cor.times[pv])?;
            a[o] = steps.scale * inv_v[o];
            b[o] = -steps.rho * steps.scale * inv_v[pv];
            logdet += steps.log_one_minus;
        }
        Ok(BidiagonalWhitening { a, b, inv_v, logdet })
    }

    /// [`CorrelatedModel::rewhiten`] for a Markov structure: each whitened column in one
    /// pass from the original, columns in parallel on large data.
    fn rewhiten_bidiagonal(&mut self, eta: &[f64], data: bool) -> Result<f64> {
        let w = self.bidiagonal(eta)?;
        let n = self.y.len();
        if !data && !self.strata_a.is_empty() {
            // varIdent alone, for the criterion: A from the strata, no pass over the rows
            let c: Vec<f64> = std::iter::once(1.0).chain(eta[..self.strata_a.len() - 1].iter().map(|e| (-2.0 * e).exp())).collect();
            self.model.set_a_weighted(&self.strata_a, &c);
            self.data_current = false;
            return Ok(w.logdet);
        }
        self.data_current = true;
        let m = &mut self.model;
        let mut cols: Vec<(&[f64], &mut [f64])> = vec![(&self.y[..], m.y.to_mut())];
        cols.extend(self.x.chunks(n).zip(m.x.to_mut().chunks_mut(n)));
        for (wt, t) in m.terms.iter_mut().zip(&self.terms) {
            cols.extend(t.z.chunks(n).zip(wt.z.to_mut().chunks_mut(n)));
        }
        let prev = &self.prev;
        // in order, the predecessor is the row before (b = 0 where it is not)
        let in_order = n > 0 && self.prev_in_order;
        let whiten = |(src, dst): (&[f64], &mut [f64])| {
            if in_order {
                dst[0] = w.a[0] * src[0];
                for ((((d, a), b), s), s_prev) in dst[1..].iter_mut().zip(&w.a[1..]).zip(&w.b[1..]).zip(&src[1..]).zip(&src[..n - 1]) {
                    *d = a * s + b * s_prev;
                }
            } else {
                for o in 0..n {
                    dst[o] = w.a[o] * src[o] + w.b[o] * src[prev[o] as usize];
                }
            }
        };
        if n >= PARALLEL_WHITEN_ROWS {
            cols.into_par_iter().for_each(whiten);
        } else {
            cols.into_iter().for_each(whiten);
        }
        if self.strata_a.is_empty() {
            m.reform_a();
        } else {
            // varIdent alone: rows of stratum s are scaled by 1/δ_s, so A = Σ_s δ_s⁻² A_s
            let c: Vec<f64> = std::iter::once(1.0).chain(eta[..self.strata_a.len() - 1].iter().map(|e| (-2.0 * e).exp())).collect();
            m.set_a_weighted(&self.strata_a, &c);
        }
        Ok(w.logdet)
    }

    /// Move to η, re-whitening only when it changed (or the data's copy is behind).
    pub fn set_eta(&mut self, eta: &[f64]) -> Result<()> {
        self.move_to(eta, true)
    }

    /// [`CorrelatedModel::set_eta`] for the criterion and its gradient alone, which read
    /// A, the factor and the original data: varIdent alone then skips the rows.
    pub(crate) fn set_eta_for_criterion(&mut self, eta: &[f64]) -> Result<()> {
        self.move_to(eta, false)
    }

    fn move_to(&mut self, eta: &[f64], data: bool) -> Result<()> {
        if eta.len() != self.eta.len() {
            return Err(MixedError::Input("wrong number of residual-structure parameters".into()));
        }
        if eta.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Numerical("correlation parameter is not finite".into()));
        }
        if eta != &self.eta[..] || (data && !self.data_current) {
            // on failure (a degenerate η) the model is left to be re-whitened at the next η
            let logdet = self.rewhiten(eta, data).inspect_err(|_| self.eta = vec![f64::NAN; eta.len()])?;
            self.logdet = logdet;
            self.eta = eta.to_vec();
        }
        Ok(())
    }

    pub fn logdet(&self) -> f64 {
        self.logdet
    }

    pub fn eta(&self) -> &[f64] {
        &self.eta
    }

    /// The profiled criterion at (θ, η): the whitened model's plus log|Ψ|.
    pub fn objective(&mut self, theta: &[f64], eta: &[f64]) -> Result<f64> {
        self.set_eta(eta)?;
        Ok(self.model.objective(theta)? + self.logdet)
    }

    /// The criterion's gradient over [θ, η], as the optimiser computes it.
    pub fn gradient(&mut self, theta: &[f64], eta: &[f64]) -> Result<Vec<f64>> {
        let mut x = theta.to_vec();
        x.extend(eta);
        CorrelatedCriterion { cm: self, spares: Vec::new() }.gradient_at(&x)
    }

    /// nlme's normalized residuals at the current η: the residuals y − Xβ − Zb whitened,
    /// (V C)⁻¹ (y − Xβ − Zb), in units of σ once divided by σ.
    pub fn whitened_residuals(&self, beta: &[f64], b: &[Vec<f64>]) -> Vec<f64> {
        let fw = fitted_values(&self.model.x, self.y.len(), &self.model.terms, beta, b);
        self.model.y.iter().zip(fw).map(|(y, f)| y - f).collect()
    }

    /// Fitted values Xβ + Zb on the original (unwhitened) scale.
    pub fn fitted(&self, beta: &[f64], b: &[Vec<f64>]) -> Vec<f64> {
        fitted_values(&self.x, self.y.len(), &self.terms, beta, b)
    }
}

/// The criterion over [θ, η] for the optimiser. The θ part of its gradient is exact
/// (the whitened model's, at fixed η); so is the η part of a Markov structure
/// (`gradient.rs`); for other structures it is central differences, which re-whiten the
/// n rows, so they run on copies of the model in parallel on large data.
struct CorrelatedCriterion<'m, 'd> {
    cm: &'m mut CorrelatedModel<'d>,
    spares: Vec<CorrelatedModel<'d>>,
}

/// Rows × columns from which the η differences run on two or more threads.
const PARALLEL_DIFFERENCES_MIN: usize = 50_000;

impl CorrelatedCriterion<'_, '_> {
    fn gradient_at(&mut self, x: &[f64]) -> Result<Vec<f64>> {
        let nth = self.cm.model.ntheta();
        let (theta, eta) = x.split_at(nth);
        self.cm.set_eta_for_criterion(eta)?;
        self.cm.model.update_l(theta)?;
        // a Markov structure's η part is exact (one pass over the rows, before the θ
        // part spends the factor); other structures difference it below
        let exact_eta = self.cm.eta_gradient()?;
        let mut g = self.cm.model.gradient()?;
        if let Some(ge) = exact_eta {
            g.extend(ge);
            return Ok(g);
        }
        if eta.is_empty() {
            return Ok(g);
        }
        let steps: Vec<f64> = eta.iter().map(|e| 1e-5 * e.abs().max(1.0)).collect();
        let tasks: Vec<(usize, f64)> = (0..eta.len()).flat_map(|k| [(k, steps[k]), (k, -steps[k])]).collect();
        let size = self.cm.y.len() * (self.cm.p + 1 + self.cm.terms.iter().map(|t| t.k).sum::<usize>());
        let threads = if size >= PARALLEL_DIFFERENCES_MIN {
            std::thread::available_parallelism().map_or(1, |t| t.get()).min(tasks.len())
        } else {
            1
        };
        while self.spares.len() < threads {
            self.spares.push(self.cm.clone());
        }
        let value_at = |m: &mut CorrelatedModel, &(k, h): &(usize, f64)| -> Result<f64> {
            let mut e = eta.to_vec();
            e[k] += h;
            m.objective(theta, &e)
        };
        let values: Vec<Result<f64>> = if threads == 1 {
            tasks.iter().map(|t| value_at(&mut self.spares[0], t)).collect()
        } else {
            let chunk = tasks.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = self.spares[..threads]
                    .iter_mut()
                    .zip(tasks.chunks(chunk))
                    .map(|(m, ts)| s.spawn(move || ts.iter().map(|t| value_at(m, t)).collect::<Vec<_>>()))
                    .collect();
                handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|_| vec![Err(MixedError::internal("a worker thread", "panicked"))])).collect()
            })
        };
        let values = values.into_iter().collect::<Result<Vec<f64>>>()?;
        g.extend((0..eta.len()).map(|k| (values[2 * k] - values[2 * k + 1]) / (2.0 * steps[k])));
        Ok(g)
    }
}

impl Objective for CorrelatedCriterion<'_, '_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        let nth = self.cm.model.ntheta();
        let (theta, eta) = x.split_at(nth);
        self.cm.set_eta_for_criterion(eta)?;
        Ok(self.cm.model.objective(theta)? + self.cm.logdet)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        Some(self.gradient_at(x))
    }
}

/// A fit with correlated residuals: the usual [`Fit`] (criterion including log|Ψ|,
/// fitted values on the data scale) and the correlation parameters.
pub struct CorrelatedFit {
    pub fit: Fit,
    pub eta: Vec<f64>,
    pub phi: Vec<f64>,
    pub logdet: f64,
}

/// Optimise θ and η jointly (or evaluate at `control.start` = [θ, η] when `optimize` is false).
pub fn fit_correlated(cm: &mut CorrelatedModel, control: &FitControl, optimize: bool) -> Result<CorrelatedFit> {
    let nth = cm.model.ntheta();
    let ncor = cm.npar();
    let start: Vec<f64> = match &control.start {
        Some(s) if s.len() == nth + ncor => s.clone(),
        Some(s) => return Err(MixedError::Input(format!("start has length {}, expected {}", s.len(), nth + ncor))),
        None => {
            let mut s = cm.model.theta_start();
            s.extend(cm.eta.clone());
            s
        }
    };
    let mut is_diag = cm.model.theta_is_diagonal();
    is_diag.extend(std::iter::repeat(false).take(ncor));
    // central differences: no weights, which would shrink their steps in θ
    let mut scale = SearchScale::linear(nth + ncor);
    scale.sinh[..nth].copy_from_slice(&SearchScale::for_model(&cm.model).sinh);
    let optim = if optimize {
        let mut res = optimize_objective(&mut CorrelatedCriterion { cm: &mut *cm, spares: Vec::new() }, &start, &is_diag, &scale, control)?;
        cm.model.normalize_theta(&mut res.theta[..nth]);
        res
    } else {
        let criterion = cm.objective(&start[..nth], &start[nth..])?;
        OptimSummary { theta: start.clone(), criterion, evaluations: 1, gradients: 0, converged: true, grad_norm: f64::NAN, message: "evaluated at the given parameters".into() }
    };
    let (theta, eta) = (optim.theta[..nth].to_vec(), optim.theta[nth..].to_vec());
    cm.set_eta(&eta)?;
    let inner = FitControl { start: Some(theta.clone()), ..control.clone() };
    let mut fit = crate::lmm::fit::fit(&mut cm.model, &inner, false)?;
    fit.criterion += cm.logdet;
    fit.fitted = cm.fitted(&fit.beta, &fit.b);
    fit.optim = OptimSummary { theta, criterion: fit.criterion, ..optim };
    Ok(CorrelatedFit { phi: cm.natural(&eta), eta, logdet: cm.logdet, fit })
}

/// Profiles of θ, σ and β with η re-optimised at every point (η last in each inner vector).
impl<'d> crate::inference::profile::Profiled<'d> for CorrelatedModel<'d> {
    fn lmm(&self) -> &LinearMixedModel<'d> {
        &self.model
    }
    fn n_extra(&self) -> usize {
        self.npar()
    }
    fn criterion(&mut self, theta: &[f64], extra: &[f64]) -> Result<f64> {
        self.objective(theta, extra)
    }
    fn deviance(&mut self, theta: &[f64], sigma: f64, extra: &[f64]) -> Result<f64> {
        self.set_eta(extra)?;
        Ok(self.model.deviance_at(theta, sigma, false)? + self.logdet)
    }
    fn without_column(&self, j: usize) -> Result<Self> {
        let xdrop = crate::inference::profile::drop_column(&self.x, self.y.len(), self.p, j);
        CorrelatedModel::new(self.terms.clone(), xdrop, self.p - 1, self.y.to_vec(), false, self.cor.clone(), self.var.clone(), self.eta.clone())
    }
    fn data(&self) -> (&[f64], &[f64]) {
        (&self.y, &self.x)
    }
    fn set_y(&mut self, y: &[f64]) -> Result<()> {
        self.set_response(y)
    }
    fn optimum(&mut self, control: &FitControl) -> Result<(f64, Vec<f64>)> {
        let f = fit_correlated(self, control, true)?;
        let mut at = f.fit.optim.theta.clone();
        at.extend(&f.eta);
        Ok((f.fit.criterion, at))
    }
}

/// Satterthwaite's ingredients over (θ, η, σ) for a correlated fit.
pub fn varpar_derivatives_correlated(cm: &mut CorrelatedModel, vars: &[f64], sigma: f64) -> Result<crate::inference::varpar::VarparDerivatives> {
    let nth = cm.model.ntheta();
    if vars.len() != nth + cm.npar() {
        return Err(MixedError::Input("wrong number of variance parameters".into()));
    }
    let (p, n, reml) = (cm.p, cm.y.len(), cm.reml);
    let d = crate::inference::varpar::derivatives_with(
        |v| {
            cm.set_eta(&v[nth..])?;
            cm.model.update_l(&v[..nth])?;
            Ok(crate::inference::varpar::pieces_now(&cm.model, reml, cm.logdet))
        },
        vars,
        sigma,
        p,
        n,
        reml,
        1,
    );
    cm.set_eta(&vars[nth..])?;
    cm.model.update_l(&vars[..nth])?;
    d
}

/// Profile-likelihood intervals of the residual structure's parameters (ML): for η_j
/// fixed at v, the ML criterion minimised over θ and the other η; ζ(v) =
/// sign(v − η̂_j) √(that minimum − the ML minimum), and each end is where ζ = ±z. The
/// ends are returned on the natural scale (every parameter's map is increasing); an
/// end the profile never reaches is the parameter's limit.
pub fn profile_structure(cm: &CorrelatedModel, start: &[f64], z: f64, which: &[usize], control: &FitControl) -> Result<Vec<(f64, f64)>> {
    let nth = cm.model.ntheta();
    let npar = cm.npar();
    if which.iter().any(|&j| j >= npar) {
        return Err(MixedError::Input("the residual structure has no such parameter".into()));
    }
    let mut ml = CorrelatedModel::new(cm.terms.clone(), cm.x.clone(), cm.p, cm.y.clone(), false, cm.cor.clone(), cm.var.clone(), cm.eta.clone())?;
    let ctl = FitControl { start: Some(start.to_vec()), ..control.clone() };
    let best = fit_correlated(&mut ml, &ctl, true)?;
    let f_hat = best.fit.criterion;
    let mut full_hat = best.fit.optim.theta.clone();
    full_hat.extend(&best.eta);
    let mut is_diag = ml.model.theta_is_diagonal();
    is_diag.extend(std::iter::repeat(false).take(npar - 1));
    let mut scale = SearchScale::linear(nth + npar - 1);
    scale.sinh[..nth].copy_from_slice(&SearchScale::for_model(&ml.model).sinh);
    let mut out = Vec::with_capacity(which.len());
    for &j in which {
        let at = nth + j;
        let hat = full_hat[at];
        // warm starts: the reduced optimum last found on this side
        let reduced_hat: Vec<f64> = full_hat.iter().enumerate().filter(|&(i, _)| i != at).map(|(_, &v)| v).collect();
        let mut zeta = |v: f64, warm: &mut Vec<f64>| -> Result<f64> {
            let full = |w: &[f64]| -> Vec<f64> {
                let mut x = w[..at].to_vec();
                x.push(v);
                x.extend(&w[at..]);
                x
            };
            let res = optimize_with(
                |w| {
                    let x = full(w);
                    ml.objective(&x[..nth], &x[nth..])
                },
                warm,
                &is_diag,
                &scale,
                &FitControl { start: None, ..control.clone() },
            )?;
            *warm = res.theta.clone();
            let g = (res.criterion - f_hat).max(0.0);
            Ok((v - hat).signum() * g.sqrt())
        };
        let mut end = |sign: f64| -> Result<f64> {
            let target = sign * z;
            let mut warm = reduced_hat.clone();
            // a first step of 0.1 (or 10% of the estimate), then secant steps on ζ(v) − target
            let (mut v0, mut z0) = (hat, 0.0);
            let mut v1 = hat + sign * 0.1 * hat.abs().max(1.0);
            let mut z1 = zeta(v1, &mut warm)?;
            for _ in 0..60 {
                if (z1 - target).abs() < 1e-4 {
                    return Ok(v1);
                }
                if (v1 - hat).abs() > 50.0 {
                    return Ok(sign * f64::INFINITY);
                }
                let slope = (z1 - z0) / (v1 - v0);
                let mut next = if slope.is_finite() && slope.abs() > 1e-12 { v1 + (target - z1) / slope } else { v1 + sign * (v1 - hat).abs() };
                // stay on this side, and at most double the distance per step
                let dist = (v1 - hat).abs();
                if (next - hat) * sign <= 0.0 {
                    next = hat + sign * dist / 2.0;
                }
                if (next - hat).abs() > 2.0 * dist + 1.0 {
                    next = hat + sign * (2.0 * dist + 1.0);
                }
                v0 = v1;
                z0 = z1;
                v1 = next;
                z1 = zeta(v1, &mut warm)?;
            }
            Err(MixedError::Numerical("the profile of a residual-structure parameter did not reach its end".into()))
        };
        let (lo, hi) = (end(-1.0)?, end(1.0)?);
        let natural_at = |v: f64| -> f64 {
            let mut x = full_hat[nth..].to_vec();
            x[j] = if v.is_finite() { v } else { v.signum() * 700.0 };
            let n = ml.natural(&x)[j];
            if n.abs() > 1e300 { n.signum() * f64::INFINITY } else { n }
        };
        out.push((natural_at(lo), natural_at(hi)));
    }
    Ok(out)
}
