// `use_bias` is a boolean: an integer is a wrong argument type.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(1, use_bias = 1)(x);
    }
}

fn main() {}
