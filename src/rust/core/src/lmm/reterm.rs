//! A random-effects term `(z | g)`: the grouping factor's codes, the n×k model
//! columns, and the form of its relative covariance factor Λ.
use crate::error::{MixedError, Result};
use std::borrow::Cow;

/// How the k×k lower-triangular relative covariance factor of a term is parametrised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CovForm {
    /// Full lower triangle, θ in column-major order (lme4's order).
    Full,
    /// Diagonal only, as produced by `(x || g)`.
    Diagonal,
}

/// The level of each observation as R's factor stores it (1-based codes), borrowed
/// from R so that the engine holds no n-sized copy of what R already holds.
#[derive(Debug, Clone)]
pub struct Codes<'d>(Cow<'d, [i32]>);

impl<'d> Codes<'d> {
    /// R's codes, borrowed.
    pub fn one_based(codes: &'d [i32]) -> Self {
        Codes(Cow::Borrowed(codes))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The 0-based level of observation `o`.
    #[inline]
    pub fn get(&self, o: usize) -> usize {
        (self.0[o] - 1) as usize
    }

    /// The 0-based levels in order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().map(|&c| (c - 1) as usize)
    }

    pub fn to_zero_based(&self) -> Vec<u32> {
        self.iter().map(|c| c as u32).collect()
    }
}

/// 0-based levels (owned).
impl From<Vec<u32>> for Codes<'_> {
    fn from(v: Vec<u32>) -> Self {
        Codes(Cow::Owned(v.into_iter().map(|c| c as i32 + 1).collect()))
    }
}

/// The model columns are borrowed where the caller owns them (R's matrix, for the
/// length of one call): a fit keeps no copy of the data beyond A's blocks.
#[derive(Debug, Clone)]
pub struct ReTerm<'d> {
    /// The level of each observation.
    pub codes: Codes<'d>,
    pub nlevels: usize,
    /// Number of model columns per level.
    pub k: usize,
    /// n×k model columns, column-major, unweighted.
    pub z: Cow<'d, [f64]>,
    pub cov: CovForm,
    /// (row, column) in Λ of each θ element, column-major (lme4's order). The one
    /// place the θ layout is defined; R reads it instead of rebuilding it.
    layout: Vec<(usize, usize)>,
}

impl<'d> ReTerm<'d> {
    pub fn new(codes: impl Into<Codes<'d>>, nlevels: usize, z: impl Into<Cow<'d, [f64]>>, k: usize, cov: CovForm) -> Result<Self> {
        let codes = codes.into();
        let z = z.into();
        let n = codes.len();
        if k == 0 {
            return Err(MixedError::Input("a random-effects term has no model columns".into()));
        }
        if z.len() != n * k {
            return Err(MixedError::Input(format!(
                "random-effects model matrix has {} values, expected {} x {}",
                z.len(),
                n,
                k
            )));
        }
        if nlevels == 0 {
            return Err(MixedError::Input("grouping factor has no levels".into()));
        }
        if codes.0.iter().any(|&c| c < 1) {
            return Err(MixedError::Input("grouping factor codes must be positive (no NA)".into()));
        }
        if let Some(bad) = codes.0.iter().find(|&&c| c as usize > nlevels) {
            return Err(MixedError::Input(format!(
                "grouping factor code {} is out of range (nlevels = {})",
                bad, nlevels
            )));
        }
        if z.iter().any(|v| !v.is_finite()) {
            return Err(MixedError::Input("random-effects model matrix has non-finite values".into()));
        }
        let layout = match cov {
            CovForm::Full => (0..k).flat_map(|j| (j..k).map(move |i| (i, j))).collect(),
            CovForm::Diagonal => (0..k).map(|j| (j, j)).collect(),
        };
        Ok(ReTerm { codes, nlevels, k, z, cov, layout })
    }

    /// Number of random effects of this term (columns of Z).
    pub fn q(&self) -> usize {
        self.nlevels * self.k
    }

    pub fn ntheta(&self) -> usize {
        self.layout.len()
    }

    /// (row, column) in Λ of each θ element.
    pub fn theta_layout(&self) -> &[(usize, usize)] {
        &self.layout
    }

    /// lme4's starting value: identity Λ.
    pub fn theta_start(&self) -> Vec<f64> {
        self.layout.iter().map(|&(i, j)| if i == j { 1.0 } else { 0.0 }).collect()
    }

    /// Whether each θ element sits on Λ's diagonal (lme4's lower bound 0 applies there).
    pub fn theta_is_diagonal(&self) -> Vec<bool> {
        self.layout.iter().map(|&(i, j)| i == j).collect()
    }

    /// Fill the k×k column-major Λ from this term's θ.
    pub fn fill_lambda(&self, theta: &[f64], lambda: &mut [f64]) {
        lambda.iter_mut().for_each(|x| *x = 0.0);
        for (&(i, j), &t) in self.layout.iter().zip(theta) {
            lambda[i + j * self.k] = t;
        }
    }

    /// Make θ canonical: Λ's diagonal non-negative. Flipping the sign of a column of Λ
    /// leaves ΛΛᵀ, and so the model, unchanged.
    pub fn normalize_theta(&self, theta: &mut [f64]) {
        for col in 0..self.k {
            let diag = self.layout.iter().position(|&(i, j)| i == col && j == col);
            if let Some(d) = diag {
                if theta[d] < 0.0 {
                    for (t, &(_, j)) in theta.iter_mut().zip(&self.layout) {
                        if j == col {
                            *t = -*t;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theta_layout_follows_lme4() {
        let t = ReTerm::new(vec![0, 1], 2, vec![1.0; 6], 3, CovForm::Full).unwrap();
        assert_eq!(t.ntheta(), 6);
        assert_eq!(t.theta_start(), vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        let mut lam = vec![0.0; 9];
        t.fill_lambda(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut lam);
        assert_eq!(lam, vec![1.0, 2.0, 3.0, 0.0, 4.0, 5.0, 0.0, 0.0, 6.0]);
        let mut th = vec![-1.0, 2.0, 3.0, 4.0, -5.0, -6.0];
        t.normalize_theta(&mut th);
        assert_eq!(th, vec![1.0, -2.0, -3.0, 4.0, -5.0, 6.0]);
        assert_eq!(t.theta_layout(), &[(0, 0), (1, 0), (2, 0), (1, 1), (2, 1), (2, 2)]);
        let d = ReTerm::new(vec![0, 1], 2, vec![1.0; 4], 2, CovForm::Diagonal).unwrap();
        assert_eq!(d.theta_layout(), &[(0, 0), (1, 1)]);
        let mut dl = vec![9.0; 4];
        d.fill_lambda(&[2.0, -3.0], &mut dl);
        assert_eq!(dl, vec![2.0, 0.0, 0.0, -3.0]);
        let mut dt = vec![2.0, -3.0];
        d.normalize_theta(&mut dt);
        assert_eq!(dt, vec![2.0, 3.0]);
    }

    #[test]
    fn rejects_bad_codes() {
        assert!(ReTerm::new(vec![0, 2], 2, vec![1.0; 2], 1, CovForm::Full).is_err());
        assert!(ReTerm::new(vec![0, 1], 2, vec![1.0; 3], 1, CovForm::Full).is_err());
    }
}
