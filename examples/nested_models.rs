//! Seed pattern 6: whole models composed. A `Tower` model is used as a layer on two inputs (one set of
//! weights), a frozen "pretrained" `Features` model on a third, their outputs concatenated and trained end
//! to end; the frozen weights stay as they were. Prints the summary, the loss per epoch and the accuracy.
//!
//! Run: `cargo run --release --example nested_models`

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// A small tower.
    pub struct Tower {
        input x: [6];
        let h = Dense(12, activation = relu)(x);
        output y = Dense(4, activation = tanh)(h);
    }

    /// A feature extractor whose weights are kept fixed.
    pub struct Features {
        input x: [4];
        output f = Dense(6, activation = tanh)(x);
    }

    /// Towers on two inputs, frozen features on a third, merged and scored.
    pub struct Composed {
        input left: [6];
        input right: [6];
        input meta: [4];
        layer tower = Tower;
        layer features = Features(trainable = false);
        let merged = Concatenate()([tower(left), tower(right), features(meta)]);
        output score = Dense(1, activation = sigmoid)(Dense(8, activation = relu)(merged));
    }
}

/// score = [left0 + right1 − meta0 > 0].
fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let l = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let r = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let m = Array2::from_shape_fn((n, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(l[[i, 0]] + r[[i, 1]] - m[[i, 0]] > 0.0)));
    (l, r, m, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (l, r, m, y) = data(4000, 1);
    let (tl, tr, tm, ty) = data(1000, 2);
    let mut model = Composed::new(42);
    print!("{}", Composed::SUMMARY);
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
