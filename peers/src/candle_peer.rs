//! The benchmark models in candle (CPU device, f32).
//!
//! Dense kernels are stored input-major (`in × out`) so a layer is one `matmul` plus a broadcast bias
//! add; convolutions take NCHW input with `out × in/groups × kh × kw` kernels (candle's native layout),
//! depthwise ones are `conv2d` with `groups` = channels, transposed ones `conv_transpose2d` with
//! `in × out × 3 × 3` kernels (padding 1 and output padding 1: Keras' "same" output size at stride 2).
//! Batch normalization, the LSTM, the GRU and the embeddings are candle-nn's (`batch_norm`, `rnn::lstm`,
//! `rnn::gru`, `Embedding`). candle-nn has no bidirectional layer: R3 runs two of its LSTMs (the second
//! one's `Direction::Backward` names) through `RNN::step`, the second over the steps last to first, and
//! concatenates their last states, as Keras' `Bidirectional` does. Inference uses candle's fused `softmax_last_dim`; training uses the differentiable
//! composite `softmax`, since the fused op has no backward. Adam is candle-nn's `AdamW` with weight
//! decay 0.
//!
//! M8 is not here: candle-nn has no multi-head attention layer (its `attention::flash_attn` is a
//! CPU inference kernel over given queries, keys and values, with no backward), and the peers do
//! not write layers by hand. [`supports`] says so.

use crate::{glorot_limit, Batch, LossKind, Runner, Spec, ADAM_EPSILON, CLIP, LEARNING_RATE};
use candle_core::{DType, Device, Module, ModuleT, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::rnn::{Direction, GRUConfig, LSTMConfig, GRU, LSTM, RNN};
use candle_nn::{BatchNorm, BatchNormConfig, Embedding, Init, VarBuilder, VarMap};

/// Whether candle has every layer of `spec`: `Err` names the missing one.
pub fn supports(spec: Spec) -> Result<(), &'static str> {
    match spec {
        Spec::M8 => Err("candle-nn has no multi-head attention layer"),
        _ => Ok(()),
    }
}

/// Activation applied after a layer.
#[derive(Clone, Copy, Debug)]
enum Act {
    Linear,
    Relu,
    Sigmoid,
    Softmax,
}

/// Applies `act`; `training` picks the differentiable softmax.
fn activate(x: Tensor, act: Act, training: bool) -> candle_core::Result<Tensor> {
    match act {
        Act::Linear => Ok(x),
        Act::Relu => x.relu(),
        Act::Sigmoid => candle_nn::ops::sigmoid(&x),
        Act::Softmax if training => candle_nn::ops::softmax(&x, D::Minus1),
        Act::Softmax => candle_nn::ops::softmax_last_dim(&x),
    }
}

/// A dense layer: `act(x · w + b)`.
struct Dense {
    w: Var,
    b: Var,
    act: Act,
}

impl Dense {
    fn new(fan_in: usize, fan_out: usize, act: Act, vars: &mut Vec<Var>, dev: &Device) -> candle_core::Result<Self> {
        let limit = glorot_limit(fan_in, fan_out);
        let w = Var::rand(-limit as f32, limit as f32, (fan_in, fan_out), dev)?;
        let b = Var::zeros(fan_out, DType::F32, dev)?;
        vars.extend([w.clone(), b.clone()]);
        Ok(Dense { w, b, act })
    }

    fn forward(&self, x: &Tensor, training: bool) -> candle_core::Result<Tensor> {
        activate(x.matmul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())?, self.act, training)
    }
}

/// A convolution (NCHW), optional bias, then an activation: 3×3 "same" ones (padding 1; at stride 2
/// the output size of Keras' "same"), 1×1 ones (padding 0), depthwise ones (`groups` = channels).
struct Conv {
    k: Var,
    b: Option<Var>,
    pad: usize,
    stride: usize,
    groups: usize,
    act: Act,
}

impl Conv {
    /// A `size × size` convolution, Glorot-uniform kernel over Keras' fans, zero bias when `bias`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        (c_in, c_out, size): (usize, usize, usize),
        (stride, groups): (usize, usize),
        bias: bool,
        act: Act,
        vars: &mut Vec<Var>,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        let (taps, per_group) = (size * size, c_in / groups);
        // Keras' fans: a depthwise kernel [3, 3, c, 1] has fan_in 9·c and fan_out 9.
        let limit = if groups == 1 { glorot_limit(taps * c_in, taps * c_out) } else { glorot_limit(taps * c_in, taps * c_out / groups) };
        let k = Var::rand(-limit as f32, limit as f32, (c_out, per_group, size, size), dev)?;
        vars.push(k.clone());
        let b = if bias {
            let b = Var::zeros((1, c_out, 1, 1), DType::F32, dev)?;
            vars.push(b.clone());
            Some(b)
        } else {
            None
        };
        Ok(Conv { k, b, pad: size / 2, stride, groups, act })
    }

    /// A 3×3 "same" stride-1 convolution with bias and relu (BENCH M3, M6).
    fn same3(c_in: usize, c_out: usize, vars: &mut Vec<Var>, dev: &Device) -> candle_core::Result<Self> {
        Conv::new((c_in, c_out, 3), (1, 1), true, Act::Relu, vars, dev)
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let z = x.conv2d(self.k.as_tensor(), self.pad, self.stride, 1, self.groups)?;
        let z = match &self.b {
            Some(b) => z.broadcast_add(b.as_tensor())?,
            None => z,
        };
        match self.act {
            Act::Sigmoid => candle_nn::ops::sigmoid(&z),
            Act::Relu => z.relu(),
            _ => Ok(z),
        }
    }
}

/// A 3×3 transposed convolution with stride 2, bias and relu (NCHW): Keras' `Conv2DTranspose(f, 3,
/// strides=2, padding="same")` output size (PyTorch's padding 1, output padding 1).
struct ConvT {
    k: Var,
    b: Var,
}

impl ConvT {
    fn new(c_in: usize, c_out: usize, vars: &mut Vec<Var>, dev: &Device) -> candle_core::Result<Self> {
        let limit = glorot_limit(9 * c_in, 9 * c_out);
        let k = Var::rand(-limit as f32, limit as f32, (c_in, c_out, 3, 3), dev)?;
        let b = Var::zeros((1, c_out, 1, 1), DType::F32, dev)?;
        vars.extend([k.clone(), b.clone()]);
        Ok(ConvT { k, b })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv_transpose2d(self.k.as_tensor(), 1, 1, 2, 1)?.broadcast_add(self.b.as_tensor())?.relu()
    }
}

/// One MobileNet-like block: depthwise 3×3 (no bias) → BatchNorm (ε 1e-3, momentum 0.01 as Keras'
/// 0.99) → relu → pointwise 1×1 with bias and relu.
struct MobileBlock {
    dw: Conv,
    bn: BatchNorm,
    pw: Conv,
}

impl MobileBlock {
    fn new((stride, c, f): (usize, usize, usize), vars: &mut Vec<Var>, vb: VarBuilder, dev: &Device) -> candle_core::Result<Self> {
        let dw = Conv::new((c, c, 3), (stride, c), false, Act::Linear, vars, dev)?;
        let config = BatchNormConfig { eps: 1e-3, momentum: 0.01, ..Default::default() };
        let bn = candle_nn::batch_norm(c, config, vb)?;
        let pw = Conv::new((c, f, 1), (1, 1), true, Act::Relu, vars, dev)?;
        Ok(MobileBlock { dw, bn, pw })
    }

    fn forward(&self, x: &Tensor, training: bool) -> candle_core::Result<Tensor> {
        self.pw.forward(&self.bn.forward_t(&self.dw.forward(x)?, training)?.relu()?)
    }
}

/// Keras' default embedding initializer: uniform in [-0.05, 0.05].
fn embedding(vocab: usize, width: usize, vars: &mut Vec<Var>, dev: &Device) -> candle_core::Result<Embedding> {
    let table = Var::rand(-0.05f32, 0.05, (vocab, width), dev)?;
    vars.push(table.clone());
    Ok(Embedding::new(table.as_tensor().clone(), width))
}

/// The layers of one BENCH model.
enum Net {
    M1 { l1: Dense, l2: Dense, r1: Dense, head: Dense },
    M2 { d1: Dense, d2: Dense, skip: Dense, a: Dense, b: Dense },
    M3 { c1: Conv, c2: Conv, meta: Dense, head: Dense },
    M4 { h1: Dense, h2: Dense, head: Dense },
    M5 { enc: Dense, head: Dense },
    M6 { c1: Conv, c2: Conv, u2: ConvT, u1: ConvT, out: Conv },
    M7 { blocks: Vec<MobileBlock>, head: Dense },
    R1 { emb: Embedding, lstm: LSTM, head: Dense },
    R2 { emb: Embedding, gru: GRU, head: Dense },
    R3 { emb: Embedding, fwd: LSTM, bwd: LSTM, head: Dense },
}

impl Net {
    /// Fresh weights for `spec`; candle-nn's layers (batch norm, LSTM) take theirs from `vb`.
    fn new(spec: Spec, vars: &mut Vec<Var>, vb: VarBuilder, dev: &Device) -> candle_core::Result<Net> {
        use Act::*;
        match spec {
            Spec::M6 => {
                let (c1, c2) = (Conv::same3(3, 16, vars, dev)?, Conv::same3(16, 32, vars, dev)?);
                let (u2, u1) = (ConvT::new(32, 32, vars, dev)?, ConvT::new(64, 16, vars, dev)?);
                let out = Conv::new((32, 1, 1), (1, 1), true, Sigmoid, vars, dev)?;
                return Ok(Net::M6 { c1, c2, u2, u1, out });
            }
            Spec::M7 => {
                let shapes = [(1, 3, 16), (2, 16, 32), (1, 32, 32), (2, 32, 64)];
                let blocks = shapes
                    .iter()
                    .enumerate()
                    .map(|(i, &shape)| MobileBlock::new(shape, vars, vb.pp(format!("bn{i}")), dev))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                return Ok(Net::M7 { blocks, head: Dense::new(64, 10, Softmax, vars, dev)? });
            }
            Spec::R1 => {
                let emb = embedding(1000, 64, vars, dev)?;
                // Keras' initializers: Glorot-uniform input kernel, zero biases (candle-nn has no
                // orthogonal initializer; the recurrent kernel is Glorot-uniform too).
                let (li, lr) = (glorot_limit(64, 512), glorot_limit(128, 512));
                let config = LSTMConfig {
                    w_ih_init: Init::Uniform { lo: -li, up: li },
                    w_hh_init: Init::Uniform { lo: -lr, up: lr },
                    ..Default::default()
                };
                let lstm = candle_nn::rnn::lstm(64, 128, config, vb.pp("lstm"))?;
                return Ok(Net::R1 { emb, lstm, head: Dense::new(128, 1, Sigmoid, vars, dev)? });
            }
            Spec::R2 => {
                let emb = embedding(1000, 64, vars, dev)?;
                let (li, lr) = (glorot_limit(64, 384), glorot_limit(128, 384));
                let config = GRUConfig {
                    w_ih_init: Init::Uniform { lo: -li, up: li },
                    w_hh_init: Init::Uniform { lo: -lr, up: lr },
                    ..Default::default()
                };
                let gru = candle_nn::rnn::gru(64, 128, config, vb.pp("gru"))?;
                return Ok(Net::R2 { emb, gru, head: Dense::new(128, 1, Sigmoid, vars, dev)? });
            }
            Spec::R3 => {
                let emb = embedding(1000, 64, vars, dev)?;
                let (li, lr) = (glorot_limit(64, 256), glorot_limit(64, 256));
                let config = |direction| LSTMConfig {
                    w_ih_init: Init::Uniform { lo: -li, up: li },
                    w_hh_init: Init::Uniform { lo: -lr, up: lr },
                    direction,
                    ..Default::default()
                };
                let fwd = candle_nn::rnn::lstm(64, 64, config(Direction::Forward), vb.pp("lstm"))?;
                let bwd = candle_nn::rnn::lstm(64, 64, config(Direction::Backward), vb.pp("lstm"))?;
                return Ok(Net::R3 { emb, fwd, bwd, head: Dense::new(128, 1, Sigmoid, vars, dev)? });
            }
            Spec::M8 => candle_core::bail!("{}", supports(spec).err().unwrap_or("unsupported")),
            _ => {}
        }
        let mut dense = |i, o, act| Dense::new(i, o, act, vars, dev);
        Ok(match spec {
            Spec::M1 => Net::M1 { l1: dense(8, 16, Relu)?, l2: dense(16, 8, Relu)?, r1: dense(4, 8, Relu)?, head: dense(16, 1, Sigmoid)? },
            Spec::M2 => Net::M2 {
                d1: dense(64, 128, Relu)?,
                d2: dense(128, 128, Relu)?,
                skip: dense(64, 128, Linear)?,
                a: dense(128, 10, Softmax)?,
                b: dense(128, 1, Sigmoid)?,
            },
            Spec::M3 => {
                let (meta, head) = (dense(6, 8, Relu)?, dense(40, 3, Softmax)?);
                Net::M3 { c1: Conv::same3(3, 16, vars, dev)?, c2: Conv::same3(16, 32, vars, dev)?, meta, head }
            }
            Spec::M4 => Net::M4 { h1: dense(784, 512, Relu)?, h2: dense(512, 512, Relu)?, head: dense(512, 10, Softmax)? },
            Spec::M5 => Net::M5 { enc: dense(128, 64, Relu)?, head: dense(64, 1, Sigmoid)? },
            Spec::M6 | Spec::M7 | Spec::M8 | Spec::R1 | Spec::R2 | Spec::R3 => unreachable!("built above"),
        })
    }

    fn forward(&self, xs: &[Tensor], training: bool) -> candle_core::Result<Vec<Tensor>> {
        let t = training;
        Ok(match (self, xs) {
            (Net::M1 { l1, l2, r1, head }, [left, right]) => {
                let l = l2.forward(&l1.forward(left, t)?, t)?;
                let r = r1.forward(right, t)?;
                vec![head.forward(&Tensor::cat(&[l, r], 1)?, t)?]
            }
            (Net::M2 { d1, d2, skip, a, b }, [x]) => {
                let trunk = (d2.forward(&d1.forward(x, t)?, t)? + skip.forward(x, t)?)?;
                vec![a.forward(&trunk, t)?, b.forward(&trunk, t)?]
            }
            (Net::M3 { c1, c2, meta, head }, [image, m]) => {
                let pooled = c2.forward(&c1.forward(image)?)?.mean((2, 3))?;
                vec![head.forward(&Tensor::cat(&[pooled, meta.forward(m, t)?], 1)?, t)?]
            }
            (Net::M4 { h1, h2, head }, [x]) => {
                let a = h1.forward(x, t)?;
                let b = h2.forward(&a, t)?;
                vec![head.forward(&(a + b)?, t)?]
            }
            (Net::M5 { enc, head }, [a, b]) => {
                let avg = ((enc.forward(a, t)? + enc.forward(b, t)?)? * 0.5)?;
                vec![head.forward(&avg, t)?]
            }
            (Net::M6 { c1, c2, u2, u1, out }, [image]) => {
                let a = c1.forward(image)?;
                let b = c2.forward(&a.max_pool2d(2)?)?;
                let up = u2.forward(&b.max_pool2d(2)?)?;
                let up = u1.forward(&Tensor::cat(&[up, b], 1)?)?;
                let mask = out.forward(&Tensor::cat(&[up, a], 1)?)?;
                // One channel: NCHW [n, 1, h, w] has the element order of the NHWC mask.
                vec![mask.flatten_from(1)?]
            }
            (Net::M7 { blocks, head }, [image]) => {
                let mut x = image.clone();
                for block in blocks {
                    x = block.forward(&x, t)?;
                }
                vec![head.forward(&x.mean((2, 3))?, t)?]
            }
            (Net::R1 { emb, lstm, head }, [ids]) => {
                let states = lstm.seq(&emb.forward(ids)?)?;
                let last = states.last().ok_or_else(|| candle_core::Error::Msg("empty sequence".into()))?;
                vec![head.forward(last.h(), t)?]
            }
            (Net::R2 { emb, gru, head }, [ids]) => {
                let h = last_state(gru, &emb.forward(ids)?, false)?;
                vec![head.forward(h.h(), t)?]
            }
            (Net::R3 { emb, fwd, bwd, head }, [ids]) => {
                let e = emb.forward(ids)?;
                let (f, b) = (last_state(fwd, &e, false)?, last_state(bwd, &e, true)?);
                vec![head.forward(&Tensor::cat(&[f.h(), b.h()], 1)?, t)?]
            }
            _ => candle_core::bail!("wrong number of inputs for this model"),
        })
    }
}

/// The state after running `rnn` over the steps of `x` (batch × steps × features) from zeros, last to
/// first when `reverse`.
fn last_state<R: RNN>(rnn: &R, x: &Tensor, reverse: bool) -> candle_core::Result<R::State> {
    let (rows, steps, _) = x.dims3()?;
    let mut state = rnn.zero_state(rows)?;
    for s in 0..steps {
        let t = if reverse { steps - 1 - s } else { s };
        state = rnn.step(&x.narrow(1, t, 1)?.squeeze(1)?.contiguous()?, &state)?;
    }
    Ok(state)
}

/// Mean cross-entropy of probabilities `p` against targets `y`, probabilities clipped as Keras does.
fn cross_entropy(p: &Tensor, y: &Tensor, kind: LossKind) -> candle_core::Result<Tensor> {
    let p = p.clamp(CLIP, 1.0 - CLIP)?;
    match kind {
        LossKind::BinaryCrossentropy => {
            let pos = (y * p.log()?)?;
            let neg = (y.affine(-1.0, 1.0)? * p.affine(-1.0, 1.0)?.log()?)?;
            (pos + neg)?.mean_all()?.neg()
        }
        LossKind::CategoricalCrossentropy => (y * p.log()?)?.sum(1)?.mean_all()?.neg(),
    }
}

/// A BENCH model in candle with its Adam state and a prepared batch.
pub struct CandleRunner {
    spec: Spec,
    net: Net,
    opt: AdamW,
    inputs: Vec<Tensor>,
    targets: Vec<Tensor>,
}

impl CandleRunner {
    /// The model `spec` with fresh weights on the CPU, holding `batch` as its input.
    pub fn new(spec: Spec, batch: &Batch) -> crate::Result<Self> {
        supports(spec)?;
        let dev = Device::Cpu;
        let mut vars = Vec::new();
        let varmap = VarMap::new();
        let net = Net::new(spec, &mut vars, VarBuilder::from_varmap(&varmap, DType::F32, &dev), &dev)?;
        // candle-nn's trainable weights (batch norm γ and β, the LSTM's kernels and biases); its
        // running statistics are copied out of the map, never get a gradient, and Adam skips them.
        vars.extend(varmap.all_vars());
        let params = ParamsAdamW { lr: LEARNING_RATE, beta1: 0.9, beta2: 0.999, eps: ADAM_EPSILON, weight_decay: 0.0 };
        let opt = AdamW::new(vars, params)?;
        let mut inputs = (0..batch.inputs.len())
            .map(|i| {
                let (data, shape) = batch.peer_input(i)?;
                Ok(Tensor::from_vec(data, shape, &dev)?)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        for ids in &batch.ids {
            // candle's embedding lookup takes u32 ids.
            let data: Vec<u32> = ids.iter().map(|&t| u32::try_from(t)).collect::<Result<_, _>>()?;
            inputs.push(Tensor::from_vec(data, ids.dim(), &dev)?);
        }
        let targets = (0..batch.targets.len())
            .map(|o| {
                let (data, shape) = batch.peer_target(o)?;
                Ok(Tensor::from_vec(data, shape.to_vec(), &dev)?)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(CandleRunner { spec, net, opt, inputs, targets })
    }
}

impl Runner for CandleRunner {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn infer(&mut self) -> crate::Result<Vec<Vec<usize>>> {
        let outputs = self.net.forward(&self.inputs, false)?;
        Ok(outputs.iter().map(|t| t.dims().to_vec()).collect())
    }

    fn train_step(&mut self) -> crate::Result<f32> {
        let outputs = self.net.forward(&self.inputs, true)?;
        let mut loss = Tensor::zeros((), DType::F32, &Device::Cpu)?;
        for ((p, y), &(_, kind)) in outputs.iter().zip(&self.targets).zip(self.spec.outputs()) {
            loss = (loss + cross_entropy(p, y, kind)?)?;
        }
        self.opt.backward_step(&loss)?;
        Ok(loss.to_scalar::<f32>()?)
    }
}

/// The candle runner of `spec` holding `batch`.
pub fn runner(spec: Spec, batch: &Batch) -> crate::Result<Box<dyn Runner>> {
    Ok(Box::new(CandleRunner::new(spec, batch)?))
}
