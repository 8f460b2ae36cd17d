//! Sequence glue of issue #17 end to end: `RepeatVector` and `Permute` compiled into models. Forward against
//! values worked out by hand; every parameter gradient against finite differences with each layer between
//! a parameterized layer and the head (so its input gradient is checked, as its operand's first gradient
//! writer and as a later one); and Keras parity (outputs, gradients, three Adam steps) against the fixture
//! written by `scripts/keras_seq.py`.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{arr2, arr3, Array2, Array4};
use modelc::network::Network;
use modelc::prelude::*;

use crate::counting_alloc;
use crate::parity;
use counting_alloc::allocations_in;
use parity::*;

model! {
    /// RepeatVector and Permute on tiny tensors.
    pub struct Glue {
        input v: [2];
        input m: [2, 3];
        input t: [2, 1, 3];
        output repeated = RepeatVector(3)(v);
        output transposed = Permute((2, 1))(m);
        output rotated = Permute((3, 1, 2))(t);
    }
}

#[test]
fn repeat_vector_and_permute_forward() {
    let v = arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
    let m = arr3(&[[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], [[7.0, 8.0, 9.0], [10.0, 11.0, 12.0]]]);
    let t = Array4::from_shape_vec((2, 2, 1, 3), (0..12).map(|x| x as f32).collect()).unwrap();
    let out = Glue::new(0).predict(&GlueInputs { v: v.view(), m: m.view(), t: t.view() }).unwrap();
    assert_eq!(out.repeated, arr3(&[[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], [[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]]]));
    assert_eq!(out.transposed, arr3(&[[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], [[7.0, 10.0], [8.0, 11.0], [9.0, 12.0]]]));
    // (2, 1, 3) -> (3, 2, 1): out[c][h][w] = t[h][w][c].
    assert_eq!(out.rotated.shape(), &[2, 3, 2, 1]);
    for b in 0..2 {
        for c in 0..3 {
            for h in 0..2 {
                assert_eq!(out.rotated[[b, c, h, 0]], t[[b, h, 0, c]]);
            }
        }
    }
}

model! {
    /// Each glue layer behind a Dense: `h` feeds RepeatVector and a Permute (so one of them is its gradient's
    /// first writer and the other adds), and a rank-4 Permute behind a convolution.
    pub struct GlueGrad {
        input v: [3];
        input image: [3, 2, 2];
        let h = Dense(4, activation = tanh)(v);
        let r = RepeatVector(3)(h);
        let s = Dense(2, activation = tanh)(r);
        let p = Permute((2, 1))(s);
        let hh = Permute((1,))(h);
        let c = Conv2D(3, 1, activation = tanh)(image);
        let q = Permute((2, 3, 1))(c);
        let q2 = Permute((3, 2, 1))(Dense(2)(q));
        output out = Dense(2)(Concatenate()([Flatten()(p), hh, Flatten()(q2)]));
    }
}

#[test]
fn glue_gradients_match_finite_differences() {
    let mut model = GlueGrad::new(11);
    let mut rng = Rng::new(5);
    let v = Array2::from_shape_fn((3, 3), |_| rng.uniform(-1.0, 1.0));
    let image = Array4::from_shape_fn((3, 3, 2, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &GlueGradInputs { v: v.view(), image: image.view() }, 1e-2, 2e-3, 2e-2, 9).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

model! {
    /// scripts/keras_seq.py, `seq_glue`.
    struct SeqGlue {
        input v: [5];
        input seq: [6, 4];
        input image: [2, 3, 4];
        let h = Dense(3, activation = tanh)(v);
        let r = RepeatVector(4)(h);
        let p = Permute((2, 1))(seq);
        let m = Concatenate()([r, p]);
        let d = Dense(5, activation = tanh)(m);
        let q = Permute((2, 1))(d);
        output y = Dense(2)(GlobalAveragePooling1D()(q));
        let i = Permute((3, 1, 2))(image);
        let i = Conv2D(2, 1, activation = tanh)(i);
        let i = Permute((2, 3, 1))(i);
        output z = Dense(1, activation = sigmoid)(Flatten()(i));
    }
}

#[test]
fn repeat_vector_and_permute_match_keras() {
    let fx = fixture("seq_glue");
    let mut model = SeqGlue::new(0);
    set_params(&mut model, &fx);
    let inputs = SeqGlueInputs { v: view(&fx, "input/v"), seq: view(&fx, "input/seq"), image: view(&fx, "input/image") };

    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("z", out.z.as_slice().unwrap(), get(&fx, "output/z").as_slice().unwrap(), 1e-5, 0.0);

    let out = model.forward(&inputs, true).unwrap();
    let (l_y, d_y) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    let (l_z, d_z) = loss_and_grad(Loss::BinaryCrossentropy, &out.z.into_dyn(), get(&fx, "target/z"));
    assert_close("loss", &[(l_y + l_z) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&SeqGlueOutputs { y: d_y.into_dimensionality().unwrap(), z: d_z.into_dimensionality().unwrap() }).unwrap();
    check_grads::<SeqGlue>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = SeqGlueTargets { y: view(&fx, "target/y"), z: view(&fx, "target/z") };
    let losses = SeqGlueLosses { y: Loss::MeanSquaredError, z: Loss::BinaryCrossentropy };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    drop(trainer);
    check_adam3(&model, &fx, 1e-5);
}

model! {
    /// scripts/keras_seq.py, `time_distributed`: the wrapped layers take Keras' default names first.
    struct Frames {
        input frames: [4, 6, 6, 2];
        input seq: [5, 3];
        let x = TimeDistributed(Conv2D(3, 3, activation = tanh))(frames);
        let x = TimeDistributed(MaxPooling2D())(x);
        let x = TimeDistributed(Flatten())(x);
        let x = TimeDistributed(Dense(5, activation = tanh))(x);
        output probs = TimeDistributed(Dense(3, activation = softmax))(x);
        let s = TimeDistributed(Dense(4, activation = tanh))(seq);
        output aux = Dense(2)(GlobalAveragePooling1D()(s));
    }
}

#[test]
fn time_distributed_matches_keras_with_keras_weight_names() {
    let names: Vec<&str> = Frames::PARAMS.iter().map(|s| s.name).collect();
    assert!(names.contains(&"time_distributed/conv2d/kernel") && names.contains(&"time_distributed_4/dense_1/bias"), "{names:?}");
    let fx = fixture("time_distributed");
    let mut model = Frames::new(0);
    set_params(&mut model, &fx);
    let inputs = FramesInputs { frames: view(&fx, "input/frames"), seq: view(&fx, "input/seq") };

    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("aux", out.aux.as_slice().unwrap(), get(&fx, "output/aux").as_slice().unwrap(), 1e-5, 0.0);

    let out = model.forward(&inputs, true).unwrap();
    let (l_p, d_p) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    let (l_a, d_a) = loss_and_grad(Loss::MeanSquaredError, &out.aux.into_dyn(), get(&fx, "target/aux"));
    assert_close("loss", &[(l_p + l_a) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads =
        model.backward(&FramesOutputs { probs: d_p.into_dimensionality().unwrap(), aux: d_a.into_dimensionality().unwrap() }).unwrap();
    check_grads::<Frames>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = FramesTargets { probs: view(&fx, "target/probs"), aux: view(&fx, "target/aux") };
    let losses = FramesLosses { probs: Loss::CategoricalCrossentropy, aux: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    drop(trainer);
    check_adam3(&model, &fx, 1e-5);
}

model! {
    /// TimeDistributed around layers with parameters, scratch and state (Conv1D, BatchNormalization in
    /// inference, LayerNormalization), a wrapped wrapper, an explicit inner name, and a shared wrapper.
    pub struct TdGrad {
        input seq: [3, 5, 2];
        layer shared = TimeDistributed(Dense(2, activation = tanh, name = "per_step"));
        let c = TimeDistributed(Conv1D(3, 2, activation = tanh))(seq);
        let n = TimeDistributed(LayerNormalization())(c);
        let b = TimeDistributed(TimeDistributed(Dense(4, activation = gelu)))(n);
        let p = TimeDistributed(GlobalMaxPooling1D())(b);
        output out = Dense(2)(Concatenate()([Flatten()(shared(p)), Flatten()(shared(Permute((2, 1))(Dense(3)(Permute((2, 1))(p)))))]));
    }
}

#[test]
fn time_distributed_gradients_match_finite_differences() {
    let mut model = TdGrad::new(13);
    assert_eq!(model.param("time_distributed/per_step/kernel").unwrap().shape(), &[4, 2]);
    assert_eq!(model.param("time_distributed_4/time_distributed_3/dense/kernel").unwrap().shape(), &[3, 4]);
    let mut rng = Rng::new(6);
    let seq = Array4::from_shape_fn((2, 3, 5, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &TdGradInputs { seq: seq.view() }, 1e-2, 2e-3, 2e-2, 10).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn glue_and_time_distributed_train_steps_allocate_nothing_after_warm_up() {
    let fx = fixture("time_distributed");
    let mut model = Frames::new(1);
    let inputs = FramesInputs { frames: view(&fx, "input/frames"), seq: view(&fx, "input/seq") };
    let targets = FramesTargets { probs: view(&fx, "target/probs"), aux: view(&fx, "target/aux") };
    let losses = FramesLosses { probs: Loss::CategoricalCrossentropy, aux: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::default(), losses, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 steady-state training steps of TimeDistributed layers");
    drop(trainer);

    let fx = fixture("seq_glue");
    let mut model = SeqGlue::new(1);
    let inputs = SeqGlueInputs { v: view(&fx, "input/v"), seq: view(&fx, "input/seq"), image: view(&fx, "input/image") };
    let targets = SeqGlueTargets { y: view(&fx, "target/y"), z: view(&fx, "target/z") };
    let mut trainer = model.compile(Adam::default(), SeqGlueLosses { y: Loss::MeanSquaredError, z: Loss::BinaryCrossentropy }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 steady-state training steps of RepeatVector and Permute");
}

model! {
    /// TimeDistributed around layers that act on the last axis computes what they compute on the whole
    /// sequence: Dense, and BatchNormalization (statistics over batch and steps in both).
    pub struct Wrapped {
        input seq: [4, 3];
        output d = TimeDistributed(Dense(2, activation = tanh))(seq);
        output n = TimeDistributed(BatchNormalization(momentum = 0.5))(seq);
    }
}

model! {
    /// `Wrapped` without the wrappers.
    pub struct Plain {
        input seq: [4, 3];
        output d = Dense(2, activation = tanh)(seq);
        output n = BatchNormalization(momentum = 0.5)(seq);
    }
}

#[test]
fn time_distributed_dense_and_batch_normalization_equal_the_layers_on_the_sequence() {
    let mut rng = Rng::new(8);
    let seq = modelc::ndarray::Array3::from_shape_fn((5, 4, 3), |_| rng.uniform(-2.0, 2.0));
    let target = modelc::ndarray::Array3::from_shape_fn((5, 4, 2), |_| rng.uniform(-1.0, 1.0));
    let target_n = modelc::ndarray::Array3::from_shape_fn((5, 4, 3), |_| rng.uniform(-1.0, 1.0));
    let (mut w, mut p) = (Wrapped::new(3), Plain::new(3));
    let names = ["kernel", "bias"].map(|s| (format!("time_distributed/dense/{s}"), format!("dense/{s}")));
    for (a, b) in &names {
        let v = w.param(a).unwrap().to_owned();
        p.set_param(b, v.view()).unwrap();
    }
    let mut tw = w.compile(Sgd::new(0.1), WrappedLosses { d: Loss::MeanSquaredError, n: Loss::MeanSquaredError }, &[]);
    let mut tp = p.compile(Sgd::new(0.1), PlainLosses { d: Loss::MeanSquaredError, n: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        tw.train_step(&WrappedInputs { seq: seq.view() }, &WrappedTargets { d: target.view(), n: target_n.view() }).unwrap();
        tp.train_step(&PlainInputs { seq: seq.view() }, &PlainTargets { d: target.view(), n: target_n.view() }).unwrap();
    }
    drop((tw, tp));
    let pairs = [
        ("time_distributed/dense/kernel", "dense/kernel"),
        ("time_distributed_1/batch_normalization/gamma", "batch_normalization/gamma"),
        ("time_distributed_1/batch_normalization/moving_mean", "batch_normalization/moving_mean"),
        ("time_distributed_1/batch_normalization/moving_variance", "batch_normalization/moving_variance"),
    ];
    for (a, b) in pairs {
        let (x, y) = (w.param(a).unwrap().to_owned(), p.param(b).unwrap().to_owned());
        assert_close(a, x.as_slice().unwrap(), y.as_slice().unwrap(), 1e-6, 1e-5);
    }
    let (ow, op) = (w.predict(&WrappedInputs { seq: seq.view() }).unwrap(), p.predict(&PlainInputs { seq: seq.view() }).unwrap());
    assert_close("d", ow.d.as_slice().unwrap(), op.d.as_slice().unwrap(), 1e-6, 1e-5);
    assert_close("n", ow.n.as_slice().unwrap(), op.n.as_slice().unwrap(), 1e-6, 1e-5);
}
