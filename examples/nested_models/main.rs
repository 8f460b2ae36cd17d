//! Seed pattern 6: whole models composed. A `Tower` model is used as a layer on two inputs (one set of
//! weights), a frozen "pretrained" `Features` model on a third, their outputs concatenated and trained end
//! to end; the frozen weights stay as they were. Prints the summary, the loss per epoch and the accuracy.
//!
//! Run: `cargo run --release --example nested_models`

use modelc::prelude::*;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (l, r, m, y) = data(4000, 1);
    let (tl, tr, tm, ty) = data(1000, 2);
    let mut model = Composed::new(42);
    print!("{}", Composed::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(Composed::DOT, "out/nested_models.svg")?;
    println!("wrote out/nested_models.svg (the model graph)");
    let frozen_before = model.param("features/dense/kernel")?.to_owned();
    let mut trainer = model.compile(Adam::new(5e-3), ComposedLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let h = trainer.fit(
        &ComposedInputs { left: l.view(), right: r.view(), meta: m.view() },
        &ComposedTargets { score: y.view() },
        &Fit { epochs: 10, verbose: false, ..Fit::default() },
    )?;
    for (e, loss) in h.get("loss").unwrap_or(&[]).iter().enumerate() {
        println!("epoch {:>2}: loss {loss:.4}", e + 1);
    }
    let logs = trainer.evaluate(
        &ComposedInputs { left: tl.view(), right: tr.view(), meta: tm.view() },
        &ComposedTargets { score: ty.view() },
        256,
    )?;
    println!("test accuracy: {:.4}", logs.get("accuracy").copied().unwrap_or(f64::NAN));
    let unchanged = model.param("features/dense/kernel")?.to_owned() == frozen_before;
    println!("frozen features/dense/kernel unchanged after training: {unchanged}");
    Ok(())
}
