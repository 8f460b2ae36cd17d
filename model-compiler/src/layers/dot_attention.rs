//! `Attention(use_scale = false, score_mode = dot, dropout = 0.0, seed = 0)`: Keras 3's dot-product (or
//! additive, `score_mode = concat`) attention without projections, called as Keras calls it on a list:
//! `Attention()([query, value])` or `Attention()([query, value, key])`, with `use_causal_mask = true` and
//! `return_attention_scores = true`. Weights: the scalar `scale` (shape `[]`, ones) with `use_scale`, the
//! scalar `concat_score_weight` with `score_mode = concat`. Masks flowing in from `Masking`/`mask_zero`
//! are read as Keras' `mask = [query_mask, value_mask]` (docs/masks.md): the value's mask masks the
//! scores, the query's zeroes the masked query steps' outputs and is the result's mask; a key's mask is
//! ignored, as in Keras. The kernel is `model-runtime/src/kernels/dot_attention.rs`.

use super::args::ArgReader;
use super::{Arity, CallArgsCx, EmitCx, InferCx, InitKind, LayerDef, LayerKind, MaskRule, ParamDecl};
use crate::ast::{ArgKind, CallValue};
use crate::diag::Diagnostic;
use crate::hir::DType;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{json, Value};

/// Keras' `Attention` layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// Whether the scores are multiplied by a learned scalar `scale`.
    pub use_scale: bool,
    /// `score_mode = concat` (additive scores); else `dot`.
    pub concat: bool,
    /// Dropout rate on the attention probabilities.
    pub dropout: f32,
    /// Dropout seed.
    pub seed: u64,
    /// This call uses Keras' causal mask.
    pub causal: bool,
    /// This call returns the attention scores `[Tq, Tv]` as its second result.
    pub return_scores: bool,
}

/// The sizes of one call.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    tq: usize,
    tv: usize,
    dim: usize,
    dv: usize,
}

impl Attention {
    /// `Attention(use_scale = false, score_mode = dot, dropout = 0.0, seed = 0)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let use_scale = r.bool_or("use_scale", Some(0), false);
        let mode = r.choice_or("score_mode", Some(1), &["dot", "concat"], "dot");
        let dropout = r.float_in_or("dropout", Some(2), 0.0, 0.0, 1.0, true);
        let seed = r.int_or("seed", None, 0);
        Some(Attention {
            use_scale: use_scale?,
            concat: mode? == "concat",
            dropout: dropout? as f32,
            seed: seed? as u64,
            causal: false,
            return_scores: false,
        })
    }

    /// Keras import: `Attention(use_scale, score_mode, dropout, seed)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.kw("use_scale", json!(false));
        a.kw("score_mode", json!("dot"));
        a.kw("dropout", json!(0.0));
        a.kw("seed", Value::Null);
    }

    /// Operand index of the key: the value's (1) unless a third operand was given.
    fn key_index(n_operands: usize) -> usize {
        if n_operands >= 3 {
            2
        } else {
            1
        }
    }

    fn sizes(ins: &[Shape]) -> Sizes {
        let empty = Shape(Vec::new());
        let q = ins.first().unwrap_or(&empty);
        let v = ins.get(1).unwrap_or(&empty);
        Sizes { tq: q.lead(), tv: v.lead(), dim: q.last(), dv: v.last() }
    }

    fn kernel_tokens(&self, s: &Sizes, seed: u64) -> TokenStream {
        let Sizes { tq, tv, dim, dv } = *s;
        let (concat, causal, dropout) = (self.concat, self.causal, self.dropout);
        quote!(::modelc::__private::kernels::dot_attention::Attn {
            tq: #tq, tv: #tv, dim: #dim, dv: #dv, concat: #concat, causal: #causal, dropout: #dropout, seed: #seed,
        })
    }

    /// `Scalars { scale, concat_weight }` from the parameter slices (`scale` first, as Keras builds them).
    fn scalars_tokens(&self, cx: &EmitCx) -> TokenStream {
        let scale = super::some_if(self.use_scale, {
            let p = cx.p(0);
            quote!(&#p[..])
        });
        let concat = super::some_if(self.concat, {
            let p = cx.p(usize::from(self.use_scale));
            quote!(&#p[..])
        });
        quote!(::modelc::__private::kernels::dot_attention::Scalars { scale: #scale, concat_weight: #concat })
    }

    fn grads_tokens(&self, cx: &EmitCx) -> TokenStream {
        let scale = super::some_if(self.use_scale, {
            let g = cx.g(0);
            quote!(&mut #g[..])
        });
        let concat = super::some_if(self.concat, {
            let g = cx.g(usize::from(self.use_scale));
            quote!(&mut #g[..])
        });
        quote!(::modelc::__private::kernels::dot_attention::ScalarGrads { scale: #scale, concat_weight: #concat })
    }

    /// `Masks { query, value }`: the masks the query and the value carry (Keras reads no key mask).
    fn masks_tokens(cx: &EmitCx) -> TokenStream {
        let (q, v) = (cx.mask_arg(0), cx.mask_arg(1));
        quote!(::modelc::__private::kernels::dot_attention::Masks { query: #q, value: #v })
    }

    fn salted_seed(&self, cx: &EmitCx) -> u64 {
        self.seed ^ ((cx.output.buf as u64).wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03)
    }

    fn shapes(cx: &EmitCx) -> Vec<Shape> {
        cx.inputs.iter().map(|o| o.shape.clone()).collect()
    }

    fn tmp_len(s: &Sizes) -> usize {
        s.tq * s.dim + s.tv * s.dim + s.tv * s.dv + s.tq * s.tv
    }

    fn keep_len(&self, s: &Sizes) -> usize {
        let tt = s.tq * s.tv;
        if self.dropout > 0.0 {
            2 * tt
        } else {
            tt
        }
    }

    /// The rank check of operand `i`: Keras' `Attention` reads (batch, positions, features).
    fn check_rank(cx: &InferCx<'_>, i: usize, s: &Shape) -> Result<(), Diagnostic> {
        if s.rank() == 2 {
            return Ok(());
        }
        Err(Diagnostic::new(
            cx.spans.get(i).copied().unwrap_or(cx.span),
            format!(
                "Attention needs a sequence of feature vectors, (batch, positions, features), but {} has rank {}",
                cx.describe(i),
                s.rank() + 1
            ),
        )
        .help(match s.rank() {
            0 | 1 => format!("give `{}` a positions axis, e.g. `Reshape(({}, 1))({})`", cx.name(i), s.numel(), cx.name(i)),
            _ => format!(
                "flatten the positions of `{}` into one axis, e.g. `Reshape(({}, {}))({})`",
                cx.name(i),
                s.numel() / s.last(),
                s.last(),
                cx.name(i)
            ),
        }))
    }
}

/// One call-time flag: `true` or `false`.
fn flag(v: &CallValue, name: &str) -> Result<bool, Diagnostic> {
    let fix = match name {
        "return_attention_scores" => String::from("write `let (y, scores) = attention([q, v], return_attention_scores = true);`"),
        _ => format!("write `{name} = true`"),
    };
    match v {
        CallValue::Literal(l) => match l.kind {
            ArgKind::Bool(b) => Ok(b),
            _ => Err(Diagnostic::new(l.span, format!("`{name}` must be `true` or `false`")).help(fix)),
        },
        CallValue::Tensor(e) => Err(Diagnostic::new(e.span(), format!("`{name}` must be `true` or `false`")).help(fix)),
    }
}

impl Attention {
    /// The scores with Keras' `where(keep, s, s − 1e9)`: `keep` the causal mask and the value's mask
    /// (`[batch, 1, tv]`); `s − (1 − keep) · 1e9`, which is `s` or `s − 1e9` exactly, as the kernel computes.
    fn onnx_masked_scores(&self, cx: &mut OnnxCx, s: &Sizes, scores: &str) -> String {
        let causal = self.causal.then(|| {
            let keep: Vec<f32> = (0..s.tq * s.tv).map(|ij| if ij % s.tv > ij / s.tv { 0.0 } else { 1.0 }).collect();
            cx.const_f32(&[s.tq as i64, s.tv as i64], &keep)
        });
        let value = cx.mask_input(1).map(|m| cx.reshape_exact(&m, &[-1, 1, s.tv as i64]));
        let keep = match (causal, value) {
            (Some(c), Some(v)) => cx.op("Mul", &[&c, &v], Vec::new()),
            (Some(k), None) | (None, Some(k)) => k,
            (None, None) => return scores.to_string(),
        };
        let one = cx.const_f32(&[], &[1.0]);
        let big = cx.const_f32(&[], &[1e9]);
        let dropped = cx.op("Sub", &[&one, &keep], Vec::new());
        let shift = cx.op("Mul", &[&dropped, &big], Vec::new());
        cx.op("Sub", &[scores, &shift], Vec::new())
    }
}

impl LayerDef for Attention {
    fn arity(&self) -> Arity {
        Arity::List { min: 2, max: Some(3) }
    }

    fn call_keywords(&self) -> &'static [&'static str] {
        &["use_causal_mask", "return_attention_scores"]
    }

    // Keras: `attention([query, value(, key)], mask = None, use_causal_mask = False, return_attention_scores
    // = False)`: one list of tensors, the options as literals.
    fn call_args(&self, cx: &CallArgsCx<'_>) -> Option<Result<LayerKind, Diagnostic>> {
        let mut out = self.clone();
        let r = (|| {
            if cx.positional != 1 {
                return Err(Diagnostic::new(
                    cx.span,
                    format!("Attention is called on one list of tensors, but is given {} arguments", cx.positional),
                )
                .help("put the query, the value and optionally the key in one list: `Attention()([query, value])`"));
            }
            out.causal = false;
            out.return_scores = false;
            for (key, value) in cx.keywords {
                match key.to_string().as_str() {
                    "use_causal_mask" => out.causal = flag(value, "use_causal_mask")?,
                    "return_attention_scores" => out.return_scores = flag(value, "return_attention_scores")?,
                    "mask" => {
                        return Err(Diagnostic::new(
                            key.span(),
                            "`mask` of Attention is not an argument in modelc: the masks come from the operands",
                        )
                        .help(
                            "leave `mask` out and let `Masking(..)` or `Embedding(.., mask_zero = true)` upstream of the query and value make their masks",
                        ));
                    }
                    _ => {}
                }
            }
            Ok(LayerKind::Attention(out.clone()))
        })();
        Some(r)
    }

    fn result_names(&self) -> Vec<&'static str> {
        if self.return_scores {
            vec!["output", "scores"]
        } else {
            vec!["output"]
        }
    }

    // Keras: the scores are (None, Tq, Tv).
    fn extra_shapes(&self, cx: &InferCx<'_>, _output: &Shape) -> Vec<Shape> {
        if !self.return_scores {
            return Vec::new();
        }
        let s = Self::sizes(cx.inputs);
        vec![Shape(vec![s.tq, s.tv])]
    }

    fn extra_rank(&self, _k: usize, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(2)
    }

    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(2)
    }

    // Rule (Keras `Attention._validate_inputs` and its matmuls): query, value and key are (batch, positions,
    // features); the query and the key have the same features; the key and the value the same positions.
    // The output is (query positions, value features).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (Some(q), Some(v)) = (cx.inputs.first(), cx.inputs.get(1)) else {
            return Err(Diagnostic::new(cx.span, "Attention is called on a query and a value").help("write `Attention()([query, value])`"));
        };
        let ki = Self::key_index(cx.inputs.len());
        let k = cx.inputs.get(ki).unwrap_or(v);
        for (i, s) in [(0, q), (1, v), (ki, k)] {
            if cx.dtypes.get(i).copied().flatten() == Some(DType::I32) {
                return Err(Diagnostic::new(
                    cx.spans.get(i).copied().unwrap_or(cx.span),
                    format!("Attention needs float features, but {} is an int32 input", cx.describe(i)),
                )
                .help(format!("embed the ids first, e.g. `Embedding(1000, 64)({})`; {s} then holds vectors", cx.name(i))));
            }
            Self::check_rank(cx, i, s)?;
        }
        if q.last() != k.last() {
            let what = if ki == 1 { "value (the key when no key is given)" } else { "key" };
            return Err(Diagnostic::new(
                cx.spans.get(ki).copied().unwrap_or(cx.span),
                format!(
                    "Attention compares each query with each key, so they need the same features, but {} and the {what} {} differ in their last axis",
                    cx.describe(0),
                    cx.describe(ki)
                ),
            )
            .help(format!(
                "project one to the other's size first, e.g. `Dense({})({})`, or use `MultiHeadAttention`, which projects both",
                k.last(),
                cx.name(0)
            )));
        }
        if ki == 2 && k.lead() != v.lead() {
            return Err(Diagnostic::new(
                cx.spans.get(ki).copied().unwrap_or(cx.span),
                format!(
                    "the key and the value of Attention must have the same positions, but {} and {} differ",
                    cx.describe(ki),
                    cx.describe(1)
                ),
            )
            .help(format!("each value needs its key: pass a key with {} positions", v.lead())));
        }
        Ok(Shape(vec![q.lead(), v.last()]))
    }

    // Keras' `compute_mask`: the query's mask (`mask[0]`); the scores carry none.
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    fn params(&self, _inputs: &[Shape]) -> Vec<ParamDecl> {
        let mut out = Vec::new();
        if self.use_scale {
            out.push(ParamDecl::new("scale", Vec::new(), InitKind::Ones, true));
        }
        if self.concat {
            out.push(ParamDecl::new("concat_score_weight", Vec::new(), InitKind::Ones, true));
        }
        out
    }

    // [kept probabilities (and dropped ones); backward's dQ | dK | dV | dP]
    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        let s = Self::sizes(inputs);
        vec![self.keep_len(&s), Self::tmp_len(&s)]
    }

    fn backward_only_scratch(&self) -> Vec<usize> {
        vec![1]
    }

    // dot_attention::forward(&attn, q, k, v, &scalars, &masks, step, first_row, training, keep, y, scores, batch)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let s = Self::sizes(&Self::shapes(cx));
        let m = self.kernel_tokens(&s, self.salted_seed(cx));
        let prm = self.scalars_tokens(cx);
        let (q, v, k) = (cx.x(0), cx.x(1), cx.x(Self::key_index(cx.positional)));
        let mk = Self::masks_tokens(cx);
        let keep = cx.scratch_mut(0);
        let scores = super::some_if(!cx.extra.is_empty(), {
            let y1 = cx.y_extra(1);
            quote!(&mut #y1[..])
        });
        quote!({
            let __m = #m;
            let __prm = #prm;
            let __mk = #mk;
            ::modelc::__private::kernels::dot_attention::forward(&__m, #q, #k, #v, &__prm, &__mk, __ws.step, __ws.first_row, __ws.training, #keep, &mut __y[..], #scores, __b);
        })
    }

    // dot_attention::backward(.., keep, dy, dscores, grads, tmp, batch), then backward_input per operand.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let s = Self::sizes(&Self::shapes(cx));
        let m = self.kernel_tokens(&s, self.salted_seed(cx));
        let prm = self.scalars_tokens(cx);
        let g = self.grads_tokens(cx);
        let mk = Self::masks_tokens(cx);
        let ki = Self::key_index(cx.positional);
        let (q, v, k) = (cx.x(0), cx.x(1), cx.x(ki));
        let (s0, s1) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch.get(1).copied().unwrap_or(0));
        let (n0, n1) = (cx.scratch_len(0), cx.scratch_len(1));
        let a = quote!(::modelc::__private::kernels::dot_attention);
        let dscores = super::some_if(!cx.extra.is_empty(), {
            let d = cx.dy_extra(1);
            quote!(&#d[..])
        });
        let mut inputs = TokenStream::new();
        let mut targets = vec![(0, quote!(Query)), (1, quote!(Value))];
        // Without a key operand the value is also the key: it gets both gradients.
        targets.push((ki, quote!(Key)));
        for (i, which) in targets {
            if !cx.needs_grad(i) {
                continue;
            }
            let dx = cx.dx_mut(i);
            inputs.extend(quote!(#a::backward_input(&__m, #a::Operand::#which, &__ws.scratch[#s1][..__b * #n1], #dx, __b);));
        }
        quote!({
            let __m = #m;
            let __prm = #prm;
            {
                let __mk = #mk;
                let (__keep, __tmp) = ::modelc::__private::support::pair_mut(&mut __ws.scratch, #s0, #s1);
                #a::backward(&__m, #q, #k, #v, &__prm, &__mk, __ws.step, __ws.first_row, __ws.training, &__keep[..__b * #n0], &__dy[..], #dscores, #g, &mut __tmp[..__b * #n1], __b);
            }
            #inputs
        })
    }

    // Inference mode: dot: `MatMul(q, Transpose(k))` (× scale); concat: `Tanh(scale · (q[:, :, None] +
    // k[:, None]))` summed over the features (× concat_score_weight); −1e9 where the causal mask or the
    // value's mask drops a score; `Softmax(axis = -1)`; `MatMul(probs, v)`, times the query's mask. With
    // `return_attention_scores`, the probabilities are the second output.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let ins: Vec<Shape> = (0..cx.n_inputs()).map(|i| cx.input_shape(i)).collect();
        let s = Self::sizes(&ins);
        let (q, v, k) = (cx.input(0), cx.input(1), cx.input(Self::key_index(ins.len())));
        let param = |cx: &OnnxCx, name: &str| cx.param_named(name).ok_or_else(|| OnnxError::Unsupported(format!("no parameter `{name}`")));
        let scale = if self.use_scale { Some(param(cx, "scale")?) } else { None };
        let mut scores = if self.concat {
            let (tq, tv, d) = (s.tq as i64, s.tv as i64, s.dim as i64);
            let q4 = cx.reshape_exact(&q, &[-1, tq, 1, d]);
            let k4 = cx.reshape_exact(&k, &[-1, 1, tv, d]);
            let mut sum = cx.op("Add", &[&q4, &k4], Vec::new());
            if let Some(a) = &scale {
                sum = cx.op("Mul", &[&sum, a], Vec::new());
            }
            let t = cx.op("Tanh", &[&sum], Vec::new());
            let axes = cx.const_i64(&[-1]);
            let r = cx.op("ReduceSum", &[&t, &axes], vec![("keepdims", Attr::Int(0))]);
            let c = param(cx, "concat_score_weight")?;
            cx.op("Mul", &[&r, &c], Vec::new())
        } else {
            let kt = cx.transpose(&k, &[0, 2, 1]);
            let r = cx.op("MatMul", &[&q, &kt], Vec::new());
            match &scale {
                Some(a) => cx.op("Mul", &[&r, a], Vec::new()),
                None => r,
            }
        };
        scores = self.onnx_masked_scores(cx, &s, &scores);
        let probs = cx.op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
        if self.return_scores {
            let out = cx.extra_output(1);
            cx.node("Identity", &[&probs], &[&out], Vec::new());
        }
        let y = cx.output();
        match cx.mask_input(0) {
            // Keras' `where(q_mask[..., None], output, 0)`.
            Some(qm) => {
                let o = cx.op("MatMul", &[&probs, &v], Vec::new());
                let qm = cx.reshape_exact(&qm, &[-1, s.tq as i64, 1]);
                cx.node("Mul", &[&o, &qm], &[&y], Vec::new());
            }
            None => cx.node("MatMul", &[&probs, &v], &[&y], Vec::new()),
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::tests::{errors, ok_shapes, typed_of};

    #[test]
    fn the_result_carries_the_query_s_mask_and_an_explicit_mask_is_an_error() {
        let src = "struct M { input t: [5] as i32; input q: [4, 6];
            let e = Embedding(20, 6, mask_zero = true)(t);
            let (y, s) = Attention()([e, q], return_attention_scores = true);
            output a = y; output b = Attention()([q, e]); output c = s; }";
        assert_eq!(ok_shapes(src), vec![vec![5, 6], vec![4, 6], vec![5, 4]]);
        let typed = typed_of(src);
        let carries: Vec<bool> = typed.model.outputs.iter().map(|o| typed.masks[o.value.0].is_some()).collect();
        assert_eq!(carries, [true, false, false]);
        let errs = errors("struct M { input q: [4, 6]; output y = Attention()([q, q], mask = [q, q]); }");
        assert!(errs[0].0.starts_with("`mask` of Attention is not an argument in modelc"), "{errs:?}");
    }
    #[test]
    fn output_is_query_positions_by_value_features_and_scores_tq_by_tv() {
        let src = "struct M { input q: [5, 8]; input v: [7, 3]; input k: [7, 8];
            let (y, s) = Attention(use_scale = true)([q, v, k], return_attention_scores = true, use_causal_mask = true);
            output out = y; output scores = s; }";
        assert_eq!(ok_shapes(src), vec![vec![5, 3], vec![5, 7]]);
        let src = "struct M { input x: [6, 4]; output y = Attention(score_mode = concat)([x, x]); }";
        assert_eq!(ok_shapes(src), vec![vec![6, 4]]);
    }

    #[test]
    fn shape_mistakes_are_errors_at_the_operand() {
        let e = errors("struct M { input q: [5, 8]; input v: [7, 3]; output y = Attention()([q, v]); }");
        assert!(e[0].0.starts_with("Attention compares each query with each key, so they need the same features"), "{e:?}");
        let e = errors("struct M { input q: [5, 8]; input v: [7, 3]; input k: [6, 8]; output y = Attention()([q, v, k]); }");
        assert!(e[0].0.starts_with("the key and the value of Attention must have the same positions"), "{e:?}");
        let e = errors("struct M { input q: [8]; output y = Attention()([q, q]); }");
        assert!(e[0].0.starts_with("Attention needs a sequence of feature vectors"), "{e:?}");
        let e = errors("struct M { input q: [5, 8]; output y = Attention()(q, q); }");
        assert!(e[0].0.starts_with("Attention is called on one list of tensors, but is given 2 arguments"), "{e:?}");
        let e = errors("struct M { input q: [5, 8]; output y = Attention(score_mode = dots)([q, q]); }");
        assert!(e[0].0.starts_with("unknown score_mode `dots` for Attention"), "{e:?}");
    }
}
