// Three independent mistakes in one model are reported together, each once, and nothing else.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [4, 2];
        let h = Dense(16, activation = rleu)(a);
        let g = Dense(0)(a);
        let j = Concatenate()([a, b]);
        output y = Concatenate()([h, g, j]);
    }
}

fn main() {}
