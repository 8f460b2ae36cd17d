//! Diagnostics: one typed record per problem, collected in a sink and reported together.

use proc_macro2::{Span, TokenStream};

/// One compile-time problem: where, what, and how to fix it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The narrowest token to blame.
    pub span: Span,
    /// What is wrong, naming the tensors and their shapes.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
    /// Further spans worth pointing at (e.g. the first definition of a duplicate name), with a note each.
    pub notes: Vec<(Span, String)>,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into(), help: None, notes: Vec::new() }
    }

    /// Adds a `help:` line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a note pointing at another span.
    pub fn note(mut self, span: Span, note: impl Into<String>) -> Self {
        self.notes.push((span, note.into()));
        self
    }

    /// The full text rustc shows: the message, then `help: ...`.
    pub fn text(&self) -> String {
        match &self.help {
            Some(h) => format!("{}\n\nhelp: {}", self.message, h),
            None => self.message.clone(),
        }
    }

    /// Converts into a `syn::Error` (the main message at `span`, each note at its own span).
    pub fn to_syn_error(&self) -> syn::Error {
        let mut err = syn::Error::new(self.span, self.text());
        for (span, note) in &self.notes {
            err.combine(syn::Error::new(*span, format!("note: {note}")));
        }
        err
    }
}

impl From<syn::Error> for Diagnostic {
    fn from(e: syn::Error) -> Self {
        Diagnostic::new(e.span(), e.to_string())
    }
}

/// Accumulates diagnostics across passes so every problem of a model is reported in one compile.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Records a `syn::Error` (which may hold several messages).
    pub fn push_syn(&mut self, e: syn::Error) {
        for part in e {
            self.items.push(Diagnostic::new(part.span(), part.to_string()));
        }
    }

    /// True when nothing went wrong.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of problems recorded.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The problems recorded, in order.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// All problems as `compile_error!` invocations, each at its span.
    pub fn to_compile_errors(&self) -> TokenStream {
        let mut out = TokenStream::new();
        for d in &self.items {
            out.extend(d.to_syn_error().to_compile_error());
        }
        out
    }
}
