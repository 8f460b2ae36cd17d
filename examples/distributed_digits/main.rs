//! The digits model (`examples/digits`) trained data-parallel on MPI (feature `mpi`): every process
//! loads the same data and calls the same `fit`; each takes its share of every global batch of 32
//! rows, the gradients are summed over the processes, and every rank takes the same step. Rank 0
//! prints the epochs, the test accuracy and writes the weights; every rank checks at the end that
//! its weights hold the same bits as rank 0's.
//!
//! One machine, 2 processes:
//! `mpirun -n 2 cargo run --release --features mpi --example distributed_digits`
//! (as root add `--allow-run-as-root`; with more processes than cores add `--oversubscribe`).
//! A cluster: build once on a shared file system, list the machines in a hostfile
//! (`node1 slots=2` per line), then
//! `mpirun --hostfile hosts -n 8 target/release/examples/distributed_digits`.

use std::time::Instant;

use modelc::distributed::Mpi;
use modelc::metrics::ConfusionMatrix;
use modelc::prelude::*;

#[path = "../digits/model.rs"]
mod model;
use model::*;

const SEED: u64 = 42;
const OUT: &str = "out/distributed_digits";

fn main() -> std::process::ExitCode {
    // An error of one rank alone ends the whole job rather than leave the others waiting.
    Mpi::run(run)
}

fn run(mpi: &Mpi) -> Result<(), Box<dyn std::error::Error>> {
    let root = mpi.is_root();
    let (train, val, test) = load_split(SEED)?;
    if root {
        println!(
            "digits on {} processes: {} training, {} validation, {} test samples; global batch 32",
            mpi.size(),
            train.len(),
            val.len(),
            test.len()
        );
    }
    // The same settings as the single-process example; the seed gives every rank the same row order.
    let both = train.then(&val);
    let settings = Fit {
        epochs: 60,
        batch_size: 32,
        seed: SEED,
        validation_split: val.len() as f32 / both.len() as f32,
        early_stopping: Some(EarlyStopping { patience: 6, restore_best_weights: true, ..EarlyStopping::default() }),
        ..Fit::default()
    };
    let mut model = DigitNet::new(SEED);
    let started = Instant::now();
    let mut trainer = model.compile(Adam::new(2e-3), DigitNetLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let history = trainer.fit(&both.inputs(), &both.targets(), &settings)?;
    let secs = started.elapsed().as_secs_f64();

    let same = mpi.same_on_every_rank(&model.state().params);
    if !same {
        return Err("the weights differ between the ranks".into());
    }
    if root {
        let probs = model.predict(&test.inputs())?;
        let matrix = ConfusionMatrix::from_scores(probs.digit.view(), &test.labels);
        println!("trained {} epochs in {secs:.1} s on {} processes; weights identical on every rank", history.epochs(), mpi.size());
        println!("test accuracy: {:.4} ({} samples)", matrix.accuracy(), test.len());
        std::fs::create_dir_all(OUT)?;
        model.save(format!("{OUT}/digits.safetensors"))?;
        history.write_csv(format!("{OUT}/digits_history.csv"))?;
        println!("wrote {OUT}/digits.safetensors, digits_history.csv");
    }
    Ok(())
}
