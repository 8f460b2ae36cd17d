//! Seed pattern 1: one input branched into parallel paths (different widths and activations) merged by
//! Concatenate. Learns a rule with an interaction term; prints the summary, the loss per epoch and the
//! test accuracy.
//!
//! Run: `cargo run --release --example branch_concat`

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// One input, three parallel paths, joined.
    pub struct Branches {
        input features: [8];
        let wide = Dense(16, activation = relu)(features);
        let narrow = Dense(8, activation = tanh)(features);
        let linear = Dense(4)(features);
        let joined = Concatenate()([wide, narrow, linear]);
        output label = Dense(1, activation = sigmoid)(joined);
    }
}

/// label = [x0 − x1 + x2·x3 > 0].
fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 8), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] - x[[i, 1]] + x[[i, 2]] * x[[i, 3]] > 0.0)));
    (x, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y) = data(4000, 1);
    let (tx, ty) = data(1000, 2);
    let mut model = Branches::new(42);
    print!("{}", Branches::SUMMARY);
    let mut trainer = model.compile(Adam::new(5e-3), BranchesLosses { label: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let fit = Fit { epochs: 10, verbose: false, ..Fit::default() };
    let h = trainer.fit(&BranchesInputs { features: x.view() }, &BranchesTargets { label: y.view() }, &fit)?;
    for (e, l) in h.get("loss").unwrap_or(&[]).iter().enumerate() {
        println!("epoch {:>2}: loss {l:.4}", e + 1);
    }
    let logs = trainer.evaluate(&BranchesInputs { features: tx.view() }, &BranchesTargets { label: ty.view() }, 256)?;
    println!("test accuracy: {:.4}", logs.get("accuracy").copied().unwrap_or(f64::NAN));
    Ok(())
}
