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
//! appears, so this gradient holds on the boundary too.
//!
//! When every Λ_t is invertible, ∂ log|M| needs only the sums over levels of Σ's diagonal
//! blocks ([`LinearMixedModel::gradient_parts_by_block_sums`]), and the largest term's
//! column of the selected inverse, the costliest one, is skipped: this is the
//! optimiser's gradient away from the boundary.
use crate::linalg::blocks::Block;
use crate::error::{MixedError, Result};
use crate::linalg::tri;
use crate::lmm::model::LinearMixedModel;
use crate::linalg::selinv;

/// The solution at the current factor that the derivatives start from: the spherical
/// random effects û and ζ = ZᵀWr per term (from β̂ and b = Λû).
pub(crate) struct Solution {
    pub u: Vec<Vec<f64>>,
    pub zeta: Vec<Vec<f64>>,
}

/// The gradient's two pieces at the current factor.
pub(crate) struct GradientParts {
    /// ∂ log|M| / ∂θ, M over [Z X] (`with_x`) or Z.
    pub dlogdet: Vec<f64>,
    /// ∂ PWRSS / ∂θ.
    pub dpwrss: Vec<f64>,
    pub pwrss: f64,
}

impl LinearMixedModel<'_> {
    /// ∂criterion/∂θ at the θ of the last [`LinearMixedModel::update_l`]. Away from the
    /// boundary this spends the factor ([`Self::gradient_parts_by_block_sums`]): call
    /// `update_l` again before reading L (every criterion value does).
    pub fn gradient(&mut self) -> Result<Vec<f64>> {
        let g = if self.block_sums_suffice() { self.gradient_parts_by_block_sums(self.reml)? } else { self.gradient_parts(self.reml)? };
        let nprime = if self.reml { (self.n - self.p) as f64 } else { self.n as f64 };
        Ok(g.dlogdet.iter().zip(&g.dpwrss).map(|(a, b)| a + nprime * b / g.pwrss).collect())
    }

    /// ∂ log|M| and ∂ PWRSS over θ; leaves the selected inverse of M in `self.sigma`.
    pub(crate) fn gradient_parts(&mut self, with_x: bool) -> Result<GradientParts> {
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let parts = self.parts();
        let Solution { u, zeta } = self.solution()?;
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
        let mut dlogdet = vec![0.0; self.ntheta()];
        for (t, term) in self.terms.iter().enumerate() {
            let k = term.k;
            for (w, &(r, c)) in term.theta_layout().iter().enumerate() {
                let dl: f64 = (0..term.nlevels).map(|lev| h[t][lev * k * k + c + r * k]).sum();
                dlogdet[self.theta_offsets[t] + w] = 2.0 * dl;
            }
        }
        let dpwrss = self.dpwrss(&zeta, &u);
        Ok(GradientParts { dlogdet, dpwrss, pwrss: parts.pwrss })
    }

    /// Whether [`Self::gradient_parts_by_block_sums`] applies: the first term's block of
    /// L is block-diagonal (else there is nothing to skip) and every Λ_t is invertible,
    /// with no diagonal element so small that Λ_t⁻¹ would cost accuracy (that formula
    /// subtracts two nearly equal terms of size n_levels·|Λ_t⁻¹|).
    fn block_sums_suffice(&self) -> bool {
        matches!(self.l.first(), Some(Block::Diag(_)))
            && self.terms.iter().zip(&self.lambdas).all(|(t, lam)| (0..t.k).all(|i| lam[i + i * t.k].abs() >= 1e-3))
    }

    /// [`Self::gradient_parts`] for invertible Λ. With Tᵢ = Λ̃⁻¹Sᵢ (per level τᵢ = Λ_t⁻¹e_re_cᵀ),
    /// ∂M/∂θᵢ = Tᵢᵀ(M − J) + (M − J)Tᵢ, so ∂ log|M|/∂θᵢ = tr(Σ∂M) = 2 tr(Tᵢ) − 2 tr(Σ J Tᵢ)
    ///
    ///   = 2 [n_t Λ_t⁻¹ − S_t Λ_t⁻¹]_{c,r},   S_t = Σ_l Σ_tt(l),
    ///
    /// which needs only the sum over levels of Σ's diagonal blocks. The first term's
    /// sum comes from the later columns of Σ ([`selinv::first_column_block_sum`]), so its
    /// column of the selected inverse, one step per level of the largest factor, is skipped.
    /// Σ's dense diagonal blocks are formed over L's, so L is spent afterwards
    /// ([`LinearMixedModel::selected_inverse_spending_factor`]).
    pub(crate) fn gradient_parts_by_block_sums(&mut self, with_x: bool) -> Result<GradientParts> {
        let parts = self.parts();
        let Solution { u, zeta } = self.solution()?;
        self.selected_inverse_spending_factor(with_x, 1)?;
        let nt = self.terms.len();
        let mut sums = Vec::with_capacity(nt);
        {
            let (view, nb) = Self::factor_view(&self.l, &self.x_only, nt, with_x);
            sums.push(selinv::first_column_block_sum(&view, nb, &self.sigma, &mut self.selinv_ws)?);
        }
        sums.extend((1..nt).map(|t| self.sigma_block_sum(t)));
        let nth = self.ntheta();
        let mut dlogdet = vec![0.0; nth];
        for (t, term) in self.terms.iter().enumerate() {
            let k = term.k;
            let inv = lower_inverse(&self.lambdas[t], k);
            let n = term.nlevels as f64;
            for (w, &(r, c)) in term.theta_layout().iter().enumerate() {
                // [n Λ⁻¹ − S Λ⁻¹]_{c,r}
                let s_inv: f64 = (0..k).map(|e| sums[t][c + e * k] * inv[e + r * k]).sum();
                dlogdet[self.theta_offsets[t] + w] = 2.0 * (n * inv[c + r * k] - s_inv);
            }
        }
        let dpwrss = self.dpwrss(&zeta, &u);
        Ok(GradientParts { dlogdet, dpwrss, pwrss: parts.pwrss })
    }

    /// Σ_l Σ_tt(l), the sum over term t's levels of its diagonal blocks of the selected
    /// inverse in `self.sigma` (k×k, column-major).
    pub(crate) fn sigma_block_sum(&self, t: usize) -> Vec<f64> {
        let k = self.terms[t].k;
        let mut sum = vec![0.0; k * k];
        let mut blk = vec![0.0; k * k];
        for lev in 0..self.terms[t].nlevels {
            self.sigma[tri(t, t)].sub_block(lev, lev, k, k, &mut blk);
            sum.iter_mut().zip(&blk).for_each(|(s, v)| *s += v);
        }
        sum
    }

    /// ∂ PWRSS/∂θᵢ = −2 Σ_l ζ_t(l)[r] û_t(l)[c] for θᵢ at (r, c) of term t.
    fn dpwrss(&self, zeta: &[Vec<f64>], u: &[Vec<f64>]) -> Vec<f64> {
        let mut out = vec![0.0; self.ntheta()];
        for (t, term) in self.terms.iter().enumerate() {
            let k = term.k;
            for (w, &(r, c)) in term.theta_layout().iter().enumerate() {
                let dp: f64 = (0..term.nlevels).map(|lev| zeta[t][lev * k + r] * u[t][lev * k + c]).sum();
                out[self.theta_offsets[t] + w] = -2.0 * dp;
            }
        }
        out
    }

    /// û and ζ at the current factor (see [`Solution`]).
    pub(crate) fn solution(&self) -> Result<Solution> {
        let beta = self.beta();
        let u = self.u();
        let b = self.b_from_u(&u);
        let zeta = self.zeta(&b, &beta)?;
        Ok(Solution { u, zeta })
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

/// The inverse of a lower-triangular k×k Λ (column-major), by forward substitution.
fn lower_inverse(lam: &[f64], k: usize) -> Vec<f64> {
    let mut inv = vec![0.0; k * k];
    for c in 0..k {
        for i in c..k {
            let rhs = if i == c { 1.0 } else { 0.0 };
            let s: f64 = (c..i).map(|e| lam[i + e * k] * inv[e + c * k]).sum();
            inv[i + c * k] = (rhs - s) / lam[i + i * k];
        }
    }
    inv
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

#[cfg(test)]
mod tests {
    use crate::linalg::blocks::Block;
    use crate::{CovForm, LinearMixedModel, ReTerm};

    /// Crossed design: a term on 60 levels (block-diagonal in L), then two that fill in:
    /// k = 2 on 15 and 4 levels, or (`scalar`) k = 1 on 8 and 120 levels, which gives
    /// column 0 of L a dense block before a sparse one; p = 3.
    fn model(reml: bool, weighted: bool, scalar: bool) -> LinearMixedModel<'static> {
        let n = 500;
        let x: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
        let g1: Vec<u32> = (0..n).map(|i| (i % 60) as u32).collect();
        let (n2, n3) = if scalar { (8, 120) } else { (15, 4) };
        let g2: Vec<u32> = (0..n).map(|i| ((i * 7 + i / 60) % n2) as u32).collect();
        let g3: Vec<u32> = (0..n).map(|i| ((i * 13 + i / 7) % n3) as u32).collect();
        let mut z1 = vec![1.0; n];
        if !scalar {
            z1.extend(&x);
        }
        let terms = vec![
            ReTerm::new(g1, 60, z1, if scalar { 1 } else { 2 }, CovForm::Full).unwrap(),
            ReTerm::new(g2, n2, vec![1.0; n], 1, CovForm::Full).unwrap(),
            ReTerm::new(g3, n3, vec![1.0; n], 1, CovForm::Full).unwrap(),
        ];
        let mut xm = vec![1.0; n];
        xm.extend(&x);
        xm.extend((0..n).map(|i| ((i * 11 % 17) as f64).sqrt()));
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 2.0 + x[i] + ((i % 60) as f64 * 0.1).cos()).collect();
        let w = weighted.then(|| (0..n).map(|i| 0.5 + (i % 5) as f64 * 0.25).collect::<Vec<f64>>().into());
        LinearMixedModel::new(terms, xm, 3, y, w, reml).unwrap()
    }

    /// The gradient from the sums of Σ's diagonal blocks (invertible Λ) is the gradient
    /// from Σ on A's pattern, for REML and ML, with and without weights.
    #[test]
    fn block_sums_give_the_pattern_gradient() {
        for (reml, weighted, scalar) in [(true, false, false), (false, false, false), (true, true, false), (true, false, true), (false, true, true)] {
            let mut m = model(reml, weighted, scalar);
            assert!(matches!(m.l[0], crate::linalg::blocks::Block::Diag(_)));
            if scalar {
                // column 0: dense, sparse, dense (X): pairs with a dense block are summed
                // over the levels at once, on either side of the sparse one
                let kinds = m.storage_kinds();
                assert_eq!([kinds[1], kinds[3], kinds[6]], ["dense", "sparse", "dense"], "{:?}", kinds);
            }
            for theta in [[0.8, -0.3, 0.5, 1.2, 0.4], [0.05, 0.02, 0.3, 0.01, 2.0], [1.0, 0.0, 1.0, 1.0, 1.0]] {
                let theta: Vec<f64> = if scalar { theta[2..].to_vec() } else { theta.to_vec() };
                m.update_l(&theta).unwrap();
                assert!(m.block_sums_suffice());
                let a = m.gradient_parts_by_block_sums(reml).unwrap();
                m.update_l(&theta).unwrap();
                let b = m.gradient_parts(reml).unwrap();
                for (x, y) in a.dlogdet.iter().zip(&b.dlogdet).chain(a.dpwrss.iter().zip(&b.dpwrss)) {
                    assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "{:?}: {} vs {}", theta, x, y);
                }
            }
            // a zero on Λ's diagonal: the pattern path
            m.update_l(if scalar { &[0.5, 0.0, 0.4][..] } else { &[0.8, -0.3, 0.0, 1.2, 0.4][..] }).unwrap();
            assert!(!m.block_sums_suffice());
        }
    }

    /// The block-sum gradient forms Σ's dense diagonal blocks over L's (one buffer, not
    /// two); L is then spent: readers refuse it, and the next update_l (or a copy made
    /// while it is spent) gives back the criterion a fresh model gives.
    #[test]
    fn block_sum_gradient_spends_the_factor_and_update_l_restores_it() {
        for reml in [true, false] {
            let mut m = model(reml, false, true);
            let mut fresh = model(reml, false, true);
            let theta = [0.5, 1.2, 0.4];
            m.update_l(&theta).unwrap();
            let dense: Vec<usize> = (1..3).filter(|&j| matches!(m.l[super::tri(j, j)], Block::Dense(_))).collect();
            assert!(!dense.is_empty());
            let sizes: Vec<usize> = dense.iter().map(|&j| m.l[super::tri(j, j)].len()).collect();
            let g = m.gradient().unwrap();
            for (&j, &len) in dense.iter().zip(&sizes) {
                assert_eq!(m.l[super::tri(j, j)].len(), 0, "L_jj still allocated");
                assert_eq!(m.sigma[super::tri(j, j)].len(), len, "Σ_jj not in L_jj's buffer");
            }
            assert!(m.selected_inverse(false).is_err());
            assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.parts())).is_err());
            let mut copy = m.clone();
            for th in [theta, [0.9, 0.3, 2.0]] {
                let want = fresh.objective(&th).unwrap();
                assert!((m.objective(&th).unwrap() - want).abs() < 1e-10 * want.abs());
                assert!((copy.objective(&th).unwrap() - want).abs() < 1e-10 * want.abs());
                let g2 = m.gradient().unwrap();
                fresh.update_l(&th).unwrap();
                let gf = fresh.gradient().unwrap();
                assert_eq!(g2, gf);
            }
            m.update_l(&theta).unwrap();
            assert_eq!(m.gradient().unwrap(), g);
        }
    }

    /// One scalar term (L has a single block column under ML), with and without X.
    #[test]
    fn block_sums_with_one_term() {
        let n = 40;
        let g: Vec<u32> = (0..n).map(|i| (i % 7) as u32).collect();
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.91).sin() + (i % 7) as f64 * 0.3).collect();
        for (p, reml) in [(1, false), (1, true), (0, false), (0, true)] {
            let term = ReTerm::new(g.clone(), 7, vec![1.0; n], 1, CovForm::Full).unwrap();
            let mut m = LinearMixedModel::new(vec![term], vec![1.0; n * p], p, y.clone(), None, reml).unwrap();
            m.update_l(&[0.7]).unwrap();
            assert!(m.block_sums_suffice());
            let a = m.gradient_parts_by_block_sums(reml).unwrap();
            m.update_l(&[0.7]).unwrap();
            let b = m.gradient_parts(reml).unwrap();
            assert!((a.dlogdet[0] - b.dlogdet[0]).abs() < 1e-10 * (1.0 + b.dlogdet[0].abs()), "p = {}: {} vs {}", p, a.dlogdet[0], b.dlogdet[0]);
        }
    }

    /// A first term with enough levels (≥ 1024) for its sums to be split over two cores.
    #[test]
    fn block_sums_on_two_cores() {
        let n = 4000;
        let g1: Vec<u32> = (0..n).map(|i| (i % 1100) as u32).collect();
        let g2: Vec<u32> = (0..n).map(|i| ((i * 7 + i / 1100) % 40) as u32).collect();
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() + ((i % 40) as f64 * 0.2).cos()).collect();
        let x: Vec<f64> = (0..n).map(|i| ((i * 13 % 29) as f64) / 10.0).collect();
        let mut xm = vec![1.0; n];
        xm.extend(&x);
        for reml in [true, false] {
            let terms = vec![
                ReTerm::new(g1.clone(), 1100, vec![1.0; n], 1, CovForm::Full).unwrap(),
                ReTerm::new(g2.clone(), 40, vec![1.0; n], 1, CovForm::Full).unwrap(),
            ];
            let mut m = LinearMixedModel::new(terms, xm.clone(), 2, y.clone(), None, reml).unwrap();
            m.update_l(&[0.6, 0.9]).unwrap();
            assert!(m.block_sums_suffice());
            let a = m.gradient_parts_by_block_sums(reml).unwrap();
            m.update_l(&[0.6, 0.9]).unwrap();
            let b = m.gradient_parts(reml).unwrap();
            for (x, y) in a.dlogdet.iter().zip(&b.dlogdet) {
                assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "{} vs {}", x, y);
            }
        }
    }
}
