// Keras' Attention compares queries with keys directly: their features must agree.
use modelc::prelude::*;

model! {
    pub struct M {
        input q: [5, 8];
        input v: [7, 3];
        output y = Attention()([q, v]);
    }
}

fn main() {}
