//! The generic operations behind a compiled model's inherent methods: typed inputs in, checked,
//! staged into the workspace, run, typed outputs and named parameters out.

use crate::error::{Error, Result};
use crate::network::{Input, InputView, Network, State};
use crate::spec::{keras_shape, DType, ParamSpec, TensorSpec};
use crate::workspace::{rows_len, try_reserve_len, Layout, Workspace};
use ndarray::{ArrayViewD, Axis, IxDyn};

/// A fresh state for `N`: parameters initialized with Keras' defaults from `seed`, empty workspaces.
pub fn new_state<N: Network>(seed: u64) -> State {
    let mut params = vec![0.0; N::PARAM_COUNT];
    crate::init::init_params(N::PARAMS, seed, &mut params);
    State { params, ..State::default() }
}

/// Formats an actual shape, batch included, like Python prints a tuple: `(32, 7)`, `(5,)`.
pub(crate) fn tuple_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Checks `actual` (batch first) against a spec's batch-less shape; returns the batch size.
pub(crate) fn check_shape(what: &'static str, spec: &TensorSpec, actual: &[usize]) -> Result<usize> {
    // Element by element rather than a slice compare, which calls `memcmp` for a rank-1 sample.
    let same = |rest: &[usize]| rest.len() == spec.shape.len() && rest.iter().zip(spec.shape).all(|(a, b)| a == b);
    match actual.split_first() {
        Some((&batch, rest)) if same(rest) => Ok(batch),
        _ => Err(Error::Shape { what, name: spec.name.to_string(), expected: keras_shape(spec.shape), actual: tuple_shape(actual) }),
    }
}

/// Tracks the batch size shared by the tensors of one call.
#[derive(Default)]
pub(crate) struct BatchCheck {
    first: Option<(&'static str, &'static str, usize)>,
}

impl BatchCheck {
    /// Records tensor `name`'s batch size; errors if it differs from the first one seen.
    pub(crate) fn see(&mut self, what: &'static str, name: &'static str, batch: usize) -> Result<()> {
        match self.first {
            None => {
                self.first = Some((what, name, batch));
                Ok(())
            }
            Some((_, _, b)) if b == batch => Ok(()),
            Some((first_what, first, first_batch)) => Err(Error::BatchMismatch {
                first_what,
                first: first.to_string(),
                first_batch,
                second_what: what,
                second: name.to_string(),
                second_batch: batch,
            }),
        }
    }

    /// The common batch size: an error when empty (or when nothing was seen).
    pub(crate) fn finish(&self) -> Result<usize> {
        match self.first {
            Some((_, _, b)) if b > 0 => Ok(b),
            Some((what, name, _)) => Err(Error::EmptyBatch { what, name: name.to_string() }),
            None => Err(Error::config("inputs", "none", "the model has no inputs to take a batch size from")),
        }
    }
}

fn input_spec<N: Network>(i: usize) -> Result<&'static TensorSpec> {
    N::INPUTS.get(i).ok_or_else(|| Error::config("inputs", i, format!("model `{}` has only {} inputs", N::NAME, N::INPUTS.len())))
}

/// Output `o`'s spec and the buffer holding it in a workspace of `layout`.
pub(crate) fn output_spec<N: Network>(o: usize, layout: Layout) -> Result<(&'static TensorSpec, usize)> {
    match (N::OUTPUTS.get(o), layout.output_buffers::<N>().get(o)) {
        (Some(spec), Some(&buf)) => Ok((spec, buf)),
        _ => Err(Error::config("outputs", o, format!("model `{}` has only {} outputs", N::NAME, N::OUTPUTS.len()))),
    }
}

/// Checks every input's rank, dimensions and dtype against `N::INPUTS` and that all batch
/// sizes agree and are non-zero; returns the batch size. Touches nothing.
pub fn check_inputs<N: Network>(inputs: &N::Inputs<'_>) -> Result<usize> {
    let mut batch = BatchCheck::default();
    see_inputs::<N>(inputs, &mut batch)?;
    batch.finish()
}

/// Checks the inputs' shapes and dtypes, recording their batch sizes in `batch`.
pub(crate) fn see_inputs<N: Network>(inputs: &N::Inputs<'_>, batch: &mut BatchCheck) -> Result<()> {
    N::visit_inputs(inputs, &mut |i, input| see_input::<N>(i, input, batch))
}

/// Checks input `i`'s dtype, shape and (integer inputs) token ids, recording its batch size in `batch`.
fn see_input<N: Network>(i: usize, input: Input<'_>, batch: &mut BatchCheck) -> Result<()> {
    let spec = input_spec::<N>(i)?;
    let (shape, dtype) = (input.shape(), input.dtype());
    if dtype != spec.dtype {
        return Err(Error::DType {
            what: "input",
            name: spec.name.to_string(),
            expected: dtype_name(spec.dtype).to_string(),
            actual: dtype_name(dtype).to_string(),
        });
    }
    let b = check_shape("input", spec, shape)?;
    check_ids::<N>(i, spec, input)?;
    batch.see("input", spec.name, b)
}

/// Checks that integer input `i` holds only ids inside the table of every `Embedding` that reads it
/// (`N::ID_BOUNDS`), so that an id out of range is an error before anything runs.
/// The dynamic-rank view is built only for such an input.
fn check_ids<N: Network>(i: usize, spec: &TensorSpec, input: Input<'_>) -> Result<()> {
    let Some(bound) = N::ID_BOUNDS.iter().filter(|b| b.input == i).min_by_key(|b| b.limit) else { return Ok(()) };
    let InputView::I32(v) = input.view() else { return Ok(()) };
    let per_sample = spec.sample_len().max(1);
    match v.iter().enumerate().find(|(_, &id)| usize::try_from(id).map_or(true, |id| id >= bound.limit)) {
        None => Ok(()),
        Some((k, &value)) => Err(Error::TokenId {
            input: spec.name.to_string(),
            value,
            sample: k / per_sample,
            index: k % per_sample,
            limit: bound.limit,
            layer: bound.layer.to_string(),
        }),
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::I32 => "int32",
    }
}

/// Checks the inputs (see [`check_inputs`]), sizes the workspace for their batch and copies each
/// input into its staging buffer (`ws.values[N::INPUT_BUFFERS[i]]`, or `N::INFER_INPUT_BUFFERS` for an
/// inference-layout workspace). Integer inputs are converted to `f32` exactly
/// (an error past ±2^24); non-contiguous views are copied in logical order. Returns the batch size.
pub fn stage_inputs<N: Network>(inputs: &N::Inputs<'_>, ws: &mut Workspace) -> Result<usize> {
    stage::<N>(inputs, ws, None)
}

/// [`stage_inputs`] for inputs already checked (by [`check_inputs`], or with the targets by the
/// trainer) to hold `batch` samples: sizes the workspace and copies each input, without checking them
/// again. On an error (an integer input `f32` cannot hold) the workspace is left marked empty, as
/// [`stage_inputs`] leaves it.
pub(crate) fn stage_checked_inputs<N: Network>(inputs: &N::Inputs<'_>, ws: &mut Workspace, batch: usize) -> Result<()> {
    let staged = ws.resize::<N>(batch).and_then(|()| {
        N::visit_inputs(inputs, &mut |i, input| {
            let spec = input_spec::<N>(i)?;
            let dst = input_buffer::<N>(ws, i, batch * spec.sample_len())?;
            match input.f32_slice().filter(|x| x.len() == dst.len()) {
                Some(x) => {
                    dst.copy_from_slice(x);
                    Ok(())
                }
                None => copy_input(spec.name, &input.view(), dst),
            }
        })
    });
    if staged.is_err() {
        ws.batch = 0;
    }
    staged
}

/// Most inputs an inference call reads in place; the others are staged.
const IN_PLACE_MAX: usize = 16;

/// Where `forward_inference` reads each input: in place (`Some`) or staged (`None`).
type InPlace<'a> = [Option<&'a [f32]>; IN_PLACE_MAX];

/// [`stage_inputs`] into the inference workspace, except that the inputs `N::forward_inference` can
/// read where the caller holds them (contiguous float inputs, not themselves outputs) are not copied
/// but set in `direct`.
fn stage_for_inference<'a, N: Network>(inputs: &'a N::Inputs<'_>, ws: &mut Workspace, direct: &mut InPlace<'a>) -> Result<usize> {
    stage::<N>(inputs, ws, N::INFER_INPUTS_IN_PLACE.then_some(direct))
}

fn stage<'a, N: Network>(inputs: &'a N::Inputs<'_>, ws: &mut Workspace, mut direct: Option<&mut InPlace<'a>>) -> Result<usize> {
    // One pass: each input is checked, then copied (the workspace sized by the first one). An input
    // that fails a check leaves the workspace marked empty (batch 0), so nothing reads the half-staged
    // inputs: `backward` reports that no forward pass ran.
    let mut batch = BatchCheck::default();
    let mut sized = false;
    let staged = N::visit_inputs(inputs, &mut |i, input| {
        see_input::<N>(i, input, &mut batch)?;
        let b = batch.finish()?;
        if !sized {
            ws.resize::<N>(b)?;
            sized = true;
        }
        let in_place = match &mut direct {
            Some(direct) if !is_output::<N>(i) => direct.get_mut(i).zip(input.f32_slice()),
            _ => None,
        };
        if let Some((slot, x)) = in_place {
            *slot = Some(x);
            return Ok(());
        }
        let spec = input_spec::<N>(i)?;
        let dst = input_buffer::<N>(ws, i, b * spec.sample_len())?;
        match input.f32_slice() {
            Some(x) => {
                dst.copy_from_slice(x);
                Ok(())
            }
            None => copy_input(spec.name, &input.view(), dst),
        }
    });
    match staged.and_then(|()| batch.finish()) {
        Ok(b) => Ok(b),
        Err(e) => {
            ws.batch = 0;
            Err(e)
        }
    }
}

/// Whether input `i` is also a model output (one value per training buffer), which the caller reads
/// from the workspace: such an input is staged.
fn is_output<N: Network>(i: usize) -> bool {
    N::INPUT_BUFFERS.get(i).is_none_or(|b| N::OUTPUT_BUFFERS.contains(b))
}

/// The first `len` elements of input `i`'s staging buffer.
pub(crate) fn input_buffer<N: Network>(ws: &mut Workspace, i: usize, len: usize) -> Result<&mut [f32]> {
    ws.layout
        .input_buffers::<N>()
        .get(i)
        .and_then(|&b| ws.values.get_mut(b))
        .and_then(|buf| buf.get_mut(..len))
        .ok_or_else(|| Error::config("inputs", i, "no workspace buffer holds this input (model metadata is inconsistent)"))
}

fn copy_input(name: &str, view: &InputView<'_>, dst: &mut [f32]) -> Result<()> {
    match view {
        InputView::F32(v) => {
            match v.as_slice() {
                Some(s) => dst.copy_from_slice(s),
                None => dst.iter_mut().zip(v.iter()).for_each(|(d, &s)| *d = s),
            }
            Ok(())
        }
        InputView::I32(v) => {
            for (d, &s) in dst.iter_mut().zip(v.iter()) {
                *d = exact_f32(name, s)?;
            }
            Ok(())
        }
    }
}

/// Converts an integer input element to `f32`, refusing values `f32` cannot hold exactly.
pub(crate) fn exact_f32(name: &str, v: i32) -> Result<f32> {
    if v.unsigned_abs() > 1 << 24 {
        return Err(Error::InexactInteger { name: name.to_string(), value: v });
    }
    Ok(v as f32)
}

/// Copies rows `rows` of input `i` (`view`, batch first) into `dst`, `row_len` elements per row, in
/// order, converting integers exactly. Allocates nothing for standard-layout views.
pub(crate) fn gather_input<N: Network>(i: usize, input: Input<'_>, rows: Rows<'_>, row_len: usize, dst: &mut [f32]) -> Result<()> {
    match input.view() {
        InputView::F32(v) => {
            gather_f32(&v, rows, row_len, dst);
            Ok(())
        }
        InputView::I32(v) => gather_i32(input_spec::<N>(i)?.name, &v, rows, row_len, dst),
    }
}

/// Copies rows `rows` of `src` (batch first) into `dst`, `row_len` elements per row, in order.
/// Allocates nothing for standard-layout views.
pub(crate) fn gather_f32(src: &ArrayViewD<'_, f32>, rows: Rows<'_>, row_len: usize, dst: &mut [f32]) {
    let dst_rows = dst.chunks_exact_mut(row_len.max(1));
    match src.as_slice() {
        Some(s) => {
            for (d, r) in dst_rows.zip(rows.iter()) {
                d.copy_from_slice(&s[r * row_len..(r + 1) * row_len]);
            }
        }
        None => {
            for (d, r) in dst_rows.zip(rows.iter()) {
                for (x, &y) in d.iter_mut().zip(src.index_axis(Axis(0), r).iter()) {
                    *x = y;
                }
            }
        }
    }
}

/// [`gather_f32`] for integer inputs, converting exactly.
fn gather_i32(name: &str, src: &ArrayViewD<'_, i32>, rows: Rows<'_>, row_len: usize, dst: &mut [f32]) -> Result<()> {
    let dst_rows = dst.chunks_exact_mut(row_len.max(1));
    match src.as_slice() {
        Some(s) => {
            for (d, r) in dst_rows.zip(rows.iter()) {
                for (x, &y) in d.iter_mut().zip(&s[r * row_len..(r + 1) * row_len]) {
                    *x = exact_f32(name, y)?;
                }
            }
        }
        None => {
            for (d, r) in dst_rows.zip(rows.iter()) {
                for (x, &y) in d.iter_mut().zip(src.index_axis(Axis(0), r).iter()) {
                    *x = exact_f32(name, y)?;
                }
            }
        }
    }
    Ok(())
}

/// A selection of batch rows: a contiguous range or an explicit (shuffled) list.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows<'a> {
    /// Rows `start..end`.
    Range(usize, usize),
    /// These rows, in this order.
    List(&'a [usize]),
}

impl Rows<'_> {
    pub(crate) fn len(&self) -> usize {
        match *self {
            Rows::Range(a, b) => b.saturating_sub(a),
            Rows::List(l) => l.len(),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let (range, list) = match *self {
            Rows::Range(a, b) => (a..b, &[][..]),
            Rows::List(l) => (0..0, l),
        };
        range.chain(list.iter().copied())
    }
}

/// Runs `N::forward` on the inputs staged in `state.ws`; a training pass advances `ws.step` afterwards.
/// The state a training pass computes (moving statistics) is left for the caller to apply with
/// `N::update_state`.
pub(crate) fn run_forward<N: Network>(state: &mut State, training: bool) {
    run_forward_with::<N>(state, ForwardMode::from(training));
}

/// [`run_forward`] with Dropout and BatchNormalization set apart; the step counter (which the dropout
/// masks mix in) advances after a pass with dropout on.
fn run_forward_with<N: Network>(state: &mut State, mode: ForwardMode) {
    let State { params, ws, .. } = state;
    ws.training = mode.dropout;
    ws.batch_statistics = mode.batch_statistics;
    N::forward(params, ws);
    if mode.dropout {
        ws.step = ws.step.wrapping_add(1);
    }
}

/// How a [`forward_with`] pass runs the layers that behave differently in training, each set on its own
/// (Keras: calling each layer with its own `training` argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardMode {
    /// Dropout drops (and rescales) as in training; the identity when false.
    pub dropout: bool,
    /// BatchNormalization normalizes with the batch's statistics and then moves its moving statistics,
    /// as a Keras layer called with `training=True`; it uses the moving statistics when false.
    pub batch_statistics: bool,
}

impl ForwardMode {
    /// Every layer in training mode (`forward(.., true)`).
    pub const TRAINING: ForwardMode = ForwardMode { dropout: true, batch_statistics: true };
    /// Every layer in inference mode (`forward(.., false)`).
    pub const INFERENCE: ForwardMode = ForwardMode { dropout: false, batch_statistics: false };
}

impl From<bool> for ForwardMode {
    /// One `training` flag for every layer.
    fn from(training: bool) -> Self {
        ForwardMode { dropout: training, batch_statistics: training }
    }
}

/// Runs `N::forward_inference` on the inputs staged in `state.infer`.
pub(crate) fn run_inference<N: Network>(state: &mut State) {
    run_inference_on::<N>(state, &[]);
}

/// Runs `N::forward_inference` on the inputs in `direct` (where `Some`) or staged in `state.infer`.
fn run_inference_on<N: Network>(state: &mut State, direct: &[Option<&[f32]>]) {
    let generation = state.params_generation();
    let State { params, infer, .. } = state;
    infer.packed.set_generation(generation);
    infer.training = false;
    infer.batch_statistics = false;
    N::forward_inference(params, infer, direct);
}

/// Output `o`'s values in the workspace for the current batch (`state.ws` after `forward`,
/// `state.infer` after `predict_staged`).
pub fn output_slice<N: Network>(ws: &Workspace, o: usize) -> Result<&[f32]> {
    let (spec, buf) = output_spec::<N>(o, ws.layout)?;
    let len = ws.batch * spec.sample_len();
    ws.values
        .get(buf)
        .and_then(|v| v.get(..len))
        .ok_or_else(|| Error::config("outputs", o, "no workspace buffer holds this output (model metadata is inconsistent)"))
}

/// Copies the outputs of the last forward pass out of the workspace.
pub(crate) fn collect_outputs<N: Network>(ws: &Workspace) -> Result<N::Outputs> {
    let mut data = output_vecs::<N>(ws.batch)?;
    for (o, d) in data.iter_mut().enumerate() {
        d.extend_from_slice(output_slice::<N>(ws, o)?);
    }
    Ok(N::outputs_from(ws.batch, data))
}

/// One empty buffer per output, each with room for `rows` rows, allocated fallibly: an
/// [`Error::Allocation`] when a size overflows or the allocator refuses.
pub(crate) fn output_vecs<N: Network>(rows: usize) -> Result<Vec<Vec<f32>>> {
    let mut data = Vec::with_capacity(N::OUTPUTS.len());
    for spec in N::OUTPUTS {
        let what = || format!("output `{}`", spec.name);
        let len = rows_len(what, rows, spec.sample_len())?;
        let mut d = Vec::new();
        try_reserve_len(&mut d, len, what, rows)?;
        data.push(d);
    }
    Ok(data)
}

/// Bytes of inference workspace `predict` uses at most for a batch, before it works in chunks.
pub const PREDICT_WORKSPACE_BYTES: usize = 64 << 20;

/// Rows per chunk of [`predict`]: as many as fit in [`PREDICT_WORKSPACE_BYTES`] of inference workspace,
/// at least one.
pub fn predict_chunk_rows<N: Network>() -> usize {
    let per_row: usize = N::INFER_BUFFERS.iter().chain(N::INFER_SCRATCH).fold(0usize, |a, &b| a.saturating_add(b));
    (PREDICT_WORKSPACE_BYTES / per_row.saturating_mul(std::mem::size_of::<f32>()).max(1)).max(1)
}

/// Runs the model in inference mode (`training = false`) over the whole batch, on the inference
/// buffers: the same outputs as `forward(.., false)`, bit for bit, in less memory, leaving the
/// activations `backward` reads untouched.
///
/// Memory stays bounded whatever the batch: a batch larger than [`predict_chunk_rows`] runs in chunks
/// of that many rows through one workspace, and only the outputs are sized for every row (an
/// [`Error::Allocation`] when even they cannot be allocated).
pub fn predict<N: Network>(model: &mut N, inputs: &N::Inputs<'_>) -> Result<N::Outputs> {
    let chunk = predict_chunk_rows::<N>();
    if largest_batch::<N>(inputs) > chunk {
        return crate::train::predict_batched(model, inputs, chunk);
    }
    predict_staged(model, inputs)?;
    collect_outputs::<N>(&model.state().infer)
}

/// The largest leading dimension among the inputs, unchecked (the callers check the inputs).
fn largest_batch<N: Network>(inputs: &N::Inputs<'_>) -> usize {
    let mut rows = 0;
    let _ = N::visit_inputs(inputs, &mut |_, input| {
        rows = rows.max(input.shape().first().copied().unwrap_or(0));
        Ok(())
    });
    rows
}

/// Runs the model in inference mode and leaves the outputs in the inference workspace `state.infer`
/// (read them with [`output_slice`]); returns the batch size. Allocates nothing once the workspace
/// holds the batch.
pub fn predict_staged<N: Network>(model: &mut N, inputs: &N::Inputs<'_>) -> Result<usize> {
    let _flush = crate::fpenv::FlushDenormals::new();
    let state = model.state_for_inference();
    let _bf16 = state.dtype_policy.scope();
    state.infer.set_layout(Layout::Inference);
    let mut direct: InPlace<'_> = [None; IN_PLACE_MAX];
    let batch = stage_for_inference::<N>(inputs, &mut state.infer, &mut direct)?;
    run_inference_on::<N>(state, &direct);
    Ok(batch)
}

/// Runs the forward pass over the whole batch, keeping the activations for [`backward`].
/// `training` turns on dropout and batch statistics, and updates the moving statistics.
pub fn forward<N: Network>(model: &mut N, inputs: &N::Inputs<'_>, training: bool) -> Result<N::Outputs> {
    forward_with(model, inputs, ForwardMode::from(training))
}

/// [`forward`] with Dropout and BatchNormalization in modes set independently: for example dropout
/// off and batch statistics on (`ForwardMode { dropout: false, batch_statistics: true }`). The moving
/// statistics move when `batch_statistics` is on, as in Keras. [`backward`] then follows the same modes.
pub fn forward_with<N: Network>(model: &mut N, inputs: &N::Inputs<'_>, mode: ForwardMode) -> Result<N::Outputs> {
    let _flush = crate::fpenv::FlushDenormals::new();
    let state = model.state_mut();
    let _bf16 = state.dtype_policy.scope();
    state.ws.set_layout(Layout::Training);
    stage_inputs::<N>(inputs, &mut state.ws)?;
    run_forward_with::<N>(state, mode);
    if mode.batch_statistics {
        // Like calling a Keras model with `training=True`: the moving statistics move.
        N::update_state(&mut state.params, &state.ws);
    }
    collect_outputs::<N>(&state.ws)
}

/// Backpropagates `d_outputs` (the gradient of some scalar w.r.t. each output of the last
/// [`forward`]) and returns the gradient w.r.t. every parameter.
pub fn backward<N: Network>(model: &mut N, d_outputs: &N::Outputs) -> Result<Gradients> {
    backward_hooked(model, d_outputs, &mut |_, _| {})
}

/// [`backward`], calling `ready(slice, offset)` with each range of the gradient buffer as soon as it
/// holds its final value, while backward still runs (the ranges of [`Network::BACKWARD_READY`], in
/// that order): where a data-parallel loop of your own can start summing them over the processes.
pub fn backward_hooked<N: Network>(model: &mut N, d_outputs: &N::Outputs, ready: &mut dyn FnMut(&[f32], usize)) -> Result<Gradients> {
    let _flush = crate::fpenv::FlushDenormals::new();
    let State { params, ws, dtype_policy, .. } = model.state_mut();
    let _bf16 = dtype_policy.scope();
    if ws.batch == 0 || ws.values.len() != N::BUFFERS.len() {
        return Err(Error::BackwardBeforeForward);
    }
    let batch = ws.batch;
    N::visit_outputs(d_outputs, &mut |o, view| {
        let (spec, _) = output_spec::<N>(o, Layout::Training)?;
        match check_shape("output gradient", spec, view.shape()) {
            Ok(b) if b == batch => Ok(()),
            _ => Err(Error::Shape {
                what: "output gradient",
                name: spec.name.to_string(),
                expected: tuple_shape(&[&[batch][..], spec.shape].concat()),
                actual: tuple_shape(view.shape()),
            }),
        }
    })?;
    ws.zero_grads::<N>();
    ws.fused.iter_mut().for_each(|f| *f = false);
    N::visit_outputs(d_outputs, &mut |o, view| {
        let (spec, buf) = output_spec::<N>(o, Layout::Training)?;
        let len = batch * spec.sample_len();
        let dst = ws
            .grads
            .get_mut(buf)
            .and_then(|g| g.get_mut(..len))
            .ok_or_else(|| Error::config("outputs", o, "no workspace buffer holds this output (model metadata is inconsistent)"))?;
        copy_input(spec.name, &InputView::F32(view), dst)
    })?;
    let mut grads = vec![0.0; N::PARAM_COUNT];
    N::backward_hooked(params, ws, &mut grads, ready);
    Ok(Gradients { data: grads, specs: N::PARAMS })
}

/// Parameter gradients, in the layout of the flat parameter buffer, reachable by name.
#[derive(Clone, Debug)]
pub struct Gradients {
    data: Vec<f32>,
    specs: &'static [ParamSpec],
}

impl Gradients {
    /// The gradient of parameter `name` (Keras layout), if the model has such a parameter.
    pub fn get(&self, name: &str) -> Option<ArrayViewD<'_, f32>> {
        let spec = self.specs.iter().find(|s| s.name == name)?;
        view_of(spec, &self.data).ok()
    }

    /// All gradients as one flat slice, in `Network::PARAMS` order and offsets.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The flat buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// `(name, gradient)` for every parameter, in `Network::PARAMS` order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, ArrayViewD<'_, f32>)> + '_ {
        self.specs.iter().filter_map(move |s| view_of(s, &self.data).ok().map(|v| (s.name, v)))
    }
}

fn view_of<'a>(spec: &ParamSpec, flat: &'a [f32]) -> Result<ArrayViewD<'a, f32>> {
    flat.get(spec.range()).and_then(|s| ArrayViewD::from_shape(IxDyn(spec.shape), s).ok()).ok_or_else(|| Error::ParamShape {
        name: spec.name.to_string(),
        expected: spec.shape.to_vec(),
        actual: vec![flat.len().saturating_sub(spec.offset)],
    })
}

fn find_param<N: Network>(name: &str) -> Result<&'static ParamSpec> {
    N::PARAMS.iter().find(|s| s.name == name).ok_or_else(|| Error::unknown_param(name, N::PARAMS.iter().map(|s| s.name)))
}

/// The parameter `name` (e.g. `"dense_1/kernel"`), in Keras layout.
pub fn param<'m, N: Network>(model: &'m N, name: &str) -> Result<ArrayViewD<'m, f32>> {
    let spec = find_param::<N>(name)?;
    view_of(spec, &model.state().params)
}

/// Overwrites the parameter `name` with `value`, which must have its exact shape.
pub fn set_param<N: Network>(model: &mut N, name: &str, value: ArrayViewD<'_, f32>) -> Result<()> {
    let spec = find_param::<N>(name)?;
    if value.shape() != spec.shape {
        return Err(Error::ParamShape { name: name.to_string(), expected: spec.shape.to_vec(), actual: value.shape().to_vec() });
    }
    let params = &mut model.state_mut().params;
    let dst = params.get_mut(spec.range()).ok_or_else(|| Error::ParamShape {
        name: name.to_string(),
        expected: spec.shape.to_vec(),
        actual: value.shape().to_vec(),
    })?;
    copy_input(name, &InputView::F32(value), dst)
}

/// Every parameter's name, in the flat buffer's order.
pub fn param_names<N: Network>() -> impl Iterator<Item = &'static str> {
    N::PARAMS.iter().map(|s| s.name)
}

/// `(total, trainable, non_trainable)` parameter element counts, as Keras' summary footer.
pub fn count_params<N: Network>() -> (usize, usize, usize) {
    let trainable: usize = N::PARAMS.iter().filter(|s| s.trainable).map(|s| s.len()).sum();
    let total: usize = N::PARAMS.iter().map(|s| s.len()).sum();
    (total, trainable, total - trainable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_print_like_python_tuples() {
        assert_eq!(tuple_shape(&[32, 7]), "(32, 7)");
        assert_eq!(tuple_shape(&[5]), "(5,)");
        assert_eq!(tuple_shape(&[]), "()");
    }

    #[test]
    fn rows_iterate_ranges_and_lists() {
        assert_eq!(Rows::Range(2, 5).iter().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(Rows::List(&[4, 1]).iter().collect::<Vec<_>>(), [4, 1]);
        assert_eq!(Rows::Range(2, 5).len(), 3);
    }

    #[test]
    fn integers_convert_exactly_or_fail() {
        assert_eq!(exact_f32("ids", 16_777_216).ok(), Some(16_777_216.0));
        assert_eq!(exact_f32("ids", -16_777_216).ok(), Some(-16_777_216.0));
        assert!(exact_f32("ids", 16_777_217).is_err());
        assert!(exact_f32("ids", i32::MIN).is_err());
    }
}
