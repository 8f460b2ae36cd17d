//! Text-like input: integer token ids through an Embedding, LayerNormalization, average pooling, and a
//! Dense + BatchNormalization + Dropout head, trained with Adam to find the topic of each sequence.
//!
//! Run: `cargo run --release --example token_topics`

use modelc::prelude::*;
use std::time::Instant;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tokens, y) = make_data(2000, 1);
    let (test_tokens, test_y) = make_data(500, 2);

    let mut model = TokenTopics::new(42);
    print!("{}", TokenTopics::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(TokenTopics::DOT, "out/token_topics.svg")?;
    println!("wrote out/token_topics.svg (the model graph)");

    let inputs = TokenTopicsInputs { tokens: tokens.view() };
    let targets = TokenTopicsTargets { topic: y.view() };
    let mut trainer = model.compile(Adam::new(3e-3), TokenTopicsLosses { topic: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let start = Instant::now();
    let fit = Fit { epochs: 10, batch_size: 32, validation_split: 0.1, seed: 3, verbose: false, ..Fit::default() };
    let history = trainer.fit(&inputs, &targets, &fit)?;
    let train_time = start.elapsed();
    let (loss, val_acc) = (history.get("loss").unwrap_or(&[]), history.get("val_accuracy").unwrap_or(&[]));
    for (epoch, (l, a)) in loss.iter().zip(val_acc).enumerate() {
        println!("epoch {:>2}: loss {l:.4}, val_accuracy {a:.4}", epoch + 1);
    }

    // Inference uses the moving statistics BatchNormalization gathered while training.
    let logs = trainer.evaluate(&TokenTopicsInputs { tokens: test_tokens.view() }, &TokenTopicsTargets { topic: test_y.view() }, 100)?;
    println!("test accuracy: {:.4} on {} sequences", logs.get("accuracy").copied().unwrap_or(0.0), test_tokens.nrows());
    println!("trained {} epochs in {:.2} s", loss.len(), train_time.as_secs_f64());

    // A token id outside the embedding table is an error, not a panic.
    let mut bad = test_tokens.slice(modelc::ndarray::s![..1, ..]).to_owned();
    bad[[0, 0]] = VOCAB as i32;
    if let Err(e) = model.predict(&TokenTopicsInputs { tokens: bad.view() }) {
        println!("rejected: {e}");
    }
    Ok(())
}
