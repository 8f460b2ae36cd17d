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
    /// Largest absolute difference seen.
    pub max_abs_err: f32,
}

impl GradCheck {
    /// True when every element agreed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Compares `backward` with central finite differences for every parameter element of `model`, on the
/// objective `L = Σ r ⊙ outputs` with fixed random weights `r` (drawn from `seed`), in inference mode.
///
/// An element fails when `|analytic − numeric| > atol + rtol · max(|analytic|, |numeric|)`.
/// `eps` around 1e-2 suits f32 models of moderate size; kinks (relu at 0) can make single elements
/// disagree, which the caller sees in `failures`.
pub fn check_gradients<N: Network>(model: &mut N, inputs: &N::Inputs<'_>, eps: f32, atol: f32, rtol: f32, seed: u64) -> Result<GradCheck> {
    let outputs = model::forward(model, inputs, false)?;
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
        let out = model::forward(m, inputs, false)?;
        let mut total = 0.0f64;
        N::visit_outputs(&out, &mut |o, v| {
            if let Some(w) = weights.get(o) {
                total += v.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            }
            Ok(())
        })?;
        Ok(total)
    };

    let mut report = GradCheck { checked: 0, failures: Vec::new(), max_abs_err: 0.0 };
    for spec in N::PARAMS {
        for k in spec.range() {
            let original = model.state().params[k];
            model.state_mut().params[k] = original + eps;
            let plus = objective(model)?;
            model.state_mut().params[k] = original - eps;
            let minus = objective(model)?;
            model.state_mut().params[k] = original;
            let numeric = ((plus - minus) / (2.0 * f64::from(eps))) as f32;
            let a = analytic[k];
            let err = (a - numeric).abs();
            report.max_abs_err = report.max_abs_err.max(err);
            report.checked += 1;
            if err > atol + rtol * a.abs().max(numeric.abs()) {
                report.failures.push(format!("{}[{}]: analytic {a}, numeric {numeric}", spec.name, k - spec.offset));
            }
        }
    }
    // Leave the model's activations as they were for the unperturbed parameters.
    model::forward(model, inputs, false)?;
    Ok(report)
}
