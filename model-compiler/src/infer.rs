//! `infer`: `hir::Model` + `Graph` -> `Typed`. Walks the schedule, applies each layer's shape rule, builds
//! each layer on its first call and checks later calls of a shared layer against that build. Errors are
//! accumulated; a value whose shape failed is poisoned (`None`) and silently skipped downstream.

use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::Graph;
use crate::hir::{self, CallId, DType, Producer, ValueId};
use crate::layers::{Arity, InferCx, LayerDef, LayerKind, MaskInfo, MaskRule};
use crate::shape::{within_limit, Shape, MAX_ELEMENTS};

/// A model whose every value has a shape (or is poisoned after a reported error).
#[derive(Debug, Clone)]
pub struct Typed {
    /// The resolved model.
    pub model: hir::Model,
    /// Its graph.
    pub graph: Graph,
    /// Calls in evaluation order.
    pub schedule: Vec<CallId>,
    /// Shape of each value; `None` when poisoned.
    pub shapes: Vec<Option<Shape>>,
    /// The input shapes each layer was built with (by its first call); `None` if never built.
    pub built: Vec<Option<Vec<Shape>>>,
    /// The mask each value carries (docs/masks.md): a hidden value of shape `(steps,)`, 1.0 for a kept
    /// step and 0.0 for a masked one. Indexed like `shapes`.
    pub masks: Vec<Option<ValueId>>,
    /// Per call: the hidden mask value it writes, if it makes a new one.
    pub made_masks: Vec<Option<MadeMask>>,
}

/// A mask value a call writes next to its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadeMask {
    /// The hidden value.
    pub value: ValueId,
    /// `Produce`: the layer's forward writes it; `Any`: the framework ORs the operands' masks into it;
    /// `Concat`: the framework joins them along the steps.
    pub rule: MaskRule,
}

/// Infers and checks every shape of `model`.
pub fn infer(model: hir::Model, graph: Graph, diags: &mut Diagnostics) -> Typed {
    let schedule = graph.schedule(diags, &model);
    let mut shapes: Vec<Option<Shape>> = model
        .values
        .iter()
        .map(|v| match v.producer {
            Producer::Input(i) => model.inputs.get(i).map(|x| Shape(x.dims.clone())),
            _ => None,
        })
        .collect();
    let mut expected = vec![false; model.expects.len()];
    check_expects(&model, &mut shapes, &mut expected, diags);
    let mut built: Vec<Option<Vec<Shape>>> = vec![None; model.layers.len()];
    let mut masks: Vec<Option<ValueId>> = vec![None; model.values.len()];
    let mut made_masks: Vec<Option<MadeMask>> = vec![None; model.calls.len()];
    let mut hidden: Vec<(hir::Value, Shape)> = Vec::new();
    let mut first_call: Vec<Option<CallId>> = vec![None; model.layers.len()];
    for &cid in &schedule {
        let Some(call) = model.calls.get(cid.0) else { continue };
        let Some(layer) = model.layers.get(call.layer.0) else { continue };
        let Some(kind) = model.call_kind(call) else { continue };
        let ins: Option<Vec<Shape>> = call.inputs.iter().map(|v| shapes.get(v.0).cloned().flatten()).collect();
        let Some(ins) = ins else { continue };
        let names: Vec<String> = call.inputs.iter().map(|v| model.value_name(*v)).collect();
        if let Err(d) = check_arity(kind.arity(), layer.keras_type, call, &names) {
            diags.push(d);
            continue;
        }
        // A shared layer must be called on the shapes it was built with.
        if let (Some(b), Some(first)) = (built.get(call.layer.0).cloned().flatten(), first_call.get(call.layer.0).copied().flatten()) {
            if b != ins {
                let first_span = model.calls.get(first.0).map(|c| c.span).unwrap_or(call.span);
                let first_names: Vec<String> =
                    model.calls.get(first.0).map(|c| c.inputs.iter().map(|v| model.value_name(*v)).collect()).unwrap_or_default();
                let show = |n: &[String], s: &[Shape]| n.iter().zip(s).map(|(n, s)| format!("`{n}` {s}")).collect::<Vec<_>>().join(", ");
                diags.push(
                    Diagnostic::new(call.span, format!("shared layer `{}` was built on {} by its first call, but is called here on {}", layer.binding.as_ref().map(|b| b.to_string()).unwrap_or_else(|| layer.name.clone()), show(&first_names, &b), show(&names, &ins)))
                        .note(first_span, "first called here")
                        .help("a shared layer has one set of weights, so every call needs the same input shape; use a separate layer for the other shape"),
                );
                continue;
            }
        }
        let dtypes: Vec<Option<DType>> = call
            .inputs
            .iter()
            .map(|v| match model.values.get(v.0).map(|x| x.producer) {
                Some(Producer::Input(i)) => model.inputs.get(i).map(|x| x.dtype),
                _ => None,
            })
            .collect();
        let in_masks: Vec<Option<ValueId>> = call.inputs.iter().map(|v| masks.get(v.0).copied().flatten()).collect();
        let mask_info: Vec<Option<MaskInfo>> = in_masks
            .iter()
            .map(|m| m.and_then(|m| mask_shape(&shapes, &hidden, model.values.len(), m)).map(|steps| MaskInfo { steps }))
            .collect();
        let cx = InferCx {
            inputs: &ins,
            names: &names,
            dtypes: &dtypes,
            spans: &call.input_spans,
            span: call.span,
            keywords: &call.keywords,
            masks: &mask_info,
        };
        match kind.infer(&cx).and_then(|out| check_size(&out, kind, &ins, layer, call).map(|()| out)) {
            Ok(out) => {
                let steps = out.0.first().copied().filter(|_| out.rank() >= 2);
                let mask = match (kind.mask_rule(&cx), steps) {
                    (_, None) | (MaskRule::Drop, _) => None,
                    (MaskRule::Keep(i), Some(t)) => in_masks.get(i).copied().flatten().filter(|_| cx.mask(i).is_some_and(|m| m.steps == t)),
                    (MaskRule::Any, Some(t)) => {
                        let all: Option<Vec<ValueId>> = in_masks.iter().copied().collect();
                        match all {
                            Some(all) if mask_info.iter().all(|m| m.is_some_and(|m| m.steps == t)) => match all.split_first() {
                                Some((first, rest)) if rest.iter().all(|m| m == first) => Some(*first),
                                Some(_) => {
                                    Some(new_mask(&mut hidden, &mut made_masks, model.values.len(), cid, call.span, t, MaskRule::Any))
                                }
                                None => None,
                            },
                            _ => None,
                        }
                    }
                    (MaskRule::Concat, Some(t)) if mask_info.iter().any(Option::is_some) => {
                        Some(new_mask(&mut hidden, &mut made_masks, model.values.len(), cid, call.span, t, MaskRule::Concat))
                    }
                    (MaskRule::Concat, Some(_)) => None,
                    (MaskRule::Produce, Some(t)) => {
                        Some(new_mask(&mut hidden, &mut made_masks, model.values.len(), cid, call.span, t, MaskRule::Produce))
                    }
                };
                if let Some(m) = masks.get_mut(call.output.0) {
                    *m = mask;
                }
                let extra = kind.extra_shapes(&cx, &out);
                for (k, (v, shape)) in call.extra.iter().zip(&extra).enumerate() {
                    let MaskRule::Keep(i) = kind.extra_mask_rule(k + 1, &cx) else { continue };
                    let steps = shape.0.first().copied().filter(|_| shape.rank() >= 2);
                    let keep = in_masks.get(i).copied().flatten().filter(|_| steps.is_some() && cx.mask(i).map(|m| m.steps) == steps);
                    if let Some(slot) = masks.get_mut(v.0) {
                        *slot = keep;
                    }
                }
                for (v, shape) in call.results().zip(std::iter::once(out).chain(extra)) {
                    if let Some(s) = shapes.get_mut(v.0) {
                        *s = Some(shape);
                    }
                }
                check_expects(&model, &mut shapes, &mut expected, diags);
                if let Some(b) = built.get_mut(call.layer.0) {
                    if b.is_none() {
                        *b = Some(ins);
                        if let Some(f) = first_call.get_mut(call.layer.0) {
                            *f = Some(cid);
                        }
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    // After another error (here, or in a nested model) the path from an input to an output may be the
    // broken part: stay quiet then.
    if diags.is_empty() && !model.nested_failed {
        check_reachability(&model, &graph, diags);
    }
    let mut model = model;
    for (value, shape) in hidden {
        model.values.push(value);
        shapes.push(Some(shape));
        masks.push(None);
    }
    Typed { model, graph, schedule, shapes, built, masks, made_masks }
}

/// Steps of mask value `m`: a hidden value (numbered from `n_values`, not pushed yet) or, never, a
/// value of the model.
fn mask_shape(shapes: &[Option<Shape>], hidden: &[(hir::Value, Shape)], n_values: usize, m: ValueId) -> Option<usize> {
    match m.0.checked_sub(n_values) {
        Some(h) => hidden.get(h).and_then(|(_, s)| s.0.first().copied()),
        None => shapes.get(m.0).cloned().flatten().and_then(|s| s.0.first().copied()),
    }
}

/// A new hidden mask value of `steps` written by call `cid` by `rule`.
fn new_mask(
    hidden: &mut Vec<(hir::Value, Shape)>,
    made: &mut [Option<MadeMask>],
    n_values: usize,
    cid: CallId,
    span: proc_macro2::Span,
    steps: usize,
    rule: MaskRule,
) -> ValueId {
    let value = ValueId(n_values + hidden.len());
    hidden.push((hir::Value { binding: None, span, producer: Producer::Call(cid) }, Shape(vec![steps])));
    if let Some(slot) = made.get_mut(cid.0) {
        *slot = Some(MadeMask { value, rule });
    }
    value
}

// Rule: a result and every parameter of a layer have at most `MAX_ELEMENTS` elements, so planning (buffer
// sizes, parameter offsets) cannot overflow.
fn check_size(out: &Shape, kind: &LayerKind, ins: &[Shape], layer: &hir::Layer, call: &hir::Call) -> Result<(), Diagnostic> {
    let limit = "modelc supports at most 2^31 elements per sample in a tensor and per parameter";
    if !within_limit(out.dims()) {
        return Err(Diagnostic::new(call.span, format!("{} would give a tensor of shape {out}, which is too large", layer.keras_type))
            .help(format!("{limit} ({MAX_ELEMENTS}): use smaller sizes")));
    }
    // Only checked once the output is in range, so a parameter's shape is made of addressable sizes.
    for p in kind.params(ins) {
        if !within_limit(&p.shape) {
            let dims: Vec<String> = p.shape.iter().map(usize::to_string).collect();
            return Err(Diagnostic::new(
                call.span,
                format!("the `{}` of {} would have shape ({}), which is too large", p.suffix, layer.keras_type, dims.join(", ")),
            )
            .help(format!("{limit} ({MAX_ELEMENTS}): use smaller sizes")));
        }
    }
    // The working space a layer computes in (attention's scores: heads × query steps × value steps).
    if let Some(n) = kind.scratch(ins, out).into_iter().find(|&n| n > MAX_ELEMENTS) {
        return Err(Diagnostic::new(
            call.span,
            format!("{} would need a working space of {n} elements per sample, which is too large", layer.keras_type),
        )
        .help(format!("modelc supports at most 2^31 elements per sample in a layer's working space ({MAX_ELEMENTS}): use smaller sizes")));
    }
    Ok(())
}

// Rule: a nested model is called on tensors of its declared input shapes. A mismatch poisons the operand,
// so the inlined layers of the nested model report nothing more.
fn check_expects(model: &hir::Model, shapes: &mut [Option<Shape>], done: &mut [bool], diags: &mut Diagnostics) {
    for (e, done) in model.expects.iter().zip(done.iter_mut()) {
        if *done {
            continue;
        }
        let Some(Some(actual)) = shapes.get(e.value.0).cloned() else { continue };
        *done = true;
        if actual.0 != e.dims {
            let want = Shape(e.dims.clone());
            let name = model.value_name(e.value);
            diags.push(
                Diagnostic::new(e.span, format!("{} has shape {want}, but is given `{name}` {actual}", e.what))
                    .help(format!("pass a tensor of shape {want}: reshape or transform `{name}` first")),
            );
            if let Some(s) = shapes.get_mut(e.value.0) {
                *s = None;
            }
        }
    }
}

// Rule: a single-tensor layer takes `layer(x)`; a merge takes `layer([a, b, ...])` within its bounds.
fn check_arity(arity: Arity, kind: &str, call: &hir::Call, names: &[String]) -> Result<(), Diagnostic> {
    let n = call.positional;
    match arity {
        Arity::One if call.list => Err(Diagnostic::new(call.span, format!("{kind} takes one tensor, but is called on a list of {n}"))
            .help(format!(
                "call it on one tensor, e.g. `{kind}(...)({})`, or merge the list first with `Concatenate()([...])`",
                names.first().map(String::as_str).unwrap_or("x")
            ))),
        Arity::One => Ok(()),
        Arity::List { .. } if !call.list => Err(Diagnostic::new(
            call.span,
            format!(
                "{kind} merges a list of tensors, but is called on the single tensor `{}`",
                names.first().map(String::as_str).unwrap_or("x")
            ),
        )
        .help(format!("pass a list: `{kind}()([a, b])`"))),
        Arity::List { min, max } => {
            if n < min {
                Err(Diagnostic::new(call.span, format!("{kind} needs at least {min} tensors, but is given {n}"))
                    .help(format!("pass at least {min} tensors: `{kind}()([a, b])`")))
            } else if let Some(max) = max.filter(|m| n > *m) {
                Err(Diagnostic::new(call.span, format!("{kind} takes exactly {max} tensors, but is given {n}"))
                    .help(format!("pass exactly {max} tensors, e.g. `{kind}()([a, b])`")))
            } else {
                Ok(())
            }
        }
    }
}

// Rule: every input reaches an output (else it is certainly a mistake: the input would be ignored).
fn check_reachability(model: &hir::Model, graph: &Graph, diags: &mut Diagnostics) {
    if model.outputs.is_empty() {
        return;
    }
    for i in graph.dead_inputs() {
        if let Some(input) = model.inputs.get(i) {
            let used = model.calls.iter().any(|c| c.inputs.contains(&input.value));
            let why = if used { "is used, but no output depends on it" } else { "is never used" };
            diags.push(
                Diagnostic::new(input.name.span(), format!("input `{}` {why}", input.name)).help("connect it to an output, or remove it"),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::tests::{errors, ok_shapes};

    #[test]
    fn shared_layer_called_on_a_different_shape_names_both_calls() {
        let e = errors("struct M { input a: [8]; input b: [4]; layer enc = Dense(16); let x = enc(a); let y = enc(b); output z = Concatenate()([x, y]); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "shared layer `enc` was built on `a` (None, 8) by its first call, but is called here on `b` (None, 4)");
        assert_eq!(
            e[0].1.as_deref(),
            Some(
                "a shared layer has one set of weights, so every call needs the same input shape; use a separate layer for the other shape"
            )
        );
    }

    #[test]
    fn shared_layer_may_be_called_any_number_of_times_on_its_shape() {
        let src = "struct M { input a: [8]; input b: [8]; layer enc = Dense(4); output y = Add()([enc(a), enc(b), enc(Add()([a, b]))]); }";
        assert_eq!(ok_shapes(src), vec![vec![4]]);
    }

    #[test]
    fn errors_in_several_merges_are_all_reported() {
        let e = errors("struct M { input a: [8]; input b: [4]; let s = Add()([a, b]); let d = Dot(axes = 1)([a, b]); output y = Concatenate()([a, b]); output z = Multiply()([s, d]); }");
        let msgs: Vec<&str> = e.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(msgs.len(), 2, "one error per bad merge, none for the poisoned `Multiply`: {msgs:?}");
        assert!(msgs[0].starts_with("Add cannot merge") && msgs[1].starts_with("Dot(axes=1) contracts"), "{msgs:?}");
    }
}
