//! `emit`: `Plan` -> `TokenStream`. The model struct, its typed inputs/outputs/targets/per-output structs,
//! the `Network` impl (forward and backward as straight-line kernel calls) and the inherent API.
//! On errors, `stub` emits the same items with `unreachable!()` bodies so the user's other code
//! type-checks and the only errors shown are the real ones.

use crate::hir::DType;
use crate::layers::weights::{ConstraintSpec, Distribution, FanMode, Penalty};
use crate::layers::{InitKind, LayerDef};
use crate::meta;
use crate::plan::Plan;
use crate::shape::Shape;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// The public face of a model: enough to declare its items, with or without a plan.
pub struct Signature {
    /// Attributes for the struct.
    pub attrs: Vec<syn::Attribute>,
    /// Visibility.
    pub vis: syn::Visibility,
    /// Struct name.
    pub name: Ident,
    /// Inputs: name, per-sample shape (rank matters), dtype.
    pub inputs: Vec<(Ident, Vec<usize>, DType)>,
    /// Outputs: name, per-sample shape when known.
    pub outputs: Vec<(Ident, Option<Shape>)>,
    /// Per-sample rank of each output: exact when its shape is known, else the stub's best guess, so that
    /// user code handing arrays to a failed model's structs adds no type error of its own.
    pub output_ranks: Vec<usize>,
    /// The element type of each output's targets (`I32`: class ids, `output y = ... as i32 target`).
    pub targets: Vec<DType>,
    /// `#[dtype_policy = "mixed_bfloat16"]`: `new()` sets that policy.
    pub mixed_bfloat16: bool,
}

/// Emits the full model. `source` is the whole invocation, carried by the model's callback macros;
/// `first_round`: the invocation as written (see `callbacks`, which writes the callback macros).
pub fn emit(plan: &Plan, source: &TokenStream, first_round: bool) -> TokenStream {
    let m = &plan.typed.model;
    let sig = Signature {
        attrs: m.attrs.clone(),
        vis: m.vis.clone(),
        name: m.name.clone(),
        inputs: plan.inputs.iter().map(|i| (i.name.clone(), i.shape.0.clone(), i.dtype)).collect(),
        outputs: plan.outputs.iter().map(|o| (o.name.clone(), Some(o.shape.clone()))).collect(),
        output_ranks: plan.outputs.iter().map(|o| o.shape.rank()).collect(),
        targets: m.outputs.iter().map(|o| o.target).collect(),
        mixed_bfloat16: m.mixed_bfloat16,
    };
    let mut out = items(&sig, Some(plan));
    out.extend(callbacks(&sig.name, source, first_round));
    out
}

/// Emits stub items for a model that failed to compile.
pub fn stub(sig: &Signature, source: &TokenStream, first_round: bool) -> TokenStream {
    let mut out = items(sig, None);
    out.extend(callbacks(&sig.name, source, first_round));
    out
}

/// The first-round callbacks of every model of an invocation that must first fetch other invocations'
/// models: emitted before that wait, so that invocations which need each other's models all proceed.
pub fn first_round_callbacks(file: &crate::ast::File, source: &TokenStream) -> TokenStream {
    file.models.iter().map(|m| first_round_callback(&m.name, source)).collect()
}

// A model's callback macros. Another invocation that uses `Name` (or `path::Name`) as a layer expands to
// `path::Name! { as path::Name; <its input> }` and so receives this invocation's source, which it inlines:
//     macro_rules! __modelc_model_Name { ($($rest:tt)*) => { ::modelc::model! { @with { <source> } $($rest)* } } }
//     pub(crate) use __modelc_model_Name as Name;
// That first-round callback is defined when the invocation is first expanded, before it waits for the
// models it uses from other invocations, and carries the source as written. The full callback
// (`path::__modelc_full_Name!`, handing back `@with full { ... }`) is defined by the round that emits the
// items, and carries the source with those other invocations' sources, so that a user in another module
// does not have to resolve this model's own dependencies by paths written for this module.
// Re-exported by `use`, both resolve by path across modules.
fn callbacks(name: &Ident, source: &TokenStream, first_round: bool) -> TokenStream {
    let mut out = if first_round { first_round_callback(name, source) } else { TokenStream::new() };
    let mac = format_ident!("__modelc_full_def_{}", name);
    let alias = format_ident!("__modelc_full_{}", name);
    out.extend(quote! {
        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #mac {
            ($($rest:tt)*) => { ::modelc::model! { @with full { #source } $($rest)* } };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        pub(crate) use #mac as #alias;
    });
    out
}

fn first_round_callback(name: &Ident, source: &TokenStream) -> TokenStream {
    let mac = format_ident!("__modelc_model_{}", name);
    quote! {
        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #mac {
            ($($rest:tt)*) => { ::modelc::model! { @with { #source } $($rest)* } };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        pub(crate) use #mac as #name;
    }
}

fn rank_dim(rank: usize) -> TokenStream {
    let nd = quote!(::modelc::__private::ndarray);
    match rank {
        1 => quote!(#nd::Ix1),
        2 => quote!(#nd::Ix2),
        3 => quote!(#nd::Ix3),
        4 => quote!(#nd::Ix4),
        5 => quote!(#nd::Ix5),
        6 => quote!(#nd::Ix6),
        _ => quote!(#nd::IxDyn),
    }
}

fn dtype_tokens(d: DType) -> (TokenStream, TokenStream) {
    let p = quote!(::modelc::__private);
    match d {
        DType::F32 => (quote!(f32), quote!(#p::spec::DType::F32)),
        DType::I32 => (quote!(i32), quote!(#p::spec::DType::I32)),
    }
}

fn init_tokens(i: InitKind) -> TokenStream {
    let p = quote!(::modelc::__private::spec::Init);
    let s = quote!(::modelc::__private::spec);
    let seed = |seed: Option<u64>| match seed {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    match i {
        InitKind::GlorotUniform { fan_in, fan_out } => quote!(#p::GlorotUniform { fan_in: #fan_in, fan_out: #fan_out }),
        InitKind::Uniform(limit) => quote!(#p::Uniform { limit: #limit }),
        InitKind::Zeros => quote!(#p::Zeros),
        InitKind::Ones => quote!(#p::Ones),
        InitKind::Constant(value) => quote!(#p::Constant { value: #value }),
        InitKind::RandomNormal { mean, stddev, seed: sd } => {
            let sd = seed(sd);
            quote!(#p::RandomNormal { mean: #mean, stddev: #stddev, seed: #sd })
        }
        InitKind::RandomUniform { minval, maxval, seed: sd } => {
            let sd = seed(sd);
            quote!(#p::RandomUniform { minval: #minval, maxval: #maxval, seed: #sd })
        }
        InitKind::TruncatedNormal { mean, stddev, seed: sd } => {
            let sd = seed(sd);
            quote!(#p::TruncatedNormal { mean: #mean, stddev: #stddev, seed: #sd })
        }
        InitKind::VarianceScaling { scale, mode, distribution, fan_in, fan_out, seed: sd } => {
            let sd = seed(sd);
            let mode = match mode {
                FanMode::FanIn => quote!(#s::FanMode::FanIn),
                FanMode::FanOut => quote!(#s::FanMode::FanOut),
                FanMode::FanAvg => quote!(#s::FanMode::FanAvg),
            };
            let dist = match distribution {
                Distribution::TruncatedNormal => quote!(#s::Distribution::TruncatedNormal),
                Distribution::UntruncatedNormal => quote!(#s::Distribution::UntruncatedNormal),
                Distribution::Uniform => quote!(#s::Distribution::Uniform),
            };
            quote!(#p::VarianceScaling { scale: #scale, mode: #mode, distribution: #dist, fan_in: #fan_in, fan_out: #fan_out, seed: #sd })
        }
        InitKind::Orthogonal { gain, rows, cols, seed: sd } => {
            let sd = seed(sd);
            quote!(#p::Orthogonal { gain: #gain, rows: #rows, cols: #cols, seed: #sd })
        }
        InitKind::Identity { gain, rows, cols } => quote!(#p::Identity { gain: #gain, rows: #rows, cols: #cols }),
        InitKind::ForgetBias { units } => quote!(#p::ForgetBias { units: #units }),
    }
}

/// `l1`, `l2` of a regularizer as emitted code.
fn penalty_tokens(p: Penalty) -> TokenStream {
    let (l1, l2) = (p.l1, p.l2);
    quote!(::modelc::__private::regularize::Penalty { l1: #l1, l2: #l2 })
}

/// The regularization and constraint consts of the `Network` impl, each emitted only when the model
/// uses it (the runtime's defaults are empty lists: a model without them pays nothing).
fn regularization_items(plan: &Plan) -> TokenStream {
    let r = quote!(::modelc::__private::regularize);
    let weights: Vec<TokenStream> = plan
        .params
        .iter()
        .filter(|s| s.trainable)
        .filter_map(|s| {
            let (offset, len, pen) = (s.offset, s.len, penalty_tokens(s.regularizer?));
            Some(quote!(#r::WeightPenalty { offset: #offset, len: #len, penalty: #pen }))
        })
        .collect();
    let constraints: Vec<TokenStream> = plan
        .params
        .iter()
        .filter(|s| s.trainable)
        .filter_map(|s| {
            let c = constraint_tokens(s.constraint.as_ref()?, s.shape.len());
            let (offset, dims) = (s.offset, &s.shape);
            Some(quote!(#r::ParamConstraint { offset: #offset, shape: &[#(#dims),*], constraint: #c }))
        })
        .collect();
    let mut out = TokenStream::new();
    if !weights.is_empty() {
        out.extend(quote!(const WEIGHT_PENALTIES: &'static [#r::WeightPenalty] = &[#(#weights),*];));
    }
    if !constraints.is_empty() {
        out.extend(quote!(const CONSTRAINTS: &'static [#r::ParamConstraint] = &[#(#constraints),*];));
    }
    out
}

/// A constraint of a weight of rank `rank` as emitted code.
fn constraint_tokens(c: &ConstraintSpec, rank: usize) -> TokenStream {
    let r = quote!(::modelc::__private::regularize::Constraint);
    let axes = c.axes(rank);
    match *c {
        ConstraintSpec::NonNeg => quote!(#r::NonNeg),
        ConstraintSpec::MaxNorm { max_value, .. } => quote!(#r::MaxNorm { max_value: #max_value, axes: &[#(#axes),*] }),
        ConstraintSpec::UnitNorm { .. } => quote!(#r::UnitNorm { axes: &[#(#axes),*] }),
        ConstraintSpec::MinMaxNorm { min_value, max_value, rate, .. } => {
            quote!(#r::MinMaxNorm { min_value: #min_value, max_value: #max_value, rate: #rate, axes: &[#(#axes),*] })
        }
    }
}

fn items(sig: &Signature, plan: Option<&Plan>) -> TokenStream {
    let p = quote!(::modelc::__private);
    let nd = quote!(#p::ndarray);
    let Signature { attrs, vis, name, .. } = sig;
    // `#[dtype_policy = "mixed_bfloat16"]`: the policy, settled on this CPU (`MODELC_BF16` read).
    let set_policy = sig
        .mixed_bfloat16
        .then(|| quote!(let _ = #p::precision::set_dtype_policy(&mut __model, #p::precision::DTypePolicy::MixedBfloat16);));
    // Blamed on the model name, resolved at the call site: the items declare locals (`__ws`, `batch`) that
    // kernel code emitted with `quote!` must see, even when `model!` is re-invoked by a callback macro.
    let span = proc_macro2::Span::call_site().located_at(name.span());
    let inputs_ty = format_ident!("{}Inputs", name);
    let outputs_ty = format_ident!("{}Outputs", name);
    let targets_ty = format_ident!("{}Targets", name);
    let per_output_ty = format_ident!("{}PerOutput", name);
    let losses_ty = format_ident!("{}Losses", name);
    let name_str = name.to_string();

    let in_names: Vec<&Ident> = sig.inputs.iter().map(|i| &i.0).collect();
    let in_types: Vec<TokenStream> = sig
        .inputs
        .iter()
        .map(|(_, dims, dt)| {
            let d = rank_dim(dims.len() + 1);
            let (t, _) = dtype_tokens(*dt);
            quote!(#nd::ArrayView<'a, #t, #d>)
        })
        .collect();
    // The same element types and ranks, owned: the fields of `<Model>InputArrays`.
    let in_owned: Vec<TokenStream> = sig
        .inputs
        .iter()
        .map(|(_, dims, dt)| {
            let d = rank_dim(dims.len() + 1);
            let (t, _) = dtype_tokens(*dt);
            quote!(#nd::Array<#t, #d>)
        })
        .collect();
    let in_docs: Vec<String> = sig.inputs.iter().map(|(n, dims, _)| format!("Input `{n}`, shape {}.", Shape(dims.clone()))).collect();
    let out_names: Vec<&Ident> = sig.outputs.iter().map(|o| &o.0).collect();
    let out_idx: Vec<usize> = (0..sig.outputs.len()).collect();
    // Per-sample rank of each output: known, or guessed for a stub from the layers that feed it.
    let out_ranks: Vec<usize> = sig
        .outputs
        .iter()
        .enumerate()
        .map(|(i, (_, s))| s.as_ref().map(Shape::rank).or_else(|| sig.output_ranks.get(i).copied()).unwrap_or(1))
        .collect();
    let out_dims: Vec<TokenStream> = out_ranks.iter().map(|r| rank_dim(r + 1)).collect();
    // `Dim([batch, d1, ...])` per output, the shape `predict_into` gives it (zeros in a stub, which never runs).
    let out_shapes: Vec<TokenStream> = sig
        .outputs
        .iter()
        .zip(&out_ranks)
        .map(|((_, s), &rank)| {
            let dims = s.as_ref().map(|s| s.0.clone()).unwrap_or_else(|| vec![0; rank]);
            quote!(#nd::Dim([__batch, #(#dims),*]))
        })
        .collect();
    let out_docs: Vec<String> = sig
        .outputs
        .iter()
        .map(|(n, s)| format!("Output `{n}`, shape {}.", s.as_ref().map(Shape::keras).unwrap_or_else(|| "unknown".into())))
        .collect();
    // Targets: the output's own shape in f32, or (`as i32 target`) one class id per row: the
    // output's shape without its last axis.
    let target_types: Vec<TokenStream> = out_ranks
        .iter()
        .enumerate()
        .map(|(i, &rank)| match sig.targets.get(i) {
            Some(DType::I32) => {
                let d = rank_dim(rank);
                quote!(#nd::ArrayView<'a, i32, #d>)
            }
            _ => {
                let d = rank_dim(rank + 1);
                quote!(#nd::ArrayView<'a, f32, #d>)
            }
        })
        .collect();
    let target_owned: Vec<TokenStream> = out_ranks
        .iter()
        .enumerate()
        .map(|(i, &rank)| match sig.targets.get(i) {
            Some(DType::I32) => {
                let d = rank_dim(rank);
                quote!(#nd::Array<i32, #d>)
            }
            _ => {
                let d = rank_dim(rank + 1);
                quote!(#nd::Array<f32, #d>)
            }
        })
        .collect();
    let target_docs: Vec<String> = sig
        .outputs
        .iter()
        .enumerate()
        .map(|(i, (n, s))| match (sig.targets.get(i), s) {
            (Some(DType::I32), Some(s)) => {
                let ids = Shape(s.0.split_last().map(|(_, rest)| rest.to_vec()).unwrap_or_default());
                format!("Target of output `{n}`: class ids in `0..{}`, shape {}.", s.0.last().copied().unwrap_or(0), ids.keras())
            }
            (_, s) => format!("Target of output `{n}`, shape {}.", s.as_ref().map(Shape::keras).unwrap_or_else(|| "unknown".into())),
        })
        .collect();

    let doc_inputs =
        format!("Inputs of [`{name}`]: one view per input, batch first. Named fields, so inputs cannot be passed in the wrong order.");
    let doc_outputs =
        format!("Outputs of [`{name}`]: one array per output, batch first. Also the type of output gradients passed to `backward`.");
    let doc_targets = format!("Training targets of [`{name}`]: one view per output, the output's shape.");
    let input_arrays_ty = format_ident!("{}InputArrays", name);
    let target_arrays_ty = format_ident!("{}TargetArrays", name);
    let doc_input_arrays = format!(
        "Inputs of [`{name}`] as owned arrays, batch first: what a streamed source yields (`Batch::inputs`, \
         `predict_stream`). `view()` gives the [`{inputs_ty}`] they hold."
    );
    let doc_target_arrays = format!(
        "Training targets of [`{name}`] as owned arrays, batch first: what a streamed source yields (`Batch::targets`). \
         `view()` gives the [`{targets_ty}`] they hold."
    );
    let in_marker_init = sig.inputs.is_empty().then(|| quote!(__marker: ::core::marker::PhantomData,));
    let out_marker_init = sig.outputs.is_empty().then(|| quote!(__marker: ::core::marker::PhantomData,));
    let doc_per = format!("One value per output of [`{name}`], by output name: losses, loss weights, metrics.");
    let doc_losses = format!("The loss of each output of [`{name}`].");
    // Only a stub can lack inputs or outputs: a marker keeps its generic parameters used, so the failed
    // model's one error is not followed by "parameter is never used" errors.
    let in_marker = sig.inputs.is_empty().then(|| quote!(#[doc(hidden)] pub __marker: ::core::marker::PhantomData<&'a ()>,));
    let out_marker = sig.outputs.is_empty().then(|| quote!(#[doc(hidden)] pub __marker: ::core::marker::PhantomData<&'a ()>,));
    let per_marker = sig.outputs.is_empty().then(|| quote!(#[doc(hidden)] pub __marker: ::core::marker::PhantomData<T>,));

    let structs = quote_spanned! {span=>
        #(#attrs)*
        #vis struct #name {
            __state: #p::network::State,
        }

        #[doc = #doc_inputs]
        #[derive(Clone, Copy, Debug)]
        #[allow(dead_code)]
        #vis struct #inputs_ty<'a> {
            #( #[doc = #in_docs] pub #in_names: #in_types, )*
            #in_marker
        }

        #[doc = #doc_outputs]
        #[derive(Clone, Debug, PartialEq)]
        #[allow(dead_code)]
        #vis struct #outputs_ty {
            #( #[doc = #out_docs] pub #out_names: #nd::Array<f32, #out_dims>, )*
        }

        #[doc = #doc_targets]
        #[derive(Clone, Debug)]
        #[allow(dead_code)]
        #vis struct #targets_ty<'a> {
            #( #[doc = #target_docs] pub #out_names: #target_types, )*
            #out_marker
        }

        #[doc = #doc_input_arrays]
        #[derive(Clone, Debug)]
        #[allow(dead_code)]
        #vis struct #input_arrays_ty {
            #( #[doc = #in_docs] pub #in_names: #in_owned, )*
        }

        #[allow(dead_code)]
        impl #input_arrays_ty {
            /// The views the model reads.
            pub fn view(&self) -> #inputs_ty<'_> {
                #inputs_ty { #( #in_names: self.#in_names.view(), )* #in_marker_init }
            }
        }

        impl #p::stream::AsInputs<#name> for #input_arrays_ty {
            fn as_inputs(&self) -> #inputs_ty<'_> {
                self.view()
            }
        }

        impl<'a> #p::stream::AsInputs<#name> for #inputs_ty<'a> {
            fn as_inputs(&self) -> #inputs_ty<'_> {
                #inputs_ty { #( #in_names: self.#in_names.view(), )* #in_marker_init }
            }
        }

        #[doc = #doc_target_arrays]
        #[derive(Clone, Debug)]
        #[allow(dead_code)]
        #vis struct #target_arrays_ty {
            #( #[doc = #target_docs] pub #out_names: #target_owned, )*
        }

        #[allow(dead_code)]
        impl #target_arrays_ty {
            /// The views the losses read.
            pub fn view(&self) -> #targets_ty<'_> {
                #targets_ty { #( #out_names: self.#out_names.view(), )* #out_marker_init }
            }
        }

        impl #p::stream::AsTargets<#name> for #target_arrays_ty {
            fn as_targets(&self) -> #targets_ty<'_> {
                self.view()
            }
        }

        impl<'a> #p::stream::AsTargets<#name> for #targets_ty<'a> {
            fn as_targets(&self) -> #targets_ty<'_> {
                #targets_ty { #( #out_names: self.#out_names.view(), )* #out_marker_init }
            }
        }

        #[doc = #doc_per]
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        #[allow(dead_code)]
        #vis struct #per_output_ty<T> {
            #( #[doc = #out_docs] pub #out_names: T, )*
            #per_marker
        }

        #[doc = #doc_losses]
        #[allow(dead_code)]
        #vis type #losses_ty = #per_output_ty<#p::loss::Loss>;
    };

    let network = network_impl(sig, plan);

    let inherent = quote_spanned! {span=>
        #[allow(dead_code)]
        impl #name {
            /// The Keras-style summary table, computed at compile time.
            pub const SUMMARY: &'static str = <Self as #p::network::Network>::SUMMARY;
            /// The model graph in Graphviz DOT, computed at compile time.
            pub const DOT: &'static str = <Self as #p::network::Network>::DOT;

            /// A model with Keras-default initial weights (Glorot-uniform kernels, zero biases) drawn from `seed`.
            pub fn new(__seed: u64) -> Self {
                #[allow(unused_mut)]
                let mut __model = Self { __state: #p::model::new_state::<Self>(__seed) };
                #set_policy
                __model
            }

            /// Runs the model in inference mode on a batch.
            pub fn predict(&mut self, __inputs: &#inputs_ty<'_>) -> #p::Result<#outputs_ty> {
                #p::model::predict(self, __inputs)
            }

            /// Runs the model in inference mode, writing into `outputs`: its arrays are reused when they already
            /// have this batch's shapes, so repeated calls with one batch size allocate nothing.
            pub fn predict_into(&mut self, __inputs: &#inputs_ty<'_>, __outputs: &mut #outputs_ty) -> #p::Result<()> {
                let __batch = #p::model::predict_staged(self, __inputs)?;
                #( #p::support::fill_output(&mut __outputs.#out_names, #p::model::output_slice::<Self>(&self.__state.infer, #out_idx)?, #out_shapes); )*
                ::core::result::Result::Ok(())
            }

            /// Runs the forward pass, keeping the activations for `backward`.
            pub fn forward(&mut self, __inputs: &#inputs_ty<'_>, __training: bool) -> #p::Result<#outputs_ty> {
                #p::model::forward(self, __inputs, __training)
            }

            /// Back-propagates `d_outputs` (the gradient of a scalar with respect to each output) through
            /// the last forward pass and returns the gradient of every parameter.
            pub fn backward(&mut self, __d_outputs: &#outputs_ty) -> #p::Result<#p::model::Gradients> {
                #p::model::backward(self, __d_outputs)
            }

            /// Configures training, like Keras' `compile`: an optimizer, one loss per output, metrics for every output.
            pub fn compile<O: #p::optim::Optimizer>(&mut self, __optimizer: O, __losses: #losses_ty, __metrics: &[#p::metrics::Metric]) -> #p::train::Trainer<'_, Self, O> {
                #p::train::compile(self, __optimizer, __losses, __metrics)
            }

            /// The parameter called `name` (`"dense_1/kernel"`), in Keras layout.
            pub fn param(&self, __name: &str) -> #p::Result<#nd::ArrayViewD<'_, f32>> {
                #p::model::param(self, __name)
            }

            /// Sets the parameter called `name` from an array of its exact shape.
            pub fn set_param<D: #nd::Dimension>(&mut self, __name: &str, __value: #nd::ArrayView<'_, f32, D>) -> #p::Result<()> {
                #p::model::set_param(self, __name, __value.into_dyn())
            }

            /// Every parameter, flat, in `PARAMS` order.
            pub fn params(&self) -> &[f32] {
                &self.__state.params
            }

            /// Every parameter, flat and mutable.
            pub fn params_mut(&mut self) -> &mut [f32] {
                self.__state.touch_params();
                &mut self.__state.params
            }

            /// Saves the weights as safetensors with Keras names (written to a temporary file, then renamed).
            pub fn save(&self, __path: impl ::core::convert::AsRef<::std::path::Path>) -> #p::Result<()> {
                #p::io::save(self, __path)
            }

            /// Loads weights saved by `save` (or by Keras under the same names), checking every name and shape.
            pub fn load(&mut self, __path: impl ::core::convert::AsRef<::std::path::Path>) -> #p::Result<()> {
                #p::io::load(self, __path)
            }

            /// Writes the model as an ONNX file (opset 17, inference mode, dynamic batch, parameters under
            /// their weight names), atomically; `Err` names a layer that cannot be exported.
            pub fn save_onnx(&self, __path: impl ::core::convert::AsRef<::std::path::Path>) -> #p::Result<()> {
                #p::onnx::save(self, __path)
            }

            /// The summary table (also `SUMMARY`).
            pub fn summary(&self) -> &'static str {
                Self::SUMMARY
            }

            /// Number of parameter elements.
            pub fn count_params(&self) -> usize {
                <Self as #p::network::Network>::PARAM_COUNT
            }

            /// Sets the dtype policy, like Keras' `dtype="mixed_bfloat16"`: under `MixedBfloat16` the weights
            /// stay f32 and the matrix products run in bf16 with f32 sums. Returns the policy in effect and why
            /// (f32 on a CPU without AVX512_BF16).
            pub fn set_dtype_policy(&mut self, __policy: #p::precision::DTypePolicy) -> #p::precision::PolicyStatus {
                #p::precision::set_dtype_policy(self, __policy)
            }

            /// The dtype policy asked for, the one in effect and why.
            pub fn dtype_policy(&self) -> #p::precision::PolicyStatus {
                self.__state.dtype_policy
            }
        }

        impl ::core::fmt::Debug for #name {
            fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                __f.debug_struct(#name_str).field("params", &<Self as #p::network::Network>::PARAM_COUNT).finish()
            }
        }

        impl ::core::clone::Clone for #name {
            fn clone(&self) -> Self {
                let mut __state = #p::network::State::default();
                __state.params = self.__state.params.clone();
                __state.dtype_policy = self.__state.dtype_policy;
                Self { __state }
            }
        }
    };

    quote! {
        #structs
        #network
        #inherent
    }
}

fn network_impl(sig: &Signature, plan: Option<&Plan>) -> TokenStream {
    let p = quote!(::modelc::__private);
    let nd = quote!(#p::ndarray);
    let name = &sig.name;
    // Blamed on the model name, resolved at the call site: the items declare locals (`__ws`, `batch`) that
    // kernel code emitted with `quote!` must see, even when `model!` is re-invoked by a callback macro.
    let span = proc_macro2::Span::call_site().located_at(name.span());
    let inputs_ty = format_ident!("{}Inputs", name);
    let outputs_ty = format_ident!("{}Outputs", name);
    let targets_ty = format_ident!("{}Targets", name);
    let per_output_ty = format_ident!("{}PerOutput", name);
    let name_str = name.to_string();

    let in_specs: Vec<TokenStream> = sig
        .inputs
        .iter()
        .map(|(n, dims, dt)| {
            let n = n.to_string();
            let (_, d) = dtype_tokens(*dt);
            quote!(#p::spec::TensorSpec { name: #n, shape: &[#(#dims),*], dtype: #d })
        })
        .collect();
    let out_specs: Vec<TokenStream> = sig
        .outputs
        .iter()
        .map(|(n, s)| {
            let n = n.to_string();
            let dims = s.as_ref().map(|s| s.0.clone()).unwrap_or_default();
            quote!(#p::spec::TensorSpec { name: #n, shape: &[#(#dims),*], dtype: #p::spec::DType::F32 })
        })
        .collect();
    let out_names: Vec<&Ident> = sig.outputs.iter().map(|o| &o.0).collect();
    let out_idx: Vec<usize> = (0..sig.outputs.len()).collect();
    let in_idx: Vec<usize> = (0..sig.inputs.len()).collect();
    let in_names: Vec<&Ident> = sig.inputs.iter().map(|i| &i.0).collect();

    let Some(plan) = plan else {
        // Stub: the same items, nothing computed, never called (the crate does not compile).
        return quote_spanned! {span=>
            impl #p::network::Network for #name {
                const NAME: &'static str = #name_str;
                const INPUTS: &'static [#p::spec::TensorSpec] = &[#(#in_specs),*];
                const OUTPUTS: &'static [#p::spec::TensorSpec] = &[#(#out_specs),*];
                const OUTPUT_INFO: &'static [#p::spec::OutputInfo] = &[];
                const PARAMS: &'static [#p::spec::ParamSpec] = &[];
                const PARAM_COUNT: usize = 0;
                const BUFFERS: &'static [usize] = &[];
                const SCRATCH: &'static [usize] = &[];
                const INPUT_BUFFERS: &'static [usize] = &[];
                const OUTPUT_BUFFERS: &'static [usize] = &[];
                const SUMMARY: &'static str = "";
                const DOT: &'static str = "";
                type Inputs<'a> = #inputs_ty<'a>;
                type Outputs = #outputs_ty;
                type Targets<'a> = #targets_ty<'a>;
                type PerOutput<T> = #per_output_ty<T>;
                fn state(&self) -> &#p::network::State { &self.__state }
                fn state_mut(&mut self) -> &mut #p::network::State { self.__state.touch_params(); &mut self.__state }
                fn visit_inputs<'a>(_: &'a #inputs_ty<'_>, _: &mut dyn FnMut(usize, #p::network::Input<'a>) -> #p::Result<()>) -> #p::Result<()> { ::core::unreachable!() }
                fn visit_targets<'a>(_: &'a #targets_ty<'_>, _: &mut dyn FnMut(usize, #p::network::Input<'a>) -> #p::Result<()>) -> #p::Result<()> { ::core::unreachable!() }
                fn visit_outputs<'a>(_: &'a #outputs_ty, _: &mut dyn FnMut(usize, #nd::ArrayViewD<'a, f32>) -> #p::Result<()>) -> #p::Result<()> { ::core::unreachable!() }
                fn outputs_from(_: usize, _: #p::Vec<#p::Vec<f32>>) -> #outputs_ty { ::core::unreachable!() }
                fn per_output<T: Clone>(_: &#per_output_ty<T>) -> #p::Vec<T> { ::core::unreachable!() }
                fn forward(_: &[f32], _: &mut #p::workspace::Workspace) { ::core::unreachable!() }
                fn backward(_: &[f32], _: &mut #p::workspace::Workspace, _: &mut [f32]) { ::core::unreachable!() }
            }
        };
    };

    let target_specs: Vec<TokenStream> = plan
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let n = o.name.to_string();
            let dims = &o.shape.0;
            match sig.targets.get(i) {
                Some(DType::I32) => {
                    let ids = dims.split_last().map(|(_, rest)| rest).unwrap_or_default();
                    quote!(#p::spec::TensorSpec { name: #n, shape: &[#(#ids),*], dtype: #p::spec::DType::I32 })
                }
                _ => quote!(#p::spec::TensorSpec { name: #n, shape: &[#(#dims),*], dtype: #p::spec::DType::F32 }),
            }
        })
        .collect();
    let info: Vec<TokenStream> = plan
        .outputs
        .iter()
        .map(|o| {
            let a = o.fusable.tokens();
            quote!(#p::spec::OutputInfo { fusable_activation: #a })
        })
        .collect();
    let params: Vec<TokenStream> = plan
        .params
        .iter()
        .map(|s| {
            let (n, dims, off, init, tr, st) = (&s.name, &s.shape, s.offset, init_tokens(s.init), s.trainable, s.statistic);
            quote!(#p::spec::ParamSpec { name: #n, shape: &[#(#dims),*], offset: #off, init: #init, trainable: #tr, statistic: #st })
        })
        .collect();
    let output_masks: Vec<TokenStream> = plan
        .outputs
        .iter()
        .map(|o| match o.mask {
            Some(m) => {
                let i = plan.inference.buffer_of.get(m).copied().flatten().unwrap_or(0);
                quote!(::core::option::Option::Some((#m, #i)))
            }
            None => quote!(::core::option::Option::None),
        })
        .collect();
    let param_count = plan.param_count;
    let buffers = &plan.buffers;
    let scratch = &plan.scratch;
    let grad_zero = &plan.grad_zero;
    let param_grad_zero: Vec<TokenStream> = plan
        .param_grad_zero
        .iter()
        .map(|r| {
            let (offset, len) = (r.start, r.len());
            quote!((#offset, #len))
        })
        .collect();
    let in_bufs: Vec<usize> = plan.inputs.iter().map(|i| i.buf).collect();
    let out_bufs: Vec<usize> = plan.outputs.iter().map(|o| o.buf).collect();
    let summary = meta::summary(plan);
    let dot = meta::dot(plan);
    let out_shapes: Vec<TokenStream> = plan
        .outputs
        .iter()
        .map(|o| {
            let dims = &o.shape.0;
            quote!(#nd::Dim([__batch, #(#dims),*]))
        })
        .collect();
    let forward = forward_body(plan, false, |_, step| step.cx.clone());
    let forward_inference = forward_body(plan, true, |k, step| plan.inference.step_cx(k, &step.cx));
    let infer_buffers = &plan.inference.buffers;
    let infer_scratch = &plan.inference.scratch;
    let infer_in_bufs = &plan.inference.inputs;
    let infer_out_bufs = &plan.inference.outputs;
    let (backward, ready) = backward_body(plan);
    let ready: Vec<TokenStream> = ready.iter().map(|(offset, len)| quote!((#offset, #len))).collect();
    let update = update_body(plan);
    let id_bounds = id_bounds(plan);
    let regularization = regularization_items(plan);
    let onnx = crate::onnx::graph_tokens(plan);

    quote_spanned! {span=>
        impl #p::network::Network for #name {
            const NAME: &'static str = #name_str;
            const INPUTS: &'static [#p::spec::TensorSpec] = &[#(#in_specs),*];
            const OUTPUTS: &'static [#p::spec::TensorSpec] = &[#(#out_specs),*];
            const TARGETS: &'static [#p::spec::TensorSpec] = &[#(#target_specs),*];
            const OUTPUT_INFO: &'static [#p::spec::OutputInfo] = &[#(#info),*];
            const PARAMS: &'static [#p::spec::ParamSpec] = &[#(#params),*];
            const PARAM_COUNT: usize = #param_count;
            const BUFFERS: &'static [usize] = &[#(#buffers),*];
            const SCRATCH: &'static [usize] = &[#(#scratch),*];
            const INPUT_BUFFERS: &'static [usize] = &[#(#in_bufs),*];
            const OUTPUT_BUFFERS: &'static [usize] = &[#(#out_bufs),*];
            const INFER_BUFFERS: &'static [usize] = &[#(#infer_buffers),*];
            const INFER_SCRATCH: &'static [usize] = &[#(#infer_scratch),*];
            const INFER_INPUT_BUFFERS: &'static [usize] = &[#(#infer_in_bufs),*];
            const INFER_OUTPUT_BUFFERS: &'static [usize] = &[#(#infer_out_bufs),*];
            const ID_BOUNDS: &'static [#p::spec::IdBound] = &[#(#id_bounds),*];
            const OUTPUT_MASKS: &'static [::core::option::Option<(usize, usize)>] = &[#(#output_masks),*];
            const GRAD_ZERO: ::core::option::Option<&'static [usize]> = ::core::option::Option::Some(&[#(#grad_zero),*]);
            const PARAM_GRAD_ZERO: ::core::option::Option<&'static [(usize, usize)]> = ::core::option::Option::Some(&[#(#param_grad_zero),*]);
            #regularization
            const SUMMARY: &'static str = #summary;
            const DOT: &'static str = #dot;
            const ONNX: #p::onnx::Graph = #onnx;
            type Inputs<'a> = #inputs_ty<'a>;
            type Outputs = #outputs_ty;
            type Targets<'a> = #targets_ty<'a>;
            type PerOutput<T> = #per_output_ty<T>;

            fn state(&self) -> &#p::network::State {
                &self.__state
            }

            fn state_mut(&mut self) -> &mut #p::network::State {
                self.__state.touch_params();
                &mut self.__state
            }

            fn state_for_inference(&mut self) -> &mut #p::network::State {
                &mut self.__state
            }

            fn visit_inputs<'a>(__inputs: &'a #inputs_ty<'_>, __f: &mut dyn FnMut(usize, #p::network::Input<'a>) -> #p::Result<()>) -> #p::Result<()> {
                #( __f(#in_idx, #p::network::Input::new(&__inputs.#in_names))?; )*
                ::core::result::Result::Ok(())
            }

            fn visit_targets<'a>(__targets: &'a #targets_ty<'_>, __f: &mut dyn FnMut(usize, #p::network::Input<'a>) -> #p::Result<()>) -> #p::Result<()> {
                #( __f(#out_idx, #p::network::Input::new(&__targets.#out_names))?; )*
                ::core::result::Result::Ok(())
            }

            fn visit_outputs<'a>(__outputs: &'a #outputs_ty, __f: &mut dyn FnMut(usize, #nd::ArrayViewD<'a, f32>) -> #p::Result<()>) -> #p::Result<()> {
                #( __f(#out_idx, __outputs.#out_names.view().into_dyn())?; )*
                ::core::result::Result::Ok(())
            }

            fn outputs_from(__batch: usize, __data: #p::Vec<#p::Vec<f32>>) -> #outputs_ty {
                let mut __it = __data.into_iter();
                #outputs_ty { #( #out_names: #p::support::array_from(__it.next(), #out_shapes), )* }
            }

            fn per_output<T: Clone>(__values: &#per_output_ty<T>) -> #p::Vec<T> {
                ::std::vec![#( __values.#out_names.clone() ),*]
            }

            #[allow(unused_variables, clippy::all)]
            fn forward(__p: &[f32], __ws: &mut #p::workspace::Workspace) {
                let __b = __ws.batch;
                #forward
            }

            const INFER_INPUTS_IN_PLACE: bool = true;

            #[allow(unused_variables, clippy::all)]
            fn forward_inference(__p: &[f32], __ws: &mut #p::workspace::Workspace, __x: &[::core::option::Option<&[f32]>]) {
                let __b = __ws.batch;
                #forward_inference
            }

            fn backward(__p: &[f32], __ws: &mut #p::workspace::Workspace, __g: &mut [f32]) {
                <Self as #p::network::Network>::backward_hooked(__p, __ws, __g, &mut |_, _| {})
            }

            const BACKWARD_READY: &'static [(usize, usize)] = &[#(#ready),*];

            #[allow(unused_variables, unused_mut, clippy::all)]
            fn backward_hooked(__p: &[f32], __ws: &mut #p::workspace::Workspace, __g: &mut [f32], __ready: &mut dyn ::core::ops::FnMut(&[f32], usize)) {
                let __b = __ws.batch;
                #backward
            }

            #[allow(unused_variables, clippy::all)]
            fn update_state(__p: &mut [f32], __ws: &#p::workspace::Workspace) {
                let __b = __ws.batch;
                #update
            }
        }
    }
}

/// `IdBound`s of the model inputs read by layers with an id limit (`Embedding`).
fn id_bounds(plan: &Plan) -> Vec<TokenStream> {
    let m = &plan.typed.model;
    let mut out = Vec::new();
    for step in &plan.steps {
        let Some(layer) = m.layers.get(step.layer.0) else { continue };
        let Some(limit) = layer.kind.as_ref().and_then(LayerDef::id_limit) else { continue };
        let operand = m.calls.get(step.call.0).and_then(|c| c.inputs.first());
        let Some(input) = m.inputs.iter().position(|i| Some(&i.value) == operand) else { continue };
        let name = &layer.name;
        out.push(quote!(::modelc::__private::spec::IdBound { input: #input, limit: #limit, layer: #name }));
    }
    out
}

// After a training forward, in schedule order: each stateful step with its parameters bound mutably.
fn update_body(plan: &Plan) -> TokenStream {
    let mut out = TokenStream::new();
    for step in &plan.steps {
        let Some(kind) = plan.typed.model.call_kind_of(step.call) else { continue };
        let n_params = plan.layer_params.get(step.layer.0).map(|r| r.len()).unwrap_or(0);
        let body = kind.update(&step.cx.emit_cx(n_params));
        if body.is_empty() {
            continue;
        }
        let params = bind_slices(plan, step.layer.0, &quote!(__p), "__p");
        let doc = step_comment(plan, step);
        out.extend(quote! {
            {
                let _ = #doc;
                #params
                #body
            }
        });
    }
    out
}

/// Binds `__p0, __p1, ...` to the layer's parameter slices.
fn bind_params(plan: &Plan, layer: usize) -> TokenStream {
    let range = plan.layer_params.get(layer).cloned().unwrap_or(0..0);
    let mut out = TokenStream::new();
    for (i, s) in plan.params.get(range).unwrap_or(&[]).iter().enumerate() {
        let id = format_ident!("__p{}", i);
        let (a, b) = (s.offset, s.offset + s.len);
        out.extend(quote!(let #id = &__p[#a..#b];));
    }
    out
}

/// Binds `__g0, __g1, ...` to the layer's disjoint parameter-gradient slices.
fn bind_grads(plan: &Plan, layer: usize) -> TokenStream {
    bind_slices(plan, layer, &quote!(__g), "__g")
}

/// Binds `{prefix}0, {prefix}1, ...` to the layer's disjoint, mutable slices of the flat buffer `buf`.
fn bind_slices(plan: &Plan, layer: usize, buf: &TokenStream, prefix: &str) -> TokenStream {
    let range = plan.layer_params.get(layer).cloned().unwrap_or(0..0);
    let slots = plan.params.get(range).unwrap_or(&[]);
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else { return TokenStream::new() };
    let (a, b) = (first.offset, last.offset + last.len);
    let ids: Vec<Ident> = (0..slots.len()).map(|i| format_ident!("{}{}", prefix, i)).collect();
    let lens: Vec<usize> = slots.iter().map(|s| s.len).collect();
    quote!(let [#(#ids),*] = ::modelc::__private::support::split_mut(&mut #buf[#a..#b], [#(#lens),*]);)
}

fn step_comment(plan: &Plan, step: &crate::plan::Step) -> String {
    let m = &plan.typed.model;
    let layer = m.layers.get(step.layer.0);
    let ins: Vec<String> = m.calls.get(step.call.0).map(|c| c.inputs.iter().map(|v| m.value_name(*v)).collect()).unwrap_or_default();
    format!("{} ({}) on {}", layer.map(|l| l.name.as_str()).unwrap_or("?"), layer.map(|l| l.keras_type).unwrap_or("?"), ins.join(", "))
}

// Each step expands to: take the output buffer, bind `__y` to exactly the output's part of it and the
// parameters, run the layer's kernels, put the buffer back. `cx_of` gives each step's buffers: the
// training plan's (one per value) or the inference plan's (shared by liveness, so possibly longer).
// `inference`: this is the inference forward (`forward_inference`): model inputs are read from `__x`
// where the runtime passes them, and no backward follows, so layers keep nothing for it.
fn forward_body(plan: &Plan, inference: bool, cx_of: impl Fn(usize, &crate::plan::Step) -> crate::plan::StepCx) -> TokenStream {
    let mut out = TokenStream::new();
    for (k, step) in plan.steps.iter().enumerate() {
        let Some(kind) = plan.typed.model.call_kind_of(step.call) else { continue };
        let n_params = plan.layer_params.get(step.layer.0).map(|r| r.len()).unwrap_or(0);
        let cx = crate::layers::EmitCx { inference, ..cx_of(k, step).emit_cx(n_params) };
        let (y, n) = (cx.output.buf, cx.output.shape.numel());
        let params = bind_params(plan, step.layer.0);
        let body = kind.forward(&cx);
        let doc = step_comment(plan, step);
        // Keras' activity regularizer: the penalty of the output, divided by the batch size.
        let activity = plan.typed.model.layers.get(step.layer.0).and_then(|l| l.activity).map(|pen| {
            let pen = penalty_tokens(pen);
            quote!(__ws.activity_penalty += ::modelc::__private::regularize::activity_penalty(&__yv[..__b * #n], #pen, __b);)
        });
        let (take, bind, put) = extra_results(&cx.extra, quote!(values), "__y");
        let (mtake, mbind, mput) = mask_out(&cx_of(k, step));
        let f32_scope = float32_scope(plan, step.layer.0);
        out.extend(quote! {
            {
                let _ = #doc;
                let mut __yv = ::core::mem::take(&mut __ws.values[#y]);
                #take
                #mtake
                {
                    let __y = &mut __yv[..__b * #n];
                    #bind
                    #mbind
                    #params
                    #f32_scope
                    #body
                }
                #activity
                __ws.values[#y] = __yv;
                #put
                #mput
            }
        });
    }
    if plan.typed.model.layers.iter().any(|l| l.activity.is_some()) {
        return quote!(__ws.activity_penalty = 0.0; #out);
    }
    out
}

// The mask a step writes (docs/masks.md): take its buffer out of `__ws.values`, bind `__m` to exactly
// it, and put it back after the layer's code. For a merge (`MaskRule::Any`) the framework fills it with
// the OR of the operands' masks before the layer runs, for a concatenation along the steps
// (`MaskRule::Concat`) with the operands' masks joined; a producer writes it itself.
fn mask_out(cx: &crate::plan::StepCx) -> (TokenStream, TokenStream, TokenStream) {
    use crate::layers::MaskRule;
    let Some((m, rule)) = &cx.mask_out else { return (TokenStream::new(), TokenStream::new(), TokenStream::new()) };
    let (buf, n) = (m.buf, m.shape.numel());
    let slice = |o: &crate::layers::Operand| {
        let (b, l) = (o.buf, o.shape.numel());
        quote!(&__ws.values[#b][..__b * #l])
    };
    let k = quote!(::modelc::__private::kernels::masking);
    let fill = match rule {
        MaskRule::Any => {
            let ins: Vec<TokenStream> = cx.masks.iter().flatten().map(slice).collect();
            quote!(#k::any(&[#(#ins),*], __m);)
        }
        MaskRule::Concat => {
            let parts: Vec<TokenStream> = cx
                .inputs
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let steps = x.shape.lead();
                    let m = match cx.masks.get(i).and_then(Option::as_ref) {
                        Some(o) => {
                            let s = slice(o);
                            quote!(::core::option::Option::Some(#s))
                        }
                        None => quote!(::core::option::Option::None),
                    };
                    quote!((#m, #steps))
                })
                .collect();
            quote!(#k::concat(&[#(#parts),*], __m, __b);)
        }
        _ => TokenStream::new(),
    };
    (
        quote!(let mut __mv = ::core::mem::take(&mut __ws.values[#buf]);),
        quote!(let __m = &mut __mv[..__b * #n]; #fill),
        quote!(__ws.values[#buf] = __mv;),
    )
}

// The further results of a multi-result step (`return_state = true`): take each one's buffer out of
// `__ws.<field>` (`values` in forward, `grads` in backward), bind `<prefix>1, <prefix>2, ...` to exactly
// their part of it, and put the buffers back after the layer's code.
fn extra_results(extra: &[crate::layers::Operand], field: TokenStream, prefix: &str) -> (TokenStream, TokenStream, TokenStream) {
    let (mut take, mut bind, mut put) = (TokenStream::new(), TokenStream::new(), TokenStream::new());
    for (i, r) in extra.iter().enumerate() {
        let (buf, n) = (r.buf, r.shape.numel());
        let holder = quote::format_ident!("{}v{}", prefix, i + 1);
        let name = quote::format_ident!("{}{}", prefix, i + 1);
        take.extend(quote!(let mut #holder = ::core::mem::take(&mut __ws.#field[#buf]);));
        bind.extend(quote!(let #name = &mut #holder[..__b * #n];));
        put.extend(quote!(__ws.#field[#buf] = #holder;));
    }
    (take, bind, put)
}

// Reverse order: take the output's gradient, bind parameters and their gradients, accumulate into operands.
/// For a layer written with `dtype = "float32"`: a guard that keeps its products in f32 under the
/// model's `mixed_bfloat16` policy until the end of the layer's block (Keras: a layer with its own
/// `float32` policy in a mixed model, as its mixed precision guide advises for the output layer).
fn float32_scope(plan: &Plan, layer: usize) -> Option<TokenStream> {
    plan.typed
        .model
        .layers
        .get(layer)
        .filter(|l| l.float32)
        .map(|_| quote!(let __float32 = ::modelc::__private::kernels::gemm::Bf16Scope::new(::core::option::Option::None);))
}

/// The element range of `layer`'s parameters in the flat buffer (empty for a layer without any).
fn layer_param_range(plan: &Plan, layer: usize) -> std::ops::Range<usize> {
    let range = plan.layer_params.get(layer).cloned().unwrap_or(0..0);
    let slots = plan.params.get(range).unwrap_or(&[]);
    match (slots.first(), slots.last()) {
        (Some(first), Some(last)) => first.offset..last.offset + last.len,
        _ => 0..0,
    }
}

/// The backward body, which reports each layer's parameter gradients to `__ready` once they are final:
/// after the block of the layer's last backward step (its first call in forward order; a shared layer
/// has several). Also returns the reported ranges `(offset, len)`, in report order (`BACKWARD_READY`).
fn backward_body(plan: &Plan) -> (TokenStream, Vec<(usize, usize)>) {
    let mut out = TokenStream::new();
    let mut ready = Vec::new();
    // Per layer, the index of its first step that runs backward: the last one backward reaches.
    let mut last_backward = std::collections::BTreeMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if plan.runs_backward(step) {
            last_backward.entry(step.layer.0).or_insert(i);
        }
    }
    for (i, step) in plan.steps.iter().enumerate().rev() {
        let Some(kind) = plan.typed.model.call_kind_of(step.call) else { continue };
        if !plan.runs_backward(step) {
            continue;
        }
        let params_range = layer_param_range(plan, step.layer.0);
        let report = (last_backward.get(&step.layer.0) == Some(&i) && !params_range.is_empty()).then(|| {
            let (a, b) = (params_range.start, params_range.end);
            ready.push((a, b - a));
            quote!(__ready(&__g[#a..#b], #a);)
        });
        let n_params = plan.layer_params.get(step.layer.0).map(|r| r.len()).unwrap_or(0);
        let cx = step.cx.emit_cx(n_params);
        let y = step.cx.output.buf;
        let params = bind_params(plan, step.layer.0);
        let grads = bind_grads(plan, step.layer.0);
        let body = kind.backward(&cx);
        let doc = step_comment(plan, step);
        let activity = plan.typed.model.layers.get(step.layer.0).and_then(|l| l.activity).map(|pen| {
            let (pen, n) = (penalty_tokens(pen), step.cx.output.shape.numel());
            quote!(::modelc::__private::regularize::add_activity_gradient(&__ws.values[#y][..__b * #n], &mut __dy[..__b * #n], #pen, __b);)
        });
        let (take, bind, put) = extra_results(&cx.extra, quote!(grads), "__dy");
        let f32_scope = float32_scope(plan, step.layer.0);
        out.extend(quote! {
            {
                let _ = #doc;
                let mut __dy = ::core::mem::take(&mut __ws.grads[#y]);
                #activity
                #take
                {
                    #bind
                    #params
                    #grads
                    #f32_scope
                    #body
                }
                __ws.grads[#y] = __dy;
                #put
            }
            #report
        });
    }
    (out, ready)
}
