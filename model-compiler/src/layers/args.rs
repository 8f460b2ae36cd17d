//! Typed access to a constructor's arguments, with Keras-worded errors and "did you mean" hints.

use crate::ast::{ArgKind, ArgValue, Args, Ctor};
use crate::diag::{Diagnostic, Diagnostics};
use crate::suggest::did_you_mean;
use proc_macro2::Span;

/// Reads one constructor's arguments by keyword or position; reports every problem into the sink.
/// A layer's `parse` asks for each argument it knows, then `finish` reports the ones nobody asked for.
pub struct ArgReader<'a> {
    kind: &'static str,
    span: Span,
    args: Vec<(&'a crate::ast::Arg, bool)>,
    known: Vec<&'static str>,
    positional_seen: usize,
    errors: usize,
    diags: &'a mut Diagnostics,
}

impl<'a> ArgReader<'a> {
    /// A reader over `args` of a `kind` constructor written at `span`.
    pub fn new(kind: &'static str, span: Span, args: Option<&'a Args>, diags: &'a mut Diagnostics) -> Self {
        let args = args.map(|a| a.items.iter().map(|x| (x, false)).collect()).unwrap_or_default();
        ArgReader { kind, span, args, known: Vec::new(), positional_seen: 0, errors: 0, diags }
    }

    /// The layer kind being read.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Span of the constructor.
    pub fn span(&self) -> Span {
        self.span
    }

    /// Records an error about this constructor.
    pub fn error(&mut self, d: Diagnostic) {
        self.errors += 1;
        self.diags.push(d);
    }

    /// True if any argument error was reported.
    pub fn failed(&self) -> bool {
        self.errors > 0
    }

    /// The raw value of argument `name`, given by keyword or at position `pos` (positions count
    /// only positional arguments). Reports an argument given both ways.
    pub fn raw(&mut self, name: &'static str, pos: Option<usize>) -> Option<ArgValue> {
        self.known.push(name);
        let mut found: Option<ArgValue> = None;
        let mut positional_index = 0usize;
        let mut twice: Option<Span> = None;
        for (arg, used) in self.args.iter_mut() {
            let hit = match &arg.key {
                Some(k) => k == name,
                None => {
                    let here = Some(positional_index) == pos;
                    positional_index += 1;
                    here
                }
            };
            if hit {
                if found.is_some() {
                    twice = Some(arg.value.span);
                } else {
                    found = Some(arg.value.clone());
                }
                *used = true;
            }
        }
        if let Some(p) = pos {
            self.positional_seen = self.positional_seen.max(p + 1);
        }
        if let Some(span) = twice {
            self.error(
                Diagnostic::new(span, format!("`{name}` of {} is given twice", self.kind))
                    .help("give each argument once, by position or by keyword"),
            );
        }
        found
    }

    /// A required positive integer (`units`, `filters`).
    pub fn required_positive(&mut self, name: &'static str, pos: Option<usize>) -> Option<usize> {
        match self.raw(name, pos) {
            Some(v) => self.positive_value(name, &v),
            None => {
                let kind = self.kind;
                self.error(
                    Diagnostic::new(self.span, format!("{kind} is missing its required argument `{name}`"))
                        .help(format!("write it first, e.g. `{kind}(16)` or `{kind}({name} = 16)`")),
                );
                None
            }
        }
    }

    /// An optional positive integer with a default.
    pub fn positive_or(&mut self, name: &'static str, pos: Option<usize>, default: usize) -> Option<usize> {
        match self.raw(name, pos) {
            Some(v) => self.positive_value(name, &v),
            None => Some(default),
        }
    }

    fn positive_value(&mut self, name: &'static str, v: &ArgValue) -> Option<usize> {
        match v.kind {
            ArgKind::Int(n) if n > 0 => usize::try_from(n).ok(),
            ArgKind::Int(n) => {
                let kind = self.kind;
                self.error(
                    Diagnostic::new(v.span, format!("`{name}` of {kind} must be a positive integer, got {n}"))
                        .help(format!("use a size of at least 1 for `{name}`")),
                );
                None
            }
            _ => {
                self.type_error(name, v, "a positive integer");
                None
            }
        }
    }

    /// An optional integer (may be negative, e.g. an axis) with a default.
    pub fn int_or(&mut self, name: &'static str, pos: Option<usize>, default: i64) -> Option<i64> {
        match self.raw(name, pos) {
            Some(ArgValue { kind: ArgKind::Int(n), .. }) => Some(n),
            Some(v) => {
                self.type_error(name, &v, "an integer");
                None
            }
            None => Some(default),
        }
    }

    /// An optional boolean with a default.
    pub fn bool_or(&mut self, name: &'static str, pos: Option<usize>, default: bool) -> Option<bool> {
        match self.raw(name, pos) {
            Some(ArgValue { kind: ArgKind::Bool(b), .. }) => Some(b),
            Some(v) => {
                self.type_error(name, &v, "`true` or `false`");
                None
            }
            None => Some(default),
        }
    }

    /// An optional float with a default (integers accepted).
    pub fn float_or(&mut self, name: &'static str, pos: Option<usize>, default: f64) -> Option<f64> {
        match self.raw(name, pos) {
            // The emitted code holds the value as a float32 literal, which must be finite.
            Some(ArgValue { kind: ArgKind::Float(x), span }) if !(x as f32).is_finite() => {
                let kind = self.kind;
                self.error(
                    Diagnostic::new(span, format!("`{name}` of {kind} is {x:?}, which is not a finite float32 number"))
                        .help(format!("use a value between -3.4e38 and 3.4e38, like `{name} = {default:?}`")),
                );
                None
            }
            Some(ArgValue { kind: ArgKind::Float(x), .. }) => Some(x),
            Some(ArgValue { kind: ArgKind::Int(n), .. }) => Some(n as f64),
            Some(v) => {
                self.type_error(name, &v, "a number");
                None
            }
            None => Some(default),
        }
    }

    /// An optional float in a range with a default.
    pub fn float_in_or(&mut self, name: &'static str, pos: Option<usize>, default: f64, lo: f64, hi: f64, hi_open: bool) -> Option<f64> {
        let span = self.peek_span(name, pos);
        let x = self.float_or(name, pos, default)?;
        let ok = x >= lo && if hi_open { x < hi } else { x <= hi };
        if ok {
            Some(x)
        } else {
            let kind = self.kind;
            let close = if hi_open { ")" } else { "]" };
            self.error(Diagnostic::new(span.unwrap_or(self.span), format!("`{name}` of {kind} must be in [{lo}, {hi}{close}, got {x}")));
            None
        }
    }

    fn peek_span(&self, name: &str, pos: Option<usize>) -> Option<Span> {
        let mut positional_index = 0usize;
        for (arg, _) in &self.args {
            match &arg.key {
                Some(k) if k == name => return Some(arg.value.span),
                Some(_) => {}
                None => {
                    if Some(positional_index) == pos {
                        return Some(arg.value.span);
                    }
                    positional_index += 1;
                }
            }
        }
        None
    }

    /// An optional identifier-or-string choice among `choices` (e.g. `padding = same`), with a default.
    pub fn choice_or(
        &mut self,
        name: &'static str,
        pos: Option<usize>,
        choices: &[&'static str],
        default: &'static str,
    ) -> Option<&'static str> {
        let v = match self.raw(name, pos) {
            Some(v) => v,
            None => return Some(default),
        };
        let word = match &v.kind {
            ArgKind::Ident(id) => id.to_string(),
            ArgKind::Str(s) => s.clone(),
            _ => {
                self.type_error(name, &v, &format!("one of {}", list(choices)));
                return None;
            }
        };
        if let Some(c) = choices.iter().find(|c| **c == word) {
            return Some(c);
        }
        let kind = self.kind;
        let mut d = Diagnostic::new(v.span, format!("unknown {name} `{word}` for {kind}"));
        d = match did_you_mean(&word, choices.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`? {name} is one of {}", list(choices))),
            None => d.help(format!("{name} is one of {}", list(choices))),
        };
        self.error(d);
        None
    }

    /// An optional string (e.g. `name = "left_dense"`).
    pub fn string(&mut self, name: &'static str) -> Option<(String, Span)> {
        match self.raw(name, None) {
            Some(ArgValue { kind: ArgKind::Str(s), span }) => Some((s, span)),
            Some(v) => {
                self.type_error(name, &v, "a string literal");
                None
            }
            None => None,
        }
    }

    /// An optional tuple of positive integers, a single integer meaning the same value `n` times
    /// (Keras' `kernel_size = 3` for `(3, 3)`), with a default.
    pub fn positive_tuple_or(&mut self, name: &'static str, pos: Option<usize>, n: usize, default: &[usize]) -> Option<Vec<usize>> {
        let v = match self.raw(name, pos) {
            Some(v) => v,
            None => return Some(default.to_vec()),
        };
        let kind = self.kind;
        match &v.kind {
            ArgKind::Int(_) => self.positive_value(name, &v).map(|x| vec![x; n]),
            ArgKind::Tuple(items) if items.len() == n => {
                let mut out = Vec::with_capacity(n);
                for it in items {
                    out.push(self.positive_value(name, it));
                }
                out.into_iter().collect()
            }
            ArgKind::Tuple(items) => {
                self.error(Diagnostic::new(v.span, format!("`{name}` of {kind} needs {n} values, got {}", items.len())));
                None
            }
            _ => {
                self.type_error(name, &v, &format!("an integer or a tuple of {n} integers"));
                None
            }
        }
    }

    /// A tuple of integers, any may be -1 (`Reshape((4, -1))`).
    pub fn int_tuple(&mut self, name: &'static str, pos: Option<usize>) -> Option<(Vec<i64>, Span)> {
        let v = self.raw(name, pos)?;
        let items: Vec<ArgValue> = match &v.kind {
            ArgKind::Tuple(items) => items.clone(),
            ArgKind::Int(_) => vec![v.clone()],
            _ => {
                self.type_error(name, &v, "a tuple of integers");
                return None;
            }
        };
        let mut out = Vec::new();
        for it in &items {
            match it.kind {
                ArgKind::Int(n) => out.push(n),
                _ => {
                    self.type_error(name, it, "an integer");
                    return None;
                }
            }
        }
        Some((out, v.span))
    }

    /// A layer constructor given as an argument (`TimeDistributed(Dense(8))`), parsed with its own
    /// arguments into the same sink. `None` when absent (nothing reported) or invalid (reported).
    pub fn layer(&mut self, name: &'static str, pos: Option<usize>) -> Option<Wrapped> {
        let v = self.raw(name, pos)?;
        let Some(ctor) = v.kind.as_ctor() else {
            self.type_error(name, &v, "a layer, e.g. `Dense(8)`");
            return None;
        };
        self.layer_ctor(&ctor, v.span)
    }

    /// The layer constructor `ctor` given as an argument at `span`, read as that layer's own constructor
    /// (its `name = "..."` included) into the same sink; its problems count as this constructor's.
    /// For a wrapper that checks the value itself first (`Bidirectional` takes recurrent layers only).
    pub fn layer_ctor(&mut self, ctor: &Ctor, span: Span) -> Option<Wrapped> {
        let word = crate::parse::path_text(&ctor.path);
        let Some(k) = super::KINDS.iter().copied().find(|k| *k == word) else {
            let d = Diagnostic::new(ctor.span(), format!("unknown layer `{word}`"));
            let d = match did_you_mean(&word, super::KINDS.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("layers: {}", list(super::KINDS))),
            };
            self.error(d);
            return None;
        };
        let mut inner = ArgReader::new(k, ctor.span(), ctor.args.as_ref(), &mut *self.diags);
        let explicit = inner.string("name");
        let parsed = super::parse_kind(k, &mut inner).flatten();
        let ok = inner.finish();
        match parsed {
            Some(layer) if ok => Some(Wrapped { layer, keras_type: k, name: explicit, span }),
            _ => {
                self.errors += 1;
                None
            }
        }
    }

    fn type_error(&mut self, name: &'static str, v: &ArgValue, expected: &str) {
        let kind = self.kind;
        self.error(Diagnostic::new(v.span, format!("`{name}` of {kind} must be {expected}, got {}", describe(&v.kind))));
    }

    /// Reports every argument no getter asked for (unknown keywords with a suggestion, extra positionals).
    pub fn finish(mut self) -> bool {
        let kind = self.kind;
        let known = std::mem::take(&mut self.known);
        let mut problems = Vec::new();
        let mut positional_index = 0usize;
        for (arg, used) in &self.args {
            if *used {
                if arg.key.is_none() {
                    positional_index += 1;
                }
                continue;
            }
            match &arg.key {
                Some(k) => {
                    let word = k.to_string();
                    let mut d = Diagnostic::new(k.span(), format!("{kind} has no argument `{word}`"));
                    d = match did_you_mean(&word, known.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`? {kind} takes {}", list(&known))),
                        None if known.is_empty() => d.help(format!("{kind} takes no arguments")),
                        None => d.help(format!("{kind} takes {}", list(&known))),
                    };
                    problems.push(d);
                }
                None => {
                    positional_index += 1;
                    problems.push(
                        Diagnostic::new(
                            arg.value.span,
                            format!(
                                "{kind} takes at most {} positional argument{}, this is argument {}",
                                self.positional_seen,
                                if self.positional_seen == 1 { "" } else { "s" },
                                positional_index
                            ),
                        )
                        .help(format!("pass the others by keyword: {kind} takes {}", list(&known))),
                    );
                }
            }
        }
        for p in problems {
            self.error(p);
        }
        !self.failed()
    }
}

/// A layer given as an argument of a wrapper, as [`ArgReader::layer`] read it.
pub struct Wrapped {
    /// Its configuration.
    pub layer: super::LayerKind,
    /// Its Keras class name (`Dense`).
    pub keras_type: &'static str,
    /// Its `name = "..."`, when given.
    pub name: Option<(String, Span)>,
    /// Span of the whole constructor.
    pub span: Span,
}

/// `a`, `b` or `c` with backticks.
pub fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {}", rest.join(", "), last),
    }
}

/// What a value is, for messages: `the integer 3`, `the string "a"`, `` `relu` ``.
pub fn describe(kind: &ArgKind) -> String {
    match kind {
        ArgKind::Int(n) => format!("the integer {n}"),
        ArgKind::Float(x) => format!("the number {x}"),
        ArgKind::Bool(b) => format!("`{b}`"),
        ArgKind::Str(s) => format!("the string {s:?}"),
        ArgKind::Ident(id) => format!("`{id}`"),
        ArgKind::Tuple(items) => format!("a tuple of {} values", items.len()),
        ArgKind::Call(name, _) => format!("`{name}(...)`"),
        ArgKind::Layer(c) => format!("the layer `{}(...)`", crate::parse::path_text(&c.path)),
    }
}
