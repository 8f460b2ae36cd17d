// `units` is an integer: a float is a wrong argument type.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(8.5)(x);
    }
}

fn main() {}
