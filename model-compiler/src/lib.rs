//! The modelc compiler as a library: `expand` turns the tokens of a `model!` invocation into Rust.
//!
//! ```text
//! TokenStream --parse--> ast::File        syntax only, every node keeps its Span
//!             --resolve-> hir::Model      names -> ids, layer table, typed arguments
//!             --build---> graph::Graph    petgraph StableGraph of Input / Call / Output nodes
//!             --infer---> infer::Typed    schedule, one shape rule per layer, errors accumulated
//!             --plan----> plan::Plan      parameter layout, activation buffers, fusion choices, and
//!                                         (memory::plan) inference buffers shared by liveness
//!             --emit----> TokenStream     structs, Network impl (forward/backward), SUMMARY, DOT
//! ```
//! Every problem is a [`diag::Diagnostic`] at the narrowest token; all of a model's problems are
//! reported together, and stub items keep the user's other code free of secondary errors.
//! Set `MODELC_DUMP=ast|hir|plan|tokens` to print a stage of each model to stderr while compiling.

pub mod ast;
pub mod diag;
pub mod emit;
pub mod graph;
pub mod hir;
pub mod import;
pub mod infer;
pub mod layers;
pub mod memory;
pub mod meta;
pub mod onnx;
pub mod parse;
pub mod plan;
pub mod resolve;
pub mod shape;
pub mod suggest;

use diag::Diagnostics;
use proc_macro2::TokenStream;

/// Expands a `model!` invocation. Never panics: every problem becomes a `compile_error!`.
pub fn expand(input: TokenStream) -> TokenStream {
    let (tokens, diags) = compile(input);
    let mut out = tokens;
    out.extend(diags.to_compile_errors());
    out
}

/// Runs the pipeline: the generated items (stubs for models with errors) and every diagnostic.
pub fn compile(input: TokenStream) -> (TokenStream, Diagnostics) {
    let mut diags = Diagnostics::new();
    let source = input.clone();
    let file = parse::parse(input, &mut diags);
    // After a syntax error, names bound by the skipped statements would cascade into "unknown tensor"
    // errors: report the syntax errors alone, and still emit every model's items (as stubs).
    let syntax_ok = diags.is_empty();
    // The invocation as written (not re-invoked by a callback with other invocations' sources).
    let first_round = file.deps.is_empty();
    let dump = std::env::var("MODELC_DUMP").unwrap_or_default();
    let mut out = TokenStream::new();
    for model in &file.models {
        if dump == "ast" {
            eprintln!("{model:#?}");
        }
        let mut local = Diagnostics::new();
        let hir = resolve::resolve(model, &file, &mut local);
        if dump == "hir" {
            eprintln!("{hir:#?}");
        }
        if let Some(external) = hir.externals.first() {
            // A model of another invocation is used as a layer: ask its callback macro for its source,
            // which re-invokes `model!` on this same input with that source prepended. The first round
            // also defines this invocation's first-round callbacks, so that another invocation that
            // needs one of these models can proceed even while this one waits (two invocations whose
            // models nest each other then meet the cycle, a clear error, rather than a missing macro).
            // The next round emits everything else.
            let mut out = if first_round { emit::first_round_callbacks(&file, &source) } else { TokenStream::new() };
            out.extend(request(external, &source));
            return (out, Diagnostics::new());
        }
        let graph = graph::build(&hir);
        let typed = infer::infer(hir, graph, &mut local);
        if local.is_empty() && syntax_ok && !typed.model.nested_failed {
            let plan = plan::plan(typed);
            if dump == "plan" {
                eprintln!("{plan:#?}");
            }
            let tokens = emit::emit(&plan, &source, first_round);
            if dump == "tokens" {
                eprintln!("{tokens}");
            }
            out.extend(tokens);
        } else {
            out.extend(emit::stub(&signature(&typed), &source, first_round));
        }
        if syntax_ok {
            for d in local.items() {
                diags.push(d.clone());
            }
        }
    }
    (out, diags)
}

/// The callback invocation that fetches `external`'s source: through its first-round callback by the path
/// written, or, when it is used inside a model fetched that way, through that model's full callback.
fn request(external: &hir::External, source: &TokenStream) -> TokenStream {
    match &external.via {
        None => {
            let path = &external.path;
            quote::quote!(#path ! { as #path ; #source })
        }
        Some(via) => {
            let mut full = via.clone();
            if let Some(last) = full.segments.last_mut() {
                last.ident = quote::format_ident!("__modelc_full_{}", last.ident);
            }
            quote::quote!(#full ! { as #via ; #source })
        }
    }
}

/// The items' signature of a model that failed: declared input shapes, output shapes where known.
fn signature(typed: &infer::Typed) -> emit::Signature {
    let m = &typed.model;
    emit::Signature {
        attrs: m.attrs.clone(),
        vis: m.vis.clone(),
        name: m.name.clone(),
        inputs: m.inputs.iter().map(|i| (i.name.clone(), i.dims.clone(), i.dtype)).collect(),
        outputs: m.outputs.iter().map(|o| (o.name.clone(), typed.shapes.get(o.value.0).cloned().flatten())).collect(),
        output_ranks: guess_ranks(typed),
        targets: m.outputs.iter().map(|o| o.target).collect(),
        mixed_bfloat16: m.mixed_bfloat16,
    }
}

/// The per-sample rank of each output of a failed model: its shape's when known, else what the producing
/// layer's own rule gives on its operands' ranks (`LayerDef::output_rank`: a Flatten gives 1 whatever its
/// poisoned operand), else the first input's, else 1. Only used to type stub items: a guess from the
/// layer's rule keeps user code written for the model's real output free of a second error.
fn guess_ranks(typed: &infer::Typed) -> Vec<usize> {
    use layers::LayerDef;
    let m = &typed.model;
    let fallback = m.inputs.first().map(|i| i.dims.len()).unwrap_or(1);
    // Values are created in source order, operands before results: one forward pass suffices.
    let mut ranks: Vec<Option<usize>> = Vec::with_capacity(m.values.len());
    for (v, value) in m.values.iter().enumerate() {
        let known = typed.shapes.get(v).cloned().flatten().map(|s| s.rank());
        let guess = known.or_else(|| match value.producer {
            hir::Producer::Call(c) => m.calls.get(c.0).and_then(|call| {
                let ins: Vec<Option<usize>> = call.inputs.iter().map(|i| ranks.get(i.0).copied().flatten()).collect();
                let k = call.results().position(|r| r.0 == v).unwrap_or(0);
                match m.call_kind(call) {
                    Some(kind) if k > 0 => kind.extra_rank(k, &ins),
                    Some(kind) => kind.output_rank(&ins),
                    None => layers::same_rank(&ins),
                }
            }),
            _ => None,
        });
        ranks.push(guess);
    }
    m.outputs.iter().map(|o| ranks.get(o.value.0).copied().flatten().unwrap_or(fallback)).collect()
}

/// Checks `source` (the statements of one `model!` invocation, as text) and returns the parameters of
/// its last model, `(name, shape)` in the order of `Network::PARAMS`; or every diagnostic, as
/// `message (help)` lines. The Keras importer uses it to check what it wrote and to name the weights.
pub fn param_layout(source: &str) -> Result<Vec<(String, Vec<usize>)>, Vec<String>> {
    let tokens: TokenStream = source.parse().map_err(|e| vec![format!("the generated source does not tokenize: {e}")])?;
    let mut diags = Diagnostics::new();
    let file = parse::parse(tokens, &mut diags);
    let mut params = Vec::new();
    for model in &file.models {
        let hir = resolve::resolve(model, &file, &mut diags);
        let graph = graph::build(&hir);
        let typed = infer::infer(hir, graph, &mut diags);
        if diags.is_empty() && !typed.model.nested_failed {
            params = plan::plan(typed).params.into_iter().map(|p| (p.name, p.shape)).collect();
        }
    }
    if diags.is_empty() {
        Ok(params)
    } else {
        Err(diags
            .items()
            .iter()
            .map(|d| match &d.help {
                Some(h) => format!("{} ({h})", d.message),
                None => d.message.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use std::str::FromStr;

    /// The stub's per-sample rank of each output of the first model of `src`, and its error count.
    fn stub_ranks(src: &str) -> (Vec<usize>, usize) {
        let mut diags = crate::diag::Diagnostics::new();
        let file = crate::parse::parse(proc_macro2::TokenStream::from_str(src).unwrap(), &mut diags);
        let hir = crate::resolve::resolve(&file.models[0], &file, &mut diags);
        let graph = crate::graph::build(&hir);
        let typed = crate::infer::infer(hir, graph, &mut diags);
        (super::guess_ranks(&typed), diags.len())
    }

    #[test]
    fn a_poisoned_outputs_rank_follows_each_layers_rule_not_its_operand() {
        // The issue's cascade: Conv2D fails on a rank-2 input; Flatten then Dense give a vector, so user
        // code written for (batch, 10) must type-check against the stub.
        let cascade = "struct M { input x: [8, 8]; let c = Conv2D(4, 3)(x); output y = Dense(10)(Flatten()(c)); }";
        assert_eq!(stub_ranks(cascade), (vec![1], 1));
        // Each layer's own rule, whatever its poisoned operand.
        let conv = "struct M { input x: [8]; let c = Conv2D(4, 3)(x); output a = c; output b = Dense(2)(GlobalAveragePooling2D()(c)); \
                    output r = Reshape((2, 2))(c); output p = MaxPooling2D()(c); }";
        assert_eq!(stub_ranks(conv), (vec![3, 1, 2, 3], 1));
        let conv1d = "struct M { input x: [8, 8, 3]; output y = Dense(2)(Conv1D(4, 3)(x)); }";
        assert_eq!(stub_ranks(conv1d), (vec![2], 1));
        // A layer whose arguments are invalid keeps its operand's rank; a known shape is never guessed.
        let args = "struct M { input x: [4, 4]; output y = Dense(0)(x); output z = Dense(3)(x); }";
        assert_eq!(stub_ranks(args), (vec![2, 2], 1));
    }
}
