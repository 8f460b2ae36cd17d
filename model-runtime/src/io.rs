//! Weight files: a model's parameters to and from safetensors, with Keras names and layouts.
//!
//! The format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header length
//! `n`, `n` bytes of JSON mapping each tensor name to `{"dtype", "shape", "data_offsets"}` (plus an
//! optional `"__metadata__"` map of strings), then the raw little-endian data. Tensors are named by
//! `ParamSpec::name` (`dense_1/kernel`) and stored in Keras layout (`[in, out]` for a Dense kernel)
//! as `F32`. The header is parsed by hand here, defensively: every size is checked against the
//! file's length before anything is allocated, and a malformed file is an error, never a panic.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{nearest_names, Error, Result};
use crate::network::Network;

/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;
/// Deepest JSON nesting accepted in a header (a valid one needs 3).
const MAX_DEPTH: usize = 16;

/// Writes every parameter of `model` to `path` in safetensors, crash-safely: the data goes to
/// `<path>.tmp` in the same directory, is flushed to disk, then renamed over `path`, so `path`
/// holds either the old file or the complete new one. (Two concurrent saves to one path share
/// the temporary name; don't do that.)
pub fn save<N: Network>(model: &N, path: impl AsRef<Path>) -> Result<()> {
    let params = &model.state().params;
    let mut header = String::from("{\"__metadata__\":{\"format\":\"modelc\",\"model\":");
    push_json_string(&mut header, N::NAME);
    header.push('}');
    let mut offset = 0usize;
    for spec in N::PARAMS {
        let bytes = spec.len() * 4;
        header.push(',');
        push_json_string(&mut header, spec.name);
        header.push_str(":{\"dtype\":\"F32\",\"shape\":[");
        let dims: Vec<String> = spec.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&dims.join(","));
        header.push_str(&format!("],\"data_offsets\":[{},{}]}}", offset, offset + bytes));
        offset += bytes;
    }
    header.push('}');
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    write_atomic_with(path.as_ref(), |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for spec in N::PARAMS {
            let values = params.get(spec.range()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("parameter `{}` lies outside the parameter buffer", spec.name))
            })?;
            for v in values {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Loads every parameter of `model` from the safetensors file at `path`, written by [`save`] or by
/// any tool using the same names and layouts. Nothing is changed unless the whole file is valid:
/// every parameter present with its exact shape as `F32`, no unknown tensor, sound offsets. All
/// problems found are reported together in one [`Error::WeightFile`].
pub fn load<N: Network>(model: &mut N, path: impl AsRef<Path>) -> Result<()> {
    load_with(model, path, |name| Some((name.to_string(), false)))
}

/// [`load`] for files whose tensor names or layouts differ: `map` receives each name in the file
/// and returns the model parameter it fills and whether to transpose it (2-D only), or `None`
/// to skip that tensor. For a PyTorch `nn.Linear`, `fc1.weight` (`[out, in]`) maps to
/// `Some(("dense/kernel".into(), true))` and `fc1.bias` to `Some(("dense/bias".into(), false))`.
pub fn load_with<N: Network>(model: &mut N, path: impl AsRef<Path>, map: impl Fn(&str) -> Option<(String, bool)>) -> Result<()> {
    let path = path.as_ref();
    let bad = |problems: Vec<String>| Error::WeightFile { path: path.to_path_buf(), problems };
    let (mut file, entries, header_len, data_len) = open_checked(path)?;

    // Match the file's tensors with the model's parameters.
    let mut problems = Vec::new();
    let mut assigned: Vec<Option<(usize, bool)>> = vec![None; N::PARAMS.len()];
    for (e, entry) in entries.iter().enumerate() {
        let Some((target, transpose)) = map(&entry.name) else {
            continue;
        };
        let shown = if target == entry.name { format!("`{}`", entry.name) } else { format!("`{}` (as `{target}`)", entry.name) };
        let Some(p) = N::PARAMS.iter().position(|s| s.name == target) else {
            let near = nearest_names(&target, N::PARAMS.iter().map(|s| s.name), 3);
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", near.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            };
            problems.push(format!("unknown tensor {shown}: model `{}` has no such parameter{hint}", N::NAME));
            continue;
        };
        if let Some((other, _)) = assigned[p] {
            problems.push(format!("tensors `{}` and `{}` both fill parameter `{target}`", entries[other].name, entry.name));
            continue;
        }
        let spec = &N::PARAMS[p];
        if entry.dtype != "F32" {
            problems.push(format!("tensor {shown}: dtype {}, expected F32", entry.dtype));
        }
        let shape: Vec<usize> = match (transpose, entry.shape.as_slice()) {
            (false, s) => s.to_vec(),
            (true, &[a, b]) => vec![b, a],
            (true, s) => {
                problems.push(format!("tensor {shown}: cannot transpose a tensor of shape {s:?}; only 2-D tensors can be"));
                s.to_vec()
            }
        };
        if shape != spec.shape {
            let how = if transpose { " after transposing" } else { "" };
            problems.push(format!("tensor {shown}: shape {shape:?}{how}, expected {:?}", spec.shape));
        }
        assigned[p] = Some((e, transpose));
    }
    for (spec, a) in N::PARAMS.iter().zip(&assigned) {
        if a.is_none() {
            problems.push(format!("missing parameter `{}` {:?}", spec.name, spec.shape));
        }
    }
    if !problems.is_empty() {
        return Err(bad(problems));
    }

    // Everything checks out: read the data section (its size is bounded by the file's) and fill
    // a copy of the parameters, swapped in only once complete.
    let mut data = vec![0u8; data_len as usize];
    file.seek(SeekFrom::Start(8 + header_len)).and_then(|_| file.read_exact(&mut data)).map_err(|e| Error::io(path, e))?;
    let mut params = model.state().params.clone();
    for (spec, a) in N::PARAMS.iter().zip(&assigned) {
        let Some((e, transpose)) = *a else { continue };
        let entry = &entries[e];
        let bytes = &data[entry.begin..entry.end];
        let dst = params
            .get_mut(spec.range())
            .ok_or_else(|| bad(vec![format!("parameter `{}` lies outside the model's parameter buffer", spec.name)]))?;
        let values = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        match (transpose, entry.shape.as_slice()) {
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
    model.state_mut().params = params;
    Ok(())
}

/// Opens a safetensors file and checks its header against the file's size before allocating
/// anything; returns the file, its entries, the header length and the data section length.
fn open_checked(path: &Path) -> Result<(File, Vec<Entry>, u64, u64)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let bad = |problems: Vec<String>| Error::WeightFile { path: path.to_path_buf(), problems };
    if file_len < 8 {
        return Err(bad(vec![format!("the file is {file_len} bytes long, too short to hold the 8-byte header length (truncated?)")]));
    }
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|e| Error::io(path, e))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > file_len - 8 {
        return Err(bad(vec![format!(
            "the header claims {header_len} bytes but only {} follow the length prefix (truncated or not a safetensors file)",
            file_len - 8
        )]));
    }
    if header_len > MAX_HEADER {
        return Err(bad(vec![format!("the header claims {header_len} bytes, more than the {MAX_HEADER} accepted")]));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let data_len = file_len - 8 - header_len;
    let entries = parse_header(&header, data_len).map_err(bad)?;
    Ok((file, entries, header_len, data_len))
}

/// Every tensor of a safetensors file, by name, as `f32` arrays in the file's shapes: for
/// inspecting a weights file or reading reference fixtures. Accepts `F32` tensors only (anything
/// else is reported, like every other problem, in one [`Error::WeightFile`]).
pub fn read_tensors(path: impl AsRef<Path>) -> Result<std::collections::BTreeMap<String, ndarray::ArrayD<f32>>> {
    let path = path.as_ref();
    let bad = |problems: Vec<String>| Error::WeightFile { path: path.to_path_buf(), problems };
    let (mut file, entries, header_len, data_len) = open_checked(path)?;
    let problems: Vec<String> =
        entries.iter().filter(|e| e.dtype != "F32").map(|e| format!("tensor `{}`: dtype {}, expected F32", e.name, e.dtype)).collect();
    if !problems.is_empty() {
        return Err(bad(problems));
    }
    let mut data = vec![0u8; data_len as usize];
    file.seek(SeekFrom::Start(8 + header_len)).and_then(|_| file.read_exact(&mut data)).map_err(|e| Error::io(path, e))?;
    let mut out = std::collections::BTreeMap::new();
    for e in entries {
        let values: Vec<f32> = data[e.begin..e.end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&e.shape), values)
            .map_err(|err| bad(vec![format!("tensor `{}`: {err}", e.name)]))?;
        out.insert(e.name, array);
    }
    Ok(out)
}

/// One tensor of a safetensors header, already checked for internal consistency.
#[derive(Debug)]
struct Entry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// Bytes per element of a safetensors dtype.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" | "C64" => 8,
        _ => return None,
    })
}

/// Parses and checks a header against a data section of `data_len` bytes: every entry well
/// formed, sizes consistent with shapes and dtypes, offsets inside the data, no overlaps.
fn parse_header(bytes: &[u8], data_len: u64) -> std::result::Result<Vec<Entry>, Vec<String>> {
    let text = std::str::from_utf8(bytes).map_err(|e| vec![format!("the header is not UTF-8 (byte {})", e.valid_up_to())])?;
    let json = Json::parse(text).map_err(|e| vec![format!("the header is not valid JSON: {e}")])?;
    let Json::Obj(fields) = json else {
        return Err(vec!["the header is not a JSON object".to_string()]);
    };
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(n, _)| n == name) {
            problems.push(format!("tensor `{name}` is listed twice"));
            continue;
        }
        if name == "__metadata__" {
            let ok = matches!(value, Json::Obj(m) if m.iter().all(|(_, v)| matches!(v, Json::Str(_))));
            if !ok {
                problems.push("`__metadata__` must map strings to strings".to_string());
            }
            continue;
        }
        match parse_entry(name, value, data_len) {
            Ok(e) => entries.push(e),
            Err(p) => problems.push(p),
        }
    }
    // Offsets: no two tensors may share bytes.
    let mut spans: Vec<(usize, usize, &str)> =
        entries.iter().filter(|e| e.begin < e.end).map(|e| (e.begin, e.end, e.name.as_str())).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            problems.push(format!(
                "tensors `{}` (bytes {}..{}) and `{}` (bytes {}..{}) overlap",
                w[0].2, w[0].0, w[0].1, w[1].2, w[1].0, w[1].1
            ));
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

fn parse_entry(name: &str, value: &Json, data_len: u64) -> std::result::Result<Entry, String> {
    let Json::Obj(fields) = value else {
        return Err(format!("tensor `{name}`: expected an object with dtype, shape and data_offsets"));
    };
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let dtype = match get("dtype") {
        Some(Json::Str(s)) => s.clone(),
        _ => return Err(format!("tensor `{name}`: missing or non-string `dtype`")),
    };
    let shape = match get("shape") {
        Some(Json::Arr(dims)) => dims
            .iter()
            .map(Json::as_usize)
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format!("tensor `{name}`: `shape` must hold non-negative integers"))?,
        _ => return Err(format!("tensor `{name}`: missing or non-array `shape`")),
    };
    let (begin, end) = match get("data_offsets") {
        Some(Json::Arr(o)) if o.len() == 2 => match (o[0].as_usize(), o[1].as_usize()) {
            (Some(b), Some(e)) => (b, e),
            _ => return Err(format!("tensor `{name}`: `data_offsets` must be two non-negative integers")),
        },
        _ => return Err(format!("tensor `{name}`: missing `data_offsets` [begin, end]")),
    };
    if begin > end {
        return Err(format!("tensor `{name}`: data_offsets [{begin}, {end}] run backwards"));
    }
    if end as u64 > data_len {
        return Err(format!("tensor `{name}`: data_offsets [{begin}, {end}] run past the data section ({data_len} bytes; truncated?)"));
    }
    let size = dtype_size(&dtype).ok_or_else(|| format!("tensor `{name}`: unknown dtype `{dtype}`"))?;
    let expected = shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}`: shape {shape:?} is too large"))?;
    if expected != end - begin {
        return Err(format!(
            "tensor `{name}`: shape {shape:?} of {dtype} needs {expected} bytes but data_offsets [{begin}, {end}] hold {}",
            end - begin
        ));
    }
    Ok(Entry { name: name.to_string(), dtype, shape, begin, end })
}

/// Writes `bytes` to `path` crash-safely (see [`write_atomic_with`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes a file crash-safely: `write` fills `<path>.tmp` in the same directory, which is then
/// flushed to disk and renamed over `path`. On failure the temporary file is removed and `path`
/// is untouched.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let written = (|| -> io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Make the rename itself durable (best effort: not every platform can sync a directory).
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// `<path>.tmp`, next to `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON value; numbers keep their text so integer offsets are read exactly.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The value as a non-negative integer that fits `usize`.
    fn as_usize(&self) -> Option<usize> {
        match self {
            Json::Num(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            _ => None,
        }
    }

    /// Parses a complete document (trailing whitespace allowed, nothing else).
    fn parse(text: &str) -> std::result::Result<Json, String> {
        let mut p = JsonParser { s: text.as_bytes(), pos: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(format!("unexpected data at byte {}", p.pos));
        }
        Ok(v)
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> std::result::Result<T, String> {
        Err(format!("{what} at byte {}", self.pos))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Json, String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.s.get(self.pos) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.pos += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.s.get(self.pos) != Some(&b'"') {
                        return self.err("expected a string key");
                    }
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return self.err("expected ':'");
                    }
                    let v = self.value(depth + 1)?;
                    fields.push((key, v));
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Json::Obj(fields));
                    }
                    return self.err("expected ',' or '}'");
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    return self.err("expected ',' or ']'");
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.pos) {
                    self.pos += 1;
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                if text.parse::<f64>().is_err() {
                    self.pos = start;
                    return self.err("invalid number");
                }
                Ok(Json::Num(text))
            }
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) => self.err("unexpected character"),
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> std::result::Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Input is valid UTF-8 and we stopped on ASCII, so this slice is valid UTF-8.
            out.push_str(&String::from_utf8_lossy(&self.s[start..self.pos]));
            match self.s.get(self.pos) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.s.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("invalid surrogate pair");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                            continue;
                        }
                        _ => return self.err("invalid escape"),
                    };
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return self.err("control character in string"),
            }
        }
    }

    fn hex4(&mut self) -> std::result::Result<u32, String> {
        let digits = self.s.get(self.pos..self.pos + 4);
        let v = digits.and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u32::from_str_radix(d, 16).ok());
        match v {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => self.err("invalid \\u escape"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parses_headers_and_rejects_garbage() {
        let v = Json::parse(r#" {"a": {"dtype": "F32", "shape": [2, 3], "x": [true, null, -1.5e3]}, "b\u00e9\"": "\ud83d\ude00"}  "#);
        let Ok(Json::Obj(fields)) = v else { panic!("{v:?}") };
        assert_eq!(fields[1].0, "bé\"");
        assert_eq!(fields[1].1, Json::Str("😀".into()));
        for bad in ["", "{", "{\"a\":}", "[1,]", "{\"a\":1} x", "nul", "\"abc", "{1:2}", "--1"] {
            assert!(Json::parse(bad).is_err(), "{bad:?} accepted");
        }
        let deep = "[".repeat(10_000);
        assert!(Json::parse(&deep).is_err());
    }

    #[test]
    fn header_checks_sizes_offsets_and_overlaps() {
        let ok = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert_eq!(parse_header(ok, 8).map(|e| e.len()), Ok(1));
        let past = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(parse_header(past, 4).unwrap_err()[0].contains("past the data section"));
        let huge = br#"{"a":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,8]}}"#;
        assert!(parse_header(huge, 8).unwrap_err()[0].contains("too large"));
        let overlap = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        assert!(parse_header(overlap, 12).unwrap_err()[0].contains("overlap"));
        let wrong = br#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]},"b":{"dtype":"Q7","shape":[1],"data_offsets":[8,9]}}"#;
        assert_eq!(parse_header(wrong, 9).unwrap_err().len(), 2);
        assert!(parse_header(b"[1, 2]", 0).is_err());
        assert!(parse_header(b"\xff\xfe", 0).is_err());
    }

    #[test]
    fn tmp_path_sits_next_to_the_target() {
        assert_eq!(tmp_path(Path::new("dir/w.safetensors")), PathBuf::from("dir/w.safetensors.tmp"));
    }
}
