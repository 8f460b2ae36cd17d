//! Seed pattern 4: skip connections. A stem and two residual blocks, each an `Add` of the block's input
//! and output. Prints the summary, the loss per epoch and the test accuracy.
//!
//! Run: `cargo run --release --example residual`

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// A stem and two residual blocks.
    pub struct ResNet {
        input x: [10];
        let h = Dense(16, activation = relu)(x);
        let r = Dense(16, activation = relu)(h);
        let r = Dense(16)(r);
        let h = Add()([h, r]);
        let r = Dense(16, activation = tanh)(h);
        let h = Add()([h, Dense(16)(r)]);
        output y = Dense(1, activation = sigmoid)(h);
    }
}

/// y = [x0·x1 + x2/2 > 0].
fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 10), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] * x[[i, 1]] + 0.5 * x[[i, 2]] > 0.0)));
    (x, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y) = data(4000, 1);
    let (tx, ty) = data(1000, 2);
    let mut model = ResNet::new(42);
    print!("{}", ResNet::SUMMARY);
    let mut trainer = model.compile(Adam::new(5e-3), ResNetLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let h = trainer.fit(
        &ResNetInputs { x: x.view() },
        &ResNetTargets { y: y.view() },
        &Fit { epochs: 12, verbose: false, ..Fit::default() },
    )?;
    for (e, l) in h.get("loss").unwrap_or(&[]).iter().enumerate() {
        println!("epoch {:>2}: loss {l:.4}", e + 1);
    }
    let logs = trainer.evaluate(&ResNetInputs { x: tx.view() }, &ResNetTargets { y: ty.view() }, 256)?;
    println!("test accuracy: {:.4}", logs.get("accuracy").copied().unwrap_or(f64::NAN));
    Ok(())
}
