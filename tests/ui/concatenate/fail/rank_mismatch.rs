// Concatenate of a (None, 8) vector and a (None, 4, 8) sequence: ranks differ.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [4, 8];
        output y = Concatenate()([a, b]);
    }
}

fn main() {}
