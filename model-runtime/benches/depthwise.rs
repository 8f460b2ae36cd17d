//! The direct depthwise kernel (`kernels::depthwise`, inner loop along a pixel's channels) against the
//! same convolution run as a grouped convolution with one group per channel (`kernels::grouped_conv`,
//! inner loop over one channel's `depth_multiplier` outputs), forward and backward, on MobileNet-like
//! shapes: 3×3 'same', batch 32.
//!
//! `cargo bench -p model-runtime --bench depthwise`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use model_runtime::kernels::activation::Activation;
use model_runtime::kernels::conv::Window2d;
use model_runtime::kernels::{depthwise, grouped_conv};
use std::hint::black_box;
use std::time::Duration;

/// (h, w, c, depth_multiplier, stride).
const SHAPES: [(usize, usize, usize, usize, usize); 3] = [(32, 32, 32, 1, 1), (16, 16, 64, 1, 2), (16, 16, 16, 2, 1)];

fn bench(c: &mut Criterion) {
    let batch = 32;
    for (h, w, ch, dm, s) in SHAPES {
        let g = Window2d::new(h, w, ch, [3, 3], [s, s], [1, 1], true);
        let cout = ch * dm;
        let x: Vec<f32> = (0..batch * g.in_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let k: Vec<f32> = (0..9 * cout).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b = vec![0.1f32; cout];
        let n = batch * g.positions() * cout;
        let mut y = vec![0.0f32; n];
        let mut group = c.benchmark_group(format!("depthwise/{h}x{w}x{ch}_dm{dm}_s{s}_b{batch}"));
        group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
        group.bench_function(BenchmarkId::new("forward", "direct"), |bn| {
            bn.iter(|| depthwise::forward(&g, dm, black_box(&x), &k, Some(&b), Activation::Linear, None, &mut y, batch))
        });
        group.bench_function(BenchmarkId::new("forward", "grouped"), |bn| {
            bn.iter(|| grouped_conv::forward(&g, ch, black_box(&x), &k, Some(&b), Activation::Linear, None, &mut y, batch, cout))
        });
        let (mut dx, mut dk, mut db, mut dy) = (vec![0.0; x.len()], vec![0.0; k.len()], vec![0.0; cout], vec![0.01f32; n]);
        group.bench_function(BenchmarkId::new("backward", "direct"), |bn| {
            bn.iter(|| {
                depthwise::backward(&g, dm, &x, &k, None, &y, &mut dy, Activation::Linear, Some(&mut dx), &mut dk, Some(&mut db), batch)
            })
        });
        group.bench_function(BenchmarkId::new("backward", "grouped"), |bn| {
            bn.iter(|| {
                grouped_conv::backward(
                    &g,
                    ch,
                    &x,
                    &k,
                    None,
                    &y,
                    &mut dy,
                    Activation::Linear,
                    Some(&mut dx),
                    &mut dk,
                    Some(&mut db),
                    batch,
                    cout,
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
