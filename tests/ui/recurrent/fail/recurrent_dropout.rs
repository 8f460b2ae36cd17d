// Proves: a non-zero recurrent_dropout is an error at its value.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        output y = GRU(4, recurrent_dropout = 0.1)(x);
    }
}

fn main() {}
