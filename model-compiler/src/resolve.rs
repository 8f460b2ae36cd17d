//! `resolve`: `ast::Model` -> `hir::Model`. Names become ids (shadowing allowed), each constructor becomes
//! a layer-table entry with typed arguments and a Keras-style unique name, calls list their operands.
//! Problems are reported into the sink and the offending value is poisoned, so one mistake gives one error.

use crate::ast::{self, Callee, Expr, Stmt};
use crate::diag::{Diagnostic, Diagnostics};
use crate::hir::{self, CallId, DType, LayerId, Producer, ValueId};
use crate::layers::{self, args::ArgReader, LayerDef};
use crate::suggest::did_you_mean;
use proc_macro2::{Ident, Span};
use std::collections::BTreeMap;

/// What a `layer` binding or an inline constructor denotes.
#[derive(Clone, Copy, Debug)]
enum Instance {
    /// One layer.
    Layer(LayerId),
    /// A nested model (index into `Resolver::subs`).
    Sub(usize),
    /// Invalid or not known yet (already reported, or waiting for a callback): calls are poisoned.
    Poisoned,
}

/// A nested model instance: its resolved body and the outer layers holding its weights.
struct Sub {
    model: hir::Model,
    /// The outer layer of each of the submodel's layers (shared by every call of the instance).
    layers: Vec<LayerId>,
    /// `vision`: the prefix of its layers' names.
    prefix: String,
    /// `VisionNet`.
    type_name: String,
}

/// Resolves one model of `file`. Other models of the same invocation, and models of other invocations
/// brought in by callbacks (`file.deps`), may be used as layers: they are inlined here.
pub fn resolve(model: &ast::Model, file: &ast::File, diags: &mut Diagnostics) -> hir::Model {
    resolve_in(model, file, &[], diags).0
}

/// The model attribute that sets its dtype policy: `#[dtype_policy = "mixed_bfloat16"]`.
const POLICY_ATTR: &str = "dtype_policy";

/// Whether the model's attributes set the `mixed_bfloat16` policy (`#[dtype_policy = "..."]`, Keras'
/// `keras.config.set_dtype_policy` for this model); an attribute of another form or value is reported.
fn model_policy(attrs: &[syn::Attribute], diags: &mut Diagnostics) -> bool {
    let mut mixed = false;
    for a in attrs.iter().filter(|a| a.path().is_ident(POLICY_ATTR)) {
        let value = match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some((s.value(), s.span())),
                _ => None,
            },
            _ => None,
        };
        match value {
            Some((v, _)) if v == "mixed_bfloat16" => mixed = true,
            Some((v, _)) if v == "float32" => mixed = false,
            other => {
                let (got, span) = match other {
                    Some((v, span)) => (format!("\"{v}\""), span),
                    None => (String::from("another form"), syn::spanned::Spanned::span(a)),
                };
                diags.push(
                    Diagnostic::new(span, format!("the model's dtype policy must be \"float32\" or \"mixed_bfloat16\", got {got}")).help(
                        "write `#[dtype_policy = \"mixed_bfloat16\"]` (f32 weights, bf16 matrix products) or leave it out for float32",
                    ),
                );
            }
        }
    }
    mixed
}

/// Resolves `model` nested in the models of `stack` (outermost first). Also returns a cycle of nested
/// models found below it that does not start at it (outermost first), for the model where it starts.
fn resolve_in(model: &ast::Model, file: &ast::File, stack: &[String], diags: &mut Diagnostics) -> (hir::Model, Option<Vec<String>>) {
    let mut stack = stack.to_vec();
    stack.push(model.name.to_string());
    let mixed_bfloat16 = model_policy(&model.attrs, diags);
    let mut r = Resolver {
        diags,
        file,
        stack,
        subs: Vec::new(),
        out: hir::Model {
            attrs: model.attrs.iter().filter(|a| !a.path().is_ident(POLICY_ATTR)).cloned().collect(),
            vis: model.vis.clone(),
            name: model.name.clone(),
            inputs: Vec::new(),
            layers: Vec::new(),
            calls: Vec::new(),
            outputs: Vec::new(),
            values: Vec::new(),
            expects: Vec::new(),
            externals: Vec::new(),
            nested_failed: false,
            mixed_bfloat16,
        },
        scope: BTreeMap::new(),
        instances: BTreeMap::new(),
        explicit_names: BTreeMap::new(),
        unknown_results: std::collections::BTreeSet::new(),
        auto_layers: Vec::new(),
        called: std::collections::BTreeSet::new(),
        no_input_reported: false,
        cycle: None,
    };
    for stmt in &model.stmts {
        r.stmt(stmt);
    }
    r.check_model(model);
    r.assign_auto_names();
    (r.out, r.cycle)
}

/// What to write instead of a Keras activation layer modelc has as an activation function only.
fn keras_activation_layer(name: &str) -> Option<String> {
    let (function, note) = match name {
        "ReLU" => ("relu", ""),
        "LeakyReLU" => ("leaky_relu", " (slope 0.2, Keras' `leaky_relu` function; the `LeakyReLU` layer's default slope is 0.3)"),
        "ELU" => ("elu", " (alpha 1.0)"),
        "PReLU" | "ThresholdedReLU" => {
            return Some(format!("modelc has no `{name}`: use another activation, e.g. `Activation(leaky_relu)`"))
        }
        _ => return None,
    };
    Some(format!("modelc has `{function}` as an activation, not a `{name}` layer: write `Activation({function})(x)`, or `activation = {function}` on the layer before{note}"))
}

// Rule: a model does not contain itself through other models either (`A` uses `B`, which uses `A`): the
// error is at the use, in the model where the cycle starts, naming every model on it.
fn nest_cycle(cycle: &[String], span: Span) -> Diagnostic {
    let names: Vec<String> = cycle.iter().map(|m| format!("`{m}`")).collect();
    let listed = match names.as_slice() {
        [init @ .., last] if !init.is_empty() => format!("{} and {last}", init.join(", ")),
        _ => names.join(", "),
    };
    let mut uses: Vec<String> = names.iter().zip(names.iter().cycle().skip(1)).map(|(user, used)| format!("{user} uses {used}")).collect();
    if let Some(first) = uses.first_mut() {
        first.push_str(" as a layer");
    }
    let uses = match uses.as_slice() {
        [init @ .., last] if !init.is_empty() => format!("{} and {last}", init.join(", ")),
        _ => uses.join(", "),
    };
    Diagnostic::new(span, format!("models {listed} nest each other: {uses}"))
        .help("a model cannot contain itself, even through other models: remove one of these uses")
}

/// The callee of `c` as written: `enc` or `LSTM`.
fn callee_text(c: &ast::CallExpr) -> String {
    match &c.callee {
        Callee::Instance(id) => id.to_string(),
        Callee::Ctor(ctor) => crate::parse::path_text(&ctor.path),
    }
}

// Rule: a callee that takes its operands in one argument (a tensor or a list) is given no further
// positional tensor; the error is at the first one.
fn one_argument(extra: &Expr, what: &str) -> Diagnostic {
    Diagnostic::new(extra.span(), "a layer is called on one tensor: to pass several, put them in a list, like `([a, b])`")
        .help(format!("{what} takes its operands in one argument"))
}

// Rule: a call's keywords are the layer's `call_keywords`; the error is at the keyword, with the nearest
// one, else what the layer takes.
fn unknown_keyword(c: &ast::CallExpr, keras_type: &str, name: &str, span: Span, accepted: &[&str]) -> Diagnostic {
    let d = Diagnostic::new(span, format!("{keras_type} takes no call argument `{name}`"));
    match (did_you_mean(name, accepted.iter().copied()), accepted.is_empty()) {
        (Some(s), _) => d.help(format!("did you mean `{s}`?")),
        (None, true) => {
            let call = match &c.callee {
                Callee::Instance(id) => format!("{id}(x)"),
                Callee::Ctor(ctor) => format!("{}(...)(x)", crate::parse::path_text(&ctor.path)),
            };
            d.help(format!("call it on its tensor alone: `{call}`"))
        }
        (None, false) => d.help(format!("it takes: {}", layers::args::list(accepted))),
    }
}

struct Resolver<'d> {
    diags: &'d mut Diagnostics,
    /// The invocation being compiled (sibling models and dependencies).
    file: &'d ast::File,
    /// Models being resolved, outermost first (a model may not contain itself).
    stack: Vec<String>,
    /// Nested model instances.
    subs: Vec<Sub>,
    out: hir::Model,
    /// Tensor names in scope (latest binding wins: shadowing).
    scope: BTreeMap<String, ValueId>,
    /// `layer name = ...` instances.
    instances: BTreeMap<String, (Instance, Span)>,
    /// `layer` instances called at least once (even by a call that failed).
    called: std::collections::BTreeSet<String>,
    /// Set when an unknown tensor was reported in a model that has no input at all: that error already
    /// says to declare an input, so "model has no input" would repeat it.
    no_input_reported: bool,
    /// `name = "..."` given explicitly, with where.
    explicit_names: BTreeMap<String, Span>,
    /// Results of calls of layers whose arguments (or call arguments) were invalid: how many tensors they return is
    /// unknown, so binding them to several names is no further error.
    unknown_results: std::collections::BTreeSet<ValueId>,
    /// Layers still needing a Keras default name, with their prefix; `Some(depth)` for a layer a wrapper
    /// wraps `depth` levels down (`TimeDistributed(Dense(8))`), `None` for the layer itself.
    auto_layers: Vec<(LayerId, Option<usize>, String)>,
    /// A cycle of nested models met below this model that starts further out (outermost first).
    cycle: Option<Vec<String>>,
}

impl Resolver<'_> {
    fn stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::Input(i) => self.input(i),
            Stmt::Layer(l) => self.layer_decl(l),
            Stmt::Let(l) => match l.names.as_slice() {
                [name] => {
                    let v = self.expr(&l.expr);
                    self.bind(name, v);
                }
                names => {
                    let values = self.expr_values(&l.expr);
                    match values {
                        Some(vs) if vs.len() == names.len() => {
                            for (n, v) in names.iter().zip(vs) {
                                self.bind(n, Some(v));
                            }
                        }
                        other => {
                            let unknown = matches!(other.as_deref(), Some([v]) if self.unknown_results.contains(v));
                            if let (Some(vs), false) = (other, unknown) {
                                let span = names.first().map(Ident::span).unwrap_or_else(|| l.expr.span());
                                let what = if vs.len() == 1 { "one tensor".to_string() } else { format!("{} tensors", vs.len()) };
                                let help = match vs.first().and_then(|v| self.result_names(*v)) {
                                    Some(r) if r.len() > 1 => format!("bind one name per tensor: `let ({}) = ...;`", r.join(", ")),
                                    Some(_) => "bind one name: `let y = ...;`".to_string(),
                                    None => "bind one name per tensor".to_string(),
                                };
                                self.diags.push(
                                    Diagnostic::new(span, format!("this expression gives {what}, but {} names are bound", names.len()))
                                        .help(help),
                                );
                            }
                            for n in names {
                                self.bind(n, None);
                            }
                        }
                    }
                }
            },
            Stmt::Output(o) => {
                let v = self.expr(&o.expr);
                if let Some(prev) = self.out.outputs.iter().find(|p| p.name == o.name) {
                    self.diags.push(
                        Diagnostic::new(o.name.span(), format!("output `{}` is defined twice", o.name))
                            .note(prev.name.span(), "first defined here")
                            .help("give each output its own name"),
                    );
                    // One field per name in the generated structs: the second definition is dropped.
                    return;
                }
                // Rule: each output is its own tensor, so each gets its own loss gradient buffer.
                if let Some(prev) = v.and_then(|v| self.out.outputs.iter().find(|p| p.value == v)) {
                    let tensor = v.map(|v| self.out.value_name(v)).unwrap_or_default();
                    self.diags.push(
                        Diagnostic::new(
                            o.name.span(),
                            format!("output `{}` is the same tensor `{tensor}` as output `{}`", o.name, prev.name),
                        )
                        .note(prev.name.span(), "that output is defined here")
                        .help(format!(
                            "give it its own layer, e.g. `output {} = Activation(linear)({tensor});`, or use one output",
                            o.name
                        )),
                    );
                }
                let value = match v {
                    Some(v) => v,
                    None => self.poisoned(&o.name),
                };
                let target = match &o.target {
                    Some(t) if t == "i32" => DType::I32,
                    _ => DType::F32,
                };
                self.out.outputs.push(hir::Output { name: o.name.clone(), value, target });
                self.bind(&o.name, Some(value));
            }
        }
    }

    fn input(&mut self, i: &ast::InputDecl) {
        let mut dims = Vec::new();
        let mut ok = true;
        for d in &i.dims {
            if d.value <= 0 {
                ok = false;
                self.diags.push(
                    Diagnostic::new(
                        d.span,
                        format!("input `{}` has a dimension of {}: every dimension must be at least 1", i.name, d.value),
                    )
                    .help("the batch dimension is implicit: write only the per-sample shape, e.g. `[8]` or `[32, 32, 3]`"),
                );
            } else {
                dims.push(usize::try_from(d.value).unwrap_or(1));
            }
        }
        if ok && !crate::shape::within_limit(&dims) {
            ok = false;
            self.diags.push(
                Diagnostic::new(i.shape_span, format!("input `{}` of shape {} is too large", i.name, crate::shape::Shape(dims.clone())))
                    .help(format!(
                        "modelc supports at most 2^31 elements per sample in a tensor ({}): use smaller sizes",
                        crate::shape::MAX_ELEMENTS
                    )),
            );
        }
        if i.dims.is_empty() {
            ok = false;
            self.diags.push(
                Diagnostic::new(i.shape_span, format!("input `{}` has an empty shape", i.name))
                    .help("write the per-sample shape, e.g. `[8]`"),
            );
        }
        let dtype = match &i.dtype {
            None => DType::F32,
            Some(t) if t == "f32" => DType::F32,
            Some(t) if t == "i32" => DType::I32,
            Some(t) => {
                self.diags.push(
                    Diagnostic::new(t.span(), format!("unsupported input type `{t}`"))
                        .help("inputs are `f32` (the default) or `i32` (token ids for Embedding)"),
                );
                DType::F32
            }
        };
        if let Some(first) = self.out.inputs.iter().find(|p| p.name == i.name) {
            self.diags.push(
                Diagnostic::new(i.name.span(), format!("input `{}` is declared twice", i.name))
                    .note(first.name.span(), "first declared here")
                    .help("give each input its own name"),
            );
            // One field per name in the generated structs: the name now denotes a poisoned value, so its
            // uses report nothing more.
            let v = self.poisoned(&i.name);
            self.scope.insert(i.name.to_string(), v);
            return;
        }
        let index = self.out.inputs.len();
        let value = self.new_value(Some(i.name.to_string()), i.name.span(), if ok { Producer::Input(index) } else { Producer::Poisoned });
        self.out.inputs.push(hir::Input { name: i.name.clone(), dims, dtype, value });
        self.scope.insert(i.name.to_string(), value);
    }

    fn layer_decl(&mut self, l: &ast::LayerDecl) {
        let key = l.name.to_string();
        if let Some((_, first)) = self.instances.get(&key) {
            let first = *first;
            self.diags.push(
                Diagnostic::new(l.name.span(), format!("layer `{key}` is declared twice"))
                    .note(first, "first declared here")
                    .help("give each layer instance its own name, or call the first one again to share its weights"),
            );
            return;
        }
        let instance = self.instantiate(&l.ctor, Some(l.name.clone()));
        self.instances.insert(key, (instance, l.name.span()));
    }

    /// A layer or a nested model instance from a constructor.
    fn instantiate(&mut self, ctor: &ast::Ctor, binding: Option<Ident>) -> Instance {
        let known = ctor.path.get_ident().is_some_and(|id| layers::KINDS.iter().any(|k| id == k));
        if known {
            return Instance::Layer(self.new_layer(ctor, binding));
        }
        let key = crate::parse::path_text(&ctor.path);
        let last = ctor.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        if let Some(start) = self.stack.iter().position(|m| *m == last) {
            if start + 1 == self.stack.len() {
                self.diags.push(
                    Diagnostic::new(ctor.span(), format!("model `{last}` contains itself"))
                        .help("a model cannot be used as a layer inside its own definition"),
                );
            } else {
                // Through other models (also when the model's definition has not been fetched yet): the model where the cycle starts reports it (see below).
                self.cycle = self.stack.get(start..).map(<[String]>::to_vec);
            }
            return Instance::Poisoned;
        }
        let file = self.file;
        let sibling = ctor.path.get_ident().and_then(|id| file.models.iter().find(|m| m.name == *id));
        let found = match sibling {
            Some(m) => Some((m, file)),
            None => file.deps.iter().find(|d| d.key == key).and_then(|d| d.model().map(|m| (m, &d.file))),
        };
        // A model fetched by its first-round callback comes without its own dependencies: what it needs
        // is fetched through its full callback, by the path written here (see `hir::External::via`).
        let provisional = sibling.is_none() && file.deps.iter().find(|d| d.key == key).is_some_and(|d| !d.full);
        let Some((model, scope)) = found else {
            // Not a layer kind nor a model seen yet: a close layer kind means a typo, and a Keras
            // layer modelc has as an activation only, or arguments a model does not take
            // (`Swish(0.3)`), a layer modelc lacks; otherwise it is a model of another invocation,
            // fetched through its callback macro.
            let model_args =
                ctor.args.iter().flat_map(|a| &a.items).all(|a| a.key.as_ref().is_some_and(|k| k == "name" || k == "trainable"));
            let layer = did_you_mean(&last, layers::KINDS.iter().copied()).is_some() || keras_activation_layer(&last).is_some();
            if ctor.path.get_ident().is_some() && (layer || !model_args) {
                self.new_layer(ctor, binding);
            } else {
                self.out.externals.push(hir::External { path: ctor.path.clone(), via: None });
            }
            return Instance::Poisoned;
        };
        if self.stack.len() >= crate::parse::MAX_NESTING {
            self.diags.push(
                Diagnostic::new(ctor.span(), format!("models nest more than {} levels deep here", crate::parse::MAX_NESTING))
                    .help("use fewer levels of nested models"),
            );
            return Instance::Poisoned;
        }
        let span = ctor.span();
        let mut reader = ArgReader::new("a nested model", span, ctor.args.as_ref(), self.diags);
        let explicit = reader.string("name");
        let trainable = reader.bool_or("trainable", None, true).unwrap_or(true);
        if !reader.finish() {
            return Instance::Poisoned;
        }
        if let Some((n, nspan)) = &explicit {
            self.claim_name(n, *nspan);
        }
        // The submodel's own errors are reported at its definition: here they only poison the instance.
        let mut inner = Diagnostics::new();
        let (sub, cycle) = resolve_in(model, scope, &self.stack, &mut inner);
        if let Some(cycle) = cycle {
            self.out.nested_failed = true;
            if cycle.first() == self.stack.last() {
                self.diags.push(nest_cycle(&cycle, span));
            } else if self.cycle.is_none() {
                self.cycle = Some(cycle);
            }
            return Instance::Poisoned;
        }
        let graph = crate::graph::build(&sub);
        let typed = crate::infer::infer(sub, graph, &mut inner);
        if !inner.is_empty() || !typed.model.externals.is_empty() {
            self.out.nested_failed |= !inner.is_empty();
            let via = provisional.then(|| ctor.path.clone());
            self.out.externals.extend(
                typed.model.externals.iter().map(|e| hir::External { path: e.path.clone(), via: e.via.clone().or_else(|| via.clone()) }),
            );
            return Instance::Poisoned;
        }
        let sub = typed.model;
        let prefix = match (explicit, &binding) {
            (Some((n, _)), _) => n,
            (None, Some(b)) => {
                // A binding is a valid name, but may be another layer's explicit name.
                self.claim_name(&b.to_string(), b.span());
                b.to_string()
            }
            (None, None) => {
                // Keras' default: `tower`, then `tower_1`, ... for each inline instance of `Tower`.
                let base = layers::snake_case(&last);
                let free =
                    (0..).map(|k| if k == 0 { base.clone() } else { format!("{base}_{k}") }).find(|c| !self.explicit_names.contains_key(c));
                let n = free.unwrap_or(base);
                self.claim_name(&n, span);
                n
            }
        };
        let mut ids = Vec::new();
        for l in &sub.layers {
            ids.push(LayerId(self.out.layers.len()));
            self.out.layers.push(hir::Layer {
                name: format!("{prefix}/{}", l.name),
                kind: l.kind.clone(),
                keras_type: l.keras_type,
                span: l.span,
                binding: None,
                trainable: l.trainable && trainable,
                activity: l.activity,
                float32: l.float32,
            });
        }
        self.subs.push(Sub { model: sub, layers: ids, prefix, type_name: last });
        Instance::Sub(self.subs.len() - 1)
    }

    /// Inlines one call of nested model `k` on `operands`: its calls are copied with fresh values,
    /// using the instance's layers (so every call shares the weights). Returns its output values.
    fn call_sub(&mut self, k: usize, operands: Vec<Option<ValueId>>, spans: Vec<Span>, list: bool, span: Span) -> Option<Vec<ValueId>> {
        let sub = self.subs.get(k)?;
        let n = sub.model.inputs.len();
        if operands.len() != n || (n > 1 && !list) {
            let names: Vec<String> = sub.model.inputs.iter().map(|i| format!("`{}`", i.name)).collect();
            let plural = if n == 1 { "" } else { "s" };
            let help = if n == 1 {
                format!("call it on one tensor: `{}(x)`", sub.prefix)
            } else {
                format!("pass a list in input order: `{}([{}])`", sub.prefix, names.join(", ").replace('`', ""))
            };
            self.diags.push(
                Diagnostic::new(
                    span,
                    format!(
                        "`{}` ({}) takes {n} input{plural} ({}), but is called on {}",
                        sub.prefix,
                        sub.type_name,
                        names.join(", "),
                        operands.len()
                    ),
                )
                .help(help),
            );
            return None;
        }
        let operands: Vec<ValueId> = operands.into_iter().collect::<Option<Vec<_>>>()?;
        let mut map: BTreeMap<ValueId, ValueId> = BTreeMap::new();
        let mut expects = Vec::new();
        for ((input, v), op_span) in sub.model.inputs.iter().zip(&operands).zip(&spans) {
            map.insert(input.value, *v);
            expects.push(hir::Expect {
                value: *v,
                dims: input.dims.clone(),
                span: *op_span,
                what: format!("input `{}` of `{}` ({})", input.name, sub.prefix, sub.type_name),
            });
        }
        let calls = sub.model.calls.clone();
        let values = sub.model.values.clone();
        let layers = sub.layers.clone();
        let prefix = sub.prefix.clone();
        let outputs: Vec<ValueId> = sub.model.outputs.iter().map(|o| o.value).collect();
        self.out.expects.extend(expects);
        for c in calls {
            let inputs: Option<Vec<ValueId>> = c.inputs.iter().map(|v| map.get(v).copied()).collect();
            let (Some(inputs), Some(layer)) = (inputs, layers.get(c.layer.0).copied()) else { return None };
            let call_id = CallId(self.out.calls.len());
            let mut results = Vec::new();
            for r in c.results() {
                let binding = values.get(r.0).and_then(|v| v.binding.clone()).map(|b| format!("{prefix}/{b}"));
                let fresh = self.new_value(binding, c.span, Producer::Call(call_id));
                map.insert(r, fresh);
                results.push(fresh);
            }
            let (&output, extra) = results.split_first()?;
            self.out.calls.push(hir::Call {
                layer,
                inputs,
                input_spans: c.input_spans.clone(),
                list: c.list,
                positional: c.positional,
                keywords: c.keywords.clone(),
                output,
                extra: extra.to_vec(),
                span: c.span,
                config: c.config.clone(),
            });
        }
        outputs.iter().map(|v| map.get(v).copied()).collect()
    }

    /// Creates a layer-table entry from a constructor.
    fn new_layer(&mut self, ctor: &ast::Ctor, binding: Option<Ident>) -> LayerId {
        let id = LayerId(self.out.layers.len());
        let span = ctor.span();
        let kind_name = match ctor.path.get_ident() {
            Some(id) => id.to_string(),
            None => ctor.path.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::"),
        };
        let known = layers::KINDS.iter().find(|k| **k == kind_name).copied();
        let (kind, keras_type, explicit, trainable, activity, float32) = match known {
            Some(k) => {
                let mut reader = ArgReader::new(k, span, ctor.args.as_ref(), self.diags);
                let explicit = reader.string("name");
                let trainable = reader.bool_or("trainable", None, true).unwrap_or(true);
                // Every Keras layer takes `dtype` and `activity_regularizer`.
                let dtype = layers::weights::read_dtype(&mut reader);
                let activity = layers::weights::read_activity(&mut reader);
                let kind = layers::parse_kind(k, &mut reader).flatten();
                let ok = reader.finish() && dtype.is_some();
                (if ok { kind } else { None }, k, explicit, trainable, activity.flatten(), dtype == Some(true))
            }
            None => {
                let d = Diagnostic::new(span, format!("unknown layer `{kind_name}`"));
                let d = match (did_you_mean(&kind_name, layers::KINDS.iter().copied()), keras_activation_layer(&kind_name)) {
                    (_, Some(help)) => d.help(help),
                    (Some(s), None) => d.help(format!("did you mean `{s}`?")),
                    (None, None) => d.help(format!("layers: {}", layers::args::list(layers::KINDS))),
                };
                self.diags.push(d);
                (None, "Unknown", None, true, None, false)
            }
        };
        // A wrapper's wrapped layers are created first in Keras (the innermost first), so they take their
        // default names first.
        let wrapped: Vec<(&'static str, String)> =
            kind.as_ref().map(|k| (0..).map_while(|d| k.wrapped(d).map(|(t, n)| (t, n.to_string()))).collect()).unwrap_or_default();
        for (depth, (inner_type, inner_name)) in wrapped.into_iter().enumerate().rev() {
            match inner_name.as_str() {
                "" => self.auto_layers.push((id, Some(depth), layers::snake_case(inner_type))),
                n => self.claim_name(n, span),
            }
        }
        let name = match explicit {
            Some((n, nspan)) => {
                self.claim_name(&n, nspan);
                n
            }
            None => {
                self.auto_layers.push((id, None, layers::snake_case(keras_type)));
                String::new()
            }
        };
        self.out.layers.push(hir::Layer { name, kind, keras_type, span, binding, trainable, activity, float32 });
        id
    }

    // Rule: a layer's name, given with `name = "..."` or a nested model instance's (which prefixes its
    // layers' names), is not empty, holds no `/` (Keras rejects it: it separates the parts of weight
    // names) and is not used twice in the model. Claimed names are skipped by default names.
    fn claim_name(&mut self, n: &str, span: Span) {
        if let Some(first) = self.explicit_names.get(n) {
            let first = *first;
            self.diags.push(
                Diagnostic::new(span, format!("layer name \"{n}\" is used twice"))
                    .note(first, "first used here")
                    .help(format!("layer names must be unique: they name the weights (\"{n}/kernel\")")),
            );
        } else if n.is_empty() || n.contains('/') {
            self.diags.push(Diagnostic::new(span, format!("layer name \"{n}\" is not valid")).help("use a non-empty name without `/`"));
        }
        self.explicit_names.insert(n.to_string(), span);
    }

    /// Resolves a tensor expression to the value it denotes (`None`: poisoned, already reported).
    fn expr(&mut self, e: &Expr) -> Option<ValueId> {
        match e {
            Expr::Name(id) => self.lookup(id),
            Expr::List(l) => {
                self.diags.push(
                    Diagnostic::new(l.span, "a list of tensors can only be passed to a merge layer")
                        .help("write e.g. `Concatenate()([a, b])`"),
                );
                for item in &l.items {
                    self.expr(item);
                }
                None
            }
            Expr::Call(c) => {
                let values = self.call(c)?;
                match values.as_slice() {
                    [v] => Some(*v),
                    vs => {
                        let names: Vec<String> = match vs.first().and_then(|v| self.result_names(*v)) {
                            Some(r) if r.len() == vs.len() => r.iter().map(|n| n.to_string()).collect(),
                            _ => (0..vs.len()).map(|i| format!("out{i}")).collect(),
                        };
                        self.diags.push(
                            Diagnostic::new(c.callee.span(), format!("this call returns {} tensors", vs.len()))
                                .help(format!("bind them all: `let ({}) = ...;`", names.join(", "))),
                        );
                        None
                    }
                }
            }
        }
    }

    /// Every value an expression gives (several for a nested model with several outputs).
    fn expr_values(&mut self, e: &Expr) -> Option<Vec<ValueId>> {
        match e {
            Expr::Call(c) => self.call(c),
            other => self.expr(other).map(|v| vec![v]),
        }
    }

    fn call(&mut self, c: &ast::CallExpr) -> Option<Vec<ValueId>> {
        // The callee first, as Python evaluates it.
        let instance = match &c.callee {
            Callee::Instance(id) => match self.instances.get(&id.to_string()) {
                Some((i, _)) => {
                    self.called.insert(id.to_string());
                    *i
                }
                None => {
                    // Reported here; the operands are still resolved so their own mistakes show too.
                    self.unknown_layer(id);
                    Instance::Poisoned
                }
            },
            Callee::Ctor(ctor) => self.instantiate(ctor, None),
        };
        // Then the operands: Python evaluates `Dense(3)(Dense(8)(x))` callee first, so Keras names the outer
        // layer `dense` and the inner one `dense_1`; default names follow that order.
        let (operands, spans, list) = match c.arg.as_ref() {
            Expr::List(l) => {
                let mut ops = Vec::new();
                let mut spans = Vec::new();
                for item in &l.items {
                    if let Expr::List(inner) = item {
                        self.diags.push(
                            Diagnostic::new(inner.span, "nested lists are not allowed").help("pass a flat list of tensors: `[a, b, c]`"),
                        );
                        ops.push(None);
                    } else {
                        ops.push(self.expr(item));
                    }
                    spans.push(item.span());
                }
                (ops, spans, true)
            }
            other => (vec![self.expr(other)], vec![other.span()], false),
        };
        let (mut operands, mut spans) = (operands, spans);
        // Further positional tensors, as Keras calls take them (`mha(query, value, key)`): one tensor each.
        for e in &c.more {
            operands.push(self.expr(e));
            spans.push(e.span());
        }
        let positional = operands.len();
        let span = c.callee.span();
        let args = self.call_arguments(c, instance, &mut operands, &mut spans);
        let layer = match instance {
            Instance::Layer(l) => l,
            // Its keywords or further tensors were reported: the call is poisoned, not miscounted.
            Instance::Sub(_) if args.is_none() => return None,
            Instance::Sub(k) => return self.call_sub(k, operands, spans, list, span),
            Instance::Poisoned => return None,
        };
        let operands: Option<Vec<ValueId>> = operands.into_iter().collect();
        let (Some(inputs), Some((keywords, config))) = (operands, args) else {
            // How many results the call has is unknown too (`return_attention_scores = 1`): no second error
            // for the names bound to it.
            let v = self.new_value(None, span, Producer::Poisoned);
            self.unknown_results.insert(v);
            return Some(vec![v]);
        };
        let kind = config.as_ref().or_else(|| self.out.layers.get(layer.0).and_then(|l| l.kind.as_ref()));
        let n_results = kind.map(|k| k.result_names().len()).unwrap_or(1);
        let known = kind.is_some();
        let call_id = CallId(self.out.calls.len());
        let results: Vec<ValueId> = (0..n_results.max(1)).map(|_| self.new_value(None, span, Producer::Call(call_id))).collect();
        let (output, extra) = match results.split_first() {
            Some((first, rest)) => (*first, rest.to_vec()),
            None => return None,
        };
        if !known {
            self.unknown_results.insert(output);
        }
        self.out.calls.push(hir::Call { layer, inputs, input_spans: spans, list, positional, keywords, output, extra, span, config });
        Some(results)
    }

    /// The arguments of call `c` after its first one, the same way for every callee: further positional
    /// tensors (already in `operands`) and keyword arguments, each a tensor (a list of tensors:
    /// `initial_state = [h, c]`, `attention_mask = m`) or a literal (`use_causal_mask = true`). The tensors
    /// of keywords are resolved and appended to `operands`, each keyword naming its range. Then checked:
    /// a nested model takes neither; a keyword is given once and is one of the layer's
    /// [`LayerDef::call_keywords`]; the layer's [`LayerDef::call_args`] gives this call's configuration,
    /// or, for a layer without one, the call has no further positional tensor and only tensor keywords.
    /// Returns the keyword tensors and this call's configuration (`None`: the layer's own); `None` after
    /// an error (reported).
    fn call_arguments(
        &mut self,
        c: &ast::CallExpr,
        instance: Instance,
        operands: &mut Vec<Option<ValueId>>,
        spans: &mut Vec<Span>,
    ) -> Option<(Vec<hir::Keyword>, Option<layers::LayerKind>)> {
        let mut keywords: Vec<hir::Keyword> = Vec::new();
        for kw in &c.keywords {
            let start = operands.len();
            if let ast::CallValue::Tensor(e) = &kw.value {
                let items: Vec<&Expr> = match e {
                    Expr::List(l) => l.items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    operands.push(self.expr(item));
                    spans.push(item.span());
                }
                keywords.push(hir::Keyword { name: kw.key.to_string(), operands: start..operands.len(), span: kw.key.span() });
            }
        }
        let layer = match instance {
            Instance::Layer(l) => l,
            Instance::Sub(k) => {
                let prefix = self.subs.get(k).map(|s| s.prefix.clone()).unwrap_or_default();
                for kw in &c.keywords {
                    self.diags.push(
                        Diagnostic::new(kw.key.span(), format!("model `{prefix}` takes no keyword argument `{}`", kw.key))
                            .help(format!("pass its inputs as a list in input order: `{prefix}([a, b])`")),
                    );
                }
                if let Some(e) = c.more.first() {
                    self.diags.push(one_argument(e, "a model used as a layer"));
                }
                return (c.keywords.is_empty() && c.more.is_empty()).then_some((keywords, None));
            }
            Instance::Poisoned => return None,
        };
        // A layer whose arguments were invalid (reported): nothing more to check against.
        let Some(kind) = self.out.layers.get(layer.0).and_then(|l| l.kind.clone()) else { return Some((keywords, None)) };
        let keras_type = self.out.layers.get(layer.0).map(|l| l.keras_type).unwrap_or("this layer");
        if !self.no_keyword_twice(c) {
            return None;
        }
        let mut ok = true;
        // Checked by the layer first: it may reject a keyword it knows of with a reason
        // (`return_attention_scores` of MultiHeadAttention), which is better than "takes no call argument".
        let pairs: Vec<(&Ident, &ast::CallValue)> = c.keywords.iter().map(|k| (&k.key, &k.value)).collect();
        let cx = layers::CallArgsCx { positional: 1 + c.more.len(), keywords: &pairs, span: c.callee.span() };
        let config = match kind.call_args(&cx) {
            Some(Ok(config)) => Some(config),
            Some(Err(d)) => {
                self.diags.push(d);
                return None;
            }
            None => {
                if let Some(e) = c.more.first() {
                    self.diags.push(one_argument(e, keras_type));
                    return None;
                }
                None
            }
        };
        let accepted = kind.call_keywords();
        for kw in &c.keywords {
            let name = kw.key.to_string();
            if !accepted.contains(&name.as_str()) {
                self.diags.push(unknown_keyword(c, keras_type, &name, kw.key.span(), accepted));
                ok = false;
            } else if let (ast::CallValue::Literal(v), None) = (&kw.value, &config) {
                // Rule: a layer that takes no call-time options takes tensors by keyword.
                self.diags.push(
                    Diagnostic::new(
                        v.span,
                        format!("`{name}` of {keras_type} takes tensors, but is given {}", layers::args::describe(&v.kind)),
                    )
                    .help(format!("pass a tensor or a list of tensors, like `{name} = [a, b]`")),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        // The first call with a configuration of its own also configures the layer: its weights are
        // built on the first call's operands.
        if let Some(config) = &config {
            if !self.out.calls.iter().any(|k| k.layer == layer) {
                if let Some(l) = self.out.layers.get_mut(layer.0) {
                    l.kind = Some(config.clone());
                }
            }
        }
        Some((keywords, config))
    }

    // Rule: each keyword is given once in a call (several tensors go in one list). False after an error.
    fn no_keyword_twice(&mut self, c: &ast::CallExpr) -> bool {
        let mut ok = true;
        for (i, kw) in c.keywords.iter().enumerate() {
            let Some(first) = c.keywords.iter().take(i).find(|k| k.key == kw.key) else { continue };
            let (name, callee) = (kw.key.to_string(), callee_text(c));
            // Lists say several tensors were meant: they go in one list.
            let lists = [first, kw].iter().all(|k| matches!(k.value, ast::CallValue::Tensor(Expr::List(_))));
            let help = match lists {
                true => format!("give `{name}` once; several tensors go in one list, like `{name} = [h, c]`"),
                false => format!("give `{name}` once"),
            };
            self.diags.push(
                Diagnostic::new(kw.key.span(), format!("keyword `{name}` is given twice in this call of `{callee}`"))
                    .note(first.key.span(), "first given here")
                    .help(help),
            );
            ok = false;
        }
        ok
    }

    /// The names of the results of the layer call that produced `v` (`["sequences", "h", "c"]`), when its
    /// arguments are valid.
    fn result_names(&self, v: ValueId) -> Option<Vec<&'static str>> {
        let Producer::Call(c) = self.out.values.get(v.0)?.producer else { return None };
        let call = self.out.calls.get(c.0)?;
        self.out.call_kind(call).map(|k| k.result_names())
    }

    fn unknown_layer(&mut self, id: &Ident) {
        let name = id.to_string();
        let d = if self.scope.contains_key(&name) {
            Diagnostic::new(id.span(), format!("`{name}` is a tensor, not a layer")).help(format!(
                "call a layer on it instead, e.g. `Dense(8)({name})`, or declare a layer with `layer {name}_layer = Dense(8);`"
            ))
        } else if layers::KINDS.contains(&name.as_str()) {
            Diagnostic::new(id.span(), format!("`{name}` needs its arguments before the tensor"))
                .help(format!("write `{name}(...)(x)`: the first parentheses configure the layer, the second call it"))
        } else {
            let d = Diagnostic::new(id.span(), format!("unknown layer `{name}`"));
            let candidates: Vec<String> = self.instances.keys().cloned().collect();
            match did_you_mean(&name, candidates.iter().map(String::as_str).chain(layers::KINDS.iter().copied())) {
                Some(s) => d.help(format!("did you mean `{s}`? Declare a shared layer with `layer {name} = Dense(8);`")),
                None => d.help(format!("declare it with `layer {name} = Dense(8);` or call a constructor inline, e.g. `Dense(8)(x)`")),
            }
        };
        self.diags.push(d);
    }

    fn lookup(&mut self, id: &Ident) -> Option<ValueId> {
        let name = id.to_string();
        if let Some(v) = self.scope.get(&name) {
            return Some(*v);
        }
        let d = if self.instances.contains_key(&name) {
            Diagnostic::new(id.span(), format!("`{name}` is a layer, not a tensor")).help(format!("call it on a tensor: `{name}(x)`"))
        } else {
            let d = Diagnostic::new(id.span(), format!("unknown tensor `{name}`"));
            let candidates: Vec<String> = self.scope.keys().cloned().collect();
            match did_you_mean(&name, candidates.iter().map(String::as_str)) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None if candidates.is_empty() && self.out.inputs.is_empty() => {
                    self.no_input_reported = true;
                    d.help(format!("model `{}` has no input yet: declare one first, e.g. `input {name}: [8];`", self.out.name))
                }
                None if candidates.is_empty() => d.help("declare an input first: `input x: [8];`"),
                None => {
                    d.help(format!("tensors in scope: {}", layers::args::list(&candidates.iter().map(String::as_str).collect::<Vec<_>>())))
                }
            }
        };
        self.diags.push(d);
        None
    }

    fn bind(&mut self, name: &Ident, v: Option<ValueId>) {
        let v = match v {
            Some(v) => v,
            None => self.poisoned(name),
        };
        if let Some(val) = self.out.values.get_mut(v.0) {
            // Messages name a value by its first binding (`left`, not `dense_1`).
            if val.binding.is_none() {
                val.binding = Some(name.to_string());
            }
        }
        self.scope.insert(name.to_string(), v);
    }

    fn poisoned(&mut self, name: &Ident) -> ValueId {
        self.new_value(Some(name.to_string()), name.span(), Producer::Poisoned)
    }

    fn new_value(&mut self, binding: Option<String>, span: Span, producer: Producer) -> ValueId {
        let id = ValueId(self.out.values.len());
        self.out.values.push(hir::Value { binding, span, producer });
        id
    }

    /// Model-level rules: at least one input and one output; every input reaches an output.
    fn check_model(&mut self, model: &ast::Model) {
        if self.out.inputs.is_empty() && !self.no_input_reported {
            self.diags.push(
                Diagnostic::new(model.name.span(), format!("model `{}` has no input", model.name))
                    .help("declare one, e.g. `input x: [8];`"),
            );
        }
        if self.out.outputs.is_empty() {
            self.diags.push(
                Diagnostic::new(model.name.span(), format!("model `{}` has no output", model.name))
                    .help("return a tensor with e.g. `output y = Dense(1)(x);`"),
            );
        }
        for (name, (instance, span)) in &self.instances {
            // A poisoned instance was reported (or waits for a callback): say nothing more about it.
            let called = self.called.contains(name) || matches!(instance, Instance::Poisoned);
            if !called {
                self.diags.push(
                    Diagnostic::new(*span, format!("layer `{name}` is declared but never called"))
                        .help(format!("call it on a tensor, `{name}(x)`, or remove it")),
                );
            }
        }
    }

    /// Keras default names (`dense`, `dense_1`, ...) in creation order, skipping names taken explicitly.
    fn assign_auto_names(&mut self) {
        let mut counters: BTreeMap<String, usize> = BTreeMap::new();
        for (id, wrapped, prefix) in std::mem::take(&mut self.auto_layers) {
            let n = counters.entry(prefix.clone()).or_insert(0);
            let name = loop {
                let candidate = if *n == 0 { prefix.clone() } else { format!("{prefix}_{n}") };
                *n += 1;
                if !self.explicit_names.contains_key(&candidate) {
                    break candidate;
                }
            };
            match (self.out.layers.get_mut(id.0), wrapped) {
                (Some(l), None) => l.name = name,
                (Some(l), Some(depth)) => {
                    // The layer's configuration and every call's own one (call-time arguments) alike.
                    let configs = self.out.calls.iter_mut().filter(|c| c.layer == id).filter_map(|c| c.config.as_mut());
                    for k in l.kind.as_mut().into_iter().chain(configs) {
                        k.name_wrapped(depth, name.clone());
                    }
                }
                (None, _) => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::tests::{errors, ok_shapes};

    #[test]
    fn default_names_follow_python_evaluation_order_callee_before_operands() {
        use std::str::FromStr;
        let src = "struct M { input x: [4]; let h = Dense(6)(x); output y = Dense(3)(Dense(8)(h)); }";
        let mut diags = crate::diag::Diagnostics::new();
        let file = crate::parse::parse(proc_macro2::TokenStream::from_str(src).unwrap(), &mut diags);
        let hir = super::resolve(&file.models[0], &file, &mut diags);
        let named: Vec<(&str, usize)> = hir
            .layers
            .iter()
            .map(|l| match &l.kind {
                Some(crate::layers::LayerKind::Dense(d)) => (l.name.as_str(), d.units),
                _ => ("?", 0),
            })
            .collect();
        // As `keras.layers.Dense(3)(keras.layers.Dense(8)(h))` names them.
        assert_eq!(named, [("dense", 6), ("dense_1", 3), ("dense_2", 8)]);
    }

    #[test]
    fn one_tensor_cannot_be_two_outputs() {
        let e = errors("struct M { input a: [8]; let h = Dense(4)(a); output p = h; output q = h; }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "output `q` is the same tensor `h` as output `p`");
        assert_eq!(e[0].1.as_deref(), Some("give it its own layer, e.g. `output q = Activation(linear)(h);`, or use one output"));
        assert_eq!(
            ok_shapes("struct M { input a: [8]; let h = Dense(4)(a); output p = h; output q = Activation(linear)(h); }"),
            vec![vec![4], vec![4]]
        );
    }
}
