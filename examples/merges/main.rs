//! Seed pattern 3: merges of earlier paths. Two projected inputs combined by Add, Subtract, Multiply,
//! Average, Maximum, Minimum and Dot, then joined by Concatenate, learn a rule with a product term.
//! Prints the summary and the loss per epoch.
//!
//! Run: `cargo run --release --example merges`

use modelc::prelude::*;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b, y) = data(4000, 1);
    let (ta, tb, ty) = data(1000, 2);
    let mut model = Interactions::new(42);
    print!("{}", Interactions::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(Interactions::DOT, "out/merges.svg")?;
    println!("wrote out/merges.svg (the model graph)");
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
