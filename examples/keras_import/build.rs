//! Imports the Keras model shipped in `data/keras_digits/digits.keras` into `OUT_DIR`: `keras_digits.rs`
//! (the `model!` source, included by `src/lib.rs`) and `keras_digits.safetensors` (Keras' trained weights
//! under the names the generated model expects).

use std::path::{Path, PathBuf};

fn main() {
    let keras = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/keras_digits/digits.keras");
    println!("cargo:rerun-if-changed={}", keras.display());
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = modelc_cli::import(&keras, &out.join("keras_digits.rs"), &out.join("keras_digits.safetensors")) {
        eprintln!("error: importing {}: {e}", keras.display());
        std::process::exit(1);
    }
}
