//! The exact gradient over η of the criterion of a model with a Markov residual
//! structure (AR(1), CAR(1) or none) and any variance function.
//!
//! The whitened data are W = B D with B = (V C)⁻¹ bidiagonal: row o of W is
//! a_o d_o + b_o d_p(o) (p(o) the row before o in its group). The criterion is
//! f = log|M| + n′ log r² + log|V Ψ V| + const, with M = Λ̃ᵀA_[ZX]Λ̃ + diag(I, 0) and A
//! the cross-products of W's rows. At fixed θ, with Σ = M⁻¹ and the whitened residual
//! e = c'w (c = (−b̂, −β̂, 1)), the envelope theorem gives
//!
//!   ∂f/∂η_k = Σ_o ȧ_ok P_o + ḃ_ok Q_o + ∂ log|V Ψ V|/∂η_k,
//!   P_o = 2 (Λ̃ᵀd_o)ᵀ s_o + (2n′/r²) r_o e_o,   Q_o = 2 (Λ̃ᵀd_p)ᵀ s_o + (2n′/r²) r_p e_o,
//!
//! where s_o = Σ Λ̃ᵀw_o is needed only at the levels row o meets (the selected inverse)
//! and r = y − Xβ̂ − Zb̂ on the data scale. ȧ and ḃ are the coefficients' derivatives:
//! for the correlation, ρ = φ^gap, s = (1 − ρ²)^(−½): ȧ_o = ρ s³ ρ̇ / v_o and
//! ḃ_o = −s³ ρ̇ / v_p; for a variance parameter with λ_o = ∂ log v_o/∂η_k: ȧ_o = −a_o λ_o
//! and ḃ_o = −b_o λ_p. One pass over the rows replaces 2 re-whitenings per parameter.
use super::correlation::{CorStruct, CorrelatedModel};
use crate::error::Result;
use crate::linalg::tri;
use rayon::prelude::*;

/// Rows per parallel chunk (fixed: the per-row values do not depend on the threads).
const CHUNK: usize = 8192;

impl CorrelatedModel<'_> {
    /// ∂criterion/∂η at the current η and at the θ of the whitened model's current
    /// factor (call after `update_l`, before anything spends the factor); None when the
    /// structure is not Markov.
    pub(crate) fn eta_gradient(&mut self) -> Result<Option<Vec<f64>>> {
        if self.prev.is_empty() {
            return Ok(None);
        }
        let eta = self.eta().to_vec();
        let coef = self.bidiagonal(&eta)?;
        let n = self.y.len();
        let reml = self.model.reml;
        let (beta, pwrss) = (self.model.beta(), self.model.parts().pwrss);
        let b = self.model.b_from_u(&self.model.u());
        let fitted = self.fitted(&beta, &b);
        let r: Vec<f64> = self.y.iter().zip(&fitted).map(|(y, f)| y - f).collect();
        self.model.selected_inverse(reml)?;
        let nprime = if reml { (n - self.p) as f64 } else { n as f64 };
        let c2 = 2.0 * nprime / pwrss;
        let (mut pv, mut qv) = (vec![0.0; n], vec![0.0; n]);
        {
            let (m, orig, x0, prev, p) = (&self.model, &self.terms, &self.x[..], &self.prev, self.p);
            let nt = m.terms.len();
            let px = if reml { p } else { 0 };
            let kmax = m.terms.iter().map(|t| t.k).max().unwrap_or(1).max(1);
            let sx: Vec<Option<&crate::linalg::blocks::Dense>> = (0..=nt).map(|j| if reml { m.sigma[tri(nt, j)].as_dense() } else { None }).collect();
            pv.par_chunks_mut(CHUNK).zip(qv.par_chunks_mut(CHUNK)).enumerate().for_each(|(ch, (p_c, q_c))| {
                // per row: Λ̃ᵀw (whitened), Λ̃ᵀd and Λ̃ᵀd_p (data), then s = Σ Λ̃ᵀw
                let mut zt = vec![vec![0.0; kmax]; nt];
                let mut dd = vec![vec![0.0; kmax]; nt];
                let mut dp = vec![vec![0.0; kmax]; nt];
                let mut sv = vec![vec![0.0; kmax]; nt];
                let mut sxv = vec![0.0; px];
                let mut blk = vec![0.0; kmax * kmax];
                for (i0, (po, qo)) in p_c.iter_mut().zip(q_c.iter_mut()).enumerate() {
                    let o = ch * CHUNK + i0;
                    let op = prev[o] as usize;
                    // the whitened row from the data (the whitened copy may be behind)
                    let (ca, cb) = (coef.a[o], coef.b[o]);
                    for t in 0..nt {
                        let (k, lam) = (m.terms[t].k, &m.lambdas[t]);
                        let z = &orig[t].z;
                        for a in 0..k {
                            // (Λᵀz)_a = Σ_{c ≥ a} Λ_{c,a} z_c
                            let (mut s2, mut s3) = (0.0, 0.0);
                            for c in a..k {
                                let l = lam[c + a * k];
                                s2 += l * z[o + c * n];
                                s3 += l * z[op + c * n];
                            }
                            dd[t][a] = s2;
                            dp[t][a] = s3;
                            zt[t][a] = ca * s2 + cb * s3;
                        }
                    }
                    let lev = |t: usize| m.terms[t].codes.get(o);
                    for i in 0..nt {
                        let ki = m.terms[i].k;
                        sv[i][..ki].iter_mut().for_each(|v| *v = 0.0);
                        for j in 0..nt {
                            let kj = m.terms[j].k;
                            if i >= j {
                                m.sigma[tri(i, j)].sub_block(lev(i), lev(j), ki, kj, &mut blk);
                                for c in 0..kj {
                                    for a in 0..ki {
                                        sv[i][a] += blk[a + c * ki] * zt[j][c];
                                    }
                                }
                            } else {
                                m.sigma[tri(j, i)].sub_block(lev(j), lev(i), kj, ki, &mut blk);
                                for c in 0..kj {
                                    for a in 0..ki {
                                        sv[i][a] += blk[c + a * kj] * zt[j][c];
                                    }
                                }
                            }
                        }
                    }
                    // the X rows of Σ (REML): Σ_{X,t}(·, l_t) and Σ_XX
                    if px > 0 {
                        let wx = |a: usize| ca * x0[o + a * n] + cb * x0[op + a * n];
                        for (a, v) in sxv.iter_mut().enumerate() {
                            *v = 0.0;
                            let sxx = sx[nt].expect("REML's Σ has X rows");
                            for c in 0..p {
                                *v += sxx.data[a + c * sxx.rows] * wx(c);
                            }
                        }
                        for t in 0..nt {
                            let (k, l) = (m.terms[t].k, lev(t));
                            let st = sx[t].expect("REML's Σ has X rows");
                            for c in 0..k {
                                let col = (l * k + c) * st.rows;
                                // Σ_{X,t} Λᵀw_t into the X part, its transpose times w_X into term t
                                let mut acc = 0.0;
                                for a in 0..p {
                                    let sig = st.data[col + a];
                                    sxv[a] += sig * zt[t][c];
                                    acc += sig * wx(a);
                                }
                                sv[t][c] += acc;
                            }
                        }
                    }
                    let (mut alpha, mut beta_) = (0.0, 0.0);
                    for t in 0..nt {
                        for a in 0..m.terms[t].k {
                            alpha += dd[t][a] * sv[t][a];
                            beta_ += dp[t][a] * sv[t][a];
                        }
                    }
                    for a in 0..px {
                        alpha += x0[o + a * n] * sxv[a];
                        beta_ += x0[op + a * n] * sxv[a];
                    }
                    let e = coef.a[o] * r[o] + coef.b[o] * r[op];
                    *po = 2.0 * alpha + c2 * r[o] * e;
                    *qo = 2.0 * beta_ + c2 * r[op] * e;
                }
            });
        }
        let nc = self.cor.npar();
        let mut grad = Vec::with_capacity(eta.len());
        if nc == 1 {
            let phi = self.cor.natural(&eta[..1])[0];
            let dphi = self.cor.dnatural(eta[0]);
            let mut steps = CorStruct::gap_steps(phi);
            let (mut rdot, mut s3) = (0.0, 0.0);
            let mut g = 0.0;
            for o in 0..n {
                let op = self.prev[o] as usize;
                if op == o {
                    continue;
                }
                let gap = self.cor.times[o] - self.cor.times[op];
                if steps.at(gap)? {
                    rdot = gap * phi.powf(gap - 1.0) * dphi;
                    s3 = steps.scale.powi(3);
                }
                let rho = steps.rho;
                // 1/(1 − ρ²) = s²
                g += rdot * s3 * (rho * pv[o] * coef.inv_v[o] - qv[o] * coef.inv_v[op]) - 2.0 * rho * rdot * steps.scale * steps.scale;
            }
            grad.push(g);
        }
        if let Some(v) = &self.var {
            for lam in v.log_derivatives(&eta[nc..]) {
                let mut g = 0.0;
                for o in 0..n {
                    let op = self.prev[o] as usize;
                    g += 2.0 * lam[o] - coef.a[o] * pv[o] * lam[o] - coef.b[o] * qv[o] * lam[op];
                }
                grad.push(g);
            }
        }
        Ok(Some(grad))
    }
}
