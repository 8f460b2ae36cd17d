//! Syntax tree of a `model!` invocation (input: tokens, built by `parse`; output: consumed by `resolve`).
//! Syntax only: names are not resolved and arguments are not typed yet. Every node keeps its `Span`.

use proc_macro2::{Ident, Span};

/// A whole `model!` invocation: one or more model definitions, and the definitions of models from
/// other invocations that these use as layers (brought in by the callback of `VisionNet!`).
#[derive(Debug, Clone, Default)]
pub struct File {
    /// The models, in source order.
    pub models: Vec<Model>,
    /// `@with { ... } as path;` entries: other invocations' sources, keyed by the path used here.
    pub deps: Vec<Dep>,
}

/// The source of another `model!` invocation, as handed back by its `macro_rules!` callback.
#[derive(Debug, Clone)]
pub struct Dep {
    /// The path as written in this invocation, without spaces: `vision::VisionNet`.
    pub key: String,
    /// That invocation's models (and their own dependencies).
    pub file: File,
    /// Handed back by the full callback (`@with full`), with that invocation's own dependencies; the
    /// first-round callback hands back the source alone.
    pub full: bool,
}

impl Dep {
    /// The model this dependency names: the one called like the path's last segment.
    pub fn model(&self) -> Option<&Model> {
        let last = self.key.rsplit("::").next().unwrap_or(&self.key);
        self.file.models.iter().find(|m| m.name == last)
    }
}

/// `#[doc] pub struct Name { stmt* }`
#[derive(Debug, Clone)]
pub struct Model {
    /// Outer attributes written on the model (doc comments, `#[allow]`, ...), passed through to the struct.
    pub attrs: Vec<syn::Attribute>,
    /// Visibility of the generated struct and its companion types.
    pub vis: syn::Visibility,
    /// The struct name.
    pub name: Ident,
    /// The statements in source order.
    pub stmts: Vec<Stmt>,
}

/// One statement of a model body.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `input name: [d1, d2, ...];` or `input name: [d1] as i32;`
    Input(InputDecl),
    /// `layer name = Ctor;`: a named layer instance, callable several times with shared weights.
    Layer(LayerDecl),
    /// `let name = expr;` or `let (a, b) = expr;` (shadowing allowed).
    Let(LetStmt),
    /// `output name = expr;` or `output name = expr as i32 target;`
    Output(OutputStmt),
}

/// `input name: [dims] (as dtype)?;`
#[derive(Debug, Clone)]
pub struct InputDecl {
    /// The input's name.
    pub name: Ident,
    /// The dimensions, batch excluded.
    pub dims: Vec<Dim>,
    /// Span of the whole `[...]` shape.
    pub shape_span: Span,
    /// `as i32` / `as f32`, when given.
    pub dtype: Option<Ident>,
}

/// One dimension as written (validated later: it must be positive).
#[derive(Debug, Clone, Copy)]
pub struct Dim {
    /// The value as written (may be zero or negative: rejected by `resolve`).
    pub value: i64,
    /// Span of the literal.
    pub span: Span,
}

/// `layer name = Ctor;`
#[derive(Debug, Clone)]
pub struct LayerDecl {
    /// The instance name.
    pub name: Ident,
    /// The layer constructor.
    pub ctor: Ctor,
}

/// A layer constructor: `Dense(16, activation = relu)` or a model type used as a layer, `VisionNet`
/// or `crate::vision::VisionNet` (without parentheses), or `VisionNet(trainable = false)`.
#[derive(Debug, Clone)]
pub struct Ctor {
    /// The layer kind or model type path.
    pub path: syn::Path,
    /// The arguments in parentheses; `None` when no parentheses were written.
    pub args: Option<Args>,
}

/// Arguments of a constructor, in source order.
#[derive(Debug, Clone)]
pub struct Args {
    /// Positional and keyword arguments as written.
    pub items: Vec<Arg>,
    /// Span of the parenthesized group.
    pub span: Span,
}

/// `value` or `key = value`.
#[derive(Debug, Clone)]
pub struct Arg {
    /// The keyword, for keyword arguments.
    pub key: Option<Ident>,
    /// The value.
    pub value: ArgValue,
}

/// A literal-ish argument value with its span.
#[derive(Debug, Clone)]
pub struct ArgValue {
    /// What was written.
    pub kind: ArgKind,
    /// Span of the whole value (including a leading minus sign).
    pub span: Span,
}

/// The kinds of argument values the DSL accepts.
#[derive(Debug, Clone)]
pub enum ArgKind {
    /// An integer literal, possibly negative: `16`, `-1`.
    Int(i64),
    /// A float literal, possibly negative: `0.5`, `1e-3`.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A string literal: `"left_dense"`, `"same"`.
    Str(String),
    /// A bare identifier: `relu`, `same`, `None`.
    Ident(Ident),
    /// `(3, 3)` or `[3, 3]`.
    Tuple(Vec<ArgValue>),
    /// A call with arguments, as Keras' objects are written: `he_normal(seed = 3)`, `l2(1e-4)`.
    Call(Ident, Args),
    /// A layer constructor given to a wrapper layer: `Dense(8)` in `TimeDistributed(Dense(8))`,
    /// `LSTM(32)` in `Bidirectional(LSTM(32))`. The parser gives calls of a layer kind's name this form.
    Layer(Box<Ctor>),
}

impl ArgKind {
    /// The value read as a layer constructor: a [`ArgKind::Layer`], or a call of another name (a
    /// misspelt layer such as `Dens(8)`, which the wrapper then reports as an unknown layer).
    pub fn as_ctor(&self) -> Option<Ctor> {
        match self {
            ArgKind::Layer(ctor) => Some((**ctor).clone()),
            ArgKind::Call(id, args) => Some(Ctor { path: syn::Path::from(id.clone()), args: Some(args.clone()) }),
            _ => None,
        }
    }
}

/// `let pat = expr;`
#[derive(Debug, Clone)]
pub struct LetStmt {
    /// One name, or several for `let (a, b) = ...` (a model with several outputs).
    pub names: Vec<Ident>,
    /// The right-hand side.
    pub expr: Expr,
}

/// `output name = expr;`
#[derive(Debug, Clone)]
pub struct OutputStmt {
    /// The output's name (a field of the outputs and targets structs).
    pub name: Ident,
    /// The right-hand side.
    pub expr: Expr,
    /// The element type of the output's targets, `as i32 target` (class ids), when given.
    pub target: Option<Ident>,
}

/// A tensor expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A tensor name: an input or a `let` binding.
    Name(Ident),
    /// `[a, b, ...]`, the argument of a merge.
    List(ListExpr),
    /// `callee(arg)`.
    Call(CallExpr),
}

/// `[a, b, ...]`
#[derive(Debug, Clone)]
pub struct ListExpr {
    /// The elements.
    pub items: Vec<Expr>,
    /// Span of the brackets.
    pub span: Span,
}

/// `Dense(16)(x)`, `enc(x)` or `Concatenate()([a, b])`.
#[derive(Debug, Clone)]
pub struct CallExpr {
    /// What is called.
    pub callee: Callee,
    /// The first argument: a tensor, a list of tensors or a nested call.
    pub arg: Box<Expr>,
    /// Further positional tensors, as Keras calls take them: `mha(query, value, key)`.
    pub more: Vec<Expr>,
    /// Keyword arguments, in source order: tensors (`initial_state = [h, c]`, `attention_mask = m`) or
    /// call-time literals (`use_causal_mask = true`).
    pub keywords: Vec<CallKeyword>,
    /// Span of the argument's parentheses.
    pub paren_span: Span,
}

/// `key = value` among a call's arguments.
#[derive(Debug, Clone)]
pub struct CallKeyword {
    /// The keyword.
    pub key: Ident,
    /// A tensor expression or a literal.
    pub value: CallValue,
}

/// The value of a call-time keyword argument.
#[derive(Debug, Clone)]
pub enum CallValue {
    /// A tensor (or a list of tensors): `attention_mask = m`, `initial_state = [h, c]`.
    Tensor(Expr),
    /// A literal: `use_causal_mask = true`.
    Literal(ArgValue),
}

impl CallValue {
    /// Span of the value.
    pub fn span(&self) -> Span {
        match self {
            CallValue::Tensor(e) => e.span(),
            CallValue::Literal(v) => v.span,
        }
    }
}

/// The layer being called.
#[derive(Debug, Clone)]
pub enum Callee {
    /// A layer instance declared with `layer name = ...;`: `enc(x)`.
    Instance(Ident),
    /// An inline constructor, called once: `Dense(16)(x)`.
    Ctor(Ctor),
}

impl Expr {
    /// The span that best identifies this expression in diagnostics.
    pub fn span(&self) -> Span {
        match self {
            Expr::Name(id) => id.span(),
            Expr::List(l) => l.span,
            Expr::Call(c) => c.callee.span(),
        }
    }
}

impl Callee {
    /// Span of the layer name or constructor path.
    pub fn span(&self) -> Span {
        match self {
            Callee::Instance(id) => id.span(),
            Callee::Ctor(c) => c.span(),
        }
    }
}

impl Ctor {
    /// Span of the constructor's path (the layer kind name).
    pub fn span(&self) -> Span {
        use syn::spanned::Spanned;
        self.path.span()
    }
}
