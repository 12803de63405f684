//! A BFGS minimiser for a few unconstrained parameters: argmin's BFGS with a
//! More–Thuente (Wolfe) line search, exact gradients where the objective has them and
//! central differences otherwise, restarts from the best point after a stalled line
//! search, an evaluation budget, Ctrl-C polling and a trace. It knows nothing of mixed
//! models: the θ policy (search scale, starts, boundary probes) is in
//! [`crate::lmm::optimize`]. Every evaluation records the best point seen, so a line
//! search that stalls in rounding noise near the optimum costs nothing.
use crate::error::{MixedError, Result};
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
    /// Whether x is scaled so that the Hessian is about I: BFGS then starts with the
    /// full Newton step −g instead of a short steepest-descent probe.
    fn unit_curvature(&self) -> bool {
        false
    }
}

pub(crate) fn norm(g: &[f64]) -> f64 {
    g.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// A closure's value, with central-difference gradients.
pub struct ValueOnly<F>(pub F);

impl<F: FnMut(&[f64]) -> Result<f64>> Objective for ValueOnly<F> {
    fn value(&mut self, x: &[f64]) -> Result<f64> {
        (self.0)(x)
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
    let mut alpha = if problem.obj.borrow().unit_curvature() { 1.0 } else { 0.5 / problem.obj.borrow().step_length(&x0, &g0) };
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

/// The gradient of `obj` at x (exact where it has one), with the evaluations and exact
/// gradients that took.
pub(crate) fn gradient_at<O: Objective + ?Sized>(obj: &mut O, x: &[f64], control: &FitControl) -> Result<(Vec<f64>, usize, usize)> {
    let mut problem = Tracked::new(obj, x.len());
    problem.interrupt = control.interrupt;
    let g = problem.gradient(x)?;
    let (e, n) = (problem.evals.get(), problem.grads.get());
    Ok((g, e, n))
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

