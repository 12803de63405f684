//! Dense column-major kernels on raw slices.
//!
//! All dense linear algebra of the blocked Cholesky goes through this module, so that
//! the backend is chosen in one place: plain loops for small blocks, faer for blocks
//! of at least [`FAER_MIN`] rows (measured on this machine's 2 cores: faer's Cholesky is
//! 2.5× faster at n = 300 and 5–6.6× at n = 1128, and no faster at n = 128).
//! Every kernel works in place; faer's workspace is allocated once per model.
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch, LltRegularization};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::linalg::matmul::triangular::BlockStructure;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, MatMut, MatRef, Par};

/// Blocks with at least this many rows go to faer.
pub const FAER_MIN: usize = 256;

fn par_for(n: usize) -> Par {
    if n >= 512 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// faer's workspace for Cholesky factors up to `n` rows.
pub fn chol_workspace(n: usize) -> MemBuffer {
    if n >= FAER_MIN {
        MemBuffer::new(cholesky_in_place_scratch::<f64>(n, par_for(n), Default::default()))
    } else {
        MemBuffer::new(faer::dyn_stack::StackReq::EMPTY)
    }
}

/// [`chol_lower`] for any size: faer from [`FAER_MIN`] rows on. Only the lower
/// triangle is read; the strict upper triangle is zeroed first, so faer sees a clean matrix.
pub fn chol_lower_any(a: &mut [f64], n: usize, work: &mut MemBuffer) -> Result<(), usize> {
    if n < FAER_MIN {
        return chol_lower(a, n);
    }
    for j in 1..n {
        for x in &mut a[j * n..j * n + j] {
            *x = 0.0;
        }
    }
    let m = MatMut::from_column_major_slice_mut(a, n, n);
    let par = par_for(n);
    cholesky_in_place(m, LltRegularization::default(), par, MemStack::new(work), Default::default())
        .map(|_| ())
        .map_err(|e| match e {
            faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => index,
        })
}

/// [`rdiv_lower_t`] for any size: faer's triangular solve from [`FAER_MIN`] columns on.
pub fn rdiv_lower_t_any(b: &mut [f64], m: usize, l: &[f64], n: usize) {
    if n < FAER_MIN || m == 0 {
        return rdiv_lower_t(b, m, l, n);
    }
    // B L⁻ᵀ = (L⁻¹ Bᵀ)ᵀ: solve on the transposed view of B
    let lm = MatRef::from_column_major_slice(l, n, n);
    let bt = MatMut::from_column_major_slice_mut(b, m, n).transpose_mut();
    solve_lower_triangular_in_place(lm, bt, par_for(n));
}

/// [`syrk_sub_lower`] for any size: faer's triangular product once the work is large.
pub fn syrk_sub_lower_any(c: &mut [f64], n: usize, a: &[f64], k: usize) {
    if n < FAER_MIN || n * n * k < (1 << 21) {
        return syrk_sub_lower(c, n, a, k);
    }
    let am = MatRef::from_column_major_slice(a, n, k);
    let cm = MatMut::from_column_major_slice_mut(c, n, n);
    faer::linalg::matmul::triangular::matmul(
        cm,
        BlockStructure::TriangularLower,
        Accum::Add,
        am,
        BlockStructure::Rectangular,
        am.transpose(),
        BlockStructure::Rectangular,
        -1.0,
        par_for(n),
    );
}

/// [`gemm_nt_sub`] for any size: faer's product once the work is large.
pub fn gemm_nt_sub_any(c: &mut [f64], m: usize, n: usize, a: &[f64], b: &[f64], k: usize) {
    if m * n * k < (1 << 21) {
        return gemm_nt_sub(c, m, n, a, b, k);
    }
    gemm(c, m, n, -1.0, a, false, b, true, k, 1.0);
}

/// C ← β C + α op(A) op(B) for column-major C (m×n); op transposes when asked. A is
/// m×k (k×m when transposed), B k×n (n×k when transposed).
#[allow(clippy::too_many_arguments)]
pub fn gemm(c: &mut [f64], m: usize, n: usize, alpha: f64, a: &[f64], at: bool, b: &[f64], bt: bool, k: usize, beta: f64) {
    if m == 0 || n == 0 {
        return;
    }
    if beta != 1.0 {
        c.iter_mut().for_each(|x| *x *= beta);
    }
    if k == 0 {
        return;
    }
    let am = if at { MatRef::from_column_major_slice(a, k, m).transpose() } else { MatRef::from_column_major_slice(a, m, k) };
    let bm = if bt { MatRef::from_column_major_slice(b, n, k).transpose() } else { MatRef::from_column_major_slice(b, k, n) };
    let cm = MatMut::from_column_major_slice_mut(c, m, n);
    let par = if m * n * k >= (1 << 24) { Par::rayon(0) } else { Par::Seq };
    faer::linalg::matmul::matmul(cm, Accum::Add, am, bm, alpha, par);
}

/// (L Lᵀ)⁻¹ for lower-triangular L (n×n), written whole (both triangles) into `out`,
/// with no n×n temporary.
pub fn llt_inverse(l: &[f64], n: usize, out: &mut [f64]) {
    if n == 1 {
        out[0] = 1.0 / (l[0] * l[0]);
        return;
    }
    if n < 64 {
        // W = L⁻¹ in the lower triangle (column by column), then WᵀW: the off-diagonal
        // products go to the (still unused) upper triangle, the diagonal last
        out.iter_mut().for_each(|x| *x = 0.0);
        for c in 0..n {
            out[c + c * n] = 1.0;
            for j in c..n {
                let v = out[j + c * n] / l[j + j * n];
                out[j + c * n] = v;
                for i in j + 1..n {
                    out[i + c * n] -= l[i + j * n] * v;
                }
            }
        }
        for j in 0..n {
            for i in j + 1..n {
                out[j + i * n] = (i..n).map(|r| out[r + i * n] * out[r + j * n]).sum();
            }
        }
        let mut diag = [0.0f64; 64];
        for (i, d) in diag.iter_mut().enumerate().take(n) {
            *d = (i..n).map(|r| out[r + i * n] * out[r + i * n]).sum();
        }
        for j in 0..n {
            out[j + j * n] = diag[j];
            for i in j + 1..n {
                out[i + j * n] = out[j + i * n];
            }
        }
        return;
    }
    out.copy_from_slice(l);
    llt_inverse_in_place(out, n, &mut Vec::new());
}

/// (L Lᵀ)⁻¹ written over the lower-triangular L (n×n, column-major), both triangles,
/// with no scratch of L's size: W = L⁻¹ in place, then WᵀW in place (`scratch` holds a
/// panel of at most n/2 × 128; reuse it across calls). The selected inverse of a large
/// dense block is formed this way in the factor's own storage.
pub fn llt_inverse_in_place(a: &mut [f64], n: usize, scratch: &mut Vec<f64>) {
    if n == 0 {
        return;
    }
    invert_lower_in_place(MatMut::from_column_major_slice_mut(a, n, n), scratch);
    lauum(MatMut::from_column_major_slice_mut(a, n, n), scratch);
    for j in 0..n {
        for i in j + 1..n {
            a[j + i * n] = a[i + j * n];
        }
    }
}

/// W ← W⁻¹ for lower-triangular W, on its lower triangle. With W = [A 0; B C],
/// W⁻¹ = [A⁻¹ 0; −C⁻¹BA⁻¹ C⁻¹]: A is inverted first (recursively), B multiplied by −A⁻¹
/// a panel of rows at a time through `scratch`, then solved against C while C is still
/// the factor, and C inverted last. At n = 1128 on 2 cores: 8.8 ms (median), against
/// 7.5 for faer's out-of-place inverse, which needs a second n×n buffer.
fn invert_lower_in_place(mut w: MatMut<'_, f64>, scratch: &mut Vec<f64>) {
    let k = w.nrows();
    if k <= 32 {
        // LAPACK's trti2 order: column j from the already inverted columns after it
        for j in (0..k).rev() {
            let d = 1.0 / w[(j, j)];
            w[(j, j)] = d;
            for i in (j + 1..k).rev() {
                let s: f64 = (j + 1..=i).map(|m| w[(i, m)] * w[(m, j)]).sum();
                w[(i, j)] = -s * d;
            }
        }
        return;
    }
    let par = par_for(k);
    let k1 = (k / 2).div_ceil(8) * 8;
    let (top, bottom) = w.split_at_row_mut(k1);
    let (mut a, _) = top.split_at_col_mut(k1);
    let (mut b, mut c) = bottom.split_at_col_mut(k1);
    invert_lower_in_place(a.rb_mut(), scratch);
    // B ← −B A⁻¹, a panel of B's rows at a time (rows of a right product are independent)
    const PANEL: usize = 128;
    let nr = b.nrows();
    if scratch.len() < PANEL.min(nr) * k1 {
        scratch.resize(PANEL.min(nr) * k1, 0.0);
    }
    for r0 in (0..nr).step_by(PANEL) {
        let h = PANEL.min(nr - r0);
        let mut copy = MatMut::from_column_major_slice_mut(&mut scratch[..h * k1], h, k1);
        let mut rows = b.rb_mut().subrows_mut(r0, h);
        copy.copy_from(rows.rb());
        faer::linalg::matmul::triangular::matmul(
            rows.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            copy.rb(),
            BlockStructure::Rectangular,
            a.rb(),
            BlockStructure::TriangularLower,
            -1.0,
            par,
        );
    }
    solve_lower_triangular_in_place(c.rb(), b.rb_mut(), par);
    invert_lower_in_place(c.rb_mut(), scratch);
}

/// W ← WᵀW on the lower triangle, in place, for lower-triangular W: a recursive
/// `lauum`. With W = [W₁₁ 0; W₂₁ W₂₂], WᵀW = [W₁₁ᵀW₁₁ + W₂₁ᵀW₂₁, ·; W₂₂ᵀW₂₁, W₂₂ᵀW₂₂]:
/// a symmetric rank update, a triangular product by column panels
/// ([`lower_t_mul_in_place`]) and two halves. At n = 1128 on 2 cores: 9 ms (median),
/// against 7 for a version that copied W₂₁ whole (n²/4 scratch).
fn lauum(mut w: MatMut<'_, f64>, scratch: &mut Vec<f64>) {
    let k = w.nrows();
    if k <= 32 {
        // column c of the result needs columns ≥ c and rows ≥ r of W, which are still W
        for c in 0..k {
            for r in c..k {
                let s: f64 = (r..k).map(|m| w[(m, r)] * w[(m, c)]).sum();
                w[(r, c)] = s;
            }
        }
        return;
    }
    let par = par_for(k);
    let k1 = (k / 2).div_ceil(8) * 8;
    let (top, bottom) = w.rb_mut().split_at_row_mut(k1);
    let (mut w11, _) = top.split_at_col_mut(k1);
    let (mut w21, mut w22) = bottom.split_at_col_mut(k1);
    lauum(w11.rb_mut(), scratch);
    faer::linalg::matmul::triangular::matmul(
        w11.rb_mut(),
        BlockStructure::TriangularLower,
        Accum::Add,
        w21.rb().transpose(),
        BlockStructure::Rectangular,
        w21.rb(),
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    lower_t_mul_in_place(w22.rb(), w21.rb_mut(), scratch);
    lauum(w22.rb_mut(), scratch);
}

/// X ← TᵀX for lower-triangular T (k×k), a panel of columns at a time: each panel is
/// copied to `scratch` (k × 128 at most) and multiplied back by faer.
fn lower_t_mul_in_place(t: MatRef<'_, f64>, mut x: MatMut<'_, f64>, scratch: &mut Vec<f64>) {
    const PANEL: usize = 128;
    let (k, nc) = (t.nrows(), x.ncols());
    if k == 0 || nc == 0 {
        return;
    }
    let par = if k * k * PANEL.min(nc) >= (1 << 22) { Par::rayon(0) } else { Par::Seq };
    if scratch.len() < k * PANEL.min(nc) {
        scratch.resize(k * PANEL.min(nc), 0.0);
    }
    for c0 in (0..nc).step_by(PANEL) {
        let w = PANEL.min(nc - c0);
        let mut copy = MatMut::from_column_major_slice_mut(&mut scratch[..k * w], k, w);
        let mut panel = x.rb_mut().subcols_mut(c0, w);
        copy.copy_from(panel.rb());
        faer::linalg::matmul::triangular::matmul(
            panel.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            t.transpose(),
            BlockStructure::TriangularUpper,
            copy.rb(),
            BlockStructure::Rectangular,
            1.0,
            par,
        );
    }
}

/// B ← B L⁻¹ for B (m×n, column-major) and lower-triangular L (n×n).
pub fn rdiv_lower_any(b: &mut [f64], m: usize, l: &[f64], n: usize) {
    if m == 0 || n == 0 {
        return;
    }
    // B L⁻¹ = (L⁻ᵀ Bᵀ)ᵀ: solve Lᵀ X = Bᵀ on the transposed view of B
    let lm = MatRef::from_column_major_slice(l, n, n);
    let bt = MatMut::from_column_major_slice_mut(b, m, n).transpose_mut();
    faer::linalg::triangular_solve::solve_upper_triangular_in_place(lm.transpose(), bt, par_for(n));
}

/// In-place lower Cholesky of the n×n column-major matrix `a` (leading dimension n).
/// Only the lower triangle is read and written. Returns the failing column on a
/// non-positive pivot.
pub fn chol_lower(a: &mut [f64], n: usize) -> Result<(), usize> {
    for j in 0..n {
        // a[j.., j] -= a[j.., k] * a[j, k] for k < j  (left-looking, contiguous columns)
        for k in 0..j {
            let ajk = a[j + k * n];
            if ajk != 0.0 {
                let (left, right) = a.split_at_mut(j * n);
                let colk = &left[k * n + j..k * n + n];
                let colj = &mut right[j..n];
                for (x, y) in colj.iter_mut().zip(colk) {
                    *x -= ajk * y;
                }
            }
        }
        let d = a[j + j * n];
        if !(d > 0.0) || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        a[j + j * n] = d;
        let inv = 1.0 / d;
        for x in &mut a[j * n + j + 1..j * n + n] {
            *x *= inv;
        }
    }
    Ok(())
}

/// B ← B L⁻ᵀ for B (m×n, column-major) and lower-triangular L (n×n).
pub fn rdiv_lower_t(b: &mut [f64], m: usize, l: &[f64], n: usize) {
    for j in 0..n {
        for k in 0..j {
            let ljk = l[j + k * n];
            if ljk != 0.0 {
                let (left, right) = b.split_at_mut(j * m);
                let bk = &left[k * m..k * m + m];
                for (x, y) in right[..m].iter_mut().zip(bk) {
                    *x -= ljk * y;
                }
            }
        }
        let inv = 1.0 / l[j + j * n];
        for x in &mut b[j * m..j * m + m] {
            *x *= inv;
        }
    }
}

/// C ← C − A Aᵀ on the lower triangle, C n×n, A n×k (column-major).
pub fn syrk_sub_lower(c: &mut [f64], n: usize, a: &[f64], k: usize) {
    for kk in 0..k {
        let ak = &a[kk * n..kk * n + n];
        for j in 0..n {
            let ajk = ak[j];
            if ajk != 0.0 {
                let cj = &mut c[j * n + j..j * n + n];
                for (x, y) in cj.iter_mut().zip(&ak[j..n]) {
                    *x -= ajk * y;
                }
            }
        }
    }
}

/// C ← C − A Bᵀ, C m×n, A m×k, B n×k (column-major).
pub fn gemm_nt_sub(c: &mut [f64], m: usize, n: usize, a: &[f64], b: &[f64], k: usize) {
    for kk in 0..k {
        let ak = &a[kk * m..kk * m + m];
        for j in 0..n {
            let bjk = b[j + kk * n];
            if bjk != 0.0 {
                let cj = &mut c[j * m..j * m + m];
                for (x, y) in cj.iter_mut().zip(ak) {
                    *x -= bjk * y;
                }
            }
        }
    }
}

/// Solve L x = b in place (L lower, n×n).
pub fn solve_lower(l: &[f64], n: usize, x: &mut [f64]) {
    for j in 0..n {
        let v = x[j] / l[j + j * n];
        x[j] = v;
        if v != 0.0 {
            for i in j + 1..n {
                x[i] -= l[i + j * n] * v;
            }
        }
    }
}

/// Solve Lᵀ x = b in place (L lower, n×n).
pub fn solve_lower_t(l: &[f64], n: usize, x: &mut [f64]) {
    for j in (0..n).rev() {
        let mut s = x[j];
        for i in j + 1..n {
            s -= l[i + j * n] * x[i];
        }
        x[j] = s / l[j + j * n];
    }
}

/// Sum of the logs of the first n diagonal elements of a column-major matrix with leading dimension ld.
pub fn log_diag_sum(a: &[f64], n: usize, ld: usize) -> f64 {
    (0..n).map(|j| a[j + j * ld].ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(n: usize) -> Vec<f64> {
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                m[i + j * n] = 1.0 / (1.0 + i as f64 + j as f64) + if i == j { n as f64 } else { 0.0 };
            }
        }
        m
    }

    #[test]
    fn cholesky_reproduces_matrix() {
        let n = 7;
        let a = spd(n);
        let mut l = a.clone();
        chol_lower(&mut l, n).unwrap();
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..=j).map(|k| l[i + k * n] * l[j + k * n]).sum();
                assert!((s - a[i + j * n]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn llt_inverse_in_place_reads_only_the_lower_triangle() {
        // odd sizes split unevenly at every level of the recursion; 700 uses two cores
        for n in [3, 33, 97, 261, 700] {
            let a = spd(n);
            let mut l = a.clone();
            chol_lower(&mut l, n).unwrap();
            for j in 0..n {
                for i in 0..j {
                    l[i + j * n] = f64::NAN; // garbage above the diagonal must not be read
                }
            }
            llt_inverse_in_place(&mut l, n, &mut Vec::new());
            for i in 0..n {
                for j in 0..n {
                    let s: f64 = (0..n).map(|k| a[i.max(k) + i.min(k) * n] * l[k + j * n]).sum();
                    assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10, "n={n} ({i},{j}) {s}");
                }
            }
        }
    }

    #[test]
    fn llt_inverse_inverts_l_lt() {
        for n in [1, 2, 5, 63, 64, 130, 300, 600] {
            let a = spd(n);
            let mut l = a.clone();
            chol_lower(&mut l, n).unwrap();
            for j in 0..n {
                for i in 0..j {
                    l[i + j * n] = 0.0;
                }
            }
            let mut inv = vec![0.0; n * n];
            llt_inverse(&l, n, &mut inv);
            // A · inv = I (A's lower triangle mirrored)
            for i in 0..n {
                for j in 0..n {
                    let s: f64 = (0..n).map(|k| a[i.max(k) + i.min(k) * n] * inv[k + j * n]).sum();
                    assert!((s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10, "n={n} ({i},{j}) {s}");
                }
            }
        }
    }

    #[test]
    fn cholesky_rejects_indefinite() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(chol_lower(&mut a, 2), Err(1));
    }

    #[test]
    fn right_division_and_solves() {
        let n = 5;
        let mut l = spd(n);
        chol_lower(&mut l, n).unwrap();
        for i in 0..n {
            for j in i + 1..n {
                l[i + j * n] = 0.0;
            }
        }
        let m = 3;
        let b: Vec<f64> = (0..m * n).map(|i| (i as f64).sin()).collect();
        let mut x = b.clone();
        rdiv_lower_t(&mut x, m, &l, n);
        // x Lᵀ must equal b
        for r in 0..m {
            for c in 0..n {
                let s: f64 = (0..n).map(|k| x[r + k * m] * l[c + k * n]).sum();
                assert!((s - b[r + c * m]).abs() < 1e-12);
            }
        }
        let rhs: Vec<f64> = (0..n).map(|i| i as f64 + 1.0).collect();
        let mut y = rhs.clone();
        solve_lower(&l, n, &mut y);
        solve_lower_t(&l, n, &mut y);
        // L Lᵀ y = rhs
        let a = spd(n);
        for i in 0..n {
            let s: f64 = (0..n).map(|j| a[i.max(j) + i.min(j) * n] * y[j]).sum();
            assert!((s - rhs[i]).abs() < 1e-10);
        }
    }

    #[test]
    fn rank_updates_match_naive() {
        let (m, n, k) = (4, 3, 2);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.3 - 1.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| i as f64 * 0.7 + 0.1).collect();
        let mut c = vec![1.0; m * n];
        gemm_nt_sub(&mut c, m, n, &a, &b, k);
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|t| a[i + t * m] * b[j + t * n]).sum();
                assert!((c[i + j * m] - (1.0 - s)).abs() < 1e-12);
            }
        }
        let mut d = vec![0.0; m * m];
        syrk_sub_lower(&mut d, m, &a, k);
        for i in 0..m {
            for j in 0..=i {
                let s: f64 = (0..k).map(|t| a[i + t * m] * a[j + t * m]).sum();
                assert!((d[i + j * m] + s).abs() < 1e-12);
            }
        }
    }
}

#[cfg(test)]
mod faer_tests {
    use super::*;

    fn spd(n: usize) -> Vec<f64> {
        let mut s = 7u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f64) / (1u64 << 31) as f64 - 0.5
        };
        let b: Vec<f64> = (0..n * 8).map(|_| rnd()).collect();
        let mut a = vec![0.0; n * n];
        for j in 0..n {
            for i in j..n {
                a[i + j * n] = (0..8).map(|k| b[i + k * n] * b[j + k * n]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
            }
            for i in 0..j {
                a[i + j * n] = 1e6; // garbage above the diagonal must not be read
            }
        }
        a
    }

    #[test]
    fn faer_paths_match_the_plain_kernels() {
        for n in [FAER_MIN, 600] {
            let a = spd(n);
            let mut plain = a.clone();
            chol_lower(&mut plain, n).unwrap();
            let mut fast = a.clone();
            let mut work = chol_workspace(n);
            chol_lower_any(&mut fast, n, &mut work).unwrap();
            for j in 0..n {
                for i in j..n {
                    assert!((plain[i + j * n] - fast[i + j * n]).abs() < 1e-10, "chol n={} ({},{})", n, i, j);
                }
            }
            let m = 29;
            let b: Vec<f64> = (0..m * n).map(|i| ((i * 37) % 101) as f64 / 101.0).collect();
            let mut b1 = b.clone();
            rdiv_lower_t(&mut b1, m, &plain, n);
            let mut b2 = b.clone();
            rdiv_lower_t_any(&mut b2, m, &fast, n);
            for (x, y) in b1.iter().zip(&b2) {
                assert!((x - y).abs() < 1e-9 * (1.0 + x.abs()), "rdiv n={}", n);
            }
        }
        let mut bad = spd(FAER_MIN);
        bad[5 + 5 * FAER_MIN] = -1e3;
        assert!(chol_lower_any(&mut bad, FAER_MIN, &mut chol_workspace(FAER_MIN)).is_err());
    }
}

/// Σ aᵢbᵢ with four accumulators: fast, and the same order of summation on every call.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}
