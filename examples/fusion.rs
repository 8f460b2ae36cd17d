//! Seed pattern: two inputs, each through its own dense branch, merged by Concatenate into one score.
//!
//! Trains on synthetic data with a learnable rule (the label is the sign of a fixed mix of both
//! inputs, with an interaction term), then prints the summary and the test accuracy.
//!
//! Run: `cargo run --release --example fusion`

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Fuses two feature sources into one score.
    pub struct Fusion {
        input left_features: [8];
        input right_features: [4];

        let left = Dense(16, activation = relu)(left_features);
        let left = Dense(8, activation = relu)(left);
        let right = Dense(8, activation = relu)(right_features);
        let merged = Concatenate()([left, right]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

/// `n` samples: left ~ U(-1, 1)^8, right ~ U(-1, 1)^4, label = [w·left + v·right + left0·right0 / 2 > 0].
fn make_data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let w = [0.9f32, -0.7, 0.5, 0.0, 0.3, -0.4, 0.8, 0.0];
    let v = [-0.6f32, 0.9, 0.0, 0.5];
    let left = Array2::from_shape_fn((n, 8), |_| rng.uniform(-1.0, 1.0));
    let right = Array2::from_shape_fn((n, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| {
        let s: f32 = (0..8).map(|j| w[j] * left[[i, j]]).sum::<f32>()
            + (0..4).map(|j| v[j] * right[[i, j]]).sum::<f32>()
            + 0.5 * left[[i, 0]] * right[[i, 0]];
        if s > 0.0 {
            1.0
        } else {
            0.0
        }
    });
    (left, right, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (left, right, y) = make_data(4000, 7);
    let (test_left, test_right, test_y) = make_data(1000, 8);

    let mut model = Fusion::new(42);
    print!("{}", Fusion::SUMMARY);

    let inputs = FusionInputs { left_features: left.view(), right_features: right.view() };
    let targets = FusionTargets { score: y.view() };
    let mut trainer = model.compile(Adam::new(5e-3), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let history = trainer.fit(&inputs, &targets, &Fit { epochs: 15, batch_size: 32, validation_split: 0.1, seed: 1, ..Fit::default() })?;

    let test_inputs = FusionInputs { left_features: test_left.view(), right_features: test_right.view() };
    let test_targets = FusionTargets { score: test_y.view() };
    let logs = trainer.evaluate(&test_inputs, &test_targets, 256)?;
    let accuracy = logs.get("accuracy").copied().unwrap_or(0.0);
    println!("final training loss: {:.4}", history.last("loss").unwrap_or(f64::NAN));
    println!("test accuracy: {accuracy:.4}");

    std::fs::create_dir_all("out")?;
    std::fs::write("out/fusion.dot", Fusion::DOT)?;
    modelc::viz::write_graph_svg(Fusion::DOT, "out/fusion.svg")?;
    history.write_csv("out/fusion_history.csv")?;
    modelc::viz::write_history_svg(&history, "out/fusion_history.svg")?;
    model.save("out/fusion.safetensors")?;
    println!("wrote out/fusion.{{dot,svg,safetensors}} and out/fusion_history.{{csv,svg}}");
    Ok(())
}
