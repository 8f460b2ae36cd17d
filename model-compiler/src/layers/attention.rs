//! `MultiHeadAttention(num_heads, key_dim, value_dim, dropout, use_bias, output_shape, attention_axes)`,
//! Keras 3's layer, called as Keras calls it: `mha(query, value)`, `mha(query, value, key)`, with
//! `attention_mask = m` and `use_causal_mask = true`. Weights in Keras' names and layouts:
//! `query/kernel [dq, heads, key_dim]`, `query/bias [heads, key_dim]`, `key/...`, `value/...
//! [dv, heads, value_dim]`, `attention_output/kernel [heads, value_dim, out...]`, `attention_output/bias`.
//! The kernel is `model-runtime/src/kernels/attention.rs`.

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{CallArgsCx, EmitCx, InferCx, InitKind, LayerDef, LayerKind, MaskRule, ParamDecl};
use crate::ast::{ArgKind, CallValue};
use crate::diag::Diagnostic;
use crate::hir::DType;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{json, Value};

/// Multi-head scaled dot-product attention with its four projections.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadAttention {
    /// Heads.
    pub num_heads: usize,
    /// Per-head query/key size.
    pub key_dim: usize,
    /// Per-head value size (`key_dim` by default).
    pub value_dim: usize,
    /// Dropout rate on the attention probabilities.
    pub dropout: f32,
    /// Whether the projections have biases.
    pub use_bias: bool,
    /// The output's feature dims (default: the query's last dim).
    pub output_shape: Option<Vec<usize>>,
    /// `attention_axes` as written (full-tensor numbering), `None` for Keras' default (every axis
    /// between the batch and the features).
    pub attention_axes: Option<Vec<i64>>,
    /// Dropout seed.
    pub seed: u64,
    /// This call has a separate key tensor (its third operand).
    pub has_key: bool,
    /// This call has an `attention_mask` (its last operand).
    pub has_mask: bool,
    /// This call uses Keras' causal mask.
    pub causal: bool,
    /// This call returns the attention scores `[heads, query positions..., value positions...]` as its
    /// second result (`return_attention_scores = true`).
    pub return_scores: bool,
    /// `kernel_initializer`, `kernel_regularizer`, `kernel_constraint` of the four projections.
    pub kernel: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint` of the four projections.
    pub bias: WeightArgs,
}

/// The sizes of one call, flattened: attention over all positions of the attention axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sizes {
    tq: usize,
    tv: usize,
    dq: usize,
    dk: usize,
    dv: usize,
    out: usize,
    mask_rows: usize,
    mask_cols: usize,
}

impl MultiHeadAttention {
    /// `MultiHeadAttention(num_heads, key_dim, value_dim = key_dim, dropout = 0.0, use_bias = true,
    /// output_shape = None, attention_axes = None, seed = 0)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let num_heads = r.required_positive("num_heads", Some(0));
        let key_dim = r.required_positive("key_dim", Some(1));
        let value_dim = match r.raw("value_dim", Some(2)) {
            Some(v) if is_none(&v.kind) => None,
            Some(_) => Some(r.positive_or("value_dim", Some(2), 1)),
            None => None,
        };
        let dropout = r.float_in_or("dropout", Some(3), 0.0, 0.0, 1.0, true);
        let use_bias = r.bool_or("use_bias", Some(4), true);
        let output_shape = match r.raw("output_shape", Some(5)) {
            Some(v) if is_none(&v.kind) => Some(None),
            Some(_) => match r.int_tuple("output_shape", Some(5)) {
                Some((dims, _)) if dims.iter().all(|&d| d > 0) => Some(Some(dims.iter().map(|&d| d as usize).collect())),
                Some((dims, span)) => {
                    r.error(
                        Diagnostic::new(span, format!("`output_shape` of MultiHeadAttention must hold positive sizes, got {dims:?}"))
                            .help("give the output's feature size, e.g. `output_shape = 64`, or leave it out to keep the query's"),
                    );
                    None
                }
                None => None,
            },
            None => Some(None),
        };
        let attention_axes = match r.raw("attention_axes", Some(6)) {
            Some(v) if is_none(&v.kind) => Some(None),
            Some(_) => r.int_tuple("attention_axes", Some(6)).map(|(a, _)| Some(a)),
            None => Some(None),
        };
        let seed = r.int_or("seed", None, 0);
        let kernel = WeightArgs::read(r, role!("kernel", 3));
        let bias = WeightArgs::read(r, role!("bias", 2));
        let key_dim = key_dim?;
        let value_dim = match value_dim {
            Some(v) => v?,
            None => key_dim,
        };
        Some(MultiHeadAttention {
            num_heads: num_heads?,
            key_dim,
            value_dim,
            dropout: dropout? as f32,
            use_bias: use_bias?,
            output_shape: output_shape?,
            attention_axes: attention_axes?,
            seed: seed? as u64,
            has_key: false,
            has_mask: false,
            causal: false,
            return_scores: false,
            kernel: kernel?,
            bias: bias?,
        })
    }

    /// Keras import: `MultiHeadAttention(num_heads, key_dim, value_dim, dropout, use_bias, output_shape,
    /// attention_axes, kernel_*/bias_* arguments, seed)` from a Keras config (the call's tensors and
    /// options are the call's, written by the importer from the node).
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("num_heads");
        a.positional("key_dim");
        let key_dim = a.get("key_dim").cloned();
        if let Some(v) = a.get("value_dim") {
            if Some(v) != key_dim.as_ref() {
                a.args.push(format!("value_dim = {}", crate::import::args::dsl_value(v)));
            }
        }
        a.kw("dropout", json!(0.0));
        a.kw("use_bias", json!(true));
        a.expect("use_gate", json!(false), "modelc's MultiHeadAttention has no gate; rebuild the layer with use_gate=False");
        a.expect("sliding_window", Value::Null, "modelc attends to every position; rebuild the layer with sliding_window=None");
        a.expect("flash_attention", Value::Bool(false), "leave flash_attention unset (None)");
        for key in ["output_shape", "attention_axes", "seed"] {
            a.kw(key, Value::Null);
        }
        a.weights("kernel", "GlorotUniform");
    }

    /// Operand index of the key (the value when no key was given) and of the mask.
    fn key_index(&self) -> usize {
        if self.has_key {
            2
        } else {
            1
        }
    }

    fn mask_index(&self) -> usize {
        if self.has_key {
            3
        } else {
            2
        }
    }

    /// The output's feature dims.
    fn out_dims(&self, q: &Shape) -> Vec<usize> {
        self.output_shape.clone().unwrap_or_else(|| vec![q.last()])
    }

    /// Flattened sizes of a call on these operand shapes (shape rule already passed).
    fn sizes(&self, ins: &[Shape]) -> Sizes {
        let empty = Shape(Vec::new());
        let q = ins.first().unwrap_or(&empty);
        let v = ins.get(1).unwrap_or(&empty);
        let k = ins.get(self.key_index()).unwrap_or(v);
        let (tq, tv) = (q.lead(), v.lead());
        let (mask_rows, mask_cols) = match ins.get(self.mask_index()).filter(|_| self.has_mask).map(|m| m.0.as_slice()) {
            Some([c]) => (1, *c),
            Some([r, c]) => (*r, *c),
            _ => (1, 1),
        };
        Sizes { tq, tv, dq: q.last(), dk: k.last(), dv: v.last(), out: self.out_dims(q).iter().product(), mask_rows, mask_cols }
    }

    /// The kernel's `Option<Mask>`: the explicit `attention_mask` and the step masks the query, value and
    /// key carry (docs/masks.md: Keras' `_compute_attention_mask`), each only on a sequence operand.
    fn mask_tokens(&self, cx: &EmitCx, s: &Sizes) -> TokenStream {
        let a = quote!(::modelc::__private::kernels::attention);
        let step = |i: usize, t: usize| match cx.mask(i) {
            Some(m) if cx.inputs.get(i).is_some_and(|o| o.shape.rank() == 2 && o.shape.lead() == t) => {
                quote!(::core::option::Option::Some(#m))
            }
            _ => quote!(::core::option::Option::None),
        };
        let key = if self.has_key { step(self.key_index(), s.tv) } else { quote!(::core::option::Option::None) };
        let (query, value) = (step(0, s.tq), step(1, s.tv));
        let steps = quote!(#a::StepMasks { query: #query, value: #value, key: #key });
        let any_step = (0..cx.inputs.len()).any(|i| cx.mask(i).is_some());
        match (self.has_mask, any_step) {
            (true, _) => {
                let (x, r, c) = (cx.x(self.mask_index()), s.mask_rows, s.mask_cols);
                quote!(::core::option::Option::Some(#a::Mask { values: #x, rows: #r, cols: #c, steps: #steps }))
            }
            (false, true) => quote!(::core::option::Option::Some(#a::Mask { values: &[], rows: 1, cols: 1, steps: #steps })),
            (false, false) => quote!(::core::option::Option::None),
        }
    }

    fn mha_tokens(&self, s: &Sizes, seed: u64) -> TokenStream {
        let Sizes { tq, tv, dq, dk, dv, out, .. } = *s;
        let (heads, key_dim, value_dim, causal, dropout) = (self.num_heads, self.key_dim, self.value_dim, self.causal, self.dropout);
        quote!(::modelc::__private::kernels::attention::Mha {
            tq: #tq, tv: #tv, dq: #dq, dk: #dk, dv: #dv, heads: #heads, key_dim: #key_dim, value_dim: #value_dim,
            out: #out, causal: #causal, dropout: #dropout, seed: #seed,
        })
    }

    fn params_tokens(&self, cx: &EmitCx) -> TokenStream {
        let p = |i: usize| cx.p(i);
        if self.use_bias {
            let (wq, bq, wk, bk, wv, bv, wo, bo) = (p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7));
            quote!(::modelc::__private::kernels::attention::Params {
                wq: #wq, bq: ::core::option::Option::Some(#bq), wk: #wk, bk: ::core::option::Option::Some(#bk),
                wv: #wv, bv: ::core::option::Option::Some(#bv), wo: #wo, bo: ::core::option::Option::Some(#bo),
            })
        } else {
            let (wq, wk, wv, wo) = (p(0), p(1), p(2), p(3));
            quote!(::modelc::__private::kernels::attention::Params {
                wq: #wq, bq: ::core::option::Option::None, wk: #wk, bk: ::core::option::Option::None,
                wv: #wv, bv: ::core::option::Option::None, wo: #wo, bo: ::core::option::Option::None,
            })
        }
    }

    fn grads_tokens(&self) -> TokenStream {
        let g = |i: usize| quote::format_ident!("__g{}", i);
        if self.use_bias {
            let (wq, bq, wk, bk, wv, bv, wo, bo) = (g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7));
            quote!(::modelc::__private::kernels::attention::Grads {
                wq: &mut #wq[..], bq: ::core::option::Option::Some(&mut #bq[..]), wk: &mut #wk[..], bk: ::core::option::Option::Some(&mut #bk[..]),
                wv: &mut #wv[..], bv: ::core::option::Option::Some(&mut #bv[..]), wo: &mut #wo[..], bo: ::core::option::Option::Some(&mut #bo[..]),
            })
        } else {
            let (wq, wk, wv, wo) = (g(0), g(1), g(2), g(3));
            quote!(::modelc::__private::kernels::attention::Grads {
                wq: &mut #wq[..], bq: ::core::option::Option::None, wk: &mut #wk[..], bk: ::core::option::Option::None,
                wv: &mut #wv[..], bv: ::core::option::Option::None, wo: &mut #wo[..], bo: ::core::option::Option::None,
            })
        }
    }

    fn salted_seed(&self, cx: &EmitCx) -> u64 {
        self.seed ^ ((cx.output.buf as u64).wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03)
    }

    fn shapes(cx: &EmitCx) -> Vec<Shape> {
        cx.inputs.iter().map(|o| o.shape.clone()).collect()
    }

    /// Per-sample lengths of the kept state and of backward's working space (the runtime's
    /// `Mha::keep_len` and `Mha::tmp_len`: a batch takes at most these times its size).
    /// Saturating: sizes past the limit are refused (`infer::check_size`) before anything is planned.
    fn lengths(&self, s: &Sizes) -> (usize, usize) {
        let mul = |a: usize, b: usize| a.saturating_mul(b);
        let sum = |parts: &[usize]| parts.iter().fold(0usize, |n, &p| n.saturating_add(p));
        let (hk, hv) = (mul(self.num_heads, self.key_dim), mul(self.num_heads, self.value_dim));
        let tt = mul(s.tq, s.tv);
        let dropped = if self.dropout > 0.0 { tt } else { 0 };
        let keep = sum(&[mul(hk, s.tq), mul(hk, s.tv), mul(hv, s.tv), mul(self.num_heads, tt), mul(hv, s.tq), dropped]);
        let tmp = sum(&[mul(hk, s.tq), mul(hk, s.tv), mul(hv, s.tv), mul(hv, s.tq), mul(2, tt)]);
        (keep, tmp)
    }

    fn check_axes(&self, cx: &InferCx<'_>, q: &Shape) -> Result<(), Diagnostic> {
        let Some(axes) = &self.attention_axes else { return Ok(()) };
        let full = q.rank() + 1;
        let mut got: Vec<usize> = axes.iter().filter_map(|&a| crate::shape::sample_axis(a, q.rank())).map(|a| a + 1).collect();
        got.sort_unstable();
        let all: Vec<usize> = (1..full - 1).collect();
        if got.len() == axes.len() && got == all {
            return Ok(());
        }
        let all_text = all.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        Err(Diagnostic::new(
            cx.span,
            format!("MultiHeadAttention(attention_axes = {axes:?}) on {}: modelc attends over all of axes ({all_text}) at once, not over a part of them", cx.describe(0)),
        )
        .help(format!("leave `attention_axes` out (Keras' default, axes ({all_text})), or reshape the tensor so the axes to attend over are the only ones between the batch and the features")))
    }
}

/// The dims before the features.
fn positions(s: &Shape) -> &[usize] {
    s.0.split_last().map(|(_, lead)| lead).unwrap_or(&[])
}

/// Whether an argument value is Python's `None`.
fn is_none(kind: &ArgKind) -> bool {
    matches!(kind, ArgKind::Ident(i) if i == "None")
}

/// One projection of a `(N, positions..., d)` operand for ONNX, heads split and moved before the
/// positions: `MatMul(x, Reshape(kernel, (d, H·dh)))` + `Reshape(bias, (H·dh,))`, `Reshape (N, t, H, dh)`,
/// `Transpose(perm)`.
#[allow(clippy::too_many_arguments)]
fn onnx_projection(
    cx: &mut OnnxCx,
    x: &str,
    t: usize,
    d: usize,
    w: &str,
    b: Option<&str>,
    heads: usize,
    dh: usize,
    perm: &[usize],
) -> String {
    let (t, d, hd) = (t as i64, d as i64, (heads * dh) as i64);
    let x = cx.reshape_exact(x, &[-1, t, d]);
    let w = cx.reshape_exact(w, &[d, hd]);
    let mut y = cx.op("MatMul", &[&x, &w], Vec::new());
    if let Some(b) = b {
        let b = cx.reshape_exact(b, &[hd]);
        y = cx.op("Add", &[&y, &b], Vec::new());
    }
    let y = cx.reshape_exact(&y, &[-1, t, heads as i64, dh as i64]);
    cx.transpose(&y, perm)
}

impl LayerDef for MultiHeadAttention {
    // Keras: the result carries the query's mask (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // In inference mode (no dropout), as the kernel computes it: the three projections (heads first:
    // Q (N, H, tq, dk), Kᵀ (N, H, dk, tv), V (N, H, tv, dv)); scores Mul(MatMul(Q, Kᵀ), 1/√key_dim);
    // where a position is masked (causal: key index after query index; attention_mask <= 0.5)
    // Where(keep, scores, -1e9), Softmax(axis = -1), Where(keep, probs, 0); MatMul(probs, V), Transpose
    // to (N, tq, H, dv), Reshape (N, tq, H·dv), MatMul(Reshape(attention_output/kernel, (H·dv, out))) +
    // bias, Reshape to the output's dims. With `return_attention_scores`, the probabilities (before
    // dropout, which inference has not) reshaped to (N, H, query positions..., value positions...).
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        if (0..cx.n_inputs()).any(|i| cx.mask_input(i).is_some()) {
            return Err(OnnxError::Unsupported(String::from(
                "its operands carry masks (docs/masks.md), which its ONNX export does not read yet; pass the mask as `attention_mask`",
            )));
        }
        let ins: Vec<Shape> = (0..cx.n_inputs()).map(|i| cx.input_shape(i)).collect();
        let s = self.sizes(&ins);
        let (heads, kd, vd) = (self.num_heads, self.key_dim, self.value_dim);
        let param = |cx: &OnnxCx, name: &str| cx.param_named(name).ok_or_else(|| OnnxError::Unsupported(format!("no parameter `{name}`")));
        let bias = |cx: &OnnxCx, name: &str| if self.use_bias { param(cx, name).map(Some) } else { Ok(None) };
        let (wq, bq, wk, bk) = (param(cx, "query/kernel")?, bias(cx, "query/bias")?, param(cx, "key/kernel")?, bias(cx, "key/bias")?);
        let (wv, bv, wo, bo) = (
            param(cx, "value/kernel")?,
            bias(cx, "value/bias")?,
            param(cx, "attention_output/kernel")?,
            bias(cx, "attention_output/bias")?,
        );
        let (xq, xv, xk) = (cx.input(0), cx.input(1), cx.input(self.key_index()));
        let q = onnx_projection(cx, &xq, s.tq, s.dq, &wq, bq.as_deref(), heads, kd, &[0, 2, 1, 3]);
        let k = onnx_projection(cx, &xk, s.tv, s.dk, &wk, bk.as_deref(), heads, kd, &[0, 2, 3, 1]);
        let v = onnx_projection(cx, &xv, s.tv, s.dv, &wv, bv.as_deref(), heads, vd, &[0, 2, 1, 3]);
        let scores = cx.op("MatMul", &[&q, &k], Vec::new());
        let scale = cx.scalar(1.0 / (kd as f32).sqrt());
        let mut scores = cx.op("Mul", &[&scores, &scale], Vec::new());
        let half = cx.scalar(0.5);
        let mut keep: Option<String> = None;
        if self.causal {
            let lower: Vec<f32> = (0..s.tq * s.tv).map(|ij| if ij % s.tv <= ij / s.tv { 1.0 } else { 0.0 }).collect();
            let c = cx.const_f32(&[s.tq as i64, s.tv as i64], &lower);
            keep = Some(cx.op("Greater", &[&c, &half], Vec::new()));
        }
        if self.has_mask {
            let m = cx.input(self.mask_index());
            let m = cx.reshape_exact(&m, &[-1, 1, s.mask_rows as i64, s.mask_cols as i64]);
            let m = cx.op("Greater", &[&m, &half], Vec::new());
            keep = Some(match keep {
                Some(c) => cx.op("And", &[&c, &m], Vec::new()),
                None => m,
            });
        }
        if let Some(keep) = &keep {
            let neg = cx.scalar(-1e9);
            scores = cx.op("Where", &[keep, &scores, &neg], Vec::new());
        }
        let mut probs = cx.op("Softmax", &[&scores], vec![("axis", crate::onnx::Attr::Int(-1))]);
        if let Some(keep) = &keep {
            let zero = cx.scalar(0.0);
            probs = cx.op("Where", &[keep, &probs, &zero], Vec::new());
        }
        if self.return_scores {
            let mut dims = vec![heads];
            for s in ins.iter().take(2) {
                dims.extend(positions(s));
            }
            let out = cx.extra_output(1);
            cx.reshape_into(&probs, &dims, &out);
        }
        let ctx = cx.op("MatMul", &[&probs, &v], Vec::new());
        let ctx = cx.transpose(&ctx, &[0, 2, 1, 3]);
        let hv = (heads * vd) as i64;
        let ctx = cx.reshape_exact(&ctx, &[-1, s.tq as i64, hv]);
        let wo = cx.reshape_exact(&wo, &[hv, s.out as i64]);
        let mut y = cx.op("MatMul", &[&ctx, &wo], Vec::new());
        if let Some(bo) = bo {
            let bo = cx.reshape_exact(&bo, &[s.out as i64]);
            y = cx.op("Add", &[&y, &bo], Vec::new());
        }
        let dims = cx.output_shape().0.clone();
        cx.reshape_into(&y, &dims, &cx.output());
        Ok(())
    }

    fn call_keywords(&self) -> &'static [&'static str] {
        &["attention_mask", "use_causal_mask", "return_attention_scores"]
    }

    // One result, or the output and the scores with `return_attention_scores = true`.
    fn result_names(&self) -> Vec<&'static str> {
        if self.return_scores {
            vec!["output", "scores"]
        } else {
            vec!["output"]
        }
    }

    // Keras 3: the scores are (None, heads, query positions..., value positions...).
    fn extra_shapes(&self, cx: &InferCx<'_>, _output: &Shape) -> Vec<Shape> {
        if !self.return_scores {
            return Vec::new();
        }
        let empty = Shape(Vec::new());
        let (q, v) = (cx.inputs.first().unwrap_or(&empty), cx.inputs.get(1).unwrap_or(&empty));
        let mut dims = vec![self.num_heads];
        dims.extend(positions(q));
        dims.extend(positions(v));
        vec![Shape(dims)]
    }

    fn extra_rank(&self, _k: usize, inputs: &[Option<usize>]) -> Option<usize> {
        let q = inputs.first().copied().flatten()?;
        Some(1 + 2 * q.saturating_sub(1))
    }

    // Keras: `mha(query, value, key = value, attention_mask = None, use_causal_mask = False)`. Keras'
    // other call arguments are rejected here with a reason, before the framework's "takes no call argument".
    fn call_args(&self, cx: &CallArgsCx<'_>) -> Option<Result<LayerKind, Diagnostic>> {
        let mut out = self.clone();
        let r = (|| {
            match cx.positional {
                2 => out.has_key = false,
                3 => out.has_key = true,
                n => {
                    return Err(Diagnostic::new(
                        cx.span,
                        format!(
                            "MultiHeadAttention is called on a query, a value and optionally a key, but is given {n} tensor{}",
                            if n == 1 { "" } else { "s" }
                        ),
                    )
                    .help("call it as Keras does: `mha(query, value)` (self-attention: `mha(x, x)`), or `mha(query, value, key)`"));
                }
            }
            out.has_mask = false;
            out.causal = false;
            out.return_scores = false;
            for (key, value) in cx.keywords {
                match (key.to_string().as_str(), value) {
                    ("attention_mask", CallValue::Tensor(crate::ast::Expr::List(l))) => {
                        return Err(Diagnostic::new(l.span, "`attention_mask` of MultiHeadAttention is one tensor, not a list")
                            .help("pass one mask of shape (batch, query length, value length), e.g. `attention_mask = m`"));
                    }
                    ("attention_mask", CallValue::Tensor(_)) => out.has_mask = true,
                    ("use_causal_mask", CallValue::Literal(v)) => match v.kind {
                        ArgKind::Bool(b) => out.causal = b,
                        _ => {
                            return Err(Diagnostic::new(v.span, "`use_causal_mask` must be `true` or `false`")
                                .help("write `use_causal_mask = true`"))
                        }
                    },
                    ("attention_mask", CallValue::Literal(v)) => {
                        return Err(Diagnostic::new(v.span, "`attention_mask` must be a tensor")
                            .help("declare the mask as an input, `input m: [8, 8];`, and pass `attention_mask = m`"));
                    }
                    ("use_causal_mask", CallValue::Tensor(e)) => {
                        return Err(
                            Diagnostic::new(e.span(), "`use_causal_mask` must be `true` or `false`").help("write `use_causal_mask = true`")
                        );
                    }
                    ("return_attention_scores", CallValue::Literal(v)) => match v.kind {
                        ArgKind::Bool(b) => out.return_scores = b,
                        _ => {
                            return Err(Diagnostic::new(v.span, "`return_attention_scores` must be `true` or `false`")
                                .help("write `let (y, scores) = mha(q, v, return_attention_scores = true);`"))
                        }
                    },
                    ("return_attention_scores", CallValue::Tensor(e)) => {
                        return Err(Diagnostic::new(e.span(), "`return_attention_scores` must be `true` or `false`")
                            .help("write `let (y, scores) = mha(q, v, return_attention_scores = true);`"));
                    }
                    ("query" | "value" | "key", _) => {
                        return Err(Diagnostic::new(key.span(), format!("pass `{key}` of MultiHeadAttention by position"))
                            .help("write `mha(query, value)` or `mha(query, value, key)`"));
                    }
                    // Any other keyword is reported by the framework (`call_keywords`).
                    _ => {}
                }
            }
            Ok(LayerKind::MultiHeadAttention(out.clone()))
        })();
        Some(r)
    }

    // Rule (Keras `MultiHeadAttention.build`/`compute_output_shape`): query, value and key have the same
    // rank; key and value the same positions; the output is the query's positions with `output_shape`
    // (default: the query's features). A mask is (query positions, value positions), either may be 1.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (Some(q), Some(v)) = (cx.inputs.first(), cx.inputs.get(1)) else {
            return Err(Diagnostic::new(cx.span, "MultiHeadAttention is called on a query and a value").help("write `mha(query, value)`"));
        };
        let ki = self.key_index();
        let k = cx.inputs.get(ki).unwrap_or(v);
        for (i, s) in [(0, q), (1, v), (ki, k)] {
            if s.rank() < 2 {
                return Err(Diagnostic::new(
                    cx.spans.get(i).copied().unwrap_or(cx.span),
                    format!(
                        "MultiHeadAttention needs a sequence of feature vectors, (batch, positions, features), but {} has rank {}",
                        cx.describe(i),
                        s.rank() + 1
                    ),
                )
                .help(format!(
                    "give `{}` a positions axis, e.g. `Reshape(({}, 1))({})`",
                    cx.name(i),
                    s.numel(),
                    cx.name(i)
                )));
            }
        }
        for (i, s) in [(1, v), (ki, k)] {
            if s.rank() != q.rank() {
                return Err(Diagnostic::new(
                    cx.spans.get(i).copied().unwrap_or(cx.span),
                    format!(
                        "MultiHeadAttention needs query, value and key of one rank, but {} has rank {} and {} rank {}",
                        cx.describe(0),
                        q.rank() + 1,
                        cx.describe(i),
                        s.rank() + 1
                    ),
                )
                .help("reshape them to the same rank, e.g. (batch, positions, features) for each"));
            }
        }
        if self.has_key && positions(k) != positions(v) {
            return Err(Diagnostic::new(
                cx.spans.get(ki).copied().unwrap_or(cx.span),
                format!(
                    "the key and the value of MultiHeadAttention must have the same positions, but {} and {} differ before their features",
                    cx.describe(ki),
                    cx.describe(1)
                ),
            )
            .help(format!(
                "each value needs its key: pass a key with the value's positions, like `mha(query, {}, {})` with both {}",
                cx.name(1),
                cx.name(1),
                Shape(positions(v).to_vec())
            )));
        }
        self.check_axes(cx, q)?;
        if self.has_mask {
            let mi = self.mask_index();
            let m = cx.inputs.get(mi).cloned().unwrap_or(Shape(Vec::new()));
            let (tq, tv) = (q.lead(), v.lead());
            let fits = |d: usize, n: usize| d == 1 || d == n;
            let ok = match m.0.as_slice() {
                [c] => fits(*c, tv),
                [r, c] => fits(*r, tq) && fits(*c, tv),
                _ => false,
            };
            let span = cx.spans.get(mi).copied().unwrap_or(cx.span);
            if !ok {
                return Err(Diagnostic::new(
                    span,
                    format!(
                        "the attention mask {} does not broadcast to the scores of {} attending to {}: it must be (None, {tq}, {tv}), each of {tq} and {tv} may be 1",
                        cx.describe(mi),
                        cx.describe(0),
                        cx.describe(1)
                    ),
                )
                .help(format!("give the mask one value per query and value position, e.g. `input {}: [{tq}, {tv}];`", cx.name(mi))));
            }
            if cx.dtypes.get(mi).copied().flatten() == Some(DType::I32) {
                return Err(Diagnostic::new(
                    span,
                    format!("the attention mask `{}` is an int32 input; masks are float 0/1 values", cx.name(mi)),
                )
                .help(format!(
                    "declare it without `as i32`: `input {}: {};`",
                    cx.name(mi),
                    m.keras().replace("(None, ", "[").replace(')', "]")
                )));
            }
        }
        for (i, s) in [(0, q), (1, v), (ki, k)] {
            if cx.dtypes.get(i).copied().flatten() == Some(DType::I32) {
                return Err(Diagnostic::new(
                    cx.spans.get(i).copied().unwrap_or(cx.span),
                    format!("MultiHeadAttention needs float features, but {} is an int32 input", cx.describe(i)),
                )
                .help(format!("embed the ids first, e.g. `Embedding(1000, 64)({})`; {s} then holds vectors", cx.name(i))));
            }
        }
        let mut dims = positions(q).to_vec();
        dims.extend(self.out_dims(q));
        Ok(Shape(dims))
    }

    // (positions..., output_shape...)
    fn output_rank(&self, inputs: &[Option<usize>]) -> Option<usize> {
        let q = inputs.first().copied().flatten()?;
        Some(q - 1 + self.output_shape.as_ref().map_or(1, Vec::len))
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let s = self.sizes(inputs);
        let (h, kd, vd) = (self.num_heads, self.key_dim, self.value_dim);
        let q = inputs.first().cloned().unwrap_or(Shape(Vec::new()));
        let out = self.out_dims(&q);
        // Keras' glorot fans of an EinsumDense kernel: the leading dims are a receptive field. Saturating:
        // the shapes are checked against the size limit after this (`infer::check_size`).
        let proj = |suffix: &'static str, din: usize, dh: usize| {
            let init = InitKind::GlorotUniform { fan_in: h.saturating_mul(din), fan_out: dh.saturating_mul(din) };
            ParamDecl::new(suffix, vec![din, h, dh], init, true).with(&self.kernel)
        };
        let bias = |suffix: &'static str, shape: Vec<usize>| ParamDecl::new(suffix, shape, InitKind::Zeros, true).with(&self.bias);
        let mut wo = vec![h, vd];
        wo.extend(&out);
        let out_n = out.iter().fold(1usize, |n, &d| n.saturating_mul(d));
        let init = InitKind::GlorotUniform { fan_in: vd.saturating_mul(h), fan_out: out_n.saturating_mul(h) };
        let wo = ParamDecl::new("attention_output/kernel", wo, init, true).with(&self.kernel);
        if self.use_bias {
            vec![
                proj("query/kernel", s.dq, kd),
                bias("query/bias", vec![h, kd]),
                proj("key/kernel", s.dk, kd),
                bias("key/bias", vec![h, kd]),
                proj("value/kernel", s.dv, vd),
                bias("value/bias", vec![h, vd]),
                wo,
                bias("attention_output/bias", out),
            ]
        } else {
            vec![proj("query/kernel", s.dq, kd), proj("key/kernel", s.dk, kd), proj("value/kernel", s.dv, vd), wo]
        }
    }

    // [kept state: projections, scores, context; backward's working space]
    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        let (keep, tmp) = self.lengths(&self.sizes(inputs));
        vec![keep, tmp]
    }

    fn backward_only_scratch(&self) -> Vec<usize> {
        vec![1]
    }

    // attention::forward(&mha, q, k, v, mask, &params, step, first_row, training, keep, y, batch), then, with
    // `return_attention_scores`, attention::scores(&mha, keep, y1, batch). The inference forward of a
    // call that does not return its scores: attention::infer(&mha, q, k, v, mask, &params, keep, y, batch).
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let s = self.sizes(&Self::shapes(cx));
        let m = self.mha_tokens(&s, self.salted_seed(cx));
        let prm = self.params_tokens(cx);
        let (q, v, k) = (cx.x(0), cx.x(1), cx.x(self.key_index()));
        let mask = self.mask_tokens(cx, &s);
        let keep = cx.scratch_mut(0);
        if cx.inference && cx.extra.is_empty() {
            return quote!({
                let __m = #m;
                let __prm = #prm;
                ::modelc::__private::kernels::attention::infer(&__m, #q, #k, #v, #mask, &__prm, #keep, &mut __y[..], __b);
            });
        }
        let scores = match cx.extra.first() {
            Some(_) => {
                let (y1, kept) = (cx.y_extra(1), cx.scratch(0));
                quote!(::modelc::__private::kernels::attention::scores(&__m, #kept, &mut #y1[..], __b);)
            }
            None => TokenStream::new(),
        };
        quote!({
            let __m = #m;
            let __prm = #prm;
            ::modelc::__private::kernels::attention::forward(&__m, #q, #k, #v, #mask, &__prm, __ws.step, __ws.first_row, __ws.training, #keep, &mut __y[..], __b);
            #scores
        })
    }

    // attention::backward(.., keep, dy, dscores, grads, tmp, batch), then attention::backward_input per
    // operand; `dscores` is the returned scores' gradient (`__dy1`) with `return_attention_scores`.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let s = self.sizes(&Self::shapes(cx));
        let m = self.mha_tokens(&s, self.salted_seed(cx));
        let prm = self.params_tokens(cx);
        let g = self.grads_tokens();
        let (q, v, k) = (cx.x(0), cx.x(1), cx.x(self.key_index()));
        let (s0, s1) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch.get(1).copied().unwrap_or(0));
        let (n0, n1) = (cx.scratch_len(0), cx.scratch_len(1));
        let a = quote!(::modelc::__private::kernels::attention);
        let dscores = super::some_if(!cx.extra.is_empty(), {
            let d = cx.dy_extra(1);
            quote!(&#d[..])
        });
        let mut inputs = TokenStream::new();
        let (pq, pk, pv) = if self.use_bias { (cx.p(0), cx.p(2), cx.p(4)) } else { (cx.p(0), cx.p(1), cx.p(2)) };
        for (i, which, w) in [(0, quote!(Query), pq), (1, quote!(Value), pv), (self.key_index(), quote!(Key), pk)] {
            if !cx.needs_grad(i) {
                continue;
            }
            let dx = cx.dx_mut(i);
            inputs.extend(quote!(#a::backward_input(&__m, #a::Proj::#which, #w, &__ws.scratch[#s1][..__b * #n1], #dx, __b);));
        }
        quote!({
            let __m = #m;
            let __prm = #prm;
            {
                let (__keep, __tmp) = ::modelc::__private::support::pair_mut(&mut __ws.scratch, #s0, #s1);
                #a::backward(&__m, #q, #k, #v, &__prm, __ws.step, __ws.first_row, __ws.training, &__keep[..__b * #n0], &__dy[..], #dscores, #g, &mut __tmp[..__b * #n1], __b);
            }
            #inputs
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::tests::{errors, ok_shapes};

    #[test]
    fn self_and_cross_attention_keep_the_query_positions() {
        let src = "struct M { input x: [6, 16]; layer mha = MultiHeadAttention(num_heads = 2, key_dim = 4); output y = mha(x, x); }";
        assert_eq!(ok_shapes(src), vec![vec![6, 16]]);
        let src = "struct M { input q: [5, 8]; input v: [7, 12]; input k: [7, 3]; input m: [5, 7];
            layer mha = MultiHeadAttention(2, 4, value_dim = 3, output_shape = 10);
            output y = mha(q, v, k, attention_mask = m, use_causal_mask = true); }";
        assert_eq!(ok_shapes(src), vec![vec![5, 10]]);
    }

    #[test]
    fn returned_scores_are_heads_by_query_by_value_positions() {
        let src = "struct M { input q: [5, 8]; input v: [7, 12]; layer mha = MultiHeadAttention(3, 4);
            let (y, s) = mha(q, v, return_attention_scores = true); output out = y; output scores = s; }";
        assert_eq!(ok_shapes(src), vec![vec![5, 8], vec![3, 5, 7]]);
        let src = "struct M { input x: [2, 3, 8]; layer mha = MultiHeadAttention(2, 4);
            let (y, s) = mha(x, x, return_attention_scores = true); output scores = s; }";
        assert_eq!(ok_shapes(src), vec![vec![2, 2, 3, 2, 3]]);
        let e = errors(
            "struct M { input x: [5, 8]; layer mha = MultiHeadAttention(2, 4); output y = mha(x, x, return_attention_scores = true); }",
        );
        assert_eq!(e[0].0, "this call returns 2 tensors", "{e:?}");
        assert_eq!(e[0].1.as_deref(), Some("bind them all: `let (output, scores) = ...;`"));
    }

    #[test]
    fn a_mask_that_does_not_broadcast_is_an_error_at_the_mask() {
        let e = errors("struct M { input q: [5, 8]; input v: [7, 8]; input m: [5, 6]; layer mha = MultiHeadAttention(2, 4); output y = mha(q, v, attention_mask = m); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].0.starts_with("the attention mask `m` (None, 5, 6) does not broadcast"), "{e:?}");
        let ok = "struct M { input q: [5, 8]; input v: [7, 8]; input m: [1, 7]; layer mha = MultiHeadAttention(2, 4); output y = mha(q, v, attention_mask = m); }";
        assert_eq!(ok_shapes(ok), vec![vec![5, 8]]);
    }

    #[test]
    fn key_and_value_need_the_same_positions_and_calls_need_a_value() {
        let e = errors("struct M { input q: [5, 8]; input v: [7, 8]; input k: [6, 8]; layer mha = MultiHeadAttention(2, 4); output y = mha(q, v, k); }");
        assert!(e[0].0.starts_with("the key and the value of MultiHeadAttention must have the same positions"), "{e:?}");
        let e = errors("struct M { input q: [5, 8]; layer mha = MultiHeadAttention(2, 4); output y = mha(q); }");
        assert!(
            e[0].0.starts_with("MultiHeadAttention is called on a query, a value and optionally a key, but is given 1 tensor"),
            "{e:?}"
        );
    }

    #[test]
    fn partial_attention_axes_and_unknown_call_arguments_are_errors() {
        let e = errors("struct M { input q: [3, 5, 8]; layer mha = MultiHeadAttention(2, 4, attention_axes = 2); output y = mha(q, q); }");
        assert!(e[0].0.contains("modelc attends over all of axes (1, 2) at once"), "{e:?}");
        let ok = "struct M { input q: [3, 5, 8]; layer mha = MultiHeadAttention(2, 4, attention_axes = (1, 2)); output y = mha(q, q); }";
        assert_eq!(ok_shapes(ok), vec![vec![3, 5, 8]]);
        let e = errors("struct M { input q: [5, 8]; layer mha = MultiHeadAttention(2, 4); output y = mha(q, q, use_casual_mask = true); }");
        assert_eq!(e[0].0, "MultiHeadAttention takes no call argument `use_casual_mask`");
        assert_eq!(e[0].1.as_deref(), Some("did you mean `use_causal_mask`?"));
    }

    #[test]
    fn other_layers_still_take_one_tensor() {
        let e = errors("struct M { input a: [4]; input b: [4]; output y = Concatenate()(a, b); }");
        assert!(e[0].0.starts_with("a layer is called on one tensor"), "{e:?}");
        let e = errors("struct M { input a: [4]; output y = Dense(2)(a, mask = a); }");
        // One keyword mechanism for every layer: the same message as `LSTM(4)(x, initial_states = ...)`.
        assert_eq!(e[0].0, "Dense takes no call argument `mask`");
        assert_eq!(e[0].1.as_deref(), Some("call it on its tensor alone: `Dense(...)(x)`"));
    }
}
