//! Finite-difference checks of a compiled model's backward pass, for tests (like `torch.autograd.gradcheck`).

use crate::error::Result;
use crate::init::Rng;
use crate::model;
use crate::network::Network;

/// The outcome of [`check_gradients`].
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Parameter elements compared.
    pub checked: usize,
    /// Elements whose analytic and numeric gradients disagree beyond the tolerance.
    pub failures: Vec<String>,
    /// Elements skipped because the objective is not smooth around them (a relu kink or a max tie
    /// within `eps`): there the forward and backward difference quotients disagree.
    pub skipped: usize,
    /// Largest absolute difference seen on compared elements.
    pub max_abs_err: f32,
}

impl GradCheck {
    /// True when every element agreed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Compares `backward` with central finite differences for every parameter element of `model` but statistics, on the
/// objective `L = Σ r ⊙ outputs` with fixed random weights `r` (drawn from `seed`), in inference mode.
///
/// An element fails when `|analytic − numeric| > atol + rtol · max(|analytic|, |numeric|)`.
/// Where the forward and backward one-sided quotients also disagree by more than that tolerance, the
/// objective has a kink within `eps` (relu at 0, a max tie): the element is counted in `skipped`
/// instead (callers should assert that few are). For a smooth objective they differ by O(eps · f''). `eps` around 1e-2 suits f32 models.
pub fn check_gradients<N: Network>(model: &mut N, inputs: &N::Inputs<'_>, eps: f32, atol: f32, rtol: f32, seed: u64) -> Result<GradCheck> {
    check(model, inputs, eps, atol, rtol, seed, false)
}

/// [`check_gradients`] in training mode: `BatchNormalization` differentiates through the batch
/// statistics. The model must be deterministic in training (no `Dropout`, whose mask changes every
/// step); the moving statistics drift as the forward passes run, which training outputs ignore.
pub fn check_gradients_training<N: Network>(
    model: &mut N,
    inputs: &N::Inputs<'_>,
    eps: f32,
    atol: f32,
    rtol: f32,
    seed: u64,
) -> Result<GradCheck> {
    check(model, inputs, eps, atol, rtol, seed, true)
}

fn check<N: Network>(
    model: &mut N,
    inputs: &N::Inputs<'_>,
    eps: f32,
    atol: f32,
    rtol: f32,
    seed: u64,
    training: bool,
) -> Result<GradCheck> {
    let outputs = model::forward(model, inputs, training)?;
    // Random output weights, same shapes as the outputs.
    let mut rng = Rng::new(seed);
    let mut weights: Vec<Vec<f32>> = Vec::new();
    N::visit_outputs(&outputs, &mut |_, v| {
        weights.push(v.iter().map(|_| rng.uniform(-1.0, 1.0)).collect());
        Ok(())
    })?;
    let batch = model.state().ws.batch;
    let d_outputs = N::outputs_from(batch, weights.clone());
    let analytic = model::backward(model, &d_outputs)?;
    let analytic = analytic.as_slice().to_vec();

    let objective = |m: &mut N| -> Result<f64> {
        let out = model::forward(m, inputs, training)?;
        let mut total = 0.0f64;
        N::visit_outputs(&out, &mut |o, v| {
            if let Some(w) = weights.get(o) {
                total += v.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            }
            Ok(())
        })?;
        Ok(total)
    };

    let mut report = GradCheck { checked: 0, failures: Vec::new(), skipped: 0, max_abs_err: 0.0 };
    let base = objective(model)?;
    // (f(x + h) - f(x)) / h and (f(x) - f(x - h)) / h for parameter element k.
    let one_sided = |m: &mut N, k: usize, h: f32| -> Result<(f32, f32)> {
        let original = m.state().params[k];
        m.state_mut().params[k] = original + h;
        let plus = objective(m)?;
        m.state_mut().params[k] = original - h;
        let minus = objective(m)?;
        m.state_mut().params[k] = original;
        let h = f64::from(h);
        Ok((((plus - base) / h) as f32, ((base - minus) / h) as f32))
    };
    // Statistics (moving mean and variance) have no gradient; frozen weights do, and are checked.
    for spec in N::PARAMS.iter().filter(|s| !s.statistic) {
        for k in spec.range() {
            let (forward, backward) = one_sided(model, k, eps)?;
            let mut numeric = 0.5 * (forward + backward);
            let a = analytic[k];
            let tolerance = |x: f32, y: f32| atol + rtol * x.abs().max(y.abs());
            report.checked += 1;
            if (a - numeric).abs() > tolerance(a, numeric) {
                // A kink within eps perturbs the quotient: refine the step once before judging.
                let (f, b) = one_sided(model, k, eps / 10.0)?;
                let refined = 0.5 * (f + b);
                let kink = (forward - backward).abs() > tolerance(forward, backward) || (f - b).abs() > tolerance(f, b);
                if (a - refined).abs() > tolerance(a, refined) && kink {
                    report.skipped += 1;
                    continue;
                }
                numeric = refined;
            }
            let err = (a - numeric).abs();
            report.max_abs_err = report.max_abs_err.max(err);
            if err > tolerance(a, numeric) {
                report.failures.push(format!("{}[{}]: analytic {a}, numeric {numeric}", spec.name, k - spec.offset));
            }
        }
    }
    // Leave the model's activations as they were for the unperturbed parameters.
    model::forward(model, inputs, training)?;
    Ok(report)
}
