//! Scaling of data-parallel training (feature `mpi`) on BENCH M4 (`wide_mlp`, 670k parameters) at a
//! global batch of 256: the time of a training step (forward, backward, gradient sum, Adam) per global
//! batch, and the time of the gradient sum alone (`MPI_Allreduce` of the 670k-float gradient buffer).
//! Rank 0 prints one line. Run with 1 and 2 processes, one thread each, and compare:
//!
//! `MODELC_NUM_THREADS=1 mpirun -n 1 target/release/examples/mpi_scaling`
//! `MODELC_NUM_THREADS=1 mpirun -n 2 target/release/examples/mpi_scaling`

use std::time::Instant;

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
    let rows = BATCH * STEPS;
    let x = Array2::from_shape_fn((rows, 784), |(r, c)| ((r * 31 + c * 17) % 97) as f32 / 97.0);
    let y = Array2::from_shape_fn((rows, 10), |(r, c)| f32::from(u8::from(r % 10 == c)));
    let mut model = WideMlp::new(1);
    let mut trainer = model.compile(Adam::new(1e-3), WideMlpLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    let (inputs, targets) = (WideMlpInputs { x: x.view() }, WideMlpTargets { probs: y.view() });
    let fit = |epochs| Fit { epochs, batch_size: BATCH, verbose: false, ..Fit::default() };
    // Warm-up epoch (workspaces, first-touch), then the timed epochs.
    trainer.fit(&inputs, &targets, &fit(1))?;
    mpi.barrier();
    let started = Instant::now();
    trainer.fit(&inputs, &targets, &fit(3))?;
    let step = started.elapsed().as_secs_f64() / (3 * STEPS) as f64;

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
            "M4, global batch {BATCH}, {} process(es), {} thread(s) each: {:.2} ms per step; gradient sum of {} floats {:.3} ms ({:.0}% of the step)",
            mpi.size(),
            modelc::num_threads(),
            step * 1e3,
            WideMlp::PARAM_COUNT,
            sum * 1e3,
            100.0 * sum / step
        );
    }
    Ok(())
}
