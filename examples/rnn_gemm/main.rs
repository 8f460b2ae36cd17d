//! How close the recurrent kernels' matrix products come to the GEMM speed this machine gives, for
//! the layers of issue #17's benchmark models (`benches/recurrent.rs`): LSTM(128), GRU(128) and the
//! LSTM(64) each direction of Bidirectional(LSTM(64)) runs, 64 steps of 64 features, at batch 1 and 32.
//! `cargo run --release --example rnn_gemm`
//!
//! Per row, on one thread, best of 7 rounds of thread CPU time (benches/support/cputime.rs), so a
//! machine shared with other work still shows what the code costs:
//! - the step product (the batch's states times the recurrent kernel, rows×units×gates·units) as the
//!   layer runs it (`sgemv` at batch 1, `sgemm_small` above), alone and cache-warm, and `sgemm` at the
//!   same shape;
//! - the whole layer: the inference forward (`Rnn::infer`, what `predict` runs: nothing kept for
//!   backward), the training forward (`Rnn::forward`, which keeps every step's gates and states) and
//!   forward + backward through time (a training step's share), as GFLOP/s of all its matrix products (input projections, steps, and in backward the
//!   state gradients and the three whole-sequence products) over its whole time, gates included;
//! - the GEMM ceiling: `sgemm` at 256×512×512 in the same run.

#[path = "../../benches/support/cputime.rs"]
mod cputime;

use modelc::kernels::gemm::{set_num_threads, sgemm, sgemm_small, sgemv};
use modelc::kernels::recurrent::{Cell, Masked, Rnn, WeightGrads, Weights};
use modelc::Activation;
use std::hint::black_box;

/// Seconds per call of `f`: the best of 7 rounds of at least 50 ms of thread CPU time.
fn best<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t0 = cputime::duration(cputime::THREAD);
        let mut calls = 0;
        while (cputime::duration(cputime::THREAD) - t0).as_secs_f64() < 0.05 {
            f();
            calls += 1;
        }
        best = best.min((cputime::duration(cputime::THREAD) - t0).as_secs_f64() / calls as f64);
    }
    best
}

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 5000.0 - 0.1).collect()
}

fn gflops(macs: usize, secs: f64) -> f64 {
    2.0 * macs as f64 / secs / 1e9
}

fn main() {
    set_num_threads(1);
    let (m, k, n) = (256, 512, 512);
    let (a, b, mut c) = (values(m * k), values(k * n), vec![0.0; m * n]);
    let ceiling = gflops(m * k * n, best(|| sgemm(m, k, n, 1.0, black_box(&a), false, black_box(&b), false, 0.0, black_box(&mut c))));
    println!("GEMM ceiling (sgemm 256×512×512, 1 thread): {ceiling:.1} GFLOP/s");
    println!();
    println!("| layer | batch | step product | step kernel | sgemm at that shape | layer inference | layer training forward | layer forward + backward |");
    println!("|---|---|---|---|---|---|---|---|");
    let (steps, input) = (64, 64);
    for (name, cell, units) in [("LSTM(128)", Cell::Lstm, 128), ("GRU(128)", Cell::Gru, 128), ("LSTM(64), one direction", Cell::Lstm, 64)] {
        for batch in [1usize, 32] {
            let gu = cell.gates() * units;
            let (h, r, mut z) = (values(batch * units), values(units * gu), vec![0.0; batch * gu]);
            let kernel = best(|| match batch {
                1 => sgemv(units, gu, black_box(&h), black_box(&r), black_box(&mut z)),
                _ => sgemm_small(batch, units, gu, black_box(&h), black_box(&r), black_box(&mut z)),
            });
            let general = best(|| sgemm(batch, units, gu, 1.0, black_box(&h), false, black_box(&r), false, 0.0, black_box(&mut z)));
            let step_macs = batch * units * gu;
            let rnn = Rnn {
                cell,
                batch,
                steps,
                input,
                units,
                act: Activation::Tanh,
                rec_act: Activation::Sigmoid,
                go_backwards: false,
                return_sequences: false,
            };
            let (w, bias) = (values(input * gu), values(if cell == Cell::Gru { 2 * gu } else { gu }));
            let p = Weights { w: &w, r: &r, b: Some(&bias) };
            let x = values(batch * steps * input);
            let mut scratch = vec![0.0; batch * Rnn::scratch_len(cell, steps, units)];
            let mut work = vec![0.0; batch * Rnn::work_len(cell, steps, units)];
            let (mut y, dy) = (vec![0.0; batch * units], values(batch * units));
            let (mut gw, mut gr, mut gb, mut dx) = (vec![0.0; w.len()], vec![0.0; r.len()], vec![0.0; bias.len()], vec![0.0; x.len()]);
            let infer = best(|| rnn.infer(black_box(&x), Masked::NONE, None, None, &p, &mut scratch, &mut y, None, None));
            let fwd = best(|| rnn.forward(black_box(&x), None, None, &p, &mut scratch, &mut y, None, None));
            let train = best(|| {
                rnn.forward(black_box(&x), None, None, &p, &mut scratch, &mut y, None, None);
                let g = WeightGrads { w: &mut gw, r: &mut gr, b: Some(&mut gb) };
                rnn.backward(&x, &p, &scratch, &mut work, &dy, None, None, Some(&mut dx), g);
            });
            // Forward: input projections and steps; backward: the same twice more (state gradients
            // and dR; dW and dx).
            let fwd_macs = batch * steps * (input + units) * gu;
            println!(
                "| {name} | {batch} | {batch}×{units}×{gu} | {:.2} µs, {:.1} GFLOP/s ({:.0}% of ceiling) | {:.2} µs, {:.1} GFLOP/s | {:.0} µs, {:.1} GFLOP/s ({:.0}%) | {:.0} µs, {:.1} GFLOP/s ({:.0}%) | {:.0} µs, {:.1} GFLOP/s ({:.0}%) |",
                kernel * 1e6,
                gflops(step_macs, kernel),
                100.0 * gflops(step_macs, kernel) / ceiling,
                general * 1e6,
                gflops(step_macs, general),
                infer * 1e6,
                gflops(fwd_macs, infer),
                100.0 * gflops(fwd_macs, infer) / ceiling,
                fwd * 1e6,
                gflops(fwd_macs, fwd),
                100.0 * gflops(fwd_macs, fwd) / ceiling,
                train * 1e6,
                gflops(3 * fwd_macs, train),
                100.0 * gflops(3 * fwd_macs, train) / ceiling,
            );
        }
    }
}
