// Concatenate on the last axis needs every other dimension to match: (None, 4, 8) and (None, 5, 8) cannot be joined.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [4, 8];
        input b: [5, 8];
        output y = Concatenate()([a, b]);
    }
}

fn main() {}
