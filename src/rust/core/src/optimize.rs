//! Optimisation of the profiled criterion over θ.
//!
//! θ is optimised unconstrained: the criterion depends on Λ only through ΛΛᵀ, so a
//! negative diagonal element is as good as its positive mirror and we normalise signs
//! at the end. A boundary optimum (θᵢ = 0, a singular fit) is then an interior,
//! smooth minimum, which BFGS reaches without box constraints. BFGS works on a
//! rescaled θ ([`SearchScale`]): for models whose θ are all lone standard deviations,
//! log-like beyond 0.1 and weighted by each term's number of levels. argmin's BFGS with a
//! More–Thuente (Wolfe) line search does the work. The model's criterion has an exact
//! gradient ([`crate::gradient`]); other criteria (profiles, correlation parameters)
//! fall back to central differences. Every evaluation records the best point seen, so
//! a line search that stalls in rounding noise near the optimum costs nothing.
use crate::error::{MixedError, Result};
use crate::model::LinearMixedModel;
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::BFGS;
use std::cell::{Cell, RefCell};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct FitControl {
    /// BFGS iterations per restart.
    pub max_iter: u64,
    /// Restarts from the best point after a line-search failure.
    pub max_restarts: usize,
    /// Gradient tolerance, relative to 1 + |criterion at the start|.
    pub grad_tol: f64,
    /// |θᵢ| below this (diagonal elements) is tried at exactly 0, as lme4's bound gives.
    pub boundary_tol: f64,
    pub start: Option<Vec<f64>>,
    /// Polled about every 100 ms during optimisation; returning true stops the fit
    /// with [`MixedError::Interrupted`]. The R binding passes a Ctrl-C check.
    pub interrupt: Option<fn() -> bool>,
    /// A user's limit on criterion evaluations per BFGS search (lme4's maxfun); past it
    /// the search stops unconverged.
    pub max_evals: Option<usize>,
    /// Called with the evaluation count, the value and the point at every evaluation
    /// (lme4's `verbose`; the R binding prints them).
    pub trace: Option<fn(usize, f64, &[f64])>,
}

impl Default for FitControl {
    fn default() -> Self {
        FitControl { max_iter: 500, max_restarts: 4, grad_tol: 1e-7, boundary_tol: 1e-4, start: None, interrupt: None, max_evals: None, trace: None }
    }
}

#[derive(Debug, Clone)]
pub struct OptimSummary {
    pub theta: Vec<f64>,
    pub criterion: f64,
    /// Evaluations of the criterion (each one factorisation).
    pub evaluations: usize,
    /// Exact gradients computed (each about one selected inverse); 0 with central differences.
    pub gradients: usize,
    pub converged: bool,
    /// Norm of the final gradient (zero components for θ fixed at the boundary).
    pub grad_norm: f64,
    pub message: String,
}

/// A criterion to minimise: its value and, where it has one, its exact gradient.
pub trait Objective {
    fn value(&mut self, x: &[f64]) -> Result<f64>;
    /// The exact gradient at x, or None when only central differences are available.
    fn gradient(&mut self, _x: &[f64]) -> Option<Result<Vec<f64>>> {
        None
    }
    /// The size of gradient g at x that the tolerance is judged on: its norm, unless
    /// the parameters are a transform of the ones the tolerance is meant for.
    fn stop_norm(&self, _x: &[f64], g: &[f64]) -> f64 {
        norm(g)
    }
    /// A bound b with stop_norm(x, g) ≤ b·|g|, so that BFGS's own test on |g| never
    /// stops short of the tolerance.
    fn stop_norm_bound(&self) -> f64 {
        1.0
    }
    /// The length of a small step d at x, measured in the parameters the objective
    /// stands for (its norm, unless these are a transform of them).
    fn step_length(&self, _x: &[f64], d: &[f64]) -> f64 {
        norm(d)
    }
    /// The parameters x stands for, for traces (x itself unless rescaled).
    fn point(&self, x: &[f64]) -> Vec<f64> {
        x.to_vec()
    }
}

fn norm(g: &[f64]) -> f64 {
    g.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// The scale s of [`SearchScale`]'s sinh map.
const SINH_SCALE: f64 = 0.1;

/// How the optimiser sees θ: xᵢ = wᵢ ψᵢ, with θᵢ = s·sinh(ψᵢ/s) for the elements that are
/// a standard deviation on their own (a scalar or diagonal Λ_t; `sinh`) and θᵢ = ψᵢ for
/// the rest.
///
/// - The sinh map is the identity near 0, so a boundary fit stays reachable and the
///   criterion stays even in ψᵢ; beyond s it is logarithmic. The profiled criterion
///   grows like n_levels·log θᵢ² for large θᵢ, so it is concave there and BFGS on θ
///   itself crawls down it: on InstEval (ML) θ for dept:service went from 1 to 0.085 in
///   16 of 30 iterations.
/// - The weight wᵢ ∝ √(levels of θᵢ's term) makes BFGS's first steps those of a method
///   scaled by the information about each θᵢ, which grows with its number of levels:
///   InstEval (ML) 19 → 13 gradients. The largest term has weight 1 (its first step
///   is as long as without weights).
///
/// The tolerance is still judged on ∂/∂θ.
#[derive(Debug, Clone)]
pub struct SearchScale {
    pub sinh: Vec<bool>,
    pub weight: Vec<f64>,
}

impl SearchScale {
    /// θ as it is.
    pub fn linear(n: usize) -> Self {
        SearchScale { sinh: vec![false; n], weight: vec![1.0; n] }
    }
    fn to_theta(&self, x: &[f64], theta: &mut [f64]) {
        for (i, (t, &xi)) in theta.iter_mut().zip(x).enumerate() {
            let psi = xi / self.weight[i];
            *t = if self.sinh[i] { sinh_map(psi) } else { psi };
        }
    }
    fn to_x(&self, theta: &[f64]) -> Vec<f64> {
        theta.iter().enumerate().map(|(i, &t)| self.weight[i] * if self.sinh[i] { sinh_map_inverse(t) } else { t }).collect()
    }
    /// dθᵢ/dxᵢ
    fn slope(&self, i: usize, x: f64) -> f64 {
        let w = self.weight[i];
        if self.sinh[i] {
            sinh_map_slope(x / w) / w
        } else {
            1.0 / w
        }
    }
}

/// Where the sinh map turns linear (in units of s): θ = s·sinh(6) ≈ 20. A line search
/// on the log-like part can otherwise try θ = e^14 and more, where the factorisation
/// fails; beyond that θ it is linear again, as θ's own scale.
const SINH_LIMIT: f64 = 6.0;

/// θ = s·sinh(ψ/s), continued linearly (C¹) beyond |ψ/s| = [`SINH_LIMIT`].
fn sinh_map(psi: f64) -> f64 {
    let u = psi / SINH_SCALE;
    if u.abs() <= SINH_LIMIT {
        SINH_SCALE * u.sinh()
    } else {
        SINH_SCALE * u.signum() * (SINH_LIMIT.sinh() + SINH_LIMIT.cosh() * (u.abs() - SINH_LIMIT))
    }
}

fn sinh_map_inverse(theta: f64) -> f64 {
    let v = theta / SINH_SCALE;
    if v.abs() <= SINH_LIMIT.sinh() {
        SINH_SCALE * v.asinh()
    } else {
        SINH_SCALE * v.signum() * (SINH_LIMIT + (v.abs() - SINH_LIMIT.sinh()) / SINH_LIMIT.cosh())
    }
}

/// dθ/dψ
fn sinh_map_slope(psi: f64) -> f64 {
    (psi / SINH_SCALE).abs().min(SINH_LIMIT).cosh()
}


/// An objective over θ seen through [`SearchScale`]'s x.
struct Rescaled<'o, O: Objective + ?Sized> {
    obj: &'o mut O,
    scale: &'o SearchScale,
    theta: Vec<f64>,
}

impl<O: Objective + ?Sized> Objective for Rescaled<'_, O> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.scale.to_theta(x, &mut self.theta);
        self.obj.value(&self.theta)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        self.scale.to_theta(x, &mut self.theta);
        let g = self.obj.gradient(&self.theta)?;
        Some(g.map(|g| g.iter().zip(x).enumerate().map(|(i, (g, &xi))| g * self.scale.slope(i, xi)).collect()))
    }
    fn stop_norm(&self, x: &[f64], g: &[f64]) -> f64 {
        norm(&g.iter().zip(x).enumerate().map(|(i, (g, &xi))| g / self.scale.slope(i, xi)).collect::<Vec<_>>())
    }
    fn stop_norm_bound(&self) -> f64 {
        // |∂/∂θᵢ| = |∂/∂xᵢ| wᵢ / cosh(·) ≤ |∂/∂xᵢ| max(1, max w)
        self.scale.weight.iter().fold(1.0, |a, &w| a.max(w))
    }
    fn step_length(&self, x: &[f64], d: &[f64]) -> f64 {
        norm(&d.iter().zip(x).enumerate().map(|(i, (d, &xi))| d * self.scale.slope(i, xi)).collect::<Vec<_>>())
    }
    fn point(&self, x: &[f64]) -> Vec<f64> {
        let mut theta = vec![0.0; x.len()];
        self.scale.to_theta(x, &mut theta);
        theta
    }
}

/// [`minimize_objective`] on [`SearchScale`]'s x: starts and returns θ.
fn minimize_scaled<O: Objective + ?Sized>(obj: &mut O, theta0: &[f64], scale: &SearchScale, control: &FitControl) -> Result<Minimum> {
    let x0 = scale.to_x(theta0);
    let mut min = minimize_objective(&mut Rescaled { obj, scale, theta: vec![0.0; theta0.len()] }, &x0, control)?;
    let mut theta = vec![0.0; theta0.len()];
    scale.to_theta(&min.x, &mut theta);
    min.x = theta;
    Ok(min)
}

/// A closure's value, with central-difference gradients.
pub struct ValueOnly<F>(pub F);

impl<F: FnMut(&[f64]) -> Result<f64>> Objective for ValueOnly<F> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        (self.0)(x)
    }
}

/// The model's profiled criterion over θ, with its exact gradient. The gradient at the
/// point just evaluated reuses that factor.
pub struct ThetaCriterion<'m, 'd> {
    pub model: &'m mut LinearMixedModel<'d>,
    factored_at: Option<Vec<f64>>,
}

impl<'m, 'd> ThetaCriterion<'m, 'd> {
    pub fn new(model: &'m mut LinearMixedModel<'d>) -> Self {
        ThetaCriterion { model, factored_at: None }
    }
}

impl Objective for ThetaCriterion<'_, '_> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        self.factored_at = None;
        let v = self.model.objective(x)?;
        self.factored_at = Some(x.to_vec());
        Ok(v)
    }
    fn gradient(&mut self, x: &[f64]) -> Option<Result<Vec<f64>>> {
        if self.factored_at.as_deref() != Some(x) {
            if let Err(e) = self.model.update_l(x) {
                self.factored_at = None;
                return Some(Err(e));
            }
            self.factored_at = Some(x.to_vec());
        }
        // the gradient may spend the factor (see LinearMixedModel::gradient)
        self.factored_at = None;
        Some(self.model.gradient())
    }
}

/// Any objective as an argmin problem: counts evaluations and keeps the best point
/// seen, so a line search that stalls in rounding noise near the optimum costs nothing.
struct Tracked<'o, O: Objective + ?Sized> {
    obj: RefCell<&'o mut O>,
    evals: Cell<usize>,
    grads: Cell<usize>,
    /// The last gradient and where it was taken: argmin's line search and BFGS both
    /// ask for the gradient at the accepted point.
    last_grad: RefCell<Option<(Vec<f64>, Vec<f64>)>>,
    best: RefCell<(f64, Vec<f64>)>,
    interrupt: Option<fn() -> bool>,
    trace: Option<fn(usize, f64, &[f64])>,
    last_check: Cell<Instant>,
    interrupted: Cell<bool>,
    /// Evaluations allowed inside BFGS runs; past it the run is stopped (not an error).
    budget: Cell<usize>,
    enforce_budget: Cell<bool>,
    over_budget: Cell<bool>,
    /// BFGS's gradient tolerance, and the last value computed (where, what). On millions
    /// of rows the criterion is only smooth to ~1e-10 relative, so the line search can
    /// reject the very point whose gradient meets the tolerance; such a point, if its
    /// value is within rounding of the best, ends the run (`stationary`).
    grad_tol: Cell<f64>,
    last_value: RefCell<(Vec<f64>, f64)>,
    stationary: RefCell<Option<(Vec<f64>, f64)>>,
}

impl<'o, O: Objective + ?Sized> Tracked<'o, O> {
    fn new(obj: &'o mut O, n: usize) -> Self {
        Tracked {
            obj: RefCell::new(obj),
            evals: Cell::new(0),
            grads: Cell::new(0),
            last_grad: RefCell::new(None),
            best: RefCell::new((f64::INFINITY, vec![0.0; n])),
            interrupt: None,
            trace: None,
            last_check: Cell::new(Instant::now()),
            interrupted: Cell::new(false),
            budget: Cell::new(usize::MAX),
            enforce_budget: Cell::new(false),
            over_budget: Cell::new(false),
            grad_tol: Cell::new(0.0),
            last_value: RefCell::new((vec![f64::NAN; n], f64::NAN)),
            stationary: RefCell::new(None),
        }
    }

    fn check(&self) -> Result<()> {
        if let Some(check) = self.interrupt {
            if self.interrupted.get() {
                return Err(MixedError::Interrupted);
            }
            if self.last_check.get().elapsed().as_millis() >= 100 {
                self.last_check.set(Instant::now());
                if check() {
                    self.interrupted.set(true);
                    return Err(MixedError::Interrupted);
                }
            }
        }
        if self.enforce_budget.get() && self.evals.get() + self.grads.get() >= self.budget.get() {
            self.over_budget.set(true);
            return Err(MixedError::NotConverged("evaluation limit reached".into()));
        }
        Ok(())
    }

    fn eval(&self, x: &[f64]) -> Result<f64> {
        self.check()?;
        self.evals.set(self.evals.get() + 1);
        let v = self.obj.borrow_mut().value(x)?;
        if let Some(trace) = self.trace {
            trace(self.evals.get(), v, &self.obj.borrow().point(x));
        }
        {
            // copied into a buffer made once: no allocation per evaluation
            let mut last = self.last_value.borrow_mut();
            last.0.copy_from_slice(x);
            last.1 = v;
        }
        let mut best = self.best.borrow_mut();
        if v < best.0 {
            best.0 = v;
            best.1.copy_from_slice(x);
        }
        Ok(v)
    }

    /// The exact gradient where the objective has one, else central differences.
    fn gradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        if let Some((at, g)) = self.last_grad.borrow().as_ref() {
            if at.as_slice() == x {
                return Ok(g.clone());
            }
        }
        let g = self.new_gradient(x)?;
        *self.last_grad.borrow_mut() = Some((x.to_vec(), g.clone()));
        if self.enforce_budget.get() && self.obj.borrow().stop_norm(x, &g) < self.grad_tol.get() {
            let at = {
                let last = self.last_value.borrow();
                (last.0.as_slice() == x).then_some(last.1)
            };
            let best = self.best.borrow().0;
            if let Some(f) = at.filter(|f| *f <= best + 1e-9 * (1.0 + best.abs())) {
                *self.stationary.borrow_mut() = Some((x.to_vec(), f));
                return Err(MixedError::NotConverged("stationary point reached".into()));
            }
        }
        Ok(g)
    }

    fn new_gradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.check()?;
        let exact = self.obj.borrow_mut().gradient(x);
        match exact {
            Some(g) => {
                self.grads.set(self.grads.get() + 1);
                let g = g?;
                if g.iter().all(|v| v.is_finite()) {
                    Ok(g)
                } else {
                    Err(MixedError::Numerical("the gradient is not finite at this theta".into()))
                }
            }
            None => self.fd_gradient(x),
        }
    }

    fn fd_gradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        let mut t = x.to_vec();
        let mut g = vec![0.0; x.len()];
        for i in 0..x.len() {
            let h = 1e-5 * x[i].abs().max(1.0);
            t[i] = x[i] + h;
            let fp = self.eval(&t)?;
            t[i] = x[i] - h;
            let fm = self.eval(&t)?;
            t[i] = x[i];
            g[i] = (fp - fm) / (2.0 * h);
        }
        Ok(g)
    }
}

/// argmin takes its problem by value; this lets it borrow ours.
struct ByRef<'p, 'o, O: Objective + ?Sized>(&'p Tracked<'o, O>);

impl<O: Objective + ?Sized> CostFunction for ByRef<'_, '_, O> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.0.eval(p).map_err(|e| argmin::core::Error::msg(e.to_string()))
    }
}

impl<O: Objective + ?Sized> Gradient for ByRef<'_, '_, O> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.0.gradient(p).map_err(|e| argmin::core::Error::msg(e.to_string()))
    }
}

fn scaled_identity(n: usize, s: f64) -> Vec<Vec<f64>> {
    (0..n).map(|i| (0..n).map(|j| if i == j { s } else { 0.0 }).collect()).collect()
}

/// Where a BFGS run starts: the point, its criterion and gradient, and the initial
/// inverse-Hessian scale. All are handed to argmin, so none is evaluated twice.
struct Start {
    x: Vec<f64>,
    f: f64,
    g: Vec<f64>,
    inv_h: Vec<Vec<f64>>,
}

/// One backtracking steepest-descent step from (x0, f0), giving the Nocedal–Wright scale
/// sᵀy/yᵀy for the initial inverse Hessian (argmin's BFGS starts from I, which makes
/// its first line searches long when the criterion is steep).
fn initial_step<O: Objective + ?Sized>(problem: &Tracked<O>, x0: Vec<f64>, f0: f64) -> Result<Start> {
    let g0 = problem.gradient(&x0)?;
    let gn = g0.iter().map(|g| g * g).sum::<f64>().sqrt();
    if !(gn > 0.0) {
        let n = x0.len();
        return Ok(Start { x: x0, f: f0, g: g0, inv_h: scaled_identity(n, 1.0) });
    }
    // half a unit step in the objective's own parameters (θ, for a rescaled search):
    // from θ = 1 a full unit step along ±1 lands exactly on the stationary point θ = 0
    let mut alpha = 0.5 / problem.obj.borrow().step_length(&x0, &g0);
    for _ in 0..30 {
        let x1: Vec<f64> = x0.iter().zip(&g0).map(|(x, g)| x - alpha * g).collect();
        // a failed evaluation (e.g. outside the domain) counts as no decrease
        if let Ok(f1) = problem.eval(&x1) {
            if f1 < f0 {
                let g1 = problem.gradient(&x1)?;
                let sy: f64 = g0.iter().zip(&g1).map(|(a, b)| -alpha * a * (b - a)).sum();
                let yy: f64 = g0.iter().zip(&g1).map(|(a, b)| (b - a) * (b - a)).sum();
                let h0 = if sy > 0.0 && yy > 0.0 { sy / yy } else { alpha };
                return Ok(Start { x: x1, f: f1, g: g1, inv_h: scaled_identity(x0.len(), h0) });
            }
        }
        alpha *= 0.5;
    }
    let n = x0.len();
    Ok(Start { x: x0, f: f0, g: g0, inv_h: scaled_identity(n, 1.0 / gn) })
}

/// Result of [`minimize`].
#[derive(Debug, Clone)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
    /// The gradient's [`Objective::stop_norm`] at x, when the search computed it there.
    pub grad_norm: Option<f64>,
    pub evaluations: usize,
    pub gradients: usize,
    pub converged: bool,
    pub message: String,
}

/// Minimise a smooth function of a few unconstrained parameters by BFGS with a
/// More–Thuente line search and central-difference gradients, restarting from the
/// best point when a line search stalls. Used for profiles.
pub fn minimize<F: FnMut(&[f64]) -> Result<f64>>(f: F, x0: &[f64], control: &FitControl) -> Result<Minimum> {
    minimize_objective(&mut ValueOnly(f), x0, control)
}

/// [`minimize`] for any [`Objective`]: with its exact gradient where it has one.
pub fn minimize_objective<O: Objective + ?Sized>(obj: &mut O, x0: &[f64], control: &FitControl) -> Result<Minimum> {
    let n = x0.len();
    let mut problem = Tracked::new(obj, n);
    problem.interrupt = control.interrupt;
    problem.trace = control.trace;
    // a generous cap: BFGS with central differences needs about (2n + 4) evaluations per
    // iteration; pathological line searches must not run away
    problem.budget.set(control.max_evals.unwrap_or_else(|| ((control.max_iter as usize).saturating_mul(2 * n + 6)).max(2000)));
    let f0 = problem.eval(x0)?;
    if n == 0 {
        return Ok(Minimum { x: vec![], f: f0, grad_norm: Some(0.0), evaluations: 1, gradients: 0, converged: true, message: "nothing to optimise".into() });
    }
    let tol = control.grad_tol * (1.0 + f0.abs());
    problem.grad_tol.set(tol);
    let mut converged = false;
    let mut message = String::from("maximum number of iterations reached");
    for _ in 0..=control.max_restarts {
        let (xb, fb) = {
            let best = problem.best.borrow();
            (best.1.clone(), best.0)
        };
        let start = initial_step(&problem, xb, fb)?;
        let solver = BFGS::new(MoreThuenteLineSearch::new())
            .with_tolerance_grad(tol / problem.obj.borrow().stop_norm_bound())
            .and_then(|s| s.with_tolerance_cost(0.0))
            .map_err(|e| MixedError::Numerical(e.to_string()))?;
        let before = problem.best.borrow().0;
        problem.enforce_budget.set(true);
        let run = Executor::new(ByRef(&problem), solver)
            .configure(|s| {
                s.param(start.x)
                    .cost(start.f)
                    .gradient(start.g)
                    .inv_hessian(start.inv_h)
                    .max_iters(control.max_iter)
            })
            .run();
        problem.enforce_budget.set(false);
        if problem.interrupted.get() {
            return Err(MixedError::Interrupted);
        }
        if problem.stationary.borrow().is_some() {
            converged = true;
            message = String::from("converged: gradient below tolerance");
            break;
        }
        if problem.over_budget.get() {
            message = match control.max_evals {
                Some(m) => format!("failure to converge in {} evaluations: maximum number of function evaluations exceeded", m),
                None => String::from("evaluation limit reached"),
            };
            break;
        }
        match run {
            Ok(res) => {
                if let TerminationStatus::Terminated(TerminationReason::SolverConverged) = res.state().get_termination_status() {
                    converged = true;
                    message = String::from("converged: gradient below tolerance");
                    break;
                }
            }
            Err(_) => {
                // the line search stalled, or tried a point where the criterion fails:
                // restart from the best point if that still improves, or if its gradient
                // says it is not a minimum (the restart's first step backtracks)
                let after = problem.best.borrow().0;
                if !(after < before - 1e-12 * (1.0 + before.abs())) {
                    let xb = problem.best.borrow().1.clone();
                    let g = problem.gradient(&xb)?;
                    if problem.obj.borrow().stop_norm(&xb, &g) < 1e3 * tol {
                        message = String::from("converged: no further decrease possible");
                        converged = true;
                        break;
                    }
                }
            }
        }
    }
    let (fbest, x) = match problem.stationary.borrow().clone() {
        Some((x, f)) => (f, x),
        None => problem.best.borrow().clone(),
    };
    if !converged {
        let g = problem.gradient(&x)?;
        if g.iter().map(|g| g * g).sum::<f64>().sqrt() < 1e3 * tol {
            converged = true;
            message = String::from("converged: gradient small at the best point");
        }
    }
    let grad_norm = match problem.last_grad.borrow().as_ref() {
        Some((at, g)) if *at == x => Some(problem.obj.borrow().stop_norm(&x, g)),
        _ => None,
    };
    Ok(Minimum { x, f: fbest, grad_norm, evaluations: problem.evals.get(), gradients: problem.grads.get(), converged, message })
}

/// Minimise the criterion over θ. Leaves the model's factor at the returned θ.
pub fn optimize_theta(model: &mut LinearMixedModel, control: &FitControl) -> Result<OptimSummary> {
    let start = control.start.clone().unwrap_or_else(|| model.default_start());
    if start.len() != model.ntheta() {
        return Err(MixedError::Input(format!("start has length {}, expected {}", start.len(), model.ntheta())));
    }
    let is_diag = model.theta_is_diagonal();
    let scale = model.search_scale();
    let res = optimize_objective(&mut ThetaCriterion::new(model), &start, &is_diag, &scale, control)?;
    let mut theta = res.theta.clone();
    model.normalize_theta(&mut theta);
    // leaves the factor at θ̂ (the probes after BFGS moved it)
    let criterion = model.objective(&theta)?;
    Ok(OptimSummary { theta, criterion, evaluations: res.evaluations + 1, ..res })
}

/// The fit's optimisation of a criterion f over parameters whose `is_diag` entries are
/// diagonal elements of some Λ (f is even in each of them), searched on `scale`: BFGS,
/// then a step off
/// the edge wherever one of them sits at the stationary point 0, then exact zeros
/// for those that are nearly 0. The caller normalises signs.
pub fn optimize_with<F: FnMut(&[f64]) -> Result<f64>>(f: F, start: &[f64], is_diag: &[bool], scale: &SearchScale, control: &FitControl) -> Result<OptimSummary> {
    optimize_objective(&mut ValueOnly(f), start, is_diag, scale, control)
}

/// [`optimize_with`] for any [`Objective`].
pub fn optimize_objective<O: Objective + ?Sized>(obj: &mut O, start: &[f64], is_diag: &[bool], scale: &SearchScale, control: &FitControl) -> Result<OptimSummary> {
    let nth = start.len();
    // the probes after BFGS poll for interrupts as BFGS's evaluations do
    let mut last_check = Instant::now();
    let mut value = |obj: &mut O, x: &[f64]| -> Result<f64> {
        if let Some(check) = control.interrupt {
            if last_check.elapsed().as_millis() >= 100 {
                last_check = Instant::now();
                if check() {
                    return Err(MixedError::Interrupted);
                }
            }
        }
        obj.value(x)
    };
    let mut min = minimize_scaled(obj, start, scale, control)?;
    let mut evaluations = min.evaluations;
    let mut gradients = min.gradients;
    // A diagonal θᵢ at 0 is always stationary (the criterion is even in it), so BFGS can
    // stop there at a maximum along θᵢ. Step off the edge and restart when that
    // decreases the criterion (lme4's restart_edge does the same check).
    for _ in 0..3 {
        let mut escaped: Option<(Vec<f64>, f64)> = None;
        for i in 0..nth {
            if is_diag[i] && min.x[i].abs() < 1e-3 {
                let mut t = min.x.clone();
                t[i] = 0.05;
                evaluations += 1;
                let v = value(obj, &t)?;
                if v < min.f - 1e-10 * (1.0 + min.f.abs()) && escaped.as_ref().map_or(true, |e| v < e.1) {
                    escaped = Some((t, v));
                }
            }
        }
        match escaped {
            Some((t, _)) => {
                let again = minimize_scaled(obj, &t, scale, control)?;
                evaluations += again.evaluations;
                gradients += again.gradients;
                if again.f < min.f {
                    min = again;
                } else {
                    break;
                }
            }
            None => break,
        }
    }
    // The other way round: on small data the criterion can have an interior local
    // minimum while the boundary (a variance of exactly 0) is lower, which lme4's
    // bobyqa finds. Try each diagonal element at 0 and restart from there if lower.
    for i in 0..nth {
        if is_diag[i] && min.x[i] != 0.0 {
            let mut t = min.x.clone();
            t[i] = 0.0;
            evaluations += 1;
            let probe = value(obj, &t);
            if let Err(MixedError::Interrupted) = probe {
                return Err(MixedError::Interrupted);
            }
            if let Ok(v) = probe {
                if v < min.f - 1e-10 * (1.0 + min.f.abs()) {
                    let again = minimize_scaled(obj, &t, scale, control)?;
                    evaluations += again.evaluations;
                    gradients += again.gradients;
                    min = if again.f < v { again } else { Minimum { x: t, f: v, grad_norm: None, ..again } };
                }
            }
        }
    }
    // The far end: when a variance dwarfs the residual's (a diagonal θᵢ large) the
    // criterion is so flat there that the gradient test stops BFGS short of the
    // optimum, which lme4's bobyqa reaches; on degenerate data (σ → 0) it keeps falling
    // along the ray θ → ∞ with all the variances together. Double the large θᵢ jointly,
    // then each on its own, while that lowers the criterion, and polish from there.
    let large: Vec<usize> = (0..nth).filter(|&i| is_diag[i] && min.x[i].abs() > 10.0).collect();
    let mut directions: Vec<Vec<usize>> = Vec::new();
    if large.len() > 1 {
        directions.push(large.clone());
    }
    directions.extend(large.iter().map(|&i| vec![i]));
    for dir in directions {
        let mut best: Option<(Vec<f64>, f64)> = None;
        let mut t = min.x.clone();
        for _ in 0..10 {
            for &i in &dir {
                t[i] *= 2.0;
            }
            evaluations += 1;
            match value(obj, &t) {
                Err(MixedError::Interrupted) => return Err(MixedError::Interrupted),
                Ok(v) if v < best.as_ref().map_or(min.f, |b| b.1) - 1e-12 * (1.0 + min.f.abs()) => best = Some((t.clone(), v)),
                _ => break,
            }
        }
        if let Some((t, v)) = best {
            let again = minimize_scaled(obj, &t, scale, control)?;
            evaluations += again.evaluations;
            gradients += again.gradients;
            min = if again.f < v { again } else { Minimum { x: t, f: v, grad_norm: None, ..again } };
        }
    }
    let (converged, mut message) = (min.converged, min.message);
    // Diagonal elements that are nearly zero, at exactly zero (signs do not matter here).
    let mut theta: Vec<f64> = min.x;
    let mut grad_norm = min.grad_norm;
    let mut fbest = min.f;
    for i in 0..nth {
        if is_diag[i] && theta[i] != 0.0 && theta[i].abs() < control.boundary_tol {
            let mut t = theta.clone();
            t[i] = 0.0;
            evaluations += 1;
            let v = value(obj, &t)?;
            if v <= fbest + 1e-10 * (1.0 + fbest.abs()) {
                theta = t;
                fbest = v;
                grad_norm = None;
            }
        }
    }
    // the gradient where the search ended, unless the search left it
    let grad_norm = match grad_norm {
        Some(g) => g,
        None => {
            let mut problem = Tracked::new(obj, nth);
            problem.interrupt = control.interrupt;
            let grad = problem.gradient(&theta)?;
            evaluations += problem.evals.get();
            gradients += problem.grads.get();
            norm(&grad)
        }
    };
    if !converged {
        message = format!("{} (gradient norm {:.2e})", message, grad_norm);
    }
    Ok(OptimSummary { theta, criterion: fbest, evaluations, gradients, converged, grad_norm, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search map is C¹, odd and invertible across its linear continuation.
    #[test]
    fn sinh_map_is_smooth_and_invertible() {
        let edge = SINH_SCALE * SINH_LIMIT;
        for psi in [-3.0, -edge - 1e-9, -edge, -0.2, -1e-8, 0.0, 1e-8, 0.05, 0.3, edge, edge + 1e-9, 2.0, 40.0] {
            let t = sinh_map(psi);
            assert!((sinh_map_inverse(t) - psi).abs() < 1e-12 * (1.0 + psi.abs()), "{} -> {} -> {}", psi, t, sinh_map_inverse(t));
            assert_eq!(sinh_map(-psi), -t);
            let h = 1e-6;
            let num = (sinh_map(psi + h) - sinh_map(psi - h)) / (2.0 * h);
            assert!((num - sinh_map_slope(psi)).abs() < 1e-5 * num.abs(), "{}: {} vs {}", psi, num, sinh_map_slope(psi));
        }
        // continuous at the edge, and linear beyond it
        assert!((sinh_map(edge + 1e-12) - sinh_map(edge - 1e-12)).abs() < 1e-9);
        assert!((sinh_map(edge + 2.0) - sinh_map(edge + 1.0) - (sinh_map(edge + 1.0) - sinh_map(edge))).abs() < 1e-9);
    }
}
