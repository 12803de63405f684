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
use crate::lmm::optimize::{optimize_with, OptimSummary, SearchScale};
use crate::optim::bfgs::FitControl;
use crate::lmm::reterm::ReTerm;
use crate::residuals::variance::VarFunc;
use std::borrow::Cow;

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

    /// Whiten the columns in place (each an n-vector) with C_g⁻¹ in every group;
    /// returns log|Ψ|.
    pub fn whiten(&self, phi: &[f64], cols: &mut [&mut [f64]]) -> Result<f64> {
        if self.kind == CorKind::Independent {
            return Ok(0.0);
        }
        let mut logdet = 0.0;
        let mut psi = vec![0.0; self.max_size * self.max_size];
        let mut v = vec![0.0; self.max_size];
        for g in &self.groups {
            let m = g.len();
            let psi = &mut psi[..m * m];
            self.group_matrix(g, phi, psi);
            dense::chol_lower(psi, m).map_err(|_| MixedError::Numerical("the residual correlation matrix is not positive definite".into()))?;
            logdet += 2.0 * dense::log_diag_sum(psi, m, m);
            for col in cols.iter_mut() {
                for (a, &o) in g.iter().enumerate() {
                    v[a] = col[o];
                }
                dense::solve_lower(psi, m, &mut v[..m]);
                for (a, &o) in g.iter().enumerate() {
                    col[o] = v[a];
                }
            }
        }
        Ok(logdet)
    }
}

/// A linear mixed model with correlated residuals: the original data, the structure,
/// and the whitened [`LinearMixedModel`] at the current η.
/// The original data are borrowed like [`LinearMixedModel`]'s; the whitened copy is owned.
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
        let (model, logdet) = Self::whitened(&terms, &x, p, &y, reml, &cor, var.as_ref(), &eta0)?;
        Ok(CorrelatedModel { terms, x, p, y, reml, cor, var, model, eta: eta0, logdet })
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
    ) -> Result<(LinearMixedModel<'d>, f64)> {
        let n = y.len();
        let mut xw = x.to_vec();
        let mut yw = y.to_vec();
        let mut zs: Vec<Vec<f64>> = terms.iter().map(|t| t.z.to_vec()).collect();
        let nc = cor.npar();
        let phi = cor.natural(&eta[..nc]);
        let mut var_logdet = 0.0;
        if let Some(v) = var {
            let (mult, logsum) = v.multipliers(&eta[nc..], n)?;
            var_logdet = 2.0 * logsum;
            let scale = |col: &mut [f64]| col.iter_mut().zip(&mult).for_each(|(c, m)| *c /= m);
            scale(&mut yw);
            xw.chunks_mut(n).for_each(scale);
            for z in zs.iter_mut() {
                z.chunks_mut(n).for_each(scale);
            }
        }
        let phi = &phi[..];
        let logdet = var_logdet + {
            let mut cols: Vec<&mut [f64]> = Vec::new();
            cols.push(&mut yw[..]);
            cols.extend(xw.chunks_mut(n));
            for z in zs.iter_mut() {
                cols.extend(z.chunks_mut(n));
            }
            cor.whiten(phi, &mut cols)?
        };
        let wterms = terms
            .iter()
            .zip(zs)
            .map(|(t, z)| ReTerm::new(t.codes.clone(), t.nlevels, z, t.k, t.cov))
            .collect::<Result<Vec<_>>>()?;
        Ok((LinearMixedModel::new(wterms, xw, p, yw, None, reml)?, logdet))
    }

    /// Move to η, re-whitening only when it changed.
    pub fn set_eta(&mut self, eta: &[f64]) -> Result<()> {
        if eta.len() != self.eta.len() {
            return Err(MixedError::Input("wrong number of residual-structure parameters".into()));
        }
        if eta.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Numerical("correlation parameter is not finite".into()));
        }
        if eta != &self.eta[..] {
            let (model, logdet) = Self::whitened(&self.terms, &self.x, self.p, &self.y, self.reml, &self.cor, self.var.as_ref(), eta)?;
            self.model = model;
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
        let mut res = optimize_with(|v| cm.objective(&v[..nth], &v[nth..]), &start, &is_diag, &scale, control)?;
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
