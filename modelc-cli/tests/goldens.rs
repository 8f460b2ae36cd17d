//! Every Keras fixture of `scripts/keras_import.py` imports, from its `.keras` archive and from its
//! legacy `.h5` file, to the committed golden source `tests/fixtures/keras_import/<model>.rs` and the
//! golden weights `<model>.weights.safetensors` (which `tests/keras_import.rs` compiles, loads and
//! checks against Keras' predictions). `MODELC_BLESS=1` rewrites the goldens: review them in the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

const MODELS: &[&str] = &[
    "mlp",
    "graph",
    "vision",
    "sequence",
    "nested",
    "recurrent",
    "seq_attention",
    "masked",
    "masked_attention",
    "seq2seq",
    "masked_glue",
    "mixed",
    "cross_attention",
    "recurrent_sum",
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/keras_import")
}

#[test]
fn keras_fixtures_import_to_the_golden_source_and_weights() {
    let bless = std::env::var_os("MODELC_BLESS").is_some();
    let mut stale = Vec::new();
    for m in MODELS {
        let c = modelc_cli::convert(&dir().join(format!("{m}.keras"))).unwrap_or_else(|e| panic!("{m}.keras: {e}"));
        let weights = modelc_cli::safetensors_bytes(&c.weights).unwrap();
        let (src_path, w_path) = (dir().join(format!("{m}.rs")), dir().join(format!("{m}.weights.safetensors")));
        if bless {
            std::fs::write(&src_path, &c.source).unwrap();
            std::fs::write(&w_path, &weights).unwrap();
        }
        if std::fs::read_to_string(&src_path).ok().as_deref() != Some(c.source.as_str()) {
            stale.push(format!("{m}.rs"));
        }
        if std::fs::read(&w_path).ok().as_deref() != Some(weights.as_slice()) {
            stale.push(format!("{m}.weights.safetensors"));
        }
        // The legacy .h5 file of the same model gives the same model and the same weights.
        let h5 = modelc_cli::convert(&dir().join(format!("{m}.h5"))).unwrap_or_else(|e| panic!("{m}.h5: {e}"));
        assert_eq!(h5.source, c.source.replace(&format!("`{m}.keras`"), &format!("`{m}.h5`")), "{m}.h5");
        assert_eq!(h5.weights, c.weights, "{m}.h5 weights");
    }
    assert!(stale.is_empty(), "generated output differs from the goldens {stale:?}: rerun with MODELC_BLESS=1 and review the diff");
}

#[test]
fn an_unsupported_model_is_reported_whole_and_nothing_is_written() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("unsupported");
    std::fs::create_dir_all(&tmp).unwrap();
    let (out, weights) = (tmp.join("model.rs"), tmp.join("model.safetensors"));
    let _ = std::fs::remove_file(&out);
    let err = modelc_cli::import(&dir().join("unsupported.keras"), &out, &weights).unwrap_err().to_string();
    for expected in ["`scale_by_two` (Lambda)", "`rnn` (LSTM)", "dropout", "`half` (Dense)", "mixed_float16"] {
        assert!(err.contains(expected), "missing {expected} in:\n{err}");
    }
    assert!(!out.exists() && !weights.exists(), "nothing may be written");
}

#[test]
fn a_weights_only_h5_file_is_refused_with_what_to_do() {
    let err = modelc_cli::convert(&dir().join("chunked_gzip.weights.h5")).unwrap_err().to_string();
    assert!(err.contains("no model config"), "{err}");
}
