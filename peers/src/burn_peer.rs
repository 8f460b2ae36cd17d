//! The benchmark models in burn 0.22 on its NdArray backend (f32, CPU).
//!
//! Training runs on `Device::ndarray().autodiff()`; inference runs on `model.valid()`, the same
//! weights on the plain NdArray device, so no autodiff graph is recorded there (and batch
//! normalization uses its running statistics). Layers are burn-nn's: `Linear`, `Conv2d` (NCHW input,
//! `PaddingConfig2d::Same`; `groups` = channels for depthwise ones), `ConvTranspose2d` (padding 1,
//! output padding 1: Keras' "same" output size at stride 2), `MaxPool2d`, `BatchNorm`, `Embedding`,
//! `MultiHeadAttention` (dropout 0), `LayerNorm`, `Lstm`, `Gru` (`reset_after`, its default) and
//! `BiLstm`, with Glorot-uniform (Xavier) kernels;
//! Adam is burn-optim's with ε set to Keras' 1e-7.

use crate::{Batch, LossKind, Runner, Spec, ADAM_EPSILON, CLIP, LEARNING_RATE};
use burn::module::{Initializer, Module};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, BiLstm, BiLstmConfig, Embedding, EmbeddingConfig, Gru, GruConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig, Lstm, LstmConfig, PaddingConfig2d,
};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{gelu, relu, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Keras' default kernel initializer.
const GLOROT: Initializer = Initializer::XavierUniform { gain: 1.0 };

fn dense(fan_in: usize, fan_out: usize, device: &Device) -> Linear {
    LinearConfig::new(fan_in, fan_out).with_initializer(GLOROT).init(device)
}

fn conv(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3]).with_padding(PaddingConfig2d::Same).with_initializer(GLOROT).init(device)
}

/// A 3×3 stride-2 transposed convolution with bias: Keras' "same" output size (twice the input).
/// burn's `ConvTranspose2d` gives its initializer no fan-out, so Xavier panics there: the Glorot-uniform
/// limit is given explicitly (burn then draws the bias from it too).
fn conv_t(c_in: usize, c_out: usize, device: &Device) -> ConvTranspose2d {
    let limit = crate::glorot_limit(9 * c_in, 9 * c_out);
    ConvTranspose2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_padding_out([1, 1])
        .with_initializer(Initializer::Uniform { min: -limit, max: limit })
        .init(device)
}

/// Keras' default embedding initializer: uniform in [-0.05, 0.05].
fn embedding(vocab: usize, width: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(vocab, width).with_initializer(Initializer::Uniform { min: -0.05, max: 0.05 }).init(device)
}

/// One model input on a burn device.
#[derive(Clone, Debug)]
pub enum Input {
    /// batch × features.
    Flat(Tensor<2>),
    /// batch × channels × height × width.
    Image(Tensor<4>),
    /// batch × sequence of token ids.
    Ids(Tensor<2, Int>),
}

impl Input {
    fn flat(&self) -> Tensor<2> {
        match self {
            Input::Flat(x) => x.clone(),
            Input::Image(x) => x.clone().flatten(1, 3),
            Input::Ids(x) => x.clone().float(),
        }
    }

    fn image(&self) -> crate::Result<Tensor<4>> {
        match self {
            Input::Image(x) => Ok(x.clone()),
            _ => Err("expected an image input".into()),
        }
    }

    fn ids(&self) -> crate::Result<Tensor<2, Int>> {
        match self {
            Input::Ids(x) => Ok(x.clone()),
            _ => Err("expected token ids".into()),
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

/// M6 (issue #19): the U-Net.
#[derive(Module, Debug)]
pub struct UNet {
    c1: Conv2d,
    c2: Conv2d,
    pool: MaxPool2d,
    u2: ConvTranspose2d,
    u1: ConvTranspose2d,
    out: Conv2d,
}

impl Net for UNet {
    fn init(d: &Device) -> Self {
        UNet {
            c1: conv(3, 16, d),
            c2: conv(16, 32, d),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            u2: conv_t(32, 32, d),
            u1: conv_t(64, 16, d),
            out: Conv2dConfig::new([32, 1], [1, 1]).with_initializer(GLOROT).init(d),
        }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [image] = xs else { return Err("M6 takes one input".into()) };
        let c1 = relu(self.c1.forward(image.image()?));
        let c2 = relu(self.c2.forward(self.pool.forward(c1.clone())));
        let u2 = relu(self.u2.forward(self.pool.forward(c2.clone())));
        let u1 = relu(self.u1.forward(Tensor::cat(vec![u2, c2], 1)));
        let mask = sigmoid(self.out.forward(Tensor::cat(vec![u1, c1], 1)));
        // One channel: NCHW [n, 1, h, w] has the element order of the NHWC mask.
        Ok(vec![mask.flatten(1, 3)])
    }
}

/// One MobileNet-like block of M7: depthwise 3×3 (no bias) → BatchNorm (ε 1e-3, momentum 0.01 as
/// Keras' 0.99) → relu → pointwise 1×1 with bias and relu.
#[derive(Module, Debug)]
pub struct MobileBlock {
    dw: Conv2d,
    bn: BatchNorm,
    pw: Conv2d,
}

impl MobileBlock {
    fn init((stride, c, f): (usize, usize, usize), d: &Device) -> Self {
        let dw = Conv2dConfig::new([c, c], [3, 3])
            .with_groups(c)
            .with_stride([stride, stride])
            // Padding 1: the output size of Keras' "same" at strides 1 and 2.
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .with_initializer(GLOROT)
            .init(d);
        let bn = BatchNormConfig::new(c).with_epsilon(1e-3).with_momentum(0.01).init(d);
        let pw = Conv2dConfig::new([c, f], [1, 1]).with_initializer(GLOROT).init(d);
        MobileBlock { dw, bn, pw }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.pw.forward(relu(self.bn.forward(self.dw.forward(x)))))
    }
}

/// M7 (issue #19): the MobileNet-like classifier.
#[derive(Module, Debug)]
pub struct MobileNet {
    blocks: Vec<MobileBlock>,
    head: Linear,
}

impl Net for MobileNet {
    fn init(d: &Device) -> Self {
        let blocks = [(1, 3, 16), (2, 16, 32), (1, 32, 32), (2, 32, 64)].into_iter().map(|b| MobileBlock::init(b, d)).collect();
        MobileNet { blocks, head: dense(64, 10, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [image] = xs else { return Err("M7 takes one input".into()) };
        let x = self.blocks.iter().fold(image.image()?, |x, block| block.forward(x));
        let pooled: Tensor<2> = x.mean_dims(&[2, 3]).flatten(1, 3);
        Ok(vec![softmax(self.head.forward(pooled), 1)])
    }
}

/// One encoder block of M8: 4-head self-attention (dropout 0), Add, LayerNorm (ε 1e-3, as Keras), Dense
/// 256 gelu, Dense 128, Add, LayerNorm.
#[derive(Module, Debug)]
pub struct EncoderBlock {
    mha: MultiHeadAttention,
    ln1: LayerNorm,
    f1: Linear,
    f2: Linear,
    ln2: LayerNorm,
}

impl EncoderBlock {
    fn init(d: &Device) -> Self {
        EncoderBlock {
            mha: MultiHeadAttentionConfig::new(128, 4).with_dropout(0.0).with_initializer(GLOROT).init(d),
            ln1: LayerNormConfig::new(128).with_epsilon(1e-3).init(d),
            f1: dense(128, 256, d),
            f2: dense(256, 128, d),
            ln2: LayerNormConfig::new(128).with_epsilon(1e-3).init(d),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let a = self.mha.forward(MhaInput::self_attn(x.clone())).context;
        let x = self.ln1.forward(x + a);
        let f = self.f2.forward(gelu(self.f1.forward(x.clone())));
        self.ln2.forward(x + f)
    }
}

/// M8 (issue #18): the transformer encoder classifier.
#[derive(Module, Debug)]
pub struct TextEncoder {
    tokens: Embedding,
    positions: Embedding,
    blocks: Vec<EncoderBlock>,
    head: Linear,
}

impl Net for TextEncoder {
    fn init(d: &Device) -> Self {
        TextEncoder {
            tokens: embedding(2000, 128, d),
            positions: embedding(128, 128, d),
            blocks: vec![EncoderBlock::init(d), EncoderBlock::init(d)],
            head: dense(128, 2, d),
        }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [tokens, positions] = xs else { return Err("M8 takes two inputs".into()) };
        let x = self.tokens.forward(tokens.ids()?) + self.positions.forward(positions.ids()?);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        let pooled: Tensor<2> = x.mean_dim(1).flatten(1, 2);
        Ok(vec![softmax(self.head.forward(pooled), 1)])
    }
}

/// R1 (issue #17): Embedding(1000, 64) → LSTM(128), its last hidden state → Dense(1, sigmoid).
#[derive(Module, Debug)]
pub struct Recurrent {
    embedding: Embedding,
    lstm: Lstm,
    head: Linear,
}

impl Net for Recurrent {
    fn init(d: &Device) -> Self {
        let lstm = LstmConfig::new(64, 128, true).with_initializer(GLOROT).init(d);
        Recurrent { embedding: embedding(1000, 64, d), lstm, head: dense(128, 1, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [tokens] = xs else { return Err("R1 takes one input".into()) };
        let (_, state) = self.lstm.forward(self.embedding.forward(tokens.ids()?), None);
        Ok(vec![sigmoid(self.head.forward(state.hidden))])
    }
}

/// R2 (issue #17): Embedding(1000, 64) → GRU(128), its last state → Dense(1, sigmoid).
#[derive(Module, Debug)]
pub struct RecurrentGru {
    embedding: Embedding,
    gru: Gru,
    head: Linear,
}

impl Net for RecurrentGru {
    fn init(d: &Device) -> Self {
        let gru = GruConfig::new(64, 128, true).with_initializer(GLOROT).init(d);
        RecurrentGru { embedding: embedding(1000, 64, d), gru, head: dense(128, 1, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [tokens] = xs else { return Err("R2 takes one input".into()) };
        let states = self.gru.forward(self.embedding.forward(tokens.ids()?), None);
        let [rows, steps, units] = states.dims();
        let last = states.narrow(1, steps - 1, 1).reshape([rows, units]);
        Ok(vec![sigmoid(self.head.forward(last))])
    }
}

/// R3 (issue #17): Embedding(1000, 64) → Bidirectional(LSTM(64)), the two directions' last states
/// side by side → Dense(1, sigmoid).
#[derive(Module, Debug)]
pub struct RecurrentBi {
    embedding: Embedding,
    lstm: BiLstm,
    head: Linear,
}

impl Net for RecurrentBi {
    fn init(d: &Device) -> Self {
        let lstm = BiLstmConfig::new(64, 64, true).with_initializer(GLOROT).init(d);
        RecurrentBi { embedding: embedding(1000, 64, d), lstm, head: dense(128, 1, d) }
    }

    fn forward(&self, xs: &[Input]) -> crate::Result<Vec<Tensor<2>>> {
        let [tokens] = xs else { return Err("R3 takes one input".into()) };
        let (_, state) = self.lstm.forward(self.embedding.forward(tokens.ids()?), None);
        // [2, rows, units] (forward, backward) → rows × [forward | backward].
        let [_, rows, units] = state.hidden.dims();
        let last = state.hidden.swap_dims(0, 1).reshape([rows, 2 * units]);
        Ok(vec![sigmoid(self.head.forward(last))])
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
    let mut inputs = (0..batch.inputs.len())
        .map(|i| {
            let (data, shape) = batch.peer_input(i)?;
            Ok(match *shape.as_slice() {
                [n, c, h, w] => Input::Image(Tensor::from_data(TensorData::new(data, [n, c, h, w]), device)),
                [n, f] => Input::Flat(Tensor::from_data(TensorData::new(data, [n, f]), device)),
                _ => return Err(format!("unsupported input shape {shape:?}").into()),
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    for ids in &batch.ids {
        let data = TensorData::new(ids.iter().map(|&t| i64::from(t)).collect::<Vec<i64>>(), [ids.nrows(), ids.ncols()]);
        inputs.push(Input::Ids(Tensor::from_data(data, device)));
    }
    Ok(inputs)
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
        let targets = (0..batch.targets.len())
            .map(|o| {
                let (data, shape) = batch.peer_target(o)?;
                Ok(Tensor::from_data(TensorData::new(data, shape), &device))
            })
            .collect::<crate::Result<Vec<_>>>()?;
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
        Spec::M6 => Box::new(BurnRunner::<UNet>::new(spec, batch)?),
        Spec::M7 => Box::new(BurnRunner::<MobileNet>::new(spec, batch)?),
        Spec::M8 => Box::new(BurnRunner::<TextEncoder>::new(spec, batch)?),
        Spec::R1 => Box::new(BurnRunner::<Recurrent>::new(spec, batch)?),
        Spec::R2 => Box::new(BurnRunner::<RecurrentGru>::new(spec, batch)?),
        Spec::R3 => Box::new(BurnRunner::<RecurrentBi>::new(spec, batch)?),
    })
}
