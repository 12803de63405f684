//! GLM families and links, as R's `binomial()` and `poisson()` define them (their
//! clamping of μ and dμ/dη included, so that deviances agree with glmer's).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Binomial,
    Poisson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Logit,
    Probit,
    Cloglog,
    Log,
}

const EPS: f64 = f64::EPSILON;

/// R's pnorm / dnorm / qnorm-free pieces: the standard normal CDF via erfc.
fn pnorm(x: f64) -> f64 {
    0.5 * libm_erfc(-x / std::f64::consts::SQRT_2)
}

fn libm_erfc(x: f64) -> f64 {
    statrs::function::erf::erfc(x)
}

fn dnorm(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

impl Link {
    /// μ = g⁻¹(η), clamped as R's links clamp it.
    pub fn linkinv(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                // R's C code: eta < -30 gives DBL_EPSILON, eta > 30 gives 1 - DBL_EPSILON
                if eta < -30.0 {
                    EPS
                } else if eta > 30.0 {
                    1.0 - EPS
                } else {
                    1.0 / (1.0 + (-eta).exp())
                }
            }
            Link::Probit => {
                let thresh = 8.125890664701906; // -qnorm(DBL_EPSILON)
                pnorm(eta.clamp(-thresh, thresh))
            }
            Link::Cloglog => (-(-eta.exp()).exp_m1()).clamp(EPS, 1.0 - EPS),
            Link::Log => eta.exp().max(EPS),
        }
    }

    /// dμ/dη, bounded below as R's links bound it.
    pub fn mu_eta(self, eta: f64) -> f64 {
        match self {
            Link::Logit => {
                let opexp = 1.0 + eta.exp();
                if eta > 30.0 || eta < -30.0 {
                    EPS
                } else {
                    eta.exp() / (opexp * opexp)
                }
            }
            Link::Probit => dnorm(eta).max(EPS),
            Link::Cloglog => {
                let e = eta.min(700.0);
                (e.exp() * (-e.exp()).exp()).max(EPS)
            }
            Link::Log => eta.exp().max(EPS),
        }
    }

    /// dμ/dη at η when μ = linkinv(η) is known: for the logit and log links no
    /// further exponential (the same values as [`Link::mu_eta`] to rounding).
    pub fn mu_eta_at(self, eta: f64, mu: f64) -> f64 {
        match self {
            Link::Logit => {
                if eta > 30.0 || eta < -30.0 {
                    EPS
                } else {
                    mu * (1.0 - mu)
                }
            }
            Link::Log => mu,
            _ => self.mu_eta(eta),
        }
    }

    pub fn link(self, mu: f64) -> f64 {
        match self {
            Link::Logit => (mu / (1.0 - mu)).ln(),
            Link::Probit => statrs::function::erf::erf_inv(2.0 * mu - 1.0) * std::f64::consts::SQRT_2,
            Link::Cloglog => (-(-mu).ln_1p()).ln(),
            Link::Log => mu.ln(),
        }
    }
}

fn y_log_y(y: f64, mu: f64) -> f64 {
    if y > 0.0 {
        y * (y / mu).ln()
    } else {
        0.0
    }
}

impl Family {
    pub fn variance(self, mu: f64) -> f64 {
        match self {
            Family::Binomial => mu * (1.0 - mu),
            Family::Poisson => mu,
        }
    }

    /// The unit deviance times the prior weight (R's dev.resids).
    pub fn dev_resid(self, y: f64, mu: f64, wt: f64) -> f64 {
        match self {
            Family::Binomial => 2.0 * wt * (y_log_y(y, mu) + y_log_y(1.0 - y, 1.0 - mu)),
            Family::Poisson => {
                let r = mu * wt;
                if y > 0.0 {
                    2.0 * wt * (y * (y / mu).ln() - (y - mu))
                } else {
                    2.0 * r
                }
            }
        }
    }

    /// −2 log-likelihood of one observation (R's family$aic summed is −2 log L), for
    /// binomial with `wt` trials and y the proportion.
    pub fn minus_two_loglik(self, y: f64, mu: f64, wt: f64) -> f64 {
        match self {
            Family::Binomial => {
                let m = wt.round();
                if m <= 0.0 {
                    return 0.0;
                }
                let k = (m * y).round();
                -2.0 * (ln_choose(m, k) + k * mu.ln() + (m - k) * (1.0 - mu).ln())
            }
            Family::Poisson => -2.0 * wt * (y * mu.ln() - mu - statrs::function::gamma::ln_gamma(y + 1.0)),
        }
    }
}

fn ln_choose(n: f64, k: f64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_invert() {
        for link in [Link::Logit, Link::Probit, Link::Cloglog, Link::Log] {
            for &eta in &[-2.0, -0.3, 0.0, 0.7, 1.5] {
                let mu = link.linkinv(eta);
                assert!((link.link(mu) - eta).abs() < 1e-8, "{:?} at {}", link, eta);
                let h = 1e-6;
                let num = (link.linkinv(eta + h) - link.linkinv(eta - h)) / (2.0 * h);
                assert!((num - link.mu_eta(eta)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn deviances() {
        // binomial with y = 0.25 of 4 trials at mu = 0.5; Poisson y = 3 at mu = 2
        let d = Family::Binomial.dev_resid(0.25, 0.5, 4.0);
        assert!((d - 2.0 * 4.0 * (0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln())).abs() < 1e-12);
        let d = Family::Poisson.dev_resid(3.0, 2.0, 1.0);
        assert!((d - 2.0 * (3.0 * 1.5f64.ln() - 1.0)).abs() < 1e-12);
    }
}
