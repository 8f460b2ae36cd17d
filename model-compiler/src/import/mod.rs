//! Keras import: a Keras 3 model config (`config.json` of a `.keras` archive, or the `model_config`
//! attribute of a legacy `.h5` file) becomes `model!` source, one block per functional or Sequential
//! model. Each layer kind's argument mapping is its own `from_keras` (see [`crate::layers::keras_import`]);
//! this module walks the graph. Every problem is collected, none stops the walk: [`keras_to_source`]
//! returns all of them at once.

pub mod args;

use crate::layers::keras_import;
use args::KerasArgs;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Where a config came from, for the `///` line of each generated model.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file name (`model.keras`).
    pub file: String,
    /// The Keras version that wrote it (`3.15.1`).
    pub keras_version: String,
}

/// One generated model: its struct name and its `model!` body (the struct, without `model! { }`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSource {
    /// Struct name.
    pub name: String,
    /// The struct definition, indented as inside `model! { ... }`.
    pub body: String,
}

/// The generated models, nested ones first, the top model last.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// Every model.
    pub models: Vec<ModelSource>,
}

impl Imported {
    /// The source file: one `model!` block per model, formatted as rustfmt leaves it.
    pub fn source(&self) -> String {
        let blocks: Vec<String> = self.models.iter().map(|m| format!("model! {{\n{}}}\n", m.body)).collect();
        blocks.join("\n")
    }

    /// Every model in one invocation's tokens (for checking with the compiler, which resolves nested
    /// models of the same invocation without the callback round).
    pub fn single_invocation(&self) -> String {
        self.models.iter().map(|m| m.body.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The top model's struct name.
    pub fn top(&self) -> &str {
        self.models.last().map(|m| m.name.as_str()).unwrap_or("")
    }
}

/// Translates a Keras model config (JSON text) into `model!` source. `Err` lists every problem found,
/// each naming the Keras layer and class and what to do.
pub fn keras_to_source(config: &str, origin: &Origin) -> Result<Imported, Vec<String>> {
    let root: Value = serde_json::from_str(config).map_err(|e| vec![format!("the model config is not valid JSON: {e}")])?;
    let mixed = uses_mixed(&root);
    let mut cx = Cx { origin, models: Vec::new(), problems: Vec::new(), struct_names: BTreeSet::new(), mixed };
    cx.model(&root, true);
    if cx.problems.is_empty() {
        Ok(Imported { models: cx.models })
    } else {
        Err(cx.problems)
    }
}

struct Cx<'a> {
    origin: &'a Origin,
    models: Vec<ModelSource>,
    problems: Vec<String>,
    struct_names: BTreeSet<String>,
    /// Some layer computes under `mixed_bfloat16` (see [`uses_mixed`]).
    mixed: bool,
}

/// A layer entry of a functional config.
struct Entry<'v> {
    class: &'v str,
    name: String,
    config: &'v Map<String, Value>,
    raw: &'v Value,
    nodes: Vec<&'v Value>,
}

/// A reference to a tensor: (layer, node, tensor index).
type TensorRef = (String, usize, usize);

/// A model's statements, one per line.
struct Body {
    lines: Vec<String>,
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// `tower_dense` -> `TowerDense`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        let mut cs = part.chars();
        if let Some(f) = cs.next() {
            out.push(f.to_ascii_uppercase());
            out.extend(cs);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'M');
    }
    out
}

/// A Keras name as a Rust identifier: other characters become `_`, keywords get a trailing `_`.
pub fn ident(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 't');
    }
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop",
        "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
        "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro", "override",
        "priv", "typeof", "unsized", "virtual", "yield", "try", "input", "output", "layer",
    ];
    if KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// The Keras name of a layer's dtype policy (`dtype`: a string or a `DTypePolicy`); `float32` when
/// not given.
fn policy_name(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(d @ Value::Object(_)) => d.get("config").and_then(|c| str_of(c, "name")).unwrap_or("float32").to_string(),
        _ => String::from("float32"),
    }
}

/// The policy modelc has besides `float32`: Keras' `mixed_bfloat16`.
const MIXED: &str = "mixed_bfloat16";

/// Whether any layer of the config (nested models and wrapped layers included) computes under
/// `mixed_bfloat16`: then every generated model takes that policy (`#[dtype_policy]`), and the
/// layers Keras kept in float32 say so (`dtype = "float32"`), as the model meant it.
fn uses_mixed(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| (k == "dtype" && policy_name(Some(x)) == MIXED) || uses_mixed(x)),
        Value::Array(items) => items.iter().any(uses_mixed),
        _ => false,
    }
}

/// `[null, 8]` -> `[8]` (the batch dimension dropped), `None` when a dimension is not fixed.
fn dims(batch_shape: &Value) -> Option<Vec<u64>> {
    let all = batch_shape.as_array()?;
    all.iter().skip(1).map(Value::as_u64).collect()
}

/// The tensor references in a node argument (a tensor or a list of tensors).
fn refs(arg: &Value, out: &mut Vec<TensorRef>) -> bool {
    match arg {
        Value::Array(items) => items.iter().all(|i| refs(i, out)),
        Value::Object(_) => {
            let hist = arg.get("config").and_then(|c| c.get("keras_history")).and_then(Value::as_array);
            match hist.map(|h| h.as_slice()) {
                Some([l, n, t]) => {
                    out.push((l.as_str().unwrap_or("").to_string(), n.as_u64().unwrap_or(0) as usize, t.as_u64().unwrap_or(0) as usize));
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// The `keras.ops` entries Keras adds to compute masks (`NotEqual`, `Any`, `LogicalOr`, ...): op layers
/// whose results only reach calls as their `mask` keyword or through other such ops, and no output.
/// modelc computes masks itself (docs/masks.md), so the importer leaves them out.
fn mask_only_ops(entries: &[Entry<'_>], outputs: &BTreeSet<TensorRef>) -> BTreeSet<String> {
    // The legacy `.h5` config gives no module: there an op is a class that is no layer kind, or the
    // `Concatenate` op joining masks along the steps, whose config has no `trainable` (every layer's has).
    let is_op = |e: &Entry<'_>| match str_of(e.raw, "module") {
        Some(m) => m.starts_with("keras.src.ops"),
        None => {
            let concat_op = e.class == "Concatenate" && e.raw.get("config").is_some_and(|c| c.get("trainable").is_none());
            concat_op
                || (keras_import(e.class).is_none() && !matches!(e.class, "InputLayer" | "Functional" | "Sequential" | "Model" | "Lambda"))
        }
    };
    let mut set: BTreeSet<String> = entries.iter().filter(|e| is_op(e)).map(|e| e.name.clone()).collect();
    set.retain(|n| !outputs.iter().any(|r| &r.0 == n));
    loop {
        // A tensor read other than as a mask by an entry outside the set takes its producer out.
        let mut data_uses: BTreeSet<String> = BTreeSet::new();
        for e in entries.iter().filter(|e| !set.contains(&e.name)) {
            for node in &e.nodes {
                let mut t = Vec::new();
                for a in node.get("args").and_then(Value::as_array).into_iter().flatten() {
                    refs(a, &mut t);
                }
                for (kw, v) in node.get("kwargs").and_then(Value::as_object).into_iter().flatten() {
                    if kw != "mask" {
                        refs(v, &mut t);
                    }
                }
                data_uses.extend(t.into_iter().map(|r| r.0));
            }
        }
        let before = set.len();
        set.retain(|n| !data_uses.contains(n));
        if set.len() == before {
            return set;
        }
    }
}

/// `input_layers` / `output_layers`: one `[name, node, tensor]` or a list of them; or a dict of them
/// (output names from the keys).
fn endpoints(v: Option<&Value>, key: &str) -> Result<Vec<(Option<String>, TensorRef)>, String> {
    let one = |x: &Value| -> Option<TensorRef> {
        match x.as_array().map(Vec::as_slice) {
            Some([Value::String(l), n, t]) => Some((l.clone(), usize::try_from(n.as_u64()?).ok()?, usize::try_from(t.as_u64()?).ok()?)),
            _ => None,
        }
    };
    // A damaged entry is an error: dropping it would import a model with an input or output less.
    let bad = |x: &Value| format!("its `{key}` entry {x} is not [layer name, node index, tensor index]: re-save the model with Keras 3");
    match v {
        None => Ok(Vec::new()),
        Some(Value::Object(m)) => m.iter().map(|(k, x)| one(x).map(|r| (Some(k.clone()), r)).ok_or_else(|| bad(x))).collect(),
        Some(x) => match (one(x), x.as_array()) {
            (Some(r), _) => Ok(vec![(None, r)]),
            (None, Some(list)) => list.iter().map(|e| one(e).map(|r| (None, r)).ok_or_else(|| bad(e))).collect(),
            (None, None) => Err(bad(x)),
        },
    }
}

impl Cx<'_> {
    fn problem(&mut self, layer: &str, class: &str, msg: &str) {
        self.problems.push(format!("layer `{layer}` ({class}): {msg}"));
    }

    /// A layer entry without its `config` object: reported, as leaving the layer out would import
    /// another model (a Sequential's chain would just skip it).
    fn no_config(&mut self, model: &str, layer: &Value, class: &str) {
        let class = if class.is_empty() { "?" } else { class };
        let layer = match str_of(layer, "name") {
            Some(name) => format!("layer `{name}` ({class})"),
            None => format!("a layer of class {class}"),
        };
        self.problems.push(format!("model `{model}`: {layer} has no config object: re-save the model with Keras 3"));
    }

    fn struct_name(&mut self, model_name: &str) -> String {
        let base = camel(model_name);
        let mut name = base.clone();
        let mut k = 1;
        while !self.struct_names.insert(name.clone()) {
            name = format!("{base}{k}");
            k += 1;
        }
        name
    }

    /// Translates a model (functional or Sequential); returns its struct name and its output count.
    fn model(&mut self, v: &Value, top: bool) -> Option<(String, usize)> {
        let class = str_of(v, "class_name").unwrap_or("");
        let config = v.get("config").and_then(Value::as_object);
        let Some(config) = config else {
            self.problems.push(String::from("the model config has no `config` object: is this a Keras 3 model file?"));
            return None;
        };
        let name = config.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
        let body = match class {
            "Functional" | "Model" => self.functional(&name, config)?,
            "Sequential" => self.sequential(&name, config)?,
            other => {
                self.problem(&name, other, "only functional and Sequential models import; a subclassed model has no config to translate: rebuild it with the functional API");
                return None;
            }
        };
        let struct_name = self.struct_name(&name);
        let file = &self.origin.file;
        let version = &self.origin.keras_version;
        let doc = if top {
            format!("    /// Imported from `{file}` (Keras {version}) by `modelc import`.\n")
        } else {
            format!("    /// The nested model `{name}` of `{file}` (Keras {version}).\n")
        };
        let mut text = doc;
        if self.mixed {
            text.push_str(&format!("    #[dtype_policy = \"{MIXED}\"]\n"));
        }
        text.push_str(&format!("    pub struct {struct_name} {{\n"));
        for l in &body.lines {
            text.push_str(&format!("        {l}\n"));
        }
        text.push_str("    }\n");
        let outputs = body.lines.iter().filter(|l| l.starts_with("output ")).count();
        self.models.push(ModelSource { name: struct_name.clone(), body: text });
        Some((struct_name, outputs))
    }

    /// `input x: [8];` of an `InputLayer` config.
    fn input_line(&mut self, name: &str, config: &Map<String, Value>) -> Option<String> {
        let shape = config.get("batch_shape").or_else(|| config.get("batch_input_shape"));
        let Some(d) = shape.and_then(dims) else {
            self.problem(name, "InputLayer", "every dimension but the batch must be fixed: give keras.Input a full shape");
            return None;
        };
        let ty = match config.get("dtype").and_then(Value::as_str).unwrap_or("float32") {
            "float32" => "",
            "int32" | "int64" | "uint8" | "int16" | "int8" => " as i32",
            other => {
                self.problem(name, "InputLayer", &format!("input dtype `{other}` is not supported: use float32, or int32 for token ids"));
                return None;
            }
        };
        let d: Vec<String> = d.iter().map(u64::to_string).collect();
        Some(format!("input {}: [{}]{ty};", ident(name), d.join(", ")))
    }

    /// The constructor text of a plain layer (`Dense(16, activation = relu, name = "hidden")`), or of a
    /// nested model (`Tower(name = "tower")`) after translating it.
    fn constructor(&mut self, entry: &Entry<'_>) -> Option<(String, usize)> {
        let model = matches!(entry.class, "Functional" | "Sequential" | "Model");
        let trainable = entry.config.get("trainable").and_then(Value::as_bool).unwrap_or(true);
        let mut extra = vec![format!("name = \"{}\"", entry.name)];
        if !trainable {
            extra.push(String::from("trainable = false"));
        }
        // A layer's policy: the model's (nothing to write), or float32 in a mixed model.
        match policy_name(entry.config.get("dtype")).as_str() {
            _ if model => {}
            "float32" if self.mixed => extra.push(String::from("dtype = \"float32\"")),
            "float32" | MIXED => {}
            other => self.problem(
                &entry.name,
                entry.class,
                &format!("dtype policy `{other}` is not supported: modelc computes in float32 or under mixed_bfloat16 (f32 weights, bf16 matrix products); set the layer's dtype to one of them and save again"),
            ),
        }
        if model {
            let (struct_name, outputs) = self.model(entry.raw, false)?;
            return Some((format!("{struct_name}({})", extra.join(", ")), outputs));
        }
        let module = str_of(entry.raw, "module").unwrap_or("keras.layers");
        let op = module.starts_with("keras.src.ops");
        let custom = !op && (entry.raw.get("registered_name").is_some_and(|r| !r.is_null()) || !module.starts_with("keras"));
        let Some(map) = keras_import(entry.class).filter(|_| !custom && !op) else {
            let fix = match entry.class {
                "Lambda" => {
                    "a Lambda runs Python code modelc cannot translate: write it with built-in layers (merges, Activation, Rescaling, ...)"
                }
                _ if op => "a `keras.ops` operation in the graph (written as Python arithmetic, or added by Keras for a mask) is not a layer modelc has: write it with built-in layers (merges, Activation, Rescaling, ...)",
                _ if custom => "a custom layer runs Python code modelc cannot translate: replace it with built-in layers",
                _ => "modelc has no such layer: replace it with supported layers (see the layers chapter of the guide) and save again",
            };
            self.problem(&entry.name, entry.class, fix);
            return None;
        };
        let mut a = KerasArgs::new(entry.class, entry.config);
        map(&mut a);
        let results = a.results;
        let (mut args, problems) = a.finish();
        for p in problems {
            self.problem(&entry.name, entry.class, &p);
        }
        args.extend(extra);
        Some((format!("{}({})", entry.class, args.join(", ")), results))
    }

    fn functional(&mut self, model: &str, config: &Map<String, Value>) -> Option<Body> {
        let layers = config.get("layers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let mut entries = Vec::new();
        for l in layers {
            let class = str_of(l, "class_name").unwrap_or("");
            let Some(cfg) = l.get("config").and_then(Value::as_object) else {
                self.no_config(model, l, class);
                continue;
            };
            let name = str_of(l, "name").or_else(|| cfg.get("name").and_then(Value::as_str)).unwrap_or("").to_string();
            let nodes: Vec<&Value> = l.get("inbound_nodes").and_then(Value::as_array).map(|n| n.iter().collect()).unwrap_or_default();
            entries.push(Entry { class, name, config: cfg, raw: l, nodes });
        }
        let mut lines = Vec::new();
        let mut names: BTreeMap<TensorRef, String> = BTreeMap::new();
        let mut used_idents: BTreeSet<String> = BTreeSet::new();
        let (inputs, outputs) =
            match (endpoints(config.get("input_layers"), "input_layers"), endpoints(config.get("output_layers"), "output_layers")) {
                (Ok(i), Ok(o)) => (i, o),
                (i, o) => {
                    self.problems.extend([i.err(), o.err()].into_iter().flatten().map(|e| format!("model `{model}`: {e}")));
                    return None;
                }
            };
        for (_, (l, n, t)) in inputs {
            let Some(e) = entries.iter().find(|e| e.name == l && e.class == "InputLayer") else {
                self.problem(&l, "InputLayer", &format!("model `{model}` names an input that is not an InputLayer"));
                continue;
            };
            if let Some(line) = self.input_line(&e.name, e.config) {
                let id = ident(&e.name);
                used_idents.insert(id.clone());
                names.insert((l.clone(), n, t), id);
                lines.push(line);
            }
        }
        let out_refs: BTreeSet<TensorRef> = outputs.iter().map(|(_, r)| r.clone()).collect();
        // Constructors and their output counts, then every call in an order where operands come first.
        let mut ctors: BTreeMap<String, (String, usize)> = BTreeMap::new();
        let mut pending: Vec<(usize, usize)> = Vec::new();
        let mask_ops = mask_only_ops(&entries, &out_refs);
        for (i, e) in entries.iter().enumerate() {
            if e.class == "InputLayer" || mask_ops.contains(&e.name) {
                continue;
            }
            if let Some(c) = self.constructor(e) {
                ctors.insert(e.name.clone(), c);
            }
            pending.extend((0..e.nodes.len()).map(|k| (i, k)));
        }
        // Which tensors are read by a later call (an output read elsewhere needs a `let`).
        let mut consumed: BTreeSet<TensorRef> = BTreeSet::new();
        let mut node_refs: BTreeMap<(usize, usize), Vec<TensorRef>> = BTreeMap::new();
        let mut node_args: BTreeMap<(usize, usize), Vec<CallArg>> = BTreeMap::new();
        for &(i, k) in &pending {
            let (Some(e), mut r) = (entries.get(i), Vec::new()) else { continue };
            let node = e.nodes.get(k).copied().unwrap_or(&Value::Null);
            let args = node.get("args").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            // A layer refused already (it has no constructor) gets no second problem for its calls.
            let translated = ctors.contains_key(&e.name);
            // Keras' positional tensors (`mha(query, value, key)`), or one list of tensors.
            let mut call_args = Vec::new();
            let mut ok = !args.is_empty();
            for a in args {
                let mut t = Vec::new();
                ok &= refs(a, &mut t) && (!a.is_array() || args.len() == 1);
                r.extend(t.iter().cloned());
                call_args.push(CallArg { key: None, value: CallValue::Tensors(t, a.is_array()) });
            }
            if !ok && translated {
                self.problem(&e.name, e.class, "a call with other than tensors or one list of tensors is not supported");
            }
            // Call keywords: tensors (`attention_mask = m`) and flags (`use_causal_mask = true`), checked by
            // the layer when the generated model compiles.
            let kwargs = node.get("kwargs").and_then(Value::as_object);
            for (kw, v) in kwargs.into_iter().flatten().filter(|_| translated) {
                let mut t = Vec::new();
                let value = match v {
                    Value::Null => continue,
                    Value::Bool(_) if kw == "training" => continue,
                    // The mask Keras passes implicitly (computed by the ops it adds for a mask, skipped
                    // above): modelc derives it from the graph the same way (docs/masks.md).
                    _ if kw == "mask" && { refs(v, &mut t) && t.iter().all(|r| mask_ops.contains(&r.0)) } => continue,
                    _ if kw == "mask" => {
                        self.problem(&e.name, e.class, "it is given an explicit `mask` tensor, which modelc does not take: let a Masking layer or Embedding(mask_zero = True) make the mask and save again");
                        continue;
                    }
                    Value::Bool(b) => CallValue::Literal(b.to_string()),
                    Value::Object(_) if refs(v, &mut t) => CallValue::Tensors(t.clone(), false),
                    Value::Array(_) if refs(v, &mut t) => CallValue::Tensors(t.clone(), true),
                    _ => {
                        self.problem(
                            &e.name,
                            e.class,
                            &format!("call argument `{kw}` = {v} is not supported: call the layer on tensors only"),
                        );
                        continue;
                    }
                };
                r.extend(t);
                call_args.push(CallArg { key: Some(kw.clone()), value });
            }
            consumed.extend(r.iter().cloned());
            node_refs.insert((i, k), r);
            node_args.insert((i, k), call_args);
        }
        // After the calls' checks too, so that a layer refused for how it is called (a mask) is listed
        // with those refused for their arguments.
        if !self.problems.is_empty() {
            return None;
        }
        let shared: BTreeSet<usize> = entries.iter().enumerate().filter(|(_, e)| e.nodes.len() > 1).map(|(i, _)| i).collect();
        let mut declared: BTreeSet<usize> = BTreeSet::new();
        let mut out_named: BTreeMap<TensorRef, String> = BTreeMap::new();
        let mut out_used: BTreeSet<String> = BTreeSet::new();
        for (key, r) in &outputs {
            let base = ident(key.as_deref().unwrap_or(&r.0));
            let mut name = if r.1 > 0 && key.is_none() { format!("{base}_{}", r.1) } else { base };
            while !out_used.insert(name.clone()) {
                name.push('_');
            }
            out_named.insert(r.clone(), name);
        }
        let mut emitted_outputs: BTreeSet<TensorRef> = BTreeSet::new();
        while !pending.is_empty() {
            let ready = pending.iter().position(|(i, k)| node_refs.get(&(*i, *k)).is_some_and(|r| r.iter().all(|t| names.contains_key(t))));
            let Some(pos) = ready else {
                self.problems.push(format!("model `{model}`: its graph refers to tensors no layer produces"));
                return None;
            };
            let (i, k) = pending.remove(pos);
            let Some(e) = entries.get(i) else { continue };
            let Some((ctor, n_out)) = ctors.get(&e.name).cloned() else { continue };
            let n_out = node_results(n_out, e.nodes.get(k).copied());
            let operand: Vec<String> = node_args.get(&(i, k)).into_iter().flatten().map(|a| a.text(&names)).collect();
            let operand = operand.join(", ");
            let callee = if shared.contains(&i) {
                let id = ident(&e.name);
                if declared.insert(i) {
                    used_idents.insert(id.clone());
                    lines.push(format!("layer {id} = {ctor};"));
                }
                id
            } else {
                ctor
            };
            let call = format!("{callee}({operand})");
            let base = if shared.contains(&i) { format!("{}_{k}", ident(&e.name)) } else { ident(&e.name) };
            if n_out == 1 {
                let t = (e.name.clone(), k, 0);
                match out_named.get(&t) {
                    Some(o) if !consumed.contains(&t) => {
                        lines.push(format!("output {o} = {call};"));
                        emitted_outputs.insert(t.clone());
                        names.insert(t, o.clone());
                    }
                    _ => {
                        let v = fresh(&base, &mut used_idents);
                        lines.push(format!("let {v} = {call};"));
                        names.insert(t, v);
                    }
                }
            } else {
                let vs: Vec<String> = (0..n_out).map(|j| fresh(&format!("{base}_{j}"), &mut used_idents)).collect();
                lines.push(format!("let ({}) = {call};", vs.join(", ")));
                for (j, v) in vs.into_iter().enumerate() {
                    names.insert((e.name.clone(), k, j), v);
                }
            }
        }
        for (_, r) in &outputs {
            if emitted_outputs.contains(r) || !out_refs.contains(r) {
                continue;
            }
            match (out_named.get(r), names.get(r)) {
                (Some(o), Some(v)) => lines.push(format!("output {o} = {v};")),
                _ => self.problems.push(format!("model `{model}`: output `{}` is not computed by its graph", r.0)),
            }
        }
        Some(Body { lines })
    }

    fn sequential(&mut self, model: &str, config: &Map<String, Value>) -> Option<Body> {
        let layers = config.get("layers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let mut lines = Vec::new();
        let mut inputs = Vec::new();
        let mut rest = layers;
        match layers.split_first() {
            Some((first, tail)) if str_of(first, "class_name") == Some("InputLayer") => {
                let cfg = first.get("config").and_then(Value::as_object);
                let name = cfg.and_then(|c| c.get("name")).and_then(Value::as_str).unwrap_or("input").to_string();
                if let Some(line) = cfg.and_then(|c| self.input_line(&name, c)) {
                    inputs.push(ident(&name));
                    lines.push(line);
                }
                rest = tail;
            }
            _ => {
                let shape = config.get("build_input_shape");
                match shape.and_then(dims) {
                    Some(d) => {
                        let d: Vec<String> = d.iter().map(u64::to_string).collect();
                        inputs.push(String::from("x"));
                        lines.push(format!("input x: [{}];", d.join(", ")));
                    }
                    None => {
                        self.problem(
                            model,
                            "Sequential",
                            "the model has no input shape: start it with keras.Input(shape=...) and save again",
                        );
                        return None;
                    }
                }
            }
        }
        let mut current = inputs.first().cloned()?;
        let mut used: BTreeSet<String> = inputs.iter().cloned().collect();
        let count = rest.len();
        for (i, l) in rest.iter().enumerate() {
            let class = str_of(l, "class_name").unwrap_or("");
            let Some(cfg) = l.get("config").and_then(Value::as_object) else {
                self.no_config(model, l, class);
                continue;
            };
            let name = cfg.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let entry = Entry { class, name: name.clone(), config: cfg, raw: l, nodes: Vec::new() };
            let Some((ctor, n_out)) = self.constructor(&entry) else { continue };
            if n_out != 1 {
                self.problem(&name, class, "a model with several outputs cannot be a step of a Sequential model");
                continue;
            }
            let call = format!("{ctor}({current})");
            if i + 1 == count {
                let out = fresh(&ident(&name), &mut used);
                lines.push(format!("output {out} = {call};"));
            } else {
                let v = fresh(&ident(&name), &mut used);
                lines.push(format!("let {v} = {call};"));
                current = v;
            }
        }
        if count == 0 {
            self.problem(model, "Sequential", "the model has no layers");
        }
        Some(Body { lines })
    }
}

/// One argument of a call node: positional (`key` `None`) or by keyword.
struct CallArg {
    key: Option<String>,
    value: CallValue,
}

/// The value of a [`CallArg`].
enum CallValue {
    /// Tensors; `true` when written as a list (`[a, b]`).
    Tensors(Vec<TensorRef>, bool),
    /// A literal (`true`).
    Literal(String),
}

impl CallArg {
    /// The argument as the DSL writes it: `x`, `[a, b]`, `attention_mask = m`, `use_causal_mask = true`.
    fn text(&self, names: &BTreeMap<TensorRef, String>) -> String {
        let value = match &self.value {
            CallValue::Tensors(t, list) => {
                let ns: Vec<String> = t.iter().filter_map(|t| names.get(t).cloned()).collect();
                if *list {
                    format!("[{}]", ns.join(", "))
                } else {
                    ns.join(", ")
                }
            }
            CallValue::Literal(l) => l.clone(),
        };
        match &self.key {
            Some(k) => format!("{k} = {value}"),
            None => value,
        }
    }
}

/// `base`, or `base_` ... when taken.
fn fresh(base: &str, used: &mut BTreeSet<String>) -> String {
    let mut name = base.to_string();
    while !used.insert(name.clone()) {
        name.push('_');
    }
    name
}

/// How many tensors one call gives: the layer's count (`return_state = True` is configuration), one more
/// for a call with `return_attention_scores = True` (a call argument of the attention layers: Keras
/// configs do not carry it, its node's keyword arguments do).
fn node_results(layer_results: usize, node: Option<&Value>) -> usize {
    let scores = node.and_then(|n| n.get("kwargs")).and_then(|k| k.get("return_attention_scores")).and_then(Value::as_bool);
    layer_results + usize::from(scores == Some(true))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { file: String::from("m.keras"), keras_version: String::from("3.0.0") }
    }

    #[test]
    fn names_become_identifiers() {
        assert_eq!(ident("dense-1"), "dense_1");
        assert_eq!(ident("type"), "type_");
        assert_eq!(ident("1x"), "t1x");
        assert_eq!(camel("tower_dense"), "TowerDense");
    }

    /// A functional model `m` of an input `x` of 4 features, then `layers`, with `outputs`.
    fn functional(layers: &[serde_json::Value], outputs: serde_json::Value) -> String {
        let input = serde_json::json!({"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [null, 4], "dtype": "float32"}, "inbound_nodes": []});
        let layers: Vec<serde_json::Value> = std::iter::once(input).chain(layers.iter().cloned()).collect();
        let config = serde_json::json!({"name": "m", "layers": layers, "input_layers": [["x", 0, 0]], "output_layers": outputs});
        serde_json::json!({"class_name": "Functional", "config": config}).to_string()
    }

    #[test]
    fn every_unsupported_layer_is_reported_at_once() {
        let cfg = functional(
            &[
                serde_json::json!({"class_name": "Lambda", "name": "lam", "config": {"name": "lam", "function": "..."}, "inbound_nodes": []}),
                serde_json::json!({"class_name": "LSTM", "name": "rnn", "config": {"name": "rnn"}, "inbound_nodes": []}),
                serde_json::json!({"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 2, "mask_zero": true,
                    "dtype": {"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}}, "inbound_nodes": []}),
            ],
            serde_json::json!([["d", 0, 0]]),
        );
        let errs = keras_to_source(&cfg, &origin()).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].contains("`lam` (Lambda)"), "{errs:#?}");
        assert!(errs[1].contains("`rnn` (LSTM)"), "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("`d` (Dense)") && e.contains("mixed_float16")), "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("`d` (Dense)") && e.contains("mask_zero")), "{errs:#?}");
    }

    #[test]
    fn a_damaged_input_or_output_entry_is_refused_not_dropped() {
        let dense = |name: &str, units: usize| {
            let x = serde_json::json!({"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}});
            serde_json::json!({"class_name": "Dense", "name": name, "config": {"name": name, "units": units}, "inbound_nodes": [{"args": [x], "kwargs": {}}]})
        };
        let model = |outputs: serde_json::Value| functional(&[dense("a", 2), dense("b", 3)], outputs);
        let imported = keras_to_source(&model(serde_json::json!([["a", 0, 0], ["b", 0, 0]])), &origin()).unwrap();
        assert!(imported.source().contains("output a = ") && imported.source().contains("output b = "), "{}", imported.source());
        // Before, each of these imported a model with the output `b` silently left out.
        for damaged in [
            serde_json::json!([["a", 0, 0], ""]),
            serde_json::json!([["a", 0, 0], ["b", 0]]),
            serde_json::json!([["a", 0, 0], ["b", -1, 0]]),
        ] {
            let errs = keras_to_source(&model(damaged.clone()), &origin()).unwrap_err();
            assert_eq!(errs.len(), 1, "{damaged}: {errs:#?}");
            assert!(errs[0].starts_with("model `m`: its `output_layers` entry") && errs[0].contains("re-save"), "{errs:#?}");
        }
        let errs = keras_to_source(&model(serde_json::json!(7)), &origin()).unwrap_err();
        assert!(errs[0].contains("`output_layers` entry 7 is not [layer name, node index, tensor index]"), "{errs:#?}");
    }

    /// A Sequential model `seq` of an input `x` of 3 features, then `layers`.
    fn sequential(layers: &[serde_json::Value]) -> String {
        let input = serde_json::json!({"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 3], "dtype": "float32"}});
        let layers: Vec<serde_json::Value> = std::iter::once(input).chain(layers.iter().cloned()).collect();
        serde_json::json!({"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}).to_string()
    }

    #[test]
    fn a_sequential_model_is_a_chain() {
        let cfg = sequential(&[
            serde_json::json!({"class_name": "Dense", "config": {"name": "h", "units": 4, "activation": "relu", "use_bias": true}}),
            serde_json::json!({"class_name": "Dense", "config": {"name": "y", "units": 1, "activation": "linear", "use_bias": false}}),
        ]);
        let imported = keras_to_source(&cfg, &origin()).unwrap();
        assert_eq!(
            imported.source(),
            "model! {\n    /// Imported from `m.keras` (Keras 3.0.0) by `modelc import`.\n    pub struct Seq {\n        input x: [3];\n        \
             let h = Dense(4, activation = relu, name = \"h\")(x);\n        output y = Dense(1, use_bias = false, name = \"y\")(h);\n    }\n}\n"
        );
    }

    #[test]
    fn a_layer_without_its_config_is_refused_not_skipped() {
        // A Sequential model would have chained around the Activation and imported a linear model.
        let cfg = sequential(&[
            serde_json::json!({"class_name": "Dense", "config": {"name": "h", "units": 4}}),
            serde_json::json!({"class_name": "Activation", "config": "relu"}),
            serde_json::json!({"class_name": "Dense", "config": {"name": "y", "units": 1}}),
        ]);
        let errs = keras_to_source(&cfg, &origin()).unwrap_err();
        assert_eq!(errs, ["model `seq`: a layer of class Activation has no config object: re-save the model with Keras 3"]);
        let cfg =
            functional(&[serde_json::json!({"class_name": "Dense", "name": "d", "inbound_nodes": []})], serde_json::json!([["x", 0, 0]]));
        let errs = keras_to_source(&cfg, &origin()).unwrap_err();
        assert!(errs.iter().any(|e| e == "model `m`: layer `d` (Dense) has no config object: re-save the model with Keras 3"), "{errs:#?}");
    }

    #[test]
    fn several_tensors_and_call_options_are_written_as_keras_called_the_layer() {
        let t = |name: &str| serde_json::json!({"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}});
        let input = |name: &str, shape: serde_json::Value| serde_json::json!({"class_name": "InputLayer", "name": name, "config": {"name": name, "batch_shape": shape, "dtype": "float32"}, "inbound_nodes": []});
        let mha = |name: &str, nodes: serde_json::Value| {
            serde_json::json!({"module": "keras.layers", "class_name": "MultiHeadAttention", "name": name,
                "config": {"name": name, "num_heads": 2, "key_dim": 4, "value_dim": 4, "use_gate": false, "attention_axes": [1], "seed": null},
                "inbound_nodes": nodes})
        };
        let cfg = serde_json::json!({
            "class_name": "Functional",
            "config": {
                "name": "attend",
                "layers": [
                    input("q", serde_json::json!([null, 5, 8])), input("v", serde_json::json!([null, 7, 8])),
                    input("k", serde_json::json!([null, 7, 3])), input("m", serde_json::json!([null, 5, 7])),
                    mha("self", serde_json::json!([{"args": [t("q"), t("q")], "kwargs": {"use_causal_mask": true, "training": false}}])),
                    mha("cross", serde_json::json!([{"args": [t("self"), t("v"), t("k")], "kwargs": {"attention_mask": t("m"), "query_mask": null}}]))
                ],
                "input_layers": [["q", 0, 0], ["v", 0, 0], ["k", 0, 0], ["m", 0, 0]],
                "output_layers": [["cross", 0, 0]]
            }
        });
        let imported = keras_to_source(&cfg.to_string(), &origin()).unwrap();
        let src = imported.source();
        assert!(
            src.contains("let self_ = MultiHeadAttention(2, 4, attention_axes = (1,), name = \"self\")(q, q, use_causal_mask = true);"),
            "{src}"
        );
        assert!(
            src.contains(
                "output cross = MultiHeadAttention(2, 4, attention_axes = (1,), name = \"cross\")(self_, v, k, attention_mask = m);"
            ),
            "{src}"
        );
        assert!(crate::param_layout(&imported.single_invocation()).is_ok());
    }

    #[test]
    fn a_call_returning_attention_scores_binds_two_results() {
        let t = |name: &str, k: usize| serde_json::json!({"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, k]}});
        let cfg = serde_json::json!({
            "class_name": "Functional",
            "config": {
                "name": "scores",
                "layers": [
                    {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [null, 5, 8], "dtype": "float32"}, "inbound_nodes": []},
                    {"module": "keras.layers", "class_name": "MultiHeadAttention", "name": "mha",
                     "config": {"name": "mha", "num_heads": 2, "key_dim": 4, "value_dim": 4, "use_gate": false, "seed": null},
                     "inbound_nodes": [{"args": [t("x", 0), t("x", 0)], "kwargs": {"return_attention_scores": true, "use_causal_mask": true}}]}
                ],
                "input_layers": [["x", 0, 0]],
                "output_layers": [["mha", 0, 0], ["mha", 0, 1]]
            }
        });
        let imported = keras_to_source(&cfg.to_string(), &origin()).unwrap();
        let src = imported.source();
        assert!(
            src.contains("let (mha_0, mha_1) = MultiHeadAttention(2, 4, name = \"mha\")(x, x, return_attention_scores = true, use_causal_mask = true);"),
            "{src}"
        );
        assert!(src.contains("output mha = mha_0;\n        output mha_ = mha_1;"), "{src}");
        let layout = crate::param_layout(&imported.single_invocation());
        assert!(layout.is_ok(), "{src}: {layout:?}");
    }

    #[test]
    fn an_attention_layer_imports_with_its_list_call_and_flags() {
        let t = |name: &str| serde_json::json!({"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}});
        let input = |name: &str| serde_json::json!({"class_name": "InputLayer", "name": name, "config": {"name": name, "batch_shape": [null, 5, 4], "dtype": "float32"}, "inbound_nodes": []});
        let cfg = serde_json::json!({
            "class_name": "Functional",
            "config": {
                "name": "luong",
                "layers": [
                    input("q"), input("v"),
                    {"module": "keras.layers", "class_name": "Attention", "name": "att",
                     "config": {"name": "att", "use_scale": true, "score_mode": "concat", "dropout": 0.0, "seed": null},
                     "inbound_nodes": [{"args": [[t("q"), t("v")]], "kwargs": {"use_causal_mask": true, "return_attention_scores": true}}]}
                ],
                "input_layers": [["q", 0, 0], ["v", 0, 0]],
                "output_layers": [["att", 0, 0], ["att", 0, 1]]
            }
        });
        let imported = keras_to_source(&cfg.to_string(), &origin()).unwrap();
        let src = imported.source();
        assert!(
            src.contains("let (att_0, att_1) = Attention(use_scale = true, score_mode = concat, name = \"att\")([q, v], return_attention_scores = true, use_causal_mask = true);"),
            "{src}"
        );
        let layout = crate::param_layout(&imported.single_invocation());
        assert!(layout.is_ok(), "{src}: {layout:?}");
    }

    #[test]
    fn initial_states_given_by_keyword_are_written_as_a_list() {
        // An encoder-decoder: the decoder LSTM starts from the encoder's two final states.
        let t = |name: &str, k: usize| serde_json::json!({"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, k]}});
        let input = |name: &str, shape: serde_json::Value| serde_json::json!({"class_name": "InputLayer", "name": name, "config": {"name": name, "batch_shape": shape, "dtype": "float32"}, "inbound_nodes": []});
        let lstm = |name: &str, return_state: bool, nodes: serde_json::Value| {
            serde_json::json!({"module": "keras.layers", "class_name": "LSTM", "name": name,
                "config": {"name": name, "units": 4, "return_state": return_state}, "inbound_nodes": nodes})
        };
        let cfg = serde_json::json!({
            "class_name": "Functional",
            "config": {
                "name": "translate",
                "layers": [
                    input("src", serde_json::json!([null, 6, 3])), input("tgt", serde_json::json!([null, 5, 2])),
                    lstm("enc", true, serde_json::json!([{"args": [t("src", 0)], "kwargs": {}}])),
                    lstm("dec", false, serde_json::json!([{"args": [t("tgt", 0)], "kwargs": {"initial_state": [t("enc", 1), t("enc", 2)], "training": false}}]))
                ],
                "input_layers": [["src", 0, 0], ["tgt", 0, 0]],
                "output_layers": [["dec", 0, 0]]
            }
        });
        let imported = keras_to_source(&cfg.to_string(), &origin()).unwrap();
        let src = imported.source();
        assert!(src.contains("= LSTM(4, return_state = true, name = \"enc\")(src);"), "{src}");
        let dec = src.lines().find(|l| l.contains("name = \"dec\"")).unwrap_or_else(|| panic!("{src}"));
        assert!(dec.contains("(tgt, initial_state = ["), "{src}");
        assert!(crate::param_layout(&imported.single_invocation()).is_ok(), "{src}");
    }

    #[test]
    fn dict_outputs_take_their_keys_and_frozen_layers_stay_frozen() {
        let cfg = serde_json::json!({
            "class_name": "Functional",
            "config": {
                "name": "heads",
                "layers": [
                    {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [null, 4], "dtype": "float32"}, "inbound_nodes": []},
                    {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 2, "trainable": false},
                     "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}], "kwargs": {}}]}
                ],
                "input_layers": [["x", 0, 0]],
                "output_layers": {"score": ["d", 0, 0]}
            }
        });
        let src = keras_to_source(&cfg.to_string(), &origin()).unwrap().source();
        assert!(src.contains("output score = Dense(2, name = \"d\", trainable = false)(x);"), "{src}");
        assert!(crate::param_layout(&keras_to_source(&cfg.to_string(), &origin()).unwrap().single_invocation()).is_ok());
    }

    #[test]
    fn a_mixed_bfloat16_model_takes_the_policy_and_keeps_its_float32_layers() {
        let policy = |name: &str| serde_json::json!({"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}});
        let cfg = |out_policy: serde_json::Value| {
            serde_json::json!({
                "class_name": "Sequential",
                "config": {"name": "m", "layers": [
                    {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 3], "dtype": "float32"}},
                    {"class_name": "Dense", "config": {"name": "h", "units": 4, "dtype": policy("mixed_bfloat16")}},
                    {"class_name": "Dense", "config": {"name": "y", "units": 2, "activation": "softmax", "dtype": out_policy}}
                ]}
            })
        };
        let src = keras_to_source(&cfg(policy("float32")).to_string(), &origin()).unwrap();
        let text = src.source();
        assert!(text.contains("    #[dtype_policy = \"mixed_bfloat16\"]\n    pub struct M {"), "{text}");
        assert!(text.contains("let h = Dense(4, name = \"h\")(x);"), "{text}");
        assert!(text.contains("output y = Dense(2, activation = softmax, name = \"y\", dtype = \"float32\")(h);"), "{text}");
        assert!(crate::param_layout(&src.single_invocation()).is_ok(), "{text}");
        // Another policy is refused, naming the layer and both policies modelc has.
        let errs = keras_to_source(&cfg(policy("mixed_float16")).to_string(), &origin()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("`y` (Dense)") && errs[0].contains("mixed_float16") && errs[0].contains("mixed_bfloat16"), "{errs:#?}");
        // A float32 model has no attribute and no `dtype`.
        let plain = serde_json::json!({"class_name": "Sequential", "config": {"name": "p", "layers": [
            {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 3], "dtype": "float32"}},
            {"class_name": "Dense", "config": {"name": "y", "units": 2, "dtype": policy("float32")}}
        ]}});
        let text = keras_to_source(&plain.to_string(), &origin()).unwrap().source();
        assert!(!text.contains("dtype"), "{text}");
    }
}
