// Proves: a number past float32's range is an error at the argument, in every place a layer takes one
// (the emitted code holds float32 values: before, the macro panicked on the first three).
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4, 3];
        let m = Masking(mask_value = 1e39)(x);
        let b = BatchNormalization(epsilon = 1e39)(m);
        let l = LayerNormalization(epsilon = 1e-50)(b);
        output y = Dense(2, kernel_initializer = constant(value = -1e39))(l);
    }
}

fn main() {}
