//! The integration tests of layers and models, one module per file of `tests/` (each file was a test binary
//! of its own; one binary links the runtime once instead of once per file), and the `tests/ui/*/pass/`
//! cases. Run one file's tests with `cargo test --test models <file>::`.
//!
//! A new test file `tests/<name>.rs` is registered with a `mod <name>;` line here or in `tests/training.rs`
//! (or, if it must run in a process of its own, a `[[test]]` in Cargo.toml); `every_test_file_is_built`
//! fails until it is. Helpers shared by several files are modules of the binary (`use crate::common;`).

// Several files include the same example's `model.rs` (`#[path]`), each as its own module, as they did
// when each file was a binary of its own: the files stay independent of each other.
#![allow(clippy::duplicate_mod)]

mod common;
mod counting_alloc;
mod parity;

mod attention;
mod bench_baselines;
mod branch_concat;
mod conv_transpose;
mod denoise;
mod depthwise;
mod digits;
mod fusion;
mod graph_everything;
mod inference_plan;
mod layers;
mod masks;
mod merges;
mod mixed_bfloat16;
mod multitask;
mod nested_models;
mod normalization;
mod prepacked_weights;
mod recurrent;
mod residual;
mod separable;
mod seq;
mod shared_layer;
mod sunspots;
mod vision;
mod vit_digits;

// Models that must compile, and whose generated API must work (`tests/ui/<topic>/pass/<what>.rs`). Without the
// dead-code lint, as trybuild compiled them (`glob_imports_do_not_clash` defines functions only to clash).
#[allow(dead_code)]
#[path = "ui/concatenate/pass/axis_one.rs"]
mod ui_pass_concatenate_axis_one;
#[allow(dead_code)]
#[path = "ui/models/pass/fusion.rs"]
mod ui_pass_models_fusion;
#[allow(dead_code)]
#[path = "ui/models/pass/glob_imports_do_not_clash.rs"]
mod ui_pass_models_glob_imports_do_not_clash;
#[allow(dead_code)]
#[path = "ui/models/pass/shared_and_nested.rs"]
mod ui_pass_models_shared_and_nested;
#[allow(dead_code)]
#[path = "ui/outputs/pass/integer_targets.rs"]
mod ui_pass_outputs_integer_targets;

/// Every `tests/*.rs` is a module of a combined test binary or a `[[test]]` of its own, and every
/// `tests/ui/*/pass/*.rs` is a module here: since `autotests = false`, a file registered nowhere would
/// silently not be built.
#[test]
fn every_test_file_is_built() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let roots = read("tests/models.rs") + &read("tests/training.rs");
    let manifest = read("Cargo.toml");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir.join("tests")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".rs") else { continue };
        let as_module = roots.lines().any(|l| l == format!("mod {stem};"));
        let as_binary = manifest.contains(&format!("path = \"tests/{name}\""));
        if !as_module && !as_binary {
            missing.push(format!("tests/{name}"));
        }
    }
    for topic in std::fs::read_dir(dir.join("tests/ui")).unwrap() {
        let Ok(cases) = std::fs::read_dir(topic.unwrap().path().join("pass")) else { continue };
        for case in cases {
            let path = case.unwrap().path();
            let rel = path.strip_prefix(dir.join("tests")).unwrap().to_string_lossy().into_owned();
            if !roots.contains(&format!("#[path = \"{rel}\"]")) {
                missing.push(format!("tests/{rel}"));
            }
        }
    }
    assert!(missing.is_empty(), "not built by any test binary (add `mod <name>;` to tests/models.rs or tests/training.rs): {missing:?}");
}
