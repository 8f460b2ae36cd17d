// Targets are `f32` (the default) or `i32` class ids.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [4];
        output digit = Dense(3, activation = softmax)(x) as u8 target;
    }
}

fn main() {}
