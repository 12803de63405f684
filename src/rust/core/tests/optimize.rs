//! The optimiser on criteria with known minima.
use mixedrs_core::lmm::optimize::{optimize_with, SearchScale};
use mixedrs_core::FitControl;

/// A criterion (of deviance size) that flattens as θ grows, with its minimum far out at θ = (2·10⁹)^(1/3)
/// ≈ 1260: the gradient test alone stops BFGS near θ ≈ 27 (where |f'| < 1e-7), as
/// on tiny data whose group variance dwarfs the residual's.
#[test]
fn flat_far_minimum_of_a_diagonal_element_is_reached() {
    let f = |t: &[f64]| -> mixedrs_core::Result<f64> { Ok(30.0 + 1.0 / (t[0] * t[0]) + 1e-9 * t[0].abs()) };
    let res = optimize_with(f, &[1.0], &[true], &SearchScale { sinh: vec![true], weight: vec![1.0] }, &FitControl::default()).unwrap();
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
    let res = optimize_with(f, &[1.0], &[true], &SearchScale { sinh: vec![true], weight: vec![1.0] }, &FitControl::default()).unwrap();
    assert!((res.theta[0] - 30.0).abs() < 1e-3, "θ = {}", res.theta[0]);
}

/// Degenerate data (σ → 0): the criterion falls along the ray θ → ∞ with both
/// variances together but not with either alone. f = 30 + 1/(θ₁θ₂) + 1e-9(θ₁² + θ₂²)
/// + 0.01·log²(θ₁/θ₂) flattens near θ ≈ 20, where the gradient test stops, and doubling
/// one θ there raises it (the imbalance costs 0.0048, the product gains 0.0013); its
/// minimum is at θ₁ = θ₂ = (5·10⁸)^(1/4) ≈ 150.
#[test]
fn joint_far_minimum_of_two_variances_is_reached() {
    let f = |t: &[f64]| -> mixedrs_core::Result<f64> {
        let (a, b) = (t[0].abs(), t[1].abs());
        Ok(30.0 + 1.0 / (a * b) + 1e-9 * (a * a + b * b) + 0.01 * (a / b).ln().powi(2))
    };
    let res = optimize_with(f, &[1.0, 1.0], &[true, true], &SearchScale { sinh: vec![true; 2], weight: vec![1.0, 3.0] }, &FitControl::default()).unwrap();
    let exact = (5.0e8f64).powf(0.25);
    let f_exact = 30.0 + 1.0 / (exact * exact) + 2e-9 * exact * exact;
    // within the fuzz's 1e-6 relative (stopping near θ ≈ 20 leaves it 8e-5 above)
    assert!(res.criterion <= f_exact * (1.0 + 1e-6), "criterion {} vs {} at θ = {:?}", res.criterion, f_exact, res.theta);
}

/// A deviance-sized criterion whose values carry rounding noise (as on millions of
/// rows: B6's nested fit is smooth only to ~2e-10 relative) while its exact gradient
/// is smooth. Here the noise is adversarial: every point within 1e-4 of the minimum
/// reads 5e-4 (5e-10 relative) too high, so the line search rejects all the points
/// whose gradient meets the tolerance (|x − 0.7| < 5e-5) once BFGS stands just outside
/// (the start, 0.7002, reads lower than all of them). The run must end at such a
/// point rather than at the best value, which lies outside.
#[test]
fn noisy_values_with_an_exact_gradient_end_at_the_stationary_point() {
    use mixedrs_core::lmm::optimize::optimize_objective;
    use mixedrs_core::optim::Objective;
    struct Noisy;
    impl Objective for Noisy {
        fn value(&mut self, x: &[f64]) -> mixedrs_core::Result<f64> {
            let bump = if (x[0] - 0.7).abs() < 1e-4 { 5e-4 } else { 0.0 };
            Ok(1.0e6 + 1.0e3 * (x[0] - 0.7).powi(2) + bump)
        }
        fn gradient(&mut self, x: &[f64]) -> Option<mixedrs_core::Result<Vec<f64>>> {
            Some(Ok(vec![2.0e3 * (x[0] - 0.7)]))
        }
    }
    let res = optimize_objective(&mut Noisy, &[0.7002], &[true], &SearchScale { sinh: vec![true], weight: vec![1.0] }, &FitControl::default()).unwrap();
    assert!(res.converged, "{}", res.message);
    assert!((res.theta[0] - 0.7).abs() < 5e-5, "θ = {:?} ({})", res.theta, res.message);
    assert!(res.evaluations < 60, "{} evaluations", res.evaluations);
}
