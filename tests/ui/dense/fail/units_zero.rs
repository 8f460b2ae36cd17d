// `Dense(0)` has no output features.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(0)(x);
    }
}

fn main() {}
