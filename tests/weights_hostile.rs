//! Hostile weight files: the committed corpus of `tests/fixtures/hostile/` (written by its `generate.py`),
//! sparse files declaring tens of gigabytes, and headers built to cost time or memory (99 MB of numbers,
//! 1.4 million tiny tensors, 200,000 keys). Every one must give an `Err` with a message saying what is
//! wrong, never a panic or an abort, and the loader's time and memory must stay linear in the header's
//! size with a small constant: the large cases are loaded in a child process that reports its own peak
//! memory (Linux `VmHWM`, reset through `/proc/self/clear_refs`).

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modelc::io::{read_typed_tensors, Tensor};
use modelc::prelude::*;

model! {
    struct Net {
        input x: [4];
        let h = Dense(3, activation = relu)(x);
        output y = Dense(2)(h);
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modelc-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

/// What `read_typed_tensors` must answer for a corpus file.
enum Read {
    /// An error containing this text.
    Err(&'static str),
    /// The file is valid: these tensor names, in order.
    Ok(&'static [&'static str]),
}

/// Every file of the corpus: its name, a text `Net::load`'s error must contain, and what
/// `read_typed_tensors` must answer. Where both reject the file for the same reason the texts agree.
const CORPUS: &[(&str, &str, Read)] = &[
    ("empty", "0 bytes long, too short", Read::Err("too short")),
    ("seven_bytes", "7 bytes long, too short", Read::Err("too short")),
    ("header_len_2_pow_63", "the header claims 9223372036854775808 bytes", Read::Err("header claims")),
    ("header_len_u64_max", "the header claims 18446744073709551615 bytes", Read::Err("header claims")),
    ("header_len_past_end", "the header claims 100 bytes but only 10 follow", Read::Err("header claims")),
    ("header_len_zero", "not valid safetensors JSON: EOF while parsing", Read::Err("EOF while parsing")),
    ("not_json", "not valid safetensors JSON: expected value at line 1 column 1", Read::Err("expected value")),
    ("not_utf8", "the header is not UTF-8 (byte 0)", Read::Err("not UTF-8")),
    ("json_array", "invalid type: sequence, expected a JSON object mapping tensor names", Read::Err("invalid type: sequence")),
    ("json_string", "invalid type: string \"weights\", expected a JSON object", Read::Err("invalid type: string")),
    ("json_null", "invalid type: null, expected a JSON object", Read::Err("invalid type: null")),
    ("json_cut_short", "EOF while parsing", Read::Err("EOF while parsing")),
    ("json_trailing_garbage", "trailing characters at line 1 column 4", Read::Err("trailing characters")),
    ("json_nan_literal", "field `shape`: expected value", Read::Err("field `shape`")),
    ("utf8_bom", "expected value at line 1 column 1", Read::Err("expected value")),
    // serde_json skips an unknown field iteratively, whatever its depth: a valid file.
    ("deep_nesting_in_unknown_field", "unknown tensor `a`", Read::Ok(&["a"])),
    ("deep_nesting_top", "invalid type: sequence", Read::Err("invalid type: sequence")),
    ("deep_nesting_metadata", "`__metadata__` must map strings to strings", Read::Err("`__metadata__`")),
    ("entry_is_a_number", "invalid type: integer `5`, expected tensor `dense/kernel` to be an object", Read::Err("to be an object")),
    ("entry_is_an_array", "invalid type: sequence, expected tensor `dense/kernel` to be an object", Read::Err("to be an object")),
    ("missing_dtype", "tensor `a`: missing `dtype`", Read::Err("missing `dtype`")),
    ("missing_shape", "tensor `a`: missing `shape`", Read::Err("missing `shape`")),
    ("missing_offsets", "tensor `a`: missing `data_offsets` [begin, end]", Read::Err("missing `data_offsets`")),
    ("unknown_dtype", "tensor `a`: unknown dtype `Q7`", Read::Err("unknown dtype `Q7`")),
    ("dtype_is_a_number", "tensor `a`, field `dtype`: invalid type: integer `32`", Read::Err("field `dtype`")),
    ("dtype_lowercase", "tensor `a`: unknown dtype `f32`", Read::Err("unknown dtype `f32`")),
    ("dtype_given_twice", "tensor `a`: `dtype` is given twice", Read::Err("given twice")),
    ("shape_negative", "tensor `a`, field `shape`: invalid value: integer `-1`", Read::Err("field `shape`")),
    ("shape_fractional", "tensor `a`, field `shape`: invalid type: floating point `1.5`", Read::Err("field `shape`")),
    ("shape_is_a_string", "tensor `a`, field `shape`: invalid type: string \"1\"", Read::Err("field `shape`")),
    ("shape_rank_100", "tensor `a`: its shape has 100 dimensions, more than the 64 accepted", Read::Err("100 dimensions")),
    ("shape_product_overflows", "tensor `a`: shape [18446744073709551615, 4] is too large", Read::Err("too large")),
    ("shape_product_overflows_in_steps", "tensor `a`: shape [4294967296, 4294967296] is too large", Read::Err("too large")),
    ("shape_beyond_u64", "tensor `a`, field `shape`: invalid type: floating point", Read::Err("field `shape`")),
    ("size_mismatch", "tensor `a`: shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8", Read::Err("needs 12 bytes")),
    ("sub_byte_dtype_odd_count", "tensor `a`: shape [3] of F4 does not fill a whole number of bytes", Read::Err("whole number of bytes")),
    ("offsets_backwards", "tensor `a`: data_offsets [8, 0] run backwards", Read::Err("run backwards")),
    ("offsets_past_the_data", "tensor `a`: data_offsets [0, 800] run past the data section (8 bytes; truncated?)", Read::Err("truncated?")),
    (
        "offsets_three_numbers",
        "tensor `a`, field `data_offsets`: invalid length 3, expected two non-negative integers",
        Read::Err("invalid length 3"),
    ),
    ("offsets_one_number", "tensor `a`, field `data_offsets`: invalid length 1", Read::Err("invalid length 1")),
    ("offsets_beyond_u64", "tensor `a`, field `data_offsets`: invalid type: floating point", Read::Err("field `data_offsets`")),
    ("offsets_negative", "tensor `a`, field `data_offsets`: invalid value: integer `-4`", Read::Err("field `data_offsets`")),
    ("tensors_overlap", "tensors `a` (bytes 0..8) and `b` (bytes 4..12) overlap", Read::Err("overlap")),
    (
        "gap_between_tensors",
        "bytes 4..8 of the data section belong to no tensor (between tensor `a` and tensor `b`)",
        Read::Err("belong to no tensor"),
    ),
    ("trailing_data", "1000 bytes of trailing data after the last tensor (bytes 92..1092", Read::Err("trailing data")),
    ("name_listed_twice_same_bytes", "tensor `dense/kernel` is listed 2 times", Read::Err("listed 2 times")),
    ("data_cut_short", "run past the data section (50 bytes; truncated?)", Read::Err("truncated?")),
    ("metadata_not_strings", "`__metadata__` must map strings to strings", Read::Err("`__metadata__`")),
    ("metadata_is_an_array", "`__metadata__` must map strings to strings", Read::Err("`__metadata__`")),
    ("empty_table", "missing parameter `dense/kernel` [4, 3]", Read::Ok(&[])),
    (
        "wrong_shapes",
        "tensor `dense/kernel`: shape [3, 4], expected [4, 3]",
        Read::Ok(&["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]),
    ),
    (
        "extra_tensor",
        "unknown tensor `dense_2/kernel`: model `Net` has no such parameter; did you mean `dense_1/kernel`",
        Read::Ok(&["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel", "dense_2/kernel"]),
    ),
    (
        "int32_parameters",
        "tensor `dense/kernel`: dtype I32, expected F32",
        Read::Ok(&["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]),
    ),
    ("int64_beyond_int32", "unknown tensor `ids`", Read::Err("tensor `ids`: element 1: value 1099511627776 does not fit in int32")),
    ("float64_tensor", "unknown tensor `x`", Read::Err("tensor `x`: dtype F64 is not read: narrowing to f32 would round")),
    ("float8_tensor", "unknown tensor `x`", Read::Err("tensor `x`: dtype F8_E4M3 is not read")),
    ("control_characters_in_name", "unknown tensor `dense/kernel\0\n`", Read::Ok(&["dense/kernel\0\n"])),
    ("empty_name", "unknown tensor ``", Read::Ok(&[""])),
    ("long_name", "kkkkkkkkkk… (10000 bytes)`: model `Net` has no such parameter", Read::Ok(&["long"])),
];

#[test]
fn every_corpus_file_is_refused_with_a_message_that_says_why() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok()?.strip_suffix(".safetensors").map(str::to_string))
        .collect();
    let listed: BTreeSet<String> = CORPUS.iter().map(|(name, _, _)| name.to_string()).collect();
    assert_eq!(on_disk, listed, "tests/fixtures/hostile/ and CORPUS disagree");
    assert!(listed.len() >= 40);
    let mut failures = Vec::new();
    for (name, load_says, read_says) in CORPUS {
        let path = corpus_dir().join(format!("{name}.safetensors"));
        let mut m = Net::new(1);
        let before = m.params().to_vec();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.load(&path))) {
            Err(_) => failures.push(format!("{name}: load panicked")),
            Ok(Ok(())) => failures.push(format!("{name}: load accepted it")),
            Ok(Err(e)) if !e.to_string().contains(load_says) => {
                failures.push(format!("{name}: load said {e:?}\n    expected: {load_says:?}"))
            }
            Ok(Err(_)) => {}
        }
        if m.params() != &before[..] {
            failures.push(format!("{name}: a refused load changed the parameters"));
        }
        match (std::panic::catch_unwind(|| read_typed_tensors(&path)), read_says) {
            (Err(_), _) => failures.push(format!("{name}: read_typed_tensors panicked")),
            (Ok(Err(e)), Read::Err(says)) if !e.to_string().contains(says) => {
                failures.push(format!("{name}: read_typed_tensors said {e:?}\n    expected: {says:?}"))
            }
            (Ok(Ok(t)), Read::Ok(names)) => {
                let got: Vec<&str> = t.keys().map(String::as_str).collect();
                let long = names == &["long"] && got.len() == 1 && got[0].len() == 10_000;
                if got != *names && !long {
                    failures.push(format!("{name}: read_typed_tensors gave {got:?}, expected {names:?}"));
                }
            }
            (Ok(Ok(_)), Read::Err(says)) => failures.push(format!("{name}: read_typed_tensors accepted it, expected {says:?}")),
            (Ok(Err(e)), Read::Ok(_)) => failures.push(format!("{name}: read_typed_tensors refused a valid file: {e}")),
            (Ok(Err(_)), Read::Err(_)) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} files:\n{}", failures.len(), CORPUS.len(), failures.join("\n"));
}

/// `header` + `data_len` bytes of data, the data left sparse (a hole the file system does not store).
fn sparse_file(path: &Path, header: &str, data_len: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&(header.len() as u64).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.set_len(8 + header.len() as u64 + data_len)
}

const NET_HEADER: &str = r#""dense/kernel":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]},"dense/bias":{"dtype":"F32","shape":[3],"data_offsets":[48,60]},"dense_1/kernel":{"dtype":"F32","shape":[3,2],"data_offsets":[60,84]},"dense_1/bias":{"dtype":"F32","shape":[2],"data_offsets":[84,92]}"#;
const GIB: u64 = 1 << 30;

/// Runs `f` and checks it answered quickly: the sparse tails must never be read.
fn quickly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < Duration::from_secs(10), "{what} took {:?}: was the tail read?", start.elapsed());
    out
}

#[test]
fn a_sparse_64_gib_tail_after_valid_tensors_is_trailing_data() {
    let path = temp("tail.safetensors");
    sparse_file(&path, &format!("{{{NET_HEADER}}}"), 92 + 64 * GIB).unwrap();
    let err = quickly("load", || Net::new(1).load(&path)).unwrap_err().to_string();
    assert!(err.contains("68719476736 bytes of trailing data after the last tensor"), "{err}");
    let err = quickly("read", || read_typed_tensors(&path)).unwrap_err().to_string();
    assert!(err.contains("trailing data"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_sparse_64_gib_tensor_the_model_lacks_is_never_read() {
    let path = temp("junk.safetensors");
    let n = 16 * GIB; // F32 elements: 64 GiB
    let header = format!(r#"{{{NET_HEADER},"junk":{{"dtype":"F32","shape":[{n}],"data_offsets":[92,{}]}}}}"#, 92 + 4 * n);
    sparse_file(&path, &header, 92 + 4 * n).unwrap();
    let err = quickly("load", || Net::new(1).load(&path)).unwrap_err().to_string();
    assert!(err.contains("unknown tensor `junk`: model `Net` has no such parameter"), "{err}");
    // The mapping a PyTorch user would write skips it: the parameters load, the 64 GiB are not touched.
    let mut m = Net::new(1);
    quickly("load_with", || modelc::io::load_with(&mut m, &path, |name| (name != "junk").then(|| (name.to_string(), false)))).unwrap();
    assert!(m.params().iter().all(|&v| v == 0.0));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn reading_a_tensor_larger_than_memory_is_an_error_not_an_abort() {
    let path = temp("huge.safetensors");
    // 1 TiB where the file system allows so large a file (ext4, xfs, btrfs), else 64 GiB: more than
    // this machine can allocate either way (checked below), so the reservation fails cleanly.
    let mut n = 256 * GIB;
    let header = |n: u64| format!(r#"{{"huge":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#, 4 * n);
    if sparse_file(&path, &header(n), 4 * n).is_err() {
        n = 16 * GIB;
        sparse_file(&path, &header(n), 4 * n).unwrap();
    }
    let mut probe: Vec<f32> = Vec::new();
    if probe.try_reserve_exact(n as usize).is_ok() {
        eprintln!("this machine can reserve {} GiB: skipping the check that reading it fails", 4 * n / GIB);
        return;
    }
    let err = quickly("read", || read_typed_tensors(&path)).unwrap_err().to_string();
    assert!(err.contains("tensor `huge`") && err.contains("cannot be allocated"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_header_longer_than_the_limit_is_refused_before_it_is_read() {
    let path = temp("long-header.safetensors");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&150_000_000u64.to_le_bytes()).unwrap();
    f.set_len(8 + 150_000_000).unwrap();
    let err = quickly("load", || Net::new(1).load(&path)).unwrap_err().to_string();
    assert!(err.contains("the header claims 150000000 bytes, more than the 100000000 accepted"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_integer_file_reads_as_int32_and_its_floats_as_f32() {
    let path = temp("ints.safetensors");
    let header = r#"{"ids":{"dtype":"I64","shape":[2,2],"data_offsets":[0,32]},"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[32,34]},"half":{"dtype":"F16","shape":[1],"data_offsets":[34,36]},"x":{"dtype":"I32","shape":[1],"data_offsets":[36,40]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for v in [3i64, -1, 0, 2_147_483_647] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&0x3c00u16.to_le_bytes());
    bytes.extend_from_slice(&(-7i32).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let t = read_typed_tensors(&path).unwrap();
    assert_eq!(t["ids"].as_i32().unwrap().as_slice().unwrap(), [3, -1, 0, 2_147_483_647]);
    assert_eq!(t["ids"].shape(), [2, 2]);
    assert_eq!(t["mask"], Tensor::I32(modelc::ndarray::arr1(&[1, 0]).into_dyn()));
    assert_eq!(t["half"].as_f32().unwrap().as_slice().unwrap(), [1.0]);
    assert_eq!(t["x"].as_i32().unwrap().as_slice().unwrap(), [-7]);
    let err = modelc::io::read_tensors(&path).unwrap_err().to_string();
    assert!(err.contains("tensor `ids` holds integers; read it with `io::read_typed_tensors`"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

// ---- headers built to cost time or memory, loaded in a child process that measures itself ----

/// The child half of the measured cases: loads `MODELC_MEASURE` into a `Net` and prints its peak
/// memory growth and time.
#[test]
#[ignore = "run by its parent test in a child process"]
fn child_loads_and_measures() {
    let Some(path) = std::env::var_os("MODELC_MEASURE") else { return };
    let status = |key: &str| -> u64 {
        let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return 0 };
        let line = s.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    // Reset the peak to the current size, then load (Linux only; elsewhere only the time is checked).
    if cfg!(target_os = "linux") {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
    }
    let base = status("VmRSS:");
    let start = Instant::now();
    let result = Net::new(1).load(&path);
    let secs = start.elapsed().as_secs_f64();
    let peak = status("VmHWM:");
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    println!("MEASURED growth={} secs={secs} message={message:?}", peak.saturating_sub(base));
}

/// Loads `path` in a child process: (peak memory growth in bytes, seconds, error message).
fn measure(path: &Path) -> (u64, f64, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_loads_and_measures", "--ignored", "--nocapture", "--test-threads=1"])
        .env("MODELC_MEASURE", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("MEASURED ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("the child reported nothing ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    let field = |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k)).unwrap().to_string();
    let message = line.split_once("message=").unwrap().1.to_string();
    (field("growth=").parse().unwrap(), field("secs=").parse().unwrap(), message)
}

/// Writes a header made of `head`, then `count` repetitions of `item(i)` separated by commas, then
/// `tail`, followed by `data_len` zero bytes; returns the header's length.
fn big_header(path: &Path, head: &str, count: usize, item: impl Fn(usize) -> String, tail: &str, data_len: usize) -> usize {
    let mut header = Vec::with_capacity(100_000_000);
    header.extend_from_slice(head.as_bytes());
    for i in 0..count {
        if i > 0 {
            header.push(b',');
        }
        header.extend_from_slice(item(i).as_bytes());
    }
    header.extend_from_slice(tail.as_bytes());
    let mut f = BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&header).unwrap();
    f.write_all(&vec![0; data_len]).unwrap();
    f.flush().unwrap();
    header.len()
}

/// Checks a measured load: an error containing `says`, memory under `factor` times the header plus
/// 32 MiB, and a time bound far above the expected (a robustness bound, not a benchmark).
fn check_measured(what: &str, path: &Path, header_len: usize, factor: u64, says: &str) {
    let (growth, secs, message) = measure(path);
    eprintln!("{what}: header {:.1} MB, peak memory growth {:.1} MB, {secs:.2} s", header_len as f64 / 1e6, growth as f64 / 1e6);
    assert!(message.contains(says), "{what}: {message}");
    if cfg!(target_os = "linux") {
        let bound = factor * header_len as u64 + 32 * (1 << 20);
        assert!(growth < bound, "{what}: peak memory grew by {growth} bytes, more than {bound}");
    }
    assert!(secs < 30.0, "{what}: took {secs} s");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_99_mb_header_of_numbers_costs_linear_time_and_little_memory() {
    let path = temp("numbers-in-shape.safetensors");
    let head = r#"{"dense/kernel":{"dtype":"F32","shape":["#;
    let len = big_header(&path, head, 49_000_000, |_| "1".into(), r#"],"data_offsets":[0,4]}}"#, 4);
    check_measured("99 MB shape", &path, len, 2, "its shape has 49000000 dimensions, more than the 64 accepted");

    let path = temp("numbers-in-field.safetensors");
    let head = r#"{"dense/kernel":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":["#;
    let len = big_header(&path, head, 49_000_000, |_| "1".into(), "]}}", 4);
    check_measured("99 MB unknown field", &path, len, 2, "shape [1], expected [4, 3]");
}

#[test]
fn a_99_mb_header_of_tiny_tensors_costs_linear_time_and_memory() {
    let path = temp("tiny.safetensors");
    let n = 1_400_000;
    let item = |i: usize| format!(r#""{i}":{{"dtype":"F32","shape":[],"data_offsets":[{},{}]}}"#, 4 * i, 4 * i + 4);
    let len = big_header(&path, "{", n, item, "}", 4 * n);
    check_measured("1.4M tensors", &path, len, 5, "and 1399954 more problems");
}

#[test]
fn a_header_of_200_000_keys_loads_in_linear_time() {
    let path = temp("keys.safetensors");
    let n = 200_000;
    let item = |i: usize| format!(r#""t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}}"#, 4 * i, 4 * i + 4);
    let len = big_header(&path, "{", n, item, "}", 4 * n);
    check_measured("200,000 keys", &path, len, 5, "unknown tensor `t0`");
    // Still a valid file: it reads, every tensor.
    big_header(&path, "{", n, item, "}", 4 * n);
    let start = Instant::now();
    let all = read_typed_tensors(&path).unwrap();
    eprintln!("200,000 keys: read_typed_tensors in {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(all.len(), n);
    std::fs::remove_file(&path).unwrap();
}
