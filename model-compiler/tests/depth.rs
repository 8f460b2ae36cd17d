//! Deeply nested input never overflows the compiler's stack: a proc macro runs on rustc's own thread, so
//! an overflow there is a SIGSEGV of rustc, not an error. Each case compiles on a thread with a small
//! stack (far less than rustc's 8 MiB) and must give exactly one error at the token past the limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use model_compiler::parse::{MAX_NESTING, MAX_TOKEN_DEPTH};
use proc_macro2::TokenStream;
use std::str::FromStr;

/// The stack the checks run on: a quarter of rustc's main thread.
const STACK: usize = 2 << 20;

/// `(line, column, message)` of every diagnostic of `src`, and whether the output has the model's
/// struct (stub items), compiled on a thread with a `STACK`-byte stack.
fn compile_small_stack(src: String) -> (Vec<(usize, usize, String)>, bool) {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let (tokens, diags) = model_compiler::compile(TokenStream::from_str(&src).unwrap());
            let errs = diags.items().iter().map(|d| (d.span.start().line, d.span.start().column + 1, d.message.clone())).collect();
            (errs, tokens.to_string().contains("pub struct Deep"))
        })
        .unwrap()
        .join()
        .expect("the compiler overflowed its stack or panicked")
}

/// `Dense(2)(Dense(2)(...(x)...))` with `n` calls, as the output of model `Deep`, all on line 1. Call `k`
/// (1-based) is expression level `k` and starts at column `PREFIX.len() + 9 * (k - 1) + 1`; `x` is level
/// `n + 1` and starts where call `n + 1` would.
fn dense_chain(n: usize) -> String {
    format!("{PREFIX}{}x{}; }}", "Dense(2)(".repeat(n), ")".repeat(n))
}
const PREFIX: &str = "pub struct Deep { input x: [2]; output y = ";

#[test]
fn the_deepest_allowed_expression_compiles() {
    let (errs, has_struct) = compile_small_stack(dense_chain(MAX_NESTING - 1));
    assert!(errs.is_empty(), "{errs:?}");
    assert!(has_struct);
}

#[test]
fn an_expression_past_the_limit_is_one_error_at_the_call_that_crosses_it() {
    // The case (rustc died at 700), and deeper: the error is always at level MAX_NESTING + 1
    // (the `x` when there are MAX_NESTING calls, else call MAX_NESTING + 1).
    for n in [MAX_NESTING, 700, MAX_TOKEN_DEPTH - 2] {
        let (errs, has_struct) = compile_small_stack(dense_chain(n));
        assert_eq!(errs.len(), 1, "depth {n}: {errs:?}");
        let (line, col, msg) = &errs[0];
        assert_eq!((*line, *col), (1, PREFIX.len() + 9 * MAX_NESTING + 1), "depth {n}");
        assert!(msg.starts_with(&format!("this expression nests more than {MAX_NESTING} levels deep")), "{msg}");
        assert!(msg.contains("bind intermediate tensors with `let`"), "{msg}");
        assert!(has_struct, "the model's stub items are still emitted");
    }
}

#[test]
fn deep_lists_and_argument_tuples_are_errors_too() {
    let n = MAX_TOKEN_DEPTH - 2;
    let lists = format!("{PREFIX}Concatenate()({}x{}); }}", "[".repeat(n), "]".repeat(n));
    let (errs, _) = compile_small_stack(lists);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].2.starts_with("this expression nests more than"), "{errs:?}");
    let tuples = format!("{PREFIX}Dense({}2{})(x); }}", "(".repeat(n), ")".repeat(n));
    let (errs, _) = compile_small_stack(tuples);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].2.starts_with("this argument value nests more than"), "{errs:?}");
    let declared = format!("pub struct Deep {{ input x: [2]; layer d = Dense({}2{}); output y = d(x); }}", "[".repeat(n), "]".repeat(n));
    let (errs, _) = compile_small_stack(declared);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].2.starts_with("this argument value nests more than"), "{errs:?}");
}

#[test]
fn tokens_nested_past_the_token_limit_are_rejected_before_parsing() {
    // Anywhere, even where no expression is expected: syn itself recurses over groups.
    let n = 50_000;
    let src = format!("pub struct Deep {{ {}{} }}", "{".repeat(n), "}".repeat(n));
    let (errs, _) = compile_small_stack(src);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let (line, col, msg) = &errs[0];
    // The model's own body is group 1, so the first group past the limit opens at this column.
    assert_eq!((*line, *col), (1, "pub struct Deep { ".len() + MAX_TOKEN_DEPTH));
    assert!(msg.starts_with(&format!("these tokens nest more than {MAX_TOKEN_DEPTH} groups deep")), "{msg}");
    // A call chain that deep meets this limit first (the call's argument parentheses are its groups).
    let (errs, _) = compile_small_stack(dense_chain(50_000));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].2.starts_with("these tokens nest more than"), "{errs:?}");
}

#[test]
fn a_deep_chain_of_dependencies_is_an_error() {
    // `@with` entries are written by modelc's callbacks; a chain past the limit is still only an error.
    let n = 500;
    let mut src = String::from("pub struct Deep { input x: [2]; output y = Dense(2)(x); }");
    for _ in 0..n {
        src = format!("@with {{ {src} }} as Dep; pub struct Deep {{ input x: [2]; output y = Dense(2)(x); }}");
    }
    let (errs, has_struct) = compile_small_stack(src);
    // Past the limit a dependency is dropped, quietly: its own errors belong to its own invocation, and
    // the model here does not use it.
    assert!(errs.is_empty(), "{errs:?}");
    assert!(has_struct);
}

#[test]
fn a_deep_attribute_is_an_error() {
    // syn parses `#[doc = expr]` with its recursive expression parser: bounded like expressions.
    let n = MAX_TOKEN_DEPTH - 2;
    let src = format!("#[doc = {}1{}] pub struct Deep {{ input x: [2]; output y = Dense(2)(x); }}", "(".repeat(n), ")".repeat(n));
    let (errs, _) = compile_small_stack(src);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let (line, col, msg) = &errs[0];
    assert_eq!((*line, *col), (1, "#[doc = ".len() + MAX_NESTING + 1));
    assert!(msg.starts_with(&format!("this attribute nests more than {MAX_NESTING} levels deep")), "{msg}");
}
