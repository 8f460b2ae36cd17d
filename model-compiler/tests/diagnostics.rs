//! Every diagnostic kind of the compiler, checked without rustc: the source is lexed with
//! `TokenStream::from_str` (proc-macro2 `span-locations` gives real lines and columns), compiled with
//! `model_compiler::compile`, and each test asserts the message, the `help:` and the line:column blamed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use model_compiler::compile;
use proc_macro2::TokenStream;
use std::str::FromStr;

/// One reported problem: 1-based line and column of the blamed token, message, help, note count.
#[derive(Debug)]
struct Err {
    line: usize,
    col: usize,
    msg: String,
    help: String,
    notes: Vec<(usize, usize, String)>,
}

/// Every diagnostic of `src`, in order.
fn errors(src: &str) -> Vec<Err> {
    let tokens = TokenStream::from_str(src).expect("test source must lex");
    let (_, diags) = compile(tokens);
    diags
        .items()
        .iter()
        .map(|d| Err {
            line: d.span.start().line,
            col: d.span.start().column + 1,
            msg: d.message.clone(),
            help: d.help.clone().unwrap_or_default(),
            notes: d.notes.iter().map(|(s, n)| (s.start().line, s.start().column + 1, n.clone())).collect(),
        })
        .collect()
}

/// The single diagnostic of `src` (fails if there are none or several).
fn one(src: &str) -> Err {
    let mut errs = errors(src);
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:#?}");
    errs.remove(0)
}

/// `src` is a model body; it is wrapped in `pub struct M { ... }` starting on line 2, column 1.
fn model(body: &str) -> String {
    format!("pub struct M {{\n{body}\n}}")
}

/// Asserts where the error is (line of the body counted from 1 = line 2 of the source) and what it says.
#[track_caller]
fn at(e: &Err, line: usize, col: usize, msg: &str) {
    assert_eq!((e.line, e.col), (line, col), "wrong location for {e:#?}");
    assert_eq!(e.msg, msg, "wrong message for {e:#?}");
}

// ---- syntax (the parser has its own detailed tests; these check the pipeline keeps them alone) ----------

#[test]
fn missing_semicolon_is_one_error_at_the_next_token() {
    let e = one(&model("input x: [8];\nlet h = Dense(8)(x)\noutput y = Dense(1)(h);"));
    at(&e, 4, 1, "expected `;` after the statement");
}

#[test]
fn plus_suggests_merge_layers() {
    let e = one(&model("input a: [8];\ninput b: [8];\noutput y = a + b;"));
    assert_eq!((e.line, e.col), (4, 14));
    assert!(e.msg.contains("`Add()([a, b])`"), "{e:#?}");
}

#[test]
fn empty_invocation_asks_for_a_model() {
    let e = one("");
    assert!(e.msg.starts_with("expected a model definition"), "{e:#?}");
}

// ---- names ------------------------------------------------------------------------------------------

#[test]
fn unknown_tensor_suggests_the_nearest_name() {
    let e = one(&model("input features: [8];\nlet h = Dense(8)(featurse);\noutput y = Dense(1)(h);"));
    at(&e, 3, 18, "unknown tensor `featurse`");
    assert_eq!(e.help, "did you mean `features`?");
}

#[test]
fn unknown_tensor_lists_the_names_in_scope() {
    let e = one(&model("input a: [8];\noutput y = Dense(1)(zzz);"));
    at(&e, 3, 21, "unknown tensor `zzz`");
    assert_eq!(e.help, "tensors in scope: `a`");
}

#[test]
fn unknown_layer_instance() {
    let e = one(&model("input x: [8];\noutput y = encoder(x);"));
    at(&e, 3, 12, "unknown layer `encoder`");
    assert!(e.help.starts_with("declare it with `layer encoder = Dense(8);`"), "{e:#?}");
}

#[test]
fn unknown_layer_kind_suggests_a_kind() {
    let e = one(&model("input x: [8];\noutput y = Dens(1)(x);"));
    at(&e, 3, 12, "unknown layer `Dens`");
    assert_eq!(e.help, "did you mean `Dense`?");
}

#[test]
fn duplicate_input_points_at_the_second() {
    let e = one(&model("input x: [8];\ninput x: [4];\noutput y = Dense(1)(x);"));
    at(&e, 3, 7, "input `x` is declared twice");
    assert_eq!(e.notes, [(2, 7, "first declared here".to_string())]);
}

#[test]
fn duplicate_layer_points_at_both() {
    let e = one(&model("input x: [8];\nlayer enc = Dense(8);\nlayer enc = Dense(4);\noutput y = enc(x);"));
    at(&e, 4, 7, "layer `enc` is declared twice");
    assert_eq!(e.notes, [(3, 7, "first declared here".to_string())]);
}

#[test]
fn duplicate_output_points_at_both() {
    let e = one(&model("input x: [8];\noutput y = Dense(1)(x);\noutput y = Dense(2)(x);"));
    at(&e, 4, 8, "output `y` is defined twice");
    assert_eq!(e.notes, [(3, 8, "first defined here".to_string())]);
}

#[test]
fn layer_used_as_a_tensor() {
    let e = one(&model("input x: [8];\nlayer enc = Dense(8);\nlet h = enc(x);\noutput y = Dense(1)(enc);"));
    at(&e, 5, 21, "`enc` is a layer, not a tensor");
    assert_eq!(e.help, "call it on a tensor: `enc(x)`");
}

#[test]
fn tensor_called_as_a_layer() {
    let e = one(&model("input x: [8];\nlet h = Dense(8)(x);\noutput y = h(x);"));
    at(&e, 4, 12, "`h` is a tensor, not a layer");
}

#[test]
fn duplicate_explicit_layer_name() {
    let e = one(&model("input x: [8];\nlet h = Dense(8, name = \"hidden\")(x);\noutput y = Dense(1, name = \"hidden\")(h);"));
    at(&e, 4, 28, "layer name \"hidden\" is used twice");
    assert_eq!(e.notes, [(3, 25, "first used here".to_string())]);
    assert!(e.help.contains("\"hidden/kernel\""), "{e:#?}");
}

#[test]
fn invalid_explicit_layer_name() {
    let e = one(&model("input x: [8];\noutput y = Dense(1, name = \"a/b\")(x);"));
    at(&e, 3, 28, "layer name \"a/b\" is not valid");
}

#[test]
fn unused_input() {
    let e = one(&model("input x: [8];\ninput extra: [4];\noutput y = Dense(1)(x);"));
    at(&e, 3, 7, "input `extra` is never used");
}

#[test]
fn input_used_only_by_a_dead_branch() {
    let e = one(&model("input x: [8];\ninput side: [4];\nlet u = Dense(2)(side);\noutput y = Dense(1)(x);"));
    at(&e, 3, 7, "input `side` is used, but no output depends on it");
}

#[test]
fn layer_declared_but_never_called() {
    let e = one(&model("input x: [8];\nlayer enc = Dense(8);\noutput y = Dense(1)(x);"));
    at(&e, 3, 7, "layer `enc` is declared but never called");
}

// ---- model-level ------------------------------------------------------------------------------------

#[test]
fn model_without_outputs() {
    let e = one(&model("input x: [8];\nlet h = Dense(8)(x);"));
    at(&e, 1, 12, "model `M` has no output");
}

#[test]
fn model_without_inputs_is_one_error_at_the_first_use() {
    let e = one(&model("output y = Dense(1)(x);"));
    at(&e, 2, 21, "unknown tensor `x`");
    assert_eq!(e.help, "model `M` has no input yet: declare one first, e.g. `input x: [8];`");
    // Without any use of a tensor, the model itself is blamed.
    let errs = errors(&model("output y = Concatenate()([]);"));
    let e = errs.iter().find(|e| e.msg.contains("has no input")).expect("no-input error");
    at(e, 1, 12, "model `M` has no input");
}

#[test]
fn output_of_a_list() {
    let e = one(&model("input a: [8];\ninput b: [8];\noutput y = [a, b];"));
    at(&e, 4, 12, "a list of tensors can only be passed to a merge layer");
}

#[test]
fn nested_lists() {
    let e = one(&model("input a: [8];\ninput b: [8];\noutput y = Concatenate()([a, [b, a]]);"));
    at(&e, 4, 30, "nested lists are not allowed");
}

// ---- arguments --------------------------------------------------------------------------------------

#[test]
fn units_must_be_positive() {
    let e = one(&model("input x: [8];\noutput y = Dense(0)(x);"));
    at(&e, 3, 18, "`units` of Dense must be a positive integer, got 0");
    let e = one(&model("input x: [8];\noutput y = Dense(-4)(x);"));
    at(&e, 3, 18, "`units` of Dense must be a positive integer, got -4");
}

#[test]
fn missing_required_argument() {
    let e = one(&model("input x: [8];\noutput y = Dense()(x);"));
    at(&e, 3, 12, "Dense is missing its required argument `units`");
}

#[test]
fn wrong_argument_type() {
    let e = one(&model("input x: [8];\noutput y = Dense(8.5)(x);"));
    at(&e, 3, 18, "`units` of Dense must be a positive integer, got the number 8.5");
    let e = one(&model("input x: [8];\noutput y = Dense(1, use_bias = 1)(x);"));
    at(&e, 3, 32, "`use_bias` of Dense must be `true` or `false`, got the integer 1");
    let e = one(&model("input x: [8];\noutput y = Dense(1, name = head)(x);"));
    at(&e, 3, 28, "`name` of Dense must be a string literal, got `head`");
}

#[test]
fn unknown_activation_suggests_one() {
    let e = one(&model("input x: [8];\noutput y = Dense(1, activation = rleu)(x);"));
    at(&e, 3, 34, "unknown activation `rleu`");
    assert!(e.help.starts_with("did you mean `relu`?"), "{e:#?}");
}

#[test]
fn activation_of_the_wrong_type() {
    let e = one(&model("input x: [8];\noutput y = Dense(1, activation = 3)(x);"));
    at(&e, 3, 34, "the activation of Dense must be a name like `relu`, got the integer 3");
}

#[test]
fn unknown_keyword_suggests_one() {
    let e = one(&model("input x: [8];\noutput y = Dense(1, activaton = relu)(x);"));
    at(&e, 3, 21, "Dense has no argument `activaton`");
    assert!(e.help.starts_with("did you mean `activation`?"), "{e:#?}");
}

#[test]
fn argument_given_twice() {
    let e = one(&model("input x: [8];\noutput y = Dense(8, units = 16)(x);"));
    at(&e, 3, 29, "`units` of Dense is given twice");
    let e = one(&model("input x: [8];\noutput y = Dense(1, name = \"a\", name = \"b\")(x);"));
    at(&e, 3, 40, "`name` of Dense is given twice");
}

#[test]
fn too_many_positional_arguments() {
    let e = one(&model("input x: [8];\noutput y = Dense(8, relu, true, 3)(x);"));
    at(&e, 3, 33, "Dense takes at most 3 positional arguments, this is argument 4");
}

#[test]
fn input_dimension_must_be_positive() {
    let e = one(&model("input x: [-3];\noutput y = Dense(1)(x);"));
    at(&e, 2, 11, "input `x` has a dimension of -3: every dimension must be at least 1");
    let e = one(&model("input x: [4, 0];\noutput y = Dense(1)(x);"));
    at(&e, 2, 14, "input `x` has a dimension of 0: every dimension must be at least 1");
}

#[test]
fn concatenate_axis_must_be_an_integer() {
    let e = one(&model("input a: [8];\ninput b: [8];\noutput y = Concatenate(axis = last)([a, b]);"));
    at(&e, 4, 31, "`axis` of Concatenate must be an integer, got `last`");
}

// ---- shapes -----------------------------------------------------------------------------------------

#[test]
fn dense_applies_to_the_last_axis_of_any_rank() {
    assert!(errors(&model("input x: [4, 4, 3];\noutput y = Dense(2)(x);")).is_empty());
}

#[test]
fn concatenate_mismatch_names_tensors_and_shapes() {
    let e =
        one(&model("input x: [3, 8];\ninput s: [5, 4];\nlet l = Dense(16)(x);\nlet r = Dense(16)(s);\noutput y = Concatenate()([l, r]);"));
    assert_eq!((e.line, e.col), (6, 12));
    assert!(e.msg.contains("`l` (None, 3, 16) and `r` (None, 5, 16) differ at axis 1 (3 vs 5)"), "{e:#?}");
}

#[test]
fn concatenate_rank_mismatch() {
    let e = one(&model("input a: [8];\ninput b: [4, 8];\noutput y = Concatenate()([a, b]);"));
    assert_eq!((e.line, e.col), (4, 12));
    assert!(e.msg.contains("`a` (None, 8) has rank 2 and `b` (None, 4, 8) has rank 3"), "{e:#?}");
}

#[test]
fn concatenate_axis_out_of_range_and_batch_axis() {
    let e = one(&model("input a: [4, 8];\ninput b: [4, 8];\noutput y = Concatenate(axis = 3)([a, b]);"));
    assert!(e.msg.starts_with("axis 3 is out of range for Concatenate"), "{e:#?}");
    let e = one(&model("input a: [8];\ninput b: [8];\noutput y = Concatenate(axis = 0)([a, b]);"));
    assert!(e.msg.starts_with("Concatenate cannot join along the batch axis"), "{e:#?}");
}

#[test]
fn merge_arity() {
    let e = one(&model("input a: [8];\noutput y = Concatenate()([a]);"));
    at(&e, 3, 12, "Concatenate needs at least 2 tensors, but is given 1");
    let e = one(&model("input a: [8];\noutput y = Concatenate()(a);"));
    at(&e, 3, 12, "Concatenate merges a list of tensors, but is called on the single tensor `a`");
    let e = one(&model("input a: [8];\ninput b: [8];\noutput y = Dense(1)([a, b]);"));
    at(&e, 4, 12, "Dense takes one tensor, but is called on a list of 2");
}

#[test]
fn shared_layer_on_another_shape() {
    let e = one(&model(
        "input a: [4];\ninput b: [6];\nlayer enc = Dense(8);\nlet ea = enc(a);\nlet eb = enc(b);\noutput y = Concatenate()([ea, eb]);",
    ));
    assert_eq!((e.line, e.col), (6, 10));
    assert!(e.msg.contains("built on `a` (None, 4)") && e.msg.contains("called here on `b` (None, 6)"), "{e:#?}");
    assert_eq!(e.notes, [(5, 10, "first called here".to_string())]);
}

// ---- nested models ----------------------------------------------------------------------------------

const TOWER: &str = "pub struct Tower {\n input v: [6];\n output w = Dense(2)(v);\n}\n";

#[test]
fn nested_model_wrong_input_shape() {
    let src = format!("{TOWER}pub struct Outer {{\n input x: [5];\n layer tower = Tower;\n output y = tower(x);\n}}");
    let e = one(&src);
    at(&e, 8, 19, "input `v` of `tower` (Tower) has shape (None, 6), but is given `x` (None, 5)");
}

#[test]
fn nested_model_wrong_input_count() {
    let src = "pub struct Pair {\n input l: [4];\n input r: [4];\n output w = Concatenate()([l, r]);\n}\n\
               pub struct Outer {\n input x: [4];\n layer pair = Pair;\n output y = pair(x);\n}";
    let e = one(src);
    at(&e, 9, 13, "`pair` (Pair) takes 2 inputs (`l`, `r`), but is called on 1");
    assert_eq!(e.help, "pass a list in input order: `pair([l, r])`");
}

#[test]
fn nested_model_bound_to_too_many_names() {
    let src = format!("{TOWER}pub struct Outer {{\n input x: [6];\n layer tower = Tower;\n let (a, b) = tower(x);\n output y = Concatenate()([a, b]);\n}}");
    let e = one(&src);
    at(&e, 8, 7, "this expression gives one tensor, but 2 names are bound");
}

#[test]
fn nested_instance_names_are_checked_like_layer_names() {
    let outer = |decl: &str| format!("{TOWER}pub struct Outer {{\n input x: [6];\n {decl}\n output y = Dense(1)(tower(x));\n}}");
    let e = one(&outer("layer tower = Tower(name = \"\");"));
    at(&e, 7, 29, "layer name \"\" is not valid");
    assert_eq!(e.help, "use a non-empty name without `/`");
    let e = one(&outer("layer tower = Tower(name = \"a/b\");"));
    at(&e, 7, 29, "layer name \"a/b\" is not valid");
    // A duplicate with a layer's explicit name, either way round.
    let src = format!(
        "{TOWER}pub struct Outer {{\n input x: [6];\n let h = Tower(name = \"dense\")(x);\n output y = Dense(1, name = \"dense\")(h);\n}}"
    );
    let e = one(&src);
    at(&e, 8, 29, "layer name \"dense\" is used twice");
    assert_eq!(e.notes, [(7, 23, "first used here".to_string())]);
    let src =
        format!("{TOWER}pub struct Outer {{\n input x: [6];\n let h = Dense(6, name = \"t\")(x);\n output y = Tower(name = \"t\")(h);\n}}");
    at(&one(&src), 8, 26, "layer name \"t\" is used twice");
    // A `layer` binding names the instance: it may not be another layer's explicit name either.
    let src =
        format!("{TOWER}pub struct Outer {{\n input x: [6];\n layer head = Tower;\n output y = Dense(1, name = \"head\")(head(x));\n}}");
    at(&one(&src), 8, 29, "layer name \"head\" is used twice");
}

#[test]
fn inline_nested_instances_get_distinct_default_names() {
    // As Keras names two instances of one model: `tower` and `tower_1`, so their weights differ.
    let src =
        format!("{TOWER}pub struct Outer {{\n input a: [6];\n input b: [6];\n output y = Concatenate()([Tower()(a), Tower()(b)]);\n}}");
    let mut diags = model_compiler::diag::Diagnostics::new();
    let file = model_compiler::parse::parse(TokenStream::from_str(&src).unwrap(), &mut diags);
    let hir = model_compiler::resolve::resolve(&file.models[1], &file, &mut diags);
    assert!(diags.is_empty());
    let names: Vec<&str> = hir.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["concatenate", "tower/dense", "tower_1/dense"]);
}

#[test]
fn models_nesting_each_other_are_one_clear_error_per_model() {
    let src = "pub struct A {\n input x: [4];\n layer b = B;\n output y = b(x);\n}\npub struct B {\n input x: [4];\n layer a = A;\n output y = a(x);\n}";
    let errs = errors(src);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    at(&errs[0], 3, 12, "models `A` and `B` nest each other: `A` uses `B` as a layer and `B` uses `A`");
    assert_eq!(errs[0].help, "a model cannot contain itself, even through other models: remove one of these uses");
    at(&errs[1], 8, 12, "models `B` and `A` nest each other: `B` uses `A` as a layer and `A` uses `B`");
    // Three models, inline constructors.
    let src = "pub struct A { input x: [4]; output y = B()(x); }\npub struct B { input x: [4]; output y = C()(x); }\npub struct C { input x: [4]; output y = A()(x); }";
    let errs = errors(src);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    at(&errs[0], 1, 41, "models `A`, `B` and `C` nest each other: `A` uses `B` as a layer, `B` uses `C` and `C` uses `A`");
}

#[test]
fn models_of_two_invocations_nesting_each_other_are_a_clear_error() {
    // `A`'s invocation after `B`'s callback handed it `B`'s source, which uses `A` from another module:
    // the cycle is found although `A`'s own definition is not among the dependencies.
    let src = "@with { pub struct B { input x: [4]; layer a = crate::a::A; output y = a(x); } } as crate::b::B;\n\
               pub struct A {\n input x: [4];\n layer b = crate::b::B;\n output y = b(x);\n}";
    let e = one(src);
    at(&e, 4, 12, "models `A` and `B` nest each other: `A` uses `B` as a layer and `B` uses `A`");
}

#[test]
fn a_failed_nested_model_adds_no_error_to_the_model_using_it() {
    // Its own error is reported at its definition; the outer model's input is not "never used".
    let src =
        "pub struct A {\n input x: [4];\n layer b = B;\n output y = b(x);\n}\npub struct B {\n input x: [4];\n output y = Dense(0)(x);\n}";
    let e = one(src);
    at(&e, 8, 19, "`units` of Dense must be a positive integer, got 0");
    let (tokens, _) = compile(TokenStream::from_str(src).unwrap());
    assert!(tokens.to_string().contains("pub struct A"), "A still gets its (stub) items");
}

#[test]
fn model_containing_itself() {
    let e = one("pub struct Loop {\n input x: [4];\n layer inner = Loop;\n output y = inner(x);\n}");
    at(&e, 3, 16, "model `Loop` contains itself");
}

// ---- accumulation -----------------------------------------------------------------------------------

#[test]
fn independent_errors_are_reported_together_without_cascades() {
    let errs = errors(&model(
        "input a: [8];\ninput b: [4, 2];\nlet h = Dense(16, activation = rleu)(a);\nlet g = Dense(0)(a);\nlet j = Concatenate()([a, b]);\noutput y = Concatenate()([h, g, j]);",
    ));
    let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(at, [(4, 32), (5, 15), (6, 9)], "{errs:#?}");
}

#[test]
fn an_error_in_one_model_leaves_the_others_alone() {
    let src =
        "pub struct Good {\n input x: [4];\n output y = Dense(2)(x);\n}\npub struct Bad {\n input x: [4];\n output y = Dense(2)(z);\n}";
    let (tokens, diags) = compile(TokenStream::from_str(src).unwrap());
    assert_eq!(diags.len(), 1);
    let text = tokens.to_string();
    // Both models' structs exist; only the failed one has unreachable bodies.
    assert!(text.contains("pub struct Good") && text.contains("pub struct Bad"), "{text}");
    assert!(text.contains("GoodInputs") && text.contains("BadInputs"), "{text}");
}

// ---- sizes ------------------------------------------------------------------------------------------

#[test]
fn sizes_that_would_overflow_are_rejected() {
    let e = one(&model("input x: [65536, 65536, 2];\noutput y = Dense(1)(x);"));
    at(&e, 2, 10, "input `x` of shape (None, 65536, 65536, 2) is too large");
    let e = one(&model("input x: [8];\noutput y = Dense(9223372036854775807)(x);"));
    at(&e, 3, 12, "Dense would give a tensor of shape (None, 9223372036854775807), which is too large");
    let e = one(&model("input x: [65536];\noutput y = Dense(65536)(x);"));
    at(&e, 3, 12, "the `kernel` of Dense would have shape (65536, 65536), which is too large");
    // A same-padded window may be huge while the output is small: its kernel is rejected, not overflowed.
    let e = one(&model("input x: [8, 8, 2];\noutput y = Conv2D(4, (3, 9223372036854775807), padding = same)(x);"));
    at(&e, 3, 12, "the `kernel` of Conv2D would have shape (3, 9223372036854775807, 2, 4), which is too large");
}

// ---- recurrent layers, multi-result calls and keyword arguments ------------------------------------------

#[test]
fn recurrent_layer_on_a_vector_suggests_a_reshape() {
    let e = one(&model("input x: [8];\noutput y = LSTM(4)(x);"));
    at(&e, 3, 20, "LSTM needs a sequence (None, steps, features), but `x` (None, 8) has rank 2");
    assert_eq!(e.help, "make it a sequence first, e.g. `Reshape((8, 1))(x)` for 8 steps of one feature");
    let e = one(&model("input image: [4, 4, 3];\noutput y = GRU(4)(image);"));
    assert!(e.help.contains("`Reshape((4, 12))(image)`"), "{e:#?}");
}

#[test]
fn initial_states_are_counted_and_sized() {
    let e = one(&model("input x: [5, 3];\ninput h: [4];\noutput y = LSTM(4)(x, initial_state = [h]);"));
    at(&e, 4, 23, "LSTM takes 2 initial states, but is given 1");
    assert_eq!(e.help, "pass `initial_state = [h, c]`, each of shape (None, 4)");
    let e = one(&model("input x: [5, 3];\ninput h: [3];\noutput y = GRU(4)(x, initial_state = [h]);"));
    at(&e, 4, 39, "initial state `h` (None, 3) of GRU(4) must be (None, 4), one value per unit");
}

#[test]
fn unsupported_recurrent_options_are_errors_at_their_values() {
    let e = one(&model("input x: [5, 3];\noutput y = LSTM(4, dropout = 0.2)(x);"));
    at(&e, 3, 30, "LSTM's `dropout` is not supported by modelc yet");
    let e = one(&model("input x: [5, 3];\noutput y = SimpleRNN(4, stateful = true)(x);"));
    at(&e, 3, 36, "stateful SimpleRNN is not supported: modelc's batches are independent");
    let e = one(&model("input x: [5, 3];\noutput y = GRU(4, reset_after = false)(x);"));
    at(&e, 3, 33, "GRU with `reset_after = false` is not supported by modelc");
    let e = one(&model("input x: [5, 3];\noutput y = LSTM(4, recurrent_activation = softmax)(x);"));
    assert_eq!(e.msg, "LSTM's `recurrent_activation` must apply element-wise, and softmax does not");
    // A zero rate is Keras' default: accepted.
    assert!(errors(&model("input x: [5, 3];\noutput y = LSTM(4, dropout = 0.0, recurrent_dropout = 0)(x);")).is_empty());
}

#[test]
fn bound_names_must_match_the_results_of_a_call() {
    let e = one(&model("input x: [5, 3];\nlet (y, h) = LSTM(4, return_state = true)(x);\noutput out = Concatenate()([y, h]);"));
    at(&e, 3, 6, "this expression gives 3 tensors, but 2 names are bound");
    assert_eq!(e.help, "bind one name per tensor: `let (output, state_h, state_c) = ...;`");
    let e = one(&model("input x: [5, 3];\nlet y = GRU(4, return_state = true)(x);\noutput out = Dense(1)(y);"));
    at(&e, 3, 9, "this call returns 2 tensors");
    assert_eq!(e.help, "bind them all: `let (output, state_h) = ...;`");
    let e = one(&model("input x: [5, 3];\nlet (y, h) = GRU(4)(x);\noutput out = Dense(1)(y);"));
    at(&e, 3, 6, "this expression gives one tensor, but 2 names are bound");
}

#[test]
fn keyword_tensor_arguments_are_checked() {
    let e = one(&model("input x: [5, 3];\ninput h: [4];\noutput y = LSTM(4)(x, initial_states = [h, h]);"));
    at(&e, 4, 23, "LSTM takes no call argument `initial_states`");
    assert_eq!(e.help, "did you mean `initial_state`?");
    let e = one(&model("input x: [5, 3];\ninput h: [4];\noutput y = Dense(4)(x, initial_state = [h]);"));
    at(&e, 4, 24, "Dense takes no call argument `initial_state`");
    assert_eq!(e.help, "call it on its tensor alone: `Dense(...)(x)`");
    let e = one(&model("input x: [5, 3];\ninput h: [4];\noutput y = GRU(4)(x, initial_state = [h], initial_state = [h]);"));
    at(&e, 4, 43, "keyword `initial_state` is given twice in this call of `GRU`");
    assert_eq!(e.notes.len(), 1);
}

#[test]
fn call_arguments_are_checked_the_same_way_for_every_layer() {
    // Tensor and literal keywords, further positional tensors: one set of rules, whatever the layer.
    let e = one(&model("input x: [5, 3];\noutput y = LSTM(4)(x, initial_state = 0);"));
    at(&e, 3, 39, "`initial_state` of LSTM takes tensors, but is given the integer 0");
    assert_eq!(e.help, "pass a tensor or a list of tensors, like `initial_state = [a, b]`");
    let e = one(&model("input x: [5, 3];\noutput y = LSTM(4)(x, use_causal_mask = true);"));
    at(&e, 3, 23, "LSTM takes no call argument `use_causal_mask`");
    assert_eq!(e.help, "it takes: `initial_state`");
    let e = one(&model("input x: [5, 3];\ninput h: [4];\noutput y = LSTM(4)(x, h);"));
    at(&e, 4, 23, "a layer is called on one tensor: to pass several, put them in a list, like `([a, b])`");
    assert_eq!(e.help, "LSTM takes its operands in one argument");
    let e = one(&model("input x: [5, 8];\nlayer mha = MultiHeadAttention(2, 4);\noutput y = mha(x, x, initial_state = [x]);"));
    at(&e, 4, 22, "MultiHeadAttention takes no call argument `initial_state`");
    assert_eq!(e.help, "it takes: `attention_mask`, `use_causal_mask` or `return_attention_scores`");
    // Keras' call arguments modelc does not take are rejected by the layer, with the reason.
    let e = one(&model("input x: [5, 8];\nlayer mha = MultiHeadAttention(2, 4);\noutput y = mha(x, x, return_attention_scores = 1);"));
    at(&e, 4, 48, "`return_attention_scores` must be `true` or `false`");
    assert_eq!(e.help, "write `let (y, scores) = mha(q, v, return_attention_scores = true);`");
    let e = one(&model("input x: [5, 8];\nlayer mha = MultiHeadAttention(2, 4);\noutput y = mha(x, x, key = x);"));
    at(&e, 4, 22, "pass `key` of MultiHeadAttention by position");
    let e = one(&model(
        "input x: [5, 8];\nlayer mha = MultiHeadAttention(2, 4);\noutput y = mha(x, x, attention_mask = x, attention_mask = x);",
    ));
    at(&e, 4, 42, "keyword `attention_mask` is given twice in this call of `mha`");
    assert_eq!(e.help, "give `attention_mask` once");
    // A nested model takes its inputs in one argument.
    let e = one(&format!(
        "{}\nstruct Inner {{ input a: [4]; output b = Dense(2)(a); }}",
        model("input x: [4];\nlayer inner = Inner;\noutput y = inner(x, x);")
    ));
    at(&e, 4, 21, "a layer is called on one tensor: to pass several, put them in a list, like `([a, b])`");
    assert_eq!(e.help, "a model used as a layer takes its operands in one argument");
}

#[test]
fn a_seq2seq_model_compiles() {
    let src = model(
        "input src: [5, 3];\ninput tgt: [4, 2];\nlet (enc, h, c) = LSTM(6, return_state = true)(src);\n\
         let dec = LSTM(6, return_sequences = true)(tgt, initial_state = [h, c]);\n\
         output y = Dense(2)(Concatenate()([Dense(6)(enc), GlobalAveragePooling1D()(dec)]));",
    );
    assert!(errors(&src).is_empty(), "{:#?}", errors(&src));
}

#[test]
fn bidirectional_wraps_a_recurrent_layer() {
    let e = one(&model("input x: [5, 3];\noutput y = Bidirectional(Dense(4))(x);"));
    at(&e, 3, 26, "Bidirectional wraps a recurrent layer (`SimpleRNN`, `LSTM` or `GRU`), but is given `Dense`");
    let e = one(&model("input x: [5, 3];\noutput y = Bidirectional(4)(x);"));
    at(&e, 3, 26, "Bidirectional wraps a recurrent layer, but is given the integer 4");
    let e = one(&model("input x: [5, 3];\noutput y = Bidirectional(merge_mode = sum)(x);"));
    at(&e, 3, 12, "Bidirectional needs the recurrent layer it wraps");
    let e = one(&model("input x: [5, 3];\ninput h: [4];\noutput y = Bidirectional(LSTM(4))(x, initial_state = [h, h]);"));
    at(&e, 4, 38, "Bidirectional takes 4 initial states, but is given 2");
    assert_eq!(e.help, "pass `initial_state = [h_fw, c_fw, h_bw, c_bw]`, each of shape (None, 4)");
    let e = one(&model("input x: [5, 3];\noutput y = Bidirectional(GRU(4, return_sequence = true))(x);"));
    assert_eq!(e.msg, "GRU has no argument `return_sequence`");
    let e = one(&model("input x: [5, 3];\noutput y = Bidirectional(LSTM(4, name = \"enc\"))(x);"));
    at(&e, 3, 41, "a name for the LSTM inside Bidirectional is not supported");
    assert!(e.help.contains("`forward_lstm` and `backward_lstm`"), "{e:#?}");
    let e = one(&model("input x: [4];\nlayer inner = Dense(2);\noutput y = inner(x, initial_state = [x]);"));
    at(&e, 4, 21, "Dense takes no call argument `initial_state`");
    assert_eq!(e.help, "call it on its tensor alone: `inner(x)`");
    let ok = model(
        "input x: [5, 3];\nlet (f, b) = Bidirectional(GRU(4, return_sequences = true), merge_mode = none)(x);\noutput y = Add()([f, b]);",
    );
    assert!(errors(&ok).is_empty(), "{:#?}", errors(&ok));
}
