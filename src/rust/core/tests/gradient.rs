//! The analytic gradient of the profiled criterion against central differences.
mod common;
use common::*;
use mixedrs_core::LinearMixedModel;

fn assert_gradient(m: &mut LinearMixedModel, theta: &[f64], what: &str) {
    let fd = fd_gradient(m, theta);
    m.update_l(theta).unwrap();
    let g = m.gradient().unwrap();
    let scale = 1.0 + fd.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (i, (a, b)) in g.iter().zip(&fd).enumerate() {
        assert!((a - b).abs() < 2e-6 * scale, "{what}: component {i}: analytic {a} vs central difference {b}");
    }
}

/// Crossed terms (a full k = 2 term, a scalar and a diagonal k = 2 term), with and
/// without weights, REML and ML, at interior θ and at θ with zeros (the boundary,
/// where a Λ is singular).
#[test]
fn crossed_terms_reml_and_ml_with_weights_and_zeros() {
    let thetas = [
        vec![1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
        vec![0.7, -0.3, 0.2, 1.4, 0.5, 0.9],
        vec![0.0, 0.9, 0.0, 0.3, 2.0, 0.0],
        vec![0.4, 0.1, 0.6, 0.0, 0.0, 0.3],
    ];
    for weighted in [false, true] {
        let d = crossed_data(3, weighted);
        for reml in [true, false] {
            let mut m = model(&d, reml);
            for th in &thetas {
                assert_gradient(&mut m, th, &format!("crossed weighted={weighted} reml={reml} θ={th:?}"));
            }
        }
    }
}

/// Nested terms with every block after the first sparse or block-diagonal, and the
/// same model with dense storage decided by the default share.
#[test]
fn nested_terms_sparse_and_default_storage() {
    let d = nested_data(11);
    for reml in [true, false] {
        for share in [1.0, mixedrs_core::linalg::structure::SPARSE_MAX_SHARE] {
            let mut m = LinearMixedModel::with_sparse_share(d.terms.clone(), d.x.clone(), d.p, d.y.clone(), None, reml, share).unwrap();
            for th in [vec![1.0, 1.0, 0.0, 1.0, 1.0], vec![0.6, 1.3, -0.4, 0.5, 0.8], vec![0.0, 0.7, 0.2, 0.0, 1.1]] {
                assert_gradient(&mut m, &th, &format!("nested share={share} reml={reml} θ={th:?}"));
            }
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random crossed designs at random θ.
        #[test]
        fn gradient_equals_central_differences(seed in 0u64..10_000, reml in any::<bool>(), weighted in any::<bool>(), a in 0.05f64..2.5, b in -1.0f64..1.0) {
            let d = crossed_data(seed, weighted);
            let mut m = model(&d, reml);
            let th = [a, b, a * 0.7, 1.5 - a * 0.5, a * 1.2, 0.3 + a * 0.1];
            let fd = fd_gradient(&mut m, &th);
            m.update_l(&th).unwrap();
            let g = m.gradient().unwrap();
            let scale = 1.0 + fd.iter().map(|v| v.abs()).fold(0.0, f64::max);
            for (x, y) in g.iter().zip(&fd) {
                prop_assert!((x - y).abs() < 2e-6 * scale, "{} vs {}", x, y);
            }
        }
    }
}
