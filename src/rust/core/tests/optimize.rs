//! The optimiser on criteria with known minima.
use mixedrs_core::optimize::optimize_with;
use mixedrs_core::FitControl;

/// A criterion (of deviance size) that flattens as θ grows, with its minimum far out at θ = (2·10⁹)^(1/3)
/// ≈ 1260: the gradient test alone stops BFGS near θ ≈ 27 (where |f'| < 1e-7), as
/// on tiny data whose group variance dwarfs the residual's.
#[test]
fn flat_far_minimum_of_a_diagonal_element_is_reached() {
    let f = |t: &[f64]| -> mixedrs_core::Result<f64> { Ok(30.0 + 1.0 / (t[0] * t[0]) + 1e-9 * t[0].abs()) };
    let res = optimize_with(f, &[1.0], &[true], &FitControl::default()).unwrap();
    let exact = (2.0e9f64).powf(1.0 / 3.0);
    let f_exact = 30.0 + 1.0 / (exact * exact) + 1e-9 * exact;
    assert!(res.theta[0].abs() > 500.0, "stopped at θ = {}", res.theta[0]);
    // within 1e-8 relative of the minimum; stopping at θ ≈ 27 leaves it 5e-5 above
    assert!(res.criterion <= f_exact + 3e-7, "criterion {} vs {}", res.criterion, f_exact);
}

/// The doubling never leaves a good interior minimum: f = (θ − 30)² has its minimum
/// at 30 > 10, and doubling from there only raises f.
#[test]
fn interior_minimum_above_ten_is_kept() {
    let f = |t: &[f64]| -> mixedrs_core::Result<f64> { Ok((t[0] - 30.0).powi(2) + 1.0) };
    let res = optimize_with(f, &[1.0], &[true], &FitControl::default()).unwrap();
    assert!((res.theta[0] - 30.0).abs() < 1e-3, "θ = {}", res.theta[0]);
}
