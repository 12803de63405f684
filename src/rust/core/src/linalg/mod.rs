//! Linear algebra on the blocked factor: block storage and kernels ([`blocks`], dense
//! kernels in [`dense`]), the symbolic factorisation ([`structure`]) and the selected
//! inverse ([`selinv`]).
pub mod blocks;
pub mod dense;
pub mod selinv;
pub mod structure;

/// The position of (i, j), i ≥ j, in a lower triangle packed row by row: the index of a
/// pair of terms (or levels) in the triangular tables the factor and its inverse keep.
pub(crate) fn tri(i: usize, j: usize) -> usize {
    i * (i + 1) / 2 + j
}
