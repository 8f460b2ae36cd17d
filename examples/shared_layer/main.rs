//! Seed pattern 5: one layer instance reused. A siamese network: one encoder (one set of weights, its
//! gradients summed over both calls) encodes two vectors; the squared difference decides whether they are
//! near copies. Prints the summary, the loss per epoch and the test accuracy.
//!
//! Run: `cargo run --release --example shared_layer`

use modelc::prelude::*;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b, y) = pairs(4000, 1);
    let (ta, tb, ty) = pairs(1000, 2);
    let mut model = Siamese::new(42);
    print!("{}", Siamese::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(Siamese::DOT, "out/shared_layer.svg")?;
    println!("wrote out/shared_layer.svg (the model graph)");
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
