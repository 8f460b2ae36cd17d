// A layer instance is not a tensor: it must be called.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        layer enc = Dense(8);
        let h = enc(x);
        output y = Dense(1)(enc);
    }
}

fn main() {}
