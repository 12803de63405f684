//! Heteroscedastic residuals: nlme's variance functions. Var(ε_i) = σ² v_i², with the
//! standard-deviation multiplier v_i a function of a covariate or a stratum and of
//! parameters δ. With a correlation, Var(ε) = σ² V Ψ V (V = diag v), so whitening
//! divides each row by v_i before the correlation's C_g⁻¹, and the criterion gains
//! 2 Σ log v_i.
use crate::error::{MixedError, Result};

/// One variance function (a varComb multiplies several).
#[derive(Debug, Clone)]
pub enum VarPart {
    /// varIdent(~ 1 | s): v = δ_s, with δ of the first stratum fixed at 1; the
    /// unconstrained parameters are log δ_s of the other strata.
    Ident { strata: Vec<u32>, nstrata: usize },
    /// varPower(~ x): v = |x|^δ.
    Power { covariate: Vec<f64> },
    /// varExp(~ x): v = exp(δ x).
    Exp { covariate: Vec<f64> },
    /// varConstPower(~ x): v = c + |x|^δ, c > 0 (unconstrained: log c, then δ).
    ConstPower { covariate: Vec<f64> },
    /// varFixed(~ x): v = √x, no parameters.
    Fixed { covariate: Vec<f64> },
}

impl VarPart {
    fn npar(&self) -> usize {
        match self {
            VarPart::Ident { nstrata, .. } => nstrata - 1,
            VarPart::Power { .. } | VarPart::Exp { .. } => 1,
            VarPart::ConstPower { .. } => 2,
            VarPart::Fixed { .. } => 0,
        }
    }

    fn len(&self) -> usize {
        match self {
            VarPart::Ident { strata, .. } => strata.len(),
            VarPart::Power { covariate } | VarPart::Exp { covariate } | VarPart::ConstPower { covariate } | VarPart::Fixed { covariate } => {
                covariate.len()
            }
        }
    }

    /// Multiply `v` by this part's multipliers at unconstrained `eta`.
    /// ∂ log v_i / ∂η_j of this part's multipliers, one n-vector per parameter.
    fn log_derivatives(&self, eta: &[f64]) -> Vec<Vec<f64>> {
        match self {
            VarPart::Ident { strata, nstrata } => (1..*nstrata).map(|j| strata.iter().map(|&s| (s as usize == j) as u8 as f64).collect()).collect(),
            VarPart::Power { covariate } => vec![covariate.iter().map(|x| x.abs().ln()).collect()],
            VarPart::Exp { covariate } => vec![covariate.clone()],
            VarPart::ConstPower { covariate } => {
                let c = eta[0].exp();
                let pow: Vec<f64> = covariate.iter().map(|x| x.abs().powf(eta[1])).collect();
                vec![
                    pow.iter().map(|q| c / (c + q)).collect(),
                    covariate.iter().zip(&pow).map(|(x, q)| if *x == 0.0 { 0.0 } else { q * x.abs().ln() / (c + q) }).collect(),
                ]
            }
            VarPart::Fixed { .. } => Vec::new(),
        }
    }

    /// Multiply v by this part's multipliers at η; returns Σ log of them, formed from η
    /// where it can be (a log per row costs as much as the rest of a whitening pass).
    fn apply(&self, eta: &[f64], v: &mut [f64]) -> f64 {
        match self {
            VarPart::Ident { strata, nstrata } => {
                let ratio: Vec<f64> = std::iter::once(1.0).chain(eta.iter().map(|e| e.exp())).collect();
                let mut count = vec![0usize; *nstrata];
                for (vi, &s) in v.iter_mut().zip(strata) {
                    *vi *= ratio[s as usize];
                    count[s as usize] += 1;
                }
                count.iter().skip(1).zip(eta).map(|(&c, e)| c as f64 * e).sum()
            }
            VarPart::Power { covariate } => {
                let mut logsum = 0.0;
                for (vi, &x) in v.iter_mut().zip(covariate) {
                    let l = eta[0] * x.abs().ln();
                    *vi *= l.exp();
                    logsum += l;
                }
                logsum
            }
            VarPart::Exp { covariate } => {
                let mut logsum = 0.0;
                for (vi, &x) in v.iter_mut().zip(covariate) {
                    let l = eta[0] * x;
                    *vi *= l.exp();
                    logsum += l;
                }
                logsum
            }
            VarPart::ConstPower { covariate } => {
                let c = eta[0].exp();
                let mut logsum = 0.0;
                for (vi, &x) in v.iter_mut().zip(covariate) {
                    let m = c + x.abs().powf(eta[1]);
                    *vi *= m;
                    logsum += m.ln();
                }
                logsum
            }
            VarPart::Fixed { covariate } => {
                let mut logsum = 0.0;
                for (vi, &x) in v.iter_mut().zip(covariate) {
                    *vi *= x.sqrt();
                    logsum += 0.5 * x.ln();
                }
                logsum
            }
        }
    }

    fn natural(&self, eta: &[f64]) -> Vec<f64> {
        match self {
            VarPart::Ident { .. } => eta.iter().map(|e| e.exp()).collect(),
            VarPart::ConstPower { .. } => vec![eta[0].exp(), eta[1]],
            _ => eta.to_vec(),
        }
    }

    fn unconstrained(&self, natural: &[f64]) -> Vec<f64> {
        match self {
            VarPart::Ident { .. } => natural.iter().map(|d| d.max(1e-8).ln()).collect(),
            VarPart::ConstPower { .. } => vec![natural[0].max(1e-8).ln(), natural[1]],
            _ => natural.to_vec(),
        }
    }

    fn check(&self) -> Result<()> {
        match self {
            VarPart::Ident { strata, nstrata } => {
                if *nstrata < 1 || strata.iter().any(|&s| s as usize >= *nstrata) {
                    return Err(MixedError::Input("varIdent strata codes out of range".into()));
                }
                let mut counts = vec![0usize; *nstrata];
                for &s in strata {
                    counts[s as usize] += 1;
                }
                if counts.iter().any(|&c| c == 0) {
                    return Err(MixedError::Input("a varIdent stratum has no observations".into()));
                }
                Ok(())
            }
            VarPart::Power { covariate } | VarPart::Exp { covariate } | VarPart::ConstPower { covariate } => {
                if covariate.iter().any(|x| !x.is_finite()) {
                    return Err(MixedError::Input("the variance covariate must be finite".into()));
                }
                Ok(())
            }
            VarPart::Fixed { covariate } => {
                if covariate.iter().any(|&x| !x.is_finite() || x <= 0.0) {
                    return Err(MixedError::Input("varFixed needs a positive, finite covariate".into()));
                }
                Ok(())
            }
        }
    }
}

/// A variance function: the product of its parts' multipliers.
#[derive(Debug, Clone)]
pub struct VarFunc {
    pub parts: Vec<VarPart>,
}

impl VarFunc {
    pub fn new(parts: Vec<VarPart>, n: usize) -> Result<Self> {
        if parts.is_empty() {
            return Err(MixedError::Input("a variance function needs at least one part".into()));
        }
        for p in &parts {
            if p.len() != n {
                return Err(MixedError::Input("the variance covariate and the data differ in length".into()));
            }
            p.check()?;
        }
        Ok(VarFunc { parts })
    }

    /// A fitted variance function on new data (for simulation): its strata may be
    /// missing there, as it is not estimated from them.
    pub fn on_new_data(parts: Vec<VarPart>, n: usize) -> Result<Self> {
        if parts.is_empty() || parts.iter().any(|p| p.len() != n) {
            return Err(MixedError::Input("the variance covariate and the new data differ in length".into()));
        }
        Ok(VarFunc { parts })
    }

    pub fn npar(&self) -> usize {
        self.parts.iter().map(VarPart::npar).sum()
    }

    fn split<'a>(&self, eta: &'a [f64]) -> Vec<&'a [f64]> {
        let mut out = Vec::with_capacity(self.parts.len());
        let mut at = 0;
        for p in &self.parts {
            out.push(&eta[at..at + p.npar()]);
            at += p.npar();
        }
        out
    }

    /// The standard-deviation multipliers v_i at unconstrained `eta`, and Σ log v_i.
    pub fn multipliers(&self, eta: &[f64], n: usize) -> Result<(Vec<f64>, f64)> {
        let mut v = vec![1.0; n];
        let mut logsum = 0.0;
        for (p, e) in self.parts.iter().zip(self.split(eta)) {
            logsum += p.apply(e, &mut v);
        }
        if !logsum.is_finite() || v.iter().any(|&vi| !(vi.is_finite() && vi > 0.0)) {
            return Err(MixedError::Numerical(
                "the variance function gives a zero or non-finite standard deviation (a power of a covariate that is 0?)".into(),
            ));
        }
        Ok((v, logsum))
    }

    /// ∂ log v_i / ∂η_j for every parameter j (each an n-vector), η unconstrained.
    pub fn log_derivatives(&self, eta: &[f64]) -> Vec<Vec<f64>> {
        self.parts.iter().zip(self.split(eta)).flat_map(|(p, e)| p.log_derivatives(e)).collect()
    }

    /// Natural-scale parameters (nlme's: ratios, powers, const then power).
    pub fn natural(&self, eta: &[f64]) -> Vec<f64> {
        self.parts.iter().zip(self.split(eta)).flat_map(|(p, e)| p.natural(e)).collect()
    }

    pub fn unconstrained(&self, natural: &[f64]) -> Vec<f64> {
        self.parts.iter().zip(self.split(natural)).flat_map(|(p, e)| p.unconstrained(e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_of_each_part() {
        let x = vec![1.0, 2.0, 4.0];
        let f = VarFunc::new(vec![VarPart::Power { covariate: x.clone() }], 3).unwrap();
        let (v, ls) = f.multipliers(&[0.5], 3).unwrap();
        assert!((v[2] - 2.0).abs() < 1e-12 && (ls - (2f64.sqrt() * 2.0).ln()).abs() < 1e-12);
        let g = VarFunc::new(vec![VarPart::Ident { strata: vec![0, 1, 1], nstrata: 2 }, VarPart::Exp { covariate: x }], 3).unwrap();
        assert_eq!(g.npar(), 2);
        let (v, _) = g.multipliers(&[2f64.ln(), 0.1], 3).unwrap();
        assert!((v[0] - 0.1f64.exp()).abs() < 1e-12 && (v[1] - 2.0 * 0.2f64.exp()).abs() < 1e-12);
        let back = g.natural(&g.unconstrained(&[3.0, -0.2]));
        assert!((back[0] - 3.0).abs() < 1e-12 && back[1] == -0.2);
    }

    #[test]
    fn degenerate_power_is_an_error() {
        let f = VarFunc::new(vec![VarPart::Power { covariate: vec![0.0, 1.0] }], 2).unwrap();
        assert!(f.multipliers(&[0.5], 2).is_err());
        assert!(VarFunc::new(vec![VarPart::Ident { strata: vec![0, 0], nstrata: 2 }], 2).is_err());
        assert!(VarFunc::new(vec![VarPart::Fixed { covariate: vec![0.0, 1.0] }], 2).is_err());
    }
}
