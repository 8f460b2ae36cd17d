//! `Embedding(input_dim, output_dim)`: token ids select rows of a learned `[input_dim, output_dim]`
//! table (Keras weight `embeddings`, initialized uniform on ±0.05). The operand must be an integer model
//! input (`input tokens: [12] as i32`); ids outside `0..input_dim` are a run-time error when the inputs
//! are staged, before anything runs.

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{EmitCx, InferCx, InitKind, LayerDef, MaskRule, ParamDecl};
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
    /// `mask_zero`: id 0 is padding, and the result carries the mask `ids != 0` (docs/masks.md).
    pub mask_zero: bool,
}

impl Embedding {
    /// `Embedding(input_dim, output_dim, mask_zero = false)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let input_dim = r.required_positive("input_dim", Some(0));
        let output_dim = r.required_positive("output_dim", Some(1));
        let embeddings = WeightArgs::read(r, role!("embeddings", 2));
        let mask_zero = r.bool_or("mask_zero", None, false);
        Some(Embedding { input_dim: input_dim?, output_dim: output_dim?, embeddings: embeddings?, mask_zero: mask_zero? })
    }
}

impl LayerDef for Embedding {
    // Gather(embeddings, ids as int64) along the table's rows.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let ids = cx.op("Cast", &[&cx.input(0)], vec![("to", Attr::Int(7))]);
        cx.node("Gather", &[&cx.param(0), &ids], &[&cx.output()], vec![("axis", Attr::Int(0))]);
        if let Some(m) = cx.mask_output() {
            let zero = cx.const_i64(&[0]);
            let eq = cx.op("Equal", &[&ids, &zero], Vec::new());
            let ne = cx.op("Not", &[&eq], Vec::new());
            cx.node("Cast", &[&ne], &[&m], vec![("to", Attr::Int(1))]);
        }
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
        if self.mask_zero && x.rank() != 1 {
            return Err(Diagnostic::new(
                span,
                format!(
                    "Embedding(mask_zero = true) masks the steps of a sequence of ids (None, steps), but {} is not one",
                    cx.describe(0)
                ),
            )
            .help(format!(
                "feed it ids of shape (None, steps), e.g. `input {}: [{}] as i32;`, or remove `mask_zero = true`",
                cx.name(0),
                x.numel()
            )));
        }
        let mut dims = x.0.clone();
        dims.push(self.output_dim);
        Ok(Shape(dims))
    }

    // A producer with `mask_zero` (its mask: ids != 0).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        if self.mask_zero {
            MaskRule::Produce
        } else {
            MaskRule::Drop
        }
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
        let mask = match cx.mask_out.is_some() {
            true => {
                let m = cx.mask_out();
                quote!(::modelc::__private::kernels::masking::from_float_ids(#ids, #m);)
            }
            false => TokenStream::new(),
        };
        quote!(::modelc::__private::kernels::embedding::forward(#ids, #table, #dim, &mut __y[..]); #mask)
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
    /// Keras import: `Embedding(input_dim, output_dim, mask_zero)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("input_dim");
        a.positional("output_dim");
        a.initializer("embeddings_initializer", "RandomUniform");
        a.optional_object("embeddings_regularizer");
        a.optional_object("activity_regularizer");
        a.optional_object("embeddings_constraint");
        a.kw("mask_zero", json!(false));
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
    fn mask_zero_needs_a_sequence_of_ids_and_its_result_carries_a_mask() {
        let typed = crate::layers::tests::typed_of(
            "struct M { input t: [6] as i32; let e = Embedding(9, 4, mask_zero = true)(t); let d = Dense(3)(e); \
             output y = d; output z = Embedding(9, 4)(t); }",
        );
        let out = |i: usize| typed.model.outputs[i].value;
        let m = typed.masks[out(0).0].expect("Dense passes the mask on");
        assert_eq!(typed.shapes[m.0].as_ref().map(|s| s.0.clone()), Some(vec![6]));
        assert!(typed.masks[out(1).0].is_none());
        let (_, _, text) = one_error("input t: [2, 3] as i32;\noutput y = Embedding(9, 4, mask_zero = true)(t);");
        assert!(
            text.contains(
                "Embedding(mask_zero = true) masks the steps of a sequence of ids (None, steps), but `t` (None, 2, 3) is not one"
            ),
            "{text}"
        );
        assert!(text.contains("`input t: [6] as i32;`"), "{text}");
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
