// Proves: `Add` of (None, 8) and (None, 4) is a compile error at the merge call naming both tensors,
// their Keras shapes, and suggesting a `Dense(8)` projection or `Concatenate`.
use modelc::prelude::*;

model! {
    pub struct Residual {
        input x: [8];
        let h = Dense(4, activation = relu)(x);
        output y = Add()([x, h]);
    }
}

fn main() {}
