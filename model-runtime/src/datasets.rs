//! Datasets for examples and tests: the UCI 8×8 digits and two time series shipped in `data/`, MNIST IDX
//! files, one-hot labels, sliding windows over a series.
//!
//! Loaders take a path and return arrays in the layout generated models expect (batch first,
//! channels-last images, `f32` pixels scaled to `0.0..=1.0`). A missing or malformed file is an
//! [`Error::Dataset`] naming the file and the line or byte offset at fault, never a panic.

use std::io::Read;
use std::path::Path;

use ndarray::{Array2, Array3, Array4};

use crate::{Error, Result};

/// Side of a digits image, in pixels.
const DIGITS_SIDE: usize = 8;
/// Pixels per digits image.
const DIGITS_PIXELS: usize = DIGITS_SIDE * DIGITS_SIDE;
/// Largest pixel value of the digits set (the count of "on" pixels in a 4×4 block).
const DIGITS_MAX_PIXEL: f32 = 16.0;
/// Magic number of an IDX file of unsigned bytes with 3 dimensions (MNIST images).
const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (MNIST labels).
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The UCI "Optical Recognition of Handwritten Digits" set as loaded by [`load_digits`].
#[derive(Debug, Clone)]
pub struct Digits {
    /// The images, `[n, 8, 8, 1]` (channels-last), pixel values divided by 16 so they lie in `0.0..=1.0`.
    pub images: Array4<f32>,
    /// The digit shown by each image, `0..=9`, one per image.
    pub labels: Vec<u8>,
}

impl Digits {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples (never the case for a set returned by [`load_digits`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Loads the 8×8 digits set from a CSV file, gzip-compressed (as shipped in
/// `data/digits/digits.csv.gz`) or plain.
///
/// Each non-blank line holds 65 comma-separated numbers: 64 pixel values in `0..=16`, row-major,
/// then the label in `0..=9`.
///
/// # Errors
/// [`Error::Dataset`] when the file cannot be read, is not valid gzip or UTF-8, holds no sample, or a
/// line has a value that is not a number, the wrong number of columns, a pixel outside `0..=16` or a
/// label outside `0..=9` (the message names the line and column).
pub fn load_digits(path: impl AsRef<Path>) -> Result<Digits> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| dataset_error(path, format!("not a UTF-8 text file (invalid byte at offset {})", e.utf8_error().valid_up_to())))?;
    parse_digits_csv(&text).map_err(|message| dataset_error(path, message))
}

/// Parses the text of a digits CSV; errors are messages naming the line.
fn parse_digits_csv(text: &str) -> std::result::Result<Digits, String> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != DIGITS_PIXELS + 1 {
            return Err(format!(
                "line {line_no}: expected {} comma-separated values (64 pixels then the label), found {}",
                DIGITS_PIXELS + 1,
                fields.len()
            ));
        }
        for (col, field) in fields.iter().enumerate() {
            let column = col + 1;
            let value: f32 = field.parse().map_err(|_| format!("line {line_no}, column {column}: `{field}` is not a number"))?;
            if col < DIGITS_PIXELS {
                if !(0.0..=DIGITS_MAX_PIXEL).contains(&value) {
                    return Err(format!("line {line_no}, column {column}: pixel value `{field}` is outside 0..=16"));
                }
                pixels.push(value / DIGITS_MAX_PIXEL);
            } else {
                let label = digit_label(value)
                    .ok_or_else(|| format!("line {line_no}, column {column}: label `{field}` is not a digit in 0..=9"))?;
                labels.push(label);
            }
        }
    }
    if labels.is_empty() {
        return Err("the file holds no samples (it is empty)".to_string());
    }
    let images = Array4::from_shape_vec((labels.len(), DIGITS_SIDE, DIGITS_SIDE, 1), pixels)
        .map_err(|e| format!("internal error while shaping the images: {e}"))?;
    Ok(Digits { images, labels })
}

/// `value` as a label when it is a whole number in `0..=9`.
fn digit_label(value: f32) -> Option<u8> {
    if value.fract() != 0.0 || !(0.0..=9.0).contains(&value) {
        return None;
    }
    // Lossless: a whole number in 0..=9.
    Some(value as u8)
}

/// A time series as loaded by [`load_series`]: one key (a year, a date as `YYYYMMDD`) and one value per
/// line, `None` where the value is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The header's two column names.
    pub columns: [String; 2],
    /// The first column of each row.
    pub keys: Vec<f64>,
    /// The second column of each row; `None` for an empty field.
    pub values: Vec<Option<f32>>,
}

/// Loads a two-column CSV time series with a header line (`data/series/sunspots.csv`,
/// `data/series/co2.csv`): a numeric key, then a value that may be empty (missing). Quotes around the
/// header's names are removed.
///
/// # Errors
/// [`Error::Dataset`] when the file cannot be read or is not UTF-8, has no header or no row, or a row
/// has other than two fields or a field that is not a finite number (the message names the line).
pub fn load_series(path: impl AsRef<Path>) -> Result<Series> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| dataset_error(path, format!("not a UTF-8 text file (invalid byte at offset {})", e.utf8_error().valid_up_to())))?;
    parse_series_csv(&text).map_err(|message| dataset_error(path, message))
}

/// Parses the text of a series CSV; errors are messages naming the line.
fn parse_series_csv(text: &str) -> std::result::Result<Series, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("the file is empty: expected a header line such as `year,value`")?;
    let names: Vec<String> = header.split(',').map(|f| f.trim().trim_matches('"').to_string()).collect();
    let [key, value]: [String; 2] =
        names.try_into().map_err(|n: Vec<String>| format!("line 1: expected 2 column names, found {}", n.len()))?;
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for (index, line) in lines {
        let line_no = index + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [k, v] = fields[..] else {
            return Err(format!("line {line_no}: expected 2 comma-separated values (key, value), found {}", fields.len()));
        };
        let number = |f: &str, column: usize| -> std::result::Result<f64, String> {
            f.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("line {line_no}, column {column}: `{f}` is not a finite number"))
        };
        keys.push(number(k, 1)?);
        // The values are f32: one past f32's range would become an infinity.
        let value = |f: &str| match number(f, 2)? as f32 {
            x if x.is_finite() => Ok(x),
            _ => Err(format!("line {line_no}, column 2: `{f}` is beyond the range of a 32-bit float (about ±3.4e38)")),
        };
        values.push(if v.is_empty() { None } else { Some(value(v)?) });
    }
    if keys.is_empty() {
        return Err("the file holds a header but no rows".to_string());
    }
    Ok(Series { columns: [key, value], keys, values })
}

/// Sliding windows over a series for one-step-ahead forecasting: inputs `[n, steps, 1]` (each window of
/// `steps` consecutive values) and targets `[n, 1]` (the value `horizon` steps after the window's last),
/// `n = len − steps − horizon + 1`. Empty arrays when the series is too short.
pub fn sliding_windows(values: &[f32], steps: usize, horizon: usize) -> (Array3<f32>, Array2<f32>) {
    let n = (values.len() + 1).saturating_sub(steps + horizon.max(1));
    let inputs = Array3::from_shape_fn((n, steps, 1), |(i, t, _)| values.get(i + t).copied().unwrap_or(0.0));
    let targets = Array2::from_shape_fn((n, 1), |(i, _)| values.get(i + steps + horizon.max(1) - 1).copied().unwrap_or(0.0));
    (inputs, targets)
}

/// Loads an MNIST-style pair of IDX files (plain or gzip-compressed, as distributed).
///
/// `images` must be an IDX file of unsigned bytes with 3 dimensions (magic `0x00000803`:
/// count, rows, columns); `labels` an IDX file of unsigned bytes with 1 dimension (magic
/// `0x00000801`). Returns the images as `[n, rows, cols, 1]` with pixels divided by 255, and the labels.
///
/// # Errors
/// [`Error::Dataset`] when a file cannot be read, has the wrong magic number, is shorter or longer
/// than its header says, or the two files hold different numbers of samples. Sizes in headers are
/// checked against the file length before anything is allocated.
pub fn load_mnist_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<(Array4<f32>, Vec<u8>)> {
    let images_path = images.as_ref();
    let labels_path = labels.as_ref();

    let image_bytes = read_maybe_gzip(images_path)?;
    let (dims, pixels) = parse_idx(&image_bytes, IDX_IMAGES_MAGIC, 3).map_err(|m| dataset_error(images_path, m))?;
    let label_bytes = read_maybe_gzip(labels_path)?;
    let (label_dims, label_data) = parse_idx(&label_bytes, IDX_LABELS_MAGIC, 1).map_err(|m| dataset_error(labels_path, m))?;

    let (n, rows, cols) = match dims.as_slice() {
        [n, rows, cols] => (*n, *rows, *cols),
        _ => return Err(dataset_error(images_path, "expected 3 dimensions in the header".to_string())),
    };
    let label_count = label_dims.first().copied().unwrap_or(0);
    if label_count != n {
        return Err(dataset_error(
            labels_path,
            format!("holds {label_count} labels but the images file `{}` holds {n} images", images_path.display()),
        ));
    }
    let data: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    let images = Array4::from_shape_vec((n, rows, cols, 1), data)
        .map_err(|e| dataset_error(images_path, format!("internal error while shaping the images: {e}")))?;
    Ok((images, label_data.to_vec()))
}

/// Splits an IDX file of unsigned bytes into its dimensions and its data, checking the magic number
/// and that the data length is exactly the product of the dimensions.
fn parse_idx(bytes: &[u8], magic: u32, rank: usize) -> std::result::Result<(Vec<usize>, &[u8]), String> {
    let header_len = 4 + 4 * rank;
    let found = read_be_u32(bytes, 0)
        .ok_or_else(|| format!("too short for an IDX file ({} bytes, the header alone needs {header_len})", bytes.len()))?;
    if found != magic {
        return Err(format!(
            "bad magic number 0x{found:08x}: expected 0x{magic:08x} (an IDX file of unsigned bytes with {rank} dimension{})",
            if rank == 1 { "" } else { "s" }
        ));
    }
    let mut dims = Vec::with_capacity(rank);
    for axis in 0..rank {
        let dim = read_be_u32(bytes, 4 + 4 * axis)
            .ok_or_else(|| format!("truncated header ({} bytes, the header needs {header_len})", bytes.len()))?;
        dims.push(usize::try_from(dim).map_err(|_| format!("dimension {axis} ({dim}) is too large"))?);
    }
    let data = bytes.get(header_len..).unwrap_or_default();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match expected {
        Some(len) if len == data.len() => Ok((dims, data)),
        Some(len) => Err(format!(
            "the header announces {} = {len} data bytes but the file holds {} after its {header_len}-byte header",
            dims.iter().map(usize::to_string).collect::<Vec<_>>().join(" × "),
            data.len()
        )),
        None => Err(format!("the header's dimensions {dims:?} overflow")),
    }
}

/// The big-endian `u32` at `offset`, if the bytes are there.
fn read_be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let chunk: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(chunk))
}

/// The whole file, decompressed when it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| dataset_error(path, format!("cannot read the file: {e}")))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| dataset_error(path, format!("corrupt gzip data: {e}")))?;
    Ok(out)
}

/// An [`Error::Dataset`] for `path`.
fn dataset_error(path: &Path, message: String) -> Error {
    Error::Dataset { path: path.display().to_string(), message }
}

/// One-hot encodes `labels` as `[labels.len(), classes]`: row `i` is 1.0 at column `labels[i]`, 0.0
/// elsewhere. A label `>= classes` gives a row of zeros.
pub fn one_hot(labels: &[u8], classes: usize) -> Array2<f32> {
    let mut out = Array2::zeros((labels.len(), classes));
    for (mut row, &label) in out.rows_mut().into_iter().zip(labels) {
        if let Some(cell) = row.get_mut(usize::from(label)) {
            *cell = 1.0;
        }
    }
    out
}

/// A seeded shuffle of `0..n` cut into train, validation and test index lists, sized by the two
/// fractions (floored; the rest is training). The same seed gives the same split.
pub fn split_indices(n: usize, validation: f64, test: f64, seed: u64) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    crate::init::Rng::new(seed).shuffle(&mut order);
    let n_test = ((n as f64) * test.clamp(0.0, 1.0)).floor() as usize;
    let n_val = (((n as f64) * validation.clamp(0.0, 1.0)).floor() as usize).min(n - n_test);
    let test_idx = order.split_off(n - n_test);
    let val_idx = order.split_off(order.len() - n_val);
    (order, val_idx, test_idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    /// The first row of the shipped file (pixels, then the label).
    const FIRST_ROW: [u8; 65] = [
        0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0,
        4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0, 0,
    ];

    #[test]
    fn shipped_series_load_with_their_missing_values() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/series");
        let sun = load_series(root.join("sunspots.csv")).unwrap();
        assert_eq!(sun.columns, ["YEAR".to_string(), "SUNACTIVITY".to_string()]);
        assert_eq!(
            (sun.keys.len(), sun.keys[0], sun.values[0], sun.keys[308], sun.values[308]),
            (309, 1700.0, Some(5.0), 2008.0, Some(2.9))
        );
        assert!(sun.values.iter().all(Option::is_some));
        let co2 = load_series(root.join("co2.csv")).unwrap();
        assert_eq!((co2.keys.len(), co2.keys[0], co2.values[0]), (2284, 19580329.0, Some(316.1)));
        assert_eq!(co2.values.iter().filter(|v| v.is_none()).count(), 59);
    }

    #[test]
    fn malformed_series_are_errors_naming_the_line() {
        let err = |text: &str| parse_series_csv(text).unwrap_err();
        assert!(err("").contains("the file is empty"));
        assert!(err("a,b\n").contains("header but no rows"));
        assert!(err("a,b,c\n1,2\n").contains("line 1: expected 2 column names, found 3"));
        assert!(err("a,b\n1,2\n3\n").contains("line 3: expected 2 comma-separated values"));
        assert!(err("a,b\n1,x\n").contains("line 2, column 2: `x` is not a finite number"));
        assert!(err("a,b\n1,inf\n").contains("`inf` is not a finite number"));
        assert!(err("a,b\n1,2\n2,-1e39\n").contains("line 3, column 2: `-1e39` is beyond the range of a 32-bit float"));
        assert_eq!(parse_series_csv("a,b\n1,\n2,3\n").unwrap().values, vec![None, Some(3.0)]);
    }

    #[test]
    fn sliding_windows_pair_each_window_with_the_value_after_it() {
        let (x, y) = sliding_windows(&[1.0, 2.0, 3.0, 4.0, 5.0], 2, 1);
        assert_eq!(x.shape(), &[3, 2, 1]);
        assert_eq!(x.iter().copied().collect::<Vec<_>>(), [1.0, 2.0, 2.0, 3.0, 3.0, 4.0]);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [3.0, 4.0, 5.0]);
        let (_, y) = sliding_windows(&[1.0, 2.0, 3.0, 4.0, 5.0], 2, 2);
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [4.0, 5.0]);
        assert_eq!(sliding_windows(&[1.0], 2, 1).0.shape(), &[0, 2, 1]);
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let (a, b, c) = split_indices(100, 0.1, 0.2, 7);
        assert_eq!((a.len(), b.len(), c.len()), (70, 10, 20));
        let mut all: Vec<usize> = a.iter().chain(&b).chain(&c).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(split_indices(100, 0.1, 0.2, 7), (a, b, c));
        assert_ne!(split_indices(100, 0.1, 0.2, 8).0, split_indices(100, 0.1, 0.2, 7).0);
    }

    fn shipped_digits() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits/digits.csv.gz")
    }

    /// A temporary file removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!("modelc-datasets-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn digits_err(name: &str, text: &str) -> String {
        let file = TempFile::new(name, &gzip(text.as_bytes()));
        match load_digits(&file.0) {
            Err(Error::Dataset { path, message }) => {
                assert_eq!(path, file.0.display().to_string());
                message
            }
            other => panic!("expected a dataset error, got {other:?}"),
        }
    }

    fn valid_row(label: &str) -> String {
        let mut fields = vec!["0"; 64];
        fields.push(label);
        fields.join(",")
    }

    #[test]
    fn loads_shipped_digits() {
        let digits = load_digits(shipped_digits()).unwrap();
        assert_eq!(digits.len(), 1797);
        assert_eq!(digits.images.shape(), &[1797, 8, 8, 1]);
        let mut seen = [false; 10];
        for &l in &digits.labels {
            seen[usize::from(l)] = true;
        }
        assert!(seen.iter().all(|&s| s), "every digit 0..=9 appears");
        for (i, &p) in FIRST_ROW[..64].iter().enumerate() {
            assert_eq!(digits.images[[0, i / 8, i % 8, 0]], f32::from(p) / 16.0, "pixel {i}");
        }
        assert_eq!(digits.labels[0], FIRST_ROW[64]);
        assert!(digits.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    }

    #[test]
    fn loads_plain_csv_and_skips_blank_lines() {
        let text = format!("{}\r\n\n{}\n\n", valid_row("3"), valid_row("7"));
        let file = TempFile::new("plain.csv", text.as_bytes());
        let digits = load_digits(&file.0).unwrap();
        assert_eq!(digits.labels, vec![3, 7]);
    }

    #[test]
    fn digits_rejects_bad_number() {
        let mut row = valid_row("1");
        row.replace_range(0..1, "x");
        let msg = digits_err("bad-number.csv.gz", &format!("{}\n{row}\n", valid_row("0")));
        assert_eq!(msg, "line 2, column 1: `x` is not a number");
    }

    #[test]
    fn digits_rejects_wrong_column_count() {
        let msg = digits_err("columns.csv.gz", "1,2,3\n");
        assert!(msg.starts_with("line 1: expected 65 comma-separated values"), "{msg}");
        assert!(msg.ends_with("found 3"), "{msg}");
    }

    #[test]
    fn digits_rejects_label_out_of_range() {
        let msg = digits_err("label.csv.gz", &format!("{}\n{}\n", valid_row("9"), valid_row("10")));
        assert_eq!(msg, "line 2, column 65: label `10` is not a digit in 0..=9");
        let msg = digits_err("label-frac.csv.gz", &valid_row("2.5"));
        assert!(msg.contains("label `2.5`"), "{msg}");
    }

    #[test]
    fn digits_rejects_pixel_out_of_range() {
        let mut fields = vec!["0"; 64];
        fields[5] = "17";
        fields.push("1");
        let msg = digits_err("pixel.csv.gz", &fields.join(","));
        assert_eq!(msg, "line 1, column 6: pixel value `17` is outside 0..=16");
        fields[5] = "-1";
        let msg = digits_err("pixel-neg.csv.gz", &fields.join(","));
        assert!(msg.contains("column 6"), "{msg}");
        fields[5] = "NaN";
        let msg = digits_err("pixel-nan.csv.gz", &fields.join(","));
        assert!(msg.contains("column 6"), "{msg}");
    }

    #[test]
    fn digits_rejects_empty_and_missing_files() {
        let msg = digits_err("empty.csv.gz", "");
        assert!(msg.contains("no samples"), "{msg}");
        let file = TempFile::new("empty-plain.csv", b"");
        assert!(matches!(load_digits(&file.0), Err(Error::Dataset { .. })));
        let missing = std::env::temp_dir().join("modelc-datasets-does-not-exist.csv.gz");
        let err = load_digits(&missing).unwrap_err();
        assert!(err.to_string().contains("cannot read the file"), "{err}");
        let corrupt = TempFile::new("corrupt.csv.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
        let err = load_digits(&corrupt.0).unwrap_err();
        assert!(err.to_string().contains("corrupt gzip data"), "{err}");
    }

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn idx_round_trip() {
        let pixels: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
        let images = TempFile::new("rt-images.idx", &idx(IDX_IMAGES_MAGIC, &[2, 3, 2], &pixels));
        let labels = TempFile::new("rt-labels.idx.gz", &gzip(&idx(IDX_LABELS_MAGIC, &[2], &[7, 1])));
        let (x, y) = load_mnist_idx(&images.0, &labels.0).unwrap();
        assert_eq!(x.shape(), &[2, 3, 2, 1]);
        assert_eq!(y, vec![7, 1]);
        assert_eq!(x[[0, 0, 1, 0]], 20.0 / 255.0);
        assert_eq!(x[[1, 2, 1, 0]], 220.0 / 255.0);
        let flat: Vec<f32> = x.iter().copied().collect();
        let want: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        assert_eq!(flat, want);
    }

    #[test]
    fn idx_rejects_malformed_files() {
        let labels = TempFile::new("bad-labels.idx", &idx(IDX_LABELS_MAGIC, &[1], &[3]));
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("magic", idx(IDX_LABELS_MAGIC, &[1, 1, 1], &[0]), "bad magic number 0x00000801"),
            ("short", vec![0, 0, 8], "too short"),
            ("header", idx(IDX_IMAGES_MAGIC, &[1, 1], &[]), "truncated header"),
            ("huge", idx(IDX_IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[0; 4]), "the header"),
            ("truncated", idx(IDX_IMAGES_MAGIC, &[1, 2, 2], &[0; 3]), "announces 1 × 2 × 2 = 4 data bytes"),
        ];
        for (name, bytes, want) in cases {
            let images = TempFile::new(&format!("bad-{name}.idx"), &bytes);
            let err = load_mnist_idx(&images.0, &labels.0).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        let images = TempFile::new("count-images.idx", &idx(IDX_IMAGES_MAGIC, &[2, 1, 1], &[0, 0]));
        let err = load_mnist_idx(&images.0, &labels.0).unwrap_err().to_string();
        assert!(err.contains("holds 1 labels but the images file"), "{err}");
    }

    #[test]
    fn one_hot_sets_one_column_per_row() {
        let y = one_hot(&[2, 0, 5], 3);
        assert_eq!(y, ndarray::array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]);
        assert_eq!(one_hot(&[], 4).shape(), &[0, 4]);
    }
}
