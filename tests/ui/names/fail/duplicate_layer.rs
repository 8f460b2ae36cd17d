// Two `layer` declarations with the same name, pointing at the first one.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        layer enc = Dense(8);
        layer enc = Dense(4);
        output y = enc(x);
    }
}

fn main() {}
