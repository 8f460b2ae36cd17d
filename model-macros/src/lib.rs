//! The `model!` procedural macro: hands its tokens to `model_compiler::expand` and returns the result.

/// Compiles a Keras-functional-style model into specialized Rust. See the `modelc` crate docs.
#[proc_macro]
pub fn model(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    model_compiler::expand(input.into()).into()
}
