// A shared layer is built by its first call; a second call on another shape is rejected, pointing at the first.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [4];
        input b: [6];
        layer enc = Dense(8);
        let ea = enc(a);
        let eb = enc(b);
        output y = Concatenate()([ea, eb]);
    }
}

fn main() {}
