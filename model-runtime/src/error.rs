//! The runtime's error type: every failure on user input is one of these, never a panic.

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
}
