// Inputs are `f32` or `i32`.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8] as u8;
        output y = Dense(1)(x);
    }
}

fn main() {}
