//! Which blocks of L fill in: a symbolic factorisation over the levels of the terms,
//! done once per model from the pattern of A (which level pairs occur in the data).
//!
//! Block column j of L holds, below its diagonal block, L_ij = (A_ij − Σ_{k<j} L_ik L_jkᵀ) L_jj⁻ᵀ.
//! A term's diagonal block L_jj stays block-diagonal exactly when no earlier column
//! links two of its levels, i.e. when every level of each earlier term meets only one
//! of its levels (nesting, as in `(1 | school/student)`); otherwise it is dense, and so
//! is everything below it. A block below a block-diagonal L_jj keeps the pattern of
//! A_ij plus the fill-in of the earlier columns, stored sparse unless that pattern is
//! dense enough for dense storage to be cheaper. The selected inverse relies on the
//! result being closed under fill-in, which this construction guarantees.
use crate::linalg::blocks::BlockSparse;

/// The storage of one block of L between two terms (below the diagonal).
#[derive(Debug, Clone)]
pub enum Pattern {
    Dense,
    /// Sorted row levels of each column level.
    Sparse(Vec<Vec<u32>>),
}

impl Pattern {
    fn column(&self, c: usize) -> Option<&[u32]> {
        match self {
            Pattern::Dense => None,
            Pattern::Sparse(cols) => Some(&cols[c]),
        }
    }
}

/// The storage of every block of L among the terms.
#[derive(Debug, Clone)]
pub struct Structure {
    /// Whether term j's diagonal block of L is dense (else block-diagonal).
    pub diag_dense: Vec<bool>,
    /// L_ij for terms j < i, at index i(i−1)/2 + j.
    pub off: Vec<Pattern>,
}

pub fn off_index(i: usize, j: usize) -> usize {
    i * (i - 1) / 2 + j
}

/// A block is stored sparse while it holds at most this share of its level pairs.
pub const SPARSE_MAX_SHARE: f64 = 0.25;

/// The structure of L from the blocks of A between terms (`a_off(i, j)` for j < i) and
/// the terms' numbers of levels. A block below a block-diagonal one is stored sparse
/// while it holds at most `max_share` of its level pairs.
pub fn analyse<'a>(a_off: impl Fn(usize, usize) -> &'a BlockSparse, nlevels: &[usize], max_share: f64) -> Structure {
    let nt = nlevels.len();
    let mut diag_dense = vec![false; nt];
    let mut off: Vec<Pattern> = Vec::with_capacity(nt * nt.saturating_sub(1) / 2);
    for i in 1..nt {
        for _ in 0..i {
            off.push(Pattern::Dense);
        }
    }
    for j in 0..nt {
        diag_dense[j] = (0..j).any(|kk| match &off[off_index(j, kk)] {
            Pattern::Dense => true,
            Pattern::Sparse(cols) => cols.iter().any(|c| c.len() > 1),
        });
        for i in j + 1..nt {
            let pattern = if diag_dense[j] || (0..j).any(|kk| matches!(off[off_index(i, kk)], Pattern::Dense)) {
                Pattern::Dense
            } else {
                let mut cols = a_off(i, j).pattern();
                // fill-in from each earlier column: rows of L_ik × the (single) row of L_jk
                for kk in 0..j {
                    let (pik, pjk) = (&off[off_index(i, kk)], &off[off_index(j, kk)]);
                    for l in 0..nlevels[kk] {
                        if let (Some(ri), Some(rj)) = (pik.column(l), pjk.column(l)) {
                            for &c in rj {
                                cols[c as usize].extend_from_slice(ri);
                            }
                        }
                    }
                }
                for c in cols.iter_mut() {
                    c.sort_unstable();
                    c.dedup();
                }
                let stored: usize = cols.iter().map(|c| c.len()).sum();
                if stored as f64 > max_share * (nlevels[i] * nlevels[j]) as f64 {
                    Pattern::Dense
                } else {
                    Pattern::Sparse(cols)
                }
            };
            off[off_index(i, j)] = pattern;
        }
    }
    Structure { diag_dense, off }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cross(rows: &[u32], nr: usize, cols: &[u32], nc: usize) -> BlockSparse {
        let z = vec![1.0; rows.len()];
        BlockSparse::cross_product(rows.len(), |o| rows[o] as usize, &z, 1, nr, |o| cols[o] as usize, &z, 1, nc, None)
    }

    #[test]
    fn nested_terms_stay_block_diagonal_and_sparse() {
        // student (6 levels) in class (3) in school (2): (1|school/class/student)
        let student: Vec<u32> = (0..12).map(|o| o / 2).collect();
        let class: Vec<u32> = student.iter().map(|s| s / 2).collect();
        let school: Vec<u32> = class.iter().map(|c| if *c < 2 { 0 } else { 1 }).collect();
        let a10 = cross(&class, 3, &student, 6);
        let a20 = cross(&school, 2, &student, 6);
        let a21 = cross(&school, 2, &class, 3);
        let s = analyse(|i, j| match (i, j) { (1, 0) => &a10, (2, 0) => &a20, _ => &a21 }, &[6, 3, 2], 1.0);
        assert_eq!(s.diag_dense, vec![false, false, false]);
        assert!(s.off.iter().all(|p| matches!(p, Pattern::Sparse(_))));
    }

    #[test]
    fn crossed_terms_fill_in() {
        // every subject meets every item: item's block fills in, and what follows is dense
        let subj: Vec<u32> = (0..20).map(|o| o / 4).collect();
        let item: Vec<u32> = (0..20).map(|o| o % 4).collect();
        let a10 = cross(&item, 4, &subj, 5);
        let s = analyse(|_, _| &a10, &[5, 4], SPARSE_MAX_SHARE);
        assert_eq!(s.diag_dense, vec![false, true]);
        // the first column keeps the data's pattern unless that is dense
        assert!(matches!(s.off[0], Pattern::Dense));
    }

    #[test]
    fn fill_in_below_a_block_diagonal_block_is_added_to_the_pattern() {
        // term 0 (4 levels) nested in term 1 (2 levels); term 2 (3 levels) crosses term 1
        // only through term 0: level pairs of L_21 come from A_21 and from fill-in
        let t0: Vec<u32> = vec![0, 1, 2, 3];
        let t1: Vec<u32> = vec![0, 0, 1, 1];
        let t2: Vec<u32> = vec![0, 1, 2, 2];
        let a10 = cross(&t1, 2, &t0, 4);
        let a20 = cross(&t2, 3, &t0, 4);
        // A_21 as the data give it (the same rows), so here fill-in adds nothing new;
        // drop it to see that fill-in alone supplies the pairs
        let a21 = BlockSparse::with_pattern(1, 1, 3, &[vec![], vec![]]);
        let s = analyse(|i, j| match (i, j) { (1, 0) => &a10, (2, 0) => &a20, _ => &a21 }, &[4, 2, 3], 1.0);
        assert!(!s.diag_dense[1]);
        match &s.off[off_index(2, 1)] {
            Pattern::Sparse(cols) => assert_eq!(cols, &vec![vec![0, 1], vec![2]]),
            Pattern::Dense => panic!("expected a sparse pattern"),
        }
        // term 2's diagonal block: column 0 of L_20 has one row per column, L_21's first
        // column has rows 0 and 1, which fill in
        assert!(s.diag_dense[2]);
    }
}
