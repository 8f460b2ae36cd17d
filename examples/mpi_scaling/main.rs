//! Scaling of data-parallel training (feature `mpi`) on BENCH M4 (`wide_mlp`, 670k parameters) at a
//! global batch of 256: the time of a training step (forward, backward, gradient sum, Adam) per global
//! batch, the time of the gradient sum alone (`MPI_Allreduce` of the 670k-float gradient buffer), and
//! the time of a validation pass over the 10,240 rows (sharded across the ranks).
//! Rank 0 prints one line. Run with 1 and 2 processes, one thread each, and compare:
//!
//! `MODELC_NUM_THREADS=1 mpirun -n 1 target/release/examples/mpi_scaling`
//! `MODELC_NUM_THREADS=1 mpirun -n 2 target/release/examples/mpi_scaling`
//!
//! Without arguments the gradients are summed in one `MPI_Allreduce` after backward
//! (`Fit { overlap_buckets: None }`); with `overlap BYTES` the sum overlaps backward in buckets of
//! `BYTES` (`Some(BYTES)`; `fit`'s default is 1 MiB, `Fit::OVERLAP_BUCKET`):
//! `MODELC_NUM_THREADS=1 mpirun -n 2 target/release/examples/mpi_scaling overlap 1048576`

use std::time::Instant;

#[path = "../../benches/support/cputime.rs"]
mod cputime;

use modelc::distributed::Mpi;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// BENCH M4.
    pub struct WideMlp {
        input x: [784];
        let h1 = Dense(512, activation = relu)(x);
        let h2 = Dense(512, activation = relu)(h1);
        output probs = Dense(10, activation = softmax)(Add()([h1, h2]));
    }
}

const BATCH: usize = 256;
const STEPS: usize = 40;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mpi = Mpi::init()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let overlap = match args.as_slice() {
        [] => None,
        [flag, bytes] if flag == "overlap" => Some(bytes.parse::<usize>()?),
        _ => return Err("usage: mpi_scaling [overlap BYTES]".into()),
    };
    let rows = BATCH * STEPS;
    let x = Array2::from_shape_fn((rows, 784), |(r, c)| ((r * 31 + c * 17) % 97) as f32 / 97.0);
    let y = Array2::from_shape_fn((rows, 10), |(r, c)| f32::from(u8::from(r % 10 == c)));
    let mut model = WideMlp::new(1);
    let mut trainer = model.compile(Adam::new(1e-3), WideMlpLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    let (inputs, targets) = (WideMlpInputs { x: x.view() }, WideMlpTargets { probs: y.view() });
    let fit = |epochs| Fit { epochs, batch_size: BATCH, verbose: false, overlap_buckets: overlap, ..Fit::default() };
    // Warm-up epoch (workspaces, first-touch), then the timed epochs.
    trainer.fit(&inputs, &targets, &fit(1))?;
    mpi.barrier();
    let (started, cpu) = (Instant::now(), cputime::seconds(cputime::PROCESS));
    trainer.fit(&inputs, &targets, &fit(3))?;
    let step = started.elapsed().as_secs_f64() / (3 * STEPS) as f64;
    let step_cpu = (cputime::seconds(cputime::PROCESS) - cpu) / (3 * STEPS) as f64;

    // Validation (sharded across the ranks): one step of training and a validation pass over all the
    // rows, less the step.
    let reps_val = 3;
    mpi.barrier();
    let (started, cpu) = (Instant::now(), cputime::seconds(cputime::PROCESS));
    for _ in 0..reps_val {
        let one_step = Fit { steps_per_epoch: Some(1), shuffle: false, ..fit(1) };
        trainer.fit_with_validation_data(&inputs, &targets, (&inputs, &targets), &one_step)?;
    }
    let validation = (started.elapsed().as_secs_f64() / reps_val as f64 - step).max(0.0);
    // This rank's CPU time for the same (its share of the step and of the validation, and its waits).
    let validation_cpu = (cputime::seconds(cputime::PROCESS) - cpu) / reps_val as f64;

    let mut grads = vec![1e-3f32; WideMlp::PARAM_COUNT];
    let reps = 50;
    mpi.barrier();
    let started = Instant::now();
    for _ in 0..reps {
        mpi.sum(&mut grads);
    }
    let sum = started.elapsed().as_secs_f64() / reps as f64;
    if !mpi.same_on_every_rank(&trainer.model().state().params) {
        return Err("the weights differ between the ranks".into());
    }
    if mpi.is_root() {
        println!(
            "M4, global batch {BATCH}, {} process(es), {} thread(s) each, gradient sum {}: {:.2} ms per step (rank 0's CPU {:.2} ms); gradient sum of {} floats alone {:.3} ms ({:.0}% of the step); validation of {rows} rows {:.1} ms (one step and the validation: rank 0's CPU {:.1} ms)",
            mpi.size(),
            modelc::num_threads(),
            overlap.map_or("after backward".to_string(), |b| format!("overlapping backward in buckets of {b} bytes")),
            step * 1e3,
            step_cpu * 1e3,
            WideMlp::PARAM_COUNT,
            sum * 1e3,
            100.0 * sum / step,
            validation * 1e3,
            validation_cpu * 1e3
        );
    }
    Ok(())
}
