//! Storage for the blocks of A = [Z X y]ᵀ[Z X y] and of its Cholesky factor L, one
//! block per pair of block rows/columns (the random-effects terms, then [X y]):
//!
//! * [`BlockDiagonal`]: k×k blocks on the diagonal. Every diagonal block of A is one (a
//!   term's levels never meet), and so is the first of L and any later one that
//!   receives no fill-in (a term whose levels nest the earlier terms').
//! * [`BlockSparse`]: k_r×k_c blocks at the level pairs that occur in the data, plus the
//!   fill-in the factorisation creates, for blocks between two terms.
//! * [`Dense`]: the [X y] rows, and blocks whose fill-in makes them dense.
//!
//! The kernels below (scaled fill, rank update, product, right division, Cholesky and
//! their vector forms) are defined per pair of storage kinds; which kinds meet is fixed
//! by [`crate::linalg::structure`], so a pair that cannot occur is an internal error.
use crate::linalg::dense;
use crate::error::{MixedError, Result};
use std::ops::Range;

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
    /// Rows per block (k of the row term) and columns per block (k of the column term).
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
    /// Pattern and values of Σ_o w_o z_r[o] z_c[o]ᵀ placed at (row_level(o),
    /// col_level(o)) for the n observations o.
    #[allow(clippy::too_many_arguments)]
    pub fn cross_product(
        n: usize,
        row_level: impl Fn(usize) -> usize,
        zr: &[f64],
        kr: usize,
        nrow_levels: usize,
        col_level: impl Fn(usize) -> usize,
        zc: &[f64],
        kc: usize,
        ncol_levels: usize,
        weights: Option<&[f64]>,
    ) -> Self {
        // a counting sort by column, then by row within each column, keeps the
        // pass over n linear
        let mut count = vec![0usize; ncol_levels + 1];
        for o in 0..n {
            count[col_level(o) + 1] += 1;
        }
        for c in 0..ncol_levels {
            count[c + 1] += count[c];
        }
        let mut by_col = vec![0u32; n];
        let mut next = count.clone();
        for o in 0..n {
            let c = col_level(o);
            by_col[next[c]] = o as u32;
            next[c] += 1;
        }
        let mut colptr = vec![0usize; ncol_levels + 1];
        let mut rowlev = Vec::new();
        let mut values: Vec<f64> = Vec::new();
        let bs = kr * kc;
        let mut rows_here: Vec<(u32, u32)> = Vec::new();
        for c in 0..ncol_levels {
            rows_here.clear();
            rows_here.extend(by_col[count[c]..count[c + 1]].iter().map(|&o| (row_level(o as usize) as u32, o)));
            rows_here.sort_unstable();
            let mut last: Option<u32> = None;
            for &(r, o) in &rows_here {
                if last != Some(r) {
                    rowlev.push(r);
                    values.extend(std::iter::repeat(0.0).take(bs));
                    last = Some(r);
                }
                let o = o as usize;
                let w = weights.map_or(1.0, |w| w[o]);
                let base = values.len() - bs;
                for b in 0..kc {
                    let zcb = zc[o + b * n] * w;
                    for a in 0..kr {
                        values[base + a + b * kr] += zr[o + a * n] * zcb;
                    }
                }
            }
            colptr[c + 1] = rowlev.len();
        }
        BlockSparse { kr, kc, nrow_levels, ncol_levels, colptr, rowlev, values }
    }

    /// The index of the stored block at (row level `r`, column level `c`).
    pub fn slot(&self, c: usize, r: usize) -> usize {
        let lo = self.colptr[c];
        let within = self.rowlev[lo..self.colptr[c + 1]].binary_search(&(r as u32));
        lo + within.expect("the observation's level pair is in the pattern it made")
    }

    /// Zeros on a pattern given as the sorted row levels of each block column.
    pub fn with_pattern(kr: usize, kc: usize, nrow_levels: usize, cols: &[Vec<u32>]) -> Self {
        let mut colptr = Vec::with_capacity(cols.len() + 1);
        colptr.push(0);
        let mut rowlev = Vec::new();
        for c in cols {
            rowlev.extend_from_slice(c);
            colptr.push(rowlev.len());
        }
        let values = vec![0.0; rowlev.len() * kr * kc];
        BlockSparse { kr, kc, nrow_levels, ncol_levels: cols.len(), colptr, rowlev, values }
    }

    /// The sorted row levels of each block column.
    pub fn pattern(&self) -> Vec<Vec<u32>> {
        (0..self.ncol_levels).map(|c| self.rowlev[self.col_blocks(c)].to_vec()).collect()
    }

    pub fn col_blocks(&self, col: usize) -> Range<usize> {
        self.colptr[col]..self.colptr[col + 1]
    }

    /// Index of the stored block at (row level, column level), if there is one.
    pub fn find(&self, row: usize, col: usize) -> Option<usize> {
        let r = self.col_blocks(col);
        self.rowlev[r.clone()].binary_search(&(row as u32)).ok().map(|i| r.start + i)
    }

    pub fn nblocks(&self) -> usize {
        self.rowlev.len()
    }

    /// Number of stored scalars, for choosing representations and reporting.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    pub fn block(&self, idx: usize) -> &[f64] {
        let bs = self.kr * self.kc;
        &self.values[idx * bs..(idx + 1) * bs]
    }

    pub fn block_mut(&mut self, idx: usize) -> &mut [f64] {
        let bs = self.kr * self.kc;
        &mut self.values[idx * bs..(idx + 1) * bs]
    }

    /// self ← self · L_cᵀ⁻¹ where L_c is the column term's block-diagonal factor.
    fn rdiv_block_diag(&mut self, l: &BlockDiagonal) {
        let (kr, kc) = (self.kr, self.kc);
        let bs = kr * kc;
        for c in 0..self.ncol_levels {
            let lc = l.block(c);
            for idx in self.colptr[c]..self.colptr[c + 1] {
                dense::rdiv_lower_t(&mut self.values[idx * bs..(idx + 1) * bs], kr, lc, kc);
            }
        }
    }

    /// C ← C − S Sᵀ on the lower triangle of the dense q_r×q_r matrix C. The pairs of
    /// one column are taken column of C by column, so the writes run down a column.
    fn syrk_sub_into(&self, c: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        let ld = self.nrow_levels * kr;
        if kr == 1 && kc == 1 {
            // columns of C in two parts with about as many pairs each, one per core
            // (the pairs land at random in C, so this is bound by memory, not flops)
            let mut pairs = vec![0usize; ld];
            for col in 0..self.ncol_levels {
                let rows = &self.rowlev[self.col_blocks(col)];
                for (i2, &r2) in rows.iter().enumerate() {
                    pairs[r2 as usize] += rows.len() - i2;
                }
            }
            let total: usize = pairs.iter().sum();
            if total < 1 << 16 {
                self.scalar_syrk_sub(c, ld, 0, ld);
                return;
            }
            let mut split = 0;
            let mut acc = 0;
            while split < ld && 2 * acc < total {
                acc += pairs[split];
                split += 1;
            }
            let (lo, hi) = c.split_at_mut(split * ld);
            rayon::join(|| self.scalar_syrk_sub(lo, ld, 0, split), || self.scalar_syrk_sub(hi, ld, split, ld));
            return;
        }
        for col in 0..self.ncol_levels {
            let range = self.col_blocks(col);
            for i2 in range.clone() {
                let r2 = self.rowlev[i2] as usize;
                let b2 = self.block(i2);
                for i1 in i2..range.end {
                    let r1 = self.rowlev[i1] as usize;
                    let b1 = self.block(i1);
                    // rows r1 (≥ r2 since rowlev increases), cols r2
                    for b in 0..kr {
                        let cc = &mut c[(r2 * kr + b) * ld + r1 * kr..(r2 * kr + b) * ld + r1 * kr + kr];
                        for (a, x) in cc.iter_mut().enumerate() {
                            let mut s = 0.0;
                            for t in 0..kc {
                                s += b1[a + t * kr] * b2[b + t * kr];
                            }
                            *x -= s;
                        }
                    }
                }
            }
        }
    }

    /// [`Self::syrk_sub_into`] for 1×1 blocks, on columns from..to of C (c holds just
    /// those columns).
    fn scalar_syrk_sub(&self, c: &mut [f64], ld: usize, from: usize, to: usize) {
        for col in 0..self.ncol_levels {
            let range = self.col_blocks(col);
            let vals = &self.values[range.clone()];
            let rows = &self.rowlev[range];
            for (i2, (&r2, &v2)) in rows.iter().zip(vals).enumerate() {
                let r2 = r2 as usize;
                if r2 < from {
                    continue;
                }
                if r2 >= to {
                    break;
                }
                let cc = &mut c[(r2 - from) * ld..(r2 - from + 1) * ld];
                for (&r1, &v1) in rows[i2..].iter().zip(&vals[i2..]) {
                    cc[r1 as usize] -= v1 * v2;
                }
            }
        }
    }

    /// C ← C − self · otherᵀ, C dense (q_self_rows × q_other_rows); both share the column levels.
    fn gemm_nt_sub_into(&self, other: &BlockSparse, c: &mut [f64]) {
        let (kr, ko, kc) = (self.kr, other.kr, self.kc);
        let ld = self.nrow_levels * kr;
        for col in 0..self.ncol_levels {
            for i1 in self.col_blocks(col) {
                let r1 = self.rowlev[i1] as usize;
                let b1 = self.block(i1);
                for i2 in other.col_blocks(col) {
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
    fn dense_nt_sub_into(&self, d: &[f64], m: usize, c: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        for col in 0..self.ncol_levels {
            for idx in self.col_blocks(col) {
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

    /// C ← C − self · Dᵀ for dense D (m × q_cols) and dense C (q_rows × m).
    fn nt_dense_sub_into(&self, d: &[f64], m: usize, c: &mut [f64]) {
        let (kr, kc) = (self.kr, self.kc);
        let ld = self.nrow_levels * kr;
        for col in 0..self.ncol_levels {
            for idx in self.col_blocks(col) {
                let r = self.rowlev[idx] as usize;
                let blk = self.block(idx);
                for t in 0..kc {
                    let dc = &d[(col * kc + t) * m..(col * kc + t + 1) * m];
                    for a in 0..kr {
                        let v = blk[a + t * kr];
                        if v != 0.0 {
                            let row = r * kr + a;
                            for (j, y) in dc.iter().enumerate() {
                                c[row + j * ld] -= v * y;
                            }
                        }
                    }
                }
            }
        }
    }

    /// self ← self − a · bᵀ on self's pattern, which holds every pair a and b produce.
    fn gemm_nt_sub_on_pattern(&mut self, a: &BlockSparse, b: &BlockSparse) -> Result<()> {
        let (kr, kb, kc) = (a.kr, b.kr, a.kc);
        for col in 0..a.ncol_levels {
            for ia in a.col_blocks(col) {
                let ra = a.rowlev[ia] as usize;
                for ib in b.col_blocks(col) {
                    let rb = b.rowlev[ib] as usize;
                    let idx = self.find(ra, rb).ok_or_else(|| MixedError::internal(PART, "fill-in outside a sparse block's pattern"))?;
                    let (ba, bb) = (a.block(ia), b.block(ib));
                    let dst = self.block_mut(idx);
                    for j in 0..kb {
                        for i in 0..kr {
                            let mut s = 0.0;
                            for t in 0..kc {
                                s += ba[i + t * kr] * bb[j + t * kb];
                            }
                            dst[i + j * kr] -= s;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A dense column-major block.
#[derive(Debug, Clone, Default)]
pub struct Dense {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Dense {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Dense { rows, cols, data: vec![0.0; rows * cols] }
    }
}

/// One block of A or L (or of the selected inverse, which has L's structure).
#[derive(Debug, Clone)]
pub enum Block {
    Diag(BlockDiagonal),
    Sparse(BlockSparse),
    Dense(Dense),
}

impl Block {
    /// The stored values, whatever the storage.
    pub fn values(&self) -> &[f64] {
        match self {
            Block::Diag(d) => &d.data,
            Block::Sparse(s) => &s.values,
            Block::Dense(d) => &d.data,
        }
    }

    pub fn values_mut(&mut self) -> &mut [f64] {
        match self {
            Block::Diag(d) => &mut d.data,
            Block::Sparse(s) => &mut s.values,
            Block::Dense(d) => &mut d.data,
        }
    }
}

impl Default for Block {
    fn default() -> Self {
        Block::Dense(Dense::default())
    }
}

/// The part of the engine named in this module's broken-invariant errors.
const PART: &str = "the blocked factor";

impl Block {
    pub fn rows(&self) -> usize {
        match self {
            Block::Diag(d) => d.k * d.nblocks,
            Block::Sparse(s) => s.kr * s.nrow_levels,
            Block::Dense(d) => d.rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Block::Diag(d) => d.k * d.nblocks,
            Block::Sparse(s) => s.kc * s.ncol_levels,
            Block::Dense(d) => d.cols,
        }
    }

    /// Stored scalars.
    pub fn len(&self) -> usize {
        match self {
            Block::Diag(d) => d.data.len(),
            Block::Sparse(s) => s.values.len(),
            Block::Dense(d) => d.data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same storage, zero-filled.
    pub fn zeros_like(&self) -> Block {
        match self {
            Block::Diag(d) => Block::Diag(BlockDiagonal::zeros(d.k, d.nblocks)),
            Block::Sparse(s) => Block::Sparse(BlockSparse {
                kr: s.kr,
                kc: s.kc,
                nrow_levels: s.nrow_levels,
                ncol_levels: s.ncol_levels,
                colptr: s.colptr.clone(),
                rowlev: s.rowlev.clone(),
                values: vec![0.0; s.values.len()],
            }),
            Block::Dense(d) => Block::Dense(Dense::zeros(d.rows, d.cols)),
        }
    }

    pub fn as_dense(&self) -> Option<&Dense> {
        match self {
            Block::Dense(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_dense_mut(&mut self) -> Option<&mut Dense> {
        match self {
            Block::Dense(d) => Some(d),
            _ => None,
        }
    }

    /// Entry (i, j) of the block; zero off the stored pattern.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        match self {
            Block::Dense(d) => d.data[i + j * d.rows],
            Block::Diag(d) => {
                if i / d.k == j / d.k {
                    d.block(i / d.k)[i % d.k + (j % d.k) * d.k]
                } else {
                    0.0
                }
            }
            Block::Sparse(s) => match s.find(i / s.kr, j / s.kc) {
                Some(idx) => s.block(idx)[i % s.kr + (j % s.kc) * s.kr],
                None => 0.0,
            },
        }
    }

    /// The k_r×k_c sub-block at (row level r, column level c), column-major, into `out`
    /// (zeros off the pattern). `kr`, `kc` are the levels' sizes.
    pub fn sub_block(&self, r: usize, c: usize, kr: usize, kc: usize, out: &mut [f64]) {
        match self {
            Block::Dense(d) => {
                for j in 0..kc {
                    for i in 0..kr {
                        out[i + j * kr] = d.data[(r * kr + i) + (c * kc + j) * d.rows];
                    }
                }
            }
            Block::Diag(d) => {
                if r == c {
                    out[..kr * kc].copy_from_slice(d.block(r));
                } else {
                    out[..kr * kc].iter_mut().for_each(|x| *x = 0.0);
                }
            }
            Block::Sparse(s) => match s.find(r, c) {
                Some(idx) => out[..kr * kc].copy_from_slice(s.block(idx)),
                None => out[..kr * kc].iter_mut().for_each(|x| *x = 0.0),
            },
        }
    }
}

/// L block ← Λ_rᵀ A Λ_c (+ I on a term's diagonal block), in L's storage. `lam_r` and
/// `lam_c` are None for the [X y] rows and columns; `map` gives, for a sparse A block,
/// the index of each of its stored blocks in L's pattern. `tmp` holds 2·k_max² scalars.
pub fn fill_scaled(l: &mut Block, a: &Block, lam_r: Option<&[f64]>, lam_c: Option<&[f64]>, inflate: bool, map: &[usize], tmp: &mut [f64]) -> Result<()> {
    match (l, a) {
        (Block::Diag(l), Block::Diag(a)) => {
            let lam = lam_c.ok_or_else(|| MixedError::internal(PART, "block-diagonal block without Λ"))?;
            let k = a.k;
            for b in 0..a.nblocks {
                let dst = l.block_mut(b);
                scale_block(dst, a.block(b), k, k, lam, lam, tmp);
                if inflate {
                    for d in 0..k {
                        dst[d + d * k] += 1.0;
                    }
                }
            }
        }
        (Block::Dense(l), Block::Diag(a)) => {
            let lam = lam_c.ok_or_else(|| MixedError::internal(PART, "block-diagonal block without Λ"))?;
            let (k, n) = (a.k, l.rows);
            l.data.iter_mut().for_each(|x| *x = 0.0);
            let (scratch, out) = tmp.split_at_mut(k * k);
            for b in 0..a.nblocks {
                scale_block(&mut out[..k * k], a.block(b), k, k, lam, lam, scratch);
                for j in 0..k {
                    for i in 0..k {
                        l.data[(b * k + i) + (b * k + j) * n] = out[i + j * k];
                    }
                }
            }
            if inflate {
                for d in 0..n {
                    l.data[d + d * n] += 1.0;
                }
            }
        }
        (Block::Sparse(l), Block::Sparse(a)) => {
            let (lr, lc) = (lam_r.ok_or_else(|| MixedError::internal(PART, "sparse block without Λ"))?, lam_c.ok_or_else(|| MixedError::internal(PART, "sparse block without Λ"))?);
            l.values.iter_mut().for_each(|x| *x = 0.0);
            let (kr, kc) = (a.kr, a.kc);
            for (idx, &to) in map.iter().enumerate() {
                scale_block(l.block_mut(to), a.block(idx), kr, kc, lr, lc, tmp);
            }
        }
        (Block::Dense(l), Block::Sparse(a)) => {
            let (lr, lc) = (lam_r.ok_or_else(|| MixedError::internal(PART, "sparse block without Λ"))?, lam_c.ok_or_else(|| MixedError::internal(PART, "sparse block without Λ"))?);
            let (kr, kc, n) = (a.kr, a.kc, l.rows);
            l.data.iter_mut().for_each(|x| *x = 0.0);
            let (scratch, out) = tmp.split_at_mut(kr * kc);
            for c in 0..a.ncol_levels {
                for idx in a.col_blocks(c) {
                    let r = a.rowlev[idx] as usize;
                    scale_block(&mut out[..kr * kc], a.block(idx), kr, kc, lr, lc, scratch);
                    for j in 0..kc {
                        for i in 0..kr {
                            l.data[(r * kr + i) + (c * kc + j) * n] = out[i + j * kr];
                        }
                    }
                }
            }
        }
        (Block::Dense(l), Block::Dense(a)) => {
            l.data.copy_from_slice(&a.data);
            if let Some(lr) = lam_r {
                let k = (lr.len() as f64).sqrt() as usize;
                scale_dense_rows(&mut l.data, l.rows, k, lr);
            }
            if let Some(lc) = lam_c {
                let k = (lc.len() as f64).sqrt() as usize;
                scale_dense_cols(&mut l.data, l.rows, k, lc);
            }
            if inflate {
                for d in 0..l.rows {
                    l.data[d + d * l.rows] += 1.0;
                }
            }
        }
        _ => return Err(MixedError::internal(PART, "A and L blocks of incompatible kinds")),
    }
    Ok(())
}

/// c ← c − a aᵀ (the lower triangle of a dense c; whole k×k blocks of a block-diagonal c).
pub fn rank_update(c: &mut Block, a: &Block) -> Result<()> {
    match (c, a) {
        (Block::Diag(c), Block::Sparse(a)) => {
            let (kr, kc) = (a.kr, a.kc);
            for col in 0..a.ncol_levels {
                let range = a.col_blocks(col);
                if range.len() > 1 {
                    return Err(MixedError::internal(PART, "fill-in in a block-diagonal block"));
                }
                for idx in range {
                    let r = a.rowlev[idx] as usize;
                    let blk = a.block(idx);
                    let dst = c.block_mut(r);
                    for j in 0..kr {
                        for i in 0..kr {
                            let mut s = 0.0;
                            for t in 0..kc {
                                s += blk[i + t * kr] * blk[j + t * kr];
                            }
                            dst[i + j * kr] -= s;
                        }
                    }
                }
            }
        }
        (Block::Dense(c), Block::Sparse(a)) => a.syrk_sub_into(&mut c.data),
        (Block::Dense(c), Block::Dense(a)) => dense::syrk_sub_lower_any(&mut c.data, c.rows, &a.data, a.cols),
        _ => return Err(MixedError::internal(PART, "rank update of incompatible kinds")),
    }
    Ok(())
}

/// c ← c − a bᵀ.
pub fn mul_nt_sub(c: &mut Block, a: &Block, b: &Block) -> Result<()> {
    match (c, a, b) {
        (Block::Dense(c), Block::Sparse(a), Block::Sparse(b)) => a.gemm_nt_sub_into(b, &mut c.data),
        (Block::Dense(c), Block::Dense(a), Block::Sparse(b)) => b.dense_nt_sub_into(&a.data, a.rows, &mut c.data),
        (Block::Dense(c), Block::Sparse(a), Block::Dense(b)) => a.nt_dense_sub_into(&b.data, b.rows, &mut c.data),
        (Block::Dense(c), Block::Dense(a), Block::Dense(b)) => dense::gemm_nt_sub_any(&mut c.data, c.rows, c.cols, &a.data, &b.data, a.cols),
        (Block::Sparse(c), Block::Sparse(a), Block::Sparse(b)) => c.gemm_nt_sub_on_pattern(a, b)?,
        _ => return Err(MixedError::internal(PART, "product of incompatible kinds")),
    }
    Ok(())
}

/// c ← c L⁻ᵀ for the lower-triangular factor L of a diagonal block.
pub fn rdiv_lower_t(c: &mut Block, l: &Block) -> Result<()> {
    match (c, l) {
        (Block::Sparse(c), Block::Diag(l)) => c.rdiv_block_diag(l),
        (Block::Dense(c), Block::Diag(l)) => {
            let (k, m) = (l.k, c.rows);
            for lev in 0..l.nblocks {
                dense::rdiv_lower_t(&mut c.data[lev * k * m..(lev + 1) * k * m], m, l.block(lev), k);
            }
        }
        (Block::Dense(c), Block::Dense(l)) => dense::rdiv_lower_t_any(&mut c.data, c.rows, &l.data, l.rows),
        _ => return Err(MixedError::internal(PART, "division of incompatible kinds")),
    }
    Ok(())
}

/// In-place lower Cholesky of a diagonal block; the failing column on a non-positive pivot.
pub fn cholesky(l: &mut Block, work: &mut faer::dyn_stack::MemBuffer) -> std::result::Result<(), usize> {
    match l {
        Block::Diag(d) => {
            let k = d.k;
            for b in 0..d.nblocks {
                let blk = d.block_mut(b);
                dense::chol_lower(blk, k).map_err(|c| b * k + c)?;
                for j in 1..k {
                    for i in 0..j {
                        blk[i + j * k] = 0.0;
                    }
                }
            }
            Ok(())
        }
        Block::Dense(d) => dense::chol_lower_any(&mut d.data, d.rows, work),
        Block::Sparse(_) => Err(0),
    }
}

/// x ← L⁻¹ x for a factored diagonal block.
pub fn solve_lower(l: &Block, x: &mut [f64]) {
    match l {
        Block::Diag(d) => {
            for b in 0..d.nblocks {
                dense::solve_lower(d.block(b), d.k, &mut x[b * d.k..(b + 1) * d.k]);
            }
        }
        Block::Dense(d) => dense::solve_lower(&d.data, d.rows, x),
        Block::Sparse(_) => {}
    }
}

/// x ← L⁻ᵀ x for a factored diagonal block.
pub fn solve_lower_t(l: &Block, x: &mut [f64]) {
    match l {
        Block::Diag(d) => {
            for b in 0..d.nblocks {
                dense::solve_lower_t(d.block(b), d.k, &mut x[b * d.k..(b + 1) * d.k]);
            }
        }
        Block::Dense(d) => dense::solve_lower_t(&d.data, d.rows, x),
        Block::Sparse(_) => {}
    }
}

/// y ← y − B x (a block-diagonal B is used whole, both triangles).
pub fn mul_sub(b: &Block, x: &[f64], y: &mut [f64]) {
    match b {
        Block::Diag(d) => {
            let k = d.k;
            for l in 0..d.nblocks {
                let blk = d.block(l);
                for j in 0..k {
                    let v = x[l * k + j];
                    for i in 0..k {
                        y[l * k + i] -= blk[i + j * k] * v;
                    }
                }
            }
        }
        Block::Sparse(s) => {
            let (kr, kc) = (s.kr, s.kc);
            for col in 0..s.ncol_levels {
                for idx in s.col_blocks(col) {
                    let r = s.rowlev[idx] as usize;
                    let blk = s.block(idx);
                    for t in 0..kc {
                        let v = x[col * kc + t];
                        for a in 0..kr {
                            y[r * kr + a] -= blk[a + t * kr] * v;
                        }
                    }
                }
            }
        }
        Block::Dense(d) => {
            for (j, &v) in x.iter().enumerate().take(d.cols) {
                if v != 0.0 {
                    for (yi, a) in y.iter_mut().zip(&d.data[j * d.rows..(j + 1) * d.rows]) {
                        *yi -= a * v;
                    }
                }
            }
        }
    }
}

/// y ← y − Bᵀ x.
pub fn t_mul_sub(b: &Block, x: &[f64], y: &mut [f64]) {
    match b {
        Block::Diag(d) => {
            let k = d.k;
            for l in 0..d.nblocks {
                let blk = d.block(l);
                for j in 0..k {
                    let mut s = 0.0;
                    for i in 0..k {
                        s += blk[i + j * k] * x[l * k + i];
                    }
                    y[l * k + j] -= s;
                }
            }
        }
        Block::Sparse(s) => {
            let (kr, kc) = (s.kr, s.kc);
            for col in 0..s.ncol_levels {
                for idx in s.col_blocks(col) {
                    let r = s.rowlev[idx] as usize;
                    let blk = s.block(idx);
                    for t in 0..kc {
                        let mut acc = 0.0;
                        for a in 0..kr {
                            acc += blk[a + t * kr] * x[r * kr + a];
                        }
                        y[col * kc + t] -= acc;
                    }
                }
            }
        }
        Block::Dense(d) => {
            for j in 0..d.cols {
                let col = &d.data[j * d.rows..(j + 1) * d.rows];
                y[j] -= col.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
            }
        }
    }
}

/// Σ log of the diagonal of a factored diagonal block.
pub fn log_diag_sum(l: &Block) -> f64 {
    match l {
        Block::Diag(d) => (0..d.nblocks).map(|b| dense::log_diag_sum(d.block(b), d.k, d.k)).sum(),
        Block::Dense(d) => dense::log_diag_sum(&d.data, d.rows, d.rows),
        Block::Sparse(_) => f64::NAN,
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
        let s = BlockSparse::cross_product(5, |o| rc[o] as usize, &zr, 1, 2, |o| cc[o] as usize, &zc, 1, 3, None);
        assert_eq!(s.colptr, vec![0, 1, 2, 4]);
        assert_eq!(s.rowlev, vec![0, 1, 0, 1]);
        assert_eq!(s.values, vec![3.0, 4.0, 5.0, 6.0]);
        assert_eq!(s.find(1, 2), Some(3));
        assert_eq!(s.find(1, 0), None);
        let p = BlockSparse::with_pattern(1, 1, 2, &s.pattern());
        assert_eq!((p.colptr.clone(), p.rowlev.clone()), (s.colptr.clone(), s.rowlev.clone()));
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

    /// Every product kernel against the dense product of the same matrices.
    /// The scalar rank update into a dense block, split over two cores once it has
    /// enough pairs (2¹⁶), against the plain sum over columns.
    #[test]
    fn large_scalar_rank_update_matches_the_plain_sum() {
        let (nrow, ncol) = (400usize, 500usize);
        let cols: Vec<Vec<u32>> = (0..ncol)
            .map(|c| {
                let mut r: Vec<u32> = (0..24).map(|t| ((c * 7 + t * t * 13 + t * 31) % nrow) as u32).collect();
                r.sort_unstable();
                r.dedup();
                r
            })
            .collect();
        let pairs: usize = cols.iter().map(|r| r.len() * (r.len() + 1) / 2).sum();
        assert!(pairs >= 1 << 16);
        let mut a = BlockSparse::with_pattern(1, 1, nrow, &cols);
        a.values.iter_mut().enumerate().for_each(|(i, v)| *v = (i as f64 * 0.53).sin());
        let mut expect = vec![0.0; nrow * nrow];
        for c in 0..ncol {
            for i2 in a.col_blocks(c) {
                for i1 in i2..a.col_blocks(c).end {
                    let (r1, r2) = (a.rowlev[i1] as usize, a.rowlev[i2] as usize);
                    expect[r1 + r2 * nrow] -= a.values[i1] * a.values[i2];
                }
            }
        }
        let mut c = Block::Dense(Dense::zeros(nrow, nrow));
        rank_update(&mut c, &Block::Sparse(a)).unwrap();
        if let Block::Dense(d) = &c {
            for (u, v) in d.data.iter().zip(&expect) {
                assert!((u - v).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn kernels_match_dense_products() {
        let (kr, kc, kb) = (2, 3, 1);
        let a = BlockSparse::with_pattern(kr, kc, 3, &[vec![0, 2], vec![1], vec![], vec![0, 1, 2]]);
        let mut a = a;
        a.values.iter_mut().enumerate().for_each(|(i, v)| *v = (i as f64 * 0.37).sin());
        let mut b = BlockSparse::with_pattern(kb, kc, 2, &[vec![1], vec![0, 1], vec![0], vec![1]]);
        b.values.iter_mut().enumerate().for_each(|(i, v)| *v = (i as f64 * 0.71).cos());
        let dense_of = |blk: &Block| -> Vec<f64> {
            let (r, c) = (blk.rows(), blk.cols());
            (0..c).flat_map(|j| (0..r).map(move |i| (i, j))).map(|(i, j)| blk.get(i, j)).collect()
        };
        let (sa, sb) = (Block::Sparse(a.clone()), Block::Sparse(b.clone()));
        let (da, db) = (dense_of(&sa), dense_of(&sb));
        let (ra, rb, k) = (sa.rows(), sb.rows(), sa.cols());
        let prod = |x: &[f64], xr: usize, y: &[f64], yr: usize| -> Vec<f64> {
            (0..yr).flat_map(|j| (0..xr).map(move |i| (i, j))).map(|(i, j)| (0..k).map(|t| x[i + t * xr] * y[j + t * yr]).sum()).collect()
        };
        let expect = prod(&da, ra, &db, rb);
        let cases: Vec<(Block, Block)> = vec![
            (sa.clone(), sb.clone()),
            (Block::Dense(Dense { rows: ra, cols: k, data: da.clone() }), sb.clone()),
            (sa.clone(), Block::Dense(Dense { rows: rb, cols: k, data: db.clone() })),
            (Block::Dense(Dense { rows: ra, cols: k, data: da.clone() }), Block::Dense(Dense { rows: rb, cols: k, data: db.clone() })),
        ];
        for (x, y) in cases {
            let mut c = Block::Dense(Dense::zeros(ra, rb));
            mul_nt_sub(&mut c, &x, &y).unwrap();
            for (u, v) in dense_of(&c).iter().zip(&expect) {
                assert!((u + v).abs() < 1e-12);
            }
        }
        // the sparse target holds exactly the pairs the product makes
        let pairs: Vec<Vec<u32>> = (0..2u32).map(|cb| {
            let mut rows: Vec<u32> = (0..4).filter(|&c| b.find(cb as usize, c).is_some())
                .flat_map(|c| a.rowlev[a.col_blocks(c)].to_vec()).collect();
            rows.sort_unstable();
            rows.dedup();
            rows
        }).collect();
        let mut c = Block::Sparse(BlockSparse::with_pattern(kr, kb, 3, &pairs));
        mul_nt_sub(&mut c, &sa, &sb).unwrap();
        for (u, v) in dense_of(&c).iter().zip(&expect) {
            assert!((u + v).abs() < 1e-12);
        }
        // rank update: lower triangle of −A Aᵀ
        let expect = prod(&da, ra, &da, ra);
        for x in [sa.clone(), Block::Dense(Dense { rows: ra, cols: k, data: da.clone() })] {
            let mut c = Block::Dense(Dense::zeros(ra, ra));
            rank_update(&mut c, &x).unwrap();
            for j in 0..ra {
                for i in j..ra {
                    assert!((c.get(i, j) + expect[i + j * ra]).abs() < 1e-12);
                }
            }
        }
        // a product that would fill a block-diagonal block is refused
        let mut d = Block::Diag(BlockDiagonal::zeros(kr, 3));
        assert!(rank_update(&mut d, &sa).is_err());
    }
}
