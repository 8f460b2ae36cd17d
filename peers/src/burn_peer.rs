//! The BENCH.md models in burn 0.22 on its NdArray backend (f32, CPU).
//!
//! Training runs on `Device::ndarray().autodiff()`; inference runs on `model.valid()`, the same
//! weights on the plain NdArray device, so no autodiff graph is recorded there. Layers are burn-nn's
//! `Linear` and `Conv2d` (NCHW input, `PaddingConfig2d::Same`) with Glorot-uniform (Xavier) kernels;
//! Adam is burn-optim's with ε set to Keras' 1e-7.

use crate::{Batch, LossKind, Runner, Spec, ADAM_EPSILON, CLIP, LEARNING_RATE};
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};

/// Keras' default kernel initializer.
const GLOROT: Initializer = Initializer::XavierUniform { gain: 1.0 };

fn dense(fan_in: usize, fan_out: usize, device: &Device) -> Linear {
    LinearConfig::new(fan_in, fan_out).with_initializer(GLOROT).init(device)
}

fn conv(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3]).with_padding(PaddingConfig2d::Same).with_initializer(GLOROT).init(device)
}

/// One model input on a burn device.
#[derive(Clone, Debug)]
pub enum Input {
    /// batch × features.
    Flat(Tensor<2>),
    /// batch × channels × height × width.
    Image(Tensor<4>),
}

impl Input {
    fn flat(&self) -> Tensor<2> {
        match self {
            Input::Flat(x) => x.clone(),
            Input::Image(x) => x.clone().flatten(1, 3),
        }
    }

    fn image(&self) -> crate::Result<Tensor<4>> {
        match self {
            Input::Image(x) => Ok(x.clone()),
            Input::Flat(_) => Err("expected an image input".into()),
        }
    }
}

/// A BENCH model as a burn module: its forward pass from inputs to output probabilities.
pub trait Net: Module + Sized + 'static {
    /// Fresh weights on `device`.
    fn init(device: &Device) -> Self;

    /// Output probabilities, one batch × width tensor per output.
    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>>;
}

/// BENCH M1 (fusion).
#[derive(Module, Debug)]
pub struct Fusion {
    l1: Linear,
    l2: Linear,
    r1: Linear,
    head: Linear,
}

impl Net for Fusion {
    fn init(d: &Device) -> Self {
        Fusion { l1: dense(8, 16, d), l2: dense(16, 8, d), r1: dense(4, 8, d), head: dense(16, 1, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [left, right] = xs else { return Err("M1 takes two inputs".into()) };
        let l = relu(self.l2.forward(relu(self.l1.forward(left.flat()))));
        let r = relu(self.r1.forward(right.flat()));
        Ok(vec![sigmoid(self.head.forward(Tensor::cat(vec![l, r], 1)))])
    }
}

/// BENCH M2 (multitask).
#[derive(Module, Debug)]
pub struct Multitask {
    d1: Linear,
    d2: Linear,
    skip: Linear,
    a: Linear,
    b: Linear,
}

impl Net for Multitask {
    fn init(d: &Device) -> Self {
        Multitask { d1: dense(64, 128, d), d2: dense(128, 128, d), skip: dense(64, 128, d), a: dense(128, 10, d), b: dense(128, 1, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [x] = xs else { return Err("M2 takes one input".into()) };
        let x = x.flat();
        let trunk = relu(self.d2.forward(relu(self.d1.forward(x.clone())))) + self.skip.forward(x);
        Ok(vec![softmax(self.a.forward(trunk.clone()), 1), sigmoid(self.b.forward(trunk))])
    }
}

/// BENCH M3 (vision_meta).
#[derive(Module, Debug)]
pub struct VisionMeta {
    c1: Conv2d,
    c2: Conv2d,
    meta: Linear,
    head: Linear,
}

impl Net for VisionMeta {
    fn init(d: &Device) -> Self {
        VisionMeta { c1: conv(3, 16, d), c2: conv(16, 32, d), meta: dense(6, 8, d), head: dense(40, 3, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [image, meta] = xs else { return Err("M3 takes two inputs".into()) };
        let v = relu(self.c2.forward(relu(self.c1.forward(image.image()?))));
        let pooled: Tensor<2> = v.mean_dims(&[2, 3]).flatten(1, 3);
        let m = relu(self.meta.forward(meta.flat()));
        Ok(vec![softmax(self.head.forward(Tensor::cat(vec![pooled, m], 1)), 1)])
    }
}

/// BENCH M4 (wide_mlp).
#[derive(Module, Debug)]
pub struct WideMlp {
    h1: Linear,
    h2: Linear,
    head: Linear,
}

impl Net for WideMlp {
    fn init(d: &Device) -> Self {
        WideMlp { h1: dense(784, 512, d), h2: dense(512, 512, d), head: dense(512, 10, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [x] = xs else { return Err("M4 takes one input".into()) };
        let h1 = relu(self.h1.forward(x.flat()));
        let h2 = relu(self.h2.forward(h1.clone()));
        Ok(vec![softmax(self.head.forward(h1 + h2), 1)])
    }
}

/// BENCH M5 (siamese): one encoder applied to both inputs.
#[derive(Module, Debug)]
pub struct Siamese {
    encoder: Linear,
    head: Linear,
}

impl Net for Siamese {
    fn init(d: &Device) -> Self {
        Siamese { encoder: dense(128, 64, d), head: dense(64, 1, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [a, b] = xs else { return Err("M5 takes two inputs".into()) };
        let avg = (relu(self.encoder.forward(a.flat())) + relu(self.encoder.forward(b.flat()))).mul_scalar(0.5);
        Ok(vec![sigmoid(self.head.forward(avg))])
    }
}

/// Mean cross-entropy of probabilities `p` against targets `y`, probabilities clipped as Keras does.
fn cross_entropy(p: Tensor<2>, y: Tensor<2>, kind: LossKind) -> Tensor<1> {
    let p = p.clamp(CLIP, 1.0 - CLIP);
    match kind {
        LossKind::BinaryCrossentropy => {
            let neg = y.clone().neg().add_scalar(1.0) * p.clone().neg().add_scalar(1.0).log();
            (y * p.log() + neg).mean().neg()
        }
        LossKind::CategoricalCrossentropy => (y * p.log()).sum_dim(1).mean().neg(),
    }
}

/// A BENCH model in burn with its Adam state and a prepared batch (on both devices).
pub struct BurnRunner<M: Net> {
    spec: Spec,
    /// `None` only while a training step has moved the model into the optimizer.
    model: Option<M>,
    inference: M,
    optimizer: ModuleOptimizer,
    train_inputs: Vec<Input>,
    infer_inputs: Vec<Input>,
    targets: Vec<Tensor<2>>,
}

fn inputs(batch: &Batch, device: &Device) -> crate::Result<Vec<Input>> {
    (0..batch.inputs.len())
        .map(|i| {
            let (data, shape) = batch.peer_input(i)?;
            Ok(match *shape.as_slice() {
                [n, c, h, w] => Input::Image(Tensor::from_data(TensorData::new(data, [n, c, h, w]), device)),
                [n, f] => Input::Flat(Tensor::from_data(TensorData::new(data, [n, f]), device)),
                _ => return Err(format!("unsupported input shape {shape:?}").into()),
            })
        })
        .collect()
}

impl<M: Net> BurnRunner<M> {
    /// Fresh weights for model `M` (which must be `spec`), holding `batch` as its input.
    pub fn new(spec: Spec, batch: &Batch) -> crate::Result<Self> {
        // The brief is burn's NdArray backend; burn 0.22 deprecates it in favour of `flex`.
        #[allow(deprecated)]
        let plain = Device::ndarray();
        let device = plain.clone().autodiff();
        let model = M::init(&device);
        let inference = model.valid();
        let targets = batch
            .targets
            .iter()
            .map(|y| Tensor::from_data(TensorData::new(y.iter().copied().collect::<Vec<f32>>(), [y.nrows(), y.ncols()]), &device))
            .collect();
        Ok(BurnRunner {
            spec,
            model: Some(model),
            inference,
            optimizer: AdamConfig::new().with_epsilon(ADAM_EPSILON as f32).init(),
            train_inputs: inputs(batch, &device)?,
            infer_inputs: inputs(batch, &plain)?,
            targets,
        })
    }
}

impl<M: Net> Runner for BurnRunner<M> {
    fn name(&self) -> &'static str {
        "burn"
    }

    fn infer(&mut self) -> crate::Result<Vec<Vec<usize>>> {
        let outputs = self.inference.forward(&self.infer_inputs)?;
        Ok(outputs.iter().map(|t| t.dims().to_vec()).collect())
    }

    fn train_step(&mut self) -> crate::Result<f32> {
        let model = self.model.take().ok_or("a previous training step failed")?;
        let outputs = model.forward(&self.train_inputs)?;
        let loss = outputs
            .into_iter()
            .zip(self.targets.iter().cloned())
            .zip(self.spec.outputs())
            .map(|((p, y), &(_, kind))| cross_entropy(p, y, kind))
            .reduce(|a, b| a + b)
            .ok_or("model without outputs")?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optimizer.step(LEARNING_RATE, model, grads));
        Ok(loss.into_scalar::<f32>())
    }
}

/// The burn runner of `spec` holding `batch`.
pub fn runner(spec: Spec, batch: &Batch) -> crate::Result<Box<dyn Runner>> {
    Ok(match spec {
        Spec::M1 => Box::new(BurnRunner::<Fusion>::new(spec, batch)?),
        Spec::M2 => Box::new(BurnRunner::<Multitask>::new(spec, batch)?),
        Spec::M3 => Box::new(BurnRunner::<VisionMeta>::new(spec, batch)?),
        Spec::M4 => Box::new(BurnRunner::<WideMlp>::new(spec, batch)?),
        Spec::M5 => Box::new(BurnRunner::<Siamese>::new(spec, batch)?),
    })
}
