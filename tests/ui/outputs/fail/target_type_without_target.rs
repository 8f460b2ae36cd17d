// `as i32` after an output must say it types the targets: `as i32 target`.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [4];
        output digit = Dense(3, activation = softmax)(x) as i32;
    }
}

fn main() {}
