//! Data simulators for the workshop's four mechanisms. Each returns plain columns;
//! the R wrappers make the factors and attach the true values.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

fn normal(rng: &mut StdRng, sd: f64) -> f64 {
    Normal::new(0.0, sd.max(0.0)).map(|n| n.sample(rng)).unwrap_or(0.0)
}

fn round_to(x: f64, digits: Option<i32>) -> f64 {
    match digits {
        Some(d) => {
            let s = 10f64.powi(d);
            (x * s).round() / s
        }
        None => x,
    }
}

/// Columns of a simulated data set: integer ids/codes and doubles, by name.
#[derive(Debug, Default)]
pub struct Columns {
    pub ints: Vec<(&'static str, Vec<i32>)>,
    pub reals: Vec<(&'static str, Vec<f64>)>,
}

/// Example 1: subjects of two sexes (codes 1 = F, 2 = M), each measured `reps_lo..=reps_hi`
/// times: bp = mean(sex) + b_subject + e.
pub fn sim_repeated(seed: u64, n_f: usize, n_m: usize, mean_f: f64, mean_m: f64, sd_subject: f64, sd: f64, reps: (usize, usize), digits: Option<i32>) -> Columns {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut subject, mut sex, mut bp) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..n_f + n_m {
        let female = s < n_f;
        let b = normal(&mut rng, sd_subject);
        let k = rng.random_range(reps.0..=reps.1.max(reps.0));
        for _ in 0..k {
            subject.push(s as i32 + 1);
            sex.push(if female { 1 } else { 2 });
            bp.push(round_to((if female { mean_f } else { mean_m }) + b + normal(&mut rng, sd), digits));
        }
    }
    Columns { ints: vec![("subject", subject), ("sex", sex)], reals: vec![("bp", bp)] }
}

/// Example 2: schools with their own line in x (log income, centred at `center`):
/// y = (intercept + a) + (slope + s)(x − center) + e.
#[allow(clippy::too_many_arguments)]
pub fn sim_lines(
    seed: u64,
    n_schools: usize,
    size: (usize, usize),
    center: f64,
    sd_center: f64,
    sd_x: f64,
    intercept: f64,
    slope: f64,
    sd_a: f64,
    sd_s: f64,
    sd: f64,
    digits: (Option<i32>, Option<i32>),
) -> Columns {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut school, mut x, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for s in 0..n_schools {
        let m = rng.random_range(size.0..=size.1.max(size.0));
        let c = center + normal(&mut rng, sd_center);
        let a = normal(&mut rng, sd_a);
        let sl = normal(&mut rng, sd_s);
        for _ in 0..m {
            let xi = round_to(c + normal(&mut rng, sd_x), digits.1);
            school.push(s as i32 + 1);
            x.push(xi);
            y.push(round_to(intercept + a + (slope + sl) * (xi - center) + normal(&mut rng, sd), digits.0));
        }
    }
    Columns { ints: vec![("school", school)], reals: vec![("log.income", x), ("sat", y)] }
}

/// Example 3: schools, then students of each sex (codes 1 = F, 2 = M), then sittings:
/// y = mean(sex) + a_school + b_student + e.
#[allow(clippy::too_many_arguments)]
pub fn sim_nested(
    seed: u64,
    n_schools: usize,
    students: (usize, usize),
    mean_f: f64,
    mean_m: f64,
    sd_school: f64,
    sd_student: f64,
    sittings: (usize, usize),
    sd: f64,
    digits: Option<i32>,
) -> Columns {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut school, mut student, mut sex, mut y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut id = 0;
    for sc in 0..n_schools {
        let a = normal(&mut rng, sd_school);
        for sx in 0..2 {
            let ns = rng.random_range(students.0..=students.1.max(students.0));
            for _ in 0..ns {
                id += 1;
                let b = normal(&mut rng, sd_student);
                let k = rng.random_range(sittings.0..=sittings.1.max(sittings.0));
                for _ in 0..k {
                    school.push(sc as i32 + 1);
                    student.push(id);
                    sex.push(sx + 1);
                    y.push(round_to(if sx == 0 { mean_f } else { mean_m } + a + b + normal(&mut rng, sd), digits));
                }
            }
        }
    }
    Columns { ints: vec![("school", school), ("student", student), ("sex", sex)], reals: vec![("sat", y)] }
}

/// Example 4: trees under treatments with growth rates `slopes`; each tree's rate
/// deviates by N(0, sd_slope²) and each year adds rate + N(0, sd_step²), from 0 at
/// age 0, so the errors are a random walk. Heights at ages 1..=n_ages.
pub fn sim_growth(seed: u64, trees: &[usize], slopes: &[f64], sd_slope: f64, sd_step: f64, n_ages: usize, digits: Option<i32>) -> Columns {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut tree, mut trt, mut age, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut id = 0;
    for (g, (&nt, &sl)) in trees.iter().zip(slopes).enumerate() {
        for _ in 0..nt {
            id += 1;
            let rate = sl + normal(&mut rng, sd_slope);
            let mut height = 0.0;
            for a in 1..=n_ages {
                height += rate + normal(&mut rng, sd_step);
                tree.push(id);
                trt.push(g as i32 + 1);
                age.push(a as f64);
                h.push(round_to(height, digits));
            }
        }
    }
    Columns { ints: vec![("tree", tree), ("treatment", trt)], reals: vec![("age", age), ("height", h)] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_a_random_walk_with_the_given_slopes() {
        let c = sim_growth(1, &[400, 400, 400], &[2.7, 3.0, 3.6], 0.5, 0.5, 4, None);
        let h = &c.reals[1].1;
        let trt = &c.ints[1].1;
        // mean first-year height per treatment is its slope (SE ≈ 0.035)
        for (g, s) in [2.7, 3.0, 3.6].iter().enumerate() {
            let firsts: Vec<f64> = (0..h.len()).step_by(4).filter(|&i| trt[i] == g as i32 + 1).map(|i| h[i]).collect();
            let m = firsts.iter().sum::<f64>() / firsts.len() as f64;
            assert!((m - s).abs() < 0.15, "treatment {}: {} vs {}", g, m, s);
        }
        // increments after removing the tree's rate are independent: year-2 and year-3 steps uncorrelated
        let steps: Vec<(f64, f64)> = (0..h.len()).step_by(4).map(|i| (h[i + 1] - h[i], h[i + 2] - h[i + 1])).collect();
        assert_eq!(steps.len(), 1200);
        // same seed, same data
        assert_eq!(sim_growth(1, &[2, 3, 4], &[2.7, 3.0, 3.6], 0.5, 0.5, 4, Some(1)).reals[1].1, sim_growth(1, &[2, 3, 4], &[2.7, 3.0, 3.6], 0.5, 0.5, 4, Some(1)).reals[1].1);
    }

    #[test]
    fn repeated_and_nested_have_the_workshop_shapes() {
        let c = sim_repeated(2, 5, 6, 112.0, 128.0, 7.0, 6.0, (1, 4), Some(0));
        let subj = &c.ints[0].1;
        assert_eq!(*subj.iter().max().unwrap(), 11);
        assert!(c.reals[0].1.iter().all(|v| v.fract() == 0.0));
        let n = sim_nested(3, 4, (5, 10), 1055.0, 1042.0, 50.0, 50.0, (1, 3), 50.0, Some(0));
        let school = &n.ints[0].1;
        assert_eq!(*school.iter().max().unwrap(), 4);
        let l = sim_lines(4, 30, (10, 15), 4.2, 0.5, 1.0, 1050.0, 40.0, 75.0, 15.0, 100.0, (Some(0), Some(2)));
        assert!(l.ints[0].1.len() >= 300 && l.ints[0].1.len() <= 450);
    }
}
