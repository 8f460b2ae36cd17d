//! Seed pattern: two inputs, each through its own dense branch, merged by Concatenate into one score.
//!
//! Trains on synthetic data with a learnable rule (the label is the sign of a fixed mix of both
//! inputs, with an interaction term), then prints the summary and the test accuracy.
//!
//! Run: `cargo run --release --example fusion`

use modelc::prelude::*;

mod model;
use model::*;

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
