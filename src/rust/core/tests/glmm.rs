//! The GLMM's exact Laplace gradient against central differences of the deviance, on
//! crossed data with a vector-valued, a scalar and a diagonal term; and the AGQ
//! deviance with one node equal to the Laplace deviance.
mod common;
use mixedrs_core::{Approximation, Family, GeneralizedLinearMixedModel, Link};

fn glmm_data(family: Family, seed: u64) -> GeneralizedLinearMixedModel<'static> {
    let d = common::crossed_data(seed, false);
    let n = d.y.len();
    // a response from the linear data: counts or successes out of 1..4 trials
    let y: Vec<f64> = d.y.iter().map(|v| match family {
        Family::Poisson => (v * 0.8).exp().round().min(40.0),
        Family::Binomial => if *v > 2.0 { 1.0 } else { 0.0 },
    }).collect();
    let (y, wt): (Vec<f64>, Vec<f64>) = match family {
        Family::Poisson => (y, vec![1.0; n]),
        Family::Binomial => {
            let trials: Vec<f64> = (0..n).map(|o| (1 + o % 4) as f64).collect();
            let succ: Vec<f64> = (0..n).map(|o| if y[o] > 0.0 { trials[o] - (o % 2) as f64 } else { (o % 2) as f64 }).collect();
            (succ.iter().zip(&trials).map(|(s, t)| (s / t).clamp(0.0, 1.0)).collect(), trials)
        }
    };
    let link = match family { Family::Poisson => Link::Log, Family::Binomial => Link::Logit };
    GeneralizedLinearMixedModel::new(d.terms, d.x, d.p, y, wt, vec![0.0; n], family, link).unwrap()
}

fn check_gradient(family: Family) {
    let mut m = glmm_data(family, 7);
    assert!(m.has_exact_gradient());
    let theta = vec![0.6, 0.1, 0.3, 0.5, 0.4, 0.2];
    let beta = vec![-0.3, 0.2, 0.1];
    let mut x = theta.clone();
    x.extend(&beta);
    let nth = theta.len();
    let (dev, grad) = m.laplace_gradient(&theta, &beta).unwrap();
    let f0 = m.deviance_at(&theta, &beta, Approximation::Laplace).unwrap();
    assert!((dev - f0).abs() < 1e-8 * f0.abs());
    // a point away from the optimum, so that the comparison is not of zeros
    assert!(grad.iter().map(|g| g.abs()).sum::<f64>() > 1.0);
    for i in 0..x.len() {
        let h = 1e-5;
        let mut xp = x.clone();
        xp[i] += h;
        let mut xm = x.clone();
        xm[i] -= h;
        let fp = m.deviance_at(&xp[..nth], &xp[nth..], Approximation::Laplace).unwrap();
        let fm = m.deviance_at(&xm[..nth], &xm[nth..], Approximation::Laplace).unwrap();
        let fd = (fp - fm) / (2.0 * h);
        assert!((grad[i] - fd).abs() < 1e-4 * (1.0 + fd.abs()), "{:?} coordinate {}: exact {} vs differences {}", family, i, grad[i], fd);
    }
}

#[test]
fn laplace_gradient_matches_differences_binomial() {
    check_gradient(Family::Binomial);
}

#[test]
fn laplace_gradient_matches_differences_poisson() {
    check_gradient(Family::Poisson);
}

/// The fit's Hessian (forward differences of the exact gradient, in parallel from the
/// optimum) against central differences of the gradient, and the fit at a stationary
/// point of the Laplace deviance.
#[test]
fn fit_hessian_matches_central_differences() {
    use mixedrs_core::{fit_glmm, FitControl};
    for family in [Family::Binomial, Family::Poisson] {
        let mut m = glmm_data(family, 11);
        let f = fit_glmm(&mut m, &FitControl::default(), false, true, Approximation::Laplace).unwrap();
        let h = f.hessian.clone().unwrap();
        let nth = f.theta.len();
        let mut x0 = f.theta.clone();
        x0.extend(&f.beta);
        let k = x0.len();
        let (_, g0) = m.laplace_gradient(&f.theta, &f.beta).unwrap();
        // stationary where θ is interior
        for (i, g) in g0.iter().enumerate() {
            if i >= nth || f.theta[i].abs() > 1e-3 {
                assert!(g.abs() < 1e-2, "{:?}: gradient {} at the optimum is {}", family, i, g);
            }
        }
        for i in 0..k {
            let s = 1e-4 * x0[i].abs().max(1.0);
            let mut xp = x0.clone();
            xp[i] += s;
            let mut xm = x0.clone();
            xm[i] -= s;
            let gp = m.laplace_gradient(&xp[..nth], &xp[nth..]).unwrap().1;
            let gm = m.laplace_gradient(&xm[..nth], &xm[nth..]).unwrap().1;
            for j in 0..k {
                let c = (gp[j] - gm[j]) / (2.0 * s);
                let scale = (h[i + i * k].abs() * h[j + j * k].abs()).sqrt();
                assert!((h[j + i * k] - c).abs() < 1e-3 * scale.max(1e-8), "{:?} H[{}, {}]: {} vs {}", family, j, i, h[j + i * k], c);
            }
        }
    }
}
