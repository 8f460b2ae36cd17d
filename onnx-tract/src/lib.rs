//! Nothing but a test: `tests/onnx.rs` exports every example model and models using every layer kind,
//! runs them in tract and compares with `predict`. A package of its own (outside the main workspace) so
//! that tract is not built by the root `cargo test --workspace`; `.ci/run` runs it.
