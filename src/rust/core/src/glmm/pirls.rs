//! PIRLS and the Laplace deviance. Each PIRLS step is a weighted penalised least-squares
//! problem with GLM weights w and working response z: exactly a [`LinearMixedModel`]
//! with prior weights, whose A is re-formed in place (same blocks, same pattern of L).
//! For fixed (θ, β) only u moves (a model without X, the response z − Xβ); for glmer's
//! first stage (nAGQ = 0) β moves with u (a model with X).
use super::family::{Family, Link};
use crate::error::{MixedError, Result};
use crate::lmm::fit::x_beta;
use crate::lmm::model::LinearMixedModel;
use crate::lmm::optimize::{minimize_scaled, optimize_objective, optimize_with, OptimSummary, SearchScale};
use crate::optim::Objective;
use crate::lmm::reterm::ReTerm;
use crate::optim::bfgs::FitControl;
use rayon::prelude::*;
use std::borrow::Cow;

/// Observations per parallel chunk: fixed, so sums over chunks do not depend on the
/// number of threads.
const CHUNK: usize = 8192;

#[derive(Clone)]
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
    /// The penalised deviance at the end of the last PIRLS.
    last_pdev: Option<f64>,
    /// Where a PIRLS over β and u starts β (0 at first, then where the last one ended).
    pub(crate) beta_warm: Option<Vec<f64>>,
    /// The lowest Laplace deviance of a PIRLS for given β: its θ, β and modes, so that
    /// the fit's last PIRLS at the optimum starts at its modes whatever the search
    /// evaluated after it (the boundary probes).
    best: Option<(f64, Vec<f64>, Vec<f64>, Vec<Vec<f64>>)>,
}

/// A PIRLS start whose penalised deviance exceeds the last PIRLS's by this factor is
/// compared with u = 0.
const FAR: f64 = 1.1;

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
        Ok(GeneralizedLinearMixedModel { terms, x, p, y, wt, offset, family, link, random_only, joint, u, last: None, scratch: (Vec::new(), Vec::new()), last_pdev: None, beta_warm: None, best: None })
    }

    /// Forget every warm start (modes, β, the last and the best PIRLS): as new.
    pub fn reset_warm_start(&mut self) {
        self.u = self.terms.iter().map(|t| vec![0.0; t.q()]).collect();
        self.last = None;
        self.last_pdev = None;
        self.beta_warm = None;
        self.best = None;
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
            None => self.beta_warm.clone().unwrap_or_else(|| vec![0.0; self.p]),
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
        // far from the last PIRLS (a line search's long trial step), the warm start can
        // be far worse than u = 0 (VerbAgg x40 at θ = 55: 45 steps, most of them halved)
        if !(pdev <= FAR * self.last_pdev.unwrap_or(f64::INFINITY)) {
            let zu: Vec<Vec<f64>> = u.iter().map(|v| vec![0.0; v.len()]).collect();
            let zb: Vec<Vec<f64>> = b.iter().map(|v| vec![0.0; v.len()]).collect();
            let d = self.eta_mu_dev(&base, &zb, &mut ceta, &mut cmu);
            if d.is_finite() && d < pdev {
                (u, b, dev, pdev) = (zu, zb, d, d);
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
        self.last_pdev = Some(pdev);
        if beta.is_none() {
            self.beta_warm = Some(beta_now.clone());
        }
        let state = PirlsResult { beta: beta_now, sqr_u: sqr(&u), u, b, eta, mu, dev_resid: dev, ldl2 };
        if let Some(bt) = beta {
            self.last = Some((theta.to_vec(), bt.to_vec(), state.clone()));
            let l = state.laplace();
            if self.best.as_ref().map_or(true, |b| l < b.0) {
                self.best = Some((l, theta.to_vec(), bt.to_vec(), state.u.clone()));
            }
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

    /// L_X (p × p, lower, column-major) of the joint working model's last factor (after
    /// a PIRLS over β and u): ½ the deviance's curvature over β with u re-optimised is
    /// L_X L_Xᵀ. None when it is not positive definite.
    pub fn joint_beta_factor(&self) -> Option<Vec<f64>> {
        let (p, m) = (self.p, self.p + 1);
        let f = self.joint.fe_factor();
        if f.len() < m * m {
            return None;
        }
        let l: Vec<f64> = (0..p).flat_map(|j| (0..p).map(move |i| (i, j))).map(|(i, j)| if i >= j { f[i + j * m] } else { 0.0 }).collect();
        let ok = (0..p).all(|i| l[i + i * p].is_finite() && l[i + i * p] > 1e-8) && l.iter().all(|v| v.is_finite());
        ok.then_some(l)
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
/// Its parameters are [θ, γ] with β = β₀ + Tγ (see [`BetaMap`]).
struct Stage2<'m, 'd> {
    m: &'m mut GeneralizedLinearMixedModel<'d>,
    nth: usize,
    approx: Approximation<'m>,
    exact: bool,
    map: BetaMap,
    /// Near the optimum, with θ's scale and L_X taken there: the curvature over [θ, γ]
    /// is about I (off-diagonal terms ~0.05 on VerbAgg).
    near: bool,
}

impl Objective for Stage2<'_, '_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        let beta = self.map.beta(&x[self.nth..]);
        self.m.deviance_at(&x[..self.nth], &beta, self.approx)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        if !self.exact {
            return None;
        }
        let beta = self.map.beta(&x[self.nth..]);
        Some(self.m.laplace_gradient(&x[..self.nth], &beta).map(|(_, mut g)| {
            let gg = self.map.gamma_gradient(&g[self.nth..]);
            g[self.nth..].copy_from_slice(&gg);
            g
        }))
    }
    fn unit_curvature(&self) -> bool {
        self.near
    }
}

/// β = β₀ + Tγ, T = L_X⁻ᵀ/√2 with L_X L_Xᵀ half the deviance's curvature over β (u
/// profiled out, from the joint working model): over γ that curvature is I, so BFGS
/// does not crawl along the valleys that correlated columns of X make (VerbAgg: 49
/// evaluations with β's diagonal scale alone). Without L_X, T is diagonal.
struct BetaMap {
    beta0: Vec<f64>,
    t: BetaScale,
}

enum BetaScale {
    /// L_X (p × p, lower, column-major).
    Factor(Vec<f64>),
    /// The diagonal of T⁻¹.
    Diagonal(Vec<f64>),
}

impl BetaMap {
    fn new(beta0: &[f64], factor: Option<Vec<f64>>, diag: Vec<f64>) -> Self {
        BetaMap { beta0: beta0.to_vec(), t: factor.map_or(BetaScale::Diagonal(diag), BetaScale::Factor) }
    }

    fn beta(&self, gamma: &[f64]) -> Vec<f64> {
        let p = gamma.len();
        let mut v: Vec<f64> = gamma.to_vec();
        match &self.t {
            // Lᵀv = γ/√2, back substitution
            BetaScale::Factor(l) => {
                for i in (0..p).rev() {
                    let s: f64 = (i + 1..p).map(|j| l[j + i * p] * v[j]).sum();
                    v[i] = (gamma[i] * std::f64::consts::FRAC_1_SQRT_2 - s) / l[i + i * p];
                }
            }
            BetaScale::Diagonal(d) => v.iter_mut().zip(d).for_each(|(a, w)| *a /= w),
        }
        v.iter_mut().zip(&self.beta0).for_each(|(a, b)| *a += b);
        v
    }

    fn gamma(&self, beta: &[f64]) -> Vec<f64> {
        let p = beta.len();
        let dbeta: Vec<f64> = beta.iter().zip(&self.beta0).map(|(a, b)| a - b).collect();
        match &self.t {
            // γ = √2 Lᵀ(β − β₀)
            BetaScale::Factor(l) => (0..p).map(|i| std::f64::consts::SQRT_2 * (i..p).map(|j| l[j + i * p] * dbeta[j]).sum::<f64>()).collect(),
            BetaScale::Diagonal(d) => dbeta.iter().zip(d).map(|(a, w)| a * w).collect(),
        }
    }

    /// ∂/∂γ = Tᵀ ∂/∂β = L⁻¹(∂/∂β)/√2, forward substitution.
    fn gamma_gradient(&self, g: &[f64]) -> Vec<f64> {
        let p = g.len();
        match &self.t {
            BetaScale::Factor(l) => {
                let mut w = vec![0.0; p];
                for i in 0..p {
                    let s: f64 = (0..i).map(|j| l[i + j * p] * w[j]).sum();
                    w[i] = (g[i] - s) / l[i + i * p];
                }
                w.iter().map(|v| v * std::f64::consts::FRAC_1_SQRT_2).collect()
            }
            BetaScale::Diagonal(d) => g.iter().zip(d).map(|(a, w)| a / w).collect(),
        }
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
    // the second stage's start: θ, β, L_X there, and whether it is near the optimum
    // (a refit's start, or the first stage's optimum) or at θ₀
    let (theta1, beta1, optim1, beta_factor, near) = match &full_start {
        Some(s) => {
            let (th, bt) = (s[..nth].to_vec(), s[nth..].to_vec());
            m.beta_warm = Some(bt.clone());
            m.pirls(&th, None)?;
            let factor = m.joint_beta_factor();
            (th, bt, None, factor, true)
        }
        None if exact => {
            let beta = m.pirls(&theta0, None)?.beta;
            (theta0.clone(), beta, None, m.joint_beta_factor(), false)
        }
        None => {
            let (th, bt, o) = first_stage(m)?;
            (th, bt, o, m.joint_beta_factor(), true)
        }
    };
    let (mut theta, mut beta, mut optim) = (theta1, beta1, optim1);
    if !nagq0 {
        let res = match second_stage(m, &theta, &beta, &is_diag, approx, exact, beta_factor, near, control) {
            // from θ₀ the search can reach where PIRLS breaks down (a badly scaled
            // covariate); glmer's first stage then gives it a better start
            Err(MixedError::Numerical(_)) if skip_first => {
                m.reset_warm_start();
                let (t1, b1, o1) = first_stage(m)?;
                let factor = m.joint_beta_factor();
                optim = o1;
                second_stage(m, &t1, &b1, &is_diag, approx, exact, factor, true, control)?
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
    if let Some((_, bt, bb, bu)) = &m.best {
        if *bt == theta && *bb == beta {
            m.u = bu.clone();
            m.last = None;
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

/// glmer's second stage from (θ, β): BFGS over [θ, γ] with u in PIRLS (β = β₀ + Tγ, see
/// [`BetaMap`]), θ on a scale where the deviance's curvature is about 1 (its second
/// differences; sinh-mapped where every θ is a lone standard deviation). β and θ differ
/// in scale by orders of magnitude, and β's coordinates are correlated, which costs
/// BFGS many iterations. From θ₀ (`near` false) a loose search comes first and L_X and
/// θ's scale are taken again where it stops; near the optimum the curvature over [θ, γ]
/// is about I and BFGS starts with a full Newton step. Returns the optimum as [θ, β].
#[allow(clippy::too_many_arguments)]
fn second_stage(m: &mut GeneralizedLinearMixedModel, theta: &[f64], beta: &[f64], is_diag: &[bool], approx: Approximation, exact: bool, beta_factor: Option<Vec<f64>>, near: bool, control: &FitControl) -> Result<OptimSummary> {
    let nth = theta.len();
    let mut start = theta.to_vec();
    start.extend(beta);
    let mut d = is_diag.to_vec();
    d.extend(std::iter::repeat(false).take(m.p));
    let mut scale = SearchScale::linear(nth + m.p);
    scale.sinh[..nth].copy_from_slice(&SearchScale::for_model(m.working_model()).sinh);
    let along = if beta_factor.is_some() { nth } else { start.len() };
    scale.set_unit_curvature(|x| m.deviance_at(&x[..nth], &x[nth..], approx), &start, along)?;
    let beta_diag = scale.weight[nth..].to_vec();
    scale.weight[nth..].iter_mut().for_each(|w| *w = 1.0);
    let has_factor = beta_factor.is_some();
    let refresh = has_factor && !near;
    let map = BetaMap::new(beta, beta_factor, beta_diag);
    let mut x0 = theta.to_vec();
    x0.extend(map.gamma(beta));
    let mut obj = Stage2 { m, nth, approx, exact, map, near: near && has_factor };
    let mut evaluations = 0;
    if refresh {
        // L_X changes with θ: a loose search first, then L_X again where it stopped
        let f0 = obj.m.deviance_at(theta, beta, approx)?;
        let loose = FitControl { grad_tol: control.grad_tol.max(PHASE1_GRAD / (1.0 + f0.abs())), ..control.clone() };
        // BFGS alone: the boundary probes come after the second search
        let r = minimize_scaled(&mut obj, &x0, &scale, &loose)?;
        evaluations += r.evaluations;
        let beta1 = obj.map.beta(&r.x[nth..]);
        let th1 = r.x[..nth].to_vec();
        obj.m.beta_warm = Some(beta1.clone());
        obj.m.pirls(&th1, None)?;
        if let Some(f) = obj.m.joint_beta_factor() {
            obj.map = BetaMap::new(&beta1, Some(f), vec![1.0; beta1.len()]);
            obj.near = true;
        }
        let mut x1 = th1.clone();
        x1.extend(&beta1);
        let m = &mut *obj.m;
        scale.set_unit_curvature(|x| m.deviance_at(&x[..nth], &x[nth..], approx), &x1, nth)?;
        x0 = th1;
        x0.extend(obj.map.gamma(&beta1));
    }
    let mut res = optimize_objective(&mut obj, &x0, &d, &scale, control)?;
    res.evaluations += evaluations;
    let beta = obj.map.beta(&res.theta[nth..]);
    res.theta.truncate(nth);
    res.theta.extend(beta);
    Ok(res)
}

/// The first search's gradient tolerance, in deviance units per unit of θ and γ: about
/// where the deviance is within 1 of its minimum over γ.
const PHASE1_GRAD: f64 = 3.0;

/// f at each of `points` ([θ, β]), each on its own copy of `m` as it is at the
/// optimum (warm start, predicted modes and factor there): the values do not depend on
/// the order or the number of threads. In parallel on small data; on large data the
/// passes over the rows are parallel already, and one copy at a time keeps the memory.
fn from_optimum<T: Send>(m: &GeneralizedLinearMixedModel, points: &[Vec<f64>], f: impl Fn(&mut GeneralizedLinearMixedModel, &[f64]) -> Result<T> + Sync) -> Result<Vec<T>> {
    if m.n() < CHUNK {
        points.par_iter().map(|x| f(&mut m.clone(), x)).collect()
    } else {
        points.iter().map(|x| f(&mut m.clone(), x)).collect()
    }
}

/// x0 with h added to coordinate i and g to coordinate j.
fn shifted(x0: &[f64], moves: &[(usize, f64)]) -> Vec<f64> {
    let mut x = x0.to_vec();
    for &(i, h) in moves {
        x[i] += h;
    }
    x
}

/// The Hessian over [θ, β] by forward differences of the exact gradient, symmetrised:
/// k + 1 gradients. With steps of 1e-5 (relative) the standard errors agree with those
/// of central differences to ~2e-5 relative on VerbAgg, at half the gradients. `m` is
/// at the optimum.
fn gradient_hessian(m: &GeneralizedLinearMixedModel, theta: &[f64], beta: &[f64]) -> Result<Vec<f64>> {
    let nth = theta.len();
    let mut x0 = theta.to_vec();
    x0.extend(beta);
    let k = x0.len();
    let h: Vec<f64> = x0.iter().map(|v| 1e-5 * v.abs().max(1.0)).collect();
    let mut points = vec![x0.clone()];
    points.extend((0..k).map(|i| shifted(&x0, &[(i, h[i])])));
    let grads = from_optimum(m, &points, |mm, x| Ok(mm.laplace_gradient(&x[..nth], &x[nth..])?.1))?;
    let mut hess = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            hess[j + i * k] = (grads[i + 1][j] - grads[0][j]) / h[i];
        }
    }
    for i in 0..k {
        for j in 0..i {
            let v = (hess[i + j * k] + hess[j + i * k]) / 2.0;
            hess[i + j * k] = v;
            hess[j + i * k] = v;
        }
    }
    Ok(hess)
}

/// Central second differences of the deviance over [θ, β] (lme4's deriv12 steps).
/// `m` is at the optimum.
fn deviance_hessian(m: &GeneralizedLinearMixedModel, theta: &[f64], beta: &[f64], approx: Approximation) -> Result<Vec<f64>> {
    let nth = theta.len();
    let mut x0 = theta.to_vec();
    x0.extend(beta);
    let k = x0.len();
    let h: Vec<f64> = x0.iter().map(|v| 1e-4 * v.abs().max(1.0)).collect();
    // x0, then per i: +h_i, −h_i, then per j < i the four corners
    let mut points = vec![x0.clone()];
    for i in 0..k {
        points.push(shifted(&x0, &[(i, h[i])]));
        points.push(shifted(&x0, &[(i, -h[i])]));
        for j in 0..i {
            for (si, sj) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
                points.push(shifted(&x0, &[(i, si * h[i]), (j, sj * h[j])]));
            }
        }
    }
    let f = from_optimum(m, &points, |mm, x| mm.deviance_at(&x[..nth], &x[nth..], approx))?;
    let f0 = f[0];
    let mut hess = vec![0.0; k * k];
    let mut at = 1;
    for i in 0..k {
        let (fp, fm) = (f[at], f[at + 1]);
        at += 2;
        hess[i + i * k] = (fp - 2.0 * f0 + fm) / (h[i] * h[i]);
        for j in 0..i {
            let v = (f[at] - f[at + 1] - f[at + 2] + f[at + 3]) / (4.0 * h[i] * h[j]);
            at += 4;
            hess[i + j * k] = v;
            hess[j + i * k] = v;
        }
    }
    Ok(hess)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> BetaMap {
        // L_X lower triangular, column-major, with a correlation between β's
        let l = vec![2.0, 0.5, -0.3, 0.0, 1.5, 0.7, 0.0, 0.0, 0.9];
        BetaMap::new(&[0.1, -0.2, 0.3], Some(l), vec![])
    }

    #[test]
    fn beta_map_round_trips_and_gives_the_chain_rule_gradient() {
        let m = map();
        let beta = [0.4, 1.1, -0.6];
        let gamma = m.gamma(&beta);
        let back = m.beta(&gamma);
        assert!(beta.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-12));
        // f(β) = Σ c_i β_i²: ∂f/∂γ by the map against differences of f(β(γ))
        let c = [1.0, 3.0, 0.5];
        let f = |b: &[f64]| b.iter().zip(&c).map(|(b, c)| c * b * b).sum::<f64>();
        let gb: Vec<f64> = beta.iter().zip(&c).map(|(b, c)| 2.0 * c * b).collect();
        let gg = m.gamma_gradient(&gb);
        for i in 0..3 {
            let h = 1e-6;
            let mut gp = gamma.clone();
            gp[i] += h;
            let mut gm = gamma.clone();
            gm[i] -= h;
            let fd = (f(&m.beta(&gp)) - f(&m.beta(&gm))) / (2.0 * h);
            assert!((gg[i] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "coordinate {}: {} vs {}", i, gg[i], fd);
        }
    }

    #[test]
    fn beta_map_makes_the_curvature_the_identity() {
        // a quadratic with Hessian 2 L Lᵀ has Hessian I over γ: its γ-gradient is γ itself
        // (measured from β₀, the minimum)
        let m = map();
        let l = match &m.t {
            BetaScale::Factor(l) => l.clone(),
            _ => unreachable!(),
        };
        let gamma = vec![0.3, -0.8, 1.7];
        let b = m.beta(&gamma);
        let d: Vec<f64> = b.iter().zip(&m.beta0).map(|(a, c)| a - c).collect();
        // ∂/∂β of (β − β₀)ᵀ L Lᵀ (β − β₀) = 2 L Lᵀ (β − β₀)
        let ltd: Vec<f64> = (0..3).map(|j| (0..3).map(|i| l[i + j * 3] * d[i]).sum()).collect();
        let gb: Vec<f64> = (0..3).map(|i| 2.0 * (0..3).map(|j| l[i + j * 3] * ltd[j]).sum::<f64>()).collect();
        let gg = m.gamma_gradient(&gb);
        assert!(gg.iter().zip(&gamma).all(|(a, b)| (a - b).abs() < 1e-12), "{:?} vs {:?}", gg, gamma);
    }
}
