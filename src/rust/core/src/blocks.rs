//! Storage types for the blocks of A = [Z X y]ᵀ[Z X y] and of its Cholesky factor L.
//!
//! * [`BlockDiagonal`]: the [1,1] block, one k×k block per level of the first term.
//! * [`BlockSparse`]: blocks below it in the first block column; nonzeros are whole
//!   k_i×k_1 blocks at the (level_i, level_1) pairs that occur in the data, so scaling
//!   by Λ and dividing by the block-diagonal factor never create fill-in.
//! * Dense `nalgebra::DMatrix` for the rest.
use crate::dense;

#[derive(Debug, Clone)]
pub struct BlockDiagonal {
    pub k: usize,
    pub nblocks: usize,
    /// nblocks column-major k×k blocks, one after another.
    pub data: Vec<f64>,
}

impl BlockDiagonal {
    pub fn zeros(k: usize, nblocks: usize) -> Self {
        BlockDiagonal { k, nblocks, data: vec![0.0; k * k * nblocks] }
    }
    pub fn block(&self, l: usize) -> &[f64] {
        let kk = self.k * self.k;
        &self.data[l * kk..(l + 1) * kk]
    }
    pub fn block_mut(&mut self, l: usize) -> &mut [f64] {
        let kk = self.k * self.k;
        &mut self.data[l * kk..(l + 1) * kk]
    }
}

/// Block-sparse matrix stored by block column (compressed sparse column of k_r×k_c blocks).
#[derive(Debug, Clone)]
pub struct BlockSparse {
    /// Rows per block (k of the row term) and columns per block (k of the first term).
    pub kr: usize,
    pub kc: usize,
    pub nrow_levels: usize,
    pub ncol_levels: usize,
    /// Block column c holds the blocks colptr[c]..colptr[c+1].
    pub colptr: Vec<usize>,
    /// Row level of each stored block, increasing within a column.
    pub rowlev: Vec<u32>,
    /// Each stored block, column-major kr×kc, one after another.
    pub values: Vec<f64>,
}

impl BlockSparse {
    /// Pattern and values of Σ_o z_r[o]ᵀ ⊗ z_c[o] placed at (row_codes[o], col_codes[o]).
    pub fn cross_product(
        row_codes: &[u32],
        zr: &[f64],
        kr: usize,
        nrow_levels: usize,
        col_codes: &[u32],
        zc: &[f64],
        kc: usize,
        ncol_levels: usize,
        sqrtw: Option<&[f64]>,
    ) -> Self {
        let n = row_codes.len();
        let mut order: Vec<(u32, u32, u32)> =
            (0..n).map(|o| (col_codes[o], row_codes[o], o as u32)).collect();
        order.sort_unstable();
        let mut colptr = vec![0usize; ncol_levels + 1];
        let mut rowlev = Vec::new();
        let mut values: Vec<f64> = Vec::new();
        let bs = kr * kc;
        let mut last: Option<(u32, u32)> = None;
        for &(c, r, o) in &order {
            if last != Some((c, r)) {
                rowlev.push(r);
                values.extend(std::iter::repeat(0.0).take(bs));
                colptr[c as usize + 1] += 1;
                last = Some((c, r));
            }
            let o = o as usize;
            let w = sqrtw.map_or(1.0, |s| s[o] * s[o]);
            let base = values.len() - bs;
            for b in 0..kc {
                let zcb = zc[o + b * n] * w;
                for a in 0..kr {
                    values[base + a + b * kr] += zr[o + a * n] * zcb;
                }
            }
        }
        for c in 0..ncol_levels {
            colptr[c + 1] += colptr[c];
        }
        BlockSparse { kr, kc, nrow_levels, ncol_levels, colptr, rowlev, values }
    }

    pub fn nblocks(&self) -> usize {
        self.rowlev.len()
    }

    /// Number of stored scalars, for choosing representations and reporting.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    fn block(&self, idx: usize) -> &[f64] {
        let bs = self.kr * self.kc;
        &self.values[idx * bs..(idx + 1) * bs]
    }

    /// self ← Λ_rᵀ · src · Λ_c, block by block (same pattern as `src`).
    pub fn scale_from(&mut self, src: &BlockSparse, lam_r: &[f64], lam_c: &[f64], tmp: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        let bs = kr * kc;
        for (dst, s) in self.values.chunks_exact_mut(bs).zip(src.values.chunks_exact(bs)) {
            scale_block(dst, s, kr, kc, lam_r, lam_c, tmp);
        }
    }

    /// self ← self · L_cᵀ⁻¹ where L_c is the first term's block-diagonal factor.
    pub fn rdiv_block_diag(&mut self, l: &BlockDiagonal) {
        let (kr, kc) = (self.kr, self.kc);
        let bs = kr * kc;
        for c in 0..self.ncol_levels {
            let lc = l.block(c);
            for idx in self.colptr[c]..self.colptr[c + 1] {
                dense::rdiv_lower_t(&mut self.values[idx * bs..(idx + 1) * bs], kr, lc, kc);
            }
        }
    }

    /// C ← C − S Sᵀ on the lower triangle of the dense q_r×q_r matrix C.
    pub fn syrk_sub_into(&self, c: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        let ld = self.nrow_levels * kr;
        for col in 0..self.ncol_levels {
            let range = self.colptr[col]..self.colptr[col + 1];
            for i1 in range.clone() {
                let r1 = self.rowlev[i1] as usize;
                let b1 = self.block(i1);
                for i2 in self.colptr[col]..=i1 {
                    let r2 = self.rowlev[i2] as usize;
                    let b2 = self.block(i2);
                    // rows r1 (≥ r2 since rowlev increases), cols r2
                    for b in 0..kr {
                        for a in 0..kr {
                            let mut s = 0.0;
                            for t in 0..kc {
                                s += b1[a + t * kr] * b2[b + t * kr];
                            }
                            c[(r1 * kr + a) + (r2 * kr + b) * ld] -= s;
                        }
                    }
                }
            }
        }
    }

    /// C ← C − self · otherᵀ, C dense (q_self_rows × q_other_rows); both share the column levels.
    pub fn gemm_nt_sub_into(&self, other: &BlockSparse, c: &mut [f64]) {
        let (kr, ko, kc) = (self.kr, other.kr, self.kc);
        let ld = self.nrow_levels * kr;
        for col in 0..self.ncol_levels {
            for i1 in self.colptr[col]..self.colptr[col + 1] {
                let r1 = self.rowlev[i1] as usize;
                let b1 = self.block(i1);
                for i2 in other.colptr[col]..other.colptr[col + 1] {
                    let r2 = other.rowlev[i2] as usize;
                    let b2 = other.block(i2);
                    for b in 0..ko {
                        for a in 0..kr {
                            let mut s = 0.0;
                            for t in 0..kc {
                                s += b1[a + t * kr] * b2[b + t * ko];
                            }
                            c[(r1 * kr + a) + (r2 * ko + b) * ld] -= s;
                        }
                    }
                }
            }
        }
    }

    /// C ← C − D · selfᵀ for dense D (m × q_cols) and dense C (m × q_rows).
    pub fn dense_nt_sub_into(&self, d: &[f64], m: usize, c: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        for col in 0..self.ncol_levels {
            for idx in self.colptr[col]..self.colptr[col + 1] {
                let r = self.rowlev[idx] as usize;
                let blk = self.block(idx);
                for a in 0..kr {
                    let cc = &mut c[(r * kr + a) * m..(r * kr + a + 1) * m];
                    for t in 0..kc {
                        let v = blk[a + t * kr];
                        if v != 0.0 {
                            let dc = &d[(col * kc + t) * m..(col * kc + t + 1) * m];
                            for (x, y) in cc.iter_mut().zip(dc) {
                                *x -= v * y;
                            }
                        }
                    }
                }
            }
        }
    }

    /// y ← y − selfᵀ x for the first term's vector y (q_cols) and x (q_rows).
    pub fn t_mul_sub(&self, x: &[f64], y: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        for col in 0..self.ncol_levels {
            for idx in self.colptr[col]..self.colptr[col + 1] {
                let r = self.rowlev[idx] as usize;
                let blk = self.block(idx);
                for t in 0..kc {
                    let mut s = 0.0;
                    for a in 0..kr {
                        s += blk[a + t * kr] * x[r * kr + a];
                    }
                    y[col * kc + t] -= s;
                }
            }
        }
    }

    /// y ← y − self[:, level col block] · x for x of length kc.
    pub fn col_mul_sub(&self, col: usize, x: &[f64], y: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        for idx in self.colptr[col]..self.colptr[col + 1] {
            let r = self.rowlev[idx] as usize;
            let blk = self.block(idx);
            for a in 0..kr {
                let mut s = 0.0;
                for t in 0..kc {
                    s += blk[a + t * kr] * x[t];
                }
                y[r * kr + a] -= s;
            }
        }
    }
}

/// dst ← Λ_rᵀ · src · Λ_c for one kr×kc block; `tmp` holds at least kr·kc scalars.
pub fn scale_block(dst: &mut [f64], src: &[f64], kr: usize, kc: usize, lam_r: &[f64], lam_c: &[f64], tmp: &mut [f64]) {
    if kr == 1 && kc == 1 {
        dst[0] = lam_r[0] * src[0] * lam_c[0];
        return;
    }
    // tmp = src · Λ_c
    for b in 0..kc {
        for a in 0..kr {
            let mut s = 0.0;
            for t in b..kc {
                s += src[a + t * kr] * lam_c[t + b * kc];
            }
            tmp[a + b * kr] = s;
        }
    }
    // dst = Λ_rᵀ · tmp
    for b in 0..kc {
        for a in 0..kr {
            let mut s = 0.0;
            for t in a..kr {
                s += lam_r[t + a * kr] * tmp[t + b * kr];
            }
            dst[a + b * kr] = s;
        }
    }
}

/// Dense D (m × q, column-major, q = nlev·k) ← D with each k-column block right-multiplied by Λ.
pub fn scale_dense_cols(d: &mut [f64], m: usize, k: usize, lam: &[f64]) {
    let q = d.len() / m.max(1);
    let nlev = if k == 0 { 0 } else { q / k };
    for l in 0..nlev {
        for b in 0..k {
            // new col b = Σ_{t ≥ b} old col t · Λ[t,b]; ascending b keeps needed columns intact
            let base = (l * k + b) * m;
            let lbb = lam[b + b * k];
            for x in &mut d[base..base + m] {
                *x *= lbb;
            }
            for t in b + 1..k {
                let ltb = lam[t + b * k];
                if ltb != 0.0 {
                    let (left, right) = d.split_at_mut((l * k + t) * m);
                    let src = &right[..m];
                    for (x, y) in left[base..base + m].iter_mut().zip(src) {
                        *x += ltb * y;
                    }
                }
            }
        }
    }
}

/// Dense D (q × ncol, column-major, q = nlev·k) ← Λᵀ-blocks · D, row block by row block.
pub fn scale_dense_rows(d: &mut [f64], q: usize, k: usize, lam: &[f64]) {
    let ncol = if q == 0 { 0 } else { d.len() / q };
    let nlev = q / k;
    for c in 0..ncol {
        let col = &mut d[c * q..(c + 1) * q];
        for l in 0..nlev {
            for a in 0..k {
                // new row a = Σ_{t ≥ a} Λ[t,a] · old row t; ascending a keeps needed rows intact
                let mut s = 0.0;
                for t in a..k {
                    s += lam[t + a * k] * col[l * k + t];
                }
                col[l * k + a] = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_product_accumulates_pairs() {
        // rows: levels 0,1 ; cols: levels 0,1,2
        let rc = [0u32, 0, 1, 1, 0];
        let cc = [0u32, 0, 2, 1, 2];
        let zr = [1.0, 2.0, 3.0, 4.0, 5.0];
        let zc = [1.0, 1.0, 2.0, 1.0, 1.0];
        let s = BlockSparse::cross_product(&rc, &zr, 1, 2, &cc, &zc, 1, 3, None);
        assert_eq!(s.colptr, vec![0, 1, 2, 4]);
        assert_eq!(s.rowlev, vec![0, 1, 0, 1]);
        assert_eq!(s.values, vec![3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn dense_scaling_matches_explicit_products() {
        let k = 2;
        let lam = [2.0, 1.0, 0.0, 3.0]; // [[2,0],[1,3]]
        // D is 1 × 2 (one level): [a b] · Λ = [2a + b, 3b]
        let mut d = vec![5.0, 7.0];
        scale_dense_cols(&mut d, 1, k, &lam);
        assert_eq!(d, vec![17.0, 21.0]);
        // Λᵀ · [a; b] = [2a + b; 3b]
        let mut e = vec![5.0, 7.0];
        scale_dense_rows(&mut e, 2, k, &lam);
        assert_eq!(e, vec![17.0, 21.0]);
    }
}
