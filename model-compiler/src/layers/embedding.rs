//! `Embedding(input_dim, output_dim)`: token ids select rows of a learned `[input_dim, output_dim]`
//! table (Keras weight `embeddings`, initialized uniform on ±0.05). The operand must be an integer model
//! input (`input tokens: [12] as i32`); ids outside `0..input_dim` are a run-time error when the inputs
//! are staged, before anything runs.

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{EmitCx, InferCx, InitKind, LayerDef, ParamDecl};
use crate::diag::Diagnostic;
use crate::hir::DType;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// An embedding table.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// Vocabulary size: valid ids are `0..input_dim`.
    pub input_dim: usize,
    /// Length of each embedding vector.
    pub output_dim: usize,
    /// `embeddings_initializer`, `embeddings_regularizer`, `embeddings_constraint`.
    pub embeddings: WeightArgs,
}

impl Embedding {
    /// `Embedding(input_dim, output_dim)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let input_dim = r.required_positive("input_dim", Some(0));
        let output_dim = r.required_positive("output_dim", Some(1));
        let embeddings = WeightArgs::read(r, role!("embeddings", 2));
        Some(Embedding { input_dim: input_dim?, output_dim: output_dim?, embeddings: embeddings? })
    }
}

impl LayerDef for Embedding {
    // Gather(embeddings, ids as int64) along the table's rows.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let ids = cx.op("Cast", &[&cx.input(0)], vec![("to", Attr::Int(7))]);
        cx.node("Gather", &[&cx.param(0), &ids], &[&cx.output()], vec![("axis", Attr::Int(0))]);
        Ok(())
    }

    // Rule: the operand is an integer model input of any shape S; the output is S + (output_dim,).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Embedding takes one tensor"))?;
        let span = cx.spans.first().copied().unwrap_or(cx.span);
        let msg = format!("Embedding looks up integer token ids, but {} is float32", cx.describe(0));
        match cx.dtypes.first() {
            Some(Some(DType::I32)) => {}
            Some(Some(DType::F32)) => {
                let help = format!("declare the ids as integers: `input {}: {} as i32;`", cx.name(0), dims(x));
                return Err(Diagnostic::new(span, msg).help(help));
            }
            _ => {
                let help = format!(
                    "`{}` is computed by a layer; call Embedding directly on an integer input, e.g. `input tokens: {} as i32;`",
                    cx.name(0),
                    dims(x)
                );
                return Err(Diagnostic::new(span, msg).help(help));
            }
        }
        let mut dims = x.0.clone();
        dims.push(self.output_dim);
        Ok(Shape(dims))
    }

    // One axis more than the ids.
    fn output_rank(&self, inputs: &[Option<usize>]) -> Option<usize> {
        inputs.first().copied().flatten().map(|r| r + 1)
    }

    fn params(&self, _inputs: &[Shape]) -> Vec<ParamDecl> {
        vec![ParamDecl::new("embeddings", vec![self.input_dim, self.output_dim], InitKind::Uniform(0.05), true).with(&self.embeddings)]
    }

    // embedding::forward(ids, table, output_dim, y)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (ids, table, dim) = (cx.x(0), cx.p(0), self.output_dim);
        quote!(::modelc::__private::kernels::embedding::forward(#ids, #table, #dim, &mut __y[..]);)
    }

    // embedding::backward(ids, dy, output_dim, dtable): ids have no gradient.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let (ids, dtable, dim) = (cx.x(0), cx.g(0), self.output_dim);
        quote!(::modelc::__private::kernels::embedding::backward(#ids, &__dy[..], #dim, #dtable);)
    }

    fn id_limit(&self) -> Option<usize> {
        Some(self.input_dim)
    }
}

/// `[12]`, `[4, 6]`: a shape as written in an input declaration.
fn dims(s: &Shape) -> String {
    let d: Vec<String> = s.0.iter().map(usize::to_string).collect();
    format!("[{}]", d.join(", "))
}

impl Embedding {
    /// Keras import: `Embedding(input_dim, output_dim)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("input_dim");
        a.positional("output_dim");
        a.initializer("embeddings_initializer", "RandomUniform");
        a.optional_object("embeddings_regularizer");
        a.optional_object("activity_regularizer");
        a.optional_object("embeddings_constraint");
        a.expect("mask_zero", json!(false), "modelc has no masks; remove mask_zero (pad with ids the model learns to ignore)");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn embedding_appends_output_dim_to_the_token_shape() {
        let src = "struct M { input tokens: [12] as i32; input grid: [3, 4] as i32; \
                   output a = Embedding(50, 8)(tokens); output b = Embedding(input_dim = 9, output_dim = 2)(grid); }";
        assert_eq!(ok_shapes(src), [vec![12, 8], vec![3, 4, 2]]);
    }

    #[test]
    fn embedding_on_floats_says_to_declare_an_integer_input() {
        let (line, col, text) = one_error("input tokens: [12];\noutput y = Embedding(50, 8)(tokens);");
        assert_eq!((line, col), (3, 29), "blames the operand");
        assert!(text.contains("Embedding looks up integer token ids, but `tokens` (None, 12) is float32"), "{text}");
        assert!(text.contains("`input tokens: [12] as i32;`"), "{text}");
        let (_, _, text) = one_error("input t: [4] as i32;\noutput y = Embedding(50)(t);");
        assert!(text.contains("missing its required argument `output_dim`"), "{text}");
    }
}
