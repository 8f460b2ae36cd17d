//! Steady-state inference on the liveness plan allocates nothing, convolutions included. Its own test
//! binary, apart from `alloc_free.rs`: its 2-thread training test flakes more often with a long test
//! beside it (a late pool worker makes a GEMM fall back to the calling thread, which then packs into
//! scratch of a size its warm-up did not see).

#[path = "counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

#[path = "../examples/vision_meta/model.rs"]
mod vision_meta;

/// The inference plan's shared buffers and scratch slots (convolutions: im2col and pre-activations
/// of several steps in one slot) are sized once; later calls allocate nothing. One sample: no product
/// reaches the split threshold, so the GEMM pool's fallback (above) cannot make this test flaky either.
#[test]
fn convolution_inference_into_reused_outputs_allocates_nothing_after_warm_up() {
    use vision_meta::*;
    let (image, meta, _) = make_data(1, 3);
    let inputs = VisionMetaInputs { image: image.view(), meta: meta.view() };
    let mut model = VisionMeta::new(2);
    let mut out = model.predict(&inputs).unwrap();
    let n = allocations_in(|| {
        for _ in 0..5 {
            model.predict_into(&inputs, &mut out).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 5 steady-state inference calls");
}
