// A model is declared with `struct`.
use modelc::prelude::*;

model! {
    pub Model {
        input x: [8];
        output y = Dense(1)(x);
    }
}

fn main() {}
