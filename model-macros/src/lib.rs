//! The `model!` procedural macro of [modelc](https://docs.rs/modelc): it hands its tokens to
//! `model_compiler::expand` and returns the result. All the work (parsing, shape inference, memory
//! planning, code generation) happens in the `model-compiler` library; this crate does nothing else,
//! and reads no file and no environment of its own.
//!
//! Use the macro through the `modelc` crate (`use modelc::prelude::*;`), whose documentation holds
//! the guide: the generated code names paths inside `modelc`.

/// Compiles Keras-functional-style models into specialized Rust, checking every shape while the
/// crate compiles. Re-exported and documented with examples as `modelc::model`; this crate only
/// hands the tokens to the `model-compiler` library (see `ARCHITECTURE.md`).
#[proc_macro]
pub fn model(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    model_compiler::expand(input.into()).into()
}
