// Dense takes one tensor, not a list.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [8];
        output y = Dense(1)([a, b]);
    }
}

fn main() {}
