//! Exact second derivatives over θ at the current factor, for Satterthwaite's degrees
//! of freedom: the Hessians of log|M| and of the PWRSS, and the derivatives of
//! (R_XᵀR_X)⁻¹ (the unscaled Var(β̂)).
//!
//! Notation as in [`crate::lmm::gradient`]: M = Λ̃ᵀAΛ̃ + J over [Z X] (REML) or Z (ML),
//! C = M⁻¹, Sᵢ = ∂Λ̃/∂θᵢ. Where Λ is invertible, Tᵢ = Λ̃⁻¹Sᵢ (per level τᵢ = Λ_t⁻¹e_re_cᵀ)
//! turns ∂M into Tᵢᵀ(M−J) + (M−J)Tᵢ, and the terms of ∂²log|M| = tr(C∂²Mᵢⱼ) −
//! tr(C∂MᵢC∂Mⱼ) that involve A cancel, leaving
//!
//!   ∂²log|M|/∂θᵢ∂θⱼ = [same term] (Σ_l tr(C_ll yᵢⱼ) − 2 n_lev tr(τᵢτⱼ)) − tr(C Uᵢ C Uⱼ),
//!
//! with Uᵢ = Tᵢ + Tᵢᵀ and yᵢⱼ = τᵢᵀτⱼᵀ + τⱼᵀτᵢᵀ + τᵢᵀτⱼ + τⱼτᵢ + τⱼᵀτᵢ + τᵢτⱼ.
//! Φ(U, U′) = tr(CUCU′) follows the factor's block columns: with C = Wᵀdiag(D, G)W,
//! W = [I 0; −Ľ I], a block-diagonal column contributes per level (its D and the
//! trailing inverse G on the rows the level reaches, which the selected inverse holds)
//! and passes WUWᵀ on to the trailing columns; the dense tail ends it with dense
//! products. The terms of a Λ with a zero on its diagonal (a boundary fit) have no
//! Tᵢ; their rows are central differences of the exact gradient instead.
//!
//! The PWRSS is min over (u, β) of φ, so its Hessian is φ_θθ − φ_θxᵀ φ_xx⁻¹ φ_xθ: one
//! solve with the factor per θ. ∂C_XX/∂θᵢ = −C_X·∂MᵢC_·X needs only the X rows of C.
use crate::linalg::blocks::{self, Block};
use crate::linalg::dense;
use crate::lmm::gradient::Solution;
use crate::error::{MixedError, Result};
use crate::linalg::tri;
use crate::lmm::model::LinearMixedModel;
use crate::linalg::selinv;

/// Second-order pieces at the current factor (nθ×nθ matrices column-major).
#[derive(Debug, Clone)]
pub struct PieceDerivatives {
    /// log|M|: REML's [Z X] or ML's Z.
    pub logdet_hessian: Vec<f64>,
    pub pwrss_hessian: Vec<f64>,
    pub pwrss_gradient: Vec<f64>,
    pub pwrss: f64,
    /// (R_XᵀR_X)⁻¹ and its derivative over each θᵢ (p×p each).
    pub vcov: Vec<f64>,
    pub vcov_jacobian: Vec<Vec<f64>>,
    /// θ indices whose log-determinant rows are differences of the exact gradient.
    pub differenced: Vec<usize>,
}

/// One θ element: its term, its place (r, c) in Λ_t, and (Λ_t invertible) τ and τ + τᵀ.
struct Theta {
    term: usize,
    /// Columns per level and levels of the term.
    k: usize,
    nlev: usize,
    r: usize,
    c: usize,
    tau: Option<Vec<f64>>,
    u: Vec<f64>,
}

/// The part of the engine named in this module's broken-invariant errors.
const PART: &str = "the second derivatives";

/// (k×k) a·b, column-major.
fn mm(a: &[f64], b: &[f64], k: usize, ta: bool, tb: bool) -> Vec<f64> {
    let at = |i: usize, j: usize| if ta { a[j + i * k] } else { a[i + j * k] };
    let bt = |i: usize, j: usize| if tb { b[j + i * k] } else { b[i + j * k] };
    let mut o = vec![0.0; k * k];
    for j in 0..k {
        for i in 0..k {
            o[i + j * k] = (0..k).map(|e| at(i, e) * bt(e, j)).sum();
        }
    }
    o
}

fn trace_prod(a: &[f64], b: &[f64], k: usize) -> f64 {
    // tr(a b)
    (0..k).map(|i| (0..k).map(|e| a[i + e * k] * b[e + i * k]).sum::<f64>()).sum()
}

impl LinearMixedModel<'_> {
    fn theta_elements(&self) -> Vec<Theta> {
        let mut out = Vec::with_capacity(self.ntheta());
        for (t, term) in self.terms.iter().enumerate() {
            let k = term.k;
            let lam = &self.lambdas[t];
            let dmax = (0..k).map(|d| lam[d + d * k].abs()).fold(0.0, f64::max);
            let dmin = (0..k).map(|d| lam[d + d * k].abs()).fold(f64::INFINITY, f64::min);
            let invertible = dmin > 1e-6 * dmax.max(1e-3);
            for &(r, c) in term.theta_layout() {
                let tau = invertible.then(|| {
                    // column c of τ is Λ_t⁻¹ e_r
                    let mut x = vec![0.0; k];
                    x[r] = 1.0;
                    dense::solve_lower(lam, k, &mut x);
                    let mut tau = vec![0.0; k * k];
                    tau[c * k..(c + 1) * k].copy_from_slice(&x);
                    tau
                });
                let u = match &tau {
                    Some(t) => (0..k * k).map(|w| t[w] + t[(w % k) * k + w / k]).collect(),
                    None => vec![0.0; k * k],
                };
                out.push(Theta { term: t, k, nlev: term.nlevels, r, c, tau, u });
            }
        }
        out
    }

    /// Exact second-order pieces at the current factor (the θ of the last `update_l`).
    /// The factor is left at that θ.
    pub fn piece_derivatives(&mut self) -> Result<PieceDerivatives> {
        let theta = self.theta().to_vec();
        let nth = theta.len();
        let nt = self.terms.len();
        let reml = self.reml;
        let Solution { u, zeta } = self.solution()?;
        // the PWRSS's gradient, and the selected inverse of [Z X]'s M
        let full = self.gradient_parts(true)?;
        let vcov = self.vcov_unscaled();
        let vcov_jacobian = self.vcov_jacobian()?;
        let pwrss_hessian = self.pwrss_hessian(&u, &zeta)?;
        if !reml {
            self.selected_inverse(false)?;
        }
        let elements = self.theta_elements();
        let exact: Vec<usize> = (0..nth).filter(|&i| elements[i].tau.is_some()).collect();
        let differenced: Vec<usize> = (0..nth).filter(|&i| elements[i].tau.is_none()).collect();
        let mut logdet_hessian = vec![0.0; nth * nth];
        if !exact.is_empty() {
            let chosen: Vec<&Theta> = exact.iter().map(|&i| &elements[i]).collect();
            let phi = {
                let (view, nb) = Self::factor_view(&self.l, &self.x_only, nt, reml);
                phi(&view, &self.sigma, nb, &chosen)?
            };
            let ne = exact.len();
            // Σ_l C_ll per term
            let sums: Vec<Vec<f64>> = (0..nt)
                .map(|t| self.sigma_block_sum(t))
                .collect();
            for (a, &ia) in exact.iter().enumerate() {
                for (bb, &ib) in exact.iter().enumerate() {
                    let (ea, eb) = (&elements[ia], &elements[ib]);
                    let mut v = -phi[a + bb * ne];
                    if ea.term == eb.term {
                        let k = self.terms[ea.term].k;
                        let (ta, tb) = (ea.tau.as_ref().ok_or_else(|| MixedError::internal(PART, "τ"))?, eb.tau.as_ref().ok_or_else(|| MixedError::internal(PART, "τ"))?);
                        let mut y = vec![0.0; k * k];
                        for part in [mm(ta, tb, k, true, true), mm(tb, ta, k, true, true), mm(ta, tb, k, true, false), mm(tb, ta, k, false, false), mm(tb, ta, k, true, false), mm(ta, tb, k, false, false)] {
                            y.iter_mut().zip(&part).for_each(|(s, x)| *s += x);
                        }
                        v += trace_prod(&sums[ea.term], &y, k) - 2.0 * self.terms[ea.term].nlevels as f64 * trace_prod(ta, tb, k);
                    }
                    logdet_hessian[ia + ib * nth] = v;
                }
            }
        }
        // boundary terms: central differences of the exact gradient of log|M|
        if !differenced.is_empty() {
            let mut t = theta.clone();
            for &i in &differenced {
                let h = 1e-5 * theta[i].abs().max(0.1);
                t[i] = theta[i] + h;
                self.update_l(&t)?;
                let up = self.gradient_parts(reml)?.dlogdet;
                t[i] = theta[i] - h;
                self.update_l(&t)?;
                let down = self.gradient_parts(reml)?.dlogdet;
                t[i] = theta[i];
                for j in 0..nth {
                    let d = (up[j] - down[j]) / (2.0 * h);
                    logdet_hessian[j + i * nth] = d;
                    logdet_hessian[i + j * nth] = d;
                }
            }
            self.update_l(&theta)?;
        }
        Ok(PieceDerivatives {
            logdet_hessian,
            pwrss_hessian,
            pwrss_gradient: full.dpwrss,
            pwrss: full.pwrss,
            vcov,
            vcov_jacobian,
            differenced,
        })
    }

    /// Per-term vectors (level-major) of Sᵢ x: row (l, r) of term t takes x's (l, c).
    fn s_times(&self, e: &Theta, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = self.terms.iter().map(|t| vec![0.0; t.q()]).collect();
        let k = self.terms[e.term].k;
        for lev in 0..self.terms[e.term].nlevels {
            out[e.term][lev * k + e.r] = x[e.term][lev * k + e.c];
        }
        out
    }

    /// A_XZ x: the X rows (without y) of A's last block row times x.
    fn a_xz_times(&self, x: &[Vec<f64>]) -> Result<Vec<f64>> {
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let mut out = vec![0.0; p];
        for (t, xt) in x.iter().enumerate().take(nt) {
            let ax = self.a[tri(nt, t)].as_dense().ok_or_else(|| MixedError::internal(PART, "A's X rows are not dense"))?;
            for (c, &v) in xt.iter().enumerate() {
                if v != 0.0 {
                    for a in 0..p {
                        out[a] += ax.data[a + c * m] * v;
                    }
                }
            }
        }
        Ok(out)
    }

    /// M⁻¹ x for M over [Z X], by forward and back substitution through the blocks
    /// (`x_only` must be current).
    fn solve_m(&self, x: &mut [Vec<f64>]) {
        let (view, nb) = Self::factor_view(&self.l, &self.x_only, self.terms.len(), true);
        for j in 0..nb {
            let mut xj = std::mem::take(&mut x[j]);
            for k in 0..j {
                blocks::mul_sub(view[tri(j, k)], &x[k], &mut xj);
            }
            blocks::solve_lower(view[tri(j, j)], &mut xj);
            x[j] = xj;
        }
        for j in (0..nb).rev() {
            let mut xj = std::mem::take(&mut x[j]);
            for i in j + 1..nb {
                blocks::t_mul_sub(view[tri(i, j)], &x[i], &mut xj);
            }
            blocks::solve_lower_t(view[tri(j, j)], &mut xj);
            x[j] = xj;
        }
    }

    /// ∂²PWRSS/∂θᵢ∂θⱼ = 2 vⱼᵀA_ZZvᵢ − ½ gᵢᵀM⁻¹gⱼ with vᵢ = Sᵢû and
    /// gᵢ = ∂²φ/∂θᵢ∂(u, β) = 2[ΛᵀA_ZZvᵢ − Sᵢᵀζ; A_XZvᵢ].
    fn pwrss_hessian(&self, u: &[Vec<f64>], zeta: &[Vec<f64>]) -> Result<Vec<f64>> {
        let nt = self.terms.len();
        let elements = self.theta_elements();
        let nth = elements.len();
        let mut av = Vec::with_capacity(nth);
        let mut vs = Vec::with_capacity(nth);
        let mut gs: Vec<Vec<Vec<f64>>> = Vec::with_capacity(nth);
        for e in &elements {
            let v = self.s_times(e, u);
            let a = self.a_zz_times(&v);
            let mut g: Vec<Vec<f64>> = Vec::with_capacity(nt + 1);
            for (s, a_s) in a.iter().enumerate() {
                let k = self.terms[s].k;
                let lam = &self.lambdas[s];
                let mut gs_s = vec![0.0; a_s.len()];
                for lev in 0..self.terms[s].nlevels {
                    for c in 0..k {
                        // (Λᵀ a)[l, c] = Σ_{r ≥ c} Λ[r, c] a[l, r]
                        gs_s[lev * k + c] = 2.0 * (c..k).map(|r| lam[r + c * k] * a_s[lev * k + r]).sum::<f64>();
                    }
                }
                g.push(gs_s);
            }
            let k = self.terms[e.term].k;
            for lev in 0..self.terms[e.term].nlevels {
                g[e.term][lev * k + e.c] -= 2.0 * zeta[e.term][lev * k + e.r];
            }
            g.push(self.a_xz_times(&v)?.into_iter().map(|x| 2.0 * x).collect());
            av.push(a);
            vs.push(v);
            gs.push(g);
        }
        let mut solved = gs.clone();
        for x in solved.iter_mut() {
            self.solve_m(x);
        }
        let dot = |a: &[Vec<f64>], b: &[Vec<f64>]| a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>()).sum::<f64>();
        let mut h = vec![0.0; nth * nth];
        for i in 0..nth {
            for j in 0..nth {
                h[i + j * nth] = 2.0 * dot(&vs[j], &av[i]) - 0.5 * dot(&gs[i], &solved[j]);
            }
        }
        // exact in exact arithmetic; symmetrise the rounding
        for i in 0..nth {
            for j in 0..i {
                let s = 0.5 * (h[i + j * nth] + h[j + i * nth]);
                h[i + j * nth] = s;
                h[j + i * nth] = s;
            }
        }
        Ok(h)
    }

    /// ∂(R_XᵀR_X)⁻¹/∂θᵢ = −(Wᵢ + Wᵢᵀ), Wᵢ = C_X· Λ̃ᵀ A Sᵢ C_·X, from the X rows of the
    /// selected inverse of [Z X] (which must be in `self.sigma`). All p columns at once:
    /// Sᵢ C_·X touches only term t's rows, A maps them to the terms it meets and to X.
    fn vcov_jacobian(&self) -> Result<Vec<Vec<f64>>> {
        let nt = self.terms.len();
        let (p, m) = (self.p, self.p + 1);
        let elements = self.theta_elements();
        let sx: Vec<&crate::linalg::blocks::Dense> = (0..=nt).map(|j| self.sigma[tri(nt, j)].as_dense().ok_or_else(|| MixedError::internal(PART, "Σ's X rows are not dense"))).collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(elements.len());
        for e in &elements {
            let t = e.term;
            let (k, qt) = (e.k, self.terms[t].q());
            // SY = Sᵢ C_·X on term t: q_t × p column-major, row (l, r) = C_X·ᵀ row (l, c)
            let mut sy = vec![0.0; qt * p];
            for col in 0..p {
                for lev in 0..e.nlev {
                    sy[lev * k + e.r + col * qt] = sx[t].data[col + (lev * k + e.c) * p];
                }
            }
            let mut w = vec![0.0; p * p];
            // terms s: Z_s = Λ_sᵀ (A_st SY), then W += C_{X,s} Z_s
            for s_ in 0..nt {
                let qs = self.terms[s_].q();
                let blk = if t <= s_ { &self.a[tri(s_, t)] } else { &self.a[tri(t, s_)] };
                let mut z = vec![0.0; qs * p];
                for col in 0..p {
                    let (x, y) = (&sy[col * qt..(col + 1) * qt], &mut z[col * qs..(col + 1) * qs]);
                    if t <= s_ {
                        blocks::mul_sub(blk, x, y);
                    } else {
                        blocks::t_mul_sub(blk, x, y);
                    }
                }
                // (mul_sub subtracted) Z = −Λᵀ(−A SY)
                let ks = self.terms[s_].k;
                let lam = &self.lambdas[s_];
                let mut zl = vec![0.0; ks];
                for col in 0..p {
                    let zc = &mut z[col * qs..(col + 1) * qs];
                    for lev in 0..self.terms[s_].nlevels {
                        for c in 0..ks {
                            zl[c] = -(c..ks).map(|r| lam[r + c * ks] * zc[lev * ks + r]).sum::<f64>();
                        }
                        zc[lev * ks..(lev + 1) * ks].copy_from_slice(&zl);
                    }
                }
                dense::gemm(&mut w, p, p, 1.0, &sx[s_].data, false, &z, false, qs, 1.0);
            }
            // X: W += Σ_XX (A_Xt SY)
            let ax = self.a[tri(nt, t)].as_dense().ok_or_else(|| MixedError::internal(PART, "A's X rows are not dense"))?;
            let mut zx = vec![0.0; p * p];
            for col in 0..p {
                for q in 0..qt {
                    let v = sy[q + col * qt];
                    if v != 0.0 {
                        for a in 0..p {
                            zx[a + col * p] += ax.data[a + q * m] * v;
                        }
                    }
                }
            }
            dense::gemm(&mut w, p, p, 1.0, &sx[nt].data, false, &zx, false, p, 1.0);
            let mut d = vec![0.0; p * p];
            for j in 0..p {
                for i in 0..p {
                    d[i + j * p] = -(w[i + j * p] + w[j + i * p]);
                }
            }
            out.push(d);
        }
        Ok(out)
    }
}

/// Φᵢⱼ = tr(C Uᵢ C Uⱼ) for the chosen θ elements, C the inverse of the matrix factored
/// in `view` (nb block columns), whose selected inverse is `sig`.
fn phi(view: &[&Block], sig: &[Block], nb: usize, els: &[&Theta]) -> Result<Vec<f64>> {
    let nd = els.len();
    let mut out = vec![0.0; nd * nd];
    let jstar = (0..nb).find(|&j| !matches!(view[tri(j, j)], Block::Diag(_))).unwrap_or(nb);
    // U (then W U Wᵀ) on Σ's pattern, for elements of the block-diagonal columns
    let mut v: Vec<Option<Vec<Block>>> = els.iter().map(|e| (e.term < jstar).then(|| sig.iter().map(|b| b.zeros_like()).collect())).collect();
    for (i, e) in els.iter().enumerate() {
        if let Some(vi) = v[i].as_mut() {
            match &mut vi[tri(e.term, e.term)] {
                Block::Diag(d) => {
                    for lev in 0..d.nblocks {
                        d.block_mut(lev).copy_from_slice(&e.u);
                    }
                }
                _ => return Err(MixedError::internal(PART, "a leading diagonal block is not block-diagonal")),
            }
        }
    }
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let (mut lr, mut g) = (Vec::new(), Vec::new());
    for j in 0..jstar {
        let active: Vec<usize> = (0..nd).filter(|&i| els[i].term <= j).collect();
        if active.is_empty() {
            continue;
        }
        let ljj = match view[tri(j, j)] {
            Block::Diag(d) => d,
            _ => return Err(MixedError::internal(PART, "expected a block-diagonal block")),
        };
        let k = ljj.k;
        let mut dl = vec![0.0; k * k];
        let mut vjj: Vec<Vec<f64>> = vec![vec![0.0; k * k]; active.len()];
        let mut vt: Vec<Vec<f64>> = vec![Vec::new(); active.len()];
        let mut w: Vec<Vec<f64>> = vec![Vec::new(); active.len()];
        let mut e = Vec::new();
        for lev in 0..ljj.nblocks {
            let nr = selinv::level_rows(view, nb, j, lev, &mut rows, &mut lr)?;
            selinv::gather_sym(sig, nb, j, &rows, nr, &mut g)?;
            dense::llt_inverse(ljj.block(lev), k, &mut dl);
            // per active element: V_jj(l), Ṽ = V[R, l] − Ľ V_jj(l), W = G Ṽ
            for (a, &i) in active.iter().enumerate() {
                let vi = v[i].as_ref().ok_or_else(|| MixedError::internal(PART, "missing V"))?;
                vi[tri(j, j)].sub_block(lev, lev, k, k, &mut vjj[a]);
                column_rows(vi, nb, j, lev, k, &rows, nr, &mut vt[a])?;
                let (d, t) = (&vjj[a], &mut vt[a]);
                for c in 0..k {
                    for rr in 0..nr {
                        t[rr + c * nr] -= (0..k).map(|e| lr[rr * k + e] * d[e + c * k]).sum::<f64>();
                    }
                }
                let wi = &mut w[a];
                wi.clear();
                wi.resize(nr * k, 0.0);
                for c in 0..k {
                    for bcol in 0..nr {
                        let x = t[bcol + c * nr];
                        if x != 0.0 {
                            for (o, gv) in wi[c * nr..(c + 1) * nr].iter_mut().zip(&g[bcol * nr..(bcol + 1) * nr]) {
                                *o += gv * x;
                            }
                        }
                    }
                }
            }
            // contributions: tr(D Va D Vb) + tr(Ṽbᵀ Wa D) + tr(Ṽaᵀ Wb D)
            for (a, &ia) in active.iter().enumerate() {
                for (b, &ib) in active.iter().enumerate().skip(a) {
                    let dva = mm(&dl, &vjj[a], k, false, false);
                    let dvb = mm(&dl, &vjj[b], k, false, false);
                    let mut s = trace_prod(&dva, &dvb, k);
                    // tr(Xᵀ Y D) = Σ_{c,e} (XᵀY)[c,e] D[e,c]
                    let cross = |x: &[f64], y: &[f64]| -> f64 {
                        let mut acc = 0.0;
                        for c in 0..k {
                            for e in 0..k {
                                let xy: f64 = (0..nr).map(|r| x[r + c * nr] * y[r + e * nr]).sum();
                                acc += xy * dl[e + c * k];
                            }
                        }
                        acc
                    };
                    // the two cross terms are equal (G and D are symmetric)
                    s += 2.0 * cross(&vt[b], &w[a]);
                    out[ia + ib * nd] += s;
                    if ia != ib {
                        out[ib + ia * nd] += s;
                    }
                }
            }
            // V_TT −= Ľ Ṽᵀ + Ṽ Ľᵀ + Ľ V_jj Ľᵀ on R × R
            for (a, &i) in active.iter().enumerate() {
                e.clear();
                e.resize(nr * nr, 0.0);
                // symmetric: the scatter reads the lower triangle only
                for cb in 0..nr {
                    for ra in cb..nr {
                        let mut s = 0.0;
                        for c in 0..k {
                            s += lr[ra * k + c] * vt[a][cb + c * nr] + vt[a][ra + c * nr] * lr[cb * k + c];
                            let lv: f64 = (0..k).map(|f| lr[ra * k + f] * vjj[a][f + c * k]).sum();
                            s += lv * lr[cb * k + c];
                        }
                        e[ra + cb * nr] = s;
                    }
                }
                let vi = v[i].as_mut().ok_or_else(|| MixedError::internal(PART, "missing V"))?;
                scatter_sub_sym(vi, nb, j, &rows, &e, nr)?;
            }
        }
    }
    if jstar < nb {
        // the dense tail: Yᵢ = G Vᵢ, Φᵢⱼ += tr(Yᵢ Yⱼ)
        let offs: Vec<usize> = std::iter::once(0).chain((jstar..nb).scan(0, |acc, b| {
            *acc += view[tri(b, b)].rows();
            Some(*acc)
        })).collect();
        let m = *offs.last().unwrap_or(&0);
        // a symmetric tail matrix whole: its lower blocks column by column, then mirrored
        let dense_tail = |blocks: &[Block]| -> Result<Vec<f64>> {
            let mut d = vec![0.0; m * m];
            for (ja, bj) in (jstar..nb).enumerate() {
                for (ia, bi) in (bj..nb).enumerate().map(|(x, b)| (x + ja, b)) {
                    let blk = blocks[tri(bi, bj)].as_dense().ok_or_else(|| MixedError::internal(PART, "a tail block is not dense"))?;
                    for c in 0..blk.cols {
                        let dst = (offs[ja] + c) * m + offs[ia];
                        d[dst..dst + blk.rows].copy_from_slice(&blk.data[c * blk.rows..(c + 1) * blk.rows]);
                    }
                }
            }
            const B: usize = 32;
            for jb in (0..m).step_by(B) {
                for ib in (jb..m).step_by(B) {
                    for j in jb..(jb + B).min(m) {
                        for i in ib.max(j + 1)..(ib + B).min(m) {
                            d[j + i * m] = d[i + j * m];
                        }
                    }
                }
            }
            Ok(d)
        };
        let gt = dense_tail(sig)?;
        // elements of the leading columns: Yᵢ = G Vᵢ and its transpose (contiguous traces)
        let mut ys: Vec<Option<(Vec<f64>, Vec<f64>)>> = Vec::with_capacity(nd);
        for i in 0..nd {
            ys.push(match v[i].as_ref() {
                Some(vi) => {
                    let vt = dense_tail(vi)?;
                    let mut y = vec![0.0; m * m];
                    dense::gemm(&mut y, m, m, 1.0, &gt, false, &vt, false, m, 0.0);
                    let yt = transpose(&y, m);
                    Some((y, yt))
                }
                None => None,
            });
        }
        // where a tail element's U sits in the tail: (offset, k, levels)
        let place = |e: &Theta| (offs[e.term - jstar], e.k, e.nlev);
        for a in 0..nd {
            for b in a..nd {
                let s = match (&ys[a], &ys[b]) {
                    // tr(Ya Yb) = ⟨Ya, Ybᵀ⟩
                    (Some((ya, _)), Some((_, ybt))) => ya.iter().zip(ybt).map(|(x, y)| x * y).sum::<f64>(),
                    // tr(G Va G Ub) = Σ_l tr(u_b (G Va G)_ll), (G Va G)[x1, x2] = ⟨Yaᵀ[:, x1], G[:, x2]⟩
                    (Some((_, yat)), None) | (None, Some((_, yat))) => {
                        let e = if ys[a].is_none() { els[a] } else { els[b] };
                        let (off, k, nlev) = place(e);
                        let mut acc = 0.0;
                        for lev in 0..nlev {
                            for f in 0..k {
                                for c in 0..k {
                                    let uf = e.u[c + f * k];
                                    if uf != 0.0 {
                                        let (x1, x2) = (off + lev * k + f, off + lev * k + c);
                                        let d: f64 = yat[x1 * m..(x1 + 1) * m].iter().zip(&gt[x2 * m..(x2 + 1) * m]).map(|(p, q)| p * q).sum();
                                        acc += uf * d;
                                    }
                                }
                            }
                        }
                        acc
                    }
                    // tr(G Ua G Ub) = Σ_{l, l′} tr(G_{l l′} u_b G_{l′ l} u_a)
                    (None, None) => {
                        let (ea, eb) = (els[a], els[b]);
                        let (oa, ka, na) = place(ea);
                        let (ob, kb, nb_) = place(eb);
                        let mut acc = 0.0;
                        let mut blk = vec![0.0; ka * kb];
                        for la in 0..na {
                            for lb in 0..nb_ {
                                // blk = G[(la, ·), (lb, ·)] (ka × kb)
                                for c in 0..kb {
                                    for r in 0..ka {
                                        blk[r + c * ka] = gt[(oa + la * ka + r) + (ob + lb * kb + c) * m];
                                    }
                                }
                                // tr(blkᵀ... ) = Σ tr(G_ab u_b G_ba u_a) = Σ_{r,c,f,g} blk[r,c] u_b[c,f] blk[g,f] u_a[g,r]
                                for r in 0..ka {
                                    for c in 0..kb {
                                        let x = blk[r + c * ka];
                                        if x == 0.0 {
                                            continue;
                                        }
                                        for f in 0..kb {
                                            let ub = eb.u[c + f * kb];
                                            if ub == 0.0 {
                                                continue;
                                            }
                                            for g in 0..ka {
                                                acc += x * ub * blk[g + f * ka] * ea.u[g + r * ka];
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        acc
                    }
                };
                out[a + b * nd] += s;
                if a != b {
                    out[b + a * nd] += s;
                }
            }
        }
    }
    Ok(out)
}

/// The transpose of a column-major m×m matrix, by cache blocks.
fn transpose(a: &[f64], m: usize) -> Vec<f64> {
    const B: usize = 32;
    let mut t = vec![0.0; m * m];
    for jb in (0..m).step_by(B) {
        for ib in (0..m).step_by(B) {
            for j in jb..(jb + B).min(m) {
                for i in ib..(ib + B).min(m) {
                    t[j + i * m] = a[i + j * m];
                }
            }
        }
    }
    t
}

/// V[R, level] (nr × k, column-major) into `out`, from the blocks below column j of a
/// matrix on Σ's pattern; R is the level's rows in pattern order (as `level_rows` lists them).
fn column_rows(v: &[Block], nb: usize, j: usize, lev: usize, k: usize, rows: &[Vec<usize>], nr: usize, out: &mut Vec<f64>) -> Result<()> {
    out.clear();
    out.resize(nr * k, 0.0);
    let mut off = 0;
    for i in j + 1..nb {
        match &v[tri(i, j)] {
            Block::Sparse(s) => {
                let (kr, bs) = (s.kr, s.kr * s.kc);
                let mut a = 0;
                for idx in s.col_blocks(lev) {
                    for rr in 0..kr {
                        for c in 0..k {
                            out[off + a + c * nr] = s.values[idx * bs + rr + c * kr];
                        }
                        a += 1;
                    }
                }
            }
            Block::Dense(d) => {
                for c in 0..k {
                    out[off + c * nr..off + c * nr + d.rows].copy_from_slice(&d.data[(lev * k + c) * d.rows..(lev * k + c + 1) * d.rows]);
                }
            }
            Block::Diag(_) => return Err(MixedError::internal(PART, "block-diagonal block below the diagonal")),
        }
        off += rows[i].len();
    }
    Ok(())
}

/// V[R, R] −= E for a symmetric V stored on Σ's pattern (lower blocks; dense diagonal
/// blocks whole).
fn scatter_sub_sym(v: &mut [Block], nb: usize, j: usize, rows: &[Vec<usize>], e: &[f64], nr: usize) -> Result<()> {
    let mut o1 = 0;
    for i1 in j + 1..nb {
        let mut o2 = 0;
        for i2 in j + 1..=i1 {
            let (r1, r2) = (&rows[i1], &rows[i2]);
            let same = i1 == i2;
            match &mut v[tri(i1, i2)] {
                Block::Dense(d) => {
                    let ld = d.rows;
                    for (b, &c) in r2.iter().enumerate() {
                        let ecol = &e[(o2 + b) * nr + o1..(o2 + b) * nr + o1 + r1.len()];
                        let from = if same { b } else { 0 };
                        for (a, &r) in r1.iter().enumerate().skip(from) {
                            d.data[r + c * ld] -= ecol[a];
                            if same && r != c {
                                d.data[c + r * ld] -= ecol[a];
                            }
                        }
                    }
                }
                Block::Diag(d) => {
                    let k = d.k;
                    for (b, &c) in r2.iter().enumerate() {
                        let from = if same { b } else { 0 };
                        for (a, &r) in r1.iter().enumerate().skip(from) {
                            if r / k != c / k {
                                return Err(MixedError::internal(PART, "fill outside a block-diagonal block"));
                            }
                            let x = e[(o1 + a) + (o2 + b) * nr];
                            let blk = d.block_mut(r / k);
                            blk[r % k + (c % k) * k] -= x;
                            if r != c {
                                blk[c % k + (r % k) * k] -= x;
                            }
                        }
                    }
                }
                Block::Sparse(s) => {
                    let (kr, kc) = (s.kr, s.kc);
                    for (b, &c) in r2.iter().enumerate() {
                        for (a, &r) in r1.iter().enumerate() {
                            let idx = s.find(r / kr, c / kc).ok_or_else(|| MixedError::internal(PART, "pair outside Σ's pattern"))?;
                            s.block_mut(idx)[r % kr + (c % kc) * kr] -= e[(o1 + a) + (o2 + b) * nr];
                        }
                    }
                }
            }
            o2 += r2.len();
        }
        o1 += rows[i1].len();
    }
    Ok(())
}
