//! The fitted model that R holds a handle to: the model's blocks (A, and the factor L at
//! θ̂ once fitted) live here between calls, so the methods after a fit (conditional
//! variances, Satterthwaite's derivatives, profiles, the bootstrap, the profiled
//! criterion as a function) never rebuild them from the n rows.
//!
//! The whole fit is one call: the choice of start ([`crate::lmm::start`]), the optimiser
//! on a conditioned copy of badly scaled data and the exact map back
//! ([`crate::lmm::conditioning`]), and the multistart on tiny data.
use crate::error::{MixedError, Result};
use crate::inference::profile::{profile_confint_scaled, ProfileResult};
use crate::inference::varpar::{varpar_derivatives, VarparDerivatives};
use crate::linalg::dense::gemm;
use crate::lmm::conditioning::{condition_xy, condition_z, ill_conditioned, unconditioned_fit, unconditioned_theta, XyMap};
use crate::lmm::fit::{fit, Fit};
use crate::lmm::model::{CriterionParts, LinearMixedModel};
use crate::lmm::optimize::OptimSummary;
use crate::lmm::reterm::ReTerm;
use crate::lmm::start::{MULTISTART_DIAGONALS, MULTISTART_MAX_ROWS};
use crate::optim::bfgs::FitControl;
use crate::residuals::correlation::{fit_correlated, varpar_derivatives_correlated, CorrelatedModel};
use crate::simulate::{bootstrap, BootControl, BootResult, FittedParams};
use std::borrow::Cow;

/// A model with independent or correlated residuals.
pub enum Residuals<'d> {
    Independent(LinearMixedModel<'d>),
    Correlated(CorrelatedModel<'d>),
}

impl<'d> Residuals<'d> {
    /// The model the blocked algebra runs on (whitened, for correlated residuals).
    pub fn lmm(&self) -> &LinearMixedModel<'_> {
        match self {
            Residuals::Independent(m) => m,
            Residuals::Correlated(c) => &c.model,
        }
    }


    /// The data as given: terms, X, p, y, the weights.
    fn data(&self) -> (&[ReTerm<'d>], &[f64], usize, &[f64], Option<&[f64]>) {
        match self {
            Residuals::Independent(m) => (&m.terms, &m.x, m.p, &m.y, m.weights()),
            Residuals::Correlated(c) => (&c.terms, &c.x, c.p, &c.y, None),
        }
    }

    /// The same model on other X, y and Z (owned) with the same structure.
    fn rebuilt(&self, terms: Vec<ReTerm<'d>>, x: Vec<f64>, y: Vec<f64>) -> Result<Residuals<'d>> {
        Ok(match self {
            Residuals::Independent(m) => {
                let w = m.weights().map(|w| Cow::Owned(w.to_vec()));
                Residuals::Independent(LinearMixedModel::new(terms, x, m.p, y, w, m.reml)?)
            }
            Residuals::Correlated(c) => {
                Residuals::Correlated(CorrelatedModel::new(terms, x, c.p, y, c.reml, c.cor.clone(), c.var.clone(), c.eta().to_vec())?)
            }
        })
    }

    /// The criterion at [θ, η], leaving the factor there.
    pub fn objective(&mut self, params: &[f64]) -> Result<f64> {
        match self {
            Residuals::Independent(m) => m.objective(params),
            Residuals::Correlated(c) => {
                let nth = c.model.ntheta();
                c.objective(&params[..nth], &params[nth..])
            }
        }
    }

    /// Optimise (multistart on tiny data) or evaluate at `control.start`, and package.
    fn fit(&mut self, control: &FitControl, optimize: bool) -> Result<EngineFit> {
        match self {
            Residuals::Independent(m) => {
                let mut best = fit(m, control, optimize)?;
                let tiny = m.n <= MULTISTART_MAX_ROWS && m.ntheta() > 0;
                if optimize && control.start.is_none() && tiny {
                    let (mut evals, mut grads) = (best.optim.evaluations, best.optim.gradients);
                    let mut improved = false;
                    for d in MULTISTART_DIAGONALS {
                        let ctl = FitControl { start: Some(m.theta_with_diagonal(d)), ..control.clone() };
                        let alt = match fit(m, &ctl, true) {
                            Ok(f) => f,
                            Err(MixedError::Interrupted) => return Err(MixedError::Interrupted),
                            Err(_) => continue,
                        };
                        evals += alt.optim.evaluations;
                        grads += alt.optim.gradients;
                        if alt.criterion < best.criterion - 1e-10 * best.criterion.abs() {
                            best = alt;
                            improved = true;
                        } else {
                            improved = false;
                        }
                    }
                    // the factor is left at the last start's optimum: back to the best
                    if !improved {
                        m.update_l(&best.optim.theta)?;
                    }
                    best.optim.evaluations = evals;
                    best.optim.gradients = grads;
                }
                Ok(EngineFit { fit: best, cor: None })
            }
            Residuals::Correlated(c) => {
                let cf = fit_correlated(c, control, optimize)?;
                Ok(EngineFit { fit: cf.fit, cor: Some(CorFit { phi: cf.phi, eta: cf.eta, logdet: cf.logdet }) })
            }
        }
    }
}

/// The correlation parameters of a fit: natural (φ) and unconstrained (η), and log|Ψ|.
#[derive(Debug, Clone)]
pub struct CorFit {
    pub phi: Vec<f64>,
    pub eta: Vec<f64>,
    pub logdet: f64,
}

/// A fit as the engine returns it.
#[derive(Debug, Clone)]
pub struct EngineFit {
    pub fit: Fit,
    pub cor: Option<CorFit>,
}

impl EngineFit {
    /// [θ, η]: the parameters the fit is at.
    pub fn params(&self) -> Vec<f64> {
        let mut v = self.fit.optim.theta.clone();
        if let Some(c) = &self.cor {
            v.extend(&c.eta);
        }
        v
    }
}

/// The engine: the model as given, the X- and y-conditioned copy when the data are
/// badly scaled, and the fitted parameters.
pub struct Engine<'d> {
    pub model: Residuals<'d>,
    conditioned: Option<(Residuals<'d>, XyMap)>,
    ill: Option<bool>,
    fitted: Option<Vec<f64>>,
}

impl<'d> Engine<'d> {
    pub fn new(model: Residuals<'d>) -> Self {
        Engine { model, conditioned: None, ill: None, fitted: None }
    }

    /// Whether the data are badly scaled (decided once).
    pub fn ill_conditioned(&mut self) -> bool {
        if let Some(v) = self.ill {
            return v;
        }
        let (terms, x, p, y, _) = self.model.data();
        let v = ill_conditioned(x, p, y, terms);
        self.ill = Some(v);
        v
    }

    /// The model with X and y conditioned (built on first use), and its map.
    fn conditioned_xy(&mut self) -> Result<&mut (Residuals<'d>, XyMap)> {
        if self.conditioned.is_none() {
            let (terms, x, p, y, w) = self.model.data();
            let (xs, ys, map) = condition_xy(x, p, y, w);
            let terms = terms.to_vec();
            let model = self.model.rebuilt(terms, xs, ys)?;
            self.conditioned = Some((model, map));
        }
        Ok(self.conditioned.as_mut().expect("just built"))
    }

    /// The criterion of the model as given from the parts of a (mapped-back) fit.
    fn criterion_of(&self, ldl2: f64, ldrx2: f64, pwrss: f64, logdet: f64) -> f64 {
        let m = self.model.lmm();
        m.criterion_from(&CriterionParts { ldl2, ldrx2, pwrss }, m.reml) + logdet
    }

    /// The fit: optimised (`optimize`) or evaluated at `control.start` (lme4's start when
    /// none is given). Badly scaled data are optimised on a conditioned copy, unless the
    /// user gave a start (which is in the data's units).
    pub fn fit(&mut self, control: &FitControl, optimize: bool) -> Result<EngineFit> {
        // a start of θ alone (lme4's `start`) takes the correlation's own start for η
        let mut control = Cow::Borrowed(control);
        if let (Some(s), Residuals::Correlated(c)) = (&control.start, &self.model) {
            if s.len() == c.model.ntheta() {
                let mut s = s.clone();
                s.extend(c.eta());
                control = Cow::Owned(FitControl { start: Some(s), ..control.into_owned() });
            }
        }
        let control = control.as_ref();
        let res = if optimize && control.start.is_none() && self.ill_conditioned() {
            self.fit_conditioned(control)?
        } else if !optimize && control.start.is_none() {
            let ctl = FitControl { start: Some(self.lme4_start()), ..control.clone() };
            self.model.fit(&ctl, false)?
        } else {
            self.model.fit(control, optimize)?
        };
        self.fitted = Some(res.params());
        Ok(res)
    }

    /// lme4's start (its devfun's initial θ, and where an evaluation without optimising
    /// is made): its variance-ratio start for random intercepts, else Λ = I; a
    /// correlation at its own start.
    pub fn lme4_start(&self) -> Vec<f64> {
        let m = self.model.lmm();
        let mut s = m.variance_ratio_start().unwrap_or_else(|| m.theta_start());
        if let Residuals::Correlated(c) = &self.model {
            s.extend(c.eta());
        }
        s
    }

    /// Optimise on a copy with X, y and Z conditioned, then evaluate at θ̂ with only X and
    /// y conditioned and map the result back.
    fn fit_conditioned(&mut self, control: &FitControl) -> Result<EngineFit> {
        let n = self.model.lmm().n;
        let x_given = self.model.data().1.to_vec();
        let (zs, zmaps): (Vec<Vec<f64>>, Vec<_>) = self.model.data().0.iter().map(condition_z).unzip();
        // the copy with Z conditioned too, for the search only
        let first = {
            let (cond, _) = self.conditioned_xy()?;
            let (terms, xs, _, ys, _) = cond.data();
            let zterms = terms.iter().zip(zs).map(|(t, z)| ReTerm::new(t.codes.clone(), t.nlevels, z, t.k, t.cov)).collect::<Result<Vec<_>>>()?;
            let mut full = cond.rebuilt(zterms, xs.to_vec(), ys.to_vec())?;
            full.fit(control, true)?
        };
        let mut params = unconditioned_theta(self.model.data().0, &first.fit.optim.theta, &zmaps);
        if let Some(c) = &first.cor {
            params.extend(&c.eta);
        }
        let ctl = FitControl { start: Some(params), ..control.clone() };
        let (cond, map) = self.conditioned_xy()?;
        let map = map.clone();
        let at = cond.fit(&ctl, false)?;
        let logdet = at.cor.as_ref().map_or(0.0, |c| c.logdet);
        let criterion = |ldl2: f64, ldrx2: f64, pwrss: f64| self.criterion_of(ldl2, ldrx2, pwrss, logdet);
        let mut fit = unconditioned_fit(at.fit, &map, &x_given, n, criterion)?;
        // the optimiser's account is the conditioned search's
        fit.optim = OptimSummary { theta: fit.optim.theta, criterion: fit.criterion, ..first.fit.optim };
        Ok(EngineFit { fit, cor: at.cor })
    }

    /// The model as given with its factor at the fitted parameters.
    fn at_fitted(&mut self) -> Result<()> {
        let params = self.fitted.clone().ok_or_else(|| MixedError::Input("the engine has no fit yet".into()))?;
        let current: Vec<f64> = {
            let m = self.model.lmm();
            let mut v = m.theta().to_vec();
            if let Residuals::Correlated(c) = &self.model {
                v.extend(c.eta());
            }
            v
        };
        if current != params || self.model.lmm().factor_spent() {
            self.model.objective(&params)?;
        }
        Ok(())
    }

    /// With a residual structure, at the fit: the standard-deviation multipliers v of the
    /// variance function (ones without one) and the whitened residuals (V C)⁻¹(y − Xβ − Zb).
    pub fn residual_structure(&mut self, beta: &[f64], b: &[Vec<f64>]) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        if let Residuals::Independent(_) = &self.model {
            return Ok(None);
        }
        self.at_fitted()?;
        match &self.model {
            Residuals::Independent(_) => Ok(None),
            Residuals::Correlated(c) => Ok(Some((c.multipliers()?, c.whitened_residuals(beta, b)))),
        }
    }

    /// Set the fitted parameters without optimising (a fit restored from R).
    pub fn set_fitted(&mut self, params: &[f64]) -> Result<()> {
        self.model.objective(params)?;
        self.fitted = Some(params.to_vec());
        Ok(())
    }

    /// σ² Λ [(LLᵀ)⁻¹]_ll Λᵀ per term and level (k×k column-major, level-major).
    pub fn cond_var(&mut self, sigma: f64) -> Result<Vec<Vec<f64>>> {
        self.at_fitted()?;
        let s2 = sigma * sigma;
        let nt = self.model.lmm().terms.len();
        let one = |m: &mut LinearMixedModel<'_>| -> Result<Vec<Vec<f64>>> {
            (0..nt).map(|t| Ok(m.cond_var(t)?.into_iter().map(|v| v * s2).collect())).collect()
        };
        match &mut self.model {
            Residuals::Independent(m) => one(m),
            Residuals::Correlated(c) => one(&mut c.model),
        }
    }

    /// Satterthwaite's ingredients at [θ, η] and σ: the Hessian of the deviance over
    /// ([θ, η], u) with u = σ/σ̂ (so its size does not depend on y's units), and
    /// ∂Var(β̂)/∂([θ, η], σ). Badly scaled data are differentiated on the X- and
    /// y-conditioned copy and mapped back.
    pub fn varpar(&mut self, params: &[f64], sigma: f64) -> Result<VarparDerivatives> {
        let ill = self.ill_conditioned();
        let (s, sx_inv, p) = if ill {
            let (_, map) = self.conditioned_xy()?;
            (map.s, map.sx_inv.clone(), map.p)
        } else {
            let p = self.model.lmm().p;
            let mut id = vec![0.0; p * p];
            for j in 0..p {
                id[j + j * p] = 1.0;
            }
            (1.0, id, p)
        };
        let model = if ill { &mut self.conditioned.as_mut().expect("built above").0 } else { &mut self.model };
        let d = match model {
            Residuals::Independent(m) => {
                let reml = m.reml;
                varpar_derivatives(m, params, sigma / s, reml)?
            }
            Residuals::Correlated(c) => varpar_derivatives_correlated(c, params, sigma / s)?,
        };
        let k1 = params.len() + 1;
        let mut dvec = vec![1.0; k1];
        dvec[k1 - 1] = sigma / s;
        let hessian: Vec<f64> = (0..k1 * k1).map(|ij| d.hessian[ij] * dvec[ij % k1] * dvec[ij / k1]).collect();
        // s² Sx⁻¹ J Sx⁻ᵀ, and the σ derivative in σ's units
        let mut tmp = vec![0.0; p * p];
        let jacobian = d
            .jacobian
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let f = if i == k1 - 1 { s } else { s * s };
                let mut out = vec![0.0; p * p];
                gemm(&mut tmp, p, p, 1.0, &sx_inv, false, j, false, p, 0.0);
                gemm(&mut out, p, p, f, &tmp, false, &sx_inv, true, p, 0.0);
                out
            })
            .collect();
        Ok(VarparDerivatives { hessian, jacobian, vcov: d.vcov })
    }

    /// The criterion at [θ, η] of the model as given (lme4's devfun).
    pub fn objective(&mut self, params: &[f64]) -> Result<f64> {
        let v = self.model.objective(params);
        // the factor moved: methods that need it at θ̂ refactor first
        v
    }

    /// Profile intervals (ML), on a copy of the blocks with the ML criterion.
    pub fn profile(&mut self, z: f64, which: &[usize], control: &FitControl, covariances: bool) -> Result<ProfileResult> {
        match &self.model {
            Residuals::Independent(m) => {
                let mut ml = m.clone();
                ml.reml = false;
                profile_confint_scaled(&mut ml, z, which, control, covariances)
            }
            Residuals::Correlated(c) => {
                let mut ml = c.clone();
                ml.reml = false;
                ml.model.reml = false;
                // the ML optimum is sought from the fit's [θ, η]
                let start = self.fitted.clone().ok_or_else(|| MixedError::Input("the engine has no fit yet".into()))?;
                profile_confint_scaled(&mut ml, z, which, &FitControl { start: Some(start), ..control.clone() }, covariances)
            }
        }
    }

    /// V C e in place for each n-column of `e`, at the fit's η: a residual bootstrap's
    /// errors from resampled whitened residuals, as the engine's own bootstrap colours them.
    pub fn colour(&mut self, e: &mut [f64]) -> Result<()> {
        self.at_fitted()?;
        match &self.model {
            Residuals::Independent(_) => Err(MixedError::Input("the fit has no residual structure".into())),
            Residuals::Correlated(c) => {
                let n = c.y.len();
                if n == 0 || e.len() % n != 0 {
                    return Err(MixedError::Input("the errors are not columns of the data's length".into()));
                }
                let errors = c.errors()?;
                e.chunks_mut(n).try_for_each(|col| errors.colour(col))
            }
        }
    }

    /// Var(ε)/σ² at the structure's unconstrained parameters η (dense; for Kenward–Roger).
    pub fn residual_covariance(&self, eta: &[f64]) -> Result<Vec<f64>> {
        match &self.model {
            Residuals::Independent(_) => Err(MixedError::Input("the fit has no residual structure".into())),
            Residuals::Correlated(c) => c.residual_covariance(eta),
        }
    }

    /// Profile intervals (ML) of the residual structure's parameters `which` (indices into η).
    pub fn profile_structure(&mut self, z: f64, which: &[usize], control: &FitControl) -> Result<Vec<(f64, f64)>> {
        let start = self.fitted.clone().ok_or_else(|| MixedError::Input("the engine has no fit yet".into()))?;
        match &self.model {
            Residuals::Independent(_) => Err(MixedError::Input("the fit has no residual structure".into())),
            Residuals::Correlated(c) => crate::residuals::correlation::profile_structure(c, &start, z, which, control),
        }
    }

    /// The parametric or residual bootstrap, refitting copies of the blocks.
    pub fn bootstrap(&self, par: &FittedParams, control: &BootControl, fit_control: &FitControl, progress: &mut dyn FnMut(usize, usize) -> bool) -> Result<BootResult> {
        match &self.model {
            Residuals::Independent(m) => bootstrap(m, par, control, fit_control, progress),
            Residuals::Correlated(c) => {
                let mut c = c.clone();
                if let Some(f) = &self.fitted {
                    c.set_eta(&f[c.model.ntheta()..])?;
                }
                crate::simulate::bootstrap_correlated(&c, par, control, fit_control, progress)
            }
        }
    }
}
