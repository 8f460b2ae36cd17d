//! Reading one Keras layer's `config` into `model!` arguments: what each layer kind's `from_keras`
//! (in its own file under `layers/`) uses. Every key of the config must be read, checked at its only
//! supported value, or be `null`; anything else is reported as unsupported, with what to do.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The arguments of one Keras layer being translated.
pub struct KerasArgs<'a> {
    class: &'a str,
    config: &'a Map<String, Value>,
    used: BTreeSet<String>,
    /// `model!` arguments written so far, in order (`16`, `activation = relu`).
    pub args: Vec<String>,
    /// What cannot be translated, each with what to do.
    pub problems: Vec<String>,
    /// How many tensors a call of the layer returns (`return_state = True`: the output and the states).
    pub results: usize,
}

/// A JSON value written as a `model!` argument value: `3`, `0.5`, `true`, `same`, `(3, 3)`, `(16,)`.
pub fn dsl_value(v: &Value) -> String {
    match v {
        Value::Null => String::from("None"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => float(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(dsl_value).collect();
            match parts.len() {
                1 => format!("({},)", parts.join("")),
                _ => format!("({})", parts.join(", ")),
            }
        }
        Value::Object(_) => String::from("{..}"),
    }
}

/// A float literal the DSL reads back exactly: `0.5`, `1e-7`, `2.0`.
pub fn float(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// The integers of an int or a list of ints.
fn ints(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Number(n) => n.as_i64().map(|i| vec![i]),
        Value::Array(items) => items.iter().map(Value::as_i64).collect(),
        _ => None,
    }
}

/// Keras' snake-case name of an initializer, regularizer or constraint class: `GlorotUniform` ->
/// `glorot_uniform`, `L1L2` -> `l1_l2`, `MaxNorm` -> `max_norm`.
pub fn snake(class: &str) -> String {
    match class {
        "L1L2" => String::from("l1_l2"),
        "L1" => String::from("l1"),
        "L2" => String::from("l2"),
        "NonNeg" => String::from("non_neg"),
        _ => crate::layers::snake_case(class),
    }
}

impl<'a> KerasArgs<'a> {
    /// Starts reading `config` of a layer of Keras class `class`. `name`, `trainable`, `dtype` and
    /// `build_config` are the importer's business and count as read.
    pub fn new(class: &'a str, config: &'a Map<String, Value>) -> Self {
        let used = ["name", "trainable", "dtype"].iter().map(|s| s.to_string()).collect();
        KerasArgs { class, config, used, args: Vec::new(), problems: Vec::new(), results: 1 }
    }

    /// The Keras class being read.
    pub fn class(&self) -> &str {
        self.class
    }

    /// The value of `key`, marked as read.
    pub fn get(&mut self, key: &str) -> Option<&'a Value> {
        self.used.insert(key.to_string());
        self.config.get(key).filter(|v| !v.is_null())
    }

    /// Records a problem with `key`.
    pub fn problem(&mut self, msg: String) {
        self.problems.push(msg);
    }

    /// A required argument written by position.
    pub fn positional(&mut self, key: &str) {
        match self.get(key) {
            Some(v) => {
                let v = match ints(v) {
                    Some(list) if list.len() == 1 && v.is_array() => Value::from(list.first().copied().unwrap_or(0)),
                    _ => v.clone(),
                };
                self.args.push(dsl_value(&v));
            }
            None => self.problem(format!("`{key}` is missing from the config: re-save the model with Keras 3")),
        }
    }

    /// `key = value` when the value differs from Keras' `default` (compared as JSON).
    pub fn kw(&mut self, key: &str, default: Value) {
        if let Some(v) = self.get(key) {
            if *v != default && !(v.is_number() && default.is_number() && v.as_f64() == default.as_f64()) {
                self.args.push(format!("{key} = {}", dsl_value(v)));
            }
        }
    }

    /// `key = (a, b)` (or `key = a`) for an int-or-tuple argument unless every entry is `default`.
    pub fn kw_tuple(&mut self, key: &str, default: i64) {
        let Some(v) = self.get(key) else { return };
        match ints(v) {
            Some(list) if list.is_empty() => self.problem(format!(
                "`{key}` = [] is empty: Keras gives one integer, or one per spatial axis; re-save the model with Keras 3"
            )),
            Some(list) if list.iter().all(|&x| x == default) => {}
            Some(list) if list.len() == 1 => self.args.push(format!("{key} = {}", list.first().copied().unwrap_or(default))),
            Some(_) => self.args.push(format!("{key} = {}", dsl_value(v))),
            None => self.problem(format!("`{key}` = {v} is not a list of integers")),
        }
    }

    /// `key` must be `expected` (or absent): anything else is unsupported, with `fix`.
    pub fn expect(&mut self, key: &str, expected: Value, fix: &str) {
        if let Some(v) = self.get(key) {
            if *v != expected {
                self.problem(format!("`{key}` = {v} is not supported: {fix}"));
            }
        }
    }

    /// `data_format` must be `channels_last`.
    pub fn channels_last(&mut self) {
        self.expect(
            "data_format",
            Value::from("channels_last"),
            "modelc tensors are channels-last; rebuild the layer with data_format=\"channels_last\"",
        );
    }

    /// The activation argument: `key = relu` unless linear.
    pub fn activation(&mut self, key: &str, positional: bool) {
        match self.get(key) {
            None => {}
            Some(Value::String(s)) if s == "linear" && !positional => {}
            Some(Value::String(s)) => {
                let name = s.clone();
                self.args.push(if positional { name } else { format!("{key} = {name}") });
            }
            Some(v) => self.problem(format!(
                "`{key}` = {v} is a custom or configured activation: use a built-in one by name (relu, gelu, ...) or an Activation layer"
            )),
        }
    }

    /// An initializer: `key = he_normal`, `key = he_normal(seed = 3)`, `key = constant(value = 0.5)` when
    /// it is not Keras' `default` class with its default configuration.
    pub fn initializer(&mut self, key: &str, default: &str) {
        let Some(v) = self.get(key) else { return };
        let Some(class) = v.get("class_name").and_then(Value::as_str) else {
            return self.problem(format!("`{key}` = {v} is not a Keras initializer"));
        };
        let config = v.get("config").and_then(Value::as_object);
        let written: Vec<(&String, &Value)> =
            config.map(|c| c.iter().filter(|(k, v)| !v.is_null() && !default_init_arg(class, k, v)).collect()).unwrap_or_default();
        if class == default && written.is_empty() {
            return;
        }
        self.args.push(format!("{key} = {}", call(&snake(class), &written)));
    }

    /// A regularizer or constraint (`null` by default): `key = l2(l2 = 1e-4)`, `key = max_norm(max_value = 2.0)`.
    pub fn optional_object(&mut self, key: &str) {
        let Some(v) = self.get(key) else { return };
        let Some(class) = v.get("class_name").and_then(Value::as_str) else {
            return self.problem(format!("`{key}` = {v} is not a Keras regularizer or constraint"));
        };
        let config = v.get("config").and_then(Value::as_object);
        let written: Vec<(&String, &Value)> = config.map(|c| c.iter().filter(|(_, v)| !v.is_null()).collect()).unwrap_or_default();
        self.args.push(format!("{key} = {}", call(&snake(class), &written)));
    }

    /// The kernel-and-bias arguments every weighted layer has (`kernel` may be `depthwise`): initializers,
    /// regularizers, constraints and the activity regularizer.
    pub fn weights(&mut self, kernel: &str, kernel_init: &str) {
        self.initializer(&format!("{kernel}_initializer"), kernel_init);
        self.initializer("bias_initializer", "Zeros");
        for what in [format!("{kernel}_regularizer"), String::from("bias_regularizer"), String::from("activity_regularizer")] {
            self.optional_object(&what);
        }
        for what in [format!("{kernel}_constraint"), String::from("bias_constraint")] {
            self.optional_object(&what);
        }
    }

    /// A layer given as an argument (`TimeDistributed`'s `layer`): its constructor with its Keras name,
    /// `Dense(8, name = "dense")`, written by the wrapped class's own mapping; its problems are this
    /// layer's, naming the argument.
    pub fn layer(&mut self, key: &str, positional: bool) {
        let Some(v) = self.get(key) else {
            return self.problem(format!("`{key}` is missing from the config: re-save the model with Keras 3"));
        };
        let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
        let module = v.get("module").and_then(Value::as_str).unwrap_or("keras.layers");
        let custom = v.get("registered_name").is_some_and(|r| !r.is_null()) || !module.starts_with("keras.layers");
        let map = crate::layers::keras_import(class).filter(|_| !custom);
        let (Some(config), Some(map)) = (v.get("config").and_then(Value::as_object), map) else {
            return self.problem(format!("its `{key}` is a {class}, which modelc has no layer for: wrap a built-in layer"));
        };
        let dtype = config.get("dtype").map(|d| d.get("config").and_then(|c| c.get("name")).unwrap_or(d));
        // The wrapper's own policy is the one the layer computes with (the model's `mixed_bfloat16`,
        // or float32): the wrapped layer's may be either.
        if dtype.is_some_and(|d| d.as_str().is_some_and(|n| n != "float32" && n != "mixed_bfloat16")) {
            self.problem(format!(
                "its `{key}` {class} has dtype {}: modelc computes in float32 or under mixed_bfloat16",
                dtype.unwrap_or(&Value::Null)
            ));
        }
        let frozen = |c: &Map<String, Value>| c.get("trainable").and_then(Value::as_bool) == Some(false);
        if frozen(config) && !frozen(self.config) {
            self.problem(format!(
                "its `{key}` {class} is frozen inside a trainable {}: modelc freezes the two together; set trainable on the {} instead and save again",
                self.class, self.class
            ));
        }
        let (mut args, problems, _) = translate(class, config, map);
        self.problems.extend(problems.into_iter().map(|p| format!("its `{key}` {class}: {p}")));
        if let Some(name) = config.get("name").and_then(Value::as_str) {
            args.push(format!("name = \"{name}\""));
        }
        let ctor = format!("{class}({})", args.join(", "));
        self.args.push(if positional { ctor } else { format!("{key} = {ctor}") });
    }

    /// The layer config nested under `key` (a wrapper's `{"class_name": "LSTM", "config": {..}}`), edited by
    /// `edit`, translated by its class's own mapping: the class, the arguments and the result count of
    /// its constructor. Its problems are this layer's, naming `key`; `None` when it cannot be translated.
    pub fn nested_layer(&mut self, key: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Option<(String, Vec<String>, usize)> {
        let v = self.get(key)?;
        let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
        let (Some(map), Some(config)) = (crate::layers::keras_import(class), v.get("config").and_then(Value::as_object)) else {
            self.problem(format!("`{key}` = {v} is not a layer modelc has"));
            return None;
        };
        let mut config = config.clone();
        edit(&mut config);
        let (args, problems, results) = translate(class, &config, map);
        let failed = !problems.is_empty();
        self.problems.extend(problems.into_iter().map(|p| format!("`{key}` ({class}): {p}")));
        (!failed).then(|| (class.to_string(), args, results))
    }

    /// Reports every key of the config that was not read and is not `null`.
    pub fn finish(mut self) -> (Vec<String>, Vec<String>) {
        for (k, v) in self.config {
            if !self.used.contains(k) && !v.is_null() {
                self.problems.push(format!("argument `{k}` = {v} is not supported by modelc: remove it from the layer and save again"));
            }
        }
        (self.args, self.problems)
    }
}

/// `name(k = v, ...)`, or `name` alone without arguments.
fn call(name: &str, args: &[(&String, &Value)]) -> String {
    if args.is_empty() {
        return name.to_string();
    }
    let parts: Vec<String> = args.iter().map(|(k, v)| format!("{k} = {}", dsl_value(v))).collect();
    format!("{name}({})", parts.join(", "))
}

/// Whether `k = v` is the default of initializer `class` (left out when writing it).
fn default_init_arg(class: &str, k: &str, v: &Value) -> bool {
    let f = v.as_f64();
    match (class, k) {
        ("RandomUniform", "minval") => f == Some(-0.05),
        ("RandomUniform", "maxval") => f == Some(0.05),
        ("RandomNormal" | "TruncatedNormal", "mean") => f == Some(0.0),
        ("RandomNormal" | "TruncatedNormal", "stddev") => f == Some(0.05),
        ("Orthogonal" | "Identity", "gain") => f == Some(1.0),
        ("Constant", "value") => f == Some(0.0),
        ("VarianceScaling", _) => false,
        _ => false,
    }
}

/// A nested layer's `config` translated by its class's mapping `map`: the constructor's arguments, the
/// problems, and the number of results the constructor returns.
fn translate(class: &str, config: &Map<String, Value>, map: fn(&mut KerasArgs<'_>)) -> (Vec<String>, Vec<String>, usize) {
    let mut inner = KerasArgs::new(class, config);
    map(&mut inner);
    let results = inner.results;
    let (args, problems) = inner.finish();
    (args, problems, results)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_dsl_reads_them() {
        assert_eq!(dsl_value(&serde_json::json!([3, 3])), "(3, 3)");
        assert_eq!(dsl_value(&serde_json::json!([16])), "(16,)");
        assert_eq!(dsl_value(&serde_json::json!(0.001)), "0.001");
        assert_eq!(dsl_value(&serde_json::json!(2.0)), "2.0");
        assert_eq!(dsl_value(&serde_json::json!("same")), "same");
        assert_eq!(float(1e-7), "1e-7");
    }

    #[test]
    fn int_or_tuple_arguments_keep_what_differs_from_the_default_and_reject_an_empty_list() {
        let cfg = serde_json::json!({"strides": [2, 2], "dilation_rate": [1, 1], "kernel_size": 3, "padding": []});
        let mut a = KerasArgs::new("Conv2D", cfg.as_object().unwrap());
        a.kw_tuple("strides", 1);
        a.kw_tuple("dilation_rate", 1);
        a.kw_tuple("kernel_size", 1);
        // An empty list is no stride at all, not the default: Keras itself refuses it.
        a.kw_tuple("padding", 1);
        let (args, problems) = a.finish();
        assert_eq!(args, ["strides = (2, 2)", "kernel_size = 3"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`padding` = [] is empty"), "{problems:?}");
    }

    #[test]
    fn non_default_initializers_and_regularizers_are_written_in_the_dsl_syntax() {
        let cfg = serde_json::json!({
            "kernel_initializer": {"class_name": "HeNormal", "config": {"seed": 3}},
            "bias_initializer": {"class_name": "Constant", "config": {"value": 0.5}},
            "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.01}},
            "bias_regularizer": null, "activity_regularizer": null,
            "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2.0, "axis": 0}},
            "bias_constraint": null,
            "surprise": 1
        });
        let mut a = KerasArgs::new("Dense", cfg.as_object().unwrap());
        a.weights("kernel", "GlorotUniform");
        let (args, problems) = a.finish();
        assert_eq!(
            args,
            [
                "kernel_initializer = he_normal(seed = 3)",
                "bias_initializer = constant(value = 0.5)",
                "kernel_regularizer = l1_l2(l1 = 0.01, l2 = 0.01)",
                "kernel_constraint = max_norm(axis = 0, max_value = 2.0)",
            ]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("surprise"));
    }

    #[test]
    fn a_wrapped_layer_is_written_by_its_own_mapping_with_its_name() {
        let cfg = serde_json::json!({
            "layer": {"module": "keras.layers", "class_name": "Dense", "registered_name": null,
                      "config": {"name": "step", "units": 4, "activation": "tanh", "use_bias": true, "quantization_config": null}}
        });
        let mut a = KerasArgs::new("TimeDistributed", cfg.as_object().unwrap());
        a.layer("layer", true);
        assert_eq!(a.finish(), (vec![String::from("Dense(4, activation = tanh, name = \"step\")")], vec![]));
        let cfg = serde_json::json!({"layer": {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "f"}}});
        let mut a = KerasArgs::new("TimeDistributed", cfg.as_object().unwrap());
        a.layer("layer", true);
        let (_, problems) = a.finish();
        assert!(problems.len() == 1 && problems[0].contains("its `layer` is a Lambda"), "{problems:?}");
        let cfg = serde_json::json!({"layer": {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2, "surprise": 1}}});
        let mut a = KerasArgs::new("TimeDistributed", cfg.as_object().unwrap());
        a.layer("layer", true);
        let (_, problems) = a.finish();
        assert!(problems.len() == 1 && problems[0].starts_with("its `layer` Dense: argument `surprise`"), "{problems:?}");
        let cfg = serde_json::json!({"layer": {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2, "trainable": false}}});
        let mut a = KerasArgs::new("TimeDistributed", cfg.as_object().unwrap());
        a.layer("layer", true);
        let (_, problems) = a.finish();
        assert!(
            problems.len() == 1 && problems[0].starts_with("its `layer` Dense is frozen inside a trainable TimeDistributed"),
            "{problems:?}"
        );
    }

    #[test]
    fn default_initializers_are_left_out() {
        let cfg = serde_json::json!({
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
        });
        let mut a = KerasArgs::new("Dense", cfg.as_object().unwrap());
        a.weights("kernel", "GlorotUniform");
        assert_eq!(a.finish(), (vec![], vec![]));
    }
}
