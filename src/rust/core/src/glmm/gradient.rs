//! The exact gradient of the Laplace deviance over [θ, β], for canonical links (logit
//! binomial, log Poisson), where PIRLS's Fisher weights are the observed information.
//!
//! With Z̃ = ZΛ, M = Z̃ᵀWZ̃ + I = LLᵀ, g = ½∂dev/∂η, w the weights and w' = dw/dη at η̂,
//! D(θ, β) = dev(η̂) + ‖û‖² + log|M|. The mode û makes Z̃ᵀg + u = 0, so the first two
//! terms differentiate at fixed u; log|M| moves with Λ directly and with W through
//! η̂, whose derivative follows from the mode's equation (dû = −M⁻¹ ∂(Z̃ᵀg)):
//!   h_o = z̃_oᵀM⁻¹z̃_o, v = h ∘ w', a = M⁻¹Z̃ᵀv, c = Z̃a, r = 2g + v − W c,
//!   ∂D/∂β = Xᵀr,
//!   ∂D/∂θ_k = Σ_o r_o (Z∂Λ_k û)_o − Σ_o g_o (Z∂Λ_k a)_o + 2 Σ_o w_o (∂Λ_kᵀz_o)ᵀ M⁻¹ z̃_o.
//! M⁻¹ is needed only at the level pairs each observation meets: the selected inverse.
use super::family::{Family, Link};
use super::pirls::GeneralizedLinearMixedModel;
use crate::error::Result;
use crate::linalg::tri;
use rayon::prelude::*;

/// Observations per parallel chunk (fixed: the sums do not depend on the threads).
const CHUNK: usize = 8192;

impl GeneralizedLinearMixedModel<'_> {
    /// Whether [`GeneralizedLinearMixedModel::laplace_gradient`] applies.
    pub fn has_exact_gradient(&self) -> bool {
        matches!((self.family, self.link), (Family::Binomial, Link::Logit) | (Family::Poisson, Link::Log))
    }

    /// The Laplace deviance at (θ, β) and its gradient over [θ, β].
    pub fn laplace_gradient(&mut self, theta: &[f64], beta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let s = self.pirls(theta, Some(beta))?;
        let n = self.n();
        let nt = self.terms.len();
        // per observation: g, w and w' at η̂ (canonical links: μ' = V(μ))
        let mut g = vec![0.0; n];
        let mut w = vec![0.0; n];
        let mut wd = vec![0.0; n];
        for o in 0..n {
            let mu = s.mu[o];
            let (v, vd) = match self.family {
                Family::Binomial => (mu * (1.0 - mu), 1.0 - 2.0 * mu),
                Family::Poisson => (mu, 1.0),
            };
            g[o] = -self.wt[o] * (self.y[o] - mu);
            w[o] = self.wt[o] * v;
            wd[o] = self.wt[o] * vd * v;
        }
        let model = &mut self.random_only;
        model.selected_inverse(false)?;
        let terms = &self.terms;
        let lambdas = &model.lambdas;
        let sigma = &model.sigma;
        let kmax = terms.iter().map(|t| t.k).max().unwrap_or(1);
        // h_o and the log-det term of each θ, observation by observation
        let offsets: Vec<usize> = {
            let mut o = vec![0];
            for t in terms {
                o.push(o.last().unwrap() + t.ntheta());
            }
            o
        };
        let nth = *offsets.last().unwrap();
        let lev = |t: usize, o: usize| terms[t].codes.get(o);
        // per observation, in fixed chunks across threads (partial sums added in chunk
        // order): z̃_{o,t} = Λ_tᵀz_{o,t}, s = M⁻¹z̃_o at its levels, h_o = z̃_oᵀs, v_o,
        // and each θ's log-det term
        let mut v = vec![0.0; n];
        let partials: Vec<Vec<f64>> = v
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(ch, v_c)| {
                let mut part = vec![0.0; nth];
                let mut zt = vec![vec![0.0; kmax]; nt];
                let mut sv = vec![vec![0.0; kmax]; nt];
                let mut blk = vec![0.0; kmax * kmax];
                for (i0, vo) in v_c.iter_mut().enumerate() {
                    let o = ch * CHUNK + i0;
                    for (t, term) in terms.iter().enumerate() {
                        let k = term.k;
                        let lam = &lambdas[t];
                        for a in 0..k {
                            // (Λᵀz)_a = Σ_{r ≥ a} Λ_{r,a} z_r
                            zt[t][a] = (a..k).map(|r| lam[r + a * k] * term.z[o + r * n]).sum();
                        }
                    }
                    let mut h = 0.0;
                    for i in 0..nt {
                        let ki = terms[i].k;
                        sv[i][..ki].iter_mut().for_each(|x| *x = 0.0);
                        for j in 0..nt {
                            let kj = terms[j].k;
                            if i >= j {
                                sigma[tri(i, j)].sub_block(lev(i, o), lev(j, o), ki, kj, &mut blk);
                                for b in 0..kj {
                                    for a in 0..ki {
                                        sv[i][a] += blk[a + b * ki] * zt[j][b];
                                    }
                                }
                            } else {
                                sigma[tri(j, i)].sub_block(lev(j, o), lev(i, o), kj, ki, &mut blk);
                                for b in 0..kj {
                                    for a in 0..ki {
                                        sv[i][a] += blk[b + a * kj] * zt[j][b];
                                    }
                                }
                            }
                        }
                        h += (0..ki).map(|a| zt[i][a] * sv[i][a]).sum::<f64>();
                    }
                    *vo = h * wd[o];
                    for (t, term) in terms.iter().enumerate() {
                        for (idx, &(r, c)) in term.theta_layout().iter().enumerate() {
                            part[offsets[t] + idx] += 2.0 * w[o] * term.z[o + r * n] * sv[t][c];
                        }
                    }
                }
                part
            })
            .collect();
        let mut grad_theta = vec![0.0; nth];
        for part in &partials {
            grad_theta.iter_mut().zip(part).for_each(|(g, p)| *g += p);
        }
        // a = M⁻¹ Z̃ᵀ v
        let mut a: Vec<Vec<f64>> = terms.iter().map(|t| vec![0.0; t.q()]).collect();
        for (t, term) in terms.iter().enumerate() {
            let k = term.k;
            let lam = &lambdas[t];
            for o in 0..n {
                let l = lev(t, o) * k;
                for c in 0..k {
                    a[t][l + c] += (c..k).map(|r| lam[r + c * k] * term.z[o + r * n]).sum::<f64>() * v[o];
                }
            }
        }
        model.solve_random(&mut a);
        // r = 2g + v − W Z̃a
        let mut res = vec![0.0; n];
        res.par_chunks_mut(CHUNK).enumerate().for_each(|(ch, r_c)| {
            for (i0, ro) in r_c.iter_mut().enumerate() {
                let o = ch * CHUNK + i0;
                let mut za = 0.0;
                for (t, term) in terms.iter().enumerate() {
                    let k = term.k;
                    let lam = &lambdas[t];
                    let l = lev(t, o) * k;
                    for r in 0..k {
                        za += term.z[o + r * n] * (0..=r).map(|c| lam[r + c * k] * a[t][l + c]).sum::<f64>();
                    }
                }
                *ro = 2.0 * g[o] + v[o] - w[o] * za;
            }
        });
        // θ: Σ r_o z_{o,r} û_{l,c} − Σ g_o z_{o,r} a_{l,c}
        let partials: Vec<Vec<f64>> = res
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(ch, r_c)| {
                let mut part = vec![0.0; nth];
                for (i0, &ro) in r_c.iter().enumerate() {
                    let o = ch * CHUNK + i0;
                    for (t, term) in terms.iter().enumerate() {
                        let k = term.k;
                        let u = &s.u[t];
                        let l = lev(t, o) * k;
                        for (idx, &(r, c)) in term.theta_layout().iter().enumerate() {
                            part[offsets[t] + idx] += term.z[o + r * n] * (ro * u[l + c] - g[o] * a[t][l + c]);
                        }
                    }
                }
                part
            })
            .collect();
        for part in &partials {
            grad_theta.iter_mut().zip(part).for_each(|(g, p)| *g += p);
        }
        let p = self.p;
        let mut grad = grad_theta;
        for j in 0..p {
            let col = &self.x[j * n..(j + 1) * n];
            grad.push(col.iter().zip(&res).map(|(x, r)| x * r).sum());
        }
        Ok((s.laplace(), grad))
    }
}

