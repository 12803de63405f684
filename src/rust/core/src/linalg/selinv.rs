//! The selected inverse Σ = (L Lᵀ)⁻¹ on the block pattern of L: every entry of the
//! inverse where L has a (symbolic) nonzero, for about the cost of one more
//! factorisation (Takahashi, Fagan and Chen 1973). With Ľ_kj = L_kj L_jj⁻¹, block
//! column j follows from the columns after it:
//!
//!   Σ_ij = −Σ_{k>j} Σ_ik Ľ_kj   (i > j),     Σ_jj = (L_jj L_jjᵀ)⁻¹ − Σ_{k>j} Ľ_kjᵀ Σ_kj,
//!
//! and because L's pattern is closed under fill-in ([`crate::linalg::structure`]) the Σ_ik
//! these need are on the pattern too. A column whose diagonal block is block-diagonal
//! is done level by level on the rows that level reaches; a dense column by dense
//! products. Σ is stored like L (dense diagonal blocks whole, both triangles).
use crate::linalg::blocks::Block;
use crate::linalg::dense;
use crate::linalg::tri;
use crate::error::{MixedError, Result};

/// The part of the engine named in this module's broken-invariant errors.
const PART: &str = "the selected inverse";

/// Scratch reused across levels and calls.
#[derive(Default)]
pub struct Workspace {
    /// For each block row after the column: the rows the level reaches.
    rows: Vec<Vec<usize>>,
    /// Ľ[R, level], row-major (|R| × k).
    lr: Vec<f64>,
    srr: Vec<f64>,
    sr: Vec<f64>,
    inv: Vec<f64>,
    /// Ľ_ij of a dense column, by block row.
    lhat: Vec<Vec<f64>>,
    /// A column panel for the in-place (L Lᵀ)⁻¹ of a dense diagonal block.
    panel: Vec<f64>,
}

/// Σ for the factor `l` (lower triangle of `nb` block rows, block (i, j) at i(i+1)/2 + j),
/// written into `sigma` (allocated like `l` on first use).
pub fn selected_inverse(l: &[&Block], nb: usize, sigma: &mut Vec<Block>, ws: &mut Workspace) -> Result<()> {
    selected_inverse_from(l, nb, 0, &[], sigma, ws)
}

/// [`selected_inverse`] of block columns `from..nb` only (Σ's blocks in earlier columns
/// are left as they were): what [`first_column_block_sum`] needs.
///
/// `moved[j]` says the caller moved the dense factor block L_jj into `sigma[tri(j, j)]`
/// (and `l[tri(j, j)]` is not read): Σ_jj is then formed over it in place, so the
/// largest dense block is held once, not twice.
pub fn selected_inverse_from(l: &[&Block], nb: usize, from: usize, moved: &[bool], sigma: &mut Vec<Block>, ws: &mut Workspace) -> Result<()> {
    let is_moved = |j: usize| moved.get(j).copied().unwrap_or(false);
    sigma.resize_with(l.len(), Block::default);
    for i in from..nb {
        for j in from..=i {
            let (b, s) = (l[tri(i, j)], &mut sigma[tri(i, j)]);
            if !(i == j && is_moved(j)) && (s.len() != b.len() || s.rows() != b.rows()) {
                *s = b.zeros_like();
            }
        }
    }
    // rows of each block row (a moved L_jj is read where it now sits)
    let dims: Vec<usize> = (0..nb).map(|i| if is_moved(i) { sigma[tri(i, i)].rows() } else { l[tri(i, i)].rows() }).collect();
    for j in (from..nb).rev() {
        if is_moved(j) {
            dense_column(l, &dims, j, true, sigma, ws)?;
            continue;
        }
        match l[tri(j, j)] {
            Block::Dense(_) => dense_column(l, &dims, j, false, sigma, ws)?,
            Block::Diag(_) => level_column(l, nb, j, sigma, ws)?,
            Block::Sparse(_) => return Err(MixedError::internal(PART, "sparse diagonal block")),
        }
    }
    Ok(())
}

fn dense_of(b: &Block) -> Result<&crate::linalg::blocks::Dense> {
    b.as_dense().ok_or_else(|| MixedError::internal(PART, "a block of a dense column is not dense"))
}

/// Column j when L_jj is dense: then so is every block below it and every Σ_ik with
/// i, k > j, and the recurrence is a handful of dense products. With `in_place`, L_jj
/// sits in `sigma[tri(j, j)]` and Σ_jj replaces it there.
fn dense_column(l: &[&Block], dims: &[usize], j: usize, in_place: bool, sigma: &mut [Block], ws: &mut Workspace) -> Result<()> {
    let mut sjj = std::mem::take(&mut sigma[tri(j, j)]);
    let res = dense_column_with(l, dims, j, in_place, &mut sjj, sigma, ws);
    sigma[tri(j, j)] = sjj;
    res
}

/// [`dense_column`] with Σ_jj's block (holding L_jj when `in_place`) taken out of `sigma`;
/// `dims` are the rows of each block row.
fn dense_column_with(l: &[&Block], dims: &[usize], j: usize, in_place: bool, sjj: &mut Block, sigma: &mut [Block], ws: &mut Workspace) -> Result<()> {
    let nb = dims.len();
    let ljj = if in_place { dense_of(sjj)? } else { dense_of(l[tri(j, j)])? };
    let nj = ljj.rows;
    // Ľ_ij = L_ij L_jj⁻¹
    ws.lhat.resize(nb, Vec::new());
    for i in j + 1..nb {
        let lij = dense_of(l[tri(i, j)])?;
        let buf = &mut ws.lhat[i];
        buf.clear();
        buf.extend_from_slice(&lij.data);
        dense::rdiv_lower_any(buf, lij.rows, &ljj.data, nj);
    }
    for i in j + 1..nb {
        let ri = dims[i];
        let mut sij = std::mem::take(&mut sigma[tri(i, j)]);
        let res = (|| -> Result<()> {
            let out = match &mut sij {
                Block::Dense(d) => d,
                _ => return Err(MixedError::internal(PART, "Σ_ij of a dense column is not dense")),
            };
            out.data.iter_mut().for_each(|x| *x = 0.0);
            for k in j + 1..nb {
                let rk = dims[k];
                let lk = &ws.lhat[k];
                if i >= k {
                    let sik = dense_of(&sigma[tri(i, k)])?;
                    dense::gemm(&mut out.data, ri, nj, -1.0, &sik.data, false, lk, false, rk, 1.0);
                } else {
                    let ski = dense_of(&sigma[tri(k, i)])?;
                    dense::gemm(&mut out.data, ri, nj, -1.0, &ski.data, true, lk, false, rk, 1.0);
                }
            }
            Ok(())
        })();
        sigma[tri(i, j)] = sij;
        res?;
    }
    // Σ_jj = (L_jj L_jjᵀ)⁻¹ − Σ_{k>j} Ľ_kjᵀ Σ_kj
    if in_place {
        let out = sjj.as_dense_mut().ok_or_else(|| MixedError::internal(PART, "L_jj moved into Σ is not dense"))?;
        dense::llt_inverse_in_place(&mut out.data, nj, &mut ws.panel);
    } else {
        let ljj = dense_of(l[tri(j, j)])?;
        let out = sjj.as_dense_mut().ok_or_else(|| MixedError::internal(PART, "Σ_jj of a dense column is not dense"))?;
        dense::llt_inverse(&ljj.data, nj, &mut out.data);
    }
    let out = sjj.as_dense_mut().ok_or_else(|| MixedError::internal(PART, "Σ_jj of a dense column is not dense"))?;
    for k in j + 1..nb {
        let rk = dims[k];
        let skj = dense_of(&sigma[tri(k, j)])?;
        dense::gemm(&mut out.data, nj, nj, -1.0, &ws.lhat[k], true, &skj.data, false, rk, 1.0);
    }
    Ok(())
}

/// Column j when L_jj is block-diagonal: level by level, on the rows R the level's
/// columns reach in the blocks below, Σ[R, l] = −Σ[R, R] Ľ[R, l].
fn level_column(l: &[&Block], nb: usize, j: usize, sigma: &mut [Block], ws: &mut Workspace) -> Result<()> {
    let ljj = match l[tri(j, j)] {
        Block::Diag(d) => d,
        _ => return Err(MixedError::internal(PART, "expected a block-diagonal block")),
    };
    let k = ljj.k;
    ws.rows.resize_with(nb, Vec::new);
    for lev in 0..ljj.nblocks {
        let nr = level_rows(l, nb, j, lev, &mut ws.rows, &mut ws.lr)?;
        let lblk = ljj.block(lev);
        gather_sym(sigma, nb, j, &ws.rows, nr, &mut ws.srr)?;
        // Σ[R, l] = −Σ[R, R] Ľ[R, l]   (nr × k, column-major)
        ws.sr.clear();
        ws.sr.resize(nr * k, 0.0);
        for c in 0..k {
            let col = &mut ws.sr[c * nr..(c + 1) * nr];
            for b in 0..nr {
                let v = ws.lr[b * k + c];
                if v != 0.0 {
                    for (x, s) in col.iter_mut().zip(&ws.srr[b * nr..(b + 1) * nr]) {
                        *x -= s * v;
                    }
                }
            }
        }
        // Σ_jj(l) = (L Lᵀ)⁻¹ − Ľᵀ Σ[R, l]
        ws.inv.resize(k * k, 0.0);
        dense::llt_inverse(lblk, k, &mut ws.inv);
        for c2 in 0..k {
            for c1 in 0..k {
                let s: f64 = (0..nr).map(|r| ws.lr[r * k + c1] * ws.sr[r + c2 * nr]).sum();
                ws.inv[c1 + c2 * k] -= s;
            }
        }
        match &mut sigma[tri(j, j)] {
            Block::Diag(d) => d.block_mut(lev).copy_from_slice(&ws.inv),
            _ => return Err(MixedError::internal(PART, "Σ_jj is not block-diagonal")),
        }
        // scatter Σ[R, l] where L has its entries
        let mut off = 0;
        for i in j + 1..nb {
            let rows = &ws.rows[i];
            match &mut sigma[tri(i, j)] {
                Block::Sparse(s) => {
                    let (kr, bs) = (s.kr, s.kr * s.kc);
                    for (a, &r) in rows.iter().enumerate() {
                        let idx = s.find(r / kr, lev).ok_or_else(|| MixedError::internal(PART, "row outside Σ's pattern"))?;
                        for c in 0..k {
                            s.values[idx * bs + r % kr + c * kr] = ws.sr[off + a + c * nr];
                        }
                    }
                }
                Block::Dense(d) => {
                    for c in 0..k {
                        let dst = &mut d.data[(lev * k + c) * d.rows..(lev * k + c + 1) * d.rows];
                        dst.copy_from_slice(&ws.sr[off + c * nr..off + c * nr + rows.len()]);
                    }
                }
                Block::Diag(_) => return Err(MixedError::internal(PART, "block-diagonal block below the diagonal")),
            }
            off += rows.len();
        }
    }
    Ok(())
}

/// Σ_l Σ_00(l), the sum over levels of the diagonal blocks of Σ in block column 0
/// (block-diagonal L_00), from Σ of the columns after it (see
/// [`selected_inverse_from`] with `from` = 1). Per level, on the rows R it reaches,
/// Σ_00(l) = (L_ll L_llᵀ)⁻¹ + Ľ[R,l]ᵀ Σ[R,R] Ľ[R,l]: a quadratic form read straight
/// from Σ's blocks, without Σ[R, l] (which the full recurrence also scatters back).
/// For a gradient that needs only these sums (k×k, column-major) this skips the
/// costliest column: one per level of the largest factor.
pub fn first_column_block_sum(l: &[&Block], nb: usize, sigma: &[Block], ws: &mut Workspace) -> Result<Vec<f64>> {
    let l00 = match l[0] {
        Block::Diag(d) => d,
        _ => return Err(MixedError::internal(PART, "expected a block-diagonal first block")),
    };
    let k = l00.k;
    let mut sum = vec![0.0; k * k];
    // pairs of block rows where every level reaches every row of one of them (a dense
    // block of L, such as X's rows) are summed over the levels at once
    let at_once = |i1: usize, i2: usize| {
        k == 1 && (matches!(l[tri(i1, 0)], Block::Dense(_)) || matches!(l[tri(i2, 0)], Block::Dense(_))) && matches!(sigma[tri(i1, i2)], Block::Dense(_))
    };
    if k == 1 {
        sum[0] += dense_row_pairs(l, nb, sigma, &at_once)?;
    }
    // the levels in two halves, one per core (each level only reads Σ), when there
    // are enough of them to pay for waking a thread
    let nlev = l00.nblocks;
    if nlev < 1024 {
        let a = level_sums(l, nb, sigma, 0..nlev, &at_once, &mut ws.rows, &mut ws.lr)?;
        sum.iter_mut().zip(&a).for_each(|(s, x)| *s += x);
        return Ok(sum);
    }
    let (a, b) = rayon::join(
        || level_sums(l, nb, sigma, 0..nlev / 2, &at_once, &mut ws.rows, &mut ws.lr),
        || level_sums(l, nb, sigma, nlev / 2..nlev, &at_once, &mut Vec::new(), &mut Vec::new()),
    );
    for (s, (x, y)) in sum.iter_mut().zip(a?.iter().zip(&b?)) {
        *s += x + y;
    }
    Ok(sum)
}

/// Σ over the levels in `levels` of (L_ll L_llᵀ)⁻¹ + Ľ[R,l]ᵀ Σ[R,R] Ľ[R,l], without the
/// block pairs `at_once` takes.
fn level_sums(
    l: &[&Block],
    nb: usize,
    sigma: &[Block],
    levels: std::ops::Range<usize>,
    at_once: &(dyn Fn(usize, usize) -> bool + Sync),
    rows: &mut Vec<Vec<usize>>,
    lr: &mut Vec<f64>,
) -> Result<Vec<f64>> {
    let l00 = match l[0] {
        Block::Diag(d) => d,
        _ => return Err(MixedError::internal(PART, "expected a block-diagonal first block")),
    };
    let k = l00.k;
    let mut sum = vec![0.0; k * k];
    let mut inv = vec![0.0; k * k];
    for lev in levels {
        level_rows(l, nb, 0, lev, rows, lr)?;
        dense::llt_inverse(l00.block(lev), k, &mut inv);
        sum.iter_mut().zip(&inv).for_each(|(s, v)| *s += v);
        let mut off1 = 0;
        for i1 in 1..nb {
            let r1 = &rows[i1];
            let mut off2 = 0;
            for i2 in 1..=i1 {
                let r2 = &rows[i2];
                if !at_once(i1, i2) {
                    let v1 = &lr[off1 * k..(off1 + r1.len()) * k];
                    let v2 = &lr[off2 * k..(off2 + r2.len()) * k];
                    quadratic_add(&sigma[tri(i1, i2)], r1, r2, i1 == i2, v1, v2, k, &mut sum)?;
                }
                off2 += r2.len();
            }
            off1 += r1.len();
        }
    }
    Ok(sum)
}

/// For a scalar first term (L_00 diagonal, entries d_l): the part of
/// Σ_l Ľ[R,l]ᵀ Σ[R,R] Ľ[R,l] from the block pairs `at_once` picks, each as one inner
/// product ⟨Σ_ab, Σ_l L_a[:,l] L_b[:,l]ᵀ / d_l²⟩ (twice for a ≠ b, which Σ[R,R] holds
/// in both triangles). With X's p dense rows this replaces p² + p·|R| reads per level
/// by one product.
fn dense_row_pairs(l: &[&Block], nb: usize, sigma: &[Block], at_once: &(dyn Fn(usize, usize) -> bool + Sync)) -> Result<f64> {
    let d = match l[0] {
        Block::Diag(d) if d.k == 1 => &d.data,
        _ => return Err(MixedError::internal(PART, "expected a diagonal first block")),
    };
    let nlev = d.len();
    // L_a[:, l] / d_l², for the dense blocks of column 0
    let scaled: Vec<Option<Vec<f64>>> = (0..nb)
        .map(|i| match l[tri(i, 0)] {
            Block::Dense(a) if i > 0 && a.rows > 0 => {
                let mut v = a.data.clone();
                for (lev, col) in v.chunks_exact_mut(a.rows).enumerate() {
                    let s = 1.0 / (d[lev] * d[lev]);
                    col.iter_mut().for_each(|x| *x *= s);
                }
                Some(v)
            }
            _ => None,
        })
        .collect();
    let mut total = 0.0;
    let mut g = Vec::new();
    for i1 in 1..nb {
        for i2 in 1..=i1 {
            if !at_once(i1, i2) {
                continue;
            }
            let sig = dense_of(&sigma[tri(i1, i2)])?;
            let (m, n) = (sig.rows, sig.cols);
            if m == 0 || n == 0 {
                continue;
            }
            g.clear();
            g.resize(m * n, 0.0);
            match (l[tri(i1, 0)], l[tri(i2, 0)]) {
                (Block::Dense(_), Block::Dense(b)) => {
                    let va = scaled[i1].as_ref().ok_or_else(|| MixedError::internal(PART, "missing scaled rows"))?;
                    dense::gemm(&mut g, m, n, 1.0, va, false, &b.data, true, nlev, 0.0);
                }
                (Block::Dense(_), Block::Sparse(sp)) => {
                    // G[:, r] += L_b[r, l] · L_a[:, l] / d_l²
                    let va = scaled[i1].as_ref().ok_or_else(|| MixedError::internal(PART, "missing scaled rows"))?;
                    for lev in 0..nlev {
                        let col = &va[lev * m..(lev + 1) * m];
                        for idx in sp.col_blocks(lev) {
                            // a kr×1 block: rows rowlev·kr + a
                            for (a, &v) in sp.block(idx).iter().enumerate() {
                                let r = sp.rowlev[idx] as usize * sp.kr + a;
                                g[r * m..(r + 1) * m].iter_mut().zip(col).for_each(|(x, y)| *x += v * y);
                            }
                        }
                    }
                }
                (Block::Sparse(sp), Block::Dense(_)) => {
                    // G[r, :] += L_a[r, l] · L_b[:, l]ᵀ / d_l²
                    let vb = scaled[i2].as_ref().ok_or_else(|| MixedError::internal(PART, "missing scaled rows"))?;
                    for lev in 0..nlev {
                        let col = &vb[lev * n..(lev + 1) * n];
                        for idx in sp.col_blocks(lev) {
                            for (a, &v) in sp.block(idx).iter().enumerate() {
                                let r = sp.rowlev[idx] as usize * sp.kr + a;
                                for (c, y) in col.iter().enumerate() {
                                    g[r + c * m] += v * y;
                                }
                            }
                        }
                    }
                }
                _ => return Err(MixedError::internal(PART, "a pair summed at once has no dense block")),
            }
            let dot: f64 = sig.data.iter().zip(&g).map(|(a, b)| a * b).sum();
            total += if i1 == i2 { dot } else { 2.0 * dot };
        }
    }
    Ok(total)
}

/// q += v1ᵀ Σ[r1, r2] v2 + (its transpose unless `same`, the block being then a
/// diagonal block of Σ with r1 = r2, read on its lower triangle). v1, v2 row-major
/// (|r| × k), q k×k column-major.
#[allow(clippy::too_many_arguments)]
fn quadratic_add(blk: &Block, r1: &[usize], r2: &[usize], same: bool, v1: &[f64], v2: &[f64], k: usize, q: &mut [f64]) -> Result<()> {
    // one entry s = Σ[r1[a], r2[b]]; off the diagonal of a `same` block it stands for two
    let mut add = |a: usize, b: usize, s: f64| {
        if s == 0.0 {
            return;
        }
        let (x, y) = (&v1[a * k..(a + 1) * k], &v2[b * k..(b + 1) * k]);
        let twice = !same || a != b;
        for c2 in 0..k {
            for c1 in 0..k {
                let mut t = x[c1] * y[c2];
                if twice {
                    t += y[c1] * x[c2];
                }
                q[c1 + c2 * k] += s * t;
            }
        }
    };
    match blk {
        Block::Dense(d) => {
            // per column of Σ: w = Σ[r1, c]ᵀ v1 (k values), then two rank-one updates
            let mut w = [0.0f64; 8];
            let mut wv = vec![0.0; if k > 8 { k } else { 0 }];
            let w = if k > 8 { &mut wv[..] } else { &mut w[..k] };
            for (b, &c) in r2.iter().enumerate() {
                let col = &d.data[c * d.rows..(c + 1) * d.rows];
                let from = if same { b + 1 } else { 0 };
                w.iter_mut().for_each(|x| *x = 0.0);
                if k == 1 {
                    w[0] = r1[from..].iter().zip(&v1[from..]).map(|(&r, v)| col[r] * v).sum();
                } else {
                    for (a, &r) in r1.iter().enumerate().skip(from) {
                        let s = col[r];
                        w.iter_mut().zip(&v1[a * k..(a + 1) * k]).for_each(|(x, v)| *x += s * v);
                    }
                }
                let y = &v2[b * k..(b + 1) * k];
                for c2 in 0..k {
                    for c1 in 0..k {
                        q[c1 + c2 * k] += w[c1] * y[c2] + y[c1] * w[c2];
                    }
                }
                if same {
                    let s = col[r1[b]];
                    for c2 in 0..k {
                        for c1 in 0..k {
                            q[c1 + c2 * k] += s * y[c1] * y[c2];
                        }
                    }
                }
            }
        }
        Block::Diag(d) => {
            let kd = d.k;
            for (b, &c) in r2.iter().enumerate() {
                for (a, &r) in r1.iter().enumerate() {
                    if r / kd == c / kd && (!same || a >= b) {
                        add(a, b, d.block(r / kd)[r % kd + (c % kd) * kd]);
                    }
                }
            }
        }
        Block::Sparse(sp) => {
            let (kr, kc) = (sp.kr, sp.kc);
            for (b, &c) in r2.iter().enumerate() {
                for (a, &r) in r1.iter().enumerate() {
                    if same && a < b {
                        continue;
                    }
                    let idx = sp.find(r / kr, c / kc).ok_or_else(|| MixedError::internal(PART, "pair outside Σ's pattern"))?;
                    add(a, b, sp.block(idx)[r % kr + (c % kc) * kr]);
                }
            }
        }
    }
    Ok(())
}

/// The rows level `lev` of block column j (block-diagonal L_jj) reaches in each later
/// block row (`rows[i]`), and Ľ = L[R, lev] L_jj(lev)⁻¹ on them, row-major |R| × k into
/// `lr`. Returns |R|.
pub(crate) fn level_rows(l: &[&Block], nb: usize, j: usize, lev: usize, rows: &mut Vec<Vec<usize>>, lr: &mut Vec<f64>) -> Result<usize> {
    let ljj = match l[tri(j, j)] {
        Block::Diag(d) => d,
        _ => return Err(MixedError::internal(PART, "expected a block-diagonal block")),
    };
    let k = ljj.k;
    rows.resize_with(nb, Vec::new);
    lr.clear();
    for i in j + 1..nb {
        let r_i = &mut rows[i];
        r_i.clear();
        match l[tri(i, j)] {
            Block::Sparse(s) => {
                for idx in s.col_blocks(lev) {
                    let r = s.rowlev[idx] as usize;
                    let blk = s.block(idx);
                    for a in 0..s.kr {
                        r_i.push(r * s.kr + a);
                        lr.extend((0..k).map(|c| blk[a + c * s.kr]));
                    }
                }
            }
            Block::Dense(d) => {
                for row in 0..d.rows {
                    r_i.push(row);
                    lr.extend((0..k).map(|c| d.data[row + (lev * k + c) * d.rows]));
                }
            }
            Block::Diag(_) => return Err(MixedError::internal(PART, "block-diagonal block below the diagonal")),
        }
    }
    let lblk = ljj.block(lev);
    for row in lr.chunks_exact_mut(k) {
        // x L = row  ⇔  Lᵀ xᵀ = rowᵀ
        dense::solve_lower_t(lblk, k, row);
    }
    Ok(lr.len() / k.max(1))
}

/// Σ[R, R] (symmetric, nr × nr) for the rows R of the blocks after column j.
pub(crate) fn gather_sym(sigma: &[Block], nb: usize, j: usize, rows: &[Vec<usize>], nr: usize, srr: &mut Vec<f64>) -> Result<()> {
    srr.resize(nr * nr, 0.0);
    let mut off1 = 0;
    for i1 in j + 1..nb {
        let mut off2 = 0;
        for i2 in j + 1..=i1 {
            gather(&sigma[tri(i1, i2)], &rows[i1], &rows[i2], i1 == i2, srr, nr, off1, off2)?;
            off2 += rows[i2].len();
        }
        off1 += rows[i1].len();
    }
    for b in 0..nr {
        for a in 0..b {
            srr[a + b * nr] = srr[b + a * nr];
        }
    }
    Ok(())
}

/// Σ at rows r1 × rows r2 of one block of Σ into srr at (off1, off2) (leading dimension
/// ld). With `lower` (a diagonal block, r1 = r2, ascending) only the lower triangle.
#[allow(clippy::too_many_arguments)]
fn gather(blk: &Block, r1: &[usize], r2: &[usize], lower: bool, srr: &mut [f64], ld: usize, off1: usize, off2: usize) -> Result<()> {
    match blk {
        Block::Dense(d) => {
            for (b, &c) in r2.iter().enumerate() {
                let col = &d.data[c * d.rows..(c + 1) * d.rows];
                let from = if lower { b } else { 0 };
                let dst = &mut srr[off1 + from + (off2 + b) * ld..off1 + (off2 + b) * ld + r1.len()];
                for (x, &r) in dst.iter_mut().zip(&r1[from..]) {
                    *x = col[r];
                }
            }
        }
        Block::Diag(d) => {
            let k = d.k;
            for (b, &c) in r2.iter().enumerate() {
                for (a, &r) in r1.iter().enumerate() {
                    srr[off1 + a + (off2 + b) * ld] = if r / k == c / k { d.block(r / k)[r % k + (c % k) * k] } else { 0.0 };
                }
            }
        }
        Block::Sparse(s) => {
            let (kr, kc) = (s.kr, s.kc);
            for (b, &c) in r2.iter().enumerate() {
                for (a, &r) in r1.iter().enumerate() {
                    let idx = s.find(r / kr, c / kc).ok_or_else(|| MixedError::internal(PART, "pair outside Σ's pattern"))?;
                    srr[off1 + a + (off2 + b) * ld] = s.block(idx)[r % kr + (c % kc) * kr];
                }
            }
        }
    }
    Ok(())
}
