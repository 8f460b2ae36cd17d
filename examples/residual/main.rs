//! Seed pattern 4: skip connections. A stem and two residual blocks, each an `Add` of the block's input
//! and output. Prints the summary, the loss per epoch and the test accuracy.
//!
//! Run: `cargo run --release --example residual`

use modelc::prelude::*;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y) = data(4000, 1);
    let (tx, ty) = data(1000, 2);
    let mut model = ResNet::new(42);
    print!("{}", ResNet::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(ResNet::DOT, "out/residual.svg")?;
    println!("wrote out/residual.svg (the model graph)");
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
