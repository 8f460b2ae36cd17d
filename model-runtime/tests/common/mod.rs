//! Hand-written `Network` implementations standing in for generated code in the runtime's tests:
//! plain loops, no kernels, so the runtime is tested on its own.
#![allow(dead_code)]

use model_runtime::kernels::activation::Activation;
use model_runtime::network::{Input, Network, State};
use model_runtime::spec::{DType, Init, OutputInfo, ParamSpec, TensorSpec};
use model_runtime::workspace::Workspace;
use model_runtime::Result;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

fn to_array(batch: usize, shape: &[usize], data: Vec<f32>) -> ArrayD<f32> {
    let mut dims = vec![batch];
    dims.extend_from_slice(shape);
    ArrayD::from_shape_vec(IxDyn(&dims), data).expect("outputs_from: wrong length")
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

// ---------------------------------------------------------------------------------------------
// TwoIn: a [4] -> Dense(3, relu) -> concat with b [2] -> Dense(1, sigmoid) -> score [1].

/// Two inputs, one sigmoid output.
#[derive(Debug)]
pub struct TwoIn {
    pub state: State,
}

/// Inputs of [`TwoIn`].
pub struct TwoInInputs<'a> {
    pub a: ArrayViewD<'a, f32>,
    pub b: ArrayViewD<'a, f32>,
}

/// Outputs of [`TwoIn`].
#[derive(Debug, Clone, PartialEq)]
pub struct TwoInOutputs {
    pub score: ArrayD<f32>,
}

/// Targets of [`TwoIn`].
pub struct TwoInTargets<'a> {
    pub score: ArrayViewD<'a, f32>,
}

/// One value per output of [`TwoIn`].
#[derive(Clone, Debug)]
pub struct TwoInPerOutput<T> {
    pub score: T,
}

impl TwoIn {
    pub fn new(seed: u64) -> Self {
        TwoIn { state: model_runtime::model::new_state::<Self>(seed) }
    }
}

const K0: usize = 0; // dense/kernel [4, 3]
const B0: usize = 12; // dense/bias [3]
const K1: usize = 15; // dense_1/kernel [5, 1]
const B1: usize = 20; // dense_1/bias [1]

impl Network for TwoIn {
    const NAME: &'static str = "TwoIn";
    const INPUTS: &'static [TensorSpec] =
        &[TensorSpec { name: "a", shape: &[4], dtype: DType::F32 }, TensorSpec { name: "b", shape: &[2], dtype: DType::F32 }];
    const OUTPUTS: &'static [TensorSpec] = &[TensorSpec { name: "score", shape: &[1], dtype: DType::F32 }];
    const OUTPUT_INFO: &'static [OutputInfo] = &[OutputInfo { fusable_activation: Activation::Sigmoid }];
    const PARAMS: &'static [ParamSpec] = &[
        ParamSpec {
            name: "dense/kernel",
            shape: &[4, 3],
            offset: K0,
            init: Init::GlorotUniform { fan_in: 4, fan_out: 3 },
            trainable: true,
            statistic: false,
        },
        ParamSpec { name: "dense/bias", shape: &[3], offset: B0, init: Init::Zeros, trainable: true, statistic: false },
        ParamSpec {
            name: "dense_1/kernel",
            shape: &[5, 1],
            offset: K1,
            init: Init::GlorotUniform { fan_in: 5, fan_out: 1 },
            trainable: true,
            statistic: false,
        },
        ParamSpec { name: "dense_1/bias", shape: &[1], offset: B1, init: Init::Zeros, trainable: true, statistic: false },
    ];
    const PARAM_COUNT: usize = 21;
    // 0: a, 1: b, 2: relu(dense(a)), 3: score.
    const BUFFERS: &'static [usize] = &[4, 2, 3, 1];
    const SCRATCH: &'static [usize] = &[];
    const INPUT_BUFFERS: &'static [usize] = &[0, 1];
    const OUTPUT_BUFFERS: &'static [usize] = &[3];
    const SUMMARY: &'static str = "TwoIn";
    const DOT: &'static str = "digraph TwoIn {}";

    type Inputs<'a> = TwoInInputs<'a>;
    type Outputs = TwoInOutputs;
    type Targets<'a> = TwoInTargets<'a>;
    type PerOutput<T> = TwoInPerOutput<T>;

    fn state(&self) -> &State {
        &self.state
    }
    fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    fn visit_inputs<'a>(inputs: &'a Self::Inputs<'_>, f: &mut dyn FnMut(usize, Input<'a>) -> Result<()>) -> Result<()> {
        f(0, Input::new(&inputs.a))?;
        f(1, Input::new(&inputs.b))
    }
    fn visit_targets<'a>(targets: &'a Self::Targets<'_>, f: &mut dyn FnMut(usize, Input<'a>) -> Result<()>) -> Result<()> {
        f(0, Input::new(&targets.score))
    }
    fn visit_outputs<'a>(outputs: &'a Self::Outputs, f: &mut dyn FnMut(usize, ArrayViewD<'a, f32>) -> Result<()>) -> Result<()> {
        f(0, outputs.score.view())
    }
    fn outputs_from(batch: usize, mut data: Vec<Vec<f32>>) -> Self::Outputs {
        TwoInOutputs { score: to_array(batch, &[1], data.remove(0)) }
    }
    fn per_output<T: Clone>(values: &Self::PerOutput<T>) -> Vec<T> {
        vec![values.score.clone()]
    }

    fn forward(p: &[f32], ws: &mut Workspace) {
        let mut h = std::mem::take(&mut ws.values[2]);
        let mut out = std::mem::take(&mut ws.values[3]);
        let (a, b) = (&ws.values[0], &ws.values[1]);
        for r in 0..ws.batch {
            for j in 0..3 {
                let mut z = p[B0 + j];
                for i in 0..4 {
                    z += a[r * 4 + i] * p[K0 + i * 3 + j];
                }
                h[r * 3 + j] = z.max(0.0);
            }
            let mut z = p[B1];
            for j in 0..3 {
                z += h[r * 3 + j] * p[K1 + j];
            }
            for k in 0..2 {
                z += b[r * 2 + k] * p[K1 + 3 + k];
            }
            out[r] = sigmoid(z);
        }
        ws.values[2] = h;
        ws.values[3] = out;
    }

    fn backward(p: &[f32], ws: &mut Workspace, g: &mut [f32]) {
        let (a, b, h, out) = (&ws.values[0], &ws.values[1], &ws.values[2], &ws.values[3]);
        let fused = ws.fused[0];
        let [ga, gb, gh, gout] = &mut ws.grads[..] else { panic!("four buffers expected") };
        for r in 0..ws.batch {
            let y = out[r];
            let dz = if fused { gout[r] } else { gout[r] * y * (1.0 - y) };
            g[B1] += dz;
            for j in 0..3 {
                g[K1 + j] += dz * h[r * 3 + j];
                gh[r * 3 + j] += dz * p[K1 + j];
            }
            for k in 0..2 {
                g[K1 + 3 + k] += dz * b[r * 2 + k];
                gb[r * 2 + k] += dz * p[K1 + 3 + k];
            }
            for j in 0..3 {
                let dzj = if h[r * 3 + j] > 0.0 { gh[r * 3 + j] } else { 0.0 };
                g[B0 + j] += dzj;
                for i in 0..4 {
                    g[K0 + i * 3 + j] += a[r * 4 + i] * dzj;
                    ga[r * 4 + i] += dzj * p[K0 + i * 3 + j];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Heads: x [3] -> Dense(2, softmax) -> class [2]; x -> Dense(1) -> value [1].

/// One input, two outputs: a softmax classifier and a linear regressor.
#[derive(Debug)]
pub struct Heads {
    pub state: State,
}

/// Inputs of [`Heads`].
pub struct HeadsInputs<'a> {
    pub x: ArrayViewD<'a, f32>,
}

/// Outputs of [`Heads`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeadsOutputs {
    pub class: ArrayD<f32>,
    pub value: ArrayD<f32>,
}

/// Targets of [`Heads`].
pub struct HeadsTargets<'a> {
    pub class: ArrayViewD<'a, f32>,
    pub value: ArrayViewD<'a, f32>,
}

/// One value per output of [`Heads`].
#[derive(Clone, Debug)]
pub struct HeadsPerOutput<T> {
    pub class: T,
    pub value: T,
}

impl Heads {
    pub fn new(seed: u64) -> Self {
        Heads { state: model_runtime::model::new_state::<Self>(seed) }
    }
}

impl Network for Heads {
    const NAME: &'static str = "Heads";
    const INPUTS: &'static [TensorSpec] = &[TensorSpec { name: "x", shape: &[3], dtype: DType::F32 }];
    const OUTPUTS: &'static [TensorSpec] =
        &[TensorSpec { name: "class", shape: &[2], dtype: DType::F32 }, TensorSpec { name: "value", shape: &[1], dtype: DType::F32 }];
    const OUTPUT_INFO: &'static [OutputInfo] =
        &[OutputInfo { fusable_activation: Activation::Softmax }, OutputInfo { fusable_activation: Activation::Linear }];
    const PARAMS: &'static [ParamSpec] = &[
        ParamSpec {
            name: "class/kernel",
            shape: &[3, 2],
            offset: 0,
            init: Init::GlorotUniform { fan_in: 3, fan_out: 2 },
            trainable: true,
            statistic: false,
        },
        ParamSpec { name: "class/bias", shape: &[2], offset: 6, init: Init::Zeros, trainable: true, statistic: false },
        ParamSpec {
            name: "value/kernel",
            shape: &[3, 1],
            offset: 8,
            init: Init::GlorotUniform { fan_in: 3, fan_out: 1 },
            trainable: true,
            statistic: false,
        },
        ParamSpec { name: "value/bias", shape: &[1], offset: 11, init: Init::Zeros, trainable: true, statistic: false },
    ];
    const PARAM_COUNT: usize = 12;
    // 0: x, 1: class, 2: value.
    const BUFFERS: &'static [usize] = &[3, 2, 1];
    const SCRATCH: &'static [usize] = &[];
    const INPUT_BUFFERS: &'static [usize] = &[0];
    const OUTPUT_BUFFERS: &'static [usize] = &[1, 2];
    const SUMMARY: &'static str = "Heads";
    const DOT: &'static str = "digraph Heads {}";

    type Inputs<'a> = HeadsInputs<'a>;
    type Outputs = HeadsOutputs;
    type Targets<'a> = HeadsTargets<'a>;
    type PerOutput<T> = HeadsPerOutput<T>;

    fn state(&self) -> &State {
        &self.state
    }
    fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    fn visit_inputs<'a>(inputs: &'a Self::Inputs<'_>, f: &mut dyn FnMut(usize, Input<'a>) -> Result<()>) -> Result<()> {
        f(0, Input::new(&inputs.x))
    }
    fn visit_targets<'a>(targets: &'a Self::Targets<'_>, f: &mut dyn FnMut(usize, Input<'a>) -> Result<()>) -> Result<()> {
        f(0, Input::new(&targets.class))?;
        f(1, Input::new(&targets.value))
    }
    fn visit_outputs<'a>(outputs: &'a Self::Outputs, f: &mut dyn FnMut(usize, ArrayViewD<'a, f32>) -> Result<()>) -> Result<()> {
        f(0, outputs.class.view())?;
        f(1, outputs.value.view())
    }
    fn outputs_from(batch: usize, mut data: Vec<Vec<f32>>) -> Self::Outputs {
        let value = data.pop().expect("two outputs");
        let class = data.pop().expect("two outputs");
        HeadsOutputs { class: to_array(batch, &[2], class), value: to_array(batch, &[1], value) }
    }
    fn per_output<T: Clone>(values: &Self::PerOutput<T>) -> Vec<T> {
        vec![values.class.clone(), values.value.clone()]
    }

    fn forward(p: &[f32], ws: &mut Workspace) {
        let mut class = std::mem::take(&mut ws.values[1]);
        let mut value = std::mem::take(&mut ws.values[2]);
        let x = &ws.values[0];
        for r in 0..ws.batch {
            let mut z = [p[6], p[7]];
            for (c, zc) in z.iter_mut().enumerate() {
                for i in 0..3 {
                    *zc += x[r * 3 + i] * p[i * 2 + c];
                }
            }
            let m = z[0].max(z[1]);
            let e = [(z[0] - m).exp(), (z[1] - m).exp()];
            class[r * 2] = e[0] / (e[0] + e[1]);
            class[r * 2 + 1] = e[1] / (e[0] + e[1]);
            let mut v = p[11];
            for i in 0..3 {
                v += x[r * 3 + i] * p[8 + i];
            }
            value[r] = v;
        }
        ws.values[1] = class;
        ws.values[2] = value;
    }

    fn backward(p: &[f32], ws: &mut Workspace, g: &mut [f32]) {
        let (x, class) = (&ws.values[0], &ws.values[1]);
        let fused = ws.fused[0];
        let [gx, gclass, gvalue] = &mut ws.grads[..] else { panic!("three buffers expected") };
        for r in 0..ws.batch {
            let s = &class[r * 2..r * 2 + 2];
            let gs = &gclass[r * 2..r * 2 + 2];
            let dz: [f32; 2] = if fused {
                [gs[0], gs[1]]
            } else {
                let dot = gs[0] * s[0] + gs[1] * s[1];
                [s[0] * (gs[0] - dot), s[1] * (gs[1] - dot)]
            };
            for c in 0..2 {
                g[6 + c] += dz[c];
                for i in 0..3 {
                    g[i * 2 + c] += x[r * 3 + i] * dz[c];
                    gx[r * 3 + i] += dz[c] * p[i * 2 + c];
                }
            }
            let dv = gvalue[r];
            g[11] += dv;
            for i in 0..3 {
                g[8 + i] += x[r * 3 + i] * dv;
                gx[r * 3 + i] += dv * p[8 + i];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ids: an int32 input [3] returned as f32 (the output buffer is the input buffer).

/// Identity on an integer input, to test staging of `i32` inputs.
#[derive(Debug)]
pub struct Ids {
    pub state: State,
}

/// Inputs of [`Ids`].
pub struct IdsInputs<'a> {
    pub ids: ArrayViewD<'a, i32>,
}

/// Outputs of [`Ids`].
#[derive(Debug, Clone, PartialEq)]
pub struct IdsOutputs {
    pub out: ArrayD<f32>,
}

impl Network for Ids {
    const NAME: &'static str = "Ids";
    const INPUTS: &'static [TensorSpec] = &[TensorSpec { name: "ids", shape: &[3], dtype: DType::I32 }];
    const OUTPUTS: &'static [TensorSpec] = &[TensorSpec { name: "out", shape: &[3], dtype: DType::F32 }];
    const OUTPUT_INFO: &'static [OutputInfo] = &[OutputInfo { fusable_activation: Activation::Linear }];
    const PARAMS: &'static [ParamSpec] = &[];
    const PARAM_COUNT: usize = 0;
    const BUFFERS: &'static [usize] = &[3];
    const SCRATCH: &'static [usize] = &[];
    const INPUT_BUFFERS: &'static [usize] = &[0];
    const OUTPUT_BUFFERS: &'static [usize] = &[0];
    const SUMMARY: &'static str = "Ids";
    const DOT: &'static str = "digraph Ids {}";

    type Inputs<'a> = IdsInputs<'a>;
    type Outputs = IdsOutputs;
    type Targets<'a> = IdsOutputs;
    type PerOutput<T> = T;

    fn state(&self) -> &State {
        &self.state
    }
    fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }
    fn visit_inputs<'a>(inputs: &'a Self::Inputs<'_>, f: &mut dyn FnMut(usize, Input<'a>) -> Result<()>) -> Result<()> {
        f(0, Input::new(&inputs.ids))
    }
    fn visit_targets<'a>(targets: &'a Self::Targets<'_>, f: &mut dyn FnMut(usize, Input<'a>) -> Result<()>) -> Result<()> {
        f(0, Input::new(&targets.out))
    }
    fn visit_outputs<'a>(outputs: &'a Self::Outputs, f: &mut dyn FnMut(usize, ArrayViewD<'a, f32>) -> Result<()>) -> Result<()> {
        f(0, outputs.out.view())
    }
    fn outputs_from(batch: usize, mut data: Vec<Vec<f32>>) -> Self::Outputs {
        IdsOutputs { out: to_array(batch, &[3], data.remove(0)) }
    }
    fn per_output<T: Clone>(values: &Self::PerOutput<T>) -> Vec<T> {
        vec![values.clone()]
    }
    fn forward(_: &[f32], _: &mut Workspace) {}
    fn backward(_: &[f32], _: &mut Workspace, _: &mut [f32]) {}
}

// ---------------------------------------------------------------------------------------------
// Data.

/// A small deterministic generator for test data (not the runtime's).
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// A `[rows, cols]` array of uniform values.
    pub fn array(&mut self, rows: usize, cols: usize) -> ArrayD<f32> {
        let data: Vec<f32> = (0..rows * cols).map(|_| self.next()).collect();
        ArrayD::from_shape_vec(IxDyn(&[rows, cols]), data).expect("shape")
    }
}

/// Inputs and labels of a learnable rule for [`TwoIn`]: `y = 1` iff `a0 - a1 + b0 > 0`.
pub fn two_in_data(rows: usize, seed: u64) -> (ArrayD<f32>, ArrayD<f32>, ArrayD<f32>) {
    let mut rng = Lcg(seed);
    let a = rng.array(rows, 4);
    let b = rng.array(rows, 2);
    let y: Vec<f32> = (0..rows)
        .map(|r| {
            let s = a[[r, 0]] - a[[r, 1]] + b[[r, 0]];
            if s > 0.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let y = ArrayD::from_shape_vec(IxDyn(&[rows, 1]), y).expect("shape");
    (a, b, y)
}
