//! The BENCH.md models in candle (CPU device, f32).
//!
//! Dense kernels are stored input-major (`in × out`) so a layer is one `matmul` plus a broadcast bias
//! add; convolutions take NCHW input with `out × in × 3 × 3` kernels (candle's native layout). Inference
//! uses candle's fused `softmax_last_dim`; training uses the differentiable composite `softmax`, since
//! the fused op has no backward. Adam is candle-nn's `AdamW` with weight decay 0.

use crate::{glorot_limit, Batch, LossKind, Runner, Spec, ADAM_EPSILON, CLIP, LEARNING_RATE};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};

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

/// A 3×3 "same" convolution with relu, NCHW.
struct Conv {
    k: Var,
    b: Var,
}

impl Conv {
    fn new(c_in: usize, c_out: usize, vars: &mut Vec<Var>, dev: &Device) -> candle_core::Result<Self> {
        let limit = glorot_limit(9 * c_in, 9 * c_out);
        let k = Var::rand(-limit as f32, limit as f32, (c_out, c_in, 3, 3), dev)?;
        let b = Var::zeros((1, c_out, 1, 1), DType::F32, dev)?;
        vars.extend([k.clone(), b.clone()]);
        Ok(Conv { k, b })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv2d(self.k.as_tensor(), 1, 1, 1, 1)?.broadcast_add(self.b.as_tensor())?.relu()
    }
}

/// The layers of one BENCH model.
enum Net {
    M1 { l1: Dense, l2: Dense, r1: Dense, head: Dense },
    M2 { d1: Dense, d2: Dense, skip: Dense, a: Dense, b: Dense },
    M3 { c1: Conv, c2: Conv, meta: Dense, head: Dense },
    M4 { h1: Dense, h2: Dense, head: Dense },
    M5 { enc: Dense, head: Dense },
}

impl Net {
    fn new(spec: Spec, vars: &mut Vec<Var>, dev: &Device) -> candle_core::Result<Net> {
        use Act::*;
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
                Net::M3 { c1: Conv::new(3, 16, vars, dev)?, c2: Conv::new(16, 32, vars, dev)?, meta, head }
            }
            Spec::M4 => Net::M4 { h1: dense(784, 512, Relu)?, h2: dense(512, 512, Relu)?, head: dense(512, 10, Softmax)? },
            Spec::M5 => Net::M5 { enc: dense(128, 64, Relu)?, head: dense(64, 1, Sigmoid)? },
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
            _ => candle_core::bail!("wrong number of inputs for this model"),
        })
    }
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
        let dev = Device::Cpu;
        let mut vars = Vec::new();
        let net = Net::new(spec, &mut vars, &dev)?;
        let params = ParamsAdamW { lr: LEARNING_RATE, beta1: 0.9, beta2: 0.999, eps: ADAM_EPSILON, weight_decay: 0.0 };
        let opt = AdamW::new(vars, params)?;
        let inputs = (0..batch.inputs.len())
            .map(|i| {
                let (data, shape) = batch.peer_input(i)?;
                Ok(Tensor::from_vec(data, shape, &dev)?)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let targets = batch
            .targets
            .iter()
            .map(|y| Tensor::from_iter(y.iter().copied(), &dev)?.reshape(y.dim()))
            .collect::<candle_core::Result<Vec<_>>>()?;
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
