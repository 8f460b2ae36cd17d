//! Seed pattern 2: one representation feeding several heads (multitask learning): a binary flag, a
//! regression and a 3-way class, each with its own loss, loss weight and metrics given by output name.
//! Prints the summary, each output's loss per epoch and the final metrics.
//!
//! Run: `cargo run --release --example multitask`

use modelc::prelude::*;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, flag, amount, class) = data(4000, 1);
    let mut model = MultiTask::new(42);
    print!("{}", MultiTask::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(MultiTask::DOT, "out/multitask.svg")?;
    println!("wrote out/multitask.svg (the model graph)");
    let losses = MultiTaskLosses { flag: Loss::BinaryCrossentropy, amount: Loss::MeanSquaredError, class: Loss::CategoricalCrossentropy };
    let mut trainer = model
        .compile(Adam::new(5e-3), losses, &[])
        .with_loss_weights(MultiTaskPerOutput { flag: 1.0, amount: 0.5, class: 1.0 })
        .with_metrics(MultiTaskPerOutput {
            flag: vec![Metric::Accuracy],
            amount: vec![Metric::MeanAbsoluteError],
            class: vec![Metric::Accuracy],
        });
    let inputs = MultiTaskInputs { x: x.view() };
    let targets = MultiTaskTargets { flag: flag.view(), amount: amount.view(), class: class.view() };
    let h = trainer.fit(&inputs, &targets, &Fit { epochs: 10, verbose: false, ..Fit::default() })?;
    let col = |k: &str| h.get(k).unwrap_or(&[]).to_vec();
    let (total, fl, al, cl) = (col("loss"), col("flag_loss"), col("amount_loss"), col("class_loss"));
    for e in 0..total.len() {
        println!("epoch {:>2}: loss {:.4} (flag {:.4}, amount {:.4}, class {:.4})", e + 1, total[e], fl[e], al[e], cl[e]);
    }
    for k in ["flag_accuracy", "amount_mean_absolute_error", "class_accuracy"] {
        println!("final {k}: {:.4}", h.last(k).unwrap_or(f64::NAN));
    }
    Ok(())
}
