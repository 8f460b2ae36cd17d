//! Kernels over flat row-major `f32` slices: each op's forward next to its backward.

pub mod activation;
pub mod concat;
pub mod conv;
pub mod dense;
pub mod dot;
pub mod dropout;
pub mod gemm;
pub mod merge;
pub mod pool;
pub mod reshape;
