//! Seed pattern 5: one layer instance reused. A siamese network: one encoder (one set of weights, its
//! gradients summed over both calls) encodes two vectors; the squared difference decides whether they are
//! near copies. Prints the summary, the loss per epoch and the test accuracy.
//!
//! Run: `cargo run --release --example shared_layer`

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Are two vectors near each other? One encoder for both.
    pub struct Siamese {
        input a: [12];
        input b: [12];
        layer enc = Dense(16, activation = tanh);
        let d = Subtract()([enc(a), enc(b)]);
        output same = Dense(1, activation = sigmoid)(Multiply()([d, d]));
    }
}

/// Pairs: even rows a near copy of `a` (label 1), odd rows an unrelated vector (label 0).
fn pairs(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 12), |_| rng.uniform(-1.0, 1.0));
    let noise = Array2::from_shape_fn((n, 12), |_| rng.uniform(-0.1, 0.1));
    let other = Array2::from_shape_fn((n, 12), |_| rng.uniform(-1.0, 1.0));
    let b = Array2::from_shape_fn((n, 12), |(i, j)| if i % 2 == 0 { a[[i, j]] + noise[[i, j]] } else { other[[i, j]] });
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(i % 2 == 0)));
    (a, b, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b, y) = pairs(4000, 1);
    let (ta, tb, ty) = pairs(1000, 2);
    let mut model = Siamese::new(42);
    print!("{}", Siamese::SUMMARY);
    let mut trainer = model.compile(Adam::new(5e-3), SiameseLosses { same: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let h = trainer.fit(
        &SiameseInputs { a: a.view(), b: b.view() },
        &SiameseTargets { same: y.view() },
        &Fit { epochs: 10, verbose: false, ..Fit::default() },
    )?;
    for (e, l) in h.get("loss").unwrap_or(&[]).iter().enumerate() {
        println!("epoch {:>2}: loss {l:.4}", e + 1);
    }
    let logs = trainer.evaluate(&SiameseInputs { a: ta.view(), b: tb.view() }, &SiameseTargets { same: ty.view() }, 256)?;
    println!("test accuracy: {:.4}", logs.get("accuracy").copied().unwrap_or(f64::NAN));
    Ok(())
}
