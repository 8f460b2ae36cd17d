//! TensorBoard event files and Keras' `TensorBoard` callback.
//!
//! An event file is a sequence of TFRecords (length, masked CRC-32C of the length, a serialized
//! `tensorflow.Event` protobuf, masked CRC-32C of it). The protobuf messages are encoded by `prost`
//! (the few fields of `event.proto` and `summary.proto` a scalar needs, declared below with their
//! official field numbers) and the checksums by `crc32c`. The `tboard` crate writes the same records but
//! runs `protoc` in its build script, which a plain `cargo build` does not have.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::callbacks::{Callback, CallbackState, Control, LogsView};
use crate::error::{Error, Result};
use crate::network::Network;

/// `tensorflow.Event` (tensorflow/core/util/event.proto), the fields written here.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary` (tensorflow/core/framework/summary.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`, a scalar (`simple_value`).
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// TFRecord's masked CRC-32C.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one TFRecord holding `data` to `out`.
fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Writes scalars to one TensorBoard event file (`events.out.tfevents.<time>.<host>.<pid>.<n>`) in a
/// directory, like `tf.summary.create_file_writer`. Records are buffered; [`flush`](Self::flush) writes
/// them out (a reader sees every complete record).
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, starting with the `brain.Event:2` version record.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let host =
            std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty() && !h.contains(['/', '\\'])).unwrap_or_else(|| "localhost".into());
        let name =
            format!("events.out.tfevents.{:010}.{host}.{}.{}.v2", now() as u64, std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let file = File::create_new(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter { path, out: BufWriter::new(file), buf: Vec::new() };
        w.write_event(Event { wall_time: now(), step: 0, what: Some(What::FileVersion("brain.Event:2".into())) })?;
        Ok(w)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: Event) -> Result<()> {
        self.buf.clear();
        event.encode(&mut self.buf).map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        write_record(&mut self.out, &self.buf).map_err(|e| Error::io(&self.path, e))
    }

    /// Adds scalar `tag` = `value` at `step` (TensorBoard's x axis).
    pub fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<()> {
        let summary = Summary { value: vec![SummaryValue { tag: tag.to_string(), simple_value: Some(value) }] };
        self.write_event(Event { wall_time: now(), step, what: Some(What::Summary(summary)) })
    }

    /// Writes the buffered records to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// How often [`TensorBoard`] writes the batch values (Keras' `update_freq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFreq {
    /// Only the epoch values (Keras' default, `"epoch"`).
    Epoch,
    /// Also the running training values every `n` batches (`"batch"` is `Batches(1)`), tagged
    /// `batch_<key>` at the global batch number (from 1).
    Batches(u64),
}

/// Writes the logs for TensorBoard, as `keras.callbacks.TensorBoard(log_dir, update_freq=...)` does for
/// scalars: after every epoch, `epoch_<key>` at step `epoch` (from 0) for the training values and the
/// learning rate in `<log_dir>/train`, and for the `val_` values (prefix removed) in
/// `<log_dir>/validation`; with [`UpdateFreq::Batches`], also `batch_<key>` in `train`.
/// `tensorboard --logdir <log_dir>` shows them as the runs `train` and `validation`.
#[derive(Debug)]
pub struct TensorBoard {
    /// The directory of the runs (Keras default `logs`).
    pub log_dir: PathBuf,
    /// Batch values too (default: epoch values only).
    pub update_freq: UpdateFreq,
    train: Option<EventWriter>,
    validation: Option<EventWriter>,
    global_batch: u64,
}

impl TensorBoard {
    /// Epoch values under `log_dir`.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        TensorBoard { log_dir: log_dir.into(), update_freq: UpdateFreq::Epoch, train: None, validation: None, global_batch: 0 }
    }

    /// Batch values too, every `n` batches (Keras' `update_freq=n`; at least 1).
    pub fn every_batches(mut self, n: u64) -> Self {
        self.update_freq = UpdateFreq::Batches(n.max(1));
        self
    }

    fn writer<'w>(slot: &'w mut Option<EventWriter>, dir: &Path) -> Result<&'w mut EventWriter> {
        if slot.is_none() {
            *slot = Some(EventWriter::create(dir)?);
        }
        slot.as_mut().ok_or_else(|| Error::io(dir, std::io::Error::other("no event writer")))
    }
}

impl<N: Network> Callback<N> for TensorBoard {
    fn root_only(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, _: &mut Control<'_, N>) -> Result<()> {
        self.global_batch = 0;
        (self.train, self.validation) = (None, None);
        Self::writer(&mut self.train, &self.log_dir.join("train")).map(|_| ())
    }

    fn on_train_batch_begin(&mut self, _: usize, _: &mut Control<'_, N>) -> Result<()> {
        self.global_batch += 1;
        Ok(())
    }

    fn on_train_batch_end(&mut self, _: usize, logs: &LogsView<'_>, _: &mut Control<'_, N>) -> Result<()> {
        let UpdateFreq::Batches(n) = self.update_freq else {
            return Ok(());
        };
        if !self.global_batch.is_multiple_of(n.max(1)) {
            return Ok(());
        }
        let w = Self::writer(&mut self.train, &self.log_dir.join("train"))?;
        for (key, value) in logs.iter() {
            w.scalar(&format!("batch_{key}"), value as f32, self.global_batch as i64)?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, _: &mut Control<'_, N>) -> Result<()> {
        let step = epoch as i64;
        let train = Self::writer(&mut self.train, &self.log_dir.join("train"))?;
        for (key, value) in logs.iter().filter(|(k, _)| !k.starts_with("val_")) {
            train.scalar(&format!("epoch_{key}"), value as f32, step)?;
        }
        train.scalar("epoch_learning_rate", logs.learning_rate(), step)?;
        train.flush()?;
        if logs.iter().any(|(k, _)| k.starts_with("val_")) {
            let val = Self::writer(&mut self.validation, &self.log_dir.join("validation"))?;
            for (key, value) in logs.iter().filter_map(|(k, v)| k.strip_prefix("val_").map(|k| (k, v))) {
                val.scalar(&format!("epoch_{key}"), value as f32, step)?;
            }
            val.flush()?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, _: &LogsView<'_>, _: &mut Control<'_, N>) -> Result<()> {
        for w in [&mut self.train, &mut self.validation].into_iter().flatten() {
            w.flush()?;
        }
        (self.train, self.validation) = (None, None);
        Ok(())
    }

    fn state(&self) -> Option<CallbackState> {
        // The batch counter, the step of the batch values.
        Some(CallbackState::new("TensorBoard").with("global_batch", self.global_batch as f64))
    }

    fn restore_state(&mut self, state: &CallbackState) -> Result<()> {
        state.expect_kind("TensorBoard")?;
        self.global_batch = state.count("global_batch")? as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // crc32c("123456789") = 0xe3069283 (RFC 3720's check value), masked as TFRecord does.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn records_frame_and_decode_back() {
        let event = Event {
            wall_time: 1.5,
            step: 7,
            what: Some(What::Summary(Summary { value: vec![SummaryValue { tag: "epoch_loss".into(), simple_value: Some(0.25) }] })),
        };
        let data = event.encode_to_vec();
        let mut out = Vec::new();
        write_record(&mut out, &data).unwrap();
        assert_eq!(out.len(), 8 + 4 + data.len() + 4);
        let len = u64::from_le_bytes(out[..8].try_into().unwrap()) as usize;
        assert_eq!(len, data.len());
        assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), masked_crc(&out[..8]));
        assert_eq!(u32::from_le_bytes(out[12 + len..].try_into().unwrap()), masked_crc(&data));
        assert_eq!(Event::decode(&out[12..12 + len]).unwrap(), event);
        // Field numbers of event.proto: wall_time 1 (double), step 2 (varint), summary 5.
        assert_eq!(data[0], 1 << 3 | 1);
        assert_eq!(data[9], 2 << 3);
        assert_eq!(data[11], 5 << 3 | 2);
    }
}
