//! The exact gradient of the profiled criterion over θ, at the current factor.
//!
//! With Λ̃ = diag(Λ, I) and M(θ) = Λ̃ᵀ A Λ̃ + diag(I, 0) over [Z X] (REML) or Z (ML),
//! the criterion is log|M| + n′ log PWRSS + const (n′ = n − p or n). For θᵢ at (r, c)
//! of term t's Λ_t, ∂M/∂θᵢ = Sᵢᵀ A Λ̃ + Λ̃ᵀ A Sᵢ with Sᵢ = I ⊗ e_r e_cᵀ on term t, so
//!
//!   ∂ log|M| / ∂θᵢ = 2 Σ_l H_t(l)[c, r],   H_t(l) = Σ_{(s,l′)} (Λ_s Σ_{sl′,tl})ᵀ A_{sl′,tl},
//!
//! where Σ = M⁻¹ is needed only where A has blocks, which the selected inverse holds.
//! By the envelope theorem ∂PWRSS/∂θᵢ = −2 rᵀ W Z Sᵢ û = −2 Σ_l ζ_t(l)[r] û_t(l)[c], with
//! ζ = ZᵀWr = A_Zy − A_ZZ b − A_ZX β̂ computed from A's blocks (no pass over n). No Λ⁻¹
//! appears, so the gradient holds on the boundary too.
use crate::blocks::Block;
use crate::error::{MixedError, Result};
use crate::model::{tri, LinearMixedModel};

/// The gradient's two pieces at the current factor.
pub(crate) struct GradientParts {
    /// ∂ log|M| / ∂θ, M over [Z X] (`with_x`) or Z.
    pub dlogdet: Vec<f64>,
    /// ∂ PWRSS / ∂θ.
    pub dpwrss: Vec<f64>,
    pub pwrss: f64,
}

impl LinearMixedModel {
    /// ∂criterion/∂θ at the θ of the last [`LinearMixedModel::update_l`].
    pub fn gradient(&mut self) -> Result<Vec<f64>> {
        let g = self.gradient_parts(self.reml)?;
        let nprime = if self.reml { (self.n - self.p) as f64 } else { self.n as f64 };
        Ok(g.dlogdet.iter().zip(&g.dpwrss).map(|(a, b)| a + nprime * b / g.pwrss).collect())
    }

    /// ∂ log|M| and ∂ PWRSS over θ; leaves the selected inverse of M in `self.sigma`.
    pub(crate) fn gradient_parts(&mut self, with_x: bool) -> Result<GradientParts> {
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let parts = self.parts();
        let beta = self.beta();
        let u = self.u();
        let b = self.b_from_u(&u);
        let zeta = self.zeta(&b, &beta)?;
        let reml = with_x;
        self.selected_inverse(reml)?;
        // H_t(l) for every term and level, k_t×k_t column-major
        let mut h: Vec<Vec<f64>> = self.terms.iter().map(|t| vec![0.0; t.nlevels * t.k * t.k]).collect();
        let kmax = self.terms.iter().map(|t| t.k).max().unwrap_or(1);
        let mut sblk = vec![0.0; kmax * kmax];
        let mut ls = vec![0.0; kmax * kmax];
        for t in 0..nt {
            let kt = self.terms[t].k;
            let lam_t = &self.lambdas[t];
            // diagonal blocks: H_t(l) += (Λ_t Σ_tt(l))ᵀ A_tt(l)
            if let Block::Diag(a) = &self.a[tri(t, t)] {
                for lev in 0..a.nblocks {
                    self.sigma[tri(t, t)].sub_block(lev, lev, kt, kt, &mut sblk);
                    lower_mul(lam_t, &sblk, kt, kt, &mut ls);
                    at_b_add(&ls, a.block(lev), kt, kt, kt, &mut h[t][lev * kt * kt..(lev + 1) * kt * kt]);
                }
            }
            // blocks with a later term s: A_st at (r, c) adds (Λ_s Σ)ᵀ A to H_t(c) and
            // Σ Λ_tᵀ Aᵀ to H_s(r)
            for s in t + 1..nt {
                let ks = self.terms[s].k;
                let lam_s = &self.lambdas[s];
                let a = match &self.a[tri(s, t)] {
                    Block::Sparse(a) => a,
                    _ => return Err(MixedError::internal("the gradient", "A's blocks between terms are not sparse")),
                };
                let sig = &self.sigma[tri(s, t)];
                let map = &self.a_to_l[tri(s, t)];
                for c in 0..a.ncol_levels {
                    for idx in a.col_blocks(c) {
                        let r = a.rowlev[idx] as usize;
                        match sig {
                            Block::Sparse(sp) => sblk[..ks * kt].copy_from_slice(sp.block(map[idx])),
                            other => other.sub_block(r, c, ks, kt, &mut sblk),
                        }
                        let ablk = a.block(idx);
                        lower_mul(lam_s, &sblk, ks, kt, &mut ls);
                        at_b_add(&ls, ablk, ks, kt, kt, &mut h[t][c * kt * kt..(c + 1) * kt * kt]);
                        // H_s(r) += Σ Λ_tᵀ Aᵀ = (Λ_t Σᵀ)ᵀ Aᵀ: ls ← Λ_t Σᵀ (kt × ks)
                        for j in 0..ks {
                            for i in 0..kt {
                                ls[i + j * kt] = (0..=i).map(|e| lam_t[i + e * kt] * sblk[j + e * ks]).sum();
                            }
                        }
                        let hs = &mut h[s][r * ks * ks..(r + 1) * ks * ks];
                        for j in 0..ks {
                            for i in 0..ks {
                                hs[i + j * ks] += (0..kt).map(|e| ls[e + i * kt] * ablk[j + e * ks]).sum::<f64>();
                            }
                        }
                    }
                }
            }
            // REML: the X rows, H_t(l) += Σ_{X,tl}ᵀ A_{X,tl}
            if reml {
                let (ax, sx) = match (&self.a[tri(nt, t)], &self.sigma[tri(nt, t)]) {
                    (Block::Dense(a), Block::Dense(s)) => (a, s),
                    _ => return Err(MixedError::internal("the gradient", "the X rows are not dense")),
                };
                for lev in 0..self.terms[t].nlevels {
                    let hl = &mut h[t][lev * kt * kt..(lev + 1) * kt * kt];
                    for j in 0..kt {
                        let acol = &ax.data[(lev * kt + j) * m..(lev * kt + j) * m + p];
                        for i in 0..kt {
                            let scol = &sx.data[(lev * kt + i) * p..(lev * kt + i + 1) * p];
                            hl[i + j * kt] += scol.iter().zip(acol).map(|(x, y)| x * y).sum::<f64>();
                        }
                    }
                }
            }
        }
        let nth = self.ntheta();
        let (mut dlogdet, mut dpwrss) = (vec![0.0; nth], vec![0.0; nth]);
        for (t, term) in self.terms.iter().enumerate() {
            let k = term.k;
            for (w, &(r, c)) in term.theta_layout().iter().enumerate() {
                let (mut dl, mut dp) = (0.0, 0.0);
                for lev in 0..term.nlevels {
                    dl += h[t][lev * k * k + c + r * k];
                    dp += zeta[t][lev * k + r] * u[t][lev * k + c];
                }
                dlogdet[self.theta_offsets[t] + w] = 2.0 * dl;
                dpwrss[self.theta_offsets[t] + w] = -2.0 * dp;
            }
        }
        Ok(GradientParts { dlogdet, dpwrss, pwrss: parts.pwrss })
    }

    /// ζ = Zᵀ W r = A_Zy − A_ZZ b − A_ZX β, per term, from the blocks of A.
    pub(crate) fn zeta(&self, b: &[Vec<f64>], beta: &[f64]) -> Result<Vec<Vec<f64>>> {
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let ab = self.a_zz_times(b);
        let mut zeta = Vec::with_capacity(nt);
        for (t, ab_t) in ab.iter().enumerate() {
            let ax = match &self.a[tri(nt, t)] {
                Block::Dense(d) => d,
                _ => return Err(MixedError::internal("the gradient", "A's [X y] rows are not dense")),
            };
            let z: Vec<f64> = (0..ax.cols)
                .map(|c| {
                    let col = &ax.data[c * m..(c + 1) * m];
                    col[p] - (0..p).map(|a| col[a] * beta[a]).sum::<f64>() - ab_t[c]
                })
                .collect();
            zeta.push(z);
        }
        Ok(zeta)
    }
}

/// out (kr×kc) ← Λ S for lower-triangular Λ (kr×kr) and S (kr×kc).
fn lower_mul(lam: &[f64], s: &[f64], kr: usize, kc: usize, out: &mut [f64]) {
    for j in 0..kc {
        for i in 0..kr {
            out[i + j * kr] = (0..=i).map(|e| lam[i + e * kr] * s[e + j * kr]).sum();
        }
    }
}

/// h (kc×kd) += Xᵀ Y for X (kr×kc) and Y (kr×kd).
fn at_b_add(x: &[f64], y: &[f64], kr: usize, kc: usize, kd: usize, h: &mut [f64]) {
    for j in 0..kd {
        for i in 0..kc {
            h[i + j * kc] += (0..kr).map(|e| x[e + i * kr] * y[e + j * kr]).sum::<f64>();
        }
    }
}
