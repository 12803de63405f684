//! PIRLS and the Laplace deviance. Each PIRLS step is a weighted penalised least-squares
//! problem with GLM weights w and working response z: exactly a [`LinearMixedModel`]
//! with prior weights, whose A is re-formed in place (same blocks, same pattern of L).
//! For fixed (θ, β) only u moves (a model without X, the response z − Xβ); for glmer's
//! first stage (nAGQ = 0) β moves with u (a model with X).
use super::family::{Family, Link};
use crate::error::{MixedError, Result};
use crate::lmm::fit::x_beta;
use crate::lmm::model::LinearMixedModel;
use crate::lmm::optimize::{optimize_objective, optimize_with, OptimSummary, SearchScale};
use crate::optim::Objective;
use crate::lmm::reterm::ReTerm;
use crate::optim::bfgs::FitControl;
use rayon::prelude::*;
use std::borrow::Cow;

/// Observations per parallel chunk: fixed, so sums over chunks do not depend on the
/// number of threads.
const CHUNK: usize = 8192;

pub struct GeneralizedLinearMixedModel<'d> {
    pub terms: Vec<ReTerm<'d>>,
    pub x: Cow<'d, [f64]>,
    pub p: usize,
    /// The response (a proportion for the binomial family).
    pub y: Vec<f64>,
    /// Prior weights (binomial: trials times any user weights).
    pub wt: Vec<f64>,
    pub offset: Vec<f64>,
    pub family: Family,
    pub link: Link,
    /// Working models: for u given β (no X), and for (β, u) jointly.
    pub(crate) random_only: LinearMixedModel<'d>,
    joint: LinearMixedModel<'d>,
    /// The conditional modes of the last PIRLS (warm start), per term.
    pub u: Vec<Vec<f64>>,
    /// The last PIRLS for a given β, its θ and β: BFGS asks for the gradient where it
    /// has just asked for the value, and the working model is still factored there.
    last: Option<(Vec<f64>, Vec<f64>, PirlsResult)>,
    /// The PIRLS steps' weight and working-response buffers (n each), reused.
    scratch: (Vec<f64>, Vec<f64>),
}

/// The state at the end of a PIRLS run.
#[derive(Debug, Clone)]
pub struct PirlsResult {
    pub beta: Vec<f64>,
    pub u: Vec<Vec<f64>>,
    pub b: Vec<Vec<f64>>,
    pub eta: Vec<f64>,
    pub mu: Vec<f64>,
    /// Σ deviance residuals, ‖u‖² and log|L|²: the Laplace deviance is their sum.
    pub dev_resid: f64,
    pub sqr_u: f64,
    pub ldl2: f64,
}

impl PirlsResult {
    pub fn laplace(&self) -> f64 {
        self.dev_resid + self.sqr_u + self.ldl2
    }
}

impl<'d> GeneralizedLinearMixedModel<'d> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        terms: Vec<ReTerm<'d>>,
        x: impl Into<Cow<'d, [f64]>>,
        p: usize,
        y: Vec<f64>,
        wt: Vec<f64>,
        offset: Vec<f64>,
        family: Family,
        link: Link,
    ) -> Result<Self> {
        let x = x.into();
        let n = y.len();
        if wt.len() != n || offset.len() != n || x.len() != n * p {
            return Err(MixedError::Input("the response, weights, offset and X differ in length".into()));
        }
        match family {
            Family::Binomial => {
                if y.iter().any(|&v| !(0.0..=1.0).contains(&v)) {
                    return Err(MixedError::Input("binomial responses must be proportions in [0, 1]".into()));
                }
            }
            Family::Poisson => {
                if y.iter().any(|&v| v < 0.0 || v.fract() != 0.0) {
                    return Err(MixedError::Input("Poisson responses must be non-negative integer counts".into()));
                }
            }
        }
        let ones = vec![1.0; n];
        let random_only = LinearMixedModel::new(terms.clone(), Vec::<f64>::new(), 0, y.clone(), Some(Cow::Owned(ones.clone())), false)?;
        let joint = LinearMixedModel::new(terms.clone(), x.to_vec(), p, y.clone(), Some(Cow::Owned(ones)), false)?;
        let u = terms.iter().map(|t| vec![0.0; t.q()]).collect();
        Ok(GeneralizedLinearMixedModel { terms, x, p, y, wt, offset, family, link, random_only, joint, u, last: None, scratch: (Vec::new(), Vec::new()) })
    }

    /// The working model of the random effects (θ's layout, Λ).
    pub fn working_model(&self) -> &LinearMixedModel<'d> {
        &self.random_only
    }

    pub fn n(&self) -> usize {
        self.y.len()
    }

    pub fn ntheta(&self) -> usize {
        self.random_only.ntheta()
    }

    pub fn theta_start(&self) -> Vec<f64> {
        self.random_only.theta_start()
    }

    pub fn theta_is_diagonal(&self) -> Vec<bool> {
        self.random_only.theta_is_diagonal()
    }

    fn x_beta(&self, beta: &[f64]) -> Vec<f64> {
        if self.p > 0 { x_beta(&self.x, self.n(), beta) } else { vec![0.0; self.n()] }
    }

    /// Xβ + offset.
    fn fixed_base(&self, beta: &[f64]) -> Vec<f64> {
        let mut v = self.x_beta(beta);
        v.iter_mut().zip(&self.offset).for_each(|(e, o)| *e += o);
        v
    }

    /// η = base + Zb into `eta`, and μ at it into `mu`; returns Σ deviance residuals.
    /// In fixed chunks across threads, the sum taken chunk by chunk in order, so the
    /// value does not depend on the number of threads.
    fn eta_mu_dev(&self, base: &[f64], b: &[Vec<f64>], eta: &mut Vec<f64>, mu: &mut Vec<f64>) -> f64 {
        let n = self.n();
        eta.resize(n, 0.0);
        mu.resize(n, 0.0);
        let parts: Vec<f64> = eta
            .par_chunks_mut(CHUNK)
            .zip(mu.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(c, (eta_c, mu_c))| {
                let o0 = c * CHUNK;
                let mut dev = 0.0;
                for (i, (e, m)) in eta_c.iter_mut().zip(mu_c.iter_mut()).enumerate() {
                    let o = o0 + i;
                    let mut v = base[o];
                    for (t, bt) in self.terms.iter().zip(b) {
                        let lev = t.codes.get(o) * t.k;
                        for a in 0..t.k {
                            v += t.z[o + a * n] * bt[lev + a];
                        }
                    }
                    *e = v;
                    *m = self.link.linkinv(v);
                    dev += self.family.dev_resid(self.y[o], *m, self.wt[o]);
                }
                dev
            })
            .collect();
        parts.iter().sum()
    }

    /// GLM weights and the working response η − `sub` + (y − μ)/μ'(η) at η (μ = μ(η)
    /// given), in parallel chunks.
    fn working(&self, eta: &[f64], mu: &[f64], sub: &[f64], w: &mut Vec<f64>, z: &mut Vec<f64>) {
        let n = eta.len();
        w.resize(n, 0.0);
        z.resize(n, 0.0);
        w.par_chunks_mut(CHUNK).zip(z.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, (w_c, z_c))| {
            let o0 = c * CHUNK;
            for (i, (wo, zo)) in w_c.iter_mut().zip(z_c.iter_mut()).enumerate() {
                let o = o0 + i;
                let (e, m) = (eta[o], mu[o]);
                let d = self.link.mu_eta_at(e, m);
                *wo = self.wt[o] * d * d / self.family.variance(m);
                *zo = e - sub[o] + (self.y[o] - m) / d;
            }
        });
    }

    /// PIRLS at θ: u only for the given β, or β and u together (`beta = None`).
    pub fn pirls(&mut self, theta: &[f64], beta: Option<&[f64]>) -> Result<PirlsResult> {
        if let (Some(bt), Some((lt, lb, state))) = (beta, &self.last) {
            if lt.as_slice() == theta && lb.as_slice() == bt {
                let state = state.clone();
                self.u = state.u.clone();
                return Ok(state);
            }
        }
        // from the last fixed-β PIRLS (its factor still held), the modes' first-order
        // prediction: a warm start one Newton step closer
        let predicted = match (beta, self.last.take()) {
            (Some(bt), Some((lt, lb, state))) if lt.len() == theta.len() => Some(self.predict_modes(&lt, &lb, &state, theta, bt)),
            _ => None,
        };
        let n = self.n();
        let mut beta_now: Vec<f64> = match beta {
            Some(b) => b.to_vec(),
            None => vec![0.0; self.p],
        };
        let mut u = self.u.clone();
        // b from the warm-start u at this θ
        self.random_only.update_lambdas_only(theta)?;
        let mut b = self.random_only.b_from_u(&u);
        // Xβ + offset: once when β is fixed, else at each step
        let base_fixed = beta.map(|bt| self.fixed_base(bt));
        let mut base = base_fixed.clone().unwrap_or_else(|| self.fixed_base(&beta_now));
        let (mut eta, mut mu) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut dev = self.eta_mu_dev(&base, &b, &mut eta, &mut mu);
        let mut pdev = dev + sqr(&u);
        let (mut ceta, mut cmu) = (Vec::with_capacity(n), Vec::with_capacity(n));
        // the prediction, where its penalised deviance is the lower
        if let Some(pu) = predicted {
            let pb = self.random_only.b_from_u(&pu);
            let d = self.eta_mu_dev(&base, &pb, &mut ceta, &mut cmu);
            let pd = d + sqr(&pu);
            if pd.is_finite() && pd < pdev {
                (u, b, dev, pdev) = (pu, pb, d, pd);
                std::mem::swap(&mut eta, &mut ceta);
                std::mem::swap(&mut mu, &mut cmu);
            }
        }
        let mut converged = false;
        let mut factor_at_modes = false;
        for _ in 0..100 {
            // working response: Zb (β fixed) or Xβ + Zb (β free), plus the working residual
            let (mut w, mut z) = (std::mem::take(&mut self.scratch.0), std::mem::take(&mut self.scratch.1));
            self.working(&eta, &mu, base_fixed.as_deref().unwrap_or(&self.offset), &mut w, &mut z);
            let m = if beta.is_some() { &mut self.random_only } else { &mut self.joint };
            m.set_weights_response(&w, &z)?;
            self.scratch = (w, z);
            let m = if beta.is_some() { &mut self.random_only } else { &mut self.joint };
            m.update_l(theta)?;
            let new_u = m.u();
            // β fixed: when the full step would move no mode by 1e-10, the modes have
            // settled, and the factor just made is the one at their weights
            if beta.is_some() && u.iter().flatten().zip(new_u.iter().flatten()).all(|(a, c)| (a - c).abs() < 1e-10) {
                converged = true;
                factor_at_modes = true;
                break;
            }
            let new_beta = if beta.is_some() { beta_now.clone() } else { m.beta() };
            let new_b = m.b_from_u(&new_u);
            // step halving on the penalised deviance
            let mut step = 1.0;
            let mut accepted = None;
            for _ in 0..20 {
                let cu: Vec<Vec<f64>> = u.iter().zip(&new_u).map(|(a, c)| a.iter().zip(c).map(|(a, c)| a + step * (c - a)).collect()).collect();
                let cb: Vec<Vec<f64>> = b.iter().zip(&new_b).map(|(a, c)| a.iter().zip(c).map(|(a, c)| a + step * (c - a)).collect()).collect();
                let cbeta: Vec<f64> = beta_now.iter().zip(&new_beta).map(|(a, c)| a + step * (c - a)).collect();
                let cbase = if base_fixed.is_some() { None } else { Some(self.fixed_base(&cbeta)) };
                let d = self.eta_mu_dev(cbase.as_deref().unwrap_or(&base), &cb, &mut ceta, &mut cmu);
                let cp = d + sqr(&cu);
                if cp.is_finite() && cp <= pdev + 1e-10 * pdev.abs().max(1.0) {
                    accepted = Some((cu, cb, cbeta, cbase, cp, d));
                    break;
                }
                step /= 2.0;
            }
            let Some((cu, cb, cbeta, cbase, cp, d)) = accepted else { break };
            let change = (pdev - cp).abs();
            // the largest move of u (and β): log|L|² depends on û to first order, so
            // the modes must settle, not only the penalised deviance (Fisher scoring
            // for the probit and cloglog links converges only linearly)
            let moved = u.iter().flatten().zip(cu.iter().flatten()).map(|(a, c)| (a - c).abs())
                .chain(beta_now.iter().zip(&cbeta).map(|(a, c)| (a - c).abs()))
                .fold(0.0f64, f64::max);
            u = cu;
            b = cb;
            beta_now = cbeta;
            if let Some(cbase) = cbase {
                base = cbase;
            }
            std::mem::swap(&mut eta, &mut ceta);
            std::mem::swap(&mut mu, &mut cmu);
            pdev = cp;
            dev = d;
            if change < 1e-13 * (pdev.abs() + 0.1) && moved < 1e-10 {
                converged = true;
                break;
            }
        }
        if !converged && !pdev.is_finite() {
            return Err(MixedError::Numerical("PIRLS did not converge".into()));
        }
        // the factor at the weights of the final μ, for log|L|²
        if !factor_at_modes {
            let (mut w, mut z) = (Vec::new(), Vec::new());
            self.working(&eta, &mu, &self.offset, &mut w, &mut z);
            self.random_only.set_weights_response(&w, &z)?;
            self.random_only.update_l(theta)?;
        }
        let ldl2 = self.random_only.parts().ldl2;
        self.u = u.clone();
        let state = PirlsResult { beta: beta_now, sqr_u: sqr(&u), u, b, eta, mu, dev_resid: dev, ldl2 };
        if let Some(bt) = beta {
            self.last = Some((theta.to_vec(), bt.to_vec(), state.clone()));
        }
        Ok(state)
    }
}

impl GeneralizedLinearMixedModel<'_> {
    /// The modes at (θ, β) to first order from the PIRLS state `s` at (θ_p, β_p), whose
    /// factor the working model holds: the mode's equation Z̃ᵀg + u = 0 differentiated,
    /// M du = −[Λ_pᵀZᵀW(X dβ + Z dΛ u_p) + dΛᵀZᵀg], with dΛ = Λ(θ) − Λ(θ_p) (Λ is linear
    /// in θ) and Fisher weights W. Only a warm start: PIRLS converges from it either way.
    fn predict_modes(&self, theta_p: &[f64], beta_p: &[f64], s: &PirlsResult, theta: &[f64], beta: &[f64]) -> Vec<Vec<f64>> {
        let n = self.n();
        let model = &self.random_only;
        let mut dlam = Vec::with_capacity(self.terms.len());
        let mut off = 0;
        for (t, term) in self.terms.iter().enumerate() {
            let nth = term.ntheta();
            let mut l = vec![0.0; term.k * term.k];
            term.fill_lambda(&theta[off..off + nth], &mut l);
            let mut lp = vec![0.0; term.k * term.k];
            term.fill_lambda(&theta_p[off..off + nth], &mut lp);
            l.iter_mut().zip(&lp).for_each(|(a, b)| *a -= b);
            debug_assert!(model.lambdas[t].iter().zip(&lp).all(|(a, b)| a == b));
            dlam.push(l);
            off += nth;
        }
        let dbeta: Vec<f64> = beta.iter().zip(beta_p).map(|(a, b)| a - b).collect();
        let xd = if self.p > 0 { x_beta(&self.x, n, &dbeta) } else { vec![0.0; n] };
        // ZᵀW(X dβ + Z dΛ u_p) and Zᵀg per term and level
        let mut zws: Vec<Vec<f64>> = self.terms.iter().map(|t| vec![0.0; t.q()]).collect();
        let mut zg: Vec<Vec<f64>> = self.terms.iter().map(|t| vec![0.0; t.q()]).collect();
        for o in 0..n {
            let (eta, mu) = (s.eta[o], s.mu[o]);
            let d = self.link.mu_eta_at(eta, mu);
            let v = self.family.variance(mu);
            let w = self.wt[o] * d * d / v;
            let g = -self.wt[o] * (self.y[o] - mu) * d / v;
            let mut lin = xd[o];
            for (t, term) in self.terms.iter().enumerate() {
                let k = term.k;
                let l = term.codes.get(o) * k;
                for r in 0..k {
                    let dl_u: f64 = (0..=r).map(|c| dlam[t][r + c * k] * s.u[t][l + c]).sum();
                    lin += term.z[o + r * n] * dl_u;
                }
            }
            let sw = w * lin;
            for (t, term) in self.terms.iter().enumerate() {
                let k = term.k;
                let l = term.codes.get(o) * k;
                for r in 0..k {
                    let z = term.z[o + r * n];
                    zws[t][l + r] += z * sw;
                    zg[t][l + r] += z * g;
                }
            }
        }
        // rhs = −(Λ_pᵀ zws + dΛᵀ zg), level by level
        let mut du: Vec<Vec<f64>> = Vec::with_capacity(self.terms.len());
        for (t, term) in self.terms.iter().enumerate() {
            let k = term.k;
            let lam = &model.lambdas[t];
            let mut r = vec![0.0; term.q()];
            for lev in 0..term.nlevels {
                for c in 0..k {
                    let mut v = 0.0;
                    for a in c..k {
                        v += lam[a + c * k] * zws[t][lev * k + a] + dlam[t][a + c * k] * zg[t][lev * k + a];
                    }
                    r[lev * k + c] = -v;
                }
            }
            du.push(r);
        }
        model.solve_random(&mut du);
        s.u.iter().zip(&du).map(|(u, d)| u.iter().zip(d).map(|(a, b)| a + b).collect()).collect()
    }

    /// The deviance's curvature in each β with u re-optimised, 2 diag(R_XᵀR_X), from
    /// the joint working model's last factor (after a PIRLS over β and u).
    pub fn joint_beta_curvature(&self) -> Vec<f64> {
        let (p, m) = (self.p, self.p + 1);
        let f = self.joint.fe_factor();
        (0..p).map(|i| 2.0 * (0..=i).map(|j| f[i + j * m].powi(2)).sum::<f64>()).collect()
    }

    /// (R_XᵀR_X)⁻¹ of the joint working model at θ and the weights of η: glmer's
    /// covariance of β̂ without the Hessian (nAGQ = 0).
    pub fn vcov_from_rx(&mut self, theta: &[f64], eta: &[f64]) -> Result<Vec<f64>> {
        let mu: Vec<f64> = eta.iter().map(|&e| self.link.linkinv(e)).collect();
        let (mut w, mut z) = (Vec::new(), Vec::new());
        self.working(eta, &mu, &self.offset, &mut w, &mut z);
        self.joint.set_weights_response(&w, &z)?;
        self.joint.update_l(theta)?;
        Ok(self.joint.vcov_unscaled())
    }
}

impl GeneralizedLinearMixedModel<'_> {
    /// Λ[(LLᵀ)⁻¹]_llΛᵀ per term and level (σ = 1) from the factor of the last PIRLS:
    /// glmer's conditional variances of the random effects, given β̂.
    pub fn cond_var(&mut self) -> Result<Vec<Vec<f64>>> {
        (0..self.terms.len()).map(|t| self.random_only.cond_var(t)).collect()
    }
}

fn sqr(u: &[Vec<f64>]) -> f64 {
    u.iter().flatten().map(|v| v * v).sum()
}


/// A GLMM fit: θ, β, the PIRLS state at the optimum, and the optimiser's account.
pub struct GlmmFit {
    pub theta: Vec<f64>,
    pub beta: Vec<f64>,
    pub state: PirlsResult,
    pub deviance: f64,
    pub optim: OptimSummary,
    /// The Hessian of the Laplace deviance over [θ, β] (column-major), when computed.
    pub hessian: Option<Vec<f64>>,
    /// Var(β̂) from R_X (nAGQ = 0, where β is not optimised over).
    pub vcov_rx: Option<Vec<f64>>,
}

/// The deviance the second stage minimises: the Laplace approximation, or glmer's
/// adaptive Gauss–Hermite rule for one scalar term (nodes and weights for N(0, 1)).
#[derive(Debug, Clone, Copy)]
pub enum Approximation<'a> {
    Laplace,
    Agq(&'a [(f64, f64)]),
}

impl GeneralizedLinearMixedModel<'_> {
    /// The approximate deviance at (θ, β), u from PIRLS.
    pub fn deviance_at(&mut self, theta: &[f64], beta: &[f64], approx: Approximation) -> Result<f64> {
        let s = self.pirls(theta, Some(beta))?;
        match approx {
            Approximation::Laplace => Ok(s.laplace()),
            Approximation::Agq(nodes) => self.agq_deviance(&s, beta, nodes),
        }
    }

    /// glmer's adaptive Gauss–Hermite deviance for a single scalar term, at the PIRLS
    /// state `s` (its modes û and the factor at its weights, whose diagonal L_jj gives
    /// each group's scale 1/L_jj). Groups are independent, so each one's integral is a
    /// one-dimensional rule centred on û_j:
    /// Σ_j [d_j(û_j)] + log|L|² − 2 Σ_j log Σ_k w_k exp(−(d_j(û_j + z_k/L_jj) − d_j(û_j))/2 + z_k²/2),
    /// where d_j(u) is group j's deviance residuals plus u².
    pub fn agq_deviance(&self, s: &PirlsResult, beta: &[f64], nodes: &[(f64, f64)]) -> Result<f64> {
        if self.terms.len() != 1 || self.terms[0].k != 1 {
            return Err(MixedError::Input("nAGQ > 1 needs a single, scalar random-effects term".into()));
        }
        let t = &self.terms[0];
        let lambda = self.random_only.lambdas[0][0];
        let ldiag = match &self.random_only.l[0] {
            crate::linalg::blocks::Block::Diag(d) => &d.data,
            _ => return Err(MixedError::internal("AGQ", "the factor's first block is not diagonal")),
        };
        let n = self.n();
        let q = t.nlevels;
        let xb = self.x_beta(beta);
        let u0 = &s.u[0];
        let group_dev = |shift: &dyn Fn(usize) -> f64| -> Vec<f64> {
            let mut d: Vec<f64> = (0..q).map(|j| {
                let u = u0[j] + shift(j);
                u * u
            }).collect();
            for o in 0..n {
                let j = t.codes.get(o);
                let eta = xb[o] + self.offset[o] + lambda * t.z[o] * (u0[j] + shift(j));
                d[j] += self.family.dev_resid(self.y[o], self.link.linkinv(eta), self.wt[o]);
            }
            d
        };
        let d0 = group_dev(&|_| 0.0);
        let mut mult = vec![0.0; q];
        for &(z, w) in nodes {
            if z == 0.0 {
                mult.iter_mut().for_each(|m| *m += w);
                continue;
            }
            let dk = group_dev(&|j| z / ldiag[j]);
            for j in 0..q {
                mult[j] += w * (-(dk[j] - d0[j]) / 2.0 + z * z / 2.0).exp();
            }
        }
        let dev = d0.iter().sum::<f64>() + s.ldl2 - 2.0 * mult.iter().map(|m| m.ln()).sum::<f64>();
        if dev.is_finite() {
            Ok(dev)
        } else {
            Err(MixedError::Numerical("the adaptive Gauss-Hermite deviance is not finite".into()))
        }
    }
}

/// The second stage's objective over [θ, β]: the deviance, and the exact gradient
/// where one is available (the Laplace deviance with a canonical link).
struct Stage2<'m, 'd> {
    m: &'m mut GeneralizedLinearMixedModel<'d>,
    nth: usize,
    approx: Approximation<'m>,
    exact: bool,
}

impl Objective for Stage2<'_, '_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.m.deviance_at(&x[..self.nth], &x[self.nth..], self.approx)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        if !self.exact {
            return None;
        }
        Some(self.m.laplace_gradient(&x[..self.nth], &x[self.nth..]).map(|(_, g)| g))
    }
}

/// glmer's two stages: θ with β in PIRLS (nAGQ = 0), then, unless `nagq0`, θ and β
/// together with u in PIRLS (the Laplace or AGQ deviance). A start with β as well
/// as θ (a refit) goes straight to the second stage. The Hessian over [θ, β] at the
/// end (central differences of the deviance), for glmer's vcov.
pub fn fit_glmm(m: &mut GeneralizedLinearMixedModel, control: &FitControl, nagq0: bool, hessian: bool, approx: Approximation) -> Result<GlmmFit> {
    let nth = m.ntheta();
    let is_diag = m.theta_is_diagonal();
    let full_start = control.start.as_ref().filter(|s| s.len() == nth + m.p && !nagq0).cloned();
    // with the exact gradient the Laplace search needs no first stage: it starts from
    // θ₀ and the β that PIRLS gives there
    let exact = !nagq0 && matches!(approx, Approximation::Laplace) && m.has_exact_gradient();
    let theta0 = match &control.start {
        Some(s) if s.len() >= nth => s[..nth].to_vec(),
        _ => m.theta_start(),
    };
    let first_stage = |m: &mut GeneralizedLinearMixedModel| -> Result<(Vec<f64>, Vec<f64>, Option<OptimSummary>)> {
        let scale = SearchScale::linear(nth);
        let stage1 = optimize_with(|th| Ok(m.pirls(th, None)?.laplace()), &theta0, &is_diag, &scale, control)?;
        let theta = stage1.theta.clone();
        let beta = m.pirls(&theta, None)?.beta;
        Ok((theta, beta, Some(stage1)))
    };
    let skip_first = full_start.is_some() || exact;
    let mut beta_curvature: Option<Vec<f64>> = None;
    let (theta1, beta1, optim1) = match &full_start {
        Some(s) => (s[..nth].to_vec(), s[nth..].to_vec(), None),
        None if exact => {
            let beta = m.pirls(&theta0, None)?.beta;
            beta_curvature = Some(m.joint_beta_curvature());
            (theta0.clone(), beta, None)
        }
        None => first_stage(m)?,
    };
    let (mut theta, mut beta, mut optim) = (theta1, beta1, optim1);
    if !nagq0 {
        let res = match second_stage(m, &theta, &beta, &is_diag, approx, exact, beta_curvature.as_deref(), control) {
            // from θ₀ the search can reach where PIRLS breaks down (a badly scaled
            // covariate); glmer's first stage then gives it a better start
            Err(MixedError::Numerical(_)) if skip_first => {
                m.u = m.terms.iter().map(|t| vec![0.0; t.q()]).collect();
                let (t1, b1, o1) = first_stage(m)?;
                optim = o1;
                second_stage(m, &t1, &b1, &is_diag, approx, exact, None, control)?
            }
            other => other?,
        };
        theta = res.theta[..nth].to_vec();
        beta = res.theta[nth..].to_vec();
        let evals = res.evaluations + optim.as_ref().map_or(0, |o| o.evaluations);
        optim = Some(OptimSummary { evaluations: evals, ..res });
    }
    let optim = optim.expect("a stage ran");
    for (t, &dg) in theta.iter_mut().zip(&is_diag) {
        if dg {
            *t = t.abs();
        }
    }
    let state = m.pirls(&theta, Some(&beta))?;
    let deviance = match approx {
        Approximation::Agq(nodes) if !nagq0 => m.agq_deviance(&state, &beta, nodes)?,
        _ => state.laplace(),
    };
    let (hessian, vcov_rx) = if nagq0 {
        (None, Some(m.vcov_from_rx(&theta, &state.eta)?))
    } else if hessian {
        let h = if exact { gradient_hessian(m, &theta, &beta)? } else { deviance_hessian(m, &theta, &beta, approx)? };
        (Some(h), None)
    } else {
        (None, None)
    };
    // leave the warm start and the factor at the optimum
    m.pirls(&theta, Some(&beta))?;
    Ok(GlmmFit { theta, beta, state, deviance, optim, hessian, vcov_rx })
}

/// glmer's second stage from (θ, β): BFGS over [θ, β] with u in PIRLS, on a scale
/// where the deviance's curvature is about 1 in every coordinate (its second
/// differences at the start): β and θ differ in scale by orders of magnitude, which
/// costs BFGS many iterations.
/// `beta_curvature`, when known, gives β's part of the scale without differences.
#[allow(clippy::too_many_arguments)]
fn second_stage(m: &mut GeneralizedLinearMixedModel, theta: &[f64], beta: &[f64], is_diag: &[bool], approx: Approximation, exact: bool, beta_curvature: Option<&[f64]>, control: &FitControl) -> Result<OptimSummary> {
    let nth = theta.len();
    let mut start = theta.to_vec();
    start.extend(beta);
    let mut d = is_diag.to_vec();
    d.extend(std::iter::repeat(false).take(m.p));
    let mut scale = SearchScale::linear(nth + m.p);
    {
        let mut f = |x: &[f64]| -> Result<f64> { m.deviance_at(&x[..nth], &x[nth..], approx) };
        let f0 = f(&start)?;
        for i in 0..start.len() {
            if let Some(c) = beta_curvature.filter(|_| i >= nth) {
                if c[i - nth].is_finite() && c[i - nth] > 1e-8 {
                    scale.weight[i] = c[i - nth].sqrt();
                }
                continue;
            }
            let h = 1e-3 * start[i].abs().max(0.1);
            let mut xp = start.clone();
            xp[i] += h;
            let mut xm = start.clone();
            xm[i] -= h;
            let curv = (f(&xp)? - 2.0 * f0 + f(&xm)?) / (h * h);
            if curv.is_finite() && curv > 1e-8 {
                scale.weight[i] = curv.sqrt();
            }
        }
    }
    optimize_objective(&mut Stage2 { m, nth, approx, exact }, &start, &d, &scale, control)
}

/// The Hessian over [θ, β] by central differences of the exact gradient (2k
/// gradients instead of 2k² deviances), symmetrised.
fn gradient_hessian(m: &mut GeneralizedLinearMixedModel, theta: &[f64], beta: &[f64]) -> Result<Vec<f64>> {
    let nth = theta.len();
    let mut x0 = theta.to_vec();
    x0.extend(beta);
    let k = x0.len();
    let u0 = m.u.clone();
    let mut hess = vec![0.0; k * k];
    for i in 0..k {
        let h = 1e-4 * x0[i].abs().max(1.0);
        let mut g = |x: &[f64]| -> Result<Vec<f64>> {
            m.u = u0.clone();
            Ok(m.laplace_gradient(&x[..nth], &x[nth..])?.1)
        };
        let mut xp = x0.clone();
        xp[i] += h;
        let mut xm = x0.clone();
        xm[i] -= h;
        let (gp, gm) = (g(&xp)?, g(&xm)?);
        for j in 0..k {
            hess[j + i * k] = (gp[j] - gm[j]) / (2.0 * h);
        }
    }
    for i in 0..k {
        for j in 0..i {
            let v = (hess[i + j * k] + hess[j + i * k]) / 2.0;
            hess[i + j * k] = v;
            hess[j + i * k] = v;
        }
    }
    m.u = u0;
    Ok(hess)
}

/// Central second differences of the deviance over [θ, β] (lme4's deriv12 steps).
fn deviance_hessian(m: &mut GeneralizedLinearMixedModel, theta: &[f64], beta: &[f64], approx: Approximation) -> Result<Vec<f64>> {
    let nth = theta.len();
    let mut x0 = theta.to_vec();
    x0.extend(beta);
    let k = x0.len();
    let u0 = m.u.clone();
    let mut f = |x: &[f64]| -> Result<f64> {
        m.u = u0.clone();
        m.deviance_at(&x[..nth], &x[nth..], approx)
    };
    let f0 = f(&x0)?;
    let h: Vec<f64> = x0.iter().map(|v| 1e-4 * v.abs().max(1.0)).collect();
    let mut hess = vec![0.0; k * k];
    for i in 0..k {
        let mut xp = x0.clone();
        xp[i] += h[i];
        let mut xm = x0.clone();
        xm[i] -= h[i];
        let (fp, fm) = (f(&xp)?, f(&xm)?);
        hess[i + i * k] = (fp - 2.0 * f0 + fm) / (h[i] * h[i]);
        for j in 0..i {
            let mut a = x0.clone();
            a[i] += h[i];
            a[j] += h[j];
            let mut b = x0.clone();
            b[i] += h[i];
            b[j] -= h[j];
            let mut c = x0.clone();
            c[i] -= h[i];
            c[j] += h[j];
            let mut d = x0.clone();
            d[i] -= h[i];
            d[j] -= h[j];
            let v = (f(&a)? - f(&b)? - f(&c)? + f(&d)?) / (4.0 * h[i] * h[j]);
            hess[i + j * k] = v;
            hess[j + i * k] = v;
        }
    }
    m.u = u0;
    Ok(hess)
}
