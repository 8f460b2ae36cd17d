//! The inference forward packs each Dense kernel for the GEMM once and reads the packed copy on the
//! next calls (`kernels::gemm::PackCache` in the inference workspace): a second call packs nothing,
//! and after any change of the weights (`params_mut`, `set_param`, `load`, a training step, `state_mut`)
//! the next inference packs again and computes with the new weights, bit for bit as a fresh model.

use crate::counting_alloc::allocations_in;
use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::ops;
use modelc::prelude::*;

model! {
    /// M4 of BENCH.md in small: two Dense layers wide enough to be packed, a residual Add, a Dense
    /// too narrow to be packed.
    pub struct PackedMlp {
        input x: [40];
        let h1 = Dense(48, activation = relu)(x);
        let h2 = Dense(48, activation = relu)(h1);
        let s = Add()([h1, h2]);
        output y = Dense(10, activation = softmax)(s);
    }
}

fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 40), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 10), |(i, j)| f32::from(u8::from(i % 10 == j)));
    (x, y)
}

fn bits(out: &PackedMlpOutputs) -> Vec<u32> {
    out.y.iter().map(|v| v.to_bits()).collect()
}

/// How many times each packed kernel was packed, in the order the forward first used them.
fn packs(model: &PackedMlp) -> Vec<u64> {
    model.state().infer.packed.entries().iter().map(|e| e.packs()).collect()
}

/// The model's prediction, checked against a clone's (a fresh inference workspace, nothing packed)
/// and against the training-layout forward in inference mode, bit for bit.
fn predict_checked(model: &mut PackedMlp, x: &Array2<f32>) -> Vec<u32> {
    let inputs = PackedMlpInputs { x: x.view() };
    let got = bits(&model.predict(&inputs).unwrap());
    let fresh = bits(&model.clone().predict(&inputs).unwrap());
    assert_eq!(got, fresh, "the packed kernels are stale: not the prediction of a fresh copy of the model");
    assert_eq!(got, bits(&ops::forward(model, &inputs, false).unwrap()), "predict differs from forward(.., false)");
    got
}

#[test]
fn a_second_inference_reads_the_packed_kernels_without_packing_them_again() {
    let (x, _) = data(32, 1);
    let mut model = PackedMlp::new(3);
    let inputs = PackedMlpInputs { x: x.view() };
    let first = bits(&model.predict(&inputs).unwrap());
    assert_eq!(packs(&model), [1, 1], "the two wide kernels are packed once (Dense(10) is not packed)");
    let mut out = model.predict(&inputs).unwrap();
    for _ in 0..3 {
        model.predict_into(&inputs, &mut out).unwrap();
    }
    assert_eq!(bits(&out), first);
    assert_eq!(packs(&model), [1, 1], "an inference on unchanged weights packed a kernel again");
    // Packing again after a weight change reuses the panels' buffers: nothing allocated.
    model.params_mut()[0] += 1.0;
    let n = allocations_in(|| model.predict_into(&inputs, &mut out).unwrap());
    assert_eq!(n, 0, "{n} allocations in an inference that packed the kernels again");
    assert_eq!(packs(&model), [2, 2]);
    model.params_mut()[0] -= 1.0;
    model.predict_into(&inputs, &mut out).unwrap();
    assert_eq!(bits(&out), first);
    // Another batch size reads the same packed kernels.
    let (x8, _) = data(8, 2);
    model.predict(&PackedMlpInputs { x: x8.view() }).unwrap();
    assert_eq!(packs(&model), [3, 3]);
    // `predict_batched` packs them for none of its chunks.
    modelc::train::predict_batched(&mut model, &inputs, 8).unwrap();
    assert_eq!(packs(&model), [3, 3]);
}

#[test]
fn every_way_of_changing_the_weights_makes_the_next_inference_pack_and_use_the_new_ones() {
    let (x, y) = data(32, 4);
    let mut model = PackedMlp::new(5);
    let mut last = predict_checked(&mut model, &x);
    let mut expect_changed = |model: &mut PackedMlp, what: &str, packs_before: Vec<u64>| {
        let now = predict_checked(model, &x);
        assert_ne!(now, last, "{what}: the prediction did not change");
        // Each kernel packed once more (after `load`, whose new buffer moves every kernel, an entry
        // may hold another kernel than before, but no more entries).
        let after = packs(model);
        assert_eq!(after.len(), packs_before.len(), "{what}: packs {packs_before:?} -> {after:?}");
        assert_eq!(after.iter().sum::<u64>(), packs_before.iter().sum::<u64>() + 2, "{what}: packs {packs_before:?} -> {after:?}");
        last = now;
    };

    let before = packs(&model);
    model.params_mut().iter_mut().for_each(|v| *v *= 1.5);
    expect_changed(&mut model, "params_mut", before);

    let before = packs(&model);
    let kernel = Array2::from_shape_fn((40, 48), |(i, j)| ((i * 48 + j) % 7) as f32 * 0.05 - 0.1);
    model.set_param("dense/kernel", kernel.view()).unwrap();
    expect_changed(&mut model, "set_param", before);

    let before = packs(&model);
    let path = std::env::temp_dir().join(format!("modelc_prepacked_{}.safetensors", std::process::id()));
    PackedMlp::new(99).save(&path).unwrap();
    model.load(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    expect_changed(&mut model, "load", before);

    let before = packs(&model);
    {
        let mut trainer = model.compile(Adam::default(), PackedMlpLosses { y: Loss::CategoricalCrossentropy }, &[]);
        let (inputs, targets) = (PackedMlpInputs { x: x.view() }, PackedMlpTargets { y: y.view() });
        for _ in 0..3 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    }
    expect_changed(&mut model, "an optimizer step", before);

    let before = packs(&model);
    model.state_mut().params.iter_mut().for_each(|v| *v = -*v);
    expect_changed(&mut model, "state_mut", before);
}
