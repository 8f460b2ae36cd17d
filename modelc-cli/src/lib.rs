//! Keras import as a library: a Keras 3 `.keras` archive (zip of `config.json`, `metadata.json`,
//! `model.weights.h5`) or a legacy full-model `.h5` file becomes `model!` source and safetensors
//! weights under the names the generated model expects. The `modelc` binary and a `build.rs` call the
//! same [`import`]:
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
//!     modelc_cli::import("model.keras".as_ref(), &out.join("model.rs"), &out.join("model.safetensors"))?;
//!     println!("cargo:rerun-if-changed=model.keras");
//!     Ok(())
//! }
//! ```
//!
//! Nothing is written unless everything converts: every unsupported layer, argument or feature is
//! listed in one [`ImportError::Unsupported`].

mod hdf5;

use model_compiler::import::{keras_to_source, Origin};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a Keras model file this importer reads.
    #[error("{0}")]
    Format(String),
    /// The model uses what modelc does not support: every reason, one per line.
    #[error("the model cannot be imported:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Unsupported(Vec<String>),
}

/// One parameter: its name as the generated model expects it, its shape and its values.
pub type Weight = (String, Vec<usize>, Vec<f32>);

/// A converted model: the source and the weights, in memory.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The `model!` blocks (one per model, nested ones first), ready to be written to a `.rs` file.
    pub source: String,
    /// The top model's struct name.
    pub model: String,
    /// Every parameter: name as the generated model expects it, shape, values.
    pub weights: Vec<Weight>,
}

/// The weights of each leaf layer (full modelc name, `tower/tower_dense1`), in Keras order.
pub(crate) type LayerWeights = BTreeMap<String, Vec<(Vec<usize>, Vec<f32>)>>;

/// Converts a `.keras` or `.h5` file, without writing anything.
pub fn convert(path: &Path) -> Result<Conversion, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: path.display().to_string(), source })?;
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let (config, version, weights) = if bytes.starts_with(b"PK") {
        read_keras(&bytes)?
    } else if bytes.starts_with(b"\x89HDF") {
        hdf5::legacy(bytes)?
    } else {
        return Err(ImportError::Format(format!("{file}: neither a .keras archive (zip) nor an HDF5 file")));
    };
    let origin = Origin { file, keras_version: version };
    let imported = keras_to_source(&config, &origin).map_err(ImportError::Unsupported)?;
    let layout = model_compiler::param_layout(&imported.single_invocation()).map_err(|errs| {
        ImportError::Unsupported(errs.into_iter().map(|e| format!("the generated model does not compile: {e}")).collect())
    })?;
    let weights = match_weights(&layout, weights)?;
    Ok(Conversion { source: imported.source(), model: imported.top().to_string(), weights })
}

/// Converts `model` and writes the source to `out` and the weights to `weights` (each atomically:
/// a temporary file renamed over the target). Nothing is written when anything fails.
pub fn import(model: &Path, out: &Path, weights: &Path) -> Result<Conversion, ImportError> {
    let c = convert(model)?;
    let st = safetensors_bytes(&c.weights)?;
    write_atomic(out, c.source.as_bytes())?;
    write_atomic(weights, &st)?;
    Ok(c)
}

/// The `.keras` archive's config, Keras version and weights.
fn read_keras(bytes: &[u8]) -> Result<(String, String, LayerWeights), ImportError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ImportError::Format(format!("not a readable .keras archive: {e}")))?;
    let mut member = |name: &str| -> Result<Vec<u8>, ImportError> {
        let mut f = zip.by_name(name).map_err(|e| ImportError::Format(format!("the .keras archive has no {name}: {e}")))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|source| ImportError::Io { path: name.to_string(), source })?;
        Ok(out)
    };
    let config = String::from_utf8_lossy(&member("config.json")?).into_owned();
    let meta: serde_json::Value = serde_json::from_slice(&member("metadata.json")?).unwrap_or_default();
    let version = meta.get("keras_version").and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
    let weights = hdf5::keras_weights(member("model.weights.h5")?)?;
    Ok((config, version, weights))
}

/// Pairs each parameter of the generated model with the Keras weight of its layer at the same position.
fn match_weights(layout: &[(String, Vec<usize>)], mut file: LayerWeights) -> Result<Vec<Weight>, ImportError> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut position: BTreeMap<String, usize> = BTreeMap::new();
    for (name, shape) in layout {
        let layer = name.rsplit_once('/').map(|(l, _)| l).unwrap_or("");
        let i = *position.entry(layer.to_string()).and_modify(|i| *i += 1).or_insert(0);
        match file.get(layer).and_then(|w| w.get(i)) {
            Some((s, v)) if s == shape => out.push((name.clone(), shape.clone(), v.clone())),
            Some((s, _)) => problems.push(format!("weight `{name}`: the file holds shape {s:?}, the generated model expects {shape:?}")),
            None => problems.push(format!("weight `{name}` ({shape:?}) is not in the weights file")),
        }
    }
    for (layer, n) in &position {
        if let Some(w) = file.remove(layer) {
            if w.len() > n + 1 {
                problems.push(format!("layer `{layer}` has {} weights in the file, the generated model {}", w.len(), n + 1));
            }
        }
    }
    for (layer, w) in file {
        if !w.is_empty() {
            problems.push(format!("layer `{layer}` has weights in the file but no parameters in the generated model"));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ImportError::Unsupported(problems))
    }
}

/// The weights as a safetensors file (float32, little-endian).
pub fn safetensors_bytes(weights: &[Weight]) -> Result<Vec<u8>, ImportError> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> =
        weights.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let mut views = Vec::new();
    for (n, s, b) in &raw {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
            .map_err(|e| ImportError::Format(format!("weight `{n}`: {e}")))?;
        views.push((n.clone(), view));
    }
    safetensors::serialize(views, None).map_err(|e| ImportError::Format(format!("writing safetensors: {e}")))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    let io = |source| ImportError::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
