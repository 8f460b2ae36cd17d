//! The digits model (`examples/digits`) trained data-parallel on MPI (feature `mpi`): every process
//! loads the same data and calls the same `fit`; each takes its share of every global batch of 32
//! rows, the gradients are summed over the processes, and every rank takes the same step. Rank 0
//! prints the epochs, the test accuracy and writes the weights; every rank checks at the end that
//! its weights hold the same bits as rank 0's.
//!
//! It also trains what it must match, in the same run: the single-process run of `examples/digits`
//! (the same model, seed, global batch of 32, Adam at 2e-3, 60 epochs with early stopping; trained
//! with `Fit { data_parallel: false }`, so by one process alone), and three more single-process runs
//! whose initial weights differ from it in one weight by one ulp: rounding alone. The ranks share
//! these runs. The data-parallel run must equal the single-process one within 1e-5 over the first
//! three epochs (the sums of the shares round differently from the sum of the whole batch, by about
//! 1e-7), and its test accuracy must reach the single-process runs' within what rounding alone moves
//! it: those differences grow about tenfold per epoch, and from the fifth epoch or so on the runs
//! follow different (equally good) paths, so that early stopping restores a different epoch's
//! weights. A one-ulp change of one initial weight of one process moves the test accuracy as much.
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
/// Single-process runs: the digits example's, then runs from its initial weights with one weight moved
/// by one ulp.
const REFERENCES: usize = 4;
/// Epochs over which the data-parallel run must equal the single-process one (relative, each loss).
const EXACT_EPOCHS: usize = 3;
/// How many test samples the data-parallel run may get wrong beyond the worst single-process run: a
/// one-ulp change of one initial weight alone moves a single process' result by up to four (0.9889 to
/// 0.9777 in three of ten such runs, 2026-12-06), so the check fails on a real loss of accuracy, not
/// on which side of that spread a run lands.
const SLACK_SAMPLES: usize = 4;

fn main() -> std::process::ExitCode {
    // An error of one rank alone ends the whole job rather than leave the others waiting.
    Mpi::run(run)
}

/// The settings of `examples/digits`; the seed gives every rank the same row order.
fn settings(both: &Part, val: &Part, data_parallel: bool) -> Fit {
    Fit {
        epochs: 60,
        batch_size: 32,
        seed: SEED,
        validation_split: val.len() as f32 / both.len() as f32,
        early_stopping: Some(EarlyStopping { patience: 6, restore_best_weights: true, ..EarlyStopping::default() }),
        data_parallel,
        verbose: data_parallel,
        ..Fit::default()
    }
}

/// The outcome of one training run.
struct Run {
    accuracy: f64,
    history: History,
}

/// Trains the digits model with `fit` from its seeded weights, `nudge` (if any) moving one initial
/// weight by one ulp; returns the test accuracy and the history.
fn train(fit: &Fit, nudge: Option<usize>, (both, test): (&Part, &Part)) -> Result<(DigitNet, Run), Box<dyn std::error::Error>> {
    let mut model = DigitNet::new(SEED);
    if let Some(k) = nudge {
        let params = &mut model.state_mut().params;
        let i = (k * 7919) % params.len();
        params[i] = f32::from_bits(params[i].to_bits() + 1);
    }
    let mut trainer = model.compile(Adam::new(2e-3), DigitNetLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let history = trainer.fit(&both.inputs(), &both.targets(), fit)?;
    let probs = model.predict(&test.inputs())?;
    let accuracy = ConfusionMatrix::from_scores(probs.digit.view(), &test.labels).accuracy();
    Ok((model, Run { accuracy, history }))
}

fn run(mpi: &Mpi) -> Result<(), Box<dyn std::error::Error>> {
    let root = mpi.is_root();
    let (train_part, val, test) = load_split(SEED)?;
    let both = train_part.then(&val);
    if root {
        println!(
            "digits on {} processes: {} training, {} validation, {} test samples; global batch 32",
            mpi.size(),
            train_part.len(),
            val.len(),
            test.len()
        );
    }

    // The single-process runs, shared by the ranks (rank 0 trains the first, the digits example's); their
    // accuracies are summed over the ranks (each rank fills in its own runs), so that every rank holds all.
    let alone = settings(&both, &val, false);
    let mut accuracies = [0.0f32; REFERENCES];
    let mut single_losses = Vec::new();
    for k in (mpi.rank()..REFERENCES).step_by(mpi.size()) {
        let (_, reference) = train(&alone, (k > 0).then_some(k), (&both, &test))?;
        accuracies[k] = reference.accuracy as f32;
        if k == 0 {
            single_losses = reference.history.get("loss").unwrap_or(&[]).iter().take(EXACT_EPOCHS).copied().collect();
        }
    }
    mpi.sum(&mut accuracies);

    let started = Instant::now();
    let (model, parallel) = train(&settings(&both, &val, true), None, (&both, &test))?;
    let secs = started.elapsed().as_secs_f64();
    if !mpi.same_on_every_rank(&model.state().params) {
        return Err("the weights differ between the ranks".into());
    }
    let losses = parallel.history.get("loss").unwrap_or(&[]);
    let exact = single_losses.iter().zip(losses).map(|(&a, &b)| (b - a).abs() / a.abs()).fold(0.0f64, f64::max);
    let lowest = f64::from(accuracies.iter().copied().fold(f32::INFINITY, f32::min));
    let floor = lowest - SLACK_SAMPLES as f64 / test.len() as f64;
    if root {
        println!(
            "trained {} epochs in {secs:.1} s on {} processes; weights identical on every rank",
            parallel.history.epochs(),
            mpi.size()
        );
        println!("single process (examples/digits): test accuracy {:.4}", accuracies[0]);
        let nudged: Vec<String> = accuracies[1..].iter().map(|a| format!("{a:.4}")).collect();
        println!("single process, one initial weight moved by one ulp: {}", nudged.join(", "));
        println!(
            "{} processes: test accuracy {:.4} ({} samples; at least {floor:.4} passes); losses of the first {EXACT_EPOCHS} epochs within {exact:.1e} of one process'",
            mpi.size(),
            parallel.accuracy,
            test.len()
        );
        std::fs::create_dir_all(OUT)?;
        model.save(format!("{OUT}/digits.safetensors"))?;
        parallel.history.write_csv(format!("{OUT}/digits_history.csv"))?;
        println!("wrote {OUT}/digits.safetensors, digits_history.csv");
    }
    // Rank 0 trained the first single-process run: it checks the losses (an error ends every rank).
    if root && (exact.is_nan() || exact > 1e-5 || single_losses.len() < EXACT_EPOCHS.min(losses.len())) {
        return Err(format!("the first {EXACT_EPOCHS} epochs' losses differ from one process' by {exact:.1e} (limit 1e-5)").into());
    }
    if parallel.accuracy < floor {
        return Err(format!(
            "test accuracy {:.4} on {} processes, below the single-process runs' ({lowest:.4} the lowest) by more than rounding moves it",
            parallel.accuracy,
            mpi.size()
        )
        .into());
    }
    Ok(())
}
