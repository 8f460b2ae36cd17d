//! `MODELC_BF16` forces the `mixed_bfloat16` policy's fallback or its emulation. One test in a
//! binary of its own, so that setting the variable races with no other thread.

use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Large enough for bf16 (`kernels::gemm::bf16_pays`): 16 rows, k = n = 32.
    struct Tiny {
        input x: [32];
        output y = Dense(32)(x);
    }
}

#[test]
fn the_environment_variable_forces_the_fallback_and_the_emulation() {
    let x = Array2::from_shape_fn((16, 32), |(i, j)| (i as f32 - j as f32) / 7.0);
    let f32_out = Tiny::new(2).predict(&TinyInputs { x: x.view() }).unwrap();

    std::env::set_var(modelc::precision::BF16_ENV, "off");
    let mut model = Tiny::new(2);
    let status = model.set_dtype_policy(DTypePolicy::MixedBfloat16);
    assert_eq!((status.effective, status.kernel), (DTypePolicy::Float32, None), "{status:?}");
    assert!(status.reason.contains("MODELC_BF16=off"), "{status:?}");
    assert_eq!(model.predict(&TinyInputs { x: x.view() }).unwrap(), f32_out);

    std::env::set_var(modelc::precision::BF16_ENV, "emulate");
    let status = model.set_dtype_policy(DTypePolicy::MixedBfloat16);
    assert_eq!((status.effective, status.kernel), (DTypePolicy::MixedBfloat16, Some(modelc::kernels::gemm::Bf16Kernel::Emulated)));
    let bf16_out = model.predict(&TinyInputs { x: x.view() }).unwrap();
    assert_ne!(bf16_out, f32_out, "the emulation did not run");
    std::env::remove_var(modelc::precision::BF16_ENV);
}
