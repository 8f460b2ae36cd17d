// A declared layer instance that is never called.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        layer enc = Dense(8);
        output y = Dense(1)(x);
    }
}

fn main() {}
