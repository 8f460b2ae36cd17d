//! Property test: random mutations of valid models never make the compiler panic.
//!
//! Each case takes a valid model, applies one to three random edits to its token tree (delete, swap or
//! duplicate a token, change a number, rename an identifier, empty or re-delimit or flatten a group), and
//! runs `compile` and the diagnostics' conversion to `compile_error!`s (together: `expand`) under
//! `catch_unwind`. Deterministic: a fixed-seed xorshift generator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream, TokenTree};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

/// Valid models the mutations start from.
const SEEDS: &[&str] = &[
    "/// Two branches.
     pub struct Fusion {
        input left_features: [8];
        input right_features: [4];
        let left = Dense(16, activation = relu)(left_features);
        let left = Dense(8, activation = relu)(left);
        let right = Dense(8, activation = relu)(right_features);
        let merged = Concatenate()([left, right]);
        output score = Dense(1, activation = sigmoid)(merged);
    }",
    "pub struct Tower {
        input v: [6];
        output w = Dense(3, activation = tanh, name = \"proj\")(v);
    }
    pub struct Siamese {
        input a: [6];
        input b: [6];
        layer tower = Tower;
        layer enc = Dense(4, activation = relu, use_bias = false);
        let ta = enc(tower(a));
        let tb = enc(tower(b));
        output same = Dense(1, activation = sigmoid)(Concatenate(axis = -1)([ta, tb]));
    }",
    "pub(crate) struct Seq {
        input tokens: [5, 8];
        input extra: [3, 8] as f32;
        let h = Dense(16, activation = gelu)(tokens);
        let j = Concatenate(axis = 1)([tokens, extra]);
        output y = Dense(2)(h);
        output z = Activation(softmax)(j);
    }",
    "pub struct Pair {
        input l: [4];
        input r: [4];
        output s = Concatenate()([l, r]);
        output d = Dense(2)(l);
    }
    struct Outer {
        input x: [4];
        input y: [4];
        layer pair = Pair(trainable = false);
        let (s, d) = pair([x, y]);
        output o = Dense(1)(Concatenate()([s, d]));
    }",
    "struct Text {
        input tokens: [7] as i32;
        input image: [6, 6, 2];
        let e = Embedding(20, 4)(tokens);
        let e = LayerNormalization(axis = (1, 2), epsilon = 1e-5)(BatchNormalization(momentum = 0.9)(e));
        let c = BatchNormalization(axis = 3, center = false)(Conv2D(4, 3, padding = same)(image));
        let c = Softmax(axis = 1)(GlobalAveragePooling2D()(c));
        output y = Dense(3, activation = softmax)(Concatenate()([Flatten()(e), c]));
    }",
    "pub struct Merges {
        input a: [8];
        input b: [8];
        let s = Add()([a, b]);
        let d = Subtract()([a, b]);
        let m = Multiply()([s, d]);
        let v = Average()([a, b, m]);
        let hi = Maximum()([a, v]);
        let lo = Minimum()([b, v]);
        output y = Dot(axes = 1, normalize = true)([hi, lo]);
        output z = Dropout(0.25, seed = 3)(Dense(4)(v));
    }",
    "pub struct Vision {
        input seq: [12, 3];
        input image: [8, 8, 2];
        let s = Conv1D(4, 3, strides = 1, padding = valid, activation = relu)(seq);
        let s = AveragePooling1D(pool_size = 2, strides = 1, padding = same)(MaxPooling1D(2)(s));
        let i = Conv2D(4, (3, 3), padding = same, dilation_rate = 2)(image);
        let i = AveragePooling2D(2, padding = same)(MaxPooling2D((2, 2))(i));
        let r = Flatten()(Reshape((2, -1))(Flatten()(i)));
        let ga = GlobalAveragePooling1D()(s);
        output y = Concatenate()([ga, GlobalMaxPooling1D()(s), GlobalAveragePooling2D()(i), GlobalMaxPooling2D()(i), r]);
    }",
    "pub struct Resize {
        input seq: [10, 4];
        input image: [8, 8, 4];
        let s = Cropping1D((1, 2))(ZeroPadding1D(2)(seq));
        let s = UpSampling1D(3)(Conv1D(4, 3, groups = 2)(s));
        let i = Rescaling(0.00392, offset = -0.5)(image);
        let i = Cropping2D(((1, 0), (0, 1)))(ZeroPadding2D((1, 2))(i));
        let i = UpSampling2D((2, 2), interpolation = bilinear)(Conv2D(4, 3, groups = 4, padding = same)(i));
        output y = Concatenate()([GlobalAveragePooling1D()(s), GlobalMaxPooling2D()(UpSampling2D(2)(i))]);
    }",
    "pub struct Depthwise {
        input seq: [10, 3];
        input image: [8, 8, 3];
        let s = DepthwiseConv1D(3, depth_multiplier = 2, padding = same, activation = relu)(seq);
        let i = DepthwiseConv2D((3, 3), strides = 2, use_bias = false)(image);
        let i = DepthwiseConv2D(3, padding = same, dilation_rate = 2, activation = gelu)(i);
        output y = Concatenate()([GlobalAveragePooling1D()(s), GlobalAveragePooling2D()(i)]);
    }",
    "pub struct Separable {
        input seq: [10, 3];
        input image: [8, 8, 3];
        let s = SeparableConv1D(4, 3, depth_multiplier = 2, padding = same, activation = relu)(seq);
        let i = SeparableConv2D(6, (3, 3), strides = 2, use_bias = false)(image);
        let i = SeparableConv2D(4, 3, padding = same, dilation_rate = 2, activation = gelu)(i);
        output y = Concatenate()([GlobalAveragePooling1D()(s), GlobalAveragePooling2D()(i)]);
    }",
    "pub struct UpPath {
        input seq: [6, 4];
        input image: [4, 4, 3];
        let d = Conv2D(4, 3, strides = 2, padding = same, activation = relu)(image);
        let u = Conv2DTranspose(3, 3, strides = 2, padding = same, output_padding = 1)(d);
        let i = Concatenate()([u, image]);
        let s = Conv1DTranspose(2, 3, strides = 2, dilation_rate = 1, use_bias = false, activation = tanh)(seq);
        output y = Concatenate()([GlobalAveragePooling1D()(s), GlobalMaxPooling2D()(i)]);
    }",
    "struct Recurrent {
        input src: [6, 4];
        input tgt: [5, 3];
        let (enc, h, c) = LSTM(8, return_sequences = true, return_state = true)(src);
        let dec = LSTM(8, go_backwards = true)(tgt, initial_state = [h, c]);
        let (g, hg) = GRU(4, return_state = true, recurrent_activation = sigmoid)(enc);
        let s = SimpleRNN(3, activation = relu, use_bias = false)(enc);
        let (f, b) = Bidirectional(GRU(3, return_sequences = true), merge_mode = none)(enc);
        let bi = Bidirectional(LSTM(2), merge_mode = ave)(Add()([f, b]));
        output y = Concatenate()([dec, g, hg, s, bi]);
    }",
    "pub struct SeqGlue {
        input v: [6];
        input image: [4, 3, 2];
        let s = RepeatVector(n = 5)(Dense(4)(v));
        let t = Permute((2, 1))(s);
        let i = Permute(dims = (3, 1, 2))(image);
        output y = Concatenate()([GlobalAveragePooling1D()(t), Flatten()(i)]);
    }",
    "pub struct Frames {
        input frames: [3, 6, 6, 2];
        layer step = TimeDistributed(Dense(4, activation = relu, name = \"step\"));
        let f = TimeDistributed(Conv2D(2, 3, padding = same))(frames);
        let f = TimeDistributed(layer = Flatten())(TimeDistributed(MaxPooling2D(2))(f));
        let s = TimeDistributed(TimeDistributed(Dense(3)))(Reshape((3, 2, 9))(f));
        output y = step(Reshape((3, 18))(Flatten()(f)));
        output w = Flatten()(s);
        output z = GlobalAveragePooling1D()(step(TimeDistributed(Dropout(0.5))(f)));
    }",
    "pub struct Attend {
        input q: [4, 6];
        input v: [5, 3];
        input m: [4, 5];
        layer mha = MultiHeadAttention(num_heads = 2, key_dim = 3, value_dim = 2, output_shape = 6);
        let c = mha(q, v, v, attention_mask = m, use_causal_mask = true);
        let s = MultiHeadAttention(2, 4, dropout = 0.1)(q, q);
        output y = LayerNormalization()(Add()([c, s]));
    }",
    "pub struct DotAttend {
        input q: [4, 6];
        input v: [5, 3];
        input k: [5, 6];
        let (a, s) = Attention(use_scale = true)([q, v, k], use_causal_mask = true, return_attention_scores = true);
        let c = Attention(score_mode = concat, dropout = 0.1)([q, q]);
        output y = Concatenate()([a, c]);
        output scores = s;
    }",
    "pub struct Masked {
        input x: [5, 3];
        input tokens: [5] as i32;
        let m = Masking(mask_value = 0.0)(x);
        let e = Embedding(20, 3, mask_zero = true)(tokens);
        let a = Add()([m, e]);
        output y = GlobalAveragePooling1D()(Dense(4)(a));
        output z = Dense(2)(Concatenate()([a, m]));
    }",
];

const IDENTS: &[&str] = &[
    "input",
    "layer",
    "let",
    "output",
    "struct",
    "pub",
    "as",
    "i32",
    "Dense",
    "Concatenate",
    "Activation",
    "Embedding",
    "Masking",
    "mask_zero",
    "mask_value",
    "BatchNormalization",
    "LayerNormalization",
    "Softmax",
    "Add",
    "Dot",
    "MultiHeadAttention",
    "attention_mask",
    "use_causal_mask",
    "Attention",
    "score_mode",
    "return_attention_scores",
    "Dropout",
    "Conv1D",
    "Conv2D",
    "MaxPooling2D",
    "GlobalAveragePooling1D",
    "Reshape",
    "RepeatVector",
    "Permute",
    "dims",
    "TimeDistributed",
    "Flatten",
    "padding",
    "same",
    "momentum",
    "epsilon",
    "Tower",
    "Pair",
    "Outer",
    "Siamese",
    "relu",
    "rleu",
    "name",
    "axis",
    "units",
    "x",
    "a",
    "left",
    "merged",
    "tower",
    "enc",
    "None",
    "self",
];

#[path = "common/xorshift.rs"]
mod xorshift;
use xorshift::Rng;

fn random_literal(rng: &mut Rng) -> Literal {
    match rng.below(10) {
        // Past float32's range either way: every float argument becomes a float32 in the emitted code.
        8 => Literal::f64_unsuffixed(1e39),
        9 => Literal::f64_unsuffixed(1e-50),
        0 => Literal::i64_unsuffixed(0),
        1 => Literal::i64_unsuffixed(-1),
        2 => Literal::i64_unsuffixed(i64::MAX),
        3 => Literal::u64_unsuffixed(u64::MAX),
        4 => Literal::f64_unsuffixed(0.5),
        5 => Literal::string("dense"),
        6 => Literal::i64_unsuffixed(1 + rng.below(64) as i64),
        _ => Literal::usize_suffixed(3),
    }
}

/// Applies one random edit somewhere in `tokens` (descending into groups at random).
fn mutate(rng: &mut Rng, tokens: TokenStream) -> TokenStream {
    let mut trees: Vec<TokenTree> = tokens.into_iter().collect();
    // Descend into a random group half of the time.
    let groups: Vec<usize> = trees.iter().enumerate().filter(|(_, t)| matches!(t, TokenTree::Group(_))).map(|(i, _)| i).collect();
    if !groups.is_empty() && rng.below(3) != 0 {
        let i = groups[rng.below(groups.len())];
        if let TokenTree::Group(g) = &trees[i] {
            let inner = mutate(rng, g.stream());
            let mut ng = Group::new(g.delimiter(), inner);
            ng.set_span(g.span());
            trees[i] = TokenTree::Group(ng);
        }
        return trees.into_iter().collect();
    }
    if trees.is_empty() {
        trees.push(TokenTree::Ident(Ident::new(IDENTS[rng.below(IDENTS.len())], Span::call_site())));
        return trees.into_iter().collect();
    }
    let i = rng.below(trees.len());
    match rng.below(9) {
        0 | 1 => {
            trees.remove(i);
        }
        2 => {
            let j = (i + 1).min(trees.len() - 1);
            trees.swap(i, j);
        }
        3 => {
            let t = trees[i].clone();
            trees.insert(i, t);
        }
        4 => trees[i] = TokenTree::Literal(random_literal(rng)),
        5 => trees[i] = TokenTree::Ident(Ident::new(IDENTS[rng.below(IDENTS.len())], Span::call_site())),
        6 => {
            // Group edit: empty it, change its delimiter, or splice its contents in its place.
            if let TokenTree::Group(g) = trees[i].clone() {
                match rng.below(3) {
                    0 => trees[i] = TokenTree::Group(Group::new(g.delimiter(), TokenStream::new())),
                    1 => {
                        let d = [Delimiter::Parenthesis, Delimiter::Bracket, Delimiter::Brace, Delimiter::None][rng.below(4)];
                        trees[i] = TokenTree::Group(Group::new(d, g.stream()));
                    }
                    _ => {
                        trees.splice(i..=i, g.stream());
                    }
                }
            } else {
                trees.remove(i);
            }
        }
        7 => {
            // Move a token tree elsewhere.
            let t = trees.remove(i);
            let j = rng.below(trees.len() + 1);
            trees.insert(j, t);
        }
        _ => {
            // Duplicate a whole statement-sized run.
            let len = 1 + rng.below(6);
            let run: Vec<TokenTree> = trees.iter().skip(i).take(len).cloned().collect();
            let j = rng.below(trees.len() + 1);
            trees.splice(j..j, run);
        }
    }
    trees.into_iter().collect()
}

#[test]
fn seeds_cover_every_layer_kind() {
    let text: String = SEEDS.concat();
    for kind in model_compiler::layers::KINDS {
        assert!(text.contains(&format!("{kind}(")), "no mutation seed uses `{kind}`: add one to SEEDS");
    }
}

#[test]
fn each_layers_rank_guess_agrees_with_its_shape_rule() {
    // `output_rank` types the stub items of a failed model; on the seeds, where every shape is known, it
    // must give the rank the shape rule gives, for every layer kind.
    use model_compiler::layers::LayerDef;
    for src in SEEDS {
        let mut diags = model_compiler::diag::Diagnostics::new();
        let file = model_compiler::parse::parse(TokenStream::from_str(src).unwrap(), &mut diags);
        for model in &file.models {
            let hir = model_compiler::resolve::resolve(model, &file, &mut diags);
            let graph = model_compiler::graph::build(&hir);
            let typed = model_compiler::infer::infer(hir, graph, &mut diags);
            assert!(diags.is_empty(), "seed does not compile: {src}");
            let rank = |v: usize| typed.shapes[v].as_ref().map(|s| s.rank());
            for call in &typed.model.calls {
                let layer = &typed.model.layers[call.layer.0];
                let ins: Vec<Option<usize>> = call.inputs.iter().map(|v| rank(v.0)).collect();
                let guess = layer.kind.as_ref().unwrap().output_rank(&ins);
                assert_eq!(guess, rank(call.output.0), "{} ({}) on ranks {ins:?}", layer.name, layer.keras_type);
                for (k, v) in call.extra.iter().enumerate() {
                    let guess = layer.kind.as_ref().unwrap().extra_rank(k + 1, &ins);
                    assert_eq!(guess, rank(v.0), "result {} of {} ({})", k + 1, layer.name, layer.keras_type);
                }
            }
        }
    }
}

#[test]
fn mutated_models_never_panic() {
    let seeds: Vec<TokenStream> = SEEDS.iter().map(|s| TokenStream::from_str(s).unwrap()).collect();
    for s in &seeds {
        let (_, diags) = model_compiler::compile(s.clone());
        let msgs: Vec<&str> = diags.items().iter().map(|d| d.message.as_str()).collect();
        assert!(msgs.is_empty(), "seed does not compile: {msgs:?}\n{s}");
    }
    // A longer soak than the default run: `MODELC_MUTATION_SEED=7 MODELC_MUTATION_CASES=100000`.
    let env = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = env("MODELC_MUTATION_SEED").map_or(Rng(0x2545_F491_4F6C_DD1D), Rng::seeded);
    let cases = env("MODELC_MUTATION_CASES").map_or(10_000, |n| n as usize);
    let mut with_errors = 0usize;
    for case in 0..cases {
        let mut tokens = seeds[case % seeds.len()].clone();
        for _ in 0..1 + rng.below(3) {
            tokens = mutate(&mut rng, tokens);
        }
        let source = tokens.to_string();
        let result = catch_unwind(AssertUnwindSafe(|| {
            // `expand` is exactly `compile` followed by this conversion: one run covers both.
            let (_, diags) = model_compiler::compile(tokens);
            let _ = diags.to_compile_errors();
            diags.len()
        }));
        match result {
            Ok(n) => with_errors += usize::from(n > 0),
            Err(_) => panic!("case {case}: the compiler panicked on\n{source}"),
        }
    }
    // The mutations must mostly produce broken models, or they test little.
    assert!(with_errors > cases / 2, "only {with_errors} of {cases} mutated models had errors");
}

#[test]
fn every_layer_kind_exports_to_onnx() {
    // The seeds use every layer kind (`seeds_cover_every_layer_kind`): each of their models must have an
    // ONNX description. A kind still on `LayerDef::onnx`'s default fails here, by name (all of them at once).
    let mut missing = Vec::new();
    for src in SEEDS {
        let mut diags = model_compiler::diag::Diagnostics::new();
        let file = model_compiler::parse::parse(TokenStream::from_str(src).unwrap(), &mut diags);
        for model in &file.models {
            let hir = model_compiler::resolve::resolve(model, &file, &mut diags);
            let graph = model_compiler::graph::build(&hir);
            let typed = model_compiler::infer::infer(hir, graph, &mut diags);
            assert!(diags.is_empty(), "seed does not compile: {src}");
            let plan = model_compiler::plan::plan(typed);
            if let Err(why) = model_compiler::onnx::describe(&plan) {
                missing.push(why);
            }
        }
    }
    assert!(missing.is_empty(), "add an ONNX mapping (`LayerDef::onnx`): {missing:#?}");
}
