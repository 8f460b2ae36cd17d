//! Property tests: damaged Keras files never make the importer panic.
//!
//! Two kinds of damage, both from a fixed-seed xorshift generator, so every run checks the same cases:
//! - the model config of a `.keras` fixture with one value replaced (by null, 0, -1, a huge or fractional
//!   number, an empty string, list or object, a list one entry shorter or longer, another layer's
//!   keyword), translated to `model!` source and compiled to the parameter layout as `import` does;
//! - a legacy `.h5` fixture with bytes flipped, overwritten or truncated, converted whole.
//!
//! Either may succeed (a weight's bytes are just other numbers; `null` is often Keras' default) or
//! fail with an error; neither may panic. A case that does prints its seed and iteration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use model_compiler::import::{keras_to_source, Origin};
use serde_json::Value;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/keras_import")
}

#[path = "../../model-compiler/tests/common/xorshift.rs"]
mod xorshift;
use xorshift::Rng;

/// The number of values in `v`, itself included.
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`-th value of `v` in depth-first order (0 is `v`).
fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|x| nth(x, n)),
        Value::Object(o) => o.values_mut().find_map(|x| nth(x, n)),
        _ => None,
    }
}

/// A replacement for `old`: an edge value, or `old` shortened, lengthened or changed.
fn replacement(r: &mut Rng, old: &Value) -> Value {
    use serde_json::json;
    match r.below(13) {
        0 => Value::Null,
        1 => json!(0),
        2 => json!(-1),
        3 => json!(1u64 << 40),
        4 => json!(u64::MAX),
        5 => json!(0.5),
        6 => json!(""),
        7 => json!([]),
        8 => json!({}),
        9 => json!(r.below(2) == 0),
        10 => match old {
            Value::Array(a) => Value::Array(a.iter().skip(1).cloned().collect()),
            Value::Number(n) => json!(n.as_i64().unwrap_or(1) * 2 + 1),
            other => other.clone(),
        },
        11 => match old {
            Value::Array(a) => Value::Array(a.iter().chain(a.first()).cloned().collect()),
            Value::String(s) => json!(format!("{s}_x")),
            other => other.clone(),
        },
        _ => json!(["relu", "same", "causal", "channels_first", "float16", "Dense", "LSTM", "mixed_bfloat16"][r.below(8)]),
    }
}

/// The config of a `.keras` fixture.
fn config(model: &str) -> Value {
    let bytes = std::fs::read(dir().join(format!("{model}.keras"))).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    zip.by_name("config.json").unwrap().read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_config_with_any_one_value_replaced_is_imported_or_refused_without_a_panic() {
    let origin = Origin { file: String::from("damaged.keras"), keras_version: String::from("3") };
    let mut panics = Vec::new();
    let (mut imported, mut refused) = (0, 0);
    for (seed, model) in ["graph", "vision", "nested", "seq2seq", "masked_attention", "mixed"].into_iter().enumerate() {
        let root = config(model);
        let values = count(&root);
        let mut r = Rng::seeded(seed as u64 + 1);
        for it in 0..120 {
            let mut damaged = root.clone();
            let mut n = r.below(values);
            let old = nth(&mut damaged, &mut n).expect("the index is below the count");
            let new = replacement(&mut r, old);
            *old = new;
            let text = damaged.to_string();
            let run = catch_unwind(AssertUnwindSafe(|| {
                keras_to_source(&text, &origin).and_then(|i| model_compiler::param_layout(&i.single_invocation()))
            }));
            match run {
                Ok(Ok(_)) => imported += 1,
                Ok(Err(problems)) => {
                    assert!(
                        !problems.is_empty() && problems.iter().all(|p| !p.is_empty()),
                        "{model} case {it}: a refusal without a reason"
                    );
                    refused += 1;
                }
                Err(_) => panics.push(format!("{model}.keras, seed {}, case {it}", seed + 1)),
            }
        }
    }
    assert!(panics.is_empty(), "the importer panicked on: {panics:?}");
    // Both outcomes occur, so the damage reaches past the JSON parser.
    assert!(imported > 50 && refused > 50, "imported {imported}, refused {refused}");
}

#[test]
fn an_h5_file_with_damaged_bytes_is_converted_or_refused_without_a_panic() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile_h5");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut panics = Vec::new();
    let (mut converted, mut refused) = (0, 0);
    for (seed, model) in ["mlp", "recurrent", "mixed"].into_iter().enumerate() {
        let original = std::fs::read(dir().join(format!("{model}.h5"))).unwrap();
        let mut r = Rng::seeded(seed as u64 + 100);
        for it in 0..150 {
            let mut b = original.clone();
            let kind = r.below(3);
            for _ in 0..1 + r.below(8) {
                let i = r.below(b.len());
                match kind {
                    0 => b[i] ^= 1 << r.below(8),
                    1 => b[i] = r.next() as u8,
                    _ => {
                        // A length or offset field overwritten with a large value.
                        let v = r.next().to_le_bytes();
                        let end = (i + 8).min(b.len());
                        b[i..end].copy_from_slice(&v[..end - i]);
                    }
                }
            }
            if r.below(10) == 0 {
                let keep = r.below(b.len()).max(8);
                b.truncate(keep);
            }
            let path = tmp.join(format!("{model}_{it}.h5"));
            std::fs::write(&path, &b).unwrap();
            match catch_unwind(|| modelc_cli::convert(&path)) {
                Ok(Ok(_)) => converted += 1,
                Ok(Err(e)) => {
                    assert!(!e.to_string().is_empty(), "{model} case {it}: an error without a message");
                    refused += 1;
                }
                Err(_) => panics.push(format!("{model}.h5, seed {}, case {it}", seed + 100)),
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert!(panics.is_empty(), "the importer panicked on: {panics:?}");
    assert!(converted > 20 && refused > 20, "converted {converted}, refused {refused}");
}
