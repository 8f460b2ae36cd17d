//! Seed pattern 1: one input branched into parallel paths (different widths and activations) merged by
//! Concatenate. Learns a rule with an interaction term; prints the summary, the loss per epoch and the
//! test accuracy.
//!
//! Run: `cargo run --release --example branch_concat`

use modelc::prelude::*;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y) = data(4000, 1);
    let (tx, ty) = data(1000, 2);
    let mut model = Branches::new(42);
    print!("{}", Branches::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(Branches::DOT, "out/branch_concat.svg")?;
    println!("wrote out/branch_concat.svg (the model graph)");
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
