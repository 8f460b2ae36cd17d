//! Seed pattern 3: merges of earlier paths. Two projected inputs combined by Add, Subtract, Multiply,
//! Average, Maximum, Minimum and Dot, then joined by Concatenate, learn a rule with a product term.
//! Prints the summary and the loss per epoch.
//!
//! Run: `cargo run --release --example merges`

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Two projections combined by every merge.
    pub struct Interactions {
        input a: [6];
        input b: [6];
        let pa = Dense(8, activation = tanh)(a);
        let pb = Dense(8, activation = tanh)(b);
        let merged = Concatenate()([
            Add()([pa, pb]),
            Subtract()([pa, pb]),
            Multiply()([pa, pb]),
            Average()([pa, pb]),
            Maximum()([pa, pb]),
            Minimum()([pa, pb]),
            Dot(axes = 1)([pa, pb]),
        ]);
        output y = Dense(1)(Dense(16, activation = relu)(merged));
    }
}

/// y = a0·b0 + a1 − b2.
fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let b = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| a[[i, 0]] * b[[i, 0]] + a[[i, 1]] - b[[i, 2]]);
    (a, b, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b, y) = data(4000, 1);
    let (ta, tb, ty) = data(1000, 2);
    let mut model = Interactions::new(42);
    print!("{}", Interactions::SUMMARY);
    let mut trainer = model.compile(Adam::new(5e-3), InteractionsLosses { y: Loss::MeanSquaredError }, &[Metric::MeanAbsoluteError]);
    let h = trainer.fit(
        &InteractionsInputs { a: a.view(), b: b.view() },
        &InteractionsTargets { y: y.view() },
        &Fit { epochs: 10, verbose: false, ..Fit::default() },
    )?;
    for (e, l) in h.get("loss").unwrap_or(&[]).iter().enumerate() {
        println!("epoch {:>2}: loss {l:.4}", e + 1);
    }
    let logs = trainer.evaluate(&InteractionsInputs { a: ta.view(), b: tb.view() }, &InteractionsTargets { y: ty.view() }, 256)?;
    println!("test mean absolute error: {:.4} (targets have std ~0.9)", logs.get("mean_absolute_error").copied().unwrap_or(f64::NAN));
    Ok(())
}
