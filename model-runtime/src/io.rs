//! Weight files: a model's parameters to and from safetensors, with Keras names and layouts.
//!
//! The format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length
//! `n`, `n` bytes of JSON mapping each tensor name to `{"dtype", "shape", "data_offsets"}` (plus an
//! optional `"__metadata__"` map of strings), then the raw little-endian data. Tensors are named by
//! `ParamSpec::name` (`dense_1/kernel`) and stored in Keras layout (`[in, out]` for a Dense kernel)
//! as `F32`.
//!
//! **Reading** maps the file into memory (`memmap2`) and touches only the header and the byte
//! ranges of the tensors it decodes. The header is checked in two steps:
//! 1. A streaming pass (serde_json with visitors of our own, `scan_header`) reads the JSON into the
//!    `safetensors` crate's own types (`Dtype`, `TensorInfo`) and checks every rule of the format,
//!    naming the tensor in each problem: known dtype, size = shape x dtype, offsets inside the data,
//!    no duplicate names, no overlap, no gap, no trailing data (the file is exactly covered).
//! 2. The `safetensors` crate, the format's reference implementation, then validates the table
//!    itself (`Metadata::new`: offsets contiguous from 0, sizes with overflow checks), and each
//!    tensor's bytes become a `safetensors::tensor::TensorView` before they are decoded.
//!
//! Why not `SafeTensors::deserialize` on the whole file: the crate parses the header through
//! `#[serde(flatten)]`, which first buffers the whole JSON document as serde `Content` values
//! (about 32 bytes per JSON number, plus an allocation per string). Measured on its 0.8.0 release:
//! a 98 MB header holding one 49M-long shape costs 2.0 GB and 11 s; 49M numbers in an unknown
//! field 1.6 GB; 1.4M tiny tensors 1.0 GB. It also keeps the last of two tensors with one name
//! silently (a `HashMap`). Our pass stores at most [`MAX_RANK`] dimensions per tensor and skips
//! unknown fields without storing them, so time and memory stay linear in the header with a small
//! constant (see `tests/weights_hostile.rs`).
//!
//! **Writing** streams the parameters into a unique temporary file next to the target, syncs it,
//! renames it over the target and syncs the directory ([`write_atomic_with`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use memmap2::Mmap;
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Metadata, TensorInfo, TensorView};
use safetensors::Dtype;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{nearest_names, Error, Result};
use crate::network::{InputView, Network};
use crate::spec::DType;

/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;
/// Most dimensions a tensor may have (NumPy's limit, `NPY_MAXDIMS`). Longer shapes are reported
/// without being stored.
pub const MAX_RANK: usize = 64;
/// Most problems listed in one [`Error::WeightFile`]; the rest are counted.
const MAX_PROBLEMS: usize = 50;
/// Names longer than this are shortened in messages and get no "did you mean" hint.
const MAX_SHOWN_NAME: usize = 120;

// ---------------------------------------------------------------------------------------------
// Saving
// ---------------------------------------------------------------------------------------------

/// Writes every parameter of `model` to `path` in safetensors, crash-safely (see
/// [`write_atomic_with`]): `path` holds either the old file or the complete new one, whatever
/// happens, and concurrent saves to one path each write their own temporary file, the last rename
/// winning.
///
/// The header is the crate's `TensorInfo` serialized as `safetensors::serialize` lays it out, after the
/// crate's `Metadata` validated the table, padded with spaces to 8 bytes as the crate does. The data is streamed from
/// the model's parameter buffer in 64 KB chunks instead of going through `safetensors::serialize`
/// or `serialize_to_file`: the former builds the whole file in one `Vec` (a second copy of every
/// parameter), and both need each tensor as a byte slice, which for `f32` parameters means a copy
/// per tensor (or `unsafe` reinterpretation); `serialize_to_file` also syncs neither the file nor its
/// directory.
pub fn save<N: Network>(model: &N, path: impl AsRef<Path>) -> Result<()> {
    save_with_extra(model, path.as_ref(), &[], &[])
}

/// A tensor written after the parameters by [`save_with_extra`]: its name and its values (one dimension).
pub(crate) type Extra<'a> = (String, &'a [f32]);

/// [`save`], with `extra` tensors (1-D `F32`) after the parameters and `meta` entries added to the
/// header's `__metadata__`, all in one atomic write.
pub(crate) fn save_with_extra<N: Network>(model: &N, path: &Path, extra: &[Extra<'_>], meta: &[(&str, &str)]) -> Result<()> {
    let params = &model.state().params;
    let mut tensors = Vec::with_capacity(N::PARAMS.len() + extra.len());
    let mut offset = 0usize;
    for spec in N::PARAMS {
        let bytes = spec.len().checked_mul(4).ok_or_else(|| bad_file(path, vec![format!("parameter `{}` is too large", spec.name)]))?;
        if params.get(spec.range()).is_none() {
            return Err(bad_file(path, vec![format!("parameter `{}` lies outside the model's parameter buffer", spec.name)]));
        }
        let info = TensorInfo { dtype: Dtype::F32, shape: spec.shape.to_vec(), data_offsets: (offset, offset + bytes) };
        tensors.push((spec.name.to_string(), info));
        offset += bytes;
    }
    for (name, values) in extra {
        let bytes = values.len() * 4;
        tensors.push((name.clone(), TensorInfo { dtype: Dtype::F32, shape: vec![values.len()], data_offsets: (offset, offset + bytes) }));
        offset += bytes;
    }
    let refused = |e: &dyn fmt::Display| bad_file(path, vec![format!("the safetensors crate refused the header: {e}")]);
    // The crate's rules for the table (offsets contiguous from 0, sizes matching shapes)...
    Metadata::new(None, tensors.clone()).map_err(|e| refused(&e))?;
    // ...and its `TensorInfo` serializer, in the crate's layout (`__metadata__` first, then the
    // tensors), but in a fixed order: the crate's `Metadata` keeps `__metadata__` in a `HashMap`,
    // whose order changes from run to run, and two saves of one model must give the same bytes.
    let mut about = vec![("format", "modelc"), ("model", N::NAME)];
    about.extend_from_slice(meta);
    let mut header = serde_json::to_vec(&HeaderOut { about: &about, tensors: &tensors }).map_err(|e| refused(&e))?;
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    header.resize(header.len().next_multiple_of(8), b' ');
    if header.len() as u64 > MAX_HEADER {
        return Err(refused(&"header too large"));
    }
    write_atomic_with(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        let mut chunk = [0u8; 64 * 1024];
        for spec in N::PARAMS {
            let values = params.get(spec.range()).unwrap_or_default();
            for part in values.chunks(chunk.len() / 4) {
                for (dst, v) in chunk.chunks_exact_mut(4).zip(part) {
                    dst.copy_from_slice(&v.to_le_bytes());
                }
                w.write_all(&chunk[..part.len() * 4])?;
            }
        }
        for (_, values) in extra {
            write_f32s(w, values, &mut chunk)?;
        }
        Ok(())
    })
}

/// Writes `values` little-endian through `chunk`.
fn write_f32s(w: &mut dyn Write, values: &[f32], chunk: &mut [u8; 64 * 1024]) -> io::Result<()> {
    for part in values.chunks(chunk.len() / 4) {
        for (dst, v) in chunk.chunks_exact_mut(4).zip(part) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        w.write_all(&chunk[..part.len() * 4])?;
    }
    Ok(())
}

/// A header to write: `{"__metadata__": {...}, name: TensorInfo, ...}` in the given order.
struct HeaderOut<'a> {
    about: &'a [(&'a str, &'a str)],
    tensors: &'a [(String, TensorInfo)],
}

impl serde::Serialize for HeaderOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct About<'a>(&'a [(&'a str, &'a str)]);
        impl serde::Serialize for About<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().copied())
            }
        }
        let mut map = s.serialize_map(Some(1 + self.tensors.len()))?;
        map.serialize_entry("__metadata__", &About(self.about))?;
        for (name, info) in self.tensors {
            map.serialize_entry(name, info)?;
        }
        map.end()
    }
}

/// Writes `bytes` to `path` crash-safely (see [`write_atomic_with`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// A temporary file older than this, that no process holds locked, is the leftover of a crashed
/// save and is removed by the next save to the same path. (The age only covers the instant between
/// creating a temporary file and locking it; a live save holds its lock throughout.)
pub const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(10);

/// Suffix of every temporary file a save creates: `.<file name>.<pid>-<n>.modelc-tmp`.
const TMP_SUFFIX: &str = ".modelc-tmp";

/// Writes a file crash-safely.
///
/// 1. Temporaries of earlier saves to the same path that crashed (older than
///    [`STALE_TEMPORARY_AGE`] and locked by no process) are removed.
/// 2. A new temporary file `.<name>.<pid>-<n>.modelc-tmp` is created exclusively (`create_new`) in
///    the same directory and locked (`File::lock`) for as long as the save runs.
/// 3. `write` fills it; it is flushed and synced (`sync_all`), then renamed over `path`, and the
///    directory is synced so the rename itself survives a power loss.
///
/// Each save has its own temporary file, so concurrent saves to one path never mix their bytes:
/// `path` always holds one complete file, the last one renamed. On failure the temporary file is
/// removed and `path` is untouched; errors name `path` (and the temporary file when it is at fault).
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::io(path, io::Error::new(io::ErrorKind::InvalidInput, "not a file path (it has no file name)")));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_temporaries(dir, name);
    let (tmp, file) = create_temporary(dir, name).map_err(|e| Error::io(path, e))?;
    let about_tmp = |what: &str, e: io::Error| Error::io(path, io::Error::new(e.kind(), format!("{what} {}: {e}", tmp.display())));
    let written = (|| -> io::Result<()> {
        let mut w = BufWriter::with_capacity(256 * 1024, &file);
        write(&mut w)?;
        w.flush()?;
        drop(w);
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(about_tmp("could not write the temporary file", e));
    }
    // Renamed while still open and locked, so no cleaner can take it for a stale one.
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(about_tmp("could not rename the temporary file", e));
    }
    sync_dir(dir).map_err(|e| Error::io(path, io::Error::new(e.kind(), format!("could not sync directory {}: {e}", dir.display()))))?;
    drop(file);
    Ok(())
}

/// Creates `.<name>.<pid>-<n>.modelc-tmp` in `dir` exclusively and locks it.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut last = None;
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}-{nanos:x}{n}{TMP_SUFFIX}", std::process::id()));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => {
                // Where the file system has no locks, the save goes on unlocked: cleaners cannot
                // lock it either, so they leave it alone.
                let _ = file.lock();
                return Ok((tmp, file));
            }
            // A leftover of a crashed process that had the same id: try the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io::Error::new(e.kind(), format!("could not create a temporary file in {}: {e}", dir.display()))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Whether `file` (a directory entry's name) is a temporary file of a save to `name`.
fn is_temporary_of(file: &std::ffi::OsStr, name: &std::ffi::OsStr) -> bool {
    let (Some(file), Some(name)) = (file.to_str(), name.to_str()) else {
        return false;
    };
    file.strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('.'))
        .and_then(|f| f.strip_suffix(TMP_SUFFIX))
        .is_some_and(|id| {
            id.split_once('-').is_some_and(|(pid, n)| {
                !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && n.bytes().all(|b| b.is_ascii_hexdigit())
            })
        })
}

/// Removes the temporaries of crashed saves to `dir/name`: older than [`STALE_TEMPORARY_AGE`] and
/// locked by no live process (a process's locks die with it). Best effort: a temporary that cannot
/// be examined is left alone.
fn remove_stale_temporaries(dir: &Path, name: &std::ffi::OsStr) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !is_temporary_of(&entry.file_name(), name) {
            continue;
        }
        let old =
            entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= STALE_TEMPORARY_AGE));
        if !old {
            continue;
        }
        let tmp = entry.path();
        let Ok(file) = File::open(&tmp) else { continue };
        if file.try_lock().is_ok() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files everywhere; NTFS journals the rename itself.
        let _ = dir;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Loads every parameter of `model` from the safetensors file at `path`, written by [`save`] or by
/// any tool using the same names and layouts. Nothing is changed unless the whole file is valid:
/// every parameter present with its exact shape as `F32` and finite values, no unknown tensor, sound
/// offsets. All problems found are reported together in one [`Error::WeightFile`]. Only the header
/// and the bytes of the tensors that fill parameters are read.
///
/// A tensor named as Keras 3 names a nested model's weight, without the nested model's prefix
/// (`tower_dense1/kernel` for parameter `tower/tower_dense1/kernel`), fills the one parameter whose
/// name ends with `/` and that name, so files exported from Keras with `w.path` load as they are.
///
/// The optimizer state a training checkpoint holds beside the weights (tensors named `optimizer/...`,
/// see [`crate::checkpoint`]) is skipped: such a file loads as weights too.
pub fn load<N: Network>(model: &mut N, path: impl AsRef<Path>) -> Result<()> {
    load_with(model, path, |name| (!crate::checkpoint::is_state::<N>(name)).then(|| (keras_path::<N>(name), false)))
}

/// `name` if it is a parameter of `N`; else the only parameter named `.../name` (a Keras 3 weight path
/// inside a nested model); else `name` (reported as unknown).
fn keras_path<N: Network>(name: &str) -> String {
    if N::PARAMS.iter().any(|p| p.name == name) {
        return name.to_string();
    }
    let suffix = format!("/{name}");
    let mut matches = N::PARAMS.iter().filter(|p| p.name.ends_with(&suffix));
    match (matches.next(), matches.next()) {
        (Some(p), None) => p.name.to_string(),
        _ => name.to_string(),
    }
}

/// [`load`] for files whose tensor names or layouts differ: `map` receives each name in the file
/// and returns the model parameter it fills and whether to transpose it (2-D only), or `None`
/// to skip that tensor. For a PyTorch `nn.Linear`, `fc1.weight` (`[out, in]`) maps to
/// `Some(("dense/kernel".into(), true))` and `fc1.bias` to `Some(("dense/bias".into(), false))`.
pub fn load_with<N: Network>(model: &mut N, path: impl AsRef<Path>, map: impl Fn(&str) -> Option<(String, bool)>) -> Result<()> {
    let path = path.as_ref();
    let file = WeightFile::open(path)?;

    // Match the file's tensors with the model's parameters.
    let mut problems = Problems::default();
    let mut assigned: Vec<Option<(usize, bool)>> = vec![None; N::PARAMS.len()];
    for (e, entry) in file.entries.iter().enumerate() {
        let Some((target, transpose)) = map(&entry.name) else {
            continue;
        };
        let label = if target == entry.name {
            format!("`{}`", shown(&entry.name))
        } else {
            format!("`{}` (as `{}`)", shown(&entry.name), shown(&target))
        };
        let Some(p) = N::PARAMS.iter().position(|s| s.name == target) else {
            // Hints cost an edit distance per parameter: only for the problems that will be shown.
            let near = if !problems.is_full() && target.len() <= MAX_SHOWN_NAME {
                nearest_names(&target, N::PARAMS.iter().map(|s| s.name), 3)
            } else {
                Vec::new()
            };
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", near.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            };
            problems.add(|| format!("unknown tensor {label}: model `{}` has no such parameter{hint}", N::NAME));
            continue;
        };
        if let Some((other, _)) = assigned[p] {
            problems.add(|| {
                format!("tensors `{}` and `{}` both fill parameter `{target}`", shown(&file.entries[other].name), shown(&entry.name))
            });
            continue;
        }
        let spec = &N::PARAMS[p];
        if entry.info.dtype != Dtype::F32 {
            problems.add(|| format!("tensor {label}: dtype {}, expected F32", entry.info.dtype));
        }
        let shape: Vec<usize> = match (transpose, entry.info.shape.as_slice()) {
            (false, s) => s.to_vec(),
            (true, &[a, b]) => vec![b, a],
            (true, s) => {
                problems.add(|| format!("tensor {label}: cannot transpose a tensor of shape {s:?}; only 2-D tensors can be"));
                s.to_vec()
            }
        };
        if shape != spec.shape {
            let how = if transpose { " after transposing" } else { "" };
            problems.add(|| format!("tensor {label}: shape {shape:?}{how}, expected {:?}", spec.shape));
        }
        assigned[p] = Some((e, transpose));
    }
    for (spec, a) in N::PARAMS.iter().zip(&assigned) {
        if a.is_none() {
            problems.add(|| format!("missing parameter `{}` {:?}", spec.name, spec.shape));
        }
    }
    if !problems.is_empty() {
        return Err(bad_file(path, problems.into_vec()));
    }

    // Everything checks out: decode the matched tensors (and only them) into a copy of the
    // parameters, swapped in only once complete.
    let mut params = model.state().params.clone();
    for (spec, a) in N::PARAMS.iter().zip(&assigned) {
        let Some((e, transpose)) = *a else { continue };
        let view = file.view(e)?;
        let dst = params
            .get_mut(spec.range())
            .ok_or_else(|| bad_file(path, vec![format!("parameter `{}` lies outside the model's parameter buffer", spec.name)]))?;
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        match (transpose, view.shape()) {
            (true, &[_, cols]) => {
                // file [rows, cols] -> model [cols, rows]: dst[j * rows + i] = src[i * cols + j].
                let rows = spec.shape[1];
                for (k, v) in values.enumerate() {
                    let (i, j) = (k / cols, k % cols);
                    dst[j * rows + i] = v;
                }
            }
            _ => dst.iter_mut().zip(values).for_each(|(d, v)| *d = v),
        }
    }
    // A NaN or an infinity can only make what reads it non-finite: such a file is refused, naming the
    // first position of each parameter that holds one.
    let mut problems = Problems::default();
    for spec in N::PARAMS {
        let values = params.get(spec.range()).unwrap_or_default();
        if let Some((k, v)) = crate::train::first_non_finite(values).and_then(|k| Some((k, *values.get(k)?))) {
            problems.add(|| {
                format!(
                    "parameter `{}` holds {v} at {:?}: weights must be finite (`io::read_tensors` reads the file as it is)",
                    spec.name,
                    crate::train::unravel(k, spec.shape)
                )
            });
        }
    }
    if !problems.is_empty() {
        return Err(bad_file(path, problems.into_vec()));
    }
    model.state_mut().params = params;
    Ok(())
}

/// The `__metadata__` map of the safetensors file at `path` (empty when it has none), after the whole
/// file was checked as [`load`] checks it.
pub fn read_metadata(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    let path = path.as_ref();
    let file = WeightFile::open(path)?;
    let header = file.map.get(8..file.data_start).unwrap_or_default();
    let mut de = serde_json::Deserializer::from_slice(header);
    de::Deserializer::deserialize_map(&mut de, MetadataOnly).map_err(|e| bad_file(path, vec![format!("unreadable `__metadata__`: {e}")]))
}

/// Reads a header's `__metadata__` and skips its tensors without storing them.
struct MetadataOnly;

impl<'de> Visitor<'de> for MetadataOnly {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a safetensors header")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut meta = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "__metadata__" {
                meta = map.next_value()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(meta)
    }
}

/// One tensor read by [`read_typed_tensors`], in an element type a model input can have
/// ([`DType`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// Floats: stored as `F32`, or `F16`/`BF16` widened exactly.
    F32(ArrayD<f32>),
    /// Integers: stored as `I32`, or `BOOL`/`I8`/`U8`/`I16`/`U16` widened exactly, or
    /// `I64`/`U32`/`U64` when every value fits in `i32`.
    I32(ArrayD<i32>),
}

impl Tensor {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::I32(_) => DType::I32,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I32(a) => a.shape(),
        }
    }

    /// The float array, if this tensor holds floats.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            Tensor::I32(_) => None,
        }
    }

    /// The integer array, if this tensor holds integers.
    pub fn as_i32(&self) -> Option<&ArrayD<i32>> {
        match self {
            Tensor::I32(a) => Some(a),
            Tensor::F32(_) => None,
        }
    }

    /// A view to pass as a model input of either type.
    pub fn view(&self) -> InputView<'_> {
        match self {
            Tensor::F32(a) => InputView::F32(a.view()),
            Tensor::I32(a) => InputView::I32(a.view()),
        }
    }
}

/// Every tensor of a safetensors file, by name, as `f32` arrays in the file's shapes: for
/// inspecting a weights file or reading reference fixtures. Float tensors only (`F32`, and
/// `F16`/`BF16` widened exactly); an integer tensor is reported by name, to be read with
/// [`read_typed_tensors`]. Every problem is reported in one [`Error::WeightFile`].
pub fn read_tensors(path: impl AsRef<Path>) -> Result<BTreeMap<String, ArrayD<f32>>> {
    let path = path.as_ref();
    let all = read_typed_tensors(path)?;
    let mut ints = Problems::default();
    for (name, _) in all.iter().filter(|(_, t)| t.dtype() == DType::I32) {
        ints.add(|| format!("tensor `{}` holds integers; read it with `io::read_typed_tensors`", shown(name)));
    }
    if !ints.is_empty() {
        return Err(bad_file(path, ints.into_vec()));
    }
    Ok(all
        .into_iter()
        .filter_map(|(name, t)| match t {
            Tensor::F32(a) => Some((name, a)),
            Tensor::I32(_) => None,
        })
        .collect())
}

/// Every tensor of a safetensors file, by name, in the element type a model input would have
/// ([`Tensor`]). The conversion rule: every value is kept exactly or the tensor is rejected.
/// `F32` and `I32` are read as they are; `F16`, `BF16` widen to `f32`; `BOOL`, `I8`, `U8`, `I16`,
/// `U16` widen to `i32`; `I64`, `U32`, `U64` (NumPy's and PyTorch's default integers) narrow to
/// `i32` when every value fits, else the tensor is rejected naming the first value that does not.
/// `F64` (rounding would change values), the 8-, 6- and 4-bit floats and `C64` are rejected by
/// name. Every problem is reported together in one [`Error::WeightFile`]; the memory for each
/// tensor is reserved fallibly, so a file declaring more than the machine holds is an error too.
pub fn read_typed_tensors(path: impl AsRef<Path>) -> Result<BTreeMap<String, Tensor>> {
    let path = path.as_ref();
    let file = WeightFile::open(path)?;
    let mut problems = Problems::default();
    let mut out = BTreeMap::new();
    for (e, entry) in file.entries.iter().enumerate() {
        let view = file.view(e)?;
        match decode(&view) {
            Ok(t) => {
                out.insert(entry.name.clone(), t);
            }
            Err(p) => problems.add(|| format!("tensor `{}`: {p}", shown(&entry.name))),
        }
    }
    if !problems.is_empty() {
        return Err(bad_file(path, problems.into_vec()));
    }
    Ok(out)
}

/// Decodes one tensor by the conversion rule of [`read_typed_tensors`].
fn decode(view: &TensorView<'_>) -> std::result::Result<Tensor, String> {
    let (shape, bytes, dtype) = (IxDyn(view.shape()), view.data(), view.dtype());
    let float = |v: Vec<f32>| ArrayD::from_shape_vec(shape.clone(), v).map(Tensor::F32).map_err(|e| e.to_string());
    let int = |v: Vec<i32>| ArrayD::from_shape_vec(shape.clone(), v).map(Tensor::I32).map_err(|e| e.to_string());
    match dtype {
        Dtype::F32 => float(collect(bytes, dtype, |c: [u8; 4]| Ok(f32::from_le_bytes(c)))?),
        Dtype::F16 => float(collect(bytes, dtype, |c: [u8; 2]| Ok(f16_to_f32(u16::from_le_bytes(c))))?),
        Dtype::BF16 => float(collect(bytes, dtype, |c: [u8; 2]| Ok(crate::kernels::gemm::from_bf16(u16::from_le_bytes(c))))?),
        Dtype::I32 => int(collect(bytes, dtype, |c: [u8; 4]| Ok(i32::from_le_bytes(c)))?),
        Dtype::BOOL => int(collect(bytes, dtype, |[b]: [u8; 1]| Ok(i32::from(b != 0)))?),
        Dtype::I8 => int(collect(bytes, dtype, |c: [u8; 1]| Ok(i32::from(i8::from_le_bytes(c))))?),
        Dtype::U8 => int(collect(bytes, dtype, |[b]: [u8; 1]| Ok(i32::from(b)))?),
        Dtype::I16 => int(collect(bytes, dtype, |c: [u8; 2]| Ok(i32::from(i16::from_le_bytes(c))))?),
        Dtype::U16 => int(collect(bytes, dtype, |c: [u8; 2]| Ok(i32::from(u16::from_le_bytes(c))))?),
        Dtype::I64 => int(collect(bytes, dtype, |c: [u8; 8]| narrow(i64::from_le_bytes(c)))?),
        Dtype::U32 => int(collect(bytes, dtype, |c: [u8; 4]| narrow(u32::from_le_bytes(c)))?),
        Dtype::U64 => int(collect(bytes, dtype, |c: [u8; 8]| narrow(u64::from_le_bytes(c)))?),
        Dtype::F64 => Err("dtype F64 is not read: narrowing to f32 would round; store it as F32 (NumPy: `.astype(np.float32)`)".into()),
        other => Err(format!("dtype {other} is not read: a model input is float32 or int32; store it as F32 or I32")),
    }
}

/// An integer narrowed to `i32`, or the reason it cannot be.
fn narrow<T: Copy + fmt::Display + TryInto<i32>>(v: T) -> std::result::Result<i32, String> {
    v.try_into().map_err(|_| format!("value {v} does not fit in int32 (a model's integer inputs are int32)"))
}

/// The elements of `bytes` (each `W` bytes wide) converted by `f`, in memory reserved fallibly.
fn collect<const W: usize, T>(
    bytes: &[u8],
    dtype: Dtype,
    f: impl Fn([u8; W]) -> std::result::Result<T, String>,
) -> std::result::Result<Vec<T>, String> {
    let n = bytes.len() / W;
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| {
        format!(
            "{n} elements of {dtype} ({}) cannot be allocated: the machine does not have the memory",
            human_bytes(n.saturating_mul(size_of::<T>()))
        )
    })?;
    for (i, c) in bytes.chunks_exact(W).enumerate() {
        let mut a = [0u8; W];
        a.copy_from_slice(c);
        out.push(f(a).map_err(|e| format!("element {i}: {e}"))?);
    }
    Ok(out)
}

fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// IEEE 754 half precision to single, exactly (every `f16` is an `f32`).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24, exact in f32 (2^-24 has the bits 0x3380_0000).
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign == 0 { v } else { -v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// A weights file opened for reading: its memory map and the checked table of its tensors.
struct WeightFile<'p> {
    path: &'p Path,
    /// The whole file, mapped.
    map: Mmap,
    /// Where the data section starts (8 + header length).
    data_start: usize,
    /// The tensors, in the header's order, each checked against the data section.
    entries: Vec<Entry>,
}

/// One tensor of a safetensors header.
#[derive(Debug)]
struct Entry {
    name: String,
    info: TensorInfo,
}

impl<'p> WeightFile<'p> {
    /// Opens, maps and checks the file at `path`: every problem of the header and of the layout of
    /// its data is reported together.
    fn open(path: &'p Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if file_len < 8 {
            return Err(bad_file(
                path,
                vec![format!("the file is {file_len} bytes long, too short to hold the 8-byte header length (truncated?)")],
            ));
        }
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix).map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len > file_len - 8 {
            return Err(bad_file(
                path,
                vec![format!(
                    "the header claims {header_len} bytes but only {} follow the length prefix (truncated or not a safetensors file)",
                    file_len - 8
                )],
            ));
        }
        if header_len > MAX_HEADER {
            return Err(bad_file(path, vec![format!("the header claims {header_len} bytes, more than the {MAX_HEADER} accepted")]));
        }
        // SAFETY: the map is read-only and private to this call. Its contents change only if another
        // process rewrites the file in place while it is read (a truncation would fault the reads).
        // modelc never does: a save writes a new file and renames it over the old one, and the
        // renamed-over file stays intact for as long as it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (data_start, data_len) = (8 + header_len as usize, (file_len - 8 - header_len) as usize);
        let header = map.get(8..data_start).unwrap_or_default();
        let entries = check_header(header, data_len).map_err(|p| bad_file(path, p))?;
        Ok(WeightFile { path, map, data_start, entries })
    }

    /// Tensor `e`'s bytes, as the reference implementation's view (which checks them against its
    /// dtype and shape once more).
    fn view(&self, e: usize) -> Result<TensorView<'_>> {
        let entry = &self.entries[e];
        let (begin, end) = entry.info.data_offsets;
        let bytes = self.map.get(self.data_start + begin..self.data_start + end).unwrap_or_default();
        TensorView::new(entry.info.dtype, entry.info.shape.clone(), bytes)
            .map_err(|err| bad_file(self.path, vec![format!("tensor `{}`: {err}", shown(&entry.name))]))
    }
}

/// Checks a header (the JSON bytes) against a data section of `data_len` bytes: every rule of the
/// format, then the reference implementation's own validation. Returns the tensors in header order.
fn check_header(header: &[u8], data_len: usize) -> std::result::Result<Vec<Entry>, Vec<String>> {
    let text = std::str::from_utf8(header).map_err(|e| vec![format!("the header is not UTF-8 (byte {})", e.valid_up_to())])?;
    let mut problems = Problems::default();
    let (entries, left_out) = scan_header(text, data_len, &mut problems)?;
    // A tensor rejected above leaves a hole in the layout: report gaps only when none was.
    let complete = left_out == 0;
    check_names(&entries, &mut problems);
    check_layout(&entries, data_len, complete, &mut problems);
    if !problems.is_empty() {
        return Err(problems.into_vec());
    }
    // The reference implementation's validation of the table, in offset order. It reads only the
    // dtypes, shapes and offsets (names serve its lookups, and duplicates were checked above), so
    // the names are left empty rather than copied: a header of a million tiny tensors would
    // otherwise pay for every name twice more (the copy and the crate's index).
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| entries[i].info.data_offsets);
    let table = order.iter().map(|&i| (String::new(), entries[i].info.clone())).collect();
    drop(order);
    let metadata = Metadata::new(None, table).map_err(|e| vec![format!("the safetensors crate rejects the header: {e}")])?;
    if metadata.data_len() != data_len {
        return Err(vec![format!("the tensors cover {} bytes of a {data_len}-byte data section", metadata.data_len())]);
    }
    Ok(entries)
}

/// No two tensors may share a name (the reference implementation keeps the last one silently).
fn check_names(entries: &[Entry], problems: &mut Problems) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by(|&a, &b| entries[a].name.cmp(&entries[b].name));
    for run in order.chunk_by(|&a, &b| entries[a].name == entries[b].name) {
        if run.len() > 1 {
            problems.add(|| format!("tensor `{}` is listed {} times", shown(&entries[run[0]].name), run.len()));
        }
    }
}

/// The tensors must cover the data section exactly: no overlap, no gap, no trailing bytes (gaps
/// and trailing bytes are looked for only when `complete`, i.e. no tensor was left out).
fn check_layout(entries: &[Entry], data_len: usize, complete: bool, problems: &mut Problems) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| entries[i].info.data_offsets);
    let mut covered = 0usize;
    let mut last: Option<usize> = None;
    for &i in &order {
        let (begin, end) = entries[i].info.data_offsets;
        if begin > covered && complete {
            let after = last.map_or(String::from("the start of the data section"), |l| format!("tensor `{}`", shown(&entries[l].name)));
            problems.add(|| {
                format!(
                    "bytes {covered}..{begin} of the data section belong to no tensor (between {after} and tensor `{}`)",
                    shown(&entries[i].name)
                )
            });
        } else if begin < covered {
            if let Some(l) = last {
                let (lb, le) = entries[l].info.data_offsets;
                problems.add(|| {
                    format!(
                        "tensors `{}` (bytes {lb}..{le}) and `{}` (bytes {begin}..{end}) overlap",
                        shown(&entries[l].name),
                        shown(&entries[i].name)
                    )
                });
            }
        }
        if end >= covered {
            covered = end;
            last = Some(i);
        }
    }
    if covered < data_len && complete {
        problems.add(|| format!(
            "{} bytes of trailing data after the last tensor (bytes {covered}..{data_len} of the data section); a safetensors file must be exactly covered by its tensors",
            data_len - covered
        ));
    }
}

/// A tensor as the header describes it, before its layout is checked.
struct RawEntry {
    name: String,
    dtype: Option<Dtype>,
    /// The first [`MAX_RANK`] dimensions.
    shape: Vec<usize>,
    /// How many dimensions the header lists.
    rank: usize,
    offsets: Option<(usize, usize)>,
    /// Problems found while reading it (unknown dtype, repeated field...).
    problems: Vec<String>,
}

impl RawEntry {
    /// The entry, if it is complete and consistent: known dtype, sensible rank, offsets forward and
    /// inside the data section, and a size that matches its shape and dtype.
    fn check(self, data_len: usize) -> std::result::Result<Entry, String> {
        let name = shown(&self.name);
        let mut problems = self.problems;
        if self.dtype.is_none() && problems.is_empty() {
            problems.push("missing `dtype`".into());
        }
        if self.rank > MAX_RANK {
            problems.push(format!("its shape has {} dimensions, more than the {MAX_RANK} accepted", self.rank));
        }
        match self.offsets {
            None => problems.push("missing `data_offsets` [begin, end]".into()),
            Some((b, e)) if b > e => problems.push(format!("data_offsets [{b}, {e}] run backwards")),
            Some((b, e)) if e > data_len => {
                problems.push(format!("data_offsets [{b}, {e}] run past the data section ({data_len} bytes; truncated?)"))
            }
            Some(_) => {}
        }
        let (Some(dtype), Some((begin, end)), true) = (self.dtype, self.offsets, problems.is_empty()) else {
            return Err(format!("tensor `{name}`: {}", problems.join("; ")));
        };
        let bits = self.shape.iter().try_fold(dtype.bitsize(), |acc, &d| acc.checked_mul(d));
        match bits {
            None => return Err(format!("tensor `{name}`: shape {:?} is too large", self.shape)),
            Some(bits) if bits % 8 != 0 => {
                return Err(format!("tensor `{name}`: shape {:?} of {dtype} does not fill a whole number of bytes", self.shape))
            }
            Some(bits) if bits / 8 != end - begin => {
                return Err(format!(
                    "tensor `{name}`: shape {:?} of {dtype} needs {} bytes but data_offsets [{begin}, {end}] hold {}",
                    self.shape,
                    bits / 8,
                    end - begin
                ))
            }
            Some(_) => {}
        }
        Ok(Entry { name: self.name, info: TensorInfo { dtype, shape: self.shape, data_offsets: (begin, end) } })
    }
}

/// Reads the header's JSON in one streaming pass, checking each tensor as soon as it is read
/// ([`RawEntry::check`]): nothing is kept but the name, dtype, at most [`MAX_RANK`] dimensions and
/// offsets of each valid tensor; unknown fields and `__metadata__` are checked and skipped without
/// being stored. Nesting is bounded by serde_json's recursion limit (128). Returns the valid
/// tensors in header order and how many were left out (their problems are in `problems`); a
/// document that is not a table of tensors is an error by itself.
fn scan_header(text: &str, data_len: usize, problems: &mut Problems) -> std::result::Result<(Vec<Entry>, usize), Vec<String>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut left_out = 0;
    let entries = HeaderSeed { data_len, problems, left_out: &mut left_out }
        .deserialize(&mut de)
        .and_then(|entries| de.end().map(|()| entries))
        .map_err(|e| vec![format!("the header is not valid safetensors JSON: {e}")])?;
    Ok((entries, left_out))
}

/// The whole header: a map of tensor names to entries.
struct HeaderSeed<'p> {
    data_len: usize,
    problems: &'p mut Problems,
    left_out: &'p mut usize,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Vec<Entry>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object mapping tensor names to {\"dtype\", \"shape\", \"data_offsets\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                if !map.next_value_seed(MetadataSeed)? {
                    self.problems.add(|| "`__metadata__` must map strings to strings".into());
                }
                continue;
            }
            match map.next_value_seed(EntrySeed { name })?.check(self.data_len) {
                Ok(entry) => entries.push(entry),
                Err(problem) => {
                    self.problems.add(|| problem);
                    *self.left_out += 1;
                }
            }
        }
        Ok(entries)
    }
}

/// `__metadata__`: true when it is a map of strings to strings; read without storing anything.
struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<bool, A::Error> {
        let mut ok = true;
        while map.next_key::<IgnoredAny>()?.is_some() {
            ok &= map.next_value_seed(IsString)?;
        }
        Ok(ok)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> std::result::Result<bool, E> {
        Ok(false)
    }
}

/// True for a string, false for any other value (skipped without being stored).
struct IsString;

impl<'de> DeserializeSeed<'de> for IsString {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IsString {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<bool, E> {
        Ok(true)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> std::result::Result<bool, E> {
        Ok(false)
    }
}

/// One tensor entry `{"dtype", "shape", "data_offsets"}`; other fields are skipped, as the
/// reference implementation does.
struct EntrySeed {
    name: String,
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = RawEntry;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<RawEntry, D::Error> {
        d.deserialize_map(self)
    }
}

/// The fields of a tensor entry.
enum Field {
    Dtype,
    Shape,
    Offsets,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Field, E> {
                Ok(match s {
                    "dtype" => Field::Dtype,
                    "shape" => Field::Shape,
                    "data_offsets" => Field::Offsets,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = RawEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "tensor `{}` to be an object with dtype, shape and data_offsets", shown(&self.name))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawEntry, A::Error> {
        let mut e = RawEntry { name: self.name, dtype: None, shape: Vec::new(), rank: 0, offsets: None, problems: Vec::new() };
        let (mut seen_dtype, mut seen_shape) = (false, false);
        let in_field = |name: &str, field: &str, err: A::Error| -> A::Error {
            de::Error::custom(format_args!("tensor `{}`, field `{field}`: {err}", shown(name)))
        };
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Dtype => {
                    let dtype = map.next_value_seed(DtypeSeed).map_err(|err| in_field(&e.name, "dtype", err))?;
                    match dtype {
                        Ok(d) => e.dtype = Some(d),
                        Err(unknown) => e.problems.push(format!("unknown dtype `{}`", shown(&unknown))),
                    }
                    if std::mem::replace(&mut seen_dtype, true) {
                        e.problems.push("`dtype` is given twice".into());
                    }
                }
                Field::Shape => {
                    let (shape, rank) = map.next_value_seed(ShapeSeed).map_err(|err| in_field(&e.name, "shape", err))?;
                    (e.shape, e.rank) = (shape, rank);
                    if std::mem::replace(&mut seen_shape, true) {
                        e.problems.push("`shape` is given twice".into());
                    }
                }
                Field::Offsets => {
                    let o = map.next_value_seed(OffsetsSeed).map_err(|err| in_field(&e.name, "data_offsets", err))?;
                    if e.offsets.replace(o).is_some() {
                        e.problems.push("`data_offsets` is given twice".into());
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_shape {
            e.problems.push("missing `shape`".into());
        }
        Ok(e)
    }
}

/// A dtype name: the crate's `Dtype`, or the unknown name.
struct DtypeSeed;

impl<'de> DeserializeSeed<'de> for DtypeSeed {
    type Value = std::result::Result<Dtype, String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for DtypeSeed {
    type Value = std::result::Result<Dtype, String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a dtype name such as \"F32\"")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
        use serde::de::IntoDeserializer;
        let d: de::value::StrDeserializer<'_, de::value::Error> = s.into_deserializer();
        Ok(<Dtype as de::Deserialize>::deserialize(d).map_err(|_| s.chars().take(MAX_SHOWN_NAME + 1).collect()))
    }
}

/// A shape: its first [`MAX_RANK`] dimensions and how many it lists.
struct ShapeSeed;

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = (Vec<usize>, usize);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed {
    type Value = (Vec<usize>, usize);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of non-negative integers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut dims = Vec::new();
        let mut rank = 0usize;
        while let Some(d) = seq.next_element::<u64>()? {
            if rank < MAX_RANK {
                dims.push(
                    usize::try_from(d).map_err(|_| de::Error::custom(format_args!("dimension {d} does not fit this machine's usize")))?,
                );
            }
            rank += 1;
        }
        Ok((dims, rank))
    }
}

/// `data_offsets`: exactly two non-negative integers.
struct OffsetsSeed;

impl<'de> DeserializeSeed<'de> for OffsetsSeed {
    type Value = (usize, usize);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for OffsetsSeed {
    type Value = (usize, usize);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("two non-negative integers [begin, end]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut next = |i| -> std::result::Result<usize, A::Error> {
            let v: u64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
            usize::try_from(v).map_err(|_| de::Error::custom(format_args!("offset {v} does not fit this machine's usize")))
        };
        let (begin, end) = (next(0)?, next(1)?);
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        Ok((begin, end))
    }
}

/// `name` for a message: long names are shortened.
fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() <= MAX_SHOWN_NAME {
        return name.into();
    }
    let cut = (0..=MAX_SHOWN_NAME / 2).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes)", &name[..cut], name.len()).into()
}

/// The problems found in a file, one sentence each: the first [`MAX_PROBLEMS`] are kept, the rest
/// only counted, so a header of a million bad tensors costs no more than one of fifty.
#[derive(Debug, Default)]
struct Problems {
    list: Vec<String>,
    more: usize,
}

impl Problems {
    /// Adds a problem; `problem` is not even formatted once the list is full.
    fn add(&mut self, problem: impl FnOnce() -> String) {
        if self.is_full() {
            self.more += 1;
        } else {
            self.list.push(problem());
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// True once further problems are only counted.
    fn is_full(&self) -> bool {
        self.list.len() >= MAX_PROBLEMS
    }

    /// The problems kept, and a last line counting the others.
    fn into_vec(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list.push(format!("... and {} more problems", self.more));
        }
        self.list
    }
}

/// An [`Error::WeightFile`] (lists of many problems come from [`Problems::into_vec`]).
fn bad_file(path: &Path, problems: Vec<String>) -> Error {
    Error::WeightFile { path: path.to_path_buf(), problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_sizes_offsets_overlaps_and_coverage() {
        let ok = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert_eq!(check_header(ok, 8).map(|e| e.len()), Ok(1));
        let past = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(check_header(past, 4).unwrap_err()[0].contains("past the data section"));
        let trailing = check_header(past, 12).unwrap_err();
        assert!(trailing[0].contains("4 bytes of trailing data"), "{trailing:?}");
        let huge = br#"{"a":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,8]}}"#;
        assert!(check_header(huge, 8).unwrap_err()[0].contains("too large"));
        let overlap = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        assert!(check_header(overlap, 12).unwrap_err()[0].contains("overlap"));
        let gap = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
        assert!(check_header(gap, 12).unwrap_err()[0].contains("bytes 4..8 of the data section belong to no tensor"));
        let twice = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let err = check_header(twice, 4).unwrap_err();
        assert!(err.iter().any(|p| p.contains("`a` is listed 2 times")), "{err:?}");
        let wrong = br#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]},"b":{"dtype":"Q7","shape":[1],"data_offsets":[8,9]}}"#;
        assert_eq!(check_header(wrong, 9).unwrap_err().len(), 2);
        assert!(check_header(b"[1, 2]", 0).is_err());
        assert!(check_header(b"\xff\xfe", 0).is_err());
        let deep = format!(r#"{{"a":{{"dtype":"F32","shape":[],"data_offsets":[0,4],"x":{}}}}}"#, "[".repeat(10_000));
        assert!(check_header(deep.as_bytes(), 4).is_err());
        let rank = format!(r#"{{"a":{{"dtype":"F32","shape":[{}1],"data_offsets":[0,4]}}}}"#, "1,".repeat(100));
        assert!(check_header(rank.as_bytes(), 4).unwrap_err()[0].contains("101 dimensions"));
    }

    #[test]
    fn f16_and_bf16_widen_exactly() {
        for (h, f) in [
            (0x3c00, 1.0f32),
            (0xc000, -2.0),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0x0000, 0.0),
            (0x8000, -0.0),
            (0x3555, 0.333_251_95),
        ] {
            assert_eq!(f16_to_f32(h), f, "{h:#06x}");
        }
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn temporaries_are_recognised_by_their_name() {
        let name = std::ffi::OsStr::new("w.safetensors");
        let yes = |f: &str| is_temporary_of(std::ffi::OsStr::new(f), name);
        assert!(yes(".w.safetensors.1234-1f3a0.modelc-tmp"));
        assert!(!yes("w.safetensors"));
        assert!(!yes(".w.safetensors.tmp"));
        assert!(!yes(".x.safetensors.1234-1.modelc-tmp"));
        assert!(!yes(".w.safetensors.abc-1.modelc-tmp"));
        assert!(!yes(".w.safetensors.other.1234-1.modelc-tmp"));
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        let long = "é".repeat(1000);
        let s = shown(&long);
        assert!(s.len() < 100 && s.ends_with("(2000 bytes)"), "{s}");
        assert_eq!(shown("dense/kernel"), "dense/kernel");
    }
}
