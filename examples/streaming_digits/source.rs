//! The streamed source of `examples/streaming_digits`, also used by tests/streaming.rs (through `#[path]`):
//! one part of the digits CSV (gzip), read line by line, shuffled through a buffer, in batches.
#![allow(dead_code)] // the test uses part of it

use std::fs::File;
use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::read::GzDecoder;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array4};
use modelc::prelude::*;

use super::model::{ink_statistics, DigitNetInputArrays, DigitNetTargetArrays};

/// Rows per batch, as in the in-memory example.
pub const BATCH: usize = 32;
/// Rows the shuffle buffer holds (tf.data's `shuffle(buffer_size)`).
pub const SHUFFLE_BUFFER: usize = 256;

/// One batch of the digits model: owned inputs and one-hot targets.
pub type DigitBatch = Batch<DigitNetInputArrays, DigitNetTargetArrays>;

/// One part of the file (the rows whose line number `keep` marks), batched and optionally shuffled: a
/// re-iterable source, each `into_iter` opening the file again.
#[derive(Clone)]
pub struct DigitsFile {
    /// The gzip-compressed CSV.
    pub path: PathBuf,
    /// Whether each sample (by its line, blank lines not counted) belongs to this part.
    pub keep: Arc<Vec<bool>>,
    /// Shuffle with a buffer, seeded anew for every pass (the counter counts the passes).
    pub shuffle: Option<Arc<AtomicU64>>,
    /// The seed of the shuffling.
    pub seed: u64,
}

impl IntoIterator for DigitsFile {
    type Item = Result<DigitBatch, String>;
    type IntoIter = DigitBatches;

    fn into_iter(self) -> DigitBatches {
        let lines = File::open(&self.path).map(|f| BufReader::new(GzDecoder::new(f)).lines());
        let (lines, error) = match lines {
            Ok(lines) => (Some(lines), None),
            Err(e) => (None, Some(format!("{}: {e}", self.path.display()))),
        };
        let pass = self.shuffle.as_ref().map(|p| p.fetch_add(1, Ordering::Relaxed));
        let rng = pass.map(|p| Rng::new(self.seed ^ (p + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        DigitBatches { path: self.path, lines, error, keep: self.keep, line: 0, sample: 0, buffer: Vec::new(), rng }
    }
}

/// The batches of one pass over the file.
pub struct DigitBatches {
    path: PathBuf,
    lines: Option<Lines<BufReader<GzDecoder<File>>>>,
    /// An error to report before anything else (the file cannot be opened).
    error: Option<String>,
    keep: Arc<Vec<bool>>,
    /// Lines read, and samples (non-blank lines) among them.
    line: usize,
    sample: usize,
    /// The shuffle buffer (or, unshuffled, the rows of the batch being built): 64 pixels and the label.
    buffer: Vec<([f32; 64], u8)>,
    rng: Option<Rng>,
}

impl DigitBatches {
    /// The next kept row of the file, or `None` at its end.
    fn next_row(&mut self) -> Option<Result<([f32; 64], u8), String>> {
        let lines = self.lines.as_mut()?;
        for text in lines.by_ref() {
            self.line += 1;
            let text = match text {
                Ok(t) => t,
                Err(e) => return Some(Err(format!("{}, line {}: {e}", self.path.display(), self.line))),
            };
            if text.trim().is_empty() {
                continue;
            }
            self.sample += 1;
            if !self.keep.get(self.sample - 1).copied().unwrap_or(false) {
                continue;
            }
            return Some(parse_row(&text).map_err(|e| format!("{}, line {}: {e}", self.path.display(), self.line)));
        }
        None
    }

    /// The next row to put in a batch: through the shuffle buffer when shuffling.
    fn next_sample(&mut self) -> Option<Result<([f32; 64], u8), String>> {
        if self.rng.is_none() {
            return self.next_row();
        }
        while self.buffer.len() < SHUFFLE_BUFFER {
            match self.next_row() {
                Some(Ok(row)) => self.buffer.push(row),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let rng = self.rng.as_mut()?;
        let at = (rng.next_u64() % self.buffer.len() as u64) as usize;
        Some(Ok(self.buffer.swap_remove(at)))
    }
}

impl Iterator for DigitBatches {
    type Item = Result<DigitBatch, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.lines = None;
            return Some(Err(e));
        }
        let mut rows = Vec::with_capacity(BATCH);
        while rows.len() < BATCH {
            match self.next_sample() {
                Some(Ok(row)) => rows.push(row),
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        (!rows.is_empty()).then(|| Ok(to_batch(&rows)))
    }
}

/// 64 pixels in `0..=16` and a label in `0..=9`, comma-separated, as in `datasets::load_digits`.
fn parse_row(text: &str) -> Result<([f32; 64], u8), String> {
    let mut pixels = [0.0f32; 64];
    let mut fields = text.split(',').map(str::trim);
    for (i, p) in pixels.iter_mut().enumerate() {
        let f = fields.next().ok_or_else(|| format!("{} values, expected 65", i))?;
        let v: f32 = f.parse().map_err(|_| format!("`{f}` is not a number"))?;
        if !(0.0..=16.0).contains(&v) {
            return Err(format!("pixel value `{f}` is outside 0..=16"));
        }
        *p = v / 16.0;
    }
    let label = fields.next().and_then(|f| f.parse::<u8>().ok()).filter(|l| *l <= 9).ok_or("the label is not a digit in 0..=9")?;
    Ok((pixels, label))
}

/// The model's owned inputs and one-hot targets for `rows`.
fn to_batch(rows: &[([f32; 64], u8)]) -> DigitBatch {
    let n = rows.len();
    let images = Array4::from_shape_fn((n, 8, 8, 1), |(i, r, c, _)| rows[i].0[r * 8 + c]);
    let digit = Array2::from_shape_fn((n, 10), |(i, k)| f32::from(u8::from(usize::from(rows[i].1) == k)));
    Batch::new(DigitNetInputArrays { stats: ink_statistics(&images), image: images }, DigitNetTargetArrays { digit })
}

/// Counts the samples of the file in one streamed pass (the split needs their number, not the rows).
pub fn count_rows(path: &std::path::Path) -> Result<usize, Box<dyn std::error::Error>> {
    let mut n = 0;
    for line in BufReader::new(GzDecoder::new(File::open(path)?)).lines() {
        n += usize::from(!line?.trim().is_empty());
    }
    Ok(n)
}
