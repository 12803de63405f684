//! Thin extendr binding: R lists in, core types, plain R lists out.
//! Validation happens in R; this layer only converts and reports core errors.
//!
//! A fit lives in an [`Engine`] behind an external pointer: the R objects it borrows
//! (X, y, the weights, each Z) are held by the handle next to it, so they outlive it.
use extendr_api::prelude::*;
use mixedrs_core::lmm::model::CriterionParts;
use mixedrs_core::{
    simulate_design_with, BootControl, ErrorStructure, Family, Link, GeneralizedLinearMixedModel, fit_glmm, refit_responses, BootType, Approximation, profile_ends, Codes, CorKind, CorStruct, CorrelatedModel, CovForm, Design, Engine, EngineFit, FitControl, FittedParams, VarFunc, VarPart,
    LinearMixedModel, MixedError, ReTerm, Residuals,
};
use std::borrow::Cow;
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

extern "C" {
    fn R_ToplevelExec(fun: extern "C" fn(*mut c_void), data: *mut c_void) -> c_int;
    fn R_CheckUserInterrupt();
}

extern "C" fn check_interrupt(_: *mut c_void) {
    unsafe { R_CheckUserInterrupt() }
}

/// Whether the user pressed Ctrl-C. R_CheckUserInterrupt longjmps on an interrupt;
/// R_ToplevelExec catches that jump in C, so it never crosses a Rust frame.
fn interrupted() -> bool {
    unsafe { R_ToplevelExec(check_interrupt, std::ptr::null_mut()) == 0 }
}

/// Named list to map; extendr 0.9 deprecates this in favour of TryFrom, which we
/// would only wrap again.
#[allow(deprecated)]
fn named(list: List) -> HashMap<&'static str, Robj> {
    list.into_hashmap()
}

/// Error text for R: a class tag the R wrapper turns into a condition class, then the
/// message. `%` is doubled because extendr passes the text to Rf_error as a format.
fn to_r_error(e: MixedError) -> Error {
    Error::Other(format!("mixedrs_{}_error|{}", e.kind(), e.message()).replace('%', "%%"))
}

fn input(msg: &str) -> Error {
    to_r_error(MixedError::Input(msg.to_string()))
}

fn field<'a>(map: &'a HashMap<&str, Robj>, name: &str) -> std::result::Result<&'a Robj, Error> {
    map.get(name).ok_or_else(|| input(&format!("missing field '{}'", name)))
}

fn reals(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<Vec<f64>, Error> {
    field(map, name)?
        .as_real_slice()
        .map(|s| s.to_vec())
        .ok_or_else(|| input(&format!("field '{}' must be a double vector", name)))
}

fn opt_reals(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<Option<Vec<f64>>, Error> {
    match map.get(name) {
        None => Ok(None),
        Some(r) if r.is_null() => Ok(None),
        Some(_) => reals(map, name).map(Some),
    }
}

fn int(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<usize, Error> {
    field(map, name)?
        .as_integer()
        .filter(|v| *v >= 0)
        .map(|v| v as usize)
        .ok_or_else(|| input(&format!("field '{}' must be a non-negative integer", name)))
}

/// 0-based indices (an integer vector).
fn indices(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<Vec<usize>, Error> {
    Ok(field(map, name)?
        .as_integer_slice()
        .ok_or_else(|| input(&format!("'{}' must be an integer vector", name)))?
        .iter()
        .map(|&w| w.max(0) as usize)
        .collect())
}

fn real(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<f64, Error> {
    field(map, name)?.as_real().ok_or_else(|| input(&format!("field '{}' must be a number", name)))
}

fn flag(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<bool, Error> {
    field(map, name)?.as_bool().ok_or_else(|| input(&format!("field '{}' must be TRUE or FALSE", name)))
}

/// A double vector of the spec, borrowed from R (protected for the whole call).
fn reals_ref<'a>(map: &'a HashMap<&str, Robj>, name: &str) -> std::result::Result<&'a [f64], Error> {
    field(map, name)?.as_real_slice().ok_or_else(|| input(&format!("field '{}' must be a double vector", name)))
}

fn read_term<'a>(map: &'a HashMap<&str, Robj>) -> std::result::Result<ReTerm<'a>, Error> {
    // R's factor codes, borrowed (checked in ReTerm::new)
    let codes = field(map, "codes")?
        .as_integer_slice()
        .ok_or_else(|| input("term codes must be an integer vector"))?;
    let codes = Codes::one_based(codes);
    let cov = if flag(map, "diagonal")? { CovForm::Diagonal } else { CovForm::Full };
    ReTerm::new(codes, int(map, "nlevels")?, reals_ref(map, "Z")?, int(map, "k")?, cov).map_err(to_r_error)
}

fn list_of_reals(v: Vec<Vec<f64>>) -> Robj {
    List::from_values(v.into_iter().map(Robj::from)).into()
}

/// A spec's R objects by name (and each term's), held for the call so that the model
/// can borrow their vectors instead of copying them.
struct SpecObjects {
    map: HashMap<&'static str, Robj>,
    terms: Vec<HashMap<&'static str, Robj>>,
}

fn spec_objects(spec: List) -> std::result::Result<SpecObjects, Error> {
    let map = named(spec);
    let terms_list: List = field(&map, "terms")?.try_into().map_err(|_| input("'terms' must be a list"))?;
    let terms = terms_list
        .values()
        .map(|t| List::try_from(t).map(named).map_err(|_| input("each random-effects term must be a list")))
        .collect::<std::result::Result<_, _>>()?;
    Ok(SpecObjects { map, terms })
}

fn read_cor(robj: &Robj) -> std::result::Result<(CorStruct, Vec<f64>), Error> {
    let list: List = robj.try_into().map_err(|_| input("'cor' must be a list"))?;
    let map = named(list);
    let kind = match field(&map, "type")?.as_str() {
        Some("AR1") => CorKind::Ar1,
        Some("CAR1") => CorKind::Car1,
        Some("CompSymm") => CorKind::CompSymm,
        Some("RandomWalk") => CorKind::RandomWalk { nugget: flag(&map, "nugget")? },
        _ => return Err(input("unknown correlation structure")),
    };
    let codes: Vec<u32> = field(&map, "groups")?
        .as_integer_slice()
        .ok_or_else(|| input("correlation groups must be integer codes"))?
        .iter()
        .map(|&c| if c >= 1 { Ok((c - 1) as u32) } else { Err(input("correlation group codes must be positive (no NA)")) })
        .collect::<std::result::Result<_, _>>()?;
    let cor = CorStruct::new(kind, &codes, reals(&map, "times")?).map_err(to_r_error)?;
    let eta = match opt_reals(&map, "start")? {
        Some(phi) => cor.unconstrained(&phi),
        None => cor.unconstrained(&vec![if kind == CorKind::Car1 { 0.5 } else { 0.1 }; cor.npar()]),
    };
    Ok((cor, eta))
}


/// The variance function: `spec$var$parts`, each a list with `type` and its covariate
/// or 1-based strata codes, and `spec$var$start` (natural scale) or NULL.
/// The variance function a spec describes, and η at its `start`; `new_data` for a
/// fitted one on new data, where its strata need not all occur.
fn read_var(robj: &Robj, n: usize, new_data: bool) -> std::result::Result<(VarFunc, Vec<f64>), Error> {
    let list: List = robj.try_into().map_err(|_| input("'var' must be a list"))?;
    let map = named(list);
    let parts_list: List = field(&map, "parts")?.try_into().map_err(|_| input("'var$parts' must be a list"))?;
    let mut parts = Vec::new();
    for part in parts_list.values() {
        let pm = named(List::try_from(part).map_err(|_| input("each variance function part must be a list"))?);
        let part = match field(&pm, "type")?.as_str() {
            Some("Ident") => {
                let strata = field(&pm, "strata")?
                    .as_integer_slice()
                    .ok_or_else(|| input("varIdent strata must be integer codes"))?
                    .iter()
                    .map(|&c| if c >= 1 { Ok((c - 1) as u32) } else { Err(input("varIdent strata codes must be positive (no NA)")) })
                    .collect::<std::result::Result<_, _>>()?;
                VarPart::Ident { strata, nstrata: int(&pm, "nstrata")? }
            }
            Some("Power") => VarPart::Power { covariate: reals(&pm, "covariate")? },
            Some("Exp") => VarPart::Exp { covariate: reals(&pm, "covariate")? },
            Some("ConstPower") => VarPart::ConstPower { covariate: reals(&pm, "covariate")? },
            Some("Fixed") => VarPart::Fixed { covariate: reals(&pm, "covariate")? },
            _ => return Err(input("unknown variance function")),
        };
        parts.push(part);
    }
    let var = if new_data { VarFunc::on_new_data(parts, n) } else { VarFunc::new(parts, n) }.map_err(to_r_error)?;
    let start = reals(&map, "start")?;
    if start.len() != var.npar() {
        return Err(input("the variance function's start has the wrong length"));
    }
    let eta = var.unconstrained(&start);
    Ok((var, eta))
}

/// The terms of a spec, borrowing each Z.
fn read_terms(objects: &SpecObjects) -> std::result::Result<Vec<ReTerm<'_>>, Error> {
    objects.terms.iter().map(read_term).collect()
}

/// The model a spec describes: independent residuals, or correlated when `spec$cor` is
/// set. It borrows X, y, the weights and each Z from the spec's R objects.
fn read_residuals(objects: &SpecObjects) -> std::result::Result<Residuals<'_>, Error> {
    let spec = &objects.map;
    let terms = read_terms(objects)?;
    let (x, p, y, reml) = (reals_ref(spec, "X")?, int(spec, "p")?, reals_ref(spec, "y")?, flag(spec, "REML")?);
    let given = |name: &str| spec.get(name).filter(|o| !o.is_null());
    if given("cor").is_some() || given("var").is_some() {
        let (cor, mut eta) = match given("cor") {
            Some(c) => read_cor(c)?,
            None => (CorStruct::independent(y.len()), Vec::new()),
        };
        let var = match given("var") {
            Some(v) => {
                let (var, var_eta) = read_var(v, y.len(), false)?;
                eta.extend(var_eta);
                Some(var)
            }
            None => None,
        };
        return Ok(Residuals::Correlated(CorrelatedModel::new(terms, x, p, y, reml, cor, var, eta).map_err(to_r_error)?));
    }
    match spec.get("cor") {
        _ => {
            let weights = match spec.get("weights") {
                Some(w) if !w.is_null() => Some(Cow::Borrowed(reals_ref(spec, "weights")?)),
                _ => None,
            };
            Ok(Residuals::Independent(LinearMixedModel::new(terms, x, p, y, weights, reml).map_err(to_r_error)?))
        }
    }
}

/// lme4's `verbose` trace: one line per criterion evaluation.
fn print_evaluation(count: usize, value: f64, x: &[f64]) {
    let x: Vec<String> = x.iter().map(|v| format!("{:.6}", v)).collect();
    rprintln!("evaluation {:>4}: criterion = {:.8}  at ({})", count, value, x.join(", "));
}

fn read_control(ctl: &HashMap<&str, Robj>) -> std::result::Result<FitControl, Error> {
    let max_evals = match ctl.get("max_evals") {
        Some(r) if !r.is_null() => Some(int(ctl, "max_evals")?),
        _ => None,
    };
    let verbose = match ctl.get("verbose") {
        Some(r) if !r.is_null() => int(ctl, "verbose")? > 0,
        _ => false,
    };
    Ok(FitControl {
        max_iter: int(ctl, "max_iter")? as u64,
        max_restarts: int(ctl, "max_restarts")?,
        grad_tol: real(ctl, "grad_tol")?,
        boundary_tol: real(ctl, "boundary_tol")?,
        start: opt_reals(ctl, "start")?,
        interrupt: Some(interrupted),
        max_evals,
        trace: if verbose { Some(print_evaluation) } else { None },
    })
}

/// What R's handle points to: the engine, and the R objects whose vectors it borrows.
/// Fields drop in order, so the engine goes before the objects it borrows from.
struct EngineHandle {
    engine: Engine<'static>,
    _objects: Box<SpecObjects>,
}

fn new_handle(spec: List) -> std::result::Result<Robj, Error> {
    let objects = Box::new(spec_objects(spec)?);
    let residuals = read_residuals(&objects)?;
    // SAFETY: the engine borrows the vectors of R objects that `objects` holds (and so
    // protects) for as long as the handle lives; R never moves a vector's data, and the
    // box keeps `objects` at one address. The engine is dropped first (field order).
    let residuals: Residuals<'static> = unsafe { std::mem::transmute::<Residuals<'_>, Residuals<'static>>(residuals) };
    let handle = EngineHandle { engine: Engine::new(residuals), _objects: objects };
    Ok(ExternalPtr::new(handle).into())
}

/// The engine behind an R handle (an error when the handle is stale: a fit restored
/// from disk, whose pointer is NULL).
fn with_engine<T>(handle: Robj, f: impl FnOnce(&mut Engine<'static>) -> std::result::Result<T, Error>) -> std::result::Result<T, Error> {
    let mut ptr: ExternalPtr<EngineHandle> = handle.try_into().map_err(|_| input("not a live engine handle"))?;
    let h = ptr.try_addr_mut().map_err(|_| input("the engine handle is empty (a fit restored from disk)"))?;
    f(&mut h.engine)
}

fn theta_layout(model: &LinearMixedModel) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let (mut th_term, mut th_row, mut th_col) = (Vec::new(), Vec::new(), Vec::new());
    for (t, term) in model.terms.iter().enumerate() {
        for &(i, j) in term.theta_layout() {
            th_term.push(t as i32 + 1);
            th_row.push(i as i32 + 1);
            th_col.push(j as i32 + 1);
        }
    }
    (th_term, th_row, th_col)
}

/// Each term's Λ (k×k column-major) at θ: θ → Λ is the core's, never R's.
fn lambdas(model: &LinearMixedModel, theta: &[f64]) -> std::result::Result<Robj, Error> {
    if theta.len() != model.ntheta() {
        return Err(input("theta has the wrong length"));
    }
    let mut off = 0;
    let mut out = Vec::with_capacity(model.terms.len());
    for t in &model.terms {
        let mut lam = vec![0.0; t.k * t.k];
        t.fill_lambda(&theta[off..off + t.ntheta()], &mut lam);
        off += t.ntheta();
        out.push(lam);
    }
    Ok(list_of_reals(out))
}

/// The fit as R reads it; with a residual structure, the variance function's
/// multipliers and the whitened residuals too (NULL otherwise).
fn fit_list(engine: &Engine<'static>, f: EngineFit, structure: Option<(Vec<f64>, Vec<f64>)>) -> std::result::Result<List, Error> {
    let model = engine.model.lmm();
    let (th_term, th_row, th_col) = theta_layout(model);
    let logdet = f.cor.as_ref().map_or(0.0, |c| c.logdet);
    let parts = CriterionParts { ldl2: f.fit.ldl2, ldrx2: f.fit.ldrx2, pwrss: f.fit.pwrss };
    let crit_reml = model.criterion_from(&parts, true) + logdet;
    let crit_ml = model.criterion_from(&parts, false) + logdet;
    let lam = lambdas(model, &f.fit.optim.theta)?;
    let (cor_phi, cor_eta): (Robj, Robj) = match &f.cor {
        Some(c) => (c.phi.clone().into(), c.eta.clone().into()),
        None => (().into(), ().into()),
    };
    let fit = f.fit;
    let names = [
        "theta", "beta", "sigma", "b", "u", "vcov", "ldL2", "ldRX2", "pwrss", "criterion", "criterion_reml", "criterion_ml",
        "fitted", "evaluations", "gradients", "converged", "message", "grad_norm", "theta_term", "theta_row", "theta_col",
        "lambdas", "cor_phi", "cor_eta", "ldPsi", "var_sd", "whitened_residuals",
    ];
    let values: Vec<Robj> = vec![
        fit.optim.theta.into(),
        fit.beta.into(),
        fit.sigma.into(),
        list_of_reals(fit.b),
        list_of_reals(fit.u),
        fit.vcov_beta.into(),
        fit.ldl2.into(),
        fit.ldrx2.into(),
        fit.pwrss.into(),
        fit.criterion.into(),
        crit_reml.into(),
        crit_ml.into(),
        fit.fitted.into(),
        (fit.optim.evaluations as i32).into(),
        (fit.optim.gradients as i32).into(),
        fit.optim.converged.into(),
        fit.optim.message.into(),
        fit.optim.grad_norm.into(),
        th_term.into(),
        th_row.into(),
        th_col.into(),
        lam,
        cor_phi,
        cor_eta,
        logdet.into(),
        structure.as_ref().map_or(().into(), |(sd, _)| Robj::from(sd.clone())),
        structure.map_or(().into(), |(_, w)| Robj::from(w)),
    ];
    List::from_names_and_values(names, values)
}

fn run_fit(handle: Robj, control: List) -> std::result::Result<List, Error> {
    let ctl = named(control);
    let fc = read_control(&ctl)?;
    let optimize = flag(&ctl, "optimize")?;
    with_engine(handle, |engine| {
        let f = engine.fit(&fc, optimize).map_err(to_r_error)?;
        let structure = engine.residual_structure(&f.fit.beta, &f.fit.b).map_err(to_r_error)?;
        fit_list(engine, f, structure)
    })
}

fn run_condvar(handle: Robj, sigma: f64) -> std::result::Result<List, Error> {
    with_engine(handle, |engine| {
        let cv = engine.cond_var(sigma).map_err(to_r_error)?;
        Ok(List::from_values(cv.into_iter().map(Robj::from)))
    })
}

fn run_varpar(handle: Robj, params: &[f64], sigma: f64) -> std::result::Result<List, Error> {
    with_engine(handle, |engine| {
        let d = engine.varpar(params, sigma).map_err(to_r_error)?;
        Ok(List::from_names_and_values(["hessian", "jacobian", "vcov"], [Robj::from(d.hessian), list_of_reals(d.jacobian), Robj::from(d.vcov)])?)
    })
}

fn run_profile(handle: Robj, control: List) -> std::result::Result<List, Error> {
    let ctl = named(control);
    let fc = read_control(&ctl)?;
    let z = real(&ctl, "z")?;
    let which = indices(&ctl, "which")?;
    let covariances = match ctl.get("covariances") {
        Some(r) if !r.is_null() => flag(&ctl, "covariances")?,
        _ => false,
    };
    with_engine(handle, |engine| {
        let r = engine.profile(z, &which, &fc, covariances).map_err(to_r_error)?;
        let (lo, hi): (Vec<f64>, Vec<f64>) = r.intervals.into_iter().unzip();
        Ok(List::from_names_and_values(
            ["theta", "deviance", "estimates", "lower", "upper"],
            [Robj::from(r.theta_ml), Robj::from(r.deviance), Robj::from(r.estimates), Robj::from(lo), Robj::from(hi)],
        )?)
    })
}

fn seed_of(map: &HashMap<&str, Robj>) -> std::result::Result<u64, Error> {
    let s = real(map, "seed")?;
    if !(s >= 0.0 && s < 9007199254740992.0) {
        return Err(input("'seed' must be a non-negative number below 2^53"));
    }
    Ok(s as u64)
}

/// Simulation from a design (no model, so no pass over the rows to form A).
fn run_simulate(spec: List, params: List, control: List) -> std::result::Result<List, Error> {
    let objects = spec_objects(spec)?;
    let terms = read_terms(&objects)?;
    let (x, p, n) = (reals_ref(&objects.map, "X")?, int(&objects.map, "p")?, int(&objects.map, "n")?);
    if x.len() != n * p {
        return Err(input("X does not have n rows"));
    }
    let weights = match objects.map.get("weights") {
        Some(w) if !w.is_null() => Some(reals_ref(&objects.map, "weights")?),
        _ => None,
    };
    if weights.is_some_and(|w| w.len() != n) || terms.iter().any(|t| t.codes.len() != n) {
        return Err(input("the weights or a term do not have n rows"));
    }
    let par = read_params(params)?;
    if par.beta.len() != p || par.theta.len() != terms.iter().map(|t| t.ntheta()).sum::<usize>() {
        return Err(input("the parameters do not match the design"));
    }
    let ctl = named(control);
    let design = Design { x, n, terms: &terms, weights };
    // correlated or heteroscedastic errors: the correlation (its `start` the fitted φ)
    // and the variance function's standard-deviation multipliers
    let errors = {
        let cor = match objects.map.get("cor") {
            Some(c) if !c.is_null() => {
                let (cor, eta) = read_cor(c)?;
                let phi = cor.natural(&eta);
                Some((cor, phi))
            }
            _ => None,
        };
        // the variance function on new data: its multipliers at the fitted parameters
        let sd = match objects.map.get("var") {
            Some(v) if !v.is_null() => {
                let (var, eta) = read_var(v, n, true)?;
                Some(var.multipliers(&eta, n).map_err(to_r_error)?.0)
            }
            _ => opt_reals(&objects.map, "var_sd")?,
        };
        if sd.as_ref().is_some_and(|s| s.len() != n) || cor.as_ref().is_some_and(|(c, _)| c.times.len() != n) {
            return Err(input("the residual structure does not have n rows"));
        }
        if cor.is_some() || sd.is_some() { Some(ErrorStructure { cor, sd }) } else { None }
    };
    let sims = simulate_design_with(&design, &par, flag(&ctl, "use_u")?, int(&ctl, "nsim")?, seed_of(&ctl)?, errors.as_ref())
        .map_err(to_r_error)?;
    // straight into one R vector, replicate after replicate
    let y: Robj = sims.iter().flatten().copied().collect_robj();
    Ok(List::from_names_and_values(["y"], [y])?)
}

fn run_bootstrap(handle: Robj, params: List, control: List) -> std::result::Result<List, Error> {
    let par = read_params(params)?;
    let ctl = named(control);
    let fc = read_control(&ctl)?;
    let kind = match field(&ctl, "type")?.as_str() {
        Some("parametric") => BootType::Parametric,
        Some("residual") => BootType::Residual,
        _ => return Err(input("bootstrap type must be 'parametric' or 'residual'")),
    };
    let bc = BootControl { nsim: int(&ctl, "nsim")?, seed: seed_of(&ctl)?, threads: int(&ctl, "threads")?.max(1), kind };
    let show = flag(&ctl, "progress")?;
    let start = Instant::now();
    let mut shown = false;
    let mut stopped = false;
    let mut progress = |done: usize, total: usize| -> bool {
        if show && (shown || start.elapsed().as_secs_f64() > 2.0) {
            shown = true;
            let width = 40;
            let filled = width * done / total.max(1);
            rprint!("\r  bootstrap [{}{}] {}/{}", "=".repeat(filled), " ".repeat(width - filled), done, total);
            if done == total {
                rprint!("\n");
            }
        }
        if interrupted() {
            stopped = true;
            if shown {
                rprint!("\n");
            }
            return false;
        }
        true
    };
    let res = with_engine(handle, |engine| engine.bootstrap(&par, &bc, &fc, &mut progress).map_err(to_r_error))?;
    let flat: Vec<f64> = res.stats.into_iter().flatten().collect();
    Ok(List::from_names_and_values(
        ["stats", "t0", "failed", "done", "interrupted"],
        [Robj::from(flat), Robj::from(res.t0), Robj::from(res.failed as i32), Robj::from(res.done as i32), Robj::from(stopped)],
    )?)
}

fn read_params(params: List) -> std::result::Result<FittedParams, Error> {
    let map = named(params);
    let b_list: List = field(&map, "b")?.try_into().map_err(|_| input("'b' must be a list"))?;
    let b = b_list
        .values()
        .map(|v| v.as_real_slice().map(|s| s.to_vec()).ok_or_else(|| input("'b' must hold double vectors")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(FittedParams { theta: reals(&map, "theta")?, beta: reals(&map, "beta")?, sigma: real(&map, "sigma")?, b })
}


fn range_of(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<(usize, usize), Error> {
    let v = reals(map, name)?;
    match v.as_slice() {
        [a, b] if *a >= 0.0 && *b >= *a => Ok((*a as usize, *b as usize)),
        [a] if *a >= 0.0 => Ok((*a as usize, *a as usize)),
        _ => Err(input(&format!("'{}' must be a count or a range c(lo, hi)", name))),
    }
}

fn digits_of(map: &HashMap<&str, Robj>, name: &str) -> std::result::Result<Option<i32>, Error> {
    Ok(opt_reals(map, name)?.and_then(|v| v.first().copied()).map(|d| d as i32))
}

fn run_workshop(which: &str, params: List) -> std::result::Result<List, Error> {
    use mixedrs_workshop as workshop;
    let p = named(params);
    let seed = seed_of(&p)?;
    let cols = match which {
        "repeated" => {
            let m = reals(&p, "mean")?;
            if m.len() != 2 {
                return Err(input("'mean' must have two values (F, M)"));
            }
            let (nf, nm) = range_of(&p, "n")?;
            workshop::sim_repeated(seed, nf, nm, m[0], m[1], real(&p, "sd_subject")?, real(&p, "sd")?, range_of(&p, "reps")?, digits_of(&p, "digits")?)
        }
        "lines" => workshop::sim_lines(
            seed,
            int(&p, "n_schools")?,
            range_of(&p, "size")?,
            real(&p, "center")?,
            real(&p, "sd_center")?,
            real(&p, "sd_x")?,
            real(&p, "intercept")?,
            real(&p, "slope")?,
            real(&p, "sd_intercept")?,
            real(&p, "sd_slope")?,
            real(&p, "sd")?,
            (digits_of(&p, "digits")?, digits_of(&p, "x_digits")?),
        ),
        "nested" => {
            let m = reals(&p, "mean")?;
            if m.len() != 2 {
                return Err(input("'mean' must have two values (F, M)"));
            }
            workshop::sim_nested(
                seed,
                int(&p, "n_schools")?,
                range_of(&p, "students")?,
                m[0],
                m[1],
                real(&p, "sd_school")?,
                real(&p, "sd_student")?,
                range_of(&p, "sittings")?,
                real(&p, "sd")?,
                digits_of(&p, "digits")?,
            )
        }
        "growth" => {
            let trees: Vec<usize> = reals(&p, "trees")?.iter().map(|v| v.max(0.0) as usize).collect();
            let slopes = reals(&p, "slopes")?;
            if trees.len() != slopes.len() {
                return Err(input("'trees' must give one count per treatment"));
            }
            workshop::sim_growth(seed, &trees, &slopes, real(&p, "sd_slope")?, real(&p, "sd")?, int(&p, "n_ages")?, digits_of(&p, "digits")?)
        }
        _ => return Err(input("unknown simulator")),
    };
    let names: Vec<&str> = cols.ints.iter().map(|c| c.0).chain(cols.reals.iter().map(|c| c.0)).collect();
    let values: Vec<Robj> = cols.ints.into_iter().map(|c| Robj::from(c.1)).chain(cols.reals.into_iter().map(|c| Robj::from(c.1))).collect();
    List::from_names_and_values(names, values)
}

/// Run a binding body with panics caught and turned into a classed internal error.
fn guarded<F: FnOnce() -> std::result::Result<List, Error>>(f: F) -> extendr_api::Result<List> {
    silence_panics();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(res) => res,
        Err(_) => Err(Error::Other("mixedrs_internal_error|internal error in the Rust engine; please report it".into())),
    }
}

/// Panics are caught above; keep their text off the user's console.
fn silence_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}


/// A new engine for the model a spec describes (the blocks of A formed once).
#[extendr]
fn engine_new(spec: List) -> extendr_api::Result<Robj> {
    silence_panics();
    match catch_unwind(AssertUnwindSafe(|| new_handle(spec))) {
        Ok(res) => res,
        Err(_) => Err(Error::Other("mixedrs_internal_error|internal error in the Rust engine; please report it".into())),
    }
}

/// Whether a handle still points to an engine (FALSE for a fit restored from disk).
#[extendr]
fn engine_alive(handle: Robj) -> bool {
    let ptr: std::result::Result<ExternalPtr<EngineHandle>, _> = handle.try_into();
    matches!(ptr.map(|p| p.try_addr().is_ok()), Ok(true))
}

/// Fit (or evaluate at the start) and leave the factor at the fitted parameters.
#[extendr]
fn engine_fit(handle: Robj, control: List) -> extendr_api::Result<List> {
    guarded(|| run_fit(handle, control))
}

/// Put a restored engine at a fit's parameters [θ, η] without optimising.
#[extendr]
fn engine_set(handle: Robj, params: Vec<f64>) -> extendr_api::Result<List> {
    guarded(|| with_engine(handle, |engine| {
        engine.set_fitted(&params).map_err(to_r_error)?;
        Ok(List::new(0))
    }))
}

/// Profile intervals of the residual structure's parameters (`which`: 0-based into η).
#[extendr]
fn engine_profile_structure(handle: Robj, z: f64, which: Vec<i32>, control: List) -> extendr_api::Result<List> {
    guarded(|| {
        let fc = read_control(&named(control))?;
        let which: Vec<usize> = which.iter().map(|&j| j.max(0) as usize).collect();
        with_engine(handle, |engine| {
            let ends = engine.profile_structure(z, &which, &fc).map_err(to_r_error)?;
            let (lo, hi): (Vec<f64>, Vec<f64>) = ends.into_iter().unzip();
            Ok(List::from_names_and_values(["lower", "upper"], [Robj::from(lo), Robj::from(hi)])?)
        })
    })
}

/// Var(ε)/σ² (dense n×n) at the residual structure's unconstrained parameters η.
#[extendr]
fn engine_residual_cov(handle: Robj, eta: Vec<f64>) -> extendr_api::Result<List> {
    guarded(|| with_engine(handle, |engine| {
        let n = engine.model.lmm().y.len();
        let v = engine.residual_covariance(&eta).map_err(to_r_error)?;
        Ok(List::from_names_and_values(["cov"], [Robj::from(RMatrix::new_matrix(n, n, |i, j| v[i + j * n]))])?)
    }))
}

/// V C e for each column of e (n × k) at the fit's η.
#[extendr]
fn engine_colour(handle: Robj, e: Vec<f64>) -> extendr_api::Result<List> {
    guarded(|| with_engine(handle, |engine| {
        let mut e = e;
        engine.colour(&mut e).map_err(to_r_error)?;
        Ok(List::from_names_and_values(["e"], [Robj::from(e)])?)
    }))
}

/// Conditional covariances of the random effects at the fit, per term.
#[extendr]
fn engine_condvar(handle: Robj, sigma: f64) -> extendr_api::Result<List> {
    guarded(|| run_condvar(handle, sigma))
}

/// Satterthwaite's ingredients: the Hessian over ([θ, η], σ/σ̂) and ∂Var(β̂).
#[extendr]
fn engine_varpar(handle: Robj, params: Vec<f64>, sigma: f64) -> extendr_api::Result<List> {
    guarded(|| run_varpar(handle, &params, sigma))
}

/// The criterion (REML or ML, as the model was built) at [θ, η]: lme4's devfun.
#[extendr]
fn engine_objective(handle: Robj, params: Vec<f64>) -> extendr_api::Result<List> {
    guarded(|| with_engine(handle, |engine| {
        let v = engine.objective(&params).map_err(to_r_error)?;
        Ok(List::from_names_and_values(["criterion"], [Robj::from(v)])?)
    }))
}

/// lme4's start: [θ, η] where lme4's devfun starts.
#[extendr]
fn engine_start(handle: Robj) -> extendr_api::Result<List> {
    guarded(|| with_engine(handle, |engine| Ok(List::from_names_and_values(["theta"], [Robj::from(engine.lme4_start())])?)))
}

/// Each term's Λ at θ.
#[extendr]
fn engine_lambdas(handle: Robj, theta: Vec<f64>) -> extendr_api::Result<List> {
    guarded(|| with_engine(handle, |engine| Ok(List::try_from(lambdas(engine.model.lmm(), &theta)?)?)))
}

/// Profile-likelihood confidence intervals (ML deviance, as lme4's profile).
#[extendr]
fn engine_profile(handle: Robj, control: List) -> extendr_api::Result<List> {
    guarded(|| run_profile(handle, control))
}

/// Parametric or residual bootstrap: simulate and refit in Rust, on several threads.
#[extendr]
fn engine_bootstrap(handle: Robj, params: List, control: List) -> extendr_api::Result<List> {
    guarded(|| run_bootstrap(handle, params, control))
}

/// A GLMM fit: glmer's two stages (or the first alone for nAGQ = 0), the Hessian over
/// [θ, β] for the covariance of β̂.
#[extendr]
fn glmm_fit_rs(spec: List, control: List) -> extendr_api::Result<List> {
    guarded(|| run_glmm_fit(spec, control))
}

fn run_glmm_fit(spec: List, control: List) -> std::result::Result<List, Error> {
    let objects = spec_objects(spec)?;
    let mut m = glmm_model(&objects)?;
    let ctl = named(control);
    let fc = read_control(&ctl)?;
    let nodes = agq_nodes(&ctl)?;
    let approx = if nodes.is_empty() { Approximation::Laplace } else { Approximation::Agq(&nodes) };
    let f = fit_glmm(&mut m, &fc, flag(&ctl, "nagq0")?, flag(&ctl, "hessian")?, approx).map_err(to_r_error)?;
    let (th_term, th_row, th_col) = theta_layout(m.working_model());
    let lam = lambdas(m.working_model(), &f.theta)?;
    let cond_var = m.cond_var().map_err(to_r_error)?;
    let names = [
        "theta", "beta", "u", "b", "eta", "mu", "deviance", "dev_resid", "sqr_u", "ldL2", "hessian", "evaluations", "converged", "message",
        "theta_term", "theta_row", "theta_col", "lambdas", "vcov_rx", "cond_var",
    ];
    let values: Vec<Robj> = vec![
        f.theta.into(),
        f.beta.into(),
        list_of_reals(f.state.u),
        list_of_reals(f.state.b),
        f.state.eta.into(),
        f.state.mu.into(),
        f.deviance.into(),
        f.state.dev_resid.into(),
        f.state.sqr_u.into(),
        f.state.ldl2.into(),
        f.hessian.map_or(().into(), Robj::from),
        (f.optim.evaluations as i32).into(),
        f.optim.converged.into(),
        f.optim.message.into(),
        th_term.into(),
        th_row.into(),
        th_col.into(),
        lam,
        f.vcov_rx.map_or(().into(), Robj::from),
        list_of_reals(cond_var),
    ];
    Ok(List::from_names_and_values(names, values)?)
}

/// The GLMM of a spec (glmm_spec() in R/glmm.R).
/// Bootstrap refits of a GLMM: each column of `ys` (n × nsim) refitted as `refit()`
/// would, on `threads` threads; the statistics row by row and the failures.
#[extendr]
fn glmm_refits_rs(spec: List, ys: Vec<f64>, control: List) -> extendr_api::Result<List> {
    guarded(|| {
        let objects = spec_objects(spec)?;
        let m = glmm_model(&objects)?;
        let ctl = named(control);
        let fc = read_control(&ctl)?;
        let nodes = agq_nodes(&ctl)?;
        let approx = if nodes.is_empty() { Approximation::Laplace } else { Approximation::Agq(&nodes) };
        let n = m.n();
        if n == 0 || ys.len() % n != 0 {
            return Err(input("the responses are not columns of the data's length"));
        }
        let cols: Vec<Vec<f64>> = ys.chunks(n).map(|c| c.to_vec()).collect();
        let (rows, failed) = refit_responses(&m, &cols, &fc, flag(&ctl, "nagq0")?, approx, int(&ctl, "threads")?).map_err(to_r_error)?;
        let stats: Robj = rows.iter().flatten().copied().collect_robj();
        Ok(List::from_names_and_values(["stats", "failed"], [stats, Robj::from(failed as i32)])?)
    })
}

fn glmm_model(objects: &SpecObjects) -> std::result::Result<GeneralizedLinearMixedModel<'_>, Error> {
    let map = &objects.map;
    let terms = read_terms(objects)?;
    let family = match field(map, "family")?.as_str() {
        Some("binomial") => Family::Binomial,
        Some("poisson") => Family::Poisson,
        _ => return Err(input("unknown family")),
    };
    let link = match field(map, "link")?.as_str() {
        Some("logit") => Link::Logit,
        Some("probit") => Link::Probit,
        Some("cloglog") => Link::Cloglog,
        Some("log") => Link::Log,
        _ => return Err(input("unknown link")),
    };
    let p = int(map, "p")?;
    GeneralizedLinearMixedModel::new(terms, reals_ref(map, "X")?, p, reals(map, "y")?, reals(map, "wt")?, reals(map, "offset")?, family, link)
        .map_err(to_r_error)
}

/// The quadrature rule in a control list (agq_z, agq_w), empty for the Laplace deviance.
fn agq_nodes(ctl: &HashMap<&str, Robj>) -> std::result::Result<Vec<(f64, f64)>, Error> {
    match (opt_reals(ctl, "agq_z")?, opt_reals(ctl, "agq_w")?) {
        (Some(z), Some(w)) if z.len() == w.len() => Ok(z.into_iter().zip(w).collect()),
        (None, None) => Ok(Vec::new()),
        _ => Err(input("the quadrature nodes and weights differ in length")),
    }
}

/// Profile confidence limits of a GLMM fit's [θ, β] (control: start = the fit's
/// [θ, β], cutoff = qchisq(level, 1), se = first steps, NA where unknown).
#[extendr]
fn glmm_profile_rs(spec: List, control: List) -> extendr_api::Result<List> {
    guarded(|| run_glmm_profile(spec, control))
}

fn run_glmm_profile(spec: List, control: List) -> std::result::Result<List, Error> {
    let objects = spec_objects(spec)?;
    let mut m = glmm_model(&objects)?;
    let ctl = named(control);
    let mut fc = read_control(&ctl)?;
    let x_hat = fc.start.take().ok_or_else(|| input("the fit's parameters are needed"))?;
    let nth = m.ntheta();
    if x_hat.len() != nth + m.p {
        return Err(input("the fit's parameters have the wrong length"));
    }
    let nodes = agq_nodes(&ctl)?;
    let approx = if nodes.is_empty() { Approximation::Laplace } else { Approximation::Agq(&nodes) };
    let cutoff = real(&ctl, "cutoff")?;
    let se = reals(&ctl, "se")?;
    let dev_min = m.deviance_at(&x_hat[..nth], &x_hat[nth..], approx).map_err(to_r_error)?;
    let which = indices(&ctl, "which")?;
    let ends = profile_ends(&mut m, &x_hat, dev_min, nth, &se, cutoff, &which, approx, &fc).map_err(to_r_error)?;
    let flat: Vec<f64> = ends.iter().flat_map(|e| e.iter().copied()).collect();
    Ok(List::from_names_and_values(["ends", "deviance"], [Robj::from(flat), Robj::from(dev_min)])?)
}

/// Simulated responses from a design and parameters (one column per replicate, flattened).
#[extendr]
fn simulate_rs(spec: List, params: List, control: List) -> extendr_api::Result<List> {
    guarded(|| run_simulate(spec, params, control))
}

/// The workshop's data simulators; returns the columns of one data set.
#[extendr]
fn sim_workshop_rs(which: &str, params: List) -> extendr_api::Result<List> {
    let which = which.to_string();
    guarded(move || run_workshop(&which, params))
}

/// Upper-tail probabilities for p-values: `kind` "t" (two-sided, df1), "F" (df1, df2)
/// or "chisq" (df1), element by element.
fn run_pvalues(kind: &str, stat: &[f64], df1: &[f64], df2: &[f64]) -> std::result::Result<List, Error> {
    use mixedrs_core::inference::distributions::{chisq_upper, f_upper, t_two_sided};
    let n = stat.len();
    if df1.len() != n || (kind == "F" && df2.len() != n) {
        return Err(input("statistics and degrees of freedom differ in length"));
    }
    let p: Vec<f64> = match kind {
        "t" => (0..n).map(|i| t_two_sided(stat[i], df1[i])).collect(),
        "F" => (0..n).map(|i| f_upper(stat[i], df1[i], df2[i])).collect(),
        "chisq" => (0..n).map(|i| chisq_upper(stat[i], df1[i])).collect(),
        _ => return Err(input("unknown distribution for p-values")),
    };
    Ok(List::from_names_and_values(["p"], [Robj::from(p)])?)
}

#[extendr]
fn pvalues_rs(kind: &str, stat: Vec<f64>, df1: Vec<f64>, df2: Vec<f64>) -> extendr_api::Result<List> {
    let kind = kind.to_string();
    guarded(move || run_pvalues(&kind, &stat, &df1, &df2))
}

extendr_module! {
    mod mixedrs;
    fn pvalues_rs;
    fn engine_new;
    fn engine_alive;
    fn engine_fit;
    fn engine_set;
    fn engine_condvar;
    fn engine_varpar;
    fn engine_objective;
    fn engine_start;
    fn engine_lambdas;
    fn engine_profile;
    fn engine_profile_structure;
    fn engine_residual_cov;
    fn engine_colour;
    fn engine_bootstrap;
    fn simulate_rs;
    fn glmm_fit_rs;
    fn glmm_profile_rs;
    fn glmm_refits_rs;
    fn sim_workshop_rs;
}
