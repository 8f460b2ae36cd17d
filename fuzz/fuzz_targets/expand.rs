//! Arbitrary bytes -> (if they lex as Rust tokens) `model_compiler::expand`, which must never panic.
//! Run: `cargo +nightly fuzz run expand` from the repository root (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::str::FromStr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Text rustc would not lex is never handed to a proc macro: skip it.
    let Ok(tokens) = proc_macro2::TokenStream::from_str(text) else { return };
    let _ = model_compiler::expand(tokens);
});
