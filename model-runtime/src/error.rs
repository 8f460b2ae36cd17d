//! The runtime's error type: every failure on user input is one of these, never a panic.

use std::fmt;
use std::path::PathBuf;

/// Result alias of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong at run time on user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input, target or output gradient does not have the declared shape.
    #[error("{what} `{name}`: expected shape {expected}, got {actual}")]
    Shape {
        /// "input", "target" or "output gradient".
        what: &'static str,
        /// The tensor's name.
        name: String,
        /// Expected shape, Keras notation.
        expected: String,
        /// Actual shape.
        actual: String,
    },

    /// Two tensors of one call (inputs, targets, output gradients) disagree on the batch size.
    #[error(
        "batch sizes disagree: {first_what} `{first}` has {first_batch} rows but \
         {second_what} `{second}` has {second_batch}; every input and target must have the same number of samples"
    )]
    BatchMismatch {
        /// "input", "target" or "output gradient".
        first_what: &'static str,
        /// Name of the tensor that set the batch size.
        first: String,
        /// Its batch size.
        first_batch: usize,
        /// "input", "target" or "output gradient".
        second_what: &'static str,
        /// Name of the tensor that disagrees.
        second: String,
        /// Its batch size.
        second_batch: usize,
    },

    /// A batch with no rows was given.
    #[error("{what} `{name}` has an empty batch (0 rows); pass at least one sample")]
    EmptyBatch {
        /// "input", "target" or "output gradient".
        what: &'static str,
        /// The tensor's name.
        name: String,
    },

    /// A tensor has the wrong element type.
    #[error("{what} `{name}`: expected dtype {expected}, got {actual}")]
    DType {
        /// "input", "parameter" or "tensor".
        what: &'static str,
        /// The tensor's name.
        name: String,
        /// Expected element type (`float32`, `int32`, `F32`...).
        expected: String,
        /// Actual element type.
        actual: String,
    },

    /// An integer input cannot be represented exactly as `f32` (|value| > 2^24).
    #[error(
        "input `{name}`: integer value {value} cannot be represented exactly as f32 \
         (the limit is ±16777216)"
    )]
    InexactInteger {
        /// The input's name.
        name: String,
        /// The offending value.
        value: i32,
    },

    /// A token id outside the table of an `Embedding` layer that reads the input.
    #[error(
        "input `{input}` holds token id {value} (sample {sample}, position {index}), outside 0..{limit}: \
         Embedding `{layer}` has input_dim {limit}"
    )]
    TokenId {
        /// The input's name.
        input: String,
        /// The offending id.
        value: i32,
        /// The sample (batch row) holding it.
        sample: usize,
        /// Its flat position within the sample.
        index: usize,
        /// The Embedding's `input_dim`.
        limit: usize,
        /// The Embedding layer's name.
        layer: String,
    },

    /// No parameter has this name.
    #[error("unknown parameter `{name}`{}", did_you_mean(.nearest))]
    UnknownParam {
        /// The name asked for.
        name: String,
        /// The closest known names, best first.
        nearest: Vec<String>,
    },

    /// A parameter value has the wrong shape.
    #[error("parameter `{name}`: expected shape {expected:?}, got {actual:?}")]
    ParamShape {
        /// The parameter's name.
        name: String,
        /// Its shape in the model (Keras layout).
        expected: Vec<usize>,
        /// The shape given.
        actual: Vec<usize>,
    },

    /// `backward` was called with no forward pass to differentiate.
    #[error(
        "backward called before forward: run `forward` on a batch first \
         (backward reuses the activations of the last forward pass)"
    )]
    BackwardBeforeForward,

    /// The loss became NaN or infinite during training.
    #[error(
        "non-finite loss ({value}) for output `{output}` at epoch {epoch}, batch {batch}; \
         try a lower learning rate or check the data for NaN/inf"
    )]
    NonFiniteLoss {
        /// Epoch number, 1-based (0 outside `fit`).
        epoch: usize,
        /// Batch number within the epoch, 1-based (0 outside `fit`).
        batch: usize,
        /// The output whose loss is not finite.
        output: String,
        /// The loss value.
        value: f64,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration: `{name}` = {value}: {reason}")]
    Config {
        /// The setting (`batch_size`, `validation_split`, ...).
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it is rejected and what is accepted.
        reason: String,
    },

    /// An I/O operation on a file failed.
    /// The model cannot be written as ONNX (a layer without an ONNX mapping).
    #[error("cannot export model `{model}` to ONNX: {reason}")]
    Onnx {
        /// The model's name.
        model: String,
        /// Why, naming the layer.
        reason: String,
    },

    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A weight file is malformed or does not match the model.
    #[error("bad weight file {}: {}", .path.display(), ProblemList(.problems))]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// Every problem found, one sentence each.
        problems: Vec<String>,
    },

    /// A dataset file cannot be read or is malformed.
    #[error("dataset {path}: {message}")]
    Dataset {
        /// The file, as displayed.
        path: String,
        /// What is wrong and where (line, column or byte offset).
        message: String,
    },

    /// An input or target of a training call holds NaN or an infinity.
    #[error(
        "{what} `{name}` holds a non-finite value ({value}) at row {row}, {}; \
         replace or drop NaN/inf values before training",
        position(.index)
    )]
    NonFiniteData {
        /// "input" or "target".
        what: &'static str,
        /// The tensor's name.
        name: String,
        /// The offending value.
        value: f32,
        /// The sample (batch row) holding it, counted in the array given.
        row: usize,
        /// Its index within the sample (one entry per dimension after the batch).
        index: Vec<usize>,
    },

    /// An optimizer step made a parameter NaN or infinite; the step was undone.
    #[error(
        "parameter `{param}` became non-finite ({value}) in the optimizer step of epoch {epoch}, batch {batch}; \
         the weights from before that step are kept; try a lower learning rate or check the data"
    )]
    NonFiniteParams {
        /// Epoch number, 1-based (0 outside `fit`).
        epoch: usize,
        /// Batch number within the epoch, 1-based (0 outside `fit`).
        batch: usize,
        /// The first parameter (by name) holding a non-finite value after the step.
        param: String,
        /// That value.
        value: f32,
    },

    /// A buffer is too large to allocate: its size overflows, or the allocator refused it.
    #[error("cannot allocate {what}: {size}; use a smaller batch (batch_size) or fewer rows per call")]
    Allocation {
        /// The buffer and the rows it is for.
        what: String,
        /// The size asked for, or why it has none.
        size: String,
    },

    /// The data source of a streamed `fit`, `evaluate` or `predict` failed on a batch: it returned an
    /// error, panicked, or yielded a batch that does not fit the model.
    #[error("the data source failed at batch {batch} of {during}: {message}")]
    Source {
        /// What was running: `epoch 3`, `validation after epoch 2`, `evaluation`, `prediction`.
        during: String,
        /// The batch asked for, counted from 1 within `during`.
        batch: usize,
        /// The source's error, the panic's message, or what is wrong with the batch.
        message: String,
        /// The underlying error (`None` for a panic).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A class id outside `0..classes` in the integer targets of an output (`as i32 target`).
    #[error(
        "target `{output}` holds class id {value} (sample {sample}, position {index}), outside 0..{classes}: \
         the output has {classes} classes"
    )]
    ClassId {
        /// The output's name.
        output: String,
        /// The offending id.
        value: i32,
        /// The sample (batch row) holding it.
        sample: usize,
        /// Its flat position within the sample's targets.
        index: usize,
        /// The number of classes (the output's last axis).
        classes: usize,
    },

    /// Data-parallel training (feature `mpi`) could not go on: MPI could not start, or another rank
    /// stopped on an error of its own.
    #[error("distributed training: {message}")]
    Distributed {
        /// What happened, and where to look.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::Config`].
    pub fn config(name: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::Config { name, value: value.to_string(), reason: reason.into() }
    }

    /// An [`Error::UnknownParam`] for `name`, listing the closest of `known`.
    pub fn unknown_param<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        Error::UnknownParam { name: name.to_string(), nearest: nearest_names(name, known, 3) }
    }
}

/// `column 5` for a sample of rank 1, `index (4, 2, 1)` otherwise.
fn position(index: &[usize]) -> String {
    match index {
        [one] => format!("column {one}"),
        _ => format!("index {}", crate::model::tuple_shape(index)),
    }
}

fn did_you_mean(nearest: &[String]) -> String {
    match nearest {
        [] => String::new(),
        names => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("; did you mean {}?", quoted.join(", "))
        }
    }
}

struct ProblemList<'a>(&'a [String]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => f.write_str(one),
            many => {
                write!(f, "{} problems:", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

/// The `limit` names of `known` closest to `name` by edit distance (ties keep `known`'s order),
/// leaving out names too far to be a plausible typo.
pub fn nearest_names<'a>(name: &str, known: impl IntoIterator<Item = &'a str>, limit: usize) -> Vec<String> {
    let mut scored: Vec<(usize, usize, &str)> = known
        .into_iter()
        .enumerate()
        .map(|(i, k)| (edit_distance(name, k), i, k))
        .filter(|&(d, _, k)| d <= (name.len().max(k.len()) / 2).max(2))
        .collect();
    scored.sort();
    scored.into_iter().take(limit).map(|(_, _, k)| k.to_string()).collect()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("dense/kernel", "dense/kernel"), 0);
        assert_eq!(edit_distance("dense/kernal", "dense/kernel"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("dense_1/bias", "dense/bias"), 2);
    }

    #[test]
    fn unknown_param_suggests_nearest_names() {
        let known = ["dense/kernel", "dense/bias", "dense_1/kernel", "conv2d/kernel"];
        let err = Error::unknown_param("dense/kernal", known);
        let msg = err.to_string();
        assert!(msg.starts_with("unknown parameter `dense/kernal`; did you mean `dense/kernel`"), "{msg}");
        assert!(!msg.contains("conv2d"), "{msg}");
    }

    #[test]
    fn weight_file_error_lists_every_problem() {
        let err = Error::WeightFile { path: "w.safetensors".into(), problems: vec!["missing `a`".into(), "unknown `b`".into()] };
        assert_eq!(err.to_string(), "bad weight file w.safetensors: 2 problems:\n  - missing `a`\n  - unknown `b`");
    }
}
