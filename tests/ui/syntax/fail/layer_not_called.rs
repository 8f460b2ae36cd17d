// `Dense(8)` alone only builds the layer: it must be called on a tensor with a second pair of parentheses.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(8);
        output y = Dense(1)(x);
    }
}

fn main() {}
